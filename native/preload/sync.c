/* SPDX-License-Identifier: MIT
 * sync.c - calls that must see an fd's pending entries first
 * (before_fd_call; before_fd_look, which does not wait for a non-blocking
 * socket's parked sends): pread, lseek, fcntl, ioctl, fstat, getsockopt, fsync,
 * fdatasync, ftruncate; and those that give an fd number a new meaning:
 * dup, dup2, dup3, open, openat, fclose (DESIGN.md, "Contract: order"),
 * and socketpair (its ends know each other).  The makers of a new fd that
 * need only the lowest free number are in newfd.c. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	if (before_fd_look(fd) < 0)
		return -1;
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
	if (before_fd_look(fd) < 0)
		return -1;
	return (off_t)syscall(SYS_lseek, fd, off, whence);
}
EXPORT off_t lseek(int fd, off_t off, int whence)
	__attribute__((alias("lseek64")));

static int fcntl_common(int fd, int cmd, long arg)
{
	struct fdinfo *fi = fdi(fd);
	long r;

	if (fi && unlikely(fi->internal) && !(tls_ts && tls_ts->guard)) {
		errno = EBADF;	/* the library's own: a free number to the program */
		return -1;
	}
	if (fi && fi->kind == FK_BAD && before_fd_call(fd) < 0)
		return -1;	/* a deferred close of fd: EBADF, as without us */
	if (fd_closed_here(fi)) {
		errno = EBADF;	/* closed by the program, close pending */
		return -1;
	}
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		lib_new_fd();
	if (cmd == F_SETLKW || cmd == F_OFD_SETLKW)	/* waits for a lock */
		r = lib_syscall_cancel(SYS_fcntl, fd, cmd, arg);
	else
		r = syscall(SYS_fcntl, fd, cmd, arg);
	if (r < 0) {
		return -1;
	}
	if (cmd == F_SETFL)
		fd_note_nonblock(fd, arg & O_NONBLOCK);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
		struct fdinfo *fi = fdi((int)r);

		if (fi) {
			fd_forget(fi);
			fd_share_key(fd, (int)r);
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

EXPORT int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));
EXPORT int __fcntl(int fd, int cmd, ...) __attribute__((alias("fcntl")));

/* The other end of fd, a socketpair of the program's: its entries in this
 * thread's table go to the kernel (flush.c, lib_push_peer). */
static void push_peer(int fd)
{
	struct tstate *ts = tls_ts;
	struct fdinfo *fi = fdi(fd);

	if (fi && fi->peer && ts && !ts->guard && ts->table &&
	    esca_table_pending(ts->table))
		lib_push_peer(ts, fi);
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	long r;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (req != FIONBIO) {
		/* FIONREAD, SIOCOUTQ, ... see pending bytes; the send queue's
		 * counts (SIOCOUTQ, SIOCOUTQNSD) leave out bytes parked in
		 * the table (waited for, a client that does not read made
		 * them wait for good) */
		if (before_fd_look(fd) < 0)
			return -1;
		if (req == FIONREAD) {
			push_peer(fd);	/* and the other end's */
			/* the count is the kernel's, so is the next read: a
			 * slot of lever prefetch answered only what it peeked
			 * (test_prefetch, kind F: a read after FIONREAD said
			 * N returned fewer, 1 in ~20 runs) */
			prefetch_before_kernel(fd);
		}
	} else if (fd_closed_here(fdi(fd))) {
		errno = EBADF;
		return -1;
	}
	r = syscall(SYS_ioctl, fd, req, arg);
	if (r >= 0 && req == FIONBIO && arg)
		fd_note_nonblock(fd, *(int *)arg);
	return (int)r;
}

/* The program's own fstat tells us what a regular file is (and its size,
 * fresher than ours), so a file a server opens per request costs no look-up
 * of our own. */
EXPORT int fstat64(int fd, struct stat64 *st)
{
	struct fdinfo *fi;
	long r;

	if (before_fd_look(fd) < 0)	/* the size after our pending writes */
		return -1;
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
	long r;

	if (fd_closed_here(fi)) {
		errno = EBADF;
		return -1;
	}
	if (level == IPPROTO_TCP && name == TCP_CORK && fi && val && len &&
	    *len >= (socklen_t)sizeof(int) &&
	    (fi->flags & (FI_CORK_KNOWN | FI_DUPED)) == FI_CORK_KNOWN) {
		/* what the program set, in order: while composed, the
		 * kernel's cork is off and the program's is on.  Not for a
		 * dup: the cork is the socket's, set through any of its fds
		 * (the sockets' audit: set through a dup, read as 0), and a
		 * dup's cork is never composed (cork.c) */
		*(int *)val = !!(fi->flags & FI_CORKED);
		*len = sizeof(int);
		return 0;
	}
	if (level == IPPROTO_TCP && name == TCP_NODELAY && fi && fi->nodelay &&
	    !(fi->flags & FI_DUPED) && val && len &&
	    *len >= (socklen_t)sizeof(int) && tls_ts && tls_ts->table &&
	    esca_fd_pending(tls_ts->table, fd)) {
		/* as the program set it: its setsockopt may still be queued
		 * behind parked bytes, which a look does not wait for (the
		 * review's probe read 0 after setting 1); only then (a copy
		 * the library did not see set it meanwhile: the kernel's) */
		*(int *)val = fi->nodelay - 1;
		*len = sizeof(int);
		return 0;
	}
	if (before_fd_look(fd) < 0)	/* TCP_CORK and friends: in order
					 * (not behind parked bytes) */
		return -1;
	r = syscall(SYS_getsockopt, fd, level, name, val, len);
	if (r == 0 && level == SOL_SOCKET && name == SO_ERROR && val && len &&
	    *len >= (socklen_t)sizeof(int) && *(int *)val == 0 && fi &&
	    fi->kind == FK_STREAM) {
		/* a deferred send's error, due at the next call on fd: this
		 * one (its send had taken the kernel's; the next write's EPIPE
		 * follows, as on Linux after its own failed send) */
		int e = __atomic_exchange_n(&fi->err, 0, __ATOMIC_RELAXED);

		if (e)
			*(int *)val = e;
	}
	if (r == 0 && level == SOL_SOCKET && name == SO_ERROR && val && len &&
	    *len >= (socklen_t)sizeof(int) && *(int *)val && fi &&
	    fi->kind == FK_STREAM)
		/* the connection failed (a reset, a refused connect): Linux
		 * answers its later writes EPIPE, which only the kernel's
		 * call tells (the sockets' audit: told 1, no SIGPIPE) */
		fd_note_flag(fd, FI_SHUTWR, 1);
	return (int)r;
}

/* A stream socketpair: each end knows the other, so that a read of one
 * finds what the program wrote to the other (lib_push_peer), and lever
 * reads never answers one (a read that found it empty proves nothing once
 * the program itself writes the other end: FI_NOANSWER).  Found by the
 * reads' audit: write(a) then a non-blocking read(b) said EAGAIN
 * (tests/trust/test_found_socketpair.py). */
EXPORT int socketpair(int dom, int type, int proto, int sv[2])
{
	struct fdinfo *a, *b;
	int r;

	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_new_fd();
	r = (int)syscall(SYS_socketpair, dom, type, proto, sv);
	if (r < 0 || cfg.disabled || (type & 0xf) != SOCK_STREAM)
		return r;
	a = fdi(sv[0]);
	b = fdi(sv[1]);
	if (!a || !b)
		return r;
	fd_detect(sv[0], a);
	fd_detect(sv[1], b);
	a->flags |= FI_NOANSWER;
	b->flags |= FI_NOANSWER;
	a->peer = sv[1] + 1;
	a->peer_gen = b->gen;
	b->peer = sv[0] + 1;
	b->peer_gen = a->gen;
	return r;
}

/* A connect makes a connected stream socket: its data calls and its close
 * may be deferred.  A non-blocking one is connected when EINPROGRESS ends:
 * until then its calls go to the kernel (EAGAIN, ECONNREFUSED, EPIPE as
 * Linux says), and its first data call after asks (send.c,
 * stream_connected).  fd_detect's own calls leave errno as connect set it
 * (the sockets' audit: EINPROGRESS read as ENOTCONN, fd_detect's
 * getpeername's). */
EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct fdinfo *fi;
	int r;

	if (unlikely(!lib_ready))
		esca_lib_init();
	r = real.connect(fd, sa, len);
	fi = fdi(fd);
	if (fi && (r == 0 || errno == EINPROGRESS) &&
	    (fi->kind == FK_STREAM || fi->kind == FK_UNKNOWN)) {
		int e = errno;	/* EINPROGRESS is the program's */

		if (fi->kind == FK_UNKNOWN)
			fd_detect(fd, fi);
		if (r == 0)
			fi->flags |= FI_CONN;
		else if (!(fi->flags & FI_CONN))
			fi->flags |= FI_CONNECTING;
		errno = e;
	}
	return r;
}

/* dup2/dup3 onto newfd: every entry that names it runs first, this
 * thread's and other threads' (DESIGN.md, "Contract: fd lifetime"),
 * bounded: past the bound, EBUSY (fd_replace_ready).  0, or -1 with errno:
 * onto one of the library's own fds, EBUSY; from one, or from a number the
 * program closed (fd_closed), EBADF (a free number). */
static int before_replace(int old, int newfd)
{
	struct fdinfo *fi = fdi(newfd), *o = fdi(old);
	struct tstate *ts = tls_ts;

	if (ts && (ts->guard || vfork_child(ts)))
		return 0;
	if ((o && o->internal) || fd_closed(ts, o)) {
		errno = EBADF;
		return -1;
	}
	if (!fi)
		return 0;
	if (fi->internal) {
		errno = EBUSY;	/* as Linux says in a race with open */
		return -1;
	}
	if (old == newfd)
		return 0;
	if (fd_replace_ready(ts, fi, newfd) < 0) {
		errno = EBUSY;
		return -1;
	}
	return 0;
}

/* dup2 (flags -1) or dup3 itself: no fd of the library's is being made
 * meanwhile (newfd may be its low number: free to the program, not yet
 * ours, fd_closer_begin), and newfd is none of ours now (EBUSY, as
 * before_replace says).  Inside the library (a handler's): raw. */
static int replace(int old, int newfd, int flags)
{
	struct tstate *ts = tls_ts;
	struct fdinfo *fi = fdi(newfd);
	int r;

	if (ts && ts->guard)
		return flags < 0 ? real.dup2(old, newfd) :
				   real.dup3(old, newfd, flags);
	fd_closer_begin();
	if (fi && fi->internal) {
		fd_closer_end();
		errno = EBUSY;
		return -1;
	}
	r = flags < 0 ? real.dup2(old, newfd) : real.dup3(old, newfd, flags);
	fd_closer_end();
	return r;
}

/* After dup2/dup3 made newfd a copy of old: a new number to us, in old's
 * open file (its order key).  Not before the call: a failed one leaves
 * newfd as it was (the fd audit: its order key wiped, its bytes then went
 * out before older ones of its open file). */
static int after_replace(int old, int newfd)
{
	struct fdinfo *fi = fdi(newfd);

	if (fi)
		fd_forget(fi);
	return fd_share_key(old, newfd);
}

EXPORT int dup2(int old, int newfd)
{
	int r;

	if (unlikely(!lib_ready))
		esca_lib_init();
	if (before_replace(old, newfd) < 0)
		return -1;
	r = replace(old, newfd, -1);
	if (r >= 0 && old != newfd)
		after_replace(old, r);
	return r;
}

/* An fd the program opens: its access mode is in the flags, so a sendfile
 * from it need not ask the kernel (fd_access_ok).  Nothing is flushed
 * before an open: writes to files are never deferred (DESIGN.md,
 * "Deferral scope"). */
static int after_open(int fd, int flags)
{
	struct fdinfo *fi = fdi(fd);

	if (fi) {
		fd_forget(fi);
		fd_note_access(fi, flags);
	}
	return fd;
}

/* The mode argument of a variadic open, from the function's own "...":
 * there only with O_CREAT or O_TMPFILE. */
#define OPEN_MODE(flags) ({						\
	va_list ap_;							\
	int mode_ = 0;							\
									\
	va_start(ap_, flags);						\
	if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE)	\
		mode_ = va_arg(ap_, int);				\
	va_end(ap_);							\
	mode_;								\
})

/* Before the file at path is truncated (truncate, an open with O_TRUNC):
 * the deferred sendfiles reading it run first, this thread's and (bounded)
 * other threads', as they would have run before on Linux (the send audit:
 * truncated after a deferred sendfile returned, the file sent 0 bytes, the
 * bytes after it came early, and a later write said EPIPE).  Only where an
 * fd of a regular file is named by entries (a scan of the fd table, then
 * one stat). */
static void before_truncate(int dirfd, const char *path)
{
	struct tstate *ts = tls_ts;
	struct stat st;
	int top, any = 0;

	if (!fdtab || (ts && ts->guard) || !path)
		return;
	top = __atomic_load_n(&fd_hiwater, __ATOMIC_RELAXED);
	for (int fd = 0; fd <= top && fd < fdtab_n && !any; fd++)
		any = fdtab[fd].kind == FK_FILE &&
		      (__atomic_load_n(&fdtab[fd].users, __ATOMIC_ACQUIRE) &
		       FU_COUNT);
	if (!any || syscall(SYS_newfstatat, dirfd, path, &st, 0) < 0)
		return;
	for (int fd = 0; fd <= top && fd < fdtab_n; fd++) {
		struct fdinfo *fi = &fdtab[fd];
		struct stat fs;

		if (fi->kind != FK_FILE ||
		    !(__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) & FU_COUNT) ||
		    syscall(SYS_fstat, fd, &fs) < 0 || fs.st_dev != st.st_dev ||
		    fs.st_ino != st.st_ino)
			continue;
		if (ts)
			fd_wait_others(ts, fi, fd, 0);	/* ours, then theirs */
	}
}

static int open_common(int dirfd, const char *path, int flags, int mode)
{
	lib_new_fd();
	if (unlikely(flags & O_TRUNC))
		before_truncate(dirfd, path);
	/* glibc's openat: a cancellation point as the program's own call
	 * would have been, at glibc's cost (nothing to switch in a process
	 * of one thread; lib_syscall_cancel's two pthread_setcanceltype
	 * were ~70 instructions of nginx's request: benchmarks/servercost).
	 * A handler's open inside the library: no cancellation (as
	 * lib_cancel_on), the unwinding would leave our state half made.
	 * Before the library's start (another library's constructor):
	 * real.openat is not resolved yet, the raw call needs nothing. */
	if (unlikely(!real.openat || (tls_ts && tls_ts->guard)))
		return after_open((int)syscall(SYS_openat, dirfd, path, flags,
					       mode), flags);
	return after_open(real.openat(dirfd, path, flags, mode), flags);
}

EXPORT int truncate64(const char *path, off_t len)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	before_truncate(AT_FDCWD, path);
	return (int)syscall(SYS_truncate, path, len);
}
EXPORT int truncate(const char *path, off_t len)
	__attribute__((alias("truncate64")));

EXPORT int creat64(const char *path, mode_t mode)
{
	return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC,
			   (int)mode);
}
EXPORT int creat(const char *path, mode_t mode)
	__attribute__((alias("creat64")));

EXPORT int open64(const char *path, int flags, ...)
{
	return open_common(AT_FDCWD, path, flags, OPEN_MODE(flags));
}
EXPORT int open(const char *path, int flags, ...)
	__attribute__((alias("open64")));

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	return open_common(dirfd, path, flags, OPEN_MODE(flags));
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
	struct fdinfo *o = fdi(old), *fi;
	int r;

	if ((o && o->internal) || fd_closed(tls_ts, o)) {
		errno = EBADF;	/* the library's, or one the program closed:
				 * a free number to the program */
		return -1;
	}
	lib_new_fd();
	r = (int)syscall(SYS_dup, old);
	fi = fdi(r);

	if (r >= 0 && fi) {
		fd_forget(fi);
		fd_share_key(old, r);
	}
	return r;
}

EXPORT int dup3(int old, int newfd, int flags)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	if (before_replace(old, newfd) < 0)
		return -1;
	if (replace(old, newfd, flags) < 0)
		return -1;
	return after_replace(old, newfd);
}

/* fclose closes its fd inside glibc, where close() is not interposed */
EXPORT int fclose(FILE *fp)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	int fd = fp ? fileno(fp) : -1, r;
	struct fdinfo *fi;

	(void)before_fd_call(fd);	/* the FILE is freed whatever fd is */
	r = real.fclose(fp);
	if ((fi = fdi(fd)))
		fd_forget(fi);	/* the number means something new now */
	return r;
}

EXPORT int fsync(int fd)
{
	if (before_fd_look(fd) < 0)
		return -1;
	return (int)lib_syscall_cancel(SYS_fsync, fd);
}

EXPORT int fdatasync(int fd)
{
	if (before_fd_look(fd) < 0)
		return -1;
	return (int)lib_syscall_cancel(SYS_fdatasync, fd);
}

EXPORT int ftruncate64(int fd, off_t len)
{
	if (before_fd_look(fd) < 0)
		return -1;
	return (int)syscall(SYS_ftruncate, fd, len);
}
EXPORT int ftruncate(int fd, off_t len) __attribute__((alias("ftruncate64")));
