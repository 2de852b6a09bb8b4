#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"
#include "hex.h"

/* ---- parsing ----------------------------------------------------- */

static bool
name_ok(const char *s, size_t n, bool header)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (header ? !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c)) :
		    (c <= 0x20 || c >= 0x7f || c == '{' || c == '}' ||
		    c == '&' || c == '=' || c == '#'))
			return false;
	}
	return true;
}

/* The template "{...}" of N bytes at p (braces included) into *pt: 0, or
 * -1 when it is not one. */
static int
one(const char *p, size_t n, struct tmpl_part *pt)
{
	const char *in = p + 1;
	size_t k = n - 2;

	if (k == 8 && memcmp(in, "consumer", 8) == 0) {
		pt->src = TS_CONSUMER;
		return 0;
	}
	if (k == 1 && in[0] >= '1' && in[0] <= '9') {
		pt->src = TS_GROUP;
		pt->group = (unsigned)(in[0] - '0');
		return 0;
	}
	if (k > 6 && memcmp(in, "query.", 6) == 0 && name_ok(in + 6, k - 6,
	    false)) {
		pt->src = TS_QUERY;
		pt->s = in + 6;
		pt->len = k - 6;
		return 0;
	}
	if (k > 7 && memcmp(in, "header.", 7) == 0 && name_ok(in + 7, k - 7,
	    true)) {
		pt->src = TS_HEADER;
		pt->s = in + 7;
		pt->len = k - 7;
		return 0;
	}
	return -1;
}

int
tmpl_parse(const char *s, bool strict, struct tmpl **out, char *err,
    size_t errlen)
{
	struct tmpl *t;
	size_t n = strlen(s), i = 0, start = 0, cap = 1;
	const char *close;
	struct tmpl_part pt;

	*out = NULL;
	for (i = 0; i < n; i++)
		cap += s[i] == '{' ? 2 : 0;
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->part = calloc(cap, sizeof(*t->part))) == NULL ||
	    (t->text = strdup(s)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s = t->text;
	for (i = 0; i < n; i++) {
		if (s[i] != '{')
			continue;
		close = memchr(s + i, '}', n - i);
		memset(&pt, 0, sizeof(pt));
		if (close == NULL || memchr(s + i + 1, '{', (size_t)(close -
		    s) - i - 1) != NULL || one(s + i, (size_t)(close - s) - i + 1,
		    &pt) < 0) {
			if (!strict)
				continue;
			snprintf(err, errlen, "'%.*s' is not a template (use "
			    "{consumer}, {query.NAME}, {header.NAME} or {1}.."
			    "{9})", close != NULL ? (int)(close - s - i + 1) :
			    (int)(n - i), s + i);
			goto fail;
		}
		if (i > start)
			t->part[t->nparts++] = (struct tmpl_part){ TS_TEXT,
			    s + start, i - start, 0 };
		t->part[t->nparts++] = pt;
		if (pt.src == TS_CONSUMER)
			t->consumer = true;
		if (pt.src == TS_GROUP && pt.group > t->max_group)
			t->max_group = pt.group;
		i = (size_t)(close - s);
		start = i + 1;
	}
	if (n > start)
		t->part[t->nparts++] = (struct tmpl_part){ TS_TEXT, s + start,
		    n - start, 0 };
	*out = t;
	return 0;
fail:
	tmpl_free(t);
	return -1;
}

void
tmpl_free(struct tmpl *t)
{
	if (t == NULL)
		return;
	free(t->part);
	free(t->text);
	free(t);
}

bool
tmpl_plain(const struct tmpl *t)
{
	return t->nparts == 0 || (t->nparts == 1 && t->part[0].src == TS_TEXT);
}

/* ---- values ------------------------------------------------------ */

void
tmpl_env_init(struct tmpl_env *e, struct xctx *x)
{
	e->x = x;
	e->ngroups = -1;
}

/* A growing result in the arena: enough room is taken up front (a value
 * grows at most threefold when encoded). */
struct outb {
	char *p;
	size_t len;
};

static void
put_enc(struct outb *o, unsigned char c, enum tmpl_enc enc)
{
	static const char hex[] = "0123456789ABCDEF";
	bool plain = enc == TE_URL ?
	    ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == '~') : !(c < 0x20 || c == 0x7f);

	if (plain) {
		o->p[o->len++] = (char)c;
		return;
	}
	o->p[o->len++] = '%';
	o->p[o->len++] = hex[c >> 4];
	o->p[o->len++] = hex[c & 15];
}

/* v[0..n), decoded first when DECODE (%XX; '+' a space when PLUS). */
static void
put_value(struct outb *o, const char *v, size_t n, bool decode, bool plus,
    enum tmpl_enc enc)
{
	size_t i;
	int hi, lo;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (decode && c == '%' && i + 2 < n &&
		    (hi = hexval((unsigned char)v[i + 1])) >= 0 &&
		    (lo = hexval((unsigned char)v[i + 2])) >= 0) {
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		} else if (decode && plus && c == '+') {
			c = ' ';
		}
		put_enc(o, c, enc);
	}
}

/* The first NAME parameter of the query ("?a=1&b=2"): its raw value. */
static const char *
query_value(const struct xctx *x, const char *name, size_t nl, size_t *vl)
{
	const char *q = x->query, *end, *amp, *eq;
	size_t i = 1, n = x->query_len;

	if (q == NULL)
		return NULL;
	while (i < n) {
		amp = memchr(q + i, '&', n - i);
		end = amp != NULL ? amp : q + n;
		eq = memchr(q + i, '=', (size_t)(end - q) - i);
		if (eq == NULL)
			eq = end;
		if ((size_t)(eq - q) - i == nl && memcmp(q + i, name, nl) == 0) {
			*vl = eq == end ? 0 : (size_t)(end - eq) - 1;
			return eq == end ? end : eq + 1;
		}
		i = (size_t)(end - q) + 1;
	}
	return NULL;
}

static void
match_groups(struct tmpl_env *e)
{
	const struct xctx *x = e->x;
	pcre2_match_data *md;
	PCRE2_SIZE *ov;
	int rc, i;

	e->ngroups = 0;
	if (x->route == NULL || x->route->re == NULL || x->path == NULL ||
	    (md = pcre2_match_data_create(10, NULL)) == NULL)
		return;
	rc = pcre2_match(x->route->re, (PCRE2_SPTR)x->path, x->path_len, 0, 0,
	    md, NULL);
	if (rc == 0)
		rc = 10;	/* more groups than room: the first ten */
	if (rc > 0) {
		ov = pcre2_get_ovector_pointer(md);
		for (i = 0; i < 2 * rc; i++)
			e->ov[i] = ov[i];
		e->ngroups = rc;
	}
	pcre2_match_data_free(md);
}

/* The raw text of one value, and whether it is to be decoded. */
static const char *
value_of(const struct tmpl_part *pt, struct tmpl_env *e, size_t *n,
    bool *decode, bool *plus)
{
	const struct xctx *x = e->x;
	size_t i;

	*decode = *plus = false;
	switch (pt->src) {
	case TS_CONSUMER:
		*n = x->id.consumer_len;
		return x->id.consumer;
	case TS_QUERY:
		*decode = *plus = true;
		return query_value(x, pt->s, pt->len, n);
	case TS_HEADER:
		for (i = 0; i < x->nheaders; i++)
			if (http1_name_eq(x->headers[i].name,
			    x->headers[i].name_len, pt->s, pt->len)) {
				*n = x->headers[i].value_len;
				return x->headers[i].value;
			}
		return NULL;
	case TS_GROUP:
		if (e->ngroups < 0)
			match_groups(e);
		if ((int)pt->group >= e->ngroups ||
		    e->ov[2 * pt->group] == PCRE2_UNSET)
			return NULL;
		*decode = true;
		*n = e->ov[2 * pt->group + 1] - e->ov[2 * pt->group];
		return x->path + e->ov[2 * pt->group];
	default:
		*n = pt->len;
		return pt->s;
	}
}

char *
tmpl_expand(const struct tmpl *t, struct tmpl_env *e, enum tmpl_enc enc,
    size_t *len)
{
	struct outb o;
	const char *v;
	size_t cap = 1, n, i;
	bool decode, plus;

	for (i = 0; i < t->nparts; i++) {
		v = value_of(&t->part[i], e, &n, &decode, &plus);
		if (v != NULL)
			cap += t->part[i].src == TS_TEXT ? n : 3 * n;
	}
	if ((o.p = arena_alloc(&e->x->arena, cap)) == NULL)
		return NULL;
	o.len = 0;
	for (i = 0; i < t->nparts; i++) {
		const struct tmpl_part *pt = &t->part[i];
		v = value_of(pt, e, &n, &decode, &plus);
		if (v == NULL)
			continue;
		if (pt->src == TS_TEXT) {
			memcpy(o.p + o.len, v, n);
			o.len += n;
		} else {
			put_value(&o, v, n, decode, plus, enc);
		}
	}
	o.p[o.len] = '\0';
	*len = o.len;
	return o.p;
}
