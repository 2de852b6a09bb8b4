build-clang/obj/shm/counters.o: shm/counters.c shm/counters.h

shm/counters.h:
