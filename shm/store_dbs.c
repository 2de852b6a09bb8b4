/*
 * store_dbs: the registry of the store's databases (shm/store.h): each
 * one's name, the format of its values and its upkeep by the master. A
 * new database is one line here; a change to one database's format is a
 * change of its number here, and costs the others nothing.
 */
#include "bucket.h"
#include "lastgood.h"
#include "store.h"
#include "tickets.h"

static int
buckets_upkeep(struct store *s, uint64_t now_ns, void *state)
{
	return bucket_sweep(s, now_ns, state);
}

const struct store_dbdef store_dbs[STORE__NDB] = {
	[STORE_BUCKETS] = { "buckets", BUCKET_FORMAT, buckets_upkeep,
	    sizeof(struct bucket_sweep) },
	[STORE_BREAKERS] = { "breakers", 1, NULL, 0 },
	[STORE_HEALTH] = { "health", 1, NULL, 0 },
	[STORE_CACHE] = { "cache", 1, NULL, 0 },
	[STORE_CACHE_EXP] = { "cache_exp", 1, NULL, 0 },
	[STORE_TICKETS] = { "tickets", TICKETS_FORMAT, tickets_upkeep, 0 },
	[STORE_LASTGOOD] = { "lastgood", LASTGOOD_FORMAT, lastgood_upkeep,
	    sizeof(struct lastgood_sweep) },
};
