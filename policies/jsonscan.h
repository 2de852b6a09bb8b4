/*
 * jsonscan: a streaming JSON scanner for what body filters read (field
 * stripping, aggregation parts). The text arrives in pieces of any size,
 * one byte at a time included, and is cut into tokens as it comes,
 * without a copy of the whole.
 *
 * Tokens are judged by the strict reader's lexer (json.h:
 * json_lex_string, json_lex_number, json_lex_literal), so both readers
 * refuse the same tokens; the grammar (objects, arrays, commas, colons,
 * exactly one value and nothing but whitespace after it) and the nesting
 * bound are the scanner's own. Unlike json_parse it does not look for
 * duplicate keys: a filter passes them on as they came.
 *
 * Memory: a token cut by the end of a piece is kept until it ends. A long
 * string is judged as it grows and only its tail since the last point
 * where it may be cut is kept, so a string of any length costs about
 * JSCAN_KEEP bytes. Refused as too large (JSON_E_SIZE): a number over
 * JSCAN_NUM_MAX bytes, and a string with no point to cut it for
 * JSCAN_TOKEN_MAX bytes (a megabyte of nothing but \u escapes).
 */
#ifndef PORTICO_JSONSCAN_H
#define PORTICO_JSONSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

#define JSCAN_DEPTH_MAX	128		/* most nested containers */
#define JSCAN_KEEP	1024		/* a string's kept tail, about */
#define JSCAN_NUM_MAX	4096
#define JSCAN_TOKEN_MAX	(1u << 20)

enum jscan_tok {
	JT_WS,			/* whitespace between tokens */
	JT_OBJ_BEGIN,		/* '{' */
	JT_OBJ_END,		/* '}' */
	JT_ARR_BEGIN,		/* '[' */
	JT_ARR_END,		/* ']' */
	JT_COLON,
	JT_COMMA,
	JT_KEY,			/* an object member's name (a string) */
	JT_STRING,		/* scalar values */
	JT_NUMBER,
	JT_LITERAL,		/* true, false, null */
	JT_NONE = 0xff
};

/* One piece: LEN bytes of the input that all belong to one token (or a
 * run of whitespace). A token cut by the end of the input comes in
 * several pieces; FIRST marks its first, LAST its final one (which may
 * have no bytes: a number ends only where the next byte shows it). */
struct jscan_piece {
	enum jscan_tok tok;
	size_t len;
	bool first, last;
};

struct jscan {
	unsigned depth, max_depth;
	uint8_t state;			/* what may come next (jsonscan.c) */
	uint8_t part;			/* token in progress, or JT_NONE */
	bool esc;			/* in a string: after an unescaped '\' */
	uint8_t obj[JSCAN_DEPTH_MAX / 8];	/* a bit per level: object */
	char *keep;			/* the token in progress (malloc) */
	size_t nkeep, capkeep;
	size_t judged;			/* kept bytes already searched for a
					 * place to cut */
};

/* jscan_init: a scanner for one text nested at most MAX_DEPTH deep
 * (1..JSCAN_DEPTH_MAX). jscan_free: its kept bytes. */
void jscan_init(struct jscan *s, unsigned max_depth);
void jscan_free(struct jscan *s);

/*
 * jscan_next: the next piece of p[0..n), the input after what earlier
 * pieces took (LAST: nothing follows p). Returns 1 with *pc set (pc->len
 * bytes of p taken), 0 when p is used up (with LAST: the text is
 * complete and valid), or a JSON_E_* code: the text is not JSON (the
 * scanner stays failed).
 */
int jscan_next(struct jscan *s, const char *p, size_t n, bool last,
    struct jscan_piece *pc);

/* jscan_in_object: whether the innermost open container is an object. */
static inline bool
jscan_in_object(const struct jscan *s)
{
	unsigned d = s->depth;

	return d > 0 && (s->obj[(d - 1) / 8] >> ((d - 1) % 8) & 1);
}

/* jscan_validate: whether p[0..n) is one JSON text nested at most
 * MAX_DEPTH deep: 0 or a JSON_E_* code. */
int jscan_validate(const char *p, size_t n, unsigned max_depth);

#endif
