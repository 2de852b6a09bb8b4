#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "master/msg.h"
#include "tools/gwctl_breakers.h"

static uint64_t
u(const msgpack_object *map, const char *key)
{
	int64_t v = 0;

	if (msg_get_int(map, key, &v) < 0 || v < 0)
		return 0;
	return (uint64_t)v;
}

/* "850ms", "12s", "3m05s", "2h10m" */
static const char *
dur(uint64_t ms, char *buf, size_t len)
{
	uint64_t s = ms / 1000;

	if (ms < 1000)
		snprintf(buf, len, "%" PRIu64 "ms", ms);
	else if (s < 60)
		snprintf(buf, len, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60,
		    s % 60);
	else
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600,
		    s % 3600 / 60);
	return buf;
}

static void
row(FILE *f, const char *svc, const msgpack_object *in)
{
	const msgpack_object *lc = msg_get(in, "last_check");
	char addr[96], br[32], state[48], err[64], last[96], h[32], hs[48];
	char d1[32], d2[32];
	bool passive = false, ok = false;

	if (msg_get_str(in, "address", addr, sizeof(addr)) < 0)
		snprintf(addr, sizeof(addr), "?");
	if (msg_get_str(in, "breaker", br, sizeof(br)) < 0)
		snprintf(br, sizeof(br), "?");
	if (strcmp(br, "open") == 0)
		snprintf(state, sizeof(state), "open (%s left)",
		    dur(u(in, "open_left_ms"), d1, sizeof(d1)));
	else if (strcmp(br, "half_open") == 0)
		snprintf(state, sizeof(state), "half-open (%" PRIu64
		    " probe%s)", u(in, "probes"), u(in, "probes") == 1 ?
		    "" : "s");
	else
		snprintf(state, sizeof(state), "%s", br);
	if (msg_get_str(in, "last_error", err, sizeof(err)) == 0)
		snprintf(last, sizeof(last), "%s, %s ago", err,
		    dur(u(in, "last_error_ago_ms"), d1, sizeof(d1)));
	else
		snprintf(last, sizeof(last), "-");
	if (msg_get_str(in, "health", h, sizeof(h)) < 0)
		snprintf(h, sizeof(h), "?");
	msg_get_bool(in, "health_passive", &passive);
	snprintf(hs, sizeof(hs), "%s%s", h, passive && strcmp(h, "down") == 0 ?
	    " (breaker)" : "");
	if (strcmp(br, "off") == 0 || msg_get(in, "since_ago_ms") == NULL ||
	    msg_get(in, "since_ago_ms")->type == MSGPACK_OBJECT_NIL)
		snprintf(d2, sizeof(d2), "-");
	else
		dur(u(in, "since_ago_ms"), d2, sizeof(d2));
	fprintf(f, "%-12s %-22s %-20s %-5" PRIu64 " %-24s %-7s %-16s", svc,
	    addr, state, u(in, "failures"), last, d2, hs);
	if (lc != NULL && lc->type == MSGPACK_OBJECT_MAP &&
	    msg_get_str(lc, "result", err, sizeof(err)) == 0) {
		msg_get_bool(lc, "ok", &ok);
		fprintf(f, " %s: %s, %s ago\n", ok ? "pass" : "fail", err,
		    dur(u(lc, "ago_ms"), d1, sizeof(d1)));
	} else {
		fprintf(f, " -\n");
	}
}

void
gwctl_breakers_print(FILE *f, const msgpack_object *map)
{
	const msgpack_object *ss = msg_get(map, "services"), *s, *is;
	char name[128];
	uint32_t i, j;

	if (msg_get(map, "reset") != NULL)
		fprintf(f, "reset %" PRIu64 " breaker%s: closed\n",
		    u(map, "reset"), u(map, "reset") == 1 ? "" : "s");
	fprintf(f, "%-12s %-22s %-20s %-5s %-24s %-7s %-16s %s\n", "SERVICE",
	    "INSTANCE", "BREAKER", "FAILS", "LAST ERROR", "SINCE", "HEALTH",
	    "LAST CHECK");
	for (i = 0; ss != NULL && ss->type == MSGPACK_OBJECT_ARRAY &&
	    i < ss->via.array.size; i++) {
		s = &ss->via.array.ptr[i];
		if (msg_get_str(s, "name", name, sizeof(name)) < 0)
			snprintf(name, sizeof(name), "?");
		is = msg_get(s, "instances");
		for (j = 0; is != NULL && is->type == MSGPACK_OBJECT_ARRAY &&
		    j < is->via.array.size; j++)
			row(f, name, &is->via.array.ptr[j]);
	}
	for (i = 0; ss != NULL && ss->type == MSGPACK_OBJECT_ARRAY &&
	    i < ss->via.array.size; i++) {
		s = &ss->via.array.ptr[i];
		if (u(s, "retries_refused") == 0 && u(s, "shed") == 0)
			continue;
		if (msg_get_str(s, "name", name, sizeof(name)) < 0)
			snprintf(name, sizeof(name), "?");
		fprintf(f, "%s: %" PRIu64 " retr%s refused by the retry budget, "
		    "%" PRIu64 " request%s shed by max_inflight\n", name,
		    u(s, "retries_refused"), u(s, "retries_refused") == 1 ?
		    "y" : "ies", u(s, "shed"), u(s, "shed") == 1 ? "" : "s");
	}
}
