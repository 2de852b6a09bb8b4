/*
 * metrics (worker side): what a worker records into its slot of its
 * generation's metrics region (shm/metrics.h). An exchange is recorded
 * once, when it ends (metrics_exchange, from exchange_release); upstream
 * failures where the upstream client fails an attempt; client bytes where
 * they are read. Every record is a few plain adds to memory only this
 * worker writes: no lock, no syscall.
 */
#ifndef PORTICO_WORKER_METRICS_H
#define PORTICO_WORKER_METRICS_H

#include "../shm/metrics.h"
#include "worker-t.h"

struct exchange;
struct upclient;

/* metrics_open: W's blocks in REGION at worker slot SLOT (the slot number
 * within its generation). REGION NULL (a worker without a master, in
 * tests): a private region of one slot. Reads w->cfg. 0, or -1 with
 * errno set. */
int metrics_open(struct worker *w, struct metrics_region *region,
    unsigned slot);
void metrics_close(struct worker *w);

/* metrics_route_count: the route blocks a region for CFG needs: one per
 * route, one for requests no route matched, then one per service for the
 * calls aggregate routes made to it (metrics_call). */
unsigned metrics_route_count(const struct config *cfg);
/* metrics_inst_count: the instance blocks (every instance of every
 * service, in order); metrics_inst_index: the block of instance INST of
 * service SVC. */
unsigned metrics_inst_count(const struct config *cfg);
unsigned metrics_inst_index(const struct config *cfg, unsigned svc,
    unsigned inst);

/* metrics_exchange: X has ended: answered, refused, or its client gone
 * (counted as 499 when no byte of a response went out, as the access log
 * does). */
void metrics_exchange(struct worker *w, const struct exchange *x);
/* metrics_call: a call an aggregate route made to the service of UC has
 * ended with STATUS (the service's, or the 502 / 504 a proxied request
 * would have got), its head (or failure) UP_US after it began. */
void metrics_call(const struct upclient *uc, int status, uint64_t up_us);
/* metrics_upstream_error: an attempt of UC failed with WHY (an enum
 * up_fail); "no instance available" is no instance's failure and is not
 * counted. */
void metrics_upstream_error(const struct upclient *uc, int why);

/* metrics_bytes_in: N bytes read from a client. */
static inline void
metrics_bytes_in(struct worker *w, ssize_t n)
{
	if (n > 0)
		METRIC_ADD(&w->mx.hdr->bytes_in, (uint64_t)n);
}

#endif
