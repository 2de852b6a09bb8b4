/*
 * config: libconfig file -> struct config, validated completely.
 *
 * Every group is checked against the names it may hold, so a misspelt
 * setting is an error rather than a silently applied default. The first
 * problem found is reported as "FILE:LINE: reason" and nothing is kept.
 *
 * This file holds the sections above the routes (server, tls, services,
 * auth, tiers), loading and freeing; config_route.c parses the routes and
 * config_value.c holds the typed getters and value checks both use.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libconfig.h>
#include <openssl/ssl.h>

#include "../policies/apikey.h"
#include "../policies/jwt.h"
#include "../worker/tls.h"
#include "config.h"
#include "config-int.h"

/* ---- server -------------------------------------------------------- */

static const char *const server_keys[] = {
	"workers", "listen", "admin", "control_socket", "pid_file", "state",
	"limits", "access_log", "error_log", "trace_header",
	"trusted_proxies", "underscores_in_headers", "ticket_rotate_s", NULL
};
static const char *const listen_keys[] = {
	"address", "tls", "strict_sni", NULL
};
static const char *const state_keys[] = { "path", "max_mb", "cache_mb",
	NULL };
static const char *const limits_keys[] = {
	"header_bytes", "field_bytes", "uri_bytes", "headers", "body_bytes",
	"header_timeout_ms", "idle_timeout_ms", "drain_timeout_ms", NULL
};
static const char *const access_keys[] = { "path", "format", "redact",
	NULL };
static const char *const error_keys[] = { "path", "level", NULL };

static int
parse_addr_at(struct ld *ld, const config_setting_t *s, const char *v,
    struct cfg_addr *a, const char *what)
{
	char why[256];

	if (config_parse_addr(v, a, why, sizeof(why)) < 0)
		return cfg_bad(ld, s, "%s: %s", what, why);
	return 0;
}

static int
parse_listen(struct ld *ld, const config_setting_t *srv)
{
	struct cfg_server *sv = &ld->cfg->server;
	const config_setting_t *l, *s;
	const char *v;
	size_t i, j;

	if (cfg_get_list(ld, srv, "listen", "server", &l) < 0)
		return -1;
	if (l == NULL) {
		sv->listen = calloc(1, sizeof(*sv->listen));
		if (sv->listen == NULL)
			return cfg_oom(ld);
		sv->nlisten = 1;
		return config_parse_addr("0.0.0.0:8080", &sv->listen[0].addr,
		    ld->err, ld->errlen);
	}
	if (config_setting_length(l) == 0)
		return cfg_bad(ld, l, "'listen' in server must have at least one "
		    "entry");
	sv->listen = calloc(config_setting_length(l), sizeof(*sv->listen));
	if (sv->listen == NULL)
		return cfg_oom(ld);
	for (i = 0; i < (size_t)config_setting_length(l); i++) {
		const config_setting_t *e = config_setting_get_elem(l, i);
		struct cfg_listen *li = &sv->listen[i];

		sv->nlisten++;
		li->line = config_setting_source_line(e);
		if (cfg_check_keys(ld, e, listen_keys, "server.listen") < 0 ||
		    cfg_get_cstr(ld, e, "address", "server.listen", &s, &v) < 0 ||
		    cfg_get_str(ld, e, "tls", "server.listen", NULL, &li->tls) < 0 ||
		    cfg_get_bool(ld, e, "strict_sni", "server.listen", false,
		    &li->strict_sni) < 0)
			return -1;
		if (v == NULL)
			return cfg_bad(ld, e, "server.listen entry needs "
			    "'address'");
		if (parse_addr_at(ld, s, v, &li->addr, "server.listen") < 0)
			return -1;
		for (j = 0; j < i; j++)
			if (cfg_addr_equal(&sv->listen[j].addr, &li->addr))
				return cfg_bad(ld, s, "server.listen: address "
				    "'%s' is listed twice (first on line %d)",
				    v, sv->listen[j].line);
	}
	return 0;
}

/* server.access_log.redact: query parameter names, as they read once
 * percent-decoded; a character no such name needs is refused, so that
 * "token=" or "a&b" is caught as the mistake it is. */
static int
parse_redact(struct ld *ld, const config_setting_t *g)
{
	struct cfg_server *sv = &ld->cfg->server;
	const config_setting_t *s;
	size_t i, j, n;
	const char *v;

	if (cfg_get_strs(ld, g, "redact", "server.access_log", &s,
	    &sv->access_redact, &n) < 0)
		return -1;
	if (n > 64)
		return cfg_bad(ld, s, "server.access_log.redact: %zu names; at "
		    "most 64", n);
	for (i = 0; i < n; i++) {
		v = sv->access_redact[i];
		if (strlen(v) > 64)
			return cfg_bad(ld, config_setting_get_elem(s, i),
			    "server.access_log.redact: '%.64s...' is longer "
			    "than 64 bytes", v);
		for (j = 0; v[j] != '\0'; j++)
			if (v[j] <= ' ' || v[j] >= 0x7f ||
			    strchr("&;=#%", v[j]) != NULL)
				return cfg_bad(ld, config_setting_get_elem(s,
				    i), "server.access_log.redact: '%s' is not "
				    "a parameter name (visible ASCII without "
				    "& ; = # %%, as it reads percent-decoded)",
				    v);
		for (j = 0; j < i; j++)
			if (strcasecmp(sv->access_redact[j], v) == 0)
				return cfg_bad(ld, config_setting_get_elem(s,
				    i), "server.access_log.redact: '%s' is "
				    "listed twice", v);
	}
	return 0;
}

static int
parse_server(struct ld *ld, const config_setting_t *srv)
{
	struct cfg_server *sv = &ld->cfg->server;
	struct cfg_limits *lim = &sv->limits;
	const config_setting_t *g, *s;
	const char *v;
	char **cidrs = NULL;
	size_t i, n = 0;
	uint64_t u;
	long ncpu;
	int rc = -1;

	if (srv != NULL && cfg_check_keys(ld, srv, server_keys, "server") < 0)
		return -1;
	if (cfg_get_unsigned(ld, srv, "workers", "server", 0, 256, 0,
	    &sv->workers) < 0)
		return -1;
	if (sv->workers == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		sv->workers = ncpu > 0 ? (unsigned)ncpu : 1;
	}
	if (parse_listen(ld, srv) < 0)
		return -1;

	if (cfg_get_cstr(ld, srv, "admin", "server", &s, &v) < 0)
		return -1;
	if (v == NULL)
		v = "127.0.0.1:9901";
	if (strcmp(v, "off") != 0 && v[0] != '\0') {
		sv->has_admin = true;
		if (parse_addr_at(ld, s, v, &sv->admin, "server.admin") < 0)
			return -1;
		for (i = 0; i < sv->nlisten; i++)
			if (cfg_addr_equal(&sv->listen[i].addr, &sv->admin))
				return cfg_bad(ld, s, "server.admin: address '%s' "
				    "is also a listen address", v);
	}

	if (cfg_get_str(ld, srv, "control_socket", "server", "run/portico.sock",
	    &sv->control_socket) < 0 || cfg_resolve(ld, &sv->control_socket) < 0)
		return -1;
	if (strlen(sv->control_socket) >= 108) {
		s = cfg_member(srv, "control_socket");
		return cfg_bad(ld, s ? s : srv, "server.control_socket: '%s' is "
		    "longer than a unix socket path may be", sv->control_socket);
	}
	if (cfg_get_str(ld, srv, "pid_file", "server", "run/portico.pid",
	    &sv->pid_file) < 0 || cfg_resolve(ld, &sv->pid_file) < 0)
		return -1;

	if (cfg_get_group(ld, srv, "state", "server", &g) < 0)
		return -1;
	if (g != NULL && cfg_check_keys(ld, g, state_keys, "server.state") < 0)
		return -1;
	if (cfg_get_str(ld, g, "path", "server.state", "/dev/shm/portico",
	    &sv->state_path) < 0 || cfg_resolve(ld, &sv->state_path) < 0 ||
	    cfg_get_unsigned(ld, g, "max_mb", "server.state", 1, 1048576, 256,
	    &sv->state_max_mb) < 0)
		return -1;
	/* The cache may never take the room rate limiting, breakers and
	 * health need: at most three quarters of the store, half by
	 * default. */
	if (cfg_get_unsigned(ld, g, "cache_mb", "server.state", 0, 1048576,
	    sv->state_max_mb / 2, &sv->state_cache_mb) < 0)
		return -1;
	if (sv->state_cache_mb > sv->state_max_mb * 3 / 4)
		return cfg_bad(ld, cfg_member(g, "cache_mb"), "server.state: "
		    "cache_mb (%u) may be at most 3/4 of max_mb (%u MB): the "
		    "rest is for rate limiting, breakers and health",
		    sv->state_cache_mb, sv->state_max_mb * 3 / 4);

	if (cfg_get_group(ld, srv, "limits", "server", &g) < 0)
		return -1;
	if (g != NULL && cfg_check_keys(ld, g, limits_keys, "server.limits") < 0)
		return -1;
	if (cfg_get_uint(ld, g, "header_bytes", "server.limits", 1024, 1048576,
	    16384, &u) < 0)
		return -1;
	lim->header_bytes = (size_t)u;
	if (cfg_get_uint(ld, g, "field_bytes", "server.limits", 64, 1048576,
	    8192, &u) < 0)
		return -1;
	lim->field_bytes = (size_t)u;
	if (cfg_get_uint(ld, g, "uri_bytes", "server.limits", 64, 1048576,
	    8192, &u) < 0)
		return -1;
	lim->uri_bytes = (size_t)u;
	if (cfg_get_unsigned(ld, g, "headers", "server.limits", 1, 10000, 100,
	    &lim->headers) < 0 ||
	    cfg_get_uint(ld, g, "body_bytes", "server.limits", 0,
	    (uint64_t)1 << 40, 10485760, &lim->body_bytes) < 0 ||
	    cfg_get_unsigned(ld, g, "header_timeout_ms", "server.limits", 1,
	    3600000, 10000, &lim->header_timeout_ms) < 0 ||
	    cfg_get_unsigned(ld, g, "idle_timeout_ms", "server.limits", 1,
	    86400000, 60000, &lim->idle_timeout_ms) < 0 ||
	    cfg_get_unsigned(ld, g, "drain_timeout_ms", "server.limits", 0,
	    86400000, 30000, &lim->drain_timeout_ms) < 0)
		return -1;

	if (cfg_get_group(ld, srv, "access_log", "server", &g) < 0)
		return -1;
	if (g != NULL && cfg_check_keys(ld, g, access_keys, "server.access_log") < 0)
		return -1;
	if (cfg_get_str(ld, g, "path", "server.access_log", "logs/access.log",
	    &sv->access_log) < 0)
		return -1;
	if (strcmp(sv->access_log, "off") == 0) {
		free(sv->access_log);
		sv->access_log = NULL;
	} else if (strcmp(sv->access_log, "-") != 0 &&
	    cfg_resolve(ld, &sv->access_log) < 0)
		return -1;
	if (cfg_get_cstr(ld, g, "format", "server.access_log", &s, &v) < 0)
		return -1;
	if (v == NULL || strcmp(v, "json") == 0)
		sv->access_format = ACCESS_JSON;
	else if (strcmp(v, "combined") == 0)
		sv->access_format = ACCESS_COMBINED;
	else
		return cfg_bad(ld, s, "server.access_log: format '%s' is not "
		    "json or combined", v);
	if (parse_redact(ld, g) < 0)
		return -1;

	if (cfg_get_group(ld, srv, "error_log", "server", &g) < 0)
		return -1;
	if (g != NULL && cfg_check_keys(ld, g, error_keys, "server.error_log") < 0)
		return -1;
	if (cfg_get_str(ld, g, "path", "server.error_log", "logs/error.log",
	    &sv->error_log) < 0)
		return -1;
	if (strcmp(sv->error_log, "off") == 0)
		return cfg_bad(ld, cfg_member(g, "path"), "server.error_log: path "
		    "cannot be off (use \"-\" for stderr)");
	if (strcmp(sv->error_log, "-") != 0 && cfg_resolve(ld, &sv->error_log) < 0)
		return -1;
	if (cfg_get_cstr(ld, g, "level", "server.error_log", &s, &v) < 0)
		return -1;
	if (v == NULL || strcmp(v, "info") == 0)
		sv->error_level = LOG_INFO;
	else if (strcmp(v, "debug") == 0)
		sv->error_level = LOG_DEBUG;
	else if (strcmp(v, "warn") == 0)
		sv->error_level = LOG_WARN;
	else if (strcmp(v, "error") == 0)
		sv->error_level = LOG_ERROR;
	else
		return cfg_bad(ld, s, "server.error_log: level '%s' is not "
		    "debug, info, warn or error", v);

	if (cfg_get_str(ld, srv, "trace_header", "server", "X-Trace-ID",
	    &sv->trace_header) < 0)
		return -1;
	if (!cfg_is_token(sv->trace_header))
		return cfg_bad(ld, cfg_member(srv, "trace_header"), "server."
		    "trace_header: '%s' is not a valid header name",
		    sv->trace_header);
	if (strcasecmp(sv->trace_header, "traceparent") == 0 ||
	    strcasecmp(sv->trace_header, "tracestate") == 0)
		return cfg_bad(ld, cfg_member(srv, "trace_header"), "server."
		    "trace_header: '%s' is the W3C trace context's own header "
		    "(the gateway sends it besides the trace header)",
		    sv->trace_header);

	if (cfg_get_unsigned(ld, srv, "ticket_rotate_s", "server", 60,
	    86400 * 7, 3600, &sv->ticket_rotate_s) < 0)
		return -1;
	if (cfg_get_cstr(ld, srv, "underscores_in_headers", "server", &s,
	    &v) < 0)
		return -1;
	if (v != NULL && strcmp(v, "refuse") == 0)
		sv->refuse_underscores = true;
	else if (v != NULL && strcmp(v, "drop") != 0)
		return cfg_bad(ld, s, "server.underscores_in_headers: '%s' is "
		    "not drop or refuse", v);

	if (cfg_get_strs(ld, srv, "trusted_proxies", "server", &s, &cidrs, &n) < 0)
		goto done;
	if (n > 0) {
		sv->trusted = calloc(n, sizeof(*sv->trusted));
		if (sv->trusted == NULL) {
			cfg_oom(ld);
			goto done;
		}
	}
	for (i = 0; i < n; i++) {
		if (cfg_parse_cidr(cidrs[i], &sv->trusted[i]) < 0) {
			cfg_bad(ld, config_setting_get_elem(s, i), "server."
			    "trusted_proxies: '%s' is not an address or CIDR "
			    "(a.b.c.d/n, v6/n)", cidrs[i]);
			goto done;
		}
		sv->ntrusted++;
	}
	rc = 0;
done:
	cfg_free_strv(cidrs);
	return rc;
}

/* ---- tls ----------------------------------------------------------- */

static const char *const tls_keys[] = {
	"names", "cert", "key", "min_version", NULL
};

/* cert and key: a path, or a list of them (an RSA and an ECDSA
 * certificate side by side), resolved against the prefix. */
static int
tls_files(struct ld *ld, const config_setting_t *e, const char *name,
    const char *what, char ***out, size_t *n)
{
	const config_setting_t *s = cfg_member(e, name);
	size_t i;

	*out = NULL;
	*n = 0;
	if (s == NULL)
		return cfg_bad(ld, e, "%s needs '%s'", what, name);
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		if ((*out = calloc(2, sizeof(char *))) == NULL)
			return cfg_oom(ld);
		if (cfg_dup_str(ld, config_setting_get_string(s), &(*out)[0]) <
		    0)
			return -1;
		*n = 1;
	} else if (cfg_get_strs(ld, e, name, what, NULL, out, n) < 0) {
		return -1;
	}
	if (*n == 0 || *n > 4)
		return cfg_bad(ld, s, "%s: '%s' names 1 to 4 files", what,
		    name);
	for (i = 0; i < *n; i++)
		if (cfg_resolve(ld, &(*out)[i]) < 0)
			return -1;
	return 0;
}

static int
parse_tls(struct ld *ld, const config_setting_t *tg)
{
	struct config *cfg = ld->cfg;
	const config_setting_t *s;
	const char *v;
	char what[160];
	size_t n, j;
	int i, ne;

	if (tg == NULL)
		return 0;
	ne = config_setting_length(tg);
	cfg->tls = calloc(ne > 0 ? ne : 1, sizeof(*cfg->tls));
	if (cfg->tls == NULL)
		return cfg_oom(ld);
	for (i = 0; i < ne; i++) {
		const config_setting_t *e = config_setting_get_elem(tg, i);
		struct cfg_tls *t = &cfg->tls[i];

		cfg->ntls++;
		t->line = config_setting_source_line(e);
		if (cfg_dup_str(ld, config_setting_name(e), &t->name) < 0)
			return -1;
		if (strlen(t->name) > CFG_NAME_MAX)
			return cfg_bad(ld, e, "tls entry name '%.16s...' is "
			    "longer than %d bytes", t->name, CFG_NAME_MAX);
		snprintf(what, sizeof(what), "tls '%s'", t->name);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			return cfg_bad(ld, e, "%s must be a group { ... }", what);
		if (cfg_check_keys(ld, e, tls_keys, what) < 0 ||
		    cfg_get_strs(ld, e, "names", what, NULL, &t->names,
		    &t->nnames) < 0 ||
		    tls_files(ld, e, "cert", what, &t->certs, &t->ncerts) < 0 ||
		    tls_files(ld, e, "key", what, &t->keys, &n) < 0 ||
		    cfg_get_cstr(ld, e, "min_version", what, &s, &v) < 0)
			return -1;
		if (n != t->ncerts)
			return cfg_bad(ld, cfg_member(e, "key"), "%s: %zu "
			    "certificates but %zu keys (one key per "
			    "certificate, in the same order)", what, t->ncerts,
			    n);
		for (j = 0; j < t->nnames; j++)
			if (t->names[j][0] == '*' && (t->names[j][1] != '.' ||
			    strchr(t->names[j] + 2, '*') != NULL))
				return cfg_bad(ld, cfg_member(e, "names"), "%s: "
				    "name '%s': a wildcard is '*.' and a domain",
				    what, t->names[j]);
		if (cfg_dup_str(ld, t->certs[0], &t->cert) < 0 ||
		    cfg_dup_str(ld, t->keys[0], &t->key) < 0)
			return -1;
		if (t->names == NULL) {
			t->names = calloc(1, sizeof(char *));
			if (t->names == NULL)
				return cfg_oom(ld);
		}
		if (v == NULL || strcmp(v, "TLSv1.2") == 0)
			t->min_version = TLS1_2_VERSION;
		else if (strcmp(v, "TLSv1.3") == 0)
			t->min_version = TLS1_3_VERSION;
		else
			return cfg_bad(ld, s, "%s: min_version '%s' is not "
			    "TLSv1.2 or TLSv1.3", what, v);
	}
	return 0;
}

/* ---- services ------------------------------------------------------ */

static const char *const service_keys[] = {
	"instances", "balance", "connect_timeout_ms", "timeout_ms",
	"keepalive", "keepalive_timeout_ms", "retries", "health", "breaker",
	"tls", "verify", "ca_file", "sni", "retry_budget", "max_inflight",
	NULL
};

static int
parse_balance(struct ld *ld, const config_setting_t *e, struct cfg_service *sv,
    const char *what)
{
	const config_setting_t *s;
	const char *v;

	if (cfg_get_cstr(ld, e, "balance", what, &s, &v) < 0)
		return -1;
	if (v == NULL || strcmp(v, "round_robin") == 0)
		sv->balance = BAL_ROUND_ROBIN;
	else if (strcmp(v, "least_conn") == 0)
		sv->balance = BAL_LEAST_CONN;
	else if (strcmp(v, "hash:ip") == 0)
		sv->balance = BAL_HASH_IP;
	else if (strcmp(v, "hash:consumer") == 0)
		sv->balance = BAL_HASH_CONSUMER;
	else if (strncmp(v, "hash:header:", 12) == 0) {
		if (!cfg_is_token(v + 12))
			return cfg_bad(ld, s, "%s: balance '%s' needs a header "
			    "name after hash:header:", what, v);
		sv->balance = BAL_HASH_HEADER;
		return cfg_dup_str(ld, v + 12, &sv->hash_header);
	} else
		return cfg_bad(ld, s, "%s: balance '%s' is not round_robin, "
		    "least_conn, hash:ip, hash:consumer or hash:header:NAME",
		    what, v);
	return 0;
}

static int
parse_service(struct ld *ld, const config_setting_t *e, struct cfg_service *sv)
{
	const config_setting_t *s;
	char **inst = NULL;
	char what[160], sub[200];
	size_t i, n = 0;
	int rc = -1;

	sv->line = config_setting_source_line(e);
	if (cfg_dup_str(ld, config_setting_name(e), &sv->name) < 0)
		return -1;
	snprintf(what, sizeof(what), "service '%s'", sv->name);
	if (config_setting_type(e) != CONFIG_TYPE_GROUP)
		return cfg_bad(ld, e, "%s must be a group { ... }", what);
	if (cfg_check_keys(ld, e, service_keys, what) < 0 ||
	    cfg_get_strs(ld, e, "instances", what, &s, &inst, &n) < 0)
		goto done;
	if (s == NULL) {
		cfg_bad(ld, e, "%s needs 'instances'", what);
		goto done;
	}
	if (n == 0) {
		cfg_bad(ld, s, "%s: 'instances' must not be empty", what);
		goto done;
	}
	sv->instances = calloc(n, sizeof(*sv->instances));
	if (sv->instances == NULL) {
		cfg_oom(ld);
		goto done;
	}
	snprintf(sub, sizeof(sub), "%s instances", what);
	for (i = 0; i < n; i++) {
		if (parse_addr_at(ld, config_setting_get_elem(s, i), inst[i],
		    &sv->instances[i], sub) < 0)
			goto done;
		sv->ninstances++;
	}
	if (parse_balance(ld, e, sv, what) < 0 ||
	    cfg_get_unsigned(ld, e, "connect_timeout_ms", what, 1, 600000, 200,
	    &sv->connect_timeout_ms) < 0 ||
	    cfg_get_unsigned(ld, e, "timeout_ms", what, 1, 86400000, 2000,
	    &sv->timeout_ms) < 0 ||
	    cfg_get_unsigned(ld, e, "keepalive", what, 0, 100000, 64,
	    &sv->keepalive) < 0 ||
	    cfg_get_unsigned(ld, e, "keepalive_timeout_ms", what, 1, 3600000,
	    4000, &sv->keepalive_timeout_ms) < 0 ||
	    cfg_get_unsigned(ld, e, "retries", what, 0, 10, 1, &sv->retries) < 0 ||
	    cfg_get_bool(ld, e, "tls", what, false, &sv->tls) < 0 ||
	    cfg_get_bool(ld, e, "verify", what, true, &sv->tls_verify) < 0 ||
	    cfg_get_str(ld, e, "ca_file", what, NULL, &sv->ca_file) < 0 ||
	    (sv->ca_file != NULL && cfg_resolve(ld, &sv->ca_file) < 0) ||
	    cfg_get_str(ld, e, "sni", what, NULL, &sv->sni) < 0)
		goto done;
	if (!sv->tls && (cfg_member(e, "verify") != NULL ||
	    sv->ca_file != NULL || sv->sni != NULL)) {
		cfg_bad(ld, cfg_member(e, sv->ca_file != NULL ? "ca_file" :
		    sv->sni != NULL ? "sni" : "verify"), "%s: 'verify', "
		    "'ca_file' and 'sni' need 'tls = true'", what);
		goto done;
	}

	if (cfg_parse_resilience(ld, e, sv, what) < 0)
		goto done;
	rc = 0;
done:
	cfg_free_strv(inst);
	return rc;
}

static int
parse_services(struct ld *ld, const config_setting_t *sg)
{
	struct config *cfg = ld->cfg;
	int i, n;

	if (sg == NULL)
		return 0;
	n = config_setting_length(sg);
	cfg->services = calloc(n > 0 ? n : 1, sizeof(*cfg->services));
	if (cfg->services == NULL)
		return cfg_oom(ld);
	for (i = 0; i < n; i++) {
		cfg->nservices++;
		if (parse_service(ld, config_setting_get_elem(sg, i),
		    &cfg->services[i]) < 0)
			return -1;
	}
	return 0;
}

/* ---- auth ---------------------------------------------------------- */

static const char *const auth_keys[] = {
	"jwt", "api_keys", "identity_headers", "tier_claim", "scopes_claim",
	NULL
};
static const char *const jwt_keys[] = {
	"keys", "jwks_file", "issuer", "audience", "leeway_s", "require",
	"consumer_claim", NULL
};
static const char *const jwt_key_keys[] = {
	"kid", "alg", "secret_file", "public_key", NULL
};
static const char *const api_keys_keys[] = { "file", "header", NULL };
static const char *const identity_keys[] = {
	"consumer", "tier", "scopes", NULL
};
static const char *const jwt_algs[] = {
	"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
	"PS384", "PS512", "ES256", "ES384", "EdDSA", NULL
};

static int
parse_jwt_key(struct ld *ld, const config_setting_t *e, struct cfg_jwt_key *k,
    size_t idx)
{
	const config_setting_t *s;
	const char *const *a;
	char what[64];

	snprintf(what, sizeof(what), "auth.jwt key #%zu", idx + 1);
	k->line = config_setting_source_line(e);
	if (cfg_check_keys(ld, e, jwt_key_keys, what) < 0 ||
	    cfg_get_str(ld, e, "kid", what, NULL, &k->kid) < 0 ||
	    cfg_need_str(ld, e, "alg", what, &k->alg) < 0 ||
	    cfg_get_str(ld, e, "secret_file", what, NULL, &k->secret_file) < 0 ||
	    cfg_resolve(ld, &k->secret_file) < 0 ||
	    cfg_get_str(ld, e, "public_key", what, NULL, &k->public_key) < 0 ||
	    cfg_resolve(ld, &k->public_key) < 0)
		return -1;
	for (a = jwt_algs; *a != NULL; a++)
		if (strcmp(*a, k->alg) == 0)
			break;
	if (*a == NULL)
		return cfg_bad(ld, cfg_member(e, "alg"), "%s: alg '%s' is not one of "
		    "HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, "
		    "EdDSA", what, k->alg);
	if (k->alg[0] == 'H') {
		if (k->public_key != NULL)
			return cfg_bad(ld, cfg_member(e, "public_key"), "%s: %s takes "
			    "'secret_file', not 'public_key'", what, k->alg);
		if (k->secret_file == NULL)
			return cfg_bad(ld, e, "%s: %s needs 'secret_file'", what,
			    k->alg);
	} else {
		s = cfg_member(e, "secret_file");
		if (s != NULL)
			return cfg_bad(ld, s, "%s: %s takes 'public_key', not "
			    "'secret_file'", what, k->alg);
		if (k->public_key == NULL)
			return cfg_bad(ld, e, "%s: %s needs 'public_key'", what,
			    k->alg);
	}
	return 0;
}

static int
parse_jwt(struct ld *ld, const config_setting_t *jg)
{
	struct cfg_auth *au = &ld->cfg->auth;
	const config_setting_t *l, *s;
	const char *what = "auth.jwt";
	size_t i, j;
	uint64_t u;

	au->has_jwt = jg != NULL;
	if (jg != NULL && cfg_check_keys(ld, jg, jwt_keys, what) < 0)
		return -1;
	if (cfg_get_list(ld, jg, "keys", what, &l) < 0)
		return -1;
	if (l != NULL && config_setting_length(l) > 0) {
		au->jwt_keys = calloc(config_setting_length(l),
		    sizeof(*au->jwt_keys));
		if (au->jwt_keys == NULL)
			return cfg_oom(ld);
		for (i = 0; i < (size_t)config_setting_length(l); i++) {
			struct cfg_jwt_key *k = &au->jwt_keys[i];

			au->njwt_keys++;
			if (parse_jwt_key(ld, config_setting_get_elem(l, i), k,
			    i) < 0)
				return -1;
			for (j = 0; k->kid != NULL && j < i; j++)
				if (au->jwt_keys[j].kid != NULL &&
				    strcmp(au->jwt_keys[j].kid, k->kid) == 0)
					return cfg_bad(ld, cfg_member(
					    config_setting_get_elem(l, i),
					    "kid"), "%s: kid '%s' is used "
					    "twice", what, k->kid);
		}
	}
	if (cfg_get_str(ld, jg, "jwks_file", what, NULL, &au->jwks_file) < 0 ||
	    cfg_resolve(ld, &au->jwks_file) < 0 ||
	    cfg_get_str(ld, jg, "issuer", what, NULL, &au->issuer) < 0 ||
	    cfg_get_str(ld, jg, "audience", what, NULL, &au->audience) < 0 ||
	    cfg_get_uint(ld, jg, "leeway_s", what, 0, 86400, 30, &u) < 0 ||
	    cfg_get_strs(ld, jg, "require", what, NULL, &au->require,
	    &au->nrequire) < 0 ||
	    cfg_get_str(ld, jg, "consumer_claim", what, "sub",
	    &au->consumer_claim) < 0)
		return -1;
	au->leeway_s = (unsigned)u;
	if (jg != NULL && au->njwt_keys == 0 && au->jwks_file == NULL) {
		s = cfg_member(jg, "keys");
		return cfg_bad(ld, s ? s : jg, "%s needs 'keys' or 'jwks_file'",
		    what);
	}
	return 0;
}

static int
parse_auth(struct ld *ld, const config_setting_t *ag)
{
	struct cfg_auth *au = &ld->cfg->auth;
	const config_setting_t *g;
	const char *w;

	if (ag != NULL && cfg_check_keys(ld, ag, auth_keys, "auth") < 0)
		return -1;
	if (cfg_get_group(ld, ag, "jwt", "auth", &g) < 0 || parse_jwt(ld, g) < 0)
		return -1;

	w = "auth.api_keys";
	if (cfg_get_group(ld, ag, "api_keys", "auth", &g) < 0)
		return -1;
	au->has_api_keys = g != NULL;
	if (g != NULL && (cfg_check_keys(ld, g, api_keys_keys, w) < 0 ||
	    cfg_need_str(ld, g, "file", w, &au->api_keys_file) < 0 ||
	    cfg_resolve(ld, &au->api_keys_file) < 0))
		return -1;
	if (cfg_get_str(ld, g, "header", w, "X-API-Key", &au->api_key_header) < 0)
		return -1;
	if (!cfg_is_token(au->api_key_header))
		return cfg_bad(ld, cfg_member(g, "header"), "%s: '%s' is not a valid "
		    "header name", w, au->api_key_header);

	w = "auth.identity_headers";
	if (cfg_get_group(ld, ag, "identity_headers", "auth", &g) < 0)
		return -1;
	if (g != NULL && cfg_check_keys(ld, g, identity_keys, w) < 0)
		return -1;
	if (cfg_get_str(ld, g, "consumer", w, "X-User-ID", &au->id_consumer) < 0 ||
	    cfg_get_str(ld, g, "tier", w, "X-User-Tier", &au->id_tier) < 0 ||
	    cfg_get_str(ld, g, "scopes", w, "X-User-Scopes", &au->id_scopes) < 0)
		return -1;
	if (!cfg_is_token(au->id_consumer) || !cfg_is_token(au->id_tier) ||
	    !cfg_is_token(au->id_scopes))
		return cfg_bad(ld, g, "%s: each entry must be a valid header name",
		    w);

	if (cfg_get_str(ld, ag, "tier_claim", "auth", "tier", &au->tier_claim) < 0 ||
	    cfg_get_str(ld, ag, "scopes_claim", "auth", "scope",
	    &au->scopes_claim) < 0)
		return -1;
	return 0;
}

/* ---- tiers --------------------------------------------------------- */

static const char *const tier_keys[] = { "rate", "per_s", "burst", NULL };

static const struct {
	const char *name;
	uint64_t rate, per_s, burst;
} default_tiers[] = {
	{ "anonymous", 10, 1, 20 },
	{ "free", 100, 60, 20 },
	{ "paid", 1000, 1, 2000 },
};

static int
parse_tiers(struct ld *ld, const config_setting_t *tg)
{
	struct config *cfg = ld->cfg;
	const config_setting_t *s;
	char what[160];
	size_t i, n;

	n = tg != NULL ? (size_t)config_setting_length(tg) :
	    sizeof(default_tiers) / sizeof(default_tiers[0]);
	cfg->tiers = calloc(n > 0 ? n : 1, sizeof(*cfg->tiers));
	if (cfg->tiers == NULL)
		return cfg_oom(ld);
	for (i = 0; i < n; i++) {
		struct cfg_tier *t = &cfg->tiers[i];
		const config_setting_t *e;
		static const char *const fields[] = { "rate", "per_s", "burst" };
		uint64_t *out[] = { &t->rate, &t->per_s, &t->burst };
		int f;

		cfg->ntiers++;
		if (tg == NULL) {
			if (cfg_dup_str(ld, default_tiers[i].name, &t->name) < 0)
				return -1;
			t->rate = default_tiers[i].rate;
			t->per_s = default_tiers[i].per_s;
			t->burst = default_tiers[i].burst;
			continue;
		}
		e = config_setting_get_elem(tg, i);
		t->line = config_setting_source_line(e);
		if (cfg_dup_str(ld, config_setting_name(e), &t->name) < 0)
			return -1;
		if (strlen(t->name) > CFG_NAME_MAX)
			return cfg_bad(ld, e, "tier name '%.16s...' is "
			    "longer than %d bytes", t->name, CFG_NAME_MAX);
		snprintf(what, sizeof(what), "tier '%s'", t->name);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			return cfg_bad(ld, e, "%s must be a group { ... }", what);
		if (cfg_check_keys(ld, e, tier_keys, what) < 0)
			return -1;
		for (f = 0; f < 3; f++) {
			s = cfg_member(e, fields[f]);
			if (s == NULL)
				return cfg_bad(ld, e, "%s needs '%s'", what,
				    fields[f]);
			if (cfg_get_uint(ld, e, fields[f], what, 1,
			    (uint64_t)1 << 40, 0, out[f]) < 0)
				return -1;
		}
	}
	return 0;
}

int
config_tier_index(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->ntiers; i++)
		if (strcmp(cfg->tiers[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* check_listen_tls: a listener's tls names an entry of the tls section. */
static int
check_listen_tls(struct ld *ld, const config_setting_t *root)
{
	const struct cfg_server *sv = &ld->cfg->server;
	const config_setting_t *l = cfg_lookup_from(root, "server.listen");
	size_t i, j;

	for (i = 0; i < sv->nlisten; i++) {
		if (sv->listen[i].tls == NULL)
			continue;
		for (j = 0; j < ld->cfg->ntls; j++)
			if (strcmp(ld->cfg->tls[j].name, sv->listen[i].tls) == 0)
				break;
		if (j == ld->cfg->ntls)
			return cfg_bad(ld, cfg_member(config_setting_get_elem(l, i),
			    "tls"), "server.listen: tls '%s' is not an entry "
			    "of the tls section", sv->listen[i].tls);
	}
	return 0;
}

/* ---- load and free ------------------------------------------------- */

static const char *const top_keys[] = {
	"version", "server", "tls", "services", "auth", "tiers", "routes",
	NULL
};

static int
read_text(struct ld *ld)
{
	FILE *f = fopen(ld->file, "rb");
	char buf[8192];
	size_t n;
	char *p;

	if (f == NULL)
		return cfg_bad(ld, NULL, "cannot open: %s", strerror(errno));
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		p = realloc(ld->text, ld->textlen + n + 1);
		if (p == NULL) {
			fclose(f);
			return cfg_oom(ld);
		}
		ld->text = p;
		memcpy(ld->text + ld->textlen, buf, n);
		ld->textlen += n;
		ld->text[ld->textlen] = '\0';
	}
	fclose(f);
	return 0;
}

static int
set_prefix(struct ld *ld, const char *prefix)
{
	char buf[PATH_MAX];

	if (prefix == NULL) {
		if (getcwd(buf, sizeof(buf)) == NULL)
			return cfg_bad(ld, NULL, "getcwd: %s", strerror(errno));
	} else if (realpath(prefix, buf) == NULL)
		return cfg_bad(ld, NULL, "prefix '%s': %s", prefix,
		    strerror(errno));
	return cfg_dup_str(ld, buf, &ld->cfg->prefix);
}

/* validate: read and check everything; cfg_refuse_unbuilt is the caller's. */
static int
validate(struct ld *ld, config_t *lc)
{
	const config_setting_t *root, *g, *s;
	char dir[PATH_MAX];
	const char *slash;
	size_t len;
	uint64_t v;

	if (read_text(ld) < 0)
		return -1;
	/* @include "x" is taken relative to the file's own directory. */
	slash = strrchr(ld->file, '/');
	len = slash != NULL ? (size_t)(slash - ld->file) + 1 : 0;
	if (len > 0 && len < sizeof(dir)) {
		/* incdir keeps the '/' for naming included files in errors;
		 * libconfig wants the directory itself ("/" stays "/"). */
		memcpy(ld->incdir, ld->file, len);
		ld->incdir[len] = '\0';
		memcpy(dir, ld->file, len);
		dir[len > 1 ? len - 1 : len] = '\0';
		config_set_include_dir(lc, dir);
	}
	if (config_read_file(lc, ld->file) != CONFIG_TRUE) {
		const char *f = config_error_file(lc);

		if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
			return cfg_bad(ld, NULL, "cannot read the file");
		if (f == NULL)
			f = ld->file;
		snprintf(ld->err, ld->errlen, "%s%s:%d: %s", cfg_incdir_of(ld, f),
		    f, config_error_line(lc), config_error_text(lc));
		return -1;
	}
	root = config_root_setting(lc);
	if (cfg_check_literals(ld, root) < 0 ||
	    cfg_check_keys(ld, root, top_keys, NULL) < 0)
		return -1;

	s = cfg_member(root, "version");
	if (cfg_get_uint(ld, root, "version", "the file", 0, INT_MAX, 1, &v) < 0)
		return -1;
	if (v != 1)
		return cfg_bad(ld, s, "version %llu is not supported (this "
		    "build reads version 1)", (unsigned long long)v);
	ld->cfg->version = 1;

	if (cfg_get_group(ld, root, "server", "the file", &g) < 0 ||
	    parse_server(ld, g) < 0 ||
	    cfg_get_group(ld, root, "tls", "the file", &g) < 0 ||
	    parse_tls(ld, g) < 0 ||
	    cfg_get_group(ld, root, "services", "the file", &g) < 0 ||
	    parse_services(ld, g) < 0 ||
	    cfg_get_group(ld, root, "auth", "the file", &g) < 0 ||
	    parse_auth(ld, g) < 0 ||
	    cfg_get_group(ld, root, "tiers", "the file", &g) < 0 ||
	    parse_tiers(ld, g) < 0 ||
	    cfg_parse_routes(ld, root) < 0)
		return -1;
	return check_listen_tls(ld, root);
}

/* The key files auth names must load as the workers will load them, so
 * `portico -t` and a reload refuse a broken one with its place. */
static int
check_auth_files(struct ld *ld)
{
	const struct cfg_auth *au = &ld->cfg->auth;
	struct jwt_keys *k = NULL;
	struct apikeys *ak = NULL;
	char why[512];

	if (au->has_jwt) {
		if (jwt_keys_load(au, &k, why, sizeof(why)) < 0) {
			/* A key of this file says "LINE: reason". */
			if (why[0] >= '0' && why[0] <= '9')
				snprintf(ld->err, ld->errlen, "%s:%s", ld->file,
				    why);
			else
				snprintf(ld->err, ld->errlen, "%s", why);
			return -1;
		}
		jwt_keys_free(k);
	}
	if (au->has_api_keys) {
		if (apikey_load(au->api_keys_file, &ak, why, sizeof(why)) < 0) {
			snprintf(ld->err, ld->errlen, "%s", why);
			return -1;
		}
		apikey_free(ak);
	}
	return 0;
}

/* Certificates and keys load as the workers will load them: a broken
 * file is refused with its path and OpenSSL's reason. */
static int
check_tls_files(struct ld *ld)
{
	struct tls_server *ts = NULL;
	char why[512];
	size_t i;

	if (tls_server_new(ld->cfg, &ts, why, sizeof(why)) < 0) {
		snprintf(ld->err, ld->errlen, "%s", why);
		return -1;
	}
	tls_server_free(ts);
	for (i = 0; i < ld->cfg->nservices; i++) {
		const struct cfg_service *sv = &ld->cfg->services[i];
		SSL_CTX *ctx;

		if (!sv->tls)
			continue;
		if ((ctx = tls_client_ctx_new(sv, why, sizeof(why))) == NULL) {
			snprintf(ld->err, ld->errlen, "%s:%d: service %s: %s",
			    ld->file, sv->line, sv->name, why);
			return -1;
		}
		SSL_CTX_free(ctx);
	}
	return 0;
}

int
config_load(const char *file, const char *prefix, struct config **out,
    char *err, size_t errlen)
{
	struct ld ld = { .file = file, .err = err, .errlen = errlen };
	config_t lc;
	int rc;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	ld.cfg = calloc(1, sizeof(*ld.cfg));
	if (ld.cfg == NULL)
		return cfg_oom(&ld);
	if (cfg_dup_str(&ld, file, &ld.cfg->file) < 0 ||
	    set_prefix(&ld, prefix) < 0) {
		config_free(ld.cfg);
		return -1;
	}
	config_init(&lc);
	rc = validate(&ld, &lc);
	if (rc == 0)
		rc = cfg_refuse_unbuilt(&ld, config_root_setting(&lc));
	if (rc == 0)
		rc = check_auth_files(&ld);
	if (rc == 0)
		rc = check_tls_files(&ld);
	config_destroy(&lc);
	free(ld.text);
	if (rc < 0) {
		config_free(ld.cfg);
		return -1;
	}
	*out = ld.cfg;
	return 0;
}
void
config_free(struct config *cfg)
{
	struct cfg_server *sv;
	struct cfg_auth *au;
	size_t i;

	if (cfg == NULL)
		return;
	sv = &cfg->server;
	for (i = 0; i < sv->nlisten; i++)
		free(sv->listen[i].tls);
	free(sv->listen);
	free(sv->control_socket);
	free(sv->pid_file);
	free(sv->state_path);
	free(sv->access_log);
	cfg_free_strv(sv->access_redact);
	free(sv->error_log);
	free(sv->trace_header);
	free(sv->trusted);
	for (i = 0; i < cfg->ntls; i++) {
		free(cfg->tls[i].name);
		cfg_free_strv(cfg->tls[i].names);
		free(cfg->tls[i].cert);
		free(cfg->tls[i].key);
		cfg_free_strv(cfg->tls[i].certs);
		cfg_free_strv(cfg->tls[i].keys);
	}
	free(cfg->tls);
	for (i = 0; i < cfg->nservices; i++) {
		free(cfg->services[i].name);
		free(cfg->services[i].instances);
		free(cfg->services[i].hash_header);
		free(cfg->services[i].ca_file);
		free(cfg->services[i].sni);
		free(cfg->services[i].health.path);
	}
	free(cfg->services);
	au = &cfg->auth;
	for (i = 0; i < au->njwt_keys; i++) {
		free(au->jwt_keys[i].kid);
		free(au->jwt_keys[i].alg);
		free(au->jwt_keys[i].secret_file);
		free(au->jwt_keys[i].public_key);
	}
	free(au->jwt_keys);
	free(au->jwks_file);
	free(au->issuer);
	free(au->audience);
	cfg_free_strv(au->require);
	free(au->consumer_claim);
	free(au->api_keys_file);
	free(au->api_key_header);
	free(au->id_consumer);
	free(au->id_tier);
	free(au->id_scopes);
	free(au->tier_claim);
	free(au->scopes_claim);
	for (i = 0; i < cfg->ntiers; i++)
		free(cfg->tiers[i].name);
	free(cfg->tiers);
	for (i = 0; i < cfg->nroutes; i++)
		cfg_free_route(&cfg->routes[i]);
	free(cfg->routes);
	free(cfg->file);
	free(cfg->prefix);
	free(cfg);
}
