#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../master/log.h"
#include "../shm/breaker.h"
#include "../shm/health.h"
#include "../shm/store.h"
#include "resilience.h"

#define NS_PER_S	1000000000ull
#define FLUSH_MS	1000	/* service counters go to the store */

/* What the store said of one instance, valid while the store's last
 * write txn id is still `txnid` (0: never read). */
struct inst_state {
	char key[BREAKER_KEY_MAX];
	uint16_t klen;
	bool keyed;			/* the key fits (else: not consulted) */
	uint64_t txnid;
	struct breaker b;
	struct health h;
};

struct svc_state {
	struct breaker_params bp;
	unsigned cap;			/* bulkhead share; 0 = no cap */
	unsigned inflight;
	struct retry_budget budget;
	struct breaker_svc unflushed;	/* counts not yet in the store */
	struct log_limit refused_log;
	struct log_limit shed_log;
	struct inst_state *inst;
};

struct resil {
	struct worker *w;
	struct svc_state *svc;
	size_t nsvc;
	struct loop_timer flush;
	struct log_limit store_log;
	struct store *st;		/* this process's, once opened */
};

static uint64_t
now_ns(const struct resil *r)
{
	return r->w->loop.now_us * 1000;
}

/* ---- the retry budget ---------------------------------------------- */

void
budget_init(struct retry_budget *b, unsigned pct, unsigned window_s,
    unsigned min_per_s, unsigned workers)
{
	memset(b, 0, sizeof(*b));
	b->pct = pct;
	b->window_s = window_s < 1 ? 1 : window_s > BUDGET_SLOTS ?
	    BUDGET_SLOTS : window_s;
	if (workers == 0)
		workers = 1;
	/* This worker's share of the node's minimum, rounded up. */
	b->reserve = ((uint64_t)min_per_s * b->window_s + workers - 1) /
	    workers;
}

/* The slot of the current second, emptied when it last counted another.
 * Every request comes here: the divisions only when a second turns. */
static unsigned
slot(struct retry_budget *b, uint64_t now_ns)
{
	uint64_t s;
	unsigned i;

	if (now_ns >= b->cur_from && now_ns < b->cur_until)
		return b->cur;
	s = now_ns / NS_PER_S;
	i = (unsigned)(s % b->window_s);
	if (b->sec[i] != s) {
		b->sec[i] = s;
		b->req[i] = b->ret[i] = 0;
	}
	b->cur = i;
	b->cur_from = s * NS_PER_S;
	b->cur_until = b->cur_from + NS_PER_S;
	return i;
}

void
budget_window(const struct retry_budget *b, uint64_t now_ns,
    uint64_t *requests, uint64_t *retries)
{
	uint64_t s = now_ns / NS_PER_S;
	unsigned i;

	*requests = *retries = 0;
	for (i = 0; i < b->window_s; i++)
		if (b->sec[i] <= s && s - b->sec[i] < b->window_s) {
			*requests += b->req[i];
			*retries += b->ret[i];
		}
}

void
budget_request(struct retry_budget *b, uint64_t now_ns)
{
	unsigned i = slot(b, now_ns);

	if (b->req[i] < UINT32_MAX)
		b->req[i]++;
}

bool
budget_retry(struct retry_budget *b, uint64_t now_ns)
{
	uint64_t reqs, rets;
	unsigned i = slot(b, now_ns);

	budget_window(b, now_ns, &reqs, &rets);
	/* rets + 1 <= pct % of reqs + reserve, in hundredths. */
	if ((rets + 1) * 100 > (uint64_t)b->pct * reqs + b->reserve * 100) {
		b->refused++;
		return false;
	}
	if (b->ret[i] < UINT32_MAX)
		b->ret[i]++;
	return true;
}

/* ---- the store's view of an instance ------------------------------- */

/* The worker's store handle, kept: store_proc checks the pid on every
 * call (a system call), twice a request would cost more than the rest
 * of the checks. */
static struct store *
store_of(struct resil *r)
{
	if (r->st == NULL)
		r->st = store_proc(r->w->cfg->server.state_path,
		    r->w->cfg->server.workers);
	return r->st;
}

static void
store_trouble(struct resil *r, const char *what, int rc)
{
	log_limited(&r->store_log, r->w->loop.now_ms, LOG_WARN,
	    "circuit breakers: %s: %s", what, rc != 0 ? store_strerror(rc) :
	    "the shared store is unavailable");
}

/* The instance's breaker and health as of the store's latest commit;
 * NULL when the store cannot be read (nothing is then consulted). */
static struct inst_state *
current(struct resil *r, struct store *st, unsigned svc, unsigned inst)
{
	struct inst_state *is = &r->svc[svc].inst[inst];
	uint64_t t = store_txnid(st);
	MDB_txn *txn;
	int rc;

	if (!is->keyed)
		return NULL;
	if (t != 0 && t == is->txnid)
		return is;
	if ((rc = store_read_begin(st, &txn)) < 0) {
		store_trouble(r, "reading", rc);
		return NULL;
	}
	/* Read after the id: a commit in between only makes the next
	 * request read again. */
	rc = breaker_get(st, txn, is->key, is->klen, &is->b);
	if (rc >= 0)
		rc = health_get(st, txn, is->key, is->klen, &is->h);
	store_read_end(st);
	if (rc < 0) {
		store_trouble(r, "reading", rc);
		is->txnid = 0;
		return NULL;
	}
	is->txnid = t;
	return is;
}

static const char *
err_text(const struct breaker *b, char *buf, size_t cap)
{
	if (b->last_err == BREAKER_ERR_STATUS)
		snprintf(buf, cap, "status %u", b->last_status);
	else
		snprintf(buf, cap, "%s", breaker_err_name(b->last_err));
	return buf;
}

/* One line per state change, by the worker whose write made it. */
static void
log_change(const struct service_rt *s, unsigned inst, enum breaker_change ch,
    const struct breaker *b, bool health)
{
	const char *name = s->cfg->name, *addr = s->inst[inst].addr->text;
	char e[32];

	switch (ch) {
	case BREAKER_OPENED:
		log_warn("breaker %s/%s: open for %llu ms after %u consecutive "
		    "failures (last: %s)%s", name, addr,
		    (unsigned long long)(b->open_ns / 1000000), b->failures,
		    err_text(b, e, sizeof(e)), health ? "; marked down until "
		    "its health checks pass" : "");
		break;
	case BREAKER_REOPENED:
		log_warn("breaker %s/%s: probe failed (%s): open again for "
		    "%llu ms%s", name, addr, err_text(b, e, sizeof(e)),
		    (unsigned long long)(b->open_ns / 1000000), health ?
		    "; marked down until its health checks pass" : "");
		break;
	case BREAKER_HALF:
		log_info("breaker %s/%s: half-open after %llu ms: letting "
		    "%u probe%s through", name, addr,
		    (unsigned long long)(b->open_ns / 1000000),
		    s->cfg->breaker.half_open,
		    s->cfg->breaker.half_open == 1 ? "" : "s");
		break;
	case BREAKER_CLOSED_NOW:
		log_info("breaker %s/%s: closed (a probe succeeded)", name,
		    addr);
		break;
	default:
		break;
	}
}

/* ---- the hooks ----------------------------------------------------- */

static bool
hook_available(void *arg, const struct service_rt *s, unsigned inst)
{
	struct resil *r = arg;
	const struct cfg_service *sc = s->cfg;
	struct svc_state *ss = &r->svc[s->index];
	struct inst_state *is;
	struct breaker after;
	enum breaker_change ch;
	struct store *st;
	int rc;

	if (!sc->breaker.enabled && !sc->health.enabled)
		return true;
	if ((st = store_of(r)) == NULL) {
		store_trouble(r, "opening the store", 0);
		return true;
	}
	if ((is = current(r, st, s->index, inst)) == NULL)
		return true;
	/* Unknown (a reload's new instance before its first check) and
	 * down are skipped alike. */
	if (sc->health.enabled && is->h.state != HEALTH_UP)
		return false;
	if (!sc->breaker.enabled)
		return true;
	switch (breaker_gate(&is->b, &ss->bp, now_ns(r))) {
	case BREAKER_PASS:
		return true;
	case BREAKER_DENY:
		return false;
	default:
		break;
	}
	/* A probe: taken under the writer lock, so the probes of every
	 * worker together stay within half_open. */
	rc = breaker_take(st, is->key, is->klen, &ss->bp, now_ns(r), &after,
	    &ch);
	is->txnid = 0;
	if (rc < 0) {
		store_trouble(r, "taking a probe", rc);
		return false;
	}
	log_change(s, inst, ch, &after, false);
	return rc == 1;
}

static void
hook_observe(void *arg, const struct service_rt *s, unsigned inst,
    enum up_result res, int status)
{
	struct resil *r = arg;
	const struct cfg_service *sc = s->cfg;
	struct svc_state *ss = &r->svc[s->index];
	struct inst_state *is;
	struct breaker copy, after;
	enum breaker_change ch;
	struct store *st;
	unsigned err;
	bool failed;
	int rc;

	if (!sc->breaker.enabled)
		return;
	switch (res) {
	case UPR_OK:
		failed = cfg_breaker_counts(&sc->breaker, status);
		err = failed ? BREAKER_ERR_STATUS : BREAKER_ERR_NONE;
		break;
	case UPR_CONNECT:
		failed = true;
		err = BREAKER_ERR_CONNECT;
		break;
	case UPR_RESET:
		failed = true;
		err = BREAKER_ERR_RESET;
		break;
	case UPR_TIMEOUT:
		failed = true;
		err = BREAKER_ERR_TIMEOUT;
		break;
	default:
		failed = true;
		err = BREAKER_ERR_BAD;
		break;
	}
	if ((st = store_of(r)) == NULL ||
	    (is = current(r, st, s->index, inst)) == NULL)
		return;
	/* The common case: a success on a closed breaker without failures
	 * changes nothing, so nothing is written. */
	copy = is->b;
	if (breaker_result(&copy, &ss->bp, now_ns(r), failed, err,
	    (unsigned)status) == BREAKER_SAME)
		return;
	rc = breaker_record(st, is->key, is->klen, &ss->bp, now_ns(r), failed,
	    err, (unsigned)status, sc->health.enabled, &after, &ch);
	is->txnid = 0;
	if (rc < 0) {
		store_trouble(r, "recording a result", rc);
		return;
	}
	log_change(s, inst, ch, &after, sc->health.enabled);
}

static void
flush(struct loop *l, struct loop_timer *t)
{
	struct resil *r = t->data;
	struct store *st = NULL;
	size_t i;
	int rc;

	for (i = 0; i < r->nsvc; i++) {
		struct svc_state *ss = &r->svc[i];
		const char *name = r->w->cfg->services[i].name;

		log_limit_tick(&ss->refused_log, l->now_ms);
		log_limit_tick(&ss->shed_log, l->now_ms);
		if (ss->unflushed.retries_refused == 0 &&
		    ss->unflushed.shed == 0)
			continue;
		if (st == NULL && (st = store_of(r)) == NULL)
			return;		/* kept for the next time */
		if ((rc = breaker_svc_add(st, name, &ss->unflushed)) < 0) {
			store_trouble(r, "counting refused retries", rc);
			return;
		}
		memset(&ss->unflushed, 0, sizeof(ss->unflushed));
	}
}

static void
flush_soon(struct resil *r)
{
	if (!loop_timer_armed(&r->flush))
		loop_timer_set(&r->w->loop, &r->flush, FLUSH_MS);
}

static int
hook_admit(void *arg, const struct service_rt *s)
{
	struct resil *r = arg;
	struct svc_state *ss = &r->svc[s->index];

	if (ss->cap != 0 && ss->inflight >= ss->cap) {
		ss->unflushed.shed++;
		log_limited(&ss->shed_log, r->w->loop.now_ms, LOG_WARN,
		    "service %s: %u requests in flight in this worker (its "
		    "share of max_inflight %u): shedding", s->cfg->name,
		    ss->inflight, s->cfg->max_inflight);
		flush_soon(r);
		return -1;
	}
	ss->inflight++;
	budget_request(&ss->budget, now_ns(r));
	return 0;
}

static void
hook_release(void *arg, const struct service_rt *s)
{
	struct resil *r = arg;
	struct svc_state *ss = &r->svc[s->index];

	if (ss->inflight > 0)
		ss->inflight--;
}

static bool
hook_may_retry(void *arg, const struct service_rt *s)
{
	struct resil *r = arg;
	struct svc_state *ss = &r->svc[s->index];

	if (budget_retry(&ss->budget, now_ns(r)))
		return true;
	ss->unflushed.retries_refused++;
	log_limited(&ss->refused_log, r->w->loop.now_ms, LOG_WARN,
	    "service %s: retry budget spent (%u%% of requests over %u s, "
	    "%u/s minimum): a retry refused", s->cfg->name,
	    s->cfg->retry_budget.percent, s->cfg->retry_budget.window_s,
	    s->cfg->retry_budget.min_per_s);
	flush_soon(r);
	return false;
}

/* ---- set-up -------------------------------------------------------- */

unsigned
resilience_retry_after(struct worker *w, const struct service_rt *s)
{
	struct resil *r = w->up_hooks.arg;
	const struct cfg_service *sc = s->cfg;
	uint64_t best = UINT64_MAX, left;
	struct inst_state *is;
	struct store *st;
	unsigned i;

	if (r == NULL || w->up_hooks.available != hook_available ||
	    (st = store_of(r)) == NULL)
		return 1;
	for (i = 0; i < s->ninst; i++) {
		if ((is = current(r, st, s->index, i)) == NULL)
			continue;
		if (sc->health.enabled && is->h.state != HEALTH_UP)
			left = (uint64_t)sc->health.interval_ms * 1000000;
		else if (sc->breaker.enabled)
			left = breaker_open_left_ns(&is->b, now_ns(r));
		else
			left = 0;
		if (left < best)
			best = left;
	}
	if (best == UINT64_MAX || best < NS_PER_S)
		return 1;
	best = (best + NS_PER_S - 1) / NS_PER_S;
	return best > 86400 ? 86400 : (unsigned)best;
}

static void
free_resil(struct resil *r)
{
	size_t i;

	for (i = 0; r->svc != NULL && i < r->nsvc; i++)
		free(r->svc[i].inst);
	free(r->svc);
	free(r);
}

int
resilience_init(struct worker *w)
{
	const struct config *cfg = w->cfg;
	unsigned workers = cfg->server.workers ? cfg->server.workers : 1;
	struct resil *r;
	size_t i, j;
	int k;

	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -1;
	r->w = w;
	r->nsvc = cfg->nservices;
	r->svc = calloc(r->nsvc ? r->nsvc : 1, sizeof(*r->svc));
	if (r->svc == NULL)
		goto fail;
	r->flush.cb = flush;
	r->flush.data = r;
	for (i = 0; i < r->nsvc; i++) {
		const struct cfg_service *sc = &cfg->services[i];
		struct svc_state *ss = &r->svc[i];

		ss->bp.failures = sc->breaker.failures;
		ss->bp.open_ns = (uint64_t)sc->breaker.open_ms * 1000000;
		ss->bp.half_open = sc->breaker.half_open;
		ss->cap = sc->max_inflight == 0 ? 0 :
		    (sc->max_inflight + workers - 1) / workers;
		budget_init(&ss->budget, sc->retry_budget.percent,
		    sc->retry_budget.window_s, sc->retry_budget.min_per_s,
		    workers);
		ss->inst = calloc(sc->ninstances ? sc->ninstances : 1,
		    sizeof(*ss->inst));
		if (ss->inst == NULL)
			goto fail;
		for (j = 0; j < sc->ninstances; j++) {
			struct inst_state *is = &ss->inst[j];

			k = breaker_key(sc->name, sc->instances[j].text,
			    is->key, sizeof(is->key));
			is->keyed = k > 0;
			is->klen = k > 0 ? (uint16_t)k : 0;
		}
	}
	w->up_hooks.available = hook_available;
	w->up_hooks.observe = hook_observe;
	w->up_hooks.admit = hook_admit;
	w->up_hooks.release = hook_release;
	w->up_hooks.may_retry = hook_may_retry;
	w->up_hooks.arg = r;
	return 0;
fail:
	free_resil(r);
	errno = ENOMEM;
	return -1;
}

void
resilience_free(struct worker *w)
{
	struct resil *r = w->up_hooks.arg;

	if (r == NULL || w->up_hooks.available != hook_available)
		return;
	/* Counts not yet in the store go now (a drained worker exits). */
	flush(&w->loop, &r->flush);
	loop_timer_cancel(&w->loop, &r->flush);
	free_resil(r);
	memset(&w->up_hooks, 0, sizeof(w->up_hooks));
}
