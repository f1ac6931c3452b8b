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
#include <signal.h>
#include <sys/socket.h>

#include "defer.h"

static inline void note_queued(struct tstate *ts)
{
	uint64_t now = now_ns();

	if (!ts->oldest_ns)
		ts->oldest_ns = now;
	else if (now - ts->oldest_ns > cfg.flush_ns)
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_TIMER);
}

/* Queue a; on a full table flush once and retry.  Returns the queued
 * result, or PASSED with the reason counted. */
int64_t defer_queue(struct tstate *ts, struct call_stats *s,
		    const struct esca_args *a, uint64_t asked)
{
	int64_t r;

	ts->guard++;
	r = esca_queue(ts->table, a, 0, asked);
	lib_leave(ts);
	if (unlikely(r == -ENOBUFS)) {
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_BUDGET);
		ts->guard++;
		r = esca_queue(ts->table, a, 0, asked);
		lib_leave(ts);
	}
	if (likely(r >= 0)) {
		s->deferred++;
		note_queued(ts);
		return r;
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
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_LIFECYCLE);
	raise(SIGPIPE);
}

/* A data call on a non-blocking socket whose earlier bytes are parked in
 * flight (its peer does not read) would have to wait for them: the kernel
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
	lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
	if (!esca_fd_inflight(ts->table, fd))
		return 0;
	if (!(fi->flags & FI_OWED)) {
		if (ts->nowed >= MAX_OWED)
			return 0;	/* no room to remember: wait, as before */
		ts->owed[ts->nowed++] = fd;
		fi->flags |= FI_OWED;
	}
	ts->eagain_parked++;
	errno = EAGAIN;
	return 1;
}

EXPORT int shutdown(int fd, int how)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi;
	struct esca_args a;
	int err;

	if (unlikely(!ts))
		return real.shutdown(fd, how);
	fi = defer_begin(ts, CALL_SHUTDOWN, fd, &err);
	if (!fi)
		return defer_refused(err) == -1 ? -1 : real.shutdown(fd, how);
	if (!call_selected(ts, CALL_SHUTDOWN)) {
		pass_through(ts, CALL_SHUTDOWN, fd, PASS_NOT_SELECTED);
	} else if (deferrable_kind(fi, fd) != FK_STREAM) {
		pass_through(ts, CALL_SHUTDOWN, fd, PASS_FD);
	} else if (how != SHUT_WR) {
		/* SHUT_RD/SHUT_RDWR change what reads return, and reads do not
		 * wait for a socket's pending entries; bad values: EINVAL */
		pass_through(ts, CALL_SHUTDOWN, fd, PASS_ARGS);
	} else {
		a = (struct esca_args){ .op = ESCA_OP_SHUTDOWN, .fd = fd,
					.how = how, .order = fi->order_key };
		if (defer_queue(ts, &ts->calls[CALL_SHUTDOWN], &a, 0) != PASSED)
			return 0;
		lib_sync_fd(ts, fd);
	}
	return real.shutdown(fd, how);
}

EXPORT int close(int fd)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi;
	struct esca_args a;
	int err, kind;

	if (unlikely(!ts))
		return real.close(fd);
	if (ts->table && !ts->guard && esca_table_owns_fd(ts->table, fd))
		return 0;	/* the program closing our ring: keep it */
	fi = defer_begin(ts, CALL_CLOSE, fd, &err);
	if (!fi)
		return real.close(fd);
	if (!call_selected(ts, CALL_CLOSE)) {
		pass_through(ts, CALL_CLOSE, fd, PASS_NOT_SELECTED);
		fd_forget(fi);
		return real.close(fd);
	}
	kind = deferrable_kind(fi, fd);
	if (kind == FK_FILE && (fi->flags & FI_DIRTY)) {
		/* its bytes must be in the file when the program, or another
		 * process, opens it by its path next (write, close, rename) */
		pass_through(ts, CALL_CLOSE, fd, PASS_FD);
		fd_forget(fi);
		return real.close(fd);
	}
	if (kind != FK_STREAM && kind != FK_SOCKET && kind != FK_PIPE &&
	    kind != FK_FILE) {
		pass_through(ts, CALL_CLOSE, fd, PASS_FD);
		fd_forget(fi);
		return real.close(fd);
	}
	a = (struct esca_args){ .op = ESCA_OP_CLOSE, .fd = fd,
				.order = fi->order_key };
	fd_forget(fi);
	fi->kind = FK_BAD;	/* closing: later calls pass and see EBADF */
	if (defer_queue(ts, &ts->calls[CALL_CLOSE], &a, 0) != PASSED)
		return 0;
	lib_sync_fd(ts, fd);
	fi->kind = FK_UNKNOWN;
	return real.close(fd);
}
EXPORT int __close(int fd) __attribute__((alias("close")));
