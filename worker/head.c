#include <string.h>

#include "head.h"

#define NAME_IS(h, lit)	http1_header_is((h), lit)

void
hb_edits(struct hb *b, const struct policy_edits *e)
{
	unsigned i;

	for (i = 0; e != NULL && i < e->nadd; i++) {
		hb_put(b, e->add[i], e->add_len[i]);
		hb_lit(b, "\r\n");
	}
}

static bool
protected_name(const struct http1_token *t)
{
	return http1_name_eq(t->p, t->len, "host", 4) ||
	    http1_name_eq(t->p, t->len, "content-length", 14) ||
	    http1_name_eq(t->p, t->len, "transfer-encoding", 17);
}

int
head_conn_tokens(const struct http1_header *h, size_t nh, bool any,
    struct conn_tokens *ct)
{
	int i, k = 0;

	ct->n = 0;
	if (!any)
		return 0;
	ct->n = http1_connection_tokens(h, nh, ct->t, HEAD_CONN_TOKENS);
	if (ct->n < 0)
		return -1;
	for (i = 0; i < ct->n; i++)
		if (!protected_name(&ct->t[i]))
			ct->t[k++] = ct->t[i];
	ct->n = k;
	return 0;
}

bool
head_hop_by_hop(const struct http1_header *h, const struct conn_tokens *ct)
{
	int i;

	switch (h->name_len) {
	case 2:
		if (NAME_IS(h, "te"))
			return true;
		break;
	case 7:
		if (NAME_IS(h, "upgrade") || NAME_IS(h, "trailer"))
			return true;
		break;
	case 10:
		if (NAME_IS(h, "connection") || NAME_IS(h, "keep-alive"))
			return true;
		break;
	case 16:
		if (NAME_IS(h, "proxy-connection"))
			return true;
		break;
	case 17:
		if (NAME_IS(h, "transfer-encoding"))
			return true;
		break;
	case 18:
		if (NAME_IS(h, "proxy-authenticate"))
			return true;
		break;
	case 19:
		if (NAME_IS(h, "proxy-authorization"))
			return true;
		break;
	}
	for (i = 0; i < ct->n; i++)
		if (http1_name_eq(h->name, h->name_len, ct->t[i].p,
		    ct->t[i].len))
			return true;
	return false;
}

bool
head_edited_away(const struct http1_header *h, const struct policy_edits *e)
{
	unsigned i;

	if (e == NULL)
		return false;
	for (i = 0; i < e->nremove; i++)
		if (http1_name_eq(h->name, h->name_len, e->remove[i],
		    e->remove_len[i]))
			return true;
	for (i = 0; i < e->nadd; i++) {
		const char *colon = memchr(e->add[i], ':', e->add_len[i]);
		if (colon != NULL && http1_name_eq(h->name, h->name_len,
		    e->add[i], colon - e->add[i]))
			return true;
	}
	return false;
}
