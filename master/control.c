#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "master.h"
#include "msg.h"
#include "control_limits.h"		/* gwctl limits */
#include "../worker/route.h"		/* gwctl explain */
#include "../worker/upstream.h"		/* gwctl explain: the pick */

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
	msgpack_pack_map(pk, 11);
	msg_pack_kv_uint(pk, "slot", s->num);
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
	msg_pack_kv_bool(pk, "ready", s->pid > 0 && wc &&
	    COUNTER_GET(&wc->ready) != 0);
}

/* One generation's line of `status`: its workers and open connections. */
static void
pack_gen(msgpack_packer *pk, const struct master *m, unsigned gen,
    const char *state, const struct master_slot *s, unsigned n)
{
	uint64_t conns = 0;
	unsigned i, live = 0;

	for (i = 0; i < n; i++) {
		if (s[i].generation != gen || s[i].pid <= 0)
			continue;
		live++;
		if (s[i].index < m->counters->nslots)
			conns += COUNTER_GET(
			    &m->counters->slot[s[i].index].conns_open);
	}
	msgpack_pack_map(pk, 4);
	msg_pack_kv_uint(pk, "generation", gen);
	msg_pack_kv_str(pk, "state", state);
	msg_pack_kv_uint(pk, "workers", live);
	msg_pack_kv_uint(pk, "conns", conns);
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
	static const char *const ops[] = {
		[MASTER_OP_NONE] = "", [MASTER_OP_RELOAD] = "reload",
		[MASTER_OP_CHECK] = "upgrade: check",
		[MASTER_OP_HANDOFF] = "upgrade: waiting for the new master",
	};
	unsigned gens[64], ngen = 0, i, k;

	/* Older generations still draining, oldest first. */
	for (i = 0; i < m->nold; i++) {
		for (k = 0; k < ngen && gens[k] != m->old[i].generation; k++)
			;
		if (k == ngen && ngen < 64)
			gens[ngen++] = m->old[i].generation;
	}
	for (i = 1; i < ngen; i++)
		for (k = i; k > 0 && gens[k - 1] > gens[k]; k--) {
			unsigned t = gens[k];

			gens[k] = gens[k - 1];
			gens[k - 1] = t;
		}
	if (msg_out_init(o, 9) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_int(&o->pk, "pid", m->pid);
	msg_pack_kv_uint(&o->pk, "generation", m->generation);
	msg_pack_kv_uint(&o->pk, "uptime_s", (now - m->start_ms) / 1000);
	msg_pack_kv_str(&o->pk, "state", m->upgraded ? "upgraded, draining" :
	    states[m->state]);
	msg_pack_kv_str(&o->pk, "operation", ops[m->op]);
	msg_pack_str(&o->pk, "generations");
	msgpack_pack_array(&o->pk, ngen + 1 + (m->nnext > 0));
	for (i = 0; i < ngen; i++)
		pack_gen(&o->pk, m, gens[i], "draining", m->old, m->nold);
	pack_gen(&o->pk, m, m->generation, m->state == MASTER_RUNNING ?
	    "serving" : "draining", m->slots, m->nslots);
	if (m->nnext > 0)
		pack_gen(&o->pk, m, m->generation + 1, "starting", m->next,
		    m->nnext);
	msg_pack_str(&o->pk, "workers");
	msgpack_pack_array(&o->pk, m->nslots);
	for (i = 0; i < m->nslots; i++)
		pack_worker(&o->pk, m, &m->slots[i], now);
	/* Workers of other generations: older ones draining (with the
	 * connections they still hold), a reload's next one starting. */
	msg_pack_str(&o->pk, "other_workers");
	msgpack_pack_array(&o->pk, m->nold + m->nnext);
	for (i = 0; i < m->nold; i++)
		pack_worker(&o->pk, m, &m->old[i], now);
	for (i = 0; i < m->nnext; i++)
		pack_worker(&o->pk, m, &m->next[i], now);
	return 0;
}

/* reload: 1 = started (the reply comes from control_complete). */
static int
reply_reload(struct control *c, struct msg_out *o)
{
	char err[1024];

	if (master_reload(c->m, err, sizeof(err)) == 0)
		return 1;
	if (msg_out_init(o, 2) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", false);
	msg_pack_kv_str(&o->pk, "error", err);
	return 0;
}

/* upgrade [binary]: 1 = started. */
static int
reply_upgrade(struct control *c, const msgpack_object *req,
    struct msg_out *o)
{
	const msgpack_object *b = msg_get(req, "binary");
	char bin[4096], err[1024];

	bin[0] = '\0';
	if (b != NULL && b->type != MSGPACK_OBJECT_NIL &&
	    msg_get_str(req, "binary", bin, sizeof(bin)) < 0)
		return reply_error(o, "'binary' must be a path string");
	if (master_upgrade(c->m, bin[0] != '\0' ? bin : NULL, err,
	    sizeof(err)) == 0)
		return 1;
	if (msg_out_init(o, 3) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", false);
	msg_pack_kv_str(&o->pk, "error", err);
	msg_pack_kv_str(&o->pk, "step", "check");
	return 0;
}

/* ---- stats, routes, explain, reopen ----------------------------------- */

/* Status classes in the order an operator reads them; the index of each
 * in worker_counters.status. */
static const char *const sclass[] = { "1xx", "2xx", "3xx", "4xx", "5xx",
    "other" };
static const int sclass_ix[] = { 1, 2, 3, 4, 5, 0 };

struct wrow {
	unsigned slot;
	uint64_t pid, generation;
	bool draining;
	uint64_t conns, conns_total, requests, upstream, status[6];
};

/* Five key/value pairs of a map. */
static void
pack_counts(msgpack_packer *pk, const struct wrow *r)
{
	int i;

	msg_pack_kv_uint(pk, "conns", r->conns);
	msg_pack_kv_uint(pk, "conns_total", r->conns_total);
	msg_pack_kv_uint(pk, "requests", r->requests);
	msg_pack_kv_uint(pk, "upstream_conns", r->upstream);
	msg_pack_str(pk, "status");
	msgpack_pack_map(pk, 6);
	for (i = 0; i < 6; i++)
		msg_pack_kv_uint(pk, sclass[i], r->status[sclass_ix[i]]);
}

/*
 * stats: every counters slot with a live process, whatever its
 * generation (a draining one still serves its connections), and the sum.
 * The slots are copied first so the list and the total agree.
 */
static int
reply_stats(struct control *c, struct msg_out *o)
{
	const struct counters *ct = c->m->counters;
	struct wrow *rows, total;
	unsigned i, n = 0;
	int k;

	if (ct == NULL)
		return reply_error(o, "the counters are not mapped");
	rows = calloc(ct->nslots + 1, sizeof(*rows));
	if (rows == NULL)
		return -1;
	memset(&total, 0, sizeof(total));
	for (i = 0; i < ct->nslots; i++) {
		const struct worker_counters *wc = &ct->slot[i];
		struct wrow *r = &rows[n];

		r->pid = COUNTER_GET(&wc->pid);
		if (r->pid == 0)
			continue;
		r->slot = i;
		r->generation = COUNTER_GET(&wc->generation);
		r->draining = COUNTER_GET(&wc->draining) != 0;
		r->conns = COUNTER_GET(&wc->conns_open);
		r->conns_total = COUNTER_GET(&wc->conns_total);
		r->requests = COUNTER_GET(&wc->requests);
		r->upstream = COUNTER_GET(&wc->upstream_conns);
		for (k = 0; k < 6; k++)
			r->status[k] = COUNTER_GET(&wc->status[k]);
		total.conns += r->conns;
		total.conns_total += r->conns_total;
		total.requests += r->requests;
		total.upstream += r->upstream;
		for (k = 0; k < 6; k++)
			total.status[k] += r->status[k];
		n++;
	}
	if (msg_out_init(o, 4) < 0) {
		free(rows);
		return -1;
	}
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_str(&o->pk, "workers");
	msgpack_pack_array(&o->pk, n);
	for (i = 0; i < n; i++) {
		msgpack_pack_map(&o->pk, 9);
		msg_pack_kv_uint(&o->pk, "slot", rows[i].slot);
		msg_pack_kv_uint(&o->pk, "pid", rows[i].pid);
		msg_pack_kv_uint(&o->pk, "generation", rows[i].generation);
		msg_pack_kv_bool(&o->pk, "draining", rows[i].draining);
		pack_counts(&o->pk, &rows[i]);
	}
	msg_pack_str(&o->pk, "total");
	msgpack_pack_map(&o->pk, 6);
	msg_pack_kv_uint(&o->pk, "workers", n);
	pack_counts(&o->pk, &total);
	/* Per-route counters need per-worker per-route slots in shm. */
	msg_pack_kv_str(&o->pk, "routes", "per-route stats come with the "
	    "observability issue");
	free(rows);
	return 0;
}

static const char *
balance_name(const struct cfg_service *s, char *buf, size_t len)
{
	switch (s->balance) {
	case BAL_LEAST_CONN:
		return "least_conn";
	case BAL_HASH_IP:
		return "hash:ip";
	case BAL_HASH_CONSUMER:
		return "hash:consumer";
	case BAL_HASH_HEADER:
		snprintf(buf, len, "hash:header:%s",
		    s->hash_header != NULL ? s->hash_header : "");
		return buf;
	default:
		return "round_robin";
	}
}

static void
pack_strs(msgpack_packer *pk, const char *key, char *const *v, size_t n)
{
	size_t i;

	msg_pack_str(pk, key);
	msgpack_pack_array(pk, n);
	for (i = 0; i < n; i++)
		msg_pack_str(pk, v[i]);
}

/* The route's match as a map of 4: one of path/prefix/regex, methods
 * (empty: any), host (nil: any). */
static void
pack_match(msgpack_packer *pk, const struct cfg_route *r)
{
	unsigned m, n = 0;

	msgpack_pack_map(pk, 4);
	if (r->path != NULL) {
		msg_pack_kv_str(pk, "kind", "path");
		msg_pack_kv_str(pk, "value", r->path);
	} else if (r->prefix != NULL) {
		msg_pack_kv_str(pk, "kind", "prefix");
		/* Stored without its trailing '/': "/" is kept as "". */
		msg_pack_kv_str(pk, "value", r->prefix[0] != '\0' ?
		    r->prefix : "/");
	} else {
		msg_pack_kv_str(pk, "kind", "regex");
		msg_pack_kv_str(pk, "value", r->regex != NULL ? r->regex : "");
	}
	for (m = 0; m < M__COUNT; m++)
		if (r->methods & METHOD_BIT(m))
			n++;
	msg_pack_str(pk, "methods");
	msgpack_pack_array(pk, n);
	for (m = 0; m < M__COUNT; m++)
		if (r->methods & METHOD_BIT(m))
			msg_pack_str(pk, method_name((enum http_method)m));
	msg_pack_kv_str(pk, "host", r->host);
}

/* What the explained request supplies to the settings that read it. */
struct xreq {
	const msgpack_object *hdrs;	/* array of "Name: value" */
	const char *ip;			/* --ip, or NULL */
};

/* The value of header NAME in an explain request ("" and false when
 * absent), optional whitespace trimmed like the parser does. */
static bool
xreq_header(const struct xreq *x, const char *name, const char **val,
    size_t *vlen)
{
	size_t nlen = strlen(name), i, l;
	const char *p, *colon;

	*val = "";
	*vlen = 0;
	if (x == NULL || x->hdrs == NULL)
		return false;
	for (i = 0; i < x->hdrs->via.array.size; i++) {
		const msgpack_object *h = &x->hdrs->via.array.ptr[i];

		p = h->via.str.ptr;
		l = h->via.str.size;
		colon = memchr(p, ':', l);
		if (colon == NULL || (size_t)(colon - p) != nlen ||
		    strncasecmp(p, name, nlen) != 0)
			continue;
		p = colon + 1;
		l -= nlen + 1;
		while (l > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			l--;
		}
		while (l > 0 && (p[l - 1] == ' ' || p[l - 1] == '\t'))
			l--;
		*val = p;
		*vlen = l;
		return true;
	}
	return false;
}

/*
 * The route's policies in pipeline order (trace, auth, rate limit, cache,
 * transform), each a map with "name" and its settings; "built": false for
 * those configured but not in this build yet. With X (explain), the rate
 * limit also names the bucket key the request would use.
 */
static void
pack_policies(msgpack_packer *pk, const struct config *cfg,
    const struct cfg_route *r, const struct xreq *x)
{
	static const char *const auths[] = { "none", "jwt", "api_key",
	    "any" };
	bool tf = r->nreq_add + r->nreq_remove + r->nresp_add +
	    r->nresp_remove + r->nstrip_fields > 0;
	unsigned n = 0;
	char by[160], key[300];
	const char *v;
	size_t vl;

	n += r->auth != AUTH_NONE;
	n += r->rl_by != RL_NONE;
	n += r->has_cache;
	n += tf;
	n += r->ncalls > 0;
	msgpack_pack_array(pk, n);
	if (r->auth != AUTH_NONE) {
		msgpack_pack_map(pk, 4);
		msg_pack_kv_str(pk, "name", "auth");
		msg_pack_kv_bool(pk, "built", false);
		msg_pack_kv_str(pk, "mode", (unsigned)r->auth < 4 ?
		    auths[r->auth] : "?");
		pack_strs(pk, "scopes", r->scopes, r->nscopes);
	}
	if (r->rl_by != RL_NONE) {
		const char *tier = r->rl_tier >= 0 &&
		    (size_t)r->rl_tier < cfg->ntiers ?
		    cfg->tiers[r->rl_tier].name : NULL;

		switch (r->rl_by) {
		case RL_CONSUMER:
			snprintf(by, sizeof(by), "consumer");
			snprintf(key, sizeof(key), "the consumer (needs "
			    "authentication, not built yet)");
			break;
		case RL_IP:
			snprintf(by, sizeof(by), "ip");
			snprintf(key, sizeof(key), "%s", x != NULL &&
			    x->ip != NULL ? x->ip : "the client address");
			break;
		case RL_ROUTE:
			snprintf(by, sizeof(by), "route");
			snprintf(key, sizeof(key), "%s", r->name);
			break;
		default:
			snprintf(by, sizeof(by), "header:%s",
			    r->rl_header != NULL ? r->rl_header : "");
			if (x == NULL)
				snprintf(key, sizeof(key), "the %s header",
				    r->rl_header != NULL ? r->rl_header : "");
			else if (xreq_header(x, r->rl_header != NULL ?
			    r->rl_header : "", &v, &vl))
				snprintf(key, sizeof(key), "%.*s",
				    vl > 256 ? 256 : (int)vl, v);
			else
				snprintf(key, sizeof(key), "(header absent: "
				    "the shared empty-key bucket)");
			break;
		}
		msgpack_pack_map(pk, 5);
		msg_pack_kv_str(pk, "name", "rate_limit");
		msg_pack_kv_bool(pk, "built", true);
		msg_pack_kv_str(pk, "by", by);
		/* No tier: the consumer's own, or "anonymous" without one. */
		msg_pack_kv_str(pk, "tier", tier != NULL ? tier :
		    r->rl_by == RL_CONSUMER ? "(the consumer's)" : "anonymous");
		msg_pack_kv_str(pk, "key", key);
	}
	if (r->has_cache) {
		msgpack_pack_map(pk, 4);
		msg_pack_kv_str(pk, "name", "cache");
		msg_pack_kv_bool(pk, "built", false);
		msg_pack_kv_uint(pk, "ttl_s", r->cache_ttl_s);
		pack_strs(pk, "vary", r->cache_vary, r->ncache_vary);
	}
	if (tf) {
		msgpack_pack_map(pk, 7);
		msg_pack_kv_str(pk, "name", "transform");
		msg_pack_kv_bool(pk, "built", true);
		pack_strs(pk, "request_add", r->req_add, r->nreq_add);
		pack_strs(pk, "request_remove", r->req_remove, r->nreq_remove);
		pack_strs(pk, "response_add", r->resp_add, r->nresp_add);
		pack_strs(pk, "response_remove", r->resp_remove,
		    r->nresp_remove);
		pack_strs(pk, "strip_fields", r->strip_fields,
		    r->nstrip_fields);
	}
	if (r->ncalls > 0) {
		size_t i;

		msgpack_pack_map(pk, 4);
		msg_pack_kv_str(pk, "name", "aggregate");
		msg_pack_kv_bool(pk, "built", false);
		msg_pack_kv_uint(pk, "timeout_ms", r->aggregate_timeout_ms);
		msg_pack_str(pk, "calls");
		msgpack_pack_array(pk, r->ncalls);
		for (i = 0; i < r->ncalls; i++) {
			const struct cfg_call *cl = &r->calls[i];

			msgpack_pack_map(pk, 4);
			msg_pack_kv_str(pk, "name", cl->name);
			msg_pack_kv_str(pk, "service", cl->service >= 0 &&
			    (size_t)cl->service < cfg->nservices ?
			    cfg->services[cl->service].name : "?");
			msg_pack_kv_str(pk, "path", cl->path);
			msg_pack_kv_str(pk, "fallback", cl->fallback);
		}
	}
}

/* The route's rewrite as a map of 2, or nil. */
static void
pack_rewrite(msgpack_packer *pk, const struct cfg_route *r)
{
	if (r->rewrite_re == NULL) {
		msgpack_pack_nil(pk);
		return;
	}
	msgpack_pack_map(pk, 2);
	msg_pack_kv_str(pk, "pattern", r->rewrite_pattern);
	msg_pack_kv_str(pk, "to", r->rewrite_to);
}

/* The service a route proxies to as a map (with PICK, explain's choice,
 * packed by the caller as a sixth pair when set), or nil. */
static const struct cfg_service *
pack_service(msgpack_packer *pk, const struct config *cfg,
    const struct cfg_route *r, bool pick)
{
	const struct cfg_service *s;
	char buf[160];
	size_t i;

	if (r->service < 0 || (size_t)r->service >= cfg->nservices) {
		msgpack_pack_nil(pk);
		return NULL;
	}
	s = &cfg->services[r->service];
	msgpack_pack_map(pk, pick ? 6 : 5);
	msg_pack_kv_str(pk, "name", s->name);
	msg_pack_kv_uint(pk, "line", (uint64_t)s->line);
	msg_pack_kv_str(pk, "balance", balance_name(s, buf, sizeof(buf)));
	msg_pack_kv_uint(pk, "retries", s->retries);
	msg_pack_str(pk, "instances");
	msgpack_pack_array(pk, s->ninstances);
	for (i = 0; i < s->ninstances; i++)
		msg_pack_str(pk, s->instances[i].text);
	return s;
}

static int
reply_routes(struct control *c, struct msg_out *o)
{
	const struct config *cfg = c->m->cfg;
	size_t i;

	if (msg_out_init(o, 3) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_str(&o->pk, "config", cfg->file);
	msg_pack_str(&o->pk, "routes");
	msgpack_pack_array(&o->pk, cfg->nroutes);
	for (i = 0; i < cfg->nroutes; i++) {
		const struct cfg_route *r = &cfg->routes[i];

		msgpack_pack_map(&o->pk, 6);
		msg_pack_kv_str(&o->pk, "name", r->name);
		msg_pack_kv_uint(&o->pk, "line", (uint64_t)r->line);
		msg_pack_str(&o->pk, "match");
		pack_match(&o->pk, r);
		msg_pack_str(&o->pk, "service");
		pack_service(&o->pk, cfg, r, false);
		msg_pack_str(&o->pk, "rewrite");
		pack_rewrite(&o->pk, r);
		msg_pack_str(&o->pk, "policies");
		pack_policies(&o->pk, cfg, r, NULL);
	}
	return 0;
}

/* explain's instance choice: the second half of the service map. */
static void
pack_pick(msgpack_packer *pk, const struct cfg_service *s,
    const struct xreq *x)
{
	struct service_rt rt = { .cfg = s, .ninst = (unsigned)s->ninstances };
	unsigned char addr[16];
	char how[320];
	const char *v;
	size_t vl;
	int idx = -1;

	if (s->ninstances == 1) {
		idx = 0;
		snprintf(how, sizeof(how), "the only instance");
	} else if (s->balance == BAL_ROUND_ROBIN) {
		snprintf(how, sizeof(how), "next of %zu (round robin per "
		    "worker)", s->ninstances);
	} else if (s->balance == BAL_LEAST_CONN) {
		snprintf(how, sizeof(how), "the one of %zu with the fewest "
		    "active requests (least_conn, per worker)",
		    s->ninstances);
	} else if (s->balance == BAL_HASH_IP) {
		if (x->ip == NULL) {
			snprintf(how, sizeof(how), "hash of the client "
			    "address over %zu (give --ip ADDR to compute it)",
			    s->ninstances);
		} else if (inet_pton(AF_INET, x->ip, addr) == 1) {
			idx = upstream_pick(&rt, upstream_hash(addr, 4),
			    0, -1);
			snprintf(how, sizeof(how), "hash of %s", x->ip);
		} else if (inet_pton(AF_INET6, x->ip, addr) == 1) {
			idx = upstream_pick(&rt, upstream_hash(addr, 16),
			    0, -1);
			snprintf(how, sizeof(how), "hash of %s", x->ip);
		} else {
			snprintf(how, sizeof(how), "hash of the client "
			    "address ('%.64s' is not an IP address)", x->ip);
		}
	} else if (s->balance == BAL_HASH_HEADER) {
		/* Absent: the worker hashes "", so one instance takes all. */
		bool has = xreq_header(x, s->hash_header, &v, &vl);

		idx = upstream_pick(&rt, upstream_hash(v, vl), 0, -1);
		snprintf(how, sizeof(how), "hash of the %s header (%s)",
		    s->hash_header, has ? "given" : "absent: hash of \"\"");
	} else {
		/* The worker has no consumer yet and hashes nothing. */
		idx = upstream_pick(&rt, 0, 0, -1);
		snprintf(how, sizeof(how), "hash of the consumer "
		    "(authentication is not built yet: always this one)");
	}
	msg_pack_str(pk, "pick");
	msgpack_pack_map(pk, 3);
	if (idx >= 0) {
		msg_pack_kv_int(pk, "index", idx);
		msg_pack_kv_str(pk, "instance", s->instances[idx].text);
	} else {
		msg_pack_kv_str(pk, "index", NULL);
		msg_pack_kv_str(pk, "instance", NULL);
	}
	msg_pack_kv_str(pk, "how", how);
}

/*
 * explain: run the routing steps a worker runs (split the query off,
 * normalise, route_find, rewrite) on the live config and describe the
 * outcome; nothing is sent anywhere.
 */
static int
reply_explain(struct control *c, const msgpack_object *req,
    struct msg_out *o)
{
	const struct config *cfg = c->m->cfg;
	const msgpack_object *hdrs = msg_get(req, "headers");
	struct route_match_data *md = NULL;
	const struct cfg_route *r;
	const struct cfg_service *s;
	struct xreq x = { NULL, NULL };
	char method[32], ip[64], *target = NULL, *norm = NULL, *rw = NULL;
	char reason[512], allowtxt[128];
	const char *host, *q;
	size_t cap = cfg->server.limits.header_bytes + 1, hlen, plen, i;
	unsigned allow = 0;
	int n, ri, rn, rc = -1;

	if (msg_get_str(req, "method", method, sizeof(method)) < 0 ||
	    method[0] == '\0')
		return reply_error(o, "explain needs a METHOD");
	target = malloc(cap + 1);
	norm = malloc(cap);
	rw = malloc(cap);
	if (target == NULL || norm == NULL || rw == NULL)
		goto done;
	if (msg_get_str(req, "path", target, cap + 1) < 0) {
		rc = reply_error(o, "explain needs a PATH of at most %zu "
		    "bytes", cap - 1);
		goto done;
	}
	if (hdrs != NULL && hdrs->type != MSGPACK_OBJECT_ARRAY) {
		rc = reply_error(o, "'headers' must be an array");
		goto done;
	}
	for (i = 0; hdrs != NULL && i < hdrs->via.array.size; i++) {
		const msgpack_object *h = &hdrs->via.array.ptr[i];

		if (h->type != MSGPACK_OBJECT_STR ||
		    memchr(h->via.str.ptr, ':', h->via.str.size) == NULL ||
		    h->via.str.ptr[0] == ':') {
			rc = reply_error(o, "header #%zu is not 'Name: "
			    "value'", i + 1);
			goto done;
		}
	}
	x.hdrs = hdrs;
	if (msg_get(req, "ip") != NULL &&
	    msg_get(req, "ip")->type != MSGPACK_OBJECT_NIL) {
		if (msg_get_str(req, "ip", ip, sizeof(ip)) < 0) {
			rc = reply_error(o, "'ip' must be an address");
			goto done;
		}
		x.ip = ip;
	}
	xreq_header(&x, "Host", &host, &hlen);
	plen = strlen(target);
	q = memchr(target, '?', plen);
	if (q != NULL)
		plen = (size_t)(q - target);
	if (plen == 0 && q == NULL) {
		/* An empty target is "/" to the worker too. */
		snprintf(target, cap + 1, "/");
		plen = 1;
	}
	if (msg_out_init(o, -1) < 0)
		goto done;
	n = route_normalize(target, plen, norm, cap);
	if (n < 0) {
		msgpack_pack_map(&o->pk, 6);
		msg_pack_kv_bool(&o->pk, "ok", true);
		msg_pack_kv_str(&o->pk, "method", method);
		msg_pack_kv_str(&o->pk, "target", target);
		msg_pack_kv_int(&o->pk, "status", n == -2 ? 414 : 400);
		msg_pack_kv_str(&o->pk, "reason", n == -2 ?
		    "the path is too long once normalised: 414" :
		    "the path is refused by normalisation: 400 (it must start "
		    "with '/', hold no encoded '/', '\\' or NUL, no bad "
		    "escape, only RFC 3986 characters, and '..' may not climb "
		    "above the root)");
		msg_pack_kv_str(&o->pk, "route", NULL);
		rc = 0;
		goto done;
	}
	md = route_match_data_new(cfg);
	if (md == NULL)
		goto done;
	ri = route_find(cfg, md, method_from_name(method, strlen(method)),
	    host, hlen, norm, (size_t)n, &allow);
	if (ri < 0) {
		route_allow_header(allow, allowtxt, sizeof(allowtxt));
		msgpack_pack_map(&o->pk, ri == -405 ? 8 : 7);
		msg_pack_kv_bool(&o->pk, "ok", true);
		msg_pack_kv_str(&o->pk, "method", method);
		msg_pack_kv_str(&o->pk, "target", target);
		msg_pack_kv_str(&o->pk, "normalized", norm);
		msg_pack_kv_int(&o->pk, "status", ri == -405 ? 405 : 404);
		if (ri == -405) {
			snprintf(reason, sizeof(reason), "a route matches the "
			    "path%s but not the method %s: 405, Allow: %s",
			    hlen > 0 ? " and host" : "", method, allowtxt);
			msg_pack_kv_str(&o->pk, "allow", allowtxt);
		} else {
			snprintf(reason, sizeof(reason), "no route matches "
			    "this path%s: 404", hlen > 0 ? " and host" :
			    " (and no Host header was given)");
		}
		msg_pack_kv_str(&o->pk, "reason", reason);
		msg_pack_kv_str(&o->pk, "route", NULL);
		rc = 0;
		goto done;
	}
	r = &cfg->routes[ri];
	rn = route_rewrite(r, md, norm, (size_t)n, rw, cap);
	msgpack_pack_map(&o->pk, 12);
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_str(&o->pk, "method", method);
	msg_pack_kv_str(&o->pk, "target", target);
	msg_pack_kv_str(&o->pk, "normalized", norm);
	if (rn < 0) {
		msg_pack_kv_int(&o->pk, "status", 414);
		snprintf(reason, sizeof(reason), "route '%s' (line %d) "
		    "matches, but its rewrite makes the path too long: 414",
		    r->name, r->line);
	} else {
		msg_pack_kv_str(&o->pk, "status", NULL);
		snprintf(reason, sizeof(reason), "route '%s' (line %d) "
		    "matches%s", r->name, r->line,
		    r->service >= 0 ? "; forwarded to its service" :
		    "; it aggregates (not built yet)");
	}
	msg_pack_kv_str(&o->pk, "reason", reason);
	msg_pack_str(&o->pk, "route");
	msgpack_pack_map(&o->pk, 3);
	msg_pack_kv_str(&o->pk, "name", r->name);
	msg_pack_kv_uint(&o->pk, "line", (uint64_t)r->line);
	msg_pack_str(&o->pk, "match");
	pack_match(&o->pk, r);
	msg_pack_str(&o->pk, "rewrite");
	pack_rewrite(&o->pk, r);
	/* What goes upstream: the rewritten (or normalised) path and the
	 * query exactly as the client sent it. */
	snprintf(reason, sizeof(reason), "%s%s", rn > 0 ? rw : norm,
	    q != NULL ? q : "");
	msg_pack_kv_str(&o->pk, "upstream_path", reason);
	msg_pack_str(&o->pk, "policies");
	pack_policies(&o->pk, cfg, r, &x);
	msg_pack_str(&o->pk, "service");
	s = pack_service(&o->pk, cfg, r, true);
	if (s != NULL)
		pack_pick(&o->pk, s, &x);
	msg_pack_kv_bool(&o->pk, "sent", false);
	rc = 0;
done:
	route_match_data_free(md);
	free(target);
	free(norm);
	free(rw);
	return rc;
}

/*
 * reopen: the master's error log, then every worker's error and access
 * logs (they reopen on SIGUSR1), after a rotation.
 */
static int
reply_reopen(struct control *c, struct msg_out *o)
{
	struct master *m = c->m;
	unsigned i, n = 0;
	int err = 0;

	if (log_reopen() < 0)
		err = errno;
	else
		log_info("error log reopened (gwctl reopen)");
	/* Every generation: the serving one, one still draining (it
	 * writes its last lines) and one a reload is starting. */
	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].pid > 0 && kill(m->slots[i].pid, SIGUSR1) == 0)
			n++;
	for (i = 0; m->old != NULL && i < m->nold; i++)
		if (m->old[i].pid > 0 && kill(m->old[i].pid, SIGUSR1) == 0)
			n++;
	for (i = 0; m->next != NULL && i < m->nnext; i++)
		if (m->next[i].pid > 0 && kill(m->next[i].pid, SIGUSR1) == 0)
			n++;
	if (err != 0)
		return reply_error(o, "reopening the error log %s: %s "
		    "(%u workers signalled)", m->cfg->server.error_log,
		    strerror(err), n);
	if (msg_out_init(o, 3) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_str(&o->pk, "error_log", m->cfg->server.error_log);
	msg_pack_kv_uint(&o->pk, "workers_signalled", n);
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

	if (cmd == NULL || cmd->type != MSGPACK_OBJECT_STR)
		return reply_error(o, "request has no 'cmd' string");
	safe_name(cmd, name, sizeof(name));
	if (msg_str_eq(cmd, "status"))
		return reply_status(c, o);
	if (msg_str_eq(cmd, "limits"))	/* ratelimit */
		return control_reply_limits(req, o);
	if (msg_str_eq(cmd, "stats"))
		return reply_stats(c, o);
	if (msg_str_eq(cmd, "routes"))
		return reply_routes(c, o);
	if (msg_str_eq(cmd, "explain"))
		return reply_explain(c, req, o);
	if (msg_str_eq(cmd, "reopen"))
		return reply_reopen(c, o);
	if (msg_str_eq(cmd, "breakers"))
		return reply_error(o, "circuit breakers are not built yet");
	if (msg_str_eq(cmd, "cache"))
		return reply_error(o, "the response cache is not built yet");
	if (msg_str_eq(cmd, "reload"))
		return reply_reload(c, o);
	if (msg_str_eq(cmd, "upgrade"))
		return reply_upgrade(c, req, o);
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

struct control *
control_adopt(struct master *m, int fd, const char *path, char *err,
    size_t errlen)
{
	struct epoll_event e;
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
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	e.events = EPOLLIN;
	e.data.ptr = &c->ev;
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		free(c->path);
		free(c);
		return NULL;
	}
	return c;
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
	epoll_ctl(c->m->epfd, EPOLL_CTL_DEL, c->ev.fd, NULL);
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
