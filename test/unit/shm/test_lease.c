/*
 * The per-process lease table: lookups after many adds and drops (long
 * keys included) agree with a plain reference, the table grows to the
 * keys held and stops at LEASE_CAP; the timer work on a real store.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shm/lease.h"

enum { N = 20000 };

static int
make(char *buf, int i)
{
	/* Every 7th key is too long to sit inline. */
	if (i % 7 == 0)
		return snprintf(buf, 200, "tier%cheader:x-api-key%c%0120d", 0,
		    0, i);
	return snprintf(buf, 200, "tier%cheader:x-api-key%ck%d", 0, 0, i);
}

static void
test_table_matches_reference(void **st)
{
	struct lease_table *t = lease_table_new();
	static unsigned char held[N];
	struct lease *e;
	char key[200];
	unsigned seed = 7;
	int i, n, round;
	size_t count = 0;

	(void)st;
	assert_non_null(t);
	for (round = 0; round < 6; round++) {
		for (i = 0; i < N; i++) {
			seed = seed * 1103515245 + 12345;
			if ((seed >> 16) % 3 != 0)
				continue;
			n = make(key, i);
			if (held[i]) {
				e = lease_get(t, key, (size_t)n,
				    lease_hash(t, key, (size_t)n));
				assert_non_null(e);
				assert_int_equal(e->tokens, (uint32_t)i);
				lease_drop(t, e);
				held[i] = 0;
				count--;
			} else {
				e = lease_put(t, key, (size_t)n,
				    lease_hash(t, key, (size_t)n));
				assert_non_null(e);
				assert_int_equal(e->tokens, 0);
				e->tokens = (uint32_t)i;
				held[i] = 1;
				count++;
			}
		}
		assert_int_equal(lease_count(t), count);
		for (i = 0; i < N; i++) {
			n = make(key, i);
			e = lease_get(t, key, (size_t)n,
			    lease_hash(t, key, (size_t)n));
			if (!held[i]) {
				assert_null(e);
				continue;
			}
			assert_non_null(e);
			assert_int_equal(e->tokens, (uint32_t)i);
			assert_int_equal(e->klen, n);
			assert_memory_equal(lease_key(e), key, (size_t)n);
		}
	}
	lease_table_free(t);
}

static void
test_table_cap(void **st)
{
	struct lease_table *t = lease_table_new();
	char key[32];
	int i, n;

	(void)st;
	for (i = 0; i < LEASE_CAP; i++) {
		n = snprintf(key, sizeof(key), "k%d", i);
		assert_non_null(lease_put(t, key, (size_t)n,
		    lease_hash(t, key, (size_t)n)));
	}
	assert_null(lease_put(t, "one more", 8, lease_hash(t, "one more", 8)));
	/* An existing key is still found. */
	assert_non_null(lease_put(t, "k5", 2, lease_hash(t, "k5", 2)));
	lease_table_free(t);
}

/* The timer on a real store: returns what a bucket lacks, in batches,
 * keeps a lease on a refilled bucket while it is in use, drops it after,
 * and lease_return_all empties the table. */
static void
test_tick(void **st)
{
	const struct bucket_params slow = { 1, 3600, 100 };
	const struct bucket_params fast = { 1000000000, 1, 1000000000 };
	struct lease_tick_stats ts;
	struct lease_table *t = lease_table_new();
	struct store *s;
	struct lease *e;
	struct bucket b;
	char dir[64], why[256], key[32], cmd[96];
	uint64_t now = 1000;
	int i, n, got;

	(void)st;
	snprintf(dir, sizeof(dir), "/dev/shm/ptc-lease-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(store_create(dir, 8, 2, why, sizeof(why)), 0);
	assert_int_equal(store_open(dir, 2, &s), 0);
	/* 150 slow leases of 10 (return them) and 50 fast ones (keep). */
	for (i = 0; i < 200; i++) {
		const struct bucket_params *p = i < 150 ? &slow : &fast;

		n = snprintf(key, sizeof(key), "key-%d", i);
		got = bucket_lease(s, key, (size_t)n, p, store_now_ns(), 10, 1,
		    NULL);
		assert_int_equal(got, 10);
		e = lease_put(t, key, (size_t)n, lease_hash(t, key, (size_t)n));
		assert_non_null(e);
		e->p = *p;
		e->tokens = 10;
		e->used_ms = e->checked_ms = now;
	}
	assert_int_equal(lease_tick(t, s, now + LEASE_CHECK_MS - 1, &ts), 0);
	assert_int_equal(ts.checked, 0);
	assert_int_equal(lease_tick(t, s, now + LEASE_CHECK_MS, &ts), 0);
	assert_int_equal(ts.checked, 200);
	assert_int_equal(ts.returned, 150);
	assert_int_equal(ts.kept, 50);
	assert_true(ts.txns >= 150 / LEASE_RETURN_TXN);
	assert_int_equal(lease_count(t), 50);
	assert_int_equal(bucket_peek(s, "key-3", 5, &slow, store_now_ns(), &b),
	    1);
	assert_int_equal(bucket_whole(&b), 100);
	/* Idle past LEASE_KEEP_MS: dropped. */
	assert_int_equal(lease_tick(t, s, now + LEASE_KEEP_MS + LEASE_CHECK_MS,
	    &ts), 0);
	assert_int_equal(ts.dropped, 50);
	assert_int_equal(lease_count(t), 0);
	/* At exit, everything held goes back. */
	got = bucket_lease(s, "key-1", 5, &slow, store_now_ns(), 10, 1, NULL);
	assert_int_equal(got, 10);
	e = lease_put(t, "key-1", 5, lease_hash(t, "key-1", 5));
	e->p = slow;
	e->tokens = 10;
	assert_int_equal(lease_return_all(t, s), 0);
	assert_int_equal(lease_count(t), 0);
	assert_int_equal(bucket_peek(s, "key-1", 5, &slow, store_now_ns(), &b),
	    1);
	assert_int_equal(bucket_whole(&b), 100);
	lease_table_free(t);
	store_close(s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_matches_reference),
		cmocka_unit_test(test_table_cap),
		cmocka_unit_test(test_tick),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
