build-clang/obj/policies/arena.o: policies/arena.c policies/arena.h

policies/arena.h:
