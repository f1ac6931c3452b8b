/* Issue 12 defect 1: a worker thread write()s a reply on a connection, then
 * signals the I/O thread, which close()s it and accept()s the next client.
 * The reply must reach the first client, never the second.
 * Prints the port on stdout; the peer connects client A then client B. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int job_fd = -1, job_done, quit;

static void *worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	while (job_fd < 0)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	static const char reply[] = "reply-for-A\n";
	if (write(job_fd, reply, sizeof(reply) - 1) != sizeof(reply) - 1)
		fprintf(stderr, "worker write failed\n");
	pthread_mutex_lock(&mu);
	job_done = 1;
	pthread_cond_broadcast(&cv);
	while (!quit)	/* blocks where the library does not see it */
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return NULL;
}

int main(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	pthread_t th;
	int l = socket(AF_INET, SOCK_STREAM, 0), a, b;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (void *)&sa, sizeof(sa)) || listen(l, 16) ||
	    getsockname(l, (void *)&sa, &sl))
		return perror("listen"), 1;
	printf("%d\n", ntohs(sa.sin_port));
	fflush(stdout);
	pthread_create(&th, NULL, worker, NULL);

	a = accept(l, NULL, NULL);
	pthread_mutex_lock(&mu);
	job_fd = a;
	pthread_cond_broadcast(&cv);
	while (!job_done)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	close(a);		/* the worker is done with it */
	struct pollfd p = { .fd = l, .events = POLLIN };
	poll(&p, 1, 10000);	/* the event loop: client B is waiting */
	b = accept(l, NULL, NULL);
	fprintf(stderr, "a=%d b=%d\n", a, b);
	static const char hello[] = "hello-B\n";
	if (write(b, hello, sizeof(hello) - 1) != sizeof(hello) - 1)
		fprintf(stderr, "main write failed\n");
	poll(NULL, 0, 300);	/* the worker's pending bytes go out meanwhile */
	pthread_mutex_lock(&mu);
	quit = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(th, NULL);
	close(b);
	close(l);
	return 0;
}
