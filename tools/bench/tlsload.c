/*
 * tlsload: an HTTPS load generator for tools/bench/tls.sh (loopback only).
 *
 *   tlsload [-k | -n] [-c CONNS] [-d SECONDS | -r REQUESTS] [-t THREADS]
 *           [-P PATH] [-s SNI] [-V 1.2|1.3] PORT
 *
 * -k (default): CONNS keep-alive connections, each sending GET PATH again
 *    as soon as the previous response is in (one handshake per connection,
 *    at the start).
 * -n: a new connection per request: connect, a full handshake (a fresh
 *    SSL object with no session to offer, so the server cannot resume),
 *    GET PATH with "Connection: close", the response, then read on to the
 *    server's close and close. CONNS such connections are in flight.
 *
 * A request counts once its whole response (Content-Length) is in; non-2xx
 * statuses are counted apart. -r stops after REQUESTS responses (each
 * thread its share) instead of after a time, for counters such as
 * callgrind's that want an exact amount of work. The output follows wrk's (Requests/sec, the
 * latency percentiles, "N requests in", "Socket errors"), so the bench's
 * parser reads either, plus the client's own CPU per request (user + sys
 * of this process), which says how much of the machine the generator took,
 * and the handshakes it made and how many of them were resumed.
 *
 * Why not wrk: wrk keeps the SSL object across reconnects, so a server
 * that issues tickets sees resumed handshakes, not full ones.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define RBUF		16384
#define NBUCKETS	4096	/* latency histogram: 1 us .. ~60 s, log-spaced */
#define STALL_NS	(10 * 1000000000LL)

enum cstate {
	C_CONNECT,	/* connect() in progress: waits for writable */
	C_HANDSHAKE,	/* SSL_do_handshake wants the socket (rd or wr) */
	C_WRITE,	/* the request is (partly) unsent */
	C_READ,		/* the response is incomplete */
	C_DRAIN,	/* -n: response in; reading on to the server's close */
};

struct lconn {
	int fd;
	enum cstate st;
	SSL *ssl;
	uint32_t want;		/* epoll events registered */
	size_t wdone;		/* request bytes sent */
	char *hdr;		/* response head so far (until \r\n\r\n) */
	size_t hlen;
	long long body_left;	/* -1: head not complete */
	int status;
	int64_t t0;		/* request (or, -n, connect) start */
	int64_t last;		/* last progress, for the stall check */
};

struct counts {
	uint64_t done, non2xx, bytes, handshakes, resumed;
	uint64_t e_connect, e_read, e_write, e_timeout;
	uint64_t hist[NBUCKETS];
};

struct thr {
	pthread_t tid;
	int nconns;
	uint64_t quota;		/* -r: responses this thread still wants */
	SSL_CTX *ctx;
	struct counts n;
};

static struct {
	bool newconn;
	int conns, threads, port;
	double duration;
	uint64_t requests;
	const char *path, *sni;
	int version;
	char req[512];
	size_t reqlen;
	struct sockaddr_in sa;
	int64_t t_end;
} opt = { .conns = 64, .threads = 1, .duration = 5, .path = "/small",
    .sni = "localhost" };

static int64_t
now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Bucket b covers [2^(b/64) - 1, 2^((b+1)/64) - 1) microseconds: 1.1%
 * steps, fine enough for a median and a p99. */
static unsigned
bucket(double us)
{
	double b = 0;
	unsigned i;

	if (us < 1)
		return 0;
	/* log2 by repeated halving keeps libm out of the link */
	us += 1;
	while (us >= 2) {
		us /= 2;
		b += 64;
	}
	for (i = 0; i < 64 && us >= 1.0109; i++)
		us /= 1.0109;	/* 2^(1/64) */
	b += i;
	return b >= NBUCKETS ? NBUCKETS - 1 : (unsigned)b;
}

static double
bucket_us(unsigned b)
{
	double v = 1;
	unsigned i;

	for (i = 0; i < b; i++)
		v *= 1.0109;
	return v - 1;
}

static void
want(int ep, struct lconn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (c->want == ev)
		return;
	epoll_ctl(ep, c->want == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &e);
	c->want = ev;
}

static void
drop(struct lconn *c)
{
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	c->ssl = NULL;
	if (c->fd >= 0)
		close(c->fd);	/* also leaves the epoll set */
	c->fd = -1;
	c->want = 0;
}

static void
req_start(struct lconn *c)
{
	c->st = C_WRITE;
	c->wdone = 0;
	c->hlen = 0;
	c->body_left = -1;
	c->status = 0;
	if (!opt.newconn)
		c->t0 = now_ns();
}

static int
open_conn(int ep, struct thr *t, struct lconn *c)
{
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->t0 = c->last = now_ns();
	if (connect(c->fd, (struct sockaddr *)&opt.sa, sizeof(opt.sa)) < 0 &&
	    errno != EINPROGRESS) {
		drop(c);
		return -1;
	}
	if ((c->ssl = SSL_new(t->ctx)) == NULL) {
		drop(c);
		return -1;
	}
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_connect_state(c->ssl);
	if (opt.sni[0] != '\0')
		SSL_set_tlsext_host_name(c->ssl, opt.sni);
	c->st = C_CONNECT;
	c->want = 0;
	want(ep, c, EPOLLOUT);
	return 0;
}

/* An SSL call that did not complete: wait for what it wants, or fail. */
static int
blocked(int ep, struct lconn *c, int rc)
{
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		want(ep, c, EPOLLIN);
		return 0;
	case SSL_ERROR_WANT_WRITE:
		want(ep, c, EPOLLOUT);
		return 0;
	default:
		ERR_clear_error();
		return -1;
	}
}

/* Parse the response head in c->hdr: status and Content-Length. */
static int
parse_head(struct lconn *c, size_t end)
{
	const char *p = c->hdr, *e = c->hdr + end, *l;
	long long cl = -1;

	if (end < 12 || memcmp(p, "HTTP/1.", 7) != 0)
		return -1;
	c->status = atoi(p + 9);
	for (l = memchr(p, '\n', (size_t)(e - p)); l != NULL && l + 1 < e;
	    l = memchr(l + 1, '\n', (size_t)(e - l - 1))) {
		if ((size_t)(e - l) > 16 &&
		    strncasecmp(l + 1, "content-length:", 15) == 0)
			cl = atoll(l + 16);
	}
	if (cl < 0)
		return -1;	/* the bench's origin always sends a length */
	c->body_left = cl;
	return 0;
}

static void
count_done(struct thr *t, struct lconn *c)
{
	int64_t now = now_ns();

	if (now > opt.t_end || (opt.requests > 0 && t->quota == 0))
		return;		/* after the clock stopped: not counted */
	if (opt.requests > 0)
		t->quota--;
	t->n.done++;
	if (c->status < 200 || c->status > 399)
		t->n.non2xx++;
	t->n.hist[bucket((double)(now - c->t0) / 1000.0)]++;
}

/* Consume N response bytes in BUF; 1 when the response is complete. */
static int
consume(struct lconn *c, const char *buf, size_t n)
{
	size_t k, i, start;

	if (c->body_left < 0) {
		k = n < RBUF - c->hlen ? n : RBUF - c->hlen;
		memcpy(c->hdr + c->hlen, buf, k);
		start = c->hlen >= 3 ? c->hlen - 3 : 0;
		c->hlen += k;
		for (i = start; i + 3 < c->hlen; i++)
			if (memcmp(c->hdr + i, "\r\n\r\n", 4) == 0)
				break;
		if (i + 3 >= c->hlen)
			return c->hlen == RBUF ? -1 : 0;
		if (parse_head(c, i + 4) < 0)
			return -1;
		/* what came after the head is body */
		k = c->hlen - (i + 4);
		c->body_left -= (long long)k;
		return c->body_left <= 0 ? 1 : 0;
	}
	c->body_left -= (long long)n;
	return c->body_left <= 0 ? 1 : 0;
}

/* Drive connection C as far as it goes; -1 with the error counted. */
static int
step(int ep, struct thr *t, struct lconn *c, char *rbuf)
{
	size_t n;
	int rc, err;
	socklen_t el = sizeof(err);

	for (;;) {
		switch (c->st) {
		case C_CONNECT:
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err,
			    &el) < 0 || err != 0) {
				t->n.e_connect++;
				return -1;
			}
			c->st = C_HANDSHAKE;
			break;
		case C_HANDSHAKE:
			ERR_clear_error();
			rc = SSL_do_handshake(c->ssl);
			if (rc != 1) {
				if (blocked(ep, c, rc) == 0)
					return 0;
				t->n.e_connect++;
				return -1;
			}
			t->n.handshakes++;
			if (SSL_session_reused(c->ssl))
				t->n.resumed++;
			req_start(c);
			break;
		case C_WRITE:
			ERR_clear_error();
			rc = SSL_write_ex(c->ssl, opt.req + c->wdone,
			    opt.reqlen - c->wdone, &n);
			if (rc != 1) {
				if (blocked(ep, c, rc) == 0)
					return 0;
				t->n.e_write++;
				return -1;
			}
			c->wdone += n;
			if (c->wdone == opt.reqlen)
				c->st = C_READ;
			break;
		case C_READ:
		case C_DRAIN:
			ERR_clear_error();
			rc = SSL_read_ex(c->ssl, rbuf, RBUF, &n);
			if (rc != 1) {
				err = SSL_get_error(c->ssl, rc);
				if (c->st == C_DRAIN &&
				    (err == SSL_ERROR_ZERO_RETURN ||
				    err == SSL_ERROR_SYSCALL ||
				    err == SSL_ERROR_SSL)) {
					/* the server's close: done */
					ERR_clear_error();
					return 1;
				}
				if (blocked(ep, c, rc) == 0)
					return 0;
				t->n.e_read++;
				return -1;
			}
			c->last = now_ns();
			t->n.bytes += n;
			if (c->st == C_DRAIN)
				break;	/* bytes after the response: ignored */
			rc = consume(c, rbuf, n);
			if (rc < 0) {
				t->n.e_read++;
				return -1;
			}
			if (rc == 0)
				break;
			count_done(t, c);
			if (opt.newconn)
				c->st = C_DRAIN;
			else
				req_start(c);
			break;
		}
	}
}

static void *
run(void *arg)
{
	struct thr *t = arg;
	struct lconn *cs = calloc((size_t)t->nconns, sizeof(*cs));
	struct epoll_event ev[256];
	char *rbuf = malloc(RBUF);
	int ep = epoll_create1(0), i, k, rc;
	int64_t now, last_sweep;

	if (cs == NULL || rbuf == NULL || ep < 0) {
		fprintf(stderr, "tlsload: out of memory\n");
		exit(1);
	}
	for (i = 0; i < t->nconns; i++) {
		cs[i].fd = -1;
		if ((cs[i].hdr = malloc(RBUF)) == NULL) {
			fprintf(stderr, "tlsload: out of memory\n");
			exit(1);
		}
		if (open_conn(ep, t, &cs[i]) < 0)
			t->n.e_connect++;
	}
	last_sweep = now_ns();
	while ((now = now_ns()) < opt.t_end &&
	    (opt.requests == 0 || t->quota > 0)) {
		k = epoll_wait(ep, ev, 256, 50);
		for (i = 0; i < k; i++) {
			struct lconn *c = ev[i].data.ptr;

			if (c->fd < 0)
				continue;
			c->last = now;
			rc = step(ep, t, c, rbuf);
			if (rc == 0)
				continue;
			/* done (-n) or failed: a new connection in its place */
			drop(c);
			if (open_conn(ep, t, c) < 0)
				t->n.e_connect++;
		}
		if (now - last_sweep < 1000000000LL)
			continue;
		last_sweep = now;
		for (i = 0; i < t->nconns; i++) {
			if (cs[i].fd >= 0 && now - cs[i].last <= STALL_NS)
				continue;
			if (cs[i].fd >= 0)
				t->n.e_timeout++;
			drop(&cs[i]);
			if (open_conn(ep, t, &cs[i]) < 0)
				t->n.e_connect++;
		}
	}
	for (i = 0; i < t->nconns; i++) {
		drop(&cs[i]);
		free(cs[i].hdr);
	}
	close(ep);
	free(rbuf);
	free(cs);
	return NULL;
}

static SSL_CTX *
client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	/* Certificates are not checked (the bench's is self-signed); the
	 * server's signature over the handshake still is, as TLS asks. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* No session is kept or offered: every handshake is a full one. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (opt.version != 0 &&
	    (SSL_CTX_set_min_proto_version(ctx, opt.version) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, opt.version) != 1)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static void
fmt_us(char *out, size_t len, double us)
{
	if (us >= 1000000)
		snprintf(out, len, "%.2fs", us / 1e6);
	else if (us >= 1000)
		snprintf(out, len, "%.2fms", us / 1000);
	else
		snprintf(out, len, "%.2fus", us);
}

static void
usage(void)
{
	fprintf(stderr, "usage: tlsload [-k | -n] [-c CONNS] [-d SECONDS | "
	    "-r REQUESTS] [-t THREADS] [-P PATH] [-s SNI] [-V 1.2|1.3] "
	    "PORT\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const double pct[] = { 50, 75, 90, 99 };
	struct thr *ts;
	struct counts sum;
	struct rusage ru;
	struct rlimit rl;
	int64_t t_start;
	uint64_t seen;
	double secs, cpu_us;
	char lat[32];
	unsigned b;
	int i, ch, p;

	while ((ch = getopt(argc, argv, "knc:d:r:t:P:s:V:")) != -1) {
		switch (ch) {
		case 'k': opt.newconn = false; break;
		case 'n': opt.newconn = true; break;
		case 'c': opt.conns = atoi(optarg); break;
		case 'd': opt.duration = atof(optarg); break;
		case 'r': opt.requests = strtoull(optarg, NULL, 10); break;
		case 't': opt.threads = atoi(optarg); break;
		case 'P': opt.path = optarg; break;
		case 's': opt.sni = optarg; break;
		case 'V':
			if (strcmp(optarg, "1.2") == 0)
				opt.version = TLS1_2_VERSION;
			else if (strcmp(optarg, "1.3") == 0)
				opt.version = TLS1_3_VERSION;
			else
				usage();
			break;
		default: usage();
		}
	}
	if (optind + 1 != argc || opt.conns < 1 || opt.threads < 1 ||
	    opt.threads > opt.conns || opt.duration <= 0 ||
	    (opt.port = atoi(argv[optind])) <= 0 || opt.port > 65535)
		usage();
	opt.sa.sin_family = AF_INET;
	opt.sa.sin_port = htons((uint16_t)opt.port);
	opt.sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	opt.reqlen = (size_t)snprintf(opt.req, sizeof(opt.req),
	    "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", opt.path,
	    opt.sni[0] != '\0' ? opt.sni : "127.0.0.1",
	    opt.newconn ? "Connection: close\r\n" : "");
	if (opt.reqlen >= sizeof(opt.req))
		usage();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if ((ts = calloc((size_t)opt.threads, sizeof(*ts))) == NULL)
		return 1;
	t_start = now_ns();
	/* -r: the clock only guards against a server that stopped */
	opt.t_end = t_start + (int64_t)((opt.requests > 0 ? 600 : opt.duration) *
	    1e9);
	for (i = 0; i < opt.threads; i++) {
		ts[i].nconns = opt.conns / opt.threads +
		    (i < opt.conns % opt.threads);
		ts[i].quota = opt.requests / (uint64_t)opt.threads +
		    ((uint64_t)i < opt.requests % (uint64_t)opt.threads);
		if ((ts[i].ctx = client_ctx()) == NULL) {
			fprintf(stderr, "tlsload: cannot make a TLS context\n");
			return 1;
		}
		if (pthread_create(&ts[i].tid, NULL, run, &ts[i]) != 0) {
			fprintf(stderr, "tlsload: cannot start a thread\n");
			return 1;
		}
	}
	memset(&sum, 0, sizeof(sum));
	for (i = 0; i < opt.threads; i++) {
		pthread_join(ts[i].tid, NULL);
		sum.done += ts[i].n.done;
		sum.non2xx += ts[i].n.non2xx;
		sum.bytes += ts[i].n.bytes;
		sum.handshakes += ts[i].n.handshakes;
		sum.resumed += ts[i].n.resumed;
		sum.e_connect += ts[i].n.e_connect;
		sum.e_read += ts[i].n.e_read;
		sum.e_write += ts[i].n.e_write;
		sum.e_timeout += ts[i].n.e_timeout;
		for (b = 0; b < NBUCKETS; b++)
			sum.hist[b] += ts[i].n.hist[b];
		SSL_CTX_free(ts[i].ctx);
	}
	secs = (double)((opt.requests > 0 ? now_ns() : opt.t_end) - t_start) /
	    1e9;
	getrusage(RUSAGE_SELF, &ru);
	cpu_us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);

	if (opt.requests > 0)
		printf("Running %llu requests", (unsigned long long)opt.requests);
	else
		printf("Running %.0fs test", opt.duration);
	printf(" @ https://127.0.0.1:%d%s (%s)\n", opt.port, opt.path,
	    opt.newconn ? "new connection and full handshake per request" :
	    "keep-alive");
	printf("  %d threads and %d connections\n", opt.threads, opt.conns);
	printf("  Latency Distribution\n");
	for (p = 0; p < 4; p++) {
		uint64_t want_n = (uint64_t)((double)sum.done * pct[p] / 100.0);

		seen = 0;
		for (b = 0; b < NBUCKETS; b++) {
			seen += sum.hist[b];
			if (seen >= want_n && seen > 0)
				break;
		}
		fmt_us(lat, sizeof(lat), b < NBUCKETS ? bucket_us(b) : 0);
		printf("  %3.0f%% %10s\n", pct[p], lat);
	}
	printf("  %llu requests in %.2fs, %.2fMB read\n",
	    (unsigned long long)sum.done, secs, (double)sum.bytes / 1e6);
	if (sum.e_connect + sum.e_read + sum.e_write + sum.e_timeout > 0)
		printf("  Socket errors: connect %llu, read %llu, write %llu, "
		    "timeout %llu\n", (unsigned long long)sum.e_connect,
		    (unsigned long long)sum.e_read,
		    (unsigned long long)sum.e_write,
		    (unsigned long long)sum.e_timeout);
	if (sum.non2xx > 0)
		printf("  Non-2xx or 3xx responses: %llu\n",
		    (unsigned long long)sum.non2xx);
	printf("Requests/sec: %10.2f\n", (double)sum.done / secs);
	printf("Handshakes: %llu (resumed %llu)\n",
	    (unsigned long long)sum.handshakes,
	    (unsigned long long)sum.resumed);
	printf("Client CPU: %.1f us/request\n",
	    sum.done > 0 ? cpu_us / (double)sum.done : 0.0);
	free(ts);
	return 0;
}
