build-clang/obj/worker/loop.o: worker/loop.c worker/loop.h

worker/loop.h:
