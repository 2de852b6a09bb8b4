/*
 * conn: the client side of the worker: accept, read and parse request
 * heads, hand each to an exchange (exchange.h), keep-alive, pipelining,
 * half-closes, the client's timers, and the one place every client
 * connection ends (conn_close).
 *
 * "May have closed": a function returning int gives 0, or CONN_GONE when
 * the connection ended inside the call. The caller then returns at once:
 * the conn stays readable until the end of the event batch (objects are
 * recycled only then), so checking c->flags & CF_DEAD is always safe,
 * but nothing else of it may be used.
 */
#ifndef PORTICO_CONN_H
#define PORTICO_CONN_H

#include <sys/socket.h>

#include "worker-t.h"

#define CONN_GONE	(-1)

/* conn_accept: a new client connection FD from listener LS (NULL: plain,
 * for tests), with TLS when the listener has it. */
void conn_accept(struct worker *w, int fd, const struct sockaddr *sa,
    const struct listener *ls);
/* conn_run: advance the connection as far as its sockets allow. */
void conn_run(struct conn *c);
/* conn_close: end the connection, its exchange and upstream; REASON is
 * logged at debug level. */
void conn_close(struct conn *c, const char *reason);
/* conn_response_done: the exchange's response is completely written: end
 * the exchange, then keep the connection (next request) or close it.
 * 0 or CONN_GONE. */
int conn_response_done(struct conn *c);
/* conn_schedule: run C after the current batch of events (its state
 * changed from another object's event: an upstream, a timer). */
void conn_schedule(struct conn *c);
/* conn_run_queued: run the scheduled connections (before the loop
 * sleeps). */
void conn_run_queued(struct worker *w);
/* conn_close_all: close every connection (end of a drain). */
void conn_close_all(struct worker *w, const char *reason);
/* conn_close_idle: close the keep-alive connections between requests. */
void conn_close_idle(struct worker *w);
/* conn_peer_text: the client address as text; returns its length. */
size_t conn_peer_text(const struct conn *c, char *out, size_t cap);

#endif
