/*
 * gwctl token: signs a compact JWT with a key file, for testing a route
 * with auth = "jwt". A PEM private key signs RS/PS/ES/EdDSA (the alg
 * defaults from the key: RS256, ES256 or ES384, EdDSA); any other file is
 * an HMAC secret (HS256 by default), its bytes with one trailing newline
 * ignored, as the gateway reads `secret_file`. Claims: sub, iat, exp, and
 * iss, aud, tier and scope (space-separated) when given.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "gwctl_token.h"

#define TOK_MAX_KEY	(1024 * 1024)
#define TOK_MAX_SCOPES	64

struct tok_opts {
	const char *key, *alg, *kid, *sub, *tier, *iss, *aud;
	const char *scope[TOK_MAX_SCOPES];
	int nscope;
	int64_t ttl;
};

/* A growing string. */
struct tok_buf {
	char *p;
	size_t n, cap;
	bool oom;
};

static void
tb_add(struct tok_buf *b, const void *s, size_t n)
{
	char *p;
	size_t cap;

	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		cap = (b->n + n + 1) * 2;
		p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void
tb_str(struct tok_buf *b, const char *s)
{
	tb_add(b, s, strlen(s));
}

/* S as a JSON string, quotes included. */
static void
tb_json(struct tok_buf *b, const char *s)
{
	char esc[8];

	tb_str(b, "\"");
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			tb_add(b, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			tb_str(b, esc);
		} else {
			tb_add(b, s, 1);
		}
	}
	tb_str(b, "\"");
}

static void
tb_b64url(struct tok_buf *b, const unsigned char *p, size_t n)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char o[4];
	size_t i;
	uint32_t v;

	for (i = 0; i + 3 <= n; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		o[0] = al[v >> 18];
		o[1] = al[(v >> 12) & 63];
		o[2] = al[(v >> 6) & 63];
		o[3] = al[v & 63];
		tb_add(b, o, 4);
	}
	if (n - i == 1) {
		v = (uint32_t)p[i] << 16;
		o[0] = al[v >> 18];
		o[1] = al[(v >> 12) & 63];
		tb_add(b, o, 2);
	} else if (n - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		o[0] = al[v >> 18];
		o[1] = al[(v >> 12) & 63];
		o[2] = al[(v >> 6) & 63];
		tb_add(b, o, 3);
	}
}

/* "90", "90s", "30m", "1h", "7d" in seconds; -1 when not one. */
static int64_t
tok_duration(const char *s)
{
	char *end;
	unsigned long long v;
	int64_t mul = 1;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || v == 0 || v > 10ULL * 365 * 86400)
		return -1;
	if (strcmp(end, "d") == 0)
		mul = 86400;
	else if (strcmp(end, "h") == 0)
		mul = 3600;
	else if (strcmp(end, "m") == 0)
		mul = 60;
	else if (*end != '\0' && strcmp(end, "s") != 0)
		return -1;
	return (int64_t)v * mul;
}

static int
tok_args(int argc, char **argv, struct tok_opts *o, FILE *err)
{
	static const char *const names[] = {
		"--key", "--alg", "--kid", "--sub", "--tier", "--scope",
		"--ttl", "--iss", "--aud", NULL
	};
	const char *const *n;
	const char *v;
	int i;

	memset(o, 0, sizeof(*o));
	o->ttl = 3600;
	for (i = 0; i < argc; i++) {
		for (n = names; *n != NULL && strcmp(*n, argv[i]) != 0; n++)
			;
		if (*n == NULL) {
			fprintf(err, "gwctl: token: unknown argument '%s' "
			    "(usage: gwctl " GWCTL_TOKEN_USAGE ")\n", argv[i]);
			return -1;
		}
		if (i + 1 >= argc) {
			fprintf(err, "gwctl: token: %s needs a value\n", *n);
			return -1;
		}
		v = argv[++i];
		if (strcmp(*n, "--key") == 0)
			o->key = v;
		else if (strcmp(*n, "--alg") == 0)
			o->alg = v;
		else if (strcmp(*n, "--kid") == 0)
			o->kid = v;
		else if (strcmp(*n, "--sub") == 0)
			o->sub = v;
		else if (strcmp(*n, "--tier") == 0)
			o->tier = v;
		else if (strcmp(*n, "--iss") == 0)
			o->iss = v;
		else if (strcmp(*n, "--aud") == 0)
			o->aud = v;
		else if (strcmp(*n, "--ttl") == 0) {
			o->ttl = tok_duration(v);
			if (o->ttl < 0) {
				fprintf(err, "gwctl: token: --ttl '%s' is not "
				    "a duration (90, 90s, 30m, 1h, 7d)\n", v);
				return -1;
			}
		} else {
			if (o->nscope == TOK_MAX_SCOPES) {
				fprintf(err, "gwctl: token: at most %d "
				    "--scope\n", TOK_MAX_SCOPES);
				return -1;
			}
			if (*v == '\0' || strchr(v, ' ') != NULL) {
				fprintf(err, "gwctl: token: a scope is one "
				    "non-empty word\n");
				return -1;
			}
			o->scope[o->nscope++] = v;
		}
	}
	if (o->key == NULL || o->sub == NULL) {
		fprintf(err, "gwctl: token: --key and --sub are required "
		    "(usage: gwctl " GWCTL_TOKEN_USAGE ")\n");
		return -1;
	}
	return 0;
}

static int
tok_read(const char *path, unsigned char **out, size_t *len, FILE *err)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	size_t n;

	if (f == NULL) {
		fprintf(err, "gwctl: token: %s: %s\n", path, strerror(errno));
		return -1;
	}
	buf = malloc(TOK_MAX_KEY + 1);
	if (buf == NULL) {
		fclose(f);
		fprintf(err, "gwctl: token: out of memory\n");
		return -1;
	}
	n = fread(buf, 1, TOK_MAX_KEY + 1, f);
	if (ferror(f) || n > TOK_MAX_KEY) {
		fprintf(err, "gwctl: token: %s: %s\n", path, ferror(f) ?
		    "read error" : "larger than 1 MiB");
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	*out = buf;
	*len = n;
	return 0;
}

static EVP_PKEY *
tok_private_key(const unsigned char *pem, size_t len)
{
	OSSL_DECODER_CTX *d;
	EVP_PKEY *pkey = NULL;

	d = OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL,
	    EVP_PKEY_KEYPAIR, NULL, NULL);
	if (d == NULL)
		return NULL;
	if (OSSL_DECODER_from_data(d, &pem, &len) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	OSSL_DECODER_CTX_free(d);
	ERR_clear_error();
	return pkey;
}

/* The alg a key signs with by default, or NULL. */
static const char *
tok_default_alg(EVP_PKEY *pkey)
{
	char group[64];
	size_t gl;

	if (EVP_PKEY_is_a(pkey, "RSA"))
		return "RS256";
	if (EVP_PKEY_is_a(pkey, "ED25519"))
		return "EdDSA";
	if (EVP_PKEY_is_a(pkey, "EC") &&
	    EVP_PKEY_get_group_name(pkey, group, sizeof(group), &gl) == 1) {
		if (strcmp(group, "prime256v1") == 0)
			return "ES256";
		if (strcmp(group, "secp384r1") == 0)
			return "ES384";
	}
	ERR_clear_error();
	return NULL;
}

static const char *
tok_md(const char *alg)
{
	size_t n = strlen(alg);

	if (n == 5 && strcmp(alg + 2, "256") == 0)
		return "SHA256";
	if (n == 5 && strcmp(alg + 2, "384") == 0)
		return "SHA384";
	if (n == 5 && strcmp(alg + 2, "512") == 0)
		return "SHA512";
	return NULL;
}

/* Whether PKEY can sign ALG (gwctl only signs what the gateway takes). */
static bool
tok_fits(EVP_PKEY *pkey, const char *alg)
{
	const char *def = tok_default_alg(pkey);

	if (def == NULL)
		return false;
	if (alg[0] == 'R' || alg[0] == 'P')
		return strcmp(def, "RS256") == 0 && tok_md(alg) != NULL &&
		    alg[1] == 'S';
	return strcmp(def, alg) == 0;
}

static int
tok_sign_hmac(const char *alg, const unsigned char *key, size_t klen,
    const char *msg, size_t mlen, unsigned char *sig, size_t *slen)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *c = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM p[2];
	int ok;

	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)tok_md(alg), 0);
	p[1] = OSSL_PARAM_construct_end();
	ok = c != NULL && EVP_MAC_init(c, key, klen, p) == 1 &&
	    EVP_MAC_update(c, (const unsigned char *)msg, mlen) == 1 &&
	    EVP_MAC_final(c, sig, slen, EVP_MAX_MD_SIZE) == 1;
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(mac);
	return ok ? 0 : -1;
}

/* A DER ECDSA signature as JOSE r||s of HALF bytes each. */
static int
tok_jose(const unsigned char *der, size_t n, size_t half, unsigned char *out)
{
	ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &der, (long)n);
	int ok;

	if (s == NULL)
		return -1;
	ok = BN_bn2binpad(ECDSA_SIG_get0_r(s), out, (int)half) == (int)half &&
	    BN_bn2binpad(ECDSA_SIG_get0_s(s), out + half, (int)half) ==
	    (int)half;
	ECDSA_SIG_free(s);
	return ok ? 0 : -1;
}

static int
tok_sign_pkey(const char *alg, EVP_PKEY *pkey, const char *msg, size_t mlen,
    unsigned char **sig, size_t *slen)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	const char *md = alg[0] == 'E' && alg[1] == 'd' ? NULL : tok_md(alg);
	unsigned char *der = NULL;
	size_t n = 0, half = strcmp(alg, "ES384") == 0 ? 48 : 32;
	int rc = -1;

	*sig = NULL;
	if (m == NULL || EVP_DigestSignInit_ex(m, &pc, md, NULL, NULL, pkey,
	    NULL) != 1)
		goto done;
	if (alg[0] == 'P' &&
	    (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md_name(pc, md, NULL) != 1))
		goto done;
	if (EVP_DigestSign(m, NULL, &n, (const unsigned char *)msg,
	    mlen) != 1 || (der = malloc(n)) == NULL ||
	    EVP_DigestSign(m, der, &n, (const unsigned char *)msg, mlen) != 1)
		goto done;
	if (alg[0] == 'E' && alg[1] == 'S') {
		*sig = malloc(2 * half);
		if (*sig == NULL || tok_jose(der, n, half, *sig) < 0)
			goto done;
		*slen = 2 * half;
		free(der);
	} else {
		*sig = der;
		*slen = n;
	}
	der = NULL;
	rc = 0;
done:
	if (rc < 0) {
		free(*sig);
		*sig = NULL;
	}
	free(der);
	EVP_MD_CTX_free(m);
	return rc;
}

static void
tok_claims(struct tok_buf *b, const struct tok_opts *o, int64_t now)
{
	char num[32];
	int i;

	tb_str(b, "{\"sub\":");
	tb_json(b, o->sub);
	if (o->iss != NULL) {
		tb_str(b, ",\"iss\":");
		tb_json(b, o->iss);
	}
	if (o->aud != NULL) {
		tb_str(b, ",\"aud\":");
		tb_json(b, o->aud);
	}
	if (o->tier != NULL) {
		tb_str(b, ",\"tier\":");
		tb_json(b, o->tier);
	}
	if (o->nscope > 0) {
		struct tok_buf s = { 0 };

		for (i = 0; i < o->nscope; i++) {
			if (i > 0)
				tb_str(&s, " ");
			tb_str(&s, o->scope[i]);
		}
		tb_str(b, ",\"scope\":");
		tb_json(b, s.oom ? "" : s.p);
		b->oom |= s.oom;
		free(s.p);
	}
	snprintf(num, sizeof(num), "%" PRId64, now);
	tb_str(b, ",\"iat\":");
	tb_str(b, num);
	snprintf(num, sizeof(num), "%" PRId64, now + o->ttl);
	tb_str(b, ",\"exp\":");
	tb_str(b, num);
	tb_str(b, "}");
}

int
gwctl_token(int argc, char **argv, FILE *out, FILE *err)
{
	static const char *const known[] = {
		"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
		"PS384", "PS512", "ES256", "ES384", "EdDSA", NULL
	};
	struct tok_opts o;
	struct tok_buf t = { 0 }, part = { 0 };
	unsigned char *key = NULL, *sig = NULL, mac[EVP_MAX_MD_SIZE];
	size_t klen = 0, kread = 0, slen = 0;
	EVP_PKEY *pkey = NULL;
	const char *alg;
	const char *const *a;
	int rc = 1;

	if (tok_args(argc, argv, &o, err) < 0)
		return 1;
	alg = o.alg;
	if (alg != NULL) {
		for (a = known; *a != NULL && strcmp(*a, alg) != 0; a++)
			;
		if (*a == NULL) {
			fprintf(err, "gwctl: token: --alg '%s' is not one of "
			    "HS256/384/512, RS256/384/512, PS256/384/512, "
			    "ES256/384, EdDSA\n", alg);
			return 1;
		}
	}
	if (tok_read(o.key, &key, &klen, err) < 0)
		return 1;
	kread = klen;
	if (alg == NULL || alg[0] != 'H') {
		pkey = tok_private_key(key, klen);
		if (pkey == NULL && (alg != NULL || (klen >= 10 &&
		    memcmp(key, "-----BEGIN", 10) == 0))) {
			fprintf(err, "gwctl: token: %s: not a PEM private key "
			    "%s\n", o.key, alg != NULL ? "(HS* algs take a "
			    "secret file)" : "");
			goto done;
		}
	}
	if (pkey != NULL) {
		if (alg == NULL)
			alg = tok_default_alg(pkey);
		if (alg == NULL || !tok_fits(pkey, alg)) {
			fprintf(err, "gwctl: token: %s: this %s key cannot "
			    "sign %s\n", o.key, EVP_PKEY_get0_type_name(pkey),
			    alg != NULL ? alg : "any JWT algorithm");
			goto done;
		}
	} else {
		if (alg == NULL)
			alg = "HS256";
		if (klen > 0 && key[klen - 1] == '\n')
			klen--;
		if (klen == 0) {
			fprintf(err, "gwctl: token: %s: the secret is empty\n",
			    o.key);
			goto done;
		}
	}

	tb_str(&part, "{\"alg\":");
	tb_json(&part, alg);
	tb_str(&part, ",\"typ\":\"JWT\"");
	if (o.kid != NULL) {
		tb_str(&part, ",\"kid\":");
		tb_json(&part, o.kid);
	}
	tb_str(&part, "}");
	tb_b64url(&t, (unsigned char *)part.p, part.n);
	tb_str(&t, ".");
	part.n = 0;
	tok_claims(&part, &o, (int64_t)time(NULL));
	if (part.oom || t.oom) {
		fprintf(err, "gwctl: token: out of memory\n");
		goto done;
	}
	tb_b64url(&t, (unsigned char *)part.p, part.n);
	if (t.oom) {
		fprintf(err, "gwctl: token: out of memory\n");
		goto done;
	}
	if (pkey == NULL) {
		if (tok_sign_hmac(alg, key, klen, t.p, t.n, mac, &slen) < 0)
			goto sign_fail;
		tb_str(&t, ".");
		tb_b64url(&t, mac, slen);
	} else {
		if (tok_sign_pkey(alg, pkey, t.p, t.n, &sig, &slen) < 0)
			goto sign_fail;
		tb_str(&t, ".");
		tb_b64url(&t, sig, slen);
	}
	if (t.oom) {
		fprintf(err, "gwctl: token: out of memory\n");
		goto done;
	}
	fprintf(out, "%s\n", t.p);
	rc = 0;
	goto done;
sign_fail:
	fprintf(err, "gwctl: token: signing failed (OpenSSL: %s)\n",
	    ERR_reason_error_string(ERR_peek_last_error()) != NULL ?
	    ERR_reason_error_string(ERR_peek_last_error()) : "no reason");
	ERR_clear_error();
done:
	if (key != NULL)
		OPENSSL_cleanse(key, kread);
	free(key);
	free(sig);
	free(t.p);
	free(part.p);
	EVP_PKEY_free(pkey);
	return rc;
}
