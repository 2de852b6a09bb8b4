#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <limits.h>
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
#include "msg.h"
#include "notify.h"
#include "upgrade.h"
#include "../worker/worker.h"
#include "../shm/store.h"	/* ratelimit: shared store hooks */

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		10000
#define HEALTHY_MS		60000	/* a worker that lived this long resets backoff */
#define CRASH_LOOP		3	/* quick deaths in a row that we call a loop */
#define FAST_STOP_MS		1000	/* SIGTERM -> SIGKILL */
#define KILL_WAIT_MS		2000	/* after SIGKILL, before giving up */
#define TICK_MS			1000
#define POLL_MS			20	/* readiness polling during a reload */
#define DRAIN_GRACE_MS		2000	/* after drain_timeout_ms: SIGKILL */

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
	/* Accepted sockets inherit TCP_NODELAY: no setsockopt per client. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
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

static struct master_sock *
sock_find(struct master *m, const struct cfg_addr *a)
{
	size_t i;

	for (i = 0; i < m->nsocks; i++)
		if (strcmp(m->socks[i].addr.text, a->text) == 0 &&
		    m->socks[i].addr.ss.ss_family == a->ss.ss_family)
			return &m->socks[i];
	return NULL;
}

/* The sockets of A, with at least N per-slot members, creating the
 * address's group or joining it as needed. NULL with a reason in err. */
static struct master_sock *
sock_need(struct master *m, const struct cfg_addr *a, unsigned n, char *err,
    size_t errlen)
{
	struct master_sock *k = sock_find(m, a);
	struct sockaddr_storage ss;
	int *fds;
	unsigned i;

	if (k == NULL) {
		if (probe(a) < 0) {
			snprintf(err, errlen, "cannot listen on %s: %s",
			    a->text, strerror(errno));
			return NULL;
		}
		k = realloc(m->socks, (m->nsocks + 1) * sizeof(*k));
		if (k == NULL) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		m->socks = k;
		k = &m->socks[m->nsocks++];
		memset(k, 0, sizeof(*k));
		k->addr = *a;
		memcpy(&k->bound, &a->ss, sizeof(k->bound));
		k->blen = a->len;
	}
	if (k->nfds >= n)
		return k;
	fds = realloc(k->fds, n * sizeof(int));
	if (fds == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	k->fds = fds;
	for (i = k->nfds; i < n; i++) {
		/* The first socket may get its port from the kernel; the
		 * others join that group. */
		memcpy(&ss, &k->bound, sizeof(ss));
		k->fds[i] = open_listener(&ss, k->blen);
		if (k->fds[i] < 0) {
			snprintf(err, errlen, "cannot listen on %s: %s",
			    a->text, strerror(errno));
			return NULL;
		}
		memcpy(&k->bound, &ss, sizeof(ss));
		k->nfds = i + 1;
	}
	return k;
}

static bool
cfg_has(const struct config *cfg, const struct cfg_addr *a)
{
	size_t j;

	if (cfg == NULL)
		return false;
	for (j = 0; j < cfg->server.nlisten; j++)
		if (strcmp(cfg->server.listen[j].addr.text, a->text) == 0 &&
		    cfg->server.listen[j].addr.ss.ss_family ==
		    a->ss.ss_family)
			return true;
	return false;
}

/*
 * Close the sockets no generation needs any more: members past the
 * serving (or starting) generation's worker count at once, since the
 * kernel would keep routing new connections to them; a removed address
 * only once every older generation has exited.
 */
static void
prune_socks(struct master *m)
{
	struct master_sock *k;
	unsigned need, i;
	size_t j = 0, n;

	for (n = 0; n < m->nsocks; n++) {
		k = &m->socks[n];
		need = 0;
		if (cfg_has(m->cfg, &k->addr))
			need = m->nslots;
		if (cfg_has(m->next_cfg, &k->addr) && m->nnext > need)
			need = m->nnext;
		if (need == 0 && m->nold > 0)
			need = k->nfds;
		for (i = need; i < k->nfds; i++)
			if (k->fds[i] >= 0)
				close(k->fds[i]);
		if (need < k->nfds)
			k->nfds = need;
		if (need == 0) {
			log_info("listener %s closed", k->addr.text);
			free(k->fds);
			continue;
		}
		m->socks[j++] = *k;
	}
	m->nsocks = j;
}

static void
close_listeners(struct master *m)
{
	unsigned i;
	size_t n;

	for (n = 0; n < m->nsocks; n++) {
		for (i = 0; i < m->socks[n].nfds; i++)
			if (m->socks[n].fds[i] >= 0)
				close(m->socks[n].fds[i]);
		free(m->socks[n].fds);
	}
	free(m->socks);
	m->socks = NULL;
	m->nsocks = 0;
}

static int
open_listeners(struct master *m)
{
	const struct cfg_server *sv = &m->cfg->server;
	char err[512];
	size_t j;

	for (j = 0; j < sv->nlisten; j++)
		if (sock_need(m, &sv->listen[j].addr, m->nslots, err,
		    sizeof(err)) == NULL) {
			fatal(m->cfg, "%s", err);
			return -1;
		}
	return 0;
}

/* New master of an upgrade: take the old master's sockets by address and
 * slot number; anything missing is created as at a start. */
static int
adopt_listeners(struct master *m, struct upgrade_set *set)
{
	const struct cfg_server *sv = &m->cfg->server;
	struct master_sock *k;
	socklen_t sl;
	char err[512];
	unsigned i;
	size_t j, n;

	for (j = 0; j < sv->nlisten; j++) {
		if (sock_find(m, &sv->listen[j].addr) != NULL)
			continue;
		k = realloc(m->socks, (m->nsocks + 1) * sizeof(*k));
		if (k == NULL) {
			fatal(m->cfg, "out of memory");
			return -1;
		}
		m->socks = k;
		k = &m->socks[m->nsocks];
		memset(k, 0, sizeof(*k));
		k->addr = sv->listen[j].addr;
		k->fds = malloc(m->nslots * sizeof(int));
		if (k->fds == NULL) {
			fatal(m->cfg, "out of memory");
			return -1;
		}
		m->nsocks++;
		for (i = 0; i < m->nslots; i++) {
			k->fds[i] = -1;
			for (n = 0; n < set->n; n++) {
				if (set->socks[n].fd < 0 ||
				    set->socks[n].slot != (int)i ||
				    strcmp(set->socks[n].address,
				    k->addr.text) != 0)
					continue;
				k->fds[i] = set->socks[n].fd;
				set->socks[n].fd = -1;
				break;
			}
			if (k->fds[i] < 0)
				break;
			k->nfds = i + 1;
			sl = sizeof(k->bound);
			if (getsockname(k->fds[i],
			    (struct sockaddr *)&k->bound, &sl) == 0)
				k->blen = sl;
		}
		if (k->nfds == 0) {
			/* A new address in this binary's configuration. */
			memcpy(&k->bound, &k->addr.ss, sizeof(k->bound));
			k->blen = k->addr.len;
			if (probe(&k->addr) < 0) {
				fatal(m->cfg, "cannot listen on %s: %s",
				    k->addr.text, strerror(errno));
				return -1;
			}
		}
		if (sock_need(m, &k->addr, m->nslots, err, sizeof(err)) ==
		    NULL) {
			fatal(m->cfg, "%s", err);
			return -1;
		}
		log_info("listener %s: %u socket%s taken over", k->addr.text,
		    k->nfds < m->nslots ? k->nfds : m->nslots,
		    m->nslots == 1 ? "" : "s");
	}
	return 0;
}

static int
slot_fds(struct master *m, struct master_slot *s, const struct config *cfg)
{
	struct master_sock *k;
	size_t j;

	free(s->fds);
	s->fds = calloc(cfg->server.nlisten ? cfg->server.nlisten : 1,
	    sizeof(int));
	if (s->fds == NULL)
		return -1;
	for (j = 0; j < cfg->server.nlisten; j++) {
		k = sock_find(m, &cfg->server.listen[j].addr);
		if (k == NULL || s->num >= k->nfds)
			return -1;
		s->fds[j] = k->fds[s->num];
	}
	return 0;
}

static int
counter_alloc(struct master *m)
{
	unsigned i;

	for (i = 0; i < MASTER_COUNTER_SLOTS; i++)
		if (!m->cused[i]) {
			m->cused[i] = 1;
			return (int)i;
		}
	return -1;
}

static unsigned
counters_free(const struct master *m)
{
	unsigned i, n = 0;

	for (i = 0; i < MASTER_COUNTER_SLOTS; i++)
		n += !m->cused[i];
	return n;
}

static void
counter_release(struct master *m, unsigned idx)
{
	COUNTER_SET(&m->counters->slot[idx].pid, 0);
	COUNTER_SET(&m->counters->slot[idx].conns_open, 0);
	m->cused[idx] = 0;
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
become_worker(struct master *m, struct master_slot *s,
    const struct config *cfg)
{
	struct worker_args a;
	bool mine;
	unsigned i;
	size_t j, n;

	for (n = 0; n < m->nsocks; n++)
		for (i = 0; i < m->socks[n].nfds; i++) {
			mine = false;
			for (j = 0; j < cfg->server.nlisten; j++)
				if (s->fds[j] == m->socks[n].fds[i])
					mine = true;
			if (!mine && m->socks[n].fds[i] >= 0)
				close(m->socks[n].fds[i]);
		}
	close(m->epfd);
	close(m->sig.fd);
	if (m->upg.fd >= 0)
		close(m->upg.fd);
	if (m->handoff_fd >= 0)
		close(m->handoff_fd);
	control_close_fds(m->ctl);
	/* Die with the master, and do not outlive a master that died
	 * between fork and prctl. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != m->pid)
		_exit(1);
	COUNTER_SET(&m->counters->slot[s->index].pid, (uint64_t)getpid());
	memset(&a, 0, sizeof(a));
	a.cfg = cfg;
	a.slot = s->index;
	a.generation = s->generation;
	a.listen_fds = s->fds;
	a.nlisten = cfg->server.nlisten;
	a.stats = &m->counters->slot[s->index];
	worker_main(&a);
}

static int
spawn(struct master *m, struct master_slot *s, const struct config *cfg,
    unsigned generation)
{
	struct worker_counters *wc = &m->counters->slot[s->index];
	pid_t pid;

	/* A new process starts from zero; the slot's old numbers died with
	 * the old process. */
	memset(wc, 0, sizeof(*wc));
	COUNTER_SET(&wc->generation, generation);
	COUNTER_SET(&wc->started_ms, realtime_ms());
	s->generation = generation;
	s->respawn_at = 0;
	s->ready = false;
	if (slot_fds(m, s, cfg) < 0) {
		log_error("worker %u: its listening sockets are missing",
		    s->num);
		s->respawn_at = master_now_ms() + s->backoff_ms;
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		log_error("worker %u: fork: %s; retrying in %u ms", s->num,
		    strerror(errno), s->backoff_ms);
		s->respawn_at = master_now_ms() + s->backoff_ms;
		return -1;
	}
	if (pid == 0)
		become_worker(m, s, cfg);
	s->pid = pid;
	s->started_ms = master_now_ms();
	COUNTER_SET(&wc->pid, (uint64_t)pid);
	log_debug("worker %u started, pid %d, generation %u", s->num,
	    (int)pid, s->generation);
	return 0;
}

static bool
slot_ready(struct master *m, struct master_slot *s)
{
	if (s->pid <= 0)
		return false;
	if (!s->ready && COUNTER_GET(&m->counters->slot[s->index].ready))
		s->ready = true;
	return s->ready;
}

static bool
all_ready(struct master *m, struct master_slot *s, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (!slot_ready(m, &s[i]))
			return false;
	return true;
}

static void
signal_slots(struct master_slot *s, unsigned n, int sig)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (s[i].pid > 0)
			kill(s[i].pid, sig);
}

static void
signal_all(struct master *m, int sig)
{
	signal_slots(m->slots, m->nslots, sig);
	signal_slots(m->next, m->nnext, sig);
	signal_slots(m->old, m->nold, sig);
}

static void
mark_slots_stopping(struct master *m, struct master_slot *s, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (s[i].pid > 0)
			COUNTER_SET(&m->counters->slot[s[i].index].stopping, 1);
}

static void
mark_stopping(struct master *m)
{
	mark_slots_stopping(m, m->slots, m->nslots);
	mark_slots_stopping(m, m->next, m->nnext);
	mark_slots_stopping(m, m->old, m->nold);
}

/* Move live workers into the draining set (told to drain, or killed when
 * they never started serving); the others' counters slots are freed. */
static void
retire(struct master *m, struct master_slot *s, unsigned n, bool kill_unready)
{
	uint64_t now = master_now_ms();
	struct master_slot *p;
	unsigned i;

	for (i = 0; i < n; i++) {
		free(s[i].fds);
		s[i].fds = NULL;
		if (s[i].pid <= 0) {
			counter_release(m, s[i].index);
			continue;
		}
		if (m->nold == m->oldcap) {
			p = realloc(m->old, (m->oldcap * 2 + 8) * sizeof(*p));
			if (p == NULL) {
				/* Cannot track it: stop it hard instead. */
				kill(s[i].pid, SIGKILL);
				continue;
			}
			m->old = p;
			m->oldcap = m->oldcap * 2 + 8;
		}
		if (kill_unready && !slot_ready(m, &s[i]))
			kill(s[i].pid, SIGKILL);
		else
			kill(s[i].pid, SIGQUIT);
		s[i].kill_at = now + m->cfg->server.limits.drain_timeout_ms +
		    DRAIN_GRACE_MS;
		m->old[m->nold++] = s[i];
	}
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

/* Settings a running master cannot take over at reload: the files it
 * holds open or that others find it by. */
static int
immutable_changed(const struct config *a, const struct config *b,
    char *err, size_t errlen)
{
	const char *what = NULL;

#define DIFF(x, y) ((x) == NULL ? (y) != NULL : (y) == NULL || strcmp(x, y))
	if (DIFF(a->server.control_socket, b->server.control_socket))
		what = "server.control_socket";
	else if (DIFF(a->server.pid_file, b->server.pid_file))
		what = "server.pid_file";
	else if (DIFF(a->server.state_path, b->server.state_path) ||
	    a->server.state_max_mb != b->server.state_max_mb)
		what = "server.state";
#undef DIFF
	if (what == NULL)
		return 0;
	snprintf(err, errlen, "%s: %s cannot change at reload (restart, or "
	    "upgrade, to change it)", b->file, what);
	return -1;
}

static void
reply_simple(struct master *m, bool ok, const char *error)
{
	struct msg_out o;

	memset(&o, 0, sizeof(o));
	if (msg_out_init(&o, ok ? 1 : 2) < 0)
		return;
	msg_pack_kv_bool(&o.pk, "ok", ok);
	if (!ok)
		msg_pack_kv_str(&o.pk, "error", error);
	control_complete(m->ctl, &o);
}

static void
status_notify(struct master *m, const char *what)
{
	notify_send("READY=1\nSTATUS=%s; generation %u, %u workers", what,
	    m->generation, m->nslots);
}

int
master_reload(struct master *m, char *err, size_t errlen)
{
	struct config *nc = NULL;
	struct master_slot *next = NULL;
	unsigned i, n;
	size_t j;
	int idx;

	if (m->state != MASTER_RUNNING || m->upgraded) {
		snprintf(err, errlen, "the master is stopping");
		return -1;
	}
	if (m->op != MASTER_OP_NONE) {
		snprintf(err, errlen, "a%s is already in progress",
		    m->op == MASTER_OP_RELOAD ? " reload" : "n upgrade");
		return -1;
	}
	notify_reloading();
	log_info("reload: reading %s", m->cfg->file);
	if (config_load(m->cfg->file, m->cfg->prefix, &nc, err, errlen) < 0)
		goto refuse;
	if (immutable_changed(m->cfg, nc, err, errlen) < 0)
		goto refuse;
	n = nc->server.workers;
	if (counters_free(m) < n) {
		snprintf(err, errlen, "too many generations still draining; "
		    "retry when they are gone");
		goto refuse;
	}
	for (j = 0; j < nc->server.nlisten; j++)
		if (sock_need(m, &nc->server.listen[j].addr, n, err, errlen) ==
		    NULL)
			goto refuse;
	next = calloc(n, sizeof(*next));
	if (next == NULL) {
		snprintf(err, errlen, "out of memory");
		goto refuse;
	}
	m->next = next;
	m->nnext = n;
	m->next_cfg = nc;
	m->op = MASTER_OP_RELOAD;
	m->op_deadline = master_now_ms() + MASTER_READY_MS;
	m->op_err[0] = '\0';
	for (i = 0; i < n; i++) {
		idx = counter_alloc(m);	/* enough: counted above */
		next[i].index = (unsigned)idx;
		next[i].num = i;
		next[i].backoff_ms = BACKOFF_MIN_MS;
		if (spawn(m, &next[i], nc, m->generation + 1) < 0) {
			snprintf(m->op_err, sizeof(m->op_err), "cannot start "
			    "worker %u", i);
			break;
		}
	}
	log_info("reload: generation %u starting (%u workers)",
	    m->generation + 1, n);
	return 0;
refuse:
	config_free(nc);
	prune_socks(m);
	log_error("reload refused: %s", err);
	notify_send("READY=1\nSTATUS=reload refused: %s", err);
	return -1;
}

/* The next generation is ready, or failed: switch, or keep the old. */
static void
reload_finish(struct master *m, bool ok, const char *why)
{
	char text[512];
	struct msg_out o;
	unsigned draining;

	if (ok) {
		retire(m, m->slots, m->nslots, false);
		free(m->slots);
		m->slots = m->next;
		m->nslots = m->nnext;
		config_free(m->cfg);
		m->cfg = m->next_cfg;
		m->generation++;
		log_info("reload: generation %u serving; the previous one "
		    "drains (%u workers)", m->generation, m->nold);
	} else {
		retire(m, m->next, m->nnext, true);
		free(m->next);
		config_free(m->next_cfg);
		snprintf(text, sizeof(text), "reload failed: %s; generation "
		    "%u keeps serving", why, m->generation);
		log_error("%s", text);
	}
	m->next = NULL;
	m->nnext = 0;
	m->next_cfg = NULL;
	m->op = MASTER_OP_NONE;
	prune_socks(m);
	draining = m->nold;
	if (!ok) {
		reply_simple(m, false, text);
		status_notify(m, "reload failed");
		return;
	}
	memset(&o, 0, sizeof(o));
	if (msg_out_init(&o, 4) == 0) {
		msg_pack_kv_bool(&o.pk, "ok", true);
		msg_pack_kv_uint(&o.pk, "generation", m->generation);
		msg_pack_kv_uint(&o.pk, "workers", m->nslots);
		msg_pack_kv_uint(&o.pk, "draining", draining);
		control_complete(m->ctl, &o);
	}
	status_notify(m, "reloaded");
}

/* ---- binary upgrade, old master's side ---- */

static void
upg_close(struct master *m)
{
	if (m->upg.fd >= 0) {
		epoll_ctl(m->epfd, EPOLL_CTL_DEL, m->upg.fd, NULL);
		close(m->upg.fd);
	}
	m->upg.fd = -1;
}

static void upgrade_fail(struct master *m, const char *step,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
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
	upg_close(m);
	if (m->upg_pid > 0)
		kill(m->upg_pid, SIGKILL);	/* its workers follow it */
	m->upg_pid = 0;
	m->op = MASTER_OP_NONE;
	/* The new master writes the pid file only when ready, but a
	 * late one may have raced the deadline. */
	write_pidfile(m);
	memset(&o, 0, sizeof(o));
	if (msg_out_init(&o, 3) == 0) {
		msg_pack_kv_bool(&o.pk, "ok", false);
		msg_pack_kv_str(&o.pk, "error", text);
		msg_pack_kv_str(&o.pk, "step", step);
		control_complete(m->ctl, &o);
	}
	status_notify(m, "upgrade failed");
}

static void
upgrade_done(struct master *m, pid_t newpid)
{
	struct msg_out o;

	log_info("upgrade: new master %d (%s) is ready; draining and "
	    "exiting", (int)newpid, m->upg_bin);
	upg_close(m);
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
	/* The new master owns the control socket's file and the pid file
	 * now; we only drain our workers. */
	m->upgraded = true;
	store_master_detach();	/* the new master may have grown the map */
	control_detach(m->ctl);
	master_stop(m, true);
}

static void
upg_event(struct master_ev *ev, uint32_t events)
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
					upg_close(m);
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
		upgrade_done(m, (pid_t)val);
	else if (strcmp(kind, "error") == 0)
		upgrade_fail(m, "start", "the new master: %s", text);
}

int
master_upgrade(struct master *m, const char *binary, char *err,
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
	m->upg.fn = upg_event;
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
upgrade_handoff(struct master *m)
{
	struct epoll_event e;
	unsigned i, count = 0;
	size_t n;
	int fd;

	upg_close(m);
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

/* A child that is not a worker: the upgrade's check or new master. */
static void
upgrade_reaped(struct master *m, int status)
{
	char how[128], *nl;

	describe(status, how, sizeof(how));
	if (m->op == MASTER_OP_CHECK) {
		m->upg_pid = 0;
		if (m->upg.fd >= 0)
			upg_event(&m->upg, EPOLLIN);	/* the last bytes */
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			upgrade_handoff(m);
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
		upg_event(&m->upg, EPOLLIN);
	if (m->op != MASTER_OP_HANDOFF)
		return;
	upgrade_fail(m, "ready", "the new master %s before reporting ready",
	    how);
}

/* ---- the new master's side ---- */

static void
started(struct master *m)
{
	m->started = true;
	if (m->handoff_fd < 0) {
		log_info("all %u workers ready", m->nslots);
		status_notify(m, "serving");
		return;
	}
	/* Pid file first, so it names us before the old master exits. */
	write_pidfile(m);
	if (upgrade_send(m->handoff_fd, "ready", NULL, (long)m->pid, -1) < 0)
		log_error("upgrade: cannot report ready to the old master: "
		    "%s", strerror(errno));
	close(m->handoff_fd);
	m->handoff_fd = -1;
	log_info("upgrade: all %u workers ready; the old master drains",
	    m->nslots);
	notify_send("MAINPID=%d\nREADY=1\nSTATUS=serving (upgraded); "
	    "generation %u, %u workers", (int)m->pid, m->generation,
	    m->nslots);
}

static struct master_slot *
find_slot(struct master_slot *s, unsigned n, pid_t pid)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (s[i].pid == pid)
			return &s[i];
	return NULL;
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
		if (m->upg_pid > 0 && pid == m->upg_pid) {
			upgrade_reaped(m, status);
			continue;
		}
		describe(status, how, sizeof(how));
		if ((s = find_slot(m->old, m->nold, pid)) != NULL) {
			log_info("worker %u of generation %u (pid %d) %s",
			    s->num, s->generation, (int)pid, how);
			counter_release(m, s->index);
			store_reader_check();
			i = (unsigned)(s - m->old);
			m->old[i] = m->old[--m->nold];
			if (m->nold == 0) {
				log_info("older generations drained");
				prune_socks(m);
			}
			continue;
		}
		if ((s = find_slot(m->next, m->nnext, pid)) != NULL) {
			/* The reload fails in the loop, with this reason. */
			snprintf(m->op_err, sizeof(m->op_err), "new worker %u "
			    "(pid %d) %s", s->num, (int)pid, how);
			log_error("%s", m->op_err);
			COUNTER_SET(&m->counters->slot[s->index].pid, 0);
			store_reader_check();
			s->pid = 0;
			continue;
		}
		s = find_slot(m->slots, m->nslots, pid);
		if (s == NULL) {
			log_debug("reaped unknown child %d (%s)", (int)pid,
			    how);
			continue;
		}
		COUNTER_SET(&m->counters->slot[s->index].pid, 0);
		COUNTER_SET(&m->counters->slot[s->index].conns_open, 0);
		store_reader_check();	/* free a dead worker's reader slot */
		if (m->state == MASTER_RUNNING)
			schedule_respawn(s, status);
		else
			log_info("worker %u (pid %d) %s", s->num, (int)pid,
			    how);
		s->pid = 0;
	}
}

void
master_stop(struct master *m, bool graceful)
{
	uint64_t now = master_now_ms();
	unsigned i;

	if (m->state == MASTER_STOPPING ||
	    (graceful && m->state == MASTER_DRAINING))
		return;
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
	close_listeners(m);
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
			mark_stopping(m);
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
	char err[1024];
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
			log_info("SIGHUP received: reloading");
			if (master_reload(m, err, sizeof(err)) < 0)
				log_warn("SIGHUP: %s", err);
			break;
		case SIGUSR2:
			log_info("SIGUSR2 received: binary upgrade");
			if (master_upgrade(m, NULL, err, sizeof(err)) < 0)
				log_error("SIGUSR2: %s", err);
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
	for (i = 0; i < m->nnext; i++)
		if (m->next[i].pid > 0)
			return false;
	return m->nold == 0;
}

/* epoll timeout: the next respawn, stop deadline, operation or tick. */
static int
next_timeout(const struct master *m, uint64_t now)
{
	uint64_t t = now + TICK_MS;
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
	return t > now ? (int)(t - now) : 0;
}

/* Once per loop turn: operations in progress and their deadlines. */
static void
operations(struct master *m, uint64_t now)
{
	unsigned i;

	for (i = 0; i < m->nold; i++)
		if (m->old[i].kill_at != 0 && m->old[i].kill_at <= now) {
			log_warn("worker %u of generation %u (pid %d) still "
			    "draining after the drain timeout: killing it",
			    m->old[i].num, m->old[i].generation,
			    (int)m->old[i].pid);
			kill(m->old[i].pid, SIGKILL);
			m->old[i].kill_at = 0;
		}
	if (!m->started && m->state == MASTER_RUNNING &&
	    all_ready(m, m->slots, m->nslots))
		started(m);
	switch (m->op) {
	case MASTER_OP_RELOAD:
		if (m->op_err[0] != '\0')
			reload_finish(m, false, m->op_err);
		else if (all_ready(m, m->next, m->nnext))
			reload_finish(m, true, NULL);
		else if (now >= m->op_deadline)
			reload_finish(m, false, "the new workers did not "
			    "report ready within 10 s");
		break;
	case MASTER_OP_CHECK:
		if (now >= m->op_deadline)
			upgrade_fail(m, "check", "%s -t gave no result within "
			    "10 s", m->upg_bin);
		break;
	case MASTER_OP_HANDOFF:
		if (now >= m->op_deadline)
			upgrade_fail(m, "ready", "the new master did not "
			    "report ready within 10 s");
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
		if (!m->upgraded)
			store_tick(now);	/* reader check + sweep, 1/s */
		operations(m, now);
		if (m->state == MASTER_RUNNING) {
			for (k = 0; k < m->nslots; k++)
				if (m->slots[k].respawn_at != 0 &&
				    m->slots[k].respawn_at <= now)
					spawn(m, &m->slots[k], m->cfg,
					    m->generation);
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

/* Settings the contract defines that this build accepts but does not act
 * on yet (they fail safe: nothing is let through because of them). Say so
 * instead of ignoring them silently. */
static void
warn_unbuilt(const struct config *cfg)
{
	size_t i;

	if (cfg->server.has_admin)
		log_warn("admin listener %s: not built yet (the observability "
		    "issue builds /metrics, /healthz, /readyz)",
		    cfg->server.admin.text);
	for (i = 0; i < cfg->nservices; i++) {
		const struct cfg_service *s = &cfg->services[i];
		if (s->health.enabled)
			log_warn("service '%s': active health checks are not "
			    "built yet; every instance counts as up", s->name);
		if (s->breaker.enabled)
			log_warn("service '%s': circuit breakers are not built "
			    "yet", s->name);
	}
}

int
master_run(struct config *cfg)
{
	struct upgrade_set set;
	struct master *m;
	struct epoll_event e;
	char err[512];
	unsigned i;
	int rc = 1;

	memset(&set, 0, sizeof(set));
	set.control_fd = -1;
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
	if (m->counters == NULL || m->slots == NULL || m->cused == NULL) {
		fatal(cfg, "cannot map counters: %s", strerror(errno));
		goto done;
	}
	for (i = 0; i < m->nslots; i++) {
		m->slots[i].index = (unsigned)counter_alloc(m);
		m->slots[i].num = i;
		m->slots[i].backoff_ms = BACKOFF_MIN_MS;
	}
	if (m->handoff_fd >= 0) {
		log_info("upgrade: taking over from pid %d", (int)getppid());
		if (upgrade_receive(m->handoff_fd, &set, err,
		    sizeof(err)) < 0) {
			fatal(cfg, "%s", err);
			goto done;
		}
		if (adopt_listeners(m, &set) < 0)
			goto done;
	} else if (open_listeners(m) < 0) {
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
	upgrade_set_free(&set);
	/* Before any fork. */
	if (store_master_init(cfg->server.state_path,
	    cfg->server.state_max_mb, cfg->server.workers) < 0) {
		fatal(cfg, "shared store %s unusable", cfg->server.state_path);
		goto done;
	}
	/* An upgrade's new master writes it once ready (see started()). */
	if (m->handoff_fd < 0 && write_pidfile(m) < 0)
		goto done;
	log_info("portico started, pid %d, %u workers", (int)m->pid,
	    m->nslots);
	warn_unbuilt(cfg);
	notify_send("STATUS=starting %u workers", m->nslots);
	for (i = 0; i < m->nslots; i++)
		spawn(m, &m->slots[i], m->cfg, m->generation);
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
	upgrade_set_free(&set);
	if (rc != 0 && m->state == MASTER_RUNNING)
		signal_all(m, SIGKILL);
	if (m->upgraded)
		control_detach(m->ctl);
	control_close(m->ctl);
	upg_close(m);
	close_listeners(m);
	if (m->slots != NULL)
		for (i = 0; i < m->nslots; i++)
			free(m->slots[i].fds);
	free(m->slots);
	free(m->old);
	free(m->cused);
	if (m->epfd >= 0)
		close(m->epfd);
	if (m->sig.fd >= 0)
		close(m->sig.fd);
	config_free(m->cfg);	/* ours: a reload replaces it */
	free(m);
	return rc;
}
