/*
 * bucket: token buckets in integer fixed point, and the lease protocol
 * that keeps them exact across workers without a write per request.
 *
 * A bucket holds up to `burst` tokens and gains `rate` every `per_s`
 * seconds. Tokens are counted in BUCKET_ONE units so refill needs no
 * floating point; time is CLOCK_MONOTONIC ns (store_now_ns), the one clock
 * every process shares.
 *
 * Leases: a worker takes a few whole tokens from the shared bucket in one
 * short write txn and spends them locally; what it does not spend soon it
 * gives back. Tokens are only ever spent after leaving the shared bucket,
 * so the node admits at most burst + rate * elapsed / per_s, whatever the
 * number of workers; a worker that dies loses at most its own lease. An
 * empty bucket is detected in a read txn, with no write at all.
 *
 * Stored value (buckets db): msgpack [format 1, tokens, last_ns, rate,
 * per_s, burst]. The settings travel with the bucket: when a tier's
 * settings change its buckets start over full, and the master can drop
 * buckets that have refilled without knowing the config.
 */
#ifndef PORTICO_BUCKET_H
#define PORTICO_BUCKET_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define BUCKET_ONE	1000000ull	/* one token, in fixed-point units */
#define BUCKET_FORMAT	1
#define BUCKET_VALUE_MAX 64		/* encoded size bound */
/* A last-refill time this far ahead of now is not a clock a process can
 * see (CLOCK_MONOTONIC never steps back): restart the refill from now
 * instead of freezing the bucket. */
#define BUCKET_SKEW_NS	(60ull * 1000000000ull)

struct bucket_params {
	uint64_t rate;		/* tokens gained every per_s seconds, >= 1 */
	uint64_t per_s;		/* >= 1 */
	uint64_t burst;		/* capacity, >= 1 */
};

struct bucket {
	uint64_t tokens;	/* BUCKET_ONE units, <= burst * BUCKET_ONE */
	uint64_t last_ns;	/* refilled up to this time */
	struct bucket_params p;
};

/* What a caller learns about the shared bucket after an operation. */
struct bucket_view {
	uint64_t left;		/* whole tokens left in the shared bucket */
	uint64_t wait_ns;	/* until one whole token is there (0: now) */
	uint64_t full_ns;	/* until it is full again */
};

/* Arithmetic (no store). */
void bucket_init(struct bucket *b, const struct bucket_params *p,
    uint64_t now_ns);
/* bucket_refill: add what accrued since last_ns, capped at burst. A now
 * before last_ns adds nothing and keeps last_ns (so that time is not
 * counted twice), unless it is BUCKET_SKEW_NS behind. */
void bucket_refill(struct bucket *b, uint64_t now_ns);
uint64_t bucket_whole(const struct bucket *b);
/* bucket_take: up to N whole tokens; returns how many were taken. */
uint64_t bucket_take(struct bucket *b, uint64_t n);
/* bucket_give: N whole tokens back, capped at burst. */
void bucket_give(struct bucket *b, uint64_t n);
/* bucket_wait_ns: time until N whole tokens are there. */
uint64_t bucket_wait_ns(const struct bucket *b, uint64_t n);
void bucket_view_of(const struct bucket *b, struct bucket_view *v);
int bucket_same_params(const struct bucket_params *a,
    const struct bucket_params *b);
/* bucket_full: whether it holds its whole burst. */
int bucket_full(const struct bucket *b);

/* bucket_encode: bytes written to buf, or -1 if cap is too small.
 * bucket_decode: 0, or -1 for a value that is not format 1 or is
 * inconsistent. */
int bucket_encode(const struct bucket *b, void *buf, size_t cap);
int bucket_decode(const void *buf, size_t len, struct bucket *b);

/* Store operations; KEY names the bucket (see policies/ratelimit.c). A
 * missing bucket, one of another format or one with other settings is a
 * full bucket with params P.
 *
 * bucket_lease: take a lease of between 1 and MAX tokens (a 1/SHARE part
 * of what is there, so that workers leave some for each other). Returns
 * the tokens leased; 0 when the bucket is empty, decided from a read txn
 * without writing; negative on a store error (MDB_MAP_FULL: the map is
 * full). v (may be NULL) describes the shared bucket afterwards. */
int bucket_lease(struct store *s, const void *key, size_t klen,
    const struct bucket_params *p, uint64_t now_ns, uint64_t max,
    uint64_t share, struct bucket_view *v);
/* bucket_return: give N unspent leased tokens back. 0 or negative. */
int bucket_return(struct store *s, const void *key, size_t klen,
    const struct bucket_params *p, uint64_t now_ns, uint64_t n);
/* bucket_return_many: give back N leases in one write txn; a bucket
 * absent or already full is left alone (giving is capped at the burst),
 * and a map without room for the updates loses the tokens (safe). Number
 * of buckets written, or negative. */
struct bucket_giveback {
	const void *key;
	size_t klen;
	struct bucket_params p;
	uint64_t n;
};
int bucket_return_many(struct store *s, const struct bucket_giveback *g,
    size_t n, uint64_t now_ns);
/* bucket_get: the bucket under KEY in TXN, a txn the caller has open,
 * refilled to now: 1 stored, 0 absent or unusable (b is then a full
 * bucket with params P, or zeroed if P is NULL), negative on error. */
int bucket_get(struct store *s, MDB_txn *txn, const void *key, size_t klen,
    const struct bucket_params *p, uint64_t now_ns, struct bucket *b);
/* bucket_peek: the shared bucket as of now, from a read txn. 1 when it
 * is stored, 0 when absent (b is then a full bucket with params P, or
 * zeroed if P is NULL), negative on error. */
int bucket_peek(struct store *s, const void *key, size_t klen,
    const struct bucket_params *p, uint64_t now_ns, struct bucket *b);
/* bucket_reset: delete the bucket (absent = full). 1 deleted, 0 absent,
 * negative on error. */
int bucket_reset(struct store *s, const void *key, size_t klen);
/*
 * bucket_sweep: delete buckets that have refilled by now (absent = full,
 * so nothing changes for a client), resuming after the bucket where the
 * previous call with the same SW stopped. It scans in read txns and
 * deletes in short write txns (each bucket checked again under the
 * lock), so no writer waits behind a scan; a call scans a bounded number
 * of buckets, and reaching the last one ends the call and makes the next
 * one start a new pass. Number deleted, or negative on a store error.
 * SW starts zeroed; the caller keeps it across calls.
 */
#define BUCKET_KEY_MAX	512	/* LMDB's longest key is 511 bytes */
/* A call scans at most BUCKET_SWEEP_SCAN buckets, BUCKET_SWEEP_CHUNK per
 * read txn, and deletes at most BUCKET_SWEEP_TXN per write txn. */
#define BUCKET_SWEEP_SCAN	16384
#define BUCKET_SWEEP_CHUNK	1024
#define BUCKET_SWEEP_TXN	64
struct bucket_sweep {
	char key[BUCKET_KEY_MAX];	/* the last bucket scanned */
	size_t klen;			/* 0: start from the first */
	/* Figures of the last call: */
	unsigned scanned, deleted, txns;
	int at_end;			/* it reached the last bucket */
	/* Since SW was zeroed: */
	uint64_t max_hold_ns;		/* longest write txn (lock held) */
	uint64_t max_wait_ns;		/* longest wait for the lock */
};
int bucket_sweep(struct store *s, uint64_t now_ns, struct bucket_sweep *sw);

#endif
