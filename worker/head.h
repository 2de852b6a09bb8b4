/*
 * head: building HTTP/1.1 heads with a bound, and the header rules both
 * directions share: hop-by-hop names (with what a Connection header
 * lists), policy edits.
 */
#ifndef PORTICO_HEAD_H
#define PORTICO_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../policies/policy.h"
#include "http1.h"

/* A head being built into p[0..cap); `ok` turns false on overflow and
 * stays so (callers check once at the end). */
struct hb {
	char *p;
	size_t len, cap;
	bool ok;
};

/* Inline: heads are built on every request, a call per piece shows. */
static inline void
hb_put(struct hb *b, const char *s, size_t n)
{
	if (!b->ok || b->len + n > b->cap) {
		b->ok = false;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

#define hb_lit(b, s)	hb_put((b), (s), sizeof(s) - 1)

static inline void
hb_u64(struct hb *b, uint64_t v)
{
	char tmp[24];
	int i = sizeof(tmp);

	do {
		tmp[--i] = '0' + v % 10;
		v /= 10;
	} while (v > 0);
	hb_put(b, tmp + i, sizeof(tmp) - i);
}

/* hb_header: "NAME: VALUE\r\n" */
static inline void
hb_header(struct hb *b, const char *n, size_t nl, const char *v, size_t vl)
{
	hb_put(b, n, nl);
	hb_lit(b, ": ");
	hb_put(b, v, vl);
	hb_lit(b, "\r\n");
}
/* hb_edits: the edits' added lines, each with its CRLF. */
void hb_edits(struct hb *b, const struct policy_edits *e);

/* Most names a Connection header may list: a longer list is refused
 * rather than forwarded with headers the gateway could not track. */
#define HEAD_CONN_TOKENS 32

struct conn_tokens {
	struct http1_token t[HEAD_CONN_TOKENS];
	int n;
};

/* head_conn_tokens: the names the Connection headers list, minus those no
 * list may remove (Host, Content-Length, Transfer-Encoding: framing is the
 * gateway's own); ANY says whether there is a Connection header at all
 * (the parser knows). 0, or -1 when there are more than
 * HEAD_CONN_TOKENS. */
int head_conn_tokens(const struct http1_header *h, size_t nh, bool any,
    struct conn_tokens *ct);
/* head_hop_by_hop: whether H is hop-by-hop (RFC 9110 7.6.1) or listed. */
bool head_hop_by_hop(const struct http1_header *h,
    const struct conn_tokens *ct);
/* head_edited_away: whether the edits remove H (or replace it by adding
 * its name). */
bool head_edited_away(const struct http1_header *h,
    const struct policy_edits *e);

#endif
