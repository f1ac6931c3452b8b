/* SPDX-License-Identifier: MIT
 * adapt.c - lever "adapt": adapt_window_end() decides, once a window of
 * event-loop waits (epoll, poll, select), whether this thread defers (its
 * flushes through the ring, or with lever "plain" as plain system calls)
 * or steps aside; adapt_totals() and adapt_after_fork() for the stats.  DESIGN.md, "Stepping aside". */
#include <errno.h>
#include <time.h>

#include "preload.h"

/* A window with fewer events measures nothing (an idle thread's). */
#define MIN_EVENTS 64
/* Windows of the kept mode between two probes of the other: 2 for the
 * three first probes, PROBE_MIN after a probe changed the choice, doubled
 * each time one confirms it, up to PROBE_MAX; four times that when the
 * modes differ by more than 1/BIG (12.5%): a probe of the losing mode
 * costs its loss for half a window, and a large loss is not likely to turn
 * into a gain soon. */
#define PROBE_MIN 8
#define PROBE_MAX 128
#define BIG 8
/* The other mode is taken when cheaper by more than 1/MARGIN (3%): noise
 * between windows does not make the thread switch back and forth. */
#define MARGIN 32
/* Timer shots in a row that found calls of the thread's queued, no trigger
 * of its own between them: it has no loop that reaches a wait, and each of
 * those calls waited the whole bound (adapt_shot). */
#define SHOTS 2

static struct adapt_totals totals;	/* the process's, atomic adds */

/* Can ts run mode m?  Plain needs the lever and an executor that flushes
 * plainly (ESCA_CAP_PLAIN_FLUSH: uring; under sequential every flush is
 * plain already). */
static int mode_ok(const struct tstate *ts, int m)
{
	return m != ADAPT_PLAIN || ((cfg.levers & LEVER_PLAIN) &&
		(esca_table_caps(ts->table) & ESCA_CAP_PLAIN_FLUSH));
}

/* The mode the next probe tries: the same again for a second probe in a
 * row, else the other modes in turn. */
static int probe_mode(const struct tstate *ts, struct adapt *a)
{
	if (a->votes)
		return a->pmode;
	for (int k = 0; k < ADAPT__N; k++) {
		int m = (a->kept + 1 + (a->nprobes + k) % (ADAPT__N - 1)) % ADAPT__N;

		if (m != a->kept && mode_ok(ts, m)) {
			a->nprobes++;
			return m;
		}
	}
	return a->kept == ADAPT_ASIDE ? ADAPT_RING : ADAPT_ASIDE;
}

/* The process's CPU time, not the thread's: io_uring's io-wq workers and
 * task work run part of a deferred call's work outside the thread's own
 * clock, and a server's CPU per request is what deferral is to lower.  In a
 * process with several event-loop threads the others' work is noise in each
 * one's measure (their choices are their own), not a bias. */
static uint64_t cpu_ns(void)
{
	struct timespec t;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t) < 0)
		return 0;
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* The measured window ended with cost sample (CPU ns per 256 events):
 * which mode runs the next one.  The kept mode runs; every a->left windows
 * one window of the other (a probe) runs, and is compared with the mean of
 * the kept mode's windows just before and just after it (a slow drift of
 * the machine's load cancels out).  The other mode wins a probe when
 * cheaper by more than 1/MARGIN; it is taken when it wins by more than
 * 1/BIG (a clear loss of the kept mode: nginx with its access log costs
 * ~30-50% more CPU a request deferring), else only after it wins two probes
 * in a row (the second right after the first).  The rule is the same both
 * ways: where the two modes are within the noise of a window (lighttpd
 * here: deferring saves ~3%), a single noisy probe does not move the thread,
 * and it keeps what it had - deferring, from the start, which also spares
 * the peer wake-ups that CPU time does not show. */
static int decide(const struct tstate *ts, struct adapt *a, uint64_t sample)
{
	uint64_t ref, lo, gap;
	int big;	/* the gap is large: probes may be spaced wider */

	if (a->phase == 0) {
		a->before = sample;
		if (!a->left || --a->left == 0) {
			a->phase = 1;
			a->pmode = (uint8_t)probe_mode(ts, a);
			return a->pmode;
		}
		return a->kept;
	}
	if (a->phase == 1) {
		a->probe = sample;
		a->phase = 2;
		return a->kept;
	}
	ref = (a->before + sample) / 2;
	lo = a->probe < ref ? a->probe : ref;
	gap = a->probe < ref ? ref - a->probe : a->probe - ref;
	big = gap > lo / BIG;
	a->phase = 0;
	a->before = sample;
	if (a->probe < ref - ref / MARGIN) {
		if (big || ++a->votes >= 2) {
			a->kept = a->pmode;
			a->votes = 0;
			a->interval = PROBE_MIN;
			a->agree = 3;	/* past the start */
			count(&totals.switches, 1);
		} else {
			a->left = 1;	/* a second probe, at once */
			return a->kept;
		}
	} else {
		/* confirmed.  The three first probes come every 2 windows:
		 * while the program starts, one probe is often wrong; past
		 * them (or a switch) the interval doubles, or is four times
		 * longer for a large gap */
		a->votes = 0;
		if (a->agree < 255)
			a->agree++;
		a->interval = a->agree < 3 ? 2 : a->interval *
			      (big && a->agree > 3 ? 4 : 2);
		if (a->interval > PROBE_MAX)
			a->interval = PROBE_MAX;
	}
	a->left = a->interval;
	return a->kept;
}

/* The thread's window of cfg.adapt_window event-loop waits is over
 * (adapt_wait, preload.h, after the wait: its flush ran).  CPU time per event the
 * waits returned is the cost of a mode: the work per event is the
 * program's, the same in both; what differs is what the library adds
 * (queueing, the flush, the ring) against what it saves (kernel entries,
 * the peer's wake-ups).  One clock read per window. */
void adapt_window_end(struct tstate *ts)
{
	struct adapt *a = &ts->ad;
	int e = errno, mode = a->mode, next = mode;
	uint64_t now, used;

	/* a switch happens where the table holds nothing but parked entries:
	 * after the wait's flush, nearly always; else at the next wait */
	if (esca_table_pending(ts->table) != esca_table_inflight(ts->table))
		return;
	now = cpu_ns();
	if (!a->started || !now || !a->cpu0) {
		/* the first wait starts the clock; the thread defers, as it
		 * did before it measured anything (a program shorter than a
		 * window is batched as ever), and probes stepping aside after
		 * one window.  A thread without the clock never measures and
		 * keeps deferring. */
		a->started = 1;
		a->interval = PROBE_MIN;
		a->left = 1;
		goto out;
	}
	used = now - a->cpu0;
	count(&totals.windows, 1);
	if (mode == ADAPT_ASIDE) {
		count(&totals.windows_aside, 1);
		count(&totals.cpu_ns_aside, used);
	} else if (mode == ADAPT_PLAIN) {
		count(&totals.windows_plain, 1);
	}
	if (cfg.adapt_force == 1)
		next = ADAPT_ASIDE;
	else if (cfg.adapt_force == 2)
		next = mode == ADAPT_ASIDE ? ADAPT_RING : ADAPT_ASIDE;
	else if (cfg.adapt_force == 3)
		next = mode_ok(ts, ADAPT_PLAIN) ? ADAPT_PLAIN : ADAPT_RING;
	else if (cfg.adapt_force == 4)
		for (next = (mode + 1) % ADAPT__N; !mode_ok(ts, next);
		     next = (next + 1) % ADAPT__N)
			;
	else if (a->events >= MIN_EVENTS)
		next = decide(ts, a, used * 256 / a->events);
out:
	/* a probe runs half a window: it costs the losing mode's loss */
	a->limit = a->phase == 1 && !cfg.adapt_force ?
		   (cfg.adapt_window + 1) / 2 : cfg.adapt_window;
	a->mode = (uint8_t)next;
	ts->aside = next == ADAPT_ASIDE;
	if ((mode == ADAPT_PLAIN) != (next == ADAPT_PLAIN))
		esca_table_set_plain(ts->table, next == ADAPT_PLAIN);
	a->waits = 0;
	a->events = 0;
	a->cpu0 = now;
	errno = e;
}

/* The thread's timer shot found calls of its queued (thread.c, the
 * handler, before its flush): they waited ESCA_FLUSH_US where Linux's ran
 * at once, because the thread reached no trigger meanwhile.  A thread that
 * does that SHOTS times in a row, no trigger of its own between (a worker
 * that writes its reply and then spins or waits on a futex for the next
 * job: Redis's I/O threads, a thread pool's worker), has no loop for a
 * batch to end at: it steps aside (each reply of Redis with --io-threads 2
 * came 2 ms late: tests/servers/test_redis.py), until its next wait shows
 * a loop (adapt_rhythm).  Not with the controller off (ESCA_ADAPT=0 pins
 * deferral) or forced (ESCA_ADAPT_TEST), nor in an explicit segment. */
void adapt_shot(struct tstate *ts)
{
	struct adapt *a = &ts->ad;

	if (!(cfg.levers & LEVER_ADAPT) || cfg.adapt_force || ts->segment)
		return;
	if (a->shots < 255)
		a->shots++;
	if (a->shots >= SHOTS && !ts->aside) {
		ts->aside = 1;
		a->loopless = 1;
		count(&totals.loopless, 1);
	}
}

/* A trigger of the thread's own came (a wait, a flush not the timer's):
 * the shots in a row start over, and a thread aside for them (adapt_shot)
 * takes its controller's mode again at a wait (called from adapt_wait). */
void adapt_rhythm(struct tstate *ts)
{
	ts->ad.shots = 0;
	if (ts->ad.loopless) {
		ts->ad.loopless = 0;
		ts->aside = ts->ad.mode == ADAPT_ASIDE;
	}
}

void adapt_totals(struct adapt_totals *t)
{
	t->windows = __atomic_load_n(&totals.windows, __ATOMIC_RELAXED);
	t->windows_aside = __atomic_load_n(&totals.windows_aside,
					   __ATOMIC_RELAXED);
	t->cpu_ns_aside = __atomic_load_n(&totals.cpu_ns_aside,
					  __ATOMIC_RELAXED);
	t->switches = __atomic_load_n(&totals.switches, __ATOMIC_RELAXED);
	t->windows_plain = __atomic_load_n(&totals.windows_plain,
					   __ATOMIC_RELAXED);
	t->loopless = __atomic_load_n(&totals.loopless, __ATOMIC_RELAXED);
}

/* The child counts its own windows (its threads start over: thread.c). */
void adapt_after_fork(void)
{
	totals = (struct adapt_totals){ 0 };
}
