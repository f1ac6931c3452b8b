/* SPDX-License-Identifier: MIT
 * flush.c - the table's side of a flush: esca_flush(),
 * esca_flush_epoll_wait(), esca_sync_fd(), esca_table_wait(), the progress fd; and entries run
 * as plain syscalls (esca__run_direct, esca__run_queued_direct) by the
 * executors that cannot take them (DESIGN.md, "Contract: fallback"), or
 * without waiting for room (esca__run_nowait: sequential).
 */
#include <errno.h>
#include <sys/socket.h>

#include "internal.h"
#include "sys.h"

static void args_of(const struct esca_entry *e, struct esca_args *a)
{
	a->op = e->op;
	a->fd = e->fd;
	a->fd2 = e->fd2;
	a->flags = e->flags;
	a->optname = e->optname;
	a->iovcnt = e->iovcnt;
	a->iov = e->iov;
	a->offset = e->offset;
	a->count = e->len;
}

/* e ran as plain syscalls from where it stopped and esca__direct said r
 * (counted from e->dropped): its result, the bytes done before an error
 * when some were. */
static void direct_complete(struct esca_table *t, struct esca_entry *e,
			    int64_t r)
{
	if (r >= 0)
		r += (int64_t)e->dropped;
	else if (e->done)
		r = (int64_t)e->done;
	t->st.entries_executed++;
	esca__complete(t, e, r);
}

/* Run e now as plain syscalls, from where it stopped (e->done bytes, of
 * which e->dropped were cut off the front of a borrowed iovec array). */
void esca__run_direct(struct esca_table *t, struct esca_entry *e, int fallback)
{
	struct esca_args a;
	uint64_t n = 0;
	int64_t r;

	if (esca__skip_broken(t, e))
		return;
	args_of(e, &a);
	r = esca__direct(&a, e->done - e->dropped, &n);
	t->st.kernel_entries += n;
	if (fallback)
		t->st.fallbacks++;
	direct_complete(t, e, r);
}

/* Every queued entry, in table order, as plain syscalls. */
void esca__run_queued_direct(struct esca_table *t, int fallback)
{
	for (uint32_t i = t->head; i != t->tail; i++) {
		struct esca_entry *e = esca__ent(t, i);

		if (e->state == ESCA_S_QUEUED)
			esca__run_direct(t, e, fallback);
	}
}

/* A sendfile from where it stopped, without waiting for room: ESCA__RAN
 * (complete: the count, end of file, or an error) or ESCA__FULL. */
static int sendfile_nowait(struct esca_table *t, struct esca_entry *e)
{
	for (;;) {
		int64_t r = esca__sendfile_once(e->fd, e->fd2, e->offset < 0 ?
						-1 : e->offset + (int64_t)e->done,
						e->len - e->done);

		t->st.kernel_entries++;
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN)
			return ESCA__FULL;
		if (r < 0 || r == 0) {	/* an error, or the end of the file */
			t->st.entries_executed++;
			esca__complete(t, e, e->done ? (int64_t)e->done : r);
			return ESCA__RAN;
		}
		e->done += (size_t)r;
		if (e->done >= e->len) {
			t->st.entries_executed++;
			esca__complete(t, e, (int64_t)e->done);
			return ESCA__RAN;
		}
	}
}

/* e's arguments; a data op to a socket (or an fd not known to be none) as
 * a send with flags added (ESCA_OP_SENDMSG: direct.c makes it a sendto of
 * one iovec, a sendmsg of more): 1, else 0 (a pipe's or a device's). */
static int socket_args(const struct esca_table *t, const struct esca_entry *e,
		       struct esca_args *a, int flags)
{
	args_of(e, a);
	if (t->fds[e->fd].type == ESCA_FT_OTHER)
		return 0;
	a->op = ESCA_OP_SENDMSG;
	a->flags |= flags;
	return 1;
}

/* A send of a write said ENOTSOCK: the fd's kind, once (an fstat). */
static int not_a_socket(struct esca_table *t, const struct esca_entry *e,
			int64_t r)
{
	if (r != -ENOTSOCK ||
	    (e->op != ESCA_OP_WRITE && e->op != ESCA_OP_WRITEV))
		return 0;
	esca__fd_not_socket(t, e->fd);
	return 1;
}

int esca__run_nowait(struct esca_table *t, struct esca_entry *e, int try)
{
	struct esca_args a;
	uint64_t n = 0;
	int64_t r;

	if (!esca__sends(e->op) || e->len == 0 || esca__file_write(t, e)) {
		esca__run_direct(t, e, 0);	/* no room to wait for */
		return ESCA__RAN;
	}
	if (esca__skip_broken(t, e))
		return ESCA__RAN;
	if (e->op == ESCA_OP_SENDFILE) {
		/* no flag makes it return at once on a blocking socket */
		if (try && !e->nonblock)
			return ESCA__HOLD;
		return sendfile_nowait(t, e);
	}
	/* a socket's: SIGPIPE is the caller's to raise, when a call surfaces
	 * the EPIPE (ESCA_CAP_NO_SIGPIPE) */
	if (!socket_args(t, e, &a, MSG_DONTWAIT | MSG_NOSIGNAL) && try)
		return ESCA__HOLD;	/* a blocking pipe's write blocks */
	for (;;) {
		r = esca__data_once(&a, e->done - e->dropped, &n);
		t->st.kernel_entries += n;
		n = 0;
		if (a.op == ESCA_OP_SENDMSG && not_a_socket(t, e, r))
			return esca__run_nowait(t, e, try);	/* once: known */
		if (r == -EAGAIN)
			return ESCA__FULL;
		if (r <= 0)	/* an error (the count, after progress) */
			break;
		e->done += (size_t)r;
		if (e->done >= e->len)
			break;
	}
	t->st.entries_executed++;
	esca__complete(t, e, r < 0 && !e->done ? r : (int64_t)e->done);
	return ESCA__RAN;
}

void esca__run_queued_nosignal(struct esca_table *t)
{
	for (uint32_t i = t->head; i != t->tail; i++) {
		struct esca_entry *e = esca__ent(t, i);
		struct esca_args a;
		uint64_t n = 0;
		int64_t r;

		if (e->state != ESCA_S_QUEUED)
			continue;
		if (!esca__is_data(e->op) || e->len == 0 ||
		    esca__file_write(t, e) ||
		    !socket_args(t, e, &a, MSG_NOSIGNAL)) {
			esca__run_direct(t, e, 0);
			continue;
		}
		if (esca__skip_broken(t, e))
			continue;
		r = esca__direct(&a, e->done - e->dropped, &n);
		t->st.kernel_entries += n;
		if (not_a_socket(t, e, r)) {
			esca__run_direct(t, e, 0);	/* as what it is */
			continue;
		}
		direct_complete(t, e, r);
	}
}

static int hist_bucket(unsigned n)
{
	int b = 0;

	while (n > 1 && b < ESCA_HIST_BUCKETS - 1) {
		n >>= 1;
		b++;
	}
	return b;
}

/* A flush that only collects entries already in flight is no batch. */
static void count_flush(struct esca_table *t, unsigned queued, int why)
{
	if (!queued)
		return;
	t->st.flushes++;
	if (why >= 0 && why < ESCA_WHY__COUNT)
		t->st.flush_why[why]++;
	t->st.batch_hist[hist_bucket(queued)]++;
}

int esca_flush(struct esca_table *t, unsigned mode, int why)
{
	unsigned before = t->live, queued = t->live - t->inflight;
	int r;

	if (t->live == 0) {
		esca__retire(t);
		return 0;
	}
	count_flush(t, queued, why);
	if (mode == ESCA_FLUSH_TRY && (t->caps & ESCA_CAP_PARKS) &&
	    !(t->caps & ESCA__CAP_TRY))
		mode = ESCA_FLUSH_REAP;	/* a reaping flush never blocks */
	r = t->ex->flush(t, mode);
	esca__retire(t);
	if (r < 0)
		return r;
	return (int)(before - t->live);
}

int esca_flush_epoll_wait(struct esca_table *t, int why, int epfd,
			  struct epoll_event *evs, int max, int timeout_ms,
			  const void *sigmask)
{
	int r;

	if (!t->ex->flush_epoll || t->live == 0)
		return -ENOSYS;
	count_flush(t, t->live - t->inflight, why);
	r = t->ex->flush_epoll(t, epfd, evs, max, timeout_ms, sigmask);
	if (r != -ENOSYS)
		t->st.waits_folded++;
	esca__retire(t);
	return r;
}

/* Wait for fd's entries only (DESIGN.md, "Flush triggers"): a reaping
 * flush sends everything; while an entry of fd is still in flight, block
 * until some entry completes and reap again.  Sends of other fds parked on
 * a peer that does not read are never waited for. */
int esca_sync_fd(struct esca_table *t, int fd)
{
	int r = 0;

	while (esca_fd_pending(t, fd)) {
		unsigned live = t->live;

		r = esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
		if (r < 0 || !esca_fd_pending(t, fd))
			break;
		if (esca_fd_inflight(t, fd)) {
			r = esca_table_wait(t, -1);
			if (r < 0 && r != -EINTR)
				break;
		} else if (t->live == live) {
			/* queued, nothing of fd's in flight, no progress:
			 * cannot happen; the old way, all of it */
			r = esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_SYNC);
			if (r < 0)
				break;
		}
		r = 0;
	}
	return r < 0 ? r : 0;
}

int esca_table_wait(struct esca_table *t, int timeout_ms)
{
	int r, pfd;

	if (!t->inflight)
		return 1;
	if (t->ex->wait) {
		r = t->ex->wait(t, timeout_ms);
		esca__retire(t);
		return r;
	}
	pfd = esca_table_progress_fd(t);	/* lkm: readable when a parked
						 * fd has room */
	if (pfd >= 0) {
		t->st.kernel_entries++;
		return (int)esca_sys_wait_readable(pfd, timeout_ms);
	}
	/* no progress fd (the program holds every number: EMFILE; the
	 * entries are parked unwatched, park.c): the time given passes, at
	 * most 1 ms with no bound, and the caller's reaping flush tries them
	 * again.  A waiting flush here waited for every entry, a peer that
	 * does not read's too (tests/trust/test_found_no_fd_left.py).  A
	 * pollfd of -1 is ignored: ppoll sleeps. */
	t->st.kernel_entries++;
	r = (int)esca_sys_wait_readable(-1, timeout_ms < 0 ? 1 : timeout_ms);
	return r < 0 ? r : timeout_ms < 0 ? 1 : 0;
}

int esca_table_progress_fd(struct esca_table *t)
{
	if (!t->ex->progress_fd)
		return -EOPNOTSUPP;
	return t->ex->progress_fd(t);
}

void esca_table_progress_arm(struct esca_table *t, int on)
{
	if (t->ex->progress_arm)
		t->ex->progress_arm(t, on);
}

unsigned esca_table_inflight(const struct esca_table *t)
{
	return t->inflight;
}

int esca_table_owns_fd(const struct esca_table *t, int fd)
{
	if (!t->ex->owns_fd)
		return 0;
	return t->ex->owns_fd((struct esca_table *)t, fd);
}
