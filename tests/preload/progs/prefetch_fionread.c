/* FIONREAD, then a read, on a socket whose bytes lever prefetch peeked
 * (test_prefetch.py): two clients each send 100 bytes, the wait reports
 * both, a read of 50 is answered from a peek; client 0 sends 500 more
 * (100 ms after connecting) while the server spins 400 ms (no call, so no
 * new wait); then FIONREAD says N and a read of 1000 must return N, as
 * Linux's does.  Had: FIONREAD 550, the read 50 (the peek's rest).
 * Prints its port, then "fionread N read M". */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	struct epoll_event ev, evs[2];
	struct timespec ms50 = { 0, 50000000 };
	char buf[1000];
	int ls, c[2], ep, seen = 0, avail = -1;
	ssize_t r;
	double t0;

	if ((ls = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &len) < 0)
		die("listen");
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);
	if ((ep = epoll_create1(0)) < 0)
		die("epoll_create1");
	for (int i = 0; i < 2; i++) {
		if ((c[i] = accept(ls, NULL, NULL)) < 0 ||
		    fcntl(c[i], F_SETFL, O_NONBLOCK) < 0)
			die("accept");
		ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = c[i] };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i], &ev) < 0)
			die("epoll_ctl");
	}
	if (write(c[1], "hi", 2) != 2)	/* a deferred call: the thread's table */
		die("write");
	nanosleep(&ms50, NULL);	/* both clients' 100 bytes are in */
	while (seen != 2) {
		int n = epoll_wait(ep, evs, 2, 5000);

		if (n <= 0)
			die("epoll_wait");
		seen = n;
	}
	if (read(c[0], buf, 50) != 50)
		die("read 50");
	t0 = now_ms();
	while (now_ms() - t0 < 400)
		;	/* client 0's 500 bytes arrive */
	if (ioctl(c[0], FIONREAD, &avail) < 0)
		die("FIONREAD");
	r = read(c[0], buf, sizeof(buf));
	printf("fionread %d read %zd\n", avail, r);
	return 0;
}
