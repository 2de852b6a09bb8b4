/*
 * jwt_cache: the verified-token cache of one worker (jwt.h): a fixed
 * array of entries, chained in a power-of-two hash table by a seeded
 * 64-bit hash of the token (shm/hash.h) and linked in LRU order, so a
 * hit, a miss and an eviction are O(1) and a full cache reuses its
 * entries' buffers (no malloc in the steady state).
 *
 * The hash only finds the chain: a hit is the whole token, kept in the
 * entry, compared byte for byte (in constant time: the cached tokens are
 * credentials). So two tokens that share a hash are two entries, and
 * neither ever answers for the other. The hash costs a few hundred
 * cycles where the SHA-256 that keyed this cache before cost more than
 * the rest of the request's policies. The memory is the tokens' length
 * (at most JWT_MAX_TOKEN) plus their claims per entry, and only tokens
 * that verified get in.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "../shm/hash.h"
#include "jwt.h"

#define NIL	UINT32_MAX

static int64_t
until_of(int64_t now, const struct jwt_result *r)
{
	if (r->has_exp)
		return r->valid_until;
	return now > INT64_MAX - JWT_CACHE_MAX_AGE ? INT64_MAX :
	    now + JWT_CACHE_MAX_AGE;
}

struct centry {
	uint64_t h;			/* hash_long of the token */
	size_t toklen;			/* the token: buf[0..toklen) */
	int64_t until;			/* first second it is stale */
	struct jwt_result r;		/* strings point into buf */
	char *buf;			/* the token, then the strings,
					 * NUL-ended */
	size_t bufcap;
	uint32_t prev, next;		/* LRU list, most recent first */
	uint32_t hnext;			/* hash chain, or free list */
};

struct jwt_cache {
	struct centry *e;
	uint32_t cap, n;
	uint32_t *bucket;		/* nbucket chains of entry indices */
	uint32_t mask;
	uint32_t head, tail;		/* most and least recently used */
	uint32_t free;			/* unused entries via hnext */
	uint64_t seed;			/* of the hash: secret, per cache */
};

struct jwt_cache *
jwt_cache_new(size_t cap)
{
	struct jwt_cache *c;
	uint32_t i, nb = 1;

	if (cap == 0)
		cap = JWT_CACHE_SIZE;
	if (cap > (1u << 24))
		cap = 1u << 24;
	while (nb < cap)
		nb <<= 1;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->e = calloc(cap, sizeof(*c->e));
	c->bucket = malloc(nb * sizeof(*c->bucket));
	if (c->e == NULL || c->bucket == NULL) {
		jwt_cache_free(c);
		return NULL;
	}
	/* A seed no client knows keeps tokens from being made to share a
	 * chain; a clock-made one would still be correct (hits compare
	 * the token), only easier to aim at. */
	if (RAND_bytes((unsigned char *)&c->seed, sizeof(c->seed)) != 1)
		c->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)c;
	c->cap = (uint32_t)cap;
	c->mask = nb - 1;
	for (i = 0; i < nb; i++)
		c->bucket[i] = NIL;
	for (i = 0; i < c->cap; i++)
		c->e[i].hnext = i + 1 < c->cap ? i + 1 : NIL;
	c->free = 0;
	c->head = c->tail = NIL;
	return c;
}

void
jwt_cache_free(struct jwt_cache *c)
{
	uint32_t i;

	if (c == NULL)
		return;
	for (i = 0; c->e != NULL && i < c->cap; i++)
		free(c->e[i].buf);
	free(c->e);
	free(c->bucket);
	free(c);
}

size_t
jwt_cache_count(const struct jwt_cache *c)
{
	return c->n;
}

static uint32_t
bucket_of(const struct jwt_cache *c, uint64_t h)
{
	return (uint32_t)h & c->mask;
}

/* Whether A and B (N bytes each) are the same, in a time that depends on
 * N only: no branch on the bytes, as CRYPTO_memcmp, but eight at a step
 * (CRYPTO_memcmp takes one: 0.5 us for a 485-byte token, measured here,
 * as much as the rest of a cache hit). */
static bool
same_bytes(const char *a, const char *b, size_t n)
{
	uint64_t x, y, d = 0;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		d |= x ^ y;
	}
	for (; i < n; i++)
		d |= (uint64_t)((unsigned char)a[i] ^ (unsigned char)b[i]);
	return d == 0;
}

/* The entry of TOK (LEN bytes, hashing to H), or NIL. */
static uint32_t
cache_find(const struct jwt_cache *c, uint64_t h, const char *tok,
    size_t len)
{
	const struct centry *e;
	uint32_t i;

	for (i = c->bucket[bucket_of(c, h)]; i != NIL; i = e->hnext) {
		e = &c->e[i];
		if (e->h == h && e->toklen == len &&
		    same_bytes(e->buf, tok, len))
			return i;
	}
	return NIL;
}

static void
lru_unlink(struct jwt_cache *c, uint32_t i)
{
	struct centry *e = &c->e[i];

	if (e->prev != NIL)
		c->e[e->prev].next = e->next;
	else
		c->head = e->next;
	if (e->next != NIL)
		c->e[e->next].prev = e->prev;
	else
		c->tail = e->prev;
}

static void
lru_front(struct jwt_cache *c, uint32_t i)
{
	struct centry *e = &c->e[i];

	e->prev = NIL;
	e->next = c->head;
	if (c->head != NIL)
		c->e[c->head].prev = i;
	c->head = i;
	if (c->tail == NIL)
		c->tail = i;
}

/* Take entry I out of its chain and the LRU list, onto the free list. */
static void
cache_drop(struct jwt_cache *c, uint32_t i)
{
	uint32_t *pp = &c->bucket[bucket_of(c, c->e[i].h)];

	while (*pp != i)
		pp = &c->e[*pp].hnext;
	*pp = c->e[i].hnext;
	lru_unlink(c, i);
	c->e[i].hnext = c->free;
	c->free = i;
	c->n--;
}

static uint64_t
token_hash(const struct jwt_cache *c, const char *tok, size_t len)
{
	return hash_long(tok, len, c->seed);
}

/* jwt_cache_get for a token whose hash is H (a test may pass any). */
static int
cache_get_hash(struct jwt_cache *c, uint64_t h, const char *tok,
    size_t len, int64_t now, struct arena *a, struct jwt_result *out)
{
	uint32_t i = cache_find(c, h, tok, len);
	const struct jwt_result *r;

	if (i == NIL)
		return -1;
	if (now >= c->e[i].until) {
		cache_drop(c, i);
		return -1;
	}
	r = &c->e[i].r;
	*out = *r;
	out->consumer = arena_dup(a, r->consumer, r->consumer_len);
	out->scopes = arena_dup(a, r->scopes, r->scopes_len);
	out->tier = r->tier != NULL ? arena_dup(a, r->tier, r->tier_len) :
	    NULL;
	if (out->consumer == NULL || out->scopes == NULL ||
	    (r->tier != NULL && out->tier == NULL)) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	lru_unlink(c, i);
	lru_front(c, i);
	return 0;
}

/* jwt_cache_put for a token whose hash is H (a test may pass any). */
static int
cache_put_hash(struct jwt_cache *c, uint64_t h, const char *tok,
    size_t len, int64_t now, const struct jwt_result *r)
{
	size_t need = len + r->consumer_len + 1 + r->tier_len + 1 +
	    r->scopes_len + 1;
	uint32_t i = cache_find(c, h, tok, len), b;
	struct centry *e;
	char *p;

	if (i != NIL) {
		cache_drop(c, i);
	} else if (c->n == c->cap) {
		cache_drop(c, c->tail);
	}
	i = c->free;
	e = &c->e[i];
	if (e->bufcap < need) {
		p = realloc(e->buf, need);
		if (p == NULL)
			return -1;
		e->buf = p;
		e->bufcap = need;
	}
	c->free = e->hnext;
	e->h = h;
	e->toklen = len;
	e->r = *r;
	e->until = until_of(now, r);
	p = e->buf;
	memcpy(p, tok, len);
	p += len;
	memcpy(p, r->consumer, r->consumer_len);
	p[r->consumer_len] = '\0';
	e->r.consumer = p;
	p += r->consumer_len + 1;
	memcpy(p, r->scopes != NULL ? r->scopes : "", r->scopes_len);
	p[r->scopes_len] = '\0';
	e->r.scopes = p;
	p += r->scopes_len + 1;
	if (r->tier != NULL) {
		memcpy(p, r->tier, r->tier_len);
		p[r->tier_len] = '\0';
		e->r.tier = p;
	}
	b = bucket_of(c, h);
	e->hnext = c->bucket[b];
	c->bucket[b] = i;
	lru_front(c, i);
	c->n++;
	return 0;
}

int
jwt_cache_get(struct jwt_cache *c, const char *tok, size_t len,
    int64_t now_s, struct arena *a, struct jwt_result *out)
{
	return cache_get_hash(c, token_hash(c, tok, len), tok, len, now_s, a,
	    out);
}

int
jwt_cache_put(struct jwt_cache *c, const char *tok, size_t len,
    int64_t now_s, const struct jwt_result *r)
{
	if (r->consumer == NULL)
		return -1;
	return cache_put_hash(c, token_hash(c, tok, len), tok, len, now_s,
	    r);
}

void
jwt_cache_clear(struct jwt_cache *c)
{
	while (c->head != NIL)
		cache_drop(c, c->head);
}
