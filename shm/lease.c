#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "hash.h"
#include "lease.h"

#define MIN_SLOTS	1024

/* An index slot: the entry's position + 1 (0 = empty) and the low bits
 * of its hash, so most probes never touch the entry. */
struct slot {
	uint32_t tag;
	uint32_t idx;
};

struct lease_table {
	uint64_t seed;
	struct slot *slots;
	size_t mask;		/* slots - 1, a power of two minus one */
	struct lease *e;	/* entries, dense */
	size_t n, cap;
};

/* Seeded per table (shm/hash.h): keys a client chooses cannot be aimed
 * at one chain of the index without knowing the seed. */
uint64_t
lease_hash(const struct lease_table *t, const void *key, size_t klen)
{
	return hash_bytes(key, klen, t->seed);
}

struct lease_table *
lease_table_new(void)
{
	struct lease_table *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	if (getrandom(&t->seed, sizeof(t->seed), 0) != sizeof(t->seed))
		t->seed = (uint64_t)getpid();
	t->slots = calloc(MIN_SLOTS, sizeof(*t->slots));
	if (t->slots == NULL) {
		free(t);
		return NULL;
	}
	t->mask = MIN_SLOTS - 1;
	return t;
}

static void
key_free(struct lease *e)
{
	free(e->heap);
	e->heap = NULL;
}

void
lease_table_free(struct lease_table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++)
		key_free(&t->e[i]);
	free(t->e);
	free(t->slots);
	free(t);
}

size_t
lease_count(const struct lease_table *t)
{
	return t->n;
}

/* The slot holding entry IDX (0-based), which must be in the index. */
static size_t
slot_of(const struct lease_table *t, size_t idx)
{
	size_t i = t->e[idx].hash & t->mask;

	while (t->slots[i].idx != idx + 1)
		i = (i + 1) & t->mask;
	return i;
}

struct lease *
lease_get(struct lease_table *t, const void *key, size_t klen, uint64_t hash)
{
	size_t i = hash & t->mask;
	struct lease *e;

	for (; t->slots[i].idx != 0; i = (i + 1) & t->mask) {
		if (t->slots[i].tag != (uint32_t)hash)
			continue;
		e = &t->e[t->slots[i].idx - 1];
		if (e->hash == hash && e->klen == klen &&
		    memcmp(lease_key(e), key, klen) == 0)
			return e;
	}
	return NULL;
}

static void
index_add(struct lease_table *t, size_t idx)
{
	size_t i = t->e[idx].hash & t->mask;

	while (t->slots[i].idx != 0)
		i = (i + 1) & t->mask;
	t->slots[i].tag = (uint32_t)t->e[idx].hash;
	t->slots[i].idx = (uint32_t)idx + 1;
}

/* Keep the index at most half full: short probes. */
static int
index_grow(struct lease_table *t)
{
	size_t nslots = (t->mask + 1) * 2, i;
	struct slot *old = t->slots;

	t->slots = calloc(nslots, sizeof(*t->slots));
	if (t->slots == NULL) {
		t->slots = old;
		return -1;
	}
	free(old);
	t->mask = nslots - 1;
	for (i = 0; i < t->n; i++)
		index_add(t, i);
	return 0;
}

struct lease *
lease_put(struct lease_table *t, const void *key, size_t klen, uint64_t hash)
{
	struct lease *e;
	size_t cap;

	if ((e = lease_get(t, key, klen, hash)) != NULL)
		return e;
	if (t->n >= LEASE_CAP || klen > UINT16_MAX)
		return NULL;
	if ((t->n + 1) * 2 > t->mask + 1 && index_grow(t) < 0)
		return NULL;
	if (t->n == t->cap) {
		cap = t->cap ? t->cap * 2 : 256;
		e = realloc(t->e, cap * sizeof(*e));
		if (e == NULL)
			return NULL;
		t->e = e;
		t->cap = cap;
	}
	e = &t->e[t->n];
	memset(e, 0, sizeof(*e));
	if (klen > sizeof(e->inl) && (e->heap = malloc(klen)) == NULL)
		return NULL;
	memcpy(e->heap != NULL ? e->heap : e->inl, key, klen);
	e->klen = (uint16_t)klen;
	e->hash = hash;
	index_add(t, t->n);
	t->n++;
	return e;
}

/* Take slot I out of the index, moving later entries of its run back so
 * every entry stays reachable from its home slot (no tombstones). */
static void
index_remove(struct lease_table *t, size_t i)
{
	size_t j = i, home;

	for (;;) {
		j = (j + 1) & t->mask;
		if (t->slots[j].idx == 0)
			break;
		home = t->e[t->slots[j].idx - 1].hash & t->mask;
		/* Stays if its home lies cyclically in (i, j]. */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		t->slots[i] = t->slots[j];
		i = j;
	}
	t->slots[i].idx = 0;
}

void
lease_drop(struct lease_table *t, struct lease *e)
{
	size_t idx = (size_t)(e - t->e), last = t->n - 1;

	index_remove(t, slot_of(t, idx));
	key_free(e);
	if (idx != last) {
		/* The last entry fills the hole. */
		t->slots[slot_of(t, last)].idx = (uint32_t)idx + 1;
		*e = t->e[last];
	}
	t->n--;
}

/* Returns waiting for their write txn; the keys are copied, since the
 * entries go at once. */
struct pending {
	struct bucket_giveback g[LEASE_RETURN_TXN];
	char keys[LEASE_RETURN_TXN][BUCKET_KEY_MAX];
	size_t n;
};

static int
flush(struct store *s, struct pending *pd, struct lease_tick_stats *st)
{
	int rc;

	if (pd->n == 0)
		return 0;
	rc = bucket_return_many(s, pd->g, pd->n, store_now_ns());
	st->txns++;
	if (rc >= 0)
		st->returned += (unsigned)pd->n;
	else
		st->error = rc;
	pd->n = 0;
	return rc < 0 ? rc : 0;
}

static void
pend(struct pending *pd, const struct lease *e)
{
	struct bucket_giveback *g = &pd->g[pd->n];

	memcpy(pd->keys[pd->n], lease_key(e), e->klen);
	g->key = pd->keys[pd->n];
	g->klen = e->klen;
	g->p = e->p;
	g->n = e->tokens;
	pd->n++;
}

int
lease_tick(struct lease_table *t, struct store *s, uint64_t now_ms,
    struct lease_tick_stats *st)
{
	struct lease_tick_stats dummy;
	struct pending *pd;
	struct bucket b;
	struct lease *e;
	MDB_txn *txn = NULL;
	uint64_t now_ns = store_now_ns();
	size_t i;
	int rc = 0;

	if (st == NULL)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	if (t->n == 0)
		return 0;
	pd = malloc(sizeof(*pd));
	if (pd == NULL)
		return -1;
	pd->n = 0;
	/* From the end, so that a dropped entry's hole is filled by one
	 * already looked at. */
	for (i = t->n; i-- > 0 && st->checked < LEASE_TICK_CHECKS;) {
		if (i >= t->n)
			continue;
		e = &t->e[i];
		if (now_ms - e->checked_ms < LEASE_CHECK_MS)
			continue;
		if (e->tokens == 0 || e->klen > BUCKET_KEY_MAX) {
			lease_drop(t, e);
			continue;
		}
		if (txn == NULL && (rc = store_read_begin(s, &txn)) < 0)
			break;
		st->checked++;
		rc = bucket_get(s, txn, lease_key(e), e->klen, &e->p, now_ns,
		    &b);
		if (rc < 0)
			break;
		if (bucket_full(&b)) {
			if (now_ms - e->used_ms < LEASE_KEEP_MS) {
				e->checked_ms = now_ms;
				e->left = e->p.burst;
				e->full_at_ms = now_ms;
				st->kept++;
			} else {
				st->dropped++;
				lease_drop(t, e);
			}
			continue;
		}
		pend(pd, e);
		lease_drop(t, e);
		if (pd->n == LEASE_RETURN_TXN) {
			/* No read txn across the write: it would pin the
			 * pages the write frees. */
			store_read_end(s);
			txn = NULL;
			if ((rc = flush(s, pd, st)) < 0)
				break;
		}
	}
	if (txn != NULL)
		store_read_end(s);
	if (rc >= 0)
		rc = flush(s, pd, st);
	else
		st->error = rc;
	free(pd);
	return rc < 0 ? rc : 0;
}

int
lease_return_all(struct lease_table *t, struct store *s)
{
	struct lease_tick_stats st;
	struct pending *pd;
	int rc = 0, r;

	memset(&st, 0, sizeof(st));
	pd = malloc(sizeof(*pd));
	if (pd == NULL)
		return -1;
	pd->n = 0;
	while (t->n > 0) {
		struct lease *e = &t->e[t->n - 1];

		if (e->tokens > 0 && e->klen <= BUCKET_KEY_MAX)
			pend(pd, e);
		lease_drop(t, e);
		if (pd->n == LEASE_RETURN_TXN && (r = flush(s, pd, &st)) < 0)
			rc = r;
	}
	if ((r = flush(s, pd, &st)) < 0)
		rc = r;
	free(pd);
	return rc;
}
