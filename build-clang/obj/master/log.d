build-clang/obj/master/log.o: master/log.c master/log.h master/config.h

master/log.h:

master/config.h:
