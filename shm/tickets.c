#include <openssl/rand.h>
#include <string.h>

#include "tickets.h"

#define KEY	"keys"

/* The master's setting (plain, like every parameter shm/ takes). */
static uint64_t rotation_s;

struct stored {
	uint32_t format;
	uint32_t has_prev;
	uint64_t serial;
	struct ticket_key cur, prev;
};

static int
get(struct store *s, MDB_txn *txn, struct stored *out)
{
	MDB_val k = { sizeof(KEY) - 1, (void *)KEY }, v;
	int rc = mdb_get(txn, s->dbi[STORE_TICKETS], &k, &v);

	if (rc == MDB_NOTFOUND)
		return 1;
	if (rc != 0)
		return -rc;
	/* Another format reads as no keys: the next rotation makes one. */
	if (v.mv_size != sizeof(*out))
		return 1;
	memcpy(out, v.mv_data, sizeof(*out));
	return out->format == TICKETS_FORMAT ? 0 : 1;
}

static int
new_key(struct ticket_key *k, uint64_t now_s)
{
	if (RAND_bytes(k->name, sizeof(k->name)) != 1 ||
	    RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
	    RAND_bytes(k->hmac, sizeof(k->hmac)) != 1)
		return -1;
	k->created_s = now_s;
	return 0;
}

int
tickets_rotate(struct store *s, uint64_t rotate_s)
{
	MDB_val k = { sizeof(KEY) - 1, (void *)KEY }, v;
	uint64_t now_s = store_now_ns() / 1000000000ull;
	struct stored st;
	MDB_txn *txn;
	int rc;

	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	rc = get(s, txn, &st);
	if (rc < 0)
		goto abort;
	if (rc == 0 && now_s - st.cur.created_s < rotate_s) {
		store_write_abort(txn);
		return 0;
	}
	if (rc == 0) {
		st.prev = st.cur;
		st.has_prev = 1;
		st.serial++;
	} else {
		memset(&st, 0, sizeof(st));
		st.format = TICKETS_FORMAT;
		st.serial = 1;
	}
	if (new_key(&st.cur, now_s) < 0) {
		rc = -1;
		goto abort;
	}
	v.mv_size = sizeof(st);
	v.mv_data = &st;
	rc = mdb_put(txn, s->dbi[STORE_TICKETS], &k, &v, 0);
	memset(&st, 0, sizeof(st));
	if (rc != 0) {
		rc = -rc;
		goto abort;
	}
	rc = store_write_commit(txn);
	return rc < 0 ? rc : 1;
abort:
	store_write_abort(txn);
	return rc;
}

int
tickets_read(struct store *s, struct ticket_keys *out)
{
	struct stored st;
	MDB_txn *txn;
	int rc;

	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	rc = get(s, txn, &st);
	store_read_end(s);
	if (rc != 0)
		return rc;
	out->cur = st.cur;
	out->prev = st.prev;
	out->has_prev = st.has_prev != 0;
	out->serial = st.serial;
	memset(&st, 0, sizeof(st));
	return 0;
}

void
tickets_set_rotation(uint64_t rotate_s)
{
	rotation_s = rotate_s;
}

int
tickets_upkeep(struct store *s, uint64_t now_ns, void *state)
{
	(void)now_ns;
	(void)state;
	if (rotation_s == 0)
		return 0;
	return tickets_rotate(s, rotation_s) < 0 ? -1 : 0;
}
