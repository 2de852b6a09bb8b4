/*
 * cache: the shared response cache policy (README, "Cache"). A route's
 * `cache` group turns it on; the responses live in the store
 * (shm/cache_store.h), so every worker serves what any worker stored.
 *
 * Per request: GET and HEAD are looked up (HEAD answered from the GET
 * entry); a fresh entry answers at once (X-Cache: HIT), with no write to
 * the store; a missing one is fetched by one request while the others
 * wait for it (collapsing, across workers); an expired one is served
 * stale while one background refresh runs, or when the upstream fails,
 * within its stale windows. Unsafe methods that succeed remove the
 * entries of their path, on any route.
 *
 * Hits are marked used in the LRU order in batches: each worker notes
 * the keys it served (once per CACHE_TOUCH_GRAIN_MS per key) and writes
 * them in one write txn per CACHE_TICK_MS, from cache_tick.
 */
#ifndef PORTICO_CACHE_H
#define PORTICO_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "../shm/counters.h"

#define CACHE_TICK_MS		1000
#define CACHE_TOUCH_GRAIN_MS	10000

/* cache_counters: this worker's counters slot (gwctl stats), or NULL. */
void cache_counters(struct worker_counters *wc);
/* cache_pending: whether hits wait to be marked used; cache_tick writes
 * them (the worker's timer, CACHE_TICK_MS apart). */
bool cache_pending(void);
void cache_tick(uint64_t now_ms);

#endif
