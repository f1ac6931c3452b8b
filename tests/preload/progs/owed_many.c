/* owed_many.c N HEAD BODY: a server whose N clients never read, each sent
 * a HEAD-byte header and then a BODY-byte body until EAGAIN, and one active
 * client that must be answered.  Under esca the header is deferred and
 * parks on the full socket; the body (BODY above ESCA_BUDGET: never
 * queued) is then answered EAGAIN behind the parked header, and the socket
 * is owed an event (DESIGN.md, "Contract: parked sends"): N sockets owed
 * at once.  With a fixed list of owed fds (there was one of 64), the next
 * socket's body waited for its parked header, i.e. for a client that never
 * reads: the server stalled.  Prints "owed N served <ms>" and exits 0 when
 * the active client got its answer; exits 1 on any failure.  Everything on
 * 127.0.0.1, one epoll set, edge-triggered, non-blocking. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static void raise_nofile(int n)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit");
	if (rl.rlim_cur >= (rlim_t)(n + 64))
		return;
	rl.rlim_cur = rl.rlim_max;
	if (rl.rlim_cur < (rlim_t)(n + 64)) {
		fprintf(stderr, "RLIMIT_NOFILE too low\n");
		exit(77);
	}
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("setrlimit");
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 200;
	size_t head = argc > 2 ? strtoul(argv[2], NULL, 0) : 64 << 10;
	size_t body = argc > 3 ? strtoul(argv[3], NULL, 0) : 8 << 20;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	struct epoll_event ev, evs[256];
	int lfd, ep, nowed = 0, naccepted = 0, active = -1, status = 0, one = 1;
	int *conn;
	char *hbuf, *bbuf, *done;
	pid_t kid;
	double t_go = 0, t_served = 0;
	sigset_t s;

	raise_nofile(n);
	conn = calloc((size_t)n, sizeof(int));
	done = calloc((size_t)n, 1);
	hbuf = malloc(head);
	bbuf = calloc(1, body);		/* untouched pages: no RSS */
	if (!conn || !done || !hbuf || !bbuf)
		die("alloc");
	memset(hbuf, 'h', head);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (lfd < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 4096) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0)
		die("listen");
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &s, NULL) < 0)
		die("sigprocmask");
	kid = fork();		/* before anything is deferred */
	if (kid < 0)
		die("fork");
	if (kid == 0) {
		/* the clients end with the server, however it ends */
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
					die("accept");
				if (c >= 0 && naccepted < n) {
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
			} else if ((evs[k].events & EPOLLOUT) && !done[d]) {
				/* a reply: its header, then its body until
				 * EAGAIN (plain: the kernel takes part of the
				 * header and says EAGAIN to the body) */
				ssize_t w = send(conn[d], hbuf, head, MSG_NOSIGNAL);

				if (w < 0 && errno != EAGAIN)
					die("send head");
				do
					w = send(conn[d], bbuf, body, MSG_NOSIGNAL);
				while (w > 0);
				if (w < 0 && errno != EAGAIN)
					die("send body");
				done[d] = 1;
				nowed++;
			}
		}
		if (nowed == n && t_go == 0) {
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
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "client failed: %d\n", status);
		return 1;
	}
	printf("owed %d served %.0f\n", nowed, t_served - t_go);
	/* the clients are gone: what was parked on them fails, and the exit
	 * has nothing to wait for */
	return 0;
}
