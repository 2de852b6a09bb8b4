/*
 * http1: strict HTTP/1.1 head parser and chunked body scanner (RFC 9112).
 *
 * The head parsers work in two passes: a memchr() scan of the bytes that
 * are new since the last call for the CRLFCRLF terminator (rejecting a bare
 * LF as soon as it arrives), then one table-driven pass over the complete
 * head. Every inner loop stops on CR, which is never the last byte of a
 * complete head, so the second pass needs no bounds checks per byte and
 * never reads past the terminator.
 *
 * Choices the header leaves open, made here:
 * - Empty lines before the request line are refused (HTTP1_BAD).
 * - absolute-form: req->path points just past the authority; path_len is 0
 *   when the URI has no path ("http://a"), which the caller treats as "/".
 *   An authority followed directly by '?' ("http://a?x") is refused.
 *   On HTTP/1.0 without a Host header, req->host is the target's authority;
 *   on HTTP/1.0 with neither, req->host is NULL and host_len 0.
 * - CONNECT (authority-form) gives HTTP1_NOT_IMPL once the rest of the head
 *   is known to be valid.
 * - Content-Length repeated with one value ("5, 5", or two headers both
 *   "5") collapses into that value; the caller should emit its own
 *   Content-Length from f.content_length rather than forward the original.
 * - Expect: only "100-continue" sets expect_continue; any other value leaves
 *   it false and the caller may answer 417.
 * - Response status line: the SP before an empty reason may be omitted
 *   ("HTTP/1.1 200\r\n"), as many servers send it.
 * - Chunk extensions take no whitespace around ';' or '='. The 4096-byte
 *   line limit is per size or trailer line; the caller's body limit bounds
 *   the whole.
 */
#include <string.h>

#include "http1.h"

#define CL_MAX_DIGITS	15
#define CHUNK_LINE_MAX	4096
#define CHUNK_SIZE_MAX	((uint64_t)1 << 62)
#define METHOD_MAX	64	/* longer: not a method anyone serves */

/* token characters (RFC 9110 5.6.2) */
static const unsigned char tchar[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x00 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x10 */
	0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0,	/* 0x20 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,	/* 0x30 */
	0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x40 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,	/* 0x50 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x60 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,	/* 0x70 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x80 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x90 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xa0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xb0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xc0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xd0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xe0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xf0 */
};
/* field value bytes: HTAB, SP, VCHAR, obs-text */
static const unsigned char fvchar[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,	/* 0x00 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x10 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x20 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x30 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x40 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x50 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x60 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,	/* 0x70 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x80 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x90 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xa0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xb0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xc0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xd0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xe0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0xf0 */
};
/* request-target bytes: visible ASCII except '#' */
static const unsigned char tgtchar[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x00 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x10 */
	0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x20 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x30 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x40 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x50 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x60 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,	/* 0x70 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x80 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x90 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xa0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xb0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xc0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xd0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xe0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xf0 */
};
/* reg-name / IPv4 bytes (RFC 3986 3.2.2), '%' checked apart */
static const unsigned char regch[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x00 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x10 */
	0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,	/* 0x20 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, 0,	/* 0x30 */
	0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x40 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1,	/* 0x50 */
	0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,	/* 0x60 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0,	/* 0x70 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x80 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x90 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xa0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xb0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xc0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xd0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xe0 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0xf0 */
};
/* hex digit values, -1 for others */
static const signed char hexv[256] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0x00 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0x10 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0x20 */
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -1, -1, -1, -1, -1,	/* 0x30 */
	-1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0x40 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0x50 */
	-1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0x60 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0x70 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0x80 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0x90 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0xa0 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0xb0 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0xc0 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0xd0 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0xe0 */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,	/* 0xf0 */
};

/*
 * Word-at-a-time skipping over the common bytes of values and targets:
 * a word whose eight bytes are all plain is passed in one step, anything
 * else falls back to the table loop. ONES * n repeats n in every byte.
 */
#define ONES		0x0101010101010101ULL
#define HIGHS		0x8080808080808080ULL
#define HAS_ZERO(w)	(((w) - ONES) & ~(w) & HIGHS)
#define HAS_LESS(w, n)	(((w) - ONES * (n)) & ~(w) & HIGHS)

static inline uint64_t
load64(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w;
}

/* Field value: stop at anything below SP (HTAB too) or DEL. */
static inline const unsigned char *
skip_value(const unsigned char *p, const unsigned char *end)
{
	uint64_t w;

	while (end - p >= 8) {
		w = load64(p);
		if (HAS_LESS(w, 0x20) | HAS_ZERO(w ^ (ONES * 0x7f)))
			break;
		p += 8;
	}
	while (fvchar[*p])
		p++;
	return p;
}

/* Target: stop at CTL, SP, DEL, obs-text or '#'. */
static inline const unsigned char *
skip_target(const unsigned char *p, const unsigned char *end)
{
	uint64_t w;

	while (end - p >= 8) {
		w = load64(p);
		if (HAS_LESS(w, 0x21) | (w & HIGHS) |
		    HAS_ZERO(w ^ (ONES * 0x7f)) | HAS_ZERO(w ^ (ONES * '#')))
			break;
		p += 8;
	}
	while (tgtchar[*p])
		p++;
	return p;
}

static inline unsigned char
lower(unsigned char c)
{
	return (unsigned)(c - 'A') < 26u ? c + ('a' - 'A') : c;
}

bool
http1_name_eq_bytes(const char *name, const char *lit, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (lower((unsigned char)name[i]) != lower((unsigned char)lit[i]))
			return false;
	return true;
}

/* Case-insensitive compare against a lower-case literal. */
static inline bool
eq_lit(const unsigned char *s, size_t n, const char *lit, size_t litlen)
{
	size_t i;

	if (n != litlen)
		return false;
	for (i = 0; i < n; i++)
		if (lower(s[i]) != (unsigned char)lit[i])
			return false;
	return true;
}
#define EQ(s, n, lit)	eq_lit((s), (n), (lit), sizeof(lit) - 1)

static inline bool
ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Find the end of the head. Only bytes from prev_len on are looked at: the
 * terminator's last LF is new, or the previous call would have seen it.
 */
static int
head_end(const char *buf, size_t len, size_t prev_len, size_t max_head,
    size_t *hlen)
{
	size_t lim = len < max_head ? len : max_head;
	size_t i = prev_len < lim ? prev_len : lim;
	const char *p;

	while (i < lim && (p = memchr(buf + i, '\n', lim - i)) != NULL) {
		i = (size_t)(p - buf);
		if (i == 0 || buf[i - 1] != '\r')
			return HTTP1_BAD;
		if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
			*hlen = i + 1;
			return 0;
		}
		i++;
	}
	return len >= max_head ? HTTP1_TOO_LONG : HTTP1_INCOMPLETE;
}

/* "HTTP/x.y" at p (8 bytes readable): sets the minor version. */
static int
version(const unsigned char *p, int *minor)
{
	if (memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' ||
	    (unsigned)(p[5] - '0') > 9 || (unsigned)(p[7] - '0') > 9)
		return HTTP1_BAD;
	if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
		return HTTP1_BAD_VERSION;
	*minor = p[7] - '0';
	return 0;
}

/* authority = host [ ":" port ], no userinfo; port 1-5 digits <= 65535. */
static bool
valid_authority(const unsigned char *s, size_t n)
{
	const unsigned char *p = s, *e = s + n, *h;
	unsigned port = 0;
	bool colon = false;

	if (n == 0)
		return false;
	if (*p == '[') {
		h = ++p;
		while (p < e && (hexv[*p] >= 0 || *p == ':' || *p == '.')) {
			if (*p == ':')
				colon = true;
			p++;
		}
		if (p == h || !colon || p == e || *p != ']')
			return false;
		p++;
	} else {
		h = p;
		while (p < e && regch[*p]) {
			if (*p == '%') {
				if (e - p < 3 || hexv[p[1]] < 0 || hexv[p[2]] < 0)
					return false;
				p += 2;
			}
			p++;
		}
		if (p == h)
			return false;
	}
	if (p == e)
		return true;
	if (*p++ != ':' || p == e || e - p > 5)
		return false;
	for (; p < e; p++) {
		if ((unsigned)(*p - '0') > 9)
			return false;
		port = port * 10 + (*p - '0');
	}
	return port <= 65535;
}

/* 1*DIGIT, or a list of identical ones ("5, 5"); agrees with *cl if set. */
static int
content_length(const unsigned char *p, size_t n, int64_t *cl)
{
	const unsigned char *e = p + n;
	int64_t v = -1, x;
	size_t d;

	for (;;) {
		x = 0;
		for (d = 0; p < e && (unsigned)(*p - '0') <= 9; d++, p++) {
			if (d == CL_MAX_DIGITS)
				return HTTP1_BAD;
			x = x * 10 + (*p - '0');
		}
		if (d == 0 || (v >= 0 && x != v))
			return HTTP1_BAD;
		v = x;
		while (p < e && ows(*p))
			p++;
		if (p == e)
			break;
		if (*p++ != ',')
			return HTTP1_BAD;
		while (p < e && ows(*p))
			p++;
	}
	if (*cl >= 0 && *cl != v)
		return HTTP1_BAD;
	*cl = v;
	return 0;
}

/* The next element of a comma-separated list at *pp (empty elements and
 * OWS skipped): false at the end. */
static bool
next_element(const unsigned char **pp, const unsigned char *e,
    const unsigned char **t, size_t *tlen)
{
	const unsigned char *p = *pp, *te;

	while (p < e && (ows(*p) || *p == ','))
		p++;
	if (p == e) {
		*pp = p;
		return false;
	}
	*t = p;
	while (p < e && *p != ',')
		p++;
	te = p;
	while (te > *t && ows(te[-1]))
		te--;
	*tlen = (size_t)(te - *t);
	*pp = p;
	return true;
}

/* Connection: a comma list; only close and keep-alive mean anything here. */
static void
connection(const unsigned char *p, size_t n, struct http1_framing *f)
{
	const unsigned char *e = p + n, *t;
	size_t tl;

	while (next_element(&p, e, &t, &tl)) {
		if (EQ(t, tl, "close"))
			f->conn_close = true;
		else if (EQ(t, tl, "keep-alive"))
			f->conn_keep_alive = true;
	}
}

int
http1_connection_tokens(const struct http1_header *h, size_t n,
    struct http1_token *t, size_t max)
{
	const unsigned char *p, *e, *tok;
	size_t i, tl, k = 0;

	for (i = 0; i < n; i++) {
		if (h[i].name_len != 10 || !http1_header_is(&h[i], "connection"))
			continue;
		p = (const unsigned char *)h[i].value;
		e = p + h[i].value_len;
		while (next_element(&p, e, &tok, &tl)) {
			if (k == max)
				return -1;
			t[k].p = (const char *)tok;
			t[k++].len = tl;
		}
	}
	return (int)k;
}

/* What the header pass collects besides the framing. */
struct hinfo {
	bool request;
	int minor;
	unsigned hosts;
	bool te_seen;
	const unsigned char *host;
	size_t host_len;
};

/* Interpret the headers that carry framing or connection facts. */
static int
special(const unsigned char *name, size_t nlen, const unsigned char *v,
    size_t vlen, struct http1_framing *f, struct hinfo *hi)
{
	switch (nlen) {
	case 4:
		if (hi->request && EQ(name, nlen, "host")) {
			hi->hosts++;
			hi->host = v;
			hi->host_len = vlen;
		}
		break;
	case 6:
		if (hi->request && EQ(name, nlen, "expect") &&
		    EQ(v, vlen, "100-continue"))
			f->expect_continue = true;
		break;
	case 7:
		if (EQ(name, nlen, "upgrade"))
			f->has_upgrade = true;
		break;
	case 10:
		if (EQ(name, nlen, "connection")) {
			f->has_connection = true;
			connection(v, vlen, f);
		}
		break;
	case 14:
		if (EQ(name, nlen, "content-length"))
			return content_length(v, vlen, &f->content_length);
		break;
	case 17:
		if (EQ(name, nlen, "transfer-encoding")) {
			if (hi->te_seen || !EQ(v, vlen, "chunked"))
				return HTTP1_BAD;
			hi->te_seen = true;
			f->chunked = true;
		}
		break;
	}
	return 0;
}

/*
 * Header lines from *pp up to and including the empty line. On success *pp
 * points just past the head.
 */
static int
headers_parse(const unsigned char **pp, const unsigned char *end,
    struct http1_header *hdrs, const struct http1_limits *lim, size_t *num,
    struct http1_framing *f, struct hinfo *hi)
{
	const unsigned char *p = *pp, *name, *v, *ve;
	size_t n = 0, nlen;
	int rc;

	f->content_length = -1;
	f->chunked = f->conn_close = f->conn_keep_alive = false;
	f->expect_continue = f->has_upgrade = f->has_connection = false;
	for (;;) {
		if (*p == '\r') {
			if (p[1] != '\n')
				return HTTP1_BAD;
			p += 2;
			break;
		}
		/* A leading SP/HTAB (obs-fold), a space before the colon, an
		 * empty name or a bare CR/LF all end the token short of ':'. */
		name = p;
		while (tchar[*p])
			p++;
		if (*p != ':' || p == name)
			return HTTP1_BAD;
		nlen = (size_t)(p - name);
		p++;
		while (ows(*p))
			p++;
		v = p;
		p = skip_value(p, end);
		if (p[0] != '\r' || p[1] != '\n')
			return HTTP1_BAD;
		if (lim->field != 0 && (size_t)(p - name) > lim->field)
			return HTTP1_FIELD_TOO_LONG;
		ve = p;
		while (ve > v && ows(ve[-1]))
			ve--;
		p += 2;
		if (n == lim->headers)
			return HTTP1_TOO_MANY;
		hdrs[n].name = (const char *)name;
		hdrs[n].name_len = nlen;
		hdrs[n].value = (const char *)v;
		hdrs[n].value_len = (size_t)(ve - v);
		n++;
		if ((rc = special(name, nlen, v, (size_t)(ve - v), f, hi)) != 0)
			return rc;
	}
	/* Both, or chunked on 1.0, is the classic smuggling ambiguity. */
	if (f->chunked && (f->content_length >= 0 || hi->minor == 0))
		return HTTP1_BAD;
	*num = n;
	*pp = p;
	return 0;
}

/* Request-target: origin-form, absolute-form (http/https) or "*". */
static int
target(struct http1_request *req, struct hinfo *hi)
{
	const unsigned char *t = (const unsigned char *)req->target;
	const unsigned char *e = t + req->target_len, *a, *p;
	size_t skip;

	if (t[0] == '/') {
		req->path = req->target;
		req->path_len = req->target_len;
		return 0;
	}
	if (req->target_len == 1 && t[0] == '*') {
		if (req->method_len != 7 ||
		    memcmp(req->method, "OPTIONS", 7) != 0)
			return HTTP1_BAD;
		req->path = req->target;
		req->path_len = 1;
		return 0;
	}
	if (req->target_len > 7 && EQ(t, 7, "http://"))
		skip = 7;
	else if (req->target_len > 8 && EQ(t, 8, "https://"))
		skip = 8;
	else
		return HTTP1_BAD;
	a = p = t + skip;
	while (p < e && *p != '/' && *p != '?')
		p++;
	if ((p < e && *p == '?') || !valid_authority(a, (size_t)(p - a)))
		return HTTP1_BAD;
	req->path = (const char *)p;
	req->path_len = (size_t)(e - p);
	if (hi->hosts == 0) {
		hi->host = a;
		hi->host_len = (size_t)(p - a);
	} else if (!http1_name_eq((const char *)hi->host, hi->host_len,
	    (const char *)a, (size_t)(p - a))) {
		return HTTP1_BAD;
	}
	return 0;
}

/*
 * An incomplete request head: 0 while it can still become a valid one,
 * else the refusal its bytes already earn (see http1.h). Only the first
 * line is looked at, and a target past lim->target ends the look, so a
 * trickling client costs at most one scan of that line per call.
 */
static int
request_start(const unsigned char *p, size_t len,
    const struct http1_limits *lim)
{
	const unsigned char *e = p + len, *q, *t, *lf, *sp, *te;
	static const char ver[] = "HTTP/";
	size_t n;

	if (len == 0)
		return 0;
	for (q = p; q < e && tchar[*q]; q++)
		;
	if (q == p || (size_t)(q - p) > METHOD_MAX)
		return HTTP1_BAD;
	if (q == e)
		return 0;
	if (*q != ' ')
		return HTTP1_BAD;
	t = q + 1;
	lf = memchr(t, '\n', (size_t)(e - t));
	te = lf != NULL ? lf : e;
	sp = memchr(t, ' ', (size_t)(te - t));
	if (lim->target != 0 && (size_t)((sp != NULL ? sp : te) - t) >
	    lim->target)
		return HTTP1_URI_TOO_LONG;
	if (sp == NULL)
		return lf != NULL ? HTTP1_BAD : 0;	/* HTTP/0.9 form */
	n = (size_t)(te - (sp + 1));
	if (memcmp(sp + 1, ver, n < 5 ? n : 5) != 0)
		return HTTP1_BAD;
	if (lf != NULL && (n != 9 || lf[-1] != '\r'))
		return HTTP1_BAD;
	return 0;
}

int
http1_parse_request(const char *buf, size_t len, size_t prev_len,
    struct http1_request *req, struct http1_header *headers,
    const struct http1_limits *lim)
{
	const unsigned char *p = (const unsigned char *)buf, *end, *m, *t;
	struct hinfo hi = { .request = true };
	size_t hlen = 0;
	int rc, early;

	if ((rc = head_end(buf, len, prev_len, lim->head, &hlen)) != 0) {
		early = request_start(p, len < lim->head ? len : lim->head, lim);
		return early != 0 ? early : rc;
	}
	end = p + hlen;

	m = p;
	while (tchar[*p])
		p++;
	if (p == m || *p != ' ' || (size_t)(p - m) > METHOD_MAX)
		return HTTP1_BAD;
	req->method = (const char *)m;
	req->method_len = (size_t)(p - m);
	t = ++p;
	p = skip_target(p, end);
	if (p == t || *p != ' ')
		return HTTP1_BAD;
	req->target = (const char *)t;
	req->target_len = (size_t)(p - t);
	if (lim->target != 0 && req->target_len > lim->target)
		return HTTP1_URI_TOO_LONG;
	p++;
	/* "HTTP/1.1" CRLF, and the head's own final CRLF after it. */
	if (end - p < 12)
		return HTTP1_BAD;
	if ((rc = version(p, &hi.minor)) != 0)
		return rc;
	if (p[8] != '\r' || p[9] != '\n')
		return HTTP1_BAD;
	p += 10;
	req->minor_version = hi.minor;

	req->headers = headers;
	if ((rc = headers_parse(&p, end, headers, lim, &req->num_headers,
	    &req->f, &hi)) != 0)
		return rc;

	if (hi.hosts > 1 || (hi.minor == 1 && hi.hosts == 0))
		return HTTP1_BAD;
	if (hi.hosts == 1 && !valid_authority(hi.host, hi.host_len))
		return HTTP1_BAD;
	if (req->method_len == 7 && memcmp(req->method, "CONNECT", 7) == 0)
		return HTTP1_NOT_IMPL;
	if ((rc = target(req, &hi)) != 0)
		return rc;
	req->host = (const char *)hi.host;
	req->host_len = hi.host_len;
	return (int)(p - (const unsigned char *)buf);
}

int
http1_parse_response(const char *buf, size_t len, size_t prev_len,
    struct http1_response *res, struct http1_header *headers,
    const struct http1_limits *lim)
{
	const unsigned char *p = (const unsigned char *)buf, *end, *r;
	struct hinfo hi = { .request = false };
	size_t hlen = 0;
	int rc;

	if ((rc = head_end(buf, len, prev_len, lim->head, &hlen)) != 0)
		return rc;
	end = p + hlen;

	/* "HTTP/1.1 200" CRLF plus the final CRLF. */
	if (end - p < 16)
		return HTTP1_BAD;
	if ((rc = version(p, &hi.minor)) != 0)
		return rc;
	if (p[8] != ' ' || (unsigned)(p[9] - '1') > 4 ||
	    (unsigned)(p[10] - '0') > 9 || (unsigned)(p[11] - '0') > 9)
		return HTTP1_BAD;
	res->minor_version = hi.minor;
	res->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	p += 12;
	if (*p == ' ')
		p++;
	else if (*p != '\r')
		return HTTP1_BAD;
	r = p;
	p = skip_value(p, end);
	if (p[0] != '\r' || p[1] != '\n')
		return HTTP1_BAD;
	res->reason = (const char *)r;
	res->reason_len = (size_t)(p - r);
	p += 2;

	res->headers = headers;
	if ((rc = headers_parse(&p, end, headers, lim, &res->num_headers,
	    &res->f, &hi)) != 0)
		return rc;
	return (int)(p - (const unsigned char *)buf);
}

/* Chunked body states; line_len counts the bytes of the current line. */
enum {
	CS_SIZE = 0,	/* in the hex size; line_len = digits so far */
	CS_EXT_NAME0,	/* after ';': an extension name must follow */
	CS_EXT_NAME,	/* in an extension name (>= 1 byte) */
	CS_EXT_VAL0,	/* after '=': a token or a quoted-string must follow */
	CS_EXT_TOKEN,	/* in a token value (>= 1 byte) */
	CS_EXT_QUOTED,	/* inside a quoted-string value */
	CS_EXT_QESC,	/* after a backslash inside the quoted-string */
	CS_EXT_QEND,	/* after the closing quote: ';' or CR */
	CS_SIZE_LF,	/* CR ending the size line seen; LF must follow */
	CS_DATA,	/* chunk_left (> 0) data bytes to go */
	CS_DATA_CR,	/* data done; CR must follow */
	CS_DATA_LF,	/* CR after data seen; LF must follow */
	CS_TRL_START,	/* at the start of a trailer line or the final CRLF */
	CS_TRL_NAME,	/* in a trailer field name (>= 1 byte) */
	CS_TRL_VALUE,	/* in a trailer value, up to CR */
	CS_TRL_LF,	/* CR ending a trailer line seen; LF must follow */
	CS_END_LF,	/* CR of the final empty line seen; LF ends the body */
	CS_DONE,	/* body complete; nothing more is consumed */
	CS_ERROR,	/* refused; every later call refuses too */
};

/* qdtext and quoted-pair bytes (RFC 9110 5.6.4). */
static inline bool
qdtext(unsigned char c)
{
	return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
	    (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

enum ck_mode {
	CK_SCAN,	/* validate and count only */
	CK_DECODE,	/* keep the data bytes, at the front of buf */
	CK_STRIP,	/* keep everything but the trailer field lines */
};

/* One engine for scan, decode and strip: bytes kept are moved to the
 * front of buf (never for CK_SCAN, where buf is not written). */
static ssize_t
chunked_run(struct http1_chunked *c, const char *buf, size_t len,
    enum ck_mode mode, size_t *out_len, bool *done)
{
	const unsigned char *s = (const unsigned char *)buf;
	char *dst = (char *)buf;
	size_t i = 0, out = 0, n;
	unsigned char ch;
	int st = c->state;
	bool keep;

	*done = false;
	if (out_len != NULL)
		*out_len = 0;
	if (st == CS_ERROR)
		return HTTP1_BAD;
	while (i < len && st != CS_DONE) {
		if (st == CS_DATA) {
			n = len - i;
			if (c->chunk_left < n)
				n = (size_t)c->chunk_left;
			if (mode != CK_SCAN && n > 0) {
				if (out != i)
					memmove(dst + out, buf + i, n);
				out += n;
			}
			i += n;
			c->chunk_left -= n;
			if (c->chunk_left == 0)
				st = CS_DATA_CR;
			continue;
		}
		ch = s[i++];
		if (st < CS_DATA && ++c->line_len > CHUNK_LINE_MAX)
			goto bad;
		keep = mode == CK_STRIP;
		switch (st) {
		case CS_SIZE:
			if (hexv[ch] >= 0) {
				/* Leading zeros are fine: the value is what
				 * is bounded, not the digits. */
				if (c->chunk_left > (CHUNK_SIZE_MAX -
				    (uint64_t)hexv[ch]) / 16)
					goto bad;
				c->chunk_left = c->chunk_left * 16 +
				    (uint64_t)hexv[ch];
			} else if (c->line_len == 1) {
				goto bad;
			} else if (ch == ';') {
				st = CS_EXT_NAME0;
			} else if (ch == '\r') {
				st = CS_SIZE_LF;
			} else {
				goto bad;
			}
			break;
		case CS_EXT_NAME0:
			if (!tchar[ch])
				goto bad;
			st = CS_EXT_NAME;
			break;
		case CS_EXT_NAME:
			if (ch == '=')
				st = CS_EXT_VAL0;
			else if (ch == ';')
				st = CS_EXT_NAME0;
			else if (ch == '\r')
				st = CS_SIZE_LF;
			else if (!tchar[ch])
				goto bad;
			break;
		case CS_EXT_VAL0:
			if (ch == '"')
				st = CS_EXT_QUOTED;
			else if (tchar[ch])
				st = CS_EXT_TOKEN;
			else
				goto bad;
			break;
		case CS_EXT_TOKEN:
			if (ch == ';')
				st = CS_EXT_NAME0;
			else if (ch == '\r')
				st = CS_SIZE_LF;
			else if (!tchar[ch])
				goto bad;
			break;
		case CS_EXT_QUOTED:
			if (ch == '"')
				st = CS_EXT_QEND;
			else if (ch == '\\')
				st = CS_EXT_QESC;
			else if (!qdtext(ch))
				goto bad;
			break;
		case CS_EXT_QESC:
			if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
				goto bad;
			st = CS_EXT_QUOTED;
			break;
		case CS_EXT_QEND:
			if (ch == ';')
				st = CS_EXT_NAME0;
			else if (ch == '\r')
				st = CS_SIZE_LF;
			else
				goto bad;
			break;
		case CS_SIZE_LF:
			if (ch != '\n')
				goto bad;
			c->line_len = 0;
			c->total += c->chunk_left;
			st = c->chunk_left == 0 ? CS_TRL_START : CS_DATA;
			break;
		case CS_DATA_CR:
			if (ch != '\r')
				goto bad;
			st = CS_DATA_LF;
			break;
		case CS_DATA_LF:
			if (ch != '\n')
				goto bad;
			st = CS_SIZE;
			break;
		case CS_TRL_START:
			if (ch == '\r') {
				st = CS_END_LF;
			} else if (tchar[ch]) {
				st = CS_TRL_NAME;
				c->trailers++;
				c->line_len = 1;
				c->trailer_bytes++;
				keep = false;
			} else {
				goto bad;	/* obs-fold, bare LF, ... */
			}
			break;
		case CS_TRL_NAME:
			if (ch == ':')
				st = CS_TRL_VALUE;
			else if (!tchar[ch])
				goto bad;
			c->line_len++;
			c->trailer_bytes++;
			keep = false;
			break;
		case CS_TRL_VALUE:
			if (ch == '\r') {
				st = CS_TRL_LF;
				if (c->line_len > c->trailer_line_max)
					c->trailer_line_max = c->line_len;
			} else if (!fvchar[ch]) {
				goto bad;
			} else {
				c->line_len++;
			}
			c->trailer_bytes++;
			keep = false;
			break;
		case CS_TRL_LF:
			if (ch != '\n')
				goto bad;
			c->line_len = 0;
			c->trailer_bytes++;
			keep = false;
			st = CS_TRL_START;
			break;
		case CS_END_LF:
			if (ch != '\n')
				goto bad;
			st = CS_DONE;
			break;
		default:
			goto bad;
		}
		if (keep) {
			if (out != i - 1)
				dst[out] = (char)ch;
			out++;
		}
	}
	c->state = st;
	*done = st == CS_DONE;
	if (out_len != NULL)
		*out_len = out;
	return (ssize_t)i;
bad:
	c->state = CS_ERROR;
	if (out_len != NULL)
		*out_len = out;
	return HTTP1_BAD;
}

ssize_t
http1_chunked_scan(struct http1_chunked *c, const char *buf, size_t len,
    bool *done)
{
	return chunked_run(c, buf, len, CK_SCAN, NULL, done);
}

ssize_t
http1_chunked_decode(struct http1_chunked *c, char *buf, size_t len,
    size_t *out_len, bool *done)
{
	return chunked_run(c, buf, len, CK_DECODE, out_len, done);
}

ssize_t
http1_chunked_strip(struct http1_chunked *c, char *buf, size_t len,
    size_t *out_len, bool *done)
{
	return chunked_run(c, buf, len, CK_STRIP, out_len, done);
}

const char *
http1_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}
