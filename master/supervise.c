#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "control.h"
#include "listeners.h"
#include "log.h"
#include "master.h"
#include "stats.h"
#include "supervise.h"
#include "upgrade.h"
#include "../worker/worker.h"
#include "../shm/store.h"	/* a dead worker's reader slot */

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		10000
#define HEALTHY_MS		60000	/* a worker that lived this long resets backoff */
#define CRASH_LOOP		3	/* quick deaths in a row that we call a loop */
#define DRAIN_GRACE_MS		2000	/* after drain_timeout_ms: SIGKILL */

static uint64_t
realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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

unsigned
supervise_counters_free(const struct master *m)
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
	if (m->hand.fd >= 0)
		close(m->hand.fd);
	control_close_fds(m->ctl);
	admin_close_fds(m->admin);
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
	a.metrics = s->mg != NULL ? stats_gen_region(s->mg) : NULL;
	a.metrics_slot = s->num;
	worker_main(&a);
}

int
supervise_spawn(struct master *m, struct master_slot *s,
    const struct config *cfg, unsigned generation)
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
	if (listeners_for_slot(m, s, cfg) < 0) {
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

bool
supervise_all_ready(struct master *m, struct master_slot *s, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (!slot_ready(m, &s[i]))
			return false;
	return true;
}

unsigned
supervise_signal(struct master_slot *s, unsigned n, int sig)
{
	unsigned i, done = 0;

	for (i = 0; s != NULL && i < n; i++)
		if (s[i].pid > 0 && kill(s[i].pid, sig) == 0)
			done++;
	return done;
}

void
supervise_signal_all(struct master *m, int sig)
{
	supervise_signal(m->slots, m->nslots, sig);
	supervise_signal(m->next, m->nnext, sig);
	supervise_signal(m->old, m->nold, sig);
}

static void
mark_slots_stopping(struct master *m, struct master_slot *s, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (s[i].pid > 0)
			COUNTER_SET(&m->counters->slot[s[i].index].stopping, 1);
}

void
supervise_mark_stopping(struct master *m)
{
	mark_slots_stopping(m, m->slots, m->nslots);
	mark_slots_stopping(m, m->next, m->nnext);
	mark_slots_stopping(m, m->old, m->nold);
}

void
supervise_retire(struct master *m, struct master_slot *s, unsigned n,
    bool kill_unready)
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

void
supervise_describe(int status, char *buf, size_t len)
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
schedule_respawn(struct master *m, struct master_slot *s, int status)
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
	stats_restarted(m->stats);
	supervise_describe(status, how, sizeof(how));
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

static struct master_slot *
find_slot(struct master_slot *s, unsigned n, pid_t pid)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (s[i].pid == pid)
			return &s[i];
	return NULL;
}

void
supervise_reap(struct master *m)
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
		supervise_describe(status, how, sizeof(how));
		if ((s = find_slot(m->old, m->nold, pid)) != NULL) {
			log_info("worker %u of generation %u (pid %d) %s",
			    s->num, s->generation, (int)pid, how);
			counter_release(m, s->index);
			store_reader_check();
			i = (unsigned)(s - m->old);
			m->old[i] = m->old[--m->nold];
			if (m->nold == 0) {
				log_info("older generations drained");
				listeners_prune(m);
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
			schedule_respawn(m, s, status);
		else
			log_info("worker %u (pid %d) %s", s->num, (int)pid,
			    how);
		s->pid = 0;
	}
}

bool
supervise_all_exited(const struct master *m)
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


void
supervise_slot_init(struct master *m, struct master_slot *s, unsigned num)
{
	s->index = (unsigned)counter_alloc(m);
	s->num = num;
	s->backoff_ms = BACKOFF_MIN_MS;
}

void
supervise_respawn_due(struct master *m, uint64_t now)
{
	unsigned k;

	for (k = 0; k < m->nslots; k++)
		if (m->slots[k].respawn_at != 0 &&
		    m->slots[k].respawn_at <= now)
			supervise_spawn(m, &m->slots[k], m->cfg, m->generation);
}

void
supervise_kill_overdue(struct master *m, uint64_t now)
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
}
