/* Found by an audit of the fd-lifetime interposers (session 9), not one of
 * issue 12's defects.  argv[1]:
 *  closed   a connected socket written once, then closed (the close is
 *           deferred), then every call below on the closed number; then
 *           what the peer sees.  Plain: EBADF each, the peer gets "a" and
 *           EOF.  The library had answered dup, dup2, dup3, fcntl, fstat
 *           (a new fd: the peer never got its EOF) from the old file.
 *  parked   the same on a non-blocking socket whose peer does not read:
 *           writes until EAGAIN (the last ones parked under the library),
 *           close, then the calls.  Plain: EBADF each, at once.  The
 *           library hung in each until the alarm (its sync waited for the
 *           close's parked send).
 *  dupkey   b = dup(a), a dup2 onto b that fails (EBADF), then writes
 *           through a, b, a to a slow reader.  Plain: in program order.
 *           The library had wiped b's open-file key before the failing
 *           call: b's byte overtook a's.
 *  misdirect  thread T writes to a non-blocking socket whose peer reads
 *           later, closes it (deferred, parked behind the send), stays
 *           alive; main dup2()s another connection onto the number.  Plain:
 *           the dup2 succeeds at once and T's peer gets what T was told,
 *           then EOF; the other connection none of T's bytes.  The library
 *           had waited 2 s and gone ahead: 225,280 of T's bytes and T's
 *           close went to the other connection.  Now it answers EBUSY.
 *  nonblock_dup  b = dup(a) used once (known blocking), then O_NONBLOCK
 *           set through a (F_SETFL, or FIONBIO with argv[2] "ioctl"), then
 *           writes through b to a peer that reads only at the end.  Plain:
 *           EAGAIN once full, the peer gets what was accepted.  The library
 *           had kept b blocking: a write hung until the alarm.
 *  scm      the parent writes "X" to a socket (deferred), then passes the
 *           socket to its child (SCM_RIGHTS), which writes "Y" to it.
 *           Plain: the peer reads "XY".  The library had run only the
 *           carrier's entries first: "YX".
 *  sendfile_truncate HOW  sendfile of a 4 KiB file to a socket, then the
 *           file truncated to 0 by path (HOW: truncate, or an open with
 *           O_TRUNC), then writes.  Plain: the peer gets the 4 KiB, then
 *           the writes (the kernel holds the pages).  The library had run
 *           the sendfile after the truncation: 0 bytes of the file, the
 *           writes early, and a later write said EPIPE.
 * Each call's line says SLOW past 5 ms.  alarm(6): a hang dies of SIGALRM. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

#define R(name, expr)							\
	do {								\
		double t0_ = now_ms();					\
		long r_;						\
									\
		errno = 0;						\
		r_ = (long)(expr);					\
		printf("%s = %s%s\n", name,				\
		       r_ < 0 ? strerrorname_np(errno) : "ok",		\
		       now_ms() - t0_ > 5 ? " SLOW" : "");		\
	} while (0)

static void calls(int fd)
{
	struct stat st;
	socklen_t l = sizeof(int);
	int v;
	char c;

	R("dup", dup(fd));
	R("dup2 from", dup2(fd, 50));
	R("dup3 from", dup3(fd, 51, O_CLOEXEC));
	R("fcntl F_DUPFD", fcntl(fd, F_DUPFD, 52));
	R("fcntl F_GETFL", fcntl(fd, F_GETFL));
	R("fstat", fstat(fd, &st));
	R("getsockopt", getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &l));
	R("ioctl FIONREAD", ioctl(fd, FIONREAD, &v));
	R("lseek", lseek(fd, 0, SEEK_CUR));
	R("write", write(fd, "b", 1));
	R("recv", recv(fd, &c, 1, MSG_DONTWAIT));
	R("shutdown", shutdown(fd, SHUT_WR));
	R("close", close(fd));
}

/* the peer: what it reads (up to 64 bytes), then EOF within 500 ms? */
static void peer(int fd)
{
	char buf[64];
	size_t n = 0;
	int eof = 0;

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t k;

		if (poll(&p, 1, 500) != 1)
			break;
		k = recv(fd, buf + n, sizeof(buf) - 1 - n, MSG_DONTWAIT);
		if (k <= 0) {
			eof = k == 0;
			break;
		}
		n += (size_t)k;
	}
	buf[n] = 0;
	printf("peer got '%s', %s\n", buf, eof ? "EOF" : "no EOF");
}

static int sv[2], o[2];

static int closed(void)
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || write(sv[0], "a", 1) != 1)
		return 1;
	R("close", close(sv[0]));	/* deferred under the library */
	calls(sv[0]);
	peer(sv[1]);
	return 0;
}

static int parked(void)
{
	char buf[4096];
	int i;

	memset(buf, 'x', sizeof(buf));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
		return 1;
	for (i = 0; i < 400 && write(sv[0], buf, sizeof(buf)) > 0; i++)
		;
	printf("writes until %s\n", i < 400 ? "EAGAIN" : "none failed");
	R("close", close(sv[0]));	/* deferred behind the parked bytes */
	calls(sv[0]);
	return 0;
}

#define BIG (256 * 1024)

static void *slow_reader(void *x)
{
	static char buf[3 * BIG];
	long got = 0, b_at = -1;
	ssize_t k;
	int bad = 0;

	(void)x;
	usleep(50000);
	while ((k = read(sv[1], buf + got, 4096)) > 0) {
		got += k;
		usleep(50);
	}
	for (long i = 0; i < got; i++) {
		if (buf[i] == 'B')
			b_at = i;
		if ((buf[i] == 'C' && b_at < 0) || (buf[i] == 'A' && b_at >= 0))
			bad = 1;
	}
	printf("peer got %ld bytes, B at %ld, order %s\n", got, b_at,
	       bad ? "BROKEN" : "kept");
	return NULL;
}

static int dupkey(void)
{
	static char a_[BIG], c_[BIG];
	pthread_t t;
	int a, b;

	memset(a_, 'A', BIG);
	memset(c_, 'C', BIG);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 1;
	a = sv[0];
	b = dup(a);
	R("dup2 onto b, failing", dup2(900, b));
	pthread_create(&t, NULL, slow_reader, NULL);
	if (write(a, a_, BIG) != BIG || write(b, "B", 1) != 1 ||
	    write(a, c_, BIG) != BIG)
		return 1;
	close(b);
	close(a);
	pthread_join(t, NULL);
	return 0;
}

static int stage;
static long told;

static void *closer(void *x)
{
	char buf[4096];
	struct pollfd none = { -1, 0, 0 };
	ssize_t n;

	(void)x;
	memset(buf, 'T', sizeof(buf));
	for (int i = 0; i < 100 && (n = write(sv[0], buf, sizeof(buf))) > 0; i++)
		told += n;
	poll(&none, 1, 10);	/* a wait: its flush parks the rest */
	close(sv[0]);
	poll(&none, 1, 10);
	__atomic_store_n(&stage, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&stage, __ATOMIC_SEQ_CST) != 2)
		poll(&none, 1, 10);
	return NULL;
}

static long count_t(int fd, int ms, int *eof)
{
	char buf[65536];
	long got = 0;

	*eof = 0;
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t k;

		if (poll(&p, 1, ms) <= 0)
			break;
		k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (k <= 0) {
			*eof = k == 0;
			break;
		}
		for (ssize_t j = 0; j < k; j++)
			got += buf[j] == 'T';
	}
	return got;
}

static int misdirect(void)
{
	pthread_t t;
	long got, stray;
	int num, r, e, eof1, eof2;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, o))
		return 1;
	num = sv[0];
	pthread_create(&t, NULL, closer, NULL);
	while (!__atomic_load_n(&stage, __ATOMIC_SEQ_CST))
		usleep(1000);
	r = dup2(o[0], num);
	e = errno;
	printf("dup2 onto the closed number: %s\n",
	       r == num ? "ok" : r < 0 && e == EBUSY ? "EBUSY" : "other");
	got = count_t(sv[1], 1000, &eof1);
	stray = count_t(o[1], 300, &eof2);
	printf("T's peer got what T was told: %s%s\n", got == told ? "yes" : "no",
	       eof1 ? ", then EOF" : "");
	printf("T's bytes on the other connection: %ld\n", stray);
	fflush(stdout);
	fprintf(stderr, "told %ld got %ld\n", told, got);
	__atomic_store_n(&stage, 2, __ATOMIC_SEQ_CST);
	_exit(0);
}

static int nonblock_dup(int ioctl_way)
{
	char buf[4096], c;
	long told = 0, got = 0;
	ssize_t n = 0;
	int b, on = 1, i;

	memset(buf, 'x', sizeof(buf));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || (b = dup(sv[0])) < 0)
		return 1;
	if (write(b, "x", 1) != 1 || read(sv[1], &c, 1) != 1)
		return 1;	/* b in use, blocking */
	if (ioctl_way ? ioctl(sv[0], FIONBIO, &on) :
			fcntl(sv[0], F_SETFL, O_NONBLOCK))
		return 1;
	for (i = 0; i < 4000 && (n = write(b, buf, sizeof(buf))) > 0; i++)
		told += n;
	printf("writes through the dup until %s\n",
	       n < 0 && errno == EAGAIN ? "EAGAIN" : "none failed");
	if (fcntl(sv[1], F_SETFL, O_NONBLOCK))
		return 1;
	for (;;) {
		struct pollfd p = { sv[1], POLLIN, 0 };

		if (poll(&p, 1, 300) != 1 || (n = read(sv[1], buf, sizeof(buf))) <= 0)
			break;
		got += n;
	}
	printf("the peer got what was accepted: %s\n", got == told ? "yes" : "no");
	return 0;
}

static int scm(void)
{
	char b = 'f', cb[CMSG_SPACE(sizeof(int))], out[8] = { 0 }, k;
	struct iovec v = { &b, 1 };
	struct msghdr m = { 0 };
	struct cmsghdr *h;
	int c[2], n = 0;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, c) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 1;
	pid = fork();
	if (pid == 0) {		/* the child: the socket passed, then "Y" */
		int fd;

		m.msg_iov = &v;
		m.msg_iovlen = 1;
		m.msg_control = cb;
		m.msg_controllen = sizeof(cb);
		if (recvmsg(c[1], &m, 0) != 1 || !CMSG_FIRSTHDR(&m))
			_exit(3);
		memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(fd));
		if (write(fd, "Y", 1) != 1 || write(c[1], "k", 1) != 1)
			_exit(4);
		_exit(0);
	}
	if (write(sv[0], "X", 1) != 1)	/* deferred under the library */
		return 1;
	m.msg_iov = &v;
	m.msg_iovlen = 1;
	m.msg_control = cb;
	m.msg_controllen = sizeof(cb);
	h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &sv[0], sizeof(int));
	if (sendmsg(c[0], &m, 0) != 1)
		return 1;
	for (double t0 = now_ms(); now_ms() - t0 < 30;)
		;	/* no call: the child writes meanwhile */
	if (read(c[0], &k, 1) != 1)
		return 1;
	for (;;) {
		struct pollfd p = { sv[1], POLLIN, 0 };
		ssize_t q;

		if (n >= 2 || poll(&p, 1, 500) != 1 ||
		    (q = read(sv[1], out + n, sizeof(out) - 1 - (size_t)n)) <= 0)
			break;
		n += (int)q;
	}
	printf("the peer read \"%s\"\n", out);
	waitpid(pid, NULL, 0);
	return 0;
}

static int sendfile_truncate(const char *how, const char *dir)
{
	char path[4096], buf[4096];
	long total = 0, file_bytes = 0;
	off_t off = 0;
	ssize_t r, n;
	int f;

	snprintf(path, sizeof(path), "%s/sf.bin", dir);
	memset(buf, 'A', sizeof(buf));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) ||
	    (f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)) < 0 ||
	    write(f, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		return 1;
	{
		struct stat st;	/* as a server does: the size to send */

		if (fstat(f, &st))
			return 1;
	}
	r = sendfile(sv[0], f, &off, sizeof(buf));
	printf("sendfile = %zd\n", r);
	if (!strcmp(how, "truncate")) {
		if (truncate(path, 0))
			return 1;
	} else {
		int g = open(path, O_WRONLY | O_TRUNC);

		if (g < 0)
			return 1;
		close(g);
	}
	R("write", write(sv[0], "hello", 5));
	R("write", write(sv[0], "world", 5));
	for (;;) {
		struct pollfd p = { sv[1], POLLIN, 0 };

		if (poll(&p, 1, 300) != 1 || (n = read(sv[1], buf, sizeof(buf))) <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			file_bytes += buf[i] == 'A';
		total += n;
	}
	printf("the peer got %ld bytes, %ld of the file's\n", total, file_bytes);
	return 0;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";

	alarm(6);
	setvbuf(stdout, NULL, _IONBF, 0);
	if (!strcmp(c, "closed"))
		return closed();
	if (!strcmp(c, "parked"))
		return parked();
	if (!strcmp(c, "dupkey"))
		return dupkey();
	if (!strcmp(c, "misdirect"))
		return misdirect();
	if (!strcmp(c, "scm"))
		return scm();
	if (!strcmp(c, "sendfile_truncate") && argc > 3)
		return sendfile_truncate(argv[2], argv[3]);
	if (!strcmp(c, "nonblock_dup"))
		return nonblock_dup(argc > 2 && !strcmp(argv[2], "ioctl"));
	return 2;
}
