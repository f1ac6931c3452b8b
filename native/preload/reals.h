/* SPDX-License-Identifier: MIT
 * reals.h - libc's functions behind our interposers: REAL_FUNCTIONS is the
 * one list; struct reals and reals_resolve() (lifecycle.c) are made from it. */
#ifndef ESCA_PRELOAD_REALS_H
#define ESCA_PRELOAD_REALS_H

#include <dirent.h>
#include <spawn.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

/* X(member, symbol, return type, (parameters), REQUIRED or OPTIONAL): one
 * row per libc function an interposer calls as real.member, found with
 * dlsym(RTLD_NEXT, symbol) at start-up, in this order.  A REQUIRED one
 * missing is fatal; an OPTIONAL one missing is NULL. */
#define REAL_FUNCTIONS(X)						\
	X(write, "write", ssize_t, (int, const void *, size_t), REQUIRED) \
	X(writev, "writev", ssize_t, (int, const struct iovec *, int),	\
	  REQUIRED)							\
	X(send, "send", ssize_t, (int, const void *, size_t, int), REQUIRED) \
	X(sendto, "sendto", ssize_t, (int, const void *, size_t, int,	\
	  const struct sockaddr *, socklen_t), REQUIRED)		\
	X(sendmsg, "sendmsg", ssize_t, (int, const struct msghdr *, int), \
	  REQUIRED)							\
	X(sendfile, "sendfile", ssize_t, (int, int, off_t *, size_t),	\
	  REQUIRED)							\
	X(shutdown, "shutdown", int, (int, int), REQUIRED)		\
	X(close, "close", int, (int), REQUIRED)				\
	X(setsockopt, "setsockopt", int,				\
	  (int, int, int, const void *, socklen_t), REQUIRED)		\
	X(epoll_wait, "epoll_wait", int,				\
	  (int, struct epoll_event *, int, int), REQUIRED)		\
	X(epoll_pwait, "epoll_pwait", int,				\
	  (int, struct epoll_event *, int, int, const sigset_t *), REQUIRED) \
	X(epoll_pwait2, "epoll_pwait2", int, (int, struct epoll_event *, \
	  int, const struct timespec *, const sigset_t *), OPTIONAL)	\
	X(poll, "poll", int, (struct pollfd *, unsigned long, int), REQUIRED) \
	X(ppoll, "ppoll", int, (struct pollfd *, unsigned long,		\
	  const struct timespec *, const sigset_t *), REQUIRED)		\
	X(select, "select", int,					\
	  (int, fd_set *, fd_set *, fd_set *, struct timeval *), REQUIRED) \
	X(pselect, "pselect", int, (int, fd_set *, fd_set *, fd_set *,	\
	  const struct timespec *, const sigset_t *), REQUIRED)		\
	X(read, "read", ssize_t, (int, void *, size_t), REQUIRED)	\
	X(readv, "readv", ssize_t, (int, const struct iovec *, int), REQUIRED) \
	X(recv, "recv", ssize_t, (int, void *, size_t, int), REQUIRED)	\
	X(recvfrom, "recvfrom", ssize_t, (int, void *, size_t, int,	\
	  struct sockaddr *, socklen_t *), REQUIRED)			\
	X(recvmsg, "recvmsg", ssize_t, (int, struct msghdr *, int), REQUIRED) \
	X(pread, "pread64", ssize_t, (int, void *, size_t, off_t), REQUIRED) \
	X(accept, "accept", int, (int, struct sockaddr *, socklen_t *),	\
	  REQUIRED)							\
	X(accept4, "accept4", int,					\
	  (int, struct sockaddr *, socklen_t *, int), REQUIRED)		\
	X(dup2, "dup2", int, (int, int), REQUIRED)			\
	X(dup3, "dup3", int, (int, int, int), REQUIRED)			\
	X(execve, "execve", int,					\
	  (const char *, char *const[], char *const[]), REQUIRED)	\
	X(execv, "execv", int, (const char *, char *const[]), REQUIRED)	\
	X(execvp, "execvp", int, (const char *, char *const[]), REQUIRED) \
	X(execvpe, "execvpe", int,					\
	  (const char *, char *const[], char *const[]), REQUIRED)	\
	X(fexecve, "fexecve", int, (int, char *const[], char *const[]),	\
	  REQUIRED)							\
	X(exit_, "_exit", void, (int), REQUIRED)			\
	X(Exit, "_Exit", void, (int), REQUIRED)				\
	X(fork, "fork", pid_t, (void), REQUIRED)			\
	X(Fork, "_Fork", pid_t, (void), OPTIONAL)			\
	X(pthread_sigmask, "pthread_sigmask", int, (int, const sigset_t *, \
	  sigset_t *), REQUIRED)					\
	X(sigprocmask, "sigprocmask", int, (int, const sigset_t *,	\
	  sigset_t *), REQUIRED)					\
	X(clone, "clone", int, (int (*)(void *), void *, int, void *,	\
	  pid_t *, void *, pid_t *), REQUIRED)				\
	X(quick_exit, "quick_exit", void, (int), OPTIONAL)		\
	X(execveat, "execveat", int, (int, const char *, char *const[],	\
	  char *const[], int), OPTIONAL)				\
	X(vfork, "vfork", pid_t, (void), REQUIRED)			\
	X(connect, "connect", int,					\
	  (int, const struct sockaddr *, socklen_t), REQUIRED)		\
	X(openat, "openat", int, (int, const char *, int, ...), REQUIRED) \
	X(exit, "exit", void, (int), REQUIRED)				\
	X(libc_start_main, "__libc_start_main", int,			\
	  (int (*)(int, char **, char **), int, char **, void (*)(void),	\
	   void (*)(void), void (*)(void), void *), REQUIRED)		\
	X(fclose, "fclose", int, (FILE *), REQUIRED)			\
	X(system, "system", int, (const char *), REQUIRED)		\
	X(popen, "popen", FILE *, (const char *, const char *), REQUIRED) \
	X(posix_spawn, "posix_spawn", int, (pid_t *, const char *,	\
	  const posix_spawn_file_actions_t *, const posix_spawnattr_t *, \
	  char *const[], char *const[]), REQUIRED)			\
	X(posix_spawnp, "posix_spawnp", int, (pid_t *, const char *,	\
	  const posix_spawn_file_actions_t *, const posix_spawnattr_t *, \
	  char *const[], char *const[]), REQUIRED)			\
	X(fdopen, "fdopen", FILE *, (int, const char *), REQUIRED)	\
	X(vdprintf, "vdprintf", int, (int, const char *, va_list), REQUIRED) \
	X(vdprintf_chk, "__vdprintf_chk", int,				\
	  (int, int, const char *, va_list), OPTIONAL)			\
	X(sendmmsg, "sendmmsg", int, (int, struct mmsghdr *, unsigned int, \
	  int), REQUIRED)						\
	X(splice, "splice", ssize_t, (int, loff_t *, int, loff_t *, size_t, \
	  unsigned int), REQUIRED)	\
	X(sigaction, "sigaction", int, (int, const struct sigaction *,	\
	  struct sigaction *), REQUIRED)				\
	X(kill, "kill", int, (pid_t, int), REQUIRED)			\
	X(killpg, "killpg", int, (pid_t, int), REQUIRED)		\
	X(raise, "raise", int, (int), REQUIRED)				\
	X(tgkill, "tgkill", int, (pid_t, pid_t, int), OPTIONAL)	\
	X(pthread_kill, "pthread_kill", int, (pthread_t, int), REQUIRED) \
	X(sigqueue, "sigqueue", int, (pid_t, int, const union sigval),	\
	  REQUIRED)							\
	X(abort, "abort", void, (void), REQUIRED)			\
	X(setuid, "setuid", int, (uid_t), REQUIRED)			\
	X(seteuid, "seteuid", int, (uid_t), REQUIRED)			\
	X(setreuid, "setreuid", int, (uid_t, uid_t), REQUIRED)		\
	X(setresuid, "setresuid", int, (uid_t, uid_t, uid_t), REQUIRED)	\
	X(pthread_create, "pthread_create", int, (pthread_t *,		\
	  const pthread_attr_t *, void *(*)(void *), void *), REQUIRED)	\
	X(pthread_exit, "pthread_exit", void, (void *), REQUIRED)	\
	X(fopen, "fopen64", FILE *, (const char *, const char *), REQUIRED) \
	X(freopen, "freopen64", FILE *, (const char *, const char *,	\
	  FILE *), REQUIRED)						\
	X(opendir, "opendir", DIR *, (const char *), REQUIRED)		\
	X(tmpfile, "tmpfile64", FILE *, (void), REQUIRED)		\
	X(mkostemps, "mkostemps64", int, (char *, int, int), REQUIRED)	\
	X(shm_open, "shm_open", int, (const char *, int, mode_t), REQUIRED) \
	X(posix_openpt, "posix_openpt", int, (int), REQUIRED)

struct pollfd;

#define REAL_MEMBER(member, symbol, ret, params, need) ret (*member) params;
struct reals {
	REAL_FUNCTIONS(REAL_MEMBER)
};
#undef REAL_MEMBER

#endif
