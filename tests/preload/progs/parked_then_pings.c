/* parked_then_pings.c - after a reply parked on a unix stream socket is
 * out, the loop's waits are as many as before it (tests/preload/
 * test_parked_reader.py, test_no_wakeups_after_a_parked_reply).
 *
 * Usage: parked_then_pings BIG PINGS
 * The server (this process) writes BIG bytes with one write() on a
 * non-blocking unix socket (BIG 0: none; under esca deferred, the rest
 * parked), waits in epoll_wait until its client has read them all and
 * answered one byte, then plays PINGS round trips: a 64-byte write, an
 * epoll_wait for the answer, a one-byte read.  The client (a fork) reads
 * and answers.  Prints "ok" once everything arrived.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reply.h"

static int read_all(int fd, char *b, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = read(fd, b + got, len - got);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static int wait_in(int ep)
{
	struct epoll_event out;

	for (;;) {
		int r = epoll_wait(ep, &out, 1, 10000);

		if (r < 0 && errno == EINTR)
			continue;
		return r == 1 ? 0 : -1;
	}
}

int main(int argc, char **argv)
{
	size_t big = argc == 3 ? strtoul(argv[1], NULL, 0) : 0;
	int pings = argc == 3 ? atoi(argv[2]) : 0, sv[2], ep, st;
	struct epoll_event ev = { .events = EPOLLIN };
	char *buf = malloc(big + 64);
	pid_t pid;

	if (argc != 3 || !buf || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 2;
	memset(buf, 'x', big + 64);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		if (big && (read_all(sv[1], buf, big) < 0 ||
			    write(sv[1], "k", 1) != 1))
			_exit(3);
		for (int i = 0; i < pings; i++)
			if (read_all(sv[1], buf, 64) < 0 ||
			    write(sv[1], "k", 1) != 1)
				_exit(3);
		_exit(0);
	}
	close(sv[1]);
	ep = epoll_create1(0);
	ev.data.fd = sv[0];
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0 || ep < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) < 0)
		return 2;
	if (big) {
		ssize_t first;
		int waits = 0, r = write_reply(ep, sv[0], buf, big, &first,
					       &waits);

		if (r)
			return r;
		if (read(sv[0], buf, 1) != 1)
			return 6;
	}
	for (int i = 0; i < pings; i++) {
		if (write(sv[0], buf, 64) != 64)
			return 4;
		if (wait_in(ep) < 0)
			return 5;
		if (read(sv[0], buf, 1) != 1)
			return 6;
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		return 7;
	printf("ok\n");
	return 0;
}
