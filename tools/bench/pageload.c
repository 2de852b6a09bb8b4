/*
 * pageload: load for the aggregation benchmark (tools/bench-aggregate.sh).
 * A "page" is what a client needs to draw one screen; it is fetched in one
 * of three ways, by USERS clients looping for SECONDS:
 *
 *   agg  one request for PATH1 (the gateway's aggregate of the parts)
 *   seq  PATH1 .. PATHn one after another on one keep-alive connection
 *   par  PATH1 .. PATHn at once, each on its own keep-alive connection
 *
 * One thread, epoll, loopback only; responses need a Content-Length.
 * Prints one line: pages=N seconds=S pages_per_s=X p50_us=X p99_us=X
 * requests=N errors=N
 *
 *   pageload PORT MODE SECONDS USERS PATH1 [PATH2 ...]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXPARTS	8

struct conn {
	int fd;
	struct user *u;
	int part;			/* which path it fetches now */
	char buf[65536];
	size_t len;
	char req[512];
	size_t reqlen, reqoff;
	bool busy;
};

struct user {
	struct conn c[MAXPARTS];
	int nconn;
	int next;			/* seq: the next part to fetch */
	int left;			/* par: parts still coming */
	uint64_t start_ns;
};

static int port, nparts, ep;
static const char *mode;
static char *paths[MAXPARTS];
static uint64_t *lat;
static size_t nlat, caplat, in_time;	/* pages, those done in time */
static uint64_t until;
static uint64_t requests, errors;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int
dial(struct conn *c)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET };
	int one = 1;

	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa,
	    sizeof(sa)) < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0)
		return -1;
	ev.data.ptr = c;
	return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void
send_req(struct conn *c, int part)
{
	ssize_t n;

	c->part = part;
	c->reqlen = (size_t)snprintf(c->req, sizeof(c->req),
	    "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", paths[part]);
	c->reqoff = 0;
	c->busy = true;
	n = send(c->fd, c->req, c->reqlen, MSG_NOSIGNAL);
	if (n > 0)
		c->reqoff = (size_t)n;
}

static void
page_start(struct user *u)
{
	int i;

	u->start_ns = now_ns();
	if (strcmp(mode, "par") == 0) {
		u->left = nparts;
		for (i = 0; i < nparts; i++)
			send_req(&u->c[i], i);
	} else {
		u->next = 1;
		send_req(&u->c[0], 0);
	}
}

static void
page_done(struct user *u)
{
	if (nlat == caplat) {
		caplat = caplat ? caplat * 2 : 65536;
		lat = realloc(lat, caplat * sizeof(*lat));
		if (lat == NULL)
			exit(2);
	}
	lat[nlat++] = now_ns() - u->start_ns;
	in_time += now_ns() <= until;
}

/* A complete response at the front of c->buf: its length, 0 when
 * incomplete, -1 when unusable. */
static long
response_len(struct conn *c)
{
	char *end = memmem(c->buf, c->len, "\r\n\r\n", 4), *cl;
	long head, body;

	if (end == NULL)
		return c->len == sizeof(c->buf) ? -1 : 0;
	head = end - c->buf + 4;
	cl = memmem(c->buf, (size_t)head, "\r\nContent-Length: ", 18);
	if (cl == NULL || strncmp(c->buf, "HTTP/1.1 200", 12) != 0)
		return -1;
	body = strtol(cl + 18, NULL, 10);
	if (head + body > (long)sizeof(c->buf))
		return -1;
	return (long)c->len >= head + body ? head + body : 0;
}

static void
readable(struct conn *c, bool *stop)
{
	struct user *u = c->u;
	ssize_t n;
	long k;

	for (;;) {
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n <= 0) {
			if (n < 0 && errno == EAGAIN)
				return;
			fprintf(stderr, "pageload: connection lost: %s\n",
			    n == 0 ? "closed" : strerror(errno));
			exit(1);
		}
		c->len += (size_t)n;
		while ((k = response_len(c)) != 0) {
			if (k < 0) {
				errors++;
				fprintf(stderr, "pageload: bad response: %.80s\n",
				    c->buf);
				exit(1);
			}
			memmove(c->buf, c->buf + k, c->len - (size_t)k);
			c->len -= (size_t)k;
			c->busy = false;
			requests++;
			if (strcmp(mode, "par") == 0) {
				if (--u->left > 0)
					continue;
			} else if (strcmp(mode, "seq") == 0 && u->next < nparts) {
				send_req(c, u->next++);
				continue;
			}
			page_done(u);
			if (!*stop)
				page_start(u);
		}
	}
}

static int
cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	struct epoll_event evs[256];
	struct user *users;
	uint64_t t0, t1;
	int nusers, secs, i, j, n, busy;
	bool stop = false;

	if (argc < 6 || argc - 5 > MAXPARTS) {
		fprintf(stderr, "usage: pageload PORT agg|seq|par SECONDS "
		    "USERS PATH1 [PATH2 ...]\n");
		return 2;
	}
	port = atoi(argv[1]);
	mode = argv[2];
	secs = atoi(argv[3]);
	nusers = atoi(argv[4]);
	nparts = argc - 5;
	for (i = 0; i < nparts; i++)
		paths[i] = argv[5 + i];
	if ((ep = epoll_create1(0)) < 0 ||
	    (users = calloc((size_t)nusers, sizeof(*users))) == NULL)
		return 2;
	for (i = 0; i < nusers; i++) {
		users[i].nconn = strcmp(mode, "par") == 0 ? nparts : 1;
		for (j = 0; j < users[i].nconn; j++) {
			users[i].c[j].u = &users[i];
			if (dial(&users[i].c[j]) < 0) {
				perror("pageload: connect");
				return 1;
			}
		}
	}
	t0 = now_ns();
	until = t0 + (uint64_t)secs * 1000000000ull;
	for (i = 0; i < nusers; i++)
		page_start(&users[i]);
	for (;;) {
		n = epoll_wait(ep, evs, 256, 100);
		if (!stop && now_ns() >= until)
			stop = true;
		for (i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if ((evs[i].events & EPOLLOUT) && c->reqoff < c->reqlen) {
				ssize_t k = send(c->fd, c->req + c->reqoff,
				    c->reqlen - c->reqoff, MSG_NOSIGNAL);
				if (k > 0)
					c->reqoff += (size_t)k;
			}
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				readable(c, &stop);
		}
		if (!stop)
			continue;
		for (busy = 0, i = 0; i < nusers; i++)
			for (j = 0; j < users[i].nconn; j++)
				busy += users[i].c[j].busy;
		if (busy == 0)
			break;
	}
	t1 = now_ns();
	qsort(lat, nlat, sizeof(*lat), cmp);
	printf("pages=%zu seconds=%.3f pages_per_s=%.1f p50_us=%.1f "
	    "p99_us=%.1f requests=%llu errors=%llu\n", nlat,
	    (double)(t1 - t0) / 1e9, in_time / ((double)(until - t0) / 1e9),
	    nlat ? lat[nlat / 2] / 1e3 : 0.0,
	    nlat ? lat[nlat * 99 / 100] / 1e3 : 0.0,
	    (unsigned long long)requests, (unsigned long long)errors);
	return 0;
}
