/*
 * control_stats: the reply to `gwctl stats`: per route and per service
 * (requests, rate over the last 10 s, status classes, error rate, latency
 * quantiles from the histograms, cache, rate-limit and auth refusals,
 * breaker and health), and per worker with the total, as before. With
 * "route": NAME, that route in detail, its histograms included.
 */
#include <stdlib.h>
#include <string.h>

#include "control-int.h"
#include "control_cache.h"
#include "master.h"
#include "msg.h"
#include "stats.h"

/* Status classes in the order an operator reads them; the index of each
 * in worker_counters.status and metrics_route.status. */
static const char *const sclass[] = { "1xx", "2xx", "3xx", "4xx", "5xx",
    "other" };
static const int sclass_ix[] = { 1, 2, 3, 4, 5, 0 };
static const char *const uperr[MU__COUNT] = { "connect", "reset", "timeout",
    "bad_response" };
static const char *const cache[MC__COUNT] = { "hit", "miss", "stale",
    "bypass" };

struct wrow {
	unsigned slot;
	uint64_t pid, generation;
	bool draining;
	uint64_t conns, conns_total, requests, upstream, status[6];
};

static void
kv_double(msgpack_packer *pk, const char *key, double v)
{
	msg_pack_str(pk, key);
	msgpack_pack_double(pk, v);
}

/* A quantile in milliseconds, nil when the histogram is empty. */
static void
kv_quantile(msgpack_packer *pk, const char *key, const struct metrics_hist *h,
    double q)
{
	double s = metrics_quantile(h, q);

	msg_pack_str(pk, key);
	if (s < 0)
		msgpack_pack_nil(pk);
	else
		msgpack_pack_double(pk, s * 1000.0);
}

static void
kv_status(msgpack_packer *pk, const uint64_t *st)
{
	int i;

	msg_pack_str(pk, "status");
	msgpack_pack_map(pk, 6);
	for (i = 0; i < 6; i++)
		msg_pack_kv_uint(pk, sclass[i], st[sclass_ix[i]]);
}

/* Five key/value pairs of a map. */
static void
pack_counts(msgpack_packer *pk, const struct wrow *r)
{
	msg_pack_kv_uint(pk, "conns", r->conns);
	msg_pack_kv_uint(pk, "conns_total", r->conns_total);
	msg_pack_kv_uint(pk, "requests", r->requests);
	msg_pack_kv_uint(pk, "upstream_conns", r->upstream);
	kv_status(pk, r->status);
}

static const char *
health_text(int h)
{
	return h == STATS_UP ? "up" : h == STATS_DOWN ? "down" : "unknown";
}

static const char *
breaker_text(int b)
{
	return b == STATS_CLOSED ? "closed" : b == STATS_OPEN ? "open" :
	    b == STATS_HALF_OPEN ? "half-open" : "unknown";
}

/* A service's breakers in one word: the worst state of its instances
 * ("open" when any is, "half-open", "closed" when all are), "unknown"
 * when none is known. */
static const char *
service_breaker(const struct stats_view *v, const struct stats_service *s)
{
	int worst = STATS_UNKNOWN;
	size_t i;

	for (i = s->first_inst; i < s->first_inst + s->ninst; i++) {
		int b = v->insts[i].breaker;

		if (b != STATS_UNKNOWN && b > worst)
			worst = b;
	}
	return breaker_text(worst);
}

static const struct stats_service *
find_service(const struct stats_view *v, const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < v->nservices; i++)
		if (strcmp(v->services[i].name, name) == 0)
			return &v->services[i];
	return NULL;
}

static double
error_rate(const struct metrics_route *m)
{
	uint64_t n = stats_requests(m);

	return n > 0 ? (double)m->status[5] / (double)n : 0;
}

/* hits / (hits + misses + stale); nil before any lookup. */
static void
kv_hit_ratio(msgpack_packer *pk, const struct metrics_route *m)
{
	uint64_t looked = m->cache[MC_HIT] + m->cache[MC_MISS] +
	    m->cache[MC_STALE];

	msg_pack_str(pk, "cache_hit_ratio");
	if (looked == 0)
		msgpack_pack_nil(pk);
	else
		msgpack_pack_double(pk, (double)m->cache[MC_HIT] /
		    (double)looked);
}

/* The numbers a route and a service row share: 12 pairs. */
static void
pack_common(msgpack_packer *pk, const struct metrics_route *m, double rate,
    const struct metrics_hist *lat)
{
	unsigned k;

	msg_pack_kv_uint(pk, "requests", stats_requests(m));
	kv_double(pk, "rate", rate);
	kv_status(pk, m->status);
	kv_double(pk, "error_rate", error_rate(m));
	kv_quantile(pk, "p50_ms", lat, 0.50);
	kv_quantile(pk, "p90_ms", lat, 0.90);
	kv_quantile(pk, "p99_ms", lat, 0.99);
	msg_pack_kv_uint(pk, "rate_limited", m->rate_limited);
	msg_pack_kv_uint(pk, "auth_refused", m->auth_refused);
	kv_hit_ratio(pk, m);
	msg_pack_kv_uint(pk, "bytes_out", m->bytes_out);
	msg_pack_str(pk, "cache");
	msgpack_pack_map(pk, MC__COUNT);
	for (k = 0; k < MC__COUNT; k++)
		msg_pack_kv_uint(pk, cache[k], m->cache[k]);
}

static void
pack_hist(msgpack_packer *pk, const char *key, const struct metrics_hist *h)
{
	uint64_t cum = 0;
	unsigned k;

	msg_pack_str(pk, key);
	msgpack_pack_map(pk, 6);
	kv_quantile(pk, "p50_ms", h, 0.50);
	kv_quantile(pk, "p90_ms", h, 0.90);
	kv_quantile(pk, "p99_ms", h, 0.99);
	kv_double(pk, "sum_s", h->sum_us / 1e6);
	msg_pack_kv_uint(pk, "count", metrics_hist_count(h));
	/* Cumulative, as Prometheus shows them; le nil = +Inf. */
	msg_pack_str(pk, "buckets");
	msgpack_pack_array(pk, METRICS_BUCKETS);
	for (k = 0; k < METRICS_BUCKETS; k++) {
		cum += h->bucket[k];
		msgpack_pack_map(pk, 2);
		msg_pack_str(pk, "le_ms");
		if (k < METRICS_NBOUNDS)
			msgpack_pack_double(pk, metrics_bounds_us[k] / 1e3);
		else
			msgpack_pack_nil(pk);
		msg_pack_kv_uint(pk, "count", cum);
	}
}

static void
pack_route(msgpack_packer *pk, const struct stats_view *v,
    const struct stats_route *r, bool detail)
{
	const struct stats_service *s = find_service(v, r->service);

	msgpack_pack_map(pk, 12 + 5 + (detail ? 2 : 0));
	pack_common(pk, &r->m, r->rate, &r->m.total);
	msg_pack_kv_str(pk, "name", r->name);
	msg_pack_kv_str(pk, "service", r->service);
	msg_pack_kv_bool(pk, "serving", r->serving);
	msg_pack_kv_bool(pk, "caches", r->cache);
	msg_pack_kv_str(pk, "breaker", s != NULL ? service_breaker(v, s) :
	    "-");
	if (detail) {
		pack_hist(pk, "latency", &r->m.total);
		pack_hist(pk, "upstream_latency", &r->m.upstream);
	}
}

static void
pack_service(msgpack_packer *pk, const struct stats_view *v,
    const struct stats_service *s)
{
	size_t i;
	unsigned k;

	msgpack_pack_map(pk, 12 + 4);
	/* Latency of a service: the upstream's, over its routes. */
	pack_common(pk, &s->m, s->rate, &s->m.upstream);
	msg_pack_kv_str(pk, "name", s->name);
	msg_pack_kv_str(pk, "breaker", service_breaker(v, s));
	msg_pack_str(pk, "upstream_errors");
	msgpack_pack_map(pk, MU__COUNT);
	for (k = 0; k < MU__COUNT; k++)
		msg_pack_kv_uint(pk, uperr[k], s->err[k]);
	msg_pack_str(pk, "instances");
	msgpack_pack_array(pk, s->ninst);
	for (i = s->first_inst; i < s->first_inst + s->ninst; i++) {
		const struct stats_inst *in = &v->insts[i];

		msgpack_pack_map(pk, 4);
		msg_pack_kv_str(pk, "address", in->addr);
		msg_pack_kv_str(pk, "health", health_text(in->health));
		msg_pack_kv_str(pk, "breaker", breaker_text(in->breaker));
		msg_pack_str(pk, "upstream_errors");
		msgpack_pack_map(pk, MU__COUNT);
		for (k = 0; k < MU__COUNT; k++)
			msg_pack_kv_uint(pk, uperr[k], in->m.err[k]);
	}
}

/* The strip_fields and aggregate counts, over every slot (a slot's
 * counts are never reset, so the sums only grow). */
static void
pack_features(msgpack_packer *pk, const struct counters *ct)
{
	static const char *const strip[] = { "bodies", "removed", "not_json",
	    "invalid", "encoded" };
	static const char *const agg[] = { "requests", "degraded", "failed",
	    "parts_degraded" };
	uint64_t sf[5] = { 0 }, ag[4] = { 0 };
	unsigned i;
	int k;

	for (i = 0; i < ct->nslots; i++) {
		const struct worker_counters *wc = &ct->slot[i];

		sf[0] += COUNTER_GET(&wc->strip_bodies);
		sf[1] += COUNTER_GET(&wc->strip_removed);
		sf[2] += COUNTER_GET(&wc->strip_not_json);
		sf[3] += COUNTER_GET(&wc->strip_invalid);
		sf[4] += COUNTER_GET(&wc->strip_encoded);
		ag[0] += COUNTER_GET(&wc->agg_requests);
		ag[1] += COUNTER_GET(&wc->agg_degraded);
		ag[2] += COUNTER_GET(&wc->agg_failed);
		ag[3] += COUNTER_GET(&wc->agg_parts_degraded);
	}
	msg_pack_str(pk, "strip_fields");
	msgpack_pack_map(pk, 5);
	for (k = 0; k < 5; k++)
		msg_pack_kv_uint(pk, strip[k], sf[k]);
	msg_pack_str(pk, "aggregate");
	msgpack_pack_map(pk, 4);
	for (k = 0; k < 4; k++)
		msg_pack_kv_uint(pk, agg[k], ag[k]);
}

/* Every counters slot with a live process, whatever its generation (a
 * draining one still serves its connections), and the sum (with the
 * strip_fields and aggregate counts). The slots are copied first so the
 * list and the total agree. */
static int
pack_workers(struct master *m, msgpack_packer *pk)
{
	const struct counters *ct = m->counters;
	struct wrow *rows, total;
	unsigned i, n = 0;
	int k;

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
	msg_pack_str(pk, "workers");
	msgpack_pack_array(pk, n);
	for (i = 0; i < n; i++) {
		msgpack_pack_map(pk, 9);
		msg_pack_kv_uint(pk, "slot", rows[i].slot);
		msg_pack_kv_uint(pk, "pid", rows[i].pid);
		msg_pack_kv_uint(pk, "generation", rows[i].generation);
		msg_pack_kv_bool(pk, "draining", rows[i].draining);
		pack_counts(pk, &rows[i]);
	}
	msg_pack_str(pk, "total");
	msgpack_pack_map(pk, 8);
	msg_pack_kv_uint(pk, "workers", n);
	pack_counts(pk, &total);
	pack_features(pk, ct);
	free(rows);
	return 0;
}

int
control_reply_stats(struct master *m, const msgpack_object *req,
    struct msg_out *o)
{
	const msgpack_object *want = msg_get(req, "route");
	const struct stats_route *one = NULL;
	struct stats_view v;
	char name[CFG_NAME_MAX + 1];
	size_t i;
	int rc = -1;

	if (m->counters == NULL || m->stats == NULL)
		return control_reply_error(o, "the counters are not mapped");
	name[0] = '\0';
	if (want != NULL && want->type != MSGPACK_OBJECT_NIL &&
	    msg_get_str(req, "route", name, sizeof(name)) < 0)
		return control_reply_error(o, "'route' must be a route name "
		    "(at most %d bytes)", CFG_NAME_MAX);
	if (stats_view(m, &v) < 0) {
		stats_view_free(&v);
		return -1;
	}
	for (i = 0; name[0] != '\0' && i < v.nroutes; i++)
		if (v.routes[i].name != NULL &&
		    strcmp(v.routes[i].name, name) == 0)
			one = &v.routes[i];
	if (name[0] != '\0' && one == NULL) {
		stats_view_free(&v);
		return control_reply_error(o, "no route '%s' (gwctl routes "
		    "lists them)", name);
	}
	if (msg_out_init(o, name[0] != '\0' ? 7 : 9) < 0)
		goto done;
	msg_pack_kv_bool(&o->pk, "ok", true);
	kv_double(&o->pk, "window_s", v.window_s);
	msg_pack_kv_uint(&o->pk, "generation", m->generation);
	if (pack_workers(m, &o->pk) < 0)
		goto done;
	if (one != NULL) {
		msg_pack_str(&o->pk, "route");
		pack_route(&o->pk, &v, one, true);
		msg_pack_str(&o->pk, "service");
		if (find_service(&v, one->service) != NULL)
			pack_service(&o->pk, &v, find_service(&v,
			    one->service));
		else
			msgpack_pack_nil(&o->pk);
	} else {
		msg_pack_str(&o->pk, "routes");
		msgpack_pack_array(&o->pk, v.nroutes);
		for (i = 0; i < v.nroutes; i++)
			pack_route(&o->pk, &v, &v.routes[i], false);
		msg_pack_str(&o->pk, "services");
		msgpack_pack_array(&o->pk, v.nservices);
		for (i = 0; i < v.nservices; i++)
			pack_service(&o->pk, &v, &v.services[i]);
		msg_pack_kv_uint(&o->pk, "received_bytes", v.bytes_in);
		/* ---- response cache (one key: "cache") ---- */
		control_pack_cache_stats(&o->pk, m->counters);
		/* ---- end of the response cache ---- */
	}
	rc = 0;
done:
	stats_view_free(&v);
	return rc;
}
