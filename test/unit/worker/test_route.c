/*
 * Routing and path normalisation. Every input to route_normalize is
 * copied to the end of a page followed by a PROT_NONE page, and the output
 * buffer sits against another one, so reading or writing one byte too far
 * crashes the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "worker/route.h"

static size_t pagesz;
static char *in_page, *out_page;

static char *
guarded_page(void)
{
	char *p;

	p = mmap(NULL, 2 * pagesz, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(mprotect(p + pagesz, pagesz, PROT_NONE), 0);
	return p;
}

static int
setup(void **state)
{
	(void)state;
	pagesz = (size_t)sysconf(_SC_PAGESIZE);
	in_page = guarded_page();
	out_page = guarded_page();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	munmap(in_page, 2 * pagesz);
	munmap(out_page, 2 * pagesz);
	return 0;
}

/* Normalise s (len bytes) with an outcap-byte output ending at the guard. */
static int
norm(const char *s, size_t len, size_t outcap, char **out)
{
	char *in = in_page + pagesz - len;
	char *o = out_page + pagesz - outcap;

	memcpy(in, s, len);
	*out = o;
	return route_normalize(in, len, o, outcap);
}

struct ncase {
	const char *in;
	const char *want;	/* NULL: refused (-1) */
};

static const struct ncase ncases[] = {
	{ "/", "/" },
	{ "/a", "/a" },
	{ "/a/", "/a/" },
	{ "/A/B", "/A/B" },
	{ "/a/./b", "/a/b" },
	{ "/a/../b", "/b" },
	{ "/../a", NULL },
	{ "/a//b", "/a/b" },
	{ "//a", "/a" },
	{ "///", "/" },
	{ "/a//", "/a/" },
	{ "/%41", "/A" },
	{ "/a%2Fb", NULL },
	{ "/a%2fb", NULL },
	{ "/a%5Cb", NULL },
	{ "/a%5cb", NULL },
	{ "/a%00", NULL },
	{ "/%7e", "/~" },
	{ "/%7E", "/~" },
	{ "/a%2d%5F%2E", "/a-_." },
	{ "/%zz", NULL },
	{ "/a%", NULL },
	{ "/a%4", NULL },
	{ "/a%4g", NULL },
	{ "/a%g4", NULL },
	{ "/a?", NULL },	/* the caller splits the query off first */
	{ "/a?b=1", NULL },
	{ "/a#f", NULL },
	{ "/a/b/..", "/a/" },
	{ "/a/b/.", "/a/b/" },
	{ "/.", "/" },
	{ "/..", NULL },
	{ "/./.", "/" },
	{ "/a%20b", "/a%20b" },
	{ "/a%3ab", "/a%3Ab" },
	{ "/a%c3%a9", "/a%C3%A9" },
	{ "/a%25", "/a%25" },
	{ "/%2541", "/%2541" },	/* decoded once only */
	{ "/a/%2E/b", "/a/b" },
	{ "/a/%2e%2E/b", "/b" },
	{ "/a/.%2e", "/" },
	{ "/%2e%2e/a", NULL },
	{ "/a/%2E%2E%2F", NULL },
	{ "/a/b/../..", "/" },
	{ "/a/b/../../..", NULL },
	{ "/a/b/c/../../d", "/a/d" },
	{ "/a/./../b", "/b" },
	{ "/a/.//b", "/a/b" },
	{ "/a/..//b", "/b" },
	{ "/a/b/./", "/a/b/" },
	{ "/a/b/../", "/a/" },
	{ "/a/.../b", "/a/.../b" },
	{ "/a/..b/c", "/a/..b/c" },
	{ "/a/.b", "/a/.b" },
	{ "/a/b..", "/a/b.." },
	{ "/!$&'()*+,;=:@-._~", "/!$&'()*+,;=:@-._~" },
	{ "/orders/7", "/orders/7" },
	/* Tomcat-style parameters on dot-segments are refused */
	{ "/a/..;/b", NULL },
	{ "/a/.;/b", NULL },
	{ "/..;x/etc", NULL },
	{ "/a/%2e%2E;/b", NULL },
	{ "/a/..;", NULL },
	{ "/a;v=1/b", "/a;v=1/b" },
	{ "/a/b;/c", "/a/b;/c" },
	{ "/a/...;/b", "/a/...;/b" },
	{ "", NULL },
	{ "a/b", NULL },
	{ "*", NULL },
	{ "/a b", NULL },
	{ "/a\\b", NULL },
	{ "/a\"b", NULL },
	{ "/a<b>", NULL },
	{ "/a[1]", NULL },
	{ "/a{b}", NULL },
	{ "/a|b", NULL },
	{ "/a^b", NULL },
	{ "/a`b", NULL },
	{ "/a\tb", NULL },
	{ "/a\rb", NULL },
	{ "/a\x7f", NULL },
	{ "/\xc3\xa9", NULL },
};

static void
test_normalize_table(void **state)
{
	size_t i, len;
	char *out;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(ncases) / sizeof(ncases[0]); i++) {
		const struct ncase *c = &ncases[i];

		len = strlen(c->in);
		/* len + 1 always suffices: the output never grows. */
		rc = norm(c->in, len, len + 1, &out);
		if (c->want == NULL) {
			if (rc != -1)
				fail_msg("\"%s\": want -1, got %d", c->in, rc);
			continue;
		}
		if (rc != (int)strlen(c->want) || strcmp(out, c->want) != 0)
			fail_msg("\"%s\": want \"%s\", got %d \"%s\"", c->in,
			    c->want, rc, rc >= 0 ? out : "");
	}
}

static void
test_normalize_nul(void **state)
{
	char *out;

	(void)state;
	assert_int_equal(norm("/a\0b", 4, 8, &out), -1);
	assert_int_equal(norm("/\0", 2, 8, &out), -1);
}

static void
test_normalize_small(void **state)
{
	char *out;

	(void)state;
	assert_int_equal(norm("/abc", 4, 0, &out), -2);
	assert_int_equal(norm("/abc", 4, 1, &out), -2);
	assert_int_equal(norm("/abc", 4, 4, &out), -2);
	assert_int_equal(norm("/abc", 4, 5, &out), 4);
	assert_string_equal(out, "/abc");
	assert_int_equal(norm("/a%20b", 6, 6, &out), -2);
	assert_int_equal(norm("/a%20b", 6, 7, &out), 6);
	assert_string_equal(out, "/a%20b");
	assert_int_equal(norm("/a/", 3, 3, &out), -2);
	assert_int_equal(norm("/a/", 3, 4, &out), 3);
	/* Shrinking input fits in less than len + 1. */
	assert_int_equal(norm("/%41", 4, 3, &out), 2);
	assert_string_equal(out, "/A");
	assert_int_equal(norm("/", 1, 2, &out), 1);
	assert_string_equal(out, "/");
	/* A refusal wins over the size when it comes first. */
	assert_int_equal(norm("/%2F", 4, 2, &out), -1);
}

/* Random paths from a small alphabet: never crash, never grow, and a
 * normalised path normalises to itself. */
static void
test_normalize_random(void **state)
{
	static const char alpha[] = "/./%2e%2E%41%2f%zza~b//..";
	char buf[64], again[64];
	uint32_t x = 12345;
	size_t len, k;
	char *out;
	int i, rc, rc2;

	(void)state;
	for (i = 0; i < 20000; i++) {
		x = x * 1103515245u + 12345u;
		len = 1 + (x >> 16) % 24;
		buf[0] = '/';
		for (k = 1; k < len; k++) {
			x = x * 1103515245u + 12345u;
			buf[k] = alpha[(x >> 16) % (sizeof(alpha) - 1)];
		}
		rc = norm(buf, len, len + 1, &out);
		assert_true(rc == -1 || (rc >= 1 && (size_t)rc <= len));
		if (rc < 0)
			continue;
		assert_int_equal(out[0], '/');
		memcpy(again, out, (size_t)rc + 1);
		rc2 = norm(again, (size_t)rc, (size_t)rc + 1, &out);
		assert_int_equal(rc2, rc);
		assert_memory_equal(out, again, (size_t)rc);
	}
}

/* Routing fixtures, built by hand as config_load would leave them. */

static pcre2_code *
compile(const char *pat)
{
	pcre2_code *re;
	PCRE2_SIZE off;
	int err;

	re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, 0, &err,
	    &off, NULL);
	assert_non_null(re);
	/* Without JIT route.c falls back to pcre2_match: both are fine. */
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	return re;
}

enum {
	R_HOME, R_ORDERS, R_CATALOG, R_LEGACY, R_ADMIN, R_ADMIN_OPEN,
	R_DUP, R_DUP_X, R_V6, R_NOJIT, R_ROOT, R__COUNT
};

static struct cfg_route routes[R__COUNT];
static struct config cfg;

static int
route_setup(void **state)
{
	struct cfg_route *r;
	size_t i;

	(void)state;
	memset(routes, 0, sizeof(routes));
	for (i = 0; i < R__COUNT; i++) {
		routes[i].service = 0;
		routes[i].rl_tier = -1;
	}
	r = &routes[R_HOME];
	r->name = "home";
	r->path = "/api/home";
	r->methods = METHOD_BIT(M_GET);
	r = &routes[R_ORDERS];
	r->name = "orders";
	r->prefix = "/orders";
	r->methods = METHOD_BIT(M_GET) | METHOD_BIT(M_POST);
	r = &routes[R_CATALOG];
	r->name = "catalog";
	r->prefix = "/products";
	r->host = "api.example.com";
	r->rewrite_pattern = "^/products/(.*)$";
	r->rewrite_re = compile(r->rewrite_pattern);
	r->rewrite_to = "/v2/products/$1";
	r = &routes[R_LEGACY];
	r->name = "legacy";
	r->regex = "^/v1/(users|orders)/([0-9]+)$";
	r->re = compile(r->regex);
	r = &routes[R_ADMIN];
	r->name = "admin";
	r->prefix = "/admin";
	r->methods = METHOD_BIT(M_DELETE) | METHOD_BIT(M_PUT);
	r = &routes[R_ADMIN_OPEN];
	r->name = "admin-open";
	r->prefix = "/admin/open";
	r = &routes[R_DUP];
	r->name = "dup";
	r->prefix = "/dup";
	r = &routes[R_DUP_X];
	r->name = "dup-x";
	r->path = "/dup/x";
	r = &routes[R_V6];
	r->name = "v6";
	r->prefix = "/v6";
	r->host = "[::1]";
	r = &routes[R_NOJIT];
	r->name = "nojit";
	r->regex = "^/nojit/(a)(b)(c)$";
	/* Deliberately not JIT-compiled: exercises the pcre2_match path. */
	r->re = pcre2_compile((PCRE2_SPTR)r->regex, PCRE2_ZERO_TERMINATED, 0,
	    &(int){0}, &(PCRE2_SIZE){0}, NULL);
	r = &routes[R_ROOT];
	r->name = "root";
	r->prefix = "";
	r->host = "fallback.test";
	cfg.routes = routes;
	cfg.nroutes = R__COUNT;
	return 0;
}

static int
route_teardown(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < R__COUNT; i++) {
		pcre2_code_free(routes[i].re);
		pcre2_code_free(routes[i].rewrite_re);
	}
	return 0;
}

static int
find(struct route_match_data *md, enum http_method m, const char *host,
    const char *path, unsigned *allow)
{
	return route_find(&cfg, md, m, host, host ? strlen(host) : 0, path,
	    strlen(path), allow);
}

static void
test_find_prefix(void **state)
{
	struct route_match_data *md = route_match_data_new(&cfg);
	unsigned allow = 0;

	(void)state;
	assert_non_null(md);
	assert_int_equal(find(md, M_GET, "h", "/orders", &allow), R_ORDERS);
	assert_int_equal(find(md, M_GET, "h", "/orders/", &allow), R_ORDERS);
	assert_int_equal(find(md, M_GET, "h", "/orders/7", &allow), R_ORDERS);
	assert_int_equal(find(md, M_POST, "h", "/orders/7/items", &allow),
	    R_ORDERS);
	assert_int_equal(find(md, M_GET, "h", "/ordersx", &allow), -404);
	assert_int_equal(allow, 0);
	assert_int_equal(find(md, M_GET, "h", "/order", &allow), -404);
	assert_int_equal(find(md, M_GET, "h", "/", &allow), -404);
	route_match_data_free(md);
}

static void
test_find_exact(void **state)
{
	struct route_match_data *md = route_match_data_new(&cfg);
	unsigned allow = 0;

	(void)state;
	assert_int_equal(find(md, M_GET, "h", "/api/home", &allow), R_HOME);
	assert_int_equal(find(md, M_GET, "h", "/api/home/", &allow), -404);
	assert_int_equal(find(md, M_GET, "h", "/api/homex", &allow), -404);
	assert_int_equal(find(md, M_GET, "h", "/api", &allow), -404);
	/* HEAD is allowed wherever GET is. */
	assert_int_equal(find(md, M_HEAD, "h", "/api/home", &allow), R_HOME);
	route_match_data_free(md);
}

static void
test_find_regex(void **state)
{
	struct route_match_data *md = route_match_data_new(&cfg);
	unsigned allow = 0;

	(void)state;
	assert_int_equal(find(md, M_GET, "h", "/v1/users/12", &allow),
	    R_LEGACY);
	assert_int_equal(find(md, M_DELETE, "h", "/v1/orders/3", &allow),
	    R_LEGACY);
	assert_int_equal(find(md, M_GET, "h", "/v1/users/x", &allow), -404);
	assert_int_equal(find(md, M_GET, "h", "/v1/carts/1", &allow), -404);
	assert_int_equal(find(md, M_GET, "h", "/v1/users/1/", &allow), -404);
	assert_int_equal(find(md, M_GET, "h", "/nojit/abc", &allow), R_NOJIT);
	assert_int_equal(find(md, M_GET, "h", "/nojit/abd", &allow), -404);
	/* Without per-worker scratch a temporary one is used. */
	assert_int_equal(find(NULL, M_GET, "h", "/v1/users/12", &allow),
	    R_LEGACY);
	assert_int_equal(find(NULL, M_GET, "h", "/nojit/abc", &allow),
	    R_NOJIT);
	route_match_data_free(md);
}

static void
test_find_method(void **state)
{
	struct route_match_data *md = route_match_data_new(&cfg);
	unsigned allow = 0;
	char hdr[128];

	(void)state;
	assert_int_equal(find(md, M_POST, "h", "/api/home", &allow), -405);
	assert_int_equal(allow, METHOD_BIT(M_GET));
	route_allow_header(allow, hdr, sizeof(hdr));
	assert_string_equal(hdr, "GET, HEAD");

	allow = 0;
	assert_int_equal(find(md, M_PUT, "h", "/orders/7", &allow), -405);
	assert_int_equal(allow, METHOD_BIT(M_GET) | METHOD_BIT(M_POST));
	route_allow_header(allow, hdr, sizeof(hdr));
	assert_string_equal(hdr, "GET, HEAD, POST");

	/* HEAD where only POST is allowed is still refused. */
	allow = 0;
	routes[R_HOME].methods = METHOD_BIT(M_POST);
	assert_int_equal(find(md, M_HEAD, "h", "/api/home", &allow), -405);
	assert_int_equal(allow, METHOD_BIT(M_POST));
	routes[R_HOME].methods = METHOD_BIT(M_GET);

	/* /admin allows DELETE and PUT; /admin/open, later, allows any:
	 * a later full match beats an earlier method mismatch. */
	assert_int_equal(find(md, M_DELETE, "h", "/admin/open/x", &allow),
	    R_ADMIN);
	assert_int_equal(find(md, M_GET, "h", "/admin/open/x", &allow),
	    R_ADMIN_OPEN);
	allow = 0;
	assert_int_equal(find(md, M_GET, "h", "/admin/x", &allow), -405);
	assert_int_equal(allow, METHOD_BIT(M_DELETE) | METHOD_BIT(M_PUT));
	route_allow_header(allow, hdr, sizeof(hdr));
	assert_string_equal(hdr, "PUT, DELETE");
	/* The path matches but the host does not: 404, not 405. */
	assert_int_equal(find(md, M_GET, "other", "/products/1", &allow), -404);
	route_match_data_free(md);
}

static void
test_find_host(void **state)
{
	struct route_match_data *md = route_match_data_new(&cfg);
	unsigned allow;

	(void)state;
	assert_int_equal(find(md, M_GET, "api.example.com", "/products/1",
	    &allow), R_CATALOG);
	assert_int_equal(find(md, M_GET, "API.Example.COM", "/products/1",
	    &allow), R_CATALOG);
	assert_int_equal(find(md, M_GET, "api.example.com:8080", "/products",
	    &allow), R_CATALOG);
	assert_int_equal(find(md, M_GET, "api.example.com.", "/products",
	    &allow), R_CATALOG);
	assert_int_equal(find(md, M_GET, "api.example.co", "/products",
	    &allow), -404);
	assert_int_equal(find(md, M_GET, "api.example.com.evil", "/products",
	    &allow), -404);
	assert_int_equal(find(md, M_GET, "xapi.example.com", "/products",
	    &allow), -404);
	assert_int_equal(find(md, M_GET, NULL, "/products", &allow), -404);
	assert_int_equal(find(md, M_GET, "", "/products", &allow), -404);
	/* IPv6 literal with and without a port. */
	assert_int_equal(find(md, M_GET, "[::1]:8080", "/v6/a", &allow), R_V6);
	assert_int_equal(find(md, M_GET, "[::1]", "/v6", &allow), R_V6);
	assert_int_equal(find(md, M_GET, "[::2]:8080", "/v6", &allow), -404);
	assert_int_equal(find(md, M_GET, "[::1", "/v6", &allow), -404);
	routes[R_V6].host = "::1";
	assert_int_equal(find(md, M_GET, "[::1]:80", "/v6", &allow), R_V6);
	routes[R_V6].host = "[::1]";
	/* An empty prefix (from "/") matches every path on its host. */
	assert_int_equal(find(md, M_GET, "fallback.test:81", "/", &allow),
	    R_ROOT);
	assert_int_equal(find(md, M_GET, "fallback.test", "/zz/y", &allow),
	    R_ROOT);
	routes[R_ROOT].prefix = "/";
	assert_int_equal(find(md, M_GET, "fallback.test", "/zz", &allow),
	    R_ROOT);
	routes[R_ROOT].prefix = "";
	route_match_data_free(md);
}

static void
test_find_first_wins(void **state)
{
	struct route_match_data *md = route_match_data_new(&cfg);
	unsigned allow;

	(void)state;
	assert_int_equal(find(md, M_GET, "h", "/dup/x", &allow), R_DUP);
	assert_int_equal(find(md, M_GET, "h", "/dup", &allow), R_DUP);
	/* /orders comes before the root catch-all of fallback.test. */
	assert_int_equal(find(md, M_GET, "fallback.test", "/orders/1",
	    &allow), R_ORDERS);
	route_match_data_free(md);
}

static int
rewrite(struct cfg_route *r, struct route_match_data *md, const char *pat,
    const char *to, const char *path, char *out, size_t outcap)
{
	int rc;

	r->rewrite_pattern = (char *)pat;
	r->rewrite_re = pat ? compile(pat) : NULL;
	r->rewrite_to = (char *)to;
	rc = route_rewrite(r, md, path, strlen(path), out, outcap);
	pcre2_code_free(r->rewrite_re);
	r->rewrite_re = NULL;
	return rc;
}

static void
test_rewrite(void **state)
{
	struct route_match_data *md = route_match_data_new(&cfg);
	struct cfg_route r;
	char out[64];

	(void)state;
	memset(&r, 0, sizeof(r));
	/* The demo's catalog route, with the md sized from the config. */
	assert_int_equal(route_rewrite(&routes[R_CATALOG], md, "/products/42",
	    12, out, sizeof(out)), 15);
	assert_string_equal(out, "/v2/products/42");
	assert_int_equal(route_rewrite(&routes[R_CATALOG], md, "/products",
	    9, out, sizeof(out)), 0);
	assert_int_equal(route_rewrite(&routes[R_ORDERS], md, "/orders/1",
	    9, out, sizeof(out)), 0);

	assert_int_equal(rewrite(&r, md, "^/a/(\\w+)/(\\w+)$",
	    "/b/${2}/$1/$$/${0}", "/a/x/yy", out, sizeof(out)), 17);
	assert_string_equal(out, "/b/yy/x/$//a/x/yy");
	/* Only the matched part is replaced. */
	assert_int_equal(rewrite(&r, md, "^/api", "/v2", "/api/x", out,
	    sizeof(out)), 5);
	assert_string_equal(out, "/v2/x");
	assert_int_equal(rewrite(&r, md, "/old/", "/new/", "/a/old/b", out,
	    sizeof(out)), 8);
	assert_string_equal(out, "/a/new/b");
	/* Unset groups insert nothing; a stray '$' is literal. */
	assert_int_equal(rewrite(&r, md, "^/(a)?(b)$", "/[$1]$2$x${", "/b",
	    out, sizeof(out)), 8);
	assert_string_equal(out, "/[]b$x${");
	/* More groups than the md holds (one made from a config with no
	 * regexes has room for $0 only): matched again, groups kept. */
	{
		struct config empty;
		struct route_match_data *small;

		memset(&empty, 0, sizeof(empty));
		small = route_match_data_new(&empty);
		assert_non_null(small);
		assert_int_equal(rewrite(&r, small, "^/(\\w)(\\w)$", "/$2$1",
		    "/ab", out, sizeof(out)), 3);
		assert_string_equal(out, "/ba");
		route_match_data_free(small);
	}
	assert_int_equal(rewrite(&r, NULL, "^/(\\w)(\\w)$", "/$2$1", "/ab",
	    out, sizeof(out)), 3);
	assert_string_equal(out, "/ba");
	/* An empty result is the root. */
	assert_int_equal(rewrite(&r, md, "^/gone$", "", "/gone", out,
	    sizeof(out)), 1);
	assert_string_equal(out, "/");
	/* Does not match: 0, use the path as is. */
	assert_int_equal(rewrite(&r, md, "^/zz", "/y", "/a", out,
	    sizeof(out)), 0);
	/* Too small for the result and its NUL. */
	assert_int_equal(rewrite(&r, md, "^/products/(.*)$",
	    "/v2/products/$1", "/products/42", out, 15), -1);
	assert_int_equal(rewrite(&r, md, "^/products/(.*)$",
	    "/v2/products/$1", "/products/42", out, 16), 15);
	assert_int_equal(rewrite(&r, md, "^/p", "/q", "/p", out, 0), -1);
	route_match_data_free(md);
}

static void
test_match_data_size(void **state)
{
	struct route_match_data *md = route_match_data_new(&cfg);
	char out[64];

	(void)state;
	/* R_NOJIT has 3 groups, the most in cfg: $3 must be reachable when
	 * a rewrite uses that many. */
	routes[R_NOJIT].rewrite_re = compile("^/nojit/(a)(b)(c)$");
	routes[R_NOJIT].rewrite_to = "/$3$2$1";
	route_match_data_free(md);
	md = route_match_data_new(&cfg);
	assert_int_equal(route_rewrite(&routes[R_NOJIT], md, "/nojit/abc", 10,
	    out, sizeof(out)), 4);
	assert_string_equal(out, "/cba");
	pcre2_code_free(routes[R_NOJIT].rewrite_re);
	routes[R_NOJIT].rewrite_re = NULL;
	routes[R_NOJIT].rewrite_to = NULL;
	route_match_data_free(md);
	route_match_data_free(NULL);
}

static void
test_allow_header(void **state)
{
	char hdr[128];
	unsigned all = 0;
	int m;

	(void)state;
	assert_int_equal(route_allow_header(0, hdr, sizeof(hdr)), 0);
	assert_string_equal(hdr, "");
	assert_int_equal(route_allow_header(METHOD_BIT(M_GET), hdr,
	    sizeof(hdr)), 9);
	assert_string_equal(hdr, "GET, HEAD");
	route_allow_header(METHOD_BIT(M_POST) | METHOD_BIT(M_GET), hdr,
	    sizeof(hdr));
	assert_string_equal(hdr, "GET, HEAD, POST");
	route_allow_header(METHOD_BIT(M_HEAD), hdr, sizeof(hdr));
	assert_string_equal(hdr, "HEAD");
	for (m = 0; m < M__COUNT; m++)
		all |= METHOD_BIT(m);
	route_allow_header(all, hdr, sizeof(hdr));
	assert_string_equal(hdr,
	    "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT");
	/* Short buffers hold whole names only. */
	assert_int_equal(route_allow_header(METHOD_BIT(M_GET) |
	    METHOD_BIT(M_POST), hdr, 10), 9);
	assert_string_equal(hdr, "GET, HEAD");
	assert_int_equal(route_allow_header(METHOD_BIT(M_GET), hdr, 3), 0);
	assert_string_equal(hdr, "");
	assert_int_equal(route_allow_header(METHOD_BIT(M_GET), hdr, 0), 0);
}

int
main(void)
{
	const struct CMUnitTest norm_tests[] = {
		cmocka_unit_test(test_normalize_table),
		cmocka_unit_test(test_normalize_nul),
		cmocka_unit_test(test_normalize_small),
		cmocka_unit_test(test_normalize_random),
	};
	const struct CMUnitTest route_tests[] = {
		cmocka_unit_test(test_find_prefix),
		cmocka_unit_test(test_find_exact),
		cmocka_unit_test(test_find_regex),
		cmocka_unit_test(test_find_method),
		cmocka_unit_test(test_find_host),
		cmocka_unit_test(test_find_first_wins),
		cmocka_unit_test(test_rewrite),
		cmocka_unit_test(test_match_data_size),
		cmocka_unit_test(test_allow_header),
	};
	int fails;

	fails = cmocka_run_group_tests_name("normalize", norm_tests, setup,
	    teardown);
	fails += cmocka_run_group_tests_name("route", route_tests,
	    route_setup, route_teardown);
	return fails != 0;
}
