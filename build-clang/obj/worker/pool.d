build-clang/obj/worker/pool.o: worker/pool.c worker/pool.h \
  worker/worker-t.h worker/../master/config.h worker/../master/log.h \
  worker/../policies/accesslog.h worker/../policies/../master/config.h \
  worker/../policies/arena.h worker/../policies/policy.h \
  worker/../policies/../worker/http1.h worker/../shm/counters.h \
  worker/http1.h worker/io.h worker/loop.h worker/route.h

worker/pool.h:

worker/worker-t.h:

worker/../master/config.h:

worker/../master/log.h:

worker/../policies/accesslog.h:

worker/../policies/../master/config.h:

worker/../policies/arena.h:

worker/../policies/policy.h:

worker/../policies/../worker/http1.h:

worker/../shm/counters.h:

worker/http1.h:

worker/io.h:

worker/loop.h:

worker/route.h:
