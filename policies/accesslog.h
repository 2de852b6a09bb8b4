/*
 * accesslog: one line per request, JSON or combined, buffered per worker
 * and written when 32 KiB have gathered or the oldest line is
 * ACCESSLOG_FLUSH_MS old (like nginx's buffer=32k flush=...).
 *
 * Every JSON line has every field, null where it does not apply. The
 * query string is logged with the value of each credential-looking
 * parameter replaced by REDACTED (accesslog_redact).
 *
 * Writing never blocks the worker on a pipe, a FIFO or a socket (they
 * are written without blocking, at most PIPE_BUF bytes of whole lines at
 * a time so lines of several workers never interleave); what they do not
 * take waits in the buffer, and when the buffer is full new lines are
 * dropped and counted (the error log says how many), never waited for.
 * A regular file is written with plain write(), which the kernel's page
 * cache absorbs: only a disk that falls behind its dirty-page limits can
 * make it wait (as it would nginx).
 */
#ifndef PORTICO_ACCESSLOG_H
#define PORTICO_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../master/config.h"
#include "policy.h"

#define ACCESSLOG_NO_TIME	UINT64_MAX	/* upstream_us: not contacted */

struct accesslog_entry {
	const char *client_ip;		/* client address text */
	const char *method;
	size_t method_len;
	const char *target;		/* path, '?' and the redacted query */
	size_t target_len;
	int minor_version;
	int status;
	uint64_t bytes_in;		/* request bytes read: head + body */
	uint64_t bytes_out;		/* response bytes written */
	uint64_t duration_us;
	uint64_t upstream_us;		/* or ACCESSLOG_NO_TIME */
	const char *route;		/* NULL when no route matched */
	const char *service;		/* the route's service, or NULL */
	const char *upstream;		/* instance address or NULL */
	const char *trace;
	const char *reason;		/* why the gateway answered, or NULL */
	enum xctx_cache cache;
	enum xctx_ratelimit ratelimit;
	const char *consumer;		/* NULL when none was verified */
	size_t consumer_len;
	const char *user_agent;		/* NULL when the request had none */
	size_t user_agent_len;
	const char *referer;		/* NULL when the request had none */
	size_t referer_len;
};

#define ACCESSLOG_FLUSH_MS 200

struct accesslog;

/* accesslog_open: NULL when the config turns access logs off (or the file
 * cannot be opened: then *err is set to errno). */
struct accesslog *accesslog_open(const struct config *cfg, int *err);
void accesslog_write(struct accesslog *al, const struct accesslog_entry *e);
/* accesslog_flush: write what the destination takes now. */
void accesslog_flush(struct accesslog *al);
/* accesslog_pending: whether lines wait to be written. */
bool accesslog_pending(const struct accesslog *al);
int accesslog_reopen(struct accesslog *al);
void accesslog_close(struct accesslog *al);
/* accesslog_dropped: lines dropped since the log was opened (the buffer
 * was full, or the destination failed). */
uint64_t accesslog_dropped(const struct accesslog *al);

/*
 * accesslog_redact: the query Q[0..n) (without its '?') into OUT, at most
 * CAP bytes, with the value of every parameter whose name is a credential
 * replaced by REDACTED. Names are compared percent-decoded ('+' is a
 * space), without a trailing "[]", case-insensitively, against token,
 * access_token, id_token, api_key, apikey, key, password, secret,
 * signature, sig and the NULL-terminated list EXTRA (may be NULL).
 * Parameters are separated by '&' or ';' (some servers split on both).
 * A parameter without '=' has no value to hide; an empty value stays
 * empty. Output cut at CAP never shows a credential's value. Returns the
 * bytes written.
 */
size_t accesslog_redact(char *const *extra, const char *q, size_t n,
    char *out, size_t cap);
/* accesslog_target: PATH, then '?' and the redacted query QUERY[0..qlen)
 * (QUERY without its '?'; NULL for none), into OUT (at most CAP bytes).
 * Returns the bytes written. */
size_t accesslog_target(const struct accesslog *al, const char *path,
    size_t plen, const char *query, size_t qlen, char *out, size_t cap);

#endif
