/* file_reads.c: 1,000 loop iterations of a server that answers small
 * files by reading them (lighttpd at 100 B): a small write to a unix stream
 * socket (deferred), a poll that flushes it, a read of a regular file.
 * The file read never blocks on a signal: the library must not stop and
 * re-arm its thread's timer around it (two system calls a request). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "peer.h"

int main(int argc, char **argv)
{
	int sv[2], fd;
	char buf[16];

	if (argc != 2)
		return 2;
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || reading_peer(sv) < 0)
		return 1;
	for (int i = 0; i < 1000; i++) {
		const char *bad = write(sv[0], "x", 1) != 1 ? "write" :
				  poll(NULL, 0, 0) != 0 ? "poll" :
				  read(fd, buf, sizeof(buf)) < 0 ? "read" :
				  lseek(fd, 0, SEEK_SET) != 0 ? "lseek" : NULL;

		if (bad) {
			perror(bad);	/* the test shows which call failed */
			return 1;
		}
	}
	close(sv[0]);
	if (wait(NULL) < 0) {
		perror("wait");
		return 1;
	}
	printf("ok\n");
	return 0;
}
