#include <string.h>

#include <msgpack.h>

#include "bucket.h"

#define NS_PER_S	1000000000ull
#define SWEEP_SCAN	BUCKET_SWEEP_SCAN
#define SWEEP_CHUNK	BUCKET_SWEEP_CHUNK
#define SWEEP_TXN	BUCKET_SWEEP_TXN

typedef unsigned __int128 u128;

static uint64_t
cap_of(const struct bucket_params *p)
{
	return p->burst * BUCKET_ONE;
}

void
bucket_init(struct bucket *b, const struct bucket_params *p, uint64_t now_ns)
{
	b->p = *p;
	b->tokens = cap_of(p);
	b->last_ns = now_ns;
}

void
bucket_refill(struct bucket *b, uint64_t now_ns)
{
	uint64_t cap = cap_of(&b->p), room;
	u128 add, rate = (u128)b->p.rate * BUCKET_ONE;
	u128 den = (u128)b->p.per_s * NS_PER_S;

	if (now_ns <= b->last_ns) {
		if (b->last_ns - now_ns > BUCKET_SKEW_NS)
			b->last_ns = now_ns;
		return;
	}
	if (b->tokens >= cap) {
		b->tokens = cap;
		b->last_ns = now_ns;
		return;
	}
	room = cap - b->tokens;
	/* elapsed * rate * ONE / (per_s * 1e9), exact in 128 bits. */
	add = (u128)(now_ns - b->last_ns) * rate / den;
	if (add >= room) {
		b->tokens = cap;
		b->last_ns = now_ns;
		return;
	}
	b->tokens += (uint64_t)add;
	/* Advance only by the time those units took (rounded up, so never
	 * credited twice): the fraction of a unit left over is not lost
	 * but counted by the next refill. */
	b->last_ns += (uint64_t)((add * den + rate - 1) / rate);
}

uint64_t
bucket_whole(const struct bucket *b)
{
	return b->tokens / BUCKET_ONE;
}

uint64_t
bucket_take(struct bucket *b, uint64_t n)
{
	uint64_t have = bucket_whole(b);

	if (n > have)
		n = have;
	b->tokens -= n * BUCKET_ONE;
	return n;
}

void
bucket_give(struct bucket *b, uint64_t n)
{
	uint64_t cap = cap_of(&b->p);

	if (n > b->p.burst || b->tokens + n * BUCKET_ONE > cap)
		b->tokens = cap;
	else
		b->tokens += n * BUCKET_ONE;
}

uint64_t
bucket_wait_ns(const struct bucket *b, uint64_t n)
{
	u128 need, den = (u128)b->p.rate * BUCKET_ONE;

	if (n > b->p.burst)
		n = b->p.burst;
	if (b->tokens >= n * BUCKET_ONE)
		return 0;
	need = (u128)(n * BUCKET_ONE - b->tokens) * b->p.per_s * NS_PER_S;
	return (uint64_t)((need + den - 1) / den);
}

void
bucket_view_of(const struct bucket *b, struct bucket_view *v)
{
	if (v == NULL)
		return;
	v->left = bucket_whole(b);
	v->wait_ns = bucket_wait_ns(b, 1);
	v->full_ns = bucket_wait_ns(b, b->p.burst);
}

int
bucket_same_params(const struct bucket_params *a,
    const struct bucket_params *b)
{
	return a->rate == b->rate && a->per_s == b->per_s &&
	    a->burst == b->burst;
}

int
bucket_full(const struct bucket *b)
{
	return b->tokens >= cap_of(&b->p);
}

int
bucket_encode(const struct bucket *b, void *buf, size_t cap)
{
	struct store_buf sb = { buf, 0, cap, 0 };
	msgpack_packer pk;

	msgpack_packer_init(&pk, &sb, store_buf_write);
	msgpack_pack_array(&pk, 6);
	msgpack_pack_uint32(&pk, BUCKET_FORMAT);
	msgpack_pack_uint64(&pk, b->tokens);
	msgpack_pack_uint64(&pk, b->last_ns);
	msgpack_pack_uint64(&pk, b->p.rate);
	msgpack_pack_uint64(&pk, b->p.per_s);
	msgpack_pack_uint64(&pk, b->p.burst);
	return sb.overflow ? -1 : (int)sb.len;
}

/* Read on every lease and every check of one, so a direct reader of the
 * six leading integers rather than msgpack-c's general unpacker (which
 * allocates a zone per call); the layout is the one bucket_encode
 * writes, and a later format may append fields after these six. */
int
bucket_decode(const void *buf, size_t len, struct bucket *b)
{
	uint64_t v[6];

	if (store_read_uints(buf, len, v, 6) < 0)
		return -1;
	if (v[0] != BUCKET_FORMAT || v[3] == 0 || v[4] == 0 || v[5] == 0 ||
	    v[5] > UINT64_MAX / BUCKET_ONE || v[1] > v[5] * BUCKET_ONE)
		return -1;
	b->tokens = v[1];
	b->last_ns = v[2];
	b->p.rate = v[3];
	b->p.per_s = v[4];
	b->p.burst = v[5];
	return 0;
}

/* The bucket under KEY in TXN, refilled to now. 1 stored, 0 absent or
 * unusable (b is a fresh full bucket), negative on error. */
static int
load(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
    const struct bucket_params *p, uint64_t now_ns, struct bucket *b)
{
	MDB_val k = { klen, (void *)key }, v;
	int rc;

	rc = mdb_get(txn, dbi, &k, &v);
	if (rc == MDB_NOTFOUND || (rc == 0 &&
	    (bucket_decode(v.mv_data, v.mv_size, b) < 0 ||
	    (p != NULL && !bucket_same_params(&b->p, p))))) {
		if (p != NULL)
			bucket_init(b, p, now_ns);
		else
			memset(b, 0, sizeof(*b));
		return 0;
	}
	if (rc != 0)
		return rc > 0 ? -rc : rc;
	bucket_refill(b, now_ns);
	return 1;
}

static int
save(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
    const struct bucket *b)
{
	char buf[BUCKET_VALUE_MAX];
	MDB_val k = { klen, (void *)key }, v;
	int n, rc;

	n = bucket_encode(b, buf, sizeof(buf));
	if (n < 0)
		return -1;
	v.mv_size = (size_t)n;
	v.mv_data = buf;
	rc = mdb_put(txn, dbi, &k, &v, 0);
	return rc > 0 ? -rc : rc;
}

int
bucket_peek(struct store *s, const void *key, size_t klen,
    const struct bucket_params *p, uint64_t now_ns, struct bucket *b)
{
	MDB_txn *txn;
	int rc;

	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	rc = load(txn, s->dbi[STORE_BUCKETS], key, klen, p, now_ns, b);
	store_read_end(s);
	return rc;
}

int
bucket_lease(struct store *s, const void *key, size_t klen,
    const struct bucket_params *p, uint64_t now_ns, uint64_t max,
    uint64_t share, struct bucket_view *v)
{
	struct bucket b;
	MDB_txn *txn;
	uint64_t want, got;
	int rc;

	/* The common refusal: an empty bucket, seen without the writer
	 * lock. A token appearing between this read and a later request
	 * is only found later; nothing is lost, since it stays stored. */
	rc = bucket_peek(s, key, klen, p, now_ns, &b);
	if (rc < 0)
		return rc;
	if (bucket_whole(&b) == 0) {
		bucket_view_of(&b, v);
		return 0;
	}
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	/* Read again under the lock: another worker may have leased. A
	 * writer with a later clock leaves last_ns ahead of ours, which
	 * only means no refill this time. */
	rc = load(txn, s->dbi[STORE_BUCKETS], key, klen, p, now_ns, &b);
	if (rc < 0)
		goto fail;
	/* No room: refuse (the caller never fails open). A new bucket
	 * needs more room than an update, and the last pages are the
	 * sweep's. */
	if ((rc = store_room(s, txn, rc == 0 ? STORE_NEW : STORE_UPDATE)) !=
	    0)
		goto fail;
	want = bucket_whole(&b) / (share ? share : 1);
	if (want < 1)
		want = 1;
	if (want > max)
		want = max;
	got = bucket_take(&b, want);
	if (got == 0) {
		store_write_abort(txn);
		bucket_view_of(&b, v);
		return 0;
	}
	if ((rc = save(txn, s->dbi[STORE_BUCKETS], key, klen, &b)) < 0)
		goto fail;
	if ((rc = store_write_commit(txn)) < 0)
		return rc;
	bucket_view_of(&b, v);
	return (int)got;
fail:
	store_write_abort(txn);
	return rc;
}

int
bucket_return(struct store *s, const void *key, size_t klen,
    const struct bucket_params *p, uint64_t now_ns, uint64_t n)
{
	struct bucket b;
	MDB_txn *txn;
	int rc;

	if (n == 0)
		return 0;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	rc = load(txn, s->dbi[STORE_BUCKETS], key, klen, p, now_ns, &b);
	/* Absent or reset: it is full already, and giving is capped. A
	 * map without room loses the tokens: safe, never an admit. */
	if (rc <= 0 || (rc = store_room(s, txn, STORE_UPDATE)) != 0)
		goto fail;
	bucket_give(&b, n);
	if ((rc = save(txn, s->dbi[STORE_BUCKETS], key, klen, &b)) < 0)
		goto fail;
	return store_write_commit(txn);
fail:
	store_write_abort(txn);
	return rc;
}

int
bucket_return_many(struct store *s, const struct bucket_giveback *g,
    size_t n, uint64_t now_ns)
{
	MDB_dbi dbi = s->dbi[STORE_BUCKETS];
	struct bucket b;
	MDB_txn *txn;
	size_t i;
	int rc, written = 0;

	if (n == 0)
		return 0;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	if ((rc = store_room(s, txn, STORE_UPDATE)) != 0)
		goto fail;
	for (i = 0; i < n; i++) {
		rc = load(txn, dbi, g[i].key, g[i].klen, &g[i].p, now_ns, &b);
		if (rc < 0)
			goto fail;
		if (rc == 0 || bucket_full(&b) || g[i].n == 0)
			continue;
		bucket_give(&b, g[i].n);
		if ((rc = save(txn, dbi, g[i].key, g[i].klen, &b)) < 0)
			goto fail;
		written++;
	}
	return store_write_end(txn, written);
fail:
	store_write_abort(txn);
	return rc;
}

int
bucket_get(struct store *s, MDB_txn *txn, const void *key, size_t klen,
    const struct bucket_params *p, uint64_t now_ns, struct bucket *b)
{
	return load(txn, s->dbi[STORE_BUCKETS], key, klen, p, now_ns, b);
}

int
bucket_reset(struct store *s, const void *key, size_t klen)
{
	MDB_val k = { klen, (void *)key };
	MDB_txn *txn;
	int rc;

	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	rc = mdb_del(txn, s->dbi[STORE_BUCKETS], &k, NULL);
	if (rc == MDB_NOTFOUND) {
		store_write_abort(txn);
		return 0;
	}
	if (rc != 0) {
		store_write_abort(txn);
		return rc > 0 ? -rc : rc;
	}
	rc = store_write_commit(txn);
	return rc < 0 ? rc : 1;
}

static uint64_t
elapsed(uint64_t since)
{
	return store_now_ns() - since;
}

/* Delete the N buckets named in KEYS (NUL-separated, LENS bytes each) if
 * they are still full: another process may have leased from one since
 * the scan saw it. One short write txn. Deleted count, or negative. */
static int
sweep_delete(struct store *s, uint64_t now_ns, const char *keys,
    const uint16_t *lens, int n, struct bucket_sweep *sw)
{
	MDB_dbi dbi = s->dbi[STORE_BUCKETS];
	MDB_txn *txn;
	MDB_val k, v;
	struct bucket b;
	uint64_t t0, t1, t;
	int i, rc, del = 0;

	t0 = store_now_ns();
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	t1 = store_now_ns();
	if (t1 - t0 > sw->max_wait_ns)
		sw->max_wait_ns = t1 - t0;
	for (i = 0; i < n; keys += lens[i], i++) {
		k.mv_size = lens[i];
		k.mv_data = (void *)keys;
		rc = mdb_get(txn, dbi, &k, &v);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc != 0)
			goto fail;
		if (bucket_decode(v.mv_data, v.mv_size, &b) < 0)
			continue;
		bucket_refill(&b, now_ns);
		if (b.tokens != cap_of(&b.p))
			continue;
		if ((rc = mdb_del(txn, dbi, &k, NULL)) != 0)
			goto fail;
		del++;
	}
	if (del == 0) {
		store_write_abort(txn);
		rc = 0;
	} else {
		rc = store_write_commit(txn);
	}
	t = elapsed(t1);
	if (t > sw->max_hold_ns)
		sw->max_hold_ns = t;
	sw->txns++;
	return rc < 0 ? rc : del;
fail:
	store_write_abort(txn);
	return rc > 0 ? -rc : rc;
}

/* Scan up to SWEEP_CHUNK buckets after sw->key in a read txn, collecting
 * the full ones (at most SWEEP_TXN) into KEYS / LENS; sw->key moves to
 * the last bucket scanned, or sw->at_end is set. Count collected, or
 * negative. */
static int
sweep_scan(struct store *s, uint64_t now_ns, struct bucket_sweep *sw,
    char *keys, uint16_t *lens, int *scanned)
{
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k, v;
	struct bucket b;
	size_t used = 0;
	int rc, n = 0, seen = 0;

	*scanned = 0;
	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, s->dbi[STORE_BUCKETS], &cur)) != 0)
		goto done;
	if (sw->klen == 0) {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	} else {
		k.mv_size = sw->klen;
		k.mv_data = sw->key;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		/* Resume after the last key scanned, not on it. */
		if (rc == 0 && k.mv_size == sw->klen &&
		    memcmp(k.mv_data, sw->key, sw->klen) == 0)
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	for (; rc == 0 && seen < SWEEP_CHUNK && n < SWEEP_TXN;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		seen++;
		if (k.mv_size <= sizeof(sw->key)) {
			memcpy(sw->key, k.mv_data, k.mv_size);
			sw->klen = k.mv_size;
		}
		if (bucket_decode(v.mv_data, v.mv_size, &b) < 0 ||
		    k.mv_size > sizeof(sw->key))
			continue;
		bucket_refill(&b, now_ns);
		if (b.tokens != cap_of(&b.p))
			continue;
		memcpy(keys + used, k.mv_data, k.mv_size);
		lens[n++] = (uint16_t)k.mv_size;
		used += k.mv_size;
	}
	if (rc == MDB_NOTFOUND) {
		sw->at_end = 1;
		rc = 0;
	}
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_read_end(s);
	*scanned = seen;
	if (rc != 0)
		return rc > 0 ? -rc : rc;
	return n;
}

int
bucket_sweep(struct store *s, uint64_t now_ns, struct bucket_sweep *sw)
{
	char keys[SWEEP_TXN * BUCKET_KEY_MAX];
	uint16_t lens[SWEEP_TXN];
	int n, scanned, total = 0;

	sw->scanned = sw->deleted = sw->txns = 0;
	sw->at_end = 0;
	while (sw->scanned < SWEEP_SCAN && !sw->at_end) {
		n = sweep_scan(s, now_ns, sw, keys, lens, &scanned);
		if (n < 0)
			return total > 0 ? total : n;
		sw->scanned += (unsigned)scanned;
		if (n > 0) {
			n = sweep_delete(s, now_ns, keys, lens, n, sw);
			if (n < 0)
				return total > 0 ? total : n;
			total += n;
		}
	}
	sw->deleted = (unsigned)total;
	/* The next call starts the next pass from the first bucket. */
	if (sw->at_end)
		sw->klen = 0;
	return total;
}
