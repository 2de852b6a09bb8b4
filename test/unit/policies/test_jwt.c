/*
 * JWT verification against tokens, keys and JWK sets made by the openssl
 * command line (fixtures/make-jwt-fixtures.sh): every algorithm, every
 * refusal, JWK set parsing, config key errors with their line; the
 * verified-token cache (LRU order, expiry, full-hash compare); and
 * `gwctl token` output verified by jwt_verify for each algorithm.
 *
 * Tokens are verified from the end of a buffer followed by a PROT_NONE
 * page, so any read past the token crashes the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../policies/jwt.c"
#include "../../../policies/jwt_cache.c"
#include "../../../tools/gwctl_token.c"

#define FIX	"test/unit/policies/fixtures/jwt/"
#define NOW	INT64_C(1700000000)	/* the fixtures' time */
#define ISS	"https://issuer.example"

/* ---- fixtures ------------------------------------------------------------ */

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* A copy of s[0..n) that ends where an inaccessible page starts. */
struct guarded {
	char *map;
	size_t maplen;
	char *p;
};

static void
guard(struct guarded *g, const char *s, size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (n + pg - 1) / pg + 1;

	g->maplen = pages * pg;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->map != MAP_FAILED);
	assert_int_equal(mprotect(g->map + (pages - 1) * pg, pg, PROT_NONE), 0);
	g->p = g->map + (pages - 1) * pg - n;
	memcpy(g->p, s, n);
}

static void
unguard(struct guarded *g)
{
	munmap(g->map, g->maplen);
}

static char *req_exp[] = { "exp" };

static struct cfg_jwt_key cfg_keys[] = {
	{ "hs-256", "HS256", FIX "hs256.secret", NULL, 11 },
	{ "hs-384", "HS384", FIX "hs384.secret", NULL, 12 },
	{ "hs-512", "HS512", FIX "hs512.secret", NULL, 13 },
	{ "rs-256", "RS256", NULL, FIX "rsa.pub.pem", 14 },
	{ "rs-384", "RS384", NULL, FIX "rsa.pub.pem", 15 },
	{ NULL, "RS512", NULL, FIX "rsa.pub.pem", 16 },
	{ "ps-256", "PS256", NULL, FIX "rsa2.pub.pem", 17 },
	{ "ps-384", "PS384", NULL, FIX "rsa2.pub.pem", 18 },
	{ "ps-512", "PS512", NULL, FIX "rsa2.pub.pem", 19 },
	{ "es-256", "ES256", NULL, FIX "ec256.pub.pem", 20 },
	{ "es-384", "ES384", NULL, FIX "ec384.pub.pem", 21 },
	{ "ed-1", "EdDSA", NULL, FIX "ed25519.pub.pem", 22 },
};
#define NCFG_KEYS	(sizeof(cfg_keys) / sizeof(cfg_keys[0]))

static struct cfg_jwt_key rs_only[] = {
	{ NULL, "RS256", NULL, FIX "rsa.pub.pem", 5 },
};

/* The configurations expect.txt names. */
static struct profile {
	const char *name;
	struct cfg_auth au;
	struct jwt_keys *keys;
} profiles[] = {
	{ "std", { .jwt_keys = cfg_keys, .njwt_keys = NCFG_KEYS,
	    .jwks_file = FIX "jwks.json", .issuer = ISS, .audience = "portico",
	    .leeway_s = 30, .require = req_exp, .nrequire = 1,
	    .consumer_claim = "sub", .tier_claim = "tier",
	    .scopes_claim = "scope" }, NULL },
	{ "strict", { .jwt_keys = cfg_keys, .njwt_keys = NCFG_KEYS,
	    .jwks_file = FIX "jwks.json", .issuer = ISS, .audience = "portico",
	    .leeway_s = 0, .require = req_exp, .nrequire = 1,
	    .consumer_claim = "sub", .tier_claim = "tier",
	    .scopes_claim = "scope" }, NULL },
	{ "open", { .jwt_keys = cfg_keys, .njwt_keys = NCFG_KEYS,
	    .jwks_file = FIX "jwks.json", .leeway_s = 30,
	    .consumer_claim = "sub", .tier_claim = "tier",
	    .scopes_claim = "scope" }, NULL },
	{ "rsonly", { .jwt_keys = rs_only, .njwt_keys = 1, .leeway_s = 30,
	    .consumer_claim = "sub", .tier_claim = "tier",
	    .scopes_claim = "scope" }, NULL },
	{ "alt", { .jwt_keys = cfg_keys, .njwt_keys = NCFG_KEYS,
	    .jwks_file = FIX "jwks.json", .leeway_s = 30,
	    .consumer_claim = "client_id", .tier_claim = "plan",
	    .scopes_claim = "scp" }, NULL },
};
#define NPROFILES	(sizeof(profiles) / sizeof(profiles[0]))

static struct profile *
profile(const char *name)
{
	size_t i;
	char why[512];

	for (i = 0; i < NPROFILES; i++) {
		if (strcmp(profiles[i].name, name) != 0)
			continue;
		if (profiles[i].keys == NULL &&
		    jwt_keys_load(&profiles[i].au, &profiles[i].keys, why,
		    sizeof(why)) < 0)
			fail_msg("profile %s: %s", name, why);
		return &profiles[i];
	}
	fail_msg("no profile %s", name);
	return NULL;
}

static int
teardown_profiles(void **st)
{
	size_t i;

	(void)st;
	for (i = 0; i < NPROFILES; i++) {
		jwt_keys_free(profiles[i].keys);
		profiles[i].keys = NULL;
	}
	return 0;
}

static struct arena_cache acache;

/* Verify the fixture token NAME with profile PROF at NOW (guarded). */
static int
verify_fixture(const char *name, const char *prof, struct arena *a,
    struct jwt_result *r)
{
	char path[256];
	char *tok;
	size_t len;
	struct guarded g;
	struct profile *p = profile(prof);
	int rc;

	snprintf(path, sizeof(path), FIX "tokens/%s.jwt", name);
	tok = slurp(path, &len);
	guard(&g, tok, len);
	rc = jwt_verify(p->keys, &p->au, g.p, len, NOW, a, r);
	unguard(&g);
	free(tok);
	return rc;
}

/* ---- every fixture token ------------------------------------------------- */

static void
t_fixture_expectations(void **st)
{
	char *text, *line, *save = NULL;
	char name[128], prof[32], want[64];
	const char *got;
	size_t len, n = 0, bad = 0;
	struct arena a;
	struct jwt_result r;
	int rc;

	(void)st;
	text = slurp(FIX "expect.txt", &len);
	arena_init(&a, &acache);
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (sscanf(line, "%127s %31s %63s", name, prof, want) != 3)
			fail_msg("expect.txt: bad line '%s'", line);
		rc = verify_fixture(name, prof, &a, &r);
		n++;
		got = rc == 0 ? "ok" : jwt_strerror(rc);
		if (strcmp(got, want) != 0) {
			print_error("%s (%s): want %s, got %s\n", name, prof,
			    want, got);
			bad++;
		} else if (rc == 0 && strcmp(prof, "alt") != 0 &&
		    strcmp(r.consumer, "alice") != 0 &&
		    strcmp(r.consumer, "z\xc3\xbcrich") != 0) {
			print_error("%s (%s): consumer '%s'\n", name, prof,
			    r.consumer);
			bad++;
		} else if (rc != 0 && r.consumer != NULL) {
			print_error("%s (%s): a refusal with a result\n", name,
			    prof);
			bad++;
		}
		arena_reset(&a);
	}
	free(text);
	assert_true(n >= 150);
	assert_int_equal(bad, 0);
}

/* ---- results ------------------------------------------------------------- */

static void
t_result_fields(void **st)
{
	struct arena a;
	struct jwt_result r;

	(void)st;
	arena_init(&a, &acache);
	assert_int_equal(verify_fixture("rs256", "std", &a, &r), 0);
	assert_string_equal(r.consumer, "alice");
	assert_int_equal(r.consumer_len, 5);
	assert_string_equal(r.tier, "gold");
	assert_int_equal(r.tier_len, 4);
	assert_string_equal(r.scopes, "orders:read orders:write");
	assert_int_equal(r.scopes_len, strlen(r.scopes));
	assert_true(r.has_exp);
	assert_int_equal(r.exp, NOW + 3600);
	assert_int_equal(r.valid_until, NOW + 3630);

	assert_int_equal(verify_fixture("scope-array", "std", &a, &r), 0);
	assert_string_equal(r.scopes, "orders:read orders:write");
	assert_int_equal(verify_fixture("scope-spaces", "std", &a, &r), 0);
	assert_string_equal(r.scopes, "orders:read orders:write");
	assert_int_equal(verify_fixture("scope-empty", "std", &a, &r), 0);
	assert_string_equal(r.scopes, "");
	assert_int_equal(verify_fixture("scope-missing", "std", &a, &r), 0);
	assert_string_equal(r.scopes, "");
	assert_int_equal(r.scopes_len, 0);
	assert_int_equal(verify_fixture("tier-missing", "std", &a, &r), 0);
	assert_null(r.tier);
	assert_int_equal(verify_fixture("sub-utf8", "std", &a, &r), 0);
	assert_string_equal(r.consumer, "z\xc3\xbcrich");
	assert_int_equal(verify_fixture("alt-claims", "alt", &a, &r), 0);
	assert_string_equal(r.consumer, "svc-7");
	assert_string_equal(r.tier, "free");
	assert_string_equal(r.scopes, "a b");
	assert_int_equal(r.exp, NOW + 60);

	/* a fraction is floored; a huge exp is clamped, not wrapped */
	assert_int_equal(verify_fixture("exp-fraction", "std", &a, &r), 0);
	assert_int_equal(r.exp, NOW + 3600);
	assert_int_equal(verify_fixture("exp-exponent", "std", &a, &r), 0);
	assert_int_equal(r.exp, NOW + 3600);
	assert_int_equal(verify_fixture("exp-huge", "std", &a, &r), 0);
	assert_true(r.exp > NOW && r.valid_until > r.exp);
	assert_int_equal(verify_fixture("exp-bigint", "std", &a, &r), 0);
	assert_true(r.exp > NOW);
	assert_int_equal(verify_fixture("exp-missing", "open", &a, &r), 0);
	assert_false(r.has_exp);
	assert_int_equal(r.valid_until, INT64_MAX);
	arena_reset(&a);
}

static void
t_time_boundaries(void **st)
{
	struct profile *p = profile("strict");
	struct arena a;
	struct jwt_result r;
	char *tok;
	size_t len;

	(void)st;
	arena_init(&a, &acache);
	/* exp is the first second refused, with no leeway */
	tok = slurp(FIX "tokens/hs256.jwt", &len);
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, len, NOW + 3599, &a,
	    &r), 0);
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, len, NOW + 3600, &a,
	    &r), JWT_E_EXPIRED);
	/* nbf and iat (NOW - 60) */
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, len, NOW - 60, &a,
	    &r), 0);
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, len, NOW - 61, &a,
	    &r), JWT_E_NBF);
	/* with the leeway of std */
	p = profile("std");
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, len, NOW + 3629, &a,
	    &r), 0);
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, len, NOW + 3630, &a,
	    &r), JWT_E_EXPIRED);
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, len, NOW - 90, &a,
	    &r), 0);
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, len, NOW - 91, &a,
	    &r), JWT_E_NBF);
	free(tok);
	arena_reset(&a);
}

/* NumericDate values: integers exactly, fractions floored (also below
 * zero), values past +-2^62 clamped, anything but a number refused. */
static void
t_numeric_dates(void **st)
{
	static const struct {
		const char *json;
		int rc;
		int64_t t;
	} c[] = {
		{ "{\"exp\":1700000000}", 0, 1700000000 },
		{ "{\"exp\":1.5}", 0, 1 },
		{ "{\"exp\":-1.5}", 0, -2 },
		{ "{\"exp\":-2}", 0, -2 },
		{ "{\"exp\":-0.0}", 0, 0 },
		{ "{\"exp\":1e300}", 0, INT64_C(4611686018427387904) },
		{ "{\"exp\":-1e300}", 0, -INT64_C(4611686018427387904) },
		/* past a double's range: json_number refuses it */
		{ "{\"exp\":1e999}", JWT_E_CLAIM, 0 },
		{ "{\"exp\":9223372036854775807}", 0, INT64_MAX },
		{ "{\"exp\":\"1\"}", JWT_E_CLAIM, 0 },
		{ "{\"exp\":null}", JWT_E_CLAIM, 0 },
		{ "{\"exp\":[1]}", JWT_E_CLAIM, 0 },
		{ "{}", 1, 0 },
	};
	static const struct json_limits lim = { 4, 1024 };
	struct json_value v;
	struct arena a;
	int64_t t;
	size_t i;

	(void)st;
	arena_init(&a, &acache);
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		assert_int_equal(json_parse(c[i].json, strlen(c[i].json), &lim,
		    &a, &v, NULL), 0);
		t = 0;
		assert_int_equal(numeric_date(&v, "exp", &t), c[i].rc);
		if (c[i].rc == 0 && t != c[i].t)
			fail_msg("%s: %" PRId64, c[i].json, t);
	}
	arena_reset(&a);
}

static void
t_error_codes_are_stable(void **st)
{
	(void)st;
	assert_string_equal(jwt_strerror(JWT_E_MALFORMED), "malformed_token");
	assert_string_equal(jwt_strerror(JWT_E_TOO_LARGE), "token_too_large");
	assert_string_equal(jwt_strerror(JWT_E_ALG), "unsupported_alg");
	assert_string_equal(jwt_strerror(JWT_E_CRIT), "unknown_crit");
	assert_string_equal(jwt_strerror(JWT_E_UNKNOWN_KID), "unknown_kid");
	assert_string_equal(jwt_strerror(JWT_E_NO_KEY), "no_matching_key");
	assert_string_equal(jwt_strerror(JWT_E_AMBIGUOUS), "ambiguous_key");
	assert_string_equal(jwt_strerror(JWT_E_ALG_MISMATCH), "alg_mismatch");
	assert_string_equal(jwt_strerror(JWT_E_SIGNATURE), "bad_signature");
	assert_string_equal(jwt_strerror(JWT_E_EXPIRED), "token_expired");
	assert_string_equal(jwt_strerror(JWT_E_NBF), "token_not_yet_valid");
	assert_string_equal(jwt_strerror(JWT_E_IAT), "token_issued_in_future");
	assert_string_equal(jwt_strerror(JWT_E_ISSUER), "wrong_issuer");
	assert_string_equal(jwt_strerror(JWT_E_AUDIENCE), "wrong_audience");
	assert_string_equal(jwt_strerror(JWT_E_MISSING), "missing_claim");
	assert_string_equal(jwt_strerror(JWT_E_CLAIM), "invalid_claim");
	assert_string_equal(jwt_strerror(JWT_E_INTERNAL), "internal_error");
	assert_string_equal(jwt_strerror(-99), "internal_error");
}

/* Huge inputs are refused by length before anything reads them. */
static void
t_too_large_not_read(void **st)
{
	struct profile *p = profile("std");
	struct arena a;
	struct jwt_result r;
	char *big = malloc(100000);

	(void)st;
	assert_non_null(big);
	memset(big, 'A', 100000);
	arena_init(&a, &acache);
	assert_int_equal(jwt_verify(p->keys, &p->au, big, 100000, NOW, &a, &r),
	    JWT_E_TOO_LARGE);
	assert_int_equal(jwt_verify(p->keys, &p->au, big, 8193, NOW, &a, &r),
	    JWT_E_TOO_LARGE);
	assert_int_equal(a.used, 0);
	free(big);
	arena_reset(&a);
}

/* ---- keys ---------------------------------------------------------------- */

static void
t_keys_load_counts(void **st)
{
	struct profile *p = profile("std");

	(void)st;
	/* 12 of the configuration, 6 of the JWK set (2 for encryption) */
	assert_int_equal(jwt_keys_count(p->keys), 18);
	assert_int_equal(jwt_keys_count(profile("rsonly")->keys), 1);
}

static void
load_fails(struct cfg_auth *au, const char *want1, const char *want2)
{
	struct jwt_keys *k = (struct jwt_keys *)1;
	char why[512];

	why[0] = '\0';
	assert_int_equal(jwt_keys_load(au, &k, why, sizeof(why)), -1);
	assert_null(k);
	if (strstr(why, want1) == NULL ||
	    (want2 != NULL && strstr(why, want2) == NULL))
		fail_msg("reason '%s' lacks '%s' / '%s'", why, want1,
		    want2 ? want2 : "");
}

static void
t_config_key_errors(void **st)
{
	static const struct {
		const char *alg, *secret, *pub, *want;
		bool names_file;
	} c[] = {
		{ "HS256", FIX "nope.secret", NULL, "No such file", true },
		{ "HS256", FIX "empty.secret", NULL, "the secret is empty",
		    true },
		{ "HS256", NULL, FIX "rsa.pub.pem", "needs 'secret_file'",
		    false },
		{ "RS256", NULL, NULL, "needs 'public_key'", false },
		{ "RS256", NULL, FIX "garbage.pem", "not a PEM public key "
		    "(OpenSSL: ", true },
		{ "RS256", NULL, FIX "hs256.secret", "not a PEM public key",
		    true },
		{ "RS256", NULL, FIX "rsa1024.pub.pem", "1024 bits is too "
		    "short", true },
		{ "PS256", NULL, FIX "rsa1024.pub.pem", "too short for PS256",
		    true },
		{ "RS256", NULL, FIX "ec256.pub.pem", "EC does not fit RS256",
		    true },
		{ "ES256", NULL, FIX "ec384.pub.pem", "on secp384r1 does not "
		    "fit ES256 (it needs P-256)", true },
		{ "ES384", NULL, FIX "ec256.pub.pem", "does not fit ES384",
		    true },
		{ "ES256", NULL, FIX "rsa.pub.pem", "RSA does not fit ES256",
		    true },
		{ "EdDSA", NULL, FIX "rsa.pub.pem", "RSA does not fit EdDSA",
		    true },
		{ "EdDSA", NULL, FIX "x25519.pub.pem", "X25519 does not fit",
		    true },
		{ "PS384", NULL, FIX "ed25519.pub.pem", "ED25519 does not fit",
		    true },
		{ "HS999", FIX "hs256.secret", NULL, "not supported", false },
		{ "RS256", NULL, FIX, "not a regular file", true },
	};
	struct cfg_jwt_key k[2] = {
		{ "fine", "HS256", FIX "hs256.secret", NULL, 3 },
	};
	struct cfg_auth au = { .jwt_keys = k, .njwt_keys = 2 };
	char want[64];
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		k[1] = (struct cfg_jwt_key){ "k", (char *)c[i].alg,
		    (char *)c[i].secret, (char *)c[i].pub, 40 + (int)i };
		/* the line first, for "FILE:LINE: ..."; then the key file */
		snprintf(want, sizeof(want), "%d: ", 40 + (int)i);
		load_fails(&au, want, c[i].want);
		if (c[i].names_file)
			load_fails(&au, c[i].secret ? c[i].secret : c[i].pub,
			    NULL);
	}
	/* a kid twice, within the config and across config and JWK set */
	k[1] = (struct cfg_jwt_key){ "fine", "HS384", FIX "hs384.secret", NULL,
	    9 };
	load_fails(&au, "9: kid 'fine': kid is used twice", NULL);
	k[1].kid = "jwk-rsa";
	au.jwks_file = FIX "jwks.json";
	load_fails(&au, FIX "jwks.json: key #1 (kid \"jwk-rsa\"): kid is used "
	    "twice", NULL);
	/* a file over the bound is not read */
	{
		char big[] = "/tmp/test_jwt_big.XXXXXX";
		int fd = mkstemp(big);

		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 1024 * 1024 + 1), 0);
		close(fd);
		k[1] = (struct cfg_jwt_key){ "k", "HS256", big, NULL, 8 };
		au.jwks_file = NULL;
		load_fails(&au, "8: /tmp/test_jwt_big.", "larger than 1 MiB");
		unlink(big);
	}
	/* nothing at all */
	au = (struct cfg_auth){ 0 };
	load_fails(&au, "has no key", NULL);
	au.jwks_file = FIX "nope.json";
	load_fails(&au, FIX "nope.json: No such file", NULL);
}

static void
t_jwks_refusals(void **st)
{
	char *text, *line, *save = NULL, *bar;
	char file[256];
	size_t len, n = 0;
	struct cfg_auth au = { 0 };

	(void)st;
	text = slurp(FIX "jwks-expect.txt", &len);
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		bar = strchr(line, '|');
		assert_non_null(bar);
		*bar = '\0';
		snprintf(file, sizeof(file), FIX "%s", line);
		au.jwks_file = file;
		load_fails(&au, file, bar + 1);
		n++;
	}
	free(text);
	assert_true(n >= 20);
}

/* A JWK set that is fine: each kind verifies its own token (fixtures),
 * keys for encryption are skipped even when unparseable, and a token
 * naming a skipped key's kid is refused as unknown. */
static void
t_jwks_skips_encryption_keys(void **st)
{
	struct profile *p = profile("open");
	struct arena a;
	struct jwt_result r;
	const struct key *k;
	size_t i;
	bool enc = false;

	(void)st;
	for (i = 0; i < p->keys->n; i++) {
		k = &p->keys->v[i];
		if (k->kid != NULL && strcmp(k->kid, "jwk-enc") == 0)
			enc = true;
	}
	assert_false(enc);
	arena_init(&a, &acache);
	assert_int_equal(verify_fixture("jwk-rs256", "open", &a, &r), 0);
	arena_reset(&a);
}

/* ---- the cache ----------------------------------------------------------- */

static struct jwt_result
result(const char *consumer, const char *tier, const char *scopes,
    bool has_exp, int64_t until)
{
	struct jwt_result r = { 0 };

	r.consumer = consumer;
	r.consumer_len = strlen(consumer);
	r.tier = tier;
	r.tier_len = tier ? strlen(tier) : 0;
	r.scopes = scopes;
	r.scopes_len = strlen(scopes);
	r.has_exp = has_exp;
	r.exp = until;
	r.valid_until = has_exp ? until : INT64_MAX;
	return r;
}

static bool
cached(struct jwt_cache *c, const char *tok, int64_t now, const char *who)
{
	struct arena a;
	struct jwt_result r;
	bool hit;

	arena_init(&a, &acache);
	hit = jwt_cache_get(c, tok, strlen(tok), now, &a, &r) == 0;
	if (hit && who != NULL)
		assert_string_equal(r.consumer, who);
	arena_reset(&a);
	return hit;
}

static void
t_cache_hit_copies_into_arena(void **st)
{
	struct jwt_cache *c = jwt_cache_new(8);
	struct jwt_result in = result("alice", "gold", "a b", true, NOW + 60);
	struct jwt_result out;
	struct arena a;

	(void)st;
	assert_non_null(c);
	assert_int_equal(jwt_cache_put(c, "tok-1", 5, NOW, &in), 0);
	assert_int_equal(jwt_cache_count(c), 1);
	arena_init(&a, &acache);
	assert_int_equal(jwt_cache_get(c, "tok-1", 5, NOW, &a, &out), 0);
	assert_string_equal(out.consumer, "alice");
	assert_string_equal(out.tier, "gold");
	assert_string_equal(out.scopes, "a b");
	assert_int_equal(out.exp, NOW + 60);
	/* copies in the arena: an eviction cannot pull them from under a
	 * request that still uses them */
	assert_ptr_not_equal(out.consumer, c->e[0].r.consumer);
	assert_true(a.used > 0);
	arena_reset(&a);
	/* another token, even a prefix or one byte more, misses */
	assert_false(cached(c, "tok-", NOW, NULL));
	assert_false(cached(c, "tok-1 ", NOW, NULL));
	assert_false(cached(c, "tok-2", NOW, NULL));
	/* no tier: NULL again */
	in = result("bob", NULL, "", true, NOW + 60);
	assert_int_equal(jwt_cache_put(c, "tok-2", 5, NOW, &in), 0);
	arena_init(&a, &acache);
	assert_int_equal(jwt_cache_get(c, "tok-2", 5, NOW, &a, &out), 0);
	assert_null(out.tier);
	assert_string_equal(out.scopes, "");
	arena_reset(&a);
	/* putting a token again replaces it */
	in = result("carol", NULL, "", true, NOW + 60);
	assert_int_equal(jwt_cache_put(c, "tok-2", 5, NOW, &in), 0);
	assert_int_equal(jwt_cache_count(c), 2);
	assert_true(cached(c, "tok-2", NOW, "carol"));
	jwt_cache_free(c);
}

static void
t_cache_expiry(void **st)
{
	struct jwt_cache *c = jwt_cache_new(8);
	struct jwt_result r = result("alice", NULL, "", true, NOW + 10);

	(void)st;
	assert_int_equal(jwt_cache_put(c, "t", 1, NOW, &r), 0);
	assert_true(cached(c, "t", NOW + 9, "alice"));
	/* valid_until is the first second refused; the entry is dropped */
	assert_false(cached(c, "t", NOW + 10, NULL));
	assert_int_equal(jwt_cache_count(c), 0);
	assert_false(cached(c, "t", NOW, NULL));

	/* without exp: at most JWT_CACHE_MAX_AGE from the put */
	r = result("bob", NULL, "", false, 0);
	assert_int_equal(jwt_cache_put(c, "u", 1, NOW, &r), 0);
	assert_true(cached(c, "u", NOW + JWT_CACHE_MAX_AGE - 1, "bob"));
	assert_false(cached(c, "u", NOW + JWT_CACHE_MAX_AGE, NULL));
	jwt_cache_free(c);
}

static void
t_cache_lru_order(void **st)
{
	struct jwt_cache *c = jwt_cache_new(3);
	struct jwt_result r = result("x", NULL, "", true, NOW + 100);

	(void)st;
	assert_int_equal(jwt_cache_put(c, "A", 1, NOW, &r), 0);
	assert_int_equal(jwt_cache_put(c, "B", 1, NOW, &r), 0);
	assert_int_equal(jwt_cache_put(c, "C", 1, NOW, &r), 0);
	assert_true(cached(c, "A", NOW, NULL));	/* A is now the newest */
	assert_int_equal(jwt_cache_put(c, "D", 1, NOW, &r), 0);
	assert_int_equal(jwt_cache_count(c), 3);
	assert_false(cached(c, "B", NOW, NULL));	/* the oldest went */
	assert_true(cached(c, "C", NOW, NULL));
	assert_true(cached(c, "A", NOW, NULL));
	assert_true(cached(c, "D", NOW, NULL));
	/* order now C, A, D (oldest first): E evicts C, F evicts A */
	assert_int_equal(jwt_cache_put(c, "E", 1, NOW, &r), 0);
	assert_false(cached(c, "C", NOW, NULL));
	assert_int_equal(jwt_cache_put(c, "F", 1, NOW, &r), 0);
	assert_false(cached(c, "A", NOW, NULL));
	assert_true(cached(c, "D", NOW, NULL));
	assert_true(cached(c, "E", NOW, NULL));
	assert_true(cached(c, "F", NOW, NULL));
	jwt_cache_clear(c);
	assert_int_equal(jwt_cache_count(c), 0);
	assert_false(cached(c, "D", NOW, NULL));
	/* usable after a clear */
	assert_int_equal(jwt_cache_put(c, "G", 1, NOW, &r), 0);
	assert_true(cached(c, "G", NOW, NULL));
	jwt_cache_free(c);
}

/* The hash only finds the chain: a token that shares another's whole
 * hash (forced here) is a miss until it is put itself, never the other's
 * identity, and then each answers with its own; hashes that differ but
 * share a bucket are apart too, and unlinking one from the middle of the
 * chain keeps the others reachable. */
static void
t_cache_collision_never_answers_for_another(void **st)
{
	struct jwt_cache *c = jwt_cache_new(8);
	struct jwt_result r1 = result("one", NULL, "", true, NOW + 10);
	struct jwt_result r2 = result("two", NULL, "", true, NOW + 100);
	struct jwt_result r3 = result("three", NULL, "", true, NOW + 100);
	struct jwt_result out;
	const uint64_t h = 0x5a5a5a5a5a5a5a5aull;
	const uint64_t h3 = h ^ (1ull << 63);	/* same bucket, other hash */
	const char *t1 = "eyJ.token-one.sig", *t2 = "eyJ.token-two.sig";
	const char *t3 = "eyJ.token-333.sig";
	size_t n = strlen(t1);
	struct arena a;

	(void)st;
	assert_int_equal(strlen(t2), n);
	assert_int_equal(bucket_of(c, h), bucket_of(c, h3));
	arena_init(&a, &acache);
	assert_int_equal(cache_put_hash(c, h, t1, n, NOW, &r1), 0);
	/* same hash, same length, other bytes: a miss */
	assert_int_equal(cache_get_hash(c, h, t2, n, NOW, &a, &out), -1);
	/* a prefix of the cached token under its hash: a miss */
	assert_int_equal(cache_get_hash(c, h, t1, n - 1, NOW, &a, &out), -1);
	/* the cached token under another hash: not found either (the
	 * hash picks the chain) */
	assert_int_equal(cache_get_hash(c, h3, t1, n, NOW, &a, &out), -1);
	assert_int_equal(cache_put_hash(c, h, t2, n, NOW, &r2), 0);
	assert_int_equal(cache_put_hash(c, h3, t3, n, NOW, &r3), 0);
	assert_int_equal(jwt_cache_count(c), 3);
	assert_int_equal(cache_get_hash(c, h, t1, n, NOW, &a, &out), 0);
	assert_string_equal(out.consumer, "one");
	assert_int_equal(cache_get_hash(c, h, t2, n, NOW, &a, &out), 0);
	assert_string_equal(out.consumer, "two");
	assert_int_equal(cache_get_hash(c, h3, t3, n, NOW, &a, &out), 0);
	assert_string_equal(out.consumer, "three");
	/* putting t2 again replaces t2's entry, not t1's */
	r2 = result("two-again", NULL, "", true, NOW + 100);
	assert_int_equal(cache_put_hash(c, h, t2, n, NOW, &r2), 0);
	assert_int_equal(jwt_cache_count(c), 3);
	assert_int_equal(cache_get_hash(c, h, t1, n, NOW, &a, &out), 0);
	assert_string_equal(out.consumer, "one");
	/* t1 expires and is dropped from the chain */
	assert_int_equal(cache_get_hash(c, h, t1, n, NOW + 10, &a, &out), -1);
	assert_int_equal(cache_get_hash(c, h, t2, n, NOW + 10, &a, &out), 0);
	assert_string_equal(out.consumer, "two-again");
	assert_int_equal(cache_get_hash(c, h3, t3, n, NOW + 10, &a, &out), 0);
	assert_string_equal(out.consumer, "three");
	assert_int_equal(jwt_cache_count(c), 2);
	arena_reset(&a);
	jwt_cache_free(c);
}

/* A hit is the whole token: one differing byte anywhere in a real-sized
 * token (first, middle, last) misses, through the public calls. */
static void
t_cache_hit_confirmed_by_content(void **st)
{
	struct jwt_cache *c = jwt_cache_new(8);
	struct jwt_result r = result("alice", NULL, "", true, NOW + 100);
	char tok[600], other[600];
	size_t n = sizeof(tok) - 1, at[] = { 0, 299, 598 }, i;

	(void)st;
	memset(tok, 'k', n);
	tok[n] = '\0';
	assert_int_equal(jwt_cache_put(c, tok, n, NOW, &r), 0);
	assert_true(cached(c, tok, NOW, "alice"));
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		memcpy(other, tok, sizeof(tok));
		other[at[i]] = 'j';
		assert_false(cached(c, other, NOW, NULL));
	}
	jwt_cache_free(c);
}

/* The cache's compare: equal only when every byte is, whatever the
 * length (words and a tail) and wherever the one difference lies. */
static void
t_cache_same_bytes_every_position(void **st)
{
	char a[80], b[80];
	size_t n, i;

	(void)st;
	for (i = 0; i < sizeof(a); i++)
		a[i] = (char)('A' + i % 50);
	memcpy(b, a, sizeof(b));
	for (n = 0; n <= sizeof(a); n++) {
		assert_true(same_bytes(a, b, n));
		for (i = 0; i < n; i++) {
			b[i] ^= 0x40;
			assert_false(same_bytes(a, b, n));
			b[i] ^= 0x40;
			b[i] ^= (char)0x80;
			assert_false(same_bytes(a, b, n));
			b[i] ^= (char)0x80;
		}
	}
}

static void
t_cache_bounded(void **st)
{
	struct jwt_cache *c = jwt_cache_new(0);
	struct jwt_result r = result("x", "t", "s", true, NOW + 100);
	char tok[32];
	int i;

	(void)st;
	for (i = 0; i < JWT_CACHE_SIZE + 1000; i++) {
		snprintf(tok, sizeof(tok), "token-%d", i);
		assert_int_equal(jwt_cache_put(c, tok, strlen(tok), NOW, &r),
		    0);
	}
	assert_int_equal(jwt_cache_count(c), JWT_CACHE_SIZE);
	assert_false(cached(c, "token-0", NOW, NULL));
	assert_false(cached(c, "token-999", NOW, NULL));
	assert_true(cached(c, "token-1000", NOW, NULL));
	snprintf(tok, sizeof(tok), "token-%d", JWT_CACHE_SIZE + 999);
	assert_true(cached(c, tok, NOW, NULL));
	jwt_cache_free(c);
}

/* Used as the auth policy will: cache only what verified. A token that
 * differs from a cached one in any byte misses, and a cached token stops
 * passing when jwt_verify would refuse it as expired. */
static void
t_cache_never_passes_what_verify_refuses(void **st)
{
	struct profile *p = profile("std");
	struct jwt_cache *c = jwt_cache_new(16);
	struct arena a;
	struct jwt_result r;
	char *good, *bad;
	size_t gl, bl;

	(void)st;
	good = slurp(FIX "tokens/rs256.jwt", &gl);
	bad = slurp(FIX "tokens/rs256-badsig.jwt", &bl);
	arena_init(&a, &acache);
	assert_int_equal(jwt_verify(p->keys, &p->au, good, gl, NOW, &a, &r), 0);
	assert_int_equal(jwt_cache_put(c, good, gl, NOW, &r), 0);
	assert_int_equal(jwt_cache_get(c, bad, bl, NOW, &a, &r), -1);
	assert_int_equal(jwt_cache_get(c, good, gl, NOW, &a, &r), 0);
	assert_string_equal(r.consumer, "alice");
	/* the last second verify accepts, and the first it refuses */
	assert_int_equal(jwt_cache_get(c, good, gl, NOW + 3629, &a, &r), 0);
	assert_int_equal(jwt_verify(p->keys, &p->au, good, gl, NOW + 3630, &a,
	    &r), JWT_E_EXPIRED);
	assert_int_equal(jwt_cache_get(c, good, gl, NOW + 3630, &a, &r), -1);
	arena_reset(&a);
	free(good);
	free(bad);
	jwt_cache_free(c);
}

/* ---- gwctl token --------------------------------------------------------- */

/* Runs gwctl token with ARGV; returns its exit status, the token (or the
 * error line) in OUT. */
static int
run_token(char **argv, int argc, char *out, size_t outlen)
{
	char *ob = NULL, *eb = NULL;
	size_t ol = 0, el = 0;
	FILE *o = open_memstream(&ob, &ol), *e = open_memstream(&eb, &el);
	int rc;

	assert_non_null(o);
	assert_non_null(e);
	rc = gwctl_token(argc, argv, o, e);
	fclose(o);
	fclose(e);
	snprintf(out, outlen, "%s", rc == 0 ? ob : eb);
	free(ob);
	free(eb);
	if (rc == 0) {
		assert_true(strlen(out) > 0 && out[strlen(out) - 1] == '\n');
		out[strlen(out) - 1] = '\0';
	}
	return rc;
}

static void
t_gwctl_token_round_trip(void **st)
{
	static const struct {
		const char *priv, *alg, *pinned, *secret, *pub;
	} c[] = {
		{ FIX "hs256.secret", NULL, "HS256", FIX "hs256.secret", NULL },
		{ FIX "hs384.secret", "HS384", "HS384", FIX "hs384.secret",
		    NULL },
		{ FIX "hs512.secret", "HS512", "HS512", FIX "hs512.secret",
		    NULL },
		{ FIX "rsa.pem", NULL, "RS256", NULL, FIX "rsa.pub.pem" },
		{ FIX "rsa.pem", "RS384", "RS384", NULL, FIX "rsa.pub.pem" },
		{ FIX "rsa.pem", "RS512", "RS512", NULL, FIX "rsa.pub.pem" },
		{ FIX "rsa2.pem", "PS256", "PS256", NULL, FIX "rsa2.pub.pem" },
		{ FIX "rsa2.pem", "PS384", "PS384", NULL, FIX "rsa2.pub.pem" },
		{ FIX "rsa2.pem", "PS512", "PS512", NULL, FIX "rsa2.pub.pem" },
		{ FIX "ec256.pem", NULL, "ES256", NULL, FIX "ec256.pub.pem" },
		{ FIX "ec384.pem", NULL, "ES384", NULL, FIX "ec384.pub.pem" },
		{ FIX "ec384.pem", "ES384", "ES384", NULL,
		    FIX "ec384.pub.pem" },
		{ FIX "ed25519.pem", NULL, "EdDSA", NULL,
		    FIX "ed25519.pub.pem" },
	};
	char tok[JWT_MAX_TOKEN + 2], why[512];
	char *argv[32];
	int argc;
	size_t i;
	struct cfg_jwt_key k;
	struct cfg_auth au = { .jwt_keys = &k, .njwt_keys = 1,
	    .issuer = "https://id.example", .audience = "api",
	    .consumer_claim = "sub", .tier_claim = "tier",
	    .scopes_claim = "scope", .require = req_exp, .nrequire = 1 };
	struct jwt_keys *keys;
	struct arena a;
	struct jwt_result r;
	int64_t before, after;

	(void)st;
	arena_init(&a, &acache);
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		argc = 0;
		argv[argc++] = "--key";
		argv[argc++] = (char *)c[i].priv;
		if (c[i].alg != NULL) {
			argv[argc++] = "--alg";
			argv[argc++] = (char *)c[i].alg;
		}
		argv[argc++] = "--kid";
		argv[argc++] = "k\"1";
		argv[argc++] = "--sub";
		argv[argc++] = "acme \"corp\"";
		argv[argc++] = "--tier";
		argv[argc++] = "paid";
		argv[argc++] = "--scope";
		argv[argc++] = "orders:read";
		argv[argc++] = "--scope";
		argv[argc++] = "orders:write";
		argv[argc++] = "--ttl";
		argv[argc++] = "90s";
		argv[argc++] = "--iss";
		argv[argc++] = "https://id.example";
		argv[argc++] = "--aud";
		argv[argc++] = "api";
		before = time(NULL);
		if (run_token(argv, argc, tok, sizeof(tok)) != 0)
			fail_msg("gwctl token %s: %s", c[i].priv, tok);
		after = time(NULL);
		k = (struct cfg_jwt_key){ "k\"1", (char *)c[i].pinned,
		    (char *)c[i].secret, (char *)c[i].pub, 1 };
		if (jwt_keys_load(&au, &keys, why, sizeof(why)) < 0)
			fail_msg("%s", why);
		if (jwt_verify(keys, &au, tok, strlen(tok), after, &a, &r) != 0)
			fail_msg("%s (%s): %s", c[i].priv, c[i].pinned,
			    jwt_strerror(jwt_verify(keys, &au, tok, strlen(tok),
			    after, &a, &r)));
		assert_string_equal(r.consumer, "acme \"corp\"");
		assert_string_equal(r.tier, "paid");
		assert_string_equal(r.scopes, "orders:read orders:write");
		assert_true(r.exp >= before + 90 && r.exp <= after + 90);
		jwt_keys_free(keys);
		arena_reset(&a);
	}
	arena_reset(&a);
}

static void
t_gwctl_token_refusals(void **st)
{
	static const struct {
		const char *args[8];
		const char *want;
	} c[] = {
		{ { "--sub", "x" }, "--key and --sub are required" },
		{ { "--key", FIX "rsa.pem" }, "--key and --sub are required" },
		{ { "--key", FIX "rsa.pem", "--sub", "x", "--alg", "ES256" },
		    "this RSA key cannot sign ES256" },
		{ { "--key", FIX "ec256.pem", "--sub", "x", "--alg", "ES384" },
		    "cannot sign ES384" },
		{ { "--key", FIX "ed25519.pem", "--sub", "x", "--alg",
		    "RS256" },
		    "cannot sign RS256" },
		{ { "--key", FIX "rsa.pem", "--sub", "x", "--alg", "none" },
		    "--alg 'none' is not one of" },
		{ { "--key", FIX "garbage.pem", "--sub", "x", "--alg",
		    "RS256" },
		    "not a PEM private key" },
		{ { "--key", FIX "rsa.pub.pem", "--sub", "x" },
		    "not a PEM private key" },
		{ { "--key", FIX "x25519.pem", "--sub", "x" },
		    "cannot sign any JWT algorithm" },
		{ { "--key", FIX "empty.secret", "--sub", "x" },
		    "the secret is empty" },
		{ { "--key", FIX "nope", "--sub", "x" }, "No such file" },
		{ { "--key", FIX "rsa.pem", "--sub", "x", "--ttl", "0" },
		    "--ttl '0' is not a duration" },
		{ { "--key", FIX "rsa.pem", "--sub", "x", "--ttl", "1y" },
		    "is not a duration" },
		{ { "--key", FIX "rsa.pem", "--sub", "x", "--scope", "a b" },
		    "a scope is one non-empty word" },
		{ { "--key", FIX "rsa.pem", "--sub", "x", "--bogus", "1" },
		    "unknown argument '--bogus'" },
		{ { "--key", FIX "rsa.pem", "--sub" }, "--sub needs a value" },
	};
	char out[1024];
	int argc;
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		for (argc = 0; argc < 8 && c[i].args[argc] != NULL; argc++)
			;
		assert_int_equal(run_token((char **)c[i].args, argc, out,
		    sizeof(out)), 1);
		if (strstr(out, c[i].want) == NULL)
			fail_msg("case %zu: '%s' lacks '%s'", i, out,
			    c[i].want);
	}
}

/* A gwctl token of an alg other than the key's pinned one is refused. */
static void
t_gwctl_token_alg_pinned(void **st)
{
	char *argv[] = { "--key", FIX "rsa.pem", "--alg", "RS384", "--sub",
	    "alice", "--kid", "rs-256" };
	char tok[JWT_MAX_TOKEN];
	struct profile *p = profile("open");
	struct arena a;
	struct jwt_result r;

	(void)st;
	assert_int_equal(run_token(argv, 8, tok, sizeof(tok)), 0);
	arena_init(&a, &acache);
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, strlen(tok),
	    time(NULL), &a, &r), JWT_E_ALG_MISMATCH);
	argv[7] = "rs-384";
	assert_int_equal(run_token(argv, 8, tok, sizeof(tok)), 0);
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, strlen(tok),
	    time(NULL), &a, &r), 0);
	assert_string_equal(r.consumer, "alice");
	assert_string_equal(r.scopes, "");
	arena_reset(&a);
}

/* A tier with a control byte (gwctl escapes it as \u000a) is refused:
 * it would split the identity header. */
static void
t_tier_control_byte_refused(void **st)
{
	char *argv[] = { "--key", FIX "hs256.secret", "--kid", "hs-256",
	    "--sub", "alice", "--tier", "gold\nX-Evil: 1" };
	char tok[JWT_MAX_TOKEN];
	struct profile *p = profile("open");
	struct arena a;
	struct jwt_result r;

	(void)st;
	assert_int_equal(run_token(argv, 8, tok, sizeof(tok)), 0);
	arena_init(&a, &acache);
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, strlen(tok),
	    time(NULL), &a, &r), JWT_E_CLAIM);
	argv[7] = "gold";
	assert_int_equal(run_token(argv, 8, tok, sizeof(tok)), 0);
	assert_int_equal(jwt_verify(p->keys, &p->au, tok, strlen(tok),
	    time(NULL), &a, &r), 0);
	assert_string_equal(r.tier, "gold");
	arena_reset(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_fixture_expectations),
		cmocka_unit_test(t_result_fields),
		cmocka_unit_test(t_time_boundaries),
		cmocka_unit_test(t_numeric_dates),
		cmocka_unit_test(t_error_codes_are_stable),
		cmocka_unit_test(t_too_large_not_read),
		cmocka_unit_test(t_keys_load_counts),
		cmocka_unit_test(t_config_key_errors),
		cmocka_unit_test(t_jwks_refusals),
		cmocka_unit_test(t_jwks_skips_encryption_keys),
		cmocka_unit_test(t_cache_hit_copies_into_arena),
		cmocka_unit_test(t_cache_expiry),
		cmocka_unit_test(t_cache_lru_order),
		cmocka_unit_test(t_cache_collision_never_answers_for_another),
		cmocka_unit_test(t_cache_hit_confirmed_by_content),
		cmocka_unit_test(t_cache_same_bytes_every_position),
		cmocka_unit_test(t_cache_bounded),
		cmocka_unit_test(t_cache_never_passes_what_verify_refuses),
		cmocka_unit_test(t_gwctl_token_round_trip),
		cmocka_unit_test(t_gwctl_token_refusals),
		cmocka_unit_test(t_gwctl_token_alg_pinned),
		cmocka_unit_test(t_tier_control_byte_refused),
	};
	int rc;

	rc = cmocka_run_group_tests(tests, NULL, teardown_profiles);
	arena_cache_free(&acache);
	return rc;
}
