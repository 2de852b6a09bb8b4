#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"

#define AL_BUF (64 * 1024)
#define AL_HIGH (32 * 1024)	/* write once this much has gathered */
#define AL_LINE 2048		/* longest line; a longer path is cut */

struct accesslog {
	int fd;
	bool to_stderr;
	enum access_format format;
	const char *path;
	time_t stamp_sec;		/* second the stamps below are for */
	char iso[64];			/* 2026-11-29T07:00:00Z */
	char clf[64];			/* 29/Nov/2026:07:00:00 +0000 */
	size_t len;
	char buf[AL_BUF];
};

struct accesslog *
accesslog_open(const struct config *cfg, int *err)
{
	const char *path = cfg->server.access_log;
	struct accesslog *al;

	*err = 0;
	if (path == NULL)
		return NULL;
	al = calloc(1, sizeof(*al));
	if (al == NULL) {
		*err = errno;
		return NULL;
	}
	al->format = cfg->server.access_format;
	al->path = path;
	if (strcmp(path, "-") == 0) {
		al->fd = STDERR_FILENO;
		al->to_stderr = true;
	} else if ((al->fd = open(path, O_WRONLY | O_APPEND | O_CREAT |
	    O_CLOEXEC, 0644)) < 0) {
		*err = errno;
		free(al);
		return NULL;
	}
	return al;
}

int
accesslog_reopen(struct accesslog *al)
{
	int fd;

	if (al == NULL || al->to_stderr)
		return 0;
	accesslog_flush(al);
	fd = open(al->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	close(al->fd);
	al->fd = fd;
	return 0;
}

void
accesslog_flush(struct accesslog *al)
{
	size_t off = 0;
	ssize_t n;

	if (al == NULL)
		return;
	while (off < al->len) {
		n = write(al->fd, al->buf + off, al->len - off);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			break;		/* a full disk must not stop traffic */
		}
		off += n;
	}
	al->len = 0;
}

bool
accesslog_pending(const struct accesslog *al)
{
	return al != NULL && al->len > 0;
}

void
accesslog_close(struct accesslog *al)
{
	if (al == NULL)
		return;
	accesslog_flush(al);
	if (!al->to_stderr)
		close(al->fd);
	free(al);
}

static void
stamp(struct accesslog *al)
{
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec == al->stamp_sec)
		return;
	al->stamp_sec = ts.tv_sec;
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(al->iso, sizeof(al->iso), "%04d-%02d-%02dT%02d:%02d:%02dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
	snprintf(al->clf, sizeof(al->clf), "%02d/%s/%04d:%02d:%02d:%02d +0000",
	    tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
}

/* Copy for a JSON string: quotes, backslashes and control bytes escaped,
 * bytes above 0x7e as \u00XX so the line stays valid JSON and ASCII. */
static size_t
json_esc(char *out, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < n && o + 6 < cap; i++) {
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

/* Copy for a quoted field of the combined format: quote and backslash
 * escaped with a backslash, other bytes outside printable ASCII as \xHH
 * (as Apache's mod_log_config does). */
static size_t
clf_esc(char *out, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < n && o + 4 < cap; i++) {
		unsigned char ch = s[i];
		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = ch;
		} else if (ch < 0x20 || ch > 0x7e) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		} else {
			out[o++] = ch;
		}
	}
	return o;
}

/* "TEXT" escaped by ESC into out (cap bytes), or the bare word NONE when
 * s is NULL. Returns the length written. */
static size_t
quoted(char *out, size_t cap, const char *s, size_t n, const char *none,
    size_t (*esc)(char *, size_t, const char *, size_t))
{
	size_t o;

	if (s == NULL) {
		o = strlen(none);
		memcpy(out, none, o);
		return o;
	}
	out[0] = '"';
	o = 1 + esc(out + 1, cap - 2, s, n);
	out[o++] = '"';
	return o;
}

void
accesslog_write(struct accesslog *al, const struct accesslog_entry *e)
{
	char line[AL_LINE], path[1024], method[64], ua[600], ref[600];
	size_t pl, ml, ul, rl;
	int n;

	if (al == NULL)
		return;
	stamp(al);
	pl = json_esc(path, sizeof(path), e->path, e->path_len);
	ml = json_esc(method, sizeof(method), e->method, e->method_len);
	if (al->format == ACCESS_JSON) {
		ul = quoted(ua, sizeof(ua), e->user_agent, e->user_agent_len,
		    "null", json_esc);
		rl = quoted(ref, sizeof(ref), e->referer, e->referer_len,
		    "null", json_esc);
		n = snprintf(line, sizeof(line),
		    "{\"time\":\"%s\",\"remote\":\"%s\",\"method\":\"%.*s\","
		    "\"path\":\"%.*s\",\"status\":%d,\"bytes\":%llu,"
		    "\"duration_ms\":%.3f,\"route\":%s%s%s,\"upstream\":%s%s%s,"
		    "\"reason\":%s%s%s,\"user_agent\":%.*s,\"referer\":%.*s,"
		    "\"trace_id\":\"%s\"}\n",
		    al->iso, e->remote, (int)ml, method, (int)pl, path,
		    e->status, (unsigned long long)e->bytes,
		    e->duration_us / 1000.0,
		    e->route ? "\"" : "", e->route ? e->route : "null",
		    e->route ? "\"" : "",
		    e->upstream ? "\"" : "", e->upstream ? e->upstream : "null",
		    e->upstream ? "\"" : "",
		    e->reason ? "\"" : "", e->reason ? e->reason : "null",
		    e->reason ? "\"" : "",
		    (int)ul, ua, (int)rl, ref, e->trace);
	} else {
		ul = quoted(ua, sizeof(ua), e->user_agent, e->user_agent_len,
		    "\"-\"", clf_esc);
		rl = quoted(ref, sizeof(ref), e->referer, e->referer_len,
		    "\"-\"", clf_esc);
		n = snprintf(line, sizeof(line),
		    "%s - - [%s] \"%.*s %.*s HTTP/1.%d\" %d %llu %.*s %.*s\n",
		    e->remote, al->clf, (int)ml, method, (int)pl, path,
		    e->minor_version, e->status, (unsigned long long)e->bytes,
		    (int)rl, ref, (int)ul, ua);
	}
	if (n <= 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (al->len + n > sizeof(al->buf))
		accesslog_flush(al);
	memcpy(al->buf + al->len, line, n);
	al->len += n;
	if (al->len >= AL_HIGH)
		accesslog_flush(al);
}
