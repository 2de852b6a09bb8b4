#include <errno.h>
#include <stddef.h>
#include <sys/mman.h>

#include "metrics.h"

_Static_assert(sizeof(struct metrics_route) % 64 == 0,
    "route blocks fill whole cache lines");
_Static_assert(sizeof(struct metrics_inst) % 64 == 0,
    "instance blocks fill whole cache lines");
_Static_assert(sizeof(struct metrics_whdr) % 64 == 0,
    "worker headers fill whole cache lines");

const uint64_t metrics_bounds_us[METRICS_NBOUNDS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 30000000,
};

struct metrics_region *
metrics_region_map(unsigned nworkers, unsigned nroutes, unsigned ninst)
{
	struct metrics_region *r;
	size_t stride, len;

	if (nworkers == 0 || nroutes == 0) {
		errno = EINVAL;
		return NULL;
	}
	stride = sizeof(struct metrics_whdr) +
	    (size_t)nroutes * sizeof(struct metrics_route) +
	    (size_t)ninst * sizeof(struct metrics_inst);
	len = sizeof(*r) + (size_t)nworkers * stride;
	r = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (r == MAP_FAILED)
		return NULL;
	r->nworkers = nworkers;
	r->nroutes = nroutes;
	r->ninst = ninst;
	r->stride = stride;
	r->len = len;
	return r;
}

void
metrics_region_unmap(struct metrics_region *r)
{
	if (r != NULL)
		munmap(r, r->len);
}

static void
hist_add(struct metrics_hist *d, const struct metrics_hist *s)
{
	unsigned i;

	for (i = 0; i < METRICS_BUCKETS; i++)
		d->bucket[i] += METRIC_GET(&s->bucket[i]);
	d->sum_us += METRIC_GET(&s->sum_us);
}

void
metrics_route_add(struct metrics_route *dst, const struct metrics_route *src)
{
	unsigned i;

	for (i = 0; i < METRICS_CLASSES; i++)
		dst->status[i] += METRIC_GET(&src->status[i]);
	dst->rate_limited += METRIC_GET(&src->rate_limited);
	dst->auth_refused += METRIC_GET(&src->auth_refused);
	for (i = 0; i < MC__COUNT; i++)
		dst->cache[i] += METRIC_GET(&src->cache[i]);
	dst->bytes_out += METRIC_GET(&src->bytes_out);
	hist_add(&dst->total, &src->total);
	hist_add(&dst->upstream, &src->upstream);
}

void
metrics_inst_add(struct metrics_inst *dst, const struct metrics_inst *src)
{
	unsigned i;

	for (i = 0; i < MU__COUNT; i++)
		dst->err[i] += METRIC_GET(&src->err[i]);
}

uint64_t
metrics_hist_count(const struct metrics_hist *h)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < METRICS_BUCKETS; i++)
		n += h->bucket[i];
	return n;
}

double
metrics_quantile(const struct metrics_hist *h, double q)
{
	uint64_t total = metrics_hist_count(h), below = 0;
	double rank, lo, hi;
	unsigned i;

	if (total == 0)
		return -1;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	rank = q * (double)total;
	for (i = 0; i < METRICS_BUCKETS; i++) {
		if (h->bucket[i] > 0 && (double)(below + h->bucket[i]) >= rank)
			break;
		below += h->bucket[i];
	}
	if (i >= METRICS_NBOUNDS)	/* +Inf: no upper bound to reach */
		return metrics_bounds_us[METRICS_NBOUNDS - 1] / 1e6;
	lo = i == 0 ? 0 : metrics_bounds_us[i - 1] / 1e6;
	hi = metrics_bounds_us[i] / 1e6;
	return lo + (hi - lo) * (rank - (double)below) /
	    (double)h->bucket[i];
}
