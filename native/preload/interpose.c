/* SPDX-License-Identifier: MIT
 * interpose.c - the replacements for libc's wrappers.
 *
 * Deferrable calls (write, writev, send, sendto, sendmsg, sendfile,
 * shutdown, close, setsockopt) go into this thread's table when their
 * result is known in advance (DESIGN.md, contract item 1) and return that
 * result; anything else is passed through, after the fd's earlier entries
 * (contract item 3).  The event-loop waits flush and start the next
 * segment; reads, dup2, exec and exit flush what they depend on.
 *
 * The fast path takes no lock and allocates nothing: a TLS pointer, the fd
 * map, and a copy into the table's arena. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

#define PASSED (-2)
#define SEND_FLAGS_OK (MSG_NOSIGNAL | MSG_MORE | MSG_DONTWAIT)
/* an epoll_event.data no program makes: a non-canonical address */
#define EPOLL_MAGIC 0xe5ca5e9a0000e5caull

static inline int take_err(struct fdinfo *fi)
{
	return __atomic_exchange_n(&fi->err, 0, __ATOMIC_RELAXED);
}

static inline void note_queued(struct tstate *ts)
{
	uint64_t now = now_ns();

	if (!ts->oldest_ns)
		ts->oldest_ns = now;
	else if (now - ts->oldest_ns > cfg.flush_ns)
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_TIMER);
}

static inline int deferrable_kind(struct fdinfo *fi, int fd)
{
	if (fi->kind == FK_UNKNOWN)
		fd_detect(fd, fi);
	return fi->kind;
}

/* Queue a; on a full table flush once and retry.  Returns the queued
 * result, or PASSED with the reason counted. */
static int64_t queue(struct tstate *ts, struct sc_stats *s,
		     const struct esca_args *a, uint64_t asked)
{
	int64_t r;

	ts->busy++;
	r = esca_queue(ts->table, a, 0, asked);
	ts->busy--;
	if (unlikely(r == -ENOBUFS)) {
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_BUDGET);
		ts->busy++;
		r = esca_queue(ts->table, a, 0, asked);
		ts->busy--;
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

/* Lever "compose": a socket corked by the program while its cork lives
 * only in our queued MSG_MORE flags gets the real cork before a call of its
 * goes to the kernel, so the kernel holds the bytes as the program asked. */
static void cork_for_real(struct tstate *ts, int fd)
{
	struct fdinfo *fi = fdi(fd);
	int one = 1;

	if (likely(!fi || !(fi->flags & FI_CORK_VIRT)))
		return;
	fi->flags &= (uint16_t)~FI_CORK_VIRT;
	ts->guard++;
	if (real.setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) < 0)
		fi->flags &= (uint16_t)~FI_CORK_KNOWN;
	ts->guard--;
}

/* A composed cork made real in the queue, in order: a sendfile run as the
 * syscall (lever "sendfile") would push its bytes, and wake the peer, at
 * once; held by the kernel's cork, they go out with the TCP_CORK off, which
 * the flush runs with every other socket's in one kernel entry (measured:
 * pushing inside each sendfile cost ~2 us a request in context switches). */
static void cork_queued(struct tstate *ts, struct fdinfo *fi, int fd)
{
	static const int one = 1;
	struct iovec v = { (void *)&one, sizeof(one) };
	struct esca_args a = { .op = ESCA_OP_SETSOCKOPT, .fd = fd,
			       .level = IPPROTO_TCP, .optname = TCP_CORK,
			       .iov = &v, .iovcnt = 1, .order = fi->key1 };

	ts->busy++;
	if (esca_queue(ts->table, &a, 0, 0) >= 0) {
		ts->busy--;
		fi->flags &= (uint16_t)~FI_CORK_VIRT;	/* FI_CORKED stays */
		ts->composed--;		/* the program's call runs after all */
		return;
	}
	ts->busy--;
	cork_for_real(ts, fd);
}

/* Pass through on fd: after its pending entries. */
static inline ssize_t pass(struct tstate *ts, int sc, int fd, int reason)
{
	ts->sc[sc].passed[reason]++;
	lib_sync_fd(ts, fd);
	cork_for_real(ts, fd);
	return PASSED;
}

/* The common start of a deferrable call on fd: NULL means pass through
 * with no table involved; *err set means "return -1 with that errno". */
static inline struct fdinfo *begin(struct tstate *ts, int sc, int fd, int *err)
{
	struct sc_stats *s = &ts->sc[sc];
	struct fdinfo *fi;

	*err = 0;
	if (unlikely(ts->guard))
		return NULL;	/* the library's own call: not the program's */
	if (unlikely(lib_exiting))
		return NULL;	/* exit handlers: their calls go straight in */
	s->seen++;
	fi = fdi(fd);
	if (unlikely(!fi)) {
		s->passed[PASS_FD]++;
		return NULL;
	}
	if (unlikely(fi->err) && sc != SC_CLOSE) {
		*err = take_err(fi);
		if (*err) {
			/* the fd is broken (EPIPE, ECONNRESET, ...): from now
			 * on its calls go to the kernel, which says so itself */
			fi->flags |= FI_FAILED;
			s->surfaced++;
			return NULL;
		}
	}
	if (unlikely(fi->flags & FI_FAILED) && sc != SC_CLOSE) {
		pass(ts, sc, fd, PASS_FD);
		return NULL;
	}
	return fi;
}

/* io_uring sends with MSG_NOSIGNAL whatever the program asked, so a
 * deferred send that met a broken socket raised no SIGPIPE (the sequential
 * executor's plain calls raise it themselves).  The call that surfaces the
 * EPIPE raises it instead, as the plain call on the broken socket would,
 * unless it asks for MSG_NOSIGNAL.  Where SIGPIPE would kill the process,
 * the thread's pending bytes go out first, as at exit. */
static void surfaced_sigpipe(struct tstate *ts, int fd, int err, int flags)
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
 * 1: answer EAGAIN; the socket is owed an event (lib_pay_owed). */
static int parked_eagain(struct tstate *ts, struct fdinfo *fi, int fd,
			 int flags)
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

/* After begin() said no: -1 with the fd's pending error, or PASSED. */
static inline ssize_t refused(int err)
{
	if (err) {
		errno = err;
		return -1;
	}
	return PASSED;
}

static inline int selected(struct tstate *ts, int sc)
{
	return (cfg.selected & (1u << sc)) && (cfg.implicit || ts->segment);
}

static ssize_t defer_data(int sc, int op, int fd, const struct iovec *iov,
			  int iovcnt, int flags)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi;
	struct esca_args a;
	size_t total = 0;
	int err, kind;

	if (unlikely(!ts))
		return PASSED;
	fi = begin(ts, sc, fd, &err);
	if (!fi) {
		surfaced_sigpipe(ts, fd, err, flags);
		return refused(err);
	}
	if (!selected(ts, sc))
		return pass(ts, sc, fd, PASS_NOT_SELECTED);
	kind = deferrable_kind(fi, fd);
	if (kind != FK_STREAM &&
	    !((kind == FK_PIPE || kind == FK_FILE) &&
	      (op == ESCA_OP_WRITE || op == ESCA_OP_WRITEV)))
		return pass(ts, sc, fd, PASS_FD);
	if (kind != FK_STREAM && !fd_access_ok(fd, fi, FI_NOWRITE))
		return pass(ts, sc, fd, PASS_FD);	/* EBADF: not deferred */
	if ((flags & ~SEND_FLAGS_OK) || iovcnt < 0 || iovcnt > IOV_MAX ||
	    (iovcnt && !iov))
		return pass(ts, sc, fd, PASS_ARGS);
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
			return pass(ts, sc, fd, PASS_ARGS);
		total += iov[i].iov_len;
	}
	if (total > cfg.budget) {
		if (parked_eagain(ts, fi, fd, flags))
			return -1;
		return pass(ts, sc, fd, PASS_SIZE);
	}
	a = (struct esca_args){ .op = op, .fd = fd, .iov = iov, .iovcnt = iovcnt,
				.flags = flags & ~MSG_DONTWAIT,
				.order = fi->key1 };
	if (kind != FK_STREAM)
		a.hints |= ESCA_HINT_NOTSOCK;
	if (fi->flags & FI_CORK_VIRT) {
		/* corked: the kernel holds it as MSG_MORE (a send's flag) */
		a.flags |= MSG_MORE;
		if (op == ESCA_OP_WRITE)
			a.op = ESCA_OP_SEND;
		else if (op == ESCA_OP_WRITEV)
			a.op = ESCA_OP_SENDMSG;
	}
	if (queue(ts, &ts->sc[sc], &a, total) == PASSED) {
		if (parked_eagain(ts, fi, fd, flags))
			return -1;
		lib_sync_fd(ts, fd);
		cork_for_real(ts, fd);
		return PASSED;
	}
	if (kind == FK_FILE) {
		fi->flags |= FI_DIRTY;
		ts->files_dirty = 1;
	}
	return (ssize_t)total;
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	struct iovec v = { (void *)buf, n };
	ssize_t r = defer_data(SC_WRITE, ESCA_OP_WRITE, fd, &v, 1, 0);

	return r != PASSED ? r : real.write(fd, buf, n);
}
EXPORT ssize_t __write(int fd, const void *buf, size_t n)
	__attribute__((alias("write")));

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	ssize_t r = defer_data(SC_WRITEV, ESCA_OP_WRITEV, fd, iov, n, 0);

	return r != PASSED ? r : real.writev(fd, iov, n);
}

EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	struct iovec v = { (void *)buf, n };
	ssize_t r = defer_data(SC_SEND, ESCA_OP_SEND, fd, &v, 1, flags);

	return r != PASSED ? r : real.send(fd, buf, n, flags);
}
EXPORT ssize_t __send(int fd, const void *buf, size_t n, int flags)
	__attribute__((alias("send")));

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags,
		      const struct sockaddr *to, socklen_t tolen)
{
	struct iovec v = { (void *)buf, n };
	ssize_t r;

	if (to || tolen) {	/* an address: never deferred */
		struct tstate *ts = ts_get();

		if (ts && !ts->guard) {
			ts->sc[SC_SENDTO].seen++;
			pass(ts, SC_SENDTO, fd, PASS_ARGS);
		}
		return real.sendto(fd, buf, n, flags, to, tolen);
	}
	r = defer_data(SC_SENDTO, ESCA_OP_SEND, fd, &v, 1, flags);
	return r != PASSED ? r : real.sendto(fd, buf, n, flags, to, tolen);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	ssize_t r;

	if (!m || m->msg_name || m->msg_namelen || m->msg_control ||
	    m->msg_controllen || m->msg_iovlen > (size_t)IOV_MAX) {
		struct tstate *ts = ts_get();

		if (ts && !ts->guard) {
			ts->sc[SC_SENDMSG].seen++;
			pass(ts, SC_SENDMSG, fd, PASS_ARGS);
		}
		return real.sendmsg(fd, m, flags);
	}
	r = defer_data(SC_SENDMSG, ESCA_OP_SENDMSG, fd, m->msg_iov,
		       (int)m->msg_iovlen, flags);
	return r != PASSED ? r : real.sendmsg(fd, m, flags);
}

static ssize_t defer_sendfile(int out, int in, off_t *off, size_t count)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi, *fin;
	struct esca_args a;
	int err;

	if (unlikely(!ts))
		return PASSED;
	fi = begin(ts, SC_SENDFILE, out, &err);
	if (!fi) {
		surfaced_sigpipe(ts, out, err, 0);
		return refused(err);
	}
	if (!selected(ts, SC_SENDFILE))
		return pass(ts, SC_SENDFILE, out, PASS_NOT_SELECTED);
	fin = fdi(in);
	if (deferrable_kind(fi, out) != FK_STREAM || !fin ||
	    deferrable_kind(fin, in) != FK_FILE ||
	    !fd_access_ok(in, fin, FI_NOREAD))
		return pass(ts, SC_SENDFILE, out, PASS_FD);
	/* the result is known only for a range inside the file */
	if (!off || *off < 0 || count > (size_t)SSIZE_MAX ||
	    (int64_t)count > fin->size - (int64_t)*off)
		return pass(ts, SC_SENDFILE, out, PASS_ARGS);
	if (count > cfg.budget) {
		if (parked_eagain(ts, fi, out, 0))
			return -1;
		return pass(ts, SC_SENDFILE, out, PASS_SIZE);
	}
	if ((fi->flags & FI_CORK_VIRT) && (fi->flags & FI_NONBLOCK) &&
	    (esca_table_caps(ts->table) & ESCA_CAP_SENDFILE_DIRECT))
		cork_queued(ts, fi, out);
	a = (struct esca_args){ .op = ESCA_OP_SENDFILE, .fd = out, .fd2 = in,
				.offset = *off, .count = count,
				.flags = fi->flags & FI_CORK_VIRT ? MSG_MORE : 0,
				.hints = fi->flags & FI_NONBLOCK ?
					 ESCA_HINT_NONBLOCK : 0,
				.order = fi->key1 };
	if (queue(ts, &ts->sc[SC_SENDFILE], &a, count) == PASSED) {
		if (parked_eagain(ts, fi, out, 0))
			return -1;
		lib_sync_fd(ts, out);
		cork_for_real(ts, out);
		return PASSED;
	}
	*off += (off_t)count;
	return (ssize_t)count;
}

static ssize_t sendfile_pass(int out, int in, off_t *off, size_t count)
{
	struct tstate *ts = tls_ts;

	if (ts && !ts->guard)
		lib_sync_fd(ts, in);	/* its file position, its contents */
	return real.sendfile(out, in, off, count);
}

EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	ssize_t r = defer_sendfile(out, in, off, count);

	return r != PASSED ? r : sendfile_pass(out, in, off, count);
}
EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t count)
	__attribute__((alias("sendfile")));

EXPORT int shutdown(int fd, int how)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi;
	struct esca_args a;
	int err;

	if (unlikely(!ts))
		return real.shutdown(fd, how);
	fi = begin(ts, SC_SHUTDOWN, fd, &err);
	if (!fi)
		return refused(err) == -1 ? -1 : real.shutdown(fd, how);
	if (!selected(ts, SC_SHUTDOWN)) {
		pass(ts, SC_SHUTDOWN, fd, PASS_NOT_SELECTED);
	} else if (deferrable_kind(fi, fd) != FK_STREAM) {
		pass(ts, SC_SHUTDOWN, fd, PASS_FD);
	} else if (how != SHUT_WR) {
		/* SHUT_RD/SHUT_RDWR change what reads return, and reads do not
		 * wait for a socket's pending entries; bad values: EINVAL */
		pass(ts, SC_SHUTDOWN, fd, PASS_ARGS);
	} else {
		a = (struct esca_args){ .op = ESCA_OP_SHUTDOWN, .fd = fd,
					.how = how, .order = fi->key1 };
		if (queue(ts, &ts->sc[SC_SHUTDOWN], &a, 0) != PASSED)
			return 0;
		lib_sync_fd(ts, fd);
	}
	return real.shutdown(fd, how);
}

/* Lever "compose": TCP_CORK on, data, TCP_CORK off on a socket whose cork
 * we know to be off becomes the same data sent with MSG_MORE on all but the
 * last send; neither setsockopt reaches the kernel.  What the program can
 * observe stays true: getsockopt(TCP_CORK) answers from the same state, and
 * any call of the socket that goes to the kernel meanwhile first gets the
 * real cork (cork_for_real).  1: the call was composed away. */
static int cork_compose(struct tstate *ts, struct fdinfo *fi, int fd, int on)
{
	if (!(cfg.levers & LV_COMPOSE) || !(fi->flags & FI_CORK_KNOWN))
		return 0;
	if (on && !(fi->flags & FI_CORKED)) {
		fi->flags |= FI_CORKED | FI_CORK_VIRT;
		ts->composed++;
		return 1;
	}
	if (!on && (fi->flags & FI_CORK_VIRT)) {
		fi->flags &= (uint16_t)~(FI_CORKED | FI_CORK_VIRT);
		/* the last send pushes; if it is gone to the kernel already,
		 * the real TCP_CORK off (queued below) pushes what it left */
		if (esca_amend_last(ts->table, fd, MSG_MORE) == 0) {
			ts->composed++;
			return 1;
		}
	}
	return 0;
}

EXPORT int setsockopt(int fd, int level, int name, const void *val,
		      socklen_t len)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi;
	struct esca_args a;
	struct iovec v = { (void *)val, len };
	int err, r;

	if (level == SOL_SOCKET && name == SO_RCVLOWAT && (fi = fdi(fd)))
		fi->flags |= FI_NOANSWER;	/* a short read proves nothing */
	if (unlikely(!ts))
		return real.setsockopt(fd, level, name, val, len);
	fi = begin(ts, SC_SETSOCKOPT, fd, &err);
	if (!fi) {
		if (level == IPPROTO_TCP && name == TCP_CORK && (fi = fdi(fd)))
			fi->flags &= (uint16_t)~(FI_CORK_KNOWN | FI_CORKED |
						FI_CORK_VIRT);
		return refused(err) == -1 ? -1 :
		       real.setsockopt(fd, level, name, val, len);
	}
	if (!selected(ts, SC_SETSOCKOPT)) {
		pass(ts, SC_SETSOCKOPT, fd, PASS_NOT_SELECTED);
	} else if (deferrable_kind(fi, fd) != FK_STREAM ||
		   !(fi->flags & FI_TCP)) {
		pass(ts, SC_SETSOCKOPT, fd, PASS_FD);
	} else if (level != IPPROTO_TCP || !val || len != sizeof(int) ||
		   (name != TCP_CORK && name != TCP_NODELAY)) {
		pass(ts, SC_SETSOCKOPT, fd, PASS_ARGS);	/* unknown: real */
	} else if (name == TCP_CORK &&
		   cork_compose(ts, fi, fd, *(const int *)val != 0)) {
		ts->sc[SC_SETSOCKOPT].deferred++;
		return 0;
	} else {
		a = (struct esca_args){ .op = ESCA_OP_SETSOCKOPT, .fd = fd,
					.level = level, .optname = name,
					.iov = &v, .iovcnt = 1, .order = fi->key1 };
		if (name == TCP_CORK) {
			fi->flags &= (uint16_t)~FI_CORKED;
			if (*(const int *)val)
				fi->flags |= FI_CORKED;
		}
		if (queue(ts, &ts->sc[SC_SETSOCKOPT], &a, 0) != PASSED)
			return 0;
		lib_sync_fd(ts, fd);
		cork_for_real(ts, fd);
	}
	r = real.setsockopt(fd, level, name, val, len);
	if (level == IPPROTO_TCP && name == TCP_CORK && (fi = fdi(fd))) {
		/* the kernel's cork is the program's now, if it took it */
		fi->flags &= (uint16_t)~(FI_CORKED | FI_CORK_VIRT);
		if (r < 0 || !val || len < sizeof(int))
			fi->flags &= (uint16_t)~FI_CORK_KNOWN;
		else if (*(const int *)val)
			fi->flags |= FI_CORKED;
	}
	return r;
}

/* After a close or a dup2 onto it, an fd number means something new. */
static inline void fd_forget(struct fdinfo *fi)
{
	fi->gen++;
	fi->kind = FK_UNKNOWN;
	fi->flags = 0;
	fi->key1 = 0;
	fi->drained = 0;
	fi->ep_fd = 0;
	__atomic_store_n(&fi->err, 0, __ATOMIC_RELAXED);
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
	fi = begin(ts, SC_CLOSE, fd, &err);
	if (!fi)
		return real.close(fd);
	if (!selected(ts, SC_CLOSE)) {
		pass(ts, SC_CLOSE, fd, PASS_NOT_SELECTED);
		fd_forget(fi);
		return real.close(fd);
	}
	kind = deferrable_kind(fi, fd);
	if (kind == FK_FILE && (fi->flags & FI_DIRTY)) {
		/* its bytes must be in the file when the program, or another
		 * process, opens it by its path next (write, close, rename) */
		pass(ts, SC_CLOSE, fd, PASS_FD);
		fd_forget(fi);
		return real.close(fd);
	}
	if (kind != FK_STREAM && kind != FK_SOCKET && kind != FK_PIPE &&
	    kind != FK_FILE) {
		pass(ts, SC_CLOSE, fd, PASS_FD);
		fd_forget(fi);
		return real.close(fd);
	}
	a = (struct esca_args){ .op = ESCA_OP_CLOSE, .fd = fd,
				.order = fi->key1 };
	fd_forget(fi);
	fi->kind = FK_BAD;	/* closing: later calls pass and see EBADF */
	if (queue(ts, &ts->sc[SC_CLOSE], &a, 0) != PASSED)
		return 0;
	lib_sync_fd(ts, fd);
	fi->kind = FK_UNKNOWN;
	return real.close(fd);
}
EXPORT int __close(int fd) __attribute__((alias("close")));

/* ---- flush triggers: the event-loop waits ------------------------------- */

/* Flush before a wait.  Returns the progress fd when entries stay in flight
 * (parked on full sockets) and the wait must also watch it, else -1. */
static int before_wait(struct tstate *ts)
{
	int pfd;

	if (!ts || ts->guard)
		return -1;
	ts->wait_token++;	/* what reads found out is old news after it */
	if (!ts->table)
		return -1;
	ts->segment = 0;
	if (esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
	if (!esca_table_inflight(ts->table))
		return -1;
	ts->guard++;
	pfd = esca_table_progress_fd(ts->table);
	ts->guard--;
	if (pfd < 0) {
		/* no way to be woken: finish them now (sequential never
		 * leaves anything in flight, so this is a safety net) */
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_WAIT);
		return -1;
	}
	return pfd;
}

static int epoll_has_ours(struct tstate *ts, int epfd, int pfd)
{
	struct fdinfo *fi = fdi(epfd);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET,
				  .data.u64 = EPOLL_MAGIC };
	int slot = -1;

	if (!fi)
		return 0;
	for (int i = 0; i < ts->nepreg; i++) {
		if (ts->epreg[i].fd == epfd) {
			if (ts->epreg[i].gen == fi->gen)
				return 1;
			slot = i;	/* that epoll fd was closed since */
			break;
		}
	}
	if (syscall(SYS_epoll_ctl, epfd, EPOLL_CTL_ADD, pfd, &ev) < 0 &&
	    errno != EEXIST)
		return 0;
	if (slot < 0) {
		slot = ts->nepreg < MAX_EPREG ? ts->nepreg++ :
		       (int)(fi->gen % MAX_EPREG);
	}
	ts->epreg[slot].fd = epfd;
	ts->epreg[slot].gen = fi->gen;
	return 1;
}

static int64_t remaining_ms(uint64_t deadline)
{
	uint64_t now = now_ns();

	if (now >= deadline)
		return 0;
	return (int64_t)((deadline - now + 999999) / 1000000);
}

/* Set once any thread put its progress fd in an epoll set: from then on
 * every epoll wait filters our events out, armed or not (a late wake-up of a
 * progress fd must never reach the program: its data is no pointer). */
static int epoll_magic_used;

/* epoll_wait and friends: flush, wait; entries parked in flight wake the
 * wait through the progress fd, which the program never sees. */
static int epoll_common(int epfd, struct epoll_event *evs, int max,
			int timeout, const struct timespec *ts2,
			const sigset_t *mask, int kind)
{
	struct tstate *ts = tls_ts;
	uint64_t deadline = 0;
	int pfd, n, filter;
	struct timespec left;

	/* lever "fold": the flush and the wait in one kernel entry */
	if ((cfg.levers & LV_FOLD) && ts && !ts->guard && ts->table &&
	    esca_table_pending(ts->table) && kind != 2 && timeout != 0) {
		uint64_t start = timeout > 0 ? now_ns() : 0;

		ts->segment = 0;
		ts->wait_token++;
		n = lib_flush_epoll(ts, epfd, evs, max, timeout, mask);
		if (n != -2) {
			int m = 0;

			if (n <= 0 || !__atomic_load_n(&epoll_magic_used,
							__ATOMIC_RELAXED))
				return n;
			for (int i = 0; i < n; i++)
				if (evs[i].data.u64 != EPOLL_MAGIC)
					evs[m++] = evs[i];
			if (m > 0)
				return m;
			/* only our progress fd woke it: wait on, below */
			if (timeout > 0) {
				int64_t used = (int64_t)((now_ns() - start) /
							 1000000);

				timeout = used >= timeout ? 0 :
					  timeout - (int)used;
			}
		}
	}
	pfd = before_wait(ts);

	if (pfd >= 0 && !epoll_has_ours(ts, epfd, pfd))
		pfd = -1;
	if (pfd >= 0)
		__atomic_store_n(&epoll_magic_used, 1, __ATOMIC_RELAXED);
	filter = __atomic_load_n(&epoll_magic_used, __ATOMIC_RELAXED);
	if (kind == 2 && ts2)
		deadline = now_ns() + (uint64_t)ts2->tv_sec * 1000000000ull +
			   (uint64_t)ts2->tv_nsec;
	else if (timeout > 0)
		deadline = now_ns() + (uint64_t)timeout * 1000000ull;
	for (;;) {
		int m = 0, hit = 0;

		if (pfd >= 0) {
			esca_table_progress_arm(ts->table, 1);
			ts->in_wait = 1;
		}
		if (kind == 0)
			n = real.epoll_wait(epfd, evs, max, timeout);
		else if (kind == 1)
			n = real.epoll_pwait(epfd, evs, max, timeout, mask);
		else
			n = real.epoll_pwait2(epfd, evs, max, ts2, mask);
		if (pfd >= 0) {
			ts->in_wait = 0;
			esca_table_progress_arm(ts->table, 0);
		}
		if (!filter || n <= 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == EPOLL_MAGIC)
				hit = 1;
			else
				evs[m++] = evs[i];
		}
		if (!hit)
			return n;
		if (ts && !ts->guard && ts->table)
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
		if (m > 0 || timeout == 0 || (kind == 2 && ts2 && !deadline))
			return m;
		if (pfd >= 0 && !esca_table_inflight(ts->table))
			pfd = -1;
		if (deadline) {
			uint64_t now = now_ns();

			if (now >= deadline)
				return 0;
			if (kind == 2) {
				left.tv_sec = (time_t)((deadline - now) / 1000000000ull);
				left.tv_nsec = (long)((deadline - now) % 1000000000ull);
				ts2 = &left;
			} else {
				timeout = (int)remaining_ms(deadline);
			}
		}
	}
}

EXPORT int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return epoll_common(epfd, evs, max, timeout, NULL, NULL, 0);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *evs, int max,
		       int timeout, const sigset_t *mask)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return epoll_common(epfd, evs, max, timeout, NULL, mask, 1);
}

EXPORT int epoll_pwait2(int epfd, struct epoll_event *evs, int max,
			const struct timespec *t, const sigset_t *mask)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	if (!real.epoll_pwait2) {
		errno = ENOSYS;
		return -1;
	}
	return epoll_common(epfd, evs, max, t ? 1 : -1, t, mask, 2);
}

static void drain(int fd)
{
	uint64_t v;

	if (syscall(SYS_read, fd, &v, sizeof(v)) < 0)
		return;
}

static int poll_common(struct pollfd *fds, nfds_t n, int timeout,
		       const struct timespec *t, const sigset_t *mask, int kind)
{
	struct tstate *ts = tls_ts;
	int pfd = before_wait(ts), r;
	uint64_t deadline = 0;

	if (pfd >= 0 && ts->pbuf_n < n + 1) {
		struct pollfd *nb = realloc(ts->pbuf, (n + 1) * sizeof(*nb));

		if (nb) {
			ts->pbuf = nb;
			ts->pbuf_n = n + 1;
		} else {
			lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_WAIT);
			pfd = -1;
		}
	}
	if (pfd < 0) {
		if (kind == 0)
			return real.poll(fds, n, timeout);
		return real.ppoll(fds, n, t, mask);
	}
	if (timeout > 0)
		deadline = now_ns() + (uint64_t)timeout * 1000000ull;
	for (;;) {
		int hit;

		if (n)
			memcpy(ts->pbuf, fds, n * sizeof(*fds));
		ts->pbuf[n] = (struct pollfd){ .fd = pfd, .events = POLLIN };
		esca_table_progress_arm(ts->table, 1);
		ts->in_wait = 1;
		if (kind == 0)
			r = real.poll(ts->pbuf, n + 1, timeout);
		else
			r = real.ppoll(ts->pbuf, n + 1, t, mask);
		ts->in_wait = 0;
		esca_table_progress_arm(ts->table, 0);
		if (r < 0)
			return r;
		for (nfds_t i = 0; i < n; i++)
			fds[i].revents = ts->pbuf[i].revents;
		hit = ts->pbuf[n].revents != 0;
		if (hit) {
			drain(pfd);
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
			r--;
		}
		if (r > 0 || timeout == 0 || kind == 1 || !hit)
			return r;
		if (!esca_table_inflight(ts->table)) {
			timeout = timeout > 0 ? (int)remaining_ms(deadline) : timeout;
			return real.poll(fds, n, timeout);
		}
		if (timeout > 0) {
			timeout = (int)remaining_ms(deadline);
			if (timeout == 0)
				return 0;
		}
	}
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return poll_common(fds, n, timeout, NULL, NULL, 0);
}
EXPORT int __poll(struct pollfd *fds, nfds_t n, int timeout)
	__attribute__((alias("poll")));

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t len)
{
	if (len / sizeof(*fds) < n)
		abort();	/* what glibc's fortified poll does */
	return poll(fds, n, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t,
		 const sigset_t *mask)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return poll_common(fds, n, -1, t, mask, 1);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *t,
		       const sigset_t *mask, size_t len)
{
	if (len / sizeof(*fds) < n)
		abort();
	return ppoll(fds, n, t, mask);
}

static int select_common(int nfds, fd_set *r, fd_set *w, fd_set *e,
			 struct timeval *tv, const struct timespec *t,
			 const sigset_t *mask, int kind)
{
	struct tstate *ts = tls_ts;
	int pfd = before_wait(ts), n;
	fd_set mine;

	if (pfd >= FD_SETSIZE) {
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_WAIT);
		pfd = -1;
	}
	if (pfd < 0) {
		if (kind == 0)
			return real.select(nfds, r, w, e, tv);
		return real.pselect(nfds, r, w, e, t, mask);
	}
	for (;;) {
		int hit;

		if (r)
			mine = *r;
		else
			FD_ZERO(&mine);
		FD_SET(pfd, &mine);
		esca_table_progress_arm(ts->table, 1);
		ts->in_wait = 1;
		if (kind == 0)
			n = real.select(nfds > pfd ? nfds : pfd + 1, &mine, w, e, tv);
		else
			n = real.pselect(nfds > pfd ? nfds : pfd + 1, &mine, w, e,
					 t, mask);
		ts->in_wait = 0;
		esca_table_progress_arm(ts->table, 0);
		if (n < 0)
			return n;
		hit = FD_ISSET(pfd, &mine);
		if (hit) {
			FD_CLR(pfd, &mine);
			n--;
			drain(pfd);
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
		}
		if (r)
			*r = mine;
		/* Linux select updates tv with the time left: loop on it */
		if (n > 0 || !hit || kind == 1 ||
		    (tv && tv->tv_sec == 0 && tv->tv_usec == 0))
			return n;
		if (w || e)
			return n;	/* their sets were consumed */
		if (!esca_table_inflight(ts->table))
			return real.select(nfds, r, w, e, tv);
	}
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return select_common(nfds, r, w, e, tv, NULL, NULL, 0);
}
EXPORT int __select(int nfds, fd_set *r, fd_set *w, fd_set *e,
		    struct timeval *tv) __attribute__((alias("select")));

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e,
		   const struct timespec *t, const sigset_t *mask)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return select_common(nfds, r, w, e, NULL, t, mask, 1);
}

/* ---- reads and other calls that depend on pending entries --------------- */

/* A read on fd.  On a non-blocking socket nothing pending changes what it
 * returns; on a pipe or file our own pending writes do (sync the fd); a
 * read that may block could wait for a peer that waits for our bytes
 * (flush everything first). */
static inline void pre_read(int fd)
{
	struct tstate *ts = tls_ts;
	struct fdinfo *fi;

	if (likely(!ts) || ts->guard || !ts->table ||
	    !esca_table_pending(ts->table))
		return;
	fi = fdi(fd);
	if (fi && fi->kind == FK_UNKNOWN)
		fd_detect(fd, fi);
	if (fi && (fi->kind == FK_STREAM || fi->kind == FK_SOCKET) &&
	    (fi->flags & FI_NONBLOCK)) {
		if (ts->oldest_ns && now_ns() - ts->oldest_ns > cfg.flush_ns)
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_TIMER);
		return;
	}
	lib_sync_fd(ts, fd);
	if (!fi || (fi->kind != FK_FILE && !(fi->flags & FI_NONBLOCK)))
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_SYNC);
}

/* A call that reads or changes state of fd that its pending entries touch. */
static inline void pre_fd(int fd)
{
	struct tstate *ts = tls_ts;

	if (likely(!ts) || ts->guard || !ts->table ||
	    !esca_table_pending(ts->table))
		return;
	lib_sync_fd(ts, fd);
}

/* ---- lever "reads": a read whose answer is known ------------------------
 *
 * A server answers a request and reads its socket again before its next
 * wait: when its previous read found the socket empty (EAGAIN, or fewer
 * bytes than asked: TCP and unix stream reads stop only at an empty queue)
 * and this thread has not waited since, the kernel says EAGAIN unless bytes
 * arrived in between - and then the answer EAGAIN is the one the kernel
 * would have given a moment earlier.  Nothing is lost: the socket is in one
 * of the program's epoll sets, whose next wait reports it (level-triggered:
 * it is readable; edge-triggered or one-shot: the arrival, or the re-arm,
 * happened after the wait that reported it last).  Each such answer is given
 * once; the read after it goes to the kernel, so a program that never waits
 * cannot spin on us. */
static inline struct fdinfo *read_begin(int fd, int flags)
{
	struct tstate *ts = tls_ts;
	struct fdinfo *fi;

	if (!(cfg.levers & LV_READS) || !ts || ts->guard ||
	    (flags & ~MSG_DONTWAIT))
		return NULL;
	fi = fdi(fd);
	if (!fi || fi->kind != FK_STREAM ||
	    (fi->flags & (FI_EPOLLIN | FI_NOANSWER | FI_FAILED)) != FI_EPOLLIN ||
	    !((fi->flags & FI_NONBLOCK) || (flags & MSG_DONTWAIT)))
		return NULL;
	ts->reads_seen++;
	return fi;
}

/* 1: answer EAGAIN without the kernel */
static inline int read_known_empty(struct fdinfo *fi, size_t n)
{
	struct tstate *ts = tls_ts;

	if (fi->drained != ts->wait_token)
		return 0;
	fi->drained = 0;
	if (!n)
		return 0;
	ts->reads_answered++;
	errno = EAGAIN;
	return 1;
}

static inline void read_end(struct fdinfo *fi, size_t n, ssize_t r)
{
	if (r < 0 ? errno == EAGAIN : (r > 0 && (size_t)r < n))
		fi->drained = tls_ts->wait_token;
	else
		fi->drained = 0;
}

/* The start of a read of n bytes on fd: 1 when it is answered EAGAIN here;
 * else the call goes to the kernel and *fip (or NULL) is for read_done. */
static inline int read_pre(int fd, size_t n, int flags, struct fdinfo **fip)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	pre_read(fd);
	*fip = read_begin(fd, flags);
	return *fip && read_known_empty(*fip, n);
}

static inline ssize_t read_done(struct fdinfo *fi, size_t n, ssize_t r)
{
	if (fi)
		read_end(fi, n, r);
	return r;
}

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	struct fdinfo *fi;

	if (read_pre(fd, n, 0, &fi))
		return -1;
	return read_done(fi, n, real.read(fd, buf, n));
}
EXPORT ssize_t __read(int fd, void *buf, size_t n)
	__attribute__((alias("read")));

EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t len)
{
	if (len < n)
		abort();
	return read(fd, buf, n);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
	struct fdinfo *fi;
	size_t total = 0;
	int ok = n > 0 && n <= IOV_MAX && iov;

	for (int i = 0; ok && i < n; i++) {
		if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
			ok = 0;
		else
			total += iov[i].iov_len;
	}
	/* flags -1: a bad iovec is the kernel's to answer, never ours */
	if (read_pre(fd, total, ok ? 0 : -1, &fi))
		return -1;
	return read_done(fi, total, real.readv(fd, iov, n));
}

EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	struct fdinfo *fi;

	if (read_pre(fd, n, flags, &fi))
		return -1;
	return read_done(fi, n, real.recv(fd, buf, n, flags));
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t len, int flags)
{
	if (len < n)
		abort();
	return recv(fd, buf, n, flags);
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags,
			struct sockaddr *from, socklen_t *fromlen)
{
	struct fdinfo *fi;

	if (read_pre(fd, n, flags, &fi))
		return -1;
	return read_done(fi, n, real.recvfrom(fd, buf, n, flags, from, fromlen));
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t len,
			      int flags, struct sockaddr *from,
			      socklen_t *fromlen)
{
	if (len < n)
		abort();
	return recvfrom(fd, buf, n, flags, from, fromlen);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	pre_read(fd);
	return real.recvmsg(fd, m, flags);
}

/* The program's epoll registrations: a socket in a set for reading is one
 * whose reads the "reads" lever may answer. */
EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	long r = syscall(SYS_epoll_ctl, epfd, op, fd, ev);
	struct fdinfo *fi = fdi(fd);

	if (r < 0 || !fi)
		return (int)r;
	if (fi->kind == FK_UNKNOWN && op != EPOLL_CTL_DEL)
		fd_detect(fd, fi);
	if (op != EPOLL_CTL_DEL && ev && (ev->events & EPOLLIN))
		fi->flags |= FI_EPOLLIN;
	else if (op == EPOLL_CTL_DEL || op == EPOLL_CTL_MOD)
		fi->flags &= (uint16_t)~FI_EPOLLIN;
	if (op != EPOLL_CTL_DEL && ev) {
		fi->ep_fd = epfd + 1;
		fi->ep_events = ev->events;
		fi->ep_data = ev->data.u64;
	} else if (op == EPOLL_CTL_DEL && fi->ep_fd == epfd + 1) {
		fi->ep_fd = 0;
	}
	return (int)r;
}

EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	pre_fd(fd);
	return real.pread(fd, buf, n, off);
}
EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
	__attribute__((alias("pread64")));

EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off,
			     size_t len)
{
	if (len < n)
		abort();
	return pread64(fd, buf, n, off);
}

EXPORT off_t lseek64(int fd, off_t off, int whence)
{
	pre_fd(fd);
	return (off_t)syscall(SYS_lseek, fd, off, whence);
}
EXPORT off_t lseek(int fd, off_t off, int whence)
	__attribute__((alias("lseek64")));

static void after_accept(int lfd, int fd, int flags)
{
	struct fdinfo *fi = fdi(fd), *li = fdi(lfd);

	if (!fi)
		return;
	fd_forget(fi);
	if (li && li->kind == FK_UNKNOWN)
		fd_detect(lfd, li);
	if (li && li->kind == FK_STREAM) {
		fi->kind = FK_STREAM;
		fi->flags = (li->flags & FI_TCP) |
			    ((flags & SOCK_NONBLOCK) ? FI_NONBLOCK : 0);
		/* a new connection's cork is off (unless it came corked
		 * from a listener corked by the program) */
		if ((li->flags & FI_TCP) && !(li->flags & FI_CORKED))
			fi->flags |= FI_CORK_KNOWN;
	}
}

EXPORT int accept4(int fd, struct sockaddr *a, socklen_t *l, int flags)
{
	int r;

	if (unlikely(!lib_ready))
		esca_lib_init();
	pre_read(fd);
	r = real.accept4(fd, a, l, flags);
	if (r >= 0)
		after_accept(fd, r, flags);
	return r;
}

EXPORT int accept(int fd, struct sockaddr *a, socklen_t *l)
{
	int r;

	if (unlikely(!lib_ready))
		esca_lib_init();
	pre_read(fd);
	r = real.accept(fd, a, l);
	if (r >= 0)
		after_accept(fd, r, 0);
	return r;
}

static int share_key(int old, int newfd);

static void note_nonblock(int fd, long on)
{
	struct fdinfo *fi = fdi(fd);

	if (fi && fi->kind != FK_UNKNOWN && fi->kind != FK_BAD) {
		if (on)
			fi->flags |= FI_NONBLOCK;
		else
			fi->flags &= (uint16_t)~FI_NONBLOCK;
	}
}

static int fcntl_common(int fd, int cmd, long arg)
{
	struct fdinfo *fi = fdi(fd);
	long r;

	if (fi && fi->kind == FK_BAD)
		pre_fd(fd);	/* a deferred close of fd: EBADF, as without us */
	r = syscall(SYS_fcntl, fd, cmd, arg);
	if (r < 0) {
		return -1;
	}
	if (cmd == F_SETFL)
		note_nonblock(fd, arg & O_NONBLOCK);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
		struct fdinfo *fi = fdi((int)r);

		if (fi) {
			fd_forget(fi);
			share_key(fd, (int)r);
		}
	}
	return (int)r;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	long arg;

	va_start(ap, cmd);
	arg = va_arg(ap, long);
	va_end(ap);
	return fcntl_common(fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	long arg;

	va_start(ap, cmd);
	arg = va_arg(ap, long);
	va_end(ap);
	return fcntl_common(fd, cmd, arg);
}
EXPORT int __fcntl(int fd, int cmd, ...) __attribute__((alias("fcntl")));

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	long r;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (req != FIONBIO)
		pre_fd(fd);	/* FIONREAD, SIOCOUTQ, ... see pending bytes */
	r = syscall(SYS_ioctl, fd, req, arg);
	if (r >= 0 && req == FIONBIO && arg)
		note_nonblock(fd, *(int *)arg);
	return (int)r;
}

/* The program's own fstat tells us what a regular file is (and its size,
 * fresher than ours), so a file a server opens per request costs no look-up
 * of our own. */
EXPORT int fstat64(int fd, struct stat64 *st)
{
	struct fdinfo *fi;
	long r;

	pre_fd(fd);	/* the size after our pending writes */
	r = syscall(SYS_fstat, fd, st);
	fi = fdi(fd);
	if (r == 0 && fi && S_ISREG(st->st_mode) &&
	    (fi->kind == FK_UNKNOWN || fi->kind == FK_FILE)) {
		fi->kind = FK_FILE;
		fi->size = st->st_size;
	}
	return (int)r;
}
EXPORT int fstat(int fd, struct stat *st)
{
	return fstat64(fd, (struct stat64 *)st);
}

EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct fdinfo *fi = fdi(fd);

	if (level == IPPROTO_TCP && name == TCP_CORK && fi && val && len &&
	    *len >= (socklen_t)sizeof(int) && (fi->flags & FI_CORK_KNOWN)) {
		/* what the program set, in order: while composed, the
		 * kernel's cork is off and the program's is on */
		*(int *)val = !!(fi->flags & FI_CORKED);
		*len = sizeof(int);
		return 0;
	}
	pre_fd(fd);	/* TCP_CORK and friends: what was set, in order */
	return (int)syscall(SYS_getsockopt, fd, level, name, val, len);
}

static void before_replace(int newfd)
{
	struct fdinfo *fi = fdi(newfd);

	pre_fd(newfd);
	if (fi)
		fd_forget(fi);
}

/* newfd now shares old's open file: order their entries together */
static int share_key(int old, int newfd)
{
	struct fdinfo *o = fdi(old), *n = fdi(newfd);

	if (newfd >= 0 && o && n)
		n->key1 = o->key1 ? o->key1 : old + 1;
	return newfd;
}

EXPORT int dup2(int old, int newfd)
{
	int r;

	if (unlikely(!lib_ready))
		esca_lib_init();
	if (old != newfd)
		before_replace(newfd);
	r = real.dup2(old, newfd);
	if (r >= 0 && old != newfd)
		share_key(old, r);
	return r;
}

/* An fd the program opens: its access mode is in the flags, so a write to
 * it or a sendfile from it need not ask the kernel (fd_access_ok). */
static int after_open(int fd, int flags)
{
	struct fdinfo *fi = fdi(fd);

	if (fi) {
		fd_forget(fi);
		fd_note_access(fi, flags);
	}
	return fd;
}

/* Before an open: writes queued to regular files are in them (the file
 * opened may be one of them, under another name). */
static inline void before_open(void)
{
	struct tstate *ts = tls_ts;

	if (unlikely(ts && ts->files_dirty) && !ts->guard && ts->table)
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_SYNC);
}

static inline int open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ?
	       va_arg(ap, int) : 0;
}

static int open_common(int dirfd, const char *path, int flags, int mode)
{
	before_open();
	return after_open((int)syscall(SYS_openat, dirfd, path, flags, mode),
			  flags);
}

EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	int mode;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	return open_common(AT_FDCWD, path, flags, mode);
}
EXPORT int open(const char *path, int flags, ...) __attribute__((alias("open64")));

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	int mode;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	return open_common(dirfd, path, flags, mode);
}
EXPORT int openat(int dirfd, const char *path, int flags, ...)
	__attribute__((alias("openat64")));

EXPORT int __open_2(const char *path, int flags)
{
	return open_common(AT_FDCWD, path, flags, 0);
}
EXPORT int __open64_2(const char *path, int flags)
	__attribute__((alias("__open_2")));

EXPORT int dup(int old)
{
	int r = (int)syscall(SYS_dup, old);
	struct fdinfo *fi = fdi(r);

	if (r >= 0 && fi) {
		fd_forget(fi);
		share_key(old, r);
	}
	return r;
}

EXPORT int dup3(int old, int newfd, int flags)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	if (old != newfd)
		before_replace(newfd);
	if (real.dup3(old, newfd, flags) < 0)
		return -1;
	return share_key(old, newfd);
}

/* fclose closes its fd inside glibc, where close() is not interposed */
EXPORT int fclose(FILE *fp)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	int fd = fp ? fileno(fp) : -1, r;
	struct fdinfo *fi;

	pre_fd(fd);
	r = real.fclose(fp);
	if ((fi = fdi(fd)))
		fd_forget(fi);	/* the number means something new now */
	return r;
}

EXPORT int fsync(int fd)
{
	pre_fd(fd);
	return (int)syscall(SYS_fsync, fd);
}

EXPORT int fdatasync(int fd)
{
	pre_fd(fd);
	return (int)syscall(SYS_fdatasync, fd);
}

EXPORT int ftruncate64(int fd, off_t len)
{
	pre_fd(fd);
	return (int)syscall(SYS_ftruncate, fd, len);
}
EXPORT int ftruncate(int fd, off_t len) __attribute__((alias("ftruncate64")));

/* ---- calls that block without a wait set: finish everything first ------- */

static inline void before_block(void)
{
	struct tstate *ts = tls_ts;

	if (ts && !ts->guard)
		ts->wait_token++;
	if (ts && !ts->guard && ts->table && esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_SYNC);
}

EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
	before_block();
	return (int)syscall(SYS_nanosleep, req, rem);
}

EXPORT int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
			   struct timespec *rem)
{
	long r;

	before_block();
	r = syscall(SYS_clock_nanosleep, clk, flags, req, rem);
	return r < 0 ? errno : 0;	/* it returns the error, not -1 */
}

EXPORT int usleep(useconds_t us)
{
	struct timespec t = { us / 1000000, (long)(us % 1000000) * 1000 };

	before_block();
	return (int)syscall(SYS_nanosleep, &t, NULL);
}

EXPORT unsigned int sleep(unsigned int s)
{
	struct timespec t = { s, 0 }, rem = { 0, 0 };

	before_block();
	if (syscall(SYS_nanosleep, &t, &rem) < 0 && errno == EINTR)
		return (unsigned int)rem.tv_sec + (rem.tv_nsec > 0);
	return 0;
}

EXPORT int pause(void)
{
	before_block();
	return (int)syscall(SYS_pause);
}

EXPORT pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
	if (!(options & WNOHANG))
		before_block();
	return (pid_t)syscall(SYS_wait4, pid, status, options, ru);
}

EXPORT pid_t waitpid(pid_t pid, int *status, int options)
{
	return wait4(pid, status, options, NULL);
}

EXPORT pid_t wait(int *status)
{
	return wait4(-1, status, 0, NULL);
}

/* ---- lifecycle: exec, _exit, vfork -------------------------------------- */

EXPORT int execve(const char *p, char *const argv[], char *const envp[])
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_lifecycle_flush();
	return real.execve(p, argv, envp);
}

EXPORT int execv(const char *p, char *const argv[])
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_lifecycle_flush();
	return real.execv(p, argv);
}

EXPORT int execvp(const char *p, char *const argv[])
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_lifecycle_flush();
	return real.execvp(p, argv);
}

EXPORT int execvpe(const char *p, char *const argv[], char *const envp[])
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_lifecycle_flush();
	return real.execvpe(p, argv, envp);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_lifecycle_flush();
	return real.fexecve(fd, argv, envp);
}

EXPORT void _exit(int status)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_lifecycle_flush();
	real.exit_(status);
}

EXPORT void _Exit(int status)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_lifecycle_flush();
	real.Exit(status);
}

/* A vfork child shares our memory and our thread's table: make it a fork,
 * which POSIX allows, so the child cannot touch the parent's ring. */
EXPORT pid_t vfork(void)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return real.fork();
}
