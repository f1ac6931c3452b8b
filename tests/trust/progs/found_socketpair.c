/* Found by session 9's audit of the reads: a process writes one end of a
 * socketpair and reads the other end without waiting (non-blocking).  Plain
 * Linux: the bytes are there, the read returns them, FIONREAD counts them.
 * Under esca the write was deferred and the read said EAGAIN (FIONREAD 0)
 * until the next wait or the timer's shot.  Each case prints one line:
 *  read      write(a, 5 bytes), then read(b) non-blocking
 *  recv      send(a), recv(b, MSG_DONTWAIT) on a blocking b
 *  peek      write(a), recv(b, MSG_PEEK | MSG_DONTWAIT), then read(b)
 *  fionread  write(a), ioctl(b, FIONREAD)
 *  dup       write(dup(a)), read(b) non-blocking
 *  reverse   write(b), read(a): the pair works both ways
 *  lever     b in an epoll set for reading (lever reads' kind of socket),
 *            read(b) finds it empty, write(a), read(b): plain, the bytes;
 *            the lever would answer EAGAIN from its note (its reasoning,
 *            "bytes that arrived since a wait will be reported", fails
 *            where the program itself sent them)
 *  full      4 MiB written to non-blocking a (what it takes: the rest is
 *            EAGAIN, under esca some are told success and parked), then
 *            b read non-blocking until it has every byte a was told:
 *            the count and a checksum, no hang (the read must not wait
 *            for a parked send that only its own reads make room for)
 * alarm(5): a hang dies of SIGALRM. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *res(long r, int e)
{
	static char b[64];

	if (r < 0)
		snprintf(b, sizeof(b), "-1 %s", strerrorname_np(e));
	else
		snprintf(b, sizeof(b), "%ld", r);
	return b;
}

static int pair(int sv[2], int nonblock_b)
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -1;
	if (nonblock_b && fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0)
		return -1;
	return 0;
}

static int full(void)
{
	static char chunk[65536];
	int sv[2];
	long told = 0, got = 0, sum_w = 0, sum_r = 0;
	char buf[65536];

	if (pair(sv, 1) < 0 || fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0)
		return 1;
	for (int i = 0; i < 64; i++) {
		ssize_t w;

		memset(chunk, 'a' + i % 26, sizeof(chunk));
		w = write(sv[0], chunk, sizeof(chunk));
		if (w < 0) {
			if (errno != EAGAIN)
				return 1;
			break;
		}
		told += w;
		sum_w += (long)w * ('a' + i % 26);
	}
	while (got < told) {
		ssize_t r = read(sv[1], buf, sizeof(buf));

		if (r < 0 && errno == EAGAIN)
			continue;	/* plain: never; the bytes are there */
		if (r <= 0)
			break;
		for (ssize_t k = 0; k < r; k++)
			sum_r += buf[k];
		got += r;
	}
	printf("full: told and got the same: %s, checksum same: %s\n",
	       got == told ? "yes" : "no", sum_r == sum_w ? "yes" : "no");
	return 0;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	char buf[64] = "";
	int sv[2], w = 0, e;
	long r;

	alarm(5);
	setvbuf(stdout, NULL, _IONBF, 0);
	if (!strcmp(c, "full"))
		return full();
	if (pair(sv, strcmp(c, "recv") != 0) < 0)
		return 1;
	if (!strcmp(c, "reverse")) {
		if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0)
			return 1;
		w = (int)write(sv[1], "hello", 5);
		r = read(sv[0], buf, sizeof(buf) - 1);
	} else if (!strcmp(c, "dup")) {
		int d = dup(sv[0]);

		w = (int)write(d, "hello", 5);
		r = read(sv[1], buf, sizeof(buf) - 1);
	} else if (!strcmp(c, "recv")) {
		w = (int)send(sv[0], "hello", 5, 0);
		r = recv(sv[1], buf, sizeof(buf) - 1, MSG_DONTWAIT);
	} else if (!strcmp(c, "fionread")) {
		int n = -1;

		w = (int)write(sv[0], "hello", 5);
		r = ioctl(sv[1], FIONREAD, &n);
		e = errno;
		printf("fionread: write %d, ioctl %s, count %d\n", w, res(r, e), n);
		return 0;
	} else if (!strcmp(c, "peek")) {
		long r2;

		w = (int)write(sv[0], "hello", 5);
		r = recv(sv[1], buf, sizeof(buf) - 1, MSG_PEEK | MSG_DONTWAIT);
		e = errno;
		printf("peek: write %d, peek %s '%s', ", w, res(r, e), r > 0 ? buf : "");
		memset(buf, 0, sizeof(buf));
		r2 = read(sv[1], buf, sizeof(buf) - 1);
		printf("read %s '%s'\n", res(r2, errno), r2 > 0 ? buf : "");
		return 0;
	} else if (!strcmp(c, "lever")) {
		struct epoll_event ev = { .events = EPOLLIN };
		int ep = epoll_create1(0);
		long r0;

		ev.data.fd = sv[1];
		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev) < 0)
			return 1;
		r0 = read(sv[1], buf, sizeof(buf) - 1);
		printf("lever: empty first: %s, ", res(r0, errno));
		w = (int)write(sv[0], "hello", 5);
		r = read(sv[1], buf, sizeof(buf) - 1);
	} else if (!strcmp(c, "read")) {
		w = (int)write(sv[0], "hello", 5);
		r = read(sv[1], buf, sizeof(buf) - 1);
	} else {
		return 2;
	}
	e = errno;
	printf("%s: write %d, read %s '%s'\n", c, w, res(r, e), r > 0 ? buf : "");
	return 0;
}
