build-clang/obj/master/config_route.o: master/config_route.c \
  master/config.h master/config-int.h

master/config.h:

master/config-int.h:
