/* SPDX-License-Identifier: MIT
 * uring_fold.c - esca__uring_flush_epoll(): a reaping flush and the
 * program's epoll wait in one io_uring_enter (ESCA_CFG_FOLD_WAIT, a lever;
 * esca_flush_epoll_wait() in esca.h).
 */
#include <errno.h>
#include <time.h>

#include "uring.h"

/* Is a CLOSE among the queued entries?  A close takes its fd out of every
 * epoll set; a wait that ran before it would report events for an fd the
 * program closed (and whose data.ptr it freed). */
static int close_queued(struct esca_table *t)
{
	for (uint32_t i = t->head; i != t->tail; i++) {
		const struct esca_entry *e = esca__ent(t, i);

		if (e->state == ESCA_S_QUEUED && e->op == ESCA_OP_CLOSE)
			return 1;
	}
	return 0;
}

/* After the first round was prepared: is an entry left for a later round
 * (held behind its fd's sends, as a shutdown or an fsync that runs as the
 * plain syscall, or past what the SQ holds)?  The wait would run before it
 * (the sockets' audit: a write and a shutdown of one end of a socketpair,
 * the wait on the other end reported EPOLLIN without EPOLLRDHUP; 257
 * writes to 257 socketpairs, 256 reported).  Not a sendfile run as the
 * syscall behind its fd's sends (lever sendfile): its bytes reach a peer
 * in another process (a client), which no wait of this one sees; keeping
 * the fold there keeps nginx's batches at one entry (README, Limits). */
static int held_back(struct esca_table *t)
{
	for (uint32_t i = t->head; i != t->tail; i++) {
		const struct esca_entry *e = esca__ent(t, i);

		if (e->state == ESCA_S_QUEUED && e->op != ESCA_OP_SENDFILE)
			return 1;
	}
	return 0;
}

/* ESCA_CFG_FOLD_WAIT: flush and wait on the program's epoll set in the same
 * io_uring_enter.  The IORING_OP_EPOLL_WAIT goes in with the first round:
 * where events are ready it completes inline, and the flush and the wait
 * cost one entry; else the flush finishes (direct sendfiles, later rounds)
 * and the ring waits for it (parked sends move meanwhile), with the
 * program's timeout and signal mask.  A timeout or a signal cancels it.
 *
 * The wait must see what plain Linux shows after every entry of the batch
 * ran.  An SQE's place in the ring does not give that (a CLOSE linked
 * behind its fd's sends runs as task work, after an inline wait), and
 * IOSQE_IO_DRAIN would hold the wait behind every send parked on a slow
 * client.  So when the batch holds a CLOSE the wait goes in only after the
 * flush's round was reaped (one more entry: as many as flush + epoll_wait);
 * a batch without one, the common keep-alive case, keeps the one-entry
 * fold (its writes change no epoll set's membership).
 * Returns the number of events, -errno, or -ENOSYS (not here, or parked
 * sends moved before any event came: the caller flushes and waits itself). */
int esca__uring_flush_epoll(struct esca_table *t, int epfd, void *evs,
			     int max, int timeout_ms, const void *sigmask)
{
	struct uring_state *u = t->priv;
	struct io_uring *ring = &u->ring;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct timespec now;
	int64_t deadline = 0;
	int intr = 0, moved = 0, late, r;

	if (!u->have_epwait || u->ep_busy || max <= 0 || t->plain)
		return -ENOSYS;	/* plain: the caller flushes, then waits */
	if (timeout_ms > 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		deadline = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec +
			   (int64_t)timeout_ms * 1000000;
	}
	late = close_queued(t);
	if (!late && !esca__uring_one_now(t, u)) {
		/* the batch's first round goes in the SQ before the wait, so
		 * that the ring issues the wait after it; a batch that does
		 * not go in whole is flushed first, as one with a close */
		esca__uring_round(t, u);
		late = held_back(t);
	}
	while (late) {
		/* the batch first, reaped: its closes are done; again while
		 * that completed entries and some are still held (a round
		 * prepared above submits nothing new in the flush's first,
		 * which its reaping takes for no progress) */
		unsigned live = t->live;

		r = esca__uring_flush(t, ESCA_FLUSH_REAP);
		if (r < 0)
			return r;	/* the ring failed: entries run plainly */
		if (!t->live || t->live >= live || !held_back(t))
			break;
	}
	sqe = io_uring_get_sqe(ring);
	if (!sqe)
		return -ENOSYS;	/* the caller flushes (again) and waits */
	io_uring_prep_rw(IORING_OP_EPOLL_WAIT, sqe, epfd, evs, (unsigned)max, 0);
	io_uring_sqe_set_data64(sqe, EPOLL_TAG);
	u->outstanding++;
	u->ep_busy = 1;
	u->ep_done = 0;
	if (!late) {
		/* the flush, the wait's SQE going in with its first round */
		r = esca__uring_flush(t, ESCA_FLUSH_REAP);
		if (r < 0) {
			u->ep_busy = 0;
			return r;	/* the ring failed: entries run plainly */
		}
	}
	/* the wait */
	while (!u->ep_done && timeout_ms != 0) {
		struct __kernel_timespec ts, *tsp = NULL;

		if (timeout_ms > 0) {
			int64_t left;

			clock_gettime(CLOCK_MONOTONIC, &now);
			left = deadline - ((int64_t)now.tv_sec * 1000000000 +
					   now.tv_nsec);
			if (left <= 0)
				break;
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			tsp = &ts;
		}
		t->st.kernel_entries++;
		r = io_uring_submit_and_wait_timeout(ring, &cqe, 1, tsp,
						     (sigset_t *)sigmask);
		esca__uring_reap(t, u);
		if (r == -EINTR) {
			intr = 1;
			break;
		}
		if (r == -ETIME)
			continue;	/* the loop looks at the clock */
		if (r < 0 && r != -EAGAIN && r != -EBUSY)
			break;
		esca__uring_round(t, u);	/* parked sends requeued: on */
		if (!u->ep_done && r >= 0) {
			/* parked sends moved, no event yet: the caller waits
			 * on, unfolded (between two entries here a signal of
			 * the program's would run its handler unseen, and the
			 * wait go on where Linux's returns EINTR) */
			moved = 1;
			break;
		}
	}
	if (!u->ep_done) {
		sqe = io_uring_get_sqe(ring);
		if (!sqe) {
			t->st.kernel_entries++;
			io_uring_submit(ring);
			sqe = io_uring_get_sqe(ring);
		}
		if (sqe) {
			io_uring_prep_cancel64(sqe, EPOLL_TAG, 0);
			io_uring_sqe_set_data64(sqe, CANCEL_TAG);
			u->outstanding++;
		}
		while (!u->ep_done) {
			t->st.kernel_entries++;
			r = io_uring_submit_and_wait(ring, 1);
			if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
				break;
			esca__uring_reap(t, u);
		}
	}
	u->ep_busy = 0;
	if (!u->ep_done)
		return -EIO;	/* the ring failed: cannot happen */
	if (u->ep_res == -ECANCELED || u->ep_res == -EINTR)
		return intr ? -EINTR : moved ? -ENOSYS : 0;
	/* woken, then found nothing to report (the kernel's io_epoll_wait
	 * says -EAGAIN where it cannot wait again): a ready fd's readiness
	 * went before the ring collected it, as the progress fd's does (an
	 * epoll set whose parked fd took bytes again, or whose events its
	 * owner took: uring_setup.c, pep_arm).  Linux's epoll_wait never
	 * says EAGAIN (the program died of it, tests/preload/test_waits.py
	 * test_threads_sharing_one_epoll_set): the caller waits on itself. */
	if (u->ep_res == -EAGAIN)
		return intr ? -EINTR : -ENOSYS;
	return u->ep_res;
}

