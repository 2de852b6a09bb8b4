/*
 * ratelimit: the rate-limiting policy's extras beyond policy.h: the
 * bucket key it uses, and the master's `gwctl limits` command.
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
#include <stdint.h>

#include <msgpack.h>

#include "../master/config.h"
#include "../master/msg.h"
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

/* ratelimit_control: answer {"cmd":"limits","key":KEY,"reset":BOOL}
 * into o (the master, with a short-lived store handle). 0 or -1 (out of
 * memory). */
int ratelimit_control(const struct config *cfg, const msgpack_object *req,
    struct msg_out *o);

#endif
