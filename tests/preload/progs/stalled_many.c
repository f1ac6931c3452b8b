/* stalled_many.c N: a server with N clients that never read, each written
 * to until EAGAIN, and one active client that must be answered within a
 * bound.  The clients are a child process: it connects the N, which never
 * read, then (at SIGUSR1) the active one.  Prints "stalled N served <ms>
 * rss_kib <peak RSS of the server>" and exits 0 when the active client got
 * its answer; exits 1 on any failure.  Everything on 127.0.0.1,
 * one epoll set, edge-triggered, non-blocking: an ordinary event loop. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 << 10)

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static double now_ms(void)
{
	struct timespec t;

	if (clock_gettime(CLOCK_MONOTONIC, &t) < 0)
		die("clock_gettime");
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void small_bufs(int fd)
{
	int v = 4096;

	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) < 0)
		die("setsockopt");
}

/* the clients: n that never read; then, at SIGUSR1, the active one, which
 * asks and expects "pong" within 10 s */
static int client(struct sockaddr_in *sa, int n)
{
	sigset_t s;
	int sig, fd;
	struct timeval tv = { 10, 0 };
	char buf[8];
	ssize_t r;

	for (int i = 0; i < n; i++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			return 7;
		small_bufs(fd);
		if (connect(fd, (struct sockaddr *)sa, sizeof(*sa)) < 0)
			return 8;
	}
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	if (sigwait(&s, &sig) != 0)
		return 2;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)sa, sizeof(*sa)) < 0)
		return 3;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		return 4;
	if (send(fd, "ping", 4, 0) != 4)
		return 5;
	r = recv(fd, buf, 4, MSG_WAITALL);
	return r == 4 && memcmp(buf, "pong", 4) == 0 ? 0 : 6;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 200;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	struct rlimit rl;
	struct epoll_event ev, evs[256];
	int lfd, ep, nstalled = 0, active = -1, status, one = 1;
	int *conn, naccepted = 0;
	char *chunk;
	pid_t kid;
	double t_go = 0, t_served = 0;
	sigset_t s;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit");
	if (rl.rlim_cur < (rlim_t)(n + 64)) {
		rl.rlim_cur = rl.rlim_max;
		if (rl.rlim_cur < (rlim_t)(n + 64)) {
			fprintf(stderr, "RLIMIT_NOFILE too low\n");
			return 77;
		}
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			die("setrlimit");
	}
	conn = calloc((size_t)n, sizeof(int));
	chunk = calloc(1, CHUNK);
	if (!conn || !chunk)
		die("calloc");
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 4096) < 0 || getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0)
		die("listen");
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &s, NULL) < 0)
		die("sigprocmask");
	kid = fork();		/* before anything is deferred */
	if (kid < 0)
		die("fork");
	if (kid == 0) {
		/* the clients end with the server, however it ends (a
		 * timeout's kill included): no orphan left in sigwait */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
			_exit(9);
		_exit(client(&sa, n));
	}
	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	ev.events = EPOLLIN;
	ev.data.u64 = (uint64_t)-1;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl lfd");
	{
		char *stalled = calloc((size_t)n, 1);

		if (!stalled)
			die("calloc");
		for (;;) {
			int m = epoll_wait(ep, evs, 256, 50);

			if (m < 0)
				die("epoll_wait");
			if (t_go > 0 && now_ms() - t_go > 20000) {
				fprintf(stderr, "not served in 20 s\n");
				return 1;
			}
			for (int k = 0; k < m; k++) {
				uint64_t d = evs[k].data.u64;

				if (d == (uint64_t)-1) {
					int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

					if (c < 0 && errno != EAGAIN)
						die("accept active");
					if (c >= 0 && naccepted < n) {
						/* a client that never reads */
						small_bufs(c);
						conn[naccepted] = c;
						ev.events = EPOLLOUT | EPOLLIN | EPOLLET;
						ev.data.u64 = (uint64_t)naccepted++;
						if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0)
							die("epoll_ctl stalled");
					} else if (c >= 0) {
						active = c;
						ev.events = EPOLLIN;
						ev.data.u64 = (uint64_t)-2;
						if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0)
							die("epoll_ctl active");
					}
								} else if (d == (uint64_t)-2) {
					char b[4];
					ssize_t r = recv(active, b, 4, 0);

					if (r == 4 && memcmp(b, "ping", 4) == 0) {
						if (send(active, "pong", 4, 0) != 4)
							die("send pong");
						t_served = now_ms();
					} else if (r < 0 && errno != EAGAIN) {
						die("recv ping");
					}
				} else if (evs[k].events & EPOLLOUT) {
					/* write until EAGAIN, as a server does */
					ssize_t w;

					do
						w = send(conn[d], chunk, CHUNK, MSG_NOSIGNAL);
					while (w > 0);
					/* the clients go away at the end */
					if (w < 0 && errno != EAGAIN &&
					    !(t_served > 0 && (errno == ECONNRESET ||
							       errno == EPIPE)))
						die("send stalled");
					if (!stalled[d]) {
						stalled[d] = 1;
						nstalled++;
					}
				}
			}
			if (nstalled == n && t_go == 0) {
				t_go = now_ms();
				if (kill(kid, SIGUSR1) < 0)
					die("kill");
			}
			if (t_served > 0) {
				pid_t w = waitpid(kid, &status, WNOHANG);

				if (w < 0)
					die("waitpid");
				if (w == kid)
					break;
			}
		}
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "client failed: %d\n", status);
		return 1;
	}
	{
		struct rusage ru;

		if (getrusage(RUSAGE_SELF, &ru) < 0)
			die("getrusage");
		/* the server's peak resident set, KiB (the clients are a
		 * child: not counted) */
		printf("stalled %d served %.0f rss_kib %ld\n", nstalled,
		       t_served - t_go, ru.ru_maxrss);
	}
	/* the clients are gone: what was parked on them fails, and the exit
	 * has nothing to wait for */
	return 0;
}
