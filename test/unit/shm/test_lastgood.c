/*
 * The last good bodies of aggregate calls in a real LMDB store under
 * /dev/shm: stored and read back whole (a megabyte included), an equal
 * body not written again (no write transaction), a changed one written,
 * an expired one absent and swept by the upkeep, another format read as
 * absent, a key over the bound refused, and no new entry once the map is
 * nearly full.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "shm/lastgood.h"
#include "shm/store.h"

static char dir[64];
static struct store *S;

static int
setup(void **st)
{
	char why[256], path[128];

	(void)st;
	snprintf(dir, sizeof(dir), "/dev/shm/ptc-lastgood-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/state", dir);
	if (store_create(path, 4, 1, why, sizeof(why)) != 0 ||
	    store_open(path, 1, &S) != 0)
		return -1;
	return 0;
}

static int
teardown(void **st)
{
	char cmd[128];

	(void)st;
	store_close(S);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) != 0 ? -1 : 0;
}

static void *
take(void *arg, size_t n)
{
	(void)arg;
	return malloc(n);
}

static uint64_t
txns(void)
{
	struct store_figures f;

	assert_int_equal(store_figures(S, &f), 0);
	return f.last_txnid;
}

static void
test_put_get(void **st)
{
	char *v = NULL, *big;
	size_t n = 0, i;
	uint64_t before;

	(void)st;
	assert_int_equal(lastgood_get(S, "k1", 2, take, NULL, &v, &n), 0);
	assert_int_equal(lastgood_put(S, "k1", 2, "[1,2]", 5,
	    60000000000ull), 1);
	assert_int_equal(lastgood_get(S, "k1", 2, take, NULL, &v, &n), 1);
	assert_int_equal(n, 5);
	assert_memory_equal(v, "[1,2]", 5);
	free(v);
	/* The same body again: a read, no write transaction. */
	before = txns();
	assert_int_equal(lastgood_put(S, "k1", 2, "[1,2]", 5,
	    60000000000ull), 0);
	assert_int_equal(txns(), before);
	/* A changed body is written. */
	assert_int_equal(lastgood_put(S, "k1", 2, "[3]", 3, 60000000000ull),
	    1);
	assert_int_equal(txns(), before + 1);
	assert_int_equal(lastgood_get(S, "k1", 2, take, NULL, &v, &n), 1);
	assert_memory_equal(v, "[3]", 3);
	free(v);
	/* A megabyte. */
	big = malloc(1 << 20);
	assert_non_null(big);
	for (i = 0; i < 1u << 20; i++)
		big[i] = (char)('a' + i % 26);
	assert_int_equal(lastgood_put(S, "big", 3, big, 1 << 20,
	    60000000000ull), 1);
	assert_int_equal(lastgood_get(S, "big", 3, take, NULL, &v, &n), 1);
	assert_int_equal(n, 1 << 20);
	assert_memory_equal(v, big, n);
	free(v);
	free(big);
	/* A key over the bound. */
	{
		char k[LASTGOOD_KEY_MAX + 1];
		memset(k, 'k', sizeof(k));
		assert_int_equal(lastgood_put(S, k, sizeof(k), "1", 1, 1000),
		    -EINVAL);
	}
}

static void
test_expiry_and_upkeep(void **st)
{
	struct lastgood_sweep sw;
	struct timespec ts = { 0, 5000000 };
	char *v = NULL;
	size_t n;
	MDB_txn *txn;
	MDB_val k = { 3, (void *)"old" }, d;

	(void)st;
	memset(&sw, 0, sizeof(sw));
	assert_int_equal(lastgood_put(S, "e1", 2, "1", 1, 1000000), 1);
	assert_int_equal(lastgood_put(S, "e2", 2, "2", 1, 60000000000ull), 1);
	/* Another format (a future binary's): absent, and swept. */
	assert_int_equal(store_write_begin(S, &txn), 0);
	d.mv_size = 3;
	d.mv_data = (void *)"\x93\x09\x00";
	assert_int_equal(mdb_put(txn, S->dbi[STORE_LASTGOOD], &k, &d, 0), 0);
	assert_int_equal(store_write_commit(txn), 0);
	assert_int_equal(lastgood_get(S, "old", 3, take, NULL, &v, &n), 0);
	nanosleep(&ts, NULL);
	assert_int_equal(lastgood_get(S, "e1", 2, take, NULL, &v, &n), 0);
	assert_int_equal(lastgood_upkeep(S, store_now_ns(), &sw), 2);
	assert_int_equal(lastgood_upkeep(S, store_now_ns(), &sw), 0);
	assert_int_equal(lastgood_get(S, "e2", 2, take, NULL, &v, &n), 1);
	free(v);
}

/* Near the end of the map a new entry is refused; what is there is still
 * read. */
static void
test_full(void **st)
{
	char *body = calloc(1, 256 << 10), key[16], *v;
	size_t n;
	int i, rc = 0;

	(void)st;
	assert_non_null(body);
	for (i = 0; i < 64 && rc >= 0; i++) {
		snprintf(key, sizeof(key), "f%d", i);
		rc = lastgood_put(S, key, strlen(key), body, 256 << 10,
		    60000000000ull);
	}
	assert_int_equal(rc, MDB_MAP_FULL);
	assert_int_equal(lastgood_get(S, "f0", 2, take, NULL, &v, &n), 1);
	free(v);
	free(body);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get),
		cmocka_unit_test(test_expiry_and_upkeep),
		cmocka_unit_test(test_full),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
