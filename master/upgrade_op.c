#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../shm/store.h"
#include "admin.h"
#include "control.h"
#include "log.h"
#include "master.h"
#include "msg.h"
#include "notify.h"
#include "reload.h"
#include "supervise.h"
#include "upgrade.h"

#define HANDOVER_MS		5000	/* the old master's gwctl handover,
					 * at most */

/* ---- the old master's side ---- */

void
upgrade_close(struct master *m)
{
	if (m->upg.fd >= 0) {
		epoll_ctl(m->epfd, EPOLL_CTL_DEL, m->upg.fd, NULL);
		close(m->upg.fd);
	}
	m->upg.fd = -1;
}

void
upgrade_fail(struct master *m, const char *step, const char *fmt, ...)
{
	char why[256], text[512];
	struct msg_out o;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(text, sizeof(text), "upgrade failed at step '%s': %s; pid "
	    "%d keeps serving", step, why, (int)m->pid);
	log_error("%s", text);
	upgrade_close(m);
	if (m->upg_pid > 0)
		kill(m->upg_pid, SIGKILL);	/* its workers follow it */
	m->upg_pid = 0;
	m->op = MASTER_OP_NONE;
	/* The new master writes the pid file only when ready, but a
	 * late one may have raced the deadline. */
	master_pidfile_write(m);
	memset(&o, 0, sizeof(o));
	if (msg_out_init(&o, 3) == 0) {
		msg_pack_kv_bool(&o.pk, "ok", false);
		msg_pack_kv_str(&o.pk, "error", text);
		msg_pack_kv_str(&o.pk, "step", step);
		control_complete(m->ctl, &o);
	}
	master_notify(m, "upgrade failed");
	reload_run_pending(m);
}

static void
succeeded(struct master *m, pid_t newpid)
{
	struct msg_out o;

	log_info("upgrade: new master %d (%s) is ready; draining and "
	    "exiting", (int)newpid, m->upg_bin);
	/* Stop accepting gwctl first: closing the handoff socket tells the
	 * new master to start, and only one master answers at a time.
	 * Connections already open are still answered. */
	control_detach(m->ctl);
	upgrade_close(m);
	m->upg_pid = 0;
	m->op = MASTER_OP_NONE;
	memset(&o, 0, sizeof(o));
	if (msg_out_init(&o, 4) == 0) {
		msg_pack_kv_bool(&o.pk, "ok", true);
		msg_pack_kv_int(&o.pk, "old_pid", m->pid);
		msg_pack_kv_int(&o.pk, "new_pid", newpid);
		msg_pack_kv_str(&o.pk, "binary", m->upg_bin);
		control_complete(m->ctl, &o);
	}
	/* A SIGHUP that came during the upgrade is the new master's to
	 * run now: it serves, and it may have read the file before an
	 * edit. */
	if (m->reload_pending) {
		m->reload_pending = false;
		log_info("upgrade: passing the SIGHUP received meanwhile to "
		    "the new master");
		kill(newpid, SIGHUP);
	}
	/* The new master owns the control socket's file and the pid file
	 * now; we only drain our workers. */
	m->upgraded = true;
	admin_stop_listening(m->admin);	/* the new master answers */
	store_master_detach();	/* the new master may have grown the map */
	master_stop(m, true);
}

static void
child_event(struct master_ev *ev, uint32_t events)
{
	struct master *m = (struct master *)((char *)ev -
	    offsetof(struct master, upg));
	char kind[32], text[256], drop[512];
	long val;
	ssize_t n;
	int r, sfd, i;

	(void)events;
	if (m->op == MASTER_OP_CHECK) {
		/* Bounded: the pipe holds 64 KB; keep the first bytes. */
		for (i = 0; i < 256; i++) {
			if (m->upg_outlen < sizeof(m->upg_out) - 1)
				n = read(ev->fd, m->upg_out + m->upg_outlen,
				    sizeof(m->upg_out) - 1 - m->upg_outlen);
			else
				n = read(ev->fd, drop, sizeof(drop));
			if (n <= 0) {
				if (n == 0 || (errno != EAGAIN &&
				    errno != EINTR))
					upgrade_close(m);
				return;
			}
			if (m->upg_outlen < sizeof(m->upg_out) - 1)
				m->upg_outlen += (size_t)n;
			m->upg_out[m->upg_outlen] = '\0';
		}
		return;
	}
	if (m->op != MASTER_OP_HANDOFF)
		return;
	r = upgrade_recv(ev->fd, kind, sizeof(kind), text, sizeof(text),
	    &val, &sfd);
	if (sfd >= 0)
		close(sfd);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		upgrade_fail(m, "ready", "the new master closed the handoff "
		    "socket before reporting ready (%s)", r == 0 ?
		    "it exited?" : strerror(errno));
		return;
	}
	if (strcmp(kind, "ready") == 0)
		succeeded(m, (pid_t)val);
	else if (strcmp(kind, "error") == 0)
		upgrade_fail(m, "start", "the new master: %s", text);
}

int
upgrade_begin(struct master *m, const char *binary, char *err,
    size_t errlen)
{
	struct epoll_event e;

	if (m->state != MASTER_RUNNING || m->upgraded) {
		snprintf(err, errlen, "the master is stopping");
		return -1;
	}
	if (m->op != MASTER_OP_NONE) {
		snprintf(err, errlen, "a%s is already in progress",
		    m->op == MASTER_OP_RELOAD ? " reload" : "n upgrade");
		return -1;
	}
	if (binary == NULL || binary[0] == '\0')
		binary = m->exe;
	if (binary[0] != '/') {
		snprintf(err, errlen, "upgrade failed at step 'check': the "
		    "binary path must be absolute: %s", binary);
		return -1;
	}
	if (access(binary, X_OK) < 0) {
		snprintf(err, errlen, "upgrade failed at step 'check': %s: "
		    "%s", binary, strerror(errno));
		return -1;
	}
	snprintf(m->upg_bin, sizeof(m->upg_bin), "%s", binary);
	m->upg_outlen = 0;
	m->upg_out[0] = '\0';
	if (upgrade_spawn_check(m->upg_bin, m->cfg->file, m->cfg->prefix,
	    &m->upg_pid, &m->upg.fd) < 0) {
		snprintf(err, errlen, "upgrade failed at step 'check': cannot "
		    "start %s: %s", binary, strerror(errno));
		return -1;
	}
	m->upg.fn = child_event;
	e.events = EPOLLIN;
	e.data.ptr = &m->upg;
	epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->upg.fd, &e);
	m->op = MASTER_OP_CHECK;
	m->op_deadline = master_now_ms() + UPGRADE_TIMEOUT_MS;
	log_info("upgrade: checking the configuration with %s", binary);
	return 0;
}

/* The check passed: start the new master and hand it every socket. */
static void
send_sockets(struct master *m)
{
	struct epoll_event e;
	unsigned i, count = 0;
	size_t n;
	int fd;

	upgrade_close(m);
	if (upgrade_spawn(m->upg_bin, m->cfg->file, m->cfg->prefix,
	    &m->upg_pid, &fd) < 0) {
		upgrade_fail(m, "start", "cannot start %s: %s", m->upg_bin,
		    strerror(errno));
		return;
	}
	m->upg.fd = fd;
	m->op = MASTER_OP_HANDOFF;
	m->op_deadline = master_now_ms() + UPGRADE_TIMEOUT_MS;
	log_info("upgrade: started %s as pid %d; handing over the sockets",
	    m->upg_bin, (int)m->upg_pid);
	/* Slot by slot, address by address; blocking sends bounded by
	 * SO_SNDTIMEO: the new master reads them as it starts. */
	for (n = 0; n < m->nsocks; n++)
		for (i = 0; i < m->socks[n].nfds; i++) {
			if (upgrade_send(fd, "listener", m->socks[n].addr.text,
			    (long)i, m->socks[n].fds[i]) < 0)
				goto fail;
			count++;
		}
	if (control_listen_fd(m->ctl) >= 0) {
		if (upgrade_send(fd, "control", m->cfg->server.control_socket,
		    -1, control_listen_fd(m->ctl)) < 0)
			goto fail;
		count++;
	}
	if (admin_listen_fd(m->admin) >= 0) {
		if (upgrade_send(fd, "admin", m->cfg->server.admin.text, -1,
		    admin_listen_fd(m->admin)) < 0)
			goto fail;
		count++;
	}
	if (upgrade_send(fd, "end", NULL, (long)count, -1) < 0)
		goto fail;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	e.events = EPOLLIN;
	e.data.ptr = &m->upg;
	epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &e);
	return;
fail:
	upgrade_fail(m, "handoff", "sending the sockets: %s",
	    strerror(errno));
}

void
upgrade_reaped(struct master *m, int status)
{
	char how[128], *nl;

	supervise_describe(status, how, sizeof(how));
	if (m->op == MASTER_OP_CHECK) {
		m->upg_pid = 0;
		if (m->upg.fd >= 0)
			child_event(&m->upg, EPOLLIN);	/* the last bytes */
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			send_sockets(m);
			return;
		}
		if ((nl = strchr(m->upg_out, '\n')) != NULL)
			*nl = '\0';
		upgrade_fail(m, "check", "%s -t %s%s%s", m->upg_bin, how,
		    m->upg_out[0] != '\0' ? ": " : "", m->upg_out);
		return;
	}
	m->upg_pid = 0;
	/* Its last words, if it sent any, say more than its exit status. */
	if (m->upg.fd >= 0)
		child_event(&m->upg, EPOLLIN);
	if (m->op != MASTER_OP_HANDOFF)
		return;
	upgrade_fail(m, "ready", "the new master %s before reporting ready",
	    how);
}

void
upgrade_tick(struct master *m, uint64_t now)
{
	if (m->op == MASTER_OP_CHECK && now >= m->op_deadline)
		upgrade_fail(m, "check", "%s -t gave no result within 10 s",
		    m->upg_bin);
	else if (m->op == MASTER_OP_HANDOFF && now >= m->op_deadline)
		upgrade_fail(m, "ready", "the new master did not report ready "
		    "within 10 s");
}

/* ---- the new master's side ---- */

/* The old master has stopped accepting on the control socket (or is
 * gone, or took too long): answer gwctl from now on. */
static void
answer_gwctl(struct master *m)
{
	if (m->hand.fd >= 0) {
		epoll_ctl(m->epfd, EPOLL_CTL_DEL, m->hand.fd, NULL);
		close(m->hand.fd);
		m->hand.fd = -1;
	}
	if (control_start(m->ctl) < 0)
		log_error("upgrade: cannot accept on the control socket: %s",
		    strerror(errno));
	else
		log_info("upgrade: answering gwctl");
}

static void
old_master_event(struct master_ev *ev, uint32_t events)
{
	struct master *m = (struct master *)((char *)ev -
	    offsetof(struct master, hand));
	char buf[256];
	ssize_t n;
	int i;

	(void)events;
	/* Nothing more is expected but its close; bounded drain. */
	for (i = 0; i < 16; i++) {
		n = recv(ev->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		break;
	}
	answer_gwctl(m);
}

void
upgrade_ready(struct master *m)
{
	struct epoll_event e;

	/* Pid file first, so it names us before the old master exits. */
	master_pidfile_write(m);
	if (upgrade_send(m->handoff_fd, "ready", NULL, (long)m->pid, -1) < 0) {
		log_error("upgrade: cannot report ready to the old master: "
		    "%s", strerror(errno));
		close(m->handoff_fd);
		m->handoff_fd = -1;
		answer_gwctl(m);
	} else {
		/* gwctl stays with the old master until it has stopped
		 * accepting: it closes the handoff socket after that. */
		m->hand.fd = m->handoff_fd;
		m->hand.fn = old_master_event;
		m->handoff_fd = -1;
		m->hand_deadline = master_now_ms() + HANDOVER_MS;
		e.events = EPOLLIN;
		e.data.ptr = &m->hand;
		if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->hand.fd, &e) < 0)
			answer_gwctl(m);
	}
	log_info("upgrade: all %u workers ready; the old master drains",
	    m->nslots);
	notify_send("MAINPID=%d\nREADY=1\nSTATUS=serving (upgraded); "
	    "generation %u, %u workers", (int)m->pid, m->generation,
	    m->nslots);
}

void
upgrade_handover_tick(struct master *m, uint64_t now)
{
	if (m->hand.fd >= 0 && now >= m->hand_deadline) {
		log_warn("upgrade: the old master still holds the control "
		    "socket after %d ms; answering gwctl anyway", HANDOVER_MS);
		answer_gwctl(m);
	}
}
