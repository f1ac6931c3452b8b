/* Writes to a socket or pipe whose reading end is closed, and says what
 * happened.  Built and run by test_sigpipe.py, plainly and under esca run:
 * the outcome must be the same.
 *
 *   sigpipe_prog DISPOSITION CALL KIND LOOP
 *     DISPOSITION  default | ignore | handler   what SIGPIPE does (handler:
 *                  counts the signals and says how many it got)
 *     CALL         write | writev | send | nosignal (send with MSG_NOSIGNAL)
 *     KIND         unix | tcp | pipe
 *     LOOP         tight (calls back to back) | poll (poll(NULL, 0, 1) between
 *                  calls: an event-loop boundary)
 *
 * Prints "error ENAME sigpipes=N" and exits 3 at the first failing call, or prints
 * "no error" and exits 0 after CALLS calls; SIGPIPE (default) kills it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CALLS 2000

static volatile sig_atomic_t sigpipes;

static void on_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

int main(int argc, char **argv)
{
	int fds[2], wfd;
	static char buf[1000];
	const char *call, *kind;
	int poll_between;

	if (argc != 5) {
		fprintf(stderr, "usage: %s default|ignore|handler write|writev|send|nosignal "
			"unix|tcp|pipe tight|poll\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[1], "ignore") == 0)
		signal(SIGPIPE, SIG_IGN);
	else if (strcmp(argv[1], "handler") == 0)
		signal(SIGPIPE, on_sigpipe);
	else
		signal(SIGPIPE, SIG_DFL);
	call = argv[2];
	kind = argv[3];
	poll_between = strcmp(argv[4], "poll") == 0;
	memset(buf, 'x', sizeof(buf));

	if (strcmp(kind, "pipe") == 0) {
		if (pipe(fds) < 0)
			die("pipe");
		close(fds[0]);
		wfd = fds[1];
	} else if (strcmp(kind, "unix") == 0) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
			die("socketpair");
		close(fds[1]);
		wfd = fds[0];
	} else {
		struct sockaddr_in a = { .sin_family = AF_INET };
		socklen_t l = sizeof(a);
		int ls = socket(AF_INET, SOCK_STREAM, 0), peer;
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    listen(ls, 1) < 0 || getsockname(ls, (struct sockaddr *)&a, &l) < 0)
			die("listen");
		wfd = socket(AF_INET, SOCK_STREAM, 0);
		if (wfd < 0 || connect(wfd, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("connect");
		peer = accept(ls, NULL, NULL);
		if (peer < 0)
			die("accept");
		close(peer);
		close(ls);
		nanosleep(&ts, NULL);	/* the FIN is in */
	}

	for (int i = 0; i < CALLS; i++) {
		ssize_t r;

		if (strcmp(call, "write") == 0) {
			r = write(wfd, buf, sizeof(buf));
		} else if (strcmp(call, "writev") == 0) {
			struct iovec iov[2] = { { buf, 400 }, { buf + 400, 600 } };

			r = writev(wfd, iov, 2);
		} else if (strcmp(call, "send") == 0) {
			r = send(wfd, buf, sizeof(buf), 0);
		} else {
			r = send(wfd, buf, sizeof(buf), MSG_NOSIGNAL);
		}
		if (r < 0) {
			int e = errno;

			printf("error %s sigpipes=%d\n", strerrorname_np(e), (int)sigpipes);
			return 3;
		}
		if (poll_between)
			poll(NULL, 0, 1);
	}
	printf("no error\n");
	return 0;
}
