/* SPDX-License-Identifier: MIT
 * sequential.c - the reference executor: every entry, in table order, as
 * the plain system call.  The fallback where io_uring is refused (seccomp
 * in containers, kernel.io_uring_disabled): one kernel entry (or more) per
 * op, it saves none; what it keeps is sending at the end of the program's
 * loop iteration.
 *
 * A waiting flush (ESCA_FLUSH_WAIT) completes every entry, short writes
 * completed (esca__run_queued_nosignal: it waits for room as the plain
 * call).  A socket's sends carry MSG_NOSIGNAL, as io_uring's do: a parked
 * send may meet its broken socket at any later flush (at exit, too: a
 * program killed by a SIGPIPE that its own calls never met); the call
 * that surfaces the EPIPE raises it (ESCA_CAP_NO_SIGPIPE).
 * A reaping flush never waits for room (DESIGN.md, "Contract: parked
 * sends"): each entry whose turn it is (order.h) runs at once without
 * waiting (esca__run_nowait); one that a full socket stopped is parked
 * (park.c): in flight, its fd in the progress fd, what follows it on that
 * file held; the next reaping flush takes the entries of the fds with room
 * back.  Before, its flush sent a slow client's bytes to the end: one
 * client that stopped reading stopped the server's loop for every other
 * (tests/reliability/test_stall.py, nginx).  ESCA_FLUSH_TRY (a signal
 * handler's) is a reaping flush that also leaves alone what could block
 * without MSG_DONTWAIT (esca__run_nowait's try).
 */
#include <errno.h>

#include "internal.h"
#include "order.h"

static int seq_init(struct esca_table *t)
{
	/* mmap, not malloc: maybe a signal handler's first call */
	struct esca_parking *p = esca__zalloc(sizeof(*p));

	if (!p)
		return -ENOMEM;
	if (esca__parking_init(t, p) < 0) {
		esca__zfree(p, sizeof(*p));
		return -ENOMEM;
	}
	t->priv = p;
	t->caps |= ESCA_CAP_RECV | ESCA_CAP_OWN_PROGRESS | ESCA_CAP_PARKS |
		   ESCA_CAP_NO_SIGPIPE | ESCA__CAP_TRY;
	return 0;
}

static void seq_fini(struct esca_table *t)
{
	struct esca_parking *p = t->priv;

	if (!p)
		return;
	esca__parking_release(p);
	esca__zfree(p, sizeof(*p));
	t->priv = NULL;
}

/* One pass in table order: each entry whose turn it is runs; one that a
 * full fd stopped parks and holds its key (and a sendfile's file). */
static void seq_reap(struct esca_table *t, struct esca_parking *p, int try)
{
	struct esca_round round;
	struct esca_turn turn;

	esca__round_start(t, &round, ESCA_ROUND_SERIAL);
	while (esca__round_next(t, &round, &turn)) {
		struct esca_entry *e = turn.e;
		int r;

		if (turn.held) {
			esca__round_hold(&turn);
			continue;
		}
		r = esca__run_nowait(t, e, try);
		if (r == ESCA__RAN)
			continue;
		if (r == ESCA__FULL)
			esca__park(t, p, e);	/* an fd it cannot watch
						 * parks unwatched */
		esca__round_hold(&turn);	/* parked, or left queued */
	}
}

static int seq_flush(struct esca_table *t, unsigned mode)
{
	struct esca_parking *p = t->priv;

	if (mode == ESCA_FLUSH_WAIT) {
		esca__unpark_all(t, p);
		esca__run_queued_nosignal(t);	/* in order, to completion */
		return 0;
	}
	if (p->nparked)
		esca__park_harvest(t, p);
	seq_reap(t, p, mode == ESCA_FLUSH_TRY);
	return 0;
}

static int seq_progress_fd(struct esca_table *t)
{
	struct esca_parking *p = t->priv;

	return p ? esca__parking_progress_fd(t, p) : -EBADF;
}

/* handover.c: every parked entry back to the queue, e->done exact (no
 * byte of a parked entry is anywhere but in the table) */
static int seq_cancel(struct esca_table *t)
{
	esca__unpark_all(t, t->priv);
	return 0;
}

static int seq_owns_fd(struct esca_table *t, int fd)
{
	struct esca_parking *p = t->priv;

	return p && fd >= 0 && fd == p->epfd;
}

const struct esca_executor esca__sequential = {
	.name = "sequential",
	.init = seq_init,
	.fini = seq_fini,
	/* after fork, in the child: its copy of the progress fd goes */
	.abandon = seq_fini,
	.flush = seq_flush,
	/* no progress_arm: the epoll fd is readable whenever a parked fd has
	 * room, and the reaping flush that follows collects it */
	.progress_fd = seq_progress_fd,
	.owns_fd = seq_owns_fd,
	.cancel = seq_cancel,
};
