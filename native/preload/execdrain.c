/* SPDX-License-Identifier: MIT
 * execdrain.c - exec hands the thread's parked sends to a process that
 * outlives it (DESIGN.md, "Contract: parked sends"): exec_handover() (the
 * exec interposers, lifecycle.c) cancels them and starts "esca-drain", raw
 * system calls only, which writes their rest; exec_failed() where exec
 * returns; exec_drain_init() and exec_drain_wait() (fd_detect) make the new
 * image's first call on such a fd wait until the drain is done. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

#define DRAIN_VAR "ESCA_DRAIN"	/* "RFD:FD,FD,..." or "RFD:*" */
#define MAX_GATED 64

HIDDEN int exec_drain_fd = -1;	/* read end: EOF once the drain is done */
static int gated[MAX_GATED], ngated, gate_all;
static struct rest *handed;	/* this process's copy, for exec_failed */

extern char **environ;

/* ---- the drain process: raw system calls only (a raw clone of a process
 * that may have other threads: no lock of libc's may be taken) ---------- */

static int wait_room(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	for (;;) {
		long r = syscall(SYS_ppoll, &p, 1, NULL, NULL, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || (p.revents & (POLLERR | POLLNVAL)) ||
		    ((p.revents & POLLHUP) && !(p.revents & POLLOUT)))
			return -1;
		return 0;
	}
}

/* One rest, to its end: 0, or -1 when the fd failed (the peer gone). */
static int drain_one(struct rest *n)
{
	const struct esca_args *a = &n->a;
	off_t off = a->offset;
	size_t count = a->count;
	long r;

	switch (a->op) {
	case ESCA_OP_SENDFILE:
		while (count) {
			r = syscall(SYS_sendfile, a->fd, a->fd2,
				    a->offset >= 0 ? &off : NULL, count);
			if (r == 0)
				break;		/* the file ended */
			if (r > 0) {
				count -= (size_t)r;
				continue;
			}
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN || wait_room(a->fd) < 0)
				return -1;
		}
		return 0;
	case ESCA_OP_SHUTDOWN:
		return syscall(SYS_shutdown, a->fd, a->how) < 0 ? -1 : 0;
	case ESCA_OP_CLOSE:
		syscall(SYS_close, a->fd);	/* its own copy */
		return 0;
	case ESCA_OP_SETSOCKOPT:
		syscall(SYS_setsockopt, a->fd, a->level, a->optname, n->data,
			(socklen_t)n->len);
		return 0;
	case ESCA_OP_FSYNC:
		syscall(SYS_fsync, a->fd);
		return 0;
	default:
		break;
	}
	while (n->off < n->len) {
		r = syscall(SYS_sendto, a->fd, n->data + n->off,
			    n->len - n->off,
			    a->flags | MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0);
		if (r > 0) {
			n->off += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN && wait_room(a->fd) == 0)
			continue;
		return -1;
	}
	return 0;
}

__attribute__((noreturn)) static void drain_main(struct rest *list, int wfd,
						 int *keep, int nkeep)
{
	uint64_t all = ~0ull;
	int lo = 0, broken[MAX_GATED], nbroken = 0;

	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8);
	syscall(SYS_prctl, PR_SET_NAME, "esca-drain", 0, 0, 0);
	/* only the fds it writes and its end of the pipe: a listening
	 * socket, the other clients' connections, the rings go */
	keep[nkeep++] = wfd;
	for (int i = 1; i < nkeep; i++)	/* no libc: insertion sort */
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];

			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	for (int i = 0; i < nkeep; i++) {
		if (keep[i] > lo)
			syscall(SYS_close_range, lo, keep[i] - 1, 0);
		lo = keep[i] + 1;
	}
	syscall(SYS_close_range, lo, ~0u, 0);
	for (struct rest *n = list; n; n = n->next) {
		int skip = 0;

		for (int i = 0; i < nbroken; i++)
			skip |= broken[i] == n->a.fd;
		if (!skip && drain_one(n) < 0 && nbroken < MAX_GATED)
			broken[nbroken++] = n->a.fd;
	}
	syscall(SYS_exit_group, 0);
	__builtin_unreachable();
}

/* ---- the process that execs ------------------------------------------- */

/* A copy of envp with DRAIN_VAR set to val (any old one dropped). */
static char **env_with(char *const envp[], const char *val)
{
	size_t n = 0, k = 0, vl = strlen(DRAIN_VAR);
	char **e;

	while (envp && envp[n])
		n++;
	e = malloc((n + 2) * sizeof(*e));
	if (!e)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(envp[i], DRAIN_VAR "=", vl + 1))
			e[k++] = envp[i];
	e[k++] = (char *)val;
	e[k] = NULL;
	return e;
}

/* Before exec: when a reaping flush leaves sends parked, cancel them and
 * start the drain process with their rest.  Returns the environment the
 * exec must use (with DRAIN_VAR), or NULL: nothing handed over (the usual
 * bounded drain follows, lib_lifecycle_flush). */
char **exec_handover(char *const envp[])
{
	static char val[32 + MAX_GATED * 12];
	struct tstate *ts = tls_ts;
	struct rest *list = NULL;
	int p[2], keep[2 * MAX_GATED + 2], nkeep = 0, all = 0;
	size_t at;
	char **env;
	long pid;

	if (!ts || !ts->table || ts->guard || vfork_child(ts) ||
	    !(esca_table_caps(ts->table) & ESCA_CAP_PARKS))
		return NULL;
	lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_LIFECYCLE);
	if (!esca_table_inflight(ts->table) ||
	    syscall(SYS_pipe2, p, O_CLOEXEC) < 0)
		return NULL;
	ts->guard++;
	rests_collect(ts, &list);
	ts->guard--;
	if (!list) {
		syscall(SYS_close, p[0]);
		syscall(SYS_close, p[1]);
		return NULL;
	}
	at = (size_t)snprintf(val, sizeof(val), DRAIN_VAR "=%d:", p[0]);
	for (struct rest *n = list; n; n = n->next) {
		int fds[2] = { n->a.fd, n->a.op == ESCA_OP_SENDFILE ?
				 n->a.fd2 : -1 };

		for (int j = 0; j < 2; j++) {
			int seen = fds[j] < 0;

			for (int i = 0; i < nkeep && !seen; i++)
				seen = keep[i] == fds[j];
			if (seen)
				continue;
			if (nkeep == 2 * MAX_GATED) {
				all = 1;
				continue;
			}
			keep[nkeep++] = fds[j];
			if (j == 0 && nkeep <= MAX_GATED)
				at += (size_t)snprintf(val + at, sizeof(val) - at,
						      "%s%d", val[at - 1] == ':' ?
						      "" : ",", fds[j]);
			else if (j == 0)
				all = 1;
		}
	}
	if (all)
		snprintf(val, sizeof(val), DRAIN_VAR "=%d:*", p[0]);
	env = env_with(envp, val);
	/* a raw clone (no fork handlers, no lock of libc's taken), twice:
	 * the drain is no child of the new image's (its wait must not find
	 * it), and it sends no SIGCHLD */
	pid = env ? syscall(SYS_clone, 0, NULL, NULL, NULL, NULL) : -1;
	if (pid == 0) {
		if (syscall(SYS_clone, 0, NULL, NULL, NULL, NULL) == 0)
			drain_main(list, p[1], keep, nkeep);
		syscall(SYS_exit_group, 0);
	}
	syscall(SYS_close, p[1]);
	if (pid < 0) {
		say("exec: no drain process; the parked rest is dropped");
		syscall(SYS_close, p[0]);
		free(env);
		handed = list;
		exec_failed(NULL);
		return NULL;
	}
	syscall(SYS_wait4, pid, NULL, __WALL, NULL);
	syscall(SYS_fcntl, p[0], F_SETFD, 0);	/* the new image's */
	handed = list;
	exec_drain_fd = p[0];
	return env;
}

/* exec returned (it failed): the drain goes on; this process's later calls
 * on those fds wait for it at most 1 s (a rare path), then the entries'
 * counts are given back (fdinfo.users). */
void exec_failed(char **env)
{
	int rfd;

	threads_drain_again();	/* its end's drains gave up, maybe */
	if (!env && !handed)
		return;	/* nothing handed (a vfork child's exec among them:
			 * the gate of an earlier exec's drain stays) */
	rfd = __atomic_exchange_n(&exec_drain_fd, -1, __ATOMIC_ACQ_REL);

	if (rfd >= 0) {
		struct pollfd p = { .fd = rfd, .events = POLLIN };
		struct timespec s = { 1, 0 };

		syscall(SYS_ppoll, &p, 1, &s, NULL, 0);
		syscall(SYS_close, rfd);
	}
	while (handed) {
		struct rest *n = handed;

		handed = n->next;
		if (n->a.op == ESCA_OP_CLOSE)
			syscall(SYS_close, n->a.fd);	/* the drain closed its copy */
		fd_on_complete(NULL, n->user, n->a.op, n->a.fd,
			       n->a.op == ESCA_OP_SENDFILE ?
			       (int64_t)(n->user & ((1ull << 40) - 1)) :
			       (int64_t)n->user);
		free(n);
	}
	free(env);
}

/* ---- the new image --------------------------------------------------- */

/* At start-up: a drain of the image before us holds bytes for some fds. */
void exec_drain_init(void)
{
	const char *v = getenv(DRAIN_VAR);
	char *end;
	long rfd;
	struct fdinfo *fi;

	if (!v)
		return;
	rfd = strtol(v, &end, 10);
	if (end == v || *end != ':' || rfd < 0 ||
	    syscall(SYS_fcntl, (int)rfd, F_SETFD, FD_CLOEXEC) < 0) {
		unsetenv(DRAIN_VAR);
		return;
	}
	for (v = end + 1; *v && ngated < MAX_GATED; v = end + (*end == ',')) {
		if (*v == '*') {
			gate_all = 1;
			break;
		}
		gated[ngated++] = (int)strtol(v, &end, 10);
		if (end == v)
			break;
	}
	fi = fdi((int)rfd);
	if (fi)
		fi->internal = 1;	/* invisible to the program */
	unsetenv(DRAIN_VAR);		/* not for its children */
	exec_drain_fd = (int)rfd;
}

/* fd_detect, the library's first look at fd: a fd the drain writes waits
 * until the drain is done (its bytes first, as the peer would have them
 * had the exec waited); the pipe is then closed. */
void exec_drain_wait(int fd)
{
	struct pollfd p = { .events = POLLIN };
	int hit = gate_all, rfd;

	for (int i = 0; i < ngated && !hit; i++)
		hit = gated[i] == fd;
	p.fd = __atomic_load_n(&exec_drain_fd, __ATOMIC_ACQUIRE);
	if (!hit || p.fd < 0)
		return;
	lib_flush_block(tls_ts, fd, BLOCK_ROUNDS, 0);	/* what it queued goes first: it blocks */
	while (syscall(SYS_ppoll, &p, 1, NULL, NULL, 0) < 0 && errno == EINTR)
		;
	rfd = __atomic_exchange_n(&exec_drain_fd, -1, __ATOMIC_ACQ_REL);
	if (rfd >= 0) {
		struct fdinfo *fi = fdi(rfd);

		if (fi)
			fi->internal = 0;
		syscall(SYS_close, rfd);
	}
}
