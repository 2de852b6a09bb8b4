build-clang/obj/master/upgrade.o: master/upgrade.c master/msg.h \
  master/upgrade.h

master/msg.h:

master/upgrade.h:
