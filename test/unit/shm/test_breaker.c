/*
 * The circuit breaker's state machine and the health results at fixed
 * times (no sleeps), their stored formats, and the store operations on a
 * real LMDB environment under /dev/shm: probes counted across processes,
 * writes only when something changes, passive health marks, reset, the
 * sweep of idle records.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "shm/breaker.h"
#include "shm/health.h"
#include "shm/store.h"

#define MS	1000000ull
#define SEC	1000000000ull
#define T0	(1000 * SEC)

/* 3 failures open it for 1 s; two probes at once. */
static const struct breaker_params P = { 3, 1000 * MS, 2 };

static void
fail_n(struct breaker *b, unsigned n, uint64_t t)
{
	while (n-- > 0)
		breaker_result(b, &P, t, true, BREAKER_ERR_CONNECT, 0);
}

static void
test_opens_after_failures(void **st)
{
	struct breaker b;

	(void)st;
	memset(&b, 0, sizeof(b));
	assert_int_equal(breaker_gate(&b, &P, T0), BREAKER_PASS);
	/* A success on a clean breaker changes nothing: no write. */
	assert_int_equal(breaker_result(&b, &P, T0, false, 0, 200),
	    BREAKER_SAME);
	assert_int_equal(breaker_result(&b, &P, T0, true, BREAKER_ERR_STATUS,
	    503), BREAKER_COUNTED);
	assert_int_equal(b.failures, 1);
	assert_int_equal(b.last_status, 503);
	/* A success resets the count (a write: failures were counted). */
	assert_int_equal(breaker_result(&b, &P, T0, false, 0, 200),
	    BREAKER_COUNTED);
	assert_int_equal(b.failures, 0);
	/* Consecutive failures: the third opens it. */
	fail_n(&b, 2, T0);
	assert_int_equal(b.state, BREAKER_CLOSED);
	assert_int_equal(breaker_result(&b, &P, T0 + MS, true,
	    BREAKER_ERR_RESET, 0), BREAKER_OPENED);
	assert_int_equal(b.state, BREAKER_OPEN);
	assert_int_equal(b.opens, 1);
	assert_int_equal(b.last_err, BREAKER_ERR_RESET);
	assert_int_equal(b.since_ns, T0 + MS);
	assert_int_equal(b.open_ns, 1000 * MS);
	/* Open: refused, also by a clock a little behind the one that
	 * opened it; results of requests let through before change
	 * nothing. */
	assert_int_equal(breaker_gate(&b, &P, T0), BREAKER_DENY);
	{
		struct breaker c = b;
		enum breaker_change ch;

		assert_int_equal(breaker_admit(&c, &P, T0, &ch), 0);
		assert_int_equal(ch, BREAKER_SAME);
	}
	assert_int_equal(breaker_gate(&b, &P, T0 + 500 * MS), BREAKER_DENY);
	assert_int_equal(breaker_open_left_ns(&b, T0 + 501 * MS), 500 * MS);
	assert_int_equal(breaker_result(&b, &P, T0 + 2 * MS, true, 1, 0),
	    BREAKER_SAME);
	assert_int_equal(breaker_result(&b, &P, T0 + 2 * MS, false, 0, 200),
	    BREAKER_SAME);
}

static void
test_half_open_probes(void **st)
{
	struct breaker b;
	enum breaker_change ch;
	uint64_t t = T0 + 1001 * MS;

	(void)st;
	memset(&b, 0, sizeof(b));
	fail_n(&b, 3, T0);
	assert_int_equal(breaker_gate(&b, &P, T0 + 999 * MS), BREAKER_DENY);
	assert_int_equal(breaker_gate(&b, &P, T0 + 1000 * MS),
	    BREAKER_PROBE);
	/* The open time is over: the first probe turns it half-open. */
	assert_int_equal(breaker_admit(&b, &P, t, &ch), 1);
	assert_int_equal(ch, BREAKER_HALF);
	assert_int_equal(b.state, BREAKER_HALF_OPEN);
	assert_int_equal(b.probes, 1);
	assert_int_equal(breaker_admit(&b, &P, t, &ch), 1);
	assert_int_equal(ch, BREAKER_COUNTED);
	assert_int_equal(b.probes, 2);
	/* half_open = 2: the third waits, also in a worker whose clock
	 * (read once per loop turn) is a little behind the one that took
	 * the last probe. */
	assert_int_equal(breaker_admit(&b, &P, t - MS, &ch), 0);
	assert_int_equal(ch, BREAKER_SAME);
	assert_int_equal(breaker_admit(&b, &P, t + MS, &ch), 0);
	assert_int_equal(ch, BREAKER_SAME);
	assert_int_equal(breaker_gate(&b, &P, t + MS), BREAKER_DENY);
	/* Probes that never report back are forgotten after the open
	 * time. */
	assert_int_equal(breaker_gate(&b, &P, t + 1000 * MS),
	    BREAKER_PROBE);
	assert_int_equal(breaker_admit(&b, &P, t + 1000 * MS, &ch), 1);
	assert_int_equal(b.probes, 1);
	/* A success closes it, afresh. */
	assert_int_equal(breaker_result(&b, &P, t + 1001 * MS, false, 0, 200),
	    BREAKER_CLOSED_NOW);
	assert_int_equal(b.state, BREAKER_CLOSED);
	assert_int_equal(b.failures, 0);
	assert_int_equal(b.open_ns, 0);
	assert_int_equal(breaker_gate(&b, &P, t + 1001 * MS), BREAKER_PASS);
}

static void
test_reopen_doubles_capped(void **st)
{
	struct breaker b;
	enum breaker_change ch;
	uint64_t t = T0, want = 1000 * MS;
	int i;

	(void)st;
	memset(&b, 0, sizeof(b));
	fail_n(&b, 3, t);
	for (i = 0; i < 8; i++) {
		t += b.open_ns;
		assert_int_equal(breaker_admit(&b, &P, t, &ch), 1);
		assert_int_equal(ch, BREAKER_HALF);
		assert_int_equal(breaker_result(&b, &P, t, true,
		    BREAKER_ERR_TIMEOUT, 0), BREAKER_REOPENED);
		want = want * 2 > 10 * P.open_ns ? 10 * P.open_ns : want * 2;
		assert_int_equal(b.open_ns, want);
		assert_int_equal(b.since_ns, t);
	}
	assert_int_equal(b.open_ns, 10 * P.open_ns);	/* the cap */
	assert_int_equal(b.opens, 9);
	/* Closing starts over at the configured time. */
	t += b.open_ns;
	assert_int_equal(breaker_admit(&b, &P, t, &ch), 1);
	breaker_result(&b, &P, t, false, 0, 200);
	fail_n(&b, 3, t);
	assert_int_equal(b.open_ns, P.open_ns);
}

static void
test_breaker_format(void **st)
{
	struct breaker a, b;
	char buf[BREAKER_VALUE_MAX];
	int n;

	(void)st;
	memset(&a, 0, sizeof(a));
	a.state = BREAKER_HALF_OPEN;
	a.failures = 7;
	a.since_ns = UINT64_MAX - 1;
	a.open_ns = 4000 * MS;
	a.probes = 2;
	a.probe_ns = T0;
	a.last_err = BREAKER_ERR_STATUS;
	a.last_status = 503;
	a.last_err_ns = T0 + 1;
	a.opens = 1ull << 40;
	n = breaker_encode(&a, buf, sizeof(buf));
	assert_true(n > 0);
	memset(&b, 0, sizeof(b));	/* the padding compares too */
	assert_int_equal(breaker_decode(buf, (size_t)n, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	/* Another format, a truncated value, a bad state: not ours. */
	buf[1] = 2;
	assert_int_equal(breaker_decode(buf, (size_t)n, &b), -1);
	buf[1] = BREAKER_FORMAT;
	assert_int_equal(breaker_decode(buf, (size_t)n - 1, &b), -1);
	buf[2] = 3;
	assert_int_equal(breaker_decode(buf, (size_t)n, &b), -1);
	assert_int_equal(breaker_key("users", "127.0.0.1:1", buf, sizeof(buf)),
	    17);
	assert_memory_equal(buf, "users\0" "127.0.0.1:1", 17);
	assert_int_equal(breaker_key("users", "127.0.0.1:1", buf, 10), -1);
}

static void
test_health_results(void **st)
{
	struct health h;

	(void)st;
	/* Never checked (a reload's new instance): up at its first pass. */
	memset(&h, 0, sizeof(h));
	assert_int_equal(health_apply(&h, true, 3, 2, T0, 0, 200),
	    HEALTH_WENT_UP);
	assert_int_equal(h.checked, 1);
	/* Up: fall failures take it down, counted only up to fall. */
	assert_int_equal(health_apply(&h, false, 3, 2, T0 + 1, HEALTH_ERR_STATUS,
	    500), HEALTH_COUNTED);
	assert_int_equal(health_apply(&h, false, 3, 2, T0 + 2,
	    HEALTH_ERR_STATUS, 500), HEALTH_COUNTED);
	assert_int_equal(h.state, HEALTH_UP);
	assert_int_equal(health_apply(&h, false, 3, 2, T0 + 3,
	    HEALTH_ERR_STATUS, 500), HEALTH_WENT_DOWN);
	assert_int_equal(h.since_ns, T0 + 3);
	assert_int_equal(h.last_status, 500);
	/* Steady: the counters stop at fall, so nothing to write. */
	assert_int_equal(health_apply(&h, false, 3, 2, T0 + 4,
	    HEALTH_ERR_STATUS, 500), HEALTH_SAME);
	/* rise passes bring it back. */
	assert_int_equal(health_apply(&h, true, 3, 2, T0 + 5, 0, 200),
	    HEALTH_COUNTED);
	assert_int_equal(health_apply(&h, true, 3, 2, T0 + 6, 0, 200),
	    HEALTH_WENT_UP);
	assert_int_equal(health_apply(&h, true, 3, 2, T0 + 7, 0, 200),
	    HEALTH_SAME);
	/* Assumed up at start, never checked: its first failure is
	 * decisive. */
	memset(&h, 0, sizeof(h));
	h.state = HEALTH_UP;
	assert_int_equal(health_apply(&h, false, 3, 2, T0, HEALTH_ERR_CONNECT,
	    0), HEALTH_WENT_DOWN);
	/* Passive: down by the breaker, back only after rise passes. */
	memset(&h, 0, sizeof(h));
	health_apply(&h, true, 3, 2, T0, 0, 200);
	assert_true(health_mark_passive(&h, T0 + 1));
	assert_false(health_mark_passive(&h, T0 + 2));
	assert_int_equal(h.state, HEALTH_DOWN);
	assert_int_equal(h.passive, 1);
	assert_int_equal(health_apply(&h, true, 3, 2, T0 + 3, 0, 200),
	    HEALTH_COUNTED);
	assert_int_equal(h.state, HEALTH_DOWN);
	assert_int_equal(health_apply(&h, true, 3, 2, T0 + 4, 0, 200),
	    HEALTH_WENT_UP);
	assert_int_equal(h.passive, 0);
}

static void
test_health_format(void **st)
{
	struct health a, b;
	char buf[HEALTH_VALUE_MAX];
	int n;

	(void)st;
	memset(&a, 0, sizeof(a));
	a.state = HEALTH_DOWN;
	a.passive = 1;
	a.checked = 1;
	a.ok_run = 1;
	a.fail_run = 1000;
	a.since_ns = T0;
	a.last_err = HEALTH_ERR_TIMEOUT;
	n = health_encode(&a, buf, sizeof(buf));
	assert_true(n > 0);
	memset(&b, 0, sizeof(b));
	assert_int_equal(health_decode(buf, (size_t)n, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	buf[1] = 9;
	assert_int_equal(health_decode(buf, (size_t)n, &b), -1);
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

	snprintf(f->dir, sizeof(f->dir), "/dev/shm/ptc-breaker-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	if (store_create(f->dir, 4, 4, why, sizeof(why)) < 0) {
		fprintf(stderr, "%s\n", why);
		return -1;
	}
	if (store_open(f->dir, 4, &f->s) < 0)
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

static const char KEY[] = "users\0" "127.0.0.1:8001";
#define KLEN (sizeof(KEY) - 1)

static void
test_store_writes_only_on_change(void **st)
{
	struct fx *f = *st;
	struct breaker b;
	enum breaker_change ch;
	struct breaker_view v;
	uint64_t t0;
	int i;

	/* Successes on a closed breaker: not one write. */
	t0 = store_txnid(f->s);
	for (i = 0; i < 100; i++) {
		assert_int_equal(breaker_record(f->s, KEY, KLEN, &P, T0, false,
		    0, 200, false, &b, &ch), 0);
		assert_int_equal(ch, BREAKER_SAME);
	}
	assert_int_equal(store_txnid(f->s), t0);
	/* Failures: one write each; the third opens it and, with health
	 * checks, marks the instance down in the same txn. */
	for (i = 0; i < 3; i++)
		assert_int_equal(breaker_record(f->s, KEY, KLEN, &P, T0, true,
		    BREAKER_ERR_STATUS, 502, true, &b, &ch), 0);
	assert_int_equal(ch, BREAKER_OPENED);
	assert_int_equal(store_txnid(f->s), t0 + 3);
	assert_int_equal(breaker_view(f->s, "users", "127.0.0.1:8001", &v), 0);
	assert_true(v.has_breaker);
	assert_int_equal(v.b.state, BREAKER_OPEN);
	assert_int_equal(v.b.last_status, 502);
	assert_true(v.has_health);
	assert_int_equal(v.h.state, HEALTH_DOWN);
	assert_int_equal(v.h.passive, 1);
	/* Refused while open, from a read: no write. */
	assert_int_equal(breaker_take(f->s, KEY, KLEN, &P, T0 + MS, &b, &ch),
	    0);
	assert_int_equal(store_txnid(f->s), t0 + 3);
	/* Reset: closed again, the passive mark lifted. */
	assert_int_equal(breaker_reset(f->s, KEY, KLEN), 1);
	assert_int_equal(breaker_view(f->s, "users", "127.0.0.1:8001", &v), 0);
	assert_false(v.has_breaker);
	assert_int_equal(v.h.state, HEALTH_UP);
	assert_int_equal(breaker_reset(f->s, KEY, KLEN), 0);
}

/* Eight processes ask for probes of one half-open breaker at once:
 * together they get exactly half_open. */
static void
test_probes_across_processes(void **st)
{
	struct fx *f = *st;
	struct breaker b;
	enum breaker_change ch;
	int i, status, got = 0;
	pid_t pid[8];

	for (i = 0; i < 3; i++)
		breaker_record(f->s, KEY, KLEN, &P, T0, true,
		    BREAKER_ERR_CONNECT, 0, false, &b, &ch);
	assert_int_equal(b.state, BREAKER_OPEN);
	for (i = 0; i < 8; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			struct store *s;
			int rc, n = 0, k;

			if (store_open(f->dir, 4, &s) < 0)
				_exit(100);
			for (k = 0; k < 5; k++) {
				rc = breaker_take(s, KEY, KLEN, &P,
				    T0 + 1000 * MS + 1, NULL, &ch);
				if (rc < 0)
					_exit(101);
				n += rc;
			}
			store_close(s);
			_exit(n);
		}
	}
	for (i = 0; i < 8; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status));
		assert_true(WEXITSTATUS(status) < 100);
		got += WEXITSTATUS(status);
	}
	assert_int_equal(got, (int)P.half_open);
	/* One probe's success closes it for everyone. */
	assert_int_equal(breaker_record(f->s, KEY, KLEN, &P, T0 + 1001 * MS,
	    false, 0, 200, false, &b, &ch), 0);
	assert_int_equal(ch, BREAKER_CLOSED_NOW);
	assert_int_equal(breaker_take(f->s, KEY, KLEN, &P, T0 + 1001 * MS, &b,
	    &ch), 1);
}

static void
test_health_store(void **st)
{
	struct fx *f = *st;
	const struct health_key keys[2] = {
		{ KEY, KLEN }, { "users\0" "127.0.0.1:8011", 20 },
	};
	enum health_change ch;
	struct health h;
	MDB_txn *txn;
	uint64_t t0;

	/* A cold start records both as up; a second call changes nothing. */
	assert_int_equal(health_assume_up(f->s, keys, 2, T0), 2);
	assert_int_equal(health_assume_up(f->s, keys, 2, T0), 0);
	assert_int_equal(store_read_begin(f->s, &txn), 0);
	assert_int_equal(health_get(f->s, txn, KEY, KLEN, &h), 1);
	store_read_end(f->s);
	assert_int_equal(h.state, HEALTH_UP);
	assert_int_equal(h.checked, 0);
	assert_int_equal(health_update(f->s, KEY, KLEN, true, 2, 2, T0, 0, 200,
	    &h, &ch), 0);
	assert_int_equal(health_update(f->s, KEY, KLEN, true, 2, 2, T0, 0, 200,
	    &h, &ch), 0);
	/* Steady: no write. */
	t0 = store_txnid(f->s);
	assert_int_equal(health_update(f->s, KEY, KLEN, true, 2, 2, T0, 0, 200,
	    &h, &ch), 0);
	assert_int_equal(ch, HEALTH_SAME);
	assert_int_equal(store_txnid(f->s), t0);
	assert_int_equal(health_update(f->s, KEY, KLEN, false, 2, 2, T0, 1, 0,
	    &h, &ch), 0);
	assert_int_equal(health_update(f->s, KEY, KLEN, false, 2, 2, T0, 1, 0,
	    &h, &ch), 0);
	assert_int_equal(ch, HEALTH_WENT_DOWN);
}

static void
test_service_counts_and_sweep(void **st)
{
	struct fx *f = *st;
	struct breaker_svc add = { 3, 1 }, v;
	struct breaker_sweep sw = { 0 };
	struct breaker_view bv;
	struct breaker b;
	enum breaker_change ch;

	assert_int_equal(breaker_svc_add(f->s, "users", &add), 0);
	assert_int_equal(breaker_svc_add(f->s, "users", &add), 0);
	assert_int_equal(breaker_svc_get(f->s, "users", &v), 0);
	assert_int_equal(v.retries_refused, 6);
	assert_int_equal(v.shed, 2);
	assert_int_equal(breaker_svc_get(f->s, "orders", &v), 0);
	assert_int_equal(v.retries_refused, 0);
	/* A failure then a success: a closed record with no failures. */
	breaker_record(f->s, KEY, KLEN, &P, T0, true, 1, 0, false, &b, &ch);
	breaker_record(f->s, KEY, KLEN, &P, T0, false, 0, 200, false, &b, &ch);
	assert_int_equal(breaker_sweep(f->s, T0 + BREAKER_IDLE_NS - 1, &sw), 0);
	sw.next_ns = 0;
	/* Idle long enough: dropped (absent is closed); the service's
	 * record stays. */
	assert_int_equal(breaker_sweep(f->s, T0 + BREAKER_IDLE_NS, &sw), 1);
	assert_int_equal(breaker_view(f->s, "users", "127.0.0.1:8001", &bv), 0);
	assert_false(bv.has_breaker);
	assert_int_equal(breaker_svc_get(f->s, "users", &v), 0);
	assert_int_equal(v.shed, 2);
	/* At most once a minute. */
	assert_int_equal(breaker_sweep(f->s, T0 + BREAKER_IDLE_NS + 1, &sw),
	    0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_opens_after_failures),
		cmocka_unit_test(test_half_open_probes),
		cmocka_unit_test(test_reopen_doubles_capped),
		cmocka_unit_test(test_breaker_format),
		cmocka_unit_test(test_health_results),
		cmocka_unit_test(test_health_format),
		cmocka_unit_test_setup_teardown(test_store_writes_only_on_change,
		    setup_store, teardown_store),
		cmocka_unit_test_setup_teardown(test_probes_across_processes,
		    setup_store, teardown_store),
		cmocka_unit_test_setup_teardown(test_health_store,
		    setup_store, teardown_store),
		cmocka_unit_test_setup_teardown(test_service_counts_and_sweep,
		    setup_store, teardown_store),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
