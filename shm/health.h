/*
 * health: the health of each service instance, in the store's "health"
 * database, keyed like the breakers (breaker_key: service name, a NUL,
 * the instance address as configured), so a reload that reorders
 * instances, a restart or an upgrade keeps it.
 *
 * The master's active checks write it (health_update); a worker marks an
 * instance down passively when its breaker opens (breaker_record), and
 * the next `rise` passing checks bring it back. Workers read it through
 * their availability check: an instance of a service with health checks
 * is used only when its record says up, so one with no record yet (added
 * by a reload) waits for its first passing check. At a cold start the
 * master records every instance without a record as up, unchecked
 * (health_assume_up), as HAProxy starts its servers.
 *
 * Writes happen only when something changes: the run counters stop at
 * `rise` and `fall`, so a steady instance costs no write per check.
 *
 * Stored value: msgpack [format 1, state, passive, checked, ok_run,
 * fail_run, since_ns, last_err, last_status]. Time is CLOCK_MONOTONIC ns
 * (store_now_ns).
 *
 * Store functions return 0 / 1 as said, or a negative store code
 * (store_strerror).
 */
#ifndef PORTICO_HEALTH_H
#define PORTICO_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define HEALTH_FORMAT		1
#define HEALTH_VALUE_MAX	96

enum health_state {
	HEALTH_UNKNOWN,	/* no record: never checked (not used when the
			 * service has checks) */
	HEALTH_UP,	/* used; ok_run may be below rise only while
			 * unchecked (assumed up at start) */
	HEALTH_DOWN,	/* skipped: `fall` checks failed, or its breaker
			 * opened (passive) */
};

/* Why the last failing check (or the passive mark) failed. */
enum health_err {
	HEALTH_ERR_NONE,
	HEALTH_ERR_CONNECT,	/* refused or unreachable */
	HEALTH_ERR_TIMEOUT,	/* no answer within timeout_ms */
	HEALTH_ERR_STATUS,	/* answered with another status */
	HEALTH_ERR_CLOSED,	/* closed before a status line */
	HEALTH_ERR_BAD,		/* not an HTTP status line */
	HEALTH_ERR_PASSIVE,	/* its circuit breaker opened */
};

struct health {
	uint32_t state;		/* enum health_state */
	uint32_t passive;	/* down by the breaker, not by checks */
	uint32_t checked;	/* a check has decided the state */
	uint32_t ok_run;	/* consecutive passes, at most rise */
	uint32_t fail_run;	/* consecutive failures, at most fall */
	uint64_t since_ns;	/* in this state since */
	uint32_t last_err;	/* enum health_err of the last failure */
	uint32_t last_status;	/* its status, HEALTH_ERR_STATUS */
};

enum health_change {
	HEALTH_SAME,		/* nothing to write */
	HEALTH_COUNTED,		/* counters or the error changed */
	HEALTH_WENT_UP,
	HEALTH_WENT_DOWN,
};

/* health_apply: one check result (OK, or ERR and STATUS) with the
 * service's FALL and RISE at NOW. An instance never checked (absent,
 * or assumed up) takes its first result at once: up after one pass
 * (a reload's new instance is used from its first passing check), down
 * after one failure (it was never seen working). */
enum health_change health_apply(struct health *h, bool ok, unsigned fall,
    unsigned rise, uint64_t now_ns, unsigned err, unsigned status);
/* health_mark_passive: down because its breaker opened (an instance
 * already down stays as it is). Whether it changed. */
bool health_mark_passive(struct health *h, uint64_t now_ns);
const char *health_state_name(unsigned state);
const char *health_err_name(unsigned err);

int health_encode(const struct health *h, void *buf, size_t cap);
/* health_decode: 0, or -1 for a value not of HEALTH_FORMAT. */
int health_decode(const void *buf, size_t len, struct health *h);

/* health_get: the record under KEY in TXN (a txn the caller has open):
 * 1, or 0 when absent (h zeroed: HEALTH_UNKNOWN). */
int health_get(struct store *s, MDB_txn *txn, const void *key, size_t klen,
    struct health *h);
/* health_update: apply a check result in one write txn, writing only
 * when something changed. *after (may be NULL) is the record, *ch what
 * changed. 0 or negative. */
int health_update(struct store *s, const void *key, size_t klen, bool ok,
    unsigned fall, unsigned rise, uint64_t now_ns, unsigned err,
    unsigned status, struct health *after, enum health_change *ch);
/* health_assume_up: record instances KEYS[0..N) as up, unchecked,
 * where they have no record, in one write txn. Number written, or
 * negative. */
struct health_key {
	const void *key;
	size_t klen;
};
int health_assume_up(struct store *s, const struct health_key *keys,
    size_t n, uint64_t now_ns);


#endif
