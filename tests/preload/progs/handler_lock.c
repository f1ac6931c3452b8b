/* A writer that holds a lock between its writes, and a reader that takes
 * the same lock before each read: plainly the writer's blocking write waits
 * outside the lock, so the reader always gets it.  Under the library the
 * writes are deferred and the writer is back in the lock at once; when the
 * thread's timer signal arrives there, its handler must not block on the
 * full socket (the reader waits for the lock the interrupted writer holds):
 * under the sequential executor it did, for good (a Python program's GIL,
 * tests/preload/progs/fork_threads.py, hung so in CI).
 *   handler_lock [CHUNKS]   prints "read N sum S"; exits 2 if it hangs */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 4096

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int sv[2], chunks = 512;
static unsigned long got, sum;

static void spin_us(long us)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	do
		clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < us);
}

static void *writer(void *arg)
{
	char buf[CHUNK];

	(void)arg;
	for (int k = 0; k < chunks; k++) {
		memset(buf, 'a' + k % 26, sizeof(buf));
		pthread_mutex_lock(&lock);
		spin_us(30);		/* work under the lock */
		pthread_mutex_unlock(&lock);
		if (write(sv[0], buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
			perror("write");
			exit(1);
		}
	}
	close(sv[0]);
	return NULL;
}

static void *reader(void *arg)
{
	char buf[65536];
	ssize_t n;

	(void)arg;
	for (;;) {
		pthread_mutex_lock(&lock);
		pthread_mutex_unlock(&lock);
		n = read(sv[1], buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			sum = sum * 31 + (unsigned char)buf[i];
		got += (unsigned long)n;
	}
	return NULL;
}

static void on_alarm(int s)
{
	(void)s;
	write(2, "hung\n", 5);
	_exit(2);
}

int main(int argc, char **argv)
{
	pthread_t w, r;

	if (argc > 1)
		chunks = atoi(argv[1]);
	signal(SIGALRM, on_alarm);
	alarm(20);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 1;
	pthread_create(&r, NULL, reader, NULL);
	pthread_create(&w, NULL, writer, NULL);
	pthread_join(w, NULL);
	pthread_join(r, NULL);
	printf("read %lu sum %lu\n", got, sum);
	return 0;
}
