/*
 * jwt: keys (config PEM and secret files, a JWK set), token verification
 * and the verified-token cache. See jwt.h for the contract.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "json.h"
#include "jwt.h"

#define MAX_KEY_FILE	(1024 * 1024)	/* PEM, secret or JWK set */
#define JWKS_DEPTH	8
#define RSA_MIN_BITS	2048		/* RFC 7518 3.3 and 3.5 */

/* ---- algorithms ---------------------------------------------------------- */

enum fam { F_HMAC, F_RSA, F_PSS, F_ECDSA, F_EDDSA };
enum { MD_256, MD_384, MD_512, MD_N };

static const char *const md_names[MD_N] = { "SHA256", "SHA384", "SHA512" };

static const struct alg {
	const char *name;
	enum fam fam;
	unsigned md;
	size_t half;		/* ECDSA: bytes of r (and of s) */
	const char *group;	/* ECDSA: the curve's OpenSSL name */
} algs[] = {
	{ "HS256", F_HMAC, MD_256, 0, NULL },
	{ "HS384", F_HMAC, MD_384, 0, NULL },
	{ "HS512", F_HMAC, MD_512, 0, NULL },
	{ "RS256", F_RSA, MD_256, 0, NULL },
	{ "RS384", F_RSA, MD_384, 0, NULL },
	{ "RS512", F_RSA, MD_512, 0, NULL },
	{ "PS256", F_PSS, MD_256, 0, NULL },
	{ "PS384", F_PSS, MD_384, 0, NULL },
	{ "PS512", F_PSS, MD_512, 0, NULL },
	{ "ES256", F_ECDSA, MD_256, 32, "prime256v1" },
	{ "ES384", F_ECDSA, MD_384, 48, "secp384r1" },
	{ "EdDSA", F_EDDSA, MD_N, 0, NULL },
};
#define NALGS	(sizeof(algs) / sizeof(algs[0]))

static int
alg_find(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < NALGS; i++)
		if (strlen(algs[i].name) == n &&
		    memcmp(algs[i].name, s, n) == 0)
			return (int)i;
	return -1;
}

/* ---- keys ---------------------------------------------------------------- */

struct key {
	char *kid;			/* NULL: none */
	size_t kid_len;
	unsigned alg;			/* index in algs */
	EVP_PKEY *pkey;			/* all but HMAC */
	unsigned char *secret;		/* HMAC */
	size_t secret_len;
};

struct jwt_keys {
	struct key *v;
	size_t n, cap;
	EVP_MD *md[MD_N];
	EVP_MAC *hmac;
};

static void
key_clear(struct key *k)
{
	free(k->kid);
	EVP_PKEY_free(k->pkey);
	if (k->secret != NULL)
		OPENSSL_cleanse(k->secret, k->secret_len);
	free(k->secret);
	memset(k, 0, sizeof(*k));
}

void
jwt_keys_free(struct jwt_keys *k)
{
	size_t i;

	if (k == NULL)
		return;
	for (i = 0; i < k->n; i++)
		key_clear(&k->v[i]);
	free(k->v);
	for (i = 0; i < MD_N; i++)
		EVP_MD_free(k->md[i]);
	EVP_MAC_free(k->hmac);
	free(k);
}

size_t
jwt_keys_count(const struct jwt_keys *k)
{
	return k == NULL ? 0 : k->n;
}

/* OpenSSL's reason for the last failure, then its error queue emptied. */
static const char *
ossl_why(char *buf, size_t n)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	if (r != NULL)
		snprintf(buf, n, "%s", r);
	else if (e != 0)
		ERR_error_string_n(e, buf, n);
	else
		snprintf(buf, n, "no reason given");
	ERR_clear_error();
	return buf;
}

/* A kid fit for a message: printable ASCII, at most 40 bytes. */
static const char *
kid_show(const char *kid, size_t len, char *buf, size_t n)
{
	size_t i, o = 0;

	if (kid == NULL)
		return "";
	o = (size_t)snprintf(buf, n, " (kid \"");
	for (i = 0; i < len && i < 40 && o + 4 < n; i++)
		buf[o++] = kid[i] >= 0x20 && kid[i] < 0x7f ? kid[i] : '?';
	snprintf(buf + o, n - o, "%s\")", i < len ? "..." : "");
	return buf;
}

static int
read_file(const char *path, unsigned char **out, size_t *len, char *why,
    size_t whylen)
{
	struct stat st = { 0 };
	unsigned char *buf = NULL;
	size_t got = 0;
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > MAX_KEY_FILE) {
		snprintf(why, whylen, "%s: %s", path,
		    S_ISREG(st.st_mode) && st.st_size > MAX_KEY_FILE ?
		    "larger than 1 MiB" : "not a regular file");
		close(fd);
		return -1;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		snprintf(why, whylen, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	while (got < (size_t)st.st_size) {
		r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(why, whylen, "%s: %s", path, r < 0 ?
			    strerror(errno) : "shorter than its size");
			close(fd);
			free(buf);
			return -1;
		}
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}

/* Whether PKEY suits algs[ALG]; if not, why says what it is instead. */
static int
key_fits(EVP_PKEY *pkey, unsigned alg, char *why, size_t whylen)
{
	const struct alg *a = &algs[alg];
	const char *type = EVP_PKEY_get0_type_name(pkey);
	char group[64];
	size_t glen = 0;

	if (type == NULL)
		type = "unknown";
	switch (a->fam) {
	case F_RSA:
	case F_PSS:
		if (!EVP_PKEY_is_a(pkey, "RSA"))
			break;
		if (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS) {
			snprintf(why, whylen, "an RSA key of %d bits is too "
			    "short for %s (at least %d)",
			    EVP_PKEY_get_bits(pkey), a->name, RSA_MIN_BITS);
			return -1;
		}
		return 0;
	case F_ECDSA:
		if (!EVP_PKEY_is_a(pkey, "EC"))
			break;
		if (EVP_PKEY_get_group_name(pkey, group, sizeof(group),
		    &glen) != 1) {
			ERR_clear_error();
			snprintf(group, sizeof(group), "unnamed curve");
		}
		if (strcmp(group, a->group) == 0)
			return 0;
		snprintf(why, whylen, "an EC key on %s does not fit %s (it "
		    "needs %s)", group, a->name,
		    a->half == 32 ? "P-256" : "P-384");
		return -1;
	case F_EDDSA:
		if (EVP_PKEY_is_a(pkey, "ED25519"))
			return 0;
		break;
	case F_HMAC:
		break;
	}
	snprintf(why, whylen, "a key of type %s does not fit %s", type,
	    a->name);
	return -1;
}

static int
keys_add(struct jwt_keys *ks, struct key *k, char *why, size_t whylen)
{
	struct key *v;
	size_t i;

	for (i = 0; k->kid != NULL && i < ks->n; i++)
		if (ks->v[i].kid != NULL && ks->v[i].kid_len == k->kid_len &&
		    memcmp(ks->v[i].kid, k->kid, k->kid_len) == 0) {
			snprintf(why, whylen, "kid is used twice");
			return -1;
		}
	if (ks->n == ks->cap) {
		v = realloc(ks->v, (ks->cap ? ks->cap * 2 : 8) * sizeof(*v));
		if (v == NULL) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		ks->v = v;
		ks->cap = ks->cap ? ks->cap * 2 : 8;
	}
	ks->v[ks->n++] = *k;
	memset(k, 0, sizeof(*k));
	return 0;
}

static EVP_PKEY *
pem_public(const unsigned char *pem, size_t len)
{
	OSSL_DECODER_CTX *d;
	EVP_PKEY *pkey = NULL;
	const unsigned char *p = pem;

	d = OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL,
	    OSSL_KEYMGMT_SELECT_PUBLIC_KEY, NULL, NULL);
	if (d == NULL)
		return NULL;
	if (OSSL_DECODER_from_data(d, &p, &len) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	OSSL_DECODER_CTX_free(d);
	return pkey;
}

/* One key of auth.jwt.keys. */
static int
load_cfg_key(struct jwt_keys *ks, const struct cfg_jwt_key *ck, char *why,
    size_t whylen)
{
	struct key k = { 0 };
	unsigned char *buf = NULL;
	size_t len = 0;
	const char *file;
	char r[256], ossl[160];
	int alg;

	alg = ck->alg != NULL ? alg_find(ck->alg, strlen(ck->alg)) : -1;
	if (alg < 0) {
		snprintf(why, whylen, "%d: alg '%s' is not supported", ck->line,
		    ck->alg != NULL ? ck->alg : "");
		return -1;
	}
	k.alg = (unsigned)alg;
	file = algs[alg].fam == F_HMAC ? ck->secret_file : ck->public_key;
	if (file == NULL) {
		snprintf(why, whylen, "%d: %s needs '%s'", ck->line, ck->alg,
		    algs[alg].fam == F_HMAC ? "secret_file" : "public_key");
		return -1;
	}
	if (read_file(file, &buf, &len, r, sizeof(r)) < 0) {
		snprintf(why, whylen, "%d: %s", ck->line, r);
		return -1;
	}
	if (algs[alg].fam == F_HMAC) {
		if (len > 0 && buf[len - 1] == '\n')
			len--;
		if (len == 0) {
			snprintf(why, whylen, "%d: %s: the secret is empty",
			    ck->line, file);
			goto fail;
		}
		k.secret = buf;
		k.secret_len = len;
		buf = NULL;
	} else {
		k.pkey = pem_public(buf, len);
		if (k.pkey == NULL) {
			snprintf(why, whylen, "%d: %s: not a PEM public key "
			    "(OpenSSL: %s)", ck->line, file,
			    ossl_why(ossl, sizeof(ossl)));
			goto fail;
		}
		if (key_fits(k.pkey, k.alg, r, sizeof(r)) < 0) {
			snprintf(why, whylen, "%d: %s: %s", ck->line, file, r);
			goto fail;
		}
	}
	if (ck->kid != NULL) {
		k.kid = strdup(ck->kid);
		k.kid_len = strlen(ck->kid);
		if (k.kid == NULL) {
			snprintf(why, whylen, "%d: out of memory", ck->line);
			goto fail;
		}
	}
	if (keys_add(ks, &k, r, sizeof(r)) < 0) {
		snprintf(why, whylen, "%d: kid '%s': %s", ck->line, ck->kid, r);
		goto fail;
	}
	free(buf);
	return 0;
fail:
	if (buf != NULL)
		OPENSSL_cleanse(buf, len);
	free(buf);
	key_clear(&k);
	return -1;
}

/* ---- base64url ----------------------------------------------------------- */

static int
b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Strict base64url: the alphabet only (no padding, no whitespace), no
 * length that leaves a lone sextet, and unused trailing bits zero, so one
 * value has one spelling. OUT holds n * 3 / 4 bytes. Returns the decoded
 * length or -1. */
static long
b64url_decode(const char *s, size_t n, unsigned char *out)
{
	size_t i, o = 0;
	unsigned acc = 0, bits = 0;
	int v;

	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		v = b64_val((unsigned char)s[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return -1;
	return (long)o;
}

/* A base64url string member NAME of O decoded into A; -1 when missing,
 * not a string or not base64url. */
static int
b64_member(const struct json_value *o, const char *name, struct arena *a,
    unsigned char **out, size_t *len)
{
	const struct json_value *v = json_get(o, name);
	long n;

	if (v == NULL || v->type != JSON_STRING)
		return -1;
	*out = arena_alloc(a, v->u.str.len * 3 / 4 + 1);
	if (*out == NULL)
		return -1;
	n = b64url_decode(v->u.str.p, v->u.str.len, *out);
	if (n < 0)
		return -1;
	*len = (size_t)n;
	return 0;
}

/* ---- JWK sets ------------------------------------------------------------ */

static EVP_PKEY *
pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
	EVP_PKEY_CTX *pc = NULL;
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM *params;

	params = OSSL_PARAM_BLD_to_param(bld);
	if (params == NULL)
		return NULL;
	pc = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	if (pc == NULL || EVP_PKEY_fromdata_init(pc) != 1 ||
	    EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(pc);
	OSSL_PARAM_free(params);
	return pkey;
}

static EVP_PKEY *
jwk_rsa(const struct json_value *j, struct arena *a, const char **err)
{
	unsigned char *n, *e;
	size_t nl, el;
	BIGNUM *bn = NULL, *be = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	if (b64_member(j, "n", a, &n, &nl) < 0 || nl == 0 ||
	    b64_member(j, "e", a, &e, &el) < 0 || el == 0) {
		*err = "an RSA JWK needs base64url 'n' and 'e'";
		return NULL;
	}
	bn = BN_bin2bn(n, (int)nl, NULL);
	be = BN_bin2bn(e, (int)el, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn == NULL || be == NULL || bld == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) != 1)
		goto done;
	pkey = pkey_fromdata("RSA", bld);
done:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	return pkey;
}

static EVP_PKEY *
jwk_ec(const struct json_value *j, struct arena *a, const char **err)
{
	const struct json_value *crv = json_get(j, "crv");
	unsigned char *x, *y, pt[1 + 2 * 48];
	size_t xl, yl, half;
	const char *group;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *pc = NULL;

	if (json_str_eq(crv, "P-256")) {
		group = "prime256v1";
		half = 32;
	} else if (json_str_eq(crv, "P-384")) {
		group = "secp384r1";
		half = 48;
	} else {
		*err = "an EC JWK needs crv \"P-256\" or \"P-384\"";
		return NULL;
	}
	if (b64_member(j, "x", a, &x, &xl) < 0 ||
	    b64_member(j, "y", a, &y, &yl) < 0 || xl != half || yl != half) {
		*err = half == 32 ? "a P-256 JWK needs base64url 'x' and 'y' "
		    "of 32 bytes each" : "a P-384 JWK needs base64url 'x' and "
		    "'y' of 48 bytes each";
		return NULL;
	}
	pt[0] = 0x04;			/* uncompressed point */
	memcpy(pt + 1, x, half);
	memcpy(pt + 1 + half, y, half);
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
	    group, 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
	    1 + 2 * half) != 1)
		goto done;
	pkey = pkey_fromdata("EC", bld);
	if (pkey == NULL)
		goto done;
	/* the point must be on the curve: an off-curve key is an attack */
	pc = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (pc == NULL || EVP_PKEY_public_check(pc) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
		ERR_clear_error();
		*err = "the EC point is not on its curve";
	}
done:
	EVP_PKEY_CTX_free(pc);
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

static EVP_PKEY *
jwk_okp(const struct json_value *j, struct arena *a, const char **err)
{
	unsigned char *x;
	size_t xl;
	EVP_PKEY *pkey;

	if (!json_str_eq(json_get(j, "crv"), "Ed25519")) {
		*err = "an OKP JWK needs crv \"Ed25519\"";
		return NULL;
	}
	if (b64_member(j, "x", a, &x, &xl) < 0 || xl != 32) {
		*err = "an Ed25519 JWK needs a base64url 'x' of 32 bytes";
		return NULL;
	}
	pkey = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, x, xl);
	if (pkey == NULL)
		*err = NULL;
	return pkey;
}

/* One JWK (element IDX of keys) into *K; 1 when skipped (use not sig). */
static int
load_jwk(const struct json_value *j, struct arena *a, struct key *k,
    char *why, size_t whylen)
{
	const struct json_value *use, *kty, *alg, *kid;
	const char *err = NULL;
	char ossl[160];
	unsigned char *sec;
	size_t sl;
	int ai;

	if (j->type != JSON_OBJECT) {
		snprintf(why, whylen, "not a JSON object");
		return -1;
	}
	use = json_get(j, "use");
	if (use != NULL && use->type != JSON_STRING) {
		snprintf(why, whylen, "'use' is not a string");
		return -1;
	}
	if (use != NULL && !json_str_eq(use, "sig"))
		return 1;
	kid = json_get(j, "kid");
	if (kid != NULL) {
		if (kid->type != JSON_STRING) {
			snprintf(why, whylen, "'kid' is not a string");
			return -1;
		}
		k->kid = malloc(kid->u.str.len + 1);
		if (k->kid == NULL) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		memcpy(k->kid, kid->u.str.p, kid->u.str.len + 1);
		k->kid_len = kid->u.str.len;
	}
	alg = json_get(j, "alg");
	if (alg == NULL || alg->type != JSON_STRING) {
		snprintf(why, whylen, "a JWK must name its 'alg'");
		return -1;
	}
	ai = alg_find(alg->u.str.p, alg->u.str.len);
	if (ai < 0) {
		snprintf(why, whylen, "alg is not one of HS256/384/512, "
		    "RS256/384/512, PS256/384/512, ES256/384, EdDSA");
		return -1;
	}
	k->alg = (unsigned)ai;
	kty = json_get(j, "kty");
	if (kty == NULL || kty->type != JSON_STRING) {
		snprintf(why, whylen, "a JWK needs 'kty'");
		return -1;
	}
	if (json_str_eq(kty, "oct")) {
		if (algs[ai].fam != F_HMAC) {
			snprintf(why, whylen, "an oct key does not fit %s",
			    algs[ai].name);
			return -1;
		}
		if (b64_member(j, "k", a, &sec, &sl) < 0 || sl == 0) {
			snprintf(why, whylen, "an oct JWK needs a non-empty "
			    "base64url 'k'");
			return -1;
		}
		k->secret = malloc(sl);
		if (k->secret == NULL) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		memcpy(k->secret, sec, sl);
		k->secret_len = sl;
		OPENSSL_cleanse(sec, sl);
		return 0;
	}
	if (json_str_eq(kty, "RSA"))
		k->pkey = jwk_rsa(j, a, &err);
	else if (json_str_eq(kty, "EC"))
		k->pkey = jwk_ec(j, a, &err);
	else if (json_str_eq(kty, "OKP"))
		k->pkey = jwk_okp(j, a, &err);
	else
		err = "kty is not one of RSA, EC, OKP, oct";
	if (k->pkey == NULL) {
		if (err != NULL)
			snprintf(why, whylen, "%s", err);
		else
			snprintf(why, whylen, "not a valid key (OpenSSL: %s)",
			    ossl_why(ossl, sizeof(ossl)));
		return -1;
	}
	return key_fits(k->pkey, k->alg, why, whylen);
}

static int
load_jwks(struct jwt_keys *ks, const char *file, char *why, size_t whylen)
{
	struct arena_cache cache = { 0 };
	struct arena a;
	struct json_value root;
	const struct json_value *keys;
	struct json_limits lim = { JWKS_DEPTH, MAX_KEY_FILE };
	struct key k = { 0 };
	unsigned char *buf = NULL;
	size_t len, i, at = 0, used = 0;
	char r[256], kb[64];
	int rc = -1, e;

	arena_init(&a, &cache);
	if (read_file(file, &buf, &len, why, whylen) < 0)
		goto done;
	e = json_parse((const char *)buf, len, &lim, &a, &root, &at);
	if (e < 0) {
		snprintf(why, whylen, "%s: not a JWK set: %s at byte %zu",
		    file, json_strerror(e), at);
		goto done;
	}
	keys = json_get(&root, "keys");
	if (keys == NULL || keys->type != JSON_ARRAY) {
		snprintf(why, whylen, "%s: a JWK set is an object with a "
		    "'keys' array", file);
		goto done;
	}
	for (i = 0; i < keys->u.arr.n; i++) {
		e = load_jwk(&keys->u.arr.v[i], &a, &k, r, sizeof(r));
		if (e == 0)
			e = keys_add(ks, &k, r, sizeof(r));
		if (e < 0) {
			snprintf(why, whylen, "%s: key #%zu%s: %s", file, i + 1,
			    kid_show(k.kid, k.kid_len, kb, sizeof(kb)), r);
			goto done;
		}
		if (e == 0)
			used++;
		key_clear(&k);
	}
	if (used == 0) {
		snprintf(why, whylen, "%s: no key for signatures in the JWK "
		    "set", file);
		goto done;
	}
	rc = 0;
done:
	key_clear(&k);
	free(buf);
	arena_reset(&a);
	arena_cache_free(&cache);
	return rc;
}

int
jwt_keys_load(const struct cfg_auth *au, struct jwt_keys **out, char *why,
    size_t whylen)
{
	struct jwt_keys *ks;
	char ossl[160];
	size_t i;

	*out = NULL;
	ks = calloc(1, sizeof(*ks));
	if (ks == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	for (i = 0; i < MD_N; i++) {
		ks->md[i] = EVP_MD_fetch(NULL, md_names[i], NULL);
		if (ks->md[i] == NULL)
			goto ossl_fail;
	}
	ks->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (ks->hmac == NULL)
		goto ossl_fail;
	for (i = 0; i < au->njwt_keys; i++)
		if (load_cfg_key(ks, &au->jwt_keys[i], why, whylen) < 0)
			goto fail;
	if (au->jwks_file != NULL && load_jwks(ks, au->jwks_file, why,
	    whylen) < 0)
		goto fail;
	if (ks->n == 0) {
		snprintf(why, whylen, "auth.jwt has no key");
		goto fail;
	}
	*out = ks;
	return 0;
ossl_fail:
	snprintf(why, whylen, "OpenSSL: %s", ossl_why(ossl, sizeof(ossl)));
fail:
	jwt_keys_free(ks);
	return -1;
}

/* ---- verification -------------------------------------------------------- */

static const char *const err_names[] = {
	"ok", "malformed_token", "token_too_large", "unsupported_alg",
	"unknown_crit", "unknown_kid", "no_matching_key", "ambiguous_key",
	"alg_mismatch", "bad_signature", "token_expired",
	"token_not_yet_valid", "token_issued_in_future", "wrong_issuer",
	"wrong_audience", "missing_claim", "invalid_claim", "internal_error",
};

const char *
jwt_strerror(int err)
{
	if (err > 0 || (size_t)-err >= sizeof(err_names) / sizeof(err_names[0]))
		return "internal_error";
	return err_names[-err];
}

static int
verify_hmac(const struct jwt_keys *ks, const struct key *k,
    const struct alg *a, const char *msg, size_t mlen,
    const unsigned char *sig, size_t slen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t maclen = 0;
	EVP_MAC_CTX *c;
	OSSL_PARAM p[2];
	int ok;

	c = EVP_MAC_CTX_new(ks->hmac);
	if (c == NULL)
		return JWT_E_INTERNAL;
	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)md_names[a->md], 0);
	p[1] = OSSL_PARAM_construct_end();
	ok = EVP_MAC_init(c, k->secret, k->secret_len, p) == 1 &&
	    EVP_MAC_update(c, (const unsigned char *)msg, mlen) == 1 &&
	    EVP_MAC_final(c, mac, &maclen, sizeof(mac)) == 1;
	EVP_MAC_CTX_free(c);
	if (!ok) {
		ERR_clear_error();
		return JWT_E_INTERNAL;
	}
	if (slen != maclen || CRYPTO_memcmp(mac, sig, maclen) != 0)
		return JWT_E_SIGNATURE;
	return 0;
}

/* DER INTEGER of the unsigned big-endian V[0..n) at O; returns bytes. */
static size_t
der_uint(unsigned char *o, const unsigned char *v, size_t n)
{
	size_t pad;

	while (n > 1 && v[0] == 0) {
		v++;
		n--;
	}
	pad = (v[0] & 0x80) != 0;
	o[0] = 0x02;
	o[1] = (unsigned char)(n + pad);
	o[2] = 0;
	memcpy(o + 2 + pad, v, n);
	return 2 + pad + n;
}

/* JOSE r||s (RFC 7518 3.4) as the DER ECDSA-Sig-Value OpenSSL verifies;
 * at most 2 * (2 + 1 + 48) + 2 = 104 bytes, so every length is short. */
static size_t
ecdsa_der(const unsigned char *sig, size_t half, unsigned char *der)
{
	size_t n = 2;

	n += der_uint(der + n, sig, half);
	n += der_uint(der + n, sig + half, half);
	der[0] = 0x30;
	der[1] = (unsigned char)(n - 2);
	return n;
}

static int
verify_pkey(const struct jwt_keys *ks, const struct key *k,
    const struct alg *a, const char *msg, size_t mlen,
    const unsigned char *sig, size_t slen)
{
	unsigned char der[2 * (3 + 48) + 2];
	EVP_MD_CTX *m;
	EVP_PKEY_CTX *pc = NULL;
	const EVP_MD *md = a->md < MD_N ? ks->md[a->md] : NULL;
	int rc = JWT_E_INTERNAL, r;

	if (a->fam == F_ECDSA) {
		if (slen != 2 * a->half)
			return JWT_E_SIGNATURE;
		slen = ecdsa_der(sig, a->half, der);
		sig = der;
	}
	m = EVP_MD_CTX_new();
	if (m == NULL)
		return JWT_E_INTERNAL;
	if (EVP_DigestVerifyInit(m, &pc, md, NULL, k->pkey) != 1)
		goto done;
	if (a->fam == F_PSS &&
	    (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pc, md) != 1))
		goto done;
	r = EVP_DigestVerify(m, sig, slen, (const unsigned char *)msg, mlen);
	rc = r == 1 ? 0 : JWT_E_SIGNATURE;
done:
	ERR_clear_error();
	EVP_MD_CTX_free(m);
	return rc;
}

/* The JSON object of one base64url segment. */
static int
segment_json(const char *s, size_t n, struct arena *a,
    struct json_value *out)
{
	static const struct json_limits lim = { JWT_MAX_DEPTH, JWT_MAX_TOKEN };
	unsigned char *buf;
	long len;
	int e;

	buf = arena_alloc(a, n * 3 / 4 + 1);
	if (buf == NULL)
		return JWT_E_INTERNAL;
	len = b64url_decode(s, n, buf);
	if (len <= 0)
		return JWT_E_MALFORMED;
	e = json_parse((const char *)buf, (size_t)len, &lim, a, out, NULL);
	if (e == JSON_E_NOMEM)
		return JWT_E_INTERNAL;
	if (e < 0 || out->type != JSON_OBJECT)
		return JWT_E_MALFORMED;
	return 0;
}

static bool
b64url_chars(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (b64_val((unsigned char)s[i]) < 0)
			return false;
	return true;
}

/* The key for a token of algs[alg] with header H. */
static int
pick_key(const struct jwt_keys *ks, const struct json_value *h,
    unsigned alg, const struct key **out)
{
	const struct json_value *kid = json_get(h, "kid");
	const struct key *k = NULL;
	size_t i, n = 0;

	if (kid != NULL) {
		if (kid->type != JSON_STRING)
			return JWT_E_MALFORMED;
		for (i = 0; i < ks->n; i++)
			if (ks->v[i].kid != NULL &&
			    ks->v[i].kid_len == kid->u.str.len &&
			    memcmp(ks->v[i].kid, kid->u.str.p,
			    kid->u.str.len) == 0)
				break;
		if (i == ks->n)
			return JWT_E_UNKNOWN_KID;
		if (ks->v[i].alg != alg)
			return JWT_E_ALG_MISMATCH;
		*out = &ks->v[i];
		return 0;
	}
	for (i = 0; i < ks->n; i++)
		if (ks->v[i].alg == alg) {
			k = &ks->v[i];
			n++;
		}
	if (n == 0)
		return JWT_E_NO_KEY;
	if (n > 1)
		return JWT_E_AMBIGUOUS;
	*out = k;
	return 0;
}

static int64_t
sat_add(int64_t a, int64_t b)
{
	if (b > 0 && a > INT64_MAX - b)
		return INT64_MAX;
	if (b < 0 && a < INT64_MIN - b)
		return INT64_MIN;
	return a + b;
}

/* A NumericDate claim: 0 with *t set, 1 when absent, JWT_E_CLAIM when
 * not a number. A fraction is floored; a value past +-2^62 seconds is
 * clamped there (it is never or always in the past either way). */
static int
numeric_date(const struct json_value *c, const char *name, int64_t *t)
{
	const struct json_value *v = json_get(c, name);
	const double lim = 4611686018427387904.0;	/* 2^62 */
	double d;

	if (v == NULL)
		return 1;
	if (v->type != JSON_NUMBER)
		return JWT_E_CLAIM;
	if (json_int(v, t))
		return 0;
	if (!json_number(v, &d) || d != d)	/* NaN */
		return JWT_E_CLAIM;
	if (d > lim)
		d = lim;
	if (d < -lim)
		d = -lim;
	/* floor without libm: the cast truncates toward zero */
	*t = (int64_t)d;
	if ((double)*t > d)
		(*t)--;
	return 0;
}

static bool
header_safe(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* A string claim for a header value: non-empty, no control byte. */
static int
identity_str(const struct json_value *v, struct arena *a, const char **out,
    size_t *len)
{
	if (v->type != JSON_STRING || v->u.str.len == 0 ||
	    !header_safe(v->u.str.p, v->u.str.len))
		return JWT_E_CLAIM;
	*out = arena_dup(a, v->u.str.p, v->u.str.len);
	if (*out == NULL)
		return JWT_E_INTERNAL;
	*len = v->u.str.len;
	return 0;
}

/* Scopes, a space-separated string or an array of strings, joined with
 * single spaces. */
static int
scopes(const struct json_value *v, struct arena *a, struct jwt_result *r)
{
	size_t i, j, n = 0, cap = 0;
	char *o;

	if (v == NULL) {
		r->scopes = "";
		return 0;
	}
	if (v->type == JSON_STRING) {
		cap = v->u.str.len;
	} else if (v->type == JSON_ARRAY) {
		for (i = 0; i < v->u.arr.n; i++) {
			const struct json_value *e = &v->u.arr.v[i];

			if (e->type != JSON_STRING || e->u.str.len == 0 ||
			    memchr(e->u.str.p, ' ', e->u.str.len) != NULL)
				return JWT_E_CLAIM;
			cap += e->u.str.len + 1;
		}
	} else {
		return JWT_E_CLAIM;
	}
	o = arena_alloc(a, cap + 1);
	if (o == NULL)
		return JWT_E_INTERNAL;
	if (v->type == JSON_STRING) {
		const char *s = v->u.str.p;

		for (i = 0; i < v->u.str.len; i = j) {
			while (i < v->u.str.len && s[i] == ' ')
				i++;
			for (j = i; j < v->u.str.len && s[j] != ' '; j++)
				;
			if (j == i)
				break;
			if (n > 0)
				o[n++] = ' ';
			memcpy(o + n, s + i, j - i);
			n += j - i;
		}
	} else {
		for (i = 0; i < v->u.arr.n; i++) {
			if (n > 0)
				o[n++] = ' ';
			memcpy(o + n, v->u.arr.v[i].u.str.p,
			    v->u.arr.v[i].u.str.len);
			n += v->u.arr.v[i].u.str.len;
		}
	}
	o[n] = '\0';
	if (!header_safe(o, n))
		return JWT_E_CLAIM;
	r->scopes = o;
	r->scopes_len = n;
	return 0;
}

static int
audience(const struct json_value *aud, const char *want)
{
	size_t i;
	bool found = false;

	if (aud == NULL)
		return JWT_E_AUDIENCE;
	if (aud->type == JSON_STRING)
		return json_str_eq(aud, want) ? 0 : JWT_E_AUDIENCE;
	if (aud->type != JSON_ARRAY)
		return JWT_E_CLAIM;
	for (i = 0; i < aud->u.arr.n; i++) {
		if (aud->u.arr.v[i].type != JSON_STRING)
			return JWT_E_CLAIM;
		if (json_str_eq(&aud->u.arr.v[i], want))
			found = true;
	}
	return found ? 0 : JWT_E_AUDIENCE;
}

static int
check_claims(const struct json_value *c, const struct cfg_auth *au,
    int64_t now, struct arena *a, struct jwt_result *r)
{
	const char *name;
	const struct json_value *v;
	int64_t t, leeway = au->leeway_s;
	size_t i;
	int e;

	for (i = 0; i < au->nrequire; i++)
		if (json_get(c, au->require[i]) == NULL)
			return JWT_E_MISSING;
	e = numeric_date(c, "exp", &t);
	if (e < 0)
		return e;
	r->valid_until = INT64_MAX;
	if (e == 0) {
		r->has_exp = true;
		r->exp = t;
		r->valid_until = sat_add(t, leeway);
		if (now >= r->valid_until)
			return JWT_E_EXPIRED;
	}
	e = numeric_date(c, "nbf", &t);
	if (e < 0)
		return e;
	if (e == 0 && sat_add(now, leeway) < t)
		return JWT_E_NBF;
	e = numeric_date(c, "iat", &t);
	if (e < 0)
		return e;
	if (e == 0 && sat_add(now, leeway) < t)
		return JWT_E_IAT;
	if (au->issuer != NULL && !json_str_eq(json_get(c, "iss"), au->issuer))
		return JWT_E_ISSUER;
	if (au->audience != NULL &&
	    (e = audience(json_get(c, "aud"), au->audience)) < 0)
		return e;

	name = au->consumer_claim != NULL ? au->consumer_claim : "sub";
	v = json_get(c, name);
	if (v == NULL)
		return JWT_E_MISSING;
	if ((e = identity_str(v, a, &r->consumer, &r->consumer_len)) < 0)
		return e;
	v = au->tier_claim != NULL ? json_get(c, au->tier_claim) : NULL;
	if (v != NULL && (e = identity_str(v, a, &r->tier, &r->tier_len)) < 0)
		return e;
	v = au->scopes_claim != NULL ? json_get(c, au->scopes_claim) : NULL;
	return scopes(v, a, r);
}

int
jwt_verify(const struct jwt_keys *ks, const struct cfg_auth *au,
    const char *tok, size_t len, int64_t now_s, struct arena *a,
    struct jwt_result *out)
{
	const char *d1, *d2, *p, *s;
	size_t hl, pl, sl;
	struct json_value h, c;
	const struct json_value *v;
	const struct key *k = NULL;
	const struct alg *alg;
	unsigned char *sig;
	long sn;
	int e, ai;

	memset(out, 0, sizeof(*out));
	if (len > JWT_MAX_TOKEN)
		return JWT_E_TOO_LARGE;
	if (len == 0)
		return JWT_E_MALFORMED;
	d1 = memchr(tok, '.', len);
	d2 = d1 != NULL ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) :
	    NULL;
	if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
		return JWT_E_MALFORMED;
	hl = (size_t)(d1 - tok);
	p = d1 + 1;
	pl = (size_t)(d2 - p);
	s = d2 + 1;
	sl = len - (size_t)(s - tok);
	if (hl == 0 || pl == 0 || !b64url_chars(p, pl) ||
	    !b64url_chars(s, sl))
		return JWT_E_MALFORMED;

	if ((e = segment_json(tok, hl, a, &h)) < 0)
		return e;
	v = json_get(&h, "alg");
	if (v == NULL || v->type != JSON_STRING)
		return JWT_E_MALFORMED;
	ai = alg_find(v->u.str.p, v->u.str.len);
	if (ai < 0)
		return JWT_E_ALG;
	alg = &algs[ai];
	/* we implement no extension, so any critical one is unknown */
	if (json_get(&h, "crit") != NULL)
		return JWT_E_CRIT;
	if ((e = pick_key(ks, &h, (unsigned)ai, &k)) < 0)
		return e;

	sig = arena_alloc(a, sl * 3 / 4 + 1);
	if (sig == NULL)
		return JWT_E_INTERNAL;
	sn = b64url_decode(s, sl, sig);
	if (sn < 0)
		return JWT_E_MALFORMED;
	if (alg->fam == F_HMAC)
		e = verify_hmac(ks, k, alg, tok, (size_t)(d2 - tok), sig,
		    (size_t)sn);
	else
		e = verify_pkey(ks, k, alg, tok, (size_t)(d2 - tok), sig,
		    (size_t)sn);
	if (e < 0)
		return e;

	if ((e = segment_json(p, pl, a, &c)) < 0)
		return e;
	e = check_claims(&c, au, now_s, a, out);
	if (e < 0)
		memset(out, 0, sizeof(*out));
	return e;
}
