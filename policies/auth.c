/*
 * auth: the route's authentication (JWT from `Authorization: Bearer`, an
 * API key from its header, or either) and its scopes. The verified
 * identity goes into the exchange context (x->id: rate limiting, the
 * balancer and later the cache key read it) and upstream in the
 * identity headers. The client's own copies of those headers are dropped
 * by the worker on every route (and names with underscores never pass),
 * so only the gateway ever sets them.
 *
 * Answers: no credential 401 with `WWW-Authenticate: Bearer
 * realm="portico"` (`ApiKey realm="portico"` on API-key-only routes); a
 * credential that fails 401 with `error="invalid_token"` and a JSON body
 * naming the check that failed; an identity without every scope of the
 * route 403 with `error="insufficient_scope"`. Nothing of a credential is
 * ever put in a body or a log.
 *
 * Per worker: the JWT keys and the verified-token cache (so RS256 is paid
 * once per token, not per request) and the API keys, loaded after fork;
 * a reload starts new workers with fresh ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../master/log.h"
#include "apikey.h"
#include "jwt.h"
#include "policy.h"

struct auth_worker {
	struct jwt_keys *keys;		/* NULL without auth.jwt */
	struct jwt_cache *cache;
	struct apikeys *apikeys;	/* NULL without auth.api_keys */
};

struct auth_route {
	const struct config *cfg;
	const struct cfg_route *r;
	struct auth_worker *aw;
};

static void
aw_free(void *wstate)
{
	struct auth_worker *aw = wstate;

	if (aw == NULL)
		return;
	jwt_keys_free(aw->keys);
	jwt_cache_free(aw->cache);
	apikey_free(aw->apikeys);
	free(aw);
}

static int
aw_init(const struct config *cfg, void **wstate)
{
	const struct cfg_auth *au = &cfg->auth;
	struct auth_worker *aw;
	char why[512];

	if (!au->has_jwt && !au->has_api_keys)
		return 0;
	if ((aw = calloc(1, sizeof(*aw))) == NULL)
		return -1;
	if (au->has_jwt) {
		if (jwt_keys_load(au, &aw->keys, why, sizeof(why)) < 0) {
			log_error("auth.jwt: %s", why);
			goto fail;
		}
		if ((aw->cache = jwt_cache_new(0)) == NULL)
			goto fail;
	}
	if (au->has_api_keys &&
	    apikey_load(au->api_keys_file, &aw->apikeys, why, sizeof(why)) <
	    0) {
		log_error("auth.api_keys: %s", why);
		goto fail;
	}
	*wstate = aw;
	return 0;
fail:
	aw_free(aw);
	return -1;
}

static int
auth_init(const struct config *cfg, const struct cfg_route *r, void *wstate,
    void **state)
{
	struct auth_route *ar;

	if (r->auth == AUTH_NONE)
		return 0;
	if (wstate == NULL) {
		log_error("route %s: auth without an auth section", r->name);
		return -1;
	}
	if ((ar = calloc(1, sizeof(*ar))) == NULL)
		return -1;
	ar->cfg = cfg;
	ar->r = r;
	ar->aw = wstate;
	*state = ar;
	return 1;
}

static void
auth_free(void *state)
{
	free(state);
}

/* ---- answers ------------------------------------------------------ */

static int
missing(struct xctx *x, const struct auth_route *ar)
{
	xctx_resp_header(x, "WWW-Authenticate", "%s realm=\"portico\"",
	    ar->r->auth == AUTH_API_KEY ? "ApiKey" : "Bearer");
	return xctx_error(x, 401, "missing_credentials");
}

static int
invalid(struct xctx *x, const struct auth_route *ar, const char *code)
{
	xctx_resp_header(x, "WWW-Authenticate", "%s realm=\"portico\", "
	    "error=\"invalid_token\"", ar->r->auth == AUTH_API_KEY ?
	    "ApiKey" : "Bearer");
	return xctx_error(x, 401, code);
}

/* Whether the space-separated LIST holds the token S. */
static bool
has_scope(const char *list, size_t n, const char *s)
{
	size_t sl = strlen(s), i = 0, j;

	while (i < n) {
		while (i < n && list[i] == ' ')
			i++;
		for (j = i; j < n && list[j] != ' '; j++)
			;
		if (j - i == sl && memcmp(list + i, s, sl) == 0)
			return true;
		i = j;
	}
	return false;
}

/* "NAME: VALUE" in the arena, for the upstream head. */
static int
add_identity(struct xctx *x, const char *name, const char *v, size_t vl)
{
	size_t nl, n;
	char *line;

	if (name == NULL || v == NULL)
		return 0;
	nl = strlen(name);
	n = nl + 2 + vl;
	if ((line = arena_alloc(&x->arena, n + 1)) == NULL)
		return -1;
	memcpy(line, name, nl);
	memcpy(line + nl, ": ", 2);
	memcpy(line + nl + 2, v, vl);
	line[n] = '\0';
	return policy_edit_add(&x->edits, line, n);
}

/* ---- credentials -------------------------------------------------- */

/* The bearer token of an Authorization value, or NULL. */
static const char *
bearer(const struct http1_header *h, size_t *len)
{
	const char *v = h->value;
	size_t n = h->value_len;

	if (n < 7 || !http1_name_eq(v, 6, "bearer", 6) || v[6] != ' ')
		return NULL;
	v += 7;
	n -= 7;
	while (n > 0 && *v == ' ') {
		v++;
		n--;
	}
	*len = n;
	return n > 0 ? v : NULL;
}

/* The exact clock (a vDSO read): a coarse one lags up to a tick behind
 * the turn of a second, and a token made in that second would read as
 * issued in the future. */
static int64_t
wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

/* Verify a bearer token (the cache first). 0, or a JWT_E_* code. */
static int
check_jwt(struct xctx *x, struct auth_worker *aw, const char *tok,
    size_t len)
{
	const struct cfg_auth *au = &x->cfg->auth;
	struct jwt_result r;
	int64_t now = wall_s();
	int rc;

	if (aw->keys == NULL)
		return JWT_E_NO_KEY;
	if (jwt_cache_get(aw->cache, tok, len, now, &x->arena, &r) < 0) {
		rc = jwt_verify(aw->keys, au, tok, len, now, &x->arena, &r);
		if (rc < 0)
			return rc;
		jwt_cache_put(aw->cache, tok, len, now, &r);
	}
	x->id.consumer = r.consumer;
	x->id.consumer_len = r.consumer_len;
	x->id.tier = r.tier;
	x->id.scopes = r.scopes;
	x->id.scopes_len = r.scopes_len;
	return 0;
}

static int
auth_request(struct xctx *x, void *state, void *slot)
{
	const struct auth_route *ar = state;
	const struct cfg_auth *au = &ar->cfg->auth;
	const struct http1_header *authz = NULL, *key = NULL;
	const struct apikey *k;
	const char *tok = NULL;
	size_t tl = 0, i, nauthz = 0, nkey = 0;
	enum auth_mode mode = ar->r->auth;
	int rc;

	(void)slot;
	for (i = 0; i < x->nheaders; i++) {
		const struct http1_header *h = &x->headers[i];
		if (http1_header_is(h, "authorization")) {
			authz = h;
			nauthz++;
		} else if (au->api_key_header != NULL &&
		    http1_name_eq(h->name, h->name_len, au->api_key_header,
		    strlen(au->api_key_header))) {
			key = h;
			nkey++;
		}
	}
	/* Two of a credential header: which one counts is a guess two
	 * parsers could make differently. */
	if (nauthz > 1 || nkey > 1)
		return invalid(x, ar, "ambiguous_credentials");
	if (authz != NULL && mode != AUTH_API_KEY)
		tok = bearer(authz, &tl);
	if (tok != NULL) {
		if ((rc = check_jwt(x, ar->aw, tok, tl)) < 0)
			return invalid(x, ar, jwt_strerror(rc));
	} else if (key != NULL && mode != AUTH_JWT) {
		if ((k = apikey_lookup(ar->aw->apikeys, key->value,
		    key->value_len)) == NULL)
			return invalid(x, ar, "invalid_api_key");
		x->id.consumer = k->consumer;
		x->id.consumer_len = k->consumer_len;
		x->id.tier = k->tier;
		x->id.scopes = k->scopes;
		x->id.scopes_len = k->scopes != NULL ? k->scopes_len : 0;
	} else if (authz != NULL && mode == AUTH_JWT) {
		return invalid(x, ar, "malformed_token");  /* not Bearer */
	} else {
		return missing(x, ar);
	}
	for (i = 0; i < ar->r->nscopes; i++) {
		if (x->id.scopes != NULL && has_scope(x->id.scopes,
		    x->id.scopes_len, ar->r->scopes[i]))
			continue;
		xctx_resp_header(x, "WWW-Authenticate", "Bearer "
		    "realm=\"portico\", error=\"insufficient_scope\", "
		    "scope=\"%s\"", ar->r->scopes[i]);
		return xctx_error(x, 403, "insufficient_scope");
	}
	if (add_identity(x, au->id_consumer, x->id.consumer,
	    x->id.consumer_len) < 0 ||
	    (x->id.tier != NULL && add_identity(x, au->id_tier, x->id.tier,
	    strlen(x->id.tier)) < 0) ||
	    (x->id.scopes != NULL && x->id.scopes_len > 0 &&
	    add_identity(x, au->id_scopes, x->id.scopes, x->id.scopes_len) <
	    0))
		return xctx_error(x, 503, "out_of_memory");
	if (!ar->r->auth_forward &&
	    policy_edit_remove(&x->edits, "Authorization", 13) < 0)
		return xctx_error(x, 500, "too_many_header_edits");
	return POLICY_CONTINUE;
}

const struct policy policy_auth = {
	.name = "auth",
	.worker_init = aw_init,
	.worker_free = aw_free,
	.init = auth_init,
	.free = auth_free,
	.on_request = auth_request,
};
