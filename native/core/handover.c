/* SPDX-License-Identifier: MIT
 * handover.c - a table gives its unfinished entries away (DESIGN.md,
 * "Contract: parked sends"): esca_table_hand_over() cancels what is in the
 * kernel's hands (the executor's cancel: esca__uring_cancel, here) and
 * reports, in order, each entry's rest (fd, bytes not yet sent, op) to the
 * caller, who queues it elsewhere (libesca.so: the heir thread, heir.c);
 * esca_fd_abort() cancels the same way and drops one fd's entries (a reset).
 */
#include <errno.h>
#include <string.h>

#include "sys.h"
#include "uring.h"

#define CANCEL_ROUNDS 20	/* of 50 ms: 1 s for the kernel to answer */

/* Cancel every request in flight and reap until none is: a send parked on
 * a full socket completes with what it had sent (io_uring/net.c,
 * io_sendrecv_fail: done_io when some bytes went, else -ECANCELED), a link
 * after it -ECANCELED; finalize() (uring.c) adds the bytes to e->done and
 * puts the entry back in the queue.  A sendfile reading from the file
 * position had read more than it sent: the position goes back by what was
 * read and not sent, so that the rest reads it again.  0, or -errno (-ETIME:
 * a request the kernel would not give back within 1 s). */
int esca__uring_cancel(struct esca_table *t)
{
	struct uring_state *u = t->priv;
	struct __kernel_timespec ts = { 0, 50000000 };
	struct io_uring_cqe *cqe;

	for (int i = 0; u->outstanding; i++) {
		struct io_uring_sqe *sqe;
		int r;

		if (i == CANCEL_ROUNDS)
			return -ETIME;
		sqe = io_uring_get_sqe(&u->ring);
		if (!sqe) {
			r = io_uring_submit(&u->ring);
			if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN)
				return r;
			continue;
		}
		io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
		io_uring_sqe_set_data64(sqe, CANCEL_TAG);
		u->outstanding++;
		t->st.kernel_entries++;
		r = io_uring_submit_and_wait_timeout(&u->ring, &cqe,
						     u->outstanding, &ts, NULL);
		esca__uring_reap(t, u);
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY &&
		    r != -EAGAIN)
			return r;
	}
	for (uint32_t i = t->head; i != t->tail; i++) {
		struct esca_entry *e = esca__ent(t, i);
		struct uring_slot *x = &u->x[e - t->ents];
		long r;

		if (e->state != ESCA_S_QUEUED || e->op != ESCA_OP_SENDFILE ||
		    e->offset >= 0 || x->staged <= x->staged_sent)
			continue;
		r = esca_sys_ret(syscall(SYS_lseek, e->fd2,
					 -(off_t)(x->staged - x->staged_sent),
					 SEEK_CUR));
		if (r < 0)
			return (int)r;
		x->staged = x->staged_sent = 0;
	}
	return 0;
}

/* The rest of e as the arguments of a new op: what is left to send. */
static void rest_of(const struct esca_table *t, struct esca_entry *e,
		    struct esca_args *a,
		    struct iovec *tmp)
{
	memset(a, 0, sizeof(*a));
	a->op = e->op;
	a->fd = e->fd;
	a->fd2 = e->fd2;
	a->flags = e->flags;
	a->optname = e->optname;
	a->order = e->key != e->fd ? e->key + 1 : 0;
	a->hints = e->nonblock ? ESCA_HINT_NONBLOCK : 0;
	if (e->op == ESCA_OP_SENDFILE && e->fd2 != e->fd &&
	    e->fd2 < t->nfds && t->fds[e->fd2].own)
		a->hints |= ESCA_HINT_OWN_FD2;	/* the taker closes it */
	a->iovcnt = e->iovcnt;
	a->iov = e->iov;
	a->offset = e->offset;
	a->count = e->len;
	if (e->op == ESCA_OP_SENDFILE) {
		if (e->offset >= 0)
			a->offset = e->offset + (int64_t)e->done;
		a->count = e->len - e->done;
	} else if (esca__is_data(e->op) && e->iov == &e->one) {
		tmp->iov_base = (char *)e->one.iov_base + e->done;
		tmp->iov_len = e->one.iov_len - e->done;
		a->iov = tmp;
		a->iovcnt = 1;
	} else if (esca__is_data(e->op)) {
		/* a borrowed array: cut what is done off its front (the array
		 * is the entry's own, uring.c data_slice does the same) */
		size_t s = e->done - e->dropped;
		int i = 0;

		while (i < e->iovcnt && s >= e->iov[i].iov_len)
			s -= e->iov[i++].iov_len;
		if (i < e->iovcnt && s) {
			e->iov[i].iov_base = (char *)e->iov[i].iov_base + s;
			e->iov[i].iov_len -= s;
		}
		e->dropped = e->done;
		a->iov = e->iov + i;
		a->iovcnt = e->iovcnt - i;
	}
}

/* Every entry in flight back to the queue with what it had done (the
 * executor's cancel): 0, or -errno (-EOPNOTSUPP: no cancel; -EBUSY: some
 * still in flight). */
static int cancel_all(struct esca_table *t)
{
	int r;

	if (!t->inflight)
		return 0;
	if (!t->ex->cancel)
		return -EOPNOTSUPP;
	r = t->ex->cancel(t);
	esca__retire(t);
	if (r < 0)
		return r;
	return t->inflight ? -EBUSY : 0;
}

int esca_table_hand_over(struct esca_table *t, esca_take_fn take, void *ctx)
{
	esca_complete_fn complete = t->complete;
	int r, n = 0;

	r = cancel_all(t);
	if (r < 0)
		return r;
	for (uint32_t i = t->head; i != t->tail; i++) {
		struct esca_entry *e = esca__ent(t, i);
		struct esca_args a;
		struct iovec tmp;

		if (e->state != ESCA_S_QUEUED)
			continue;
		rest_of(t, e, &a, &tmp);
		r = take(ctx, &a, e->user, e->done);
		if (r < 0)
			break;
		/* its completion is the taker's now: no callback here; a dup
		 * of ours it reads is the taker's to close */
		if (a.hints & ESCA_HINT_OWN_FD2)
			t->fds[e->fd2].own = 0;
		t->complete = NULL;
		esca__complete(t, e, (int64_t)e->len);
		t->complete = complete;
		n++;
	}
	esca__retire(t);
	return r < 0 ? r : n;
}

int esca_fd_abort(struct esca_table *t, int fd)
{
	int r = cancel_all(t), n = 0;

	if (r < 0)
		return r;
	for (uint32_t i = t->head; i != t->tail; i++) {
		struct esca_entry *e = esca__ent(t, i);

		if (e->state != ESCA_S_QUEUED || e->fd != fd)
			continue;
		if (e->op == ESCA_OP_SENDFILE && e->offset < 0 &&
		    e->len > e->done)
			/* from the file position, which stands after what
			 * went (the cancel wound it back): where the program
			 * was told it is, as Linux's sendfile had left it */
			(void)syscall(SYS_lseek, e->fd2,
				      (off_t)(e->len - e->done), SEEK_CUR);
		/* not -ECONNRESET: that marks the fd's key broken, and the
		 * number's next socket would find its sends skipped */
		esca__complete(t, e, -ECANCELED);
		n++;
	}
	esca__retire(t);
	return n;
}
