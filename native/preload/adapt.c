/* SPDX-License-Identifier: MIT
 * adapt.c - lever "adapt": adapt_window_end() decides, once a window of
 * epoll waits, whether this thread defers or steps aside; adapt_totals()
 * and adapt_after_fork() for the stats.  DESIGN.md, "Stepping aside". */
#include <errno.h>
#include <time.h>

#include "preload.h"

/* A window with fewer events measures nothing (an idle thread's). */
#define MIN_EVENTS 64
/* Windows of the kept mode between two probes of the other: from
 * PROBE_MIN, doubled each time a probe confirms the choice, to PROBE_MAX;
 * back to PROBE_MIN when one changes it. */
#define PROBE_MIN 8
#define PROBE_MAX 64
/* The other mode is taken when cheaper by more than 1/MARGIN (3%): noise
 * between windows does not make the thread switch back and forth. */
#define MARGIN 32

static struct adapt_totals totals;	/* the process's, atomic adds */

static uint64_t thread_cpu_ns(void)
{
	struct timespec t;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) < 0)
		return 0;
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* The measured window of mode ended with cost sample (CPU ns per 256
 * events): which mode runs the next one.  Windows alternate between the
 * mode kept and, every a->left windows, one window of the other (a probe);
 * the kept mode's cost is a running mean (3/4 old, 1/4 new), the probe's
 * is its one window, measured right after. */
static int decide(struct adapt *a, int mode, uint64_t sample)
{
	if (a->probing) {
		uint64_t kept = a->cost[a->kept];

		a->cost[mode] = sample;
		a->probing = 0;
		if (mode != a->kept && kept &&
		    sample < kept - kept / MARGIN) {
			a->kept = (uint8_t)mode;
			a->interval = PROBE_MIN;
			count(&totals.switches, 1);
		} else if (a->interval < PROBE_MAX) {
			a->interval *= 2;
		}
		a->left = a->interval;
	} else {
		a->cost[mode] = a->cost[mode] ?
				(3 * a->cost[mode] + sample) / 4 : sample;
		if (mode == a->kept &&
		    (!a->cost[!mode] || !a->left || --a->left == 0))
			a->probing = 1;
	}
	return a->probing ? !a->kept : a->kept;
}

/* The thread's window of cfg.adapt_window epoll waits is over (adapt_wait,
 * preload.h, after the wait: its flush ran).  Thread CPU time per event
 * the waits returned is the cost of a mode: the work per event is the
 * program's, the same in both; what differs is what the library adds
 * (queueing, the flush, the ring) against what it saves (kernel entries,
 * the peer's wake-ups).  One clock read per window. */
void adapt_window_end(struct tstate *ts)
{
	struct adapt *a = &ts->ad;
	int e = errno, mode = ts->aside, next = mode;
	uint64_t now, used;

	/* a switch happens where the table holds nothing but parked entries:
	 * after the wait's flush, nearly always; else at the next wait */
	if (esca_table_pending(ts->table) != esca_table_inflight(ts->table))
		return;
	now = thread_cpu_ns();
	if (!a->started || !now) {
		/* the first window warms up; a thread without the clock never
		 * measures and keeps deferring */
		a->started = now != 0;
		a->interval = PROBE_MIN;
		a->left = PROBE_MIN;
		goto out;
	}
	used = now - a->cpu0;
	count(&totals.windows, 1);
	if (mode) {
		count(&totals.windows_aside, 1);
		count(&totals.cpu_ns_aside, used);
	}
	if (cfg.adapt_force)
		next = cfg.adapt_force == 1 ? 1 : !mode;
	else if (a->events >= MIN_EVENTS)
		next = decide(a, mode, used * 256 / a->events);
out:
	ts->aside = next;
	a->waits = 0;
	a->events = 0;
	a->cpu0 = now;
	errno = e;
}

void adapt_totals(struct adapt_totals *t)
{
	t->windows = __atomic_load_n(&totals.windows, __ATOMIC_RELAXED);
	t->windows_aside = __atomic_load_n(&totals.windows_aside,
					   __ATOMIC_RELAXED);
	t->cpu_ns_aside = __atomic_load_n(&totals.cpu_ns_aside,
					  __ATOMIC_RELAXED);
	t->switches = __atomic_load_n(&totals.switches, __ATOMIC_RELAXED);
}

/* The child counts its own windows (its threads start over: thread.c). */
void adapt_after_fork(void)
{
	totals = (struct adapt_totals){ 0 };
}
