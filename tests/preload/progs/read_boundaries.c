/* read_boundaries.c: an edge-triggered read-until-EAGAIN loop where a short
 * read does not mean an empty socket: a unix socket with an SCM_RIGHTS (or
 * SO_PASSCRED) message boundary, a TCP socket with urgent data; and one where
 * it does (plain TCP).  Prints, per case, every byte the loop got before the
 * wait that reports nothing more. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* what an edge-triggered loop reads from fd: waits, reads until EAGAIN,
 * until a wait of 300 ms reports nothing */
static void drain_loop(const char *name, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET }, got;
	char all[256], buf[64];
	size_t n = 0;
	int ep = epoll_create1(0);

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll");
	for (;;) {
		int m = epoll_wait(ep, &got, 1, 300);

		if (m < 0)
			die("epoll_wait");
		if (m == 0)
			break;
		for (;;) {
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r < 0 && errno == EAGAIN)
				break;
			if (r < 0)
				die("read");
			if (r == 0)
				break;
			if (n + (size_t)r > sizeof(all))
				die("too much");
			memcpy(all + n, buf, (size_t)r);
			n += (size_t)r;
		}
	}
	printf("%s %zu %.*s\n", name, n, (int)n, all);
	close(ep);
}

static void send_rights(int fd, const char *data)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} c;
	struct iovec v = { (void *)data, strlen(data) };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1,
			    .msg_control = c.b, .msg_controllen = sizeof(c.b) };
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	int one = 0;

	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &one, sizeof(int));
	if (sendmsg(fd, &m, 0) != (ssize_t)v.iov_len)
		die("sendmsg rights");
}

static void tcp_pair(int *c, int *s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&sa, &sl) < 0)
		die("listen");
	*c = socket(AF_INET, SOCK_STREAM, 0);
	if (*c < 0 || connect(*c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	*s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
	if (*s < 0)
		die("accept");
	close(l);
}

int main(void)
{
	int sv[2], c, s, one = 1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* unix stream: "abcd" with SCM_RIGHTS, then "efgh": two reads */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	if (fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0)
		die("fcntl");
	send_rights(sv[0], "abcd");
	if (write(sv[0], "efgh", 4) != 4)
		die("write");
	drain_loop("unix-rights", sv[1]);
	close(sv[0]);
	close(sv[1]);

	/* unix stream with SO_PASSCRED: each sender's bytes are a message */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	if (setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0)
		die("passcred");
	if (write(sv[0], "abcd", 4) != 4)
		die("write");
	if (fork() == 0) {	/* another sender: another message */
		int r = write(sv[0], "efgh", 4) == 4 ? 0 : 1;

		_exit(r);
	}
	usleep(100000);
	drain_loop("unix-passcred", sv[1]);
	close(sv[0]);
	close(sv[1]);

	/* TCP: "abcd", urgent "X", "efgh": a read stops at the urgent mark */
	tcp_pair(&c, &s);
	if (write(c, "abcd", 4) != 4 || send(c, "X", 1, MSG_OOB) != 1 ||
	    write(c, "efgh", 4) != 4)
		die("send");
	usleep(100000);
	drain_loop("tcp-urgent", s);
	close(c);
	close(s);

	/* TCP, nothing special: the read that drains it is short */
	tcp_pair(&c, &s);
	if (write(c, "hello", 5) != 5)
		die("send");
	drain_loop("tcp-plain", s);
	close(c);
	close(s);
	return 0;
}
