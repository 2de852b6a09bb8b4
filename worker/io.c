#include <errno.h>
#include <stdlib.h>
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
	io->tickets = 0;
	io->tickets_due = 0;
	io->hold = 0;
	io->carry = false;
	io->held = NULL;
	io->nheld = 0;
}

/*
 * The TLS session's socket: a BIO of our own instead of OpenSSL's socket
 * BIO, for two savings a socket BIO cannot make.
 *
 * Reads trust the edge: after a read came up short (or would block), the
 * socket is known empty until the next read event, so a read OpenSSL asks
 * for in between (after a handshake flight, it always reads on for the
 * peer's answer) is answered "retry" without a system call.
 *
 * Writes may be held back: when a request came with the client's Finished,
 * the TLS 1.3 session ticket is issued with its response (tickets_settle,
 * tls_writev), kept, and leaves in one send with that response's first
 * record: one segment instead of two. Held bytes always go before any
 * other; a close sends them with its close_notify.
 */
static void
held_drop(struct io *io, size_t n)
{
	if (n < io->nheld) {
		memmove(io->held, io->held + n, io->nheld - n);
		io->nheld -= (uint32_t)n;
		return;
	}
	free(io->held);
	io->held = NULL;
	io->nheld = 0;
}

/* Sends the held bytes, then len bytes of buf; returns how many of buf's
 * went (0 if only held bytes did), or -1 with errno. */
static ssize_t
sock_send(struct io *io, const void *buf, size_t len)
{
	struct iovec iov[2];
	struct msghdr mh = { .msg_iov = iov };
	ssize_t n;

	if (io->nheld > 0) {
		iov[0].iov_base = io->held;
		iov[0].iov_len = io->nheld;
		mh.msg_iovlen = 1;
	}
	if (len > 0) {
		iov[mh.msg_iovlen].iov_base = (void *)buf;
		iov[mh.msg_iovlen].iov_len = len;
		mh.msg_iovlen++;
	}
	do
		n = sendmsg(io->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 || io->nheld == 0)
		return n;
	if ((size_t)n < io->nheld) {
		held_drop(io, (size_t)n);
		return 0;
	}
	n -= (ssize_t)io->nheld;
	held_drop(io, io->nheld);
	return n;
}

static int
bio_write(BIO *b, const char *buf, size_t len, size_t *put)
{
	struct io *io = BIO_get_data(b);
	uint8_t *p;
	ssize_t n;

	BIO_clear_retry_flags(b);
	*put = 0;
	if (io->hold > 0) {
		if ((p = realloc(io->held, io->nheld + len)) == NULL)
			return 0;
		memcpy(p + io->nheld, buf, len);
		io->held = p;
		io->nheld += (uint32_t)len;
		io->hold--;
		*put = len;
		return 1;
	}
	n = sock_send(io, buf, len);
	if (n > 0) {
		*put = (size_t)n;
		return 1;
	}
	if (n == 0 || errno == EAGAIN)
		BIO_set_retry_write(b);
	return 0;
}

static int
bio_read(BIO *b, char *buf, size_t len, size_t *got)
{
	struct io *io = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	*got = 0;
	if (io->drained && !io->eof) {
		BIO_set_retry_read(b);
		return 0;
	}
	do
		n = read(io->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		io->drained = (size_t)n < len;
		*got = (size_t)n;
		return 1;
	}
	if (n == 0) {
		BIO_set_flags(b, BIO_FLAGS_IN_EOF);	/* BIO_eof says so */
	} else if (errno == EAGAIN) {
		io->drained = true;
		BIO_set_retry_read(b);
	}
	return 0;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct io *io = BIO_get_data(b);
	ssize_t n;

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		/* held bytes wait for the write that follows them */
		if (io->nheld == 0 || io->carry)
			return 1;
		BIO_clear_retry_flags(b);
		if ((n = sock_send(io, NULL, 0)) >= 0 && io->nheld == 0)
			return 1;
		if (n >= 0 || errno == EAGAIN)
			BIO_set_retry_write(b);
		return 0;
	case BIO_CTRL_EOF:
		return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
	case BIO_CTRL_DUP:
		return 1;
	default:
		return 0;
	}
}

static BIO_METHOD *bio_method;

static BIO_METHOD *
io_bio_method(void)
{
	BIO_METHOD *m;

	if (bio_method != NULL)
		return bio_method;
	m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
	    BIO_TYPE_DESCRIPTOR, "portico socket");
	if (m == NULL || BIO_meth_set_write_ex(m, bio_write) != 1 ||
	    BIO_meth_set_read_ex(m, bio_read) != 1 ||
	    BIO_meth_set_ctrl(m, bio_ctrl) != 1) {
		BIO_meth_free(m);
		return NULL;
	}
	return bio_method = m;
}

int
io_tls(struct io *io, struct ssl_st *ssl)
{
	BIO_METHOD *m = io_bio_method();
	BIO *b;

	if (m == NULL || (b = BIO_new(m)) == NULL)
		return -1;
	BIO_set_data(b, io);
	BIO_set_init(b, 1);
	SSL_set_bio(ssl, b, b);
	io->ssl = ssl;
	/* TLS 1.3 tickets are issued here, when the handshake is done
	 * (tls_read), so that one may ride with the first response. */
	if (SSL_is_server(ssl)) {
		io->tickets = (uint8_t)SSL_get_num_tickets(ssl);
		SSL_set_num_tickets(ssl, 0);
	}
	return 0;
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

/* Once a server's handshake is done: its TLS 1.3 tickets go with the first
 * response when a request came with the client's Finished (it is answered
 * soon), else now. */
static void
tickets_settle(struct io *io, bool with_request)
{
	uint8_t n = io->tickets;

	io->tickets = 0;
	if (SSL_version(io->ssl) != TLS1_3_VERSION)
		return;
	if (with_request) {
		io->tickets_due = n;
		return;
	}
	while (n-- > 0)
		SSL_new_session_ticket(io->ssl);
	/* sends them; if the socket is full, the next call carries on */
	err_reset();
	(void)SSL_do_handshake(io->ssl);
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
	ssize_t r;
	int rc;

	err_reset();
	rc = SSL_read_ex(io->ssl, buf, len, &n);
	if (io->tickets > 0 && SSL_is_init_finished(io->ssl)) {
		/* the handshake ended in this read */
		if (rc != 1) {
			r = tls_blocked(io, rc, &io->rd_wait);
			tickets_settle(io, false);
			return r;
		}
		tickets_settle(io, true);
	}
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
	if (io->tickets_due > 0) {
		/* each ticket is one socket write, kept for the record */
		io->hold = io->tickets_due;
		io->carry = true;
		for (; io->tickets_due > 0; io->tickets_due--)
			SSL_new_session_ticket(io->ssl);
	}
	rc = SSL_write_ex(io->ssl, rec, n, &w);
	io->hold = 0;
	io->carry = false;
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
		held_drop(io, io->nheld);
	}
	if (io->fd >= 0)
		close(io->fd);
	io->fd = -1;
	io->ready = 0;
}
