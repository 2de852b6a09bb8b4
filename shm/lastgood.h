/*
 * lastgood: the last good body of each aggregate call that falls back to
 * "cache", in the store's "lastgood" database (store.h), so any worker
 * can answer with what any worker last got.
 *
 * The key is the caller's (at most LASTGOOD_KEY_MAX bytes); the value is
 * msgpack [format, expires (CLOCK_MONOTONIC ns), body (bin 32)], written
 * in place in the map. A body equal to the one stored and still more than
 * half its lifetime from expiry is not written again: steady traffic of
 * an unchanging part costs a read, not the store's one writer lock. An
 * expired entry reads as absent; the master's upkeep drops expired
 * entries in short write transactions.
 *
 * Errors: 0 / a count on success, negative LMDB or errno codes
 * (MDB_MAP_FULL when the map has no room for a new entry: nothing is
 * written, rate limits and the rest keep their room).
 */
#ifndef PORTICO_LASTGOOD_H
#define PORTICO_LASTGOOD_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define LASTGOOD_FORMAT		1
#define LASTGOOD_KEY_MAX	400

/* lastgood_put: BODY[0..blen) under KEY, kept TTL_NS from now. 1 when
 * written, 0 when the same body was there already, or negative. */
int lastgood_put(struct store *s, const void *key, size_t klen,
    const char *body, size_t blen, uint64_t ttl_ns);

/* lastgood_get: the body under KEY, copied into memory from
 * ALLOC(ARG, size) (NULL: out of memory, -ENOMEM). 1 with *out / *len
 * set, 0 when there is none (or it expired), or negative. */
int lastgood_get(struct store *s, const void *key, size_t klen,
    void *(*alloc)(void *arg, size_t n), void *arg, char **out,
    size_t *len);

/* The master's upkeep (store_dbs): expired entries dropped, at most a
 * few hundred scanned per call. Entries dropped, or negative. */
struct lastgood_sweep {
	char key[LASTGOOD_KEY_MAX];
	size_t klen;			/* resume after it; 0 = the start */
};
int lastgood_upkeep(struct store *s, uint64_t now_ns, void *state);

#endif
