/* SPDX-License-Identifier: MIT
 * uring_direct.c - what the uring executor runs as the plain syscall, not
 * through the ring.  Entry points: esca__uring_one_now (a flush that
 * carries one call runs it directly), esca__uring_sendfile_direct and
 * esca__uring_sendfile_now (ESCA_CFG_SENDFILE_DIRECT: a sendfile on a
 * non-blocking socket, now); esca__uring_plain_pass (esca_table_set_plain:
 * a flush's entries as the plain syscalls); callers in uring.c.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "order.h"
#include "sys.h"
#include "uring.h"

/* ESCA_CFG_SENDFILE_DIRECT: the sendfile syscall, now, without waiting for
 * the socket.  1: e is complete; 0: the ring does the
 * rest (a full socket, a partial send).  Only for a non-blocking socket
 * (ESCA_HINT_NONBLOCK): MSG_DONTWAIT is no flag of sendfile's. */
int esca__uring_sendfile_now(struct esca_table *t, struct esca_entry *e)
{
	size_t want = e->len - e->done;
	int64_t r;

	t->st.kernel_entries++;
	t->st.sendfile_direct++;
	r = esca__sendfile_once(e->fd, e->fd2, e->offset + (int64_t)e->done,
				want);
	if (r < 0) {
		if (r == -EAGAIN || r == -EINTR)
			return 0;
		t->st.entries_executed++;
		esca__complete(t, e, e->done ? (int64_t)e->done : r);
		return 1;
	}
	e->done += (size_t)r;
	if ((size_t)r < want && r > 0)
		return 0;
	if ((size_t)r < want)
		t->st.short_completed++;	/* the file ended early */
	t->st.entries_executed++;
	esca__complete(t, e, (int64_t)e->done);
	return 1;
}

int esca__uring_sendfile_direct(const struct uring_state *u,
				const struct esca_entry *e,
				const struct uring_slot *x)
{
	return u->sf_direct && e->op == ESCA_OP_SENDFILE && e->nonblock &&
	       x->staged == 0 &&
	       e->offset >= 0 && !e->need_poll && e->done == 0;
}

/* A flush that carries one call runs it as the plain syscall: an
 * io_uring_enter costs more than one write (DESIGN.md, "Flush triggers").
 * Only when it is the table's one live entry (nothing in flight, so a
 * reaping flush has nothing to collect) and nothing is prepared in the
 * ring.  A data call on a socket goes out once with MSG_DONTWAIT: what a
 * full socket leaves (a short count, EAGAIN) stays queued and goes the
 * ring's way, as sendfile_now's rest does. */

static int can_now(struct esca_table *t, struct uring_state *u,
		   struct esca_entry *e)
{
	if (e->need_poll || e->done)
		return 0;
	switch (e->op) {
	case ESCA_OP_CLOSE:
	case ESCA_OP_SHUTDOWN:
	case ESCA_OP_SETSOCKOPT:
	case ESCA_OP_PEEK:
	case ESCA_OP_DISCARD:
		return 1;
	case ESCA_OP_SENDFILE:
		return esca__uring_sendfile_direct(u, e, &u->x[e - t->ents]);
	case ESCA_OP_SEND:
	case ESCA_OP_SENDMSG:	/* a socket's, whatever the hint says */
		return e->len > 0;
	case ESCA_OP_WRITE:
	case ESCA_OP_WRITEV:	/* not a writev of nothing (needs_direct) */
		return t->fds[e->fd].type != ESCA_FT_OTHER && e->len > 0;
	default:
		return 0;
	}
}

/* Run e (can_now said yes) as the plain syscall: 1 when it is complete. */
static int entry_now(struct esca_table *t, struct esca_entry *e)
{
	struct esca_fd *f = &t->fds[e->fd];
	long r;

	if (esca__skip_broken(t, e))
		return 1;
	if (e->op == ESCA_OP_SENDFILE)
		return esca__uring_sendfile_now(t, e);
	if (!esca__is_data(e->op) || esca__file_write(t, e)) {
		esca__run_direct(t, e, 0);
		return 1;
	}
	t->st.kernel_entries++;
	r = esca__send_iov(e->fd, e->iov, e->iovcnt,
			   e->flags | MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r == -ENOTSOCK && (e->op == ESCA_OP_WRITE ||
			       e->op == ESCA_OP_WRITEV)) {
		/* no socket (a number the table knew as one may have been
		 * closed outside it and given to a pipe since): the ring
		 * writes it, or a file's the plain syscall, as after
		 * uring.c's completion */
		esca__fd_not_socket(t, e->fd);
		return 0;
	}
	if (r == -EAGAIN || r == -EINTR)
		return 0;
	if (r < 0) {
		t->st.entries_executed++;
		esca__complete(t, e, r);
		return 1;
	}
	if (f->type == ESCA_FT_UNKNOWN)
		f->type = ESCA_FT_SOCKET;
	e->done = (size_t)r;
	if (e->done < e->len)
		return 0;	/* the rest, parked in the ring if need be */
	t->st.entries_executed++;
	esca__complete(t, e, (int64_t)e->done);
	return 1;
}

/* 1: the flush is done (its one entry complete). */
int esca__uring_one_now(struct esca_table *t, struct uring_state *u)
{
	struct esca_entry *e = NULL;

	if (t->live != 1 || t->inflight || u->outstanding ||
	    io_uring_sq_ready(&u->ring))
		return 0;
	for (uint32_t i = t->head; i != t->tail && !e; i++)
		if (esca__ent(t, i)->state == ESCA_S_QUEUED)
			e = esca__ent(t, i);
	if (!e || !can_now(t, u, e))
		return 0;
	t->st.flushes_direct++;
	return entry_now(t, e);
}

/* esca_table_set_plain: every entry whose turn it is (order.h; serial, as
 * they run one after another here) runs as the plain syscall, in table
 * order, a socket's with MSG_DONTWAIT.  One that the plain call does not
 * finish (a full socket, a partial send, an fd that is no socket, an op the
 * ring must run) is held, with what follows on its key, for the flush's
 * ring rounds, which take it from where it stopped: the ring then does
 * only what a plain program would have waited for.  Returns the number
 * run to completion. */
unsigned esca__uring_plain_pass(struct esca_table *t, struct uring_state *u)
{
	struct esca_round round;
	struct esca_turn turn;
	unsigned n = 0;

	esca__round_start(t, &round, ESCA_ROUND_SERIAL);
	while (esca__round_next(t, &round, &turn)) {
		struct esca_entry *e = turn.e;

		if (turn.held || !can_now(t, u, e) || !entry_now(t, e)) {
			esca__round_hold(&turn);
			continue;
		}
		n++;
	}
	if (n)
		t->st.flushes_plain++;
	return n;
}
