/*
 * The one hash function (shm/hash.h): known values (computed apart, by
 * the Python reference in test/integration/test_gwctl.py), the seed
 * changing the result, and the balancer's hash being its low 32 bits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_values),
		cmocka_unit_test(test_balancer_uses_it),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
