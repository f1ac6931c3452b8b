/* Found by session 20's last review (from reading): a close with SO_LINGER
 * { 1, 0 } of a socket whose send is parked drops that send
 * (esca_fd_abort), which takes every parked entry of the thread back to
 * the queue to wait for room, the other sockets' too; under lkm the
 * reaping flush that follows then waited for room on another socket whose
 * peer does not read: the close never returned.  (8d52cb2 had removed the
 * zero-timeout check that keeps a reaping round from waiting; reverted.)
 *
 * Two socketpairs, non-blocking, 1 MiB written to each, a zero-timeout poll
 * (its flush parks both), SO_LINGER { 1, 0 } on the second and its close:
 * prints how long the close took (plain: at once), then exits with the
 * first reply unread (the exit's drain gives up on it).  alarm(10) ends a
 * hang. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SIZE (1 << 20)

static char reply[SIZE];

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(void)
{
	struct linger l = { 1, 0 };
	int a[2], b[2];
	double t0;

	alarm(10);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, b) < 0 ||
	    fcntl(a[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(b[0], F_SETFL, O_NONBLOCK) < 0)
		return 90;
	if (write(a[0], reply, SIZE) <= 0 || write(b[0], reply, SIZE) <= 0)
		return 91;
	if (poll(NULL, 0, 0) < 0 ||
	    setsockopt(b[0], SOL_SOCKET, SO_LINGER, &l, sizeof(l)) < 0)
		return 92;
	t0 = now_ms();
	if (close(b[0]) < 0)
		return 93;
	printf("the close returned %s\n",
	       now_ms() - t0 < 500 ? "at once" : "late");
	return 0;
}
