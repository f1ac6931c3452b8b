/* kept_file.c MODE PATH: a file sent with sendfile to a non-blocking
 * socket whose reader waits 800 ms before reading, then closed (what nginx
 * does once it was told the file's last chunk went).  MODE "nolock": the
 * close must return at once (under esca the sendfile is parked on the full
 * socket; the close used to wait for it, i.e. for the reader).  MODE
 * "lock": the file holds an flock; after the close a new open of PATH must
 * get the lock at once (a dup the library kept open for the parked
 * sendfile would still hold it).  Prints "sent N", "close_quick Q" (1: the
 * close took less than 400 ms), "lock_free F" (lock mode) and "reader R"
 * (the reader got the file's N bytes in order); exits 0, 1 on a failed
 * call. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N (4 << 20)

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static double now_ms(void)
{
	struct timespec t;

	if (clock_gettime(CLOCK_MONOTONIC, &t) < 0)
		die("clock_gettime");
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static unsigned char pat(size_t i)
{
	return (unsigned char)(i * 7 + i / 4096);
}

/* The child: wait, then read everything; 0 when all N bytes came in order. */
static int reader(int s)
{
	static char buf[65536];
	size_t got = 0;

	usleep(800000);
	for (;;) {
		ssize_t r = read(s, buf, sizeof(buf));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return 2;
		if (r == 0)
			break;
		for (ssize_t k = 0; k < r; k++)
			if ((unsigned char)buf[k] != pat(got + (size_t)k))
				return 3;
		got += (size_t)r;
	}
	return got == N ? 0 : 4;
}

int main(int argc, char **argv)
{
	static unsigned char data[N];
	int sv[2], fd, lock, status, one = 4096;
	off_t off = 0;
	size_t sent = 0;
	double t0;
	pid_t kid;

	if (argc != 3)
		return 2;
	lock = strcmp(argv[1], "lock") == 0;
	for (size_t i = 0; i < N; i++)
		data[i] = pat(i);
	fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, N) != N || close(fd) < 0)
		die("write the file");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)) < 0)
		die("SO_SNDBUF");
	kid = fork();
	if (kid < 0)
		die("fork");
	if (kid == 0) {
		close(sv[0]);
		_exit(reader(sv[1]));
	}
	close(sv[1]);
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0)
		die("O_NONBLOCK");
	fd = open(argv[2], O_RDONLY);
	if (fd < 0)
		die("open");
	if (lock && flock(fd, LOCK_EX) < 0)
		die("flock");
	/* as a server does: send until the socket is full, then wait for
	 * room; under esca the first call takes it all */
	while (sent < N) {
		ssize_t r = sendfile(sv[0], fd, &off, N - sent);

		if (r < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = sv[0], .events = POLLOUT };

			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				die("poll");
			continue;
		}
		if (r <= 0)
			die("sendfile");
		sent += (size_t)r;
	}
	printf("sent %zu\n", sent);
	t0 = now_ms();
	if (close(fd) < 0)
		die("close");
	printf("close_quick %d\n", now_ms() - t0 < 400);
	if (lock) {
		int f2 = open(argv[2], O_RDONLY);

		if (f2 < 0)
			die("open again");
		printf("lock_free %d\n", flock(f2, LOCK_EX | LOCK_NB) == 0);
		close(f2);
	}
	if (close(sv[0]) < 0)
		die("close socket");
	if (waitpid(kid, &status, 0) != kid)
		die("waitpid");
	printf("reader %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128);
	return 0;
}
