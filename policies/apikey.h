/*
 * apikey: the API keys a gateway accepts, loaded from a keys file, and the
 * lookup of a presented key. The file holds only the SHA-256 of each key,
 * never a key in clear, in libconfig syntax:
 *
 *   keys = (
 *     { sha256 = "64 hex digits"; consumer = "acme"; tier = "paid";
 *       scopes = ["orders:read", "orders:write"]; },
 *     { sha256 = "..."; consumer = "other"; }
 *   );
 *
 * sha256 (any case) and consumer are required; tier and scopes optional.
 * A presented key is hashed and the digest looked up in a table keyed by
 * its first bytes; the full 32-byte digests are compared in constant time
 * (CRYPTO_memcmp), so the time a lookup takes depends only on digests an
 * attacker cannot choose, never on how much of a stored digest matched.
 */
#ifndef PORTICO_APIKEY_H
#define PORTICO_APIKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../master/config.h"

#define APIKEY_DIGEST_LEN	32
#define APIKEY_HEX_LEN		(2 * APIKEY_DIGEST_LEN)
#define APIKEY_MAX_LEN		4096	/* longest key lookup accepts */
#define APIKEY_NAME_MAX		CFG_NAME_MAX	/* consumer, tier */
#define APIKEY_SCOPES_MAX	4096	/* one key's scopes, joined */

/* One accepted key. Strings are NUL-terminated and live as long as the
 * struct apikeys they came from. */
struct apikey {
	uint8_t sha256[APIKEY_DIGEST_LEN];
	const char *consumer;
	size_t consumer_len;
	const char *tier;		/* NULL: none given */
	const char *scopes;		/* joined by single spaces, or NULL */
	size_t scopes_len;
	int line;			/* where the file declares it */
};

struct apikeys;

/*
 * apikey_load: read the keys file FILE into *OUT. Returns 0, or -1 with
 * *OUT NULL and WHY set to "FILE:LINE: reason" (just "FILE: reason" when
 * no line applies: the file cannot be read, no `keys` list, out of
 * memory). Refused: syntax errors, settings other than `keys` at the top
 * and sha256/consumer/tier/scopes in an entry, a sha256 that is not 64
 * hex digits, a sha256 given twice, a missing or empty consumer, a
 * consumer or tier that is longer than APIKEY_NAME_MAX bytes or has bytes
 * outside printable ASCII (or blanks at either end), a scope that is not
 * a token (visible ASCII but '"' and '\'), one listed twice, scopes
 * joining to more than APIKEY_SCOPES_MAX bytes. `keys = ();` is valid
 * (no key is accepted).
 */
int apikey_load(const char *file, struct apikeys **out, char *why,
    size_t whylen);

/*
 * apikey_lookup: the entry whose sha256 is the SHA-256 of KEY[0..LEN), or
 * NULL: no such entry, K is NULL, or the key is one apikey_key_ok refuses
 * (refused before any hashing). Uses a digest context owned by K, so one
 * struct apikeys serves one thread at a time (a worker is one thread).
 */
const struct apikey *apikey_lookup(const struct apikeys *k, const char *key,
    size_t len);

/* apikey_count: how many keys K holds (0 for NULL). */
size_t apikey_count(const struct apikeys *k);

/* apikey_free: K and everything in it; NULL is fine. */
void apikey_free(struct apikeys *k);

/* apikey_key_ok: KEY[0..LEN) is a key lookup considers: 1 to
 * APIKEY_MAX_LEN bytes, each visible ASCII (0x21-0x7e). */
bool apikey_key_ok(const char *key, size_t len);

/* apikey_hex: the lower-case hex SHA-256 of KEY[0..LEN) into HEX
 * (APIKEY_HEX_LEN digits and a NUL). Returns 0, or -1 when the key is one
 * apikey_key_ok refuses or hashing fails. */
int apikey_hex(const char *key, size_t len, char hex[APIKEY_HEX_LEN + 1]);

/* apikey_bad_name, apikey_bad_scope: why S cannot be a consumer or tier
 * (resp. a scope) in a keys file, or NULL when it can. */
const char *apikey_bad_name(const char *s);
const char *apikey_bad_scope(const char *s);

#endif
