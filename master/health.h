/*
 * health (master): active health checks, run by the master on its own
 * event loop, never blocking it: one non-blocking `GET path` per
 * instance of every service with a `health` group, every interval_ms,
 * bounded by timeout_ms. A check passes when the status line arrives
 * with a status in the configured range (2xx by default). The results
 * go to the store's health database (shm/health.h), written only when
 * something changes; workers skip instances that are not up.
 *
 * The checked instances follow the configuration: the serving one and,
 * during a reload, the next one too, so a new instance is checked while
 * the new workers start (they do not use it before its first pass).
 * After a binary upgrade has handed the node over, the old master checks
 * nothing.
 */
#ifndef PORTICO_MASTER_HEALTH_H
#define PORTICO_MASTER_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

struct master;
struct health_checks;

/* health_checks_open: the checks of m->cfg. At a cold start (not an
 * upgrade's new master), instances with no health record are recorded
 * as up, unchecked: a fresh node serves at once, as HAProxy's servers
 * start up. Call after the store is ready, before forking workers. NULL
 * when out of memory (logged). */
struct health_checks *health_checks_open(struct master *m);
void health_checks_close(struct health_checks *hc);
/* health_checks_tick: every master loop turn: follow a changed
 * configuration, start the checks that are due, time out the late ones
 * and write the results. */
void health_checks_tick(struct health_checks *hc, uint64_t now_ms);
/* health_checks_deadline: the next time a check starts or times out
 * (monotonic ms), 0 when none. */
uint64_t health_checks_deadline(const struct health_checks *hc);

/* What the last check of an instance found, for gwctl. */
struct health_checks_last {
	bool checked;			/* a check has finished */
	bool ok;
	uint64_t at_ms;			/* when it finished (monotonic) */
	char what[96];			/* "status 200", "connect: ..." */
};
/* health_checks_last: the last check of instance ADDR of service SVC;
 * false when that instance is not checked. */
bool health_checks_last(const struct health_checks *hc, const char *svc,
    const char *addr, struct health_checks_last *out);

#endif
