build-clang/obj/master/control.o: master/control.c master/control.h \
  master/log.h master/config.h master/master.h master/../shm/counters.h \
  master/msg.h master/../policies/ratelimit.h \
  master/../policies/../master/config.h \
  master/../policies/../master/msg.h master/../worker/route.h \
  master/../worker/../master/config.h master/../worker/upstream.h \
  master/../worker/worker-t.h master/../worker/../policies/accesslog.h \
  master/../worker/../policies/arena.h \
  master/../worker/../policies/policy.h \
  master/../policies/../worker/http1.h master/../policies/arena.h \
  master/../worker/../shm/counters.h master/../worker/http1.h \
  master/../worker/io.h master/../worker/loop.h

master/control.h:

master/log.h:

master/config.h:

master/master.h:

master/../shm/counters.h:

master/msg.h:

master/../policies/ratelimit.h:

master/../policies/../master/config.h:

master/../policies/../master/msg.h:

master/../worker/route.h:

master/../worker/../master/config.h:

master/../worker/upstream.h:

master/../worker/worker-t.h:

master/../worker/../policies/accesslog.h:

master/../worker/../policies/arena.h:

master/../worker/../policies/policy.h:

master/../policies/../worker/http1.h:

master/../policies/arena.h:

master/../worker/../shm/counters.h:

master/../worker/http1.h:

master/../worker/io.h:

master/../worker/loop.h:
