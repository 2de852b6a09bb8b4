/*
 * cache_http: the pieces of HTTP the response cache reads (RFC 9111 and
 * RFC 9110): Cache-Control directives, HTTP dates, entity-tag lists, and
 * the freshness a stored response gets. Pure functions over header
 * values; no state.
 */
#ifndef PORTICO_CACHE_HTTP_H
#define PORTICO_CACHE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../worker/http1.h"

#define CC_UNSET	(-1)

/* Cache-Control directives (request or response). A directive given
 * with a field list (no-cache="Set-Cookie", private="X") counts as the
 * plain directive: the cache stores less, never more. Delta-seconds
 * that do not parse make the directive count as 0 (RFC 9111 4.2.1: an
 * invalid max-age is stale). */
struct cache_cc {
	bool no_store, no_cache, private_, public_;
	bool must_revalidate, proxy_revalidate;
	int64_t max_age, s_maxage;		/* seconds, or CC_UNSET */
	int64_t stale_while_revalidate;		/* seconds, or CC_UNSET */
	int64_t stale_if_error;			/* seconds, or CC_UNSET */
};

/* cache_cc_init: no directives. cache_cc_parse: add the directives of one
 * Cache-Control field value (V, N bytes) to CC. */
void cache_cc_init(struct cache_cc *cc);
void cache_cc_parse(const char *v, size_t n, struct cache_cc *cc);

/* cache_http_date: an HTTP-date (IMF-fixdate, or the obsolete RFC 850
 * and asctime forms a recipient must accept) as Unix seconds. 0, or -1
 * when it is not one. */
int cache_http_date(const char *s, size_t n, int64_t *out);

/* cache_etag_match: whether the If-None-Match list LIST (N bytes)
 * matches ETAG by the weak comparison ("*" matches any). */
bool cache_etag_match(const char *list, size_t n, const char *etag,
    size_t elen);

/* cache_vary_names: the field names of a Vary value, lower-case, added
 * to OUT (",name,name" form: each name preceded by a comma) when not
 * already there; *star set for "*". OUT holds CAP bytes; -1 when full. */
int cache_vary_names(const char *v, size_t n, char *out, size_t *len,
    size_t cap, bool *star);

/* What a response head says about storing it (RFC 9111 3 and 4.2). */
struct cache_fresh {
	bool storable;		/* may be stored at all */
	const char *why;	/* when not: the rule ("no-store", ...) */
	int64_t lifetime_s;	/* freshness lifetime */
	int64_t age_s;		/* the Age it came with */
	int64_t swr_s, sie_s;	/* stale windows (directive, else route) */
	bool revalidate;	/* never served stale (must-revalidate,
				 * proxy-revalidate, s-maxage) */
	int64_t last_modified;	/* Unix seconds, or 0 */
	bool has_etag;
};

/*
 * cache_freshness: decide from the response headers H[0..n) (a shared
 * cache's reading): Cache-Control no-store and private refuse, no-cache
 * too (this cache does not revalidate with the origin); s-maxage, then
 * max-age, then Expires minus Date (or NOW), then TTL_S, give the
 * lifetime; stale-while-revalidate / stale-if-error, else STALE_S, the
 * stale windows. NOW is Unix seconds.
 */
void cache_freshness(const struct http1_header *h, size_t n, int64_t now,
    unsigned ttl_s, unsigned stale_s, struct cache_fresh *f);

/* cache_status_storable: the statuses stored (heuristically cacheable in
 * RFC 9110 15.1, minus 206: 200, 203, 204, 300, 301, 404, 405, 410, 414,
 * 501). */
bool cache_status_storable(int status);

#endif
