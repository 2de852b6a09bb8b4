/*
 * lease: one process's leases on shared buckets (bucket.h has the
 * protocol), in a hash table sized for the keys it is serving, and the
 * timer work that gives unused tokens back.
 *
 * A lease is tokens taken from a shared bucket and not yet spent. The
 * owner spends them locally, with no store access. The timer (lease_tick,
 * every LEASE_TICK_MS while leases are held) looks at each lease at least
 * LEASE_CHECK_MS after it was taken or last looked at, so that tokens
 * stranded in an idle process go back within LEASE_CHECK_MS +
 * LEASE_TICK_MS (200 ms):
 *   - nothing left: the entry goes;
 *   - the shared bucket is full without them (refill made up for them,
 *     or it was swept): giving them back would change nothing, so they
 *     are kept while the key is in use (LEASE_KEEP_MS since the last
 *     spend) and looked at again later, else dropped, with no write;
 *   - otherwise they are given back, up to LEASE_RETURN_TXN per write
 *     txn, and the entry goes.
 * Tokens only ever come out of the shared bucket, so keeping or dropping
 * them never lets the node admit more than the limit.
 *
 * Entries live in one array, found through an open-addressing index keyed
 * by a seeded hash of the key; the table grows with the number of keys
 * held, up to LEASE_CAP entries. A pointer to an entry is valid until the
 * next lease_put, lease_tick or lease_drop on the table.
 */
#ifndef PORTICO_LEASE_H
#define PORTICO_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "bucket.h"
#include "store.h"

#define LEASE_TICK_MS		50
#define LEASE_CHECK_MS		150
#define LEASE_KEEP_MS		2000
#define LEASE_CAP		65536	/* entries per process */
#define LEASE_RETURN_TXN	64	/* returns per write txn */
#define LEASE_TICK_CHECKS	16384	/* buckets looked at per tick */
#define LEASE_KEY_INLINE	64	/* longer keys are allocated */

struct lease {
	uint64_t hash;
	uint64_t used_ms;	/* last spend (or the lease itself) */
	uint64_t checked_ms;	/* taken, or last seen unneeded */
	uint64_t full_at_ms;	/* the shared bucket full again, as seen */
	uint64_t left;		/* whole tokens in the shared bucket, as seen */
	struct bucket_params p;
	uint32_t tokens;	/* leased, not spent */
	uint16_t klen;
	char *heap;		/* the key when longer than inl, else NULL */
	char inl[LEASE_KEY_INLINE];
};

/* lease_key: the entry's key (klen bytes). */
static inline const char *
lease_key(const struct lease *e)
{
	return e->heap != NULL ? e->heap : e->inl;
}

struct lease_table;

/* lease_table_new: an empty table (NULL when out of memory). */
struct lease_table *lease_table_new(void);
void lease_table_free(struct lease_table *t);
/* lease_hash: the table's hash of a key (seeded per table). */
uint64_t lease_hash(const struct lease_table *t, const void *key,
    size_t klen);
/* lease_get: the entry of KEY, or NULL. */
struct lease *lease_get(struct lease_table *t, const void *key, size_t klen,
    uint64_t hash);
/* lease_put: the entry of KEY, added (zeroed but for its key) when
 * missing; NULL when the table holds LEASE_CAP entries or memory runs
 * out. */
struct lease *lease_put(struct lease_table *t, const void *key, size_t klen,
    uint64_t hash);
/* lease_drop: remove E (its tokens are lost, which is safe). */
void lease_drop(struct lease_table *t, struct lease *e);
/* lease_count: entries held. */
size_t lease_count(const struct lease_table *t);

/* What a tick did, for tests and logs. */
struct lease_tick_stats {
	unsigned checked;	/* buckets looked at */
	unsigned kept, dropped, returned;
	unsigned txns;		/* write txns */
	int error;		/* last store error, 0 if none */
};
/* lease_tick: the timer's work (see above) at NOW_MS (CLOCK_MONOTONIC
 * ms, the clock of the lease times). 0, or a negative store error (the
 * tokens concerned are then dropped: safe, never an admit). */
int lease_tick(struct lease_table *t, struct store *s, uint64_t now_ms,
    struct lease_tick_stats *st);
/* lease_return_all: give back every lease that its bucket still lacks
 * and empty the table (a process stopping). 0 or negative. */
int lease_return_all(struct lease_table *t, struct store *s);

#endif
