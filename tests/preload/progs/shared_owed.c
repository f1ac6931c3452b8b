/* shared_owed.c TOTAL [LATE_MS]: two threads of a pool wait on one epoll set
 * (no timeout); a socket's EPOLLOUT (edge-triggered) is written until
 * EAGAIN by whichever thread takes it.  Thread A writes first, then waits;
 * thread B starts its wait LATE_MS (100) after A's, so B is the newest
 * waiter, which epoll wakes first: B takes the events of the set,
 * the library's progress fd of A's included.  A peer (a child) reads once
 * at LATE_MS / 2, then from 300 ms after B's wait on, slowly, and must get
 * TOTAL bytes.
 * With TOTAL under the byte budget, A's one write-until-EAGAIN queues all
 * of it (nothing is left for B to write, so B never touches the socket):
 * the bytes that park move only by A's table, on A's progress fd; B taking
 * that event must not leave them parked (issue 13, defect 6).  With TOTAL
 * over the budget, A is answered EAGAIN behind its parked bytes and is owed
 * the event; whoever takes it writes the rest.
 * Prints "peer got all, sent N, writes A a B b, events A a B b" and exits 0,
 * or "peer stalled" and 1. */
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 << 10)

static int ep, sock, stopfd, late_ms = 100;
static size_t total, sent;
static int nwrites[2], nevents[2], a_waits;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char chunk[CHUNK];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void nap_ms(int ms)
{
	struct timespec d = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&d, &d) < 0 && errno == EINTR)
		;
}

/* write until EAGAIN or everything is sent */
static void writer(int me)
{
	pthread_mutex_lock(&mu);
	while (sent < total) {
		size_t k = total - sent < CHUNK ? total - sent : CHUNK;
		ssize_t w = send(sock, chunk, k, MSG_NOSIGNAL);

		if (w < 0 && errno == EAGAIN)
			break;
		if (w < 0)
			die("send");
		sent += (size_t)w;
		nwrites[me]++;
	}
	pthread_mutex_unlock(&mu);
}

static void *loop(void *arg)
{
	int me = (int)(intptr_t)arg;

	if (me == 0) {
		writer(0);
		__atomic_store_n(&a_waits, 1, __ATOMIC_RELEASE);
	} else {
		while (!__atomic_load_n(&a_waits, __ATOMIC_ACQUIRE))
			nap_ms(1);
		nap_ms(late_ms);	/* A is asleep in its wait by now */
	}
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
			if (ev[i].data.u64 != 1) {
				fprintf(stderr, "thread %c got an event not the program's: %#llx\n", "AB"[me], (unsigned long long)ev[i].data.u64);
				exit(1);
			}
			__atomic_fetch_add(&nevents[me], 1, __ATOMIC_RELAXED);
			writer(me);
		}
	}
}

static int reader(int fd)
{
	static char buf[16 << 10];
	size_t got = 0;
	struct timeval tv = { 10, 0 };

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		return 4;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		return 3;
	/* one read early, before B waits: A's parked bytes move once, which
	 * ends a wait of A's folded into its flush (the fold lever); A then
	 * waits in epoll_wait, older than B's wait */
	nap_ms(late_ms / 2);
	{
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r <= 0)
			return 2;
		got += (size_t)r;
	}
	nap_ms(late_ms / 2 + 300);	/* both threads wait by then */
	while (got < total) {
		ssize_t r = read(fd, buf, sizeof(buf));

		if (r <= 0)
			return 2;	/* 10 s without a byte: stalled */
		got += (size_t)r;
		nap_ms(1);
	}
	return 0;
}

int main(int argc, char **argv)
{
	int sv[2], v = 16 << 10, status, ok;
	struct epoll_event ev;
	pthread_t th[2];
	pid_t kid;
	uint64_t one = 1;

	total = argc > 1 ? strtoul(argv[1], NULL, 0) : 2 << 20;
	if (argc > 2)
		late_ms = atoi(argv[2]);
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
	ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	printf("peer %s, sent %zu, writes A %d B %d, events A %d B %d\n",
	       ok ? "got all" : "stalled", sent, nwrites[0], nwrites[1],
	       nevents[0], nevents[1]);
	return ok ? 0 : 1;
}
