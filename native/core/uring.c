/* SPDX-License-Identifier: MIT
 * uring.c - the default executor: the table goes to the kernel through an
 * io_uring submission ring, one io_uring_enter per round.
 *
 * Order.  Per fd, the entries queued in one round form one chain linked
 * with IOSQE_IO_LINK, so the kernel runs them in order.  A link breaks on an
 * error or a short result and the rest of the chain completes -ECANCELED
 * with no side effect: those entries go back to QUEUED and run in the next
 * round, after what broke the link has been dealt with (the remainder of a
 * short write is sent first).  An entry whose fd still has an entry in
 * flight from an earlier round waits in user space (contract item 3), and a
 * close or write on a file waits for every pending sendfile reading it.
 *
 * Short writes.  Sends carry MSG_WAITALL: on a stream socket the kernel
 * finishes the send itself (parking on a full buffer).  write/writev go out
 * as SEND first; -ENOTSOCK marks the fd as no socket and the op is redone
 * as WRITE.  A WRITE on an O_NONBLOCK pipe can say -EAGAIN at once (liburing
 * #274): the entry is redone behind a POLL_ADD(POLLOUT) link.
 *
 * sendfile has no io_uring op: READ into the entry's bounce buffer, linked
 * to a SEND of it (two copies; see issue 7 for the zero-copy lever).
 *
 * setsockopt is IORING_OP_URING_CMD SOCKET_URING_OP_SETSOCKOPT (Linux 6.7),
 * probed once per process; without it the op runs as a plain syscall at its
 * turn in the fd's order.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "internal.h"

#ifndef SOCKET_URING_OP_SETSOCKOPT
#define SOCKET_URING_OP_SETSOCKOPT 3	/* include/uapi/linux/io_uring.h, 6.7 */
#endif

enum { STAGE_MAIN = 0, STAGE_READ = 1, STAGE_POLL = 2 };
#define STAGE_MASK 3ull
/* user_data of the SQEs that are no entry's: no entry lives at 8 or 16 */
#define EPOLL_TAG 8ull		/* the folded epoll wait */
#define CANCEL_TAG 16ull	/* its cancellation */
#ifndef IORING_OP_EPOLL_WAIT
#define IORING_OP_EPOLL_WAIT 59	/* Linux 6.15; Debian 12's liburing lacks it */
#endif
#define MAX_REAP_ROUNDS 4

struct uring_state {
	struct io_uring ring;
	unsigned sq_entries;
	int have_setsockopt;
	struct esca_entry **heads;	/* first entry of each chain, a round */
	unsigned outstanding;		/* SQEs submitted, CQE not yet seen */
	int evfd;			/* progress fd, -1 until asked for */
	int sf_direct;			/* ESCA_CFG_SENDFILE_DIRECT */
	int have_epwait;		/* IORING_OP_EPOLL_WAIT works */
	int ep_busy, ep_done, ep_res;	/* the folded epoll wait */
};

static int probe_setsockopt = 0;	/* 0 not yet, 1 works, -1 does not */

static void tag(struct io_uring_sqe *sqe, struct esca_entry *e, int stage)
{
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)e | (uint64_t)stage);
}

static void prep_setsockopt(struct io_uring_sqe *sqe, int fd, int level,
			    int optname, const void *val, unsigned len)
{
	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, NULL, 0, 0);
	/* the 6.7 uapi fields, by their place in struct io_uring_sqe:
	 * cmd_op is the low half of off, level/optname share addr,
	 * optlen is splice_fd_in and optval is addr3. */
	sqe->off = SOCKET_URING_OP_SETSOCKOPT;
	sqe->addr = (uint64_t)(uint32_t)level | ((uint64_t)(uint32_t)optname << 32);
	sqe->splice_fd_in = (int32_t)len;
	sqe->addr3 = (uint64_t)(uintptr_t)val;
}

/* Does the kernel take SOCKET_URING_OP_SETSOCKOPT?  Asked once. */
static int check_setsockopt(struct io_uring *ring)
{
	struct io_uring_probe *p;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int s, one = 1, ok = -1;

	if (probe_setsockopt)
		return probe_setsockopt > 0;
	p = io_uring_get_probe_ring(ring);
	if (!p)
		return 0;
	if (!io_uring_opcode_supported(p, IORING_OP_URING_CMD)) {
		io_uring_free_probe(p);
		probe_setsockopt = -1;
		return 0;
	}
	io_uring_free_probe(p);
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return 0;
	sqe = io_uring_get_sqe(ring);
	if (sqe) {
		prep_setsockopt(sqe, s, SOL_SOCKET, SO_KEEPALIVE, &one,
				sizeof(one));
		io_uring_sqe_set_data64(sqe, 0);
		if (io_uring_submit_and_wait(ring, 1) >= 0 &&
		    io_uring_peek_cqe(ring, &cqe) == 0) {
			if (cqe->res == 0) {
				int v = 0;
				socklen_t l = sizeof(v);

				if (getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v,
					       &l) == 0 && v == 1)
					ok = 1;
			}
			io_uring_cqe_seen(ring, cqe);
		}
	}
	close(s);
	probe_setsockopt = ok;
	return ok > 0;
}

static const unsigned flag_sets[] = {
	IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
	IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_DEFER_TASKRUN,
	IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
	0,
};

/* The allow-list (issue 5): a ring of ours runs only the operations the
 * executor submits, whatever the memory holding its SQEs says.  The kernel
 * refuses anything else with -EACCES (IORING_REGISTER_RESTRICTIONS on a ring
 * created disabled).  Add an opcode here when the executor starts using it. */
static const unsigned char allowed_sqe_ops[] = {
	IORING_OP_NOP, IORING_OP_POLL_ADD, IORING_OP_WRITE, IORING_OP_WRITEV,
	IORING_OP_SEND, IORING_OP_SENDMSG, IORING_OP_READ, IORING_OP_SHUTDOWN,
	IORING_OP_CLOSE, IORING_OP_FSYNC, IORING_OP_URING_CMD,
	IORING_OP_ASYNC_CANCEL, IORING_OP_EPOLL_WAIT,
};
#define ALLOWED_SQE_FLAGS IOSQE_IO_LINK
/* io_uring_register calls made after the ring is enabled; the last two
 * (Linux 5.18) go first when the kernel does not know them */
static const unsigned char allowed_register_ops[] = {
	IORING_REGISTER_PROBE, IORING_REGISTER_EVENTFD, IORING_UNREGISTER_EVENTFD,
	IORING_REGISTER_RING_FDS, IORING_UNREGISTER_RING_FDS,
};

/* io_uring_register(2) itself: Debian 12's liburing 2.3 declares
 * io_uring_register_restrictions() and io_uring_enable_rings() but does not
 * export them. */
static int ring_register(struct io_uring *ring, unsigned op, void *arg,
			 unsigned n)
{
	long r = syscall(__NR_io_uring_register, ring->ring_fd, op, arg, n);

	return r < 0 ? -errno : (int)r;
}

/* Restrict a ring created with IORING_SETUP_R_DISABLED, then enable it. */
static int ring_restrict(struct io_uring *ring)
{
	struct io_uring_restriction res[sizeof(allowed_sqe_ops) +
					sizeof(allowed_register_ops) + 1];
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	unsigned n = 0, nreg = sizeof(allowed_register_ops);
	int r;

	if (!p)
		return -EINVAL;
	memset(res, 0, sizeof(res));
	for (size_t i = 0; i < sizeof(allowed_sqe_ops); i++) {
		if (allowed_sqe_ops[i] > p->last_op)
			continue;	/* an op this kernel lacks: never usable */
		res[n].opcode = IORING_RESTRICTION_SQE_OP;
		res[n++].sqe_op = allowed_sqe_ops[i];
	}
	io_uring_free_probe(p);
	res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
	res[n++].sqe_flags = ALLOWED_SQE_FLAGS;
	for (;;) {
		for (unsigned i = 0; i < nreg; i++) {
			res[n + i].opcode = IORING_RESTRICTION_REGISTER_OP;
			res[n + i].register_op = allowed_register_ops[i];
		}
		r = ring_register(ring, IORING_REGISTER_RESTRICTIONS, res,
				  n + nreg);
		if (r != -EINVAL || nreg != sizeof(allowed_register_ops))
			break;
		nreg -= 2;	/* no RING_FDS on this kernel */
	}
	if (r < 0)
		return r;
	return ring_register(ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
}

static int ring_setup(struct io_uring *ring, unsigned entries, unsigned *flags)
{
	int r = -EINVAL;

	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p = {
			.flags = flag_sets[i] | IORING_SETUP_R_DISABLED,
		};

		r = io_uring_queue_init_params(entries, ring, &p);
		if (r == 0) {
			r = ring_restrict(ring);
			if (r < 0) {
				io_uring_queue_exit(ring);
				return r;	/* no ring without the allow-list */
			}
			if (flags)
				*flags = flag_sets[i];
			return 0;
		}
		if (r != -EINVAL)
			return r;	/* EPERM, ENOSYS, ENOMEM: no flags help */
	}
	return r;
}
/* for native/tests/test_core.c, which checks the allow-list */
int esca__ring_setup(struct io_uring *ring, unsigned entries, unsigned *flags)
{
	return ring_setup(ring, entries, flags);
}

static int uring_init(struct esca_table *t)
{
	struct uring_state *u = calloc(1, sizeof(*u));
	unsigned want = t->cap * 2;
	int r;

	if (!u)
		return -ENOMEM;
	if (want > 32768)
		want = 32768;
	r = ring_setup(&u->ring, want, NULL);
	if (r < 0) {
		free(u);
		return r;
	}
	u->sq_entries = u->ring.sq.ring_entries;
	u->sf_direct = !!(t->cfg_flags & ESCA_CFG_SENDFILE_DIRECT);
	if (t->cfg_flags & ESCA_CFG_FOLD_WAIT) {
		struct io_uring_probe *p = io_uring_get_probe_ring(&u->ring);

		u->have_epwait = p && io_uring_opcode_supported(p,
							  IORING_OP_EPOLL_WAIT);
		if (p)
			io_uring_free_probe(p);
	}
	u->evfd = -1;
	u->heads = calloc(t->cap, sizeof(*u->heads));
	if (!u->heads) {
		io_uring_queue_exit(&u->ring);
		free(u);
		return -ENOMEM;
	}
	(void)io_uring_register_ring_fd(&u->ring);	/* an optimisation */
	u->have_setsockopt = check_setsockopt(&u->ring);
	t->priv = u;
	t->caps = ESCA_CAP_PARKS | ESCA_CAP_NO_SIGPIPE | ESCA__CAP_BOUNCE |
		  (u->sf_direct ? ESCA_CAP_SENDFILE_DIRECT : 0) |
		  (u->have_epwait ? ESCA_CAP_FOLD_WAIT : 0);
	return 0;
}

static void uring_fini(struct esca_table *t)
{
	struct uring_state *u = t->priv;

	if (!u)
		return;
	io_uring_queue_exit(&u->ring);
	if (u->evfd >= 0)
		close(u->evfd);
	free(u->heads);
	free(u);
	t->priv = NULL;
}

static void uring_abandon(struct esca_table *t)
{
	/* the child's copy of the ring: unmap and close ours, submit nothing */
	uring_fini(t);
}

static void requeue(struct esca_table *t, struct esca_entry *e)
{
	e->state = ESCA_S_QUEUED;
	t->inflight--;
	t->st.resubmitted++;
}

/* Everything the kernel said about e is in; decide. */
static void finalize(struct esca_table *t, struct esca_entry *e)
{
	int32_t r = e->res_main;

	if (e->res_poll < 0 && e->res_poll != -ECANCELED) {
		/* the poll before a write failed: that is the write's answer */
		esca__complete(t, e, e->done ? (int64_t)e->done : e->res_poll);
		return;
	}
	if (e->op == ESCA_OP_SENDFILE) {
		if (e->staged == 0) {		/* a read went out */
			int32_t rd = e->res_read;

			if (rd == -ECANCELED || rd == -EINTR) {
				requeue(t, e);
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
			e->staged = (size_t)rd;
			e->staged_sent = 0;
			if ((size_t)rd < e->len - e->done)
				e->eof = 1;
		}
		if (r > 0) {
			e->staged_sent += (size_t)r;
			e->done += (size_t)r;
		} else if (r == 0) {
			esca__complete(t, e, (int64_t)e->done);	/* no progress */
			return;
		} else if (r != -ECANCELED && r != -EINTR) {
			esca__complete(t, e, e->done ? (int64_t)e->done : r);
			return;
		}
		/* -ECANCELED: a short read broke the link; send what was read */
		if (e->staged_sent < e->staged) {
			requeue(t, e);	/* send what was read */
			return;
		}
		e->staged = e->staged_sent = 0;
		if (e->done >= e->len || e->eof) {
			if (e->eof)
				t->st.short_completed++;
			esca__complete(t, e, (int64_t)e->done);
			return;
		}
		requeue(t, e);
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
			requeue(t, e);	/* the rest, before anything after */
			return;
		}
		if (r == -ECANCELED || r == -EINTR) {
			requeue(t, e);
			return;
		}
		if (r == -ENOTSOCK && (e->op == ESCA_OP_WRITE ||
				       e->op == ESCA_OP_WRITEV) &&
		    f->type != ESCA_FT_OTHER) {
			f->type = ESCA_FT_OTHER;	/* a write on no socket */
			requeue(t, e);
			return;
		}
		if (r == -EAGAIN && !(e->flags & MSG_DONTWAIT) && !e->need_poll) {
			e->need_poll = 1;
			requeue(t, e);
			return;
		}
		if (r == -EAGAIN && e->need_poll) {
			requeue(t, e);	/* polled writable, lost the race */
			return;
		}
		esca__complete(t, e, e->done ? (int64_t)e->done : r);
		return;
	}
	if (r == -ECANCELED) {
		requeue(t, e);
		return;
	}
	if (r == -EINTR && e->op != ESCA_OP_CLOSE) {
		requeue(t, e);
		return;
	}
	if (e->op == ESCA_OP_SHUTDOWN || e->op == ESCA_OP_SETSOCKOPT)
		t->fds[e->fd].type = ESCA_FT_SOCKET;
	esca__complete(t, e, r);
}

static struct esca_fd *fresh(struct esca_table *t, int fd)
{
	struct esca_fd *f = &t->fds[fd];

	if (f->mark != t->round) {
		f->mark = t->round;
		f->busy = ESCA_FD_FREE;
		f->readers = 0;
		f->tail = NULL;
	}
	return f;
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

/* Prepare e's SQEs; returns the last one, or NULL if the SQ is full. */
static unsigned sqes_needed(const struct esca_entry *e)
{
	if (e->need_poll && esca__is_data(e->op))
		return 2;
	if (e->op == ESCA_OP_SENDFILE && e->staged == 0)
		return 2;
	return 1;
}

/* Prepare e's SQEs (the caller checked there is room); returns the last. */
static struct io_uring_sqe *prep_entry(struct esca_table *t,
				       struct uring_state *u,
				       struct esca_entry *e)
{
	struct io_uring *ring = &u->ring;
	struct io_uring_sqe *sqe, *first = NULL;

	e->res_main = e->res_read = e->res_poll = 0;
	e->nsqe = (uint8_t)sqes_needed(e);

	switch (e->op) {
	case ESCA_OP_WRITE:
	case ESCA_OP_WRITEV:
	case ESCA_OP_SEND:
	case ESCA_OP_SENDMSG: {
		struct esca_fd *f = &t->fds[e->fd];
		int as_send = e->op == ESCA_OP_SEND || e->op == ESCA_OP_SENDMSG ||
			      f->type != ESCA_FT_OTHER;
		struct iovec *iov, tmp;
		int n;

		if (e->need_poll) {
			first = io_uring_get_sqe(ring);
			io_uring_prep_poll_add(first, e->fd, POLLOUT);
			tag(first, e, STAGE_POLL);
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
				memset(&e->msg, 0, sizeof(e->msg));
				e->msg.msg_iov = iov;
				e->msg.msg_iovlen = (size_t)n;
				io_uring_prep_sendmsg(sqe, e->fd, &e->msg,
						      (unsigned)fl);
			}
		} else if (n == 1) {
			io_uring_prep_write(sqe, e->fd, iov[0].iov_base,
					    (unsigned)iov[0].iov_len, (uint64_t)-1);
		} else {
			io_uring_prep_writev(sqe, e->fd, iov, (unsigned)n,
					     (uint64_t)-1);
		}
		tag(sqe, e, STAGE_MAIN);
		return sqe;
	}
	case ESCA_OP_SENDFILE: {
		char *buf = e->one.iov_base;

		if (e->staged == 0) {
			size_t want = e->len - e->done;
			uint64_t off = e->offset < 0 ? (uint64_t)-1 :
				       (uint64_t)e->offset + e->done;

			first = io_uring_get_sqe(ring);
			io_uring_prep_read(first, e->fd2, buf, (unsigned)want, off);
			tag(first, e, STAGE_READ);
			first->flags |= IOSQE_IO_LINK;
			sqe = io_uring_get_sqe(ring);
			io_uring_prep_send(sqe, e->fd, buf, want,
					   e->flags | MSG_WAITALL);
		} else {
			sqe = io_uring_get_sqe(ring);
			io_uring_prep_send(sqe, e->fd, buf + e->staged_sent,
					   e->staged - e->staged_sent,
					   e->flags | MSG_WAITALL);
		}
		tag(sqe, e, STAGE_MAIN);
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
	case ESCA_OP_SETSOCKOPT:
		sqe = io_uring_get_sqe(ring);
		prep_setsockopt(sqe, e->fd, e->flags, e->optname,
				e->iov[0].iov_base, (unsigned)e->iov[0].iov_len);
		break;
	default:
		sqe = io_uring_get_sqe(ring);
		io_uring_prep_nop(sqe);
		break;
	}
	tag(sqe, e, STAGE_MAIN);
	return sqe;
}

/* Ops this ring cannot take as they are: setsockopt without the 6.7
 * command, and a writev of nothing, which returns 0 without reaching the
 * fd (a SEND of nothing would see EPIPE on a shut socket). */
static int needs_direct(const struct uring_state *u, const struct esca_entry *e)
{
	if (e->op == ESCA_OP_SETSOCKOPT)
		return !u->have_setsockopt;
	return e->op == ESCA_OP_WRITEV && e->len == 0;
}

/* ESCA_CFG_SENDFILE_DIRECT: the sendfile syscall, now, without waiting for
 * the socket.  1: e is complete; 0: the ring does the
 * rest (a full socket, a partial send).  Only for a non-blocking socket
 * (ESCA_F_NONBLOCK): MSG_DONTWAIT is no flag of sendfile's. */
static int sendfile_now(struct esca_table *t, struct esca_entry *e)
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

static int sendfile_direct(const struct uring_state *u,
			   const struct esca_entry *e)
{
	return u->sf_direct && e->op == ESCA_OP_SENDFILE && e->nonblock &&
	       e->staged == 0 &&
	       e->offset >= 0 && !e->need_poll && e->done == 0;
}

/* One pass over the table: every entry whose turn it is goes into the SQ.
 * An io_uring link joins an SQE to the next one in the ring, so each fd's
 * entries are gathered into a chain first and each chain is laid out in
 * consecutive SQEs.  Returns the number of SQEs prepared. */
static unsigned build_round(struct esca_table *t, struct uring_state *u)
{
	unsigned space = io_uring_sq_space_left(&u->ring), used = 0, nheads = 0;

	t->round++;
	if (t->round == 0)
		t->round = 1;
	for (uint32_t i = t->head; i != t->tail; i++) {
		struct esca_entry *e = esca__ent(t, i);
		struct esca_fd *f, *f2 = NULL;
		unsigned need;
		int held;

		if (e->state == ESCA_S_DONE || e->state == 0)
			continue;
		f = fresh(t, e->key);
		if (e->op == ESCA_OP_SENDFILE)
			f2 = fresh(t, e->fd2);
		if (e->state == ESCA_S_INFLIGHT) {
			f->busy = ESCA_FD_HELD;
			if (f2)
				f2->readers = 1;
			continue;
		}
		if (esca__skip_broken(t, e))
			continue;	/* its connection broke: no SQE */
		held = f->busy == ESCA_FD_HELD;
		if (e->op != ESCA_OP_SENDFILE && f->readers)
			held = 1;	/* a pending sendfile still reads it */
		if (f2 && f2->busy != ESCA_FD_FREE)
			held = 1;	/* an earlier op on the file is pending */
		if (!held && sendfile_direct(u, e)) {
			if (f->busy == ESCA_FD_CHAIN)
				held = 1;	/* after this round's sends */
			else if (sendfile_now(t, e))
				continue;
		}
		if (!held && needs_direct(u, e)) {
			if (f->busy == ESCA_FD_CHAIN) {
				held = 1;
			} else {
				esca__run_direct(t, e, 1);
				continue;
			}
		}
		need = sqes_needed(e);
		if (!held && used + need > space)
			held = 1;	/* SQ full: the rest waits a round */
		if (held) {
			f->busy = ESCA_FD_HELD;
			if (f2)
				f2->readers = 1;
			continue;
		}
		used += need;
		e->chain_next = NULL;
		if (f->busy == ESCA_FD_CHAIN)
			((struct esca_entry *)f->tail)->chain_next = e;
		else
			u->heads[nheads++] = e;
		f->busy = ESCA_FD_CHAIN;
		f->tail = e;
		if (f2)
			f2->readers = 1;
		e->state = ESCA_S_INFLIGHT;
		t->inflight++;
		t->st.entries_executed++;
	}
	for (unsigned h = 0; h < nheads; h++) {
		for (struct esca_entry *e = u->heads[h]; e; e = e->chain_next) {
			struct io_uring_sqe *last = prep_entry(t, u, e);

			if (e->chain_next)
				last->flags |= IOSQE_IO_LINK;
		}
	}
	u->outstanding += used;
	return used;
}

static void reap(struct esca_table *t, struct uring_state *u)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&u->ring, head, cqe) {
		uint64_t d = io_uring_cqe_get_data64(cqe);
		struct esca_entry *e = (struct esca_entry *)(uintptr_t)(d & ~STAGE_MASK);

		n++;
		if (d == EPOLL_TAG) {
			u->ep_res = cqe->res;
			u->ep_done = 1;
			continue;
		}
		if (!e || d == CANCEL_TAG)
			continue;
		switch (d & STAGE_MASK) {
		case STAGE_READ:
			e->res_read = cqe->res;
			break;
		case STAGE_POLL:
			e->res_poll = cqe->res;
			break;
		default:
			e->res_main = cqe->res;
			break;
		}
		if (--e->nsqe == 0)
			finalize(t, e);
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

/* The ring failed (should not happen): finish every entry plainly. */
static int fail_over(struct esca_table *t, int err)
{
	esca__run_queued_direct(t, 1);
	return err;
}

static int uring_flush(struct esca_table *t, unsigned mode)
{
	struct uring_state *u = t->priv;
	int rounds = 0;

	for (;;) {
		unsigned queued_before = t->live - t->inflight;
		unsigned used = build_round(t, u);
		int r;

		if (used == 0 && t->inflight == 0 &&
		    !io_uring_sq_ready(&u->ring))
			break;	/* nothing in flight, nothing to send */
		if (mode == ESCA_FLUSH_WAIT && t->inflight > 0)
			r = enter(t, u, u->outstanding, 0);	/* all of them */
		else
			r = enter(t, u, 0, u->outstanding > 0);
		if (r < 0)
			return fail_over(t, r);
		reap(t, u);
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

/* ESCA_CFG_FOLD_WAIT: flush and wait on the program's epoll set in the same
 * io_uring_enter.  The IORING_OP_EPOLL_WAIT goes in with the first round:
 * where events are ready it completes inline, and the flush and the wait
 * cost one entry; else the flush finishes (direct sendfiles, later rounds)
 * and the ring waits for it (parked sends move meanwhile), with the
 * program's timeout and signal mask.  A timeout or a signal cancels it.
 * Returns the number of events, -errno, or -ENOSYS (not here: the caller
 * flushes and waits itself). */
static int uring_flush_epoll(struct esca_table *t, int epfd, void *evs,
			     int max, int timeout_ms, const void *sigmask)
{
	struct uring_state *u = t->priv;
	struct io_uring *ring = &u->ring;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct timespec now;
	int64_t deadline = 0;
	int intr = 0, r;

	if (!u->have_epwait || u->ep_busy || max <= 0)
		return -ENOSYS;
	sqe = io_uring_get_sqe(ring);
	if (!sqe)
		return -ENOSYS;
	if (timeout_ms > 0) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		deadline = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec +
			   (int64_t)timeout_ms * 1000000;
	}
	io_uring_prep_rw(IORING_OP_EPOLL_WAIT, sqe, epfd, evs, (unsigned)max, 0);
	io_uring_sqe_set_data64(sqe, EPOLL_TAG);
	u->outstanding++;
	u->ep_busy = 1;
	u->ep_done = 0;
	/* the flush, the wait's SQE going in with its first round */
	r = uring_flush(t, ESCA_FLUSH_REAP);
	if (r < 0) {
		u->ep_busy = 0;
		return r;	/* the ring failed: entries were run plainly */
	}
	/* the wait */
	while (!u->ep_done && timeout_ms != 0) {
		struct __kernel_timespec ts, *tsp = NULL;

		if (timeout_ms > 0) {
			int64_t left;

			clock_gettime(CLOCK_MONOTONIC, &now);
			left = deadline - ((int64_t)now.tv_sec * 1000000000 +
					   now.tv_nsec);
			if (left <= 0)
				break;
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			tsp = &ts;
		}
		t->st.kernel_entries++;
		r = io_uring_submit_and_wait_timeout(ring, &cqe, 1, tsp,
						     (sigset_t *)sigmask);
		reap(t, u);
		if (r == -EINTR) {
			intr = 1;
			break;
		}
		if (r == -ETIME)
			continue;	/* the loop looks at the clock */
		if (r < 0 && r != -EAGAIN && r != -EBUSY)
			break;
		build_round(t, u);	/* parked sends requeued: on */
	}
	if (!u->ep_done) {
		sqe = io_uring_get_sqe(ring);
		if (!sqe) {
			t->st.kernel_entries++;
			io_uring_submit(ring);
			sqe = io_uring_get_sqe(ring);
		}
		if (sqe) {
			io_uring_prep_cancel64(sqe, EPOLL_TAG, 0);
			io_uring_sqe_set_data64(sqe, CANCEL_TAG);
			u->outstanding++;
		}
		while (!u->ep_done) {
			t->st.kernel_entries++;
			r = io_uring_submit_and_wait(ring, 1);
			if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
				break;
			reap(t, u);
		}
	}
	u->ep_busy = 0;
	if (!u->ep_done)
		return -EIO;	/* the ring failed: cannot happen */
	if (u->ep_res == -ECANCELED || u->ep_res == -EINTR)
		return intr ? -EINTR : 0;
	return u->ep_res;
}

/* With DEFER_TASKRUN, a parked send moves only while this thread is in
 * io_uring_enter; an eventfd registered with the ring is signalled when
 * such work is queued, so an event loop can wait on it beside its own fds. */
static int uring_progress_fd(struct esca_table *t)
{
	struct uring_state *u = t->priv;
	int fd, r;

	if (u->evfd >= 0)
		return u->evfd;
	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	r = io_uring_register_eventfd(&u->ring, fd);
	t->st.kernel_entries += 2;
	if (r < 0) {
		close(fd);
		return r;
	}
	u->evfd = fd;
	io_uring_cq_eventfd_toggle(&u->ring, false);
	return fd;
}

static void uring_progress_arm(struct esca_table *t, int on)
{
	struct uring_state *u = t->priv;

	if (u->evfd >= 0)
		io_uring_cq_eventfd_toggle(&u->ring, on != 0);
}

static int uring_owns_fd(struct esca_table *t, int fd)
{
	struct uring_state *u = t->priv;

	return u && fd >= 0 && (fd == u->ring.ring_fd || fd == u->evfd);
}

const struct esca_executor esca__uring = {
	.name = "uring",
	.init = uring_init,
	.fini = uring_fini,
	.abandon = uring_abandon,
	.flush = uring_flush,
	.progress_fd = uring_progress_fd,
	.progress_arm = uring_progress_arm,
	.flush_epoll = uring_flush_epoll,
	.owns_fd = uring_owns_fd,
};

/* ---- for esca doctor ---------------------------------------------------- */

static const char *const opnames[] = {
	"NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED",
	"POLL_ADD", "POLL_REMOVE", "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG",
	"TIMEOUT", "TIMEOUT_REMOVE", "ACCEPT", "ASYNC_CANCEL", "LINK_TIMEOUT",
	"CONNECT", "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE", "STATX",
	"READ", "WRITE", "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2",
	"EPOLL_CTL", "SPLICE", "PROVIDE_BUFFERS", "REMOVE_BUFFERS", "TEE",
	"SHUTDOWN", "RENAMEAT", "UNLINKAT", "MKDIRAT", "SYMLINKAT", "LINKAT",
	"MSG_RING", "FSETXATTR", "SETXATTR", "FGETXATTR", "GETXATTR", "SOCKET",
	"URING_CMD", "SEND_ZC", "SENDMSG_ZC", "READ_MULTISHOT", "WAITID",
	"FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_WAITV", "FIXED_FD_INSTALL",
	"FTRUNCATE", "BIND", "LISTEN", "RECV_ZC", "EPOLL_WAIT", "READV_FIXED",
	"WRITEV_FIXED", "PIPE",
};

const char *esca_uring_opname(int opcode)
{
	if (opcode < 0 || (size_t)opcode >= sizeof(opnames) / sizeof(opnames[0]))
		return NULL;
	return opnames[opcode];
}

int esca_uring_probe(unsigned char *ops, int nops, int *last_op,
		     int *setsockopt_cmd, unsigned *setup_flags)
{
	struct io_uring ring;
	struct io_uring_probe *p;
	unsigned flags = 0;
	int r;

	if (ops && nops > 0)
		memset(ops, 0, (size_t)nops);
	if (setsockopt_cmd)
		*setsockopt_cmd = 0;
	r = ring_setup(&ring, 8, &flags);
	if (r < 0)
		return r;
	if (setup_flags)
		*setup_flags = flags;
	p = io_uring_get_probe_ring(&ring);
	if (p) {
		if (last_op)
			*last_op = p->last_op;
		for (int i = 0; i < nops && i <= p->last_op; i++)
			ops[i] = io_uring_opcode_supported(p, i) ? 1 : 0;
		io_uring_free_probe(p);
	}
	if (setsockopt_cmd)
		*setsockopt_cmd = check_setsockopt(&ring);
	io_uring_queue_exit(&ring);
	return 0;
}
