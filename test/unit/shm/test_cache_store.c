/*
 * The cache's records in a real store (a temporary LMDB environment under
 * /dev/shm): values and keys, put and find, eviction order (expired
 * first, then least recently used), the budget, invalidation, purge,
 * listing, body reads by id, fetch locks (a dead fetcher frees the key),
 * and the master's sweep.
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

#include "shm/cache_store.h"
#include "shm/store.h"

#define SEC	1000000000ull

static char dir[64];
static struct store *s;

static int
setup(void **st)
{
	char why[512], path[128];

	(void)st;
	snprintf(dir, sizeof(dir), "/dev/shm/ptc-cache-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/state", dir);
	if (store_create(path, 8, 1, why, sizeof(why)) < 0 ||
	    store_open(path, 1, &s) < 0)
		return -1;
	return 0;
}

static int
teardown(void **st)
{
	char cmd[128];

	(void)st;
	store_close(s);
	s = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) != 0 ? -1 : 0;
}

/* An entry for PATH with a body of N bytes of C. */
static struct cache_entry
entry(const char *desc, char c, size_t n, uint64_t id)
{
	static char body[65536];
	struct cache_entry e;

	memset(body, c, n);
	memset(&e, 0, sizeof(e));
	e.kind = CACHE_ENTRY;
	e.status = 200;
	e.born_ns = 5 * SEC;
	e.fresh_ns = 65 * SEC;
	e.swr_ns = 70 * SEC;
	e.sie_ns = 80 * SEC;
	e.last_modified = 1700000000;
	e.id = id;
	e.flags = CACHE_F_ETAG_MADE;
	e.etag = "\"e\"";
	e.etag_len = 3;
	e.desc = desc;
	e.desc_len = strlen(desc);
	e.headers = "Content-Type: text/plain\r\n";
	e.headers_len = strlen(e.headers);
	e.body = body;
	e.body_len = n;
	return e;
}

/* KEY for PATH with REST "q\0host\0route" into OUT; its length. */
static size_t
key_of(const char *path, const char *query, char *out)
{
	char rest[256];
	size_t n = (size_t)snprintf(rest, sizeof(rest), "%s", query);

	memcpy(rest + n, "\0h\0r\0c", 6);
	return cache_key_make(path, strlen(path), rest, n + 6, out);
}

static int
put(const char *path, const char *query, size_t n, uint64_t budget,
    uint64_t now, uint64_t evict, bool *stored, unsigned *evicted)
{
	char key[CACHE_KEY_MAX], desc[256];
	struct cache_entry e;
	struct cache_put p;
	size_t klen = key_of(path, query, key);
	int rc;

	snprintf(desc, sizeof(desc), "%s%s h r", path, query);
	e = entry(desc, 'x', n, now);
	memset(&p, 0, sizeof(p));
	p.budget = budget;
	p.now_ns = now;
	p.evict_ns = evict;
	rc = cache_put(s, key, klen, &e, &p);
	if (stored != NULL)
		*stored = p.stored;
	if (evicted != NULL)
		*evicted = p.evicted;
	return rc;
}

/* Whether PATH?QUERY is stored. */
static bool
present(const char *path, const char *query)
{
	char key[CACHE_KEY_MAX];
	size_t klen = key_of(path, query, key);
	struct cache_entry e;
	MDB_txn *txn;
	int rc;

	assert_int_equal(store_read_begin(s, &txn), 0);
	rc = cache_find(s, txn, key, klen, &e);
	store_read_end(s);
	assert_true(rc >= 0);
	return rc == 0;
}

static void
test_values_and_keys(void **st)
{
	char buf[70000], key[CACHE_KEY_MAX], path[600], rest[600];
	struct cache_entry e = entry("/a h r", 'b', 100, 42), d;
	size_t n, k;

	(void)st;
	n = cache_encode(&e, buf);
	assert_int_equal(n, cache_value_len(&e));
	assert_int_equal(cache_decode(buf, n, &d), 0);
	assert_int_equal(d.kind, CACHE_ENTRY);
	assert_int_equal(d.status, 200);
	assert_int_equal(d.fresh_ns, 65 * SEC);
	assert_int_equal(d.id, 42);
	assert_int_equal(d.flags, CACHE_F_ETAG_MADE);
	assert_int_equal(d.body_len, 100);
	assert_memory_equal(d.body, e.body, 100);
	assert_memory_equal(d.headers, e.headers, e.headers_len);
	/* Truncated, padded, or of another version: not ours. */
	assert_int_equal(cache_decode(buf, n - 1, &d), -1);
	assert_int_equal(cache_decode(buf, n + 1, &d), -1);
	buf[1] = 9;
	assert_int_equal(cache_decode(buf, n, &d), -1);
	/* A vary record. */
	memset(&e, 0, sizeof(e));
	e.kind = CACHE_VARY;
	e.vary = "accept-encoding";
	e.vary_len = 15;
	n = cache_encode(&e, buf);
	assert_int_equal(cache_decode(buf, n, &d), 0);
	assert_int_equal(d.kind, CACHE_VARY);
	assert_memory_equal(d.vary, "accept-encoding", 15);
	/* Keys: path first; a long path cut and hashed; a long REST too. */
	k = cache_key_make("/a", 2, "q\0h", 3, key);
	assert_int_equal(k, 6);
	assert_memory_equal(key, "/a\0q\0h", 6);
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	k = cache_key_path(path, 500, key);
	assert_int_equal(k, CACHE_PATH_CUT + 33);
	assert_int_equal(key[CACHE_PATH_CUT], '~');
	path[499] = 'q';
	assert_int_equal(cache_key_path(path, 500, buf), k);
	assert_memory_not_equal(buf, key, k);
	memset(rest, 'r', sizeof(rest));
	k = cache_key_make("/a", 2, rest, sizeof(rest), key);
	assert_true(k <= CACHE_KEY_MAX);
	assert_int_equal(key[3], '~');
	k = cache_key_make("/a", 2, "~x", 2, key);
	assert_int_equal(k, 3 + 1 + 32);
}

static void
test_put_find_figures(void **st)
{
	struct cache_figures f;
	bool stored;

	(void)st;
	assert_int_equal(put("/a", "?x=1", 100, 1 << 20, 10 * SEC, 100 * SEC,
	    &stored, NULL), 0);
	assert_true(stored);
	assert_true(present("/a", "?x=1"));
	assert_false(present("/a", "?x=2"));
	assert_int_equal(cache_figures(s, &f), 0);
	assert_int_equal(f.entries, 1);
	assert_int_equal(f.stored, 1);
	assert_int_equal(f.budget, 1 << 20);
	assert_true(f.bytes > 100);
	/* Replacing it keeps one entry and its bytes. */
	assert_int_equal(put("/a", "?x=1", 100, 1 << 20, 11 * SEC, 100 * SEC,
	    &stored, NULL), 0);
	assert_int_equal(cache_figures(s, &f), 0);
	assert_int_equal(f.entries, 1);
	assert_int_equal(f.stored, 2);
	/* Larger than the whole budget: not stored, not an error. */
	assert_int_equal(put("/huge", "", 60000, 50000, 12 * SEC, 100 * SEC,
	    &stored, NULL), 0);
	assert_false(stored);
	assert_false(present("/huge", ""));
}

static void
test_eviction_order(void **st)
{
	char key[CACHE_KEY_MAX];
	const char *keys[1];
	size_t lens[1];
	uint64_t budget;
	struct cache_figures f;
	unsigned evicted;
	bool stored;

	(void)st;
	/* Room for three 20 KB entries. */
	budget = 3 * cache_charge(20, 20200, s->psize) + 100;
	assert_int_equal(put("/e/a", "", 20000, budget, 1 * SEC, 100 * SEC,
	    &stored, NULL), 0);
	assert_int_equal(put("/e/b", "", 20000, budget, 2 * SEC, 100 * SEC,
	    &stored, NULL), 0);
	assert_int_equal(put("/e/c", "", 20000, budget, 3 * SEC, 100 * SEC,
	    &stored, NULL), 0);
	/* A is used again (a batch of hits): B is now the least recent. */
	keys[0] = key;
	lens[0] = key_of("/e/a", "", key);
	assert_int_equal(cache_touch(s, keys, lens, 1, 4 * SEC, SEC), 1);
	/* Within the grain: not moved again. */
	assert_int_equal(cache_touch(s, keys, lens, 1, 4 * SEC + 1, SEC), 0);
	assert_int_equal(put("/e/d", "", 20000, budget, 5 * SEC, 100 * SEC,
	    &stored, &evicted), 0);
	assert_true(stored);
	assert_int_equal(evicted, 1);
	assert_true(present("/e/a", ""));
	assert_false(present("/e/b", ""));
	assert_true(present("/e/c", "") && present("/e/d", ""));
	/* An expired entry goes before any live one, even a less recent
	 * one: C is older than D, but D has run out. */
	assert_int_equal(put("/e/d", "", 20000, budget, 6 * SEC, 7 * SEC,
	    &stored, NULL), 0);
	assert_int_equal(put("/e/f", "", 20000, budget, 8 * SEC, 100 * SEC,
	    &stored, &evicted), 0);
	assert_true(stored);
	assert_int_equal(evicted, 1);
	assert_false(present("/e/d", ""));
	assert_true(present("/e/c", ""));
	assert_int_equal(cache_figures(s, &f), 0);
	assert_int_equal(f.entries, 3);
	assert_int_equal(f.evicted_lru, 1);
	assert_int_equal(f.evicted_expired, 1);
	assert_true(f.bytes <= budget);
}

static void
test_invalidate_purge_list(void **st)
{
	char pkey[CACHE_PATH_VERBATIM];
	size_t plen;
	int n;

	(void)st;
	put("/i", "?a", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	put("/i", "?b", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	put("/i", "", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	put("/ij", "", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	put("/i/k", "", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	plen = cache_key_path("/i", 2, pkey);
	assert_int_equal(cache_invalidate(s, pkey, plen), 3);
	assert_false(present("/i", "?a") || present("/i", "") ||
	    present("/i", "?b"));
	assert_true(present("/ij", "") && present("/i/k", ""));

	put("/p", "", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	put("/p/1", "?z", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	put("/pq", "", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	n = 0;
	assert_int_equal(cache_purge(s, "/p", 2), 2);
	assert_false(present("/p", "") || present("/p/1", "?z"));
	assert_true(present("/pq", ""));
	assert_int_equal(cache_purge(s, "/", 1), 3);	/* /ij, /i/k, /pq */
	assert_false(present("/pq", ""));
	(void)n;
}

static int nlisted;

static void
count(void *arg, const struct cache_listed *l)
{
	(void)arg;
	assert_int_equal(l->e.kind, CACHE_ENTRY);
	assert_true(l->charge > 0 && l->evict_ns == 100 * SEC);
	nlisted++;
}

static void
test_list_and_body(void **st)
{
	char key[CACHE_KEY_MAX], buf[100];
	size_t klen;
	ssize_t n;

	(void)st;
	put("/l", "?a", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	put("/l", "?b", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	put("/l/x", "", 10, 1 << 20, SEC, 100 * SEC, NULL, NULL);
	nlisted = 0;
	assert_int_equal(cache_list(s, "/l", 2, NULL, 0, 10, count, NULL), 2);
	assert_int_equal(nlisted, 2);
	nlisted = 0;
	assert_int_equal(cache_list(s, "/l", 2, "?b", 2, 10, count, NULL), 1);
	assert_int_equal(nlisted, 1);
	/* Body reads by id (put() uses NOW as the id). */
	put("/body", "", 150, 1 << 20, 77, 100 * SEC, NULL, NULL);
	klen = key_of("/body", "", key);
	n = cache_read_body(s, key, klen, 77, 0, buf, 100);
	assert_int_equal(n, 100);
	n = cache_read_body(s, key, klen, 77, 100, buf, 100);
	assert_int_equal(n, 50);
	assert_int_equal(cache_read_body(s, key, klen, 77, 150, buf, 100), 0);
	/* Replaced meanwhile: the reader learns it rather than mixing two. */
	put("/body", "", 150, 1 << 20, 78, 100 * SEC, NULL, NULL);
	assert_int_equal(cache_read_body(s, key, klen, 77, 0, buf, 100), -1);
}

static void
test_locks(void **st)
{
	char key[CACHE_KEY_MAX];
	size_t klen = key_of("/lock", "", key);
	struct cache_lock l, mine;
	MDB_txn *txn;
	pid_t pid;
	int status;

	(void)st;
	assert_int_equal(cache_lock_take(s, key, klen, SEC, 10 * SEC, &mine),
	    1);
	assert_int_equal(mine.state, CACHE_LOCK_FETCH);
	assert_int_equal(mine.pid, getpid());
	assert_int_equal(cache_lock_take(s, key, klen, SEC, 10 * SEC, &l), 0);
	assert_int_equal(l.state, CACHE_LOCK_FETCH);
	/* Out of time: free again. */
	assert_int_equal(store_read_begin(s, &txn), 0);
	assert_int_equal(cache_lock_peek(s, txn, key, klen, 11 * SEC, &l), 0);
	store_read_end(s);
	assert_int_equal(l.state, CACHE_LOCK_NONE);
	/* Ended with a note: waiters go to the origin until it runs out. */
	assert_int_equal(cache_lock_end(s, key, klen, &mine, CACHE_LOCK_PASS,
	    20 * SEC), 0);
	assert_int_equal(cache_lock_take(s, key, klen, 2 * SEC, 10 * SEC, &l),
	    0);
	assert_int_equal(l.state, CACHE_LOCK_PASS);
	assert_int_equal(cache_lock_take(s, key, klen, 21 * SEC, 30 * SEC,
	    &mine), 1);
	/* Someone else's lock is not ended by us. */
	l = mine;
	l.since_ns++;
	assert_int_equal(cache_lock_end(s, key, klen, &l, CACHE_LOCK_NONE, 0),
	    0);
	assert_int_equal(cache_lock_take(s, key, klen, 22 * SEC, 30 * SEC, &l),
	    0);
	assert_int_equal(cache_lock_end(s, key, klen, &mine, CACHE_LOCK_NONE,
	    0), 0);
	/* A fetcher that died frees the key at once, within its time. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *cs;
		char path[128];
		snprintf(path, sizeof(path), "%s/state", dir);
		_exit(store_open(path, 1, &cs) == 0 &&
		    cache_lock_take(cs, key, klen, SEC, 1000 * SEC, &l) == 1 ?
		    0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(store_read_begin(s, &txn), 0);
	assert_int_equal(cache_lock_peek(s, txn, key, klen, 2 * SEC, &l), 0);
	store_read_end(s);
	assert_int_equal(l.state, CACHE_LOCK_NONE);
	assert_int_equal(cache_lock_take(s, key, klen, 2 * SEC, 10 * SEC, &l),
	    1);
}

static void
test_sweep(void **st)
{
	struct cache_figures f;
	char key[CACHE_KEY_MAX];
	struct cache_lock l;
	size_t klen = key_of("/swlock", "", key);
	int n;

	(void)st;
	put("/sw/1", "", 10, 1 << 20, SEC, 5 * SEC, NULL, NULL);
	put("/sw/2", "", 10, 1 << 20, SEC, 5 * SEC, NULL, NULL);
	put("/sw/3", "", 10, 1 << 20, SEC, 50 * SEC, NULL, NULL);
	assert_int_equal(cache_lock_take(s, key, klen, SEC, 3 * SEC, &l), 1);
	/* Nothing due yet. */
	assert_int_equal(cache_sweep(s, 2 * SEC, NULL), 0);
	n = cache_sweep(s, 6 * SEC, NULL);
	assert_int_equal(n, 3);		/* two entries and the lock */
	assert_false(present("/sw/1", "") || present("/sw/2", ""));
	assert_true(present("/sw/3", ""));
	/* Over a budget lowered since (a reload; the budget is the last
	 * writer's, here a put too large to store): least recent go. */
	put("/sw/4", "", 10, 1 << 20, 7 * SEC, 50 * SEC, NULL, NULL);
	put("/sw/huge", "", 60000, 300, 8 * SEC, 50 * SEC, NULL, NULL);
	assert_int_equal(cache_figures(s, &f), 0);
	assert_int_equal(f.budget, 300);
	assert_true(f.bytes > 300);
	assert_true(cache_sweep(s, 9 * SEC, NULL) >= 1);
	assert_false(present("/sw/3", ""));	/* the least recent */
	assert_int_equal(cache_figures(s, &f), 0);
	assert_true(f.bytes <= 300);
	assert_int_equal(f.evicted_lru, 1);
}

/* Many live locks before a few expired ones: the sweep goes on where it
 * stopped, so the expired ones are reached. */
static void
test_sweep_reaches_every_lock(void **st)
{
	struct cache_sweep_state sw;
	char key[CACHE_KEY_MAX], path[32];
	struct cache_lock l;
	MDB_txn *txn;
	size_t klen;
	int i, removed = 0;

	(void)st;
	for (i = 0; i < 1100; i++) {
		snprintf(path, sizeof(path), "/a/%04d", i);
		klen = key_of(path, "", key);
		assert_int_equal(cache_lock_take(s, key, klen, SEC, 1000 * SEC,
		    &l), 1);
	}
	for (i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "/z/%d", i);
		klen = key_of(path, "", key);
		assert_int_equal(cache_lock_take(s, key, klen, SEC, 2 * SEC,
		    &l), 1);
	}
	memset(&sw, 0, sizeof(sw));
	for (i = 0; i < 3; i++)
		removed += cache_sweep(s, 3 * SEC, &sw);
	assert_int_equal(removed, 5);
	klen = key_of("/z/4", "", key);
	assert_int_equal(store_read_begin(s, &txn), 0);
	assert_int_equal(cache_lock_peek(s, txn, key, klen, SEC, &l), 0);
	store_read_end(s);
	assert_int_equal(l.state, CACHE_LOCK_NONE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_values_and_keys, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_put_find_figures, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_eviction_order, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_purge_list,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_and_body, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_locks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_reaches_every_lock,
		    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
