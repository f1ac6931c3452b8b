/* SPDX-License-Identifier: MIT
 * send.c - the deferring data interposers: write, writev, send, sendto,
 * sendmsg (defer_data) and sendfile (defer_sendfile), on the shared queue
 * path of defer.h (DESIGN.md, "Contract: results", "Contract: short
 * writes"). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/uio.h>
#include <sys/syscall.h>

#include "defer.h"

/* the flags a deferred send may carry (MSG_DONTWAIT is dropped) */
#define SEND_FLAGS_OK (MSG_NOSIGNAL | MSG_MORE | MSG_DONTWAIT)
/* data_begin's answer for a call to give to stash_data (signals.c) */
#define STASHED (-3)

/* A stream socket not known to be connected: is it now?  Only a connected
 * one whose writing side is open is deferred (DESIGN.md, "Deferral
 * scope"): a listening, unconnected or still-connecting socket, or one
 * shut down for writing, answers at the call an error and SIGPIPE that a
 * deferred call would have told as success (the sockets' audit: three
 * writes told 1 where Linux said EPIPE and raised SIGPIPE).  A connect
 * that said EINPROGRESS is asked again (getpeername), until it is done. */
static int stream_connected(struct fdinfo *fi, int fd)
{
	struct sockaddr_storage sa;
	socklen_t l = sizeof(sa);
	int e = errno;

	if ((fi->flags & (FI_CONNECTING | FI_SHUTWR)) != FI_CONNECTING)
		return 0;
	if (syscall(SYS_getpeername, fd, &sa, &l) < 0) {
		errno = e;
		return 0;
	}
	fi->flags = (uint16_t)((fi->flags & ~FI_CONNECTING) | FI_CONN);
	return 1;
}

/* The checks of a data call on fd that need none of its arguments but
 * flags: this thread's fd entry when the call may be deferred, else NULL
 * with *r the answer (PASSED, or -1 with errno: the fd's pending error, or
 * STASHED: a signal handler's call while the thread is inside the library,
 * for stash_data).
 * Only stream sockets (DESIGN.md, "Deferral scope"). */
static struct fdinfo *data_begin(struct tstate **tsp, int call, int fd,
				 int flags, ssize_t *r)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi;
	int err;

	*tsp = ts;
	*r = PASSED;
	if (unlikely(!ts))
		return NULL;	/* ESCA_DISABLE, or no table */
	if (unlikely(ts->guard)) {	/* a signal handler's, inside the library */
		*r = STASHED;
		return NULL;
	}
	fi = defer_begin(ts, call, fd, &err);
	if (!fi) {
		surfaced_sigpipe(ts, fd, err, flags);
		*r = defer_refused(err);
		return NULL;
	}
	if (!call_selected(ts, call)) {
		*r = pass_through(ts, call, fd, PASS_NOT_SELECTED);
		return NULL;
	}
	if (stepped_aside(ts, fi, fd)) {
		ts->calls[call].passed[PASS_ASIDE]++;
		cork_for_real(ts, fd);
		return NULL;
	}
	if (deferrable_kind(fi, fd) != FK_STREAM ||
	    unlikely((fi->flags & (FI_CONN | FI_SHUTWR)) != FI_CONN &&
		     !stream_connected(fi, fd))) {
		*r = pass_through(ts, call, fd, PASS_FD);
		return NULL;
	}
	if (unlikely(others_use(ts, fi))) {
		/* another thread's bytes of this socket are queued: they go
		 * first, then this call, plainly; a non-blocking socket that
		 * is full answers EAGAIN, as the kernel would */
		if (fd_wait_others(ts, fi, fd, (fi->flags & FI_NONBLOCK) ||
				   (flags & MSG_DONTWAIT)) < 0) {
			ts->eagain_parked++;
			*r = -1;
			return NULL;
		}
		*r = pass_through(ts, call, fd, PASS_FD);
		return NULL;
	}
	return fi;
}

/* Could p point into this process's memory?  Not the first page (NULL
 * and small integers), nor the kernel's half of the address space, nor
 * past the end of the user half (x86-64: 47 bits; arm64 and others at most
 * 52-56).  A yes proves nothing: a pointer to unmapped memory still faults
 * (README, Limits), as a buffer pointer does; only the call that may be
 * deferred reads it at all. */
static inline int plausible_ptr(const void *p, size_t n)
{
	uintptr_t u = (uintptr_t)p;

	return u >= 4096 && u < ((uintptr_t)1 << 56) - n;
}

/* Queue a data call of iovcnt iovecs on fd, whose data_begin() said yes:
 * the bytes queued (their count returned), -1 with errno, or PASSED. */
static ssize_t data_queue(struct tstate *ts, struct fdinfo *fi, int call,
			  int op, int fd, const struct iovec *iov, int iovcnt,
			  int flags)
{
	struct esca_args a;
	size_t total = 0;

	if ((flags & ~SEND_FLAGS_OK) || iovcnt < 0 || iovcnt > IOV_MAX ||
	    (iovcnt && !plausible_ptr(iov, (size_t)iovcnt * sizeof(*iov))))
		return pass_through(ts, call, fd, PASS_ARGS);
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
			return pass_through(ts, call, fd, PASS_ARGS);
		total += iov[i].iov_len;
	}
	if (total > cfg.budget) {
		if (parked_eagain(ts, fi, fd, flags))
			return -1;
		return pass_through(ts, call, fd, PASS_SIZE);
	}
	if (unlikely(esca_table_inflight(ts->table)) &&
	    behind_parked(ts, fi, fd, flags))
		return -1;
	a = (struct esca_args){ .op = op, .fd = fd, .iov = iov, .iovcnt = iovcnt,
				.flags = flags & ~MSG_DONTWAIT,
				.order = fi->order_key };
	if (fi->flags & FI_CORK_VIRT) {
		/* corked: the kernel holds it as MSG_MORE (a send's flag) */
		a.flags |= MSG_MORE;
		if (op == ESCA_OP_WRITE)
			a.op = ESCA_OP_SEND;
		else if (op == ESCA_OP_WRITEV)
			a.op = ESCA_OP_SENDMSG;
	}
	if (defer_queue(ts, &ts->calls[call], &a, total) == PASSED) {
		if (parked_eagain(ts, fi, fd, flags))
			return -1;
		lib_sync_fd(ts, fd);
		cork_for_real(ts, fd);
		return PASSED;
	}
	return (ssize_t)total;
}

/* A data call of iovcnt iovecs on fd: data_begin, then data_queue. */
static ssize_t defer_data(int call, int op, int fd, const struct iovec *iov,
			  int iovcnt, int flags)
{
	struct tstate *ts;
	struct fdinfo *fi;
	ssize_t r;

	fi = data_begin(&ts, call, fd, flags, &r);
	if (r == STASHED)
		return stash_data(ts, call, fd, iov, iovcnt, flags);
	if (!fi)
		return r;
	return data_queue(ts, fi, call, op, fd, iov, iovcnt, flags);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	struct iovec v = { (void *)buf, n };
	ssize_t r = defer_data(CALL_WRITE, ESCA_OP_WRITE, fd, &v, 1, 0);

	return r != PASSED ? r : pass_write(fd, buf, n);
}
EXPORT ssize_t __write(int fd, const void *buf, size_t n)
	__attribute__((alias("write")));

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	ssize_t r = defer_data(CALL_WRITEV, ESCA_OP_WRITEV, fd, iov, n, 0);

	return r != PASSED ? r : pass_writev(fd, iov, n);
}

EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	struct iovec v = { (void *)buf, n };
	ssize_t r = defer_data(CALL_SEND, ESCA_OP_SEND, fd, &v, 1, flags);

	return r != PASSED ? r : pass_send(fd, buf, n, flags);
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
			ts->calls[CALL_SENDTO].seen++;
			pass_through(ts, CALL_SENDTO, fd, PASS_ARGS);
		}
		return pass_sendto(fd, buf, n, flags, to, tolen);
	}
	r = defer_data(CALL_SENDTO, ESCA_OP_SEND, fd, &v, 1, flags);
	return r != PASSED ? r : pass_sendto(fd, buf, n, flags, to, tolen);
}

/* The msghdr is read only once the fd is one the call may be deferred on:
 * with ESCA_DISABLE, on another kind of fd, or with a pointer that cannot
 * be one, the kernel answers (EFAULT, ENOTSOCK) as without the library. */
/* The fds an SCM_RIGHTS message carries: their pending entries go first,
 * this thread's and others' (their bytes came before the pass: the send
 * audit's child wrote "Y" to a passed socket before the parent's queued
 * "X"). */
static void sync_carried_fds(struct tstate *ts, const struct msghdr *m)
{
	/* a copy read by the kernel, never by us: a bad pointer is the
	 * sendmsg's EFAULT to report, not our fault */
	union {
		char b[1024];
		struct cmsghdr align;
	} cb;
	struct iovec local = { cb.b, m->msg_controllen }, remote;
	struct msghdr h = { 0 };

	if (!m->msg_control || m->msg_controllen > sizeof(cb.b))
		return;
	remote = (struct iovec){ m->msg_control, m->msg_controllen };
	if (syscall(SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0) !=
	    (long)m->msg_controllen)
		return;
	h.msg_control = cb.b;
	h.msg_controllen = m->msg_controllen;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
		size_t n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0))
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int cfd;
			struct fdinfo *cf;

			memcpy(&cfd, CMSG_DATA(c) + i * sizeof(int), sizeof(cfd));
			cf = fdi(cfd);
			if (!cf || cf->internal)
				continue;
			lib_sync_fd(ts, cfd);
			if (others_use(ts, cf))
				fd_wait_others(ts, cf, cfd, 0);
		}
	}
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	struct tstate *ts;
	struct fdinfo *fi;
	ssize_t r;

	fi = data_begin(&ts, CALL_SENDMSG, fd, flags, &r);
	if (r == STASHED && plausible_ptr(m, sizeof(*m)) && !m->msg_name &&
	    !m->msg_control && m->msg_iovlen <= (size_t)IOV_MAX)
		r = stash_data(ts, CALL_SENDMSG, fd, m->msg_iov,
			       (int)m->msg_iovlen, flags);
	if (!fi)
		return r >= 0 || r == -1 ? r : pass_sendmsg(fd, m, flags);
	if (!plausible_ptr(m, sizeof(*m)) || m->msg_name || m->msg_namelen ||
	    m->msg_control || m->msg_controllen ||
	    m->msg_iovlen > (size_t)IOV_MAX) {
		if (plausible_ptr(m, sizeof(*m)) && m->msg_control)
			sync_carried_fds(ts, m);
		r = pass_through(ts, CALL_SENDMSG, fd, PASS_ARGS);
	}
	else if (m->msg_iovlen && !plausible_ptr(m->msg_iov, m->msg_iovlen *
						  sizeof(struct iovec)))
		r = pass_through(ts, CALL_SENDMSG, fd, PASS_ARGS);
	else
		r = data_queue(ts, fi, CALL_SENDMSG, ESCA_OP_SENDMSG, fd,
			       m->msg_iov, (int)m->msg_iovlen, flags);
	return r != PASSED ? r : pass_sendmsg(fd, m, flags);
}

static ssize_t defer_sendfile(int out, int in, off_t *off, size_t count)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi, *fin;
	struct esca_args a;
	int err;

	if (unlikely(!ts))
		return PASSED;
	fi = defer_begin(ts, CALL_SENDFILE, out, &err);
	if (!fi) {
		surfaced_sigpipe(ts, out, err, 0);
		return defer_refused(err);
	}
	if (!call_selected(ts, CALL_SENDFILE))
		return pass_through(ts, CALL_SENDFILE, out, PASS_NOT_SELECTED);
	if (stepped_aside(ts, fi, out)) {
		ts->calls[CALL_SENDFILE].passed[PASS_ASIDE]++;
		cork_for_real(ts, out);
		return PASSED;
	}
	fin = fdi(in);
	if (deferrable_kind(fi, out) != FK_STREAM ||
	    ((fi->flags & (FI_CONN | FI_SHUTWR)) != FI_CONN &&
	     !stream_connected(fi, out)) || !fin ||
	    deferrable_kind(fin, in) != FK_FILE ||
	    !fd_access_ok(in, fin, FI_NOREAD))
		return pass_through(ts, CALL_SENDFILE, out, PASS_FD);
	/* the result is known only for a range inside the file */
	if (!off || *off < 0 || count > (size_t)SSIZE_MAX ||
	    (int64_t)count > fin->size - (int64_t)*off)
		return pass_through(ts, CALL_SENDFILE, out, PASS_ARGS);
	if (count > cfg.budget) {
		if (parked_eagain(ts, fi, out, 0))
			return -1;
		return pass_through(ts, CALL_SENDFILE, out, PASS_SIZE);
	}
	/* as a data call's: EAGAIN behind parked bytes (under uring the
	 * bounce buffers' arena filled up first; sequential has none, and
	 * nginx queued its whole 64 MiB file behind a client that does not
	 * read, then closed the file: a wait for that client) */
	if (unlikely(esca_table_inflight(ts->table)) &&
	    behind_parked(ts, fi, out, 0))
		return -1;
	/* (plain flushes run the cork's end right after the sendfile: the
	 * composed MSG_MORE is enough, as under sequential) */
	if ((fi->flags & FI_CORK_VIRT) && (fi->flags & FI_NONBLOCK) &&
	    (esca_table_caps(ts->table) & ESCA_CAP_SENDFILE_DIRECT) &&
	    ts->ad.mode != ADAPT_PLAIN)
		cork_queued(ts, fi, out);
	a = (struct esca_args){ .op = ESCA_OP_SENDFILE, .fd = out, .fd2 = in,
				.offset = *off, .count = count,
				.flags = fi->flags & FI_CORK_VIRT ? MSG_MORE : 0,
				.hints = fi->flags & FI_NONBLOCK ?
					 ESCA_HINT_NONBLOCK : 0,
				.order = fi->order_key };
	if (defer_queue(ts, &ts->calls[CALL_SENDFILE], &a, count) == PASSED) {
		if (parked_eagain(ts, fi, out, 0))
			return -1;
		lib_sync_fd(ts, out);
		cork_for_real(ts, out);
		return PASSED;
	}
	*off += (off_t)count;
	return (ssize_t)count;
}

/* A sendfile not deferred: its out fd's entries ran (pass_through); its
 * in fd is a regular file, whose writes are never deferred. */
EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	ssize_t r = defer_sendfile(out, in, off, count);

	return r != PASSED ? r : pass_sendfile(out, in, off, count);
}
EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t count)
	__attribute__((alias("sendfile")));
