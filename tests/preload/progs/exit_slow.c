/* exit_slow.c - the end of the process while a slow peer still reads
 * (tests/preload/test_exit_drain.py).  Listens on 127.0.0.1 (prints the
 * port), accepts one client, and sends it TOTAL bytes of a pattern in one
 * non-blocking write, then poll(POLLOUT) and writes again until all are
 * taken (plain Linux takes a short count each time).  argv[1]: "self": main
 * writes and returns from main; "thread": a thread writes, tells main, and
 * then blocks on a mutex main holds (where no interposer sees it), and main
 * returns from main.  Plain Linux sends what its socket queue holds after
 * the exit; the library must not drop what it was told was sent. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TOTAL (3 << 20)

static char *buf;
static int cfd, done_pipe[2];
static pthread_mutex_t hold = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *m)
{
	perror(m);
	exit(1);
}

static void send_all(void)
{
	size_t off = 0;

	while (off < TOTAL) {
		ssize_t w = write(cfd, buf + off, TOTAL - off);

		if (w < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = cfd, .events = POLLOUT };

			if (poll(&p, 1, -1) < 0)
				die("poll");
			continue;
		}
		if (w <= 0)
			die("write");
		off += (size_t)w;
	}
}

static void *writer(void *arg)
{
	(void)arg;
	send_all();
	if (write(done_pipe[1], "d", 1) != 1)
		die("write pipe");
	pthread_mutex_lock(&hold);	/* main holds it: blocks to the end */
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1, snd = 65536, lfd;
	pthread_t th;
	char c;

	if (argc != 2 || (strcmp(argv[1], "self") && strcmp(argv[1], "thread")))
		return 2;
	buf = malloc(TOTAL);
	if (!buf)
		die("malloc");
	for (size_t i = 0; i < TOTAL; i++)
		buf[i] = (char)('a' + (i / 7 + i) % 26);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one,
				  sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(lfd, 4) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &len) < 0)
		die("listen");
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);
	cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
	if (cfd < 0)
		die("accept");
	if (setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd)) < 0)
		die("SO_SNDBUF");
	if (!strcmp(argv[1], "self")) {
		send_all();
		return 0;
	}
	if (pipe(done_pipe) < 0)
		die("pipe");
	pthread_mutex_lock(&hold);
	if (pthread_create(&th, NULL, writer, NULL))
		die("pthread_create");
	if (read(done_pipe[0], &c, 1) != 1)
		die("read pipe");
	return 0;
}
