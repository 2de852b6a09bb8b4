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

#include <openssl/ssl.h>

#include "../master/log.h"
#include "conn.h"
#include "exchange.h"
#include "metrics.h"
#include "pool.h"
#include "tls.h"
#include "tlsmem.h"

/* How long a closing connection keeps reading (and dropping) what the
 * client still sends, so its final response is not lost to a reset. */
#define LINGER_MS 2000

static void conn_event(struct loop *l, struct loop_fd *f, uint32_t ev);
static void handshake_failed(struct conn *c, const char *how);
static void conn_timeout(struct loop *l, struct loop_timer *t);

/* IPv4 text by hand (glibc's inet_ntop goes through sprintf), once per
 * connection: every request's X-Forwarded-For and log line use it. */
static void
peer_text4(struct peer *pe)
{
	const uint8_t *a = pe->addr;
	char *p = pe->text;
	int i;

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
	pe->text_len = (uint8_t)(p - pe->text);
}

size_t
conn_peer_text(const struct conn *c, char *out, size_t cap)
{
	if (c->peer.family != AF_INET || cap <= c->peer.text_len) {
		if (inet_ntop(c->peer.family, c->peer.addr, out, cap) == NULL)
			snprintf(out, cap, "unknown");
		return strlen(out);
	}
	memcpy(out, c->peer.text, c->peer.text_len + 1);
	return c->peer.text_len;
}

void
conn_accept(struct worker *w, int fd, const struct sockaddr *sa,
    const struct listener *ls)
{
	struct conn *c;
	SSL *ssl = NULL;

	c = pool_conn_get(w);
	if (c == NULL) {
		close(fd);
		return;
	}
	/* TCP_NODELAY comes from the listening socket. */
	c->w = w;
	io_init(&c->io, fd);
	if (ls != NULL && ls->tls != NULL) {
		/* The handshake runs with the first reads, under the
		 * header timeout. */
		if ((ssl = SSL_new(ls->tls)) == NULL) {
			close(fd);
			pool_conn_dead(w, c);
			return;
		}
		SSL_set_accept_state(ssl);
		tls_set_strict(ssl, ls->strict_sni);
		if (io_tls(&c->io, ssl) < 0) {
			SSL_free(ssl);
			close(fd);
			pool_conn_dead(w, c);
			return;
		}
	}
	c->lfd.fd = fd;
	c->lfd.cb = conn_event;
	c->lfd.data = c;
	c->timer.cb = conn_timeout;
	c->timer.data = c;
	c->state = CONN_IDLE;
	c->peer.family = sa->sa_family;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		memcpy(c->peer.addr, &in->sin_addr, 4);
		c->peer.port = ntohs(in->sin_port);
		peer_text4(&c->peer);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		memcpy(c->peer.addr, &in6->sin6_addr, 16);
		c->peer.port = ntohs(in6->sin6_port);
	}
	if (loop_add(&w->loop, &c->lfd, EPOLLIN | EPOLLOUT | EPOLLRDHUP |
	    EPOLLET) < 0) {
		io_close(&c->io);
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

void
conn_close(struct conn *c, const char *reason)
{
	struct worker *w = c->w;
	bool tls;

	if (c->flags & CF_DEAD)
		return;
	if (c->x != NULL)
		log_debug("client %d closed: %s; trace %s", c->io.fd, reason,
		    c->x->ctx.trace);
	else
		log_debug("client %d closed: %s", c->io.fd, reason);
	/* Dead first: whatever the exchange's release calls back sees it. */
	c->flags |= CF_DEAD;
	exchange_release(c);
	loop_timer_cancel(&w->loop, &c->timer);
	tls = c->io.ssl != NULL;
	/* close() takes the fd out of the epoll set: no EPOLL_CTL_DEL. */
	io_close(&c->io);
	if (tls)	/* what freeing the session left in the cache */
		COUNTER_SET(&w->stats->tls_alloc_cached, tlsmem_cached());
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
	c->flags = CF_DEAD | (c->flags & CF_QUEUED);
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
		if (c->state == CONN_IDLE && c->in_len == 0)
			conn_close(c, "server stopping");
	}
}

void
conn_schedule(struct conn *c)
{
	struct worker *w = c->w;

	if (c->flags & (CF_QUEUED | CF_DEAD))
		return;
	c->flags |= CF_QUEUED;
	c->run_next = w->runq;
	w->runq = c;
}

void
conn_run_queued(struct worker *w)
{
	struct conn *c;
	int guard;

	/* Runs may queue more; the bound only guards a logic error. */
	for (guard = 0; guard < 100000 && (c = w->runq) != NULL; guard++) {
		w->runq = c->run_next;
		c->flags &= ~CF_QUEUED;
		if (!(c->flags & CF_DEAD))
			conn_run(c);
	}
}

static void
count_response(struct worker *w, int status)
{
	int cls = status / 100;

	COUNTER_ADD(&w->stats->requests, 1);
	COUNTER_ADD(&w->stats->status[cls >= 1 && cls <= 5 ? cls : 0], 1);
}

int
conn_response_done(struct conn *c)
{
	struct worker *w = c->w;
	const struct cfg_limits *lim = &w->cfg->server.limits;

	count_response(w, c->x->status);
	exchange_release(c);
	if (c->flags & CF_CLOSE_AFTER) {
		/* Nothing unread (as far as we know): a plain close sends
		 * FIN after the response. Else linger, since closing with
		 * input pending resets the connection and can destroy the
		 * response before the client reads it. */
		if (c->io.eof || (!(c->flags & CF_UNREAD) &&
		    !io_can_read(&c->io) && c->in_len == 0)) {
			conn_close(c, "response done, connection closes");
			return CONN_GONE;
		}
		io_shutdown_write(&c->io);
		c->state = CONN_LINGER;
		c->in_len = 0;
		loop_timer_set(&w->loop, &c->timer, LINGER_MS);
		return 0;
	}
	/* A client that half-closed is answered for every request it sent,
	 * then the connection ends. */
	if (c->io.eof && c->in_len == 0) {
		conn_close(c, "response done, client had half-closed");
		return CONN_GONE;
	}
	c->state = CONN_IDLE;
	c->scanned = 0;
	if (c->in_len == 0) {
		pool_buf_put(w, BUF_CLIENT, c->in);
		c->in = NULL;
	}
	/* Pipelined requests wait: read already, or announced by a read
	 * event that came while this exchange ran (edge-triggered: it will
	 * not come again), or held inside OpenSSL. */
	if (c->in_len > 0 || io_can_read(&c->io))
		conn_schedule(c);
	loop_timer_set(&w->loop, &c->timer, lim->idle_timeout_ms);
	return 0;
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

/* A plain HTTP request on a TLS port: say so in plain HTTP (as nginx
 * does) before closing, rather than leaving the client puzzled. */
static void
plain_on_tls(struct conn *c)
{
	static const char body[] = "{\"error\":\"plain_http_to_tls_port\","
	    "\"status\":400}\n";
	char msg[256], drop[4096];
	int n, k;

	n = snprintf(msg, sizeof(msg), "HTTP/1.1 400 Bad Request\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n%s", sizeof(body) - 1, body);
	log_debug("client %d: plain HTTP request on a TLS port", c->io.fd);
	if (n <= 0 || send(c->io.fd, msg, (size_t)n, MSG_NOSIGNAL |
	    MSG_DONTWAIT) < 0)
		return;
	/* What the client sent is still unread: closing over it would
	 * reset the connection and take the answer with it. */
	shutdown(c->io.fd, SHUT_WR);
	for (k = 0; k < 16 && recv(c->io.fd, drop, sizeof(drop),
	    MSG_DONTWAIT) > 0; k++)
		;
}

/* Read until a complete head is in `in`, then start its exchange. */
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
				exchange_begin(c, &req, rc);
				return;
			}
			if (rc != HTTP1_INCOMPLETE) {
				int st = parse_error_status(rc, &error);
				exchange_refuse_head(c, st, error);
				return;
			}
			c->scanned = c->in_len;
			if (c->state == CONN_IDLE) {
				c->state = CONN_HEAD;
				loop_timer_set(&w->loop, &c->timer,
				    lim->header_timeout_ms);
			}
		}
		if (!io_can_read(&c->io))
			return;
		if (c->in == NULL && (c->in = pool_buf_get(w, BUF_CLIENT)) ==
		    NULL) {
			conn_close(c, "out of memory");
			return;
		}
		if (c->in_len >= w->cbuf_size) {
			exchange_refuse_head(c, 431, "header_too_large");
			return;
		}
		n = io_read(&c->io, c->in + c->in_len, w->cbuf_size - c->in_len);
		if (n == IO_AGAIN) {
			if (c->in_len == 0) {
				/* Idle connections hold no buffer. */
				pool_buf_put(w, BUF_CLIENT, c->in);
				c->in = NULL;
			}
			return;
		}
		if (n <= 0) {
			if (c->io.plain_on_tls)
				plain_on_tls(c);
			else if (c->io.ssl != NULL && n == IO_ERR &&
			    !SSL_is_init_finished(c->io.ssl))
				handshake_failed(c, "failed");
			conn_close(c, n == 0 ? "client closed" : "read failed");
			return;
		}
		if (c->state == CONN_IDLE) {
			c->state = CONN_HEAD;
			loop_timer_set(&w->loop, &c->timer,
			    lim->header_timeout_ms);
		}
		c->in_len += n;
		metrics_bytes_in(w, n);
	}
}

static void
linger(struct conn *c)
{
	char drop[4096];
	ssize_t n;

	while (io_can_read(&c->io)) {
		n = io_read(&c->io, drop, sizeof(drop));
		if (n == IO_AGAIN)
			return;
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
		case CONN_IDLE:
		case CONN_HEAD:
			read_head(c);
			break;
		case CONN_BUSY:
			if (exchange_run(c->x) == CONN_GONE)
				return;
			break;
		case CONN_LINGER:
			linger(c);
			return;
		}
		if (c->flags & CF_DEAD)
			return;
		/* Go round again only when a response finished and more
		 * pipelined input may be waiting, or a new request began. */
		if (c->state == before && c->x == xb)
			return;
		if (c->state == CONN_IDLE && c->in_len == 0 &&
		    !io_can_read(&c->io))
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
	io_event(&c->io, ev);
	/* A reset (or both directions shut) means the client is gone:
	 * stop working for nobody (logged as 499, like nginx). A FIN alone
	 * is a half-close: RFC 9112 9.6 lets the client wait for its
	 * answer, so it is served (as HAProxy does) and the connection
	 * ends after it; a client that in fact closed fully is found out
	 * when its response is written. */
	if (c->io.reset) {
		conn_close(c, c->state == CONN_BUSY ?
		    "client reset before the response" : "socket error");
		return;
	}
	conn_run(c);
}

/* A client's TLS handshake failed: counted, and said at debug level (a
 * scanner's noise must not fill the log). */
static void
handshake_failed(struct conn *c, const char *how)
{
	char peer[64];

	COUNTER_ADD(&c->w->stats->tls_handshake_failures, 1);
	conn_peer_text(c, peer, sizeof(peer));
	log_debug("client %s: TLS handshake %s", peer, how);
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
	case CONN_IDLE:
		/* One that began a handshake and did not end it failed. */
		if (c->io.ssl != NULL && !SSL_in_before(c->io.ssl) &&
		    !SSL_is_init_finished(c->io.ssl))
			handshake_failed(c, "timed out");
		conn_close(c, "idle timeout");
		return;
	case CONN_HEAD:
		c->io.ready |= IO_WR;
		if (exchange_refuse_head(c, 408, "request_timeout") == 0)
			conn_run(c);
		return;
	case CONN_BUSY:
		/* Waiting for the upstream (or a policy) is not the client's
		 * doing: it is stalled only when we wait on it. */
		if (c->x != NULL && !exchange_waits_on_client(c->x, &writing))
			c->active_ms = l->now_ms;
		/* Lazy stall timer: progress only stamps active_ms. */
		if (l->now_ms - c->active_ms < limit) {
			loop_timer_set(l, t, limit - (l->now_ms - c->active_ms));
			return;
		}
		conn_peer_text(c, peer, sizeof(peer));
		log_info("client %s: %s for %llu ms (client stalled); trace %s",
		    peer, writing ? "took no response bytes" :
		    "sent no body bytes", (unsigned long long)limit,
		    c->x != NULL ? c->x->ctx.trace : "-");
		if (!writing) {
			/* Nothing answered yet: 408, as for a slow head. */
			c->x->ctx.reason = "client_read_timeout";
			c->io.ready |= IO_WR;
			if (exchange_fail(c->x, 408, "request_timeout", true) ==
			    0)
				conn_run(c);
			return;
		}
		if (c->x != NULL)
			c->x->ctx.reason = "client_write_timeout";
		conn_close(c, "client stalled");
		return;
	case CONN_LINGER:
		conn_close(c, "linger done");
		return;
	}
}
