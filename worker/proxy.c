#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../master/log.h"
#include "../policies/trace.h"
#include "conn.h"
#include "exchange.h"
#include "head.h"
#include "metrics.h"
#include "pool.h"
#include "proxy.h"
#include "resilience.h"
#include "upclient.h"
#include "upstream.h"

static bool
body_pending(const struct exchange *x)
{
	return x->req_left > 0 || (x->flags & XF_REQ_CHUNKED);
}

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

/* Whether the upstream gets the body chunked: the client sent it so, or
 * request body filters may change its length. */
static bool
up_chunked(const struct exchange *x)
{
	unsigned i;

	if (x->req_f.chunked)
		return true;
	for (i = 0; i < x->ctx.nreq_filters; i++)
		if (!x->ctx.req_filter[i].same_length)
			return x->req_f.content_length > 0;
	return false;
}

/* Why build_request_head refused; each maps to a client status. */
#define HEAD_TOO_LONG		(-1)	/* 431 */
#define HEAD_TOO_MANY_TOKENS	(-2)	/* 400 */
#define HEAD_UNDERSCORE		(-3)	/* 400 (underscores_in_headers) */

/* The upstream request head, into uc->hbuf (the exchange's own upstream
 * client, or a background fetch's). 0 or a HEAD_* code. */
static int
build_request_head(struct exchange *x, struct upclient *uc)
{
	struct conn *c = x->c;
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	const struct xctx *cx = &x->ctx;
	struct hb b = { uc->hbuf, 0, w->hbuf_size, true };
	struct conn_tokens ct;
	const struct http1_header *xff[8];
	unsigned nxff = 0, i;
	bool trusted = config_trusted(&cfg->server, c->peer.family,
	    c->peer.addr);
	char peer[INET6_ADDRSTRLEN];
	size_t k, plen;

	if (head_conn_tokens(cx->headers, cx->nheaders,
	    x->req_f.has_connection, &ct) < 0)
		return HEAD_TOO_MANY_TOKENS;
	hb_put(&b, cx->method_text, cx->method_len);
	hb_lit(&b, " ");
	hb_put(&b, x->up_path, x->up_path_len);
	if (cx->query != NULL)
		hb_put(&b, cx->query, cx->query_len);
	hb_lit(&b, " HTTP/1.1\r\n");
	for (k = 0; k < cx->nheaders; k++) {
		const struct http1_header *h = &cx->headers[k];
		/* A backend may fold X_User_ID into X-User-ID, or
		 * Transfer_Encoding into framing: drop (or refuse) them. */
		if (memchr(h->name, '_', h->name_len) != NULL) {
			if (cfg->server.refuse_underscores)
				return HEAD_UNDERSCORE;
			continue;
		}
		if (head_hop_by_hop(h, &ct) ||
		    http1_header_is(h, "content-length") ||
		    http1_header_is(h, "expect"))
			continue;
		if (http1_header_is(h, "x-forwarded-for")) {
			if (trusted && nxff < 8)
				xff[nxff++] = h;
			continue;
		}
		/* The client's trace context never passes as it came: the
		 * gateway sends its own traceparent (a span for this hop),
		 * and tracestate only with a valid traceparent. */
		if (http1_header_is(h, "x-forwarded-proto") ||
		    http1_header_is(h, "x-forwarded-host") ||
		    http1_header_is(h, "traceparent") ||
		    (!cx->tracestate_ok && http1_header_is(h, "tracestate")) ||
		    is_gateway_header(w, h) ||
		    head_edited_away(h, &cx->edits))
			continue;
		hb_header(&b, h->name, h->name_len, h->value, h->value_len);
	}
	if (cx->host == NULL) {
		/* HTTP/1.0 without Host: name the service, as 1.1 needs. */
		hb_lit(&b, "Host: ");
		hb_put(&b, cx->route != NULL ? cfg->services[cx->route->service]
		    .name : "localhost", strlen(cx->route != NULL ?
		    cfg->services[cx->route->service].name : "localhost"));
		hb_lit(&b, "\r\n");
	}
	if (up_chunked(x)) {
		hb_lit(&b, "Transfer-Encoding: chunked\r\n");
	} else if (x->req_f.content_length >= 0) {
		hb_lit(&b, "Content-Length: ");
		hb_u64(&b, (uint64_t)x->req_f.content_length);
		hb_lit(&b, "\r\n");
	}
	hb_lit(&b, "X-Forwarded-For: ");
	for (i = 0; i < nxff; i++) {
		hb_put(&b, xff[i]->value, xff[i]->value_len);
		hb_lit(&b, ", ");
	}
	plen = conn_peer_text(c, peer, sizeof(peer));
	hb_put(&b, peer, plen);
	if (c->io.ssl != NULL)
		hb_lit(&b, "\r\nX-Forwarded-Proto: https\r\n");
	else
		hb_lit(&b, "\r\nX-Forwarded-Proto: http\r\n");
	if (cx->host != NULL)
		hb_header(&b, "X-Forwarded-Host", 16, cx->host, cx->host_len);
	hb_header(&b, cfg->server.trace_header, w->trace_hdr_len, cx->trace,
	    cx->trace_len);
	hb_header(&b, "traceparent", 11, cx->traceparent, TRACEPARENT_LEN);
	hb_edits(&b, &cx->edits);
	hb_lit(&b, "\r\n");
	if (!b.ok)
		return HEAD_TOO_LONG;
	uc->hlen = b.len;
	uc->hoff = 0;
	return 0;
}

/* ---- the request body ------------------------------------------- */

/* Feed newly assigned body bytes c->in[from, req_ready) (decoded) to the
 * request filters; their output, framed for the upstream, replaces them
 * in x->rout. 0 or -1. */
static int
filter_request(struct exchange *x, uint32_t from, bool last)
{
	struct conn *c = x->c;
	struct xctx *cx = &x->ctx;
	struct obuf a = { 0 }, bb = { 0 }, *out;
	const char *in = c->in + from;
	size_t n = x->req_ready - from;
	unsigned i;
	char size[24];
	int k, rc = -1;

	for (i = 0; i < cx->nreq_filters; i++) {
		struct body_filter *f = &cx->req_filter[i];
		out = (i % 2 == 0) ? &a : &bb;
		out->len = 0;
		if (f->feed(cx, f->arg, in, n, last, out) < 0)
			goto done;
		in = out->p;
		n = out->len;
	}
	if (up_chunked(x)) {
		if (n > 0) {
			k = snprintf(size, sizeof(size), "%zx\r\n", n);
			if (obuf_put(&x->rout, size, k) < 0 ||
			    obuf_put(&x->rout, in, n) < 0 ||
			    obuf_put(&x->rout, "\r\n", 2) < 0)
				goto done;
		}
		if (last && obuf_put(&x->rout, "0\r\n\r\n", 5) < 0)
			goto done;
	} else if (n > 0 && obuf_put(&x->rout, in, n) < 0) {
		goto done;
	}
	/* The client's bytes are consumed; the output goes instead. */
	memmove(c->in + from, c->in + x->req_ready, c->in_len - x->req_ready);
	c->in_len -= x->req_ready - from;
	x->req_ready = from;
	rc = 0;
done:
	free(a.p);
	free(bb.p);
	return rc;
}

/* Bytes of the request body now in c->in, assigned once. Request
 * trailers are dropped (RFC 9110 6.5.1 lets a proxy discard them): none
 * reaches the upstream, but they count against the head's limits.
 * 0, or -400 / -413 / -431 / -500. */
static int
assign_body(struct exchange *x)
{
	struct conn *c = x->c;
	const struct cfg_limits *lim = &c->w->cfg->server.limits;
	struct http1_chunked *ck = &x->req_ck;
	uint32_t from = x->req_ready;
	bool done = false;
	size_t kept;
	ssize_t k;

	if (x->flags & XF_REQ_CHUNKED) {
		/* Filters get the decoded body (re-chunked after them);
		 * otherwise the chunks pass verbatim, trailers stripped. */
		if (x->ctx.nreq_filters > 0)
			k = http1_chunked_decode(ck, c->in + x->req_ready,
			    c->in_len - x->req_ready, &kept, &done);
		else
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
		x->bytes_in += (uint64_t)k;
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
		x->bytes_in += (uint64_t)k;
	}
	if (x->ctx.nreq_filters > 0 && !(x->flags & XF_REQ_FED) &&
	    (x->req_ready > from || !body_pending(x))) {
		if (!body_pending(x))
			x->flags |= XF_REQ_FED;
		if (filter_request(x, from, !body_pending(x)) < 0)
			return -500;
	}
	return 0;
}

static int
body_error(struct exchange *x, int rc)
{
	x->flags &= ~XF_UPSTREAM;
	return exchange_fail(x, -rc, rc == -413 ? "payload_too_large" :
	    rc == -431 ? "trailers_too_large" : rc == -500 ?
	    "request_filter_failed" : "bad_request", true);
}

/* Read body bytes from the client. 1 when some were assigned, 0 when
 * none can be read now, or CONN_GONE. */
static int
read_body(struct exchange *x)
{
	struct conn *c = x->c;
	struct worker *w = c->w;
	ssize_t n;
	int rc;

	if (!io_can_read(&c->io) || c->in_len == w->cbuf_size)
		return 0;
	n = io_read(&c->io, c->in + c->in_len, w->cbuf_size - c->in_len);
	if (n == IO_AGAIN)
		return 0;
	if (n <= 0) {
		conn_close(c, "client gone mid-body");
		return CONN_GONE;
	}
	c->in_len += n;
	metrics_bytes_in(w, n);
	c->active_ms = w->loop.now_ms;
	if ((rc = assign_body(x)) < 0)
		return body_error(x, rc) == CONN_GONE ? CONN_GONE : 0;
	return 1;
}

/* ---- upstream client callbacks ----------------------------------- */

static int
cb_body_avail(void *owner, const char **p, size_t *n)
{
	struct exchange *x = owner;
	struct conn *c = x->c;
	bool filtered = x->ctx.nreq_filters > 0;

	/* Nothing to send: read the client (it may have bytes without a new
	 * event, since the last read did not empty its socket). */
	if (body_pending(x) && (filtered ? x->rout.len == 0 :
	    x->req_ready == 0)) {
		if (read_body(x) == CONN_GONE || (c->flags & CF_DEAD) ||
		    c->x != x || !(x->flags & XF_UPSTREAM))
			return UC_STOP;
	}
	if (filtered) {
		*p = x->rout.p + x->roff;
		*n = x->rout.len - x->roff;
		return !body_pending(x) && (x->flags & XF_REQ_FED);
	}
	*p = c->in;
	*n = x->req_ready;
	return !body_pending(x);
}

static void
cb_body_sent(void *owner, size_t n)
{
	struct exchange *x = owner;
	struct conn *c = x->c;

	if (x->ctx.nreq_filters > 0) {
		x->roff += n;
		if (x->roff == x->rout.len)
			x->roff = x->rout.len = 0;
		return;
	}
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
	x->req_ready -= n;
}

static void
note_upstream(struct exchange *x)
{
	struct upclient *uc = &x->uc;

	if (uc->inst_last >= 0)
		x->up_addr = uc->svc->inst[uc->inst_last].addr->text;
	x->up_us = x->c->w->loop.now_us - uc->start_us;
}

static int
cb_head(void *owner, const struct http1_response *res)
{
	struct exchange *x = owner;
	struct conn *c = x->c;
	struct upclient *uc = &x->uc;
	struct resp_src s;
	int rc;

	note_upstream(x);
	/* Answered before the whole request was sent: the rest of the
	 * request body is never read, so the client connection ends. */
	if (!(uc->flags & UC_REQ_DONE) || body_pending(x) || x->req_ready > 0)
		c->flags |= CF_CLOSE_AFTER | CF_UNREAD;
	s.status = res->status;
	s.reason = res->reason;
	s.reason_len = res->reason_len;
	s.headers = res->headers;
	s.nheaders = res->num_headers;
	s.no_body = (uc->flags & UC_NO_BODY) != 0;
	s.chunked = (uc->flags & UC_CHUNKED) != 0;
	s.to_eof = (uc->flags & UC_TO_EOF) != 0;
	s.length = res->f.content_length;
	s.has_connection = res->f.has_connection;
	rc = exchange_resp_head(x, &s);
	return rc < 0 ? UC_STOP : 0;
}

static ssize_t
cb_body(void *owner, const char *p, size_t n, bool last)
{
	struct exchange *x = owner;
	ssize_t k = exchange_resp_body(x, p, n, last);

	return k < 0 ? UC_STOP : k;
}

static void
cb_done(void *owner)
{
	exchange_resp_done(owner);
}

static void
cb_failed(void *owner, enum up_fail why)
{
	struct exchange *x = owner;
	struct upclient *uc = &x->uc;
	bool close = body_pending(x) || x->req_ready > 0;
	const char *reason;

	note_upstream(x);
	x->ctx.reason = uc->reason;
	x->flags &= ~XF_UPSTREAM;
	if (uc->flags & UC_DELIVERED) {
		conn_close(x->c, "upstream failed mid-response");
		return;
	}
	conn_schedule(x->c);	/* the error goes out after this event */
	switch (why) {
	case UPF_TIMEOUT:
	case UPF_CONNECT_TIMEOUT:
		reason = "upstream_timeout";
		break;
	case UPF_BAD:
		reason = "bad_gateway";
		break;
	case UPF_UNAVAILABLE:
		/* Every instance open or down: said at once, with when to
		 * come back and which service it is (unless the cache has a
		 * stale answer to give). */
		x->err_service = uc->svc->cfg->name;
		x->retry_after_s = resilience_retry_after(x->c->w, uc->svc);
		reason = "service_unavailable";
		break;
	case UPF_OVERLOADED:
		x->err_service = uc->svc->cfg->name;
		x->retry_after_s = 1;
		reason = "service_overloaded";
		break;
	default:
		reason = "upstream_unavailable";
		break;
	}
	exchange_upstream_failed(x, upclient_fail_status(why), reason, close);
}

static const struct upclient_ops proxy_ops = {
	.body_avail = cb_body_avail,
	.body_sent = cb_body_sent,
	.head = cb_head,
	.body = cb_body,
	.done = cb_done,
	.failed = cb_failed,
};

/* ---- driving ----------------------------------------------------- */

static int
gone(const struct conn *c)
{
	return (c->flags & CF_DEAD) ? CONN_GONE : 0;
}

/* The path the upstream gets (the route's rewrite) in x->up_path. 0, or
 * -1 when the rewrite is too long. */
static int
upstream_path(struct exchange *x)
{
	struct worker *w = x->c->w;
	struct xctx *cx = &x->ctx;
	const struct cfg_route *r = cx->route;
	int rn;

	x->up_path = cx->path;
	x->up_path_len = cx->path_len;
	if (r->rewrite_re != NULL) {
		rn = route_rewrite(r, w->md, cx->path, cx->path_len,
		    w->rewrite_scratch, w->cfg->server.limits.header_bytes + 1);
		if (rn < 0)
			return -1;
		if (rn > 0) {
			x->up_path = w->rewrite_scratch;
			x->up_path_len = rn;
		}
	}
	return 0;
}

int
proxy_start(struct exchange *x)
{
	struct conn *c = x->c;
	struct worker *w = c->w;
	struct xctx *cx = &x->ctx;
	const struct cfg_route *r = cx->route;
	struct service_rt *s = &w->svc[r->service];
	struct upclient *uc = &x->uc;
	int rc;

	if (upstream_path(x) < 0)
		return exchange_error(c, 414, "uri_too_long", NULL, true);
	if ((uc->hbuf = pool_buf_get(w, BUF_HEAD)) == NULL) {
		conn_close(c, "out of memory");
		return CONN_GONE;
	}
	switch (build_request_head(x, uc)) {
	case 0:
		break;
	case HEAD_TOO_MANY_TOKENS:
		return exchange_error(c, 400, "too_many_connection_options",
		    NULL, true);
	case HEAD_UNDERSCORE:
		return exchange_error(c, 400, "underscore_in_header_name",
		    NULL, true);
	default:
		return exchange_error(c, 431, "header_too_large", NULL, true);
	}
	switch (cx->method) {
	case M_GET: case M_HEAD: case M_PUT: case M_DELETE: case M_OPTIONS:
	case M_TRACE:
		uc->flags |= UC_IDEMPOTENT;
		break;
	default:
		break;
	}
	if (body_pending(x))
		uc->flags |= UC_HAS_BODY;
	if (x->flags & XF_HEAD)
		uc->flags |= UC_HEAD_REQ;
	uc->hash = upstream_key_hash(s->cfg, c->peer.family, c->peer.addr,
	    cx->headers, cx->nheaders, cx->id.consumer, cx->id.consumer_len);
	/* The head now lives in uc->hbuf; drop it from the client buffer.
	 * What pointed into it (request headers, host) is gone with it. */
	memmove(c->in, c->in + x->head_len, c->in_len - x->head_len);
	c->in_len -= x->head_len;
	x->head_len = 0;
	c->scanned = 0;
	cx->headers = NULL;
	cx->nheaders = 0;
	cx->host = NULL;
	cx->method_text = NULL;
	if ((rc = assign_body(x)) < 0)
		return body_error(x, rc);
	/* Answer Expect: 100-continue ourselves (as nginx does) when the
	 * body has not started: the upstream never sees the Expect. */
	if (x->req_f.expect_continue && c->in_len == 0 && body_pending(x) &&
	    exchange_interim(x, "HTTP/1.1 100 Continue\r\n\r\n") ==
	    CONN_GONE)
		return CONN_GONE;
	c->active_ms = w->loop.now_ms;
	loop_timer_set(&w->loop, &c->timer,
	    w->cfg->server.limits.idle_timeout_ms);
	x->flags |= XF_UPSTREAM;
	uc->trace = cx->trace;
	upclient_start(uc, w, s, &proxy_ops, x);
	return gone(c);
}

int
proxy_run(struct exchange *x)
{
	struct conn *c = x->c;
	struct upclient *uc = &x->uc;

	/* Request side: the client has bytes and the upstream waits for
	 * them (read inside, with back-pressure). */
	if ((x->flags & XF_UPSTREAM) && upclient_waits_on_owner(uc) &&
	    io_can_read(&c->io)) {
		upclient_kick(uc);
		if (c->flags & CF_DEAD)
			return CONN_GONE;
		if (c->x != x)
			return 0;
	}
	/* Response side: the client has room again. */
	if ((x->flags & XF_UPSTREAM) && (uc->flags & UC_PAUSED) &&
	    io_can_write(&c->io)) {
		upclient_resume(uc);
		return gone(c);
	}
	return 0;
}

/* ---- background fetches ------------------------------------------ */

/* A fetch outlives its exchange; the worker keeps them in a list so that
 * a stopping worker ends them (and their owners hear of it). */
struct bgfetch {
	struct upclient uc;
	struct xfetch f;
	struct bgfetch *prev, *next;
};

static void
fetch_end(struct bgfetch *b, bool ok)
{
	struct worker *w = b->uc.w;
	struct xfetch f = b->f;

	if (b->prev != NULL)
		b->prev->next = b->next;
	else
		w->fetches = b->next;
	if (b->next != NULL)
		b->next->prev = b->prev;
	free(b);
	f.done(f.arg, ok);
}

static int
fb_head(void *owner, const struct http1_response *res)
{
	struct bgfetch *b = owner;

	if (b->uc.flags & UC_CHUNKED)
		b->uc.flags |= UC_DECODE;
	if (b->f.head(b->f.arg, res->status, res->headers,
	    res->num_headers) < 0) {
		upclient_abort(&b->uc);
		fetch_end(b, false);
		return UC_STOP;
	}
	return 0;
}

static ssize_t
fb_body(void *owner, const char *p, size_t n, bool last)
{
	struct bgfetch *b = owner;

	if (b->f.body(b->f.arg, p, n, last) < 0) {
		upclient_abort(&b->uc);
		fetch_end(b, false);
		return UC_STOP;
	}
	return (ssize_t)n;
}

static void
fb_done(void *owner)
{
	fetch_end(owner, true);
}

static void
fb_failed(void *owner, enum up_fail why)
{
	(void)why;
	fetch_end(owner, false);
}

static const struct upclient_ops fetch_ops = {
	.head = fb_head,
	.body = fb_body,
	.done = fb_done,
	.failed = fb_failed,
};

int
proxy_fetch(struct exchange *x, const struct xfetch *f)
{
	struct conn *c = x->c;
	struct worker *w = c->w;
	struct xctx *cx = &x->ctx;
	struct service_rt *s;
	struct bgfetch *b;

	/* Only a request that is all head can be sent twice. */
	if (cx->route == NULL || cx->route->service < 0 ||
	    cx->headers == NULL || x->req_left > 0 ||
	    (x->flags & XF_REQ_CHUNKED) || upstream_path(x) < 0)
		return -1;
	s = &w->svc[cx->route->service];
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return -1;
	if ((b->uc.hbuf = pool_buf_get(w, BUF_HEAD)) == NULL ||
	    build_request_head(x, &b->uc) != 0) {
		if (b->uc.hbuf != NULL)
			pool_buf_put(w, BUF_HEAD, b->uc.hbuf);
		free(b);
		return -1;
	}
	b->f = *f;
	b->uc.flags = UC_IDEMPOTENT;
	if (x->flags & XF_HEAD)
		b->uc.flags |= UC_HEAD_REQ;
	b->uc.hash = upstream_key_hash(s->cfg, c->peer.family, c->peer.addr,
	    cx->headers, cx->nheaders, cx->id.consumer, cx->id.consumer_len);
	b->next = w->fetches;
	if (b->next != NULL)
		b->next->prev = b;
	w->fetches = b;
	upclient_start(&b->uc, w, s, &fetch_ops, b);
	return 0;
}

void
proxy_fetch_stop_all(struct worker *w)
{
	while (w->fetches != NULL) {
		upclient_abort(&w->fetches->uc);
		fetch_end(w->fetches, false);
	}
}
