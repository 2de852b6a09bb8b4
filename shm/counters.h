/*
 * counters: per-worker metrics in a plain shared mapping made by the master
 * before it forks. One cache-line-aligned slot per worker; each worker
 * writes only its own slot, with relaxed atomics, and the master reads all.
 */
#ifndef PORTICO_COUNTERS_H
#define PORTICO_COUNTERS_H

#include <stdint.h>
#include <sys/types.h>

struct worker_counters {
	_Alignas(64) uint64_t pid;	/* 0 = slot unused */
	uint64_t generation;
	uint64_t started_ms;		/* CLOCK_REALTIME, ms */
	uint64_t conns_open;		/* client connections open now */
	uint64_t conns_total;		/* accepted since start */
	uint64_t requests;		/* responses completed */
	uint64_t status[6];		/* by class: [1]=1xx .. [5]=5xx, [0]=other */
	uint64_t upstream_conns;	/* upstream connections open now */
	uint64_t tls_handshake_failures; /* client handshakes that failed */
	uint64_t tls_alloc_cached;	/* bytes the cache under OpenSSL's
					 * allocations holds (worker/tlsmem.h),
					 * as of the last TLS connection's end */
	uint64_t draining;		/* 1 once the worker drains */
	uint64_t ready;			/* 1 once its event loop runs */
	uint64_t stopping;		/* set by the master before SIGQUIT when
					 * the server stops (not a reload): idle
					 * connections then close at once */
	/* ---- response cache (policies/cache.c) ---- */
	uint64_t cache_hits;		/* answered from a fresh entry */
	uint64_t cache_misses;		/* went to the origin (cacheable
					 * request, no usable entry) */
	uint64_t cache_stale;		/* answered from an expired entry */
	uint64_t cache_bypass;		/* may not use the cache */
	uint64_t cache_collapsed;	/* waited on another's fetch, then
					 * answered from its entry */
	uint64_t cache_too_big;		/* over max_body: streamed uncached */
	uint64_t cache_refreshes;	/* background refreshes started */
	uint64_t cache_errors;		/* store errors (logged) */
	/* ---- end of the response cache ---- */
	/* transform.response.strip_fields */
	uint64_t strip_bodies;		/* JSON bodies read through */
	uint64_t strip_removed;		/* members removed from them */
	uint64_t strip_not_json;	/* passed unchanged: not JSON (type or
					 * content) */
	uint64_t strip_invalid;		/* passed unchanged from where they
					 * stopped being JSON */
	uint64_t strip_encoded;		/* passed unchanged: Content-Encoding */
	/* aggregate routes */
	uint64_t agg_requests;		/* aggregates answered */
	uint64_t agg_degraded;		/* of them, with a degraded part */
	uint64_t agg_failed;		/* of them, 502: every call failed */
	uint64_t agg_parts_degraded;	/* parts that took their fallback */
};

struct counters {
	unsigned nslots;
	struct worker_counters slot[];
};

/* counters_map: a zeroed shared anonymous mapping of NSLOTS slots; NULL on
 * failure. It survives fork and is shared by every child. */
struct counters *counters_map(unsigned nslots);

#define COUNTER_ADD(p, v)	__atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define COUNTER_SUB(p, v)	__atomic_fetch_sub((p), (v), __ATOMIC_RELAXED)
#define COUNTER_SET(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define COUNTER_GET(p)		__atomic_load_n((p), __ATOMIC_RELAXED)

#endif
