/* SPDX-License-Identifier: MIT
 * epoll_server.c - a small non-blocking epoll server for the guest's preload tests (lkm/tests/test_preload.c), run with libesca.so preloaded: a request is a line "N\n", the answer N bytes, byte k = 'A' + k % 23, sent with write, writev and send in turn, 16 KiB at most per call, as far as the socket takes them (EPOLLOUT for the rest); a connection ends at end of file.
 *
 *   epoll_server      prints the 127.0.0.1 port, serves until killed */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAXC 64
#define CHUNK 16384

struct conn {
	int fd;
	char line[32];
	size_t linelen;
	size_t want, sent;	/* the answer being sent */
	unsigned calls;
};

static struct conn conns[MAXC];
static char pattern[CHUNK + 23];

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void drop(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
}

/* Send as much of c's answer as the socket takes; 1 when all is sent. */
static int pump(struct conn *c)
{
	while (c->sent < c->want) {
		size_t n = c->want - c->sent < CHUNK ? c->want - c->sent : CHUNK;
		const char *p = pattern + c->sent % 23;
		struct iovec v[2] = { { (void *)p, n / 2 },
				      { (void *)(p + n / 2), n - n / 2 } };
		ssize_t r;

		switch (c->calls++ % 3) {
		case 0: r = write(c->fd, p, n); break;
		case 1: r = writev(c->fd, v, 2); break;
		default: r = send(c->fd, p, n, MSG_NOSIGNAL); break;
		}
		if (r < 0)
			return errno == EAGAIN ? 0 : -1;
		c->sent += (size_t)r;
	}
	return 1;
}

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	struct epoll_event ev, evs[16];
	int ls, ep, one = 1;

	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (char)('A' + i % 23);
	for (int i = 0; i < MAXC; i++)
		conns[i].fd = -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 64) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &l) < 0)
		die("listen");
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = MAXC };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0)
		die("epoll_ctl");
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);
	for (;;) {
		int n = epoll_wait(ep, evs, 16, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			unsigned k = evs[i].data.u32;
			struct conn *c;
			ssize_t r;

			if (k == MAXC) {
				int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
				int j;

				if (fd < 0)
					continue;
				for (j = 0; j < MAXC && conns[j].fd >= 0; j++)
					;
				if (j == MAXC) {
					close(fd);
					continue;
				}
				conns[j] = (struct conn){ .fd = fd };
				ev = (struct epoll_event){ .events = EPOLLIN,
							   .data.u32 = (unsigned)j };
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
					die("epoll_ctl");
				continue;
			}
			c = &conns[k];
			if (c->fd < 0)
				continue;
			if (c->sent < c->want) {	/* EPOLLOUT: go on */
				int p = pump(c);

				if (p < 0) {
					drop(ep, c);
				} else if (p > 0) {
					ev = (struct epoll_event){ .events = EPOLLIN,
								   .data.u32 = k };
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
				continue;
			}
			r = read(c->fd, c->line + c->linelen, 1);
			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				drop(ep, c);
				continue;
			}
			if (r < 0)
				continue;
			if (c->line[c->linelen] != '\n' &&
			    c->linelen + 1 < sizeof(c->line)) {
				c->linelen++;
				continue;
			}
			c->line[c->linelen] = 0;
			c->want = strtoul(c->line, NULL, 10);
			c->sent = 0;
			c->linelen = 0;
			if (pump(c) == 0) {
				ev = (struct epoll_event){ .events = EPOLLOUT,
							   .data.u32 = k };
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
			} else if (c->sent < c->want) {
				drop(ep, c);
			}
		}
	}
}
