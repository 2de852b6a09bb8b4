/*
 * demo: the origin services of Portico's e-commerce demo (users, orders,
 * products, payments) and an "echo" service that describes every request it
 * receives, so integration tests can see exactly what the gateway forwarded.
 *
 * One process, one epoll loop, non-blocking sockets, libc only. Several
 * services can share the process, one listening socket each. Delays
 * (--latency-ms, ?sleep_ms) are timers in the loop, never sleeps, so a slow
 * service still serves thousands of connections at once.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IN_START	4096
#define HEAD_MAX	16384		/* longer request heads get 431 */
#define IN_MAX		(2 * HEAD_MAX)
#define OUT_CAP		32768		/* response bytes staged per write */
#define MAX_HEADERS	100
#define LINE_MAX_LEN	8192		/* chunk-size and trailer lines */
#define IDLE_MS		60000		/* idle keep-alive or stalled peer */
#define LINGER_MS	2000		/* draining input after a final response */
#define MAX_LISTENERS	16
#define MAX_EVENTS	256
#define MAX_SLEEP_MS	600000
#define CHUNK_MAX	16384

/* step results: keep going, wait for an event, or the conn was freed */
#define STEP_MORE	1
#define STEP_WAIT	0
#define STEP_GONE	(-1)

/* parse_head results besides a head length > 0 */
#define PH_NEED		(-2)
#define PH_BAD		(-1)
#define PH_TOO_MANY	(-3)

enum service { SVC_USERS, SVC_ORDERS, SVC_PRODUCTS, SVC_PAYMENTS, SVC_ECHO };

static const char *const service_names[] = {
	[SVC_USERS] = "users", [SVC_ORDERS] = "orders",
	[SVC_PRODUCTS] = "products", [SVC_PAYMENTS] = "payments",
	[SVC_ECHO] = "echo",
};

enum kind { K_LISTENER, K_CONN, K_SIGNAL };

enum conn_state {
	ST_HEAD,	/* reading a request head; no response owed */
	ST_BODY,	/* head parsed and copied to c->head; discarding the body */
	ST_DELAY,	/* response staged in out/body; held until the timer fires */
	ST_WRITE,	/* writing the response; input is not read */
	ST_LINGER,	/* final response sent, write side shut; drain until EOF */
};

enum body_mode { BM_NONE, BM_LENGTH, BM_CHUNKED };

enum chunk_state {
	CS_SIZE,	/* expecting a chunk-size line */
	CS_DATA,	/* chunk_left data bytes still to discard */
	CS_DATA_END,	/* expecting the CRLF after chunk data */
	CS_TRAILER,	/* after the last chunk: trailer lines until an empty one */
};

struct sbuf {
	char *p;
	size_t len, cap;
	int err;		/* allocation failed: contents incomplete */
};

struct demo;

struct listener {
	enum kind kind;		/* K_LISTENER; first member, see dispatch */
	int fd;
	enum service svc;
	int port;
	char host[INET6_ADDRSTRLEN];
	struct demo *d;
};

struct conn {
	enum kind kind;		/* K_CONN */
	int fd;
	struct listener *l;
	enum conn_state state;
	uint32_t events;	/* what epoll currently watches */
	long timer_idx;		/* index in the timer heap, -1 when unset */
	int64_t deadline;
	int eof;		/* peer shut its write side */

	char *in;
	size_t in_off, in_len, in_cap;

	/* the request being served */
	char *head;		/* copy of the head, kept for the response */
	size_t head_len;
	size_t method, method_len, target, target_len;
	int minor, keep_alive, is_head;
	enum body_mode bmode;
	uint64_t body_left;	/* BM_LENGTH: bytes left to read */
	uint64_t body_seen;	/* decoded request body bytes */
	enum chunk_state cstate;
	uint64_t chunk_left;
	int trailers;

	/* the response being written */
	char *out;
	size_t out_off, out_len;
	struct sbuf body;	/* body bytes, or p == NULL: gen_len 'x' bytes */
	uint64_t resp_left;	/* body bytes still to stage */
	size_t resp_off;
	int resp_chunked, resp_final;	/* chunked; last chunk staged */
	size_t chunk_size;
};

struct demo {
	int ep;
	struct listener ls[MAX_LISTENERS];
	int nls;
	int listeners_off;	/* paused after EMFILE until resume_at */
	int64_t resume_at;
	int64_t now;
	struct conn **heap;
	size_t nheap, heap_cap;
	unsigned latency_ms, jitter_ms;
	double fail_rate;
	uint64_t rng;
	uint64_t orders_made;
	int stop;
};

struct hdr {
	size_t name, name_len, value, value_len;	/* offsets into the head */
};

struct req {
	size_t method, method_len, target, target_len;
	int minor;
	struct hdr *hdr;
	size_t nhdr, max_hdr;
};

static void conn_close(struct conn *c);

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

/* ---- timers: a binary min-heap of connections keyed by deadline ---- */

static void
heap_place(struct demo *d, size_t i, struct conn *c)
{
	d->heap[i] = c;
	c->timer_idx = (long)i;
}

static void
heap_up(struct demo *d, size_t i)
{
	struct conn *c = d->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (d->heap[parent]->deadline <= c->deadline)
			break;
		heap_place(d, i, d->heap[parent]);
		i = parent;
	}
	heap_place(d, i, c);
}

static void
heap_down(struct demo *d, size_t i)
{
	struct conn *c = d->heap[i];

	for (;;) {
		size_t l = 2 * i + 1, m = i;

		if (l >= d->nheap)
			break;
		m = l;
		if (l + 1 < d->nheap &&
		    d->heap[l + 1]->deadline < d->heap[l]->deadline)
			m = l + 1;
		if (d->heap[m]->deadline >= c->deadline)
			break;
		heap_place(d, i, d->heap[m]);
		i = m;
	}
	heap_place(d, i, c);
}

static void
timer_clear(struct demo *d, struct conn *c)
{
	size_t i;
	struct conn *last;

	if (c->timer_idx < 0)
		return;
	i = (size_t)c->timer_idx;
	c->timer_idx = -1;
	last = d->heap[--d->nheap];
	if (i == d->nheap)
		return;
	heap_place(d, i, last);
	heap_up(d, i);
	heap_down(d, (size_t)last->timer_idx);
}

static int
timer_set(struct demo *d, struct conn *c, int64_t delay)
{
	c->deadline = d->now + delay;
	if (c->timer_idx >= 0) {
		heap_up(d, (size_t)c->timer_idx);
		heap_down(d, (size_t)c->timer_idx);
		return 0;
	}
	if (d->nheap == d->heap_cap) {
		size_t cap = d->heap_cap ? d->heap_cap * 2 : 256;
		struct conn **h = realloc(d->heap, cap * sizeof(*h));

		if (h == NULL)
			return -1;
		d->heap = h;
		d->heap_cap = cap;
	}
	heap_place(d, d->nheap++, c);
	heap_up(d, d->nheap - 1);
	return 0;
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

static void
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

static int
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
static long
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

static int
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
static int
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

static void
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

static int
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
static void
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
static int
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
static int
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
		sb_str(b, "{\"id\":");
		sb_json(b, id, idl);
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
 * The request is complete: decide the answer, stage it and either send it
 * now or arm the delay timer.
 */
static int
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

/* ---- reading ---- */

static int
step_head(struct conn *c)
{
	struct hdr hv[MAX_HEADERS];
	struct req r;
	size_t avail = c->in_len - c->in_off, i;
	const char *base = c->in + c->in_off;
	uint64_t cl = 0, v;
	int has_cl = 0, has_te = 0, conn_close_tok = 0, conn_keep = 0;
	int expect = 0;
	long n;

	memset(&r, 0, sizeof(r));
	r.hdr = hv;
	r.max_hdr = MAX_HEADERS;
	n = parse_head(base, avail < HEAD_MAX ? avail : HEAD_MAX, &r);
	if (n == PH_NEED) {
		if (avail >= HEAD_MAX)
			return fail_request(c, 431, "request head too large");
		if (c->eof) {
			conn_close(c);
			return STEP_GONE;
		}
		return STEP_WAIT;
	}
	if (n == PH_TOO_MANY)
		return fail_request(c, 431, "too many headers");
	if (n < 0)
		return fail_request(c, 400, "malformed request");
	for (i = 0; i < r.nhdr; i++) {
		const char *nm = base + hv[i].name, *val = base + hv[i].value;
		size_t nl = hv[i].name_len, vl = hv[i].value_len;

		if (ieq(nm, nl, "content-length")) {
			if (parse_u64(val, vl, &v) < 0 || (has_cl && v != cl))
				return fail_request(c, 400, "bad content-length");
			has_cl = 1;
			cl = v;
		} else if (ieq(nm, nl, "transfer-encoding")) {
			if (has_te || !ieq(val, vl, "chunked"))
				return fail_request(c, 400,
				    "bad transfer-encoding");
			has_te = 1;
		} else if (ieq(nm, nl, "connection")) {
			conn_close_tok |= has_token(val, vl, "close");
			conn_keep |= has_token(val, vl, "keep-alive");
		} else if (ieq(nm, nl, "expect")) {
			expect = ieq(val, vl, "100-continue");
		}
	}
	if (has_cl && has_te)
		return fail_request(c, 400, "content-length with chunked");
	if (has_te && r.minor == 0)
		return fail_request(c, 400, "chunked on HTTP/1.0");
	c->head = malloc((size_t)n);
	if (c->head == NULL) {
		conn_close(c);
		return STEP_GONE;
	}
	memcpy(c->head, base, (size_t)n);
	c->head_len = (size_t)n;
	c->in_off += (size_t)n;
	c->method = r.method;
	c->method_len = r.method_len;
	c->target = r.target;
	c->target_len = r.target_len;
	c->minor = r.minor;
	c->keep_alive = r.minor == 1 ? !conn_close_tok :
	    (conn_keep && !conn_close_tok);
	c->is_head = ieq(base + r.method, r.method_len, "HEAD");
	c->bmode = has_te ? BM_CHUNKED : (has_cl && cl > 0 ? BM_LENGTH : BM_NONE);
	c->body_left = cl;
	c->body_seen = 0;
	c->cstate = CS_SIZE;
	c->trailers = 0;
	c->state = ST_BODY;
	if (expect && c->bmode != BM_NONE && r.minor == 1) {
		if (out_reserve(c) < 0) {
			conn_close(c);
			return STEP_GONE;
		}
		memcpy(c->out + c->out_len, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		c->out_len += 25;
		if (flush_out(c) == STEP_GONE)
			return STEP_GONE;
	}
	return STEP_MORE;
}

/* One line of the chunked framing from the input, or NULL for "need more"
 * (*bad set when it can never become a valid line). */
static const char *
take_line(struct conn *c, size_t *n, int *bad)
{
	const char *p = c->in + c->in_off;
	size_t avail = c->in_len - c->in_off;
	const char *nl = memchr(p, '\n', avail);

	*bad = 0;
	if (nl == NULL) {
		*bad = avail > LINE_MAX_LEN;
		return NULL;
	}
	if (nl == p || nl[-1] != '\r') {
		*bad = 1;
		return NULL;
	}
	*n = (size_t)(nl - p) - 1;
	c->in_off += *n + 2;
	return p;
}

static int
chunk_size_line(const char *p, size_t n, uint64_t *size)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n && isxdigit((unsigned char)p[i]); i++) {
		if (i >= 15)
			return -1;
		v = v * 16 + (uint64_t)(isdigit((unsigned char)p[i]) ?
		    p[i] - '0' : (tolower((unsigned char)p[i]) - 'a' + 10));
	}
	if (i == 0)
		return -1;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i < n && p[i] != ';')
		return -1;
	for (; i < n; i++)
		if (p[i] != '\t' && (p[i] < 0x20 || p[i] == 0x7f))
			return -1;
	*size = v;
	return 0;
}

/* Discard the request body as it arrives; respond once it is all read. */
static int
step_body(struct conn *c)
{
	size_t avail, n;
	const char *line;
	int bad, i;

	if (c->bmode == BM_LENGTH) {
		avail = c->in_len - c->in_off;
		n = avail < c->body_left ? avail : (size_t)c->body_left;
		c->in_off += n;
		c->body_left -= n;
		c->body_seen += n;
		if (c->body_left > 0)
			goto need_more;
	}
	/* each pass consumes input or leaves: bounded by the buffer size */
	for (i = 0; c->bmode == BM_CHUNKED && i < IN_MAX; i++) {
		switch (c->cstate) {
		case CS_SIZE:
			line = take_line(c, &n, &bad);
			if (line == NULL)
				goto line_missing;
			if (chunk_size_line(line, n, &c->chunk_left) < 0)
				return fail_request(c, 400, "bad chunk size");
			c->cstate = c->chunk_left ? CS_DATA : CS_TRAILER;
			break;
		case CS_DATA:
			avail = c->in_len - c->in_off;
			n = avail < c->chunk_left ? avail : (size_t)c->chunk_left;
			c->in_off += n;
			c->chunk_left -= n;
			c->body_seen += n;
			if (c->chunk_left > 0)
				goto need_more;
			c->cstate = CS_DATA_END;
			break;
		case CS_DATA_END:
			if (c->in_len - c->in_off < 2)
				goto need_more;
			if (memcmp(c->in + c->in_off, "\r\n", 2) != 0)
				return fail_request(c, 400, "bad chunk end");
			c->in_off += 2;
			c->cstate = CS_SIZE;
			break;
		case CS_TRAILER:
			line = take_line(c, &n, &bad);
			if (line == NULL)
				goto line_missing;
			if (n == 0) {
				c->bmode = BM_NONE;
				break;
			}
			if (++c->trailers > MAX_HEADERS)
				return fail_request(c, 431, "too many trailers");
			break;
		}
	}
	if (c->bmode == BM_CHUNKED)
		goto need_more;
	return respond(c);
line_missing:
	if (bad)
		return fail_request(c, 400, "bad chunked framing");
need_more:
	if (c->eof) {
		conn_close(c);
		return STEP_GONE;
	}
	return STEP_WAIT;
}

static int
step_write(struct conn *c)
{
	struct demo *d = c->l->d;
	int i, rc;

	timer_set(d, c, IDLE_MS);
	/* bounded: at most 64 refills per wakeup, then wait for EPOLLOUT */
	for (i = 0; i < 64; i++) {
		stage_body(c);
		if (c->out_off == c->out_len)
			break;
		rc = flush_out(c);
		if (rc <= 0)
			return rc == STEP_GONE ? STEP_GONE : STEP_WAIT;
	}
	if (c->out_off < c->out_len || c->resp_left > 0 ||
	    (c->resp_chunked && !c->resp_final))
		return STEP_WAIT;
	/* response complete */
	sb_free(&c->body);
	free(c->out);
	c->out = NULL;
	c->out_off = c->out_len = 0;
	if (!c->keep_alive) {
		shutdown(c->fd, SHUT_WR);
		c->state = ST_LINGER;
		timer_set(d, c, LINGER_MS);
		return STEP_WAIT;
	}
	c->state = ST_HEAD;
	return STEP_MORE;
}

/* Drive the connection until it waits for an event or is gone. */
static void
conn_run(struct conn *c)
{
	struct demo *d = c->l->d;
	int rc = STEP_WAIT, i;

	/* each request consumes input, so this is bounded by IN_MAX */
	for (i = 0; i < IN_MAX; i++) {
		switch (c->state) {
		case ST_HEAD:
			rc = step_head(c);
			break;
		case ST_BODY:
			rc = step_body(c);
			break;
		case ST_WRITE:
			rc = step_write(c);
			break;
		case ST_DELAY:
		case ST_LINGER:
			rc = STEP_WAIT;
			break;
		}
		if (rc != STEP_MORE)
			break;
	}
	if (rc == STEP_GONE)
		return;
	if (c->state == ST_HEAD || c->state == ST_BODY)
		timer_set(d, c, IDLE_MS);
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	update_events(c);
}

static int
conn_read(struct conn *c)
{
	ssize_t n;

	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_len == c->in_cap && c->in_cap < IN_MAX) {
		char *p = realloc(c->in, c->in_cap * 2);

		if (p == NULL) {
			conn_close(c);
			return STEP_GONE;
		}
		c->in = p;
		c->in_cap *= 2;
	}
	if (c->in_len == c->in_cap)
		return 0;	/* step_head refuses before this can persist */
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	if (n > 0)
		c->in_len += (size_t)n;
	else if (n == 0)
		c->eof = 1;
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		conn_close(c);
		return STEP_GONE;
	}
	return 0;
}

static void
conn_linger_read(struct conn *c)
{
	char scratch[4096];
	int i;

	for (i = 0; i < 16; i++) {
		ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR)) {
			conn_close(c);
			return;
		}
		if (n < 0)
			return;
	}
}

static void
conn_event(struct conn *c, uint32_t ev)
{
	if ((ev & EPOLLERR) || ((ev & EPOLLHUP) && !(ev & EPOLLIN))) {
		conn_close(c);
		return;
	}
	if (c->state == ST_LINGER) {
		if (ev & (EPOLLIN | EPOLLHUP))
			conn_linger_read(c);
		return;
	}
	if ((ev & EPOLLOUT) && c->state == ST_BODY &&
	    flush_out(c) == STEP_GONE)
		return;
	if ((ev & EPOLLIN) && (c->state == ST_HEAD || c->state == ST_BODY) &&
	    conn_read(c) == STEP_GONE)
		return;
	conn_run(c);
}

static void
conn_close(struct conn *c)
{
	struct demo *d = c->l->d;

	timer_clear(d, c);
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c->head);
	sb_free(&c->body);
	free(c);
}

static void
conn_timeout(struct conn *c)
{
	if (c->state == ST_DELAY) {
		c->state = ST_WRITE;
		conn_run(c);
		return;
	}
	/* idle, stalled, or done lingering */
	conn_close(c);
}

/* ---- listeners ---- */

static void
listeners_pause(struct demo *d, int off)
{
	struct epoll_event ev;
	int i;

	d->listeners_off = off;
	for (i = 0; i < d->nls; i++) {
		memset(&ev, 0, sizeof(ev));
		ev.events = off ? 0 : EPOLLIN;
		ev.data.ptr = &d->ls[i];
		epoll_ctl(d->ep, EPOLL_CTL_MOD, d->ls[i].fd, &ev);
	}
}

static void
accept_some(struct listener *l)
{
	struct demo *d = l->d;
	struct epoll_event ev;
	struct conn *c;
	int i, fd, one = 1;

	for (i = 0; i < 128; i++) {
		fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* out of descriptors: back off instead of
				 * spinning on a readable listener */
				fprintf(stderr, "demo: accept: %s\n",
				    strerror(errno));
				listeners_pause(d, 1);
				d->resume_at = d->now + 100;
			}
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (c == NULL || (c->in = malloc(IN_START)) == NULL) {
			free(c);
			close(fd);
			continue;
		}
		c->kind = K_CONN;
		c->fd = fd;
		c->l = l;
		c->in_cap = IN_START;
		c->timer_idx = -1;
		c->state = ST_HEAD;
		c->events = EPOLLIN;
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) < 0 ||
		    timer_set(d, c, IDLE_MS) < 0) {
			conn_close(c);
			continue;
		}
	}
}

static int
parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *colon, *h = s;
	size_t hl;
	char *end;
	long port;
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	colon = strrchr(s, ':');
	if (colon == NULL)
		return -1;
	hl = (size_t)(colon - s);
	if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
		h = s + 1;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || *end != '\0' || end == colon + 1 || port < 0 || port > 65535)
		return -1;
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	return -1;
}

static int
listener_open(struct demo *d, enum service svc, const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct listener *l;
	struct epoll_event ev;
	int fd = -1, one = 1;

	if (d->nls == MAX_LISTENERS) {
		fprintf(stderr, "demo: at most %d listeners\n", MAX_LISTENERS);
		return -1;
	}
	if (parse_addr(addr, &ss, &len) < 0) {
		fprintf(stderr, "demo: bad address '%s' (want HOST:PORT)\n", addr);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0)
		goto fail;
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		goto fail;
	l = &d->ls[d->nls];
	l->kind = K_LISTENER;
	l->fd = fd;
	l->svc = svc;
	l->d = d;
	l->port = ntohs(ss.ss_family == AF_INET ?
	    ((struct sockaddr_in *)&ss)->sin_port :
	    ((struct sockaddr_in6 *)&ss)->sin6_port);
	inet_ntop(ss.ss_family, ss.ss_family == AF_INET ?
	    (void *)&((struct sockaddr_in *)&ss)->sin_addr :
	    (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr,
	    l->host, sizeof(l->host));
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = l;
	if (epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		goto fail;
	d->nls++;
	return 0;
fail:
	fprintf(stderr, "demo: %s on %s: %s\n", service_names[svc], addr,
	    strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* ---- main ---- */

static void
usage(FILE *f)
{
	fprintf(f,
"usage: demo [options] --service NAME --listen HOST:PORT [--service NAME --listen HOST:PORT ...]\n"
"       demo [options] NAME=HOST:PORT [NAME=HOST:PORT ...]\n"
"\n"
"Demo origin services for Portico, one epoll loop for all listeners.\n"
"NAME is users, orders, products, payments or echo. Port 0 picks a free\n"
"port; once all sockets listen, one line per listener is printed:\n"
"  demo: NAME listening on HOST:PORT\n"
"\n"
"options (for every listener of the process):\n"
"  --latency-ms N   delay every response by N ms\n"
"  --jitter-ms N    add a random 0..N ms to that delay\n"
"  --fail-rate P    answer a fraction P (0..1) with 500 {\"error\":\"injected failure\"}\n"
"  --seed N         seed the random numbers (default: time and pid)\n"
"\n"
"endpoints: GET /health on every service; users: /users/{id};\n"
"products: /recommendations?user=ID, /promotions, /products/{id},\n"
"/v2/products/{id}; orders: /orders/{id}, POST /orders, /cart/{id};\n"
"payments: /payments/{id}; echo: any method and path, answered with a JSON\n"
"description of the request (method, path, headers, body_length, port).\n"
"test query parameters on every service: sleep_ms=N, status=N, bytes=N,\n"
"chunked=1.\n");
}

static int
service_lookup(const char *name, size_t n)
{
	int i;

	for (i = 0; i <= SVC_ECHO; i++)
		if (strlen(service_names[i]) == n &&
		    memcmp(service_names[i], name, n) == 0)
			return i;
	fprintf(stderr, "demo: unknown service '%.*s'\n", (int)n, name);
	return -1;
}

static int
parse_num(const char *opt, const char *s, double max, double *out)
{
	char *end;
	double v;

	if (s == NULL) {
		fprintf(stderr, "demo: %s needs a value\n", opt);
		return -1;
	}
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end != '\0' || end == s || !(v >= 0) || v > max) {
		fprintf(stderr, "demo: bad value '%s' for %s\n", s, opt);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_args(struct demo *d, int argc, char **argv)
{
	const char *svc = NULL, *addr = NULL, *eq;
	double v;
	int i, s, seeded = 0;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "--service") == 0) {
			if (val == NULL || svc != NULL)
				goto bad;
			svc = val;
			i++;
		} else if (strcmp(a, "--listen") == 0) {
			if (val == NULL || addr != NULL)
				goto bad;
			addr = val;
			i++;
		} else if (strcmp(a, "--latency-ms") == 0) {
			if (parse_num(a, val, 3600000, &v) < 0)
				return -1;
			d->latency_ms = (unsigned)v;
			i++;
		} else if (strcmp(a, "--jitter-ms") == 0) {
			if (parse_num(a, val, 3600000, &v) < 0)
				return -1;
			d->jitter_ms = (unsigned)v;
			i++;
		} else if (strcmp(a, "--fail-rate") == 0) {
			if (parse_num(a, val, 1, &v) < 0)
				return -1;
			d->fail_rate = v;
			i++;
		} else if (strcmp(a, "--seed") == 0) {
			if (parse_num(a, val, 1e18, &v) < 0)
				return -1;
			d->rng = (uint64_t)v;
			seeded = 1;
			i++;
		} else if (a[0] != '-' && (eq = strchr(a, '=')) != NULL) {
			if ((s = service_lookup(a, (size_t)(eq - a))) < 0 ||
			    listener_open(d, (enum service)s, eq + 1) < 0)
				return -1;
		} else
			goto bad;
		if (svc != NULL && addr != NULL) {
			if ((s = service_lookup(svc, strlen(svc))) < 0 ||
			    listener_open(d, (enum service)s, addr) < 0)
				return -1;
			svc = addr = NULL;
		}
	}
	if (svc != NULL || addr != NULL || d->nls == 0)
		goto bad;
	if (!seeded)
		d->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	/* xorshift must not start at zero; mix so that small seeds differ */
	d->rng = (d->rng + 0x9e3779b97f4a7c15ULL) * 0xbf58476d1ce4e5b9ULL;
	if (d->rng == 0)
		d->rng = 1;
	return 0;
bad:
	usage(stderr);
	return -1;
}

static void
run_timers(struct demo *d)
{
	int i;

	/* bounded per pass; the rest fire on the next (zero-timeout) pass */
	for (i = 0; i < 4096 && d->nheap > 0; i++) {
		struct conn *c = d->heap[0];

		if (c->deadline > d->now)
			break;
		timer_clear(d, c);
		conn_timeout(c);
	}
	if (d->listeners_off && d->now >= d->resume_at)
		listeners_pause(d, 0);
}

static int
next_timeout(struct demo *d)
{
	int64_t t = -1;

	if (d->nheap > 0)
		t = d->heap[0]->deadline - d->now;
	if (d->listeners_off && (t < 0 || d->resume_at - d->now < t))
		t = d->resume_at - d->now;
	if (t < -1)
		t = 0;
	if (t > 60000)
		t = 60000;
	return (int)t;
}

int
main(int argc, char **argv)
{
	static struct demo demo;
	struct demo *d = &demo;
	struct epoll_event evs[MAX_EVENTS], ev;
	struct signalfd_siginfo si;
	enum kind sigkind = K_SIGNAL;
	sigset_t mask;
	int sfd, n, i;

	signal(SIGPIPE, SIG_IGN);
	/* a shell starts background jobs with SIGINT ignored, and an ignored
	 * signal never reaches the signalfd: take the default back */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
	    (sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    (d->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		perror("demo: setup");
		return 1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &sigkind;
	epoll_ctl(d->ep, EPOLL_CTL_ADD, sfd, &ev);
	d->now = now_ms();
	if (parse_args(d, argc, argv) < 0)
		return 2;
	for (i = 0; i < d->nls; i++)
		printf("demo: %s listening on %s%s%s:%d\n",
		    service_names[d->ls[i].svc],
		    strchr(d->ls[i].host, ':') ? "[" : "", d->ls[i].host,
		    strchr(d->ls[i].host, ':') ? "]" : "", d->ls[i].port);
	fflush(stdout);
	while (!d->stop) {
		n = epoll_wait(d->ep, evs, MAX_EVENTS, next_timeout(d));
		if (n < 0 && errno != EINTR) {
			perror("demo: epoll_wait");
			return 1;
		}
		d->now = now_ms();
		for (i = 0; i < n; i++) {
			enum kind *k = evs[i].data.ptr;

			if (*k == K_SIGNAL) {
				if (read(sfd, &si, sizeof(si)) > 0)
					d->stop = 1;
			} else if (*k == K_LISTENER)
				accept_some((struct listener *)k);
			else
				conn_event((struct conn *)k, evs[i].events);
		}
		run_timers(d);
	}
	return 0;
}
