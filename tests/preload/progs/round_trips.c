/* round_trips.c: a client that asks and waits with blocking reads, 400
 * round trips of 64 bytes on a unix stream socketpair: send (deferred), then
 * a blocking recv of the reply (it flushes the send).  The echo peer is a
 * forked child making raw system calls (the library sees none of them); it
 * waits 5 ms before every 10th reply, longer than the time bound
 * (ESCA_FLUSH_US, 2 ms), so a timer the library left armed fires inside the
 * client's blocking recv.  argv[1], how the client reads:
 *   plain     recv(fd, buf, 64, 0): the kernel restarts it after the
 *             library's signal (SA_RESTART); the timer may stay armed
 *   waitall   recv(..., MSG_WAITALL), the reply sent in two halves with the
 *             wait between them: a signal would end the read short
 *   rcvtimeo  SO_RCVTIMEO of 5 s on the client's socket: a signal would end
 *             the read with EINTR
 *   late      rcvtimeo set after the first 500 round trips (the library must
 *             look again once the program sets it)
 *   lowat     SO_RCVLOWAT of 64 bytes, the reply in two halves with the wait
 *             between them: Linux's recv returns all 64, a signal would end
 *             it at 32
 * Prints "ok" when every call returned what it should; else which failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 400
#define LEN 64

static void pause_ms(long ms)
{
	struct timespec t = { 0, ms * 1000000L };

	syscall(SYS_nanosleep, &t, NULL);
}

/* the peer: raw calls only */
static void echo(int fd, int halves)
{
	char b[LEN];

	for (int i = 0; i < N; i++) {
		long got = 0, r;

		while (got < LEN) {
			r = syscall(SYS_recvfrom, fd, b + got, LEN - got, 0,
				    NULL, NULL);
			if (r <= 0)
				_exit(3);
			got += r;
		}
		if (i % 10 == 9 && !halves)
			pause_ms(5);
		if (halves) {
			if (syscall(SYS_sendto, fd, b, LEN / 2, 0, NULL, 0) !=
			    LEN / 2)
				_exit(4);
			if (i % 10 == 9)
				pause_ms(5);
			if (syscall(SYS_sendto, fd, b + LEN / 2, LEN / 2, 0,
				    NULL, 0) != LEN / 2)
				_exit(4);
		} else if (syscall(SYS_sendto, fd, b, LEN, 0, NULL, 0) !=
			   LEN) {
			_exit(4);
		}
	}
	_exit(0);
}

static int set_timeout(int fd)
{
	struct timeval tv = { 5, 0 };

	return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "plain";
	int waitall = !strcmp(how, "waitall"), lowat = !strcmp(how, "lowat");
	int sv[2], st;
	char out[LEN], in[LEN];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		perror("socketpair");
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		close(sv[0]);
		echo(sv[1], waitall || lowat);
	}
	close(sv[1]);
	if (!strcmp(how, "rcvtimeo") && set_timeout(sv[0]) < 0) {
		perror("setsockopt");
		return 1;
	}
	if (lowat && setsockopt(sv[0], SOL_SOCKET, SO_RCVLOWAT, &(int){ LEN },
				sizeof(int)) < 0) {
		perror("setsockopt");
		return 1;
	}
	for (int i = 0; i < N; i++) {
		ssize_t r;

		if (i == N / 2 && !strcmp(how, "late") && set_timeout(sv[0]) < 0) {
			perror("setsockopt");
			return 1;
		}
		memset(out, 'a' + i % 26, sizeof(out));
		if (send(sv[0], out, LEN, 0) != LEN) {
			perror("send");
			return 1;
		}
		r = recv(sv[0], in, LEN, waitall ? MSG_WAITALL : 0);
		if (r < 0) {
			fprintf(stderr, "round trip %d: recv: %s\n", i, strerror(errno));
			return 1;
		}
		if (!waitall && !lowat && r > 0 && r < LEN) {	/* a stream may split it */
			ssize_t more = recv(sv[0], in + r, LEN - (size_t)r, MSG_WAITALL);

			r = more < 0 ? more : r + more;
		}
		if (r != LEN || memcmp(in, out, LEN)) {
			fprintf(stderr, "round trip %d: recv gave %zd bytes%s\n", i, r,
				r == LEN ? ", not the ones sent" : "");
			return 1;
		}
	}
	close(sv[0]);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "the echo peer failed (status %d)\n", st);
		return 1;
	}
	printf("ok\n");
	return 0;
}
