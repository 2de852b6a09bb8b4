build-clang/obj/master/msg.o: master/msg.c master/msg.h

master/msg.h:
