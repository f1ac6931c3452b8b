/* SPDX-License-Identifier: MIT
 * send.c - the deferring data interposers: write, writev, send, sendto,
 * sendmsg (defer_data) and sendfile (defer_sendfile), on the shared queue
 * path of defer.h (DESIGN.md, "Contract: results", "Contract: short
 * writes"). */
#include <errno.h>
#include <limits.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include "defer.h"

/* the flags a deferred send may carry (MSG_DONTWAIT is dropped) */
#define SEND_FLAGS_OK (MSG_NOSIGNAL | MSG_MORE | MSG_DONTWAIT)

/* A data call of iovcnt iovecs on fd: the bytes queued (their count returned),
 * -1 with errno, or PASSED. */
static ssize_t defer_data(int call, int op, int fd, const struct iovec *iov,
			  int iovcnt, int flags)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi;
	struct esca_args a;
	size_t total = 0;
	int err, kind;

	if (unlikely(!ts))
		return PASSED;
	if (unlikely(ts->guard))	/* a signal handler's, inside the library */
		return stash_data(ts, call, fd, iov, iovcnt, flags);
	fi = defer_begin(ts, call, fd, &err);
	if (!fi) {
		surfaced_sigpipe(ts, fd, err, flags);
		return defer_refused(err);
	}
	if (!call_selected(ts, call))
		return pass_through(ts, call, fd, PASS_NOT_SELECTED);
	kind = deferrable_kind(fi, fd);
	if (kind != FK_STREAM &&
	    !((kind == FK_PIPE || kind == FK_FILE) &&
	      (op == ESCA_OP_WRITE || op == ESCA_OP_WRITEV)))
		return pass_through(ts, call, fd, PASS_FD);
	if (kind != FK_STREAM && !fd_access_ok(fd, fi, FI_NOWRITE))
		return pass_through(ts, call, fd, PASS_FD);	/* EBADF: not deferred */
	if ((flags & ~SEND_FLAGS_OK) || iovcnt < 0 || iovcnt > IOV_MAX ||
	    (iovcnt && !iov))
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
	a = (struct esca_args){ .op = op, .fd = fd, .iov = iov, .iovcnt = iovcnt,
				.flags = flags & ~MSG_DONTWAIT,
				.order = fi->order_key };
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
	if (defer_queue(ts, &ts->calls[call], &a, total) == PASSED) {
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
	ssize_t r = defer_data(CALL_WRITE, ESCA_OP_WRITE, fd, &v, 1, 0);

	return r != PASSED ? r : real.write(fd, buf, n);
}
EXPORT ssize_t __write(int fd, const void *buf, size_t n)
	__attribute__((alias("write")));

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	ssize_t r = defer_data(CALL_WRITEV, ESCA_OP_WRITEV, fd, iov, n, 0);

	return r != PASSED ? r : real.writev(fd, iov, n);
}

EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	struct iovec v = { (void *)buf, n };
	ssize_t r = defer_data(CALL_SEND, ESCA_OP_SEND, fd, &v, 1, flags);

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
			ts->calls[CALL_SENDTO].seen++;
			pass_through(ts, CALL_SENDTO, fd, PASS_ARGS);
		}
		return real.sendto(fd, buf, n, flags, to, tolen);
	}
	r = defer_data(CALL_SENDTO, ESCA_OP_SEND, fd, &v, 1, flags);
	return r != PASSED ? r : real.sendto(fd, buf, n, flags, to, tolen);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	ssize_t r;

	if (!m || m->msg_name || m->msg_namelen || m->msg_control ||
	    m->msg_controllen || m->msg_iovlen > (size_t)IOV_MAX) {
		struct tstate *ts = ts_get();

		if (ts && !ts->guard) {
			ts->calls[CALL_SENDMSG].seen++;
			pass_through(ts, CALL_SENDMSG, fd, PASS_ARGS);
		}
		return real.sendmsg(fd, m, flags);
	}
	r = defer_data(CALL_SENDMSG, ESCA_OP_SENDMSG, fd, m->msg_iov,
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
	fi = defer_begin(ts, CALL_SENDFILE, out, &err);
	if (!fi) {
		surfaced_sigpipe(ts, out, err, 0);
		return defer_refused(err);
	}
	if (!call_selected(ts, CALL_SENDFILE))
		return pass_through(ts, CALL_SENDFILE, out, PASS_NOT_SELECTED);
	fin = fdi(in);
	if (deferrable_kind(fi, out) != FK_STREAM || !fin ||
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
	if ((fi->flags & FI_CORK_VIRT) && (fi->flags & FI_NONBLOCK) &&
	    (esca_table_caps(ts->table) & ESCA_CAP_SENDFILE_DIRECT))
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
