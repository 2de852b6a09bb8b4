build-clang/obj/master/notify.o: master/notify.c master/notify.h

master/notify.h:
