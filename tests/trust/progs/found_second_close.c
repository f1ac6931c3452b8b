/* Found reading fdmap.c (session 8's note): a second close of a number whose
 * first close is still queued in this thread's own table, behind a send
 * parked on a full socket.  Plain: the number is free after the first
 * close, and close(fd) answers -1/EBADF at once, close_range(fd, fd, 0) 0
 * at once.  Under uring the library waited 20 ms each time before it
 * answered (fd_qclose_stands polled for another thread's progress that
 * only this thread's own flush can make).
 * The socket is non-blocking and its peer does not read until the end:
 * writes of 64 KiB until EAGAIN fill it (under esca the last ones are
 * told success and parked), then close, then TRIES times close(fd) and
 * close_range(fd, fd, 0), each timed; the least time of each is printed
 * in whole milliseconds.  Then the peer reads everything: the bytes the
 * writes were told, then EOF.  alarm(3): a hang dies of SIGALRM. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TRIES 5
#define CHUNK 65536

static long now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

int main(void)
{
	static char buf[CHUNK];
	int sv[2], fd, r, e, close_errno = 0, range_bad = 0, eof = 0;
	long told = 0, got = 0, best_close = -1, best_range = -1;

	alarm(3);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
		return perror("socketpair"), 1;
	fd = sv[1];
	memset(buf, 'p', sizeof(buf));
	for (int i = 0; i < 1024; i++) {
		ssize_t k = write(fd, buf, sizeof(buf));

		if (k < 0) {
			if (errno != EAGAIN)
				return perror("write"), 1;
			break;
		}
		told += k;
	}
	if (close(fd))
		return perror("close"), 1;
	for (int i = 0; i < TRIES; i++) {
		long t0 = now_us(), dt;

		r = close(fd);
		e = errno;
		dt = now_us() - t0;
		if (r != -1 || e != EBADF)
			close_errno = r == 0 ? -1 : e;
		if (best_close < 0 || dt < best_close)
			best_close = dt;
		t0 = now_us();
		r = close_range((unsigned)fd, (unsigned)fd, 0);
		dt = now_us() - t0;
		if (r != 0)
			range_bad = errno;
		if (best_range < 0 || dt < best_range)
			best_range = dt;
	}
	printf("close again: %s\n", close_errno == 0 ? "EBADF" :
	       close_errno < 0 ? "0" : strerror(close_errno));
	printf("close_range again: %s\n", range_bad ? strerror(range_bad) : "0");
	printf("least close ms %ld\n", best_close / 1000);
	printf("least close_range ms %ld\n", best_range / 1000);
	for (;;) {
		struct pollfd p = { .fd = sv[0], .events = POLLIN };
		ssize_t k;

		if (poll(&p, 1, 10000) != 1)
			break;
		k = read(sv[0], buf, sizeof(buf));
		if (k < 0 && errno == EAGAIN)
			continue;
		if (k <= 0) {
			eof = k == 0;
			break;
		}
		got += k;
	}
	printf("peer got the bytes told: %s, %s\n", got == told ? "yes" : "no",
	       eof ? "EOF" : "no EOF");
	fprintf(stderr, "told %ld got %ld\n", told, got);
	fflush(stdout);
	return 0;
}
