/*
 * libFuzzer target for policies/jwt.c (with json.c and jwt_cache.c): the
 * first input byte picks what the rest is, and nothing may crash or read
 * past the input (kept in an exactly-sized heap buffer):
 *
 *   0  a compact token, verified against the unit tests' key set;
 *   1  a header and a claims text (split at the second byte), made into a
 *      token signed with the HS256 fixture secret, so the claim checks
 *      run on whatever the fuzzer writes;
 *   2  a JWK set, each key parsed as jwt_keys_load would.
 *
 * A token that verifies must give a usable identity (a non-empty consumer
 * with no control byte, scopes with single spaces), and a cache put/get
 * of it must give the same identity back.
 *
 * Run from the repository root (test/fuzz/run.sh does): the keys are the
 * fixtures of test/unit/policies/fixtures/jwt/.
 */
#include <stdlib.h>
#include <string.h>

#include "../../policies/arena.c"
#include "../../policies/json.c"
#include "../../policies/jwt.c"
#include "../../policies/jwt_cache.c"

#define FIX	"test/unit/policies/fixtures/jwt/"
#define FNOW	INT64_C(1700000000)

static struct cfg_jwt_key fkeys[] = {
	{ "hs-256", "HS256", FIX "hs256.secret", NULL, 1 },
	{ NULL, "HS384", FIX "hs384.secret", NULL, 2 },
	{ "rs-256", "RS256", NULL, FIX "rsa.pub.pem", 3 },
	{ "ps-256", "PS256", NULL, FIX "rsa2.pub.pem", 4 },
	{ "es-256", "ES256", NULL, FIX "ec256.pub.pem", 5 },
	{ "es-384", "ES384", NULL, FIX "ec384.pub.pem", 6 },
	{ "ed-1", "EdDSA", NULL, FIX "ed25519.pub.pem", 7 },
};
static char *frequire[] = { "sub" };
static struct cfg_auth fau = {
	.jwt_keys = fkeys, .njwt_keys = sizeof(fkeys) / sizeof(fkeys[0]),
	.jwks_file = FIX "jwks.json", .issuer = "https://issuer.example",
	.audience = "portico", .leeway_s = 30, .require = frequire,
	.nrequire = 1, .consumer_claim = "sub", .tier_claim = "tier",
	.scopes_claim = "scope",
};
static struct jwt_keys *fks;
static struct jwt_cache *fcache;
static struct arena_cache facache;
static unsigned char fsecret[256];
static size_t fsecret_len;

static void
check(bool ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char why[512];
	FILE *f;

	(void)argc;
	(void)argv;
	if (jwt_keys_load(&fau, &fks, why, sizeof(why)) < 0) {
		fprintf(stderr, "fuzz_jwt: %s (run from the repository "
		    "root)\n", why);
		exit(1);
	}
	fcache = jwt_cache_new(64);
	f = fopen(FIX "hs256.secret", "rb");
	if (fcache == NULL || f == NULL)
		exit(1);
	fsecret_len = fread(fsecret, 1, sizeof(fsecret), f);
	fclose(f);
	if (fsecret_len > 0 && fsecret[fsecret_len - 1] == '\n')
		fsecret_len--;
	return 0;
}

static size_t
b64url(const uint8_t *p, size_t n, char *o)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, k = 0;
	uint32_t v;

	for (i = 0; i < n; i += 3) {
		v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		o[k++] = al[v >> 18];
		o[k++] = al[(v >> 12) & 63];
		if (i + 1 < n)
			o[k++] = al[(v >> 6) & 63];
		if (i + 2 < n)
			o[k++] = al[v & 63];
	}
	return k;
}

static void
check_identity(const char *tok, size_t len, const struct jwt_result *r,
    struct arena *a)
{
	struct jwt_result c;
	size_t i;

	check(r->consumer != NULL && r->consumer_len > 0 &&
	    strlen(r->consumer) == r->consumer_len);
	check(header_safe(r->consumer, r->consumer_len));
	check(r->scopes != NULL && strlen(r->scopes) == r->scopes_len);
	for (i = 0; i < r->scopes_len; i++)
		check(r->scopes[i] != ' ' || (i > 0 && i + 1 < r->scopes_len &&
		    r->scopes[i - 1] != ' '));
	check(r->tier == NULL || (r->tier_len > 0 &&
	    header_safe(r->tier, r->tier_len)));
	check(!r->has_exp || FNOW < r->valid_until);
	check(jwt_cache_put(fcache, tok, len, FNOW, r) == 0);
	check(jwt_cache_get(fcache, tok, len, FNOW, a, &c) == 0);
	check(strcmp(c.consumer, r->consumer) == 0 &&
	    strcmp(c.scopes, r->scopes) == 0 &&
	    (r->tier == NULL) == (c.tier == NULL) &&
	    (r->tier == NULL || strcmp(c.tier, r->tier) == 0));
}

static void
verify(const char *tok, size_t len, struct arena *a)
{
	struct jwt_result r;
	int rc;

	rc = jwt_verify(fks, &fau, tok, len, FNOW, a, &r);
	check(rc <= 0 && strcmp(jwt_strerror(rc), "internal_error") != 0);
	if (rc == 0)
		check_identity(tok, len, &r, a);
	else
		check(r.consumer == NULL);
}

/* Header and claims texts into a token signed with the HS256 secret. */
static void
signed_token(const uint8_t *d, size_t n, struct arena *a)
{
	size_t split, hl, len;
	char *tok;
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t maclen = 0;

	if (n < 1)
		return;
	split = d[0] < n - 1 ? d[0] : n - 1;
	d++;
	n--;
	tok = malloc((n + 2) * 4 / 3 + 4 + 2 + 64);
	check(tok != NULL);
	hl = b64url(d, split, tok);
	tok[hl] = '.';
	len = hl + 1 + b64url(d + split, n - split, tok + hl + 1);
	check(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, fsecret,
	    fsecret_len, (unsigned char *)tok, len, mac, sizeof(mac),
	    &maclen) != NULL);
	tok[len++] = '.';
	len += b64url(mac, maclen, tok + len);
	/* exactly sized, so an over-read is caught */
	tok = realloc(tok, len);
	check(tok != NULL);
	verify(tok, len, a);
	free(tok);
}

static void
jwks(const uint8_t *d, size_t n, struct arena *a)
{
	static const struct json_limits lim = { JWKS_DEPTH, MAX_KEY_FILE };
	struct json_value root;
	const struct json_value *keys;
	struct key k;
	char why[256];
	size_t i;

	if (json_parse((const char *)d, n, &lim, a, &root, NULL) < 0)
		return;
	keys = json_get(&root, "keys");
	if (keys == NULL || keys->type != JSON_ARRAY)
		return;
	for (i = 0; i < keys->u.arr.n; i++) {
		memset(&k, 0, sizeof(k));
		if (load_jwk(&keys->u.arr.v[i], a, &k, why, sizeof(why)) == 0)
			check(k.alg < NALGS && (k.pkey != NULL) !=
			    (k.secret != NULL));
		key_clear(&k);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena a;
	char *buf;

	if (size < 1)
		return 0;
	buf = malloc(size - 1 ? size - 1 : 1);
	check(buf != NULL);
	memcpy(buf, data + 1, size - 1);
	arena_init(&a, &facache);
	switch (data[0] % 3) {
	case 0:
		verify(buf, size - 1, &a);
		break;
	case 1:
		signed_token((const uint8_t *)buf, size - 1, &a);
		break;
	default:
		jwks((const uint8_t *)buf, size - 1, &a);
		break;
	}
	arena_reset(&a);
	free(buf);
	ERR_clear_error();
	return 0;
}
