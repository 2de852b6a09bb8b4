/*
 * worker-t: the types the worker's modules share (conn, exchange, upconn,
 * upclient, the per-process worker context). Functions live in conn.h,
 * exchange.h, upclient.h, upstream.h, proxy.h.
 *
 * Who owns what: a conn owns its client socket and input buffer and at
 * most one exchange at a time (responses go out in order). An exchange
 * owns its context (policies' view, arena), its response writer state
 * and, while proxying, one upstream client; an upstream client owns at
 * most one upstream connection at a time, taken from and given back to
 * its instance's pool.
 */
#ifndef PORTICO_WORKER_T_H
#define PORTICO_WORKER_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../master/config.h"
#include "../master/log.h"
#include "../policies/accesslog.h"
#include "../policies/arena.h"
#include "../policies/policy.h"
#include "../shm/counters.h"
#include "../shm/metrics.h"
#include "http1.h"
#include "io.h"
#include "loop.h"
#include "route.h"

struct worker;
struct exchange;
struct tls_server;
struct bgfetch;

/* A client address kept compactly (an idle connection must stay small). */
struct peer {
	uint8_t family;			/* AF_INET or AF_INET6 */
	uint8_t text_len;		/* IPv4 text below, made at accept */
	uint16_t port;			/* host order */
	uint8_t addr[16];
	char text[16];			/* "a.b.c.d" (IPv4 only) */
};

enum conn_state {
	CONN_IDLE,	/* between requests: no exchange, in may be NULL;
			 * timer = idle timeout (or drain deadline) */
	CONN_HEAD,	/* a request head is arriving in `in`; timer = the
			 * header deadline set at its first byte */
	CONN_BUSY,	/* x is set: its pipeline, upstream or response
			 * runs; timer = client stall (idle timeout) */
	CONN_LINGER,	/* final response sent, write side shut; input is
			 * read and dropped until EOF or the timer */
};

#define CF_CLOSE_AFTER	0x01	/* close once the current response is out */
#define CF_DEAD		0x02	/* closed; waiting to be freed this turn */
#define CF_UNREAD	0x04	/* request bytes may be left unread: linger */
#define CF_QUEUED	0x08	/* in the worker's run queue */

struct conn {
	struct loop_fd lfd;		/* fd + callback; lfd.data = conn */
	struct io io;
	struct worker *w;
	enum conn_state state;
	unsigned flags;			/* CF_* */
	struct loop_timer timer;
	char *in;			/* pooled buffer or NULL when idle */
	uint32_t in_len;
	uint32_t scanned;		/* head bytes already searched */
	struct exchange *x;
	struct peer peer;
	uint64_t active_ms;		/* last client I/O progress (stall timer) */
	struct conn *prev, *next;	/* worker's list (for drain) */
	struct conn *free_next;		/* deferred free / pool link */
	struct conn *run_next;		/* run queue link */
};

enum up_state {
	UP_CONNECTING,	/* connect() in progress */
	UP_HANDSHAKE,	/* TLS handshake in progress (connect's timer) */
	UP_ACTIVE,	/* bound to an upstream client */
	UP_IDLE,	/* in its instance's pool; timer = keepalive timeout */
};

#define UF_REUSED	0x01	/* came from the pool for this request */
#define UF_DEAD		0x02
#define UF_CHECK	0x04	/* last response had no body by rule (HEAD,
				 * 204, 304): look for unrequested bytes
				 * before reusing it */

struct instance;
struct upclient;

struct upconn {
	struct loop_fd lfd;
	struct io io;
	struct worker *w;
	struct instance *inst;
	enum up_state state;
	unsigned flags;			/* UF_* */
	struct loop_timer timer;
	struct upclient *uc;		/* while CONNECTING or ACTIVE */
	char *buf;			/* pooled response buffer (ACTIVE) */
	uint32_t len;			/* bytes in buf */
	struct upconn *pool_next;	/* idle list / free list */
	struct upconn *pool_prev;
};

struct instance {
	const struct cfg_addr *addr;
	unsigned index;			/* in its service */
	struct upconn *idle;		/* LIFO of idle pooled connections */
	unsigned nidle;
	unsigned active;		/* bound to requests (least_conn) */
	unsigned keepalive;		/* most idle connections kept */
	unsigned idle_ms;		/* an idle connection is closed after */
	struct service_rt *svc;
	struct ssl_session_st *tls_sess; /* TLS: the session to resume */
};

struct service_rt {
	const struct cfg_service *cfg;
	unsigned index;			/* in cfg->services */
	struct instance *inst;
	unsigned ninst;
	unsigned rr;
	struct ssl_ctx_st *tls;		/* TLS to the instances, or NULL */
};

/* What an upstream client waits on the upstream for; its timer runs only
 * in these states (timeout_ms, or connect_timeout_ms). */
enum up_wait {
	UW_NONE,	/* waiting on its owner (the client), or not at all */
	UW_CONNECT,	/* connect() in progress */
	UW_SEND,	/* request bytes ready, the upstream takes none */
	UW_HEAD,	/* request sent, no final response head yet: one
			 * deadline, interim responses do not move it */
	UW_BODY,	/* room for body bytes, the upstream sends none */
};

/* Why an upstream attempt failed: decides retry and status. */
enum up_fail {
	UPF_CONNECT,		/* refused / unreachable: 502, retryable */
	UPF_CONNECT_TIMEOUT,	/* no connect in time: 504, retryable */
	UPF_TLS,		/* TLS handshake failed: 502, retryable */
	UPF_RESET,		/* closed before any response byte: 502 */
	UPF_TIMEOUT,		/* no (complete) response in time: 504 */
	UPF_BAD,		/* malformed response: 502 */
	UPF_UNAVAILABLE,	/* every instance refused by the check: 503 */
	UPF_OVERLOADED,		/* the service's bulkhead is full: 503 */
};

struct upclient_ops;

#define UC_IDEMPOTENT	0x0001	/* method may be sent twice */
#define UC_HAS_BODY	0x0002	/* request has a body: never replayed */
#define UC_RESENT	0x0004	/* the one free resend is spent */
#define UC_REQ_DONE	0x0008	/* whole request sent */
#define UC_HEAD_DONE	0x0010	/* final response head delivered */
#define UC_DECODE	0x0020	/* deliver a chunked body decoded */
#define UC_CHUNKED	0x0040	/* response body is chunked */
#define UC_TO_EOF	0x0080	/* response body ends at the upstream's EOF */
#define UC_NO_BODY	0x0100	/* response has no body (HEAD, 204, 304) */
#define UC_BODY_DONE	0x0200	/* whole body read (maybe not delivered) */
#define UC_NO_REUSE	0x0400	/* connection not reusable after this */
#define UC_HEAD_REQ	0x0800	/* the request is HEAD */
#define UC_DELIVERED	0x1000	/* response bytes went to the owner */
#define UC_PAUSED	0x2000	/* owner took fewer bytes than offered */
#define UC_ACTIVE	0x4000	/* started, not yet finished or aborted */
#define UC_ADMITTED	0x8000	/* holds a slot of the service's bulkhead */

/* One request to one service (upclient.h). */
struct upclient {
	struct worker *w;
	struct service_rt *svc;
	const struct upclient_ops *ops;
	void *owner;
	struct upconn *u;
	unsigned flags;			/* UC_* */
	uint32_t hash;			/* balancing key hash */
	unsigned attempts;		/* tries so far */
	int inst_first;			/* first instance picked (retries) */
	int inst_last;			/* instance of the current try */
	uint64_t tried;			/* instances tried (bit i: #i < 64) */
	char *hbuf;			/* the request head (pooled) */
	uint32_t hlen, hoff;		/* its length, bytes sent */
	bool body_sent;			/* a body byte went out on this try */
	enum up_wait wait;
	uint64_t since_ms;		/* the wait (or its last progress) began */
	uint64_t sent_ms;		/* request fully sent (head deadline) */
	uint64_t start_us;		/* first try began (upstream time) */
	uint64_t resp_left;		/* Content-Length bytes still to come */
	struct http1_chunked ck;
	uint32_t scanned;		/* response head bytes already searched */
	uint32_t off;			/* first undelivered body byte in u->buf */
	uint32_t ready;			/* end of the bytes validated for the
					 * owner ([off, ready) in u->buf) */
	int status;
	const char *reason;		/* access-log reason of a failure */
	const char *trace;		/* the request's trace id, for the
					 * error log (set by the owner) */
};

#define XF_HEAD		0x0001	/* HEAD request: response has no body */
#define XF_KEEPALIVE	0x0002	/* the client keeps the connection */
#define XF_HTTP10	0x0004	/* HTTP/1.0 client */
#define XF_REQ_CHUNKED	0x0008	/* request body is chunked, not all read */
#define XF_RESP_HEAD	0x0010	/* response head built */
#define XF_RESP_LAST	0x0020	/* the last body bytes were taken */
#define XF_SENT		0x0040	/* response bytes were queued to the client */
#define XF_LOG		0x0080	/* an access-log line is owed */
#define XF_PENDING	0x0100	/* a policy waits (stage = its index) */
#define XF_UPSTREAM	0x0200	/* the upstream client runs */
#define XF_LOCAL	0x0400	/* the response is the gateway's own */
#define XF_CHUNK_OUT	0x0800	/* body re-framed as chunked for the client */
#define XF_FILTERED	0x1000	/* response body goes through filters */
#define XF_RESUME	0x2000	/* a resume is queued for the loop */
#define XF_DEAD		0x4000	/* released; freed after the batch */
#define XF_REQ_FED	0x8000	/* request filters had their last call */
#define XF_HOLD		0x10000	/* head built, held until the last filter
				 * output gives its Content-Length */
#define XF_AGGREGATE	0x20000	/* aggregate calls run (aggregate.h) */

struct agg;
struct agg_worker;

struct exchange {
	struct conn *c;
	unsigned flags;			/* XF_* */
	unsigned stage;			/* next (or waiting) request hook */
	unsigned ran;			/* request hooks that ran (response
					 * hooks and on_done run for these) */
	struct loop_timer wait_timer;	/* PENDING bound */
	uint8_t minor_version;
	/* request side */
	uint64_t req_left;		/* CL body bytes not yet read */
	uint32_t req_ready;		/* body bytes at the front of c->in that
					 * belong to the request, unsent */
	struct http1_chunked req_ck;
	uint32_t head_len;		/* request head bytes still in c->in */
	uint32_t req_head_bytes;	/* request head size (trailer budget) */
	uint16_t req_headers;		/* request header lines (same) */
	struct http1_framing req_f;	/* the request's framing facts */
	const char *up_path;		/* path sent upstream (rewritten) */
	size_t up_path_len;
	struct obuf rout;		/* request filters' framed output */
	size_t roff;			/* its bytes sent */
	/* response writer */
	char *hbuf;			/* head (and small bodies) to the client */
	uint32_t hlen, hoff;		/* bytes in hbuf, bytes written */
	struct obuf fout;		/* framed filter output */
	size_t foff;			/* its bytes written */
	uint64_t fed[POLICY_MAX_FILTERS];	/* bytes fed to each filter */
	struct obuf fmid;		/* between two filters */
	int status;			/* response status */
	uint64_t bytes_out;		/* bytes written to the client */
	uint64_t bytes_in;		/* request bytes read: head + body */
	/* the gateway's own body */
	const char *lbody;
	size_t lbody_len, lbody_off;
	const struct body_source *src;
	uint64_t src_off;
	char *sbuf;			/* pooled buffer for source reads */
	uint32_t slen, soff;
	/* upstream */
	struct upclient uc;
	struct agg *agg;		/* an aggregate's calls (in the arena) */
	const char *up_addr;		/* instance used (access log) */
	const char *err_service;	/* named in the JSON error (503) */
	unsigned retry_after_s;		/* Retry-After of the error, or 0 */
	uint64_t up_us;			/* upstream time (access log) */
	/* access log */
	uint64_t start_us;		/* head complete */
	uint8_t method_len;
	uint16_t logpath_len;
	uint16_t ua_len, referer_len;
	struct exchange *free_next;
	/* The context, then text buffers: a new exchange clears everything
	 * before the context's large parts (xctx.trace on); lengths and
	 * counts say how much of the rest is valid. */
	struct xctx ctx;		/* what policies see */
	char method_text[16];
	char logpath[1024];		/* path and redacted query (access
					 * log) */
	char extra[384];		/* ctx.resp_extra */
	char ua[256];			/* User-Agent, Referer (access log) */
	char referer[256];
};

/* The exchange whose context CX is (policies see only the context). */
#define XCTX_EXCHANGE(cx) \
	((struct exchange *)((char *)(cx) - offsetof(struct exchange, ctx)))

struct ssl_ctx_st;

struct listener {
	struct loop_fd lfd;
	struct worker *w;
	struct ssl_ctx_st *tls;		/* TLS listener's default context */
	bool strict_sni;
};

/*
 * Pluggable upstream checks (resilience plugs in here): before an
 * instance is picked, `available` may refuse it (circuit open, health
 * down); every attempt's outcome is told to `observe`. `admit` may
 * refuse a request to the service at its start (bulkhead full: -1),
 * and `release` ends what it admitted; `may_retry` may refuse a retry
 * the rules allow (the retry budget is spent). NULL = none.
 */
enum up_result {
	UPR_OK,			/* a response head arrived (status given) */
	UPR_CONNECT,		/* connect failed or timed out */
	UPR_RESET,		/* reset before a response */
	UPR_TIMEOUT,		/* no response in time */
	UPR_BAD,		/* malformed response */
};

struct up_hooks {
	bool (*available)(void *arg, const struct service_rt *s,
	    unsigned inst);
	void (*observe)(void *arg, const struct service_rt *s, unsigned inst,
	    enum up_result r, int status);
	int (*admit)(void *arg, const struct service_rt *s);
	void (*release)(void *arg, const struct service_rt *s);
	bool (*may_retry)(void *arg, const struct service_rt *s);
	void *arg;
};

/* The worker's blocks in its generation's metrics region (metrics.h). */
struct worker_metrics {
	struct metrics_region *own;	/* mapped here (no master), or NULL */
	struct metrics_whdr *hdr;
	struct metrics_route *routes;	/* by route index; [nroutes]: none;
					 * [nroutes + 1 + service index]: the
					 * calls aggregates made to it */
	struct metrics_inst *inst;	/* by metrics_inst_index */
	unsigned *inst_base;		/* by service: its first block */
	unsigned unrouted;		/* the no-route block */
};

struct worker {
	const struct config *cfg;
	struct loop loop;
	struct worker_counters *stats;
	struct worker_metrics mx;
	unsigned slot, generation;
	struct listener *ls;
	size_t nls;
	struct tls_server *tls;		/* the tls section's contexts */
	struct service_rt *svc;
	struct up_hooks up_hooks;
	struct policy_set pset;		/* policies' worker states */
	struct policy_chain *chains;	/* one per route */
	struct route_match_data *md;
	struct conn *conns;		/* every open client connection */
	unsigned nconns;
	struct conn *conn_free, *conn_dead;
	struct conn *runq;		/* to run after this batch of events */
	struct exchange *x_free, *x_dead;
	struct upconn *up_free, *up_dead;
	struct bgfetch *fetches;	/* background fetches (proxy.c) */
	struct arena_cache arenas;
	char **cbuf_free;		/* pooled client input buffers */
	unsigned ncbuf_free, capcbuf;
	char **hbuf_free;
	unsigned nhbuf_free, caphbuf;
	char **ubuf_free;
	unsigned nubuf_free, capubuf;
	uint32_t cbuf_size, hbuf_size, ubuf_size;
	size_t max_headers;
	struct http1_limits req_lim;	/* client request heads */
	struct http1_limits resp_lim;	/* upstream response heads */
	bool draining;
	uint64_t drain_deadline;
	struct loop_timer drain_timer;
	struct loop_timer accept_timer;	/* accepts paused (EMFILE) until */
	struct log_limit accept_log;	/* its error, once per interval */
	struct loop_fd sig;
	struct accesslog *alog;		/* NULL = access log off */
	struct loop_timer alog_timer;
	struct loop_timer rl_timer;	/* rate-limit leases go back */
	struct loop_timer cache_timer;	/* cache hits marked used */
	uint64_t trace_state;		/* xorshift state for trace ids */
	struct http1_header *hdrs;	/* parse scratch, max_headers long */
	size_t trace_hdr_len;
	const char *gw_hdrs[4];		/* trace + identity header names */
	size_t gw_hdr_len[4];
	unsigned ngw_hdrs;
	char *path_scratch;		/* normalised path */
	char *rewrite_scratch;
	struct agg_worker *aggw;	/* aggregate routes (aggregate.c) */
};

#endif
