#include <errno.h>
#include <string.h>

#include <msgpack.h>

#include "health.h"

#define NFIELDS	8	/* after the format */

enum health_change
health_apply(struct health *h, bool ok, unsigned fall, unsigned rise,
    uint64_t now_ns, unsigned err, unsigned status)
{
	struct health was = *h;

	if (ok) {
		h->fail_run = 0;
		if (h->ok_run < rise)
			h->ok_run++;
		if (h->state != HEALTH_UP && (!h->checked ||
		    h->ok_run >= rise)) {
			h->state = HEALTH_UP;
			h->passive = 0;
			h->since_ns = now_ns;
		}
	} else {
		h->ok_run = 0;
		if (h->fail_run < fall)
			h->fail_run++;
		h->last_err = err;
		h->last_status = err == HEALTH_ERR_STATUS ? status : 0;
		if (h->state != HEALTH_DOWN && (!h->checked ||
		    h->fail_run >= fall)) {
			h->state = HEALTH_DOWN;
			h->passive = 0;
			h->since_ns = now_ns;
		} else if (h->fail_run >= fall) {
			h->passive = 0;	/* the checks confirm it */
		}
	}
	h->checked = 1;
	if (h->state != was.state)
		return h->state == HEALTH_UP ? HEALTH_WENT_UP :
		    HEALTH_WENT_DOWN;
	return memcmp(h, &was, sizeof(was)) != 0 ? HEALTH_COUNTED :
	    HEALTH_SAME;
}

bool
health_mark_passive(struct health *h, uint64_t now_ns)
{
	if (h->state == HEALTH_DOWN)
		return false;
	h->state = HEALTH_DOWN;
	h->passive = 1;
	h->checked = 1;		/* back only after `rise` passes */
	h->ok_run = 0;
	h->since_ns = now_ns;
	h->last_err = HEALTH_ERR_PASSIVE;
	h->last_status = 0;
	return true;
}

const char *
health_state_name(unsigned state)
{
	switch (state) {
	case HEALTH_UP:
		return "up";
	case HEALTH_DOWN:
		return "down";
	default:
		return "unknown";
	}
}

const char *
health_err_name(unsigned err)
{
	static const char *const names[] = {
		[HEALTH_ERR_NONE] = "none",
		[HEALTH_ERR_CONNECT] = "connect",
		[HEALTH_ERR_TIMEOUT] = "timeout",
		[HEALTH_ERR_STATUS] = "status",
		[HEALTH_ERR_CLOSED] = "closed",
		[HEALTH_ERR_BAD] = "bad_response",
		[HEALTH_ERR_PASSIVE] = "breaker_opened",
	};

	return err < sizeof(names) / sizeof(names[0]) ? names[err] : "?";
}

int
health_encode(const struct health *h, void *buf, size_t cap)
{
	struct store_buf sb = { buf, 0, cap, 0 };
	msgpack_packer pk;

	msgpack_packer_init(&pk, &sb, store_buf_write);
	msgpack_pack_array(&pk, 1 + NFIELDS);
	msgpack_pack_uint32(&pk, HEALTH_FORMAT);
	msgpack_pack_uint32(&pk, h->state);
	msgpack_pack_uint32(&pk, h->passive);
	msgpack_pack_uint32(&pk, h->checked);
	msgpack_pack_uint32(&pk, h->ok_run);
	msgpack_pack_uint32(&pk, h->fail_run);
	msgpack_pack_uint64(&pk, h->since_ns);
	msgpack_pack_uint32(&pk, h->last_err);
	msgpack_pack_uint32(&pk, h->last_status);
	return sb.overflow ? -1 : (int)sb.len;
}

int
health_decode(const void *buf, size_t len, struct health *h)
{
	uint64_t v[1 + NFIELDS];
	int i;

	if (store_read_uints(buf, len, v, 1 + NFIELDS) < 0 ||
	    v[0] != HEALTH_FORMAT || v[1] > HEALTH_DOWN)
		return -1;
	for (i = 2; i <= 8; i++)
		if (i != 6 && v[i] > UINT32_MAX)
			return -1;
	h->state = (uint32_t)v[1];
	h->passive = (uint32_t)v[2];
	h->checked = (uint32_t)v[3];
	h->ok_run = (uint32_t)v[4];
	h->fail_run = (uint32_t)v[5];
	h->since_ns = v[6];
	h->last_err = (uint32_t)v[7];
	h->last_status = (uint32_t)v[8];
	return 0;
}

int
health_get(struct store *s, MDB_txn *txn, const void *key, size_t klen,
    struct health *h)
{
	MDB_val k = { klen, (void *)key }, d;
	int rc;

	memset(h, 0, sizeof(*h));
	rc = mdb_get(txn, s->dbi[STORE_HEALTH], &k, &d);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc > 0 ? -rc : rc;
	if (health_decode(d.mv_data, d.mv_size, h) < 0) {
		/* Another format (an upgrade's other binary): unknown. */
		memset(h, 0, sizeof(*h));
		return 0;
	}
	return 1;
}

/* Write H under KEY in TXN. One record per instance, a bounded number:
 * they may use the map down to the deletion reserve, like updates. */
static int
put(struct store *s, MDB_txn *txn, const void *key, size_t klen,
    const struct health *h)
{
	char buf[HEALTH_VALUE_MAX];
	MDB_val k = { klen, (void *)key }, d;
	int n, rc;

	if ((rc = store_room(s, txn, STORE_UPDATE)) != 0)
		return rc > 0 ? -rc : rc;
	n = health_encode(h, buf, sizeof(buf));
	if (n < 0)
		return -EOVERFLOW;
	d.mv_data = buf;
	d.mv_size = (size_t)n;
	rc = mdb_put(txn, s->dbi[STORE_HEALTH], &k, &d, 0);
	return rc > 0 ? -rc : rc;
}

int
health_update(struct store *s, const void *key, size_t klen, bool ok,
    unsigned fall, unsigned rise, uint64_t now_ns, unsigned err,
    unsigned status, struct health *after, enum health_change *ch)
{
	struct health h;
	MDB_txn *txn;
	int rc;

	*ch = HEALTH_SAME;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	if ((rc = health_get(s, txn, key, klen, &h)) < 0)
		goto fail;
	*ch = health_apply(&h, ok, fall, rise, now_ns, err, status);
	if (after != NULL)
		*after = h;
	if (*ch == HEALTH_SAME) {
		store_write_abort(txn);
		return 0;
	}
	if ((rc = put(s, txn, key, klen, &h)) < 0)
		goto fail;
	return store_write_commit(txn);
fail:
	*ch = HEALTH_SAME;
	store_write_abort(txn);
	return rc;
}

int
health_assume_up(struct store *s, const struct health_key *keys, size_t n,
    uint64_t now_ns)
{
	struct health h;
	MDB_txn *txn;
	size_t i;
	int rc, written = 0;

	if (n == 0)
		return 0;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	for (i = 0; i < n; i++) {
		if ((rc = health_get(s, txn, keys[i].key, keys[i].klen,
		    &h)) < 0)
			goto fail;
		if (rc == 1)
			continue;
		h.state = HEALTH_UP;
		h.since_ns = now_ns;
		if ((rc = put(s, txn, keys[i].key, keys[i].klen, &h)) < 0)
			goto fail;
		written++;
	}
	return store_write_end(txn, written);
fail:
	store_write_abort(txn);
	return rc;
}
