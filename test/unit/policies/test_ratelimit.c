/*
 * The rate-limit policy: bucket keys (ip behind trusted proxies, route,
 * header with the shared "" bucket), tiers, headers, 429s and leases, on a
 * real store in a temporary directory under /dev/shm. The .c is included
 * to reach its statics.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../policies/ratelimit.c"

static char dir[64];
static struct cfg_tier tiers[2];
static struct cfg_cidr trusted_nets[1];
static struct config cfg;
static struct cfg_route route;
static char extra[512];
static struct http1_header hdrs[8];

static int
setup(void **st)
{
	char why[256];

	(void)st;
	snprintf(dir, sizeof(dir), "/dev/shm/ptc-rl-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	if (store_create(dir, 4, 1, why, sizeof(why)) < 0)
		return -1;
	tiers[0] = (struct cfg_tier){ .name = "anonymous", .rate = 10,
	    .per_s = 1, .burst = 3 };
	tiers[1] = (struct cfg_tier){ .name = "free", .rate = 100,
	    .per_s = 60, .burst = 2 };
	trusted_nets[0] = (struct cfg_cidr){ .family = AF_INET,
	    .addr = { 10 }, .bits = 8 };
	memset(&cfg, 0, sizeof(cfg));
	cfg.server.state_path = dir;
	cfg.server.state_max_mb = 4;
	cfg.server.workers = 1;
	cfg.tiers = tiers;
	cfg.ntiers = 2;
	memset(&route, 0, sizeof(route));
	route.name = "r1";
	route.rl_by = RL_IP;
	route.rl_tier = -1;
	return 0;
}

static int
teardown(void **st)
{
	char cmd[128];

	(void)st;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) != 0 ? -1 : 0;
}

static void
ctx_init(struct xctx *c, const uint8_t *peer4, size_t nh,
    uint64_t now_ms)
{
	memset(c, 0, sizeof(*c));
	c->cfg = &cfg;
	c->route = &route;
	c->peer_family = AF_INET;
	c->peer_addr = peer4;
	c->headers = hdrs;
	c->nheaders = nh;
	c->now_ms = now_ms;
	c->resp_extra = extra;
	c->resp_extra_cap = sizeof(extra);
	extra[0] = '\0';
}

static void
set_hdr(size_t i, const char *name, const char *value)
{
	hdrs[i].name = name;
	hdrs[i].name_len = strlen(name);
	hdrs[i].value = value;
	hdrs[i].value_len = strlen(value);
}

static const char *
key_value(const char *key, size_t n)
{
	static char out[RL_KEY_MAX + 1];
	const char *z1 = memchr(key, 0, n), *z2;

	z2 = memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - key));
	memcpy(out, z2 + 1, n - (size_t)(z2 + 1 - key));
	out[n - (size_t)(z2 + 1 - key)] = '\0';
	return out;
}

static void
test_client_ip(void **st)
{
	static const uint8_t peer_proxy[4] = { 10, 0, 0, 1 };
	static const uint8_t peer_out[4] = { 192, 0, 2, 7 };
	struct xctx c;
	char ip[64];

	(void)st;
	/* No trusted proxies: the peer, whatever the header says. */
	set_hdr(0, "X-Forwarded-For", "1.2.3.4");
	ctx_init(&c, peer_proxy, 1, 0);
	client_ip(&c, 128, ip, sizeof(ip));
	assert_string_equal(ip, "10.0.0.1");

	cfg.server.trusted = trusted_nets;
	cfg.server.ntrusted = 1;
	/* Behind a trusted proxy: first untrusted hop from the right. */
	set_hdr(0, "x-forwarded-for", "9.9.9.9, 1.2.3.4, 10.0.0.2");
	ctx_init(&c, peer_proxy, 1, 0);
	client_ip(&c, 128, ip, sizeof(ip));
	assert_string_equal(ip, "1.2.3.4");
	/* Several header lines read as one list, in order. */
	set_hdr(0, "X-Forwarded-For", "5.5.5.5");
	set_hdr(1, "X-Forwarded-For", "10.1.1.1");
	ctx_init(&c, peer_proxy, 2, 0);
	client_ip(&c, 128, ip, sizeof(ip));
	assert_string_equal(ip, "5.5.5.5");
	/* Every hop trusted: the leftmost. */
	set_hdr(0, "X-Forwarded-For", "10.9.9.9,10.1.1.1");
	ctx_init(&c, peer_proxy, 1, 0);
	client_ip(&c, 128, ip, sizeof(ip));
	assert_string_equal(ip, "10.9.9.9");
	/* Junk stops the walk at the last believed address. */
	set_hdr(0, "X-Forwarded-For", "1.2.3.4, bogus, 10.0.0.3");
	ctx_init(&c, peer_proxy, 1, 0);
	client_ip(&c, 128, ip, sizeof(ip));
	assert_string_equal(ip, "10.0.0.3");
	/* IPv6 hops. */
	set_hdr(0, "X-Forwarded-For", "[2001:db8::1]");
	ctx_init(&c, peer_proxy, 1, 0);
	client_ip(&c, 128, ip, sizeof(ip));
	assert_string_equal(ip, "2001:db8::1");
	/* An untrusted peer's header is ignored. */
	set_hdr(0, "X-Forwarded-For", "1.2.3.4");
	ctx_init(&c, peer_out, 1, 0);
	client_ip(&c, 128, ip, sizeof(ip));
	assert_string_equal(ip, "192.0.2.7");
	cfg.server.trusted = NULL;
	cfg.server.ntrusted = 0;
}

static void
test_keys(void **st)
{
	static const uint8_t peer[4] = { 127, 0, 0, 1 };
	struct xctx c;
	struct rl_route *rr;
	void *state = NULL;
	char key[RL_KEY_MAX];
	size_t n;

	(void)st;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	rr = state;
	assert_string_equal(rr->tiers[rr->def].tier->name, "anonymous");
	ctx_init(&c, peer, 0, 0);
	n = make_key(rr, tier_of(rr, &c), &c, key);
	assert_int_equal(n, sizeof("anonymous\0ip\0" "127.0.0.1") - 1);
	assert_memory_equal(key, "anonymous\0ip\0" "127.0.0.1", n);
	rl_free(state);

	route.rl_by = RL_HEADER;
	route.rl_header = "X-Key";
	route.rl_tier = 1;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	rr = state;
	set_hdr(0, "x-key", "abc");
	ctx_init(&c, peer, 1, 0);
	n = make_key(rr, tier_of(rr, &c), &c, key);
	assert_memory_equal(key, "free\0header:x-key\0abc", n);
	/* Missing header: the shared "" bucket. */
	ctx_init(&c, peer, 0, 0);
	n = make_key(rr, tier_of(rr, &c), &c, key);
	assert_int_equal(n, sizeof("free\0header:x-key\0") - 1);
	assert_string_equal(key_value(key, n), "");
	rl_free(state);

	route.rl_by = RL_ROUTE;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	n = make_key(state, tier_of(state, &c), &c, key);
	assert_memory_equal(key, "free\0route\0r1", n);
	rl_free(state);

	route.rl_by = RL_CONSUMER;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), -1);
	route.rl_by = RL_NONE;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 0);
	route.rl_by = RL_IP;
	route.rl_tier = -1;
	route.rl_header = NULL;
}

static void
test_limit_and_headers(void **st)
{
	static const uint8_t peer[4] = { 127, 0, 0, 9 };
	struct xctx c;
	void *state = NULL;
	int i;

	(void)st;
	route.rl_by = RL_HEADER;
	route.rl_header = "X-Key";
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	set_hdr(0, "X-Key", "a");
	for (i = 0; i < 3; i++) {
		ctx_init(&c, peer, 1, 1000);
		assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
		assert_non_null(strstr(extra,
		    "RateLimit-Policy: \"anonymous\";q=10;w=1\r\n"));
		assert_non_null(strstr(extra, "RateLimit: \"anonymous\";r="));
		assert_null(strstr(extra, "Retry-After"));
	}
	ctx_init(&c, peer, 1, 1000);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_RESPOND);
	assert_int_equal(c.resp.status, 429);
	assert_string_equal(c.resp.error, "rate_limited");
	/* The log's reason names the limit (in the exchange's arena). */
	assert_string_equal(c.reason, "rate_limited: tier anonymous, by "
	    "header:x-key");
	arena_reset(&c.arena);
	assert_non_null(strstr(extra, "Retry-After: 1\r\n"));
	assert_non_null(strstr(extra, "RateLimit: \"anonymous\";r=0;t=1\r\n"));
	/* Another key value has its own bucket. */
	set_hdr(0, "X-Key", "b");
	ctx_init(&c, peer, 1, 1000);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	/* The missing header shares "" with every other such request. */
	for (i = 0; i < 3; i++) {
		ctx_init(&c, peer, 0, 1000);
		assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	}
	ctx_init(&c, peer, 0, 1000);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_RESPOND);
	arena_reset(&c.arena);
	rl_free(state);
	route.rl_by = RL_IP;
	route.rl_header = NULL;
}

/* The two headers, put together by hand, are byte for byte what printf
 * made: the longest tier name, numbers from 0 to UINT64_MAX; a line that
 * does not fit adds nothing. */
static void
test_headers_exact(void **st)
{
	static const uint64_t nums[] = { 0, 7, 10, 999, 1000000000,
	    UINT64_MAX };
	char name[RL_NAME_MAX + 1], want[512];
	struct rl_route *rr;
	struct xctx c;
	void *state = NULL;
	size_t i, j;
	int n;

	(void)st;
	memset(name, 'n', RL_NAME_MAX);
	name[RL_NAME_MAX] = '\0';
	tiers[1].name = name;
	tiers[1].rate = UINT64_MAX;
	tiers[1].per_s = 86400;
	route.rl_tier = 1;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	rr = state;
	for (i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		for (j = 0; j < sizeof(nums) / sizeof(nums[0]); j++) {
			ctx_init(&c, NULL, 0, 0);
			headers(&rr->tiers[1], &c, nums[i], nums[j]);
			n = snprintf(want, sizeof(want), "RateLimit-Policy: "
			    "\"%s\";q=%llu;w=86400\r\nRateLimit: \"%s\";"
			    "r=%llu;t=%llu\r\n", name,
			    (unsigned long long)UINT64_MAX, name,
			    (unsigned long long)nums[i],
			    (unsigned long long)nums[j]);
			assert_int_equal(c.resp_extra_len, n);
			assert_memory_equal(extra, want, (size_t)n);
		}
	/* no room: nothing written, and the next line still fits */
	ctx_init(&c, NULL, 0, 0);
	c.resp_extra_cap = 12;
	assert_int_equal(xctx_resp_line(&c, "RateLimit", "0123", 4), -1);
	assert_int_equal(c.resp_extra_len, 0);
	assert_int_equal(xctx_resp_line(&c, "A", "0123", 4), 0);
	assert_int_equal(c.resp_extra_len, 9);
	assert_memory_equal(extra, "A: 0123\r\n", 9);
	rl_free(state);
	tiers[1].name = "free";
	tiers[1].rate = 100;
	tiers[1].per_s = 60;
	route.rl_tier = -1;
}

static uint64_t
write_txns(void)
{
	MDB_envinfo info;

	assert_int_equal(mdb_env_info(store_of(&cfg)->env, &info), 0);
	return info.me_last_txnid;
}

/* A lease not spent goes back to the shared bucket on the worker's
 * timer (ratelimit_tick), with no request needed; one whose bucket has
 * refilled without it is kept while in use, then dropped with no write;
 * freeing the policy (worker exit) gives back what is held. */
static void
test_lease_returned(void **st)
{
	static const uint8_t peer[4] = { 127, 0, 0, 10 };
	const struct bucket_params slow = { 1, 3600, 1000 };
	struct xctx c;
	struct bucket b;
	void *state = NULL;
	char key[RL_KEY_MAX];
	uint64_t t0, w;
	size_t n;

	(void)st;
	tiers[0].rate = 1;
	tiers[0].per_s = 3600;
	tiers[0].burst = 1000;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	t0 = 5000;
	ctx_init(&c, peer, 0, t0);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	n = make_key(state, tier_of(state, &c), &c, key);
	/* One worker: a lease of 1000 / 2 = 500, capped at LEASE_MAX. */
	assert_int_equal(bucket_peek(store_of(&cfg), key, n, &slow,
	    store_now_ns(), &b), 1);
	assert_int_equal(bucket_whole(&b), 1000 - LEASE_MAX);
	/* Spent locally: no store change. */
	ctx_init(&c, peer, 0, t0 + 100);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	assert_non_null(strstr(extra, ";r=998;"));
	/* Not yet due. */
	ratelimit_tick(t0 + LEASE_CHECK_MS - 1);
	assert_int_equal(bucket_peek(store_of(&cfg), key, n, &slow,
	    store_now_ns(), &b), 1);
	assert_int_equal(bucket_whole(&b), 1000 - LEASE_MAX);
	assert_true(ratelimit_pending());
	/* Due: the bucket lacks them, so the rest goes back. */
	ratelimit_tick(t0 + LEASE_CHECK_MS);
	assert_int_equal(bucket_peek(store_of(&cfg), key, n, &slow,
	    store_now_ns(), &b), 1);
	assert_int_equal(bucket_whole(&b), 1000 - 2);
	assert_false(ratelimit_pending());
	rl_free(state);

	/* A tier the refill keeps full: the lease is kept while in use,
	 * then dropped, and neither costs a write. */
	tiers[0].rate = 1000000000;
	tiers[0].per_s = 1;
	tiers[0].burst = 1000000000;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	ctx_init(&c, peer, 0, t0);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	w = write_txns();
	ratelimit_tick(t0 + LEASE_CHECK_MS);
	assert_true(ratelimit_pending());
	ctx_init(&c, peer, 0, t0 + LEASE_CHECK_MS + 10);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	ratelimit_tick(t0 + 2 * LEASE_CHECK_MS + 10);
	assert_true(ratelimit_pending());
	ratelimit_tick(t0 + LEASE_CHECK_MS + 10 + LEASE_KEEP_MS);
	assert_false(ratelimit_pending());
	assert_int_equal(write_txns(), w);
	rl_free(state);

	/* Freeing the policy (worker exit) returns what is held. */
	tiers[0].rate = 1;
	tiers[0].per_s = 3600;
	tiers[0].burst = 1000;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	ctx_init(&c, peer, 0, t0);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	assert_int_equal(bucket_peek(store_of(&cfg), key, n, &slow,
	    store_now_ns(), &b), 1);
	/* (The other tier's bucket counted as full for this one.) */
	assert_int_equal(bucket_whole(&b), 1000 - LEASE_MAX);
	rl_free(state);
	assert_false(ratelimit_pending());
	assert_int_equal(bucket_peek(store_of(&cfg), key, n, &slow,
	    store_now_ns(), &b), 1);
	assert_int_equal(bucket_whole(&b), 1000 - 1);
	tiers[0].rate = 10;
	tiers[0].per_s = 1;
	tiers[0].burst = 3;
}

/* Long names and a long client value never overflow the key: every part
 * is bounded and a value too long to keep is hashed, so two long values
 * still get two buckets. (Names are also capped at config load.) */
static void
test_long_key_parts_bounded(void **st)
{
	static const uint8_t peer[4] = { 127, 0, 0, 1 };
	static char tier_name[301], hdr_name[301], route_name[301];
	static char v1[201], v2[201];
	struct cfg_tier saved = tiers[1];
	struct xctx c;
	void *state = NULL;
	char key[RL_KEY_MAX + 64], k1[RL_KEY_MAX + 64];
	size_t n, n1;

	(void)st;
	memset(tier_name, 't', 300);
	memset(hdr_name, 'H', 300);
	memset(route_name, 'r', 300);
	memset(v1, 'v', 200);
	memcpy(v2, v1, 200);
	v2[199] = 'w';
	tiers[1].name = tier_name;
	route.rl_by = RL_HEADER;
	route.rl_header = hdr_name;
	route.rl_tier = 1;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	set_hdr(0, hdr_name, v1);
	ctx_init(&c, peer, 1, 0);
	n1 = make_key(state, tier_of(state, &c), &c, k1);
	assert_true(n1 <= RL_KEY_MAX);
	set_hdr(0, hdr_name, v2);
	ctx_init(&c, peer, 1, 0);
	n = make_key(state, tier_of(state, &c), &c, key);
	assert_true(n <= RL_KEY_MAX);
	assert_false(n == n1 && memcmp(key, k1, n) == 0);
	/* The policy answers such a request, with its headers bounded. */
	ctx_init(&c, peer, 1, 1000);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	rl_free(state);

	route.rl_by = RL_ROUTE;
	route.name = route_name;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	ctx_init(&c, peer, 0, 0);
	n = make_key(state, tier_of(state, &c), &c, key);
	assert_true(n <= RL_KEY_MAX);
	rl_free(state);

	route.name = "r1";
	route.rl_by = RL_IP;
	route.rl_header = NULL;
	route.rl_tier = -1;
	tiers[1] = saved;
}

/* Many clients: 10,000 keys cycling through one worker, on a tier far
 * above the load. Each key costs one lease the first time; going round
 * again is spent from the leases the worker holds, with no store write. */
static void
test_many_keys_no_write_per_request(void **st)
{
	enum { KEYS = 10000 };
	static const uint8_t peer[4] = { 127, 0, 0, 11 };
	struct cfg_tier saved = tiers[0];
	struct xctx c;
	void *state = NULL;
	char v[32];
	uint64_t w0, w1, w2;
	int i;

	(void)st;
	tiers[0].rate = 1000000000;
	tiers[0].burst = 1000000000;
	route.rl_by = RL_HEADER;
	route.rl_header = "X-Api-Key";
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	w0 = write_txns();
	for (i = 0; i < KEYS; i++) {
		snprintf(v, sizeof(v), "key-%d", i);
		set_hdr(0, "X-Api-Key", v);
		ctx_init(&c, peer, 1, 20000);
		assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	}
	w1 = write_txns();
	assert_true(w1 - w0 <= KEYS);
	for (i = 0; i < KEYS; i++) {
		snprintf(v, sizeof(v), "key-%d", i);
		set_hdr(0, "X-Api-Key", v);
		ctx_init(&c, peer, 1, 20100);
		assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	}
	w2 = write_txns();
	print_message("10,000 keys: %llu write txns the first time round, "
	    "%llu the second\n", (unsigned long long)(w1 - w0),
	    (unsigned long long)(w2 - w1));
	assert_true(w2 - w1 <= KEYS / 100);
	rl_free(state);
	route.rl_by = RL_IP;
	route.rl_header = NULL;
	tiers[0] = saved;
}

/* by = "ip": an IPv6 client is its /64 (configurable), since one host
 * commonly holds a whole /64; IPv4 and v4-mapped clients are their
 * address. */
static void
test_ipv6_grouped_by_prefix(void **st)
{
	struct xctx c;
	void *state = NULL;
	char key[RL_KEY_MAX], k2[RL_KEY_MAX];
	uint8_t a[16], b[16], other[16], mapped[16];
	size_t n, n2;

	(void)st;
	assert_int_equal(inet_pton(AF_INET6, "2001:db8:1:2::aaaa", a), 1);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8:1:2:ffff:1:2:3", b), 1);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8:1:3::1", other), 1);
	assert_int_equal(inet_pton(AF_INET6, "::ffff:192.0.2.9", mapped), 1);
	route.rl_by = RL_IP;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	ctx_init(&c, a, 0, 0);
	c.peer_family = AF_INET6;
	n = make_key(state, tier_of(state, &c), &c, key);
	assert_string_equal(key_value(key, n), "2001:db8:1:2::/64");
	c.peer_addr = b;
	n2 = make_key(state, tier_of(state, &c), &c, k2);
	assert_int_equal(n, n2);
	assert_memory_equal(key, k2, n);
	c.peer_addr = other;
	n = make_key(state, tier_of(state, &c), &c, key);
	assert_string_equal(key_value(key, n), "2001:db8:1:3::/64");
	c.peer_addr = mapped;
	n = make_key(state, tier_of(state, &c), &c, key);
	assert_string_equal(key_value(key, n), "192.0.2.9");
	/* Behind a trusted proxy, the forwarded IPv6 client likewise. */
	cfg.server.trusted = trusted_nets;
	cfg.server.ntrusted = 1;
	{
		static const uint8_t proxy[4] = { 10, 0, 0, 1 };

		set_hdr(0, "X-Forwarded-For", "2001:db8:9:9:1::7");
		ctx_init(&c, proxy, 1, 0);
		n = make_key(state, tier_of(state, &c), &c, key);
		assert_string_equal(key_value(key, n), "2001:db8:9:9::/64");
	}
	cfg.server.trusted = NULL;
	cfg.server.ntrusted = 0;
	rl_free(state);

	/* Another prefix; 128 keys each address on its own. */
	route.rl_v6_prefix = 48;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	ctx_init(&c, other, 0, 0);
	c.peer_family = AF_INET6;
	n = make_key(state, tier_of(state, &c), &c, key);
	assert_string_equal(key_value(key, n), "2001:db8:1::/48");
	rl_free(state);
	route.rl_v6_prefix = 128;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	ctx_init(&c, a, 0, 0);
	c.peer_family = AF_INET6;
	n = make_key(state, tier_of(state, &c), &c, key);
	assert_string_equal(key_value(key, n), "2001:db8:1:2::aaaa");
	rl_free(state);
	route.rl_v6_prefix = 0;
}

/* A worker holding LEASE_CAP keys takes exactly one token for a new key
 * and keeps nothing, so nothing is stranded and the table stays bounded. */
static void
test_full_lease_table_takes_one_token(void **st)
{
	static const uint8_t peer[4] = { 127, 0, 0, 12 };
	const struct bucket_params slow = { 1, 3600, 1000 };
	struct xctx c;
	struct bucket b;
	void *state = NULL;
	char key[RL_KEY_MAX], k[32];
	size_t n, held;
	int i, kl;

	(void)st;
	tiers[0].rate = 1;
	tiers[0].per_s = 3600;
	tiers[0].burst = 1000;
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	assert_non_null(leases());
	for (i = 0; lease_count(rl.tab) < LEASE_CAP; i++) {
		kl = snprintf(k, sizeof(k), "filler-%d", i);
		assert_non_null(lease_put(rl.tab, k, (size_t)kl,
		    lease_hash(rl.tab, k, (size_t)kl)));
	}
	held = lease_count(rl.tab);
	ctx_init(&c, peer, 0, 9000);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	n = make_key(state, tier_of(state, &c), &c, key);
	assert_int_equal(bucket_peek(store_of(&cfg), key, n, &slow,
	    store_now_ns(), &b), 1);
	assert_int_equal(bucket_whole(&b), 999);
	assert_int_equal(lease_count(rl.tab), held);
	/* The fillers hold nothing: the next tick clears them. */
	ratelimit_tick(9000 + LEASE_CHECK_MS);
	assert_false(ratelimit_pending());
	rl_free(state);
	tiers[0].rate = 10;
	tiers[0].per_s = 1;
	tiers[0].burst = 3;
}

/* Store bucket TIER/KIND/VALUE as a request would (a long value by its
 * hash), with tokens leased from it. */
static void
lease_for(const struct cfg_tier *t, const char *kind, const char *value)
{
	const struct bucket_params p = { t->rate, t->per_s, t->burst };
	char key[RL_KEY_MAX];
	size_t n = 0;

	put_part(key, &n, RL_NAME_MAX, t->name, strlen(t->name));
	key[n++] = '\0';
	memcpy(key + n, kind, strlen(kind));
	n += strlen(kind);
	key[n++] = '\0';
	put_part(key, &n, RL_VALUE_MAX, value, strlen(value));
	assert_int_equal(bucket_lease(store_of(&cfg), key, n, &p,
	    store_now_ns(), 1, 1, NULL), 1);
}

/* What gwctl limits shows and resets, as plain data: the buckets of one
 * value across tiers and kinds (a long value found by its hash, as
 * requests store it), and a reset that refills them. */
/* A worker is a fork of the master: the leases and store handle of the
 * process it forked from are not its own, and the pid they are checked
 * against (store_pid, read once) is the child's, not a copy of the
 * parent's. The child holds nothing until it leases for itself. */
static void
test_fork_child_leaves_parents_leases(void **st)
{
	static const uint8_t peer[4] = { 192, 0, 2, 9 };
	struct xctx c;
	void *state = NULL;
	int status, parent = (int)getpid();
	pid_t pid;

	(void)st;
	tiers[0].rate = 1;
	tiers[0].per_s = 3600;
	tiers[0].burst = 1000;
	assert_int_equal(store_pid(), parent);
	assert_int_equal(rl_init(&cfg, &route, NULL, &state), 1);
	ctx_init(&c, peer, 0, 1000);
	assert_int_equal(rl_request(&c, state, NULL), POLICY_CONTINUE);
	assert_true(ratelimit_pending());
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* no store use here: the parent's handle is not ours */
		if (store_pid() != (int)getpid() || store_pid() == parent)
			_exit(1);
		if (ratelimit_pending())
			_exit(2);
		if (store_proc(NULL, 0) != NULL)
			_exit(3);
		if (leases() == NULL || lease_count(rl.tab) != 0)
			_exit(4);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* the parent's are untouched */
	assert_int_equal(store_pid(), parent);
	assert_true(ratelimit_pending());
	rl_free(state);
	assert_false(ratelimit_pending());
	tiers[0].rate = 10;
	tiers[0].per_s = 1;
	tiers[0].burst = 3;
}

static void
test_find_and_reset(void **st)
{
	static char longv[201];
	struct ratelimit_view v[4];
	int n, i;

	(void)st;
	memset(longv, 'q', 200);
	lease_for(&tiers[0], "header:x-key", "findme");
	lease_for(&tiers[1], "ip", "findme");
	lease_for(&tiers[1], "header:x-key", longv);

	n = ratelimit_find(store_of(&cfg), "findme", 6, store_now_ns(), v, 4);
	assert_int_equal(n, 2);
	for (i = 0; i < n; i++) {
		const struct cfg_tier *t = strcmp(v[i].tier, "free") == 0 ?
		    &tiers[1] : &tiers[0];

		assert_string_equal(v[i].tier, t->name);
		assert_string_equal(v[i].by, t == &tiers[0] ? "header:x-key" :
		    "ip");
		assert_int_equal(v[i].burst, t->burst);
		assert_int_equal(v[i].rate, t->rate);
		assert_int_equal(v[i].per_s, t->per_s);
		assert_true(v[i].tokens <= v[i].burst);
		assert_true(v[i].tokens_micro / BUCKET_ONE == v[i].tokens);
	}
	assert_string_not_equal(v[0].tier, v[1].tier);
	assert_int_equal(ratelimit_find(store_of(&cfg), "findm", 5,
	    store_now_ns(), v, 4), 0);
	/* At most MAX. */
	assert_int_equal(ratelimit_find(store_of(&cfg), "findme", 6,
	    store_now_ns(), v, 1), 1);
	n = ratelimit_find(store_of(&cfg), longv, 200, store_now_ns(), v, 4);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].tier, "free");
	assert_string_equal(v[0].by, "header:x-key");

	n = ratelimit_find(store_of(&cfg), "findme", 6, store_now_ns(), v, 4);
	assert_int_equal(n, 2);
	for (i = 0; i < n; i++)
		assert_int_equal(ratelimit_reset(store_of(&cfg), &v[i]), 1);
	assert_int_equal(ratelimit_reset(store_of(&cfg), &v[0]), 0);
	assert_int_equal(ratelimit_find(store_of(&cfg), "findme", 6,
	    store_now_ns(), v, 4), 0);
	assert_int_equal(ratelimit_find(store_of(&cfg), longv, 200,
	    store_now_ns(), v, 4), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_ip),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_limit_and_headers),
		cmocka_unit_test(test_lease_returned),
		cmocka_unit_test(test_long_key_parts_bounded),
		cmocka_unit_test(test_many_keys_no_write_per_request),
		cmocka_unit_test(test_ipv6_grouped_by_prefix),
		cmocka_unit_test(test_full_lease_table_takes_one_token),
		cmocka_unit_test(test_find_and_reset),
		cmocka_unit_test(test_headers_exact),
		cmocka_unit_test(test_fork_child_leaves_parents_leases),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
