#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../master/log.h"
#include "pool.h"
#include "upstream.h"

int
upstream_init(struct worker *w)
{
	const struct config *cfg = w->cfg;
	size_t i, j;

	w->svc = calloc(cfg->nservices ? cfg->nservices : 1, sizeof(*w->svc));
	if (w->svc == NULL)
		return -1;
	for (i = 0; i < cfg->nservices; i++) {
		struct service_rt *s = &w->svc[i];
		s->cfg = &cfg->services[i];
		s->ninst = cfg->services[i].ninstances;
		s->inst = calloc(s->ninst ? s->ninst : 1, sizeof(*s->inst));
		if (s->inst == NULL)
			return -1;
		for (j = 0; j < s->ninst; j++) {
			s->inst[j].addr = &cfg->services[i].instances[j];
			s->inst[j].keepalive = cfg->services[i].keepalive;
			s->inst[j].idle_ms =
			    cfg->services[i].keepalive_timeout_ms;
		}
		/* Workers start at different instances so they spread. */
		s->rr = w->slot;
	}
	return 0;
}

void
upstream_free(struct worker *w)
{
	size_t i;

	if (w->svc == NULL)
		return;
	for (i = 0; i < w->cfg->nservices; i++) {
		struct service_rt *s = &w->svc[i];
		unsigned j;
		for (j = 0; j < s->ninst; j++)
			while (s->inst[j].idle != NULL)
				upstream_close(s->inst[j].idle);
		free(s->inst);
	}
	free(w->svc);
	w->svc = NULL;
}

uint32_t
upstream_hash(const void *p, size_t len)
{
	const unsigned char *b = p;
	uint32_t h = 2166136261u;	/* FNV-1a */
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= b[i];
		h *= 16777619u;
	}
	return h;
}

int
upstream_pick(struct worker *w, struct service_rt *s, uint32_t hash,
    unsigned attempt, int first)
{
	unsigned i, best;

	(void)w;
	if (s->ninst == 1)
		return 0;
	if (attempt > 0 && first >= 0)
		return (first + attempt) % s->ninst;
	switch (s->cfg->balance) {
	case BAL_LEAST_CONN:
		best = s->rr++ % s->ninst;
		for (i = 0; i < s->ninst; i++)
			if (s->inst[i].active < s->inst[best].active)
				best = i;
		return best;
	case BAL_HASH_IP:
	case BAL_HASH_HEADER:
	case BAL_HASH_CONSUMER:
		return hash % s->ninst;
	default:
		return s->rr++ % s->ninst;
	}
}

static void
pool_unlink(struct upconn *u)
{
	struct instance *in = u->inst;

	if (u->pool_prev)
		u->pool_prev->pool_next = u->pool_next;
	else
		in->idle = u->pool_next;
	if (u->pool_next)
		u->pool_next->pool_prev = u->pool_prev;
	u->pool_next = u->pool_prev = NULL;
	in->nidle--;
}

/* Whether an idle connection has bytes (or an EOF) nobody asked for. The
 * idle connection's own read event closes it when they come later; this
 * catches what arrived since the last epoll_wait, where a late body after
 * a bodiless response is most likely. */
static bool
unrequested_bytes(const struct upconn *u)
{
	char b;
	ssize_t n = recv(u->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

struct upconn *
upstream_acquire(struct worker *w, struct instance *inst, struct exchange *x)
{
	const struct cfg_addr *a = inst->addr;
	struct upconn *u;
	int fd, one = 1;

	while ((u = inst->idle) != NULL) {
		if ((u->flags & UF_CHECK) && unrequested_bytes(u)) {
			log_debug("upstream %s: idle connection sent "
			    "unrequested bytes; closed", a->text);
			upstream_close(u);
			continue;
		}
		pool_unlink(u);
		loop_timer_cancel(&w->loop, &u->timer);
		u->state = US_ACTIVE;
		u->flags |= UF_REUSED;
		u->flags &= ~UF_CHECK;
		u->x = x;
		inst->active++;
		return u;
	}
	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("upstream %s: socket: %s", a->text, strerror(errno));
		return NULL;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 &&
	    errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	u = pool_upconn_get(w);
	if (u == NULL) {
		close(fd);
		return NULL;
	}
	u->w = w;
	u->inst = inst;
	u->io.fd = fd;
	u->lfd.fd = fd;
	u->lfd.cb = proxy_upstream_event;
	u->lfd.data = u;
	u->timer.cb = proxy_upstream_timeout;
	u->timer.data = u;
	u->state = US_CONNECTING;
	u->x = x;
	if (loop_add(&w->loop, &u->lfd, EPOLLIN | EPOLLOUT | EPOLLRDHUP |
	    EPOLLET) < 0) {
		close(fd);
		pool_upconn_dead(w, u);
		return NULL;
	}
	COUNTER_ADD(&w->stats->upstream_conns, 1);
	inst->active++;
	return u;
}

void
upstream_close(struct upconn *u)
{
	struct worker *w = u->w;

	if (u->state == US_IDLE)
		pool_unlink(u);
	else if (u->inst != NULL)
		u->inst->active--;
	loop_timer_cancel(&w->loop, &u->timer);
	if (u->io.fd >= 0) {
		io_close(&u->io);	/* also leaves the epoll set */
		COUNTER_SUB(&w->stats->upstream_conns, 1);
	}
	u->lfd.fd = -1;
	pool_buf_put(w, BUF_UPSTREAM, u->buf);
	u->buf = NULL;
	u->x = NULL;
	u->flags |= UF_DEAD;
	pool_upconn_dead(w, u);
}

void
upstream_release(struct upconn *u, bool reusable)
{
	struct worker *w = u->w;
	struct instance *in = u->inst;

	if (!reusable || (u->flags & UF_DEAD) || w->draining ||
	    u->len != 0 || in->nidle >= in->keepalive) {
		upstream_close(u);
		return;
	}
	in->active--;
	pool_buf_put(w, BUF_UPSTREAM, u->buf);
	u->buf = NULL;
	u->scanned = 0;
	u->x = NULL;
	u->state = US_IDLE;
	u->flags &= ~UF_REUSED;
	u->pool_prev = NULL;
	u->pool_next = in->idle;
	if (in->idle)
		in->idle->pool_prev = u;
	in->idle = u;
	in->nidle++;
	loop_timer_set(&w->loop, &u->timer, in->idle_ms);
}
