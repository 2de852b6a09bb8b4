/*
 * listeners: the master's listening sockets (struct master_sock, in
 * m->socks). One SO_REUSEPORT socket per listen address and slot number,
 * opened once and kept across reloads (closing one throws its accept
 * queue away), joined or pruned as generations come and go, taken over
 * from the old master at a binary upgrade. Every int function returns 0,
 * or -1 with a reason in err (or errno, where there is no err).
 */
#ifndef PORTICO_LISTENERS_H
#define PORTICO_LISTENERS_H

#include <stddef.h>

struct cfg_addr;
struct config;
struct master;
struct master_slot;
struct upgrade_set;

/* listeners_open: at start, every address of m->cfg with one socket per
 * serving slot. */
int listeners_open(struct master *m, char *err, size_t errlen);
/* listeners_adopt: in a new master of an upgrade, take the old master's
 * sockets from SET by address and slot number (taken ones are set to -1
 * there); anything missing is created as at a start. */
int listeners_adopt(struct master *m, struct upgrade_set *set, char *err,
    size_t errlen);
/* listeners_need: the sockets of A, with at least N per-slot members,
 * creating the address's group or joining it as needed. An address held
 * by any other listener (another portico's SO_REUSEPORT group included)
 * is refused instead of joined. */
int listeners_need(struct master *m, const struct cfg_addr *a, unsigned n,
    char *err, size_t errlen);
/* listeners_for_slot: fill s->fds with the sockets slot s->num serves for
 * each listen entry of CFG. -1 when one is missing or out of memory. */
int listeners_for_slot(struct master *m, struct master_slot *s,
    const struct config *cfg);
/* listeners_prune: close the sockets no generation needs any more. */
void listeners_prune(struct master *m);
/* listeners_close: close every socket (a stop: new clients are refused at
 * once instead of waiting in a queue nobody reads). */
void listeners_close(struct master *m);

#endif
