/* prefetch_srv.c - an epoll echo server for the lever prefetch
 * (test_prefetch.py): it prints its port, serves until `nclients`
 * connections have ended, then prints one line per client kind.
 *
 * A client's first byte says what the server does with it:
 *   E  echo what it reads, one read a wait of 100 + (k * 37) % 700 bytes
 *      (partial reads), level-triggered
 *   B  echo, 64 KiB reads (bigger than a peek slot), edge-triggered: reads
 *      until EAGAIN
 *   P  before each read, recv(MSG_PEEK) a few bytes: the read must begin
 *      with them
 *   F  ioctl(FIONREAD) before each read: a read of at least that much must
 *      return at least that much
 *   N  never read until every other client has ended (its peeks are
 *      wasted), then read to EOF and echo
 *   R  echo; the client resets the connection (SO_LINGER 0): EOF or
 *      ECONNRESET both end it
 *   D  echo as E; every other read is followed at once by one through a
 *      dup of the socket (made at the first such read)
 *   T  echo as E; every other read is followed at once by one a second
 *      thread makes (handed the socket and waited for)
 *   K  echo as E; every fourth read is followed at once by one a child
 *      process makes (fork; the server waits for it and echoes its bytes)
 * The server sleeps 2 ms before each wait, so a wait reports several
 * readable sockets.  Summary: "KIND conns bytes errors" with errors the
 * count of broken checks (must be 0) and, for R, bytes not printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

#define MAXC 256

struct conn {
	int fd, kind, bufsz, done, dupfd, nread;
	long bytes;
};

static struct conn conns[MAXC];
static long kbytes[128], kconns[128], kerrs[128];
static int ep;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EAGAIN) {
			struct timespec t = { 0, 200000 };

			nanosleep(&t, NULL);
			continue;
		}
		if (w < 0) {
			if (errno == EPIPE || errno == ECONNRESET)
				return;
			die("write");
		}
		p += w;
		n -= (size_t)w;
	}
}

static void finish(struct conn *c)
{
	if (epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL) < 0)
		die("epoll_ctl del");
	if (close(c->fd) < 0 || (c->dupfd >= 0 && close(c->dupfd) < 0))
		die("close");
	kconns[c->kind]++;
	kbytes[c->kind] += c->bytes;
	c->done = 1;
}

/* T: the second thread's read, handed over and waited for */
static sem_t go, done;
static int t_fd, t_err;
static char *t_buf;
static size_t t_n;
static ssize_t t_r;

static void *reader(void *arg)
{
	(void)arg;
	for (;;) {
		while (sem_wait(&go) < 0)
			;
		t_r = read(t_fd, t_buf, t_n);
		t_err = errno;
		if (sem_post(&done) < 0)
			die("sem_post");
	}
	return NULL;
}

/* K: what the child read, in memory the server shares with it */
struct kshare {
	ssize_t r;
	int err;
	char buf[65536];
};
static struct kshare *ks;

/* A read of c through its kind's other way (D: the dup, T: the second
 * thread, K: a child process) */
static ssize_t read_other(struct conn *c, char *buf, size_t n)
{
	if (c->kind == 'D') {
		if (c->dupfd < 0 && (c->dupfd = dup(c->fd)) < 0)
			die("dup");
		return read(c->dupfd, buf, n);
	}
	if (c->kind == 'T') {
		t_fd = c->fd;
		t_buf = buf;
		t_n = n;
		if (sem_post(&go) < 0)
			die("sem_post");
		while (sem_wait(&done) < 0)
			;
		errno = t_err;
		return t_r;
	}
	{
		int st;
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (pid == 0) {
			ks->r = read(c->fd, ks->buf, n);
			ks->err = errno;
			_exit(0);
		}
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
		    WEXITSTATUS(st))
			die("waitpid");
		if (ks->r > 0)
			memcpy(buf, ks->buf, (size_t)ks->r);
		errno = ks->err;
		return ks->r;
	}
}

/* c's next read; for D, T and K, now and then a second read right after
 * the first (which the lever may have answered from its peek) the other
 * way, in the same wait round: it must get the bytes that follow */
static ssize_t read_via(struct conn *c, char *buf, size_t n)
{
	ssize_t r = read(c->fd, buf, n), r2;
	int other = c->kind == 'D' || c->kind == 'T' || c->kind == 'K';

	if (r <= 0 || !other || c->nread++ % (c->kind == 'K' ? 4 : 2))
		return r;
	r2 = read_other(c, buf + r, n);	/* n <= 800: buf has room */
	if (r2 < 0 && errno != EAGAIN)
		die("read, the other way");
	return r2 > 0 ? r + r2 : r;
}

/* One read of c (after its checks); 1 while it may go on. */
static int serve_one(struct conn *c, int k)
{
	static char buf[65536];
	ssize_t r;
	int avail = -1;
	char pk[8];
	ssize_t np = -1;

	if (c->kind == 'P') {
		np = recv(c->fd, pk, sizeof(pk), MSG_PEEK);
		if (np < 0 && errno != EAGAIN && errno != ECONNRESET)
			die("recv peek");
	}
	if (c->kind == 'F' && ioctl(c->fd, FIONREAD, &avail) < 0)
		die("FIONREAD");
	r = read_via(c, buf, (size_t)c->bufsz);
	if (r < 0 && errno == EAGAIN)
		return 0;
	if (r < 0 && errno == ECONNRESET) {
		if (c->kind != 'R')
			kerrs[c->kind]++;
		finish(c);
		return 0;
	}
	if (r < 0)
		die("read");
	if (np > 0 && r > 0 &&
	    memcmp(buf, pk, (size_t)(r < np ? r : np)))
		kerrs['P']++;	/* the peek saw other bytes than the read */
	if (avail > 0 && r < (avail < c->bufsz ? avail : c->bufsz))
		kerrs['F']++;	/* FIONREAD counted bytes the read lacked */
	if (r == 0) {
		finish(c);
		return 0;
	}
	if (c->bytes == 0 && !c->kind) {
		c->kind = buf[0];
		c->bufsz = c->kind == 'B' || c->kind == 'N' ? (int)sizeof(buf) :
			   100 + (k * 37) % 700;
		if (c->kind == 'B' || c->kind == 'N') {
			struct epoll_event ev = { .events = EPOLLIN | EPOLLET,
						  .data.ptr = c };

			if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
				die("epoll_ctl mod");
		}
	}
	c->bytes += r;
	send_all(c->fd, buf, (size_t)r);
	return c->kind == 'B' || (c->kind == 'N' && c->bytes > 1);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	struct epoll_event evs[64], ev = { .events = EPOLLIN };
	int lfd, nclients, ended = 0, nconns = 0, kinds_done = 0;

	if (argc < 2)
		return 2;
	nclients = atoi(argv[1]);
	signal(SIGPIPE, SIG_IGN);
	{
		pthread_t th;

		ks = mmap(NULL, sizeof(*ks), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (ks == MAP_FAILED || sem_init(&go, 0, 0) < 0 ||
		    sem_init(&done, 0, 0) < 0 ||
		    pthread_create(&th, NULL, reader, NULL))
			die("setup");
	}
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(lfd, 512) < 0 || getsockname(lfd, (struct sockaddr *)&a, &al))
		die("listen");
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);
	ep = epoll_create1(0);
	ev.data.ptr = NULL;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll");
	while (ended < nclients) {
		struct timespec t = { 0, 2000000 };
		int n;

		nanosleep(&t, NULL);
		n = epoll_wait(ep, evs, 64, 1000);
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (!c) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

				if (fd < 0 && errno == EAGAIN)
					continue;
				if (fd < 0 || nconns == MAXC)
					die("accept");
				c = &conns[nconns];
				c->fd = fd;
				c->dupfd = -1;
				c->bufsz = 1;	/* the kind byte alone */
				ev.events = EPOLLIN;
				ev.data.ptr = c;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
					die("epoll_ctl add");
				nconns++;
				continue;
			}
			if (c->done || (c->kind == 'N' && ended < kinds_done))
				continue;
			while (!c->done && serve_one(c, (int)(c - conns)))
				;
			if (c->done)
				ended++;
		}
		/* the N clients are served once all the others have ended */
		kinds_done = nclients;
		for (int i = 0; i < nconns; i++)
			if (conns[i].kind == 'N' && !conns[i].done)
				kinds_done--;
		if (ended == kinds_done) {
			for (int i = 0; i < nconns; i++) {
				struct conn *c = &conns[i];

				if (c->kind != 'N' || c->done)
					continue;
				while (!c->done) {
					if (!serve_one(c, i) && !c->done) {
						struct timespec z = { 0, 1000000 };

						nanosleep(&z, NULL);
					}
				}
				ended++;
			}
		}
	}
	for (const char *k = "EBPFNRDTK"; *k; k++)
		printf("%c %ld %ld %ld\n", *k, kconns[(int)*k],
		       *k == 'R' ? 0 : kbytes[(int)*k], kerrs[(int)*k]);
	return 0;
}
