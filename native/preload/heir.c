/* SPDX-License-Identifier: MIT
 * heir.c - the library's heir thread (DESIGN.md, "Contract: parked sends"):
 * heir_take() at a thread's end gives its unfinished entries (parked sends
 * cancelled, less the bytes already sent) to the heir, a thread of the
 * library's started on the first hand-over, which queues them in its own
 * table and keeps them moving; heir_after_fork() forgets it in a child;
 * rests_collect() the same rests for exec's drain process (execdrain.c). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

/* user bit of a piece of a rest that is not its last (heir_complete): the
 * fd's count (fdinfo.users) is the last piece's to give back */
#define HEIR_PART (1ull << 63)

static pthread_mutex_t heir_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t heir_cond = PTHREAD_COND_INITIALIZER;
static struct rest *inbox, **inbox_tail = &inbox;
static int heir_state;		/* 0 none, 1 starting, 2 running, -1 failed */
static uint32_t heir_tid;	/* its kernel tid, for fdinfo.users */

static void heir_complete(void *ctx, uint64_t user, int op, int fd, int64_t r)
{
	struct fdinfo *fi;

	if (!(user & HEIR_PART)) {
		fd_on_complete(ctx, user, op, fd, r);
		return;
	}
	fi = fdi(fd);
	if (fi && (r < 0 || (uint64_t)r < (user & ~HEIR_PART)))
		__atomic_store_n(&fi->err, r < 0 ? (int)-r : EPIPE,
				 __ATOMIC_RELAXED);
}

/* Queue the next piece of n: 1 when n is all queued, 0 when more is left,
 * -ENOBUFS when the table is full (the heir waits for progress). */
static int queue_piece(struct tstate *ts, struct rest *n, size_t chunk)
{
	struct esca_args a = n->a;
	struct iovec v = { n->data + n->off, n->len - n->off };
	uint64_t user = n->user;
	int data = a.op == ESCA_OP_WRITE || a.op == ESCA_OP_WRITEV ||
		   a.op == ESCA_OP_SEND || a.op == ESCA_OP_SENDMSG;
	int64_t r;

	if (data && v.iov_len > chunk) {
		v.iov_len = chunk;
		user = chunk | HEIR_PART;
	} else if (data) {
		user = v.iov_len;
	}
	if (data || a.op == ESCA_OP_SETSOCKOPT) {
		a.iov = &v;
		a.iovcnt = data && !v.iov_len ? 0 : 1;
	}
	r = esca_queue(ts->table, &a, 0, user);
	if (r == -ENOBUFS)
		return (int)r;
	if (r < 0) {
		/* cannot be queued (it was once): its answer, as a call's */
		heir_complete(ts, user, a.op, a.fd, r);
		if (data && (user & HEIR_PART))
			heir_complete(ts, n->user & ~HEIR_PART, a.op, a.fd, r);
		return 1;
	}
	n->off += v.iov_len;
	return !data || n->off >= n->len;
}

static void *heir_main(void *arg)
{
	struct tstate *ts = arg;
	struct rest *work = NULL, **work_tail = &work;
	size_t chunk = cfg.budget / 4 > 65536 ? cfg.budget / 4 : 65536;
	struct timespec ms = { 0, 1000000 };
	struct esca_config c = { 0 };
	int err = 0;

	/* its ring is made here, by the task that submits to it
	 * (SINGLE_ISSUER, DEFER_TASKRUN) */
	c.executor = table_executor;
	c.capacity = cfg.capacity;
	c.byte_budget = cfg.budget;
	c.complete = heir_complete;
	c.ctx = ts;
	ts->table = esca_table_new(&c, &err);
	if (!ts->table || !(esca_table_caps(ts->table) & ESCA_CAP_PARKS)) {
		esca_table_free(ts->table);
		ts_free(ts);
		pthread_mutex_lock(&heir_lock);
		heir_state = -1;
		pthread_cond_broadcast(&heir_cond);
		pthread_mutex_unlock(&heir_lock);
		return NULL;
	}
	ts->tid = pthread_self();
	pthread_setname_np(ts->tid, "esca-heir");
	ts->wait_token = ((uint64_t)(uint32_t)syscall(SYS_gettid) << 32) | 1;
	tls_ts = ts;	/* its calls: none interposed; a guard for good */
	thread_add(ts);
	pthread_mutex_lock(&heir_lock);
	heir_tid = (uint32_t)(ts->wait_token >> 32);
	heir_state = 2;
	pthread_cond_broadcast(&heir_cond);
	for (;;) {
		while (!inbox && !work && !esca_table_pending(ts->table))
			pthread_cond_wait(&heir_cond, &heir_lock);
		if (inbox) {
			*work_tail = inbox;
			work_tail = inbox_tail;
			inbox = NULL;
			inbox_tail = &inbox;
		}
		pthread_mutex_unlock(&heir_lock);
		while (work) {
			struct rest *n = work;
			int r = queue_piece(ts, n, chunk);

			if (r < 0)
				break;
			if (r == 1) {
				work = n->next;
				if (!work)
					work_tail = &work;
				free(n);
			}
		}
		esca_flush(ts->table, ESCA_FLUSH_REAP, ESCA_WHY_LIFECYCLE);
		note_pending(ts, work || esca_table_pending(ts->table));
		/* the bytes move while it waits (DEFER_TASKRUN: in the
		 * ring's wait); a new hand-over waits at most 50 ms */
		if (esca_table_inflight(ts->table))
			esca_table_wait(ts->table, 50);
		else if (esca_table_pending(ts->table))
			syscall(SYS_nanosleep, &ms, NULL);
		pthread_mutex_lock(&heir_lock);
	}
	return NULL;
}

/* Start the heir once; 0 when it runs. */
static int heir_start(void)
{
	struct tstate *ts;
	pthread_attr_t at;
	pthread_t th;
	sigset_t all, old;
	int r;

	pthread_mutex_lock(&heir_lock);
	while (heir_state == 1)
		pthread_cond_wait(&heir_cond, &heir_lock);
	r = heir_state;
	if (r == 0)
		heir_state = 1;
	pthread_mutex_unlock(&heir_lock);
	if (r)
		return r == 2 ? 0 : -1;
	ts = ts_alloc();
	if (!ts)
		goto fail;
	ts->pfd = -1;
	ts->in_wait = 1;	/* the watchdog leaves it alone */
	ts->guard = 1;
	/* it takes no signal: every signal is the program's threads' */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	r = real.pthread_create(&th, &at, heir_main, ts);
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		ts_free(ts);
		goto fail;
	}
	pthread_mutex_lock(&heir_lock);
	while (heir_state == 1)
		pthread_cond_wait(&heir_cond, &heir_lock);
	r = heir_state;
	pthread_mutex_unlock(&heir_lock);
	if (r == 2)
		return 0;
	say("no heir thread: a thread that ends waits for its parked sends");
	return -1;
fail:
	say("no heir thread: a thread that ends waits for its parked sends");
	pthread_mutex_lock(&heir_lock);
	heir_state = -1;
	pthread_cond_broadcast(&heir_cond);
	pthread_mutex_unlock(&heir_lock);
	return -1;
}

/* The ending thread's entries of fi now wait in the heir's table: a call of
 * another thread on the fd waits for the heir (fd_wait_others), not for a
 * thread that is gone. */
static void adopt_fd(int fd, uint32_t from)
{
	struct fdinfo *fi = fdi(fd);
	uint64_t w, nw;

	if (!fi)
		return;
	w = __atomic_load_n(&fi->users, __ATOMIC_RELAXED);
	do {
		if (FU_OWNER(w) != from)
			return;
		nw = (w & 0xffffffffull) | ((uint64_t)heir_tid << 32);
	} while (!__atomic_compare_exchange_n(&fi->users, &w, nw, 1,
					      __ATOMIC_ACQ_REL,
					      __ATOMIC_RELAXED));
}

struct handing {
	struct rest *list, **tail;
	uint32_t from;		/* adopt its fds for the heir; 0: do not */
};

/* esca_table_hand_over's taker: one rest, its bytes copied. */
static int take(void *ctx, const struct esca_args *a, uint64_t user,
		size_t done)
{
	struct handing *h = ctx;
	struct rest *n;
	size_t len = 0;
	char *p;

	if (a->op == ESCA_OP_SETSOCKOPT)
		len = a->iov[0].iov_len;
	else if (a->op != ESCA_OP_SENDFILE && a->op != ESCA_OP_SHUTDOWN &&
		 a->op != ESCA_OP_CLOSE && a->op != ESCA_OP_FSYNC)
		for (int i = 0; i < a->iovcnt; i++)
			len += a->iov[i].iov_len;
	n = malloc(sizeof(*n) + len);
	if (!n)
		return -ENOMEM;
	n->next = NULL;
	n->a = *a;
	n->a.iov = NULL;
	n->len = len;
	n->off = 0;
	p = n->data;
	for (int i = 0; len && i < a->iovcnt; i++) {
		memcpy(p, a->iov[i].iov_base, a->iov[i].iov_len);
		p += a->iov[i].iov_len;
	}
	/* defer.c: bytes asked, and a sendfile's in_fd + 1 above bit 40 */
	n->user = user;
	if (a->op == ESCA_OP_SENDFILE)
		n->user = (user & ~((1ull << 40) - 1)) |
			  ((user & ((1ull << 40) - 1)) - done);
	if (h->from)
		adopt_fd(a->fd, h->from);
	if (h->from && a->op == ESCA_OP_SENDFILE)
		adopt_fd(a->fd2, h->from);
	*h->tail = n;
	h->tail = &n->next;
	return 0;
}

/* At ts's end (tstate_destroy), after a reaping flush left entries: give
 * them to the heir.  1 when the table holds nothing any more; 0 when it
 * could not (no heir), and the
 * caller waits for them as before. */
int heir_take(struct tstate *ts)
{
	struct handing h = { NULL, &h.list, (uint32_t)(ts->wait_token >> 32) };
	int r;

	if (!(esca_table_caps(ts->table) & ESCA_CAP_PARKS) || heir_start() < 0)
		return 0;
	r = esca_table_hand_over(ts->table, take, &h);
	if (h.list) {
		pthread_mutex_lock(&heir_lock);
		*inbox_tail = h.list;
		inbox_tail = h.tail;
		pthread_cond_signal(&heir_cond);
		pthread_mutex_unlock(&heir_lock);
	}
	return r >= 0 && !esca_table_pending(ts->table);
}

/* Before exec (execdrain.c): ts's unfinished entries, cancelled where
 * parked, as a list of rests in order (*list); the table is left empty.
 * 0, or -errno (what could not be taken stays queued). */
int rests_collect(struct tstate *ts, struct rest **list)
{
	struct handing h = { NULL, &h.list, 0 };
	int r;

	r = esca_table_hand_over(ts->table, take, &h);
	*list = h.list;
	return r < 0 ? r : 0;
}

/* In a fork child: no heir thread here (its state went with the parent's
 * other threads, thread_atfork_child); one is started again if needed. */
void heir_after_fork(void)
{
	pthread_mutex_init(&heir_lock, NULL);
	pthread_cond_init(&heir_cond, NULL);
	inbox = NULL;
	inbox_tail = &inbox;
	heir_state = 0;
	heir_tid = 0;
}
