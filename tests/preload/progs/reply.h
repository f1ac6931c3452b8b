/* reply.h - the server's side of progs/parked_reader.c and
 * progs/parked_then_pings.c: write_reply() writes len bytes with one
 * write() on non-blocking socket fd, which is in epoll set ep for EPOLLIN
 * (its data the fd), then waits until the client answers (EPOLLIN), writing
 * the rest as the socket takes it (EPOLLOUT, registered only while bytes
 * are left: plain Linux needs it; under esca the first write takes all,
 * deferred, and what the socket does not take parks).  Returns 0, or the
 * programs' exit code for what failed: 2 epoll_ctl, 4 write, 5 no answer in
 * 10 s.  *first: the first write's count; *waits: epoll waits returned. */
#ifndef PROGS_REPLY_H
#define PROGS_REPLY_H

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

static int write_reply(int ep, int fd, const char *buf, size_t len,
		       ssize_t *first, int *waits)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.fd = fd };
	ssize_t n = write(fd, buf, len);
	size_t sent;

	*first = n;
	if (n < 0)
		return 4;
	sent = (size_t)n;
	if (sent < len && epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0)
		return 2;
	for (;;) {
		struct epoll_event out;
		int r = epoll_wait(ep, &out, 1, 10000);

		if (r < 0 && errno == EINTR)
			continue;
		(*waits)++;
		if (r <= 0)
			return 5;
		if (out.events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			return 0;
		while (sent < len) {
			n = write(fd, buf + sent, len - sent);
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0)
				return 4;
			sent += (size_t)n;
		}
		ev.events = EPOLLIN;
		if (sent == len && epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0)
			return 2;
	}
}

#endif
