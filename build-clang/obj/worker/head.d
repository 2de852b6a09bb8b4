build-clang/obj/worker/head.o: worker/head.c worker/head.h \
  worker/../policies/policy.h worker/../policies/../master/config.h \
  worker/../policies/../worker/http1.h worker/../policies/arena.h \
  worker/http1.h

worker/head.h:

worker/../policies/policy.h:

worker/../policies/../master/config.h:

worker/../policies/../worker/http1.h:

worker/../policies/arena.h:

worker/http1.h:
