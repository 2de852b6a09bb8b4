#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../master/log.h"
#include "../shm/hash.h"
#include "pool.h"
#include "tls.h"
#include "upclient.h"
#include "upstream.h"

struct service_rt *
upstream_services(const struct config *cfg, unsigned slot)
{
	struct service_rt *svc;
	size_t i, j;

	svc = calloc(cfg->nservices ? cfg->nservices : 1, sizeof(*svc));
	if (svc == NULL)
		return NULL;
	for (i = 0; i < cfg->nservices; i++) {
		struct service_rt *s = &svc[i];
		s->cfg = &cfg->services[i];
		s->index = i;
		s->ninst = cfg->services[i].ninstances;
		s->inst = calloc(s->ninst ? s->ninst : 1, sizeof(*s->inst));
		if (s->inst == NULL) {
			upstream_services_free(cfg, svc);
			return NULL;
		}
		if (cfg->services[i].tls) {
			char why[256];
			s->tls = tls_client_ctx_new(&cfg->services[i], why,
			    sizeof(why));
			if (s->tls == NULL) {
				log_error("service %s: %s",
				    cfg->services[i].name, why);
				upstream_services_free(cfg, svc);
				return NULL;
			}
		}
		for (j = 0; j < s->ninst; j++) {
			s->inst[j].svc = s;
			s->inst[j].addr = &cfg->services[i].instances[j];
			s->inst[j].index = j;
			s->inst[j].keepalive = cfg->services[i].keepalive;
			s->inst[j].idle_ms =
			    cfg->services[i].keepalive_timeout_ms;
		}
		/* Workers start at different instances so they spread. */
		s->rr = slot;
	}
	return svc;
}

void
upstream_services_free(const struct config *cfg, struct service_rt *svc)
{
	size_t i;
	unsigned j;

	if (svc == NULL)
		return;
	for (i = 0; i < cfg->nservices; i++) {
		struct service_rt *s = &svc[i];
		for (j = 0; s->inst != NULL && j < s->ninst; j++) {
			while (s->inst[j].idle != NULL)
				upstream_close(s->inst[j].idle);
			SSL_SESSION_free(s->inst[j].tls_sess);
		}
		free(s->inst);
		SSL_CTX_free(s->tls);
	}
	free(svc);
}

uint32_t
upstream_hash(const void *p, size_t len)
{
	return (uint32_t)hash_bytes(p, len, 0);
}

uint32_t
upstream_key_hash(const struct cfg_service *s, int family,
    const uint8_t *addr, const struct http1_header *h, size_t nh,
    const char *consumer, size_t consumer_len)
{
	size_t i;

	switch (s->balance) {
	case BAL_HASH_IP:
		return upstream_hash(addr, family == AF_INET ? 4 : 16);
	case BAL_HASH_HEADER:
		for (i = 0; i < nh; i++)
			if (http1_name_eq(h[i].name, h[i].name_len,
			    s->hash_header, strlen(s->hash_header)))
				return upstream_hash(h[i].value,
				    h[i].value_len);
		return upstream_hash("", 0);
	case BAL_HASH_CONSUMER:
		return upstream_hash(consumer != NULL ? consumer : "",
		    consumer != NULL ? consumer_len : 0);
	default:
		return 0;
	}
}

int
upstream_pick(struct service_rt *s, uint32_t hash, unsigned attempt,
    int first)
{
	unsigned i, best;

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
unrequested_bytes(struct upconn *u)
{
	char b;
	ssize_t n;

	if (u->io.ssl != NULL)
		return !upstream_idle_clean(u);
	n = recv(u->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

bool
upstream_idle_clean(struct upconn *u)
{
	char b;

	/* TLS: records that carry no data (a session ticket) are taken in
	 * and leave the connection usable; data, an alert or an EOF do
	 * not. */
	if (u->io.ssl == NULL)
		return false;
	u->io.ready |= IO_RD;
	return io_read(&u->io, &b, 1) == IO_AGAIN && u->io.rd_wait == IO_RD;
}

struct upconn *
upstream_acquire(struct worker *w, struct instance *inst, struct upclient *uc)
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
		u->state = UP_ACTIVE;
		u->flags = (u->flags | UF_REUSED) & ~UF_CHECK;
		u->uc = uc;
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
	io_init(&u->io, fd);
	u->lfd.fd = fd;
	u->lfd.cb = upclient_event;
	u->lfd.data = u;
	u->timer.cb = upclient_timeout;
	u->timer.data = u;
	u->state = UP_CONNECTING;
	u->uc = uc;
	if (inst->svc->tls != NULL) {
		SSL *ssl = tls_client_new(inst->svc->tls, inst->svc->cfg,
		    a, &inst->tls_sess);
		if (ssl == NULL || io_tls(&u->io, ssl) < 0) {
			log_error("upstream %s: cannot start TLS", a->text);
			SSL_free(ssl);
			close(fd);
			pool_upconn_dead(w, u);
			errno = ENOMEM;
			return NULL;
		}
	}
	if (loop_add(&w->loop, &u->lfd, EPOLLIN | EPOLLOUT | EPOLLRDHUP |
	    EPOLLET) < 0) {
		io_close(&u->io);
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

	if (u->state == UP_IDLE)
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
	u->uc = NULL;
	u->flags |= UF_DEAD;
	pool_upconn_dead(w, u);
}

void
upstream_release(struct upconn *u, bool reusable)
{
	struct worker *w = u->w;
	struct instance *in = u->inst;

	if (!reusable || (u->flags & UF_DEAD) || w->draining ||
	    u->len != 0 || in->nidle >= in->keepalive || u->io.eof) {
		upstream_close(u);
		return;
	}
	in->active--;
	pool_buf_put(w, BUF_UPSTREAM, u->buf);
	u->buf = NULL;
	u->uc = NULL;
	u->state = UP_IDLE;
	u->flags &= ~UF_REUSED;
	u->pool_prev = NULL;
	u->pool_next = in->idle;
	if (in->idle)
		in->idle->pool_prev = u;
	in->idle = u;
	in->nidle++;
	loop_timer_set(&w->loop, &u->timer, in->idle_ms);
}
