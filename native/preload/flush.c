/* SPDX-License-Identifier: MIT
 * flush.c - what every flush trigger runs: lib_flush, lib_flush_epoll,
 * lib_sync_fd (one fd's entries), lib_flush_handover (fork, spawn),
 * lib_flush_drain (exit, exec: bounded), lib_lifecycle_flush (one
 * after_flush step for all), and the seed's explicit segments: esca_init,
 * batch_start, batch_flush.  DESIGN.md, "Flush triggers". */
#include <errno.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

/* What a flush changes for the thread: its clocks and marks, the events
 * owed, the stats file. */
static void after_flush(struct tstate *ts)
{
	if (esca_table_pending(ts->table) == 0)
		ts->oldest_ns = 0;
	if (unlikely(ts->nowed))
		lib_pay_owed(ts);
	if (cfg.stats_path[0])
		stats_maybe_write(0);
}

void lib_flush(struct tstate *ts, unsigned mode, int why)
{
	if (!ts->table)
		return;
	ts->guard++;
	esca_flush(ts->table, mode, why);
	lib_leave(ts);
	after_flush(ts);
}

/* The flush and the program's epoll wait in one go (lever "fold"): the
 * number of events, -1 with errno, or -2 when the executor cannot. */
int lib_flush_epoll(struct tstate *ts, int epfd, struct epoll_event *evs,
		    int max, int timeout, const sigset_t *mask)
{
	int n;

	ts->guard++;
	n = esca_flush_epoll_wait(ts->table, ESCA_WHY_WAIT, epfd, evs, max,
				  timeout, mask);
	lib_leave(ts);
	if (n == -ENOSYS)
		return -2;
	after_flush(ts);
	if (n < 0) {
		errno = -n;
		return -1;
	}
	return n;
}

/* Before a call that depends on fd's pending entries: run them, and those
 * of the open file it shares with other fds (its order key). */
void lib_sync_fd(struct tstate *ts, int fd)
{
	struct fdinfo *fi = fdi(fd);
	int key = fi && fi->order_key ? fi->order_key - 1 : fd;

	if (!ts->table || (!esca_fd_pending(ts->table, fd) &&
			   (key == fd || !esca_fd_pending(ts->table, key))))
		return;
	ts->guard++;
	esca_sync_fd(ts->table, fd);
	if (key != fd)
		esca_sync_fd(ts->table, key);
	lib_leave(ts);
	if (esca_table_pending(ts->table) == 0)
		ts->oldest_ns = 0;
}

/* fork, vfork, system, popen, posix_spawn: everything this thread queued
 * goes to the kernel, and whatever completes without waiting for a peer
 * completes; sends parked on a full socket stay in flight, the parent's
 * (the child abandons its copy of the table: DESIGN.md, "Contract: parked
 * sends").  A peer that never reads holds up nothing. */
void lib_flush_handover(struct tstate *ts, int why)
{
	for (int i = 0; ts->table && i < 8; i++) {
		unsigned before = esca_table_pending(ts->table);

		if (before == 0 || before == esca_table_inflight(ts->table))
			break;
		lib_flush(ts, ESCA_FLUSH_REAP, why);
		if (esca_table_pending(ts->table) == before)
			break;	/* the rest waits behind parked sends */
	}
}

/* Bytes not yet read by the peers of the sockets with entries in flight
 * (SIOCOUTQ): a change means some peer reads. */
static uint64_t parked_outq(struct tstate *ts)
{
	int top = __atomic_load_n(&fd_hiwater, __ATOMIC_RELAXED);
	uint64_t sum = 0;

	for (int fd = 3; fd <= top && fd < fdtab_n; fd++) {
		int q = 0;

		if (esca_fd_inflight(ts->table, fd) &&
		    syscall(SYS_ioctl, fd, SIOCOUTQ, &q) == 0)
			sum += (uint64_t)q * 65537u + (uint64_t)fd;
	}
	return sum;
}

/* The last drain (exit, exec, a SIGPIPE that kills): wait for every entry
 * while some peer makes progress; a drain that saw none for DRAIN_IDLE_NS
 * (no entry completed, no parked socket's queue moved) gives up, and so
 * does every later one at once: Linux's exit does not wait for a peer to
 * read (DESIGN.md, "Contract: parked sends"). */
#define DRAIN_IDLE_NS 1000000000ull
#define DRAIN_TICK_MS 100
static int drain_gave_up;

void lib_flush_drain(struct tstate *ts, int why)
{
	uint64_t since, outq;

	if (!ts->table)
		return;
	lib_flush(ts, ESCA_FLUSH_REAP, why);
	if (__atomic_load_n(&drain_gave_up, __ATOMIC_ACQUIRE))
		return;
	since = now_ns();
	outq = parked_outq(ts);
	while (esca_table_pending(ts->table)) {
		uint64_t o;
		int r;

		if (!esca_table_inflight(ts->table)) {
			/* queued behind nothing parked: they complete */
			lib_flush(ts, ESCA_FLUSH_WAIT, why);
			break;
		}
		ts->guard++;
		r = esca_table_wait(ts->table, DRAIN_TICK_MS);
		lib_leave(ts);
		lib_flush(ts, ESCA_FLUSH_REAP, why);
		o = parked_outq(ts);
		if (r > 0 || o != outq) {
			since = now_ns();
			outq = o;
		} else if (now_ns() - since >= DRAIN_IDLE_NS) {
			__atomic_store_n(&drain_gave_up, 1, __ATOMIC_RELEASE);
			break;
		}
	}
}

/* exec, exit, _exit: nothing may stay behind, in any thread's table
 * (signals.c, lib_end_flush). */
void lib_lifecycle_flush(void)
{
	if (vfork_child(tls_ts))
		return;		/* its parent's state, flushed before vfork */
	lib_end_flush(0);
}

/* ---- explicit segments, the seed's API ---------------------------------- */

EXPORT int esca_init(void)
{
	esca_lib_init();
	if (cfg.disabled)
		return -ENOSYS;
	return ts_get() ? 0 : -ENOMEM;
}

EXPORT int batch_start(void)
{
	struct tstate *ts;

	esca_lib_init();
	if (cfg.disabled)
		return -ENOSYS;
	ts = ts_get();
	if (!ts)
		return -ENOMEM;
	ts->segment = 1;
	ts->nexplicit++;
	return 0;
}

EXPORT int batch_flush(void)
{
	struct tstate *ts = tls_ts;
	unsigned before;

	if (!ts || !ts->table)
		return cfg.disabled ? -ENOSYS : 0;
	before = esca_table_pending(ts->table);
	lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_EXPLICIT);
	ts->segment = 0;
	return (int)(before - esca_table_pending(ts->table));
}
