/*
 * master: the supervising process. It owns every listening socket, the
 * counters mapping, the control socket and the pid file; it forks the
 * workers, respawns a dead one with backoff into the same slot (whose
 * listening sockets it keeps open meanwhile, so queued connections wait
 * instead of being refused), and stops them on SIGTERM (fast) or SIGQUIT
 * (graceful). Its loop is signalfd + epoll; it never handles client
 * traffic.
 */
#ifndef PORTICO_MASTER_H
#define PORTICO_MASTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "../shm/counters.h"

/* Something registered in the master's epoll: epoll data.ptr points at
 * one of these, embedded in its owner. */
struct master_ev {
	int fd;
	void (*fn)(struct master_ev *ev, uint32_t events);
};

/* One worker slot: its listening sockets and the process serving them. */
struct master_slot {
	unsigned index;			/* also the counters slot */
	int *fds;			/* one per cfg->server.listen entry */
	pid_t pid;			/* 0 = no process right now */
	unsigned generation;
	uint64_t started_ms;		/* monotonic */
	unsigned backoff_ms;		/* next respawn delay */
	uint64_t respawn_at;		/* monotonic ms; 0 = none pending */
	unsigned quick_deaths;		/* deaths within 60 s of start, in a row */
	unsigned restarts;
};

enum master_state {
	MASTER_RUNNING,			/* workers serve; dead ones respawn */
	MASTER_DRAINING,		/* SIGQUIT sent; waiting for exits */
	MASTER_STOPPING,		/* SIGTERM sent; waiting for exits */
};

struct control;

struct master {
	struct config *cfg;
	pid_t pid;
	unsigned generation;
	uint64_t start_ms;		/* monotonic */
	int epfd;
	struct master_ev sig;		/* signalfd */
	struct counters *counters;
	struct master_slot *slots;
	unsigned nslots;
	struct control *ctl;
	enum master_state state;
	uint64_t deadline_ms;		/* stop: when to SIGKILL / give up */
	bool killed;			/* SIGKILL already sent */
};

/* master_run: start everything from a loaded config and supervise until
 * stopped. Returns the process exit status (0 after a requested stop, 1
 * when start-up failed, after saying why on stderr and in the log). */
int master_run(struct config *cfg);

/* master_stop: begin a graceful (SIGQUIT-like) or fast (SIGTERM-like)
 * stop; a fast stop overrides a graceful one in progress. */
void master_stop(struct master *m, bool graceful);

/* master_now_ms: CLOCK_MONOTONIC in milliseconds. */
uint64_t master_now_ms(void);

/* master_mkdirs: create the missing parent directories of PATH (mode
 * 0755, like mkdir -p). Returns 0, or -1 with errno set. */
int master_mkdirs(const char *path);

#endif
