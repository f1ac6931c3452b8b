/* SPDX-License-Identifier: MIT
 * read.c - the read side: read, readv, recv, recvfrom, recvmsg (and their
 * _chk forms), accept, accept4 run after what they depend on (before_read);
 * lever "reads" answers a read known to find nothing; epoll_ctl records the
 * program's registrations that lever and the owed events use. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

/* ---- what a read waits for ---------------------------------------------- */

/* A read on fd.  On a non-blocking socket nothing pending changes what it
 * returns; on a pipe or file our own pending writes do (sync the fd); a
 * read that may block could wait for a peer that waits for our bytes
 * (flush everything first). */
static inline void before_read(int fd, int flags)
{
	struct tstate *ts = tls_ts;
	struct fdinfo *fi;

	/* lever prefetch: no peek answers it from now on, and the bytes
	 * answered from one are gone from the kernel first */
	if (unlikely(cfg.levers & LEVER_PREFETCH))
		prefetch_before_kernel(fd);
	fi = fdi(fd);
	if ((cfg.levers & LEVER_READS) &&
	    !(fi && (fi->kind == FK_STREAM || fi->kind == FK_SOCKET ||
		     fi->kind == FK_FILE) &&
	      (fi->kind == FK_FILE || (fi->flags & FI_NONBLOCK))))
		wait_epoch_bump();	/* a read that may block (a pipe a
					 * child signals through): reads'
					 * notes are old after it */
	if (likely(!ts) || ts->guard || !ts->table)
		return;
	if (!esca_table_pending(ts->table)) {
		/* a read that may block, its timer still running from
		 * entries gone since: stopped (a receive timeout makes the
		 * kernel end the read with EINTR at a signal); a regular
		 * file's read is never ended by a signal: left alone (it cost
		 * two timer_settime a request: tests/preload/test_fastpath) */
		if (unlikely(ts->timer_set && ts->has_timer)) {
			fi = fdi(fd);
			if (fi && fi->kind == FK_UNKNOWN)
				fd_detect(fd, fi);
			if (!fi || (fi->kind != FK_FILE &&
				    !(fi->flags & FI_NONBLOCK) &&
				    !read_restarts_now(fi, fd, flags)))
				timer_quiet(ts);
		}
		return;
	}
	fi = fdi(fd);
	if (fi && fi->kind == FK_UNKNOWN)
		fd_detect(fd, fi);
	if (fi && (fi->kind == FK_STREAM || fi->kind == FK_SOCKET) &&
	    (fi->flags & FI_NONBLOCK)) {
		/* the other end of a socketpair of the program's: its bytes
		 * are there on Linux */
		if (unlikely(fi->peer))
			lib_push_peer(ts, fi);
		/* an old batch: its timer's shot flushes it (or, with no
		 * timer, the clock says so here) */
		else if (unlikely(!ts->has_timer) && ts->oldest_ns &&
			 now_ns() - ts->oldest_ns > cfg.flush_ns)
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_TIMER);
		return;
	}
	lib_sync_fd(ts, fd);
	if (!fi || (fi->kind != FK_FILE && !(fi->flags & FI_NONBLOCK)))
		lib_flush_block(ts, fd, BLOCK_ROUNDS,
				!esca_table_pending(ts->table) &&
				read_restarts(fd, flags));
}

/* ---- lever "reads": a read whose answer is known ------------------------
 *
 * A server answers a request and reads its socket again before its next
 * wait: when its previous read found the socket empty and no thread has
 * waited or blocked since (lib_wait_epoch, preload.h: a per-thread mark
 * missed a dispatcher thread's wait), the kernel says EAGAIN unless bytes
 * arrived in between -
 * and then the answer EAGAIN is the one the kernel would have given a moment
 * earlier.  Nothing is lost: the socket is in one of the program's epoll
 * sets, whose next wait reports it (level-triggered: it is readable;
 * edge-triggered or one-shot: the arrival, or the re-arm, happened after the
 * wait that reported it last).  Each such answer is given once; the read
 * after it goes to the kernel, so a program that never waits cannot spin on
 * us.
 *
 * "Found the socket empty": EAGAIN on any stream socket; a read shorter
 * than asked only on TCP.  A unix stream read stops short at an SCM_RIGHTS
 * or SO_PASSCRED message boundary with bytes left, which an edge-triggered
 * loop would then never be told of.  TCP's urgent mark stops a read short
 * too: there the lever can still answer EAGAIN with bytes left (a known
 * limit, README "Limits"; telling it apart costs a syscall per read, which
 * is what the lever saves).  DESIGN.md, "Vocabulary" (lever). */
static inline struct fdinfo *read_begin(int fd, int flags)
{
	struct tstate *ts = tls_ts;
	struct fdinfo *fi;

	if (!(cfg.levers & LEVER_READS) || !ts || ts->guard ||
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

	if (fi->drained != __atomic_load_n(&lib_wait_epoch, __ATOMIC_ACQUIRE))
		return 0;
	fi->drained = 0;
	if (!n)
		return 0;
	ts->reads_answered++;
	errno = EAGAIN;
	return 1;
}

/* Did the read find the socket empty?  EAGAIN, on any stream socket; a
 * short read, on TCP only (unix stream reads stop short at SCM_RIGHTS and
 * SO_PASSCRED message boundaries with bytes left). */
static inline void read_end(struct fdinfo *fi, size_t n, ssize_t r)
{
	if (r < 0 ? errno == EAGAIN :
	    (r > 0 && (size_t)r < n && (fi->flags & FI_TCP)))
		fi->drained = __atomic_load_n(&lib_wait_epoch, __ATOMIC_ACQUIRE);
	else
		fi->drained = 0;
}

/* A read of fd that found nothing, made again with nothing deferred since:
 * the program polls the socket by reading it, for a reply, say, to a
 * request of its own still queued, which Linux sent at its call.  What is
 * queued goes to the kernel first (waiting for none of it), else each round
 * trip waited for the timer's shot (2 ms; the reads' audit: a spinning
 * client took 2 ms a reply, plainly 0.02).  A server's reads that end at
 * EAGAIN are one per socket between deferred replies: never two in a row
 * on one fd. */
static inline void read_spins(int fd)
{
	struct tstate *ts = tls_ts;

	if (likely(!ts || ts->eagain_fd != fd + 1))
		return;
	ts->eagain_fd = 0;
	if (ts->eagain_mark == ts->nqueued && !ts->guard && ts->table &&
	    esca_table_pending(ts->table) > esca_table_inflight(ts->table))
		lib_flush(ts, ESCA_FLUSH_TRY, ESCA_WHY_SYNC);
}

static inline void read_found_nothing(int fd, ssize_t r)
{
	struct tstate *ts;

	if (likely(r >= 0) || errno != EAGAIN || !(ts = tls_ts))
		return;
	ts->eagain_fd = fd + 1;
	ts->eagain_mark = ts->nqueued;
}

/* Lever adapt: a read that may block on a socket is the thread's wait in a
 * program that asks (or answers) and waits for the other side with blocking
 * reads, as an epoll wait is an event loop's; read_done counts it
 * (adapt_wait: a wait, and an event if bytes came).  Before, such a thread
 * never measured and kept deferring, its sends flushed by the next read one
 * at a time: 100,000 round trips ran 1.17x plain's time, aside ~1.0x. */
static inline void read_may_block(int fd, int flags)
{
	struct tstate *ts = tls_ts;
	struct fdinfo *fi;

	if (!(cfg.levers & LEVER_ADAPT) || !ts || ts->guard || flags < 0 ||
	    (flags & MSG_DONTWAIT))
		return;
	fi = fdi(fd);
	if (fi && (fi->kind == FK_STREAM || fi->kind == FK_SOCKET) &&
	    !(fi->flags & FI_NONBLOCK))
		ts->ad.block_read = 1;
}

/* The start of a read of n bytes on fd: 1 when it is answered EAGAIN here;
 * else the call goes to the kernel and *fip (or NULL) is for read_done. */
static inline int read_pre(int fd, size_t n, int flags, struct fdinfo **fip)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	*fip = NULL;
	if (unlikely(fd_closed_here(fdi(fd)))) {
		errno = EBADF;	/* closed by the program, close pending */
		return 1;
	}
	before_read(fd, flags);
	read_spins(fd);
	read_may_block(fd, flags);
	*fip = read_begin(fd, flags);
	return *fip && read_known_empty(*fip, n);
}

static inline ssize_t read_done(int fd, struct fdinfo *fi, size_t n,
				ssize_t r)
{
	struct tstate *ts = tls_ts;

	if (fi)
		read_end(fi, n, r);
	read_found_nothing(fd, r);
	if (unlikely(ts && ts->ad.block_read)) {
		int e = errno;

		ts->ad.block_read = 0;
		adapt_wait(ts, r > 0);	/* lever adapt: read_may_block */
		errno = e;
	}
	return r;
}

/* Lever prefetch: a read answered from a peek (prefetch.c). */
static inline int prefetched(int fd, void *buf, size_t n, int flags,
			     ssize_t *r)
{
	struct iovec v = { buf, n };

	return unlikely(cfg.levers & LEVER_PREFETCH) &&
	       prefetch_answer(fd, &v, 1, n, flags, r);
}

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	struct fdinfo *fi;
	ssize_t r;

	if (prefetched(fd, buf, n, 0, &r))
		return r;
	if (read_pre(fd, n, 0, &fi))
		return -1;
	return read_done(fd, fi, n, real.read(fd, buf, n));
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
	ssize_t r;

	if (ok && unlikely(cfg.levers & LEVER_PREFETCH) &&
	    prefetch_answer(fd, iov, n, total, 0, &r))
		return r;
	/* flags -1: a bad iovec is the kernel's to answer, never ours */
	if (read_pre(fd, total, ok ? 0 : -1, &fi))
		return -1;
	return read_done(fd, fi, total, real.readv(fd, iov, n));
}

EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	struct fdinfo *fi;
	ssize_t r;

	if (prefetched(fd, buf, n, flags, &r))
		return r;
	if (read_pre(fd, n, flags, &fi))
		return -1;
	return read_done(fd, fi, n, real.recv(fd, buf, n, flags));
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
	return read_done(fd, fi, n, real.recvfrom(fd, buf, n, flags, from, fromlen));
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
	before_read(fd, flags);
	lib_new_fd();	/* the fds an SCM_RIGHTS brings get the lowest numbers */
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
		struct fdinfo *e = fdi(epfd);

		fi->ep_gen = e ? e->gen : 0;
		fi->ep_fd = epfd + 1;
		fi->ep_events = ev->events;
		fi->ep_data = ev->data.u64;
	} else if (op == EPOLL_CTL_DEL && fi->ep_fd == epfd + 1) {
		fi->ep_fd = 0;
	}
	if ((cfg.levers & LEVER_PREFETCH) && op != EPOLL_CTL_DEL && ev &&
	    (ev->events & EPOLLIN) && fi->kind == FK_STREAM &&
	    (fi->flags & FI_TCP))
		prefetch_map(epfd, fd, ev);	/* whose events name fd */
	return (int)r;
}

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
		fi->flags = (li->flags & FI_TCP) | FI_CONN |
			    ((flags & SOCK_NONBLOCK) ? FI_NONBLOCK : 0);
		fi->linger = li->linger;	/* inherited, as the kernel does */
		/* nodelay not: the listener's setsockopt may still have been
		 * queued when the kernel made this one (the review's probe) */
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
	before_read(fd, 0);
	lib_new_fd();
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
	before_read(fd, 0);
	lib_new_fd();
	r = real.accept(fd, a, l);
	if (r >= 0)
		after_accept(fd, r, 0);
	return r;
}
