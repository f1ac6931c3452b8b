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
 * Like sequential, a flush returns when every entry is complete (it never
 * leaves anything in flight).  Because the kernel runs the entries one
 * after another in table order, per-fd order holds within a round; across
 * rounds an entry waits while an earlier entry of its fd (or a sendfile
 * reading it) is still pending; within a round, the module holds back the
 * later entries of an fd whose entry stopped short (esca_lkm.h, "Order"),
 * and they go in the next round.  A round ends early at an entry that needs
 * user space first: a write whose non-blocking fd was full (it polls for
 * POLLOUT, then goes in) and setsockopt and shutdown, which the module does
 * not run (their LSM and cgroup-BPF hooks are out of a module's reach): they
 * run as plain system calls at their turn.  Short results go in again for
 * the rest.  A FLUSH that says EACCES (the thread is under seccomp, ptrace
 * or syscall audit/tracing) runs nothing: the entries run plainly.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "esca_lkm.h"
#include "internal.h"

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
};

static void lkm_release(struct lkm_state *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->tab)
		munmap(s->tab, s->tab_bytes);
	free(s->iov);
	free(s->rest);
	free(s->slot);
	free(s);
}

static int lkm_init(struct esca_table *t)
{
	struct lkm_state *s = calloc(1, sizeof(*s));
	struct esca_lkm_register reg = { 0 };
	long pg = sysconf(_SC_PAGESIZE);
	int r;

	if (!s)
		return -ENOMEM;
	s->fd = open(ESCA_LKM_DEVICE, O_RDWR | O_CLOEXEC);
	if (s->fd < 0) {
		r = -errno;
		free(s);
		return r;	/* ENOENT: no module; auto moves on */
	}
	s->n = t->cap < ESCA_LKM_MAX_ENTRIES ? t->cap : ESCA_LKM_MAX_ENTRIES;
	s->tab_bytes = (s->n * sizeof(*s->tab) + (size_t)pg - 1) &
		       ~((size_t)pg - 1);
	s->tab = mmap(NULL, s->tab_bytes, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	s->iov = calloc(s->n, sizeof(*s->iov));
	s->rest = calloc(s->n, sizeof(*s->rest));
	s->slot = calloc(s->n, sizeof(*s->slot));
	if (s->tab == MAP_FAILED) {
		s->tab = NULL;
		lkm_release(s);
		return -ENOMEM;
	}
	if (!s->iov || !s->rest || !s->slot) {
		lkm_release(s);
		return -ENOMEM;
	}
	reg.table = (uint64_t)(uintptr_t)s->tab;
	reg.nents = s->n;
	reg.entry_size = sizeof(*s->tab);
	if (ioctl(s->fd, ESCA_IOC_REGISTER, &reg) < 0) {
		r = -errno;
		lkm_release(s);
		return r;
	}
	t->priv = s;
	return 0;
}

static void lkm_fini(struct esca_table *t)
{
	if (t->priv)
		lkm_release(t->priv);
	t->priv = NULL;
}

static void requeue(struct esca_table *t, struct esca_entry *e)
{
	e->state = ESCA_S_QUEUED;
	t->inflight--;
	t->st.resubmitted++;
}

static struct esca_fd *fresh(struct esca_table *t, int fd)
{
	struct esca_fd *f = &t->fds[fd];

	if (f->mark != t->round) {
		f->mark = t->round;
		f->busy = ESCA_FD_FREE;
		f->readers = 0;
	}
	return f;
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

/* Run e now as plain system calls (setsockopt; or everything, if the
 * module failed), finishing what is not done yet. */
/* Wait until fd is writable (a write on it said EAGAIN). */
static void wait_writable(struct esca_table *t, int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	for (;;) {
		int r = poll(&p, 1, -1);

		t->st.kernel_entries++;
		if (r >= 0 || errno != EINTR)
			return;
	}
}

/* Gather the entries whose turn it is into the kernel table.  Returns how
 * many; entries that ran in user space meanwhile are complete already. */
static unsigned build_round(struct esca_table *t, struct lkm_state *s)
{
	unsigned k = 0;

	t->round++;
	if (t->round == 0)
		t->round = 1;
	for (uint32_t i = t->head; i != t->tail && k < s->n; i++) {
		struct esca_entry *e = esca__ent(t, i);
		struct esca_lkm_entry *le;
		struct esca_fd *f, *f2 = NULL;
		int held;

		if (e->state != ESCA_S_QUEUED)
			continue;
		f = fresh(t, e->key);
		if (e->op == ESCA_OP_SENDFILE)
			f2 = fresh(t, e->fd2);
		held = f->busy == ESCA_FD_HELD;
		if (e->op != ESCA_OP_SENDFILE && f->readers)
			held = 1;	/* a held sendfile still reads it */
		if (f2 && f2->busy == ESCA_FD_HELD)
			held = 1;	/* an earlier op on the file is held */
		if (!held && (e->need_poll || e->op == ESCA_OP_SETSOCKOPT ||
			      e->op == ESCA_OP_SHUTDOWN)) {
			if (k > 0) {
				held = 1;	/* after what is gathered */
			} else if (e->op == ESCA_OP_SETSOCKOPT ||
				   e->op == ESCA_OP_SHUTDOWN) {
				esca__run_direct(t, e, 1);
				continue;
			} else {
				wait_writable(t, e->fd);
				e->need_poll = 0;
			}
		}
		if (held) {
			f->busy = ESCA_FD_HELD;
			if (f2)
				f2->readers = 1;
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
		f->busy = ESCA_FD_CHAIN;
		e->state = ESCA_S_INFLIGHT;
		t->inflight++;
		t->st.entries_executed++;
	}
	return k;
}

static int would_block(const struct esca_entry *e, int32_t err)
{
	return (err == -EAGAIN || err == -EWOULDBLOCK) &&
	       !(e->flags & MSG_DONTWAIT);
}

/* What the kernel said about e. */
static void finish(struct esca_table *t, struct esca_entry *e, int64_t r,
		   int32_t err)
{
	if (e->op != ESCA_OP_SENDFILE && !esca__is_data(e->op)) {
		if (r == -EINTR && e->op != ESCA_OP_CLOSE)
			requeue(t, e);
		else
			esca__complete(t, e, r);
		return;
	}
	if (r < 0) {
		if (r == -EINTR) {
			requeue(t, e);
		} else if (would_block(e, (int32_t)r)) {
			e->need_poll = 1;
			requeue(t, e);
		} else {
			esca__complete(t, e, e->done ? (int64_t)e->done : r);
		}
		return;
	}
	e->done += (size_t)r;
	if (e->done >= e->len) {
		esca__complete(t, e, (int64_t)e->done);
	} else if (would_block(e, err) || err == -EINTR) {
		t->st.short_completed++;
		e->need_poll = err != -EINTR;
		requeue(t, e);	/* the rest, before anything after it */
	} else {
		/* end of file (sendfile), no progress, or an error after
		 * progress: the plain call returns the count */
		if (e->op == ESCA_OP_SENDFILE && err == 0)
			t->st.short_completed++;
		esca__complete(t, e, (int64_t)e->done);
	}
}

/* The module failed (should not happen): finish every entry plainly. */
static int fail_over(struct esca_table *t, int err)
{
	esca__run_queued_direct(t, 1);
	return err;
}

static int lkm_flush(struct esca_table *t, unsigned mode)
{
	struct lkm_state *s = t->priv;

	(void)mode;	/* every entry completes, as with sequential */
	while (t->live > 0) {
		unsigned k = build_round(t, s);
		struct esca_lkm_flush fl = { .first = 0, .count = k };
		int err = 0;

		while (k > 0 && ioctl(s->fd, ESCA_IOC_FLUSH, &fl) < 0) {
			t->st.kernel_entries++;
			if (errno != EINTR) {	/* EINTR: nothing ran yet */
				err = -errno;
				break;
			}
		}
		if (k > 0 && err == 0)
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
				finish(t, e, le->result, le->error);
			} else {
				e->state = ESCA_S_QUEUED;	/* not run */
				t->inflight--;
			}
			le->state = ESCA_LKM_FREE;
		}
		if (err < 0)	/* EACCES: filtered, traced or audited */
			return fail_over(t, err == -EACCES ? 0 : err);
	}
	return 0;
}

static int lkm_owns_fd(struct esca_table *t, int fd)
{
	struct lkm_state *s = t->priv;

	return s && fd >= 0 && fd == s->fd;
}

const struct esca_executor esca__lkm = {
	.name = "lkm",
	.init = lkm_init,
	.fini = lkm_fini,
	/* after fork, in the child: its copies of the fd and the table go;
	 * the parent's context and pinned pages are the parent's */
	.abandon = lkm_fini,
	.flush = lkm_flush,
	.owns_fd = lkm_owns_fd,
};
