/* Issue 12 defects 3 and 4: epoll_wait after deferred calls (the wait the
 * uring executor folds into the flush, IORING_OP_EPOLL_WAIT).
 *   stale: got EOF, close()d the fd, then waits: no event for it (each fd's
 *          data.u64 is a tag; a tag of a closed fd is a use after free)
 *   eintr: epoll_wait(..., 500) with nothing to come: 0 after ~500 ms */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TAG 0xC0FFEE0000ull

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static int stale(int rounds)
{
	int ep = epoll_create1(0), keep[2], bad = 0;
	struct epoll_event evs[8];
	char c[16];

	if (ep < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, keep))
		return 1;
	for (int i = 0; i < rounds; i++) {
		int sv[2], n;
		struct epoll_event ev = { .events = EPOLLIN };

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			return 1;
		ev.data.u64 = TAG + (uint64_t)i;
		epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev);
		if (write(sv[0], "x", 1) != 1)
			return 1;
		close(sv[0]);			/* the peer hangs up */
		n = epoll_wait(ep, evs, 8, 5000);
		if (n != 1 || evs[0].data.u64 != ev.data.u64)
			printf("round %d: first wait %d\n", i, n);
		while (read(sv[1], c, sizeof(c)) > 0)
			;			/* the bytes, then EOF */
		close(sv[1]);			/* done with it: freed */
		if (write(keep[0], "k", 1) != 1)	/* another client's reply */
			return 1;
		n = epoll_wait(ep, evs, 8, 20);
		for (int j = 0; j < n; j++)
			if ((evs[j].data.u64 & ~0xffffull) == TAG) {
				printf("round %d: event for closed fd (tag %llu)\n", i,
				       (unsigned long long)(evs[j].data.u64 - TAG));
				bad++;
			}
		if (n < 0)
			printf("round %d: wait %s\n", i, strerror(errno));
		while (recv(keep[1], c, sizeof(c), MSG_DONTWAIT) > 0)
			;
	}
	printf("stale events: %d\n", bad);
	return 0;
}

static int eintr(int rounds)
{
	int ep = epoll_create1(0), a[2], b[2];
	struct epoll_event ev = { .events = EPOLLIN }, evs[8];

	if (ep < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, a) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, b))
		return 1;
	ev.data.u64 = 7;
	epoll_ctl(ep, EPOLL_CTL_ADD, b[1], &ev);	/* nothing ever comes */
	for (int i = 0; i < rounds; i++) {
		struct timespec t0;
		int n, e;
		long ms;

		if (write(a[0], "reply", 5) != 5)	/* pending at the wait */
			return 1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		n = epoll_wait(ep, evs, 8, 500);
		e = errno;
		ms = ms_since(&t0);
		printf("wait %d: n=%d %s ms=%ld\n", i, n, n < 0 ? strerror(e) : "ok", ms);
	}
	return 0;
}

int main(int argc, char **argv)
{
	int r;

	if (argc < 2)
		return 2;
	r = !strcmp(argv[1], "stale") ? stale(40) : eintr(4);
	fflush(stdout);
	return r;
}
