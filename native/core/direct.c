/* SPDX-License-Identifier: MIT
 * direct.c - an op run with plain system calls: esca_direct(), esca__direct()
 * (from `skip` bytes on), esca__sendfile_once().
 *
 * The one place that knows how to run an op with ordinary syscalls (sys.h).
 * The sequential executor runs every entry through it; uring and lkm use it
 * for ops their kernel cannot take.  Short writes are completed here (wait
 * for POLLOUT on EAGAIN, retry on EINTR), and a result is what the plain
 * call would have said (DESIGN.md, "Contract: results"): the bytes asked
 * for, or -errno, or the partial count when an error came after progress
 * (DESIGN.md, "Contract: short writes").
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sys.h"

/* Wait until fd is writable.  0, or -errno. */
static int wait_writable(int fd, uint64_t *nsys)
{
	for (;;) {
		long r = esca_sys_wait_writable(fd);

		(*nsys)++;
		if (r != -EINTR)
			return (int)r;
	}
}

#define DIRECT_IOV 64

/* Write the data of a data op, `skip` bytes already done: one call at a
 * time (esca__data_once) until all went, waiting for room on EAGAIN. */
static int64_t direct_data(const struct esca_args *a, size_t skip,
			   uint64_t *nsys)
{
	size_t total = 0, done = skip;

	for (int i = 0; i < a->iovcnt; i++)
		total += a->iov[i].iov_len;
	for (;;) {
		int64_t r;

		if (total > 0 && done >= total)
			break;
		r = esca__data_once(a, done, nsys);
		if (r < 0) {
			if (r == -EAGAIN && !(a->flags & MSG_DONTWAIT) &&
			    wait_writable(a->fd, nsys) == 0)
				continue;
			return done > 0 ? (int64_t)done : r;
		}
		done += (size_t)r;
		if (total == 0 || r == 0)
			break;	/* zero-length write: one call; no progress: stop */
	}
	return (int64_t)done;
}

long esca__send_iov(int fd, const struct iovec *iov, int n, int flags)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov,
			    .msg_iovlen = (size_t)n };

	if (n == 1)	/* sys.h, esca_sys_send: cheaper than a sendmsg */
		return esca_sys_send(fd, iov[0].iov_base, iov[0].iov_len,
				     flags);
	return esca_sys_sendmsg(fd, &m, flags);
}

int64_t esca__data_once(const struct esca_args *a, size_t skip,
			uint64_t *nsys)
{
	struct iovec stack[DIRECT_IOV], *iov = stack;
	int n = a->iovcnt, first = 0;
	size_t total = 0;
	long r;

	if (n > DIRECT_IOV) {
		iov = malloc((size_t)n * sizeof(*iov));
		if (!iov)
			return -ENOMEM;
	}
	if (n > 0)
		memcpy(iov, a->iov, (size_t)n * sizeof(*iov));
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	/* the iovec past what is done (a zero-length write keeps its one
	 * iovec: see below) */
	while (total > 0 && first < n && skip >= iov[first].iov_len)
		skip -= iov[first++].iov_len;
	if (first < n) {
		iov[first].iov_base = (char *)iov[first].iov_base + skip;
		iov[first].iov_len -= skip;
	}
	do {
		if (a->op == ESCA_OP_SEND || a->op == ESCA_OP_SENDMSG) {
			r = esca__send_iov(a->fd, iov + first, n - first,
					   a->flags);
		} else if (a->op == ESCA_OP_WRITE && n - first == 1) {
			/* write(fd, p, 0) reaches the fd (EPIPE on a shut
			 * socket) where writev of nothing returns 0 */
			r = esca_sys_write(a->fd, iov[first].iov_base,
					   iov[first].iov_len);
		} else {
			r = esca_sys_writev(a->fd, iov + first, n - first);
		}
		(*nsys)++;
	} while (r == -EINTR);
	if (iov != stack)
		free(iov);
	return r;
}

/* One sendfile system call of count bytes from offset (-1: the file's
 * position); bytes sent or -errno. */
int64_t esca__sendfile_once(int out, int in, int64_t offset, size_t count)
{
	off_t off = (off_t)offset;

	return esca_sys_sendfile(out, in, offset >= 0 ? &off : NULL, count);
}

static int64_t direct_sendfile(const struct esca_args *a, size_t skip,
			       uint64_t *nsys)
{
	size_t done = skip;

	while (done < a->count) {
		int64_t r = esca__sendfile_once(a->fd, a->fd2, a->offset < 0 ?
						-1 : a->offset + (int64_t)done,
						a->count - done);

		(*nsys)++;
		if (r < 0) {
			if (r == -EINTR)
				continue;
			if (r == -EAGAIN && !(a->flags & MSG_DONTWAIT) &&
			    wait_writable(a->fd, nsys) == 0)
				continue;
			return done > 0 ? (int64_t)done : r;
		}
		if (r == 0)
			break;	/* end of file */
		done += (size_t)r;
	}
	if (a->count == 0 && skip == 0) {
		/* sendfile of 0 bytes still checks its fds */
		int64_t r = esca__sendfile_once(a->fd, a->fd2, a->offset, 0);

		(*nsys)++;
		if (r < 0)
			return r;
	}
	return (int64_t)done;
}

int64_t esca__direct(const struct esca_args *a, size_t skip, uint64_t *nsys)
{
	switch (a->op) {
	case ESCA_OP_WRITE:
	case ESCA_OP_WRITEV:
	case ESCA_OP_SEND:
	case ESCA_OP_SENDMSG:
		return direct_data(a, skip, nsys);
	case ESCA_OP_SENDFILE:
		return direct_sendfile(a, skip, nsys);
	case ESCA_OP_SHUTDOWN:
		(*nsys)++;
		return esca_sys_shutdown(a->fd, a->how);
	case ESCA_OP_CLOSE:
		(*nsys)++;
		return esca_sys_close(a->fd);	/* never retried on EINTR */
	case ESCA_OP_SETSOCKOPT:
		(*nsys)++;
		return esca_sys_setsockopt(a->fd, a->level, a->optname,
					   a->iov[0].iov_base,
					   (socklen_t)a->iov[0].iov_len);
	case ESCA_OP_PEEK:
	case ESCA_OP_DISCARD:
		/* lever prefetch: never blocks (MSG_DONTWAIT); DISCARD drops
		 * count bytes without copying them (TCP, MSG_TRUNC) */
		for (;;) {
			long r = a->op == ESCA_OP_PEEK ?
				 esca_sys_recv(a->fd, a->iov[0].iov_base,
					       a->iov[0].iov_len,
					       MSG_PEEK | MSG_DONTWAIT) :
				 esca_sys_recv(a->fd, NULL, a->count,
					       MSG_TRUNC | MSG_DONTWAIT);

			(*nsys)++;
			if (r != -EINTR)
				return r;
		}
	case ESCA_OP_FSYNC:
		for (;;) {
			long r = esca_sys_fsync(a->fd);

			(*nsys)++;
			if (r != -EINTR)
				return r;
		}
	}
	return -EINVAL;
}

int64_t esca_direct(const struct esca_args *a)
{
	uint64_t n = 0;

	if (!a || a->op < 0 || a->op >= ESCA_OP__COUNT)
		return -EINVAL;
	if ((esca__is_data(a->op) || a->op == ESCA_OP_SETSOCKOPT) &&
	    (a->iovcnt < 0 || a->iovcnt > IOV_MAX || (a->iovcnt && !a->iov)))
		return -EINVAL;
	if (a->op == ESCA_OP_SETSOCKOPT && a->iovcnt != 1)
		return -EINVAL;
	return esca__direct(a, 0, &n);
}
