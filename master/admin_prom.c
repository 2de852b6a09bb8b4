/*
 * admin_prom: /metrics in the Prometheus text format (version 0.0.4),
 * from stats_view. Every family has its HELP and TYPE lines even when it
 * has no series yet (the cache's, until a route caches).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "master.h"
#include "stats.h"

/* A label value, escaped as the format wants (\\, \", \n). */
static void
label(struct abuf *b, const char *name, const char *v, bool comma)
{
	const char *p;

	abuf_printf(b, "%s%s=\"", comma ? "," : "", name);
	for (p = v; *p != '\0'; p++) {
		if (*p == '\\')
			abuf_put(b, "\\\\", 2);
		else if (*p == '"')
			abuf_put(b, "\\\"", 2);
		else if (*p == '\n')
			abuf_put(b, "\\n", 2);
		else
			abuf_put(b, p, 1);
	}
	abuf_put(b, "\"", 1);
}

static void
family(struct abuf *b, const char *name, const char *type, const char *help)
{
	abuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one unlabelled series: its HELP, TYPE and value. */
static void
scalar(struct abuf *b, const char *name, const char *type, const char *help,
    unsigned long long value)
{
	family(b, name, type, help);
	abuf_printf(b, "%s %llu\n", name, value);
}

/* NAME{route="R"[,EXTRA]} - the route label left out for the requests no
 * route matched. Closes the brace when EXTRA is NULL. */
static void
route_series(struct abuf *b, const char *name, const struct stats_route *r,
    const char *extra)
{
	if (r->name == NULL && extra == NULL) {
		abuf_printf(b, "%s ", name);
		return;
	}
	abuf_printf(b, "%s{", name);
	if (r->name != NULL)
		label(b, "route", r->name, false);
	if (extra != NULL)
		abuf_printf(b, "%s%s", r->name != NULL ? "," : "", extra);
	abuf_put(b, "} ", 2);
}

static void
inst_series(struct abuf *b, const char *name, const struct stats_inst *in)
{
	abuf_printf(b, "%s{", name);
	label(b, "service", in->service, false);
	label(b, "instance", in->addr, true);
	abuf_put(b, "} ", 2);
}

/* One histogram's series for every route (NOROUTE: the no-route one
 * too). UP picks the upstream histogram. */
static void
histogram(struct abuf *b, const struct stats_view *v, const char *name,
    bool up, bool noroute)
{
	char n[96], le[48];
	uint64_t cum;
	size_t i;
	unsigned k;

	for (i = 0; i < v->nroutes; i++) {
		const struct stats_route *r = &v->routes[i];
		const struct metrics_hist *h = up ? &r->m.upstream :
		    &r->m.total;

		if (r->name == NULL && !noroute)
			continue;
		snprintf(n, sizeof(n), "%s_bucket", name);
		for (k = 0, cum = 0; k < METRICS_BUCKETS; k++) {
			cum += h->bucket[k];
			if (k < METRICS_NBOUNDS)
				snprintf(le, sizeof(le), "le=\"%g\"",
				    metrics_bounds_us[k] / 1e6);
			else
				snprintf(le, sizeof(le), "le=\"+Inf\"");
			route_series(b, n, r, le);
			abuf_printf(b, "%llu\n", (unsigned long long)cum);
		}
		snprintf(n, sizeof(n), "%s_sum", name);
		route_series(b, n, r, NULL);
		abuf_printf(b, "%.6f\n", h->sum_us / 1e6);
		snprintf(n, sizeof(n), "%s_count", name);
		route_series(b, n, r, NULL);
		abuf_printf(b, "%llu\n", (unsigned long long)cum);
	}
}

/* A counter of every route: FIELD picks it. */
static void
route_counter(struct abuf *b, const struct stats_view *v, const char *name,
    size_t field, bool noroute)
{
	size_t i;

	for (i = 0; i < v->nroutes; i++) {
		const struct stats_route *r = &v->routes[i];

		if (r->name == NULL && !noroute)
			continue;
		route_series(b, name, r, NULL);
		abuf_printf(b, "%llu\n", (unsigned long long)
		    *(const uint64_t *)((const char *)&r->m + field));
	}
}

static void
routes(struct abuf *b, const struct stats_view *v)
{
	static const char *const cache[MC__COUNT] = { "hit", "miss", "stale",
	    "bypass" };
	char ex[64];
	size_t i;
	unsigned k;

	family(b, "portico_requests_total", "counter", "Requests answered "
	    "(or abandoned by their client: 499), by route and status class. "
	    "Requests no route matched have no route label.");
	for (i = 0; i < v->nroutes; i++)
		for (k = 1; k <= METRICS_CLASSES; k++) {
			snprintf(ex, sizeof(ex), "code_class=\"%s\"",
			    stats_code_class(k % METRICS_CLASSES));
			route_series(b, "portico_requests_total", &v->routes[i],
			    ex);
			abuf_printf(b, "%llu\n", (unsigned long long)
			    v->routes[i].m.status[k % METRICS_CLASSES]);
		}
	family(b, "portico_request_duration_seconds", "histogram", "Time "
	    "from a complete request head to the end of the exchange, by "
	    "route.");
	histogram(b, v, "portico_request_duration_seconds", false, true);
	family(b, "portico_upstream_duration_seconds", "histogram", "Time "
	    "from the first upstream attempt to the response head (or to "
	    "the failure: 502, 504), by route.");
	histogram(b, v, "portico_upstream_duration_seconds", true, false);
	family(b, "portico_rate_limited_total", "counter", "Requests refused "
	    "with 429 by the route's rate limit.");
	route_counter(b, v, "portico_rate_limited_total",
	    offsetof(struct metrics_route, rate_limited), false);
	family(b, "portico_auth_refused_total", "counter", "Requests refused "
	    "by authentication (401) or for a missing scope (403).");
	route_counter(b, v, "portico_auth_refused_total",
	    offsetof(struct metrics_route, auth_refused), false);
	family(b, "portico_cache_requests_total", "counter", "Cache lookups "
	    "by result (hit, miss, stale, bypass), for routes that cache.");
	for (i = 0; i < v->nroutes; i++) {
		if (v->routes[i].name == NULL || !v->routes[i].cache)
			continue;
		for (k = 0; k < MC__COUNT; k++) {
			snprintf(ex, sizeof(ex), "result=\"%s\"", cache[k]);
			route_series(b, "portico_cache_requests_total",
			    &v->routes[i], ex);
			abuf_printf(b, "%llu\n",
			    (unsigned long long)v->routes[i].m.cache[k]);
		}
	}
	family(b, "portico_sent_bytes_total", "counter", "Bytes sent to "
	    "clients (heads and bodies), by route.");
	route_counter(b, v, "portico_sent_bytes_total",
	    offsetof(struct metrics_route, bytes_out), true);
}

static void
upstreams(struct abuf *b, const struct stats_view *v)
{
	static const char *const kinds[MU__COUNT] = { "connect", "reset",
	    "timeout", "bad_response" };
	size_t i;
	unsigned k;

	family(b, "portico_upstream_errors_total", "counter", "Failed "
	    "upstream attempts (retried or not) by kind: connect (refused, "
	    "unreachable, connect timeout), reset (closed before a response), "
	    "timeout, bad_response.");
	for (i = 0; i < v->ninst; i++)
		for (k = 0; k < MU__COUNT; k++) {
			abuf_printf(b, "portico_upstream_errors_total{");
			label(b, "service", v->insts[i].service, false);
			label(b, "instance", v->insts[i].addr, true);
			abuf_printf(b, ",kind=\"%s\"} %llu\n", kinds[k],
			    (unsigned long long)v->insts[i].m.err[k]);
		}
	family(b, "portico_upstream_health", "gauge", "Health of an instance "
	    "as the checks see it: 1 up, 0 down, -1 unknown (not checked).");
	for (i = 0; i < v->ninst; i++) {
		inst_series(b, "portico_upstream_health", &v->insts[i]);
		abuf_printf(b, "%d\n", v->insts[i].health);
	}
	family(b, "portico_upstream_breaker_state", "gauge", "Circuit breaker "
	    "of an instance: 0 closed, 1 half-open, 2 open, -1 unknown (no "
	    "breaker).");
	for (i = 0; i < v->ninst; i++) {
		inst_series(b, "portico_upstream_breaker_state", &v->insts[i]);
		abuf_printf(b, "%d\n", v->insts[i].breaker);
	}
}

static void
process(struct abuf *b, struct master *m, const struct stats_view *v)
{
	scalar(b, "portico_connections_open", "gauge", "Client connections "
	    "open now, in every generation.", v->conns_open);
	scalar(b, "portico_upstream_connections_open", "gauge", "Upstream "
	    "connections open now (pooled or in use).", v->upstream_conns);
	scalar(b, "portico_tls_handshake_failures_total", "counter", "Client "
	    "TLS handshakes that failed or did not finish in time.",
	    v->tls_handshake_failures);
	scalar(b, "portico_received_bytes_total", "counter", "Bytes read from "
	    "clients.", v->bytes_in);
	family(b, "portico_workers", "gauge", "Worker processes alive, by "
	    "the state of their generation.");
	abuf_printf(b, "portico_workers{state=\"serving\"} %u\n"
	    "portico_workers{state=\"starting\"} %u\n"
	    "portico_workers{state=\"draining\"} %u\n", v->workers_serving,
	    v->workers_starting, v->workers_draining);
	family(b, "portico_reloads_total", "counter", "Configuration reloads "
	    "by result (failed: refused or the new workers did not start).");
	abuf_printf(b, "portico_reloads_total{result=\"ok\"} %llu\n"
	    "portico_reloads_total{result=\"failed\"} %llu\n",
	    (unsigned long long)v->reloads_ok,
	    (unsigned long long)v->reloads_failed);
	scalar(b, "portico_worker_restarts_total", "counter", "Workers that "
	    "died and were respawned.", v->restarts);
	scalar(b, "portico_config_generation", "gauge", "The serving "
	    "generation (1 at start, one more at each reload).",
	    m->generation);
	family(b, "portico_start_time_seconds", "gauge", "When the master "
	    "started, in seconds since the epoch.");
	abuf_printf(b, "portico_start_time_seconds %.3f\n",
	    v->start_unix_ms / 1e3);
}

int
admin_prom(struct master *m, struct abuf *out)
{
	struct stats_view v;
	int rc = -1;

	if (stats_view(m, &v) == 0) {
		routes(out, &v);
		upstreams(out, &v);
		process(out, m, &v);
		rc = out->failed ? -1 : 0;
	}
	stats_view_free(&v);
	return rc;
}
