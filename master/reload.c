#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "listeners.h"
#include "log.h"
#include "master.h"
#include "msg.h"
#include "notify.h"
#include "reload.h"
#include "stats.h"
#include "supervise.h"

/* Settings a running master cannot take over at reload: the files it
 * holds open or that others find it by. */
static int
immutable_changed(const struct config *a, const struct config *b,
    char *err, size_t errlen)
{
	const char *what = NULL;

#define DIFF(x, y) ((x) == NULL ? (y) != NULL : (y) == NULL || strcmp(x, y))
	if (DIFF(a->server.control_socket, b->server.control_socket))
		what = "server.control_socket";
	else if (DIFF(a->server.pid_file, b->server.pid_file))
		what = "server.pid_file";
	else if (DIFF(a->server.state_path, b->server.state_path) ||
	    a->server.state_max_mb != b->server.state_max_mb)
		what = "server.state";
	else if (a->server.has_admin != b->server.has_admin ||
	    (a->server.has_admin && strcmp(a->server.admin.text,
	    b->server.admin.text) != 0))
		what = "server.admin";
#undef DIFF
	if (what == NULL)
		return 0;
	snprintf(err, errlen, "%s: %s cannot change at reload (restart, or "
	    "upgrade, to change it)", b->file, what);
	return -1;
}

static void
reply_simple(struct master *m, bool ok, const char *error)
{
	struct msg_out o;

	memset(&o, 0, sizeof(o));
	if (msg_out_init(&o, ok ? 1 : 2) < 0)
		return;
	msg_pack_kv_bool(&o.pk, "ok", ok);
	if (!ok)
		msg_pack_kv_str(&o.pk, "error", error);
	control_complete(m->ctl, &o);
}

int
reload_begin(struct master *m, char *err, size_t errlen)
{
	struct config *nc = NULL;
	struct master_slot *next = NULL;
	struct stats_gen *mg;
	unsigned i, n;
	size_t j;

	if (m->state != MASTER_RUNNING || m->upgraded) {
		snprintf(err, errlen, "the master is stopping");
		return -1;
	}
	if (m->op != MASTER_OP_NONE) {
		if (m->op == MASTER_OP_RELOAD)
			snprintf(err, errlen, "a reload is already in progress "
			    "(generation %u starting); nothing was done: run "
			    "the reload again once it ends", m->generation + 1);
		else
			snprintf(err, errlen, "an upgrade is in progress; "
			    "nothing was done: reload once it ends");
		return -1;
	}
	notify_reloading();
	log_info("reload: reading %s", m->cfg->file);
	if (config_load(m->cfg->file, m->cfg->prefix, &nc, err, errlen) < 0)
		goto refuse;
	if (immutable_changed(m->cfg, nc, err, errlen) < 0)
		goto refuse;
	n = nc->server.workers;
	if (supervise_counters_free(m) < n) {
		snprintf(err, errlen, "too many generations still draining; "
		    "retry when they are gone");
		goto refuse;
	}
	for (j = 0; j < nc->server.nlisten; j++)
		if (listeners_need(m, &nc->server.listen[j].addr, n, err,
		    errlen) < 0)
			goto refuse;
	next = calloc(n, sizeof(*next));
	if (next == NULL || (mg = stats_gen_new(m->stats, nc)) == NULL) {
		snprintf(err, errlen, "cannot map the metrics of the new "
		    "generation: %s", strerror(errno));
		free(next);
		goto refuse;
	}
	m->next = next;
	m->nnext = n;
	m->next_cfg = nc;
	m->op = MASTER_OP_RELOAD;
	m->op_deadline = master_now_ms() + MASTER_READY_MS;
	m->op_err[0] = '\0';
	for (i = 0; i < n; i++) {
		supervise_slot_init(m, &next[i], i);	/* counted above */
		next[i].mg = mg;
		if (supervise_spawn(m, &next[i], nc, m->generation + 1) < 0) {
			snprintf(m->op_err, sizeof(m->op_err), "cannot start "
			    "worker %u", i);
			break;
		}
	}
	log_info("reload: generation %u starting (%u workers)",
	    m->generation + 1, n);
	return 0;
refuse:
	stats_reloaded(m->stats, false);
	config_free(nc);
	listeners_prune(m);
	log_error("reload refused: %s", err);
	notify_send("READY=1\nSTATUS=reload refused: %s", err);
	return -1;
}

void
reload_run_pending(struct master *m)
{
	char err[1024];

	if (!m->reload_pending || m->op != MASTER_OP_NONE)
		return;
	m->reload_pending = false;
	log_info("reload: the SIGHUP received during the last operation");
	if (reload_begin(m, err, sizeof(err)) < 0)
		log_warn("SIGHUP: %s", err);
}

void
reload_finish(struct master *m, bool ok, const char *why)
{
	char text[512];
	struct msg_out o;
	unsigned draining;

	stats_reloaded(m->stats, ok);
	if (ok) {
		supervise_retire(m, m->slots, m->nslots, false);
		free(m->slots);
		m->slots = m->next;
		m->nslots = m->nnext;
		config_free(m->cfg);
		m->cfg = m->next_cfg;
		m->generation++;
		log_info("reload: generation %u serving; the previous one "
		    "drains (%u workers)", m->generation, m->nold);
		warn_cert_expiry(m->cfg);
	} else {
		supervise_retire(m, m->next, m->nnext, true);
		free(m->next);
		config_free(m->next_cfg);
		snprintf(text, sizeof(text), "reload failed: %s; generation "
		    "%u keeps serving", why, m->generation);
		log_error("%s", text);
	}
	m->next = NULL;
	m->nnext = 0;
	m->next_cfg = NULL;
	m->op = MASTER_OP_NONE;
	listeners_prune(m);
	draining = m->nold;
	if (!ok) {
		reply_simple(m, false, text);
		master_notify(m, "reload failed");
	} else {
		memset(&o, 0, sizeof(o));
		if (msg_out_init(&o, 4) == 0) {
			msg_pack_kv_bool(&o.pk, "ok", true);
			msg_pack_kv_uint(&o.pk, "generation", m->generation);
			msg_pack_kv_uint(&o.pk, "workers", m->nslots);
			msg_pack_kv_uint(&o.pk, "draining", draining);
			control_complete(m->ctl, &o);
		}
		master_notify(m, "reloaded");
	}
	reload_run_pending(m);
}

void
reload_tick(struct master *m, uint64_t now)
{
	if (m->op != MASTER_OP_RELOAD)
		return;
	if (m->op_err[0] != '\0')
		reload_finish(m, false, m->op_err);
	else if (supervise_all_ready(m, m->next, m->nnext))
		reload_finish(m, true, NULL);
	else if (now >= m->op_deadline)
		reload_finish(m, false, "the new workers did not "
		    "report ready within 10 s");
}

void
reload_sighup(struct master *m)
{
	char err[1024];

	if (m->op != MASTER_OP_NONE && m->state == MASTER_RUNNING &&
	    !m->upgraded) {
		/* The file may have changed since the running operation read
		 * it: one more reload, later. */
		log_info("SIGHUP received during a%s: reloading after the %s "
		    "in progress", m->op == MASTER_OP_RELOAD ? " reload" :
		    "n upgrade", m->op == MASTER_OP_RELOAD ? "reload" :
		    "upgrade");
		m->reload_pending = true;
		return;
	}
	log_info("SIGHUP received: reloading");
	if (reload_begin(m, err, sizeof(err)) < 0)
		log_warn("SIGHUP: %s", err);
}
