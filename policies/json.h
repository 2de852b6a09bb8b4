/*
 * json: a strict JSON reader (RFC 8259) for what the gateway reads
 * itself: JWT headers and claims, JWK sets, and (with the aggregation
 * work) upstream bodies.
 *
 * Strict, because a token two readers understand differently is an
 * attack: duplicate object keys, nesting deeper than the bound, invalid
 * UTF-8 (overlongs, surrogates, bytes past U+10FFFF), unescaped control
 * characters, lone surrogate escapes, leading zeros, a lone '-', '.'
 * without digits, an empty exponent, trailing bytes after the value, and
 * a text over the size bound are all refused. Numbers keep their exact
 * text; json_int gives the exact integer when the text is one (no
 * fraction, no exponent, within int64), so "exp": 1e10 or 1.5 are never
 * silently rounded.
 *
 * Memory: the tree and decoded strings come from an arena (arena.h) and
 * live as long as it; the input may be dropped after json_parse.
 *
 * Two layers share one lexer: json_parse builds a tree of a complete text
 * (what JWTs and JWKS need); the streaming scanner of body filters
 * (jsonscan.h: strip_fields, aggregation parts) reuses the same string,
 * number and literal rules (json_lex_*), so both readers refuse the same
 * tokens.
 */
#ifndef PORTICO_JSON_H
#define PORTICO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "arena.h"

/* Errors (negative). */
#define JSON_E_SYNTAX	(-1)	/* not JSON */
#define JSON_E_DEPTH	(-2)	/* nested deeper than the bound */
#define JSON_E_DUPKEY	(-3)	/* an object repeats a key */
#define JSON_E_UTF8	(-4)	/* invalid UTF-8 or a lone surrogate */
#define JSON_E_SIZE	(-5)	/* text over the size bound */
#define JSON_E_NOMEM	(-6)	/* the arena is out of memory */

enum json_type {
	JSON_NULL,
	JSON_FALSE,
	JSON_TRUE,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT,
};

struct json_member;

struct json_value {
	enum json_type type;
	union {
		struct {
			const char *p;		/* decoded UTF-8, NUL-ended */
			size_t len;		/* may hold NUL (from \u0000) */
		} str;
		struct {
			const char *text;	/* exactly as written */
			size_t len;
		} num;
		struct {
			struct json_value *v;
			size_t n;
		} arr;
		struct {
			struct json_member *m;	/* in document order */
			size_t n;
		} obj;
	} u;
};

struct json_member {
	const char *key;		/* decoded, NUL-ended */
	size_t key_len;
	struct json_value v;
};

struct json_limits {
	unsigned depth;			/* most nested arrays/objects, >= 1 */
	size_t bytes;			/* longest text */
};

/*
 * json_parse: the one JSON text buf[0..len) (surrounding whitespace
 * allowed) into *out, memory from A. Returns 0, or a JSON_E_* code with
 * *err_at (when not NULL) set to the offset of the offending byte.
 */
int json_parse(const char *buf, size_t len, const struct json_limits *lim,
    struct arena *a, struct json_value *out, size_t *err_at);

/* json_get: the member KEY of object O (exact, case-sensitive), or NULL
 * (also when O is not an object). */
const struct json_value *json_get(const struct json_value *o,
    const char *key);
/* json_str_eq: whether V is a string equal to S (exactly). */
bool json_str_eq(const struct json_value *v, const char *s);
/* json_int: V as an exact integer: a number written without fraction or
 * exponent that fits int64. */
bool json_int(const struct json_value *v, int64_t *out);
/* json_number: V as a double (any valid number). */
bool json_number(const struct json_value *v, double *out);
/* json_strerror: a word for a JSON_E_* code. */
const char *json_strerror(int err);

/*
 * The lexer both readers use. Each looks at p[0..n) from a token's first
 * byte and returns the token's length, 0 when it may continue past n
 * (incomplete), or a JSON_E_* code.
 */
/* json_lex_string: a string token from its opening quote; *decoded (when
 * not NULL) gets the length of its decoded UTF-8. */
ssize_t json_lex_string(const char *p, size_t n, size_t *decoded);
/* json_decode_string: a whole string token p[0..n) (as json_lex_string
 * measured it) decoded into OUT, which has room for n bytes; returns the
 * decoded length, or a JSON_E_* code. */
ssize_t json_decode_string(const char *p, size_t n, char *out);
/* json_plain: the bytes a string holds as they are (printable ASCII but
 * '"' and '\\'). json_lex_string_quick: json_lex_string with the common
 * case (nothing but plain bytes to the closing quote) inline. */
extern const unsigned char json_plain[256];

static inline ssize_t
json_lex_string_quick(const char *p, size_t n, size_t *decoded)
{
	size_t i = 1;

	if (n > 0 && p[0] == '"') {
		while (i < n && json_plain[(unsigned char)p[i]])
			i++;
		if (i < n && p[i] == '"') {
			if (decoded != NULL)
				*decoded = i - 1;
			return (ssize_t)i + 1;
		}
	}
	return json_lex_string(p, n, decoded);
}

/* json_lex_number: a number token; since a number has no terminator,
 * LAST says whether more bytes may follow p[n - 1]. */
ssize_t json_lex_number(const char *p, size_t n, bool last);
/* json_lex_literal: true, false or null. */
ssize_t json_lex_literal(const char *p, size_t n);

#endif
