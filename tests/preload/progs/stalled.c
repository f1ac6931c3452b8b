/* A server holding 16 MiB for a client that never reads (tests/preload/
 * test_stalled.py): an epoll loop on 127.0.0.1 (a non-blocking listening
 * socket); the first request ("A") gets 16 MiB in one write (deferred with
 * ESCA_BUDGET above 16 MiB: parked on the full socket; plain: a short
 * count); a later request ("B") runs the flush trigger argv[1] and is
 * answered "ok\n".  Prints the port.  Triggers: wait read open fork exec
 * exit sleep dup2 fcntl lseek fsync timer budget capacity explicit, and
 * the other calls that block without a wait set: accept (blocking), wait4,
 * pause; thread (a thread that parks 1 MiB and ends); handover (A's
 * 16 MiB, a pattern, written by a thread that ends; B's request then also
 * writes "END" to A); handover-exec (A's
 * 16 MiB, a pattern, then B's exec; the new image writes "END" to A);
 * batch (200 small writes, then exit: the stats); and long-sleep, long-nanosleep, long-pause, long-read, long-wait4:
 * the same calls blocking 500 ms (blocked()).  exec re-runs this program as
 * "execd FD" to answer the request's socket FD. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BIG (16 << 20)
static char *big;
static int afd = -1;	/* A's socket */

static void die(const char *m)
{
	perror(m);
	exit(2);
}

/* a socket with bytes queued of its own, for a trigger that syncs it */
static int queued_socket(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
		die("socketpair");
	if (write(sv[0], "q", 1) != 1)
		die("write q");
	return sv[0];
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* "thread": 1 MiB to a socket whose peer never reads (parked), then the
 * thread ends; plain: a short count, and the join returns at once. */
static void *thread_writes(void *arg)
{
	if (write(queued_socket(), big, 1 << 20) < 0)
		die("thread write");
	return arg;
}

/* "handover": A's 16 MiB (a pattern, 32-bit word i = i) written by a
 * thread that then ends: its parked rest goes to the heir thread, and A
 * must get the stream exactly. */
static void *thread_big(void *arg)
{
	if (write((int)(long)arg, big, BIG) < 0)
		die("thread write A");
	return NULL;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 +
	       (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* "long-X": a call that blocks LONG_MS without a wait set; it must end as
 * on Linux (no EINTR but the program's own, not sooner) while A's parked
 * bytes go on moving.  Dies (no answer to B) otherwise. */
#define LONG_MS 500
static void blocked(const char *t)
{
	struct timespec t0, req = { 0, LONG_MS * 1000000L }, rem;
	int p[2];
	pid_t pid;
	char c;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!strcmp(t, "sleep")) {
		if (usleep(LONG_MS * 1000) != 0)
			die("usleep");
	} else if (!strcmp(t, "nanosleep")) {
		if (nanosleep(&req, &rem) != 0)
			die("nanosleep");
	} else if (!strcmp(t, "pause")) {
		struct sigaction sa = { .sa_handler = on_alarm };

		sigaction(SIGALRM, &sa, NULL);	/* no SA_RESTART */
		ualarm(LONG_MS * 1000, 0);
		if (pause() != -1 || errno != EINTR)
			die("pause");
	} else if (!strcmp(t, "read") || !strcmp(t, "wait4")) {
		signal(SIGCHLD, SIG_DFL);
		if (pipe(p) < 0)
			die("pipe");
		pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			usleep(LONG_MS * 1000);
			_exit(write(p[1], "r", 1) == 1 ? 0 : 1);
		}
		if (!strcmp(t, "read") && read(p[0], &c, 1) != 1)
			die("read");
		if (waitpid(pid, NULL, 0) != pid)
			die("waitpid");
		close(p[0]);
		close(p[1]);
		signal(SIGCHLD, SIG_IGN);
	}
	if (ms_since(&t0) < LONG_MS - 1) {
		fprintf(stderr, "%s ended after %ld ms\n", t, ms_since(&t0));
		exit(3);
	}
}

static void trigger(const char *t, int b, char *argv0)
{
	if (!strcmp(t, "read")) {		/* a read that may block */
		int p[2];
		char c;

		if (pipe(p) < 0 || write(p[1], "r", 1) != 1 ||
		    read(p[0], &c, 1) != 1)
			die("read");
	} else if (!strcmp(t, "accept")) {	/* a blocking accept */
		struct sockaddr_in sa = { .sin_family = AF_INET,
			.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(sa);
		int l = socket(AF_INET, SOCK_STREAM, 0), c, a;

		if (l < 0 || bind(l, (struct sockaddr *)&sa, len) ||
		    listen(l, 1) ||
		    getsockname(l, (struct sockaddr *)&sa, &len))
			die("accept listen");
		c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&sa, len))
			die("accept connect");
		a = accept(l, NULL, NULL);
		if (a < 0)
			die("accept");
		close(a);
		close(c);
		close(l);
	} else if (!strcmp(t, "wait4")) {	/* a blocking waitpid */
		pid_t pid;

		signal(SIGCHLD, SIG_DFL);
		pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0)
			_exit(0);
		if (waitpid(pid, NULL, 0) != pid)
			die("waitpid");
		signal(SIGCHLD, SIG_IGN);
	} else if (!strcmp(t, "pause")) {	/* until the program's SIGALRM */
		struct sigaction sa = { .sa_handler = on_alarm };

		sigaction(SIGALRM, &sa, NULL);
		ualarm(2000, 0);
		if (pause() != -1)
			die("pause");
	} else if (!strncmp(t, "long-", 5)) {
		blocked(t + 5);
	} else if (!strcmp(t, "thread")) {	/* a thread that ends */
		pthread_t th;

		if (pthread_create(&th, NULL, thread_writes, NULL) ||
		    pthread_join(th, NULL))
			die("thread");
	} else if (!strcmp(t, "batch")) {	/* 200 writes, no trigger */
		int q = queued_socket();

		for (int i = 0; i < 200; i++)
			if (write(q, "c", 1) != 1)
				die("batch");
	} else if (!strcmp(t, "open")) {
		int fd = open("/dev/null", O_RDONLY);

		if (fd < 0)
			die("open");
		close(fd);
	} else if (!strcmp(t, "fork")) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (pid == 0)
			_exit(0);
	} else if (!strcmp(t, "handover-exec")) {
		char fd[16], fa[16];

		snprintf(fd, sizeof(fd), "%d", b);
		snprintf(fa, sizeof(fa), "%d", afd);
		execl(argv0, argv0, "execd", fd, fa, (char *)NULL);
		die("exec");
	} else if (!strcmp(t, "exec")) {
		char fd[16];

		snprintf(fd, sizeof(fd), "%d", b);
		execl(argv0, argv0, "execd", fd, (char *)NULL);
		die("exec");
	} else if (!strcmp(t, "sleep")) {
		usleep(1000);
	} else if (!strcmp(t, "dup2")) {
		int q = queued_socket(), n = open("/dev/null", O_RDONLY);

		if (dup2(n, q) != q)
			die("dup2");
	} else if (!strcmp(t, "fcntl")) {
		int q = queued_socket();

		close(q);			/* a deferred close */
		if (fcntl(q, F_GETFD) != -1)
			die("fcntl");
	} else if (!strcmp(t, "lseek")) {
		lseek(queued_socket(), 0, SEEK_CUR);	/* ESPIPE */
	} else if (!strcmp(t, "fsync")) {
		fsync(queued_socket());			/* EINVAL */
	} else if (!strcmp(t, "timer")) {
		struct timespec t0, t1;
		int q = queued_socket();

		(void)q;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do	/* no call the library sees: the watchdog flushes */
			clock_gettime(CLOCK_MONOTONIC, &t1);
		while ((t1.tv_sec - t0.tv_sec) * 1000000000L +
		       (t1.tv_nsec - t0.tv_nsec) < 30000000L);
	} else if (!strcmp(t, "budget")) {
		for (int i = 0; i < 24; i++)	/* past ESCA_BUDGET (32 MiB,
						 * 16 of them parked) */
			if (write(queued_socket(), big, 1 << 20) < 0)
				break;
	} else if (!strcmp(t, "capacity")) {
		int q = queued_socket();

		for (int i = 0; i < 300; i++)	/* past ESCA_CAPACITY (256) */
			if (write(q, "c", 1) < 0)
				break;
	} else if (!strcmp(t, "explicit")) {
		int (*flush)(void) = (int (*)(void))dlsym(RTLD_DEFAULT,
							  "batch_flush");
		int q = queued_socket();

		(void)q;
		if (flush)
			flush();
	}
	/* "wait": the loop's own epoll_wait */
}

/* The new image of "exec": "ok" to B; with A's fd too ("handover-exec"),
 * then "END" to A, which must come after the 16 MiB the old image's drain
 * is still writing. */
static int execd(int argc, char **argv)
{
	if (write(atoi(argv[2]), "ok\n", 3) != 3)
		return 3;
	if (argc > 3) {
		int a = atoi(argv[3]);
		struct pollfd p = { .fd = a, .events = POLLOUT };

		while (write(a, "END", 3) != 3)
			if (errno != EAGAIN || poll(&p, 1, -1) < 0)
				return 4;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct epoll_event ev, evs[16];
	int ls, ep, one = 1;
	if (argc < 2)
		return 2;
	signal(SIGCHLD, SIG_IGN);	/* fork: no zombie, no wait */
	if (!strcmp(argv[1], "execd"))
		return execd(argc, argv);
	big = malloc(BIG);
	if (!big)
		return 2;
	memset(big, 'x', BIG);
	if (!strncmp(argv[1], "handover", 8))
		for (uint32_t i = 0; i < BIG / 4; i++)
			memcpy(big + 4 * (size_t)i, &i, 4);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, 4) ||
	    bind(ls, (struct sockaddr *)&sa, len) || listen(ls, 16) ||
	    getsockname(ls, (struct sockaddr *)&sa, &len))
		die("listen");
	printf("%d\n", ntohs(sa.sin_port));
	fflush(stdout);
	ep = epoll_create1(0);
	ev.events = EPOLLIN;
	ev.data.fd = ls;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev))
		die("epoll");
	for (;;) {
		int n = epoll_wait(ep, evs, 16, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			char req[16];
			ssize_t r;

			if (fd == ls) {
				int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);

				if (c < 0 && errno == EAGAIN)
					continue;
				ev.events = EPOLLIN;
				ev.data.fd = c;
				if (c < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev))
					die("accept");
				continue;
			}
			r = read(fd, req, sizeof(req));
			if (r <= 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
				continue;
			}
			if (req[0] == 'A')
				afd = fd;
			if (req[0] == 'A' && !strcmp(argv[1], "handover")) {
				pthread_t th;

				/* a thread writes the pattern and ends */
				if (pthread_create(&th, NULL, thread_big,
						   (void *)(long)fd) ||
				    pthread_join(th, NULL))
					die("handover");
				continue;
			}
			if (req[0] == 'A') {
				/* plain: a short count; the rest is dropped */
				if (write(fd, big, BIG) < 0)
					die("write A");
				continue;
			}
			trigger(argv[1], fd, argv[0]);
			if (write(fd, "ok\n", 3) != 3)
				die("write B");
			if (!strcmp(argv[1], "handover") && afd >= 0) {
				/* after the heir's rest: "END" (DESIGN.md,
				 * "Contract: order", across threads) */
				struct pollfd p = { .fd = afd, .events = POLLOUT };

				while (write(afd, "END", 3) != 3)
					if (errno != EAGAIN || poll(&p, 1, -1) < 0)
						die("write END");
			}
			if (!strcmp(argv[1], "exit") || !strcmp(argv[1], "batch"))
				exit(0);
		}
	}
}
