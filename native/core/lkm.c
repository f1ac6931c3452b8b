/* SPDX-License-Identifier: MIT
 * lkm.c - the kernel module executor: the table goes to /dev/esca (lkm/),
 * one ioctl per round runs every entry in the kernel, in table order.
 *
 * The executor registers a table of struct esca_lkm_entry (esca_lkm.h) of
 * the core table's capacity once; the module pins it.  A flush fills the
 * entries whose turn it is, from the start of that table, and issues one
 * ESCA_IOC_FLUSH; each entry's data pointer is the core's own copy (the
 * arena) or the caller's borrowed memory, read by the module in this
 * process's context, so only the table itself is pinned.
 *
 * A waiting flush (ESCA_FLUSH_WAIT) returns when every entry is complete.
 * Because the kernel runs the entries one after another in table order,
 * per-fd order (DESIGN.md, "Contract: order") holds within a round
 * (order.h, ESCA_ROUND_SERIAL); across rounds an entry waits while an
 * earlier entry of its key (or a sendfile reading it) is still pending;
 * within a round, the module holds back the later entries of an fd whose
 * entry stopped short (esca_lkm.h, "Order"), and they go in the next round.
 * A round ends early at an entry that needs user space first: a write whose
 * non-blocking fd was full (a waiting flush polls for POLLOUT, then it goes
 * in) and setsockopt and shutdown, which the module does not run (their LSM
 * and cgroup-BPF hooks are out of a module's reach): they run as plain
 * system calls at their turn.  Short results go in again for the rest.  A
 * FLUSH that says EACCES (the thread is under seccomp, ptrace or syscall
 * audit/tracing) runs nothing: the entries run plainly.
 *
 * Parked entries (DESIGN.md, "Contract: parked sends").  Under a reaping
 * flush (ESCA_FLUSH_REAP) an entry the module stopped on a full fd (-EAGAIN)
 * is parked (park.c): in flight with its progress (e->done), its fd waiting
 * for room in the progress fd; the next reaping flush puts the entries of
 * the fds with room back in the queue, and a waiting flush takes every
 * parked entry back and waits for its fd as above.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "esca_lkm.h"
#include "internal.h"
#include "order.h"
#include "sys.h"

_Static_assert(sizeof(struct esca_lkm_entry) == 64, "esca_lkm_entry ABI");
_Static_assert((int)ESCA_LKM_WRITE == (int)ESCA_OP_WRITE &&
	       (int)ESCA_LKM_WRITEV == (int)ESCA_OP_WRITEV &&
	       (int)ESCA_LKM_SEND == (int)ESCA_OP_SEND &&
	       (int)ESCA_LKM_SENDMSG == (int)ESCA_OP_SENDMSG &&
	       (int)ESCA_LKM_SENDFILE == (int)ESCA_OP_SENDFILE &&
	       (int)ESCA_LKM_SHUTDOWN == (int)ESCA_OP_SHUTDOWN &&
	       (int)ESCA_LKM_CLOSE == (int)ESCA_OP_CLOSE &&
	       (int)ESCA_LKM_SETSOCKOPT == (int)ESCA_OP_SETSOCKOPT &&
	       (int)ESCA_LKM_FSYNC == (int)ESCA_OP_FSYNC,
	       "esca_lkm_op numbers are esca_op's");

struct lkm_state {
	int fd;				/* /dev/esca */
	unsigned n;			/* entries registered */
	struct esca_lkm_entry *tab;	/* the pinned table (mmap) */
	size_t tab_bytes;
	struct iovec *iov;		/* per slot: the data past what is done */
	struct iovec **rest;		/* per slot: a multi-iovec remainder */
	struct esca_entry **slot;	/* per slot: its core entry */
	struct esca_parking park;	/* parked entries, the progress fd */
};

static void lkm_release(struct lkm_state *s)
{
	if (s->fd >= 0) {
		esca__fd_gone(s->fd);
		esca_sys_close(s->fd);
	}
	esca__parking_release(&s->park);
	if (s->tab)
		munmap(s->tab, s->tab_bytes);
	esca__zfree(s->iov, s->n * sizeof(*s->iov));
	esca__zfree(s->rest, s->n * sizeof(*s->rest));
	esca__zfree(s->slot, s->n * sizeof(*s->slot));
	esca__zfree(s, sizeof(*s));
}

static int lkm_init(struct esca_table *t)
{
	/* mmap, not malloc: maybe a signal handler's first call
	 * (internal.h, esca__zalloc) */
	struct lkm_state *s = esca__zalloc(sizeof(*s));
	struct esca_lkm_register reg = { 0 };
	long pg = sysconf(_SC_PAGESIZE);
	int r;

	if (!s)
		return -ENOMEM;
	s->park.epfd = -1;
	esca__fd_making(1);
	s->fd = (int)esca_sys_open(ESCA_LKM_DEVICE, O_RDWR | O_CLOEXEC);
	if (s->fd >= 0)
		s->fd = esca__fd_high(s->fd);
	esca__fd_making(0);
	if (s->fd < 0) {
		r = s->fd;
		esca__zfree(s, sizeof(*s));
		return r;	/* ENOENT: no module; auto moves on */
	}
	s->n = t->cap < ESCA_LKM_MAX_ENTRIES ? t->cap : ESCA_LKM_MAX_ENTRIES;
	s->tab_bytes = (s->n * sizeof(*s->tab) + (size_t)pg - 1) &
		       ~((size_t)pg - 1);
	s->tab = mmap(NULL, s->tab_bytes, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	s->iov = esca__zalloc(s->n * sizeof(*s->iov));
	s->rest = esca__zalloc(s->n * sizeof(*s->rest));
	s->slot = esca__zalloc(s->n * sizeof(*s->slot));
	if (s->tab == MAP_FAILED) {
		s->tab = NULL;
		lkm_release(s);
		return -ENOMEM;
	}
	if (!s->iov || !s->rest || !s->slot ||
	    esca__parking_init(t, &s->park) < 0) {
		lkm_release(s);
		return -ENOMEM;
	}
	reg.table = (uint64_t)(uintptr_t)s->tab;
	reg.nents = s->n;
	reg.entry_size = sizeof(*s->tab);
	r = (int)esca_sys_ioctl(s->fd, ESCA_IOC_REGISTER, &reg);
	if (r < 0) {
		lkm_release(s);
		return r;
	}
	t->priv = s;
	t->caps |= ESCA_CAP_PARKS | ESCA_CAP_OWN_PROGRESS | ESCA_CAP_ONE_ENTRY;
	return 0;
}

static void lkm_fini(struct esca_table *t)
{
	if (t->priv)
		lkm_release(t->priv);
	t->priv = NULL;
}

/* The data of e past what is done, as an iovec array in user memory. */
static int data_iov(struct lkm_state *s, unsigned k, struct esca_entry *e,
		    struct esca_lkm_entry *le)
{
	size_t skip = e->done;
	int i = 0;

	if (e->iovcnt <= 1) {
		s->iov[k].iov_base = e->iovcnt ?
			(char *)e->iov[0].iov_base + skip : NULL;
		s->iov[k].iov_len = e->iovcnt ? e->iov[0].iov_len - skip : 0;
		le->iov = (uint64_t)(uintptr_t)&s->iov[k];
		le->iovcnt = 1;
		return 0;
	}
	if (skip == 0) {	/* a borrowed iovec, our own copy of it */
		le->iov = (uint64_t)(uintptr_t)e->iov;
		le->iovcnt = (uint32_t)e->iovcnt;
		return 0;
	}
	while (i < e->iovcnt && skip >= e->iov[i].iov_len)
		skip -= e->iov[i++].iov_len;
	s->rest[k] = malloc((size_t)(e->iovcnt - i) * sizeof(struct iovec));
	if (!s->rest[k])
		return -ENOMEM;
	memcpy(s->rest[k], e->iov + i, (size_t)(e->iovcnt - i) * sizeof(struct iovec));
	if (i < e->iovcnt) {
		s->rest[k][0].iov_base = (char *)s->rest[k][0].iov_base + skip;
		s->rest[k][0].iov_len -= skip;
	}
	le->iov = (uint64_t)(uintptr_t)s->rest[k];
	le->iovcnt = (uint32_t)(e->iovcnt - i);
	return 0;
}

/* Wait until fd is writable (a write on it said EAGAIN). */
static void wait_writable(struct esca_table *t, int fd)
{
	for (;;) {
		long r = esca_sys_wait_writable(fd);

		t->st.kernel_entries++;
		if (r != -EINTR)
			return;
	}
}

/* The progress fd (park.c). */
static int lkm_progress_fd(struct esca_table *t)
{
	struct lkm_state *s = t->priv;

	if (!s)
		return -EBADF;
	return esca__parking_progress_fd(t, &s->park);
}

/* Gather the entries whose turn it is (order.h) into the kernel table.
 * Returns how many; entries that ran in user space meanwhile are complete
 * already.  An entry whose fd was full (need_poll: stopped outside a
 * reaping flush, or taken back by esca__unpark_all: a linger-0 close's
 * esca_fd_abort takes every parked entry back) waits for room first, but
 * not in a reaping flush (mode): there it goes in only if its fd has room
 * now, else it parks again, what follows it held; waiting here blocked the
 * thread behind a peer that does not read, and left queued it made the
 * exit's drain wait for it for good
 * (tests/trust/test_found_linger_abort.py, in the guest). */
static unsigned build_round(struct esca_table *t, struct lkm_state *s,
			    unsigned mode)
{
	struct esca_round round;
	struct esca_turn turn;
	unsigned k = 0;

	esca__round_start(t, &round, ESCA_ROUND_SERIAL);
	while (k < s->n && esca__round_next(t, &round, &turn)) {
		struct esca_entry *e = turn.e;
		struct esca_lkm_entry *le;

		if (!turn.held && (e->need_poll || e->op == ESCA_OP_SETSOCKOPT ||
				   e->op == ESCA_OP_SHUTDOWN)) {
			if (k > 0) {
				turn.held = 1;	/* after what is gathered */
			} else if (e->op == ESCA_OP_SETSOCKOPT ||
				   e->op == ESCA_OP_SHUTDOWN) {
				esca__run_direct(t, e, 1);
				continue;
			} else if (mode != ESCA_FLUSH_REAP) {
				wait_writable(t, e->fd);
				e->need_poll = 0;
			} else {
				t->st.kernel_entries++;
				if (esca_sys_writable_now(e->fd) != 0) {
					e->need_poll = 0;	/* room, or an
						 * error the op will meet */
				} else {
					esca__park(t, &s->park, e);
					turn.held = 1;	/* parked again */
				}
			}
		}
		if (turn.held) {
			esca__round_hold(&turn);
			continue;
		}
		le = &s->tab[k];
		memset(le, 0, sizeof(*le));
		le->op = e->op;
		le->key = e->key;
		le->fd = e->fd;
		le->fd2 = e->fd2;
		le->flags = e->flags;
		if (e->op == ESCA_OP_SENDFILE) {
			le->offset = e->offset < 0 ? -1 :
				     e->offset + (int64_t)e->done;
			le->count = e->len - e->done;
		} else if (esca__is_data(e->op)) {
			if (data_iov(s, k, e, le) < 0) {
				esca__run_direct(t, e, 1);	/* no memory for the rest */
				continue;
			}
			/* the module's write and send take one buffer */
			if (le->iovcnt != 1 && e->op == ESCA_OP_WRITE)
				le->op = ESCA_LKM_WRITEV;
			else if (le->iovcnt != 1 && e->op == ESCA_OP_SEND)
				le->op = ESCA_LKM_SENDMSG;
		}
		le->state = ESCA_LKM_BUSY;
		s->slot[k++] = e;
		esca__round_admit(t, &round, &turn);
	}
	return k;
}

static int would_block(const struct esca_entry *e, int32_t err)
{
	return (err == -EAGAIN || err == -EWOULDBLOCK) &&
	       !(e->flags & MSG_DONTWAIT);
}

/* e stopped on its full fd: park it (a reaping flush), else it waits for
 * POLLOUT at its next turn.  The rest goes before anything after it. */
static void stopped_full(struct esca_table *t, struct lkm_state *s,
			 struct esca_entry *e, unsigned mode)
{
	if (mode == ESCA_FLUSH_REAP) {
		esca__park(t, &s->park, e);	/* an fd it cannot watch
						 * parks unwatched */
		return;
	}
	e->need_poll = 1;
	esca__requeue(t, e);
}

/* What the kernel said about e. */
static void finish(struct esca_table *t, struct lkm_state *s,
		   struct esca_entry *e, int64_t r, int32_t err, unsigned mode)
{
	if (e->op != ESCA_OP_SENDFILE && !esca__is_data(e->op)) {
		if (r == -EINTR && e->op != ESCA_OP_CLOSE)
			esca__requeue(t, e);
		else
			esca__complete(t, e, r);
		return;
	}
	if (r < 0) {
		if (r == -EINTR) {
			esca__requeue(t, e);
		} else if (would_block(e, (int32_t)r)) {
			stopped_full(t, s, e, mode);
		} else {
			esca__complete(t, e, e->done ? (int64_t)e->done : r);
		}
		return;
	}
	e->done += (size_t)r;
	if (e->done >= e->len) {
		esca__complete(t, e, (int64_t)e->done);
	} else if (err == -EINTR) {
		t->st.short_completed++;
		esca__requeue(t, e);	/* the rest, before anything after it */
	} else if (would_block(e, err)) {
		t->st.short_completed++;
		stopped_full(t, s, e, mode);
	} else {
		/* end of file (sendfile), no progress, or an error after
		 * progress: the plain call returns the count */
		if (e->op == ESCA_OP_SENDFILE && err == 0)
			t->st.short_completed++;
		esca__complete(t, e, (int64_t)e->done);
	}
}

static int lkm_flush(struct esca_table *t, unsigned mode)
{
	struct lkm_state *s = t->priv;

	if (s->park.nparked) {
		if (mode == ESCA_FLUSH_REAP)
			esca__park_harvest(t, &s->park);
		else
			esca__unpark_all(t, &s->park);	/* every entry completes */
	}
	for (;;) {
		unsigned before = t->live;
		unsigned k = build_round(t, s, mode);
		struct esca_lkm_flush fl = { .first = 0, .count = k };
		int err = 0;
		long r;

		if (k == 0) {
			if (t->live == 0)
				break;
			if (t->live != before)
				continue;	/* ran in user space: go on */
			/* the rest is parked or behind what is parked */
			if (mode == ESCA_FLUSH_REAP || t->inflight)
				break;
			esca__run_queued_direct(t, 1);	/* cannot happen */
			break;
		}
		while ((r = esca_sys_ioctl(s->fd, ESCA_IOC_FLUSH, &fl)) < 0) {
			t->st.kernel_entries++;
			if (r != -EINTR) {	/* EINTR: nothing ran yet */
				err = (int)r;
				break;
			}
		}
		if (err == 0)
			t->st.kernel_entries++;
		/* Entries still BUSY did not run: held behind an entry of
		 * their fd that stopped short, or after a signal stopped the
		 * walk.  They go in the next round, in order. */
		for (unsigned j = 0; j < k; j++) {
			struct esca_lkm_entry *le = &s->tab[j];
			struct esca_entry *e = s->slot[j];

			free(s->rest[j]);
			s->rest[j] = NULL;
			if (le->state == ESCA_LKM_DONE) {
				finish(t, s, e, le->result, le->error, mode);
			} else {
				e->state = ESCA_S_QUEUED;	/* not run */
				t->inflight--;
			}
			le->state = ESCA_LKM_FREE;
		}
		if (err < 0) {	/* EACCES: filtered, traced or audited */
			/* plain calls in table order: parked ones first */
			esca__unpark_all(t, &s->park);
			return esca__fail_over(t, err == -EACCES ? 0 : err);
		}
	}
	return 0;
}

static int lkm_owns_fd(struct esca_table *t, int fd)
{
	struct lkm_state *s = t->priv;

	return s && fd >= 0 && (fd == s->fd || fd == s->park.epfd);
}

/* handover.c: the module runs a flush's entries before the ioctl returns,
 * so what is in flight is parked here, in user space: back to the queue,
 * e->done exact, as sequential's (a thread's end and exec hand them over) */
static int lkm_cancel(struct esca_table *t)
{
	struct lkm_state *s = t->priv;

	if (s)
		esca__unpark_all(t, &s->park);
	return 0;
}

const struct esca_executor esca__lkm = {
	.name = "lkm",
	.init = lkm_init,
	.fini = lkm_fini,
	/* after fork, in the child: its copies of the fd and the table go;
	 * the parent's context and pinned pages are the parent's */
	.abandon = lkm_fini,
	.flush = lkm_flush,
	/* no progress_arm: the epoll fd is readable whenever a parked fd has
	 * room, and the reaping flush that follows collects it */
	.progress_fd = lkm_progress_fd,
	.owns_fd = lkm_owns_fd,
	.cancel = lkm_cancel,
};
