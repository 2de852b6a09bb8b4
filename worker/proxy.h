/*
 * proxy: an exchange's request sent upstream through one upstream client
 * (upclient.h), and its response relayed to the client through the
 * exchange's writer (exchange.h). Here: the upstream request head
 * (hop-by-hop headers removed, X-Forwarded-* and the trace header set,
 * policy edits applied), the request body read from the client with
 * back-pressure (trailers dropped and held to the head's limits, request
 * body filters), and the mapping of upstream failures to 502 / 503 / 504.
 *
 * Both functions return 0, or CONN_GONE (conn.h) when the connection
 * ended inside the call.
 */
#ifndef PORTICO_PROXY_H
#define PORTICO_PROXY_H

#include "worker-t.h"

/* proxy_start: send the exchange's request upstream. */
int proxy_start(struct exchange *x);
/* proxy_run: move bytes on: request body from the client, response to
 * the client when it has room again. */
int proxy_run(struct exchange *x);
/* proxy_fetch: a background fetch of the exchange's request (policy.h,
 * struct xfetch): its upstream head is built now, as proxy_start would,
 * and sent by an upstream client of its own. 0, or -1 when it cannot
 * start (a request with a body, no service, out of memory). */
int proxy_fetch(struct exchange *x, const struct xfetch *f);
/* proxy_fetch_stop_all: end every background fetch (worker stopping);
 * their owners hear done(false). */
void proxy_fetch_stop_all(struct worker *w);

#endif
