/* Found by session 10's audit of socket state and options: each case
 * prints what the calls returned, which must be the same plainly and under
 * each executor (argv[1]):
 *  connecting  a non-blocking connect that stays in progress (the
 *              listener's backlog full), then a write.  Linux: EINPROGRESS,
 *              then EAGAIN.  Had: ENOTCONN (fd_detect's getpeername's
 *              errno), then the write told 5 (deferred; sequential then
 *              hung at exit).
 *  shutwr      write, shutdown(SHUT_WR), then send(MSG_NOSIGNAL), write,
 *              write with a SIGPIPE handler.  Linux: EPIPE three times, two
 *              SIGPIPEs.  Had: 1, 1, 1, none.
 *  shutwr_die  write, shutdown(SHUT_WR), write, SIGPIPE at its default.
 *              Linux: the process dies of SIGPIPE.  Had: it lived (uring).
 *  listen      write, write, send(MSG_NOSIGNAL) on a listening TCP socket.
 *              Linux: EPIPE x3, two SIGPIPEs.  Had: 1, 1, 1.
 *  notconn     shutdown(SHUT_WR) then write, write on an unconnected unix
 *              stream socket, shutdown(7) on an unconnected TCP one.
 *              Linux: ENOTCONN each, EINVAL.  Had: 0, 1, 1, ENOTCONN.
 *  reset       a write, the peer resets (SO_LINGER 0), SO_ERROR read, two
 *              writes.  Linux: ECONNRESET from SO_ERROR, EPIPE twice.  Had:
 *              the writes told 1 (no SIGPIPE).
 *  cork_dup    TCP_CORK set through a dup, read through the first fd, and
 *              the other way.  Linux: 1, 1.  Had: 0, 0.
 *  rdhup       write and shutdown(SHUT_WR) of one end of a socketpair, then
 *              epoll_wait on the other (EPOLLIN | EPOLLRDHUP).  Linux:
 *              IN|RDHUP.  Had under uring: IN alone (the folded wait ran
 *              before the shutdown, held behind the write).
 *  many        257 socketpairs, a write to each, one epoll_wait.  Linux:
 *              257.  Had under uring: 256 (the 257th write waited for a
 *              second round, the folded wait for none).
 *  nb_full     a non-blocking socketpair written 4 KiB at a time until
 *              EAGAIN, then all read back.  Linux: EAGAIN, all read.  Had
 *              under sequential: hung (the flush of a full table completed
 *              each send in place, its reader this very thread).
 * alarm(5): a hang dies of SIGALRM. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define R(expr)                                                            \
	do {                                                               \
		long r_;                                                   \
		errno = 0;                                                 \
		r_ = (long)(expr);                                         \
		printf("%s = %ld %s\n", #expr, r_,                         \
		       r_ < 0 ? strerrorname_np(errno) : "-");             \
	} while (0)

static volatile sig_atomic_t sigpipes;

static void on_pipe(int s)
{
	(void)s;
	sigpipes++;
}

static int listener(int *port, int backlog)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (void *)&a, sizeof(a)) < 0 ||
	    listen(l, backlog) < 0 || getsockname(l, (void *)&a, &al) < 0)
		exit(1);
	*port = ntohs(a.sin_port);
	return l;
}

static struct sockaddr_in to(int port)
{
	return (struct sockaddr_in){ .sin_family = AF_INET,
				     .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				     .sin_port = htons((uint16_t)port) };
}

/* *s the accepted end, *k the connecting one */
static void tcp_pair(int *s, int *k)
{
	int port, l = listener(&port, 8);
	struct sockaddr_in a = to(port);

	*k = socket(AF_INET, SOCK_STREAM, 0);
	if (*k < 0 || connect(*k, (void *)&a, sizeof(a)) < 0)
		exit(1);
	*s = accept(l, NULL, NULL);
	if (*s < 0)
		exit(1);
	close(l);
}

/* what the peer k got: its bytes, then EOF or an error */
static void peer_got(int k)
{
	char b[256];
	size_t n = 0;
	ssize_t r;

	while ((r = read(k, b + n, sizeof(b) - 1 - n)) > 0)
		n += (size_t)r;
	b[n] = 0;
	printf("peer got '%s', then %s\n", b,
	       r == 0 ? "EOF" : strerrorname_np(errno));
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	int s, k, v;
	socklen_t l;

	alarm(5);
	setvbuf(stdout, NULL, _IONBF, 0);
	if (strcmp(c, "shutwr_die"))
		signal(SIGPIPE, on_pipe);
	if (!strcmp(c, "connecting")) {
		int port, lis = listener(&port, 0);
		struct sockaddr_in a = to(port);
		int c1 = socket(AF_INET, SOCK_STREAM, 0);
		int c2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

		/* c1 fills the accept queue: c2's SYN goes unanswered */
		if (c1 < 0 || connect(c1, (void *)&a, sizeof(a)) < 0)
			return 1;
		R(connect(c2, (void *)&a, sizeof(a)));
		R(write(c2, "early", 5));
		close(c2);
		close(c1);
		close(lis);
	} else if (!strcmp(c, "shutwr")) {
		tcp_pair(&s, &k);
		R(write(s, "abc", 3));
		R(shutdown(s, SHUT_WR));
		R(send(s, "d", 1, MSG_NOSIGNAL));
		R(write(s, "e", 1));
		R(write(s, "f", 1));
		printf("sigpipes %d\n", (int)sigpipes);
		peer_got(k);
	} else if (!strcmp(c, "shutwr_die")) {
		tcp_pair(&s, &k);
		R(write(s, "abc", 3));
		R(shutdown(s, SHUT_WR));
		R(write(s, "e", 1));
		R(close(s));
		printf("still alive\n");
	} else if (!strcmp(c, "listen")) {
		int port, lis = listener(&port, 4);

		R(write(lis, "x", 1));
		R(write(lis, "x", 1));
		R(send(lis, "x", 1, MSG_NOSIGNAL));
		R(close(lis));
		printf("sigpipes %d\n", (int)sigpipes);
	} else if (!strcmp(c, "notconn")) {
		int t = socket(AF_INET, SOCK_STREAM, 0);
		int u = socket(AF_UNIX, SOCK_STREAM, 0);

		R(shutdown(t, SHUT_WR));
		R(shutdown(t, 7));
		R(shutdown(u, SHUT_WR));
		R(write(u, "a", 1));
		R(write(u, "a", 1));
		R(close(t));
		R(close(u));
		printf("sigpipes %d\n", (int)sigpipes);
	} else if (!strcmp(c, "reset")) {
		struct linger lg = { 1, 0 };

		tcp_pair(&s, &k);
		R(write(s, "x", 1));
		poll(NULL, 0, 20);	/* a wait: x went out */
		setsockopt(k, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(k);
		poll(NULL, 0, 20);	/* the reset arrived */
		v = -1;
		l = sizeof(v);
		R(getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &l));
		printf("SO_ERROR %s\n", v ? strerrorname_np(v) : "0");
		R(write(s, "y", 1));
		R(write(s, "z", 1));
		printf("sigpipes %d\n", (int)sigpipes);
	} else if (!strcmp(c, "cork_dup")) {
		int d, one = 1, zero = 0;

		tcp_pair(&s, &k);
		d = dup(s);
		R(setsockopt(d, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)));
		v = -1;
		l = sizeof(v);
		R(getsockopt(s, IPPROTO_TCP, TCP_CORK, &v, &l));
		printf("cork through s after set through d: %d\n", v);
		R(setsockopt(s, IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero)));
		R(setsockopt(s, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)));
		v = -1;
		l = sizeof(v);
		R(getsockopt(d, IPPROTO_TCP, TCP_CORK, &v, &l));
		printf("cork through d after set through s: %d\n", v);
		R(write(s, "hello", 5));
		R(setsockopt(d, IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero)));
		close(d);
		close(s);
		peer_got(k);
	} else if (!strcmp(c, "rdhup")) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP }, out[4];
		int sv[2], ep = epoll_create1(0), n;

		if (ep < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
			return 1;
		ev.data.fd = sv[1];
		if (epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev) < 0)
			return 1;
		R(write(sv[0], "x", 1));
		R(shutdown(sv[0], SHUT_WR));
		n = epoll_wait(ep, out, 4, 100);
		printf("epoll_wait %d, events %s%s\n", n,
		       n > 0 && (out[0].events & EPOLLIN) ? "IN " : "",
		       n > 0 && (out[0].events & EPOLLRDHUP) ? "RDHUP" : "");
	} else if (!strcmp(c, "many")) {
		static struct epoll_event out[512];
		static int sv[257][2];
		int ep = epoll_create1(0);

		for (int i = 0; i < 257; i++) {
			struct epoll_event ev = { .events = EPOLLIN };

			if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) < 0)
				return 1;
			ev.data.fd = sv[i][1];
			if (epoll_ctl(ep, EPOLL_CTL_ADD, sv[i][1], &ev) < 0)
				return 1;
		}
		for (int i = 0; i < 257; i++)
			if (write(sv[i][0], "x", 1) != 1)
				return 1;
		printf("epoll_wait %d\n", epoll_wait(ep, out, 512, 100));
	} else if (!strcmp(c, "nb_full")) {
		static char big[4096];
		long told = 0, got = 0;
		ssize_t n;
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
			return 1;
		while ((n = write(sv[0], big, sizeof(big))) > 0)
			told += n;
		printf("writes until %s\n", strerrorname_np(errno));
		while (got < told)
			if ((n = read(sv[1], big, sizeof(big))) > 0)
				got += n;
		printf("read back all: %s\n", got == told ? "yes" : "no");
	} else {
		return 2;
	}
	return 0;
}
