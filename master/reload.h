/*
 * reload: the next generation. A reload reads the same file again and, if
 * it loads and changes nothing a running master cannot take over (the
 * control socket, the pid file, the shared store), starts the next
 * generation's workers beside the serving ones; once all report ready
 * they serve and the previous generation drains, and if one dies or the
 * start-up bound passes they are stopped and the old generation keeps
 * serving. One operation runs at a time (m->op); a SIGHUP during one is
 * remembered (m->reload_pending) and run when it ends.
 */
#ifndef PORTICO_RELOAD_H
#define PORTICO_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct master;

/* reload_begin: start a reload. Returns 0 when the next generation is
 * starting (the result goes to control_complete), or -1 with "FILE:LINE:
 * reason" or another reason in err when nothing changed. */
int reload_begin(struct master *m, char *err, size_t errlen);
/* reload_sighup: a SIGHUP: reload now, or after the operation running. */
void reload_sighup(struct master *m);
/* reload_tick: once per loop turn while a reload runs: finish it when the
 * next generation is ready, has failed, or is late. */
void reload_tick(struct master *m, uint64_t now);
/* reload_finish: switch to the next generation (OK) or stop it and keep
 * the serving one (WHY says why), answer the waiting gwctl, then run a
 * pending reload. */
void reload_finish(struct master *m, bool ok, const char *why);
/* reload_run_pending: the operation has ended; run the reload a SIGHUP
 * asked for meanwhile, if any. */
void reload_run_pending(struct master *m);

#endif
