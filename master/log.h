/*
 * log: one logging module for master, workers and gwctl. Lines carry the
 * time, the level and the pid: "2026-11-29T07:00:00Z [info] 1234: text".
 */
#ifndef PORTICO_LOG_H
#define PORTICO_LOG_H

#include "config.h"

/* log_open: write to PATH ("-" or NULL = stderr) from now on, dropping
 * messages below LEVEL. Returns 0, or -1 with errno set (stderr kept). */
int log_open(const char *path, enum log_level level);
/* log_reopen: reopen the same path (after rotation). */
int log_reopen(void);
void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...)	log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...)	log_msg(LOG_ERROR, __VA_ARGS__)

#endif
