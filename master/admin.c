#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../worker/http1.h"
#include "admin.h"
#include "log.h"
#include "master.h"
#include "supervise.h"

#define ADMIN_HEADERS	64
#define ACCEPT_BATCH	32

struct aconn {
	struct master_ev ev;
	struct admin *a;
	struct aconn *prev, *next;
	char in[ADMIN_HEAD_MAX];
	size_t inlen;
	struct abuf out;		/* the response being sent */
	size_t outoff;
	uint64_t deadline;		/* monotonic ms */
	bool close_after;		/* close once the response is out */
	bool dead;
};

struct admin {
	struct master_ev lis;
	struct master *m;
	struct aconn *conns;
	unsigned nconns;
	struct aconn *dead;		/* closed; freed by admin_tick */
	struct log_limit busy_log;
};

static void conn_close(struct aconn *c, const char *why);
static void conn_run(struct aconn *c);

void
abuf_printf(struct abuf *b, const char *fmt, ...)
{
	va_list ap;
	size_t need;
	char *p;
	int n;

	if (b->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p != NULL ? b->p + b->len : NULL,
	    b->p != NULL ? b->cap - b->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = 1;
		return;
	}
	if (b->p != NULL && (size_t)n < b->cap - b->len) {
		b->len += (size_t)n;
		return;
	}
	need = b->len + (size_t)n + 1;
	if (need < b->cap * 2)
		need = b->cap * 2;
	if (need < 4096)
		need = 4096;
	if ((p = realloc(b->p, need)) == NULL) {
		b->failed = 1;
		return;
	}
	b->p = p;
	b->cap = need;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
abuf_put(struct abuf *b, const char *p, size_t n)
{
	size_t need;
	char *q;

	if (b->failed || n == 0)
		return;
	if (b->cap - b->len < n) {
		need = b->len + n > b->cap * 2 ? b->len + n : b->cap * 2;
		if ((q = realloc(b->p, need)) == NULL) {
			b->failed = 1;
			return;
		}
		b->p = q;
		b->cap = need;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void
abuf_free(struct abuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- answers ------------------------------------------------------- */

/* Ready: serving, every worker of the serving generation up and ready. */
static bool
is_ready(struct master *m, char *why, size_t len)
{
	unsigned i, ready = 0;
	bool all = supervise_all_ready(m, m->slots, m->nslots);

	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].pid > 0 && m->slots[i].ready)
			ready++;
	if (m->upgraded) {
		snprintf(why, len, "handed over to a new master");
		return false;
	}
	if (m->state != MASTER_RUNNING) {
		snprintf(why, len, "%s", m->state == MASTER_DRAINING ?
		    "draining" : "stopping");
		return false;
	}
	if (!all) {
		snprintf(why, len, "%u of %u workers ready", ready, m->nslots);
		return false;
	}
	snprintf(why, len, "generation %u, %u of %u workers ready",
	    m->generation, m->nslots, m->nslots);
	return true;
}

/* Build the response to a parsed request into c->out. */
static void
respond(struct aconn *c, const struct http1_request *req)
{
	struct master *m = c->a->m;
	struct abuf body = { 0 };
	const char *ctype = "text/plain; charset=utf-8", *extra = "";
	size_t plen = req->path_len;
	const char *q = memchr(req->path, '?', plen);
	char why[128];
	int status = 200;
	bool head = req->method_len == 4 &&
	    memcmp(req->method, "HEAD", 4) == 0;

	if (q != NULL)
		plen = (size_t)(q - req->path);
	if (!head && !(req->method_len == 3 &&
	    memcmp(req->method, "GET", 3) == 0)) {
		status = 405;
		extra = "Allow: GET, HEAD\r\n";
		abuf_printf(&body, "method not allowed: use GET\n");
	} else if (plen == 8 && memcmp(req->path, "/metrics", 8) == 0) {
		ctype = "text/plain; version=0.0.4; charset=utf-8";
		if (admin_prom(m, &body) < 0) {
			abuf_free(&body);
			status = 500;
			abuf_printf(&body, "out of memory\n");
		}
	} else if (plen == 8 && memcmp(req->path, "/healthz", 8) == 0) {
		abuf_printf(&body, "ok: pid %d\n", (int)m->pid);
	} else if (plen == 7 && memcmp(req->path, "/readyz", 7) == 0) {
		if (is_ready(m, why, sizeof(why))) {
			abuf_printf(&body, "ready: pid %d, %s\n", (int)m->pid,
			    why);
		} else {
			status = 503;
			abuf_printf(&body, "not ready: pid %d, %s\n",
			    (int)m->pid, why);
		}
	} else {
		status = 404;
		abuf_printf(&body, "not found: /metrics, /healthz and "
		    "/readyz are served here\n");
	}
	/* A request body is not read: answer, then close. */
	if (req->f.chunked || req->f.content_length > 0)
		c->close_after = true;
	if (req->minor_version == 0 ? !req->f.conn_keep_alive :
	    req->f.conn_close)
		c->close_after = true;
	abuf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
	    status, http1_status_text(status), ctype, body.len, extra,
	    c->close_after ? "Connection: close\r\n" :
	    req->minor_version == 0 ? "Connection: keep-alive\r\n" : "");
	if (!head)
		abuf_put(&c->out, body.p, body.len);
	if (body.failed)
		c->out.failed = 1;
	abuf_free(&body);
}

/* A short answer for a request that could not be read; then close. */
static void
refuse(struct aconn *c, int status)
{
	c->close_after = true;
	abuf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
	    "Content-Length: 0\r\nConnection: close\r\n\r\n", status,
	    http1_status_text(status));
}

/* ---- connections --------------------------------------------------- */

static void
conn_close(struct aconn *c, const char *why)
{
	struct admin *a = c->a;

	if (c->dead)
		return;
	log_debug("admin: connection %d closed: %s", c->ev.fd, why);
	/* Out of the epoll set first: a worker forked a moment ago may
	 * still hold a copy of the descriptor, and the set would keep it. */
	epoll_ctl(a->m->epfd, EPOLL_CTL_DEL, c->ev.fd, NULL);
	close(c->ev.fd);
	c->ev.fd = -1;
	c->dead = true;
	abuf_free(&c->out);
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->nconns--;
	c->prev = NULL;
	c->next = a->dead;
	a->dead = c;
}

/* Write what is pending. 1 = all out, 0 = would block, -1 = closed. */
static int
conn_flush(struct aconn *c)
{
	ssize_t n;

	while (c->outoff < c->out.len) {
		n = send(c->ev.fd, c->out.p + c->outoff,
		    c->out.len - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			conn_close(c, "write failed");
			return -1;
		}
		c->outoff += (size_t)n;
	}
	abuf_free(&c->out);
	c->outoff = 0;
	if (c->close_after) {
		conn_close(c, "response sent");
		return -1;
	}
	c->deadline = master_now_ms() + ADMIN_READ_MS;
	return 1;
}

/* Answer every complete request in the buffer, one at a time. */
static void
conn_run(struct aconn *c)
{
	struct http1_header hdrs[ADMIN_HEADERS];
	const struct http1_limits lim = { ADMIN_HEADERS, ADMIN_HEAD_MAX, 4096,
	    2048 };
	struct http1_request req;
	int n, guard;

	for (guard = 0; guard < 64 && !c->dead; guard++) {
		if (c->out.len > 0 && conn_flush(c) <= 0)
			return;
		if (c->inlen == 0)
			return;
		n = http1_parse_request(c->in, c->inlen, 0, &req, hdrs, &lim);
		if (n == HTTP1_INCOMPLETE) {
			if (c->inlen < sizeof(c->in))
				return;
			n = HTTP1_TOO_LONG;
		}
		if (n < 0) {
			refuse(c, n == HTTP1_TOO_LONG || n == HTTP1_TOO_MANY ||
			    n == HTTP1_FIELD_TOO_LONG ? 431 : n ==
			    HTTP1_URI_TOO_LONG ? 414 : n == HTTP1_BAD_VERSION ?
			    505 : 400);
			c->inlen = 0;
		} else {
			respond(c, &req);
			memmove(c->in, c->in + n, c->inlen - (size_t)n);
			c->inlen -= (size_t)n;
		}
		if (c->out.failed) {
			conn_close(c, "out of memory");
			return;
		}
		c->outoff = 0;
		c->deadline = master_now_ms() + ADMIN_WRITE_MS;
	}
}

static void
conn_event(struct master_ev *ev, uint32_t events)
{
	struct aconn *c = (struct aconn *)ev;
	ssize_t n;
	int i;

	if (c->dead)
		return;
	if (c->out.len > 0) {
		/* Nothing more is read while a response is pending. */
		if (conn_flush(c) < 0)
			return;
		if (c->out.len > 0) {
			if (events & (EPOLLERR | EPOLLHUP))
				conn_close(c, "client gone");
			return;
		}
	}
	/* Edge-triggered: read until the socket is empty or the buffer
	 * full (bounded). */
	for (i = 0; i < 64 && c->inlen < sizeof(c->in); i++) {
		n = recv(c->ev.fd, c->in + c->inlen, sizeof(c->in) - c->inlen,
		    MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			/* A client that half-closed after its request still
			 * gets the answer. */
			if (n == 0 && c->inlen > 0) {
				c->close_after = true;
				break;
			}
			conn_close(c, n == 0 ? "client closed" : "read failed");
			return;
		}
		c->inlen += (size_t)n;
	}
	conn_run(c);
}

static void
accept_event(struct master_ev *ev, uint32_t events)
{
	struct admin *a = (struct admin *)ev;
	struct epoll_event e;
	struct aconn *c;
	int fd, i;
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Length: 0\r\nConnection: close\r\n\r\n";

	(void)events;
	for (i = 0; i < ACCEPT_BATCH; i++) {
		fd = accept4(ev->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				log_limited(&a->busy_log, master_now_ms(),
				    LOG_WARN, "admin: accept: %s",
				    strerror(errno));
			return;
		}
		if (a->nconns >= ADMIN_MAX_CONNS ||
		    (c = calloc(1, sizeof(*c))) == NULL) {
			/* Best effort, never waiting: a busy answer. */
			(void)!send(fd, busy, sizeof(busy) - 1,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			log_limited(&a->busy_log, master_now_ms(), LOG_WARN,
			    "admin: %u connections already: refused one",
			    ADMIN_MAX_CONNS);
			continue;
		}
		c->ev.fd = fd;
		c->ev.fn = conn_event;
		c->a = a;
		c->deadline = master_now_ms() + ADMIN_READ_MS;
		e.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
		e.data.ptr = &c->ev;
		if (epoll_ctl(a->m->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = a->conns;
		if (a->conns)
			a->conns->prev = c;
		a->conns = c;
		a->nconns++;
	}
}

/* ---- the listener -------------------------------------------------- */

static int
listen_on(const struct cfg_addr *addr, char *err, size_t errlen)
{
	int fd, one = 1;

	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)) < 0 || bind(fd, (const struct sockaddr *)&addr->ss,
	    addr->len) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "server.admin: cannot listen on %s: %s",
		    addr->text, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int
admin_open(struct master *m, int fd, char *err, size_t errlen)
{
	const struct cfg_server *sv = &m->cfg->server;
	struct epoll_event e;
	struct admin *a;

	m->admin = NULL;
	if (!sv->has_admin) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	if (fd < 0 && (fd = listen_on(&sv->admin, err, errlen)) < 0)
		return -1;
	/* An adopted socket must not block us either. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		close(fd);
		snprintf(err, errlen, "server.admin: out of memory");
		return -1;
	}
	a->m = m;
	a->lis.fd = fd;
	a->lis.fn = accept_event;
	e.events = EPOLLIN;
	e.data.ptr = &a->lis;
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		snprintf(err, errlen, "server.admin: epoll_ctl: %s",
		    strerror(errno));
		close(fd);
		free(a);
		return -1;
	}
	m->admin = a;
	log_info("admin listener on %s (/metrics, /healthz, /readyz)",
	    sv->admin.text);
	return 0;
}

static void
free_dead(struct admin *a)
{
	struct aconn *c;

	while ((c = a->dead) != NULL) {
		a->dead = c->next;
		free(c);
	}
}

void
admin_close(struct admin *a)
{
	if (a == NULL)
		return;
	while (a->conns != NULL)
		conn_close(a->conns, "master stopping");
	free_dead(a);
	admin_stop_listening(a);
	free(a);
}

void
admin_close_fds(struct admin *a)
{
	struct aconn *c;

	if (a == NULL)
		return;
	if (a->lis.fd >= 0)
		close(a->lis.fd);
	for (c = a->conns; c != NULL; c = c->next)
		close(c->ev.fd);
}

void
admin_stop_listening(struct admin *a)
{
	if (a == NULL || a->lis.fd < 0)
		return;
	/* After an upgrade the new master holds the same socket: only an
	 * explicit delete takes it out of our set. */
	epoll_ctl(a->m->epfd, EPOLL_CTL_DEL, a->lis.fd, NULL);
	close(a->lis.fd);
	a->lis.fd = -1;
}

int
admin_listen_fd(const struct admin *a)
{
	return a != NULL ? a->lis.fd : -1;
}

uint64_t
admin_deadline(const struct admin *a)
{
	const struct aconn *c;
	uint64_t t = 0;

	for (c = a != NULL ? a->conns : NULL; c != NULL; c = c->next)
		if (t == 0 || c->deadline < t)
			t = c->deadline;
	return t;
}

void
admin_tick(struct admin *a, uint64_t now)
{
	struct aconn *c, *next;

	if (a == NULL)
		return;
	free_dead(a);
	for (c = a->conns; c != NULL; c = next) {
		next = c->next;
		if (c->deadline <= now)
			conn_close(c, c->out.len > 0 ? "response not taken in "
			    "time" : "no request in time");
	}
	/* An old master after an upgrade: the new one answers. */
	if (a->m->upgraded)
		admin_stop_listening(a);
}
