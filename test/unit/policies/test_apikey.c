/*
 * apikey: the keys file (good files, each refusal with its FILE:LINE) and
 * the lookup (hits, misses, hex in any case, limits on presented keys).
 * The .c is included with CRYPTO_memcmp and EVP_DigestInit_ex2 renamed to
 * counting wrappers, so the tests see that digests are compared in full
 * by the constant-time function and that refused keys are never hashed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <ctype.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static int counting_memcmp(const void *a, const void *b,
    size_t n);
static int counting_init(EVP_MD_CTX *ctx, const EVP_MD *md,
    const OSSL_PARAM params[]);

#define CRYPTO_memcmp counting_memcmp
#define EVP_DigestInit_ex2 counting_init
#include "../../../policies/apikey.c"
#undef CRYPTO_memcmp
#undef EVP_DigestInit_ex2

static unsigned ncmp, ncmp_not_full, ndigest;

static int
counting_memcmp(const void *a, const void *b, size_t n)
{
	ncmp++;
	if (n != APIKEY_DIGEST_LEN)
		ncmp_not_full++;
	return CRYPTO_memcmp(a, b, n);
}

static int
counting_init(EVP_MD_CTX *ctx, const EVP_MD *md, const OSSL_PARAM params[])
{
	ndigest++;
	return EVP_DigestInit_ex2(ctx, md, params);
}

/* SHA-256("abc"), from `printf abc | sha256sum`. */
#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static char dir[64];
static char path[128];
static char why[1024];

static int
setup(void **st)
{
	(void)st;
	snprintf(dir, sizeof(dir), "/tmp/ptc-apikey-XXXXXX");
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **st)
{
	char cmd[128];

	(void)st;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) != 0 ? -1 : 0;
}

/* put: write TEXT to DIR/NAME; the path (in a static buffer). */
static const char *
put(const char *name, const char *text)
{
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

static const char *
hex_of(const char *key)
{
	static char hex[4][APIKEY_HEX_LEN + 1];
	static unsigned i;
	char *h = hex[i++ % 4];

	assert_int_equal(apikey_hex(key, strlen(key), h), 0);
	return h;
}

static struct apikeys *
load_ok(const char *name, const char *text)
{
	struct apikeys *k = NULL;

	if (apikey_load(put(name, text), &k, why, sizeof(why)) != 0)
		fail_msg("load failed: %s", why);
	assert_non_null(k);
	return k;
}

static const struct apikey *
find(const struct apikeys *k, const char *key)
{
	return apikey_lookup(k, key, strlen(key));
}

static void
t_hex_known_vector(void **st)
{
	char hex[APIKEY_HEX_LEN + 1];

	(void)st;
	assert_int_equal(apikey_hex("abc", 3, hex), 0);
	assert_string_equal(hex, ABC_HEX);
	/* A key lookup would refuse has no hash either. */
	assert_int_equal(apikey_hex("", 0, hex), -1);
	assert_int_equal(apikey_hex("a b", 3, hex), -1);
}

static void
t_good_file(void **st)
{
	char text[2048];
	const struct apikey *a;
	struct apikeys *k;

	(void)st;
	snprintf(text, sizeof(text),
	    "# keys of the partners\n"
	    "keys = (\n"
	    "  { sha256 = \"%s\"; consumer = \"acme\"; tier = \"paid\";\n"
	    "    scopes = [\"orders:read\", \"orders:write\"]; },\n"
	    "  { sha256 = \"%s\"; consumer = \"Big Co\"; },\n"
	    "  { sha256 = \"%s\"; consumer = \"list\"; scopes = (\"a\"); },\n"
	    "  { sha256 = \"%s\"; consumer = \"none\"; scopes = []; }\n"
	    ");\n", ABC_HEX, hex_of("key-two"), hex_of("key-three"),
	    hex_of("key-four"));
	k = load_ok("good.conf", text);
	assert_int_equal(apikey_count(k), 4);

	a = find(k, "abc");
	assert_non_null(a);
	assert_string_equal(a->consumer, "acme");
	assert_int_equal(a->consumer_len, 4);
	assert_string_equal(a->tier, "paid");
	assert_string_equal(a->scopes, "orders:read orders:write");
	assert_int_equal(a->scopes_len, strlen("orders:read orders:write"));
	assert_int_equal(a->line, 3);

	a = find(k, "key-two");
	assert_non_null(a);
	assert_string_equal(a->consumer, "Big Co");
	assert_null(a->tier);
	assert_null(a->scopes);
	assert_int_equal(a->scopes_len, 0);
	assert_int_equal(a->line, 5);

	a = find(k, "key-three");
	assert_non_null(a);
	assert_string_equal(a->scopes, "a");
	a = find(k, "key-four");
	assert_non_null(a);
	assert_null(a->scopes);
	apikey_free(k);
}

static void
t_lookup_miss(void **st)
{
	struct apikeys *k;
	char text[512];

	(void)st;
	snprintf(text, sizeof(text), "keys = ( { sha256 = \"%s\"; "
	    "consumer = \"acme\"; } );\n", ABC_HEX);
	k = load_ok("miss.conf", text);
	assert_null(find(k, "abd"));
	assert_null(find(k, "ABC"));
	assert_null(find(k, "abcd"));
	assert_null(apikey_lookup(k, "abcd", 2));	/* "ab" */
	assert_non_null(apikey_lookup(k, "abcd", 3));	/* "abc" */
	assert_null(apikey_lookup(NULL, "abc", 3));
	apikey_free(k);
	apikey_free(NULL);
	assert_int_equal(apikey_count(NULL), 0);

	k = load_ok("empty.conf", "keys = ();\n");
	assert_int_equal(apikey_count(k), 0);
	assert_null(find(k, "abc"));
	apikey_free(k);
}

static void
t_hex_any_case(void **st)
{
	char text[512], upper[APIKEY_HEX_LEN + 1], mixed[APIKEY_HEX_LEN + 1];
	struct apikeys *k;
	size_t i;

	(void)st;
	for (i = 0; i <= APIKEY_HEX_LEN; i++) {
		upper[i] = (char)toupper((unsigned char)ABC_HEX[i]);
		mixed[i] = (char)(i % 2 ? upper[i] : ABC_HEX[i]);
	}
	snprintf(text, sizeof(text), "keys = ( { sha256 = \"%s\"; "
	    "consumer = \"up\"; } );\n", upper);
	k = load_ok("upper.conf", text);
	assert_non_null(find(k, "abc"));
	apikey_free(k);
	snprintf(text, sizeof(text), "keys = ( { sha256 = \"%s\"; "
	    "consumer = \"mixed\"; } );\n", mixed);
	k = load_ok("mixed.conf", text);
	assert_string_equal(find(k, "abc")->consumer, "mixed");
	apikey_free(k);
}

/* Stored digests that differ from the presented key's only in the last
 * byte (same table slot: the slot comes from the first bytes) are told
 * apart, by CRYPTO_memcmp over all 32 bytes. */
static void
t_constant_time_compare(void **st)
{
	char text[1024], near[APIKEY_HEX_LEN + 1];
	struct apikeys *k;
	const struct apikey *a;

	(void)st;
	memcpy(near, ABC_HEX, sizeof(near));
	near[APIKEY_HEX_LEN - 1] = near[APIKEY_HEX_LEN - 1] == '0' ? '1' : '0';

	snprintf(text, sizeof(text), "keys = ( { sha256 = \"%s\"; "
	    "consumer = \"near\"; } );\n", near);
	k = load_ok("near.conf", text);
	ncmp = ncmp_not_full = 0;
	assert_null(find(k, "abc"));
	assert_int_equal(ncmp, 1);
	assert_int_equal(ncmp_not_full, 0);
	apikey_free(k);

	snprintf(text, sizeof(text), "keys = (\n"
	    "  { sha256 = \"%s\"; consumer = \"near\"; },\n"
	    "  { sha256 = \"%s\"; consumer = \"exact\"; }\n"
	    ");\n", near, ABC_HEX);
	k = load_ok("near2.conf", text);
	ncmp = ncmp_not_full = 0;
	a = find(k, "abc");
	assert_non_null(a);
	assert_string_equal(a->consumer, "exact");
	assert_int_equal(ncmp, 2);
	assert_int_equal(ncmp_not_full, 0);
	apikey_free(k);
}

/* Refused keys cost no hashing and never match, even when the file holds
 * their digest. */
static void
t_presented_key_limits(void **st)
{
	static char big[APIKEY_MAX_LEN + 2];
	static const char *const bad[] = {
		"a b", "tab\there", "del\x7f", "high\x80", "nl\n", "\xff",
	};
	char text[4096], hex[APIKEY_HEX_LEN + 1];
	struct apikeys *k;
	size_t i, n = 0;

	(void)st;
	memset(big, 'k', sizeof(big) - 1);
	n += (size_t)snprintf(text + n, sizeof(text) - n, "keys = (\n");
	/* The digests of refused keys, made without apikey_hex (which
	 * refuses them too). */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]) + 3; i++) {
		const char *key = i < sizeof(bad) / sizeof(bad[0]) ? bad[i] :
		    i == sizeof(bad) / sizeof(bad[0]) ? "a\0b" : big;
		size_t len = i < sizeof(bad) / sizeof(bad[0]) ? strlen(key) :
		    i == sizeof(bad) / sizeof(bad[0]) ? 3 :
		    i == sizeof(bad) / sizeof(bad[0]) + 1 ? APIKEY_MAX_LEN + 1 :
		    APIKEY_MAX_LEN;
		uint8_t d[APIKEY_DIGEST_LEN];
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		size_t j;

		assert_int_equal(digest(ctx, EVP_sha256(), key, len, d), 0);
		EVP_MD_CTX_free(ctx);
		for (j = 0; j < APIKEY_DIGEST_LEN; j++)
			snprintf(hex + 2 * j, 3, "%02x", d[j]);
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "  { sha256 = \"%s\"; consumer = \"c%zu\"; }%s\n", hex, i,
		    i + 1 < sizeof(bad) / sizeof(bad[0]) + 3 ? "," : "");
	}
	snprintf(text + n, sizeof(text) - n, ");\n");
	k = load_ok("limits.conf", text);

	ndigest = 0;
	assert_null(apikey_lookup(k, "", 0));
	assert_null(apikey_lookup(k, big, 0));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(find(k, bad[i]));
	assert_null(apikey_lookup(k, "a\0b", 3));
	assert_null(apikey_lookup(k, big, APIKEY_MAX_LEN + 1));
	assert_null(apikey_lookup(k, NULL, 3));
	assert_int_equal(ndigest, 0);

	/* The longest key there may be is looked up. */
	assert_string_equal(apikey_lookup(k, big, APIKEY_MAX_LEN)->consumer,
	    "c8");
	assert_int_equal(ndigest, 1);
	assert_true(apikey_key_ok("!~", 2));
	assert_false(apikey_key_ok("\x20", 1));
	apikey_free(k);
}

static void
t_many_keys(void **st)
{
	char *text, key[32];
	struct apikeys *k;
	size_t n = 0, cap = 200 * 1024;
	int i;

	(void)st;
	text = malloc(cap);
	assert_non_null(text);
	n += (size_t)snprintf(text + n, cap - n, "keys = (\n");
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		n += (size_t)snprintf(text + n, cap - n, "{ sha256 = \"%s\"; "
		    "consumer = \"c%d\"; }%s\n", hex_of(key), i,
		    i < 999 ? "," : "");
	}
	snprintf(text + n, cap - n, ");\n");
	k = load_ok("many.conf", text);
	free(text);
	assert_int_equal(apikey_count(k), 1000);
	for (i = 0; i < 1000; i++) {
		char want[16];

		snprintf(key, sizeof(key), "key-%d", i);
		snprintf(want, sizeof(want), "c%d", i);
		assert_string_equal(find(k, key)->consumer, want);
		snprintf(key, sizeof(key), "key-%d", i + 1000);
		assert_null(find(k, key));
	}
	apikey_free(k);
}

static void
t_names(void **st)
{
	char s[APIKEY_SCOPES_MAX + 2];

	(void)st;
	memset(s, 'n', sizeof(s));
	s[APIKEY_NAME_MAX] = '\0';
	assert_null(apikey_bad_name(s));
	s[APIKEY_NAME_MAX] = 'n';
	s[APIKEY_NAME_MAX + 1] = '\0';
	assert_string_equal(apikey_bad_name(s), "is longer than 64 bytes");
	assert_null(apikey_bad_name("a b~\"\\"));
	assert_non_null(apikey_bad_name(""));
	assert_non_null(apikey_bad_name(" a"));
	assert_non_null(apikey_bad_name("a "));
	assert_non_null(apikey_bad_name("a\tb"));
	assert_non_null(apikey_bad_name("caf\xc3\xa9"));

	assert_null(apikey_bad_scope("orders:read"));
	assert_null(apikey_bad_scope("https://x.example/a.b!#$"));
	assert_non_null(apikey_bad_scope(""));
	assert_non_null(apikey_bad_scope("a b"));
	assert_non_null(apikey_bad_scope("a\"b"));
	assert_non_null(apikey_bad_scope("a\\b"));
	memset(s, 's', sizeof(s));
	s[APIKEY_SCOPES_MAX] = '\0';
	assert_null(apikey_bad_scope(s));
	s[APIKEY_SCOPES_MAX] = 's';
	s[APIKEY_SCOPES_MAX + 1] = '\0';
	assert_non_null(apikey_bad_scope(s));
}

struct bad_case {
	const char *text;		/* %1$s: a valid sha256 */
	int line;			/* 0: "FILE: reason" */
	const char *reason;
};

#define E(h) "{ sha256 = \"" h "\"; consumer = \"c\"; }"
#define H ABC_HEX

static const struct bad_case bad_cases[] = {
	/* (Not `sha256 "..."`: libconfig 1.5 leaks the string then.) */
	{ "keys = (\n  { sha256 = ; consumer = \"c\"; }\n);\n", 2,
	  "syntax error" },
	{ "", 0, "no 'keys' list" },
	{ "# only a comment\nother = 1;\n", 2, "unknown setting 'other'" },
	{ "keys = ( " E(H) " );\nversion = 1;\n", 2,
	  "unknown setting 'version'" },
	{ "keys = { a = 1; };\n", 1, "'keys' must be a list" },
	{ "keys = [ \"x\" ];\n", 1, "'keys' must be a list" },
	{ "keys = (\n  " E(H) ",\n  \"" H "\" );\n", 3,
	  "keys #2: must be a group" },
	{ "keys = (\n  " E(H) ",\n  { sha256 = \"" H "\";\n"
	  "    consumer = \"c\"; key = \"secret\"; }\n);\n", 4,
	  "keys #2: unknown setting 'key'" },
	{ "keys = (\n\n  { consumer = \"c\"; }\n);\n", 3,
	  "keys #1: needs 'sha256'" },
	{ "keys = (\n  { sha256 = 1; consumer = \"c\"; }\n);\n", 2,
	  "keys #1: 'sha256' must be a string" },
	{ "keys = (\n  " E("ba7816bf") "\n);\n", 2,
	  "keys #1: sha256 must be 64 hex digits" },
	{ "keys = (\n  " E(H "0") "\n);\n", 2,
	  "keys #1: sha256 must be 64 hex digits" },
	{ "keys = (\n  "
	  E("ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
	  "\n);\n", 2, "keys #1: sha256 must be 64 hex digits" },
	{ "keys = (\n  "
	  E("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a ")
	  "\n);\n", 2, "keys #1: sha256 must be 64 hex digits" },
	{ "keys = (\n  " E(H) ",\n  "
	  E("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD")
	  "\n);\n", 3, "keys #2: sha256 is already the key of line 2" },
	{ "keys = (\n  " E(H) ",\n  { sha256 = \"" H "\";\n  consumer = "
	  "\"other\"; }\n);\n", 3, "keys #2: sha256 is already the key of "
	  "line 2" },
	{ "keys = (\n  { sha256 = \"" H "\";\n    tier = \"paid\"; }\n);\n",
	  2, "keys #1: needs 'consumer'" },
	{ "keys = (\n  { sha256 = \"" H "\";\n    consumer = \"\"; }\n);\n",
	  3, "keys #1: consumer is empty" },
	{ "keys = (\n  { sha256 = \"" H "\";\n    consumer = 7; }\n);\n",
	  3, "keys #1: 'consumer' must be a string" },
	{ "keys = (\n  { sha256 = \"" H "\";\n    consumer = \""
	  "12345678901234567890123456789012345678901234567890123456789012345"
	  "\"; }\n);\n", 3, "keys #1: consumer is longer than 64 bytes" },
	{ "keys = (\n  { sha256 = \"" H "\";\n    consumer = \"a\\tb\"; }\n"
	  ");\n", 3, "keys #1: consumer has a byte outside printable ASCII" },
	{ "keys = (\n  { sha256 = \"" H "\";\n    consumer = \" a\"; }\n);\n",
	  3, "keys #1: consumer starts or ends with a space" },
	{ "keys = (\n  { sha256 = \"" H "\"; consumer = \"c\";\n"
	  "    tier = \"\"; }\n);\n", 3, "keys #1: tier is empty" },
	{ "keys = (\n  { sha256 = \"" H "\"; consumer = \"c\";\n"
	  "    tier = [\"paid\"]; }\n);\n", 3,
	  "keys #1: 'tier' must be a string" },
	{ "keys = (\n  { sha256 = \"" H "\"; consumer = \"c\";\n    tier = \""
	  "12345678901234567890123456789012345678901234567890123456789012345"
	  "\"; }\n);\n", 3, "keys #1: tier is longer than 64 bytes" },
	{ "keys = (\n  { sha256 = \"" H "\"; consumer = \"c\";\n"
	  "    scopes = \"a b\"; }\n);\n", 3,
	  "keys #1: 'scopes' must be an array of strings" },
	{ "keys = (\n  { sha256 = \"" H "\"; consumer = \"c\";\n"
	  "    scopes = [1, 2]; }\n);\n", 3,
	  "keys #1: scope #1 must be a string" },
	{ "keys = (\n  { sha256 = \"" H "\"; consumer = \"c\";\n"
	  "    scopes = [\"a\",\n      \"b c\"]; }\n);\n", 4,
	  "keys #1: scope #2 is not a scope token" },
	{ "keys = (\n  { sha256 = \"" H "\"; consumer = \"c\";\n"
	  "    scopes = [\"\"]; }\n);\n", 3, "keys #1: scope #1 is empty" },
	{ "keys = (\n  { sha256 = \"" H "\"; consumer = \"c\";\n"
	  "    scopes = [\"a:b\", \"a\", \"a:b\"]; }\n);\n", 3,
	  "keys #1: scope 'a:b' is listed twice" },
	{ "keys = (\n  { sha256 = \"" H "\"; consumer = \"c\";\n"
	  "    scopes = (\"a\", (\"b\")); }\n);\n", 3,
	  "keys #1: scope #2 must be a string" },
};

static void
t_refusals(void **st)
{
	char want[1024];
	struct apikeys *k;
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		const char *p = put("bad.conf", c->text);

		k = (struct apikeys *)1;
		if (apikey_load(p, &k, why, sizeof(why)) != -1)
			fail_msg("case %zu loaded", i);
		assert_null(k);
		if (c->line > 0)
			snprintf(want, sizeof(want), "%s:%d: %s", p, c->line,
			    c->reason);
		else
			snprintf(want, sizeof(want), "%s: %s", p, c->reason);
		if (strncmp(why, want, strlen(want)) != 0)
			fail_msg("case %zu: got '%s', want '%s...'", i, why,
			    want);
	}
}

/* One key's scopes join to at most APIKEY_SCOPES_MAX bytes. */
static void
t_scopes_bound(void **st)
{
	char *text, want[256];
	size_t n = 0, cap = 16 * 1024;
	struct apikeys *k;
	int i;

	(void)st;
	text = malloc(cap);
	assert_non_null(text);
	/* 819 scopes of 4 bytes join to 4094 bytes; ", x" makes 4096. */
	n += (size_t)snprintf(text + n, cap - n, "keys = ( { sha256 = \"%s\"; "
	    "consumer = \"c\";\n scopes = [", ABC_HEX);
	for (i = 0; i < 819; i++)
		n += (size_t)snprintf(text + n, cap - n, "%s\"s%03d\"",
		    i > 0 ? ", " : "", i);
	snprintf(text + n, cap - n, ", \"x\"]; } );\n");
	k = load_ok("scopes.conf", text);
	assert_int_equal(find(k, "abc")->scopes_len, APIKEY_SCOPES_MAX);
	apikey_free(k);

	snprintf(text + n, cap - n, ", \"x\",\n \"y\"]; } );\n");
	assert_int_equal(apikey_load(put("scopes.conf", text), &k, why,
	    sizeof(why)), -1);
	free(text);
	snprintf(want, sizeof(want), "%s:3: keys #1: scopes are longer than "
	    "4096 bytes joined", path);
	assert_string_equal(why, want);
}

static void
t_unreadable_and_include(void **st)
{
	char want[512];
	struct apikeys *k = NULL;

	(void)st;
	snprintf(want, sizeof(want), "%s/none.conf: cannot open: No such "
	    "file or directory", dir);
	snprintf(path, sizeof(path), "%s/none.conf", dir);
	assert_int_equal(apikey_load(path, &k, why, sizeof(why)), -1);
	assert_string_equal(why, want);

	/* An error in an @included file names that file, where it is. */
	put("part.conf", "{ sha256 = \"" ABC_HEX "\"; consumer = \"a\"; },\n"
	    "{ sha256 = \"00\"; consumer = \"b\"; }\n");
	put("main.conf", "keys = (\n  @include \"part.conf\"\n);\n");
	assert_int_equal(apikey_load(path, &k, why, sizeof(why)), -1);
	snprintf(want, sizeof(want), "%s/part.conf:2: keys #2: sha256 must "
	    "be 64 hex digits", dir);
	assert_true(strncmp(why, want, strlen(want)) == 0);
	put("part.conf", "{ sha256 = \"" ABC_HEX "\"; consumer = \"a\"; }\n");
	k = load_ok("main.conf", "keys = (\n  @include \"part.conf\"\n);\n");
	assert_string_equal(find(k, "abc")->consumer, "a");
	apikey_free(k);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_hex_known_vector),
		cmocka_unit_test(t_good_file),
		cmocka_unit_test(t_lookup_miss),
		cmocka_unit_test(t_hex_any_case),
		cmocka_unit_test(t_constant_time_compare),
		cmocka_unit_test(t_presented_key_limits),
		cmocka_unit_test(t_many_keys),
		cmocka_unit_test(t_names),
		cmocka_unit_test(t_refusals),
		cmocka_unit_test(t_scopes_bound),
		cmocka_unit_test(t_unreadable_and_include),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
