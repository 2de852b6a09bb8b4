/*
 * stats: the master's side of the metrics. Each generation of workers
 * gets a metrics region (shm/metrics.h) sized for its own configuration,
 * mapped before its workers are forked; this module keeps them, sums them
 * when asked (the admin listener's /metrics, gwctl stats), and keeps the
 * totals that must outlive a generation.
 *
 * Series are keyed by name: a route by its name, an instance by its
 * service and address. A sum is the key's carried total plus its blocks
 * in every region still alive (serving, starting, draining), so a route
 * that a reload keeps keeps counting from where it was, never backwards.
 * Once no worker of a generation is left, its region is folded into the
 * carried totals and unmapped; a key that no live generation has any more
 * (a route a reload removed, once the old generation has drained) is
 * dropped. Once a second the master samples each route's request total
 * into a ring of 11, from which rates over the last 10 s come.
 */
#ifndef PORTICO_STATS_H
#define PORTICO_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../shm/metrics.h"

struct config;
struct master;
struct stats;
struct stats_gen;

#define STATS_RING	11	/* samples, one a second: a 10 s window */

/* State of an instance as the shared store shows it (resilience). */
#define STATS_UNKNOWN	(-1)	/* not checked / no breaker state known */
enum stats_health { STATS_DOWN = 0, STATS_UP = 1 };
enum stats_breaker { STATS_CLOSED = 0, STATS_HALF_OPEN = 1, STATS_OPEN = 2 };

struct stats_route {
	const char *name;		/* NULL: requests no route matched */
	const char *service;		/* NULL: none (aggregate, no route) */
	bool cache;			/* the route has a cache policy */
	bool serving;			/* in the serving configuration */
	struct metrics_route m;		/* totals */
	double rate;			/* requests/s over the window */
};

struct stats_inst {
	const char *service;
	const char *addr;
	struct metrics_inst m;
	int health;			/* STATS_UP / STATS_DOWN / STATS_UNKNOWN */
	int breaker;			/* enum stats_breaker / STATS_UNKNOWN */
};

struct stats_service {
	const char *name;
	struct metrics_route m;		/* the sum of its routes */
	double rate;
	uint64_t err[MU__COUNT];	/* the sum of its instances */
	size_t first_inst, ninst;	/* its instances in view.insts */
};

struct stats_view {
	struct stats_route *routes;	/* serving routes in order, then
					 * draining ones, then no-route */
	size_t nroutes;
	struct stats_inst *insts;
	size_t ninst;
	struct stats_route *calls;	/* by service: the calls aggregate
					 * routes made to it (name: the
					 * service's; in its service row) */
	size_t ncalls;
	struct stats_service *services;
	size_t nservices;
	double window_s;		/* what the rates span (0: none yet) */
	uint64_t bytes_in;
	uint64_t conns_open, upstream_conns;
	uint64_t tls_handshake_failures; /* every slot, ever: monotonic */
	uint64_t reloads_ok, reloads_failed, restarts;
	unsigned workers_serving, workers_starting, workers_draining;
	uint64_t start_unix_ms;		/* when the master started */
};

/* stats_new / stats_free: the master's stats, no generation yet. */
struct stats *stats_new(void);
void stats_free(struct stats *st);

/* stats_gen_new: map a region for a generation of CFG (names are copied:
 * CFG may go before the region does). NULL (errno set) on failure. The
 * generation lives while a master slot points at it (master_slot.mg). */
struct stats_gen *stats_gen_new(struct stats *st, const struct config *cfg);
struct metrics_region *stats_gen_region(const struct stats_gen *g);

/* Master events counted here. */
void stats_reloaded(struct stats *st, bool ok);
void stats_restarted(struct stats *st);

/* stats_tick: once per master loop turn: fold the regions no slot uses
 * any more, and take the once-a-second sample. */
void stats_tick(struct master *m, uint64_t now);

/* stats_view: every series summed now. 0, or -1 when out of memory;
 * stats_view_free after either. Strings live until the next stats_tick. */
int stats_view(struct master *m, struct stats_view *v);
void stats_view_free(struct stats_view *v);

/* stats_code_class: "1xx".."5xx", "other" for a status class index. */
const char *stats_code_class(unsigned i);
/* stats_requests: the requests a route block counts. */
uint64_t stats_requests(const struct metrics_route *r);

#endif
