/*
 * The worker's event loop: the timer heap keeps its order through sets,
 * re-arms and cancels; run_timers fires due timers in deadline order;
 * fd callbacks get their events.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../../worker/loop.c"

#define N 2000

static uint64_t fired[N];
static unsigned nfired;

static void
record(struct loop *l, struct loop_timer *t)
{
	(void)l;
	fired[nfired++] = t->when_ms;
}

static void
check_heap(const struct loop *l)
{
	unsigned i;

	for (i = 0; i < l->nheap; i++) {
		assert_int_equal(l->heap[i]->idx, i + 1);
		if (i > 0)
			assert_true(l->heap[(i - 1) / 2]->when_ms <=
			    l->heap[i]->when_ms);
	}
}

static void
test_random_timers_fire_in_order(void **state)
{
	static struct loop_timer t[N];
	struct loop l;
	unsigned i, armed = 0;

	(void)state;
	srand(7);
	assert_int_equal(loop_init(&l), 0);
	l.now_ms = 1000;
	for (i = 0; i < N; i++) {
		t[i].cb = record;
		loop_timer_set(&l, &t[i], rand() % 5000);
	}
	check_heap(&l);
	/* re-arm a third (earlier and later), cancel a third */
	for (i = 0; i < N; i += 3)
		loop_timer_set(&l, &t[i], rand() % 5000);
	for (i = 1; i < N; i += 3)
		loop_timer_cancel(&l, &t[i]);
	loop_timer_cancel(&l, &t[1]);		/* twice: harmless */
	check_heap(&l);
	for (i = 0; i < N; i++)
		armed += loop_timer_armed(&t[i]);
	assert_int_equal(armed, l.nheap);

	nfired = 0;
	l.now_ms = 1000 + 5000;
	run_timers(&l);
	assert_int_equal(nfired, armed);
	for (i = 1; i < nfired; i++)
		assert_true(fired[i - 1] <= fired[i]);
	assert_int_equal(l.nheap, 0);
	loop_free(&l);
}

static void
test_only_due_timers_fire(void **state)
{
	struct loop_timer a = { .cb = record }, b = { .cb = record };
	struct loop l;

	(void)state;
	assert_int_equal(loop_init(&l), 0);
	l.now_ms = 100;
	loop_timer_set(&l, &a, 10);
	loop_timer_set(&l, &b, 50);
	assert_int_equal(next_timeout(&l), 10);
	nfired = 0;
	l.now_ms = 120;
	run_timers(&l);
	assert_int_equal(nfired, 1);
	assert_int_equal(fired[0], 110);
	assert_false(loop_timer_armed(&a));
	assert_true(loop_timer_armed(&b));
	assert_int_equal(next_timeout(&l), 30);
	loop_timer_cancel(&l, &b);
	assert_int_equal(next_timeout(&l), -1);
	loop_free(&l);
}

/* A timer pushed back costs no heap work when re-armed: it stays at its
 * old place until that comes due, then moves to its deadline, and fires
 * only then, after timers due before it. Pulled forward, it moves at
 * once. */
static void
test_pushed_back_timer_fires_at_its_new_deadline(void **state)
{
	struct loop_timer a = { .cb = record }, b = { .cb = record },
	    c = { .cb = record };
	struct loop l;

	(void)state;
	assert_int_equal(loop_init(&l), 0);
	l.now_ms = 100;
	loop_timer_set(&l, &a, 10);		/* 110 */
	loop_timer_set(&l, &b, 50);		/* 150 */
	loop_timer_set(&l, &a, 100);		/* pushed back: 200 */
	assert_int_equal(l.heap[0], &a);	/* not moved yet */
	check_heap(&l);
	nfired = 0;
	l.now_ms = 160;
	run_timers(&l);
	assert_int_equal(nfired, 1);
	assert_int_equal(fired[0], 150);	/* b, not a */
	assert_true(loop_timer_armed(&a));
	assert_int_equal(next_timeout(&l), 40);
	check_heap(&l);
	/* pushed back twice, then pulled forward before its first place */
	loop_timer_set(&l, &c, 100);		/* 260 */
	loop_timer_set(&l, &c, 140);		/* 300, lazily */
	loop_timer_set(&l, &c, 20);		/* 180: at once */
	assert_int_equal(next_timeout(&l), 20);
	l.now_ms = 300;
	run_timers(&l);
	assert_int_equal(nfired, 3);
	assert_int_equal(fired[1], 180);	/* c, then a */
	assert_int_equal(fired[2], 200);
	assert_int_equal(next_timeout(&l), -1);
	loop_free(&l);
}

static int seen_events;

static void
on_fd(struct loop *l, struct loop_fd *f, uint32_t ev)
{
	char c;

	seen_events |= ev;
	if (read(f->fd, &c, 1) == 1)
		l->stop = true;
}

static void
stop_timer(struct loop *l, struct loop_timer *t)
{
	(void)t;
	l->stop = true;
}

static void
test_fd_event_and_timer_stop_the_loop(void **state)
{
	struct loop l;
	struct loop_fd f;
	struct loop_timer t = { .cb = stop_timer };
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(loop_init(&l), 0);
	f.fd = p[0];
	f.cb = on_fd;
	f.data = NULL;
	assert_int_equal(loop_add(&l, &f, EPOLLIN), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(loop_run(&l), 0);
	assert_true(seen_events & EPOLLIN);

	/* nothing readable: a 20 ms timer ends the loop */
	l.stop = false;
	loop_timer_set(&l, &t, 20);
	assert_int_equal(loop_run(&l), 0);
	assert_false(loop_timer_armed(&t));
	loop_del(&l, &f);
	loop_free(&l);
	close(p[0]);
	close(p[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_timers_fire_in_order),
		cmocka_unit_test(test_only_due_timers_fire),
		cmocka_unit_test(
		    test_pushed_back_timer_fires_at_its_new_deadline),
		cmocka_unit_test(test_fd_event_and_timer_stop_the_loop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
