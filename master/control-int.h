/*
 * control-int: private to the control server. control.c is the transport
 * (the socket, connection slots, framing, timeouts); control_cmd.c builds
 * the reply to each command; control_explain.c the routing table and
 * `explain`. Everything else uses control.h.
 *
 * Every reply function returns 0 with a reply map in o, or -1 when out
 * of memory (o may be half built: the caller frees it).
 */
#ifndef PORTICO_CONTROL_INT_H
#define PORTICO_CONTROL_INT_H

#include <msgpack.h>

struct config;
struct master;
struct msg_out;

/* control_dispatch: the reply to one decoded request map. Returns 1 when
 * a reload or upgrade has started (its reply comes later, through
 * control_complete); *stop is set to 1 (graceful) or 2 (fast) when the
 * master must begin stopping once the reply is on its way. */
int control_dispatch(struct master *m, const msgpack_object *req,
    struct msg_out *o, int *stop);
/* control_reply_error: {"ok": false, "error": TEXT}. */
int control_reply_error(struct msg_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* control_reply_stats: per route, per service and per worker figures
 * (control_stats.c); "route": NAME asks for one route in detail. */
int control_reply_stats(struct master *m, const msgpack_object *req,
    struct msg_out *o);
/* control_reply_routes: the routing table with each route's service,
 * rewrite and policies. */
int control_reply_routes(const struct config *cfg, struct msg_out *o);
/* control_reply_explain: which route a request (method, path, headers,
 * client address) matches and what would happen to it, from the same
 * routing steps a worker runs; nothing is sent anywhere. */
int control_reply_explain(const struct config *cfg,
    const msgpack_object *req, struct msg_out *o);

/* control_reply_breakers: {"cmd":"breakers", "reset":SPEC}: every
 * instance's breaker and health (after closing the breakers SPEC names,
 * "SERVICE" or "SERVICE/ADDRESS", when given). */
int control_reply_breakers(struct master *m, const msgpack_object *req,
    struct msg_out *o);

#endif
