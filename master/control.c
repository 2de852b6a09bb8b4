#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control-int.h"
#include "control.h"
#include "log.h"
#include "master.h"
#include "msg.h"

#define MAX_CONNS	32		/* gwctl is one operator, not a crowd */
/* A connection silent this long (nothing read, nothing sent, no reply
 * pending from a reload) is closed: gwctl sends its request at once, so
 * only an idle or stuck client waits that long, and it must not hold a
 * slot that the operator's next gwctl needs. */
#define IDLE_MS		1000
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
	bool waiting;			/* reload/upgrade: reply comes later */
};

struct control {
	struct master_ev ev;
	struct master *m;
	char *path;
	struct cconn *conns;
	unsigned nconns;
	struct cconn *dead;		/* closed; freed by control_tick */
	struct cconn *waiter;		/* whose reload/upgrade is running */
	bool accepting;			/* the listening socket is in epoll */
	struct log_limit full_log;	/* "too many connections" */
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
	if (control_reply_error(&o, "%s", why) < 0) {
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

	while (cc->ev.fd >= 0 && !cc->closing && !cc->waiting &&
	    cc->outoff >= cc->outlen) {
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
		r = control_dispatch(c->m, in.map, &o, &stop);
		msg_in_free(&in);
		used = MSG_HDR + body;
		memmove(cc->in, cc->in + used, cc->inlen - used);
		cc->inlen -= used;
		if (r < 0) {
			msg_out_free(&o);
			conn_close(cc, "out of memory");
			return -1;
		}
		if (r == 1) {
			/* Reload or upgrade started: control_complete sends
			 * the reply; nothing more is read meanwhile. */
			msg_out_free(&o);
			cc->waiting = true;
			c->waiter = cc;
			continue;
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
	if (c->waiter == cc)
		c->waiter = NULL;
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

/* Full: close the longest-silent connection that waits for nothing, so
 * a new gwctl always gets a slot. 0, or -1 when every one is busy. */
static int
evict(struct control *c)
{
	struct cconn *cc, *victim = NULL;

	for (cc = c->conns; cc != NULL; cc = cc->next)
		if (!cc->waiting && (victim == NULL ||
		    cc->last_ms < victim->last_ms))
			victim = cc;
	if (victim == NULL)
		return -1;
	log_limited(&c->full_log, master_now_ms(), LOG_WARN, "control: too "
	    "many connections (%d): closing the longest silent one",
	    MAX_CONNS);
	conn_close(victim, "evicted for a new connection");
	return 0;
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
		if (c->nconns >= MAX_CONNS && evict(c) < 0) {
			log_warn("control: too many connections (%d), all "
			    "busy: refusing one", MAX_CONNS);
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
	c->full_log.interval_ms = LOG_LIMIT_MS;
	e.events = EPOLLIN;
	e.data.ptr = &c->ev;
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		unlink(path);
		goto fail;
	}
	c->accepting = true;
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
		if (!cc->waiting && now_ms - cc->last_ms >= IDLE_MS)
			conn_close(cc, "silent for a second");
	}
	log_limit_tick(&c->full_log, now_ms);
	while (c->dead != NULL) {
		cc = c->dead;
		c->dead = cc->next;
		free(cc);
	}
}

uint64_t
control_deadline(const struct control *c)
{
	const struct cconn *cc;
	uint64_t t = 0;

	if (c == NULL)
		return 0;
	for (cc = c->conns; cc != NULL; cc = cc->next)
		if (!cc->waiting && (t == 0 || cc->last_ms + IDLE_MS < t))
			t = cc->last_ms + IDLE_MS;
	return t;
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

struct control *
control_adopt(struct master *m, int fd, const char *path, char *err,
    size_t errlen)
{
	struct control *c;

	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(c);
		return NULL;
	}
	c->m = m;
	c->ev.fd = fd;
	c->ev.fn = accept_event;
	c->full_log.interval_ms = LOG_LIMIT_MS;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	/* Not accepting yet: the old master still answers (see
	 * control_start). */
	return c;
}

int
control_start(struct control *c)
{
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = &c->ev };

	if (c == NULL || c->ev.fd < 0 || c->accepting)
		return 0;
	if (epoll_ctl(c->m->epfd, EPOLL_CTL_ADD, c->ev.fd, &e) < 0)
		return -1;
	c->accepting = true;
	return 0;
}

int
control_listen_fd(const struct control *c)
{
	return c != NULL ? c->ev.fd : -1;
}

void
control_detach(struct control *c)
{
	if (c == NULL || c->ev.fd < 0)
		return;
	if (c->accepting)
		epoll_ctl(c->m->epfd, EPOLL_CTL_DEL, c->ev.fd, NULL);
	c->accepting = false;
	close(c->ev.fd);
	c->ev.fd = -1;	/* control_close then leaves the file alone */
}

void
control_complete(struct control *c, struct msg_out *o)
{
	struct cconn *cc = c != NULL ? c->waiter : NULL;

	if (cc == NULL || cc->ev.fd < 0) {
		msg_out_free(o);
		return;
	}
	c->waiter = NULL;
	cc->waiting = false;
	cc->last_ms = master_now_ms();
	queue_reply(cc, o);
	/* Requests that arrived meanwhile. */
	if (cc->ev.fd >= 0 && cc->outoff >= cc->outlen)
		handle_input(cc);
}
