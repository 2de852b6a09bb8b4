/*
 * The io layer under TLS, with a real OpenSSL client on the other end of
 * a socket pair: a TLS 1.3 session ticket rides with the first response
 * when the request came with the client's Finished, and goes at once
 * when it did not; a first response larger than the socket takes still
 * arrives whole, after its ticket; a TLS read trusts the edge (bytes that
 * came without a read event wait for it, as on a plain socket).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "worker/io.h"

static SSL_CTX *sctx, *cctx;

/* A self-signed P-256 certificate made here, so the test needs no file. */
static int
setup(void **state)
{
	EVP_PKEY *pk;
	X509 *x;
	X509_NAME *n;

	(void)state;
	pk = EVP_EC_gen("P-256");
	x = X509_new();
	if (pk == NULL || x == NULL)
		return -1;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, n);
	if (X509_sign(x, pk, EVP_sha256()) == 0)
		return -1;
	/* as worker/tls.c sets a listener's context */
	sctx = SSL_CTX_new(TLS_server_method());
	if (sctx == NULL || SSL_CTX_use_certificate(sctx, x) != 1 ||
	    SSL_CTX_use_PrivateKey(sctx, pk) != 1)
		return -1;
	SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS |
	    SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(sctx, 1);
	SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(sctx, 1);
	cctx = SSL_CTX_new(TLS_client_method());
	if (cctx == NULL)
		return -1;
	SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	X509_free(x);
	EVP_PKEY_free(pk);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return 0;
}

struct pair {
	struct io io;		/* the gateway's side */
	SSL *client;
	int cfd;
};

static void
pair_open(struct pair *p)
{
	int sv[2];
	SSL *s;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	io_init(&p->io, sv[0]);
	s = SSL_new(sctx);
	assert_non_null(s);
	SSL_set_accept_state(s);
	assert_int_equal(io_tls(&p->io, s), 0);
	p->cfd = sv[1];
	p->client = SSL_new(cctx);
	assert_non_null(p->client);
	SSL_set_fd(p->client, p->cfd);
	SSL_set_connect_state(p->client);
}

static void
pair_close(struct pair *p)
{
	io_close(&p->io);
	SSL_free(p->client);
	close(p->cfd);
}

/* Whether the client's socket has bytes waiting. */
static bool
client_readable(const struct pair *p)
{
	struct pollfd pf = { .fd = p->cfd, .events = POLLIN };

	return poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN);
}

/* The gateway reads after a read event; returns what io_read did. */
static ssize_t
server_read(struct pair *p, char *buf, size_t len)
{
	io_event(&p->io, EPOLLIN | EPOLLOUT);
	return io_read(&p->io, buf, len);
}

/* Both flights of the handshake, the client's Finished sent: the server
 * has not read it yet. */
static void
handshake_to_finished(struct pair *p)
{
	char buf[64];

	assert_int_equal(SSL_connect(p->client), -1);	/* ClientHello */
	assert_int_equal(server_read(p, buf, sizeof(buf)), IO_AGAIN);
	assert_int_equal(SSL_connect(p->client), 1);	/* Finished */
}

static const char REQ[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
static const char RSP[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* The handshake, the client's request sent right after its Finished, and
 * the server's read of both (one socket read: the request comes out). */
static void
request_with_finished(struct pair *p)
{
	char buf[256];
	size_t k;

	handshake_to_finished(p);
	assert_int_equal(SSL_write_ex(p->client, REQ, sizeof(REQ) - 1, &k), 1);
	assert_int_equal(server_read(p, buf, sizeof(buf)), sizeof(REQ) - 1);
	assert_memory_equal(buf, REQ, sizeof(REQ) - 1);
}

/* A pair whose client sent its request with its Finished. */
static void
pair_requested(struct pair *p)
{
	pair_open(p);
	request_with_finished(p);
}

/* The gateway answers: the whole response in one write. */
static void
respond(struct pair *p)
{
	struct iovec iov = { .iov_base = (void *)RSP,
	    .iov_len = sizeof(RSP) - 1 };

	assert_int_equal(io_writev(&p->io, &iov, 1), sizeof(RSP) - 1);
	assert_int_equal(p->io.nheld, 0);
}

static void
test_ticket_rides_with_the_first_response(void **state)
{
	struct pair p;
	char buf[256];
	size_t k;

	(void)state;
	pair_requested(&p);
	/* no ticket yet: it waits for the response */
	assert_false(client_readable(&p));
	respond(&p);
	assert_int_equal(SSL_read_ex(p.client, buf, sizeof(buf), &k), 1);
	assert_int_equal(k, sizeof(RSP) - 1);
	assert_memory_equal(buf, RSP, k);
	/* the ticket came first, so the session can be resumed */
	assert_true(SSL_SESSION_is_resumable(SSL_get0_session(p.client)));
	pair_close(&p);
}

static void
test_ticket_goes_at_once_without_a_request(void **state)
{
	struct pair p;
	char buf[64];
	size_t k;

	(void)state;
	pair_open(&p);
	handshake_to_finished(&p);
	assert_false(SSL_SESSION_is_resumable(SSL_get0_session(p.client)));
	/* only the Finished: the handshake ends, nothing to return */
	assert_int_equal(server_read(&p, buf, sizeof(buf)), IO_AGAIN);
	assert_true(client_readable(&p));
	assert_int_equal(SSL_read_ex(p.client, buf, sizeof(buf), &k), 0);
	assert_int_equal(SSL_get_error(p.client, 0), SSL_ERROR_WANT_READ);
	assert_true(SSL_SESSION_is_resumable(SSL_get0_session(p.client)));
	pair_close(&p);
}

static void
test_large_first_response_arrives_whole_after_its_ticket(void **state)
{
	static char body[16384], got[16384];
	struct pair p;
	struct iovec iov;
	size_t k, sent = 0, n = 0;
	ssize_t w;
	int i, one = 1;

	(void)state;
	for (k = 0; k < sizeof(body); k++)
		body[k] = (char)('a' + k % 26);
	pair_open(&p);
	/* a socket that takes a few KiB at a time: the ticket and the
	 * first record cannot leave in one send */
	assert_int_equal(setsockopt(p.io.fd, SOL_SOCKET, SO_SNDBUF, &one,
	    sizeof(one)), 0);
	request_with_finished(&p);
	for (i = 0; i < 10000 && n < sizeof(body); i++) {
		if (sent < sizeof(body) && io_can_write(&p.io)) {
			iov.iov_base = body + sent;
			iov.iov_len = sizeof(body) - sent;
			w = io_writev(&p.io, &iov, 1);
			assert_true(w > 0 || w == IO_AGAIN);
			if (w > 0)
				sent += (size_t)w;
		}
		if (SSL_read_ex(p.client, got + n, sizeof(got) - n, &k) == 1)
			n += k;
		else
			assert_int_equal(SSL_get_error(p.client, 0),
			    SSL_ERROR_WANT_READ);
		io_event(&p.io, EPOLLOUT);	/* room again */
	}
	assert_int_equal(n, sizeof(body));
	assert_memory_equal(got, body, sizeof(body));
	assert_int_equal(p.io.nheld, 0);
	assert_true(SSL_SESSION_is_resumable(SSL_get0_session(p.client)));
	pair_close(&p);
}

static void
test_tls_read_trusts_the_edge(void **state)
{
	struct pair p;
	char buf[256];
	size_t k;

	(void)state;
	pair_requested(&p);
	assert_false(io_can_read(&p.io));	/* the socket is empty */
	respond(&p);
	/* a second request comes, but no read event yet: a read waits for
	 * the event instead of asking the socket */
	assert_int_equal(SSL_write_ex(p.client, REQ, sizeof(REQ) - 1, &k), 1);
	assert_int_equal(io_read(&p.io, buf, sizeof(buf)), IO_AGAIN);
	assert_int_equal(server_read(&p, buf, sizeof(buf)), sizeof(REQ) - 1);
	assert_memory_equal(buf, REQ, sizeof(REQ) - 1);
	/* the client's close is read as the end (the event says so) */
	SSL_shutdown(p.client);
	shutdown(p.cfd, SHUT_WR);
	io_event(&p.io, EPOLLIN | EPOLLRDHUP);
	assert_int_equal(io_read(&p.io, buf, sizeof(buf)), 0);
	pair_close(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ticket_rides_with_the_first_response),
		cmocka_unit_test(test_ticket_goes_at_once_without_a_request),
		cmocka_unit_test(
		    test_large_first_response_arrives_whole_after_its_ticket),
		cmocka_unit_test(test_tls_read_trusts_the_edge),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
