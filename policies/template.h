/*
 * template: values from the request put into text the gateway sends on:
 * aggregate call paths and add_headers values.
 *
 *   {consumer}       the verified consumer (auth)
 *   {query.NAME}     the first NAME parameter of the query, decoded
 *                    (%XX and '+' for a space)
 *   {header.NAME}    the first NAME request header's value
 *   {1} .. {9}       a group of the route's match regex, on the
 *                    normalised path, %XX decoded
 *
 * A value missing (no such parameter, header or group) is empty. Each
 * value is encoded for where it lands: in a URL every byte but the
 * unreserved ones (A-Z a-z 0-9 - . _ ~) becomes %XX, so a consumer named
 * "../admin" or "a&b=c" stays one path segment or one parameter value;
 * in a header value only control bytes become %XX.
 *
 * Parsing: in a path (STRICT) every '{' must open one of these; in a
 * header value an unknown "{...}" is kept as text.
 */
#ifndef PORTICO_TEMPLATE_H
#define PORTICO_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "policy.h"

enum tmpl_src { TS_TEXT, TS_CONSUMER, TS_QUERY, TS_HEADER, TS_GROUP };

struct tmpl_part {
	enum tmpl_src src;
	const char *s;			/* TS_TEXT: the text; QUERY, HEADER:
					 * the name */
	size_t len;
	unsigned group;			/* TS_GROUP */
};

struct tmpl {
	unsigned nparts;
	bool consumer;			/* uses {consumer} */
	unsigned max_group;		/* highest {N}, 0 = none */
	struct tmpl_part *part;
	char *text;			/* the source, parts point into it */
};

enum tmpl_enc {
	TE_URL,			/* a path or a query: %XX but unreserved */
	TE_HEADER,		/* a header value: %XX for control bytes */
};

/* tmpl_parse: S compiled. 0, or -1 with the reason in err. */
int tmpl_parse(const char *s, bool strict, struct tmpl **out, char *err,
    size_t errlen);
void tmpl_free(struct tmpl *t);
/* tmpl_plain: whether T is text only (nothing to substitute). */
bool tmpl_plain(const struct tmpl *t);

/* The values of one exchange; the groups are matched once, when first
 * needed. */
struct tmpl_env {
	struct xctx *x;
	int ngroups;			/* -1: not matched yet */
	size_t ov[20];			/* group offsets in x->path */
};

void tmpl_env_init(struct tmpl_env *e, struct xctx *x);
/* tmpl_expand: T with E's values, encoded by ENC, NUL-terminated in the
 * exchange's arena (*len its length), or NULL when out of memory. */
char *tmpl_expand(const struct tmpl *t, struct tmpl_env *e,
    enum tmpl_enc enc, size_t *len);

#endif
