/*
 * demo_http: the HTTP side of the demo origin: a strict request-head
 * parser, response staging and writing, and the services' handlers
 * (users, orders, products, payments, echo).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "demo.h"

#define OUT_CAP		32768		/* response bytes staged per write */
#define MAX_SLEEP_MS	600000
#define CHUNK_MAX	16384

/* xorshift64*: reproducible with --seed, good enough for failure dice. */
static uint64_t
rng_next(struct demo *d)
{
	d->rng ^= d->rng >> 12;
	d->rng ^= d->rng << 25;
	d->rng ^= d->rng >> 27;
	return d->rng * 2685821657736338717ULL;
}

static double
rng_unit(struct demo *d)
{
	return (double)(rng_next(d) >> 11) / (double)(1ULL << 53);
}

static uint32_t
hash(const char *p, size_t n)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 16777619u;
	}
	return h;
}

/* ---- growable string for response bodies ---- */

static void
sb_reserve(struct sbuf *s, size_t more)
{
	size_t cap;
	char *p;

	if (s->err || s->len + more <= s->cap)
		return;
	cap = s->cap ? s->cap : 512;
	while (cap < s->len + more)
		cap *= 2;
	p = realloc(s->p, cap);
	if (p == NULL) {
		s->err = 1;
		return;
	}
	s->p = p;
	s->cap = cap;
}

static void
sb_add(struct sbuf *s, const char *p, size_t n)
{
	sb_reserve(s, n);
	if (s->err)
		return;
	memcpy(s->p + s->len, p, n);
	s->len += n;
}

static void
sb_str(struct sbuf *s, const char *p)
{
	sb_add(s, p, strlen(p));
}

__attribute__((format(printf, 2, 3)))
static void
sb_printf(struct sbuf *s, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(tmp))
		n = sizeof(tmp) - 1;
	sb_add(s, tmp, (size_t)n);
}

/* A quoted JSON string; bytes >= 0x80 become \u00XX so the output stays
 * valid UTF-8 whatever the client sent. */
static void
sb_json(struct sbuf *s, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	sb_reserve(s, n * 6 + 2);
	if (s->err)
		return;
	s->p[s->len++] = '"';
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch == '"' || ch == '\\') {
			s->p[s->len++] = '\\';
			s->p[s->len++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			s->p[s->len++] = '\\';
			s->p[s->len++] = 'u';
			s->p[s->len++] = '0';
			s->p[s->len++] = '0';
			s->p[s->len++] = hex[ch >> 4];
			s->p[s->len++] = hex[ch & 15];
		} else
			s->p[s->len++] = (char)ch;
	}
	s->p[s->len++] = '"';
}

void
sb_free(struct sbuf *s)
{
	free(s->p);
	memset(s, 0, sizeof(*s));
}

/* ---- request parsing (our own, deliberately strict) ---- */

static int
is_tchar(unsigned char ch)
{
	return isalnum(ch) || (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int
is_vchar(unsigned char ch)
{
	return ch > 0x20 && ch != 0x7f;
}

int
ieq(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

static int
parse_request_line(const char *p, size_t n, struct req *r, size_t base)
{
	size_t i = 0, start;

	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i >= n || p[i] != ' ')
		return -1;
	r->method = base;
	r->method_len = i;
	start = ++i;
	while (i < n && is_vchar((unsigned char)p[i]))
		i++;
	if (i == start || i >= n || p[i] != ' ')
		return -1;
	r->target = base + start;
	r->target_len = i - start;
	i++;
	if (n - i != 8 || memcmp(p + i, "HTTP/1.", 7) != 0 ||
	    (p[i + 7] != '0' && p[i + 7] != '1'))
		return -1;
	r->minor = p[i + 7] - '0';
	return 0;
}

static int
parse_header_line(const char *p, size_t n, struct req *r, size_t base)
{
	size_t i = 0, v, e;
	struct hdr *h;

	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	/* catches an empty name, obs-fold and whitespace before the colon */
	if (i == 0 || i >= n || p[i] != ':')
		return PH_BAD;
	v = i + 1;
	while (v < n && (p[v] == ' ' || p[v] == '\t'))
		v++;
	e = n;
	while (e > v && (p[e - 1] == ' ' || p[e - 1] == '\t'))
		e--;
	for (size_t k = v; k < e; k++) {
		unsigned char ch = (unsigned char)p[k];

		if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
			return PH_BAD;
	}
	if (r->nhdr == r->max_hdr)
		return PH_TOO_MANY;
	h = &r->hdr[r->nhdr++];
	h->name = base;
	h->name_len = i;
	h->value = base + v;
	h->value_len = e - v;
	return 0;
}

/*
 * Parse the head at buf[0..len): returns its length including the empty
 * line, PH_NEED when the empty line has not arrived, PH_BAD for anything
 * malformed, PH_TOO_MANY past r->max_hdr headers. Lines end in CRLF only.
 */
long
parse_head(const char *buf, size_t len, struct req *r)
{
	size_t pos = 0;
	int first = 1, rc;

	r->nhdr = 0;
	/* RFC 9112 2.2: ignore at least one empty line before the request */
	while (pos + 1 < len && buf[pos] == '\r' && buf[pos + 1] == '\n' &&
	    pos < 8)
		pos += 2;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end, n;

		if (nl == NULL)
			return PH_NEED;
		end = (size_t)(nl - buf);
		if (end == pos || buf[end - 1] != '\r')
			return PH_BAD;	/* bare LF */
		n = end - 1 - pos;
		if (memchr(buf + pos, '\r', n) != NULL ||
		    memchr(buf + pos, '\0', n) != NULL)
			return PH_BAD;
		if (first) {
			if (parse_request_line(buf + pos, n, r, pos) < 0)
				return PH_BAD;
			first = 0;
		} else if (n == 0) {
			return (long)(end + 1);
		} else {
			rc = parse_header_line(buf + pos, n, r, pos);
			if (rc < 0)
				return rc;
		}
		pos = end + 1;
	}
	return PH_NEED;
}

int
parse_u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > 18)
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return 0;
}

/* Does the comma-separated list p[0..n) contain token tok? */
int
has_token(const char *p, size_t n, const char *tok)
{
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
			i++;
		s = i;
		while (i < n && p[i] != ',')
			i++;
		e = i;
		while (e > s && (p[e - 1] == ' ' || p[e - 1] == '\t'))
			e--;
		if (e > s && ieq(p + s, e - s, tok))
			return 1;
	}
	return 0;
}

/* ---- output ---- */

void
update_events(struct conn *c)
{
	uint32_t want = 0;
	struct epoll_event ev;

	if (c->state == ST_HEAD || c->state == ST_BODY ||
	    c->state == ST_LINGER)
		want |= EPOLLIN;
	if (c->state == ST_WRITE || c->out_off < c->out_len)
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.events = want;
	ev.data.ptr = c;
	if (epoll_ctl(c->l->d->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = want;
}

int
out_reserve(struct conn *c)
{
	if (c->out == NULL) {
		c->out = malloc(OUT_CAP);
		if (c->out == NULL)
			return -1;
		c->out_off = c->out_len = 0;
	}
	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	return 0;
}

/* Move as much of the response body as fits into the out buffer. */
void
stage_body(struct conn *c)
{
	size_t space, k;
	int i;

	if (c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	for (i = 0; i < 64; i++) {
		space = OUT_CAP - c->out_len;
		if (!c->resp_chunked) {
			if (c->resp_left == 0 || space == 0)
				return;
			k = space < c->resp_left ? space : (size_t)c->resp_left;
		} else {
			if (c->resp_final || space < 64)
				return;
			if (c->resp_left == 0) {
				memcpy(c->out + c->out_len, "0\r\n\r\n", 5);
				c->out_len += 5;
				c->resp_final = 1;
				return;
			}
			k = c->chunk_size;
			if (k > c->resp_left)
				k = (size_t)c->resp_left;
			if (k > space - 32)
				k = space - 32;
			c->out_len += (size_t)sprintf(c->out + c->out_len,
			    "%zx\r\n", k);
		}
		if (c->body.p != NULL)
			memcpy(c->out + c->out_len, c->body.p + c->resp_off, k);
		else
			memset(c->out + c->out_len, 'x', k);
		c->out_len += k;
		c->resp_off += k;
		c->resp_left -= k;
		if (c->resp_chunked) {
			memcpy(c->out + c->out_len, "\r\n", 2);
			c->out_len += 2;
		}
	}
}

/* Write what is staged. Returns 1 when all is written, 0 on EAGAIN,
 * STEP_GONE when the connection failed and was closed. */
int
flush_out(struct conn *c)
{
	int i;

	for (i = 0; i < 64 && c->out_off < c->out_len; i++) {
		ssize_t n = send(c->fd, c->out + c->out_off,
		    c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			conn_close(c);
			return STEP_GONE;
		}
		c->out_off += (size_t)n;
	}
	return c->out_off == c->out_len;
}

static const char *
reason_phrase(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

struct resp {
	int status;
	struct sbuf body;	/* JSON; unused when gen */
	int gen;		/* body is gen_len 'x' bytes */
	uint64_t gen_len;
	int chunked;
	const char *allow;	/* Allow header for 405 */
};

/*
 * Stage the status line, headers and body of r in c; takes r->body.
 * Returns 0, or -1 when memory ran out.
 */
static int
stage_response(struct conn *c, struct resp *r)
{
	int no_body = (r->status >= 100 && r->status < 200) ||
	    r->status == 204 || r->status == 304;
	uint64_t len = r->gen ? r->gen_len : r->body.len;
	char lenhdr[64];
	int n;

	if (r->body.err || out_reserve(c) < 0) {
		sb_free(&r->body);
		return -1;
	}
	if (c->minor == 0)
		r->chunked = 0;		/* HTTP/1.0 has no chunked coding */
	if (no_body)
		lenhdr[0] = '\0';
	else if (r->chunked)
		snprintf(lenhdr, sizeof(lenhdr), "Transfer-Encoding: chunked\r\n");
	else
		snprintf(lenhdr, sizeof(lenhdr), "Content-Length: %" PRIu64 "\r\n",
		    len);
	/* out holds at most a 100 Continue here, so the head always fits */
	n = snprintf(c->out + c->out_len, OUT_CAP - c->out_len,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\n"
	    "X-Demo-Service: %s\r\n"
	    "X-Demo-Port: %d\r\n"
	    "%s%s%s%s%s"
	    "\r\n",
	    r->status, reason_phrase(r->status),
	    r->gen ? "text/plain" : "application/json",
	    service_names[c->l->svc], c->l->port, lenhdr,
	    r->allow ? "Allow: " : "", r->allow ? r->allow : "",
	    r->allow ? "\r\n" : "",
	    !c->keep_alive ? "Connection: close\r\n" :
	    (c->minor == 0 ? "Connection: keep-alive\r\n" : ""));
	if (n < 0 || (size_t)n >= OUT_CAP - c->out_len) {
		sb_free(&r->body);
		return -1;
	}
	c->out_len += (size_t)n;
	sb_free(&c->body);
	if (no_body || c->is_head) {
		sb_free(&r->body);
		c->resp_left = 0;
		c->resp_chunked = 0;
	} else {
		c->body = r->body;
		if (r->gen)
			sb_free(&c->body);
		c->resp_left = len;
		c->resp_chunked = r->chunked;
		/* "several chunks": about four for small bodies */
		c->chunk_size = (size_t)((len + 3) / 4);
		if (c->chunk_size == 0)
			c->chunk_size = 1;
		if (c->chunk_size > CHUNK_MAX)
			c->chunk_size = CHUNK_MAX;
	}
	memset(&r->body, 0, sizeof(r->body));
	c->resp_off = 0;
	c->resp_final = 0;
	return 0;
}

/* Answer a request we cannot read and close after it. */
int
fail_request(struct conn *c, int status, const char *msg)
{
	struct resp r;

	memset(&r, 0, sizeof(r));
	r.status = status;
	sb_printf(&r.body, "{\"error\":\"%s\",\"status\":%d}", msg, status);
	c->keep_alive = 0;
	c->is_head = 0;
	c->in_off = c->in_len = 0;
	if (stage_response(c, &r) < 0) {
		conn_close(c);
		return STEP_GONE;
	}
	c->state = ST_WRITE;
	return STEP_MORE;
}

/* ---- the services ---- */

struct product {
	const char *id, *name;
	double price;
};

static const struct product catalogue[] = {
	{ "p-1", "Espresso machine", 249.00 },
	{ "p-2", "Coffee grinder", 89.50 },
	{ "p-3", "Milk frother", 39.90 },
	{ "p-4", "Pour-over kettle", 54.00 },
	{ "p-5", "Ceramic mug", 12.00 },
	{ "p-6", "Bean subscription", 19.99 },
};
#define NPRODUCTS (sizeof(catalogue) / sizeof(catalogue[0]))

static const char *const user_names[][2] = {
	{ "Ada Lovelace", "ada" }, { "Alan Turing", "alan" },
	{ "Grace Hopper", "grace" }, { "Edsger Dijkstra", "edsger" },
	{ "Barbara Liskov", "barbara" }, { "Ken Thompson", "ken" },
	{ "Margaret Hamilton", "margaret" }, { "Dennis Ritchie", "dennis" },
};

static const char *const order_states[] = {
	"pending", "paid", "shipped", "delivered",
};

static void
json_product(struct sbuf *b, const struct product *p, const char *id,
    size_t id_len)
{
	sb_str(b, "{\"id\":");
	if (id != NULL)
		sb_json(b, id, id_len);
	else
		sb_json(b, p->id, strlen(p->id));
	sb_str(b, ",\"name\":");
	sb_json(b, p->name, strlen(p->name));
	sb_printf(b, ",\"price\":%.2f,\"currency\":\"EUR\"}", p->price);
}

/* If path is prefix followed by one non-empty segment, point *id at it. */
static int
match_id(const char *path, size_t n, const char *prefix, const char **id,
    size_t *id_len)
{
	size_t pl = strlen(prefix);

	if (n <= pl || memcmp(path, prefix, pl) != 0)
		return 0;
	if (memchr(path + pl, '/', n - pl) != NULL)
		return 0;
	*id = path + pl;
	*id_len = n - pl;
	return 1;
}

static const char *
query_get(const char *q, size_t qn, const char *key, size_t *vlen)
{
	size_t i = 0, kl = strlen(key);

	while (i < qn) {
		size_t s = i, e;
		const char *amp = memchr(q + i, '&', qn - i);

		e = amp ? (size_t)(amp - q) : qn;
		if (e - s > kl && memcmp(q + s, key, kl) == 0 && q[s + kl] == '=') {
			*vlen = e - s - kl - 1;
			return q + s + kl + 1;
		}
		if (e - s == kl && memcmp(q + s, key, kl) == 0) {
			*vlen = 0;
			return q + e;
		}
		i = e + 1;
	}
	return NULL;
}

/* Query parameter key as a number in [min, max]: 1 and *out set when
 * present, 0 when absent, -1 when malformed or out of range. */
static int
query_num(const char *q, size_t qn, const char *key, uint64_t min,
    uint64_t max, uint64_t *out)
{
	size_t vl;
	const char *v = query_get(q, qn, key, &vl);

	if (v == NULL)
		return 0;
	if (parse_u64(v, vl, out) < 0 || *out < min || *out > max)
		return -1;
	return 1;
}

/* The value of header NAME in C's request, or NULL. */
static const char *
head_value(struct conn *c, const char *name, size_t *len)
{
	struct hdr hv[MAX_HEADERS];
	struct req r;
	size_t i, nl = strlen(name);

	memset(&r, 0, sizeof(r));
	r.hdr = hv;
	r.max_hdr = MAX_HEADERS;
	if (parse_head(c->head, c->head_len, &r) < 0)
		return NULL;
	for (i = 0; i < r.nhdr; i++)
		if (hv[i].name_len == nl &&
		    strncasecmp(c->head + hv[i].name, name, nl) == 0) {
			*len = hv[i].value_len;
			return c->head + hv[i].value;
		}
	return NULL;
}

static void
echo_body(struct conn *c, struct sbuf *b)
{
	struct hdr hv[MAX_HEADERS];
	struct req r;
	size_t i, j;

	memset(&r, 0, sizeof(r));
	r.hdr = hv;
	r.max_hdr = MAX_HEADERS;
	/* the head was parsed once already; this pass cannot fail */
	if (parse_head(c->head, c->head_len, &r) < 0)
		r.nhdr = 0;
	sb_str(b, "{\"service\":\"echo\",\"port\":");
	sb_printf(b, "%d,\"method\":", c->l->port);
	sb_json(b, c->head + c->method, c->method_len);
	sb_str(b, ",\"path\":");
	sb_json(b, c->head + c->target, c->target_len);
	/* "target" too: the same key the scripted test origin uses */
	sb_str(b, ",\"target\":");
	sb_json(b, c->head + c->target, c->target_len);
	sb_printf(b, ",\"version\":\"HTTP/1.%d\",\"headers\":{", c->minor);
	for (i = 0; i < r.nhdr; i++) {
		const char *name = c->head + hv[i].name;
		char lower[256];
		size_t nl = hv[i].name_len, k;
		int seen = 0, first = 1;

		for (j = 0; j < i && !seen; j++)
			seen = hv[j].name_len == nl &&
			    strncasecmp(c->head + hv[j].name, name, nl) == 0;
		if (seen)
			continue;
		if (b->len > 0 && b->p[b->len - 1] != '{')
			sb_str(b, ",");
		if (nl > sizeof(lower))
			nl = sizeof(lower);
		for (k = 0; k < nl; k++)
			lower[k] = (char)tolower((unsigned char)name[k]);
		sb_json(b, lower, nl);
		sb_str(b, ":\"");
		for (j = i; j < r.nhdr; j++) {
			struct sbuf tmp;

			if (hv[j].name_len != hv[i].name_len ||
			    strncasecmp(c->head + hv[j].name, name,
			    hv[i].name_len) != 0)
				continue;
			if (!first)
				sb_str(b, ", ");
			first = 0;
			/* escape, then drop the quotes sb_json adds */
			memset(&tmp, 0, sizeof(tmp));
			sb_json(&tmp, c->head + hv[j].value, hv[j].value_len);
			if (tmp.err)
				b->err = 1;
			else
				sb_add(b, tmp.p + 1, tmp.len - 2);
			sb_free(&tmp);
		}
		sb_str(b, "\"");
	}
	sb_printf(b, "},\"body_length\":%" PRIu64 "}", c->body_seen);
}

/* Fill r with the service's answer to method+path. */
static void
route(struct conn *c, const char *path, size_t pn, const char *q, size_t qn,
    struct resp *r)
{
	struct demo *d = c->l->d;
	struct sbuf *b = &r->body;
	const char *m = c->head + c->method;
	size_t ml = c->method_len, idl, vl;
	const char *id, *v;
	int get = ieq(m, ml, "GET") || ieq(m, ml, "HEAD");
	enum service svc = c->l->svc;
	uint32_t h;
	size_t i;

	r->status = 200;
	if (svc == SVC_ECHO) {
		echo_body(c, b);
		return;
	}
	if (pn == 7 && memcmp(path, "/health", 7) == 0) {
		if (!get)
			goto not_allowed;
		sb_printf(b, "{\"status\":\"ok\",\"service\":\"%s\"}",
		    service_names[svc]);
		return;
	}
	if (svc == SVC_USERS && match_id(path, pn, "/users/", &id, &idl)) {
		if (!get)
			goto not_allowed;
		h = hash(id, idl) % 8;
		sb_str(b, "{\"id\":");
		sb_json(b, id, idl);
		sb_printf(b, ",\"name\":\"%s\",\"email\":\"%s@example.com\","
		    "\"tier\":\"%s\"}", user_names[h][0], user_names[h][1],
		    h % 3 == 0 ? "paid" : "free");
		return;
	}
	if (svc == SVC_PRODUCTS && pn == 16 &&
	    memcmp(path, "/recommendations", 16) == 0) {
		if (!get)
			goto not_allowed;
		v = query_get(q, qn, "user", &vl);
		h = v ? hash(v, vl) : 0;
		sb_str(b, "[");
		for (i = 0; i < 3; i++) {
			if (i > 0)
				sb_str(b, ",");
			json_product(b, &catalogue[(h + i) % NPRODUCTS], NULL, 0);
		}
		sb_str(b, "]");
		return;
	}
	if (svc == SVC_PRODUCTS && pn == 11 &&
	    memcmp(path, "/promotions", 11) == 0) {
		if (!get)
			goto not_allowed;
		sb_str(b, "[{\"id\":\"promo-1\",\"title\":\"Free shipping over "
		    "50 EUR\",\"discount\":0},{\"id\":\"promo-2\",\"title\":"
		    "\"10% off grinders\",\"product\":\"p-2\",\"discount\":0.1}]");
		return;
	}
	if (svc == SVC_PRODUCTS && (match_id(path, pn, "/products/", &id, &idl) ||
	    match_id(path, pn, "/v2/products/", &id, &idl))) {
		const struct product *p = &catalogue[hash(id, idl) % NPRODUCTS];
		int v2 = path[1] == 'v';

		if (!get)
			goto not_allowed;
		for (i = 0; i < NPRODUCTS; i++)
			if (ieq(id, idl, catalogue[i].id))
				p = &catalogue[i];
		json_product(b, p, id, idl);
		if (v2 && b->len > 0 && !b->err) {
			b->len--;	/* reopen the object */
			sb_printf(b, ",\"version\":2,\"stock\":%u}",
			    hash(id, idl) % 100);
		}
		return;
	}
	if (svc == SVC_ORDERS && pn == 7 && memcmp(path, "/orders", 7) == 0) {
		if (!ieq(m, ml, "POST")) {
			r->allow = "POST";
			goto not_allowed;
		}
		r->status = 201;
		sb_printf(b, "{\"id\":\"o-%" PRIu64 "\",\"status\":\"created\","
		    "\"body_length\":%" PRIu64 "}", ++d->orders_made,
		    c->body_seen);
		return;
	}
	if (svc == SVC_ORDERS && match_id(path, pn, "/orders/", &id, &idl)) {
		const struct product *a, *p2;

		if (!get)
			goto not_allowed;
		h = hash(id, idl);
		a = &catalogue[h % NPRODUCTS];
		p2 = &catalogue[(h / 7 + 1) % NPRODUCTS];
		const char *who;
		size_t wl = 0;

		sb_str(b, "{\"id\":");
		sb_json(b, id, idl);
		/* who the gateway says asked (its identity header) */
		sb_str(b, ",\"customer\":");
		if ((who = head_value(c, "X-User-ID", &wl)) != NULL)
			sb_json(b, who, wl);
		else
			sb_str(b, "null");
		sb_printf(b, ",\"status\":\"%s\",\"items\":[{\"product\":\"%s\","
		    "\"qty\":1,\"price\":%.2f},{\"product\":\"%s\",\"qty\":2,"
		    "\"price\":%.2f}],\"total\":%.2f,\"internal_cost\":1.5,"
		    "\"debug\":\"orders-db shard=%u query_ms=4\"}",
		    order_states[h % 4], a->id, a->price, p2->id, p2->price,
		    a->price + 2 * p2->price, h % 16);
		return;
	}
	if (svc == SVC_ORDERS && match_id(path, pn, "/cart/", &id, &idl)) {
		const struct product *p = &catalogue[hash(id, idl) % NPRODUCTS];

		if (!get)
			goto not_allowed;
		sb_str(b, "{\"id\":");
		sb_json(b, id, idl);
		sb_printf(b, ",\"items\":[{\"product\":\"%s\",\"qty\":1,"
		    "\"price\":%.2f}],\"total\":%.2f}", p->id, p->price, p->price);
		return;
	}
	if (svc == SVC_PAYMENTS && match_id(path, pn, "/payments/", &id, &idl)) {
		if (!get)
			goto not_allowed;
		h = hash(id, idl);
		sb_str(b, "{\"id\":");
		sb_json(b, id, idl);
		sb_printf(b, ",\"order\":\"%u\",\"status\":\"captured\","
		    "\"amount\":%.2f,\"currency\":\"EUR\",\"method\":\"card\"}",
		    h % 1000, (double)(h % 20000) / 100.0);
		return;
	}
	r->status = 404;
	sb_printf(b, "{\"error\":\"not found\",\"service\":\"%s\"}",
	    service_names[svc]);
	return;
not_allowed:
	r->status = 405;
	if (r->allow == NULL)
		r->allow = "GET, HEAD";
	sb_str(b, "{\"error\":\"method not allowed\"}");
}

/*
 * /_demo/settings: POST ?latency_ms=N&fail_rate=P changes what every
 * listener of this process adds from now on (GET shows it), so a demo
 * service can be made slow or broken while it runs. 0 when answered.
 */
static int
settings(struct conn *c, const char *q, size_t qn, struct resp *r)
{
	struct demo *d = c->l->d;
	const char *m = c->head + c->method, *v;
	size_t ml = c->method_len, vl;
	uint64_t ms;
	char num[32], *end;
	double p;

	r->status = 200;
	if (ieq(m, ml, "POST")) {
		if (query_num(q, qn, "latency_ms", 0, MAX_SLEEP_MS, &ms) < 0)
			goto bad;
		if (query_get(q, qn, "latency_ms", &vl) != NULL)
			d->latency_ms = (unsigned)ms;
		if ((v = query_get(q, qn, "fail_rate", &vl)) != NULL) {
			if (vl == 0 || vl >= sizeof(num))
				goto bad;
			memcpy(num, v, vl);
			num[vl] = '\0';
			p = strtod(num, &end);
			if (*end != '\0' || !(p >= 0 && p <= 1))
				goto bad;
			d->fail_rate = p;
		}
	} else if (!ieq(m, ml, "GET") && !ieq(m, ml, "HEAD")) {
		r->status = 405;
		r->allow = "GET, HEAD, POST";
		sb_str(&r->body, "{\"error\":\"method not allowed\"}");
		return 0;
	}
	sb_printf(&r->body, "{\"service\":\"%s\",\"latency_ms\":%u,"
	    "\"fail_rate\":%g}", service_names[c->l->svc], d->latency_ms,
	    d->fail_rate);
	return 0;
bad:
	r->status = 400;
	sb_str(&r->body, "{\"error\":\"bad settings: latency_ms=0.."
	    "600000, fail_rate=0..1\"}");
	return 0;
}

/*
 * The request is complete: decide the answer, stage it and either send it
 * now or arm the delay timer.
 */
int
respond(struct conn *c)
{
	struct demo *d = c->l->d;
	const char *t = c->head + c->target, *path = t, *q = "";
	size_t tn = c->target_len, pn, qn = 0;
	uint64_t sleep_ms = 0, status = 0, nbytes = 0, chunked = 0, delay;
	int has_bytes = 0;
	struct resp r;
	const char *qm;

	memset(&r, 0, sizeof(r));
	/* absolute-form: route on the path after the authority */
	if (tn > 7 && (strncasecmp(t, "http://", 7) == 0 ||
	    strncasecmp(t, "https://", 8) == 0)) {
		const char *s = memchr(t + 8, '/', tn - 8);

		path = s ? s : "/";
		tn = s ? tn - (size_t)(s - t) : 1;
	}
	qm = memchr(path, '?', tn);
	pn = qm ? (size_t)(qm - path) : tn;
	if (qm) {
		q = qm + 1;
		qn = tn - pn - 1;
	}
	if (pn == 15 && memcmp(path, "/_demo/settings", 15) == 0 &&
	    settings(c, q, qn, &r) == 0) {
		/* answered at once: neither delayed nor failed on purpose */
		free(c->head);
		c->head = NULL;
		if (stage_response(c, &r) < 0) {
			conn_close(c);
			return STEP_GONE;
		}
		c->state = ST_WRITE;
		return STEP_MORE;
	}
	if (query_num(q, qn, "sleep_ms", 0, MAX_SLEEP_MS, &sleep_ms) < 0 ||
	    query_num(q, qn, "status", 200, 599, &status) < 0 ||
	    (has_bytes = query_num(q, qn, "bytes", 0, UINT64_MAX,
	    &nbytes)) < 0 ||
	    query_num(q, qn, "chunked", 0, 1, &chunked) < 0) {
		r.status = 400;
		sb_str(&r.body, "{\"error\":\"bad test query parameter\"}");
	} else if (d->fail_rate > 0 && rng_unit(d) < d->fail_rate) {
		r.status = 500;
		sb_str(&r.body, "{\"error\":\"injected failure\"}");
	} else {
		route(c, path, pn, q, qn, &r);
		if (status != 0) {
			if (r.status == 404) {
				r.body.len = 0;
				sb_printf(&r.body, "{\"status\":%d,\"service\":"
				    "\"%s\"}", (int)status,
				    service_names[c->l->svc]);
			}
			r.status = (int)status;
			if (status != 405)
				r.allow = NULL;
		}
		if (has_bytes) {
			sb_free(&r.body);
			r.gen = 1;
			r.gen_len = nbytes;
		}
		r.chunked = chunked != 0;
	}
	free(c->head);
	c->head = NULL;
	if (stage_response(c, &r) < 0) {
		conn_close(c);
		return STEP_GONE;
	}
	delay = d->latency_ms + sleep_ms;
	if (d->jitter_ms > 0)
		delay += rng_next(d) % (d->jitter_ms + 1);
	if (delay > 0 && r.status != 400) {
		c->state = ST_DELAY;
		timer_set(d, c, (int64_t)delay);
		return STEP_WAIT;
	}
	c->state = ST_WRITE;
	return STEP_MORE;
}
