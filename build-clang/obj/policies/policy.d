build-clang/obj/policies/policy.o: policies/policy.c policies/policy.h \
  policies/../master/config.h policies/../worker/http1.h \
  policies/arena.h

policies/policy.h:

policies/../master/config.h:

policies/../worker/http1.h:

policies/arena.h:
