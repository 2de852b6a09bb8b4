build-clang/obj/worker/io.o: worker/io.c worker/io.h

worker/io.h:
