/* SPDX-License-Identifier: MIT
 * test_flow.c - test_core's cases of bytes that do not go out at once:
 * short writes completed, entries parked on a full socket, borrowed bytes
 * and the arena wrapping around.  Entry points: test_short_socket,
 * test_short_pipe, test_parked, test_borrow, test_borrow_pipe,
 * test_arena_wrap, test_index_wrap, test_progress (run by test_core.c's
 * main). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "esca.h"
#include "internal.h"	/* test_index_wrap sets head and tail */
#include "uring.h"	/* test_progress sets the ring's flags */
#include "helpers.h"
#include "fixtures.h"

struct reader {
	int fd;
	size_t got;
	unsigned long long sum;
};

static void *slow_reader(void *arg)
{
	struct reader *r = arg;
	char buf[997];

	for (;;) {
		ssize_t n = read(r->fd, buf, sizeof(buf));

		if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
			poll(&(struct pollfd){ .fd = r->fd, .events = POLLIN },
			     1, 100);
			continue;
		}
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			r->sum = r->sum * 31 + (unsigned char)buf[i];
		r->got += (size_t)n;
		if (r->got % 64 == 0)
			usleep(50);
	}
	return NULL;
}

/* Short writes: 8 MiB through non-blocking fds whose reader is slow. */
static void test_short_writes(int kind, int use_pipe)
{
	enum { CHUNK = 65536, N = 128 };
	struct esca_table *t = table(kind, 32, 1 << 20);
	static char chunk[CHUNK];
	unsigned long long sum = 0;
	struct reader rd = { 0 };
	pthread_t th;
	int fds[2];

	CHECK(t);
	if (use_pipe)
		CHECK(pipe2(fds, O_NONBLOCK) == 0);
	else
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
				 fds) == 0);
	rd.fd = fds[0];
	CHECK(pthread_create(&th, NULL, slow_reader, &rd) == 0);
	for (int i = 0; i < N; i++) {
		struct iovec one;
		struct esca_args a;
		int64_t r;

		for (int k = 0; k < CHUNK; k++)
			chunk[k] = (char)(i * 7 + k % 251);
		for (int k = 0; k < CHUNK; k++)
			sum = sum * 31 + (unsigned char)chunk[k];
		a = data(use_pipe ? ESCA_OP_WRITE : ESCA_OP_SEND, fds[1], chunk,
			 CHUNK, &one);
		while ((r = esca_queue(t, &a, 0, (uint64_t)i)) == -ENOBUFS)
			CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_BUDGET) >= 0);
		CHECK_EQ(r, CHUNK);
		if (i % 5 == 0)	/* an event loop would flush now and then */
			CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	}
	CHECK(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT) >= 0);
	for (int i = 0; i < N; i++)
		CHECK_EQ(results[i], CHUNK);
	close(fds[1]);
	pthread_join(th, NULL);
	CHECK_EQ(rd.got, (size_t)CHUNK * N);
	CHECK(rd.sum == sum);
	esca_table_free(t);
	close(fds[0]);
}

void test_short_socket(int kind)
{
	test_short_writes(kind, 0);
}

void test_short_pipe(int kind)
{
	test_short_writes(kind, 1);
}

/* A send parked on a full socket does not hold a REAP flush; later ops on
 * the same fd wait for it, ops on other fds go on. */
void test_parked(int kind)
{
	static char big[1 << 20];
	struct esca_table *t = table(kind, 0, 4 << 20);
	int sv[2], other[2];
	struct iovec one;
	struct esca_args a;
	char buf[16];
	struct reader rd = { 0 };
	pthread_t th;

	CHECK(t);
	if (!(esca_table_caps(t) & ESCA_CAP_PARKS)) {
		esca_table_free(t);	/* a flush would block: by design */
		SKIP("parked: the executor never parks");
	}
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, other) == 0);
	memset(big, 'B', sizeof(big));
	a = data(ESCA_OP_SEND, sv[0], big, sizeof(big), &one);
	CHECK_EQ(esca_queue(t, &a, 0, 0), sizeof(big));
	a = data(ESCA_OP_SEND, sv[0], "tail", 4, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 1), 4);
	a = data(ESCA_OP_SEND, other[0], "free", 4, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 2), 4);
	CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	CHECK_EQ(results[2], 4);
	CHECK(esca_fd_pending(t, sv[0]));
	CHECK_EQ(read(other[1], buf, 4), 4);
	rd.fd = sv[1];
	CHECK(pthread_create(&th, NULL, slow_reader, &rd) == 0);
	CHECK_EQ(esca_sync_fd(t, sv[0]), 0);
	CHECK_EQ(results[0], sizeof(big));
	CHECK_EQ(results[1], 4);
	shutdown(sv[0], SHUT_WR);
	pthread_join(th, NULL);
	CHECK_EQ(rd.got, sizeof(big) + 4);
	esca_table_free(t);
	close(sv[0]);
	close(sv[1]);
	close(other[0]);
	close(other[1]);
}

/* borrowed multi-iovec bigger than the budget, like the Python E2BIG path */
static void borrow_to(int kind, int use_pipe)
{
	enum { N = 40, SZ = 100000 };
	static char bufs[N][SZ];
	struct iovec iov[N];
	struct esca_table *t = table(kind, 0, 65536);
	struct reader rd = { 0 };
	unsigned long long sum = 0;
	struct esca_args a;
	pthread_t th;
	int sv[2];

	CHECK(t);
	/* a non-blocking pipe takes short writes: the rest must follow and
	 * the result must still be the whole count */
	if (use_pipe)
		CHECK(pipe2(sv, O_NONBLOCK) == 0);
	else
		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	if (use_pipe) {	/* sv[0] reads, sv[1] writes: swap to match below */
		int x = sv[0];

		sv[0] = sv[1];
		sv[1] = x;
	}
	for (int i = 0; i < N; i++) {
		memset(bufs[i], 'a' + i % 26, SZ);
		iov[i] = (struct iovec){ bufs[i], SZ };
		for (int k = 0; k < SZ; k++)
			sum = sum * 31 + (unsigned char)bufs[i][k];
	}
	a = (struct esca_args){ .op = ESCA_OP_WRITEV, .fd = sv[0], .iov = iov,
				.iovcnt = N };
	CHECK_EQ(esca_queue(t, &a, 0, 0), -E2BIG);
	CHECK_EQ(esca_queue(t, &a, ESCA_Q_BORROW, 0), N * SZ);
	rd.fd = sv[1];
	CHECK(pthread_create(&th, NULL, slow_reader, &rd) == 0);
	CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 1);
	CHECK_EQ(results[0], N * SZ);
	if (use_pipe)
		close(sv[0]);
	else
		shutdown(sv[0], SHUT_WR);
	pthread_join(th, NULL);
	CHECK_EQ(rd.got, (size_t)N * SZ);
	CHECK(rd.sum == sum);
	esca_table_free(t);
	if (!use_pipe)
		close(sv[0]);
	close(sv[1]);
}

void test_borrow(int kind)
{
	borrow_to(kind, 0);
}

void test_borrow_pipe(int kind)
{
	borrow_to(kind, 1);
}

/* The arena wraps around many times without losing bytes. */
void test_arena_wrap(int kind)
{
	struct esca_table *t = table(kind, 16, 4096);
	int p[2];
	size_t sent = 0, got = 0;
	char chunk[700], buf[4096];
	unsigned long long s1 = 0, s2 = 0;

	CHECK(t && pipe(p) == 0);
	for (int i = 0; i < 2000; i++) {
		struct iovec one;
		struct esca_args a;
		size_t n = (size_t)(1 + (i * 37) % 700);
		int64_t r;

		for (size_t k = 0; k < n; k++) {
			chunk[k] = (char)(i + k);
			s1 = s1 * 31 + (unsigned char)chunk[k];
		}
		a = data(ESCA_OP_WRITE, p[1], chunk, n, &one);
		while ((r = esca_queue(t, &a, 0, 0)) == -ENOBUFS) {
			CHECK(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_BUDGET) > 0);
			for (;;) {	/* drain the pipe */
				ssize_t m = read(p[0], buf, sizeof(buf));

				for (ssize_t k = 0; k < m; k++)
					s2 = s2 * 31 + (unsigned char)buf[k];
				got += m > 0 ? (size_t)m : 0;
				if (got == sent)
					break;
			}
		}
		CHECK_EQ(r, n);
		sent += n;
	}
	CHECK(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT) >= 0);
	close(p[1]);
	for (;;) {
		ssize_t m = read(p[0], buf, sizeof(buf));

		if (m <= 0)
			break;
		for (ssize_t k = 0; k < m; k++)
			s2 = s2 * 31 + (unsigned char)buf[k];
		got += (size_t)m;
	}
	CHECK_EQ(got, sent);
	CHECK(s1 == s2);
	esca_table_free(t);
	close(p[0]);
}


/* The table's free-running entry index wraps at 2^32: with a capacity that
 * is no power of two, i % cap would put the entries on either side of the
 * wrap in one slot (the later one overwriting a queued one).  Starts a
 * table of 3 just before the wrap and sends across it, in order. */
void test_index_wrap(int kind)
{
	struct esca_table *t = table(kind, 3, 0);
	int sv[2];
	char want[64], buf[64];
	size_t n = 0;

	CHECK(t && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	t->head = t->tail = UINT32_MAX - 4;
	for (int round = 0; round < 4; round++) {
		for (int k = 0; k < 3; k++) {
			struct iovec one;
			struct esca_args a;

			want[n] = (char)('a' + n);
			a = data(ESCA_OP_SEND, sv[0], &want[n], 1, &one);
			CHECK_EQ(esca_queue(t, &a, 0, n), 1);
			n++;
		}
		CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 3);
	}
	CHECK(t->head == 7 && t->tail == 7);	/* it did wrap */
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(results[i], 1);
	shutdown(sv[0], SHUT_WR);
	CHECK_EQ(read_all(sv[1], buf, sizeof(buf)), n);
	CHECK(memcmp(buf, want, n) == 0);
	esca_table_free(t);
	close(sv[0]);
	close(sv[1]);
}

static int inq(int fd)
{
	int n = -1;

	if (ioctl(fd, FIONREAD, &n) < 0)
		return -1;	/* the check on it fails */
	return n;
}

static void drain_peer(int fd)
{
	static char sink[1 << 16];

	while (read(fd, sink, sizeof(sink)) > 0)
		;
}

static void drain_progress(int pfd)
{
	uint64_t v;

	while (read(pfd, &v, sizeof(v)) > 0)
		;
}

/* uring's progress fd, armed: no wake-up from a stale IORING_SQ_TASKRUN
 * (set with nothing queued, as the kernel can leave it: a pause spun on
 * it), but work queued while it was off is run or wakes the wait, and work
 * queued while it is on wakes it.  The stale flag is made by setting it in
 * the ring's shared flags, as the kernel leaves it. */
void test_progress(int kind)
{
	static char big[1 << 20];
	struct esca_table *t = table(kind, 0, 4 << 20);
	struct uring_state *u;
	struct pollfd p;
	struct iovec one;
	struct esca_args a;
	struct reader rd = { 0 };
	pthread_t th;
	int sv[2], pfd;

	CHECK(t);
	if (kind != ESCA_EXEC_URING || test_plain) {
		esca_table_free(t);
		SKIP("progress: the uring executor's ring");
	}
	u = t->priv;
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	memset(big, 'P', sizeof(big));
	a = data(ESCA_OP_SEND, sv[0], big, sizeof(big), &one);
	CHECK_EQ(esca_queue(t, &a, 0, 0), sizeof(big));
	CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	CHECK(esca_fd_pending(t, sv[0]));	/* parked: the peer is full */
	pfd = esca_table_progress_fd(t);
	CHECK(pfd >= 0);
	p = (struct pollfd){ .fd = pfd, .events = POLLIN };

	/* the flag left set, nothing queued: the armed fd stays quiet */
	drain_progress(pfd);
	__atomic_fetch_or(u->ring.sq.kflags, IORING_SQ_TASKRUN,
			  __ATOMIC_SEQ_CST);
	esca_table_progress_arm(t, 1);
	CHECK_EQ(poll(&p, 1, 0), 0);
	CHECK(!(IO_URING_READ_ONCE(*u->ring.sq.kflags) & IORING_SQ_TASKRUN));
	esca_table_progress_arm(t, 0);

	/* the peer reads while the fd is off: arming moves the send on, or
	 * wakes the wait that will */
	drain_peer(sv[1]);
	CHECK_EQ(inq(sv[1]), 0);
	esca_table_progress_arm(t, 1);
	CHECK(poll(&p, 1, 0) == 1 || inq(sv[1]) > 0);
	CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	drain_progress(pfd);

	/* the peer reads while it is on: the kernel's own wake-up */
	CHECK(esca_fd_pending(t, sv[0]));
	drain_peer(sv[1]);
	CHECK_EQ(poll(&p, 1, 2000), 1);
	esca_table_progress_arm(t, 0);

	rd.fd = sv[1];
	CHECK(fcntl(sv[1], F_SETFL, 0) == 0);
	CHECK(pthread_create(&th, NULL, slow_reader, &rd) == 0);
	CHECK_EQ(esca_sync_fd(t, sv[0]), 0);
	CHECK_EQ(results[0], sizeof(big));
	shutdown(sv[0], SHUT_WR);
	pthread_join(th, NULL);
	esca_table_free(t);
	close(sv[0]);
	close(sv[1]);
}
