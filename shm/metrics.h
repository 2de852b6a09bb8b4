/*
 * metrics: one generation's per-worker metrics in a plain shared mapping
 * (no LMDB, no locks). The master maps a region for each generation of
 * workers before it forks them, sized from that generation's
 * configuration: per worker, a header, one block per route (plus one for
 * requests that matched no route) and one per upstream instance. Each
 * worker writes only its own slot, with single-writer relaxed stores (a
 * plain add, no locked instruction, no syscall); the master reads every
 * slot and sums. A respawned worker keeps adding to its slot, so a sum
 * never goes backwards while the region lives.
 *
 * Layout, all blocks 64-byte aligned so two workers never share a cache
 * line:
 *   region header | worker 0: [hdr][route 0..nroutes-1][inst 0..ninst-1]
 *                 | worker 1: ...
 *
 * Latency histograms have fixed buckets (METRICS_BOUNDS_US, plus +Inf),
 * counted per bucket (not cumulative); sums are in microseconds.
 */
#ifndef PORTICO_METRICS_H
#define PORTICO_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Status classes: [0] other, [1] 1xx .. [5] 5xx. */
#define METRICS_CLASSES		6
/* Finite bucket bounds, then +Inf. */
#define METRICS_NBOUNDS		15
#define METRICS_BUCKETS		(METRICS_NBOUNDS + 1)

/* Upper bounds of the latency buckets, in microseconds: 0.5 ms .. 30 s. */
extern const uint64_t metrics_bounds_us[METRICS_NBOUNDS];

enum metrics_cache {
	MC_HIT, MC_MISS, MC_STALE, MC_BYPASS, MC__COUNT
};

/* Upstream failures by kind (a failed attempt each, retried or not). */
enum metrics_uperr {
	MU_CONNECT,		/* refused, unreachable or connect timed out */
	MU_RESET,		/* closed or reset before a response */
	MU_TIMEOUT,		/* no (complete) response in time */
	MU_BAD,			/* malformed response */
	MU__COUNT
};

struct metrics_hist {
	uint64_t bucket[METRICS_BUCKETS];	/* count per bucket */
	uint64_t sum_us;
};

/* One route in one worker: 48 words, 6 cache lines. */
struct metrics_route {
	uint64_t status[METRICS_CLASSES];	/* requests by status class */
	uint64_t rate_limited;			/* refused with 429 */
	uint64_t auth_refused;			/* refused with 401 / 403 */
	uint64_t cache[MC__COUNT];		/* by cache result */
	uint64_t bytes_out;			/* bytes sent to clients */
	struct metrics_hist total;		/* head complete -> exchange end */
	struct metrics_hist upstream;		/* first attempt -> response head
						 * (or failure) */
	uint64_t pad_;
};

/* One upstream instance in one worker. */
struct metrics_inst {
	uint64_t err[MU__COUNT];
	uint64_t pad_[8 - MU__COUNT];
};

/* The worker's own header. */
struct metrics_whdr {
	uint64_t bytes_in;			/* bytes read from clients */
	uint64_t pad_[7];
};

struct metrics_region {
	unsigned nworkers;
	unsigned nroutes;			/* blocks per worker, the
						 * no-route block included */
	unsigned ninst;
	size_t stride;				/* bytes per worker */
	size_t len;				/* bytes mapped */
	_Alignas(64) char data[];
};

/* Single writer: a plain load, add and store, never torn for a reader
 * on an aligned word. */
#define METRIC_ADD(p, v) \
	__atomic_store_n((p), __atomic_load_n((p), __ATOMIC_RELAXED) + (v), \
	    __ATOMIC_RELAXED)
#define METRIC_GET(p)	__atomic_load_n((p), __ATOMIC_RELAXED)

/* metrics_region_map: a zeroed shared anonymous mapping for NWORKERS
 * workers with NROUTES route blocks and NINST instance blocks each; NULL
 * (errno set) on failure. It survives fork: map it before forking the
 * workers that write it. */
struct metrics_region *metrics_region_map(unsigned nworkers,
    unsigned nroutes, unsigned ninst);
void metrics_region_unmap(struct metrics_region *r);

static inline struct metrics_whdr *
metrics_whdr(struct metrics_region *r, unsigned w)
{
	return (struct metrics_whdr *)(r->data + (size_t)w * r->stride);
}

static inline struct metrics_route *
metrics_routes(struct metrics_region *r, unsigned w)
{
	return (struct metrics_route *)(r->data + (size_t)w * r->stride +
	    sizeof(struct metrics_whdr));
}

static inline struct metrics_inst *
metrics_insts(struct metrics_region *r, unsigned w)
{
	return (struct metrics_inst *)((char *)metrics_routes(r, w) +
	    (size_t)r->nroutes * sizeof(struct metrics_route));
}

/* metrics_bucket: the bucket index of a duration. */
static inline unsigned
metrics_bucket(uint64_t us)
{
	unsigned i;

	for (i = 0; i < METRICS_NBOUNDS; i++)
		if (us <= metrics_bounds_us[i])
			return i;
	return METRICS_NBOUNDS;
}

/* metrics_hist_add: one observation of US microseconds (single writer). */
static inline void
metrics_hist_add(struct metrics_hist *h, uint64_t us)
{
	METRIC_ADD(&h->bucket[metrics_bucket(us)], 1);
	METRIC_ADD(&h->sum_us, us);
}

/* metrics_route_add / metrics_inst_add: DST += SRC, reading SRC with
 * relaxed loads (SRC may be a live worker's block). */
void metrics_route_add(struct metrics_route *dst,
    const struct metrics_route *src);
void metrics_inst_add(struct metrics_inst *dst,
    const struct metrics_inst *src);

/* metrics_hist_count: the observations in H. */
uint64_t metrics_hist_count(const struct metrics_hist *h);

/*
 * metrics_quantile: the Q-quantile (0 < Q < 1) of H in seconds, estimated
 * the way Prometheus' histogram_quantile does: find the bucket holding the
 * rank Q x count and interpolate linearly between its lower and upper
 * bounds (the first bucket starts at 0). A rank in the +Inf bucket gives
 * the largest finite bound. Returns -1 when H is empty.
 */
double metrics_quantile(const struct metrics_hist *h, double q);

#endif
