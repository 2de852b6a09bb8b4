/*
 * breaker: a circuit breaker per service instance, in the store's
 * "breakers" database, so every worker of the node sees and moves the
 * same breaker.
 *
 * closed: requests pass; `failures` consecutive failures open it.
 * open: nothing passes for open_ns; then it turns half-open.
 * half-open: up to `half_open` probe requests pass, counted in the store
 *   across all workers; a success closes it, a failure opens it again
 *   for twice as long, at most 10 x the configured open time. A probe
 *   whose result never came (its client left, its worker died) is
 *   forgotten after the current open time, so another may go.
 * A result that arrives while the breaker is open (a request admitted
 * before it opened) changes nothing.
 *
 * The hot path reads without writing: breaker_gate says, from a read,
 * whether a request passes, is refused, or needs a write to take a probe;
 * breaker_result on a copy says whether a result changes anything (a
 * success on a closed breaker with no failures does not). A write
 * happens only on a failure, a success after failures, or a state change.
 *
 * Keys: service name, a NUL byte, the instance address as configured
 * ("127.0.0.1:8001"): a reload that reorders instances keeps each one's
 * state. The key of a service alone (its name and a NUL) holds the
 * service's counters (retries refused by its budget, requests shed by
 * its bulkhead).
 *
 * Stored value: msgpack [format 1, state, failures, since_ns, open_ns,
 * probes, probe_ns, last_err, last_status, last_err_ns, opens]; the
 * service record [format 1, retries_refused, shed]. Time is
 * CLOCK_MONOTONIC ns (store_now_ns).
 *
 * Store functions return 0 (or 1 as said) or a negative store code.
 */
#ifndef PORTICO_BREAKER_H
#define PORTICO_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "health.h"
#include "store.h"

#define BREAKER_FORMAT		1
#define BREAKER_VALUE_MAX	128
#define BREAKER_NAME_MAX	255	/* longest service name or address */
#define BREAKER_KEY_MAX		(2 * BREAKER_NAME_MAX + 1)
#define BREAKER_OPEN_MAX	10	/* reopening doubles up to 10 x open */

enum breaker_state {
	BREAKER_CLOSED,		/* passes; failures = consecutive failures */
	BREAKER_OPEN,		/* refuses until since_ns + open_ns */
	BREAKER_HALF_OPEN,	/* probes (< half_open, or the last older
				 * than open_ns) pass; the rest are refused */
};

/* What the last failure was. */
enum breaker_err {
	BREAKER_ERR_NONE,
	BREAKER_ERR_CONNECT,	/* refused, unreachable, connect timeout */
	BREAKER_ERR_RESET,	/* reset before a response */
	BREAKER_ERR_TIMEOUT,	/* no response in time */
	BREAKER_ERR_BAD,	/* malformed response */
	BREAKER_ERR_STATUS,	/* a status the breaker counts (last_status) */
};

struct breaker_params {
	uint32_t failures;	/* consecutive failures that open it, >= 1 */
	uint64_t open_ns;	/* first open period, >= 1 */
	uint32_t half_open;	/* probes at once, >= 1 */
};

struct breaker {
	uint32_t state;		/* enum breaker_state */
	uint32_t failures;	/* consecutive failures */
	uint64_t since_ns;	/* in this state since */
	uint64_t open_ns;	/* open / half-open: this opening's length */
	uint32_t probes;	/* half-open: probes let through */
	uint64_t probe_ns;	/* half-open: when the last one went */
	uint32_t last_err;	/* enum breaker_err */
	uint32_t last_status;
	uint64_t last_err_ns;
	uint64_t opens;		/* times it opened */
};

enum breaker_gate {
	BREAKER_PASS,		/* goes, nothing to write */
	BREAKER_DENY,		/* refused */
	BREAKER_PROBE,		/* may go as a probe: breaker_take decides */
};

enum breaker_change {
	BREAKER_SAME,		/* nothing to write */
	BREAKER_COUNTED,	/* counters changed, not the state */
	BREAKER_OPENED,		/* closed -> open */
	BREAKER_REOPENED,	/* half-open -> open, for longer */
	BREAKER_HALF,		/* open -> half-open (its first probe) */
	BREAKER_CLOSED_NOW,	/* half-open -> closed */
};

/* Arithmetic (no store); a zeroed struct breaker is closed. */
enum breaker_gate breaker_gate(const struct breaker *b,
    const struct breaker_params *p, uint64_t now_ns);
/* breaker_admit: let one request through if the state allows (taking a
 * probe when half-open, turning half-open when the open time is over).
 * 1 when it passes, 0 when refused; *ch says what changed. */
int breaker_admit(struct breaker *b, const struct breaker_params *p,
    uint64_t now_ns, enum breaker_change *ch);
/* breaker_result: the outcome of a request that went (FAILED with ERR
 * and STATUS, or a success). */
enum breaker_change breaker_result(struct breaker *b,
    const struct breaker_params *p, uint64_t now_ns, bool failed,
    unsigned err, unsigned status);
/* breaker_open_left_ns: time until an open breaker turns half-open (0
 * when it is not open, or the time is over). */
uint64_t breaker_open_left_ns(const struct breaker *b, uint64_t now_ns);
const char *breaker_state_name(unsigned state);
const char *breaker_err_name(unsigned err);

int breaker_encode(const struct breaker *b, void *buf, size_t cap);
/* breaker_decode: 0, or -1 for a value not of BREAKER_FORMAT. */
int breaker_decode(const void *buf, size_t len, struct breaker *b);

/* breaker_key: SVC, NUL, INST into OUT: its length, or -1 when a name
 * is longer than BREAKER_NAME_MAX. INST "" is the service's record. */
int breaker_key(const char *svc, const char *inst, char *out, size_t cap);

/* breaker_get: the breaker under KEY in TXN (a txn the caller has
 * open): 1, or 0 when absent (b zeroed: closed). */
int breaker_get(struct store *s, MDB_txn *txn, const void *key,
    size_t klen, struct breaker *b);
/* breaker_take: breaker_admit under the writer lock (the state read
 * afresh): 1 passes, 0 refused, negative on a store error. *after (may
 * be NULL) is the breaker afterwards, *ch what changed. */
int breaker_take(struct store *s, const void *key, size_t klen,
    const struct breaker_params *p, uint64_t now_ns, struct breaker *after,
    enum breaker_change *ch);
/* breaker_record: breaker_result in one write txn (the state read
 * afresh), written only when it changed. With HEALTH (the service has
 * health checks: FALL and RISE are not needed here), an opening also
 * marks the instance down passively (health_mark_passive) in the same
 * txn. 0 or negative. */
int breaker_record(struct store *s, const void *key, size_t klen,
    const struct breaker_params *p, uint64_t now_ns, bool failed,
    unsigned err, unsigned status, bool health, struct breaker *after,
    enum breaker_change *ch);
/* breaker_reset: close the breaker of KEY (its record is deleted:
 * absent is closed) and bring an instance that is down only passively
 * back up. 1 when there was something to reset, 0 when not. */
int breaker_reset(struct store *s, const void *key, size_t klen);

/* What gwctl and the metrics show of one instance, from one read txn. */
struct breaker_view {
	bool has_breaker;	/* a record exists (else: closed) */
	struct breaker b;
	bool has_health;	/* a record exists (else: unknown) */
	struct health h;
};
/* breaker_view: the breaker and health of instance INST of service SVC
 * (names as configured). 0 or negative. */
int breaker_view(struct store *s, const char *svc, const char *inst,
    struct breaker_view *v);

/* The service record. */
struct breaker_svc {
	uint64_t retries_refused;	/* by the retry budget */
	uint64_t shed;			/* by the bulkhead */
};
/* breaker_svc_add: add the counts to service SVC's record. 0 or
 * negative. */
int breaker_svc_add(struct store *s, const char *svc,
    const struct breaker_svc *add);
/* breaker_svc_get: service SVC's counts (zero when absent). 0 or
 * negative. */
int breaker_svc_get(struct store *s, const char *svc, struct breaker_svc *v);

/*
 * breaker_sweep: the master's upkeep (store_dbs): drop the records of
 * breakers closed with no failure for BREAKER_IDLE_NS (absent is
 * closed, so nothing changes for a request), at most once a minute and
 * BREAKER_SWEEP_TXN per call. Records dropped, or negative.
 */
#define BREAKER_IDLE_NS		(600ull * 1000000000ull)
#define BREAKER_SWEEP_TXN	64
struct breaker_sweep {
	uint64_t next_ns;	/* not before */
};
int breaker_sweep(struct store *s, uint64_t now_ns, struct breaker_sweep *sw);

#endif
