/* SPDX-License-Identifier: MIT
 * defer.c - the deferring interposers' shared queue path (defer_queue,
 * parked_eagain, surfaced_sigpipe) and the two without data: shutdown,
 * close.  The data calls are in send.c, setsockopt in cork.c.
 *
 * A deferrable call goes into this thread's table when its result is known
 * in advance (DESIGN.md, "Contract: results") and returns that result;
 * anything else is passed through, after the fd's earlier entries
 * ("Contract: order").  The fast path takes no lock and allocates nothing:
 * a TLS pointer, the fd map, and a copy into the table's arena. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/socket.h>

#include "defer.h"

/* The time bound without a timer of the thread's (the watchdog thread, or
 * none: ESCA_WATCHDOG_MS=0): the batch's first call stamps it, a later one
 * flushes an old batch.  With a timer, nothing: its shot, armed by the
 * batch's first call, is the bound (DESIGN.md, "Flush triggers"). */
static void note_queued_clock(struct tstate *ts)
{
	uint64_t now = now_ns();

	if (!ts->oldest_ns) {
		ts->oldest_ns = now;
	} else if (now - ts->oldest_ns > cfg.flush_ns) {
		/* an old time may be a parked entry's (in the kernel's hands
		 * since the last flush; kept so that the watchdog moves it):
		 * when this call is the only one waiting in the table, the
		 * bound counts from it, and later calls are batched as if
		 * nothing were parked (DESIGN.md, "Contract: parked sends") */
		if (esca_table_pending(ts->table) -
		    esca_table_inflight(ts->table) <= 1)
			ts->oldest_ns = now;
		else
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_TIMER);
	}
}

/* A call was queued: the time bound.  A load and a branch with a timer. */
static inline void note_queued(struct tstate *ts)
{
	timer_ensure(ts);
	if (unlikely(!ts->has_timer))
		note_queued_clock(ts);
	else if (unlikely(!ts->oldest_ns))
		note_pending(ts, 1);	/* the batch's first call */
}

/* Queue a; on a full table flush once and retry.  Returns the queued
 * result, or PASSED with the reason counted. */
int64_t defer_queue(struct tstate *ts, struct call_stats *s,
		    const struct esca_args *a, uint64_t asked)
{
	struct fdinfo *fi = fdi(a->fd), *in = NULL;
	uint64_t user = asked;
	int64_t r;

	/* counted before it is queued: a timer signal's flush may complete it
	 * as soon as it is (DESIGN.md, "Contract: fd lifetime"); the guard
	 * covers the count and the queue: a signal handler's call meanwhile
	 * is stashed (signals.c) */
	ts->guard++;
	if (a->op == ESCA_OP_CLOSE) {
		__atomic_store_n(&fi->qclose_tid,
				 (uint32_t)(ts->wait_token >> 32),
				 __ATOMIC_RELAXED);
		__atomic_fetch_or(&fi->users, FU_QCLOSE, __ATOMIC_ACQ_REL);
	} else {
		if (a->op == ESCA_OP_SENDFILE) {
			in = fdi(a->fd2);
			if (!in || asked >= (1ull << 40)) {
				lib_leave(ts);
				s->passed[PASS_SIZE]++;
				return PASSED;
			}
			user |= (uint64_t)(a->fd2 + 1) << 40;
			fd_use(ts, in);
		}
		fd_use(ts, fi);
	}
	r = esca_queue(ts->table, a, 0, user);
	lib_leave(ts);
	if (unlikely(r == -ENOBUFS)) {
		/* never blocks: under sequential, before it could park, a
		 * non-blocking writer's own full socket (its reader this very
		 * thread) blocked the flush for good (the sockets' audit:
		 * writes until EAGAIN on a socketpair hung); what stays
		 * queued answers EAGAIN (parked_eagain) or waits in the
		 * call's own sync */
		lib_flush(ts, ESCA_FLUSH_TRY, ESCA_WHY_BUDGET);
		ts->guard++;
		r = esca_queue(ts->table, a, 0, user);
		lib_leave(ts);
	}
	if (likely(r >= 0)) {
		s->deferred++;
		ts->nqueued++;
		note_queued(ts);
		return r;
	}
	if (a->op == ESCA_OP_CLOSE) {
		__atomic_fetch_and(&fi->users, ~FU_QCLOSE, __ATOMIC_ACQ_REL);
	} else {
		/* the counts taken above, given back as a completion would:
		 * never below zero, and a close held meanwhile runs (a raw
		 * decrement here, after the budget flush, found a count of 0
		 * under nginx's load and borrowed FU_QCLOSE into FU_HOLD |
		 * FU_COUNT: live sockets read as closed) */
		fd_unuse(fi, a->fd);
		if (in)
			fd_unuse(in, a->fd2);
	}
	s->passed[r == -ENOBUFS ? PASS_FULL : r == -E2BIG ? PASS_SIZE :
		  PASS_ARGS]++;
	return PASSED;
}

/* io_uring sends with MSG_NOSIGNAL whatever the program asked, so a
 * deferred send that met a broken socket raised no SIGPIPE (the sequential
 * executor's plain calls raise it themselves).  The call that surfaces the
 * EPIPE raises it instead, as the plain call on the broken socket would,
 * unless it asks for MSG_NOSIGNAL.  Where SIGPIPE would kill the process,
 * the thread's pending bytes go out first, as at exit. */
void surfaced_sigpipe(struct tstate *ts, int fd, int err, int flags)
{
	struct fdinfo *fi;
	struct sigaction sa;
	sigset_t mask;

	if (err != EPIPE || (flags & MSG_NOSIGNAL) || !ts->table ||
	    !(esca_table_caps(ts->table) & ESCA_CAP_NO_SIGPIPE))
		return;
	fi = fdi(fd);
	if (!fi || fi->kind != FK_STREAM)
		return;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
	    pthread_sigmask(SIG_BLOCK, NULL, &mask) == 0 &&
	    !sigismember(&mask, SIGPIPE))
		lib_flush_drain(ts, ESCA_WHY_LIFECYCLE);
	raise(SIGPIPE);
}

/* A non-blocking data call on a socket whose earlier bytes are parked (in
 * the kernel's hands since a flush found the socket full): EAGAIN, as from
 * the full socket, at once - no flush, nothing queued behind them
 * (README: "a send on a non-blocking socket whose earlier bytes are parked
 * gets EAGAIN").  The socket is owed its EPOLLOUT (lib_owe).  Queued behind
 * them instead, such calls filled the table, and each later call then
 * paid two flushes: a SIGALRM handler writing a full self-pipe every
 * 100 us (tests/trust d05 "full") kept its thread in flushes for good.
 * Asked only while something is in flight. */
/* The answer EAGAIN for fd, whose bytes are parked, and the event it is
 * owed (lib_pay_owed, wait.c); 0 where there is no memory to remember it
 * (the caller goes on as before: it queues or waits). */
static int owe_eagain(struct tstate *ts, struct fdinfo *fi, int fd)
{
	if (!(fi->flags & FI_OWED) && lib_owe(ts, fi, fd) < 0)
		return 0;
	ts->eagain_parked++;
	errno = EAGAIN;
	return 1;
}

int behind_parked(struct tstate *ts, struct fdinfo *fi, int fd, int flags)
{
	if (!((fi->flags & FI_NONBLOCK) || (flags & MSG_DONTWAIT)) ||
	    !esca_fd_pending(ts->table, fd) ||
	    !esca_fd_inflight(ts->table, fd))
		return 0;
	return owe_eagain(ts, fi, fd);
}

/* A data call on a non-blocking socket whose earlier bytes are parked in
 * flight (its peer does not read), or still queued after a flush that never
 * blocks (an executor that cannot park), would have to wait for them: the kernel
 * would say EAGAIN (the send buffer is full, and ours come first), and
 * waiting here would stop the program's event loop for every other client.
 * 1: answer EAGAIN; the socket is owed an event (lib_pay_owed, wait.c).
 * DESIGN.md, "Contract: parked sends". */
int parked_eagain(struct tstate *ts, struct fdinfo *fi, int fd, int flags)
{
	if (fi->kind != FK_STREAM ||
	    !((fi->flags & FI_NONBLOCK) || (flags & MSG_DONTWAIT)) ||
	    !ts->table || !esca_fd_pending(ts->table, fd))
		return 0;
	lib_flush(ts, ESCA_FLUSH_TRY, ESCA_WHY_SYNC);
	if (esca_table_caps(ts->table) & ESCA_CAP_PARKS ?
	    !esca_fd_inflight(ts->table, fd) :
	    /* one that cannot park: what a full socket left stays queued */
	    !esca_fd_pending(ts->table, fd))
		return 0;
	return owe_eagain(ts, fi, fd);
}

/* A shutdown of fd's writing side the kernel did (r == 0): the data calls
 * after it go to the kernel (FI_SHUTWR). */
static int shut_done(int fd, int how, int r)
{
	if (r == 0 && (how == SHUT_WR || how == SHUT_RDWR))
		fd_note_flag(fd, FI_SHUTWR, 1);
	return r;
}

EXPORT int shutdown(int fd, int how)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi;
	struct esca_args a;
	int err;

	if (unlikely(!ts))
		return shut_done(fd, how, real.shutdown(fd, how));
	fi = defer_begin(ts, CALL_SHUTDOWN, fd, &err);
	if (!fi)
		return defer_refused(err) == -1 ? -1 :
		       shut_done(fd, how, real.shutdown(fd, how));
	if (others_use(ts, fi)) {
		/* another thread's queued writes go out before the shutdown
		 * that follows them (a worker's reply, then the I/O thread's
		 * lingering close): not deferred, and waited for */
		pass_through(ts, CALL_SHUTDOWN, fd, PASS_FD);
		fd_wait_others(ts, fi, fd, 0);
	} else if (!call_selected(ts, CALL_SHUTDOWN)) {
		pass_through(ts, CALL_SHUTDOWN, fd, PASS_NOT_SELECTED);
	} else if (stepped_aside(ts, fi, fd)) {
		ts->calls[CALL_SHUTDOWN].passed[PASS_ASIDE]++;
		cork_for_real(ts, fd);
	} else if (deferrable_kind(fi, fd) != FK_STREAM ||
		   !(fi->flags & FI_CONN)) {
		/* not connected (or not yet): ENOTCONN is Linux's answer */
		pass_through(ts, CALL_SHUTDOWN, fd, PASS_FD);
	} else if (how != SHUT_WR) {
		/* SHUT_RD/SHUT_RDWR change what reads return, and reads do not
		 * wait for a socket's pending entries; bad values: EINVAL */
		pass_through(ts, CALL_SHUTDOWN, fd, PASS_ARGS);
	} else {
		a = (struct esca_args){ .op = ESCA_OP_SHUTDOWN, .fd = fd,
					.how = how, .order = fi->order_key };
		if (defer_queue(ts, &ts->calls[CALL_SHUTDOWN], &a, 0) != PASSED) {
			/* later writes: EPIPE and SIGPIPE, from the kernel */
			fd_note_flag(fd, FI_SHUTWR, 1);
			return 0;
		}
		lib_sync_fd(ts, fd);
	}
	return shut_done(fd, how, real.shutdown(fd, how));
}

/* Does fd's open file hold a lock its close drops (flock, an OFD lock, a
 * POSIX lock of this process)?  /proc/self/fdinfo/FD lists them ("lock:");
 * 1 when it cannot tell. */
static int fd_has_lock(int fd)
{
	char path[48], buf[1024];
	long n, got = 0;
	int pfd;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	pfd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (pfd < 0)
		return 1;
	while (got < (long)sizeof(buf) - 1 &&
	       (n = syscall(SYS_read, pfd, buf + got,
			    sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	syscall(SYS_close, pfd);
	if (got >= (long)sizeof(buf) - 1)
		return 1;	/* more than flags and position: locks */
	buf[got] = 0;
	return strstr(buf, "lock:") != NULL;
}

/* The close of a file that this thread's deferred sendfiles still read
 * (their bytes parked on a client that does not read): they read a dup of
 * it from now on (esca_fd_keep_file), and the close does not wait for that
 * client (nginx closes a file once its last chunk is sent: every other
 * client waited; tests/reliability/test_stall.py).  Not for a file with a
 * lock, which its close must drop: the close waits, as before. */
static void close_file_readers(struct tstate *ts, struct fdinfo *fi, int fd)
{
	if (deferrable_kind(fi, fd) != FK_FILE || !ts->table ||
	    !esca_fd_pending(ts->table, fd))
		return;	/* a socket's close (its kind known: the fast path) */
	/* the sync's own reaping flush first: what is left then is parked
	 * (or behind what is), the rare case that pays for the lock check
	 * and the dup (nginx closes its file after every response) */
	lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
	if (!esca_fd_pending(ts->table, fd) || fd_has_lock(fd))
		return;
	ts->guard++;
	esca_fd_keep_file(ts->table, fd);
	lib_leave(ts);
}

/* A stream socket's close that is not deferred (close not a selected
 * call): after its entries, as a deferred one, but never waiting for its
 * peer: a reaping flush, and a send parked on a client that does not read
 * holds the close (fd_close_ordered), as it holds a deferred one.  Synced
 * (pass_through) instead, the close waited for that client
 * (ESCA_SYSCALLS=seed: tests/preload/test_parked_calls.py). */
static int close_socket_now(struct tstate *ts, struct fdinfo *fi, int fd,
			    int reason)
{
	ts->calls[CALL_CLOSE].passed[reason]++;
	if (ts->table && esca_fd_pending(ts->table, fd))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
	return fd_close_ordered(ts, fi, fd);
}

/* SO_LINGER on (fdinfo.linger): Linux's close waits until the socket's
 * bytes are out, at most the linger time, or resets the connection at 0 s.
 * Never deferred (a deferred close returned at once: tests/preload/
 * test_parked_calls.py).  This thread's entries of fd run first, waited for at
 * most the linger time; where some are still parked then (a client that
 * does not read), Linux's close would have returned with them still going
 * out: the close is held for them (fd_close_ordered) with the linger
 * turned off, so that it neither waits a second time nor resets.  At 0 s
 * the sends still parked are dropped (esca_fd_abort), as the reset drops
 * the bytes the kernel had not sent; held for them, the reset came only
 * once the client had read them all.  Another thread's entries of fd hold
 * the close as any close (at 0 s the reset then waits for them: README,
 * Limits).  The
 * kernel's wait ends at any signal (sk_stream_wait_close): the library's
 * timer signal is blocked across it (it ended the wait at once, measured). */
static int close_lingering(struct tstate *ts, struct fdinfo *fi, int fd)
{
	struct linger l = { 0, 0 };
	socklen_t len = sizeof(l);
	sigset_t timer, was;
	int blocked = 0, r, e;

	ts->calls[CALL_CLOSE].passed[PASS_ARGS]++;
	if (ts->table && esca_fd_pending(ts->table, fd) &&
	    syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0 &&
	    l.l_onoff) {
		uint64_t t0 = now_ns(), ms;

		if (l.l_linger < 0) {
			/* the kernel waits without a bound: so do we */
			lib_sync_fd(ts, fd);
		} else if (!lib_sync_fd_for(ts, fd, l.l_linger * 1000L) &&
			   !l.l_linger) {
			/* the reset drops what the kernel had not sent: so
			 * the sends parked on the client go (esca_fd_abort) */
			ts->guard++;
			esca_fd_abort(ts->table, fd);
			lib_leave(ts);
		} else if ((ms = (now_ns() - t0) / 1000000u) >= 1000) {
			/* the kernel's wait gets what is left of the time
			 * (whole seconds: at most 1 s more than Linux's);
			 * none: Linux's close had returned, the rest going
			 * out behind it */
			long left = l.l_linger * 1000L - (long)ms;

			l.l_onoff = left > 0;
			l.l_linger = left > 0 ? (int)((left + 999) / 1000) : 0;
			syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_LINGER, &l,
				sizeof(l));
		}
	}
	/* other sockets' queued bytes go now: the kernel's wait below holds
	 * the timer signal that would have sent them */
	if (ts->table && esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
	if (fi->linger == LINGER_WAIT &&
	    (__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) & FU_COUNT)) {
		/* held for entries still pending (parked, or another
		 * thread's): the close that their last completion makes
		 * must not wait in that thread's flush */
		l.l_onoff = l.l_linger = 0;
		syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	if (fi->linger == LINGER_WAIT &&
	    !__atomic_load_n(&timer_signal_taken, __ATOMIC_ACQUIRE)) {
		sigemptyset(&timer);
		sigaddset(&timer, cfg.timer_signal);
		blocked = syscall(SYS_rt_sigprocmask, SIG_BLOCK, &timer, &was,
				  (size_t)(_NSIG / 8)) == 0;
	}
	r = fd_close_ordered(ts, fi, fd);
	if (blocked) {
		e = errno;
		syscall(SYS_rt_sigprocmask, SIG_SETMASK, &was, NULL,
			(size_t)(_NSIG / 8));
		errno = e;
	}
	return r;
}

/* A close about to be queued on fd, a socket in an epoll set of the
 * program's that Linux's close would take out at once: may a wait of that
 * set see the socket before the close runs?  Where the socket's own bytes
 * already wait in flight (parked on a client that does not read), or
 * another thread waits on that set (this thread's next flush may be a timer
 * shot away): yes, out of the set now (1).  Where its own entries are
 * queued, they may park at the next flush: the wait after it takes the
 * socket out if the close still stands then (fd_leave_late; 2, noted in
 * *l).  Else the close runs in the flush before this thread's next wait, as
 * Linux's had run, and costs no system call (0). */
static int close_epoll_plan(struct tstate *ts, struct fdinfo *fi, int fd,
			    struct leaving *l)
{
	struct fdinfo *ep;
	uint32_t me = (uint32_t)(ts->wait_token >> 32);

	if (fi->ep_fd <= 0 || (fi->flags & FI_DUPED))
		return 0;
	ep = fdi(fi->ep_fd - 1);
	if (!ep || (ep->ep_waiter && ep->ep_waiter != me) ||
	    (ts->table && esca_fd_inflight(ts->table, fd)) ||
	    ts->nleaving == LEAVING_SLOTS) {
		fd_leave_epoll(fi, fd);
		return 1;
	}
	if (!ts->table || !esca_fd_pending(ts->table, fd))
		return 0;
	if (!(esca_table_caps(ts->table) & ESCA_CAP_OWN_PROGRESS)) {
		/* a ring whose task work runs at any return to user space
		 * (no IORING_SETUP_DEFER_TASKRUN, before Linux 6.1): the
		 * close may run between the wait's check and its DEL, and
		 * another thread's new file get the number */
		fd_leave_epoll(fi, fd);
		return 1;
	}
	*l = (struct leaving){ .fd = fd, .ep = fi->ep_fd,
			       .ep_gen = fi->ep_gen };
	return 2;
}

/* close: deferred only for a connected stream socket, and only while no
 * other thread's entries name the fd (DESIGN.md, "Contract: fd lifetime");
 * otherwise closed now, or held for those entries (fd_close_ordered). */
EXPORT int close(int fd)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi = fdi(fd), *f;
	struct esca_args a;
	struct leaving late;
	int err, plan;

	if (unlikely(ts && (ts->guard || vfork_child(ts))))
		return real.close(fd);	/* the library's own; a vfork child */
	if (fi && unlikely(fi->internal ||
			   (__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) &
			    FU_CLOSING)) &&
	    (fi->internal ||
	     (__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) & FU_HOLD) ||
	     fd_qclose_stands(ts, fi, 20))) {
		/* our ring or eventfd, or a number the program closed whose
		 * close is still pending: free, as far as the program knows */
		errno = EBADF;
		return -1;
	}
	if (unlikely(!ts))
		return fd_close_ordered(NULL, fi, fd);
	f = defer_begin(ts, CALL_CLOSE, fd, &err);
	if (!f)
		return fd_close_ordered(ts, fi, fd);
	/* a file (never closed late) that parked sendfiles read: both paths
	 * below that pass it through wait for them otherwise */
	close_file_readers(ts, fi, fd);
	if (unlikely(f->linger) && !(f->flags & FI_DUPED) &&
	    deferrable_kind(f, fd) == FK_STREAM)
		return close_lingering(ts, fi, fd);
	if (!call_selected(ts, CALL_CLOSE)) {
		if (deferrable_kind(f, fd) == FK_STREAM)
			return close_socket_now(ts, fi, fd, PASS_NOT_SELECTED);
		pass_through(ts, CALL_CLOSE, fd, PASS_NOT_SELECTED);
		return fd_close_ordered(ts, fi, fd);
	}
	if (deferrable_kind(fi, fd) != FK_STREAM || !(fi->flags & FI_CONN) ||
	    fd_never_deferred(fd, fi)) {
		/* stream sockets only (DESIGN.md, "Deferral scope"); a listening
		 * or unconnected socket (its port), a file (its locks), a pipe:
		 * never closed late */
		pass_through(ts, CALL_CLOSE, fd, PASS_FD);
		return fd_close_ordered(ts, fi, fd);
	}
	if (stepped_aside(ts, fi, fd)) {
		ts->calls[CALL_CLOSE].passed[PASS_ASIDE]++;
		return fd_close_ordered(ts, fi, fd);
	}
	if (others_use(ts, fi)) {
		/* held for them; this thread's own entries are counted too */
		ts->calls[CALL_CLOSE].passed[PASS_FD]++;
		return fd_close_ordered(ts, fi, fd);
	}
	a = (struct esca_args){ .op = ESCA_OP_CLOSE, .fd = fd,
				.order = fi->order_key };
	plan = unlikely(fi->ep_fd) ? close_epoll_plan(ts, fi, fd, &late) : 0;
	fd_forget(fi);
	fi->kind = FK_BAD;	/* closing: later calls pass and see EBADF */
	/* counted before: defer_queue may run it (a flush when the thread
	 * has no timer), and its completion counts it down (fd_on_complete) */
	ts->closes_queued++;
	late.gen = fi->gen;
	if (defer_queue(ts, &ts->calls[CALL_CLOSE], &a, 0) != PASSED) {
		/* noted once queued (a close that ran already, in a flush of
		 * defer_queue's, fails fd_leave_late's check); where a
		 * handler's closes filled the list meanwhile, out now if
		 * still pending here (the number is the socket's until this
		 * thread runs its close: OWN_PROGRESS) */
		if (plan == 2 && ts->nleaving < LEAVING_SLOTS)
			ts->leaving[ts->nleaving++] = late;
		else if (plan == 2 && esca_fd_pending(ts->table, fd))
			fd_leave_epoll_at(late.ep, late.ep_gen, fd);
		return 0;
	}
	if (plan == 2)	/* not queued: out of its set before it closes */
		fd_leave_epoll_at(late.ep, late.ep_gen, fd);
	ts->closes_queued--;
	lib_sync_fd(ts, fd);
	fi->kind = FK_UNKNOWN;
	return fd_close_ordered(ts, fi, fd);
}
EXPORT int __close(int fd) __attribute__((alias("close")));

/* close_range, closefrom: the program's own numbers in the range are
 * closed as close() would close each (held where entries still name it);
 * the library's fds and numbers whose close is already pending are left
 * alone (DESIGN.md, "Contract: fd lifetime").  CLOSE_RANGE_CLOEXEC closes
 * nothing: it passes through.  CLOSE_RANGE_UNSHARE goes with the first
 * piece. */
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static int close_range_piece(unsigned lo, unsigned hi, unsigned *flags)
{
	long r = syscall(SYS_close_range, lo, hi, *flags);

	if (r == 0)
		*flags &= ~CLOSE_RANGE_UNSHARE;
	return (int)r;
}

static int close_range_ours(struct tstate *ts, unsigned first, unsigned last,
			    unsigned fl);

EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	struct tstate *ts = ts_get();
	unsigned fl = (unsigned)flags;
	int r;

	if (!ts || ts->guard || vfork_child(ts) || first > last ||
	    (fl & CLOSE_RANGE_CLOEXEC) || (fl & ~CLOSE_RANGE_UNSHARE) ||
	    !fdtab)
		return (int)syscall(SYS_close_range, first, last, fl);
	/* no fd of the library's is being made meanwhile: its low number
	 * would be closed (fd_closer_begin, fdmap.c) */
	fd_closer_begin();
	r = close_range_ours(ts, first, last, fl);
	fd_closer_end();
	return r;
}

static int close_range_ours(struct tstate *ts, unsigned first, unsigned last,
			    unsigned fl)
{
	unsigned lo = first, top;
	int wait_ms = 20;

	top = (unsigned)__atomic_load_n(&fd_hiwater, __ATOMIC_RELAXED);
	if (top >= (unsigned)fdtab_n)
		top = (unsigned)fdtab_n - 1;
	for (unsigned fd = first; fd <= last && fd <= top; fd++) {
		struct fdinfo *fi = &fdtab[fd];
		uint64_t w = __atomic_load_n(&fi->users, __ATOMIC_ACQUIRE);

		if ((w & FU_CLOSING) == FU_QCLOSE && !fi->internal) {
			/* a queued close the kernel may have run, its
			 * number given to a new file since */
			if (!fd_qclose_stands(ts, fi, wait_ms))
				w = __atomic_load_n(&fi->users,
						    __ATOMIC_ACQUIRE);
			wait_ms = 1;	/* one wait a call, bounded */
		}

		if (!fi->internal && !w) {
			if (fi->kind != FK_UNKNOWN || fi->ep_waiter)
				fd_forget(fi);	/* the number is new after */
			else
				fi->gen++;	/* (whole.c's check of it) */
			continue;
		}
		/* a number of ours, or one still named by entries: the
		 * numbers before it in one piece, then it alone */
		if (fd > lo && close_range_piece(lo, fd - 1, &fl) < 0)
			return -1;
		lo = fd + 1;
		if (fi->internal || (w & FU_CLOSING))
			continue;
		if (fi->kind != FK_STREAM || !(fi->flags & FI_CONN))
			lib_sync_fd(ts, fd);	/* as close(): not held for us */
		fd_close_ordered(ts, fi, fd);
	}
	if (lo > last)
		return (fl & CLOSE_RANGE_UNSHARE) ?
		       close_range_piece(~0U, ~0U, &fl) : 0;
	return close_range_piece(lo, last, &fl);
}

EXPORT void closefrom(int lowfd)
{
	if (lowfd < 0)
		lowfd = 0;
	if (close_range((unsigned)lowfd, ~0U, 0) == 0)
		return;
	/* no close_range in this kernel: one close per number we may know */
	for (int fd = lowfd; fd < fdtab_n &&
	     fd <= __atomic_load_n(&fd_hiwater, __ATOMIC_RELAXED); fd++)
		close(fd);
}
