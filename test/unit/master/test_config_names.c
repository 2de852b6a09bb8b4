/*
 * test_config_names: names that become part of a rate-limit key (tier,
 * route, rate_limit header) are capped at load with FILE:LINE, so the key
 * built from them per request stays bounded.
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

#include "master/config.h"

static char tmp_path[64];

static int
load_text(const char *text, struct config **cfg, char *err, size_t errlen)
{
	int fd, rc;
	size_t len = strlen(text);

	snprintf(tmp_path, sizeof(tmp_path), "/tmp/portico-cfg-XXXXXX");
	fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	rc = config_load(tmp_path, "/tmp", cfg, err, errlen);
	unlink(tmp_path);
	return rc;
}

static void
expect_err(const char *text, int line, const char *reason)
{
	struct config *cfg = NULL;
	char err[512] = "", want[512];

	assert_int_equal(load_text(text, &cfg, err, sizeof(err)), -1);
	assert_null(cfg);
	snprintf(want, sizeof(want), "%s:%d: %s", tmp_path, line, reason);
	assert_string_equal(err, want);
}

/* A config with the tier name TIER, route name ROUTE and rate_limit by
 * header HDR; the tier is on line 4, the route's name on line 6 and its
 * rate_limit on line 8. */
static char *
conf(const char *tier, const char *route, const char *hdr)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf),
	    "version = 1;\n"
	    "services: { users = { instances = [\"127.0.0.1:8001\"]; }; };\n"
	    "tiers: {\n"
	    "  %s = { rate = 1; per_s = 1; burst = 1; };\n"
	    "};\n"
	    "routes = ( { name = \"%s\";\n"
	    "  match = { prefix = \"/a\"; }; service = \"users\";\n"
	    "  rate_limit = { by = \"header:%s\"; tier = \"%s\"; }; } );\n",
	    tier, route, hdr, tier);
	return buf;
}

static void
test_name_caps(void **st)
{
	char n64[65], n65[66];
	struct config *cfg = NULL;
	char err[512] = "";

	(void)st;
	memset(n64, 'a', 64);
	n64[64] = '\0';
	memset(n65, 'b', 65);
	n65[65] = '\0';
	/* 64 bytes is fine everywhere. */
	if (load_text(conf(n64, n64, n64), &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(strlen(cfg->tiers[0].name), 64);
	config_free(cfg);
	expect_err(conf(n65, "r", "X-Key"), 4, "tier name 'bbbbbbbbbbbbbbbb..."
	    "' is longer than 64 bytes");
	expect_err(conf("t", n65, "X-Key"), 6, "route name 'bbbbbbbbbbbbbbbb"
	    "...' is longer than 64 bytes");
	expect_err(conf("t", "r", n65), 8, "route 'r' rate_limit: header name "
	    "'bbbbbbbbbbbbbbbb...' is longer than 64 bytes");
}

/* rate_limit.ipv6_prefix: 64 by default, 1-128, only with by = "ip". */
static void
test_ipv6_prefix(void **st)
{
	static const char head[] =
	    "version = 1;\n"
	    "services: { users = { instances = [\"127.0.0.1:8001\"]; }; };\n"
	    "routes = ( { name = \"r\";\n"
	    "  match = { prefix = \"/a\"; }; service = \"users\";\n";
	char text[1024], err[512] = "";
	struct config *cfg = NULL;

	(void)st;
	snprintf(text, sizeof(text), "%s  rate_limit = { by = \"ip\"; }; } );\n",
	    head);
	if (load_text(text, &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->routes[0].rl_v6_prefix, 64);
	config_free(cfg);
	snprintf(text, sizeof(text), "%s  rate_limit = { by = \"ip\";\n"
	    "    ipv6_prefix = 56; }; } );\n", head);
	if (load_text(text, &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->routes[0].rl_v6_prefix, 56);
	config_free(cfg);
	snprintf(text, sizeof(text), "%s  rate_limit = { by = \"ip\";\n"
	    "    ipv6_prefix = 129; }; } );\n", head);
	expect_err(text, 6, "'ipv6_prefix' in route 'r' rate_limit must be "
	    "between 1 and 128");
	snprintf(text, sizeof(text), "%s  rate_limit = { by = \"route\";\n"
	    "    ipv6_prefix = 48; }; } );\n", head);
	expect_err(text, 6, "route 'r' rate_limit: ipv6_prefix applies only "
	    "to by = \"ip\"");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_caps),
		cmocka_unit_test(test_ipv6_prefix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
