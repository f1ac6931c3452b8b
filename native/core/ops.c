/* SPDX-License-Identifier: MIT
 * ops.c - what each op is and how it runs as plain system calls.
 *
 * esca__direct() is the one place that knows how to run an op with ordinary
 * syscalls.  The sequential executor runs every entry through it; the uring
 * executor uses it for ops its kernel cannot take.  Short writes are
 * completed here (poll for POLLOUT on EAGAIN, retry on EINTR), and a result
 * is what the plain call would have said on full success: the bytes asked
 * for, or -errno, or the partial count when an error came after progress.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define OP_NAME(E, n, k) [ESCA_OP_##E] = #n,
static const char *const op_names[ESCA_OP__COUNT] = { ESCA_OPS(OP_NAME) };
#undef OP_NAME
#define OP_KIND(E, n, k) [ESCA_OP_##E] = k,
static const unsigned char op_kinds[ESCA_OP__COUNT] = { ESCA_OPS(OP_KIND) };
#undef OP_KIND

const char *esca_op_name(int op)
{
	if (op < 0 || op >= ESCA_OP__COUNT)
		return "unknown";
	return op_names[op];
}

#define EXEC_NAME(E, n) [ESCA_EXEC_##E] = #n,
static const char *const exec_names[ESCA_EXEC__COUNT] = {
	ESCA_EXECUTORS(EXEC_NAME)
};
#undef EXEC_NAME

const char *esca_executor_name(int kind)
{
	if (kind < 0 || kind >= ESCA_EXEC__COUNT)
		return "unknown";
	return exec_names[kind];
}

#define WHY_NAME(E, n) [ESCA_WHY_##E] = #n,
static const char *const why_names[ESCA_WHY__COUNT] = {
	ESCA_FLUSH_REASONS(WHY_NAME)
};
#undef WHY_NAME

const char *esca_flush_reason_name(int why)
{
	if (why < 0 || why >= ESCA_WHY__COUNT)
		return "unknown";
	return why_names[why];
}

int esca__is_data(int op)
{
	return op >= 0 && op < ESCA_OP__COUNT && op_kinds[op] == ESCA_OPK_DATA;
}

/* Wait until fd is writable.  0, or -errno. */
static int wait_writable(int fd, uint64_t *nsys)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	for (;;) {
		int r = poll(&p, 1, -1);

		(*nsys)++;
		if (r >= 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

#define DIRECT_IOV 64

/* Write the data of a data op, `skip` bytes already done. */
static int64_t direct_data(const struct esca_args *a, size_t skip,
			   uint64_t *nsys)
{
	struct iovec stack[DIRECT_IOV], *iov = stack;
	int n = a->iovcnt, first = 0;
	size_t total = 0, done = skip;
	int64_t ret;

	if (n > DIRECT_IOV) {
		iov = malloc((size_t)n * sizeof(*iov));
		if (!iov)
			return -ENOMEM;
	}
	if (n > 0)
		memcpy(iov, a->iov, (size_t)n * sizeof(*iov));
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;

	for (;;) {
		ssize_t r;
		size_t s = done;

		/* the iovec past what is done */
		if (n > 0)
			memcpy(iov, a->iov, (size_t)n * sizeof(*iov));
		first = 0;
		while (total > 0 && first < n && s >= iov[first].iov_len) {
			s -= iov[first].iov_len;
			first++;
		}
		if (total > 0 && done >= total)
			break;
		if (first < n) {
			iov[first].iov_base = (char *)iov[first].iov_base + s;
			iov[first].iov_len -= s;
		}
		if (a->op == ESCA_OP_SEND || a->op == ESCA_OP_SENDMSG) {
			struct msghdr m = { .msg_iov = iov + first,
					    .msg_iovlen = (size_t)(n - first) };
			r = sendmsg(a->fd, &m, a->flags);
		} else if (a->op == ESCA_OP_WRITE && n - first == 1) {
			/* write(fd, p, 0) reaches the fd (EPIPE on a shut
			 * socket) where writev of nothing returns 0 */
			r = write(a->fd, iov[first].iov_base, iov[first].iov_len);
		} else {
			r = writev(a->fd, iov + first, n - first);
		}
		(*nsys)++;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && !(a->flags & MSG_DONTWAIT) &&
			    wait_writable(a->fd, nsys) == 0)
				continue;
			ret = done > 0 ? (int64_t)done : -errno;
			goto out;
		}
		done += (size_t)r;
		if (total == 0 || r == 0)
			break;	/* zero-length write: one call; no progress: stop */
	}
	ret = (int64_t)done;
out:
	if (iov != stack)
		free(iov);
	return ret;
}

/* One sendfile system call of count bytes from offset (-1: the file's
 * position); bytes sent or -errno.  The system call itself: inside
 * libesca.so, sendfile() would be our own interposer. */
int64_t esca__sendfile_once(int out, int in, int64_t offset, size_t count)
{
	off_t off = (off_t)offset;
	long r = syscall(SYS_sendfile, out, in, offset >= 0 ? &off : NULL,
			 count);

	return r < 0 ? -errno : r;
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
			if (r == -EAGAIN && wait_writable(a->fd, nsys) == 0)
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

static int64_t plain(long r)
{
	return r < 0 ? -errno : r;
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
		return plain(shutdown(a->fd, a->how));
	case ESCA_OP_CLOSE:
		/* Linux: close() never retries on EINTR, the fd is gone */
		(*nsys)++;
		return plain(close(a->fd));
	case ESCA_OP_SETSOCKOPT:
		(*nsys)++;
		return plain(setsockopt(a->fd, a->level, a->optname,
					a->iov[0].iov_base,
					(socklen_t)a->iov[0].iov_len));
	case ESCA_OP_FSYNC:
		for (;;) {
			long r = fsync(a->fd);

			(*nsys)++;
			if (r < 0 && errno == EINTR)
				continue;
			return plain(r);
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
