#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "../master/log.h"
#include "metrics.h"
#include "pool.h"
#include "tls.h"
#include "upclient.h"
#include "upstream.h"

static void run(struct upclient *uc);
static int connect_next(struct upclient *uc);

static void
observe(struct upclient *uc, enum up_result r, int status)
{
	struct up_hooks *h = &uc->w->up_hooks;

	if (h->observe != NULL && uc->inst_last >= 0)
		h->observe(h->arg, uc->svc, (unsigned)uc->inst_last, r, status);
}

/* The access-log reason and the error-log words for a failure. */
static const char *
fail_words(const struct upclient *uc, enum up_fail why, char *msg,
    size_t cap)
{
	const struct cfg_service *sc = uc->svc->cfg;

	switch (why) {
	case UPF_CONNECT:
		snprintf(msg, cap, "connect failed");
		return "upstream_connect_failed";
	case UPF_CONNECT_TIMEOUT:
		snprintf(msg, cap, "no connection within %u ms (upstream "
		    "stalled)", sc->connect_timeout_ms);
		return "upstream_connect_timeout";
	case UPF_TLS:
		snprintf(msg, cap, "TLS handshake failed: %s",
		    uc->u != NULL ? tls_client_failure(uc->u->io.ssl,
		    uc->u->io.tls_err) : "handshake failed");
		return "upstream_tls_failed";
	case UPF_RESET:
		snprintf(msg, cap, "connection reset");
		return "upstream_reset";
	case UPF_BAD:
		snprintf(msg, cap, "invalid response");
		return "upstream_bad_response";
	case UPF_UNAVAILABLE:
		snprintf(msg, cap, "no instance available");
		return "upstream_unavailable";
	case UPF_OVERLOADED:
		snprintf(msg, cap, "%u requests in flight (max_inflight)",
		    sc->max_inflight);
		return "bulkhead_full";
	case UPF_TIMEOUT:
		break;
	}
	switch (uc->wait) {
	case UW_SEND:
		snprintf(msg, cap, "took no request bytes for %u ms (upstream "
		    "stalled)", sc->timeout_ms);
		return "upstream_send_timeout";
	case UW_BODY:
		snprintf(msg, cap, "sent no response bytes for %u ms "
		    "(upstream stalled)", sc->timeout_ms);
		return "upstream_read_timeout";
	default:
		snprintf(msg, cap, "no response head within %u ms (upstream "
		    "stalled)", sc->timeout_ms);
		return "upstream_head_timeout";
	}
}

/* The client is finished: no further callback may follow. */
static void
finish(struct upclient *uc)
{
	struct up_hooks *h = &uc->w->up_hooks;

	if ((uc->flags & UC_ADMITTED) && h->release != NULL)
		h->release(h->arg, uc->svc);
	uc->flags &= ~(UC_ACTIVE | UC_ADMITTED);
	pool_buf_put(uc->w, BUF_HEAD, uc->hbuf);
	uc->hbuf = NULL;
}

/* One more attempt after a failure: within `retries` and, when the
 * rules allow one, within the service's retry budget. */
static bool
may_retry(struct upclient *uc)
{
	struct up_hooks *h = &uc->w->up_hooks;

	if (uc->attempts > uc->svc->cfg->retries)
		return false;
	return h->may_retry == NULL || h->may_retry(h->arg, uc->svc);
}

/* An attempt failed: retry where the rules allow, else tell the owner. */
static void
fail(struct upclient *uc, enum up_fail why)
{
	struct upconn *u = uc->u;
	const struct cfg_service *sc = uc->svc->cfg;
	bool reused = u != NULL && (u->flags & UF_REUSED);
	/* Only what can be sent again whole: no body (its bytes are gone
	 * once sent), no response byte delivered. */
	bool replayable = (uc->flags & UC_IDEMPOTENT) &&
	    !(uc->flags & (UC_HAS_BODY | UC_DELIVERED));
	bool free_resend = reused && why == UPF_RESET && replayable &&
	    !(uc->flags & UC_RESENT);
	char msg[96];

	metrics_upstream_error(uc, why);
	uc->reason = fail_words(uc, why, msg, sizeof(msg));
	if (u != NULL) {
		log_warn("upstream %s (%s): %s; trace %s", u->inst->addr->text,
		    sc->name, msg, uc->trace != NULL ? uc->trace : "-");
		uc->u = NULL;
		upstream_close(u);
	}
	/* A stale pooled connection is not the instance's fault: resend
	 * without spending the retry budget, once in the request's life. */
	if (free_resend) {
		uc->attempts--;
		uc->flags |= UC_RESENT;
	} else if (why != UPF_UNAVAILABLE) {
		observe(uc, why == UPF_CONNECT || why == UPF_CONNECT_TIMEOUT ||
		    why == UPF_TLS ? UPR_CONNECT : why == UPF_RESET ? UPR_RESET :
		    why == UPF_TIMEOUT ? UPR_TIMEOUT : UPR_BAD, 0);
	}
	if (replayable && (why == UPF_CONNECT || why == UPF_CONNECT_TIMEOUT ||
	    why == UPF_TLS || why == UPF_RESET) &&
	    (free_resend || may_retry(uc))) {
		uc->flags &= ~(UC_REQ_DONE | UC_HEAD_DONE);
		uc->reason = NULL;
		if (connect_next(uc) == 0)
			run(uc);
		return;
	}
	finish(uc);
	uc->ops->failed(uc->owner, why);
}

static bool
tried(const struct upclient *uc, unsigned i)
{
	return i < 64 && (uc->tried >> i & 1) != 0;
}

/* Pick an instance the availability check allows, starting where the
 * balancer points; a retry takes one not tried yet where there is one,
 * else one tried before. -1 when the check allows none. */
static int
pick(struct upclient *uc)
{
	struct service_rt *s = uc->svc;
	struct up_hooks *h = &uc->w->up_hooks;
	unsigned k, pass;
	int idx, cand;

	idx = upstream_pick(s, uc->hash, uc->attempts, uc->inst_first);
	if (h->available == NULL && !tried(uc, (unsigned)idx))
		return idx;
	for (pass = 0; pass < 2; pass++)
		for (k = 0; k < s->ninst; k++) {
			cand = (int)((idx + k) % s->ninst);
			if (tried(uc, (unsigned)cand) != (pass == 1))
				continue;
			if (h->available == NULL ||
			    h->available(h->arg, s, (unsigned)cand))
				return cand;
		}
	return -1;
}

/* A connection for the next attempt. 0, or -1 when the client finished
 * (failed() was called: no instance could be reached). */
static int
connect_next(struct upclient *uc)
{
	struct service_rt *s = uc->svc;
	int idx;

	for (;;) {
		idx = pick(uc);
		if (idx < 0) {
			fail(uc, UPF_UNAVAILABLE);
			return -1;
		}
		if (uc->attempts == 0)
			uc->inst_first = idx;
		uc->attempts++;
		uc->inst_last = idx;
		if (idx < 64)
			uc->tried |= 1ull << idx;
		uc->u = upstream_acquire(uc->w, &s->inst[idx], uc);
		if (uc->u != NULL)
			break;
		log_warn("upstream %s (%s): connect: %s; trace %s",
		    s->inst[idx].addr->text, s->cfg->name, strerror(errno),
		    uc->trace != NULL ? uc->trace : "-");
		observe(uc, UPR_CONNECT, 0);
		if (!(uc->flags & UC_IDEMPOTENT) || (uc->flags & UC_HAS_BODY) ||
		    !may_retry(uc)) {
			uc->reason = "upstream_connect_failed";
			finish(uc);
			uc->ops->failed(uc->owner, UPF_CONNECT);
			return -1;
		}
	}
	uc->hoff = 0;
	uc->body_sent = false;
	uc->scanned = 0;
	uc->wait = UW_NONE;	/* a new connection: its timer starts */
	return 0;
}

void
upclient_start(struct upclient *uc, struct worker *w, struct service_rt *svc,
    const struct upclient_ops *ops, void *owner)
{
	uc->w = w;
	uc->svc = svc;
	uc->ops = ops;
	uc->owner = owner;
	uc->u = NULL;
	uc->attempts = 0;
	uc->tried = 0;
	uc->inst_first = uc->inst_last = -1;
	uc->status = 0;
	uc->reason = NULL;
	uc->resp_left = 0;
	memset(&uc->ck, 0, sizeof(uc->ck));
	uc->start_us = w->loop.now_us;
	uc->flags |= UC_ACTIVE;
	if (w->up_hooks.admit != NULL) {
		/* The bulkhead: refused at once, before any connection. */
		if (w->up_hooks.admit(w->up_hooks.arg, svc) < 0) {
			char msg[96];

			uc->reason = fail_words(uc, UPF_OVERLOADED, msg,
			    sizeof(msg));
			finish(uc);
			ops->failed(owner, UPF_OVERLOADED);
			return;
		}
		uc->flags |= UC_ADMITTED;
	}
	if (connect_next(uc) == 0)
		run(uc);
}

/* ---- timers ------------------------------------------------------ */

static enum up_wait
waiting(const struct upclient *uc, bool send_blocked)
{
	if (uc->u->state == UP_CONNECTING || uc->u->state == UP_HANDSHAKE)
		return UW_CONNECT;
	if (!(uc->flags & UC_REQ_DONE))
		return send_blocked ? UW_SEND : UW_NONE;
	if (!(uc->flags & UC_HEAD_DONE))
		return UW_HEAD;
	return uc->flags & UC_PAUSED ? UW_NONE : UW_BODY;
}

static uint64_t
deadline(const struct upclient *uc)
{
	const struct cfg_service *sc = uc->svc->cfg;

	switch (uc->wait) {
	case UW_CONNECT:
		return uc->since_ms + sc->connect_timeout_ms;
	case UW_HEAD:
		return uc->sent_ms + sc->timeout_ms;
	default:
		return uc->since_ms + sc->timeout_ms;
	}
}

/* Follow the client into its current wait. The timer is lazy: within one
 * kind of wait, progress only stamps since_ms, and an early firing
 * re-arms for what is left. */
static void
timer_sync(struct upclient *uc, bool send_blocked)
{
	struct loop *l = &uc->w->loop;
	enum up_wait k = waiting(uc, send_blocked);
	uint64_t d;

	if (k == uc->wait)
		return;
	uc->wait = k;
	if (k == UW_NONE)
		return;
	if (k != UW_HEAD)
		uc->since_ms = l->now_ms;
	d = deadline(uc);
	loop_timer_set(l, &uc->u->timer, d > l->now_ms ? d - l->now_ms : 0);
}

bool
upclient_waits_on_owner(const struct upclient *uc)
{
	return (uc->flags & UC_ACTIVE) && uc->u != NULL &&
	    uc->u->state == UP_ACTIVE && !(uc->flags & UC_REQ_DONE) &&
	    uc->wait == UW_NONE;
}

/* ---- request ----------------------------------------------------- */

/* Head and body bytes to the upstream until it blocks or the owner has
 * none. 1 when blocked on the upstream, 0 when not, -1 when finished. */
static int
send_request(struct upclient *uc)
{
	struct upconn *u = uc->u;
	struct iovec iov[2];
	const char *bp;
	size_t bn, h;
	int last;
	ssize_t n;
	int cnt;

	while (!(uc->flags & UC_REQ_DONE)) {
		if (uc->ops->body_avail != NULL) {
			last = uc->ops->body_avail(uc->owner, &bp, &bn);
		} else {
			bp = NULL;	/* a request without a body */
			bn = 0;
			last = 1;
		}
		if (last == UC_STOP)
			return -1;
		cnt = 0;
		if (uc->hoff < uc->hlen) {
			iov[cnt].iov_base = uc->hbuf + uc->hoff;
			iov[cnt++].iov_len = uc->hlen - uc->hoff;
		}
		if (bn > 0) {
			iov[cnt].iov_base = (void *)bp;
			iov[cnt++].iov_len = bn;
		}
		if (cnt == 0) {
			if (!last)
				return 0;	/* the owner has no bytes yet */
			uc->flags |= UC_REQ_DONE;
			uc->sent_ms = uc->w->loop.now_ms;
			break;
		}
		if (!io_can_write(&u->io))
			return 1;
		n = io_writev(&u->io, iov, cnt);
		if (n == IO_AGAIN)
			return 1;
		if (n < 0) {
			fail(uc, UPF_RESET);
			return -1;
		}
		uc->since_ms = uc->w->loop.now_ms;
		if (uc->hoff < uc->hlen) {
			h = uc->hlen - uc->hoff;
			if ((size_t)n < h) {
				uc->hoff += n;
				continue;
			}
			uc->hoff = uc->hlen;
			n -= h;
		}
		if (n > 0) {
			uc->body_sent = true;
			if (uc->ops->body_sent != NULL)
				uc->ops->body_sent(uc->owner, n);
		}
	}
	return 0;
}

/* ---- response ---------------------------------------------------- */

/* A complete final head of LEN bytes is at the front of u->buf. 0, or
 * -1 when the client finished or the owner stopped. */
static int
take_head(struct upclient *uc, const struct http1_response *res, int len)
{
	struct upconn *u = uc->u;

	uc->status = res->status;
	observe(uc, UPR_OK, res->status);
	if (res->f.conn_close || res->minor_version == 0)
		uc->flags |= UC_NO_REUSE;
	if ((uc->flags & UC_HEAD_REQ) || res->status == 204 ||
	    res->status == 304)
		uc->flags |= UC_NO_BODY | UC_BODY_DONE;
	else if (res->f.chunked)
		uc->flags |= UC_CHUNKED;
	else if (res->f.content_length >= 0)
		uc->resp_left = (uint64_t)res->f.content_length;
	else
		uc->flags |= UC_TO_EOF | UC_NO_REUSE;
	if (!(uc->flags & (UC_NO_BODY | UC_CHUNKED | UC_TO_EOF)) &&
	    uc->resp_left == 0)
		uc->flags |= UC_BODY_DONE;
	uc->off = uc->ready = (uint32_t)len;
	uc->flags |= UC_HEAD_DONE;
	if (uc->ops->head(uc->owner, res) == UC_STOP)
		return -1;
	/* Answered before taking the whole request: the rest of the body is
	 * never read, so the connection cannot be reused. */
	if (!(uc->flags & UC_REQ_DONE))
		uc->flags |= UC_REQ_DONE | UC_NO_REUSE;
	(void)u;
	return 0;
}

/* Validate the bytes after `ready` as body: they become deliverable.
 * -1 on an invalid body. */
static int
validate(struct upclient *uc)
{
	struct upconn *u = uc->u;
	char *p = u->buf + uc->ready;
	size_t avail = u->len - uc->ready, take, out;
	bool done = false;
	ssize_t k;

	if (avail == 0 || (uc->flags & UC_BODY_DONE))
		goto extra;
	if (uc->flags & UC_CHUNKED) {
		if (uc->flags & UC_DECODE) {
			k = http1_chunked_decode(&uc->ck, p, avail, &out,
			    &done);
			if (k < 0)
				return -1;
			/* decoded bytes now at p; close the gap after them */
			memmove(p + out, p + k, avail - k);
			u->len -= k - out;
			take = out;
		} else {
			k = http1_chunked_scan(&uc->ck, p, avail, &done);
			if (k < 0 || uc->ck.trailer_bytes >
			    uc->w->resp_lim.head)
				return -1;
			take = k;
		}
	} else if (uc->flags & UC_TO_EOF) {
		take = avail;
	} else {
		take = avail < uc->resp_left ? avail : uc->resp_left;
		uc->resp_left -= take;
		done = uc->resp_left == 0;
	}
	uc->ready += take;
	if (done)
		uc->flags |= UC_BODY_DONE;
extra:
	/* Bytes after the response: nobody asked for them. */
	if ((uc->flags & UC_BODY_DONE) && uc->ready < u->len)
		uc->flags |= UC_NO_REUSE;
	return 0;
}

/* The response is complete and taken: the connection goes back. */
static void
complete(struct upclient *uc)
{
	struct upconn *u = uc->u;
	bool reuse = !(uc->flags & UC_NO_REUSE) && uc->ready == u->len;

	uc->u = NULL;
	u->len = 0;
	if (uc->flags & UC_NO_BODY)
		u->flags |= UF_CHECK;
	upstream_release(u, reuse);
	finish(uc);
	uc->ops->done(uc->owner);
}

/* Offer validated bytes to the owner. 1 when the owner paused us, 0 to
 * go on reading, -1 when finished or stopped. */
static int
deliver(struct upclient *uc)
{
	struct upconn *u = uc->u;
	bool last;
	ssize_t n;

	for (;;) {
		if (validate(uc) < 0) {
			fail(uc, UPF_BAD);
			return -1;
		}
		last = (uc->flags & UC_BODY_DONE) != 0;
		if (uc->off == uc->ready && !last)
			break;
		n = uc->ops->body(uc->owner, u->buf + uc->off,
		    uc->ready - uc->off, last);
		if (n == UC_STOP)
			return -1;
		uc->flags |= UC_DELIVERED;
		uc->off += (uint32_t)n;
		if (uc->off < uc->ready) {
			uc->flags |= UC_PAUSED;
			return 1;
		}
		uc->flags &= ~UC_PAUSED;
		if (last) {
			complete(uc);
			return -1;
		}
	}
	/* All delivered: the whole buffer is free for the next read. */
	if (uc->off == u->len)
		u->len = uc->off = uc->ready = 0;
	return 0;
}

/* Read and parse until the final head, then deliver the body, reading
 * only while the owner takes what it is offered (back-pressure). 1 when
 * paused, 0 when the socket is drained, -1 when finished or stopped. */
static int
relay(struct upclient *uc)
{
	struct worker *w = uc->w;
	struct upconn *u = uc->u;
	struct http1_response res;
	ssize_t n;
	int rc;

	for (;;) {
		if (!(uc->flags & UC_HEAD_DONE) && u->len > 0) {
			rc = http1_parse_response(u->buf, u->len, uc->scanned,
			    &res, w->hdrs, &w->resp_lim);
			if (rc == HTTP1_INCOMPLETE) {
				uc->scanned = u->len;
			} else if (rc < 0 || res.status == 101) {
				fail(uc, UPF_BAD);
				return -1;
			} else if (res.status < 200) {
				/* Interim responses are ours to absorb; they
				 * do not move the head deadline. */
				memmove(u->buf, u->buf + rc, u->len - rc);
				u->len -= rc;
				uc->scanned = 0;
				continue;
			} else if (take_head(uc, &res, rc) < 0) {
				return -1;
			}
		}
		if (uc->flags & UC_HEAD_DONE) {
			rc = deliver(uc);
			if (rc != 0)
				return rc;
		}
		if (!io_can_read(&u->io))
			return 0;
		if (u->buf == NULL &&
		    (u->buf = pool_buf_get(w, BUF_UPSTREAM)) == NULL) {
			fail(uc, UPF_BAD);
			return -1;
		}
		if (u->len == w->ubuf_size) {
			fail(uc, UPF_BAD);	/* a head that never ends */
			return -1;
		}
		n = io_read(&u->io, u->buf + u->len, w->ubuf_size - u->len);
		if (n == IO_AGAIN)
			return 0;
		if (n <= 0) {
			if ((uc->flags & UC_TO_EOF) && n == 0) {
				uc->flags |= UC_BODY_DONE;
				continue;
			}
			fail(uc, (uc->flags & UC_HEAD_DONE) || u->len == 0 ?
			    UPF_RESET : UPF_BAD);
			return -1;
		}
		u->len += n;
		uc->since_ms = w->loop.now_ms;
	}
}

/* Advance as far as the sockets allow, then follow the timers. */
static void
run(struct upclient *uc)
{
	struct upconn *u = uc->u;
	int err = 0, rc, blocked = 0;
	socklen_t len = sizeof(err);

	if (u->state == UP_CONNECTING) {
		if (!(u->io.ready & (IO_RD | IO_WR))) {
			timer_sync(uc, false);
			return;
		}
		if (getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0
		    || err != 0) {
			errno = err;
			fail(uc, UPF_CONNECT);
			return;
		}
		u->state = u->io.ssl != NULL ? UP_HANDSHAKE : UP_ACTIVE;
	}
	if (u->state == UP_HANDSHAKE) {
		rc = io_handshake(&u->io);
		if (rc == IO_AGAIN) {
			timer_sync(uc, false);
			return;
		}
		if (rc != 1) {
			fail(uc, UPF_TLS);
			return;
		}
		u->state = UP_ACTIVE;
	}
	if (!(uc->flags & UC_REQ_DONE)) {
		blocked = send_request(uc);
		if (blocked < 0)
			return;
	}
	if (uc->flags & UC_PAUSED)
		rc = 0;
	else if ((rc = relay(uc)) < 0)
		return;
	/* The owner may have been given the head before the request was all
	 * sent; the request side stops there. */
	timer_sync(uc, blocked == 1);
}

void
upclient_kick(struct upclient *uc)
{
	if ((uc->flags & UC_ACTIVE) && uc->u != NULL)
		run(uc);
}

void
upclient_resume(struct upclient *uc)
{
	if (!(uc->flags & UC_ACTIVE) || uc->u == NULL ||
	    !(uc->flags & UC_PAUSED))
		return;
	uc->flags &= ~UC_PAUSED;
	run(uc);
}

int
upclient_fail_status(enum up_fail why)
{
	switch (why) {
	case UPF_TIMEOUT:
	case UPF_CONNECT_TIMEOUT:
		return 504;
	case UPF_UNAVAILABLE:
	case UPF_OVERLOADED:
		return 503;
	default:
		return 502;
	}
}

void
upclient_abort(struct upclient *uc)
{
	struct upconn *u = uc->u;

	if (!(uc->flags & UC_ACTIVE))
		return;
	uc->u = NULL;
	if (u != NULL)
		upstream_close(u);
	finish(uc);
}

void
upclient_event(struct loop *l, struct loop_fd *f, uint32_t ev)
{
	struct upconn *u = f->data;

	(void)l;
	if (u->flags & UF_DEAD)
		return;
	if (u->state == UP_IDLE) {
		/* The upstream closed (or spoke out of turn) on an idle
		 * pooled connection: it cannot be used any more. Over TLS,
		 * a session ticket may come after the response. */
		if ((ev & EPOLLIN) && !(ev & (EPOLLRDHUP | EPOLLHUP |
		    EPOLLERR)) && upstream_idle_clean(u))
			return;
		if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
			upstream_close(u);
			return;
		}
		io_event(&u->io, ev);
		return;
	}
	io_event(&u->io, ev);
	run(u->uc);
}

void
upclient_timeout(struct loop *l, struct loop_timer *t)
{
	struct upconn *u = t->data;
	struct upclient *uc = u->uc;
	uint64_t d;

	if (u->state == UP_IDLE || uc == NULL) {
		upstream_close(u);
		return;
	}
	if (uc->wait == UW_NONE)
		return;		/* waiting on the owner: its timer rules */
	d = deadline(uc);
	if (l->now_ms < d) {
		loop_timer_set(l, t, d - l->now_ms);
		return;
	}
	fail(uc, uc->wait == UW_CONNECT ? UPF_CONNECT_TIMEOUT : UPF_TIMEOUT);
}
