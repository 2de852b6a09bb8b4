/*
 * io: the one place that reads and writes sockets. TLS will slot in here
 * (a non-blocking OpenSSL session per io) without touching the HTTP code.
 */
#ifndef PORTICO_IO_H
#define PORTICO_IO_H

#include <sys/types.h>
#include <sys/uio.h>

#define IO_AGAIN	(-1)	/* would block; wait for readiness */
#define IO_ERR		(-2)	/* connection failed (reset, ...) */

struct io {
	int fd;
};

/* io_read: >0 bytes read, 0 at EOF, IO_AGAIN or IO_ERR. */
ssize_t io_read(struct io *io, void *buf, size_t len);
/* io_writev: >0 bytes written (maybe fewer than asked), IO_AGAIN, IO_ERR. */
ssize_t io_writev(struct io *io, const struct iovec *iov, int iovcnt);
/* io_shutdown_write: half-close (after a final response). */
void io_shutdown_write(struct io *io);
void io_close(struct io *io);

#endif
