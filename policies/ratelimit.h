/*
 * ratelimit: the rate-limiting policy's extras beyond policy.h: the
 * bucket key it uses, the worker's lease timer, and what `gwctl limits`
 * shows and resets (the control server builds the reply).
 *
 * Bucket key (buckets db): TIER '\0' KIND '\0' VALUE, KIND being "ip",
 * "route" or "header:NAME" (NAME lower-case) and VALUE the client address,
 * the route's name or the header's value ("" when it is missing); a
 * value over RL_VALUE_MAX bytes, or one starting with '~', is replaced
 * by '~' and the hex of its SHA-256 (first 16 bytes). The
 * route is not part of the key unless KIND is "route": two routes limited
 * by ip under the same tier share one bucket per client, so a tier means
 * one budget per client across the routes that name it.
 */
#ifndef PORTICO_RATELIMIT_H
#define PORTICO_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../master/config.h"
#include "../shm/lease.h"

/* Key parts: a tier name and a header name are at most RL_NAME_MAX bytes
 * (the config refuses longer ones); a value longer than RL_VALUE_MAX is
 * stored as '~' and RL_HASHED_LEN hex digits of its SHA-256. */
#define RL_NAME_MAX	CFG_NAME_MAX
#define RL_VALUE_MAX	128
#define RL_HASHED_LEN	32
#define RL_KIND_MAX	(7 + RL_NAME_MAX)	/* "header:" NAME */
#define RL_KEY_MAX	(RL_NAME_MAX + 1 + RL_KIND_MAX + 1 + RL_VALUE_MAX)

/* ratelimit_tick: the worker's timer for leases (shm/lease.h): give back
 * unused tokens, LEASE_TICK_MS apart while ratelimit_pending() says
 * leases are held. NOW_MS is the loop's CLOCK_MONOTONIC ms. */
#define RATELIMIT_TICK_MS	LEASE_TICK_MS
bool ratelimit_pending(void);
void ratelimit_tick(uint64_t now_ms);

/* One bucket as the store holds it, refilled to a given time: what
 * `gwctl limits` shows. */
struct ratelimit_view {
	char tier[RL_NAME_MAX + 1];	/* as in the key */
	char by[RL_KIND_MAX + 1];	/* "ip", "route", "header:NAME" */
	uint64_t tokens;		/* whole tokens */
	uint64_t tokens_micro;		/* in millionths of a token */
	uint64_t burst, rate, per_s;	/* the settings it was made with */
	uint64_t full_in_ms;		/* until it is full again */
	char key[RL_KEY_MAX];		/* its store key, for ratelimit_reset */
	size_t klen;
};

/* ratelimit_find: the buckets whose value part is VALUE (LEN bytes;
 * looked up as a request would store it, so a long value by its hash),
 * in every tier and kind, at most MAX of them, as of NOW_NS
 * (store_now_ns), from one read txn of S. Count, or a negative store
 * error. */
int ratelimit_find(struct store *s, const char *value, size_t len,
    uint64_t now_ns, struct ratelimit_view *out, int max);
/* ratelimit_reset: refill the bucket V names (absent is full: it is
 * deleted). 1 deleted, 0 already absent, or a negative store error. */
int ratelimit_reset(struct store *s, const struct ratelimit_view *v);

#endif
