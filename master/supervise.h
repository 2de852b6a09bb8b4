/*
 * supervise: the workers' lives. Fork a slot's process (which keeps only
 * its own listening sockets), respawn a dead one into the same slot with
 * backoff (100 ms doubling to 10 s, reset after a minute of life), reap
 * children, signal a set of slots, retire a generation to drain (SIGKILL
 * once its drain timeout has passed). Each live process has a counters
 * slot of its own (m->cused), freed when it is reaped.
 */
#ifndef PORTICO_SUPERVISE_H
#define PORTICO_SUPERVISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct master;
struct master_slot;

/* supervise_slot_init: a fresh slot number NUM with a counters slot of
 * its own; the caller made sure one is free (supervise_counters_free). */
void supervise_slot_init(struct master *m, struct master_slot *s,
    unsigned num);
/* supervise_counters_free: how many counters slots are free. */
unsigned supervise_counters_free(const struct master *m);
/* supervise_spawn: fork the process serving S for GENERATION with CFG.
 * 0, or -1 (logged; a respawn is scheduled after the slot's backoff). */
int supervise_spawn(struct master *m, struct master_slot *s,
    const struct config *cfg, unsigned generation);
/* supervise_respawn_due: spawn the serving slots whose respawn time has
 * come. */
void supervise_respawn_due(struct master *m, uint64_t now);
/* supervise_all_ready: whether every one of the N slots at S runs its
 * loop (its counters say so). */
bool supervise_all_ready(struct master *m, struct master_slot *s,
    unsigned n);
/* supervise_signal: send SIG to the live processes of N slots at S (S may
 * be NULL). Returns how many were signalled. */
unsigned supervise_signal(struct master_slot *s, unsigned n, int sig);
/* supervise_signal_all: every generation's processes. */
void supervise_signal_all(struct master *m, int sig);
/* supervise_mark_stopping: tell every live worker, through its counters,
 * that nobody serves after it (idle keep-alive connections may close). */
void supervise_mark_stopping(struct master *m);
/* supervise_retire: move the live processes of N slots at S into the
 * draining set (SIGQUIT, or SIGKILL with KILL_UNREADY for those that
 * never started serving); the others' counters slots are freed. S's
 * array itself stays the caller's. */
void supervise_retire(struct master *m, struct master_slot *s, unsigned n,
    bool kill_unready);
/* supervise_kill_overdue: SIGKILL draining processes past their drain
 * timeout. */
void supervise_kill_overdue(struct master *m, uint64_t now);
/* supervise_reap: collect every exited child: a draining worker is
 * forgotten, a starting one fails its reload (m->op_err), a serving one
 * is respawned, the upgrade's child goes to upgrade_reaped. */
void supervise_reap(struct master *m);
/* supervise_all_exited: no process of any generation is left. */
bool supervise_all_exited(const struct master *m);
/* supervise_describe: "exited with status N", "killed by signal N
 * (NAME)[, core dumped]" for a wait status. */
void supervise_describe(int status, char *buf, size_t len);

#endif
