/*
 * ratelimit: the rate-limiting policy's extras beyond policy.h: the
 * bucket key it uses, and the master's `gwctl limits` command.
 *
 * Bucket key (buckets db): TIER '\0' KIND '\0' VALUE, KIND being "ip",
 * "route" or "header:NAME" (NAME lower-case) and VALUE the client address,
 * the route's name or the header's value ("" when it is missing). The
 * route is not part of the key unless KIND is "route": two routes limited
 * by ip under the same tier share one bucket per client, so a tier means
 * one budget per client across the routes that name it.
 */
#ifndef PORTICO_RATELIMIT_H
#define PORTICO_RATELIMIT_H

#include <msgpack.h>

#include "../master/config.h"
#include "../master/msg.h"

#define RL_KEY_MAX	320

/* ratelimit_control: answer {"cmd":"limits","key":KEY,"reset":BOOL}
 * into o (the master, with a short-lived store handle). 0 or -1 (out of
 * memory). */
int ratelimit_control(const struct config *cfg, const msgpack_object *req,
    struct msg_out *o);

#endif
