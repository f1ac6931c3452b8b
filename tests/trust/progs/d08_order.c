/* Issue 12 defect 8: writes the library does not see must not overtake the
 * ones it deferred.  stdout is a stream socket to the peer.
 *   stdio dprintf system posix_spawn popen splice sendmmsg: on stdout
 *   pwrite copy_file_range: on the file argv[2] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void w(int fd, const char *s)
{
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		_exit(3);
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "";

	if (!strcmp(how, "stdio")) {
		w(1, "1");
		printf("2");
		fflush(stdout);
		w(1, "3\n");
	} else if (!strcmp(how, "dprintf")) {
		w(1, "1");
		dprintf(1, "%d", 2);
		w(1, "3\n");
	} else if (!strcmp(how, "system")) {
		w(1, "parent-before\n");
		if (system("echo child") != 0)
			return 4;
		w(1, "parent-after\n");
	} else if (!strcmp(how, "posix_spawn")) {
		char *av[] = { "echo", "child", NULL };
		pid_t pid;
		siginfo_t si;

		w(1, "parent-before\n");
		if (posix_spawnp(&pid, "echo", NULL, NULL, av, environ))
			return 4;
		waitid(P_PID, (id_t)pid, &si, WEXITED);
		w(1, "parent-after\n");
	} else if (!strcmp(how, "popen")) {
		FILE *p;

		w(1, "parent-before\n");
		p = popen("echo child", "w");
		if (!p || pclose(p) != 0)
			return 4;
		w(1, "parent-after\n");
	} else if (!strcmp(how, "splice")) {
		int pp[2];

		if (pipe(pp) || write(pp[1], "B", 1) != 1)
			return 4;
		poll(NULL, 0, 0);	/* B is in the pipe */
		w(1, "A");
		if (splice(pp[0], NULL, 1, NULL, 1, 0) != 1)
			return 5;
		w(1, "C\n");
	} else if (!strcmp(how, "sendmmsg")) {
		struct iovec v = { "B", 1 };
		struct mmsghdr m = { .msg_hdr = { .msg_iov = &v, .msg_iovlen = 1 } };

		w(1, "A");
		if (sendmmsg(1, &m, 1, 0) != 1)
			return 5;
		w(1, "C\n");
	} else if (!strcmp(how, "pwrite") && argc > 2) {
		int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);

		w(fd, "AAAA");
		if (pwrite(fd, "BB", 2, 0) != 2)
			return 5;
		close(fd);
	} else if (!strcmp(how, "copy_file_range") && argc > 2) {
		char src[4096];
		int in, out;

		snprintf(src, sizeof(src), "%s.src", argv[2]);
		in = open(src, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (in < 0 || pwrite(in, "BBBB", 4, 0) != 4)
			return 4;
		out = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
		w(out, "AAAA");
		if (copy_file_range(in, NULL, out, NULL, 4, 0) != 4)
			return 5;
		close(out);
		close(in);
	} else {
		return 2;
	}
	return 0;
}
