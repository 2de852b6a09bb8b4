#include <string.h>

#include <msgpack.h>

#include "bucket.h"

#define NS_PER_S	1000000000ull
#define SWEEP_MAX	4096	/* deletions per sweep */
#define SWEEP_BATCH	256	/* per write txn: keeps it short */

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

int
bucket_decode(const void *buf, size_t len, struct bucket *b)
{
	msgpack_unpacked up;
	const msgpack_object *a;
	uint64_t v[6];
	int i, rc = -1;

	msgpack_unpacked_init(&up);
	if (msgpack_unpack_next(&up, buf, len, NULL) !=
	    MSGPACK_UNPACK_SUCCESS)
		goto done;
	/* A later format may append fields; it keeps these six first. */
	if (up.data.type != MSGPACK_OBJECT_ARRAY || up.data.via.array.size < 6)
		goto done;
	a = up.data.via.array.ptr;
	for (i = 0; i < 6; i++) {
		if (a[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			goto done;
		v[i] = a[i].via.u64;
	}
	if (v[0] != BUCKET_FORMAT || v[3] == 0 || v[4] == 0 || v[5] == 0 ||
	    v[5] > UINT64_MAX / BUCKET_ONE || v[1] > v[5] * BUCKET_ONE)
		goto done;
	b->tokens = v[1];
	b->last_ns = v[2];
	b->p.rate = v[3];
	b->p.per_s = v[4];
	b->p.burst = v[5];
	rc = 0;
done:
	msgpack_unpacked_destroy(&up);
	return rc;
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

/* One sweep transaction: at most SWEEP_BATCH deletions, so that it
 * stays short and fits in the map's headroom. Deleted count or negative;
 * *more is set when it stopped early. */
static int
sweep_batch(struct store *s, uint64_t now_ns, int *more)
{
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k, v;
	struct bucket b;
	int rc, n = 0;

	*more = 0;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, s->dbi[STORE_BUCKETS], &cur)) != 0)
		goto fail;
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (rc == 0) {
		if (bucket_decode(v.mv_data, v.mv_size, &b) == 0) {
			bucket_refill(&b, now_ns);
			if (b.tokens == cap_of(&b.p)) {
				if ((rc = mdb_cursor_del(cur, 0)) != 0)
					goto fail;
				if (++n == SWEEP_BATCH) {
					*more = 1;
					break;
				}
			}
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto fail;
	mdb_cursor_close(cur);
	if (n == 0) {
		store_write_abort(txn);
		return 0;
	}
	rc = store_write_commit(txn);
	return rc < 0 ? rc : n;
fail:
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_write_abort(txn);
	return rc > 0 ? -rc : rc;
}

int
bucket_sweep(struct store *s, uint64_t now_ns)
{
	int i, n, more = 1, total = 0;

	for (i = 0; more && i < SWEEP_MAX / SWEEP_BATCH; i++) {
		n = sweep_batch(s, now_ns, &more);
		if (n < 0)
			return total > 0 ? total : n;
		total += n;
	}
	return total;
}
