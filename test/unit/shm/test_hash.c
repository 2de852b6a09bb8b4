/*
 * The one hash function (shm/hash.h): known values (computed apart, by
 * the Python reference in test/integration/test_gwctl.py), the seed
 * changing the result, and the balancer's hash being its low 32 bits.
 * hash_long (the token cache's): every bit of the key and of the seed
 * and the length reach the result, no byte past the key is read, and
 * its low bits spread token-like keys over a table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "shm/hash.h"
#include "worker/upstream.h"

static void
test_known_values(void **st)
{
	(void)st;
	assert_true(hash_bytes("", 0, 0) == 0xefd01f60ba992926ull);
	assert_true(hash_bytes("a", 1, 0) == 0x82a2a958a9bece5bull);
	assert_true(hash_bytes("portico", 7, 0) == 0xad8532473b5770daull);
	assert_true(hash_bytes("portico", 7, 0x1234) ==
	    0xd2a620bca0e60695ull);
}

static void
test_balancer_uses_it(void **st)
{
	(void)st;
	assert_int_equal(upstream_hash("portico", 7),
	    (uint32_t)hash_bytes("portico", 7, 0));
	assert_int_equal(upstream_hash("", 0), 0xba992926u);
}

/* Flipping any one bit of the key, at every length up to 64 and at a
 * bearer token's length, changes the hash; so does the seed. */
static void
test_long_every_bit_counts(void **st)
{
	static const size_t lens[] = { 1, 7, 8, 9, 15, 16, 17, 31, 32, 33,
	    63, 64, 485 };
	unsigned char k[485];
	uint64_t seeds[] = { 0, 0x0123456789abcdefull }, h;
	size_t li, i, s;
	int bit;

	(void)st;
	for (i = 0; i < sizeof(k); i++)
		k[i] = (unsigned char)(i * 37 + 11);
	for (s = 0; s < 2; s++) {
		for (li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
			size_t n = lens[li];

			h = hash_long(k, n, seeds[s]);
			assert_true(h == hash_long(k, n, seeds[s]));
			assert_true(h != hash_long(k, n, seeds[s] ^ 1));
			for (i = 0; i < n; i++)
				for (bit = 0; bit < 8; bit++) {
					k[i] ^= (unsigned char)(1u << bit);
					assert_true(hash_long(k, n, seeds[s]) !=
					    h);
					k[i] ^= (unsigned char)(1u << bit);
				}
		}
	}
}

/* Keys that differ only by trailing zero bytes (the tail is read into
 * zeroed words) differ by their length. */
static void
test_long_length_counts(void **st)
{
	unsigned char z[40];
	uint64_t h[sizeof(z) + 1];
	size_t i, j;

	(void)st;
	memset(z, 0, sizeof(z));
	for (i = 0; i <= sizeof(z); i++) {
		h[i] = hash_long(z, i, 7);
		for (j = 0; j < i; j++)
			assert_true(h[i] != h[j]);
	}
}

/* The key ends at a PROT_NONE page: a read past it would crash. */
static void
test_long_reads_only_the_key(void **st)
{
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char *m;
	size_t n;

	(void)st;
	m = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(mprotect(m + pg, (size_t)pg, PROT_NONE), 0);
	memset(m, 'x', (size_t)pg);
	for (n = 0; n <= 100; n++)
		(void)hash_long(m + pg - n, n, 1);
	munmap(m, (size_t)pg * 2);
}

/* 4096 token-like keys (one counter differs) in 4096 chains by the low
 * bits: no chain past a handful (a random spread's longest is about 7). */
static void
test_long_low_bits_spread(void **st)
{
	static unsigned chain[4096];
	char key[600];
	unsigned i, longest = 0;
	size_t n;

	(void)st;
	memset(key, 'e', sizeof(key));
	for (i = 0; i < 4096; i++) {
		n = (size_t)snprintf(key + 400, 32, "%u", i) + 400;
		key[n] = 'e';
		n = 485;
		chain[hash_long(key, n, 0x9e37) & 4095]++;
	}
	for (i = 0; i < 4096; i++)
		if (chain[i] > longest)
			longest = chain[i];
	assert_true(longest <= 10);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_values),
		cmocka_unit_test(test_balancer_uses_it),
		cmocka_unit_test(test_long_every_bit_counts),
		cmocka_unit_test(test_long_length_counts),
		cmocka_unit_test(test_long_reads_only_the_key),
		cmocka_unit_test(test_long_low_bits_spread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
