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

/* Pieces that go out as they came are gathered into one run of the
 * input and written with one call; anything else written first ends the
 * run. */
static int
flush_run(struct jstrip *js)
{
	size_t n = js->run_n;

	js->run_n = 0;
	return n == 0 ? 0 : js->emit(js->arg, js->run_p, n);
}

static int
out(struct jstrip *js, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (flush_run(js) < 0)
		return -1;
	return js->emit(js->arg, p, n);
}

static int
out_piece(struct jstrip *js, const char *p, size_t n)
{
	if (js->run_n > 0 && js->run_p + js->run_n == p) {
		js->run_n += n;
		return 0;
	}
	if (flush_run(js) < 0)
		return -1;
	js->run_p = p;
	js->run_n = n;
	return 0;
}

/* The held ',' (and whitespace) goes out before a member that stays,
 * without the ',' when no member of the object went out before it. While
 * they are input bytes of this call they stay where they are (and join
 * the run); only across calls are they copied. */
static int
flush_pending(struct jstrip *js)
{
	bool comma = bit(js->kept, js->depth - 1);
	const char *p = js->pend_in != NULL ? js->pend_in : js->pend;

	if (!js->pending)
		return 0;
	js->pending = false;
	if (!comma) {
		p++;
		js->npend--;
	}
	if (js->pend_in != NULL)
		return out_piece(js, p, js->npend);
	return out(js, p, js->npend);
}

/* The input goes away when the call returns: what is held of it is
 * copied. */
static void
pend_keep(struct jstrip *js)
{
	if (!js->pending || js->pend_in == NULL)
		return;
	memcpy(js->pend, js->pend_in, js->npend);
	js->pend_in = NULL;
}

/* Whitespace after a held ','. */
static void
pend_add(struct jstrip *js, const char *p, size_t n)
{
	size_t k = sizeof(js->pend) - js->npend;

	k = n < k ? n : k;		/* more: dropped */
	if (js->pend_in != NULL && js->pend_in + js->npend == p) {
		js->npend += k;
		return;
	}
	if (js->pend_in != NULL)
		pend_keep(js);
	memcpy(js->pend + js->npend, p, k);
	js->npend += k;
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

/* A member that stays: what was held goes out before its name (NAME[0..n)
 * is input when IN, else the held copy). */
static int
keep_member(struct jstrip *js, uint64_t child, const char *name, size_t n,
    bool in)
{
	if (flush_pending(js) < 0 ||
	    (in ? out_piece(js, name, n) : out(js, name, n)) < 0)
		return -1;
	js->nhold = 0;
	js->holding = false;
	set_bit(js->kept, js->depth - 1, true);
	js->next_mask = child;
	js->next_set = true;
	return 0;
}

/* Whether the name token RAW[0..n), in an object whose keys compare to
 * names SEG of the paths in MASK, is to be removed (1) or kept (0, with
 * *child the paths that go on below it). */
static int
match_name(const struct jstrip_paths *ps, uint64_t m, unsigned s,
    const char *raw, size_t n, int escaped, uint64_t *child)
{
	char buf[JSTRIP_NAME_MAX * 6 + 2];
	const char *name = raw + 1;
	size_t len = n - 2;
	unsigned i;
	ssize_t d;
	int drop = 0;

	*child = 0;
	if (len > ps->maxseg * 6)
		return 0;		/* longer than any name it could be */
	if (escaped < 0)
		escaped = memchr(name, '\\', len) != NULL;
	if (escaped) {
		if (n > sizeof(buf) || (d = json_decode_string(raw, n, buf)) < 0)
			return 0;
		name = buf;
		len = (size_t)d;
	}
	for (; m != 0; m &= m - 1) {
		const struct jstrip_path *p;
		i = (unsigned)__builtin_ctzll(m);
		p = &ps->p[i];
		if (p->seglen[s] != len || memcmp(p->seg[s], name, len) != 0)
			continue;
		if (p->nseg == s + 1u)
			drop = 1;
		else
			*child |= 1ull << i;
	}
	return drop;
}

/* A whole name token RAW[0..n): strip the member, or keep it with the
 * paths that go on below it. */
static int
judge_name(struct jstrip *js, const char *raw, size_t n, bool in)
{
	unsigned lvl = js->depth - 1;
	uint64_t child;

	if (!match_name(js->paths, js->mask[lvl], js->seg[lvl], raw, n, -1,
	    &child))
		return keep_member(js, child, raw, n, in);
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

	if (pc->first && js->mask[lvl] != 0) {
		/* Whole in this input: judged where it is. */
		if (pc->last)
			return judge_name(js, p, pc->len, true);
		js->holding = true;
	}
	if (!js->holding) {
		/* Nothing to strip here: the name streams. */
		if (pc->first) {
			if (flush_pending(js) < 0)
				return -1;
			set_bit(js->kept, lvl, true);
			js->next_mask = 0;
			js->next_set = true;
		}
		return out_piece(js, p, pc->len);
	}
	if (hold_add(js, p, pc->len) < 0)
		return -1;
	if (pc->last)
		return judge_name(js, js->hold, js->nhold, false);
	if (js->nhold > most) {
		/* Longer than any name it could be: it stays. */
		if (keep_member(js, 0, js->hold, js->nhold, false) < 0)
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
			pend_add(js, p, pc->len);
			return 0;
		}
		return out_piece(js, p, pc->len);
	case JT_COMMA:
		if (parent_obj && js->mask[d - 1] != 0) {
			js->pending = true;
			js->pend_in = p;
			js->npend = 1;
			return 0;
		}
		return out_piece(js, p, pc->len);
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
		set_bit(js->obj, d, pc->tok == JT_OBJ_BEGIN);
		js->next_set = false;
		js->depth++;
		return out_piece(js, p, pc->len);
	case JT_OBJ_END:
	case JT_ARR_END:
		js->depth--;
		return out_piece(js, p, pc->len);
	case JT_COLON:
		return out_piece(js, p, pc->len);
	default:
		if (pc->last)
			js->next_set = false;	/* a scalar value */
		return out_piece(js, p, pc->len);
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
		set_bit(js->obj, js->depth, pc->tok == JT_OBJ_BEGIN);
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
	if (js->pending && out(js, js->pend_in != NULL ? js->pend_in :
	    js->pend, js->npend) < 0)
		return -1;
	js->pending = false;
	if (js->holding && out(js, js->hold, js->nhold) < 0)
		return -1;
	js->holding = false;
	js->nhold = 0;
	if (out(js, p, n) < 0 || flush_run(js) < 0)
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
		obj = js->depth > 0 && bit(js->obj, js->depth - 1);
		rc = jscan_next(&js->sc, p + off, n - off, last, &pc);
		if (rc == 0) {
			if (last && !js->started)
				return pass(js, JSTRIP_NOT_JSON, p + off,
				    n - off);
			/* p is the caller's only until we return */
			pend_keep(js);
			return flush_run(js) < 0 ? -1 : JSTRIP_JSON;
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

/* ---- a whole text in memory -------------------------------------- */

/*
 * The same strip over a text that is all in memory, read by recursive
 * descent over the same lexers, with what is removed cut from the input
 * as ranges: far fewer steps than piece by piece. Its output is the
 * stream's byte for byte (the fuzz target checks it): a member removed
 * takes the ',' before it (or, the first, its trailing whitespace) and
 * the whitespace after its value; the first member kept after removed
 * ones loses its ','; at most sizeof(pend) - 1 bytes of whitespace after
 * a ',' are kept in an object where paths are alive.
 */
struct whole {
	const struct jstrip_paths *ps;
	const char *end;
	const char *cur;		/* first input byte not written yet */
	jstrip_emit emit;
	void *arg;
	uint64_t removed;
	int err;			/* JSON_E_*, or 1: EMIT failed */
};

#define PEND_WS	(sizeof(((struct jstrip *)0)->pend) - 1)

static const char *
ws_end(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

/* [a, b) is removed: what comes before it goes out. */
static void
cut(struct whole *w, const char *a, const char *b)
{
	if (a > w->cur && w->emit(w->arg, w->cur, (size_t)(a - w->cur)) < 0)
		w->err = 1;
	w->cur = b;
}

static const char *
wfail(struct whole *w, int err)
{
	if (w->err == 0)
		w->err = err;
	return NULL;
}

static const char *wvalue(struct whole *w, const char *p, uint64_t m,
    unsigned s, unsigned depth);

static const char *
wobject(struct whole *w, const char *p, uint64_t m, unsigned s,
    unsigned depth)
{
	const char *e = w->end, *key, *comma = NULL;
	uint64_t child = 0;
	bool kept = false;
	size_t dl = 0;
	ssize_t k;
	int drop;

	if (s >= JSTRIP_SEGS_MAX)
		m = 0;
	p = ws_end(p + 1, e);
	if (p < e && *p == '}')
		return p + 1;
	for (;;) {
		if (p >= e || *p != '"')
			return wfail(w, JSON_E_SYNTAX);
		key = p;
		if ((k = json_lex_string_quick(p, (size_t)(e - p), &dl)) <= 0)
			return wfail(w, k < 0 ? (int)k : JSON_E_SYNTAX);
		p += k;
		/* decoded shorter than the token's inside: it has escapes */
		drop = m != 0 && match_name(w->ps, m, s, key, (size_t)k,
		    dl != (size_t)k - 2, &child);
		if (m != 0 && !drop && comma != NULL) {
			/* the ',' goes when nothing went before it */
			if (!kept)
				cut(w, comma, comma + 1);
			if ((size_t)(key - comma - 1) > PEND_WS)
				cut(w, comma + 1 + PEND_WS, key);
		}
		p = ws_end(p, e);
		if (p >= e || *p != ':')
			return wfail(w, JSON_E_SYNTAX);
		p = ws_end(p + 1, e);
		if ((p = wvalue(w, p, m != 0 && !drop ? child : 0, s + 1,
		    depth)) == NULL)
			return NULL;
		p = ws_end(p, e);
		if (drop) {
			w->removed++;
			cut(w, comma != NULL ? comma : key, p);
		} else {
			kept = true;
		}
		if (p >= e)
			return wfail(w, JSON_E_SYNTAX);
		if (*p == '}')
			return p + 1;
		if (*p != ',')
			return wfail(w, JSON_E_SYNTAX);
		comma = p;
		p = ws_end(p + 1, e);
	}
}

static const char *
warray(struct whole *w, const char *p, uint64_t m, unsigned s,
    unsigned depth)
{
	const char *e = w->end;

	p = ws_end(p + 1, e);
	if (p < e && *p == ']')
		return p + 1;
	for (;;) {
		if ((p = wvalue(w, p, m, s, depth)) == NULL)
			return NULL;
		p = ws_end(p, e);
		if (p >= e)
			return wfail(w, JSON_E_SYNTAX);
		if (*p == ']')
			return p + 1;
		if (*p != ',')
			return wfail(w, JSON_E_SYNTAX);
		p = ws_end(p + 1, e);
	}
}

/* The value at p (DEPTH containers open around it): its end. */
static const char *
wvalue(struct whole *w, const char *p, uint64_t m, unsigned s,
    unsigned depth)
{
	size_t n = (size_t)(w->end - p);
	ssize_t k;

	if (n == 0)
		return wfail(w, JSON_E_SYNTAX);
	switch (*p) {
	case '{':
	case '[':
		if (depth == JSCAN_DEPTH_MAX)
			return wfail(w, JSON_E_DEPTH);
		return *p == '{' ? wobject(w, p, m, s, depth + 1) :
		    warray(w, p, m, s, depth + 1);
	case '"':
		k = json_lex_string_quick(p, n, NULL);
		break;
	case 't':
	case 'f':
	case 'n':
		k = json_lex_literal(p, n);
		break;
	default:
		if (*p != '-' && (*p < '0' || *p > '9'))
			return wfail(w, JSON_E_SYNTAX);
		k = json_lex_number(p, n, true);
		break;
	}
	if (k <= 0)
		return wfail(w, k < 0 ? (int)k : JSON_E_SYNTAX);
	return p + k;
}

int
jstrip_whole(const struct jstrip_paths *ps, const char *p, size_t n,
    jstrip_emit emit, void *arg, uint64_t *removed)
{
	struct whole w = { ps, p + n, p, emit, arg, 0, 0 };
	const char *q = ws_end(p, p + n);

	*removed = 0;
	if (q == p + n || (*q != '{' && *q != '[')) {
		cut(&w, p + n, p + n);
		return w.err ? -1 : JSTRIP_NOT_JSON;
	}
	q = wvalue(&w, q, ps->n == 64 ? ~0ull : (1ull << ps->n) - 1, 0, 0);
	if (w.err == 1)
		return -1;
	if (q == NULL || ws_end(q, p + n) != p + n)
		return JSTRIP_INVALID;
	cut(&w, p + n, p + n);
	*removed = w.removed;
	return w.err ? -1 : JSTRIP_JSON;
}
