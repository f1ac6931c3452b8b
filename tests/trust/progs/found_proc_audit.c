/* Found by session 10's audit of processes and signals: each case writes
 * to a unix stream socket whose peer, a forked reader, prints what it got
 * at EOF; the bytes, their order and the exit status must be plain's
 * (argv[1]):
 *  fork_mt     a second thread writes "T1." and says so; main then forks,
 *              the child writes "C.", main "P." after it.  Linux: T1.C.P.
 *              Had: C.T1.P. (fork flushed only the forking thread's table)
 *  _Fork       "P1.", _Fork, the child "C.", the parent "P2." after it.
 *              Linux: P1.C.P2.  Had: P1.P2. (uring: the child's bytes lost
 *              in the parent's ring) or P1.P1.C.P2. (sequential: sent twice)
 *  quick_exit  "M.", quick_exit(3).  Linux: M., status 3.  Had: nothing.
 *  execveat    "A.", execveat of sh -c 'exit 5'.  Linux: A., status 5.
 *              Had: nothing.
 *  sigset_old  signal(SIGUSR1, h), then sigset(SIGUSR1, SIG_DFL) answers
 *              h; sigset(SIGABRT, SIG_DFL) answers SIG_DFL.  Had: the
 *              library's trampoline and its fatal handler.
 *  sigset_segv sigset(SIGSEGV, SIG_DFL), "before.", a fault.  Linux:
 *              before., SIGSEGV.  Had: nothing (the library's flushing
 *              default was replaced behind its back).
 *  alarm       "tick", then a 1-ms SIGALRM at its default (setitimer), a
 *              busy loop.  Linux: tick, killed by ALRM.  Had: nothing.
 *  unblock     SIGTERM blocked, "X", kill(self, SIGTERM), "Y", unblocked.
 *              Linux: XY, killed by TERM.  Had: X.
 *  sigqueue    "A.", pthread_sigqueue(self, SIGTERM).  Linux: A., TERM.
 *              Had: nothing.
 *  resethand   a SIGTERM handler with SA_RESETHAND; "before.", SIGTERM to
 *              self (the handler runs, the default is back), "+after.",
 *              SIGTERM again.  Linux: before.+after., TERM.  Had: nothing.
 *  external    "hello", then the driver (another process) sends SIGTERM
 *              while the writer spins.  Linux: hello, TERM.  Had: nothing.
 *  clone_vm    "P1.", clone(CLONE_VM | CLONE_VFORK) whose child closes the
 *              socket (its own copy) and exits, then "P2.".  Linux:
 *              P1.P2., the write 3.  Had: P1., the write EBADF (the
 *              child's close went into the parent's table).
 *  clone_fork  "P1.", clone(SIGCHLD) whose child writes "C.", then "P2.".
 *              Linux: P1.C.P2.
 * The test runs these with a flush bound of 1 s, so that no timer of the
 * library's sends the bytes before the signal does its work.
 * The last line is the status of the process that wrote (a child of the
 * driver: main forks it first). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

extern char **environ;
static int s[2];
static volatile int flag;
static volatile int *volatile nowhere;

static void put(const char *m)
{
	if (write(s[0], m, strlen(m)) < 0)
		_exit(90);
}

static void *thread_writes(void *a)
{
	(void)a;
	put("T1.");
	__atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
	for (;;)	/* busy: a pause() would flush */
		__asm__ __volatile__("" ::: "memory");
	return NULL;
}

static void on_usr1(int sig)
{
	(void)sig;
}

static int ready[2];	/* the writer tells the driver (a pipe: never
			 * deferred) */

static char cstack[65536] __attribute__((aligned(16)));

static int clone_closes(void *a)
{
	(void)a;
	close(s[0]);
	_exit(0);
}

static int clone_writes(void *a)
{
	(void)a;
	put("C.");
	return 0;
}

static void spin(void)
{
	for (;;)
		__asm__ __volatile__("" ::: "memory");
}

static int writer(const char *c)
{
	pid_t k;
	int st;

	if (!strcmp(c, "fork_mt")) {
		pthread_t t;

		if (pthread_create(&t, NULL, thread_writes, NULL))
			return 1;
		while (!__atomic_load_n(&flag, __ATOMIC_ACQUIRE))
			;
		k = fork();
		if (k == 0) {
			put("C.");
			_exit(0);
		}
		waitpid(k, &st, 0);
		put("P.");
		exit(0);
	}
	if (!strcmp(c, "_Fork")) {
		put("P1.");
		k = _Fork();
		if (k == 0) {
			put("C.");
			_exit(0);
		}
		waitpid(k, &st, 0);
		put("P2.");
		return 0;
	}
	if (!strcmp(c, "quick_exit")) {
		put("M.");
		quick_exit(3);
	}
	if (!strcmp(c, "execveat")) {
		char *av[] = { "sh", "-c", "exit 5", NULL };

		put("A.");
		execveat(AT_FDCWD, "/bin/sh", av, environ, 0);
		return 1;
	}
	if (!strcmp(c, "sigset_old")) {
		char m[64];
		int a, b;

		signal(SIGUSR1, on_usr1);
		a = sigset(SIGUSR1, SIG_DFL) == on_usr1;
		b = sigset(SIGABRT, SIG_DFL) == SIG_DFL;
		snprintf(m, sizeof(m), "old handler %d, old default %d.", a, b);
		put(m);
		return 0;
	}
	if (!strcmp(c, "sigset_segv")) {
		sigset(SIGSEGV, SIG_DFL);
		put("before.");
		*nowhere = 1;	/* a real fault: raise() would flush */
		return 0;
	}
	if (!strcmp(c, "alarm")) {
		struct itimerval it = { { 0, 0 }, { 0, 1000 } };

		put("tick");
		setitimer(ITIMER_REAL, &it, NULL);
		spin();
	}
	if (!strcmp(c, "unblock")) {
		sigset_t t;

		sigemptyset(&t);
		sigaddset(&t, SIGTERM);
		sigprocmask(SIG_BLOCK, &t, NULL);
		put("X");
		kill(getpid(), SIGTERM);
		put("Y");
		sigprocmask(SIG_UNBLOCK, &t, NULL);
		return 1;
	}
	if (!strcmp(c, "sigqueue")) {
		union sigval v = { .sival_int = 1 };

		put("A.");
		pthread_sigqueue(pthread_self(), SIGTERM, v);
		spin();
	}
	if (!strcmp(c, "resethand")) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_usr1;
		sa.sa_flags = SA_RESETHAND;
		sigaction(SIGTERM, &sa, NULL);
		put("before.");
		kill(getpid(), SIGTERM);
		put("+after.");
		kill(getpid(), SIGTERM);
		spin();
	}
	if (!strcmp(c, "clone_vm") || !strcmp(c, "clone_fork")) {
		int vm = !strcmp(c, "clone_vm");

		put("P1.");
		k = clone(vm ? clone_closes : clone_writes,
			  cstack + sizeof(cstack),
			  (vm ? CLONE_VM | CLONE_VFORK : 0) | SIGCHLD, NULL);
		if (k < 0)
			return 1;
		waitpid(k, &st, 0);
		put("P2.");
		return 0;
	}
	if (!strcmp(c, "external")) {
		put("hello");
		if (write(ready[1], "r", 1) != 1)
			return 1;
		spin();
	}
	return 2;
}

int main(int argc, char **argv)
{
	char buf[256];
	size_t n = 0;
	ssize_t r;
	pid_t w, p;
	int st;

	alarm(10);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) < 0 || pipe(ready) < 0)
		return 1;
	p = fork();	/* the peer */
	if (p == 0) {
		close(s[0]);
		while ((r = read(s[1], buf + n, sizeof(buf) - 1 - n)) > 0)
			n += (size_t)r;
		buf[n] = 0;
		printf("peer got '%s'\n", buf);
		fflush(stdout);
		_exit(0);
	}
	close(s[1]);
	w = fork();	/* the writer */
	if (w == 0)
		_exit(writer(argc > 1 ? argv[1] : ""));
	close(s[0]);
	if (argc > 1 && !strcmp(argv[1], "external")) {
		char b;

		if (read(ready[0], &b, 1) == 1)
			kill(w, SIGTERM);
	}
	waitpid(p, NULL, 0);
	waitpid(w, &st, 0);
	if (WIFSIGNALED(st))
		printf("writer killed by %s\n", sigabbrev_np(WTERMSIG(st)));
	else
		printf("writer exit %d\n", WEXITSTATUS(st));
	return 0;
}
