/* Found by an audit of the wait interposers (session 9): each case prints
 * one line that must be the same plainly and under each executor.  Sends
 * are parked first (a non-blocking socket whose peer, a child, reads 1 KiB
 * every 2 ms), so the library's waits take their rounds and its timer runs.
 * argv[1]:
 *  mask          ppoll, pselect, epoll_pwait, epoll_pwait2, each with a mask
 *                that blocks SIGUSR1 (the thread's own does not), 200 ms,
 *                nothing ready, SIGUSR1 at 50 ms.  Linux: 0 after 200 ms,
 *                then the handler.  Had: EINTR at 50 ms (the signal ran
 *                between two rounds, under the thread's own mask).
 *  select_small  select with sets of one word (nfds <= 64) and canaries
 *                after them.  Had: EBADF, the canaries read as fds.
 *  select_stale  a bit set past nfds, its fd readable.  Linux ignores it.
 *                Had: 1 at once, that fd reported.
 *  poll_max      poll with nfds equal to RLIMIT_NOFILE.  Had: EINVAL.
 *  sleep_ret     sleep(2) ended by a signal at 0.3 s.  Linux (glibc): 1.
 *                Had: 2.
 *  nanosleep_busy  nanosleep(300 ms), SIGUSR1 at 50 ms whose handler runs
 *                5 ms.  Linux: EINTR at 50 ms.  Had: the sleep went on.
 *                argv[2] names the call that installs the handler:
 *                sigaction (the default), sigset, sysv_signal (and
 *                signal() under _XOPEN_SOURCE alone: __sysv_signal),
 *                ssignal.  Had with the last three: the sleep went on
 *                (glibc installs them where the library did not see).
 *  nanosleep_short  20 x nanosleep(1 ms) before the sends are parked, 20
 *                after.  Linux: the same time.  Had: ~2 ms each after (the
 *                flush before the sleep waited 1 ms for the parked sends).
 *  pause_stop    pause; SIGSTOP at 50 ms, SIGCONT at 100, SIGUSR1 at 300.
 *                Linux: EINTR at 300 ms, the handler run.  Had: EINTR at
 *                100 ms, no handler.
 *  poll_quiet    poll(300 ms) on an idle pipe, the sends parked on a peer
 *                that never reads: the voluntary context switches in the
 *                wait.  Linux: one.  Had: ~150, the library's timer ending
 *                a round every 2 ms (re-armed after each).
 *  quiet_poll, quiet_epoll, quiet_pause  a write of 1 KiB (it fits) before
 *                the four, a peer that reads past the end of the first big
 *                one and then never again, a wait of 300 ms
 *                (pause: ended by SIGUSR1), three rounds: the most CPU
 *                time the thread used in one.  Linux: next to none.  Had under uring: the whole
 *                300 ms (session 12): the ring's IORING_SQ_TASKRUN stays set
 *                once the sends' linked writes ran, and arming the
 *                progress fd on it woke each round at once.
 * Times are printed in buckets; alarm(5) kills a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static const char *bucket(double ms)
{
	return ms < 30 ? "at once" : ms < 80 ? "~50 ms" : ms < 130 ? "~100 ms" :
	       ms < 180 ? "~150 ms" : ms < 260 ? "~200 ms" : ms < 400 ? "~300 ms" :
	       "later";
}

static const char *err(int r, int e)
{
	return r < 0 ? strerrorname_np(e) : "-";
}

static volatile sig_atomic_t got;
static int busy;

static void on_usr1(int s)
{
	(void)s;
	got++;
	if (busy) {
		double t = now_ms();

		while (now_ms() - t < 5)
			;
	}
}

/* the program's handler of SIGUSR1, installed through `how` */
void *install_sigset(int sig, void (*h)(int));
void *install_sysv(int sig, void (*h)(int));
void *install_xopen_signal(int sig, void (*h)(int));
void *install_ssignal(int sig, void (*h)(int));

static int install(const char *how)
{
	struct sigaction sa;

	if (!strcmp(how, "sigset"))
		return install_sigset(SIGUSR1, on_usr1) == SIG_ERR;
	if (!strcmp(how, "sysv_signal"))
		return install_sysv(SIGUSR1, on_usr1) == SIG_ERR;
	if (!strcmp(how, "xopen_signal"))
		return install_xopen_signal(SIGUSR1, on_usr1) == SIG_ERR;
	if (!strcmp(how, "ssignal"))
		return install_ssignal(SIGUSR1, on_usr1) == SIG_ERR;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	return sigaction(SIGUSR1, &sa, NULL);
}

static pid_t peer_pid, sender_pid;

static int peer_reads = 1;	/* 2: a little, then never */

/* sends parked: a non-blocking socket whose peer reads 1 KiB every 2 ms
 * (peer_reads 0: never) */
static void park_sends(void)
{
	static char big[1 << 20];
	int sv[2], v = 4096;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		exit(1);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	peer_pid = fork();
	if (peer_pid == 0) {
		char b[1024];

		close(sv[0]);
		for (size_t got = 0; peer_reads == 2;) {
			/* past the first write's end, then no more */
			ssize_t n = recv(sv[1], big, 65536, 0);

			if (n <= 0)
				_exit(0);
			if ((got += (size_t)n) > sizeof(big) / 4 + 65536)
				peer_reads = 0;
		}
		for (;;) {
			if (!peer_reads)
				pause();
			else if (recv(sv[1], b, sizeof(b), MSG_DONTWAIT) == 0)
				_exit(0);
			usleep(2000);
		}
	}
	close(sv[1]);
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0)
		exit(1);
	if (peer_reads == 2 && write(sv[0], big, 1024) != 1024)	/* fits */
		exit(1);
	for (int i = 0; i < 4; i++)
		if (write(sv[0], big, sizeof(big) / 4) < 0 && errno == EAGAIN)
			break;
}

/* a child that signals us: sig1 after us1 microseconds, then sig2 after
 * us2 more, then sig3 after us3 more (0: none) */
static void signal_me(int sig1, int us1, int sig2, int us2, int sig3, int us3)
{
	pid_t me = getpid();

	sender_pid = fork();
	if (sender_pid == 0) {
		usleep((useconds_t)us1);
		kill(me, sig1);
		if (sig2) {
			usleep((useconds_t)us2);
			kill(me, sig2);
		}
		if (sig3) {
			usleep((useconds_t)us3);
			kill(me, sig3);
		}
		_exit(0);
	}
}

static int mask_case(const char *call)
{
	sigset_t wm;
	int pp[2], ep, r, e;
	struct timespec t = { 0, 200000000L };
	struct pollfd pf;
	struct epoll_event ev = { .events = EPOLLIN }, out[4];
	fd_set rs;
	double t0;

	if (pipe(pp) < 0 || (ep = epoll_create1(0)) < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &ev) < 0)
		return 1;
	sigemptyset(&wm);
	sigaddset(&wm, SIGUSR1);
	pf = (struct pollfd){ pp[0], POLLIN, 0 };
	FD_ZERO(&rs);
	FD_SET(pp[0], &rs);
	signal_me(SIGUSR1, 50000, 0, 0, 0, 0);
	t0 = now_ms();
	if (!strcmp(call, "ppoll"))
		r = ppoll(&pf, 1, &t, &wm);
	else if (!strcmp(call, "pselect"))
		r = pselect(pp[0] + 1, &rs, NULL, NULL, &t, &wm);
	else if (!strcmp(call, "epoll_pwait"))
		r = epoll_pwait(ep, out, 4, 200, &wm);
	else
		r = epoll_pwait2(ep, out, 4, &t, &wm);
	e = errno;
	printf("%s, SIGUSR1 blocked by its mask: %d %s %s, handler ran %d\n",
	       call, r, err(r, e), bucket(now_ms() - t0), (int)got);
	return 0;
}

struct smallset {
	fd_mask m;
	unsigned long canary[15];
};

static int select_case(const char *c)
{
	struct timeval tv = { 0, 100000 };
	int pp[2], qq[2], r, e;
	double t0;

	if (pipe(pp) < 0 || pipe(qq) < 0)
		return 1;
	t0 = now_ms();
	if (!strcmp(c, "select_small")) {
		struct smallset rs, ws, es;
		int bad = 0;

		for (int i = 0; i < 15; i++)
			rs.canary[i] = ws.canary[i] = es.canary[i] = ~0ul;
		rs.m = 1ul << pp[0];
		ws.m = es.m = 0;
		r = select(pp[0] + 1, (fd_set *)&rs, (fd_set *)&ws,
			   (fd_set *)&es, &tv);
		e = errno;
		for (int i = 0; i < 15; i++)
			bad += rs.canary[i] != ~0ul || ws.canary[i] != ~0ul ||
			       es.canary[i] != ~0ul;
		printf("select, sets of one word: %d %s %s, canaries changed %d\n",
		       r, err(r, e), bucket(now_ms() - t0), bad);
	} else {
		fd_set rs;

		if (write(qq[1], "x", 1) != 1)	/* readable, past nfds */
			return 1;
		FD_ZERO(&rs);
		FD_SET(pp[0], &rs);
		FD_SET(qq[0], &rs);
		r = select(pp[0] + 1, &rs, NULL, NULL, &tv);
		e = errno;
		printf("select, a readable fd past nfds: %d %s %s, set %d %d\n",
		       r, err(r, e), bucket(now_ms() - t0),
		       FD_ISSET(pp[0], &rs), FD_ISSET(qq[0], &rs));
	}
	return 0;
}

static int poll_max(void)
{
	struct rlimit rl;
	struct pollfd *p;
	int pp[2], r, e;
	double t0;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || pipe(pp) < 0)
		return 1;
	rl.rlim_cur = 512;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || !(p = calloc(512, sizeof(*p))))
		return 1;
	for (int i = 0; i < 512; i++)
		p[i].fd = -1;
	p[0] = (struct pollfd){ pp[0], POLLIN, 0 };
	t0 = now_ms();
	r = poll(p, 512, 50);
	e = errno;
	printf("poll, nfds = RLIMIT_NOFILE: %d %s %s\n", r, err(r, e),
	       bucket(now_ms() - t0));
	return 0;
}

/* quiet_*: three rounds, each with its own parked sends and peer (the
 * state that made the spin depends on when the peer reads) */
static int quiet_case(const char *c)
{
	double most = 0, t0, wall = 0;
	int r = 0, e = 0;

	for (int round = 0; round < 3; round++) {
		struct rusage u0, u1;
		struct pollfd pf;
		struct epoll_event ev;
		int pp[2], ep;
		double cpu;

		if (round > 0) {
			kill(peer_pid, SIGKILL);
			waitpid(peer_pid, NULL, 0);
			park_sends();
		}
		if (pipe(pp) < 0 || (ep = epoll_create1(0)) < 0)
			return 1;
		pf = (struct pollfd){ pp[0], POLLIN, 0 };
		ev = (struct epoll_event){ .events = EPOLLIN };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &ev) < 0)
			return 1;
		if (!strcmp(c, "quiet_pause"))
			signal_me(SIGUSR1, 300000, 0, 0, 0, 0);
		getrusage(RUSAGE_THREAD, &u0);
		t0 = now_ms();
		if (!strcmp(c, "quiet_poll"))
			r = poll(&pf, 1, 300);
		else if (!strcmp(c, "quiet_epoll"))
			r = epoll_wait(ep, &ev, 1, 300);
		else
			r = pause();
		e = errno;
		wall = now_ms() - t0;
		getrusage(RUSAGE_THREAD, &u1);
		if (sender_pid > 0) {
			waitpid(sender_pid, NULL, 0);
			sender_pid = 0;
		}
		cpu = (double)(u1.ru_utime.tv_sec - u0.ru_utime.tv_sec +
			       u1.ru_stime.tv_sec - u0.ru_stime.tv_sec) * 1e3 +
		      (double)(u1.ru_utime.tv_usec - u0.ru_utime.tv_usec +
			       u1.ru_stime.tv_usec - u0.ru_stime.tv_usec) / 1e3;
		fprintf(stderr, "round %d: CPU time in the wait %.1f ms\n",
			round, cpu);
		most = cpu > most ? cpu : most;
		close(pp[0]);
		close(pp[1]);
		close(ep);
	}
	printf("%s, sends parked: %d %s %s, CPU time %s\n", c + 6, r, err(r, e),
	       bucket(wall), most < 60 ? "next to none" : "most of it");
	return 0;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	int r, e;
	double t0;

	alarm(5);
	setvbuf(stdout, NULL, _IONBF, 0);
	if (install(argc > 2 ? argv[2] : "sigaction"))
		return 1;
	busy = !strcmp(c, "nanosleep_busy");
	peer_reads = !strncmp(c, "quiet_", 6) ? 2 : strcmp(c, "poll_quiet") != 0;
	if (strcmp(c, "sleep_ret") && strcmp(c, "nanosleep_short"))
		park_sends();
	if (!strcmp(c, "mask")) {
		static const char *const calls[] = { "ppoll", "pselect",
						     "epoll_pwait",
						     "epoll_pwait2" };

		r = 0;
		for (int i = 0; i < 4 && !r; i++) {
			r = mask_case(calls[i]);
			waitpid(sender_pid, NULL, 0);
			sender_pid = 0;
			got = 0;
		}
	}
	else if (!strncmp(c, "select_", 7))
		r = select_case(c);
	else if (!strcmp(c, "poll_max"))
		r = poll_max();
	else if (!strcmp(c, "sleep_ret")) {
		signal_me(SIGUSR1, 300000, 0, 0, 0, 0);
		printf("sleep(2) ended at 0.3 s: %u\n", sleep(2));
		r = 0;
	} else if (!strcmp(c, "nanosleep_busy")) {
		struct timespec req = { 0, 300000000L }, rem;

		signal_me(SIGUSR1, 50000, 0, 0, 0, 0);
		t0 = now_ms();
		r = nanosleep(&req, &rem);
		e = errno;
		printf("nanosleep(300 ms), a 5-ms handler at 50: %d %s %s, rem %s\n",
		       r, err(r, e), bucket(now_ms() - t0),
		       r < 0 ? bucket(rem.tv_nsec / 1e6) : "-");
		r = 0;
	} else if (!strcmp(c, "nanosleep_short")) {
		/* 20 sleeps of 1 ms before the sends are parked, then 20
		 * with them parked: plainly the same time */
		struct timespec ms = { 0, 1000000L };
		double base, parked;

		t0 = now_ms();
		for (int i = 0; i < 20; i++)
			nanosleep(&ms, NULL);
		base = now_ms() - t0;
		park_sends();
		t0 = now_ms();
		r = 0;
		for (int i = 0; i < 20 && !r; i++)
			r = nanosleep(&ms, NULL);
		e = errno;
		parked = now_ms() - t0;
		printf("20 x nanosleep(1 ms), sends parked: %d %s, %s than without\n",
		       r, err(r, e), parked < base + 8 ? "not longer" : "longer");
		fprintf(stderr, "20 sleeps: %.2f ms, without sends parked %.2f ms\n",
			parked, base);
		r = 0;
	} else if (!strcmp(c, "poll_quiet")) {
		struct rusage u0, u1;
		struct pollfd pf;
		int pp[2];
		long sw;

		if (pipe(pp) < 0)
			return 1;
		pf = (struct pollfd){ pp[0], POLLIN, 0 };
		getrusage(RUSAGE_THREAD, &u0);
		r = poll(&pf, 1, 300);
		e = errno;
		getrusage(RUSAGE_THREAD, &u1);
		sw = u1.ru_nvcsw - u0.ru_nvcsw;
		printf("poll(300 ms), sends parked: %d %s, context switches %s\n",
		       r, err(r, e), sw <= 5 ? "a few" : "many");
		fprintf(stderr, "voluntary context switches: %ld\n", sw);
		r = 0;
	} else if (!strncmp(c, "quiet_", 6)) {
		r = quiet_case(c);
	} else if (!strcmp(c, "pause_stop")) {
		signal_me(SIGSTOP, 50000, SIGCONT, 50000, SIGUSR1, 200000);
		t0 = now_ms();
		r = pause();
		e = errno;
		printf("pause, stopped and continued: %d %s %s, handler ran %d\n",
		       r, err(r, e), bucket(now_ms() - t0), (int)got);
		r = 0;
	} else {
		r = 2;
	}
	if (peer_pid > 0) {
		kill(peer_pid, SIGKILL);
		waitpid(peer_pid, NULL, 0);
	}
	if (sender_pid > 0)
		waitpid(sender_pid, NULL, 0);
	return r;
}
