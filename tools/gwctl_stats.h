/*
 * gwctl stats: the tables of a `stats` reply (master/control_stats.c):
 * routes, services with their instances, and workers; or one route in
 * detail. gwctl.c sends the request and runs the --watch loop.
 */
#ifndef PORTICO_GWCTL_STATS_H
#define PORTICO_GWCTL_STATS_H

#include <stdio.h>
#include <msgpack.h>

/* gwctl_stats_print: the tables of a whole reply. */
void gwctl_stats_print(FILE *f, const msgpack_object *reply);
/* gwctl_stats_print_route: the reply to `stats --route NAME`. */
void gwctl_stats_print_route(FILE *f, const msgpack_object *reply);

#endif
