/*
 * The cache in front of malloc for OpenSSL's allocations: OpenSSL's
 * allocations go through it once set up, a freed block serves the next
 * request of its size class, and what it keeps is bounded per class, in
 * bytes, and to small blocks; functions set before it (here a counter,
 * as the RSS bench preloads one) stay underneath.
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "worker/tlsmem.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#endif
#ifdef ASAN
#include <sanitizer/asan_interface.h>
#endif

static bool hooked;

/* What reached the functions underneath the cache. */
static size_t under_mallocs, under_frees;

static void *
under_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	under_mallocs++;
	return malloc(n);
}

static void *
under_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return realloc(p, n);
}

static void
under_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	under_frees++;
	free(p);
}

static int
reset(void **state)
{
	(void)state;
	tlsmem_flush();
	return 0;
}

static void
test_openssl_allocations_go_through_the_cache(void **state)
{
	size_t u;
	void *p;

	(void)state;
	assert_true(hooked);
	assert_int_equal(tlsmem_cached(), 0);
	p = OPENSSL_malloc(100);
	assert_non_null(p);
	u = malloc_usable_size(p);
	OPENSSL_free(p);
	assert_int_equal(tlsmem_cached(), 16 * ((u + 8) / 16) - 8);
}

static void
test_a_freed_block_serves_its_class(void **state)
{
	void *p, *q;

	(void)state;
	p = OPENSSL_malloc(200);
	assert_non_null(p);
	memset(p, 0xab, 200);
	OPENSSL_free(p);
	q = OPENSSL_malloc(190);		/* the same 16-byte class */
	assert_ptr_equal(p, q);
	assert_true(malloc_usable_size(q) >= 190);
	OPENSSL_free(q);
	/* zalloc of a reused block is zeroed all the same */
	q = OPENSSL_zalloc(200);
	assert_ptr_equal(p, q);
	assert_int_equal(((unsigned char *)q)[0], 0);
	assert_int_equal(((unsigned char *)q)[199], 0);
	OPENSSL_free(q);
}

static void
test_a_class_keeps_at_most_its_count(void **state)
{
	enum { N = TLSMEM_CLASS_MAX + 40 };
	void *p[N];
	size_t i, u;

	(void)state;
	for (i = 0; i < N; i++)
		assert_non_null(p[i] = OPENSSL_malloc(64));
	/* a block counts as its class's size: 72 bytes with glibc's
	 * chunks (64 asked), 56 under ASan (which gives 64 exactly) */
	u = malloc_usable_size(p[0]);
	for (i = 0; i < N; i++)
		OPENSSL_free(p[i]);
	assert_int_equal(tlsmem_cached(),
	    TLSMEM_CLASS_MAX * (16 * ((u + 8) / 16) - 8));
}

static void
test_the_cache_keeps_at_most_its_bytes(void **state)
{
	enum { PER = TLSMEM_CLASS_MAX, SIZES = 6 };
	static void *p[SIZES][PER];
	size_t s, i;

	(void)state;
	/* six classes of 750 to 1000 bytes, 256 blocks each: 1.3 MiB */
	for (s = 0; s < SIZES; s++)
		for (i = 0; i < PER; i++)
			assert_non_null(p[s][i] =
			    OPENSSL_malloc(750 + 50 * s));
	for (s = 0; s < SIZES; s++)
		for (i = 0; i < PER; i++)
			OPENSSL_free(p[s][i]);
	assert_true(tlsmem_cached() <= TLSMEM_BYTES_MAX);
	assert_true(tlsmem_cached() > TLSMEM_BYTES_MAX - TLSMEM_SMALL - 8);
}

static void
test_large_blocks_are_not_kept(void **state)
{
	size_t before = tlsmem_cached();
	void *p;

	(void)state;
	p = OPENSSL_malloc(TLSMEM_SMALL + 1);
	assert_non_null(p);
	OPENSSL_free(p);
	p = OPENSSL_malloc(17 * 1024);		/* a record buffer */
	assert_non_null(p);
	OPENSSL_free(p);
	assert_int_equal(tlsmem_cached(), before);
}

static void
test_blocks_too_small_for_a_link_are_not_kept(void **state)
{
	size_t u;
	void *p;

	(void)state;
	/* glibc never gives under 24 bytes; ASan gives 4 for 4 */
	p = OPENSSL_malloc(4);
	assert_non_null(p);
	u = malloc_usable_size(p);
	OPENSSL_free(p);
	assert_int_equal(tlsmem_cached(), u < 8 ? 0 : 16 * ((u + 8) / 16) - 8);
}

static void
test_what_it_does_not_serve_goes_underneath(void **state)
{
	size_t m = under_mallocs, f = under_frees;
	void *p;

	(void)state;
	/* 104 bytes: the same class asked and given, with glibc's chunks
	 * and under ASan */
	assert_true(tlsmem_init());		/* again: nothing changes */
	p = OPENSSL_malloc(104);		/* a miss: from underneath */
	assert_int_equal(under_mallocs, m + 1);
	OPENSSL_free(p);			/* kept */
	assert_int_equal(under_frees, f);
	p = OPENSSL_malloc(104);		/* a hit */
	assert_int_equal(under_mallocs, m + 1);
	OPENSSL_free(p);
	p = OPENSSL_malloc(TLSMEM_SMALL * 4);	/* too large to keep */
	OPENSSL_free(p);
	assert_int_equal(under_mallocs, m + 2);
	assert_int_equal(under_frees, f + 1);
	tlsmem_flush();				/* the kept block goes back */
	assert_int_equal(under_frees, f + 2);
}

/* Under ASan (make check-asan) a kept block is poisoned but for its
 * 8-byte link, and unpoisoned when it serves again; elsewhere there is
 * nothing to poison and this checks only the reuse. */
static void
test_kept_blocks_are_poisoned_under_asan(void **state)
{
	unsigned char *p, *q;

	(void)state;
	p = OPENSSL_malloc(104);	/* the same class asked and given */
	assert_non_null(p);
	OPENSSL_free(p);
#ifdef ASAN
	assert_false(__asan_address_is_poisoned(p));	/* the link */
	assert_true(__asan_address_is_poisoned(p + 8));
	assert_true(__asan_address_is_poisoned(p + 103));
#endif
	q = OPENSSL_malloc(104);
	assert_ptr_equal(p, q);
#ifdef ASAN
	assert_int_equal(__asan_region_is_poisoned(q, 104), NULL);
#endif
	OPENSSL_free(q);
}

static void
test_zero_sizes_and_realloc(void **state)
{
	unsigned char *p;
	size_t i;

	(void)state;
	assert_null(OPENSSL_malloc(0));		/* as OpenSSL's own */
	p = OPENSSL_realloc(NULL, 50);
	assert_non_null(p);
	for (i = 0; i < 50; i++)
		p[i] = (unsigned char)i;
	p = OPENSSL_realloc(p, 5000);		/* grows past the cache */
	assert_non_null(p);
	for (i = 0; i < 50; i++)
		assert_int_equal(p[i], i);
	assert_null(OPENSSL_realloc(p, 0));	/* frees */
}

static void
test_openssl_works_through_it(void **state)
{
	unsigned char md[32];
	unsigned int len = 0;
	EVP_PKEY *k;
	int i;

	(void)state;
	/* a key made and freed a few times over: blocks go round */
	for (i = 0; i < 3; i++) {
		k = EVP_EC_gen("P-256");
		assert_non_null(k);
		EVP_PKEY_free(k);
	}
	assert_int_equal(EVP_Digest("abc", 3, md, &len, EVP_sha256(), NULL),
	    1);
	assert_int_equal(len, 32);
	assert_int_equal(md[0], 0xba);		/* SHA-256("abc") */
	assert_int_equal(md[31], 0xad);
	assert_true(tlsmem_cached() > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(
		    test_openssl_allocations_go_through_the_cache, reset),
		cmocka_unit_test_setup(test_a_freed_block_serves_its_class,
		    reset),
		cmocka_unit_test_setup(test_a_class_keeps_at_most_its_count,
		    reset),
		cmocka_unit_test_setup(test_the_cache_keeps_at_most_its_bytes,
		    reset),
		cmocka_unit_test_setup(test_large_blocks_are_not_kept, reset),
		cmocka_unit_test_setup(
		    test_blocks_too_small_for_a_link_are_not_kept, reset),
		cmocka_unit_test_setup(
		    test_what_it_does_not_serve_goes_underneath, reset),
		cmocka_unit_test_setup(test_kept_blocks_are_poisoned_under_asan,
		    reset),
		cmocka_unit_test_setup(test_zero_sizes_and_realloc, reset),
		cmocka_unit_test_setup(test_openssl_works_through_it, reset),
	};

	/* before anything allocates in OpenSSL: a counter, then the cache */
	if (CRYPTO_set_mem_functions(under_malloc, under_realloc,
	    under_free) != 1)
		return 1;
	hooked = tlsmem_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
