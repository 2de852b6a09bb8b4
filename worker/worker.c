#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../master/log.h"
#include "../policies/cache.h"
#include "../policies/ratelimit.h"
#include "aggregate.h"
#include "conn.h"
#include "../shm/store.h"
#include "metrics.h"
#include "pool.h"
#include "proxy.h"
#include "resilience.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

/* Connections accepted per listener per loop turn: enough to empty a
 * burst, few enough that one listener cannot starve the others. */
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100

/* Out of descriptors or memory: the listening sockets stay readable, so
 * stop watching them for a while instead of spinning on accept (the
 * connections wait in the kernel's queue meanwhile). */
static void
accept_resume(struct loop *l, struct loop_timer *t)
{
	struct worker *w = t->data;
	size_t i;

	if (w->draining)
		return;
	for (i = 0; i < w->nls; i++)
		loop_add(l, &w->ls[i].lfd, EPOLLIN);
}

static void
accept_pause(struct worker *w, int err)
{
	size_t i;

	if (loop_timer_armed(&w->accept_timer))
		return;
	/* Retried every ACCEPT_PAUSE_MS while the limit lasts: logged once
	 * per interval with a count, not ten lines a second. */
	log_limited(&w->accept_log, w->loop.now_ms, LOG_ERROR, "accept: %s; "
	    "pausing accepts for %d ms (%u connections open)", strerror(err),
	    ACCEPT_PAUSE_MS, w->nconns);
	for (i = 0; i < w->nls; i++)
		loop_del(&w->loop, &w->ls[i].lfd);
	w->accept_timer.cb = accept_resume;
	w->accept_timer.data = w;
	loop_timer_set(&w->loop, &w->accept_timer, ACCEPT_PAUSE_MS);
}

static void
on_accept(struct loop *l, struct loop_fd *f, uint32_t ev)
{
	struct listener *ls = f->data;
	struct worker *w = ls->w;
	struct sockaddr_storage ss;
	socklen_t len;
	int i, fd;

	(void)l;
	(void)ev;
	for (i = 0; i < ACCEPT_BATCH && !w->draining; i++) {
		len = sizeof(ss);
		fd = accept4(f->fd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				accept_pause(w, errno);
			return;
		}
		/* Descriptors again: the count of a flood that ended. */
		if (w->accept_log.held != 0)
			log_limit_flush(&w->accept_log);
		conn_accept(w, fd, (struct sockaddr *)&ss, ls);
	}
}

static void
drain_deadline(struct loop *l, struct loop_timer *t)
{
	struct worker *w = t->data;

	log_info("drain deadline reached with %u connections open",
	    w->nconns);
	conn_close_all(w, "drain deadline");
	l->stop = true;
}

/* Stop accepting; finish what is in flight; idle keep-alive connections
 * are answered with Connection: close on their next request and closed
 * only at the drain deadline (closing them now races with clients that
 * are sending on them at this instant). */
static void
worker_drain(struct worker *w)
{
	size_t i;

	if (w->draining)
		return;
	w->draining = true;
	COUNTER_SET(&w->stats->draining, 1);
	loop_timer_cancel(&w->loop, &w->accept_timer);
	for (i = 0; i < w->nls; i++) {
		loop_del(&w->loop, &w->ls[i].lfd);
		close(w->ls[i].lfd.fd);
		w->ls[i].lfd.fd = -1;
	}
	/* A server stop (not a reload or upgrade, where the next generation
	 * serves): nobody will answer a request sent on an idle keep-alive
	 * connection, so close those now instead of at the deadline. */
	if (COUNTER_GET(&w->stats->stopping))
		conn_close_idle(w);
	log_info("worker draining: %u connections open", w->nconns);
	if (w->nconns == 0) {
		w->loop.stop = true;
		return;
	}
	w->drain_timer.cb = drain_deadline;
	w->drain_timer.data = w;
	loop_timer_set(&w->loop, &w->drain_timer,
	    w->cfg->server.limits.drain_timeout_ms);
}

static void
on_signal(struct loop *l, struct loop_fd *f, uint32_t ev)
{
	struct worker *w = f->data;
	struct signalfd_siginfo si;

	(void)ev;
	while (read(f->fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			l->stop = true;
			break;
		case SIGQUIT:
			worker_drain(w);
			break;
		case SIGUSR1:
			log_reopen();
			accesslog_reopen(w->alog);
			break;
		default:
			break;
		}
	}
}

static void
flush_alog(struct loop *l, struct loop_timer *t)
{
	struct worker *w = t->data;

	(void)l;
	accesslog_flush(w->alog);
}

static void
ratelimit_timer(struct loop *l, struct loop_timer *t)
{
	(void)t;
	ratelimit_tick(l->now_ms);
}

static void
cache_timer(struct loop *l, struct loop_timer *t)
{
	(void)t;
	cache_tick(l->now_ms);
}

static void
before_sleep(struct loop *l, void *arg)
{
	struct worker *w = arg;

	conn_run_queued(w);
	pool_reap(w);
	/* Leased rate-limit tokens not used go back on this timer. */
	if (ratelimit_pending() && !loop_timer_armed(&w->rl_timer))
		loop_timer_set(l, &w->rl_timer, RATELIMIT_TICK_MS);
	/* Cache hits are marked used in the LRU order in batches. */
	if (cache_pending() && !loop_timer_armed(&w->cache_timer))
		loop_timer_set(l, &w->cache_timer, CACHE_TICK_MS);
	/* Lines wait at most ACCESSLOG_FLUSH_MS: one write per batch, not
	 * one per loop turn. */
	if (accesslog_pending(w->alog) && !loop_timer_armed(&w->alog_timer))
		loop_timer_set(l, &w->alog_timer, ACCESSLOG_FLUSH_MS);
}

static uint32_t
round_up(uint32_t v, uint32_t to)
{
	return (v + to - 1) / to * to;
}

/* The tls section's contexts, with session-ticket keys shared through
 * the store (the master makes and rotates them). */
static int
open_tls(struct worker *w)
{
	const struct config *cfg = w->cfg;
	char why[512];

	if (tls_server_new(cfg, &w->tls, why, sizeof(why)) < 0) {
		log_error("tls: %s", why);
		return -1;
	}
	if (w->tls != NULL)
		tls_server_tickets(w->tls, store_proc(cfg->server.state_path,
		    cfg->server.workers));
	return 0;
}

int
worker_open(struct worker *w, const struct worker_args *a)
{
	const struct config *cfg = a->cfg;
	const struct cfg_limits *lim = &cfg->server.limits;
	sigset_t set;
	size_t i;

	memset(w, 0, sizeof(*w));
	w->cfg = cfg;
	w->slot = a->slot;
	w->generation = a->generation;
	w->stats = a->stats;
	/* Client input holds a whole head plus body bytes to stream. */
	w->cbuf_size = round_up(lim->header_bytes + 16384, 4096);
	w->hbuf_size = round_up((lim->header_bytes > 32768 ?
	    lim->header_bytes : 32768) + 8192, 4096);
	w->ubuf_size = 32768;
	w->max_headers = lim->headers > 256 ? lim->headers : 256;
	w->hdrs = calloc(w->max_headers, sizeof(*w->hdrs));
	w->req_lim = (struct http1_limits){ lim->headers, lim->header_bytes,
	    lim->field_bytes, lim->uri_bytes };
	w->resp_lim = (struct http1_limits){ w->max_headers, w->ubuf_size,
	    0, 0 };
	w->trace_hdr_len = strlen(cfg->server.trace_header);
	{
		const char *names[4] = { cfg->server.trace_header,
		    cfg->auth.id_consumer, cfg->auth.id_tier,
		    cfg->auth.id_scopes };
		for (i = 0; i < 4; i++)
			if (names[i] != NULL) {
				w->gw_hdrs[w->ngw_hdrs] = names[i];
				w->gw_hdr_len[w->ngw_hdrs++] = strlen(names[i]);
			}
	}
	w->path_scratch = malloc(lim->header_bytes + 1);
	w->rewrite_scratch = malloc(lim->header_bytes + 1);
	if (w->hdrs == NULL || w->path_scratch == NULL ||
	    w->rewrite_scratch == NULL)
		return -1;
	if (getrandom(&w->trace_state, sizeof(w->trace_state), 0) !=
	    sizeof(w->trace_state) || w->trace_state == 0)
		w->trace_state = ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
	if (loop_init(&w->loop) < 0)
		return -1;
	w->loop.before_sleep = before_sleep;
	w->loop.before_sleep_arg = w;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGPIPE);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigdelset(&set, SIGPIPE);
	w->sig.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	w->sig.cb = on_signal;
	w->sig.data = w;
	if (w->sig.fd < 0 || loop_add(&w->loop, &w->sig, EPOLLIN) < 0)
		return -1;

	if (open_tls(w) < 0)
		return -1;
	w->nls = a->nlisten;
	w->ls = calloc(w->nls ? w->nls : 1, sizeof(*w->ls));
	if (w->ls == NULL)
		return -1;
	for (i = 0; i < w->nls; i++) {
		const struct cfg_listen *li = i < cfg->server.nlisten ?
		    &cfg->server.listen[i] : NULL;
		w->ls[i].w = w;
		if (li != NULL && li->tls != NULL) {
			w->ls[i].tls = tls_server_ctx(w->tls, li->tls);
			w->ls[i].strict_sni = li->strict_sni;
			if (w->ls[i].tls == NULL)
				return -1;
		}
		w->ls[i].lfd.fd = a->listen_fds[i];
		w->ls[i].lfd.cb = on_accept;
		w->ls[i].lfd.data = &w->ls[i];
		if (loop_add(&w->loop, &w->ls[i].lfd, EPOLLIN) < 0)
			return -1;
	}
	{
		int err;
		w->alog = accesslog_open(cfg, &err);
		w->alog_timer.cb = flush_alog;
		w->alog_timer.data = w;
		w->rl_timer.cb = ratelimit_timer;
		w->cache_timer.cb = cache_timer;
		if (w->alog == NULL && err != 0)
			log_error("access log %s: %s", cfg->server.access_log,
			    strerror(err));
	}
	w->svc = upstream_services(cfg, w->slot);
	if (w->svc == NULL || metrics_open(w, a->metrics, a->metrics_slot) < 0 ||
	    resilience_init(w) < 0)
		return -1;
	w->md = route_match_data_new(cfg);
	w->chains = calloc(cfg->nroutes ? cfg->nroutes : 1,
	    sizeof(*w->chains));
	if (w->md == NULL || w->chains == NULL)
		return -1;
	cache_counters(w->stats);
	if (policy_set_init(cfg, &w->pset) < 0)
		return -1;
	for (i = 0; i < cfg->nroutes; i++)
		if (policy_chain_build(cfg, &cfg->routes[i], &w->pset,
		    &w->chains[i]) < 0)
			return -1;
	if (aggregate_worker_init(w) < 0)
		return -1;
	return 0;
}

void
worker_close(struct worker *w)
{
	size_t i;

	conn_close_all(w, "worker stopping");
	proxy_fetch_stop_all(w);
	upstream_services_free(w->cfg, w->svc);	/* pooled connections */
	w->svc = NULL;
	resilience_free(w);
	pool_destroy(w);
	accesslog_close(w->alog);
	w->alog = NULL;
	for (i = 0; w->chains != NULL && i < w->cfg->nroutes; i++)
		policy_chain_free(&w->chains[i]);
	free(w->chains);
	w->chains = NULL;
	policy_set_free(&w->pset);
	metrics_close(w);
	aggregate_worker_free(w);
	arena_cache_free(&w->arenas);
	route_match_data_free(w->md);
	w->md = NULL;
	if (w->sig.fd >= 0)
		close(w->sig.fd);
	w->sig.fd = -1;
	loop_free(&w->loop);
	free(w->ls);
	tls_server_free(w->tls);
	w->tls = NULL;
	free(w->hdrs);
	free(w->path_scratch);
	free(w->rewrite_scratch);
	w->ls = NULL;
	w->hdrs = NULL;
	w->path_scratch = w->rewrite_scratch = NULL;
}

void
worker_main(const struct worker_args *a)
{
	struct worker w;

	if (worker_open(&w, a) < 0) {
		log_error("worker %u: cannot start: %s", a->slot,
		    strerror(errno));
		exit(2);
	}
	COUNTER_SET(&w.stats->pid, (uint64_t)getpid());
	COUNTER_SET(&w.stats->generation, a->generation);
	log_debug("worker %u (generation %u) started", a->slot,
	    a->generation);
	/* The master waits for this before draining an older generation. */
	COUNTER_SET(&w.stats->ready, 1);
	if (loop_run(&w.loop) < 0)
		log_error("worker %u: event loop: %s", a->slot,
		    strerror(errno));
	worker_close(&w);
	log_debug("worker %u stopped", a->slot);
	exit(0);
}
