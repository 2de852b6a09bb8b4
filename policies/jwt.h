/*
 * jwt: JSON Web Token verification (RFC 7519, 7515, 7518, 8037) for the
 * auth policy: the keys of `auth.jwt` and its JWK set, one token's
 * signature and claims, and a per-worker cache of tokens already verified.
 *
 * Only the compact serialization, only the algorithms of RFC 7518 that
 * sign (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384) and EdDSA
 * with Ed25519. Every key is pinned to one algorithm when it is loaded,
 * and a token is checked only with a key pinned to the token's own `alg`,
 * so "alg": "none" and an HMAC token keyed with an RSA public key's bytes
 * never pass.
 *
 * Errors are short stable codes (jwt_strerror) meant for the JSON body of
 * a 401 and for logs; nothing of the token is ever put in them.
 */
#ifndef PORTICO_JWT_H
#define PORTICO_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../master/config.h"
#include "arena.h"

#define JWT_MAX_TOKEN	8192	/* longest compact token accepted */
#define JWT_MAX_DEPTH	16	/* JSON nesting in a header or claims */
#define JWT_CACHE_SIZE	4096	/* default cache entries */
#define JWT_CACHE_MAX_AGE 300	/* seconds a token without exp is cached */

/* jwt_verify errors (negative); jwt_strerror gives the code's name. */
enum jwt_err {
	JWT_OK = 0,
	JWT_E_MALFORMED = -1,	/* "malformed_token": form, encoding, JSON */
	JWT_E_TOO_LARGE = -2,	/* "token_too_large": over JWT_MAX_TOKEN */
	JWT_E_ALG = -3,		/* "unsupported_alg": none, unknown */
	JWT_E_CRIT = -4,	/* "unknown_crit": any crit header */
	JWT_E_UNKNOWN_KID = -5,	/* "unknown_kid": no key has the kid */
	JWT_E_NO_KEY = -6,	/* "no_matching_key": no kid, no key of alg */
	JWT_E_AMBIGUOUS = -7,	/* "ambiguous_key": no kid, several keys */
	JWT_E_ALG_MISMATCH = -8,/* "alg_mismatch": kid's key pinned elsewhere */
	JWT_E_SIGNATURE = -9,	/* "bad_signature" */
	JWT_E_EXPIRED = -10,	/* "token_expired" */
	JWT_E_NBF = -11,	/* "token_not_yet_valid" */
	JWT_E_IAT = -12,	/* "token_issued_in_future" */
	JWT_E_ISSUER = -13,	/* "wrong_issuer": iss missing or other */
	JWT_E_AUDIENCE = -14,	/* "wrong_audience": aud without ours */
	JWT_E_MISSING = -15,	/* "missing_claim": required or consumer */
	JWT_E_CLAIM = -16,	/* "invalid_claim": a claim of the wrong type,
				 * or an identity claim with control bytes */
	JWT_E_INTERNAL = -17,	/* "internal_error": no memory, OpenSSL */
};

/* The identity a token proves (strings NUL-ended, in the caller's arena;
 * none holds a control byte, so each is safe as a header value). */
struct jwt_result {
	const char *consumer;		/* never empty */
	size_t consumer_len;
	const char *tier;		/* NULL when the token has none */
	size_t tier_len;
	const char *scopes;		/* one space between; "" if none */
	size_t scopes_len;
	bool has_exp;
	int64_t exp;			/* the exp claim, floored */
	int64_t valid_until;		/* first second refused: exp +
					 * leeway, INT64_MAX without exp */
};

struct jwt_keys;

/*
 * jwt_keys_load: every key of AU (auth.jwt.keys, then auth.jwt.jwks_file).
 * Returns 0 with *out set, or -1 with a reason in WHY that names the file
 * and, for a key of the configuration, starts with its line as "LINE: "
 * (the caller puts the configuration's name in front: "conf:LINE: ...").
 * A key is refused when its file cannot be read, does not hold a key,
 * holds a key that does not fit its alg (an RSA key of at least 2048 bits
 * for RS and PS, a P-256 key for ES256, P-384 for ES384, Ed25519 for
 * EdDSA, a non-empty secret for HS), or repeats a kid; a JWK also when its
 * kty is unknown or it does not name its alg. JWKs whose `use` is not
 * "sig" are skipped. Having no key at all is refused.
 */
int jwt_keys_load(const struct cfg_auth *au, struct jwt_keys **out,
    char *why, size_t whylen);
void jwt_keys_free(struct jwt_keys *k);
/* jwt_keys_count: how many keys were loaded (gwctl, logs). */
size_t jwt_keys_count(const struct jwt_keys *k);

/*
 * jwt_verify: TOK[0..len) (the bearer credential, nothing around it) at
 * time NOW_S against K and the claim rules of AU. Returns 0 with *out
 * filled (strings from A), or a JWT_E_* code. JSON trees are built in A
 * too, so the arena grows by a few times the token's length.
 */
int jwt_verify(const struct jwt_keys *k, const struct cfg_auth *au,
    const char *tok, size_t len, int64_t now_s, struct arena *a,
    struct jwt_result *out);

/* jwt_strerror: the stable code of a JWT_E_* value ("bad_signature"). */
const char *jwt_strerror(int err);

/*
 * The verified-token cache of one worker: a bounded LRU found by a seeded
 * hash of the whole token and confirmed by the token itself (every byte
 * compared, in constant time: a hash never answers alone), holding the result
 * of jwt_verify until the token's valid_until (at most JWT_CACHE_MAX_AGE
 * seconds for a token without exp). Only tokens that verified go in, so a
 * hit is exactly what jwt_verify would say again, until the keys change:
 * clear it then (a new worker generation builds a new one anyway).
 */
struct jwt_cache;

/* jwt_cache_new: an empty cache of CAP entries (0: JWT_CACHE_SIZE), or
 * NULL when out of memory. */
struct jwt_cache *jwt_cache_new(size_t cap);
void jwt_cache_free(struct jwt_cache *c);
/* jwt_cache_get: 0 with *out filled (copies in A) when TOK is cached and
 * still valid at NOW_S (the entry becomes the most recent); -1 when not
 * (an expired entry is dropped), or when A is out of memory. */
int jwt_cache_get(struct jwt_cache *c, const char *tok, size_t len,
    int64_t now_s, struct arena *a, struct jwt_result *out);
/* jwt_cache_put: remember R (from jwt_verify of TOK), evicting the least
 * recently used entry when full. 0, or -1 when out of memory (nothing is
 * cached then). */
int jwt_cache_put(struct jwt_cache *c, const char *tok, size_t len,
    int64_t now_s, const struct jwt_result *r);
/* jwt_cache_clear: drop every entry. */
void jwt_cache_clear(struct jwt_cache *c);
/* jwt_cache_count: entries held. */
size_t jwt_cache_count(const struct jwt_cache *c);

#endif
