/* SPDX-License-Identifier: MIT
 * test_exec_park.c - the core's lkm executor parks (DESIGN.md, "Contract: parked sends"): a reaping flush returns at once with a send to a full non-blocking socket parked in flight and the later entries of that fd behind it while another fd's entries complete; the progress fd fires when the peer reads (also edge-triggered inside an epoll set, as libesca.so uses it) and not before; later reaping flushes complete the send, every byte in order; a waiting flush completes what is parked.  Over a unix socketpair and TCP on loopback.
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no /dev/esca). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "esca.h"
#include "lkm_test.h"
#include "lkm_exec.h"

#define BIG (1 << 20)
static char big[BIG];

static struct esca_args send_of(int fd, const void *buf, size_t len,
				struct iovec *one)
{
	one->iov_base = (void *)buf;
	one->iov_len = len;
	return (struct esca_args){ .op = ESCA_OP_SEND, .fd = fd, .iov = one,
				   .iovcnt = 1, .hints = ESCA_HINT_NONBLOCK };
}

/* A connected pair: sv[0] non-blocking (the server's side), sv[1] the
 * client's, which reads only when told. */
static int pair(int tcp, int sv[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l, small = 65536;

	if (!tcp)
		return socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&a, &al) < 0)
		return -1;
	/* small buffers: loopback TCP would otherwise take the whole send */
	sv[1] = socket(AF_INET, SOCK_STREAM, 0);
	if (sv[1] < 0 ||
	    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) < 0 ||
	    connect(sv[1], (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	sv[0] = accept4(l, NULL, NULL, SOCK_NONBLOCK);
	close(l);
	if (sv[0] < 0)
		return -1;
	return setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
}

static int readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* Read what sv[1] has (up to max bytes), checking it against the stream
 * sent: big, then "tail".  Bytes read, or -1 on a wrong byte. */
static long drain(int fd, size_t *got, size_t max)
{
	char b[65536];
	long total = 0;

	while ((size_t)total < max) {
		size_t want = max - (size_t)total < sizeof(b) ?
			      max - (size_t)total : sizeof(b);
		ssize_t n = recv(fd, b, want, MSG_DONTWAIT);

		if (n <= 0)
			break;
		for (ssize_t k = 0; k < n; k++) {
			size_t at = *got + (size_t)k;
			char c = at < BIG ? big[at] : "tail"[at - BIG];

			if (at >= BIG + 4 || b[k] != c) {
				fprintf(stderr, "[%s] byte %zu\n", cur, at);
				return -1;
			}
		}
		*got += (size_t)n;
		total += n;
	}
	return total;
}

static void parks(int tcp)
{
	struct esca_table *t = lkm_table();
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET }, out;
	int sv[2], other[2], pfd, ep;
	struct iovec one;
	struct esca_args a;
	size_t got = 0;
	char buf[8];
	double t0;

	CHECK(t);
	CHECK(esca_table_caps(t) & ESCA_CAP_PARKS);
	CHECK(pair(tcp, sv) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, other) == 0);
	a = send_of(sv[0], big, BIG, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 0), BIG);
	a = send_of(sv[0], "tail", 4, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 1), 4);
	a = send_of(other[0], "free", 4, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 2), 4);

	/* the flush returns, the send parked, the other fd served */
	t0 = now_s();
	CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	CHECK(now_s() - t0 < 2.0);
	CHECK_EQ(results[2], 4);
	CHECK_EQ(read(other[1], buf, 4), 4);
	CHECK_EQ(results[0], 12345);
	CHECK_EQ(results[1], 12345);
	CHECK(esca_fd_pending(t, sv[0]));
	CHECK(esca_fd_inflight(t, sv[0]));
	CHECK(!esca_fd_inflight(t, other[0]));
	CHECK_EQ(esca_table_inflight(t), 1);	/* the tail waits, queued */
	CHECK_EQ(esca_table_pending(t), 2);

	/* the progress fd: the table's own, quiet while the socket is full */
	pfd = esca_table_progress_fd(t);
	CHECK(pfd >= 0);
	CHECK_EQ(esca_table_progress_fd(t), pfd);
	CHECK(esca_table_owns_fd(t, pfd));
	CHECK(fcntl(pfd, F_GETFD) & FD_CLOEXEC);
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, pfd, &ev) == 0);
	CHECK(!readable(pfd, 50));
	CHECK_EQ(epoll_wait(ep, &out, 1, 50), 0);
	/* a reaping flush with no room moves nothing and returns */
	CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	CHECK_EQ(results[0], 12345);
	CHECK(!readable(pfd, 0));

	/* the peer reads: the progress fd fires, in the epoll set too */
	CHECK(drain(sv[1], &got, 256 << 10) > 0);
	CHECK(readable(pfd, 2000));
	CHECK_EQ(epoll_wait(ep, &out, 1, 2000), 1);
	CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	CHECK(!readable(pfd, 0));	/* the flush took the event */

	/* the rest: read, wait for the progress fd, reap, until done */
	t0 = now_s();
	while (results[1] == 12345 && now_s() - t0 < 20) {
		long n = drain(sv[1], &got, 128 << 10);

		CHECK(n >= 0);
		if (esca_table_inflight(t))
			(void)readable(pfd, 100);
		CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	}
	CHECK_EQ(results[0], BIG);
	CHECK_EQ(results[1], 4);
	CHECK_EQ(esca_table_pending(t), 0);
	CHECK_EQ(esca_table_inflight(t), 0);
	CHECK(!esca_fd_inflight(t, sv[0]));
	while (got < BIG + 4 && now_s() - t0 < 20) {
		CHECK(drain(sv[1], &got, BIG) >= 0);
		(void)readable(sv[1], 100);
	}
	CHECK_EQ(got, BIG + 4);
	CHECK(esca_table_stats(t)->short_completed > 0);
	close(ep);
	esca_table_free(t);
	close(sv[0]);
	close(sv[1]);
	close(other[0]);
	close(other[1]);
}

static void test_park_unix(void)
{
	parks(0);
}

static void test_park_tcp(void)
{
	parks(1);
}

struct reader {
	int fd;
	size_t got;
	int bad;
};

static void *reader(void *arg)
{
	struct reader *r = arg;

	while (r->got < BIG + 4) {
		long n = drain(r->fd, &r->got, BIG);

		if (n < 0) {
			r->bad = 1;
			break;
		}
		if (n == 0)
			(void)readable(r->fd, 100);
	}
	return NULL;
}

/* Parked, then a waiting flush (a sync of the fd): it waits for the peer
 * and completes every entry, in order; nothing stays in the progress fd. */
static void test_park_then_wait(void)
{
	struct esca_table *t = lkm_table();
	struct reader rd = { 0 };
	struct iovec one;
	struct esca_args a;
	pthread_t th;
	int sv[2], pfd;

	CHECK(t);
	CHECK(pair(0, sv) == 0);
	a = send_of(sv[0], big, BIG, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 0), BIG);
	a = send_of(sv[0], "tail", 4, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 1), 4);
	CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	CHECK(esca_fd_inflight(t, sv[0]));
	pfd = esca_table_progress_fd(t);
	CHECK(pfd >= 0);
	rd.fd = sv[1];
	CHECK(pthread_create(&th, NULL, reader, &rd) == 0);
	CHECK_EQ(esca_sync_fd(t, sv[0]), 0);
	CHECK_EQ(results[0], BIG);
	CHECK_EQ(results[1], 4);
	CHECK_EQ(esca_table_inflight(t), 0);
	pthread_join(th, NULL);
	CHECK(!rd.bad);
	CHECK_EQ(rd.got, BIG + 4);
	CHECK(!readable(pfd, 0));
	esca_table_free(t);
	close(sv[0]);
	close(sv[1]);
}

static const struct lkm_test tests[] = {
	{ "park_unix", test_park_unix },
	{ "park_tcp", test_park_tcp },
	{ "park_then_wait", test_park_then_wait },
};

int main(int argc, char **argv)
{
	for (int i = 0; i < BIG; i++)
		big[i] = (char)('a' + (i * 7 + i / 4096) % 26);
	alarm(60);	/* a flush that waits for the peer would hang: fail */
	return run_tests("lkm-exec-park", tests,
			 sizeof(tests) / sizeof(tests[0]), argc, argv);
}
