/*
 * tickets: the TLS session-ticket keys every worker of the node shares,
 * in the store's "tickets" database, so a client resumes its session on
 * any worker, after a reload and after a binary upgrade. The master makes
 * the first key and rotates: a new key every ROTATE_S seconds, the one it
 * replaces kept for decryption until the next rotation. Workers only
 * read.
 *
 * Errors: 0 on success, a negative LMDB code (store.h) on failure.
 */
#ifndef PORTICO_TICKETS_H
#define PORTICO_TICKETS_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

#define TICKETS_FORMAT	1

struct ticket_key {
	uint8_t name[16];		/* sent in the ticket: which key */
	uint8_t aes[32];		/* AES-256-CBC */
	uint8_t hmac[32];		/* HMAC-SHA256 */
	uint64_t created_s;		/* store clock (store_now_ns), s */
};

struct ticket_keys {
	struct ticket_key cur;		/* encrypts new tickets */
	struct ticket_key prev;		/* still decrypts */
	bool has_prev;
	uint64_t serial;		/* grows with every rotation */
};

/* tickets_rotate: (the master) make the first key, or rotate when the
 * current one is ROTATE_S seconds old. 1 when keys changed, 0 when not,
 * or negative. */
int tickets_rotate(struct store *s, uint64_t rotate_s);
/* tickets_set_rotation: the period the database's upkeep (store_tick)
 * rotates with; 0 (the default) leaves the keys alone. */
void tickets_set_rotation(uint64_t rotate_s);
/* tickets_upkeep: the database's upkeep hook (store_dbs.c). */
int tickets_upkeep(struct store *s, uint64_t now_ns, void *state);
/* tickets_read: the keys. 0, 1 when there are none yet, or negative. */
int tickets_read(struct store *s, struct ticket_keys *out);

#endif
