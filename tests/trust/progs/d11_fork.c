/* Issue 12 defect 11: vfork and fork.
 *   vfork: with a deferred write pending, a vfork child stores into the
 *          parent's memory before _exit (as vfork allows): the parent sees it
 *   inherit: after the library is set up, a forked child lists the
 *          library's kinds of fds it inherited (none: the parent's ring
 *          and eventfd must not leak into it), closes every fd above 2
 *          (the daemon idiom), lets its event loop turn and lists the
 *          other fds still open (none: no program fd resists its close)
 * The parent writes to the peer (a stream socket, not stdout: trust_out.h);
 * the child, which closes the peer's number, lists its fds on stdout. */
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "trust_out.h"

static void w(const char *s)
{
	if (write(trust_out(), s, strlen(s)) != (ssize_t)strlen(s))
		_exit(3);
}

static int do_vfork(void)
{
	static volatile int shared;
	char line[64];
	pid_t pid;
	int st;

	w("before\n");			/* pending at the vfork */
	pid = vfork();
	if (pid == 0) {
		shared = 42;
		_exit(0);
	}
	if (pid < 0)
		return 1;
	waitpid(pid, &st, 0);
	snprintf(line, sizeof(line), "shared=%d\n", shared);
	w(line);
	return 0;
}

static int is_library_kind(const char *tgt)
{
	return !strcmp(tgt, "anon_inode:[io_uring]") ||
	       !strcmp(tgt, "anon_inode:[eventfd]") || !strcmp(tgt, "/dev/esca");
}

/* prints (on stdout) title and the open fds above 2 of the library's kinds
 * (lib) or of any other kind (!lib) */
static int list(const char *title, int lib)
{
	char path[64], tgt[256], out[4096];
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");

	if (!d)
		return -1;
	snprintf(out, sizeof(out), "%s", title);
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		ssize_t n;

		if (e->d_name[0] == '.' || fd < 3 || fd == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, tgt, sizeof(tgt) - 1);
		tgt[n > 0 ? n : 0] = 0;
		if (is_library_kind(tgt) == lib)
			snprintf(out + strlen(out), sizeof(out) - strlen(out),
				 " %d=%s", fd, tgt);
	}
	closedir(d);
	strcat(out, "\n");
	return write(1, out, strlen(out)) == (ssize_t)strlen(out) ? 0 : -1;
}

static int inherit(void)
{
	int sv[2], st;
	char b[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) ||
	    write(sv[0], "hi", 2) != 2 || read(sv[1], b, 2) != 2)
		return 1;
	close(sv[0]);
	close(sv[1]);
	w("parent\n");
	poll(NULL, 0, 0);
	pid = fork();
	if (pid == 0) {
		/* the parent's ring, eventfd or /dev/esca: none may be inherited */
		if (list("child at fork:", 1))
			_exit(4);
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		/* the close of the inherited peer socket may be deferred (its
		 * number stays taken until it runs: README, Limits): the event
		 * loop turns; the child's own ring, set up for that close, is not
		 * the program's business */
		poll(NULL, 0, 0);
		if (list("child after close loop:", 0))
			_exit(4);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	w("done\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "vfork"))
		return do_vfork();
	if (argc > 1 && !strcmp(argv[1], "inherit"))
		return inherit();
	return 2;
}
