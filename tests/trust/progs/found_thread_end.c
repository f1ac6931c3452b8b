/* Threads that end while a SIGALRM handler writes to a socket (found by the
 * threaded fuzz, test_fuzz_threads.py[sigalrm]).  Each of N short-lived
 * threads writes one record to the peer ($TRUST_OUT) and returns; a timer
 * fires every 100 us and its handler writes "S" to its own socket, read by
 * a drainer thread.  The handler can run on an ending thread after the
 * library's end-of-thread hook (glibc blocks signals only at the very end).
 * At the end: the peer has every record, and every "S" the handler wrote
 * arrived.  Prints "threads N fired F got G" on stderr; exit 0, 1 on a
 * difference.  (No alarm(): the timer is SIGALRM's; the test's timeout
 * catches a hang.) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "selfpipe.h"
#include "trust_out.h"

static int out;

static void on_alarm(int s)
{
	(void)s;
	selfpipe_note();
}

static void *worker(void *arg)
{
	char rec[16];
	int n = snprintf(rec, sizeof(rec), "%08ld\n", (long)arg);

	if ((long)arg % 2)
		return NULL;	/* no interposed call of its own: the handler's
				 * may be its first, at its end */
	if (write(out, rec, (size_t)n) != n)
		perror("write");
	return NULL;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
	struct itimerval it = { { 0, 100 }, { 0, 100 } };
	long n = argc > 1 ? atol(argv[1]) : 300;
	pthread_t dr;

	out = trust_out();
	sigaction(SIGALRM, &sa, NULL);
	if (selfpipe_start(&dr))
		return 2;
	setitimer(ITIMER_REAL, &it, NULL);
	for (long i = 0; i < n; i++) {
		pthread_t th;

		if (pthread_create(&th, NULL, worker, (void *)i) ||
		    pthread_join(th, NULL))
			return 2;
	}
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	selfpipe_end(dr);
	fprintf(stderr, "threads %ld fired %lu got %lu\n", n, fired, got);
	return fired == got ? 0 : 1;
}
