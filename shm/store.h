/*
 * store: the node's shared state, one LMDB environment on tmpfs at
 * server.state.path (a directory holding data.mdb and lock.mdb).
 *
 * Every process opens its own handle after fork and never uses one across
 * it (LMDB's rule). All processes and binaries open it with the same flags
 * (MDB_NOTLS | MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP). The store is a
 * cache of live state, not of record: the master recreates it, logging
 * why, when it is missing, unreadable or of another schema.
 *
 * Values are msgpack arrays whose first element is a format version, so
 * two binaries can share the store during an upgrade (each reads another
 * format as absent). The main database holds the store's layout version
 * under STORE_SCHEMA_KEY (this key scheme and the way databases are kept:
 * a change of it recreates the whole store), and the format of each
 * database under STORE_FORMAT_PREFIX NAME.
 *
 * The databases are registered in store_dbs (shm/store_dbs.c), each with
 * its own format and its own upkeep. When the master (store_master_init)
 * finds a database of another format than its build's, older or newer,
 * it empties that database alone (logged) and records its own format:
 * a change to the bucket format costs the cache nothing, nor the other
 * way round. A database with no record is format 1 (stores made before
 * formats were per database); one missing is created.
 *
 * Errors: functions returning int give 0 (or a count) on success and a
 * negative LMDB / errno code on failure (MDB_MAP_FULL when the map is
 * full); store_strerror names it. A full map is an ordinary error: the
 * caller decides (rate limiting refuses, it never fails open).
 */
#ifndef PORTICO_STORE_H
#define PORTICO_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <lmdb.h>

#define STORE_SCHEMA		1
#define STORE_SCHEMA_KEY	"portico.schema"
#define STORE_FORMAT_PREFIX	"portico.format."

enum store_db {
	STORE_BUCKETS,		/* rate-limit buckets: see bucket.h */
	STORE_BREAKERS,		/* service + instance: breaker state */
	STORE_HEALTH,		/* service + instance: health results */
	STORE_CACHE,		/* response cache: see cache_store.h */
	STORE_CACHE_EXP,	/* eviction indexes: expiry, last use */
	STORE_CACHE_META,	/* per entry figures, fetch locks, totals */
	STORE_TICKETS,		/* TLS session-ticket keys: see tickets.h */
	STORE_LASTGOOD,		/* aggregate parts' last good bodies:
				 * see lastgood.h */
	STORE__NDB
};

struct store;

/* One database of the store. */
struct store_dbdef {
	const char *name;	/* LMDB's name of it */
	uint32_t format;	/* of its values; another one empties it */
	/* upkeep: the master's work on it, about once a second
	 * (store_tick), e.g. dropping what has expired. STATE, of
	 * state_size bytes, is zeroed once and kept across calls. Records
	 * dropped, or negative. NULL: none. */
	int (*upkeep)(struct store *s, uint64_t now_ns, void *state);
	size_t state_size;
};
extern const struct store_dbdef store_dbs[STORE__NDB];

struct store {
	MDB_env *env;
	MDB_dbi dbi[STORE__NDB];
	MDB_txn *rtxn;		/* this process's read txn, reset between uses */
	int pid;		/* the process that opened env */
	size_t psize;		/* page size */
};

/* store_open: open the existing store at PATH in this process (workers,
 * after fork), at the map size the store records: that size is set when
 * the store is created and only ever grown, by the master
 * (store_master_init), never shrunk by an opener. A process whose map
 * another one grew adopts the new size on its next transaction. NWORKERS
 * (the configured number of workers) sizes the reader table. Every
 * registered database must be there. 0 or negative. */
int store_open(const char *path, unsigned nworkers, struct store **out);
void store_close(struct store *s);

/* store_check: whether PATH holds a store this build can use; on failure
 * -1 with the reason in why. Leaves nothing open. */
int store_check(const char *path, unsigned nworkers, char *why,
    size_t whylen);
/* store_create: a fresh store at PATH (its directory is made; old files
 * removed), a map of MAX_MB reserved with posix_fallocate, every
 * registered database made and the schema and format records written. 0
 * or negative with the reason in why. */
int store_create(const char *path, unsigned max_mb, unsigned nworkers,
    char *why, size_t whylen);
/* store_recreate: store_create after logging REASON. */
int store_recreate(const char *path, unsigned max_mb, unsigned nworkers,
    const char *reason, char *why, size_t whylen);

/* Master side. store_master_init: check the store at PATH, recreating
 * it when its layout is not this build's or it cannot be read (logged),
 * starting afresh each database of another format (logged), and grow its
 * map to MAX_MB when that is larger (a smaller MAX_MB keeps the store's
 * size: logged); call before forking workers. 0 or -1 (logged). The
 * master holds no handle across fork: its operations below open the
 * store, work and close it again. */
int store_master_init(const char *path, unsigned max_mb, unsigned nworkers);
/* store_master_detach: this master handed the node to a new one (binary
 * upgrade): it never opens the store again (store_reader_check,
 * store_tick and store_master_open then do nothing / fail). */
void store_master_detach(void);
/* store_reader_check: clear reader slots of dead processes. Number
 * cleared, or negative. Call when a worker dies. */
int store_reader_check(void);
/* store_tick: about once a second (NOW_MS, CLOCK_MONOTONIC ms): reader
 * check, then the upkeep of each database (store_dbs). */
void store_tick(uint64_t now_ms);
/* store_master_open: a short-lived handle for the master's own work
 * (gwctl commands); close it with store_close before returning to the
 * event loop. 0 or negative. */
int store_master_open(struct store **out);

/* store_pid: this process's id, as getpid() says, without its system call
 * on every use (glibc does not cache it; the rate limiter asks per
 * request): read once, and read again in a child after fork (a
 * pthread_atfork handler forgets the parent's). */
int store_pid(void);

/* store_proc: this process's handle on the store at PATH, opened on first
 * use (and again only after a failure, at most once a second). NULL when
 * it cannot be opened (logged), or when PATH is NULL and it is not open
 * yet. */
struct store *store_proc(const char *path, unsigned nworkers);

/* Transactions. The read txn is the process's own, renewed and reset, and
 * never held across I/O. */
int store_read_begin(struct store *s, MDB_txn **txn);
void store_read_end(struct store *s);
int store_write_begin(struct store *s, MDB_txn **txn);
int store_write_commit(MDB_txn *txn);
void store_write_abort(MDB_txn *txn);
/* store_write_end: commit TXN when WRITTEN > 0, else abort it (nothing
 * to make durable). WRITTEN, or a negative store code from the commit. */
int store_write_end(MDB_txn *txn, int written);

/* A fixed buffer for msgpack_packer_init(pk, buf, store_buf_write): the
 * values are small, so no allocation; overflow is remembered. */
struct store_buf {
	char *p;
	size_t len, cap;
	int overflow;
};
int store_buf_write(void *data, const char *buf, size_t len);
/* store_read_uints: the first N unsigned integers of a msgpack array
 * (V[0..N)); 0, or -1 when BUF is not such an array (fewer, or another
 * type). Buckets, health and breaker records are read with it on every
 * lease and refill: a direct reader, not msgpack-c's unpacker (which
 * allocates a zone per call). A later format may append fields. */
int store_read_uints(const void *buf, size_t len, uint64_t *v, size_t n);

/*
 * Room in the map. LMDB needs free pages for every write, deletions
 * included (copy-on-write), and a map with none left cannot even delete
 * to make room. So the last STORE_RESERVE_PCT of the map (at least
 * STORE_RESERVE_MIN pages) is kept for deletions (the sweep, gwctl
 * --reset), updates of existing entries may use the pages above it, and
 * new entries only what is above STORE_HEADROOM_PCT.
 *
 * store_room: whether a write of kind USE fits, from fresh figures: the
 * pages past the last one used plus the freelist, counted now in a read
 * txn of the latest state. Call it inside the write txn TXN before
 * writing: the writer lock keeps the figures exact until the commit.
 * 0, or MDB_MAP_FULL. Deletions need no call.
 */
#define STORE_HEADROOM_PCT	10
#define STORE_RESERVE_PCT	5
#define STORE_RESERVE_MIN	32
#define STORE_SPARE_PCT		20
enum store_use {
	STORE_NEW,		/* a new entry */
	STORE_UPDATE,		/* an existing entry, rewritten */
	STORE_SPARE,		/* what may be dropped again (the cache):
				 * only while STORE_SPARE_PCT of the map is
				 * free, so that it never takes the room
				 * rate limiting and breakers need */
};
int store_room(struct store *s, MDB_txn *txn, enum store_use use);

/* store_figures: the map as of the latest commit, for gwctl. 0 or
 * negative. */
struct store_figures {
	uint64_t map_bytes;
	uint64_t page_size;
	uint64_t pages;			/* in the map */
	uint64_t free_pages;		/* never used + on the freelist */
	uint64_t reserve_pages;		/* kept for deletions */
	uint64_t headroom_pages;	/* new entries need more than this */
	uint64_t last_txnid;		/* write transactions committed */
};
int store_figures(struct store *s, struct store_figures *f);

/* store_txnid: the id of the latest committed write txn, read from
 * LMDB's meta page without a txn or a lock: what a process read from the
 * store is still current while this has not moved (the workers' breaker
 * and health cache). 0 when unknown. */
uint64_t store_txnid(struct store *s);

const char *store_strerror(int rc);
/* store_now_ns: CLOCK_MONOTONIC in ns, the one clock of every process. */
uint64_t store_now_ns(void);

#endif
