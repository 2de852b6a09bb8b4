/*
 * config_value: what every section of the configuration loader shares:
 * method names, addresses and CIDRs, "FILE:LINE: reason" errors, the typed
 * getters that refuse a value of the wrong type or range, and the checks
 * of tokens, header lines, regexes and JSON.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "config.h"
#include "config-int.h"

/* ---- methods ------------------------------------------------------- */

static const char *const method_names[M__COUNT] = {
	[M_GET] = "GET", [M_HEAD] = "HEAD", [M_POST] = "POST",
	[M_PUT] = "PUT", [M_DELETE] = "DELETE", [M_PATCH] = "PATCH",
	[M_OPTIONS] = "OPTIONS", [M_TRACE] = "TRACE",
	[M_CONNECT] = "CONNECT", [M_OTHER] = "OTHER",
};

enum http_method
method_from_name(const char *s, size_t len)
{
	int m;

	for (m = 0; m < M_OTHER; m++)
		if (strlen(method_names[m]) == len &&
		    memcmp(method_names[m], s, len) == 0)
			return m;
	return M_OTHER;
}

const char *
method_name(enum http_method m)
{
	if ((unsigned)m >= M__COUNT)
		return "OTHER";
	return method_names[m];
}

/* ---- addresses and CIDRs ------------------------------------------- */

static int
parse_port(const char *p, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (*p == '\0' || strlen(p) > 5)
		return -1;
	for (i = 0; p[i] != '\0'; i++) {
		if (!isdigit((unsigned char)p[i]))
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int
config_parse_addr(const char *s, struct cfg_addr *a, char *err,
    size_t errlen)
{
	char host[64];
	const char *colon, *port_s;
	size_t hlen;
	uint16_t port;
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;

	memset(a, 0, sizeof(*a));
	if (strlen(s) >= sizeof(a->text)) {
		snprintf(err, errlen, "bad address '%.40s...': too long", s);
		return -1;
	}
	if (s[0] == '[') {
		colon = strstr(s, "]:");
		if (colon == NULL) {
			snprintf(err, errlen, "bad address '%s': expected "
			    "[IPv6]:port", s);
			return -1;
		}
		hlen = colon - (s + 1);
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		port_s = colon + 2;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			snprintf(err, errlen, "bad address '%s': '%s' is not "
			    "a numeric IPv6 address", s, host);
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		a->len = sizeof(*sin6);
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "bad address '%s': expected "
			    "host:port", s);
			return -1;
		}
		hlen = colon - s;
		memcpy(host, s, hlen);
		host[hlen] = '\0';
		port_s = colon + 1;
		if (strcmp(host, "localhost") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else if (strcmp(host, "*") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			snprintf(err, errlen, "bad address '%s': host must be "
			    "a numeric IPv4 address, [IPv6], localhost or *",
			    s);
			return -1;
		}
		sin->sin_family = AF_INET;
		a->len = sizeof(*sin);
	}
	if (parse_port(port_s, &port) < 0) {
		snprintf(err, errlen, "bad address '%s': port must be a "
		    "number between 1 and 65535", s);
		return -1;
	}
	if (a->ss.ss_family == AF_INET)
		sin->sin_port = htons(port);
	else
		sin6->sin6_port = htons(port);
	snprintf(a->text, sizeof(a->text), "%s", s);
	return 0;
}

bool
cfg_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b)
{
	const struct sockaddr_in *a4 = (const void *)&a->ss;
	const struct sockaddr_in *b4 = (const void *)&b->ss;
	const struct sockaddr_in6 *a6 = (const void *)&a->ss;
	const struct sockaddr_in6 *b6 = (const void *)&b->ss;

	if (a->ss.ss_family != b->ss.ss_family)
		return false;
	if (a->ss.ss_family == AF_INET)
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	return a6->sin6_port == b6->sin6_port &&
	    memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) == 0;
}

/* cfg_parse_cidr: "a.b.c.d/n", "v6/n", or a bare address (a single host).
 * Host bits below the mask are cleared. */
int
cfg_parse_cidr(const char *s, struct cfg_cidr *c)
{
	char host[64];
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	int max, i;
	long bits;

	memset(c, 0, sizeof(*c));
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else
		return -1;
	bits = max;
	if (slash != NULL) {
		const char *p = slash + 1;

		if (*p == '\0' || strlen(p) > 3)
			return -1;
		bits = 0;
		for (; *p != '\0'; p++) {
			if (!isdigit((unsigned char)*p))
				return -1;
			bits = bits * 10 + (*p - '0');
		}
		if (bits > max)
			return -1;
	}
	c->bits = (int)bits;
	for (i = 0; i < max / 8; i++) {
		int keep = c->bits - i * 8;

		if (keep >= 8)
			continue;
		c->addr[i] &= keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
	}
	return 0;
}

static bool
prefix_match(const uint8_t *net, const uint8_t *addr, int bits)
{
	int full = bits / 8, rest = bits % 8;

	if (memcmp(net, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((net[full] ^ addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool
cidr_match(const struct cfg_cidr *c, const struct sockaddr *sa)
{
	static const uint8_t v4mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};
	const struct sockaddr_in *sin = (const void *)sa;
	const struct sockaddr_in6 *sin6 = (const void *)sa;
	const uint8_t *b6;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET && c->family == AF_INET)
		return prefix_match(c->addr,
		    (const uint8_t *)&sin->sin_addr.s_addr, c->bits);
	if (sa->sa_family != AF_INET6)
		return false;
	b6 = sin6->sin6_addr.s6_addr;
	if (c->family == AF_INET6)
		return prefix_match(c->addr, b6, c->bits);
	/* A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d. */
	if (c->family == AF_INET && memcmp(b6, v4mapped, 12) == 0)
		return prefix_match(c->addr, b6 + 12, c->bits);
	return false;
}

bool
config_trusted(const struct cfg_server *sv, int family, const uint8_t *addr)
{
	struct sockaddr_storage ss;
	size_t i;

	if (sv->ntrusted == 0)
		return false;
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = (sa_family_t)family;
	if (family == AF_INET)
		memcpy(&((struct sockaddr_in *)&ss)->sin_addr, addr, 4);
	else
		memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, addr, 16);
	for (i = 0; i < sv->ntrusted; i++)
		if (cidr_match(&sv->trusted[i], (struct sockaddr *)&ss))
			return true;
	return false;
}

int
config_service_index(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->nservices; i++)
		if (strcmp(cfg->services[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* ---- error reporting and typed getters ----------------------------- */

/* cfg_incdir_of: the directory to print before FILE: libconfig names an
 * @include'd file as written, relative to the include directory. */
const char *
cfg_incdir_of(const struct ld *ld, const char *file)
{
	if (strcmp(file, ld->file) == 0 || file[0] == '/' ||
	    ld->incdir[0] == '\0')
		return "";
	return ld->incdir;
}

/* cfg_bad: "FILE:LINE: reason" at setting S (NULL or the root: no line). */
int
cfg_bad(struct ld *ld, const config_setting_t *s, const char *fmt, ...)
{
	char reason[512];
	const char *file = ld->file;
	unsigned line = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (s != NULL) {
		line = config_setting_source_line(s);
		if (config_setting_source_file(s) != NULL)
			file = config_setting_source_file(s);
	}
	if (line > 0)
		snprintf(ld->err, ld->errlen, "%s%s:%u: %s", cfg_incdir_of(ld, file),
		    file, line, reason);
	else
		snprintf(ld->err, ld->errlen, "%s: %s", file, reason);
	return -1;
}

int
cfg_oom(struct ld *ld)
{
	return cfg_bad(ld, NULL, "out of memory");
}

int
cfg_dup_str(struct ld *ld, const char *s, char **out)
{
	*out = strdup(s);
	return *out == NULL ? cfg_oom(ld) : 0;
}

/* cfg_check_keys: refuse any member of group G not listed in KEYS. */
int
cfg_check_keys(struct ld *ld, const config_setting_t *g,
    const char *const *keys, const char *what)
{
	int i, n = config_setting_length(g);
	const char *const *k;

	for (i = 0; i < n; i++) {
		const config_setting_t *m = config_setting_get_elem(g, i);
		const char *name = config_setting_name(m);

		for (k = keys; *k != NULL; k++)
			if (strcmp(*k, name) == 0)
				break;
		if (*k != NULL)
			continue;
		if (what == NULL)
			return cfg_bad(ld, m, "unknown setting '%s'", name);
		return cfg_bad(ld, m, "unknown setting '%s' in %s", name, what);
	}
	return 0;
}

const config_setting_t *
cfg_member(const config_setting_t *g, const char *name)
{
	return g == NULL ? NULL : config_setting_get_member(g, name);
}

/* cfg_lookup_from: a path lookup that accepts a const root. */
const config_setting_t *
cfg_lookup_from(const config_setting_t *root, const char *path)
{
	return config_setting_lookup((config_setting_t *)root, path);
}

/*
 * literal_ok: libconfig 1.5 silently wraps a decimal literal that does not
 * fit in 32 bits (4294967297 reads as 1). Re-read the literal from the file
 * text and say whether it is the value libconfig produced. Where the
 * literal cannot be found (an @include'd file, odd layout) trust libconfig.
 */
static bool
literal_ok(struct ld *ld, const config_setting_t *s, long long v)
{
	const char *name = config_setting_name(s), *p, *end, *q;
	unsigned line = config_setting_source_line(s), l = 1;
	size_t nlen;
	unsigned long long u;
	bool neg = false;
	char *e;

	if (ld->text == NULL || name == NULL ||
	    config_setting_type(s) != CONFIG_TYPE_INT ||
	    config_setting_source_file(s) == NULL ||
	    strcmp(config_setting_source_file(s), ld->file) != 0)
		return true;
	p = ld->text;
	end = ld->text + ld->textlen;
	while (p < end && l < line) {
		q = memchr(p, '\n', end - p);
		if (q == NULL)
			return true;
		p = q + 1;
		l++;
	}
	q = memchr(p, '\n', end - p);
	if (q != NULL)
		end = q;
	nlen = strlen(name);
	for (; p + nlen <= end; p++) {
		const char *r = p + nlen;

		if (memcmp(p, name, nlen) != 0)
			continue;
		if (p > ld->text && (isalnum((unsigned char)p[-1]) ||
		    p[-1] == '_' || p[-1] == '-' || p[-1] == '*'))
			continue;
		while (r < end && (*r == ' ' || *r == '\t'))
			r++;
		if (r >= end || (*r != '=' && *r != ':'))
			continue;
		r++;
		while (r < end && (*r == ' ' || *r == '\t'))
			r++;
		if (r < end && (*r == '-' || *r == '+')) {
			neg = *r == '-';
			r++;
		}
		errno = 0;
		u = strtoull(r, &e, 0);
		if (e == r)
			return true;
		if (errno == ERANGE)
			return false;
		if (neg)
			return u <= (unsigned long long)LLONG_MAX + 1 &&
			    (long long)(0 - u) == v;
		return v >= 0 && u == (unsigned long long)v;
	}
	return true;
}

/* cfg_get_uint: integer NAME of G in [min, max], DEF when absent. */
int
cfg_get_uint(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, uint64_t min, uint64_t max, uint64_t def,
    uint64_t *out)
{
	const config_setting_t *s = cfg_member(g, name);
	long long v;

	*out = def;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64)
		return cfg_bad(ld, s, "'%s' in %s must be an integer", name, what);
	v = config_setting_get_int64(s);
	if (!literal_ok(ld, s, v))
		return cfg_bad(ld, s, "'%s' in %s is out of range (%llu..%llu)",
		    name, what, (unsigned long long)min,
		    (unsigned long long)max);
	if (v < 0)
		return cfg_bad(ld, s, "'%s' in %s must not be negative", name,
		    what);
	if ((uint64_t)v < min || (uint64_t)v > max)
		return cfg_bad(ld, s, "'%s' in %s must be between %llu and %llu",
		    name, what, (unsigned long long)min,
		    (unsigned long long)max);
	*out = (uint64_t)v;
	return 0;
}

int
cfg_get_unsigned(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, unsigned min, unsigned max, unsigned def,
    unsigned *out)
{
	uint64_t v;

	if (cfg_get_uint(ld, g, name, what, min, max, def, &v) < 0)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* cfg_get_cstr: string NAME of G without copying; *out NULL when absent. */
int
cfg_get_cstr(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **sp, const char **out)
{
	const config_setting_t *s = cfg_member(g, name);

	*out = NULL;
	if (sp != NULL)
		*sp = s;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cfg_bad(ld, s, "'%s' in %s must be a string", name, what);
	*out = config_setting_get_string(s);
	return 0;
}

/* cfg_get_str: a copy of string NAME of G, or of DEF (NULL: none) when absent.
 * An empty string is refused: every string setting means something. */
int
cfg_get_str(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const char *def, char **out)
{
	const config_setting_t *s;
	const char *v;

	*out = NULL;
	if (cfg_get_cstr(ld, g, name, what, &s, &v) < 0)
		return -1;
	if (v != NULL && v[0] == '\0')
		return cfg_bad(ld, s, "'%s' in %s must not be empty", name, what);
	if (v == NULL)
		v = def;
	if (v == NULL)
		return 0;
	return cfg_dup_str(ld, v, out);
}

int
cfg_need_str(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, char **out)
{
	if (cfg_get_str(ld, g, name, what, NULL, out) < 0)
		return -1;
	if (*out == NULL)
		return cfg_bad(ld, g, "%s needs '%s'", what, name);
	return 0;
}

/* cfg_get_group: *out = group NAME of G, NULL when absent. */
int
cfg_get_group(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **out)
{
	const config_setting_t *s = cfg_member(g, name);

	*out = s;
	if (s != NULL && config_setting_type(s) != CONFIG_TYPE_GROUP) {
		*out = NULL;
		return cfg_bad(ld, s, "'%s' in %s must be a group { ... }", name,
		    what);
	}
	return 0;
}

/* cfg_get_list: *out = list ( ... ) NAME of G whose elements are groups. */
int
cfg_get_list(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **out)
{
	const config_setting_t *s = cfg_member(g, name);
	int i;

	*out = NULL;
	if (s == NULL)
		return 0;
	/* "[]" is how libconfig spells an empty collection too. */
	if (config_setting_type(s) == CONFIG_TYPE_ARRAY &&
	    config_setting_length(s) == 0) {
		*out = s;
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_LIST)
		return cfg_bad(ld, s, "'%s' in %s must be a list ( { ... }, ... )",
		    name, what);
	for (i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);

		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			return cfg_bad(ld, e, "each entry of '%s' in %s must be "
			    "a group { ... }", name, what);
	}
	*out = s;
	return 0;
}

/* cfg_get_strs: array or list of strings -> NULL-terminated copy. */
int
cfg_get_strs(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **sp, char ***out, size_t *n)
{
	const config_setting_t *s = cfg_member(g, name);
	int i, len;

	*out = NULL;
	*n = 0;
	if (sp != NULL)
		*sp = s;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST)
		return cfg_bad(ld, s, "'%s' in %s must be an array of strings "
		    "[ \"...\", ... ]", name, what);
	len = config_setting_length(s);
	*out = calloc(len + 1, sizeof(char *));
	if (*out == NULL)
		return cfg_oom(ld);
	for (i = 0; i < len; i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);

		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return cfg_bad(ld, e, "'%s' in %s must be an array of "
			    "strings [ \"...\", ... ]", name, what);
		if (config_setting_get_string(e)[0] == '\0')
			return cfg_bad(ld, e, "'%s' in %s holds an empty string",
			    name, what);
		if (cfg_dup_str(ld, config_setting_get_string(e), &(*out)[i]) < 0)
			return -1;
		(*n)++;
	}
	return 0;
}

void
cfg_free_strv(char **v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* cfg_resolve: an absolute copy of PATH, relative ones taken from the prefix. */
int
cfg_resolve(struct ld *ld, char **path)
{
	char *abs;

	if (*path == NULL || (*path)[0] == '/')
		return 0;
	if (asprintf(&abs, "%s/%s", ld->cfg->prefix, *path) < 0)
		return cfg_oom(ld);
	free(*path);
	*path = abs;
	return 0;
}

/* cfg_is_token: an RFC 9110 token (a header name). */
bool
cfg_is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) &&
		    strchr("!#$%&'*+-.^_`|~", *s) == NULL)
			return false;
	return true;
}

int
cfg_check_tokens(struct ld *ld, const config_setting_t *s, char **v,
    const char *what)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		if (!cfg_is_token(v[i]))
			return cfg_bad(ld, config_setting_get_elem(s, i),
			    "%s: '%s' is not a valid header name", what, v[i]);
	return 0;
}

/* cfg_check_header_lines: each entry is "Name: value"; stored normalised to
 * exactly one space after the colon and no trailing blanks. */
int
cfg_check_header_lines(struct ld *ld, const config_setting_t *s, char **v,
    const char *what)
{
	size_t i, len;
	char *colon, *val, *norm;
	const unsigned char *p;

	for (i = 0; v != NULL && v[i] != NULL; i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);

		colon = strchr(v[i], ':');
		if (colon == NULL)
			return cfg_bad(ld, e, "%s: '%s' is not \"Name: value\"",
			    what, v[i]);
		*colon = '\0';
		if (!cfg_is_token(v[i])) {
			*colon = ':';
			return cfg_bad(ld, e, "%s: '%s' is not \"Name: value\" "
			    "with a valid header name", what, v[i]);
		}
		val = colon + 1;
		while (*val == ' ' || *val == '\t')
			val++;
		len = strlen(val);
		while (len > 0 && (val[len - 1] == ' ' || val[len - 1] == '\t'))
			val[--len] = '\0';
		for (p = (const unsigned char *)val; *p != '\0'; p++)
			if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
				*colon = ':';
				return cfg_bad(ld, e, "%s: control character in "
				    "the value of '%s'", what, v[i]);
			}
		if (asprintf(&norm, "%s: %s", v[i], val) < 0)
			return cfg_oom(ld);
		free(v[i]);
		v[i] = norm;
	}
	return 0;
}

/* cfg_compile: PCRE2 with default options: byte semantics (no UTF), '$' also
 * before a final newline, as PCRE2 does by default. JIT where possible. */
int
cfg_compile(struct ld *ld, const config_setting_t *s, const char *pat,
    const char *what, pcre2_code **out)
{
	int errcode;
	PCRE2_SIZE off;
	PCRE2_UCHAR msg[256];

	*out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, 0,
	    &errcode, &off, NULL);
	if (*out == NULL) {
		if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", errcode);
		return cfg_bad(ld, s, "bad %s at offset %zu: %s", what,
		    (size_t)off, (const char *)msg);
	}
	/* No JIT (e.g. SELinux refusing executable memory) only costs speed. */
	(void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
	return 0;
}

/* ---- JSON syntax check for aggregate fallbacks ---------------------- */

static const char *json_value(const char *p, int depth);

static const char *
json_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static const char *
json_string(const char *p)
{
	int i;

	for (p++; *p != '"'; p++) {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p != '\\')
			continue;
		p++;
		if (*p == 'u') {
			for (i = 1; i <= 4; i++)
				if (!isxdigit((unsigned char)p[i]))
					return NULL;
			p += 4;
		} else if (*p == '\0' || strchr("\"\\/bfnrt", *p) == NULL)
			return NULL;
	}
	return p + 1;
}

static const char *
json_number(const char *p)
{
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (isdigit((unsigned char)*p))
		while (isdigit((unsigned char)*p))
			p++;
	else
		return NULL;
	if (*p == '.') {
		if (!isdigit((unsigned char)*++p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char)*p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return p;
}

static const char *
json_container(const char *p, int depth, char close, bool object)
{
	p = json_ws(p + 1);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (object) {
			if (*p != '"' || (p = json_string(p)) == NULL)
				return NULL;
			p = json_ws(p);
			if (*p++ != ':')
				return NULL;
		}
		if ((p = json_value(p, depth + 1)) == NULL)
			return NULL;
		p = json_ws(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
		p = json_ws(p);
	}
}

static const char *
json_value(const char *p, int depth)
{
	if (depth > 64)
		return NULL;
	p = json_ws(p);
	switch (*p) {
	case '{':
		return json_container(p, depth, '}', true);
	case '[':
		return json_container(p, depth, ']', false);
	case '"':
		return json_string(p);
	case 't':
		return strncmp(p, "true", 4) == 0 ? p + 4 : NULL;
	case 'f':
		return strncmp(p, "false", 5) == 0 ? p + 5 : NULL;
	case 'n':
		return strncmp(p, "null", 4) == 0 ? p + 4 : NULL;
	default:
		return json_number(p);
	}
}

bool
cfg_json_valid(const char *s)
{
	const char *p = json_value(s, 0);

	return p != NULL && *json_ws(p) == '\0';
}
