/* SPDX-License-Identifier: MIT
 * adapt.c - lever "adapt": the process's controller.  adapt_turn() takes a
 * thread's count of event-loop waits (epoll, poll, select, a blocking
 * socket read) and, once the process's waits make a window, decides
 * whether its threads defer (flushes through the ring, or with lever
 * "plain" as plain system calls) or step aside; each thread takes the
 * decision at its next wait.  adapt_shot() and adapt_rhythm() put a thread
 * without a loop aside; adapt_totals() and adapt_after_fork() for the
 * stats.  DESIGN.md, "Stepping aside". */
#include <errno.h>
#include <string.h>
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
/* A thread hands its waits and events to the controller every HAND of
 * them (fewer with a shorter window): a window's count is the process's,
 * and an idle thread keeps back less than HAND. */
#define HAND 64

static struct adapt_totals totals;	/* the process's, atomic adds */

/* decide()'s state, the process's (under ctl.busy) */
struct choice {
	uint32_t left;		/* windows of the kept mode before a probe */
	uint32_t interval;	/* ... the probe interval now */
	uint8_t kept;		/* the mode kept: ADAPT_RING, _ASIDE, _PLAIN */
	uint8_t pmode;		/* the mode probed */
	uint8_t nprobes;	/* probes begun: which mode is next */
	uint8_t phase;		/* 0 kept, 1 probing the other mode, 2 the
				 * kept mode's window after it */
	uint8_t votes;		/* probes in a row the other won */
	uint8_t agree;		/* probes that confirmed the choice (3 after a
				 * switch: past the start) */
	uint8_t started;	/* cpu0 is set */
	uint64_t cpu0;		/* process CPU ns at the window's start */
	uint64_t before;	/* CPU ns per 256 events: the kept mode's last
				 * window before a probe */
	uint64_t probe;		/* ... and the probe's */
};

/* The controller: one for the process, whose threads all run its mode.
 * Its measure is the process's CPU time, which every thread's work moves:
 * with a mode per thread (before session 19) one thread's probe moved a
 * quarter of memcached's four workers' cost, under all four's noise, and
 * they kept deferring half their calls where that cost ~5%
 * (benchmarks/results/amd/session18/NOTE.md).  The thread whose hand-over
 * fills the window ends it (busy: a try, never a wait; the others go on). */
static struct {
	struct choice c;
	uint64_t count;		/* waits + events handed over this window */
	uint64_t events;	/* ... the events alone */
	uint32_t limit;		/* the window's length: 0 before the first */
	uint8_t mode;		/* the window's mode */
	uint8_t busy;		/* a thread is ending the window */
} ctl __attribute__((aligned(64)));

/* windows ended: a new decision (preload.h).  Every wait loads it: a cache
 * line apart from ctl's counts, which the hand-overs add to. */
uint32_t adapt_epoch __attribute__((aligned(64)));

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
static int probe_mode(const struct tstate *ts, struct choice *a)
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
 * clock, and a server's CPU per request is what deferral is to lower.  All
 * the process's threads run the mode measured (ctl). */
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
static int decide(const struct tstate *ts, struct choice *a, uint64_t sample)
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

/* The process's waits and their events filled a window (cfg.adapt_window):
 * measure it and choose the next one's mode; ts (its last hand-over) only
 * says which modes the executor can run.  CPU time per event the waits
 * returned is the cost of a mode: the work per event is the program's, the
 * same in both; what differs is what the library adds (queueing, the
 * flush, the ring) against what it saves (kernel entries, the peer's
 * wake-ups).  One clock read per window. */
static void window_end(const struct tstate *ts)
{
	struct choice *a = &ctl.c;
	int mode = ctl.mode, next = mode;
	uint64_t now = cpu_ns(), used, events;

	__atomic_store_n(&ctl.count, 0, __ATOMIC_RELAXED);
	events = __atomic_exchange_n(&ctl.events, 0, __ATOMIC_RELAXED);
	if (!a->started || !now || !a->cpu0) {
		/* the first wait starts the clock; the process defers, as it
		 * did before it measured anything (a program shorter than a
		 * window is batched as ever), and probes stepping aside after
		 * one window.  Without the clock it never measures and keeps
		 * deferring. */
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
	else if (events >= MIN_EVENTS)
		next = decide(ts, a, used * 256 / events);
out:
	/* a probe runs half a window: it costs the losing mode's loss */
	__atomic_store_n(&ctl.limit, a->phase == 1 && !cfg.adapt_force ?
			 (cfg.adapt_window + 1) / 2 : cfg.adapt_window,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&ctl.mode, (uint8_t)next, __ATOMIC_RELAXED);
	a->cpu0 = now;
	__atomic_add_fetch(&adapt_epoch, 1, __ATOMIC_RELEASE);
}

/* Take the controller's mode.  A switch happens where the thread's table
 * holds nothing but parked entries: after the wait's flush, nearly always;
 * else at the next wait.  A mode the thread's executor cannot run (plain)
 * is deferring through the ring. */
static void take_mode(struct tstate *ts)
{
	struct adapt *a = &ts->ad;
	uint32_t epoch = __atomic_load_n(&adapt_epoch, __ATOMIC_ACQUIRE);
	int m;

	if (a->epoch == epoch ||
	    esca_table_pending(ts->table) != esca_table_inflight(ts->table))
		return;
	m = __atomic_load_n(&ctl.mode, __ATOMIC_RELAXED);
	if (!mode_ok(ts, m))
		m = ADAPT_RING;
	a->epoch = epoch;
	if ((a->mode == ADAPT_PLAIN) != (m == ADAPT_PLAIN))
		esca_table_set_plain(ts->table, m == ADAPT_PLAIN);
	a->mode = (uint8_t)m;
	ts->aside = m == ADAPT_ASIDE || a->loopless;
}

/* From adapt_wait (preload.h), after a wait (its flush ran): the thread
 * hands over its count once it reached its limit, ends the window if that
 * filled it, and takes the controller's latest mode. */
void adapt_turn(struct tstate *ts)
{
	struct adapt *a = &ts->ad;
	uint64_t n = (uint64_t)a->waits + a->events, events = a->events;
	int e = errno;

	if (n >= a->limit) {
		a->waits = 0;
		a->events = 0;
		a->limit = cfg.adapt_window < HAND ? cfg.adapt_window : HAND;
		__atomic_add_fetch(&ctl.events, events, __ATOMIC_RELAXED);
		if (__atomic_add_fetch(&ctl.count, n, __ATOMIC_RELAXED) >=
		    __atomic_load_n(&ctl.limit, __ATOMIC_RELAXED) &&
		    !__atomic_exchange_n(&ctl.busy, 1, __ATOMIC_ACQUIRE)) {
			/* another thread may have ended it between the add
			 * and the flag: a window is ended once */
			if (__atomic_load_n(&ctl.count, __ATOMIC_RELAXED) >=
			    __atomic_load_n(&ctl.limit, __ATOMIC_RELAXED))
				window_end(ts);
			__atomic_store_n(&ctl.busy, 0, __ATOMIC_RELEASE);
		}
	}
	take_mode(ts);
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

/* The child counts its own windows and decides for itself, from the start
 * (its thread starts over: thread.c); another thread of the parent's, busy
 * ending a window at the fork, is not the child's. */
void adapt_after_fork(void)
{
	totals = (struct adapt_totals){ 0 };
	memset(&ctl, 0, sizeof(ctl));
	adapt_epoch = 0;
}
