/*
 * The strict JSON reader: what it accepts (and how it decodes strings and
 * keeps numbers exact) and everything it refuses, each input placed
 * against a PROT_NONE guard page so an over-read crashes the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../policies/json.h"

static struct arena_cache cache;
static struct arena A;
static void *gp_base;
static size_t gp_size;

/* s[0..n) copied to end exactly at a PROT_NONE page. */
static const char *
guard(const char *s, size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t body = (n + pg - 1) / pg * pg;
	char *p;

	if (body == 0)
		body = pg;
	if (gp_base != NULL)
		munmap(gp_base, gp_size);
	gp_size = body + pg;
	gp_base = mmap(NULL, gp_size, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(gp_base != MAP_FAILED);
	assert_int_equal(mprotect((char *)gp_base + body, pg, PROT_NONE), 0);
	p = (char *)gp_base + body - n;
	memcpy(p, s, n);
	return p;
}

static int
parse_n(const char *s, size_t n, unsigned depth, struct json_value *v)
{
	struct json_limits lim = { depth, 1 << 20 };

	arena_reset(&A);
	return json_parse(guard(s, n), n, &lim, &A, v, NULL);
}

static int
parse(const char *s, struct json_value *v)
{
	return parse_n(s, strlen(s), 16, v);
}

static int
rc_of(const char *s)
{
	struct json_value v;

	return parse(s, &v);
}

static void
t_values(void **st)
{
	struct json_value v;
	const struct json_value *m;
	int64_t i;
	double d;

	(void)st;
	assert_int_equal(parse(" {\"a\": [1, -2, 3.5e2, true, false, null],"
	    " \"b\": {\"c\": \"d\"}, \"\": 0 } ", &v), 0);
	assert_int_equal(v.type, JSON_OBJECT);
	assert_int_equal(v.u.obj.n, 3);
	m = json_get(&v, "a");
	assert_non_null(m);
	assert_int_equal(m->type, JSON_ARRAY);
	assert_int_equal(m->u.arr.n, 6);
	assert_true(json_int(&m->u.arr.v[0], &i) && i == 1);
	assert_true(json_int(&m->u.arr.v[1], &i) && i == -2);
	assert_false(json_int(&m->u.arr.v[2], &i));	/* not an integer */
	assert_true(json_number(&m->u.arr.v[2], &d) && d == 350.0);
	assert_int_equal(m->u.arr.v[3].type, JSON_TRUE);
	assert_int_equal(m->u.arr.v[4].type, JSON_FALSE);
	assert_int_equal(m->u.arr.v[5].type, JSON_NULL);
	assert_true(json_str_eq(json_get(json_get(&v, "b"), "c"), "d"));
	assert_non_null(json_get(&v, ""));
	assert_null(json_get(&v, "A"));			/* case-sensitive */
	assert_null(json_get(m, "a"));			/* not an object */
	/* scalars at top level */
	assert_int_equal(parse("\"x\"", &v), 0);
	assert_int_equal(parse("0", &v), 0);
	assert_int_equal(parse("-0.0e+0", &v), 0);
	assert_int_equal(parse("[]", &v), 0);
	assert_int_equal(parse("{}", &v), 0);
}

static void
t_strings(void **st)
{
	struct json_value v;

	(void)st;
	assert_int_equal(parse("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", &v), 0);
	assert_int_equal(v.u.str.len, 12);
	assert_memory_equal(v.u.str.p, "a\"b\\c/d\b\f\n\r\t", 12);
	/* \u escapes, a surrogate pair, raw UTF-8 kept */
	assert_int_equal(parse("\"\\u00e9\\u20ac\\ud83d\\ude00\xc3\xa9\"", &v),
	    0);
	assert_int_equal(v.u.str.len, 2 + 3 + 4 + 2);
	assert_memory_equal(v.u.str.p, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
	    "\xc3\xa9", 11);
	/* \u0000 decodes to a NUL inside the length */
	assert_int_equal(parse("\"a\\u0000b\"", &v), 0);
	assert_int_equal(v.u.str.len, 3);
	assert_int_equal(v.u.str.p[1], '\0');
	assert_false(json_str_eq(&v, "a"));
}

static void
t_numbers_exact(void **st)
{
	struct json_value v;
	int64_t i;

	(void)st;
	assert_int_equal(parse("9223372036854775807", &v), 0);
	assert_true(json_int(&v, &i) && i == INT64_MAX);
	assert_int_equal(parse("-9223372036854775808", &v), 0);
	assert_true(json_int(&v, &i) && i == INT64_MIN);
	/* valid JSON, but not an exact int64: never rounded */
	assert_int_equal(parse("9223372036854775808", &v), 0);
	assert_false(json_int(&v, &i));
	assert_int_equal(parse("1e10", &v), 0);
	assert_false(json_int(&v, &i));
	assert_int_equal(parse("1.0", &v), 0);
	assert_false(json_int(&v, &i));
	assert_int_equal(parse("12345678901234567890123", &v), 0);
	assert_int_equal(v.u.num.len, 23);		/* text kept whole */
}

static void
t_refused_syntax(void **st)
{
	static const char *const bad[] = {
		"", " ", "{", "}", "[", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}",
		"{\"a\":1,}", "{a:1}", "{'a':1}", "[1 2]", "01", "-", "-01",
		"1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "Infinity",
		"tru", "nul", "True", "\"abc", "\"\\x\"", "\"\\u12\"",
		"\"\\u12g4\"", "\"a\tb\"", "\"a\nb\"", "1 2", "{} {}",
		"[1]x", "\"\\", "nullx",
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (rc_of(bad[i]) >= 0)
			fail_msg("accepted %s", bad[i]);
	assert_int_equal(rc_of("[1,]"), JSON_E_SYNTAX);
}

static void
t_refused_utf8(void **st)
{
	static const char *const bad[] = {
		"\"\xc0\xaf\"",			/* overlong '/' */
		"\"\xe0\x80\xaf\"",		/* overlong, 3 bytes */
		"\"\xed\xa0\x80\"",		/* encoded surrogate */
		"\"\xf4\x90\x80\x80\"",		/* past U+10FFFF */
		"\"\xf5\x80\x80\x80\"",
		"\"\x80\"",			/* lone continuation */
		"\"\xc3\"",			/* cut sequence */
		"\"\xc3\x28\"",			/* bad continuation */
		"\"\\ud83d\"",			/* lone high surrogate */
		"\"\\ude00\"",			/* lone low surrogate */
		"\"\\ud83d\\u0041\"",		/* high + not a low */
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = rc_of(bad[i]);
		if (rc != JSON_E_UTF8 && rc != JSON_E_SYNTAX)
			fail_msg("case %zu: rc %d", i, rc);
	}
	assert_int_equal(rc_of("\"\\ud83d\""), JSON_E_UTF8);
	assert_int_equal(rc_of("\"\xed\xa0\x80\""), JSON_E_UTF8);
}

static void
t_duplicate_keys(void **st)
{
	char big[8192];
	size_t n = 0;
	int i;

	(void)st;
	assert_int_equal(rc_of("{\"a\":1,\"a\":2}"), JSON_E_DUPKEY);
	assert_int_equal(rc_of("{\"a\":1,\"b\":{\"a\":2}}"), 0);
	/* the same key spelled with an escape is the same key */
	assert_int_equal(rc_of("{\"a\":1,\"\\u0061\":2}"), JSON_E_DUPKEY);
	/* many keys (the sorted check), the duplicate last */
	n += snprintf(big + n, sizeof(big) - n, "{");
	for (i = 0; i < 300; i++)
		n += snprintf(big + n, sizeof(big) - n, "\"k%d\":%d,", i, i);
	n += snprintf(big + n, sizeof(big) - n, "\"k7\":0}");
	assert_int_equal(rc_of(big), JSON_E_DUPKEY);
	big[n - 5] = '8';		/* "k8"... still a duplicate */
	assert_int_equal(rc_of(big), JSON_E_DUPKEY);
	memcpy(big + n - 7, "\"zz\"", 4);
	assert_int_equal(rc_of(big), 0);
}

static void
t_depth(void **st)
{
	struct json_value v;
	char s[200];
	int i;

	(void)st;
	for (i = 0; i < 16; i++)
		s[i] = '[';
	for (i = 0; i < 16; i++)
		s[16 + i] = ']';
	assert_int_equal(parse_n(s, 32, 16, &v), 0);
	assert_int_equal(parse_n(s, 32, 15, &v), JSON_E_DEPTH);
	for (i = 0; i < 100; i++)
		s[i] = '{';
	assert_int_equal(parse_n(s, 100, 16, &v), JSON_E_SYNTAX);
	memcpy(s, "{\"a\":", 5);
	for (i = 0; i < 20; i++)
		memcpy(s + 5 + 5 * i, "{\"a\":", 5);
	assert_int_equal(parse_n(s, 105, 16, &v), JSON_E_DEPTH);
}

static void
t_size_and_error_offset(void **st)
{
	struct json_limits lim = { 8, 10 };
	struct json_value v;
	size_t at = 0;

	(void)st;
	arena_reset(&A);
	assert_int_equal(json_parse(guard("[1,2,3,4,5,6]", 13), 13, &lim, &A,
	    &v, &at), JSON_E_SIZE);
	lim.bytes = 100;
	assert_int_equal(json_parse(guard("[1, 2, x]", 9), 9, &lim, &A, &v,
	    &at), JSON_E_SYNTAX);
	assert_int_equal(at, 7);
	assert_string_equal(json_strerror(JSON_E_DUPKEY),
	    "duplicate object key");
}

static void
t_lexer_streaming(void **st)
{
	size_t d;

	(void)st;
	/* incomplete tokens say so (0), complete ones give their length */
	assert_int_equal(json_lex_string("\"ab", 3, &d), 0);
	assert_int_equal(json_lex_string("\"ab\"x", 5, &d), 4);
	assert_int_equal(d, 2);
	assert_int_equal(json_lex_string("\"\\u00", 5, &d), 0);
	assert_int_equal(json_lex_string("\"\xc3", 2, &d), 0);
	assert_int_equal(json_lex_number("12", 2, false), 0);
	assert_int_equal(json_lex_number("12", 2, true), 2);
	assert_int_equal(json_lex_number("12,", 3, false), 2);
	assert_int_equal(json_lex_number("1.", 2, false), 0);
	assert_int_equal(json_lex_number("1.", 2, true), JSON_E_SYNTAX);
	assert_int_equal(json_lex_number("-", 1, false), 0);
	assert_int_equal(json_lex_literal("tr", 2), 0);
	assert_int_equal(json_lex_literal("true]", 5), 4);
	assert_int_equal(json_lex_literal("trux", 4), JSON_E_SYNTAX);
}

static int
setup(void **st)
{
	(void)st;
	arena_init(&A, &cache);
	return 0;
}

static int
teardown(void **st)
{
	(void)st;
	arena_reset(&A);
	arena_cache_free(&cache);
	if (gp_base != NULL)
		munmap(gp_base, gp_size);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_values),
		cmocka_unit_test(t_strings),
		cmocka_unit_test(t_numbers_exact),
		cmocka_unit_test(t_refused_syntax),
		cmocka_unit_test(t_refused_utf8),
		cmocka_unit_test(t_duplicate_keys),
		cmocka_unit_test(t_depth),
		cmocka_unit_test(t_size_and_error_offset),
		cmocka_unit_test(t_lexer_streaming),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
