/* wait_diff.c CALL CASE: one wait of the program, made while the library
 * (if any) has sends parked on a socket whose peer reads slowly, so that its
 * progress fd fires during the wait (KIB, default 1024, are written before
 * it; the sequential executor, which parks nothing, gets 4).  CALL: epoll_wait epoll_pwait
 * epoll_pwait2 poll ppoll select pselect.  CASE: timeout (300 ms, nothing
 * comes), event (no timeout, a pipe turns readable at 300 ms), signal (no
 * timeout, SIGUSR1 with a handler at 300 ms).  Prints what the wait
 * returned, what it reported, and whether it returned no sooner than
 * 300 ms: the same plainly and under the library. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AT_MS 300

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

static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

/* the peer: reads 1 KiB every 5 ms, and AT_MS after the parent said "go"
 * (a byte on a pipe, written just before its wait: pipes are never
 * deferred) does what CASE says */
static void peer(int sock, int pw, int go, const char *how, pid_t parent)
{
	char buf[1024];
	double start = 0;
	int done = 0;

	for (;;) {
		struct timespec d = { 0, 5000000 };
		ssize_t r = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);

		if (r < 0 && errno != EINTR && errno != EAGAIN)
			_exit(0);
		if (start == 0 && read(go, buf, 1) == 1)
			start = now_ms();	/* the clock of the wait */
		if (!done && start > 0 && now_ms() - start >= AT_MS) {
			done = 1;
			if (!strcmp(how, "event") && write(pw, "x", 1) != 1)
				_exit(2);
			if (!strcmp(how, "signal") && kill(parent, SIGUSR1) < 0)
				_exit(3);
		}
		nanosleep(&d, NULL);
	}
}

int main(int argc, char **argv)
{
	const char *call, *how;
	int sv[2], pp[2], gp[2], ep, r, err, infinite, ready = 0, v = 4096, kib;
	struct sigaction sa;
	struct epoll_event ev = { .events = EPOLLIN }, out[4];
	struct pollfd pf;
	fd_set rs;
	struct timeval tv;
	struct timespec ts;
	pid_t kid;
	double start, took;
	static char big[1 << 20];

	if (argc != 3 && argc != 4)
		return 2;
	kib = argc == 4 ? atoi(argv[3]) : 1024;
	if (kib < 1 || kib > 1024)
		return 2;
	call = argv[1];
	how = argv[2];
	infinite = strcmp(how, "timeout") != 0;
	setvbuf(stdout, NULL, _IONBF, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;	/* no SA_RESTART: waits get EINTR */
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		die("sigaction");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(pp) < 0 ||
	    pipe2(gp, O_NONBLOCK) < 0)
		die("socketpair");
	if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) < 0)
		die("setsockopt");
	kid = fork();		/* before anything is deferred */
	if (kid < 0)
		die("fork");
	if (kid == 0) {
		close(sv[0]);
		close(pp[0]);
		close(gp[1]);
		peer(sv[1], pp[1], gp[0], how, getppid());
	}
	close(sv[1]);
	close(pp[1]);
	close(gp[0]);
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0)
		die("fcntl");
	/* the bytes the library parks (plainly: what fits, then EAGAIN) */
	for (int i = 0; i < 4; i++) {
		ssize_t w = write(sv[0], big, (size_t)kib * 256);

		if (w < 0 && errno == EAGAIN)
			break;
		if (w < 0)
			die("write");
	}
	ep = epoll_create1(0);
	ev.data.u64 = 7;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &ev) < 0)
		die("epoll");
	pf = (struct pollfd){ .fd = pp[0], .events = POLLIN };
	FD_ZERO(&rs);
	FD_SET(pp[0], &rs);
	tv = (struct timeval){ 0, AT_MS * 1000 };
	ts = (struct timespec){ 0, AT_MS * 1000000L };
	if (write(gp[1], "g", 1) != 1)
		die("write go");
	start = now_ms();
	if (!strcmp(call, "epoll_wait"))
		r = epoll_wait(ep, out, 4, infinite ? -1 : AT_MS);
	else if (!strcmp(call, "epoll_pwait"))
		r = epoll_pwait(ep, out, 4, infinite ? -1 : AT_MS, NULL);
	else if (!strcmp(call, "epoll_pwait2"))
		r = epoll_pwait2(ep, out, 4, infinite ? NULL : &ts, NULL);
	else if (!strcmp(call, "poll"))
		r = poll(&pf, 1, infinite ? -1 : AT_MS);
	else if (!strcmp(call, "ppoll"))
		r = ppoll(&pf, 1, infinite ? NULL : &ts, NULL);
	else if (!strcmp(call, "select"))
		r = select(pp[0] + 1, &rs, NULL, NULL, infinite ? NULL : &tv);
	else if (!strcmp(call, "pselect"))
		r = pselect(pp[0] + 1, &rs, NULL, NULL, infinite ? NULL : &ts, NULL);
	else
		return 2;
	err = errno;
	took = now_ms() - start;
	if (r > 0) {
		if (!strncmp(call, "epoll", 5))
			ready = out[0].data.u64 == 7 && (out[0].events & EPOLLIN);
		else if (!strcmp(call, "poll") || !strcmp(call, "ppoll"))
			ready = (pf.revents & POLLIN) != 0;
		else
			ready = FD_ISSET(pp[0], &rs);
	}
	printf("%s %s r=%d errno=%s ready=%d handler=%d late_enough=%d\n", call,
	       how, r, r < 0 ? strerrorname_np(err) : "-", ready, (int)got_usr1,
	       took >= AT_MS - 1);
	/* the peer goes: what was parked for it fails, the exit waits for
	 * nothing */
	if (kill(kid, SIGKILL) < 0 || waitpid(kid, NULL, 0) < 0)
		die("kill");
	return 0;
}
