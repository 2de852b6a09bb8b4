/*
 * route: path normalisation and first-match routing over config.routes.
 */
#ifndef PORTICO_ROUTE_H
#define PORTICO_ROUTE_H

#include <stddef.h>
#include "../master/config.h"

/*
 * route_normalize: normalise the path part of an origin-form target
 * (everything before '?'; the query is not touched and not copied).
 * Percent-decodes unreserved characters (ALPHA DIGIT - . _ ~), upper-cases
 * the hex of every other escape, resolves "." and ".." segments and
 * collapses "//". Writes a NUL-terminated result into out (at most outcap
 * bytes including the NUL). Returns its length, or -1 when the path must be
 * refused with 400: it does not start with '/', holds an encoded slash
 * (%2F, %5C) or an encoded NUL, a malformed escape, a byte outside RFC 3986
 * pchar, ".." would climb above the root, or a segment is "." or ".."
 * with a ';' parameter (".;x", "..;x": a dot-segment to servlet
 * containers); -2 when it does not fit.
 */
int route_normalize(const char *path, size_t len, char *out, size_t outcap);

struct route_match_data;

/* Per-worker scratch for regex matching (pcre2 match data sized for the
 * largest pattern). */
struct route_match_data *route_match_data_new(const struct config *cfg);
void route_match_data_free(struct route_match_data *md);

/*
 * route_find: the first route matching the normalised path, the method and
 * the Host (port stripped, compared case-insensitively). Returns the index
 * into cfg->routes, or -404 when no route's path/host matches, or -405 when
 * some route's path/host matches but none allows the method; then *allow
 * is the union METHOD_BIT mask of the routes whose path/host matched.
 * Prefix matching is segment-aware: "/orders" matches "/orders",
 * "/orders/" and "/orders/7" but not "/ordersx".
 */
int route_find(const struct config *cfg, struct route_match_data *md,
    enum http_method method, const char *host, size_t host_len,
    const char *path, size_t path_len, unsigned *allow);

/*
 * route_rewrite: apply the route's rewrite (PCRE2 pattern, "$1".."$9"
 * substitution in rewrite_to) to the normalised path. Writes the result
 * into out; returns its length, 0 when the route has no rewrite or the
 * pattern does not match (use the path as is), -1 when it does not fit.
 */
int route_rewrite(const struct cfg_route *r, struct route_match_data *md,
    const char *path, size_t len, char *out, size_t outcap);

/* route_allow_header: "GET, POST" for a METHOD_BIT mask; returns length. */
size_t route_allow_header(unsigned mask, char *out, size_t outcap);

#endif
