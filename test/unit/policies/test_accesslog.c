/*
 * The access log: query redaction (every listed name, configured extras,
 * case, percent-encoded names, repeats, parameters without a value, cuts
 * that never show a secret), lines with every field (null where it does
 * not apply) that always fit, and a FIFO that takes nothing: the writer
 * never blocks, drops and counts, and what it writes are whole lines;
 * stderr on a pipe is reopened non-blocking for the log alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../policies/accesslog.c"

static char *const no_extra[] = { NULL };

static const char *
redact(char *const *extra, const char *q)
{
	static char out[1024];
	size_t n = accesslog_redact(extra, q, strlen(q), out, sizeof(out));

	out[n] = '\0';
	return out;
}

static void
t_each_listed_name(void **st)
{
	static const char *const names[] = { "token", "access_token",
	    "id_token", "api_key", "apikey", "key", "password", "secret",
	    "signature", "sig" };
	char q[128], want[128];
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(q, sizeof(q), "a=1&%s=s3cret&b=2", names[i]);
		snprintf(want, sizeof(want), "a=1&%s=REDACTED&b=2", names[i]);
		assert_string_equal(redact(no_extra, q), want);
	}
	/* Names are whole names, not parts of one. */
	assert_string_equal(redact(no_extra, "tokens=1&mykey=2&key2=3&sigma=4"),
	    "tokens=1&mykey=2&key2=3&sigma=4");
	assert_string_equal(redact(NULL, "x=1"), "x=1");
}

static void
t_case_and_encoding(void **st)
{
	(void)st;
	assert_string_equal(redact(no_extra, "TOKEN=a&Api_Key=b&PassWord=c"),
	    "TOKEN=REDACTED&Api_Key=REDACTED&PassWord=REDACTED");
	/* Percent-decoded before comparison; written as sent. */
	assert_string_equal(redact(no_extra, "%74oken=a&api%5Fkey=b&%4B%45%59=c"),
	    "%74oken=REDACTED&api%5Fkey=REDACTED&%4B%45%59=REDACTED");
	/* PHP-style arrays; '+' is a space, so "pass+word" is another name. */
	assert_string_equal(redact(no_extra, "token[]=a&token%5B%5D=b&pass+word=c"),
	    "token[]=REDACTED&token%5B%5D=REDACTED&pass+word=c");
	/* Malformed escapes stay literal and match nothing. */
	assert_string_equal(redact(no_extra, "%zztoken=a&%7=b&token%=c"),
	    "%zztoken=a&%7=b&token%=c");
	/* Decoded once only: a double-encoded name is another name. */
	assert_string_equal(redact(no_extra, "%2574oken=a"), "%2574oken=a");
}

static void
t_repeats_and_bare_params(void **st)
{
	(void)st;
	assert_string_equal(redact(no_extra, "token=a&token=b&token=c"),
	    "token=REDACTED&token=REDACTED&token=REDACTED");
	/* No value to hide: kept as sent. */
	assert_string_equal(redact(no_extra, "token&x=1"), "token&x=1");
	assert_string_equal(redact(no_extra, "token=&x=1"), "token=&x=1");
	assert_string_equal(redact(no_extra, "x=1&token"), "x=1&token");
	/* A value holding '=' is hidden whole. */
	assert_string_equal(redact(no_extra, "sig=a=b==&x"),
	    "sig=REDACTED&x");
	/* ';' separates too (some servers split on it). */
	assert_string_equal(redact(no_extra, "x=1;secret=2;y"),
	    "x=1;secret=REDACTED;y");
	assert_string_equal(redact(no_extra, ""), "");
	assert_string_equal(redact(no_extra, "&&=&"), "&&=&");
}

static void
t_extra_names(void **st)
{
	static char s1[] = "session", s2[] = "X-Auth";
	char *const extra[] = { s1, s2, NULL };

	(void)st;
	assert_string_equal(redact(extra, "SESSION=1&x-auth=2&%58-Auth=3&k=4"),
	    "SESSION=REDACTED&x-auth=REDACTED&%58-Auth=REDACTED&k=4");
	assert_string_equal(redact(extra, "token=1"), "token=REDACTED");
}

static void
t_cut_never_shows_a_secret(void **st)
{
	const char *q = "a=1&token=s3cr3tvalue&%70assword=s3cr3tvalue&b=2";
	char out[128];
	size_t cap, n;

	(void)st;
	for (cap = 0; cap <= strlen(q) + 10; cap++) {
		memset(out, 0, sizeof(out));
		n = accesslog_redact(no_extra, q, strlen(q), out, cap);
		assert_true(n <= cap);
		assert_null(strstr(out, "s3cr"));
		assert_null(strstr(out, "s3"));
	}
}

static void
t_target(void **st)
{
	char out[64];
	size_t n;

	(void)st;
	n = accesslog_target(NULL, "/a/b", 4, "token=x&y=2", 11, out,
	    sizeof(out));
	assert_int_equal(n, strlen("/a/b?token=REDACTED&y=2"));
	assert_memory_equal(out, "/a/b?token=REDACTED&y=2", n);
	n = accesslog_target(NULL, "/a", 2, NULL, 0, out, sizeof(out));
	assert_int_equal(n, 2);
	n = accesslog_target(NULL, "/a", 2, "", 0, out, sizeof(out));
	assert_memory_equal(out, "/a?", 3);
	assert_int_equal(n, 3);
	n = accesslog_target(NULL, "/abcd", 5, "token=x", 7, out, 5);
	assert_int_equal(n, 5);
}

/* ---- lines ------------------------------------------------------- */

static char tmpdir[64];

static int
mk_tmp(void **st)
{
	(void)st;
	strcpy(tmpdir, "/tmp/ptc-al-XXXXXX");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
rm_tmp(void **st)
{
	char cmd[128];

	(void)st;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct accesslog *
open_at(const char *path, enum access_format fmt, struct config *cfg)
{
	struct accesslog *al;
	int err;

	memset(cfg, 0, sizeof(*cfg));
	cfg->server.access_log = (char *)path;
	cfg->server.access_format = fmt;
	al = accesslog_open(cfg, &err);
	if (al == NULL)
		fail_msg("open %s: %s", path, strerror(err));
	return al;
}

static size_t
slurp(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = '\0';
	return n;
}

static const char *const fields[] = {
	"\"time\":", "\"trace_id\":", "\"client_ip\":", "\"method\":",
	"\"path\":", "\"status\":", "\"bytes_in\":", "\"bytes_out\":",
	"\"route\":", "\"service\":", "\"upstream\":", "\"upstream_ms\":",
	"\"duration_ms\":", "\"cache\":", "\"rate_limit\":", "\"consumer\":",
	"\"user_agent\":", "\"referer\":", "\"reason\":",
};

static void
t_json_every_field(void **st)
{
	struct config cfg;
	struct accesslog *al;
	struct accesslog_entry e;
	char path[128], buf[8192], *p;
	size_t i;

	(void)st;
	snprintf(path, sizeof(path), "%s/a.log", tmpdir);
	al = open_at(path, ACCESS_JSON, &cfg);
	memset(&e, 0, sizeof(e));
	e.client_ip = "10.0.0.1";
	e.method = "GET";
	e.method_len = 3;
	e.target = "/x?y=1";
	e.target_len = 6;
	e.status = 400;
	e.bytes_in = 17;
	e.duration_us = 1234567;
	e.upstream_us = ACCESSLOG_NO_TIME;
	e.trace = "abc";
	accesslog_write(al, &e);
	e.route = "r";
	e.service = "s";
	e.upstream = "127.0.0.1:9";
	e.upstream_us = 5;
	e.cache = XCACHE_STALE;
	e.ratelimit = XRL_LIMITED;
	e.consumer = "alice\"x";
	e.consumer_len = 7;
	e.reason = "rate_limited";
	accesslog_write(al, &e);
	accesslog_close(al);
	slurp(path, buf, sizeof(buf));
	p = strchr(buf, '\n');
	assert_non_null(p);
	*p = '\0';
	/* Every field, in order, null where it does not apply. */
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		assert_non_null(strstr(buf, fields[i]));
	assert_non_null(strstr(buf, "\"trace_id\":\"abc\",\"client_ip\":"
	    "\"10.0.0.1\",\"method\":\"GET\",\"path\":\"/x?y=1\",\"status\":"
	    "400,\"bytes_in\":17,\"bytes_out\":0,\"route\":null,\"service\":"
	    "null,\"upstream\":null,\"upstream_ms\":null,\"duration_ms\":"
	    "1234.567,\"cache\":null,\"rate_limit\":null,\"consumer\":null,"
	    "\"user_agent\":null,\"referer\":null,\"reason\":null}"));
	/* RFC 3339 with milliseconds, UTC. */
	assert_int_equal(strlen("{\"time\":\"2026-12-02T10:00:00.123Z\""),
	    strchr(buf + 9, '"') - buf + 1);
	assert_int_equal(buf[9 + 19], '.');
	assert_int_equal(buf[9 + 23], 'Z');
	assert_non_null(strstr(p + 1, "\"route\":\"r\",\"service\":\"s\","
	    "\"upstream\":\"127.0.0.1:9\",\"upstream_ms\":0.005,"
	    "\"duration_ms\":1234.567,\"cache\":\"stale\",\"rate_limit\":"
	    "\"limited\",\"consumer\":\"alice\\\"x\",\"user_agent\":null,"
	    "\"referer\":null,\"reason\":\"rate_limited\"}\n"));
}

static void
t_longest_line_fits(void **st)
{
	struct config cfg;
	struct accesslog *al;
	struct accesslog_entry e;
	static char big[8192], buf[3 * AL_LINE];
	char path[128];
	size_t n;

	(void)st;
	/* Every field at its cap, every byte one that escapes to 6. */
	memset(big, 0x01, sizeof(big) - 1);
	snprintf(path, sizeof(path), "%s/big.log", tmpdir);
	al = open_at(path, ACCESS_JSON, &cfg);
	memset(&e, 0, sizeof(e));
	big[200] = '\0';
	e.client_ip = e.route = e.service = e.upstream = e.trace =
	    e.reason = big;
	e.method = e.target = e.consumer = e.user_agent = e.referer = big;
	e.method_len = e.target_len = e.consumer_len = e.user_agent_len =
	    e.referer_len = 4000;
	e.status = 999;
	e.bytes_in = e.bytes_out = e.duration_us = e.upstream_us =
	    UINT64_MAX - 1;
	e.cache = XCACHE_BYPASS;
	e.ratelimit = XRL_UNAVAILABLE;
	accesslog_write(al, &e);
	accesslog_write(al, &e);
	accesslog_close(al);
	n = slurp(path, buf, sizeof(buf));
	assert_true(n % 2 == 0 && n / 2 < AL_LINE);
	assert_memory_equal(buf + n / 2 - 2, "}\n", 2);
	assert_memory_equal(buf + n / 2, "{\"time\":", 8);

	/* The combined format too. */
	al = open_at(path, ACCESS_COMBINED, &cfg);
	accesslog_write(al, &e);
	accesslog_close(al);
	n = slurp(path, buf, sizeof(buf)) - n;
	assert_true(n < AL_LINE);
}

static void
t_combined(void **st)
{
	struct config cfg;
	struct accesslog *al;
	struct accesslog_entry e;
	char path[128], buf[2048];

	(void)st;
	snprintf(path, sizeof(path), "%s/c.log", tmpdir);
	al = open_at(path, ACCESS_COMBINED, &cfg);
	memset(&e, 0, sizeof(e));
	e.client_ip = "::1";
	e.method = "GET";
	e.method_len = 3;
	e.target = "/a?token=REDACTED";
	e.target_len = 17;
	e.minor_version = 0;
	e.status = 200;
	e.bytes_out = 12;
	e.trace = "t1";
	e.consumer = "bob smith";
	e.consumer_len = 9;
	e.user_agent = "ua";
	e.user_agent_len = 2;
	accesslog_write(al, &e);
	accesslog_close(al);
	slurp(path, buf, sizeof(buf));
	assert_memory_equal(buf, "::1 - bob\\x20smith [", 20);
	assert_non_null(strstr(buf, " +0000] \"GET /a?token=REDACTED "
	    "HTTP/1.0\" 200 12 \"-\" \"ua\" \"t1\"\n"));
}

/* ---- never blocking ---------------------------------------------- */

static void
on_alarm(int sig)
{
	(void)sig;
	fprintf(stderr, "the access log blocked\n");
	_exit(1);
}

static void
t_full_fifo_drops_never_blocks(void **st)
{
	struct config cfg;
	struct accesslog *al;
	struct accesslog_entry e;
	char path[128], line[8192];
	static char got[1 << 20];
	int rd, i, err;
	ssize_t k;
	size_t have = 0, lines = 0, off;
	char *nl;

	(void)st;
	snprintf(path, sizeof(path), "%s/fifo", tmpdir);
	assert_int_equal(mkfifo(path, 0600), 0);
	/* No reader: refused at once, not waited for. */
	memset(&cfg, 0, sizeof(cfg));
	cfg.server.access_log = path;
	signal(SIGALRM, on_alarm);
	alarm(10);
	assert_null(accesslog_open(&cfg, &err));
	assert_int_equal(err, ENXIO);
	rd = open(path, O_RDONLY | O_NONBLOCK);
	assert_true(rd >= 0);
	al = open_at(path, ACCESS_JSON, &cfg);
	memset(&e, 0, sizeof(e));
	e.client_ip = "127.0.0.1";
	e.method = "GET";
	e.method_len = 3;
	memset(line, 'p', 1000);
	e.target = line;
	e.target_len = 1000;
	e.trace = "t";
	e.upstream_us = ACCESSLOG_NO_TIME;
	/* Nobody reads: the pipe fills (64 KiB), then the buffer. */
	for (i = 0; i < 1000; i++)
		accesslog_write(al, &e);
	accesslog_flush(al);
	assert_true(accesslog_dropped(al) > 0);
	assert_true(accesslog_dropped(al) < 1000);
	/* The reader catches up: what waited is written, whole lines. */
	for (i = 0; i < 100; i++) {
		while ((k = read(rd, got + have, sizeof(got) - have)) > 0)
			have += (size_t)k;
		accesslog_flush(al);
		if (al->len == 0)
			break;
	}
	while ((k = read(rd, got + have, sizeof(got) - have)) > 0)
		have += (size_t)k;
	alarm(0);
	for (off = 0; off < have; off = (size_t)(nl - got) + 1) {
		nl = memchr(got + off, '\n', have - off);
		assert_non_null(nl);
		assert_int_equal(got[off], '{');
		assert_int_equal(nl[-1], '}');
		lines++;
	}
	assert_int_equal(lines + accesslog_dropped(al), 1000);
	accesslog_close(al);
	close(rd);
}

static void
t_stderr_pipe_gets_its_own_nonblocking_file(void **st)
{
	struct config cfg;
	struct accesslog *al;
	int saved, p[2], err;

	(void)st;
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(pipe(p), 0);
	assert_true(dup2(p[1], STDERR_FILENO) >= 0);
	memset(&cfg, 0, sizeof(cfg));
	cfg.server.access_log = "-";
	al = accesslog_open(&cfg, &err);
	/* A file of its own, non-blocking; stderr itself (shared with the
	 * master and the shell) left as it was. */
	if (al != NULL) {
		assert_int_equal(al->kind, AL_PIPE);
		assert_true(al->own_fd && al->fd != STDERR_FILENO);
		assert_true(fcntl(al->fd, F_GETFL) & O_NONBLOCK);
		assert_false(fcntl(STDERR_FILENO, F_GETFL) & O_NONBLOCK);
		accesslog_close(al);
	}
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[0]);
	close(p[1]);
	assert_non_null(al);
}

/* The escaping as one byte at a time writes it: the reference the
 * word-at-a-step json_esc must match, cut for cut. */
static size_t
json_esc_ref(char *out, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < n && o + 6 <= cap; i++) {
		unsigned char ch = s[i];

		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = ch;
		} else if (ch < 0x20 || ch > 0x7e) {
			memcpy(out + o, "\\u00", 4);
			out[o + 4] = hex[ch >> 4];
			out[o + 5] = hex[ch & 15];
			o += 6;
		} else {
			out[o++] = ch;
		}
	}
	return o;
}

/* Every byte value at every place of a word, and strings of plain runs
 * with escapes among them, under every cap: json_esc writes exactly
 * what the byte loop does. */
static void
t_json_escape_matches_bytewise(void **st)
{
	char s[40], got[300], want[300];
	size_t n, cap, pos, g, w;
	unsigned v, seed = 12345, k;

	(void)st;
	for (v = 0; v < 256; v++)
		for (pos = 0; pos < 16; pos++) {
			memset(s, 'a', sizeof(s));
			s[pos] = (char)v;
			for (cap = 0; cap <= 40; cap += 3) {
				g = json_esc(got, cap, s, 16);
				w = json_esc_ref(want, cap, s, 16);
				assert_int_equal(g, w);
				assert_memory_equal(got, want, w);
			}
		}
	for (k = 0; k < 2000; k++) {
		n = 0;
		while (n < sizeof(s)) {
			seed = seed * 1103515245u + 12345u;
			/* mostly plain, some of each kind to escape */
			switch ((seed >> 16) % 8) {
			case 0: s[n++] = '"'; break;
			case 1: s[n++] = (char)((seed >> 8) & 0xff); break;
			default: s[n++] = (char)('a' + (seed >> 20) % 26);
			}
		}
		n = (seed >> 4) % (sizeof(s) + 1);
		for (cap = 0; cap <= sizeof(got); cap += 7) {
			g = json_esc(got, cap, s, n);
			w = json_esc_ref(want, cap, s, n);
			assert_int_equal(g, w);
			assert_memory_equal(got, want, w);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_each_listed_name),
		cmocka_unit_test(t_case_and_encoding),
		cmocka_unit_test(t_repeats_and_bare_params),
		cmocka_unit_test(t_extra_names),
		cmocka_unit_test(t_cut_never_shows_a_secret),
		cmocka_unit_test(t_target),
		cmocka_unit_test(t_json_every_field),
		cmocka_unit_test(t_json_escape_matches_bytewise),
		cmocka_unit_test(t_longest_line_fits),
		cmocka_unit_test(t_combined),
		cmocka_unit_test(t_full_fifo_drops_never_blocks),
		cmocka_unit_test(t_stderr_pipe_gets_its_own_nonblocking_file),
	};

	return cmocka_run_group_tests(tests, mk_tmp, rm_tmp);
}
