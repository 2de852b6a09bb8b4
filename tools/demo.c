/*
 * demo: the origin services of Portico's e-commerce demo (users, orders,
 * products, payments) and an "echo" service that describes every request it
 * receives, so integration tests can see exactly what the gateway forwarded.
 *
 * One process, one epoll loop, non-blocking sockets, libc only. Several
 * services can share the process, one listening socket each. Delays
 * (--latency-ms, ?sleep_ms) are timers in the loop, never sleeps, so a slow
 * service still serves thousands of connections at once.
 *
 * This file: flags, the event loop, timers, reading requests and
 * listeners; demo_http.c parses requests, stages responses and holds the
 * services.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"

#define IN_START	4096
#define HEAD_MAX	16384		/* longer request heads get 431 */
#define IN_MAX		(2 * HEAD_MAX)
#define LINE_MAX_LEN	8192		/* chunk-size and trailer lines */
#define IDLE_MS		60000		/* idle keep-alive or stalled peer */
#define LINGER_MS	2000		/* draining input after a final response */
#define MAX_EVENTS	256

const char *const service_names[] = {
	[SVC_USERS] = "users", [SVC_ORDERS] = "orders",
	[SVC_PRODUCTS] = "products", [SVC_PAYMENTS] = "payments",
	[SVC_ECHO] = "echo",
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

int
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

void
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
"chunked=1. POST /_demo/settings?latency_ms=N&fail_rate=P changes the\n"
"latency and failure rate of the running process (GET shows them).\n");
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
