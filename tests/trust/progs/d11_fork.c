/* Issue 12 defect 11: vfork and fork.
 *   vfork: with a deferred write pending, a vfork child stores into the
 *          parent's memory before _exit (as vfork allows): the parent sees it
 *   inherit: after the library is set up, a forked child closes every fd
 *          above 2 (the daemon idiom) and lists what is still open: nothing
 *          (the library's fds must not leak into the child, nor resist
 *          its close)
 * stdout is a stream socket to the peer. */
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void w(const char *s)
{
	if (write(1, s, strlen(s)) != (ssize_t)strlen(s))
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
		char path[64], tgt[256], out[4096] = "child fds:";
		struct dirent *e;
		DIR *d;

		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		d = opendir("/proc/self/fd");
		if (!d)
			_exit(4);
		while ((e = readdir(d))) {
			int fd = atoi(e->d_name);
			ssize_t n;

			if (e->d_name[0] == '.' || fd < 3 || fd == dirfd(d))
				continue;
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			n = readlink(path, tgt, sizeof(tgt) - 1);
			tgt[n > 0 ? n : 0] = 0;
			snprintf(out + strlen(out), sizeof(out) - strlen(out),
				 " %d=%s", fd, tgt);
		}
		closedir(d);
		strcat(out, "\n");
		w(out);
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
