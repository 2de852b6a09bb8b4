/*
 * resilience: the worker's side of circuit breakers, health checks, the
 * retry budget and bulkheads, plugged into the upstream client through
 * its hooks (struct up_hooks in worker-t.h).
 *
 * - available: an instance of a service with health checks is used only
 *   while its health record says up; one with a breaker only while the
 *   breaker lets the request through (closed, or a half-open probe taken
 *   in the store). Both come from the store (shm/breaker.h,
 *   shm/health.h) through a per-worker cache that is exact: an entry is
 *   used only while the store's last write txn id is the one it was read
 *   at, so a healthy service costs no store read and no write per
 *   request, and every worker sees every change at its next request.
 * - observe: a failure (connect error, reset, timeout, malformed
 *   response, a status the breaker counts) or a success after failures
 *   is written to the store; nothing else is. A state change is logged
 *   once, by the worker whose write made it.
 * - admit / release: the bulkhead. max_inflight is split between the
 *   workers (each takes max_inflight / workers, rounded up): counting
 *   node-wide in the store would be two writes per request.
 * - may_retry: the retry budget, per worker (see struct retry_budget).
 *
 * When the store cannot be opened, breakers and health are not
 * consulted (every instance is available): a broken store must not take
 * every service down.
 */
#ifndef PORTICO_RESILIENCE_H
#define PORTICO_RESILIENCE_H

#include <stdbool.h>
#include <stdint.h>

#include "worker-t.h"

/* resilience_init: the per-service state of W's config and the hooks in
 * w->up_hooks. 0, or -1 when out of memory. */
int resilience_init(struct worker *w);
void resilience_free(struct worker *w);
/* resilience_retry_after: seconds (>= 1) until service S may have an
 * instance again: the soonest an open breaker turns half-open, or a
 * health check interval when instances are down. */
unsigned resilience_retry_after(struct worker *w, const struct service_rt *s);

/*
 * The retry budget of one service in one worker: over the last window_s
 * seconds, retries may be at most pct % of the requests plus a reserve
 * of min_per_s a second (this worker's share of it: min_per_s x window_s
 * / workers, rounded up), so a client that sends few requests can still
 * retry while an outage cannot multiply the load (Finagle's retry budget
 * does the same). Per worker, because counting requests in the store
 * would be a write per request; the kernel spreads connections over the
 * workers, so each worker's share of requests and retries keeps the
 * node's ratio. Time is CLOCK_MONOTONIC ns; the functions read no clock.
 */
#define BUDGET_SLOTS	60		/* window_s is at most this */
struct retry_budget {
	uint32_t pct;			/* retries per 100 requests */
	uint32_t window_s;
	uint64_t reserve;		/* retries a window always allows */
	uint64_t sec[BUDGET_SLOTS];	/* the second each slot counts */
	uint32_t req[BUDGET_SLOTS];
	uint32_t ret[BUDGET_SLOTS];
	uint64_t refused;		/* retries refused, ever */
	unsigned cur;			/* the slot of [cur_from, cur_until) */
	uint64_t cur_from, cur_until;
};

void budget_init(struct retry_budget *b, unsigned pct, unsigned window_s,
    unsigned min_per_s, unsigned workers);
/* budget_request: one request started. */
void budget_request(struct retry_budget *b, uint64_t now_ns);
/* budget_retry: whether one retry may go now (it is counted), or not
 * (the refusal is counted in b->refused). */
bool budget_retry(struct retry_budget *b, uint64_t now_ns);
/* budget_window: requests and retries counted in the current window. */
void budget_window(const struct retry_budget *b, uint64_t now_ns,
    uint64_t *requests, uint64_t *retries);

#endif
