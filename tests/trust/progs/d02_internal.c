/* Issue 12 defect 2 (b): the library's own fds (ring, eventfd) must be
 * invisible and untouchable.  The program first makes the library set up
 * (a deferred write on a stream socket, then a flush), then closes or
 * replaces every number above 2 the program does not use, as daemons do:
 *   argv[1] = close_range | closefrom | loop | dup2 | dup3
 * then it opens pairs of sockets and checks, for each, that the bytes
 * written and the close reach the other end (EOF within 5 s), and that a
 * file written through a new fd holds the bytes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAIRS 12

static int pairs[PAIRS][2];

/* all pairs open at once, so that their numbers cover the library's */
static void check_pairs(void)
{
	for (int i = 0; i < PAIRS; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]))
			perror("socketpair");
	for (int i = 0; i < PAIRS; i++) {
		if (write(pairs[i][0], "xy", 2) != 2)
			printf("pair %d: write failed: %s\n", i, strerror(errno));
		close(pairs[i][0]);
	}
	for (int i = 0; i < PAIRS; i++) {
		char buf[16];
		size_t got = 0;
		ssize_t n;

		for (;;) {
			struct pollfd p = { .fd = pairs[i][1], .events = POLLIN };
			if (poll(&p, 1, 5000) <= 0) {
				printf("pair %d: %zu bytes, no EOF\n", i, got);
				break;
			}
			n = read(pairs[i][1], buf, sizeof(buf));
			if (n <= 0) {
				printf("pair %d: %zu bytes, %s\n", i, got,
				       n == 0 ? "EOF" : strerror(errno));
				break;
			}
			got += (size_t)n;
		}
		close(pairs[i][1]);
	}
}

int main(int argc, char **argv)
{
	int sv[2], r = 0;
	char path[4096], buf[64] = "";

	if (argc < 3)
		return 2;
	/* the library is set up: a deferred send, flushed by a read */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 1;
	if (write(sv[0], "hi", 2) != 2 || read(sv[1], buf, 2) != 2)
		return 1;
	close(sv[0]);
	close(sv[1]);
	poll(NULL, 0, 0);

	if (!strcmp(argv[1], "close_range")) {
		r = close_range(3, ~0U, 0);
	} else if (!strcmp(argv[1], "closefrom")) {
		closefrom(3);
	} else if (!strcmp(argv[1], "loop")) {
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	} else if (!strcmp(argv[1], "dup2") || !strcmp(argv[1], "dup3")) {
		/* one socket over every number the program does not hold,
		 * then each closed: the last close must reach the peer */
		int d[2];
		char c[8];
		ssize_t n;
		size_t got = 0;

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, d))
			return 1;
		for (int fd = 3; fd < 64; fd++) {
			if (fd == d[0] || fd == d[1])
				continue;
			if (argv[1][3] == '2')
				dup2(d[0], fd);
			else
				dup3(d[0], fd, O_CLOEXEC);
		}
		for (int fd = 3; fd < 64; fd++)
			if (fd != d[0] && fd != d[1])
				close(fd);
		if (write(d[0], "d", 1) != 1)
			printf("dup: write failed\n");
		close(d[0]);
		for (;;) {
			struct pollfd p = { .fd = d[1], .events = POLLIN };
			if (poll(&p, 1, 5000) <= 0) {
				printf("dup: %zu bytes, no EOF\n", got);
				break;
			}
			n = read(d[1], c, sizeof(c));
			if (n <= 0) {
				printf("dup: %zu bytes, %s\n", got, n ? strerror(errno) : "EOF");
				break;
			}
			got += (size_t)n;
		}
		close(d[1]);
	}
	printf("closing=%d\n", r);
	check_pairs();
	for (int i = 0; i < 4; i++) {
		int fd;
		ssize_t n;

		snprintf(path, sizeof(path), "%s/f%d", argv[2], i);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		n = write(fd, "file-bytes", 10);
		close(fd);
		fd = open(path, O_RDONLY);
		memset(buf, 0, sizeof(buf));
		printf("file %d: write=%zd read=%zd '%s'\n", i, n,
		       read(fd, buf, sizeof(buf) - 1), buf);
		close(fd);
	}
	fflush(stdout);
	return 0;
}
