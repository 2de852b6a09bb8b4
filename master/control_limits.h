/*
 * control_limits: the control server's `limits` command, built from what
 * the rate limiter (policies/ratelimit.h) and the store (shm/store.h)
 * expose.
 */
#ifndef PORTICO_CONTROL_LIMITS_H
#define PORTICO_CONTROL_LIMITS_H

#include <msgpack.h>

struct msg_out;

/* control_reply_limits: the reply to {"cmd":"limits","key":KEY,
 * "reset":BOOL}: the buckets of KEY in every tier and kind (refilled
 * first when reset is true) and the store's figures, from a short-lived
 * master handle on the store. 0 with a reply map in o, or -1 when out of
 * memory. */
int control_reply_limits(const msgpack_object *req, struct msg_out *o);

#endif
