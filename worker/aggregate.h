/*
 * aggregate: one client request answered by several upstream calls sent
 * in parallel from the worker's own loop, each through its own upstream
 * client (upclient.h: pools, balancing, the availability check and the
 * observer, timers, retries), merged into one JSON object:
 *
 *   {"profile": <its body>, "cart": <its fallback>, "degraded": ["cart"]}
 *
 * Each part is the call's body as it came (checked to be one JSON text by
 * the streaming scanner, surrounding whitespace dropped, never
 * re-serialised). A call that fails, passes its own timeout_ms, answers
 * other than 2xx, with a Content-Encoding, a body that is not JSON or one
 * over max_part_bytes takes its fallback: the JSON text configured
 * (default null), or for "cache" the last good body of that call (kept in
 * the store on every success: lastgood.h), else null; it is listed in
 * "degraded" and in the X-Gateway-Degraded header, in call order. At the
 * aggregate's timeout_ms every call still running takes its fallback.
 * When every call failed and none had a fallback to give: 502 with a
 * JSON body naming each call's failure.
 *
 * A client that goes away (reset, failed socket) ends the exchange, and
 * exchange_release cancels every call still running.
 */
#ifndef PORTICO_AGGREGATE_H
#define PORTICO_AGGREGATE_H

#include "worker-t.h"

/* aggregate_worker_init / _free: the worker's compiled call paths. 0 or
 * -1 (logged). */
int aggregate_worker_init(struct worker *w);
void aggregate_worker_free(struct worker *w);

/* aggregate_start: the exchange's route aggregates: send its calls.
 * 0 or CONN_GONE. */
int aggregate_start(struct exchange *x);
/* aggregate_run: answer once every call has settled. 0 or CONN_GONE. */
int aggregate_run(struct exchange *x);
/* aggregate_release: cancel every call still running and free what the
 * calls hold (the exchange ends, or answers otherwise). */
void aggregate_release(struct exchange *x);

#endif
