/* SPDX-License-Identifier: MIT
 * defer.h - the path every deferring interposer shares (defer.c, send.c,
 * cork.c): defer_begin, call_selected, pass_through, defer_refused,
 * defer_queue.  Inline where it is the fast path: no lock, no allocation. */
#ifndef ESCA_PRELOAD_DEFER_H
#define ESCA_PRELOAD_DEFER_H

#include <errno.h>

#include "preload.h"

/* An interposer's "not deferred: make the real call" (never a result). */
#define PASSED (-2)

/* defer.c */
HIDDEN int64_t defer_queue(struct tstate *ts, struct call_stats *s,
			   const struct esca_args *a, uint64_t asked);
HIDDEN int parked_eagain(struct tstate *ts, struct fdinfo *fi, int fd,
			 int flags);
HIDDEN int behind_parked(struct tstate *ts, struct fdinfo *fi, int fd,
			 int flags);
HIDDEN void surfaced_sigpipe(struct tstate *ts, int fd, int err, int flags);

/* cork.c */
HIDDEN void cork_make_real(struct tstate *ts, struct fdinfo *fi, int fd);
HIDDEN void cork_queued(struct tstate *ts, struct fdinfo *fi, int fd);

static inline int take_err(struct fdinfo *fi)
{
	return __atomic_exchange_n(&fi->err, 0, __ATOMIC_RELAXED);
}

/* fds 0, 1, 2, a FILE's fd (fdopen) and every fd sharing their open file
 * (a dup: its order key names the first fd of it) are never deferred to:
 * stdio writes them inside glibc, where no interposer sees it, and a
 * deferred write would come out after bytes written later (DESIGN.md,
 * "Deferral scope").  Two compares and a byte on the fast path. */
static inline int fd_never_deferred(int fd, const struct fdinfo *fi)
{
	int root = fi->order_key ? fi->order_key - 1 : fd;

	if (fd <= 2 || root <= 2 || fi->stdio)
		return 1;
	return root != fd && fdtab[root].stdio;	/* order keys < fdtab_n */
}

static inline int deferrable_kind(struct fdinfo *fi, int fd)
{
	if (fi->kind == FK_UNKNOWN)
		fd_detect(fd, fi);
	return fi->kind;
}

/* Lever "compose": a socket corked by the program while its cork lives
 * only in our queued MSG_MORE flags gets the real cork before a call of its
 * goes to the kernel, so the kernel holds the bytes as the program asked. */
static inline void cork_for_real(struct tstate *ts, int fd)
{
	struct fdinfo *fi = fdi(fd);

	if (likely(!fi || !(fi->flags & FI_CORK_VIRT)))
		return;
	cork_make_real(ts, fi, fd);
}

/* Pass through on fd: after its pending entries (DESIGN.md, "Contract:
 * order"). */
static inline ssize_t pass_through(struct tstate *ts, int call, int fd,
				   int reason)
{
	ts->calls[call].passed[reason]++;
	lib_sync_fd(ts, fd);
	cork_for_real(ts, fd);
	return PASSED;
}

/* The common start of a deferrable call on fd: NULL means pass through
 * with no table involved; *err set means "return -1 with that errno"
 * (DESIGN.md, "Contract: errors"). */
static inline struct fdinfo *defer_begin(struct tstate *ts, int call, int fd,
					 int *err)
{
	struct call_stats *s = &ts->calls[call];
	struct fdinfo *fi;

	*err = 0;
	if (unlikely(ts->guard))
		return NULL;	/* the library's own call, or a signal handler's
				 * inside it (send.c stashes its data calls) */
	if (unlikely(vfork_child(ts)))
		return NULL;	/* the parent's table is not the child's */
	if (unlikely(lib_exiting)) {
		/* exit handlers, other threads at the end: their calls go
		 * straight in, after what their thread queued before */
		if (ts->table && esca_table_pending(ts->table))
			lib_flush_drain(ts, ESCA_WHY_LIFECYCLE);
		return NULL;
	}
	s->seen++;
	fi = fdi(fd);
	if (unlikely(!fi)) {
		s->passed[PASS_FD]++;
		return NULL;
	}
	if (unlikely(fd_closed(ts, fi)) && call != CALL_CLOSE) {
		/* a number the program closed, its close pending: free to
		 * the program (the fd audit: a write there hung behind the
		 * close's parked send, or said EAGAIN) */
		*err = EBADF;
		return NULL;
	}
	if (unlikely(tls_timer_blocked)) {
		/* the thread blocks the timer signal (a daemon's threads
		 * with every signal blocked, a sigwait thread doing the
		 * rest): its entries would wait for good in a condvar wait
		 * (the threads' audit: a reply never sent, bytes lost at
		 * exit, another thread's bytes first after 2 s) */
		pass_through(ts, call, fd, PASS_MASKED);
		return NULL;
	}
	if (unlikely(fd == 2) && call != CALL_CLOSE) {
		/* stderr never waits: what a program says before it dies
		 * must be out when it dies (DESIGN.md, "Flush triggers") */
		pass_through(ts, call, fd, PASS_FD);
		return NULL;
	}
	if (unlikely(fi->err) && call != CALL_CLOSE) {
		*err = take_err(fi);
		if (*err) {
			/* the fd is broken (EPIPE, ECONNRESET, ...): from now
			 * on its calls go to the kernel, which says so itself */
			fi->flags |= FI_FAILED;
			s->surfaced++;
			return NULL;
		}
	}
	if (unlikely(fi->flags & FI_FAILED) && call != CALL_CLOSE) {
		pass_through(ts, call, fd, PASS_FD);
		return NULL;
	}
	if (unlikely(fd_never_deferred(fd, fi)) && call != CALL_CLOSE) {
		pass_through(ts, call, fd, PASS_FD);
		return NULL;
	}
	return fi;
}

/* After defer_begin() said no: -1 with the fd's pending error, or
 * PASSED. */
static inline ssize_t defer_refused(int err)
{
	if (err) {
		errno = err;
		return -1;
	}
	return PASSED;
}

/* Is this call deferred here at all (ESCA_SYSCALLS, ESCA_IMPLICIT or an
 * explicit segment)? */
static inline int call_selected(struct tstate *ts, int call)
{
	return (cfg.selected & (1u << call)) && (cfg.implicit || ts->segment);
}

/* Does a table of another thread than ts still name fd?  Its entries are
 * counted in fi->users with the first one's thread, or marked shared.  One
 * atomic load: a call that finds so waits for them (fd_wait_others) and goes
 * to the kernel, so bytes two threads hand a socket over with keep their
 * order (DESIGN.md, "Contract: order"). */
static inline int others_use(struct tstate *ts, struct fdinfo *fi)
{
	uint64_t w = __atomic_load_n(&fi->users, __ATOMIC_ACQUIRE);

	return (w & FU_COUNT) &&
	       ((w & FU_SHARED) ||
		FU_OWNER(w) != (uint32_t)(ts->wait_token >> 32));
}

/* Lever "adapt": the thread stepped aside (adapt.c) and this call on fd
 * may go to the kernel now: nothing of this thread's is pending on fd or
 * the open file it shares (its order key), no entry of any thread names it
 * and no explicit segment is open.  Otherwise it is deferred as ever, after
 * them (DESIGN.md, "Stepping aside").  One load when deferring. */
static inline int stepped_aside(struct tstate *ts, struct fdinfo *fi, int fd)
{
	int key;

	if (likely(!ts->aside) || ts->segment)
		return 0;	/* an explicit segment (batch_start) defers */
	key = fi->order_key ? fi->order_key - 1 : fd;
	return ts->table && !esca_fd_pending(ts->table, fd) &&
	       (key == fd || !esca_fd_pending(ts->table, key)) &&
	       !(__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) & FU_COUNT);
}

#endif
