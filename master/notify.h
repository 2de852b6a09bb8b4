/*
 * notify: the sd_notify protocol spoken directly (no libsystemd). When
 * NOTIFY_SOCKET names a unix datagram socket ("/path" or "@abstract"),
 * each call sends one datagram of newline-separated VAR=value lines;
 * without it every call is a no-op. Used by the master only.
 */
#ifndef PORTICO_NOTIFY_H
#define PORTICO_NOTIFY_H

#include <stdbool.h>

/* notify_enabled: whether NOTIFY_SOCKET is set. */
bool notify_enabled(void);
/* notify_send: format and send one state message, e.g.
 * notify_send("READY=1\nSTATUS=%s", text). Returns 0 when sent or when
 * notification is off, -1 with errno set on failure. */
int notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* notify_reloading: RELOADING=1 with MONOTONIC_USEC (what systemd's
 * Type=notify-reload expects at the start of a reload). */
int notify_reloading(void);

#endif
