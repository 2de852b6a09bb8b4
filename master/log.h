/*
 * log: one logging module for master, workers and gwctl. Lines carry the
 * time, the level and the pid: "2026-11-29T07:00:00Z [info] 1234: text".
 */
#ifndef PORTICO_LOG_H
#define PORTICO_LOG_H

#include <stdint.h>

#include "config.h"

/* log_open: write to PATH ("-" or NULL = stderr) from now on, dropping
 * messages below LEVEL. Returns 0, or -1 with errno set (stderr kept). */
int log_open(const char *path, enum log_level level);
/* log_reopen: reopen the same path (after rotation). */
int log_reopen(void);
void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Flood guard for one kind of message (one call site, or one per worker):
 * the first line is written at once; lines within interval_ms of the last
 * one written are held back and counted, and the next line written (by a
 * later log_limited, log_limit_tick or log_limit_flush) stands for all of
 * them: "accept: Too many open files (repeated 57 times)". Zero it and set
 * interval_ms (0 = LOG_LIMIT_MS) before use.
 */
#define LOG_LIMIT_MS	5000
#define LOG_LIMIT_TEXT	512

struct log_limit {
	unsigned interval_ms;
	uint64_t next_ms;		/* monotonic: a line may go out then */
	unsigned held;			/* lines held back since the last */
	enum log_level level;		/* of the last held line */
	char text[LOG_LIMIT_TEXT];	/* the last held line */
};

/* log_limited: log_msg under guard L at monotonic time NOW_MS. */
void log_limited(struct log_limit *l, uint64_t now_ms, enum log_level level,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* log_limit_tick: write the held lines' count once the interval is over
 * (call from a timer, so the count of a flood that stopped is not lost). */
void log_limit_tick(struct log_limit *l, uint64_t now_ms);
/* log_limit_flush: write the held lines' count now (the flood is over);
 * the interval keeps running. */
void log_limit_flush(struct log_limit *l);

#define log_debug(...)	log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...)	log_msg(LOG_ERROR, __VA_ARGS__)

#endif
