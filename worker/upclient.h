/*
 * upclient: the upstream client. One request to one service through the
 * pools: pick an instance (asking the worker's availability check),
 * connect, send the head and the body its owner supplies, read the
 * response head and body, keep the timers, retry by the rules the README
 * states, tell the worker's observer every outcome, and hand head and body
 * to its owner by callbacks. Proxying is one upstream client relayed to
 * the client; aggregation is several merged.
 *
 * Timers: connect_timeout_ms while connecting; then timeout_ms, running
 * only while the client waits on the upstream (enum up_wait): to take
 * request bytes, for the response head once the request is sent (one
 * deadline, interim responses do not move it), for body bytes the owner
 * has room for. While the owner holds things up (no body bytes yet, no
 * room for the response) no upstream timer runs.
 *
 * Retries: a failed connect or a reset before any response byte is tried
 * again on another instance (one not tried yet, where the availability
 * check allows one), `retries` times and as the `may_retry` hook allows
 * (the retry budget), for idempotent requests without a body only; a
 * reset on a reused pooled connection earns one free resend in the
 * request's life. A timeout is never retried. The `admit` hook may
 * refuse the request at its start (the bulkhead: failed(UPF_OVERLOADED)
 * before any connection); `release` ends every admitted request.
 *
 * Callback contract: callbacks run from upclient_start, upclient_kick,
 * upclient_resume and the upstream's events. A callback that ends the
 * owner's exchange must abort the client first (upclient_abort) and
 * return UC_STOP; the client then touches nothing more. After `done` or
 * `failed` the client is finished and the owner may reuse or drop it.
 */
#ifndef PORTICO_UPCLIENT_H
#define PORTICO_UPCLIENT_H

#include "worker-t.h"

#define UC_STOP		(-1)	/* from a callback: the client was aborted */

struct upclient_ops {
	/* body_avail: request body bytes ready to send (*p, *n; *n = 0 when
	 * none yet: the owner may read its client here). Returns 1 when the
	 * body is complete with them (or there is none), 0 when more will
	 * come, or UC_STOP. NULL: the request has no body. */
	int (*body_avail)(void *owner, const char **p, size_t *n);
	/* body_sent: the first N of those bytes are sent (NULL: not told). */
	void (*body_sent)(void *owner, size_t n);
	/* head: the final response head. 0, or UC_STOP. */
	int (*head)(void *owner, const struct http1_response *res);
	/* body: response body bytes (decoded when UC_DECODE is set; as the
	 * upstream framed them otherwise); LAST with the final ones. Returns
	 * the bytes taken; fewer than N pauses reading until
	 * upclient_resume, which offers the rest again. Or UC_STOP. */
	ssize_t (*body)(void *owner, const char *p, size_t n, bool last);
	/* done: the whole response was taken; the connection went back to
	 * the pool (or was closed). */
	void (*done)(void *owner);
	/* failed: no (complete) response, retries spent. WHY says what;
	 * UC_DELIVERED in flags says whether response bytes were taken. */
	void (*failed)(void *owner, enum up_fail why);
};

/*
 * upclient_start: send the request whose head is in uc->hbuf (hlen bytes,
 * a pooled BUF_HEAD the client owns from now on) to service SVC, with
 * flags (UC_IDEMPOTENT, UC_HAS_BODY, UC_HEAD_REQ) and balancing HASH set
 * by the owner. Callbacks may run before it returns.
 */
void upclient_start(struct upclient *uc, struct worker *w,
    struct service_rt *svc, const struct upclient_ops *ops, void *owner);
/* upclient_kick: the owner has more request body bytes. */
void upclient_kick(struct upclient *uc);
/* upclient_resume: the owner has room for response bytes again. */
void upclient_resume(struct upclient *uc);
/* upclient_fail_status: the status a failure WHY answers: 504 for a
 * timeout, 503 when no instance may be tried or the bulkhead is full, 502
 * otherwise. */
int upclient_fail_status(enum up_fail why);
/* upclient_abort: stop at once (owner gone): the connection is closed,
 * no callback runs. */
void upclient_abort(struct upclient *uc);
/* upclient_waits_on_owner: the client is blocked on its owner for request
 * body bytes (the owner's stall timer governs). */
bool upclient_waits_on_owner(const struct upclient *uc);

/* The callbacks of every upstream fd and timer (upstream.c sets them). */
void upclient_event(struct loop *l, struct loop_fd *f, uint32_t ev);
void upclient_timeout(struct loop *l, struct loop_timer *t);

#endif
