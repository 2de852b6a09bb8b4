#include <errno.h>
#include <string.h>

#include "lastgood.h"

/* The value's fixed head: fixarray(3), format, uint64, bin32 length. */
#define HEAD	16
#define SCAN	512		/* entries looked at per upkeep call */
#define DELS	64		/* deletions per write transaction */

static int
neg(int rc)
{
	return rc > 0 ? -rc : rc;
}

static void
put_be(unsigned char *p, uint64_t v, int n)
{
	int i;

	for (i = n - 1; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t
get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* A value of this format: its expiry and body. -1 for another format. */
static int
decode(const MDB_val *v, uint64_t *expires, const char **body, size_t *len)
{
	const unsigned char *p = v->mv_data;

	if (v->mv_size < HEAD || p[0] != 0x93 || p[1] != LASTGOOD_FORMAT ||
	    p[2] != 0xcf || p[11] != 0xc6 ||
	    get_be(p + 12, 4) != v->mv_size - HEAD)
		return -1;
	*expires = get_be(p + 3, 8);
	*body = (const char *)p + HEAD;
	*len = v->mv_size - HEAD;
	return 0;
}

/* Whether the stored value already says BODY with time to spare. */
static int
same(struct store *s, const MDB_val *k, const char *body, size_t blen,
    uint64_t now, uint64_t ttl_ns)
{
	MDB_txn *txn;
	MDB_val v;
	uint64_t exp;
	const char *b;
	size_t n;
	int rc, eq = 0;

	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	rc = mdb_get(txn, s->dbi[STORE_LASTGOOD], (MDB_val *)k, &v);
	if (rc == 0 && decode(&v, &exp, &b, &n) == 0 && n == blen &&
	    exp > now + ttl_ns / 2 && memcmp(b, body, n) == 0)
		eq = 1;
	store_read_end(s);
	return rc != 0 && rc != MDB_NOTFOUND ? neg(rc) : eq;
}

int
lastgood_put(struct store *s, const void *key, size_t klen,
    const char *body, size_t blen, uint64_t ttl_ns)
{
	MDB_val k = { klen, (void *)key }, v, old;
	uint64_t now = store_now_ns();
	unsigned char *p;
	MDB_txn *txn;
	int rc;

	if (klen == 0 || klen > LASTGOOD_KEY_MAX || blen > UINT32_MAX)
		return -EINVAL;
	if ((rc = same(s, &k, body, blen, now, ttl_ns)) != 0)
		return rc < 0 ? rc : 0;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	rc = mdb_get(txn, s->dbi[STORE_LASTGOOD], &k, &old);
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto fail;
	if ((rc = store_room(s, txn, rc == 0 ? STORE_UPDATE : STORE_NEW)) != 0)
		goto fail;
	v.mv_size = HEAD + blen;
	v.mv_data = NULL;
	if ((rc = mdb_put(txn, s->dbi[STORE_LASTGOOD], &k, &v,
	    MDB_RESERVE)) != 0)
		goto fail;
	p = v.mv_data;
	p[0] = 0x93;
	p[1] = LASTGOOD_FORMAT;
	p[2] = 0xcf;
	put_be(p + 3, now + ttl_ns, 8);
	p[11] = 0xc6;
	put_be(p + 12, blen, 4);
	memcpy(p + HEAD, body, blen);
	rc = store_write_commit(txn);
	return rc < 0 ? rc : 1;
fail:
	store_write_abort(txn);
	return neg(rc);
}

int
lastgood_get(struct store *s, const void *key, size_t klen,
    void *(*alloc)(void *arg, size_t n), void *arg, char **out,
    size_t *len)
{
	MDB_val k = { klen, (void *)key }, v;
	MDB_txn *txn;
	uint64_t exp;
	const char *b;
	size_t n;
	char *d;
	int rc;

	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	rc = mdb_get(txn, s->dbi[STORE_LASTGOOD], &k, &v);
	if (rc == MDB_NOTFOUND || (rc == 0 && (decode(&v, &exp, &b, &n) < 0 ||
	    exp <= store_now_ns()))) {
		rc = 0;
		goto done;
	}
	if (rc != 0) {
		rc = neg(rc);
		goto done;
	}
	/* Copied out: the read txn ends before any I/O. */
	if ((d = alloc(arg, n > 0 ? n : 1)) == NULL) {
		rc = -ENOMEM;
		goto done;
	}
	memcpy(d, b, n);
	*out = d;
	*len = n;
	rc = 1;
done:
	store_read_end(s);
	return rc;
}

/* Collect up to DELS expired keys after sw->key (read txn), counting
 * the entries looked at in *seen; sw->key moves to the last one, or back
 * to the start at the end. The count, or negative. */
static int
scan(struct store *s, uint64_t now, struct lastgood_sweep *sw, char *keys,
    size_t *lens, int *seen)
{
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k, v;
	uint64_t exp;
	const char *b;
	size_t n;
	int rc, found = 0;

	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, s->dbi[STORE_LASTGOOD], &cur)) != 0)
		goto done;
	if (sw->klen == 0) {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	} else {
		k.mv_size = sw->klen;
		k.mv_data = sw->key;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == 0 && k.mv_size == sw->klen &&
		    memcmp(k.mv_data, sw->key, sw->klen) == 0)
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	for (; rc == 0 && *seen < SCAN && found < DELS;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		(*seen)++;
		if (k.mv_size > LASTGOOD_KEY_MAX)
			continue;
		memcpy(sw->key, k.mv_data, k.mv_size);
		sw->klen = k.mv_size;
		/* Another format is as dead as an expired entry. */
		if (decode(&v, &exp, &b, &n) == 0 && exp > now)
			continue;
		memcpy(keys + (size_t)found * LASTGOOD_KEY_MAX, k.mv_data,
		    k.mv_size);
		lens[found++] = k.mv_size;
	}
	if (rc == MDB_NOTFOUND) {
		sw->klen = 0;		/* next time from the start */
		rc = 0;
	}
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_read_end(s);
	return rc != 0 ? neg(rc) : found;
}

int
lastgood_upkeep(struct store *s, uint64_t now_ns, void *state)
{
	char keys[DELS * LASTGOOD_KEY_MAX];
	size_t lens[DELS];
	struct lastgood_sweep *sw = state;
	MDB_txn *txn;
	MDB_val k, v;
	uint64_t exp;
	const char *b;
	size_t n;
	int i, rc, found, del = 0, seen = 0;

	while (seen < SCAN) {
		if ((found = scan(s, now_ns, sw, keys, lens, &seen)) <= 0)
			return found < 0 ? found : del;
		if ((rc = store_write_begin(s, &txn)) < 0)
			return rc;
		for (i = 0; i < found; i++) {
			k.mv_size = lens[i];
			k.mv_data = keys + (size_t)i * LASTGOOD_KEY_MAX;
			/* Written again since the scan: it stays. */
			rc = mdb_get(txn, s->dbi[STORE_LASTGOOD], &k, &v);
			if (rc == 0 && decode(&v, &exp, &b, &n) == 0 &&
			    exp > now_ns)
				continue;
			if (rc == 0)
				rc = mdb_del(txn, s->dbi[STORE_LASTGOOD], &k,
				    NULL);
			if (rc != 0 && rc != MDB_NOTFOUND) {
				store_write_abort(txn);
				return neg(rc);
			}
			del += rc == 0;
		}
		if ((rc = store_write_commit(txn)) < 0)
			return rc;
		if (sw->klen == 0)
			break;		/* reached the end */
	}
	return del;
}
