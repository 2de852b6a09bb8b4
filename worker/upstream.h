/*
 * upstream: per-worker keep-alive pools per service instance, balancing,
 * and non-blocking connects.
 */
#ifndef PORTICO_UPSTREAM_H
#define PORTICO_UPSTREAM_H

#include "worker-t.h"

int upstream_init(struct worker *w);
void upstream_free(struct worker *w);

/* upstream_pick: the instance index for a request of service SVC.
 * HASH is the balancing key's hash (hash policies); ATTEMPT > 0 moves to
 * another instance than FIRST where there is one. */
int upstream_pick(struct worker *w, struct service_rt *s, uint32_t hash,
    unsigned attempt, int first);

/* upstream_acquire: an idle pooled connection to the instance (UF_REUSED
 * set, US_ACTIVE) or a new one (US_CONNECTING). NULL with errno set when
 * the connect failed at once (treated like a refused connect). */
struct upconn *upstream_acquire(struct worker *w, struct instance *inst,
    struct exchange *x);

/* upstream_release: back into its pool when REUSABLE and the pool has
 * room, else closed. */
void upstream_release(struct upconn *u, bool reusable);
void upstream_close(struct upconn *u);

/* The callback of every upstream fd (defined by proxy.c). */
void proxy_upstream_event(struct loop *l, struct loop_fd *f, uint32_t ev);
void proxy_upstream_timeout(struct loop *l, struct loop_timer *t);

uint32_t upstream_hash(const void *p, size_t len);

#endif
