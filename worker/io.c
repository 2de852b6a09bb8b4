#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"

ssize_t
io_read(struct io *io, void *buf, size_t len)
{
	ssize_t n;

	do
		n = read(io->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	return errno == EAGAIN ? IO_AGAIN : IO_ERR;
}

ssize_t
io_writev(struct io *io, const struct iovec *iov, int iovcnt)
{
	struct msghdr mh = { .msg_iov = (struct iovec *)iov,
	    .msg_iovlen = iovcnt };
	ssize_t n;

	/* sendmsg rather than writev: MSG_NOSIGNAL spares a SIGPIPE. */
	do
		n = sendmsg(io->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	return errno == EAGAIN ? IO_AGAIN : IO_ERR;
}

void
io_shutdown_write(struct io *io)
{
	shutdown(io->fd, SHUT_WR);
}

void
io_close(struct io *io)
{
	if (io->fd >= 0)
		close(io->fd);
	io->fd = -1;
}
