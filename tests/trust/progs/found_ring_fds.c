/* Found by session 10's audit of threads: under uring each thread's ring
 * took a file descriptor of the program's, so a thread-per-connection
 * program ran out of numbers (EMFILE) at far fewer connections than with
 * plain Linux (119 of 300 sockets under RLIMIT_NOFILE 1024).
 *
 * With RLIMIT_NOFILE 128, main makes socketpairs until EMFILE; each pair
 * gets a thread that writes one byte to it (a deferred call: the thread's
 * table, and ring, are made) and waits.  Prints how many pairs were made
 * and how many bytes main then read from them, which must be plain's.  Then
 * every number is taken (dup) and one more thread writes to the first pair:
 * its ring cannot be made, and the library says nothing (plain: nothing).
 * alarm(20) ends a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX 200

static int sv[MAX + 1][2];
static sem_t wrote;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int done;

static void *conn(void *a)
{
	int *p = a;

	if (write(p[0], "x", 1) != 1)
		_exit(91);
	sem_post(&wrote);
	pthread_mutex_lock(&m);
	while (!done)
		pthread_cond_wait(&c, &m);
	pthread_mutex_unlock(&m);
	return NULL;
}

int main(void)
{
	struct rlimit rl = { 128, 128 };
	pthread_t t[MAX + 1];
	int n = 0, got = 0, err = 0;

	alarm(20);
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || sem_init(&wrote, 0, 0) < 0)
		return 90;
	for (; n < MAX; n++) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[n]) < 0) {
			err = errno;
			break;
		}
		if (pthread_create(&t[n], NULL, conn, sv[n]))
			return 92;
		sem_wait(&wrote);	/* its table is made before the next */
	}
	/* every number taken (dup until EMFILE), then one more thread
	 * writes: its ring finds no number, and it goes without, silently */
	{
		int d, nd = 0, dups[8];

		while (nd < 8 && (d = dup(0)) >= 0)
			dups[nd++] = d;
		if (n > 0) {
			if (pthread_create(&t[n], NULL, conn, sv[0]))
				return 93;
			sem_wait(&wrote);
		}
		while (nd > 0)
			close(dups[--nd]);
	}
	for (int i = 0; i < n; i++) {
		char b;

		if (read(sv[i][1], &b, 1) == 1 && b == 'x')
			got++;
	}
	if (n > 0) {
		char b;

		if (read(sv[0][1], &b, 1) == 1 && b == 'x')
			got++;
	}
	pthread_mutex_lock(&m);
	done = 1;
	pthread_cond_broadcast(&c);
	pthread_mutex_unlock(&m);
	for (int i = 0; i < n + (n > 0); i++)
		pthread_join(t[i], NULL);
	printf("pairs=%d bytes=%d stop=%s\n", n, got,
	       err == EMFILE ? "EMFILE" : "other");
	return 0;
}
