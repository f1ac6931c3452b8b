/* SPDX-License-Identifier: MIT
 * uring.c - the default executor: the table goes to the kernel through an
 * io_uring submission ring, one io_uring_enter per round.  Here: rounds
 * (esca__uring_round, prep_entry), reap (esca__uring_reap), finalize, the
 * flush (esca__uring_flush); the ring is set up in uring_setup.c, an
 * epoll wait folded into a flush in uring_fold.c, and what runs as the
 * plain syscall (a one-call flush, a direct sendfile) in uring_direct.c.
 *
 * Order (DESIGN.md, "Contract: order"; order.h says which entries go into
 * a round).  Per key, the entries of one round form one chain linked with
 * IOSQE_IO_LINK, so the kernel runs them in order.  A link breaks on an
 * error or a short result and the rest of the chain completes -ECANCELED
 * with no side effect: those entries go back to QUEUED and run in the next
 * round, after what broke the link has been dealt with (the remainder of a
 * short write is sent first).
 *
 * Short writes (DESIGN.md, "Contract: short writes").  Sends carry
 * MSG_WAITALL: on a stream socket the kernel finishes the send itself
 * (parking on a full buffer).  write/writev go out as SEND first; -ENOTSOCK
 * marks the fd as no socket (a regular file's write then runs as the plain
 * syscall: needs_direct) and the op is redone as WRITE.  A WRITE on an
 * O_NONBLOCK pipe can say -EAGAIN at once (liburing #274): the entry is
 * redone behind a POLL_ADD(POLLOUT) link.
 *
 * sendfile has no io_uring op: READ into the entry's bounce buffer, linked
 * to a SEND of it (two copies; see issue 7 for the zero-copy lever).
 *
 * setsockopt is IORING_OP_URING_CMD SOCKET_URING_OP_SETSOCKOPT (Linux 6.7),
 * probed once per process; without it the op runs as a plain syscall at its
 * turn in the key's order.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "order.h"
#include "sys.h"
#include "uring.h"

/* user_data of an entry's SQE: its struct uring_slot's address | stage */
enum { STAGE_MAIN = 0, STAGE_READ = 1, STAGE_POLL = 2 };
#define STAGE_MASK 3ull
#define MAX_REAP_ROUNDS 4
_Static_assert(_Alignof(struct uring_slot) > STAGE_MASK, "stage bits free");

static void tag(struct io_uring_sqe *sqe, const struct uring_slot *x,
		int stage)
{
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)x | (uint64_t)stage);
}

/* An fd the kernel refused a socket's command on: no socket (fstat)?  It
 * is then known as none (esca__fd_not_socket). */
static int not_a_socket_now(struct esca_table *t, int fd)
{
	struct stat st;

	t->st.kernel_entries++;
	if (esca_sys_fstat(fd, &st) != 0 || S_ISSOCK(st.st_mode))
		return 0;
	esca__fd_not_socket(t, fd);
	return 1;
}

/* Everything the kernel said about e is in; decide. */
static void finalize(struct esca_table *t, struct esca_entry *e,
		     struct uring_slot *x)
{
	int32_t r = x->res_main;

	if (x->res_poll < 0 && x->res_poll != -ECANCELED) {
		/* the poll before a write failed: that is the write's answer */
		esca__complete(t, e, e->done ? (int64_t)e->done : x->res_poll);
		return;
	}
	if (e->op == ESCA_OP_SENDFILE) {
		if (x->staged == 0) {		/* a read went out */
			int32_t rd = x->res_read;

			if (rd == -ECANCELED || rd == -EINTR) {
				esca__requeue(t, e);
				return;
			}
			if (rd < 0) {
				esca__complete(t, e, e->done ? (int64_t)e->done : rd);
				return;
			}
			if (rd == 0) {
				esca__complete(t, e, (int64_t)e->done);
				return;
			}
			x->staged = (size_t)rd;
			x->staged_sent = 0;
			if ((size_t)rd < e->len - e->done)
				x->eof = 1;
		}
		if (r > 0) {
			x->staged_sent += (size_t)r;
			e->done += (size_t)r;
		} else if (r == 0) {
			esca__complete(t, e, (int64_t)e->done);	/* no progress */
			return;
		} else if (r != -ECANCELED && r != -EINTR) {
			esca__complete(t, e, e->done ? (int64_t)e->done : r);
			return;
		}
		/* -ECANCELED: a short read broke the link; send what was read */
		if (x->staged_sent < x->staged) {
			esca__requeue(t, e);	/* send what was read */
			return;
		}
		x->staged = x->staged_sent = 0;
		if (e->done >= e->len || x->eof) {
			if (x->eof)
				t->st.short_completed++;
			esca__complete(t, e, (int64_t)e->done);
			return;
		}
		esca__requeue(t, e);
		return;
	}
	if (esca__is_data(e->op)) {
		struct esca_fd *f = &t->fds[e->fd];

		if (r >= 0) {
			e->done += (size_t)r;
			if (e->done >= e->len || r == 0) {
				if (e->done < e->len)
					t->st.short_completed++;
				esca__complete(t, e, (int64_t)e->done);
				return;
			}
			t->st.short_completed++;
			esca__requeue(t, e);	/* the rest, before anything after */
			return;
		}
		if (r == -ECANCELED || r == -EINTR) {
			esca__requeue(t, e);
			return;
		}
		if (r == -ENOTSOCK && (e->op == ESCA_OP_WRITE ||
				       e->op == ESCA_OP_WRITEV) &&
		    f->type != ESCA_FT_OTHER) {
			esca__fd_not_socket(t, e->fd);	/* a file? */
			esca__requeue(t, e);
			return;
		}
		if (r == -EAGAIN && !(e->flags & MSG_DONTWAIT) && !e->need_poll) {
			e->need_poll = 1;
			esca__requeue(t, e);
			return;
		}
		if (r == -EAGAIN && e->need_poll) {
			esca__requeue(t, e);	/* polled writable, lost the race */
			return;
		}
		esca__complete(t, e, e->done ? (int64_t)e->done : r);
		return;
	}
	if (r == -ECANCELED) {
		esca__requeue(t, e);
		return;
	}
	if (r == -EINTR && e->op != ESCA_OP_CLOSE) {
		esca__requeue(t, e);
		return;
	}
	if (e->op == ESCA_OP_SETSOCKOPT && r == -EOPNOTSUPP &&
	    not_a_socket_now(t, e->fd)) {
		/* the ring's URING_CMD on a pipe or a file: the plain
		 * setsockopt says ENOTSOCK (the API's audit, session 21) */
		esca__complete(t, e, -ENOTSOCK);
		return;
	}
	if (e->op == ESCA_OP_SHUTDOWN || e->op == ESCA_OP_SETSOCKOPT)
		t->fds[e->fd].type = ESCA_FT_SOCKET;
	esca__complete(t, e, r);
}

/* Slice e's data past what is done into msg / one iovec. */
static void data_slice(struct esca_entry *e, struct iovec **iov, int *n,
		       struct iovec *tmp)
{
	size_t s = e->done;
	int i = 0;

	if (e->iov == &e->one) {	/* one buffer, never cut */
		tmp->iov_base = (char *)e->iov[0].iov_base + s;
		tmp->iov_len = e->iov[0].iov_len - s;
		*iov = tmp;
		*n = 1;
		return;
	}
	/* borrowed multi-iov: advance in place (the array is our copy) past
	 * what was done since the last cut */
	s = e->done - e->dropped;
	while (i < e->iovcnt && s >= e->iov[i].iov_len) {
		s -= e->iov[i].iov_len;
		i++;
	}
	if (i < e->iovcnt && s) {
		e->iov[i].iov_base = (char *)e->iov[i].iov_base + s;
		e->iov[i].iov_len -= s;
	}
	/* what is done is now dropped from the array */
	memmove(e->iov, e->iov + i, (size_t)(e->iovcnt - i) * sizeof(*e->iov));
	e->iovcnt -= i;
	e->dropped = e->done;
	*iov = e->iov;
	*n = e->iovcnt;
}

/* How many SQEs e takes this round. */
static unsigned sqes_needed(const struct esca_entry *e,
			    const struct uring_slot *x)
{
	if (e->need_poll && esca__is_data(e->op))
		return 2;
	if (e->op == ESCA_OP_SENDFILE && x->staged == 0)
		return 2;
	return 1;
}

/* Prepare e's SQEs (the caller checked there is room); returns the last. */
static struct io_uring_sqe *prep_entry(struct esca_table *t,
				       struct uring_state *u,
				       struct esca_entry *e,
				       struct uring_slot *x)
{
	struct io_uring *ring = &u->ring;
	struct io_uring_sqe *sqe, *first = NULL;

	x->res_main = x->res_read = x->res_poll = 0;
	x->nsqe = (uint8_t)sqes_needed(e, x);

	switch (e->op) {
	case ESCA_OP_WRITE:
	case ESCA_OP_WRITEV:
	case ESCA_OP_SEND:
	case ESCA_OP_SENDMSG: {
		struct esca_fd *f = &t->fds[e->fd];
		int as_send = e->op == ESCA_OP_SEND || e->op == ESCA_OP_SENDMSG ||
			      (f->type != ESCA_FT_OTHER &&
			       f->type != ESCA_FT_FILE);
		struct iovec *iov, tmp;
		int n;

		if (e->need_poll) {
			first = io_uring_get_sqe(ring);
			io_uring_prep_poll_add(first, e->fd, POLLOUT);
			tag(first, x, STAGE_POLL);
			first->flags |= IOSQE_IO_LINK;
		}
		data_slice(e, &iov, &n, &tmp);
		sqe = io_uring_get_sqe(ring);
		if (as_send) {
			int fl = e->flags | MSG_WAITALL;

			if (n == 1) {
				io_uring_prep_send(sqe, e->fd, iov[0].iov_base,
						   iov[0].iov_len, fl);
			} else {
				memset(&x->msg, 0, sizeof(x->msg));
				x->msg.msg_iov = iov;
				x->msg.msg_iovlen = (size_t)n;
				io_uring_prep_sendmsg(sqe, e->fd, &x->msg,
						      (unsigned)fl);
			}
		} else if (n == 1) {
			io_uring_prep_write(sqe, e->fd, iov[0].iov_base,
					    (unsigned)iov[0].iov_len, (uint64_t)-1);
		} else {
			io_uring_prep_writev(sqe, e->fd, iov, (unsigned)n,
					     (uint64_t)-1);
		}
		tag(sqe, x, STAGE_MAIN);
		return sqe;
	}
	case ESCA_OP_SENDFILE: {
		char *buf = e->one.iov_base;

		if (x->staged == 0) {
			size_t want = e->len - e->done;
			uint64_t off = e->offset < 0 ? (uint64_t)-1 :
				       (uint64_t)e->offset + e->done;

			first = io_uring_get_sqe(ring);
			io_uring_prep_read(first, e->fd2, buf, (unsigned)want, off);
			tag(first, x, STAGE_READ);
			first->flags |= IOSQE_IO_LINK;
			sqe = io_uring_get_sqe(ring);
			io_uring_prep_send(sqe, e->fd, buf, want,
					   e->flags | MSG_WAITALL);
		} else {
			sqe = io_uring_get_sqe(ring);
			io_uring_prep_send(sqe, e->fd, buf + x->staged_sent,
					   x->staged - x->staged_sent,
					   e->flags | MSG_WAITALL);
		}
		tag(sqe, x, STAGE_MAIN);
		return sqe;
	}
	case ESCA_OP_SHUTDOWN:
		sqe = io_uring_get_sqe(ring);
		io_uring_prep_shutdown(sqe, e->fd, e->flags);
		break;
	case ESCA_OP_CLOSE:
		sqe = io_uring_get_sqe(ring);
		io_uring_prep_close(sqe, e->fd);
		break;
	case ESCA_OP_FSYNC:
		sqe = io_uring_get_sqe(ring);
		io_uring_prep_fsync(sqe, e->fd, 0);
		break;
	case ESCA_OP_PEEK:
		/* MSG_DONTWAIT: the kernel answers at once (-EAGAIN when
		 * empty: REQ_F_NOWAIT, no poll armed), inside this enter */
		sqe = io_uring_get_sqe(ring);
		io_uring_prep_recv(sqe, e->fd, e->one.iov_base, e->len,
				   MSG_PEEK | MSG_DONTWAIT);
		break;
	case ESCA_OP_DISCARD:
		sqe = io_uring_get_sqe(ring);
		io_uring_prep_recv(sqe, e->fd, NULL, e->len,
				   MSG_TRUNC | MSG_DONTWAIT);
		break;
	case ESCA_OP_SETSOCKOPT:
		sqe = io_uring_get_sqe(ring);
		esca__prep_setsockopt(sqe, e->fd, e->flags, e->optname,
				e->iov[0].iov_base, (unsigned)e->iov[0].iov_len);
		break;
	default:
		sqe = io_uring_get_sqe(ring);
		io_uring_prep_nop(sqe);
		break;
	}
	tag(sqe, x, STAGE_MAIN);
	return sqe;
}

/* Ops this ring cannot take as they are: setsockopt without the 6.7
 * command; a writev of nothing, which returns 0 without reaching the fd (a
 * SEND of nothing would see EPIPE on a shut socket); and shutdown and fsync,
 * which io_uring always hands to an io-wq worker: the worker's reference to the
 * file is then dropped through this thread's deferred task work
 * (DEFER_TASKRUN), which runs only when the thread next enters the ring, so
 * a file the program closed after the flush could stay open meanwhile, a
 * pipe's reader without its EOF for good (tests/test_contract.py hung so,
 * about once in 3,000 flushes; a file's flock would stay held).  As the
 * plain syscall at its turn it also costs no worker's wake-up.  So does a
 * write to a regular file (ESCA_FT_FILE: table.c, esca__fd_not_socket). */
static int needs_direct(const struct esca_table *t, const struct uring_state *u,
			const struct esca_entry *e)
{
	if (e->op == ESCA_OP_SETSOCKOPT)
		return !u->have_setsockopt;
	return e->op == ESCA_OP_SHUTDOWN || e->op == ESCA_OP_FSYNC ||
	       (e->op == ESCA_OP_WRITEV && e->len == 0) ||
	       esca__file_write(t, e);
}

/* One pass over the table: every entry whose turn it is (order.h) goes
 * into the SQ.  An io_uring link joins an SQE to the next one in the ring,
 * so each key's entries are gathered into a chain first and each chain is
 * laid out in consecutive SQEs.  Returns the number of SQEs prepared. */
unsigned esca__uring_round(struct esca_table *t, struct uring_state *u)
{
	unsigned space = io_uring_sq_space_left(&u->ring), used = 0, nheads = 0;
	struct esca_round round;
	struct esca_turn turn;

	esca__round_start(t, &round, 0);
	while (esca__round_next(t, &round, &turn)) {
		struct esca_entry *e = turn.e;
		struct uring_slot *x = &u->x[e - t->ents];
		unsigned need;

		if (e->op == ESCA_OP_SENDFILE && x->pos != turn.pos) {
			x->pos = turn.pos;	/* a new sendfile in this slot */
			x->staged = x->staged_sent = 0;
			x->eof = 0;
		}
		if (esca__skip_broken(t, e))
			continue;	/* its connection broke: no SQE */
		if (!turn.held && esca__uring_sendfile_direct(u, e, x)) {
			if (esca__round_chained(&turn))
				turn.held = 1;	/* after this round's sends */
			else if (esca__uring_sendfile_now(t, e))
				continue;
		}
		if (!turn.held && needs_direct(t, u, e)) {
			if (esca__round_chained(&turn)) {
				turn.held = 1;
			} else {
				/* a fallback only where the ring lacks the op
				 * (setsockopt before 6.7); shutdown, fsync and
				 * a writev of nothing are direct by design */
				esca__run_direct(t, e, e->op == ESCA_OP_SETSOCKOPT);
				continue;
			}
		}
		need = sqes_needed(e, x);
		if (!turn.held && used + need > space)
			turn.held = 1;	/* SQ full: the rest waits a round */
		if (turn.held) {
			esca__round_hold(&turn);
			continue;
		}
		used += need;
		x->chain_next = NULL;
		if (esca__round_chained(&turn))
			((struct uring_slot *)turn.f->tail)->chain_next = x;
		else
			u->heads[nheads++] = x;
		turn.f->tail = x;
		esca__round_admit(t, &round, &turn);
	}
	for (unsigned h = 0; h < nheads; h++) {
		for (struct uring_slot *x = u->heads[h]; x; x = x->chain_next) {
			struct io_uring_sqe *last;

			last = prep_entry(t, u, &t->ents[x->slot], x);
			if (x->chain_next)
				last->flags |= IOSQE_IO_LINK;
		}
	}
	u->outstanding += used;
	return used;
}

void esca__uring_reap(struct esca_table *t, struct uring_state *u)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&u->ring, head, cqe) {
		uint64_t d = io_uring_cqe_get_data64(cqe);
		struct uring_slot *x = (struct uring_slot *)(uintptr_t)(d & ~STAGE_MASK);

		n++;
		if (d == EPOLL_TAG) {
			u->ep_res = cqe->res;
			u->ep_done = 1;
			continue;
		}
		if (!x || d == CANCEL_TAG)
			continue;
		switch (d & STAGE_MASK) {
		case STAGE_READ:
			x->res_read = cqe->res;
			break;
		case STAGE_POLL:
			x->res_poll = cqe->res;
			break;
		default:
			x->res_main = cqe->res;
			break;
		}
		if (--x->nsqe == 0) {
			struct esca_entry *e = &t->ents[x->slot];
			int fd = e->fd;

			finalize(t, e, x);
			/* its fd's last entry done: the progress set stops
			 * watching it for room (uring_setup.c, pep_arm) */
			if (u->narmed && fd >= 0 && fd < t->nfds &&
			    t->fds[fd].armed && !t->fds[fd].pending)
				esca__uring_disarm(t, u, fd);
		}
	}
	io_uring_cq_advance(&u->ring, n);
	u->outstanding -= n;
}

/* Enter the kernel: submit what is prepared, wait for `wait` CQEs.
 *
 * With DEFER_TASKRUN, each link of a chain after the first is issued from
 * task work that runs only inside io_uring_enter, one link per pass unless
 * the kernel is asked for more completions.  A reaping flush therefore
 * asks for every outstanding completion with a zero timeout: the kernel
 * runs the chains as far as they go without blocking and returns (-ETIME
 * for what is parked on a full socket).  (Polling IORING_SQ_TASKRUN for
 * more passes cost 8 empty entries a flush: the flag can stay set.) */
static int enter(struct esca_table *t, struct uring_state *u, unsigned wait,
		 int reap)
{
	struct __kernel_timespec zero = { 0, 0 };
	struct io_uring_cqe *cqe;
	int r;

	for (;;) {
		t->st.kernel_entries++;
		if (reap)
			r = io_uring_submit_and_wait_timeout(&u->ring, &cqe,
							      u->outstanding,
							      &zero, NULL);
		else if (wait)
			r = io_uring_submit_and_wait(&u->ring, wait);
		else
			r = io_uring_submit_and_get_events(&u->ring);
		if (r >= 0 || r == -EAGAIN || r == -EBUSY || r == -ETIME)
			break;
		if (r != -EINTR)
			return r;
		if (!wait)
			break;
		/* a signal: waiting again is what a blocking call does */
	}
	return 0;
}

int esca__uring_flush(struct esca_table *t, unsigned mode)
{
	struct uring_state *u = t->priv;
	int rounds = 0;

	if (t->plain)
		esca__uring_plain_pass(t, u);	/* the ring: what is left */
	else if (esca__uring_one_now(t, u))
		return 0;
	for (;;) {
		unsigned queued_before = t->live - t->inflight;
		unsigned used = esca__uring_round(t, u);
		int r;

		if (used == 0 && t->inflight == 0 &&
		    !io_uring_sq_ready(&u->ring))
			break;	/* nothing in flight, nothing to send */
		if (mode == ESCA_FLUSH_WAIT && t->inflight > 0)
			r = enter(t, u, u->outstanding, 0);	/* all of them */
		else
			r = enter(t, u, 0, u->outstanding > 0);
		if (r < 0)
			return esca__fail_over(t, r);
		esca__uring_reap(t, u);
		if (t->live == 0)
			break;
		if (mode == ESCA_FLUSH_REAP) {
			/* requeued entries (cancelled links, short writes) get
			 * another round while that makes progress */
			unsigned queued_now = t->live - t->inflight;

			if (++rounds >= MAX_REAP_ROUNDS || queued_now == 0 ||
			    (used == 0 && queued_now >= queued_before))
				break;
		}
	}
	return 0;
}

/* Block for one completion, at most timeout_ms (-1: no bound), and reap:
 * with DEFER_TASKRUN this is also what moves parked sends meanwhile. */
static int uring_wait(struct esca_table *t, int timeout_ms)
{
	struct uring_state *u = t->priv;
	struct __kernel_timespec ts = { timeout_ms / 1000,
					(long long)(timeout_ms % 1000) * 1000000 };
	struct io_uring_cqe *cqe;
	int r;

	if (!u->outstanding)
		return 1;
	t->st.kernel_entries++;
	r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1,
					     timeout_ms < 0 ? NULL : &ts, NULL);
	esca__uring_reap(t, u);
	if (r == -ETIME)
		return 0;
	if (r == -EINTR)
		return r;
	return r < 0 && r != -EAGAIN && r != -EBUSY ? r : 1;
}

const struct esca_executor esca__uring = {
	.name = "uring",
	.init = esca__uring_init,
	.fini = esca__uring_fini,
	.abandon = esca__uring_fini,
	.flush = esca__uring_flush,
	.progress_fd = esca__uring_progress_fd,
	.progress_arm = esca__uring_progress_arm,
	.flush_epoll = esca__uring_flush_epoll,
	.owns_fd = esca__uring_owns_fd,
	.wait = uring_wait,
	.cancel = esca__uring_cancel,
};
