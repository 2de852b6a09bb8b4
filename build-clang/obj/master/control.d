build-clang/obj/master/control.o: master/control.c master/control-int.h \
  master/control.h master/log.h master/config.h master/master.h \
  master/../shm/counters.h master/msg.h

master/control-int.h:

master/control.h:

master/log.h:

master/config.h:

master/master.h:

master/../shm/counters.h:

master/msg.h:
