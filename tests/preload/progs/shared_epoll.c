/* shared_epoll.c: two threads wait on one edge-triggered epoll set (no
 * timeout); whichever gets the event of a socket to a slowly reading peer
 * writes to it until EAGAIN.  The peer (a child) must get all 8 MiB within
 * 20 s: with the library, each thread's sends park in its own table and
 * move on its progress fd, whose edge the other thread's wait may take. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOTAL (8 << 20)
#define CHUNK (64 << 10)

static int ep, sock, stopfd;
static size_t sent;
static int nwriters[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char chunk[CHUNK];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void *loop(void *arg)
{
	int me = (int)(intptr_t)arg;

	for (;;) {
		struct epoll_event ev[4];
		int n = epoll_wait(ep, ev, 4, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == 2)
				return NULL;	/* stop: level-triggered */
			pthread_mutex_lock(&mu);
			while (sent < TOTAL) {
				size_t k = TOTAL - sent < CHUNK ? TOTAL - sent : CHUNK;
				ssize_t w = send(sock, chunk, k, MSG_NOSIGNAL);

				if (w < 0 && errno == EAGAIN)
					break;
				if (w < 0)
					die("send");
				sent += (size_t)w;
				nwriters[me]++;
			}
			pthread_mutex_unlock(&mu);
		}
	}
}

static int reader(int fd)
{
	static char buf[16 << 10];
	size_t got = 0;
	struct timespec d = { 0, 1000000 };
	struct timeval tv = { 20, 0 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		return 3;
	while (got < TOTAL) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r <= 0)
			return 2;	/* 20 s without a byte: stalled */
		got += (size_t)r;
		nanosleep(&d, NULL);
	}
	return 0;
}

int main(void)
{
	int sv[2], v = 16 << 10, status;
	struct epoll_event ev;
	pthread_t th[2];
	pid_t kid;
	uint64_t one = 1;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) < 0)
		die("setsockopt");
	kid = fork();		/* before anything is deferred */
	if (kid < 0)
		die("fork");
	if (kid == 0) {
		close(sv[0]);
		_exit(reader(sv[1]));
	}
	close(sv[1]);
	sock = sv[0];
	if (fcntl(sock, F_SETFL, O_NONBLOCK) < 0)
		die("fcntl");
	ep = epoll_create1(0);
	stopfd = eventfd(0, EFD_NONBLOCK);
	if (ep < 0 || stopfd < 0)
		die("epoll");
	ev = (struct epoll_event){ .events = EPOLLOUT | EPOLLET, .data.u64 = 1 };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev) < 0)
		die("epoll_ctl");
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 2 };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, stopfd, &ev) < 0)
		die("epoll_ctl stop");
	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, loop, (void *)(intptr_t)i) != 0)
			die("pthread_create");
	if (waitpid(kid, &status, 0) < 0)
		die("waitpid");
	if (write(stopfd, &one, sizeof(one)) != sizeof(one))
		die("write stop");
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	printf("peer %s, sent %zu\n",
	       WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "got all" : "stalled",
	       sent);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
