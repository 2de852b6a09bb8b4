#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../master/log.h"
#include "accesslog.h"
#include "hex.h"

#define AL_BUF (64 * 1024)
#define AL_HIGH (32 * 1024)	/* write once this much has gathered */
#define AL_LINE 4096		/* room one line may take (see the caps) */
#define AL_REPORT_MS 5000	/* drops are reported at most this often */

/* Where the bytes go, which decides how they are written. */
enum al_kind {
	AL_FILE,	/* regular file: write(), all of it */
	AL_PIPE,	/* pipe, FIFO, terminal: non-blocking write() of whole
			 * lines, at most PIPE_BUF bytes (atomic) at a time */
	AL_SOCK,	/* socket (stderr under systemd): send() without
			 * blocking, PIPE_BUF bytes of whole lines at a time */
	AL_BLOCK,	/* stderr we could not make non-blocking */
};

struct accesslog {
	int fd;
	bool own_fd;			/* ours to close (not stderr itself) */
	enum al_kind kind;
	enum access_format format;
	const char *path;		/* NULL: stderr */
	char *const *redact;		/* configured extra names */
	uint64_t dropped;		/* lines dropped in all */
	uint64_t unreported;		/* of those, not yet in the error log */
	uint64_t report_ms;		/* the next report may go then */
	int drop_errno;			/* why the last ones went (0: full) */
	time_t stamp_sec;		/* second the stamps below are for */
	char iso[64];			/* 2026-11-29T07:00:00 */
	char clf[64];			/* 29/Nov/2026:07:00:00 +0000 */
	size_t len;
	char buf[AL_BUF];
};

/* ---- the destination --------------------------------------------- */

static enum al_kind
kind_of(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || S_ISREG(st.st_mode))
		return AL_FILE;
	return S_ISSOCK(st.st_mode) ? AL_SOCK : AL_PIPE;
}

/* Open PATH (NULL: stderr) into AL. 0, or -1 with errno set. */
static int
al_open(struct accesslog *al, const char *path)
{
	int fd;

	if (path != NULL) {
		/* O_NONBLOCK: a FIFO without a reader fails here instead of
		 * hanging the worker; a regular file ignores it. */
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
		    O_NONBLOCK, 0644);
		if (fd < 0)
			return -1;
		al->fd = fd;
		al->own_fd = true;
		al->kind = kind_of(fd);
		return 0;
	}
	al->fd = STDERR_FILENO;
	al->own_fd = false;
	al->kind = kind_of(STDERR_FILENO);
	if (al->kind == AL_PIPE) {
		/* O_NONBLOCK on stderr itself would change it for the master
		 * and the shell too; reopening the pipe or terminal gives
		 * this worker its own open file to set it on. */
		fd = open("/proc/self/fd/2", O_WRONLY | O_APPEND | O_CLOEXEC |
		    O_NONBLOCK);
		if (fd >= 0) {
			al->fd = fd;
			al->own_fd = true;
		} else {
			al->kind = AL_BLOCK;
		}
	}
	return 0;
}

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
	al->redact = cfg->server.access_redact;
	al->path = strcmp(path, "-") == 0 ? NULL : path;
	if (al_open(al, al->path) < 0) {
		*err = errno;
		free(al);
		return NULL;
	}
	return al;
}

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Tell the error log about dropped lines, at most every AL_REPORT_MS
 * (FORCE: now, when closing). */
static void
report(struct accesslog *al, bool force)
{
	uint64_t now;

	if (al->unreported == 0)
		return;
	now = mono_ms();
	if (!force && now < al->report_ms)
		return;
	log_warn("access log %s: %llu lines dropped (%s); %llu in all",
	    al->path != NULL ? al->path : "(stderr)",
	    (unsigned long long)al->unreported, al->drop_errno != 0 ?
	    strerror(al->drop_errno) : "the buffer was full: the destination "
	    "takes lines slower than they come",
	    (unsigned long long)al->dropped);
	al->unreported = 0;
	al->report_ms = now + AL_REPORT_MS;
}

static void
drop(struct accesslog *al, uint64_t lines, int err)
{
	al->dropped += lines;
	al->unreported += lines;
	al->drop_errno = err;
	report(al, false);
}

static uint64_t
count_lines(const char *p, size_t n)
{
	const char *e = p + n;
	uint64_t k = 0;

	while (p < e && (p = memchr(p, '\n', e - p)) != NULL) {
		k++;
		p++;
	}
	return k;
}

int
accesslog_reopen(struct accesslog *al)
{
	int fd, own;
	enum al_kind kind;

	if (al == NULL || al->path == NULL)
		return 0;
	accesslog_flush(al);
	fd = al->fd;
	own = al->own_fd;
	kind = al->kind;
	if (al_open(al, al->path) < 0) {
		al->fd = fd;
		al->own_fd = own;
		al->kind = kind;
		return -1;
	}
	if (own)
		close(fd);
	return 0;
}

void
accesslog_flush(struct accesslog *al)
{
	size_t off = 0, n;
	ssize_t k;
	const char *nl;

	if (al == NULL)
		return;
	while (off < al->len) {
		n = al->len - off;
		if (al->kind != AL_FILE && al->kind != AL_BLOCK &&
		    n > PIPE_BUF) {
			/* Whole lines, at most PIPE_BUF: atomic, so the lines
			 * of several workers never interleave. */
			nl = memrchr(al->buf + off, '\n', PIPE_BUF);
			n = nl != NULL ? (size_t)(nl - (al->buf + off)) + 1 :
			    PIPE_BUF;
		}
		if (al->kind == AL_SOCK)
			k = send(al->fd, al->buf + off, n, MSG_DONTWAIT |
			    MSG_NOSIGNAL);
		else
			k = write(al->fd, al->buf + off, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;		/* the rest waits for the next flush */
		if (k <= 0) {
			/* A full disk or a closed pipe must not stop traffic:
			 * what is buffered is dropped and counted. */
			drop(al, count_lines(al->buf + off, al->len - off),
			    k < 0 ? errno : EIO);
			off = al->len;
			break;
		}
		off += (size_t)k;
	}
	if (off > 0) {
		memmove(al->buf, al->buf + off, al->len - off);
		al->len -= off;
	}
	report(al, false);
}

bool
accesslog_pending(const struct accesslog *al)
{
	return al != NULL && (al->len > 0 || al->unreported > 0);
}

uint64_t
accesslog_dropped(const struct accesslog *al)
{
	return al != NULL ? al->dropped : 0;
}

void
accesslog_close(struct accesslog *al)
{
	if (al == NULL)
		return;
	accesslog_flush(al);
	if (al->len > 0)
		drop(al, count_lines(al->buf, al->len), 0);
	report(al, true);
	if (al->own_fd)
		close(al->fd);
	free(al);
}

/* ---- redaction --------------------------------------------------- */

static const char *const credential_names[] = {
	"token", "access_token", "id_token", "api_key", "apikey", "key",
	"password", "secret", "signature", "sig", NULL
};

static bool
name_in(char *const *list, const char *name, size_t n)
{
	size_t i;

	for (i = 0; list != NULL && list[i] != NULL; i++)
		if (strlen(list[i]) == n && strncasecmp(list[i], name, n) == 0)
			return true;
	return false;
}

/* Whether the raw parameter name P[0..n) names a credential. */
static bool
is_credential(char *const *extra, const char *p, size_t n)
{
	char name[72];
	size_t i, k = 0;
	int hi, lo;

	for (i = 0; i < n; i++) {
		if (k == sizeof(name))
			return false;	/* longer than any name we match */
		if (p[i] == '%' && i + 2 < n && (hi = hexval(p[i + 1])) >= 0 &&
		    (lo = hexval(p[i + 2])) >= 0) {
			name[k++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			name[k++] = p[i] == '+' ? ' ' : p[i];
		}
	}
	if (k >= 2 && name[k - 2] == '[' && name[k - 1] == ']')
		k -= 2;			/* token[]=... */
	return name_in((char *const *)credential_names, name, k) ||
	    name_in(extra, name, k);
}

static size_t
put(char *out, size_t cap, size_t o, const char *p, size_t n)
{
	if (n > cap - o)
		n = cap - o;
	memcpy(out + o, p, n);
	return o + n;
}

size_t
accesslog_redact(char *const *extra, const char *q, size_t n, char *out,
    size_t cap)
{
	size_t i = 0, o = 0, end, eq;

	while (i <= n && o < cap) {
		for (end = i; end < n && q[end] != '&' && q[end] != ';'; end++)
			;
		for (eq = i; eq < end && q[eq] != '='; eq++)
			;
		if (eq < end && eq + 1 < end &&
		    is_credential(extra, q + i, eq - i)) {
			o = put(out, cap, o, q + i, eq + 1 - i);
			o = put(out, cap, o, "REDACTED", 8);
		} else {
			o = put(out, cap, o, q + i, end - i);
		}
		if (end < n)
			o = put(out, cap, o, q + end, 1);
		i = end + 1;
	}
	return o;
}

size_t
accesslog_target(const struct accesslog *al, const char *path, size_t plen,
    const char *query, size_t qlen, char *out, size_t cap)
{
	size_t o = put(out, cap, 0, path, plen);

	if (query == NULL || o >= cap)
		return o;
	out[o++] = '?';
	return o + accesslog_redact(al != NULL ? al->redact : NULL, query,
	    qlen, out + o, cap - o);
}

/* ---- lines ------------------------------------------------------- */

static void
stamp(struct accesslog *al, struct timespec *ts)
{
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, ts);
	if (ts->tv_sec == al->stamp_sec)
		return;
	al->stamp_sec = ts->tv_sec;
	gmtime_r(&ts->tv_sec, &tm);
	snprintf(al->iso, sizeof(al->iso), "%04d-%02d-%02dT%02d:%02d:%02d",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
	snprintf(al->clf, sizeof(al->clf), "%02d/%s/%04d:%02d:%02d:%02d +0000",
	    tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
}

/* Copy for a JSON string: quotes, backslashes and control bytes escaped,
 * bytes above 0x7e as \u00XX so the line stays valid JSON and ASCII.
 * Writes at most CAP bytes. */
#define ONES	0x0101010101010101ull
#define HIGHS	0x8080808080808080ull

/* Whether any byte of W is below 0x20, above 0x7e, '"' or '\\': exact
 * (a borrow or carry between bytes only starts at a byte already
 * caught). */
static bool
word_escapes(uint64_t w)
{
	uint64_t q = w ^ (ONES * '"'), b = w ^ (ONES * '\\');

	return (((w - ONES * 0x20) & ~w) | ((w + ONES) | w) |
	    ((q - ONES) & ~q) | ((b - ONES) & ~b)) & HIGHS;
}

static size_t
json_esc(char *out, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i = 0;
	uint64_t w;

	while (i < n && o + 6 <= cap) {
		size_t k = n - i < 8 ? n - i : 8;
		unsigned char ch;

		/* Up to eight plain bytes at a step, where the byte loop
		 * would copy all of them too (each byte needs 6 bytes of
		 * room); a short tail is tested among plain filler. */
		if (o + k + 5 <= cap) {
			w = ONES * 'a';
			memcpy(&w, s + i, k);
			if (!word_escapes(w)) {
				memcpy(out + o, s + i, k);
				i += k;
				o += k;
				continue;
			}
		}
		ch = s[i++];
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

/* Copy for a field of the combined format: quote and backslash escaped
 * with a backslash, other bytes outside printable ASCII as \xHH (as
 * Apache's mod_log_config does); SPACE too when set (an unquoted
 * field). Writes at most CAP bytes. */
static size_t
clf_esc_sp(char *out, size_t cap, const char *s, size_t n, bool space)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < n && o + 4 <= cap; i++) {
		unsigned char ch = s[i];
		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = ch;
		} else if (ch < 0x20 || ch > 0x7e || (space && ch == ' ')) {
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

static size_t
clf_esc(char *out, size_t cap, const char *s, size_t n)
{
	return clf_esc_sp(out, cap, s, n, false);
}

/* The writer of one line: each field is capped (the caps below add up
 * to less than AL_LINE), so a line always fits the room reserved. */
struct lw {
	char *p;
	size_t o;
};

#define LW_LIT(w, s)	lw_put((w), (s), sizeof(s) - 1)

static void
lw_put(struct lw *w, const char *s, size_t n)
{
	memcpy(w->p + w->o, s, n);
	w->o += n;
}

static void
lw_u64(struct lw *w, uint64_t v)
{
	char t[24];
	int i = sizeof(t);

	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	lw_put(w, t + i, sizeof(t) - i);
}

/* Microseconds as milliseconds with three decimals. */
static void
lw_ms(struct lw *w, uint64_t us)
{
	char f[4];

	lw_u64(w, us / 1000);
	f[0] = '.';
	f[1] = (char)('0' + us / 100 % 10);
	f[2] = (char)('0' + us / 10 % 10);
	f[3] = (char)('0' + us % 10);
	lw_put(w, f, 4);
}

/* A JSON string of at most CAP bytes of escaped S, or null. */
static void
lw_jstr(struct lw *w, const char *s, size_t n, size_t cap)
{
	if (s == NULL) {
		LW_LIT(w, "null");
		return;
	}
	w->p[w->o++] = '"';
	w->o += json_esc(w->p + w->o, cap, s, n);
	w->p[w->o++] = '"';
}

static void
lw_jcstr(struct lw *w, const char *s, size_t cap)
{
	lw_jstr(w, s, s != NULL ? strlen(s) : 0, cap);
}

/* A quoted field of the combined format, or "-". */
static void
lw_cstr(struct lw *w, const char *s, size_t n, size_t cap)
{
	w->p[w->o++] = '"';
	if (s == NULL)
		w->p[w->o++] = '-';
	else
		w->o += clf_esc(w->p + w->o, cap, s, n);
	w->p[w->o++] = '"';
}

static const char *
cache_name(enum xctx_cache c)
{
	switch (c) {
	case XCACHE_HIT: return "hit";
	case XCACHE_MISS: return "miss";
	case XCACHE_STALE: return "stale";
	case XCACHE_BYPASS: return "bypass";
	default: return NULL;
	}
}

static const char *
ratelimit_name(enum xctx_ratelimit r)
{
	switch (r) {
	case XRL_ALLOWED: return "allowed";
	case XRL_LIMITED: return "limited";
	case XRL_UNAVAILABLE: return "unavailable";
	default: return NULL;
	}
}

/* Caps (escaped bytes) per field: 8 short fields, method, target,
 * consumer and two headers, 3,344 bytes, and with the field names,
 * numbers and punctuation (under 500 bytes) below AL_LINE. The unit
 * test writes a line with every field at its cap. */
#define CAP_METHOD	96
#define CAP_TARGET	1200
#define CAP_NAME	96	/* trace, ip, route, service, upstream,
				 * cache, rate_limit, reason */
#define CAP_CONSUMER	256
#define CAP_HEADER	512	/* user agent, referer */

static size_t
line_json(struct accesslog *al, const struct accesslog_entry *e,
    const struct timespec *ts, char *p)
{
	struct lw w = { p, 0 };
	char ms[5];
	long m = ts->tv_nsec / 1000000;

	LW_LIT(&w, "{\"time\":\"");
	lw_put(&w, al->iso, strlen(al->iso));
	ms[0] = '.';
	ms[1] = (char)('0' + m / 100);
	ms[2] = (char)('0' + m / 10 % 10);
	ms[3] = (char)('0' + m % 10);
	ms[4] = 'Z';
	lw_put(&w, ms, 5);
	LW_LIT(&w, "\",\"trace_id\":");
	lw_jcstr(&w, e->trace, CAP_NAME);
	LW_LIT(&w, ",\"client_ip\":");
	lw_jcstr(&w, e->client_ip, CAP_NAME);
	LW_LIT(&w, ",\"method\":");
	lw_jstr(&w, e->method, e->method_len, CAP_METHOD);
	LW_LIT(&w, ",\"path\":");
	lw_jstr(&w, e->target, e->target_len, CAP_TARGET);
	LW_LIT(&w, ",\"status\":");
	lw_u64(&w, (uint64_t)e->status);
	LW_LIT(&w, ",\"bytes_in\":");
	lw_u64(&w, e->bytes_in);
	LW_LIT(&w, ",\"bytes_out\":");
	lw_u64(&w, e->bytes_out);
	LW_LIT(&w, ",\"route\":");
	lw_jcstr(&w, e->route, CAP_NAME);
	LW_LIT(&w, ",\"service\":");
	lw_jcstr(&w, e->service, CAP_NAME);
	LW_LIT(&w, ",\"upstream\":");
	lw_jcstr(&w, e->upstream, CAP_NAME);
	LW_LIT(&w, ",\"upstream_ms\":");
	if (e->upstream_us == ACCESSLOG_NO_TIME)
		LW_LIT(&w, "null");
	else
		lw_ms(&w, e->upstream_us);
	LW_LIT(&w, ",\"duration_ms\":");
	lw_ms(&w, e->duration_us);
	LW_LIT(&w, ",\"cache\":");
	lw_jcstr(&w, cache_name(e->cache), CAP_NAME);
	LW_LIT(&w, ",\"rate_limit\":");
	lw_jcstr(&w, ratelimit_name(e->ratelimit), CAP_NAME);
	LW_LIT(&w, ",\"consumer\":");
	lw_jstr(&w, e->consumer, e->consumer_len, CAP_CONSUMER);
	LW_LIT(&w, ",\"user_agent\":");
	lw_jstr(&w, e->user_agent, e->user_agent_len, CAP_HEADER);
	LW_LIT(&w, ",\"referer\":");
	lw_jstr(&w, e->referer, e->referer_len, CAP_HEADER);
	LW_LIT(&w, ",\"reason\":");
	lw_jcstr(&w, e->reason, CAP_NAME);
	LW_LIT(&w, "}\n");
	return w.o;
}

/* NCSA combined, the consumer as the remote user, and the trace id as a
 * last quoted field. */
static size_t
line_combined(struct accesslog *al, const struct accesslog_entry *e,
    char *p)
{
	struct lw w = { p, 0 };

	w.o += clf_esc_sp(w.p, CAP_NAME, e->client_ip, strlen(e->client_ip),
	    true);
	LW_LIT(&w, " - ");
	if (e->consumer != NULL && e->consumer_len > 0)
		w.o += clf_esc_sp(w.p + w.o, CAP_CONSUMER, e->consumer,
		    e->consumer_len, true);
	else
		LW_LIT(&w, "-");
	LW_LIT(&w, " [");
	lw_put(&w, al->clf, strlen(al->clf));
	LW_LIT(&w, "] \"");
	w.o += clf_esc(w.p + w.o, CAP_METHOD, e->method, e->method_len);
	LW_LIT(&w, " ");
	w.o += clf_esc(w.p + w.o, CAP_TARGET, e->target, e->target_len);
	LW_LIT(&w, " HTTP/1.");
	lw_u64(&w, e->minor_version == 0 ? 0 : 1);
	LW_LIT(&w, "\" ");
	lw_u64(&w, (uint64_t)e->status);
	LW_LIT(&w, " ");
	lw_u64(&w, e->bytes_out);
	LW_LIT(&w, " ");
	lw_cstr(&w, e->referer, e->referer_len, CAP_HEADER);
	LW_LIT(&w, " ");
	lw_cstr(&w, e->user_agent, e->user_agent_len, CAP_HEADER);
	LW_LIT(&w, " ");
	lw_cstr(&w, e->trace, e->trace != NULL ? strlen(e->trace) : 0,
	    CAP_NAME);
	LW_LIT(&w, "\n");
	return w.o;
}

void
accesslog_write(struct accesslog *al, const struct accesslog_entry *e)
{
	struct timespec ts;

	if (al == NULL)
		return;
	if (al->len + AL_LINE > sizeof(al->buf)) {
		accesslog_flush(al);
		if (al->len + AL_LINE > sizeof(al->buf)) {
			/* The destination takes nothing now: drop, never
			 * wait (the worker serves others meanwhile). */
			drop(al, 1, 0);
			return;
		}
	}
	stamp(al, &ts);
	if (al->format == ACCESS_JSON)
		al->len += line_json(al, e, &ts, al->buf + al->len);
	else
		al->len += line_combined(al, e, al->buf + al->len);
	if (al->len >= AL_HIGH)
		accesslog_flush(al);
}
