/*
 * The pipeline seam in one process: a worker (worker_open) with a config
 * the test writes, clients on socketpairs, and a scripted origin on a
 * loopback socket served from the same event loop. Test policies are
 * appended to the route's chain: a full response, a wait and a resume, a
 * client leaving while a policy waits, a body filter that changes the
 * length (chunked for HTTP/1.1, close-delimited for 1.0), a response hook
 * that replaces the upstream's answer, a request body filter; and the
 * upstream client on its own, with the availability check and the
 * observer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../master/config.h"
#include "../../../master/log.h"
#include "../../../worker/conn.h"
#include "../../../worker/upclient.h"
#include "../../../worker/upstream.h"
#include "../../../worker/worker.h"
#include "../../../worker/worker-t.h"

static struct worker W;
static struct config *cfg;
static struct worker_counters stats;
static char dir[64];

/* ---- a scripted origin in the worker's loop ---------------------- */

struct oconn {
	struct loop_fd f;
	char buf[65536];
	size_t len;
	struct oconn *next, *prev;
};

static struct oconn *oconns;

static void
oconn_free(struct oconn *o)
{
	if (o->prev)
		o->prev->next = o->next;
	else
		oconns = o->next;
	if (o->next)
		o->next->prev = o->prev;
	close(o->f.fd);
	free(o);
}

static struct {
	int lfd;
	struct loop_fd lf;
	uint16_t port;
	int requests;
	char last[65536];		/* the last complete request */
	size_t last_len;
	const char *reply;		/* raw bytes for every request */
} org;

/* Length of a complete request at the front of b, or 0. */
static size_t
request_len(const char *b, size_t n)
{
	const char *e = memmem(b, n, "\r\n\r\n", 4), *cl, *t;
	size_t head;

	if (e == NULL)
		return 0;
	head = (size_t)(e - b) + 4;
	if (memmem(b, head, "chunked", 7) != NULL) {
		t = memmem(b + head, n - head, "0\r\n\r\n", 5);
		return t == NULL ? 0 : (size_t)(t - b) + 5;
	}
	cl = memmem(b, head, "Content-Length: ", 16);
	if (cl != NULL) {
		size_t want = head + strtoul(cl + 16, NULL, 10);
		return n >= want ? want : 0;
	}
	return head;
}

static void
origin_conn(struct loop *l, struct loop_fd *f, uint32_t ev)
{
	struct oconn *o = f->data;
	ssize_t n;
	size_t k;

	(void)ev;
	for (;;) {
		n = read(f->fd, o->buf + o->len, sizeof(o->buf) - o->len);
		if (n <= 0) {
			if (n == 0 || errno != EAGAIN) {
				loop_del(l, f);
				oconn_free(o);
			}
			return;
		}
		o->len += n;
		while ((k = request_len(o->buf, o->len)) > 0) {
			org.requests++;
			memcpy(org.last, o->buf, k);
			org.last_len = k;
			memmove(o->buf, o->buf + k, o->len - k);
			o->len -= k;
			assert_int_equal(write(f->fd, org.reply,
			    strlen(org.reply)), (ssize_t)strlen(org.reply));
		}
	}
}

static void
origin_accept(struct loop *l, struct loop_fd *f, uint32_t ev)
{
	struct oconn *o;
	int fd;

	(void)ev;
	while ((fd = accept4(f->fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		o = calloc(1, sizeof(*o));
		assert_non_null(o);
		o->f.fd = fd;
		o->f.cb = origin_conn;
		o->f.data = o;
		o->next = oconns;
		if (oconns)
			oconns->prev = o;
		oconns = o;
		assert_int_equal(loop_add(l, &o->f, EPOLLIN | EPOLLET), 0);
	}
}

static void
origin_open(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	org.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(org.lfd >= 0);
	assert_int_equal(bind(org.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(org.lfd, 64), 0);
	assert_int_equal(getsockname(org.lfd, (struct sockaddr *)&sa, &len),
	    0);
	org.port = ntohs(sa.sin_port);
}

/* ---- a client on a socketpair ------------------------------------ */

static struct {
	int fd;
	struct loop_fd f;
	char buf[262144];
	size_t len;
	bool eof;
	bool want_close;		/* response ends at EOF */
} cli;

static struct loop_timer guard;

static bool
response_complete(void)
{
	struct http1_header h[32];
	struct http1_limits lim = { 32, 16384, 0, 0 };
	struct http1_response r;
	struct http1_chunked ck;
	char tmp[262144];
	size_t out;
	bool done = false;
	int hl;

	hl = http1_parse_response(cli.buf, cli.len, 0, &r, h, &lim);
	if (hl <= 0)
		return false;
	if (r.f.chunked) {
		memset(&ck, 0, sizeof(ck));
		memcpy(tmp, cli.buf + hl, cli.len - hl);
		return http1_chunked_decode(&ck, tmp, cli.len - hl, &out,
		    &done) >= 0 && done;
	}
	if (r.f.content_length >= 0)
		return cli.len - hl >= (size_t)r.f.content_length;
	return cli.eof;
}

static void
client_event(struct loop *l, struct loop_fd *f, uint32_t ev)
{
	ssize_t n;

	(void)ev;
	for (;;) {
		n = read(f->fd, cli.buf + cli.len, sizeof(cli.buf) - cli.len);
		if (n > 0) {
			cli.len += n;
			continue;
		}
		if (n == 0)
			cli.eof = true;
		break;
	}
	if (response_complete() || cli.eof)
		l->stop = true;
}

static void
guard_fire(struct loop *l, struct loop_timer *t)
{
	(void)t;
	l->stop = true;
}

/* Open a client connection, send RAW, run the loop until the response is
 * complete (or 5 s). */
static void
exchange_raw(const char *raw, size_t n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sv), 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	conn_accept(&W, sv[0], (struct sockaddr *)&sa, NULL);
	memset(&cli.buf, 0, 64);
	cli.len = 0;
	cli.eof = false;
	cli.fd = sv[1];
	cli.f.fd = sv[1];
	cli.f.cb = client_event;
	cli.f.data = NULL;
	assert_int_equal(loop_add(&W.loop, &cli.f, EPOLLIN | EPOLLRDHUP |
	    EPOLLET), 0);
	assert_int_equal(write(sv[1], raw, n), (ssize_t)n);
	guard.cb = guard_fire;
	loop_timer_set(&W.loop, &guard, 5000);
	W.loop.stop = false;
	loop_run(&W.loop);
	loop_timer_cancel(&W.loop, &guard);
}

static void
client_close(void)
{
	loop_del(&W.loop, &cli.f);
	close(cli.fd);
	cli.fd = -1;
}

static const char *
body_of(void)
{
	const char *e = memmem(cli.buf, cli.len, "\r\n\r\n", 4);

	assert_non_null(e);
	cli.buf[cli.len < sizeof(cli.buf) ? cli.len : sizeof(cli.buf) - 1] =
	    '\0';
	return e + 4;
}

/* ---- test policies ------------------------------------------------- */

enum mode {
	M_FULL,			/* RESPOND 201 text/plain "made here" */
	M_WAIT,			/* PENDING 30 ms once, then CONTINUE */
	M_RESUME,		/* PENDING, resumed by a timer, CONTINUE */
	M_WAIT_LONG,		/* PENDING 10 s (the client leaves) */
	M_DOUBLE,		/* response filter: each byte twice */
	M_REPLACE,		/* response hook answers 203 itself */
	M_REQ_UPPER,		/* request filter: upper-case, add "!" */
};

static struct {
	enum mode mode;
	int requests, responses, done;
} tp;

struct tslot {
	int calls;
};

static struct loop_timer resume_timer;
static struct xctx *resume_x;

static void
resume_fire(struct loop *l, struct loop_timer *t)
{
	(void)l;
	(void)t;
	xctx_resume(resume_x);
}

static int
feed_double(struct xctx *x, void *arg, const char *p, size_t n, bool last,
    struct obuf *out)
{
	size_t i;

	(void)x;
	(void)arg;
	(void)last;
	for (i = 0; i < n; i++)
		if (obuf_put(out, p + i, 1) < 0 || obuf_put(out, p + i, 1) < 0)
			return -1;
	return 0;
}

static int
feed_upper(struct xctx *x, void *arg, const char *p, size_t n, bool last,
    struct obuf *out)
{
	size_t i;
	char ch;

	(void)x;
	(void)arg;
	for (i = 0; i < n; i++) {
		ch = p[i] >= 'a' && p[i] <= 'z' ? p[i] - 32 : p[i];
		if (obuf_put(out, &ch, 1) < 0)
			return -1;
	}
	return last ? obuf_put(out, "!", 1) : 0;
}

static int
tp_request(struct xctx *x, void *state, void *slot)
{
	struct tslot *s = slot;
	struct body_filter f = { feed_upper, NULL, 0, false, false };

	(void)state;
	tp.requests++;
	s->calls++;
	switch (tp.mode) {
	case M_FULL:
		return xctx_respond(x, 201, "text/plain", "made here", 9,
		    true);
	case M_WAIT:
		return s->calls == 1 ? xctx_wait(x, 30) : POLICY_CONTINUE;
	case M_RESUME:
		if (s->calls > 1)
			return POLICY_CONTINUE;
		resume_x = x;
		resume_timer.cb = resume_fire;
		loop_timer_set(&W.loop, &resume_timer, 20);
		/* a long bound: the resume must come first */
		return xctx_wait(x, 10000);
	case M_WAIT_LONG:
		return xctx_wait(x, 10000);
	case M_REQ_UPPER:
		assert_int_equal(xctx_req_filter(x, &f), 0);
		return POLICY_CONTINUE;
	default:
		return POLICY_CONTINUE;
	}
}

static int
tp_response(struct xctx *x, void *state, void *slot)
{
	struct body_filter f = { feed_double, NULL, 0, false, false };

	(void)state;
	(void)slot;
	tp.responses++;
	if (tp.mode == M_DOUBLE)
		assert_int_equal(xctx_resp_filter(x, &f), 0);
	if (tp.mode == M_REPLACE)
		return xctx_respond(x, 203, "text/plain", "replaced", 8, false);
	return POLICY_CONTINUE;
}

static void
tp_done(struct xctx *x, void *state, void *slot)
{
	(void)x;
	(void)state;
	(void)slot;
	tp.done++;
}

static const struct policy test_policy = {
	.name = "test",
	.slot_size = sizeof(struct tslot),
	.on_request = tp_request,
	.on_response = tp_response,
	.on_done = tp_done,
};

static void
use_policy(enum mode m)
{
	struct policy_chain *ch = &W.chains[0];

	memset(&tp, 0, sizeof(tp));
	tp.mode = m;
	org.requests = 0;
	ch->p[ch->n] = &test_policy;
	ch->state[ch->n] = NULL;
	ch->n++;
}

static void
drop_policy(void)
{
	W.chains[0].n--;
	client_close();
}

#define GET	"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
#define OK5	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

static void
t_full_response(void **st)
{
	(void)st;
	use_policy(M_FULL);
	exchange_raw(GET, strlen(GET));
	assert_true(cli.len > 0);
	assert_memory_equal(cli.buf, "HTTP/1.1 201 Created\r\n", 22);
	assert_non_null(memmem(cli.buf, cli.len, "Content-Type: text/plain",
	    24));
	assert_non_null(memmem(cli.buf, cli.len, "Content-Length: 9\r\n", 19));
	assert_string_equal(body_of(), "made here");
	assert_int_equal(org.requests, 0);	/* never reached the origin */
	assert_int_equal(tp.requests, 1);
	drop_policy();
	assert_int_equal(tp.done, 1);
}

static void
t_pending_timer(void **st)
{
	(void)st;
	org.reply = OK5;
	use_policy(M_WAIT);
	exchange_raw(GET, strlen(GET));
	assert_memory_equal(cli.buf, "HTTP/1.1 200 OK\r\n", 17);
	assert_string_equal(body_of(), "hello");
	assert_int_equal(tp.requests, 2);	/* the hook ran again */
	assert_int_equal(org.requests, 1);
	drop_policy();
}

static void
t_pending_resume(void **st)
{
	(void)st;
	org.reply = OK5;
	use_policy(M_RESUME);
	exchange_raw(GET, strlen(GET));
	assert_memory_equal(cli.buf, "HTTP/1.1 200 OK\r\n", 17);
	assert_int_equal(tp.requests, 2);
	assert_int_equal(org.requests, 1);
	drop_policy();
}

static void
t_pending_client_leaves(void **st)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int sv[2], i;

	(void)st;
	use_policy(M_WAIT_LONG);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sv), 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	conn_accept(&W, sv[0], (struct sockaddr *)&sa, NULL);
	assert_int_equal(write(sv[1], GET, strlen(GET)),
	    (ssize_t)strlen(GET));
	for (i = 0; i < 20 && tp.requests == 0; i++) {
		guard.cb = guard_fire;
		loop_timer_set(&W.loop, &guard, 10);
		W.loop.stop = false;
		loop_run(&W.loop);
	}
	assert_int_equal(tp.requests, 1);
	assert_int_equal(W.nconns, 1);
	/* the client goes away (a unix socket's close ends both ways) */
	close(sv[1]);
	for (i = 0; i < 20 && W.nconns > 0; i++) {
		loop_timer_set(&W.loop, &guard, 10);
		W.loop.stop = false;
		loop_run(&W.loop);
	}
	assert_int_equal(W.nconns, 0);
	assert_int_equal(tp.done, 1);		/* told, timer cancelled */
	assert_int_equal(org.requests, 0);
	W.chains[0].n--;
}

static void
t_filter_changes_length(void **st)
{
	(void)st;
	org.reply = OK5;
	use_policy(M_DOUBLE);
	exchange_raw(GET, strlen(GET));
	assert_memory_equal(cli.buf, "HTTP/1.1 200 OK\r\n", 17);
	/* the length changed: chunked for an HTTP/1.1 client */
	assert_null(memmem(cli.buf, cli.len, "Content-Length", 14));
	assert_non_null(memmem(cli.buf, cli.len,
	    "Transfer-Encoding: chunked\r\n", 28));
	assert_string_equal(body_of(), "a\r\nhheelllloo\r\n0\r\n\r\n");
	drop_policy();

	/* HTTP/1.0: delimited by the close */
	use_policy(M_DOUBLE);
	exchange_raw("GET /x HTTP/1.0\r\n\r\n", 19);
	assert_true(cli.eof);
	assert_null(memmem(cli.buf, cli.len, "Transfer-Encoding", 17));
	assert_string_equal(body_of(), "hheelllloo");
	drop_policy();
}

static void
t_filter_on_chunked_upstream(void **st)
{
	(void)st;
	org.reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "2\r\nab\r\n1\r\nc\r\n0\r\n\r\n";
	use_policy(M_DOUBLE);
	exchange_raw(GET, strlen(GET));
	/* decoded, filtered, chunked again (one read: one chunk) */
	assert_string_equal(body_of(), "6\r\naabbcc\r\n0\r\n\r\n");
	drop_policy();
}

static void
t_response_hook_replaces(void **st)
{
	(void)st;
	org.reply = OK5;
	use_policy(M_REPLACE);
	exchange_raw(GET, strlen(GET));
	assert_memory_equal(cli.buf, "HTTP/1.1 203 ", 13);
	assert_string_equal(body_of(), "replaced");
	assert_int_equal(org.requests, 1);
	drop_policy();
}

static void
t_request_filter(void **st)
{
	static const char post[] = "POST /p HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 5\r\n\r\nhello";
	static const char chunked[] = "POST /p HTTP/1.1\r\nHost: a\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n"
	    "0\r\nX-T: 1\r\n\r\n";

	(void)st;
	org.reply = OK5;
	use_policy(M_REQ_UPPER);
	exchange_raw(post, strlen(post));
	assert_memory_equal(cli.buf, "HTTP/1.1 200 OK\r\n", 17);
	org.last[org.last_len] = '\0';
	/* the length changed: the upstream got it chunked */
	assert_non_null(strstr(org.last, "Transfer-Encoding: chunked\r\n"));
	assert_null(strstr(org.last, "Content-Length"));
	assert_non_null(strstr(org.last, "\r\n\r\n6\r\nHELLO!\r\n0\r\n\r\n"));
	drop_policy();

	/* a chunked body is decoded for the filter, chunked again after,
	 * its trailers dropped */
	use_policy(M_REQ_UPPER);
	exchange_raw(chunked, strlen(chunked));
	assert_memory_equal(cli.buf, "HTTP/1.1 200 OK\r\n", 17);
	org.last[org.last_len] = '\0';
	assert_non_null(strstr(org.last, "\r\n\r\n6\r\nHELLO!\r\n0\r\n\r\n"));
	if (strstr(org.last, "X-T: 1") != NULL)
		fail_msg("trailer forwarded: %s", org.last);
	drop_policy();
}

/* ---- the upstream client on its own ------------------------------ */

static struct {
	int heads, done, failed, status;
	enum up_fail why;
	char body[256];
	size_t blen;
	unsigned checked[4], observed[4];
	enum up_result last_result;
	bool refuse_first;
} uo;

static int
uo_avail(void *owner, const char **p, size_t *n)
{
	(void)owner;
	*p = NULL;
	*n = 0;
	return 1;
}

static void
uo_sent(void *owner, size_t n)
{
	(void)owner;
	(void)n;
}

static int
uo_head(void *owner, const struct http1_response *res)
{
	(void)owner;
	uo.heads++;
	uo.status = res->status;
	return 0;
}

static ssize_t
uo_body(void *owner, const char *p, size_t n, bool last)
{
	(void)owner;
	(void)last;
	memcpy(uo.body + uo.blen, p, n);
	uo.blen += n;
	return (ssize_t)n;
}

static void
uo_done(void *owner)
{
	(void)owner;
	uo.done++;
	W.loop.stop = true;
}

static void
uo_failed(void *owner, enum up_fail why)
{
	(void)owner;
	uo.failed++;
	uo.why = why;
	W.loop.stop = true;
}

static const struct upclient_ops uo_ops = {
	uo_avail, uo_sent, uo_head, uo_body, uo_done, uo_failed
};

static bool
hk_available(void *arg, const struct service_rt *s, unsigned inst)
{
	(void)arg;
	(void)s;
	uo.checked[inst]++;
	return !(uo.refuse_first && inst == 0);
}

static void
hk_observe(void *arg, const struct service_rt *s, unsigned inst,
    enum up_result r, int status)
{
	(void)arg;
	(void)s;
	(void)status;
	uo.observed[inst]++;
	uo.last_result = r;
}

static void
run_upclient(struct upclient *uc, struct service_rt *s)
{
	static const char head[] = "GET /u HTTP/1.1\r\nHost: a\r\n\r\n";

	memset(uc, 0, sizeof(*uc));
	uc->hbuf = malloc(W.hbuf_size);
	assert_non_null(uc->hbuf);
	memcpy(uc->hbuf, head, sizeof(head) - 1);
	uc->hlen = sizeof(head) - 1;
	uc->flags = UC_IDEMPOTENT;
	guard.cb = guard_fire;
	loop_timer_set(&W.loop, &guard, 5000);
	W.loop.stop = false;
	upclient_start(uc, &W, s, &uo_ops, NULL);
	if (!W.loop.stop)
		loop_run(&W.loop);
	loop_timer_cancel(&W.loop, &guard);
}

static void
t_upclient(void **st)
{
	struct service_rt *s = &W.svc[1];	/* dead instance, origin */
	struct upclient uc;

	(void)st;
	org.reply = OK5;
	memset(&uo, 0, sizeof(uo));
	W.up_hooks.available = hk_available;
	W.up_hooks.observe = hk_observe;
	/* instance 0 refuses connections: one retry reaches instance 1 */
	s->rr = 0;
	run_upclient(&uc, s);
	assert_int_equal(uo.done, 1);
	assert_int_equal(uo.failed, 0);
	assert_int_equal(uo.heads, 1);
	assert_int_equal(uo.status, 200);
	assert_int_equal(uo.blen, 5);
	assert_memory_equal(uo.body, "hello", 5);
	assert_true(uo.checked[0] >= 1 && uo.checked[1] >= 1);
	assert_int_equal(uo.observed[0], 1);	/* the refused connect */
	assert_int_equal(uo.observed[1], 1);	/* the response */
	assert_int_equal(uo.last_result, UPR_OK);

	/* the check refuses instance 0: it is never tried */
	memset(&uo, 0, sizeof(uo));
	uo.refuse_first = true;
	s->rr = 0;
	run_upclient(&uc, s);
	assert_int_equal(uo.done, 1);
	assert_int_equal(uo.observed[0], 0);
	assert_int_equal(uo.observed[1], 1);

	/* nothing available: failed at once, no network */
	memset(&uo, 0, sizeof(uo));
	W.up_hooks.available = NULL;
	run_upclient(&uc, &W.svc[2]);		/* only the dead instance */
	assert_int_equal(uo.failed, 1);
	assert_int_equal(uo.why, UPF_CONNECT);
	W.up_hooks.observe = NULL;
}

/* ---- setup ----------------------------------------------------------- */

static int
setup(void **st)
{
	struct worker_args a = { 0 };
	char path[128], text[2048], why[256];
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int dead, n;
	FILE *f;

	(void)st;
	log_open("/dev/null", LOG_ERROR);
	origin_open();
	/* a port nobody listens on */
	dead = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(dead, (struct sockaddr *)&sa, sizeof(sa));
	{
		socklen_t l = sizeof(sa);
		getsockname(dead, (struct sockaddr *)&sa, &l);
	}
	close(dead);
	snprintf(dir, sizeof(dir), "/tmp/ptc-pipe-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	n = snprintf(text, sizeof(text),
	    "version = 1;\n"
	    "server: { workers = 1; listen = ( { address = \"127.0.0.1:1\"; } );\n"
	    "  control_socket = \"%s/s.sock\"; pid_file = \"%s/p.pid\";\n"
	    "  state = { path = \"%s/state\"; max_mb = 4; };\n"
	    "  access_log = { path = \"off\"; };\n"
	    "  error_log = { path = \"%s/error.log\"; }; };\n"
	    "services: {\n"
	    "  up = { instances = [\"127.0.0.1:%u\"]; retries = 0; };\n"
	    "  two = { instances = [\"127.0.0.1:%u\", \"127.0.0.1:%u\"];\n"
	    "    retries = 1; };\n"
	    "  dead = { instances = [\"127.0.0.1:%u\"]; retries = 0; };\n"
	    "};\n"
	    "routes = ( { name = \"r\"; match = { prefix = \"/\"; };"
	    " service = \"up\"; } );\n",
	    dir, dir, dir, dir, org.port, ntohs(sa.sin_port), org.port,
	    ntohs(sa.sin_port));
	assert_true(n > 0 && (size_t)n < sizeof(text));
	snprintf(path, sizeof(path), "%s/p.conf", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	if (config_load(path, dir, &cfg, why, sizeof(why)) < 0) {
		fprintf(stderr, "config: %s\n", why);
		return -1;
	}
	a.cfg = cfg;
	a.generation = 1;
	a.stats = &stats;
	if (worker_open(&W, &a) < 0)
		return -1;
	org.lf.fd = org.lfd;
	org.lf.cb = origin_accept;
	return loop_add(&W.loop, &org.lf, EPOLLIN | EPOLLET);
}

static int
teardown(void **st)
{
	char cmd[128];

	(void)st;
	worker_close(&W);
	while (oconns != NULL)
		oconn_free(oconns);
	config_free(cfg);
	close(org.lfd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) != 0 ? -1 : 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_full_response),
		cmocka_unit_test(t_pending_timer),
		cmocka_unit_test(t_pending_resume),
		cmocka_unit_test(t_pending_client_leaves),
		cmocka_unit_test(t_filter_changes_length),
		cmocka_unit_test(t_filter_on_chunked_upstream),
		cmocka_unit_test(t_response_hook_replaces),
		cmocka_unit_test(t_request_filter),
		cmocka_unit_test(t_upclient),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
