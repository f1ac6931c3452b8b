/* A signal handler's write is the first interposed call of a thread that is
 * inside malloc (found by the threaded fuzz, test_fuzz_threads.py[sigalrm]:
 * one hang in ~230 examples; gdb showed the handler's write in
 * tstate_create's calloc, blocked on the arena lock the interrupted free
 * held).  Each of N threads, one after another, loops on malloc/free of
 * sizes the tcache does not hold (so the arena lock is taken) until the
 * main thread's SIGUSR1 has run its handler, which writes "S" to a
 * non-blocking socket a drainer thread reads; then the thread writes one
 * record to the peer ($TRUST_OUT) and returns.  Prints "threads N fired F
 * got G" on stderr; exit 0 when every "S" arrived, 1 otherwise; a hang is
 * the test's timeout. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "selfpipe.h"
#include "trust_out.h"

static int out;
static __thread volatile int signalled;
static volatile int looping;

static void on_usr1(int s)
{
	(void)s;
	selfpipe_note();
	signalled = 1;
}

static void *worker(void *arg)
{
	char rec[16];
	int n = snprintf(rec, sizeof(rec), "%08ld\n", (long)arg);
	unsigned seed = (unsigned)(long)arg;

	looping = 1;
	while (!signalled) {
		/* past the tcache's largest size, under the mmap threshold */
		void *p = malloc(2048 + rand_r(&seed) % 60000);

		if (p)
			memset(p, 1, 64);
		free(p);
	}
	looping = 0;
	if (write(out, rec, (size_t)n) != n)
		perror("write");
	return NULL;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	struct timespec nap = { 0, 200000 };
	long n = argc > 1 ? atol(argv[1]) : 200;
	pthread_t dr;

	out = trust_out();
	sigaction(SIGUSR1, &sa, NULL);
	if (selfpipe_start(&dr))
		return 2;
	for (long i = 0; i < n; i++) {
		pthread_t th;

		if (pthread_create(&th, NULL, worker, (void *)i))
			return 2;
		while (!looping)
			nanosleep(&nap, NULL);
		nanosleep(&nap, NULL);	/* well inside its malloc loop */
		if (pthread_kill(th, SIGUSR1) || pthread_join(th, NULL))
			return 2;
	}
	selfpipe_end(dr);
	fprintf(stderr, "threads %ld fired %lu got %lu\n", n, fired, got);
	return fired == got && fired == (unsigned long)n ? 0 : 1;
}
