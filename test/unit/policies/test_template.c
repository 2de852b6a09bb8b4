/*
 * Templates: what parses (strictly in paths, loosely in header values),
 * and each value encoded where it lands: a consumer or a group that would
 * climb out of its path segment or add a query parameter stays one
 * value; a query value is decoded first; a header value keeps its text
 * but not control bytes; a missing value is empty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../../policies/template.h"

static struct arena_cache cache;

static void
test_parse(void **st)
{
	struct tmpl *t;
	char err[200];

	(void)st;
	assert_int_equal(tmpl_parse("/u/{consumer}/{1}?q={query.q}&h="
	    "{header.X-Y}", true, &t, err, sizeof(err)), 0);
	assert_int_equal(t->nparts, 8);
	assert_true(t->consumer);
	assert_int_equal(t->max_group, 1);
	assert_false(tmpl_plain(t));
	tmpl_free(t);
	assert_int_equal(tmpl_parse("/plain", true, &t, err, sizeof(err)), 0);
	assert_true(tmpl_plain(t));
	tmpl_free(t);
	assert_int_equal(tmpl_parse("/u/{user}", true, &t, err, sizeof(err)),
	    -1);
	assert_string_equal(err, "'{user}' is not a template (use "
	    "{consumer}, {query.NAME}, {header.NAME} or {1}..{9})");
	assert_int_equal(tmpl_parse("/u/{", true, &t, err, sizeof(err)), -1);
	assert_int_equal(tmpl_parse("/u/{0}", true, &t, err, sizeof(err)), -1);
	assert_int_equal(tmpl_parse("/u/{header.a b}", true, &t, err,
	    sizeof(err)), -1);
	assert_int_equal(tmpl_parse("/u/{query.}", true, &t, err, sizeof(err)),
	    -1);
	/* In a header value an unknown {...} is text. */
	assert_int_equal(tmpl_parse("{\"a\": {1}}", false, &t, err,
	    sizeof(err)), 0);
	assert_int_equal(t->max_group, 1);
	tmpl_free(t);
}

struct fixture {
	struct xctx x;
	struct cfg_route r;
	struct http1_header h[2];
};

static void
setup_x(struct fixture *f, const char *consumer, const char *path,
    const char *query)
{
	int ec;
	PCRE2_SIZE eo;

	memset(f, 0, sizeof(*f));
	arena_init(&f->x.arena, &cache);
	f->r.re = pcre2_compile((PCRE2_SPTR)"^/a/([^/]+)/(x)?(y)?$",
	    PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
	assert_non_null(f->r.re);
	f->x.route = &f->r;
	f->x.path = path;
	f->x.path_len = strlen(path);
	f->x.query = query;
	f->x.query_len = query != NULL ? strlen(query) : 0;
	f->x.id.consumer = consumer;
	f->x.id.consumer_len = consumer != NULL ? strlen(consumer) : 0;
	f->h[0] = (struct http1_header){ "X-Lang", 6, "fr\x01" "CH", 5 };
	f->h[1] = (struct http1_header){ "X-Empty", 7, "", 0 };
	f->x.headers = f->h;
	f->x.nheaders = 2;
}

static void
done_x(struct fixture *f)
{
	pcre2_code_free(f->r.re);
	arena_reset(&f->x.arena);
}

static void
expect(struct fixture *f, const char *tpl, enum tmpl_enc enc,
    const char *want)
{
	struct tmpl *t;
	struct tmpl_env env;
	char err[200], *got;
	size_t len;

	assert_int_equal(tmpl_parse(tpl, enc == TE_URL, &t, err, sizeof(err)),
	    0);
	tmpl_env_init(&env, &f->x);
	got = tmpl_expand(t, &env, enc, &len);
	assert_non_null(got);
	if (strcmp(got, want) != 0 || strlen(want) != len)
		fail_msg("'%s': got '%s', want '%s'", tpl, got, want);
	tmpl_free(t);
}

static void
test_expand(void **st)
{
	struct fixture f;

	(void)st;
	setup_x(&f, "../admin", "/a/b%20c%3f/", "?user=a%26b%3Dc+d&x&q=1&q=2");
	/* a consumer stays one segment */
	expect(&f, "/users/{consumer}", TE_URL, "/users/..%2Fadmin");
	/* a query value is decoded, then encoded as one value */
	expect(&f, "/r?user={query.user}", TE_URL, "/r?user=a%26b%3Dc%20d");
	expect(&f, "/r?{query.q}{query.x}{query.none}", TE_URL, "/r?1");
	/* regex groups of the normalised path, decoded first */
	expect(&f, "/g/{1}/{2}{3}", TE_URL, "/g/b%20c%3F/");
	/* headers: the first of the name; missing is empty */
	expect(&f, "/h/{header.x-lang}/{header.X-Nope}", TE_URL,
	    "/h/fr%01CH/");
	/* in a header value only control bytes are encoded */
	expect(&f, "{header.X-Lang} {query.user} ({consumer})", TE_HEADER,
	    "fr%01CH a&b=c d (../admin)");
	expect(&f, "{\"a\": 1}", TE_HEADER, "{\"a\": 1}");
	done_x(&f);
	/* No consumer, no query, no match: all empty. */
	setup_x(&f, NULL, "/other", NULL);
	expect(&f, "/u/{consumer}/{query.q}/{1}", TE_URL, "/u///");
	done_x(&f);
}

static int
teardown(void **st)
{
	(void)st;
	arena_cache_free(&cache);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_expand),
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
