/*
 * The streaming JSON scanner: it accepts and refuses what the strict tree
 * reader does (duplicate keys aside), whatever the pieces the text comes
 * in, one byte at a time included; every piece is placed against a
 * PROT_NONE guard page so an over-read crashes the test. Long strings
 * are kept small, a megabyte of \u escapes is refused as too large, and
 * the nesting bound holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../policies/jsonscan.h"

static struct arena_cache cache;
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

/* The scanner over s[0..n) in pieces of STEP bytes (0: whole), each on a
 * guard page. 0 or the JSON_E_* code. Counts the pieces of each kind. */
static int
scan_steps(const char *s, size_t n, size_t step, unsigned depth,
    unsigned *ntok)
{
	struct jscan sc;
	struct jscan_piece pc;
	size_t off = 0, k, used;
	int rc = 0;

	jscan_init(&sc, depth);
	if (step == 0)
		step = n ? n : 1;
	while (rc == 0) {
		k = n - off < step ? n - off : step;
		const char *g = guard(s + off, k);
		bool last = off + k == n;
		used = 0;
		while ((rc = jscan_next(&sc, g + used, k - used, last, &pc)) ==
		    1) {
			assert_true(pc.len <= k - used);
			used += pc.len;
			if (ntok != NULL && pc.last)
				ntok[pc.tok]++;
		}
		if (rc < 0)
			break;
		assert_int_equal(used, k);
		off += k;
		if (last)
			break;
	}
	jscan_free(&sc);
	return rc;
}

/* Every step from 1 to 9 and whole agree on the verdict; returns it. */
static int
scan_all(const char *s)
{
	size_t n = strlen(s), step;
	int whole = scan_steps(s, n, 0, JSCAN_DEPTH_MAX, NULL), rc;

	for (step = 1; step < 10; step++) {
		rc = scan_steps(s, n, step, JSCAN_DEPTH_MAX, NULL);
		if ((rc == 0) != (whole == 0))
			fail_msg("'%s': step %zu gives %d, whole %d", s, step, rc,
			    whole);
	}
	return whole;
}

static int
tree(const char *s)
{
	struct json_limits lim = { JSCAN_DEPTH_MAX, 1 << 22 };
	struct json_value v;
	struct arena a;
	int rc;

	arena_init(&a, &cache);
	rc = json_parse(s, strlen(s), &lim, &a, &v, NULL);
	arena_reset(&a);
	return rc;
}

static const char *const good[] = {
	"{}", "[]", " { } ", "0", "-0", "1.5e-3", "\"\"", "\"a\\\"b\"",
	"true", "false", "null", "[1,2,3]", "{\"a\":{\"b\":[true,null,{}]}}",
	"\"\\u00e9\\ud83d\\ude00\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\"",
	"[\"x\", -1.0E+2 , {\"k\" : \"v\"} ]\n", "{\"a\":1,\"a\":2}",
	"[[[[[[[[[[]]]]]]]]]]", "123456789012345678901234567890",
	"{\"\\\\\":\"\\/\\b\\f\\n\\r\\t\"}", "[0e0, 1E9, -9.99e-9]",
};

static const char *const bad[] = {
	"", " ", "{", "[", "}", "]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}",
	"[1,]", "[,1]", "{,}", "01", "-", "1.", ".5", "1e", "1e+", "+1",
	"tru", "truex", "nul", "nulll", "[1 2]", "{\"a\" 1}", "{1:2}",
	"\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud83d\"", "\"\\ude00\"",
	"\"\\ud83d\\u0041\"", "\"\x01\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
	"\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "{} {}", "[] x", "1 2",
	"[}", "{]", "{\"a\":1]", "[1}", "\"a\"\"b\"", "nan", "[-]",
	"{\"a\":tru}", "[1.e5]", "[1e5.5]", "[-01]",
};

static void
test_agrees_with_tree(void **st)
{
	size_t i;
	int rc, t;

	(void)st;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		rc = scan_all(good[i]);
		t = tree(good[i]);
		if (rc != 0)
			fail_msg("good '%s' refused: %d", good[i], rc);
		/* The tree reader refuses duplicate keys; the scanner
		 * passes them on. */
		assert_true(t == 0 || t == JSON_E_DUPKEY);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc = scan_all(bad[i]);
		if (rc == 0)
			fail_msg("bad '%s' accepted", bad[i]);
		assert_int_not_equal(tree(bad[i]), 0);
	}
}

/* Keys and string values are told apart, and a piece never mixes two
 * tokens. */
static void
test_pieces(void **st)
{
	const char *s = "{\"k\":\"v\",\"n\":[1,true,\"s\"],\"o\":{}}";
	unsigned n1[JT_LITERAL + 1] = { 0 }, n3[JT_LITERAL + 1] = { 0 };

	(void)st;
	assert_int_equal(scan_steps(s, strlen(s), 0, 16, n1), 0);
	assert_int_equal(scan_steps(s, strlen(s), 3, 16, n3), 0);
	assert_memory_equal(n1, n3, sizeof(n1));
	assert_int_equal(n1[JT_KEY], 3);
	assert_int_equal(n1[JT_STRING], 2);
	assert_int_equal(n1[JT_NUMBER], 1);
	assert_int_equal(n1[JT_LITERAL], 1);
	assert_int_equal(n1[JT_OBJ_BEGIN], 2);
	assert_int_equal(n1[JT_ARR_END], 1);
	assert_int_equal(n1[JT_COMMA], 4);
	assert_int_equal(n1[JT_COLON], 3);
}

/* A number cut at the end of a piece ends where the next piece shows
 * it, or at the end of the text. */
static void
test_number_pieces(void **st)
{
	struct jscan sc;
	struct jscan_piece pc;

	(void)st;
	jscan_init(&sc, 8);
	assert_int_equal(jscan_next(&sc, "[12", 3, false, &pc), 1);
	assert_int_equal(pc.tok, JT_ARR_BEGIN);
	assert_int_equal(jscan_next(&sc, "12", 2, false, &pc), 1);
	assert_true(pc.tok == JT_NUMBER && pc.first && !pc.last &&
	    pc.len == 2);
	assert_int_equal(jscan_next(&sc, "", 0, false, &pc), 0);
	assert_int_equal(jscan_next(&sc, "3]", 2, false, &pc), 1);
	assert_true(pc.tok == JT_NUMBER && !pc.first && pc.last &&
	    pc.len == 1);
	assert_int_equal(jscan_next(&sc, "]", 1, true, &pc), 1);
	assert_int_equal(pc.tok, JT_ARR_END);
	assert_int_equal(jscan_next(&sc, "", 0, true, &pc), 0);
	jscan_free(&sc);

	/* A root number ends with the text. */
	jscan_init(&sc, 8);
	assert_int_equal(jscan_next(&sc, "42", 2, false, &pc), 1);
	assert_false(pc.last);
	assert_int_equal(jscan_next(&sc, "", 0, true, &pc), 1);
	assert_true(pc.tok == JT_NUMBER && pc.last && pc.len == 0);
	assert_int_equal(jscan_next(&sc, "", 0, true, &pc), 0);
	jscan_free(&sc);
}

/* A string far longer than what is kept, one byte at a time, with
 * escapes and multi-byte characters in it: accepted, and what is kept
 * stays small. A bad byte deep inside is still found. */
static void
test_long_string(void **st)
{
	size_t n = 200000, i, most = 0;
	char *s = malloc(n + 3);
	struct jscan sc;
	struct jscan_piece pc;
	int rc = 1;

	(void)st;
	assert_non_null(s);
	s[0] = '"';
	for (i = 1; i < n; i++)
		s[i] = "ab\\n\xc3\xa9xyz"[i % 8];
	/* keep the escapes and the sequences whole */
	for (i = 1; i < n; i++)
		if (s[i] == '\\' && s[i + 1] != 'n')
			s[i] = 'q';
	s[n] = '"';
	s[n + 1] = '\0';
	/* fix cut sequences at the end */
	for (i = n - 8; i < n; i++)
		s[i] = 'z';
	jscan_init(&sc, 4);
	for (i = 0; i <= n; i++) {
		rc = jscan_next(&sc, s + i, 1, i == n, &pc);
		assert_int_equal(rc, 1);
		if (sc.nkeep > most)
			most = sc.nkeep;
	}
	assert_true(pc.last && pc.tok == JT_STRING);
	assert_int_equal(jscan_next(&sc, "", 0, true, &pc), 0);
	jscan_free(&sc);
	assert_true(most < 4 * JSCAN_KEEP);

	s[n - 100] = '\x01';	/* a control byte, deep in */
	assert_int_equal(scan_steps(s, n + 1, 97, 4, NULL), JSON_E_SYNTAX);
	s[n - 100] = '\xff';
	assert_int_equal(scan_steps(s, n + 1, 4096, 4, NULL), JSON_E_UTF8);
	free(s);
}

/* Nothing but \u escapes has no place to cut: refused past the bound,
 * not kept without end. */
static void
test_escape_run_bounded(void **st)
{
	size_t n = 2 * JSCAN_TOKEN_MAX, i;
	char *s = malloc(n + 2);

	(void)st;
	assert_non_null(s);
	s[0] = '"';
	for (i = 1; i + 6 <= n; i += 6)
		memcpy(s + i, "\\u0041", 6);
	for (; i < n; i++)
		s[i] = '"';
	assert_int_equal(scan_steps(s, i, 65536, 4, NULL), JSON_E_SIZE);
	free(s);
}

static void
test_depth(void **st)
{
	char s[64];

	(void)st;
	memset(s, '[', 5);
	memset(s + 5, ']', 5);
	s[10] = '\0';
	assert_int_equal(scan_steps(s, 10, 1, 5, NULL), 0);
	assert_int_equal(scan_steps(s, 10, 1, 4, NULL), JSON_E_DEPTH);
	assert_int_equal(jscan_validate("{\"a\":[{}]}", 10, 3), 0);
	assert_int_equal(jscan_validate("{\"a\":[{}]}", 10, 2),
	    JSON_E_DEPTH);
}

static int
teardown(void **st)
{
	(void)st;
	if (gp_base != NULL)
		munmap(gp_base, gp_size);
	arena_cache_free(&cache);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agrees_with_tree),
		cmocka_unit_test(test_pieces),
		cmocka_unit_test(test_number_pieces),
		cmocka_unit_test(test_long_string),
		cmocka_unit_test(test_escape_run_bounded),
		cmocka_unit_test(test_depth),
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
