/*
 * store_dbs: the registry of the store's databases (shm/store.h): each
 * one's name, the format of its values and its upkeep by the master. A
 * new database is one line here; a change to one database's format is a
 * change of its number here, and costs the others nothing.
 */
#include "breaker.h"
#include "bucket.h"
#include "cache_store.h"
#include "health.h"
#include "lastgood.h"
#include "store.h"
#include "tickets.h"

static int
buckets_upkeep(struct store *s, uint64_t now_ns, void *state)
{
	return bucket_sweep(s, now_ns, state);
}

static int
breakers_upkeep(struct store *s, uint64_t now_ns, void *state)
{
	return breaker_sweep(s, now_ns, state);
}

const struct store_dbdef store_dbs[STORE__NDB] = {
	[STORE_BUCKETS] = { "buckets", BUCKET_FORMAT, buckets_upkeep,
	    sizeof(struct bucket_sweep) },
	[STORE_BREAKERS] = { "breakers", BREAKER_FORMAT, breakers_upkeep,
	    sizeof(struct breaker_sweep) },
	[STORE_HEALTH] = { "health", HEALTH_FORMAT, NULL, 0 },
	[STORE_CACHE] = { "cache", CACHE_DB_FORMAT, cache_sweep,
	    sizeof(struct cache_sweep_state) },
	[STORE_CACHE_EXP] = { "cache_exp", CACHE_DB_FORMAT, NULL, 0 },
	[STORE_CACHE_META] = { "cache_meta", CACHE_DB_FORMAT, NULL, 0 },
	[STORE_TICKETS] = { "tickets", TICKETS_FORMAT, tickets_upkeep, 0 },
	[STORE_LASTGOOD] = { "lastgood", LASTGOOD_FORMAT, lastgood_upkeep,
	    sizeof(struct lastgood_sweep) },
};
