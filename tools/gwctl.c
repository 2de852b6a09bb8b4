/*
 * gwctl: the operator's command line. Talks to the master's control socket
 * with framed msgpack maps (master/msg.h); every command prints a readable
 * table or, with --json, the master's reply as JSON, and exits non-zero
 * with a one-line reason on failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "master/config.h"
#include "master/msg.h"
#include "tools/gwctl_breakers.h"
#include "tools/gwctl_key.h"
#include "tools/gwctl_stats.h"
#include "tools/gwctl_token.h"

#define DEFAULT_CONF	"etc/portico.conf"
#define TIMEOUT_S	30
#define MAX_ARGS	64

struct ctx {
	const char *sock;		/* -s */
	const char *conf;		/* -c */
	const char *prefix;		/* -p */
	bool json;
	bool help;
	char sockbuf[4096];
	int argc;			/* the command's own arguments */
	char *argv[MAX_ARGS];
};

struct cmd {
	const char *name;
	const char *usage;
	const char *help;
	int (*run)(struct ctx *, const struct cmd *);
};

static int run_help(struct ctx *, const struct cmd *);
static int run_check(struct ctx *, const struct cmd *);
static int run_status(struct ctx *, const struct cmd *);
static int run_stop(struct ctx *, const struct cmd *);
static int run_reload(struct ctx *, const struct cmd *);
static int run_upgrade(struct ctx *, const struct cmd *);
static int run_limits(struct ctx *, const struct cmd *);
static int run_stats(struct ctx *, const struct cmd *);
static int run_routes(struct ctx *, const struct cmd *);
static int run_explain(struct ctx *, const struct cmd *);
static int run_breakers(struct ctx *, const struct cmd *);
static int run_cache(struct ctx *, const struct cmd *);
static int run_reopen(struct ctx *, const struct cmd *);
static int run_key(struct ctx *, const struct cmd *);
static int run_token(struct ctx *, const struct cmd *);

static const struct cmd cmds[] = {
	{ "help", "help [COMMAND]", "show commands, or one command's usage",
	    run_help },
	{ "check", "check -c FILE", "validate a configuration file offline "
	    "(no master needed)", run_check },
	{ "status", "status", "master pid, generation, uptime and each "
	    "worker's pid, generation, connections, requests", run_status },
	{ "stats", "stats [--route NAME] [--watch SECONDS [--count N]]",
	    "per route and per service: requests, rate over the last 10 s, "
	    "status classes, error rate, p50/p90/p99, cache hit ratio, "
	    "rate-limited and auth-refused counts, breakers; per worker "
	    "totals; --route: one route in detail; --watch: redraw like top",
	    run_stats },
	{ "reload", "reload", "validate the configuration and reload it; "
	    "the old one stays on error", run_reload },
	{ "upgrade", "upgrade [--binary PATH]", "zero-downtime binary "
	    "upgrade", run_upgrade },
	{ "routes", "routes", "the routing table with each route's policies",
	    run_routes },
	{ "explain", "explain METHOD PATH [-H 'Name: value']... [--ip ADDR]",
	    "which route matches, the rewritten path, the policies that "
	    "would run and the instance picked; nothing is sent",
	    run_explain },
	{ "breakers", "breakers [--reset SERVICE[/ADDRESS]]", "every "
	    "instance's breaker, failures, last error, health and last check; "
	    "--reset closes breakers", run_breakers },
	{ "limits", "limits [--reset] KEY", "rate-limit buckets of a key "
	    "(client address, route name or header value); --reset refills "
	    "them", run_limits },
	{ "cache", "cache purge [PREFIX] | cache show PATH[?QUERY]",
	    "remove cached responses under a path prefix (all without "
	    "one); show the entries of a path", run_cache },
	{ "reopen", "reopen", "reopen log files (after rotation)",
	    run_reopen },
	{ "key", "key hash [KEY] [--consumer NAME] [--tier T] [--scope S]..."
	    " | key check FILE", "print the keys-file entry for an API key "
	    "(KEY from standard input when absent); check a keys file "
	    "offline", run_key },
	{ "stop", "stop [--now]", "graceful stop (--now: fast stop)",
	    run_stop },
	{ "token", GWCTL_TOKEN_USAGE, "sign a test JWT with a PEM private key "
	    "or an HMAC secret file (no master needed)", run_token },
	{ NULL, NULL, NULL, NULL },
};

static void
usage(FILE *f)
{
	const struct cmd *c;

	fprintf(f, "usage: gwctl [-s SOCKET | -c CONFIG] [-p PREFIX] [--json] "
	    "COMMAND [ARGS]\n"
	    "  -s SOCKET  the master's control socket\n"
	    "  -c CONFIG  find the socket in this configuration (default "
	    DEFAULT_CONF ")\n"
	    "  -p PREFIX  directory relative paths of CONFIG resolve against\n"
	    "  --json     print the master's reply as JSON\n"
	    "commands:\n");
	for (c = cmds; c->name != NULL; c++) {
		if (strlen(c->usage) > 44)	/* too wide: help below */
			fprintf(f, "  %s\n  %-44s %s\n", c->usage, "",
			    c->help);
		else
			fprintf(f, "  %-44s %s\n", c->usage, c->help);
	}
}

static const struct cmd *
find_cmd(const char *name)
{
	const struct cmd *c;

	for (c = cmds; c->name != NULL; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

/* Resolve the control socket: -s, else the configuration's setting. */
static int
socket_path(struct ctx *x)
{
	struct config *cfg = NULL;
	const char *file = x->conf != NULL ? x->conf : DEFAULT_CONF;
	char err[1024];

	if (x->sock != NULL)
		return 0;
	if (config_load(file, x->prefix, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "gwctl: %s\n", err);
		return -1;
	}
	snprintf(x->sockbuf, sizeof(x->sockbuf), "%s",
	    cfg->server.control_socket);
	config_free(cfg);
	x->sock = x->sockbuf;
	return 0;
}

static int
connect_master(struct ctx *x)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = TIMEOUT_S };
	int fd;

	if (socket_path(x) < 0)
		return -1;
	if (strlen(x->sock) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "gwctl: socket path too long: %s\n", x->sock);
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", x->sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "gwctl: socket: %s\n", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, "gwctl: cannot connect to %s: %s%s\n", x->sock,
		    strerror(errno), errno == ENOENT || errno == ECONNREFUSED ?
		    " (is portico running?)" : "");
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Send a built request and read the reply. Returns 0 with in decoded (the
 * reply map, ok or not), or -1 after printing why.
 */
static int
transact(struct ctx *x, struct msg_out *req, struct msg_in *in)
{
	const char *frame;
	char *body = NULL;
	char err[128];
	size_t len = 0;
	int fd, n, rc = -1;

	msgpack_unpacked_init(&in->up);
	in->map = NULL;
	in->owned = NULL;
	n = msg_out_finish(req, &frame);
	if (n < 0) {
		fprintf(stderr, "gwctl: request too large\n");
		return -1;
	}
	fd = connect_master(x);
	if (fd < 0)
		return -1;
	if (msg_send(fd, frame, (size_t)n) < 0) {
		fprintf(stderr, "gwctl: sending to %s: %s\n", x->sock,
		    strerror(errno));
		goto done;
	}
	if (msg_recv(fd, &body, &len) < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			fprintf(stderr, "gwctl: no reply from %s within %d s\n",
			    x->sock, TIMEOUT_S);
		else if (errno == ECONNRESET)
			fprintf(stderr, "gwctl: %s closed the connection "
			    "without a reply\n", x->sock);
		else
			fprintf(stderr, "gwctl: reading from %s: %s\n",
			    x->sock, strerror(errno));
		goto done;
	}
	if (msg_decode(body, len, in, err, sizeof(err)) < 0) {
		fprintf(stderr, "gwctl: bad reply from %s: %s\n", x->sock, err);
		goto done;
	}
	/* The reply's strings point into body: it lives as long as in. */
	in->owned = body;
	body = NULL;
	rc = 0;
done:
	free(body);
	close(fd);
	return rc;
}

/* For a reply: print it as JSON when asked; report a refusal. Returns 0
 * when the master said ok, 1 otherwise. */
static int
reply_ok(struct ctx *x, const msgpack_object *map)
{
	char err[1024];
	bool ok = false;

	if (x->json) {
		msg_print_json(stdout, map);
		fputc('\n', stdout);
	}
	if (msg_get_bool(map, "ok", &ok) == 0 && ok)
		return 0;
	if (msg_get_str(map, "error", err, sizeof(err)) < 0)
		snprintf(err, sizeof(err), "the master refused the request");
	fprintf(stderr, "gwctl: %s\n", err);
	return 1;
}

static uint64_t
get_u(const msgpack_object *map, const char *key)
{
	int64_t v = 0;

	if (msg_get_int(map, key, &v) < 0 || v < 0)
		return 0;
	return (uint64_t)v;
}

static int64_t
get_i(const msgpack_object *map, const char *key)
{
	int64_t v = 0;

	if (msg_get_int(map, key, &v) < 0)
		return 0;
	return v;
}

static void
fmt_dur(uint64_t s, char *buf, size_t len)
{
	if (s >= 86400)
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400,
		    s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600,
		    s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60,
		    s % 60);
	else
		snprintf(buf, len, "%" PRIu64 "s", s);
}

static int
run_help(struct ctx *x, const struct cmd *self)
{
	const struct cmd *c;

	(void)self;
	if (x->argc == 0) {
		usage(stdout);
		return 0;
	}
	c = find_cmd(x->argv[0]);
	if (c == NULL) {
		fprintf(stderr, "gwctl: unknown command '%s'\n", x->argv[0]);
		return 1;
	}
	printf("usage: gwctl %s\n  %s\n", c->usage, c->help);
	return 0;
}

static int
run_check(struct ctx *x, const struct cmd *self)
{
	const char *file = x->conf != NULL ? x->conf : DEFAULT_CONF;
	struct config *cfg = NULL;
	char err[1024];

	(void)self;
	if (x->argc > 0) {
		fprintf(stderr, "gwctl: check takes no arguments (use -c "
		    "FILE)\n");
		return 1;
	}
	if (config_load(file, x->prefix, &cfg, err, sizeof(err)) < 0) {
		if (x->json) {
			printf("{\"ok\":false,\"error\":");
			/* err is our own text; keep JSON valid anyway. */
			fputc('"', stdout);
			for (char *p = err; *p != '\0'; p++) {
				if (*p == '"' || *p == '\\')
					fputc('\\', stdout);
				if ((unsigned char)*p >= 0x20)
					fputc(*p, stdout);
			}
			printf("\"}\n");
		}
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	config_free(cfg);
	if (x->json)
		printf("{\"ok\":true}\n");
	else
		printf("%s: ok\n", file);
	return 0;
}

static void
status_row(const msgpack_object *w, const char *gen_state)
{
	const msgpack_object *st = msg_get(w, "status");
	bool draining = false, ready = true;
	char up[32];

	msg_get_bool(w, "draining", &draining);
	msg_get_bool(w, "ready", &ready);
	fmt_dur(get_u(w, "uptime_s"), up, sizeof(up));
	printf("%-5" PRIu64 " %-8" PRIu64 " %-4" PRIu64 " %-7s "
	    "%-6" PRIu64 " %-9" PRIu64 " %-7" PRIu64 " %-7" PRIu64
	    " %-7" PRIu64 " %-8" PRIu64 " %s\n",
	    get_u(w, "slot"), get_u(w, "pid"), get_u(w, "generation"),
	    get_u(w, "pid") > 0 ? up : "-",
	    get_u(w, "conns"), get_u(w, "requests"), get_u(st, "2xx"),
	    get_u(st, "4xx"), get_u(st, "5xx"), get_u(w, "restarts"),
	    get_u(w, "pid") == 0 ? "down" : draining ? "draining" :
	    !ready ? "starting" : gen_state);
}

static int
run_status(struct ctx *x, const struct cmd *self)
{
	const msgpack_object *ws, *gs, *g;
	struct msg_out req;
	struct msg_in in;
	char up[32], state[32], op[64], gst[16];
	uint32_t i;
	int rc = 1;

	(void)self;
	if (x->argc > 0) {
		fprintf(stderr, "gwctl: status takes no arguments\n");
		return 1;
	}
	if (msg_out_init(&req, 1) < 0)
		return 1;
	msg_pack_kv_str(&req.pk, "cmd", "status");
	if (transact(x, &req, &in) < 0)
		goto done;
	rc = reply_ok(x, in.map);
	if (rc != 0 || x->json)
		goto done;
	if (msg_get_str(in.map, "state", state, sizeof(state)) < 0)
		snprintf(state, sizeof(state), "?");
	if (msg_get_str(in.map, "operation", op, sizeof(op)) < 0)
		op[0] = '\0';
	fmt_dur(get_u(in.map, "uptime_s"), up, sizeof(up));
	printf("master pid %" PRIu64 ", generation %" PRIu64 ", up %s, %s%s%s"
	    "\n", get_u(in.map, "pid"), get_u(in.map, "generation"), up,
	    state, op[0] != '\0' ? "; in progress: " : "", op);
	gs = msg_get(in.map, "generations");
	if (gs != NULL && gs->type == MSGPACK_OBJECT_ARRAY &&
	    gs->via.array.size > 0) {
		printf("%-11s %-9s %-8s %s\n", "GENERATION", "STATE",
		    "WORKERS", "CONNS");
		for (i = 0; i < gs->via.array.size; i++) {
			g = &gs->via.array.ptr[i];
			if (msg_get_str(g, "state", gst, sizeof(gst)) < 0)
				snprintf(gst, sizeof(gst), "?");
			printf("%-11" PRIu64 " %-9s %-8" PRIu64 " %" PRIu64
			    "\n", get_u(g, "generation"), gst,
			    get_u(g, "workers"), get_u(g, "conns"));
		}
	}
	printf("%-5s %-8s %-4s %-7s %-6s %-9s %-7s %-7s %-7s %-8s %s\n",
	    "SLOT", "PID", "GEN", "UPTIME", "CONNS", "REQUESTS", "2XX", "4XX",
	    "5XX", "RESTARTS", "STATE");
	ws = msg_get(in.map, "workers");
	if (ws != NULL && ws->type == MSGPACK_OBJECT_ARRAY)
		for (i = 0; i < ws->via.array.size; i++)
			status_row(&ws->via.array.ptr[i], "serving");
	ws = msg_get(in.map, "other_workers");
	if (ws != NULL && ws->type == MSGPACK_OBJECT_ARRAY)
		for (i = 0; i < ws->via.array.size; i++)
			status_row(&ws->via.array.ptr[i], "starting");
	gs = msg_get(in.map, "certificates");
	if (gs != NULL && gs->type == MSGPACK_OBJECT_ARRAY &&
	    gs->via.array.size > 0) {
		char file[512], entry[80];
		printf("%-16s %-10s %s\n", "TLS", "DAYS LEFT", "CERTIFICATE");
		for (i = 0; i < gs->via.array.size; i++) {
			g = &gs->via.array.ptr[i];
			if (msg_get_str(g, "tls", entry, sizeof(entry)) < 0)
				snprintf(entry, sizeof(entry), "?");
			if (msg_get_str(g, "file", file, sizeof(file)) < 0)
				snprintf(file, sizeof(file), "?");
			printf("%-16s %-10" PRId64 " %s\n", entry,
			    get_i(g, "days_left"), file);
		}
	}
done:
	msg_out_free(&req);
	msg_in_free(&in);
	return rc;
}

static int
run_reload(struct ctx *x, const struct cmd *self)
{
	struct msg_out req;
	struct msg_in in;
	int rc = 1;

	(void)self;
	if (x->argc > 0) {
		fprintf(stderr, "gwctl: reload takes no arguments\n");
		return 1;
	}
	if (msg_out_init(&req, 1) < 0)
		return 1;
	msg_pack_kv_str(&req.pk, "cmd", "reload");
	if (transact(x, &req, &in) < 0)
		goto done;
	rc = reply_ok(x, in.map);
	if (rc == 0 && !x->json)
		printf("reloaded: generation %" PRIu64 " serving with %" PRIu64
		    " workers; %" PRIu64 " older workers draining\n",
		    get_u(in.map, "generation"), get_u(in.map, "workers"),
		    get_u(in.map, "draining"));
done:
	msg_out_free(&req);
	msg_in_free(&in);
	return rc;
}

static int
run_upgrade(struct ctx *x, const struct cmd *self)
{
	struct msg_out req;
	struct msg_in in;
	char bin[4096], path[4096];
	const char *binary = NULL;
	int i, rc = 1;

	(void)self;
	for (i = 0; i < x->argc; i++) {
		if (strcmp(x->argv[i], "--binary") == 0 && i + 1 < x->argc) {
			binary = x->argv[++i];
		} else {
			fprintf(stderr, "gwctl: upgrade: unexpected argument "
			    "'%s'\n", x->argv[i]);
			return 1;
		}
	}
	/* The master runs elsewhere: give it an absolute path. */
	if (binary != NULL && binary[0] != '/') {
		if (getcwd(path, sizeof(path)) == NULL ||
		    snprintf(bin, sizeof(bin), "%s/%s", path, binary) >=
		    (int)sizeof(bin)) {
			fprintf(stderr, "gwctl: upgrade: path too long\n");
			return 1;
		}
		binary = bin;
	}
	if (msg_out_init(&req, binary != NULL ? 2 : 1) < 0)
		return 1;
	msg_pack_kv_str(&req.pk, "cmd", "upgrade");
	if (binary != NULL)
		msg_pack_kv_str(&req.pk, "binary", binary);
	if (transact(x, &req, &in) < 0)
		goto done;
	rc = reply_ok(x, in.map);
	if (rc == 0 && !x->json)
		printf("upgraded: new master pid %" PRIu64 " serves; old "
		    "master %" PRIu64 " drains and exits\n",
		    get_u(in.map, "new_pid"), get_u(in.map, "old_pid"));
done:
	msg_out_free(&req);
	msg_in_free(&in);
	return rc;
}

static int
run_stop(struct ctx *x, const struct cmd *self)
{
	struct msg_out req;
	struct msg_in in;
	bool now = false;
	int i, rc = 1;

	(void)self;
	for (i = 0; i < x->argc; i++) {
		if (strcmp(x->argv[i], "--now") == 0) {
			now = true;
		} else {
			fprintf(stderr, "gwctl: stop: unexpected argument "
			    "'%s'\n", x->argv[i]);
			return 1;
		}
	}
	if (msg_out_init(&req, 2) < 0)
		return 1;
	msg_pack_kv_str(&req.pk, "cmd", "stop");
	msg_pack_kv_bool(&req.pk, "now", now);
	if (transact(x, &req, &in) < 0)
		goto done;
	rc = reply_ok(x, in.map);
	if (rc == 0 && !x->json)
		printf("portico (pid %" PRIu64 "): %s stop started\n",
		    get_u(in.map, "pid"), now ? "fast" : "graceful");
done:
	msg_out_free(&req);
	msg_in_free(&in);
	return rc;
}

/* ratelimit: `limits [--reset] KEY`: the buckets stored for KEY. */
static int
run_limits(struct ctx *x, const struct cmd *self)
{
	const msgpack_object *bs, *b;
	struct msg_out req;
	struct msg_in in;
	const char *key = NULL;
	char tier[128], by[160], rate[64];
	bool reset = false;
	uint32_t i;
	int rc = 1;

	(void)self;
	for (i = 0; i < (uint32_t)x->argc; i++) {
		if (strcmp(x->argv[i], "--reset") == 0)
			reset = true;
		else if (key == NULL)
			key = x->argv[i];
		else {
			fprintf(stderr, "gwctl: limits: unexpected argument "
			    "'%s'\n", x->argv[i]);
			return 1;
		}
	}
	if (key == NULL) {
		fprintf(stderr, "gwctl: usage: gwctl limits [--reset] KEY\n");
		return 1;
	}
	if (msg_out_init(&req, 3) < 0)
		return 1;
	msg_pack_kv_str(&req.pk, "cmd", "limits");
	msg_pack_kv_str(&req.pk, "key", key);
	msg_pack_kv_bool(&req.pk, "reset", reset);
	if (transact(x, &req, &in) < 0)
		goto done;
	rc = reply_ok(x, in.map);
	if (rc != 0 || x->json)
		goto done;
	bs = msg_get(in.map, "buckets");
	if (bs == NULL || bs->type != MSGPACK_OBJECT_ARRAY ||
	    bs->via.array.size == 0) {
		printf("no stored bucket for '%s' (a key without one has its "
		    "full burst)\n", key);
		goto done;
	}
	printf("%-16s %-24s %-10s %-10s %-16s %s\n", "TIER", "BY", "TOKENS",
	    "BURST", "REFILL", "FULL IN");
	for (i = 0; i < bs->via.array.size; i++) {
		b = &bs->via.array.ptr[i];
		if (msg_get_str(b, "tier", tier, sizeof(tier)) < 0)
			snprintf(tier, sizeof(tier), "?");
		if (msg_get_str(b, "by", by, sizeof(by)) < 0)
			snprintf(by, sizeof(by), "?");
		snprintf(rate, sizeof(rate), "%" PRIu64 "/%" PRIu64 "s",
		    get_u(b, "rate"), get_u(b, "per_s"));
		printf("%-16s %-24s %-10" PRIu64 " %-10" PRIu64 " %-16s "
		    "%.1fs\n", tier, by, get_u(b, "tokens"), get_u(b, "burst"),
		    rate, get_u(b, "full_in_ms") / 1000.0);
	}
	if (reset)
		printf("reset %" PRIu64 " bucket%s: full again\n",
		    get_u(in.map, "reset"),
		    get_u(in.map, "reset") == 1 ? "" : "s");
done:
	msg_out_free(&req);
	msg_in_free(&in);
	return rc;
}

/* ---- stats, routes, explain, breakers, cache, reopen ------------------ */

/* The string under KEY, "-" when absent or nil. */
static const char *
sget(const msgpack_object *map, const char *key, char *buf, size_t len)
{
	if (msg_get_str(map, key, buf, len) < 0)
		snprintf(buf, len, "-");
	return buf;
}

/* An array of strings joined by SEP; EMPTY when there is none. */
static const char *
join(const msgpack_object *arr, const char *sep, const char *empty,
    char *buf, size_t len)
{
	size_t o = 0;
	uint32_t i;

	buf[0] = '\0';
	if (arr == NULL || arr->type != MSGPACK_OBJECT_ARRAY ||
	    arr->via.array.size == 0) {
		snprintf(buf, len, "%s", empty);
		return buf;
	}
	for (i = 0; i < arr->via.array.size && o < len; i++) {
		const msgpack_object *e = &arr->via.array.ptr[i];

		if (e->type != MSGPACK_OBJECT_STR)
			continue;
		o += (size_t)snprintf(buf + o, len - o, "%s%.*s",
		    i > 0 ? sep : "", (int)e->via.str.size, e->via.str.ptr);
	}
	return buf;
}

/* Send {"cmd": NAME} (plus nothing) and check the reply. Returns 0 with in
 * holding an ok reply, 1 after printing why not. */
static int
ask(struct ctx *x, const char *name, struct msg_in *in)
{
	struct msg_out req;
	int rc = 1;

	msgpack_unpacked_init(&in->up);
	in->map = NULL;
	in->owned = NULL;
	if (msg_out_init(&req, 1) < 0) {
		fprintf(stderr, "gwctl: out of memory\n");
		return 1;
	}
	msg_pack_kv_str(&req.pk, "cmd", name);
	if (transact(x, &req, in) == 0)
		rc = reply_ok(x, in->map);
	msg_out_free(&req);
	return rc;
}

static int
no_args(struct ctx *x, const struct cmd *c)
{
	if (x->argc == 0)
		return 0;
	fprintf(stderr, "gwctl: %s takes no arguments (usage: gwctl %s)\n",
	    c->name, c->usage);
	return 1;
}

/* Seconds as a timespec for nanosleep. */
static struct timespec
secs(double s)
{
	struct timespec ts;

	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	return ts;
}

/* stats [--route NAME] [--watch SECONDS [--count N]]: the tables, or one
 * route in detail; --watch redraws them in place every SECONDS (each
 * --json reply on a line of its own) until interrupted, or N times. */
static int
run_stats(struct ctx *x, const struct cmd *self)
{
	const char *route = NULL;
	struct msg_out req;
	struct msg_in in;
	struct timespec ts;
	double every = 0;
	long count = 0, n;
	char *end;
	int i, rc = 1;

	for (i = 0; i < x->argc; i++) {
		const char *a = x->argv[i];

		if ((strcmp(a, "--route") == 0 || strcmp(a, "--watch") == 0 ||
		    strcmp(a, "--count") == 0) && i + 1 >= x->argc) {
			fprintf(stderr, "gwctl: stats: %s needs a value\n", a);
			return 1;
		}
		if (strcmp(a, "--route") == 0) {
			route = x->argv[++i];
		} else if (strcmp(a, "--watch") == 0) {
			every = strtod(x->argv[++i], &end);
			if (*end != '\0' || !(every >= 0.1 && every <= 3600)) {
				fprintf(stderr, "gwctl: stats: --watch takes "
				    "seconds between 0.1 and 3600\n");
				return 1;
			}
		} else if (strcmp(a, "--count") == 0) {
			count = strtol(x->argv[++i], &end, 10);
			if (*end != '\0' || count < 1) {
				fprintf(stderr, "gwctl: stats: --count takes a "
				    "positive number\n");
				return 1;
			}
		} else {
			fprintf(stderr, "gwctl: stats: unexpected argument "
			    "'%s' (usage: gwctl %s)\n", a, self->usage);
			return 1;
		}
	}
	if (count > 0 && every == 0) {
		fprintf(stderr, "gwctl: stats: --count goes with --watch\n");
		return 1;
	}
	for (n = 0; every == 0 ? n < 1 : count == 0 || n < count; n++) {
		if (n > 0) {
			ts = secs(every);
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		if (msg_out_init(&req, route != NULL ? 2 : 1) < 0)
			return 1;
		msg_pack_kv_str(&req.pk, "cmd", "stats");
		if (route != NULL)
			msg_pack_kv_str(&req.pk, "route", route);
		rc = transact(x, &req, &in) < 0 ? 1 : reply_ok(x, in.map);
		msg_out_free(&req);
		if (rc == 0 && !x->json) {
			/* Like top: home, clear, draw. */
			if (every > 0)
				printf("\033[H\033[2J");
			if (route != NULL)
				gwctl_stats_print_route(stdout, in.map);
			else
				gwctl_stats_print(stdout, in.map);
			if (every > 0)
				printf("\n(every %.1f s; Ctrl-C stops)\n",
				    every);
		}
		fflush(stdout);
		msg_in_free(&in);
		if (rc != 0)
			break;
	}
	return rc;
}

/* "prefix /api GET,POST host api.example.com" */
static const char *
match_text(const msgpack_object *m, char *buf, size_t len)
{
	char kind[16], val[512], host[256], meth[128];

	sget(m, "kind", kind, sizeof(kind));
	sget(m, "value", val, sizeof(val));
	join(msg_get(m, "methods"), ",", "any", meth, sizeof(meth));
	if (msg_get_str(m, "host", host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "any");
	snprintf(buf, len, "%s %s, methods %s, host %s", kind, val, meth,
	    host);
	return buf;
}

/* One line per policy, each after PREFIX. */
static void
print_policies(const msgpack_object *ps, const char *prefix)
{
	const msgpack_object *p;
	char name[32], a[512], b[512], c[512], d[512], e[512];
	uint32_t i;

	if (ps == NULL || ps->type != MSGPACK_OBJECT_ARRAY ||
	    ps->via.array.size == 0) {
		printf("%snone\n", prefix);
		return;
	}
	for (i = 0; i < ps->via.array.size; i++) {
		p = &ps->via.array.ptr[i];
		sget(p, "name", name, sizeof(name));
		printf("%s%s", prefix, name);
		if (strcmp(name, "rate_limit") == 0) {
			printf(": by %s, tier %s", sget(p, "by", a, sizeof(a)),
			    sget(p, "tier", b, sizeof(b)));
			if (msg_get_str(p, "key", c, sizeof(c)) == 0)
				printf(", key %s", c);
		} else if (strcmp(name, "transform") == 0) {
			printf(": request add [%s] remove [%s]",
			    join(msg_get(p, "request_add"), ", ", "", a,
			    sizeof(a)),
			    join(msg_get(p, "request_remove"), ", ", "", b,
			    sizeof(b)));
			printf(" rename [%s]; response add [%s]",
			    join(msg_get(p, "request_rename"), ", ", "", a,
			    sizeof(a)),
			    join(msg_get(p, "response_add"), ", ", "", b,
			    sizeof(b)));
			printf(" remove [%s] rename [%s] strip_fields [%s]",
			    join(msg_get(p, "response_remove"), ", ", "", c,
			    sizeof(c)),
			    join(msg_get(p, "response_rename"), ", ", "", d,
			    sizeof(d)),
			    join(msg_get(p, "strip_fields"), ", ", "", e,
			    sizeof(e)));
		} else if (strcmp(name, "auth") == 0) {
			printf(": %s, scopes [%s]", sget(p, "mode", a,
			    sizeof(a)), join(msg_get(p, "scopes"), ", ", "", b,
			    sizeof(b)));
		} else if (strcmp(name, "cache") == 0) {
			bool pc = false;
			msg_get_bool(p, "per_consumer", &pc);
			printf(": ttl %" PRIu64 " s, vary [%s], stale %" PRIu64
			    " s, max_body %" PRIu64 "%s", get_u(p, "ttl_s"),
			    join(msg_get(p, "vary"), ", ", "", a, sizeof(a)),
			    get_u(p, "stale_s"), get_u(p, "max_body"),
			    pc ? ", per consumer" : "");
		} else if (strcmp(name, "aggregate") == 0) {
			const msgpack_object *cs = msg_get(p, "calls");
			uint32_t j;

			printf(": timeout %" PRIu64 " ms, calls",
			    get_u(p, "timeout_ms"));
			for (j = 0; cs != NULL && cs->type ==
			    MSGPACK_OBJECT_ARRAY && j < cs->via.array.size;
			    j++) {
				const msgpack_object *cl = &cs->via.array.ptr[j];
				printf(" %s=%s%s (%" PRIu64 " ms", sget(cl,
				    "name", a, sizeof(a)), sget(cl, "service",
				    b, sizeof(b)), sget(cl, "path", c,
				    sizeof(c)), get_u(cl, "timeout_ms"));
				if (msg_get_str(cl, "fallback", d,
				    sizeof(d)) == 0)
					printf(", fallback %s", d);
				printf(")");
			}
		}
		printf("\n");
	}
}

static void
print_rewrite(const msgpack_object *rw, const char *prefix)
{
	char a[512], b[512];

	if (rw == NULL || rw->type != MSGPACK_OBJECT_MAP)
		printf("%snone\n", prefix);
	else
		printf("%s%s -> %s\n", prefix, sget(rw, "pattern", a,
		    sizeof(a)), sget(rw, "to", b, sizeof(b)));
}

static int
run_routes(struct ctx *x, const struct cmd *self)
{
	const msgpack_object *rs, *r, *sv;
	struct msg_in in;
	char name[128], m[1024], svc[128], bal[160], inst[2048], file[1024];
	uint32_t i;
	int rc;

	if (no_args(x, self) != 0)
		return 1;
	rc = ask(x, "routes", &in);
	if (rc != 0 || x->json)
		goto done;
	rs = msg_get(in.map, "routes");
	printf("%u route%s from %s, tried in order:\n",
	    rs != NULL && rs->type == MSGPACK_OBJECT_ARRAY ?
	    rs->via.array.size : 0,
	    rs != NULL && rs->type == MSGPACK_OBJECT_ARRAY &&
	    rs->via.array.size == 1 ? "" : "s",
	    sget(in.map, "config", file, sizeof(file)));
	for (i = 0; rs != NULL && rs->type == MSGPACK_OBJECT_ARRAY &&
	    i < rs->via.array.size; i++) {
		r = &rs->via.array.ptr[i];
		sv = msg_get(r, "service");
		printf("%-20s %s (line %" PRIu64 ")\n",
		    sget(r, "name", name, sizeof(name)),
		    match_text(msg_get(r, "match"), m, sizeof(m)),
		    get_u(r, "line"));
		if (sv != NULL && sv->type == MSGPACK_OBJECT_MAP)
			printf("  service   %s, %s, retries %" PRIu64 ": %s\n",
			    sget(sv, "name", svc, sizeof(svc)),
			    sget(sv, "balance", bal, sizeof(bal)),
			    get_u(sv, "retries"), join(msg_get(sv,
			    "instances"), " ", "-", inst, sizeof(inst)));
		else
			printf("  service   none (aggregate)\n");
		print_rewrite(msg_get(r, "rewrite"), "  rewrite   ");
		print_policies(msg_get(r, "policies"), "  policy    ");
	}
done:
	msg_in_free(&in);
	return rc;
}

static int
run_explain(struct ctx *x, const struct cmd *self)
{
	const msgpack_object *route, *sv, *pick;
	const char *pos[2], *hdr[MAX_ARGS], *ip = NULL;
	struct msg_out req;
	struct msg_in in;
	char a[2048], b[1024], c[256];
	int i, npos = 0, nhdr = 0, rc = 1;

	for (i = 0; i < x->argc; i++) {
		const char *arg = x->argv[i];

		if ((strcmp(arg, "-H") == 0 || strcmp(arg, "--ip") == 0) &&
		    i + 1 >= x->argc) {
			fprintf(stderr, "gwctl: explain: %s needs a value\n",
			    arg);
			return 1;
		}
		if (strcmp(arg, "-H") == 0) {
			arg = x->argv[++i];
			if (strchr(arg, ':') == NULL || arg[0] == ':') {
				fprintf(stderr, "gwctl: explain: header '%s' "
				    "is not 'Name: value'\n", arg);
				return 1;
			}
			hdr[nhdr++] = arg;
		} else if (strcmp(arg, "--ip") == 0) {
			ip = x->argv[++i];
		} else if (npos < 2) {
			pos[npos++] = arg;
		} else {
			fprintf(stderr, "gwctl: explain: unexpected argument "
			    "'%s' (usage: gwctl %s)\n", arg, self->usage);
			return 1;
		}
	}
	if (npos != 2) {
		fprintf(stderr, "gwctl: usage: gwctl %s\n", self->usage);
		return 1;
	}
	if (msg_out_init(&req, 5) < 0)
		return 1;
	msg_pack_kv_str(&req.pk, "cmd", "explain");
	msg_pack_kv_str(&req.pk, "method", pos[0]);
	msg_pack_kv_str(&req.pk, "path", pos[1]);
	msg_pack_kv_str(&req.pk, "ip", ip);
	msg_pack_str(&req.pk, "headers");
	msgpack_pack_array(&req.pk, (size_t)nhdr);
	for (i = 0; i < nhdr; i++)
		msg_pack_str(&req.pk, hdr[i]);
	if (transact(x, &req, &in) < 0)
		goto done;
	rc = reply_ok(x, in.map);
	if (rc != 0 || x->json)
		goto done;
	printf("%s %s\n", pos[0], pos[1]);
	if (msg_get_str(in.map, "normalized", a, sizeof(a)) == 0)
		printf("  normalised     %s\n", a);
	printf("  result         %s\n", sget(in.map, "reason", a, sizeof(a)));
	route = msg_get(in.map, "route");
	if (route == NULL || route->type != MSGPACK_OBJECT_MAP)
		goto done;
	printf("  route          %s: %s (line %" PRIu64 ")\n",
	    sget(route, "name", c, sizeof(c)),
	    match_text(msg_get(route, "match"), a, sizeof(a)),
	    get_u(route, "line"));
	print_rewrite(msg_get(in.map, "rewrite"), "  rewrite        ");
	printf("  upstream path  %s\n", sget(in.map, "upstream_path", a,
	    sizeof(a)));
	print_policies(msg_get(in.map, "policies"), "  policy         ");
	sv = msg_get(in.map, "service");
	if (sv != NULL && sv->type == MSGPACK_OBJECT_MAP) {
		printf("  service        %s, %s: %s\n",
		    sget(sv, "name", c, sizeof(c)),
		    sget(sv, "balance", b, sizeof(b)),
		    join(msg_get(sv, "instances"), " ", "-", a, sizeof(a)));
		pick = msg_get(sv, "pick");
		if (msg_get_str(pick, "instance", c, sizeof(c)) == 0)
			printf("  instance       %s (#%" PRIu64 "): %s\n", c,
			    get_u(pick, "index"), sget(pick, "how", a,
			    sizeof(a)));
		else
			printf("  instance       %s\n", sget(pick, "how", a,
			    sizeof(a)));
	}
	printf("  (nothing was sent upstream)\n");
done:
	msg_out_free(&req);
	msg_in_free(&in);
	return rc;
}

static int
run_breakers(struct ctx *x, const struct cmd *self)
{
	const char *spec = NULL;
	struct msg_out req;
	struct msg_in in;
	int rc = 1;

	if (x->argc == 2 && strcmp(x->argv[0], "--reset") == 0) {
		spec = x->argv[1];
	} else if (x->argc != 0) {
		fprintf(stderr, "gwctl: usage: gwctl %s\n", self->usage);
		return 1;
	}
	if (msg_out_init(&req, spec != NULL ? 2 : 1) < 0)
		return 1;
	msg_pack_kv_str(&req.pk, "cmd", "breakers");
	if (spec != NULL)
		msg_pack_kv_str(&req.pk, "reset", spec);
	if (transact(x, &req, &in) < 0)
		goto done;
	rc = reply_ok(x, in.map);
	if (rc == 0 && !x->json)
		gwctl_breakers_print(stdout, in.map);
done:
	msg_out_free(&req);
	msg_in_free(&in);
	return rc;
}

static void
print_entry(const msgpack_object *e)
{
	char a[4096], b[4096];

	sget(e, "kind", a, sizeof(a));
	if (strcmp(a, "response") != 0) {
		printf("%s\n  %s %s, evicted in %" PRId64 " s\n",
		    sget(e, "key", b, sizeof(b)), a, sget(e, "vary", a,
		    sizeof(a)), get_i(e, "evict_in_s"));
		return;
	}
	printf("%s\n", sget(e, "desc", a, sizeof(a)));
	printf("  key        %s\n", sget(e, "key", a, sizeof(a)));
	printf("  status     %" PRIu64 ", %" PRIu64 " body bytes (%" PRIu64
	    " charged), etag %s%s\n", get_u(e, "status"),
	    get_u(e, "body_bytes"), get_u(e, "charged_bytes"),
	    sget(e, "etag", b, sizeof(b)), msg_get(e, "etag_made") != NULL &&
	    msg_get(e, "etag_made")->type == MSGPACK_OBJECT_BOOLEAN &&
	    msg_get(e, "etag_made")->via.boolean ? " (made by the cache)" :
	    "");
	printf("  age        %" PRId64 " s, fresh for %" PRId64 " s; then "
	    "served stale while revalidating %" PRIu64 " s, on error %"
	    PRIu64 " s\n", get_i(e, "age_s"), get_i(e, "fresh_for_s"),
	    get_u(e, "stale_while_revalidate_s"),
	    get_u(e, "stale_if_error_s"));
	printf("  evicted in %" PRId64 " s; last used %" PRId64 " s ago\n",
	    get_i(e, "evict_in_s"), get_i(e, "used_s_ago"));
	sget(e, "headers", a, sizeof(a));
	{
		char *line, *save = NULL;
		for (line = strtok_r(a, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			printf("    %s\n", line);
	}
}

static int
run_cache(struct ctx *x, const struct cmd *self)
{
	const msgpack_object *es;
	struct msg_out req;
	struct msg_in in;
	bool show;
	uint32_t i;
	int rc = 1;

	show = x->argc == 2 && strcmp(x->argv[0], "show") == 0;
	if (!show && (x->argc < 1 || x->argc > 2 ||
	    strcmp(x->argv[0], "purge") != 0)) {
		fprintf(stderr, "gwctl: usage: gwctl %s\n", self->usage);
		return 1;
	}
	if (msg_out_init(&req, 3) < 0)
		return 1;
	msg_pack_kv_str(&req.pk, "cmd", "cache");
	msg_pack_kv_str(&req.pk, "action", show ? "show" : "purge");
	msg_pack_kv_str(&req.pk, show ? "path" : "prefix",
	    x->argc > 1 ? x->argv[1] : "/");
	if (transact(x, &req, &in) < 0)
		goto done;
	rc = reply_ok(x, in.map);
	if (rc != 0 || x->json)
		goto done;
	if (!show) {
		printf("purged %" PRIu64 " cached response%s\n",
		    get_u(in.map, "purged"), get_u(in.map, "purged") == 1 ?
		    "" : "s");
		goto done;
	}
	es = msg_get(in.map, "entries");
	if (es == NULL || es->type != MSGPACK_OBJECT_ARRAY ||
	    es->via.array.size == 0) {
		printf("no cached response for %s\n", x->argv[1]);
		goto done;
	}
	for (i = 0; i < es->via.array.size; i++)
		print_entry(&es->via.array.ptr[i]);
done:
	msg_out_free(&req);
	msg_in_free(&in);
	return rc;
}

static int
run_reopen(struct ctx *x, const struct cmd *self)
{
	struct msg_in in;
	char log[1024];
	int rc;

	if (no_args(x, self) != 0)
		return 1;
	rc = ask(x, "reopen", &in);
	if (rc == 0 && !x->json)
		printf("reopened %s; %" PRIu64 " worker%s signalled to reopen "
		    "their logs\n", sget(in.map, "error_log", log, sizeof(log)),
		    get_u(in.map, "workers_signalled"),
		    get_u(in.map, "workers_signalled") == 1 ? "" : "s");
	msg_in_free(&in);
	return rc;
}

static int
run_key(struct ctx *x, const struct cmd *self)
{
	(void)self;
	return gwctl_key(x->argc, x->argv);
}

static int
run_token(struct ctx *x, const struct cmd *self)
{
	(void)self;
	return gwctl_token(x->argc, x->argv, stdout, stderr);
}

/* Value of an option that takes one; exits on a missing value. */
static const char *
optval(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc) {
		fprintf(stderr, "gwctl: option %s needs a value\n", argv[*i]);
		exit(1);
	}
	return argv[++*i];
}

int
main(int argc, char **argv)
{
	struct ctx x;
	const struct cmd *c = NULL;
	int i;
	bool rest = false;

	memset(&x, 0, sizeof(x));
	/* Global options may come before or after the command, so both
	 * `gwctl -c F check` and `gwctl check -c F` work. */
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!rest && strcmp(a, "--") == 0) {
			rest = true;
		} else if (!rest && strcmp(a, "-s") == 0) {
			x.sock = optval(argc, argv, &i);
		} else if (!rest && strcmp(a, "-c") == 0) {
			x.conf = optval(argc, argv, &i);
		} else if (!rest && strcmp(a, "-p") == 0) {
			x.prefix = optval(argc, argv, &i);
		} else if (!rest && strcmp(a, "--json") == 0) {
			x.json = true;
		} else if (!rest && (strcmp(a, "-h") == 0 ||
		    strcmp(a, "--help") == 0)) {
			x.help = true;
		} else if (c == NULL) {
			if (a[0] == '-' && !rest) {
				fprintf(stderr, "gwctl: unknown option '%s'\n",
				    a);
				usage(stderr);
				return 1;
			}
			c = find_cmd(a);
			if (c == NULL) {
				fprintf(stderr, "gwctl: unknown command '%s' "
				    "(see gwctl help)\n", a);
				return 1;
			}
		} else {
			if (x.argc >= MAX_ARGS) {
				fprintf(stderr, "gwctl: too many arguments\n");
				return 1;
			}
			x.argv[x.argc++] = argv[i];
		}
	}
	if (c == NULL) {
		usage(x.help ? stdout : stderr);
		return x.help ? 0 : 1;
	}
	if (x.help) {
		printf("usage: gwctl %s\n  %s\n", c->usage, c->help);
		return 0;
	}
	return c->run(&x, c);
}
