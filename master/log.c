#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* The one piece of process-wide state: where log lines go. */
static int log_fd = STDERR_FILENO;
static enum log_level log_min = LOG_INFO;
static char log_path[4096];

static const char *const level_names[] = {
	[LOG_DEBUG] = "debug", [LOG_INFO] = "info",
	[LOG_WARN] = "warn", [LOG_ERROR] = "error",
};

int
log_open(const char *path, enum log_level level)
{
	int fd;

	log_min = level;
	if (path == NULL || strcmp(path, "-") == 0) {
		if (log_fd != STDERR_FILENO)
			close(log_fd);
		log_fd = STDERR_FILENO;
		log_path[0] = '\0';
		return 0;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	snprintf(log_path, sizeof(log_path), "%s", path);
	return 0;
}

int
log_reopen(void)
{
	if (log_path[0] == '\0')
		return 0;
	return log_open(log_path, log_min);
}

void
log_set_level(enum log_level level)
{
	log_min = level;
}

/* One line: the prefix, TEXT, then SUFFIX (may be ""). */
static void
write_line(enum log_level level, const char *text, const char *suffix)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	int n, m;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ "
	    "[%s] %d: ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
	    level_names[level], (int)getpid());
	m = snprintf(line + n, sizeof(line) - n - 1, "%s%s", text, suffix);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line: O_APPEND keeps lines of several processes whole. */
	if (write(log_fd, line, n) < 0) {
		/* nowhere left to report it */
	}
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char text[2048];
	va_list ap;
	int saved = errno;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	write_line(level, text, "");
	errno = saved;
}

/* Write the held line with its count, if any is held. */
static void
limit_write(struct log_limit *l)
{
	char suffix[48] = "";

	if (l->held == 0)
		return;
	if (l->held > 1)
		snprintf(suffix, sizeof(suffix), " (repeated %u times)",
		    l->held);
	write_line(l->level, l->text, suffix);
	l->held = 0;
}

void
log_limited(struct log_limit *l, uint64_t now_ms, enum log_level level,
    const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(l->text, sizeof(l->text), fmt, ap);
	va_end(ap);
	l->level = level;
	l->held++;
	/* Within the interval: held, and counted in the next line. */
	if (now_ms >= l->next_ms) {
		limit_write(l);
		l->next_ms = now_ms + (l->interval_ms != 0 ? l->interval_ms :
		    LOG_LIMIT_MS);
	}
	errno = saved;
}

void
log_limit_tick(struct log_limit *l, uint64_t now_ms)
{
	int saved = errno;

	if (l->held == 0 || now_ms < l->next_ms)
		return;
	limit_write(l);
	l->next_ms = now_ms + (l->interval_ms != 0 ? l->interval_ms :
	    LOG_LIMIT_MS);
	errno = saved;
}

void
log_limit_flush(struct log_limit *l)
{
	int saved = errno;

	limit_write(l);
	errno = saved;
}
