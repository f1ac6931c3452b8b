/* poll_zero.c - a loop that writes one byte to a unix stream socket (a
 * deferred call, which arms the library's timer), works a moment and asks
 * poll, select and ppoll with a zero timeout whether the socket is
 * writable (0 or 1): 200,000 times.  Linux answers such a poll at once and never
 * with EINTR (no signal of the program's is sent).  Prints
 * "eintr P S Q" (per call) and "ok". */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "peer.h"

int main(void)
{
	int sv[2];
	long eintr[3] = { 0, 0, 0 };
	volatile unsigned spin = 0;

	if (reading_peer(sv) < 0)
		return 1;
	for (int i = 0; i < 200000; i++) {
		struct pollfd p = { .fd = sv[0], .events = POLLOUT };
		struct timespec z = { 0, 0 };
		struct timeval tv = { 0, 0 };
		fd_set w;
		int r;

		if (write(sv[0], "x", 1) != 1)
			return 1;
		for (int k = 0; k < 200; k++)
			spin += (unsigned)k;
		r = poll(&p, 1, 0);
		if (r < 0 && errno == EINTR)
			eintr[0]++;
		else if (r < 0)
			return 1;
		FD_ZERO(&w);
		FD_SET(sv[0], &w);
		r = select(sv[0] + 1, NULL, &w, NULL, &tv);
		if (r < 0 && errno == EINTR)
			eintr[1]++;
		else if (r < 0)
			return 1;
		r = ppoll(&p, 1, &z, NULL);
		if (r < 0 && errno == EINTR)
			eintr[2]++;
		else if (r < 0)
			return 1;
	}
	close(sv[0]);
	if (wait(NULL) < 0)
		return 1;
	printf("eintr %ld %ld %ld\nok\n", eintr[0], eintr[1], eintr[2]);
	return 0;
}
