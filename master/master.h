/*
 * master: the supervising process. It owns every listening socket, the
 * counters mapping, the control socket and the pid file; it forks the
 * workers, respawns a dead one with backoff into the same slot (whose
 * listening sockets it keeps open meanwhile, so queued connections wait
 * instead of being refused), and stops them on SIGTERM (fast) or SIGQUIT
 * (graceful). Its loop is signalfd + epoll; it never handles client
 * traffic.
 *
 * This header holds the master's state, shared by the files that run it:
 * master.c (start, the loop, signals, stop), listeners.c (the listening
 * sockets), supervise.c (fork, respawn, reap), reload.c (generations),
 * upgrade_op.c (the binary upgrade) and control*.c (gwctl). Nothing
 * outside master/ includes it.
 */
#ifndef PORTICO_MASTER_H
#define PORTICO_MASTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "config.h"
#include "../shm/counters.h"

/* Something registered in the master's epoll: epoll data.ptr points at
 * one of these, embedded in its owner. */
struct master_ev {
	int fd;
	void (*fn)(struct master_ev *ev, uint32_t events);
};

#define MASTER_MAX_WORKERS	256	/* config's limit for server.workers */
/* Counters slots: room for the serving generation, a reload's next one
 * and two generations still draining. */
#define MASTER_COUNTER_SLOTS	(4 * MASTER_MAX_WORKERS)
#define MASTER_READY_MS		10000	/* a new generation's start-up bound */

/* One listen address: one SO_REUSEPORT socket per slot number, created
 * once and kept across reloads (closing one throws its accept queue
 * away), handed to a new binary at upgrade. */
struct master_sock {
	struct cfg_addr addr;		/* as configured */
	struct sockaddr_storage bound;	/* with the port the kernel chose */
	socklen_t blen;
	int *fds;			/* by slot number */
	unsigned nfds;
};

/* One worker: the process serving a slot number of a generation. */
struct master_slot {
	unsigned index;			/* counters slot (unique while alive) */
	struct stats_gen *mg;		/* its generation's metrics (stats.h) */
	unsigned num;			/* slot number: which sockets it gets */
	int *fds;			/* its sockets, one per listen entry */
	pid_t pid;			/* 0 = no process right now */
	unsigned generation;
	uint64_t started_ms;		/* monotonic */
	unsigned backoff_ms;		/* next respawn delay */
	uint64_t respawn_at;		/* monotonic ms; 0 = none pending */
	uint64_t kill_at;		/* draining: SIGKILL after this */
	unsigned quick_deaths;		/* deaths within 60 s of start, in a row */
	unsigned restarts;
	bool ready;			/* its loop runs (counters say so) */
};

/* What the master is in the middle of; one at a time. */
enum master_op {
	MASTER_OP_NONE,
	MASTER_OP_RELOAD,		/* next generation forked, not all ready */
	MASTER_OP_CHECK,		/* upgrade: `NEWBIN -t` running */
	MASTER_OP_HANDOFF,		/* upgrade: new master has the sockets,
					 * not ready yet */
};

enum master_state {
	MASTER_RUNNING,			/* workers serve; dead ones respawn */
	MASTER_DRAINING,		/* SIGQUIT sent; waiting for exits */
	MASTER_STOPPING,		/* SIGTERM sent; waiting for exits */
};

struct control;
struct stats;
struct stats_gen;
struct admin;
struct health_checks;

struct master {
	struct config *cfg;		/* the serving generation's */
	pid_t pid;
	unsigned generation;
	uint64_t start_ms;		/* monotonic */
	int epfd;
	struct master_ev sig;		/* signalfd */
	struct counters *counters;
	unsigned char *cused;		/* counters slots in use */
	struct stats *stats;		/* metrics regions and totals */
	struct admin *admin;		/* the admin listener, or NULL */
	struct master_sock *socks;
	size_t nsocks;
	struct master_slot *slots;	/* the serving generation */
	unsigned nslots;
	struct master_slot *old;	/* older generations, draining */
	unsigned nold, oldcap;
	struct control *ctl;
	struct health_checks *health;	/* active health checks */
	enum master_state state;
	uint64_t deadline_ms;		/* stop: when to SIGKILL / give up */
	bool killed;			/* SIGKILL already sent */
	bool started;			/* the first generation reported ready */
	bool upgraded;			/* handed over to a new binary: drain,
					 * exit, touch nothing shared */
	enum master_op op;
	bool reload_pending;		/* a SIGHUP came during an operation:
					 * reload when it ends */
	uint64_t op_deadline;		/* monotonic ms */
	struct config *next_cfg;	/* reload: the next generation's */
	struct master_slot *next;
	unsigned nnext;
	char op_err[256];		/* why a next worker died */
	char exe[4096];			/* our binary, as started */
	char upg_bin[4096];
	pid_t upg_pid;			/* the check, then the new master */
	struct master_ev upg;		/* check output pipe / handoff socket */
	char upg_out[512];
	size_t upg_outlen;
	int handoff_fd;			/* new master: to the old one */
	struct master_ev hand;		/* new master, ready: the handoff
					 * socket, until the old master has
					 * stopped answering gwctl */
	uint64_t hand_deadline;		/* monotonic ms: answer gwctl anyway */
};

/* master_run: start everything from a loaded config (taken over: freed
 * here, since a reload replaces it) and supervise until stopped. Returns the process exit status (0 after a requested stop, 1
 * when start-up failed, after saying why on stderr and in the log). */
int master_run(struct config *cfg);

/* master_stop: begin a graceful (SIGQUIT-like) or fast (SIGTERM-like)
 * stop; a fast stop overrides a graceful one in progress. */
void master_stop(struct master *m, bool graceful);

/* master_reopen: reopen the error log and tell every worker (of every
 * generation) to reopen its error and access logs; WHY names the request
 * in the log line. *signalled = workers told. Returns 0, or -1 with errno
 * set when the master's own error log could not be reopened (the workers
 * are signalled either way). */
int master_reopen(struct master *m, const char *why, unsigned *signalled);

/* master_notify: tell systemd (sd_notify) that we serve, with WHAT and
 * the generation in its status line. */
void master_notify(struct master *m, const char *what);

/* master_pidfile_write: write our pid to server.pid_file, if set. 0, or
 * -1 (said on stderr and in the log). */
int master_pidfile_write(struct master *m);

/* master_now_ms: CLOCK_MONOTONIC in milliseconds. */
uint64_t master_now_ms(void);

/* master_mkdirs: create the missing parent directories of PATH (mode
 * 0755, like mkdir -p). Returns 0, or -1 with errno set. */
int master_mkdirs(const char *path);

/* warn_cert_expiry: log certificates of CFG that expire within 14 days. */
void warn_cert_expiry(const struct config *cfg);

#endif
