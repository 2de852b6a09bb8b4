#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../shm/breaker.h"
#include "../shm/health.h"
#include "../shm/store.h"
#include "../worker/metrics.h"
#include "master.h"
#include "stats.h"

#define SAMPLE_MS	1000

/* A route's series. Key 0 is the no-route one (name NULL). A "calls"
 * key is a service's: the calls aggregate routes made to it (its name is
 * the service's, which may also be a route's). */
struct rkey {
	char *name;
	char *service;
	bool calls;
	bool cache;
	bool used;			/* some live region has it */
	struct metrics_route carried;	/* from regions already folded */
	uint64_t ring[STATS_RING];	/* request totals, by sample */
	unsigned nring;			/* valid samples (newest last) */
};

struct ikey {
	char *service;
	char *addr;
	bool checks;			/* its service has health checks */
	bool breaker;			/* its service has a breaker */
	bool used;
	struct metrics_inst carried;
};

struct stats_gen {
	struct stats_gen *next;
	struct metrics_region *rg;
	unsigned *rk;			/* key of each route block */
	unsigned *ik;			/* key of each instance block */
	unsigned *svc_first;		/* by service: its first instance
					 * block (services in config order) */
	char **svc_names;
	unsigned nsvc;
};

struct stats {
	struct stats_gen *gens;
	struct rkey *r;
	size_t nr, capr;
	struct ikey *i;
	size_t ni, capi;
	uint64_t bytes_in;		/* carried */
	uint64_t reloads_ok, reloads_failed, restarts;
	uint64_t ring_ms[STATS_RING];	/* when each sample was taken */
	unsigned ring_head;		/* next sample goes here */
	unsigned ring_n;
	uint64_t last_sample;
	uint64_t start_unix_ms;
};

static const char *const classes[METRICS_CLASSES] = {
	"other", "1xx", "2xx", "3xx", "4xx", "5xx",
};

const char *
stats_code_class(unsigned i)
{
	return i < METRICS_CLASSES ? classes[i] : "other";
}

uint64_t
stats_requests(const struct metrics_route *r)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < METRICS_CLASSES; i++)
		n += r->status[i];
	return n;
}

static bool
str_same(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static int
set_str(char **dst, const char *src)
{
	char *p = NULL;

	if (str_same(*dst, src))
		return 0;
	if (src != NULL && (p = strdup(src)) == NULL)
		return -1;
	free(*dst);
	*dst = p;
	return 0;
}

struct stats *
stats_new(void)
{
	struct stats *st = calloc(1, sizeof(*st));
	struct timespec ts;

	if (st == NULL)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &ts);
	st->start_unix_ms = (uint64_t)ts.tv_sec * 1000 +
	    (uint64_t)ts.tv_nsec / 1000000;
	/* The no-route key is always there. */
	st->r = calloc(8, sizeof(*st->r));
	if (st->r == NULL) {
		free(st);
		return NULL;
	}
	st->capr = 8;
	st->nr = 1;
	st->r[0].used = true;
	return st;
}

static void
gen_free(struct stats_gen *g)
{
	unsigned i;

	if (g == NULL)
		return;
	metrics_region_unmap(g->rg);
	for (i = 0; g->svc_names != NULL && i < g->nsvc; i++)
		free(g->svc_names[i]);
	free(g->svc_names);
	free(g->svc_first);
	free(g->rk);
	free(g->ik);
	free(g);
}

void
stats_free(struct stats *st)
{
	struct stats_gen *g;
	size_t k;

	if (st == NULL)
		return;
	while ((g = st->gens) != NULL) {
		st->gens = g->next;
		gen_free(g);
	}
	for (k = 0; k < st->nr; k++) {
		free(st->r[k].name);
		free(st->r[k].service);
	}
	for (k = 0; k < st->ni; k++) {
		free(st->i[k].service);
		free(st->i[k].addr);
	}
	free(st->r);
	free(st->i);
	free(st);
}

/* The key of route NAME (CALLS: of the calls to service NAME), made when
 * missing; -1 when out of memory. */
static long
route_key(struct stats *st, const char *name, bool calls)
{
	struct rkey *p;
	size_t k, spare = st->nr;

	for (k = 1; k < st->nr; k++) {
		if (st->r[k].name == NULL) {
			if (spare == st->nr)
				spare = k;
			continue;
		}
		if (st->r[k].calls == calls &&
		    strcmp(st->r[k].name, name) == 0)
			return (long)k;
	}
	if (spare == st->nr) {
		if (st->nr == st->capr) {
			p = realloc(st->r, st->capr * 2 * sizeof(*p));
			if (p == NULL)
				return -1;
			st->r = p;
			st->capr *= 2;
		}
		st->nr++;
	}
	memset(&st->r[spare], 0, sizeof(st->r[spare]));
	st->r[spare].calls = calls;
	if ((st->r[spare].name = strdup(name)) == NULL) {
		if (spare == st->nr - 1)
			st->nr--;
		return -1;
	}
	return (long)spare;
}

static long
inst_key(struct stats *st, const char *service, const char *addr)
{
	struct ikey *p;
	size_t k, spare = st->ni;

	for (k = 0; k < st->ni; k++) {
		if (st->i[k].service == NULL) {
			if (spare == st->ni)
				spare = k;
			continue;
		}
		if (strcmp(st->i[k].service, service) == 0 &&
		    strcmp(st->i[k].addr, addr) == 0)
			return (long)k;
	}
	if (spare == st->ni) {
		if (st->ni == st->capi) {
			size_t cap = st->capi ? st->capi * 2 : 8;

			p = realloc(st->i, cap * sizeof(*p));
			if (p == NULL)
				return -1;
			st->i = p;
			st->capi = cap;
		}
		st->ni++;
	}
	memset(&st->i[spare], 0, sizeof(st->i[spare]));
	st->i[spare].service = strdup(service);
	st->i[spare].addr = strdup(addr);
	if (st->i[spare].service == NULL || st->i[spare].addr == NULL) {
		free(st->i[spare].service);
		free(st->i[spare].addr);
		st->i[spare].service = st->i[spare].addr = NULL;
		if (spare == st->ni - 1)
			st->ni--;
		return -1;
	}
	return (long)spare;
}

/* Which keys some live region has; the others are dropped (a route a
 * reload removed, once its last generation has gone). */
static void
mark_used(struct stats *st)
{
	struct stats_gen *g;
	size_t k;

	for (k = 1; k < st->nr; k++)
		st->r[k].used = false;
	for (k = 0; k < st->ni; k++)
		st->i[k].used = false;
	for (g = st->gens; g != NULL; g = g->next) {
		for (k = 0; k < g->rg->nroutes; k++)
			st->r[g->rk[k]].used = true;
		for (k = 0; k < g->rg->ninst; k++)
			st->i[g->ik[k]].used = true;
	}
	for (k = 1; k < st->nr; k++)
		if (!st->r[k].used && st->r[k].name != NULL) {
			free(st->r[k].name);
			free(st->r[k].service);
			memset(&st->r[k], 0, sizeof(st->r[k]));
		}
	for (k = 0; k < st->ni; k++)
		if (!st->i[k].used && st->i[k].service != NULL) {
			free(st->i[k].service);
			free(st->i[k].addr);
			memset(&st->i[k], 0, sizeof(st->i[k]));
		}
}

struct stats_gen *
stats_gen_new(struct stats *st, const struct config *cfg)
{
	struct stats_gen *g;
	unsigned nr = metrics_route_count(cfg), ni = metrics_inst_count(cfg);
	size_t i, j, b;
	long k;
	int err;

	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->rk = calloc(nr, sizeof(*g->rk));
	g->ik = calloc(ni ? ni : 1, sizeof(*g->ik));
	g->nsvc = (unsigned)cfg->nservices;
	g->svc_first = calloc(g->nsvc + 1, sizeof(*g->svc_first));
	g->svc_names = calloc(g->nsvc + 1, sizeof(*g->svc_names));
	if (g->rk == NULL || g->ik == NULL || g->svc_first == NULL ||
	    g->svc_names == NULL)
		goto fail;
	g->rg = metrics_region_map(cfg->server.workers, nr, ni);
	if (g->rg == NULL)
		goto fail;
	for (i = 0; i < cfg->nroutes; i++) {
		const struct cfg_route *r = &cfg->routes[i];

		if ((k = route_key(st, r->name, false)) < 0)
			goto fail;
		g->rk[i] = (unsigned)k;
		/* The latest configuration says what a route is. */
		if (set_str(&st->r[k].service, r->service >= 0 ?
		    cfg->services[r->service].name : NULL) < 0)
			goto fail;
		st->r[k].cache = r->has_cache;
		st->r[k].used = true;
	}
	g->rk[cfg->nroutes] = 0;
	for (i = 0, b = 0; i < cfg->nservices; i++) {
		const struct cfg_service *s = &cfg->services[i];

		if ((k = route_key(st, s->name, true)) < 0 ||
		    set_str(&st->r[k].service, s->name) < 0)
			goto fail;
		g->rk[cfg->nroutes + 1 + i] = (unsigned)k;
		st->r[k].used = true;
		g->svc_first[i] = (unsigned)b;
		if ((g->svc_names[i] = strdup(s->name)) == NULL)
			goto fail;
		for (j = 0; j < s->ninstances; j++, b++) {
			if ((k = inst_key(st, s->name,
			    s->instances[j].text)) < 0)
				goto fail;
			g->ik[b] = (unsigned)k;
			st->i[k].used = true;
			st->i[k].checks = s->health.enabled;
			st->i[k].breaker = s->breaker.enabled;
		}
	}
	g->svc_first[g->nsvc] = (unsigned)b;
	g->next = st->gens;
	st->gens = g;
	return g;
fail:
	err = errno ? errno : ENOMEM;
	gen_free(g);
	mark_used(st);	/* keys made for G alone go again */
	errno = err;
	return NULL;
}

struct metrics_region *
stats_gen_region(const struct stats_gen *g)
{
	return g->rg;
}

void
stats_reloaded(struct stats *st, bool ok)
{
	if (ok)
		st->reloads_ok++;
	else
		st->reloads_failed++;
}

void
stats_restarted(struct stats *st)
{
	st->restarts++;
}

/* Add every block of G (all its workers) into R[] and I[] by key. */
static void
gen_sum(const struct stats_gen *g, struct metrics_route *r,
    struct metrics_inst *in, uint64_t *bytes_in)
{
	struct metrics_region *rg = g->rg;
	const struct metrics_route *rb;
	const struct metrics_inst *ib;
	unsigned w, k;

	for (w = 0; w < rg->nworkers; w++) {
		rb = metrics_routes(rg, w);
		ib = metrics_insts(rg, w);
		for (k = 0; k < rg->nroutes; k++)
			metrics_route_add(&r[g->rk[k]], &rb[k]);
		for (k = 0; k < rg->ninst; k++)
			metrics_inst_add(&in[g->ik[k]], &ib[k]);
		*bytes_in += METRIC_GET(&metrics_whdr(rg, w)->bytes_in);
	}
}

static bool
slots_use(const struct master_slot *s, unsigned n, const struct stats_gen *g)
{
	unsigned i;

	for (i = 0; s != NULL && i < n; i++)
		if (s[i].mg == g)
			return true;
	return false;
}

/* Regions no slot points at: no process can write them any more. */
static void
fold_unused(struct master *m)
{
	struct stats *st = m->stats;
	struct stats_gen **pg = &st->gens, *g;
	struct metrics_route *r;
	struct metrics_inst *in;
	bool folded = false;
	size_t k;

	while ((g = *pg) != NULL) {
		if (slots_use(m->slots, m->nslots, g) ||
		    slots_use(m->next, m->nnext, g) ||
		    slots_use(m->old, m->nold, g)) {
			pg = &g->next;
			continue;
		}
		r = calloc(st->nr, sizeof(*r));
		in = calloc(st->ni ? st->ni : 1, sizeof(*in));
		if (r == NULL || in == NULL) {
			free(r);
			free(in);
			return;		/* next turn */
		}
		gen_sum(g, r, in, &st->bytes_in);
		for (k = 0; k < st->nr; k++)
			metrics_route_add(&st->r[k].carried, &r[k]);
		for (k = 0; k < st->ni; k++)
			metrics_inst_add(&st->i[k].carried, &in[k]);
		free(r);
		free(in);
		*pg = g->next;
		gen_free(g);
		folded = true;
	}
	if (folded)
		mark_used(st);
}

/* Totals by key now: carried + every live region. */
static int
sum_all(struct stats *st, struct metrics_route **rp, struct metrics_inst **ip,
    uint64_t *bytes_in)
{
	struct metrics_route *r = calloc(st->nr, sizeof(*r));
	struct metrics_inst *in = calloc(st->ni ? st->ni : 1, sizeof(*in));
	struct stats_gen *g;
	size_t k;

	if (r == NULL || in == NULL) {
		free(r);
		free(in);
		return -1;
	}
	*bytes_in = st->bytes_in;
	for (k = 0; k < st->nr; k++)
		metrics_route_add(&r[k], &st->r[k].carried);
	for (k = 0; k < st->ni; k++)
		metrics_inst_add(&in[k], &st->i[k].carried);
	for (g = st->gens; g != NULL; g = g->next)
		gen_sum(g, r, in, bytes_in);
	*rp = r;
	*ip = in;
	return 0;
}

static void
sample(struct stats *st, uint64_t now)
{
	struct metrics_route *r;
	struct metrics_inst *in;
	uint64_t bytes;
	size_t k;

	if (sum_all(st, &r, &in, &bytes) < 0)
		return;
	for (k = 0; k < st->nr; k++) {
		struct rkey *e = &st->r[k];

		if (e->nring == STATS_RING)
			memmove(e->ring, e->ring + 1,
			    (STATS_RING - 1) * sizeof(e->ring[0]));
		else
			e->nring++;
		e->ring[e->nring - 1] = stats_requests(&r[k]);
	}
	st->ring_ms[st->ring_head] = now;
	st->ring_head = (st->ring_head + 1) % STATS_RING;
	if (st->ring_n < STATS_RING)
		st->ring_n++;
	free(r);
	free(in);
}

void
stats_tick(struct master *m, uint64_t now)
{
	struct stats *st = m->stats;

	if (st == NULL)
		return;
	fold_unused(m);
	if (now - st->last_sample >= SAMPLE_MS || st->last_sample == 0) {
		st->last_sample = now;
		sample(st, now);
	}
}

/* When the sample N back from the newest was taken (N < ring_n). */
static uint64_t
sample_ms(const struct stats *st, unsigned n)
{
	return st->ring_ms[(st->ring_head + 2 * STATS_RING - 1 - n) %
	    STATS_RING];
}

/* Requests/s of key K whose total is now TOTAL; *window_s its span. */
static double
key_rate(const struct stats *st, const struct rkey *e, uint64_t total,
    uint64_t now, double *window_s)
{
	unsigned n = e->nring < st->ring_n ? e->nring : st->ring_n;
	uint64_t t0, base;
	double span;

	if (n == 0)
		return 0;
	t0 = sample_ms(st, n - 1);
	base = e->ring[e->nring - n];
	span = (double)(now - t0) / 1000.0;
	if (span <= 0 || total < base)
		return 0;
	if (span > *window_s)
		*window_s = span;
	return (double)(total - base) / span;
}

/* The services: the serving configuration's in order, then any other a
 * route or an instance still names; each the sum of its routes and of its
 * instances' errors. The instances are regrouped by service, in that
 * order. */
static int
add_services(struct master *m, struct stats_view *v)
{
	const struct config *cfg = m->cfg;
	struct stats_service *sv;
	struct stats_inst *grouped;
	size_t i, j, n = 0, g = 0;
	unsigned k;

	sv = calloc(cfg->nservices + v->nroutes + v->ncalls + v->ninst + 1,
	    sizeof(*sv));
	grouped = calloc(v->ninst ? v->ninst : 1, sizeof(*grouped));
	if (sv == NULL || grouped == NULL) {
		free(sv);
		free(grouped);
		return -1;
	}
	v->services = sv;
	for (i = 0; i < cfg->nservices; i++)
		sv[n++].name = cfg->services[i].name;
	for (i = 0; i < v->nroutes + v->ncalls + v->ninst; i++) {
		const struct stats_route *r = i < v->nroutes ? &v->routes[i] :
		    i < v->nroutes + v->ncalls ? &v->calls[i - v->nroutes] :
		    NULL;
		const char *s = r != NULL ? r->service :
		    v->insts[i - v->nroutes - v->ncalls].service;

		if (s == NULL)
			continue;
		for (j = 0; j < n && strcmp(sv[j].name, s) != 0; j++)
			;
		if (j == n)
			sv[n++].name = s;
		if (r != NULL) {
			metrics_route_add(&sv[j].m, &r->m);
			sv[j].rate += r->rate;
		}
	}
	v->nservices = n;
	for (j = 0; j < n; j++) {
		sv[j].first_inst = g;
		for (i = 0; i < v->ninst; i++) {
			if (strcmp(v->insts[i].service, sv[j].name) != 0)
				continue;
			grouped[g++] = v->insts[i];
			sv[j].ninst++;
			for (k = 0; k < MU__COUNT; k++)
				sv[j].err[k] += v->insts[i].m.err[k];
		}
	}
	free(v->insts);
	v->insts = grouped;
	return 0;
}

/*
 * Health and breaker state of instance K, as the shared store shows them
 * (ST may be NULL: unknown): health 1 up / 0 down where its service has
 * checks and a check or a breaker has decided; the breaker 0 closed (no
 * record is closed), 1 half-open, 2 open where its service has one.
 */
static void
inst_state(struct store *st, const struct ikey *k, struct stats_inst *si)
{
	struct breaker_view v;

	si->health = STATS_UNKNOWN;
	si->breaker = STATS_UNKNOWN;
	if (st == NULL || (!k->checks && !k->breaker) ||
	    breaker_view(st, k->service, k->addr, &v) < 0)
		return;
	if (k->checks && v.has_health && v.h.state != HEALTH_UNKNOWN)
		si->health = v.h.state == HEALTH_UP ? 1 : 0;
	if (k->breaker)
		si->breaker = !v.has_breaker || v.b.state == BREAKER_CLOSED ?
		    0 : v.b.state == BREAKER_HALF_OPEN ? 1 : 2;
}

/* Workers by generation state, and the connections they hold. */
static void
count_workers(struct master *m, struct stats_view *v)
{
	const struct master_slot *sets[3] = { m->slots, m->next, m->old };
	unsigned ns[3] = { m->nslots, m->nnext, m->nold };
	unsigned *cnt[3] = { &v->workers_serving, &v->workers_starting,
	    &v->workers_draining };
	unsigned i, j;

	for (i = 0; i < 3; i++)
		for (j = 0; sets[i] != NULL && j < ns[i]; j++) {
			const struct worker_counters *wc;

			if (sets[i][j].pid <= 0)
				continue;
			(*cnt[i])++;
			wc = &m->counters->slot[sets[i][j].index];
			v->conns_open += COUNTER_GET(&wc->conns_open);
			v->upstream_conns += COUNTER_GET(&wc->upstream_conns);
		}
	/* A slot's counts are never reset (a new worker in it adds on), so
	 * the sum over every slot only grows. */
	for (i = 0; i < m->counters->nslots; i++)
		v->tls_handshake_failures += COUNTER_GET(
		    &m->counters->slot[i].tls_handshake_failures);
}

/* The view's order of keys: the serving generation's first, in its
 * order, then every other key in use; ROUTES adds the no-route key last.
 * Returns the count. */
static size_t
key_order(const unsigned *first, size_t nfirst, size_t nkeys,
    bool (*live)(const struct stats *, size_t), const struct stats *st,
    bool *seen, size_t *order)
{
	size_t k, n = 0;

	for (k = 0; k < nfirst; k++)
		if (!seen[first[k]]) {
			seen[first[k]] = true;
			order[n++] = first[k];
		}
	for (k = 0; k < nkeys; k++)
		if (!seen[k] && live(st, k)) {
			seen[k] = true;
			order[n++] = k;
		}
	return n;
}

static bool
route_live(const struct stats *st, size_t k)
{
	return k > 0 && st->r[k].name != NULL && !st->r[k].calls;
}

static bool
inst_live(const struct stats *st, size_t k)
{
	return st->i[k].service != NULL;
}

int
stats_view(struct master *m, struct stats_view *v)
{
	struct stats *st = m->stats;
	const struct stats_gen *serving = m->nslots > 0 ? m->slots[0].mg :
	    NULL;
	struct metrics_route *r = NULL;
	struct metrics_inst *in = NULL;
	uint64_t now = master_now_ms();
	size_t *order = NULL, k, n, nserving = 0;
	bool *seen = NULL;
	struct store *store;
	int rc = -1;

	memset(v, 0, sizeof(*v));
	v->reloads_ok = st->reloads_ok;
	v->reloads_failed = st->reloads_failed;
	v->restarts = st->restarts;
	v->start_unix_ms = st->start_unix_ms;
	count_workers(m, v);
	if (sum_all(st, &r, &in, &v->bytes_in) < 0)
		return -1;
	v->routes = calloc(st->nr, sizeof(*v->routes));
	v->insts = calloc(st->ni ? st->ni : 1, sizeof(*v->insts));
	order = calloc(st->nr + st->ni + 1, sizeof(*order));
	seen = calloc(st->nr + st->ni + 1, sizeof(*seen));
	if (v->routes == NULL || v->insts == NULL || order == NULL ||
	    seen == NULL)
		goto done;
	/* Routes: the serving ones in order, draining ones, no route. */
	if (serving != NULL)
		nserving = serving->rg->nroutes - 1 - serving->nsvc;
	n = key_order(serving ? serving->rk : NULL, nserving, st->nr,
	    route_live, st, seen, order);
	order[n++] = 0;
	v->nroutes = n;
	for (k = 0; k < n; k++) {
		struct stats_route *sr = &v->routes[k];
		const struct rkey *e = &st->r[order[k]];

		sr->name = e->name;
		sr->service = e->service;
		sr->cache = e->cache;
		sr->serving = k < nserving;
		sr->m = r[order[k]];
		sr->rate = key_rate(st, e, stats_requests(&sr->m), now,
		    &v->window_s);
	}
	/* The calls of aggregates, by service (into the service rows). */
	v->calls = calloc(st->nr, sizeof(*v->calls));
	if (v->calls == NULL)
		goto done;
	for (k = 1; k < st->nr; k++) {
		const struct rkey *e = &st->r[k];
		struct stats_route *sc = &v->calls[v->ncalls];

		if (!e->calls || e->name == NULL)
			continue;
		sc->name = sc->service = e->name;
		sc->m = r[k];
		sc->rate = key_rate(st, e, stats_requests(&sc->m), now,
		    &v->window_s);
		v->ncalls++;
	}
	/* Instances: the serving ones in order, then the others. */
	memset(seen, 0, (st->nr + st->ni + 1) * sizeof(*seen));
	n = key_order(serving ? serving->ik : NULL, serving ?
	    serving->rg->ninst : 0, st->ni, inst_live, st, seen, order);
	v->ninst = n;
	if (store_master_open(&store) < 0)
		store = NULL;		/* states unknown */
	for (k = 0; k < n; k++) {
		v->insts[k].service = st->i[order[k]].service;
		v->insts[k].addr = st->i[order[k]].addr;
		v->insts[k].m = in[order[k]];
		inst_state(store, &st->i[order[k]], &v->insts[k]);
	}
	if (store != NULL)
		store_close(store);
	rc = add_services(m, v);
done:
	free(seen);
	free(order);
	free(r);
	free(in);
	return rc;
}

void
stats_view_free(struct stats_view *v)
{
	free(v->routes);
	free(v->calls);
	free(v->insts);
	free(v->services);
	memset(v, 0, sizeof(*v));
}
