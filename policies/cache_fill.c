/*
 * cache_fill: a response on its way into the store (cache-int.h): for a
 * miss, it follows the exchange's response as a body filter; for a
 * background refresh, a fetch of its own. It decides whether the
 * response may be stored (RFC 9111 3), keeps its headers and body, and
 * at the end stores it or leaves a note for the waiters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "../master/log.h"
#include "cache-int.h"
#include "cache_http.h"

#define PASS_MS		10000	/* "not storable": to the origin, no wait */
#define FAILED_MS	1000	/* the fetch failed: to the origin, no wait */
#define ETAG_MAX	256
#define DESC_MAX	4096

enum st_state {
	S_NEW,		/* nothing heard yet */
	S_TAKING,	/* storable: the body is being kept */
	S_PASS,		/* not storable by its headers, or too big */
	S_FAILED,	/* an error, or a status not stored */
};

struct storer {
	struct cr *cr;
	struct cw *w;
	char key0[CACHE_KEY_MAX], lkey[CACHE_KEY_MAX];
	size_t k0len, lklen;
	uint64_t h0;
	struct cache_lock lock;
	bool locked;
	struct rq q;			/* copies, in reqbuf */
	char *reqbuf;
	struct http1_header *rh;
	enum st_state state;
	int status;
	struct cache_fresh fr;
	uint64_t resp_ns;
	char *hdrs;			/* the stored header lines */
	size_t hdrs_len, hdrs_cap;
	char etag[ETAG_MAX];
	size_t etag_len;
	char vary[VARY_MAX];		/* upstream's names not configured */
	size_t vary_len;
	char *body;
	size_t blen, bcap;
};

/* A storer for the exchange X's request (copied: it may outlive X),
 * holding LOCK when LOCKED. NULL when out of memory. */
struct storer *
cache_fill_new(struct cr *cr, struct cs *cs, const struct xctx *x,
    const struct cache_lock *lock, bool locked)
{
	struct storer *s;
	struct rq q;
	size_t need, i;
	char *p;

	cache_rq_of(x, &q);
	need = q.plen + q.qlen + q.hlen + q.clen;
	for (i = 0; i < q.nh; i++)
		need += q.h[i].name_len + q.h[i].value_len;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->reqbuf = malloc(need + 1);
	s->rh = calloc(q.nh + 1, sizeof(*s->rh));
	if (s->reqbuf == NULL || s->rh == NULL) {
		free(s->reqbuf);
		free(s->rh);
		free(s);
		return NULL;
	}
	p = s->reqbuf;
#define COPY(dst, src, n) do {						\
	memcpy(p, (src), (n));						\
	(dst) = p;							\
	p += (n);							\
} while (0)
	COPY(s->q.path, q.path, q.plen);
	COPY(s->q.query, q.query != NULL ? q.query : "", q.qlen);
	COPY(s->q.host, q.host != NULL ? q.host : "", q.hlen);
	COPY(s->q.consumer, q.consumer != NULL ? q.consumer : "", q.clen);
	for (i = 0; i < q.nh; i++) {
		COPY(s->rh[i].name, q.h[i].name, q.h[i].name_len);
		s->rh[i].name_len = q.h[i].name_len;
		COPY(s->rh[i].value, q.h[i].value, q.h[i].value_len);
		s->rh[i].value_len = q.h[i].value_len;
	}
#undef COPY
	s->q.plen = q.plen;
	s->q.qlen = q.qlen;
	s->q.hlen = q.hlen;
	s->q.clen = q.clen;
	s->q.h = s->rh;
	s->q.nh = q.nh;
	s->cr = cr;
	s->w = cr->w;
	memcpy(s->key0, cs->key0, cs->k0len);
	s->k0len = cs->k0len;
	s->h0 = cs->h0;
	memcpy(s->lkey, cs->key, cs->klen);
	s->lklen = cs->klen;
	if (locked)
		s->lock = *lock;
	s->locked = locked;
	return s;
}

static int
hdrs_put(struct storer *s, const char *p, size_t n)
{
	if (s->hdrs_len + n > s->hdrs_cap) {
		size_t cap = s->hdrs_cap ? s->hdrs_cap : 1024;
		char *np;
		while (cap < s->hdrs_len + n)
			cap *= 2;
		if ((np = realloc(s->hdrs, cap)) == NULL)
			return -1;
		s->hdrs = np;
		s->hdrs_cap = cap;
	}
	memcpy(s->hdrs + s->hdrs_len, p, n);
	s->hdrs_len += n;
	return 0;
}

/* Whether response field H is kept with the entry: not hop-by-hop (nor
 * named by Connection), not framing, not a cookie, not the gateway's own
 * or per-response (Age, X-Cache). */
static bool
kept(const struct config *cfg, const struct http1_header *h,
    const struct http1_token *ct, int nct)
{
	static const char *const drop[] = { "connection", "keep-alive",
	    "te", "trailer", "transfer-encoding", "upgrade",
	    "proxy-connection", "proxy-authenticate", "proxy-authorization",
	    "content-length", "set-cookie", "set-cookie2", "age", "x-cache",
	    NULL };
	const char *const own[] = { cfg->server.trace_header,
	    cfg->auth.id_consumer, cfg->auth.id_tier, cfg->auth.id_scopes };
	int i;

	for (i = 0; drop[i] != NULL; i++)
		if (http1_name_eq(h->name, h->name_len, drop[i],
		    strlen(drop[i])))
			return false;
	for (i = 0; i < 4; i++)
		if (own[i] != NULL && http1_name_eq(h->name, h->name_len,
		    own[i], strlen(own[i])))
			return false;
	for (i = 0; i < nct; i++)
		if (http1_name_eq(h->name, h->name_len, ct[i].p, ct[i].len))
			return false;
	return true;
}

/* The response head: whether it may be stored (0: keep the body) or not
 * (-1, with the state saying why). */
int
cache_fill_head(struct storer *s, int status, const struct http1_header *h,
    size_t n, int64_t content_length)
{
	const struct cr *cr = s->cr;
	struct http1_token ct[32];
	char names[VARY_MAX];
	size_t nlen = 0, i, k;
	const char *name;
	bool star = false;
	int nct;

	s->status = status;
	s->resp_ns = store_now_ns();
	if (!cache_status_storable(status)) {
		s->state = S_FAILED;
		return -1;
	}
	cache_freshness(h, n, (int64_t)time(NULL), cr->ttl_s, cr->stale_s,
	    &s->fr);
	if (!s->fr.storable) {
		s->state = S_PASS;
		return -1;
	}
	for (i = 0; i < n; i++)
		if (http1_header_is(&h[i], "vary") &&
		    cache_vary_names(h[i].value, h[i].value_len, names, &nlen,
		    sizeof(names), &star) < 0)
			star = true;	/* too many names to key: as "*" */
	if (star) {
		s->state = S_PASS;
		return -1;
	}
	/* The names the route does not vary on already. */
	for (i = 0; i < nlen;) {
		size_t nl = cache_next_name(names, nlen, &i, &name), j = 0;
		const char *cn;
		bool have = false;
		while (!have && j < cr->vary_len) {
			size_t cl = cache_next_name(cr->vary, cr->vary_len, &j, &cn);
			have = cl == nl && memcmp(cn, name, nl) == 0;
		}
		if (have || nl == 0)
			continue;
		if (s->vary_len + nl + 1 > sizeof(s->vary)) {
			s->state = S_PASS;
			return -1;
		}
		s->vary[s->vary_len++] = ',';
		memcpy(s->vary + s->vary_len, name, nl);
		s->vary_len += nl;
	}
	if (content_length >= 0 && (uint64_t)content_length > cr->max_body) {
		CACHE_COUNT(cache_too_big);
		s->state = S_PASS;
		return -1;
	}
	nct = http1_connection_tokens(h, n, ct, 32);
	if (nct < 0) {
		s->state = S_PASS;
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (!kept(cr->cfg, &h[i], ct, nct))
			continue;
		if (http1_header_is(&h[i], "etag")) {
			if (h[i].value_len > ETAG_MAX || h[i].value_len == 0)
				continue;	/* ours is made below */
			memcpy(s->etag, h[i].value, h[i].value_len);
			s->etag_len = h[i].value_len;
		}
		k = s->hdrs_len;
		if (hdrs_put(s, h[i].name, h[i].name_len) < 0 ||
		    hdrs_put(s, ": ", 2) < 0 ||
		    hdrs_put(s, h[i].value, h[i].value_len) < 0 ||
		    hdrs_put(s, "\r\n", 2) < 0) {
			s->hdrs_len = k;
			s->state = S_FAILED;
			return -1;
		}
	}
	s->state = S_TAKING;
	return 0;
}

void
cache_fill_body(struct storer *s, const char *p, size_t n)
{
	if (s->state != S_TAKING || n == 0)
		return;
	if (s->blen + n > s->cr->max_body) {
		/* Streams on to the client, uncached. */
		CACHE_COUNT(cache_too_big);
		s->state = S_PASS;
		free(s->body);
		s->body = NULL;
		s->blen = s->bcap = 0;
		return;
	}
	if (s->blen + n > s->bcap) {
		size_t cap = s->bcap ? s->bcap : 4096;
		char *np;
		while (cap < s->blen + n)
			cap *= 2;
		if ((np = realloc(s->body, cap)) == NULL) {
			s->state = S_FAILED;
			return;
		}
		s->body = np;
		s->bcap = cap;
	}
	memcpy(s->body + s->blen, p, n);
	s->blen += n;
}

/* "PATH?QUERY HOST ROUTE[ consumer=C]" for gwctl, into a new buffer. */
static char *
describe(const struct storer *s, size_t *len)
{
	size_t cap = s->q.plen + s->q.qlen + s->q.hlen + s->q.clen +
	    strlen(s->cr->r->name) + 16;
	char *d;
	int n;

	if (cap > DESC_MAX + s->q.plen + s->q.qlen)
		cap = DESC_MAX + s->q.plen + s->q.qlen;
	if ((d = malloc(cap)) == NULL)
		return NULL;
	n = snprintf(d, cap, "%.*s%.*s %.*s %s%s%.*s", (int)s->q.plen,
	    s->q.path, (int)s->q.qlen, s->q.query, (int)s->q.hlen,
	    s->q.host, s->cr->r->name, s->q.clen > 0 ? " consumer=" : "",
	    (int)s->q.clen, s->q.consumer);
	*len = n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
	return d;
}

static uint64_t
sec_ns(int64_t s)
{
	return s > 0 ? (uint64_t)s * 1000000000ull : 0;
}

/* Store the whole response. true when it is stored (the put also ended
 * the lock). */
static bool
storer_put(struct storer *s, struct store *st)
{
	static const char hex[] = "0123456789abcdef";
	const struct cr *cr = s->cr;
	struct cache_entry e;
	struct cache_put p;
	unsigned char md[SHA256_DIGEST_LENGTH];
	char key[CACHE_KEY_MAX], *desc;
	size_t klen, dlen = 0;
	uint64_t base, until;
	int i, rc;

	memset(&e, 0, sizeof(e));
	if (s->etag_len == 0) {
		/* No ETag from the origin: one from the body, so that
		 * conditional requests can be answered. */
		SHA256((const unsigned char *)(s->body ? s->body : ""), s->blen,
		    md);
		s->etag[0] = '"';
		for (i = 0; i < 16; i++) {
			s->etag[1 + 2 * i] = hex[md[i] >> 4];
			s->etag[2 + 2 * i] = hex[md[i] & 15];
		}
		s->etag[33] = '"';
		s->etag_len = 34;
		e.flags |= CACHE_F_ETAG_MADE;
		if (hdrs_put(s, "ETag: ", 6) < 0 ||
		    hdrs_put(s, s->etag, s->etag_len) < 0 ||
		    hdrs_put(s, "\r\n", 2) < 0)
			return false;
	}
	if (cache_req_key(cr, &s->q, s->vary, s->vary_len, key, &klen) < 0 ||
	    (desc = describe(s, &dlen)) == NULL)
		return false;
	base = s->resp_ns - (sec_ns(s->fr.age_s) < s->resp_ns ?
	    sec_ns(s->fr.age_s) : 0);
	e.kind = CACHE_ENTRY;
	e.status = s->status;
	e.born_ns = base;
	e.fresh_ns = base + sec_ns(s->fr.lifetime_s);
	e.swr_ns = e.fresh_ns + sec_ns(s->fr.swr_s);
	e.sie_ns = e.fresh_ns + sec_ns(s->fr.sie_s);
	e.last_modified = s->fr.last_modified > 0 ?
	    (uint64_t)s->fr.last_modified : 0;
	e.id = ++s->w->id;
	if (s->fr.revalidate)
		e.flags |= CACHE_F_REVALIDATE;
	e.etag = s->etag;
	e.etag_len = s->etag_len;
	e.desc = desc;
	e.desc_len = dlen;
	e.headers = s->hdrs != NULL ? s->hdrs : "";
	e.headers_len = s->hdrs_len;
	e.body = s->body != NULL ? s->body : "";
	e.body_len = s->blen;
	until = e.fresh_ns;
	if (e.swr_ns > until)
		until = e.swr_ns;
	if (e.sie_ns > until)
		until = e.sie_ns;
	memset(&p, 0, sizeof(p));
	p.budget = cr->budget;
	p.now_ns = store_now_ns();
	p.evict_ns = until;
	if (s->vary_len > 0) {
		p.vary_key = s->key0;
		p.vary_klen = s->k0len;
		p.vary = s->vary + 1;	/* without the leading ',' */
		p.vary_len = s->vary_len - 1;
	}
	rc = cache_put(st, key, klen, &e, &p);
	free(desc);
	if (rc < 0) {
		cache_warn(s->w, "storing a response", rc);
		return false;
	}
	if (!p.stored)
		return false;
	/* The lock was on another key than those just written (the
	 * upstream's Vary changed): end it too. */
	if (s->locked && !(s->lklen == klen && memcmp(s->lkey, key, klen) ==
	    0) && !(s->lklen == s->k0len && memcmp(s->lkey, s->key0,
	    s->k0len) == 0 && s->vary_len > 0))
		cache_lock_end(st, s->lkey, s->lklen, &s->lock,
		    CACHE_LOCK_NONE, 0);
	s->locked = false;
	return true;
}

/* The response is over (HOW): stored if it can be; the lock ends with a
 * note saying what waiters should do; local waiters are woken; S is
 * freed. */
void
cache_fill_end(struct storer *s, enum fin how)
{
	struct store *st = cache_store_of(s->w);
	enum cache_lock_state note = CACHE_LOCK_NONE;
	uint64_t ms = 0;

	if (st != NULL && how == FIN_OK && s->state == S_TAKING &&
	    storer_put(s, st)) {
		/* stored: the lock went with it */
	} else if (how == FIN_ABORT && s->state != S_PASS) {
		note = CACHE_LOCK_NONE;
	} else if (s->state == S_PASS) {
		note = CACHE_LOCK_PASS;
		ms = PASS_MS;
	} else {
		note = CACHE_LOCK_FAILED;
		ms = FAILED_MS;
	}
	if (s->locked && st != NULL) {
		int rc = cache_lock_end(st, s->lkey, s->lklen, &s->lock, note,
		    store_now_ns() + ms * 1000000ull);
		if (rc < 0)
			cache_warn(s->w, "ending a fetch", rc);
	}
	cache_wake(s->w, s->h0);
	free(s->hdrs);
	free(s->body);
	free(s->reqbuf);
	free(s->rh);
	free(s);
}

/* ---- background refresh ------------------------------------------ */

static int
rf_head(void *arg, int status, const struct http1_header *h, size_t n)
{
	int64_t cl = -1;
	size_t i;

	for (i = 0; i < n; i++)
		if (http1_header_is(&h[i], "content-length")) {
			char *end;
			long long v = strtoll(h[i].value, &end, 10);
			if (end != h[i].value && v >= 0)
				cl = v;
		}
	return cache_fill_head(arg, status, h, n, cl);
}

static int
rf_body(void *arg, const char *p, size_t n, bool last)
{
	struct storer *s = arg;

	(void)last;
	cache_fill_body(s, p, n);
	return s->state == S_TAKING ? 0 : -1;
}

static void
rf_done(void *arg, bool ok)
{
	cache_fill_end(arg, ok ? FIN_OK : FIN_FAILED);
}

/* The request a fetch that stores sends: unconditional and whole, so
 * that its answer is a full response (a client's 304 or range is
 * answered from the stored one). */
void
cache_unconditional(struct xctx *x)
{
	static const char *const names[] = { "If-None-Match",
	    "If-Modified-Since", "If-Range", "Range", NULL };
	int i;

	for (i = 0; names[i] != NULL; i++)
		policy_edit_remove(&x->edits, names[i], strlen(names[i]));
}

/* One background refresh of the stale entry at cs->key, unless another
 * process runs one already. */
void
cache_refresh(struct xctx *x, struct cr *cr, struct cs *cs, struct store *st,
    uint64_t now_ns)
{
	struct cache_lock l;
	struct storer *s;
	struct xfetch f;
	int rc;

	rc = cache_lock_take(st, cs->key, cs->klen, now_ns, now_ns +
	    (cr->wait_ms + 1000) * 1000000ull, &l);
	if (rc < 0)
		cache_warn(cr->w, "taking a fetch lock", rc);
	if (rc != 1)
		return;
	if ((s = cache_fill_new(cr, cs, x, &l, true)) == NULL) {
		cache_lock_end(st, cs->key, cs->klen, &l, CACHE_LOCK_NONE, 0);
		return;
	}
	cache_unconditional(x);
	f.head = rf_head;
	f.body = rf_body;
	f.done = rf_done;
	f.arg = s;
	if (xctx_fetch(x, &f) < 0) {
		cache_fill_end(s, FIN_ABORT);
		return;
	}
	CACHE_COUNT(cache_refreshes);
}

bool
cache_fill_taking(const struct storer *s)
{
	return s->state == S_TAKING;
}
