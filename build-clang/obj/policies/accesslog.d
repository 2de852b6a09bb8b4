build-clang/obj/policies/accesslog.o: policies/accesslog.c \
  policies/accesslog.h policies/../master/config.h

policies/accesslog.h:

policies/../master/config.h:
