/*
 * Unit tests of worker/http1.c. Every input is copied to the very end of a
 * mapping whose next page is PROT_NONE, so a parser that reads one byte too
 * far crashes the test instead of passing by luck.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../../worker/http1.c"

#define MAXH	16
#define MAXHEAD	8192

static void *gp_base;
static size_t gp_size;
static struct http1_header hdrs[MAXH];
static const struct http1_limits LIM = { MAXH, MAXHEAD, 0, 0 };

/* limits with HEADERS lines and HEAD bytes */
static const struct http1_limits *
lim_of(size_t headers, size_t head)
{
	static struct http1_limits l;

	l = (struct http1_limits){ headers, head, 0, 0 };
	return &l;
}

/* Copy s[0..n) so that its last byte is the last readable byte. */
static char *
guard(const void *s, size_t n)
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
reqn(const char *s, size_t n, struct http1_request *r)
{
	return http1_parse_request(guard(s, n), n, 0, r, hdrs, &LIM);
}

static int
req(const char *s, struct http1_request *r)
{
	return reqn(s, strlen(s), r);
}

static int
rc_of(const char *s)
{
	struct http1_request r;

	return req(s, &r);
}

static int
resp(const char *s, struct http1_response *r)
{
	size_t n = strlen(s);

	return http1_parse_response(guard(s, n), n, 0, r, hdrs, &LIM);
}

static bool
span_is(const char *p, size_t n, const char *lit)
{
	return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

#define H11(extra)	"GET / HTTP/1.1\r\nHost: a\r\n" extra "\r\n"

/* ---- requests: accepted ---- */

static void
t_get(void **st)
{
	struct http1_request r;
	const char *s = "GET /a/b?c=d HTTP/1.1\r\nHost: Example.com:8080\r\n"
	    "User-Agent:  x y \t\r\nAccept:\r\n\r\n";
	(void)st;
	assert_int_equal(req(s, &r), (int)strlen(s));
	assert_true(span_is(r.method, r.method_len, "GET"));
	assert_true(span_is(r.target, r.target_len, "/a/b?c=d"));
	assert_true(span_is(r.path, r.path_len, "/a/b?c=d"));
	assert_true(span_is(r.host, r.host_len, "Example.com:8080"));
	assert_int_equal(r.minor_version, 1);
	assert_int_equal(r.num_headers, 3);
	assert_true(http1_header_is(&r.headers[1], "user-agent"));
	assert_true(span_is(r.headers[1].value, r.headers[1].value_len, "x y"));
	assert_int_equal(r.headers[2].value_len, 0);
	assert_int_equal(r.f.content_length, -1);
	assert_false(r.f.chunked);
	assert_false(r.f.conn_close);
	assert_false(r.f.conn_keep_alive);
	assert_false(r.f.expect_continue);
	assert_false(r.f.has_upgrade);
}

static void
t_post(void **st)
{
	struct http1_request r;
	const char *head = "POST /orders HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 5\r\n\r\n";
	char s[256];
	(void)st;
	snprintf(s, sizeof(s), "%shello", head);
	assert_int_equal(req(s, &r), (int)strlen(head));
	assert_int_equal(r.f.content_length, 5);
	assert_true(span_is(r.method, r.method_len, "POST"));
}

static void
t_post_chunked(void **st)
{
	struct http1_request r;
	const char *s = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
	    "Chunked\r\n\r\n";
	(void)st;
	assert_int_equal(req(s, &r), (int)strlen(s));
	assert_true(r.f.chunked);
	assert_int_equal(r.f.content_length, -1);
}

static void
t_pipelined(void **st)
{
	struct http1_request r;
	const char *a = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
	const char *b = "GET /2 HTTP/1.1\r\nHost: b\r\n\r\n";
	char s[256];
	const char *g;
	size_t n;
	int rc;
	(void)st;
	n = (size_t)snprintf(s, sizeof(s), "%s%s", a, b);
	g = guard(s, n);
	rc = http1_parse_request(g, n, 0, &r, hdrs, &LIM);
	assert_int_equal(rc, (int)strlen(a));
	assert_true(span_is(r.path, r.path_len, "/1"));
	rc = http1_parse_request(g + rc, n - rc, 0, &r, hdrs, &LIM);
	assert_int_equal(rc, (int)strlen(b));
	assert_true(span_is(r.path, r.path_len, "/2"));
	assert_true(span_is(r.host, r.host_len, "b"));
}

static void
t_incremental(void **st)
{
	struct http1_request r;
	const char *s = "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
	    "Connection: close\r\n\r\n";
	size_t n = strlen(s), k;
	int rc;
	(void)st;
	for (k = 1; k <= n; k++) {
		rc = http1_parse_request(guard(s, k), k, k - 1, &r, hdrs, &LIM);
		if (k < n)
			assert_int_equal(rc, HTTP1_INCOMPLETE);
		else
			assert_int_equal(rc, (int)n);
	}
	assert_int_equal(r.f.content_length, 3);
	assert_true(r.f.conn_close);
	/* in two halves as well, prev_len at every split */
	for (k = 1; k < n; k++) {
		const char *g = guard(s, n);
		rc = http1_parse_request(g, k, 0, &r, hdrs, &LIM);
		assert_int_equal(rc, HTTP1_INCOMPLETE);
		rc = http1_parse_request(g, n, k, &r, hdrs, &LIM);
		assert_int_equal(rc, (int)n);
	}
}

static void
t_http10(void **st)
{
	struct http1_request r;
	(void)st;
	assert_int_equal(req("GET / HTTP/1.0\r\n\r\n", &r), 18);
	assert_int_equal(r.minor_version, 0);
	assert_null(r.host);
	assert_int_equal(r.host_len, 0);
	assert_true(rc_of("GET / HTTP/1.0\r\nHost: a\r\n\r\n") > 0);
}

static void
t_absolute(void **st)
{
	struct http1_request r;
	(void)st;
	assert_true(req("GET HTTP://Api.Example:81/p?q HTTP/1.1\r\n"
	    "Host: api.example:81\r\n\r\n", &r) > 0);
	assert_true(span_is(r.path, r.path_len, "/p?q"));
	assert_true(span_is(r.target, r.target_len,
	    "HTTP://Api.Example:81/p?q"));
	assert_true(req("GET https://a HTTP/1.1\r\nHost: a\r\n\r\n", &r) > 0);
	assert_int_equal(r.path_len, 0);
	/* 1.0 without Host: the authority stands in for it */
	assert_true(req("GET http://b.c/x HTTP/1.0\r\n\r\n", &r) > 0);
	assert_true(span_is(r.host, r.host_len, "b.c"));
	assert_true(span_is(r.path, r.path_len, "/x"));
}

static void
t_absolute_mismatch(void **st)
{
	(void)st;
	assert_int_equal(rc_of("GET http://evil/ HTTP/1.1\r\nHost: good\r\n\r\n"),
	    HTTP1_BAD);
	assert_int_equal(rc_of("GET http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD);
}

static void
t_absolute_bad(void **st)
{
	(void)st;
	assert_int_equal(rc_of("GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD);
	assert_int_equal(rc_of("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD);
	assert_int_equal(rc_of("GET http:// HTTP/1.1\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD);
	assert_int_equal(rc_of("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD);
	assert_int_equal(rc_of("GET http://a?x HTTP/1.1\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD);
}

static void
t_asterisk(void **st)
{
	struct http1_request r;
	(void)st;
	assert_true(req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &r) > 0);
	assert_true(span_is(r.path, r.path_len, "*"));
	assert_int_equal(rc_of("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD);
}

static void
t_connect(void **st)
{
	(void)st;
	assert_int_equal(rc_of("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
	    HTTP1_NOT_IMPL);
}

static void
t_target_chars(void **st)
{
	(void)st;
	assert_int_equal(rc_of("GET a HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET /\t HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
}

static void
t_request_line(void **st)
{
	(void)st;
	assert_int_equal(rc_of("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET /\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / H\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD);
	assert_int_equal(rc_of("\r\n\r\n"), HTTP1_BAD);
}

/* Every byte position of long values and targets, for the word-wise scan. */
static void
t_long_scan(void **st)
{
	static const unsigned char badv[] = { 0x00, 0x01, 0x0a, 0x0d, 0x1f, 0x7f };
	static const unsigned char badt[] = { 0x00, 0x09, 0x20, 0x23, 0x7f, 0x80,
	    0xff };
	struct http1_request r;
	char s[256], v[40], t[40];
	size_t i, j, n;
	(void)st;
	for (i = 0; i < 32; i++) {
		memset(v, 'v', 32);
		v[32] = '\0';
		v[i] = '\t';
		n = (size_t)snprintf(s, sizeof(s), H11("X: %s\r\n"), v);
		assert_int_equal(reqn(s, n, &r), (int)n);
		v[i] = (char)0xe9;
		n = (size_t)snprintf(s, sizeof(s), H11("X: %s\r\n"), v);
		assert_int_equal(reqn(s, n, &r), (int)n);
		for (j = 0; j < sizeof(badv); j++) {
			memset(v, 'v', 32);
			v[i] = 'x';
			n = (size_t)snprintf(s, sizeof(s), H11("X: %s\r\n"), v);
			s[strlen(H11("X: ")) - 2 + i] = (char)badv[j];
			assert_int_equal(reqn(s, n, &r), HTTP1_BAD);
		}
		memset(t, 'p', 32);
		t[0] = '/';
		t[32] = '\0';
		for (j = 0; j < sizeof(badt); j++) {
			if (i == 0)
				continue;
			n = (size_t)snprintf(s, sizeof(s),
			    "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", t);
			s[4 + i] = (char)badt[j];
			assert_int_equal(reqn(s, n, &r), HTTP1_BAD);
		}
	}
}

/* ---- requests: each refusal ---- */

static void
t_cl_te(void **st)
{
	(void)st;
	assert_int_equal(rc_of(H11("Content-Length: 5\r\n"
	    "Transfer-Encoding: chunked\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("Transfer-Encoding: chunked\r\n"
	    "Content-Length: 5\r\n")), HTTP1_BAD);
}

static void
t_cl_differ(void **st)
{
	(void)st;
	assert_int_equal(rc_of(H11("Content-Length: 5\r\nContent-Length: 6\r\n")),
	    HTTP1_BAD);
	assert_int_equal(rc_of(H11("Content-Length: 5, 6\r\n")), HTTP1_BAD);
}

static void
t_cl_same(void **st)
{
	struct http1_request r;
	(void)st;
	assert_true(req(H11("Content-Length: 5\r\ncontent-length: 5\r\n"), &r) > 0);
	assert_int_equal(r.f.content_length, 5);
	assert_true(req(H11("Content-Length: 7 ,7\r\n"), &r) > 0);
	assert_int_equal(r.f.content_length, 7);
	assert_true(req(H11("Content-Length: 0\r\n"), &r) > 0);
	assert_int_equal(r.f.content_length, 0);
	assert_true(req(H11("Content-Length: 999999999999999\r\n"), &r) > 0);
	assert_int_equal(r.f.content_length, 999999999999999LL);
}

static void
t_cl_plus(void **st)
{
	(void)st;
	assert_int_equal(rc_of(H11("Content-Length: +5\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("Content-Length: -5\r\n")), HTTP1_BAD);
}

static void
t_cl_space(void **st)
{
	(void)st;
	assert_int_equal(rc_of(H11("Content-Length:  5 6\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("Content-Length: 5,\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("Content-Length: ,5\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("Content-Length:\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("Content-Length: 0x5\r\n")), HTTP1_BAD);
}

static void
t_cl_long(void **st)
{
	(void)st;
	assert_int_equal(rc_of(H11("Content-Length: 1000000000000000\r\n")),
	    HTTP1_BAD);
	assert_int_equal(rc_of(H11("Content-Length: 0000000000000001\r\n")),
	    HTTP1_BAD);
}

static void
t_te_gzip_chunked(void **st)
{
	(void)st;
	assert_int_equal(rc_of(H11("Transfer-Encoding: gzip, chunked\r\n")),
	    HTTP1_BAD);
}

static void
t_te_chunked_chunked(void **st)
{
	(void)st;
	assert_int_equal(rc_of(H11("Transfer-Encoding: chunked, chunked\r\n")),
	    HTTP1_BAD);
	assert_int_equal(rc_of(H11("Transfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n")), HTTP1_BAD);
}

static void
t_te_other(void **st)
{
	(void)st;
	assert_int_equal(rc_of(H11("Transfer-Encoding: identity\r\n")),
	    HTTP1_BAD);
	assert_int_equal(rc_of(H11("Transfer-Encoding: xchunked\r\n")),
	    HTTP1_BAD);
	assert_int_equal(rc_of(H11("Transfer-Encoding:\r\n")), HTTP1_BAD);
}

static void
t_te_http10(void **st)
{
	(void)st;
	assert_int_equal(rc_of("POST / HTTP/1.0\r\nHost: a\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"), HTTP1_BAD);
}

static void
t_obs_fold(void **st)
{
	(void)st;
	assert_int_equal(rc_of(H11("X-A: b\r\n c\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("X-A: b\r\n\tc\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), HTTP1_BAD);
}

static void
t_space_before_colon(void **st)
{
	(void)st;
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of(H11("X-A\t: b\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11(": b\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("X A: b\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("X-A b\r\n")), HTTP1_BAD);
}

static void
t_bare_cr(void **st)
{
	(void)st;
	assert_int_equal(rc_of(H11("X-A: b\rc\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("X-A: b\r\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of(H11("X-A\r: b\r\n")), HTTP1_BAD);
}

static void
t_bare_lf(void **st)
{
	(void)st;
	assert_int_equal(rc_of("GET / HTTP/1.1\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of(H11("X-A: b\nX-B: c\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost: a\n\n"), HTTP1_BAD);
	/* refused as soon as it arrives, before any terminator */
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nX: \n"), HTTP1_BAD);
	assert_int_equal(rc_of("\n"), HTTP1_BAD);
}

static void
t_nul_in_value(void **st)
{
	static const char s[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
	(void)st;
	struct http1_request r;
	assert_int_equal(reqn(s, sizeof(s) - 1, &r), HTTP1_BAD);
	assert_int_equal(rc_of(H11("X: a\x01z\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("X: a\x7fz\r\n")), HTTP1_BAD);
	assert_int_equal(rc_of(H11("X: a\x1b\r\n")), HTTP1_BAD);
}

static void
t_value_ok(void **st)
{
	struct http1_request r;
	(void)st;
	assert_true(req(H11("X: caf\xc3\xa9\tok\r\n"), &r) > 0);
	assert_true(span_is(r.headers[1].value, r.headers[1].value_len,
	    "caf\xc3\xa9\tok"));
}

static void
t_missing_host(void **st)
{
	(void)st;
	assert_int_equal(rc_of("GET / HTTP/1.1\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost-X: a\r\n\r\n"), HTTP1_BAD);
}

static void
t_two_host(void **st)
{
	(void)st;
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
	    HTTP1_BAD);
}

static void
t_bad_host(void **st)
{
	struct http1_request r;
	(void)st;
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost:\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n"),
	    HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost: a:1x\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.1\r\nHost: a%2\r\n\r\n"), HTTP1_BAD);
	assert_true(req("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", &r) > 0);
	assert_true(span_is(r.host, r.host_len, "[::1]:8080"));
	assert_true(rc_of("GET / HTTP/1.1\r\nHost: 127.0.0.1:65535\r\n\r\n") > 0);
	assert_true(rc_of("GET / HTTP/1.1\r\nHost: a%2Db\r\n\r\n") > 0);
}

static void
t_bad_version(void **st)
{
	(void)st;
	assert_int_equal(rc_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD_VERSION);
	assert_int_equal(rc_of("GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD_VERSION);
	assert_int_equal(rc_of("GET / HTTP/0.9\r\nHost: a\r\n\r\n"),
	    HTTP1_BAD_VERSION);
	assert_int_equal(rc_of("GET / HTTP/1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / http/1.1\r\nHost: a\r\n\r\n"), HTTP1_BAD);
	assert_int_equal(rc_of("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), HTTP1_BAD);
}

static void
t_too_many(void **st)
{
	struct http1_request r;
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
	size_t n = strlen(s);
	(void)st;
	assert_int_equal(http1_parse_request(guard(s, n), n, 0, &r,
	    hdrs, lim_of(2, MAXHEAD)), HTTP1_TOO_MANY);
	assert_int_equal(http1_parse_request(guard(s, n), n, 0, &r,
	    hdrs, lim_of(3, MAXHEAD)), (int)n);
	assert_int_equal(r.num_headers, 3);
}

static void
t_too_long(void **st)
{
	struct http1_request r;
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t n = strlen(s);
	(void)st;
	/* exactly max_head is fine; one less is too long */
	assert_int_equal(http1_parse_request(guard(s, n), n, 0, &r,
	    hdrs, lim_of(MAXH, n)), (int)n);
	assert_int_equal(http1_parse_request(guard(s, n), n, 0, &r,
	    hdrs, lim_of(MAXH, n - 1)), HTTP1_TOO_LONG);
	/* no terminator yet, but already max_head bytes */
	assert_int_equal(http1_parse_request(guard(s, 20), 20, 0, &r,
	    hdrs, lim_of(MAXH, 20)), HTTP1_TOO_LONG);
	assert_int_equal(http1_parse_request(guard(s, 20), 20, 0, &r,
	    hdrs, lim_of(MAXH, 21)), HTTP1_INCOMPLETE);
	/* and incrementally */
	assert_int_equal(http1_parse_request(guard(s, n), n, 10, &r,
	    hdrs, lim_of(MAXH, n - 2)), HTTP1_TOO_LONG);
}

static void
t_connection(void **st)
{
	struct http1_request r;
	(void)st;
	assert_true(req(H11("Connection: Keep-Alive, X-Foo\r\n"), &r) > 0);
	assert_true(r.f.conn_keep_alive);
	assert_false(r.f.conn_close);
	assert_true(req(H11("Connection: ,upgrade ,CLOSE\r\nUpgrade: ws\r\n"),
	    &r) > 0);
	assert_true(r.f.conn_close);
	assert_true(r.f.has_upgrade);
	assert_true(req(H11("Connection: closed\r\n"), &r) > 0);
	assert_false(r.f.conn_close);
}

static void
t_expect(void **st)
{
	struct http1_request r;
	(void)st;
	assert_true(req(H11("Expect: 100-Continue\r\n"), &r) > 0);
	assert_true(r.f.expect_continue);
	assert_true(req(H11("Expect: 200-ok\r\n"), &r) > 0);
	assert_false(r.f.expect_continue);
}

/* ---- responses ---- */

static void
t_response(void **st)
{
	struct http1_response r;
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
	    "Connection: keep-alive\r\n\r\nhi";
	(void)st;
	assert_int_equal(resp(s, &r), (int)strlen(s) - 2);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.minor_version, 1);
	assert_true(span_is(r.reason, r.reason_len, "OK"));
	assert_int_equal(r.f.content_length, 2);
	assert_true(r.f.conn_keep_alive);
	assert_int_equal(r.num_headers, 2);

	assert_true(resp("HTTP/1.0 404 Not \xa0" "Found\r\n\r\n", &r) > 0);
	assert_int_equal(r.status, 404);
	assert_int_equal(r.minor_version, 0);
	assert_true(resp("HTTP/1.1 204 \r\n\r\n", &r) > 0);
	assert_int_equal(r.reason_len, 0);
	assert_true(resp("HTTP/1.1 100\r\n\r\n", &r) > 0);
	assert_int_equal(r.status, 100);
	assert_true(resp("HTTP/1.1 599 x\r\nTransfer-Encoding: chunked\r\n\r\n",
	    &r) > 0);
	assert_true(r.f.chunked);
	/* Host has no special meaning in a response */
	assert_true(resp("HTTP/1.1 200 OK\r\nHost: a\r\nHost: b\r\n\r\n", &r) > 0);
}

static void
t_response_bad(void **st)
{
	struct http1_response r;
	(void)st;
	assert_int_equal(resp("HTTP/1.1 600 x\r\n\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 099 x\r\n\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 2000 x\r\n\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 20 x\r\n\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1  200 x\r\n\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/2.0 200 x\r\n\r\n", &r), HTTP1_BAD_VERSION);
	assert_int_equal(resp("HTTP/1.1 200 O\x01K\r\n\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
	    "Content-Length: 2\r\n\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
	    &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
	    "\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n"
	    "\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", &r),
	    HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", &r),
	    HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 200 OK\nX: a\r\n\r\n", &r), HTTP1_BAD);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\n", &r), HTTP1_INCOMPLETE);
}

static void
t_response_incremental(void **st)
{
	struct http1_response r;
	const char *s = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
	size_t n = strlen(s), k;
	int rc;
	(void)st;
	for (k = 1; k <= n; k++) {
		rc = http1_parse_response(guard(s, k), k, k - 1, &r, hdrs, &LIM);
		assert_int_equal(rc, k < n ? HTTP1_INCOMPLETE : (int)n);
	}
	assert_int_equal(r.status, 201);
	assert_int_equal(r.f.content_length, 0);
}

/* ---- chunked ---- */

/* Scan s whole; returns the scan result, sets *done. */
static ssize_t
scan_all(const char *s, size_t n, bool *done)
{
	struct http1_chunked c;

	memset(&c, 0, sizeof(c));
	return http1_chunked_scan(&c, guard(s, n), n, done);
}

/* Decode s split at k into out; returns total consumed or HTTP1_BAD. */
static ssize_t
decode_split(const char *s, size_t n, size_t k, char *out, size_t *olen,
    bool *done)
{
	struct http1_chunked c;
	size_t part[2] = { k, n - k }, off = 0, o, i;
	ssize_t rc;
	char *g;

	memset(&c, 0, sizeof(c));
	*olen = 0;
	*done = false;
	for (i = 0; i < 2 && !*done; i++) {
		g = guard(s + off, part[i]);
		rc = http1_chunked_decode(&c, g, part[i], &o, done);
		if (rc < 0)
			return rc;
		memcpy(out + *olen, g, o);
		*olen += o;
		off += (size_t)rc;
		if (!*done && (size_t)rc != part[i])
			return -100;	/* must eat everything until done */
	}
	return (ssize_t)off;
}

static void
t_chunked_scan(void **st)
{
	const char *s = "5\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
	    "0\r\n\r\nGET";
	struct http1_chunked c;
	bool done;
	(void)st;
	assert_int_equal(scan_all(s, strlen(s), &done), strlen(s) - 3);
	assert_true(done);
	memset(&c, 0, sizeof(c));
	assert_int_equal(http1_chunked_scan(&c, guard(s, 10), 10, &done), 10);
	assert_false(done);
	assert_int_equal(c.total, 5);
	/* after done nothing more is consumed */
	memset(&c, 0, sizeof(c));
	assert_int_equal(http1_chunked_scan(&c, guard("0\r\n\r\n", 5), 5, &done),
	    5);
	assert_true(done);
	assert_int_equal(http1_chunked_scan(&c, guard("x", 1), 1, &done), 0);
	assert_true(done);
}

static void
t_chunked_split(void **st)
{
	const char *s = "5;a=b;c=\"q\\\"t\"\r\nhello\r\n10\r\n0123456789abcdef"
	    "\r\n1\r\nZ\r\n0\r\nTrailer-A: x y\r\nB:\r\n\r\n";
	const char *want = "hello0123456789abcdefZ";
	size_t n = strlen(s), k, olen;
	char out[256];
	bool done;
	ssize_t rc;
	(void)st;
	for (k = 0; k <= n; k++) {
		rc = decode_split(s, n, k, out, &olen, &done);
		assert_int_equal(rc, (ssize_t)n);
		assert_true(done);
		assert_int_equal(olen, strlen(want));
		assert_memory_equal(out, want, olen);
	}
}

static void
t_chunked_bytewise(void **st)
{
	const char *s = "3\r\nabc\r\n0;x\r\n\r\n";
	size_t n = strlen(s), k;
	struct http1_chunked c;
	bool done = false;
	ssize_t rc;
	(void)st;
	memset(&c, 0, sizeof(c));
	for (k = 0; k < n; k++) {
		assert_false(done);
		rc = http1_chunked_scan(&c, guard(s + k, 1), 1, &done);
		assert_int_equal(rc, 1);
	}
	assert_true(done);
	assert_int_equal(c.total, 3);
}

static void
t_chunked_sizes(void **st)
{
	bool done;
	(void)st;
#define BADC(lit) assert_int_equal(scan_all(lit, sizeof(lit) - 1, &done), \
	HTTP1_BAD)
	BADC("\r\n");
	BADC("g\r\n");
	BADC("-1\r\n");
	BADC("+1\r\n");
	BADC(" 1\r\n");
	BADC("1 \r\n");
	BADC("0x1\r\n");
	BADC("10000000000000000\r\n");		/* 2^64 */
	BADC("4000000000000001\r\n");		/* 2^62 + 1 */
	BADC("ffffffffffffffff\r\n");
	BADC("1\n");
	BADC("1\rx");
	BADC("1\r\nab\r\n");			/* data longer than size */
	BADC("1\r\na\n");
	BADC("1\r\naxx");
	BADC("0\r\n\n");
	assert_int_equal(scan_all("4000000000000000\r\nab", 20, &done), 20);
	assert_int_equal(scan_all("000000000000000A\r\n", 18, &done), 18);
	/* leading zeros do not count: the value is bounded, not the digits */
	assert_int_equal(scan_all("0000000000000000000000000005\r\nhello\r\n"
	    "0\r\n\r\n", 42, &done), 42);
	assert_true(done);
	assert_int_equal(scan_all("aB\r\n", 4, &done), 4);
}

static void
t_chunked_ext(void **st)
{
	bool done;
	(void)st;
	assert_int_equal(scan_all("1;a\r\nx\r\n0\r\n\r\n", 13, &done), 13);
	assert_true(done);
	assert_int_equal(scan_all("1;a=b;c;d=\"\"\r\n", 14, &done), 14);
	assert_int_equal(scan_all("1;a=\"\\\\\tx\x80\"\r\n", 13, &done), 13);
	BADC("1; a\r\n");
	BADC("1 ;a\r\n");
	BADC("1;\r\n");
	BADC("1;=b\r\n");
	BADC("1;a=\r\n");
	BADC("1;a =b\r\n");
	BADC("1;a==b\r\n");
	BADC("1;a=b c\r\n");
	BADC("1;a=\"x\r\n");
	BADC("1;a=\"x\"y\r\n");
	BADC("1;a=\"x\x01\"\r\n");
	BADC("1;a=\"\\\x01\"\r\n");
	BADC("1;a;\r\n");
}

static void
t_chunked_trailers(void **st)
{
	bool done;
	(void)st;
	assert_int_equal(scan_all("0\r\nA: b\r\nC-D:\t e \r\n\r\n", 21, &done),
	    21);
	assert_true(done);
	BADC("0\r\nA : b\r\n\r\n");
	BADC("0\r\n A: b\r\n\r\n");
	BADC("0\r\nA: b\r\n c\r\n\r\n");
	BADC("0\r\n: b\r\n\r\n");
	BADC("0\r\nA b\r\n\r\n");
	BADC("0\r\nA: b\nC: d\r\n\r\n");
	BADC("0\r\nA: b\rC\r\n\r\n");
	BADC("0\r\nA: \x7f\r\n\r\n");
	assert_int_equal(scan_all("0\r\nA: \0\r\n\r\n", 11, &done), HTTP1_BAD);
}

static void
t_chunked_line_limit(void **st)
{
	static char s[5000];
	bool done;
	struct http1_chunked c;
	(void)st;
	/* a 4096-byte line (CRLF included) passes, 4097 does not */
	memset(s, 'a', sizeof(s));
	memcpy(s, "1;", 2);
	memcpy(s + 4094, "\r\n", 2);
	assert_int_equal(scan_all(s, 4096, &done), 4096);
	memset(s, 'a', sizeof(s));
	memcpy(s, "1;", 2);
	memcpy(s + 4095, "\r\n", 2);
	assert_int_equal(scan_all(s, 4097, &done), HTTP1_BAD);
	/* an error sticks */
	memset(&c, 0, sizeof(c));
	assert_int_equal(http1_chunked_scan(&c, guard("x", 1), 1, &done),
	    HTTP1_BAD);
	assert_int_equal(http1_chunked_scan(&c, guard("1", 1), 1, &done),
	    HTTP1_BAD);
}

static void
t_chunked_decode_inplace(void **st)
{
	const char *s = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
	size_t n = strlen(s), olen;
	struct http1_chunked c;
	bool done;
	char *g;
	(void)st;
	memset(&c, 0, sizeof(c));
	g = guard(s, n);
	assert_int_equal(http1_chunked_decode(&c, g, n, &olen, &done), n);
	assert_true(done);
	assert_int_equal(olen, 5);
	assert_memory_equal(g, "abcde", 5);
	assert_int_equal(c.total, 5);
}

/* ---- helpers ---- */

static void
t_chunked_trailer_counts(void **st)
{
	const char *s = "2\r\nab\r\n0\r\nX-A: 1\r\nLonger-Name: value\r\n\r\n";
	struct http1_chunked c;
	bool done;
	(void)st;
	memset(&c, 0, sizeof(c));
	assert_int_equal(http1_chunked_scan(&c, guard(s, strlen(s)), strlen(s),
	    &done), (ssize_t)strlen(s));
	assert_true(done);
	assert_int_equal(c.trailers, 2);
	assert_int_equal(c.trailer_bytes, strlen("X-A: 1\r\nLonger-Name: "
	    "value\r\n"));
	assert_int_equal(c.trailer_line_max, strlen("Longer-Name: value"));
}

static void
t_chunked_strip(void **st)
{
	const char *s = "2\r\nab\r\n0;e=1\r\nX-User-ID: admin\r\nHost: x"
	    "\r\n\r\nNEXT";
	const char *want = "2\r\nab\r\n0;e=1\r\n\r\n";
	size_t n = strlen(s), k, olen, got;
	struct http1_chunked c;
	char out[128];
	bool done;
	ssize_t rc;
	char *g;
	(void)st;
	/* whole, and split at every point */
	for (k = 0; k <= n - 4; k++) {
		memset(&c, 0, sizeof(c));
		got = 0;
		g = guard(s, k);
		rc = http1_chunked_strip(&c, g, k, &olen, &done);
		assert_int_equal(rc, (ssize_t)k);
		memcpy(out, g, olen);
		got = olen;
		if (!done) {
			g = guard(s + k, n - k);
			rc = http1_chunked_strip(&c, g, n - k, &olen, &done);
			assert_int_equal(rc, (ssize_t)(n - k - 4));
			memcpy(out + got, g, olen);
			got += olen;
		}
		assert_true(done);
		assert_int_equal(got, strlen(want));
		assert_memory_equal(out, want, got);
		assert_int_equal(c.trailers, 2);
	}
}

static void
t_early_refusal(void **st)
{
	struct http1_request r;
	static const char hello[] = "\x16\x03\x01\x00\xa5\x01";
	(void)st;
	/* not a method: a TLS ClientHello, a leading CRLF */
	assert_int_equal(reqn(hello, sizeof(hello) - 1, &r), HTTP1_BAD);
	assert_int_equal(reqn("\r\nGET", 5, &r), HTTP1_BAD);
	/* an HTTP/0.9 request line, complete */
	assert_int_equal(req("GET /index.html\r\n", &r), HTTP1_BAD);
	assert_int_equal(req("GET /x FTP/1.0\r\n", &r), HTTP1_BAD);
	assert_int_equal(req("GET /x HTTP/1.1 extra\r\n", &r), HTTP1_BAD);
	/* a wrong version prefix as soon as it shows */
	assert_int_equal(req("GET /x HTX", &r), HTTP1_BAD);
	/* still possible: incomplete */
	assert_int_equal(req("GE", &r), HTTP1_INCOMPLETE);
	assert_int_equal(req("GET /x HTT", &r), HTTP1_INCOMPLETE);
	assert_int_equal(req("GET /x HTTP/1.1\r\nHost: a\r\n", &r),
	    HTTP1_INCOMPLETE);
}

static void
t_field_and_target_limits(void **st)
{
	struct http1_limits l = { MAXH, MAXHEAD, 10, 8 };
	struct http1_request r;
	struct http1_response res;
	const char *ok = "GET /1234567 HTTP/1.1\r\nHost: a\r\nX-A: 1234\r\n\r\n";
	const char *lf = "GET / HTTP/1.1\r\nHost: a\r\nX-A: 123456\r\n\r\n";
	const char *lt = "GET /12345678 HTTP/1.1\r\nHost: a\r\n\r\n";
	const char *rs = "HTTP/1.1 200 OK\r\nX-A: 123456\r\n\r\n";
	(void)st;
	assert_true(http1_parse_request(guard(ok, strlen(ok)), strlen(ok), 0,
	    &r, hdrs, &l) > 0);
	assert_int_equal(http1_parse_request(guard(lf, strlen(lf)), strlen(lf),
	    0, &r, hdrs, &l), HTTP1_FIELD_TOO_LONG);
	assert_int_equal(http1_parse_request(guard(lt, strlen(lt)), strlen(lt),
	    0, &r, hdrs, &l), HTTP1_URI_TOO_LONG);
	/* the target limit applies before the line is complete */
	assert_int_equal(http1_parse_request(guard(lt, 14), 14, 0, &r, hdrs,
	    &l), HTTP1_URI_TOO_LONG);
	assert_int_equal(http1_parse_request(guard(lt, 12), 12, 0, &r, hdrs,
	    &l), HTTP1_INCOMPLETE);
	assert_int_equal(http1_parse_response(guard(rs, strlen(rs)), strlen(rs),
	    0, &res, hdrs, &l), HTTP1_FIELD_TOO_LONG);
}

static void
t_connection_tokens(void **st)
{
	struct http1_request r;
	struct http1_token t[3];
	(void)st;
	assert_true(req(H11("Connection: close, X-A\r\nX-B: 1\r\n"
	    "Connection: ,, X-C ,\r\n"), &r) > 0);
	assert_int_equal(http1_connection_tokens(r.headers, r.num_headers, t,
	    3), 3);
	assert_true(span_is(t[0].p, t[0].len, "close"));
	assert_true(span_is(t[1].p, t[1].len, "X-A"));
	assert_true(span_is(t[2].p, t[2].len, "X-C"));
	assert_int_equal(http1_connection_tokens(r.headers, r.num_headers, t,
	    2), -1);
}

static void
t_name_eq(void **st)
{
	(void)st;
	assert_true(http1_name_eq("Content-Type", 12, "content-type", 12));
	assert_true(http1_name_eq("X-A", 3, "x-a", 3));
	assert_false(http1_name_eq("X-A", 3, "x-ab", 4));
	assert_false(http1_name_eq("X\rA", 3, "x-a", 3));
	assert_false(http1_name_eq("X_A", 3, "x\x7f" "a", 3));
}

static void
t_status_text(void **st)
{
	(void)st;
	assert_string_equal(http1_status_text(200), "OK");
	assert_string_equal(http1_status_text(404), "Not Found");
	assert_string_equal(http1_status_text(431),
	    "Request Header Fields Too Large");
	assert_string_equal(http1_status_text(505), "HTTP Version Not Supported");
	assert_string_equal(http1_status_text(299), "Unknown");
	assert_string_equal(http1_status_text(-1), "Unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_get),
		cmocka_unit_test(t_post),
		cmocka_unit_test(t_post_chunked),
		cmocka_unit_test(t_pipelined),
		cmocka_unit_test(t_incremental),
		cmocka_unit_test(t_http10),
		cmocka_unit_test(t_absolute),
		cmocka_unit_test(t_absolute_mismatch),
		cmocka_unit_test(t_absolute_bad),
		cmocka_unit_test(t_asterisk),
		cmocka_unit_test(t_connect),
		cmocka_unit_test(t_target_chars),
		cmocka_unit_test(t_request_line),
		cmocka_unit_test(t_long_scan),
		cmocka_unit_test(t_cl_te),
		cmocka_unit_test(t_cl_differ),
		cmocka_unit_test(t_cl_same),
		cmocka_unit_test(t_cl_plus),
		cmocka_unit_test(t_cl_space),
		cmocka_unit_test(t_cl_long),
		cmocka_unit_test(t_te_gzip_chunked),
		cmocka_unit_test(t_te_chunked_chunked),
		cmocka_unit_test(t_te_other),
		cmocka_unit_test(t_te_http10),
		cmocka_unit_test(t_obs_fold),
		cmocka_unit_test(t_space_before_colon),
		cmocka_unit_test(t_bare_cr),
		cmocka_unit_test(t_bare_lf),
		cmocka_unit_test(t_nul_in_value),
		cmocka_unit_test(t_value_ok),
		cmocka_unit_test(t_missing_host),
		cmocka_unit_test(t_two_host),
		cmocka_unit_test(t_bad_host),
		cmocka_unit_test(t_bad_version),
		cmocka_unit_test(t_too_many),
		cmocka_unit_test(t_too_long),
		cmocka_unit_test(t_connection),
		cmocka_unit_test(t_expect),
		cmocka_unit_test(t_response),
		cmocka_unit_test(t_response_bad),
		cmocka_unit_test(t_response_incremental),
		cmocka_unit_test(t_chunked_scan),
		cmocka_unit_test(t_chunked_split),
		cmocka_unit_test(t_chunked_bytewise),
		cmocka_unit_test(t_chunked_sizes),
		cmocka_unit_test(t_chunked_ext),
		cmocka_unit_test(t_chunked_trailers),
		cmocka_unit_test(t_chunked_line_limit),
		cmocka_unit_test(t_chunked_decode_inplace),
		cmocka_unit_test(t_chunked_trailer_counts),
		cmocka_unit_test(t_chunked_strip),
		cmocka_unit_test(t_early_refusal),
		cmocka_unit_test(t_field_and_target_limits),
		cmocka_unit_test(t_connection_tokens),
		cmocka_unit_test(t_name_eq),
		cmocka_unit_test(t_status_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
