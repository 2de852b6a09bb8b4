/*
 * The shared store: create / check / recreate, the schema key, the
 * master's init, and reader slots of dead processes. A real LMDB
 * environment in a temporary directory under /dev/shm.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "master/log.h"
#include "shm/bucket.h"
#include "shm/store.h"

static char dir[64];

static int
setup(void **st)
{
	(void)st;
	snprintf(dir, sizeof(dir), "/dev/shm/ptc-store-XXXXXX");
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **st)
{
	char cmd[128];

	(void)st;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) != 0 ? -1 : 0;
}

static void
sub(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

static void
test_create_check(void **st)
{
	char why[512], path[128];
	struct stat sb;
	struct store *s;
	MDB_txn *txn;
	MDB_val k, v;

	(void)st;
	sub(path, sizeof(path), "state");
	assert_int_equal(store_check(path, 2, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "missing"));
	assert_int_equal(store_create(path, 4, 2, why, sizeof(why)), 0);
	assert_int_equal(store_check(path, 2, why, sizeof(why)), 0);
	/* The map is reserved up front, not sparse. */
	sub(path, sizeof(path), "state/data.mdb");
	assert_int_equal(stat(path, &sb), 0);
	assert_true((uint64_t)sb.st_blocks * 512 >= 4ull << 20);

	sub(path, sizeof(path), "state");
	assert_int_equal(store_open(path, 2, &s), 0);
	/* The schema key: msgpack [format 1, schema]. */
	assert_int_equal(store_read_begin(s, &txn), 0);
	k.mv_data = (void *)STORE_SCHEMA_KEY;
	k.mv_size = strlen(STORE_SCHEMA_KEY);
	{
		MDB_dbi main;

		assert_int_equal(mdb_dbi_open(txn, NULL, 0, &main), 0);
		assert_int_equal(mdb_get(txn, main, &k, &v), 0);
	}
	assert_int_equal(v.mv_size, 3);
	assert_int_equal(((unsigned char *)v.mv_data)[0], 0x92);
	assert_int_equal(((unsigned char *)v.mv_data)[1], 1);
	assert_int_equal(((unsigned char *)v.mv_data)[2], STORE_SCHEMA);
	store_read_end(s);
	/* The read txn is reused, not leaked. */
	assert_int_equal(store_read_begin(s, &txn), 0);
	store_read_end(s);
	store_close(s);
}

static void
test_schema_mismatch_recreated(void **st)
{
	char why[512], why2[512], path[128];
	static const unsigned char v99[] = { 0x92, 0x01, 0x63 };
	struct store *s;
	MDB_txn *txn;
	MDB_dbi main;
	MDB_val k, v;

	(void)st;
	sub(path, sizeof(path), "state");
	assert_int_equal(store_create(path, 4, 2, why, sizeof(why)), 0);
	assert_int_equal(store_open(path, 2, &s), 0);
	assert_int_equal(bucket_lease(s, "k", 1,
	    &(struct bucket_params){ 1, 1, 5 }, 1, 5, 1, NULL), 5);
	/* Another binary's schema. */
	assert_int_equal(store_write_begin(s, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &main), 0);
	k.mv_data = (void *)STORE_SCHEMA_KEY;
	k.mv_size = strlen(STORE_SCHEMA_KEY);
	v.mv_data = (void *)v99;
	v.mv_size = sizeof(v99);
	assert_int_equal(mdb_put(txn, main, &k, &v, 0), 0);
	assert_int_equal(store_write_commit(txn), 0);
	store_close(s);

	assert_int_equal(store_check(path, 2, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "schema 99"));
	assert_true(store_open(path, 2, &s) < 0);
	assert_int_equal(store_recreate(path, 4, 2, why, why2, sizeof(why2)),
	    0);
	assert_int_equal(store_check(path, 2, why, sizeof(why)), 0);
	/* Fresh: the old bucket is gone. */
	assert_int_equal(store_open(path, 2, &s), 0);
	{
		struct bucket b;

		assert_int_equal(bucket_peek(s, "k", 1, NULL, 1, &b), 0);
	}
	store_close(s);
}

static void
test_garbage_recreated_by_master(void **st)
{
	char path[128], data[160];
	struct store *s;
	FILE *f;
	int i;

	(void)st;
	sub(path, sizeof(path), "state");
	assert_int_equal(mkdir(path, 0700), 0);
	sub(data, sizeof(data), "state/data.mdb");
	f = fopen(data, "w");
	assert_non_null(f);
	for (i = 0; i < 1000; i++)
		fputs("not an lmdb file at all ", f);
	fclose(f);

	assert_int_equal(store_master_init(path, 4, 2), 0);
	assert_int_equal(store_master_open(&s), 0);
	store_close(s);
	/* An existing good store is kept as it is. */
	assert_int_equal(store_open(path, 2, &s), 0);
	assert_int_equal(bucket_lease(s, "k", 1,
	    &(struct bucket_params){ 1, 3600, 5 }, 1, 2, 1, NULL), 2);
	store_close(s);
	assert_int_equal(store_master_init(path, 4, 2), 0);
	assert_int_equal(store_open(path, 2, &s), 0);
	{
		struct bucket b;

		assert_int_equal(bucket_peek(s, "k", 1, NULL, 1, &b), 1);
		assert_int_equal(bucket_whole(&b), 3);
	}
	store_close(s);
}

/* A process killed inside a read txn holds a reader slot until the
 * master's check clears it. */
static void
test_reader_check(void **st)
{
	char path[128];
	int status, pipefd[2], hold[2];
	pid_t pid, holder;
	char c;

	(void)st;
	sub(path, sizeof(path), "state");
	assert_int_equal(store_master_init(path, 4, 2), 0);
	assert_int_equal(store_reader_check(), 0);
	/* A live worker keeps the environment open (else the next opener
	 * reinitialises the lock file and every slot with it). */
	assert_int_equal(pipe(hold), 0);
	holder = fork();
	assert_true(holder >= 0);
	if (holder == 0) {
		close(hold[1]);
		if (store_proc(path, 2) == NULL)
			_exit(1);
		if (read(hold[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(hold[0]);
	usleep(100000);
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *s = store_proc(path, 2);
		MDB_txn *txn;

		if (s == NULL || store_read_begin(s, &txn) < 0)
			_exit(1);
		if (write(pipefd[1], "x", 1) != 1)
			_exit(1);
		_exit(0);	/* no reset, no close: a crash */
	}
	close(pipefd[1]);
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(store_reader_check(), 1);
	assert_int_equal(store_reader_check(), 0);
	close(hold[1]);
	assert_int_equal(waitpid(holder, &status, 0), holder);
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* A full map: new buckets are refused with an error (the caller answers
 * 503, never an admit), nothing crashes, and buckets already stored keep
 * working, since the headroom is kept for their updates. */
static void
test_full_map_never_fails_open(void **st)
{
	const struct bucket_params p = { .rate = 1, .per_s = 3600,
	    .burst = 5 };
	char why[512], path[128], key[64];
	struct store *s;
	int i, n, rc = 0, refused = 0;
	uint64_t now = store_now_ns();

	(void)st;
	sub(path, sizeof(path), "full");
	assert_int_equal(store_create(path, 1, 2, why, sizeof(why)), 0);
	assert_int_equal(store_open(path, 2, &s), 0);
	/* the first bucket, spent down to nothing */
	assert_true(bucket_lease(s, "first", 5, &p, now, 5, 1, NULL) > 0);
	for (i = 0; i < 200000 && refused == 0; i++) {
		n = snprintf(key, sizeof(key), "anonymous-ip-10.%d.%d.%d",
		    i >> 16, (i >> 8) & 255, i & 255);
		rc = bucket_lease(s, key, n, &p, now, 1, 1, NULL);
		if (rc < 0)
			refused = 1;
		else
			assert_int_equal(rc, 1);
	}
	assert_true(refused);
	assert_true(rc < 0);		/* an error, not an admit */
	/* the existing bucket still answers: empty, so refused with 0 */
	assert_int_equal(bucket_lease(s, "first", 5, &p, now, 5, 1, NULL), 0);
	/* and a reset of it still commits */
	assert_true(bucket_reset(s, "first", 5) >= 0);
	store_close(s);
}

static off_t
data_size(const char *name)
{
	char path[160];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s/data.mdb", dir, name);
	assert_int_equal(stat(path, &sb), 0);
	return sb.st_size;
}

/* The map size is the store's, set at creation or grown on purpose by the
 * master; a process configured smaller (an old master after an upgrade to
 * a larger max_mb) opens it at its real size and never shrinks the file
 * under the others; a process mapping the old size adopts the new one
 * once the data outgrows it. (One handle per process at a time: LMDB's
 * rule, so the old-size process is a child.) */
static void
test_map_size_fixed_at_create(void **st)
{
	const struct bucket_params p = { 1, 3600, 5 };
	char why[512], path[128], c;
	struct store *s;
	MDB_envinfo info;
	MDB_txn *txn;
	int ready[2], go[2], status;
	pid_t pid;

	(void)st;
	sub(path, sizeof(path), "state");
	assert_int_equal(store_create(path, 8, 2, why, sizeof(why)), 0);
	assert_int_equal(data_size("state"), 8 << 20);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *old;

		close(ready[0]);
		close(go[1]);
		if (store_open(path, 2, &old) < 0 ||
		    bucket_lease(old, "k", 1, &p, 1, 2, 1, NULL) != 2 ||
		    write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		/* The store grew to 12 MB and holds more than 8 MB now. */
		if (bucket_lease(old, "k", 1, &p, 1, 1, 1, NULL) != 1 ||
		    mdb_env_info(old->env, &info) != 0 ||
		    info.me_mapsize != 12 << 20)
			_exit(2);
		store_close(old);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	assert_int_equal(read(ready[0], &c, 1), 1);

	/* Another opener (a worker, an old master): the store's size. */
	assert_int_equal(store_open(path, 2, &s), 0);
	assert_int_equal(mdb_env_info(s->env, &info), 0);
	assert_int_equal(info.me_mapsize, 8 << 20);
	assert_int_equal(store_write_begin(s, &txn), 0);
	assert_int_equal(store_write_commit(txn), 0);
	store_close(s);
	assert_int_equal(data_size("state"), 8 << 20);

	/* The master: a smaller max_mb keeps the store's size... */
	assert_int_equal(store_master_init(path, 4, 2), 0);
	assert_int_equal(store_reader_check(), 0);
	assert_int_equal(data_size("state"), 8 << 20);
	/* ...a larger one grows it. */
	assert_int_equal(store_master_init(path, 12, 2), 0);
	assert_int_equal(data_size("state"), 12 << 20);
	/* Fill it past 8 MB; the child, still at 8 MB, then writes. */
	assert_int_equal(store_open(path, 2, &s), 0);
	{
		static char blob[4000];
		MDB_val k, v;
		char key[16];
		int i;

		assert_int_equal(store_write_begin(s, &txn), 0);
		for (i = 0; i < 2300; i++) {
			k.mv_size = (size_t)snprintf(key, sizeof(key), "b%d", i);
			k.mv_data = key;
			v.mv_size = sizeof(blob);
			v.mv_data = blob;
			assert_int_equal(mdb_put(txn, s->dbi[STORE_CACHE], &k,
			    &v, 0), 0);
		}
		assert_int_equal(store_write_commit(txn), 0);
		assert_int_equal(mdb_env_info(s->env, &info), 0);
		assert_int_equal(info.me_mapsize, 12 << 20);
		assert_true((info.me_last_pgno + 1) * s->psize > 8u << 20);
	}
	store_close(s);
	assert_int_equal(write(go[1], "g", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	close(ready[0]);
	close(go[1]);
	assert_int_equal(data_size("state"), 12 << 20);
	/* After a handover the master never opens the store again. */
	store_master_detach();
	assert_true(store_reader_check() < 0);
	assert_true(store_master_open(&s) < 0);
	assert_null(s);
}

/* A map filled by a flood of new keys recovers: the flood is stopped
 * before the last pages (decided from fresh figures, not a cached
 * answer), the sweep can still delete (the reserve is kept for
 * deletions), and once it has, new keys are admitted again. */
static void
test_full_map_recovers_after_sweep(void **st)
{
	const struct bucket_params p = { .rate = 1000, .per_s = 1,
	    .burst = 1 };
	char why[512], path[128], key[64];
	struct store *s;
	int i, n, rc = 0, swept = 0, total = 0;
	uint64_t now = store_now_ns();

	(void)st;
	sub(path, sizeof(path), "full");
	assert_int_equal(store_create(path, 1, 2, why, sizeof(why)), 0);
	assert_int_equal(store_open(path, 2, &s), 0);
	for (i = 0; i < 200000; i++) {
		n = snprintf(key, sizeof(key), "anonymous-ip-10.%d.%d.%d",
		    i >> 16, (i >> 8) & 255, i & 255);
		rc = bucket_lease(s, key, (size_t)n, &p, now, 1, 1, NULL);
		if (rc < 0)
			break;
		assert_int_equal(rc, 1);
	}
	assert_int_equal(rc, MDB_MAP_FULL);
	assert_true(i > 1000);
	/* Still refused a moment later. */
	assert_int_equal(bucket_lease(s, "late", 4, &p, now, 1, 1, NULL),
	    MDB_MAP_FULL);
	/* A second on, every bucket has refilled: the sweep deletes them
	 * all, in as many calls as it takes, without an error. */
	now += 1000000000ull;
	{
		struct bucket_sweep sw;

		memset(&sw, 0, sizeof(sw));
		for (i = 0; i < 1000; i++) {
			swept = bucket_sweep(s, now, &sw);
			assert_true(swept >= 0);
			total += swept;
			if (swept == 0 && sw.at_end)
				break;
		}
	}
	assert_int_equal(swept, 0);
	assert_true(total > 1000);
	/* And new keys are admitted again. */
	for (i = 0; i < 100; i++) {
		n = snprintf(key, sizeof(key), "after-%d", i);
		assert_int_equal(bucket_lease(s, key, (size_t)n, &p, now, 1, 1,
		    NULL), 1);
	}
	store_close(s);
}

/* The main database's record of one database's format:
 * "portico.format." NAME = msgpack [1, FMT]. */
static void
put_format(const char *path, const char *name, unsigned fmt)
{
	const unsigned char val[] = { 0x92, 0x01, (unsigned char)fmt };
	char kb[64];
	struct store *s;
	MDB_txn *txn;
	MDB_dbi main;
	MDB_val k, v;

	assert_true(fmt < 128);
	assert_int_equal(store_open(path, 2, &s), 0);
	assert_int_equal(store_write_begin(s, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &main), 0);
	k.mv_size = (size_t)snprintf(kb, sizeof(kb), "portico.format.%s",
	    name);
	k.mv_data = kb;
	v.mv_data = (void *)val;
	v.mv_size = sizeof(val);
	assert_int_equal(mdb_put(txn, main, &k, &v, 0), 0);
	assert_int_equal(store_write_commit(txn), 0);
	store_close(s);
}

/* The format recorded for NAME, or -1 when there is no record. */
static int
get_format(const char *path, const char *name)
{
	char kb[64];
	struct store *s;
	MDB_txn *txn;
	MDB_dbi main;
	MDB_val k, v;
	int fmt = -1;

	assert_int_equal(store_open(path, 2, &s), 0);
	assert_int_equal(store_read_begin(s, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &main), 0);
	k.mv_size = (size_t)snprintf(kb, sizeof(kb), "portico.format.%s",
	    name);
	k.mv_data = kb;
	if (mdb_get(txn, main, &k, &v) == 0) {
		assert_int_equal(v.mv_size, 3);
		assert_int_equal(((unsigned char *)v.mv_data)[0], 0x92);
		assert_int_equal(((unsigned char *)v.mv_data)[1], 1);
		fmt = ((unsigned char *)v.mv_data)[2];
	}
	store_read_end(s);
	store_close(s);
	return fmt;
}

/* A bucket "k" holding 3 of 5 tokens. */
static void
fill_bucket(const char *path)
{
	struct store *s;

	assert_int_equal(store_open(path, 2, &s), 0);
	assert_int_equal(bucket_lease(s, "k", 1,
	    &(struct bucket_params){ 1, 3600, 5 }, 1, 2, 1, NULL), 2);
	store_close(s);
}

/* A cache record "c". */
static void
fill_cache(const char *path)
{
	struct store *s;
	MDB_txn *txn;
	MDB_val k = { 1, (void *)"c" }, v = { 5, (void *)"value" };

	assert_int_equal(store_open(path, 2, &s), 0);
	assert_int_equal(store_write_begin(s, &txn), 0);
	assert_int_equal(mdb_put(txn, s->dbi[STORE_CACHE], &k, &v, 0), 0);
	assert_int_equal(store_write_commit(txn), 0);
	store_close(s);
}

static void
fill_two_dbs(const char *path)
{
	fill_bucket(path);
	fill_cache(path);
}

/* 1 when bucket "k" is stored, 0 absent; likewise cache record "c". */
static void
have(const char *path, int *bucket, int *cache)
{
	struct store *s;
	struct bucket b;
	MDB_txn *txn;
	MDB_val k = { 1, (void *)"c" }, v;

	assert_int_equal(store_open(path, 2, &s), 0);
	*bucket = bucket_peek(s, "k", 1, NULL, 1, &b);
	assert_true(*bucket >= 0);
	if (*bucket == 1)
		assert_int_equal(bucket_whole(&b), 3);
	assert_int_equal(store_read_begin(s, &txn), 0);
	*cache = mdb_get(txn, s->dbi[STORE_CACHE], &k, &v) == 0;
	store_read_end(s);
	store_close(s);
}

static int
file_has(const char *path, const char *what)
{
	char buf[8192];
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, what) != NULL;
}

/* Each database has its own format: a store whose buckets are of an
 * older or a newer format gets its buckets reset, alone and logged, and
 * the cache keeps its records; a change of the cache's format costs the
 * buckets nothing. */
static void
test_db_format_change_resets_that_db_alone(void **st)
{
	static const struct {
		const char *db;
		unsigned fmt;
	} cases[] = {
		{ "buckets", BUCKET_FORMAT + 1 },	/* a newer binary's */
		{ "buckets", 0 },			/* an older one's */
		{ "cache", 77 },
	};
	char why[512], path[128], logf[160];
	int b, c;
	size_t i;

	(void)st;
	sub(path, sizeof(path), "state");
	sub(logf, sizeof(logf), "log");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(store_create(path, 4, 2, why, sizeof(why)),
		    0);
		assert_int_equal(get_format(path, "buckets"), BUCKET_FORMAT);
		fill_two_dbs(path);
		put_format(path, cases[i].db, cases[i].fmt);
		assert_int_equal(log_open(logf, LOG_INFO), 0);
		assert_int_equal(store_master_init(path, 4, 2), 0);
		assert_int_equal(log_open("-", LOG_INFO), 0);
		have(path, &b, &c);
		if (strcmp(cases[i].db, "buckets") == 0) {
			assert_int_equal(b, 0);
			assert_int_equal(c, 1);
			assert_true(file_has(logf, "database buckets"));
			assert_false(file_has(logf, "database cache"));
		} else {
			assert_int_equal(b, 1);
			assert_int_equal(c, 0);
			assert_true(file_has(logf, "database cache"));
			assert_false(file_has(logf, "database buckets"));
		}
		assert_int_equal(get_format(path, cases[i].db),
		    strcmp(cases[i].db, "buckets") == 0 ? BUCKET_FORMAT : 1);
		/* Once recorded, the next start keeps both. */
		if (strcmp(cases[i].db, "buckets") == 0)
			fill_bucket(path);
		else
			fill_cache(path);
		assert_int_equal(store_master_init(path, 4, 2), 0);
		have(path, &b, &c);
		assert_int_equal(b, 1);
		assert_int_equal(c, 1);
		unlink(logf);
	}
}

/* A store made before formats were per database has no format records:
 * its databases are taken as format 1 (what every one was), so an
 * upgrade from that build keeps its buckets; the records are written. */
static void
test_store_without_db_formats_keeps_buckets(void **st)
{
	char why[512], path[128], kb[64];
	struct store *s;
	MDB_txn *txn;
	MDB_dbi main;
	MDB_val k;
	int b, c, i;

	(void)st;
	sub(path, sizeof(path), "state");
	assert_int_equal(store_create(path, 4, 2, why, sizeof(why)), 0);
	fill_two_dbs(path);
	assert_int_equal(store_open(path, 2, &s), 0);
	assert_int_equal(store_write_begin(s, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &main), 0);
	for (i = 0; i < STORE__NDB; i++) {
		k.mv_size = (size_t)snprintf(kb, sizeof(kb),
		    "portico.format.%s", store_dbs[i].name);
		k.mv_data = kb;
		assert_int_equal(mdb_del(txn, main, &k, NULL), 0);
	}
	assert_int_equal(store_write_commit(txn), 0);
	store_close(s);
	assert_int_equal(get_format(path, "buckets"), -1);
	assert_int_equal(store_master_init(path, 4, 2), 0);
	have(path, &b, &c);
	assert_int_equal(b, BUCKET_FORMAT == 1);
	assert_int_equal(c, 1);
	for (i = 0; i < STORE__NDB; i++)
		assert_int_equal(get_format(path, store_dbs[i].name),
		    (int)store_dbs[i].format);
}

/* A database this build adds (here: one deleted from the store) is
 * made by the master; the others keep their records. */
static void
test_added_db_made_others_kept(void **st)
{
	char why[512], path[128];
	struct store *s;
	MDB_txn *txn;
	int b, c;

	(void)st;
	sub(path, sizeof(path), "state");
	assert_int_equal(store_create(path, 4, 2, why, sizeof(why)), 0);
	fill_two_dbs(path);
	assert_int_equal(store_open(path, 2, &s), 0);
	assert_int_equal(store_write_begin(s, &txn), 0);
	assert_int_equal(mdb_drop(txn, s->dbi[STORE_HEALTH], 1), 0);
	assert_int_equal(store_write_commit(txn), 0);
	store_close(s);
	assert_true(store_open(path, 2, &s) < 0);	/* a worker needs it */
	assert_int_equal(store_master_init(path, 4, 2), 0);
	have(path, &b, &c);
	assert_int_equal(b, 1);
	assert_int_equal(c, 1);
}

/* The master's tick runs each database's upkeep: the buckets' sweep
 * drops a bucket that has refilled. */
static void
test_master_tick_runs_upkeep(void **st)
{
	char path[128];
	struct store *s;
	struct bucket b;

	(void)st;
	sub(path, sizeof(path), "state");
	assert_int_equal(store_master_init(path, 4, 2), 0);
	assert_int_equal(store_open(path, 2, &s), 0);
	/* Taken at time 1 ns, a bucket of 1 token a ms: full long since. */
	assert_int_equal(bucket_lease(s, "k", 1,
	    &(struct bucket_params){ 1000, 1, 1 }, 1, 1, 1, NULL), 1);
	assert_int_equal(bucket_peek(s, "k", 1, NULL, 1, &b), 1);
	store_close(s);
	store_tick(store_now_ns() / 1000000 + 10000);
	assert_int_equal(store_open(path, 2, &s), 0);
	assert_int_equal(bucket_peek(s, "k", 1, NULL, 1, &b), 0);
	store_close(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_check, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_schema_mismatch_recreated,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_recreated_by_master,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_map_never_fails_open,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_check, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_map_size_fixed_at_create,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_map_recovers_after_sweep,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_db_format_change_resets_that_db_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_store_without_db_formats_keeps_buckets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_added_db_made_others_kept,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_master_tick_runs_upkeep,
		    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
