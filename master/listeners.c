#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listeners.h"
#include "log.h"
#include "master.h"
#include "upgrade.h"

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
find(struct master *m, const struct cfg_addr *a)
{
	size_t i;

	for (i = 0; i < m->nsocks; i++)
		if (strcmp(m->socks[i].addr.text, a->text) == 0 &&
		    m->socks[i].addr.ss.ss_family == a->ss.ss_family)
			return &m->socks[i];
	return NULL;
}

int
listeners_need(struct master *m, const struct cfg_addr *a, unsigned n,
    char *err, size_t errlen)
{
	struct master_sock *k = find(m, a);
	struct sockaddr_storage ss;
	int *fds;
	unsigned i;

	if (k == NULL) {
		if (probe(a) < 0) {
			snprintf(err, errlen, "cannot listen on %s: %s",
			    a->text, strerror(errno));
			return -1;
		}
		k = realloc(m->socks, (m->nsocks + 1) * sizeof(*k));
		if (k == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		m->socks = k;
		k = &m->socks[m->nsocks++];
		memset(k, 0, sizeof(*k));
		k->addr = *a;
		memcpy(&k->bound, &a->ss, sizeof(k->bound));
		k->blen = a->len;
	}
	if (k->nfds >= n)
		return 0;
	fds = realloc(k->fds, n * sizeof(int));
	if (fds == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
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
			return -1;
		}
		memcpy(&k->bound, &ss, sizeof(ss));
		k->nfds = i + 1;
	}
	return 0;
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

/* Members past the serving (or starting) generation's worker count close
 * at once, since the kernel would keep routing new connections to them;
 * a removed address only once every older generation has exited. */
void
listeners_prune(struct master *m)
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

void
listeners_close(struct master *m)
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

int
listeners_open(struct master *m, char *err, size_t errlen)
{
	const struct cfg_server *sv = &m->cfg->server;
	size_t j;

	for (j = 0; j < sv->nlisten; j++)
		if (listeners_need(m, &sv->listen[j].addr, m->nslots, err,
		    errlen) < 0)
			return -1;
	return 0;
}

int
listeners_adopt(struct master *m, struct upgrade_set *set, char *err,
    size_t errlen)
{
	const struct cfg_server *sv = &m->cfg->server;
	struct master_sock *k;
	socklen_t sl;
	unsigned i;
	size_t j, n;

	for (j = 0; j < sv->nlisten; j++) {
		if (find(m, &sv->listen[j].addr) != NULL)
			continue;
		k = realloc(m->socks, (m->nsocks + 1) * sizeof(*k));
		if (k == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		m->socks = k;
		k = &m->socks[m->nsocks];
		memset(k, 0, sizeof(*k));
		k->addr = sv->listen[j].addr;
		k->fds = malloc(m->nslots * sizeof(int));
		if (k->fds == NULL) {
			snprintf(err, errlen, "out of memory");
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
				snprintf(err, errlen, "cannot listen on %s: "
				    "%s", k->addr.text, strerror(errno));
				return -1;
			}
		}
		if (listeners_need(m, &k->addr, m->nslots, err, errlen) < 0)
			return -1;
		log_info("listener %s: %u socket%s taken over", k->addr.text,
		    k->nfds < m->nslots ? k->nfds : m->nslots,
		    m->nslots == 1 ? "" : "s");
	}
	return 0;
}

int
listeners_for_slot(struct master *m, struct master_slot *s,
    const struct config *cfg)
{
	struct master_sock *k;
	size_t j;

	free(s->fds);
	s->fds = calloc(cfg->server.nlisten ? cfg->server.nlisten : 1,
	    sizeof(int));
	if (s->fds == NULL)
		return -1;
	for (j = 0; j < cfg->server.nlisten; j++) {
		k = find(m, &cfg->server.listen[j].addr);
		if (k == NULL || s->num >= k->nfds)
			return -1;
		s->fds[j] = k->fds[s->num];
	}
	return 0;
}
