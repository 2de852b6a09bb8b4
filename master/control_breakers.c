/*
 * control_breakers: the control server's `breakers` command: every
 * instance of every service of the serving configuration with its
 * breaker and health, from the store (shm/breaker.h: breaker_view) and
 * the master's own health checks (the last check of each instance);
 * `reset` closes breakers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control-int.h"
#include "health.h"
#include "log.h"
#include "master.h"
#include "msg.h"
#include "../shm/breaker.h"
#include "../shm/store.h"

#define NS_PER_MS	1000000ull

static uint64_t
ago_ms(uint64_t then_ns, uint64_t now_ns)
{
	return then_ns != 0 && then_ns <= now_ns ? (now_ns - then_ns) /
	    NS_PER_MS : 0;
}

static void
pack_breaker(msgpack_packer *pk, const struct cfg_service *sc,
    const struct breaker_view *v, uint64_t now)
{
	const struct breaker *b = &v->b;
	char err[32];

	msg_pack_kv_str(pk, "breaker", sc->breaker.enabled ?
	    breaker_state_name(b->state) : "off");
	msg_pack_kv_uint(pk, "failures", b->failures);
	msg_pack_kv_uint(pk, "opens", b->opens);
	if (b->last_err == BREAKER_ERR_STATUS)
		snprintf(err, sizeof(err), "status %u", b->last_status);
	else
		snprintf(err, sizeof(err), "%s", breaker_err_name(b->last_err));
	msg_pack_kv_str(pk, "last_error", b->last_err != BREAKER_ERR_NONE ?
	    err : NULL);
	msg_pack_kv_uint(pk, "last_error_ago_ms", ago_ms(b->last_err_ns, now));
	msg_pack_str(pk, "since_ago_ms");
	if (b->since_ns == 0)
		msgpack_pack_nil(pk);	/* closed since before any record */
	else
		msgpack_pack_uint64(pk, ago_ms(b->since_ns, now));
	msg_pack_kv_uint(pk, "open_left_ms", breaker_open_left_ns(b, now) /
	    NS_PER_MS);
	msg_pack_kv_uint(pk, "probes", b->state == BREAKER_HALF_OPEN ?
	    b->probes : 0);
}

static void
pack_health(msgpack_packer *pk, const struct cfg_service *sc,
    const struct breaker_view *v, const struct health_checks_last *last,
    uint64_t now, uint64_t now_ms)
{
	const struct health *h = &v->h;

	msg_pack_kv_str(pk, "health", sc->health.enabled ?
	    health_state_name(v->has_health ? h->state : HEALTH_UNKNOWN) :
	    "off");
	msg_pack_kv_bool(pk, "health_passive", h->passive != 0);
	msg_pack_kv_bool(pk, "health_checked", h->checked != 0);
	msg_pack_kv_uint(pk, "health_since_ago_ms", ago_ms(h->since_ns, now));
	msg_pack_kv_uint(pk, "checks_passed", h->ok_run);
	msg_pack_kv_uint(pk, "checks_failed", h->fail_run);
	msg_pack_str(pk, "last_check");
	if (!last->checked) {
		msgpack_pack_nil(pk);
		return;
	}
	msgpack_pack_map(pk, 3);
	msg_pack_kv_bool(pk, "ok", last->ok);
	msg_pack_kv_str(pk, "result", last->what);
	msg_pack_kv_uint(pk, "ago_ms", last->at_ms <= now_ms ?
	    now_ms - last->at_ms : 0);
}

static int
pack_service(struct master *m, struct store *st, msgpack_packer *pk,
    const struct cfg_service *sc, uint64_t now, uint64_t now_ms)
{
	struct health_checks_last last;
	struct breaker_view v;
	struct breaker_svc sv;
	size_t j;
	int rc;

	if ((rc = breaker_svc_get(st, sc->name, &sv)) < 0)
		return rc;
	msgpack_pack_map(pk, 7);
	msg_pack_kv_str(pk, "name", sc->name);
	msg_pack_kv_bool(pk, "breaker", sc->breaker.enabled);
	msg_pack_kv_bool(pk, "health", sc->health.enabled);
	msg_pack_kv_uint(pk, "max_inflight", sc->max_inflight);
	msg_pack_kv_uint(pk, "retries_refused", sv.retries_refused);
	msg_pack_kv_uint(pk, "shed", sv.shed);
	msg_pack_str(pk, "instances");
	msgpack_pack_array(pk, sc->ninstances);
	for (j = 0; j < sc->ninstances; j++) {
		if ((rc = breaker_view(st, sc->name, sc->instances[j].text,
		    &v)) < 0)
			return rc;
		health_checks_last(m->health, sc->name, sc->instances[j].text,
		    &last);
		msgpack_pack_map(pk, 16);
		msg_pack_kv_str(pk, "address", sc->instances[j].text);
		pack_breaker(pk, sc, &v, now);
		pack_health(pk, sc, &v, &last, now, now_ms);
	}
	return 0;
}

/* Reset the breakers SPEC names ("SERVICE" or "SERVICE/ADDRESS"). Number
 * reset, or -1 with the reason in err. */
static int
reset(struct master *m, struct store *st, const char *spec, char *err,
    size_t errlen)
{
	const struct config *cfg = m->cfg;
	const char *slash = strchr(spec, '/'), *inst = NULL;
	char svc[BREAKER_KEY_MAX], key[BREAKER_KEY_MAX];
	size_t n = slash != NULL ? (size_t)(slash - spec) : strlen(spec), j;
	int i, k, rc, done = 0, found = 0;

	if (n == 0 || n >= sizeof(svc)) {
		snprintf(err, errlen, "--reset needs SERVICE or "
		    "SERVICE/ADDRESS");
		return -1;
	}
	memcpy(svc, spec, n);
	svc[n] = '\0';
	if (slash != NULL)
		inst = slash + 1;
	if ((i = config_service_index(cfg, svc)) < 0) {
		snprintf(err, errlen, "no service '%.64s'", svc);
		return -1;
	}
	for (j = 0; j < cfg->services[i].ninstances; j++) {
		const char *a = cfg->services[i].instances[j].text;

		if (inst != NULL && strcmp(a, inst) != 0)
			continue;
		found++;
		if ((k = breaker_key(svc, a, key, sizeof(key))) < 0)
			continue;
		if ((rc = breaker_reset(st, key, (size_t)k)) < 0) {
			snprintf(err, errlen, "shared store: %s",
			    store_strerror(rc));
			return -1;
		}
		if (rc == 1)
			log_info("breaker %s/%s: reset by gwctl", svc, a);
		done++;
	}
	if (found == 0) {
		snprintf(err, errlen, "service '%.64s' has no instance "
		    "'%.64s'", svc, inst);
		return -1;
	}
	return done;
}

int
control_reply_breakers(struct master *m, const msgpack_object *req,
    struct msg_out *o)
{
	const struct config *cfg = m->cfg;
	const msgpack_object *r = msg_get(req, "reset");
	char spec[2 * BREAKER_KEY_MAX], err[256] = "";
	uint64_t now = store_now_ns(), now_ms = master_now_ms();
	struct store *st = NULL;
	int rc, nreset = -1;
	size_t i;

	if (r != NULL && r->type != MSGPACK_OBJECT_NIL &&
	    msg_get_str(req, "reset", spec, sizeof(spec)) < 0)
		return control_reply_error(o, "'reset' must be SERVICE or "
		    "SERVICE/ADDRESS");
	if ((rc = store_master_open(&st)) < 0)
		return control_reply_error(o, "shared store: %s",
		    store_strerror(rc));
	if (r != NULL && r->type != MSGPACK_OBJECT_NIL &&
	    (nreset = reset(m, st, spec, err, sizeof(err))) < 0) {
		store_close(st);
		return control_reply_error(o, "%s", err);
	}
	if (msg_out_init(o, nreset >= 0 ? 3 : 2) < 0) {
		store_close(st);
		return -1;
	}
	msg_pack_kv_bool(&o->pk, "ok", true);
	if (nreset >= 0)
		msg_pack_kv_uint(&o->pk, "reset", (uint64_t)nreset);
	msg_pack_str(&o->pk, "services");
	msgpack_pack_array(&o->pk, cfg->nservices);
	for (i = 0; i < cfg->nservices; i++)
		if ((rc = pack_service(m, st, &o->pk, &cfg->services[i], now,
		    now_ms)) < 0) {
			store_close(st);
			msg_out_free(o);
			memset(o, 0, sizeof(*o));
			return control_reply_error(o, "shared store: %s",
			    store_strerror(rc));
		}
	store_close(st);
	return 0;
}
