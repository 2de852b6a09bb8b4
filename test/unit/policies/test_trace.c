/*
 * Trace ids and W3C Trace Context: the traceparent parser (lengths, case,
 * zero ids, versions, separators), the X-Trace-ID rule, and how a
 * request's trace id and the traceparent sent upstream are settled.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../../policies/trace.c"

#define TID	"4bf92f3577b34da6a3ce929d0e0e4736"
#define PID	"00f067aa0ba902b7"

static int
parse(const char *v, struct traceparent *tp)
{
	return traceparent_parse(v, strlen(v), tp);
}

static void
t_parse_valid(void **st)
{
	struct traceparent tp;

	(void)st;
	assert_int_equal(parse("00-" TID "-" PID "-01", &tp), 0);
	assert_memory_equal(tp.trace_id, TID, 32);
	assert_memory_equal(tp.parent_id, PID, 16);
	assert_int_equal(tp.flags, 0x01);
	/* Version 00 keeps every flag bit it was given. */
	assert_int_equal(parse("00-" TID "-" PID "-09", &tp), 0);
	assert_int_equal(tp.flags, 0x09);
	assert_int_equal(parse("00-" TID "-" PID "-00", &tp), 0);
	assert_int_equal(tp.flags, 0);
}

static void
t_parse_invalid(void **st)
{
	static const char *const bad[] = {
		"",
		"00",
		"00-" TID "-" PID "-0",			/* 54: short */
		"00-" TID "-" PID "-011",		/* 56 for 00 */
		"00-" TID "-" PID "-01-",		/* 00 has no more fields */
		"00-" TID "1-" PID "-01",		/* trace id 33 */
		"00-4bf92f3577b34da6a3ce929d0e0e473-" PID "1-01",
		"00-" TID "-00f067aa0ba902b-01x",	/* parent id 15 */
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01",
		"00-" TID "-00F067AA0BA902B7-01",
		"00-" TID "-" PID "-0A",		/* uppercase flags */
		"0A-" TID "-" PID "-01",		/* uppercase version */
		"00-00000000000000000000000000000000-" PID "-01",
		"00-" TID "-0000000000000000-01",
		"ff-" TID "-" PID "-01",		/* forbidden version */
		"ff-" TID "-" PID "-01-more",
		"0g-" TID "-" PID "-01",
		"00_" TID "-" PID "-01",		/* separators */
		"00-" TID "_" PID "-01",
		"00-" TID "-" PID "_01",
		"00-" TID "-" PID "-0g",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-" PID "-01",
		"00-" TID "-00f067aa0ba902bz-01",
		" 0-" TID "-" PID "-01",
		"cc-" TID "-" PID "-01x",		/* later version: no '-' */
		"cc-" TID "-" PID "-0",			/* later version: short */
	};
	struct traceparent tp;
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(bad[i], &tp) != -1)
			fail_msg("accepted '%s'", bad[i]);
}

static void
t_parse_later_version(void **st)
{
	struct traceparent tp;

	(void)st;
	/* Read by the 00 layout; only the sampled flag is kept. */
	assert_int_equal(parse("cc-" TID "-" PID "-09", &tp), 0);
	assert_int_equal(tp.flags, 0x01);
	assert_int_equal(parse("01-" TID "-" PID "-08-what-comes-next",
	    &tp), 0);
	assert_memory_equal(tp.trace_id, TID, 32);
	assert_int_equal(tp.flags, 0);
}

static void
t_trace_id_rule(void **st)
{
	(void)st;
	assert_true(trace_id_ok("a", 1));
	assert_true(trace_id_ok("Req_42-x", 8));
	assert_true(trace_id_ok(TID, 32));
	assert_false(trace_id_ok(TID "a", 33));
	assert_false(trace_id_ok("", 0));
	assert_false(trace_id_ok("a.b", 3));
	assert_false(trace_id_ok("a b", 3));
}

static bool
lower_hex(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		    (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

/* The traceparent out: version 00, trace id T (or any when NULL), a
 * fresh parent id, FLAGS. */
static void
check_out(const struct xctx *cx, const char *t, const char *flags)
{
	const char *o = cx->traceparent;

	assert_int_equal(strlen(o), TRACEPARENT_LEN);
	assert_memory_equal(o, "00-", 3);
	assert_true(lower_hex(o + 3, 32));
	if (t != NULL)
		assert_memory_equal(o + 3, t, 32);
	assert_int_equal(o[35], '-');
	assert_true(lower_hex(o + 36, 16));
	assert_memory_not_equal(o + 36, "0000000000000000", 16);
	assert_memory_not_equal(o + 36, PID, 16);
	assert_int_equal(o[52], '-');
	assert_string_equal(o + 53, flags);
}

static void
t_settle_fresh(void **st)
{
	struct xctx cx;
	uint64_t rng = 12345;

	(void)st;
	memset(&cx, 0, sizeof(cx));
	trace_settle(&cx, &rng, NULL, 0, NULL, 0, 0);
	assert_int_equal(cx.trace_len, 32);
	assert_true(lower_hex(cx.trace, 32));
	assert_int_equal(cx.trace[32], '\0');
	/* One id for both, marked sampled; no tracestate. */
	check_out(&cx, cx.trace, "01");
	assert_false(cx.tracestate_ok);
}

static void
t_settle_from_traceparent(void **st)
{
	const char *in = "00-" TID "-" PID "-09";
	struct xctx cx;
	char first[56];
	uint64_t rng = 99;

	(void)st;
	memset(&cx, 0, sizeof(cx));
	trace_settle(&cx, &rng, NULL, 0, in, strlen(in), 1);
	assert_string_equal(cx.trace, TID);
	check_out(&cx, TID, "09");
	assert_true(cx.tracestate_ok);
	/* Another hop: same trace, another span. */
	memcpy(first, cx.traceparent, sizeof(first));
	trace_settle(&cx, &rng, NULL, 0, in, strlen(in), 1);
	assert_memory_equal(cx.traceparent, first, 36);
	assert_memory_not_equal(cx.traceparent + 36, first + 36, 16);

	/* X-Trace-ID wins as the trace id; traceparent keeps its own. */
	trace_settle(&cx, &rng, "req-7", 5, in, strlen(in), 1);
	assert_string_equal(cx.trace, "req-7");
	check_out(&cx, TID, "09");
	assert_true(cx.tracestate_ok);

	/* Two traceparent headers: invalid, a new trace. */
	trace_settle(&cx, &rng, NULL, 0, in, strlen(in), 2);
	assert_string_not_equal(cx.trace, TID);
	check_out(&cx, cx.trace, "01");
	assert_false(cx.tracestate_ok);
}

static void
t_settle_invalid_replaced(void **st)
{
	const char *in = "00-" TID "-" PID "-0";
	struct xctx cx;
	uint64_t rng = 7;

	(void)st;
	memset(&cx, 0, sizeof(cx));
	trace_settle(&cx, &rng, NULL, 0, in, strlen(in), 1);
	assert_string_not_equal(cx.trace, TID);
	check_out(&cx, cx.trace, "01");
	assert_memory_not_equal(cx.traceparent + 3, TID, 32);
	assert_false(cx.tracestate_ok);
}

static void
t_settle_from_trace_header(void **st)
{
	struct xctx cx;
	uint64_t rng = 5;
	char out[33];

	(void)st;
	memset(&cx, 0, sizeof(cx));
	/* 32 hex digits, any case: the same id, lowercased. */
	trace_settle(&cx, &rng, "4BF92F3577B34DA6A3CE929D0E0E4736", 32, NULL,
	    0, 0);
	assert_string_equal(cx.trace, "4BF92F3577B34DA6A3CE929D0E0E4736");
	check_out(&cx, TID, "01");
	/* Not a W3C id (short, not hex, all zeros): a fresh one. */
	trace_settle(&cx, &rng, "order-17", 8, NULL, 0, 0);
	assert_string_equal(cx.trace, "order-17");
	check_out(&cx, NULL, "01");
	trace_settle(&cx, &rng, "00000000000000000000000000000000", 32, NULL,
	    0, 0);
	check_out(&cx, NULL, "01");
	assert_memory_not_equal(cx.traceparent + 3,
	    "00000000000000000000000000000000", 32);
	trace_settle(&cx, &rng, "4bf92f3577b34da6a3ce929d0e0e473x", 32, NULL,
	    0, 0);
	memcpy(out, cx.traceparent + 3, 32);
	out[32] = '\0';
	assert_string_not_equal(out, "4bf92f3577b34da6a3ce929d0e0e473x");
	check_out(&cx, NULL, "01");
}

static void
t_hex_never_zero(void **st)
{
	char out[64];
	uint64_t rng = 1, before;
	int i, j;

	(void)st;
	for (i = 0; i < 1000; i++) {
		before = rng;
		trace_hex(&rng, out, 64);
		assert_true(rng != before && rng != 0);
		assert_true(lower_hex(out, 64));
		for (j = 0; j < 64; j += 16)
			assert_memory_not_equal(out + j, "0000000000000000",
			    16);
	}
}

/* Each 16 digits are the 64-bit value of the generator's step, most
 * significant first, as printf writes it (the digits are made eight
 * bytes at a time). */
static void
t_hex_is_the_steps_value(void **st)
{
	char out[48], want[49];
	uint64_t rng = 0x9e3779b97f4a7c15ull, s;
	int i, k;

	(void)st;
	for (i = 0; i < 2000; i++) {
		s = rng;
		trace_hex(&rng, out, 48);
		for (k = 0; k < 3; k++) {
			s ^= s >> 12;
			s ^= s << 25;
			s ^= s >> 27;
			snprintf(want + 16 * k, 17, "%016llx",
			    (unsigned long long)(s * 2685821657736338717ull));
		}
		assert_memory_equal(out, want, 48);
		assert_true(rng == s);
	}
	/* every digit value, both ends of each byte */
	rng = 1;
	for (i = 0; i < 200; i++) {
		trace_hex(&rng, out, 16);
		assert_true(lower_hex(out, 16));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_parse_valid),
		cmocka_unit_test(t_parse_invalid),
		cmocka_unit_test(t_parse_later_version),
		cmocka_unit_test(t_trace_id_rule),
		cmocka_unit_test(t_settle_fresh),
		cmocka_unit_test(t_settle_from_traceparent),
		cmocka_unit_test(t_settle_invalid_replaced),
		cmocka_unit_test(t_settle_from_trace_header),
		cmocka_unit_test(t_hex_never_zero),
		cmocka_unit_test(t_hex_is_the_steps_value),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
