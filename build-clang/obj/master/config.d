build-clang/obj/master/config.o: master/config.c master/config.h \
  master/config-int.h

master/config.h:

master/config-int.h:
