/* Found by session 10's audit of threads: pthread_cancel did not act in the
 * library's blocking interposers, which make their calls as raw system
 * calls (glibc 2.34+ signals a cancelled thread only while its cancel type
 * is asynchronous, as inside glibc's own wrappers): a cancelled nanosleep,
 * sleep, usleep or waitpid ran its whole time with no cleanup, and pause,
 * sigwait, sigsuspend or the open of a FIFO never ended.
 *
 * argv[1] names the call a thread blocks in (for 10 s, or for good); main
 * cancels it after 100 ms and joins it.  Prints whether the thread was
 * cancelled, whether its cleanup handler ran, and whether the join came
 * within 2 s, which must be plain's ("canceled=1 cleanup=1 fast=1").
 * Cases: nanosleep sleep usleep clock_nanosleep pause sigsuspend sigwait
 * sigtimedwait waitpid msgrcv fifo ofd_lock poll epoll (a reply queued,
 * then the wait: uring's folded wait), and pause_parked (pause with sends
 * parked on a socket nobody reads: the library's own wait).  semop is no
 * cancellation point in glibc.  alarm(20) ends a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *which;
static volatile int cleaned;
static pid_t child = -1;
static int msq = -1, lockfd = -1, sv[2] = { -1, -1 }, epfd = -1;
static char fifo[64];

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void cleanup(void *a)
{
	(void)a;
	cleaned = 1;
}

static void die(const char *what)
{
	perror(what);
	_exit(90);
}

/* what the case needs, made before the thread starts */
static void prepare(void)
{
	if (!strcmp(which, "waitpid")) {
		child = fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			pause();
			_exit(0);
		}
	} else if (!strcmp(which, "msgrcv")) {
		if ((msq = msgget(IPC_PRIVATE, 0600)) < 0)
			die("msgget");
	} else if (!strcmp(which, "fifo")) {
		snprintf(fifo, sizeof(fifo), "/tmp/esca-cancel-%d", (int)getpid());
		if (mkfifo(fifo, 0600) < 0)
			die("mkfifo");
	} else if (!strcmp(which, "ofd_lock")) {
		char path[64];
		struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int a;

		snprintf(path, sizeof(path), "/tmp/esca-cancel-%d", (int)getpid());
		a = open(path, O_RDWR | O_CREAT, 0600);
		lockfd = open(path, O_RDWR);
		if (a < 0 || lockfd < 0 || unlink(path) < 0)
			die("open");
		if (fcntl(a, F_OFD_SETLK, &l) < 0)	/* held by another open file */
			die("F_OFD_SETLK");
	} else if (!strcmp(which, "pause_parked") || !strcmp(which, "epoll")) {
		struct epoll_event ev = { .events = EPOLLIN };

		/* the wait watches sv[1] for input, nobody writes sv[0] */
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
			die("socketpair");
		if ((epfd = epoll_create1(0)) < 0 ||
		    epoll_ctl(epfd, EPOLL_CTL_ADD, sv[1], &ev) < 0)
			die("epoll");
	}
}

static void block_in_call(void)
{
	struct timespec ten = { .tv_sec = 10 };
	sigset_t s;
	int sig;

	if (!strcmp(which, "nanosleep")) {
		nanosleep(&ten, NULL);
	} else if (!strcmp(which, "sleep")) {
		sleep(10);
	} else if (!strcmp(which, "usleep")) {
		usleep(10000000);
	} else if (!strcmp(which, "clock_nanosleep")) {
		clock_nanosleep(CLOCK_MONOTONIC, 0, &ten, NULL);
	} else if (!strcmp(which, "pause")) {
		pause();
	} else if (!strcmp(which, "sigsuspend")) {
		sigemptyset(&s);
		sigsuspend(&s);
	} else if (!strcmp(which, "sigwait")) {
		sigemptyset(&s);
		sigaddset(&s, SIGUSR2);
		pthread_sigmask(SIG_BLOCK, &s, NULL);
		sigwait(&s, &sig);
	} else if (!strcmp(which, "sigtimedwait")) {
		sigemptyset(&s);
		sigaddset(&s, SIGUSR2);
		pthread_sigmask(SIG_BLOCK, &s, NULL);
		sigtimedwait(&s, NULL, &ten);
	} else if (!strcmp(which, "waitpid")) {
		waitpid(child, NULL, 0);
	} else if (!strcmp(which, "msgrcv")) {
		struct {
			long type;
			char text[8];
		} m;

		msgrcv(msq, &m, sizeof(m.text), 0, 0);
	} else if (!strcmp(which, "fifo")) {
		open(fifo, O_RDONLY);	/* no writer: blocks */
	} else if (!strcmp(which, "ofd_lock")) {
		struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

		fcntl(lockfd, F_OFD_SETLKW, &l);
	} else if (!strcmp(which, "poll")) {
		poll(NULL, 0, 10000);
	} else if (!strcmp(which, "epoll")) {
		struct epoll_event ev;
		static char b[4096];

		/* a reply queued, then the loop's wait */
		if (write(sv[1], b, sizeof(b)) != (ssize_t)sizeof(b))
			die("write");
		epoll_wait(epfd, &ev, 1, 10000);
	} else if (!strcmp(which, "pause_parked")) {
		static char b[65536];
		int fl = fcntl(sv[1], F_GETFL);

		/* nobody reads sv[0]: the last writes stay parked */
		if (fl < 0 || fcntl(sv[1], F_SETFL, fl | O_NONBLOCK) < 0)
			die("fcntl");
		for (int i = 0; i < 64; i++)
			if (write(sv[1], b, sizeof(b)) < 0 && errno == EAGAIN)
				break;
		pause();
	} else {
		fprintf(stderr, "unknown case %s\n", which);
		_exit(2);
	}
}

static void *blocker(void *a)
{
	(void)a;
	pthread_cleanup_push(cleanup, NULL);
	block_in_call();
	pthread_cleanup_pop(0);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;
	void *res = NULL;
	struct timespec tenth = { .tv_nsec = 100000000 };
	double t0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	which = argv[1];
	alarm(20);
	signal(SIGPIPE, SIG_IGN);	/* pause_parked's bytes, at exit */
	prepare();
	if (pthread_create(&t, NULL, blocker, NULL))
		die("pthread_create");
	nanosleep(&tenth, NULL);
	t0 = now_s();
	if (pthread_cancel(t))
		die("pthread_cancel");
	if (pthread_join(t, &res))
		die("pthread_join");
	printf("%s: canceled=%d cleanup=%d fast=%d\n", which,
	       res == PTHREAD_CANCELED, cleaned, now_s() - t0 < 2.0);
	if (sv[0] >= 0)
		close(sv[0]);	/* the parked bytes' reader, gone */
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	if (msq >= 0)
		msgctl(msq, IPC_RMID, NULL);
	if (fifo[0])
		unlink(fifo);
	return 0;
}
