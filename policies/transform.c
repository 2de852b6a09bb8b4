/*
 * transform: a route's structural edits, request and response side:
 * add_headers (values may hold templates: template.h), remove_headers,
 * rename_headers ("Old: New": the value is kept), and
 * transform.response.strip_fields, named members removed from JSON
 * bodies by a body filter (jsonstrip.h). Edits only: no scripting, no
 * business logic.
 *
 * Order on each side: renames and removals apply to the headers as they
 * came, then the added lines (which replace any copy of their name).
 * Response add_headers are expanded with the request's values while the
 * request is still there.
 *
 * strip_fields: a body with a Content-Length up to strip_buffer_bytes is
 * stripped whole and goes out with its new Content-Length (and, when it
 * turns out not to be valid JSON, exactly as it came); a longer one, or
 * one of unknown length, streams out chunked (close-delimited to an
 * HTTP/1.0 client) as it is read, and from the first byte that is not
 * valid JSON on passes as it came. A body whose Content-Type is not JSON
 * (application/json or any +json type; no Content-Type: judged by its
 * first byte), one that is not an object or array, and one with a
 * Content-Encoding pass unchanged and are counted (gwctl stats); on a
 * stripping route the request's Accept-Encoding is set to identity, so
 * a well-behaved upstream sends nothing to pass, and one that compresses
 * anyway is logged once per route and worker.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../master/log.h"
#include "jsonstrip.h"
#include "template.h"

#include "policy.h"

/* One add_headers line: its name, and its value's template. */
struct tf_add {
	const char *line;		/* the config's "Name: value" */
	size_t name_len;
	struct tmpl *value;		/* NULL: the line is plain text */
};

struct tf_route {
	const struct cfg_route *r;
	struct tf_add *req_add, *resp_add;
	struct jstrip_paths *strip;	/* NULL: no strip_fields */
	bool warned_encoding;		/* the once-per-route warning */
};

/* Per exchange. */
struct tf_slot {
	const char *resp_line[POLICY_MAX_EDITS];	/* expanded */
	size_t resp_len[POLICY_MAX_EDITS];
	unsigned nresp;
	struct tf_strip *strip;		/* the body filter's state */
};

/* The body filter's state: a whole body under the bound is kept and
 * stripped in one pass (jstrip_whole); a streamed one goes through the
 * stream's state (js, only then made). */
struct tf_strip {
	const struct jstrip_paths *paths;
	struct obuf *out;		/* where this feed's output goes */
	struct obuf in;			/* the whole body (buffered mode) */
	uint64_t removed;
	bool buffered;
	bool counted;
	struct jstrip js;		/* streamed mode only */
};

static void
free_adds(struct tf_add *a, size_t n)
{
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		tmpl_free(a[i].value);
	free(a);
}

static void
transform_free(void *state)
{
	struct tf_route *tr = state;

	if (tr == NULL)
		return;
	free_adds(tr->req_add, tr->r->nreq_add);
	free_adds(tr->resp_add, tr->r->nresp_add);
	jstrip_paths_free(tr->strip);
	free(tr);
}

static int
compile_adds(char **lines, size_t n, struct tf_add **out)
{
	char why[200];
	size_t i;

	if (n == 0)
		return 0;
	if ((*out = calloc(n, sizeof(**out))) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		const char *colon = strchr(lines[i], ':');
		(*out)[i].line = lines[i];
		(*out)[i].name_len = (size_t)(colon - lines[i]);
		if (tmpl_parse(colon + 2, false, &(*out)[i].value, why,
		    sizeof(why)) < 0) {
			log_error("add_headers '%s': %s", lines[i], why);
			return -1;
		}
		if (tmpl_plain((*out)[i].value)) {
			tmpl_free((*out)[i].value);
			(*out)[i].value = NULL;
		}
	}
	return 0;
}

static int
transform_init(const struct config *cfg, const struct cfg_route *r,
    void *wstate, void **state)
{
	struct tf_route *tr;
	char why[200];

	(void)cfg;
	(void)wstate;
	if (r->nreq_add + r->nreq_remove + r->nreq_rename + r->nresp_add +
	    r->nresp_remove + r->nresp_rename + r->nstrip_fields == 0)
		return 0;
	if ((tr = calloc(1, sizeof(*tr))) == NULL)
		return -1;
	tr->r = r;
	if (compile_adds(r->req_add, r->nreq_add, &tr->req_add) < 0 ||
	    compile_adds(r->resp_add, r->nresp_add, &tr->resp_add) < 0)
		goto fail;
	if (r->nstrip_fields > 0 && jstrip_compile(r->strip_fields,
	    r->nstrip_fields, &tr->strip, why, sizeof(why)) < 0) {
		log_error("route %s strip_fields: %s", r->name, why);
		goto fail;
	}
	*state = tr;
	return 1;
fail:
	transform_free(tr);
	return -1;
}

/* "NAME: VALUE" in the arena. */
static char *
line(struct xctx *x, const char *name, size_t nl, const char *v, size_t vl,
    size_t *len)
{
	char *l = arena_alloc(&x->arena, nl + 2 + vl + 1);

	if (l == NULL)
		return NULL;
	memcpy(l, name, nl);
	memcpy(l + nl, ": ", 2);
	memcpy(l + nl + 2, v, vl);
	l[nl + 2 + vl] = '\0';
	*len = nl + 2 + vl;
	return l;
}

/* One add_headers line, expanded when it has templates. */
static const char *
add_line(struct xctx *x, struct tmpl_env *env, const struct tf_add *a,
    size_t *len)
{
	const char *v;
	size_t vl;

	if (a->value == NULL) {
		*len = strlen(a->line);
		return a->line;
	}
	if ((v = tmpl_expand(a->value, env, TE_HEADER, &vl)) == NULL)
		return NULL;
	return line(x, a->line, a->name_len, v, vl, len);
}

/* "Old: New" for the headers H[0..n): each Old line goes as New. */
static int
renames(struct xctx *x, struct policy_edits *e, char **ren, size_t nren,
    const struct http1_header *h, size_t n)
{
	const char *colon, *l;
	size_t i, k, ol, len;

	for (i = 0; i < nren; i++) {
		colon = strchr(ren[i], ':');
		ol = (size_t)(colon - ren[i]);
		for (k = 0; k < n; k++) {
			if (!http1_name_eq(h[k].name, h[k].name_len, ren[i],
			    ol))
				continue;
			if ((l = line(x, colon + 2, strlen(colon + 2),
			    h[k].value, h[k].value_len, &len)) == NULL ||
			    policy_edit_add(e, l, len) < 0)
				return -1;
		}
		if (policy_edit_remove(e, ren[i], ol) < 0)
			return -1;
	}
	return 0;
}

static bool
adds_name(const struct tf_add *a, size_t n, const char *name, size_t nl)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (http1_name_eq(a[i].line, a[i].name_len, name, nl))
			return true;
	return false;
}

static int
transform_request(struct xctx *x, void *state, void *slot)
{
	struct tf_route *tr = state;
	const struct cfg_route *r = tr->r;
	struct tf_slot *sl = slot;
	struct tmpl_env env;
	const char *l;
	size_t i, len;

	tmpl_env_init(&env, x);
	for (i = 0; i < r->nreq_remove; i++)
		if (policy_edit_remove(&x->edits, r->req_remove[i],
		    strlen(r->req_remove[i])) < 0)
			goto many;
	if (renames(x, &x->edits, r->req_rename, r->nreq_rename, x->headers,
	    x->nheaders) < 0)
		goto many;
	for (i = 0; i < r->nreq_add; i++) {
		if ((l = add_line(x, &env, &tr->req_add[i], &len)) == NULL)
			return xctx_error(x, 503, "out_of_memory");
		if (policy_edit_add(&x->edits, l, len) < 0)
			goto many;
	}
	/* A proxied stripping route reads the body: ask for it plain. (An
	 * aggregate's calls always do.) */
	if (tr->strip != NULL && r->ncalls == 0 && !adds_name(tr->req_add,
	    r->nreq_add, "Accept-Encoding", 15) && policy_edit_add(&x->edits,
	    "Accept-Encoding: identity", 25) < 0)
		goto many;
	/* Response lines are expanded now, while the request is here. */
	for (i = 0; i < r->nresp_add && sl->nresp < POLICY_MAX_EDITS; i++) {
		if ((l = add_line(x, &env, &tr->resp_add[i], &len)) == NULL)
			return xctx_error(x, 503, "out_of_memory");
		sl->resp_line[sl->nresp] = l;
		sl->resp_len[sl->nresp++] = len;
	}
	return POLICY_CONTINUE;
many:
	return xctx_error(x, 500, "too_many_header_edits");
}

/* ---- strip_fields ------------------------------------------------ */

static int
strip_emit(void *arg, const char *p, size_t n)
{
	struct tf_strip *st = arg;

	return obuf_put(st->out, p, n);
}

static void
count(struct xctx *x, struct tf_strip *st, int v)
{
	if (st->counted)
		return;
	st->counted = true;
	if (v == JSTRIP_JSON) {
		COUNTER_ADD(&x->stats->strip_bodies, 1);
		COUNTER_ADD(&x->stats->strip_removed, st->buffered ?
		    st->removed : st->js.removed);
	} else {
		COUNTER_ADD(v == JSTRIP_NOT_JSON ? &x->stats->strip_not_json :
		    &x->stats->strip_invalid, 1);
	}
}

static int
strip_feed(struct xctx *x, void *arg, const char *p, size_t n, bool last,
    struct obuf *out)
{
	struct tf_strip *st = arg;
	size_t mark = out->len;
	int v;

	st->out = out;
	if (!st->buffered) {
		if ((v = jstrip_feed(&st->js, p, n, last)) < 0)
			return -1;
		if (v != JSTRIP_JSON || last)
			count(x, st, v);
		return 0;
	}
	/* Whole: what goes out is decided at the end (and the body read in
	 * one pass: jstrip_whole). A body that came in one piece is not
	 * copied first. */
	if (!last || st->in.len > 0) {
		if (obuf_put(&st->in, p, n) < 0)
			return -1;
		if (!last)
			return 0;
		p = st->in.p;
		n = st->in.len;
	}
	if ((v = jstrip_whole(st->paths, p, n, strip_emit, st,
	    &st->removed)) < 0)
		return -1;
	count(x, st, v);
	if (v == JSTRIP_INVALID) {
		/* Not JSON after all: exactly as it came. */
		out->len = mark;
		if (obuf_put(out, p, n) < 0)
			return -1;
	}
	return 0;
}

static const char *
resp_header(const struct xctx *x, const char *name, size_t nl, size_t *vl)
{
	size_t i;

	for (i = 0; i < x->resp_nheaders; i++)
		if (http1_name_eq(x->resp_headers[i].name,
		    x->resp_headers[i].name_len, name, nl)) {
			*vl = x->resp_headers[i].value_len;
			return x->resp_headers[i].value;
		}
	return NULL;
}

/* application/json, or any type/x+json, parameters aside. */
static bool
json_type(const char *v, size_t n)
{
	size_t e = 0, slash;

	while (e < n && v[e] != ';' && v[e] != ' ' && v[e] != '\t')
		e++;
	if (http1_name_eq(v, e, "application/json", 16))
		return true;
	for (slash = 0; slash < e && v[slash] != '/'; slash++)
		;
	return slash < e && e - slash > 5 &&
	    http1_name_eq(v + e - 5, 5, "+json", 5);
}

static int
strip_install(struct xctx *x, struct tf_route *tr, struct tf_slot *sl)
{
	const char *ct, *ce;
	size_t cl = 0, el = 0;
	struct tf_strip *st;
	struct body_filter f = { 0 };
	bool buffered;

	if (x->method == M_HEAD || x->status < 200 || x->status == 204 ||
	    x->status == 304 || x->resp_length == 0)
		return 0;
	ce = resp_header(x, "Content-Encoding", 16, &el);
	if (ce != NULL && !http1_name_eq(ce, el, "identity", 8)) {
		COUNTER_ADD(&x->stats->strip_encoded, 1);
		if (!tr->warned_encoding) {
			tr->warned_encoding = true;
			log_warn("route %s: a response with Content-Encoding "
			    "%.*s passes without strip_fields (the upstream "
			    "ignored Accept-Encoding: identity)", tr->r->name,
			    (int)(el > 32 ? 32 : el), ce);
		}
		return 0;
	}
	ct = resp_header(x, "Content-Type", 12, &cl);
	if (ct == NULL && x->resp.content_type != NULL) {
		ct = x->resp.content_type;
		cl = strlen(ct);
	}
	if (ct != NULL && !json_type(ct, cl)) {
		COUNTER_ADD(&x->stats->strip_not_json, 1);
		return 0;
	}
	buffered = x->resp_length > 0 &&
	    (uint64_t)x->resp_length <= tr->r->strip_buffer_bytes;
	/* (a buffered body needs no stream state) */
	if ((st = arena_alloc(&x->arena, buffered ? offsetof(struct tf_strip,
	    js) : sizeof(*st))) == NULL)
		return -1;
	memset(st, 0, offsetof(struct tf_strip, js));
	st->paths = tr->strip;
	st->buffered = buffered;
	if (!buffered)
		jstrip_init(&st->js, tr->strip, strip_emit, st);
	sl->strip = st;
	f.feed = strip_feed;
	f.arg = st;
	if (st->buffered) {
		f.max = (uint64_t)x->resp_length;
		f.hold = true;
	}
	return xctx_resp_filter(x, &f);
}

static int
transform_response(struct xctx *x, void *state, void *slot)
{
	struct tf_route *tr = state;
	const struct cfg_route *r = tr->r;
	struct tf_slot *sl = slot;
	size_t i;

	for (i = 0; i < r->nresp_remove; i++)
		if (policy_edit_remove(&x->resp_edits, r->resp_remove[i],
		    strlen(r->resp_remove[i])) < 0)
			goto many;
	if (renames(x, &x->resp_edits, r->resp_rename, r->nresp_rename,
	    x->resp_headers, x->resp_nheaders) < 0)
		goto many;
	for (i = 0; i < sl->nresp; i++)
		if (policy_edit_add(&x->resp_edits, sl->resp_line[i],
		    sl->resp_len[i]) < 0)
			goto many;
	if (tr->strip != NULL && sl->strip == NULL &&
	    strip_install(x, tr, sl) < 0)
		return xctx_error(x, 502, "strip_failed");
	return POLICY_CONTINUE;
many:
	return xctx_error(x, 502, "too_many_header_edits");
}

static void
transform_done(struct xctx *x, void *state, void *slot)
{
	struct tf_slot *sl = slot;

	(void)x;
	(void)state;
	if (sl == NULL || sl->strip == NULL)
		return;
	if (!sl->strip->buffered)
		jstrip_free(&sl->strip->js);
	free(sl->strip->in.p);
	sl->strip = NULL;
}

const struct policy policy_transform = {
	.name = "transform",
	.init = transform_init,
	.free = transform_free,
	.slot_size = sizeof(struct tf_slot),
	.on_request = transform_request,
	.on_response = transform_response,
	.on_done = transform_done,
};
