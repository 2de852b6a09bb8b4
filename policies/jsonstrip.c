#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonstrip.h"

/* ---- paths ------------------------------------------------------- */

int
jstrip_compile(char *const *fields, size_t n, struct jstrip_paths **out,
    char *err, size_t errlen)
{
	struct jstrip_paths *ps;
	size_t i, total = 0, off = 0, len;
	char *t, *s, *dot;

	*out = NULL;
	if (n > JSTRIP_PATHS_MAX) {
		snprintf(err, errlen, "more than %d fields", JSTRIP_PATHS_MAX);
		return -1;
	}
	for (i = 0; i < n; i++)
		total += strlen(fields[i]) + 1;
	if ((ps = calloc(1, sizeof(*ps))) == NULL ||
	    (ps->text = malloc(total ? total : 1)) == NULL) {
		free(ps);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		struct jstrip_path *p = &ps->p[i];
		len = strlen(fields[i]);
		t = ps->text + off;
		memcpy(t, fields[i], len + 1);
		off += len + 1;
		for (s = t;; s = dot + 1) {
			dot = strchr(s, '.');
			len = dot != NULL ? (size_t)(dot - s) : strlen(s);
			if (len == 0) {
				snprintf(err, errlen, "field '%s' has an empty "
				    "name (a path is names joined by '.')",
				    fields[i]);
				goto fail;
			}
			if (len > JSTRIP_NAME_MAX || p->nseg ==
			    JSTRIP_SEGS_MAX) {
				snprintf(err, errlen, "field '%.40s' is too long "
				    "(at most %d names of %d bytes)", fields[i],
				    JSTRIP_SEGS_MAX, JSTRIP_NAME_MAX);
				goto fail;
			}
			p->seg[p->nseg] = s;
			p->seglen[p->nseg++] = len;
			if (len > ps->maxseg)
				ps->maxseg = len;
			if (dot == NULL)
				break;
		}
		ps->n++;
	}
	*out = ps;
	return 0;
fail:
	jstrip_paths_free(ps);
	return -1;
}

void
jstrip_paths_free(struct jstrip_paths *p)
{
	if (p == NULL)
		return;
	free(p->text);
	free(p);
}

/* ---- the stream -------------------------------------------------- */

void
jstrip_init(struct jstrip *js, const struct jstrip_paths *paths,
    jstrip_emit emit, void *arg)
{
	memset(js, 0, sizeof(*js));
	jscan_init(&js->sc, JSCAN_DEPTH_MAX);
	js->paths = paths;
	js->emit = emit;
	js->arg = arg;
}

void
jstrip_free(struct jstrip *js)
{
	jscan_free(&js->sc);
	free(js->hold);
	js->hold = NULL;
}

static bool
bit(const uint8_t *v, unsigned i)
{
	return v[i / 8] >> (i % 8) & 1;
}

static void
set_bit(uint8_t *v, unsigned i, bool on)
{
	if (on)
		v[i / 8] |= (uint8_t)(1u << (i % 8));
	else
		v[i / 8] &= (uint8_t)~(1u << (i % 8));
}

static int
out(struct jstrip *js, const char *p, size_t n)
{
	return n == 0 ? 0 : js->emit(js->arg, p, n);
}

/* The held ',' (and whitespace) goes out before a member that stays,
 * without the ',' when no member of the object went out before it. */
static int
flush_pending(struct jstrip *js)
{
	bool comma = bit(js->kept, js->depth - 1);

	if (!js->pending)
		return 0;
	js->pending = false;
	return comma ? out(js, js->pend, js->npend) :
	    out(js, js->pend + 1, js->npend - 1);
}

static int
hold_add(struct jstrip *js, const char *p, size_t n)
{
	size_t cap;
	char *np;

	if (js->caphold - js->nhold < n) {
		cap = js->caphold ? js->caphold : 64;
		while (cap - js->nhold < n)
			cap *= 2;
		if ((np = realloc(js->hold, cap)) == NULL)
			return -1;
		js->hold = np;
		js->caphold = cap;
	}
	memcpy(js->hold + js->nhold, p, n);
	js->nhold += n;
	return 0;
}

/* A member that stays: what was held goes out before its name. */
static int
keep_member(struct jstrip *js, uint64_t child)
{
	if (flush_pending(js) < 0 || out(js, js->hold, js->nhold) < 0)
		return -1;
	js->nhold = 0;
	js->holding = false;
	set_bit(js->kept, js->depth - 1, true);
	js->next_mask = child;
	js->next_set = true;
	return 0;
}

/* The whole name is held: strip the member, or keep it with the paths
 * that go on below it. */
static int
judge_name(struct jstrip *js)
{
	const struct jstrip_paths *ps = js->paths;
	unsigned lvl = js->depth - 1, s = js->seg[lvl], i;
	uint64_t m = js->mask[lvl], child = 0;
	char buf[JSTRIP_NAME_MAX * 6 + 2];
	const char *name = js->hold + 1;
	size_t len = js->nhold - 2;
	ssize_t d;
	bool drop = false;

	if (memchr(name, '\\', len) != NULL) {
		if (js->nhold > sizeof(buf) ||
		    (d = json_decode_string(js->hold, js->nhold, buf)) < 0)
			return keep_member(js, 0);
		name = buf;
		len = (size_t)d;
	}
	for (i = 0; i < ps->n; i++) {
		const struct jstrip_path *p = &ps->p[i];
		if (!(m >> i & 1) || p->seglen[s] != len ||
		    memcmp(p->seg[s], name, len) != 0)
			continue;
		if (p->nseg == s + 1u)
			drop = true;
		else
			child |= 1ull << i;
	}
	if (!drop)
		return keep_member(js, child);
	js->removed++;
	js->pending = false;
	js->holding = false;
	js->nhold = 0;
	js->dropping = true;
	js->drop_depth = js->depth;
	return 0;
}

/* A piece of a member name, in object level depth - 1. */
static int
name_piece(struct jstrip *js, const char *p, const struct jscan_piece *pc)
{
	unsigned lvl = js->depth - 1;
	size_t most = js->paths->maxseg * 6 + 2;

	if (pc->first && js->mask[lvl] != 0)
		js->holding = true;
	if (!js->holding) {
		/* Nothing to strip here: the name streams. */
		if (pc->first) {
			if (flush_pending(js) < 0)
				return -1;
			set_bit(js->kept, lvl, true);
			js->next_mask = 0;
			js->next_set = true;
		}
		return out(js, p, pc->len);
	}
	if (hold_add(js, p, pc->len) < 0)
		return -1;
	if (pc->last)
		return judge_name(js);
	if (js->nhold > most) {
		/* Longer than any name it could be: it stays. */
		if (keep_member(js, 0) < 0)
			return -1;
	}
	return 0;
}

/* One piece, in the normal (not removing) state. */
static int
take(struct jstrip *js, const char *p, const struct jscan_piece *pc,
    bool parent_obj)
{
	unsigned d = js->depth;

	switch (pc->tok) {
	case JT_WS:
		if (js->skip_ws)
			return 0;
		if (js->pending) {
			size_t k = sizeof(js->pend) - js->npend;
			k = pc->len < k ? pc->len : k;	/* more: dropped */
			memcpy(js->pend + js->npend, p, k);
			js->npend += k;
			return 0;
		}
		return out(js, p, pc->len);
	case JT_COMMA:
		if (parent_obj) {
			js->pending = true;
			js->pend[0] = ',';
			js->npend = 1;
			return 0;
		}
		return out(js, p, pc->len);
	case JT_KEY:
		return name_piece(js, p, pc);
	case JT_OBJ_BEGIN:
	case JT_ARR_BEGIN:
		if (d == 0) {
			js->mask[0] = js->paths->n == 64 ? ~0ull :
			    (1ull << js->paths->n) - 1;
			js->seg[0] = 0;
		} else if (parent_obj) {
			js->mask[d] = js->next_set ? js->next_mask : 0;
			js->seg[d] = (uint8_t)(js->seg[d - 1] + 1);
		} else {
			js->mask[d] = js->mask[d - 1];
			js->seg[d] = js->seg[d - 1];
		}
		/* Past the last name of every path, nothing to strip. */
		if (js->seg[d] >= JSTRIP_SEGS_MAX)
			js->mask[d] = 0;
		set_bit(js->kept, d, false);
		js->next_set = false;
		js->depth++;
		return out(js, p, pc->len);
	case JT_OBJ_END:
	case JT_ARR_END:
		js->depth--;
		return out(js, p, pc->len);
	case JT_COLON:
		return out(js, p, pc->len);
	default:
		if (pc->last)
			js->next_set = false;	/* a scalar value */
		return out(js, p, pc->len);
	}
}

/* One piece while a member is being removed: track where its value
 * ends. */
static void
drop(struct jstrip *js, const struct jscan_piece *pc)
{
	switch (pc->tok) {
	case JT_OBJ_BEGIN:
	case JT_ARR_BEGIN:
		js->depth++;
		return;
	case JT_OBJ_END:
	case JT_ARR_END:
		js->depth--;
		break;
	case JT_STRING:
	case JT_NUMBER:
	case JT_LITERAL:
		if (!pc->last)
			return;
		break;
	default:
		return;
	}
	if (js->depth == js->drop_depth) {
		js->dropping = false;
		js->skip_ws = true;
	}
}

/* The rest goes out as it came: what was held first, then p. */
static int
pass(struct jstrip *js, enum jstrip_verdict v, const char *p, size_t n)
{
	js->verdict = v;
	if (js->pending && out(js, js->pend, js->npend) < 0)
		return -1;
	js->pending = false;
	if (js->holding && out(js, js->hold, js->nhold) < 0)
		return -1;
	js->holding = false;
	js->nhold = 0;
	if (out(js, p, n) < 0)
		return -1;
	return v;
}

int
jstrip_feed(struct jstrip *js, const char *p, size_t n, bool last)
{
	struct jscan_piece pc;
	size_t off = 0;
	bool obj;
	int rc;

	if (js->verdict != JSTRIP_JSON)
		return out(js, p, n) < 0 ? -1 : (int)js->verdict;
	for (;;) {
		obj = jscan_in_object(&js->sc);
		rc = jscan_next(&js->sc, p + off, n - off, last, &pc);
		if (rc == 0) {
			if (last && !js->started)
				return pass(js, JSTRIP_NOT_JSON, p + off,
				    n - off);
			return JSTRIP_JSON;
		}
		if (rc < 0) {
			if (rc == JSON_E_NOMEM)
				return -1;
			return pass(js, js->started ? JSTRIP_INVALID :
			    JSTRIP_NOT_JSON, p + off, n - off);
		}
		if (!js->started && pc.tok != JT_WS) {
			js->started = true;
			if (pc.tok != JT_OBJ_BEGIN && pc.tok != JT_ARR_BEGIN)
				return pass(js, JSTRIP_NOT_JSON, p + off,
				    n - off);
		}
		if (js->dropping) {
			drop(js, &pc);
		} else {
			if (js->skip_ws && pc.tok != JT_WS)
				js->skip_ws = false;
			if (take(js, p + off, &pc, obj) < 0)
				return -1;
		}
		off += pc.len;
	}
}
