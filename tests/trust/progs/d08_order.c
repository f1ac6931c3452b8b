/* Issue 12 defect 8: writes the library does not see must not overtake the
 * ones it deferred.  The deferred writes go to the peer, a stream socket
 * that is not fd 0-2 (those are never deferred: trust_out.h); the unseen
 * writes reach the same socket through glibc or a child:
 *   stdio      fdopen() on it, fprintf, fflush
 *   dprintf    dprintf() on it
 *   system popen posix_spawn   a child writes to the inherited socket
 *              (posix_spawn: echo with the socket as its stdout; system,
 *              popen: "argv[0] child", this program in mode child)
 *   splice sendmmsg            on the socket, with a write queued on it
 *   pwrite copy_file_range: on the file argv[2] (files are never deferred:
 *              the test asserts the writes were passed through) */
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

#include "trust_out.h"

extern char **environ;

static void w(int fd, const char *s)
{
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		_exit(3);
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "";
	int out = trust_out();
	char cmd[4200];

	/* the child of system/popen: this program, writing to the inherited
	 * peer (dash cannot redirect to a fd above 9) */
	snprintf(cmd, sizeof(cmd), "'%s' child", argv[0]);
	if (!strcmp(how, "child")) {
		w(out, "child\n");
	} else if (!strcmp(how, "stdio")) {
		FILE *f;

		w(out, "1");
		f = fdopen(out, "w");	/* never fclose()d: it would close out */
		if (!f)
			return 4;
		fprintf(f, "2");
		fflush(f);
		w(out, "3\n");
	} else if (!strcmp(how, "dprintf")) {
		w(out, "1");
		dprintf(out, "%d", 2);
		w(out, "3\n");
	} else if (!strcmp(how, "system")) {
		w(out, "parent-before\n");
		if (system(cmd) != 0)
			return 4;
		w(out, "parent-after\n");
	} else if (!strcmp(how, "posix_spawn")) {
		char *av[] = { "echo", "child", NULL };
		posix_spawn_file_actions_t fa;
		pid_t pid;
		siginfo_t si;

		w(out, "parent-before\n");
		if (posix_spawn_file_actions_init(&fa) ||
		    posix_spawn_file_actions_adddup2(&fa, out, 1) ||
		    posix_spawnp(&pid, "echo", &fa, NULL, av, environ))
			return 4;
		waitid(P_PID, (id_t)pid, &si, WEXITED);
		w(out, "parent-after\n");
	} else if (!strcmp(how, "popen")) {
		FILE *p;

		w(out, "parent-before\n");
		p = popen(cmd, "w");
		if (!p || pclose(p) != 0)
			return 4;
		w(out, "parent-after\n");
	} else if (!strcmp(how, "splice")) {
		int pp[2];

		if (pipe(pp) || write(pp[1], "B", 1) != 1)
			return 4;
		poll(NULL, 0, 0);	/* B is in the pipe */
		w(out, "A");
		if (splice(pp[0], NULL, out, NULL, 1, 0) != 1)
			return 5;
		w(out, "C\n");
	} else if (!strcmp(how, "sendmmsg")) {
		struct iovec v = { "B", 1 };
		struct mmsghdr m = { .msg_hdr = { .msg_iov = &v, .msg_iovlen = 1 } };

		w(out, "A");
		if (sendmmsg(out, &m, 1, 0) != 1)
			return 5;
		w(out, "C\n");
	} else if (!strcmp(how, "pwrite") && argc > 2) {
		int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);

		w(fd, "AAAA");
		if (pwrite(fd, "BB", 2, 0) != 2)
			return 5;
		close(fd);
	} else if (!strcmp(how, "copy_file_range") && argc > 2) {
		char src[4096];
		int in, fd;

		snprintf(src, sizeof(src), "%s.src", argv[2]);
		in = open(src, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (in < 0 || pwrite(in, "BBBB", 4, 0) != 4)
			return 4;
		fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
		w(fd, "AAAA");
		if (copy_file_range(in, NULL, fd, NULL, 4, 0) != 4)
			return 5;
		close(fd);
		close(in);
	} else {
		return 2;
	}
	return 0;
}
