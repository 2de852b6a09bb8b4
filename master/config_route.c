/*
 * config_route: the routes list of the configuration file.
 *
 * Routes are parsed after every other section, so a route can name a
 * service or a tier defined anywhere in the file.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libconfig.h>

#include "../policies/jsonstrip.h"
#include "../policies/template.h"
#include "config.h"
#include "config-int.h"

/* ---- routes -------------------------------------------------------- */

static const char *const route_keys[] = {
	"name", "match", "service", "aggregate", "auth", "scopes",
	"auth_forward", "rate_limit", "rewrite", "transform", "cache", NULL
};
static const char *const match_keys[] = {
	"path", "prefix", "regex", "methods", "host", NULL
};
static const char *const rl_keys[] = { "by", "tier", "ipv6_prefix", NULL };
static const char *const rewrite_keys[] = { "pattern", "to", NULL };
static const char *const transform_keys[] = { "request", "response", NULL };
static const char *const treq_keys[] = {
	"add_headers", "remove_headers", "rename_headers", NULL
};
static const char *const tresp_keys[] = {
	"add_headers", "remove_headers", "rename_headers", "strip_fields",
	"strip_buffer_bytes", NULL
};
static const char *const cache_keys[] = {
	"ttl_s", "vary", "stale_s", "per_consumer", "max_body", NULL
};
static const char *const aggregate_keys[] = {
	"calls", "timeout_ms", "max_part_bytes", "max_body_bytes",
	"fallback_ttl_s", NULL
};
static const char *const call_keys[] = {
	"name", "service", "path", "fallback", "timeout_ms", "forward_headers",
	NULL
};
/* Headers a call cannot take from the client: the gateway sets them (or
 * they belong to one connection). */
static const char *const call_own_headers[] = {
	"host", "content-length", "transfer-encoding", "connection",
	"keep-alive", "te", "trailer", "upgrade", "expect", "accept-encoding",
	"proxy-connection", NULL
};

#define CALLS_MAX	64

static int
parse_match(struct ld *ld, const config_setting_t *rs, struct cfg_route *r,
    const char *what)
{
	const config_setting_t *m, *s, *which = NULL;
	static const char *const kinds[] = { "path", "prefix", "regex" };
	char **methods = NULL, sub[200];
	size_t i, n = 0, len;
	int k, count = 0, rc = -1;

	if (cfg_get_group(ld, rs, "match", what, &m) < 0)
		return -1;
	if (m == NULL)
		return cfg_bad(ld, rs, "%s needs 'match'", what);
	snprintf(sub, sizeof(sub), "%s match", what);
	if (cfg_check_keys(ld, m, match_keys, sub) < 0)
		return -1;
	for (k = 0; k < 3; k++) {
		s = cfg_member(m, kinds[k]);
		if (s == NULL)
			continue;
		if (++count > 1)
			return cfg_bad(ld, s, "%s: give only one of 'path', "
			    "'prefix' or 'regex'", sub);
		which = s;
	}
	if (count == 0)
		return cfg_bad(ld, m, "%s needs one of 'path', 'prefix' or "
		    "'regex'", sub);
	if (cfg_get_str(ld, m, "path", sub, NULL, &r->path) < 0 ||
	    cfg_get_str(ld, m, "prefix", sub, NULL, &r->prefix) < 0 ||
	    cfg_get_str(ld, m, "regex", sub, NULL, &r->regex) < 0)
		return -1;
	if (r->path != NULL && r->path[0] != '/')
		return cfg_bad(ld, which, "%s: path '%s' must start with '/'",
		    sub, r->path);
	if (r->prefix != NULL) {
		if (r->prefix[0] != '/')
			return cfg_bad(ld, which, "%s: prefix '%s' must start "
			    "with '/'", sub, r->prefix);
		/* Segment-aware matching wants "/a", not "/a/"; "/" -> "". */
		len = strlen(r->prefix);
		while (len > 0 && r->prefix[len - 1] == '/')
			r->prefix[--len] = '\0';
	}
	if (r->regex != NULL && cfg_compile(ld, which, r->regex, "regex",
	    &r->re) < 0)
		return -1;

	if (cfg_get_strs(ld, m, "methods", sub, &s, &methods, &n) < 0)
		goto done;
	if (s != NULL && n == 0) {
		cfg_bad(ld, s, "%s: 'methods' must not be empty (leave it out "
		    "for any method)", sub);
		goto done;
	}
	for (i = 0; i < n; i++) {
		enum http_method hm = method_from_name(methods[i],
		    strlen(methods[i]));

		if (hm == M_OTHER) {
			cfg_bad(ld, config_setting_get_elem(s, i), "%s: unknown "
			    "method '%s'", sub, methods[i]);
			goto done;
		}
		r->methods |= METHOD_BIT(hm);
	}

	if (cfg_get_str(ld, m, "host", sub, NULL, &r->host) < 0)
		goto done;
	for (i = 0; r->host != NULL && r->host[i] != '\0'; i++) {
		unsigned char c = (unsigned char)r->host[i];

		if (!isalnum(c) && strchr("-.:[]_", c) == NULL) {
			cfg_bad(ld, cfg_member(m, "host"), "%s: host '%s' is not a "
			    "host name", sub, r->host);
			goto done;
		}
		r->host[i] = (char)tolower(c);
	}
	rc = 0;
done:
	cfg_free_strv(methods);
	return rc;
}

static int
parse_rate_limit(struct ld *ld, const config_setting_t *rs,
    struct cfg_route *r, const char *what)
{
	const config_setting_t *g, *s;
	const char *v;
	char sub[200];

	if (cfg_get_group(ld, rs, "rate_limit", what, &g) < 0)
		return -1;
	if (g == NULL)
		return 0;
	snprintf(sub, sizeof(sub), "%s rate_limit", what);
	if (cfg_check_keys(ld, g, rl_keys, sub) < 0 ||
	    cfg_get_cstr(ld, g, "by", sub, &s, &v) < 0)
		return -1;
	if (v == NULL)
		return cfg_bad(ld, g, "%s needs 'by'", sub);
	if (strcmp(v, "consumer") == 0)
		r->rl_by = RL_CONSUMER;
	else if (strcmp(v, "ip") == 0)
		r->rl_by = RL_IP;
	else if (strcmp(v, "route") == 0)
		r->rl_by = RL_ROUTE;
	else if (strncmp(v, "header:", 7) == 0 && cfg_is_token(v + 7)) {
		if (strlen(v + 7) > CFG_NAME_MAX)
			return cfg_bad(ld, s, "%s: header name '%.16s...' is "
			    "longer than %d bytes", sub, v + 7, CFG_NAME_MAX);
		r->rl_by = RL_HEADER;
		if (cfg_dup_str(ld, v + 7, &r->rl_header) < 0)
			return -1;
	} else
		return cfg_bad(ld, s, "%s: by '%s' is not consumer, ip, route or "
		    "header:NAME", sub, v);
	/* by ip: an IPv6 client is its /64 unless told otherwise (one host
	 * commonly holds a whole /64). */
	s = cfg_member(g, "ipv6_prefix");
	if (s != NULL && r->rl_by != RL_IP)
		return cfg_bad(ld, s, "%s: ipv6_prefix applies only to by = "
		    "\"ip\"", sub);
	if (cfg_get_unsigned(ld, g, "ipv6_prefix", sub, 1, 128, 64,
	    &r->rl_v6_prefix) < 0)
		return -1;
	if (cfg_get_cstr(ld, g, "tier", sub, &s, &v) < 0)
		return -1;
	if (v != NULL) {
		r->rl_tier = config_tier_index(ld->cfg, v);
		if (r->rl_tier < 0)
			return cfg_bad(ld, s, "%s: unknown tier '%s'", sub, v);
	}
	return 0;
}

static int
parse_rewrite(struct ld *ld, const config_setting_t *rs, struct cfg_route *r,
    const char *what)
{
	const config_setting_t *g;
	char sub[200];
	uint32_t ncap = 0;
	const char *p;

	if (cfg_get_group(ld, rs, "rewrite", what, &g) < 0)
		return -1;
	if (g == NULL)
		return 0;
	snprintf(sub, sizeof(sub), "%s rewrite", what);
	if (cfg_check_keys(ld, g, rewrite_keys, sub) < 0 ||
	    cfg_need_str(ld, g, "pattern", sub, &r->rewrite_pattern) < 0 ||
	    cfg_compile(ld, cfg_member(g, "pattern"), r->rewrite_pattern,
	    "rewrite pattern", &r->rewrite_re) < 0 ||
	    cfg_need_str(ld, g, "to", sub, &r->rewrite_to) < 0)
		return -1;
	/* route_rewrite substitutes $0..$9 and ${0}..${9}, "$$" is a '$':
	 * refuse a group the pattern does not have. */
	pcre2_pattern_info(r->rewrite_re, PCRE2_INFO_CAPTURECOUNT, &ncap);
	for (p = r->rewrite_to; *p != '\0'; p++) {
		const char *d;

		if (*p != '$')
			continue;
		if (p[1] == '$') {
			p++;
			continue;
		}
		d = p[1] == '{' ? p + 2 : p + 1;
		if (!isdigit((unsigned char)*d))
			continue;
		if ((uint32_t)(*d - '0') > ncap)
			return cfg_bad(ld, cfg_member(g, "to"), "%s: '$%c' names a "
			    "group the pattern does not have (it has %u)", sub,
			    *d, ncap);
	}
	return 0;
}

/* Each entry "Old: New", two header names; stored as "Old: New". */
static int
check_renames(struct ld *ld, const config_setting_t *s, char **v,
    const char *what)
{
	char *colon, *to, *norm;
	size_t i, j, len;

	for (i = 0; v != NULL && v[i] != NULL; i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);

		colon = strchr(v[i], ':');
		if (colon == NULL)
			return cfg_bad(ld, e, "%s: rename '%s' is not \"Old: "
			    "New\"", what, v[i]);
		*colon = '\0';
		for (to = colon + 1; *to == ' ' || *to == '\t'; to++)
			;
		len = strlen(to);
		while (len > 0 && (to[len - 1] == ' ' || to[len - 1] == '\t'))
			to[--len] = '\0';
		if (!cfg_is_token(v[i]) || !cfg_is_token(to)) {
			*colon = ':';
			return cfg_bad(ld, e, "%s: rename '%s' is not \"Old: "
			    "New\" with two header names", what, v[i]);
		}
		for (j = 0; j < i; j++)
			if (strncasecmp(v[j], v[i], strlen(v[i])) == 0 &&
			    v[j][strlen(v[i])] == ':') {
				*colon = ':';
				return cfg_bad(ld, e, "%s: '%s' is renamed twice",
				    what, v[i]);
			}
		if (asprintf(&norm, "%s: %s", v[i], to) < 0)
			return cfg_oom(ld);
		free(v[i]);
		v[i] = norm;
	}
	return 0;
}

/* Headers the gateway writes itself: the message's framing and the
 * hop-by-hop ones. No transform may add them or rename into or out of
 * them (two Content-Lengths, or a client's X-Len renamed into one, would
 * read differently at the next hop). */
static const char *const framing_headers[] = {
	"content-length", "transfer-encoding", "connection", "keep-alive",
	"proxy-connection", "te", "trailer", "upgrade", "expect", NULL
};

/* Why NAME (LEN bytes) is the gateway's to set, or NULL. The request
 * also carries the forwarding headers, the trace context and the
 * verified identity; both directions carry the trace id. */
static const char *
gateway_owned(const struct config *cfg, const char *name, size_t len,
    bool request)
{
	static const char *const fwd[] = { "x-forwarded-for",
	    "x-forwarded-proto", "x-forwarded-host", NULL };
	const char *const ids[] = { cfg->auth.id_consumer, cfg->auth.id_tier,
	    cfg->auth.id_scopes };
	size_t i;

#define NAME_IS(n)	((n) != NULL && strlen(n) == len && \
	strncasecmp(name, (n), len) == 0)
	for (i = 0; framing_headers[i] != NULL; i++)
		if (NAME_IS(framing_headers[i]))
			return "the gateway writes the framing and hop-by-hop "
			    "headers itself";
	if (NAME_IS(cfg->server.trace_header))
		return "the gateway sets it (the trace id)";
	if (!request)
		return NULL;
	if (NAME_IS("traceparent") || NAME_IS("tracestate"))
		return "the gateway sets it (the trace context)";
	for (i = 0; fwd[i] != NULL; i++)
		if (NAME_IS(fwd[i]))
			return "the gateway sets it (X-Forwarded-*)";
	for (i = 0; i < 3; i++)
		if (NAME_IS(ids[i]))
			return "the gateway sets it from the verified identity";
#undef NAME_IS
	return NULL;
}

/* Each of LINES ("Name: value" or "Old: New") names no header the
 * gateway owns; with RENAME the new name is checked too. */
static int
check_owned(struct ld *ld, const config_setting_t *s, char **lines,
    bool request, bool rename, const char *what)
{
	const char *colon, *to, *why;
	size_t i;

	for (i = 0; lines != NULL && lines[i] != NULL; i++) {
		colon = strchr(lines[i], ':');
		to = colon + 2;		/* normalised to "Name: x" */
		if ((why = gateway_owned(ld->cfg, lines[i],
		    (size_t)(colon - lines[i]), request)) != NULL)
			return cfg_bad(ld, config_setting_get_elem(s, i),
			    "%s: '%.*s' cannot be set or renamed: %s", what,
			    (int)(colon - lines[i]), lines[i], why);
		if (rename && (why = gateway_owned(ld->cfg, to, strlen(to),
		    request)) != NULL)
			return cfg_bad(ld, config_setting_get_elem(s, i),
			    "%s: '%s' cannot be set or renamed: %s", what, to,
			    why);
	}
	return 0;
}

static int
parse_transform(struct ld *ld, const config_setting_t *rs,
    struct cfg_route *r, const char *what)
{
	const config_setting_t *t, *g, *s;
	char sub[200];

	if (cfg_get_group(ld, rs, "transform", what, &t) < 0)
		return -1;
	if (t == NULL)
		return 0;
	snprintf(sub, sizeof(sub), "%s transform", what);
	if (cfg_check_keys(ld, t, transform_keys, sub) < 0)
		return -1;

	snprintf(sub, sizeof(sub), "%s transform.request", what);
	if (cfg_get_group(ld, t, "request", sub, &g) < 0)
		return -1;
	if (g != NULL) {
		if (cfg_check_keys(ld, g, treq_keys, sub) < 0 ||
		    cfg_get_strs(ld, g, "add_headers", sub, &s, &r->req_add,
		    &r->nreq_add) < 0 ||
		    cfg_check_header_lines(ld, s, r->req_add, sub) < 0 ||
		    check_owned(ld, s, r->req_add, true, false, sub) < 0 ||
		    cfg_get_strs(ld, g, "remove_headers", sub, &s, &r->req_remove,
		    &r->nreq_remove) < 0 ||
		    cfg_check_tokens(ld, s, r->req_remove, sub) < 0 ||
		    cfg_get_strs(ld, g, "rename_headers", sub, &s, &r->req_rename,
		    &r->nreq_rename) < 0 ||
		    check_renames(ld, s, r->req_rename, sub) < 0 ||
		    check_owned(ld, s, r->req_rename, true, true, sub) < 0)
			return -1;
	}

	snprintf(sub, sizeof(sub), "%s transform.response", what);
	if (cfg_get_group(ld, t, "response", sub, &g) < 0)
		return -1;
	if (g != NULL) {
		if (cfg_check_keys(ld, g, tresp_keys, sub) < 0 ||
		    cfg_get_strs(ld, g, "add_headers", sub, &s, &r->resp_add,
		    &r->nresp_add) < 0 ||
		    cfg_check_header_lines(ld, s, r->resp_add, sub) < 0 ||
		    check_owned(ld, s, r->resp_add, false, false, sub) < 0 ||
		    cfg_get_strs(ld, g, "remove_headers", sub, &s, &r->resp_remove,
		    &r->nresp_remove) < 0 ||
		    cfg_check_tokens(ld, s, r->resp_remove, sub) < 0 ||
		    cfg_get_strs(ld, g, "rename_headers", sub, &s,
		    &r->resp_rename, &r->nresp_rename) < 0 ||
		    check_renames(ld, s, r->resp_rename, sub) < 0 ||
		    check_owned(ld, s, r->resp_rename, false, true, sub) < 0 ||
		    cfg_get_strs(ld, g, "strip_fields", sub, &s, &r->strip_fields,
		    &r->nstrip_fields) < 0 ||
		    cfg_get_uint(ld, g, "strip_buffer_bytes", sub, 0,
		    1ull << 30, 1u << 20, &r->strip_buffer_bytes) < 0)
			return -1;
		if (r->nstrip_fields > 0) {
			struct jstrip_paths *ps;
			char why[200];
			if (jstrip_compile(r->strip_fields, r->nstrip_fields, &ps,
			    why, sizeof(why)) < 0)
				return cfg_bad(ld, s, "%s: strip_fields: %s", sub,
				    why);
			jstrip_paths_free(ps);
		}
	}
	return 0;
}

static int
parse_cache(struct ld *ld, const config_setting_t *rs, struct cfg_route *r,
    const char *what)
{
	const config_setting_t *g, *s;
	char sub[200];
	size_t i, k;

	if (cfg_get_group(ld, rs, "cache", what, &g) < 0)
		return -1;
	if (g == NULL)
		return 0;
	r->has_cache = true;
	snprintf(sub, sizeof(sub), "%s cache", what);
	if (cfg_check_keys(ld, g, cache_keys, sub) < 0)
		return -1;
	if (cfg_member(g, "ttl_s") == NULL)
		return cfg_bad(ld, g, "%s needs 'ttl_s'", sub);
	if (cfg_get_unsigned(ld, g, "ttl_s", sub, 1, 31536000, 0,
	    &r->cache_ttl_s) < 0 ||
	    cfg_get_strs(ld, g, "vary", sub, &s, &r->cache_vary,
	    &r->ncache_vary) < 0 ||
	    cfg_check_tokens(ld, s, r->cache_vary, sub) < 0 ||
	    cfg_get_unsigned(ld, g, "stale_s", sub, 0, 31536000, 0,
	    &r->cache_stale_s) < 0 ||
	    cfg_get_bool(ld, g, "per_consumer", sub, false,
	    &r->cache_per_consumer) < 0 ||
	    cfg_get_uint(ld, g, "max_body", sub, 0, (uint64_t)1 << 30,
	    1048576, &r->cache_max_body) < 0)
		return -1;
	for (i = 0; i < r->ncache_vary; i++) {
		if (strlen(r->cache_vary[i]) > CFG_NAME_MAX)
			return cfg_bad(ld, s, "%s: vary name '%.16s...' is "
			    "longer than %d bytes", sub, r->cache_vary[i],
			    CFG_NAME_MAX);
		for (k = 0; k < i; k++)
			if (strcasecmp(r->cache_vary[k], r->cache_vary[i]) ==
			    0)
				return cfg_bad(ld, s, "%s: vary names '%s' "
				    "twice", sub, r->cache_vary[i]);
	}
	return 0;
}

/* A call's name is a key of the merged object and an item of
 * X-Gateway-Degraded: letters, digits, '_', '-', '.'. */
static bool
call_name_ok(const char *n)
{
	const char *p;

	if (*n == '\0' || strlen(n) > CFG_NAME_MAX)
		return false;
	for (p = n; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr("_-.", *p) == NULL)
			return false;
	return true;
}

static int
parse_call(struct ld *ld, const config_setting_t *e, struct cfg_call *c,
    const char *agg, unsigned agg_timeout)
{
	const config_setting_t *s;
	const char *v;
	char what[320], why[200];
	struct tmpl *t;
	size_t i, k;

	c->line = config_setting_source_line(e);
	c->service = -1;
	snprintf(what, sizeof(what), "%s call", agg);
	if (cfg_check_keys(ld, e, call_keys, what) < 0 ||
	    cfg_need_str(ld, e, "name", what, &c->name) < 0)
		return -1;
	if (!call_name_ok(c->name))
		return cfg_bad(ld, cfg_member(e, "name"), "%s name '%.16s' must "
		    "be 1 to %d letters, digits, '_', '-' or '.'", what, c->name,
		    CFG_NAME_MAX);
	if (strcmp(c->name, "degraded") == 0)
		return cfg_bad(ld, cfg_member(e, "name"), "%s name 'degraded' "
		    "is the merged object's list of degraded parts", what);
	snprintf(what, sizeof(what), "%s call '%s'", agg, c->name);
	if (cfg_get_cstr(ld, e, "service", what, &s, &v) < 0)
		return -1;
	if (v == NULL)
		return cfg_bad(ld, e, "%s needs 'service'", what);
	c->service = config_service_index(ld->cfg, v);
	if (c->service < 0)
		return cfg_bad(ld, s, "%s: unknown service '%s'", what, v);
	if (cfg_need_str(ld, e, "path", what, &c->path) < 0)
		return -1;
	if (c->path[0] != '/')
		return cfg_bad(ld, cfg_member(e, "path"), "%s: path '%s' must start "
		    "with '/'", what, c->path);
	for (i = 0; c->path[i] != '\0'; i++)
		if ((unsigned char)c->path[i] <= 0x20 ||
		    (unsigned char)c->path[i] >= 0x7f || c->path[i] == '#')
			return cfg_bad(ld, cfg_member(e, "path"), "%s: path '%s' "
			    "holds a space, '#' or a byte that must be "
			    "%%-encoded", what, c->path);
	if (tmpl_parse(c->path, true, &t, why, sizeof(why)) < 0)
		return cfg_bad(ld, cfg_member(e, "path"), "%s: path '%s': %s",
		    what, c->path, why);
	tmpl_free(t);
	if (cfg_get_str(ld, e, "fallback", what, NULL, &c->fallback) < 0)
		return -1;
	if (c->fallback != NULL && strcmp(c->fallback, "cache") != 0 &&
	    !cfg_json_valid(c->fallback))
		return cfg_bad(ld, cfg_member(e, "fallback"), "%s: fallback must be "
		    "JSON text or \"cache\"", what);
	if (cfg_get_unsigned(ld, e, "timeout_ms", what, 1, 600000, agg_timeout,
	    &c->timeout_ms) < 0)
		return -1;
	if (c->timeout_ms > agg_timeout)
		return cfg_bad(ld, cfg_member(e, "timeout_ms"), "%s: timeout_ms "
		    "%u is past the aggregate's timeout_ms (%u), which ends "
		    "every call", what, c->timeout_ms, agg_timeout);
	if (cfg_get_strs(ld, e, "forward_headers", what, &s,
	    &c->forward_headers, &c->nforward_headers) < 0 ||
	    cfg_check_tokens(ld, s, c->forward_headers, what) < 0)
		return -1;
	for (i = 0; i < c->nforward_headers; i++)
		for (k = 0; call_own_headers[k] != NULL; k++)
			if (strcasecmp(c->forward_headers[i],
			    call_own_headers[k]) == 0)
				return cfg_bad(ld, config_setting_get_elem(s, i),
				    "%s: '%s' cannot be forwarded: the gateway "
				    "sets it for each call", what,
				    c->forward_headers[i]);
	return 0;
}

static int
parse_aggregate(struct ld *ld, const config_setting_t *rs,
    struct cfg_route *r, const char *what, const config_setting_t **agp)
{
	const config_setting_t *g, *l;
	char sub[200];
	size_t i, j;

	if (cfg_get_group(ld, rs, "aggregate", what, &g) < 0)
		return -1;
	*agp = g;
	if (g == NULL)
		return 0;
	snprintf(sub, sizeof(sub), "%s aggregate", what);
	if (cfg_check_keys(ld, g, aggregate_keys, sub) < 0 ||
	    cfg_get_list(ld, g, "calls", sub, &l) < 0 ||
	    cfg_get_unsigned(ld, g, "timeout_ms", sub, 1, 600000, 200,
	    &r->aggregate_timeout_ms) < 0 ||
	    cfg_get_uint(ld, g, "max_part_bytes", sub, 2, 1ull << 30, 1u << 20,
	    &r->aggregate_part_bytes) < 0 ||
	    cfg_get_uint(ld, g, "max_body_bytes", sub, 64, 1ull << 32,
	    4u << 20, &r->aggregate_body_bytes) < 0 ||
	    cfg_get_unsigned(ld, g, "fallback_ttl_s", sub, 1, 31536000, 86400,
	    &r->aggregate_fallback_ttl_s) < 0)
		return -1;
	if (l == NULL || config_setting_length(l) == 0)
		return cfg_bad(ld, l ? l : g, "%s needs at least one entry in "
		    "'calls'", sub);
	if (config_setting_length(l) > CALLS_MAX)
		return cfg_bad(ld, l, "%s has more than %d calls", sub,
		    CALLS_MAX);
	r->calls = calloc(config_setting_length(l), sizeof(*r->calls));
	if (r->calls == NULL)
		return cfg_oom(ld);
	for (i = 0; i < (size_t)config_setting_length(l); i++) {
		const config_setting_t *e = config_setting_get_elem(l, i);

		r->ncalls++;
		if (parse_call(ld, e, &r->calls[i], sub,
		    r->aggregate_timeout_ms) < 0)
			return -1;
		for (j = 0; j < i; j++)
			if (strcmp(r->calls[j].name, r->calls[i].name) == 0)
				return cfg_bad(ld, cfg_member(e, "name"), "%s: call "
				    "name '%s' is used twice", sub,
				    r->calls[i].name);
	}
	return 0;
}

/* What template T (from setting S) needs of route R: a verified
 * consumer, regex groups. */
static int
template_fits(struct ld *ld, const config_setting_t *s,
    const struct cfg_route *r, const struct tmpl *t, const char *what,
    const char *text)
{
	uint32_t ncap = 0;

	if (t->consumer && r->auth == AUTH_NONE)
		return cfg_bad(ld, s, "%s: '%s' uses {consumer}, which needs "
		    "'auth' on the route (jwt, api_key or any)", what, text);
	if (t->max_group == 0)
		return 0;
	if (r->re != NULL)
		pcre2_pattern_info(r->re, PCRE2_INFO_CAPTURECOUNT, &ncap);
	if (t->max_group > ncap)
		return cfg_bad(ld, s, "%s: '%s' uses {%u}, but the route's match "
		    "%s", what, text, t->max_group, r->re == NULL ? "is not a "
		    "regex" : "regex has fewer groups");
	return 0;
}

static int
check_header_templates(struct ld *ld, const config_setting_t *rs,
    const struct cfg_route *r, const char *path, char **lines, size_t n,
    const char *what)
{
	const config_setting_t *l = cfg_lookup_from(rs, path);
	struct tmpl *t;
	char why[200];
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		const config_setting_t *e = l != NULL ?
		    config_setting_get_elem(l, i) : rs;
		if (tmpl_parse(strchr(lines[i], ':') + 2, false, &t, why,
		    sizeof(why)) < 0)
			return cfg_bad(ld, e, "%s: %s", what, why);
		rc = template_fits(ld, e, r, t, what, lines[i]);
		tmpl_free(t);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int
check_templates(struct ld *ld, const config_setting_t *rs,
    const struct cfg_route *r, const char *what)
{
	const config_setting_t *l = cfg_lookup_from(rs, "aggregate.calls");
	char sub[320], why[200];
	struct tmpl *t;
	size_t i;
	int rc;

	snprintf(sub, sizeof(sub), "%s transform.request", what);
	if (check_header_templates(ld, rs, r, "transform.request.add_headers",
	    r->req_add, r->nreq_add, sub) < 0)
		return -1;
	snprintf(sub, sizeof(sub), "%s transform.response", what);
	if (check_header_templates(ld, rs, r, "transform.response.add_headers",
	    r->resp_add, r->nresp_add, sub) < 0)
		return -1;
	for (i = 0; i < r->ncalls; i++) {
		const config_setting_t *e = cfg_member(config_setting_get_elem(l,
		    i), "path");
		snprintf(sub, sizeof(sub), "%s aggregate call '%s'", what,
		    r->calls[i].name);
		if (tmpl_parse(r->calls[i].path, true, &t, why, sizeof(why)) < 0)
			return cfg_bad(ld, e, "%s: %s", sub, why);
		rc = template_fits(ld, e, r, t, sub, r->calls[i].path);
		tmpl_free(t);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int
parse_route(struct ld *ld, const config_setting_t *rs, struct cfg_route *r,
    size_t idx)
{
	struct config *cfg = ld->cfg;
	const config_setting_t *s, *ag;
	const char *v;
	char what[160];
	size_t i;

	r->line = config_setting_source_line(rs);
	snprintf(what, sizeof(what), "route #%zu", idx + 1);
	if (cfg_check_keys(ld, rs, route_keys, what) < 0 ||
	    cfg_need_str(ld, rs, "name", what, &r->name) < 0)
		return -1;
	if (strlen(r->name) > CFG_NAME_MAX)
		return cfg_bad(ld, cfg_member(rs, "name"), "route name "
		    "'%.16s...' is longer than %d bytes", r->name, CFG_NAME_MAX);
	for (i = 0; i < idx; i++)
		if (strcmp(cfg->routes[i].name, r->name) == 0)
			return cfg_bad(ld, cfg_member(rs, "name"), "route name '%s' "
			    "is used twice (first on line %d)", r->name,
			    cfg->routes[i].line);
	snprintf(what, sizeof(what), "route '%s'", r->name);
	if (parse_match(ld, rs, r, what) < 0)
		return -1;

	if (cfg_get_cstr(ld, rs, "service", what, &s, &v) < 0 ||
	    parse_aggregate(ld, rs, r, what, &ag) < 0)
		return -1;
	if (v != NULL && ag != NULL)
		return cfg_bad(ld, ag, "%s has both 'service' and 'aggregate'",
		    what);
	if (v == NULL && ag == NULL)
		return cfg_bad(ld, rs, "%s needs 'service' or 'aggregate'", what);
	if (v != NULL) {
		r->service = config_service_index(cfg, v);
		if (r->service < 0)
			return cfg_bad(ld, s, "%s: unknown service '%s'", what, v);
	}

	if (cfg_get_cstr(ld, rs, "auth", what, &s, &v) < 0)
		return -1;
	if (v == NULL || strcmp(v, "none") == 0)
		r->auth = AUTH_NONE;
	else if (strcmp(v, "jwt") == 0)
		r->auth = AUTH_JWT;
	else if (strcmp(v, "api_key") == 0)
		r->auth = AUTH_API_KEY;
	else if (strcmp(v, "any") == 0)
		r->auth = AUTH_ANY;
	else
		return cfg_bad(ld, s, "%s: auth '%s' is not jwt, api_key, any or "
		    "none", what, v);
	if ((r->auth == AUTH_JWT && !cfg->auth.has_jwt) ||
	    (r->auth == AUTH_API_KEY && !cfg->auth.has_api_keys) ||
	    (r->auth == AUTH_ANY && !cfg->auth.has_jwt &&
	    !cfg->auth.has_api_keys))
		return cfg_bad(ld, s, "%s: auth '%s' but the auth section does "
		    "not configure it", what, v);

	if (cfg_get_bool(ld, rs, "auth_forward", what, true,
	    &r->auth_forward) < 0)
		return -1;
	if (cfg_get_strs(ld, rs, "scopes", what, &s, &r->scopes,
	    &r->nscopes) < 0)
		return -1;
	if (r->nscopes > 0 && r->auth == AUTH_NONE)
		return cfg_bad(ld, s, "%s: 'scopes' needs 'auth' (jwt, api_key "
		    "or any): without a verified identity every request would "
		    "lack them", what);
	for (i = 0; i < r->nscopes; i++)
		if (r->scopes[i][0] == '\0' || strpbrk(r->scopes[i], " \t") !=
		    NULL)
			return cfg_bad(ld, s, "%s: scope '%s' is empty or holds "
			    "a space", what, r->scopes[i]);
	if (parse_rate_limit(ld, rs, r, what) < 0 ||
	    parse_rewrite(ld, rs, r, what) < 0 ||
	    parse_transform(ld, rs, r, what) < 0 ||
	    parse_cache(ld, rs, r, what) < 0 ||
	    check_templates(ld, rs, r, what) < 0)
		return -1;
	return 0;
}

int
cfg_parse_routes(struct ld *ld, const config_setting_t *root)
{
	struct config *cfg = ld->cfg;
	const config_setting_t *l;
	size_t i, n;

	if (cfg_get_list(ld, root, "routes", "the file", &l) < 0)
		return -1;
	if (l == NULL)
		return 0;
	n = config_setting_length(l);
	cfg->routes = calloc(n > 0 ? n : 1, sizeof(*cfg->routes));
	if (cfg->routes == NULL)
		return cfg_oom(ld);
	for (i = 0; i < n; i++) {
		struct cfg_route *r = &cfg->routes[i];

		r->service = -1;
		r->rl_tier = -1;
		cfg->nroutes++;
		if (parse_route(ld, config_setting_get_elem(l, i), r, i) < 0)
			return -1;
	}
	return 0;
}

/*
 * cfg_refuse_unbuilt: features the contract defines but this build does not
 * enforce yet. They are parsed and validated above; a config that uses
 * one is refused here rather than served without the policy (a route
 * whose auth is silently skipped would fail open). The issue that builds
 * a feature deletes its lines from this function.
 */
int
cfg_refuse_unbuilt(struct ld *ld, const config_setting_t *root)
{
	const config_setting_t *l, *e;
	int i;

	l = cfg_member(root, "routes");
	for (i = 0; l != NULL && i < config_setting_length(l); i++) {
		e = config_setting_get_elem(l, i);
		/* ratelimit: `by = "consumer"` needs a verified identity;
		 * no tier means "anonymous", which must then exist. */
		if (ld->cfg->routes[i].rl_by == RL_CONSUMER &&
		    ld->cfg->routes[i].auth == AUTH_NONE)
			return cfg_bad(ld, cfg_lookup_from(e, "rate_limit.by"),
			    "rate_limit by consumer needs 'auth' on the route "
			    "(jwt, api_key or any)");
		if (ld->cfg->routes[i].rl_by != RL_NONE &&
		    ld->cfg->routes[i].rl_tier < 0 &&
		    config_tier_index(ld->cfg, "anonymous") < 0)
			return cfg_bad(ld, cfg_member(e, "rate_limit"), "rate_limit "
			    "without a tier uses tier 'anonymous', which is "
			    "not defined");
		/* cache: entries per consumer need a verified one. */
		if (ld->cfg->routes[i].cache_per_consumer &&
		    ld->cfg->routes[i].auth == AUTH_NONE)
			return cfg_bad(ld, cfg_lookup_from(e,
			    "cache.per_consumer"), "cache per_consumer needs "
			    "'auth' on the route (jwt, api_key or any)");
	}
	return 0;
}

void
cfg_free_route(struct cfg_route *r)
{
	size_t i;

	free(r->name);
	free(r->path);
	free(r->prefix);
	free(r->regex);
	pcre2_code_free(r->re);
	free(r->host);
	cfg_free_strv(r->scopes);
	free(r->rl_header);
	free(r->rewrite_pattern);
	pcre2_code_free(r->rewrite_re);
	free(r->rewrite_to);
	cfg_free_strv(r->req_add);
	cfg_free_strv(r->req_remove);
	cfg_free_strv(r->resp_add);
	cfg_free_strv(r->resp_remove);
	cfg_free_strv(r->req_rename);
	cfg_free_strv(r->resp_rename);
	cfg_free_strv(r->strip_fields);
	cfg_free_strv(r->cache_vary);
	for (i = 0; i < r->ncalls; i++) {
		free(r->calls[i].name);
		free(r->calls[i].path);
		free(r->calls[i].fallback);
		cfg_free_strv(r->calls[i].forward_headers);
	}
	free(r->calls);
}
