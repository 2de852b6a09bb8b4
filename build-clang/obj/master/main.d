build-clang/obj/master/main.o: master/main.c master/config.h \
  master/master.h master/../shm/counters.h

master/config.h:

master/master.h:

master/../shm/counters.h:
