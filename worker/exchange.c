#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../master/log.h"
#include "../policies/trace.h"
#include "aggregate.h"
#include "conn.h"
#include "exchange.h"
#include "head.h"
#include "metrics.h"
#include "pool.h"
#include "proxy.h"
#include "upclient.h"

static int local_response(struct exchange *x, unsigned upto);
static void pin_request(struct exchange *x);

/* ---- waiting policies -------------------------------------------- */

static void
wait_fire(struct loop *l, struct loop_timer *t)
{
	struct exchange *x = t->data;
	struct conn *c = x->c;

	(void)l;
	if (!(x->flags & XF_PENDING))
		return;
	x->flags &= ~(XF_PENDING | XF_RESUME);
	x->ctx.now_ms = c->w->loop.now_ms;
	if (exchange_run(x) == CONN_GONE)
		return;
	conn_run(c);
}

static int
ops_wait(struct xctx *cx, uint64_t ms)
{
	struct exchange *x = XCTX_EXCHANGE(cx);

	loop_timer_set(&x->c->w->loop, &x->wait_timer, ms);
	return 0;
}

static void
ops_resume(struct xctx *cx)
{
	struct exchange *x = XCTX_EXCHANGE(cx);

	if (!(x->flags & XF_PENDING) || (x->flags & XF_RESUME))
		return;
	/* From the loop, never inside the caller's own event. */
	x->flags |= XF_RESUME;
	loop_timer_set(&x->c->w->loop, &x->wait_timer, 0);
}

static int
ops_fetch(struct xctx *cx, const struct xfetch *f)
{
	return proxy_fetch(XCTX_EXCHANGE(cx), f);
}

static const struct xctx_ops xops = { ops_wait, ops_resume, ops_fetch };

/* ---- life ---------------------------------------------------------- */

static struct exchange *
exchange_new(struct conn *c)
{
	struct worker *w = c->w;
	struct exchange *x = pool_exchange_get(w);

	if (x == NULL)
		return NULL;
	x->c = c;
	arena_init(&x->ctx.arena, &w->arenas);
	x->ctx.cfg = w->cfg;
	x->ctx.route_index = -1;
	x->ctx.peer_family = c->peer.family;
	x->ctx.peer_addr = c->peer.addr;
	x->ctx.now_ms = w->loop.now_ms;
	x->ctx.resp_extra = x->extra;
	x->ctx.resp_extra_cap = sizeof(x->extra);
	x->ctx.ops = &xops;
	x->ctx.stats = w->stats;
	x->wait_timer.cb = wait_fire;
	x->wait_timer.data = x;
	x->start_us = w->loop.now_us;
	c->x = x;
	return x;
}

static uint16_t
copy_text(char *out, size_t cap, const char *p, size_t len)
{
	if (len > cap)
		len = cap;
	memcpy(out, p, len);
	return len;
}

/* The access log's target: PATH, then the query (from its '?') with
 * credentials redacted. */
static uint16_t
log_target(struct exchange *x, const char *path, size_t plen,
    const char *q, size_t qlen)
{
	return (uint16_t)accesslog_target(x->c->w->alog, path, plen,
	    q != NULL ? q + 1 : NULL, q != NULL ? qlen - 1 : 0, x->logpath,
	    sizeof(x->logpath));
}

/* A raw request-target split at its '?'. */
static uint16_t
log_raw_target(struct exchange *x, const char *t, size_t len)
{
	const char *q = memchr(t, '?', len);

	return log_target(x, t, q != NULL ? (size_t)(q - t) : len, q,
	    q != NULL ? len - (size_t)(q - t) : 0);
}

/* One access-log line; STATUS 0 = the exchange's own status. */
static void
log_line(struct exchange *x, int status)
{
	struct conn *c = x->c;
	struct worker *w = c->w;
	const struct xctx *cx = &x->ctx;
	const struct upclient *uc = &x->uc;
	struct accesslog_entry e;
	char remote[64];

	if (w->alog == NULL || !(x->flags & XF_LOG))
		return;
	conn_peer_text(c, remote, sizeof(remote));
	e.client_ip = remote;
	e.method = x->method_text;
	e.method_len = x->method_len;
	e.target = x->logpath;
	e.target_len = x->logpath_len;
	e.minor_version = x->minor_version;
	e.status = status ? status : x->status;
	e.bytes_in = x->bytes_in;
	e.bytes_out = x->bytes_out;
	e.duration_us = w->loop.now_us - x->start_us;
	e.route = cx->route != NULL ? cx->route->name : NULL;
	/* An aggregate route has no service of its own (index -1). */
	e.service = cx->route != NULL && cx->route->service >= 0 ?
	    w->cfg->services[cx->route->service].name : NULL;
	e.upstream = x->up_addr;
	e.upstream_us = x->up_addr != NULL ? x->up_us : ACCESSLOG_NO_TIME;
	if (e.upstream == NULL && uc->svc != NULL && uc->inst_last >= 0) {
		/* Still waiting on the upstream when the client left. */
		e.upstream = uc->svc->inst[uc->inst_last].addr->text;
		e.upstream_us = w->loop.now_us - uc->start_us;
	}
	e.trace = cx->trace;
	e.reason = cx->reason;
	e.cache = cx->cache;
	e.ratelimit = cx->ratelimit;
	e.consumer = cx->id.consumer;
	e.consumer_len = cx->id.consumer_len;
	e.user_agent = x->ua_len ? x->ua : NULL;
	e.user_agent_len = x->ua_len;
	e.referer = x->referer_len ? x->referer : NULL;
	e.referer_len = x->referer_len;
	accesslog_write(w->alog, &e);
	x->flags &= ~XF_LOG;
}

/*
 * A request refused before its head was parsed (400, 408, 414, 431, 505)
 * is logged like any other, with what its first line shows: the method
 * when it is a token, the target up to the query, the version.
 */
static void
log_partial(struct exchange *x)
{
	struct conn *c = x->c;
	const char *p = c->in, *e, *t, *te;
	size_t m;

	if (c->w->alog == NULL)
		return;
	x->flags |= XF_LOG;
	x->minor_version = 1;
	x->bytes_in = c->in_len;
	x->method_len = copy_text(x->method_text, 1, "-", 1);
	x->logpath_len = copy_text(x->logpath, 1, "-", 1);
	if (p == NULL || c->in_len == 0)
		return;
	e = p + c->in_len;
	for (m = 0; p + m < e && m < sizeof(x->method_text) &&
	    p[m] > ' ' && p[m] < 0x7f; m++)
		;
	if (m == 0 || p + m == e || p[m] != ' ')
		return;
	x->method_len = copy_text(x->method_text, sizeof(x->method_text), p,
	    m);
	t = p + m + 1;
	for (te = t; te < e && *te != ' ' && *te != '\r' && *te != '\n'; te++)
		;
	if (te > t)
		x->logpath_len = log_raw_target(x, t, te - t);
	if (e - te >= 9 && memcmp(te, " HTTP/1.0", 9) == 0)
		x->minor_version = 0;
}

void
exchange_release(struct conn *c)
{
	struct exchange *x = c->x;
	struct worker *w = c->w;

	if (x == NULL)
		return;
	/* Still unlogged here: the client went away before it got a byte
	 * of its response (499, as nginx), or was cut mid-response (the
	 * status it was getting, with the reason). */
	log_line(x, x->bytes_out > 0 && x->status ? 0 : 499);
	metrics_exchange(w, x);
	if (x->ctx.route_index >= 0)
		policy_run_done(&w->chains[x->ctx.route_index], &x->ctx,
		    x->ran);
	loop_timer_cancel(&w->loop, &x->wait_timer);
	upclient_abort(&x->uc);
	aggregate_release(x);
	if (x->uc.hbuf != NULL) {
		pool_buf_put(w, BUF_HEAD, x->uc.hbuf);
		x->uc.hbuf = NULL;
	}
	if (x->hbuf != NULL) {
		pool_buf_put(w, BUF_HEAD, x->hbuf);
		x->hbuf = NULL;
	}
	if (x->sbuf != NULL) {
		pool_buf_put(w, BUF_UPSTREAM, x->sbuf);
		x->sbuf = NULL;
	}
	if (x->fout.p != NULL || x->fmid.p != NULL || x->rout.p != NULL) {
		free(x->fout.p);
		free(x->fmid.p);
		free(x->rout.p);
	}
	arena_reset(&x->ctx.arena);
	x->flags |= XF_DEAD;
	pool_exchange_dead(w, x);
	c->x = NULL;
}

/* ---- the response writer ----------------------------------------- */

static bool
out_pending(const struct exchange *x)
{
	return (x->hoff < x->hlen && !(x->flags & XF_HOLD)) ||
	    x->foff < x->fout.len;
}

/* Write what the exchange owns (head, framed filter output) and then
 * EXTRA[0..n) (zero-copy body bytes), in one write. Returns the bytes of
 * EXTRA written, or CONN_GONE. */
static ssize_t
write_out(struct exchange *x, const char *extra, size_t n)
{
	struct conn *c = x->c;
	struct iovec iov[3];
	size_t k, part;
	ssize_t w;
	int cnt = 0;

	if (x->flags & XF_HOLD)
		return 0;	/* nothing goes before the head */
	if (x->hoff < x->hlen) {
		iov[cnt].iov_base = x->hbuf + x->hoff;
		iov[cnt++].iov_len = x->hlen - x->hoff;
	}
	if (x->foff < x->fout.len) {
		iov[cnt].iov_base = x->fout.p + x->foff;
		iov[cnt++].iov_len = x->fout.len - x->foff;
	}
	if (n > 0 && cnt < 3) {
		iov[cnt].iov_base = (void *)extra;
		iov[cnt++].iov_len = n;
	}
	if (cnt == 0 || !io_can_write(&c->io))
		return 0;
	w = io_writev(&c->io, iov, cnt);
	if (w == IO_AGAIN)
		return 0;
	if (w < 0) {
		conn_close(c, "write failed");
		return CONN_GONE;
	}
	c->active_ms = c->w->loop.now_ms;
	x->bytes_out += w;
	k = (size_t)w;
	part = x->hlen - x->hoff;
	if (part > 0) {
		part = k < part ? k : part;
		x->hoff += part;
		k -= part;
		if (x->hoff == x->hlen)
			x->hoff = x->hlen = 0;
	}
	part = x->fout.len - x->foff;
	if (part > 0) {
		part = k < part ? k : part;
		x->foff += part;
		k -= part;
		if (x->foff == x->fout.len)
			x->foff = x->fout.len = 0;
	}
	return (ssize_t)k;
}

/* Flush the owned output. 1 when all written, 0 when blocked, or
 * CONN_GONE. */
static int
flush_out(struct exchange *x)
{
	while (out_pending(x)) {
		if (!io_can_write(&x->c->io))
			return 0;
		if (write_out(x, NULL, 0) == CONN_GONE)
			return CONN_GONE;
	}
	return 1;
}

/* Room at the end of hbuf for a head, after output not yet written. */
static int
hbuf_open(struct exchange *x, struct hb *b)
{
	struct worker *w = x->c->w;

	if (x->hbuf == NULL && (x->hbuf = pool_buf_get(w, BUF_HEAD)) == NULL)
		return -1;
	if (x->hoff > 0) {
		memmove(x->hbuf, x->hbuf + x->hoff, x->hlen - x->hoff);
		x->hlen -= x->hoff;
		x->hoff = 0;
	}
	b->p = x->hbuf + x->hlen;
	b->len = 0;
	b->cap = w->hbuf_size - x->hlen;
	b->ok = true;
	return 0;
}

/* The Connection line the client gets, and our own decision. */
static void
hb_connection(struct exchange *x, struct hb *b)
{
	struct conn *c = x->c;

	if (!(x->flags & XF_KEEPALIVE) || c->w->draining)
		c->flags |= CF_CLOSE_AFTER;
	if (c->flags & CF_CLOSE_AFTER)
		hb_lit(b, "Connection: close\r\n");
	else if (x->flags & XF_HTTP10)
		hb_lit(b, "Connection: keep-alive\r\n");
}

/* Whether every response filter keeps the body's length. */
static bool
filters_keep_length(const struct xctx *cx)
{
	unsigned i;

	for (i = 0; i < cx->nresp_filters; i++)
		if (!cx->resp_filter[i].same_length)
			return false;
	return true;
}

/* Whether a filter emits only with the body's last bytes: then the whole
 * output is known before anything goes, and gets a Content-Length. */
static bool
filters_hold(const struct xctx *cx)
{
	unsigned i;

	for (i = 0; i < cx->nresp_filters; i++)
		if (cx->resp_filter[i].hold)
			return true;
	return false;
}

/* Decide the body's framing toward the client and write the head into
 * hbuf. -1 when it does not fit (or the upstream listed too many
 * Connection names). */
static int
build_head(struct exchange *x, const struct resp_src *s,
    const char *content_type)
{
	struct conn *c = x->c;
	struct worker *w = c->w;
	struct xctx *cx = &x->ctx;
	struct conn_tokens ct = { .n = 0 };
	struct hb b;
	size_t k;
	bool filtered = cx->nresp_filters > 0 && !s->no_body;

	if (s->headers != NULL && head_conn_tokens(s->headers, s->nheaders,
	    s->has_connection, &ct) < 0)
		return -1;
	if (hbuf_open(x, &b) < 0)
		return -1;
	hb_lit(&b, "HTTP/1.1 ");
	hb_u64(&b, s->status);
	hb_lit(&b, " ");
	if (s->reason != NULL)
		hb_put(&b, s->reason, s->reason_len);
	else
		hb_put(&b, http1_status_text(s->status),
		    strlen(http1_status_text(s->status)));
	hb_lit(&b, "\r\n");
	for (k = 0; k < s->nheaders; k++) {
		const struct http1_header *h = &s->headers[k];
		if (head_hop_by_hop(h, &ct) ||
		    http1_header_is(h, "content-length") ||
		    http1_name_eq(h->name, h->name_len,
		    w->cfg->server.trace_header, w->trace_hdr_len) ||
		    head_edited_away(h, &cx->resp_edits))
			continue;
		hb_header(&b, h->name, h->name_len, h->value, h->value_len);
	}
	if (content_type != NULL)
		hb_header(&b, "Content-Type", 12, content_type,
		    strlen(content_type));
	if (filtered)
		x->flags |= XF_FILTERED;
	/* The source's chunks pass through as they are only to an
	 * HTTP/1.1 client and with no filter; otherwise they are decoded. */
	if (s->chunked && (filtered || (x->flags & XF_HTTP10)))
		x->uc.flags |= UC_DECODE;
	if (s->no_body) {
		/* RFC 9110 8.6: never on a 204. */
		if (s->length >= 0 && s->status != 204) {
			hb_lit(&b, "Content-Length: ");
			hb_u64(&b, (uint64_t)s->length);
			hb_lit(&b, "\r\n");
		}
	} else if (filtered ? (s->length >= 0 && filters_keep_length(cx)) :
	    (!s->chunked && s->length >= 0)) {
		hb_lit(&b, "Content-Length: ");
		hb_u64(&b, (uint64_t)s->length);
		hb_lit(&b, "\r\n");
	} else if (filtered && filters_hold(cx)) {
		x->flags |= XF_HOLD;	/* Content-Length at the end */
	} else if (x->flags & XF_HTTP10) {
		c->flags |= CF_CLOSE_AFTER;	/* delimited by the close */
	} else if (filtered || s->chunked) {
		hb_lit(&b, "Transfer-Encoding: chunked\r\n");
		if (filtered)
			x->flags |= XF_CHUNK_OUT;
	} else {
		c->flags |= CF_CLOSE_AFTER;	/* to_eof, passed as it is */
	}
	hb_header(&b, w->cfg->server.trace_header, w->trace_hdr_len,
	    cx->trace, cx->trace_len);
	hb_edits(&b, &cx->resp_edits);
	hb_put(&b, cx->resp_extra, cx->resp_extra_len);
	hb_connection(x, &b);
	if (!(x->flags & XF_HOLD))
		hb_lit(&b, "\r\n");
	if (!b.ok)
		return -1;
	x->hlen += b.len;
	x->flags |= XF_RESP_HEAD | XF_SENT;
	return 0;
}

/* The held head gets its Content-Length and its end: the whole output
 * is in fout. -1 when it does not fit. */
static int
release_head(struct exchange *x)
{
	struct hb b = { x->hbuf + x->hlen, 0, x->c->w->hbuf_size - x->hlen,
	    true };

	hb_lit(&b, "Content-Length: ");
	hb_u64(&b, x->fout.len);
	hb_lit(&b, "\r\n\r\n");
	if (!b.ok)
		return -1;
	x->hlen += b.len;
	x->flags &= ~XF_HOLD;
	return 0;
}

int
exchange_resp_head(struct exchange *x, const struct resp_src *s)
{
	struct worker *w = x->c->w;
	struct xctx *cx = &x->ctx;

	x->status = s->status;
	cx->status = s->status;
	cx->resp_headers = s->headers;
	cx->resp_nheaders = s->nheaders;
	cx->resp_length = s->no_body ? 0 : s->chunked || s->to_eof ? -1 :
	    s->length;
	cx->now_ms = w->loop.now_ms;
	if (cx->route_index >= 0 && policy_run_response(
	    &w->chains[cx->route_index], cx, x->ran) == POLICY_RESPOND) {
		upclient_abort(&x->uc);
		x->flags &= ~XF_UPSTREAM;
		if (local_response(x, 0) == CONN_GONE)
			return CONN_GONE;
		return EXCH_REPLACED;
	}
	if (cx->status != s->status) {
		struct resp_src t = *s;
		t.status = cx->status;
		t.reason = NULL;
		x->status = t.status;
		if (build_head(x, &t, NULL) < 0)
			goto bad;
		return 0;
	}
	if (build_head(x, s, NULL) < 0)
		goto bad;
	return 0;
bad:
	upclient_abort(&x->uc);
	x->flags &= ~XF_UPSTREAM;
	if (exchange_fail(x, 502, "bad_gateway", false) == CONN_GONE)
		return CONN_GONE;
	return EXCH_REPLACED;
}

/* Append a chunk of the client's chunked framing around p[0..n). */
static int
frame_chunk(struct obuf *o, const char *p, size_t n)
{
	char size[24];
	int k;

	if (n == 0)
		return 0;
	k = snprintf(size, sizeof(size), "%zx\r\n", n);
	return obuf_put(o, size, k) < 0 || obuf_put(o, p, n) < 0 ||
	    obuf_put(o, "\r\n", 2) < 0 ? -1 : 0;
}

/* Feed p[0..n) through the filters into the framed output. 0, or -1 when
 * a filter fails or is fed past the bound it declared. */
static int
filter_body(struct exchange *x, const char *p, size_t n, bool last)
{
	struct xctx *cx = &x->ctx;
	struct obuf stage = { 0 }, *out;
	const char *in = p;
	size_t inlen = n;
	unsigned i, nf = cx->nresp_filters;
	int rc = -1;

	for (i = 0; i < nf; i++) {
		struct body_filter *f = &cx->resp_filter[i];
		x->fed[i] += inlen;
		if (f->max > 0 && x->fed[i] > f->max)
			goto done;
		out = i + 1 < nf ? &x->fmid : &stage;
		if (i + 1 == nf && !(x->flags & XF_CHUNK_OUT))
			out = &x->fout;		/* no framing: emit directly */
		if (f->feed(cx, f->arg, in, inlen, last, out) < 0)
			goto done;
		if (i + 1 < nf) {
			/* The next filter reads what this one emitted; a
			 * fresh buffer takes the next stage's output. */
			in = x->fmid.p;
			inlen = x->fmid.len;
			x->fmid.len = 0;
		}
	}
	if (x->flags & XF_CHUNK_OUT) {
		if (frame_chunk(&x->fout, stage.p, stage.len) < 0 ||
		    (last && obuf_put(&x->fout, "0\r\n\r\n", 5) < 0))
			goto done;
	}
	if (last && (x->flags & XF_HOLD) && release_head(x) < 0)
		goto done;
	rc = 0;
done:
	free(stage.p);
	return rc;
}

ssize_t
exchange_resp_body(struct exchange *x, const char *p, size_t n, bool last)
{
	ssize_t taken;
	int rc;

	if (x->flags & XF_FILTERED) {
		/* A filter takes everything once its last output is out. */
		if ((rc = flush_out(x)) != 1)
			return rc == CONN_GONE ? CONN_GONE : 0;
		if (filter_body(x, p, n, last) < 0) {
			x->ctx.reason = "body_filter_failed";
			upclient_abort(&x->uc);
			x->flags &= ~XF_UPSTREAM;
			if (exchange_fail(x, 502, "bad_gateway", false) ==
			    CONN_GONE)
				return CONN_GONE;
			return EXCH_REPLACED;
		}
		if (last)
			x->flags |= XF_RESP_LAST;
		if (flush_out(x) == CONN_GONE)
			return CONN_GONE;
		return (ssize_t)n;
	}
	/* Zero-copy: the owned output first, then p, in one write. */
	taken = 0;
	while (out_pending(x) || (size_t)taken < n) {
		ssize_t k = write_out(x, p + taken, n - taken);
		if (k == CONN_GONE)
			return CONN_GONE;
		taken += k;
		if (!io_can_write(&x->c->io))
			break;
	}
	if (last && (size_t)taken == n)
		x->flags |= XF_RESP_LAST;
	return taken;
}

int
exchange_resp_done(struct exchange *x)
{
	struct conn *c = x->c;
	int rc;

	x->flags |= XF_RESP_LAST;
	x->flags &= ~XF_UPSTREAM;
	if ((rc = flush_out(x)) != 1)
		return rc;
	return conn_response_done(c);
}

/* ---- the gateway's own responses --------------------------------- */

int
exchange_error(struct conn *c, int status, const char *error,
    const char *extra, bool close)
{
	struct worker *w = c->w;
	struct exchange *x = c->x;
	char body[512];
	int blen, n;
	struct hb b;

	if (x == NULL) {
		if ((x = exchange_new(c)) == NULL) {
			conn_close(c, "out of memory");
			return CONN_GONE;
		}
		trace_settle(&x->ctx, &w->trace_state, NULL, 0, NULL, 0, 0);
	}
	upclient_abort(&x->uc);
	aggregate_release(x);
	x->flags &= ~(XF_UPSTREAM | XF_FILTERED | XF_PENDING | XF_HOLD);
	loop_timer_cancel(&w->loop, &x->wait_timer);
	/* The request head is answered; drop it from the input. */
	if (x->head_len > 0 && x->head_len <= c->in_len) {
		memmove(c->in, c->in + x->head_len, c->in_len - x->head_len);
		c->in_len -= x->head_len;
		x->head_len = 0;
	}
	c->scanned = 0;
	if (close)
		c->flags |= CF_CLOSE_AFTER | CF_UNREAD;
	x->status = status;
	if (x->ctx.reason == NULL)
		x->ctx.reason = error;
	if (x->retry_after_s != 0) {
		xctx_resp_header(&x->ctx, "Retry-After", "%u",
		    x->retry_after_s);
		x->retry_after_s = 0;
	}
	if (hbuf_open(x, &b) < 0) {
		conn_close(c, "out of memory");
		return CONN_GONE;
	}
	blen = snprintf(body, sizeof(body),
	    "{\"error\":\"%s\",\"status\":%d%s%.255s%s,\"trace_id\":\"%s\"}\n",
	    error, status, x->err_service ? ",\"service\":\"" : "",
	    x->err_service ? x->err_service : "", x->err_service ? "\"" : "",
	    x->ctx.trace);
	if (!(x->flags & XF_KEEPALIVE) || w->draining)
		c->flags |= CF_CLOSE_AFTER;
	n = snprintf(b.p, b.cap,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %d\r\n"
	    "%s: %s\r\n"
	    "%.*s"
	    "%s"
	    "%s"
	    "\r\n",
	    status, http1_status_text(status), blen,
	    w->cfg->server.trace_header, x->ctx.trace,
	    (int)x->ctx.resp_extra_len, x->ctx.resp_extra,
	    extra ? extra : "",
	    (c->flags & CF_CLOSE_AFTER) ? "Connection: close\r\n" :
	    (x->flags & XF_HTTP10) ? "Connection: keep-alive\r\n" : "");
	if (n < 0 || (size_t)n + blen >= b.cap) {
		conn_close(c, "error response too long");
		return CONN_GONE;
	}
	if (!(x->flags & XF_HEAD)) {
		memcpy(b.p + n, body, blen);
		n += blen;
	}
	x->hlen += n;
	x->flags |= XF_SENT | XF_RESP_HEAD | XF_RESP_LAST | XF_LOCAL;
	c->state = CONN_BUSY;
	c->active_ms = w->loop.now_ms;
	if (!loop_timer_armed(&c->timer))
		loop_timer_set(&w->loop, &c->timer,
		    w->cfg->server.limits.idle_timeout_ms);
	return 0;
}

int
exchange_fail(struct exchange *x, int status, const char *error, bool close)
{
	if (x->bytes_out > 0) {
		/* The client has (part of) a response: too late for an
		 * error; cutting the connection is the only honest end. */
		conn_close(x->c, "response failed midway");
		return CONN_GONE;
	}
	/* A head built but not yet written is dropped for the error. */
	x->hlen = x->hoff = 0;
	x->fout.len = x->foff = 0;
	x->flags &= ~(XF_RESP_HEAD | XF_FILTERED | XF_CHUNK_OUT |
	    XF_RESP_LAST | XF_LOCAL | XF_HOLD);
	x->lbody = NULL;
	x->src = NULL;
	return exchange_error(x->c, status, error, NULL, close);
}

int
exchange_upstream_failed(struct exchange *x, int status, const char *error,
    bool close)
{
	struct worker *w = x->c->w;
	struct xctx *cx = &x->ctx;

	if (x->bytes_out == 0 && cx->route_index >= 0) {
		cx->status = status;
		cx->resp_headers = NULL;
		cx->resp_nheaders = 0;
		if (policy_run_upstream_error(&w->chains[cx->route_index], cx,
		    x->ran) == POLICY_RESPOND) {
			/* A head built for the upstream's response, if any,
			 * is dropped for the policy's answer. */
			x->hlen = x->hoff = 0;
			x->fout.len = x->foff = 0;
			x->flags &= ~(XF_RESP_HEAD | XF_FILTERED |
			    XF_CHUNK_OUT | XF_RESP_LAST | XF_LOCAL);
			cx->nresp_filters = 0;
			return local_response(x, 0);
		}
	}
	return exchange_fail(x, status, error, close);
}

int
exchange_interim(struct exchange *x, const char *text)
{
	struct hb b;
	size_t n = strlen(text);

	if (hbuf_open(x, &b) < 0) {
		conn_close(x->c, "out of memory");
		return CONN_GONE;
	}
	hb_put(&b, text, n);
	if (!b.ok) {
		conn_close(x->c, "interim response too long");
		return CONN_GONE;
	}
	x->hlen += n;
	return flush_out(x) == CONN_GONE ? CONN_GONE : 0;
}

/* A policy's full response (POLICY_RESPOND with a body or a source),
 * through the response hooks of the policies before it (UPTO). */
static int
local_response(struct exchange *x, unsigned upto)
{
	struct worker *w = x->c->w;
	struct xctx *cx = &x->ctx;
	struct xresp *r = &cx->resp;
	struct resp_src s = { 0 };

	if (r->body == NULL && r->source == NULL)
		return exchange_error(x->c, r->status, r->error != NULL ?
		    r->error : "refused", NULL,
		    x->req_left > 0 || (x->flags & XF_REQ_CHUNKED));
	s.status = r->status;
	s.headers = r->headers;
	s.nheaders = r->headers != NULL ? r->nheaders : 0;
	s.length = r->source != NULL ? (r->source->len == BODY_LEN_UNKNOWN ?
	    -1 : (int64_t)r->source->len) : (int64_t)r->body_len;
	s.no_body = (x->flags & XF_HEAD) || s.status == 204 ||
	    s.status == 304;
	x->lbody = r->body;
	x->lbody_len = r->body_len;
	x->lbody_off = 0;
	x->src = r->source;
	x->src_off = 0;
	x->flags |= XF_LOCAL;
	/* The request head is answered; drop it (and an unread body makes
	 * the connection end after). */
	if (x->head_len > 0 && x->head_len <= x->c->in_len) {
		memmove(x->c->in, x->c->in + x->head_len,
		    x->c->in_len - x->head_len);
		x->c->in_len -= x->head_len;
		x->head_len = 0;
	}
	if (x->req_left > 0 || (x->flags & XF_REQ_CHUNKED))
		x->c->flags |= CF_CLOSE_AFTER | CF_UNREAD;
	x->status = s.status;
	cx->status = s.status;
	cx->resp_headers = NULL;
	cx->resp_nheaders = 0;
	cx->resp_length = s.no_body ? 0 : s.length;
	if (cx->route_index >= 0 && upto > 0 && policy_run_response(
	    &w->chains[cx->route_index], cx, upto) == POLICY_RESPOND)
		return exchange_error(x->c, cx->resp.status, cx->resp.error ?
		    cx->resp.error : "refused", NULL, false);
	s.status = cx->status;
	x->status = s.status;
	if (build_head(x, &s, r->content_type) < 0)
		return exchange_error(x->c, 500, "response_too_large", NULL,
		    false);
	x->c->state = CONN_BUSY;
	if (s.no_body) {
		x->flags |= XF_RESP_LAST;
		x->lbody = NULL;
		x->src = NULL;
	}
	return exchange_run(x);
}

int
exchange_local_response(struct exchange *x)
{
	return local_response(x, x->ran);
}

/* Move the gateway's own body on. 0 or CONN_GONE. */
static int
local_body(struct exchange *x)
{
	struct worker *w = x->c->w;
	ssize_t k;

	while (!(x->flags & XF_RESP_LAST)) {
		if (x->lbody != NULL) {
			k = exchange_resp_body(x, x->lbody + x->lbody_off,
			    x->lbody_len - x->lbody_off, true);
			if (k < 0)
				return k == CONN_GONE ? CONN_GONE : 0;
			x->lbody_off += k;
			if (!(x->flags & XF_RESP_LAST))
				return 0;	/* blocked */
			break;
		}
		if (x->src == NULL) {
			x->flags |= XF_RESP_LAST;
			break;
		}
		if (x->soff == x->slen) {
			if (x->sbuf == NULL && (x->sbuf = pool_buf_get(w,
			    BUF_UPSTREAM)) == NULL)
				return exchange_fail(x, 503, "out_of_memory",
				    true);
			k = x->src->read(x->src->arg, x->src_off, x->sbuf,
			    w->ubuf_size);
			if (k < 0) {
				x->ctx.reason = "body_source_failed";
				return exchange_fail(x, 502, "bad_gateway",
				    false);
			}
			x->slen = (uint32_t)k;
			x->soff = 0;
			x->src_off += k;
		}
		k = exchange_resp_body(x, x->sbuf + x->soff, x->slen - x->soff,
		    x->slen == 0 || (x->src->len != BODY_LEN_UNKNOWN &&
		    x->src_off >= x->src->len));
		if (k < 0)
			return k == CONN_GONE ? CONN_GONE : 0;
		x->soff += k;
		if (x->soff < x->slen)
			return 0;	/* blocked */
	}
	return 0;
}

/* A request refused before its path is normalised is logged with its
 * target as sent. */
static void
raw_target(struct exchange *x, const struct http1_request *req)
{
	if (x->flags & XF_LOG)
		x->logpath_len = log_raw_target(x, req->path, req->path_len);
}

/* ---- the pipeline ------------------------------------------------ */

/* Run the request hooks from x->stage on and act on the verdict. */
static int
pipeline(struct exchange *x)
{
	struct worker *w = x->c->w;
	struct xctx *cx = &x->ctx;
	const struct policy_chain *chain = &w->chains[cx->route_index];
	int v;

	cx->now_ms = w->loop.now_ms;
	v = policy_run_request(chain, cx, &x->stage);
	if (x->stage + (v != POLICY_CONTINUE) > x->ran)
		x->ran = x->stage + (v != POLICY_CONTINUE);
	switch (v) {
	case POLICY_PENDING:
		/* The request must stay readable while it waits: the
		 * worker's scratch is reused by other requests. */
		pin_request(x);
		x->flags |= XF_PENDING;
		return 0;
	case POLICY_RESPOND:
		return local_response(x, x->stage);
	default:
		if (cx->route->ncalls > 0)
			return aggregate_start(x);
		return proxy_start(x);
	}
}

/* Copy what points into worker scratch (headers array, normalised and
 * rewritten path) into the arena; c->in is not read meanwhile, so what
 * points into it stays valid. */
static void
pin_request(struct exchange *x)
{
	struct xctx *cx = &x->ctx;
	struct http1_header *h;
	char *p;

	if (cx->headers != NULL && cx->headers == x->c->w->hdrs &&
	    (h = arena_alloc(&cx->arena, cx->nheaders * sizeof(*h))) != NULL) {
		memcpy(h, cx->headers, cx->nheaders * sizeof(*h));
		cx->headers = h;
	}
	if ((p = arena_dup(&cx->arena, cx->path, cx->path_len)) != NULL)
		cx->path = p;
}

int
exchange_begin(struct conn *c, const struct http1_request *req, int head_len)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct exchange *x;
	struct xctx *cx;
	const char *path, *q, *xt = NULL, *tp = NULL;
	size_t plen, qlen, i, xtn = 0, tpn = 0;
	unsigned allow = 0, ntp = 0;
	bool has_body;
	int n, ri;

	loop_timer_cancel(&w->loop, &c->timer);
	if ((x = exchange_new(c)) == NULL) {
		conn_close(c, "out of memory");
		return CONN_GONE;
	}
	cx = &x->ctx;
	c->state = CONN_BUSY;
	x->head_len = head_len;
	x->minor_version = req->minor_version;
	cx->method = method_from_name(req->method, req->method_len);
	cx->method_text = req->method;
	cx->method_len = req->method_len;
	cx->host = req->host;
	cx->host_len = req->host_len;
	cx->headers = req->headers;
	cx->nheaders = req->num_headers;
	for (i = 0; i < req->num_headers; i++) {
		const struct http1_header *h = &req->headers[i];
		if (w->alog != NULL && http1_header_is(h, "user-agent"))
			x->ua_len = copy_text(x->ua, sizeof(x->ua), h->value,
			    h->value_len);
		else if (w->alog != NULL && http1_header_is(h, "referer"))
			x->referer_len = copy_text(x->referer,
			    sizeof(x->referer), h->value, h->value_len);
		else if (xt == NULL && http1_name_eq(h->name, h->name_len,
		    cfg->server.trace_header, w->trace_hdr_len) &&
		    trace_id_ok(h->value, h->value_len)) {
			xt = h->value;
			xtn = h->value_len;
		} else if (http1_header_is(h, "traceparent") && ntp++ == 0) {
			tp = h->value;
			tpn = h->value_len;
		}
	}
	trace_settle(cx, &w->trace_state, xt, xtn, tp, tpn, ntp);
	x->bytes_in = (uint64_t)head_len;
	if (w->alog != NULL) {
		x->flags |= XF_LOG;
		x->method_len = copy_text(x->method_text,
		    sizeof(x->method_text), req->method, req->method_len);
	}
	if (cx->method == M_HEAD)
		x->flags |= XF_HEAD;
	if (req->minor_version == 0) {
		x->flags |= XF_HTTP10;
		if (req->f.conn_keep_alive && !req->f.conn_close)
			x->flags |= XF_KEEPALIVE;
	} else if (!req->f.conn_close) {
		x->flags |= XF_KEEPALIVE;
	}
	has_body = req->f.chunked || req->f.content_length > 0;
	if (req->f.chunked)
		x->flags |= XF_REQ_CHUNKED;
	else if (req->f.content_length > 0)
		x->req_left = (uint64_t)req->f.content_length;
	x->req_head_bytes = head_len;
	x->req_headers = req->num_headers;
	x->req_f = req->f;

	if (req->f.content_length > 0 &&
	    (uint64_t)req->f.content_length > cfg->server.limits.body_bytes) {
		raw_target(x, req);
		return exchange_error(c, 413, "payload_too_large", NULL, true);
	}
	/* Split the target into path and query; normalise the path. */
	path = req->path;
	plen = req->path_len;
	q = memchr(path, '?', plen);
	qlen = 0;
	if (q != NULL) {
		qlen = plen - (q - path);
		plen = q - path;
	}
	if (plen == 0 && req->path_len == 0) {
		path = "/";
		plen = 1;
	}
	n = route_normalize(path, plen, w->path_scratch,
	    cfg->server.limits.header_bytes + 1);
	if (n < 0) {
		raw_target(x, req);
		return exchange_error(c, n == -2 ? 414 : 400,
		    n == -2 ? "uri_too_long" : "bad_path", NULL, true);
	}
	cx->path = w->path_scratch;
	cx->path_len = n;
	cx->query = qlen ? q : NULL;
	cx->query_len = qlen;
	if (w->alog != NULL)
		x->logpath_len = log_target(x, w->path_scratch, n, cx->query,
		    qlen);
	ri = route_find(cfg, w->md, cx->method, req->host, req->host_len,
	    w->path_scratch, n, &allow);
	if (ri < 0) {
		if (ri == -405) {
			char extra[160] = "Allow: ";
			size_t l = 7;
			l += route_allow_header(allow, extra + l,
			    sizeof(extra) - l - 3);
			memcpy(extra + l, "\r\n", 3);
			return exchange_error(c, 405, "method_not_allowed",
			    extra, has_body);
		}
		return exchange_error(c, 404, "not_found", NULL, has_body);
	}
	cx->route_index = ri;
	cx->route = &cfg->routes[ri];
	return pipeline(x);
}

/* ---- running ----------------------------------------------------- */

bool
exchange_waits_on_client(const struct exchange *x, bool *writing)
{
	*writing = out_pending(x) ||
	    ((x->flags & XF_UPSTREAM) && (x->uc.flags & UC_PAUSED)) ||
	    ((x->flags & XF_LOCAL) && (x->flags & XF_RESP_HEAD) &&
	    !(x->flags & XF_RESP_LAST));
	if (*writing)
		return true;
	return (x->flags & XF_UPSTREAM) && upclient_waits_on_owner(&x->uc);
}

int
exchange_run(struct exchange *x)
{
	int rc;

	if (x->flags & XF_PENDING)
		return 0;
	if (x->flags & XF_AGGREGATE)
		return aggregate_run(x);
	if (!(x->flags & (XF_RESP_HEAD | XF_UPSTREAM | XF_LOCAL)))
		/* Resumed after a wait: the hook runs again. */
		return pipeline(x);
	if (x->flags & XF_UPSTREAM)
		return proxy_run(x);
	/* The body first: its first bytes go out in the head's write (one
	 * sendmsg for a whole small response); then what is left. */
	if ((x->flags & XF_LOCAL) && local_body(x) == CONN_GONE)
		return CONN_GONE;
	if ((rc = flush_out(x)) != 1)
		return rc == CONN_GONE ? CONN_GONE : 0;
	if (!(x->flags & XF_RESP_LAST) || out_pending(x))
		return 0;
	return conn_response_done(x->c);
}

/* The log for a request refused while its head was read. */
int
exchange_refuse_head(struct conn *c, int status, const char *error)
{
	if (exchange_error(c, status, error, NULL, true) == CONN_GONE)
		return CONN_GONE;
	log_partial(c->x);
	return 0;
}
