/* Found by session 19's memcached audit (fd exhaustion): a thread whose
 * send parks on a client that does not read, and that then finds every fd
 * number taken (EMFILE), could not make its progress fd; before its next
 * wait it completed the parked send in place, blocking its loop until that
 * client read (memcached -t 1 -c 16 -o no_maxconns_fast with its numbers
 * full: another client's answer not within 2 s, 9 runs of 9; plain at
 * once).  Under sequential the park itself needs the progress fd: the
 * flush before the wait blocked.
 *
 * A loop under RLIMIT_NOFILE 64 writes a 1 MiB reply, non-blocking, to a
 * "slow" socketpair whose reader thread reads only after 1.5 s (plain: a
 * short write, the rest on room; under esca deferred whole, the rest
 * parked); takes every number left (dup); writes "ping" to a second pair
 * and waits for its other end to be readable, and then for the reader's
 * "done" (written back on that pair once it has every byte) while the reply
 * moves.  Prints whether the ping came before the slow reader began (plain:
 * at once), then the bytes the reader got and their sum.  argv[1] names the
 * wait: epoll (epoll_wait), pwait (epoll_pwait, a mask: the library's timer
 * signal must get through it), poll, ppoll; or pause: no ping, the loop
 * pauses until the reader has what the writes said was written and sends
 * SIGUSR1 (under uring the parked bytes then moved only with a progress fd:
 * pause's wait blocked the timer signal without one, and waited for good).
 * more: epoll, after a zero-timeout poll and one more write to the full
 * socket, which must say EAGAIN (an entry left queued under sequential was taken for no parked
 * send: that write was accepted, and a later one blocked in a waiting
 * flush); exit: the program, no reader started, exits with the reply
 * unread, which must not hang (the exit's drain waited for every entry).
 * ppoll_max: no number taken, but ppoll's nfds is RLIMIT_NOFILE, so the
 * progress fd's extra entry is refused (EINVAL) and the wait goes without
 * it: its mask kept the timer signal out, and the reply never moved.
 * freed: epoll, after a close of another connected socket and a 1 MiB
 * write to a third, never read, all queued with the reply: in that flush
 * the reply parks with no number left and the close frees one.  The reply
 * must still move: at c6331cf the third write's park made the progress fd
 * with that number, and the reply, parked unwatched, was tried no more (a
 * hang); now one attempt at it a flush, and the next makes it and parks
 * both watched.
 * argv[2], if given, is how many numbers to leave free.
 * alarm(20) ends a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SIZE (1 << 20)
#define SLOW_MS 1500

static int slow[2], fast[2], other[2], third[2];
static unsigned char reply[SIZE];
static size_t written;		/* what the writes said, before the pause */
static pthread_t loop;
static const char *how;

struct got {
	size_t n;
	uint64_t sum;
};

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void *slow_reader(void *a)
{
	struct got *g = a;
	struct timespec d = { SLOW_MS / 1000, (SLOW_MS % 1000) * 1000000L };
	unsigned char b[65536];
	ssize_t r;

	nanosleep(&d, NULL);
	while ((r = read(slow[1], b, sizeof(b))) > 0) {
		for (ssize_t i = 0; i < r; i++)
			g->sum = g->sum * 31 + b[i];
		g->n += (size_t)r;
		if (g->n == __atomic_load_n(&written, __ATOMIC_ACQUIRE) &&
		    !strcmp(how, "pause") && pthread_kill(loop, SIGUSR1))
			_exit(93);
		if (g->n == SIZE && write(fast[1], "done", 4) != 4)
			_exit(93);
	}
	if (r < 0)
		_exit(93);
	return NULL;
}

static void on_usr1(int sig)
{
	(void)sig;
}

/* Wait for fds (want: POLLIN or POLLOUT each) the way argv[1] says;
 * sets each got; -1 on error. */
static int wait_for(int ep, int n, const int *fds, const short *want,
		    short *got)
{
	struct epoll_event out[4];
	struct pollfd p[64];
	sigset_t none;
	int r;

	sigemptyset(&none);
	if (!strncmp(how, "poll", 4) || !strncmp(how, "ppoll", 5)) {
		struct timespec t = { 5, 0 };
		int all = n;

		for (int i = 0; i < n; i++)
			p[i] = (struct pollfd){ fds[i], want[i], 0 };
		if (!strcmp(how, "ppoll_max"))	/* nfds = RLIMIT_NOFILE */
			for (; all < 64; all++)
				p[all] = (struct pollfd){ -1, 0, 0 };
		r = how[1] == 'p' ? ppoll(p, (nfds_t)all, &t, &none) :
				    poll(p, (nfds_t)n, 5000);
		if (r <= 0)
			return -1;
		for (int i = 0; i < n; i++)
			got[i] = p[i].revents;
		return 0;
	}
	for (int i = 0; i < n; i++) {
		struct epoll_event ev = {
			.events = want[i] == POLLIN ? EPOLLIN : EPOLLOUT,
			.data.u32 = (uint32_t)i,
		};

		if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0)
			return -1;
		got[i] = 0;
	}
	r = !strcmp(how, "pwait") ? epoll_pwait(ep, out, 4, 5000, &none) :
				    epoll_wait(ep, out, 4, 5000);
	for (int i = 0; i < n; i++)
		if (epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL) < 0)
			return -1;
	if (r <= 0)
		return -1;
	for (int i = 0; i < r; i++)
		got[out[i].data.u32] = want[out[i].data.u32];
	return 0;
}

int main(int argc, char **argv)
{
	struct rlimit rl = { 64, 64 };
	static struct got g;	/* not main's frame: the reader may outlive
				 * main's return (an error's) in the exit's
				 * drain, and wrote into the library's frames */
	size_t off = 0;
	pthread_t t;
	uint64_t t0;
	char b[8];
	int dups[64], ep, taken = 0, pinged, done = 0;

	alarm(20);
	how = argc > 1 ? argv[1] : "epoll";
	loop = pthread_self();
	for (size_t i = 0; i < SIZE; i++)
		reply[i] = (unsigned char)(i * 7 + i / 4099);
	if (signal(SIGUSR1, on_usr1) == SIG_ERR ||
	    setrlimit(RLIMIT_NOFILE, &rl) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, slow) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, fast) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, other) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, third) < 0 ||
	    fcntl(third[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(slow[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(fast[0], F_SETFL, O_NONBLOCK) < 0 ||
	    (ep = epoll_create1(0)) < 0)
		return 90;
	/* a first exchange while numbers are free: the thread's table (and
	 * ring) are made */
	if (write(fast[0], "hi", 2) != 2 || read(fast[1], b, 2) != 2)
		return 91;
	/* exit: no reader, the reply is never read */
	if (strcmp(how, "exit") && pthread_create(&t, NULL, slow_reader, &g))
		return 92;
	/* the reply: plain takes what fits */
	while (off < SIZE) {
		ssize_t w = write(slow[0], reply + off, SIZE - off);

		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0)
			return 94;
		off += (size_t)w;
	}
	__atomic_store_n(&written, off, __ATOMIC_RELEASE);
	while (strcmp(how, "ppoll_max") && taken < 64 &&
	       (dups[taken] = dup(0)) >= 0)
		taken++;
	if (strcmp(how, "ppoll_max") && (errno != EMFILE || taken < 1))
		return 95;
	/* argv[2]: numbers left free (under uring, one: an eventfd, alone
	 * the progress fd, but no epoll set) */
	for (int k = argc > 2 ? atoi(argv[2]) : 0; k > 0 && taken > 0; k--)
		if (close(dups[--taken]) < 0)
			return 102;
	if (!strcmp(how, "freed")) {
		/* queued behind the reply, in its flush: a close that frees
		 * a number, then a send that parks with it */
		if (close(other[0]) < 0 ||
		    write(third[0], reply, SIZE) < 0)
			return 104;
		how = "epoll";
	}
	if (!strcmp(how, "exit")) {
		printf("exiting with the reply unread\n");
		fflush(stdout);
		exit(0);
	}
	if (!strcmp(how, "more")) {
		ssize_t w;

		/* a wait, whose flush finds the socket full (before it, a
		 * write after a deferred one is queued behind it, taken) */
		if (poll(NULL, 0, 0) < 0)
			return 103;
		w = write(slow[0], reply, 65536);

		printf("a write after it: %s\n",
		       w < 0 && errno == EAGAIN ? "EAGAIN" : "taken");
		how = "epoll";
	}
	pinged = !strcmp(how, "pause");
	if (pinged) {
		if (pause() != -1 || errno != EINTR)
			return 101;
		printf("pause ended when the slow reader had it all\n");
	}
	t0 = now_ms();
	if (!pinged && write(fast[0], "ping", 4) != 4)
		return 97;
	while (!pinged || !done || off < SIZE) {
		int fds[3], n = 0;
		short want[3], got[3];

		if (!pinged) {
			fds[n] = fast[1];
			want[n++] = POLLIN;
		}
		if (!done) {
			fds[n] = fast[0];
			want[n++] = POLLIN;
		}
		if (off < SIZE) {
			fds[n] = slow[0];
			want[n++] = POLLOUT;
		}
		if (wait_for(ep, n, fds, want, got) < 0)
			return 98;
		for (int i = 0; i < n; i++) {
			if (!got[i])
				continue;
			if (fds[i] == fast[1]) {
				if (read(fast[1], b, 4) != 4)
					return 99;
				pinged = 1;
				printf("ping %s the slow reader began\n",
				       now_ms() - t0 < SLOW_MS / 3 ?
				       "before" : "after");
				fflush(stdout);
			} else if (fds[i] == fast[0]) {
				if (read(fast[0], b, 4) != 4)
					return 99;
				done = 1;
			} else {
				ssize_t w = write(slow[0], reply + off,
						  SIZE - off);

				if (w < 0 && errno != EAGAIN)
					return 94;
				if (w > 0)
					off += (size_t)w;
			}
		}
	}
	if (shutdown(slow[0], SHUT_WR) < 0 || pthread_join(t, NULL))
		return 100;
	while (taken > 0)	/* numbers for the stats file, at exit */
		if (close(dups[--taken]) < 0)
			return 102;
	printf("slow reader got %zu bytes, sum %llx\n", g.n,
	       (unsigned long long)g.sum);
	return 0;
}
