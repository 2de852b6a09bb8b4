#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "msg.h"
#include "upgrade.h"

#define DGRAM_MAX	4096	/* one description: small by construction */

/* In a child about to exec: the master blocks every signal for its
 * signalfd, and a blocked mask survives exec. */
static void
child_signals(void)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

int
upgrade_spawn_check(const char *bin, const char *file, const char *prefix,
    pid_t *pid, int *out_fd)
{
	int p[2];
	pid_t c;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	c = fork();
	if (c < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (c == 0) {
		child_signals();
		dup2(p[1], 1);
		dup2(p[1], 2);
		execl(bin, bin, "-t", "-c", file, "-p", prefix, (char *)NULL);
		dprintf(2, "cannot execute %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	*pid = c;
	*out_fd = p[0];
	return 0;
}

int
upgrade_spawn(const char *bin, const char *file, const char *prefix,
    pid_t *pid, int *sock_fd)
{
	struct timeval tv = { .tv_sec = UPGRADE_TIMEOUT_MS / 1000 };
	char num[16];
	int sv[2], fd;
	pid_t c;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	c = fork();
	if (c < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (c == 0) {
		child_signals();
		/* F_DUPFD gives a copy without close-on-exec: the one
		 * descriptor the new binary inherits on purpose. */
		fd = fcntl(sv[1], F_DUPFD, 3);
		if (fd < 0)
			_exit(126);
		snprintf(num, sizeof(num), "%d", fd);
		setenv(UPGRADE_ENV, num, 1);
		execl(bin, bin, "-c", file, "-p", prefix, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	*pid = c;
	*sock_fd = sv[0];
	return 0;
}

static int
send_frame(int fd, struct msg_out *o, int sfd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr mh;
	struct iovec iov;
	const char *data;
	int n;

	n = msg_out_finish(o, &data);
	if (n < 0) {
		errno = EMSGSIZE;
		return -1;
	}
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = (void *)data;
	iov.iov_len = (size_t)n;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (sfd >= 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		cm.h.cmsg_level = SOL_SOCKET;
		cm.h.cmsg_type = SCM_RIGHTS;
		cm.h.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&cm.h), &sfd, sizeof(int));
	}
	for (;;) {
		if (sendmsg(fd, &mh, MSG_NOSIGNAL) == n)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

int
upgrade_send(int fd, const char *kind, const char *address, long val,
    int sfd)
{
	struct msg_out o;
	const char *key;
	int rc = -1;

	if (msg_out_init(&o, address != NULL ? 3 : 2) < 0)
		return -1;
	msg_pack_kv_str(&o.pk, "kind", kind);
	if (address != NULL)
		msg_pack_kv_str(&o.pk, "address", address);
	key = strcmp(kind, "end") == 0 ? "count" :
	    strcmp(kind, "ready") == 0 ? "pid" : "slot";
	msg_pack_kv_int(&o.pk, key, val);
	rc = send_frame(fd, &o, sfd);
	msg_out_free(&o);
	return rc;
}

int
upgrade_send_error(int fd, const char *text)
{
	struct msg_out o;
	int rc;

	if (msg_out_init(&o, 2) < 0)
		return -1;
	msg_pack_kv_str(&o.pk, "kind", "error");
	msg_pack_kv_str(&o.pk, "error", text);
	rc = send_frame(fd, &o, -1);
	msg_out_free(&o);
	return rc;
}

int
upgrade_recv(int fd, char *kind, size_t kindlen, char *address,
    size_t addrlen, long *val, int *sfd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} cm;
	char buf[DGRAM_MAX], err[128];
	struct cmsghdr *ch;
	struct msghdr mh;
	struct iovec iov;
	struct msg_in in;
	size_t body;
	ssize_t n;
	int64_t v = 0;
	int i, nfd, fds[4];

	*sfd = -1;
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = buf;
	iov.iov_len = sizeof(buf);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	do {
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if (n == 0)
		return 0;
	for (ch = CMSG_FIRSTHDR(&mh); ch != NULL; ch = CMSG_NXTHDR(&mh, ch)) {
		if (ch->cmsg_level != SOL_SOCKET ||
		    ch->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (int)((ch->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		memcpy(fds, CMSG_DATA(ch), (size_t)nfd * sizeof(int));
		/* One descriptor per description; extras are not ours. */
		for (i = 0; i < nfd; i++) {
			if (*sfd < 0)
				*sfd = fds[i];
			else
				close(fds[i]);
		}
	}
	if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    msg_frame(buf, (size_t)n, &body) != 1 ||
	    MSG_HDR + body != (size_t)n)
		goto bad;
	if (msg_decode(buf + MSG_HDR, body, &in, err, sizeof(err)) < 0) {
		msg_in_free(&in);
		goto bad;
	}
	if (msg_get_str(in.map, "kind", kind, kindlen) < 0) {
		msg_in_free(&in);
		goto bad;
	}
	address[0] = '\0';
	if (msg_get_str(in.map, "address", address, addrlen) < 0)
		msg_get_str(in.map, "error", address, addrlen);
	if (msg_get_int(in.map, "slot", &v) < 0 &&
	    msg_get_int(in.map, "count", &v) < 0)
		msg_get_int(in.map, "pid", &v);
	*val = (long)v;
	msg_in_free(&in);
	return 1;
bad:
	if (*sfd >= 0)
		close(*sfd);
	*sfd = -1;
	errno = EPROTO;
	return -1;
}

int
upgrade_inherited(void)
{
	const char *v = getenv(UPGRADE_ENV);
	char *end;
	long fd;

	if (v == NULL)
		return -1;
	fd = strtol(v, &end, 10);
	unsetenv(UPGRADE_ENV);
	if (*end != '\0' || fd < 3 || fd > 65535 ||
	    fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0)
		return -1;
	return (int)fd;
}

int
upgrade_receive(int fd, struct upgrade_set *set, char *err, size_t errlen)
{
	struct timeval tv = { .tv_sec = UPGRADE_TIMEOUT_MS / 1000 };
	char kind[32], addr[108];
	struct upgrade_sock *p;
	long val;
	int r, sfd;
	size_t i;

	memset(set, 0, sizeof(*set));
	set->control_fd = -1;
	set->admin_fd = -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* Bounded: 256 slots x a few addresses, plus control and end. */
	for (i = 0; i < 65536; i++) {
		r = upgrade_recv(fd, kind, sizeof(kind), addr, sizeof(addr),
		    &val, &sfd);
		if (r <= 0) {
			snprintf(err, errlen, "socket handoff: %s",
			    r == 0 ? "the old master closed the connection" :
			    strerror(errno));
			return -1;
		}
		if (strcmp(kind, "end") == 0) {
			if (sfd >= 0)
				close(sfd);
			if ((size_t)val != set->n +
			    (set->control_fd >= 0 ? 1 : 0) +
			    (set->admin_fd >= 0 ? 1 : 0)) {
				snprintf(err, errlen, "socket handoff: %ld "
				    "sockets announced, %zu received", val,
				    set->n + (set->control_fd >= 0 ? 1 : 0) +
				    (set->admin_fd >= 0 ? 1 : 0));
				return -1;
			}
			return 0;
		}
		if (sfd < 0) {
			snprintf(err, errlen, "socket handoff: '%s' without "
			    "a descriptor", kind);
			return -1;
		}
		if (strcmp(kind, "control") == 0) {
			if (set->control_fd >= 0)
				close(set->control_fd);
			set->control_fd = sfd;
			snprintf(set->control_path, sizeof(set->control_path),
			    "%s", addr);
			continue;
		}
		if (strcmp(kind, "admin") == 0) {
			if (set->admin_fd >= 0)
				close(set->admin_fd);
			set->admin_fd = sfd;
			snprintf(set->admin_addr, sizeof(set->admin_addr),
			    "%s", addr);
			continue;
		}
		if (strcmp(kind, "listener") != 0 || val < 0) {
			close(sfd);
			snprintf(err, errlen, "socket handoff: unexpected "
			    "'%s'", kind);
			return -1;
		}
		p = realloc(set->socks, (set->n + 1) * sizeof(*p));
		if (p == NULL) {
			close(sfd);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		set->socks = p;
		snprintf(p[set->n].address, sizeof(p[set->n].address), "%s",
		    addr);
		p[set->n].slot = (int)val;
		p[set->n].fd = sfd;
		set->n++;
	}
	snprintf(err, errlen, "socket handoff: too many messages");
	return -1;
}

void
upgrade_set_free(struct upgrade_set *set)
{
	size_t i;

	for (i = 0; i < set->n; i++)
		if (set->socks[i].fd >= 0)
			close(set->socks[i].fd);
	free(set->socks);
	set->socks = NULL;
	set->n = 0;
	if (set->control_fd >= 0)
		close(set->control_fd);
	set->control_fd = -1;
	if (set->admin_fd >= 0)
		close(set->admin_fd);
	set->admin_fd = -1;
}
