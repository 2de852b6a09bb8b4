#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "io.h"

/* One TLS record's worth: writes are gathered into it, so a head and the
 * first body bytes still leave as one record and one send. */
#define TLS_REC	16384

void
io_init(struct io *io, int fd)
{
	io->fd = fd;
	io->ready = 0;
	io->rd_wait = IO_RD;
	io->wr_wait = IO_WR;
	io->eof = false;
	io->reset = false;
	io->plain_on_tls = false;
	io->drained = false;
	io->ssl = NULL;
	io->wpend = 0;
	io->tls_err = 0;
}

/* Called by the socket BIO around each of its operations: notes whether
 * OpenSSL's last read of the socket came up short (it reads ahead, asking
 * for all its buffer holds), which says the socket is empty. Returns what
 * the operation returned (before it: 1, go ahead). */
static long
note_read(BIO *b, int oper, const char *argp, size_t len, int argi,
    long argl, int ret, size_t *processed)
{
	struct io *io;

	(void)argp;
	(void)argi;
	(void)argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
		io = (struct io *)BIO_get_callback_arg(b);
		io->drained = ret <= 0 || processed == NULL ||
		    *processed < len;
	}
	return ret;
}

void
io_tls(struct io *io, struct ssl_st *ssl)
{
	BIO *b;

	io->ssl = ssl;
	SSL_set_fd(ssl, io->fd);
	if ((b = SSL_get_rbio(ssl)) != NULL) {
		BIO_set_callback_arg(b, (char *)io);
		BIO_set_callback_ex(b, note_read);
	}
}

/* OpenSSL's error queue must be empty before a call whose outcome
 * SSL_get_error reads. Emptying it walks all its slots, which cost more
 * than a small record's encryption; looking costs little, and it is
 * almost always empty (every failure path here empties it). */
static void
err_reset(void)
{
	if (ERR_peek_error() != 0)
		ERR_clear_error();
}

/* What a TLS call that did not complete waits for. */
static ssize_t
tls_blocked(struct io *io, int ret, uint8_t *wait)
{
	unsigned long e;

	switch (SSL_get_error(io->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		io->ready &= ~IO_RD;
		*wait = IO_RD;
		return IO_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		io->ready &= ~IO_WR;
		*wait = IO_WR;
		return IO_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;		/* close_notify */
	default:
		e = ERR_peek_last_error();
		io->tls_err = e;
		if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST)
			io->plain_on_tls = true;
		ERR_clear_error();
		return IO_ERR;
	}
}

int
io_handshake(struct io *io)
{
	int rc;

	err_reset();
	rc = SSL_do_handshake(io->ssl);
	if (rc == 1) {
		io->rd_wait = IO_RD;
		io->wr_wait = IO_WR;
		return 1;
	}
	return (int)tls_blocked(io, rc, &io->rd_wait);
}

static ssize_t
tls_read(struct io *io, void *buf, size_t len)
{
	size_t n = 0;
	int rc;

	err_reset();
	rc = SSL_read_ex(io->ssl, buf, len, &n);
	if (rc == 1) {
		/* A short read says nothing by itself: records may wait in
		 * OpenSSL (it returns one at a time) or on the socket. With
		 * nothing left in OpenSSL after a short socket read (and no
		 * read event since), the socket is empty and the readiness
		 * used up, as for a plain short read; else read on until
		 * OpenSSL wants more. */
		io->rd_wait = IO_RD;
		if (io->drained && !io->eof && !SSL_has_pending(io->ssl))
			io->ready &= ~IO_RD;
		return (ssize_t)n;
	}
	return tls_blocked(io, rc, &io->rd_wait);
}

static ssize_t
tls_writev(struct io *io, const struct iovec *iov, int iovcnt)
{
	static char rec[TLS_REC];
	size_t n = 0, k, cap = io->wpend ? io->wpend : TLS_REC, w = 0;
	int i, rc;

	/* A write that blocked is repeated with the same bytes and length
	 * (the caller still holds them: nothing was counted as written). */
	for (i = 0; i < iovcnt && n < cap; i++) {
		k = iov[i].iov_len < cap - n ? iov[i].iov_len : cap - n;
		memcpy(rec + n, iov[i].iov_base, k);
		n += k;
	}
	if (n == 0)
		return 0;
	err_reset();
	rc = SSL_write_ex(io->ssl, rec, n, &w);
	if (rc == 1) {
		io->wpend = 0;
		io->wr_wait = IO_WR;
		return (ssize_t)w;
	}
	io->wpend = (uint32_t)n;
	return tls_blocked(io, rc, &io->wr_wait);
}

void
io_event(struct io *io, uint32_t ev)
{
	/* A hang-up or an error makes both calls return at once (with the
	 * error), so both count as ready. */
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		io->ready |= IO_RD;
		io->drained = false;	/* bytes came after the last read */
	}
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		io->ready |= IO_WR;
	if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		io->eof = true;
	if (ev & (EPOLLHUP | EPOLLERR))
		io->reset = true;
}

ssize_t
io_read(struct io *io, void *buf, size_t len)
{
	ssize_t n;

	if (io->ssl != NULL)
		return tls_read(io, buf, len);
	do
		n = read(io->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		/* Edge-triggered: a short read emptied the socket, and new
		 * bytes bring a new edge. After a FIN, read on to the 0. */
		if ((size_t)n < len && !io->eof)
			io->ready &= ~IO_RD;
		return n;
	}
	if (n == 0)
		return 0;
	if (errno == EAGAIN) {
		io->ready &= ~IO_RD;
		return IO_AGAIN;
	}
	return IO_ERR;
}

ssize_t
io_writev(struct io *io, const struct iovec *iov, int iovcnt)
{
	struct msghdr mh = { .msg_iov = (struct iovec *)iov,
	    .msg_iovlen = iovcnt };
	size_t want = 0;
	ssize_t n;
	int i;

	if (io->ssl != NULL)
		return tls_writev(io, iov, iovcnt);
	/* sendmsg rather than writev: MSG_NOSIGNAL spares a SIGPIPE. */
	do
		n = sendmsg(io->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0) {
		for (i = 0; i < iovcnt; i++)
			want += iov[i].iov_len;
		if ((size_t)n < want)
			io->ready &= ~IO_WR;
		return n;
	}
	if (errno == EAGAIN) {
		io->ready &= ~IO_WR;
		return IO_AGAIN;
	}
	return IO_ERR;
}

void
io_shutdown_write(struct io *io)
{
	/* TLS: close_notify first (best effort: never waits). */
	if (io->ssl != NULL && SSL_is_init_finished(io->ssl)) {
		ERR_clear_error();
		SSL_shutdown(io->ssl);
		ERR_clear_error();
	}
	shutdown(io->fd, SHUT_WR);
}

void
io_close(struct io *io)
{
	if (io->ssl != NULL) {
		/* A close_notify (best effort, never waits) ends the session
		 * cleanly: OpenSSL would otherwise count it unfinished and its
		 * session as not to be resumed. */
		if (!io->reset && SSL_is_init_finished(io->ssl) &&
		    !(SSL_get_shutdown(io->ssl) & SSL_SENT_SHUTDOWN)) {
			ERR_clear_error();
			SSL_shutdown(io->ssl);
		}
		ERR_clear_error();
		SSL_free(io->ssl);
		io->ssl = NULL;
	}
	if (io->fd >= 0)
		close(io->fd);
	io->fd = -1;
	io->ready = 0;
}
