build-clang/obj/worker/http1.o: worker/http1.c worker/http1.h

worker/http1.h:
