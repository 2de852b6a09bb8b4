/*
 * config_resil: a service's resilience settings: active health checks,
 * the circuit breaker, the retry budget and the bulkhead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-int.h"

static const char *const health_keys[] = {
	"path", "interval_ms", "timeout_ms", "fall", "rise", "status", NULL
};
static const char *const breaker_keys[] = {
	"failures", "open_ms", "half_open", "statuses", NULL
};
static const char *const budget_keys[] = {
	"percent", "window_s", "min_per_s", NULL
};

/* A status class "Nxx" (N = 1..5): *lo and *hi set, 0; else -1. */
static int
status_class(const char *v, unsigned *lo, unsigned *hi)
{
	if (strlen(v) != 3 || v[0] < '1' || v[0] > '5' ||
	    (v[1] != 'x' && v[1] != 'X') || (v[2] != 'x' && v[2] != 'X'))
		return -1;
	*lo = (unsigned)(v[0] - '0') * 100;
	*hi = *lo + 99;
	return 0;
}

/* One status or class from S (an integer 100..599 or "Nxx"). */
static int
status_range(struct ld *ld, const config_setting_t *s, const char *what,
    unsigned *lo, unsigned *hi)
{
	long long v;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		v = config_setting_get_int64(s);
		if (v < 100 || v > 599)
			return cfg_bad(ld, s, "%s: status %lld is not between "
			    "100 and 599", what, v);
		*lo = *hi = (unsigned)v;
		return 0;
	case CONFIG_TYPE_STRING:
		if (status_class(config_setting_get_string(s), lo, hi) == 0)
			return 0;
		return cfg_bad(ld, s, "%s: status '%s' is not a class like "
		    "\"5xx\"", what, config_setting_get_string(s));
	default:
		return cfg_bad(ld, s, "%s: a status is an integer (503) or a "
		    "class (\"5xx\")", what);
	}
}

static int
parse_health(struct ld *ld, const config_setting_t *e, struct cfg_service *sv,
    const char *what)
{
	struct cfg_health *h = &sv->health;
	const config_setting_t *g, *s;
	const char *p;
	char sub[200];

	if (cfg_get_group(ld, e, "health", what, &g) < 0)
		return -1;
	snprintf(sub, sizeof(sub), "%s health", what);
	h->enabled = g != NULL;
	h->status_min = 200;
	h->status_max = 299;
	if ((g != NULL && cfg_check_keys(ld, g, health_keys, sub) < 0) ||
	    cfg_get_str(ld, g, "path", sub, "/health", &h->path) < 0 ||
	    cfg_get_unsigned(ld, g, "interval_ms", sub, 1, 86400000, 5000,
	    &h->interval_ms) < 0 ||
	    cfg_get_unsigned(ld, g, "timeout_ms", sub, 1, 600000, 1000,
	    &h->timeout_ms) < 0 ||
	    cfg_get_unsigned(ld, g, "fall", sub, 1, 1000, 3, &h->fall) < 0 ||
	    cfg_get_unsigned(ld, g, "rise", sub, 1, 1000, 2, &h->rise) < 0)
		return -1;
	if (h->path[0] != '/')
		return cfg_bad(ld, cfg_member(g, "path"), "%s: path '%s' must "
		    "start with '/'", sub, h->path);
	/* It goes on the request line as written. */
	for (p = h->path; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f ||
		    p - h->path >= 1024)
			return cfg_bad(ld, cfg_member(g, "path"), "%s: path "
			    "must be at most 1024 visible ASCII bytes", sub);
	s = cfg_member(g, "status");
	if (s != NULL && status_range(ld, s, sub, &h->status_min,
	    &h->status_max) < 0)
		return -1;
	return 0;
}

static void
set_statuses(struct cfg_breaker *b, unsigned lo, unsigned hi)
{
	unsigned k;

	for (k = lo; k <= hi; k++)
		b->statuses[k / 64] |= 1ull << (k % 64);
}

static int
parse_breaker(struct ld *ld, const config_setting_t *e,
    struct cfg_service *sv, const char *what)
{
	struct cfg_breaker *b = &sv->breaker;
	const config_setting_t *g, *s;
	unsigned lo, hi;
	char sub[200];
	int i, n;

	if (cfg_get_group(ld, e, "breaker", what, &g) < 0)
		return -1;
	snprintf(sub, sizeof(sub), "%s breaker", what);
	b->enabled = g != NULL;
	if ((g != NULL && cfg_check_keys(ld, g, breaker_keys, sub) < 0) ||
	    cfg_get_unsigned(ld, g, "failures", sub, 1, 1000000, 5,
	    &b->failures) < 0 ||
	    cfg_get_unsigned(ld, g, "open_ms", sub, 1, 86400000, 30000,
	    &b->open_ms) < 0 ||
	    cfg_get_unsigned(ld, g, "half_open", sub, 1, 1000, 1,
	    &b->half_open) < 0)
		return -1;
	memset(b->statuses, 0, sizeof(b->statuses));
	s = cfg_member(g, "statuses");
	if (s == NULL) {
		/* The statuses of an upstream in trouble; 501 and 505 say
		 * what the request was, not how the instance is. */
		set_statuses(b, 500, 500);
		set_statuses(b, 502, 504);
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST)
		return cfg_bad(ld, s, "'statuses' in %s must be an array of "
		    "statuses and classes [500, 503] or [\"5xx\"]", sub);
	/* [] counts no status: only connection failures and timeouts. */
	n = config_setting_length(s);
	for (i = 0; i < n; i++) {
		if (status_range(ld, config_setting_get_elem(s, i), sub, &lo,
		    &hi) < 0)
			return -1;
		set_statuses(b, lo, hi);
	}
	return 0;
}

static int
parse_budget(struct ld *ld, const config_setting_t *e,
    struct cfg_service *sv, const char *what)
{
	struct cfg_retry_budget *rb = &sv->retry_budget;
	const config_setting_t *g;
	char sub[200];

	if (cfg_get_group(ld, e, "retry_budget", what, &g) < 0)
		return -1;
	snprintf(sub, sizeof(sub), "%s retry_budget", what);
	if ((g != NULL && cfg_check_keys(ld, g, budget_keys, sub) < 0) ||
	    cfg_get_unsigned(ld, g, "percent", sub, 0, 100, 20,
	    &rb->percent) < 0 ||
	    cfg_get_unsigned(ld, g, "window_s", sub, 1, 60, 10,
	    &rb->window_s) < 0 ||
	    cfg_get_unsigned(ld, g, "min_per_s", sub, 0, 1000, 3,
	    &rb->min_per_s) < 0)
		return -1;
	return 0;
}

int
cfg_parse_resilience(struct ld *ld, const config_setting_t *e,
    struct cfg_service *sv, const char *what)
{
	/* The store keys breakers and health by the service's name. */
	if ((cfg_member(e, "health") != NULL ||
	    cfg_member(e, "breaker") != NULL) && strlen(sv->name) > 255)
		return cfg_bad(ld, e, "%.64s...: a service with health checks "
		    "or a breaker needs a name of at most 255 bytes", what);
	if (parse_health(ld, e, sv, what) < 0 ||
	    parse_breaker(ld, e, sv, what) < 0 ||
	    parse_budget(ld, e, sv, what) < 0 ||
	    cfg_get_unsigned(ld, e, "max_inflight", what, 0, 10000000, 0,
	    &sv->max_inflight) < 0)
		return -1;
	return 0;
}
