/*
 * upstream: per-worker keep-alive pools per service instance, balancing,
 * and non-blocking connects. The upstream client (upclient.h) is the one
 * user of the pools; gwctl explain uses the balancing functions too, so
 * what it shows is what the proxy does.
 */
#ifndef PORTICO_UPSTREAM_H
#define PORTICO_UPSTREAM_H

#include "worker-t.h"

/* upstream_services: the runtime state of every service of CFG (instances
 * with empty pools), round-robin starting at SLOT so workers spread.
 * NULL when out of memory; upstream_services_free closes any pooled
 * connection. */
struct service_rt *upstream_services(const struct config *cfg,
    unsigned slot);
void upstream_services_free(const struct config *cfg, struct service_rt *s);

/* upstream_hash: the balancer's hash of p[0..len): hash_bytes
 * (shm/hash.h) with the standard basis, cut to 32 bits. */
uint32_t upstream_hash(const void *p, size_t len);
/* upstream_key_hash: the hash a hash:* balance policy of service S keys
 * on: the client address, the named header's value ("" when absent) or
 * the consumer (CONSUMER may be NULL: ""). 0 for other policies. */
uint32_t upstream_key_hash(const struct cfg_service *s, int family,
    const uint8_t *addr, const struct http1_header *h, size_t nh,
    const char *consumer, size_t consumer_len);
/* upstream_pick: the instance index for a request to S with key HASH;
 * ATTEMPT > 0 moves to another instance than FIRST where there is one. */
int upstream_pick(struct service_rt *s, uint32_t hash, unsigned attempt,
    int first);

/* upstream_acquire: an idle pooled connection to the instance (UF_REUSED
 * set, UP_ACTIVE) or a new one (UP_CONNECTING), bound to UC. NULL with
 * errno set when the connect failed at once (a refused connect). */
struct upconn *upstream_acquire(struct worker *w, struct instance *inst,
    struct upclient *uc);
/* upstream_release: back into its pool when REUSABLE and the pool has
 * room, else closed. */
void upstream_release(struct upconn *u, bool reusable);
void upstream_close(struct upconn *u);
/* upstream_idle_clean: an idle TLS connection became readable: whether
 * what came were only records without data (a session ticket), so it
 * stays usable. False for plain connections: any byte is unrequested. */
bool upstream_idle_clean(struct upconn *u);

#endif
