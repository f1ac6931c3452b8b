/* Issue 12 defect 12: sendmsg with a msghdr pointer to unmapped memory, on
 * fds the library never defers: the kernel's answer (ENOTSOCK on a pipe,
 * EFAULT on a UDP socket), not SIGSEGV.  Each case runs in a child; a
 * valid sendmsg on a stream socket (deferred) comes first in each. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int ok_sendmsg(void)
{
	int sv[2];
	char b[4];
	struct iovec v = { "ok", 2 };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || sendmsg(sv[0], &m, 0) != 2 ||
	    read(sv[1], b, sizeof(b)) != 2)
		return -1;
	return 0;
}

int main(void)
{
	const char *names[] = { "pipe", "udp" };
	/* mapped but inaccessible: no later mapping can land there */
	void *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (page == MAP_FAILED)
		return 1;
	for (int i = 0; i < 2; i++) {
		pid_t pid;
		int st;

		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			int p[2], fd;
			ssize_t r;

			if (ok_sendmsg())
				_exit(100);
			if (i == 0) {
				if (pipe(p))
					_exit(101);
				fd = p[1];
			} else {
				fd = socket(AF_INET, SOCK_DGRAM, 0);
			}
			r = sendmsg(fd, (const struct msghdr *)page, 0);
			_exit(r < 0 ? errno : 102);
		}
		waitpid(pid, &st, 0);
		if (WIFSIGNALED(st))
			printf("%s: signal %s\n", names[i], strsignal(WTERMSIG(st)));
		else
			printf("%s: %s\n", names[i], strerror(WEXITSTATUS(st)));
	}
	if (ok_sendmsg())
		return 1;
	fflush(stdout);
	return 0;
}
