/*
 * worker-t: the types the worker's modules share (conn, exchange, upconn,
 * the per-process worker context). Functions live in conn.h, proxy.h,
 * upstream.h.
 */
#ifndef PORTICO_WORKER_T_H
#define PORTICO_WORKER_T_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../master/config.h"
#include "../master/log.h"
#include "../policies/accesslog.h"
#include "../policies/policy.h"
#include "../shm/counters.h"
#include "http1.h"
#include "io.h"
#include "loop.h"
#include "route.h"

struct worker;
struct exchange;

/* A client address kept compactly (an idle connection must stay small). */
struct peer {
	uint8_t family;			/* AF_INET or AF_INET6 */
	uint16_t port;			/* host order */
	uint8_t addr[16];
};

enum conn_state {
	CS_IDLE,	/* between requests: no exchange, in may be NULL;
			 * timer = idle timeout (or drain deadline) */
	CS_HEAD,	/* a request head is arriving in `in`; timer = the
			 * header deadline set at its first byte */
	CS_PROXY,	/* x is set and talks to an upstream; timer = client
			 * stall (idle timeout) */
	CS_RESPOND,	/* x->out holds a response the gateway made itself */
	CS_LINGER,	/* final response sent, write side shut; input is
			 * read and dropped until EOF or the timer */
};

#define CF_CAN_READ	0x01	/* socket may have input (edge seen) */
#define CF_CAN_WRITE	0x02	/* socket may take output */
#define CF_EOF		0x04	/* client half-closed or reset */
#define CF_CLOSE_AFTER	0x08	/* close once the current response is out */
#define CF_DEAD		0x10	/* closed; waiting to be freed this turn */
#define CF_UNREAD	0x20	/* request bytes may be left unread: linger */

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
};

enum up_state {
	US_CONNECTING,	/* connect() in progress; timer = connect timeout */
	US_ACTIVE,	/* bound to an exchange; timer = response timeout */
	US_IDLE,	/* in its instance's pool; timer = pool idle limit */
};

#define UF_CAN_READ	0x01
#define UF_CAN_WRITE	0x02
#define UF_REUSED	0x04	/* came from the pool for this exchange */
#define UF_DEAD		0x08
#define UF_EOF		0x10	/* peer half-closed or failed */

struct instance;

struct upconn {
	struct loop_fd lfd;
	struct io io;
	struct worker *w;
	struct instance *inst;
	enum up_state state;
	unsigned flags;
	struct loop_timer timer;
	struct exchange *x;		/* while ACTIVE or CONNECTING */
	char *buf;			/* pooled response buffer (ACTIVE) */
	uint32_t len;			/* bytes in buf */
	uint32_t scanned;		/* head bytes already searched */
	struct upconn *pool_next;	/* idle list / free list */
	struct upconn *pool_prev;
};

struct instance {
	const struct cfg_addr *addr;
	struct upconn *idle;		/* LIFO of idle pooled connections */
	unsigned nidle;
	unsigned active;		/* bound to exchanges (least_conn) */
	unsigned keepalive;		/* most idle connections kept */
};

struct service_rt {
	const struct cfg_service *cfg;
	struct instance *inst;
	unsigned ninst;
	unsigned rr;
};

#define XF_HEAD		0x0001	/* HEAD request: response has no body */
#define XF_KEEPALIVE	0x0002	/* the client keeps the connection */
#define XF_HTTP10	0x0004	/* HTTP/1.0 client */
#define XF_REQ_CHUNKED	0x0008	/* request body is chunked */
#define XF_REQ_DONE	0x0010	/* request fully sent upstream */
#define XF_RESP_HEAD	0x0020	/* response head parsed and queued */
#define XF_RESP_DONE	0x0040	/* whole response read from upstream */
#define XF_RESP_CHUNKED	0x0080	/* upstream body chunked, passed through */
#define XF_RESP_DECHUNK	0x0100	/* upstream body chunked, decoded (1.0) */
#define XF_RESP_EOF	0x0200	/* upstream body ends at its EOF */
#define XF_IDEMPOTENT	0x0400	/* method may be retried */
#define XF_SENT		0x0800	/* response bytes reached the client */
#define XF_UP_CLOSE	0x1000	/* upstream connection not reusable */
#define XF_CONTINUE	0x2000	/* 100 Continue owed to the client */

struct exchange {
	struct conn *c;
	struct upconn *u;
	int route;
	enum http_method method;
	unsigned flags;			/* XF_* */
	unsigned attempts;		/* upstream tries so far */
	int inst_first;			/* first instance picked (for retries) */
	int status;			/* response status (stats) */
	uint64_t req_left;		/* CL body bytes not yet read from client */
	uint32_t req_ready;		/* body bytes at the front of c->in that
					 * belong to the request, unsent */
	uint64_t resp_left;		/* CL body bytes still to come */
	struct http1_chunked req_ck, resp_ck;
	char *hbuf;			/* upstream request head, then the
					 * client response head */
	uint32_t hlen, hoff;		/* head length, bytes written */
	struct iovec out[2];		/* pending client output */
	int nout;
	uint32_t resp_off;		/* start of unsent body in u->buf */
	uint32_t hash;			/* balancing key hash */
	uint64_t start_us;		/* head complete (access log) */
	uint64_t bytes_out;		/* bytes written to the client */
	uint8_t minor_version;
	uint8_t method_len;
	uint16_t logpath_len;
	const char *up_addr;		/* instance used (access log) */
	uint16_t extra_len;		/* policy header lines for the response */
	uint8_t trace_len;
	uint32_t head_len;		/* request head bytes still in c->in */
	struct exchange *free_next;
	/* Text buffers last: a new exchange clears only what comes before
	 * (their lengths above say how much of each is valid). */
	char trace[33];
	char method_text[16];
	char logpath[256];		/* path for the access log */
	char extra[384];
};

struct listener {
	struct loop_fd lfd;
	struct worker *w;
};

struct worker {
	const struct config *cfg;
	struct loop loop;
	struct worker_counters *stats;
	unsigned slot, generation;
	struct listener *ls;
	size_t nls;
	struct service_rt *svc;
	struct policy_chain *chains;	/* one per route */
	struct route_match_data *md;
	struct conn *conns;		/* every open client connection */
	unsigned nconns;
	struct conn *conn_free, *conn_dead;
	struct exchange *x_free;
	struct upconn *up_free, *up_dead;
	char **cbuf_free;		/* pooled client input buffers */
	unsigned ncbuf_free, capcbuf;
	char **hbuf_free;
	unsigned nhbuf_free, caphbuf;
	char **ubuf_free;
	unsigned nubuf_free, capubuf;
	uint32_t cbuf_size, hbuf_size, ubuf_size;
	size_t max_headers;
	bool draining;
	uint64_t drain_deadline;
	struct loop_timer drain_timer;
	struct loop_timer accept_timer;	/* accepts paused (EMFILE) until */
	struct log_limit accept_log;	/* its error, once per interval */
	struct loop_fd sig;
	struct accesslog *alog;		/* NULL = access log off */
	struct loop_timer alog_timer;
	uint64_t trace_state;		/* xorshift state for trace ids */
	struct http1_header *hdrs;	/* parse scratch, max_headers long */
	size_t trace_hdr_len;
	const char *gw_hdrs[4];		/* trace + identity header names */
	size_t gw_hdr_len[4];
	unsigned ngw_hdrs;
	char *path_scratch;		/* normalised path */
	char *rewrite_scratch;
};

#endif
