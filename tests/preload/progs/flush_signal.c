/* Found by session 10's audit of processes and signals: a program's signal
 * that comes while the library's flush before a blocking call blocks (on a
 * peer that reads late) ran its handler inside that flush, and the call
 * then waited afresh.  On Linux the call was already waiting: a handler
 * ends it with EINTR.
 * 1 MiB is written to a unix stream socket whose peer (a child) starts
 * reading after 100 ms: plainly the write blocks until then; deferred, the
 * flush before the wait does (always under sequential, which cannot park;
 * argv[2] "masked" blocks the library's timer signal, which under uring
 * made the flush complete the send, as nothing would move it later: such
 * a thread now defers nothing, and the write blocks as plain's does).  A SIGALRM 20 ms after the write, its handler installed without
 * SA_RESTART, then argv[1]: pause, poll, sigsuspend, nanosleep, select,
 * epoll_wait (1 s each).  Linux: -1 EINTR within 500 ms, the handler run
 * once.  Had: pause and sigsuspend waited for good, the others their
 * whole second (poll, select and nanosleep 0).  alarm(5) ends a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BIG (1 << 20)

static volatile sig_atomic_t hits;

static void on_alrm(int s)
{
	(void)s;
	hits++;
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	const char *w = argc > 1 ? argv[1] : "pause";
	struct itimerval it = { { 0, 0 }, { 0, 20000 } };
	struct sigaction sa;
	static char buf[BIG];
	int s[2], pp[2], rc, e;
	pid_t peer;
	ssize_t n;
	double t0;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) < 0 || pipe(pp) < 0)
		return 1;
	peer = fork();
	if (peer == 0) {
		size_t got = 0;

		close(s[0]);
		usleep(100000);
		while ((n = read(s[1], buf, sizeof(buf))) > 0)
			got += (size_t)n;
		printf("peer got %zu\n", got);
		fflush(stdout);
		_exit(0);
	}
	close(s[1]);
	if (argc > 2 && !strcmp(argv[2], "masked")) {
		sigset_t all;

		sigfillset(&all);
		sigdelset(&all, SIGALRM);
		sigdelset(&all, SIGTERM);
		if (sigprocmask(SIG_BLOCK, &all, NULL) < 0)
			return 1;
	}
	alarm(5);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alrm;
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		return 1;
	memset(buf, 'x', sizeof(buf));
	n = write(s[0], buf, sizeof(buf));
	t0 = now_ms();
	if (setitimer(ITIMER_REAL, &it, NULL) < 0)
		return 1;
	if (!strcmp(w, "pause")) {
		rc = pause();
	} else if (!strcmp(w, "poll")) {
		struct pollfd p = { pp[0], POLLIN, 0 };

		rc = poll(&p, 1, 1000);
	} else if (!strcmp(w, "sigsuspend")) {
		sigset_t m;

		sigemptyset(&m);
		rc = sigsuspend(&m);
	} else if (!strcmp(w, "nanosleep")) {
		struct timespec t = { 1, 0 };

		rc = nanosleep(&t, NULL);
	} else if (!strcmp(w, "select")) {
		struct timeval tv = { 1, 0 };
		fd_set f;

		FD_ZERO(&f);
		FD_SET(pp[0], &f);
		rc = select(pp[0] + 1, &f, NULL, NULL, &tv);
	} else if (!strcmp(w, "epoll_wait")) {
		struct epoll_event ev = { .events = EPOLLIN };
		int ep = epoll_create1(0);

		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &ev) < 0)
			return 1;
		rc = epoll_wait(ep, &ev, 1, 1000);
	} else {
		return 2;
	}
	e = errno;
	printf("write %zd; %s: %d %s %s; handler ran %d\n", n, w, rc,
	       rc < 0 ? strerrorname_np(e) : "-",
	       now_ms() - t0 < 500 ? "within 500 ms" : "later", (int)hits);
	alarm(0);
	close(s[0]);
	waitpid(peer, NULL, 0);
	return 0;
}
