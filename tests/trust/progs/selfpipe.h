/* The self-pipe of the handler programs (found_thread_end.c,
 * found_handler_alloc.c): a non-blocking stream socketpair a signal handler
 * writes "S" to (selfpipe_note) and a drainer thread reads (selfpipe_start);
 * selfpipe_end() stops the drainer, closes the write end and reads to EOF,
 * so that fired == got when every "S" arrived. */
#ifndef SELFPIPE_H
#define SELFPIPE_H
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static int sigw, sigr;
static unsigned long fired, got;
static volatile int stop;

/* in the handler: one "S", counted when the kernel (or the library) took it */
static void selfpipe_note(void)
{
	int e = errno;

	if (write(sigw, "S", 1) == 1)
		__atomic_fetch_add(&fired, 1, __ATOMIC_RELAXED);
	errno = e;
}

static int drain(int wait_ms)
{
	char buf[4096];
	struct pollfd p = { .fd = sigr, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, wait_ms) <= 0)
		return 1;
	while ((n = read(sigr, buf, sizeof(buf))) > 0)
		got += (unsigned long)n;
	return n != 0;	/* 0: EOF */
}

static void *drainer(void *arg)
{
	(void)arg;
	while (!stop)
		drain(20);
	return NULL;
}

/* 0, or -1 when the pair or the drainer could not be made */
static int selfpipe_start(pthread_t *dr)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
		return -1;
	sigw = sv[0];
	sigr = sv[1];
	return pthread_create(dr, NULL, drainer, NULL) ? -1 : 0;
}

static void selfpipe_end(pthread_t dr)
{
	stop = 1;
	pthread_join(dr, NULL);
	close(sigw);
	for (int i = 0; i < 500 && drain(20); i++)
		;	/* to EOF (10 s at most) */
}
#endif
