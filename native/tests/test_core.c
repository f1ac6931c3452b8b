/* SPDX-License-Identifier: MIT
 * test_core.c - the native core against real fds, no Python.
 * Exit status: 0 pass, 1 fail, 77 skip (helpers.h).
 * Every test runs under each executor that works here; uring is skipped
 * (with the reason) only where the kernel refuses io_uring, lkm where the
 * module is not loaded (/dev/esca missing; lkm/qemu/run.sh loads it in a
 * QEMU guest and runs this program there). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "esca.h"
#define TEST_COUNTERS_HERE
#include "helpers.h"
#include "fixtures.h"

/* native/core/uring_setup.c: the executor's ring set-up (hidden in
 * libraries) */
int esca__ring_setup(struct io_uring *ring, unsigned entries, unsigned *flags);

int64_t results[MAXRES];
int ndone;

void on_complete(void *ctx, uint64_t user, int op, int fd, int64_t r)
{
	(void)ctx;
	(void)op;
	(void)fd;
	if (user < MAXRES)
		results[user] = r;
	ndone++;
}

struct esca_table *table(int kind, unsigned cap, size_t budget)
{
	struct esca_config c = { .executor = kind, .capacity = cap,
				 .byte_budget = budget,
				 .complete = on_complete };
	int err = 0;
	struct esca_table *t = esca_table_new(&c, &err);

	if (!t)
		fprintf(stderr, "table(%s): %s\n", esca_executor_name(kind),
			strerror(-err));
	else
		esca_table_set_plain(t, test_plain);
	memset(results, 0x7f, sizeof(results));
	ndone = 0;
	return t;
}

struct esca_args data(int op, int fd, const void *buf, size_t n,
		     struct iovec *iov)
{
	iov->iov_base = (void *)buf;
	iov->iov_len = n;
	return (struct esca_args){ .op = op, .fd = fd, .iov = iov, .iovcnt = 1 };
}

ssize_t read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t r = read(fd, buf + got, cap - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* the example */
static void test_example(int kind)
{
	int sv[2];
	struct iovec v[2] = { { "wor", 3 }, { "ld", 2 } }, one;
	struct esca_args a;
	struct esca_table *t = table(kind, 0, 0);
	char buf[64];

	CHECK(t);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	a = data(ESCA_OP_SEND, sv[0], "hello ", 6, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 0), 6);
	a = (struct esca_args){ .op = ESCA_OP_WRITEV, .fd = sv[0], .iov = v,
				.iovcnt = 2 };
	CHECK_EQ(esca_queue(t, &a, 0, 1), 5);
	a = (struct esca_args){ .op = ESCA_OP_SHUTDOWN, .fd = sv[0],
				.how = SHUT_WR };
	CHECK_EQ(esca_queue(t, &a, 0, 2), 0);
	CHECK_EQ(esca_table_pending(t), 3);
	CHECK(esca_fd_pending(t, sv[0]));
	CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 3);
	CHECK_EQ(results[0], 6);
	CHECK_EQ(results[1], 5);
	CHECK_EQ(results[2], 0);
	CHECK_EQ(read_all(sv[1], buf, sizeof(buf)), 11);
	CHECK(memcmp(buf, "hello world", 11) == 0);
	if (kind == ESCA_EXEC_URING && !test_plain)	/* the ring, then the
							 * shutdown (needs_direct) */
		CHECK_EQ(esca_table_stats(t)->kernel_entries, 2);
	if (kind == ESCA_EXEC_URING && test_plain) {	/* one a call, no ring */
		CHECK_EQ(esca_table_stats(t)->kernel_entries, 3);
		CHECK_EQ(esca_table_stats(t)->flushes_plain, 1);
	}
	if (kind == ESCA_EXEC_LKM)	/* the module does not run shutdown */
		CHECK_EQ(esca_table_stats(t)->kernel_entries, 2);
	esca_table_free(t);
	close(sv[0]);
	close(sv[1]);
}

/* many writes on pipes, files and sockets interleaved: order per fd */
static void test_order(int kind)
{
	int p[2], sv[2];
	char path[] = "/tmp/esca-test-XXXXXX", buf[70000], want[70000];
	int f = mkstemp(path);
	struct esca_table *t = table(kind, 64, 1 << 20);
	size_t wn = 0;

	CHECK(t && f >= 0);
	unlink(path);
	CHECK(pipe(p) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	for (int i = 0; i < 200; i++) {
		char chunk[64];
		struct iovec one;
		struct esca_args a;
		int n = snprintf(chunk, sizeof(chunk), "<%d:%s>", i,
				 i % 3 ? "abc" : "defghij");
		int64_t r;

		memcpy(want + wn, chunk, (size_t)n);
		wn += (size_t)n;
		for (int k = 0; k < 3; k++) {
			int fd = k == 0 ? p[1] : k == 1 ? f : sv[0];

			a = data(i % 2 ? ESCA_OP_WRITE : ESCA_OP_WRITEV, fd,
				 chunk, (size_t)n, &one);
			while ((r = esca_queue(t, &a, 0, 0)) == -ENOBUFS)
				CHECK(esca_flush(t, ESCA_FLUSH_WAIT,
						 ESCA_WHY_BUDGET) > 0);
			CHECK_EQ(r, n);
		}
		memset(chunk, 'X', sizeof(chunk));	/* caller reuses memory */
	}
	CHECK(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT) >= 0);
	CHECK_EQ(esca_table_pending(t), 0);
	close(p[1]);
	shutdown(sv[0], SHUT_WR);
	CHECK_EQ(read_all(p[0], buf, sizeof(buf)), wn);
	CHECK(memcmp(buf, want, wn) == 0);
	CHECK_EQ(read_all(sv[1], buf, sizeof(buf)), wn);
	CHECK(memcmp(buf, want, wn) == 0);
	CHECK_EQ(pread(f, buf, sizeof(buf), 0), wn);
	CHECK(memcmp(buf, want, wn) == 0);
	CHECK_EQ(lseek(f, 0, SEEK_CUR), wn);	/* file position moved */
	esca_table_free(t);
	close(p[0]);
	close(f);
	close(sv[0]);
	close(sv[1]);
}

static void test_errors(int kind)
{
	struct esca_table *t = table(kind, 4, 64);
	struct iovec one, big;
	struct esca_args a;
	int p[2];
	char blob[128] = { 0 };

	CHECK(t);
	CHECK(pipe(p) == 0);
	close(p[0]);	/* writes to p[1] now EPIPE */
	a = data(ESCA_OP_WRITE, 1000, "x", 1, &one);	/* not open */
	CHECK_EQ(esca_queue(t, &a, 0, 0), 1);
	a = data(ESCA_OP_SEND, p[1], "x", 1, &one);	/* not a socket */
	CHECK_EQ(esca_queue(t, &a, 0, 1), 1);
	a = (struct esca_args){ .op = ESCA_OP_SHUTDOWN, .fd = p[1], .how = 0 };
	CHECK_EQ(esca_queue(t, &a, 0, 2), 0);
	a = data(ESCA_OP_WRITE, -1, "x", 1, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 3), -EBADF);
	a = data(ESCA_OP_WRITE, p[1], blob, sizeof(blob), &big);
	CHECK_EQ(esca_queue(t, &a, 0, 3), -E2BIG);	/* over the budget */
	a = data(ESCA_OP_WRITE, p[1], "x", 1, &one);
	a.iovcnt = 5000;
	CHECK_EQ(esca_queue(t, &a, 0, 3), -EINVAL);
	a = (struct esca_args){ .op = 99, .fd = 1 };
	CHECK_EQ(esca_queue(t, &a, 0, 3), -EINVAL);
	/* SIGPIPE would kill us: block it for the EPIPE write */
	signal(SIGPIPE, SIG_IGN);
	a = data(ESCA_OP_WRITE, p[1], "y", 1, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 3), 1);
	a = data(ESCA_OP_WRITE, p[1], "z", 1, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 4), -ENOBUFS);	/* 4 entries */
	CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 4);
	CHECK_EQ(results[0], -EBADF);
	CHECK_EQ(results[1], -ENOTSOCK);
	CHECK_EQ(results[2], -ENOTSOCK);
	CHECK_EQ(results[3], -EPIPE);
	CHECK_EQ(esca_table_stats(t)->errors, 4);
	CHECK_EQ(esca_queue(t, &a, 0, 4), 1);		/* room again */
	CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 1);
	CHECK_EQ(results[4], -EPIPE);
	esca_table_free(t);
	close(p[1]);
}

static void test_close_and_sockopt(int kind)
{
	struct esca_table *t = table(kind, 0, 0);
	int s = socket(AF_INET, SOCK_STREAM, 0), p[2], one = 1, v = 0;
	struct iovec opt = { &one, sizeof(one) };
	struct esca_args a;
	socklen_t l = sizeof(v);

	CHECK(t && s >= 0 && pipe(p) == 0);
	a = (struct esca_args){ .op = ESCA_OP_SETSOCKOPT, .fd = s,
				.level = IPPROTO_TCP, .optname = TCP_NODELAY,
				.iov = &opt, .iovcnt = 1 };
	CHECK_EQ(esca_queue(t, &a, 0, 0), 0);
	one = 0;	/* the table owns its copy */
	a = (struct esca_args){ .op = ESCA_OP_CLOSE, .fd = p[0] };
	CHECK_EQ(esca_queue(t, &a, 0, 1), 0);
	CHECK(fcntl(p[0], F_GETFD) >= 0);	/* not yet */
	CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 2);
	CHECK_EQ(results[0], 0);
	CHECK_EQ(results[1], 0);
	CHECK(fcntl(p[0], F_GETFD) < 0 && errno == EBADF);
	CHECK(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &l) == 0);
	CHECK_EQ(v, 1);
	a = (struct esca_args){ .op = ESCA_OP_CLOSE, .fd = p[0] };
	CHECK_EQ(esca_queue(t, &a, 0, 2), 0);
	CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 1);
	CHECK_EQ(results[2], -EBADF);
	esca_table_free(t);
	close(s);
	close(p[1]);
}

static void test_sendfile(int kind)
{
	char path[] = "/tmp/esca-test-XXXXXX", buf[8192], want[5000];
	int f = mkstemp(path), sv[2];
	struct esca_table *t = table(kind, 0, 0);
	struct esca_args a;

	CHECK(t && f >= 0);
	unlink(path);
	for (size_t i = 0; i < sizeof(want); i++)
		want[i] = (char)('a' + i % 23);
	CHECK_EQ(write(f, want, sizeof(want)), sizeof(want));
	CHECK_EQ(lseek(f, 100, SEEK_SET), 100);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	/* explicit offset: file position untouched */
	a = (struct esca_args){ .op = ESCA_OP_SENDFILE, .fd = sv[0], .fd2 = f,
				.offset = 10, .count = 20 };
	CHECK_EQ(esca_queue(t, &a, 0, 0), 20);
	/* file position: from 100, moves it */
	a = (struct esca_args){ .op = ESCA_OP_SENDFILE, .fd = sv[0], .fd2 = f,
				.offset = -1, .count = 1000 };
	CHECK_EQ(esca_queue(t, &a, 0, 1), 1000);
	/* past the end: short, like sendfile */
	a = (struct esca_args){ .op = ESCA_OP_SENDFILE, .fd = sv[0], .fd2 = f,
				.offset = 4900, .count = 500 };
	CHECK_EQ(esca_queue(t, &a, 0, 2), 500);
	/* a close of the file waits for the sendfiles reading it */
	a = (struct esca_args){ .op = ESCA_OP_CLOSE, .fd = f };
	CHECK_EQ(esca_queue(t, &a, 0, 3), 0);
	CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 4);
	CHECK_EQ(results[0], 20);
	CHECK_EQ(results[1], 1000);
	CHECK_EQ(results[2], 100);
	CHECK_EQ(results[3], 0);
	shutdown(sv[0], SHUT_WR);
	CHECK_EQ(read_all(sv[1], buf, sizeof(buf)), 1120);
	CHECK(memcmp(buf, want + 10, 20) == 0);
	CHECK(memcmp(buf + 20, want + 100, 1000) == 0);
	CHECK(memcmp(buf + 1020, want + 4900, 100) == 0);
	esca_table_free(t);
	close(sv[0]);
	close(sv[1]);
}

static void test_direct(int kind)
{
	int sv[2];
	struct iovec one = { "direct", 6 };
	struct esca_args a = { .op = ESCA_OP_SEND, .fd = 0, .iov = &one,
			       .iovcnt = 1 };
	char buf[8];

	(void)kind;
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	a.fd = sv[0];
	CHECK_EQ(esca_direct(&a), 6);
	CHECK_EQ(read(sv[1], buf, sizeof(buf)), 6);
	a.fd = 999;
	CHECK_EQ(esca_direct(&a), -EBADF);
	close(sv[0]);
	close(sv[1]);
}

/* Two fds on one pipe (stdout and stderr on a log): with an order key the
 * bytes keep program order across both fds. */
static void test_order_key(int kind)
{
	struct esca_table *t = table(kind, 0, 0);
	char buf[4096], want[4096];
	size_t wn = 0;
	int p[2], d;

	CHECK(t && pipe(p) == 0);
	d = dup(p[1]);
	CHECK(d >= 0);
	for (int i = 0; i < 100; i++) {
		char c[16];
		int n = snprintf(c, sizeof(c), "%c%d.", (i / 3) % 2 ? 'E' : 'O', i);
		struct iovec one;
		struct esca_args a = data(ESCA_OP_WRITE, (i / 3) % 2 ? d : p[1], c,
					  (size_t)n, &one);

		a.order = p[1] + 1;
		memcpy(want + wn, c, (size_t)n);
		wn += (size_t)n;
		CHECK_EQ(esca_queue(t, &a, 0, 0), n);
	}
	CHECK(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT) == 100);
	close(p[1]);
	close(d);
	CHECK_EQ(read_all(p[0], buf, sizeof(buf)), wn);
	CHECK(memcmp(buf, want, wn) == 0);
	esca_table_free(t);
	close(p[0]);
}

/* Entries queued through a dup (its ordering key the other fd) count as
 * pending on the key too: a sync of either fd runs them. */
static void test_dup_pending(int kind)
{
	struct esca_table *t = table(kind, 0, 0);
	struct iovec one;
	struct esca_args a;
	int p[2], d;

	CHECK(t && pipe(p) == 0);
	d = dup(p[1]);
	CHECK(d >= 0);
	a = data(ESCA_OP_WRITE, d, "dup", 3, &one);
	a.order = p[1] + 1;
	CHECK_EQ(esca_queue(t, &a, 0, 0), 3);
	CHECK(esca_fd_pending(t, d));
	CHECK(esca_fd_pending(t, p[1]));
	CHECK_EQ(esca_sync_fd(t, p[1]), 0);
	CHECK(!esca_fd_pending(t, p[1]) && !esca_fd_pending(t, d));
	CHECK_EQ(results[0], 3);
	esca_table_free(t);
	close(d);
	close(p[1]);
	close(p[0]);
}

static volatile sig_atomic_t sigpipes;

static void count_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
}

/* After a send of one connection fails with EPIPE, its later queued sends
 * complete with EPIPE without running: one SIGPIPE at most, as a program
 * that stops at its first error gets. */
static void test_broken_skips(int kind)
{
	struct esca_table *t;
	struct iovec one;
	struct esca_args a;
	int s[2];

	if (kind == ESCA_EXEC_LKM)
		return;	/* the kernel module's sends are its own */
	t = table(kind, 0, 0);
	CHECK(t && socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
	close(s[1]);
	sigpipes = 0;
	signal(SIGPIPE, count_sigpipe);
	for (int i = 0; i < 5; i++) {
		a = data(ESCA_OP_SEND, s[0], "lost", 4, &one);
		CHECK_EQ(esca_queue(t, &a, 0, (uint64_t)i), 4);
	}
	CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 5);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(results[i], -EPIPE);
	CHECK(sigpipes <= 1);
	CHECK(esca_table_stats(t)->kernel_entries <= 2);
	/* a later batch on a new connection runs as usual */
	close(s[0]);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
	a = data(ESCA_OP_SEND, s[0], "ok", 2, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 9), 2);
	CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 1);
	CHECK_EQ(results[9], 2);
	signal(SIGPIPE, SIG_IGN);
	esca_table_free(t);
	close(s[0]);
	close(s[1]);
}

typedef void (*test_fn)(int kind);
/* The uring executor's ring runs only its own operations (issue 5): an op
 * outside the allow-list, a flag it does not use and a register op it does
 * not make are all refused by the kernel, while the allowed ones work. */
static int submit_one(struct io_uring *ring, int opcode, unsigned sqe_flags)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	int r;

	if (!sqe)
		return -ENOSPC;
	io_uring_prep_nop(sqe);
	sqe->opcode = (unsigned char)opcode;
	sqe->fd = -1;
	sqe->flags = (unsigned char)sqe_flags;
	r = io_uring_submit_and_wait(ring, 1);
	if (r < 0)
		return r;
	r = io_uring_peek_cqe(ring, &cqe);
	if (r < 0)
		return r;
	r = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return r;
}

static void test_uring_allow_list(int kind)
{
	struct io_uring ring;
	char buf[16];
	struct iovec v = { buf, sizeof(buf) };
	unsigned flags = 0;

	if (kind != ESCA_EXEC_URING)
		return;
	CHECK_EQ(esca__ring_setup(&ring, 8, &flags), 0);
	CHECK_EQ(submit_one(&ring, IORING_OP_NOP, 0), 0);
	CHECK_EQ(submit_one(&ring, IORING_OP_OPENAT, 0), -EACCES);
	CHECK_EQ(submit_one(&ring, IORING_OP_CONNECT, 0), -EACCES);
	CHECK_EQ(submit_one(&ring, IORING_OP_NOP, IOSQE_ASYNC), -EACCES);
	CHECK_EQ(submit_one(&ring, IORING_OP_NOP, IOSQE_FIXED_FILE), -EACCES);
	CHECK_EQ(submit_one(&ring, IORING_OP_NOP, 0), 0);
	CHECK_EQ(io_uring_register_buffers(&ring, &v, 1), -EACCES);
	CHECK_EQ(io_uring_register_personality(&ring), -EACCES);
	io_uring_queue_exit(&ring);
}

static const struct {
	const char *name;
	test_fn fn;
} tests[] = {
	{ "example", test_example },
	{ "order", test_order },
	{ "order_key", test_order_key },
	{ "errors", test_errors },
	{ "close_and_sockopt", test_close_and_sockopt },
	{ "sendfile", test_sendfile },
	{ "short_socket", test_short_socket },
	{ "short_pipe", test_short_pipe },
	{ "parked", test_parked },
	{ "borrow", test_borrow },
	{ "borrow_pipe", test_borrow_pipe },
	{ "arena_wrap", test_arena_wrap },
	{ "index_wrap", test_index_wrap },
	{ "progress", test_progress },
	{ "direct", test_direct },
	{ "uring_allow_list", test_uring_allow_list },
	{ "dup_pending", test_dup_pending },
	{ "broken_skips", test_broken_skips },
	{ "hand_over", test_hand_over },
	{ "fd_abort", test_fd_abort },
};

/* test_core [EXECUTOR...]: the executors named (default: every one, and
 * "uring-plain": uring with esca_table_set_plain on every table). */
int main(int argc, char **argv)
{
	int kinds[ESCA_EXEC__COUNT + 1] = { ESCA_EXEC_SEQUENTIAL, ESCA_EXEC_URING,
					    ESCA_EXEC_URING, ESCA_EXEC_LKM };
	int plain[ESCA_EXEC__COUNT + 1] = { 0, 0, 1, 0 };
	size_t nkinds = 4;
	int ran = 0;

	setvbuf(stdout, NULL, _IONBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1) {
		nkinds = 0;
		for (int i = 1; i < argc; i++) {
			int k = ESCA_EXEC_SEQUENTIAL;

			plain[nkinds] = !strcmp(argv[i], "uring-plain");
			if (plain[nkinds]) {
				kinds[nkinds++] = ESCA_EXEC_URING;
				continue;
			}
			while (k < ESCA_EXEC__COUNT &&
			       strcmp(argv[i], esca_executor_name(k)))
				k++;
			if (k == ESCA_EXEC__COUNT || nkinds == ESCA_EXEC__COUNT + 1) {
				fprintf(stderr, "test_core: unknown executor %s\n",
					argv[i]);
				return 2;
			}
			kinds[nkinds++] = k;
		}
	}
	for (size_t k = 0; k < nkinds; k++) {
		struct esca_config c = { .executor = kinds[k] };
		int err = 0;
		struct esca_table *t = esca_table_new(&c, &err);

		test_plain = plain[k];
		test_context = plain[k] ? "uring-plain" :
			       esca_executor_name(kinds[k]);
		if (!t) {
			printf("SKIP %s: %s\n", test_context, strerror(-err));
			test_skipped++;
			continue;
		}
		esca_table_free(t);
		for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
			int before = test_failures;

			tests[i].fn(kinds[k]);
			printf("%s %s/%s\n", test_failures == before ? "ok  " :
			       "FAIL", test_context, tests[i].name);
			ran++;
		}
	}
	return test_exit_status(ran);
}
