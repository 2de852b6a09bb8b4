build-clang/obj/master/master.o: master/master.c master/control.h \
  master/log.h master/config.h master/master.h master/../shm/counters.h \
  master/msg.h master/notify.h master/upgrade.h \
  master/../worker/worker.h master/../worker/../master/config.h \
  master/../worker/../shm/counters.h master/../shm/store.h \
  master/../shm/../master/config.h

master/control.h:

master/log.h:

master/config.h:

master/master.h:

master/../shm/counters.h:

master/msg.h:

master/notify.h:

master/upgrade.h:

master/../worker/worker.h:

master/../worker/../master/config.h:

master/../worker/../shm/counters.h:

master/../shm/store.h:

master/../shm/../master/config.h:
