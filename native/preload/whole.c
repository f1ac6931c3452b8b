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
 * tail of a 1 MiB line under `sequential`, whose parked sends keep the
 * timer firing (tests/preload/test_whole_writes.py).  A short count that
 * only the library's signal made is finished here: the rest goes out in the
 * same call, as it would have.  Not when a handler of the program's ran
 * meanwhile (Linux's call had ended short there too), nor on a
 * non-blocking fd or with MSG_DONTWAIT (a short count is then the kernel's
 * answer), nor on a socket with a send timeout (SO_SNDTIMEO ends a send
 * short: the count stays the kernel's).  The fast path: two loads before
 * the call, a compare after. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload.h"

/* the thread's signal counts before a call (tstate.timer_hits: the
 * library's timer signal; sig_hits: the program's handlers) */
struct mark {
	struct tstate *ts;
	unsigned hits, sigs;
};

static inline void mark(struct mark *m)
{
	m->ts = tls_ts;
	if (m->ts) {
		m->hits = m->ts->timer_hits;
		m->sigs = m->ts->sig_hits;
	}
}

/* r of n bytes: short, and only the library's signal came in the call? */
static inline int cut_by_us(const struct mark *m, ssize_t r, size_t n)
{
	return unlikely(r > 0 && (size_t)r < n) && m->ts &&
	       m->ts->timer_hits != m->hits && m->ts->sig_hits == m->sigs;
}

/* Would the plain call have gone on blocking?  A blocking fd, no
 * MSG_DONTWAIT, no send timeout.  Only after a short count (two system
 * calls, never on the fast path). */
static int would_block_on(int fd, int flags)
{
	struct timeval tv = { 0, 0 };
	socklen_t len = sizeof(tv);
	long fl;

	if (flags & MSG_DONTWAIT)
		return 0;
	fl = syscall(SYS_fcntl, fd, F_GETFL);
	if (fl < 0 || (fl & O_NONBLOCK))
		return 0;
	/* ENOTSOCK (a pipe, a terminal): no timeout */
	if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_SNDTIMEO, &tv,
		    &len) == 0 && (tv.tv_sec || tv.tv_usec))
		return 0;
	return 1;
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

/* One way to send the rest: what one call returns for the bytes from
 * done on. */
struct more {
	int kind;		/* REST_* */
	int fd, flags;
	const void *buf;	/* write, send, sendto */
	const struct iovec *iov;	/* writev, sendmsg */
	int iovcnt;
	const struct msghdr *msg;	/* sendmsg */
	const struct sockaddr *to;	/* sendto */
	socklen_t tolen;
	int in;			/* sendfile */
	off_t *off;
};
enum { REST_WRITE, REST_WRITEV, REST_SEND, REST_SENDTO, REST_SENDMSG,
       REST_SENDFILE };
#define REST_IOVS 64

/* The call for the bytes from done on (of n): its count; *asked, what it
 * asked for (a window of at most REST_IOVS iovecs asks less than the
 * rest). */
static ssize_t rest_call(const struct more *c, size_t done, size_t n,
			 size_t *asked)
{
	struct iovec w[REST_IOVS];
	struct msghdr h;
	int k;

	*asked = n - done;
	switch (c->kind) {
	case REST_WRITE:
		return real.write(c->fd, (const char *)c->buf + done,
				  n - done);
	case REST_SEND:
		return real.send(c->fd, (const char *)c->buf + done, n - done,
				 c->flags);
	case REST_SENDTO:
		return real.sendto(c->fd, (const char *)c->buf + done,
				   n - done, c->flags, c->to, c->tolen);
	case REST_WRITEV:
		k = iov_rest(c->iov, c->iovcnt, done, w, REST_IOVS);
		*asked = iov_total(w, k);
		return real.writev(c->fd, w, k);
	case REST_SENDMSG:
		/* the ancillary data went with the first bytes */
		k = iov_rest(c->iov, c->iovcnt, done, w, REST_IOVS);
		*asked = iov_total(w, k);
		h = *c->msg;
		h.msg_iov = w;
		h.msg_iovlen = (size_t)k;
		h.msg_control = NULL;
		h.msg_controllen = 0;
		return real.sendmsg(c->fd, &h, c->flags);
	default:	/* REST_SENDFILE: *off, or the file's offset, moved on */
		return real.sendfile(c->fd, c->in, c->off, n - done);
	}
}

/* The first call returned r of n bytes: finish what the library's signal
 * cut short.  Returns the count of bytes that went (errno as before the
 * call: a later error or a program's signal ends it with the bytes gone,
 * as Linux's blocking write ends). */
static ssize_t finish(const struct more *c, const struct mark *first,
		      ssize_t r, size_t n)
{
	struct mark m = *first;
	ssize_t k = r;
	size_t asked = n;
	int e = errno;

	if (!cut_by_us(&m, r, n) || !would_block_on(c->fd, c->flags)) {
		errno = e;
		return r;
	}
	/* on while the last call went whole (a window) or only the
	 * library's signal cut it */
	while ((size_t)r < n &&
	       ((size_t)k == asked || cut_by_us(&m, k, asked))) {
		mark(&m);
		k = rest_call(c, (size_t)r, n, &asked);
		if (k <= 0)
			break;
		r += k;
	}
	errno = e;
	return r;
}

ssize_t pass_write(int fd, const void *buf, size_t n)
{
	struct mark m;
	ssize_t r;

	mark(&m);
	r = real.write(fd, buf, n);
	if (likely(!cut_by_us(&m, r, n)))
		return r;
	return finish(&(struct more){ .kind = REST_WRITE, .fd = fd,
				      .buf = buf }, &m, r, n);
}

ssize_t pass_writev(int fd, const struct iovec *iov, int n)
{
	struct mark m;
	ssize_t r;

	mark(&m);
	r = real.writev(fd, iov, n);
	if (likely(r <= 0) || !m.ts || m.ts->timer_hits == m.hits)
		return r;
	return finish(&(struct more){ .kind = REST_WRITEV, .fd = fd,
				      .iov = iov, .iovcnt = n },
		      &m, r, iov_total(iov, n));
}

ssize_t pass_send(int fd, const void *buf, size_t n, int flags)
{
	struct mark m;
	ssize_t r;

	mark(&m);
	r = real.send(fd, buf, n, flags);
	if (likely(!cut_by_us(&m, r, n)))
		return r;
	return finish(&(struct more){ .kind = REST_SEND, .fd = fd,
				      .flags = flags, .buf = buf }, &m, r, n);
}

ssize_t pass_sendto(int fd, const void *buf, size_t n, int flags,
		    const struct sockaddr *to, socklen_t tolen)
{
	struct mark m;
	ssize_t r;

	mark(&m);
	r = real.sendto(fd, buf, n, flags, to, tolen);
	if (likely(!cut_by_us(&m, r, n)))
		return r;
	return finish(&(struct more){ .kind = REST_SENDTO, .fd = fd,
				      .flags = flags, .buf = buf, .to = to,
				      .tolen = tolen }, &m, r, n);
}

ssize_t pass_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct mark m;
	ssize_t r;

	mark(&m);
	r = real.sendmsg(fd, msg, flags);
	if (likely(r <= 0) || !m.ts || m.ts->timer_hits == m.hits ||
	    msg->msg_iovlen > (size_t)IOV_MAX)
		return r;
	return finish(&(struct more){ .kind = REST_SENDMSG, .fd = fd,
				      .flags = flags, .msg = msg,
				      .iov = msg->msg_iov,
				      .iovcnt = (int)msg->msg_iovlen },
		      &m, r, iov_total(msg->msg_iov, (int)msg->msg_iovlen));
}

ssize_t pass_sendfile(int out, int in, off_t *off, size_t count)
{
	struct mark m;
	ssize_t r;

	mark(&m);
	r = real.sendfile(out, in, off, count);
	if (likely(!cut_by_us(&m, r, count)))
		return r;
	/* a file shorter than count also ends it short: the next call
	 * then says 0, which ends the loop */
	return finish(&(struct more){ .kind = REST_SENDFILE, .fd = out,
				      .in = in, .off = off }, &m, r, count);
}
