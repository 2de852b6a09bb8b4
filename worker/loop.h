/*
 * loop: one epoll loop per worker, with timers in a binary min-heap and the
 * time cached once per turn (no clock call per request).
 */
#ifndef PORTICO_LOOP_H
#define PORTICO_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;

/* An fd watched by the loop. The callback gets the epoll event bits. */
struct loop_fd {
	int fd;
	void (*cb)(struct loop *l, struct loop_fd *f, uint32_t events);
	void *data;
};

struct loop_timer {
	uint64_t when_ms;		/* CLOCK_MONOTONIC ms: its heap key, at
					 * or before due_ms */
	uint64_t due_ms;		/* when it fires: a later re-arm moves
					 * only this, and the heap catches up
					 * when the key comes due */
	unsigned idx;			/* heap slot + 1; 0 = not armed */
	void (*cb)(struct loop *l, struct loop_timer *t);
	void *data;
};

struct loop {
	int epfd;
	uint64_t now_ms;		/* monotonic, refreshed each turn */
	uint64_t now_us;		/* the same instant in microseconds */
	struct loop_timer **heap;
	unsigned nheap, capheap;
	bool stop;
	/* before_sleep runs after every batch of events (flush deferred work) */
	void (*before_sleep)(struct loop *l, void *arg);
	void *before_sleep_arg;
};

int loop_init(struct loop *l);
void loop_free(struct loop *l);
/* loop_add: watch f->fd for EVENTS (EPOLLIN, EPOLLOUT, EPOLLET, ...). */
int loop_add(struct loop *l, struct loop_fd *f, uint32_t events);
void loop_del(struct loop *l, struct loop_fd *f);
/* loop_timer_set: (re)arm T to fire AFTER_MS from the cached now. */
void loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t after_ms);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t)
{
	return t->idx != 0;
}
/* loop_run: until l->stop. Returns 0, or -1 if epoll_wait failed. */
int loop_run(struct loop *l);
uint64_t loop_clock_us(void);

#endif
