/* SPDX-License-Identifier: MIT
 * whole.c - the program's own writes that go to the kernel (passed
 * through, not deferred): pass_write, pass_writev, pass_send, pass_sendto,
 * pass_sendmsg, pass_sendfile.  The library's timer signal (DESIGN.md,
 * "Flush triggers") may reach the thread inside one; a blocking write on a
 * pipe, a socket or a terminal that the kernel had copied part of then
 * returns that part (SA_RESTART or not), where plain Linux, with no such
 * signal, had blocked until every byte went.  A program that does not loop
 * on a short count loses the rest: CPython's print to a pipe (its
 * TextIOWrapper drops what a short write left, cpython gh-85393) lost the
 * tail of a 1 MiB line (tests/preload/test_whole_writes.py).
 *
 * A short count that only the library's signal made is finished here: the
 * rest goes out in the same call, as it would have.  Only on a blocking
 * pipe, socket or terminal (a regular file's write is short for a reason of
 * its own: RLIMIT_FSIZE, a full disk), without MSG_DONTWAIT, a send timeout
 * (SO_SNDTIMEO ends a send short) or a flag that must not repeat (MSG_OOB,
 * MSG_FASTOPEN, MSG_ZEROCOPY); a sendfile only into a socket (into a pipe it
 * is one splice of what fits: short by design).  Each further call first
 * waits for room with ppoll, which the kernel never restarts after a
 * handler: a handler of the program's that runs there ends the call with
 * the bytes gone, as it ended Linux's (a write blocked with nothing copied
 * is restarted after an SA_RESTART handler, where Linux's, which had copied
 * some, returned).  On a socket ppoll's POLLERR or POLLHUP end it too, its
 * error left for the program's next call, as Linux leaves it when bytes
 * went; a socket's further sends carry MSG_NOSIGNAL (Linux raises no
 * SIGPIPE at a send that moved bytes; a pipe's write raises it, so a pipe
 * whose reader left is written once more), and an error one takes is kept for
 * the fd's next call (fdinfo.err).  Linux's call holds its file: another
 * thread's close of the number, and a new file on it, must not get the
 * rest.  So the further calls use a dup of the library's own (own_dup: at
 * the top of the range, never a low number the program's next open should
 * get; made under guard, so that a handler's dup2 or close_range meanwhile
 * goes to the kernel rather than wait for this making), taken only while
 * the number's fdinfo.gen, bumped at every close of it, is the one read
 * before the program's call.  Where no dup can be made (RLIMIT_NOFILE),
 * they use the number itself, each only while its gen stands (a few
 * instructions between the check and the call's entry stay open).  The
 * fast path: three loads before the call, a compare after. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload.h"

/* the core's own fds at the top of the range (uring_setup.c) */
extern HIDDEN int esca__fd_dup_high(int fd);
extern HIDDEN void esca__fd_gone(int fd);
extern HIDDEN void (*esca__fd_making_hook)(int begin);

#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif
#define NOT_AGAIN (MSG_DONTWAIT | MSG_OOB | MSG_FASTOPEN | MSG_ZEROCOPY)

/* the thread's signal counts before a call (tstate.timer_hits: the
 * library's timer signal; sig_hits: the program's handlers), and the
 * fd's generation */
struct mark {
	struct tstate *ts;
	unsigned hits, sigs;
	uint16_t gen;		/* the fd number's fdinfo.gen */
};

static inline void mark(struct mark *m, int fd)
{
	struct fdinfo *fi;

	m->ts = tls_ts;
	if (m->ts) {
		m->hits = m->ts->timer_hits;
		m->sigs = m->ts->sig_hits;
		fi = fdi(fd);
		m->gen = fi ? fi->gen : 0;
	}
}

/* Does fd still name the file the program's call wrote (no close of the
 * number since the mark)? */
static inline int same_file(const struct mark *m, int fd)
{
	struct fdinfo *fi = fdi(fd);

	return fi && fi->gen == m->gen;
}

/* Did the library's signal, and no handler of the program's, come since
 * the mark? */
static inline int ours_only(const struct mark *m)
{
	return m->ts && m->ts->timer_hits != m->hits &&
	       m->ts->sig_hits == m->sigs;
}

/* r of n bytes: short, and only the library's signal came in the call? */
static inline int cut_by_us(const struct mark *m, ssize_t r, size_t n)
{
	return unlikely(r > 0 && (size_t)r < n) && ours_only(m);
}

/* One way to send the rest of a call. */
struct more {
	int kind;		/* MORE_* */
	int fd, flags;		/* fd: the program's, or our dup of it */
	int own, own_in;	/* our dups (fd, in), or -1 */
	int sock;		/* fd is a socket: sends, MSG_NOSIGNAL */
	const void *buf;	/* write, send, sendto */
	const struct iovec *iov;	/* writev, sendmsg */
	int iovcnt;
	const struct msghdr *msg;	/* sendmsg */
	const struct sockaddr *to;	/* sendto */
	socklen_t tolen;
	int in;			/* sendfile */
	off_t *off;
};
enum { MORE_BUF, MORE_IOV, MORE_SENDFILE };
#define MORE_IOVS 64

/* Would the plain call have gone on blocking?  A blocking pipe, socket or
 * terminal; for a socket no send timeout (c->sock set).  Only after a
 * short count (system calls, never on the fast path). */
static int would_block_on(struct more *c)
{
	struct timeval tv = { 0, 0 };
	socklen_t len = sizeof(tv);
	struct stat st;
	long fl;

	if (c->flags & NOT_AGAIN)
		return 0;
	fl = syscall(SYS_fcntl, c->fd, F_GETFL);
	if (fl < 0 || (fl & O_NONBLOCK) ||
	    syscall(SYS_fstat, c->fd, &st) < 0)
		return 0;
	c->sock = S_ISSOCK(st.st_mode);
	if (c->kind == MORE_SENDFILE && !c->sock)
		return 0;
	if (!c->sock)
		return S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode);
	return syscall(SYS_getsockopt, c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv,
		       &len) == 0 && !tv.tv_sec && !tv.tv_usec;
}

/* A dup of fd of the library's: close-on-exec, in the top slots of the
 * range (esca__fd_dup_high: as the core's own fds, never a low number),
 * marked internal (invisible to the program's close, close_range, dup2);
 * -1 when none is free there.  Under guard (see above), and as the core
 * makes its own fds (esca__fd_making: the program's close_range and dup2
 * held off). */
static int own_dup(int fd)
{
	struct tstate *ts = tls_ts;
	int d;

	if (!ts)
		return -1;
	ts->guard++;
	if (esca__fd_making_hook)
		esca__fd_making_hook(1);
	d = esca__fd_dup_high(fd);
	if (esca__fd_making_hook)
		esca__fd_making_hook(0);
	lib_leave(ts);
	return d < 0 ? -1 : d;
}

static void own_close(int fd)
{
	struct tstate *ts = tls_ts;

	if (fd < 0 || !ts)
		return;
	ts->guard++;
	esca__fd_gone(fd);
	syscall(SYS_close, fd);
	lib_leave(ts);
}

/* The iovecs of iov (n of them) past the first done bytes, at most max of
 * them, into out: how many. */
static int iov_rest(const struct iovec *iov, int n, size_t done,
		    struct iovec *out, int max)
{
	int i = 0, k = 0;

	while (i < n && done >= iov[i].iov_len)
		done -= iov[i++].iov_len;
	for (; i < n && k < max; i++, k++) {
		out[k].iov_base = (char *)iov[i].iov_base + done;
		out[k].iov_len = iov[i].iov_len - done;
		done = 0;
	}
	return k;
}

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;

	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* The call for the bytes from done on (of n): its count; *asked, what it
 * asked for (a window of at most MORE_IOVS iovecs asks less than the
 * rest).  A socket's goes as sendmsg with MSG_NOSIGNAL, without the
 * ancillary data, which went with the first bytes. */
static ssize_t rest_call(const struct more *c, size_t done, size_t n,
			 size_t *asked)
{
	struct iovec w[MORE_IOVS];
	struct msghdr h = { 0 };
	int k;

	if (c->kind == MORE_SENDFILE) {	/* *off, or the file's offset, moved */
		*asked = n - done;
		return real.sendfile(c->fd, c->in, c->off, n - done);
	}
	if (c->kind == MORE_BUF) {
		w[0].iov_base = (char *)c->buf + done;
		w[0].iov_len = n - done;
		k = 1;
	} else {
		k = iov_rest(c->iov, c->iovcnt, done, w, MORE_IOVS);
	}
	*asked = iov_total(w, k);
	if (!c->sock)
		return real.writev(c->fd, w, k);
	if (c->msg) {
		h.msg_name = c->msg->msg_name;
		h.msg_namelen = c->msg->msg_namelen;
	} else {
		h.msg_name = (void *)c->to;
		h.msg_namelen = c->to ? c->tolen : 0;
	}
	h.msg_iov = w;
	h.msg_iovlen = (size_t)k;
	return real.sendmsg(c->fd, &h, c->flags | MSG_NOSIGNAL);
}

/* Wait for room on c->fd: 1 when there is (write on), 0 when a handler of
 * the program's ran or the socket has an error or a hang-up (end the call
 * with what went). */
static int room_for_more(const struct more *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLOUT };

	for (;;) {
		struct mark m;
		long r;

		mark(&m, c->fd);
		r = syscall(SYS_ppoll, &p, 1, NULL, NULL, (size_t)(_NSIG / 8));
		if (r > 0)
			return !(p.revents & POLLNVAL) &&
			       (!c->sock || !(p.revents & (POLLERR | POLLHUP)));
		if (r < 0 && errno == EINTR && ours_only(&m))
			continue;
		return 0;
	}
}

/* The first call returned r of n bytes: finish what the library's signal
 * cut short.  Returns the count of bytes that went (errno as before the
 * call; a later error ends it with the bytes gone, as Linux's blocking
 * write ends, a socket's kept for the fd's next call). */
static __attribute__((noinline, cold)) ssize_t
finish(struct more *c, const struct mark *first, ssize_t r, size_t n)
{
	struct fdinfo *fi = fdi(c->fd);
	struct mark m;
	ssize_t k = r;
	size_t asked = n;
	int e = errno, pfd = c->fd;

	c->own = c->own_in = -1;
	if (!would_block_on(c) || !same_file(first, c->fd)) {
		errno = e;
		return r;
	}
	if ((c->own = own_dup(c->fd)) >= 0 && c->kind == MORE_SENDFILE &&
	    (c->own_in = own_dup(c->in)) < 0) {
		own_close(c->own);
		c->own = -1;
	}
	if (!same_file(first, c->fd)) {		/* closed meanwhile */
		own_close(c->own);
		own_close(c->own_in);
		errno = e;
		return r;
	}
	if (c->own >= 0) {
		c->fd = c->own;
		if (c->own_in >= 0)
			c->in = c->own_in;
	}
	/* on while the last call went whole (a window) or only the
	 * library's signal cut it, and (without a dup of ours) the number
	 * names the same file */
	for (;;) {
		if ((size_t)r >= n ||
		    (c->own < 0 && !same_file(first, c->fd)) ||
		    !room_for_more(c) ||
		    (c->own < 0 && !same_file(first, c->fd)))
			break;
		mark(&m, c->fd);
		k = rest_call(c, (size_t)r, n, &asked);
		if (k <= 0) {
			/* kept for the program's next call on the socket */
			if (k < 0 && c->sock && fi && same_file(first, pfd) &&
			    errno != EPIPE && errno != EAGAIN &&
			    errno != EINTR) {
				int none = 0;

				__atomic_compare_exchange_n(&fi->err, &none,
							    errno, 0,
							    __ATOMIC_RELAXED,
							    __ATOMIC_RELAXED);
			}
			break;
		}
		r += k;
		if ((size_t)k != asked && !cut_by_us(&m, k, asked))
			break;
	}
	own_close(c->own);
	own_close(c->own_in);
	errno = e;
	return r;
}

static __attribute__((noinline, cold)) ssize_t
finish_buf(const struct mark *m, int fd, const void *buf, size_t n,
	   int flags, const struct sockaddr *to, socklen_t tolen, ssize_t r)
{
	struct more c = { .kind = MORE_BUF, .fd = fd, .flags = flags,
			  .buf = buf, .to = to, .tolen = tolen };

	return finish(&c, m, r, n);
}

static __attribute__((noinline, cold)) ssize_t
finish_iov(const struct mark *m, int fd, const struct iovec *iov, int cnt,
	   int flags, const struct msghdr *msg, ssize_t r)
{
	struct more c = { .kind = MORE_IOV, .fd = fd, .flags = flags,
			  .iov = iov, .iovcnt = cnt, .msg = msg };

	if (cnt < 0 || cnt > IOV_MAX)
		return r;
	return finish(&c, m, r, iov_total(iov, cnt));
}

ssize_t pass_write(int fd, const void *buf, size_t n)
{
	struct mark m;
	ssize_t r;

	mark(&m, fd);
	r = real.write(fd, buf, n);
	if (likely(!cut_by_us(&m, r, n)))
		return r;
	return finish_buf(&m, fd, buf, n, 0, NULL, 0, r);
}

ssize_t pass_writev(int fd, const struct iovec *iov, int n)
{
	struct mark m;
	ssize_t r;

	mark(&m, fd);
	r = real.writev(fd, iov, n);
	if (likely(r <= 0) || !ours_only(&m))
		return r;
	return finish_iov(&m, fd, iov, n, 0, NULL, r);
}

ssize_t pass_send(int fd, const void *buf, size_t n, int flags)
{
	struct mark m;
	ssize_t r;

	mark(&m, fd);
	r = real.send(fd, buf, n, flags);
	if (likely(!cut_by_us(&m, r, n)))
		return r;
	return finish_buf(&m, fd, buf, n, flags, NULL, 0, r);
}

ssize_t pass_sendto(int fd, const void *buf, size_t n, int flags,
		    const struct sockaddr *to, socklen_t tolen)
{
	struct mark m;
	ssize_t r;

	mark(&m, fd);
	r = real.sendto(fd, buf, n, flags, to, tolen);
	if (likely(!cut_by_us(&m, r, n)))
		return r;
	return finish_buf(&m, fd, buf, n, flags, to, tolen, r);
}

ssize_t pass_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct mark m;
	ssize_t r;

	mark(&m, fd);
	r = real.sendmsg(fd, msg, flags);
	if (likely(r <= 0) || !ours_only(&m) ||
	    msg->msg_iovlen > (size_t)IOV_MAX)
		return r;
	return finish_iov(&m, fd, msg->msg_iov, (int)msg->msg_iovlen, flags,
			  msg, r);
}

static __attribute__((noinline, cold)) ssize_t
finish_sendfile(const struct mark *m, int out, int in, off_t *off,
		size_t count, ssize_t r)
{
	struct more c = { .kind = MORE_SENDFILE, .fd = out, .in = in,
			  .off = off };

	/* a file shorter than count also ends it short: the next call
	 * then says 0, which ends it */
	return finish(&c, m, r, count);
}

ssize_t pass_sendfile(int out, int in, off_t *off, size_t count)
{
	struct mark m;
	ssize_t r;

	mark(&m, out);
	r = real.sendfile(out, in, off, count);
	if (likely(!cut_by_us(&m, r, count)))
		return r;
	return finish_sendfile(&m, out, in, off, count, r);
}
