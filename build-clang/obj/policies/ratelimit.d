build-clang/obj/policies/ratelimit.o: policies/ratelimit.c \
  policies/../master/log.h policies/../master/config.h \
  policies/../shm/bucket.h policies/../shm/store.h \
  policies/../shm/../master/config.h policies/../shm/lease.h \
  policies/policy.h policies/../worker/http1.h policies/arena.h \
  policies/ratelimit.h policies/../master/msg.h

policies/../master/log.h:

policies/../master/config.h:

policies/../shm/bucket.h:

policies/../shm/store.h:

policies/../shm/../master/config.h:

policies/../shm/lease.h:

policies/policy.h:

policies/../worker/http1.h:

policies/arena.h:

policies/ratelimit.h:

policies/../master/msg.h:
