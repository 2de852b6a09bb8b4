build-clang/obj/tools/gwctl.o: tools/gwctl.c master/config.h master/msg.h

master/config.h:

master/msg.h:
