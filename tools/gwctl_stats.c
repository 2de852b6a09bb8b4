#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "master/msg.h"
#include "tools/gwctl_stats.h"

#define NAME_MAX_W	32

static uint64_t
u(const msgpack_object *map, const char *key)
{
	int64_t v = 0;

	if (map == NULL || msg_get_int(map, key, &v) < 0 || v < 0)
		return 0;
	return (uint64_t)v;
}

/* A number under KEY; false when absent or nil. */
static bool
num(const msgpack_object *map, const char *key, double *out)
{
	const msgpack_object *o = map != NULL ? msg_get(map, key) : NULL;

	if (o == NULL)
		return false;
	switch (o->type) {
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		*out = o->via.f64;
		return true;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		*out = (double)o->via.u64;
		return true;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		*out = (double)o->via.i64;
		return true;
	default:
		return false;
	}
}

/* "%.2f" of a number under KEY, or "-" when there is none. */
static const char *
fnum(const msgpack_object *map, const char *key, double scale, int prec,
    char *buf, size_t len)
{
	double v;

	if (!num(map, key, &v))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.*f", prec, v * scale);
	return buf;
}

static const char *
str(const msgpack_object *map, const char *key, const char *dflt, char *buf,
    size_t len)
{
	if (map == NULL || msg_get_str(map, key, buf, len) < 0)
		snprintf(buf, len, "%s", dflt);
	return buf;
}

static const msgpack_object *
arr(const msgpack_object *map, const char *key)
{
	const msgpack_object *a = map != NULL ? msg_get(map, key) : NULL;

	return a != NULL && a->type == MSGPACK_OBJECT_ARRAY ? a : NULL;
}

/* Width of the widest name under KEY in the array, within [min, max]. */
static int
name_width(const msgpack_object *a, const char *key, int min)
{
	char buf[256];
	int w = min, n;
	uint32_t i;

	for (i = 0; a != NULL && i < a->via.array.size; i++) {
		n = (int)strlen(str(&a->via.array.ptr[i], key, "(no route)", buf,
		    sizeof(buf)));
		if (n > w)
			w = n;
	}
	return w > NAME_MAX_W ? NAME_MAX_W : w;
}

/* REQUESTS RATE/S 2XX 4XX 5XX ERR% P50 P90 P99 of a route or service. */
static void
common_cols(FILE *f, const msgpack_object *r)
{
	const msgpack_object *st = msg_get(r, "status");
	char a[32], b[32], c[32], d[32], e[32];

	fprintf(f, " %9" PRIu64 " %8s %7" PRIu64 " %6" PRIu64 " %6" PRIu64
	    " %6s %7s %7s %7s", u(r, "requests"),
	    fnum(r, "rate", 1, 1, a, sizeof(a)), u(st, "2xx"), u(st, "4xx"),
	    u(st, "5xx"), fnum(r, "error_rate", 100, 1, b, sizeof(b)),
	    fnum(r, "p50_ms", 1, 2, c, sizeof(c)),
	    fnum(r, "p90_ms", 1, 2, d, sizeof(d)),
	    fnum(r, "p99_ms", 1, 2, e, sizeof(e)));
}

static void
print_routes(FILE *f, const msgpack_object *rs)
{
	char name[256], svc[256], hit[32], brk[32];
	int w = name_width(rs, "name", 10), sw = name_width(rs, "service", 8);
	uint32_t i;

	fprintf(f, "%-*s %-*s %9s %8s %7s %6s %6s %6s %7s %7s %7s %6s %8s %6s "
	    "%s\n", w, "ROUTE", sw, "SERVICE", "REQUESTS", "RATE/S", "2XX",
	    "4XX", "5XX", "ERR%", "P50ms", "P90ms", "P99ms", "HIT%",
	    "LIMITED", "AUTH", "BREAKER");
	for (i = 0; rs != NULL && i < rs->via.array.size; i++) {
		const msgpack_object *r = &rs->via.array.ptr[i];
		const msgpack_object *nm = msg_get(r, "name");
		bool serving = true;

		msg_get_bool(r, "serving", &serving);
		fprintf(f, "%-*.*s %-*.*s", w, w, str(r, "name", "(no route)",
		    name, sizeof(name)), sw, sw, str(r, "service", "-", svc,
		    sizeof(svc)));
		common_cols(f, r);
		fprintf(f, " %6s %8" PRIu64 " %6" PRIu64 " %s%s\n",
		    fnum(r, "cache_hit_ratio", 100, 1, hit, sizeof(hit)),
		    u(r, "rate_limited"), u(r, "auth_refused"),
		    str(r, "breaker", "-", brk, sizeof(brk)),
		    serving || nm == NULL || nm->type == MSGPACK_OBJECT_NIL ?
		    "" : " (draining)");
	}
}

static void
print_errors(FILE *f, const msgpack_object *e)
{
	fprintf(f, " %7" PRIu64 " %5" PRIu64 " %7" PRIu64 " %4" PRIu64,
	    u(e, "connect"), u(e, "reset"), u(e, "timeout"),
	    u(e, "bad_response"));
}

static void
print_services(FILE *f, const msgpack_object *ss)
{
	char name[256], a[64], b[64], c[64];
	int w = name_width(ss, "name", 10);
	uint32_t i, j;

	fprintf(f, "%-*s %9s %8s %7s %6s %6s %6s %7s %7s %7s %7s %5s %7s %4s "
	    "%s\n", w, "SERVICE", "REQUESTS", "RATE/S", "2XX", "4XX", "5XX",
	    "ERR%", "UP50ms", "UP90ms", "UP99ms", "CONNECT", "RESET",
	    "TIMEOUT", "BAD", "BREAKER");
	for (i = 0; ss != NULL && i < ss->via.array.size; i++) {
		const msgpack_object *s = &ss->via.array.ptr[i];
		const msgpack_object *is = arr(s, "instances");

		fprintf(f, "%-*.*s", w, w, str(s, "name", "?", name,
		    sizeof(name)));
		common_cols(f, s);
		print_errors(f, msg_get(s, "upstream_errors"));
		fprintf(f, " %s\n", str(s, "breaker", "-", a, sizeof(a)));
		for (j = 0; is != NULL && j < is->via.array.size; j++) {
			const msgpack_object *in = &is->via.array.ptr[j];
			const msgpack_object *e = msg_get(in, "upstream_errors");

			fprintf(f, "  %s: health %s, breaker %s; errors: "
			    "connect %" PRIu64 ", reset %" PRIu64 ", timeout %"
			    PRIu64 ", bad response %" PRIu64 "\n",
			    str(in, "address", "?", a, sizeof(a)),
			    str(in, "health", "?", b, sizeof(b)),
			    str(in, "breaker", "?", c, sizeof(c)),
			    u(e, "connect"), u(e, "reset"), u(e, "timeout"),
			    u(e, "bad_response"));
		}
	}
}

static void
print_wrow(FILE *f, const char *slot, const msgpack_object *w)
{
	const msgpack_object *st = msg_get(w, "status");
	char pid[24], gen[24];
	bool draining = false;

	if (msg_get(w, "pid") != NULL) {
		snprintf(pid, sizeof(pid), "%" PRIu64, u(w, "pid"));
		snprintf(gen, sizeof(gen), "%" PRIu64, u(w, "generation"));
	} else {
		snprintf(pid, sizeof(pid), "%" PRIu64 " wkr",
		    u(w, "workers"));
		snprintf(gen, sizeof(gen), "-");
	}
	msg_get_bool(w, "draining", &draining);
	fprintf(f, "%-6s %-10s %-4s %-6" PRIu64 " %-10" PRIu64 " %-6" PRIu64
	    " %-8" PRIu64 " %-6" PRIu64 " %-6" PRIu64 " %-6" PRIu64 " %-6"
	    PRIu64 " %-9" PRIu64 " %s\n", slot, pid, gen, u(w, "conns"),
	    u(w, "requests"), u(st, "1xx"), u(st, "2xx"), u(st, "3xx"),
	    u(st, "4xx"), u(st, "5xx"), u(st, "other"),
	    u(w, "upstream_conns"), msg_get(w, "pid") == NULL ? "" :
	    draining ? "draining" : "serving");
}

static void
print_workers(FILE *f, const msgpack_object *reply)
{
	const msgpack_object *ws = arr(reply, "workers"), *tot;
	char slot[24];
	uint32_t i;

	fprintf(f, "%-6s %-10s %-4s %-6s %-10s %-6s %-8s %-6s %-6s %-6s %-6s "
	    "%-9s %s\n", "WORKER", "PID", "GEN", "CONNS", "REQUESTS", "1XX",
	    "2XX", "3XX", "4XX", "5XX", "OTHER", "UPSTREAM", "STATE");
	for (i = 0; ws != NULL && i < ws->via.array.size; i++) {
		snprintf(slot, sizeof(slot), "%" PRIu64,
		    u(&ws->via.array.ptr[i], "slot"));
		print_wrow(f, slot, &ws->via.array.ptr[i]);
	}
	tot = msg_get(reply, "total");
	if (tot != NULL && tot->type == MSGPACK_OBJECT_MAP)
		print_wrow(f, "total", tot);
}

static void
window_line(FILE *f, const msgpack_object *reply)
{
	double win = 0;

	num(reply, "window_s", &win);
	fprintf(f, "generation %" PRIu64 "; rates over the last %.1f s; "
	    "latency quantiles interpolated within histogram buckets\n",
	    u(reply, "generation"), win);
}

/* The response cache's figures over every worker, and the store's. */
static void
print_cache(FILE *f, const msgpack_object *reply)
{
	const msgpack_object *c = msg_get(reply, "cache");
	double hr = 0;

	if (c == NULL || c->type != MSGPACK_OBJECT_MAP)
		return;
	num(c, "hit_ratio", &hr);
	fprintf(f, "cache: %" PRIu64 " hits, %" PRIu64 " stale, %" PRIu64
	    " misses, %" PRIu64 " bypass; hit ratio %.1f%%; %" PRIu64
	    " collapsed waits, %" PRIu64 " refreshes, %" PRIu64 " too big\n",
	    u(c, "hits"), u(c, "stale"), u(c, "misses"), u(c, "bypass"),
	    hr * 100, u(c, "collapsed_waits"), u(c, "refreshes"),
	    u(c, "too_big"));
	fprintf(f, "cache: %" PRIu64 " entries, %" PRIu64 " of %" PRIu64
	    " bytes; %" PRIu64 " evictions (%" PRIu64 " expired, %" PRIu64
	    " for room), %" PRIu64 " invalidated\n", u(c, "entries"),
	    u(c, "bytes"), u(c, "budget_bytes"), u(c, "evictions"),
	    u(c, "evicted_expired"), u(c, "evicted_lru"),
	    u(c, "invalidated"));
}

/* The strip_fields and aggregate counts (in the total). */
static void
print_features(FILE *f, const msgpack_object *reply)
{
	const msgpack_object *t = msg_get(reply, "total");
	const msgpack_object *sf = t != NULL ? msg_get(t, "strip_fields") :
	    NULL;
	const msgpack_object *ag = t != NULL ? msg_get(t, "aggregate") : NULL;

	if (sf != NULL && sf->type == MSGPACK_OBJECT_MAP)
		fprintf(f, "strip_fields: %" PRIu64 " JSON bodies, %" PRIu64
		    " fields removed; passed unchanged: %" PRIu64 " not JSON, %"
		    PRIu64 " invalid, %" PRIu64 " encoded\n", u(sf, "bodies"),
		    u(sf, "removed"), u(sf, "not_json"), u(sf, "invalid"),
		    u(sf, "encoded"));
	if (ag != NULL && ag->type == MSGPACK_OBJECT_MAP)
		fprintf(f, "aggregate: %" PRIu64 " answered, %" PRIu64
		    " degraded (%" PRIu64 " parts), %" PRIu64 " failed (502)\n",
		    u(ag, "requests"), u(ag, "degraded"),
		    u(ag, "parts_degraded"), u(ag, "failed"));
}

void
gwctl_stats_print(FILE *f, const msgpack_object *reply)
{
	window_line(f, reply);
	print_routes(f, arr(reply, "routes"));
	fputc('\n', f);
	print_services(f, arr(reply, "services"));
	fputc('\n', f);
	print_cache(f, reply);
	print_features(f, reply);
	print_workers(f, reply);
}

static void
print_hist(FILE *f, const char *what, const msgpack_object *h)
{
	const msgpack_object *bs = arr(h, "buckets");
	char a[32], b[32], c[32], le[32];
	uint64_t prev = 0, cum;
	uint32_t i;
	double sum = 0;

	num(h, "sum_s", &sum);
	fprintf(f, "  %-14s p50 %s ms, p90 %s ms, p99 %s ms over %" PRIu64
	    " requests (sum %.3f s)\n", what,
	    fnum(h, "p50_ms", 1, 2, a, sizeof(a)),
	    fnum(h, "p90_ms", 1, 2, b, sizeof(b)),
	    fnum(h, "p99_ms", 1, 2, c, sizeof(c)), u(h, "count"), sum);
	fprintf(f, "  %-14s", "");
	for (i = 0; bs != NULL && i < bs->via.array.size; i++) {
		const msgpack_object *bk = &bs->via.array.ptr[i];

		cum = u(bk, "count");
		if (cum > prev)
			fprintf(f, " <=%sms:%" PRIu64, fnum(bk, "le_ms", 1, 1,
			    le, sizeof(le))[0] == '-' ? "inf" : le,
			    cum - prev);
		prev = cum;
	}
	fprintf(f, "%s\n", prev == 0 ? " (no requests)" : "");
}

void
gwctl_stats_print_route(FILE *f, const msgpack_object *reply)
{
	const msgpack_object *r = msg_get(reply, "route"), *sv, *st, *ca;
	char name[256], svc[256], a[32], b[32];
	bool serving = true;
	double win = 0;

	if (r == NULL || r->type != MSGPACK_OBJECT_MAP)
		return;
	st = msg_get(r, "status");
	ca = msg_get(r, "cache");
	msg_get_bool(r, "serving", &serving);
	num(reply, "window_s", &win);
	fprintf(f, "route %s (service %s%s)\n", str(r, "name", "?", name,
	    sizeof(name)), str(r, "service", "-", svc, sizeof(svc)),
	    serving ? "" : "; draining: removed by a reload");
	fprintf(f, "  %-14s %" PRIu64 " (%s/s over the last %.1f s)\n",
	    "requests", u(r, "requests"), fnum(r, "rate", 1, 1, a, sizeof(a)),
	    win);
	fprintf(f, "  %-14s 1xx %" PRIu64 ", 2xx %" PRIu64 ", 3xx %" PRIu64
	    ", 4xx %" PRIu64 ", 5xx %" PRIu64 ", other %" PRIu64 "\n",
	    "status", u(st, "1xx"), u(st, "2xx"), u(st, "3xx"), u(st, "4xx"),
	    u(st, "5xx"), u(st, "other"));
	fprintf(f, "  %-14s %s%% of responses were 5xx\n", "error rate",
	    fnum(r, "error_rate", 100, 2, a, sizeof(a)));
	print_hist(f, "latency", msg_get(r, "latency"));
	print_hist(f, "upstream", msg_get(r, "upstream_latency"));
	fprintf(f, "  %-14s (quantiles interpolated within histogram "
	    "buckets)\n", "");
	fprintf(f, "  %-14s %" PRIu64 "\n", "rate limited",
	    u(r, "rate_limited"));
	fprintf(f, "  %-14s %" PRIu64 "\n", "auth refused",
	    u(r, "auth_refused"));
	fnum(r, "cache_hit_ratio", 100, 1, b, sizeof(b));
	fprintf(f, "  %-14s hit %" PRIu64 ", miss %" PRIu64 ", stale %"
	    PRIu64 ", bypass %" PRIu64 "; hit ratio %s%s\n", "cache",
	    u(ca, "hit"), u(ca, "miss"), u(ca, "stale"), u(ca, "bypass"), b,
	    b[0] == '-' ? " (no lookups)" : "%");
	fprintf(f, "  %-14s %" PRIu64 "\n", "bytes out", u(r, "bytes_out"));
	fprintf(f, "  %-14s %s\n", "breaker", str(r, "breaker", "-", a,
	    sizeof(a)));
	sv = msg_get(reply, "service");
	if (sv != NULL && sv->type == MSGPACK_OBJECT_MAP) {
		const msgpack_object one = { .type = MSGPACK_OBJECT_ARRAY,
		    .via.array = { 1, (msgpack_object *)sv } };

		fputc('\n', f);
		print_services(f, &one);
	}
}
