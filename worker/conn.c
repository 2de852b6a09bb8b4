#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../master/log.h"
#include "conn.h"
#include "pool.h"
#include "proxy.h"

/* How long a closing connection keeps reading (and dropping) what the
 * client still sends, so its final response is not lost to a reset. */
#define LINGER_MS 2000

static void conn_event(struct loop *l, struct loop_fd *f, uint32_t ev);
static void conn_timeout(struct loop *l, struct loop_timer *t);

size_t
conn_peer_text(const struct conn *c, char *out, size_t cap)
{
	const uint8_t *a = c->peer.addr;
	char *p = out;
	int i;

	if (c->peer.family != AF_INET || cap < 16) {
		if (inet_ntop(c->peer.family, a, out, cap) == NULL)
			snprintf(out, cap, "unknown");
		return strlen(out);
	}
	/* IPv4 by hand: glibc's inet_ntop goes through sprintf. */
	for (i = 0; i < 4; i++) {
		unsigned v = a[i];
		if (v >= 100)
			*p++ = '0' + v / 100;
		if (v >= 10)
			*p++ = '0' + v / 10 % 10;
		*p++ = '0' + v % 10;
		if (i < 3)
			*p++ = '.';
	}
	*p = '\0';
	return p - out;
}

void
conn_accept(struct worker *w, int fd, const struct sockaddr *sa)
{
	struct conn *c;

	c = pool_conn_get(w);
	if (c == NULL) {
		close(fd);
		return;
	}
	/* TCP_NODELAY comes from the listening socket. */
	c->w = w;
	c->io.fd = fd;
	c->lfd.fd = fd;
	c->lfd.cb = conn_event;
	c->lfd.data = c;
	c->timer.cb = conn_timeout;
	c->timer.data = c;
	c->state = CS_IDLE;
	c->peer.family = sa->sa_family;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		memcpy(c->peer.addr, &in->sin_addr, 4);
		c->peer.port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		memcpy(c->peer.addr, &in6->sin6_addr, 16);
		c->peer.port = ntohs(in6->sin6_port);
	}
	if (loop_add(&w->loop, &c->lfd, EPOLLIN | EPOLLOUT | EPOLLRDHUP |
	    EPOLLET) < 0) {
		close(fd);
		pool_conn_dead(w, c);
		return;
	}
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	COUNTER_ADD(&w->stats->conns_open, 1);
	COUNTER_ADD(&w->stats->conns_total, 1);
	/* A new connection must send its head within the header timeout. */
	loop_timer_set(&w->loop, &c->timer,
	    w->cfg->server.limits.header_timeout_ms);
}

/* One access log line for the exchange; STATUS 0 = its own status. */
static void
log_exchange(struct conn *c, struct exchange *x, int status)
{
	struct worker *w = c->w;
	struct accesslog_entry e;
	char remote[64];

	if (w->alog == NULL || !(x->flags & XF_LOG))
		return;
	conn_peer_text(c, remote, sizeof(remote));
	e.remote = remote;
	e.method = x->method_text;
	e.method_len = x->method_len;
	e.path = x->logpath;
	e.path_len = x->logpath_len;
	e.minor_version = x->minor_version;
	e.status = status ? status : x->status;
	e.bytes = x->bytes_out;
	e.duration_us = w->loop.now_us - x->start_us;
	e.route = x->route >= 0 ? w->cfg->routes[x->route].name : NULL;
	e.upstream = x->up_addr;
	e.trace = x->trace;
	e.reason = x->reason;
	e.user_agent = x->ua_len ? x->ua : NULL;
	e.user_agent_len = x->ua_len;
	e.referer = x->referer_len ? x->referer : NULL;
	e.referer_len = x->referer_len;
	accesslog_write(w->alog, &e);
	x->flags &= ~XF_LOG;
}

static void
exchange_release(struct conn *c)
{
	struct exchange *x = c->x;

	if (x == NULL)
		return;
	/* Still unlogged here: the client went away before it got a byte
	 * of its response (499, as nginx), or was cut mid-response (the
	 * status it was getting, with the reason). */
	log_exchange(c, x, x->bytes_out > 0 && x->status ? 0 : 499);
	if (x->u != NULL)
		proxy_abort(x);
	pool_buf_put(c->w, BUF_HEAD, x->hbuf);
	x->hbuf = NULL;
	pool_exchange_put(c->w, x);
	c->x = NULL;
}

void
conn_close(struct conn *c, const char *reason)
{
	struct worker *w = c->w;

	if (c->flags & CF_DEAD)
		return;
	log_debug("client %d closed: %s", c->io.fd, reason);
	exchange_release(c);
	loop_timer_cancel(&w->loop, &c->timer);
	/* close() takes the fd out of the epoll set: no EPOLL_CTL_DEL. */
	io_close(&c->io);
	c->lfd.fd = -1;
	pool_buf_put(w, BUF_CLIENT, c->in);
	c->in = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	w->nconns--;
	COUNTER_SUB(&w->stats->conns_open, 1);
	c->flags = CF_DEAD;
	pool_conn_dead(w, c);
	if (w->draining && w->nconns == 0)
		w->loop.stop = true;
}

void
conn_close_all(struct worker *w, const char *reason)
{
	while (w->conns != NULL)
		conn_close(w->conns, reason);
}

void
conn_close_idle(struct worker *w)
{
	struct conn *c, *next;

	for (c = w->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == CS_IDLE && c->in_len == 0)
			conn_close(c, "server stopping");
	}
}

static void
trace_new(struct worker *w, struct exchange *x)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t v[2];
	int i, j;

	for (i = 0; i < 2; i++) {
		/* xorshift64*: unpredictability is not the point, uniqueness is */
		w->trace_state ^= w->trace_state >> 12;
		w->trace_state ^= w->trace_state << 25;
		w->trace_state ^= w->trace_state >> 27;
		v[i] = w->trace_state * 2685821657736338717ull;
	}
	for (i = 0; i < 2; i++)
		for (j = 0; j < 16; j++)
			x->trace[i * 16 + j] = hex[(v[i] >> (60 - 4 * j)) & 15];
	x->trace[32] = '\0';
	x->trace_len = 32;
}

/* A client's trace id is kept when it is short and plainly printable. */
static bool
trace_from_header(struct exchange *x, const struct http1_header *h)
{
	size_t i;

	if (h->value_len == 0 || h->value_len > 32)
		return false;
	for (i = 0; i < h->value_len; i++) {
		char ch = h->value[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_'))
			return false;
	}
	memcpy(x->trace, h->value, h->value_len);
	x->trace[h->value_len] = '\0';
	x->trace_len = h->value_len;
	return true;
}

void
conn_respond(struct conn *c, int status, const char *error,
    const char *extra, bool close)
{
	struct worker *w = c->w;
	struct exchange *x = c->x;
	char body[256];
	int blen, n;

	if (x == NULL) {
		x = c->x = pool_exchange_get(w);
		if (x == NULL) {
			conn_close(c, "out of memory");
			return;
		}
		x->c = c;
		trace_new(w, x);
	}
	if (x->u != NULL)
		proxy_abort(x);
	if (x->hbuf == NULL && (x->hbuf = pool_buf_get(w, BUF_HEAD)) == NULL) {
		conn_close(c, "out of memory");
		return;
	}
	/* The request head is answered; drop it from the input. */
	if (x->head_len > 0 && x->head_len <= c->in_len) {
		memmove(c->in, c->in + x->head_len, c->in_len - x->head_len);
		c->in_len -= x->head_len;
		x->head_len = 0;
	}
	c->scanned = 0;
	if (close || w->draining || !(x->flags & XF_KEEPALIVE))
		c->flags |= CF_CLOSE_AFTER;
	if (close)
		c->flags |= CF_UNREAD;	/* input may be left: linger */
	x->status = status;
	if (x->reason == NULL)
		x->reason = error;
	blen = snprintf(body, sizeof(body),
	    "{\"error\":\"%s\",\"status\":%d,\"trace_id\":\"%s\"}\n",
	    error, status, x->trace);
	n = snprintf(x->hbuf, w->hbuf_size,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %d\r\n"
	    "%s: %s\r\n"
	    "%.*s"
	    "%s"
	    "%s"
	    "\r\n",
	    status, http1_status_text(status), blen,
	    w->cfg->server.trace_header, x->trace,
	    (int)x->extra_len, x->extra,
	    extra ? extra : "",
	    (c->flags & CF_CLOSE_AFTER) ? "Connection: close\r\n" :
	    (x->flags & XF_HTTP10) ? "Connection: keep-alive\r\n" : "");
	if (n < 0 || (size_t)n + blen >= w->hbuf_size) {
		conn_close(c, "error response too long");
		return;
	}
	if (!(x->flags & XF_HEAD)) {
		memcpy(x->hbuf + n, body, blen);
		n += blen;
	}
	x->hlen = n;
	x->hoff = 0;
	x->out[0].iov_base = x->hbuf;
	x->out[0].iov_len = n;
	x->nout = 1;
	x->flags |= XF_SENT;
	c->state = CS_RESPOND;
	c->active_ms = w->loop.now_ms;
	if (!loop_timer_armed(&c->timer))
		loop_timer_set(&w->loop, &c->timer,
		    w->cfg->server.limits.idle_timeout_ms);
}

int
conn_flush(struct conn *c)
{
	struct exchange *x = c->x;
	ssize_t n;

	while (x->nout > 0) {
		if (!(c->flags & CF_CAN_WRITE))
			return 0;
		n = io_writev(&c->io, x->out, x->nout);
		if (n == IO_AGAIN) {
			c->flags &= ~CF_CAN_WRITE;
			return 0;
		}
		if (n < 0) {
			conn_close(c, "write failed");
			return -1;
		}
		c->active_ms = c->w->loop.now_ms;
		x->bytes_out += n;
		while (n > 0 && x->nout > 0) {
			if ((size_t)n >= x->out[0].iov_len) {
				n -= x->out[0].iov_len;
				x->out[0] = x->out[1];
				x->nout--;
			} else {
				x->out[0].iov_base = (char *)x->out[0].iov_base
				    + n;
				x->out[0].iov_len -= n;
				n = 0;
			}
		}
	}
	return 1;
}

static void
count_response(struct worker *w, int status)
{
	int cls = status / 100;

	COUNTER_ADD(&w->stats->requests, 1);
	COUNTER_ADD(&w->stats->status[cls >= 1 && cls <= 5 ? cls : 0], 1);
}

void
conn_response_done(struct conn *c)
{
	struct worker *w = c->w;
	const struct cfg_limits *lim = &w->cfg->server.limits;

	count_response(w, c->x->status);
	log_exchange(c, c->x, 0);
	exchange_release(c);
	if (c->flags & CF_CLOSE_AFTER) {
		/* Nothing unread (as far as we know): a plain close sends
		 * FIN after the response. Else linger, since closing with
		 * input pending resets the connection and can destroy the
		 * response before the client reads it. */
		if ((c->flags & CF_EOF) || (!(c->flags & (CF_UNREAD |
		    CF_CAN_READ)) && c->in_len == 0)) {
			conn_close(c, "response done, connection closes");
			return;
		}
		io_shutdown_write(&c->io);
		c->state = CS_LINGER;
		c->in_len = 0;
		loop_timer_set(&w->loop, &c->timer, LINGER_MS);
		return;
	}
	/* A client that half-closed is answered for every request it sent,
	 * then the connection ends. */
	if ((c->flags & CF_EOF) && c->in_len == 0) {
		conn_close(c, "response done, client had half-closed");
		return;
	}
	c->state = CS_IDLE;
	c->scanned = 0;
	if (c->in_len == 0) {
		pool_buf_put(w, BUF_CLIENT, c->in);
		c->in = NULL;
	}
	loop_timer_set(&w->loop, &c->timer, lim->idle_timeout_ms);
}

static int
parse_error_status(int rc, const char **error)
{
	switch (rc) {
	case HTTP1_TOO_MANY:
		*error = "too_many_headers";
		return 431;
	case HTTP1_TOO_LONG:
		*error = "header_too_large";
		return 431;
	case HTTP1_FIELD_TOO_LONG:
		*error = "header_field_too_large";
		return 431;
	case HTTP1_URI_TOO_LONG:
		*error = "uri_too_long";
		return 414;
	case HTTP1_BAD_VERSION:
		*error = "http_version_not_supported";
		return 505;
	case HTTP1_NOT_IMPL:
		*error = "not_implemented";
		return 501;
	default:
		*error = "bad_request";
		return 400;
	}
}

static const struct http1_header *
find_header(const struct http1_request *req, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < req->num_headers; i++)
		if (http1_name_eq(req->headers[i].name,
		    req->headers[i].name_len, name, len))
			return &req->headers[i];
	return NULL;
}

static uint16_t
copy_text(char *out, size_t cap, const char *p, size_t len)
{
	if (len > cap)
		len = cap;
	memcpy(out, p, len);
	return len;
}

static uint16_t
copy_path(char *out, size_t cap, const char *p, size_t len)
{
	const char *q = memchr(p, '?', len);

	if (q != NULL)
		len = q - p;
	if (len > cap)
		len = cap;
	memcpy(out, p, len);
	return len;
}

/*
 * A request refused before its head was parsed (400, 408, 414, 431, 505)
 * is logged like any other, with what its first line shows: the method
 * when it is a token, the target up to the query, the version.
 */
static void
log_partial(struct conn *c, struct exchange *x)
{
	const char *p = c->in, *e, *sp, *t, *te;
	size_t m;

	if (c->w->alog == NULL)
		return;
	x->flags |= XF_LOG;
	x->start_us = c->w->loop.now_us;
	x->minor_version = 1;
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
		x->logpath_len = copy_path(x->logpath, sizeof(x->logpath), t,
		    te - t);
	sp = te;
	if (e - sp >= 9 && memcmp(sp, " HTTP/1.0", 9) == 0)
		x->minor_version = 0;
}

/* A complete request head of head_len bytes is at the front of c->in. */
static void
handle_request(struct conn *c, struct http1_request *req, int head_len)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct exchange *x;
	const struct http1_header *th;
	const char *path, *q;
	size_t plen, qlen;
	struct policy_ctx ctx;
	struct proxy_target t;
	const struct cfg_route *r;
	unsigned allow = 0;
	bool has_body;
	int n, ri;

	loop_timer_cancel(&w->loop, &c->timer);
	x = c->x = pool_exchange_get(w);
	if (x == NULL) {
		conn_close(c, "out of memory");
		return;
	}
	x->c = c;
	x->head_len = head_len;
	x->method = method_from_name(req->method, req->method_len);
	if (w->alog != NULL) {
		const struct http1_header *h;
		x->flags |= XF_LOG;
		x->method_len = copy_text(x->method_text,
		    sizeof(x->method_text), req->method, req->method_len);
		x->minor_version = req->minor_version;
		x->start_us = w->loop.now_us;
		/* Until normalised, the raw path without its query. */
		x->logpath_len = copy_path(x->logpath, sizeof(x->logpath),
		    req->path, req->path_len);
		if ((h = find_header(req, "user-agent", 10)) != NULL)
			x->ua_len = copy_text(x->ua, sizeof(x->ua), h->value,
			    h->value_len);
		if ((h = find_header(req, "referer", 7)) != NULL)
			x->referer_len = copy_text(x->referer,
			    sizeof(x->referer), h->value, h->value_len);
	}
	if (x->method == M_HEAD)
		x->flags |= XF_HEAD;
	if (req->minor_version == 0) {
		x->flags |= XF_HTTP10;
		if (req->f.conn_keep_alive && !req->f.conn_close)
			x->flags |= XF_KEEPALIVE;
	} else if (!req->f.conn_close) {
		x->flags |= XF_KEEPALIVE;
	}
	th = find_header(req, cfg->server.trace_header, w->trace_hdr_len);
	if (th == NULL || !trace_from_header(x, th))
		trace_new(w, x);
	has_body = req->f.chunked || req->f.content_length > 0;

	if (req->f.content_length > 0 &&
	    (uint64_t)req->f.content_length > cfg->server.limits.body_bytes) {
		conn_respond(c, 413, "payload_too_large", NULL, true);
		return;
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
		conn_respond(c, n == -2 ? 414 : 400,
		    n == -2 ? "uri_too_long" : "bad_path", NULL, true);
		return;
	}
	if (w->alog != NULL)
		x->logpath_len = copy_path(x->logpath, sizeof(x->logpath),
		    w->path_scratch, n);
	ri = route_find(cfg, w->md, x->method, req->host, req->host_len,
	    w->path_scratch, n, &allow);
	if (ri < 0) {
		if (ri == -405) {
			char extra[160] = "Allow: ";
			size_t l = 7;
			l += route_allow_header(allow, extra + l,
			    sizeof(extra) - l - 3);
			memcpy(extra + l, "\r\n", 3);
			conn_respond(c, 405, "method_not_allowed", extra,
			    has_body);
		} else {
			conn_respond(c, 404, "not_found", NULL, has_body);
		}
		return;
	}
	x->route = ri;
	r = &cfg->routes[ri];

	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = cfg;
	ctx.route = r;
	ctx.method = x->method;
	ctx.path = w->path_scratch;
	ctx.path_len = n;
	ctx.headers = req->headers;
	ctx.nheaders = req->num_headers;
	ctx.now_ms = w->loop.now_ms;
	ctx.peer_family = c->peer.family;
	ctx.peer_addr = c->peer.addr;
	ctx.resp_extra = x->extra;
	ctx.resp_extra_cap = sizeof(x->extra);
	if (policy_run_request(&w->chains[ri], &ctx) == POLICY_RESPOND) {
		x->extra_len = ctx.resp_extra_len;
		conn_respond(c, ctx.status, ctx.error ? ctx.error : "refused",
		    NULL, has_body);
		return;
	}
	x->extra_len = ctx.resp_extra_len;
	t.path = w->path_scratch;
	t.path_len = n;
	if (r->rewrite_re != NULL) {
		int rn = route_rewrite(r, w->md, w->path_scratch, n,
		    w->rewrite_scratch, cfg->server.limits.header_bytes + 1);
		if (rn < 0) {
			conn_respond(c, 414, "uri_too_long", NULL, true);
			return;
		}
		if (rn > 0) {
			t.path = w->rewrite_scratch;
			t.path_len = rn;
		}
	}
	t.query = qlen ? q : NULL;
	t.query_len = qlen;
	proxy_start(c, req, &t, &ctx.edits);
}

/* Answer a request whose head could not be taken, and log it. */
static void
refuse_head(struct conn *c, int status, const char *error)
{
	conn_respond(c, status, error, NULL, true);
	if (!(c->flags & CF_DEAD) && c->x != NULL)
		log_partial(c, c->x);
}

static void
read_head(struct conn *c)
{
	struct worker *w = c->w;
	const struct cfg_limits *lim = &w->cfg->server.limits;
	struct http1_request req;
	const char *error;
	ssize_t n;
	int rc;

	for (;;) {
		if (c->in_len > 0) {
			rc = http1_parse_request(c->in, c->in_len, c->scanned,
			    &req, w->hdrs, &w->req_lim);
			if (rc > 0) {
				handle_request(c, &req, rc);
				return;
			}
			if (rc != HTTP1_INCOMPLETE) {
				int st = parse_error_status(rc, &error);
				refuse_head(c, st, error);
				return;
			}
			c->scanned = c->in_len;
			if (c->state == CS_IDLE) {
				c->state = CS_HEAD;
				loop_timer_set(&w->loop, &c->timer,
				    lim->header_timeout_ms);
			}
		}
		if (!(c->flags & CF_CAN_READ))
			return;
		if (c->in == NULL && (c->in = pool_buf_get(w, BUF_CLIENT)) ==
		    NULL) {
			conn_close(c, "out of memory");
			return;
		}
		if (c->in_len >= w->cbuf_size) {
			refuse_head(c, 431, "header_too_large");
			return;
		}
		n = io_read(&c->io, c->in + c->in_len, w->cbuf_size - c->in_len);
		if (n == IO_AGAIN) {
			c->flags &= ~CF_CAN_READ;
			if (c->in_len == 0) {
				/* Idle connections hold no buffer. */
				pool_buf_put(w, BUF_CLIENT, c->in);
				c->in = NULL;
			}
			return;
		}
		if (n <= 0) {
			conn_close(c, n == 0 ? "client closed" : "read failed");
			return;
		}
		/* A short read emptied the socket: with edge-triggered epoll
		 * new bytes bring a new event, so skip the EAGAIN read. */
		if ((size_t)n < w->cbuf_size - c->in_len && !(c->flags & CF_EOF))
			c->flags &= ~CF_CAN_READ;
		if (c->state == CS_IDLE) {
			c->state = CS_HEAD;
			loop_timer_set(&w->loop, &c->timer,
			    lim->header_timeout_ms);
		}
		c->in_len += n;
	}
}

static void
linger(struct conn *c)
{
	char drop[4096];
	ssize_t n;

	while (c->flags & CF_CAN_READ) {
		n = io_read(&c->io, drop, sizeof(drop));
		if (n == IO_AGAIN) {
			c->flags &= ~CF_CAN_READ;
			return;
		}
		if (n <= 0) {
			conn_close(c, "closed after final response");
			return;
		}
	}
}

void
conn_run(struct conn *c)
{
	/* Each pass either finishes a response (consuming input) or blocks;
	 * the bound only guards against a logic error spinning forever. */
	int guard;

	for (guard = 0; guard < 1024 && !(c->flags & CF_DEAD); guard++) {
		enum conn_state before = c->state;
		struct exchange *xb = c->x;

		switch (c->state) {
		case CS_IDLE:
		case CS_HEAD:
			read_head(c);
			break;
		case CS_PROXY:
			proxy_run(c->x);
			break;
		case CS_RESPOND:
			if (conn_flush(c) == 1)
				conn_response_done(c);
			break;
		case CS_LINGER:
			linger(c);
			return;
		}
		if (c->flags & CF_DEAD)
			return;
		/* Go round again only when a response finished and more
		 * pipelined input may be waiting, or a new request began. */
		if (c->state == before && c->x == xb)
			return;
		if (c->state == CS_IDLE && c->in_len == 0 &&
		    !(c->flags & CF_CAN_READ))
			return;
	}
}

static void
conn_event(struct loop *l, struct loop_fd *f, uint32_t ev)
{
	struct conn *c = f->data;

	(void)l;
	if (c->flags & CF_DEAD)
		return;
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->flags |= CF_CAN_READ;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->flags |= CF_CAN_WRITE;
	if (ev & (EPOLLRDHUP | EPOLLHUP))
		c->flags |= CF_EOF;
	/* A reset (or both directions shut) means the client is gone:
	 * stop working for nobody (logged as 499, like nginx). A FIN alone
	 * is a half-close: RFC 9112 9.6 lets the client wait for its
	 * answer, so it is served (as HAProxy does) and the connection
	 * ends after it; a client that in fact closed fully is found out
	 * when its response is written. */
	if (ev & (EPOLLERR | EPOLLHUP)) {
		conn_close(c, c->state == CS_PROXY ?
		    "client reset before the response" : "socket error");
		return;
	}
	conn_run(c);
}

static void
conn_timeout(struct loop *l, struct loop_timer *t)
{
	struct conn *c = t->data;
	struct worker *w = c->w;
	uint64_t limit = w->cfg->server.limits.idle_timeout_ms;
	bool writing = true;
	char peer[64];

	switch (c->state) {
	case CS_IDLE:
		conn_close(c, "idle timeout");
		return;
	case CS_HEAD:
		c->flags |= CF_CAN_WRITE;
		refuse_head(c, 408, "request_timeout");
		conn_run(c);
		return;
	case CS_PROXY:
	case CS_RESPOND:
		/* Waiting for the upstream is the upstream timer's business:
		 * the client is stalled only when we wait on it. */
		if (c->state == CS_PROXY && c->x != NULL &&
		    !proxy_waits_on_client(c->x, &writing))
			c->active_ms = l->now_ms;
		/* Lazy stall timer: progress only stamps active_ms. */
		if (l->now_ms - c->active_ms < limit) {
			loop_timer_set(l, t, limit - (l->now_ms - c->active_ms));
			return;
		}
		conn_peer_text(c, peer, sizeof(peer));
		log_info("client %s: %s for %llu ms (client stalled)", peer,
		    writing ? "took no response bytes" : "sent no body bytes",
		    (unsigned long long)limit);
		if (!writing) {
			/* Nothing answered yet: 408, as for a slow head. */
			c->x->reason = "client_read_timeout";
			c->flags |= CF_CAN_WRITE;
			conn_respond(c, 408, "request_timeout", NULL, true);
			conn_run(c);
			return;
		}
		if (c->x != NULL)
			c->x->reason = "client_write_timeout";
		conn_close(c, "client stalled");
		return;
	case CS_LINGER:
		conn_close(c, "linger done");
		return;
	}
}
