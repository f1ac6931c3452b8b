/* Issue 12 defect 2 (a): a pending deferred close(N) of a connected stream
 * socket (the only close the library defers: DESIGN.md, "Deferral scope"),
 * then close_range(N, ~0U, 0) (or closefrom(N)), then open(): the pending
 * close must not close the new file, and the socket's peer must get the
 * bytes written before the close, then EOF.
 * argv[1] = close_range | closefrom, argv[2] = dir. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char b[4096], buf[64] = "", got[64] = "";
	int sv[2], fa, fb, r, e, eof = 0;
	size_t n = 0;

	if (argc < 3)
		return 2;
	snprintf(b, sizeof(b), "%s/b.txt", argv[2]);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return perror("socketpair"), 1;
	fa = sv[1];				/* sv[0], the peer, is below it */
	if (write(fa, "bye", 3) != 3)		/* deferred under esca */
		return 1;
	close(fa);				/* deferred under esca */
	if (!strcmp(argv[1], "close_range"))
		r = close_range((unsigned)fa, ~0U, 0);
	else
		closefrom(fa), r = 0;
	fb = open(b, O_RDWR | O_CREAT | O_TRUNC, 0644);
	fprintf(stderr, "fa=%d fb=%d close_range=%d\n", fa, fb, r);
	/* the file is ours: a write, an fstat, a read back */
	r = (int)write(fb, "data-b", 6);
	e = errno;
	printf("write=%d%s\n", r, r < 0 ? strerror(e) : "");
	r = (int)pread(fb, buf, sizeof(buf) - 1, 0);
	e = errno;
	printf("pread=%d %s\n", r, r < 0 ? strerror(e) : buf);
	r = fcntl(fb, F_GETFD);
	e = errno;
	printf("getfd=%s\n", r < 0 ? strerror(e) : "ok");
	r = close(fb);
	e = errno;
	printf("close=%d%s\n", r, r < 0 ? strerror(e) : "");
	/* the peer: "bye", then EOF (10 s at most) */
	while (n < sizeof(got) - 1) {
		struct pollfd p = { .fd = sv[0], .events = POLLIN };
		ssize_t k;

		if (poll(&p, 1, 10000) != 1)
			break;
		k = read(sv[0], got + n, sizeof(got) - 1 - n);
		if (k <= 0) {
			eof = k == 0;
			break;
		}
		n += (size_t)k;
	}
	printf("peer=%s %s\n", got, eof ? "EOF" : "no EOF");
	fflush(stdout);
	return 0;
}
