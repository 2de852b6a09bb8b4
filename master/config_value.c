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
 * Integer literals libconfig would misread. libconfig 1.5 keeps a literal
 * without an L suffix in 32 bits and silently wraps a larger one
 * (4294967297 reads as 1, 0xFFFFFFFF as -1), so the value it hands us
 * cannot be told from a small one. Values and line numbers come from
 * libconfig; this pass only refuses, by position in each file libconfig
 * read, the literals it would have wrapped. It tokenises the way
 * libconfig's scanner does (comments, strings, names, numbers), so a
 * number inside a string, a comment or a name is never taken for one.
 */

/* Lines advanced over [p, end). */
static unsigned
count_lines(const char *p, const char *end)
{
	unsigned n = 0;

	for (; p < end; p++)
		n += *p == '\n';
	return n;
}

static bool
name_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '*';
}

/* Magnitude of digits [p, end) in BASE, saturating at UINT64_MAX. */
static uint64_t
magnitude(const char *p, const char *end, unsigned base)
{
	uint64_t v = 0;
	unsigned d;

	for (; p < end; p++) {
		d = isdigit((unsigned char)*p) ? (unsigned)(*p - '0') :
		    (unsigned)(tolower((unsigned char)*p) - 'a' + 10);
		if (v > (UINT64_MAX - d) / base)
			return UINT64_MAX;
		v = v * base + d;
	}
	return v;
}

/*
 * One numeric token at *pp (a sign, a digit or a dot): 0 and *pp past it,
 * or -1 with the error written when it is an integer libconfig would
 * wrap.
 */
static int
check_number(struct ld *ld, const char *file, unsigned line, const char **pp,
    const char *end)
{
	const char *p = *pp, *tok = p, *digits;
	bool neg = false, hex = false, real = false, wide = false;
	uint64_t v, max;
	char lit[48];
	int len;

	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (p + 2 < end && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') &&
	    isxdigit((unsigned char)p[2])) {
		hex = true;
		p += 2;
		digits = p;
		while (p < end && isxdigit((unsigned char)*p))
			p++;
	} else {
		digits = p;
		while (p < end && isdigit((unsigned char)*p))
			p++;
	}
	v = magnitude(digits, p, hex ? 16 : 10);
	if (!hex && p < end && *p == '.') {
		real = true;
		for (p++; p < end && isdigit((unsigned char)*p); p++)
			;
	}
	if (!hex && p + 1 < end && (*p == 'e' || *p == 'E') &&
	    (isdigit((unsigned char)p[1]) || ((p[1] == '-' || p[1] == '+') &&
	    p + 2 < end && isdigit((unsigned char)p[2])))) {
		real = true;
		for (p += 2; p < end && isdigit((unsigned char)*p); p++)
			;
	}
	if (!real && p < end && *p == 'L') {
		wide = true;
		p += p + 1 < end && p[1] == 'L' ? 2 : 1;
	}
	*pp = p > tok ? p : tok + 1;
	if (real || p == digits)
		return 0;
	if (wide)
		max = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	else
		max = neg ? (uint64_t)INT32_MAX + 1 : (uint64_t)INT32_MAX;
	if (v <= max)
		return 0;
	len = (int)(p - tok) < (int)sizeof(lit) - 4 ? (int)(p - tok) :
	    (int)sizeof(lit) - 4;
	snprintf(lit, sizeof(lit), "%.*s%s", len, tok,
	    len < (int)(p - tok) ? "..." : "");
	if (wide)
		snprintf(ld->err, ld->errlen, "%s%s:%u: integer %s does not fit "
		    "in 64 bits", cfg_incdir_of(ld, file), file, line, lit);
	else
		snprintf(ld->err, ld->errlen, "%s%s:%u: integer %s does not fit "
		    "in 32 bits; write %sL for a 64-bit value",
		    cfg_incdir_of(ld, file), file, line, lit, lit);
	return -1;
}

/* check_text: every integer literal of one file's TEXT. */
static int
check_text(struct ld *ld, const char *file, const char *text, size_t len)
{
	const char *p = text, *end = text + len, *q;
	unsigned line = 1;

	while (p < end) {
		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == '#' || (*p == '/' && p + 1 < end &&
		    p[1] == '/')) {
			q = memchr(p, '\n', (size_t)(end - p));
			p = q != NULL ? q : end;
		} else if (*p == '/' && p + 1 < end && p[1] == '*') {
			q = memmem(p + 2, (size_t)(end - p - 2), "*/", 2);
			q = q != NULL ? q + 2 : end;
			line += count_lines(p, q);
			p = q;
		} else if (*p == '"') {
			for (q = p + 1; q < end && *q != '"'; q++)
				if (*q == '\\' && q + 1 < end)
					q++;
			q = q < end ? q + 1 : end;
			line += count_lines(p, q);
			p = q;
		} else if (isalpha((unsigned char)*p) || *p == '*') {
			while (p < end && name_char(*p))
				p++;
		} else if (isdigit((unsigned char)*p) || ((*p == '-' ||
		    *p == '+' || *p == '.') && p + 1 < end &&
		    (isdigit((unsigned char)p[1]) || p[1] == '.'))) {
			if (check_number(ld, file, line, &p, end) < 0)
				return -1;
		} else {
			p++;
		}
	}
	return 0;
}

#define MAX_FILES 64

/* The distinct files the settings under S came from. */
static void
collect_files(const config_setting_t *s, const char **files, size_t *n)
{
	const char *f = config_setting_source_file(s);
	size_t i;
	int k, len;

	if (f != NULL) {
		for (i = 0; i < *n && strcmp(files[i], f) != 0; i++)
			;
		if (i == *n && *n < MAX_FILES)
			files[(*n)++] = f;
	}
	if (!config_setting_is_aggregate(s))
		return;
	len = config_setting_length(s);
	for (k = 0; k < len; k++)
		collect_files(config_setting_get_elem(s, k), files, n);
}

/* cfg_check_literals: refuse an integer literal libconfig would wrap, in
 * the main file (ld->text) and every file it @included. */
int
cfg_check_literals(struct ld *ld, const config_setting_t *root)
{
	const char *files[MAX_FILES];
	char path[PATH_MAX], *text = NULL, *p;
	char buf[8192];
	size_t n = 0, i, len, got;
	FILE *f;
	int rc = 0;

	if (ld->text != NULL &&
	    check_text(ld, ld->file, ld->text, ld->textlen) < 0)
		return -1;
	collect_files(root, files, &n);
	for (i = 0; i < n && rc == 0; i++) {
		if (strcmp(files[i], ld->file) == 0)
			continue;
		snprintf(path, sizeof(path), "%s%s", cfg_incdir_of(ld,
		    files[i]), files[i]);
		/* libconfig has just read it; if it is gone now, the
		 * values are what libconfig read and stand. */
		if ((f = fopen(path, "rb")) == NULL)
			continue;
		len = 0;
		while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
			p = realloc(text, len + got);
			if (p == NULL) {
				rc = cfg_oom(ld);
				break;
			}
			text = p;
			memcpy(text + len, buf, got);
			len += got;
		}
		fclose(f);
		if (rc == 0 && check_text(ld, files[i], text, len) < 0)
			rc = -1;
		free(text);
		text = NULL;
	}
	return rc;
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

/* cfg_get_bool: boolean NAME of G, or DEF when absent. */
int
cfg_get_bool(struct ld *ld, const config_setting_t *g, const char *name,
    const char *what, bool def, bool *out)
{
	const config_setting_t *s = cfg_member(g, name);

	*out = def;
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return cfg_bad(ld, s, "'%s' in %s must be true or false", name,
		    what);
	*out = config_setting_get_bool(s) != 0;
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
