/*
 * gwctl breakers: the table of `gwctl breakers` from the master's reply
 * (master/control_breakers.c): every instance of every service with its
 * breaker state, consecutive failures, last error, since when, health
 * and last check.
 */
#ifndef PORTICO_GWCTL_BREAKERS_H
#define PORTICO_GWCTL_BREAKERS_H

#include <stdio.h>
#include <msgpack.h>

/* gwctl_breakers_print: the reply MAP as a table on F. */
void gwctl_breakers_print(FILE *f, const msgpack_object *map);

#endif
