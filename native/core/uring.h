/* SPDX-License-Identifier: MIT
 * uring.h - what uring.c (rounds, reap, finalize), uring_fold.c (an epoll
 * wait folded into a flush), uring_direct.c (the plain-syscall paths: a
 * one-call flush, a direct sendfile) and uring_setup.c (ring set-up,
 * allow-list, probe, progress fd) share: the executor's state and its
 * per-entry state (struct uring_slot). */
#ifndef ESCA_URING_H
#define ESCA_URING_H

#include <liburing.h>

#include "internal.h"

#ifndef SOCKET_URING_OP_SETSOCKOPT
#define SOCKET_URING_OP_SETSOCKOPT 3	/* include/uapi/linux/io_uring.h, 6.7 */
#endif
#ifndef IORING_OP_EPOLL_WAIT
#define IORING_OP_EPOLL_WAIT 59	/* Linux 6.15; Debian 12's liburing lacks it */
#endif

/* What the executor keeps of one entry, in u->x[] at the entry's slot (its
 * index in t->ents).  What outlives a round (staged, staged_sent, eof: a
 * sendfile's) is for the entry at table position `pos`: esca__uring_round()
 * resets it when a new sendfile took the slot; the rest is set before each
 * use. */
struct uring_slot {
	uint32_t slot;		/* its index, t->ents[slot] its entry */
	uint32_t pos;		/* table position of the entry it is for */
	uint8_t nsqe;		/* SQEs of the entry not yet completed */
	uint8_t eof;		/* sendfile: a read came back short */
	int32_t res_main, res_read, res_poll;	/* stage results */
	size_t staged;		/* sendfile: bytes read into one.iov_base */
	size_t staged_sent;	/* of those, sent */
	struct uring_slot *chain_next;	/* next of its key in this round */
	struct msghdr msg;	/* SENDMSG of a multi-iov borrow */
};

struct uring_state {
	struct io_uring ring;
	unsigned sq_entries;
	int have_setsockopt;
	struct uring_slot *x;		/* per entry slot, t->slots of them */
	struct uring_slot **heads;	/* first entry of each chain, a round */
	unsigned outstanding;		/* SQEs submitted, CQE not yet seen */
	int evfd;			/* the ring's eventfd, -1 until asked for */
	int pepfd;			/* progress fd: an epoll set of evfd and
					 * the parked sends' fds (EPOLLOUT), -1 */
	unsigned narmed;		/* fds armed there (esca_fd.armed) */
	int pep_failed;			/* no epoll set: the eventfd alone */
	int sf_direct;			/* ESCA_CFG_SENDFILE_DIRECT */
	int have_epwait;		/* IORING_OP_EPOLL_WAIT works */
	int have_recv;			/* IORING_OP_RECV (lever prefetch) */
	int ep_busy, ep_done, ep_res;	/* the folded epoll wait */
};

/* IORING_OP_URING_CMD SOCKET_URING_OP_SETSOCKOPT (Linux 6.7) */
static inline void esca__prep_setsockopt(struct io_uring_sqe *sqe, int fd,
					 int level, int optname,
					 const void *val, unsigned len)
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

/* user_data of the SQEs that are no entry's: no struct uring_slot lives
 * at 8 or 16 (an entry's is its slot's address | stage, uring.c) */
#define EPOLL_TAG 8ull		/* the folded epoll wait */
#define CANCEL_TAG 16ull	/* its cancellation */

/* uring.c */
ESCA_HIDDEN unsigned esca__uring_round(struct esca_table *t,
				       struct uring_state *u);
ESCA_HIDDEN void esca__uring_reap(struct esca_table *t, struct uring_state *u);
ESCA_HIDDEN int esca__uring_flush(struct esca_table *t, unsigned mode);
/* uring_setup.c: fd's last entry is done: out of the progress set */
ESCA_HIDDEN void esca__uring_disarm(struct esca_table *t,
				    struct uring_state *u, int fd);

/* handover.c */
ESCA_HIDDEN int esca__uring_cancel(struct esca_table *t);

/* uring_direct.c */
ESCA_HIDDEN int esca__uring_one_now(struct esca_table *t, struct uring_state *u);
ESCA_HIDDEN unsigned esca__uring_plain_pass(struct esca_table *t,
					   struct uring_state *u);
ESCA_HIDDEN int esca__uring_sendfile_direct(const struct uring_state *u,
					    const struct esca_entry *e,
					    const struct uring_slot *x);
ESCA_HIDDEN int esca__uring_sendfile_now(struct esca_table *t,
					 struct esca_entry *e);

/* uring_fold.c */
ESCA_HIDDEN int esca__uring_flush_epoll(struct esca_table *t, int epfd,
					void *evs, int max, int timeout_ms,
					const void *sigmask);

/* uring_setup.c */
ESCA_HIDDEN int esca__uring_init(struct esca_table *t);
ESCA_HIDDEN void esca__uring_fini(struct esca_table *t);
ESCA_HIDDEN int esca__uring_progress_fd(struct esca_table *t);
ESCA_HIDDEN void esca__uring_progress_arm(struct esca_table *t, int on);
ESCA_HIDDEN int esca__uring_owns_fd(struct esca_table *t, int fd);

#endif
