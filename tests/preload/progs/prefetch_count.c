/* prefetch_count.c K R - K connected TCP pairs; R rounds of: a byte into
 * each client end, one epoll wait (all K server ends readable), one read
 * of each.  test_prefetch.py counts its kernel entries with perf. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	int k = argc > 2 ? atoi(argv[1]) : 0, rounds = argc > 2 ? atoi(argv[2]) : 0;
	int cl[64], sv[64];
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), ep = epoll_create1(0);
	struct epoll_event ev, evs[64];
	char b[64];

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || ep < 0 || bind(l, (void *)&a, sizeof(a)) ||
	    listen(l, 64) || getsockname(l, (void *)&a, &al))
		return 1;
	for (int i = 0; i < k; i++) {
		cl[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(cl[i], (void *)&a, sizeof(a)))
			return 1;
		sv[i] = accept4(l, NULL, NULL, SOCK_NONBLOCK);
		ev.events = EPOLLIN;
		ev.data.u64 = 1000 + (unsigned)i;
		if (sv[i] < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sv[i], &ev))
			return 1;
	}
	for (int r = 0; r < rounds; r++) {
		int n;

		for (int i = 0; i < k; i++)
			if (write(cl[i], "x", 1) != 1)
				return 1;
		/* the bytes reach the server ends once the flush ran: wait
		 * until every one is readable */
		do {
			n = epoll_wait(ep, evs, 64, 1000);
		} while (n >= 0 && n < k);
		if (n != k)
			return 2;
		for (int i = 0; i < n; i++)
			if (read(sv[evs[i].data.u64 - 1000], b, sizeof(b)) != 1)
				return 3;
	}
	printf("ok\n");
	return 0;
}
