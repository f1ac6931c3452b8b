/* SPDX-License-Identifier: MIT
 * sys.h - the system calls the core and its executors make, as raw
 * syscall(SYS_...) returning >= 0 or -errno: esca_sys_write() ... .
 *
 * Inside libesca.so the libc names (write, close, poll, ioctl, ...) are the
 * library's own interposers; the core never calls them, so it needs no
 * reentrancy guard from its caller (tools/check_core_calls.sh checks).
 * syscall() itself is never interposed.
 */
#ifndef ESCA_SYS_H
#define ESCA_SYS_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static inline long esca_sys_ret(long r)
{
	return r < 0 ? -errno : r;
}

static inline long esca_sys_write(int fd, const void *buf, size_t n)
{
	return esca_sys_ret(syscall(SYS_write, fd, buf, n));
}

static inline long esca_sys_writev(int fd, const struct iovec *iov, int n)
{
	return esca_sys_ret(syscall(SYS_writev, fd, iov, n));
}

static inline long esca_sys_sendmsg(int fd, const struct msghdr *m, int flags)
{
	return esca_sys_ret(syscall(SYS_sendmsg, fd, m, flags));
}

/* send(fd, buf, n, flags): a sendto without an address, as glibc's send.
 * A data op of one iovec goes this way, not as a sendmsg of one iovec: the
 * kernel then copies in no msghdr and no iovec (~115 ns less a call on the
 * AMD VM of the README, 64 B on a unix socket: DESIGN.md, "Known traps"). */
static inline long esca_sys_send(int fd, const void *buf, size_t n, int flags)
{
	return esca_sys_ret(syscall(SYS_sendto, fd, buf, n, flags, NULL, 0));
}

/* recv(fd, buf, n, flags): the lever prefetch's peek and discard */
static inline long esca_sys_recv(int fd, void *buf, size_t n, int flags)
{
	return esca_sys_ret(syscall(SYS_recvfrom, fd, buf, n, flags, NULL,
				    NULL));
}

/* sendfile(out, in, offset or NULL, count) */
static inline long esca_sys_sendfile(int out, int in, off_t *off, size_t n)
{
	return esca_sys_ret(syscall(SYS_sendfile, out, in, off, n));
}

static inline long esca_sys_shutdown(int fd, int how)
{
	return esca_sys_ret(syscall(SYS_shutdown, fd, how));
}

static inline long esca_sys_setsockopt(int fd, int level, int name,
				       const void *val, socklen_t len)
{
	return esca_sys_ret(syscall(SYS_setsockopt, fd, level, name, val, len));
}

static inline long esca_sys_getsockopt(int fd, int level, int name, void *val,
				       socklen_t *len)
{
	return esca_sys_ret(syscall(SYS_getsockopt, fd, level, name, val, len));
}

static inline long esca_sys_socket(int domain, int type, int proto)
{
	return esca_sys_ret(syscall(SYS_socket, domain, type, proto));
}

/* Linux: close() is never retried on EINTR, the fd is gone. */
static inline long esca_sys_close(int fd)
{
	return esca_sys_ret(syscall(SYS_close, fd));
}

static inline long esca_sys_fstat(int fd, struct stat *st)
{
	return esca_sys_ret(syscall(SYS_fstat, fd, st));
}

static inline long esca_sys_fsync(int fd)
{
	return esca_sys_ret(syscall(SYS_fsync, fd));
}

static inline long esca_sys_open(const char *path, int flags)
{
	return esca_sys_ret(syscall(SYS_openat, AT_FDCWD, path, flags, 0));
}

static inline long esca_sys_ioctl(int fd, unsigned long req, void *arg)
{
	return esca_sys_ret(syscall(SYS_ioctl, fd, req, arg));
}

static inline long esca_sys_eventfd(unsigned initval, int flags)
{
	return esca_sys_ret(syscall(SYS_eventfd2, initval, flags));
}

/* epoll: the lkm executor's progress fd (native/core/lkm.c) */
static inline long esca_sys_epoll_create1(int flags)
{
	return esca_sys_ret(syscall(SYS_epoll_create1, flags));
}

static inline long esca_sys_epoll_ctl(int epfd, int op, int fd,
				      struct epoll_event *ev)
{
	return esca_sys_ret(syscall(SYS_epoll_ctl, epfd, op, fd, ev));
}

/* epoll_pwait with no mask (every Linux architecture has it, epoll_wait
 * not all): events, or -errno. */
static inline long esca_sys_epoll_wait(int epfd, struct epoll_event *evs,
				       int max, int timeout_ms)
{
	return esca_sys_ret(syscall(SYS_epoll_pwait, epfd, evs, max,
				    timeout_ms, NULL, (size_t)_NSIG / 8));
}

/* Wait until fd is writable, however long it takes (ppoll: every Linux
 * architecture has it, poll not all).  0, or -errno (-EINTR included). */
static inline long esca_sys_wait_writable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	long r = esca_sys_ret(syscall(SYS_ppoll, &p, 1, NULL, NULL,
				      (size_t)_NSIG / 8));

	return r < 0 ? r : 0;
}

/* Has fd room now (POLLOUT), no wait?  1 yes, 0 no, or -errno. */
static inline long esca_sys_writable_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	struct timespec zero = { 0, 0 };

	return esca_sys_ret(syscall(SYS_ppoll, &p, 1, &zero, NULL,
				    (size_t)_NSIG / 8));
}

/* Wait until fd is readable, at most timeout_ms (-1: however long).
 * 1 readable, 0 timed out, or -errno (-EINTR included). */
static inline long esca_sys_wait_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct timespec t = { timeout_ms / 1000,
			      (long)(timeout_ms % 1000) * 1000000 };

	return esca_sys_ret(syscall(SYS_ppoll, &p, 1,
				    timeout_ms < 0 ? NULL : &t, NULL,
				    (size_t)_NSIG / 8));
}

#endif
