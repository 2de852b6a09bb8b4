#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

/* Idle buffers kept per kind; beyond this they go back to malloc. */
#define KEEP_BUFS 1024

static char ***
free_list(struct worker *w, enum buf_kind k, unsigned **n, unsigned **cap,
    uint32_t *size)
{
	switch (k) {
	case BUF_CLIENT:
		*n = &w->ncbuf_free; *cap = &w->capcbuf; *size = w->cbuf_size;
		return &w->cbuf_free;
	case BUF_HEAD:
		*n = &w->nhbuf_free; *cap = &w->caphbuf; *size = w->hbuf_size;
		return &w->hbuf_free;
	default:
		*n = &w->nubuf_free; *cap = &w->capubuf; *size = w->ubuf_size;
		return &w->ubuf_free;
	}
}

char *
pool_buf_get(struct worker *w, enum buf_kind k)
{
	unsigned *n, *cap;
	uint32_t size;
	char ***list = free_list(w, k, &n, &cap, &size);

	if (*n > 0)
		return (*list)[--*n];
	return malloc(size);
}

void
pool_buf_put(struct worker *w, enum buf_kind k, char *p)
{
	unsigned *n, *cap;
	uint32_t size;
	char ***list = free_list(w, k, &n, &cap, &size);

	if (p == NULL)
		return;
	if (*n == *cap) {
		unsigned ncap = *cap ? *cap * 2 : 64;
		char **nl;
		if (*cap >= KEEP_BUFS || (nl = realloc(*list,
		    ncap * sizeof(*nl))) == NULL) {
			free(p);
			return;
		}
		*list = nl;
		*cap = ncap;
	}
	(*list)[(*n)++] = p;
}

struct exchange *
pool_exchange_get(struct worker *w)
{
	struct exchange *x = w->x_free;

	if (x != NULL)
		w->x_free = x->free_next;
	else if ((x = malloc(sizeof(*x))) == NULL)
		return NULL;
	memset(x, 0, offsetof(struct exchange, ctx) +
	    offsetof(struct xctx, trace));
	x->ctx.edits.nadd = x->ctx.edits.nremove = 0;
	x->ctx.resp_edits.nadd = x->ctx.resp_edits.nremove = 0;
	return x;
}

void
pool_exchange_dead(struct worker *w, struct exchange *x)
{
	x->free_next = w->x_dead;
	w->x_dead = x;
}

struct conn *
pool_conn_get(struct worker *w)
{
	struct conn *c = w->conn_free;

	if (c != NULL)
		w->conn_free = c->free_next;
	else if ((c = malloc(sizeof(*c))) == NULL)
		return NULL;
	memset(c, 0, sizeof(*c));
	return c;
}

struct upconn *
pool_upconn_get(struct worker *w)
{
	struct upconn *u = w->up_free;

	if (u != NULL)
		w->up_free = u->pool_next;
	else if ((u = malloc(sizeof(*u))) == NULL)
		return NULL;
	memset(u, 0, sizeof(*u));
	return u;
}

void
pool_conn_dead(struct worker *w, struct conn *c)
{
	c->free_next = w->conn_dead;
	w->conn_dead = c;
}

void
pool_upconn_dead(struct worker *w, struct upconn *u)
{
	u->pool_next = w->up_dead;
	w->up_dead = u;
}

void
pool_reap(struct worker *w)
{
	while (w->conn_dead != NULL) {
		struct conn *c = w->conn_dead;
		w->conn_dead = c->free_next;
		c->free_next = w->conn_free;
		w->conn_free = c;
	}
	while (w->x_dead != NULL) {
		struct exchange *x = w->x_dead;
		w->x_dead = x->free_next;
		x->free_next = w->x_free;
		w->x_free = x;
	}
	while (w->up_dead != NULL) {
		struct upconn *u = w->up_dead;
		w->up_dead = u->pool_next;
		u->pool_next = w->up_free;
		w->up_free = u;
	}
}

static void
free_bufs(char ***list, unsigned *n, unsigned *cap)
{
	while (*n > 0)
		free((*list)[--*n]);
	free(*list);
	*list = NULL;
	*cap = 0;
}

void
pool_destroy(struct worker *w)
{
	pool_reap(w);
	free_bufs(&w->cbuf_free, &w->ncbuf_free, &w->capcbuf);
	free_bufs(&w->hbuf_free, &w->nhbuf_free, &w->caphbuf);
	free_bufs(&w->ubuf_free, &w->nubuf_free, &w->capubuf);
	while (w->conn_free != NULL) {
		struct conn *c = w->conn_free;
		w->conn_free = c->free_next;
		free(c);
	}
	while (w->x_free != NULL) {
		struct exchange *x = w->x_free;
		w->x_free = x->free_next;
		free(x);
	}
	while (w->up_free != NULL) {
		struct upconn *u = w->up_free;
		w->up_free = u->pool_next;
		free(u);
	}
}
