/* SPDX-License-Identifier: MIT
 * newfd.c - the makers of a new fd that need nothing of the library but
 * the lowest free number: each runs the thread's queued closes first
 * (lib_new_fd; DESIGN.md, "Contract: fd lifetime"), then the call.
 *
 * System calls behind a thin wrapper, made here raw: socket, pipe, pipe2,
 * eventfd, epoll_create, epoll_create1, timerfd_create, signalfd (a new
 * one: fd -1), memfd_create, inotify_init, inotify_init1, fanotify_init,
 * pidfd_open.  libc functions that open inside glibc, where no interposer
 * sees it (real.*): fopen, freopen, opendir, tmpfile, the mkstemp family,
 * shm_open, posix_openpt.
 *
 * The other makers are interposed for more than this and call lib_new_fd
 * themselves: open/openat/creat, dup, fcntl(F_DUPFD) (sync.c), accept,
 * accept4, recvmsg (its SCM_RIGHTS; read.c), socketpair (sync.c). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "preload.h"

#define RAW_NEW_FD(...)							\
	do {								\
		lib_new_fd();						\
		return (int)syscall(__VA_ARGS__);			\
	} while (0)

EXPORT int socket(int dom, int type, int proto)
{
	RAW_NEW_FD(SYS_socket, dom, type, proto);
}

EXPORT int pipe2(int fds[2], int flags)
{
	RAW_NEW_FD(SYS_pipe2, fds, flags);
}

EXPORT int pipe(int fds[2])
{
	return pipe2(fds, 0);
}

EXPORT int eventfd(unsigned int count, int flags)
{
	RAW_NEW_FD(SYS_eventfd2, count, flags);
}

EXPORT int epoll_create1(int flags)
{
	RAW_NEW_FD(SYS_epoll_create1, flags);
}

EXPORT int epoll_create(int size)
{
	if (size <= 0) {	/* the one thing epoll_create checks */
		errno = EINVAL;
		return -1;
	}
	return epoll_create1(0);
}

EXPORT int timerfd_create(int clock, int flags)
{
	RAW_NEW_FD(SYS_timerfd_create, clock, flags);
}

/* glibc passes the kernel's sigset size (_NSIG / 8), not sizeof(sigset_t) */
EXPORT int signalfd(int fd, const sigset_t *mask, int flags)
{
	if (fd == -1)
		lib_new_fd();
	return (int)syscall(SYS_signalfd4, fd, mask, _NSIG / 8, flags);
}

EXPORT int memfd_create(const char *name, unsigned int flags)
{
	RAW_NEW_FD(SYS_memfd_create, name, flags);
}

EXPORT int inotify_init1(int flags)
{
	RAW_NEW_FD(SYS_inotify_init1, flags);
}

EXPORT int inotify_init(void)
{
	return inotify_init1(0);
}

EXPORT int fanotify_init(unsigned int flags, unsigned int event_flags)
{
	RAW_NEW_FD(SYS_fanotify_init, flags, event_flags);
}

EXPORT int pidfd_open(pid_t pid, unsigned int flags)
{
	RAW_NEW_FD(SYS_pidfd_open, pid, flags);
}

/* The libc functions: before the library is set up (another library's
 * constructor) real.* is still empty. */
#define LIBC_NEW_FD(member, ...)					\
	do {								\
		if (unlikely(!lib_ready))				\
			esca_lib_init();				\
		lib_new_fd();						\
		return real.member(__VA_ARGS__);			\
	} while (0)

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	LIBC_NEW_FD(fopen, path, mode);
}
EXPORT FILE *fopen(const char *path, const char *mode)
	__attribute__((alias("fopen64")));

EXPORT FILE *freopen64(const char *path, const char *mode, FILE *f)
{
	LIBC_NEW_FD(freopen, path, mode, f);
}
EXPORT FILE *freopen(const char *path, const char *mode, FILE *f)
	__attribute__((alias("freopen64")));

EXPORT DIR *opendir(const char *path)
{
	LIBC_NEW_FD(opendir, path);
}

EXPORT FILE *tmpfile64(void)
{
	LIBC_NEW_FD(tmpfile);
}
EXPORT FILE *tmpfile(void) __attribute__((alias("tmpfile64")));

/* mkstemp(t) is mkostemps(t, 0, 0); each has its 64 name (glibc: aliases) */
EXPORT int mkostemps64(char *tmpl, int suffixlen, int flags)
{
	LIBC_NEW_FD(mkostemps, tmpl, suffixlen, flags);
}
EXPORT int mkostemps(char *tmpl, int suffixlen, int flags)
	__attribute__((alias("mkostemps64")));

EXPORT int mkstemps64(char *tmpl, int suffixlen)
{
	return mkostemps64(tmpl, suffixlen, 0);
}
EXPORT int mkstemps(char *tmpl, int suffixlen)
	__attribute__((alias("mkstemps64")));

EXPORT int mkostemp64(char *tmpl, int flags)
{
	return mkostemps64(tmpl, 0, flags);
}
EXPORT int mkostemp(char *tmpl, int flags)
	__attribute__((alias("mkostemp64")));

EXPORT int mkstemp64(char *tmpl)
{
	return mkostemps64(tmpl, 0, 0);
}
EXPORT int mkstemp(char *tmpl) __attribute__((alias("mkstemp64")));

EXPORT int shm_open(const char *name, int oflag, mode_t mode)
{
	LIBC_NEW_FD(shm_open, name, oflag, mode);
}

EXPORT int posix_openpt(int flags)
{
	LIBC_NEW_FD(posix_openpt, flags);
}
