/*
 * trace: a request's trace id (the X-Trace-ID rules) and its W3C Trace
 * Context (https://www.w3.org/TR/trace-context/, level 1).
 *
 * The trace id is the client's X-Trace-ID (or the configured header)
 * when that is 1-32 characters of [A-Za-z0-9_-]; else the trace id of a
 * valid incoming traceparent; else a fresh 32-hex id.
 *
 * Upstream always gets the gateway's own traceparent, never the client's
 * as it came: a valid incoming one keeps its trace id and flags with a
 * new parent id (this hop's span); an absent or invalid one is replaced
 * by a new trace (the X-Trace-ID when that is 32 hex digits, lowercased,
 * else a fresh id), marked sampled. tracestate passes through unchanged
 * only when the incoming traceparent was valid.
 */
#ifndef PORTICO_TRACE_H
#define PORTICO_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

#define TRACEPARENT_LEN	55	/* "00-" 32 hex "-" 16 hex "-" 2 hex */

struct traceparent {
	char trace_id[32];		/* lowercase hex, not all zeros */
	char parent_id[16];		/* lowercase hex, not all zeros */
	uint8_t flags;
};

/* trace_id_ok: whether a client's trace id V[0..n) is kept. */
bool trace_id_ok(const char *v, size_t n);

/* traceparent_parse: V[0..n) (the header's value, blanks at the ends
 * already trimmed) as a traceparent. Version 00 is exactly 55 characters;
 * a higher version (not ff) is read by the version 00 layout when it is
 * at least that long and the flags are followed by the end or a '-', and
 * only its sampled flag is kept. Hex digits must be lowercase. 0, or -1
 * when invalid (the trace restarts). */
int traceparent_parse(const char *v, size_t n, struct traceparent *tp);

/* trace_hex: N lowercase hex digits (N a multiple of 16) from the
 * xorshift state *RNG (never 0); no 16-digit group is all zeros. */
void trace_hex(uint64_t *rng, char *out, size_t n);

/*
 * trace_settle: the exchange's trace from what the client sent: XT (the
 * first X-Trace-ID value that trace_id_ok keeps, or NULL) and TP (the
 * value of the only traceparent header; NULL, or NTP > 1 copies, makes
 * it invalid). Fills cx->trace, cx->trace_len, cx->traceparent (the value
 * sent upstream) and cx->tracestate_ok.
 */
void trace_settle(struct xctx *cx, uint64_t *rng, const char *xt, size_t xtn,
    const char *tp, size_t tpn, unsigned ntp);

#endif
