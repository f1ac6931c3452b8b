/* SPDX-License-Identifier: MIT
 * callcost.c - the driver of benchmarks/callcost.py: ROUNDS rounds of
 * (K sends of 64 bytes, one to each of K unix socketpairs; one wait that
 * reports the first pair's reader; K reads that take the 64 bytes back).
 * argv: rounds, the wait (epoll or poll).  Exit 0 only when every call
 * returned what it should.  callcost.py counts its instructions under
 * valgrind's callgrind, plainly and under libesca.so in each mode: what the
 * library adds per call, free of this machine's timing noise.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define K 16
#define LEN 64

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 1000;
	int use_poll = argc > 2 && !strcmp(argv[2], "poll");
	struct epoll_event ev = { .events = EPOLLIN }, got[4];
	char out[LEN], in[4096];
	int sv[K][2], ep;

	memset(out, 'x', sizeof(out));
	for (int i = 0; i < K; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) < 0) {
			perror("callcost: socketpair");
			return 1;
		}
	ep = epoll_create1(0);
	ev.data.fd = sv[0][1];
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sv[0][1], &ev) < 0) {
		perror("callcost: epoll");
		return 1;
	}
	for (long r = 0; r < rounds; r++) {
		struct pollfd p = { .fd = sv[0][1], .events = POLLIN };
		int n;

		for (int i = 0; i < K; i++)
			if (send(sv[i][0], out, LEN, 0) != LEN) {
				perror("callcost: send");
				return 1;
			}
		n = use_poll ? poll(&p, 1, 1000) : epoll_wait(ep, got, 4, 1000);
		if (n != 1) {
			fprintf(stderr, "callcost: the wait returned %d\n", n);
			return 1;
		}
		for (int i = 0; i < K; i++)
			if (read(sv[i][1], in, sizeof(in)) != LEN) {
				fprintf(stderr, "callcost: a short read\n");
				return 1;
			}
	}
	return 0;
}
