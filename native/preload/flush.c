/* SPDX-License-Identifier: MIT
 * flush.c - what every flush trigger runs: lib_flush, lib_flush_epoll,
 * lib_sync_fd, lib_lifecycle_flush (one after_flush step for all), and the
 * seed's explicit segments: esca_init, batch_start, batch_flush. */
#include <errno.h>

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
