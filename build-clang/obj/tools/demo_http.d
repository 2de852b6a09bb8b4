build-clang/obj/tools/demo_http.o: tools/demo_http.c tools/demo.h

tools/demo.h:
