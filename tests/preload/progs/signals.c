/* signals.c - the cases of tests/preload/test_signals.py, one per argv[1]:
 * programs whose outcome plain Linux fixes, run plainly and under
 * libesca.so.  What they print goes to fd 3 (OUT), which the test makes a unix
 * stream socket (a kind of fd the library always defers to). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* where the cases print: a unix stream socket the test passes as fd 3 (fds
 * 0-2 are never deferred: DESIGN.md, "Deferral scope") */
#define OUT 3

static void die(const char *what)
{
	char m[128];
	int n = snprintf(m, sizeof(m), "FAIL %s: %s\n", what, strerror(errno));

	if (syscall(SYS_write, 2, m, (size_t)n) < 0)
		_exit(99);
	_exit(99);
}

static void say(const char *s)
{
	size_t n = strlen(s);

	if (write(OUT, s, n) != (ssize_t)n)
		die("write 1");
}

/* raw: never the interposer (a peer, not the program under test) */
static void raw_write(int fd, const void *b, size_t n)
{
	if (syscall(SYS_write, fd, b, n) != (long)n)
		die("raw write");
}

static double mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* ---- issue 12 #3: a folded wait reports an fd the program closed ------- */
struct conn {
	int fd;
	unsigned magic;
};

static int fold_close(void)
{
	int sv[2], ep, n;
	struct epoll_event ev, evs[8];
	struct conn *c = malloc(sizeof(*c));
	char b[8];
	char out[64];

	if (!c || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	c->fd = sv[0];
	c->magic = 0xc0ffee;
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) < 0)
		die("epoll_ctl");
	raw_write(sv[1], "qx", 2);	/* the peer: a request and more */
	n = epoll_wait(ep, evs, 8, 1000);
	if (n != 1 || evs[0].data.ptr != c)
		die("first wait");
	if (read(c->fd, b, 1) != 1)
		die("read");
	/* reply, close, free: the connection is gone */
	if (write(c->fd, "r", 1) != 1)
		die("write reply");
	if (close(c->fd) < 0)
		die("close");
	c->magic = 0;
	free(c);
	n = epoll_wait(ep, evs, 8, 200);
	snprintf(out, sizeof(out), "events after close: %d\n", n);
	raw_write(OUT, out, strlen(out));	/* the verdict: never deferred */
	n = (int)syscall(SYS_read, sv[1], b, sizeof(b));
	snprintf(out, sizeof(out), "peer got %d: %.*s\n", n, n > 0 ? n : 0, b);
	raw_write(OUT, out, strlen(out));
	n = (int)syscall(SYS_read, sv[1], b, sizeof(b));
	snprintf(out, sizeof(out), "then %d\n", n);
	raw_write(OUT, out, strlen(out));
	return 0;
}

/* ---- issue 12 #4: a folded wait ends early with EINTR ------------------- */
static int fold_eintr(void)
{
	int sv[2], ep, n, e;
	struct epoll_event ev = { .events = EPOLLIN }, evs[4];
	double t0, el;
	char out[96];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	ep = epoll_create1(0);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) < 0)
		die("epoll");
	for (int i = 0; i < 3; i++) {
		/* a deferred write, then a wait with nothing to report */
		if (write(sv[0], "w", 1) != 1)
			die("write");
		t0 = mono_ms();
		n = epoll_wait(ep, evs, 4, 300);
		e = errno;
		el = mono_ms() - t0;
		snprintf(out, sizeof(out), "wait %d: %d %s %s\n", i, n,
			 n < 0 ? strerror(e) : "-",
			 el >= 250 ? "full" : "short");
		raw_write(OUT, out, strlen(out));
	}
	return 0;
}

/* ---- issue 12 #5: a signal handler that writes -------------------------- */
static int h_fd;
static volatile sig_atomic_t h_count;

static void on_alarm(int sig)
{
	int saved = errno;

	(void)sig;
	if (write(h_fd, "H\n", 2) == 2)
		h_count++;
	errno = saved;
}

struct reader {
	int fd;
	char *buf;
	size_t len, cap;
};

static void *reader(void *arg)
{
	struct reader *r = arg;

	for (;;) {
		long n;

		if (r->len == r->cap)
			break;
		n = syscall(SYS_read, r->fd, r->buf + r->len, r->cap - r->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		r->len += (size_t)n;
	}
	return NULL;
}

static int handler_write(void)
{
	enum { N = 40000 };
	int sv[2], ep;
	struct sigaction sa;
	struct itimerval it = { { 0, 200 }, { 0, 200 } };
	struct reader rd;
	pthread_t th;
	struct epoll_event evs[1];
	long next = 0, hl = 0, bad = 0;
	char rec[16], out[128];
	sigset_t al;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	rd.fd = sv[1];
	rd.cap = (size_t)N * 8 + 1000000;
	rd.len = 0;
	rd.buf = malloc(rd.cap);
	sigemptyset(&al);
	sigaddset(&al, SIGALRM);
	/* the reader thread never takes the handler: only the writer */
	if (pthread_sigmask(SIG_BLOCK, &al, NULL) != 0 || !rd.buf ||
	    pthread_create(&th, NULL, reader, &rd) != 0 ||
	    pthread_sigmask(SIG_UNBLOCK, &al, NULL) != 0)
		die("reader");
	h_fd = sv[0];	/* the handler writes where the main thread does */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0 ||
	    setitimer(ITIMER_REAL, &it, NULL) < 0)
		die("timer");
	for (long i = 0; i < N; i++) {
		snprintf(rec, sizeof(rec), "M%06ld\n", i);
		if (write(sv[0], rec, 8) != 8)
			die("write");
		if (i % 16 == 15 && epoll_wait(ep, evs, 1, 0) < 0 &&
		    errno != EINTR)
			die("epoll_wait");
	}
	memset(&it, 0, sizeof(it));
	if (setitimer(ITIMER_REAL, &it, NULL) < 0)
		die("timer off");
	if (sigprocmask(SIG_BLOCK, &al, NULL) < 0)
		die("sigprocmask");
	if (shutdown(sv[0], SHUT_WR) < 0)
		die("shutdown");
	if (pthread_join(th, NULL) != 0)
		die("join");
	/* the stream: whole records, the main thread's in order */
	for (size_t p = 0; p < rd.len;) {
		if (rd.buf[p] == 'H' && p + 1 < rd.len && rd.buf[p + 1] == '\n') {
			hl++;
			p += 2;
		} else if (rd.buf[p] == 'M' && p + 8 <= rd.len &&
			   rd.buf[p + 7] == '\n' &&
			   strtol(rd.buf + p + 1, NULL, 10) == next) {
			next++;
			p += 8;
		} else {
			bad++;
			break;
		}
	}
	snprintf(out, sizeof(out), "records %ld/%d, handler lines %s, bad %ld\n",
		 next, N, hl == h_count ? "all" : "MISSING", bad);
	raw_write(2, out, strlen(out));
	return next == N && hl == h_count && !bad ? 0 : 1;
}

/* ---- issue 12 #6: another thread's bytes at exit ------------------------ */
static volatile int worker_wrote;

static void *worker(void *arg)
{
	(void)arg;
	say("worker line\n");
	__atomic_store_n(&worker_wrote, 1, __ATOMIC_RELEASE);
	for (;;)	/* busy: the library sees no call of this thread */
		__asm__ volatile("" ::: "memory");
	return NULL;
}

static int exit_threads(const char *how)
{
	pthread_t th;

	say("main line\n");
	/* main's line out first (a flush trigger): a write of main's while the
	 * worker's is queued would wait for it (DESIGN.md, "Contract: order")
	 * and leave the exit path nothing to drain */
	poll(NULL, 0, 0);
	if (pthread_create(&th, NULL, worker, NULL) != 0)
		die("pthread_create");
	while (!__atomic_load_n(&worker_wrote, __ATOMIC_ACQUIRE))
		;
	if (!strcmp(how, "exit"))
		exit(0);
	return 0;
}

/* ---- issue 12 #7: a crash, or the program killing itself ---------------- */
static void on_segv(int sig)
{
	(void)sig;
	say("handler line\n");
	_exit(3);
}

static int crash(const char *how)
{
	say("before the end\n");
	if (write(2, "fatal: the end\n", 15) != 15)
		die("write 2");
	if (!strcmp(how, "abort"))
		abort();
	if (!strcmp(how, "segv"))
		*(volatile int *)(uintptr_t)8 = 1;
	if (!strcmp(how, "kill9"))
		kill(getpid(), SIGKILL);
	if (!strcmp(how, "raise_term"))
		raise(SIGTERM);
	if (!strcmp(how, "own_handler")) {
		struct sigaction sa, old;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_segv;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSEGV, &sa, &old) < 0)
			die("sigaction");
		if (old.sa_handler != SIG_DFL)
			say("old handler was not SIG_DFL\n");
		*(volatile int *)(uintptr_t)8 = 1;
	}
	if (!strcmp(how, "thread_abort")) {
		/* the worker's line is queued in its table when main aborts */
		pthread_t th;

		if (pthread_create(&th, NULL, worker, NULL) != 0)
			die("pthread_create");
		while (!__atomic_load_n(&worker_wrote, __ATOMIC_ACQUIRE))
			;
		abort();
	}
	return 5;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";

	if (!strcmp(c, "fold_close"))
		return fold_close();
	if (!strcmp(c, "fold_eintr"))
		return fold_eintr();
	if (!strcmp(c, "handler_write"))
		return handler_write();
	if (!strcmp(c, "exit_threads"))
		return exit_threads(argc > 2 ? argv[2] : "return");
	if (!strcmp(c, "crash"))
		return crash(argc > 2 ? argv[2] : "");
	fprintf(stderr, "usage: signals CASE [ARG]\n");
	return 2;
}
