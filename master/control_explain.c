#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "control-int.h"
#include "msg.h"
#include "../worker/route.h"		/* gwctl explain */
#include "../worker/upstream.h"		/* gwctl explain: the pick */

static const char *
balance_name(const struct cfg_service *s, char *buf, size_t len)
{
	switch (s->balance) {
	case BAL_LEAST_CONN:
		return "least_conn";
	case BAL_HASH_IP:
		return "hash:ip";
	case BAL_HASH_CONSUMER:
		return "hash:consumer";
	case BAL_HASH_HEADER:
		snprintf(buf, len, "hash:header:%s",
		    s->hash_header != NULL ? s->hash_header : "");
		return buf;
	default:
		return "round_robin";
	}
}

static void
pack_strs(msgpack_packer *pk, const char *key, char *const *v, size_t n)
{
	size_t i;

	msg_pack_str(pk, key);
	msgpack_pack_array(pk, n);
	for (i = 0; i < n; i++)
		msg_pack_str(pk, v[i]);
}

/* The route's match as a map of 4: one of path/prefix/regex, methods
 * (empty: any), host (nil: any). */
static void
pack_match(msgpack_packer *pk, const struct cfg_route *r)
{
	unsigned m, n = 0;

	msgpack_pack_map(pk, 4);
	if (r->path != NULL) {
		msg_pack_kv_str(pk, "kind", "path");
		msg_pack_kv_str(pk, "value", r->path);
	} else if (r->prefix != NULL) {
		msg_pack_kv_str(pk, "kind", "prefix");
		/* Stored without its trailing '/': "/" is kept as "". */
		msg_pack_kv_str(pk, "value", r->prefix[0] != '\0' ?
		    r->prefix : "/");
	} else {
		msg_pack_kv_str(pk, "kind", "regex");
		msg_pack_kv_str(pk, "value", r->regex != NULL ? r->regex : "");
	}
	for (m = 0; m < M__COUNT; m++)
		if (r->methods & METHOD_BIT(m))
			n++;
	msg_pack_str(pk, "methods");
	msgpack_pack_array(pk, n);
	for (m = 0; m < M__COUNT; m++)
		if (r->methods & METHOD_BIT(m))
			msg_pack_str(pk, method_name((enum http_method)m));
	msg_pack_kv_str(pk, "host", r->host);
}

/* What the explained request supplies to the settings that read it. */
struct xreq {
	const msgpack_object *hdrs;	/* array of "Name: value" */
	const char *ip;			/* --ip, or NULL */
};

/* The value of header NAME in an explain request ("" and false when
 * absent), optional whitespace trimmed like the parser does. */
static bool
xreq_header(const struct xreq *x, const char *name, const char **val,
    size_t *vlen)
{
	size_t nlen = strlen(name), i, l;
	const char *p, *colon;

	*val = "";
	*vlen = 0;
	if (x == NULL || x->hdrs == NULL)
		return false;
	for (i = 0; i < x->hdrs->via.array.size; i++) {
		const msgpack_object *h = &x->hdrs->via.array.ptr[i];

		p = h->via.str.ptr;
		l = h->via.str.size;
		colon = memchr(p, ':', l);
		if (colon == NULL || (size_t)(colon - p) != nlen ||
		    strncasecmp(p, name, nlen) != 0)
			continue;
		p = colon + 1;
		l -= nlen + 1;
		while (l > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			l--;
		}
		while (l > 0 && (p[l - 1] == ' ' || p[l - 1] == '\t'))
			l--;
		*val = p;
		*vlen = l;
		return true;
	}
	return false;
}

/*
 * The route's policies in pipeline order (trace, auth, rate limit,
 * transform, cache, aggregate), each a map with "name" and its settings.
 * With X (explain), the rate limit also names the bucket key the request
 * would use.
 */
static void
pack_policies(msgpack_packer *pk, const struct config *cfg,
    const struct cfg_route *r, const struct xreq *x)
{
	static const char *const auths[] = { "none", "jwt", "api_key",
	    "any" };
	bool tf = r->nreq_add + r->nreq_remove + r->nreq_rename +
	    r->nresp_add + r->nresp_remove + r->nresp_rename +
	    r->nstrip_fields > 0;
	unsigned n = 0;
	char by[160], key[300];
	const char *v;
	size_t vl;

	n += r->auth != AUTH_NONE;
	n += r->rl_by != RL_NONE;
	n += r->has_cache;
	n += tf;
	n += r->ncalls > 0;
	msgpack_pack_array(pk, n);
	if (r->auth != AUTH_NONE) {
		msgpack_pack_map(pk, 3);
		msg_pack_kv_str(pk, "name", "auth");
		msg_pack_kv_str(pk, "mode", (unsigned)r->auth < 4 ?
		    auths[r->auth] : "?");
		pack_strs(pk, "scopes", r->scopes, r->nscopes);
	}
	if (r->rl_by != RL_NONE) {
		const char *tier = r->rl_tier >= 0 &&
		    (size_t)r->rl_tier < cfg->ntiers ?
		    cfg->tiers[r->rl_tier].name : NULL;

		switch (r->rl_by) {
		case RL_CONSUMER:
			snprintf(by, sizeof(by), "consumer");
			snprintf(key, sizeof(key), "the consumer (as the "
			    "route's auth verifies it)");
			break;
		case RL_IP:
			snprintf(by, sizeof(by), "ip");
			snprintf(key, sizeof(key), "%s", x != NULL &&
			    x->ip != NULL ? x->ip : "the client address");
			break;
		case RL_ROUTE:
			snprintf(by, sizeof(by), "route");
			snprintf(key, sizeof(key), "%s", r->name);
			break;
		default:
			snprintf(by, sizeof(by), "header:%s",
			    r->rl_header != NULL ? r->rl_header : "");
			if (x == NULL)
				snprintf(key, sizeof(key), "the %s header",
				    r->rl_header != NULL ? r->rl_header : "");
			else if (xreq_header(x, r->rl_header != NULL ?
			    r->rl_header : "", &v, &vl))
				snprintf(key, sizeof(key), "%.*s",
				    vl > 256 ? 256 : (int)vl, v);
			else
				snprintf(key, sizeof(key), "(header absent: "
				    "the shared empty-key bucket)");
			break;
		}
		msgpack_pack_map(pk, 4);
		msg_pack_kv_str(pk, "name", "rate_limit");
		msg_pack_kv_str(pk, "by", by);
		/* No tier: the consumer's own, or "anonymous" without one. */
		msg_pack_kv_str(pk, "tier", tier != NULL ? tier :
		    r->rl_by == RL_CONSUMER ? "(the consumer's)" : "anonymous");
		msg_pack_kv_str(pk, "key", key);
	}
	if (tf) {
		msgpack_pack_map(pk, 8);
		msg_pack_kv_str(pk, "name", "transform");
		pack_strs(pk, "request_add", r->req_add, r->nreq_add);
		pack_strs(pk, "request_remove", r->req_remove, r->nreq_remove);
		pack_strs(pk, "request_rename", r->req_rename, r->nreq_rename);
		pack_strs(pk, "response_add", r->resp_add, r->nresp_add);
		pack_strs(pk, "response_remove", r->resp_remove,
		    r->nresp_remove);
		pack_strs(pk, "response_rename", r->resp_rename,
		    r->nresp_rename);
		pack_strs(pk, "strip_fields", r->strip_fields,
		    r->nstrip_fields);
	}
	if (r->has_cache) {
		msgpack_pack_map(pk, 6);
		msg_pack_kv_str(pk, "name", "cache");
		msg_pack_kv_uint(pk, "ttl_s", r->cache_ttl_s);
		pack_strs(pk, "vary", r->cache_vary, r->ncache_vary);
		msg_pack_kv_uint(pk, "stale_s", r->cache_stale_s);
		msg_pack_kv_bool(pk, "per_consumer", r->cache_per_consumer);
		msg_pack_kv_uint(pk, "max_body", r->cache_max_body);
	}
	if (r->ncalls > 0) {
		size_t i;

		msgpack_pack_map(pk, 3);
		msg_pack_kv_str(pk, "name", "aggregate");
		msg_pack_kv_uint(pk, "timeout_ms", r->aggregate_timeout_ms);
		msg_pack_str(pk, "calls");
		msgpack_pack_array(pk, r->ncalls);
		for (i = 0; i < r->ncalls; i++) {
			const struct cfg_call *cl = &r->calls[i];

			msgpack_pack_map(pk, 5);
			msg_pack_kv_str(pk, "name", cl->name);
			msg_pack_kv_str(pk, "service", cl->service >= 0 &&
			    (size_t)cl->service < cfg->nservices ?
			    cfg->services[cl->service].name : "?");
			msg_pack_kv_str(pk, "path", cl->path);
			msg_pack_kv_str(pk, "fallback", cl->fallback);
			msg_pack_kv_uint(pk, "timeout_ms", cl->timeout_ms);
		}
	}
}

/* The route's rewrite as a map of 2, or nil. */
static void
pack_rewrite(msgpack_packer *pk, const struct cfg_route *r)
{
	if (r->rewrite_re == NULL) {
		msgpack_pack_nil(pk);
		return;
	}
	msgpack_pack_map(pk, 2);
	msg_pack_kv_str(pk, "pattern", r->rewrite_pattern);
	msg_pack_kv_str(pk, "to", r->rewrite_to);
}

/* The service a route proxies to as a map (with PICK, explain's choice,
 * packed by the caller as a sixth pair when set), or nil. */
static const struct cfg_service *
pack_service(msgpack_packer *pk, const struct config *cfg,
    const struct cfg_route *r, bool pick)
{
	const struct cfg_service *s;
	char buf[160];
	size_t i;

	if (r->service < 0 || (size_t)r->service >= cfg->nservices) {
		msgpack_pack_nil(pk);
		return NULL;
	}
	s = &cfg->services[r->service];
	msgpack_pack_map(pk, pick ? 6 : 5);
	msg_pack_kv_str(pk, "name", s->name);
	msg_pack_kv_uint(pk, "line", (uint64_t)s->line);
	msg_pack_kv_str(pk, "balance", balance_name(s, buf, sizeof(buf)));
	msg_pack_kv_uint(pk, "retries", s->retries);
	msg_pack_str(pk, "instances");
	msgpack_pack_array(pk, s->ninstances);
	for (i = 0; i < s->ninstances; i++)
		msg_pack_str(pk, s->instances[i].text);
	return s;
}

int
control_reply_routes(const struct config *cfg, struct msg_out *o)
{
	size_t i;

	if (msg_out_init(o, 3) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_str(&o->pk, "config", cfg->file);
	msg_pack_str(&o->pk, "routes");
	msgpack_pack_array(&o->pk, cfg->nroutes);
	for (i = 0; i < cfg->nroutes; i++) {
		const struct cfg_route *r = &cfg->routes[i];

		msgpack_pack_map(&o->pk, 6);
		msg_pack_kv_str(&o->pk, "name", r->name);
		msg_pack_kv_uint(&o->pk, "line", (uint64_t)r->line);
		msg_pack_str(&o->pk, "match");
		pack_match(&o->pk, r);
		msg_pack_str(&o->pk, "service");
		pack_service(&o->pk, cfg, r, false);
		msg_pack_str(&o->pk, "rewrite");
		pack_rewrite(&o->pk, r);
		msg_pack_str(&o->pk, "policies");
		pack_policies(&o->pk, cfg, r, NULL);
	}
	return 0;
}

/* explain's instance choice: the second half of the service map. */
static void
pack_pick(msgpack_packer *pk, const struct cfg_service *s,
    const struct xreq *x)
{
	struct service_rt rt = { .cfg = s, .ninst = (unsigned)s->ninstances };
	unsigned char addr[16];
	char how[320];
	const char *v;
	size_t vl;
	int idx = -1;

	if (s->ninstances == 1) {
		idx = 0;
		snprintf(how, sizeof(how), "the only instance");
	} else if (s->balance == BAL_ROUND_ROBIN) {
		snprintf(how, sizeof(how), "next of %zu (round robin per "
		    "worker)", s->ninstances);
	} else if (s->balance == BAL_LEAST_CONN) {
		snprintf(how, sizeof(how), "the one of %zu with the fewest "
		    "active requests (least_conn, per worker)",
		    s->ninstances);
	} else if (s->balance == BAL_HASH_IP) {
		/* The worker's own key hash (upstream_key_hash) and pick. */
		if (x->ip == NULL) {
			snprintf(how, sizeof(how), "hash of the client "
			    "address over %zu (give --ip ADDR to compute it)",
			    s->ninstances);
		} else if (inet_pton(AF_INET, x->ip, addr) == 1) {
			idx = upstream_pick(&rt, upstream_key_hash(s, AF_INET,
			    addr, NULL, 0, NULL, 0), 0, -1);
			snprintf(how, sizeof(how), "hash of %s", x->ip);
		} else if (inet_pton(AF_INET6, x->ip, addr) == 1) {
			idx = upstream_pick(&rt, upstream_key_hash(s, AF_INET6,
			    addr, NULL, 0, NULL, 0), 0, -1);
			snprintf(how, sizeof(how), "hash of %s", x->ip);
		} else {
			snprintf(how, sizeof(how), "hash of the client "
			    "address ('%.64s' is not an IP address)", x->ip);
		}
	} else if (s->balance == BAL_HASH_HEADER) {
		/* Absent: the worker hashes "", so one instance takes all. */
		bool has = xreq_header(x, s->hash_header, &v, &vl);
		struct http1_header h = { s->hash_header,
		    strlen(s->hash_header), v, vl };

		idx = upstream_pick(&rt, upstream_key_hash(s, 0, NULL, &h,
		    has ? 1 : 0, NULL, 0), 0, -1);
		snprintf(how, sizeof(how), "hash of the %s header (%s)",
		    s->hash_header, has ? "given" : "absent: hash of \"\"");
	} else {
		/* The consumer is known only once a credential is checked:
		 * explain sends none, so this is the anonymous pick. */
		idx = upstream_pick(&rt, upstream_key_hash(s, 0, NULL, NULL, 0,
		    NULL, 0), 0, -1);
		snprintf(how, sizeof(how), "hash of the consumer (the "
		    "instance depends on who calls; anonymous shown)");
	}
	msg_pack_str(pk, "pick");
	msgpack_pack_map(pk, 3);
	if (idx >= 0) {
		msg_pack_kv_int(pk, "index", idx);
		msg_pack_kv_str(pk, "instance", s->instances[idx].text);
	} else {
		msg_pack_kv_str(pk, "index", NULL);
		msg_pack_kv_str(pk, "instance", NULL);
	}
	msg_pack_kv_str(pk, "how", how);
}

/* The routing steps a worker runs (split the query off, normalise,
 * route_find, rewrite), on the live config. */
int
control_reply_explain(const struct config *cfg, const msgpack_object *req,
    struct msg_out *o)
{
	const msgpack_object *hdrs = msg_get(req, "headers");
	struct route_match_data *md = NULL;
	const struct cfg_route *r;
	const struct cfg_service *s;
	struct xreq x = { NULL, NULL };
	char method[32], ip[64], *target = NULL, *norm = NULL, *rw = NULL;
	char reason[512], allowtxt[128];
	const char *host, *q;
	size_t cap = cfg->server.limits.header_bytes + 1, hlen, plen, i;
	unsigned allow = 0;
	int n, ri, rn, rc = -1;

	if (msg_get_str(req, "method", method, sizeof(method)) < 0 ||
	    method[0] == '\0')
		return control_reply_error(o, "explain needs a METHOD");
	target = malloc(cap + 1);
	norm = malloc(cap);
	rw = malloc(cap);
	if (target == NULL || norm == NULL || rw == NULL)
		goto done;
	if (msg_get_str(req, "path", target, cap + 1) < 0) {
		rc = control_reply_error(o, "explain needs a PATH of at most "
		    "%zu bytes", cap - 1);
		goto done;
	}
	if (hdrs != NULL && hdrs->type != MSGPACK_OBJECT_ARRAY) {
		rc = control_reply_error(o, "'headers' must be an array");
		goto done;
	}
	for (i = 0; hdrs != NULL && i < hdrs->via.array.size; i++) {
		const msgpack_object *h = &hdrs->via.array.ptr[i];

		if (h->type != MSGPACK_OBJECT_STR ||
		    memchr(h->via.str.ptr, ':', h->via.str.size) == NULL ||
		    h->via.str.ptr[0] == ':') {
			rc = control_reply_error(o, "header #%zu is not 'Name: "
			    "value'", i + 1);
			goto done;
		}
	}
	x.hdrs = hdrs;
	if (msg_get(req, "ip") != NULL &&
	    msg_get(req, "ip")->type != MSGPACK_OBJECT_NIL) {
		if (msg_get_str(req, "ip", ip, sizeof(ip)) < 0) {
			rc = control_reply_error(o, "'ip' must be an address");
			goto done;
		}
		x.ip = ip;
	}
	xreq_header(&x, "Host", &host, &hlen);
	plen = strlen(target);
	q = memchr(target, '?', plen);
	if (q != NULL)
		plen = (size_t)(q - target);
	if (plen == 0 && q == NULL) {
		/* An empty target is "/" to the worker too. */
		snprintf(target, cap + 1, "/");
		plen = 1;
	}
	if (msg_out_init(o, -1) < 0)
		goto done;
	n = route_normalize(target, plen, norm, cap);
	if (n < 0) {
		msgpack_pack_map(&o->pk, 6);
		msg_pack_kv_bool(&o->pk, "ok", true);
		msg_pack_kv_str(&o->pk, "method", method);
		msg_pack_kv_str(&o->pk, "target", target);
		msg_pack_kv_int(&o->pk, "status", n == -2 ? 414 : 400);
		msg_pack_kv_str(&o->pk, "reason", n == -2 ?
		    "the path is too long once normalised: 414" :
		    "the path is refused by normalisation: 400 (it must start "
		    "with '/', hold no encoded '/', '\\' or NUL, no bad "
		    "escape, only RFC 3986 characters, and '..' may not climb "
		    "above the root)");
		msg_pack_kv_str(&o->pk, "route", NULL);
		rc = 0;
		goto done;
	}
	md = route_match_data_new(cfg);
	if (md == NULL)
		goto done;
	ri = route_find(cfg, md, method_from_name(method, strlen(method)),
	    host, hlen, norm, (size_t)n, &allow);
	if (ri < 0) {
		route_allow_header(allow, allowtxt, sizeof(allowtxt));
		msgpack_pack_map(&o->pk, ri == -405 ? 8 : 7);
		msg_pack_kv_bool(&o->pk, "ok", true);
		msg_pack_kv_str(&o->pk, "method", method);
		msg_pack_kv_str(&o->pk, "target", target);
		msg_pack_kv_str(&o->pk, "normalized", norm);
		msg_pack_kv_int(&o->pk, "status", ri == -405 ? 405 : 404);
		if (ri == -405) {
			snprintf(reason, sizeof(reason), "a route matches the "
			    "path%s but not the method %s: 405, Allow: %s",
			    hlen > 0 ? " and host" : "", method, allowtxt);
			msg_pack_kv_str(&o->pk, "allow", allowtxt);
		} else {
			snprintf(reason, sizeof(reason), "no route matches "
			    "this path%s: 404", hlen > 0 ? " and host" :
			    " (and no Host header was given)");
		}
		msg_pack_kv_str(&o->pk, "reason", reason);
		msg_pack_kv_str(&o->pk, "route", NULL);
		rc = 0;
		goto done;
	}
	r = &cfg->routes[ri];
	rn = route_rewrite(r, md, norm, (size_t)n, rw, cap);
	msgpack_pack_map(&o->pk, 12);
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_str(&o->pk, "method", method);
	msg_pack_kv_str(&o->pk, "target", target);
	msg_pack_kv_str(&o->pk, "normalized", norm);
	if (rn < 0) {
		msg_pack_kv_int(&o->pk, "status", 414);
		snprintf(reason, sizeof(reason), "route '%s' (line %d) "
		    "matches, but its rewrite makes the path too long: 414",
		    r->name, r->line);
	} else {
		msg_pack_kv_str(&o->pk, "status", NULL);
		snprintf(reason, sizeof(reason), "route '%s' (line %d) "
		    "matches%s", r->name, r->line,
		    r->service >= 0 ? "; forwarded to its service" :
		    "; answered by its aggregate calls");
	}
	msg_pack_kv_str(&o->pk, "reason", reason);
	msg_pack_str(&o->pk, "route");
	msgpack_pack_map(&o->pk, 3);
	msg_pack_kv_str(&o->pk, "name", r->name);
	msg_pack_kv_uint(&o->pk, "line", (uint64_t)r->line);
	msg_pack_str(&o->pk, "match");
	pack_match(&o->pk, r);
	msg_pack_str(&o->pk, "rewrite");
	pack_rewrite(&o->pk, r);
	/* What goes upstream: the rewritten (or normalised) path and the
	 * query exactly as the client sent it. */
	snprintf(reason, sizeof(reason), "%s%s", rn > 0 ? rw : norm,
	    q != NULL ? q : "");
	msg_pack_kv_str(&o->pk, "upstream_path", reason);
	msg_pack_str(&o->pk, "policies");
	pack_policies(&o->pk, cfg, r, &x);
	msg_pack_str(&o->pk, "service");
	s = pack_service(&o->pk, cfg, r, true);
	if (s != NULL)
		pack_pick(&o->pk, s, &x);
	msg_pack_kv_bool(&o->pk, "sent", false);
	rc = 0;
done:
	route_match_data_free(md);
	free(target);
	free(norm);
	free(rw);
	return rc;
}

