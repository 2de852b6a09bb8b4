/*
 * apikey: the keys file (libconfig) and the lookup of a presented key by
 * its SHA-256. See apikey.h for the format and the promises.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "apikey.h"
#include "hex.h"

#define STR_(x)	#x
#define STR(x)	STR_(x)

struct apikeys {
	struct apikey *v;
	size_t n;
	uint32_t *slot;			/* index into v + 1; 0: empty */
	size_t mask;			/* slots - 1 (a power of two - 1) */
	EVP_MD *md;			/* fetched once, not per lookup */
	EVP_MD_CTX *ctx;		/* reused by every lookup */
};

/* A load in progress. */
struct ld {
	const char *file;
	char dir[4096];			/* FILE's directory, "" for the cwd */
	char *why;
	size_t whylen;
	struct apikeys *k;
};

static const char *const top_keys[] = { "keys", NULL };
static const char *const entry_keys[] = {
	"sha256", "consumer", "tier", "scopes", NULL
};

/* dir_of: what names an @included file (libconfig gives the name as
 * written, relative to FILE's directory) so that it can be found. */
static const char *
dir_of(const struct ld *ld, const char *file)
{
	if (file == ld->file || file[0] == '/' || ld->dir[0] == '\0')
		return "";
	return ld->dir;
}

/* bad: "FILE:LINE: reason" for setting S (or "FILE: reason"); -1. */
static int
bad(struct ld *ld, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
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
		snprintf(ld->why, ld->whylen, "%s%s:%u: %s", dir_of(ld, file),
		    file, line, reason);
	else
		snprintf(ld->why, ld->whylen, "%s: %s", file, reason);
	return -1;
}

static int
digest(EVP_MD_CTX *ctx, const EVP_MD *md, const char *key, size_t len,
    uint8_t out[APIKEY_DIGEST_LEN])
{
	unsigned n = 0;

	if (EVP_DigestInit_ex2(ctx, md, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, key, len) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != APIKEY_DIGEST_LEN)
		return -1;
	return 0;
}

/* The table is keyed by a digest's first 8 bytes: SHA-256 output is
 * uniform, and nobody can steer it toward a slot. */
static size_t
slot_of(const uint8_t *d, size_t mask)
{
	uint64_t h;

	memcpy(&h, d, sizeof(h));
	return (size_t)h & mask;
}

bool
apikey_key_ok(const char *key, size_t len)
{
	size_t i;

	if (key == NULL || len == 0 || len > APIKEY_MAX_LEN)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)key[i] < 0x21 ||
		    (unsigned char)key[i] > 0x7e)
			return false;
	return true;
}

const char *
apikey_bad_name(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0)
		return "is empty";
	if (n > APIKEY_NAME_MAX)
		return "is longer than " STR(CFG_NAME_MAX) " bytes";
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return "has a byte outside printable ASCII";
	if (s[0] == ' ' || s[n - 1] == ' ')
		return "starts or ends with a space";
	return NULL;
}

const char *
apikey_bad_scope(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0)
		return "is empty";
	if (n > APIKEY_SCOPES_MAX)
		return "is longer than " STR(APIKEY_SCOPES_MAX) " bytes";
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e ||
		    s[i] == '"' || s[i] == '\\')
			return "is not a scope token (visible ASCII but '\"' "
			    "and '\\')";
	return NULL;
}

static int
unhex(const char *s, uint8_t out[APIKEY_DIGEST_LEN])
{
	size_t i;
	int hi, lo;

	if (strlen(s) != APIKEY_HEX_LEN)
		return -1;
	for (i = 0; i < APIKEY_DIGEST_LEN; i++) {
		hi = hexval(s[2 * i]);
		lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int
check_keys(struct ld *ld, const config_setting_t *g, const char *const *allowed,
    const char *what)
{
	const config_setting_t *s;
	const char *const *a;
	int i, n = config_setting_length(g);

	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(g, i);
		for (a = allowed; *a != NULL; a++)
			if (strcmp(*a, config_setting_name(s)) == 0)
				break;
		if (*a == NULL)
			return bad(ld, s, "%sunknown setting '%s'", what,
			    config_setting_name(s));
	}
	return 0;
}

/* str: entry E's string NAME into *OUT (NULL when absent and optional). */
static int
str(struct ld *ld, const config_setting_t *e, const char *name, bool need,
    const char *what, const char **out)
{
	const config_setting_t *s = config_setting_get_member(e, name);

	*out = NULL;
	if (s == NULL) {
		if (need)
			return bad(ld, e, "%sneeds '%s'", what, name);
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return bad(ld, s, "%s'%s' must be a string", what, name);
	*out = config_setting_get_string(s);
	return 0;
}

static int
dup_name(struct ld *ld, const config_setting_t *e, const char *name,
    bool need, const char *what, const char **out)
{
	const char *v, *why;

	if (str(ld, e, name, need, what, &v) < 0)
		return -1;
	if (v == NULL)
		return 0;
	why = apikey_bad_name(v);
	if (why != NULL)
		return bad(ld, config_setting_get_member(e, name), "%s%s %s",
		    what, name, why);
	*out = strdup(v);
	return *out == NULL ? bad(ld, NULL, "out of memory") : 0;
}

/* scopes: the entry's scopes joined by single spaces into a->scopes. */
static int
scopes(struct ld *ld, const config_setting_t *e, const char *what,
    struct apikey *a)
{
	const config_setting_t *s = config_setting_get_member(e, "scopes");
	const config_setting_t *x;
	char buf[APIKEY_SCOPES_MAX + 1];
	const char *v, *why, *p;
	size_t len = 0, vl;
	int i, n, t;

	if (s == NULL)
		return 0;
	t = config_setting_type(s);
	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
		return bad(ld, s, "%s'scopes' must be an array of strings "
		    "[\"a\", \"b\"]", what);
	n = config_setting_length(s);
	for (i = 0; i < n; i++) {
		x = config_setting_get_elem(s, i);
		if (config_setting_type(x) != CONFIG_TYPE_STRING)
			return bad(ld, x, "%sscope #%d must be a string", what,
			    i + 1);
		v = config_setting_get_string(x);
		why = apikey_bad_scope(v);
		if (why != NULL)
			return bad(ld, x, "%sscope #%d %s", what, i + 1, why);
		vl = strlen(v);
		if (len + (len > 0) + vl > APIKEY_SCOPES_MAX)
			return bad(ld, x, "%sscopes are longer than "
			    STR(APIKEY_SCOPES_MAX) " bytes joined", what);
		/* A repeat is most likely a typo for another scope. */
		for (p = buf; p < buf + len; p += strcspn(p, " ") + 1)
			if (strncmp(p, v, vl) == 0 &&
			    (p[vl] == ' ' || p + vl == buf + len))
				return bad(ld, x, "%sscope '%s' is listed "
				    "twice", what, v);
		if (len > 0)
			buf[len++] = ' ';
		memcpy(buf + len, v, vl);
		len += vl;
		buf[len] = '\0';
	}
	if (len == 0)
		return 0;
	a->scopes = strdup(buf);
	if (a->scopes == NULL)
		return bad(ld, NULL, "out of memory");
	a->scopes_len = len;
	return 0;
}

static int
entry(struct ld *ld, const config_setting_t *e, int idx, struct apikey *a)
{
	const config_setting_t *s;
	const char *hex;
	char what[48];

	snprintf(what, sizeof(what), "keys #%d: ", idx + 1);
	a->line = config_setting_source_line(e);
	if (config_setting_type(e) != CONFIG_TYPE_GROUP)
		return bad(ld, e, "%smust be a group { sha256 = ...; "
		    "consumer = ...; }", what);
	if (check_keys(ld, e, entry_keys, what) < 0 ||
	    str(ld, e, "sha256", true, what, &hex) < 0)
		return -1;
	s = config_setting_get_member(e, "sha256");
	if (unhex(hex, a->sha256) < 0)
		return bad(ld, s, "%ssha256 must be 64 hex digits (the key's "
		    "SHA-256: gwctl key hash)", what);
	if (dup_name(ld, e, "consumer", true, what, &a->consumer) < 0)
		return -1;
	a->consumer_len = strlen(a->consumer);
	if (dup_name(ld, e, "tier", false, what, &a->tier) < 0 ||
	    scopes(ld, e, what, a) < 0)
		return -1;
	return 0;
}

/* insert: entry v[i] into the table; a digest already there is refused. */
static int
insert(struct ld *ld, const config_setting_t *e, size_t i)
{
	struct apikeys *k = ld->k;
	const struct apikey *a = &k->v[i], *o;
	size_t j;

	for (j = slot_of(a->sha256, k->mask); k->slot[j] != 0;
	    j = (j + 1) & k->mask) {
		o = &k->v[k->slot[j] - 1];
		if (memcmp(o->sha256, a->sha256, APIKEY_DIGEST_LEN) == 0)
			return bad(ld, config_setting_get_member(e, "sha256"),
			    "keys #%zu: sha256 is already the key of line %d",
			    i + 1, o->line);
	}
	k->slot[j] = (uint32_t)i + 1;
	return 0;
}

static int
build(struct ld *ld, const config_setting_t *root)
{
	struct apikeys *k = ld->k;
	const config_setting_t *l, *e;
	size_t i, slots;
	int n;

	if (check_keys(ld, root, top_keys, "") < 0)
		return -1;
	l = config_setting_get_member(root, "keys");
	if (l == NULL)
		return bad(ld, NULL, "no 'keys' list: keys = ( { sha256 = "
		    "...; consumer = ...; }, ... );");
	if (config_setting_type(l) != CONFIG_TYPE_LIST)
		return bad(ld, l, "'keys' must be a list ( { ... }, ... )");
	n = config_setting_length(l);
	if ((size_t)n > UINT32_MAX / 4)
		return bad(ld, l, "too many keys");
	for (slots = 2; slots < 2 * (size_t)n; slots *= 2)
		;
	k->v = calloc(n > 0 ? (size_t)n : 1, sizeof(*k->v));
	k->slot = calloc(slots, sizeof(*k->slot));
	if (k->v == NULL || k->slot == NULL)
		return bad(ld, NULL, "out of memory");
	k->mask = slots - 1;
	for (i = 0; i < (size_t)n; i++) {
		e = config_setting_get_elem(l, i);
		k->n++;
		if (entry(ld, e, (int)i, &k->v[i]) < 0 || insert(ld, e, i) < 0)
			return -1;
	}
	return 0;
}

static int
open_digest(struct apikeys *k)
{
	k->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	k->ctx = EVP_MD_CTX_new();
	return k->md != NULL && k->ctx != NULL ? 0 : -1;
}

int
apikey_load(const char *file, struct apikeys **out, char *why, size_t whylen)
{
	struct ld ld = { .file = file, .why = why, .whylen = whylen };
	const char *slash;
	config_t lc;
	FILE *f;
	int rc = -1;

	*out = NULL;
	if (whylen > 0)
		why[0] = '\0';
	f = fopen(file, "r");
	if (f == NULL)
		return bad(&ld, NULL, "cannot open: %s", strerror(errno));
	ld.k = calloc(1, sizeof(*ld.k));
	if (ld.k == NULL) {
		fclose(f);
		return bad(&ld, NULL, "out of memory");
	}
	config_init(&lc);
	/* @include "x" is taken relative to the keys file's directory. */
	slash = strrchr(file, '/');
	if (slash != NULL && (size_t)(slash - file) + 1 < sizeof(ld.dir)) {
		/* ld.dir keeps the '/' for naming included files. */
		memcpy(ld.dir, file, (size_t)(slash - file) + 1);
		ld.dir[slash - file + 1] = '\0';
		config_set_include_dir(&lc, slash == file ? "/" : ld.dir);
	}
	if (config_read(&lc, f) != CONFIG_TRUE) {
		const char *ef = config_error_file(&lc);

		if (ef == NULL)
			ef = file;
		snprintf(why, whylen, "%s%s:%d: %s", dir_of(&ld, ef), ef,
		    config_error_line(&lc), config_error_text(&lc));
		goto done;
	}
	if (build(&ld, config_root_setting(&lc)) < 0)
		goto done;
	if (open_digest(ld.k) < 0) {
		bad(&ld, NULL, "OpenSSL has no SHA-256");
		goto done;
	}
	*out = ld.k;
	ld.k = NULL;
	rc = 0;
done:
	config_destroy(&lc);
	fclose(f);
	apikey_free(ld.k);
	return rc;
}

const struct apikey *
apikey_lookup(const struct apikeys *k, const char *key, size_t len)
{
	uint8_t d[APIKEY_DIGEST_LEN];
	const struct apikey *a;
	size_t j;

	if (k == NULL || !apikey_key_ok(key, len) ||
	    digest(k->ctx, k->md, key, len, d) < 0)
		return NULL;
	for (j = slot_of(d, k->mask); k->slot[j] != 0; j = (j + 1) & k->mask) {
		a = &k->v[k->slot[j] - 1];
		if (CRYPTO_memcmp(a->sha256, d, APIKEY_DIGEST_LEN) == 0)
			return a;
	}
	return NULL;
}

size_t
apikey_count(const struct apikeys *k)
{
	return k != NULL ? k->n : 0;
}

void
apikey_free(struct apikeys *k)
{
	size_t i;

	if (k == NULL)
		return;
	for (i = 0; i < k->n; i++) {
		free((char *)k->v[i].consumer);
		free((char *)k->v[i].tier);
		free((char *)k->v[i].scopes);
	}
	free(k->v);
	free(k->slot);
	EVP_MD_CTX_free(k->ctx);
	EVP_MD_free(k->md);
	free(k);
}

int
apikey_hex(const char *key, size_t len, char hex[APIKEY_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	uint8_t d[APIKEY_DIGEST_LEN];
	struct apikeys k = { 0 };
	size_t i;
	int rc = -1;

	if (!apikey_key_ok(key, len) || open_digest(&k) < 0 ||
	    digest(k.ctx, k.md, key, len, d) < 0)
		goto done;
	for (i = 0; i < APIKEY_DIGEST_LEN; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[APIKEY_HEX_LEN] = '\0';
	rc = 0;
done:
	EVP_MD_CTX_free(k.ctx);
	EVP_MD_free(k.md);
	return rc;
}
