/*
 * cache: the response cache policy (cache.h): keys, lookups, answers
 * from entries, collapsed waits, stale answers, invalidation, and the
 * batched LRU marks of hits. Route state (struct cr) holds the route's
 * settings, the exchange slot (struct cs) the lookup key and what the
 * request asked; cache_fill.c follows a response into the store.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../master/log.h"
#include "../shm/cache_store.h"
#include "../shm/store.h"
#include "cache-int.h"
#include "cache.h"
#include "cache_http.h"

/* A hit's body up to this is copied into the exchange's arena (one
 * chunk, no malloc); a larger one is read from the store in chunks into
 * the worker's pooled send buffer. */
#ifndef CACHE_INLINE_MAX
#define CACHE_INLINE_MAX	960
#endif
#define INLINE_MAX	CACHE_INLINE_MAX
#define POLL_MAX_MS	20	/* a waiter on another worker's fetch looks
				 * at the store at least this often */

/* ---- worker state ------------------------------------------------ */

/* This process's (worker_init), for cache_tick; and its counters. */
static struct cw *proc_cw;
struct worker_counters *cache_wc;

void
cache_counters(struct worker_counters *c)
{
	cache_wc = c;
}

struct store *
cache_store_of(struct cw *w)
{
	if (w->st == NULL)
		w->st = store_proc(w->cfg->server.state_path,
		    w->cfg->server.workers);
	return w->st;
}

void
cache_warn(struct cw *w, const char *what, int rc)
{
	uint64_t now = store_now_ns() / 1000000;

	CACHE_COUNT(cache_errors);
	if (w->warned_ms != 0 && now - w->warned_ms < 1000)
		return;
	w->warned_ms = now;
	log_warn("cache: %s: %s", what, rc < 0 ? store_strerror(rc) :
	    "store unavailable");
}

static uint64_t
hash64(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* ---- route state ------------------------------------------------- */

void
cache_rq_of(const struct xctx *x, struct rq *q)
{
	q->path = x->path;
	q->plen = x->path_len;
	q->query = x->query;
	q->qlen = x->query != NULL ? x->query_len : 0;
	q->host = x->host;
	q->hlen = x->host != NULL ? x->host_len : 0;
	q->consumer = x->id.consumer;
	q->clen = x->id.consumer != NULL ? x->id.consumer_len : 0;
	q->h = x->headers;
	q->nh = x->headers != NULL ? x->nheaders : 0;
}

size_t
cache_next_name(const char *list, size_t len, size_t *i, const char **name)
{
	size_t s;

	while (*i < len && list[*i] == ',')
		(*i)++;
	s = *i;
	while (*i < len && list[*i] != ',')
		(*i)++;
	*name = list + s;
	return *i - s;
}

/* The request's value of header NAME (all its lines, ',' between) into
 * B at *N (CAP bytes): '=' VALUE, or '-' when absent. -1 when full. */
static int
put_vary_value(const struct rq *q, const char *name, size_t nl, char *b,
    size_t *n, size_t cap)
{
	bool any = false;
	size_t i;

	for (i = 0; i < q->nh; i++) {
		const struct http1_header *h = &q->h[i];
		if (!http1_name_eq(h->name, h->name_len, name, nl))
			continue;
		if (*n + h->value_len + 1 > cap)
			return -1;
		b[(*n)++] = any ? ',' : '=';
		memcpy(b + *n, h->value, h->value_len);
		*n += h->value_len;
		any = true;
	}
	if (!any) {
		if (*n + 1 > cap)
			return -1;
		b[(*n)++] = '-';
	}
	return 0;
}

/*
 * The key of request Q on route CR with the configured Vary names and
 * EXTRA more (",a,b"): PATH '\0' QUERY '\0' HOST '\0' ROUTE '\0' VALUES
 * '\0' CONSUMER (cache_store.h), into KEY. 0, or -1 when the request is
 * too large to key (it then bypasses the cache).
 */
int
cache_req_key(const struct cr *cr, const struct rq *q, const char *extra,
    size_t elen, char *key, size_t *klen)
{
	char *b = cr->w->scratch;
	size_t cap = cr->w->scratch_cap, n = 0, i, nl, k;
	const char *name, *list;
	size_t llen;
	int pass;

	if (q->qlen + q->hlen + strlen(cr->r->name) + q->clen + 8 > cap)
		return -1;
	if (q->qlen > 0)
		memcpy(b + n, q->query, q->qlen);
	n += q->qlen;
	b[n++] = '\0';
	for (i = 0; i < q->hlen; i++)
		b[n++] = (char)tolower((unsigned char)q->host[i]);
	b[n++] = '\0';
	k = strlen(cr->r->name);
	memcpy(b + n, cr->r->name, k);
	n += k;
	b[n++] = '\0';
	for (pass = 0; pass < 2; pass++) {
		list = pass == 0 ? cr->vary : extra;
		llen = pass == 0 ? cr->vary_len : elen;
		for (i = 0; list != NULL && i < llen;) {
			if ((nl = cache_next_name(list, llen, &i, &name)) == 0)
				continue;
			if (put_vary_value(q, name, nl, b, &n, cap) < 0 ||
			    n + 1 > cap)
				return -1;
			b[n++] = '\0';
		}
	}
	if (n + 1 + q->clen > cap)
		return -1;
	b[n++] = 'c';
	if (q->clen > 0)
		memcpy(b + n, q->consumer, q->clen);
	n += q->clen;
	*klen = cache_key_make(q->path, q->plen, b, n, key);
	return 0;
}

/* ---- the exchange slot ------------------------------------------- */

static void
waiter_link(struct cw *w, struct cs *cs)
{
	if (cs->linked)
		return;
	cs->wprev = NULL;
	cs->wnext = w->waiters;
	if (w->waiters != NULL)
		w->waiters->wprev = cs;
	w->waiters = cs;
	cs->linked = true;
}

static void
waiter_unlink(struct cw *w, struct cs *cs)
{
	if (!cs->linked)
		return;
	if (cs->wprev != NULL)
		cs->wprev->wnext = cs->wnext;
	else
		w->waiters = cs->wnext;
	if (cs->wnext != NULL)
		cs->wnext->wprev = cs->wprev;
	cs->linked = false;
}

/* Others poll. */
void
cache_wake(struct cw *w, uint64_t h0)
{
	struct cs *cs;

	for (cs = w->waiters; cs != NULL; cs = cs->wnext)
		if (cs->h0 == h0)
			xctx_resume(cs->x);
}

/* ---- answering from an entry ------------------------------------- */

/* The response fields a 304 carries (RFC 9110 15.4.5). */
static bool
keep_in_304(const struct http1_header *h)
{
	return http1_header_is(h, "etag") || http1_header_is(h, "date") ||
	    http1_header_is(h, "cache-control") ||
	    http1_header_is(h, "expires") || http1_header_is(h, "vary") ||
	    http1_header_is(h, "content-location");
}

/* The stored "Name: value\r\n" lines P[0..n) (an arena copy) as header
 * fields in the arena; *count of them, or NULL. */
static struct http1_header *
parse_lines(struct xctx *x, char *p, size_t n, bool only304, size_t *count)
{
	struct http1_header *h;
	size_t lines = 0, k = 0;
	char *e = p + n, *l, *colon, *end;

	for (l = p; l < e && (l = memchr(l, '\n', (size_t)(e - l))) != NULL;
	    l++)
		lines++;
	if ((h = arena_alloc(&x->arena, (lines + 1) * sizeof(*h))) == NULL)
		return NULL;
	for (l = p; l < e; l = end + 2) {
		end = memchr(l, '\r', (size_t)(e - l));
		if (end == NULL || end + 1 >= e)
			break;
		colon = memchr(l, ':', (size_t)(end - l));
		if (colon == NULL)
			continue;
		h[k].name = l;
		h[k].name_len = (size_t)(colon - l);
		h[k].value = colon + 1;
		while (h[k].value < end && *h[k].value == ' ')
			h[k].value++;
		h[k].value_len = (size_t)(end - h[k].value);
		if (!only304 || keep_in_304(&h[k]))
			k++;
	}
	*count = k;
	return h;
}

struct src_arg {
	struct body_source src;
	struct store *st;
	const char *key;
	size_t klen;
	uint64_t id;
};

static ssize_t
src_read(void *arg, uint64_t off, char *dst, size_t cap)
{
	struct src_arg *a = arg;

	return cache_read_body(a->st, a->key, a->klen, a->id, off, dst, cap);
}

/* Append "X-Cache: WHAT\r\n" and, with AGE >= 0, "Age: AGE\r\n" to the
 * response's extra lines: by hand, since a printf per hit is a tenth of
 * what a hit costs. */
static void
put_lines(struct xctx *x, const char *what, int64_t age)
{
	char buf[64], digits[24];
	size_t n = 0, k = sizeof(digits), wl = strlen(what);

	if (age >= 0) {
		do {
			digits[--k] = (char)('0' + age % 10);
			age /= 10;
		} while (age > 0);
		memcpy(buf, "Age: ", 5);
		memcpy(buf + 5, digits + k, sizeof(digits) - k);
		n = 5 + sizeof(digits) - k;
		memcpy(buf + n, "\r\n", 2);
		n += 2;
	}
	memcpy(buf + n, "X-Cache: ", 9);
	memcpy(buf + n + 9, what, wl);
	n += 9 + wl;
	memcpy(buf + n, "\r\n", 2);
	n += 2;
	if (x->resp_extra == NULL || x->resp_extra_cap - x->resp_extra_len <=
	    n)
		return;
	memcpy(x->resp_extra + x->resp_extra_len, buf, n);
	x->resp_extra_len += n;
}

/* Whether the request's conditions match E (a 304 answers). */
static bool
not_modified(const struct cs *cs, const struct cache_entry *e)
{
	int64_t t;

	if (cs->inm != NULL)
		return e->etag_len > 0 && cache_etag_match(cs->inm,
		    cs->inm_len, e->etag, e->etag_len);
	if (cs->ims != NULL && e->last_modified > 0 &&
	    cache_http_date(cs->ims, cs->ims_len, &t) == 0)
		return (int64_t)e->last_modified <= t;
	return false;
}

/*
 * Answer from entry E, read in a txn the caller holds open: everything
 * the response needs is copied before that txn ends (a large body is
 * read again from the store as it is sent, by its id). RESPOND.
 */
static int
answer(struct xctx *x, struct cs *cs, struct store *st,
    const struct cache_entry *e, enum xctx_cache what, uint64_t now_ns)
{
	struct xresp *r = &x->resp;
	bool nm = not_modified(cs, e);
	struct src_arg *sa;
	char *lines;
	uint64_t age;

	memset(r, 0, sizeof(*r));
	r->status = nm ? 304 : e->status;
	if ((lines = arena_alloc(&x->arena, e->headers_len + 1)) == NULL)
		return xctx_error(x, 503, "out_of_memory");
	memcpy(lines, e->headers, e->headers_len);
	r->headers = parse_lines(x, lines, e->headers_len, nm, &r->nheaders);
	if (r->headers == NULL)
		return xctx_error(x, 503, "out_of_memory");
	/* Without a body by rule (HEAD, 304), body_len is the length the
	 * body would have: the Content-Length these get. */
	r->body = "";
	r->body_len = e->body_len;
	if (!nm && x->method != M_HEAD && e->body_len > 0) {
		if (e->body_len <= INLINE_MAX) {
			char *b = arena_alloc(&x->arena, e->body_len);
			if (b == NULL)
				return xctx_error(x, 503, "out_of_memory");
			memcpy(b, e->body, e->body_len);
			r->body = b;
		} else {
			if ((sa = arena_alloc(&x->arena, sizeof(*sa))) == NULL)
				return xctx_error(x, 503, "out_of_memory");
			sa->src.len = e->body_len;
			sa->src.read = src_read;
			sa->src.arg = sa;
			sa->st = st;
			sa->key = cs->key;
			sa->klen = cs->klen;
			sa->id = e->id;
			r->body = NULL;
			r->body_len = 0;
			r->source = &sa->src;
		}
	}
	age = now_ns > e->born_ns ? (now_ns - e->born_ns) / 1000000000ull : 0;
	put_lines(x, what == XCACHE_HIT ? "HIT" : "STALE", (int64_t)age);
	x->cache = what;
	return POLICY_RESPOND;
}

/* Mark KEY used, in the next batch (cache.h), unless marked lately. */
static void
touch(struct cw *w, const char *key, size_t klen, uint64_t now_ms)
{
	uint64_t h = hash64(key, klen);
	size_t i = h & (TOUCH_SLOTS - 1);

	if (w->seen[i].h == h && now_ms - w->seen[i].at_ms <
	    CACHE_TOUCH_GRAIN_MS)
		return;
	if (w->npend == TOUCH_BATCH || w->pend_len + klen > TOUCH_BYTES)
		return;		/* this batch is full: the next one */
	w->seen[i].h = h;
	w->seen[i].at_ms = now_ms;
	memcpy(w->pend + w->pend_len, key, klen);
	w->off[w->npend] = (uint32_t)w->pend_len;
	w->len[w->npend++] = (uint16_t)klen;
	w->pend_len += klen;
}

bool
cache_pending(void)
{
	/* Only a worker has one (worker_init runs after fork). */
	return proc_cw != NULL && proc_cw->npend > 0;
}

void
cache_tick(uint64_t now_ms)
{
	struct cw *w = proc_cw;
	const char *keys[TOUCH_BATCH];
	size_t lens[TOUCH_BATCH];
	struct store *st;
	unsigned i;
	int rc;

	(void)now_ms;
	if (!cache_pending() || (st = cache_store_of(w)) == NULL)
		return;
	for (i = 0; i < w->npend; i++) {
		keys[i] = w->pend + w->off[i];
		lens[i] = w->len[i];
	}
	rc = cache_touch(st, keys, lens, w->npend, store_now_ns(),
	    (uint64_t)CACHE_TOUCH_GRAIN_MS * 1000000ull);
	if (rc < 0)
		cache_warn(w, "marking entries used", rc);
	w->npend = 0;
	w->pend_len = 0;
}

/* ---- the policy -------------------------------------------------- */

static int
cache_worker_init(const struct config *cfg, void **wstate)
{
	struct cw *w;
	uint64_t seed = 0;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return -1;
	w->cfg = cfg;
	w->scratch_cap = 2 * cfg->server.limits.header_bytes + 4096;
	w->scratch = malloc(w->scratch_cap);
	w->pend = malloc(TOUCH_BYTES);
	if (w->scratch == NULL || w->pend == NULL) {
		free(w->scratch);
		free(w->pend);
		free(w);
		return -1;
	}
	/* Entry ids: unique across workers and restarts, so a body read
	 * in chunks can tell a replaced entry from its own. */
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)getpid() << 32 ^ store_now_ns();
	w->id = seed;
	proc_cw = w;
	*wstate = w;
	return 0;
}

static void
cache_worker_free(void *wstate)
{
	struct cw *w = wstate;

	if (w == NULL)
		return;
	if (proc_cw == w)
		proc_cw = NULL;
	free(w->scratch);
	free(w->pend);
	free(w);
}

static bool
unsafe_method(enum http_method m)
{
	return m == M_POST || m == M_PUT || m == M_PATCH || m == M_DELETE;
}

static bool
any_cache(const struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nroutes; i++)
		if (cfg->routes[i].has_cache)
			return true;
	return false;
}

static int
cache_init(const struct config *cfg, const struct cfg_route *r,
    void *wstate, void **state)
{
	const struct cfg_service *svc;
	struct cr *cr;
	size_t i, k, n;
	unsigned m;

	/* A route without a cache still removes entries when an unsafe
	 * method succeeds on it, if it can take one. */
	m = r->methods;
	if (!r->has_cache && (!any_cache(cfg) || (m != 0 &&
	    !(m & (METHOD_BIT(M_POST) | METHOD_BIT(M_PUT) |
	    METHOD_BIT(M_PATCH) | METHOD_BIT(M_DELETE))))))
		return 0;
	if (wstate == NULL)
		return -1;
	if ((cr = calloc(1, sizeof(*cr))) == NULL)
		return -1;
	cr->cfg = cfg;
	cr->r = r;
	cr->w = wstate;
	cr->cached = r->has_cache;
	cr->ttl_s = r->cache_ttl_s;
	cr->stale_s = r->cache_stale_s;
	cr->max_body = r->cache_max_body;
	cr->per_consumer = r->cache_per_consumer;
	cr->budget = (uint64_t)cfg->server.state_cache_mb << 20;
	cr->wait_ms = 2000;
	if (r->service >= 0 && (size_t)r->service < cfg->nservices) {
		svc = &cfg->services[r->service];
		cr->wait_ms = (uint64_t)svc->connect_timeout_ms +
		    svc->timeout_ms;
	}
	if (cr->wait_ms < 100)
		cr->wait_ms = 100;
	if (cr->wait_ms > 30000)
		cr->wait_ms = 30000;
	for (i = 0; i < r->ncache_vary; i++) {
		n = strlen(r->cache_vary[i]);
		if (cr->vary_len + n + 1 > sizeof(cr->vary)) {
			log_error("route %s: cache vary names too long",
			    r->name);
			free(cr);
			return -1;
		}
		cr->vary[cr->vary_len++] = ',';
		for (k = 0; k < n; k++)
			cr->vary[cr->vary_len++] = (char)tolower(
			    (unsigned char)r->cache_vary[i][k]);
	}
	/* Open the store now, after fork, once per process. */
	cache_store_of(cr->w);
	*state = cr;
	return 1;
}

static void
cache_free(void *state)
{
	free(state);
}

/* The request to the origin, as a miss: stored when STORE allows (and
 * the response does), without a lock. */
static int
go_origin(struct xctx *x, struct cr *cr, struct cs *cs, bool store)
{
	x->cache = XCACHE_MISS;
	if (store && x->method == M_GET && cs->st == NULL &&
	    (cs->st = cache_fill_new(cr, cs, x, NULL, false)) != NULL)
		cache_unconditional(x);
	return POLICY_CONTINUE;
}

/* Wait for another request's fetch of the key (collapsing), within the
 * bound; past it, to the origin. */
static int
wait_or_go(struct xctx *x, struct cr *cr, struct cs *cs)
{
	uint64_t ms;
	int v;

	if (!cs->waited) {
		cs->waited = true;
		cs->wait_until_ms = x->now_ms + cr->wait_ms;
	}
	if (x->now_ms >= cs->wait_until_ms)
		return go_origin(x, cr, cs, true);
	/* Woken at once by a fetch on this worker; another worker's is
	 * seen by looking again, soon at first, then every POLL_MAX_MS. */
	ms = cs->polls < 5 ? 1u << cs->polls : POLL_MAX_MS;
	cs->polls++;
	if (ms > cs->wait_until_ms - x->now_ms)
		ms = cs->wait_until_ms - x->now_ms;
	v = xctx_wait(x, ms);
	if (v == POLICY_PENDING) {
		cs->phase = P_WAITING;
		waiter_link(cr->w, cs);
	}
	return v;
}

/* Look the request up (again, after a wait) and act: answer, wait, or
 * go to the origin with or without the fetch lock. */
static int
lookup(struct xctx *x, struct cr *cr, struct cs *cs)
{
	struct store *st = cache_store_of(cr->w);
	struct cache_entry e;
	struct cache_lock l;
	struct rq q;
	MDB_txn *txn;
	uint64_t now;
	int found, rc;

	if (st == NULL) {
		cache_warn(cr->w, "opening the store", 0);
		return go_origin(x, cr, cs, false);
	}
	if (cr->budget == 0)		/* cache_mb = 0: nothing is stored */
		return go_origin(x, cr, cs, false);
	now = store_now_ns();
	if ((rc = store_read_begin(st, &txn)) < 0) {
		cache_warn(cr->w, "reading", rc);
		return go_origin(x, cr, cs, false);
	}
	cs->key = cs->key0;
	cs->klen = cs->k0len;
	cs->sie_ok = false;
	found = cache_find(st, txn, cs->key0, cs->k0len, &e);
	if (found == 0 && e.kind == CACHE_VARY) {
		/* The upstream varies on more: the entry is under the key
		 * with those values too. */
		if (cs->k1 == NULL)
			cs->k1 = arena_alloc(&x->arena, CACHE_KEY_MAX);
		cache_rq_of(x, &q);
		if (cs->k1 == NULL || cache_req_key(cr, &q, e.vary, e.vary_len,
		    cs->k1, &cs->klen) < 0) {
			store_read_end(st);
			cs->klen = cs->k0len;
			return go_origin(x, cr, cs, false);
		}
		cs->key = cs->k1;
		found = cache_find(st, txn, cs->key, cs->klen, &e);
	}
	if (found == 0 && e.kind != CACHE_ENTRY)
		found = 1;
	if (found < 0) {
		store_read_end(st);
		cache_warn(cr->w, "reading", found);
		return go_origin(x, cr, cs, false);
	}
	if (found == 0) {
		bool revalidate = (e.flags & CACHE_F_REVALIDATE) != 0;
		if (now < e.fresh_ns) {
			rc = answer(x, cs, st, &e, XCACHE_HIT, now);
			store_read_end(st);
			touch(cr->w, cs->key, cs->klen, x->now_ms);
			if (cs->waited)
				CACHE_COUNT(cache_collapsed);
			return rc;
		}
		cs->sie_ok = !revalidate && now < e.sie_ns;
		if (!revalidate && now < e.swr_ns) {
			rc = answer(x, cs, st, &e, XCACHE_STALE, now);
			store_read_end(st);
			if (rc == POLICY_RESPOND && x->method == M_GET)
				cache_refresh(x, cr, cs, st, now);
			return rc;
		}
	}
	if ((rc = cache_lock_peek(st, txn, cs->key, cs->klen, now, &l)) < 0) {
		store_read_end(st);
		cache_warn(cr->w, "reading", rc);
		return go_origin(x, cr, cs, false);
	}
	if (l.state == CACHE_LOCK_FAILED && cs->sie_ok) {
		/* The origin failed a moment ago: stale-if-error at once. */
		rc = answer(x, cs, st, &e, XCACHE_STALE, now);
		store_read_end(st);
		return rc;
	}
	store_read_end(st);
	if (x->method == M_HEAD)
		return go_origin(x, cr, cs, false);	/* never stored */
	switch (l.state) {
	case CACHE_LOCK_PASS:
		return go_origin(x, cr, cs, false);
	case CACHE_LOCK_FAILED:
		return go_origin(x, cr, cs, true);
	case CACHE_LOCK_FETCH:
		return wait_or_go(x, cr, cs);
	default:
		break;
	}
	rc = cache_lock_take(st, cs->key, cs->klen, now, now +
	    (cr->wait_ms + 1000) * 1000000ull, &l);
	if (rc < 0) {
		cache_warn(cr->w, "taking a fetch lock", rc);
		return go_origin(x, cr, cs, true);
	}
	if (rc == 0)	/* taken since we looked */
		return l.state == CACHE_LOCK_FETCH ? wait_or_go(x, cr, cs) :
		    go_origin(x, cr, cs, l.state == CACHE_LOCK_FAILED);
	x->cache = XCACHE_MISS;
	if ((cs->st = cache_fill_new(cr, cs, x, &l, true)) == NULL) {
		cache_lock_end(st, cs->key, cs->klen, &l, CACHE_LOCK_NONE, 0);
		cache_wake(cr->w, cs->h0);
		return POLICY_CONTINUE;
	}
	cache_unconditional(x);
	return POLICY_CONTINUE;
}

/* Whether the request may not use the cache (X-Cache: BYPASS), noting
 * its conditional fields meanwhile. */
static bool
bypass(struct xctx *x, const struct cr *cr, struct cs *cs)
{
	struct cache_cc cc;
	bool has_cc = false, pragma = false;
	size_t i;

	cache_cc_init(&cc);
	for (i = 0; i < x->nheaders; i++) {
		const struct http1_header *h = &x->headers[i];
		if (http1_header_is(h, "authorization")) {
			if (!cr->per_consumer)
				return true;
		} else if (http1_header_is(h, "cache-control")) {
			cache_cc_parse(h->value, h->value_len, &cc);
			has_cc = true;
		} else if (http1_header_is(h, "pragma")) {
			pragma = memmem(h->value, h->value_len, "no-cache",
			    8) != NULL;
		} else if (http1_header_is(h, "transfer-encoding") ||
		    (http1_header_is(h, "content-length") &&
		    !(h->value_len == 1 && h->value[0] == '0'))) {
			return true;	/* a body: not a plain read */
		} else if (http1_header_is(h, "if-none-match")) {
			cs->inm = arena_dup(&x->arena, h->value, h->value_len);
			cs->inm_len = cs->inm != NULL ? h->value_len : 0;
		} else if (http1_header_is(h, "if-modified-since")) {
			cs->ims = arena_dup(&x->arena, h->value, h->value_len);
			cs->ims_len = cs->ims != NULL ? h->value_len : 0;
		}
	}
	if (cc.no_cache || cc.no_store || cc.max_age == 0 ||
	    (!has_cc && pragma))
		return true;
	return cr->per_consumer && x->id.consumer == NULL;
}

static int
cache_request(struct xctx *x, void *state, void *slot)
{
	struct cr *cr = state;
	struct cs *cs = slot;
	struct rq q;

	if (cs->phase == P_WAITING) {
		waiter_unlink(cr->w, cs);
		cs->phase = P_NEW;
		return lookup(x, cr, cs);
	}
	cs->x = x;
	cs->cr = cr;
	if (x->method != M_GET && x->method != M_HEAD) {
		cs->unsafe = unsafe_method(x->method);
		/* The path's key part now: x->path is the worker's scratch,
		 * another request's by the time the response comes. */
		if (cs->unsafe)
			cs->k0len = cache_key_path(x->path, x->path_len,
			    cs->key0);
		if (cr->cached)
			x->cache = XCACHE_BYPASS;
		return POLICY_CONTINUE;
	}
	if (!cr->cached)
		return POLICY_CONTINUE;
	cache_rq_of(x, &q);
	if (bypass(x, cr, cs) || cache_req_key(cr, &q, NULL, 0, cs->key0,
	    &cs->k0len) < 0) {
		x->cache = XCACHE_BYPASS;
		return POLICY_CONTINUE;
	}
	cs->h0 = hash64(cs->key0, cs->k0len);
	return lookup(x, cr, cs);
}

/* Keep the body as it streams to the client (same bytes out). */
static int
feed(struct xctx *x, void *arg, const char *p, size_t n, bool last,
    struct obuf *out)
{
	struct cs *cs = arg;

	(void)x;
	if (cs->st != NULL) {
		cache_fill_body(cs->st, p, n);
		if (last) {
			cache_fill_end(cs->st, FIN_OK);
			cs->st = NULL;
		} else if (!cache_fill_taking(cs->st)) {
			cache_fill_end(cs->st, FIN_OK);
			cs->st = NULL;
		}
	}
	return n > 0 ? obuf_put(out, p, n) : 0;
}

/* Answer from the stale entry at cs->key (stale-if-error), if it is
 * still there and within its window. RESPOND or CONTINUE. */
static int
stale_on_error(struct xctx *x, struct cr *cr, struct cs *cs)
{
	struct store *st = cache_store_of(cr->w);
	struct cache_entry e;
	MDB_txn *txn;
	uint64_t now = store_now_ns();
	int rc = POLICY_CONTINUE;

	if (!cs->sie_ok || st == NULL || store_read_begin(st, &txn) < 0)
		return POLICY_CONTINUE;
	if (cache_find(st, txn, cs->key, cs->klen, &e) == 0 &&
	    e.kind == CACHE_ENTRY && now < e.sie_ns &&
	    !(e.flags & CACHE_F_REVALIDATE)) {
		/* The request's own headers are gone by now: no 304. */
		cs->inm = cs->ims = NULL;
		rc = answer(x, cs, st, &e, XCACHE_STALE, now);
	}
	store_read_end(st);
	if (rc == POLICY_RESPOND && cs->st != NULL) {
		cache_fill_end(cs->st, FIN_FAILED);
		cs->st = NULL;
	}
	return rc;
}

static int
cache_response(struct xctx *x, void *state, void *slot)
{
	struct cr *cr = state;
	struct cs *cs = slot;
	struct body_filter f;
	struct store *st;
	int64_t cl = -1;
	size_t i;
	int rc;

	if (cs == NULL)
		return POLICY_CONTINUE;
	if (cs->unsafe && x->status >= 200 && x->status < 400 &&
	    (st = cache_store_of(cr->w)) != NULL) {
		/* RFC 9111 4.4: a successful unsafe method invalidates. */
		if ((rc = cache_invalidate(st, cs->key0, cs->k0len)) < 0)
			cache_warn(cr->w, "invalidating", rc);
	}
	if (!cr->cached || x->cache == XCACHE_NONE)
		return POLICY_CONTINUE;
	policy_edit_remove(&x->resp_edits, "X-Cache", 7);
	if (x->cache != XCACHE_MISS) {
		put_lines(x, x->cache == XCACHE_BYPASS ? "BYPASS" : "MISS",
		    -1);
		return POLICY_CONTINUE;
	}
	if (x->status >= 500 && cs->sie_ok &&
	    stale_on_error(x, cr, cs) == POLICY_RESPOND)
		return POLICY_RESPOND;
	put_lines(x, "MISS", -1);
	if (cs->st == NULL)
		return POLICY_CONTINUE;
	for (i = 0; i < x->resp_nheaders; i++)
		if (http1_header_is(&x->resp_headers[i], "content-length")) {
			char *end;
			long long v = strtoll(x->resp_headers[i].value, &end,
			    10);
			if (end != x->resp_headers[i].value && v >= 0)
				cl = v;
		}
	if (cache_fill_head(cs->st, x->status, x->resp_headers, x->resp_nheaders,
	    cl) < 0) {
		cache_fill_end(cs->st, FIN_OK);
		cs->st = NULL;
		return POLICY_CONTINUE;
	}
	memset(&f, 0, sizeof(f));
	f.feed = feed;
	f.arg = cs;
	f.max = 0;		/* streams: a long body goes on uncached */
	f.same_length = true;
	if (xctx_resp_filter(x, &f) < 0) {
		cache_fill_end(cs->st, FIN_FAILED);
		cs->st = NULL;
	}
	return POLICY_CONTINUE;
}

static int
cache_upstream_error(struct xctx *x, void *state, void *slot)
{
	struct cr *cr = state;
	struct cs *cs = slot;

	if (cs == NULL || !cr->cached || x->cache != XCACHE_MISS)
		return POLICY_CONTINUE;
	return stale_on_error(x, cr, cs);
}

static void
cache_done(struct xctx *x, void *state, void *slot)
{
	struct cr *cr = state;
	struct cs *cs = slot;

	if (cs == NULL)
		return;
	waiter_unlink(cr->w, cs);
	if (cs->st != NULL) {
		/* Ended before the response did: an upstream error, or the
		 * client gone. */
		cache_fill_end(cs->st, x->status >= 500 ? FIN_FAILED :
		    FIN_ABORT);
		cs->st = NULL;
	}
	switch (x->cache) {
	case XCACHE_HIT:
		CACHE_COUNT(cache_hits);
		break;
	case XCACHE_MISS:
		CACHE_COUNT(cache_misses);
		break;
	case XCACHE_STALE:
		CACHE_COUNT(cache_stale);
		break;
	case XCACHE_BYPASS:
		CACHE_COUNT(cache_bypass);
		break;
	default:
		break;
	}
}

const struct policy policy_cache = {
	.name = "cache",
	.worker_init = cache_worker_init,
	.worker_free = cache_worker_free,
	.init = cache_init,
	.free = cache_free,
	.slot_size = sizeof(struct cs),
	.on_request = cache_request,
	.on_response = cache_response,
	.on_upstream_error = cache_upstream_error,
	.on_done = cache_done,
};
