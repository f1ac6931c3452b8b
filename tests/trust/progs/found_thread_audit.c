/* Found by session 10's audit of threads: a thread whose signal mask blocks
 * the library's timer signal (a daemon's threads with every signal
 * blocked, a sigwait thread doing the rest) and then waits where no
 * interposer sees it.  Each case prints what the peer got and when, which
 * must be plain's (argv[1]):
 *  reply     a worker (all signals blocked) writes "reply" and waits on a
 *            condvar; main polls the other end for 3 s.  Linux: the reply
 *            at once.  Had: poll timed out (the reply sat in the worker's
 *            table for good).
 *  handover  A (all signals blocked) writes "A1" under a mutex and waits
 *            on a semaphore; B then writes "B1" under the mutex.  Linux:
 *            A1B1, B's write at once.  Had: B1A1, B's write after ~3 s.
 *  exit      a detached thread (all signals blocked) writes 100 records
 *            and waits on a condvar; main exits.  Linux: 1000 bytes.
 *            Had: 0 (the drain at exit cannot reach that thread).
 *  signalfd  all signals blocked and read from a signalfd in an epoll
 *            loop that writes a reply each round.  Linux: no signal ever.
 *            Had: signal 57 (SIGRTMAX-7, the library's timer) read once.
 * alarm(10) ends a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int sv[2], written, done;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static sem_t a_done, b_done;

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void block_all(void)
{
	sigset_t all;

	sigfillset(&all);
	sigdelset(&all, SIGALRM);	/* the test's alarm() still works */
	pthread_sigmask(SIG_BLOCK, &all, NULL);
}

static void put(const char *s)
{
	if (write(sv[0], s, strlen(s)) < 0)
		_exit(90);
}

static void *replier(void *a)
{
	(void)a;
	block_all();
	put("reply");
	pthread_mutex_lock(&m);
	written = 1;
	pthread_cond_broadcast(&c);
	while (!done)
		pthread_cond_wait(&c, &m);
	pthread_mutex_unlock(&m);
	return NULL;
}

static void *thread_a(void *x)
{
	(void)x;
	block_all();
	pthread_mutex_lock(&m);
	put("A1");
	pthread_mutex_unlock(&m);
	sem_post(&a_done);
	sem_wait(&b_done);
	return NULL;
}

static void *thread_b(void *x)
{
	double t0;

	(void)x;
	sem_wait(&a_done);
	pthread_mutex_lock(&m);
	t0 = now_ms();
	put("B1");
	printf("B's write %s\n", now_ms() - t0 < 500 ? "at once" : "late");
	pthread_mutex_unlock(&m);
	sem_post(&b_done);
	return NULL;
}

static void *recorder(void *x)
{
	(void)x;
	block_all();
	for (int i = 0; i < 100; i++)
		put("0123456789");
	__atomic_store_n(&written, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&m);
	for (;;)
		pthread_cond_wait(&c, &m);
	return NULL;
}

static void read_all(const char *what)
{
	char buf[2048];
	size_t n = 0;
	ssize_t r;

	while (n < sizeof(buf) - 1 &&
	       (r = read(sv[1], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = 0;
	if (n <= 16)
		printf("%s: peer got '%s'\n", what, buf);
	else
		printf("%s: peer got %zu bytes\n", what, n);
}

int main(int argc, char **argv)
{
	const char *c_ = argc > 1 ? argv[1] : "";
	pthread_t t1, t2;

	alarm(10);
	setvbuf(stdout, NULL, _IONBF, 0);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 1;
	if (!strcmp(c_, "reply")) {
		struct pollfd p = { sv[1], POLLIN, 0 };
		double t0;
		int r;

		pthread_create(&t1, NULL, replier, NULL);
		pthread_mutex_lock(&m);
		while (!written)
			pthread_cond_wait(&c, &m);
		pthread_mutex_unlock(&m);
		t0 = now_ms();
		r = poll(&p, 1, 3000);
		printf("poll %d %s\n", r, now_ms() - t0 < 1000 ? "at once" : "late");
		pthread_mutex_lock(&m);
		done = 1;
		pthread_cond_broadcast(&c);
		pthread_mutex_unlock(&m);
		pthread_join(t1, NULL);
		close(sv[0]);
		read_all("reply");
	} else if (!strcmp(c_, "handover")) {
		sem_init(&a_done, 0, 0);
		sem_init(&b_done, 0, 0);
		pthread_create(&t1, NULL, thread_a, NULL);
		pthread_create(&t2, NULL, thread_b, NULL);
		pthread_join(t1, NULL);
		pthread_join(t2, NULL);
		close(sv[0]);
		read_all("handover");
	} else if (!strcmp(c_, "exit")) {
		pid_t kid = fork();

		if (kid == 0) {	/* the peer */
			close(sv[0]);
			read_all("exit");
			_exit(0);
		}
		close(sv[1]);
		pthread_create(&t1, NULL, recorder, NULL);
		pthread_detach(t1);
		while (!__atomic_load_n(&written, __ATOMIC_ACQUIRE))
			;
		exit(0);
	} else if (!strcmp(c_, "signalfd")) {
		sigset_t all;
		struct epoll_event ev = { .events = EPOLLIN };
		int sfd, ep, got = 0;
		char b[16];

		sigfillset(&all);
		sigdelset(&all, SIGALRM);
		sigprocmask(SIG_BLOCK, &all, NULL);
		sfd = signalfd(-1, &all, SFD_NONBLOCK);
		ep = epoll_create1(0);
		ev.data.fd = sfd;
		if (sfd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0)
			return 1;
		for (int round = 0; round < 5; round++) {
			put("reply");
			if (epoll_wait(ep, &ev, 1, 50) > 0) {
				struct signalfd_siginfo si;

				if (read(sfd, &si, sizeof(si)) == sizeof(si))
					got = (int)si.ssi_signo;
			}
			if (read(sv[1], b, sizeof(b)) != 5)
				return 1;
		}
		printf("signalfd: %s\n", got ? "a signal came" : "no signal");
	} else {
		return 2;
	}
	return 0;
}
