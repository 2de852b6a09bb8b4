/*
 * ratelimit: token buckets per tier, shared by every worker through the
 * store (shm/bucket.h has the lease protocol that keeps them exact).
 *
 * The tier is the route's rate_limit.tier, else "anonymous" (no request
 * carries an identity until the auth issue; `by = "consumer"` is refused
 * at load until then). Every response of a limited route carries
 * RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers-11);
 * a refusal is 429 with Retry-After. When the store cannot be used the
 * request is refused with 503: a limit never fails open.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "../master/log.h"
#include "../shm/bucket.h"
#include "../shm/lease.h"
#include "../shm/store.h"
#include "policy.h"
#include "ratelimit.h"

#define LEASE_MAX	64	/* tokens per lease, at most */

/* A tier as a route limits with it. */
struct rl_tier {
	const struct cfg_tier *tier;
	struct bucket_params p;
	char policy[RL_NAME_MAX + 64];	/* the RateLimit-Policy value */
	size_t policy_len;
	char item[RL_NAME_MAX + 8];	/* the RateLimit value's start:
					 * "NAME";r= */
	size_t item_len;
};

struct rl_route {
	const struct config *cfg;
	struct rl_tier *tiers;		/* every tier, in config order */
	size_t def;			/* the route's own (or anonymous) */
	enum rl_by by;
	const char *route_name;
	const char *header;		/* RL_HEADER: as configured */
	unsigned v6_prefix;		/* RL_IP: IPv6 clients by this prefix */
	char kind[RL_KIND_MAX];		/* "ip", "route", "header:name",
					 * "consumer" */
	size_t kind_len;
};

/* The tier of this request: by consumer, the consumer's own tier when it
 * names one the config has; the route's tier otherwise. */
static const struct rl_tier *
tier_of(const struct rl_route *rr, const struct xctx *ctx)
{
	size_t i;

	if (rr->by == RL_CONSUMER && ctx->id.tier != NULL)
		for (i = 0; i < rr->cfg->ntiers; i++)
			if (strcmp(rr->tiers[i].tier->name, ctx->id.tier) == 0)
				return &rr->tiers[i];
	return &rr->tiers[rr->def];
}

/* Per process, like the store handle: leases outlive routes and belong
 * to whichever process took them (shm/lease.h). */
static struct {
	int pid;
	struct lease_table *tab;
	uint64_t warned_ms;
} rl;

static struct lease_table *
leases(void)
{
	int pid = store_pid();

	if (rl.pid != pid) {
		/* A parent's leases are the parent's to spend. */
		rl.tab = NULL;
		rl.pid = pid;
	}
	if (rl.tab == NULL)
		rl.tab = lease_table_new();
	return rl.tab;
}

/* This process's store handle, at the configured path (shm/ takes plain
 * parameters, not the config). */
static struct store *
store_of(const struct config *cfg)
{
	return store_proc(cfg->server.state_path, cfg->server.workers);
}

static void
warn_store(const char *what, int rc, uint64_t now_ms)
{
	if (rl.warned_ms != 0 && now_ms - rl.warned_ms < 1000)
		return;
	rl.warned_ms = now_ms;
	log_warn("rate limit: %s: %s; refusing rate-limited requests", what,
	    rc != 0 ? store_strerror(rc) : "store unavailable");
}

bool
ratelimit_pending(void)
{
	return rl.tab != NULL && rl.pid == store_pid() &&
	    lease_count(rl.tab) > 0;
}

void
ratelimit_tick(uint64_t now_ms)
{
	struct store *st;
	int rc;

	if (!ratelimit_pending())
		return;
	st = store_proc(NULL, 0);
	if (st == NULL)
		return;
	rc = lease_tick(rl.tab, st, now_ms, NULL);
	if (rc < 0)
		warn_store("returning leases", rc, now_ms);
}

/* ---- keys -------------------------------------------------------- */

/* The text of address A; an IPv6 address (not v4-mapped) is cut to its
 * first PREFIX bits and written as a network, "2001:db8:1:2::/64", when
 * PREFIX is under 128. */
static void
addr_text(int family, const uint8_t *a, unsigned prefix, char *out,
    size_t cap)
{
	static const uint8_t v4mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};
	uint8_t net[16];
	size_t n, i;

	if (family == AF_INET6 && memcmp(a, v4mapped, 12) == 0) {
		family = AF_INET;
		a += 12;
	}
	if (family == AF_INET6 && prefix < 128) {
		for (i = 0; i < 16; i++) {
			unsigned bits = i * 8 >= prefix ? 0 :
			    prefix - i * 8 >= 8 ? 8 : prefix - i * 8;

			net[i] = (uint8_t)(a[i] & (0xff00 >> bits));
		}
		a = net;
	}
	if (inet_ntop(family, a, out, (socklen_t)cap) == NULL) {
		snprintf(out, cap, "?");
		return;
	}
	if (family == AF_INET6 && prefix < 128) {
		n = strlen(out);
		snprintf(out + n, cap - n, "/%u", prefix);
	}
}

static bool
trusted(const struct config *cfg, int family, const uint8_t *a)
{
	return config_trusted(&cfg->server, family, a);
}

/* One X-Forwarded-For element: an IPv4 or IPv6 address, optionally
 * bracketed. 0 with family and address set, or -1. */
static int
parse_hop(const char *s, size_t n, int *family, uint8_t *a)
{
	char buf[64];

	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, a) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, a) == 1) {
		*family = AF_INET6;
		return 0;
	}
	return -1;
}

/*
 * The client address: the peer, or, when the peer is a trusted proxy, the
 * first address of X-Forwarded-For that is not a trusted proxy, reading
 * from the right (each proxy appends the address it saw; only the part
 * our trusted proxies wrote can be believed). Every hop trusted: the
 * leftmost. A malformed hop ends the walk at the last believed address.
 */
static void
client_ip(const struct xctx *ctx, unsigned v6_prefix, char *out,
    size_t cap)
{
	const struct config *cfg = ctx->cfg;
	int fam = ctx->peer_family, hf;
	uint8_t cur[16], hop[16];
	size_t i, end, start;

	memset(cur, 0, sizeof(cur));
	memcpy(cur, ctx->peer_addr, fam == AF_INET ? 4 : 16);
	if (cfg->server.ntrusted == 0 || !trusted(cfg, fam, cur))
		goto done;
	for (i = ctx->nheaders; i-- > 0;) {
		const struct http1_header *h = &ctx->headers[i];

		if (!http1_header_is(h, "X-Forwarded-For"))
			continue;
		end = h->value_len;
		while (end > 0) {
			start = end;
			while (start > 0 && h->value[start - 1] != ',')
				start--;
			if (parse_hop(h->value + start, end - start, &hf,
			    hop) < 0)
				goto done;
			fam = hf;
			memcpy(cur, hop, 16);
			if (!trusted(cfg, fam, cur))
				goto done;
			end = start > 0 ? start - 1 : 0;
		}
	}
done:
	addr_text(fam, cur, v6_prefix, out, cap);
}

/* Append part S (LEN bytes) to KEY at *N, verbatim when it fits in MAX
 * bytes, else as '~' and 32 hex digits of its SHA-256: a long client
 * value costs a hash, never a copy past the buffer, and two long values
 * still name two buckets. A value that itself starts with '~' is hashed
 * too, so it cannot pose as the hash of another. */
static void
put_part(char *key, size_t *n, size_t max, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];
	size_t i;

	if (len <= max && (len == 0 || s[0] != '~')) {
		memcpy(key + *n, s, len);
		*n += len;
		return;
	}
	SHA256((const unsigned char *)s, len, md);
	key[(*n)++] = '~';
	for (i = 0; i < RL_HASHED_LEN / 2; i++) {
		key[(*n)++] = hex[md[i] >> 4];
		key[(*n)++] = hex[md[i] & 15];
	}
}

/* The bucket key of this request (see ratelimit.h) in KEY, which holds
 * RL_KEY_MAX bytes; its length. */
static size_t
make_key(const struct rl_route *rr, const struct rl_tier *tv,
    const struct xctx *ctx, char *key)
{
	char ip[INET6_ADDRSTRLEN + 8];
	const char *v = "";
	size_t vlen = 0, n = 0, i;

	switch (rr->by) {
	case RL_IP:
		client_ip(ctx, rr->v6_prefix, ip, sizeof(ip));
		v = ip;
		vlen = strlen(ip);
		break;
	case RL_ROUTE:
		v = rr->route_name;
		vlen = strlen(v);
		break;
	case RL_CONSUMER:
		/* auth ran first: a route limited by consumer has auth */
		if (ctx->id.consumer != NULL) {
			v = ctx->id.consumer;
			vlen = ctx->id.consumer_len;
		}
		break;
	case RL_HEADER:
		/* Missing: the shared "" bucket, never unlimited. */
		for (i = 0; i < ctx->nheaders; i++)
			if (http1_name_eq(ctx->headers[i].name,
			    ctx->headers[i].name_len, rr->header,
			    strlen(rr->header))) {
				v = ctx->headers[i].value;
				vlen = ctx->headers[i].value_len;
				break;
			}
		break;
	default:
		break;
	}
	put_part(key, &n, RL_NAME_MAX, tv->tier->name,
	    strlen(tv->tier->name));
	key[n++] = '\0';
	memcpy(key + n, rr->kind, rr->kind_len);
	n += rr->kind_len;
	key[n++] = '\0';
	put_part(key, &n, RL_VALUE_MAX, v, vlen);
	return n;
}

/* ---- the policy -------------------------------------------------- */

static int
rl_init(const struct config *cfg, const struct cfg_route *r, void *wstate,
    void **state)
{
	struct rl_route *rr;
	int t;
	size_t i;

	(void)wstate;
	if (r->rl_by == RL_NONE)
		return 0;
	if (r->rl_by == RL_CONSUMER && r->auth == AUTH_NONE) {
		log_error("route %s: rate_limit by consumer needs auth",
		    r->name);
		return -1;
	}
	t = r->rl_tier >= 0 ? r->rl_tier :
	    config_tier_index(cfg, "anonymous");
	if (t < 0 || (size_t)t >= cfg->ntiers) {
		log_error("route %s: rate_limit has no tier and there is no "
		    "'anonymous' tier", r->name);
		return -1;
	}
	rr = calloc(1, sizeof(*rr));
	if (rr == NULL)
		return -1;
	rr->cfg = cfg;
	rr->tiers = calloc(cfg->ntiers, sizeof(*rr->tiers));
	if (rr->tiers == NULL) {
		free(rr);
		return -1;
	}
	for (i = 0; i < cfg->ntiers; i++) {
		struct rl_tier *tv = &rr->tiers[i];
		tv->tier = &cfg->tiers[i];
		tv->p.rate = tv->tier->rate;
		tv->p.per_s = tv->tier->per_s;
		tv->p.burst = tv->tier->burst;
		/* (cut short only past RL_NAME_MAX, which the config
		 * refuses) */
		snprintf(tv->policy, sizeof(tv->policy), "\"%s\";q=%llu;w=%llu",
		    tv->tier->name, (unsigned long long)tv->p.rate,
		    (unsigned long long)tv->p.per_s);
		tv->policy_len = strlen(tv->policy);
		snprintf(tv->item, sizeof(tv->item), "\"%s\";r=",
		    tv->tier->name);
		tv->item_len = strlen(tv->item);
	}
	rr->def = (size_t)t;
	rr->by = r->rl_by;
	rr->route_name = r->name;
	rr->header = r->rl_header != NULL ? r->rl_header : "";
	rr->v6_prefix = r->rl_v6_prefix >= 1 && r->rl_v6_prefix <= 128 ?
	    r->rl_v6_prefix : 64;
	if (r->rl_by == RL_HEADER) {
		char name[RL_NAME_MAX];
		size_t len = strlen(rr->header);

		memcpy(rr->kind, "header:", 7);
		rr->kind_len = 7;
		/* The config caps the name; a longer one is hashed. */
		if (len <= RL_NAME_MAX) {
			for (i = 0; i < len; i++)
				name[i] = (char)tolower(
				    (unsigned char)rr->header[i]);
			put_part(rr->kind, &rr->kind_len, RL_NAME_MAX, name,
			    len);
		} else {
			put_part(rr->kind, &rr->kind_len, 0, rr->header, len);
		}
	} else {
		const char *k = r->rl_by == RL_IP ? "ip" : r->rl_by ==
		    RL_CONSUMER ? "consumer" : "route";
		rr->kind_len = strlen(k);
		memcpy(rr->kind, k, rr->kind_len);
	}
	/* Workers open the store here, after fork, once per process; a
	 * failure is retried by later requests (refused meanwhile). */
	store_of(cfg);
	*state = rr;
	return 1;
}

static uint64_t
secs_up(uint64_t ns)
{
	return (ns + 999999999ull) / 1000000000ull;
}

/* V in decimal at OUT (room for 20 digits); the digits written. */
static size_t
u64_text(char *out, uint64_t v)
{
	char t[20];
	size_t i = sizeof(t);

	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	memcpy(out, t + i, sizeof(t) - i);
	return sizeof(t) - i;
}

/* Both headers on every answer of a limited route: put together by hand
 * (printf cost more than the rest of the policy). */
static void
headers(const struct rl_tier *tv, struct xctx *ctx, uint64_t left,
    uint64_t reset_s)
{
	char v[sizeof(tv->item) + 3 + 2 * 20];
	size_t n = tv->item_len;

	xctx_resp_line(ctx, "RateLimit-Policy", tv->policy, tv->policy_len);
	memcpy(v, tv->item, n);
	n += u64_text(v + n, left);
	memcpy(v + n, ";t=", 3);
	n += 3;
	n += u64_text(v + n, reset_s);
	xctx_resp_line(ctx, "RateLimit", v, n);
}

static int
refuse(const struct rl_route *rr, const struct rl_tier *tv,
    struct xctx *ctx, int status, uint64_t retry_s)
{
	const char *error = status == 429 ? "rate_limited" :
	    "rate_limit_unavailable";
	char why[64 + RL_NAME_MAX + RL_KIND_MAX];
	int n;

	if (retry_s == 0)
		retry_s = 1;
	ctx->ratelimit = status == 429 ? XRL_LIMITED : XRL_UNAVAILABLE;
	headers(tv, ctx, 0, retry_s);
	xctx_resp_header(ctx, "Retry-After", "%llu",
	    (unsigned long long)retry_s);
	/* The log's reason names the limit: its tier and its key. */
	n = snprintf(why, sizeof(why), "%s: tier %s, by %.*s", error,
	    tv->tier->name, (int)rr->kind_len, rr->kind);
	if (ctx->reason == NULL && n > 0 && (size_t)n < sizeof(why))
		ctx->reason = arena_dup(&ctx->arena, why, (size_t)n);
	return xctx_error(ctx, status, error);
}

/* The answer's RateLimit header from what this worker knows of the
 * shared bucket: its tokens as last seen plus those held here (capped at
 * the burst: held tokens the refill already made up for are no extra). */
static void
lease_headers(const struct rl_tier *tv, struct xctx *ctx,
    const struct lease *e)
{
	uint64_t left = e->left + e->tokens;

	ctx->ratelimit = XRL_ALLOWED;	/* every admit passes here */
	if (left > tv->p.burst)
		left = tv->p.burst;
	headers(tv, ctx, left, e->full_at_ms > ctx->now_ms ?
	    secs_up((e->full_at_ms - ctx->now_ms) * 1000000ull) : 0);
}

static int
rl_request(struct xctx *ctx, void *state, void *slot)
{
	struct rl_route *rr = state;
	const struct rl_tier *tv = tier_of(rr, ctx);
	struct lease_table *tab;
	struct lease *e, one;
	struct bucket_view v;
	struct store *st;
	char key[RL_KEY_MAX];
	uint64_t hash, max = LEASE_MAX;
	size_t klen;
	int n, rc;

	(void)slot;
	klen = make_key(rr, tv, ctx, key);
	tab = leases();
	if (tab == NULL)
		return refuse(rr, tv, ctx, 503, 1);
	hash = lease_hash(tab, key, klen);
	e = lease_get(tab, key, klen, hash);
	if (e != NULL && !bucket_same_params(&e->p, &tv->p)) {
		lease_drop(tab, e);	/* another tier's: lost, safe */
		e = NULL;
	}
	if (e != NULL && e->tokens > 0) {
		/* The common case: no store access at all. */
		e->tokens--;
		e->used_ms = ctx->now_ms;
		lease_headers(tv, ctx, e);
		return POLICY_CONTINUE;
	}
	st = store_of(ctx->cfg);
	if (st == NULL) {
		warn_store("opening the store", 0, ctx->now_ms);
		return refuse(rr, tv, ctx, 503, 1);
	}
	/* No room to hold a lease: take exactly the token this request
	 * needs, which leaves nothing to give back. */
	if (e == NULL && lease_count(tab) >= LEASE_CAP)
		max = 1;
	n = bucket_lease(st, key, klen, &tv->p, store_now_ns(), max,
	    2 * (uint64_t)ctx->cfg->server.workers, &v);
	if (n < 0) {
		warn_store("leasing tokens", n, ctx->now_ms);
		return refuse(rr, tv, ctx, 503, 1);
	}
	if (n == 0)
		return refuse(rr, tv, ctx, 429, secs_up(v.wait_ns));
	if (e == NULL && n > 1)
		e = lease_put(tab, key, klen, hash);
	if (e == NULL) {
		e = &one;
		memset(e, 0, sizeof(*e));
		if (n > 1 && (rc = bucket_return(st, key, klen, &tv->p,
		    store_now_ns(), (uint64_t)n - 1)) < 0)
			warn_store("returning a lease", rc, ctx->now_ms);
		n = 1;
	}
	e->p = tv->p;
	e->tokens = (uint32_t)n - 1;
	e->used_ms = e->checked_ms = ctx->now_ms;
	e->left = v.left;
	e->full_at_ms = ctx->now_ms + v.full_ns / 1000000;
	lease_headers(tv, ctx, e);
	return POLICY_CONTINUE;
}

static void
rl_free(void *state)
{
	struct rl_route *rr = state;
	struct store *st;

	if (rr != NULL)
		free(rr->tiers);
	free(rr);
	/* The worker is stopping or reloading: unspent leases go back. */
	if (rl.tab == NULL || rl.pid != store_pid() ||
	    lease_count(rl.tab) == 0)
		return;
	st = store_proc(NULL, 0);
	if (st == NULL || lease_return_all(rl.tab, st) < 0)
		warn_store("returning leases", 0, 0);
}

const struct policy policy_ratelimit = {
	.name = "ratelimit",
	.init = rl_init,
	.on_request = rl_request,
	.free = rl_free,
};

/* ---- gwctl limits ------------------------------------------------ */

/* The view of the bucket under key P (LEN bytes, TIER '\0' KIND '\0'
 * VALUE) when its value part is VALUE (VLEN bytes); D is its stored
 * value. 0, or -1 when it is not that value's bucket (or not ours). */
static int
view_of(const char *p, size_t len, const MDB_val *d, const char *value,
    size_t vlen, uint64_t now_ns, struct ratelimit_view *v)
{
	const char *z1, *z2;
	struct bucket b;
	size_t tl, kl;

	if (len >= RL_KEY_MAX)
		return -1;
	z1 = memchr(p, '\0', len);
	z2 = z1 ? memchr(z1 + 1, '\0', len - (size_t)(z1 + 1 - p)) : NULL;
	if (z2 == NULL || (size_t)(p + len - (z2 + 1)) != vlen ||
	    memcmp(z2 + 1, value, vlen) != 0)
		return -1;
	tl = (size_t)(z1 - p);
	kl = (size_t)(z2 - (z1 + 1));
	if (tl > RL_NAME_MAX || kl > RL_KIND_MAX ||
	    bucket_decode(d->mv_data, d->mv_size, &b) < 0)
		return -1;
	memcpy(v->tier, p, tl);
	v->tier[tl] = '\0';
	memcpy(v->by, z1 + 1, kl);
	v->by[kl] = '\0';
	memcpy(v->key, p, len);
	v->klen = len;
	bucket_refill(&b, now_ns);
	v->tokens = bucket_whole(&b);
	v->tokens_micro = b.tokens;
	v->burst = b.p.burst;
	v->rate = b.p.rate;
	v->per_s = b.p.per_s;
	v->full_in_ms = (bucket_wait_ns(&b, b.p.burst) + 999999) / 1000000;
	return 0;
}

int
ratelimit_find(struct store *st, const char *value, size_t len,
    uint64_t now_ns, struct ratelimit_view *out, int max)
{
	char val[RL_VALUE_MAX + RL_HASHED_LEN + 1];
	size_t vlen = 0;
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val k, v;
	int rc, n = 0;

	/* Stored as a request's value would be: long ones hashed. */
	put_part(val, &vlen, RL_VALUE_MAX, value, len);
	if ((rc = store_read_begin(st, &txn)) < 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, st->dbi[STORE_BUCKETS], &cur)) != 0) {
		store_read_end(st);
		return rc > 0 ? -rc : rc;
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; rc == 0 && n < max; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (view_of(k.mv_data, k.mv_size, &v, val, vlen, now_ns,
		    &out[n]) == 0)
			n++;
	}
	mdb_cursor_close(cur);
	store_read_end(st);
	return n;
}

int
ratelimit_reset(struct store *st, const struct ratelimit_view *v)
{
	return bucket_reset(st, v->key, v->klen);
}
