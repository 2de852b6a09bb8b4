/*
 * hash: the one hash function for non-cryptographic use (hash tables,
 * balancing). A leaf: it includes nothing of the tree, so every layer may
 * use it. Keys a client chooses that must not collide on purpose (rate
 * limit values) are named by SHA-256 instead (policies/ratelimit.c).
 *
 * hash_bytes: FNV-1a over the bytes from a basis of SEED (0 for the
 * standard basis), then MurmurHash3's 64-bit finaliser, so that every
 * output bit depends on every input bit: the low bits alone (a table
 * index, a modulo) are as good as the whole. With a secret SEED, keys
 * cannot be aimed at one chain of a table.
 *
 * hash_long: the same promise for long keys (a bearer token: hundreds of
 * bytes), eight bytes at a step where hash_bytes takes one: each 16-byte
 * block is folded into the state by one 64x64->128-bit multiply, the tail
 * read into zeroed words, the length mixed in, then the finaliser above.
 * Not a MAC: a table keyed by it still compares the whole key on a hit
 * (policies/jwt_cache.c). Its values are its own, not hash_bytes's.
 */
#ifndef PORTICO_HASH_H
#define PORTICO_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HASH_FNV_BASIS	14695981039346656037ull
#define HASH_FNV_PRIME	1099511628211ull

static inline uint64_t
hash_final(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static inline uint64_t
hash_bytes(const void *p, size_t len, uint64_t seed)
{
	const unsigned char *b = p;
	uint64_t h = HASH_FNV_BASIS ^ seed;

	while (len-- > 0)
		h = (h ^ *b++) * HASH_FNV_PRIME;
	return hash_final(h);
}

/* Both halves of A * B, folded: every bit of either input reaches the
 * middle bits of the result. */
static inline uint64_t
hash_fold(uint64_t a, uint64_t b)
{
	unsigned __int128 r = (unsigned __int128)a * b;

	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t
hash_long(const void *p, size_t len, uint64_t seed)
{
	const unsigned char *b = p;
	uint64_t h = seed ^ 0x9e3779b97f4a7c15ull, w0, w1;
	size_t n = len;

	for (; n >= 16; b += 16, n -= 16) {
		memcpy(&w0, b, 8);
		memcpy(&w1, b + 8, 8);
		/* the odd constants keep a zero word from zeroing a factor
		 * on its own */
		h = hash_fold(w0 ^ h ^ 0xa0761d6478bd642full,
		    w1 ^ seed ^ 0xe7037ed1a0b428dbull);
	}
	w0 = w1 = 0;
	if (n > 8) {
		memcpy(&w0, b, 8);
		memcpy(&w1, b + 8, n - 8);
	} else {
		memcpy(&w0, b, n);
	}
	h = hash_fold(w0 ^ h ^ 0x8ebc6af09c88c6e3ull,
	    w1 ^ (uint64_t)len ^ 0x589965cc75374cc3ull);
	return hash_final(h);
}

#endif
