/*
 * worker: the per-core process. The master forks it with every signal
 * blocked, closes in the child what the worker must not hold, and calls
 * worker_main, which never returns.
 *
 * Signals the worker acts on: SIGTERM / SIGINT = stop now; SIGQUIT =
 * graceful drain (stop accepting, finish in-flight requests, answer the
 * next request on each keep-alive connection with Connection: close, close
 * idle connections at drain_timeout_ms, then exit 0).
 */
#ifndef PORTICO_WORKER_H
#define PORTICO_WORKER_H

#include <stddef.h>
#include "../master/config.h"
#include "../shm/counters.h"
#include "../shm/metrics.h"

struct worker_args {
	const struct config *cfg;
	unsigned slot;			/* index of this worker's counters slot */
	unsigned generation;
	const int *listen_fds;		/* this slot's sockets, one per
					 * cfg->server.listen entry, listening
					 * and non-blocking */
	size_t nlisten;
	struct worker_counters *stats;	/* this worker's slot */
	struct metrics_region *metrics;	/* its generation's metrics, or NULL */
	unsigned metrics_slot;		/* its slot there (the slot number) */
};

void worker_main(const struct worker_args *a) __attribute__((noreturn));

struct worker;
/* worker_open / worker_close: a worker's state without its process (the
 * pieces of worker_main): open sets up the loop, listeners, signals,
 * policies and upstream pools (0, or -1 with errno); close ends every
 * connection and frees what open made. */
int worker_open(struct worker *w, const struct worker_args *a);
void worker_close(struct worker *w);

#endif
