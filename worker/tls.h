/*
 * tls: TLS with OpenSSL 3 for the worker's sockets: the server contexts of
 * the config's tls section (certificates and chains, RSA and ECDSA side by
 * side, SNI with exact and wildcard names, versions, ciphers, ALPN,
 * session tickets whose keys every worker shares through the store) and
 * the io layer's sessions (io.h drives them: a read may need to write,
 * a short read may leave decrypted bytes behind).
 *
 * The master builds the same contexts when it loads a config, so a
 * broken certificate or key is refused by `portico -t` and by a reload
 * with its path and OpenSSL's reason, and the old generation keeps
 * serving.
 *
 * Errors: functions returning int give 0, or -1 with a reason in WHY.
 */
#ifndef PORTICO_TLS_H
#define PORTICO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "../master/config.h"

/* The modern default for TLS 1.2: ECDHE with AES-GCM or ChaCha20-Poly1305
 * only (TLS 1.3 suites are all of that kind). */
#define TLS_CIPHERS_12 \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* TLS 1.3 suites in the server's order: AES-128-GCM first, as BoringSSL
 * and Go order them. Its key schedule and transcript hash are SHA-256,
 * which the CPU's SHA extensions run (SHA-384's SHA-512 is software),
 * for the same 128-bit security as the X25519 or P-256 key exchange. */
#define TLS_SUITES_13 \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:" \
	"TLS_CHACHA20_POLY1305_SHA256"

/* Key exchange groups, best first (TLS 1.2 ECDHE and TLS 1.3). */
#define TLS_GROUPS	"X25519:P-256:P-384"

struct tls_server;
struct store;

/* A loaded certificate, for gwctl status and expiry warnings. */
struct tls_cert_info {
	const char *entry;		/* tls entry name */
	const char *file;		/* certificate file */
	time_t not_after;
};

/* tls_server_new: every entry of CFG's tls section (none: *out = NULL,
 * 0). -1 with "FILE: reason (OpenSSL's)" in WHY when a file is missing,
 * unreadable, not a certificate or key, or the key does not match. */
int tls_server_new(const struct config *cfg, struct tls_server **out,
    char *why, size_t whylen);
void tls_server_free(struct tls_server *ts);
/* tls_server_ctx: the context of the entry named NAME (a listener's
 * default certificate), or NULL. */
SSL_CTX *tls_server_ctx(struct tls_server *ts, const char *name);
/* tls_set_strict: on a new session of a listener with strict_sni, an SNI
 * name no entry has ends the handshake with an alert instead of getting
 * the default certificate. */
void tls_set_strict(SSL *ssl, bool strict);
/* tls_server_certs: up to MAX loaded certificates into OUT; how many. */
size_t tls_server_certs(const struct tls_server *ts,
    struct tls_cert_info *out, size_t max);
/* tls_server_tickets: share session-ticket keys through store S (read
 * when the master rotates them; see shm/tickets.h). Without it, tickets
 * are off (a worker's own keys would not resume on another). */
void tls_server_tickets(struct tls_server *ts, struct store *s);

/* tls_name_match: whether the SNI NAME matches PATTERN ("api.example.com"
 * exactly, or "*.example.com": one label, case-insensitive). */
bool tls_name_match(const char *pattern, const char *name);

/* tls_client_ctx_new: the context for TLS to service SV's instances:
 * TLS 1.2 or 1.3 with the suites above, their certificate checked
 * against SV's ca_file or the system's CAs unless verify is off, and
 * sessions kept for resumption. NULL with "FILE: reason" in WHY. */
SSL_CTX *tls_client_ctx_new(const struct cfg_service *sv, char *why,
    size_t whylen);
/* tls_client_new: a session to instance A in connect state: SNI and the
 * name checked are SV's sni (none set: no SNI, and the certificate must
 * name A's IP address); resumes *SLOT when set, and a new session from
 * the instance replaces it (SLOT must outlive the SSL). NULL on error. */
SSL *tls_client_new(SSL_CTX *ctx, const struct cfg_service *sv,
    const struct cfg_addr *a, SSL_SESSION **slot);
/* tls_client_failure: why a handshake failed, in words: the certificate
 * check's verdict, else ERR's reason ERR (as io.h's tls_err keeps it). */
const char *tls_client_failure(SSL *ssl, unsigned long err);

#endif
