/*
 * cache_store: the response cache's side of the store. Every worker serves
 * what any worker stored; the HTTP rules live in policies/cache.c, this
 * module keeps the records, the eviction indexes and the figures.
 *
 * Databases (shm/store_dbs.c):
 *   cache       KEY -> an entry (a stored response) or a vary record (the
 *               upstream's Vary names: the entry itself is under KEY
 *               extended with those headers' values)
 *   cache_exp   'e' be64(evict_ns) KEY -> ""   soonest to go first
 *               'u' be64(used_ns) KEY -> ""    least recently used first
 *   cache_meta  'k' KEY -> [1, evict_ns, used_ns, charge, kind]
 *               'l' KEY -> [1, state, pid, since_ns, until_ns]: a fetch
 *                          in progress, or a "go to the origin" note
 *               "s"     -> the figures (entries, bytes, evictions, ...)
 *
 * KEY is PATH '\0' REST (cache_key_make): the normalised path first, so
 * that "every entry of a path" and "every path under a prefix" are range
 * scans. A path over CACHE_PATH_VERBATIM bytes is cut and followed by '~'
 * and its SHA-256 (the full path is in the entry's description); a key
 * still too long for LMDB has REST hashed the same way.
 *
 * Values are msgpack arrays led by their version (CACHE_VALUE_VERSION),
 * written with fixed-width integers so that a hit reads them at fixed
 * offsets without an allocation. Times are CLOCK_MONOTONIC ns (store_now_ns).
 *
 * Room: the cache never holds more than its budget (charged bytes: each
 * entry's key and value with the pages they take, plus its index
 * records), and never writes a new entry when the map is less than
 * CACHE_FREE_PCT free, so rate limiting, breakers and health keep their
 * room: an insert first evicts, expired entries first, then the least
 * recently used, and stores nothing when that is not enough.
 *
 * Errors: int functions give 0 (or a count) on success and a negative
 * LMDB / errno code on failure (store.h).
 */
#ifndef PORTICO_CACHE_STORE_H
#define PORTICO_CACHE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

#define CACHE_DB_FORMAT		1	/* of the three databases (the first
					 * format used: the databases were
					 * there, empty, before) */
#define CACHE_VALUE_VERSION	1	/* each value's leading element */
#define CACHE_KEY_MAX		480	/* LMDB's longest key is 511 */
#define CACHE_PATH_VERBATIM	200	/* a longer path is cut and hashed */
#define CACHE_PATH_CUT		160
#define CACHE_FREE_PCT		20	/* no new entry below this much free */
#define CACHE_EVICT_MAX		64	/* evictions per write txn */

enum cache_kind {
	CACHE_ENTRY = 1,	/* a stored response */
	CACHE_VARY = 2,		/* the upstream's Vary names for this key */
};

/* Entry flags. */
#define CACHE_F_ETAG_MADE	0x01	/* the ETag is ours (from the body) */
#define CACHE_F_REVALIDATE	0x02	/* must-revalidate / proxy-revalidate /
					 * s-maxage: never served stale */

/* A record as read (cache_find): pointers into the map (or into the
 * buffer it was decoded from), valid until the txn ends. */
struct cache_entry {
	enum cache_kind kind;
	int status;
	uint64_t born_ns;	/* the response's age was 0 then */
	uint64_t fresh_ns;	/* fresh until */
	uint64_t swr_ns;	/* may be served stale while refreshed until */
	uint64_t sie_ns;	/* may be served stale on upstream error until */
	uint64_t last_modified;	/* Last-Modified, Unix seconds; 0 = none */
	uint64_t id;		/* this store of the entry (body reads) */
	uint32_t flags;		/* CACHE_F_* */
	const char *etag;	/* the ETag value, quotes included */
	size_t etag_len;
	const char *desc;	/* "PATH?QUERY HOST ROUTE ...": gwctl */
	size_t desc_len;
	const char *headers;	/* "Name: value\r\n" lines */
	size_t headers_len;
	const char *body;
	size_t body_len;
	const char *vary;	/* CACHE_VARY: lower-case names, ',' between */
	size_t vary_len;
};

/* cache_encode: the value of E into OUT (cache_value_len(E) bytes). The
 * length written. cache_decode: 0, or -1 for a value that is not this
 * format or is inconsistent. */
size_t cache_value_len(const struct cache_entry *e);
size_t cache_encode(const struct cache_entry *e, char *out);
int cache_decode(const void *p, size_t n, struct cache_entry *e);

/* cache_key_path: the path part of a key (PATH, or its cut and hashed
 * form) into OUT, which holds CACHE_PATH_VERBATIM bytes; its length. */
size_t cache_key_path(const char *path, size_t n, char *out);
/* cache_key_make: the key PATH '\0' REST into OUT (CACHE_KEY_MAX bytes),
 * REST hashed when the whole would not fit; its length. */
size_t cache_key_make(const char *path, size_t plen, const char *rest,
    size_t rlen, char *out);

/* cache_find: the record under KEY in TXN, a txn the caller has open
 * (read or write). 0 found (E points into the map until the txn ends),
 * 1 absent or unreadable (another format), negative on error. */
int cache_find(struct store *s, MDB_txn *txn, const char *key, size_t klen,
    struct cache_entry *e);

/* Fetch locks: one request fetches a missing or expired key while
 * others wait (request collapsing), or a note says "go to the origin"
 * for a while (the response could not be stored, or the fetch failed). */
enum cache_lock_state {
	CACHE_LOCK_NONE = 0,
	CACHE_LOCK_FETCH = 1,	/* pid fetches it, until until_ns */
	CACHE_LOCK_PASS = 2,	/* not storable: everyone to the origin */
	CACHE_LOCK_FAILED = 3,	/* the last fetch failed: no waiting */
};

struct cache_lock {
	enum cache_lock_state state;
	pid_t pid;
	uint64_t since_ns, until_ns;
};

/* cache_lock_peek: the lock on KEY in TXN as it stands (state NONE when
 * absent); a FETCH whose process is gone or whose time is over reads as
 * NONE. 0 or negative. */
int cache_lock_peek(struct store *s, MDB_txn *txn, const char *key,
    size_t klen, uint64_t now_ns, struct cache_lock *l);
/* cache_lock_take: become the fetcher of KEY until UNTIL_NS, unless a live
 * lock or note is there (then *seen tells what). 1 taken (*seen is the
 * lock taken), 0 held by another, negative on error. */
int cache_lock_take(struct store *s, const char *key, size_t klen,
    uint64_t now_ns, uint64_t until_ns, struct cache_lock *seen);
/* cache_lock_end: end the lock MINE took: removed (STATE NONE) or
 * replaced by a note (PASS or FAILED) until UNTIL_NS. A lock another
 * process took over meanwhile is left to it. 0 or negative. */
int cache_lock_end(struct store *s, const char *key, size_t klen,
    const struct cache_lock *mine, enum cache_lock_state state,
    uint64_t until_ns);

/* What cache_put does besides storing. */
struct cache_put {
	uint64_t budget;	/* bytes the cache may hold */
	uint64_t now_ns;
	uint64_t evict_ns;	/* the record may go after this */
	const char *vary_key;	/* not NULL: also store a vary record ... */
	size_t vary_klen;	/* ... under this key, naming: */
	const char *vary;
	size_t vary_len;
	/* results */
	unsigned evicted;	/* entries evicted to make room */
	bool stored;		/* false: no room (not an error) */
};

/* cache_put: store entry E under KEY in one write txn: the old record
 * and its index go, room is made (expired first, then least recently
 * used; at most CACHE_EVICT_MAX entries), the entry, its index and the
 * figures are written and any lock on KEY is removed. Without room,
 * P->stored is false and nothing changes but the evictions. 0 or
 * negative. */
int cache_put(struct store *s, const char *key, size_t klen,
    const struct cache_entry *e, struct cache_put *p);

/* cache_touch: mark the N keys (KEYS[i] of LENS[i] bytes) used at NOW_NS
 * in one write txn; a key used less than GRAIN_NS ago, or gone, is left.
 * The number moved in the LRU order, or negative. */
int cache_touch(struct store *s, const char *const *keys,
    const size_t *lens, size_t n, uint64_t now_ns, uint64_t grain_ns);

/* cache_invalidate: remove every record whose key has the path part
 * PKEY (cache_key_path), in short write txns. The number removed, or
 * negative. */
int cache_invalidate(struct store *s, const char *pkey, size_t plen);

/* cache_purge: remove every record whose path is PREFIX or under it
 * (segment-aware: "/a" takes /a and /a/b, not /ab; "/" takes all), and
 * their locks, in short write txns. The number of entries removed, or
 * negative. */
int cache_purge(struct store *s, const char *prefix, size_t len);

/* cache_list: the records of PATH (and QUERY, "?..." or NULL for any),
 * each given to FN with its index figures; stops after MAX. The number
 * given, or negative. */
struct cache_listed {
	const char *key;
	size_t klen;
	struct cache_entry e;
	uint64_t evict_ns, used_ns, charge;
};
int cache_list(struct store *s, const char *path, size_t plen,
    const char *query, size_t qlen, int max,
    void (*fn)(void *arg, const struct cache_listed *l), void *arg);

/* cache_read_body: body bytes of the entry under KEY stored as ID, from
 * offset OFF into DST (up to CAP): the count, 0 at the end, -1 when the
 * entry is gone or was replaced. */
ssize_t cache_read_body(struct store *s, const char *key, size_t klen,
    uint64_t id, uint64_t off, char *dst, size_t cap);

/* The figures, kept exact in the write txns that change them. */
struct cache_figures {
	uint64_t entries;		/* responses stored */
	uint64_t records;		/* entries and vary records */
	uint64_t bytes;			/* charged against the budget */
	uint64_t budget;		/* as the last writer set it */
	uint64_t stored;		/* responses written, ever */
	uint64_t evicted_expired;	/* removed past their time */
	uint64_t evicted_lru;		/* removed for room, still valid */
	uint64_t invalidated;		/* removed by an unsafe method */
	uint64_t purged;		/* removed by gwctl cache purge */
};
int cache_figures(struct store *s, struct cache_figures *f);

/*
 * cache_sweep: the master's upkeep (store_dbs): remove what is past its
 * time, then, while the cache is over its budget or the map is short of
 * room, the least recently used; and drop locks and notes whose time
 * is over (scanning on from where the last call stopped: STATE is a
 * struct cache_sweep_state, zeroed once, or NULL). Short write txns
 * (CACHE_EVICT_MAX removals each), a bounded number per call. Records
 * removed, or negative.
 */
struct cache_sweep_state {
	char lock_key[1 + CACHE_KEY_MAX];	/* where the lock scan goes
						 * on; its length 0: from
						 * the first */
	size_t lock_klen;
};
int cache_sweep(struct store *s, uint64_t now_ns, void *state);

/* cache_charge: what an entry of KLEN key bytes and VLEN value bytes
 * counts against the budget (page size PSIZE). */
uint64_t cache_charge(size_t klen, size_t vlen, size_t psize);

#endif
