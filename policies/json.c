#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* ---- the lexer ------------------------------------------------- */

static int
hex4(const unsigned char *p, unsigned *v)
{
	unsigned i, d, r = 0;

	for (i = 0; i < 4; i++) {
		if (p[i] >= '0' && p[i] <= '9')
			d = p[i] - '0';
		else if (p[i] >= 'a' && p[i] <= 'f')
			d = p[i] - 'a' + 10;
		else if (p[i] >= 'A' && p[i] <= 'F')
			d = p[i] - 'A' + 10;
		else
			return -1;
		r = r << 4 | d;
	}
	*v = r;
	return 0;
}

/* One UTF-8 sequence at p (n bytes available): its length, 0 when it
 * may be cut at n, or JSON_E_UTF8 (overlong, surrogate, > U+10FFFF, a
 * bad continuation byte). */
static int
utf8_seq(const unsigned char *p, size_t n)
{
	unsigned c = p[0], need, i, cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		cp = c & 0x07;
	} else {
		return JSON_E_UTF8;	/* continuation, overlong lead, > f4 */
	}
	for (i = 1; i <= need; i++) {
		if (i >= n)
			return 0;
		if ((p[i] & 0xc0) != 0x80)
			return JSON_E_UTF8;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return JSON_E_UTF8;
	return (int)need + 1;
}

static size_t
utf8_len(unsigned cp)
{
	return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

static size_t
utf8_put(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Bytes a string may hold as they are: printable ASCII (and DEL) but
 * '"' and '\\'. */
const unsigned char json_plain[256] = {
#define R8(c)	[c] = 1, [c + 1] = 1, [c + 2] = 1, [c + 3] = 1, \
		[c + 4] = 1, [c + 5] = 1, [c + 6] = 1, [c + 7] = 1
	[0x20] = 1, [0x21] = 1, [0x23] = 1, [0x24] = 1, [0x25] = 1,
	[0x26] = 1, [0x27] = 1,
	R8(0x28), R8(0x30), R8(0x38), R8(0x40), R8(0x48), R8(0x50),
	[0x58] = 1, [0x59] = 1, [0x5a] = 1, [0x5b] = 1, [0x5d] = 1,
	[0x5e] = 1, [0x5f] = 1,
	R8(0x60), R8(0x68), R8(0x70), R8(0x78),
#undef R8
};

/*
 * The string at p[0] == '"': validate (and decode into out, when not
 * NULL: out has room for the decoded length, which never exceeds the
 * token's). Returns the token length, 0 when incomplete, or an error.
 */
static ssize_t
string_run(const char *s, size_t n, char *out, size_t *decoded)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 1, o = 0;
	unsigned cp, lo;
	int k;

	if (n == 0)
		return 0;
	if (p[0] != '"')
		return JSON_E_SYNTAX;
	while (i < n) {
		unsigned char c = p[i];
		if (out == NULL && json_plain[c]) {
			/* Runs of plain ASCII: nothing to check or decode. */
			size_t j = i + 1;
			while (j < n && json_plain[p[j]])
				j++;
			o += j - i;
			i = j;
			continue;
		}
		if (c == '"') {
			if (decoded != NULL)
				*decoded = o;
			return (ssize_t)(i + 1);
		}
		if (c < 0x20)
			return JSON_E_SYNTAX;
		if (c == '\\') {
			if (i + 1 >= n)
				return 0;
			switch (p[i + 1]) {
			case '"': case '\\': case '/':
				cp = p[i + 1];
				break;
			case 'b': cp = '\b'; break;
			case 'f': cp = '\f'; break;
			case 'n': cp = '\n'; break;
			case 'r': cp = '\r'; break;
			case 't': cp = '\t'; break;
			case 'u':
				if (i + 6 > n)
					return 0;
				if (hex4(p + i + 2, &cp) < 0)
					return JSON_E_SYNTAX;
				if (cp >= 0xdc00 && cp <= 0xdfff)
					return JSON_E_UTF8;	/* lone low */
				if (cp >= 0xd800 && cp <= 0xdbff) {
					/* A low surrogate escape must follow:
					 * judge each byte as soon as it is
					 * here. */
					if ((i + 6 < n && p[i + 6] != '\\') ||
					    (i + 7 < n && p[i + 7] != 'u'))
						return JSON_E_UTF8;
					if (i + 12 > n)
						return 0;
					if (hex4(p + i + 8, &lo) < 0 ||
					    lo < 0xdc00 || lo > 0xdfff)
						return JSON_E_UTF8;
					cp = 0x10000 + ((cp - 0xd800) << 10) +
					    (lo - 0xdc00);
					i += 6;
				}
				if (out != NULL)
					utf8_put(out + o, cp);
				o += utf8_len(cp);
				i += 6;
				continue;
			default:
				return JSON_E_SYNTAX;
			}
			if (out != NULL)
				out[o] = (char)cp;
			o++;
			i += 2;
			continue;
		}
		k = utf8_seq(p + i, n - i);
		if (k <= 0)
			return k;
		if (out != NULL)
			memcpy(out + o, p + i, (size_t)k);
		o += (size_t)k;
		i += (size_t)k;
	}
	return 0;
}

ssize_t
json_lex_string(const char *p, size_t n, size_t *decoded)
{
	return string_run(p, n, NULL, decoded);
}

ssize_t
json_decode_string(const char *p, size_t n, char *out)
{
	size_t d = 0;
	ssize_t k = string_run(p, n, out, &d);

	if (k == 0 || (k > 0 && (size_t)k != n))
		return JSON_E_SYNTAX;
	return k < 0 ? k : (ssize_t)d;
}

static bool
digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

ssize_t
json_lex_number(const char *s, size_t n, bool last)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	/* Running off the end mid-number: incomplete unless LAST, and then
	 * whether what is there is a whole number decides. */
#define MORE()	do { if (i >= n) goto end; } while (0)
	MORE();
	if (p[i] == '-') {
		i++;
		if (i >= n)
			return last ? JSON_E_SYNTAX : 0;
	}
	if (p[i] == '0') {
		i++;
		if (i < n && digit(p[i]))
			return JSON_E_SYNTAX;	/* leading zero */
	} else if (digit(p[i]) && p[i] != '0') {
		while (i < n && digit(p[i]))
			i++;
	} else {
		return JSON_E_SYNTAX;
	}
	MORE();
	if (p[i] == '.') {
		i++;
		if (i >= n)
			return last ? JSON_E_SYNTAX : 0;
		if (!digit(p[i]))
			return JSON_E_SYNTAX;
		while (i < n && digit(p[i]))
			i++;
		MORE();
	}
	if (p[i] == 'e' || p[i] == 'E') {
		i++;
		if (i < n && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i >= n)
			return last ? JSON_E_SYNTAX : 0;
		if (!digit(p[i]))
			return JSON_E_SYNTAX;
		while (i < n && digit(p[i]))
			i++;
		MORE();
	}
	return (ssize_t)i;
end:
	return last ? (ssize_t)i : 0;
#undef MORE
}

ssize_t
json_lex_literal(const char *p, size_t n)
{
	static const char *const lit[] = { "true", "false", "null" };
	size_t i, l, k;

	for (i = 0; i < 3; i++) {
		if (n == 0 || p[0] != lit[i][0])
			continue;
		l = strlen(lit[i]);
		k = n < l ? n : l;
		if (memcmp(p, lit[i], k) != 0)
			return JSON_E_SYNTAX;
		return k < l ? 0 : (ssize_t)l;
	}
	return JSON_E_SYNTAX;
}

/* ---- the tree parser --------------------------------------------- */

struct parser {
	const char *buf;
	size_t len, at;
	unsigned depth, max_depth;
	struct arena *a;
};

static void
skip_ws(struct parser *ps)
{
	while (ps->at < ps->len) {
		char c = ps->buf[ps->at];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return;
		ps->at++;
	}
}

static int value(struct parser *ps, struct json_value *v);

static int
string_value(struct parser *ps, const char **out, size_t *outlen)
{
	size_t dl = 0;
	ssize_t k;
	char *d;

	k = string_run(ps->buf + ps->at, ps->len - ps->at, NULL, &dl);
	if (k <= 0)
		return k == 0 ? JSON_E_SYNTAX : (int)k;
	if ((d = arena_alloc(ps->a, dl + 1)) == NULL)
		return JSON_E_NOMEM;
	string_run(ps->buf + ps->at, (size_t)k, d, &dl);
	d[dl] = '\0';
	*out = d;
	*outlen = dl;
	ps->at += (size_t)k;
	return 0;
}

/* Grow *arr (of *cap elements of SIZE bytes) in the arena. */
static int
grow(struct parser *ps, void **arr, size_t *cap, size_t n, size_t size)
{
	size_t ncap = *cap ? *cap * 2 : 4;
	void *p;

	if (n < *cap)
		return 0;
	if (ncap > SIZE_MAX / size || (p = arena_alloc(ps->a, ncap * size)) ==
	    NULL)
		return JSON_E_NOMEM;
	if (n > 0)
		memcpy(p, *arr, n * size);
	*arr = p;
	*cap = ncap;
	return 0;
}

static int
key_cmp(const void *a, const void *b)
{
	const struct json_member *x = *(const struct json_member *const *)a;
	const struct json_member *y = *(const struct json_member *const *)b;
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->key, y->key, n);

	if (c != 0)
		return c;
	return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* Whether two members share a key: sorted, so n log n even for an
 * object built to be slow. */
static int
has_dup(struct parser *ps, struct json_member *m, size_t n)
{
	struct json_member **ix;
	size_t i;

	if (n < 2)
		return 0;
	if (n <= 8) {
		size_t j;
		for (i = 0; i < n; i++)
			for (j = i + 1; j < n; j++)
				if (m[i].key_len == m[j].key_len &&
				    memcmp(m[i].key, m[j].key, m[i].key_len) == 0)
					return 1;
		return 0;
	}
	if ((ix = arena_alloc(ps->a, n * sizeof(*ix))) == NULL)
		return JSON_E_NOMEM;
	for (i = 0; i < n; i++)
		ix[i] = &m[i];
	qsort(ix, n, sizeof(*ix), key_cmp);
	for (i = 1; i < n; i++)
		if (key_cmp(&ix[i - 1], &ix[i]) == 0)
			return 1;
	return 0;
}

static int
object(struct parser *ps, struct json_value *v)
{
	struct json_member *m = NULL;
	size_t n = 0, cap = 0;
	int rc;

	ps->at++;			/* '{' */
	skip_ws(ps);
	if (ps->at < ps->len && ps->buf[ps->at] == '}') {
		ps->at++;
		goto done;
	}
	for (;;) {
		if ((rc = grow(ps, (void **)&m, &cap, n, sizeof(*m))) < 0)
			return rc;
		skip_ws(ps);
		if (ps->at >= ps->len || ps->buf[ps->at] != '"')
			return JSON_E_SYNTAX;
		if ((rc = string_value(ps, &m[n].key, &m[n].key_len)) < 0)
			return rc;
		skip_ws(ps);
		if (ps->at >= ps->len || ps->buf[ps->at] != ':')
			return JSON_E_SYNTAX;
		ps->at++;
		if ((rc = value(ps, &m[n].v)) < 0)
			return rc;
		n++;
		skip_ws(ps);
		if (ps->at >= ps->len)
			return JSON_E_SYNTAX;
		if (ps->buf[ps->at] == '}') {
			ps->at++;
			break;
		}
		if (ps->buf[ps->at] != ',')
			return JSON_E_SYNTAX;
		ps->at++;
	}
	if ((rc = has_dup(ps, m, n)) != 0)
		return rc < 0 ? rc : JSON_E_DUPKEY;
done:
	v->type = JSON_OBJECT;
	v->u.obj.m = m;
	v->u.obj.n = n;
	return 0;
}

static int
array(struct parser *ps, struct json_value *v)
{
	struct json_value *items = NULL;
	size_t n = 0, cap = 0;
	int rc;

	ps->at++;			/* '[' */
	skip_ws(ps);
	if (ps->at < ps->len && ps->buf[ps->at] == ']') {
		ps->at++;
		goto done;
	}
	for (;;) {
		if ((rc = grow(ps, (void **)&items, &cap, n, sizeof(*items))) <
		    0)
			return rc;
		if ((rc = value(ps, &items[n])) < 0)
			return rc;
		n++;
		skip_ws(ps);
		if (ps->at >= ps->len)
			return JSON_E_SYNTAX;
		if (ps->buf[ps->at] == ']') {
			ps->at++;
			break;
		}
		if (ps->buf[ps->at] != ',')
			return JSON_E_SYNTAX;
		ps->at++;
	}
done:
	v->type = JSON_ARRAY;
	v->u.arr.v = items;
	v->u.arr.n = n;
	return 0;
}

static int
value(struct parser *ps, struct json_value *v)
{
	const char *p;
	ssize_t k;
	int rc;

	skip_ws(ps);
	if (ps->at >= ps->len)
		return JSON_E_SYNTAX;
	p = ps->buf + ps->at;
	switch (*p) {
	case '{':
	case '[':
		if (ps->depth == ps->max_depth)
			return JSON_E_DEPTH;
		ps->depth++;
		rc = *p == '{' ? object(ps, v) : array(ps, v);
		ps->depth--;
		return rc;
	case '"':
		v->type = JSON_STRING;
		return string_value(ps, &v->u.str.p, &v->u.str.len);
	case 't':
	case 'f':
	case 'n':
		k = json_lex_literal(p, ps->len - ps->at);
		if (k <= 0)
			return JSON_E_SYNTAX;
		v->type = *p == 't' ? JSON_TRUE : *p == 'f' ? JSON_FALSE :
		    JSON_NULL;
		ps->at += (size_t)k;
		return 0;
	default:
		k = json_lex_number(p, ps->len - ps->at, true);
		if (k <= 0)
			return JSON_E_SYNTAX;
		v->type = JSON_NUMBER;
		v->u.num.text = p;
		v->u.num.len = (size_t)k;
		ps->at += (size_t)k;
		return 0;
	}
}

int
json_parse(const char *buf, size_t len, const struct json_limits *lim,
    struct arena *a, struct json_value *out, size_t *err_at)
{
	struct parser ps = { buf, len, 0, 0, lim->depth, a };
	char *copy;
	int rc;

	if (len > lim->bytes) {
		rc = JSON_E_SIZE;
		ps.at = lim->bytes;
		goto fail;
	}
	/* Numbers keep their text: it must outlive the caller's buffer. */
	if ((copy = arena_alloc(a, len + 1)) == NULL) {
		rc = JSON_E_NOMEM;
		goto fail;
	}
	memcpy(copy, buf, len);
	copy[len] = '\0';
	ps.buf = copy;
	if ((rc = value(&ps, out)) < 0)
		goto fail;
	skip_ws(&ps);
	if (ps.at != len) {
		rc = JSON_E_SYNTAX;	/* trailing bytes */
		goto fail;
	}
	return 0;
fail:
	if (err_at != NULL)
		*err_at = ps.at;
	return rc;
}

/* ---- reading the tree -------------------------------------------- */

const struct json_value *
json_get(const struct json_value *o, const char *key)
{
	size_t i, kl = strlen(key);

	if (o == NULL || o->type != JSON_OBJECT)
		return NULL;
	for (i = 0; i < o->u.obj.n; i++)
		if (o->u.obj.m[i].key_len == kl &&
		    memcmp(o->u.obj.m[i].key, key, kl) == 0)
			return &o->u.obj.m[i].v;
	return NULL;
}

bool
json_str_eq(const struct json_value *v, const char *s)
{
	size_t n = strlen(s);

	return v != NULL && v->type == JSON_STRING && v->u.str.len == n &&
	    memcmp(v->u.str.p, s, n) == 0;
}

bool
json_int(const struct json_value *v, int64_t *out)
{
	const char *p;
	size_t i, n;
	bool neg;
	uint64_t r = 0, lim;

	if (v == NULL || v->type != JSON_NUMBER)
		return false;
	p = v->u.num.text;
	n = v->u.num.len;
	neg = p[0] == '-';
	i = neg;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < n; i++) {
		if (!digit((unsigned char)p[i]))
			return false;	/* fraction or exponent */
		if (r > (lim - (uint64_t)(p[i] - '0')) / 10)
			return false;
		r = r * 10 + (uint64_t)(p[i] - '0');
	}
	*out = neg ? (int64_t)(0 - r) : (int64_t)r;
	return true;
}

bool
json_number(const struct json_value *v, double *out)
{
	char *end;

	if (v == NULL || v->type != JSON_NUMBER)
		return false;
	errno = 0;
	/* The text is NUL-ended after the whole document; strtod stops at
	 * the number's end, which the lexer already fixed. */
	*out = strtod(v->u.num.text, &end);
	return end == v->u.num.text + v->u.num.len && errno != ERANGE;
}

const char *
json_strerror(int err)
{
	switch (err) {
	case JSON_E_SYNTAX: return "not valid JSON";
	case JSON_E_DEPTH: return "nested too deeply";
	case JSON_E_DUPKEY: return "duplicate object key";
	case JSON_E_UTF8: return "invalid UTF-8";
	case JSON_E_SIZE: return "too large";
	case JSON_E_NOMEM: return "out of memory";
	default: return "error";
	}
}
