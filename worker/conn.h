/*
 * conn: the client side of the worker: accept, read and parse request
 * heads, route, run the request policies, answer locally or hand the
 * request to proxy; keep-alive, pipelining, timeouts and the one place
 * every client connection ends (conn_close).
 */
#ifndef PORTICO_CONN_H
#define PORTICO_CONN_H

#include <sys/socket.h>
#include "worker-t.h"

void conn_accept(struct worker *w, int fd, const struct sockaddr *sa);
/* conn_run: advance the connection as far as its sockets allow. */
void conn_run(struct conn *c);
/* conn_close: end the connection, its exchange and upstream; REASON is
 * logged at debug level. */
void conn_close(struct conn *c, const char *reason);
/* conn_respond: answer the current exchange with a JSON error body
 * {"error":ERROR,"status":STATUS,"trace_id":...}. EXTRA is NULL or
 * complete header lines ending in CRLF. CLOSE ends the connection after. */
void conn_respond(struct conn *c, int status, const char *error,
    const char *extra, bool close);
/* conn_response_done: the exchange's response is completely written. */
void conn_response_done(struct conn *c);
/* conn_flush: write x->out; 1 when all written, 0 when blocked, -1 when
 * the connection was closed. */
int conn_flush(struct conn *c);
/* conn_close_all: close every connection (end of a drain). */
void conn_close_all(struct worker *w, const char *reason);
/* conn_close_idle: close the keep-alive connections between requests. */
void conn_close_idle(struct worker *w);
/* conn_peer_text: the client address as text; returns its length. */
size_t conn_peer_text(const struct conn *c, char *out, size_t cap);

#endif
