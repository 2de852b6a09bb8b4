#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

#define MAX_EVENTS 256

uint64_t
loop_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int
loop_init(struct loop *l)
{
	memset(l, 0, sizeof(*l));
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		return -1;
	l->now_us = loop_clock_us();
	l->now_ms = l->now_us / 1000;
	return 0;
}

void
loop_free(struct loop *l)
{
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
	free(l->heap);
	l->heap = NULL;
	l->nheap = l->capheap = 0;
}

int
loop_add(struct loop *l, struct loop_fd *f, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = f };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, f->fd, &ev);
}

void
loop_del(struct loop *l, struct loop_fd *f)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, f->fd, NULL);
}

/* Heap helpers: heap[i]->idx == i + 1 always holds. */
static void
heap_swap(struct loop *l, unsigned a, unsigned b)
{
	struct loop_timer *t = l->heap[a];

	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->idx = a + 1;
	l->heap[b]->idx = b + 1;
}

static void
heap_up(struct loop *l, unsigned i)
{
	while (i > 0) {
		unsigned p = (i - 1) / 2;
		if (l->heap[p]->when_ms <= l->heap[i]->when_ms)
			break;
		heap_swap(l, p, i);
		i = p;
	}
}

static void
heap_down(struct loop *l, unsigned i)
{
	for (;;) {
		unsigned c = 2 * i + 1, m = i;
		if (c < l->nheap && l->heap[c]->when_ms < l->heap[m]->when_ms)
			m = c;
		if (c + 1 < l->nheap &&
		    l->heap[c + 1]->when_ms < l->heap[m]->when_ms)
			m = c + 1;
		if (m == i)
			break;
		heap_swap(l, i, m);
		i = m;
	}
}

void
loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	unsigned i;

	if (t->idx == 0)
		return;
	i = t->idx - 1;
	t->idx = 0;
	l->nheap--;
	if (i == l->nheap)
		return;
	l->heap[i] = l->heap[l->nheap];
	l->heap[i]->idx = i + 1;
	heap_up(l, i);
	heap_down(l, l->heap[i]->idx - 1);
}

void
loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t after_ms)
{
	uint64_t when = l->now_ms + after_ms;

	if (t->idx != 0) {
		/* Later (an idle or a request timer pushed back, as every
		 * request does): no heap work now. Earlier: up the heap. */
		t->due_ms = when;
		if (when < t->when_ms) {
			t->when_ms = when;
			heap_up(l, t->idx - 1);
		}
		return;
	}
	if (l->nheap == l->capheap) {
		unsigned cap = l->capheap ? l->capheap * 2 : 256;
		struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));
		if (h == NULL)
			abort();	/* no way to keep a timeout promise */
		l->heap = h;
		l->capheap = cap;
	}
	t->when_ms = t->due_ms = when;
	l->heap[l->nheap] = t;
	t->idx = ++l->nheap;
	heap_up(l, l->nheap - 1);
}

static int
next_timeout(struct loop *l)
{
	uint64_t d;

	if (l->nheap == 0)
		return -1;
	if (l->heap[0]->when_ms <= l->now_ms)
		return 0;
	d = l->heap[0]->when_ms - l->now_ms;
	return d > 60000 ? 60000 : (int)d;
}

static void
run_timers(struct loop *l)
{
	/* Bounded: a timer re-armed for "now" waits for the next turn. */
	unsigned n = l->nheap, moves = l->nheap;

	while (l->nheap > 0 && l->heap[0]->when_ms <= l->now_ms) {
		struct loop_timer *t = l->heap[0];

		if (t->due_ms > t->when_ms) {
			/* pushed back since it went in: to its place now
			 * (before any later timer fires, so they fire in
			 * deadline order) */
			if (moves-- == 0)
				break;
			t->when_ms = t->due_ms;
			heap_down(l, 0);
			continue;
		}
		if (n-- == 0)
			break;
		loop_timer_cancel(l, t);
		t->cb(l, t);
	}
}

int
loop_run(struct loop *l)
{
	struct epoll_event ev[MAX_EVENTS];
	int n, i;

	while (!l->stop) {
		if (l->before_sleep)
			l->before_sleep(l, l->before_sleep_arg);
		n = epoll_wait(l->epfd, ev, MAX_EVENTS, next_timeout(l));
		l->now_us = loop_clock_us();
		l->now_ms = l->now_us / 1000;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (i = 0; i < n; i++) {
			struct loop_fd *f = ev[i].data.ptr;
			f->cb(l, f, ev[i].events);
		}
		run_timers(l);
	}
	return 0;
}
