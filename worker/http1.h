/*
 * http1: a strict, zero-copy HTTP/1.1 parser (RFC 9112) for request heads,
 * response heads and chunked bodies. Results point into the caller's
 * buffer. Anything two parsers could read differently is refused.
 *
 * Resumable: the caller appends bytes and calls again with the whole
 * buffer and the length it passed last time (prev_len); the head is looked
 * at only once its terminating CRLFCRLF has arrived, so a slow client costs
 * one scan of each new byte, not a re-parse.
 */
#ifndef PORTICO_HTTP1_H
#define PORTICO_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Return codes of the head parsers (negative). */
#define HTTP1_INCOMPLETE	(-2)	/* need more bytes */
#define HTTP1_BAD		(-1)	/* malformed or ambiguous: 400 */
#define HTTP1_TOO_MANY		(-3)	/* more headers than max: 431 */
#define HTTP1_TOO_LONG		(-4)	/* head longer than max_head: 431 */
#define HTTP1_BAD_VERSION	(-5)	/* not HTTP/1.0 or 1.1: 505 */
#define HTTP1_NOT_IMPL		(-6)	/* framing we do not implement: 501 */
#define HTTP1_FIELD_TOO_LONG	(-7)	/* one field line over lim->field: 431 */
#define HTTP1_URI_TOO_LONG	(-8)	/* request-target over lim->target: 414 */

/* What a head may hold. field and target are 0 for "no own limit" (the
 * head limit still bounds them). */
struct http1_limits {
	size_t headers;			/* header lines: HTTP1_TOO_MANY */
	size_t head;			/* whole head, CRLFCRLF included:
					 * HTTP1_TOO_LONG */
	size_t field;			/* one field line, CRLF excluded */
	size_t target;			/* request-target */
};

struct http1_header {
	const char *name;
	size_t name_len;
	const char *value;		/* leading/trailing OWS trimmed */
	size_t value_len;
};

/* Framing and connection facts the parser derives from the headers. */
struct http1_framing {
	int64_t content_length;		/* -1 when absent */
	bool chunked;			/* Transfer-Encoding: chunked */
	bool conn_close;		/* Connection: close seen */
	bool conn_keep_alive;		/* Connection: keep-alive seen */
	bool expect_continue;		/* request only: Expect: 100-continue */
	bool has_upgrade;		/* Upgrade header present */
	bool has_connection;		/* a Connection header present */
};

struct http1_request {
	const char *method;
	size_t method_len;
	const char *target;		/* as sent (origin-form or absolute-form) */
	size_t target_len;
	const char *path;		/* origin-form path+query part of target */
	size_t path_len;
	int minor_version;		/* 0 or 1 */
	const char *host;		/* Host value (authority), exactly one */
	size_t host_len;
	struct http1_header *headers;	/* caller's array */
	size_t num_headers;
	struct http1_framing f;
};

struct http1_response {
	int minor_version;
	int status;
	const char *reason;
	size_t reason_len;
	struct http1_header *headers;
	size_t num_headers;
	struct http1_framing f;
};

/*
 * http1_parse_request: parse the request head at buf[0..len) into req,
 * with the header lines in the caller's array `headers` (lim->headers
 * long). Returns the head's length in bytes (> 0) on success, or one of
 * the negative codes above. Refused (HTTP1_BAD): both Content-Length and
 * Transfer-Encoding; differing, repeated-differing or malformed
 * Content-Length; Transfer-Encoding other than exactly "chunked" (HTTP1_BAD
 * too) or on HTTP/1.0; obs-fold; whitespace before a colon; bare CR or bare
 * LF; NUL or other control bytes; a header name with non-token bytes; a
 * missing or repeated Host; an absolute-form target whose authority differs
 * from Host; a target not in origin-form, absolute-form (http/https) or
 * "*" (OPTIONS only); an invalid method token.
 *
 * An incomplete head is refused as soon as its bytes show it cannot become
 * a valid HTTP/1.x request, rather than when the head timer runs out: a
 * first byte that cannot start a method (a TLS ClientHello, binary junk),
 * a complete first line that is not "method SP target SP HTTP/x.y" (an
 * HTTP/0.9 request), or a target already longer than lim->target
 * (HTTP1_URI_TOO_LONG).
 */
int http1_parse_request(const char *buf, size_t len, size_t prev_len,
    struct http1_request *req, struct http1_header *headers,
    const struct http1_limits *lim);

/* http1_parse_response: the same for an upstream response head. The
 * framing rules are the same (both CL and TE, bad CL, bare CR/LF, obs-fold:
 * HTTP1_BAD). 1xx responses parse normally; the caller skips them.
 * lim->target is not used. */
int http1_parse_response(const char *buf, size_t len, size_t prev_len,
    struct http1_response *res, struct http1_header *headers,
    const struct http1_limits *lim);

/* A name listed in a Connection header. */
struct http1_token {
	const char *p;
	size_t len;
};

/* http1_connection_tokens: the names the Connection headers among
 * headers[0..n) list, into t[0..max). Returns their count, or -1 when
 * there are more than max (the caller refuses what it cannot track). */
int http1_connection_tokens(const struct http1_header *headers, size_t n,
    struct http1_token *t, size_t max);

/*
 * Chunked body scanner: validates a chunked body as it streams and tells
 * how many bytes of the buffer belong to it, so the caller can forward the
 * chunked encoding verbatim. Chunk extensions are accepted only in the
 * strict form ;token[=token|quoted-string]; trailers are validated as
 * header lines and counted, so the caller can hold them to its limits.
 */
struct http1_chunked {
	int state;			/* internal; zero-initialise */
	uint64_t chunk_left;		/* data bytes left in the current chunk */
	uint64_t total;			/* data bytes seen so far (sum of sizes) */
	size_t line_len;		/* length of the size/trailer line so far */
	size_t trailers;		/* trailer field lines seen */
	size_t trailer_bytes;		/* their bytes, CRLFs included */
	size_t trailer_line_max;	/* longest trailer line, CRLF excluded */
};

/*
 * http1_chunked_scan: consume bytes of buf[0..len). Returns the count
 * consumed (all of them unless the body ended inside buf) and sets *done
 * when the last chunk and trailers are complete; returns HTTP1_BAD on an
 * invalid chunk size (empty, non-hex, a value past 2^62; leading zeros
 * are allowed), a missing CRLF after data, bare CR/LF, or a size line over
 * 4096 bytes. Trailer lines have no limit here: the caller checks the
 * counts in c.
 */
ssize_t http1_chunked_scan(struct http1_chunked *c, const char *buf,
    size_t len, bool *done);

/*
 * http1_chunked_decode: the same validation, decoding in place: the data
 * bytes are moved to the front of buf and their count is stored in
 * *out_len. Returns bytes consumed from buf or HTTP1_BAD.
 */
ssize_t http1_chunked_decode(struct http1_chunked *c, char *buf, size_t len,
    size_t *out_len, bool *done);

/*
 * http1_chunked_strip: the scan, dropping the trailer fields in place: the
 * chunked encoding stays valid and verbatim up to its last chunk, which is
 * followed directly by the final CRLF. *out_len is the count of bytes kept
 * at the front of buf. Returns bytes consumed or HTTP1_BAD.
 */
ssize_t http1_chunked_strip(struct http1_chunked *c, char *buf, size_t len,
    size_t *out_len, bool *done);

/* http1_name_eq, http1_header_is: case-insensitive comparison of a
 * header name. The length check is inline: most names a header is
 * compared with differ in length, and then there is no call. */
bool http1_name_eq_bytes(const char *name, const char *lit, size_t len);
static inline bool
http1_name_eq(const char *name, size_t len, const char *lit, size_t litlen)
{
	return len == litlen && http1_name_eq_bytes(name, lit, len);
}
#define http1_header_is(h, lit) \
	http1_name_eq((h)->name, (h)->name_len, (lit), sizeof(lit) - 1)

/* http1_status_text: the reason phrase for a status code ("OK", ...). */
const char *http1_status_text(int status);

#endif
