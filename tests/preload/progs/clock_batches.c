/* clock_batches.c - BATCHES x CALLS small writes on a unix stream socket,
 * an epoll wait (a flush trigger) after each batch, the peer drained; then
 * the bytes read are checked.  Prints "wrote N read N".  test_fastpath.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(int argc, char **argv)
{
	int batches = argc > 1 ? atoi(argv[1]) : 100;
	int calls = argc > 2 ? atoi(argv[2]) : 100;
	long wrote = 0, got = 0;
	unsigned char expect = 0;
	int sv[2], ep;
	struct epoll_event ev = { .events = EPOLLIN }, out[4];
	char buf[65536];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	ev.data.fd = sv[1];
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev) < 0)
		die("epoll_ctl");
	for (int b = 0; b < batches; b++) {
		for (int c = 0; c < calls; c++) {
			unsigned char msg[8];

			for (size_t i = 0; i < sizeof(msg); i++)
				msg[i] = (unsigned char)(wrote + (long)i);
			if (write(sv[0], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
				die("write");
			wrote += (long)sizeof(msg);
		}
		if (epoll_wait(ep, out, 4, 1000) != 1)
			die("epoll_wait");
		while (got < wrote) {
			ssize_t r = read(sv[1], buf, sizeof(buf));

			if (r <= 0)
				die("read");
			for (ssize_t i = 0; i < r; i++)
				if ((unsigned char)buf[i] != expect++)
					die("bytes out of order");
			got += r;
		}
	}
	printf("wrote %ld read %ld\n", wrote, got);
	return 0;
}
