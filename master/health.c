#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "health.h"
#include "log.h"
#include "master.h"
#include "../shm/breaker.h"
#include "../shm/health.h"
#include "../shm/store.h"

#define REQ_MAX		1400	/* GET path (<= 1024) + headers */
#define LINE_MAX_LEN	256	/* the status line is all we read */

enum probe_state {
	PROBE_IDLE,		/* no check running; next_ms says when */
	PROBE_CONNECTING,	/* fd set, connect() in progress */
	PROBE_SENDING,		/* request partly sent */
	PROBE_READING,		/* request sent, waiting for the status line */
};

/* One checked instance. Allocated alone: its master_ev is registered
 * in the master's epoll by address. */
struct probe {
	struct master_ev ev;		/* fd while a check runs, else -1 */
	struct health_checks *hc;
	char *svc;
	char addr[64];
	struct sockaddr_storage ss;
	socklen_t sslen;
	char key[BREAKER_KEY_MAX];
	int klen;
	char *path;
	unsigned interval_ms, timeout_ms, fall, rise, smin, smax;
	enum probe_state st;
	uint64_t start_ms, next_ms, deadline_ms;
	char req[REQ_MAX];
	size_t reqlen, sent;
	char line[LINE_MAX_LEN];
	size_t len;
	/* A result not yet in the store. */
	bool pending, ok;
	unsigned err, status;
	struct health_checks_last last;
	bool keep;			/* rebuild: still configured */
};

struct health_checks {
	struct master *m;
	const struct config *cfg, *next_cfg;	/* what the probes follow */
	unsigned generation;
	struct probe **p;
	size_t n;
	bool dirty;			/* results pending */
};

/* ---- one check ----------------------------------------------------- */

static void
probe_stop(struct probe *p)
{
	if (p->ev.fd >= 0) {
		epoll_ctl(p->hc->m->epfd, EPOLL_CTL_DEL, p->ev.fd, NULL);
		close(p->ev.fd);
		p->ev.fd = -1;
	}
	p->st = PROBE_IDLE;
}

/* The check ended (OK, or ERR with STATUS and the words WHAT): the
 * result waits for the tick's write; the next check is due one
 * interval after this one began. */
static void
probe_done(struct probe *p, bool ok, unsigned err, unsigned status,
    const char *what, uint64_t now)
{
	probe_stop(p);
	p->pending = true;
	p->ok = ok;
	p->err = err;
	p->status = status;
	p->last.checked = true;
	p->last.ok = ok;
	p->last.at_ms = now;
	snprintf(p->last.what, sizeof(p->last.what), "%s", what);
	p->next_ms = p->start_ms + p->interval_ms;
	if (p->next_ms <= now)
		p->next_ms = now + 1;
	p->hc->dirty = true;
}

/* "HTTP/1.x NNN ..." in the bytes read so far: 1 decided, 0 need more. */
static int
read_status(struct probe *p, uint64_t now)
{
	char *eol = memchr(p->line, '\n', p->len), what[96];
	unsigned st;

	if (eol == NULL) {
		if (p->len < sizeof(p->line))
			return 0;
		probe_done(p, false, HEALTH_ERR_BAD, 0, "status line too "
		    "long", now);
		return 1;
	}
	if (p->len < 12 || memcmp(p->line, "HTTP/1.", 7) != 0 ||
	    p->line[8] != ' ' || p->line[9] < '1' || p->line[9] > '5' ||
	    p->line[10] < '0' || p->line[10] > '9' ||
	    p->line[11] < '0' || p->line[11] > '9') {
		probe_done(p, false, HEALTH_ERR_BAD, 0, "not an HTTP status "
		    "line", now);
		return 1;
	}
	st = (unsigned)(p->line[9] - '0') * 100 +
	    (unsigned)(p->line[10] - '0') * 10 + (unsigned)(p->line[11] - '0');
	snprintf(what, sizeof(what), "status %u", st);
	if (st >= p->smin && st <= p->smax)
		probe_done(p, true, HEALTH_ERR_NONE, st, what, now);
	else
		probe_done(p, false, HEALTH_ERR_STATUS, st, what, now);
	return 1;
}

static void
probe_fail_errno(struct probe *p, unsigned err, const char *step, int e,
    uint64_t now)
{
	char what[96];

	snprintf(what, sizeof(what), "%s: %s", step, strerror(e));
	probe_done(p, false, err, 0, what, now);
}

/* Advance the check as far as the socket allows. */
static void
probe_run(struct probe *p, uint64_t now)
{
	struct epoll_event e;
	socklen_t elen = sizeof(int);
	int err = 0;
	ssize_t n;

	if (p->st == PROBE_CONNECTING) {
		if (getsockopt(p->ev.fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = errno;
		if (err == EINPROGRESS || err == EALREADY)
			return;
		if (err != 0) {
			probe_fail_errno(p, HEALTH_ERR_CONNECT, "connect", err,
			    now);
			return;
		}
		p->st = PROBE_SENDING;
	}
	while (p->st == PROBE_SENDING) {
		n = send(p->ev.fd, p->req + p->sent, p->reqlen - p->sent,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			probe_fail_errno(p, HEALTH_ERR_CLOSED, "send", errno,
			    now);
			return;
		}
		p->sent += (size_t)n;
		if (p->sent < p->reqlen)
			continue;
		p->st = PROBE_READING;
		/* Level-triggered: stop asking for writability. */
		e.events = EPOLLIN;
		e.data.ptr = &p->ev;
		epoll_ctl(p->hc->m->epfd, EPOLL_CTL_MOD, p->ev.fd, &e);
	}
	while (p->st == PROBE_READING) {
		n = recv(p->ev.fd, p->line + p->len, sizeof(p->line) - p->len,
		    MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			probe_fail_errno(p, HEALTH_ERR_CLOSED, "read", errno,
			    now);
			return;
		}
		if (n == 0) {
			probe_done(p, false, HEALTH_ERR_CLOSED, 0, "closed "
			    "before a status line", now);
			return;
		}
		p->len += (size_t)n;
		if (read_status(p, now))
			return;
	}
}

static void
probe_event(struct master_ev *ev, uint32_t events)
{
	struct probe *p = (struct probe *)ev;	/* ev is its first member */

	(void)events;
	probe_run(p, master_now_ms());
}

static void
probe_start(struct probe *p, uint64_t now)
{
	struct epoll_event e;
	int fd;

	p->start_ms = now;
	p->deadline_ms = now + p->timeout_ms;
	p->sent = p->len = 0;
	fd = socket(p->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0) {
		probe_fail_errno(p, HEALTH_ERR_CONNECT, "socket", errno, now);
		return;
	}
	if (connect(fd, (struct sockaddr *)&p->ss, p->sslen) < 0 &&
	    errno != EINPROGRESS) {
		int en = errno;

		close(fd);
		probe_fail_errno(p, HEALTH_ERR_CONNECT, "connect", en, now);
		return;
	}
	p->ev.fd = fd;
	p->st = PROBE_CONNECTING;
	e.events = EPOLLIN | EPOLLOUT;
	e.data.ptr = &p->ev;
	if (epoll_ctl(p->hc->m->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		int en = errno;

		probe_stop(p);
		probe_fail_errno(p, HEALTH_ERR_CONNECT, "epoll", en, now);
	}
}

/* ---- the set of probes --------------------------------------------- */

static void
probe_free(struct probe *p)
{
	if (p == NULL)
		return;
	probe_stop(p);
	free(p->svc);
	free(p->path);
	free(p);
}

/* Take the settings of service SC's instance A (a new probe when P is
 * NULL). The probe keeps copies: a reload frees the configuration. */
static struct probe *
probe_set(struct health_checks *hc, struct probe *p,
    const struct cfg_service *sc, const struct cfg_addr *a, uint64_t now)
{
	const struct cfg_health *h = &sc->health;
	char *path = strdup(h->path), req[REQ_MAX];
	int n;

	if (path == NULL)
		return NULL;
	if (p == NULL) {
		if ((p = calloc(1, sizeof(*p))) == NULL ||
		    (p->svc = strdup(sc->name)) == NULL) {
			free(p);
			free(path);
			return NULL;
		}
		p->hc = hc;
		p->ev.fd = -1;
		p->ev.fn = probe_event;
		p->next_ms = now;	/* a new instance: check at once */
		snprintf(p->addr, sizeof(p->addr), "%s", a->text);
		p->klen = breaker_key(sc->name, a->text, p->key,
		    sizeof(p->key));
	}
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n"
	    "User-Agent: portico-health\r\nConnection: close\r\n\r\n",
	    path, p->addr);
	if (n < 0 || (size_t)n >= sizeof(req))
		n = 0;
	/* A check in flight with another request is started again. */
	if (p->st != PROBE_IDLE && ((size_t)n != p->reqlen ||
	    memcmp(req, p->req, (size_t)n) != 0)) {
		probe_stop(p);
		p->next_ms = now;
	}
	memcpy(p->req, req, (size_t)n);
	p->reqlen = (size_t)n;
	free(p->path);
	p->path = path;
	memcpy(&p->ss, &a->ss, sizeof(p->ss));
	p->sslen = a->len;
	p->interval_ms = h->interval_ms;
	p->timeout_ms = h->timeout_ms;
	p->fall = h->fall;
	p->rise = h->rise;
	p->smin = h->status_min;
	p->smax = h->status_max;
	if (p->next_ms > now + p->interval_ms)
		p->next_ms = now + p->interval_ms;
	p->keep = true;
	return p;
}

static struct probe *
find(const struct health_checks *hc, const char *svc, const char *addr)
{
	size_t i;

	for (i = 0; i < hc->n; i++)
		if (strcmp(hc->p[i]->svc, svc) == 0 &&
		    strcmp(hc->p[i]->addr, addr) == 0)
			return hc->p[i];
	return NULL;
}

/* Count (OUT NULL) or collect the probes CFG asks for, reusing the
 * probes of HC (a running check goes on). Number of probes, -1 when
 * out of memory. */
static long
collect(struct health_checks *hc, const struct config *cfg,
    struct probe **out, size_t n, uint64_t now)
{
	size_t i, j, k;
	struct probe *p;

	for (i = 0; cfg != NULL && i < cfg->nservices; i++) {
		const struct cfg_service *sc = &cfg->services[i];

		if (!sc->health.enabled)
			continue;
		for (j = 0; j < sc->ninstances; j++) {
			const struct cfg_addr *a = &sc->instances[j];

			for (k = 0; out != NULL && k < n; k++)
				if (strcmp(out[k]->svc, sc->name) == 0 &&
				    strcmp(out[k]->addr, a->text) == 0)
					break;
			if (out != NULL && k < n)
				continue;	/* listed already */
			if (out != NULL) {
				p = find(hc, sc->name, a->text);
				if (p != NULL && p->keep)
					p = NULL;	/* cannot be: dup */
				if ((p = probe_set(hc, p, sc, a, now)) == NULL)
					return -1;
				out[n] = p;
			}
			n++;
		}
	}
	return (long)n;
}

/* Follow the configurations: the serving one and a reload's next one,
 * whose settings win for an instance in both. */
static int
rebuild(struct health_checks *hc, const struct config *cfg,
    const struct config *next, uint64_t now)
{
	struct probe **np;
	long cap, n;
	size_t i;

	cap = collect(hc, next, NULL, 0, now) + collect(hc, cfg, NULL, 0, now);
	np = calloc(cap > 0 ? (size_t)cap : 1, sizeof(*np));
	if (np == NULL)
		return -1;
	for (i = 0; i < hc->n; i++)
		hc->p[i]->keep = false;
	if ((n = collect(hc, next, np, 0, now)) < 0 ||
	    (n = collect(hc, cfg, np, (size_t)n, now)) < 0) {
		/* Out of memory: the probes made are freed, the old set
		 * stays; a later tick tries again. */
		for (i = 0; i < (size_t)cap && np[i] != NULL; i++)
			if (find(hc, np[i]->svc, np[i]->addr) != np[i])
				probe_free(np[i]);
		free(np);
		return -1;
	}
	for (i = 0; i < hc->n; i++)
		if (!hc->p[i]->keep)
			probe_free(hc->p[i]);
	free(hc->p);
	hc->p = np;
	hc->n = (size_t)n;
	hc->cfg = cfg;
	hc->next_cfg = next;
	hc->generation = hc->m->generation;
	return 0;
}

/* ---- results ------------------------------------------------------- */

/* One line per change of state, with the reason. */
static void
log_result(const struct probe *p, enum health_change ch,
    const struct health *h)
{
	if (ch == HEALTH_WENT_UP && h->ok_run < p->rise)
		log_info("health %s/%s: up (first check: %s)", p->svc,
		    p->addr, p->last.what);
	else if (ch == HEALTH_WENT_UP)
		log_info("health %s/%s: up (%u check%s passed: %s)", p->svc,
		    p->addr, h->ok_run, h->ok_run == 1 ? "" : "s",
		    p->last.what);
	else if (ch == HEALTH_WENT_DOWN && h->fail_run < p->fall)
		log_warn("health %s/%s: down (first check: %s)", p->svc,
		    p->addr, p->last.what);
	else if (ch == HEALTH_WENT_DOWN)
		log_warn("health %s/%s: down (%u check%s failed: %s)", p->svc,
		    p->addr, h->fail_run, h->fail_run == 1 ? "" : "s",
		    p->last.what);
}

/* Pending results into the store: one short write txn each, taken only
 * when something changed. */
static void
write_results(struct health_checks *hc, uint64_t now)
{
	enum health_change ch;
	struct health h;
	struct store *st;
	size_t i;
	int rc;

	hc->dirty = false;
	if (store_master_open(&st) < 0) {
		/* Logged by the store; the next checks try again. */
		for (i = 0; i < hc->n; i++)
			hc->p[i]->pending = false;
		return;
	}
	for (i = 0; i < hc->n; i++) {
		struct probe *p = hc->p[i];

		if (!p->pending || p->klen < 0)
			continue;
		p->pending = false;
		rc = health_update(st, p->key, (size_t)p->klen, p->ok, p->fall,
		    p->rise, store_now_ns(), p->err, p->status, &h, &ch);
		if (rc < 0) {
			log_error("health %s/%s: recording a check: %s",
			    p->svc, p->addr, store_strerror(rc));
			continue;
		}
		log_result(p, ch, &h);
	}
	store_close(st);
	(void)now;
}

/* ---- the module ---------------------------------------------------- */

static void
assume_up(const struct config *cfg)
{
	struct health_key *keys;
	char (*kb)[BREAKER_KEY_MAX];
	struct store *st;
	size_t i, j, n = 0, total = 0;
	int k;

	for (i = 0; i < cfg->nservices; i++)
		if (cfg->services[i].health.enabled)
			total += cfg->services[i].ninstances;
	if (total == 0 || store_master_open(&st) < 0)
		return;
	keys = calloc(total, sizeof(*keys));
	kb = calloc(total, sizeof(*kb));
	for (i = 0; keys != NULL && kb != NULL && i < cfg->nservices; i++) {
		const struct cfg_service *sc = &cfg->services[i];

		for (j = 0; sc->health.enabled && j < sc->ninstances; j++) {
			k = breaker_key(sc->name, sc->instances[j].text, kb[n],
			    sizeof(kb[n]));
			if (k < 0)
				continue;
			keys[n].key = kb[n];
			keys[n++].klen = (size_t)k;
		}
	}
	if (keys != NULL && kb != NULL &&
	    (k = health_assume_up(st, keys, n, store_now_ns())) < 0)
		log_error("health: recording instances as up at start: %s",
		    store_strerror(k));
	free(keys);
	free(kb);
	store_close(st);
}

struct health_checks *
health_checks_open(struct master *m)
{
	struct health_checks *hc = calloc(1, sizeof(*hc));

	if (hc == NULL) {
		log_error("health checks: out of memory");
		return NULL;
	}
	hc->m = m;
	if (m->handoff_fd < 0)
		assume_up(m->cfg);
	if (rebuild(hc, m->cfg, NULL, master_now_ms()) < 0) {
		log_error("health checks: out of memory");
		free(hc);
		return NULL;
	}
	return hc;
}

void
health_checks_close(struct health_checks *hc)
{
	size_t i;

	if (hc == NULL)
		return;
	for (i = 0; i < hc->n; i++)
		probe_free(hc->p[i]);
	free(hc->p);
	free(hc);
}

void
health_checks_tick(struct health_checks *hc, uint64_t now)
{
	struct master *m;
	size_t i;

	if (hc == NULL)
		return;
	m = hc->m;
	if (m->upgraded || m->state != MASTER_RUNNING) {
		/* The new master checks now (or nobody serves). */
		for (i = 0; i < hc->n; i++)
			probe_stop(hc->p[i]);
		return;
	}
	if ((m->cfg != hc->cfg || m->next_cfg != hc->next_cfg ||
	    m->generation != hc->generation) &&
	    rebuild(hc, m->cfg, m->next_cfg, now) < 0)
		log_error("health checks: out of memory; keeping the "
		    "previous set");
	for (i = 0; i < hc->n; i++) {
		struct probe *p = hc->p[i];

		if (p->st != PROBE_IDLE && now >= p->deadline_ms) {
			char what[96];

			snprintf(what, sizeof(what), "no status line within "
			    "%u ms", p->timeout_ms);
			probe_done(p, false, HEALTH_ERR_TIMEOUT, 0, what, now);
		}
		if (p->st == PROBE_IDLE && now >= p->next_ms && !p->pending)
			probe_start(p, now);
	}
	if (hc->dirty)
		write_results(hc, now);
}

uint64_t
health_checks_deadline(const struct health_checks *hc)
{
	uint64_t t = 0, d;
	size_t i;

	if (hc == NULL || hc->m->upgraded || hc->m->state != MASTER_RUNNING)
		return 0;	/* nothing runs: no wake-up */
	for (i = 0; i < hc->n; i++) {
		const struct probe *p = hc->p[i];

		d = p->st == PROBE_IDLE ? p->next_ms : p->deadline_ms;
		if (t == 0 || d < t)
			t = d;
	}
	return t;
}

bool
health_checks_last(const struct health_checks *hc, const char *svc,
    const char *addr, struct health_checks_last *out)
{
	const struct probe *p;

	memset(out, 0, sizeof(*out));
	if (hc == NULL || (p = find(hc, svc, addr)) == NULL)
		return false;
	*out = p->last;
	return true;
}
