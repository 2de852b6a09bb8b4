/*
 * pool: per-worker free lists of buffers and objects, so the steady state
 * of proxying does no malloc per request. Everything is sized once from
 * the config when the worker starts.
 */
#ifndef PORTICO_POOL_H
#define PORTICO_POOL_H

#include "worker-t.h"

enum buf_kind {
	BUF_CLIENT,	/* client input: a request head and body bytes */
	BUF_HEAD,	/* a head we build: upstream request, client response */
	BUF_UPSTREAM,	/* upstream input: response head and body bytes */
};

/* pool_buf_get: a buffer of the kind's size, or NULL when out of memory. */
char *pool_buf_get(struct worker *w, enum buf_kind k);
void pool_buf_put(struct worker *w, enum buf_kind k, char *p);
struct exchange *pool_exchange_get(struct worker *w);
struct conn *pool_conn_get(struct worker *w);
struct upconn *pool_upconn_get(struct worker *w);
/* Dead objects are queued and recycled after the current batch of events,
 * so a stale event in the same batch never reaches a reused object. */
void pool_conn_dead(struct worker *w, struct conn *c);
void pool_exchange_dead(struct worker *w, struct exchange *x);
void pool_upconn_dead(struct worker *w, struct upconn *u);
void pool_reap(struct worker *w);
/* pool_destroy: free every pooled object and buffer (worker exit). */
void pool_destroy(struct worker *w);

#endif
