build-clang/obj/master/config_value.o: master/config_value.c \
  master/config.h master/config-int.h

master/config.h:

master/config-int.h:
