/* A number one thread's deferred close frees, given at once to another
 * thread's new socket, which that thread then closes, close_ranges or
 * dup2s onto (the threaded fuzz: "close found its number closed", then a
 * stream without its EOF).
 *   found_qclose_reuse SECONDS
 * Thread A (the closer): socketpair, a write on one end (deferred), closes
 * of both ends (the connected one's close deferred), and every 8 rounds a
 * flush of its table by a poll of nothing: its table runs the closes in the
 * kernel and collects their completions a moment later.  Thread B (the
 * reuser): socketpair, then in turn a close of each end, a close_range
 * of each (closed after), or a dup2 of one onto the other (at once:
 * under 100 ms) and the closes, which must succeed (they are its own fds):
 * plain, they always do.  Prints "rounds N bad M" and
 * exits 1 if one of B's calls failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;
static unsigned long bad, rounds;

static void *closer(void *arg)
{
	unsigned long n = 0;

	(void)arg;
	while (!stop) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			continue;
		if (write(sv[0], "x", 1) != 1)
			fprintf(stderr, "write: %s\n", strerror(errno));
		close(sv[1]);
		close(sv[0]);
		if (++n % 8 == 0)
			poll(NULL, 0, 0);	/* a wait: flushes the table */
	}
	return NULL;
}

#define BAD(...) (fprintf(stderr, __VA_ARGS__), \
		    __atomic_fetch_add(&bad, 1, __ATOMIC_RELAXED))

static void *reuser(void *arg)
{
	(void)arg;
	while (!stop) {
		struct timespec t0, t1;
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			continue;
		switch (rounds % 3) {
		case 0:		/* close each */
			break;
		case 1:		/* close_range of each: closed (the number
				 * free, or another thread's file since) */
			for (int i = 0; i < 2; i++) {
				struct stat a, b;

				if (fstat(sv[i], &a))
					BAD("fstat(%d): %s\n", sv[i], strerror(errno));
				if (close_range((unsigned)sv[i], (unsigned)sv[i], 0))
					BAD("close_range(%d): %s\n", sv[i], strerror(errno));
				if (fstat(sv[i], &b) == 0 && a.st_ino == b.st_ino &&
				    a.st_dev == b.st_dev)
					BAD("close_range left %d open\n", sv[i]);
			}
			__atomic_fetch_add(&rounds, 1, __ATOMIC_RELAXED);
			continue;
		case 2:		/* dup2 onto one: at once */
			clock_gettime(CLOCK_MONOTONIC, &t0);
			if (dup2(sv[0], sv[1]) != sv[1])
				BAD("dup2(%d, %d): %s\n", sv[0], sv[1], strerror(errno));
			clock_gettime(CLOCK_MONOTONIC, &t1);
			if ((t1.tv_sec - t0.tv_sec) * 1000000000L + t1.tv_nsec - t0.tv_nsec > 100000000L)
				BAD("dup2(%d, %d) took over 100 ms\n", sv[0], sv[1]);
			break;
		}
		for (int i = 0; i < 2; i++)
			if (close(sv[i]))
				BAD("close(%d): %s\n", sv[i], strerror(errno));
		__atomic_fetch_add(&rounds, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t a, b;
	struct timespec t = { argc > 1 ? atoi(argv[1]) : 2, 0 };

	pthread_create(&a, NULL, closer, NULL);
	pthread_create(&b, NULL, reuser, NULL);
	nanosleep(&t, NULL);
	stop = 1;
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	printf("rounds %lu bad %lu\n", rounds, bad);
	return bad ? 1 : 0;
}
