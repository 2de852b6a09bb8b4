#include <endian.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "cache_store.h"

/* msgpack markers of the fixed-width forms the values use. */
#define MP_U16		0xcd
#define MP_U32		0xce
#define MP_U64		0xcf
#define MP_STR16	0xda
#define MP_BIN32	0xc6
#define MP_FIXARRAY	0x90

#define ENTRY_FIELDS	14
#define VARY_FIELDS	3
#define META_LEN	30	/* [1, evict, used, charge, kind] */
#define LOCK_LEN	26	/* [1, state, pid, since, until] */
#define FIGS_N		9
#define FIGS_LEN	(2 + 9 * FIGS_N)
#define IDX_KEY_MAX	(9 + CACHE_KEY_MAX)

#define SWEEP_TXNS	16	/* write txns per sweep call, per kind */
#define SCAN_MAX	1024	/* records a scan looks at per txn */

enum why { WHY_REPLACED, WHY_EXPIRED, WHY_LRU, WHY_INVALIDATED,
	WHY_PURGED };

/* ---- encoding ---------------------------------------------------- */

static char *
put_u64(char *p, uint64_t v)
{
	int i;

	*p++ = (char)MP_U64;
	for (i = 7; i >= 0; i--)
		*p++ = (char)(v >> (8 * i));
	return p;
}

static char *
put_u32(char *p, uint32_t v)
{
	int i;

	*p++ = (char)MP_U32;
	for (i = 3; i >= 0; i--)
		*p++ = (char)(v >> (8 * i));
	return p;
}

static char *
put_str16(char *p, const char *s, size_t n)
{
	*p++ = (char)MP_STR16;
	*p++ = (char)(n >> 8);
	*p++ = (char)n;
	if (n > 0)
		memcpy(p, s, n);
	return p + n;
}

static char *
put_bin32(char *p, const char *s, size_t n)
{
	int i;

	*p++ = (char)MP_BIN32;
	for (i = 3; i >= 0; i--)
		*p++ = (char)(n >> (8 * i));
	if (n > 0)
		memcpy(p, s, n);
	return p + n;
}

static uint64_t
be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	uint32_t w;
	uint16_t h;
	int i;

	/* The widths the values use, one load each (a hit decodes six). */
	switch (n) {
	case 8:
		memcpy(&v, p, 8);
		return be64toh(v);
	case 4:
		memcpy(&w, p, 4);
		return be32toh(w);
	case 2:
		memcpy(&h, p, 2);
		return be16toh(h);
	default:
		for (i = 0; i < n; i++)
			v = v << 8 | p[i];
		return v;
	}
}

/* A reader over one value: every get fails once anything is amiss. */
struct rd {
	const unsigned char *p, *end;
	bool bad;
};

static uint64_t
get_int(struct rd *r, unsigned char marker, int n)
{
	uint64_t v;

	if (r->bad || r->end - r->p < 1 + n || *r->p != marker) {
		r->bad = true;
		return 0;
	}
	v = be(r->p + 1, n);
	r->p += 1 + n;
	return v;
}

static unsigned
get_fix(struct rd *r)
{
	if (r->bad || r->p >= r->end || *r->p > 0x7f) {
		r->bad = true;
		return 0;
	}
	return *r->p++;
}

static const char *
get_bytes(struct rd *r, unsigned char marker, int n, size_t *len)
{
	const char *s;
	uint64_t l = get_int(r, marker, n);

	if (r->bad || (uint64_t)(r->end - r->p) < l) {
		r->bad = true;
		*len = 0;
		return "";
	}
	s = (const char *)r->p;
	r->p += l;
	*len = (size_t)l;
	return s;
}

size_t
cache_value_len(const struct cache_entry *e)
{
	if (e->kind == CACHE_VARY)
		return 3 + 3 + e->vary_len;
	return 3 + 3 + 6 * 9 + 5 + 3 + e->etag_len + 3 + e->desc_len + 5 +
	    e->headers_len + 5 + e->body_len;
}

size_t
cache_encode(const struct cache_entry *e, char *out)
{
	char *p = out;

	if (e->kind == CACHE_VARY) {
		*p++ = (char)(MP_FIXARRAY | VARY_FIELDS);
		*p++ = CACHE_VALUE_VERSION;
		*p++ = CACHE_VARY;
		p = put_str16(p, e->vary, e->vary_len);
		return (size_t)(p - out);
	}
	*p++ = (char)(MP_FIXARRAY | ENTRY_FIELDS);
	*p++ = CACHE_VALUE_VERSION;
	*p++ = CACHE_ENTRY;
	*p++ = (char)MP_U16;
	*p++ = (char)(e->status >> 8);
	*p++ = (char)e->status;
	p = put_u64(p, e->born_ns);
	p = put_u64(p, e->fresh_ns);
	p = put_u64(p, e->swr_ns);
	p = put_u64(p, e->sie_ns);
	p = put_u64(p, e->last_modified);
	p = put_u64(p, e->id);
	p = put_u32(p, e->flags);
	p = put_str16(p, e->etag, e->etag_len);
	p = put_str16(p, e->desc, e->desc_len);
	p = put_bin32(p, e->headers, e->headers_len);
	p = put_bin32(p, e->body, e->body_len);
	return (size_t)(p - out);
}

int
cache_decode(const void *v, size_t n, struct cache_entry *e)
{
	struct rd r = { v, (const unsigned char *)v + n, false };
	unsigned fields;

	memset(e, 0, sizeof(*e));
	if (n < 3 || (r.p[0] & 0xf0) != MP_FIXARRAY ||
	    r.p[1] != CACHE_VALUE_VERSION)
		return -1;
	fields = r.p[0] & 0x0f;
	r.p += 2;
	e->kind = (enum cache_kind)get_fix(&r);
	if (e->kind == CACHE_VARY && fields == VARY_FIELDS) {
		e->vary = get_bytes(&r, MP_STR16, 2, &e->vary_len);
		return r.bad || r.p != r.end ? -1 : 0;
	}
	if (e->kind != CACHE_ENTRY || fields != ENTRY_FIELDS)
		return -1;
	e->status = (int)get_int(&r, MP_U16, 2);
	e->born_ns = get_int(&r, MP_U64, 8);
	e->fresh_ns = get_int(&r, MP_U64, 8);
	e->swr_ns = get_int(&r, MP_U64, 8);
	e->sie_ns = get_int(&r, MP_U64, 8);
	e->last_modified = get_int(&r, MP_U64, 8);
	e->id = get_int(&r, MP_U64, 8);
	e->flags = (uint32_t)get_int(&r, MP_U32, 4);
	e->etag = get_bytes(&r, MP_STR16, 2, &e->etag_len);
	e->desc = get_bytes(&r, MP_STR16, 2, &e->desc_len);
	e->headers = get_bytes(&r, MP_BIN32, 4, &e->headers_len);
	e->body = get_bytes(&r, MP_BIN32, 4, &e->body_len);
	return r.bad || r.p != r.end ? -1 : 0;
}

/* ---- keys -------------------------------------------------------- */

static void
hex_sha256(const char *s, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];
	int i;

	SHA256((const unsigned char *)s, n, md);
	for (i = 0; i < 16; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
}

size_t
cache_key_path(const char *path, size_t n, char *out)
{
	if (n <= CACHE_PATH_VERBATIM) {
		memcpy(out, path, n);
		return n;
	}
	memcpy(out, path, CACHE_PATH_CUT);
	out[CACHE_PATH_CUT] = '~';
	hex_sha256(path, n, out + CACHE_PATH_CUT + 1);
	return CACHE_PATH_CUT + 33;
}

size_t
cache_key_make(const char *path, size_t plen, const char *rest,
    size_t rlen, char *out)
{
	size_t n = cache_key_path(path, plen, out);

	out[n++] = '\0';
	if (n + rlen <= CACHE_KEY_MAX && (rlen == 0 || rest[0] != '~')) {
		memcpy(out + n, rest, rlen);
		return n + rlen;
	}
	/* A REST that starts with '~' is hashed too: it cannot pose as
	 * the hash of another. */
	out[n++] = '~';
	hex_sha256(rest, rlen, out + n);
	return n + 32;
}

/* ---- records ----------------------------------------------------- */

/* One write (or read) txn's view of the three databases. */
struct cx {
	struct store *s;
	MDB_txn *txn;
	MDB_dbi db, exp, meta;
};

static void
cx_init(struct cx *c, struct store *s, MDB_txn *txn)
{
	c->s = s;
	c->txn = txn;
	c->db = s->dbi[STORE_CACHE];
	c->exp = s->dbi[STORE_CACHE_EXP];
	c->meta = s->dbi[STORE_CACHE_META];
}

static int
neg(int rc)
{
	return rc > 0 ? -rc : rc;
}

/* The record under K in DBI, opened for reading past its header: a
 * fixarray of N fields whose first is the format version, LEN bytes in
 * all (r->bad when it is not). 1 found, 0 absent, negative on error. */
static int
rd_open(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, size_t len, unsigned n,
    struct rd *r)
{
	MDB_val v;
	int rc;

	rc = mdb_get(txn, dbi, k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return neg(rc);
	r->p = v.mv_data;
	r->end = r->p + v.mv_size;
	r->bad = v.mv_size != len || r->p[0] != (MP_FIXARRAY | n) ||
	    r->p[1] != CACHE_VALUE_VERSION;
	r->p += 2;
	return 1;
}

struct meta {
	uint64_t evict_ns, used_ns, charge;
	unsigned kind;
};

/* TAG KEY into OUT; its length. */
static size_t
tagged(char tag, const char *key, size_t klen, char *out)
{
	out[0] = tag;
	memcpy(out + 1, key, klen);
	return klen + 1;
}

/* TAG be64(T) KEY into OUT; its length. */
static size_t
idx_key(char tag, uint64_t t, const char *key, size_t klen, char *out)
{
	int i;

	out[0] = tag;
	for (i = 0; i < 8; i++)
		out[1 + i] = (char)(t >> (8 * (7 - i)));
	memcpy(out + 9, key, klen);
	return klen + 9;
}

/* 0 found, 1 absent, negative on error. */
static int
meta_get(struct cx *c, const char *key, size_t klen, struct meta *m)
{
	char kb[1 + CACHE_KEY_MAX];
	MDB_val k;
	struct rd r;
	int rc;

	k.mv_data = kb;
	k.mv_size = tagged('k', key, klen, kb);
	if ((rc = rd_open(c->txn, c->meta, &k, META_LEN, 5, &r)) <= 0)
		return rc < 0 ? rc : 1;
	m->evict_ns = get_int(&r, MP_U64, 8);
	m->used_ns = get_int(&r, MP_U64, 8);
	m->charge = get_int(&r, MP_U64, 8);
	m->kind = get_fix(&r);
	return r.bad ? 1 : 0;
}

static int
meta_put(struct cx *c, const char *key, size_t klen, const struct meta *m)
{
	char kb[1 + CACHE_KEY_MAX], vb[META_LEN], *p = vb;
	MDB_val k, v;

	*p++ = (char)(MP_FIXARRAY | 5);
	*p++ = CACHE_VALUE_VERSION;
	p = put_u64(p, m->evict_ns);
	p = put_u64(p, m->used_ns);
	p = put_u64(p, m->charge);
	*p++ = (char)m->kind;
	k.mv_data = kb;
	k.mv_size = tagged('k', key, klen, kb);
	v.mv_data = vb;
	v.mv_size = sizeof(vb);
	return neg(mdb_put(c->txn, c->meta, &k, &v, 0));
}

static int
idx_put(struct cx *c, char tag, uint64_t t, const char *key, size_t klen)
{
	char kb[IDX_KEY_MAX];
	MDB_val k, v = { 0, "" };

	k.mv_data = kb;
	k.mv_size = idx_key(tag, t, key, klen, kb);
	return neg(mdb_put(c->txn, c->exp, &k, &v, 0));
}

static int
del_key(MDB_txn *txn, MDB_dbi dbi, const void *kb, size_t n)
{
	MDB_val k = { n, (void *)kb };
	int rc = mdb_del(txn, dbi, &k, NULL);

	return rc == MDB_NOTFOUND ? 0 : neg(rc);
}

static int
idx_del(struct cx *c, char tag, uint64_t t, const char *key, size_t klen)
{
	char kb[IDX_KEY_MAX];

	return del_key(c->txn, c->exp, kb, idx_key(tag, t, key, klen, kb));
}

/* ---- figures ----------------------------------------------------- */

static uint64_t *
fig_at(struct cache_figures *f, int i)
{
	uint64_t *a[FIGS_N] = { &f->entries, &f->records, &f->bytes,
	    &f->budget, &f->stored, &f->evicted_expired, &f->evicted_lru,
	    &f->invalidated, &f->purged };

	return a[i];
}

static int
figs_get(MDB_txn *txn, MDB_dbi meta, struct cache_figures *f)
{
	MDB_val k = { 1, "s" };
	struct rd r;
	int rc, i;

	memset(f, 0, sizeof(*f));
	if ((rc = rd_open(txn, meta, &k, FIGS_LEN, 10, &r)) <= 0)
		return rc;
	for (i = 0; i < FIGS_N; i++)
		*fig_at(f, i) = get_int(&r, MP_U64, 8);
	if (r.bad)
		memset(f, 0, sizeof(*f));
	return 0;
}

static int
figs_put(struct cx *c, struct cache_figures *f)
{
	char vb[FIGS_LEN], *p = vb;
	MDB_val k = { 1, "s" }, v = { sizeof(vb), vb };
	int i;

	*p++ = (char)(MP_FIXARRAY | 10);
	*p++ = CACHE_VALUE_VERSION;
	for (i = 0; i < FIGS_N; i++)
		p = put_u64(p, *fig_at(f, i));
	return neg(mdb_put(c->txn, c->meta, &k, &v, 0));
}

static void
dec(uint64_t *v, uint64_t by)
{
	*v = *v > by ? *v - by : 0;
}

/* Remove the record under KEY with its index, counting why. */
static int
remove_record(struct cx *c, const char *key, size_t klen,
    struct cache_figures *f, enum why why)
{
	char kb[1 + CACHE_KEY_MAX];
	struct meta m;
	int rc;

	int found;

	if ((found = meta_get(c, key, klen, &m)) < 0)
		return found;
	if ((rc = del_key(c->txn, c->db, key, klen)) < 0)
		return rc;
	if (found == 1)
		return 0;	/* no record, or one without its index */
	if ((rc = idx_del(c, 'e', m.evict_ns, key, klen)) < 0 ||
	    (rc = idx_del(c, 'u', m.used_ns, key, klen)) < 0 ||
	    (rc = del_key(c->txn, c->meta, kb, tagged('k', key, klen, kb))) <
	    0)
		return rc;
	dec(&f->records, 1);
	dec(&f->bytes, m.charge);
	if (m.kind == CACHE_ENTRY)
		dec(&f->entries, 1);
	switch (why) {
	case WHY_EXPIRED:
		f->evicted_expired++;
		break;
	case WHY_LRU:
		f->evicted_lru++;
		break;
	case WHY_INVALIDATED:
		f->invalidated++;
		break;
	case WHY_PURGED:
		f->purged++;
		break;
	default:
		break;
	}
	return 0;
}

/* The record to evict next: the soonest expired, else (LRU true) the
 * least recently used. 1 with its key in KEY, 0 when none, or negative. */
static int
pick_victim(struct cx *c, uint64_t now_ns, bool lru, char *key,
    size_t *klen, enum why *why)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, found = 0;

	if ((rc = mdb_cursor_open(c->txn, c->exp, &cur)) != 0)
		return neg(rc);
	k.mv_data = "e";
	k.mv_size = 1;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	if (rc == 0 && k.mv_size > 9 && ((char *)k.mv_data)[0] == 'e' &&
	    be((const unsigned char *)k.mv_data + 1, 8) <= now_ns) {
		*why = WHY_EXPIRED;
		found = 1;
	} else if (lru && (rc == 0 || rc == MDB_NOTFOUND)) {
		k.mv_data = "u";
		k.mv_size = 1;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == 0 && k.mv_size > 9 && ((char *)k.mv_data)[0] == 'u') {
			*why = WHY_LRU;
			found = 1;
		}
	}
	if (found) {
		*klen = k.mv_size - 9;
		memcpy(key, (char *)k.mv_data + 9, *klen);
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return neg(rc);
	return found;
}

/* ---- reads ------------------------------------------------------- */

int
cache_find(struct store *s, MDB_txn *txn, const char *key, size_t klen,
    struct cache_entry *e)
{
	MDB_val k = { klen, (void *)key }, v;
	int rc;

	rc = mdb_get(txn, s->dbi[STORE_CACHE], &k, &v);
	if (rc == MDB_NOTFOUND)
		return 1;
	if (rc != 0)
		return neg(rc);
	return cache_decode(v.mv_data, v.mv_size, e) < 0 ? 1 : 0;
}

ssize_t
cache_read_body(struct store *s, const char *key, size_t klen, uint64_t id,
    uint64_t off, char *dst, size_t cap)
{
	struct cache_entry e;
	MDB_txn *txn;
	ssize_t n = -1;

	if (store_read_begin(s, &txn) < 0)
		return -1;
	if (cache_find(s, txn, key, klen, &e) == 0 && e.kind == CACHE_ENTRY &&
	    e.id == id && off <= e.body_len) {
		n = (ssize_t)(e.body_len - off < cap ? e.body_len - off : cap);
		memcpy(dst, e.body + off, (size_t)n);
	}
	store_read_end(s);
	return n;
}

int
cache_figures(struct store *s, struct cache_figures *f)
{
	MDB_txn *txn;
	int rc;

	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	rc = figs_get(txn, s->dbi[STORE_CACHE_META], f);
	store_read_end(s);
	return rc;
}

uint64_t
cache_charge(size_t klen, size_t vlen, size_t psize)
{
	uint64_t n;

	/* A value past about half a page goes to overflow pages of its
	 * own (LMDB); smaller ones share leaf pages. */
	if (klen + vlen + 8 > psize / 2)
		n = (vlen + 16 + psize - 1) / psize * psize + klen + 16;
	else
		n = klen + vlen + 10;
	/* the two index records and the meta record */
	return n + 2 * (klen + 9 + 10) + (klen + 1 + META_LEN + 10);
}

/* ---- locks ------------------------------------------------------- */

static int
lock_read(MDB_txn *txn, MDB_dbi meta, const char *key, size_t klen,
    struct cache_lock *l)
{
	char kb[1 + CACHE_KEY_MAX];
	MDB_val k;
	struct rd r;
	int rc;

	memset(l, 0, sizeof(*l));
	k.mv_data = kb;
	k.mv_size = tagged('l', key, klen, kb);
	if ((rc = rd_open(txn, meta, &k, LOCK_LEN, 5, &r)) <= 0)
		return rc;
	l->state = (enum cache_lock_state)get_fix(&r);
	l->pid = (pid_t)get_int(&r, MP_U32, 4);
	l->since_ns = get_int(&r, MP_U64, 8);
	l->until_ns = get_int(&r, MP_U64, 8);
	if (r.bad)
		memset(l, 0, sizeof(*l));
	return 0;
}

static int
lock_write(MDB_txn *txn, MDB_dbi meta, const char *key, size_t klen,
    const struct cache_lock *l)
{
	char kb[1 + CACHE_KEY_MAX], vb[LOCK_LEN], *p = vb;
	MDB_val k, v = { sizeof(vb), vb };

	k.mv_data = kb;
	k.mv_size = tagged('l', key, klen, kb);
	if (l->state == CACHE_LOCK_NONE)
		return del_key(txn, meta, kb, k.mv_size);
	*p++ = (char)(MP_FIXARRAY | 5);
	*p++ = CACHE_VALUE_VERSION;
	*p++ = (char)l->state;
	p = put_u32(p, (uint32_t)l->pid);
	p = put_u64(p, l->since_ns);
	p = put_u64(p, l->until_ns);
	return neg(mdb_put(txn, meta, &k, &v, 0));
}

/* Whether L still holds at NOW: a fetch by a live process within its
 * time, or a note within its time. */
static bool
lock_live(const struct cache_lock *l, uint64_t now_ns)
{
	if (l->state == CACHE_LOCK_NONE || now_ns >= l->until_ns)
		return false;
	if (l->state != CACHE_LOCK_FETCH)
		return true;
	/* A fetcher that died frees its waiters at once. */
	return l->pid > 0 && (kill(l->pid, 0) == 0 || errno != ESRCH);
}

int
cache_lock_peek(struct store *s, MDB_txn *txn, const char *key, size_t klen,
    uint64_t now_ns, struct cache_lock *l)
{
	int rc = lock_read(txn, s->dbi[STORE_CACHE_META], key, klen, l);

	if (rc == 0 && !lock_live(l, now_ns))
		memset(l, 0, sizeof(*l));
	return rc;
}

int
cache_lock_take(struct store *s, const char *key, size_t klen,
    uint64_t now_ns, uint64_t until_ns, struct cache_lock *seen)
{
	MDB_dbi meta = s->dbi[STORE_CACHE_META];
	MDB_txn *txn;
	int rc;

	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	if ((rc = lock_read(txn, meta, key, klen, seen)) < 0)
		goto fail;
	if (lock_live(seen, now_ns)) {
		store_write_abort(txn);
		return 0;
	}
	if ((rc = store_room(s, txn, STORE_SPARE)) != 0) {
		rc = neg(rc);
		goto fail;
	}
	seen->state = CACHE_LOCK_FETCH;
	seen->pid = getpid();
	seen->since_ns = now_ns;
	seen->until_ns = until_ns;
	if ((rc = lock_write(txn, meta, key, klen, seen)) < 0)
		goto fail;
	if ((rc = store_write_commit(txn)) < 0)
		return rc;
	return 1;
fail:
	store_write_abort(txn);
	return rc;
}

int
cache_lock_end(struct store *s, const char *key, size_t klen,
    const struct cache_lock *mine, enum cache_lock_state state,
    uint64_t until_ns)
{
	MDB_dbi meta = s->dbi[STORE_CACHE_META];
	struct cache_lock cur, l;
	MDB_txn *txn;
	int rc;

	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	if ((rc = lock_read(txn, meta, key, klen, &cur)) < 0)
		goto fail;
	/* Another fetcher took over (ours ran out of time): theirs. */
	if (cur.state != CACHE_LOCK_NONE && (cur.pid != mine->pid ||
	    cur.since_ns != mine->since_ns)) {
		store_write_abort(txn);
		return 0;
	}
	if (cur.state == CACHE_LOCK_NONE && state == CACHE_LOCK_NONE) {
		store_write_abort(txn);
		return 0;
	}
	/* A note is small, but never at the cost of others' room. */
	if (state != CACHE_LOCK_NONE && store_room(s, txn, STORE_SPARE) != 0)
		state = CACHE_LOCK_NONE;
	l = *mine;
	l.state = state;
	l.until_ns = until_ns;
	if ((rc = lock_write(txn, meta, key, klen, &l)) < 0)
		goto fail;
	return store_write_commit(txn);
fail:
	store_write_abort(txn);
	return rc;
}

/* ---- writes ------------------------------------------------------ */

/* Evict until NEED more bytes fit the budget and the map has room for
 * what may be dropped again; EVICTED counts. 1 when there is room, 0
 * when not, negative on error. */
static int
make_room(struct cx *c, struct cache_figures *f, uint64_t need,
    uint64_t budget, uint64_t now_ns, unsigned *evicted)
{
	char key[CACHE_KEY_MAX];
	size_t klen;
	enum why why;
	int rc;

	if (need > budget)
		return 0;
	for (;;) {
		bool over = f->bytes + need > budget;

		if (!over && store_room(c->s, c->txn, STORE_SPARE) == 0)
			return 1;
		if (*evicted >= CACHE_EVICT_MAX)
			return 0;
		rc = pick_victim(c, now_ns, true, key, &klen, &why);
		if (rc <= 0)
			return rc;
		if ((rc = remove_record(c, key, klen, f, why)) < 0)
			return rc;
		(*evicted)++;
	}
}

/* Write the record E under KEY with its index. */
static int
put_record(struct cx *c, const char *key, size_t klen,
    const struct cache_entry *e, uint64_t evict_ns, uint64_t now_ns,
    uint64_t charge)
{
	MDB_val k = { klen, (void *)key }, v;
	struct meta m;
	int rc;

	v.mv_size = cache_value_len(e);
	v.mv_data = NULL;
	if ((rc = mdb_put(c->txn, c->db, &k, &v, MDB_RESERVE)) != 0)
		return neg(rc);
	cache_encode(e, v.mv_data);
	m.evict_ns = evict_ns;
	m.used_ns = now_ns;
	m.charge = charge;
	m.kind = e->kind;
	if ((rc = meta_put(c, key, klen, &m)) < 0 ||
	    (rc = idx_put(c, 'e', evict_ns, key, klen)) < 0 ||
	    (rc = idx_put(c, 'u', now_ns, key, klen)) < 0)
		return rc;
	return 0;
}

int
cache_put(struct store *s, const char *key, size_t klen,
    const struct cache_entry *e, struct cache_put *p)
{
	struct cache_entry vr;
	struct cache_figures f;
	struct cache_lock none = { 0 };
	struct cx c;
	MDB_txn *txn;
	uint64_t need, vcharge = 0;
	int rc;

	p->evicted = 0;
	p->stored = false;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	cx_init(&c, s, txn);
	if ((rc = figs_get(txn, c.meta, &f)) < 0 ||
	    (rc = remove_record(&c, key, klen, &f, WHY_REPLACED)) < 0)
		goto fail;
	if (p->vary_key != NULL) {
		memset(&vr, 0, sizeof(vr));
		vr.kind = CACHE_VARY;
		vr.vary = p->vary;
		vr.vary_len = p->vary_len;
		if ((rc = remove_record(&c, p->vary_key, p->vary_klen, &f,
		    WHY_REPLACED)) < 0)
			goto fail;
		vcharge = cache_charge(p->vary_klen, cache_value_len(&vr),
		    s->psize);
	}
	need = cache_charge(klen, cache_value_len(e), s->psize) + vcharge;
	f.budget = p->budget;
	rc = make_room(&c, &f, need, p->budget, p->now_ns, &p->evicted);
	if (rc < 0)
		goto fail;
	if (rc == 1) {
		if ((rc = put_record(&c, key, klen, e, p->evict_ns, p->now_ns,
		    need - vcharge)) < 0)
			goto fail;
		if (p->vary_key != NULL && (rc = put_record(&c, p->vary_key,
		    p->vary_klen, &vr, p->evict_ns, p->now_ns, vcharge)) < 0)
			goto fail;
		f.records += p->vary_key != NULL ? 2 : 1;
		f.entries++;
		f.bytes += need;
		f.stored++;
		p->stored = true;
	}
	/* Stored: the fetch is over, waiters find the entry. (Not stored:
	 * the caller ends its lock with a note.) */
	if ((p->stored && ((rc = lock_write(txn, c.meta, key, klen,
	    &none)) < 0 || (p->vary_key != NULL && (rc = lock_write(txn,
	    c.meta, p->vary_key, p->vary_klen, &none)) < 0))) ||
	    (rc = figs_put(&c, &f)) < 0)
		goto fail;
	return store_write_commit(txn);
fail:
	store_write_abort(txn);
	return rc;
}

int
cache_touch(struct store *s, const char *const *keys, const size_t *lens,
    size_t n, uint64_t now_ns, uint64_t grain_ns)
{
	struct meta m;
	struct cx c;
	MDB_txn *txn;
	size_t i;
	int rc, moved = 0;

	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	cx_init(&c, s, txn);
	/* Moving a record in the order takes no more room than it had. */
	if ((rc = store_room(s, txn, STORE_UPDATE)) != 0) {
		store_write_abort(txn);
		return neg(rc);
	}
	for (i = 0; i < n; i++) {
		if ((rc = meta_get(&c, keys[i], lens[i], &m)) < 0)
			goto fail;
		if (rc == 1 || m.used_ns + grain_ns > now_ns)
			continue;
		if ((rc = idx_del(&c, 'u', m.used_ns, keys[i], lens[i])) < 0 ||
		    (rc = idx_put(&c, 'u', now_ns, keys[i], lens[i])) < 0)
			goto fail;
		m.used_ns = now_ns;
		if ((rc = meta_put(&c, keys[i], lens[i], &m)) < 0)
			goto fail;
		moved++;
	}
	if ((rc = store_write_commit(txn)) < 0)
		return rc;
	return moved;
fail:
	store_write_abort(txn);
	return rc;
}

/* ---- scans ------------------------------------------------------- */

/* The target ("PATH?QUERY") of a description: up to its first space. */
static size_t
desc_target(const struct cache_entry *e)
{
	const char *sp = memchr(e->desc, ' ', e->desc_len);

	return sp != NULL ? (size_t)(sp - e->desc) : e->desc_len;
}

/* The path of the record K -> V: from the key, or from the description
 * when the key holds it cut and hashed. */
static void
record_path(const MDB_val *k, const MDB_val *v, const char **p, size_t *n)
{
	const char *key = k->mv_data;
	const char *z = memchr(key, '\0', k->mv_size);
	size_t plen = z != NULL ? (size_t)(z - key) : k->mv_size;
	struct cache_entry e;
	const char *q;

	*p = key;
	*n = plen;
	if (plen != CACHE_PATH_CUT + 33 || key[CACHE_PATH_CUT] != '~' ||
	    cache_decode(v->mv_data, v->mv_size, &e) < 0 ||
	    e.kind != CACHE_ENTRY)
		return;
	*p = e.desc;
	*n = desc_target(&e);
	if ((q = memchr(*p, '?', *n)) != NULL)
		*n = (size_t)(q - *p);
}

/* Whether PATH is PREFIX or under it, segment-aware. */
static bool
under(const char *path, size_t n, const char *prefix, size_t len)
{
	while (len > 1 && prefix[len - 1] == '/')
		len--;
	if (len == 0 || (len == 1 && prefix[0] == '/'))
		return true;
	return n >= len && memcmp(path, prefix, len) == 0 &&
	    (n == len || path[len] == '/');
}

/*
 * Remove records of DBI (CACHE or META with TAG) whose key starts with
 * START and that MATCH accepts, in write txns of at most
 * CACHE_EVICT_MAX removals. COUNT gets the entries removed.
 */
struct scan {
	const char *start;	/* key prefix of the range */
	size_t slen;
	bool (*match)(const struct scan *sc, const MDB_val *k,
	    const MDB_val *v);
	const char *prefix;	/* purge: the path prefix */
	size_t plen;
	enum why why;
};

static bool
match_all(const struct scan *sc, const MDB_val *k, const MDB_val *v)
{
	(void)sc;
	(void)k;
	(void)v;
	return true;
}

static bool
match_under(const struct scan *sc, const MDB_val *k, const MDB_val *v)
{
	const char *p;
	size_t n;

	record_path(k, v, &p, &n);
	return under(p, n, sc->prefix, sc->plen);
}

static int
scan_remove(struct store *s, const struct scan *sc, bool locks,
    uint64_t *count)
{
	char resume[1 + CACHE_KEY_MAX], keys[CACHE_EVICT_MAX][1 + CACHE_KEY_MAX];
	size_t rlen, lens[CACHE_EVICT_MAX];
	struct cache_figures f;
	MDB_cursor *cur;
	MDB_val k, v;
	struct cx c;
	MDB_txn *txn;
	int rc, n, looked, i, more = 1;
	uint64_t before;

	memcpy(resume, sc->start, sc->slen);
	rlen = sc->slen;
	while (more) {
		if ((rc = store_write_begin(s, &txn)) < 0)
			return rc;
		cx_init(&c, s, txn);
		if ((rc = figs_get(txn, c.meta, &f)) < 0)
			goto fail;
		if ((rc = mdb_cursor_open(txn, locks ? c.meta : c.db, &cur)) !=
		    0) {
			rc = neg(rc);
			goto fail;
		}
		k.mv_data = resume;
		k.mv_size = rlen;
		n = looked = 0;
		more = 0;
		/* LMDB takes no empty key: the whole range is from the
		 * first. */
		for (rc = mdb_cursor_get(cur, &k, &v, rlen > 0 ? MDB_SET_RANGE :
		    MDB_FIRST); rc == 0;
		    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (k.mv_size < sc->slen ||
			    memcmp(k.mv_data, sc->start, sc->slen) != 0)
				break;
			if (n == CACHE_EVICT_MAX || looked == SCAN_MAX) {
				/* Resume here in the next txn. */
				memcpy(resume, k.mv_data, k.mv_size);
				rlen = k.mv_size;
				more = 1;
				break;
			}
			looked++;
			if (locks) {
				MDB_val kk = { k.mv_size - 1,
				    (char *)k.mv_data + 1 };
				MDB_val none = { 0, "" };
				if (!sc->match(sc, &kk, &none))
					continue;
			} else if (!sc->match(sc, &k, &v)) {
				continue;
			}
			memcpy(keys[n], k.mv_data, k.mv_size);
			lens[n++] = k.mv_size;
		}
		mdb_cursor_close(cur);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			rc = neg(rc);
			goto fail;
		}
		before = f.records;
		for (i = 0; i < n; i++) {
			rc = locks ? del_key(txn, c.meta, keys[i], lens[i]) :
			    remove_record(&c, keys[i], lens[i], &f, sc->why);
			if (rc < 0)
				goto fail;
		}
		if (count != NULL)
			*count += before - f.records;
		if ((!locks && n > 0 && (rc = figs_put(&c, &f)) < 0))
			goto fail;
		if (n == 0) {
			store_write_abort(txn);
			continue;
		}
		if ((rc = store_write_commit(txn)) < 0)
			return rc;
	}
	return 0;
fail:
	store_write_abort(txn);
	return rc;
}

int
cache_invalidate(struct store *s, const char *pkey, size_t plen)
{
	char start[CACHE_PATH_VERBATIM + 1];
	struct scan sc = { start, plen + 1, match_all, NULL, 0,
	    WHY_INVALIDATED };
	uint64_t n = 0;
	int rc;

	memcpy(start, pkey, plen);
	start[plen] = '\0';
	rc = scan_remove(s, &sc, false, &n);
	return rc < 0 ? rc : (int)n;
}

int
cache_purge(struct store *s, const char *prefix, size_t len)
{
	char lstart[1 + CACHE_PATH_CUT];
	struct scan sc = { prefix, len < CACHE_PATH_CUT ? len :
	    CACHE_PATH_CUT, match_under, prefix, len, WHY_PURGED };
	struct scan sl;
	uint64_t n = 0;
	int rc;

	/* "/" and "": everything (every path starts with '/'). */
	while (sc.slen > 0 && prefix[sc.slen - 1] == '/')
		sc.slen--;
	if ((rc = scan_remove(s, &sc, false, &n)) < 0)
		return rc;
	/* Their locks and notes too: a purged path is fetched afresh. */
	sl = sc;
	lstart[0] = 'l';
	memcpy(lstart + 1, prefix, sc.slen);
	sl.start = lstart;
	sl.slen = sc.slen + 1;
	if ((rc = scan_remove(s, &sl, true, NULL)) < 0)
		return rc;
	return (int)n;
}

int
cache_list(struct store *s, const char *path, size_t plen,
    const char *query, size_t qlen, int max,
    void (*fn)(void *arg, const struct cache_listed *l), void *arg)
{
	char start[CACHE_PATH_VERBATIM + 1];
	struct cache_listed l;
	MDB_cursor *cur;
	MDB_val k, v;
	struct meta m;
	struct cx c;
	MDB_txn *txn;
	size_t slen;
	int rc, n = 0;

	slen = cache_key_path(path, plen, start);
	start[slen++] = '\0';
	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	cx_init(&c, s, txn);
	if ((rc = mdb_cursor_open(txn, c.db, &cur)) != 0) {
		store_read_end(s);
		return neg(rc);
	}
	k.mv_data = start;
	k.mv_size = slen;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 &&
	    n < max; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < slen || memcmp(k.mv_data, start, slen) != 0)
			break;
		memset(&l, 0, sizeof(l));
		if (cache_decode(v.mv_data, v.mv_size, &l.e) < 0)
			continue;
		if (l.e.kind == CACHE_ENTRY && query != NULL) {
			size_t t = desc_target(&l.e);
			const char *q = memchr(l.e.desc, '?', t);
			size_t have = q != NULL ? t - (size_t)(q - l.e.desc) : 0;
			if (have != qlen || (qlen > 0 &&
			    memcmp(q, query, qlen) != 0))
				continue;
		} else if (l.e.kind != CACHE_ENTRY && query != NULL) {
			continue;
		}
		l.key = k.mv_data;
		l.klen = k.mv_size;
		if (meta_get(&c, k.mv_data, k.mv_size, &m) == 0) {
			l.evict_ns = m.evict_ns;
			l.used_ns = m.used_ns;
			l.charge = m.charge;
		}
		fn(arg, &l);
		n++;
	}
	mdb_cursor_close(cur);
	store_read_end(s);
	return rc != 0 && rc != MDB_NOTFOUND ? neg(rc) : n;
}

/* ---- the master's upkeep ----------------------------------------- */

/* Evict up to CACHE_EVICT_MAX records in one write txn: expired ones,
 * and (LRU) least recently used ones while WANT says so. The number
 * removed, or negative. */
static int
sweep_txn(struct store *s, uint64_t now_ns, bool lru)
{
	char key[CACHE_KEY_MAX];
	struct cache_figures f;
	size_t klen;
	enum why why;
	struct cx c;
	MDB_txn *txn;
	int rc, n = 0;

	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	cx_init(&c, s, txn);
	if ((rc = figs_get(txn, c.meta, &f)) < 0)
		goto fail;
	while (n < CACHE_EVICT_MAX) {
		bool want = lru && (f.bytes > f.budget ||
		    store_room(s, txn, STORE_SPARE) != 0);
		rc = pick_victim(&c, now_ns, want, key, &klen, &why);
		if (rc < 0)
			goto fail;
		if (rc == 0)
			break;
		if ((rc = remove_record(&c, key, klen, &f, why)) < 0)
			goto fail;
		n++;
	}
	if (n == 0) {
		store_write_abort(txn);
		return 0;
	}
	if ((rc = figs_put(&c, &f)) < 0)
		goto fail;
	if ((rc = store_write_commit(txn)) < 0)
		return rc;
	return n;
fail:
	store_write_abort(txn);
	return rc;
}

/* What the sweep should do, seen from a read txn (no write when the
 * answer is nothing): 1 expired records are there, 2 the cache is over
 * its budget or the map short of room, 0 neither. */
static int
sweep_need(struct store *s, uint64_t now_ns)
{
	struct cache_figures f;
	MDB_cursor *cur;
	MDB_txn *txn;
	MDB_val k = { 1, "e" }, v;
	int need = 0;

	if (store_read_begin(s, &txn) < 0)
		return 0;
	if (mdb_cursor_open(txn, s->dbi[STORE_CACHE_EXP], &cur) == 0) {
		if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0 &&
		    k.mv_size > 9 && ((char *)k.mv_data)[0] == 'e' &&
		    be((const unsigned char *)k.mv_data + 1, 8) <= now_ns)
			need |= 1;
		mdb_cursor_close(cur);
	}
	if (figs_get(txn, s->dbi[STORE_CACHE_META], &f) == 0 && f.records > 0 &&
	    f.bytes > f.budget)
		need |= 2;
	store_read_end(s);
	if (!(need & 2) && f.records > 0 &&
	    store_room(s, NULL, STORE_SPARE) != 0)
		need |= 2;
	return need;
}

/* Locks and notes whose time is over (or whose fetcher is gone), going
 * on from where SW says. */
static int
sweep_locks(struct store *s, uint64_t now_ns, struct cache_sweep_state *sw)
{
	char keys[CACHE_EVICT_MAX][1 + CACHE_KEY_MAX];
	size_t lens[CACHE_EVICT_MAX];
	struct cache_lock l;
	MDB_cursor *cur;
	MDB_val k = { 1, "l" }, v;
	MDB_txn *txn;
	int rc, n = 0, looked = 0, i;

	if (sw->lock_klen > 0) {
		k.mv_data = sw->lock_key;
		k.mv_size = sw->lock_klen;
	}
	if ((rc = store_read_begin(s, &txn)) < 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, s->dbi[STORE_CACHE_META], &cur)) != 0) {
		store_read_end(s);
		return neg(rc);
	}
	sw->lock_klen = 0;	/* at the end of the locks: from the first */
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), looked++) {
		if (((char *)k.mv_data)[0] != 'l')
			break;
		if (n == CACHE_EVICT_MAX || looked == SCAN_MAX) {
			memcpy(sw->lock_key, k.mv_data, k.mv_size);
			sw->lock_klen = k.mv_size;
			break;
		}
		if (lock_read(txn, s->dbi[STORE_CACHE_META],
		    (char *)k.mv_data + 1, k.mv_size - 1, &l) < 0 ||
		    lock_live(&l, now_ns))
			continue;
		memcpy(keys[n], k.mv_data, k.mv_size);
		lens[n++] = k.mv_size;
	}
	mdb_cursor_close(cur);
	store_read_end(s);
	if (n == 0)
		return 0;
	if ((rc = store_write_begin(s, &txn)) < 0)
		return rc;
	for (i = 0; i < n; i++) {
		/* Again under the lock: it may have been taken since. */
		if ((rc = lock_read(txn, s->dbi[STORE_CACHE_META], keys[i] + 1,
		    lens[i] - 1, &l)) < 0)
			goto fail;
		if (!lock_live(&l, now_ns) && (rc = del_key(txn,
		    s->dbi[STORE_CACHE_META], keys[i], lens[i])) < 0)
			goto fail;
	}
	if ((rc = store_write_commit(txn)) < 0)
		return rc;
	return n;
fail:
	store_write_abort(txn);
	return rc;
}

int
cache_sweep(struct store *s, uint64_t now_ns, void *state)
{
	struct cache_sweep_state local, *sw = state;
	int need, rc, i, total = 0;

	if (sw == NULL) {
		memset(&local, 0, sizeof(local));
		sw = &local;
	}
	need = sweep_need(s, now_ns);
	for (i = 0; need != 0 && i < SWEEP_TXNS; i++) {
		rc = sweep_txn(s, now_ns, (need & 2) != 0);
		if (rc < 0)
			return rc;
		total += rc;
		if (rc < CACHE_EVICT_MAX)
			break;
	}
	rc = sweep_locks(s, now_ns, sw);
	if (rc < 0)
		return rc;
	return total + rc;
}
