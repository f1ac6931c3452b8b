/* Found by session 9's audit of the reads: a client writes a request to a
 * server (here a child answering each request at once) and then polls its
 * non-blocking socket by reading it until the reply comes, with no wait
 * call.  Plain Linux sent the request at the write: each round trip takes
 * microseconds.  Under the library the request stayed queued until the
 * timer's shot (the test sets it to 1 s: ESCA_FLUSH_US), so each round
 * trip waited for it.  argv[1]: round trips (5).  Prints how many took
 * less than 200 ms, and the replies' bytes.  alarm(20) ends a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 5, sv[2], quick = 0;
	char got[64] = "", b[8];
	pid_t kid;

	alarm(20);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 1;
	kid = fork();
	if (kid == 0) {	/* the server: each request's byte, answered */
		close(sv[0]);
		while (read(sv[1], b, 1) == 1)
			if (write(sv[1], b, 1) != 1)
				_exit(1);
		_exit(0);
	}
	close(sv[1]);
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0)
		return 1;
	for (int i = 0; i < n && i < 60; i++) {
		char q = (char)('a' + i % 26);
		double t0 = now_ms();
		ssize_t r;

		if (write(sv[0], &q, 1) != 1)
			return 1;
		while ((r = read(sv[0], b, 1)) < 0 && errno == EAGAIN)
			;	/* polling by reading */
		if (r != 1)
			return 1;
		got[i] = b[0];
		if (now_ms() - t0 < 200)
			quick++;
	}
	close(sv[0]);
	waitpid(kid, NULL, 0);
	printf("round trips under 200 ms: %d of %d, replies %s\n", quick, n, got);
	return 0;
}
