/*
 * io: the one place that reads and writes sockets, and the only keeper of
 * their readiness.
 *
 * Sockets are registered once, edge-triggered; an event records what the
 * socket may do (io_event), and reads and writes use that up: a read or
 * write that would block clears it until the next edge. The HTTP code asks
 * io_can_read / io_can_write instead of remembering epoll bits, and learns
 * from io->rd_wait / io->wr_wait which readiness a blocked call waits
 * for, so a TLS session (whose read may need to write, and which may hold
 * decrypted bytes after a short read) can sit underneath without the HTTP
 * code knowing.
 *
 * Errors: io_read and io_writev return bytes (> 0), 0 at EOF (read only),
 * IO_AGAIN (would block: wait for the readiness in rd_wait / wr_wait) or
 * IO_ERR (the connection failed).
 */
#ifndef PORTICO_IO_H
#define PORTICO_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define IO_AGAIN	(-1)
#define IO_ERR		(-2)

#define IO_RD		0x01	/* readable (or peer half-closed) */
#define IO_WR		0x02	/* writable */

struct ssl_st;

struct io {
	int fd;
	uint8_t ready;		/* IO_RD / IO_WR seen and not used up */
	uint8_t rd_wait;	/* what a blocked read waits for */
	uint8_t wr_wait;	/* what a blocked write waits for */
	bool eof;		/* the peer shut its write side (or failed) */
	bool reset;		/* the peer reset, or the socket failed */
	bool plain_on_tls;	/* a TLS session met a plain HTTP request */
	bool drained;		/* TLS: the last socket read came up short,
				 * and no read event came since */
	uint8_t tickets;	/* TLS 1.3 server: session tickets to issue
				 * once the handshake is done */
	uint8_t tickets_due;	/* ... with the first response (its request
				 * came with the handshake's last flight) */
	uint8_t hold;		/* TLS: socket writes to keep back (tickets)
				 * for the response's first record */
	bool carry;		/* TLS: inside the write that sends them */
	struct ssl_st *ssl;	/* a TLS session, or NULL (plain TCP) */
	uint32_t wpend;		/* TLS: bytes of a write to repeat */
	unsigned long tls_err;	/* TLS: OpenSSL's error of the failed call */
	uint8_t *held;		/* TLS: bytes kept back (malloc'd), not yet */
	uint32_t nheld;		/* sent, which go before any other */
};

/* io_init: a socket, nothing known of its readiness. */
void io_init(struct io *io, int fd);
/* io_tls: run a TLS session over the socket (SSL is an SSL * made from
 * the right context, in accept or connect state): from now on reads and
 * writes go through it, the handshake with the first of them. -1 when
 * out of memory (the caller still owns SSL). */
int io_tls(struct io *io, struct ssl_st *ssl);
/* io_handshake: drive a TLS session's handshake (connect side: run it
 * before the first write, so its time is the connect's). 1 when done,
 * IO_AGAIN (wait for rd_wait), IO_ERR (failed: tls_err says why). */
int io_handshake(struct io *io);
/* io_event: record what an epoll event reports (EPOLLIN, EPOLLOUT,
 * EPOLLRDHUP, EPOLLHUP, EPOLLERR). */
void io_event(struct io *io, uint32_t events);

/* Whether a read (write) may make progress now: readiness seen, or input
 * already buffered inside the io layer. */
static inline bool
io_can_read(const struct io *io)
{
	return (io->ready & io->rd_wait) != 0;
}

static inline bool
io_can_write(const struct io *io)
{
	return (io->ready & io->wr_wait) != 0;
}

/* io_read: up to len bytes. A short read empties a plain socket, so it
 * uses up the read readiness (saving the EAGAIN read); so does a TLS read
 * that leaves nothing inside OpenSSL after a short socket read. */
ssize_t io_read(struct io *io, void *buf, size_t len);
/* io_writev: as many bytes as the socket takes (maybe fewer than asked;
 * a short write uses up the write readiness). Never raises SIGPIPE. */
ssize_t io_writev(struct io *io, const struct iovec *iov, int iovcnt);
/* io_shutdown_write: half-close after a final response. */
void io_shutdown_write(struct io *io);
/* io_close: close the socket (leaving the epoll set with it). */
void io_close(struct io *io);

#endif
