/*
 * config: the typed configuration, parsed once by the master from a
 * libconfig file and validated completely before anything starts.
 * Workers inherit it across fork and only read it.
 */
#ifndef PORTICO_CONFIG_H
#define PORTICO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* HTTP methods a route may name; a bit each in a route's method mask. */
enum http_method {
	M_GET, M_HEAD, M_POST, M_PUT, M_DELETE, M_PATCH, M_OPTIONS,
	M_TRACE, M_CONNECT, M_OTHER, M__COUNT
};
#define METHOD_BIT(m) (1u << (m))

/* method_from_name: M_* for an exact, case-sensitive method token; M_OTHER
 * for any other token. */
enum http_method method_from_name(const char *s, size_t len);
const char *method_name(enum http_method m);

struct cfg_addr {
	struct sockaddr_storage ss;	/* family AF_INET or AF_INET6 */
	socklen_t len;
	char text[64];			/* as written: "127.0.0.1:8001" */
};

struct cfg_cidr {
	int family;			/* AF_INET or AF_INET6 */
	uint8_t addr[16];		/* network order, masked */
	int bits;
};

struct cfg_listen {
	struct cfg_addr addr;
	char *tls;			/* name of a tls entry, or NULL */
	bool strict_sni;		/* unknown SNI name: handshake alert */
	int line;
};

struct cfg_limits {
	size_t header_bytes;		/* request line + headers; over: 431 */
	size_t field_bytes;		/* one header field line; over: 431 */
	size_t uri_bytes;		/* request-target; over: 414 */
	unsigned headers;		/* header count; over: 431 */
	uint64_t body_bytes;		/* over: 413 */
	unsigned header_timeout_ms;	/* head not complete in time: 408 */
	unsigned idle_timeout_ms;	/* idle keep-alive client connection */
	unsigned drain_timeout_ms;	/* longest graceful wait */
};

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum access_format { ACCESS_JSON, ACCESS_COMBINED };

struct cfg_server {
	unsigned workers;		/* resolved: never 0 after load */
	struct cfg_listen *listen;
	size_t nlisten;
	bool has_admin;
	struct cfg_addr admin;
	char *control_socket;		/* absolute after load */
	char *pid_file;			/* absolute after load */
	char *state_path;
	unsigned state_max_mb;
	unsigned state_cache_mb;	/* the cache's share of the store */
	struct cfg_limits limits;
	char *access_log;		/* absolute path, "-" (stderr) or NULL (off) */
	enum access_format access_format;
	char **access_redact;		/* more query parameter names whose
					 * values are logged as REDACTED
					 * (NULL-terminated), or NULL */
	char *error_log;		/* absolute path or "-" (stderr) */
	enum log_level error_level;
	char *trace_header;
	bool refuse_underscores;	/* underscores_in_headers = "refuse" */
	unsigned ticket_rotate_s;	/* TLS session-ticket key lifetime */
	struct cfg_cidr *trusted;
	size_t ntrusted;
};

struct cfg_tls {
	char *name;
	char **names;			/* SNI names; NULL-terminated, may be empty */
	size_t nnames;
	char *cert;			/* absolute; the first of certs */
	char *key;			/* absolute; the first of keys */
	char **certs;			/* every certificate (chain) file: one
					 * per key type (RSA, ECDSA), paired */
	char **keys;			/* with its private key */
	size_t ncerts;
	int min_version;		/* TLS1_2_VERSION or TLS1_3_VERSION */
	int line;
};

enum balance {
	BAL_ROUND_ROBIN, BAL_LEAST_CONN, BAL_HASH_IP, BAL_HASH_CONSUMER,
	BAL_HASH_HEADER
};

struct cfg_health {
	bool enabled;
	char *path;
	unsigned interval_ms, timeout_ms, fall, rise;
	unsigned status_min, status_max;	/* a check passes with a status
						 * in [min, max] (200-299) */
};

/* Statuses a breaker may count as failures: 100..599, a bit each. */
#define CFG_STATUS_WORDS	10
struct cfg_breaker {
	bool enabled;
	unsigned failures, open_ms, half_open;
	uint64_t statuses[CFG_STATUS_WORDS];	/* bit s: status s fails */
};

/* cfg_breaker_counts: whether response status S counts as a failure. */
static inline bool
cfg_breaker_counts(const struct cfg_breaker *b, int s)
{
	return s >= 0 && s < 64 * CFG_STATUS_WORDS &&
	    (b->statuses[s / 64] >> (s % 64) & 1) != 0;
}

/* The retry budget of a service: retries may add at most `percent` of
 * its requests over `window_s`, plus `min_per_s` a second node-wide. */
struct cfg_retry_budget {
	unsigned percent;		/* 0..100 (20) */
	unsigned window_s;		/* 1..60 (10) */
	unsigned min_per_s;		/* 0..1000 (3) */
};

struct cfg_service {
	char *name;
	struct cfg_addr *instances;
	size_t ninstances;
	enum balance balance;
	char *hash_header;		/* for BAL_HASH_HEADER */
	unsigned connect_timeout_ms;
	unsigned timeout_ms;
	unsigned keepalive;
	unsigned keepalive_timeout_ms;	/* idle pooled connection closed after */
	unsigned retries;
	bool tls;			/* TLS to the instances */
	bool tls_verify;		/* check their certificate (default) */
	char *ca_file;			/* trust these CAs (absolute), or the
					 * system's */
	char *sni;			/* name to send and check, or NULL:
					 * the instance's host */
	struct cfg_retry_budget retry_budget;
	unsigned max_inflight;		/* per node, 0 = no cap (bulkhead) */
	struct cfg_health health;
	struct cfg_breaker breaker;
	int line;
};

struct cfg_jwt_key {
	char *kid;			/* may be NULL */
	char *alg;			/* "HS256", "RS256", ... */
	char *secret_file;		/* absolute, HS* */
	char *public_key;		/* absolute, others */
	int line;
};

struct cfg_auth {
	bool has_jwt;
	struct cfg_jwt_key *jwt_keys;
	size_t njwt_keys;
	char *jwks_file;
	char *issuer, *audience;
	unsigned leeway_s;
	char **require;
	size_t nrequire;
	char *consumer_claim;
	bool has_api_keys;
	char *api_keys_file;		/* absolute */
	char *api_key_header;
	char *id_consumer, *id_tier, *id_scopes;	/* identity headers */
	char *tier_claim, *scopes_claim;
};

/* Names that become part of a rate-limit key (tier, route, rate_limit
 * header) are at most this long; longer ones are refused at load. */
#define CFG_NAME_MAX	64

struct cfg_tier {
	char *name;
	uint64_t rate;
	uint64_t per_s;
	uint64_t burst;
	int line;
};

enum auth_mode { AUTH_NONE, AUTH_JWT, AUTH_API_KEY, AUTH_ANY };
enum rl_by { RL_NONE, RL_CONSUMER, RL_IP, RL_ROUTE, RL_HEADER };

struct cfg_call {
	char *name;
	int service;			/* index into config.services */
	char *path;			/* template (policies/template.h) */
	char *fallback;			/* JSON text, "cache", or NULL (none) */
	unsigned timeout_ms;		/* the call's own; the aggregate's
					 * timeout_ms when not set */
	char **forward_headers;		/* request headers copied to the call */
	size_t nforward_headers;
	int line;
};

struct cfg_route {
	char *name;
	int line;
	/* match: exactly one of path, prefix, regex */
	char *path;
	char *prefix;			/* stored without a trailing '/' */
	char *regex;
	pcre2_code *re;			/* JIT-compiled when regex is set */
	unsigned methods;		/* METHOD_BIT mask; 0 = any */
	char *host;			/* lower-case, NULL = any */

	int service;			/* index, -1 when the route aggregates */
	enum auth_mode auth;
	bool auth_forward;		/* Authorization goes upstream */
	char **scopes;
	size_t nscopes;

	enum rl_by rl_by;
	char *rl_header;		/* for RL_HEADER */
	unsigned rl_v6_prefix;		/* RL_IP: IPv6 clients grouped by this
					 * prefix length (1-128; 0 = 64) */
	int rl_tier;			/* index into tiers, -1 = consumer's */

	char *rewrite_pattern;
	pcre2_code *rewrite_re;
	char *rewrite_to;

	char **req_add;			/* "Name: value" */
	size_t nreq_add;
	char **req_remove;
	size_t nreq_remove;
	char **resp_add;
	size_t nresp_add;
	char **resp_remove;
	size_t nresp_remove;
	char **req_rename;		/* "Old: New" */
	size_t nreq_rename;
	char **resp_rename;
	size_t nresp_rename;
	char **strip_fields;		/* "name" or "a.b.c" */
	size_t nstrip_fields;
	uint64_t strip_buffer_bytes;	/* a body with a Content-Length up to
					 * this is stripped whole and gets a
					 * new one; longer ones stream */

	bool has_cache;
	unsigned cache_ttl_s;
	char **cache_vary;
	size_t ncache_vary;
	unsigned cache_stale_s;		/* stale windows when the upstream
					 * gives none */
	bool cache_per_consumer;	/* entries keyed by the consumer */
	uint64_t cache_max_body;	/* larger bodies go uncached */

	struct cfg_call *calls;		/* aggregate; ncalls == 0: proxy */
	size_t ncalls;
	unsigned aggregate_timeout_ms;	/* the whole aggregate's deadline */
	uint64_t aggregate_part_bytes;	/* most body bytes of one call */
	uint64_t aggregate_body_bytes;	/* most bytes of the merged body */
	unsigned aggregate_fallback_ttl_s;	/* a last good body is kept
						 * this long */
};

struct config {
	char *file;			/* as given */
	char *prefix;			/* absolute; relative paths resolve here */
	int version;
	struct cfg_server server;
	struct cfg_tls *tls;
	size_t ntls;
	struct cfg_service *services;
	size_t nservices;
	struct cfg_auth auth;
	struct cfg_tier *tiers;
	size_t ntiers;
	struct cfg_route *routes;
	size_t nroutes;
};

/*
 * config_load: parse and validate FILE, resolving relative paths against
 * PREFIX (NULL = the current directory). On success returns 0 and sets *out.
 * On failure returns -1 and writes "FILE:LINE: reason" (or "FILE: reason"
 * where no line applies) into err.
 */
int config_load(const char *file, const char *prefix, struct config **out,
    char *err, size_t errlen);
void config_free(struct config *cfg);

/* config_parse_addr: "host:port" or "[v6]:port" with a numeric host
 * (or "localhost", "*"). Returns 0, or -1 with a reason in err. */
int config_parse_addr(const char *s, struct cfg_addr *a, char *err,
    size_t errlen);

/* cidr_match: whether the address (AF_INET/AF_INET6 sockaddr) is inside. */
bool cidr_match(const struct cfg_cidr *c, const struct sockaddr *sa);
/* config_trusted: whether the address (FAMILY, 4 or 16 bytes in network
 * order) is one of server.trusted_proxies: the one trusted-proxy matcher
 * (X-Forwarded-For appending, rate-limit client addresses). */
bool config_trusted(const struct cfg_server *sv, int family,
    const uint8_t *addr);

int config_service_index(const struct config *cfg, const char *name);
/* config_tier_index: the index of tier NAME in cfg->tiers, or -1. */
int config_tier_index(const struct config *cfg, const char *name);

#endif
