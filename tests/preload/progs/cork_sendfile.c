/* nginx's way with a small file over TCP (sendfile on, tcp_nopush): on a
 * non-blocking socket, TCP_CORK on, the header written, the file sent with
 * sendfile, TCP_CORK off, then a wait; ROUNDS times.  Under the library the
 * cork is composed (lever compose), and the sendfile makes it real in the
 * queue (cork.c, cork_queued).  The peer must get every byte; the stats'
 * fd_count_underflows must stay 0 (the queued cork was not counted, and its
 * completion gave back the sendfile's count).  argv[1] = a file path. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROUNDS 200
#define FILE_BYTES 2000

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	char buf[65536];
	long got = 0, want = 0;
	int l, c, s, f, on = 1, off0 = 0;

	if (argc < 2)
		return 2;
	memset(buf, 'f', FILE_BYTES);
	f = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (f < 0 || write(f, buf, FILE_BYTES) != FILE_BYTES)
		return 1;
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (void *)&a, al) || listen(l, 1) ||
	    getsockname(l, (void *)&a, &al))
		return 1;
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (void *)&a, al))
		return 1;
	s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
	if (s < 0)
		return 1;
	for (int i = 0; i < ROUNDS; i++) {
		struct stat st;
		struct pollfd p = { c, POLLIN, 0 };
		off_t off = 0;

		if (fstat(f, &st) ||
		    setsockopt(s, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) ||
		    write(s, "HTTP/1.1 200 OK\r\n\r\n", 19) != 19 ||
		    sendfile(s, f, &off, (size_t)st.st_size) != st.st_size ||
		    setsockopt(s, IPPROTO_TCP, TCP_CORK, &off0, sizeof(off0)))
			return 1;
		want += 19 + FILE_BYTES;
		while (got < want && poll(&p, 1, 2000) == 1) {
			ssize_t n = read(c, buf, sizeof(buf));

			if (n <= 0)
				break;
			got += n;
		}
	}
	printf("the peer got %s\n", got == want ? "every byte" : "fewer bytes");
	close(s);
	close(f);
	return 0;
}
