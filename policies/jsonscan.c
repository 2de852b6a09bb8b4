#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"

/* What may come next. */
enum {
	S_VALUE,	/* a value (the root, after ':', after ',' in an array) */
	S_FIRST_ARR,	/* after '[': a value or ']' */
	S_FIRST_OBJ,	/* after '{': a key or '}' */
	S_KEY,		/* after ',' in an object: a key */
	S_COLON,	/* after a key */
	S_AFTER,	/* after a value: ',' or the closer */
	S_DONE,		/* the root value ended: only whitespace */
	S_FAILED,	/* not JSON */
};

void
jscan_init(struct jscan *s, unsigned max_depth)
{
	memset(s, 0, sizeof(*s));
	s->max_depth = max_depth == 0 || max_depth > JSCAN_DEPTH_MAX ?
	    JSCAN_DEPTH_MAX : max_depth;
	s->state = S_VALUE;
	s->part = JT_NONE;
}

void
jscan_free(struct jscan *s)
{
	free(s->keep);
	s->keep = NULL;
	s->nkeep = s->capkeep = 0;
}

static bool
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool
is_numchar(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' ||
	    c == 'e' || c == 'E';
}

static int
fail(struct jscan *s, int err)
{
	s->state = S_FAILED;
	s->part = JT_NONE;
	return err;
}

static int
keep_add(struct jscan *s, const char *p, size_t n)
{
	size_t cap;
	char *np;

	if (s->capkeep - s->nkeep < n) {
		cap = s->capkeep ? s->capkeep : 64;
		while (cap - s->nkeep < n)
			cap *= 2;
		if ((np = realloc(s->keep, cap)) == NULL)
			return JSON_E_NOMEM;
		s->keep = np;
		s->capkeep = cap;
	}
	memcpy(s->keep + s->nkeep, p, n);
	s->nkeep += n;
	return 0;
}

/* The state after a scalar value or a closer. */
static void
value_done(struct jscan *s)
{
	s->state = s->depth == 0 ? S_DONE : S_AFTER;
}

static int
piece(struct jscan_piece *pc, enum jscan_tok tok, size_t len, bool first,
    bool last)
{
	pc->tok = tok;
	pc->len = len;
	pc->first = first;
	pc->last = last;
	return 1;
}

/* A token is complete: the state moves on. */
static void
token_done(struct jscan *s, enum jscan_tok tok)
{
	s->part = JT_NONE;
	s->nkeep = 0;
	s->judged = 0;
	if (tok == JT_KEY)
		s->state = S_COLON;
	else
		value_done(s);
}

/*
 * A long string in progress keeps only what is not judged yet: cut it
 * where a string may end, judge the part before (the lexer on it with a
 * closing quote), and keep '"' and the rest. A place to cut is before a
 * plain character with no '\' in the 6 bytes before it (so not inside an
 * escape, \uXXXX included; an ASCII byte also never sits inside a UTF-8
 * sequence), or before a '\' that starts an escape other than \u (after
 * a high surrogate escape only \u is valid, and the text is refused
 * either way). 0, or a JSON_E_* code.
 */
static int
str_trim(struct jscan *s)
{
	char *k = s->keep;
	size_t c, lo, from, run;
	ssize_t r;
	char save;

	if (s->nkeep < 2 * JSCAN_KEEP)
		return 0;
	from = s->judged > 1 ? s->judged : 1;
	for (c = s->nkeep - 1; c > from; c--) {
		unsigned char ch = (unsigned char)k[c];
		if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"') {
			lo = c > 7 ? c - 6 : 1;
			if (memchr(k + lo, '\\', c - lo) == NULL)
				break;
		} else if (ch == '\\' && c + 1 < s->nkeep && k[c + 1] != 'u') {
			for (run = 0; c - run - 1 >= 1 && k[c - run - 1] == '\\';
			    run++)
				;
			if (run % 2 == 0)
				break;
		}
	}
	if (c <= from) {
		/* None since the last look: the next one starts about
		 * here (the last byte waits for the one after it). */
		s->judged = s->nkeep > 3 ? s->nkeep - 2 : 1;
		if (s->nkeep > JSCAN_TOKEN_MAX)
			return JSON_E_SIZE;
		return 0;
	}
	save = k[c];
	k[c] = '"';
	r = json_lex_string(k, c + 1, NULL);
	k[c] = save;
	if (r < 0)
		return (int)r;
	if (r != (ssize_t)c + 1)
		return JSON_E_SYNTAX;
	memmove(k + 1, k + c, s->nkeep - c);
	s->nkeep -= c - 1;
	s->judged = 1;
	return 0;
}

/* More bytes of a string (or key) in progress: up to its closing quote. */
static int
str_more(struct jscan *s, const char *p, size_t n, bool first,
    struct jscan_piece *pc)
{
	size_t i, j = n;
	bool end = false;
	ssize_t r;
	int rc;

	for (i = first ? 1 : 0; i < n; i++) {
		if (s->esc)
			s->esc = false;
		else if (p[i] == '\\')
			s->esc = true;
		else if (p[i] == '"') {
			j = i + 1;
			end = true;
			break;
		}
	}
	if ((rc = keep_add(s, p, j)) < 0)
		return fail(s, rc);
	r = json_lex_string(s->keep, s->nkeep, NULL);
	if (r < 0)
		return fail(s, (int)r);
	if (end != (r > 0) || (end && (size_t)r != s->nkeep))
		return fail(s, JSON_E_SYNTAX);
	piece(pc, (enum jscan_tok)s->part, j, first, end);
	if (end) {
		token_done(s, (enum jscan_tok)s->part);
		return 1;
	}
	if ((rc = str_trim(s)) < 0)
		return fail(s, rc);
	return 1;
}

/* More bytes of a number in progress: it ends at the first byte that
 * cannot belong to a number, or at the end of the text. */
static int
num_more(struct jscan *s, const char *p, size_t n, bool last, bool first,
    struct jscan_piece *pc)
{
	size_t j = 0;
	bool end;
	ssize_t r;
	int rc;

	while (j < n && is_numchar(p[j]))
		j++;
	end = j < n || last;
	if (s->nkeep + j > JSCAN_NUM_MAX)
		return fail(s, JSON_E_SIZE);
	if ((rc = keep_add(s, p, j)) < 0)
		return fail(s, rc);
	r = json_lex_number(s->keep, s->nkeep, end);
	if (r < 0)
		return fail(s, (int)r);
	if (end ? (size_t)r != s->nkeep : r != 0)
		return fail(s, JSON_E_SYNTAX);
	piece(pc, JT_NUMBER, j, first, end);
	if (end)
		token_done(s, JT_NUMBER);
	return 1;
}

/* More bytes of true / false / null in progress. */
static int
lit_more(struct jscan *s, const char *p, size_t n, bool first,
    struct jscan_piece *pc)
{
	size_t i;
	ssize_t r;
	int rc;

	for (i = 0; i < n; i++) {
		if ((rc = keep_add(s, p + i, 1)) < 0)
			return fail(s, rc);
		r = json_lex_literal(s->keep, s->nkeep);
		if (r < 0)
			return fail(s, (int)r);
		if (r > 0) {
			piece(pc, JT_LITERAL, i + 1, first, true);
			token_done(s, JT_LITERAL);
			return 1;
		}
	}
	return piece(pc, JT_LITERAL, n, first, false);
}

/* A token in progress goes on with p. */
static int
cont(struct jscan *s, const char *p, size_t n, bool last,
    struct jscan_piece *pc)
{
	if (n == 0 && !last)
		return 0;
	switch (s->part) {
	case JT_NUMBER:
		return num_more(s, p, n, last, false, pc);
	case JT_LITERAL:
		if (n == 0)
			return fail(s, JSON_E_SYNTAX);
		return lit_more(s, p, n, false, pc);
	default:
		if (n == 0)
			return fail(s, JSON_E_SYNTAX);
		return str_more(s, p, n, false, pc);
	}
}

/* A scalar (or key) token starts at p[0]: whole, or its first piece. */
static int
scalar(struct jscan *s, enum jscan_tok tok, const char *p, size_t n,
    bool last, struct jscan_piece *pc)
{
	ssize_t k;

	switch (tok) {
	case JT_NUMBER:
		k = json_lex_number(p, n, last);
		break;
	case JT_LITERAL:
		k = json_lex_literal(p, n);
		break;
	default:
		k = json_lex_string(p, n, NULL);
		break;
	}
	if (k < 0)
		return fail(s, (int)k);
	if (k > 0) {
		piece(pc, tok, (size_t)k, true, true);
		token_done(s, tok);
		return 1;
	}
	/* Cut by the end of p: all of p is the token's so far. */
	s->part = (uint8_t)tok;
	s->esc = false;
	s->nkeep = 0;
	s->judged = 0;
	if (tok == JT_NUMBER)
		return num_more(s, p, n, last, true, pc);
	if (tok == JT_LITERAL)
		return lit_more(s, p, n, true, pc);
	return str_more(s, p, n, true, pc);
}

static int
push(struct jscan *s, bool obj, struct jscan_piece *pc)
{
	unsigned d = s->depth;

	if (d == s->max_depth)
		return fail(s, JSON_E_DEPTH);
	if (obj)
		s->obj[d / 8] |= (uint8_t)(1u << (d % 8));
	else
		s->obj[d / 8] &= (uint8_t)~(1u << (d % 8));
	s->depth++;
	s->state = obj ? S_FIRST_OBJ : S_FIRST_ARR;
	return piece(pc, obj ? JT_OBJ_BEGIN : JT_ARR_BEGIN, 1, true, true);
}

static int
pop(struct jscan *s, char c, struct jscan_piece *pc)
{
	bool obj = jscan_in_object(s);

	if (s->depth == 0 || (c != '}' && c != ']') || obj != (c == '}'))
		return fail(s, JSON_E_SYNTAX);
	s->depth--;
	value_done(s);
	return piece(pc, obj ? JT_OBJ_END : JT_ARR_END, 1, true, true);
}

static int
begin_value(struct jscan *s, const char *p, size_t n, bool last,
    struct jscan_piece *pc)
{
	switch (p[0]) {
	case '{':
		return push(s, true, pc);
	case '[':
		return push(s, false, pc);
	case '"':
		return scalar(s, JT_STRING, p, n, last, pc);
	case 't':
	case 'f':
	case 'n':
		return scalar(s, JT_LITERAL, p, n, last, pc);
	default:
		if (p[0] == '-' || (p[0] >= '0' && p[0] <= '9'))
			return scalar(s, JT_NUMBER, p, n, last, pc);
		return fail(s, JSON_E_SYNTAX);
	}
}

int
jscan_next(struct jscan *s, const char *p, size_t n, bool last,
    struct jscan_piece *pc)
{
	size_t i;
	char c;

	if (s->state == S_FAILED)
		return JSON_E_SYNTAX;
	if (s->part != JT_NONE)
		return cont(s, p, n, last, pc);
	if (n == 0) {
		if (!last || s->state == S_DONE)
			return 0;
		return fail(s, JSON_E_SYNTAX);
	}
	c = p[0];
	if (is_ws(c)) {
		for (i = 1; i < n && is_ws(p[i]); i++)
			;
		return piece(pc, JT_WS, i, true, true);
	}
	switch (s->state) {
	case S_COLON:
		if (c != ':')
			return fail(s, JSON_E_SYNTAX);
		s->state = S_VALUE;
		return piece(pc, JT_COLON, 1, true, true);
	case S_AFTER:
		if (c == ',') {
			s->state = jscan_in_object(s) ? S_KEY : S_VALUE;
			return piece(pc, JT_COMMA, 1, true, true);
		}
		return pop(s, c, pc);
	case S_FIRST_OBJ:
		if (c == '}')
			return pop(s, c, pc);
		/* fall through */
	case S_KEY:
		if (c != '"')
			return fail(s, JSON_E_SYNTAX);
		return scalar(s, JT_KEY, p, n, last, pc);
	case S_FIRST_ARR:
		if (c == ']')
			return pop(s, c, pc);
		return begin_value(s, p, n, last, pc);
	case S_VALUE:
		return begin_value(s, p, n, last, pc);
	default:
		return fail(s, JSON_E_SYNTAX);	/* after the root value */
	}
}

int
jscan_validate(const char *p, size_t n, unsigned max_depth)
{
	struct jscan s;
	struct jscan_piece pc;
	size_t off = 0;
	int rc;

	jscan_init(&s, max_depth);
	while ((rc = jscan_next(&s, p + off, n - off, true, &pc)) == 1)
		off += pc.len;
	jscan_free(&s);
	return rc;
}
