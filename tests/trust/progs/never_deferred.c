/* README, "What is deferred and what never is": one kind of call the library
 * must never defer, per run (argv[1] the case, argv[2] a directory for
 * files).  Each case first writes "ctl" to a connected stream socket (the
 * control: deferred under the library, so the test knows it was at work),
 * then makes the case's calls and prints each result and what a reader got.
 * The test compares the output with the plain run and asserts from the
 * stats that the case's calls were passed through, never deferred.
 *   pipe file dgram eventfd devnull tty stdio fdopen listen unconnected
 *   sendto_addr ancillary flags setsockopt budget */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

static void res(const char *what, long r)
{
	printf("%s %ld %s\n", what, r, r < 0 ? strerror(errno) : "");
}

static void got(const char *what, int fd)
{
	char buf[65536];
	long n = read(fd, buf, sizeof(buf));

	printf("%s read %ld '%.*s'\n", what, n, n > 40 ? 40 : (int)(n < 0 ? 0 : n), buf);
}

static void control(void)
{
	int s[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s))
		exit(2);
	res("ctl write", write(s[0], "ctl", 3));
	got("ctl", s[1]);	/* a blocking read: a flush trigger */
}

static void pair(int type, int s[2])
{
	if (socketpair(AF_UNIX, type, 0, s))
		exit(2);
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	const char *dir = argc > 2 ? argv[2] : "/tmp";
	struct iovec iov[2] = { { "ab", 2 }, { "cd", 2 } };
	char path[4096];
	int s[2], fd;

	control();
	fflush(stdout);
	if (!strcmp(c, "pipe")) {
		if (pipe(s))
			return 2;
		res("write", write(s[1], "pipe", 4));
		res("writev", writev(s[1], iov, 2));
		res("close", close(s[1]));
		got("reader", s[0]);
	} else if (!strcmp(c, "file")) {
		snprintf(path, sizeof(path), "%s/never-file", dir);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		res("write", write(fd, "file", 4));
		res("writev", writev(fd, iov, 2));
		res("close", close(fd));
		fd = open(path, O_RDONLY);
		got("file", fd);
	} else if (!strcmp(c, "dgram")) {
		pair(SOCK_DGRAM, s);
		res("write", write(s[0], "dg1", 3));
		res("send", send(s[0], "dg2", 3, 0));
		got("peer", s[1]);
		got("peer", s[1]);
		res("close", close(s[0]));
	} else if (!strcmp(c, "eventfd")) {
		uint64_t one = 1;

		fd = eventfd(0, 0);
		res("write", write(fd, &one, sizeof(one)));
		res("close", close(fd));
	} else if (!strcmp(c, "devnull")) {
		fd = open("/dev/null", O_WRONLY);
		res("write", write(fd, "null", 4));
		res("writev", writev(fd, iov, 2));
		res("close", close(fd));
	} else if (!strcmp(c, "tty")) {
		int m = posix_openpt(O_RDWR | O_NOCTTY);

		if (m < 0 || grantpt(m) || unlockpt(m) ||
		    (fd = open(ptsname(m), O_RDWR | O_NOCTTY)) < 0) {
			printf("tty unavailable\n");
			return 0;
		}
		res("write", write(fd, "tty", 3));
		res("close", close(fd));
		got("master", m);
	} else if (!strcmp(c, "stdio")) {
		/* fd 1 (a socket the test reads) and a dup of it */
		res("write", write(1, "w1\n", 3));
		fd = dup(1);
		res("writev", writev(fd, iov, 2));
		res("write", write(fd, "\n", 1));
	} else if (!strcmp(c, "fdopen")) {
		FILE *f;

		pair(SOCK_STREAM, s);
		f = fdopen(s[0], "w");
		res("write", write(s[0], "fdo", 3));
		fd = dup(s[0]);
		res("write", write(fd, "dup", 3));
		got("peer", s[1]);
		res("close", close(fd));
		res("fclose", fclose(f));
	} else if (!strcmp(c, "listen")) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		socklen_t l = sizeof(a);
		int on = 1;

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (bind(fd, (struct sockaddr *)&a, l) || listen(fd, 4) ||
		    getsockname(fd, (struct sockaddr *)&a, &l))
			return 2;
		res("close", close(fd));
		fd = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		/* the port is free again: plain, at once */
		res("rebind+listen", bind(fd, (struct sockaddr *)&a, l) || listen(fd, 4));
	} else if (!strcmp(c, "unconnected")) {
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		res("close", close(fd));
		res("fcntl after close", fcntl(fd, F_GETFD));
	} else if (!strcmp(c, "sendto_addr")) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };

		strcpy(a.sun_path, "/nonexistent/esca");
		pair(SOCK_STREAM, s);
		res("sendto", sendto(s[0], "to", 2, 0, (struct sockaddr *)&a, sizeof(a)));
		res("sendto null", sendto(s[0], "ok", 2, 0, NULL, 0) > 0 ? 0 : -1);
		got("peer", s[1]);
	} else if (!strcmp(c, "ancillary")) {
		char cbuf[CMSG_SPACE(sizeof(int))], rbuf[CMSG_SPACE(sizeof(int))];
		struct iovec v = { "anc", 3 };
		struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1,
				    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *cm;
		char data[8];
		struct iovec rv = { data, sizeof(data) };
		struct msghdr r = { .msg_iov = &rv, .msg_iovlen = 1,
				    .msg_control = rbuf, .msg_controllen = sizeof(rbuf) };
		long n;

		memset(cbuf, 0, sizeof(cbuf));
		cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		fd = 0;
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		pair(SOCK_STREAM, s);
		res("sendmsg", sendmsg(s[0], &m, 0));
		n = recvmsg(s[1], &r, 0);
		printf("recvmsg %ld '%.*s' fds %d\n", n, n > 0 ? (int)n : 0, data,
		       CMSG_FIRSTHDR(&r) && CMSG_FIRSTHDR(&r)->cmsg_type == SCM_RIGHTS);
	} else if (!strcmp(c, "flags")) {
		pair(SOCK_STREAM, s);
		res("send MSG_EOR", send(s[0], "eor", 3, MSG_EOR));
		res("send MSG_OOB", send(s[0], "o", 1, MSG_OOB));
		res("send 0", send(s[0], "end", 3, 0) == 3 ? 0 : -1);
		close(s[0]);
		got("peer", s[1]);
	} else if (!strcmp(c, "setsockopt")) {
		int v = 65536, on = 1;

		pair(SOCK_STREAM, s);
		res("SO_SNDBUF", setsockopt(s[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)));
		res("TCP_NODELAY on unix", setsockopt(s[0], IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)));
	} else if (!strcmp(c, "budget")) {
		/* over ESCA_BUDGET (the test sets 4096) */
		static char big[8192];

		memset(big, 'b', sizeof(big));
		pair(SOCK_STREAM, s);
		res("write 8192", write(s[0], big, sizeof(big)));
		got("peer", s[1]);
	} else {
		printf("unknown case %s\n", c);
		return 2;
	}
	return 0;
}
