#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "../master/log.h"
#include "store.h"

/* The same flags in every process and binary: LMDB requires it of
 * MDB_WRITEMAP, and NOSYNC is right for tmpfs state that never outlives a
 * reboot. NOTLS: read txns belong to the txn object, not the thread. */
#define ENV_FLAGS	(MDB_NOTLS | MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP)
#define VALUE_FORMAT	1

/* The master's view: what store_master_init checked. */
static struct {
	char path[PATH_MAX];
	unsigned nworkers;
	int ready;
	uint64_t last_tick_ms;
	void *upkeep[STORE__NDB];	/* each database's upkeep state */
} master;

/* This process's handle (store_proc). */
static struct {
	struct store *s;
	int pid;
	uint64_t retry_ms;
} proc;

/* store_pid's memory: 0 until read, and again in a fork's child. */
static int self_pid;
static bool self_pid_atfork;

static void
forget_pid(void)
{
	self_pid = 0;
}

int
store_pid(void)
{
	if (self_pid != 0)
		return self_pid;
	/* Without the handler a child would keep its parent's id: read
	 * it every time instead. */
	if (!self_pid_atfork &&
	    pthread_atfork(NULL, NULL, forget_pid) != 0)
		return (int)getpid();
	self_pid_atfork = true;
	self_pid = (int)getpid();
	return self_pid;
}

uint64_t
store_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *
store_strerror(int rc)
{
	return mdb_strerror(rc < 0 && rc > -4096 ? -rc : rc);
}

int
store_buf_write(void *data, const char *buf, size_t len)
{
	struct store_buf *b = data;

	if (b->len + len > b->cap) {
		b->overflow = 1;
		return -1;
	}
	memcpy(b->p + b->len, buf, len);
	b->len += len;
	return 0;
}

/* One msgpack unsigned integer at *P (before END). 0 or -1. */
static int
get_uint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
	const unsigned char *q = *p;
	size_t n, i;

	if (q >= end)
		return -1;
	if (*q <= 0x7f) {
		*v = *q;
		*p = q + 1;
		return 0;
	}
	switch (*q) {
	case 0xcc: n = 1; break;
	case 0xcd: n = 2; break;
	case 0xce: n = 4; break;
	case 0xcf: n = 8; break;
	default: return -1;
	}
	if ((size_t)(end - q - 1) < n)
		return -1;
	*v = 0;
	for (i = 1; i <= n; i++)
		*v = *v << 8 | q[i];
	*p = q + 1 + n;
	return 0;
}

int
store_read_uints(const void *buf, size_t len, uint64_t *v, size_t n)
{
	const unsigned char *p = buf, *end = p + len;
	size_t have, i;

	if (len < 1)
		return -1;
	if (*p >= 0x90 && *p <= 0x9f) {
		have = *p & 0x0f;
		p++;
	} else if (*p == 0xdc && len >= 3) {
		have = (size_t)p[1] << 8 | p[2];
		p += 3;
	} else {
		return -1;
	}
	if (have < n)
		return -1;
	for (i = 0; i < n; i++)
		if (get_uint(&p, end, &v[i]) < 0)
			return -1;
	return 0;
}

/* Two generations of workers (a reload runs both), the master, gwctl's
 * requests served by the master, and room for a binary upgrade's master. */
static unsigned
readers(unsigned nworkers)
{
	unsigned n = 2 * nworkers + 16;

	return n < 126 ? 126 : n;
}

/* LMDB's own codes are negative, errno values positive: make both
 * negative, as every function here returns them. */
static int
neg(int rc)
{
	return rc > 0 ? -rc : rc;
}

static int
mkdirs(const char *path)
{
	char buf[PATH_MAX];
	char *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* A version record: msgpack [VALUE_FORMAT, V]. Bytes written, or -1. */
static int
version_encode(char *out, size_t cap, uint32_t v)
{
	struct store_buf b = { out, 0, cap, 0 };
	msgpack_packer pk;

	msgpack_packer_init(&pk, &b, store_buf_write);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_uint32(&pk, VALUE_FORMAT);
	msgpack_pack_uint32(&pk, v);
	return b.overflow ? -1 : (int)b.len;
}

/* The version in a stored record, or -1 when it is not ours. */
static int64_t
version_decode(const void *data, size_t len)
{
	msgpack_unpacked up;
	const msgpack_object *a;
	int64_t v = -1;

	msgpack_unpacked_init(&up);
	if (msgpack_unpack_next(&up, data, len, NULL) !=
	    MSGPACK_UNPACK_SUCCESS)
		goto done;
	if (up.data.type != MSGPACK_OBJECT_ARRAY || up.data.via.array.size < 2)
		goto done;
	a = up.data.via.array.ptr;
	if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
	    a[0].via.u64 != VALUE_FORMAT ||
	    a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
	    a[1].via.u64 > INT64_MAX)
		goto done;
	v = (int64_t)a[1].via.u64;
done:
	msgpack_unpacked_destroy(&up);
	return v;
}

/* Write version V under KEY in the main database. 0 or an LMDB code. */
static int
version_put(MDB_txn *txn, MDB_dbi main, const char *key, uint32_t v)
{
	MDB_val k, d;
	char buf[16];

	k.mv_data = (void *)key;
	k.mv_size = strlen(key);
	d.mv_data = buf;
	d.mv_size = (size_t)version_encode(buf, sizeof(buf), v);
	return mdb_put(txn, main, &k, &d, 0);
}

/* The key of database I's format record. */
static void
format_key(int i, char *out, size_t cap)
{
	snprintf(out, cap, "%s%s", STORE_FORMAT_PREFIX, store_dbs[i].name);
}

/* How env_open treats what it finds. */
enum env_mode {
	ENV_READ,	/* read only: everything must be there */
	ENV_MASTER,	/* the master: missing databases are made */
	ENV_FRESH,	/* an empty store: write every record */
};

/* Open the environment at PATH and the databases of store_dbs (MODE
 * says what to make of missing ones). MAPSIZE 0 takes the size the store
 * records (set when it was created or grown): with MDB_WRITEMAP, LMDB
 * resizes data.mdb to the opener's map size, so an opener with its own,
 * smaller idea would shrink the file under processes that map it whole
 * (SIGBUS for them). */
static int
env_open(const char *path, size_t mapsize, unsigned nworkers,
    enum env_mode mode, struct store **out, char *why, size_t whylen)
{
	struct store *s;
	MDB_txn *txn = NULL;
	MDB_dbi main;
	MDB_val k, v;
	MDB_stat st;
	char fk[64];
	int64_t schema;
	int rc, i;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->pid = store_pid();
	if ((rc = mdb_env_create(&s->env)) != 0 ||
	    (rc = mdb_env_set_maxreaders(s->env, readers(nworkers))) != 0 ||
	    (mapsize != 0 &&
	    (rc = mdb_env_set_mapsize(s->env, mapsize)) != 0) ||
	    (rc = mdb_env_set_maxdbs(s->env, STORE__NDB + 2)) != 0) {
		snprintf(why, whylen, "lmdb setup: %s", mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_env_open(s->env, path, ENV_FLAGS, 0600)) != 0) {
		snprintf(why, whylen, "cannot open %s: %s", path,
		    mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_txn_begin(s->env, NULL, mode == ENV_READ ? MDB_RDONLY :
	    0, &txn)) != 0) {
		snprintf(why, whylen, "%s: transaction: %s", path,
		    mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) != 0) {
		snprintf(why, whylen, "%s: main database: %s", path,
		    mdb_strerror(rc));
		goto fail;
	}
	if (mode == ENV_FRESH) {
		if ((rc = version_put(txn, main, STORE_SCHEMA_KEY,
		    STORE_SCHEMA)) != 0) {
			snprintf(why, whylen, "%s: writing the schema: %s",
			    path, mdb_strerror(rc));
			goto fail;
		}
	} else {
		k.mv_data = (void *)STORE_SCHEMA_KEY;
		k.mv_size = strlen(STORE_SCHEMA_KEY);
		rc = mdb_get(txn, main, &k, &v);
		if (rc != 0) {
			snprintf(why, whylen, "%s: no schema record (%s)", path,
			    mdb_strerror(rc));
			goto fail;
		}
		schema = version_decode(v.mv_data, v.mv_size);
		if (schema != STORE_SCHEMA) {
			snprintf(why, whylen, "%s: schema %lld, this build "
			    "uses %d", path, (long long)schema, STORE_SCHEMA);
			rc = MDB_INCOMPATIBLE;
			goto fail;
		}
	}
	for (i = 0; i < STORE__NDB; i++) {
		rc = mdb_dbi_open(txn, store_dbs[i].name, mode == ENV_READ ? 0 :
		    MDB_CREATE, &s->dbi[i]);
		if (rc != 0) {
			snprintf(why, whylen, "%s: database %s: %s", path,
			    store_dbs[i].name, mdb_strerror(rc));
			goto fail;
		}
		if (mode != ENV_FRESH)
			continue;
		format_key(i, fk, sizeof(fk));
		if ((rc = version_put(txn, main, fk,
		    store_dbs[i].format)) != 0) {
			snprintf(why, whylen, "%s: writing the format of %s: "
			    "%s", path, store_dbs[i].name, mdb_strerror(rc));
			goto fail;
		}
	}
	if ((rc = mdb_env_stat(s->env, &st)) != 0) {
		snprintf(why, whylen, "%s: stat: %s", path, mdb_strerror(rc));
		goto fail;
	}
	s->psize = st.ms_psize;
	/* Commit even a read txn: that keeps the dbi handles open. */
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0) {
		snprintf(why, whylen, "%s: commit: %s", path, mdb_strerror(rc));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (s->env != NULL)
		mdb_env_close(s->env);
	free(s);
	return rc != 0 ? neg(rc) : -EIO;
}

/* The master's look at each database's format record (see store.h): a
 * database of another format is emptied, alone and logged, and every
 * record is written as this build's. 0, or negative with the reason in
 * why. */
static int
formats_check(struct store *s, const char *path, char *why, size_t whylen)
{
	MDB_txn *txn;
	MDB_dbi main;
	MDB_val k, v;
	char fk[64];
	int64_t fmt;
	int rc, i, dirty = 0;

	if ((rc = store_write_begin(s, &txn)) < 0) {
		snprintf(why, whylen, "%s: transaction: %s", path,
		    store_strerror(rc));
		return rc;
	}
	if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) != 0)
		goto fail;
	for (i = 0; i < STORE__NDB; i++) {
		format_key(i, fk, sizeof(fk));
		k.mv_data = fk;
		k.mv_size = strlen(fk);
		rc = mdb_get(txn, main, &k, &v);
		if (rc != 0 && rc != MDB_NOTFOUND)
			goto fail;
		fmt = rc == 0 ? version_decode(v.mv_data, v.mv_size) : 1;
		if (rc == 0 && fmt == (int64_t)store_dbs[i].format)
			continue;
		if (fmt != (int64_t)store_dbs[i].format) {
			log_warn("shared store %s: database %s has format "
			    "%lld, this build uses %u: starting it afresh",
			    path, store_dbs[i].name, (long long)fmt,
			    (unsigned)store_dbs[i].format);
			if ((rc = mdb_drop(txn, s->dbi[i], 0)) != 0)
				goto fail;
		}
		if ((rc = version_put(txn, main, fk,
		    store_dbs[i].format)) != 0)
			goto fail;
		dirty = 1;
	}
	if (!dirty) {
		store_write_abort(txn);
		return 0;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		snprintf(why, whylen, "%s: commit: %s", path, mdb_strerror(rc));
		return neg(rc);
	}
	return 0;
fail:
	snprintf(why, whylen, "%s: database formats: %s", path,
	    mdb_strerror(rc));
	store_write_abort(txn);
	return neg(rc);
}

int
store_open(const char *path, unsigned nworkers, struct store **out)
{
	char why[512];
	int rc;

	rc = env_open(path, 0, nworkers, ENV_READ, out, why, sizeof(why));
	if (rc < 0)
		log_error("shared store: %s", why);
	return rc;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	/* A handle inherited across fork belongs to the parent: leave it. */
	if (s->pid == store_pid()) {
		if (s->rtxn != NULL)
			mdb_txn_abort(s->rtxn);
		mdb_env_close(s->env);
	}
	free(s);
}

static int
file_in(const char *dir, const char *name, char *out, size_t cap)
{
	if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap)
		return -ENAMETOOLONG;
	return 0;
}

int
store_check(const char *path, unsigned nworkers, char *why, size_t whylen)
{
	struct store *s;
	struct stat st;
	char data[PATH_MAX];

	if (file_in(path, "data.mdb", data, sizeof(data)) < 0) {
		snprintf(why, whylen, "%s: path too long", path);
		return -1;
	}
	if (stat(data, &st) < 0) {
		snprintf(why, whylen, "%s is missing", data);
		return -1;
	}
	if (env_open(path, 0, nworkers, ENV_READ, &s, why, whylen) < 0)
		return -1;
	store_close(s);
	return 0;
}

int
store_create(const char *path, unsigned max_mb, unsigned nworkers,
    char *why, size_t whylen)
{
	static const char *const files[] = { "data.mdb", "lock.mdb" };
	struct store *s;
	char f[PATH_MAX];
	mdb_filehandle_t fd;
	size_t i;
	int rc;

	if ((rc = mkdirs(path)) < 0) {
		snprintf(why, whylen, "cannot create %s: %s", path,
		    strerror(-rc));
		return rc;
	}
	/* Unlink, never truncate: a process still mapping the old files
	 * keeps its own inode and cannot fault on a shrunk file. */
	for (i = 0; i < 2; i++)
		if (file_in(path, files[i], f, sizeof(f)) == 0 &&
		    unlink(f) < 0 && errno != ENOENT) {
			rc = -errno;
			snprintf(why, whylen, "cannot remove %s: %s", f,
			    strerror(errno));
			return rc;
		}
	rc = env_open(path, (size_t)max_mb << 20, nworkers, ENV_FRESH, &s,
	    why, whylen);
	if (rc < 0)
		return rc;
	/* Reserve the whole map now: a sparse map on a full tmpfs faults
	 * with SIGBUS on a write far from any check. */
	if ((rc = mdb_env_get_fd(s->env, &fd)) == 0)
		rc = posix_fallocate(fd, 0, (off_t)max_mb << 20);
	store_close(s);
	if (rc != 0) {
		snprintf(why, whylen, "cannot reserve %u MB for %s: %s",
		    max_mb, path, strerror(rc));
		return neg(rc);
	}
	return 0;
}

int
store_recreate(const char *path, unsigned max_mb, unsigned nworkers,
    const char *reason, char *why, size_t whylen)
{
	log_warn("shared store %s: recreating it: %s", path, reason);
	return store_create(path, max_mb, nworkers, why, whylen);
}

/* The store S at PATH as the master finds it: grown to WANT_MB when that
 * is larger than its size (recorded by a commit, so every later opener
 * maps the new size), never shrunk, and reserved on tmpfs. Its size in
 * MB, or negative (logged). */
static int
master_size(struct store *s, const char *path, unsigned want_mb)
{
	size_t want = (size_t)want_mb << 20, cur;
	MDB_envinfo info;
	MDB_txn *txn;
	MDB_dbi main;
	mdb_filehandle_t fd;
	int rc;

	if ((rc = mdb_env_info(s->env, &info)) != 0)
		goto fail;
	cur = info.me_mapsize;
	if (want > cur) {
		if ((rc = mdb_env_set_mapsize(s->env, want)) != 0 ||
		    (rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
			goto fail;
		/* Any commit records the new size: rewrite the schema. */
		if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) != 0 ||
		    (rc = version_put(txn, main, STORE_SCHEMA_KEY,
		    STORE_SCHEMA)) != 0) {
			mdb_txn_abort(txn);
			goto fail;
		}
		if ((rc = mdb_txn_commit(txn)) != 0)
			goto fail;
		log_info("shared store %s: map grown from %zu to %u MB", path,
		    cur >> 20, want_mb);
		cur = want;
	} else if (want < cur) {
		log_info("shared store %s: keeping its %zu MB map (max_mb is "
		    "%u; a store is never shrunk in place: remove it to start "
		    "smaller)", path, cur >> 20, want_mb);
	}
	if ((rc = mdb_env_get_fd(s->env, &fd)) == 0)
		rc = posix_fallocate(fd, 0, (off_t)cur);
	if (rc != 0) {
		log_error("shared store: cannot reserve %zu MB for %s: %s",
		    cur >> 20, path, strerror(rc));
		return neg(rc);
	}
	return (int)(cur >> 20);
fail:
	log_error("shared store %s: sizing the map: %s", path,
	    mdb_strerror(rc));
	return neg(rc);
}

int
store_master_init(const char *path, unsigned max_mb, unsigned nworkers)
{
	unsigned mb = max_mb, nw = nworkers;
	struct store *s = NULL;
	char why[512], why2[512];
	int rc, i;

	if (snprintf(master.path, sizeof(master.path), "%s", path) >=
	    (int)sizeof(master.path)) {
		log_error("shared store: path too long: %s", path);
		return -1;
	}
	master.nworkers = nw;
	master.ready = 0;
	for (i = 0; i < STORE__NDB; i++)
		if (master.upkeep[i] == NULL && store_dbs[i].upkeep != NULL &&
		    (master.upkeep[i] = calloc(1,
		    store_dbs[i].state_size)) == NULL) {
			log_error("shared store: out of memory");
			return -1;
		}
	if (file_in(path, "data.mdb", why2, sizeof(why2)) == 0 &&
	    access(why2, F_OK) < 0) {
		log_info("shared store %s: creating it", path);
		rc = store_create(path, mb, nw, why2, sizeof(why2));
	} else if (env_open(path, 0, nw, ENV_MASTER, &s, why,
	    sizeof(why)) < 0) {
		rc = store_recreate(path, mb, nw, why, why2, sizeof(why2));
	} else {
		/* An existing store: keep its state (buckets stay limited
		 * across restarts and upgrades) and its size, unless the
		 * configuration asks for more; a database of another format
		 * starts afresh alone. */
		rc = master_size(s, path, mb);
		if (rc < 0) {
			store_close(s);
			return -1;	/* logged */
		}
		mb = (unsigned)rc;
		rc = formats_check(s, path, why, sizeof(why));
		store_close(s);
		if (rc < 0)
			rc = store_recreate(path, mb, nw, why, why2,
			    sizeof(why2));
	}
	if (rc < 0) {
		log_error("shared store: %s", why2);
		return -1;
	}
	master.ready = 1;
	log_info("shared store %s ready (%u MB)", path, mb);
	return 0;
}

void
store_master_detach(void)
{
	if (master.ready)
		log_info("shared store: handed over; this master no longer "
		    "opens it");
	master.ready = 0;
}

int
store_master_open(struct store **out)
{
	char why[512];
	int rc;

	*out = NULL;
	if (!master.ready)
		return -ENOENT;
	rc = env_open(master.path, 0, master.nworkers, ENV_READ, out, why,
	    sizeof(why));
	if (rc < 0)
		log_error("shared store: %s", why);
	return rc;
}

int
store_reader_check(void)
{
	struct store *s;
	int dead = 0, rc;

	if (store_master_open(&s) < 0)
		return -1;
	rc = mdb_reader_check(s->env, &dead);
	store_close(s);
	if (rc != 0)
		return neg(rc);
	if (dead > 0)
		log_info("shared store: cleared %d stale reader slot%s", dead,
		    dead == 1 ? "" : "s");
	return dead;
}

void
store_tick(uint64_t now_ms)
{
	struct store *s;
	int dead = 0, i, n;

	if (!master.ready || now_ms - master.last_tick_ms < 1000)
		return;
	master.last_tick_ms = now_ms;
	if (store_master_open(&s) < 0)
		return;
	mdb_reader_check(s->env, &dead);
	if (dead > 0)
		log_info("shared store: cleared %d stale reader slot%s", dead,
		    dead == 1 ? "" : "s");
	for (i = 0; i < STORE__NDB; i++) {
		if (store_dbs[i].upkeep == NULL)
			continue;
		n = store_dbs[i].upkeep(s, store_now_ns(), master.upkeep[i]);
		if (n > 0)
			log_debug("shared store: %s: %d record%s dropped",
			    store_dbs[i].name, n, n == 1 ? "" : "s");
	}
	store_close(s);
}

struct store *
store_proc(const char *path, unsigned nworkers)
{
	int pid = store_pid();
	uint64_t now;

	if (proc.s != NULL && proc.pid == pid)
		return proc.s;
	if (proc.pid != pid) {
		/* Inherited from the parent: not ours to use or close. */
		proc.s = NULL;
		proc.pid = pid;
		proc.retry_ms = 0;
	}
	if (path == NULL)
		return NULL;
	now = store_now_ns() / 1000000;
	if (proc.retry_ms != 0 && now < proc.retry_ms)
		return NULL;
	if (store_open(path, nworkers, &proc.s) < 0) {
		proc.s = NULL;
		proc.retry_ms = now + 1000;
		return NULL;
	}
	return proc.s;
}

/* Pages on the freelist as of the latest commit: a read txn of its own
 * (LMDB does not let a write txn open a cursor on the freelist, dbi 0;
 * with MDB_NOTLS a read txn may run beside this process's write txn).
 * Each record lists page numbers led by their count, as mdb_stat -f
 * reads them. Some may still be pinned by a reader of an older
 * snapshot; the reserve absorbs that. */
static uint64_t
freelist_pages(struct store *s)
{
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val k, v;
	uint64_t n = 0;

	if (store_read_begin(s, &txn) < 0)
		return 0;
	if (mdb_cursor_open(txn, 0, &cur) == 0) {
		while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
			if (v.mv_size >= sizeof(size_t))
				n += *(const size_t *)v.mv_data;
		mdb_cursor_close(cur);
	}
	store_read_end(s);
	return n;
}

static void
limits_of(uint64_t pages, uint64_t *reserve, uint64_t *headroom)
{
	uint64_t r = pages * STORE_RESERVE_PCT / 100;
	uint64_t h = pages * STORE_HEADROOM_PCT / 100;

	if (r < STORE_RESERVE_MIN)
		r = STORE_RESERVE_MIN;
	if (h < r + STORE_RESERVE_MIN)
		h = r + STORE_RESERVE_MIN;
	*reserve = r;
	*headroom = h;
}

int
store_room(struct store *s, MDB_txn *txn, enum store_use use)
{
	MDB_envinfo info;
	uint64_t pages, tail, reserve, headroom, need;

	(void)txn;
	if (mdb_env_info(s->env, &info) != 0)
		return MDB_MAP_FULL;
	pages = info.me_mapsize / s->psize;
	tail = pages > info.me_last_pgno + 1 ? pages - info.me_last_pgno - 1 :
	    0;
	limits_of(pages, &reserve, &headroom);
	need = use == STORE_NEW ? headroom : use == STORE_SPARE ?
	    pages * STORE_SPARE_PCT / 100 : reserve;
	if (need < headroom && use == STORE_SPARE)
		need = headroom;
	/* The common case: the map has never been filled that far. */
	if (tail > need)
		return 0;
	return tail + freelist_pages(s) > need ? 0 : MDB_MAP_FULL;
}

int
store_figures(struct store *s, struct store_figures *f)
{
	MDB_envinfo info;
	int rc;

	if ((rc = mdb_env_info(s->env, &info)) != 0)
		return neg(rc);
	f->map_bytes = info.me_mapsize;
	f->page_size = s->psize;
	f->pages = info.me_mapsize / s->psize;
	f->free_pages = (f->pages > info.me_last_pgno + 1 ?
	    f->pages - info.me_last_pgno - 1 : 0) + freelist_pages(s);
	limits_of(f->pages, &f->reserve_pages, &f->headroom_pages);
	f->last_txnid = info.me_last_txnid;
	return 0;
}

uint64_t
store_txnid(struct store *s)
{
	MDB_envinfo info;

	if (mdb_env_info(s->env, &info) != 0)
		return 0;
	return info.me_last_txnid;
}

/* Another process grew the map past ours (the master after an upgrade
 * to a larger max_mb): take the recorded size. No txn of this process is
 * active here. Whether to try again. */
static int
adopt_size(struct store *s, int rc)
{
	if (rc != MDB_MAP_RESIZED)
		return 0;
	if (s->rtxn != NULL) {
		mdb_txn_abort(s->rtxn);
		s->rtxn = NULL;
	}
	return mdb_env_set_mapsize(s->env, 0) == 0;
}

int
store_read_begin(struct store *s, MDB_txn **txn)
{
	int rc, again = 1;

retry:
	if (s->rtxn == NULL)
		rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn);
	else
		rc = mdb_txn_renew(s->rtxn);
	if (rc != 0 && again-- > 0 && adopt_size(s, rc))
		goto retry;
	if (rc != 0) {
		if (s->rtxn != NULL) {
			mdb_txn_abort(s->rtxn);
			s->rtxn = NULL;
		}
		return neg(rc);
	}
	*txn = s->rtxn;
	return 0;
}

void
store_read_end(struct store *s)
{
	if (s->rtxn != NULL)
		mdb_txn_reset(s->rtxn);
}

int
store_write_begin(struct store *s, MDB_txn **txn)
{
	int rc;

	rc = mdb_txn_begin(s->env, NULL, 0, txn);
	if (rc != 0 && adopt_size(s, rc))
		rc = mdb_txn_begin(s->env, NULL, 0, txn);
	return neg(rc);
}

int
store_write_commit(MDB_txn *txn)
{
	return neg(mdb_txn_commit(txn));
}

void
store_write_abort(MDB_txn *txn)
{
	mdb_txn_abort(txn);
}

int
store_write_end(MDB_txn *txn, int written)
{
	int rc;

	if (written == 0) {
		store_write_abort(txn);
		return 0;
	}
	rc = store_write_commit(txn);
	return rc < 0 ? rc : written;
}
