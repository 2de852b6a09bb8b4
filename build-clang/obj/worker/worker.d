build-clang/obj/worker/worker.o: worker/worker.c worker/../master/log.h \
  worker/../master/config.h worker/../policies/ratelimit.h \
  worker/../policies/../master/config.h \
  worker/../policies/../master/msg.h worker/../policies/../shm/lease.h \
  worker/../policies/../shm/bucket.h worker/../policies/../shm/store.h \
  worker/../policies/../shm/../master/config.h worker/conn.h \
  worker/worker-t.h worker/../policies/accesslog.h \
  worker/../policies/arena.h worker/../policies/policy.h \
  worker/../policies/../worker/http1.h worker/../shm/counters.h \
  worker/http1.h worker/io.h worker/loop.h worker/route.h worker/pool.h \
  worker/upstream.h worker/worker.h

worker/../master/log.h:

worker/../master/config.h:

worker/../policies/ratelimit.h:

worker/../policies/../master/config.h:

worker/../policies/../master/msg.h:

worker/../policies/../shm/lease.h:

worker/../policies/../shm/bucket.h:

worker/../policies/../shm/store.h:

worker/../policies/../shm/../master/config.h:

worker/conn.h:

worker/worker-t.h:

worker/../policies/accesslog.h:

worker/../policies/arena.h:

worker/../policies/policy.h:

worker/../policies/../worker/http1.h:

worker/../shm/counters.h:

worker/http1.h:

worker/io.h:

worker/loop.h:

worker/route.h:

worker/pool.h:

worker/upstream.h:

worker/worker.h:
