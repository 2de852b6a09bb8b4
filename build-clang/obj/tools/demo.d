build-clang/obj/tools/demo.o: tools/demo.c tools/demo.h

tools/demo.h:
