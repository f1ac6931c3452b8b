/* Found chasing a hang of d05_signal_write/full in the QEMU guest (session
 * 8's note): the exiting thread's own timer signal, while the exit waits
 * for the other threads' tables (threads_drain_others sets lib_draining),
 * ran the handler's end-of-process flush, which waits for every entry,
 * parked sends included, on the exiting thread itself: a send parked on
 * its own full non-blocking self-pipe, which nobody will drain.
 * Plain: the self-pipe answers EAGAIN; the other thread blocks in its write
 * to a peer that never reads; the return from main ends the process at
 * once.  Under esca the exit may wait a bounded time for the other thread's
 * bytes (DESIGN.md, "Contract: threads and fork"), never for good.
 * alarm(8): a hang dies of SIGALRM. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int other[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int started;

static void *writer(void *arg)
{
	static char buf[1 << 20];

	(void)arg;
	memset(buf, 'w', sizeof(buf));
	pthread_mutex_lock(&mu);
	started = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	/* its peer never reads: plain, this blocks for good */
	for (;;)
		if (write(other[1], buf, sizeof(buf)) < 0)
			return NULL;
}

int main(void)
{
	int selfp[2], least = 1;
	long n = 0;
	pthread_t t;

	alarm(8);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, selfp) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, other))
		return 1;
	if (setsockopt(selfp[1], SOL_SOCKET, SO_SNDBUF, &least, sizeof(least)))
		return 1;
	if (pthread_create(&t, NULL, writer, NULL))
		return 1;
	pthread_mutex_lock(&mu);
	while (!started)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	/* the self-pipe fills up: plain, EAGAIN after a few hundred bytes */
	while (n < 100000 && write(selfp[1], "s", 1) == 1)
		n++;
	printf("self-pipe full: %s\n", n < 100000 ? strerror(errno) : "never");
	usleep(100000);		/* the writer's bytes are parked by now */
	fflush(stdout);
	return 0;		/* plain: the process ends at once */
}
