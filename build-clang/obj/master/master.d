build-clang/obj/master/master.o: master/master.c master/control.h \
  master/listeners.h master/log.h master/config.h master/master.h \
  master/../shm/counters.h master/notify.h master/reload.h \
  master/supervise.h master/upgrade.h master/../shm/store.h \
  master/../shm/../master/config.h

master/control.h:

master/listeners.h:

master/log.h:

master/config.h:

master/master.h:

master/../shm/counters.h:

master/notify.h:

master/reload.h:

master/supervise.h:

master/upgrade.h:

master/../shm/store.h:

master/../shm/../master/config.h:
