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
#include <unistd.h>

#include "master/config.h"
#include "master/msg.h"

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
static int run_generic(struct ctx *, const struct cmd *);
static int run_limits(struct ctx *, const struct cmd *);

static const struct cmd cmds[] = {
	{ "help", "help [COMMAND]", "show commands, or one command's usage",
	    run_help },
	{ "check", "check -c FILE", "validate a configuration file offline "
	    "(no master needed)", run_check },
	{ "status", "status", "master pid, generation, uptime and each "
	    "worker's pid, generation, connections, requests", run_status },
	{ "stats", "stats", "totals per route and service", run_generic },
	{ "reload", "reload", "validate the configuration and reload it; "
	    "the old one stays on error", run_generic },
	{ "upgrade", "upgrade [--binary PATH]", "zero-downtime binary "
	    "upgrade", run_generic },
	{ "routes", "routes", "the routing table with each route's policies",
	    run_generic },
	{ "explain", "explain METHOD PATH [-H 'Name: value']...", "which "
	    "route matches and which policies would run", run_generic },
	{ "breakers", "breakers", "circuit breaker states", run_generic },
	{ "limits", "limits [--reset] KEY", "rate-limit buckets of a key "
	    "(client address, route name or header value); --reset refills "
	    "them", run_limits },
	{ "cache", "cache purge [PREFIX]", "purge cached responses",
	    run_generic },
	{ "reopen", "reopen", "reopen log files (after rotation)",
	    run_generic },
	{ "stop", "stop [--now]", "graceful stop (--now: fast stop)",
	    run_stop },
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
	for (c = cmds; c->name != NULL; c++)
		fprintf(f, "  %-44s %s\n", c->usage, c->help);
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
		fprintf(stderr, "gwctl: cannot connect to %s: %s\n", x->sock,
		    strerror(errno));
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

static int
run_status(struct ctx *x, const struct cmd *self)
{
	const msgpack_object *ws, *w, *st;
	struct msg_out req;
	struct msg_in in;
	char up[32], state[16];
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
	fmt_dur(get_u(in.map, "uptime_s"), up, sizeof(up));
	printf("master pid %" PRIu64 ", generation %" PRIu64 ", up %s, %s\n",
	    get_u(in.map, "pid"), get_u(in.map, "generation"), up, state);
	printf("%-5s %-8s %-4s %-7s %-6s %-9s %-7s %-7s %-7s %-8s %s\n",
	    "SLOT", "PID", "GEN", "UPTIME", "CONNS", "REQUESTS", "2XX", "4XX",
	    "5XX", "RESTARTS", "STATE");
	ws = msg_get(in.map, "workers");
	if (ws == NULL || ws->type != MSGPACK_OBJECT_ARRAY)
		goto done;
	for (i = 0; i < ws->via.array.size; i++) {
		bool draining = false;

		w = &ws->via.array.ptr[i];
		st = msg_get(w, "status");
		msg_get_bool(w, "draining", &draining);
		fmt_dur(get_u(w, "uptime_s"), up, sizeof(up));
		printf("%-5" PRIu64 " %-8" PRIu64 " %-4" PRIu64 " %-7s "
		    "%-6" PRIu64 " %-9" PRIu64 " %-7" PRIu64 " %-7" PRIu64
		    " %-7" PRIu64 " %-8" PRIu64 " %s\n",
		    get_u(w, "slot"), get_u(w, "pid"), get_u(w, "generation"),
		    get_u(w, "pid") > 0 ? up : "-",
		    get_u(w, "conns"), get_u(w, "requests"), get_u(st, "2xx"),
		    get_u(st, "4xx"), get_u(st, "5xx"), get_u(w, "restarts"),
		    get_u(w, "pid") == 0 ? "down" :
		    draining ? "draining" : "serving");
	}
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

/*
 * Commands the control issue fills in: send what the operator typed, in
 * the shape that issue is expected to read, and show the master's answer.
 */
static int
run_generic(struct ctx *x, const struct cmd *c)
{
	struct msg_out req;
	struct msg_in in;
	const char *binary = NULL;
	char *pos[MAX_ARGS], *hdr[MAX_ARGS];
	int i, npos = 0, nhdr = 0, rc = 1;

	for (i = 0; i < x->argc; i++) {
		if (strcmp(x->argv[i], "--binary") == 0 && i + 1 < x->argc)
			binary = x->argv[++i];
		else if (strcmp(x->argv[i], "-H") == 0 && i + 1 < x->argc)
			hdr[nhdr++] = x->argv[++i];
		else
			pos[npos++] = x->argv[i];
	}
	if (msg_out_init(&req, 4) < 0)
		return 1;
	msg_pack_kv_str(&req.pk, "cmd", c->name);
	msg_pack_kv_str(&req.pk, "binary", binary);
	msg_pack_str(&req.pk, "args");
	msgpack_pack_array(&req.pk, (size_t)npos);
	for (i = 0; i < npos; i++)
		msg_pack_str(&req.pk, pos[i]);
	msg_pack_str(&req.pk, "headers");
	msgpack_pack_array(&req.pk, (size_t)nhdr);
	for (i = 0; i < nhdr; i++)
		msg_pack_str(&req.pk, hdr[i]);
	if (transact(x, &req, &in) < 0)
		goto done;
	rc = reply_ok(x, in.map);
	if (rc == 0 && !x->json) {
		/* No table for this command yet: JSON is still readable. */
		msg_print_json(stdout, in.map);
		fputc('\n', stdout);
	}
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
