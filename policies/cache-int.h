/*
 * cache-int: private to the cache policy (cache.c: lookups and answers;
 * cache_fill.c: responses on their way into the store). Everything else
 * uses cache.h.
 */
#ifndef PORTICO_CACHE_INT_H
#define PORTICO_CACHE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../shm/cache_store.h"
#include "../shm/counters.h"
#include "../shm/store.h"
#include "policy.h"

#define TOUCH_SLOTS	4096	/* keys marked recently (a direct map) */
#define TOUCH_BATCH	1024	/* keys per LRU write txn */
#define TOUCH_BYTES	(TOUCH_BATCH * 128)
#define VARY_MAX	1024	/* Vary names, ",a,b" */

struct cs;
struct storer;

/* One worker's state (worker_init). */
struct cw {
	struct {
		uint64_t h, at_ms;
	} seen[TOUCH_SLOTS];
	char *pend;			/* keys to mark used, back to back */
	size_t pend_len;
	uint32_t off[TOUCH_BATCH];
	uint16_t len[TOUCH_BATCH];
	unsigned npend;
	struct cs *waiters;		/* exchanges waiting on a fetch */
	char *scratch;			/* a key's REST */
	size_t scratch_cap;
	struct store *st;		/* this process's, once open */
	const struct config *cfg;
	uint64_t id;			/* of the next stored response */
	uint64_t warned_ms;
};

/* One route's settings. */
struct cr {
	const struct config *cfg;
	const struct cfg_route *r;
	struct cw *w;
	bool cached;			/* false: only invalidation */
	char vary[VARY_MAX];		/* configured names: ",a,b" */
	size_t vary_len;
	uint64_t budget;
	uint64_t wait_ms;		/* a collapsed wait, at most */
	uint64_t max_body;
	unsigned ttl_s, stale_s;
	bool per_consumer;
};

/* The request facts a key is made of. */
struct rq {
	const char *path, *query, *host, *consumer;
	size_t plen, qlen, hlen, clen;
	const struct http1_header *h;
	size_t nh;
};

enum phase { P_NEW, P_WAITING };

/* One exchange's slot. */
struct cs {
	struct cs *wnext, *wprev;	/* the worker's waiters */
	struct xctx *x;
	struct cr *cr;
	struct storer *st;		/* a response on its way to the store */
	char *inm, *ims;		/* If-None-Match, If-Modified-Since */
	size_t inm_len, ims_len;
	char *key;			/* the lookup key: key0, or key0 with
					 * the upstream's Vary names (k1) */
	char *k1;
	size_t klen, k0len;
	uint64_t h0;			/* hash of key0: local wake-ups */
	uint64_t wait_until_ms;
	unsigned polls;
	uint8_t phase;
	bool linked, waited, unsafe, sie_ok;
	char key0[CACHE_KEY_MAX];
};

/* How a response on its way to the store ended. */
enum fin {
	FIN_OK,		/* the whole response was taken */
	FIN_FAILED,	/* the fetch failed */
	FIN_ABORT,	/* the client went away: nothing learnt */
};

/* This worker's counters (cache_counters), or NULL. */
extern struct worker_counters *cache_wc;

#define CACHE_COUNT(field)	do {					\
	if (cache_wc != NULL)						\
		COUNTER_ADD(&cache_wc->field, 1);			\
} while (0)

/* ---- cache.c ------------------------------------------------------- */

/* cache_store_of: this process's store, opened on first use, or NULL. */
struct store *cache_store_of(struct cw *w);
/* cache_warn: a store error, counted and logged at most once a second. */
void cache_warn(struct cw *w, const char *what, int rc);
void cache_rq_of(const struct xctx *x, struct rq *q);
/* cache_next_name: the next name of a ",a,b" list at *i (its length, 0
 * at the end). */
size_t cache_next_name(const char *list, size_t len, size_t *i,
    const char **name);
/* cache_req_key: the key of request Q on route CR with the configured
 * Vary names and EXTRA more, into KEY. 0, or -1 when too large. */
int cache_req_key(const struct cr *cr, const struct rq *q,
    const char *extra, size_t elen, char *key, size_t *klen);
/* cache_wake: wake this worker's waiters on key0 hash H0. */
void cache_wake(struct cw *w, uint64_t h0);

/* ---- cache_fill.c -------------------------------------------------- */

/* cache_fill_new: follow the response to exchange X's request (copied:
 * it may outlive X) into the store, holding LOCK when LOCKED. NULL when
 * out of memory. */
struct storer *cache_fill_new(struct cr *cr, struct cs *cs,
    const struct xctx *x, const struct cache_lock *lock, bool locked);
/* cache_fill_head: the response head. 0 when it may be stored (the body
 * is wanted), -1 when not. */
int cache_fill_head(struct storer *s, int status,
    const struct http1_header *h, size_t n, int64_t content_length);
void cache_fill_body(struct storer *s, const char *p, size_t n);
/* cache_fill_taking: whether the body is still wanted. */
bool cache_fill_taking(const struct storer *s);
/* cache_fill_end: stored if it can be; the lock ends with a note for the
 * waiters; this worker's are woken; S is freed. */
void cache_fill_end(struct storer *s, enum fin how);
/* cache_unconditional: make the upstream request a whole one (no If-*
 * or Range): a fetch that stores needs a full response. */
void cache_unconditional(struct xctx *x);
/* cache_refresh: one background refresh of the stale entry cs->key,
 * unless another process runs one. */
void cache_refresh(struct xctx *x, struct cr *cr, struct cs *cs,
    struct store *st, uint64_t now_ns);

#endif
