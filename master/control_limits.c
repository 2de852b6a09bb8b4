#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control_limits.h"
#include "msg.h"
#include "../policies/ratelimit.h"
#include "../shm/store.h"

#define KEY_MAX		1024	/* gwctl limits KEY */
#define FOUND_MAX	64	/* buckets shown for one key */

static void
pack_bucket(msgpack_packer *pk, const struct ratelimit_view *v)
{
	msgpack_pack_map(pk, 8);
	msg_pack_kv_str(pk, "tier", v->tier);
	msg_pack_kv_str(pk, "by", v->by);
	msg_pack_kv_uint(pk, "tokens", v->tokens);
	msg_pack_kv_uint(pk, "tokens_micro", v->tokens_micro);
	msg_pack_kv_uint(pk, "burst", v->burst);
	msg_pack_kv_uint(pk, "rate", v->rate);
	msg_pack_kv_uint(pk, "per_s", v->per_s);
	msg_pack_kv_uint(pk, "full_in_ms", v->full_in_ms);
}

/* How full the store is and how many write txns it has seen: for an
 * operator watching the map fill, and for make bench (write txns per
 * request). */
static void
pack_figures(msgpack_packer *pk, const struct store_figures *f)
{
	msg_pack_str(pk, "store");
	msgpack_pack_map(pk, 6);
	msg_pack_kv_uint(pk, "map_bytes", f->map_bytes);
	msg_pack_kv_uint(pk, "page_bytes", f->page_size);
	msg_pack_kv_uint(pk, "free_pages", f->free_pages);
	msg_pack_kv_uint(pk, "reserve_pages", f->reserve_pages);
	msg_pack_kv_uint(pk, "headroom_pages", f->headroom_pages);
	msg_pack_kv_uint(pk, "write_txns", f->last_txnid);
}

int
control_reply_limits(const msgpack_object *req, struct msg_out *o)
{
	struct ratelimit_view *f = NULL;
	struct store *st = NULL;
	struct store_figures fig;
	char key[KEY_MAX + 1], err[160] = "";
	bool reset = false, fig_ok = false;
	int n = 0, i, rc, nreset = 0;

	if (msg_get_str(req, "key", key, sizeof(key)) < 0) {
		snprintf(err, sizeof(err), "limits needs a key (at most %d "
		    "bytes)", KEY_MAX);
		goto reply;
	}
	if (msg_get(req, "reset") != NULL &&
	    msg_get_bool(req, "reset", &reset) < 0) {
		snprintf(err, sizeof(err), "'reset' must be a boolean");
		goto reply;
	}
	f = calloc(FOUND_MAX, sizeof(*f));
	if (f == NULL)
		return -1;
	if ((rc = store_master_open(&st)) < 0) {
		snprintf(err, sizeof(err), "shared store: %s",
		    store_strerror(rc));
		goto reply;
	}
	n = ratelimit_find(st, key, strlen(key), store_now_ns(), f,
	    FOUND_MAX);
	if (n < 0) {
		snprintf(err, sizeof(err), "shared store: %s",
		    store_strerror(n));
		goto reply;
	}
	fig_ok = store_figures(st, &fig) == 0;
	for (i = 0; reset && i < n; i++) {
		rc = ratelimit_reset(st, &f[i]);
		if (rc < 0) {
			snprintf(err, sizeof(err), "reset: %s",
			    store_strerror(rc));
			goto reply;
		}
		nreset++;
	}
reply:
	store_close(st);
	if (err[0] != '\0') {
		free(f);
		if (msg_out_init(o, 2) < 0)
			return -1;
		msg_pack_kv_bool(&o->pk, "ok", false);
		msg_pack_kv_str(&o->pk, "error", err);
		return 0;
	}
	if (msg_out_init(o, fig_ok ? 5 : 4) < 0) {
		free(f);
		return -1;
	}
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_str(&o->pk, "key", key);
	msg_pack_kv_uint(&o->pk, "reset", (uint64_t)nreset);
	msg_pack_str(&o->pk, "buckets");
	msgpack_pack_array(&o->pk, (size_t)n);
	for (i = 0; i < n; i++)
		pack_bucket(&o->pk, &f[i]);
	if (fig_ok)
		pack_figures(&o->pk, &fig);
	free(f);
	return 0;
}
