#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"

/* The fixed pipeline order; later issues insert trace, auth, ratelimit and
 * cache ahead of transform. */
static const struct policy *const pipeline[] = {
	&policy_ratelimit,
	&policy_transform,
};

int
policy_chain_build(const struct config *cfg, const struct cfg_route *r,
    struct policy_chain *chain)
{
	size_t i;

	memset(chain, 0, sizeof(*chain));
	for (i = 0; i < sizeof(pipeline) / sizeof(pipeline[0]); i++) {
		void *state = NULL;
		int rc = pipeline[i]->init(cfg, r, &state);
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

int
policy_run_request(const struct policy_chain *chain, struct policy_ctx *ctx)
{
	unsigned i;

	for (i = 0; i < chain->n; i++) {
		if (chain->p[i]->on_request == NULL)
			continue;
		if (chain->p[i]->on_request(chain->state[i], ctx) ==
		    POLICY_RESPOND)
			return POLICY_RESPOND;
	}
	return POLICY_CONTINUE;
}

int
policy_run_response(const struct policy_chain *chain, struct policy_ctx *ctx)
{
	unsigned i;

	/* Response hooks run in reverse, like an onion around the upstream. */
	for (i = chain->n; i-- > 0;) {
		if (chain->p[i]->on_response == NULL)
			continue;
		if (chain->p[i]->on_response(chain->state[i], ctx) ==
		    POLICY_RESPOND)
			return POLICY_RESPOND;
	}
	return POLICY_CONTINUE;
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
policy_resp_header(struct policy_ctx *ctx, const char *name,
    const char *fmt, ...)
{
	size_t room = ctx->resp_extra_cap - ctx->resp_extra_len;
	char *p = ctx->resp_extra + ctx->resp_extra_len;
	va_list ap;
	int n, m;

	if (ctx->resp_extra == NULL)
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
	ctx->resp_extra_len += n + m + 2;
	return 0;
}
