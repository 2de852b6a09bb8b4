/*
 * The retry budget's arithmetic at fixed times (no sleeps): the share of
 * requests, the sliding window, the reserve and its split between
 * workers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker/resilience.h"

#define MS	1000000ull
#define SEC	1000000000ull
#define T0	(1000 * SEC)

static unsigned
retries(struct retry_budget *b, unsigned n, uint64_t t)
{
	unsigned k = 0;

	while (n-- > 0)
		k += budget_retry(b, t);
	return k;
}

static void
test_share_of_requests(void **st)
{
	struct retry_budget b;
	unsigned i;

	(void)st;
	/* 20 % over 10 s, no reserve. */
	budget_init(&b, 20, 10, 0, 1);
	assert_int_equal(retries(&b, 1, T0), 0);	/* no request yet */
	assert_int_equal(b.refused, 1);
	for (i = 0; i < 100; i++)
		budget_request(&b, T0);
	assert_int_equal(retries(&b, 50, T0), 20);
	assert_int_equal(b.refused, 31);
	/* Five more requests: one more retry. */
	for (i = 0; i < 5; i++)
		budget_request(&b, T0 + 500 * MS);
	assert_int_equal(retries(&b, 5, T0 + 500 * MS), 1);
	/* 4 requests: 0.8 of a retry is not one. */
	budget_init(&b, 20, 10, 0, 1);
	for (i = 0; i < 4; i++)
		budget_request(&b, T0);
	assert_int_equal(retries(&b, 1, T0), 0);
	budget_request(&b, T0);
	assert_int_equal(retries(&b, 2, T0), 1);
}

static void
test_window_slides(void **st)
{
	struct retry_budget b;
	uint64_t reqs, rets;
	unsigned i;

	(void)st;
	budget_init(&b, 20, 10, 0, 1);
	for (i = 0; i < 100; i++)
		budget_request(&b, T0);
	assert_int_equal(retries(&b, 20, T0), 20);
	/* 9.9 s later the same second still counts: nothing left. */
	assert_int_equal(retries(&b, 1, T0 + 9 * SEC + 900 * MS), 0);
	budget_window(&b, T0 + 9 * SEC, &reqs, &rets);
	assert_int_equal(reqs, 100);
	assert_int_equal(rets, 20);
	/* 10 s later its requests and retries have left the window. */
	budget_window(&b, T0 + 10 * SEC, &reqs, &rets);
	assert_int_equal(reqs, 0);
	assert_int_equal(rets, 0);
	for (i = 0; i < 10; i++)
		budget_request(&b, T0 + 10 * SEC);
	assert_int_equal(retries(&b, 5, T0 + 10 * SEC), 2);
	/* A long idle gap: old slots never count again. */
	budget_window(&b, T0 + 3600 * SEC, &reqs, &rets);
	assert_int_equal(reqs + rets, 0);
}

static void
test_reserve(void **st)
{
	struct retry_budget b;
	unsigned i, got;

	(void)st;
	/* No requests (little traffic): 3 a second over 10 s, so 30 in any
	 * window, at once if need be. */
	budget_init(&b, 20, 10, 3, 1);
	assert_int_equal(b.reserve, 30);
	assert_int_equal(retries(&b, 40, T0), 30);
	assert_int_equal(retries(&b, 1, T0 + 9 * SEC), 0);
	assert_int_equal(retries(&b, 40, T0 + 10 * SEC), 30);
	/* On top of the share: 100 requests and the reserve, 50 in all. */
	budget_init(&b, 20, 10, 3, 1);
	for (i = 0; i < 100; i++)
		budget_request(&b, T0);
	assert_int_equal(retries(&b, 60, T0), 50);
	/* Steady: 10 requests a second for a minute, every one wanting a
	 * retry: a window never holds more than 20 % + 30. */
	budget_init(&b, 20, 10, 3, 1);
	for (i = 0, got = 0; i < 600; i++) {
		uint64_t t = T0 + i * 100 * MS, reqs, rets;

		budget_request(&b, t);
		got += retries(&b, 1, t);
		budget_window(&b, t, &reqs, &rets);
		assert_true(rets * 100 <= 20 * reqs + 30 * 100);
	}
	assert_true(got >= 250 && got <= 300);
}

static void
test_reserve_split_between_workers(void **st)
{
	struct retry_budget b;

	(void)st;
	/* 3 a second node-wide over 4 workers: 30 a window, 8 each
	 * (rounded up). */
	budget_init(&b, 0, 10, 3, 4);
	assert_int_equal(b.reserve, 8);
	assert_int_equal(retries(&b, 10, T0), 8);
	/* No minimum, no share: never. */
	budget_init(&b, 0, 10, 0, 4);
	budget_request(&b, T0);
	assert_int_equal(retries(&b, 3, T0 + SEC), 0);
	assert_int_equal(b.refused, 3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_share_of_requests),
		cmocka_unit_test(test_window_slides),
		cmocka_unit_test(test_reserve),
		cmocka_unit_test(test_reserve_split_between_workers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
