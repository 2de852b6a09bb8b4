/*
 * exchange: one request and its response.
 *
 * The request runs through its route's policy chain (continue, respond,
 * or wait and resume), then goes to the upstream (proxy.h) unless a policy
 * answered it. The response, whoever makes it, goes to the client through
 * this module's writer: response hooks first (in reverse chain order),
 * then the body through the response filters, with the framing decided
 * here (Content-Length kept when the length is known and unchanged,
 * chunked for an HTTP/1.1 client when it is not, close-delimited for
 * HTTP/1.0). With no filter, body bytes go from the source's buffer
 * straight to the socket, the head and the first bytes in one write.
 *
 * "May have closed": functions returning int give 0, or CONN_GONE
 * (conn.h) when the connection ended inside the call; the caller then
 * returns at once and touches neither the connection nor the exchange.
 */
#ifndef PORTICO_EXCHANGE_H
#define PORTICO_EXCHANGE_H

#include "worker-t.h"

#define EXCH_REPLACED	(-2)	/* the exchange answers with its own
				 * response now: the source must stop */

/* What a response source knows of its body when its head is ready. */
struct resp_src {
	int status;
	const char *reason;		/* reason phrase, NULL: the standard */
	size_t reason_len;
	const struct http1_header *headers;	/* NULL for the gateway's own */
	size_t nheaders;
	int64_t length;			/* body bytes, -1 unknown */
	bool chunked;			/* body comes chunk-encoded */
	bool no_body;			/* HEAD, 204, 304 */
	bool to_eof;			/* body ends when the source closes */
	bool has_connection;		/* headers include a Connection */
};

/* exchange_begin: a complete request head of HEAD_LEN bytes is at the
 * front of c->in: start its exchange (route, policies, upstream or an
 * answer). 0 or CONN_GONE. */
int exchange_begin(struct conn *c, const struct http1_request *req,
    int head_len);
/* exchange_error: answer with the gateway's JSON error
 * {"error":ERROR,"status":STATUS,"trace_id":...}, making an exchange when
 * the connection has none. EXTRA is NULL or header lines ending in CRLF.
 * CLOSE ends the connection after. 0 or CONN_GONE. */
int exchange_error(struct conn *c, int status, const char *error,
    const char *extra, bool close);
/* exchange_run: advance: flush output, continue the body, resume the
 * upstream. 0 or CONN_GONE. */
int exchange_run(struct exchange *x);

/* exchange_resp_head: the source's response head. 0 (go on with the
 * body; x->uc.flags has UC_DECODE when the body must come decoded),
 * EXCH_REPLACED (a response hook answered instead) or CONN_GONE. */
int exchange_resp_head(struct exchange *x, const struct resp_src *s);
/* exchange_resp_body: body bytes p[0..n) (LAST with the final ones).
 * Returns the bytes taken (fewer than n: blocked on the client; offer
 * the rest again later), EXCH_REPLACED or CONN_GONE. */
ssize_t exchange_resp_body(struct exchange *x, const char *p, size_t n,
    bool last);
/* exchange_resp_done: the source is finished (all its body taken): the
 * exchange ends once the output is out. 0 or CONN_GONE. */
int exchange_resp_done(struct exchange *x);
/* exchange_fail: the source failed: an error response if nothing was
 * sent (CLOSE: the client connection ends after), else the connection is
 * cut. 0 or CONN_GONE. */
int exchange_fail(struct exchange *x, int status, const char *error,
    bool close);

/* exchange_upstream_failed: the upstream failed (STATUS, ERROR as
 * exchange_fail): the policies' upstream-error hooks may answer instead
 * (a stale cached response); else exchange_fail. 0 or CONN_GONE. */
int exchange_upstream_failed(struct exchange *x, int status,
    const char *error, bool close);
/* exchange_local_response: answer with x->ctx.resp (set by the
 * exchange's own producer, as a policy's RESPOND would), through the
 * response hooks of every policy that ran. 0 or CONN_GONE. */
int exchange_local_response(struct exchange *x);

/* exchange_interim: queue an interim response (TEXT, "HTTP/1.1 100
 * Continue\r\n\r\n") ahead of the response, and try to write it; what
 * does not go now goes before the response head. 0 or CONN_GONE. */
int exchange_interim(struct exchange *x, const char *text);
/* exchange_refuse_head: answer a request whose head could not be taken
 * (400, 408, 414, 431, 505) and log it with what its first line shows.
 * 0 or CONN_GONE. */
int exchange_refuse_head(struct conn *c, int status, const char *error);

/* exchange_waits_on_client: whether the exchange is blocked on its
 * client, so the client's stall timer governs: for request body bytes
 * (*writing false) or to take response bytes (*writing true). */
bool exchange_waits_on_client(const struct exchange *x, bool *writing);
/* exchange_release: the exchange ends (logged; 499 when the client got
 * nothing); its upstream is dropped, its policies told. */
void exchange_release(struct conn *c);

#endif
