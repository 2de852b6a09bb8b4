#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "../master/log.h"
#include "conn.h"
#include "pool.h"
#include "proxy.h"
#include "upstream.h"

/* Why an upstream attempt failed; decides retry and status. */
enum up_fail {
	UP_CONNECT,		/* refused / unreachable: 502, retryable */
	UP_CONNECT_TIMEOUT,	/* no connect in time: 504, retryable */
	UP_RESET,		/* closed before any response byte: 502 */
	UP_TIMEOUT,		/* no (complete) response in time: 504 */
	UP_BAD,			/* malformed response: 502 */
};

static void upstream_failed(struct exchange *x, enum up_fail why);
static int connect_next(struct exchange *x);

static bool
body_pending(const struct exchange *x)
{
	return x->req_left > 0 || (x->flags & XF_REQ_CHUNKED);
}

/* Head building: append with a bound; `ok` turns false on overflow. */
struct hb {
	char *p;
	size_t len, cap;
	bool ok;
};

static void
hb_put(struct hb *b, const char *s, size_t n)
{
	if (!b->ok || b->len + n > b->cap) {
		b->ok = false;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

#define hb_lit(b, s) hb_put((b), (s), sizeof(s) - 1)

static void
hb_u64(struct hb *b, uint64_t v)
{
	char tmp[24];
	int i = sizeof(tmp);

	do {
		tmp[--i] = '0' + v % 10;
		v /= 10;
	} while (v > 0);
	hb_put(b, tmp + i, sizeof(tmp) - i);
}

static void
hb_header(struct hb *b, const char *n, size_t nl, const char *v, size_t vl)
{
	hb_put(b, n, nl);
	hb_lit(b, ": ");
	hb_put(b, v, vl);
	hb_lit(b, "\r\n");
}

#define NAME_IS(h, lit) http1_name_eq((h)->name, (h)->name_len, lit, \
	sizeof(lit) - 1)

/* Most names a Connection header may list: a longer list is refused
 * rather than forwarded with headers the gateway could not track. */
#define CONN_TOKENS 32

struct conn_tokens {
	struct http1_token t[CONN_TOKENS];
	int n;
};

/* Headers a Connection list can never remove: routing and framing (the
 * gateway regenerates framing anyway). The gateway's own headers are
 * emitted after the filtered ones, so no list reaches them. */
static bool
protected_name(const struct http1_token *t)
{
	return http1_name_eq(t->p, t->len, "host", 4) ||
	    http1_name_eq(t->p, t->len, "content-length", 14) ||
	    http1_name_eq(t->p, t->len, "transfer-encoding", 17);
}

/* 0, or -1 when the list is longer than CONN_TOKENS. */
static int
collect_connection(const struct http1_header *h, size_t nh,
    struct conn_tokens *ct)
{
	int i, k = 0;

	ct->n = http1_connection_tokens(h, nh, ct->t, CONN_TOKENS);
	if (ct->n < 0)
		return -1;
	for (i = 0; i < ct->n; i++)
		if (!protected_name(&ct->t[i]))
			ct->t[k++] = ct->t[i];
	ct->n = k;
	return 0;
}

static bool
is_hop_by_hop(const struct http1_header *h, const struct conn_tokens *ct)
{
	int i;

	switch (h->name_len) {
	case 2:
		if (NAME_IS(h, "te"))
			return true;
		break;
	case 7:
		if (NAME_IS(h, "upgrade") || NAME_IS(h, "trailer"))
			return true;
		break;
	case 10:
		if (NAME_IS(h, "connection") || NAME_IS(h, "keep-alive"))
			return true;
		break;
	case 16:
		if (NAME_IS(h, "proxy-connection"))
			return true;
		break;
	case 17:
		if (NAME_IS(h, "transfer-encoding"))
			return true;
		break;
	case 18:
		if (NAME_IS(h, "proxy-authenticate"))
			return true;
		break;
	case 19:
		if (NAME_IS(h, "proxy-authorization"))
			return true;
		break;
	}
	for (i = 0; i < ct->n; i++)
		if (http1_name_eq(h->name, h->name_len, ct->t[i].p,
		    ct->t[i].len))
			return true;
	return false;
}

/* Whether the edits remove (or replace, by adding) this header. */
static bool
edited_away(const struct http1_header *h, const struct policy_edits *e)
{
	unsigned i;

	if (e == NULL)
		return false;
	for (i = 0; i < e->nremove; i++)
		if (http1_name_eq(h->name, h->name_len, e->remove[i],
		    e->remove_len[i]))
			return true;
	for (i = 0; i < e->nadd; i++) {
		const char *colon = memchr(e->add[i], ':', e->add_len[i]);
		if (colon != NULL && http1_name_eq(h->name, h->name_len,
		    e->add[i], colon - e->add[i]))
			return true;
	}
	return false;
}

static void
hb_edits(struct hb *b, const struct policy_edits *e)
{
	unsigned i;

	for (i = 0; e != NULL && i < e->nadd; i++) {
		hb_put(b, e->add[i], e->add_len[i]);
		hb_lit(b, "\r\n");
	}
}

static bool
name_is_str(const struct http1_header *h, const char *s)
{
	return s != NULL && http1_name_eq(h->name, h->name_len, s, strlen(s));
}

/* Headers only the gateway sets: the trace id and the identity headers
 * (a client's copy is never forwarded). */
static bool
is_gateway_header(const struct worker *w, const struct http1_header *h)
{
	unsigned i;

	for (i = 0; i < w->ngw_hdrs; i++)
		if (http1_name_eq(h->name, h->name_len, w->gw_hdrs[i],
		    w->gw_hdr_len[i]))
			return true;
	return false;
}

static bool
peer_trusted(const struct worker *w, const struct conn *c)
{
	const struct cfg_server *sv = &w->cfg->server;
	struct sockaddr_storage ss;
	size_t i;

	if (sv->ntrusted == 0)
		return false;
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = c->peer.family;
	if (c->peer.family == AF_INET)
		memcpy(&((struct sockaddr_in *)&ss)->sin_addr, c->peer.addr, 4);
	else
		memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer.addr,
		    16);
	for (i = 0; i < sv->ntrusted; i++)
		if (cidr_match(&sv->trusted[i], (struct sockaddr *)&ss))
			return true;
	return false;
}

static uint32_t
balance_hash(struct worker *w, const struct service_rt *s,
    const struct conn *c, const struct http1_request *req)
{
	size_t i;

	switch (s->cfg->balance) {
	case BAL_HASH_IP:
		return upstream_hash(c->peer.addr,
		    c->peer.family == AF_INET ? 4 : 16);
	case BAL_HASH_HEADER:
		for (i = 0; i < req->num_headers; i++)
			if (name_is_str(&req->headers[i], s->cfg->hash_header))
				return upstream_hash(req->headers[i].value,
				    req->headers[i].value_len);
		return upstream_hash("", 0);
	default:
		(void)w;
		return 0;
	}
}

/* Why build_request_head refused; each maps to a client status. */
#define HEAD_TOO_LONG		(-1)	/* 431 */
#define HEAD_TOO_MANY_TOKENS	(-2)	/* 400 */
#define HEAD_UNDERSCORE		(-3)	/* 400 (underscores_in_headers) */

/* The upstream request head, into x->hbuf. 0 or a HEAD_* code. */
static int
build_request_head(struct conn *c, const struct http1_request *req,
    const struct proxy_target *t, const struct policy_edits *edits)
{
	struct worker *w = c->w;
	struct exchange *x = c->x;
	const struct config *cfg = w->cfg;
	struct hb b = { x->hbuf, 0, w->hbuf_size, true };
	struct conn_tokens ct;
	const struct http1_header *xff[8];
	unsigned nxff = 0, i;
	bool trusted = peer_trusted(w, c);
	char peer[INET6_ADDRSTRLEN];
	size_t k, plen;

	if (collect_connection(req->headers, req->num_headers, &ct) < 0)
		return HEAD_TOO_MANY_TOKENS;
	hb_put(&b, req->method, req->method_len);
	hb_lit(&b, " ");
	hb_put(&b, t->path, t->path_len);
	if (t->query)
		hb_put(&b, t->query, t->query_len);
	hb_lit(&b, " HTTP/1.1\r\n");
	for (k = 0; k < req->num_headers; k++) {
		const struct http1_header *h = &req->headers[k];
		/* A backend may fold X_User_ID into X-User-ID, or
		 * Transfer_Encoding into framing: drop (or refuse) them. */
		if (memchr(h->name, '_', h->name_len) != NULL) {
			if (cfg->server.refuse_underscores)
				return HEAD_UNDERSCORE;
			continue;
		}
		if (is_hop_by_hop(h, &ct) || NAME_IS(h, "content-length") ||
		    NAME_IS(h, "expect"))
			continue;
		if (NAME_IS(h, "x-forwarded-for")) {
			if (trusted && nxff < 8)
				xff[nxff++] = h;
			continue;
		}
		if (NAME_IS(h, "x-forwarded-proto") ||
		    NAME_IS(h, "x-forwarded-host") ||
		    is_gateway_header(w, h) || edited_away(h, edits))
			continue;
		hb_header(&b, h->name, h->name_len, h->value, h->value_len);
	}
	if (req->host == NULL) {
		/* HTTP/1.0 without Host: name the instance, as 1.1 needs. */
		hb_lit(&b, "Host: ");
		hb_put(&b, x->u ? x->u->inst->addr->text : "localhost",
		    x->u ? strlen(x->u->inst->addr->text) : 9);
		hb_lit(&b, "\r\n");
	}
	if (req->f.chunked) {
		hb_lit(&b, "Transfer-Encoding: chunked\r\n");
	} else if (req->f.content_length >= 0) {
		hb_lit(&b, "Content-Length: ");
		hb_u64(&b, req->f.content_length);
		hb_lit(&b, "\r\n");
	}
	hb_lit(&b, "X-Forwarded-For: ");
	for (i = 0; i < nxff; i++) {
		hb_put(&b, xff[i]->value, xff[i]->value_len);
		hb_lit(&b, ", ");
	}
	plen = conn_peer_text(c, peer, sizeof(peer));
	hb_put(&b, peer, plen);
	hb_lit(&b, "\r\nX-Forwarded-Proto: http\r\n");
	if (req->host != NULL)
		hb_header(&b, "X-Forwarded-Host", 16, req->host, req->host_len);
	hb_header(&b, cfg->server.trace_header, w->trace_hdr_len, x->trace,
	    x->trace_len);
	hb_edits(&b, edits);
	hb_lit(&b, "\r\n");
	if (!b.ok)
		return HEAD_TOO_LONG;
	x->hlen = b.len;
	x->hoff = 0;
	return 0;
}

int
proxy_start(struct conn *c, const struct http1_request *req,
    const struct proxy_target *t, const struct policy_edits *edits)
{
	struct worker *w = c->w;
	struct exchange *x = c->x;
	const struct cfg_route *r = &w->cfg->routes[x->route];
	struct service_rt *s = &w->svc[r->service];
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

	x->hbuf = pool_buf_get(w, BUF_HEAD);
	if (x->hbuf == NULL) {
		conn_close(c, "out of memory");
		return 0;
	}
	switch (x->method) {
	case M_GET: case M_HEAD: case M_PUT: case M_DELETE: case M_OPTIONS:
	case M_TRACE:
		x->flags |= XF_IDEMPOTENT;
		break;
	default:
		break;
	}
	x->hash = balance_hash(w, s, c, req);
	switch (build_request_head(c, req, t, edits)) {
	case 0:
		break;
	case HEAD_TOO_MANY_TOKENS:
		conn_respond(c, 400, "too_many_connection_options", NULL, true);
		return 0;
	case HEAD_UNDERSCORE:
		conn_respond(c, 400, "underscore_in_header_name", NULL, true);
		return 0;
	default:
		conn_respond(c, 431, "header_too_large", NULL, true);
		return 0;
	}
	x->req_head_bytes = x->head_len;
	x->req_headers = req->num_headers;
	/* The head now lives in hbuf; drop it from the client buffer. */
	memmove(c->in, c->in + x->head_len, c->in_len - x->head_len);
	c->in_len -= x->head_len;
	x->head_len = 0;
	c->scanned = 0;
	if (req->f.chunked) {
		x->flags |= XF_REQ_CHUNKED | XF_HAS_BODY;
	} else if (req->f.content_length > 0) {
		x->req_left = req->f.content_length;
		x->flags |= XF_HAS_BODY;
	}
	/* Answer Expect: 100-continue ourselves (as nginx does) when the
	 * body has not started: the upstream never sees the Expect. */
	if (req->f.expect_continue && c->in_len == 0 &&
	    (req->f.chunked || req->f.content_length > 0)) {
		struct iovec iov = { (void *)cont, sizeof(cont) - 1 };
		if (io_writev(&c->io, &iov, 1) != (ssize_t)iov.iov_len) {
			conn_close(c, "cannot send 100 Continue");
			return 0;
		}
	}
	c->state = CS_PROXY;
	c->active_ms = w->loop.now_ms;
	loop_timer_set(&w->loop, &c->timer,
	    w->cfg->server.limits.idle_timeout_ms);
	if (connect_next(x) < 0)
		return 0;
	proxy_run(x);
	return 0;
}

static const struct cfg_service *
svc_cfg(const struct exchange *x)
{
	const struct worker *w = x->c->w;

	return w->svc[w->cfg->routes[x->route].service].cfg;
}

/* What the exchange waits on the upstream for (see enum up_wait). */
static enum up_wait
up_waiting(const struct exchange *x)
{
	if (x->u->state == US_CONNECTING)
		return UW_CONNECT;
	if (!(x->flags & XF_REQ_DONE))
		return x->hoff < x->hlen || x->req_ready > 0 ? UW_SEND :
		    UW_NONE;
	if (!(x->flags & XF_RESP_HEAD))
		return UW_HEAD;
	if (!(x->flags & XF_RESP_DONE) && x->nout == 0)
		return UW_BODY;
	return UW_NONE;
}

static uint64_t
up_deadline(const struct exchange *x)
{
	const struct cfg_service *sc = svc_cfg(x);

	switch (x->up_wait) {
	case UW_CONNECT:
		return x->up_since_ms + sc->connect_timeout_ms;
	case UW_HEAD:
		return x->req_sent_ms + sc->timeout_ms;
	default:
		return x->up_since_ms + sc->timeout_ms;
	}
}

/* Follow the exchange into its current wait. The timer is lazy: within
 * one kind of wait, progress only stamps up_since_ms, and an early firing
 * re-arms for what is left. */
static void
up_timer_sync(struct exchange *x)
{
	struct loop *l = &x->c->w->loop;
	enum up_wait k = up_waiting(x);
	uint64_t d;

	if (k == x->up_wait)
		return;
	x->up_wait = k;
	if (k == UW_NONE)
		return;
	if (k != UW_HEAD)
		x->up_since_ms = l->now_ms;
	d = up_deadline(x);
	loop_timer_set(l, &x->u->timer, d > l->now_ms ? d - l->now_ms : 0);
}

bool
proxy_waits_on_client(const struct exchange *x, bool *writing)
{
	*writing = x->nout > 0;
	if (*writing)
		return true;
	return x->u != NULL && !(x->flags & XF_REQ_DONE) &&
	    x->hoff >= x->hlen && x->req_ready == 0;
}

/* Pick an instance and get a connection for the next attempt. 0, or -1
 * when the exchange was answered (no instance could be reached). */
static int
connect_next(struct exchange *x)
{
	struct conn *c = x->c;
	struct worker *w = c->w;
	const struct cfg_route *r = &w->cfg->routes[x->route];
	struct service_rt *s = &w->svc[r->service];
	const struct cfg_service *sc = s->cfg;
	int idx;

	for (;;) {
		idx = upstream_pick(w, s, x->hash, x->attempts, x->inst_first);
		if (x->attempts == 0)
			x->inst_first = idx;
		x->attempts++;
		x->u = upstream_acquire(w, &s->inst[idx], x);
		x->up_addr = s->inst[idx].addr->text;
		if (x->u != NULL)
			break;
		log_warn("upstream %s (%s): connect: %s",
		    s->inst[idx].addr->text, sc->name, strerror(errno));
		if (!(x->flags & XF_IDEMPOTENT) || (x->flags & XF_HAS_BODY) ||
		    x->attempts > sc->retries) {
			x->reason = "upstream_connect_failed";
			conn_respond(c, 502, "upstream_unavailable", NULL,
			    body_pending(x) || x->req_ready > 0);
			return -1;
		}
	}
	x->hoff = 0;
	x->up_wait = UW_NONE;	/* a new connection: its timer starts */
	return 0;
}

/* Bytes of the request body now at the front of c->in, assigned once.
 * Request trailers are dropped (RFC 9110 6.5.1 lets a proxy discard
 * them): none reaches the upstream, but they count against the head's
 * limits. 0, or -400 / -413 / -431. */
static int
assign_body(struct exchange *x)
{
	struct conn *c = x->c;
	const struct cfg_limits *lim = &c->w->cfg->server.limits;
	struct http1_chunked *ck = &x->req_ck;
	bool done = false;
	size_t kept;
	ssize_t k;

	if (x->flags & XF_REQ_CHUNKED) {
		k = http1_chunked_strip(ck, c->in + x->req_ready,
		    c->in_len - x->req_ready, &kept, &done);
		if (k < 0)
			return -400;
		if (ck->total > lim->body_bytes)
			return -413;
		if (ck->trailers + x->req_headers > lim->headers ||
		    ck->trailer_bytes + x->req_head_bytes > lim->header_bytes ||
		    ck->trailer_line_max > lim->field_bytes)
			return -431;
		if ((size_t)k > kept) {
			char *p = c->in + x->req_ready;
			memmove(p + kept, p + k, c->in_len - x->req_ready - k);
			c->in_len -= k - kept;
		}
		x->req_ready += kept;
		if (done)
			x->flags &= ~XF_REQ_CHUNKED;
	} else if (x->req_left > 0) {
		uint64_t avail = c->in_len - x->req_ready;
		k = avail < x->req_left ? avail : x->req_left;
		x->req_ready += k;
		x->req_left -= k;
	}
	return 0;
}

/* Request side: head and body bytes to the upstream, reading the client
 * only while the upstream takes what we have (back-pressure). */
static void
send_request(struct exchange *x)
{
	struct conn *c = x->c;
	struct upconn *u = x->u;
	struct worker *w = c->w;
	struct iovec iov[2];
	ssize_t n;
	int cnt, rc;

	while (!(x->flags & XF_REQ_DONE)) {
		if ((rc = assign_body(x)) < 0) {
			if (x->flags & XF_SENT) {
				conn_close(c, "bad request body");
			} else {
				conn_respond(c, -rc, rc == -413 ?
				    "payload_too_large" : rc == -431 ?
				    "trailers_too_large" : "bad_request", NULL,
				    true);
			}
			return;
		}
		cnt = 0;
		if (x->hoff < x->hlen) {
			iov[cnt].iov_base = x->hbuf + x->hoff;
			iov[cnt++].iov_len = x->hlen - x->hoff;
		}
		if (x->req_ready > 0) {
			iov[cnt].iov_base = c->in;
			iov[cnt++].iov_len = x->req_ready;
		}
		if (cnt == 0) {
			if (!body_pending(x)) {
				x->flags |= XF_REQ_DONE;
				x->req_sent_ms = w->loop.now_ms;
				break;
			}
			/* Need more body from the client. */
			if (!(c->flags & CF_CAN_READ))
				return;
			if (c->in_len == w->cbuf_size)
				return;		/* cannot happen: ready == 0 */
			n = io_read(&c->io, c->in + c->in_len,
			    w->cbuf_size - c->in_len);
			if (n == IO_AGAIN) {
				c->flags &= ~CF_CAN_READ;
				return;
			}
			if (n <= 0) {
				conn_close(c, "client gone mid-body");
				return;
			}
			if ((size_t)n < w->cbuf_size - c->in_len &&
			    !(c->flags & CF_EOF))
				c->flags &= ~CF_CAN_READ;
			c->in_len += n;
			c->active_ms = w->loop.now_ms;
			continue;
		}
		if (!(u->flags & UF_CAN_WRITE))
			return;
		n = io_writev(&u->io, iov, cnt);
		if (n == IO_AGAIN) {
			u->flags &= ~UF_CAN_WRITE;
			return;
		}
		if (n < 0) {
			upstream_failed(x, UP_RESET);
			return;
		}
		x->up_since_ms = w->loop.now_ms;
		if (x->hoff < x->hlen) {
			size_t h = x->hlen - x->hoff;
			if ((size_t)n < h) {
				x->hoff += n;
				continue;
			}
			x->hoff = x->hlen;
			n -= h;
		}
		if (n > 0) {
			memmove(c->in, c->in + n, c->in_len - n);
			c->in_len -= n;
			x->req_ready -= n;
		}
	}
}

/* The client response head, from the upstream's, into x->hbuf. */
static int
build_response_head(struct exchange *x, const struct http1_response *res)
{
	struct conn *c = x->c;
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct hb b = { x->hbuf, 0, w->hbuf_size, true };
	struct conn_tokens ct;
	struct policy_ctx ctx;
	size_t k;

	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = cfg;
	ctx.route = &cfg->routes[x->route];
	ctx.method = x->method;
	ctx.headers = res->headers;
	ctx.nheaders = res->num_headers;
	ctx.status = res->status;
	ctx.now_ms = w->loop.now_ms;
	ctx.peer_family = c->peer.family;
	ctx.peer_addr = c->peer.addr;
	if (policy_run_response(&w->chains[x->route], &ctx) == POLICY_RESPOND ||
	    collect_connection(res->headers, res->num_headers, &ct) < 0)
		return -1;
	hb_lit(&b, "HTTP/1.1 ");
	hb_u64(&b, res->status);
	hb_lit(&b, " ");
	hb_put(&b, res->reason, res->reason_len);
	hb_lit(&b, "\r\n");
	for (k = 0; k < res->num_headers; k++) {
		const struct http1_header *h = &res->headers[k];
		if (is_hop_by_hop(h, &ct) || NAME_IS(h, "content-length") ||
		    http1_name_eq(h->name, h->name_len,
		    cfg->server.trace_header, w->trace_hdr_len) ||
		    edited_away(h, &ctx.edits))
			continue;
		hb_header(&b, h->name, h->name_len, h->value, h->value_len);
	}
	if (x->flags & XF_RESP_CHUNKED)
		hb_lit(&b, "Transfer-Encoding: chunked\r\n");
	else if (res->f.content_length >= 0)  {
		hb_lit(&b, "Content-Length: ");
		hb_u64(&b, res->f.content_length);
		hb_lit(&b, "\r\n");
	}
	hb_header(&b, cfg->server.trace_header, w->trace_hdr_len, x->trace,
	    x->trace_len);
	hb_edits(&b, &ctx.edits);
	hb_put(&b, x->extra, x->extra_len);
	if (c->flags & CF_CLOSE_AFTER)
		hb_lit(&b, "Connection: close\r\n");
	else if (x->flags & XF_HTTP10)
		hb_lit(&b, "Connection: keep-alive\r\n");
	hb_lit(&b, "\r\n");
	if (!b.ok)
		return -1;
	x->hlen = b.len;
	x->hoff = 0;
	return 0;
}

/* A complete response head of `len` bytes is at the front of u->buf. */
static int
start_response(struct exchange *x, const struct http1_response *res,
    int len)
{
	struct conn *c = x->c;
	struct worker *w = c->w;
	struct upconn *u = x->u;
	bool no_body = (x->flags & XF_HEAD) || res->status == 204 ||
	    res->status == 304;

	if (!(x->flags & XF_REQ_DONE) || x->hoff < x->hlen) {
		/* The upstream answered before taking the whole request: the
		 * rest of the body is not read, so neither side is reusable. */
		x->flags |= XF_REQ_DONE | XF_UP_CLOSE;
		c->flags |= CF_CLOSE_AFTER | CF_UNREAD;
	}
	if (res->f.conn_close || res->minor_version == 0)
		x->flags |= XF_UP_CLOSE;
	if (!(x->flags & XF_KEEPALIVE) || w->draining)
		c->flags |= CF_CLOSE_AFTER;
	if (no_body) {
		x->resp_left = 0;
	} else if (res->f.chunked) {
		if (x->flags & XF_HTTP10) {
			x->flags |= XF_RESP_DECHUNK;
			c->flags |= CF_CLOSE_AFTER;
		} else {
			x->flags |= XF_RESP_CHUNKED;
		}
	} else if (res->f.content_length >= 0) {
		x->resp_left = res->f.content_length;
	} else {
		x->flags |= XF_RESP_EOF | XF_UP_CLOSE;
		c->flags |= CF_CLOSE_AFTER;
	}
	x->status = res->status;
	if (build_response_head(x, res) < 0)
		return -1;
	x->out[0].iov_base = x->hbuf;
	x->out[0].iov_len = x->hlen;
	x->nout = 1;
	x->flags |= XF_RESP_HEAD | XF_SENT;
	x->resp_off = len;
	if (no_body || (!(x->flags & (XF_RESP_CHUNKED | XF_RESP_DECHUNK |
	    XF_RESP_EOF)) && x->resp_left == 0))
		x->flags |= XF_RESP_DONE;
	(void)u;
	return 0;
}

/* Queue the body bytes of u->buf[resp_off..len) that belong to the
 * response. 0, or -1 on an invalid chunked body. */
static int
queue_body(struct exchange *x)
{
	struct upconn *u = x->u;
	char *p = u->buf + x->resp_off;
	size_t avail = u->len - x->resp_off, take = 0, out = 0;
	bool done = false;
	ssize_t k;

	if (x->flags & XF_RESP_CHUNKED) {
		k = http1_chunked_scan(&x->resp_ck, p, avail, &done);
		if (k < 0 || x->resp_ck.trailer_bytes > x->c->w->resp_lim.head)
			return -1;
		take = out = k;
	} else if (x->flags & XF_RESP_DECHUNK) {
		k = http1_chunked_decode(&x->resp_ck, p, avail, &out, &done);
		if (k < 0)
			return -1;
		take = k;
	} else if (x->flags & XF_RESP_EOF) {
		take = out = avail;
	} else {
		take = out = avail < x->resp_left ? avail : x->resp_left;
		x->resp_left -= take;
		done = x->resp_left == 0;
	}
	if (done) {
		x->flags |= XF_RESP_DONE;
		if (take < avail)	/* bytes after the response: garbage */
			x->flags |= XF_UP_CLOSE;
	}
	if (out > 0) {
		x->out[x->nout].iov_base = p;
		x->out[x->nout++].iov_len = out;
	}
	x->resp_off += take;
	return 0;
}

static void
finish(struct exchange *x)
{
	struct conn *c = x->c;
	struct upconn *u = x->u;
	bool reuse = !(x->flags & XF_UP_CLOSE) && (x->flags & XF_REQ_DONE) &&
	    !(u->flags & UF_EOF) && x->resp_off == u->len;

	u->len = 0;
	x->u = NULL;
	if ((x->flags & XF_HEAD) || x->status == 204 || x->status == 304)
		u->flags |= UF_CHECK;
	upstream_release(u, reuse);
	conn_response_done(c);
}

/* Response side: upstream bytes to the client, reading the upstream only
 * when the client has taken everything queued (back-pressure). */
static void
relay_response(struct exchange *x)
{
	struct conn *c = x->c;
	struct worker *w = c->w;
	struct upconn *u = x->u;
	struct http1_response res;
	ssize_t n;
	int rc;

	for (;;) {
		if (u->len > 0 && !(x->flags & XF_RESP_HEAD)) {
			rc = http1_parse_response(u->buf, u->len, u->scanned,
			    &res, w->hdrs, &w->resp_lim);
			if (rc == HTTP1_INCOMPLETE) {
				u->scanned = u->len;
			} else if (rc < 0 || res.status == 101) {
				upstream_failed(x, UP_BAD);
				return;
			} else if (res.status < 200) {
				/* Interim responses are ours to absorb. */
				memmove(u->buf, u->buf + rc, u->len - rc);
				u->len -= rc;
				u->scanned = 0;
				continue;
			} else if (start_response(x, &res, rc) < 0) {
				upstream_failed(x, UP_BAD);
				return;
			}
		}
		/* Head and the body bytes already read leave in one write. */
		if ((x->flags & XF_RESP_HEAD) && !(x->flags & XF_RESP_DONE) &&
		    u->len > x->resp_off && x->nout < 2) {
			if (queue_body(x) < 0) {
				conn_close(c, "bad chunked response");
				return;
			}
		}
		if (x->nout > 0) {
			rc = conn_flush(c);
			if (rc <= 0)
				return;		/* blocked, or closed */
			if (x->resp_off == u->len)
				u->len = x->resp_off = 0;
			continue;
		}
		if (x->flags & XF_RESP_DONE) {
			finish(x);
			return;
		}
		if (!(u->flags & UF_CAN_READ))
			return;
		if (u->buf == NULL &&
		    (u->buf = pool_buf_get(w, BUF_UPSTREAM)) == NULL) {
			conn_close(c, "out of memory");
			return;
		}
		n = io_read(&u->io, u->buf + u->len, w->ubuf_size - u->len);
		if (n == IO_AGAIN) {
			u->flags &= ~UF_CAN_READ;
			return;
		}
		if (n <= 0) {
			if (x->flags & XF_RESP_EOF) {
				x->flags |= XF_RESP_DONE;
				continue;
			}
			if (x->flags & XF_SENT) {
				conn_close(c, "upstream closed mid-response");
				return;
			}
			upstream_failed(x, u->len == 0 ? UP_RESET : UP_BAD);
			return;
		}
		if ((size_t)n < w->ubuf_size - u->len && !(u->flags & UF_EOF))
			u->flags &= ~UF_CAN_READ;
		u->len += n;
		x->up_since_ms = w->loop.now_ms;
	}
}

/* The access-log reason and the error-log words for a failure. */
static const char *
fail_reason(const struct exchange *x, enum up_fail why, char *msg,
    size_t cap)
{
	unsigned t = svc_cfg(x)->timeout_ms;

	switch (why) {
	case UP_CONNECT:
		snprintf(msg, cap, "connect failed");
		return "upstream_connect_failed";
	case UP_CONNECT_TIMEOUT:
		snprintf(msg, cap, "no connection within %u ms (upstream "
		    "stalled)", svc_cfg(x)->connect_timeout_ms);
		return "upstream_connect_timeout";
	case UP_RESET:
		snprintf(msg, cap, "connection reset");
		return "upstream_reset";
	case UP_BAD:
		snprintf(msg, cap, "invalid response");
		return "upstream_bad_response";
	case UP_TIMEOUT:
		break;
	}
	switch (x->up_wait) {
	case UW_SEND:
		snprintf(msg, cap, "took no request bytes for %u ms (upstream "
		    "stalled)", t);
		return "upstream_send_timeout";
	case UW_BODY:
		snprintf(msg, cap, "sent no response bytes for %u ms "
		    "(upstream stalled)", t);
		return "upstream_read_timeout";
	default:
		snprintf(msg, cap, "no response head within %u ms (upstream "
		    "stalled)", t);
		return "upstream_head_timeout";
	}
}

static void
upstream_failed(struct exchange *x, enum up_fail why)
{
	struct conn *c = x->c;
	struct upconn *u = x->u;
	const struct cfg_service *sc = svc_cfg(x);
	bool reused = u != NULL && (u->flags & UF_REUSED);
	/* Only what can be sent again whole: no body (its bytes are gone
	 * once sent), no response byte relayed. */
	bool replayable = (x->flags & XF_IDEMPOTENT) &&
	    !(x->flags & (XF_HAS_BODY | XF_SENT));
	char msg[96];

	x->reason = fail_reason(x, why, msg, sizeof(msg));
	if (u != NULL) {
		log_warn("upstream %s (%s): %s", u->inst->addr->text, sc->name,
		    msg);
		x->u = NULL;
		upstream_close(u);
	}
	if (x->flags & XF_SENT) {
		conn_close(c, "upstream failed mid-response");
		return;
	}
	/* A stale pooled connection is not the instance's fault: resend
	 * without spending the retry budget, once in the request's life. */
	if (reused && why == UP_RESET && replayable &&
	    !(x->flags & XF_RESENT)) {
		x->attempts--;
		x->flags |= XF_RESENT;
	}
	if (replayable && (why == UP_CONNECT || why == UP_CONNECT_TIMEOUT ||
	    why == UP_RESET) && x->attempts <= sc->retries) {
		x->flags &= ~XF_REQ_DONE;
		x->reason = NULL;
		if (connect_next(x) == 0)
			proxy_run(x);
		return;
	}
	/* The client connection survives unless body bytes are unread. */
	if (why == UP_TIMEOUT || why == UP_CONNECT_TIMEOUT)
		conn_respond(c, 504, "upstream_timeout", NULL,
		    body_pending(x) || x->req_ready > 0);
	else
		conn_respond(c, 502, why == UP_BAD ? "bad_gateway" :
		    "upstream_unavailable", NULL,
		    body_pending(x) || x->req_ready > 0);
}

void
proxy_run(struct exchange *x)
{
	struct conn *c = x->c;
	struct upconn *u = x->u;
	int err = 0;
	socklen_t len = sizeof(err);

	if (u->state == US_CONNECTING) {
		if (!(u->flags & (UF_CAN_WRITE | UF_CAN_READ))) {
			up_timer_sync(x);
			return;
		}
		if (getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0
		    || err != 0) {
			errno = err;
			upstream_failed(x, UP_CONNECT);
			return;
		}
		u->state = US_ACTIVE;
	}
	send_request(x);
	if ((c->flags & CF_DEAD) || c->x != x || x->u == NULL)
		return;
	relay_response(x);
	if (!(c->flags & CF_DEAD) && c->x == x && x->u != NULL)
		up_timer_sync(x);
}

void
proxy_abort(struct exchange *x)
{
	struct upconn *u = x->u;

	if (u == NULL)
		return;
	x->u = NULL;
	upstream_close(u);
}

void
proxy_upstream_event(struct loop *l, struct loop_fd *f, uint32_t ev)
{
	struct upconn *u = f->data;
	struct conn *c;

	(void)l;
	if (u->flags & UF_DEAD)
		return;
	if (u->state == US_IDLE) {
		/* The upstream closed (or spoke out of turn) on an idle
		 * pooled connection: it cannot be used any more. */
		if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
			upstream_close(u);
			return;
		}
		if (ev & EPOLLOUT)
			u->flags |= UF_CAN_WRITE;
		return;
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->flags |= UF_CAN_READ;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		u->flags |= UF_CAN_WRITE;
	if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->flags |= UF_EOF;
	c = u->x->c;
	conn_run(c);
}

void
proxy_upstream_timeout(struct loop *l, struct loop_timer *t)
{
	struct upconn *u = t->data;
	struct exchange *x = u->x;
	struct conn *c;
	uint64_t d;

	if (u->state == US_IDLE || x == NULL) {
		upstream_close(u);
		return;
	}
	if (x->up_wait == UW_NONE)
		return;		/* waiting on the client: its timer rules */
	d = up_deadline(x);
	if (l->now_ms < d) {
		loop_timer_set(l, t, d - l->now_ms);
		return;
	}
	c = x->c;
	upstream_failed(x, x->up_wait == UW_CONNECT ? UP_CONNECT_TIMEOUT :
	    UP_TIMEOUT);
	if (!(c->flags & CF_DEAD))
		conn_run(c);
}
