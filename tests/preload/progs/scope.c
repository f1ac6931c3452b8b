/* SPDX-License-Identifier: MIT
 * scope.c - writes the preload does not see, next to ones it may defer
 * (issue 12, defects 8, 10, 12; DESIGN.md, "Deferral scope").
 *
 *   scope CASE FD   writes "1", "2", "3" (and "4", "5" for fdopen) to the
 *                   stream socket FD, the middle ones by a way no deferring
 *                   interposer sees: stdio (FD 1, or a dup of it),
 *                   fdopen (writes by FD or a dup of it), dprintf,
 *                   sendmmsg, splice, system, popen, posix_spawn(p)
 *                   (a child's printf); or "1" then exit/_exit, or exec
 *                   of a shell that writes "23".  The peer, read by the
 *                   test, must get them in order.  Each case also
 *                   writes "x" to a socketpair of its own, which the library
 *                   defers (the stats prove it ran).
 *   scope pwrite PATH    write "AAAA", pwrite "BB" at 0: prints the file
 *   scope fsize PATH     RLIMIT_FSIZE 10, SIGXFSZ ignored: write 16 bytes
 *                        twice, fsync, close: prints each result and errno
 *   scope sendmsg        sendmsg with invalid msghdr pointers on fds of
 *                        every kind: prints each result and errno
 *   scope sendmsg-unmapped  one sendmsg of an unmapped msghdr on a stream
 *                        socket (faults where the library defers it)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void die(const char *what)
{
	fprintf(stderr, "scope: %s: %s\n", what, strerror(errno));
	exit(99);
}

static void put(int fd, const char *s)
{
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		die("write");
}

/* a write the library defers: proof, in the stats, that it ran */
static void deferred_elsewhere(void)
{
	static int sv[2] = { -1, -1 };

	if (sv[0] < 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	put(sv[0], "x");
}

/* wait for the child without a flush trigger of the library (waitid is
 * not one), so a child that writes before the parent's pending bytes are
 * out is seen */
static void reap(pid_t pid)
{
	siginfo_t si;

	if (waitid(P_PID, (id_t)pid, &si, WEXITED) < 0)
		die("waitid");
}

static void child_printf(int fd, const char *how)
{
	char cmd[64], *argv[] = { "sh", "-c", cmd, NULL };
	pid_t pid;
	FILE *p;
	int r;

	snprintf(cmd, sizeof(cmd), "printf 2 >&%d", fd);
	if (!strcmp(how, "system")) {
		if (system(cmd) != 0)
			die("system");
	} else if (!strcmp(how, "popen")) {
		p = popen(cmd, "r");
		if (!p || pclose(p) != 0)
			die("popen");
	} else {
		r = !strcmp(how, "spawn") ?
		    posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ) :
		    posix_spawnp(&pid, "sh", NULL, NULL, argv, environ);
		if (r != 0) {
			errno = r;
			die("posix_spawn");
		}
		reap(pid);
	}
}

static int ordered(const char *how, int fd)
{
	char two[] = "2";
	struct iovec v = { two, 1 };
	struct mmsghdr mm = { .msg_hdr = { .msg_iov = &v, .msg_iovlen = 1 } };
	int p[2];
	FILE *f;

	if (fd > 9) {	/* sh's >&N takes one digit */
		if (dup2(fd, 9) < 0 || close(fd) < 0)
			die("dup2");
		fd = 9;
	}
	deferred_elsewhere();
	if (!strcmp(how, "stdio")) {	/* fd is 1 */
		put(1, "1");
		printf("2");
		fflush(stdout);
		put(1, "3");
		return 0;
	}
	if (!strcmp(how, "stdio-dup")) {	/* fd is 1; a dup of it */
		fd = dup(1);
		if (fd < 0)
			die("dup");
		put(fd, "1");
		printf("2");
		fflush(stdout);
		put(fd, "3");
		return 0;
	}
	if (!strcmp(how, "fdopen-dup")) {	/* a FILE on fd, writes by a dup */
		int d = dup(fd);

		if (d < 0)
			die("dup");
		put(d, "1");
		f = fdopen(fd, "w");
		if (!f)
			die("fdopen");
		fputs("2", f);
		fflush(f);
		put(d, "3");
		return 0;
	}
	put(fd, "1");
	if (!strcmp(how, "fdopen")) {
		f = fdopen(fd, "w");
		if (!f)
			die("fdopen");
		fputs("2", f);
		fflush(f);
		put(fd, "3");
		fputs("4", f);
		fflush(f);
		put(fd, "5");
		return 0;
	}
	if (!strcmp(how, "dprintf")) {
		if (dprintf(fd, "%d", 2) != 1)
			die("dprintf");
	} else if (!strcmp(how, "sendmmsg")) {
		if (sendmmsg(fd, &mm, 1, 0) != 1)
			die("sendmmsg");
	} else if (!strcmp(how, "splice")) {
		if (pipe(p) < 0)
			die("pipe");
		put(p[1], "2");
		if (splice(p[0], NULL, fd, NULL, 1, 0) != 1)
			die("splice");
	} else if (!strcmp(how, "exit")) {
		exit(0);
	} else if (!strcmp(how, "_exit")) {
		_exit(0);
	} else if (!strcmp(how, "exec")) {
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "printf 23 >&%d", fd);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		die("execl");
	} else {
		child_printf(fd, how);
	}
	put(fd, "3");
	return 0;
}

static int pwrite_case(const char *path)
{
	char got[16] = "";
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		die("open");
	deferred_elsewhere();
	put(fd, "AAAA");
	if (pwrite(fd, "BB", 2, 0) != 2)
		die("pwrite");
	if (pread(fd, got, sizeof(got) - 1, 0) < 0)
		die("pread");
	printf("%s\n", got);
	return close(fd) < 0;
}

static void said(const char *what, long r)
{
	printf("%s %ld %s\n", what, r, r < 0 ? strerrorname_np(errno) : "");
}

static int fsize_case(const char *path)
{
	struct rlimit rl, was;
	char buf[16];
	int fd;

	memset(buf, 'f', sizeof(buf));
	if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR)
		die("signal");
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die("open");
	deferred_elsewhere();
	if (getrlimit(RLIMIT_FSIZE, &was) < 0)
		die("getrlimit");
	rl = was;
	rl.rlim_cur = 10;
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
		die("setrlimit");
	said("write", (long)write(fd, buf, sizeof(buf)));
	said("write", (long)write(fd, buf, sizeof(buf)));
	said("fsync", fsync(fd));
	said("close", close(fd));
	if (setrlimit(RLIMIT_FSIZE, &was) < 0)	/* for the stats file */
		die("setrlimit");
	return 0;
}

/* the start of a page no access is allowed to (a fault, EFAULT in the
 * kernel): PROT_NONE, not munmap, so the page stays reserved and no later
 * mmap (the library's own: a thread's table is mmap'd on its first
 * deferred call) lands on it */
static void *unmapped(void)
{
	char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		die("mmap");
	if (mprotect(m + 4096, 4096, PROT_NONE) < 0)
		die("mprotect");
	return m + 4096;
}

static int sendmsg_case(void)
{
	struct iovec v = { "x", 1 };
	struct msghdr good = { .msg_iov = &v, .msg_iovlen = 1 };
	struct msghdr badiov = { .msg_iov = (struct iovec *)8, .msg_iovlen = 1 };
	void *bad = unmapped();
	int us[2], ud[2], p[2], inet, null;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, us) < 0 ||
	    socketpair(AF_UNIX, SOCK_DGRAM, 0, ud) < 0 || pipe(p) < 0)
		die("socketpair");
	inet = socket(AF_INET, SOCK_DGRAM, 0);
	null = open("/dev/null", O_WRONLY);
	if (inet < 0 || null < 0)
		die("socket");
	said("stream good", (long)sendmsg(us[0], &good, 0));	/* deferred */
	said("devnull unmapped", (long)sendmsg(null, bad, 0));
	said("pipe unmapped", (long)sendmsg(p[1], bad, 0));
	said("stdout unmapped", (long)sendmsg(1, bad, 0));
	said("dgram unmapped", (long)sendmsg(ud[0], bad, 0));
	said("udp unmapped", (long)sendmsg(inet, bad, 0));
	said("closed unmapped", (long)sendmsg(1000, bad, 0));
	said("stream 1", (long)sendmsg(us[0], (void *)1, 0));
	said("stream -1", (long)sendmsg(us[0], (void *)-1L, 0));
	said("stream iov 8", (long)sendmsg(us[0], &badiov, 0));
	said("stream good", (long)sendmsg(us[0], &good, 0));
	return 0;
}

/* one call that faults where the library defers it (README, Limits) */
static int sendmsg_unmapped(void)
{
	int us[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, us) < 0)
		die("socketpair");
	said("stream unmapped", (long)sendmsg(us[0], unmapped(), 0));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "sendmsg"))
		return sendmsg_case();
	if (argc == 2 && !strcmp(argv[1], "sendmsg-unmapped"))
		return sendmsg_unmapped();
	if (argc != 3)
		return 2;
	if (!strcmp(argv[1], "pwrite"))
		return pwrite_case(argv[2]);
	if (!strcmp(argv[1], "fsize"))
		return fsize_case(argv[2]);
	return ordered(argv[1], atoi(argv[2]));
}
