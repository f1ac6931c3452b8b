/* SPDX-License-Identifier: MIT
 * test_handover.c - esca_table_hand_over (native/core/handover.c): a send
 * parked on a full socket, partly read, is cancelled and reported with
 * exactly the bytes it had not sent: test_hand_over; esca_fd_abort drops
 * one parked socket's entries while another's go on exactly:
 * test_fd_abort. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "esca.h"
#include "helpers.h"
#include "fixtures.h"

#define BIG (1 << 20)

struct taken {
	int n, ops[4], fds[4];
	size_t done[4], len[4];
	char *bytes[4];
};

static int take(void *ctx, const struct esca_args *a, uint64_t user,
		size_t done)
{
	struct taken *tk = ctx;
	size_t len = 0;
	char *p;

	(void)user;
	if (tk->n == 4)
		return -ENOSPC;
	for (int i = 0; i < a->iovcnt; i++)
		len += a->iov[i].iov_len;
	p = malloc(len + 1);
	if (!p)
		return -ENOMEM;
	tk->bytes[tk->n] = p;
	for (int i = 0; i < a->iovcnt; i++) {
		memcpy(p, a->iov[i].iov_base, a->iov[i].iov_len);
		p += a->iov[i].iov_len;
	}
	tk->ops[tk->n] = a->op;
	tk->fds[tk->n] = a->fd;
	tk->done[tk->n] = done;
	tk->len[tk->n++] = len;
	return 0;
}

void test_hand_over(int kind)
{
	static char big[BIG], got[BIG + 4];
	struct esca_table *t = table(kind, 0, 4 << 20);
	struct taken tk = { 0 };
	struct iovec one;
	struct esca_args a;
	size_t have;
	int sv[2], r;

	CHECK(t);
	if (!(esca_table_caps(t) & ESCA_CAP_PARKS)) {
		esca_table_free(t);
		SKIP("hand_over: the executor never parks");
	}
	for (size_t i = 0; i < BIG; i++)
		big[i] = (char)(i * 7 + i / 4096);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	a = data(ESCA_OP_SEND, sv[0], big, BIG, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 0), BIG);
	a = data(ESCA_OP_SEND, sv[0], "tail", 4, &one);
	CHECK_EQ(esca_queue(t, &a, 0, 1), 4);
	CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	CHECK(esca_table_inflight(t) > 0);	/* parked */
	/* the peer reads some: the parked send moves on, partly */
	have = 0;
	for (int i = 0; i < 5; i++) {
		ssize_t n = recv(sv[1], got + have, 16384, MSG_DONTWAIT);

		if (n > 0)
			have += (size_t)n;
		esca_table_wait(t, 5);
		esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
	}
	r = esca_table_hand_over(t, take, &tk);
	CHECK_EQ(r, 2);
	CHECK_EQ(esca_table_pending(t), 0);
	CHECK_EQ(tk.ops[0], ESCA_OP_SEND);
	CHECK_EQ(tk.fds[0], sv[0]);
	CHECK(tk.done[0] > 0);
	CHECK_EQ(tk.done[0] + tk.len[0], BIG);
	CHECK_EQ(tk.len[1], 4);
	/* what the socket holds, then the rests: exactly the stream */
	for (;;) {
		ssize_t n = recv(sv[1], got + have, sizeof(got) - have,
				 MSG_DONTWAIT);

		if (n <= 0)
			break;
		have += (size_t)n;
	}
	CHECK_EQ(have, tk.done[0]);
	CHECK(memcmp(got, big, have) == 0);
	CHECK(memcmp(tk.bytes[0], big + have, tk.len[0]) == 0);
	CHECK(memcmp(tk.bytes[1], "tail", 4) == 0);
	for (int i = 0; i < tk.n; i++)
		free(tk.bytes[i]);
	esca_table_free(t);
	close(sv[0]);
	close(sv[1]);
}

/* Sends parked on two sockets; A is reset (esca_fd_abort): its entries go,
 * B's (cancelled and queued again, under uring) still arrive exactly, in
 * order, once its peer reads. */
void test_fd_abort(int kind)
{
	static char big[BIG], got[BIG + 4];
	struct esca_table *t = table(kind, 0, 4 << 20);
	struct iovec one;
	struct esca_args a;
	size_t have = 0;
	int sa[2], sb[2];
	char path[] = "/tmp/esca-abort-XXXXXX";
	int f = mkstemp(path);

	CHECK(t);
	if (!(esca_table_caps(t) & ESCA_CAP_PARKS)) {
		esca_table_free(t);
		SKIP("fd_abort: the executor never parks");
	}
	for (size_t i = 0; i < BIG; i++)
		big[i] = (char)(i * 13 + i / 4096);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sa) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sb) == 0);
	CHECK(f >= 0);
	unlink(path);
	CHECK_EQ(write(f, big, 8192), 8192);
	CHECK_EQ(lseek(f, 100, SEEK_SET), 100);
	for (int k = 0; k < 2; k++) {
		int fd = k ? sb[0] : sa[0];

		a = data(ESCA_OP_SEND, fd, big, BIG, &one);
		CHECK_EQ(esca_queue(t, &a, 0, 0), BIG);
		a = data(ESCA_OP_SEND, fd, "tail", 4, &one);
		CHECK_EQ(esca_queue(t, &a, 0, 1), 4);
	}
	/* A's sendfile from the file position, behind the parked send: the
	 * program was told it moved the position 4096 on */
	a = (struct esca_args){ .op = ESCA_OP_SENDFILE, .fd = sa[0], .fd2 = f,
				.offset = -1, .count = 4096 };
	CHECK_EQ(esca_queue(t, &a, 0, 2), 4096);
	CHECK(esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT) >= 0);
	CHECK(esca_fd_inflight(t, sa[0]) > 0);	/* both parked */
	CHECK(esca_fd_inflight(t, sb[0]) > 0);
	CHECK_EQ(esca_fd_abort(t, sa[0]), 3);
	CHECK_EQ(esca_fd_pending(t, sa[0]), 0);
	CHECK_EQ(lseek(f, 0, SEEK_CUR), 100 + 4096);
	CHECK(esca_fd_pending(t, sb[0]) > 0);
	/* B's peer reads: every byte once, in order, then the tail */
	for (int i = 0; i < 5000 && have < BIG + 4; i++) {
		ssize_t n = recv(sb[1], got + have, sizeof(got) - have,
				 MSG_DONTWAIT);

		if (n > 0)
			have += (size_t)n;
		esca_flush(t, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
		if (n <= 0)
			esca_table_wait(t, 1);
	}
	CHECK_EQ(have, BIG + 4);
	CHECK(memcmp(got, big, BIG) == 0);
	CHECK(memcmp(got + BIG, "tail", 4) == 0);
	CHECK_EQ(esca_table_pending(t), 0);
	esca_table_free(t);
	close(sa[0]);
	close(sa[1]);
	close(sb[0]);
	close(sb[1]);
	close(f);
}
