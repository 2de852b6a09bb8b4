#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "master.h"
#include "../worker/worker.h"
#include "../shm/store.h"	/* ratelimit: shared store hooks */

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		10000
#define HEALTHY_MS		60000	/* a worker that lived this long resets backoff */
#define CRASH_LOOP		3	/* quick deaths in a row that we call a loop */
#define FAST_STOP_MS		1000	/* SIGTERM -> SIGKILL */
#define KILL_WAIT_MS		2000	/* after SIGKILL, before giving up */
#define TICK_MS			1000

uint64_t
master_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
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
	fprintf(stderr, "portico: %s\n", text);
	if (cfg->server.error_log != NULL &&
	    strcmp(cfg->server.error_log, "-") != 0)
		log_error("%s", text);
}

static int
backlog(void)
{
	FILE *f = fopen("/proc/sys/net/core/somaxconn", "re");
	int n = 0;

	if (f != NULL) {
		if (fscanf(f, "%d", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n > 4096 ? n : 4096;
}

/*
 * A socket bound without SO_REUSEPORT fails where any listener holds the
 * port, including another portico's SO_REUSEPORT group, which our own
 * SO_REUSEPORT bind would silently join (and then share its traffic).
 */
static int
probe(const struct cfg_addr *a)
{
	int fd, one = 1, r, e;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	r = bind(fd, (const struct sockaddr *)&a->ss, a->len);
	e = errno;
	close(fd);
	errno = e;
	return r;
}

/* One listening socket of a slot; *ss may be updated with the port the
 * kernel chose for port 0, so the other slots join the same group. */
static int
open_listener(struct sockaddr_storage *ss, socklen_t len)
{
	int fd, one = 1, e;
	socklen_t sl = sizeof(*ss);

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (ss->ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)ss, len) < 0 ||
	    listen(fd, backlog()) < 0)
		goto fail;
	if (getsockname(fd, (struct sockaddr *)ss, &sl) < 0)
		goto fail;
	return fd;
fail:
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

static int
open_listeners(struct master *m)
{
	const struct cfg_server *sv = &m->cfg->server;
	struct sockaddr_storage ss;
	size_t j;
	unsigned i;

	for (i = 0; i < m->nslots; i++) {
		m->slots[i].fds = malloc(sv->nlisten * sizeof(int));
		if (m->slots[i].fds == NULL && sv->nlisten > 0) {
			fatal(m->cfg, "out of memory");
			return -1;
		}
		for (j = 0; j < sv->nlisten; j++)
			m->slots[i].fds[j] = -1;
	}
	for (j = 0; j < sv->nlisten; j++) {
		const struct cfg_addr *a = &sv->listen[j].addr;

		if (probe(a) < 0) {
			fatal(m->cfg, "cannot listen on %s: %s", a->text,
			    strerror(errno));
			return -1;
		}
		memcpy(&ss, &a->ss, sizeof(ss));
		for (i = 0; i < m->nslots; i++) {
			m->slots[i].fds[j] = open_listener(&ss, a->len);
			if (m->slots[i].fds[j] < 0) {
				fatal(m->cfg, "cannot listen on %s: %s",
				    a->text, strerror(errno));
				return -1;
			}
		}
	}
	return 0;
}

static void
close_listeners(struct master *m)
{
	unsigned i;
	size_t j;

	for (i = 0; i < m->nslots; i++) {
		if (m->slots[i].fds == NULL)
			continue;
		for (j = 0; j < m->cfg->server.nlisten; j++) {
			if (m->slots[i].fds[j] >= 0)
				close(m->slots[i].fds[j]);
			m->slots[i].fds[j] = -1;
		}
	}
}

static int
write_pidfile(struct master *m)
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

/* In the freshly forked worker: keep only what the worker may hold. */
static void __attribute__((noreturn))
become_worker(struct master *m, struct master_slot *s)
{
	struct worker_args a;
	unsigned i;
	size_t j;

	for (i = 0; i < m->nslots; i++) {
		if (&m->slots[i] == s || m->slots[i].fds == NULL)
			continue;
		for (j = 0; j < m->cfg->server.nlisten; j++)
			if (m->slots[i].fds[j] >= 0)
				close(m->slots[i].fds[j]);
	}
	close(m->epfd);
	close(m->sig.fd);
	control_close_fds(m->ctl);
	/* Die with the master, and do not outlive a master that died
	 * between fork and prctl. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != m->pid)
		_exit(1);
	COUNTER_SET(&m->counters->slot[s->index].pid, (uint64_t)getpid());
	memset(&a, 0, sizeof(a));
	a.cfg = m->cfg;
	a.slot = s->index;
	a.generation = s->generation;
	a.listen_fds = s->fds;
	a.nlisten = m->cfg->server.nlisten;
	a.stats = &m->counters->slot[s->index];
	worker_main(&a);
}

static int
spawn(struct master *m, struct master_slot *s)
{
	struct worker_counters *wc = &m->counters->slot[s->index];
	pid_t pid;

	/* A new process starts from zero; the slot's old numbers died with
	 * the old process. */
	memset(wc, 0, sizeof(*wc));
	COUNTER_SET(&wc->generation, m->generation);
	COUNTER_SET(&wc->started_ms, realtime_ms());
	s->generation = m->generation;
	s->respawn_at = 0;
	pid = fork();
	if (pid < 0) {
		log_error("worker %u: fork: %s; retrying in %u ms", s->index,
		    strerror(errno), s->backoff_ms);
		s->respawn_at = master_now_ms() + s->backoff_ms;
		return -1;
	}
	if (pid == 0)
		become_worker(m, s);
	s->pid = pid;
	s->started_ms = master_now_ms();
	COUNTER_SET(&wc->pid, (uint64_t)pid);
	log_debug("worker %u started, pid %d, generation %u", s->index,
	    (int)pid, s->generation);
	return 0;
}

static void
describe(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d",
		    WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s",
		    WTERMSIG(status), strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "stopped with status 0x%x", status);
}

static void
schedule_respawn(struct master_slot *s, int status)
{
	uint64_t now = master_now_ms();
	char how[128];
	unsigned delay;
	bool crash;

	if (now - s->started_ms >= HEALTHY_MS) {
		s->backoff_ms = BACKOFF_MIN_MS;
		s->quick_deaths = 0;
	} else {
		s->quick_deaths++;
	}
	delay = s->backoff_ms;
	s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ?
	    BACKOFF_MAX_MS : s->backoff_ms * 2;
	s->respawn_at = now + delay;
	s->restarts++;
	describe(status, how, sizeof(how));
	crash = WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV ||
	    WTERMSIG(status) == SIGBUS || WTERMSIG(status) == SIGABRT ||
	    WTERMSIG(status) == SIGILL || WTERMSIG(status) == SIGFPE);
	log_msg(crash ? LOG_ERROR : LOG_WARN,
	    "worker %u (pid %d) %s; respawning in %u ms", s->index,
	    (int)s->pid, how, delay);
	if (s->quick_deaths >= CRASH_LOOP)
		log_error("worker %u is crash-looping: %u deaths in a row "
		    "within %d s of start; backing off to %u ms", s->index,
		    s->quick_deaths, HEALTHY_MS / 1000, s->backoff_ms);
}

static void
reap(struct master *m)
{
	struct master_slot *s;
	char how[128];
	pid_t pid;
	int status;
	unsigned i;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		s = NULL;
		for (i = 0; i < m->nslots; i++)
			if (m->slots[i].pid == pid)
				s = &m->slots[i];
		if (s == NULL) {
			log_debug("reaped unknown child %d", (int)pid);
			continue;
		}
		COUNTER_SET(&m->counters->slot[s->index].pid, 0);
		COUNTER_SET(&m->counters->slot[s->index].conns_open, 0);
		store_reader_check();	/* ratelimit: free a dead reader slot */
		if (m->state == MASTER_RUNNING) {
			schedule_respawn(s, status);
		} else {
			describe(status, how, sizeof(how));
			log_info("worker %u (pid %d) %s", s->index, (int)pid,
			    how);
		}
		s->pid = 0;
	}
}

static void
signal_all(struct master *m, int sig)
{
	unsigned i;

	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].pid > 0)
			kill(m->slots[i].pid, sig);
}

void
master_stop(struct master *m, bool graceful)
{
	uint64_t now = master_now_ms();
	unsigned i;

	if (m->state == MASTER_STOPPING ||
	    (graceful && m->state == MASTER_DRAINING))
		return;
	for (i = 0; i < m->nslots; i++)
		m->slots[i].respawn_at = 0;
	/* Our copies would keep the sockets (and their accept queues) alive
	 * after the workers close theirs; new clients should be refused at
	 * once instead of waiting for a reset at our exit. */
	close_listeners(m);
	if (graceful) {
		m->state = MASTER_DRAINING;
		m->deadline_ms = now + m->cfg->server.limits.drain_timeout_ms +
		    1000;
		log_info("graceful stop: draining workers (up to %u ms)",
		    m->cfg->server.limits.drain_timeout_ms);
		signal_all(m, SIGQUIT);
	} else {
		m->state = MASTER_STOPPING;
		m->deadline_ms = now + FAST_STOP_MS;
		log_info("fast stop");
		signal_all(m, SIGTERM);
	}
}

static void
signal_event(struct master_ev *ev, uint32_t events)
{
	struct master *m = (struct master *)((char *)ev -
	    offsetof(struct master, sig));
	struct signalfd_siginfo si;
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
			reap(m);
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
			log_warn("SIGHUP received: reload is not built yet");
			break;
		case SIGUSR2:
			log_warn("SIGUSR2 received: binary upgrade is not "
			    "built yet");
			break;
		case SIGUSR1:
			if (log_reopen() < 0)
				log_error("reopening the error log: %s",
				    strerror(errno));
			else
				log_info("error log reopened");
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

static bool
all_exited(const struct master *m)
{
	unsigned i;

	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].pid > 0)
			return false;
	return true;
}

/* epoll timeout: the next respawn, stop deadline or tick. */
static int
next_timeout(const struct master *m, uint64_t now)
{
	uint64_t t = now + TICK_MS;
	unsigned i;

	if (m->state != MASTER_RUNNING && m->deadline_ms < t)
		t = m->deadline_ms;
	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].respawn_at != 0 && m->slots[i].respawn_at < t)
			t = m->slots[i].respawn_at;
	return t > now ? (int)(t - now) : 0;
}

static int
loop(struct master *m)
{
	struct epoll_event evs[16];
	struct master_ev *ev;
	uint64_t now;
	int n, i;
	unsigned k;

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
		store_tick(now);	/* ratelimit: reader check + sweep, 1/s */
		if (m->state == MASTER_RUNNING) {
			for (k = 0; k < m->nslots; k++)
				if (m->slots[k].respawn_at != 0 &&
				    m->slots[k].respawn_at <= now)
					spawn(m, &m->slots[k]);
			continue;
		}
		if (all_exited(m))
			return 0;
		if (now < m->deadline_ms)
			continue;
		if (!m->killed) {
			log_warn("workers still running after the %s stop "
			    "deadline: killing them",
			    m->state == MASTER_DRAINING ? "graceful" : "fast");
			signal_all(m, SIGKILL);
			m->killed = true;
			m->deadline_ms = now + KILL_WAIT_MS;
			continue;
		}
		log_error("workers did not exit after SIGKILL; giving up");
		return -1;
	}
}

int
master_run(struct config *cfg)
{
	struct master *m;
	struct epoll_event e;
	char err[512];
	unsigned i;
	int rc = 1;

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
	m->nslots = cfg->server.workers;

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
	/* Twice the slots: a reload's next generation runs beside this one. */
	m->counters = counters_map(2 * m->nslots);
	m->slots = calloc(m->nslots, sizeof(*m->slots));
	if (m->counters == NULL || m->slots == NULL) {
		fatal(cfg, "cannot map counters: %s", strerror(errno));
		goto done;
	}
	for (i = 0; i < m->nslots; i++) {
		m->slots[i].index = i;
		m->slots[i].backoff_ms = BACKOFF_MIN_MS;
	}
	if (open_listeners(m) < 0)
		goto done;
	m->ctl = control_open(m, cfg->server.control_socket, err, sizeof(err));
	if (m->ctl == NULL) {
		fatal(cfg, "%s", err);
		goto done;
	}
	if (store_master_init(cfg) < 0) {	/* ratelimit: before any fork */
		fatal(cfg, "shared store %s unusable", cfg->server.state_path);
		goto done;
	}
	if (write_pidfile(m) < 0)
		goto done;
	log_info("portico started, pid %d, %u workers", (int)m->pid,
	    m->nslots);
	for (i = 0; i < m->nslots; i++)
		spawn(m, &m->slots[i]);
	rc = loop(m) < 0 ? 1 : 0;
	remove_pidfile(m);
	log_info("portico stopped");
done:
	if (rc != 0 && m->state == MASTER_RUNNING)
		signal_all(m, SIGKILL);
	control_close(m->ctl);
	close_listeners(m);
	if (m->slots != NULL)
		for (i = 0; i < m->nslots; i++)
			free(m->slots[i].fds);
	free(m->slots);
	if (m->epfd >= 0)
		close(m->epfd);
	if (m->sig.fd >= 0)
		close(m->sig.fd);
	free(m);
	return rc;
}
