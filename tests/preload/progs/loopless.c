/* A worker thread without a loop (found by session 18's Redis audit: Redis
 * with --io-threads 2): it writes a reply, then spins on a counter in user
 * space, making no system call, until the next job.  Plain Linux sends the
 * reply at the write.  Under the library the write was deferred and the
 * thread reached no trigger: the reply waited for the thread's timer shot
 * (ESCA_FLUSH_US; every reply of Redis came 2 ms late).  The main thread
 * hands out argv[1] jobs (20) one at a time and reads each 16-byte reply
 * (a blocking read of the socketpair's other end); prints how many took
 * longer than argv[2] ms (100), and the replies' bytes.  alarm(30) ends a
 * hang. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int sv[2], jobs;
static int go;	/* the job the worker may do: 1, 2, ... */

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void *worker(void *arg)
{
	(void)arg;
	for (int i = 1; i <= jobs; i++) {
		char reply[32];

		while (__atomic_load_n(&go, __ATOMIC_ACQUIRE) < i)
			;	/* no system call */
		snprintf(reply, sizeof(reply), "reply %9d\n", i % 1000000000);
		if (write(sv[0], reply, 16) != 16) {
			perror("write");
			exit(1);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double slow_ms = argc > 2 ? atof(argv[2]) : 100;
	int slow = 0;
	pthread_t t;

	jobs = argc > 1 ? atoi(argv[1]) : 20;
	alarm(30);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 ||
	    pthread_create(&t, NULL, worker, NULL) != 0) {
		perror("setup");
		return 1;
	}
	for (int i = 1; i <= jobs; i++) {
		char got[17] = "";
		double t0 = now_ms();
		int n = 0;

		__atomic_store_n(&go, i, __ATOMIC_RELEASE);
		while (n < 16) {
			ssize_t r = read(sv[1], got + n, (size_t)(16 - n));

			if (r <= 0) {
				perror("read");
				return 1;
			}
			n += (int)r;
		}
		if (now_ms() - t0 > slow_ms)
			slow++;
		fputs(got, stdout);
	}
	if (pthread_join(t, NULL) != 0)
		return 1;
	printf("slow %d of %d\n", slow, jobs);
	return 0;
}
