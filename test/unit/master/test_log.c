/*
 * test_log: the logging module's line format and its flood guard
 * (log_limited): the first line of a kind is written, repeats within the
 * interval are held and counted, and the next line written says how many
 * it stands for. Times are given, not read, so nothing here sleeps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../master/log.h"

static char path[64];

static int
setup(void **state)
{
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/portico-log-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	return log_open(path, LOG_INFO);
}

static int
teardown(void **state)
{
	(void)state;
	log_open(NULL, LOG_INFO);
	unlink(path);
	return 0;
}

/* The file's lines with the "TIME [level] PID: " prefix cut off. */
static int
read_lines(char lines[][256], int max)
{
	char buf[256];
	FILE *f = fopen(path, "r");
	int n = 0;
	char *p;

	assert_non_null(f);
	while (n < max && fgets(buf, sizeof(buf), f) != NULL) {
		buf[strcspn(buf, "\n")] = '\0';
		p = strstr(buf, "] ");
		assert_non_null(p);
		p = strstr(p, ": ");
		assert_non_null(p);
		snprintf(lines[n++], 256, "%.*s%s", (int)(strchr(buf, ']') -
		    strchr(buf, '[') + 1), strchr(buf, '['), p + 1);
	}
	fclose(f);
	return n;
}

static void
test_line_format(void **state)
{
	char lines[4][256];

	(void)state;
	log_info("hello %d", 42);
	log_debug("below the level: dropped");
	log_error("bad %s", "thing");
	assert_int_equal(read_lines(lines, 4), 2);
	assert_string_equal(lines[0], "[info] hello 42");
	assert_string_equal(lines[1], "[error] bad thing");
}

static void
test_flood_counted_once_per_interval(void **state)
{
	struct log_limit l = { .interval_ms = 1000 };
	char lines[8][256];
	uint64_t t = 5000;
	int i;

	(void)state;
	/* A flood: one every 100 ms for 2.5 s. */
	for (i = 0; i < 25; i++, t += 100)
		log_limited(&l, t, LOG_ERROR, "accept: %s (%d open)",
		    "Too many open files", 60);
	/* The first at once; then one per interval, each standing for
	 * itself and the ones held back before it. */
	assert_int_equal(read_lines(lines, 8), 3);
	assert_string_equal(lines[0],
	    "[error] accept: Too many open files (60 open)");
	assert_string_equal(lines[1],
	    "[error] accept: Too many open files (60 open) (repeated 10 "
	    "times)");
	assert_string_equal(lines[2],
	    "[error] accept: Too many open files (60 open) (repeated 10 "
	    "times)");
	/* The flood ends: the 4 held back are written at once, as the last
	 * of them. */
	log_limit_flush(&l);
	assert_int_equal(read_lines(lines, 8), 4);
	assert_string_equal(lines[3],
	    "[error] accept: Too many open files (60 open) (repeated 4 "
	    "times)");
	/* Nothing held: a flush writes nothing. A flush keeps the interval
	 * (a flood that stops and starts again is still one flood): a line
	 * within it is held, and a tick writes it once the interval ends,
	 * with no count for a single line. */
	log_limit_flush(&l);
	log_limited(&l, t, LOG_WARN, "again");
	log_limit_tick(&l, t + 499);
	assert_int_equal(read_lines(lines, 8), 4);
	log_limit_tick(&l, t + 500);
	assert_int_equal(read_lines(lines, 8), 5);
	assert_string_equal(lines[4], "[warn] again");
	/* Quiet for an interval: the next line goes out at once. */
	log_limited(&l, t + 1500, LOG_WARN, "later");
	assert_int_equal(read_lines(lines, 8), 6);
	assert_string_equal(lines[5], "[warn] later");
}

static void
test_limits_are_independent(void **state)
{
	struct log_limit a = { .interval_ms = 1000 };
	struct log_limit b = { .interval_ms = 0 };	/* LOG_LIMIT_MS */
	char lines[8][256];

	(void)state;
	log_limited(&a, 100, LOG_ERROR, "a");
	log_limited(&b, 100, LOG_ERROR, "b");
	log_limited(&a, 200, LOG_ERROR, "a");
	log_limited(&b, 200, LOG_ERROR, "b");
	log_limited(&a, 1100, LOG_ERROR, "a");
	log_limited(&b, 1100, LOG_ERROR, "b");	/* still held */
	assert_int_equal(read_lines(lines, 8), 3);
	assert_string_equal(lines[0], "[error] a");
	assert_string_equal(lines[1], "[error] b");
	assert_string_equal(lines[2], "[error] a (repeated 2 times)");
	log_limited(&b, 100 + LOG_LIMIT_MS, LOG_ERROR, "b");
	assert_int_equal(read_lines(lines, 8), 4);
	assert_string_equal(lines[3], "[error] b (repeated 3 times)");
	/* Below the level: neither written nor counted. */
	log_limited(&a, 5000, LOG_DEBUG, "quiet");
	log_limit_flush(&a);
	assert_int_equal(read_lines(lines, 8), 4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_line_format, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_flood_counted_once_per_interval, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits_are_independent,
		    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
