/*
 * test_config: the config loader. Includes config.c to reach validate();
 * cfg_parse_cidr() comes from config-int.h. Run from the top of the tree
 * (make unit does).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../../master/config.c"

#define CONF_DIR "test/unit/master/conf/"
#define DEMO_CONF "etc/portico.conf"

static char tmp_path[64];

struct err_case {
	const char *text;
	int line;
	const char *reason;
};


/* load_text: write TEXT to a fresh temp file and load it (prefix /tmp). */
static int
load_text(const char *text, struct config **cfg, char *err, size_t errlen)
{
	int fd, rc;
	size_t len = strlen(text);

	snprintf(tmp_path, sizeof(tmp_path), "/tmp/portico-cfg-XXXXXX");
	fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	rc = config_load(tmp_path, "/tmp", cfg, err, errlen);
	unlink(tmp_path);
	return rc;
}

static struct config *
load_ok(const char *text)
{
	struct config *cfg = NULL;
	char err[512] = "";

	if (load_text(text, &cfg, err, sizeof(err)) != 0)
		fail_msg("expected success, got: %s", err);
	assert_non_null(cfg);
	return cfg;
}

/* check_err: whether loading TEXT fails with exactly "FILE:LINE: REASON";
 * prints the difference when not. */
static bool
check_err(const char *text, int line, const char *reason)
{
	struct config *cfg = (void *)1;
	char err[512] = "", want[512];

	if (load_text(text, &cfg, err, sizeof(err)) != -1 || cfg != NULL) {
		print_error("loaded, expected: %s\n", reason);
		config_free(cfg);
		return false;
	}
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", tmp_path, line,
		    reason);
	else
		snprintf(want, sizeof(want), "%s: %s", tmp_path, reason);
	if (strcmp(err, want) != 0) {
		print_error("got:  %s\nwant: %s\n", err, want);
		return false;
	}
	return true;
}

static void
run_err_cases(const struct err_case *c, size_t n)
{
	size_t i, bad_count = 0;

	for (i = 0; i < n; i++)
		if (!check_err(c[i].text, c[i].line, c[i].reason))
			bad_count++;
	assert_int_equal(bad_count, 0);
}

/* Two lines: version and one service. */
#define SVC "version = 1;\n" \
	"services: { users = { instances = [\"127.0.0.1:8001\"]; }; };\n"

/* A route at lines 3..7 with EXTRA on line 6. */
#define ROUTE(extra) SVC \
	"routes = (\n" \
	"  { name = \"r\";\n" \
	"    match = { prefix = \"/a\"; };\n" \
	"    service = \"users\"; " extra "\n" \
	"  }\n" \
	");\n"

/* ---- whole files ---------------------------------------------------- */

static void
test_demo_loads(void **state)
{
	struct config *cfg = NULL;
	char err[512] = "";
	struct cfg_route *r;

	(void)state;
	if (config_load(DEMO_CONF, NULL, &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg->server.workers, 2);
	assert_int_equal(cfg->nservices, 4);
	assert_int_equal(cfg->nroutes, 9);
	assert_string_equal(cfg->server.error_log, "-");
	assert_string_equal(cfg->server.state_path, "/dev/shm/portico-demo");
	assert_int_equal(cfg->server.nlisten, 2);
	assert_null(cfg->server.listen[0].tls);
	assert_string_equal(cfg->server.listen[1].tls, "default");
	assert_int_equal(cfg->server.ticket_rotate_s, 3600);
	r = &cfg->routes[0];
	assert_int_equal(r->auth, AUTH_JWT);
	assert_string_equal(r->name, "orders");
	assert_int_equal(r->service, config_service_index(cfg, "orders"));
	assert_int_equal(r->methods, METHOD_BIT(M_GET) | METHOD_BIT(M_POST));
	assert_string_equal(r->req_add[0], "X-Gateway: portico");
	assert_string_equal(r->resp_add[0], "X-Served-By: portico");
	assert_int_equal(r->nstrip_fields, 2);
	r = &cfg->routes[1];
	assert_string_equal(r->name, "home");
	assert_int_equal(r->ncalls, 4);
	assert_string_equal(r->calls[2].fallback, "cache");
	r = &cfg->routes[3];
	assert_string_equal(r->name, "catalog");
	assert_non_null(r->rewrite_re);
	assert_string_equal(r->prefix, "/products");
	/* the product catalogue, cached for a minute */
	assert_true(r->has_cache);
	assert_int_equal(r->cache_ttl_s, 60);
	assert_int_equal(cfg->server.state_cache_mb, 128);
	r = &cfg->routes[8];
	assert_string_equal(r->name, "legacy");
	assert_non_null(r->re);
	assert_int_equal(r->service, config_service_index(cfg, "users"));
	assert_int_equal(cfg->routes[6].service,
	    config_service_index(cfg, "orders"));
	/* users: two instances with health checks and a breaker (the
	 * README's resilience walk-through) */
	assert_string_equal(cfg->services[0].name, "users");
	assert_int_equal(cfg->services[0].ninstances, 2);
	assert_true(cfg->services[0].health.enabled);
	assert_true(cfg->services[0].breaker.enabled);
	assert_int_equal(cfg->services[0].breaker.failures, 3);
	/* the demo serves /metrics on the default admin address */
	assert_true(cfg->server.has_admin);
	assert_string_equal(cfg->server.admin.text, "127.0.0.1:9901");
	config_free(cfg);
}

static void
test_contract_trimmed_loads(void **state)
{
	struct config *cfg = NULL;
	char err[512] = "", pre[64], path[160], cmd[1024];
	const struct cfg_service *u;
	FILE *f;

	(void)state;
	/* The key files the contract names must load: a prefix holding
	 * them (an RSA public key from the JWT fixtures). */
	snprintf(pre, sizeof(pre), "/tmp/ptc-cfgkeys-XXXXXX");
	assert_non_null(mkdtemp(pre));
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/etc/keys %s/etc/tls && cp "
	    "test/unit/policies/fixtures/jwt/rsa.pub.pem "
	    "%s/etc/keys/rs256.pub.pem && cd %s/etc/tls && "
	    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
	    "-nodes -keyout server.key -out server.crt -days 30 "
	    "-subj /CN=localhost 2>/dev/null", pre, pre, pre, pre);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/etc/keys/hs256.secret", pre);
	assert_non_null(f = fopen(path, "w"));
	fputs("0123456789abcdef0123456789abcdef\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/etc/keys/api_keys.conf", pre);
	assert_non_null(f = fopen(path, "w"));
	fputs("keys = ();\n", f);
	fclose(f);
	if (config_load(CONF_DIR "contract-trimmed.conf", pre, &cfg, err,
	    sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_true(cfg->server.workers >= 1);
	assert_int_equal(cfg->server.workers,
	    (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
	assert_int_equal(cfg->ntls, 1);
	assert_string_equal(cfg->tls[0].name, "default");
	snprintf(path, sizeof(path), "%s/etc/tls/server.crt", pre);
	assert_string_equal(cfg->tls[0].cert, path);
	assert_int_equal(cfg->tls[0].min_version, TLS1_2_VERSION);
	assert_int_equal(cfg->tls[0].nnames, 0);
	assert_null(cfg->tls[0].names[0]);
	u = &cfg->services[config_service_index(cfg, "users")];
	assert_true(u->health.enabled);
	assert_true(u->breaker.enabled);
	assert_int_equal(u->breaker.failures, 5);
	assert_false(cfg->services[1].health.enabled);
	assert_true(cfg->auth.has_jwt);
	assert_int_equal(cfg->auth.njwt_keys, 2);
	snprintf(path, sizeof(path), "%s/etc/keys/hs256.secret", pre);
	assert_string_equal(cfg->auth.jwt_keys[0].secret_file, path);
	snprintf(path, sizeof(path), "%s/etc/keys/rs256.pub.pem", pre);
	assert_string_equal(cfg->auth.jwt_keys[1].public_key, path);
	assert_string_equal(cfg->auth.issuer, "https://auth.example.com/");
	assert_string_equal(cfg->auth.require[0], "exp");
	assert_true(cfg->auth.has_api_keys);
	snprintf(path, sizeof(path), "%s/etc/keys/api_keys.conf", pre);
	assert_string_equal(cfg->auth.api_keys_file, path);
	assert_int_equal(cfg->ntiers, 3);
	assert_int_equal(cfg->nroutes, 3);
	assert_string_equal(cfg->routes[1].host, "api.example.com");
	assert_string_equal(cfg->routes[1].rewrite_to, "/v2/products/$1");
	assert_int_equal(cfg->routes[2].methods, 0);
	config_free(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pre);
	assert_int_equal(system(cmd), 0);
}

/* The full contract loads: every setting in it is built. */
static void
test_contract_full(void **state)
{
	struct config *cfg = NULL;
	char err[512] = "";
	struct ld ld = { .err = err, .errlen = sizeof(err) };
	const struct cfg_route *r;
	config_t lc;

	(void)state;
	if (config_load(CONF_DIR "contract-full.conf", NULL, &cfg, err,
	    sizeof(err)) != 0)
		fail_msg("%s", err);
	config_free(cfg);

	ld.file = CONF_DIR "contract-full.conf";
	ld.cfg = calloc(1, sizeof(*ld.cfg));
	assert_non_null(ld.cfg);
	assert_int_equal(set_prefix(&ld, "/tmp"), 0);
	config_init(&lc);
	if (validate(&ld, &lc) != 0)
		fail_msg("%s", err);
	assert_int_equal(ld.cfg->server.nlisten, 2);
	assert_string_equal(ld.cfg->server.listen[1].tls, "default");
	r = &ld.cfg->routes[0];
	assert_string_equal(r->name, "home");
	assert_int_equal(r->service, -1);
	assert_int_equal(r->auth, AUTH_JWT);
	assert_int_equal(r->ncalls, 4);
	assert_int_equal(r->aggregate_timeout_ms, 200);
	assert_null(r->calls[0].fallback);
	assert_string_equal(r->calls[1].fallback, "[]");
	assert_string_equal(r->calls[2].fallback, "cache");
	assert_int_equal(r->calls[3].service,
	    config_service_index(ld.cfg, "orders"));
	r = &ld.cfg->routes[1];
	assert_int_equal(r->rl_by, RL_CONSUMER);
	assert_int_equal(r->rl_tier, -1);
	assert_string_equal(r->scopes[0], "orders:read");
	assert_int_equal(r->nstrip_fields, 2);
	assert_int_equal(r->nresp_remove, 2);
	r = &ld.cfg->routes[2];
	assert_true(r->has_cache);
	assert_int_equal(r->cache_ttl_s, 60);
	assert_int_equal(r->rl_by, RL_IP);
	assert_int_equal(r->rl_tier, 0);
	assert_int_equal(ld.cfg->routes[3].auth, AUTH_API_KEY);
	config_destroy(&lc);
	free(ld.text);
	config_free(ld.cfg);
}

static void
test_defaults(void **state)
{
	struct config *cfg;
	const struct cfg_server *sv;
	const struct cfg_service *s;
	const struct sockaddr_in *sin;

	(void)state;
	cfg = load_ok("version = 1;\n");
	sv = &cfg->server;
	assert_int_equal(sv->workers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
	assert_int_equal(sv->nlisten, 1);
	assert_string_equal(sv->listen[0].addr.text, "0.0.0.0:8080");
	sin = (const void *)&sv->listen[0].addr.ss;
	assert_int_equal(ntohs(sin->sin_port), 8080);
	assert_true(sv->has_admin);
	assert_string_equal(sv->admin.text, "127.0.0.1:9901");
	assert_string_equal(sv->control_socket, "/tmp/run/portico.sock");
	assert_string_equal(sv->pid_file, "/tmp/run/portico.pid");
	assert_string_equal(sv->state_path, "/dev/shm/portico");
	assert_int_equal(sv->state_max_mb, 256);
	assert_int_equal(sv->state_cache_mb, 128);	/* half of max_mb */
	assert_int_equal(sv->limits.header_bytes, 16384);
	assert_int_equal(sv->limits.headers, 100);
	assert_int_equal(sv->limits.body_bytes, 10485760);
	assert_int_equal(sv->limits.header_timeout_ms, 10000);
	assert_int_equal(sv->limits.idle_timeout_ms, 60000);
	assert_int_equal(sv->limits.drain_timeout_ms, 30000);
	assert_int_equal(sv->limits.field_bytes, 8192);
	assert_int_equal(sv->limits.uri_bytes, 8192);
	assert_false(sv->refuse_underscores);
	assert_string_equal(sv->access_log, "/tmp/logs/access.log");
	assert_int_equal(sv->access_format, ACCESS_JSON);
	assert_null(sv->access_redact);
	assert_string_equal(sv->error_log, "/tmp/logs/error.log");
	assert_int_equal(sv->error_level, LOG_INFO);
	assert_string_equal(sv->trace_header, "X-Trace-ID");
	assert_int_equal(sv->ntrusted, 0);
	assert_false(cfg->auth.has_jwt);
	assert_false(cfg->auth.has_api_keys);
	assert_int_equal(cfg->auth.leeway_s, 30);
	assert_string_equal(cfg->auth.consumer_claim, "sub");
	assert_string_equal(cfg->auth.tier_claim, "tier");
	assert_string_equal(cfg->auth.scopes_claim, "scope");
	assert_string_equal(cfg->auth.id_consumer, "X-User-ID");
	assert_string_equal(cfg->auth.id_tier, "X-User-Tier");
	assert_string_equal(cfg->auth.id_scopes, "X-User-Scopes");
	assert_string_equal(cfg->auth.api_key_header, "X-API-Key");
	assert_int_equal(cfg->ntiers, 3);
	assert_string_equal(cfg->tiers[1].name, "free");
	assert_int_equal(cfg->tiers[1].rate, 100);
	assert_int_equal(cfg->tiers[1].per_s, 60);
	assert_int_equal(cfg->tiers[1].burst, 20);
	assert_int_equal(cfg->tiers[2].burst, 2000);
	assert_int_equal(cfg->nroutes, 0);
	assert_int_equal(cfg->nservices, 0);
	config_free(cfg);

	cfg = load_ok(
	    "services: { a = { instances = [\"127.0.0.1:1\"]; };\n"
	    "  b = { instances = [\"127.0.0.1:2\"]; health = {}; breaker = {};"
	    " }; };\n"
	    "server: { admin = \"off\"; access_log = { path = \"off\";\n"
	    "  redact = [\"session\", \"X-Auth[]\"]; };\n"
	    "  error_log = { path = \"-\"; level = \"warn\"; };\n"
	    "  limits = { body_bytes = 20000000000L; };\n"
	    "  trusted_proxies = [\"10.0.0.0/8\", \"::1\"]; };\n"
	    "tiers: { gold = { rate = 5; per_s = 2; burst = 9; }; };\n"
	    "routes = ( { name = \"x\"; match = { prefix = \"/\"; };\n"
	    "  service = \"b\"; auth = \"none\"; } );\n");
	assert_int_equal(cfg->version, 1);
	s = &cfg->services[0];
	assert_int_equal(s->balance, BAL_ROUND_ROBIN);
	assert_int_equal(s->connect_timeout_ms, 200);
	assert_int_equal(s->timeout_ms, 2000);
	assert_int_equal(s->keepalive, 64);
	assert_int_equal(s->keepalive_timeout_ms, 4000);
	assert_int_equal(s->retries, 1);
	assert_false(s->health.enabled);
	assert_false(s->breaker.enabled);
	/* The retry budget and the bulkhead default on every service. */
	assert_int_equal(s->retry_budget.percent, 20);
	assert_int_equal(s->retry_budget.window_s, 10);
	assert_int_equal(s->retry_budget.min_per_s, 3);
	assert_int_equal(s->max_inflight, 0);
	s = &cfg->services[1];
	assert_true(s->health.enabled);
	assert_string_equal(s->health.path, "/health");
	assert_int_equal(s->health.interval_ms, 5000);
	assert_int_equal(s->health.timeout_ms, 1000);
	assert_int_equal(s->health.fall, 3);
	assert_int_equal(s->health.rise, 2);
	assert_true(s->breaker.enabled);
	assert_int_equal(s->breaker.failures, 5);
	assert_int_equal(s->breaker.open_ms, 30000);
	assert_int_equal(s->breaker.half_open, 1);
	/* A check passes with any 2xx; 500, 502-504 count as failures. */
	assert_int_equal(s->health.status_min, 200);
	assert_int_equal(s->health.status_max, 299);
	assert_true(cfg_breaker_counts(&s->breaker, 500));
	assert_false(cfg_breaker_counts(&s->breaker, 501));
	assert_true(cfg_breaker_counts(&s->breaker, 502));
	assert_true(cfg_breaker_counts(&s->breaker, 504));
	assert_false(cfg_breaker_counts(&s->breaker, 505));
	assert_false(cfg_breaker_counts(&s->breaker, 404));
	assert_false(cfg_breaker_counts(&s->breaker, 200));
	assert_false(cfg->server.has_admin);
	assert_null(cfg->server.access_log);
	assert_string_equal(cfg->server.access_redact[0], "session");
	assert_string_equal(cfg->server.access_redact[1], "X-Auth[]");
	assert_null(cfg->server.access_redact[2]);
	assert_string_equal(cfg->server.error_log, "-");
	assert_int_equal(cfg->server.error_level, LOG_WARN);
	assert_int_equal(cfg->server.limits.body_bytes, 20000000000ULL);
	assert_int_equal(cfg->server.ntrusted, 2);
	assert_int_equal(cfg->ntiers, 1);
	assert_string_equal(cfg->routes[0].prefix, "");
	assert_int_equal(cfg->routes[0].auth, AUTH_NONE);
	assert_int_equal(cfg->routes[0].rl_by, RL_NONE);
	assert_int_equal(cfg->routes[0].ncalls, 0);
	config_free(cfg);

	/* admin = "" disables too; hash:header and other balances. */
	cfg = load_ok("server: { admin = \"\"; };\n"
	    "services: { a = { instances = [\"[::1]:1\", \"localhost:2\"];\n"
	    "  balance = \"hash:header:X-Tenant\"; };\n"
	    "  b = { instances = [\"*:3\"]; balance = \"least_conn\"; }; };\n");
	assert_false(cfg->server.has_admin);
	assert_int_equal(cfg->services[0].balance, BAL_HASH_HEADER);
	assert_string_equal(cfg->services[0].hash_header, "X-Tenant");
	assert_int_equal(cfg->services[0].ninstances, 2);
	assert_int_equal(cfg->services[1].balance, BAL_LEAST_CONN);
	config_free(cfg);
}

/* The resilience settings: statuses, classes, the budget, the bulkhead. */
static void
test_resilience_settings(void **state)
{
	const struct cfg_service *s;
	struct config *cfg;

	(void)state;
	cfg = load_ok("services: {\n"
	    "  a = { instances = [\"127.0.0.1:1\"]; max_inflight = 100;\n"
	    "    retry_budget = { percent = 50; window_s = 30; min_per_s = 0; };\n"
	    "    health = { status = \"3xx\"; path = \"/ready?deep=1\"; };\n"
	    "    breaker = { statuses = (\"4xx\", 503); }; };\n"
	    "  b = { instances = [\"127.0.0.1:2\"];\n"
	    "    health = { status = 204; }; breaker = { statuses = []; }; };\n"
	    "};\n");
	s = &cfg->services[0];
	assert_int_equal(s->max_inflight, 100);
	assert_int_equal(s->retry_budget.percent, 50);
	assert_int_equal(s->retry_budget.window_s, 30);
	assert_int_equal(s->retry_budget.min_per_s, 0);
	assert_int_equal(s->health.status_min, 300);
	assert_int_equal(s->health.status_max, 399);
	assert_string_equal(s->health.path, "/ready?deep=1");
	assert_true(cfg_breaker_counts(&s->breaker, 400));
	assert_true(cfg_breaker_counts(&s->breaker, 499));
	assert_true(cfg_breaker_counts(&s->breaker, 503));
	assert_false(cfg_breaker_counts(&s->breaker, 500));
	s = &cfg->services[1];
	assert_int_equal(s->health.status_min, 204);
	assert_int_equal(s->health.status_max, 204);
	/* [] counts no status: connection failures and timeouts only. */
	assert_false(cfg_breaker_counts(&s->breaker, 500));
	assert_false(cfg_breaker_counts(&s->breaker, 503));
	config_free(cfg);
}

/* ---- errors --------------------------------------------------------- */

static const struct err_case err_cases[] = {
	/* syntax */
	{ "version = 1;\nserver: {\n  workers = ;\n};\n", 3, "syntax error" },
	{ "a = 1;\nversion = 1;\nversion = 1;\n", 3,
	  "duplicate setting name" },
	/* unknown settings, at every level */
	{ "version = 1;\nfoo = 1;\n", 2, "unknown setting 'foo'" },
	{ "server: {\n  worker = 2;\n};\n", 2,
	  "unknown setting 'worker' in server" },
	{ "server: { limits = {\n header_byte = 2; }; };\n", 2,
	  "unknown setting 'header_byte' in server.limits" },
	{ "server: { listen = (\n { address = \"*:1\"; tsl = \"x\"; } ); };\n",
	  2, "unknown setting 'tsl' in server.listen" },
	{ "services: {\n  users = {\n    instances = [\"127.0.0.1:1\"];\n"
	  "    timout_ms = 5;\n  };\n};\n", 4,
	  "unknown setting 'timout_ms' in service 'users'" },
	{ "services: { users = { instances = [\"127.0.0.1:1\"];\n"
	  "  health = { pth = \"/\"; }; }; };\n", 2,
	  "unknown setting 'pth' in service 'users' health" },
	{ ROUTE("timeout = 1;"), 6, "unknown setting 'timeout' in route #1" },
	{ "services: { users = { instances = [\"127.0.0.1:1\"];\n"
	  "  retry_budget = { ratio = 2; }; }; };\n", 2,
	  "unknown setting 'ratio' in service 'users' retry_budget" },
	{ "services: { users = { instances = [\"127.0.0.1:1\"];\n"
	  "  retry_budget = { percent = 101; }; }; };\n", 2,
	  "'percent' in service 'users' retry_budget must be between 0 and "
	  "100" },
	{ "services: { users = { instances = [\"127.0.0.1:1\"];\n"
	  "  max_inflight = -1; }; };\n", 2,
	  "'max_inflight' in service 'users' must not be negative" },
	{ "services: { users = { instances = [\"127.0.0.1:1\"];\n"
	  "  breaker = { statuses = [600]; }; }; };\n", 2,
	  "service 'users' breaker: status 600 is not between 100 and 599" },
	{ "services: { users = { instances = [\"127.0.0.1:1\"];\n"
	  "  breaker = { statuses = [\"5XY\"]; }; }; };\n", 2,
	  "service 'users' breaker: status '5XY' is not a class like \"5xx\"" },
	{ "services: { users = { instances = [\"127.0.0.1:1\"];\n"
	  "  breaker = { statuses = 500; }; }; };\n", 2,
	  "'statuses' in service 'users' breaker must be an array of statuses "
	  "and classes [500, 503] or [\"5xx\"]" },
	{ "services: { users = { instances = [\"127.0.0.1:1\"];\n"
	  "  health = { status = true; }; }; };\n", 2,
	  "service 'users' health: a status is an integer (503) or a class "
	  "(\"5xx\")" },
	{ "services: { users = { instances = [\"127.0.0.1:1\"];\n"
	  "  health = { path = \"/a b\"; }; }; };\n", 2,
	  "service 'users' health: path must be at most 1024 visible ASCII "
	  "bytes" },
	{ SVC "routes = ( { name = \"r\"; service = \"users\";\n"
	  "  match = { prefx = \"/a\"; }; } );\n", 4,
	  "unknown setting 'prefx' in route 'r' match" },
	{ ROUTE("transform = { request = { add_header = []; }; };"), 6,
	  "unknown setting 'add_header' in route 'r' transform.request" },
	{ "tiers: {\n free = { rate = 1; per_s = 1; burst = 1; brust = 2; };\n"
	  "};\n", 2, "unknown setting 'brust' in tier 'free'" },
	{ "auth: {\n jwt = {\n  keys = ( { alg = \"HS256\";\n"
	  "   secret = \"x\"; } ); }; };\n", 4,
	  "unknown setting 'secret' in auth.jwt key #1" },
	/* types and ranges */
	{ "server: {\n  workers = \"2\";\n};\n", 2,
	  "'workers' in server must be an integer" },
	{ "server: {\n  workers = 1.5;\n};\n", 2,
	  "'workers' in server must be an integer" },
	{ "server: {\n  workers = -1;\n};\n", 2,
	  "'workers' in server must not be negative" },
	{ "server: {\n  workers = 1000;\n};\n", 2,
	  "'workers' in server must be between 0 and 256" },
	{ "server: { limits = {\n  body_bytes = 4294967297; }; };\n", 2,
	  "integer 4294967297 does not fit in 32 bits; write 4294967297L "
	  "for a 64-bit value" },
	{ "server: { limits = {\n  headers = 0; }; };\n", 2,
	  "'headers' in server.limits must be between 1 and 10000" },
	{ "server: {\n underscores_in_headers = \"allow\"; };\n", 2,
	  "server.underscores_in_headers: 'allow' is not drop or refuse" },
	{ "server: {\n  admin = 9901;\n};\n", 2,
	  "'admin' in server must be a string" },
	{ "version = 1;\nserver = 1;\n", 2,
	  "'server' in the file must be a group { ... }" },
	{ "server: {\n  listen = { address = \"*:1\"; };\n};\n", 2,
	  "'listen' in server must be a list ( { ... }, ... )" },
	{ "server: {\n  pid_file = \"\";\n};\n", 2,
	  "'pid_file' in server must not be empty" },
	{ "services: { a = {\n  instances = \"127.0.0.1:1\"; }; };\n", 2,
	  "'instances' in service 'a' must be an array of strings "
	  "[ \"...\", ... ]" },
	{ "services: {\n  a = { balance = \"least_conn\"; }; };\n", 2,
	  "service 'a' needs 'instances'" },
	{ "services: {\n  a = { instances = []; }; };\n", 2,
	  "service 'a': 'instances' must not be empty" },
	/* version */
	{ "\nversion = 2;\n", 2,
	  "version 2 is not supported (this build reads version 1)" },
	/* routes */
	{ SVC "routes = (\n  { name = \"r\"; match = { path = \"/a\"; };\n"
	  "    service = \"nope\"; }\n);\n", 5,
	  "route 'r': unknown service 'nope'" },
	{ SVC "routes = (\n  { name = \"r\"; service = \"users\";\n"
	  "    match = { methods = [\"GET\"]; }; }\n);\n", 5,
	  "route 'r' match needs one of 'path', 'prefix' or 'regex'" },
	{ SVC "routes = (\n  { name = \"r\"; service = \"users\";\n"
	  "    match = { path = \"/a\";\n      prefix = \"/b\"; }; }\n);\n", 6,
	  "route 'r' match: give only one of 'path', 'prefix' or 'regex'" },
	{ SVC "routes = (\n  { name = \"r\";\n"
	  "    match = { path = \"/a\"; }; }\n);\n", 4,
	  "route 'r' needs 'service' or 'aggregate'" },
	{ SVC "routes = (\n  { name = \"r\"; match = { path = \"/a\"; };\n"
	  "    service = \"users\";\n    aggregate = { calls = ( { name = "
	  "\"p\"; service = \"users\"; path = \"/u\"; } ); }; }\n);\n", 6,
	  "route 'r' has both 'service' and 'aggregate'" },
	{ SVC "routes = (\n  { match = { path = \"/a\"; };\n"
	  "    service = \"users\"; }\n);\n", 4, "route #1 needs 'name'" },
	{ SVC "routes = (\n  { name = \"r\"; service = \"users\";\n"
	  "    match = { regex = \"^(ab\"; }; }\n);\n", 5,
	  "bad regex at offset 4: missing closing parenthesis" },
	{ ROUTE("\n rewrite = { pattern = \"a)\"; to = \"/\"; };"), 7,
	  "bad rewrite pattern at offset 1: unmatched closing parenthesis" },
	{ ROUTE("\n rewrite = { pattern = \"^/a(.*)$\";\n to = \"/b$2\"; };"), 8,
	  "route 'r' rewrite: '$2' names a group the pattern does not have "
	  "(it has 1)" },
	{ ROUTE("\n rewrite = { pattern = \"^/a\";\n to = \"/b${1}\"; };"), 8,
	  "route 'r' rewrite: '$1' names a group the pattern does not have "
	  "(it has 0)" },
	{ SVC "routes = (\n  { name = \"r\"; service = \"users\"; "
	  "match = { path = \"/\"; }; },\n"
	  "  { name = \"r\"; service = \"users\"; }\n);\n", 5,
	  "route name 'r' is used twice (first on line 4)" },
	{ SVC "routes = (\n  { name = \"r\"; service = \"users\";\n"
	  "    match = { path = \"/a\"; methods = [\"GET\",\n"
	  "      \"get\"]; }; }\n);\n", 6, "route 'r' match: unknown method "
	  "'get'" },
	{ ROUTE("\n rate_limit = { by = \"ip\";\n tier = \"gold\"; };"), 8,
	  "route 'r' rate_limit: unknown tier 'gold'" },
	{ ROUTE("\n rate_limit = { by = \"user\"; };"), 7,
	  "route 'r' rate_limit: by 'user' is not consumer, ip, route or "
	  "header:NAME" },
	{ ROUTE("\n rate_limit = { by = \"header:\"; };"), 7,
	  "route 'r' rate_limit: by 'header:' is not consumer, ip, route or "
	  "header:NAME" },
	{ ROUTE("\n transform = { response = {\n add_headers = [\"X-A: 1\",\n"
	  "\"X-Foo\"]; }; };"), 9, "route 'r' transform.response: 'X-Foo' is "
	  "not \"Name: value\"" },
	{ ROUTE("\n transform = { request = {\n add_headers = [\"Bad Name: x\"];"
	  " }; };"), 8, "route 'r' transform.request: 'Bad Name: x' is not "
	  "\"Name: value\" with a valid header name" },
	{ ROUTE("\n transform = { request = {\n remove_headers = [\"A B\"]; };"
	  " };"), 8, "route 'r' transform.request: 'A B' is not a valid "
	  "header name" },
	{ ROUTE("\n auth = \"jwt\";"), 7,
	  "route 'r': auth 'jwt' but the auth section does not configure it" },
	{ ROUTE("\n auth = \"basic\";"), 7,
	  "route 'r': auth 'basic' is not jwt, api_key, any or none" },
	/* addresses */
	{ "services: { a = {\n  instances = [\"127.0.0.1:0\"]; }; };\n", 2,
	  "service 'a' instances: bad address '127.0.0.1:0': port must be a "
	  "number between 1 and 65535" },
	{ "services: { a = { instances = [\"127.0.0.1:1\",\n"
	  "  \"example.com:80\"]; }; };\n", 2,
	  "service 'a' instances: bad address 'example.com:80': host must be "
	  "a numeric IPv4 address, [IPv6], localhost or *" },
	{ "server: {\n  admin = \"127.0.0.1\";\n};\n", 2,
	  "server.admin: bad address '127.0.0.1': expected host:port" },
	{ "server: { listen = (\n  { address = \"*:80\"; },\n"
	  "  { address = \"0.0.0.0:80\"; } ); };\n", 3,
	  "server.listen: address '0.0.0.0:80' is listed twice "
	  "(first on line 2)" },
	{ "server: { listen = (\n  { address = \"*:80\";\n"
	  "    tls = \"default\"; } ); };\n", 3,
	  "server.listen: tls 'default' is not an entry of the tls section" },
	/* balance, CIDRs, logs */
	{ "services: { a = { instances = [\"127.0.0.1:1\"];\n"
	  "  balance = \"hash:header:\"; }; };\n", 2, "service 'a': balance "
	  "'hash:header:' needs a header name after hash:header:" },
	{ "services: { a = { instances = [\"127.0.0.1:1\"];\n"
	  "  balance = \"random\"; }; };\n", 2, "service 'a': balance 'random' "
	  "is not round_robin, least_conn, hash:ip, hash:consumer or "
	  "hash:header:NAME" },
	{ "server: {\n  trusted_proxies = [\"10.0.0.0/8\",\n"
	  "   \"10.0.0.0/33\"];\n};\n", 3, "server.trusted_proxies: "
	  "'10.0.0.0/33' is not an address or CIDR (a.b.c.d/n, v6/n)" },
	{ "server: {\n  error_log = { level = \"verbose\"; };\n};\n", 2,
	  "server.error_log: level 'verbose' is not debug, info, warn or "
	  "error" },
	{ "server: {\n  access_log = { format = \"clf\"; };\n};\n", 2,
	  "server.access_log: format 'clf' is not json or combined" },
	{ "server: {\n  access_log = { redact = [\"session\",\n"
	  "   \"token=\"]; };\n};\n", 3, "server.access_log.redact: 'token=' "
	  "is not a parameter name (visible ASCII without & ; = # %, as it "
	  "reads percent-decoded)" },
	{ "server: {\n  access_log = { redact = [\"a b\"]; };\n};\n", 2,
	  "server.access_log.redact: 'a b' is not a parameter name (visible "
	  "ASCII without & ; = # %, as it reads percent-decoded)" },
	{ "server: {\n  access_log = {\n redact = [\"%74oken\"]; };\n};\n", 3,
	  "server.access_log.redact: '%74oken' is not a parameter name "
	  "(visible ASCII without & ; = # %, as it reads percent-decoded)" },
	{ "server: {\n  access_log = { redact = [\"Session\",\n"
	  "   \"session\"]; };\n};\n", 3, "server.access_log.redact: "
	  "'session' is listed twice" },
	{ "server: {\n  access_log = {\n redact = \"session\"; };\n};\n", 3,
	  "'redact' in server.access_log must be an array of strings "
	  "[ \"...\", ... ]" },
	{ "server: {\n  access_log = { redact = [\"\"]; };\n};\n", 2,
	  "'redact' in server.access_log holds an empty string" },
	{ "server: {\n  trace_header = \"TraceParent\";\n};\n", 2,
	  "server.trace_header: 'TraceParent' is the W3C trace context's own "
	  "header (the gateway sends it besides the trace header)" },
	{ "server: {\n  error_log = { path = \"off\"; };\n};\n", 2,
	  "server.error_log: path cannot be off (use \"-\" for stderr)" },
	/* tiers, tls, auth */
	{ "tiers: {\n  free = { rate = 0; per_s = 1; burst = 1; };\n};\n", 2,
	  "'rate' in tier 'free' must be between 1 and 1099511627776" },
	{ "tiers: {\n  free = { rate = 1; per_s = 0; burst = 1; };\n};\n", 2,
	  "'per_s' in tier 'free' must be between 1 and 1099511627776" },
	{ "tiers: {\n  free = { rate = 1; per_s = 1; burst = 0; };\n};\n", 2,
	  "'burst' in tier 'free' must be between 1 and 1099511627776" },
	{ "tiers: {\n  free = { rate = 1; per_s = 1; };\n};\n", 2,
	  "tier 'free' needs 'burst'" },
	{ "tls: {\n  default = {\n    cert = \"a\"; key = \"b\";\n"
	  "    min_version = \"TLSv1.1\"; };\n};\n", 4,
	  "tls 'default': min_version 'TLSv1.1' is not TLSv1.2 or TLSv1.3" },
	{ "tls: {\n  default = {\n    cert = \"a\"; };\n};\n", 2,
	  "tls 'default' needs 'key'" },
	{ "auth: {\n  jwt = { keys = (\n    { alg = \"HS256\";\n"
	  "      public_key = \"k\"; } ); };\n};\n", 4, "auth.jwt key #1: "
	  "HS256 takes 'secret_file', not 'public_key'" },
	{ "auth: {\n  jwt = { keys = (\n    { alg = \"none\";\n"
	  "      public_key = \"k\"; } ); };\n};\n", 3, "auth.jwt key #1: alg "
	  "'none' is not one of HS256/384/512, RS256/384/512, PS256/384/512, "
	  "ES256/384, EdDSA" },
	{ "auth: {\n  jwt = { issuer = \"x\"; };\n};\n", 2,
	  "auth.jwt needs 'keys' or 'jwks_file'" },
	{ "auth: {\n  api_keys = { header = \"X-K\"; };\n};\n", 2,
	  "auth.api_keys needs 'file'" },
	/* the cache: its share of the store, its settings */
	{ "server: { state = { max_mb = 16;\n cache_mb = 13; }; };\n", 2,
	  "server.state: cache_mb (13) may be at most 3/4 of max_mb (12 MB): "
	  "the rest is for rate limiting, breakers and health" },
	{ ROUTE("\n cache = { ttl_s = 5;\n stale_s = -1; };"), 8,
	  "'stale_s' in route 'r' cache must not be negative" },
	{ ROUTE("\n cache = { ttl_s = 5;\n max_body = 2147483648L; };"), 8,
	  "'max_body' in route 'r' cache must be between 0 and 1073741824" },
	{ ROUTE("\n cache = { ttl_s = 5;\n per_consumer = 1; };"), 8,
	  "'per_consumer' in route 'r' cache must be true or false" },
	{ ROUTE("\n cache = { ttl_s = 5;\n vary = [\"Accept\", \"accept\"]; };"),
	  8, "route 'r' cache: vary names 'accept' twice" },
	{ ROUTE("\n cache = { ttl = 5; };"), 7,
	  "unknown setting 'ttl' in route 'r' cache" },
	{ ROUTE("\n cache = { stale_s = 5; };"), 7,
	  "route 'r' cache needs 'ttl_s'" },
	/* aggregate validation (refused later, checked fully first) */
	{ SVC "routes = ( { name = \"r\"; match = { path = \"/a\"; };\n"
	  "  aggregate = { calls = (\n  { name = \"p\"; service = \"users\";"
	  " path = \"/u\";\n   fallback = \"{bad\"; } ); }; } );\n", 6,
	  "route 'r' aggregate call 'p': fallback must be JSON text or "
	  "\"cache\"" },
	{ SVC "routes = ( { name = \"r\"; match = { path = \"/a\"; };\n"
	  "  aggregate = { calls = (\n  { name = \"p\";\n"
	  "    service = \"nope\"; path = \"/u\"; } ); }; } );\n", 6,
	  "route 'r' aggregate call 'p': unknown service 'nope'" },
};

static const struct err_case unbuilt_cases[] = {
	{ ROUTE("\n scopes = [\"a\"];"), 7,
	  "route 'r': 'scopes' needs 'auth' (jwt, api_key or any): without a "
	  "verified identity every request would lack them" },
	{ ROUTE("\n rate_limit = { by = \"consumer\"; };"), 7,
	  "rate_limit by consumer needs 'auth' on the route (jwt, api_key or "
	  "any)" },
	{ ROUTE("\n cache = { ttl_s = 5;\n per_consumer = true; };"), 8,
	  "cache per_consumer needs 'auth' on the route (jwt, api_key or "
	  "any)" },
};

static void
test_errors(void **state)
{
	(void)state;
	run_err_cases(err_cases, sizeof(err_cases) / sizeof(err_cases[0]));
}

static void
test_unbuilt_refused(void **state)
{
	struct config *cfg;

	(void)state;
	run_err_cases(unbuilt_cases,
	    sizeof(unbuilt_cases) / sizeof(unbuilt_cases[0]));
	/* Supported on a route: rewrite, header transforms, auth "none". */
	cfg = load_ok(ROUTE("auth = \"none\";\n rewrite = { pattern = \"^/a"
	    "(.*)$\"; to = \"/b$$9$0$1\"; };\n transform = { request = { add_headers"
	    " = [\"X-A:  1 \"]; remove_headers = [\"Cookie\"]; }; response = {"
	    " add_headers = [\"X-B:2\"]; remove_headers = [\"Server\"]; }; };"));
	assert_string_equal(cfg->routes[0].req_add[0], "X-A: 1");
	assert_string_equal(cfg->routes[0].resp_add[0], "X-B: 2");
	assert_string_equal(cfg->routes[0].req_remove[0], "Cookie");
	assert_string_equal(cfg->routes[0].prefix, "/a");
	config_free(cfg);
	/* The cache, with every setting and with the defaults. */
	cfg = load_ok("server: { state = { max_mb = 16; cache_mb = 12; }; };\n"
	    ROUTE("cache = { ttl_s = 60; vary = [\"Accept-Encoding\"];"
	    " stale_s = 30; max_body = 4096; };"));
	assert_int_equal(cfg->server.state_cache_mb, 12);
	assert_true(cfg->routes[0].has_cache);
	assert_int_equal(cfg->routes[0].cache_ttl_s, 60);
	assert_int_equal(cfg->routes[0].cache_stale_s, 30);
	assert_int_equal(cfg->routes[0].cache_max_body, 4096);
	assert_false(cfg->routes[0].cache_per_consumer);
	assert_string_equal(cfg->routes[0].cache_vary[0], "Accept-Encoding");
	config_free(cfg);
	cfg = load_ok(ROUTE("cache = { ttl_s = 1; };"));
	assert_int_equal(cfg->routes[0].cache_stale_s, 0);
	assert_int_equal(cfg->routes[0].cache_max_body, 1048576);
	config_free(cfg);
}

/* An aggregate route, lines 3..8: the route's EXTRA on line 5, the
 * call's name on line 7, its path and EXTRA on line 8. */
#define AGG(extra, name, path, cextra) SVC \
	"routes = (\n" \
	"  { name = \"r\"; match = { regex = \"^/a/([a-z]+)$\"; };\n" \
	"    " extra "\n" \
	"    aggregate = { timeout_ms = 200;\n" \
	"      calls = ( { name = \"" name "\"; service = \"users\";\n" \
	"        path = \"" path "\"; " cextra " } ); }; } );\n"

static const struct err_case agg_cases[] = {
	{ AGG("", "degraded", "/u", ""), 7, "route 'r' aggregate call name "
	  "'degraded' is the merged object's list of degraded parts" },
	{ AGG("", "a b", "/u", ""), 7, "route 'r' aggregate call name 'a b' "
	  "must be 1 to 64 letters, digits, '_', '-' or '.'" },
	{ AGG("", "p", "/u/{x}", ""), 8, "route 'r' aggregate call 'p': path "
	  "'/u/{x}': '{x}' is not a template (use {consumer}, {query.NAME}, "
	  "{header.NAME} or {1}..{9})" },
	{ AGG("", "p", "/u/{consumer}", ""), 8, "route 'r' aggregate call "
	  "'p': '/u/{consumer}' uses {consumer}, which needs 'auth' on the "
	  "route (jwt, api_key or any)" },
	{ AGG("", "p", "/u/{2}", ""), 8, "route 'r' aggregate call 'p': "
	  "'/u/{2}' uses {2}, but the route's match regex has fewer groups" },
	{ AGG("", "p", "/u v", ""), 8, "route 'r' aggregate call 'p': path "
	  "'/u v' holds a space, '#' or a byte that must be %-encoded" },
	{ AGG("", "p", "/u", "timeout_ms = 300;"), 8, "route 'r' aggregate "
	  "call 'p': timeout_ms 300 is past the aggregate's timeout_ms (200), "
	  "which ends every call" },
	{ AGG("", "p", "/u", "forward_headers = [\"Host\"];"), 8,
	  "route 'r' aggregate call 'p': 'Host' cannot be forwarded: the "
	  "gateway sets it for each call" },
	{ AGG("", "p", "/u", "fallback = \"[1,\";"), 8, "route 'r' aggregate "
	  "call 'p': fallback must be JSON text or \"cache\"" },
	{ AGG("service = \"users\";", "p", "/u", ""), 6, "route 'r' has both "
	  "'service' and 'aggregate'" },
	{ ROUTE("\n transform = { response = {\n strip_fields = [\"a..b\"]; "
	  "}; };"), 8, "route 'r' transform.response: strip_fields: field "
	  "'a..b' has an empty name (a path is names joined by '.')" },
	{ ROUTE("\n transform = { request = {\n rename_headers = [\"X-A\"]; "
	  "}; };"), 8, "route 'r' transform.request: rename 'X-A' is not "
	  "\"Old: New\"" },
	{ ROUTE("\n transform = { response = {\n rename_headers = [\"X-A: "
	  "B C\"]; }; };"), 8, "route 'r' transform.response: rename 'X-A: "
	  "B C' is not \"Old: New\" with two header names" },
	/* The framing and the headers the gateway sets are not the
	 * operator's to add or rename into: two Content-Lengths, or a
	 * client's X-Len renamed into one, would desynchronise. */
	{ ROUTE("\n transform = { request = {\n add_headers = [\"X-A: 1\",\n"
	  "\"Content-Length: 5\"]; }; };"), 9, "route 'r' transform.request: "
	  "'Content-Length' cannot be set or renamed: the gateway writes the "
	  "framing and hop-by-hop headers itself" },
	{ ROUTE("\n transform = { response = {\n add_headers = [\""
	  "transfer-encoding: chunked\"]; }; };"), 8, "route 'r' "
	  "transform.response: 'transfer-encoding' cannot be set or renamed: "
	  "the gateway writes the framing and hop-by-hop headers itself" },
	{ ROUTE("\n transform = { request = {\n rename_headers = [\"X-Len: "
	  "Content-Length\"]; }; };"), 8, "route 'r' transform.request: "
	  "'Content-Length' cannot be set or renamed: the gateway writes the "
	  "framing and hop-by-hop headers itself" },
	{ ROUTE("\n transform = { response = {\n rename_headers = [\""
	  "Connection: X-C\"]; }; };"), 8, "route 'r' transform.response: "
	  "'Connection' cannot be set or renamed: the gateway writes the "
	  "framing and hop-by-hop headers itself" },
	{ ROUTE("\n transform = { request = {\n add_headers = [\"x-trace-id: "
	  "abc\"]; }; };"), 8, "route 'r' transform.request: 'x-trace-id' "
	  "cannot be set or renamed: the gateway sets it (the trace id)" },
	{ ROUTE("\n transform = { response = {\n add_headers = [\"X-Trace-ID: "
	  "abc\"]; }; };"), 8, "route 'r' transform.response: 'X-Trace-ID' "
	  "cannot be set or renamed: the gateway sets it (the trace id)" },
	{ ROUTE("\n transform = { request = {\n add_headers = [\"traceparent: "
	  "x\"]; }; };"), 8, "route 'r' transform.request: 'traceparent' "
	  "cannot be set or renamed: the gateway sets it (the trace context)" },
	{ ROUTE("\n transform = { request = {\n add_headers = [\""
	  "X-Forwarded-For: 1.2.3.4\"]; }; };"), 8, "route 'r' "
	  "transform.request: 'X-Forwarded-For' cannot be set or renamed: the "
	  "gateway sets it (X-Forwarded-*)" },
	{ ROUTE("\n transform = { request = {\n rename_headers = [\"X-Who: "
	  "X-User-ID\"]; }; };"), 8, "route 'r' transform.request: "
	  "'X-User-ID' cannot be set or renamed: the gateway sets it from the "
	  "verified identity" },
	{ ROUTE("\n transform = { request = {\n add_headers = [\""
	  "X-User-Tier: free\"]; }; };"), 8, "route 'r' transform.request: "
	  "'X-User-Tier' cannot be set or renamed: the gateway sets it from "
	  "the verified identity" },
	{ ROUTE("\n transform = { request = {\n add_headers = [\"X-U: "
	  "{consumer}\"]; }; };"), 8, "route 'r' transform.request: 'X-U: "
	  "{consumer}' uses {consumer}, which needs 'auth' on the route (jwt, "
	  "api_key or any)" },
	{ ROUTE("\n transform = { response = {\n add_headers = [\"X-U: "
	  "{1}\"]; }; };"), 8, "route 'r' transform.response: 'X-U: {1}' uses "
	  "{1}, but the route's match is not a regex" },
};

/* Whether a route whose transform (DIR: request or response) uses NAME
 * as FORM (0 added, 1 renamed into, 2 renamed out of) loads: false, and
 * the reason printed, when that differs from OK. */
static bool
transform_loads_as(const char *dir, const char *name, int form, bool ok)
{
	static const char *const fmt[] = {
	    "transform = { %s = { add_headers = [\"%s: 1\"]; }; };",
	    "transform = { %s = { rename_headers = [\"X-Old: %s\"]; }; };",
	    "transform = { %s = { rename_headers = [\"%s: X-New\"]; }; };",
	};
	char tf[256], text[1024], err[512] = "";
	struct config *cfg = NULL;
	bool loaded;

	snprintf(tf, sizeof(tf), fmt[form], dir, name);
	snprintf(text, sizeof(text), "%sroutes = ( { name = \"r\"; match = "
	    "{ prefix = \"/a\"; }; service = \"users\"; %s } );\n", SVC,
	    tf);
	loaded = load_text(text, &cfg, err, sizeof(err)) == 0;
	config_free(cfg);
	if (loaded == ok && (ok || strstr(err, "cannot be set or renamed")))
		return true;
	print_error("%s: %s\n", tf, loaded ? "loaded" : err);
	return false;
}

/* Every header the README lists as the gateway's own is refused in a
 * transform, added, renamed into or renamed out of, in any case; the
 * request-only ones pass on the response side. */
static void
test_transform_owned_headers(void **state)
{
	static const char *const both[] = { "Content-Length",
	    "Transfer-Encoding", "Connection", "Keep-Alive",
	    "Proxy-Connection", "TE", "Trailer", "Upgrade", "Expect",
	    "X-Trace-ID", "x-trace-id", "content-length", NULL };
	static const char *const request[] = { "traceparent", "tracestate",
	    "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
	    "X-User-ID", "X-User-Tier", "X-User-Scopes", "x-user-id", NULL };
	size_t i, bad = 0;
	int form;

	(void)state;
	for (form = 0; form < 3; form++) {
		for (i = 0; both[i] != NULL; i++)
			bad += !transform_loads_as("request", both[i], form,
			    false) + !transform_loads_as("response", both[i],
			    form, false);
		for (i = 0; request[i] != NULL; i++)
			bad += !transform_loads_as("request", request[i], form,
			    false) + !transform_loads_as("response", request[i],
			    form, true);
		bad += !transform_loads_as("request", "X-Gateway", form,
		    true) + !transform_loads_as("response", "X-Gateway", form,
		    true);
	}
	assert_int_equal(bad, 0);
}

/* Aggregation and the transforms: every setting checked with its line,
 * and the defaults. */
static void
test_aggregate_settings(void **state)
{
	struct config *cfg;
	const struct cfg_route *r;

	(void)state;
	run_err_cases(agg_cases, sizeof(agg_cases) / sizeof(agg_cases[0]));
	cfg = load_ok(AGG("", "p", "/u/{1}?q={query.x}&h={header.X-Y}",
	    "fallback = \"cache\"; forward_headers = [\"Accept-Language\"];"));
	r = &cfg->routes[0];
	assert_int_equal(r->ncalls, 1);
	assert_int_equal(r->service, -1);
	assert_int_equal(r->aggregate_timeout_ms, 200);
	assert_int_equal(r->calls[0].timeout_ms, 200);
	assert_int_equal(r->aggregate_part_bytes, 1 << 20);
	assert_int_equal(r->aggregate_body_bytes, 4 << 20);
	assert_int_equal(r->aggregate_fallback_ttl_s, 86400);
	assert_string_equal(r->calls[0].forward_headers[0], "Accept-Language");
	config_free(cfg);
	cfg = load_ok(ROUTE("\n transform = { request = { rename_headers = "
	    "[\"X-A:X-B\"]; }; response = { strip_fields = [\"a\", \"b.c\"]; "
	    "rename_headers = [\"Server:  X-Upstream \"]; add_headers = "
	    "[\"X-Q: {query.q} {x}\"]; }; };"));
	r = &cfg->routes[0];
	assert_string_equal(r->req_rename[0], "X-A: X-B");
	assert_string_equal(r->resp_rename[0], "Server: X-Upstream");
	assert_int_equal(r->nstrip_fields, 2);
	assert_int_equal(r->strip_buffer_bytes, 1 << 20);
	config_free(cfg);
}

/* The key files auth names are loaded at config load: a missing or
 * broken one is refused with its place, before any worker starts. */
static void
test_auth_files_checked(void **state)
{
	struct config *cfg = NULL;
	char err[512] = "";
	FILE *f;

	(void)state;
	assert_true(check_err(SVC "auth: { jwt = { keys = (\n"
	    "  { kid = \"k\"; alg = \"HS256\"; secret_file = "
	    "\"ptc-no-such.secret\"; } ); }; };\n", 4,
	    "/tmp/ptc-no-such.secret: No such file or directory"));
	f = fopen("/tmp/ptc-bad-keys.conf", "w");
	assert_non_null(f);
	fputs("keys = ( { sha256 = \"zz\"; consumer = \"a\"; } );\n", f);
	fclose(f);
	assert_int_equal(load_text(SVC "auth: { api_keys = { file = "
	    "\"ptc-bad-keys.conf\"; }; };\n", &cfg, err, sizeof(err)), -1);
	assert_null(cfg);
	assert_string_equal(err, "/tmp/ptc-bad-keys.conf:1: keys #1: sha256 "
	    "must be 64 hex digits (the key's SHA-256: gwctl key hash)");
	unlink("/tmp/ptc-bad-keys.conf");
	/* a certificate that does not load: its path and OpenSSL's word */
	assert_int_equal(load_text("tls: { default = { cert = "
	    "\"ptc-no-such.crt\"; key = \"k\"; }; };\n"
	    "server: { listen = (\n  { address = \"*:1\";\n"
	    "    tls = \"default\"; } ); };\n", &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/tmp/ptc-no-such.crt: cannot load the "
	    "certificate ("));
}

/*
 * Several groups on one line: each setting's value and line come from
 * libconfig, so a name that appears twice on a line (a service's
 * timeout_ms beside its health check's) is read for the right group.
 */
static void
test_groups_on_one_line(void **state)
{
	struct config *cfg;
	const struct cfg_service *s;

	(void)state;
	cfg = load_ok("services: { users = { instances = [\"127.0.0.1:1\"]; "
	    "timeout_ms = 1500; health = { path = \"/h\"; timeout_ms = 150; "
	    "interval_ms = 1500; }; }; };\n");
	s = &cfg->services[0];
	assert_int_equal(s->timeout_ms, 1500);
	assert_int_equal(s->health.timeout_ms, 150);
	assert_int_equal(s->health.interval_ms, 1500);
	config_free(cfg);

	/* The inner group first, then the outer setting of the same name. */
	cfg = load_ok("services: { users = { instances = [\"127.0.0.1:1\"]; "
	    "health = { timeout_ms = 150; }; timeout_ms = 1500; }; };\n");
	assert_int_equal(cfg->services[0].timeout_ms, 1500);
	assert_int_equal(cfg->services[0].health.timeout_ms, 150);
	config_free(cfg);

	/* Two services, two tiers, a breaker: all on one line each. */
	cfg = load_ok("services: { a = { instances = [\"127.0.0.1:1\"]; "
	    "timeout_ms = 10; retries = 0; breaker = { failures = 7; "
	    "open_ms = 10; }; }; b = { instances = [\"127.0.0.1:2\"]; "
	    "connect_timeout_ms = 30; timeout_ms = 20; retries = 2; }; };\n"
	    "tiers: { t1 = { rate = 1; per_s = 2; burst = 3; }; t2 = { rate = 4;"
	    " per_s = 5; burst = 6; }; };\n");
	assert_int_equal(cfg->services[0].timeout_ms, 10);
	assert_int_equal(cfg->services[0].retries, 0);
	assert_int_equal(cfg->services[0].breaker.failures, 7);
	assert_int_equal(cfg->services[0].breaker.open_ms, 10);
	assert_int_equal(cfg->services[1].connect_timeout_ms, 30);
	assert_int_equal(cfg->services[1].timeout_ms, 20);
	assert_int_equal(cfg->services[1].retries, 2);
	assert_int_equal(cfg->tiers[0].rate, 1);
	assert_int_equal(cfg->tiers[0].burst, 3);
	assert_int_equal(cfg->tiers[1].rate, 4);
	assert_int_equal(cfg->tiers[1].per_s, 5);
	assert_int_equal(cfg->tiers[1].burst, 6);
	config_free(cfg);

	/* Numbers in strings and comments are not settings. */
	cfg = load_ok("services: { a = { instances = [\"127.0.0.1:1\"]; "
	    "health = { path = \"/99999999999\"; }; }; }; # 99999999999\n"
	    "/* 4294967297 */ server: { limits = { body_bytes = 4294967297L; "
	    "}; }; // 0xFFFFFFFFFF\n");
	assert_string_equal(cfg->services[0].health.path, "/99999999999");
	assert_int_equal(cfg->server.limits.body_bytes, 4294967297ull);
	config_free(cfg);
}

/* A literal libconfig would wrap is refused at its own line, whatever
 * else shares the line. */
static const struct err_case wrap_cases[] = {
	{ "\nservices: { a = { instances = [\"127.0.0.1:1\"]; "
	  "timeout_ms = 10; }; b = { instances = [\"127.0.0.1:2\"]; "
	  "timeout_ms = 4294967297; }; };\n", 2,
	  "integer 4294967297 does not fit in 32 bits; write 4294967297L "
	  "for a 64-bit value" },
	{ "services: { a = { instances = [\"127.0.0.1:1\"];\n"
	  "health = { timeout_ms = 150; }; timeout_ms = 0x100000001; }; };\n",
	  2, "integer 0x100000001 does not fit in 32 bits; "
	  "write 0x100000001L for a 64-bit value" },
	{ "server: { limits = {\n  headers = 10; body_bytes = -2147483649; "
	  "}; };\n", 2, "integer -2147483649 does not fit in 32 bits; "
	  "write -2147483649L for a 64-bit value" },
	{ "server: { limits = {\n  body_bytes = 99999999999999999999L; }; };"
	  "\n", 2, "integer 99999999999999999999L does not fit in 64 bits" },
	{ "server: { limits = { body_bytes = 1099511627777L;\n }; };\n", 1,
	  "'body_bytes' in server.limits must be between 0 and "
	  "1099511627776" },
};

static void
test_wrapped_literals(void **state)
{
	(void)state;
	run_err_cases(wrap_cases, sizeof(wrap_cases) / sizeof(wrap_cases[0]));
}

static void
test_missing_file(void **state)
{
	struct config *cfg = (void *)1;
	char err[512];

	(void)state;
	assert_int_equal(config_load("/nonexistent/portico.conf", NULL, &cfg,
	    err, sizeof(err)), -1);
	assert_null(cfg);
	assert_string_equal(err, "/nonexistent/portico.conf: cannot open: "
	    "No such file or directory");
	assert_int_equal(config_load(DEMO_CONF, "/nonexistent-prefix", &cfg,
	    err, sizeof(err)), -1);
	assert_string_equal(err, DEMO_CONF ": prefix '/nonexistent-prefix': "
	    "No such file or directory");
}

/* ---- addresses, CIDRs, methods -------------------------------------- */

static void
test_parse_addr(void **state)
{
	static const char *const bad[] = {
		":80", "1.2.3.4", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3:80",
		"host:80", "[::1]80", "[zz]:1", "1.2.3.4:+80", "1.2.3.4:",
		"::1:80", "1.2.3.4:8080x", "[::1]:", "01.2.3.4:80",
		"1.2.3.4:1000000",
	};
	struct cfg_addr a;
	const struct sockaddr_in *sin = (const void *)&a.ss;
	const struct sockaddr_in6 *sin6 = (const void *)&a.ss;
	char err[256];
	size_t i;

	(void)state;
	assert_int_equal(config_parse_addr("127.0.0.1:8001", &a, err,
	    sizeof(err)), 0);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(sin->sin_port), 8001);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_string_equal(a.text, "127.0.0.1:8001");

	assert_int_equal(config_parse_addr("localhost:80", &a, err,
	    sizeof(err)), 0);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(config_parse_addr("*:65535", &a, err, sizeof(err)),
	    0);
	assert_int_equal(sin->sin_addr.s_addr, 0);
	assert_int_equal(ntohs(sin->sin_port), 65535);

	assert_int_equal(config_parse_addr("[::1]:443", &a, err, sizeof(err)),
	    0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(a.len, sizeof(struct sockaddr_in6));
	assert_int_equal(ntohs(sin6->sin6_port), 443);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (config_parse_addr(bad[i], &a, err, sizeof(err)) != -1)
			fail_msg("accepted '%s'", bad[i]);
}

static void
set4(struct sockaddr_in *sin, const char *s)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, s, &sin->sin_addr), 1);
}

static void
set6(struct sockaddr_in6 *sin6, const char *s)
{
	memset(sin6, 0, sizeof(*sin6));
	sin6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, s, &sin6->sin6_addr), 1);
}

static bool
in(const char *cidr, const char *addr)
{
	struct cfg_cidr c;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	assert_int_equal(cfg_parse_cidr(cidr, &c), 0);
	if (strchr(addr, ':') != NULL) {
		set6(&sin6, addr);
		return cidr_match(&c, (struct sockaddr *)&sin6);
	}
	set4(&sin, addr);
	return cidr_match(&c, (struct sockaddr *)&sin);
}

static void
test_cidr(void **state)
{
	static const char *const bad[] = {
		"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/x", "10.0.0/8",
		"::/129", "10.0.0.0/-1", "example.com/8", "10.0.0.0/8/8",
	};
	struct cfg_cidr c;
	size_t i;

	(void)state;
	assert_true(in("10.0.0.0/8", "10.1.2.3"));
	assert_false(in("10.0.0.0/8", "11.0.0.1"));
	assert_true(in("10.1.2.3/8", "10.9.9.9"));	/* host bits dropped */
	assert_true(in("0.0.0.0/0", "203.0.113.7"));
	assert_true(in("192.168.1.5", "192.168.1.5"));
	assert_false(in("192.168.1.5", "192.168.1.4"));
	assert_true(in("192.168.1.4/31", "192.168.1.5"));
	assert_false(in("192.168.1.4/31", "192.168.1.6"));
	assert_true(in("172.16.0.0/12", "172.31.255.255"));
	assert_false(in("172.16.0.0/12", "172.32.0.0"));
	assert_true(in("2001:db8::/32", "2001:db8::1"));
	assert_false(in("2001:db8::/32", "2001:db9::1"));
	assert_true(in("::1", "::1"));
	assert_false(in("::1", "::2"));
	assert_true(in("::/0", "2001:db8::1"));
	assert_false(in("::/0", "10.0.0.1"));		/* families differ */
	assert_false(in("10.0.0.0/8", "2001:db8::1"));
	assert_true(in("10.0.0.0/8", "::ffff:10.2.3.4"));	/* v4-mapped */
	assert_false(in("10.0.0.0/8", "::ffff:11.2.3.4"));
	assert_int_equal(cfg_parse_cidr("10.1.2.3/8", &c), 0);
	assert_int_equal(c.addr[1], 0);
	assert_int_equal(c.bits, 8);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cfg_parse_cidr(bad[i], &c) != -1)
			fail_msg("accepted '%s'", bad[i]);
}

static void
test_methods(void **state)
{
	int m;

	(void)state;
	for (m = 0; m < M_OTHER; m++)
		assert_int_equal(method_from_name(method_name(m),
		    strlen(method_name(m))), m);
	assert_int_equal(method_from_name("get", 3), M_OTHER);
	assert_int_equal(method_from_name("GETX", 4), M_OTHER);
	assert_int_equal(method_from_name("GETX", 3), M_GET);
	assert_int_equal(method_from_name("", 0), M_OTHER);
	assert_string_equal(method_name(M_PATCH), "PATCH");
	assert_string_equal(method_name(M_OTHER), "OTHER");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_demo_loads),
		cmocka_unit_test(test_contract_trimmed_loads),
		cmocka_unit_test(test_contract_full),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_resilience_settings),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_unbuilt_refused),
		cmocka_unit_test(test_aggregate_settings),
		cmocka_unit_test(test_transform_owned_headers),
		cmocka_unit_test(test_auth_files_checked),
		cmocka_unit_test(test_groups_on_one_line),
		cmocka_unit_test(test_wrapped_literals),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_methods),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
