#include <errno.h>
#include <string.h>

#include <msgpack.h>

#include "breaker.h"

#define NFIELDS		10	/* after the format */
#define SVC_NFIELDS	2

/* The current opening's length: a breaker opened by a build that kept
 * none, or half-open without one, uses the configured time. */
static uint64_t
open_len(const struct breaker *b, const struct breaker_params *p)
{
	return b->open_ns != 0 ? b->open_ns : p->open_ns;
}

enum breaker_gate
breaker_gate(const struct breaker *b, const struct breaker_params *p,
    uint64_t now_ns)
{
	struct breaker c = *b;
	enum breaker_change ch;

	if (b->state == BREAKER_CLOSED)
		return BREAKER_PASS;
	return breaker_admit(&c, p, now_ns, &ch) ? BREAKER_PROBE :
	    BREAKER_DENY;
}

int
breaker_admit(struct breaker *b, const struct breaker_params *p,
    uint64_t now_ns, enum breaker_change *ch)
{
	uint64_t len = open_len(b, p);

	*ch = BREAKER_SAME;
	switch (b->state) {
	case BREAKER_OPEN:
		/* Each process reads the clock once per loop turn: a time a
		 * little ahead of ours is another worker's, and recent. */
		if (b->since_ns > now_ns || now_ns - b->since_ns < len)
			return 0;
		b->state = BREAKER_HALF_OPEN;
		b->since_ns = now_ns;
		b->open_ns = len;
		b->probes = 1;
		b->probe_ns = now_ns;
		*ch = BREAKER_HALF;
		return 1;
	case BREAKER_HALF_OPEN:
		if (b->probes >= p->half_open && (b->probe_ns > now_ns ||
		    now_ns - b->probe_ns < len))
			return 0;
		/* A probe free, or the last ones never reported back. */
		b->probes = b->probes >= p->half_open ? 1 : b->probes + 1;
		b->probe_ns = now_ns;
		*ch = BREAKER_COUNTED;
		return 1;
	default:
		return 1;
	}
}

static void
note_failure(struct breaker *b, uint64_t now_ns, unsigned err,
    unsigned status)
{
	b->failures++;
	b->last_err = err;
	b->last_status = err == BREAKER_ERR_STATUS ? status : 0;
	b->last_err_ns = now_ns;
}

enum breaker_change
breaker_result(struct breaker *b, const struct breaker_params *p,
    uint64_t now_ns, bool failed, unsigned err, unsigned status)
{
	uint64_t len, max = p->open_ns * BREAKER_OPEN_MAX;

	switch (b->state) {
	case BREAKER_CLOSED:
		if (!failed) {
			if (b->failures == 0)
				return BREAKER_SAME;
			b->failures = 0;
			return BREAKER_COUNTED;
		}
		note_failure(b, now_ns, err, status);
		if (b->failures < p->failures)
			return BREAKER_COUNTED;
		b->state = BREAKER_OPEN;
		b->since_ns = now_ns;
		b->open_ns = p->open_ns;
		b->probes = 0;
		b->opens++;
		return BREAKER_OPENED;
	case BREAKER_HALF_OPEN:
		if (!failed) {
			b->state = BREAKER_CLOSED;
			b->failures = 0;
			b->since_ns = now_ns;
			b->open_ns = 0;
			b->probes = 0;
			return BREAKER_CLOSED_NOW;
		}
		note_failure(b, now_ns, err, status);
		len = open_len(b, p);
		len = len > max / 2 ? max : 2 * len;
		b->state = BREAKER_OPEN;
		b->since_ns = now_ns;
		b->open_ns = len;
		b->probes = 0;
		b->opens++;
		return BREAKER_REOPENED;
	default:
		return BREAKER_SAME;
	}
}

uint64_t
breaker_open_left_ns(const struct breaker *b, uint64_t now_ns)
{
	uint64_t end;

	if (b->state != BREAKER_OPEN)
		return 0;
	end = b->since_ns + b->open_ns;
	return end > now_ns ? end - now_ns : 0;
}

const char *
breaker_state_name(unsigned state)
{
	switch (state) {
	case BREAKER_OPEN:
		return "open";
	case BREAKER_HALF_OPEN:
		return "half_open";
	default:
		return "closed";
	}
}

const char *
breaker_err_name(unsigned err)
{
	static const char *const names[] = {
		[BREAKER_ERR_NONE] = "none",
		[BREAKER_ERR_CONNECT] = "connect",
		[BREAKER_ERR_RESET] = "reset",
		[BREAKER_ERR_TIMEOUT] = "timeout",
		[BREAKER_ERR_BAD] = "bad_response",
		[BREAKER_ERR_STATUS] = "status",
	};

	return err < sizeof(names) / sizeof(names[0]) ? names[err] : "?";
}

int
breaker_encode(const struct breaker *b, void *buf, size_t cap)
{
	struct store_buf sb = { buf, 0, cap, 0 };
	msgpack_packer pk;

	msgpack_packer_init(&pk, &sb, store_buf_write);
	msgpack_pack_array(&pk, 1 + NFIELDS);
	msgpack_pack_uint32(&pk, BREAKER_FORMAT);
	msgpack_pack_uint32(&pk, b->state);
	msgpack_pack_uint32(&pk, b->failures);
	msgpack_pack_uint64(&pk, b->since_ns);
	msgpack_pack_uint64(&pk, b->open_ns);
	msgpack_pack_uint32(&pk, b->probes);
	msgpack_pack_uint64(&pk, b->probe_ns);
	msgpack_pack_uint32(&pk, b->last_err);
	msgpack_pack_uint32(&pk, b->last_status);
	msgpack_pack_uint64(&pk, b->last_err_ns);
	msgpack_pack_uint64(&pk, b->opens);
	return sb.overflow ? -1 : (int)sb.len;
}

int
breaker_decode(const void *buf, size_t len, struct breaker *b)
{
	uint64_t v[1 + NFIELDS];

	if (store_read_uints(buf, len, v, 1 + NFIELDS) < 0 ||
	    v[0] != BREAKER_FORMAT || v[1] > BREAKER_HALF_OPEN ||
	    v[2] > UINT32_MAX || v[5] > UINT32_MAX || v[7] > UINT32_MAX ||
	    v[8] > UINT32_MAX)
		return -1;
	b->state = (uint32_t)v[1];
	b->failures = (uint32_t)v[2];
	b->since_ns = v[3];
	b->open_ns = v[4];
	b->probes = (uint32_t)v[5];
	b->probe_ns = v[6];
	b->last_err = (uint32_t)v[7];
	b->last_status = (uint32_t)v[8];
	b->last_err_ns = v[9];
	b->opens = v[10];
	return 0;
}

int
breaker_key(const char *svc, const char *inst, char *out, size_t cap)
{
	size_t a = strlen(svc), b = strlen(inst);

	if (a > BREAKER_NAME_MAX || b > BREAKER_NAME_MAX || a + b + 1 > cap)
		return -1;
	memcpy(out, svc, a);
	out[a] = '\0';
	memcpy(out + a + 1, inst, b);
	return (int)(a + b + 1);
}

static int
neg(int rc)
{
	return rc > 0 ? -rc : rc;
}

int
breaker_get(struct store *s, MDB_txn *txn, const void *key, size_t klen,
    struct breaker *b)
{
	MDB_val k = { klen, (void *)key }, d;
	int rc;

	memset(b, 0, sizeof(*b));
	rc = mdb_get(txn, s->dbi[STORE_BREAKERS], &k, &d);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return neg(rc);
	if (breaker_decode(d.mv_data, d.mv_size, b) < 0) {
		/* Another format (an upgrade's other binary): closed. */
		memset(b, 0, sizeof(*b));
		return 0;
	}
	return 1;
}

/* Write B under KEY in TXN. Records are one per instance, a bounded
 * number: they may use the map down to the deletion reserve, so a map
 * filled by new rate-limit keys cannot stop a breaker from opening. */
static int
put(struct store *s, MDB_txn *txn, const void *key, size_t klen,
    const struct breaker *b)
{
	char buf[BREAKER_VALUE_MAX];
	MDB_val k = { klen, (void *)key }, d;
	int n, rc;

	if ((rc = store_room(s, txn, STORE_UPDATE)) != 0)
		return neg(rc);
	n = breaker_encode(b, buf, sizeof(buf));
	if (n < 0)
		return -EOVERFLOW;
	d.mv_data = buf;
	d.mv_size = (size_t)n;
	return neg(mdb_put(txn, s->dbi[STORE_BREAKERS], &k, &d, 0));
}

static int
put_health(struct store *s, MDB_txn *txn, const void *key, size_t klen,
    const struct health *h)
{
	char buf[HEALTH_VALUE_MAX];
	MDB_val k = { klen, (void *)key }, d;
	int n;

	n = health_encode(h, buf, sizeof(buf));
	if (n < 0)
		return -EOVERFLOW;
	d.mv_data = buf;
	d.mv_size = (size_t)n;
	return neg(mdb_put(txn, s->dbi[STORE_HEALTH], &k, &d, 0));
}

int
breaker_take(struct store *s, const void *key, size_t klen,
    const struct breaker_params *p, uint64_t now_ns, struct breaker *after,
    enum breaker_change *ch)
{
	struct breaker b;
	MDB_txn *txn;
	int rc, pass;

	*ch = BREAKER_SAME;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	if ((rc = breaker_get(s, txn, key, klen, &b)) < 0)
		goto fail;
	pass = breaker_admit(&b, p, now_ns, ch);
	if (after != NULL)
		*after = b;
	if (*ch == BREAKER_SAME) {
		store_write_abort(txn);
		return pass;
	}
	if ((rc = put(s, txn, key, klen, &b)) < 0)
		goto fail;
	if ((rc = store_write_commit(txn)) < 0) {
		*ch = BREAKER_SAME;
		return rc;
	}
	return pass;
fail:
	*ch = BREAKER_SAME;
	store_write_abort(txn);
	return rc;
}

int
breaker_record(struct store *s, const void *key, size_t klen,
    const struct breaker_params *p, uint64_t now_ns, bool failed,
    unsigned err, unsigned status, bool health, struct breaker *after,
    enum breaker_change *ch)
{
	struct breaker b;
	struct health h;
	MDB_txn *txn;
	int rc;

	*ch = BREAKER_SAME;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	if ((rc = breaker_get(s, txn, key, klen, &b)) < 0)
		goto fail;
	*ch = breaker_result(&b, p, now_ns, failed, err, status);
	if (after != NULL)
		*after = b;
	if (*ch == BREAKER_SAME) {
		store_write_abort(txn);
		return 0;
	}
	if ((rc = put(s, txn, key, klen, &b)) < 0)
		goto fail;
	if (health && (*ch == BREAKER_OPENED || *ch == BREAKER_REOPENED)) {
		if ((rc = health_get(s, txn, key, klen, &h)) < 0)
			goto fail;
		if (health_mark_passive(&h, now_ns) &&
		    (rc = put_health(s, txn, key, klen, &h)) < 0)
			goto fail;
	}
	if ((rc = store_write_commit(txn)) < 0)
		*ch = BREAKER_SAME;
	return rc;
fail:
	*ch = BREAKER_SAME;
	store_write_abort(txn);
	return rc;
}

int
breaker_reset(struct store *s, const void *key, size_t klen)
{
	MDB_val k = { klen, (void *)key };
	struct health h;
	MDB_txn *txn;
	int rc, did = 0;

	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	rc = mdb_del(txn, s->dbi[STORE_BREAKERS], &k, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto fail;
	did = rc == 0;
	if ((rc = health_get(s, txn, key, klen, &h)) < 0)
		goto fail;
	if (rc == 1 && h.state == HEALTH_DOWN && h.passive) {
		h.state = HEALTH_UP;
		h.passive = 0;
		h.since_ns = store_now_ns();
		if ((rc = put_health(s, txn, key, klen, &h)) < 0)
			goto fail;
		did = 1;
	}
	if (!did) {
		store_write_abort(txn);
		return 0;
	}
	rc = store_write_commit(txn);
	return rc < 0 ? rc : 1;
fail:
	store_write_abort(txn);
	return neg(rc);
}

int
breaker_view(struct store *s, const char *svc, const char *inst,
    struct breaker_view *v)
{
	char key[BREAKER_KEY_MAX];
	MDB_txn *txn;
	int klen, rc;

	memset(v, 0, sizeof(*v));
	if ((klen = breaker_key(svc, inst, key, sizeof(key))) < 0)
		return -ENAMETOOLONG;
	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	rc = breaker_get(s, txn, key, (size_t)klen, &v->b);
	if (rc >= 0) {
		v->has_breaker = rc == 1;
		rc = health_get(s, txn, key, (size_t)klen, &v->h);
		v->has_health = rc == 1;
	}
	store_read_end(s);
	return rc < 0 ? rc : 0;
}

static int
svc_decode(const MDB_val *d, struct breaker_svc *v)
{
	uint64_t f[1 + SVC_NFIELDS];

	if (store_read_uints(d->mv_data, d->mv_size, f, 1 + SVC_NFIELDS) < 0
	    || f[0] != BREAKER_FORMAT)
		return -1;
	v->retries_refused = f[1];
	v->shed = f[2];
	return 0;
}

int
breaker_svc_add(struct store *s, const char *svc,
    const struct breaker_svc *add)
{
	char key[BREAKER_KEY_MAX], buf[64];
	struct store_buf sb = { buf, 0, sizeof(buf), 0 };
	struct breaker_svc v = { 0, 0 };
	msgpack_packer pk;
	MDB_val k, d;
	MDB_txn *txn;
	int klen, rc;

	if ((klen = breaker_key(svc, "", key, sizeof(key))) < 0)
		return -ENAMETOOLONG;
	k.mv_data = key;
	k.mv_size = (size_t)klen;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	rc = mdb_get(txn, s->dbi[STORE_BREAKERS], &k, &d);
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto fail;
	if (rc == 0 && svc_decode(&d, &v) < 0)
		memset(&v, 0, sizeof(v));
	v.retries_refused += add->retries_refused;
	v.shed += add->shed;
	msgpack_packer_init(&pk, &sb, store_buf_write);
	msgpack_pack_array(&pk, 1 + SVC_NFIELDS);
	msgpack_pack_uint32(&pk, BREAKER_FORMAT);
	msgpack_pack_uint64(&pk, v.retries_refused);
	msgpack_pack_uint64(&pk, v.shed);
	d.mv_data = buf;
	d.mv_size = sb.len;
	if ((rc = store_room(s, txn, STORE_UPDATE)) != 0 ||
	    (rc = mdb_put(txn, s->dbi[STORE_BREAKERS], &k, &d, 0)) != 0)
		goto fail;
	return store_write_commit(txn);
fail:
	store_write_abort(txn);
	return neg(rc);
}

int
breaker_svc_get(struct store *s, const char *svc, struct breaker_svc *v)
{
	char key[BREAKER_KEY_MAX];
	MDB_val k, d;
	MDB_txn *txn;
	int klen, rc;

	memset(v, 0, sizeof(*v));
	if ((klen = breaker_key(svc, "", key, sizeof(key))) < 0)
		return -ENAMETOOLONG;
	k.mv_data = key;
	k.mv_size = (size_t)klen;
	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	rc = mdb_get(txn, s->dbi[STORE_BREAKERS], &k, &d);
	if (rc == 0 && svc_decode(&d, v) < 0)
		memset(v, 0, sizeof(*v));
	store_read_end(s);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : neg(rc);
}

/* Whether the record is a breaker closed and idle long enough to drop. */
static bool
idle_record(const MDB_val *d, uint64_t now_ns)
{
	struct breaker b;
	uint64_t last;

	if (breaker_decode(d->mv_data, d->mv_size, &b) < 0 ||
	    b.state != BREAKER_CLOSED || b.failures != 0)
		return false;
	last = b.since_ns > b.last_err_ns ? b.since_ns : b.last_err_ns;
	return last <= now_ns && now_ns - last >= BREAKER_IDLE_NS;
}

int
breaker_sweep(struct store *s, uint64_t now_ns, struct breaker_sweep *sw)
{
	char keys[BREAKER_SWEEP_TXN][BREAKER_KEY_MAX];
	size_t klen[BREAKER_SWEEP_TXN];
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val k, d;
	int n = 0, i, rc, dropped = 0;

	if (now_ns < sw->next_ns)
		return 0;
	sw->next_ns = now_ns + 60ull * 1000000000ull;
	/* Scan in a read txn (one record per instance: few), then delete
	 * under the writer lock, each record checked again. */
	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, s->dbi[STORE_BREAKERS], &cur)) != 0) {
		store_read_end(s);
		return neg(rc);
	}
	while (n < BREAKER_SWEEP_TXN &&
	    mdb_cursor_get(cur, &k, &d, MDB_NEXT) == 0) {
		if (k.mv_size > BREAKER_KEY_MAX || !idle_record(&d, now_ns))
			continue;
		memcpy(keys[n], k.mv_data, k.mv_size);
		klen[n++] = k.mv_size;
	}
	mdb_cursor_close(cur);
	store_read_end(s);
	if (n == 0)
		return 0;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	for (i = 0; i < n; i++) {
		k.mv_data = keys[i];
		k.mv_size = klen[i];
		if (mdb_get(txn, s->dbi[STORE_BREAKERS], &k, &d) != 0 ||
		    !idle_record(&d, now_ns))
			continue;
		if ((rc = mdb_del(txn, s->dbi[STORE_BREAKERS], &k, NULL)) != 0) {
			store_write_abort(txn);
			return neg(rc);
		}
		dropped++;
	}
	if (dropped == 0) {
		store_write_abort(txn);
		return 0;
	}
	rc = store_write_commit(txn);
	return rc < 0 ? rc : dropped;
}
