#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "../master/log.h"
#include "../policies/jsonscan.h"
#include "../policies/template.h"
#include "../shm/lastgood.h"
#include "aggregate.h"
#include "conn.h"
#include "exchange.h"
#include "head.h"
#include "metrics.h"
#include "pool.h"
#include "upclient.h"
#include "upstream.h"

#define PART_DEPTH	128		/* nesting a part may have */

/* Per worker: each aggregate route's compiled call paths, and the flood
 * guard of the degradation log. */
struct agg_worker {
	struct tmpl ***paths;		/* [route][call], NULL: not aggregate */
	size_t nroutes;
	struct log_limit log;
};

enum call_state {
	CALL_RUNNING,	/* the upstream client runs */
	CALL_OK,	/* a 2xx JSON body is in body[0..len) */
	CALL_FAILED,	/* why says why; the fallback answers */
};

struct call {
	struct upclient uc;
	struct agg *a;
	const struct cfg_call *cfg;
	enum call_state state;
	bool discard;			/* not 2xx: its body is read, dropped */
	int status;			/* the upstream's */
	const char *why;		/* the failure (log, 502 body) */
	struct loop_timer timer;	/* the call's timeout_ms */
	char *body;			/* malloc, freed at release */
	size_t len, cap;
	uint64_t dropped;		/* body bytes discarded */
	const char *value;		/* what the merged object gets */
	size_t vlen;
	bool degraded;
	bool counted;			/* in its service's metrics */
	int fail_status;		/* what a proxied request would get */
	uint64_t head_us;		/* when the head came (0: none) */
	unsigned char key[2 * CFG_NAME_MAX + 2 + SHA256_DIGEST_LENGTH];
	size_t klen;			/* 0: no "cache" fallback */
};

struct agg {
	struct exchange *x;
	unsigned n, pending;
	struct loop_timer deadline;	/* the aggregate's timeout_ms */
	struct call call[];
};

/* ---- the worker's templates -------------------------------------- */

int
aggregate_worker_init(struct worker *w)
{
	const struct config *cfg = w->cfg;
	struct agg_worker *aw;
	char why[200];
	size_t i, j;

	if ((aw = calloc(1, sizeof(*aw))) == NULL ||
	    (aw->paths = calloc(cfg->nroutes ? cfg->nroutes : 1,
	    sizeof(*aw->paths))) == NULL) {
		free(aw);
		return -1;
	}
	aw->nroutes = cfg->nroutes;
	w->aggw = aw;
	for (i = 0; i < cfg->nroutes; i++) {
		const struct cfg_route *r = &cfg->routes[i];
		if (r->ncalls == 0)
			continue;
		if ((aw->paths[i] = calloc(r->ncalls, sizeof(**aw->paths))) ==
		    NULL)
			return -1;
		for (j = 0; j < r->ncalls; j++)
			if (tmpl_parse(r->calls[j].path, true, &aw->paths[i][j],
			    why, sizeof(why)) < 0) {
				log_error("route %s call %s: %s", r->name,
				    r->calls[j].name, why);
				return -1;
			}
	}
	return 0;
}

void
aggregate_worker_free(struct worker *w)
{
	struct agg_worker *aw = w->aggw;
	size_t i, j;

	if (aw == NULL)
		return;
	log_limit_flush(&aw->log);
	for (i = 0; i < aw->nroutes; i++) {
		if (aw->paths[i] == NULL)
			continue;
		for (j = 0; j < w->cfg->routes[i].ncalls; j++)
			tmpl_free(aw->paths[i][j]);
		free(aw->paths[i]);
	}
	free(aw->paths);
	free(aw);
	w->aggw = NULL;
}

/* ---- settling ---------------------------------------------------- */

/* A started call's end in its service's metrics (gwctl stats' service
 * rows): the service's status when it answered, else FAILED, what a
 * proxied request would have got. */
static void
call_count(struct call *c, int failed)
{
	uint64_t now = c->a->x->c->w->loop.now_us;

	if (c->uc.start_us == 0 || c->counted)
		return;
	c->counted = true;
	metrics_call(&c->uc, c->status > 0 ? c->status : failed,
	    (c->head_us != 0 ? c->head_us : now) - c->uc.start_us);
}

static void
call_settle(struct call *c, enum call_state st, const char *why)
{
	struct agg *a = c->a;
	struct exchange *x = a->x;

	if (c->state != CALL_RUNNING)
		return;
	/* no head and no failure of the client's: a timer stopped it */
	call_count(c, c->fail_status != 0 ? c->fail_status : 504);
	loop_timer_cancel(&x->c->w->loop, &c->timer);
	c->state = st;
	c->why = why;
	if (st != CALL_OK) {
		free(c->body);
		c->body = NULL;
		c->len = c->cap = 0;
	}
	if (--a->pending == 0) {
		loop_timer_cancel(&x->c->w->loop, &a->deadline);
		/* Answered from the loop, outside the upstream's event. */
		conn_schedule(x->c);
	}
}

/* A call stops before its response ended. */
static void
call_stop(struct call *c, const char *why)
{
	upclient_abort(&c->uc);
	call_settle(c, CALL_FAILED, why);
}

static void
call_timeout(struct loop *l, struct loop_timer *t)
{
	(void)l;
	call_stop(t->data, "timeout");
}

static void
deadline_fire(struct loop *l, struct loop_timer *t)
{
	struct agg *a = t->data;
	unsigned i;

	(void)l;
	for (i = 0; i < a->n; i++)
		if (a->call[i].state == CALL_RUNNING)
			call_stop(&a->call[i], "deadline");
}

/* ---- upstream client callbacks ----------------------------------- */

static const struct http1_header *
find(const struct http1_response *res, const char *name, size_t nl)
{
	size_t i;

	for (i = 0; i < res->num_headers; i++)
		if (http1_name_eq(res->headers[i].name,
		    res->headers[i].name_len, name, nl))
			return &res->headers[i];
	return NULL;
}

static int
cb_head(void *owner, const struct http1_response *res)
{
	struct call *c = owner;
	const struct cfg_route *r = c->a->x->ctx.route;
	const struct http1_header *ce;

	c->status = res->status;
	c->head_us = c->a->x->c->w->loop.now_us;
	if (res->status < 200 || res->status > 299) {
		/* Read to the end and dropped: the connection stays
		 * reusable. */
		c->discard = true;
		return 0;
	}
	ce = find(res, "content-encoding", 16);
	if (ce != NULL && !http1_name_eq(ce->value, ce->value_len,
	    "identity", 8)) {
		call_stop(c, "encoded");
		return UC_STOP;
	}
	if (res->f.content_length >= 0 &&
	    (uint64_t)res->f.content_length > r->aggregate_part_bytes) {
		call_stop(c, "too_large");
		return UC_STOP;
	}
	if (c->uc.flags & UC_CHUNKED)
		c->uc.flags |= UC_DECODE;
	return 0;
}

static ssize_t
cb_body(void *owner, const char *p, size_t n, bool last)
{
	struct call *c = owner;
	uint64_t max = c->a->x->ctx.route->aggregate_part_bytes;
	size_t cap;
	char *np;

	(void)last;
	if (c->discard) {
		c->dropped += n;
		if (c->dropped > max) {
			call_stop(c, "too_large");
			return UC_STOP;
		}
		return (ssize_t)n;
	}
	if (c->len + n > max) {
		call_stop(c, "too_large");
		return UC_STOP;
	}
	if (c->cap - c->len < n) {
		cap = c->cap ? c->cap : 4096;
		while (cap - c->len < n)
			cap *= 2;
		if ((np = realloc(c->body, cap)) == NULL) {
			call_stop(c, "out_of_memory");
			return UC_STOP;
		}
		c->body = np;
		c->cap = cap;
	}
	memcpy(c->body + c->len, p, n);
	c->len += n;
	return (ssize_t)n;
}

static bool
ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Keep a good part for "cache" fallbacks (failures are logged, not
 * fatal: the answer does not depend on it). */
static void
remember(struct call *c)
{
	struct worker *w = c->a->x->c->w;
	struct store *s;
	int rc;

	if (c->klen == 0 || (s = store_proc(w->cfg->server.state_path,
	    w->cfg->server.workers)) == NULL)
		return;
	rc = lastgood_put(s, c->key, c->klen, c->value, c->vlen,
	    (uint64_t)c->a->x->ctx.route->aggregate_fallback_ttl_s *
	    1000000000ull);
	if (rc < 0)
		log_limited(&w->aggw->log, w->loop.now_ms, LOG_WARN,
		    "aggregate: storing the last good %s: %s", c->cfg->name,
		    store_strerror(rc));
}

static void
cb_done(void *owner)
{
	struct call *c = owner;
	char *st;

	if (c->discard) {
		st = arena_alloc(&c->a->x->ctx.arena, 16);
		if (st != NULL)
			snprintf(st, 16, "status_%d", c->status);
		call_settle(c, CALL_FAILED, st != NULL ? st : "status");
		return;
	}
	c->value = c->body;
	c->vlen = c->len;
	while (c->vlen > 0 && ws(c->value[0])) {
		c->value++;
		c->vlen--;
	}
	while (c->vlen > 0 && ws(c->value[c->vlen - 1]))
		c->vlen--;
	if (jscan_validate(c->value, c->vlen, PART_DEPTH) != 0) {
		call_settle(c, CALL_FAILED, "not_json");
		return;
	}
	remember(c);
	call_settle(c, CALL_OK, NULL);
}

static void
cb_failed(void *owner, enum up_fail why)
{
	struct call *c = owner;

	c->fail_status = upclient_fail_status(why);
	call_settle(c, CALL_FAILED, c->uc.reason != NULL ? c->uc.reason :
	    "upstream_failed");
}

static const struct upclient_ops call_ops = {
	.head = cb_head,
	.body = cb_body,
	.done = cb_done,
	.failed = cb_failed,
};

/* ---- the calls' requests ----------------------------------------- */

/* The request head of call C with path PATH, into its upclient's hbuf.
 * 0, or -1 when it does not fit. */
static int
call_head(struct call *c, const char *path, size_t plen)
{
	struct exchange *x = c->a->x;
	struct conn *cn = x->c;
	struct worker *w = cn->w;
	const struct config *cfg = w->cfg;
	const struct xctx *cx = &x->ctx;
	const struct cfg_service *svc = &cfg->services[c->cfg->service];
	struct hb b = { c->uc.hbuf, 0, w->hbuf_size, true };
	bool trusted = config_trusted(&cfg->server, cn->peer.family,
	    cn->peer.addr);
	char peer[64];
	size_t i, k, plen2;

	hb_lit(&b, "GET ");
	hb_put(&b, path, plen);
	hb_lit(&b, " HTTP/1.1\r\nHost: ");
	hb_put(&b, svc->name, strlen(svc->name));
	hb_lit(&b, "\r\n");
	for (k = 0; k < c->cfg->nforward_headers; k++) {
		const char *name = c->cfg->forward_headers[k];
		for (i = 0; i < cx->nheaders; i++) {
			const struct http1_header *h = &cx->headers[i];
			if (http1_name_eq(h->name, h->name_len, name,
			    strlen(name)) && !head_edited_away(h, &cx->edits))
				hb_header(&b, h->name, h->name_len, h->value,
				    h->value_len);
		}
	}
	hb_lit(&b, "X-Forwarded-For: ");
	for (i = 0; trusted && i < cx->nheaders; i++)
		if (http1_header_is(&cx->headers[i], "x-forwarded-for")) {
			hb_put(&b, cx->headers[i].value,
			    cx->headers[i].value_len);
			hb_lit(&b, ", ");
		}
	plen2 = conn_peer_text(cn, peer, sizeof(peer));
	hb_put(&b, peer, plen2);
	if (cn->io.ssl != NULL)
		hb_lit(&b, "\r\nX-Forwarded-Proto: https\r\n");
	else
		hb_lit(&b, "\r\nX-Forwarded-Proto: http\r\n");
	if (cx->host != NULL)
		hb_header(&b, "X-Forwarded-Host", 16, cx->host, cx->host_len);
	hb_header(&b, cfg->server.trace_header, w->trace_hdr_len, cx->trace,
	    cx->trace_len);
	/* The identity headers auth set, and the route's request
	 * add_headers. */
	hb_edits(&b, &cx->edits);
	/* A part is read as JSON here: it must come as it is. */
	hb_lit(&b, "Accept-Encoding: identity\r\n\r\n");
	if (!b.ok)
		return -1;
	c->uc.hlen = (uint32_t)b.len;
	c->uc.hoff = 0;
	return 0;
}

/* The store key of a "cache" fallback: the route and call by name, then
 * a digest of the consumer and the path, so one consumer's part never
 * answers for another's. */
static void
call_key(struct call *c, const char *path, size_t plen)
{
	struct xctx *cx = &c->a->x->ctx;
	size_t rl = strlen(cx->route->name), cl = strlen(c->cfg->name);
	size_t ul = cx->id.consumer != NULL ? cx->id.consumer_len : 0;
	unsigned char *m;

	if ((m = arena_alloc(&cx->arena, 4 + ul + plen)) == NULL)
		return;		/* no key: no "cache" for this call */
	m[0] = (unsigned char)(ul >> 24);
	m[1] = (unsigned char)(ul >> 16);
	m[2] = (unsigned char)(ul >> 8);
	m[3] = (unsigned char)ul;
	if (ul > 0)
		memcpy(m + 4, cx->id.consumer, ul);
	memcpy(m + 4 + ul, path, plen);
	memcpy(c->key, cx->route->name, rl + 1);
	memcpy(c->key + rl + 1, c->cfg->name, cl + 1);
	SHA256(m, 4 + ul + plen, c->key + rl + cl + 2);
	c->klen = rl + cl + 2 + SHA256_DIGEST_LENGTH;
}

/* Prepare call I: its state, head and store key. 0, or -1 when it cannot
 * be sent (it is settled as failed). */
static int
call_prepare(struct agg *a, unsigned i, struct tmpl_env *env)
{
	struct exchange *x = a->x;
	struct worker *w = x->c->w;
	const struct cfg_route *r = x->ctx.route;
	struct call *c = &a->call[i];
	const struct tmpl *t = w->aggw->paths[x->ctx.route_index][i];
	struct service_rt *s;
	const char *path;
	size_t plen;

	c->a = a;
	c->cfg = &r->calls[i];
	c->state = CALL_RUNNING;
	c->timer.cb = call_timeout;
	c->timer.data = c;
	s = &w->svc[c->cfg->service];
	if ((path = tmpl_expand(t, env, TE_URL, &plen)) == NULL)
		goto fail;
	if (c->cfg->fallback != NULL && strcmp(c->cfg->fallback, "cache") == 0)
		call_key(c, path, plen);
	if ((c->uc.hbuf = pool_buf_get(w, BUF_HEAD)) == NULL)
		goto fail;
	if (call_head(c, path, plen) < 0) {
		pool_buf_put(w, BUF_HEAD, c->uc.hbuf);
		c->uc.hbuf = NULL;
		c->why = "request_too_large";
		goto out;
	}
	c->uc.flags = UC_IDEMPOTENT;
	c->uc.hash = upstream_key_hash(s->cfg, x->c->peer.family,
	    x->c->peer.addr, x->ctx.headers, x->ctx.nheaders,
	    x->ctx.id.consumer, x->ctx.id.consumer_len);
	return 0;
fail:
	c->why = "out_of_memory";
out:
	c->state = CALL_FAILED;
	a->pending--;
	return -1;
}

int
aggregate_start(struct exchange *x)
{
	struct conn *cn = x->c;
	struct worker *w = cn->w;
	struct xctx *cx = &x->ctx;
	const struct cfg_route *r = cx->route;
	struct tmpl_env env;
	struct agg *a;
	char *p;
	unsigned i;

	a = arena_alloc(&cx->arena, sizeof(*a) + r->ncalls * sizeof(a->call[0]));
	if (a == NULL)
		return exchange_error(cn, 503, "out_of_memory", NULL, false);
	memset(a, 0, sizeof(*a) + r->ncalls * sizeof(a->call[0]));
	a->x = x;
	a->n = a->pending = (unsigned)r->ncalls;
	a->deadline.cb = deadline_fire;
	a->deadline.data = a;
	x->agg = a;
	x->flags |= XF_AGGREGATE;
	tmpl_env_init(&env, cx);
	for (i = 0; i < a->n; i++)
		call_prepare(a, i, &env);
	/* The request is read: what points into the worker's scratch or
	 * the client's buffer goes, the path is kept for the response. */
	if ((p = arena_dup(&cx->arena, cx->path, cx->path_len)) != NULL)
		cx->path = p;
	cx->headers = NULL;
	cx->nheaders = 0;
	cx->host = NULL;
	cn->active_ms = w->loop.now_ms;
	loop_timer_set(&w->loop, &cn->timer,
	    w->cfg->server.limits.idle_timeout_ms);
	loop_timer_set(&w->loop, &a->deadline, r->aggregate_timeout_ms);
	for (i = 0; i < a->n; i++) {
		struct call *c = &a->call[i];
		if (c->state != CALL_RUNNING)
			continue;
		loop_timer_set(&w->loop, &c->timer, c->cfg->timeout_ms);
		upclient_start(&c->uc, w, &w->svc[c->cfg->service], &call_ops,
		    c);
		if (cn->flags & CF_DEAD)
			return CONN_GONE;
	}
	return aggregate_run(x);
}

/* ---- the answer -------------------------------------------------- */

static void *
arena_take(void *arg, size_t n)
{
	return arena_alloc(arg, n);
}

/* A failed call's fallback into c->value. Whether it had one to give. */
static bool
fallback(struct call *c)
{
	struct exchange *x = c->a->x;
	struct worker *w = x->c->w;
	const char *fb = c->cfg->fallback;
	struct store *s;
	char *v;
	size_t n;

	c->degraded = true;
	c->value = "null";
	c->vlen = 4;
	if (fb == NULL)
		return false;
	if (strcmp(fb, "cache") != 0) {
		c->value = fb;
		c->vlen = strlen(fb);
		return true;
	}
	if (c->klen == 0 || (s = store_proc(w->cfg->server.state_path,
	    w->cfg->server.workers)) == NULL ||
	    lastgood_get(s, c->key, c->klen, arena_take, &x->ctx.arena, &v,
	    &n) != 1)
		return false;
	c->value = v;
	c->vlen = n;
	return true;
}

/* Text appended at *o of a buffer sized for it. */
static void
put(char *dst, size_t *o, const char *s, size_t n)
{
	memcpy(dst + *o, s, n);
	*o += n;
}

static void
put_name(char *dst, size_t *o, const char *name, const char *after)
{
	put(dst, o, "\"", 1);
	put(dst, o, name, strlen(name));
	put(dst, o, "\"", 1);
	put(dst, o, after, strlen(after));
}

/* The merged body and the X-Gateway-Degraded line. 0 or -1 (memory). */
static int
merge(struct agg *a)
{
	struct exchange *x = a->x;
	struct xctx *cx = &x->ctx;
	const struct cfg_route *r = cx->route;
	size_t names = 0, total, need, o = 0, h = 0;
	char *body, *hline;
	unsigned i, k;

	for (i = 0; i < a->n; i++)
		names += strlen(a->call[i].cfg->name) + 4;
	/* {"name":value,...,"degraded":[...]} within max_body_bytes: a part
	 * that would pass it takes its fallback (null when that is too
	 * big as well), in call order. */
	total = 2 + names + 13 + names;
	for (i = 0; i < a->n; i++) {
		struct call *c = &a->call[i];
		need = total + c->vlen;
		if (need > r->aggregate_body_bytes && c->vlen > 4) {
			if (!c->degraded)
				c->why = "body_too_large";
			fallback(c);
			if (total + c->vlen > r->aggregate_body_bytes) {
				c->value = "null";
				c->vlen = 4;
			}
		}
		total += c->vlen;
	}
	if ((body = arena_alloc(&cx->arena, total)) == NULL ||
	    (hline = arena_alloc(&cx->arena, 20 + names)) == NULL)
		return -1;
	put(body, &o, "{", 1);
	for (i = 0; i < a->n; i++) {
		const struct call *c = &a->call[i];
		put_name(body, &o, c->cfg->name, ":");
		put(body, &o, c->value, c->vlen);
		put(body, &o, ",", 1);
	}
	put(body, &o, "\"degraded\":[", 12);
	put(hline, &h, "X-Gateway-Degraded: ", 20);
	for (i = 0, k = 0; i < a->n; i++) {
		const struct call *c = &a->call[i];
		if (!c->degraded)
			continue;
		if (k++ > 0) {
			put(body, &o, ",", 1);
			put(hline, &h, ", ", 2);
		}
		put_name(body, &o, c->cfg->name, "");
		put(hline, &h, c->cfg->name, strlen(c->cfg->name));
	}
	put(body, &o, "]}", 2);
	if (k > 0 && policy_edit_add(&cx->resp_edits, hline, h) < 0)
		return -1;
	xctx_respond(cx, 200, "application/json", body, o, false);
	return 0;
}

/* Every call failed with nothing to give: 502, each call's failure. */
static void
all_failed(struct agg *a)
{
	struct xctx *cx = &a->x->ctx;
	size_t cap = 128 + sizeof(cx->trace), o = 0;
	char *body;
	unsigned i;
	int n;

	for (i = 0; i < a->n; i++)
		cap += strlen(a->call[i].cfg->name) + strlen(a->call[i].why) + 6;
	cx->reason = "all_calls_failed";
	if ((body = arena_alloc(&cx->arena, cap)) == NULL) {
		xctx_error(cx, 502, "all_calls_failed");
		return;
	}
	n = snprintf(body, cap, "{\"error\":\"all_calls_failed\",\"status\":"
	    "502,\"trace_id\":\"%s\",\"calls\":{", cx->trace);
	o = n > 0 ? (size_t)n : 0;
	for (i = 0; i < a->n; i++) {
		if (i > 0)
			put(body, &o, ",", 1);
		put_name(body, &o, a->call[i].cfg->name, ":");
		put_name(body, &o, a->call[i].why, "");
	}
	put(body, &o, "}}\n", 3);
	xctx_respond(cx, 502, "application/json", body, o, false);
}

static int
answer(struct exchange *x)
{
	struct agg *a = x->agg;
	struct worker *w = x->c->w;
	struct xctx *cx = &x->ctx;
	unsigned i, ndeg = 0, ok = 0, given = 0;

	for (i = 0; i < a->n; i++) {
		struct call *c = &a->call[i];
		if (c->state == CALL_OK) {
			ok++;
			continue;
		}
		ndeg++;
		given += fallback(c);
		log_limited(&w->aggw->log, w->loop.now_ms, LOG_INFO,
		    "aggregate %s: %s degraded (%s)", cx->route->name,
		    c->cfg->name, c->why);
	}
	COUNTER_ADD(&cx->stats->agg_requests, 1);
	if (ok == 0 && given == 0) {
		COUNTER_ADD(&cx->stats->agg_failed, 1);
		all_failed(a);
	} else if (merge(a) < 0) {
		xctx_error(cx, 503, "out_of_memory");
	} else {
		for (ndeg = 0, i = 0; i < a->n; i++)
			ndeg += a->call[i].degraded;
		if (ndeg > 0) {
			cx->reason = "aggregate_degraded";
			COUNTER_ADD(&cx->stats->agg_degraded, 1);
			COUNTER_ADD(&cx->stats->agg_parts_degraded, ndeg);
		}
	}
	/* Every part is copied into the answer: the calls go. */
	aggregate_release(x);
	return exchange_local_response(x);
}

int
aggregate_run(struct exchange *x)
{
	if (x->agg == NULL || x->agg->pending > 0)
		return 0;
	return answer(x);
}

void
aggregate_release(struct exchange *x)
{
	struct agg *a = x->agg;
	struct worker *w = x->c->w;
	unsigned i;

	if (a == NULL)
		return;
	loop_timer_cancel(&w->loop, &a->deadline);
	for (i = 0; i < a->n; i++) {
		struct call *c = &a->call[i];
		loop_timer_cancel(&w->loop, &c->timer);
		/* still running: the client left, as a proxied 499 */
		if (c->state == CALL_RUNNING)
			call_count(c, 499);
		upclient_abort(&c->uc);
		if (c->uc.hbuf != NULL) {
			pool_buf_put(w, BUF_HEAD, c->uc.hbuf);
			c->uc.hbuf = NULL;
		}
		free(c->body);
		c->body = NULL;
	}
	x->agg = NULL;
	x->flags &= ~XF_AGGREGATE;
}
