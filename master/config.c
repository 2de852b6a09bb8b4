/*
 * config: libconfig file -> struct config, validated completely.
 *
 * Every group is checked against the names it may hold, so a misspelt
 * setting is an error rather than a silently applied default. The first
 * problem found is reported as "FILE:LINE: reason" and nothing is kept.
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
#include <unistd.h>

#include <libconfig.h>
#include <openssl/ssl.h>

#include "config.h"

/* Load context: where errors go and the file text (see literal_ok). */
struct ld {
	struct config *cfg;
	const char *file;		/* as given on the command line */
	char *err;
	size_t errlen;
	char *text;			/* the main file's bytes, or NULL */
	size_t textlen;
	char incdir[PATH_MAX];		/* where @include looks, or "" */
};

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

static bool
addr_equal(const struct cfg_addr *a, const struct cfg_addr *b)
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

/* parse_cidr: "a.b.c.d/n", "v6/n", or a bare address (a single host).
 * Host bits below the mask are cleared. */
static int
parse_cidr(const char *s, struct cfg_cidr *c)
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

static int bad(struct ld *, const config_setting_t *, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/* incdir_of: the directory to print before FILE: libconfig names an
 * @include'd file as written, relative to the include directory. */
static const char *
incdir_of(const struct ld *ld, const char *file)
{
	if (strcmp(file, ld->file) == 0 || file[0] == '/' ||
	    ld->incdir[0] == '\0')
		return "";
	return ld->incdir;
}

/* bad: "FILE:LINE: reason" at setting S (NULL or the root: no line). */
static int
bad(struct ld *ld, const config_setting_t *s, const char *fmt, ...)
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
		snprintf(ld->err, ld->errlen, "%s%s:%u: %s", incdir_of(ld, file),
		    file, line, reason);
	else
		snprintf(ld->err, ld->errlen, "%s: %s", file, reason);
	return -1;
}

static int
oom(struct ld *ld)
{
	return bad(ld, NULL, "out of memory");
}

static int
dup_str(struct ld *ld, const char *s, char **out)
{
	*out = strdup(s);
	return *out == NULL ? oom(ld) : 0;
}

/* check_keys: refuse any member of group G not listed in KEYS. */
static int
check_keys(struct ld *ld, const config_setting_t *g,
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
			return bad(ld, m, "unknown setting '%s'", name);
		return bad(ld, m, "unknown setting '%s' in %s", name, what);
	}
	return 0;
}

static const config_setting_t *
member(const config_setting_t *g, const char *name)
{
	return g == NULL ? NULL : config_setting_get_member(g, name);
}

/* lookup_from: a path lookup that accepts a const root. */
static const config_setting_t *
lookup_from(const config_setting_t *root, const char *path)
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

/* get_uint: integer NAME of G in [min, max], DEF when absent. */
static int
get_uint(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, uint64_t min, uint64_t max, uint64_t def,
    uint64_t *out)
{
	const config_setting_t *s = member(g, name);
	long long v;

	*out = def;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64)
		return bad(ld, s, "'%s' in %s must be an integer", name, what);
	v = config_setting_get_int64(s);
	if (!literal_ok(ld, s, v))
		return bad(ld, s, "'%s' in %s is out of range (%llu..%llu)",
		    name, what, (unsigned long long)min,
		    (unsigned long long)max);
	if (v < 0)
		return bad(ld, s, "'%s' in %s must not be negative", name,
		    what);
	if ((uint64_t)v < min || (uint64_t)v > max)
		return bad(ld, s, "'%s' in %s must be between %llu and %llu",
		    name, what, (unsigned long long)min,
		    (unsigned long long)max);
	*out = (uint64_t)v;
	return 0;
}

static int
get_unsigned(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, unsigned min, unsigned max, unsigned def,
    unsigned *out)
{
	uint64_t v;

	if (get_uint(ld, g, name, what, min, max, def, &v) < 0)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* get_cstr: string NAME of G without copying; *out NULL when absent. */
static int
get_cstr(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **sp, const char **out)
{
	const config_setting_t *s = member(g, name);

	*out = NULL;
	if (sp != NULL)
		*sp = s;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return bad(ld, s, "'%s' in %s must be a string", name, what);
	*out = config_setting_get_string(s);
	return 0;
}

/* get_str: a copy of string NAME of G, or of DEF (NULL: none) when absent.
 * An empty string is refused: every string setting means something. */
static int
get_str(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const char *def, char **out)
{
	const config_setting_t *s;
	const char *v;

	*out = NULL;
	if (get_cstr(ld, g, name, what, &s, &v) < 0)
		return -1;
	if (v != NULL && v[0] == '\0')
		return bad(ld, s, "'%s' in %s must not be empty", name, what);
	if (v == NULL)
		v = def;
	if (v == NULL)
		return 0;
	return dup_str(ld, v, out);
}

static int
need_str(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, char **out)
{
	if (get_str(ld, g, name, what, NULL, out) < 0)
		return -1;
	if (*out == NULL)
		return bad(ld, g, "%s needs '%s'", what, name);
	return 0;
}

/* get_group: *out = group NAME of G, NULL when absent. */
static int
get_group(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **out)
{
	const config_setting_t *s = member(g, name);

	*out = s;
	if (s != NULL && config_setting_type(s) != CONFIG_TYPE_GROUP) {
		*out = NULL;
		return bad(ld, s, "'%s' in %s must be a group { ... }", name,
		    what);
	}
	return 0;
}

/* get_list: *out = list ( ... ) NAME of G whose elements are groups. */
static int
get_list(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **out)
{
	const config_setting_t *s = member(g, name);
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
		return bad(ld, s, "'%s' in %s must be a list ( { ... }, ... )",
		    name, what);
	for (i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);

		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			return bad(ld, e, "each entry of '%s' in %s must be "
			    "a group { ... }", name, what);
	}
	*out = s;
	return 0;
}

/* get_strs: array or list of strings -> NULL-terminated copy. */
static int
get_strs(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, const config_setting_t **sp, char ***out, size_t *n)
{
	const config_setting_t *s = member(g, name);
	int i, len;

	*out = NULL;
	*n = 0;
	if (sp != NULL)
		*sp = s;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST)
		return bad(ld, s, "'%s' in %s must be an array of strings "
		    "[ \"...\", ... ]", name, what);
	len = config_setting_length(s);
	*out = calloc(len + 1, sizeof(char *));
	if (*out == NULL)
		return oom(ld);
	for (i = 0; i < len; i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);

		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return bad(ld, e, "'%s' in %s must be an array of "
			    "strings [ \"...\", ... ]", name, what);
		if (config_setting_get_string(e)[0] == '\0')
			return bad(ld, e, "'%s' in %s holds an empty string",
			    name, what);
		if (dup_str(ld, config_setting_get_string(e), &(*out)[i]) < 0)
			return -1;
		(*n)++;
	}
	return 0;
}

static void
free_strv(char **v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* resolve: an absolute copy of PATH, relative ones taken from the prefix. */
static int
resolve(struct ld *ld, char **path)
{
	char *abs;

	if (*path == NULL || (*path)[0] == '/')
		return 0;
	if (asprintf(&abs, "%s/%s", ld->cfg->prefix, *path) < 0)
		return oom(ld);
	free(*path);
	*path = abs;
	return 0;
}

/* is_token: an RFC 9110 token (a header name). */
static bool
is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) &&
		    strchr("!#$%&'*+-.^_`|~", *s) == NULL)
			return false;
	return true;
}

static int
check_tokens(struct ld *ld, const config_setting_t *s, char **v,
    const char *what)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		if (!is_token(v[i]))
			return bad(ld, config_setting_get_elem(s, i),
			    "%s: '%s' is not a valid header name", what, v[i]);
	return 0;
}

/* check_header_lines: each entry is "Name: value"; stored normalised to
 * exactly one space after the colon and no trailing blanks. */
static int
check_header_lines(struct ld *ld, const config_setting_t *s, char **v,
    const char *what)
{
	size_t i, len;
	char *colon, *val, *norm;
	const unsigned char *p;

	for (i = 0; v != NULL && v[i] != NULL; i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);

		colon = strchr(v[i], ':');
		if (colon == NULL)
			return bad(ld, e, "%s: '%s' is not \"Name: value\"",
			    what, v[i]);
		*colon = '\0';
		if (!is_token(v[i])) {
			*colon = ':';
			return bad(ld, e, "%s: '%s' is not \"Name: value\" "
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
				return bad(ld, e, "%s: control character in "
				    "the value of '%s'", what, v[i]);
			}
		if (asprintf(&norm, "%s: %s", v[i], val) < 0)
			return oom(ld);
		free(v[i]);
		v[i] = norm;
	}
	return 0;
}

/* compile: PCRE2 with default options: byte semantics (no UTF), '$' also
 * before a final newline, as PCRE2 does by default. JIT where possible. */
static int
compile(struct ld *ld, const config_setting_t *s, const char *pat,
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
		return bad(ld, s, "bad %s at offset %zu: %s", what,
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

static bool
json_valid(const char *s)
{
	const char *p = json_value(s, 0);

	return p != NULL && *json_ws(p) == '\0';
}

/* ---- server -------------------------------------------------------- */

static const char *const server_keys[] = {
	"workers", "listen", "admin", "control_socket", "pid_file", "state",
	"limits", "access_log", "error_log", "trace_header",
	"trusted_proxies", NULL
};
static const char *const listen_keys[] = { "address", "tls", NULL };
static const char *const state_keys[] = { "path", "max_mb", NULL };
static const char *const limits_keys[] = {
	"header_bytes", "headers", "body_bytes", "header_timeout_ms",
	"idle_timeout_ms", "drain_timeout_ms", NULL
};
static const char *const access_keys[] = { "path", "format", NULL };
static const char *const error_keys[] = { "path", "level", NULL };

static int
parse_addr_at(struct ld *ld, const config_setting_t *s, const char *v,
    struct cfg_addr *a, const char *what)
{
	char why[256];

	if (config_parse_addr(v, a, why, sizeof(why)) < 0)
		return bad(ld, s, "%s: %s", what, why);
	return 0;
}

static int
parse_listen(struct ld *ld, const config_setting_t *srv)
{
	struct cfg_server *sv = &ld->cfg->server;
	const config_setting_t *l, *s;
	const char *v;
	size_t i, j;

	if (get_list(ld, srv, "listen", "server", &l) < 0)
		return -1;
	if (l == NULL) {
		sv->listen = calloc(1, sizeof(*sv->listen));
		if (sv->listen == NULL)
			return oom(ld);
		sv->nlisten = 1;
		return config_parse_addr("0.0.0.0:8080", &sv->listen[0].addr,
		    ld->err, ld->errlen);
	}
	if (config_setting_length(l) == 0)
		return bad(ld, l, "'listen' in server must have at least one "
		    "entry");
	sv->listen = calloc(config_setting_length(l), sizeof(*sv->listen));
	if (sv->listen == NULL)
		return oom(ld);
	for (i = 0; i < (size_t)config_setting_length(l); i++) {
		const config_setting_t *e = config_setting_get_elem(l, i);
		struct cfg_listen *li = &sv->listen[i];

		sv->nlisten++;
		li->line = config_setting_source_line(e);
		if (check_keys(ld, e, listen_keys, "server.listen") < 0 ||
		    get_cstr(ld, e, "address", "server.listen", &s, &v) < 0 ||
		    get_str(ld, e, "tls", "server.listen", NULL, &li->tls) < 0)
			return -1;
		if (v == NULL)
			return bad(ld, e, "server.listen entry needs "
			    "'address'");
		if (parse_addr_at(ld, s, v, &li->addr, "server.listen") < 0)
			return -1;
		for (j = 0; j < i; j++)
			if (addr_equal(&sv->listen[j].addr, &li->addr))
				return bad(ld, s, "server.listen: address "
				    "'%s' is listed twice (first on line %d)",
				    v, sv->listen[j].line);
	}
	return 0;
}

static int
parse_server(struct ld *ld, const config_setting_t *srv)
{
	struct cfg_server *sv = &ld->cfg->server;
	struct cfg_limits *lim = &sv->limits;
	const config_setting_t *g, *s;
	const char *v;
	char **cidrs = NULL;
	size_t i, n = 0;
	uint64_t u;
	long ncpu;
	int rc = -1;

	if (srv != NULL && check_keys(ld, srv, server_keys, "server") < 0)
		return -1;
	if (get_unsigned(ld, srv, "workers", "server", 0, 256, 0,
	    &sv->workers) < 0)
		return -1;
	if (sv->workers == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		sv->workers = ncpu > 0 ? (unsigned)ncpu : 1;
	}
	if (parse_listen(ld, srv) < 0)
		return -1;

	if (get_cstr(ld, srv, "admin", "server", &s, &v) < 0)
		return -1;
	if (v == NULL)
		v = "127.0.0.1:9901";
	if (strcmp(v, "off") != 0 && v[0] != '\0') {
		sv->has_admin = true;
		if (parse_addr_at(ld, s, v, &sv->admin, "server.admin") < 0)
			return -1;
		for (i = 0; i < sv->nlisten; i++)
			if (addr_equal(&sv->listen[i].addr, &sv->admin))
				return bad(ld, s, "server.admin: address '%s' "
				    "is also a listen address", v);
	}

	if (get_str(ld, srv, "control_socket", "server", "run/portico.sock",
	    &sv->control_socket) < 0 || resolve(ld, &sv->control_socket) < 0)
		return -1;
	if (strlen(sv->control_socket) >= 108) {
		s = member(srv, "control_socket");
		return bad(ld, s ? s : srv, "server.control_socket: '%s' is "
		    "longer than a unix socket path may be", sv->control_socket);
	}
	if (get_str(ld, srv, "pid_file", "server", "run/portico.pid",
	    &sv->pid_file) < 0 || resolve(ld, &sv->pid_file) < 0)
		return -1;

	if (get_group(ld, srv, "state", "server", &g) < 0)
		return -1;
	if (g != NULL && check_keys(ld, g, state_keys, "server.state") < 0)
		return -1;
	if (get_str(ld, g, "path", "server.state", "/dev/shm/portico",
	    &sv->state_path) < 0 || resolve(ld, &sv->state_path) < 0 ||
	    get_unsigned(ld, g, "max_mb", "server.state", 1, 1048576, 256,
	    &sv->state_max_mb) < 0)
		return -1;

	if (get_group(ld, srv, "limits", "server", &g) < 0)
		return -1;
	if (g != NULL && check_keys(ld, g, limits_keys, "server.limits") < 0)
		return -1;
	if (get_uint(ld, g, "header_bytes", "server.limits", 1024, 1048576,
	    16384, &u) < 0)
		return -1;
	lim->header_bytes = (size_t)u;
	if (get_unsigned(ld, g, "headers", "server.limits", 1, 10000, 100,
	    &lim->headers) < 0 ||
	    get_uint(ld, g, "body_bytes", "server.limits", 0,
	    (uint64_t)1 << 40, 10485760, &lim->body_bytes) < 0 ||
	    get_unsigned(ld, g, "header_timeout_ms", "server.limits", 1,
	    3600000, 10000, &lim->header_timeout_ms) < 0 ||
	    get_unsigned(ld, g, "idle_timeout_ms", "server.limits", 1,
	    86400000, 60000, &lim->idle_timeout_ms) < 0 ||
	    get_unsigned(ld, g, "drain_timeout_ms", "server.limits", 0,
	    86400000, 30000, &lim->drain_timeout_ms) < 0)
		return -1;

	if (get_group(ld, srv, "access_log", "server", &g) < 0)
		return -1;
	if (g != NULL && check_keys(ld, g, access_keys, "server.access_log") < 0)
		return -1;
	if (get_str(ld, g, "path", "server.access_log", "logs/access.log",
	    &sv->access_log) < 0)
		return -1;
	if (strcmp(sv->access_log, "off") == 0) {
		free(sv->access_log);
		sv->access_log = NULL;
	} else if (strcmp(sv->access_log, "-") != 0 &&
	    resolve(ld, &sv->access_log) < 0)
		return -1;
	if (get_cstr(ld, g, "format", "server.access_log", &s, &v) < 0)
		return -1;
	if (v == NULL || strcmp(v, "json") == 0)
		sv->access_format = ACCESS_JSON;
	else if (strcmp(v, "combined") == 0)
		sv->access_format = ACCESS_COMBINED;
	else
		return bad(ld, s, "server.access_log: format '%s' is not "
		    "json or combined", v);

	if (get_group(ld, srv, "error_log", "server", &g) < 0)
		return -1;
	if (g != NULL && check_keys(ld, g, error_keys, "server.error_log") < 0)
		return -1;
	if (get_str(ld, g, "path", "server.error_log", "logs/error.log",
	    &sv->error_log) < 0)
		return -1;
	if (strcmp(sv->error_log, "off") == 0)
		return bad(ld, member(g, "path"), "server.error_log: path "
		    "cannot be off (use \"-\" for stderr)");
	if (strcmp(sv->error_log, "-") != 0 && resolve(ld, &sv->error_log) < 0)
		return -1;
	if (get_cstr(ld, g, "level", "server.error_log", &s, &v) < 0)
		return -1;
	if (v == NULL || strcmp(v, "info") == 0)
		sv->error_level = LOG_INFO;
	else if (strcmp(v, "debug") == 0)
		sv->error_level = LOG_DEBUG;
	else if (strcmp(v, "warn") == 0)
		sv->error_level = LOG_WARN;
	else if (strcmp(v, "error") == 0)
		sv->error_level = LOG_ERROR;
	else
		return bad(ld, s, "server.error_log: level '%s' is not "
		    "debug, info, warn or error", v);

	if (get_str(ld, srv, "trace_header", "server", "X-Trace-ID",
	    &sv->trace_header) < 0)
		return -1;
	if (!is_token(sv->trace_header))
		return bad(ld, member(srv, "trace_header"), "server."
		    "trace_header: '%s' is not a valid header name",
		    sv->trace_header);

	if (get_strs(ld, srv, "trusted_proxies", "server", &s, &cidrs, &n) < 0)
		goto done;
	if (n > 0) {
		sv->trusted = calloc(n, sizeof(*sv->trusted));
		if (sv->trusted == NULL) {
			oom(ld);
			goto done;
		}
	}
	for (i = 0; i < n; i++) {
		if (parse_cidr(cidrs[i], &sv->trusted[i]) < 0) {
			bad(ld, config_setting_get_elem(s, i), "server."
			    "trusted_proxies: '%s' is not an address or CIDR "
			    "(a.b.c.d/n, v6/n)", cidrs[i]);
			goto done;
		}
		sv->ntrusted++;
	}
	rc = 0;
done:
	free_strv(cidrs);
	return rc;
}

/* ---- tls ----------------------------------------------------------- */

static const char *const tls_keys[] = {
	"names", "cert", "key", "min_version", NULL
};

static int
parse_tls(struct ld *ld, const config_setting_t *tg)
{
	struct config *cfg = ld->cfg;
	const config_setting_t *s;
	const char *v;
	char what[160];
	int i, n;

	if (tg == NULL)
		return 0;
	n = config_setting_length(tg);
	cfg->tls = calloc(n > 0 ? n : 1, sizeof(*cfg->tls));
	if (cfg->tls == NULL)
		return oom(ld);
	for (i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(tg, i);
		struct cfg_tls *t = &cfg->tls[i];

		cfg->ntls++;
		t->line = config_setting_source_line(e);
		if (dup_str(ld, config_setting_name(e), &t->name) < 0)
			return -1;
		snprintf(what, sizeof(what), "tls '%s'", t->name);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			return bad(ld, e, "%s must be a group { ... }", what);
		if (check_keys(ld, e, tls_keys, what) < 0 ||
		    get_strs(ld, e, "names", what, NULL, &t->names,
		    &t->nnames) < 0 ||
		    need_str(ld, e, "cert", what, &t->cert) < 0 ||
		    resolve(ld, &t->cert) < 0 ||
		    need_str(ld, e, "key", what, &t->key) < 0 ||
		    resolve(ld, &t->key) < 0 ||
		    get_cstr(ld, e, "min_version", what, &s, &v) < 0)
			return -1;
		if (t->names == NULL) {
			t->names = calloc(1, sizeof(char *));
			if (t->names == NULL)
				return oom(ld);
		}
		if (v == NULL || strcmp(v, "TLSv1.2") == 0)
			t->min_version = TLS1_2_VERSION;
		else if (strcmp(v, "TLSv1.3") == 0)
			t->min_version = TLS1_3_VERSION;
		else
			return bad(ld, s, "%s: min_version '%s' is not "
			    "TLSv1.2 or TLSv1.3", what, v);
	}
	return 0;
}

/* ---- services ------------------------------------------------------ */

static const char *const service_keys[] = {
	"instances", "balance", "connect_timeout_ms", "timeout_ms",
	"keepalive", "retries", "health", "breaker", NULL
};
static const char *const health_keys[] = {
	"path", "interval_ms", "timeout_ms", "fall", "rise", NULL
};
static const char *const breaker_keys[] = {
	"failures", "open_ms", "half_open", NULL
};

static int
parse_balance(struct ld *ld, const config_setting_t *e, struct cfg_service *sv,
    const char *what)
{
	const config_setting_t *s;
	const char *v;

	if (get_cstr(ld, e, "balance", what, &s, &v) < 0)
		return -1;
	if (v == NULL || strcmp(v, "round_robin") == 0)
		sv->balance = BAL_ROUND_ROBIN;
	else if (strcmp(v, "least_conn") == 0)
		sv->balance = BAL_LEAST_CONN;
	else if (strcmp(v, "hash:ip") == 0)
		sv->balance = BAL_HASH_IP;
	else if (strcmp(v, "hash:consumer") == 0)
		sv->balance = BAL_HASH_CONSUMER;
	else if (strncmp(v, "hash:header:", 12) == 0) {
		if (!is_token(v + 12))
			return bad(ld, s, "%s: balance '%s' needs a header "
			    "name after hash:header:", what, v);
		sv->balance = BAL_HASH_HEADER;
		return dup_str(ld, v + 12, &sv->hash_header);
	} else
		return bad(ld, s, "%s: balance '%s' is not round_robin, "
		    "least_conn, hash:ip, hash:consumer or hash:header:NAME",
		    what, v);
	return 0;
}

static int
parse_service(struct ld *ld, const config_setting_t *e, struct cfg_service *sv)
{
	const config_setting_t *s, *g;
	char **inst = NULL;
	char what[160], sub[200];
	size_t i, n = 0;
	int rc = -1;

	sv->line = config_setting_source_line(e);
	if (dup_str(ld, config_setting_name(e), &sv->name) < 0)
		return -1;
	snprintf(what, sizeof(what), "service '%s'", sv->name);
	if (config_setting_type(e) != CONFIG_TYPE_GROUP)
		return bad(ld, e, "%s must be a group { ... }", what);
	if (check_keys(ld, e, service_keys, what) < 0 ||
	    get_strs(ld, e, "instances", what, &s, &inst, &n) < 0)
		goto done;
	if (s == NULL) {
		bad(ld, e, "%s needs 'instances'", what);
		goto done;
	}
	if (n == 0) {
		bad(ld, s, "%s: 'instances' must not be empty", what);
		goto done;
	}
	sv->instances = calloc(n, sizeof(*sv->instances));
	if (sv->instances == NULL) {
		oom(ld);
		goto done;
	}
	snprintf(sub, sizeof(sub), "%s instances", what);
	for (i = 0; i < n; i++) {
		if (parse_addr_at(ld, config_setting_get_elem(s, i), inst[i],
		    &sv->instances[i], sub) < 0)
			goto done;
		sv->ninstances++;
	}
	if (parse_balance(ld, e, sv, what) < 0 ||
	    get_unsigned(ld, e, "connect_timeout_ms", what, 1, 600000, 200,
	    &sv->connect_timeout_ms) < 0 ||
	    get_unsigned(ld, e, "timeout_ms", what, 1, 86400000, 2000,
	    &sv->timeout_ms) < 0 ||
	    get_unsigned(ld, e, "keepalive", what, 0, 100000, 64,
	    &sv->keepalive) < 0 ||
	    get_unsigned(ld, e, "retries", what, 0, 10, 1, &sv->retries) < 0)
		goto done;

	if (get_group(ld, e, "health", what, &g) < 0)
		goto done;
	snprintf(sub, sizeof(sub), "%s health", what);
	sv->health.enabled = g != NULL;
	if ((g != NULL && check_keys(ld, g, health_keys, sub) < 0) ||
	    get_str(ld, g, "path", sub, "/health", &sv->health.path) < 0 ||
	    get_unsigned(ld, g, "interval_ms", sub, 1, 86400000, 5000,
	    &sv->health.interval_ms) < 0 ||
	    get_unsigned(ld, g, "timeout_ms", sub, 1, 600000, 1000,
	    &sv->health.timeout_ms) < 0 ||
	    get_unsigned(ld, g, "fall", sub, 1, 1000, 3, &sv->health.fall) < 0 ||
	    get_unsigned(ld, g, "rise", sub, 1, 1000, 2, &sv->health.rise) < 0)
		goto done;
	if (sv->health.path[0] != '/') {
		bad(ld, member(g, "path"), "%s: path '%s' must start with "
		    "'/'", sub, sv->health.path);
		goto done;
	}

	if (get_group(ld, e, "breaker", what, &g) < 0)
		goto done;
	snprintf(sub, sizeof(sub), "%s breaker", what);
	sv->breaker.enabled = g != NULL;
	if ((g != NULL && check_keys(ld, g, breaker_keys, sub) < 0) ||
	    get_unsigned(ld, g, "failures", sub, 1, 1000000, 5,
	    &sv->breaker.failures) < 0 ||
	    get_unsigned(ld, g, "open_ms", sub, 1, 86400000, 30000,
	    &sv->breaker.open_ms) < 0 ||
	    get_unsigned(ld, g, "half_open", sub, 1, 1000, 1,
	    &sv->breaker.half_open) < 0)
		goto done;
	rc = 0;
done:
	free_strv(inst);
	return rc;
}

static int
parse_services(struct ld *ld, const config_setting_t *sg)
{
	struct config *cfg = ld->cfg;
	int i, n;

	if (sg == NULL)
		return 0;
	n = config_setting_length(sg);
	cfg->services = calloc(n > 0 ? n : 1, sizeof(*cfg->services));
	if (cfg->services == NULL)
		return oom(ld);
	for (i = 0; i < n; i++) {
		cfg->nservices++;
		if (parse_service(ld, config_setting_get_elem(sg, i),
		    &cfg->services[i]) < 0)
			return -1;
	}
	return 0;
}

/* ---- auth ---------------------------------------------------------- */

static const char *const auth_keys[] = {
	"jwt", "api_keys", "identity_headers", "tier_claim", "scopes_claim",
	NULL
};
static const char *const jwt_keys[] = {
	"keys", "jwks_file", "issuer", "audience", "leeway_s", "require",
	"consumer_claim", NULL
};
static const char *const jwt_key_keys[] = {
	"kid", "alg", "secret_file", "public_key", NULL
};
static const char *const api_keys_keys[] = { "file", "header", NULL };
static const char *const identity_keys[] = {
	"consumer", "tier", "scopes", NULL
};
static const char *const jwt_algs[] = {
	"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
	"PS384", "PS512", "ES256", "ES384", "EdDSA", NULL
};

static int
parse_jwt_key(struct ld *ld, const config_setting_t *e, struct cfg_jwt_key *k,
    size_t idx)
{
	const config_setting_t *s;
	const char *const *a;
	char what[64];

	snprintf(what, sizeof(what), "auth.jwt key #%zu", idx + 1);
	k->line = config_setting_source_line(e);
	if (check_keys(ld, e, jwt_key_keys, what) < 0 ||
	    get_str(ld, e, "kid", what, NULL, &k->kid) < 0 ||
	    need_str(ld, e, "alg", what, &k->alg) < 0 ||
	    get_str(ld, e, "secret_file", what, NULL, &k->secret_file) < 0 ||
	    resolve(ld, &k->secret_file) < 0 ||
	    get_str(ld, e, "public_key", what, NULL, &k->public_key) < 0 ||
	    resolve(ld, &k->public_key) < 0)
		return -1;
	for (a = jwt_algs; *a != NULL; a++)
		if (strcmp(*a, k->alg) == 0)
			break;
	if (*a == NULL)
		return bad(ld, member(e, "alg"), "%s: alg '%s' is not one of "
		    "HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, "
		    "EdDSA", what, k->alg);
	if (k->alg[0] == 'H') {
		if (k->public_key != NULL)
			return bad(ld, member(e, "public_key"), "%s: %s takes "
			    "'secret_file', not 'public_key'", what, k->alg);
		if (k->secret_file == NULL)
			return bad(ld, e, "%s: %s needs 'secret_file'", what,
			    k->alg);
	} else {
		s = member(e, "secret_file");
		if (s != NULL)
			return bad(ld, s, "%s: %s takes 'public_key', not "
			    "'secret_file'", what, k->alg);
		if (k->public_key == NULL)
			return bad(ld, e, "%s: %s needs 'public_key'", what,
			    k->alg);
	}
	return 0;
}

static int
parse_jwt(struct ld *ld, const config_setting_t *jg)
{
	struct cfg_auth *au = &ld->cfg->auth;
	const config_setting_t *l, *s;
	const char *what = "auth.jwt";
	size_t i, j;
	uint64_t u;

	au->has_jwt = jg != NULL;
	if (jg != NULL && check_keys(ld, jg, jwt_keys, what) < 0)
		return -1;
	if (get_list(ld, jg, "keys", what, &l) < 0)
		return -1;
	if (l != NULL && config_setting_length(l) > 0) {
		au->jwt_keys = calloc(config_setting_length(l),
		    sizeof(*au->jwt_keys));
		if (au->jwt_keys == NULL)
			return oom(ld);
		for (i = 0; i < (size_t)config_setting_length(l); i++) {
			struct cfg_jwt_key *k = &au->jwt_keys[i];

			au->njwt_keys++;
			if (parse_jwt_key(ld, config_setting_get_elem(l, i), k,
			    i) < 0)
				return -1;
			for (j = 0; k->kid != NULL && j < i; j++)
				if (au->jwt_keys[j].kid != NULL &&
				    strcmp(au->jwt_keys[j].kid, k->kid) == 0)
					return bad(ld, member(
					    config_setting_get_elem(l, i),
					    "kid"), "%s: kid '%s' is used "
					    "twice", what, k->kid);
		}
	}
	if (get_str(ld, jg, "jwks_file", what, NULL, &au->jwks_file) < 0 ||
	    resolve(ld, &au->jwks_file) < 0 ||
	    get_str(ld, jg, "issuer", what, NULL, &au->issuer) < 0 ||
	    get_str(ld, jg, "audience", what, NULL, &au->audience) < 0 ||
	    get_uint(ld, jg, "leeway_s", what, 0, 86400, 30, &u) < 0 ||
	    get_strs(ld, jg, "require", what, NULL, &au->require,
	    &au->nrequire) < 0 ||
	    get_str(ld, jg, "consumer_claim", what, "sub",
	    &au->consumer_claim) < 0)
		return -1;
	au->leeway_s = (unsigned)u;
	if (jg != NULL && au->njwt_keys == 0 && au->jwks_file == NULL) {
		s = member(jg, "keys");
		return bad(ld, s ? s : jg, "%s needs 'keys' or 'jwks_file'",
		    what);
	}
	return 0;
}

static int
parse_auth(struct ld *ld, const config_setting_t *ag)
{
	struct cfg_auth *au = &ld->cfg->auth;
	const config_setting_t *g;
	const char *w;

	if (ag != NULL && check_keys(ld, ag, auth_keys, "auth") < 0)
		return -1;
	if (get_group(ld, ag, "jwt", "auth", &g) < 0 || parse_jwt(ld, g) < 0)
		return -1;

	w = "auth.api_keys";
	if (get_group(ld, ag, "api_keys", "auth", &g) < 0)
		return -1;
	au->has_api_keys = g != NULL;
	if (g != NULL && (check_keys(ld, g, api_keys_keys, w) < 0 ||
	    need_str(ld, g, "file", w, &au->api_keys_file) < 0 ||
	    resolve(ld, &au->api_keys_file) < 0))
		return -1;
	if (get_str(ld, g, "header", w, "X-API-Key", &au->api_key_header) < 0)
		return -1;
	if (!is_token(au->api_key_header))
		return bad(ld, member(g, "header"), "%s: '%s' is not a valid "
		    "header name", w, au->api_key_header);

	w = "auth.identity_headers";
	if (get_group(ld, ag, "identity_headers", "auth", &g) < 0)
		return -1;
	if (g != NULL && check_keys(ld, g, identity_keys, w) < 0)
		return -1;
	if (get_str(ld, g, "consumer", w, "X-User-ID", &au->id_consumer) < 0 ||
	    get_str(ld, g, "tier", w, "X-User-Tier", &au->id_tier) < 0 ||
	    get_str(ld, g, "scopes", w, "X-User-Scopes", &au->id_scopes) < 0)
		return -1;
	if (!is_token(au->id_consumer) || !is_token(au->id_tier) ||
	    !is_token(au->id_scopes))
		return bad(ld, g, "%s: each entry must be a valid header name",
		    w);

	if (get_str(ld, ag, "tier_claim", "auth", "tier", &au->tier_claim) < 0 ||
	    get_str(ld, ag, "scopes_claim", "auth", "scope",
	    &au->scopes_claim) < 0)
		return -1;
	return 0;
}

/* ---- tiers --------------------------------------------------------- */

static const char *const tier_keys[] = { "rate", "per_s", "burst", NULL };

static const struct {
	const char *name;
	uint64_t rate, per_s, burst;
} default_tiers[] = {
	{ "anonymous", 10, 1, 20 },
	{ "free", 100, 60, 20 },
	{ "paid", 1000, 1, 2000 },
};

static int
parse_tiers(struct ld *ld, const config_setting_t *tg)
{
	struct config *cfg = ld->cfg;
	const config_setting_t *s;
	char what[160];
	size_t i, n;

	n = tg != NULL ? (size_t)config_setting_length(tg) :
	    sizeof(default_tiers) / sizeof(default_tiers[0]);
	cfg->tiers = calloc(n > 0 ? n : 1, sizeof(*cfg->tiers));
	if (cfg->tiers == NULL)
		return oom(ld);
	for (i = 0; i < n; i++) {
		struct cfg_tier *t = &cfg->tiers[i];
		const config_setting_t *e;
		static const char *const fields[] = { "rate", "per_s", "burst" };
		uint64_t *out[] = { &t->rate, &t->per_s, &t->burst };
		int f;

		cfg->ntiers++;
		if (tg == NULL) {
			if (dup_str(ld, default_tiers[i].name, &t->name) < 0)
				return -1;
			t->rate = default_tiers[i].rate;
			t->per_s = default_tiers[i].per_s;
			t->burst = default_tiers[i].burst;
			continue;
		}
		e = config_setting_get_elem(tg, i);
		t->line = config_setting_source_line(e);
		if (dup_str(ld, config_setting_name(e), &t->name) < 0)
			return -1;
		snprintf(what, sizeof(what), "tier '%s'", t->name);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			return bad(ld, e, "%s must be a group { ... }", what);
		if (check_keys(ld, e, tier_keys, what) < 0)
			return -1;
		for (f = 0; f < 3; f++) {
			s = member(e, fields[f]);
			if (s == NULL)
				return bad(ld, e, "%s needs '%s'", what,
				    fields[f]);
			if (get_uint(ld, e, fields[f], what, 1,
			    (uint64_t)1 << 40, 0, out[f]) < 0)
				return -1;
		}
	}
	return 0;
}

static int
tier_index(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->ntiers; i++)
		if (strcmp(cfg->tiers[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* ---- routes -------------------------------------------------------- */

static const char *const route_keys[] = {
	"name", "match", "service", "aggregate", "auth", "scopes",
	"rate_limit", "rewrite", "transform", "cache", NULL
};
static const char *const match_keys[] = {
	"path", "prefix", "regex", "methods", "host", NULL
};
static const char *const rl_keys[] = { "by", "tier", NULL };
static const char *const rewrite_keys[] = { "pattern", "to", NULL };
static const char *const transform_keys[] = { "request", "response", NULL };
static const char *const treq_keys[] = {
	"add_headers", "remove_headers", NULL
};
static const char *const tresp_keys[] = {
	"add_headers", "remove_headers", "strip_fields", NULL
};
static const char *const cache_keys[] = { "ttl_s", "vary", NULL };
static const char *const aggregate_keys[] = { "calls", "timeout_ms", NULL };
static const char *const call_keys[] = {
	"name", "service", "path", "fallback", NULL
};

static int
parse_match(struct ld *ld, const config_setting_t *rs, struct cfg_route *r,
    const char *what)
{
	const config_setting_t *m, *s, *which = NULL;
	static const char *const kinds[] = { "path", "prefix", "regex" };
	char **methods = NULL, sub[200];
	size_t i, n = 0, len;
	int k, count = 0, rc = -1;

	if (get_group(ld, rs, "match", what, &m) < 0)
		return -1;
	if (m == NULL)
		return bad(ld, rs, "%s needs 'match'", what);
	snprintf(sub, sizeof(sub), "%s match", what);
	if (check_keys(ld, m, match_keys, sub) < 0)
		return -1;
	for (k = 0; k < 3; k++) {
		s = member(m, kinds[k]);
		if (s == NULL)
			continue;
		if (++count > 1)
			return bad(ld, s, "%s: give only one of 'path', "
			    "'prefix' or 'regex'", sub);
		which = s;
	}
	if (count == 0)
		return bad(ld, m, "%s needs one of 'path', 'prefix' or "
		    "'regex'", sub);
	if (get_str(ld, m, "path", sub, NULL, &r->path) < 0 ||
	    get_str(ld, m, "prefix", sub, NULL, &r->prefix) < 0 ||
	    get_str(ld, m, "regex", sub, NULL, &r->regex) < 0)
		return -1;
	if (r->path != NULL && r->path[0] != '/')
		return bad(ld, which, "%s: path '%s' must start with '/'",
		    sub, r->path);
	if (r->prefix != NULL) {
		if (r->prefix[0] != '/')
			return bad(ld, which, "%s: prefix '%s' must start "
			    "with '/'", sub, r->prefix);
		/* Segment-aware matching wants "/a", not "/a/"; "/" -> "". */
		len = strlen(r->prefix);
		while (len > 0 && r->prefix[len - 1] == '/')
			r->prefix[--len] = '\0';
	}
	if (r->regex != NULL && compile(ld, which, r->regex, "regex",
	    &r->re) < 0)
		return -1;

	if (get_strs(ld, m, "methods", sub, &s, &methods, &n) < 0)
		goto done;
	if (s != NULL && n == 0) {
		bad(ld, s, "%s: 'methods' must not be empty (leave it out "
		    "for any method)", sub);
		goto done;
	}
	for (i = 0; i < n; i++) {
		enum http_method hm = method_from_name(methods[i],
		    strlen(methods[i]));

		if (hm == M_OTHER) {
			bad(ld, config_setting_get_elem(s, i), "%s: unknown "
			    "method '%s'", sub, methods[i]);
			goto done;
		}
		r->methods |= METHOD_BIT(hm);
	}

	if (get_str(ld, m, "host", sub, NULL, &r->host) < 0)
		goto done;
	for (i = 0; r->host != NULL && r->host[i] != '\0'; i++) {
		unsigned char c = (unsigned char)r->host[i];

		if (!isalnum(c) && strchr("-.:[]_", c) == NULL) {
			bad(ld, member(m, "host"), "%s: host '%s' is not a "
			    "host name", sub, r->host);
			goto done;
		}
		r->host[i] = (char)tolower(c);
	}
	rc = 0;
done:
	free_strv(methods);
	return rc;
}

static int
parse_rate_limit(struct ld *ld, const config_setting_t *rs,
    struct cfg_route *r, const char *what)
{
	const config_setting_t *g, *s;
	const char *v;
	char sub[200];

	if (get_group(ld, rs, "rate_limit", what, &g) < 0)
		return -1;
	if (g == NULL)
		return 0;
	snprintf(sub, sizeof(sub), "%s rate_limit", what);
	if (check_keys(ld, g, rl_keys, sub) < 0 ||
	    get_cstr(ld, g, "by", sub, &s, &v) < 0)
		return -1;
	if (v == NULL)
		return bad(ld, g, "%s needs 'by'", sub);
	if (strcmp(v, "consumer") == 0)
		r->rl_by = RL_CONSUMER;
	else if (strcmp(v, "ip") == 0)
		r->rl_by = RL_IP;
	else if (strcmp(v, "route") == 0)
		r->rl_by = RL_ROUTE;
	else if (strncmp(v, "header:", 7) == 0 && is_token(v + 7)) {
		r->rl_by = RL_HEADER;
		if (dup_str(ld, v + 7, &r->rl_header) < 0)
			return -1;
	} else
		return bad(ld, s, "%s: by '%s' is not consumer, ip, route or "
		    "header:NAME", sub, v);
	if (get_cstr(ld, g, "tier", sub, &s, &v) < 0)
		return -1;
	if (v != NULL) {
		r->rl_tier = tier_index(ld->cfg, v);
		if (r->rl_tier < 0)
			return bad(ld, s, "%s: unknown tier '%s'", sub, v);
	}
	return 0;
}

static int
parse_rewrite(struct ld *ld, const config_setting_t *rs, struct cfg_route *r,
    const char *what)
{
	const config_setting_t *g;
	char sub[200];
	uint32_t ncap = 0;
	const char *p;

	if (get_group(ld, rs, "rewrite", what, &g) < 0)
		return -1;
	if (g == NULL)
		return 0;
	snprintf(sub, sizeof(sub), "%s rewrite", what);
	if (check_keys(ld, g, rewrite_keys, sub) < 0 ||
	    need_str(ld, g, "pattern", sub, &r->rewrite_pattern) < 0 ||
	    compile(ld, member(g, "pattern"), r->rewrite_pattern,
	    "rewrite pattern", &r->rewrite_re) < 0 ||
	    need_str(ld, g, "to", sub, &r->rewrite_to) < 0)
		return -1;
	/* route_rewrite substitutes $0..$9 and ${0}..${9}, "$$" is a '$':
	 * refuse a group the pattern does not have. */
	pcre2_pattern_info(r->rewrite_re, PCRE2_INFO_CAPTURECOUNT, &ncap);
	for (p = r->rewrite_to; *p != '\0'; p++) {
		const char *d;

		if (*p != '$')
			continue;
		if (p[1] == '$') {
			p++;
			continue;
		}
		d = p[1] == '{' ? p + 2 : p + 1;
		if (!isdigit((unsigned char)*d))
			continue;
		if ((uint32_t)(*d - '0') > ncap)
			return bad(ld, member(g, "to"), "%s: '$%c' names a "
			    "group the pattern does not have (it has %u)", sub,
			    *d, ncap);
	}
	return 0;
}

static int
parse_transform(struct ld *ld, const config_setting_t *rs,
    struct cfg_route *r, const char *what)
{
	const config_setting_t *t, *g, *s;
	char sub[200];

	if (get_group(ld, rs, "transform", what, &t) < 0)
		return -1;
	if (t == NULL)
		return 0;
	snprintf(sub, sizeof(sub), "%s transform", what);
	if (check_keys(ld, t, transform_keys, sub) < 0)
		return -1;

	snprintf(sub, sizeof(sub), "%s transform.request", what);
	if (get_group(ld, t, "request", sub, &g) < 0)
		return -1;
	if (g != NULL) {
		if (check_keys(ld, g, treq_keys, sub) < 0 ||
		    get_strs(ld, g, "add_headers", sub, &s, &r->req_add,
		    &r->nreq_add) < 0 ||
		    check_header_lines(ld, s, r->req_add, sub) < 0 ||
		    get_strs(ld, g, "remove_headers", sub, &s, &r->req_remove,
		    &r->nreq_remove) < 0 ||
		    check_tokens(ld, s, r->req_remove, sub) < 0)
			return -1;
	}

	snprintf(sub, sizeof(sub), "%s transform.response", what);
	if (get_group(ld, t, "response", sub, &g) < 0)
		return -1;
	if (g != NULL) {
		if (check_keys(ld, g, tresp_keys, sub) < 0 ||
		    get_strs(ld, g, "add_headers", sub, &s, &r->resp_add,
		    &r->nresp_add) < 0 ||
		    check_header_lines(ld, s, r->resp_add, sub) < 0 ||
		    get_strs(ld, g, "remove_headers", sub, &s, &r->resp_remove,
		    &r->nresp_remove) < 0 ||
		    check_tokens(ld, s, r->resp_remove, sub) < 0 ||
		    get_strs(ld, g, "strip_fields", sub, NULL, &r->strip_fields,
		    &r->nstrip_fields) < 0)
			return -1;
	}
	return 0;
}

static int
parse_cache(struct ld *ld, const config_setting_t *rs, struct cfg_route *r,
    const char *what)
{
	const config_setting_t *g, *s;
	char sub[200];

	if (get_group(ld, rs, "cache", what, &g) < 0)
		return -1;
	if (g == NULL)
		return 0;
	r->has_cache = true;
	snprintf(sub, sizeof(sub), "%s cache", what);
	if (check_keys(ld, g, cache_keys, sub) < 0)
		return -1;
	if (member(g, "ttl_s") == NULL)
		return bad(ld, g, "%s needs 'ttl_s'", sub);
	if (get_unsigned(ld, g, "ttl_s", sub, 1, 31536000, 0,
	    &r->cache_ttl_s) < 0 ||
	    get_strs(ld, g, "vary", sub, &s, &r->cache_vary,
	    &r->ncache_vary) < 0 ||
	    check_tokens(ld, s, r->cache_vary, sub) < 0)
		return -1;
	return 0;
}

static int
parse_call(struct ld *ld, const config_setting_t *e, struct cfg_call *c,
    const char *agg)
{
	const config_setting_t *s;
	const char *v, *p;
	char what[240];

	c->line = config_setting_source_line(e);
	c->service = -1;
	snprintf(what, sizeof(what), "%s call", agg);
	if (check_keys(ld, e, call_keys, what) < 0 ||
	    need_str(ld, e, "name", what, &c->name) < 0)
		return -1;
	snprintf(what, sizeof(what), "%s call '%s'", agg, c->name);
	if (get_cstr(ld, e, "service", what, &s, &v) < 0)
		return -1;
	if (v == NULL)
		return bad(ld, e, "%s needs 'service'", what);
	c->service = config_service_index(ld->cfg, v);
	if (c->service < 0)
		return bad(ld, s, "%s: unknown service '%s'", what, v);
	if (need_str(ld, e, "path", what, &c->path) < 0)
		return -1;
	if (c->path[0] != '/')
		return bad(ld, member(e, "path"), "%s: path '%s' must start "
		    "with '/'", what, c->path);
	for (p = strchr(c->path, '{'); p != NULL; p = strchr(p + 1, '{'))
		if (strncmp(p, "{consumer}", 10) != 0)
			return bad(ld, member(e, "path"), "%s: path '%s': "
			    "only {consumer} may be substituted", what,
			    c->path);
	if (get_str(ld, e, "fallback", what, NULL, &c->fallback) < 0)
		return -1;
	if (c->fallback != NULL && strcmp(c->fallback, "cache") != 0 &&
	    !json_valid(c->fallback))
		return bad(ld, member(e, "fallback"), "%s: fallback must be "
		    "JSON text or \"cache\"", what);
	return 0;
}

static int
parse_aggregate(struct ld *ld, const config_setting_t *rs,
    struct cfg_route *r, const char *what, const config_setting_t **agp)
{
	const config_setting_t *g, *l;
	char sub[200];
	size_t i, j;

	if (get_group(ld, rs, "aggregate", what, &g) < 0)
		return -1;
	*agp = g;
	if (g == NULL)
		return 0;
	snprintf(sub, sizeof(sub), "%s aggregate", what);
	if (check_keys(ld, g, aggregate_keys, sub) < 0 ||
	    get_list(ld, g, "calls", sub, &l) < 0 ||
	    get_unsigned(ld, g, "timeout_ms", sub, 1, 600000, 200,
	    &r->aggregate_timeout_ms) < 0)
		return -1;
	if (l == NULL || config_setting_length(l) == 0)
		return bad(ld, l ? l : g, "%s needs at least one entry in "
		    "'calls'", sub);
	r->calls = calloc(config_setting_length(l), sizeof(*r->calls));
	if (r->calls == NULL)
		return oom(ld);
	for (i = 0; i < (size_t)config_setting_length(l); i++) {
		const config_setting_t *e = config_setting_get_elem(l, i);

		r->ncalls++;
		if (parse_call(ld, e, &r->calls[i], sub) < 0)
			return -1;
		for (j = 0; j < i; j++)
			if (strcmp(r->calls[j].name, r->calls[i].name) == 0)
				return bad(ld, member(e, "name"), "%s: call "
				    "name '%s' is used twice", sub,
				    r->calls[i].name);
	}
	return 0;
}

static int
parse_route(struct ld *ld, const config_setting_t *rs, struct cfg_route *r,
    size_t idx)
{
	struct config *cfg = ld->cfg;
	const config_setting_t *s, *ag;
	const char *v;
	char what[160];
	size_t i;

	r->line = config_setting_source_line(rs);
	snprintf(what, sizeof(what), "route #%zu", idx + 1);
	if (check_keys(ld, rs, route_keys, what) < 0 ||
	    need_str(ld, rs, "name", what, &r->name) < 0)
		return -1;
	for (i = 0; i < idx; i++)
		if (strcmp(cfg->routes[i].name, r->name) == 0)
			return bad(ld, member(rs, "name"), "route name '%s' "
			    "is used twice (first on line %d)", r->name,
			    cfg->routes[i].line);
	snprintf(what, sizeof(what), "route '%s'", r->name);
	if (parse_match(ld, rs, r, what) < 0)
		return -1;

	if (get_cstr(ld, rs, "service", what, &s, &v) < 0 ||
	    parse_aggregate(ld, rs, r, what, &ag) < 0)
		return -1;
	if (v != NULL && ag != NULL)
		return bad(ld, ag, "%s has both 'service' and 'aggregate'",
		    what);
	if (v == NULL && ag == NULL)
		return bad(ld, rs, "%s needs 'service' or 'aggregate'", what);
	if (v != NULL) {
		r->service = config_service_index(cfg, v);
		if (r->service < 0)
			return bad(ld, s, "%s: unknown service '%s'", what, v);
	}

	if (get_cstr(ld, rs, "auth", what, &s, &v) < 0)
		return -1;
	if (v == NULL || strcmp(v, "none") == 0)
		r->auth = AUTH_NONE;
	else if (strcmp(v, "jwt") == 0)
		r->auth = AUTH_JWT;
	else if (strcmp(v, "api_key") == 0)
		r->auth = AUTH_API_KEY;
	else if (strcmp(v, "any") == 0)
		r->auth = AUTH_ANY;
	else
		return bad(ld, s, "%s: auth '%s' is not jwt, api_key, any or "
		    "none", what, v);
	if ((r->auth == AUTH_JWT && !cfg->auth.has_jwt) ||
	    (r->auth == AUTH_API_KEY && !cfg->auth.has_api_keys) ||
	    (r->auth == AUTH_ANY && !cfg->auth.has_jwt &&
	    !cfg->auth.has_api_keys))
		return bad(ld, s, "%s: auth '%s' but the auth section does "
		    "not configure it", what, v);

	if (get_strs(ld, rs, "scopes", what, NULL, &r->scopes,
	    &r->nscopes) < 0 ||
	    parse_rate_limit(ld, rs, r, what) < 0 ||
	    parse_rewrite(ld, rs, r, what) < 0 ||
	    parse_transform(ld, rs, r, what) < 0 ||
	    parse_cache(ld, rs, r, what) < 0)
		return -1;
	return 0;
}

static int
parse_routes(struct ld *ld, const config_setting_t *root)
{
	struct config *cfg = ld->cfg;
	const config_setting_t *l;
	size_t i, n;

	if (get_list(ld, root, "routes", "the file", &l) < 0)
		return -1;
	if (l == NULL)
		return 0;
	n = config_setting_length(l);
	cfg->routes = calloc(n > 0 ? n : 1, sizeof(*cfg->routes));
	if (cfg->routes == NULL)
		return oom(ld);
	for (i = 0; i < n; i++) {
		struct cfg_route *r = &cfg->routes[i];

		r->service = -1;
		r->rl_tier = -1;
		cfg->nroutes++;
		if (parse_route(ld, config_setting_get_elem(l, i), r, i) < 0)
			return -1;
	}
	return 0;
}

/*
 * refuse_unbuilt: features the contract defines but this build does not
 * enforce yet. They are parsed and validated above; a config that uses
 * one is refused here rather than served without the policy (a route
 * whose auth is silently skipped would fail open). The issue that builds
 * a feature deletes its lines from this function.
 */
static int
refuse_unbuilt(struct ld *ld, const config_setting_t *root)
{
	static const char *const route_unbuilt[] = {
		"scopes", "cache", "aggregate", NULL
	};
	const config_setting_t *l, *e, *s;
	const char *const *k;
	int i;

	/* TLS listeners: the TLS issue. */
	l = lookup_from(root, "server.listen");
	for (i = 0; l != NULL && i < config_setting_length(l); i++) {
		s = member(config_setting_get_elem(l, i), "tls");
		if (s != NULL)
			return bad(ld, s, "'tls' is not supported by this "
			    "build yet");
	}

	l = member(root, "routes");
	for (i = 0; l != NULL && i < config_setting_length(l); i++) {
		e = config_setting_get_elem(l, i);
		/* Authentication: the auth issue. */
		if (ld->cfg->routes[i].auth != AUTH_NONE)
			return bad(ld, member(e, "auth"), "'auth' is not "
			    "supported by this build yet");
		/* ratelimit: `by = "consumer"` needs the auth issue's identity;
		 * no tier means "anonymous", which must then exist. */
		if (ld->cfg->routes[i].rl_by == RL_CONSUMER)
			return bad(ld, lookup_from(e, "rate_limit.by"),
			    "rate_limit by consumer needs authentication, "
			    "which this build does not have yet");
		if (ld->cfg->routes[i].rl_by != RL_NONE &&
		    ld->cfg->routes[i].rl_tier < 0 &&
		    tier_index(ld->cfg, "anonymous") < 0)
			return bad(ld, member(e, "rate_limit"), "rate_limit "
			    "without a tier uses tier 'anonymous', which is "
			    "not defined");
		/* scopes: auth; cache, aggregate. */
		for (k = route_unbuilt; *k != NULL; k++) {
			s = member(e, *k);
			if (s != NULL)
				return bad(ld, s, "'%s' is not supported by "
				    "this build yet", *k);
		}
		/* JSON field stripping: the transform issue. */
		s = lookup_from(e, "transform.response.strip_fields");
		if (s != NULL)
			return bad(ld, s, "'transform.response.strip_fields' "
			    "is not supported by this build yet");
	}
	return 0;
}

/* check_listen_tls: a listener's tls names an entry of the tls section. */
static int
check_listen_tls(struct ld *ld, const config_setting_t *root)
{
	const struct cfg_server *sv = &ld->cfg->server;
	const config_setting_t *l = lookup_from(root, "server.listen");
	size_t i, j;

	for (i = 0; i < sv->nlisten; i++) {
		if (sv->listen[i].tls == NULL)
			continue;
		for (j = 0; j < ld->cfg->ntls; j++)
			if (strcmp(ld->cfg->tls[j].name, sv->listen[i].tls) == 0)
				break;
		if (j == ld->cfg->ntls)
			return bad(ld, member(config_setting_get_elem(l, i),
			    "tls"), "server.listen: tls '%s' is not an entry "
			    "of the tls section", sv->listen[i].tls);
	}
	return 0;
}

/* ---- load and free ------------------------------------------------- */

static const char *const top_keys[] = {
	"version", "server", "tls", "services", "auth", "tiers", "routes",
	NULL
};

static int
read_text(struct ld *ld)
{
	FILE *f = fopen(ld->file, "rb");
	char buf[8192];
	size_t n;
	char *p;

	if (f == NULL)
		return bad(ld, NULL, "cannot open: %s", strerror(errno));
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		p = realloc(ld->text, ld->textlen + n + 1);
		if (p == NULL) {
			fclose(f);
			return oom(ld);
		}
		ld->text = p;
		memcpy(ld->text + ld->textlen, buf, n);
		ld->textlen += n;
		ld->text[ld->textlen] = '\0';
	}
	fclose(f);
	return 0;
}

static int
set_prefix(struct ld *ld, const char *prefix)
{
	char buf[PATH_MAX];

	if (prefix == NULL) {
		if (getcwd(buf, sizeof(buf)) == NULL)
			return bad(ld, NULL, "getcwd: %s", strerror(errno));
	} else if (realpath(prefix, buf) == NULL)
		return bad(ld, NULL, "prefix '%s': %s", prefix,
		    strerror(errno));
	return dup_str(ld, buf, &ld->cfg->prefix);
}

/* validate: read and check everything; refuse_unbuilt is the caller's. */
static int
validate(struct ld *ld, config_t *lc)
{
	const config_setting_t *root, *g, *s;
	char dir[PATH_MAX];
	const char *slash;
	size_t len;
	uint64_t v;

	if (read_text(ld) < 0)
		return -1;
	/* @include "x" is taken relative to the file's own directory. */
	slash = strrchr(ld->file, '/');
	len = slash != NULL ? (size_t)(slash - ld->file) + 1 : 0;
	if (len > 0 && len < sizeof(dir)) {
		/* incdir keeps the '/' for naming included files in errors;
		 * libconfig wants the directory itself ("/" stays "/"). */
		memcpy(ld->incdir, ld->file, len);
		ld->incdir[len] = '\0';
		memcpy(dir, ld->file, len);
		dir[len > 1 ? len - 1 : len] = '\0';
		config_set_include_dir(lc, dir);
	}
	if (config_read_file(lc, ld->file) != CONFIG_TRUE) {
		const char *f = config_error_file(lc);

		if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
			return bad(ld, NULL, "cannot read the file");
		if (f == NULL)
			f = ld->file;
		snprintf(ld->err, ld->errlen, "%s%s:%d: %s", incdir_of(ld, f),
		    f, config_error_line(lc), config_error_text(lc));
		return -1;
	}
	root = config_root_setting(lc);
	if (check_keys(ld, root, top_keys, NULL) < 0)
		return -1;

	s = member(root, "version");
	if (get_uint(ld, root, "version", "the file", 0, INT_MAX, 1, &v) < 0)
		return -1;
	if (v != 1)
		return bad(ld, s, "version %llu is not supported (this "
		    "build reads version 1)", (unsigned long long)v);
	ld->cfg->version = 1;

	if (get_group(ld, root, "server", "the file", &g) < 0 ||
	    parse_server(ld, g) < 0 ||
	    get_group(ld, root, "tls", "the file", &g) < 0 ||
	    parse_tls(ld, g) < 0 ||
	    get_group(ld, root, "services", "the file", &g) < 0 ||
	    parse_services(ld, g) < 0 ||
	    get_group(ld, root, "auth", "the file", &g) < 0 ||
	    parse_auth(ld, g) < 0 ||
	    get_group(ld, root, "tiers", "the file", &g) < 0 ||
	    parse_tiers(ld, g) < 0 ||
	    parse_routes(ld, root) < 0)
		return -1;
	return check_listen_tls(ld, root);
}

int
config_load(const char *file, const char *prefix, struct config **out,
    char *err, size_t errlen)
{
	struct ld ld = { .file = file, .err = err, .errlen = errlen };
	config_t lc;
	int rc;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	ld.cfg = calloc(1, sizeof(*ld.cfg));
	if (ld.cfg == NULL)
		return oom(&ld);
	if (dup_str(&ld, file, &ld.cfg->file) < 0 ||
	    set_prefix(&ld, prefix) < 0) {
		config_free(ld.cfg);
		return -1;
	}
	config_init(&lc);
	rc = validate(&ld, &lc);
	if (rc == 0)
		rc = refuse_unbuilt(&ld, config_root_setting(&lc));
	config_destroy(&lc);
	free(ld.text);
	if (rc < 0) {
		config_free(ld.cfg);
		return -1;
	}
	*out = ld.cfg;
	return 0;
}

static void
free_route(struct cfg_route *r)
{
	size_t i;

	free(r->name);
	free(r->path);
	free(r->prefix);
	free(r->regex);
	pcre2_code_free(r->re);
	free(r->host);
	free_strv(r->scopes);
	free(r->rl_header);
	free(r->rewrite_pattern);
	pcre2_code_free(r->rewrite_re);
	free(r->rewrite_to);
	free_strv(r->req_add);
	free_strv(r->req_remove);
	free_strv(r->resp_add);
	free_strv(r->resp_remove);
	free_strv(r->strip_fields);
	free_strv(r->cache_vary);
	for (i = 0; i < r->ncalls; i++) {
		free(r->calls[i].name);
		free(r->calls[i].path);
		free(r->calls[i].fallback);
	}
	free(r->calls);
}

void
config_free(struct config *cfg)
{
	struct cfg_server *sv;
	struct cfg_auth *au;
	size_t i;

	if (cfg == NULL)
		return;
	sv = &cfg->server;
	for (i = 0; i < sv->nlisten; i++)
		free(sv->listen[i].tls);
	free(sv->listen);
	free(sv->control_socket);
	free(sv->pid_file);
	free(sv->state_path);
	free(sv->access_log);
	free(sv->error_log);
	free(sv->trace_header);
	free(sv->trusted);
	for (i = 0; i < cfg->ntls; i++) {
		free(cfg->tls[i].name);
		free_strv(cfg->tls[i].names);
		free(cfg->tls[i].cert);
		free(cfg->tls[i].key);
	}
	free(cfg->tls);
	for (i = 0; i < cfg->nservices; i++) {
		free(cfg->services[i].name);
		free(cfg->services[i].instances);
		free(cfg->services[i].hash_header);
		free(cfg->services[i].health.path);
	}
	free(cfg->services);
	au = &cfg->auth;
	for (i = 0; i < au->njwt_keys; i++) {
		free(au->jwt_keys[i].kid);
		free(au->jwt_keys[i].alg);
		free(au->jwt_keys[i].secret_file);
		free(au->jwt_keys[i].public_key);
	}
	free(au->jwt_keys);
	free(au->jwks_file);
	free(au->issuer);
	free(au->audience);
	free_strv(au->require);
	free(au->consumer_claim);
	free(au->api_keys_file);
	free(au->api_key_header);
	free(au->id_consumer);
	free(au->id_tier);
	free(au->id_scopes);
	free(au->tier_claim);
	free(au->scopes_claim);
	for (i = 0; i < cfg->ntiers; i++)
		free(cfg->tiers[i].name);
	free(cfg->tiers);
	for (i = 0; i < cfg->nroutes; i++)
		free_route(&cfg->routes[i]);
	free(cfg->routes);
	free(cfg->file);
	free(cfg->prefix);
	free(cfg);
}
