/*
 * proxy: one request to an upstream service: build the upstream head
 * (hop-by-hop headers removed, X-Forwarded-* set), stream the request body
 * and the response with back-pressure, retry a failed connect on another
 * instance, map failures to 502 / 504.
 */
#ifndef PORTICO_PROXY_H
#define PORTICO_PROXY_H

#include "worker-t.h"

struct proxy_target {
	const char *path;		/* normalised (or rewritten) path */
	size_t path_len;
	const char *query;		/* "?..." or NULL */
	size_t query_len;
};

/* proxy_start: take over the exchange of C for route R. Returns 0; on a
 * failure it has already answered the client. */
int proxy_start(struct conn *c, const struct http1_request *req,
    const struct proxy_target *t, const struct policy_edits *edits);
/* proxy_run: move bytes both ways until blocked. */
void proxy_run(struct exchange *x);
/* proxy_waits_on_client: whether the exchange is blocked on its client,
 * so the client's stall timer (idle_timeout_ms) governs: for body bytes
 * (*writing false) or to take response bytes (*writing true). */
bool proxy_waits_on_client(const struct exchange *x, bool *writing);
/* proxy_abort: drop the upstream side of an exchange (client gone). */
void proxy_abort(struct exchange *x);

#endif
