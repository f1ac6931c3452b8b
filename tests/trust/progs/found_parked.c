/* Found while rewriting tests/trust (not one of issue 12's defects): a
 * write to a full non-blocking stream socket (a self-pipe the event loop
 * drains later), then a call that waits for the entries of ANOTHER socket
 * (dup2 over it, or fcntl on it).  Plain: the self-pipe answers EAGAIN and
 * the call returns at once, and so does exit.  Under uring the program
 * hangs: the exit path waits for the send parked on the full self-pipe,
 * which nobody will read (and a sync of another fd waits for it too, up to
 * a bound: DESIGN.md, "Contract: parked sends").  Under sequential the write itself is told
 * success and completed in place: the thread blocks on its own self-pipe.
 * alarm(6): a hang dies of SIGALRM.  argv[1] = dup2 | fcntl. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int selfp[2], conn[2], other[2];
	long n = 0, ms;
	struct timespec t0, t1;
	int r;

	alarm(6);				/* a hang dies of SIGALRM */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, selfp) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, conn) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, other))
		return 1;
	/* the self-pipe fills up: plain, EAGAIN after a few hundred bytes */
	while (n < 20000 && write(selfp[0], "S", 1) == 1)
		n++;
	printf("self-pipe full: %s\n", n < 20000 ? strerror(errno) : "never");
	fflush(stdout);
	if (write(conn[0], "x", 1) != 1)	/* queued on another socket */
		return 3;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (argc > 1 && !strcmp(argv[1], "fcntl"))
		r = fcntl(conn[0], F_GETFL) >= 0;
	else
		r = dup2(other[0], conn[0]) == conn[0];
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	printf("%s = %d%s\n", argc > 1 && !strcmp(argv[1], "fcntl") ? "fcntl(conn)" : "dup2 over conn",
	       r, ms > 1000 ? " (after more than 1 s)" : "");
	fflush(stdout);
	return 0;			/* the exit path: plain, at once */
}
