/*
 * The HTTP the cache reads: Cache-Control directives, HTTP dates in their
 * three forms, entity-tag lists, Vary names, and the freshness a stored
 * response gets (RFC 9111 3 and 4.2, as a shared cache).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "policies/cache_http.h"

static struct cache_cc
cc_of(const char *v)
{
	struct cache_cc cc;

	cache_cc_init(&cc);
	cache_cc_parse(v, strlen(v), &cc);
	return cc;
}

static void
test_cache_control(void **st)
{
	struct cache_cc cc;

	(void)st;
	cc = cc_of("public, max-age=60, s-maxage=\"30\"");
	assert_true(cc.public_);
	assert_int_equal(cc.max_age, 60);
	assert_int_equal(cc.s_maxage, 30);
	assert_false(cc.no_store || cc.no_cache || cc.private_);
	cc = cc_of("No-Store");
	assert_true(cc.no_store);
	/* A field list makes no less of a directive. */
	cc = cc_of("private=\"Set-Cookie, X-A\", no-cache=\"X-B\"");
	assert_true(cc.private_ && cc.no_cache);
	assert_int_equal(cc.max_age, CC_UNSET);
	/* An invalid delta is 0 (stale). */
	cc = cc_of("max-age=ten, stale-while-revalidate=5, "
	    "stale-if-error=99999999999");
	assert_int_equal(cc.max_age, 0);
	assert_int_equal(cc.stale_while_revalidate, 5);
	assert_int_equal(cc.stale_if_error, 2147483648LL);
	cc = cc_of(" , must-revalidate ,proxy-revalidate,, unknown=1");
	assert_true(cc.must_revalidate && cc.proxy_revalidate);
	cc = cc_of("max-age");
	assert_int_equal(cc.max_age, 0);
	/* Two fields add up. */
	cache_cc_init(&cc);
	cache_cc_parse("max-age=5", 9, &cc);
	cache_cc_parse("no-cache", 8, &cc);
	assert_true(cc.no_cache);
	assert_int_equal(cc.max_age, 5);
}

static void
test_dates(void **st)
{
	int64_t t;
	const char *bad[] = { "", "Sun, 06 Nov 1994 08:49:37 UTC",
	    "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nox 1994 08:49:37 GMT",
	    "Sun, 06 Nov 1994 25:49:37 GMT", "0", "-1",
	    "Sunday, 06-Nov-94 08:49:37", "Sun Nov  6 08:49:37" };
	size_t i;

	(void)st;
	/* The three forms of RFC 9110 5.6.7, one instant. */
	assert_int_equal(cache_http_date("Sun, 06 Nov 1994 08:49:37 GMT", 29,
	    &t), 0);
	assert_int_equal(t, 784111777);
	assert_int_equal(cache_http_date("Sunday, 06-Nov-94 08:49:37 GMT", 30,
	    &t), 0);
	assert_int_equal(t, 784111777);
	assert_int_equal(cache_http_date("Sun Nov  6 08:49:37 1994", 24, &t),
	    0);
	assert_int_equal(t, 784111777);
	assert_int_equal(cache_http_date(" Thu, 01 Jan 1970 00:00:00 GMT ",
	    31, &t), 0);
	assert_int_equal(t, 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cache_http_date(bad[i], strlen(bad[i]), &t),
		    -1);
}

static void
test_etag_match(void **st)
{
	(void)st;
	assert_true(cache_etag_match("\"a\"", 3, "\"a\"", 3));
	assert_true(cache_etag_match("W/\"a\"", 5, "\"a\"", 3));
	assert_true(cache_etag_match("\"x\", W/\"a\"", 10, "W/\"a\"", 5));
	assert_true(cache_etag_match("*", 1, "\"z\"", 3));
	assert_false(cache_etag_match("\"ab\"", 4, "\"a\"", 3));
	assert_false(cache_etag_match("\"x\",\"y\"", 7, "\"a\"", 3));
	assert_false(cache_etag_match("", 0, "\"a\"", 3));
}

static void
test_vary_names(void **st)
{
	char out[64];
	size_t len = 0;
	bool star = false;

	(void)st;
	assert_int_equal(cache_vary_names("Accept-Encoding, X-Lang", 23, out,
	    &len, sizeof(out), &star), 0);
	assert_int_equal(cache_vary_names("x-lang,ACCEPT", 13, out, &len,
	    sizeof(out), &star), 0);
	assert_false(star);
	assert_int_equal(len, strlen(",accept-encoding,x-lang,accept"));
	assert_memory_equal(out, ",accept-encoding,x-lang,accept", len);
	assert_int_equal(cache_vary_names(" * ", 3, out, &len, sizeof(out),
	    &star), 0);
	assert_true(star);
	/* Full: refused, not cut. */
	assert_int_equal(cache_vary_names("a-header-name-of-forty-bytes-in-all-"
	    "xxxx", 40, out, &len, sizeof(out), &star), -1);
}

#define H(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

static void
test_freshness(void **st)
{
	struct cache_fresh f;
	int64_t now = 784111777;	/* the date below */
	struct http1_header none[] = { H("Content-Type", "text/plain") };
	struct http1_header ma[] = { H("Cache-Control", "max-age=10"),
	    H("Expires", "Sun, 06 Nov 1994 09:49:37 GMT") };
	struct http1_header sm[] = { H("cache-control", "max-age=10, "
	    "s-maxage=20, stale-while-revalidate=5") };
	struct http1_header ex[] = {
	    H("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
	    H("Expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
	    H("Age", "7"), H("ETag", "\"e\""),
	    H("Last-Modified", "Sun, 06 Nov 1994 08:00:00 GMT") };
	struct http1_header badexp[] = { H("Expires", "0") };
	struct http1_header ns[] = { H("Cache-Control", "no-store") };
	struct http1_header pr[] = { H("Cache-Control", "private") };
	struct http1_header nc[] = { H("Cache-Control", "no-cache") };
	struct http1_header mr[] = { H("Cache-Control", "max-age=5, "
	    "must-revalidate, stale-if-error=60") };
	struct http1_header zero[] = { H("Cache-Control", "max-age=0") };
	struct http1_header zsie[] = { H("Cache-Control", "max-age=0, "
	    "stale-if-error=60") };

	(void)st;
	/* No word from the upstream: the route's ttl_s and stale_s. */
	cache_freshness(none, 1, now, 60, 30, &f);
	assert_true(f.storable);
	assert_int_equal(f.lifetime_s, 60);
	assert_int_equal(f.swr_s, 30);
	assert_int_equal(f.sie_s, 30);
	assert_false(f.has_etag);
	/* max-age over Expires and over ttl_s. */
	cache_freshness(ma, 2, now, 60, 0, &f);
	assert_true(f.storable);
	assert_int_equal(f.lifetime_s, 10);
	/* s-maxage over max-age; it also forbids serving stale. */
	cache_freshness(sm, 1, now, 60, 30, &f);
	assert_int_equal(f.lifetime_s, 20);
	assert_true(f.revalidate);
	assert_int_equal(f.swr_s, 0);
	/* Expires minus Date; Age, ETag and Last-Modified read. */
	cache_freshness(ex, 5, now + 1000, 5, 0, &f);
	assert_true(f.storable);
	assert_int_equal(f.lifetime_s, 60);
	assert_int_equal(f.age_s, 7);
	assert_true(f.has_etag);
	assert_int_equal(f.last_modified, 784108800);
	/* An invalid Expires is the past. */
	cache_freshness(badexp, 1, now, 60, 0, &f);
	assert_false(f.storable);
	cache_freshness(ns, 1, now, 60, 0, &f);
	assert_false(f.storable);
	assert_string_equal(f.why, "no-store");
	cache_freshness(pr, 1, now, 60, 0, &f);
	assert_string_equal(f.why, "private");
	cache_freshness(nc, 1, now, 60, 0, &f);
	assert_string_equal(f.why, "no-cache");
	cache_freshness(mr, 1, now, 60, 30, &f);
	assert_true(f.storable && f.revalidate);
	assert_int_equal(f.sie_s, 0);
	cache_freshness(zero, 1, now, 60, 0, &f);
	assert_false(f.storable);
	/* Stale on arrival, but servable on error: kept for that. */
	cache_freshness(zsie, 1, now, 60, 0, &f);
	assert_true(f.storable);
	assert_int_equal(f.sie_s, 60);
}

static void
test_statuses(void **st)
{
	int yes[] = { 200, 203, 204, 300, 301, 404, 405, 410, 414, 501 };
	int no[] = { 201, 206, 302, 304, 307, 400, 401, 403, 429, 500, 502,
	    503 };
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		assert_true(cache_status_storable(yes[i]));
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_false(cache_status_storable(no[i]));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_control),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_etag_match),
		cmocka_unit_test(test_vary_names),
		cmocka_unit_test(test_freshness),
		cmocka_unit_test(test_statuses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
