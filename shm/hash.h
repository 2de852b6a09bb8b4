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
 */
#ifndef PORTICO_HASH_H
#define PORTICO_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_BASIS	14695981039346656037ull
#define HASH_FNV_PRIME	1099511628211ull

static inline uint64_t
hash_bytes(const void *p, size_t len, uint64_t seed)
{
	const unsigned char *b = p;
	uint64_t h = HASH_FNV_BASIS ^ seed;

	while (len-- > 0)
		h = (h ^ *b++) * HASH_FNV_PRIME;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

#endif
