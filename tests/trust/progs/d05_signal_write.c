/* Issue 12 defect 5: a SIGALRM handler that write()s (the self-pipe trick,
 * here on a socketpair) while the main thread writes records to the peer (a
 * stream socket the test reads, not stdout: trust_out.h).  Every record
 * must arrive, in order, and the program must finish (the handler
 * re-entering the library mid-update made the main thread spin in its
 * flush).  argv[1] = records; argv[2] "full": the self-pipe's send buffer
 * at its least and drained every 1024 records, so that it fills up between
 * drains, as it did in the slow QEMU guest (plain: the handler's writes get
 * EAGAIN, ignored; the library must not wait for room on a pipe that only
 * this thread drains). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "trust_out.h"

static int selfp[2];
static volatile sig_atomic_t fired;

static void on_alarm(int sig)
{
	int e = errno;

	(void)sig;
	fired++;
	if (write(selfp[1], "s", 1) < 0 && errno != EAGAIN)
		_exit(3);
	errno = e;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
	struct itimerval it = { { 0, 100 }, { 0, 100 } };
	long n = argc > 1 ? atol(argv[1]) : 100000, drained = 0, every = 64;
	char rec[32], c[256];
	int out = trust_out();

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, selfp))
		return 1;
	if (argc > 2 && !strcmp(argv[2], "full")) {
		int least = 1;	/* the kernel's minimum */

		if (setsockopt(selfp[1], SOL_SOCKET, SO_SNDBUF, &least, sizeof(least)))
			return 1;
		every = 1024;
	}
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	for (long i = 0; i < n; i++) {
		int len = snprintf(rec, sizeof(rec), "%08ld\n", i);

		if (write(out, rec, (size_t)len) != len)
			return fprintf(stderr, "short write at %ld\n", i), 1;
		if (i % every == 0) {	/* the event loop drains its self-pipe */
			ssize_t r;

			while ((r = recv(selfp[0], c, sizeof(c), MSG_DONTWAIT)) > 0)
				drained += r;
		}
	}
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	fprintf(stderr, "records %ld fired %d drained %ld\n", n, (int)fired, drained);
	return 0;
}
