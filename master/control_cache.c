#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control_cache.h"
#include "msg.h"
#include "../shm/cache_store.h"
#include "../shm/counters.h"
#include "../shm/store.h"

#define PATH_ARG_MAX	8192	/* gwctl cache show / purge argument */
#define SHOW_MAX	64	/* entries shown for one path */
#define TEXT_MAX	4096	/* header lines shown per entry */

static int
reply_err(struct msg_out *o, const char *text)
{
	if (msg_out_init(o, 2) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", false);
	msg_pack_kv_str(&o->pk, "error", text);
	return 0;
}

/* P[0..n) as printable text into OUT (CAP bytes): '\0' as " | ", other
 * control bytes as '?'. */
static void
printable(const char *p, size_t n, char *out, size_t cap)
{
	size_t i, k = 0;

	for (i = 0; i < n && k + 4 < cap; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\0') {
			memcpy(out + k, " | ", 3);
			k += 3;
		} else {
			out[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		}
	}
	out[k] = '\0';
}

/* Seconds from NOW to T (negative: T is past). */
static int64_t
secs(uint64_t t, uint64_t now)
{
	return t >= now ? (int64_t)((t - now) / 1000000000ull) :
	    -(int64_t)((now - t + 999999999ull) / 1000000000ull);
}

struct show {
	msgpack_packer *pk;
	uint64_t now;
	int n;
	char text[TEXT_MAX];
};

static void
pack_listed(void *arg, const struct cache_listed *l)
{
	struct show *sh = arg;
	msgpack_packer *pk = sh->pk;
	const struct cache_entry *e = &l->e;

	if (e->kind != CACHE_ENTRY) {
		msgpack_pack_map(pk, 4);
		printable(l->key, l->klen, sh->text, sizeof(sh->text));
		msg_pack_kv_str(pk, "key", sh->text);
		msg_pack_kv_str(pk, "kind", "vary");
		printable(e->vary, e->vary_len, sh->text, sizeof(sh->text));
		msg_pack_kv_str(pk, "vary", sh->text);
		msg_pack_kv_int(pk, "evict_in_s", secs(l->evict_ns, sh->now));
		sh->n++;
		return;
	}
	msgpack_pack_map(pk, 15);
	printable(l->key, l->klen, sh->text, sizeof(sh->text));
	msg_pack_kv_str(pk, "key", sh->text);
	msg_pack_kv_str(pk, "kind", "response");
	printable(e->desc, e->desc_len, sh->text, sizeof(sh->text));
	msg_pack_kv_str(pk, "desc", sh->text);
	msg_pack_kv_uint(pk, "status", (uint64_t)e->status);
	msg_pack_kv_int(pk, "age_s", -secs(e->born_ns, sh->now));
	msg_pack_kv_int(pk, "fresh_for_s", secs(e->fresh_ns, sh->now));
	/* The stale windows, after fresh_for_s. */
	msg_pack_kv_uint(pk, "stale_while_revalidate_s",
	    (e->swr_ns - e->fresh_ns) / 1000000000ull);
	msg_pack_kv_uint(pk, "stale_if_error_s",
	    (e->sie_ns - e->fresh_ns) / 1000000000ull);
	msg_pack_kv_int(pk, "evict_in_s", secs(l->evict_ns, sh->now));
	msg_pack_kv_int(pk, "used_s_ago", -secs(l->used_ns, sh->now));
	msg_pack_kv_uint(pk, "body_bytes", e->body_len);
	msg_pack_kv_uint(pk, "charged_bytes", l->charge);
	printable(e->etag, e->etag_len, sh->text, sizeof(sh->text));
	msg_pack_kv_str(pk, "etag", sh->text);
	msg_pack_kv_bool(pk, "etag_made", (e->flags & CACHE_F_ETAG_MADE) != 0);
	/* The header lines, one per line. */
	{
		size_t i, k = 0;
		for (i = 0; i < e->headers_len && k + 2 < sizeof(sh->text);
		    i++) {
			char c = e->headers[i];
			if (c == '\r')
				continue;
			sh->text[k++] = c == '\n' || (c >= 0x20 && c < 0x7f) ?
			    c : '?';
		}
		sh->text[k] = '\0';
		msg_pack_kv_str(pk, "headers", sh->text);
	}
	sh->n++;
}

/* The count of entries under PATH first (the reply's array length),
 * then the entries. */
static void
count_listed(void *arg, const struct cache_listed *l)
{
	(void)l;
	(*(int *)arg)++;
}

static int
reply_show(struct store *st, const char *target, struct msg_out *o)
{
	const char *q = strchr(target, '?');
	size_t plen = q != NULL ? (size_t)(q - target) : strlen(target);
	struct show *sh;
	struct cache_figures f;
	int n = 0, rc;

	rc = cache_list(st, target, plen, q, q != NULL ? strlen(q) : 0,
	    SHOW_MAX, count_listed, &n);
	if (rc < 0)
		return reply_err(o, store_strerror(rc));
	if ((sh = calloc(1, sizeof(*sh))) == NULL)
		return -1;
	if (msg_out_init(o, 4) < 0) {
		free(sh);
		return -1;
	}
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_str(&o->pk, "path", target);
	msg_pack_str(&o->pk, "entries");
	msgpack_pack_array(&o->pk, (size_t)n);
	sh->pk = &o->pk;
	sh->now = store_now_ns();
	/* The same read again: a record stored in between would make the
	 * array's length wrong, so at most N are packed. */
	cache_list(st, target, plen, q, q != NULL ? strlen(q) : 0, n,
	    pack_listed, sh);
	while (sh->n < n) {
		msgpack_pack_map(&o->pk, 1);
		msg_pack_kv_str(&o->pk, "kind", "gone");
		sh->n++;
	}
	msg_pack_kv_uint(&o->pk, "entries_total",
	    cache_figures(st, &f) == 0 ? f.entries : 0);
	free(sh);
	return 0;
}

int
control_reply_cache(const msgpack_object *req, struct msg_out *o)
{
	char action[16], arg[PATH_ARG_MAX + 1], err[200];
	struct store *st = NULL;
	int rc;

	if (msg_get_str(req, "action", action, sizeof(action)) < 0)
		return reply_err(o, "cache needs an action (purge or show)");
	if (strcmp(action, "purge") == 0) {
		if (msg_get(req, "prefix") == NULL)
			snprintf(arg, sizeof(arg), "/");
		else if (msg_get_str(req, "prefix", arg, sizeof(arg)) < 0)
			return reply_err(o, "'prefix' must be a string of at "
			    "most 8192 bytes");
	} else if (strcmp(action, "show") == 0) {
		if (msg_get_str(req, "path", arg, sizeof(arg)) < 0)
			return reply_err(o, "cache show needs a path (at most "
			    "8192 bytes)");
	} else {
		return reply_err(o, "cache: the action is purge or show");
	}
	if (arg[0] != '/') {
		snprintf(err, sizeof(err), "cache %s: '%.64s' is not a path "
		    "(it starts with '/')", action, arg);
		return reply_err(o, err);
	}
	if ((rc = store_master_open(&st)) < 0) {
		snprintf(err, sizeof(err), "shared store: %s",
		    store_strerror(rc));
		return reply_err(o, err);
	}
	if (action[0] == 's') {
		rc = reply_show(st, arg, o);
		store_close(st);
		return rc;
	}
	rc = cache_purge(st, arg, strlen(arg));
	store_close(st);
	if (rc < 0) {
		snprintf(err, sizeof(err), "purge: %s", store_strerror(rc));
		return reply_err(o, err);
	}
	if (msg_out_init(o, 3) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_str(&o->pk, "prefix", arg);
	msg_pack_kv_uint(&o->pk, "purged", (uint64_t)rc);
	return 0;
}

void
control_pack_cache_stats(msgpack_packer *pk, const struct counters *ct)
{
	uint64_t hits = 0, misses = 0, stale = 0, bypass = 0, collapsed = 0;
	uint64_t too_big = 0, refreshes = 0, errors = 0, served;
	struct cache_figures f;
	struct store *st = NULL;
	bool have = false;
	unsigned i;

	for (i = 0; ct != NULL && i < ct->nslots; i++) {
		/* Every slot, live or not: a slot's counts are never reset
		 * (a new worker in it adds on), so the sums only grow, across
		 * reloads and restarts. */
		const struct worker_counters *w = &ct->slot[i];
		hits += COUNTER_GET(&w->cache_hits);
		misses += COUNTER_GET(&w->cache_misses);
		stale += COUNTER_GET(&w->cache_stale);
		bypass += COUNTER_GET(&w->cache_bypass);
		collapsed += COUNTER_GET(&w->cache_collapsed);
		too_big += COUNTER_GET(&w->cache_too_big);
		refreshes += COUNTER_GET(&w->cache_refreshes);
		errors += COUNTER_GET(&w->cache_errors);
	}
	memset(&f, 0, sizeof(f));
	if (store_master_open(&st) == 0) {
		have = cache_figures(st, &f) == 0;
		store_close(st);
	}
	served = hits + stale + misses;
	msg_pack_str(pk, "cache");
	msgpack_pack_map(pk, 19);
	msg_pack_kv_uint(pk, "hits", hits);
	msg_pack_kv_uint(pk, "misses", misses);
	msg_pack_kv_uint(pk, "stale", stale);
	msg_pack_kv_uint(pk, "bypass", bypass);
	/* Of the requests the cache could answer: hits and stale ones. */
	msg_pack_str(pk, "hit_ratio");
	msgpack_pack_double(pk, served > 0 ? (double)(hits + stale) /
	    (double)served : 0.0);
	msg_pack_kv_uint(pk, "collapsed_waits", collapsed);
	msg_pack_kv_uint(pk, "too_big", too_big);
	msg_pack_kv_uint(pk, "refreshes", refreshes);
	msg_pack_kv_uint(pk, "errors", errors);
	msg_pack_kv_bool(pk, "store_read", have);
	msg_pack_kv_uint(pk, "entries", f.entries);
	msg_pack_kv_uint(pk, "records", f.records);
	msg_pack_kv_uint(pk, "bytes", f.bytes);
	msg_pack_kv_uint(pk, "budget_bytes", f.budget);
	msg_pack_kv_uint(pk, "stored", f.stored);
	msg_pack_kv_uint(pk, "evictions", f.evicted_expired + f.evicted_lru);
	msg_pack_kv_uint(pk, "evicted_expired", f.evicted_expired);
	msg_pack_kv_uint(pk, "evicted_lru", f.evicted_lru);
	msg_pack_kv_uint(pk, "invalidated", f.invalidated);
}
