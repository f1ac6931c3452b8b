/* README, Limits: programs whose outcome under the library differs from the
 * plain run in the way a Limits entry says, so a test pins each entry (it
 * fails if the limit silently changes).  argv[1] the case; the peer is
 * $TRUST_OUT (trust_out.h).
 *   raw          write "1", raw syscall(SYS_write) "2", write "3": plain
 *                123; the library does not see the raw one: 213
 *   fdopen_reuse a number once given to fdopen, reused by a new socket:
 *                its writes are never deferred (stdout: "reused 1",
 *                "got reuse"; the stats: only the control write deferred)
 *   sigterm      write "x" to the peer, say "ready" on stdout, block on a
 *                semaphore (no flush trigger; the test turns the watchdog
 *                off) until the test's SIGTERM: the peer got "x", plain
 *                and (since session 10: the library's handler of a
 *                signal at its default flushes first) under the library
 *   close_clears a write to a socket whose peer is gone: plain, EPIPE at
 *                once; the library says 1 (the error comes one call late),
 *                then close() clears it: a new socket at that number
 *                writes fine
 *   timer_taken  the program takes the timer signal (SIGRTMAX-7); a worker
 *                writes "w" and blocks; main returns: plain, the peer got
 *                "w"; the library cannot drain the worker: lost */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "trust_out.h"

static sem_t never;
static sem_t written;

static void on_rt(int s)
{
	(void)s;
}

static void *worker(void *arg)
{
	int fd = *(int *)arg;

	if (write(fd, "w", 1) != 1)
		return NULL;
	sem_post(&written);
	sem_wait(&never);	/* a futex: no flush trigger */
	return NULL;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	int out = trust_out();

	sem_init(&never, 0, 0);
	sem_init(&written, 0, 0);
	if (!strcmp(c, "raw")) {
		if (write(out, "1", 1) != 1 ||
		    syscall(SYS_write, out, "2", 1) != 1 || write(out, "3", 1) != 1)
			return 1;
	} else if (!strcmp(c, "fdopen_reuse")) {
		int s[2], t[2], ctl[2];
		FILE *f;

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, ctl) ||
		    write(ctl[0], "ctl", 3) != 3)	/* deferred: the control */
			return 1;
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) || !(f = fdopen(s[0], "w")))
			return 1;
		fclose(f);	/* closes s[0] inside glibc */
		close(s[1]);
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, t))
			return 1;
		{
			int w = t[1] == s[0] ? t[1] : t[0];
			int r = w == t[0] ? t[1] : t[0];
			char buf[8];
			long n;

			printf("reused %d\n", w == s[0]);
			if (write(w, "reuse", 5) != 5)
				return 1;
			n = read(r, buf, sizeof(buf));	/* a flush trigger */
			printf("got %.*s\n", n > 0 ? (int)n : 0, buf);
		}
	} else if (!strcmp(c, "close_clears")) {
		int a[2], b[2];
		long r;
		char buf[8];

		signal(SIGPIPE, SIG_IGN);
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, a))
			return 1;
		close(a[1]);
		r = write(a[0], "x", 1);
		printf("write %ld %s\n", r, r < 0 ? strerror(errno) : "");
		usleep(1000);	/* a flush trigger: the deferred write fails */
		printf("close %d\n", close(a[0]));
		usleep(1000);	/* and a deferred close has run: the number free */
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, b))
			return 1;
		r = write(b[0], "y", 1);
		printf("reused %d write %ld\n", b[0] == a[0], r);
		r = read(b[1], buf, sizeof(buf));
		printf("got %.*s\n", r > 0 ? (int)r : 0, buf);
	} else if (!strcmp(c, "sigterm")) {
		if (write(out, "x", 1) != 1)
			return 1;
		printf("ready\n");
		fflush(stdout);
		sem_wait(&never);
	} else if (!strcmp(c, "timer_taken")) {
		pthread_t th;
		struct sigaction sa = { .sa_handler = on_rt };

		sigaction(SIGRTMAX - 7, &sa, NULL);
		if (pthread_create(&th, NULL, worker, &out))
			return 1;
		sem_wait(&written);
		return 0;	/* the worker's "w" is still queued in its table */
	} else {
		return 2;
	}
	return 0;
}
