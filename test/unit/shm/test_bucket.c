/*
 * Token bucket arithmetic, the stored format, and the lease protocol on a
 * real LMDB environment in a temporary directory under /dev/shm.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <msgpack.h>

#include "shm/bucket.h"
#include "shm/store.h"

#define MS	1000000ull
#define SEC	1000000000ull
#define T0	(1000 * SEC)

static const struct bucket_params P50 = { 50, 1, 10 };

static void
test_refill(void **st)
{
	struct bucket b;

	(void)st;
	bucket_init(&b, &P50, T0);
	assert_int_equal(bucket_whole(&b), 10);
	assert_int_equal(bucket_take(&b, 25), 10);
	assert_int_equal(bucket_whole(&b), 0);
	bucket_refill(&b, T0 + 100 * MS);	/* 50/s: 5 in 100 ms */
	assert_int_equal(bucket_whole(&b), 5);
	bucket_refill(&b, T0 + 110 * MS);
	assert_int_equal(bucket_whole(&b), 5);
	assert_int_equal(b.tokens, 5 * BUCKET_ONE + BUCKET_ONE / 2);
	/* Slow tiers: 100 per 60 s is one token every 600 ms. */
	{
		const struct bucket_params slow = { 100, 60, 20 };

		bucket_init(&b, &slow, T0);
		bucket_take(&b, 20);
		bucket_refill(&b, T0 + 599 * MS);
		assert_int_equal(bucket_whole(&b), 0);
		bucket_refill(&b, T0 + 600 * MS);
		assert_int_equal(bucket_whole(&b), 1);
		assert_int_equal(bucket_wait_ns(&b, 2), 600 * MS);
	}
}

static void
test_burst_cap(void **st)
{
	struct bucket b;

	(void)st;
	bucket_init(&b, &P50, T0);
	bucket_take(&b, 3);
	bucket_refill(&b, T0 + 3600 * SEC);
	assert_int_equal(bucket_whole(&b), 10);
	assert_int_equal(b.tokens, 10 * BUCKET_ONE);
	bucket_take(&b, 2);
	bucket_give(&b, 5);			/* capped, never above burst */
	assert_int_equal(b.tokens, 10 * BUCKET_ONE);
	bucket_give(&b, UINT64_MAX / 2);	/* no overflow either */
	assert_int_equal(b.tokens, 10 * BUCKET_ONE);
	/* Huge rates and times: 128-bit products, no wrap. */
	{
		const struct bucket_params big = { 1ull << 40, 1, 1ull << 40 };

		bucket_init(&b, &big, 0);
		bucket_take(&b, 1ull << 40);
		bucket_refill(&b, UINT64_MAX / 2);
		assert_int_equal(bucket_whole(&b), 1ull << 40);
	}
}

static void
test_clock_backward(void **st)
{
	struct bucket b;

	(void)st;
	bucket_init(&b, &P50, T0 + 10 * SEC);
	bucket_take(&b, 10);
	/* A caller with an older clock reading adds nothing and does not
	 * pull last_ns back (that time would be counted twice). */
	bucket_refill(&b, T0 + 5 * SEC);
	assert_int_equal(b.tokens, 0);
	assert_int_equal(b.last_ns, T0 + 10 * SEC);
	bucket_refill(&b, T0 + 10 * SEC + 100 * MS);
	assert_int_equal(bucket_whole(&b), 5);
	/* A last_ns far in the future is restarted from now instead of
	 * freezing the bucket for that long. */
	bucket_take(&b, 5);
	b.last_ns = T0 + 3600 * SEC;
	bucket_refill(&b, T0 + 11 * SEC);
	assert_int_equal(b.last_ns, T0 + 11 * SEC);
	assert_int_equal(bucket_whole(&b), 0);
	bucket_refill(&b, T0 + 11 * SEC + 40 * MS);
	assert_int_equal(bucket_whole(&b), 2);
}

static void
test_wait(void **st)
{
	struct bucket b;
	struct bucket_view v;

	(void)st;
	bucket_init(&b, &P50, T0);
	assert_int_equal(bucket_wait_ns(&b, 1), 0);
	bucket_take(&b, 10);
	assert_int_equal(bucket_wait_ns(&b, 1), 20 * MS);
	assert_int_equal(bucket_wait_ns(&b, 10), 200 * MS);
	bucket_view_of(&b, &v);
	assert_int_equal(v.left, 0);
	assert_int_equal(v.wait_ns, 20 * MS);
	assert_int_equal(v.full_ns, 200 * MS);
}

static void
test_msgpack_round_trip(void **st)
{
	struct bucket b, c;
	char buf[BUCKET_VALUE_MAX], bad[64];
	struct store_buf sb = { bad, 0, sizeof(bad), 0 };
	msgpack_packer pk;
	int n, i;

	(void)st;
	bucket_init(&b, &P50, T0);
	bucket_take(&b, 7);
	b.tokens += 12345;
	n = bucket_encode(&b, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal((unsigned char)buf[0], 0x96);	/* fixarray of 6 */
	assert_int_equal(buf[1], BUCKET_FORMAT);	/* version first */
	memset(&c, 0, sizeof(c));
	assert_int_equal(bucket_decode(buf, (size_t)n, &c), 0);
	assert_memory_equal(&b, &c, sizeof(b));
	/* Every truncation is refused, never read past. */
	for (i = 0; i < n; i++)
		assert_int_equal(bucket_decode(buf, (size_t)i, &c), -1);
	assert_int_equal(bucket_encode(&b, buf, 8), -1);
	/* Another format version, and tokens above the burst. */
	msgpack_packer_init(&pk, &sb, store_buf_write);
	msgpack_pack_array(&pk, 6);
	msgpack_pack_uint32(&pk, 2);
	for (i = 0; i < 5; i++)
		msgpack_pack_uint32(&pk, 10);
	assert_int_equal(bucket_decode(bad, sb.len, &c), -1);
	sb.len = 0;
	msgpack_pack_array(&pk, 6);
	msgpack_pack_uint32(&pk, 1);
	msgpack_pack_uint64(&pk, 11 * BUCKET_ONE);
	for (i = 0; i < 4; i++)
		msgpack_pack_uint32(&pk, 10);
	assert_int_equal(bucket_decode(bad, sb.len, &c), -1);
	/* A later format's extra trailing fields are fine. */
	sb.len = 0;
	msgpack_pack_array(&pk, 7);
	msgpack_pack_uint32(&pk, 1);
	msgpack_pack_uint64(&pk, 3 * BUCKET_ONE);
	for (i = 0; i < 4; i++)
		msgpack_pack_uint32(&pk, 10);
	msgpack_pack_str(&pk, 1);
	msgpack_pack_str_body(&pk, "x", 1);
	assert_int_equal(bucket_decode(bad, sb.len, &c), 0);
	assert_int_equal(bucket_whole(&c), 3);
	/* Any integer width and an array16 header read the same; a
	 * negative or non-integer field is refused. */
	{
		static const unsigned char wide[] = {
			0xdc, 0x00, 0x06, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1,
			0xce, 0x00, 0x1e, 0x84, 0x80, 0xcd, 0x01, 0x00,
			0xcc, 0x05, 0x01, 0x0a
		};
		unsigned char neg[sizeof(wide)];

		assert_int_equal(bucket_decode(wide, sizeof(wide), &c), 0);
		assert_int_equal(c.tokens, 2 * BUCKET_ONE);
		assert_int_equal(c.last_ns, 256);
		assert_int_equal(c.p.rate, 5);
		assert_int_equal(c.p.per_s, 1);
		assert_int_equal(c.p.burst, 10);
		memcpy(neg, wide, sizeof(wide));
		neg[sizeof(neg) - 1] = 0xff;	/* -1 */
		assert_int_equal(bucket_decode(neg, sizeof(neg), &c), -1);
		neg[sizeof(neg) - 1] = 0xc3;	/* true */
		assert_int_equal(bucket_decode(neg, sizeof(neg), &c), -1);
	}
}

/* ---- on a real store --------------------------------------------- */

struct fx {
	char dir[64];
	struct store *s;
};

static int
setup_store(void **st)
{
	struct fx *f = calloc(1, sizeof(*f));
	char why[256];

	snprintf(f->dir, sizeof(f->dir), "/dev/shm/ptc-bucket-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	if (store_create(f->dir, 4, 2, why, sizeof(why)) < 0) {
		fprintf(stderr, "%s\n", why);
		return -1;
	}
	if (store_open(f->dir, 2, &f->s) < 0)
		return -1;
	*st = f;
	return 0;
}

static int
teardown_store(void **st)
{
	struct fx *f = *st;
	char cmd[128];

	store_close(f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static size_t
last_txnid(struct store *s)
{
	MDB_envinfo info;

	mdb_env_info(s->env, &info);
	return info.me_last_txnid;
}

static void
test_lease_accounting(void **st)
{
	struct fx *f = *st;
	struct bucket_view v;
	struct bucket b;
	size_t txn;

	/* burst 10: leases of at most 4, a quarter of what is left. */
	assert_int_equal(bucket_lease(f->s, "k", 1, &P50, T0, 4, 1, &v), 4);
	assert_int_equal(v.left, 6);
	assert_int_equal(bucket_lease(f->s, "k", 1, &P50, T0, 4, 4, &v), 1);
	assert_int_equal(bucket_lease(f->s, "k", 1, &P50, T0, 4, 1, &v), 4);
	assert_int_equal(bucket_lease(f->s, "k", 1, &P50, T0, 4, 1, &v), 1);
	assert_int_equal(v.left, 0);
	/* Empty: refused from a read txn, nothing written. */
	txn = last_txnid(f->s);
	assert_int_equal(bucket_lease(f->s, "k", 1, &P50, T0, 4, 1, &v), 0);
	assert_int_equal(last_txnid(f->s), txn);
	assert_int_equal(v.wait_ns, 20 * MS);
	/* Unspent tokens go back. */
	assert_int_equal(bucket_return(f->s, "k", 1, &P50, T0, 3), 0);
	assert_int_equal(bucket_peek(f->s, "k", 1, &P50, T0, &b), 1);
	assert_int_equal(bucket_whole(&b), 3);
	/* Another key is independent. */
	assert_int_equal(bucket_lease(f->s, "j", 1, &P50, T0, 64, 1, &v), 10);
	assert_int_equal(bucket_peek(f->s, "k", 1, &P50, T0, &b), 1);
	assert_int_equal(bucket_whole(&b), 3);
	/* Changed tier settings: the bucket starts over, full. */
	{
		const struct bucket_params p2 = { 50, 1, 30 };

		assert_int_equal(bucket_lease(f->s, "k", 1, &p2, T0, 64, 1,
		    &v), 30);
	}
	/* Reset deletes: absent is full. */
	assert_int_equal(bucket_reset(f->s, "j", 1), 1);
	assert_int_equal(bucket_reset(f->s, "j", 1), 0);
	assert_int_equal(bucket_peek(f->s, "j", 1, &P50, T0, &b), 0);
	assert_int_equal(bucket_whole(&b), 10);
}

/* Four "workers" with their own leases hammer one bucket over simulated
 * time: spent never exceeds burst + rate * t, and at the end spent plus
 * what is still leased or in the bucket accounts for every token. */
static void
test_lease_exact(void **st)
{
	struct fx *f = *st;
	uint64_t held[4] = { 0 }, spent = 0, t;
	struct bucket b;
	int w, n, step;

	for (step = 0; step < 2000; step++) {
		t = T0 + (uint64_t)step * MS;	/* 2 s in 1 ms steps */
		for (w = 0; w < 4; w++) {
			if (held[w] == 0) {
				n = bucket_lease(f->s, "x", 1, &P50, t, 64, 8,
				    NULL);
				assert_true(n >= 0);
				held[w] = (uint64_t)n;
			}
			if (held[w] > 0) {
				held[w]--;
				spent++;
			}
			assert_true(spent <= 10 + 50 * (t - T0) / SEC);
		}
	}
	/* Steady overload: at most a token short of the bound. */
	t = T0 + 1999 * MS;
	assert_true(spent + 1 >= 10 + 50 * (t - T0) / SEC);
	for (w = 0; w < 4; w++)
		assert_int_equal(bucket_return(f->s, "x", 1, &P50, t, held[w]),
		    0);
	assert_int_equal(bucket_peek(f->s, "x", 1, &P50, t, &b), 1);
	assert_true(bucket_whole(&b) <= 10);
}

static void
test_sweep(void **st)
{
	struct fx *f = *st;
	struct bucket b;

	assert_int_equal(bucket_lease(f->s, "a", 1, &P50, T0, 1, 1, NULL), 1);
	assert_int_equal(bucket_lease(f->s, "b", 1, &P50, T0, 10, 1, NULL),
	    10);
	/* 20 ms later "a" is full again, "b" is not. */
	struct bucket_sweep sw;

	memset(&sw, 0, sizeof(sw));
	assert_int_equal(bucket_sweep(f->s, T0 + 20 * MS, &sw), 1);
	assert_int_equal(bucket_peek(f->s, "a", 1, &P50, T0, &b), 0);
	assert_int_equal(bucket_peek(f->s, "b", 1, &P50, T0, &b), 1);
	assert_int_equal(bucket_sweep(f->s, T0 + 200 * MS, &sw), 1);
	assert_int_equal(bucket_sweep(f->s, T0 + 200 * MS, &sw), 0);
}

/* A full map is an error the caller sees, never a crash; new buckets are
 * refused before the map is completely full, so that existing ones can
 * still be updated and the sweep can still delete. */
static void
test_map_full(void **st)
{
	struct fx *f = *st;
	char key[64], last[64];
	int i, n = 0, ln = 0, rc = 0;

	for (i = 0; i < 200000; i++) {
		n = snprintf(key, sizeof(key), "key-%08d-padding-padding", i);
		rc = bucket_lease(f->s, key, (size_t)n, &P50, T0, 1, 1, NULL);
		if (rc < 0)
			break;
		assert_int_equal(rc, 1);
		memcpy(last, key, (size_t)n);
		ln = n;
	}
	assert_int_equal(rc, MDB_MAP_FULL);
	assert_true(i > 1000);
	/* Still usable: a new key stays refused (never admitted), a stored
	 * bucket still leases, a return to a missing one writes nothing,
	 * and the sweep can delete. */
	assert_int_equal(bucket_lease(f->s, key, (size_t)n, &P50, T0, 1, 1,
	    NULL), MDB_MAP_FULL);
	assert_int_equal(bucket_lease(f->s, last, (size_t)ln, &P50, T0 + SEC,
	    1, 1, NULL), 1);
	assert_int_equal(bucket_return(f->s, "nope", 4, &P50, T0, 1), 0);
	{
		struct bucket_sweep sw;

		memset(&sw, 0, sizeof(sw));
		assert_true(bucket_sweep(f->s, T0 + SEC, &sw) > 0);
	}
}

/* Put N buckets "user-%06d" straight into the store: even ones full,
 * odd ones empty and refilling one token an hour. */
static void
fill_buckets(struct store *s, int n)
{
	const struct bucket_params slow = { 1, 3600, 5 };
	struct bucket b;
	MDB_txn *txn;
	MDB_val k, v;
	char key[32], val[BUCKET_VALUE_MAX];
	int i;

	for (i = 0; i < n; i++) {
		if (i % 10000 == 0)
			assert_int_equal(store_write_begin(s, &txn), 0);
		bucket_init(&b, &slow, T0);
		if (i & 1)
			bucket_take(&b, 5);
		k.mv_size = (size_t)snprintf(key, sizeof(key), "user-%06d", i);
		k.mv_data = key;
		v.mv_size = (size_t)bucket_encode(&b, val, sizeof(val));
		v.mv_data = val;
		assert_int_equal(mdb_put(txn, s->dbi[STORE_BUCKETS], &k, &v, 0),
		    0);
		if (i % 10000 == 9999 || i == n - 1)
			assert_int_equal(store_write_commit(txn), 0);
	}
}

/* The sweep over 100,000 buckets: each call scans a bounded part and the
 * next one resumes after it (a pass scans every bucket once, never the
 * first ones again), each write txn deletes at most BUCKET_SWEEP_TXN, and
 * the buckets still in use stay. Prints the longest write-lock hold of
 * the sweep, and the longest lease a concurrent process saw meanwhile
 * (figures for the README; timing is never a pass/fail here). */
static void
test_sweep_resumes_in_short_txns(void **st)
{
	enum { N = 100000 };
	char dir[64], why[256], cmd[128];
	struct bucket_sweep sw;
	struct store *s;
	unsigned long scanned = 0, deleted = 0;
	int calls, rc, go[2], res[2], status;
	uint64_t child_max = 0;
	pid_t pid;

	(void)st;
	snprintf(dir, sizeof(dir), "/dev/shm/ptc-sweep-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(store_create(dir, 64, 2, why, sizeof(why)), 0);
	assert_int_equal(store_open(dir, 2, &s), 0);
	fill_buckets(s, N);

	/* A worker leasing meanwhile: its longest lease call. */
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(res), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *cs;
		uint64_t t0, t, max = 0, end = store_now_ns() + 30 * SEC;
		char key[32], c;
		int i = 0;

		close(go[1]);
		close(res[0]);
		if (store_open(dir, 2, &cs) < 0)
			_exit(1);
		if (read(go[0], &c, 1) != 1)
			_exit(1);
		fcntl(go[0], F_SETFL, O_NONBLOCK);
		while (read(go[0], &c, 1) < 0 && store_now_ns() < end) {
			snprintf(key, sizeof(key), "hot-%d", i++ % 1000);
			t0 = store_now_ns();
			if (bucket_lease(cs, key, strlen(key), &P50,
			    store_now_ns(), 1, 1, NULL) < 0)
				_exit(1);
			t = store_now_ns() - t0;
			if (t > max)
				max = t;
		}
		if (write(res[1], &max, sizeof(max)) != sizeof(max))
			_exit(1);
		_exit(0);
	}
	close(go[0]);
	close(res[1]);
	assert_int_equal(write(go[1], "g", 1), 1);

	memset(&sw, 0, sizeof(sw));
	for (calls = 0; calls < 100; calls++) {
		rc = bucket_sweep(s, T0 + SEC, &sw);
		assert_true(rc >= 0);
		assert_true(sw.scanned <= BUCKET_SWEEP_SCAN + BUCKET_SWEEP_CHUNK);
		assert_true(sw.deleted <= sw.txns * BUCKET_SWEEP_TXN);
		scanned += sw.scanned;
		deleted += sw.deleted;
		if (sw.at_end)
			break;
	}
	assert_true(sw.at_end);
	assert_true(calls >= N / (BUCKET_SWEEP_SCAN + BUCKET_SWEEP_CHUNK));
	/* One pass: every bucket scanned once (the leasing process's "hot"
	 * keys sort first and may add up to 1000). */
	assert_true(scanned >= N && scanned <= N + 1000);
	assert_true(deleted >= N / 2 && deleted <= N / 2 + 1000);
	assert_int_equal(write(go[1], "s", 1), 1);
	assert_int_equal(read(res[0], &child_max, sizeof(child_max)),
	    sizeof(child_max));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	printf("sweep of %d buckets: %d calls, longest write-lock hold "
	    "%.3f ms, longest wait for it %.3f ms; concurrent leases: longest "
	    "%.3f ms\n", N, calls + 1, sw.max_hold_ns / 1e6,
	    sw.max_wait_ns / 1e6, child_max / 1e6);
	/* The next call starts a new pass: only the leasing process's keys
	 * may have refilled since; the empty ones are still there. */
	memset(&sw, 0, sizeof(sw));
	rc = bucket_sweep(s, T0 + SEC, &sw);
	assert_true(rc >= 0 && rc <= 1000);
	{
		struct bucket b;

		assert_int_equal(bucket_peek(s, "user-000001", 11, NULL, T0,
		    &b), 1);
		assert_int_equal(bucket_peek(s, "user-000002", 11, NULL, T0,
		    &b), 0);
	}
	close(go[1]);
	close(res[0]);
	store_close(s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refill),
		cmocka_unit_test(test_burst_cap),
		cmocka_unit_test(test_clock_backward),
		cmocka_unit_test(test_wait),
		cmocka_unit_test(test_msgpack_round_trip),
		cmocka_unit_test_setup_teardown(test_lease_accounting,
		    setup_store, teardown_store),
		cmocka_unit_test_setup_teardown(test_lease_exact,
		    setup_store, teardown_store),
		cmocka_unit_test_setup_teardown(test_sweep,
		    setup_store, teardown_store),
		cmocka_unit_test_setup_teardown(test_map_full,
		    setup_store, teardown_store),
		cmocka_unit_test(test_sweep_resumes_in_short_txns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
