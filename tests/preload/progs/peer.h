/* peer.h - reading_peer(sv): a unix stream socketpair whose sv[1] end a
 * forked child reads to EOF (and exits); the caller keeps sv[0].  0, or -1
 * with errno.  Reap the child with wait() after closing sv[0]. */
#ifndef PEER_H
#define PEER_H

#include <sys/socket.h>
#include <unistd.h>

static int reading_peer(int sv[2])
{
	char buf[4096];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(sv[0]);
		while (read(sv[1], buf, sizeof(buf)) > 0)
			;
		_exit(0);
	}
	close(sv[1]);
	return 0;
}

#endif
