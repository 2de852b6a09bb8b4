/*
 * policy: the one interface every cross-cutting policy implements, and the
 * exchange context (struct xctx) through which a policy sees and shapes a
 * request.
 *
 * A policy reads its part of a route's config once per worker (init) and
 * then, for each exchange of that route, has hooks in a fixed pipeline
 * order (the README's design section; `pipeline` in policy.c):
 *
 *   on_request   the request head, routed and normalised. Verdicts:
 *                POLICY_CONTINUE, POLICY_RESPOND (x->resp is the answer:
 *                a JSON error, or a full response with a body from memory
 *                or from a body_source), POLICY_PENDING (the policy waits:
 *                xctx_wait arms a timer and/or the policy calls
 *                xctx_resume later; the same hook runs again then).
 *   on_response  the response head, whoever made it (upstream or a later
 *                policy's RESPOND), in reverse order over the policies
 *                whose on_request ran. May change x->status, edit headers
 *                (x->resp_edits), and install a body filter
 *                (xctx_resp_filter). RESPOND here replaces the response
 *                when nothing of it has been sent.
 *   on_done      the exchange ended, answered or not (client gone): let
 *                go of anything waiting on it. Never fails.
 *
 * Body filters (struct body_filter) see a body as it streams and emit
 * bytes into an output buffer; the framing toward the peer (Content-Length
 * kept when the length is unchanged, chunked for an HTTP/1.1 client when
 * it is not, close-delimited for HTTP/1.0) is decided for them.
 *
 * Per-exchange state: each policy in a chain gets a slot of `slot_size`
 * bytes from the exchange's arena, zeroed, the first time its hook runs.
 * Memory a policy hands on (header values, bodies) comes from the arena
 * and lives until the exchange ends.
 *
 * Layering: policies see only this context, never the worker's types; the
 * worker fills it, runs the chain and acts on the verdicts.
 */
#ifndef PORTICO_POLICY_H
#define PORTICO_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../master/config.h"
#include "../shm/counters.h"
#include "../worker/http1.h"
#include "arena.h"

#define POLICY_MAX_EDITS	32
#define POLICY_CHAIN_MAX	8
#define POLICY_MAX_FILTERS	2	/* body filters per direction */

enum policy_verdict {
	POLICY_CONTINUE = 0,	/* on to the next policy / the upstream */
	POLICY_RESPOND = 1,	/* x->resp answers the request */
	POLICY_PENDING = 2,	/* waiting: the hook runs again on resume */
};

/* Header edits a hook asks for. Strings live as long as the exchange
 * (arena, route config or policy state). Removals are by name,
 * case-insensitive; an added header replaces any copy of its name. */
struct policy_edits {
	const char *add[POLICY_MAX_EDITS];	/* "Name: value" */
	size_t add_len[POLICY_MAX_EDITS];
	unsigned nadd;
	const char *remove[POLICY_MAX_EDITS];	/* "Name" */
	size_t remove_len[POLICY_MAX_EDITS];
	unsigned nremove;
};

/* The verified identity auth fills; rate limiting, the balancer, the
 * cache key and the identity headers read it. NULL fields are unknown. */
struct identity {
	const char *consumer;
	size_t consumer_len;
	const char *tier;		/* tier name, or NULL: the route's */
	const char *scopes;		/* space-separated */
	size_t scopes_len;
};

#define BODY_LEN_UNKNOWN	UINT64_MAX

/* A body pulled piece by piece (a store value read in short transactions,
 * never held across I/O). read copies up to cap bytes at offset off into
 * dst: returns the count, 0 at the end, -1 on failure. */
struct body_source {
	uint64_t len;			/* exact length, or BODY_LEN_UNKNOWN */
	ssize_t (*read)(void *arg, uint64_t off, char *dst, size_t cap);
	void *arg;
};

/* A response the gateway makes itself (POLICY_RESPOND). With neither body
 * nor source, the body is the JSON error {"error":ERROR,"status":STATUS,
 * "trace_id":...}. Header lines added with xctx_resp_header go out too. */
struct xresp {
	int status;
	const char *error;		/* short code for the JSON body / log */
	const char *content_type;	/* with body or source */
	const char *body;		/* from memory (arena or longer) */
	size_t body_len;		/* (also when the response has no body
					 * by rule: HEAD, 304 give it as their
					 * Content-Length) */
	const struct body_source *source;
	const struct http1_header *headers;	/* more header fields (a
						 * stored response's), as
						 * long as the exchange */
	size_t nheaders;
};

/* Output of a body filter: bytes it emits, in a buffer the worker owns
 * and empties between calls. */
struct obuf {
	char *p;
	size_t len, cap;
};

struct xctx;

/*
 * A body filter. feed gets the next body bytes (LAST with the final call,
 * which may carry none) and appends what it emits to OUT with obuf_put.
 * Returns 0, or -1: the body cannot be produced (502 when nothing was sent
 * yet, else the connection is cut). A filter that needs the whole body
 * keeps it (in the arena) up to `max` bytes, the bound it declares: the
 * worker refuses a longer body rather than feed it.
 */
struct body_filter {
	int (*feed)(struct xctx *x, void *arg, const char *p, size_t n,
	    bool last, struct obuf *out);
	void *arg;
	uint64_t max;			/* bytes it may hold; 0 = streams */
	bool same_length;		/* emits exactly what it is fed */
	bool hold;			/* emits only with the last call (it
					 * keeps the whole body): the writer
					 * holds the head until then and sends
					 * the output's Content-Length */
};

/*
 * A background fetch (xctx_fetch): the request this exchange would send
 * upstream now (its route's service, rewritten path, header edits so
 * far), sent on its own while the exchange answers from elsewhere; the
 * exchange may end first. Its response goes to these callbacks, never to
 * the client. done is always called, exactly once and last (perhaps
 * before xctx_fetch returns); ARG must live until then.
 */
struct xfetch {
	/* head: the final response head (headers valid during the call).
	 * 0 to take the body, -1 to stop. */
	int (*head)(void *arg, int status, const struct http1_header *h,
	    size_t n);
	/* body: body bytes, decoded; LAST with the final ones. 0, or -1 to
	 * stop. */
	int (*body)(void *arg, const char *p, size_t n, bool last);
	/* done: OK when the whole response was taken. */
	void (*done)(void *arg, bool ok);
	void *arg;
};

/* What the worker provides to a waiting policy (set by the worker). */
struct xctx_ops {
	/* wait: resume the exchange after MS unless resumed before. 0/-1. */
	int (*wait)(struct xctx *x, uint64_t ms);
	/* resume: run the waiting hook again, from the event loop. */
	void (*resume)(struct xctx *x);
	/* fetch: start a background fetch (struct xfetch, copied). 0, or -1
	 * when it cannot start (then done is not called). */
	int (*fetch)(struct xctx *x, const struct xfetch *f);
};

/* What the response cache did for a request (the access log's "cache";
 * the cache policy sets it). */
enum xctx_cache {
	XCACHE_NONE = 0,	/* no cache on the route, or it never looked */
	XCACHE_HIT,
	XCACHE_MISS,
	XCACHE_STALE,		/* served stale */
	XCACHE_BYPASS,		/* the request may not use the cache */
};

/* What rate limiting decided (the access log's "rate_limit"; set by the
 * ratelimit policy). */
enum xctx_ratelimit {
	XRL_NONE = 0,		/* no limit on the route, or it never ran */
	XRL_ALLOWED,
	XRL_LIMITED,		/* refused: 429 */
	XRL_UNAVAILABLE,	/* the store could not decide: 503 */
};

/* The exchange as policies see it. The worker owns and fills it; policy
 * hooks read the request fields and write their results. (Large parts
 * come last: a new exchange resets only their counts.) */
struct xctx {
	struct arena arena;
	const struct config *cfg;
	const struct cfg_route *route;
	int route_index;
	enum http_method method;
	const char *method_text;
	size_t method_len;
	const char *path;		/* normalised path */
	size_t path_len;
	const char *query;		/* "?..." or NULL */
	size_t query_len;
	const char *host;		/* Host (authority) or NULL */
	size_t host_len;
	const struct http1_header *headers;	/* request headers: valid
						 * until the request head is
						 * forwarded */
	size_t nheaders;
	int peer_family;		/* AF_INET / AF_INET6 */
	const uint8_t *peer_addr;	/* 4 or 16 bytes, network order */
	uint64_t now_ms;		/* CLOCK_MONOTONIC ms, cached per turn */
	uint8_t trace_len;
	bool tracestate_ok;		/* the client's tracestate goes upstream
					 * (its traceparent was valid) */
	struct identity id;
	const char *reason;		/* why the gateway answered (access log) */
	enum xctx_cache cache;
	enum xctx_ratelimit ratelimit;

	/* request hooks' results: the answer (POLICY_RESPOND), and header
	 * lines ("Name: value\r\n") for this request's response, proxied or
	 * the gateway's own (xctx_resp_header) */
	struct xresp resp;
	char *resp_extra;
	size_t resp_extra_len, resp_extra_cap;

	/* response hooks: the response head as it will be sent */
	int status;
	const struct http1_header *resp_headers;
	size_t resp_nheaders;
	int64_t resp_length;		/* body bytes, -1 unknown (chunked,
					 * to the close) */
	struct worker_counters *stats;	/* this worker's counters */

	unsigned nreq_filters, nresp_filters;
	void *slot[POLICY_CHAIN_MAX];	/* per-policy exchange state */
	const struct xctx_ops *ops;

	char trace[33];			/* the trace id, NUL-terminated */
	char traceparent[56];		/* the W3C traceparent sent upstream:
					 * this hop's span (trace.h) */
	struct policy_edits edits;	/* on the upstream request head */
	struct policy_edits resp_edits;	/* on the response head */
	struct body_filter req_filter[POLICY_MAX_FILTERS];
	struct body_filter resp_filter[POLICY_MAX_FILTERS];
};

struct policy {
	const char *name;
	/* worker_init: state this worker's routes share (loaded keys,
	 * caches), made once after fork; may be NULL. 0 or -1 (logged). */
	int (*worker_init)(const struct config *cfg, void **wstate);
	void (*worker_free)(void *wstate);
	/* init: whether route R uses this policy, and its state (WSTATE is
	 * the worker state, or NULL). Returns 1 (in the chain, *state set),
	 * 0 (not used) or -1 (logged). */
	int (*init)(const struct config *cfg, const struct cfg_route *r,
	    void *wstate, void **state);
	void (*free)(void *state);
	size_t slot_size;		/* per-exchange state, 0 = none */
	int (*on_request)(struct xctx *x, void *state, void *slot);
	int (*on_response)(struct xctx *x, void *state, void *slot);
	/* on_upstream_error: the upstream failed before any response byte
	 * went to the client (x->status is the error's: 502, 503, 504).
	 * RESPOND (x->resp) answers instead of the gateway's JSON error;
	 * CONTINUE lets the error go. May be NULL. */
	int (*on_upstream_error)(struct xctx *x, void *state, void *slot);
	void (*on_done)(struct xctx *x, void *state, void *slot);
};

struct policy_chain {
	unsigned n;
	const struct policy *p[POLICY_CHAIN_MAX];
	void *state[POLICY_CHAIN_MAX];
};

/* The worker states of every policy of the pipeline, one per worker. */
struct policy_set {
	void *wstate[POLICY_CHAIN_MAX];
};

/* policy_set_init / policy_set_free: every policy's worker state. 0 or
 * -1 (logged; what was made is freed). */
int policy_set_init(const struct config *cfg, struct policy_set *ps);
void policy_set_free(struct policy_set *ps);
/* policy_chain_build: the chain of route R in pipeline order. 0 or -1. */
int policy_chain_build(const struct config *cfg, const struct cfg_route *r,
    const struct policy_set *ps, struct policy_chain *chain);
void policy_chain_free(struct policy_chain *chain);

/* policy_slot: the exchange state of the chain's policy I, allocated
 * (zeroed) on first use; NULL for a policy without state or when out of
 * memory. */
void *policy_slot(const struct policy_chain *chain, unsigned i,
    struct xctx *x);

/*
 * policy_run_request: run the request hooks from *at on; stops at the
 * first RESPOND or PENDING and leaves *at on that policy (so a PENDING
 * hook runs again on resume). Returns the verdict. Out of memory for a
 * slot: RESPOND 503.
 */
int policy_run_request(const struct policy_chain *chain, struct xctx *x,
    unsigned *at);
/* policy_run_response: the response hooks of policies [0, upto) in
 * reverse. CONTINUE or RESPOND. */
int policy_run_response(const struct policy_chain *chain, struct xctx *x,
    unsigned upto);
/* policy_run_upstream_error: the upstream-error hooks of policies
 * [0, upto) in reverse; the first RESPOND answers. CONTINUE or
 * RESPOND. */
int policy_run_upstream_error(const struct policy_chain *chain,
    struct xctx *x, unsigned upto);
/* policy_run_done: every on_done of policies [0, upto). */
void policy_run_done(const struct policy_chain *chain, struct xctx *x,
    unsigned upto);

/* Edits: 0, or -1 when the list is full. */
int policy_edit_add(struct policy_edits *e, const char *line, size_t len);
int policy_edit_remove(struct policy_edits *e, const char *name, size_t len);

/* xctx_resp_header: append "NAME: VALUE\r\n" (VALUE printf-formatted) to
 * the response's extra lines. 0, or -1 when out of room. */
int xctx_resp_header(struct xctx *x, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* xctx_resp_line: the same with VALUE[0..LEN) as it is (no formatting:
 * for a header on every response). 0, or -1 when out of room. */
int xctx_resp_line(struct xctx *x, const char *name, const char *value,
    size_t len);
/* xctx_error: RESPOND with the JSON error body: sets x->resp, returns
 * POLICY_RESPOND. */
int xctx_error(struct xctx *x, int status, const char *error);
/* xctx_respond: RESPOND with a full response: STATUS, CONTENT_TYPE and the
 * body BODY[0..LEN) (copied into the arena when COPY). POLICY_RESPOND, or
 * a 503 error when out of memory. */
int xctx_respond(struct xctx *x, int status, const char *content_type,
    const char *body, size_t len, bool copy);
/* xctx_respond_source: RESPOND with a body pulled from SRC (which must
 * live as long as the exchange). POLICY_RESPOND. */
int xctx_respond_source(struct xctx *x, int status,
    const char *content_type, const struct body_source *src);
/* xctx_wait: PENDING for at most MS: returns POLICY_PENDING, or a 503
 * RESPOND when the wait cannot be armed. */
int xctx_wait(struct xctx *x, uint64_t ms);
/* xctx_resume: end a wait now (from another event); the hook runs again
 * from the event loop, not inside this call. */
void xctx_resume(struct xctx *x);
/* xctx_fetch: start a background fetch (struct xfetch). 0, or -1 when it
 * cannot start (F's done is then not called). */
int xctx_fetch(struct xctx *x, const struct xfetch *f);
/* xctx_resp_filter / xctx_req_filter: install a body filter on the
 * response (from on_response) or the request (from on_request). 0, or
 * -1 when too many. */
int xctx_resp_filter(struct xctx *x, const struct body_filter *f);
int xctx_req_filter(struct xctx *x, const struct body_filter *f);
/* obuf_put: append to a filter's output. 0, or -1 when out of memory. */
int obuf_put(struct obuf *o, const char *p, size_t n);

/* The policies, in pipeline order in policy.c. */
extern const struct policy policy_auth;
extern const struct policy policy_ratelimit;
extern const struct policy policy_transform;
extern const struct policy policy_cache;

#endif
