/* SPDX-License-Identifier: MIT
 * spawn.c - calls that write to an fd, or start a process that may, where
 * no deferring interposer sees the write (DESIGN.md, "Deferral scope"):
 *   system, popen, posix_spawn, posix_spawnp: the child inherits the
 *     sockets; what the parent wrote before must come before what the child
 *     writes (glibc starts the child with clone inside libc, where our fork
 *     handlers do not run): this thread's table is run first, as at fork;
 *   fdopen: a FILE is opened on the fd; stdio writes it inside glibc, so
 *     the fd is never deferred to again (fdinfo.stdio), after its pending
 *     entries run;
 *   dprintf, vdprintf (and their _chk forms), sendmmsg, splice: they write
 *     inside glibc or are never deferred themselves: the fd's pending
 *     entries run first.
 *   execl, execle, execlp: glibc builds the argv and calls execve inside
 *     libc, where our exec interposers (lifecycle.c) do not see it: nothing
 *     may stay behind, as for them.
 * pwrite, copy_file_range, vmsplice and tee write to files and pipes only,
 * which the preload never defers to: nothing to order them with. */
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "defer.h"

static inline void spawn_init(void)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
}

/* Before a child is started: this thread's pending entries go to the
 * kernel, parked sends stay the parent's (as thread_atfork_prepare does for
 * fork: flush.c, lib_flush_handover). */
static void before_spawn(void)
{
	struct tstate *ts;

	spawn_init();
	ts = tls_ts;
	if (ts && ts->table && !ts->guard && esca_table_pending(ts->table))
		lib_flush_handover(ts, ESCA_WHY_LIFECYCLE);
	if (!ts || !ts->guard)
		threads_hand_over();	/* and the other threads' (fork's) */
}

EXPORT int system(const char *cmd)
{
	before_spawn();
	return real.system(cmd);
}

EXPORT FILE *popen(const char *cmd, const char *mode)
{
	before_spawn();
	return real.popen(cmd, mode);
}

EXPORT int posix_spawn(pid_t *pid, const char *path,
		       const posix_spawn_file_actions_t *fa,
		       const posix_spawnattr_t *attr, char *const argv[],
		       char *const envp[])
{
	before_spawn();
	return real.posix_spawn(pid, path, fa, attr, argv, envp);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file,
			const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *attr, char *const argv[],
			char *const envp[])
{
	before_spawn();
	return real.posix_spawnp(pid, file, fa, attr, argv, envp);
}

/* The list of execl's arguments as an argv (on the stack: exec is no fast
 * path), after ap's first argument arg0; *envp gets execle's environment
 * when want_env. */
#define EXECL_ARGV(argv, arg0, want_env, envp) do {			\
	va_list ap_, cp_;						\
	size_t n_ = 1;							\
									\
	va_start(ap_, arg0);						\
	va_copy(cp_, ap_);						\
	while (va_arg(cp_, char *))					\
		n_++;							\
	va_end(cp_);							\
	argv = __builtin_alloca((n_ + 1) * sizeof(char *));		\
	argv[0] = (char *)(arg0);					\
	for (size_t i_ = 1; i_ <= n_; i_++)				\
		argv[i_] = va_arg(ap_, char *);	/* ends with NULL */	\
	if (want_env)							\
		*(envp) = va_arg(ap_, char *const *);			\
	va_end(ap_);							\
} while (0)

EXPORT int execl(const char *path, const char *arg0, ...)
{
	char **argv;

	EXECL_ARGV(argv, arg0, 0, (char *const **)NULL);
	return execv(path, argv);
}

EXPORT int execle(const char *path, const char *arg0, ...)
{
	char **argv;
	char *const *envp = NULL;

	EXECL_ARGV(argv, arg0, 1, &envp);
	return execve(path, argv, envp);
}

EXPORT int execlp(const char *file, const char *arg0, ...)
{
	char **argv;

	EXECL_ARGV(argv, arg0, 0, (char *const **)NULL);
	return execvp(file, argv);
}

/* A write to fd that no deferring interposer sees: after fd's pending
 * entries, and with the program's TCP_CORK real (lever compose). */
static void before_write(int fd)
{
	struct tstate *ts;

	spawn_init();
	(void)before_fd_call(fd);	/* a closed number: the write says so */
	ts = tls_ts;
	if (ts && !ts->guard)
		cork_for_real(ts, fd);
}

/* A write that no interposer defers, to a non-blocking socket whose
 * earlier bytes are parked on a client that does not read: EAGAIN at once,
 * as the kernel's full socket would answer it and as a deferred data call
 * is (parked_eagain); in order behind them, it waited for that client, for
 * good if it never read (tests/preload/test_parked_calls.py: splice,
 * dprintf). */
static int behind_parked_write(int fd, int flags)
{
	struct tstate *ts = tls_ts;
	struct fdinfo *fi = fdi(fd);

	if (!ts || ts->guard || !fi || !ts->table || vfork_child(ts))
		return 0;
	return parked_eagain(ts, fi, fd, flags);
}

/* A FILE on fd: what was queued on it goes first, then nothing more is.
 * Only a FILE that can write: one opened "r" never writes the fd.  The
 * mark goes on fd and on the first fd of its open file (its order key),
 * which every dup of it names (fd_never_deferred).  It stays on the number
 * (fd_forget keeps it): passing a later fd of that number through is
 * always correct, and fclose closes inside glibc. */
EXPORT FILE *fdopen(int fd, const char *mode)
{
	struct fdinfo *fi;
	FILE *fp;

	before_write(fd);
	fp = real.fdopen(fd, mode);
	fi = fdi(fd);
	if (fp && fi && (mode[0] != 'r' || strchr(mode, '+'))) {
		/* and the first fd of its open file, which its dups name */
		__atomic_store_n(&fi->stdio, 1, __ATOMIC_RELAXED);
		if (fi->order_key)
			__atomic_store_n(&fdtab[fi->order_key - 1].stdio, 1,
					 __ATOMIC_RELAXED);
	}
	return fp;
}

EXPORT int vdprintf(int fd, const char *fmt, va_list ap)
{
	spawn_init();
	if (behind_parked_write(fd, 0))
		return -1;
	before_write(fd);
	return real.vdprintf(fd, fmt, ap);
}

EXPORT int dprintf(int fd, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vdprintf(fd, fmt, ap);
	va_end(ap);
	return r;
}

/* _FORTIFY_SOURCE's forms of the two */
EXPORT int __vdprintf_chk(int fd, int flag, const char *fmt, va_list ap)
{
	spawn_init();
	if (behind_parked_write(fd, 0))
		return -1;
	before_write(fd);
	if (real.vdprintf_chk)
		return real.vdprintf_chk(fd, flag, fmt, ap);
	return real.vdprintf(fd, fmt, ap);
}

EXPORT int __dprintf_chk(int fd, int flag, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = __vdprintf_chk(fd, flag, fmt, ap);
	va_end(ap);
	return r;
}

EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
	spawn_init();
	if (behind_parked_write(fd, flags))
		return -1;
	before_write(fd);
	return real.sendmmsg(fd, v, n, flags);
}

/* out: after its pending entries.  in: a read that may block (a blocking
 * socket or pipe) could wait for a peer that waits for our bytes, as a
 * blocking read() (read.c): then everything this thread holds goes first. */
EXPORT ssize_t splice(int in, loff_t *off_in, int out, loff_t *off_out,
		      size_t len, unsigned int flags)
{
	struct tstate *ts;
	struct fdinfo *fi;

	spawn_init();
	if (behind_parked_write(out, 0))
		return -1;
	before_write(out);
	ts = tls_ts;
	if (ts && ts->table && !ts->guard && esca_table_pending(ts->table)) {
		fi = fdi(in);
		if (fi && fi->kind == FK_UNKNOWN)
			fd_detect(in, fi);
		if (!fi || (fi->kind != FK_FILE && !(fi->flags & FI_NONBLOCK)))
			lib_flush_block(ts, in, BLOCK_ROUNDS, 0);
	}
	return real.splice(in, off_in, out, off_out, len, flags);
}
