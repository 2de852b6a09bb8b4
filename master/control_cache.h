/*
 * control_cache: the control server's `cache` command (purge, show) and
 * the cache's part of `stats`, built from what the store
 * (shm/cache_store.h) and the workers' counters expose.
 */
#ifndef PORTICO_CONTROL_CACHE_H
#define PORTICO_CONTROL_CACHE_H

#include <msgpack.h>

struct counters;
struct msg_out;

/* control_reply_cache: {"cmd":"cache","action":"purge","prefix":P} or
 * {"cmd":"cache","action":"show","path":"PATH[?QUERY]"}. 0 with a reply
 * map in o, or -1 when out of memory. */
int control_reply_cache(const msgpack_object *req, struct msg_out *o);

/* control_pack_cache_stats: a "cache" key and its map (hits, misses,
 * stale, bypass, hit_ratio, collapsed_waits, entries, bytes, budget,
 * evictions, ...) from the counters' live slots and the store. */
void control_pack_cache_stats(msgpack_packer *pk, const struct counters *ct);

#endif
