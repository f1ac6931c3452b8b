/* close_range over numbers the program never opened, from one thread, while
 * other threads start writing (each thread's first deferred call makes its
 * ring).  Linux: close_range closes nothing; every thread's bytes arrive.
 * Had (session 12; the threaded fuzz's CI failure "stream 11: no EOF" with
 * "uring executor unavailable (Invalid argument)"): the ring's fd, low until
 * the library moves it high, was closed under it: the thread fell back to
 * sequential with a line on stderr, or worse.  argv[1] "dup2": the thread
 * loops dup2(0, 5), close(5) instead (5 is free to the program).  Prints
 * what the peer got.
 * alarm(20) ends a hang. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define THREADS 60

static int sv[2], use_dup2;
static volatile int stop;

static void *closer(void *arg)
{
	(void)arg;
	while (!stop) {
		if (!use_dup2) {
			close_range(5, 900, 0);	/* nothing of the program's */
		} else if (dup2(0, 5) == 5) {	/* 5 is free to the program */
			close(5);
		}
	}
	return NULL;
}

static void *writer(void *arg)
{
	char b[8];

	snprintf(b, sizeof(b), "w%03d;", (int)(long)arg);
	if (write(sv[0], b, 5) != 5)
		perror("write");
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t c, w;
	char buf[THREADS * 5 + 1];
	size_t got = 0;
	int bad = 0;

	alarm(20);
	use_dup2 = argc > 1 && !strcmp(argv[1], "dup2");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || sv[1] != 4)
		return 2;	/* 3 and 4: below the range */
	if (pthread_create(&c, NULL, closer, NULL))
		return 2;
	for (long i = 0; i < THREADS; i++) {
		if (pthread_create(&w, NULL, writer, (void *)i) ||
		    pthread_join(w, NULL))
			return 2;
	}
	stop = 1;
	pthread_join(c, NULL);
	shutdown(sv[0], SHUT_WR);
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(sv[1], buf + got, sizeof(buf) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = 0;
	for (int i = 0; i < THREADS; i++) {
		char want[8];

		snprintf(want, sizeof(want), "w%03d;", i);
		if (!strstr(buf, want))
			bad++;
	}
	printf("%zu bytes, %d writes missing\n", got, bad);
	return 0;
}
