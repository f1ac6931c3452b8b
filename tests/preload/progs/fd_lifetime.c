/* fd_lifetime.c - what a program sees of fd numbers, plainly and under
 * libesca.so (tests/preload/test_fd_lifetime.py; DESIGN.md, "Contract: fd
 * lifetime").  One case per run: fd_lifetime CASE; it prints what a peer,
 * a file or the program saw, and exits 0 unless a call failed where it must
 * not.
 *
 *   threads      a worker writes a reply, the I/O thread closes the
 *                connection and accepts a new one: the reply goes to the
 *                first client, the second one gets nothing (issue 12, #1)
 *   range        a deferred close, then close_range over its number, then a
 *                pipe: the pipe works (#2)
 *   loop|closerange|closefrom
 *                the daemon idiom closes every number from 3 up after the
 *                library made its ring; then a connection's close still
 *                reaches the peer as EOF (#2)
 *   lock         open; close; open; F_SETLK: a child process sees the file
 *                locked (#9)
 *   rebind       close a listening socket and bind its port again (#9)
 *   vfork        a vfork child's store into the parent's memory is seen
 *                (#11)
 *   fork         a fork child closes every number from 3 up, then its
 *                connection's close reaches the peer (#11)
 *   dup2all      dup2 onto every number from 3 to 1023: how many fail with
 *                EBUSY (the library's own fds: a limit, README "Limits")
 *
 * Each case first sends a byte over a socketpair and waits (poll), so the
 * library has a table and deferred a write (the test reads its stats). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(x)							\
	do {								\
		if (!(x)) {						\
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__,	\
				__LINE__, #x, strerror(errno));		\
			exit(2);					\
		}							\
	} while (0)

static void warm_up(void)
{
	int sv[2];
	char c;
	struct pollfd p;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(write(sv[0], "w", 1) == 1);	/* deferred */
	p.fd = sv[1];
	p.events = POLLIN;
	CHECK(poll(&p, 1, 5000) == 1);		/* the flush */
	CHECK(read(sv[1], &c, 1) == 1 && c == 'w');
	CHECK(close(sv[0]) == 0 && close(sv[1]) == 0);
}

/* What the peer fd gets within ms: its bytes, then "EOF" or "open". */
static void drain(const char *who, int fd, int ms)
{
	char buf[256];
	size_t n = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	for (;;) {
		ssize_t r;

		if (poll(&p, 1, ms) != 1) {
			printf("%s=[%.*s] open\n", who, (int)n, buf);
			return;
		}
		r = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (r <= 0) {
			printf("%s=[%.*s] %s\n", who, (int)n, buf,
			       r == 0 ? "EOF" : strerror(errno));
			return;
		}
		n += (size_t)r;
	}
}

static int listener(struct sockaddr_in *sa)
{
	socklen_t l = sizeof(*sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	CHECK(fd >= 0);
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(fd, (struct sockaddr *)sa, sizeof(*sa)) == 0);
	CHECK(listen(fd, 8) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)sa, &l) == 0);
	return fd;
}

static int dial(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	CHECK(fd >= 0);
	CHECK(connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0);
	return fd;
}

/* ---- threads ------------------------------------------------------------ */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stage, conn_fd;

static void set_stage(int s)
{
	pthread_mutex_lock(&mu);
	stage = s;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void await_stage(int s)
{
	pthread_mutex_lock(&mu);
	while (stage < s)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

static void *worker(void *arg)
{
	(void)arg;
	await_stage(1);
	CHECK(write(conn_fd, "reply-for-A", 11) == 11);	/* deferred */
	set_stage(2);		/* "the reply is written": the I/O thread closes */
	await_stage(3);		/* blocked where no interposer sees it */
	return NULL;
}

static void case_threads(void)
{
	struct sockaddr_in sa;
	struct pollfd p;
	pthread_t th;
	int lfd = listener(&sa), a, b, c2;

	CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
	a = dial(&sa);
	conn_fd = accept(lfd, NULL, NULL);
	CHECK(conn_fd >= 0);
	set_stage(1);
	await_stage(2);
	CHECK(close(conn_fd) == 0);
	b = dial(&sa);
	p.fd = lfd;
	p.events = POLLIN;
	CHECK(poll(&p, 1, 5000) == 1);		/* an event-loop boundary */
	c2 = accept(lfd, NULL, NULL);		/* may get conn_fd's number */
	CHECK(c2 >= 0);
	drain("B", b, 300);			/* nothing of A's */
	set_stage(3);
	CHECK(pthread_join(th, NULL) == 0);
	drain("A", a, 3000);
	CHECK(close(c2) == 0);
	drain("B", b, 3000);
}

/* ---- range -------------------------------------------------------------- */
static void case_range(void)
{
	int sv[2], p[2];
	char buf[8] = { 0 };

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(write(sv[0], "x", 1) == 1);
	CHECK(close(sv[0]) == 0);		/* deferred */
	CHECK(close_range((unsigned)sv[0], (unsigned)sv[0], 0) == 0);
	CHECK(pipe(p) == 0);			/* may get sv[0]'s number */
	CHECK(write(p[1], "ok", 2) == 2);
	CHECK(close(p[1]) == 0);
	printf("pipe read %zd [%s]\n", read(p[0], buf, sizeof(buf) - 1), buf);
	CHECK(close(p[0]) == 0);
	drain("peer", sv[1], 3000);
}

/* ---- the daemon idiom --------------------------------------------------- */
static void close_all(const char *how)
{
	if (!strcmp(how, "loop")) {
		for (int fd = 3; fd < 65536; fd++)
			close(fd);
	} else if (!strcmp(how, "closerange")) {
		CHECK(close_range(3, ~0U, 0) == 0);
	} else {
		closefrom(3);
	}
}

static void after_idiom(void)
{
	int sv[2];

	/* the numbers the library's ring and eventfd had, if it had low ones */
	for (int i = 0; i < 4; i++) {
		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
		CHECK(write(sv[0], "y", 1) == 1);
		CHECK(close(sv[0]) == 0);
		drain("peer", sv[1], 3000);
		CHECK(close(sv[1]) == 0);
	}
}

/* ---- lock --------------------------------------------------------------- */
static void case_lock(const char *path)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd, sv[2];
	pid_t pid;
	int st;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0);
	CHECK(close(fd) == 0);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_SETLK, &fl) == 0);
	CHECK(write(sv[0], "l", 1) == 1);	/* something deferred */
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int cfd = open(path, O_RDWR);
		struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

		CHECK(cfd >= 0);
		CHECK(fcntl(cfd, F_GETLK, &q) == 0);
		printf("child sees the file %s\n",
		       q.l_type == F_UNLCK ? "unlocked" : "locked");
		fflush(stdout);
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st));
	CHECK(close(fd) == 0);
	drain("peer", sv[1], 200);
}

/* ---- rebind ------------------------------------------------------------- */
static void case_rebind(void)
{
	struct sockaddr_in sa;
	int one = 1, fd = listener(&sa), sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(write(sv[0], "r", 1) == 1);	/* something deferred */
	CHECK(setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) == 0);
	CHECK(close(fd) == 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	printf("listener: bind again %s\n",
	       bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? "ok" :
	       strerror(errno));
	/* a socket bound, never listening nor connected: the same */
	CHECK(close(fd) == 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(close(fd) == 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	printf("bound: bind again %s\n",
	       bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? "ok" :
	       strerror(errno));
	CHECK(close(fd) == 0);
	drain("peer", sv[1], 200);
}

/* ---- vfork, fork -------------------------------------------------------- */
static volatile int shared_word;

static void case_vfork(void)
{
	int sv[2], st;
	pid_t pid;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(write(sv[0], "v", 1) == 1);	/* deferred, then flushed */
	pid = vfork();
	CHECK(pid >= 0);
	if (pid == 0) {
		shared_word = 42;	/* vfork allows it; fork would hide it */
		close(sv[0]);		/* the child's own copy */
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st));
	printf("parent sees %d\n", shared_word);
	CHECK(write(sv[0], "w", 1) == 1);	/* its fd is still open */
	CHECK(close(sv[0]) == 0);
	drain("peer", sv[1], 3000);
}

static void case_fork(void)
{
	int sv[2], st;
	pid_t pid;

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(write(sv[0], "f", 1) == 1);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close_all("loop");
		after_idiom();
		fflush(stdout);
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	      WEXITSTATUS(st) == 0);
	CHECK(close(sv[0]) == 0);
	drain("parent's peer", sv[1], 3000);
}

static void case_dup2all(void)
{
	int busy = 0, sv[2];

	for (int fd = 3; fd < 1024; fd++) {
		if (dup2(0, fd) < 0) {
			CHECK(errno == EBUSY);
			busy++;
		}
	}
	printf("ebusy %d\n", busy);
	close_all("closerange");
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK(write(sv[0], "d", 1) == 1);
	CHECK(close(sv[0]) == 0);
	drain("peer", sv[1], 3000);
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IONBF, 0);
	warm_up();
	if (!strcmp(c, "threads"))
		case_threads();
	else if (!strcmp(c, "range"))
		case_range();
	else if (!strcmp(c, "loop") || !strcmp(c, "closerange") ||
		 !strcmp(c, "closefrom")) {
		close_all(c);
		after_idiom();
	} else if (!strcmp(c, "lock") && argc > 2)
		case_lock(argv[2]);
	else if (!strcmp(c, "rebind"))
		case_rebind();
	else if (!strcmp(c, "vfork"))
		case_vfork();
	else if (!strcmp(c, "fork"))
		case_fork();
	else if (!strcmp(c, "dup2all"))
		case_dup2all();
	else
		return 64;
	return 0;
}
