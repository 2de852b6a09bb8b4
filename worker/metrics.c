#include <errno.h>
#include <stdlib.h>

#include "metrics.h"

unsigned
metrics_route_count(const struct config *cfg)
{
	return (unsigned)cfg->nroutes + 1 + (unsigned)cfg->nservices;
}

unsigned
metrics_inst_count(const struct config *cfg)
{
	unsigned n = 0;
	size_t i;

	for (i = 0; i < cfg->nservices; i++)
		n += (unsigned)cfg->services[i].ninstances;
	return n;
}

unsigned
metrics_inst_index(const struct config *cfg, unsigned svc, unsigned inst)
{
	unsigned n = 0, i;

	for (i = 0; i < svc; i++)
		n += (unsigned)cfg->services[i].ninstances;
	return n + inst;
}

int
metrics_open(struct worker *w, struct metrics_region *region, unsigned slot)
{
	const struct config *cfg = w->cfg;
	struct worker_metrics *mx = &w->mx;
	size_t i;

	if (region == NULL) {
		region = metrics_region_map(1, metrics_route_count(cfg),
		    metrics_inst_count(cfg));
		if (region == NULL)
			return -1;
		mx->own = region;
		slot = 0;
	}
	if (slot >= region->nworkers ||
	    region->nroutes != metrics_route_count(cfg) ||
	    region->ninst != metrics_inst_count(cfg)) {
		errno = EINVAL;	/* a region made for another config */
		return -1;
	}
	mx->inst_base = calloc(cfg->nservices ? cfg->nservices : 1,
	    sizeof(*mx->inst_base));
	if (mx->inst_base == NULL)
		return -1;
	for (i = 0; i < cfg->nservices; i++)
		mx->inst_base[i] = metrics_inst_index(cfg, (unsigned)i, 0);
	mx->hdr = metrics_whdr(region, slot);
	mx->routes = metrics_routes(region, slot);
	mx->inst = metrics_insts(region, slot);
	mx->unrouted = (unsigned)cfg->nroutes;
	return 0;
}

void
metrics_close(struct worker *w)
{
	free(w->mx.inst_base);
	w->mx.inst_base = NULL;
	metrics_region_unmap(w->mx.own);
	w->mx.own = NULL;
}

void
metrics_exchange(struct worker *w, const struct exchange *x)
{
	struct metrics_route *r;
	int status = x->bytes_out > 0 && x->status ? x->status : 499;
	int cls = status / 100;
	bool refused;

	if (w->mx.routes == NULL)
		return;
	r = &w->mx.routes[x->ctx.route_index >= 0 ?
	    (unsigned)x->ctx.route_index : w->mx.unrouted];
	METRIC_ADD(&r->status[cls >= 1 && cls <= 5 ? cls : 0], 1);
	METRIC_ADD(&r->bytes_out, x->bytes_out);
	metrics_hist_add(&r->total, w->loop.now_us - x->start_us);
	if (x->uc.start_us != 0)	/* it went upstream */
		metrics_hist_add(&r->upstream, x->up_us);
	/* What the route's response cache did (nothing: no cache looked);
	 * the two enums list the results in the same order. */
	_Static_assert(XCACHE_MISS - XCACHE_HIT == MC_MISS &&
	    XCACHE_STALE - XCACHE_HIT == MC_STALE &&
	    XCACHE_BYPASS - XCACHE_HIT == MC_BYPASS, "cache result order");
	if (x->ctx.cache >= XCACHE_HIT && x->ctx.cache <= XCACHE_BYPASS)
		METRIC_ADD(&r->cache[x->ctx.cache - XCACHE_HIT], 1);
	/* A policy's own refusal (not an upstream's 401 or 429). */
	refused = x->ctx.resp.error != NULL && x->ctx.resp.status == status;
	if (refused && status == 429)
		METRIC_ADD(&r->rate_limited, 1);
	else if (refused && (status == 401 || status == 403))
		METRIC_ADD(&r->auth_refused, 1);
}

void
metrics_call(const struct upclient *uc, int status, uint64_t up_us)
{
	struct worker *w = uc->w;
	struct metrics_route *r;
	int cls = status / 100;

	if (w->mx.routes == NULL)
		return;
	r = &w->mx.routes[w->mx.unrouted + 1 + uc->svc->index];
	METRIC_ADD(&r->status[cls >= 1 && cls <= 5 ? cls : 0], 1);
	metrics_hist_add(&r->upstream, up_us);
}

void
metrics_upstream_error(const struct upclient *uc, int why)
{
	struct worker *w = uc->w;
	struct metrics_inst *mi;
	int kind;

	switch (why) {
	case UPF_CONNECT:
	case UPF_CONNECT_TIMEOUT:
		kind = MU_CONNECT;
		break;
	case UPF_RESET:
		kind = MU_RESET;
		break;
	case UPF_TIMEOUT:
		kind = MU_TIMEOUT;
		break;
	case UPF_BAD:
		kind = MU_BAD;
		break;
	default:
		return;
	}
	if (w->mx.inst == NULL || uc->inst_last < 0)
		return;
	mi = &w->mx.inst[w->mx.inst_base[uc->svc->index] +
	    (unsigned)uc->inst_last];
	METRIC_ADD(&mi->err[kind], 1);
}
