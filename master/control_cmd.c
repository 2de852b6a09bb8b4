#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control-int.h"
#include "master.h"
#include "msg.h"
#include "reload.h"
#include "upgrade.h"
#include "../worker/tls.h"
#include "control_limits.h"
#include "control_cache.h"

/* Printable, bounded copy of a client-supplied name for messages. */
static void
safe_name(const msgpack_object *o, char *buf, size_t len)
{
	size_t i, n;

	if (o == NULL || o->type != MSGPACK_OBJECT_STR) {
		snprintf(buf, len, "?");
		return;
	}
	n = o->via.str.size < len - 1 ? o->via.str.size : len - 1;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)o->via.str.ptr[i];

		buf[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	buf[n] = '\0';
}

int
control_reply_error(struct msg_out *o, const char *fmt, ...)
{
	char text[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (msg_out_init(o, 2) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", false);
	msg_pack_kv_str(&o->pk, "error", text);
	return 0;
}

static void
pack_worker(msgpack_packer *pk, const struct master *m,
    const struct master_slot *s, uint64_t now)
{
	const struct worker_counters *wc = NULL;
	static const char *const cls[] = { "other", "1xx", "2xx", "3xx",
	    "4xx", "5xx" };
	int i;

	if (m->counters != NULL && s->index < m->counters->nslots)
		wc = &m->counters->slot[s->index];
	msgpack_pack_map(pk, 13);
	msg_pack_kv_uint(pk, "slot", s->num);
	msg_pack_kv_int(pk, "pid", s->pid);
	msg_pack_kv_uint(pk, "generation", s->generation);
	msg_pack_kv_uint(pk, "uptime_s",
	    s->pid > 0 ? (now - s->started_ms) / 1000 : 0);
	msg_pack_kv_uint(pk, "restarts", s->restarts);
	msg_pack_kv_uint(pk, "conns", wc ? COUNTER_GET(&wc->conns_open) : 0);
	msg_pack_kv_uint(pk, "conns_total",
	    wc ? COUNTER_GET(&wc->conns_total) : 0);
	msg_pack_kv_uint(pk, "requests", wc ? COUNTER_GET(&wc->requests) : 0);
	msg_pack_kv_uint(pk, "tls_handshake_failures",
	    wc ? COUNTER_GET(&wc->tls_handshake_failures) : 0);
	msg_pack_kv_uint(pk, "tls_alloc_cached",
	    wc ? COUNTER_GET(&wc->tls_alloc_cached) : 0);
	msg_pack_str(pk, "status");
	msgpack_pack_map(pk, 6);
	for (i = 0; i < 6; i++)
		msg_pack_kv_uint(pk, cls[i],
		    wc ? COUNTER_GET(&wc->status[i]) : 0);
	msg_pack_kv_bool(pk, "draining",
	    (wc && COUNTER_GET(&wc->draining) != 0) ||
	    m->state != MASTER_RUNNING);
	msg_pack_kv_bool(pk, "ready", s->pid > 0 && wc &&
	    COUNTER_GET(&wc->ready) != 0);
}

/* One generation's line of `status`: its workers and open connections. */
static void
pack_gen(msgpack_packer *pk, const struct master *m, unsigned gen,
    const char *state, const struct master_slot *s, unsigned n)
{
	uint64_t conns = 0;
	unsigned i, live = 0;

	for (i = 0; i < n; i++) {
		if (s[i].generation != gen || s[i].pid <= 0)
			continue;
		live++;
		if (s[i].index < m->counters->nslots)
			conns += COUNTER_GET(
			    &m->counters->slot[s[i].index].conns_open);
	}
	msgpack_pack_map(pk, 4);
	msg_pack_kv_uint(pk, "generation", gen);
	msg_pack_kv_str(pk, "state", state);
	msg_pack_kv_uint(pk, "workers", live);
	msg_pack_kv_uint(pk, "conns", conns);
}

/* The certificates of the serving config with their expiry. */
static void
pack_certs(msgpack_packer *pk, const struct config *cfg)
{
	struct tls_cert_info ci[32];
	struct tls_server *ts = NULL;
	char why[512];
	time_t now = time(NULL);
	size_t i, n = 0;

	if (tls_server_new(cfg, &ts, why, sizeof(why)) == 0)
		n = tls_server_certs(ts, ci, sizeof(ci) / sizeof(ci[0]));
	msg_pack_str(pk, "certificates");
	msgpack_pack_array(pk, n);
	for (i = 0; i < n; i++) {
		msgpack_pack_map(pk, 4);
		msg_pack_kv_str(pk, "tls", ci[i].entry);
		msg_pack_kv_str(pk, "file", ci[i].file);
		msg_pack_kv_int(pk, "not_after", (int64_t)ci[i].not_after);
		msg_pack_kv_int(pk, "days_left", (int64_t)(ci[i].not_after -
		    now) / 86400);
	}
	tls_server_free(ts);
}

static int
reply_status(struct master *m, struct msg_out *o)
{
	uint64_t now = master_now_ms();
	static const char *const states[] = {
		[MASTER_RUNNING] = "running", [MASTER_DRAINING] = "draining",
		[MASTER_STOPPING] = "stopping",
	};
	static const char *const ops[] = {
		[MASTER_OP_NONE] = "", [MASTER_OP_RELOAD] = "reload",
		[MASTER_OP_CHECK] = "upgrade: check",
		[MASTER_OP_HANDOFF] = "upgrade: waiting for the new master",
	};
	unsigned gens[64], ngen = 0, i, k;

	/* Older generations still draining, oldest first. */
	for (i = 0; i < m->nold; i++) {
		for (k = 0; k < ngen && gens[k] != m->old[i].generation; k++)
			;
		if (k == ngen && ngen < 64)
			gens[ngen++] = m->old[i].generation;
	}
	for (i = 1; i < ngen; i++)
		for (k = i; k > 0 && gens[k - 1] > gens[k]; k--) {
			unsigned t = gens[k];

			gens[k] = gens[k - 1];
			gens[k - 1] = t;
		}
	if (msg_out_init(o, 10) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", true);
	pack_certs(&o->pk, m->cfg);
	msg_pack_kv_int(&o->pk, "pid", m->pid);
	msg_pack_kv_uint(&o->pk, "generation", m->generation);
	msg_pack_kv_uint(&o->pk, "uptime_s", (now - m->start_ms) / 1000);
	msg_pack_kv_str(&o->pk, "state", m->upgraded ? "upgraded, draining" :
	    states[m->state]);
	msg_pack_kv_str(&o->pk, "operation", ops[m->op]);
	msg_pack_str(&o->pk, "generations");
	msgpack_pack_array(&o->pk, ngen + 1 + (m->nnext > 0));
	for (i = 0; i < ngen; i++)
		pack_gen(&o->pk, m, gens[i], "draining", m->old, m->nold);
	pack_gen(&o->pk, m, m->generation, m->state == MASTER_RUNNING ?
	    "serving" : "draining", m->slots, m->nslots);
	if (m->nnext > 0)
		pack_gen(&o->pk, m, m->generation + 1, "starting", m->next,
		    m->nnext);
	msg_pack_str(&o->pk, "workers");
	msgpack_pack_array(&o->pk, m->nslots);
	for (i = 0; i < m->nslots; i++)
		pack_worker(&o->pk, m, &m->slots[i], now);
	/* Workers of other generations: older ones draining (with the
	 * connections they still hold), a reload's next one starting. */
	msg_pack_str(&o->pk, "other_workers");
	msgpack_pack_array(&o->pk, m->nold + m->nnext);
	for (i = 0; i < m->nold; i++)
		pack_worker(&o->pk, m, &m->old[i], now);
	for (i = 0; i < m->nnext; i++)
		pack_worker(&o->pk, m, &m->next[i], now);
	return 0;
}

/* reload: 1 = started (the reply comes from control_complete). */
static int
reply_reload(struct master *m, struct msg_out *o)
{
	char err[1024];

	if (reload_begin(m, err, sizeof(err)) == 0)
		return 1;
	if (msg_out_init(o, 2) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", false);
	msg_pack_kv_str(&o->pk, "error", err);
	return 0;
}

/* upgrade [binary]: 1 = started. */
static int
reply_upgrade(struct master *m, const msgpack_object *req,
    struct msg_out *o)
{
	const msgpack_object *b = msg_get(req, "binary");
	char bin[4096], err[1024];

	bin[0] = '\0';
	if (b != NULL && b->type != MSGPACK_OBJECT_NIL &&
	    msg_get_str(req, "binary", bin, sizeof(bin)) < 0)
		return control_reply_error(o, "'binary' must be a path string");
	if (upgrade_begin(m, bin[0] != '\0' ? bin : NULL, err,
	    sizeof(err)) == 0)
		return 1;
	if (msg_out_init(o, 3) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", false);
	msg_pack_kv_str(&o->pk, "error", err);
	msg_pack_kv_str(&o->pk, "step", "check");
	return 0;
}

/* reopen: the master's error log, then every worker's error and access
 * logs, after a rotation (what SIGUSR1 does too). */
static int
reply_reopen(struct master *m, struct msg_out *o)
{
	unsigned n;

	if (master_reopen(m, "gwctl reopen", &n) < 0)
		return control_reply_error(o, "reopening the error log %s: "
		    "%s (%u workers signalled)", m->cfg->server.error_log,
		    strerror(errno), n);
	if (msg_out_init(o, 3) < 0)
		return -1;
	msg_pack_kv_bool(&o->pk, "ok", true);
	msg_pack_kv_str(&o->pk, "error_log", m->cfg->server.error_log);
	msg_pack_kv_uint(&o->pk, "workers_signalled", n);
	return 0;
}

int
control_dispatch(struct master *m, const msgpack_object *req,
    struct msg_out *o, int *stop)
{
	const msgpack_object *cmd = msg_get(req, "cmd");
	char name[64];
	bool now = false;

	if (cmd == NULL || cmd->type != MSGPACK_OBJECT_STR)
		return control_reply_error(o, "request has no 'cmd' string");
	safe_name(cmd, name, sizeof(name));
	if (msg_str_eq(cmd, "status"))
		return reply_status(m, o);
	if (msg_str_eq(cmd, "limits"))	/* ratelimit */
		return control_reply_limits(req, o);
	if (msg_str_eq(cmd, "stats"))
		return control_reply_stats(m, req, o);
	if (msg_str_eq(cmd, "routes"))
		return control_reply_routes(m->cfg, o);
	if (msg_str_eq(cmd, "explain"))
		return control_reply_explain(m->cfg, req, o);
	if (msg_str_eq(cmd, "reopen"))
		return reply_reopen(m, o);
	if (msg_str_eq(cmd, "breakers"))
		return control_reply_breakers(m, req, o);
	if (msg_str_eq(cmd, "cache"))
		return control_reply_cache(req, o);
	if (msg_str_eq(cmd, "reload"))
		return reply_reload(m, o);
	if (msg_str_eq(cmd, "upgrade"))
		return reply_upgrade(m, req, o);
	if (msg_str_eq(cmd, "stop")) {
		if (msg_get(req, "now") != NULL &&
		    msg_get_bool(req, "now", &now) < 0)
			return control_reply_error(o, "'now' must be a "
			    "boolean");
		*stop = now ? 2 : 1;
		if (msg_out_init(o, 3) < 0)
			return -1;
		msg_pack_kv_bool(&o->pk, "ok", true);
		msg_pack_kv_int(&o->pk, "pid", m->pid);
		msg_pack_kv_str(&o->pk, "stop", now ? "fast" : "graceful");
		return 0;
	}
	return control_reply_error(o, "unknown command '%s'", name);
}

