/*
 * accesslog: one line per completed request, JSON or combined, buffered
 * per worker and written when 32 KiB have gathered or the oldest line is
 * ACCESSLOG_FLUSH_MS old (like nginx's buffer=32k flush=...).
 * The query string is never logged: it is where clients put tokens and
 * keys, and credentials must not reach a log.
 */
#ifndef PORTICO_ACCESSLOG_H
#define PORTICO_ACCESSLOG_H

#include <stdbool.h>
#include <stdint.h>
#include "../master/config.h"

struct accesslog_entry {
	const char *remote;		/* client address text */
	const char *method;
	size_t method_len;
	const char *path;		/* normalised path, no query */
	size_t path_len;
	int minor_version;
	int status;
	uint64_t bytes;			/* response bytes written */
	uint64_t duration_us;
	const char *route;		/* NULL when no route matched */
	const char *upstream;		/* instance address or NULL */
	const char *trace;
	const char *reason;		/* why the gateway answered, or NULL */
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
void accesslog_flush(struct accesslog *al);
/* accesslog_pending: whether lines wait to be written. */
bool accesslog_pending(const struct accesslog *al);
int accesslog_reopen(struct accesslog *al);
void accesslog_close(struct accesslog *al);

#endif
