#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "../shm/store.h"
#include "../shm/tickets.h"
#include "tls.h"

#define TLS_MAX_CERTS	4	/* certificate/key pairs per entry */

struct tls_entry {
	const struct cfg_tls *cfg;
	SSL_CTX *ctx;
	struct tls_cert_info certs[TLS_MAX_CERTS];
	unsigned ncerts;
};

struct tls_server {
	struct tls_entry *e;
	size_t n;
	struct store *store;		/* ticket keys; NULL: tickets off */
	struct ticket_keys keys;
	EVP_CIPHER *aes;		/* fetched once: a ticket per handshake */
	bool have_keys;
	uint64_t keys_ms;		/* when the keys were last read */
};

/* SSL ex_data slot: whether an unknown SNI name ends the handshake. */
static int strict_idx = -1;

static void
ssl_reason(char *why, size_t whylen, const char *file, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "unknown error");
	snprintf(why, whylen, "%s: %s (%s)", file, what, buf);
	ERR_clear_error();
}

bool
tls_name_match(const char *pattern, const char *name)
{
	const char *dot;

	if (strcasecmp(pattern, name) == 0)
		return true;
	if (pattern[0] != '*' || pattern[1] != '.')
		return false;
	/* "*.example.com" covers exactly one label before ".example.com" */
	dot = strchr(name, '.');
	return dot != NULL && dot != name && strcasecmp(dot, pattern + 1) == 0;
}

static int
sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_server *ts = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	size_t i, j;
	int pass;

	if (name == NULL)
		return SSL_TLSEXT_ERR_OK;	/* no SNI: the default */
	/* Exact names first, then wildcards. */
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < ts->n; i++)
			for (j = 0; j < ts->e[i].cfg->nnames; j++) {
				const char *p = ts->e[i].cfg->names[j];
				if ((p[0] == '*') != (pass == 1) ||
				    !tls_name_match(p, name))
					continue;
				SSL_set_SSL_CTX(ssl, ts->e[i].ctx);
				return SSL_TLSEXT_ERR_OK;
			}
	if (strict_idx >= 0 && SSL_get_ex_data(ssl, strict_idx) != NULL) {
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h11[] = "\x08http/1.1";

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, h11,
	    sizeof(h11) - 1, in, inlen) == OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;	/* no ALPN: HTTP/1.1 all the same */
}

static uint64_t
mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* The shared keys, read again at most once a second (they rotate hourly
 * by default; a ticket made with the previous key still decrypts). */
static void
keys_fresh(struct tls_server *ts)
{
	uint64_t now = mono_ms();

	if (ts->store == NULL || (ts->have_keys && now - ts->keys_ms < 1000))
		return;
	ts->keys_ms = now;
	ts->have_keys = tickets_read(ts->store, &ts->keys) == 0;
}

static int
ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
    EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct tls_server *ts = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	const struct ticket_key *k;
	OSSL_PARAM p[3];

	if (ts == NULL)
		return 0;
	keys_fresh(ts);
	if (!ts->have_keys)
		return 0;		/* no ticket / a full handshake */
	if (enc) {
		k = &ts->keys.cur;
		memcpy(name, k->name, 16);
		if (RAND_bytes(iv, 16) != 1)
			return -1;
	} else if (memcmp(name, ts->keys.cur.name, 16) == 0) {
		k = &ts->keys.cur;
	} else if (ts->keys.has_prev &&
	    memcmp(name, ts->keys.prev.name, 16) == 0) {
		k = &ts->keys.prev;
	} else {
		return 0;		/* a key long gone: full handshake */
	}
	p[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
	    (void *)k->hmac, sizeof(k->hmac));
	p[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	p[2] = OSSL_PARAM_construct_end();
	if (EVP_MAC_CTX_set_params(hctx, p) != 1)
		return -1;
	if (enc)
		return EVP_EncryptInit_ex(cctx, ts->aes, NULL, k->aes, iv) == 1 ?
		    1 : -1;
	if (EVP_DecryptInit_ex(cctx, ts->aes, NULL, k->aes, iv) != 1)
		return -1;
	/* 2: valid, but renew it under the current key */
	return k == &ts->keys.cur ? 1 : 2;
}

static time_t
not_after(X509 *x)
{
	struct tm tm;

	if (x == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
		return 0;
	return timegm(&tm);
}

static int
load_entry(struct tls_server *ts, struct tls_entry *e, char *why,
    size_t whylen)
{
	const struct cfg_tls *t = e->cfg;
	size_t i;

	e->ctx = SSL_CTX_new(TLS_server_method());
	if (e->ctx == NULL) {
		ssl_reason(why, whylen, t->cert, "cannot make a TLS context");
		return -1;
	}
	SSL_CTX_set_app_data(e->ctx, ts);
	if (SSL_CTX_set_min_proto_version(e->ctx, t->min_version) != 1 ||
	    SSL_CTX_set_cipher_list(e->ctx, TLS_CIPHERS_12) != 1 ||
	    SSL_CTX_set_ciphersuites(e->ctx, TLS_SUITES_13) != 1) {
		ssl_reason(why, whylen, t->cert, "cannot set versions or "
		    "ciphers");
		return -1;
	}
	SSL_CTX_set_options(e->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	    SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* An idle connection keeps no record buffers; writes may be
	 * retried from another address (the HTTP code re-offers the same
	 * bytes). */
	SSL_CTX_set_mode(e->ctx, SSL_MODE_RELEASE_BUFFERS |
	    SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* One read takes whatever the socket holds (a record's header and
	 * body, or a client's whole flight) instead of a header's 5 bytes
	 * and then the rest: half the read calls. */
	SSL_CTX_set_read_ahead(e->ctx, 1);
	/* Resumption by tickets only (no server-side cache, which a client
	 * could not find on another worker); no 0-RTT. */
	SSL_CTX_set_session_cache_mode(e->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_max_early_data(e->ctx, 0);
	/* Key exchange on curves only: a finite-field group costs the
	 * server many times more per handshake, for no gain. */
	if (SSL_CTX_set1_groups_list(e->ctx, TLS_GROUPS) != 1) {
		ssl_reason(why, whylen, t->cert, "cannot set the key exchange "
		    "groups");
		return -1;
	}
	SSL_CTX_set_num_tickets(e->ctx, 1);
	SSL_CTX_set_tlsext_servername_callback(e->ctx, sni_cb);
	SSL_CTX_set_tlsext_servername_arg(e->ctx, ts);
	SSL_CTX_set_alpn_select_cb(e->ctx, alpn_cb, NULL);
	SSL_CTX_set_tlsext_ticket_key_evp_cb(e->ctx, ticket_cb);
	for (i = 0; i < t->ncerts && i < TLS_MAX_CERTS; i++) {
		if (SSL_CTX_use_certificate_chain_file(e->ctx, t->certs[i]) !=
		    1) {
			ssl_reason(why, whylen, t->certs[i], "cannot load the "
			    "certificate");
			return -1;
		}
		if (SSL_CTX_use_PrivateKey_file(e->ctx, t->keys[i],
		    SSL_FILETYPE_PEM) != 1) {
			ssl_reason(why, whylen, t->keys[i], "cannot load the "
			    "private key");
			return -1;
		}
		if (SSL_CTX_check_private_key(e->ctx) != 1) {
			ssl_reason(why, whylen, t->keys[i], "the key does not "
			    "match the certificate");
			return -1;
		}
		e->certs[e->ncerts].entry = t->name;
		e->certs[e->ncerts].file = t->certs[i];
		e->certs[e->ncerts].not_after = not_after(
		    SSL_CTX_get0_certificate(e->ctx));
		e->ncerts++;
	}
	return 0;
}

int
tls_server_new(const struct config *cfg, struct tls_server **out, char *why,
    size_t whylen)
{
	struct tls_server *ts;
	size_t i;

	*out = NULL;
	if (cfg->ntls == 0)
		return 0;
	if (strict_idx < 0)
		strict_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if ((ts = calloc(1, sizeof(*ts))) == NULL ||
	    (ts->e = calloc(cfg->ntls, sizeof(*ts->e))) == NULL) {
		free(ts);
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	ts->n = cfg->ntls;
	/* An explicit fetch: EVP_aes_256_cbc() would be looked up again by
	 * name for every ticket made or opened. */
	if ((ts->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL)) == NULL) {
		ssl_reason(why, whylen, "tls", "cannot fetch AES-256-CBC");
		tls_server_free(ts);
		return -1;
	}
	for (i = 0; i < cfg->ntls; i++) {
		ts->e[i].cfg = &cfg->tls[i];
		if (load_entry(ts, &ts->e[i], why, whylen) < 0) {
			tls_server_free(ts);
			return -1;
		}
	}
	*out = ts;
	return 0;
}

void
tls_server_free(struct tls_server *ts)
{
	size_t i;

	if (ts == NULL)
		return;
	for (i = 0; i < ts->n; i++)
		SSL_CTX_free(ts->e[i].ctx);
	EVP_CIPHER_free(ts->aes);
	free(ts->e);
	OPENSSL_cleanse(&ts->keys, sizeof(ts->keys));
	free(ts);
}

SSL_CTX *
tls_server_ctx(struct tls_server *ts, const char *name)
{
	size_t i;

	for (i = 0; ts != NULL && i < ts->n; i++)
		if (strcmp(ts->e[i].cfg->name, name) == 0)
			return ts->e[i].ctx;
	return NULL;
}

void
tls_set_strict(SSL *ssl, bool strict)
{
	/* A new SSL has no ex_data; setting even NULL would give it a
	 * stack of slots for its life (some 0.4 KiB per connection). */
	if (strict && strict_idx >= 0)
		SSL_set_ex_data(ssl, strict_idx, (void *)1);
}

size_t
tls_server_certs(const struct tls_server *ts, struct tls_cert_info *out,
    size_t max)
{
	size_t i, j, n = 0;

	for (i = 0; ts != NULL && i < ts->n; i++)
		for (j = 0; j < ts->e[i].ncerts && n < max; j++)
			out[n++] = ts->e[i].certs[j];
	return n;
}

void
tls_server_tickets(struct tls_server *ts, struct store *s)
{
	if (ts != NULL)
		ts->store = s;
}

/* ---- client side: TLS to a service's instances ---------------------- */

/* A new session from the instance (TLS 1.3 sends it after the handshake):
 * kept in the slot the SSL points at, for the next connection. */
static int
client_new_session(SSL *ssl, SSL_SESSION *sess)
{
	SSL_SESSION **slot = SSL_get_app_data(ssl);

	if (slot == NULL)
		return 0;
	SSL_SESSION_free(*slot);
	*slot = sess;
	return 1;		/* the reference is ours */
}

SSL_CTX *
tls_client_ctx_new(const struct cfg_service *sv, char *why, size_t whylen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	const char *file = sv->ca_file != NULL ? sv->ca_file : sv->name;

	if (ctx == NULL) {
		ssl_reason(why, whylen, file, "cannot make a TLS context");
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) != 1) {
		ssl_reason(why, whylen, file, "cannot set versions or ciphers");
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
	    SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, client_new_session);
	if (sv->tls_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		if (sv->ca_file != NULL ? SSL_CTX_load_verify_locations(ctx,
		    sv->ca_file, NULL) != 1 :
		    SSL_CTX_set_default_verify_paths(ctx) != 1) {
			ssl_reason(why, whylen, file, "cannot load the CA "
			    "certificates");
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

SSL *
tls_client_new(SSL_CTX *ctx, const struct cfg_service *sv,
    const struct cfg_addr *a, SSL_SESSION **slot)
{
	SSL *ssl = SSL_new(ctx);
	char ip[INET6_ADDRSTRLEN];
	int ok = 1;

	if (ssl == NULL)
		return NULL;
	SSL_set_connect_state(ssl);
	SSL_set_app_data(ssl, slot);
	if (sv->sni != NULL) {
		ok = SSL_set_tlsext_host_name(ssl, sv->sni) == 1 &&
		    (!sv->tls_verify || SSL_set1_host(ssl, sv->sni) == 1);
	} else if (sv->tls_verify) {
		/* No name: the certificate must name the instance's address
		 * (and no SNI is sent: it carries host names only). */
		if (a->ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)
			    &a->ss)->sin6_addr, ip, sizeof(ip));
		else
			inet_ntop(AF_INET, &((const struct sockaddr_in *)
			    &a->ss)->sin_addr, ip, sizeof(ip));
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    ip) == 1;
	}
	if (ok && slot != NULL && *slot != NULL)
		ok = SSL_set_session(ssl, *slot) == 1;
	if (!ok) {
		SSL_free(ssl);
		ERR_clear_error();
		return NULL;
	}
	return ssl;
}

const char *
tls_client_failure(SSL *ssl, unsigned long err)
{
	long v = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	const char *r;

	if (v != X509_V_OK)
		return X509_verify_cert_error_string(v);
	if (err != 0 && (r = ERR_reason_error_string(err)) != NULL)
		return r;
	return "handshake failed";
}
