/*
 * The metrics region and its arithmetic: bucket selection at the bounds,
 * quantiles interpolated within a bucket (as Prometheus'
 * histogram_quantile does), sums over blocks, and a region shared across
 * fork whose workers' blocks never overlap.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "shm/metrics.h"

static void
test_bucket_bounds_are_inclusive(void **st)
{
	(void)st;
	assert_int_equal(metrics_bucket(0), 0);
	assert_int_equal(metrics_bucket(500), 0);	/* le="0.0005" */
	assert_int_equal(metrics_bucket(501), 1);
	assert_int_equal(metrics_bucket(1000), 1);
	assert_int_equal(metrics_bucket(250000), 8);
	assert_int_equal(metrics_bucket(250001), 9);
	assert_int_equal(metrics_bucket(30000000), METRICS_NBOUNDS - 1);
	assert_int_equal(metrics_bucket(30000001), METRICS_NBOUNDS); /* +Inf */
	assert_int_equal(metrics_bucket(UINT64_MAX), METRICS_NBOUNDS);
}

static void
test_bounds_increase(void **st)
{
	unsigned i;

	(void)st;
	for (i = 1; i < METRICS_NBOUNDS; i++)
		assert_true(metrics_bounds_us[i] > metrics_bounds_us[i - 1]);
}

static void
test_hist_add_counts_and_sums(void **st)
{
	struct metrics_hist h;

	(void)st;
	memset(&h, 0, sizeof(h));
	metrics_hist_add(&h, 100);
	metrics_hist_add(&h, 700);
	metrics_hist_add(&h, 40000000);
	assert_int_equal(h.bucket[0], 1);
	assert_int_equal(h.bucket[1], 1);
	assert_int_equal(h.bucket[METRICS_NBOUNDS], 1);
	assert_int_equal(h.sum_us, 40000800);
	assert_int_equal(metrics_hist_count(&h), 3);
}

static void
test_quantile_empty(void **st)
{
	struct metrics_hist h;

	(void)st;
	memset(&h, 0, sizeof(h));
	assert_true(metrics_quantile(&h, 0.5) < 0);
}

/* 10 requests in (1 ms, 2.5 ms]: the median is halfway through it. */
static void
test_quantile_interpolates_within_bucket(void **st)
{
	struct metrics_hist h;

	(void)st;
	memset(&h, 0, sizeof(h));
	h.bucket[2] = 10;
	assert_float_equal(metrics_quantile(&h, 0.5), 0.00175, 1e-9);
	assert_float_equal(metrics_quantile(&h, 0.9), 0.00235, 1e-9);
	assert_float_equal(metrics_quantile(&h, 1.0), 0.0025, 1e-9);
	/* The first bucket starts at 0. */
	memset(&h, 0, sizeof(h));
	h.bucket[0] = 4;
	assert_float_equal(metrics_quantile(&h, 0.5), 0.00025, 1e-9);
}

/* Ranks spread over buckets: 90 fast, 9 at (50, 100] ms, 1 slow. */
static void
test_quantile_across_buckets(void **st)
{
	struct metrics_hist h;

	(void)st;
	memset(&h, 0, sizeof(h));
	h.bucket[0] = 90;
	h.bucket[7] = 9;	/* (0.05, 0.1] */
	h.bucket[10] = 1;	/* (0.5, 1] */
	/* rank 50 of 90 in the first bucket */
	assert_float_equal(metrics_quantile(&h, 0.5), 0.0005 * 50 / 90, 1e-9);
	/* rank 90 is the first bucket's end exactly */
	assert_float_equal(metrics_quantile(&h, 0.9), 0.0005, 1e-9);
	/* rank 95: 5 of 9 into (0.05, 0.1]; empty buckets skipped */
	assert_float_equal(metrics_quantile(&h, 0.95), 0.05 + 0.05 * 5 / 9,
	    1e-9);
	/* rank 99.5: half-way into (0.5, 1] */
	assert_float_equal(metrics_quantile(&h, 0.995), 0.75, 1e-9);
}

/* A rank past the last finite bound: that bound, as Prometheus says. */
static void
test_quantile_in_inf_bucket(void **st)
{
	struct metrics_hist h;

	(void)st;
	memset(&h, 0, sizeof(h));
	h.bucket[0] = 1;
	h.bucket[METRICS_NBOUNDS] = 9;
	assert_float_equal(metrics_quantile(&h, 0.5), 30.0, 1e-9);
	assert_float_equal(metrics_quantile(&h, 0.05), 0.00025, 1e-9);
}

static void
test_route_add(void **st)
{
	struct metrics_route a, b;

	(void)st;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	b.status[2] = 3;
	b.rate_limited = 2;
	b.auth_refused = 1;
	b.cache[MC_STALE] = 4;
	b.bytes_out = 100;
	b.total.bucket[3] = 5;
	b.total.sum_us = 77;
	b.upstream.bucket[METRICS_NBOUNDS] = 1;
	metrics_route_add(&a, &b);
	metrics_route_add(&a, &b);
	assert_int_equal(a.status[2], 6);
	assert_int_equal(a.rate_limited, 4);
	assert_int_equal(a.auth_refused, 2);
	assert_int_equal(a.cache[MC_STALE], 8);
	assert_int_equal(a.bytes_out, 200);
	assert_int_equal(a.total.bucket[3], 10);
	assert_int_equal(a.total.sum_us, 154);
	assert_int_equal(a.upstream.bucket[METRICS_NBOUNDS], 2);
}

/* Each worker's blocks are its own, cache-line aligned, inside the map;
 * a child's writes are seen by the parent. */
static void
test_region_layout_and_fork(void **st)
{
	struct metrics_region *r = metrics_region_map(3, 4, 5);
	uintptr_t lo, hi, prev_end = 0;
	unsigned w;
	pid_t pid;
	int status;

	(void)st;
	assert_non_null(r);
	assert_null(metrics_region_map(0, 4, 5));
	lo = (uintptr_t)r;
	hi = lo + r->len;
	for (w = 0; w < 3; w++) {
		uintptr_t h = (uintptr_t)metrics_whdr(r, w);
		uintptr_t ro = (uintptr_t)metrics_routes(r, w);
		uintptr_t in = (uintptr_t)metrics_insts(r, w);
		uintptr_t end = in + 5 * sizeof(struct metrics_inst);

		assert_int_equal(h % 64, 0);
		assert_int_equal(ro % 64, 0);
		assert_int_equal(in % 64, 0);
		assert_true(h >= prev_end && end <= hi && h >= lo);
		assert_int_equal(ro, h + sizeof(struct metrics_whdr));
		assert_int_equal(in, ro + 4 * sizeof(struct metrics_route));
		prev_end = end;
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		METRIC_ADD(&metrics_routes(r, 2)[3].status[5], 7);
		metrics_hist_add(&metrics_routes(r, 2)[3].total, 1500);
		METRIC_ADD(&metrics_insts(r, 1)[4].err[MU_TIMEOUT], 2);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(METRIC_GET(&metrics_routes(r, 2)[3].status[5]), 7);
	assert_int_equal(metrics_routes(r, 2)[3].total.bucket[2], 1);
	assert_int_equal(metrics_insts(r, 1)[4].err[MU_TIMEOUT], 2);
	/* The neighbours stay zero. */
	assert_int_equal(metrics_routes(r, 1)[3].status[5], 0);
	assert_int_equal(metrics_insts(r, 2)[4].err[MU_TIMEOUT], 0);
	metrics_region_unmap(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_bounds_are_inclusive),
		cmocka_unit_test(test_bounds_increase),
		cmocka_unit_test(test_hist_add_counts_and_sums),
		cmocka_unit_test(test_quantile_empty),
		cmocka_unit_test(test_quantile_interpolates_within_bucket),
		cmocka_unit_test(test_quantile_across_buckets),
		cmocka_unit_test(test_quantile_in_inf_bucket),
		cmocka_unit_test(test_route_add),
		cmocka_unit_test(test_region_layout_and_fork),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
