#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"

void
io_init(struct io *io, int fd)
{
	io->fd = fd;
	io->ready = 0;
	io->rd_wait = IO_RD;
	io->wr_wait = IO_WR;
	io->eof = false;
	io->reset = false;
}

void
io_event(struct io *io, uint32_t ev)
{
	/* A hang-up or an error makes both calls return at once (with the
	 * error), so both count as ready. */
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		io->ready |= IO_RD;
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
	shutdown(io->fd, SHUT_WR);
}

void
io_close(struct io *io)
{
	if (io->fd >= 0)
		close(io->fd);
	io->fd = -1;
	io->ready = 0;
}
