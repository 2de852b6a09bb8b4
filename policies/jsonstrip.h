/*
 * jsonstrip: named members removed from a JSON text as it streams
 * (transform.response.strip_fields). The text is read by the streaming
 * scanner (jsonscan.h) and written out piece by piece as it comes: only
 * a member name that may be stripped is held until it ends, and the
 * comma before a member until the member is known to stay.
 *
 * Paths: "debug" is a member of the root object; "payment.card_number"
 * a member of the root's "payment" object. Arrays are passed through at
 * any depth, so "items.cost" strips "cost" from every object of an
 * "items" array (and of arrays in it), and a root array of objects has
 * each element stripped as a root object. Names compare exactly, after
 * escapes are decoded (so "deb\u0075g" is "debug"); a name holding '.'
 * cannot be named. Every member with a matching name goes, duplicates
 * included. What stays is written byte for byte as it came; the output
 * of a valid text is a valid text.
 *
 * A text whose first byte (after whitespace) does not open an object or
 * an array is passed unchanged (JSTRIP_NOT_JSON); a text found invalid
 * midway is passed unchanged from the point where it went wrong
 * (JSTRIP_INVALID): what was removed before stays removed.
 */
#ifndef PORTICO_JSONSTRIP_H
#define PORTICO_JSONSTRIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jsonscan.h"

#define JSTRIP_PATHS_MAX	64	/* strip_fields entries */
#define JSTRIP_SEGS_MAX		16	/* names in one path */
#define JSTRIP_NAME_MAX		256	/* bytes in one name */

struct jstrip_path {
	unsigned nseg;
	const char *seg[JSTRIP_SEGS_MAX];
	size_t seglen[JSTRIP_SEGS_MAX];
};

struct jstrip_paths {
	unsigned n;
	size_t maxseg;			/* longest name */
	struct jstrip_path p[JSTRIP_PATHS_MAX];
	char *text;			/* the names, one allocation */
};

/* jstrip_compile: the paths of FIELDS[0..n). 0, or -1 with the reason in
 * err (an empty name, "a..b", too many paths or names). */
int jstrip_compile(char *const *fields, size_t n, struct jstrip_paths **out,
    char *err, size_t errlen);
void jstrip_paths_free(struct jstrip_paths *p);

/* Where output goes: 0, or -1 (out of memory: the strip fails). */
typedef int (*jstrip_emit)(void *arg, const char *p, size_t n);

enum jstrip_verdict {
	JSTRIP_JSON,		/* an object or array, valid so far */
	JSTRIP_NOT_JSON,	/* passed unchanged */
	JSTRIP_INVALID,		/* passed unchanged from where it went wrong */
};

struct jstrip {
	struct jscan sc;
	const struct jstrip_paths *paths;
	jstrip_emit emit;
	void *arg;
	enum jstrip_verdict verdict;
	bool started;			/* the root's first byte was seen */
	bool dropping;			/* inside a member being removed */
	bool skip_ws;			/* whitespace after a removed member */
	bool pending;			/* a ',' (and whitespace) held */
	bool holding;			/* a member name held */
	bool next_set;			/* next_mask applies to the next value */
	unsigned depth;			/* open containers */
	unsigned drop_depth;		/* the object the removed member is in */
	uint64_t next_mask;		/* paths going on below the kept name */
	uint64_t mask[JSCAN_DEPTH_MAX];	/* paths alive in each container */
	uint8_t seg[JSCAN_DEPTH_MAX];	/* the name index keys compare to */
	uint8_t kept[JSCAN_DEPTH_MAX / 8];	/* an object wrote a member */
	uint8_t obj[JSCAN_DEPTH_MAX / 8];	/* a container is an object */
	const char *run_p;		/* input going out as it came, not yet */
	size_t run_n;			/* written (one call for a run) */
	char pend[64];
	const char *pend_in;		/* the held ',' in this call's input,
					 * or NULL: in pend[] */
	size_t npend;
	char *hold;			/* the name's bytes (malloc) */
	size_t nhold, caphold;
	uint64_t removed;		/* members removed */
};

/* jstrip_init: strip PATHS from one text, writing through EMIT(ARG).
 * jstrip_free: what it holds. */
void jstrip_init(struct jstrip *js, const struct jstrip_paths *paths,
    jstrip_emit emit, void *arg);
void jstrip_free(struct jstrip *js);
/* jstrip_feed: the next bytes p[0..n) of the text (LAST: the end). The
 * verdict so far (enum jstrip_verdict), or -1 when EMIT failed. */
int jstrip_feed(struct jstrip *js, const char *p, size_t n, bool last);

/* jstrip_whole: the same for a text all in memory, in one pass many
 * times faster: the same verdict and, but for JSTRIP_INVALID (where what
 * was written is to be dropped), the same output; *removed the members
 * removed. -1 when EMIT failed. */
int jstrip_whole(const struct jstrip_paths *ps, const char *p, size_t n,
    jstrip_emit emit, void *arg, uint64_t *removed);

#endif
