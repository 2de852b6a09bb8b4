/*
 * strip_fields on a stream: names at the top level, dotted paths through
 * objects and through arrays at any depth, escaped names, duplicates,
 * the comma and whitespace around a removed member; the same output
 * whatever the pieces the body comes in (one byte at a time included);
 * bodies that are not JSON passed unchanged, invalid ones from where they
 * went wrong; path compile errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../../policies/jsonstrip.h"

struct out {
	char *p;
	size_t len, cap;
};

static int
emit(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->p = realloc(o->p, o->cap);
		assert_non_null(o->p);
	}
	memcpy(o->p + o->len, p, n);
	o->len += n;
	o->p[o->len] = '\0';
	return 0;
}

/* IN through the paths in pieces of STEP (0: whole): the output in *res
 * (malloc), the verdict returned. */
static int
run(const char *in, char **fields, size_t nf, size_t step, char **res,
    uint64_t *removed)
{
	struct jstrip_paths *ps;
	struct jstrip js;
	struct out o = { 0 };
	size_t n = strlen(in), off = 0, k;
	char err[200];
	int v = 0;

	assert_int_equal(jstrip_compile(fields, nf, &ps, err, sizeof(err)), 0);
	jstrip_init(&js, ps, emit, &o);
	emit(&o, "", 0);
	if (step == 0)
		step = n ? n : 1;
	do {
		k = n - off < step ? n - off : step;
		v = jstrip_feed(&js, in + off, k, off + k == n);
		assert_true(v >= 0);
		off += k;
	} while (off < n);
	if (removed != NULL)
		*removed = js.removed;
	jstrip_free(&js);
	jstrip_paths_free(ps);
	*res = o.p;
	return v;
}

/* The one-pass strip of a text in memory: its output in *res. */
static int
run_whole(const char *in, char **fields, size_t nf, char **res,
    uint64_t *removed)
{
	struct jstrip_paths *ps;
	struct out o = { 0 };
	char err[200];
	int v;

	assert_int_equal(jstrip_compile(fields, nf, &ps, err, sizeof(err)), 0);
	emit(&o, "", 0);
	v = jstrip_whole(ps, in, strlen(in), emit, &o, removed);
	jstrip_paths_free(ps);
	*res = o.p;
	return v;
}

/* IN gives WANT with verdict V, in every piece size from 1 to 12 and
 * whole, and from the one-pass strip (whose output of an invalid text is
 * not used). */
static void
check(const char *in, const char *fields_csv, const char *want, int v)
{
	char *fields[8], buf[256], *res, *save = NULL, *t;
	size_t nf = 0, step;
	uint64_t removed;
	int got;

	snprintf(buf, sizeof(buf), "%s", fields_csv);
	for (t = strtok_r(buf, ",", &save); t != NULL;
	    t = strtok_r(NULL, ",", &save))
		fields[nf++] = t;
	for (step = 0; step <= 12; step++) {
		got = run(in, fields, nf, step, &res, NULL);
		if (strcmp(res, want) != 0 || got != v)
			fail_msg("strip [%s] of '%s' in pieces of %zu:\n got  '%s' "
			    "(%d)\n want '%s' (%d)", fields_csv, in, step, res, got,
			    want, v);
		free(res);
	}
	got = run_whole(in, fields, nf, &res, &removed);
	if (got != v || (v != JSTRIP_INVALID && strcmp(res, want) != 0))
		fail_msg("strip [%s] of '%s' in one pass:\n got  '%s' (%d)\n "
		    "want '%s' (%d)", fields_csv, in, res, got, want, v);
	free(res);
}

static void
test_names_and_paths(void **st)
{
	(void)st;
	check("{\"a\":1,\"debug\":{\"x\":[1,2]},\"b\":2}", "debug",
	    "{\"a\":1,\"b\":2}", JSTRIP_JSON);
	check("{\"debug\":1,\"a\":2}", "debug", "{\"a\":2}", JSTRIP_JSON);
	check("{\"a\":2,\"debug\":1}", "debug", "{\"a\":2}", JSTRIP_JSON);
	check("{\"debug\":1}", "debug", "{}", JSTRIP_JSON);
	check("{\"debug\":1,\"debug\":2,\"a\":3}", "debug", "{\"a\":3}",
	    JSTRIP_JSON);
	/* only at the top level, unless a path says deeper */
	check("{\"x\":{\"debug\":1},\"debug\":2}", "debug",
	    "{\"x\":{\"debug\":1}}", JSTRIP_JSON);
	check("{\"payment\":{\"card_number\":\"4111\",\"amount\":5},"
	    "\"card_number\":1}", "payment.card_number",
	    "{\"payment\":{\"amount\":5},\"card_number\":1}", JSTRIP_JSON);
	/* through arrays, at any depth */
	check("{\"items\":[{\"cost\":1,\"id\":\"a\"},[{\"cost\":2}],3],"
	    "\"cost\":9}", "items.cost",
	    "{\"items\":[{\"id\":\"a\"},[{}],3],\"cost\":9}", JSTRIP_JSON);
	check("[{\"debug\":1,\"a\":1},[{\"debug\":2}],\"debug\"]", "debug",
	    "[{\"a\":1},[{}],\"debug\"]", JSTRIP_JSON);
	check("{\"a\":{\"b\":{\"c\":1,\"d\":2}},\"b\":{\"c\":3}}", "a.b.c,b",
	    "{\"a\":{\"b\":{\"d\":2}}}", JSTRIP_JSON);
	/* a path's name as a value or a deeper key stays */
	check("{\"a\":\"payment\",\"payment\":\"x\"}", "payment.card",
	    "{\"a\":\"payment\",\"payment\":\"x\"}", JSTRIP_JSON);
	/* escapes in names are decoded before they compare */
	check("{\"deb\\u0075g\":1,\"de\\\"bug\":2}", "debug",
	    "{\"de\\\"bug\":2}", JSTRIP_JSON);
	/* every kind of value removed whole */
	check("{\"d\":\"s,}\",\"e\":[1,{\"d\":[]}],\"f\":true,\"g\":-1.5e3,"
	    "\"h\":null}", "d,e,f,g,h", "{}", JSTRIP_JSON);
}

/* Whitespace and commas: the output stays valid, the layout of what
 * stays is kept. */
static void
test_layout(void **st)
{
	(void)st;
	check("{\n  \"a\": 1,\n  \"debug\": 2,\n  \"b\": 3\n}", "debug",
	    "{\n  \"a\": 1,\n  \"b\": 3\n}", JSTRIP_JSON);
	check("{\n  \"debug\": 2,\n  \"a\": 1\n}", "debug",
	    "{\n  \n  \"a\": 1\n}", JSTRIP_JSON);
	check("{ \"a\" : 1 , \"debug\" : [ 1 ] }", "debug",
	    "{ \"a\" : 1 }", JSTRIP_JSON);
	check(" [ ] ", "debug", " [ ] ", JSTRIP_JSON);
}

/* At most 63 bytes of whitespace after a ',' held for a member that may
 * go are kept, whatever the pieces. */
static void
test_long_whitespace(void **st)
{
	char in[512], want[512], nested[600];

	(void)st;
	snprintf(in, sizeof(in), "{\"a\":1,%100s\"b\":2, %100s\"c\":3}", "",
	    "");
	snprintf(want, sizeof(want), "{\"a\":1,%63s\"b\":2}", "");
	check(in, "c", want, JSTRIP_JSON);
	snprintf(want, sizeof(want), "{\"a\":1,%63s\"c\":3}", "");
	check(in, "b", want, JSTRIP_JSON);
	/* where no path is alive, nothing is touched */
	snprintf(nested, sizeof(nested), "{\"o\":%s}", in);
	check(nested, "x.y", nested, JSTRIP_JSON);
}

/* Not JSON, a JSON scalar, empty: unchanged. Invalid midway: what was
 * removed stays removed, the rest as it came. */
static void
test_not_json(void **st)
{
	(void)st;
	check("<html>debug</html>", "debug", "<html>debug</html>",
	    JSTRIP_NOT_JSON);
	check("  \"debug\"", "debug", "  \"debug\"", JSTRIP_NOT_JSON);
	check("42", "debug", "42", JSTRIP_NOT_JSON);
	check("", "debug", "", JSTRIP_NOT_JSON);
	check("{\"a\":01,\"debug\":1}", "debug", "{\"a\":01,\"debug\":1}",
	    JSTRIP_INVALID);
	check("{\"debug\":1,\"a\":tru}", "debug", "{\"a\":tru}",
	    JSTRIP_INVALID);
	check("{\"a\":1} trailing", "debug", "{\"a\":1} trailing",
	    JSTRIP_INVALID);
	check("{\"a\":1", "debug", "{\"a\":1", JSTRIP_INVALID);
	check("{\"a\":1,\"debug\":2", "debug", "{\"a\":1", JSTRIP_INVALID);
}

/* A name longer than any path's streams without being held. */
static void
test_long_names(void **st)
{
	char in[8192], want[8192];
	char *fields[] = { "debug" }, *res;
	uint64_t removed;

	(void)st;
	memset(in, 0, sizeof(in));
	strcpy(in, "{\"");
	memset(in + 2, 'k', 5000);
	strcat(in, "\":1,\"debug\":2}");
	strcpy(want, in);
	strcpy(strstr(want, ",\"debug\""), "}");
	assert_int_equal(run(in, fields, 1, 3, &res, &removed), JSTRIP_JSON);
	assert_string_equal(res, want);
	assert_int_equal(removed, 1);
	free(res);
}

static void
test_compile(void **st)
{
	struct jstrip_paths *ps;
	char err[200], *f[JSTRIP_PATHS_MAX + 1];
	char *bad1[] = { "a..b" }, *bad2[] = { ".a" }, *bad3[] = { "a." };
	char *bad4[] = { "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q" };
	char *ok[] = { "a", "b.c.d" };
	size_t i;

	(void)st;
	assert_int_equal(jstrip_compile(bad1, 1, &ps, err, sizeof(err)), -1);
	assert_string_equal(err, "field 'a..b' has an empty name (a path is "
	    "names joined by '.')");
	assert_int_equal(jstrip_compile(bad2, 1, &ps, err, sizeof(err)), -1);
	assert_int_equal(jstrip_compile(bad3, 1, &ps, err, sizeof(err)), -1);
	assert_int_equal(jstrip_compile(bad4, 1, &ps, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too long"));
	for (i = 0; i <= JSTRIP_PATHS_MAX; i++)
		f[i] = "x";
	assert_int_equal(jstrip_compile(f, JSTRIP_PATHS_MAX + 1, &ps, err,
	    sizeof(err)), -1);
	assert_int_equal(jstrip_compile(f, JSTRIP_PATHS_MAX, &ps, err,
	    sizeof(err)), 0);
	jstrip_paths_free(ps);
	assert_int_equal(jstrip_compile(ok, 2, &ps, err, sizeof(err)), 0);
	assert_int_equal(ps->n, 2);
	assert_int_equal(ps->p[1].nseg, 3);
	assert_int_equal(ps->maxseg, 1);
	jstrip_paths_free(ps);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_and_paths),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_not_json),
		cmocka_unit_test(test_long_whitespace),
		cmocka_unit_test(test_long_names),
		cmocka_unit_test(test_compile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
