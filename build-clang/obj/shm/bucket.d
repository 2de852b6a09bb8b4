build-clang/obj/shm/bucket.o: shm/bucket.c shm/bucket.h shm/store.h \
  shm/../master/config.h

shm/bucket.h:

shm/store.h:

shm/../master/config.h:
