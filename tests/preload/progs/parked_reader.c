/* parked_reader.c - an epoll loop's reply parked on a unix stream socket
 * whose client reads (tests/preload/test_parked_reader.py).
 *
 * Usage: parked_reader unix|tcp BYTES SLEEP_US [ROUNDS]
 * The server (this process) writes BYTES with one write() on a non-blocking
 * socket (under esca: deferred whole, the rest parked on the full socket),
 * then waits in epoll_wait, its socket registered for EPOLLIN only, until
 * the client's one-byte answer.  The client is this program exec'd without
 * LD_PRELOAD: it reads 64 KiB at a time, SLEEP_US between reads (so the
 * server's thread sleeps in its wait while the client makes room), then
 * writes one byte.  Prints one JSON line a round: fd (the server's socket),
 * n (the write's count), got (what the client read), ms (write to answer),
 * waits (epoll_waits returned).  ROUNDS (1) runs it again on a new pair,
 * the closed numbers given again: a number whose send parked before must
 * be watched anew (session 19's review: it was taken for watched).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reply.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int client(int fd, size_t len, int sleep_us)
{
	static char buf[65536];
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0)
			break;
		got += (size_t)n;
		if (sleep_us)
			usleep((useconds_t)sleep_us);
	}
	if (write(fd, &got, sizeof(got)) != (ssize_t)sizeof(got))
		return 3;
	return 0;
}

static int tcp_pair(int sv[2])
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	socklen_t l = sizeof(in);
	int ls = socket(AF_INET, SOCK_STREAM, 0);

	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls < 0 || bind(ls, (void *)&in, sizeof(in)) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (void *)&in, &l) < 0)
		return -1;
	sv[1] = socket(AF_INET, SOCK_STREAM, 0);
	if (sv[1] < 0 || connect(sv[1], (void *)&in, sizeof(in)) < 0)
		return -1;
	sv[0] = accept(ls, NULL, NULL);
	close(ls);
	return sv[0] < 0 ? -1 : 0;
}

static int one(char **argv)
{
	size_t len, got = 0;
	int sv[2], ep, waits = 0, st;
	struct epoll_event ev = { .events = EPOLLIN };
	char fdarg[16];
	double t0, t1;
	ssize_t n;
	char *buf;
	pid_t pid;

	len = strtoul(argv[2], NULL, 0);
	if (!strcmp(argv[1], "tcp") ? tcp_pair(sv) < 0 :
	    socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 2;
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
		unsetenv("LD_PRELOAD");
		execl("/proc/self/exe", argv[0], "client", fdarg, argv[2],
		      argv[3], (char *)NULL);
		_exit(9);
	}
	close(sv[1]);
	buf = malloc(len);
	if (!buf)
		return 2;
	memset(buf, 'x', len);
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0)
		return 2;
	ep = epoll_create1(0);
	ev.data.fd = sv[0];
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) < 0)
		return 2;
	usleep(20000);		/* the client is reading */
	t0 = now_ms();
	st = write_reply(ep, sv[0], buf, len, &n, &waits);
	if (st)
		return st;
	if (read(sv[0], &got, sizeof(got)) != (ssize_t)sizeof(got))
		return 6;
	t1 = now_ms();
	close(sv[0]);
	close(ep);
	free(buf);
	waitpid(pid, &st, 0);
	printf("{\"fd\": %d, \"n\": %zd, \"got\": %zu, \"ms\": %.2f, "
	       "\"waits\": %d}\n", sv[0], n, got, t1 - t0, waits);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	int rounds = argc == 5 ? atoi(argv[4]) : 1;

	if (argc == 5 && !strcmp(argv[1], "client"))
		return client(atoi(argv[2]), strtoul(argv[3], NULL, 0),
			      atoi(argv[4]));
	if (argc != 4 && argc != 5)
		return 2;
	for (int r = 0; r < rounds; r++) {
		int x = one(argv);

		if (x)
			return x;
	}
	return 0;
}
