/* Found while rewriting tests/trust (not one of issue 12's defects): a
 * worker writes its part of a reply to the peer and hands over (a mutex the
 * library does not see); the I/O thread writes the rest and shuts the
 * socket down for writing (a lingering close), and the event loop turns.
 * Plain: the peer reads "AB", then EOF.  Under the library the worker's "A"
 * still sits in its table when the I/O thread's flush runs the shutdown:
 * when it runs, it fails with EPIPE and is lost (the error is counted but
 * never reaches the program).  `close` is held for other threads' entries
 * (DESIGN.md, "Contract: fd lifetime"); `shutdown` is not. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "trust_out.h"

static int turn;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void wait_turn(int t)
{
	pthread_mutex_lock(&mu);
	while (turn != t)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

static void give_turn(int t)
{
	pthread_mutex_lock(&mu);
	turn = t;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void *worker(void *arg)
{
	(void)arg;
	if (write(trust_out(), "A", 1) != 1)
		_exit(3);
	give_turn(1);
	wait_turn(2);
	poll(NULL, 0, 0);	/* the worker's loop turns too */
	return NULL;
}

int main(void)
{
	pthread_t th;
	int out = trust_out();

	signal(SIGPIPE, SIG_IGN);
	pthread_create(&th, NULL, worker, NULL);
	wait_turn(1);
	if (write(out, "B", 1) != 1)
		return 3;
	if (shutdown(out, SHUT_WR))
		return 4;
	poll(NULL, 0, 0);	/* the event loop turns */
	give_turn(2);
	pthread_join(th, NULL);
	return 0;
}
