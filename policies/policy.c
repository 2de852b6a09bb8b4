#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

/* The fixed pipeline order (README, Design): auth before rate limiting
 * (which keys on its identity), the cache last: a miss goes upstream with
 * the request transform's edits (a background refresh sends exactly what
 * a miss would), and a hit still gets the response transform's. */
static const struct policy *const pipeline[] = {
	&policy_auth,
	&policy_ratelimit,
	&policy_transform,
	&policy_cache,
};

#define NPIPELINE	(sizeof(pipeline) / sizeof(pipeline[0]))

int
policy_set_init(const struct config *cfg, struct policy_set *ps)
{
	size_t i;

	memset(ps, 0, sizeof(*ps));
	for (i = 0; i < NPIPELINE; i++)
		if (pipeline[i]->worker_init != NULL &&
		    pipeline[i]->worker_init(cfg, &ps->wstate[i]) < 0) {
			policy_set_free(ps);
			return -1;
		}
	return 0;
}

void
policy_set_free(struct policy_set *ps)
{
	size_t i;

	for (i = 0; i < NPIPELINE; i++) {
		if (ps->wstate[i] != NULL && pipeline[i]->worker_free != NULL)
			pipeline[i]->worker_free(ps->wstate[i]);
		ps->wstate[i] = NULL;
	}
}

int
policy_chain_build(const struct config *cfg, const struct cfg_route *r,
    const struct policy_set *ps, struct policy_chain *chain)
{
	size_t i;

	memset(chain, 0, sizeof(*chain));
	for (i = 0; i < NPIPELINE; i++) {
		void *state = NULL;
		int rc = pipeline[i]->init(cfg, r, ps != NULL ? ps->wstate[i] :
		    NULL, &state);
		if (rc < 0)
			goto fail;
		if (rc == 0)
			continue;
		chain->p[chain->n] = pipeline[i];
		chain->state[chain->n] = state;
		chain->n++;
	}
	return 0;
fail:
	policy_chain_free(chain);
	return -1;
}

void
policy_chain_free(struct policy_chain *chain)
{
	unsigned i;

	for (i = 0; i < chain->n; i++)
		if (chain->p[i]->free)
			chain->p[i]->free(chain->state[i]);
	chain->n = 0;
}

void *
policy_slot(const struct policy_chain *chain, unsigned i, struct xctx *x)
{
	size_t n = chain->p[i]->slot_size;

	if (n == 0)
		return NULL;
	if (x->slot[i] == NULL && (x->slot[i] = arena_alloc(&x->arena, n)) !=
	    NULL)
		memset(x->slot[i], 0, n);
	return x->slot[i];
}

int
policy_run_request(const struct policy_chain *chain, struct xctx *x,
    unsigned *at)
{
	const struct policy *p;
	void *slot;
	int v;

	for (; *at < chain->n; (*at)++) {
		p = chain->p[*at];
		if (p->on_request == NULL)
			continue;
		slot = policy_slot(chain, *at, x);
		if (p->slot_size > 0 && slot == NULL)
			return xctx_error(x, 503, "out_of_memory");
		v = p->on_request(x, chain->state[*at], slot);
		if (v != POLICY_CONTINUE)
			return v;
	}
	return POLICY_CONTINUE;
}

int
policy_run_response(const struct policy_chain *chain, struct xctx *x,
    unsigned upto)
{
	const struct policy *p;
	unsigned i;

	/* Reverse order: an onion around the upstream. */
	for (i = upto < chain->n ? upto : chain->n; i-- > 0;) {
		p = chain->p[i];
		if (p->on_response == NULL)
			continue;
		if (p->on_response(x, chain->state[i], policy_slot(chain, i,
		    x)) == POLICY_RESPOND)
			return POLICY_RESPOND;
	}
	return POLICY_CONTINUE;
}

int
policy_run_upstream_error(const struct policy_chain *chain, struct xctx *x,
    unsigned upto)
{
	const struct policy *p;
	unsigned i;

	for (i = upto < chain->n ? upto : chain->n; i-- > 0;) {
		p = chain->p[i];
		if (p->on_upstream_error != NULL && p->on_upstream_error(x,
		    chain->state[i], policy_slot(chain, i, x)) ==
		    POLICY_RESPOND)
			return POLICY_RESPOND;
	}
	return POLICY_CONTINUE;
}

void
policy_run_done(const struct policy_chain *chain, struct xctx *x,
    unsigned upto)
{
	unsigned i;

	for (i = 0; i < upto && i < chain->n; i++)
		if (chain->p[i]->on_done != NULL)
			chain->p[i]->on_done(x, chain->state[i], x->slot[i]);
}

int
policy_edit_add(struct policy_edits *e, const char *line, size_t len)
{
	if (e->nadd == POLICY_MAX_EDITS)
		return -1;
	e->add[e->nadd] = line;
	e->add_len[e->nadd++] = len;
	return 0;
}

int
policy_edit_remove(struct policy_edits *e, const char *name, size_t len)
{
	if (e->nremove == POLICY_MAX_EDITS)
		return -1;
	e->remove[e->nremove] = name;
	e->remove_len[e->nremove++] = len;
	return 0;
}

int
xctx_resp_header(struct xctx *x, const char *name, const char *fmt, ...)
{
	size_t room = x->resp_extra_cap - x->resp_extra_len;
	char *p = x->resp_extra + x->resp_extra_len;
	va_list ap;
	int n, m;

	if (x->resp_extra == NULL)
		return -1;
	n = snprintf(p, room, "%s: ", name);
	if (n < 0 || (size_t)n >= room)
		return -1;
	va_start(ap, fmt);
	m = vsnprintf(p + n, room - n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)(n + m + 2) >= room)
		return -1;
	memcpy(p + n + m, "\r\n", 2);
	x->resp_extra_len += n + m + 2;
	return 0;
}

int
xctx_resp_line(struct xctx *x, const char *name, const char *value,
    size_t len)
{
	size_t room = x->resp_extra_cap - x->resp_extra_len;
	size_t nl = strlen(name);
	char *p = x->resp_extra + x->resp_extra_len;

	/* the room xctx_resp_header asks for: the line and one byte */
	if (x->resp_extra == NULL || nl + len + 4 >= room)
		return -1;
	memcpy(p, name, nl);
	memcpy(p + nl, ": ", 2);
	memcpy(p + nl + 2, value, len);
	memcpy(p + nl + 2 + len, "\r\n", 2);
	x->resp_extra_len += nl + len + 4;
	return 0;
}

int
xctx_error(struct xctx *x, int status, const char *error)
{
	memset(&x->resp, 0, sizeof(x->resp));
	x->resp.status = status;
	x->resp.error = error;
	if (x->reason == NULL)
		x->reason = error;
	return POLICY_RESPOND;
}

int
xctx_respond(struct xctx *x, int status, const char *content_type,
    const char *body, size_t len, bool copy)
{
	if (copy && len > 0 && (body = arena_dup(&x->arena, body, len)) ==
	    NULL)
		return xctx_error(x, 503, "out_of_memory");
	memset(&x->resp, 0, sizeof(x->resp));
	x->resp.status = status;
	x->resp.content_type = content_type;
	x->resp.body = body != NULL ? body : "";
	x->resp.body_len = len;
	return POLICY_RESPOND;
}

int
xctx_respond_source(struct xctx *x, int status, const char *content_type,
    const struct body_source *src)
{
	memset(&x->resp, 0, sizeof(x->resp));
	x->resp.status = status;
	x->resp.content_type = content_type;
	x->resp.source = src;
	return POLICY_RESPOND;
}

int
xctx_wait(struct xctx *x, uint64_t ms)
{
	if (x->ops == NULL || x->ops->wait(x, ms) < 0)
		return xctx_error(x, 503, "cannot_wait");
	return POLICY_PENDING;
}

void
xctx_resume(struct xctx *x)
{
	if (x->ops != NULL)
		x->ops->resume(x);
}

int
xctx_fetch(struct xctx *x, const struct xfetch *f)
{
	if (x->ops == NULL || x->ops->fetch == NULL)
		return -1;
	return x->ops->fetch(x, f);
}

static int
add_filter(struct body_filter *list, unsigned *n, const struct body_filter *f)
{
	if (*n == POLICY_MAX_FILTERS)
		return -1;
	list[(*n)++] = *f;
	return 0;
}

int
xctx_resp_filter(struct xctx *x, const struct body_filter *f)
{
	return add_filter(x->resp_filter, &x->nresp_filters, f);
}

int
xctx_req_filter(struct xctx *x, const struct body_filter *f)
{
	return add_filter(x->req_filter, &x->nreq_filters, f);
}

int
obuf_put(struct obuf *o, const char *p, size_t n)
{
	if (o->cap - o->len < n) {
		size_t cap = o->cap ? o->cap : 4096;
		char *np;
		while (cap - o->len < n) {
			if (cap > SIZE_MAX / 2)
				return -1;
			cap *= 2;
		}
		if ((np = realloc(o->p, cap)) == NULL)
			return -1;
		o->p = np;
		o->cap = cap;
	}
	memcpy(o->p + o->len, p, n);
	o->len += n;
	return 0;
}
