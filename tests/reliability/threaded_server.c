/* A multi-threaded server for test_threads.py: THREADS threads, each with
 * CONNS connections of its own, write a numbered sequence of records to
 * their connections (round-robin), with write, writev and send in turn,
 * and now and then wait at a barrier (a futex: no flush trigger, so a
 * deferred write must go out through the watchdog).  Then shutdown + close.
 *
 *   threaded_server THREADS CONNS RECORDS
 *
 * Prints the port it listens on (127.0.0.1), accepts THREADS*CONNS
 * connections (connection i belongs to thread i % THREADS), and exits 0
 * when every thread is done.  A record is
 *   "T<t> C<c> S<seq> L<len>|" + len bytes + "\n"
 * where the bytes are 'a' + (t*7 + c*3 + seq) % 26. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int nthreads, nconns, nrecords;
static int *fds;
static pthread_barrier_t barrier;

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void put_all(int fd, int how, const char *head, size_t hl,
		    const char *body, size_t bl)
{
	struct iovec iov[3] = { { (void *)head, hl }, { (void *)body, bl },
				{ (void *)"\n", 1 } };
	size_t want = hl + bl + 1;
	ssize_t r;

	if (how == 0) {
		char *buf = malloc(want);

		memcpy(buf, head, hl);
		memcpy(buf + hl, body, bl);
		buf[want - 1] = '\n';
		r = write(fd, buf, want);
		memset(buf, '#', want);	/* reused at once: the bytes must be copied */
		free(buf);
	} else if (how == 1) {
		r = writev(fd, iov, 3);
	} else {
		char *buf = malloc(want);

		memcpy(buf, head, hl);
		memcpy(buf + hl, body, bl);
		buf[want - 1] = '\n';
		r = send(fd, buf, want, 0);
		free(buf);
	}
	if (r != (ssize_t)want) {
		fprintf(stderr, "short or failed write: %zd of %zu\n", r, want);
		exit(3);
	}
}

static void *worker(void *arg)
{
	int t = (int)(long)arg;
	static __thread char body[4096];

	for (int seq = 0; seq < nrecords; seq++) {
		for (int c = 0; c < nconns; c++) {
			int fd = fds[c * nthreads + t];
			char head[64];
			size_t len = (size_t)((seq * 131 + t * 17 + c * 29) % 3000);
			int hl = snprintf(head, sizeof(head), "T%d C%d S%d L%zu|", t, c, seq, len);

			memset(body, 'a' + (t * 7 + c * 3 + seq) % 26, len);
			put_all(fd, (seq + c) % 3, head, (size_t)hl, body, len);
		}
		if (seq % 500 == 499)
			pthread_barrier_wait(&barrier);
	}
	for (int c = 0; c < nconns; c++) {
		int fd = fds[c * nthreads + t];

		shutdown(fd, SHUT_WR);
		close(fd);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	pthread_t *tids;
	int ls;

	if (argc != 4) {
		fprintf(stderr, "usage: %s THREADS CONNS RECORDS\n", argv[0]);
		return 2;
	}
	nthreads = atoi(argv[1]);
	nconns = atoi(argv[2]);
	nrecords = atoi(argv[3]);
	if (nthreads < 1 || nconns < 1 || nrecords < 1 || nrecords % 500)
		die("THREADS, CONNS >= 1 and RECORDS a multiple of 500");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(ls, 128) < 0 || getsockname(ls, (struct sockaddr *)&a, &l) < 0)
		die("listen");
	printf("%d\n", ntohs(a.sin_port));
	fflush(stdout);
	fds = calloc((size_t)(nthreads * nconns), sizeof(int));
	tids = calloc((size_t)nthreads, sizeof(pthread_t));
	for (int i = 0; i < nthreads * nconns; i++) {
		fds[i] = accept(ls, NULL, NULL);
		if (fds[i] < 0)
			die("accept");
	}
	close(ls);
	pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
	for (int t = 0; t < nthreads; t++)
		pthread_create(&tids[t], NULL, worker, (void *)(long)t);
	for (int t = 0; t < nthreads; t++)
		pthread_join(tids[t], NULL);
	return 0;
}
