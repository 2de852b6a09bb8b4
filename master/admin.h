/*
 * admin: the admin listener (server.admin, loopback by default), served
 * by the master on its own event loop: HTTP/1.1, GET and HEAD only.
 *
 *   /metrics   the Prometheus text format (admin_prom.c)
 *   /healthz   200 while the master runs
 *   /readyz    200 while a serving generation has every worker up and
 *              ready; 503 before that, while stopping or draining, and in
 *              an old master after an upgrade
 *
 * It never blocks the master: every socket is non-blocking, at most
 * ADMIN_MAX_CONNS connections are served at once (one more is told 503
 * and closed), a request head must arrive within ADMIN_READ_MS and a
 * response must be taken within ADMIN_WRITE_MS, or the connection is
 * closed; a head is at most ADMIN_HEAD_MAX bytes. Keep-alive and
 * pipelined requests are answered in order.
 *
 * At a binary upgrade the listening socket goes to the new master with
 * the others (upgrade.h); the old one stops accepting once it has handed
 * over.
 */
#ifndef PORTICO_ADMIN_H
#define PORTICO_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#define ADMIN_MAX_CONNS	16
#define ADMIN_READ_MS	5000
#define ADMIN_WRITE_MS	10000
#define ADMIN_HEAD_MAX	8192

struct admin;
struct master;

/* admin_open: listen on m->cfg's server.admin (nothing when it is off),
 * or adopt FD (>= 0: a socket handed over at upgrade for that address).
 * Sets m->admin. 0, or -1 with the reason in err. */
int admin_open(struct master *m, int fd, char *err, size_t errlen);
/* admin_close: close the listener and every connection. NULL is fine. */
void admin_close(struct admin *a);
/* admin_close_fds: in a forked worker: close the descriptors, nothing
 * else (the memory is the master's). */
void admin_close_fds(struct admin *a);
/* admin_stop_listening: stop accepting (connections being served
 * finish). */
void admin_stop_listening(struct admin *a);
/* admin_listen_fd: the listening socket (for the upgrade), or -1. */
int admin_listen_fd(const struct admin *a);
/* admin_deadline: the earliest connection deadline (monotonic ms), 0 for
 * none. */
uint64_t admin_deadline(const struct admin *a);
/* admin_tick: close connections past their deadline. */
void admin_tick(struct admin *a, uint64_t now);

/* ---- admin_prom.c ---- */

/* A growing output buffer. */
struct abuf {
	char *p;
	size_t len, cap;
	int failed;			/* out of memory on the way */
};

void abuf_printf(struct abuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void abuf_put(struct abuf *b, const char *p, size_t n);
void abuf_free(struct abuf *b);

/* admin_prom: the whole /metrics page into OUT. 0, or -1 when out of
 * memory. */
int admin_prom(struct master *m, struct abuf *out);

#endif
