/*
 * transform: the route's header edits, request and response side.
 * (Body field stripping comes with the aggregation issue, as a body
 * filter.)
 */
#include <string.h>

#include "policy.h"

static int
transform_init(const struct config *cfg, const struct cfg_route *r,
    void *wstate, void **state)
{
	(void)cfg;
	(void)wstate;
	if (r->nreq_add + r->nreq_remove + r->nresp_add + r->nresp_remove == 0)
		return 0;
	*state = (void *)r;
	return 1;
}

static int
apply(struct policy_edits *e, char **add, size_t nadd, char **rm, size_t nrm)
{
	size_t i;

	/* Removals first: "remove X, add X" replaces a client's value. */
	for (i = 0; i < nrm; i++)
		if (policy_edit_remove(e, rm[i], strlen(rm[i])) < 0)
			return -1;
	for (i = 0; i < nadd; i++)
		if (policy_edit_add(e, add[i], strlen(add[i])) < 0)
			return -1;
	return 0;
}

static int
transform_request(struct xctx *x, void *state, void *slot)
{
	const struct cfg_route *r = state;

	(void)slot;
	if (apply(&x->edits, r->req_add, r->nreq_add, r->req_remove,
	    r->nreq_remove) < 0)
		return xctx_error(x, 500, "too_many_header_edits");
	return POLICY_CONTINUE;
}

static int
transform_response(struct xctx *x, void *state, void *slot)
{
	const struct cfg_route *r = state;

	(void)slot;
	if (apply(&x->resp_edits, r->resp_add, r->nresp_add, r->resp_remove,
	    r->nresp_remove) < 0)
		return xctx_error(x, 502, "too_many_header_edits");
	return POLICY_CONTINUE;
}

const struct policy policy_transform = {
	.name = "transform",
	.init = transform_init,
	.on_request = transform_request,
	.on_response = transform_response,
};
