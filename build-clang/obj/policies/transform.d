build-clang/obj/policies/transform.o: policies/transform.c \
  policies/policy.h policies/../master/config.h \
  policies/../worker/http1.h policies/arena.h

policies/policy.h:

policies/../master/config.h:

policies/../worker/http1.h:

policies/arena.h:
