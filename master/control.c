#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "master.h"
#include "msg.h"
#include "../policies/ratelimit.h"	/* ratelimit: gwctl limits */

#define MAX_CONNS	32		/* gwctl is one operator, not a crowd */
#define IDLE_MS		30000		/* a silent connection is dropped */
#define READ_BUDGET	(256 * 1024)	/* bytes per wake-up, for fairness */
#define IN_START	4096

struct cconn {
	struct master_ev ev;
	struct control *ctl;
	struct cconn *prev, *next;
	char *in;			/* received, not yet handled */
	size_t inlen, incap;
	struct msg_out out;		/* reply being sent */
	const char *outp;
	size_t outlen, outoff;		/* outoff < outlen: reply pending */
	uint32_t mask;			/* events registered in epoll */
	uint64_t last_ms;
	bool closing;			/* close once the reply is sent */
};

struct control {
	struct master_ev ev;
	struct master *m;
	char *path;
	struct cconn *conns;
	unsigned nconns;
	struct cconn *dead;		/* closed; freed by control_tick */
};

/* Commands gwctl knows that later work builds; answered "not built yet"
 * so the operator learns it is the daemon, not a typo. */
static const char *const later[] = {
	"stats", "reload", "upgrade", "routes", "explain", "breakers",
	"cache", "reopen", NULL
};

static void conn_close(struct cconn *cc, const char *why);
static void conn_flush(struct cconn *cc);

static void
set_mask(struct cconn *cc, uint32_t mask)
{
	struct epoll_event e = { .events = mask, .data.ptr = &cc->ev };

	if (mask == cc->mask)
		return;
	if (epoll_ctl(cc->ctl->m->epfd, EPOLL_CTL_MOD, cc->ev.fd, &e) == 0)
		cc->mask = mask;
}

/* Printable, bounded copy of a client-supplied name for messages. */
static void
safe_name(const msgpack_object *o, char *buf, size_t len)
{
	size_t i, n;

	if (o == NULL || o->type != MSGPACK_OBJECT_STR) {
		snprintf(buf, len, "?");
		return;
	}
	n = o->via.str.size < len - 1 ? o->via.str.size : len - 1;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)o->via.str.ptr[i];

		buf[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	buf[n] = '\0';
}

static int
reply_error(struct msg_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
reply_error(struct msg_out *o, const char *fmt, ...)
{
	char text[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (msg_out_init(o, 2) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", false);
	msg_pack_kv_str(&o->pk, "error", text);
	return 0;
}

static void
pack_worker(msgpack_packer *pk, const struct master *m,
    const struct master_slot *s, uint64_t now)
{
	const struct worker_counters *wc = NULL;
	static const char *const cls[] = { "other", "1xx", "2xx", "3xx",
	    "4xx", "5xx" };
	int i;

	if (m->counters != NULL && s->index < m->counters->nslots)
		wc = &m->counters->slot[s->index];
	msgpack_pack_map(pk, 10);
	msg_pack_kv_uint(pk, "slot", s->index);
	msg_pack_kv_int(pk, "pid", s->pid);
	msg_pack_kv_uint(pk, "generation", s->generation);
	msg_pack_kv_uint(pk, "uptime_s",
	    s->pid > 0 ? (now - s->started_ms) / 1000 : 0);
	msg_pack_kv_uint(pk, "restarts", s->restarts);
	msg_pack_kv_uint(pk, "conns", wc ? COUNTER_GET(&wc->conns_open) : 0);
	msg_pack_kv_uint(pk, "conns_total",
	    wc ? COUNTER_GET(&wc->conns_total) : 0);
	msg_pack_kv_uint(pk, "requests", wc ? COUNTER_GET(&wc->requests) : 0);
	msg_pack_str(pk, "status");
	msgpack_pack_map(pk, 6);
	for (i = 0; i < 6; i++)
		msg_pack_kv_uint(pk, cls[i],
		    wc ? COUNTER_GET(&wc->status[i]) : 0);
	msg_pack_kv_bool(pk, "draining",
	    (wc && COUNTER_GET(&wc->draining) != 0) ||
	    m->state != MASTER_RUNNING);
}

static int
reply_status(struct control *c, struct msg_out *o)
{
	struct master *m = c->m;
	uint64_t now = master_now_ms();
	static const char *const states[] = {
		[MASTER_RUNNING] = "running", [MASTER_DRAINING] = "draining",
		[MASTER_STOPPING] = "stopping",
	};
	unsigned i;

	if (msg_out_init(o, 6) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_int(&o->pk, "pid", m->pid);
	msg_pack_kv_uint(&o->pk, "generation", m->generation);
	msg_pack_kv_uint(&o->pk, "uptime_s", (now - m->start_ms) / 1000);
	msg_pack_kv_str(&o->pk, "state", states[m->state]);
	msg_pack_str(&o->pk, "workers");
	msgpack_pack_array(&o->pk, m->nslots);
	for (i = 0; i < m->nslots; i++)
		pack_worker(&o->pk, m, &m->slots[i], now);
	return 0;
}

/* Build the reply to one decoded request; *stop is set when the master
 * must begin stopping once the reply is on its way. */
static int
dispatch(struct control *c, const msgpack_object *req, struct msg_out *o,
    int *stop)
{
	const msgpack_object *cmd = msg_get(req, "cmd");
	char name[64];
	bool now = false;
	int i;

	if (cmd == NULL || cmd->type != MSGPACK_OBJECT_STR)
		return reply_error(o, "request has no 'cmd' string");
	safe_name(cmd, name, sizeof(name));
	if (msg_str_eq(cmd, "status"))
		return reply_status(c, o);
	if (msg_str_eq(cmd, "limits"))	/* ratelimit */
		return ratelimit_control(c->m->cfg, req, o);
	if (msg_str_eq(cmd, "stop")) {
		if (msg_get(req, "now") != NULL &&
		    msg_get_bool(req, "now", &now) < 0)
			return reply_error(o, "'now' must be a boolean");
		*stop = now ? 2 : 1;
		if (msg_out_init(o, 3) < 0)
			return -1;
		msg_pack_kv_bool(&o->pk, "ok", true);
		msg_pack_kv_int(&o->pk, "pid", c->m->pid);
		msg_pack_kv_str(&o->pk, "stop", now ? "fast" : "graceful");
		return 0;
	}
	for (i = 0; later[i] != NULL; i++)
		if (msg_str_eq(cmd, later[i]))
			return reply_error(o, "'%s' is not built yet", name);
	return reply_error(o, "unknown command '%s'", name);
}

/* Queue a reply (o is taken over) and try to send it at once. */
static void
queue_reply(struct cconn *cc, struct msg_out *o)
{
	int n;

	n = msg_out_finish(o, &cc->outp);
	if (n < 0) {
		msg_out_free(o);
		conn_close(cc, "reply too large");
		return;
	}
	cc->out = *o;
	cc->outlen = (size_t)n;
	cc->outoff = 0;
	conn_flush(cc);
}

/* Reply with an error and close after it is sent. */
static void
fail(struct cconn *cc, const char *why)
{
	struct msg_out o;

	cc->closing = true;
	cc->inlen = 0;
	if (reply_error(&o, "%s", why) < 0) {
		msg_out_free(&o);
		conn_close(cc, "out of memory");
		return;
	}
	queue_reply(cc, &o);
}

/* Handle every complete request in the input buffer, one reply at a
 * time: while a reply is pending nothing more is read (back-pressure).
 * Returns -1 if the connection was closed. */
static int
handle_input(struct cconn *cc)
{
	struct control *c = cc->ctl;
	struct msg_in in;
	struct msg_out o;
	size_t body = 0, used;
	char err[128];
	int r, stop;

	while (cc->ev.fd >= 0 && !cc->closing && cc->outoff >= cc->outlen) {
		r = msg_frame(cc->in, cc->inlen, &body);
		if (r < 0) {
			fail(cc, "message length out of range (limit 1048576 "
			    "bytes)");
			return cc->ev.fd < 0 ? -1 : 0;
		}
		if (r == 0) {
			if (body > 0 && MSG_HDR + body > cc->incap) {
				char *p = realloc(cc->in, MSG_HDR + body);

				if (p == NULL) {
					conn_close(cc, "out of memory");
					return -1;
				}
				cc->in = p;
				cc->incap = MSG_HDR + body;
			}
			return 0;
		}
		if (msg_decode(cc->in + MSG_HDR, body, &in, err,
		    sizeof(err)) < 0) {
			msg_in_free(&in);
			fail(cc, err);
			return cc->ev.fd < 0 ? -1 : 0;
		}
		stop = 0;
		/* Zeroed: a dispatcher may fail before initialising it. */
		memset(&o, 0, sizeof(o));
		r = dispatch(c, in.map, &o, &stop);
		msg_in_free(&in);
		used = MSG_HDR + body;
		memmove(cc->in, cc->in + used, cc->inlen - used);
		cc->inlen -= used;
		if (r < 0) {
			msg_out_free(&o);
			conn_close(cc, "out of memory");
			return -1;
		}
		queue_reply(cc, &o);
		if (stop != 0 && c->m->state != MASTER_STOPPING) {
			/* The reply is sent (or queued) before any worker is
			 * told; the loop exits only once workers are gone. */
			log_info("stop requested over the control socket "
			    "(%s)", stop == 2 ? "fast" : "graceful");
			master_stop(c->m, stop == 1);
		}
	}
	return 0;
}

static void
conn_flush(struct cconn *cc)
{
	ssize_t n;

	while (cc->outoff < cc->outlen) {
		n = send(cc->ev.fd, cc->outp + cc->outoff,
		    cc->outlen - cc->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				set_mask(cc, EPOLLOUT);
				return;
			}
			conn_close(cc, "write failed");
			return;
		}
		cc->outoff += (size_t)n;
	}
	msg_out_free(&cc->out);
	cc->outp = NULL;
	cc->outlen = cc->outoff = 0;
	if (cc->closing) {
		conn_close(cc, "closed after an error reply");
		return;
	}
	set_mask(cc, EPOLLIN);
}

static void
conn_read(struct cconn *cc)
{
	size_t budget = READ_BUDGET;
	ssize_t n;

	while (budget > 0) {
		if (cc->inlen == cc->incap) {
			/* Only reached before a frame's length is known or
			 * when a client pipelines: grow within the bound. */
			size_t cap = cc->incap * 2;
			char *p;

			if (cap > MSG_HDR + MSG_MAX)
				cap = MSG_HDR + MSG_MAX;
			if (cap <= cc->incap) {
				fail(cc, "message too large");
				return;
			}
			p = realloc(cc->in, cap);
			if (p == NULL) {
				conn_close(cc, "out of memory");
				return;
			}
			cc->in = p;
			cc->incap = cap;
		}
		n = read(cc->ev.fd, cc->in + cc->inlen, cc->incap - cc->inlen);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			conn_close(cc, "read failed");
			return;
		}
		if (n == 0) {
			if (cc->inlen > 0)
				log_debug("control: client left a partial "
				    "message");
			conn_close(cc, "client closed");
			return;
		}
		cc->inlen += (size_t)n;
		budget -= (size_t)n < budget ? (size_t)n : budget;
		cc->last_ms = master_now_ms();
		if (handle_input(cc) < 0 || cc->ev.fd < 0)
			return;
		if (cc->closing || cc->outoff < cc->outlen)
			return;
	}
}

static void
conn_event(struct master_ev *ev, uint32_t events)
{
	struct cconn *cc = (struct cconn *)ev;

	if (cc->ev.fd < 0)
		return;
	if (events & EPOLLOUT) {
		conn_flush(cc);
		if (cc->ev.fd < 0)
			return;
		cc->last_ms = master_now_ms();
		/* Requests that arrived while the reply was pending. */
		if (cc->outoff >= cc->outlen && handle_input(cc) < 0)
			return;
		if (cc->ev.fd < 0)
			return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (cc->outoff < cc->outlen && !(events & EPOLLIN)) {
			conn_close(cc, "hang-up");
			return;
		}
		if (cc->mask & EPOLLIN || events & (EPOLLHUP | EPOLLERR))
			conn_read(cc);
	}
}

static void
conn_close(struct cconn *cc, const char *why)
{
	struct control *c = cc->ctl;

	log_debug("control: connection closed: %s", why);
	if (cc->ev.fd >= 0) {
		epoll_ctl(c->m->epfd, EPOLL_CTL_DEL, cc->ev.fd, NULL);
		close(cc->ev.fd);
	}
	cc->ev.fd = -1;
	if (cc->prev != NULL)
		cc->prev->next = cc->next;
	else
		c->conns = cc->next;
	if (cc->next != NULL)
		cc->next->prev = cc->prev;
	c->nconns--;
	msg_out_free(&cc->out);
	cc->outp = NULL;
	cc->outlen = cc->outoff = 0;
	free(cc->in);
	cc->in = NULL;
	cc->inlen = cc->incap = 0;
	/* Callers up the stack, and later events of the same epoll batch,
	 * still hold cc: park it (fd == -1 marks it dead) and free it from
	 * control_tick, after the batch. */
	cc->prev = NULL;
	cc->next = c->dead;
	c->dead = cc;
}

static void
accept_event(struct master_ev *ev, uint32_t events)
{
	struct control *c = (struct control *)ev;
	struct epoll_event e;
	struct cconn *cc;
	int fd, i;

	(void)events;
	for (i = 0; i < 16; i++) {
		fd = accept4(c->ev.fd, NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				log_warn("control: accept: %s",
				    strerror(errno));
			return;
		}
		if (c->nconns >= MAX_CONNS) {
			log_warn("control: more than %d connections, "
			    "refusing one", MAX_CONNS);
			close(fd);
			continue;
		}
		cc = calloc(1, sizeof(*cc));
		if (cc != NULL)
			cc->in = malloc(IN_START);
		if (cc == NULL || cc->in == NULL) {
			free(cc);
			close(fd);
			continue;
		}
		cc->incap = IN_START;
		cc->ev.fd = fd;
		cc->ev.fn = conn_event;
		cc->ctl = c;
		cc->mask = EPOLLIN;
		cc->last_ms = master_now_ms();
		e.events = EPOLLIN;
		e.data.ptr = &cc->ev;
		if (epoll_ctl(c->m->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
			free(cc->in);
			free(cc);
			close(fd);
			continue;
		}
		cc->next = c->conns;
		if (c->conns != NULL)
			c->conns->prev = cc;
		c->conns = cc;
		c->nconns++;
	}
}

/* Whether something answers on PATH: then another master owns it. */
static bool
socket_alive(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, r;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	return r == 0;
}

struct control *
control_open(struct master *m, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct epoll_event e;
	struct control *c;
	struct stat st;
	mode_t old;
	int fd = -1;

	if (path == NULL) {
		snprintf(err, errlen, "no control socket configured");
		return NULL;
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control socket path too long "
		    "(limit %zu bytes): %s", sizeof(sun.sun_path) - 1, path);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	c->m = m;
	if (master_mkdirs(path) < 0) {
		snprintf(err, errlen, "cannot create the directory of %s: %s",
		    path, strerror(errno));
		goto fail;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket",
			    path);
			goto fail;
		}
		if (socket_alive(path)) {
			snprintf(err, errlen, "control socket %s is in use: "
			    "is another portico running?", path);
			goto fail;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	/* Created 0600 from the start: no window where others connect. */
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(old);
		snprintf(err, errlen, "cannot bind control socket %s: %s",
		    path, strerror(errno));
		goto fail;
	}
	umask(old);
	if (chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "control socket %s: %s", path,
		    strerror(errno));
		unlink(path);
		goto fail;
	}
	c->ev.fd = fd;
	c->ev.fn = accept_event;
	e.events = EPOLLIN;
	e.data.ptr = &c->ev;
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		unlink(path);
		goto fail;
	}
	return c;
fail:
	if (fd >= 0)
		close(fd);
	if (c != NULL)
		free(c->path);
	free(c);
	return NULL;
}

void
control_tick(struct control *c, uint64_t now_ms)
{
	struct cconn *cc, *next;

	for (cc = c->conns; cc != NULL; cc = next) {
		next = cc->next;
		if (now_ms - cc->last_ms > IDLE_MS)
			conn_close(cc, "idle");
	}
	while (c->dead != NULL) {
		cc = c->dead;
		c->dead = cc->next;
		free(cc);
	}
}

void
control_close_fds(struct control *c)
{
	struct cconn *cc;

	if (c == NULL)
		return;
	for (cc = c->conns; cc != NULL; cc = cc->next)
		if (cc->ev.fd >= 0)
			close(cc->ev.fd);
	if (c->ev.fd >= 0)
		close(c->ev.fd);
}

void
control_close(struct control *c)
{
	if (c == NULL)
		return;
	while (c->conns != NULL)
		conn_close(c->conns, "shutting down");
	control_tick(c, 0);
	if (c->ev.fd >= 0) {
		epoll_ctl(c->m->epfd, EPOLL_CTL_DEL, c->ev.fd, NULL);
		close(c->ev.fd);
		unlink(c->path);
	}
	free(c->path);
	free(c);
}
