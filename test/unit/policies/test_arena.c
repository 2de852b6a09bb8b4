/*
 * The exchange arena: alignment, growth into new chunks, big allocations
 * with their own chunk, reset returning chunks to the worker's cache (and
 * reusing them), the cache's bound.
 */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../../policies/arena.c"

static void
t_empty_costs_nothing(void **st)
{
	struct arena_cache c = { 0 };
	struct arena a;

	(void)st;
	arena_init(&a, &c);
	assert_null(a.chunks);
	arena_reset(&a);
	assert_int_equal(c.nfree, 0);
}

static void
t_alignment_and_growth(void **st)
{
	struct arena_cache c = { 0 };
	struct arena a;
	char *p[200];
	unsigned i, chunks = 0;
	struct arena_chunk *k;

	(void)st;
	arena_init(&a, &c);
	for (i = 0; i < 200; i++) {
		p[i] = arena_alloc(&a, 1 + i % 40);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % alignof(max_align_t), 0);
		memset(p[i], (int)i, 1 + i % 40);
	}
	/* nothing overlapped */
	for (i = 0; i < 200; i++)
		assert_int_equal((unsigned char)p[i][i % 40], i & 255);
	for (k = a.chunks; k != NULL; k = k->next)
		chunks++;
	assert_true(chunks >= 2);
	arena_reset(&a);
	assert_int_equal(c.nfree, chunks);
	/* the next exchange reuses them: no malloc */
	arena_init(&a, &c);
	assert_non_null(arena_alloc(&a, 100));
	assert_int_equal(c.nfree, chunks - 1);
	arena_reset(&a);
	arena_cache_free(&c);
	assert_int_equal(c.nfree, 0);
}

static void
t_big_allocation(void **st)
{
	struct arena_cache c = { 0 };
	struct arena a;
	char *small, *big, *after;

	(void)st;
	arena_init(&a, &c);
	small = arena_alloc(&a, 16);
	big = arena_alloc(&a, 100000);
	assert_non_null(big);
	memset(big, 'b', 100000);
	/* the current chunk's free space is still used after a big one */
	after = arena_alloc(&a, 16);
	assert_true(after > small && after < small + ARENA_CHUNK);
	assert_true(a.used >= 100000 + 32);
	arena_reset(&a);
	/* the big chunk is freed, not cached */
	assert_int_equal(c.nfree, 1);
	arena_cache_free(&c);
}

static void
t_dup(void **st)
{
	struct arena_cache c = { 0 };
	struct arena a;
	char *d;

	(void)st;
	arena_init(&a, &c);
	d = arena_dup(&a, "consumer-42xyz", 11);
	assert_string_equal(d, "consumer-42");
	arena_reset(&a);
	arena_cache_free(&c);
}

static void
t_cache_bound(void **st)
{
	struct arena_cache c = { 0 };
	struct arena a;
	unsigned i;

	(void)st;
	arena_init(&a, &c);
	for (i = 0; i < ARENA_KEEP + 50; i++)
		assert_non_null(arena_alloc(&a, DATA_BYTES / 4));
	arena_reset(&a);
	assert_int_equal(c.nfree, ARENA_KEEP);
	arena_cache_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_empty_costs_nothing),
		cmocka_unit_test(t_alignment_and_growth),
		cmocka_unit_test(t_big_allocation),
		cmocka_unit_test(t_dup),
		cmocka_unit_test(t_cache_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
