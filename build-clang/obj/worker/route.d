build-clang/obj/worker/route.o: worker/route.c worker/route.h \
  worker/../master/config.h

worker/route.h:

worker/../master/config.h:
