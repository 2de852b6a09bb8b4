build-clang/obj/shm/store.o: shm/store.c shm/../master/log.h \
  shm/../master/config.h shm/bucket.h shm/store.h

shm/../master/log.h:

shm/../master/config.h:

shm/bucket.h:

shm/store.h:
