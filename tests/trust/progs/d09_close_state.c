/* Issue 12 defect 9: a deferred close must not change a file's state after
 * close() returned.
 *   lock DB: open; close; open; F_SETLK (write lock); a poll(0) (any event
 *            loop turn); prints "locked"; waits for a line on stdin while
 *            the test (another process) checks the lock
 *   port:    listen on 127.0.0.1:0; close; bind the same port again */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int lock(const char *path)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char line[16];
	int fd = open(path, O_RDWR | O_CREAT, 0644);

	if (fd < 0)
		return 1;
	close(fd);				/* the previous request's connection */
	fd = open(path, O_RDWR);
	if (fcntl(fd, F_SETLK, &fl))
		return perror("F_SETLK"), 1;
	poll(NULL, 0, 0);			/* the event loop turns */
	printf("locked\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))	/* the checker is done */
		return 1;
	fl.l_type = F_UNLCK;
	fcntl(fd, F_SETLK, &fl);
	close(fd);
	return 0;
}

static int port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0), r, e;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (void *)&sa, sizeof(sa)) || listen(s, 8) ||
	    getsockname(s, (void *)&sa, &sl))
		return 1;
	close(s);				/* reconfigure: stop listening */
	s = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	r = bind(s, (void *)&sa, sizeof(sa));
	e = errno;
	printf("bind again: %s\n", r ? strerror(e) : "ok");
	r = listen(s, 8);
	e = errno;
	printf("listen again: %s\n", r ? strerror(e) : "ok");
	fflush(stdout);
	close(s);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "lock"))
		return lock(argv[2]);
	if (argc > 1 && !strcmp(argv[1], "port"))
		return port();
	return 2;
}
