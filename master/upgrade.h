/*
 * upgrade: the binary upgrade's socket handoff. The old master starts the
 * new binary with one end of a SOCK_SEQPACKET socketpair inherited as the
 * descriptor named by PORTICO_UPGRADE_FD, and sends, one datagram each,
 * every listening socket and the control socket with SCM_RIGHTS, each
 * described by a msgpack map in the msg.h framing:
 *   {"kind": "listener", "address": "127.0.0.1:8080", "slot": 0} + fd
 *   {"kind": "control", "address": "/run/portico.sock", "slot": -1} + fd
 *   {"kind": "admin", "address": "127.0.0.1:9901", "slot": -1} + fd
 *   {"kind": "end", "count": N}
 * The new master adopts them instead of binding, starts its workers and
 * answers {"kind": "ready", "pid": P} (or {"kind": "error", "error": T}).
 *
 * upgrade.c speaks that protocol; upgrade_op.c runs the upgrade as one of
 * the master's operations (m->op): in the old master, `NEWBIN -t`, then
 * the handoff, then drain and exit, or fail at a named step and keep
 * serving; in the new master, report ready, then answer gwctl once the
 * old master has stopped.
 */
#ifndef PORTICO_UPGRADE_H
#define PORTICO_UPGRADE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UPGRADE_ENV		"PORTICO_UPGRADE_FD"
#define UPGRADE_TIMEOUT_MS	10000

struct upgrade_sock {
	char address[108];		/* listen address text, or socket path */
	int slot;			/* -1: the control socket */
	int fd;
};

/* What the new master received. */
struct upgrade_set {
	struct upgrade_sock *socks;
	size_t n;
	int control_fd;			/* -1 if none */
	char control_path[108];
	int admin_fd;			/* -1 if none */
	char admin_addr[108];
};

/* upgrade_spawn_check: start `BIN -t -c FILE -p PREFIX` with its stdout
 * and stderr on a pipe (*out_fd, non-blocking, close-on-exec). 0 or -1. */
int upgrade_spawn_check(const char *bin, const char *file,
    const char *prefix, pid_t *pid, int *out_fd);
/* upgrade_spawn: start `BIN -c FILE -p PREFIX` as the new master with the
 * handoff socket; *sock_fd is the old master's end. 0 or -1. */
int upgrade_spawn(const char *bin, const char *file, const char *prefix,
    pid_t *pid, int *sock_fd);

/* upgrade_send: one described socket (sfd >= 0) or a plain message
 * (sfd < 0, address NULL) of KIND; VAL is "slot", "count" or "pid". A
 * blocking send bounded by the socket's SO_SNDTIMEO. 0 or -1. */
int upgrade_send(int fd, const char *kind, const char *address, long val,
    int sfd);
/* upgrade_send_error: {"kind": "error", "error": TEXT}. */
int upgrade_send_error(int fd, const char *text);
/* upgrade_recv: one datagram: its kind, address (or error text) and
 * value; *sfd is a received descriptor (close-on-exec) or -1. Returns 1,
 * 0 at end of stream, -1 on error (errno; EPROTO: malformed). */
int upgrade_recv(int fd, char *kind, size_t kindlen, char *address,
    size_t addrlen, long *val, int *sfd);

/* upgrade_inherited: in a new master, the handoff descriptor named by the
 * environment (removed from it, made close-on-exec), or -1. */
int upgrade_inherited(void);
/* upgrade_receive: read every socket until "end" (bounded by a 10 s
 * receive timeout). 0, or -1 with a reason in err; set is filled either
 * way and freed with upgrade_set_free (which closes what was not taken:
 * take a descriptor by setting it to -1). */
int upgrade_receive(int fd, struct upgrade_set *set, char *err,
    size_t errlen);
void upgrade_set_free(struct upgrade_set *set);

/* ---- upgrade_op.c: the upgrade as the master runs it ---- */

struct master;

/* upgrade_begin: begin a binary upgrade to BINARY (NULL: the binary we
 * were started from). 0 = started (the result goes to control_complete),
 * or -1 with the reason in err. */
int upgrade_begin(struct master *m, const char *binary, char *err,
    size_t errlen);
/* upgrade_fail: end the upgrade in progress at STEP ("check", "start",
 * "handoff", "ready"): stop the new binary, keep serving, answer the
 * waiting gwctl with the reason, then run a pending reload. */
void upgrade_fail(struct master *m, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* upgrade_reaped: the upgrade's child (the check or the new master) has
 * exited with STATUS. */
void upgrade_reaped(struct master *m, int status);
/* upgrade_tick: once per loop turn during an upgrade: fail it when its
 * step is late. */
void upgrade_tick(struct master *m, uint64_t now);
/* upgrade_close: stop watching the check's output or the handoff socket,
 * and close it. */
void upgrade_close(struct master *m);
/* upgrade_ready: in the new master, once every worker is ready: write the
 * pid file, report ready to the old master, and answer gwctl once it has
 * stopped (it closes the handoff socket) or after 5 s. */
void upgrade_ready(struct master *m);
/* upgrade_handover_tick: answer gwctl anyway when the old master is late
 * giving the control socket up. */
void upgrade_handover_tick(struct master *m, uint64_t now);

#endif
