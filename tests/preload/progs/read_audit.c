/* Found by an audit of the read interposers (session 9): lever "reads"
 * answers a read EAGAIN without the kernel when the thread's last read of
 * that socket found it empty and "it has not waited since".  argv[1]:
 *  threads  the main thread's read finds a TCP socket empty; a dispatcher
 *           thread sends to it and waits on it (edge-triggered epoll), and
 *           hands it over through a condition variable; main reads again.
 *           Linux: 5 bytes.  Had: EAGAIN (the note was the main thread's,
 *           the wait another's), the edge spent, and the dispatcher saw no
 *           event for good.
 *  pipe     the read finds the socket empty; a child sends 5 bytes, then
 *           writes a pipe; the program's blocking read of the pipe
 *           returns, then it reads the socket.  Linux: 5.  Had: EAGAIN.
 * alarm(5) kills a hang. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int c, s, ep, go;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* a loopback TCP connection: c the client end, s the accepted,
 * non-blocking end */
static int tcp_pair(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (void *)&a, al) || listen(l, 4) ||
	    getsockname(l, (void *)&a, &al))
		return -1;
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (void *)&a, al))
		return -1;
	s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
	close(l);
	return s < 0 ? -1 : 0;
}

static const char *first_read(void)
{
	char b[64];
	ssize_t n = read(s, b, sizeof(b));

	return n < 0 && errno == EAGAIN ? "EAGAIN" : "something";
}

static void *dispatcher(void *x)
{
	struct epoll_event e;

	(void)x;
	usleep(20000);
	if (write(c, "hello", 5) != 5)
		exit(1);
	for (;;) {
		if (epoll_wait(ep, &e, 1, 1000) <= 0) {
			printf("the dispatcher saw no event in 1 s\n");
			exit(0);
		}
		pthread_mutex_lock(&mu);
		go = 1;
		pthread_cond_signal(&cv);
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

static int threads(void)
{
	struct epoll_event e = { .events = EPOLLIN | EPOLLET };
	pthread_t t;
	char b[64];
	int got = 0;
	ssize_t n;

	ep = epoll_create1(0);
	e.data.fd = s;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, s, &e))
		return 1;
	printf("first read: %s\n", first_read());
	pthread_create(&t, NULL, dispatcher, NULL);
	pthread_mutex_lock(&mu);
	while (!go)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	while ((n = read(s, b, sizeof(b))) > 0)
		got += (int)n;
	printf("after the hand-over: %d bytes\n", got);
	return 0;
}

static int pipe_case(void)
{
	char b[64];
	int pp[2];
	ssize_t n;
	pid_t k;

	struct epoll_event e = { .events = EPOLLIN | EPOLLET };

	ep = epoll_create1(0);
	e.data.fd = s;
	if (pipe(pp) || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, s, &e))
		return 1;	/* in an epoll set: the lever's case */
	printf("first read: %s\n", first_read());
	k = fork();
	if (k == 0) {
		usleep(30000);
		if (write(c, "hello", 5) != 5)
			_exit(1);
		usleep(20000);
		if (write(pp[1], "k", 1) != 1)
			_exit(1);
		_exit(0);
	}
	if (read(pp[0], b, 1) != 1)	/* blocks until the child sent */
		return 1;
	n = read(s, b, sizeof(b));
	printf("after the pipe: %s\n", n == 5 ? "5 bytes" : n < 0 ? strerrorname_np(errno) : "other");
	waitpid(k, NULL, 0);
	return 0;
}

int main(int argc, char **argv)
{
	const char *c_ = argc > 1 ? argv[1] : "";

	alarm(5);
	setvbuf(stdout, NULL, _IONBF, 0);
	if (tcp_pair())
		return 1;
	if (!strcmp(c_, "threads"))
		return threads();
	if (!strcmp(c_, "pipe"))
		return pipe_case();
	return 2;
}
