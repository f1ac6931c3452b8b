/* Issue 12 defect 6: a worker thread's pending write at exit.  Main writes
 * and turns its loop (poll: its bytes go out); the worker writes, tells
 * main, and blocks; main returns (or exit()s) with the worker's write still
 * queued in the worker's table.  (Main writes first: a write of main's
 * after the worker's would wait for it, DESIGN.md "Contract: order", and
 * leave nothing for the exit path to drain.)
 * The peer (a stream socket, not stdout: trust_out.h) must see both.
 * argv[1] = return | exit. */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trust_out.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done;

static void *worker(void *arg)
{
	(void)arg;
	if (write(trust_out(), "worker-bytes\n", 13) != 13)
		_exit(3);
	pthread_mutex_lock(&mu);
	done = 1;
	pthread_cond_broadcast(&cv);
	for (;;)		/* blocked for good */
		pthread_cond_wait(&cv, &mu);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th;

	if (argc < 2)
		return 2;
	if (write(trust_out(), "main-bytes\n", 11) != 11)
		return 3;
	poll(NULL, 0, 0);
	pthread_create(&th, NULL, worker, NULL);
	pthread_mutex_lock(&mu);
	while (!done)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	if (!strcmp(argv[1], "exit"))
		exit(0);
	return 0;
}
