#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "control.h"
#include "health.h"
#include "listeners.h"
#include "log.h"
#include "master.h"
#include "notify.h"
#include "reload.h"
#include "stats.h"
#include "supervise.h"
#include "upgrade.h"
#include "../shm/store.h"	/* ratelimit: shared store hooks */
#include "../shm/tickets.h"
#include "../worker/tls.h"

#define FAST_STOP_MS		1000	/* SIGTERM -> SIGKILL */
#define KILL_WAIT_MS		2000	/* after SIGKILL, before giving up */
#define TICK_MS			1000
#define POLL_MS			20	/* readiness polling during a reload */

uint64_t
master_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
master_mkdirs(const char *path)
{
	char buf[4096];
	char *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return 0;
}

static char last_fatal[1024];

/* Start-up failures go to stderr, where the operator is looking, and to
 * the error log when it is a file. */
static void
fatal(const struct config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fatal(const struct config *cfg, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* Kept for an upgrade's old master, which reports it. */
	snprintf(last_fatal, sizeof(last_fatal), "%s", text);
	fprintf(stderr, "portico: %s\n", text);
	if (cfg->server.error_log != NULL &&
	    strcmp(cfg->server.error_log, "-") != 0)
		log_error("%s", text);
}

int
master_pidfile_write(struct master *m)
{
	const char *path = m->cfg->server.pid_file;
	char buf[32];
	int fd, n;

	if (path == NULL)
		return 0;
	if (master_mkdirs(path) < 0) {
		fatal(m->cfg, "cannot create the directory of %s: %s", path,
		    strerror(errno));
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fatal(m->cfg, "cannot write pid file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)m->pid);
	if (write(fd, buf, (size_t)n) != n) {
		fatal(m->cfg, "cannot write pid file %s: %s", path,
		    strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

/* Remove the pid file only while it still names us. */
static void
remove_pidfile(struct master *m)
{
	const char *path = m->cfg->server.pid_file;
	char buf[32];
	ssize_t n;
	int fd;

	if (path == NULL || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		if (atoi(buf) == (int)m->pid)
			unlink(path);
	}
}

void
master_notify(struct master *m, const char *what)
{
	notify_send("READY=1\nSTATUS=%s; generation %u, %u workers", what,
	    m->generation, m->nslots);
}

/* Every worker of the first generation runs its loop. */
static void
started(struct master *m)
{
	m->started = true;
	if (m->handoff_fd >= 0) {
		upgrade_ready(m);
		return;
	}
	log_info("all %u workers ready", m->nslots);
	master_notify(m, "serving");
}

void
master_stop(struct master *m, bool graceful)
{
	uint64_t now = master_now_ms();
	unsigned i;

	if (m->state == MASTER_STOPPING ||
	    (graceful && m->state == MASTER_DRAINING))
		return;
	m->reload_pending = false;	/* nothing reloads once we stop */
	if (m->op == MASTER_OP_RELOAD)
		reload_finish(m, false, "the master is stopping");
	else if (m->op != MASTER_OP_NONE)
		upgrade_fail(m, m->op == MASTER_OP_CHECK ? "check" : "ready",
		    "the master is stopping");
	for (i = 0; i < m->nslots; i++)
		m->slots[i].respawn_at = 0;
	/* Our copies would keep the sockets (and their accept queues) alive
	 * after the workers close theirs; new clients should be refused at
	 * once instead of waiting for a reset at our exit. (After an
	 * upgrade, the new master holds them.) */
	listeners_close(m);
	if (!m->upgraded)
		notify_send("STOPPING=1\nSTATUS=stopping (%s)",
		    graceful ? "graceful" : "fast");
	if (graceful) {
		m->state = MASTER_DRAINING;
		m->deadline_ms = now + m->cfg->server.limits.drain_timeout_ms +
		    1000;
		log_info("graceful stop: draining workers (up to %u ms)",
		    m->cfg->server.limits.drain_timeout_ms);
		/* Nobody serves after us (unless an upgrade's new master
		 * does): idle keep-alive connections may close at once. */
		if (!m->upgraded)
			supervise_mark_stopping(m);
		supervise_signal_all(m, SIGQUIT);
	} else {
		m->state = MASTER_STOPPING;
		m->deadline_ms = now + FAST_STOP_MS;
		log_info("fast stop");
		supervise_signal_all(m, SIGTERM);
	}
}

int
master_reopen(struct master *m, const char *why, unsigned *signalled)
{
	unsigned n = 0;
	int rc, err = 0;

	rc = log_reopen();
	if (rc < 0)
		err = errno;
	/* Every generation: the serving one, one still draining (it writes
	 * its last lines) and one a reload is starting. They reopen both
	 * their logs on SIGUSR1. */
	n += supervise_signal(m->slots, m->nslots, SIGUSR1);
	n += supervise_signal(m->old, m->nold, SIGUSR1);
	n += supervise_signal(m->next, m->nnext, SIGUSR1);
	*signalled = n;
	if (rc < 0)
		log_error("reopening the error log %s (%s): %s; %u workers "
		    "signalled", m->cfg->server.error_log, why, strerror(err),
		    n);
	else
		log_info("logs reopened (%s); %u workers signalled", why, n);
	errno = err;
	return rc;
}

static void
signal_event(struct master_ev *ev, uint32_t events)
{
	struct master *m = (struct master *)((char *)ev -
	    offsetof(struct master, sig));
	struct signalfd_siginfo si;
	char err[1024];
	unsigned n_sig;
	ssize_t n;
	int i;

	(void)events;
	/* Bounded: at most one read per distinct signal plus a few. */
	for (i = 0; i < 64; i++) {
		n = read(ev->fd, &si, sizeof(si));
		if (n != sizeof(si))
			return;
		switch (si.ssi_signo) {
		case SIGCHLD:
			supervise_reap(m);
			break;
		case SIGTERM:
		case SIGINT:
			log_info("%s received",
			    si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			master_stop(m, false);
			break;
		case SIGQUIT:
			log_info("SIGQUIT received");
			master_stop(m, true);
			break;
		case SIGHUP:
			reload_sighup(m);
			break;
		case SIGUSR2:
			log_info("SIGUSR2 received: binary upgrade");
			if (upgrade_begin(m, NULL, err, sizeof(err)) < 0)
				log_error("SIGUSR2: %s", err);
			break;
		case SIGUSR1:
			/* logrotate's signal: the workers' logs too, as
			 * `gwctl reopen` does. */
			master_reopen(m, "SIGUSR1", &n_sig);
			break;
		default:
			break;
		}
	}
}

static int
setup_signals(struct master *m)
{
	sigset_t all, handled;

	/* Ignored, not just blocked: a blocked SIGPIPE would sit pending and
	 * the disposition is what workers inherit. */
	signal(SIGPIPE, SIG_IGN);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	sigemptyset(&handled);
	sigaddset(&handled, SIGCHLD);
	sigaddset(&handled, SIGTERM);
	sigaddset(&handled, SIGINT);
	sigaddset(&handled, SIGQUIT);
	sigaddset(&handled, SIGHUP);
	sigaddset(&handled, SIGUSR1);
	sigaddset(&handled, SIGUSR2);
	m->sig.fd = signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m->sig.fd < 0)
		return -1;
	m->sig.fn = signal_event;
	return 0;
}

/* epoll timeout: the next respawn, stop deadline, operation or tick. */
static int
next_timeout(const struct master *m, uint64_t now)
{
	uint64_t t = now + TICK_MS, c;
	unsigned i;

	if (m->state != MASTER_RUNNING && m->deadline_ms < t)
		t = m->deadline_ms;
	/* Readiness is a counter the workers set: poll it while someone
	 * waits for it. */
	if ((m->op != MASTER_OP_NONE || !m->started) && now + POLL_MS < t)
		t = now + POLL_MS;
	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].respawn_at != 0 && m->slots[i].respawn_at < t)
			t = m->slots[i].respawn_at;
	for (i = 0; i < m->nold; i++)
		if (m->old[i].kill_at < t)
			t = m->old[i].kill_at;
	if (m->hand.fd >= 0 && m->hand_deadline < t)
		t = m->hand_deadline;
	c = control_deadline(m->ctl);
	if (c != 0 && c < t)
		t = c;
	c = admin_deadline(m->admin);
	if (c != 0 && c < t)
		t = c;
	c = health_checks_deadline(m->health);
	if (c != 0 && c < t)
		t = c;
	return t > now ? (int)(t - now) : 0;
}

/* Once per loop turn: operations in progress and their deadlines. */
static void
operations(struct master *m, uint64_t now)
{
	supervise_kill_overdue(m, now);
	if (!m->started && m->state == MASTER_RUNNING &&
	    supervise_all_ready(m, m->slots, m->nslots))
		started(m);
	upgrade_handover_tick(m, now);
	switch (m->op) {
	case MASTER_OP_RELOAD:
		reload_tick(m, now);
		break;
	case MASTER_OP_CHECK:
	case MASTER_OP_HANDOFF:
		upgrade_tick(m, now);
		break;
	case MASTER_OP_NONE:
		break;
	}
}

static int
loop(struct master *m)
{
	struct epoll_event evs[16];
	struct master_ev *ev;
	uint64_t now;
	int n, i;

	for (;;) {
		n = epoll_wait(m->epfd, evs, 16,
		    next_timeout(m, master_now_ms()));
		if (n < 0 && errno != EINTR) {
			log_error("epoll_wait: %s", strerror(errno));
			return -1;
		}
		for (i = 0; i < n; i++) {
			ev = evs[i].data.ptr;
			ev->fn(ev, evs[i].events);
		}
		now = master_now_ms();
		control_tick(m->ctl, now);
		admin_tick(m->admin, now);
		stats_tick(m, now);
		health_checks_tick(m->health, now);
		if (!m->upgraded) {
			/* reader check, sweep, ticket keys: 1/s */
			tickets_set_rotation(m->cfg->server.ticket_rotate_s);
			store_tick(now);
		}
		operations(m, now);
		if (m->state == MASTER_RUNNING) {
			supervise_respawn_due(m, now);
			continue;
		}
		if (supervise_all_exited(m))
			return 0;
		if (now < m->deadline_ms)
			continue;
		if (!m->killed) {
			log_warn("workers still running after the %s stop "
			    "deadline: killing them",
			    m->state == MASTER_DRAINING ? "graceful" : "fast");
			supervise_signal_all(m, SIGKILL);
			m->killed = true;
			m->deadline_ms = now + KILL_WAIT_MS;
			continue;
		}
		log_error("workers did not exit after SIGKILL; giving up");
		return -1;
	}
}

/* The binary we run, for an upgrade without --binary: resolved now,
 * since a rebuilt file shows as "PATH (deleted)" later. */
static void
find_exe(struct master *m)
{
	ssize_t n = readlink("/proc/self/exe", m->exe, sizeof(m->exe) - 1);
	size_t len;

	m->exe[n > 0 ? n : 0] = '\0';
	len = strlen(m->exe);
	if (len > 10 && strcmp(m->exe + len - 10, " (deleted)") == 0)
		m->exe[len - 10] = '\0';
}

/* Certificates that expire within 14 days are warned about at start and
 * at every reload (gwctl status shows every expiry). */
void
warn_cert_expiry(const struct config *cfg)
{
	struct tls_cert_info ci[32];
	struct tls_server *ts = NULL;
	char why[512];
	time_t now = time(NULL);
	size_t i, n;

	if (tls_server_new(cfg, &ts, why, sizeof(why)) < 0 || ts == NULL)
		return;
	n = tls_server_certs(ts, ci, sizeof(ci) / sizeof(ci[0]));
	for (i = 0; i < n; i++) {
		if (ci[i].not_after == 0 || ci[i].not_after - now > 14 * 86400)
			continue;
		if (ci[i].not_after <= now)
			log_error("tls '%s': certificate %s has expired",
			    ci[i].entry, ci[i].file);
		else
			log_warn("tls '%s': certificate %s expires in %lld "
			    "days", ci[i].entry, ci[i].file,
			    (long long)(ci[i].not_after - now) / 86400);
	}
	tls_server_free(ts);
}

int
master_run(struct config *cfg)
{
	struct upgrade_set set;
	struct stats_gen *mg;
	struct master *m;
	struct epoll_event e;
	char err[512];
	unsigned i;
	int rc = 1;

	memset(&set, 0, sizeof(set));
	set.control_fd = -1;
	set.admin_fd = -1;
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		fprintf(stderr, "portico: out of memory\n");
		return 1;
	}
	m->cfg = cfg;
	m->pid = getpid();
	m->generation = 1;
	m->start_ms = master_now_ms();
	m->epfd = -1;
	m->sig.fd = -1;
	m->upg.fd = -1;
	m->hand.fd = -1;
	m->nslots = cfg->server.workers;
	m->handoff_fd = upgrade_inherited();
	find_exe(m);

	if (cfg->server.error_log != NULL &&
	    strcmp(cfg->server.error_log, "-") != 0 &&
	    master_mkdirs(cfg->server.error_log) < 0) {
		fprintf(stderr, "portico: cannot create the directory of %s: "
		    "%s\n", cfg->server.error_log, strerror(errno));
		goto done;
	}
	if (log_open(cfg->server.error_log, cfg->server.error_level) < 0) {
		fprintf(stderr, "portico: cannot open error log %s: %s\n",
		    cfg->server.error_log, strerror(errno));
		goto done;
	}
	if (setup_signals(m) < 0 ||
	    (m->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		fatal(cfg, "signalfd/epoll: %s", strerror(errno));
		goto done;
	}
	e.events = EPOLLIN;
	e.data.ptr = &m->sig;
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->sig.fd, &e) < 0) {
		fatal(cfg, "epoll_ctl: %s", strerror(errno));
		goto done;
	}
	/* Room for generations side by side: a reload's next one runs
	 * beside the serving one while older ones drain. */
	m->counters = counters_map(MASTER_COUNTER_SLOTS);
	m->cused = calloc(MASTER_COUNTER_SLOTS, 1);
	m->slots = calloc(m->nslots, sizeof(*m->slots));
	m->stats = stats_new();
	mg = m->stats != NULL ? stats_gen_new(m->stats, cfg) : NULL;
	if (m->counters == NULL || m->slots == NULL || m->cused == NULL ||
	    mg == NULL) {
		fatal(cfg, "cannot map counters: %s", strerror(errno));
		goto done;
	}
	for (i = 0; i < m->nslots; i++) {
		supervise_slot_init(m, &m->slots[i], i);
		m->slots[i].mg = mg;
	}
	if (m->handoff_fd >= 0) {
		log_info("upgrade: taking over from pid %d", (int)getppid());
		if (upgrade_receive(m->handoff_fd, &set, err,
		    sizeof(err)) < 0) {
			fatal(cfg, "%s", err);
			goto done;
		}
		if (listeners_adopt(m, &set, err, sizeof(err)) < 0) {
			fatal(cfg, "%s", err);
			goto done;
		}
	} else if (listeners_open(m, err, sizeof(err)) < 0) {
		fatal(cfg, "%s", err);
		goto done;
	}
	if (set.control_fd >= 0) {
		m->ctl = control_adopt(m, set.control_fd, set.control_path,
		    err, sizeof(err));
		if (m->ctl != NULL)
			set.control_fd = -1;
	} else {
		m->ctl = control_open(m, cfg->server.control_socket, err,
		    sizeof(err));
	}
	if (m->ctl == NULL) {
		fatal(cfg, "%s", err);
		goto done;
	}
	/* The old master's admin socket when it listens where we would. */
	if (set.admin_fd >= 0 && (!cfg->server.has_admin ||
	    strcmp(set.admin_addr, cfg->server.admin.text) != 0)) {
		close(set.admin_fd);
		set.admin_fd = -1;
	}
	if (admin_open(m, set.admin_fd, err, sizeof(err)) < 0) {
		set.admin_fd = -1;
		fatal(cfg, "%s", err);
		goto done;
	}
	set.admin_fd = -1;
	upgrade_set_free(&set);
	/* Before any fork. */
	if (store_master_init(cfg->server.state_path,
	    cfg->server.state_max_mb, cfg->server.workers) < 0) {
		fatal(cfg, "shared store %s unusable", cfg->server.state_path);
		goto done;
	}
	/* The first tick makes the TLS ticket keys the workers share. */
	tickets_set_rotation(cfg->server.ticket_rotate_s);
	store_tick(master_now_ms());
	warn_cert_expiry(cfg);
	/* Before any fork too: workers find every instance's health. */
	m->health = health_checks_open(m);
	/* An upgrade's new master writes it once ready (upgrade_ready). */
	if (m->handoff_fd < 0 && master_pidfile_write(m) < 0)
		goto done;
	log_info("portico started, pid %d, %u workers", (int)m->pid,
	    m->nslots);
	notify_send("STATUS=starting %u workers", m->nslots);
	for (i = 0; i < m->nslots; i++)
		supervise_spawn(m, &m->slots[i], m->cfg, m->generation);
	rc = loop(m) < 0 ? 1 : 0;
	if (!m->upgraded)
		remove_pidfile(m);
	log_info("portico stopped%s", m->upgraded ? " (upgraded)" : "");
done:
	if (rc != 0 && m->handoff_fd >= 0) {
		/* Tell the old master why, and leave its control socket
		 * file alone: it keeps serving. */
		upgrade_send_error(m->handoff_fd, last_fatal[0] != '\0' ?
		    last_fatal : "start-up failed");
		control_detach(m->ctl);
	}
	if (m->handoff_fd >= 0)
		close(m->handoff_fd);
	if (m->hand.fd >= 0)
		close(m->hand.fd);
	upgrade_set_free(&set);
	if (rc != 0 && m->state == MASTER_RUNNING)
		supervise_signal_all(m, SIGKILL);
	if (m->upgraded)
		control_detach(m->ctl);
	control_close(m->ctl);
	admin_close(m->admin);
	health_checks_close(m->health);
	upgrade_close(m);
	listeners_close(m);
	if (m->slots != NULL)
		for (i = 0; i < m->nslots; i++)
			free(m->slots[i].fds);
	free(m->slots);
	free(m->old);
	free(m->cused);
	stats_free(m->stats);
	if (m->epfd >= 0)
		close(m->epfd);
	if (m->sig.fd >= 0)
		close(m->sig.fd);
	config_free(m->cfg);	/* ours: a reload replaces it */
	free(m);
	return rc;
}
