/* SPDX-License-Identifier: MIT
 * order.c - per-fd order (DESIGN.md, "Contract: order") for every
 * executor, with order.h (which queued entries go into a round): the per-fd
 * map (esca__fd, esca_fd_pending, esca_fd_inflight, esca_fd_keep_file), completion
 * (esca__complete, esca__skip_broken), esca__requeue, esca__fail_over.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "sys.h"

/* The per-fd map grows by mmap/mremap, never malloc: esca__fd is on the
 * queue path, which a signal handler may reach while the thread it
 * interrupted is inside malloc (a self-pipe handler's write). */
struct esca_fd *esca__fd(struct esca_table *t, int fd)
{
	if (fd >= t->nfds) {
		size_t n = t->nfds ? (size_t)t->nfds * 2 : 256;
		void *f;

		while (n <= (size_t)fd)
			n *= 2;
		if (n > (size_t)INT_MAX)
			n = (size_t)INT_MAX;
		if (t->fds)
			f = mremap(t->fds, (size_t)t->nfds * sizeof(*t->fds),
				   n * sizeof(*t->fds), MREMAP_MAYMOVE);
		else
			f = mmap(NULL, n * sizeof(*t->fds),
				 PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (f == MAP_FAILED)
			return NULL;
		/* new anonymous pages are zero: nothing to clear */
		t->fds = f;
		t->nfds = (int)n;
	}
	return &t->fds[fd];
}

/* The table's own dup of a file (esca_fd_keep_file), its last reader
 * done. */
static void own_close(struct esca_table *t, int fd)
{
	t->fds[fd].own = 0;
	esca__fd_gone(fd);
	esca_sys_close(fd);
}

/* Give the map back (esca_table_free, esca_table_abandon). */
void esca__fd_map_free(struct esca_table *t)
{
	for (int i = 0; i < t->nfds; i++)
		if (t->fds[i].own)	/* a fork's child: its copies */
			own_close(t, i);
	if (t->fds)
		munmap(t->fds, (size_t)t->nfds * sizeof(*t->fds));
	t->fds = NULL;
	t->nfds = 0;
}

int esca_fd_pending(const struct esca_table *t, int fd)
{
	if (fd < 0 || fd >= t->nfds)
		return 0;
	return t->fds[fd].pending > 0 || t->fds[fd].keyed > 0;
}

int esca_fd_inflight(const struct esca_table *t, int fd)
{
	if (!esca_fd_pending(t, fd))
		return 0;
	for (uint32_t i = t->head; i != t->tail; i++) {
		const struct esca_entry *e = &t->ents[i & (t->slots - 1)];

		if (e->state == ESCA_S_INFLIGHT && e->fd == fd)
			return 1;
	}
	return 0;
}

static void fd_unref(struct esca_table *t, int fd)
{
	if (fd >= 0 && fd < t->nfds && t->fds[fd].pending > 0)
		t->fds[fd].pending--;
}

int esca_fd_keep_file(struct esca_table *t, int fd)
{
	int n = 0, dup = -1;

	if (fd < 0 || fd >= t->nfds || !t->fds[fd].pending)
		return 0;
	for (uint32_t i = t->head; i != t->tail; i++) {
		struct esca_entry *e = esca__ent(t, i);

		if (e->state == ESCA_S_DONE || e->op != ESCA_OP_SENDFILE ||
		    e->fd2 != fd || e->fd == fd)
			continue;
		if (dup < 0) {
			long r;

			esca__fd_making(1);
			r = esca_sys_ret(syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 0));
			if (r >= 0)
				r = esca__fd_high((int)r);
			esca__fd_making(0);
			t->st.kernel_entries++;
			if (r < 0)
				return n ? n : (int)r;
			if (!esca__fd(t, (int)r)) {	/* no memory for its state */
				esca__fd_gone((int)r);
				esca_sys_close((int)r);
				return n ? n : -ENOMEM;
			}
			dup = (int)r;
			t->fds[dup].own = 1;
			t->fds[dup].type = t->fds[fd].type;
		}
		e->fd2 = dup;
		t->fds[fd].pending--;
		t->fds[dup].pending++;
		n++;
	}
	return n;
}

/* A close of e's number is queued before e: the number no longer names the
 * broken connection when e runs (EBADF, or a new file once the program
 * reopens it): the kernel answers e.  A scan, on the broken path only. */
static int closed_before(const struct esca_table *t, const struct esca_entry *e)
{
	for (uint32_t i = t->head; i != t->tail; i++) {
		const struct esca_entry *c = &t->ents[i & (t->slots - 1)];

		if (c == e)
			return 0;
		if (c->op == ESCA_OP_CLOSE && c->fd == e->fd &&
		    c->state != ESCA_S_DONE)
			return 1;
	}
	return 0;
}

/* A data op of a key whose connection broke earlier in this table (EPIPE,
 * ECONNRESET) would fail the same way: complete it so without running it
 * (no SIGPIPE per queued op where the program would have stopped at the
 * first error; DESIGN.md, "Contract: errors").  1: e is complete. */
int esca__skip_broken(struct esca_table *t, struct esca_entry *e)
{
	int err;

	if (!t->nbroken || !esca__sends(e->op) || e->len == 0 ||
	    e->key >= t->nfds)
		return 0;	/* nothing to send: its own answer is exact */
	err = t->fds[e->key].broken;
	if (!err || closed_before(t, e))
		return 0;
	/* a reset is told once: the kernel's later sends say EPIPE (the
	 * socket is shut for sending; the Python API's audit: ECONNRESET
	 * three times where Linux said ECONNRESET, EPIPE, EPIPE) */
	if (err == ECONNRESET)
		err = EPIPE;
	esca__complete(t, e, e->done ? (int64_t)e->done : -err);
	return 1;
}

void esca__complete(struct esca_table *t, struct esca_entry *e, int64_t result)
{
	if (e->state == ESCA_S_INFLIGHT)
		t->inflight--;
	e->state = ESCA_S_DONE;
	e->result = result;
	t->live--;
	t->st.completed++;
	if (result < 0 && !(e->op == ESCA_OP_PEEK && result == -EAGAIN))
		t->st.errors++;	/* a peek of an empty socket is an answer */
	if ((result == -EPIPE || result == -ECONNRESET) && esca__sends(e->op) &&
	    e->key < t->nfds && !t->fds[e->key].broken) {
		t->fds[e->key].broken = (int32_t)-result;
		t->nbroken++;
	} else if (e->op == ESCA_OP_CLOSE && e->key < t->nfds &&
		   t->fds[e->key].broken) {
		t->fds[e->key].broken = 0;	/* the number means anew */
		t->nbroken--;
	}
	if (t->live == 0 && t->nbroken) {
		for (int i = 0; i < t->nfds; i++)
			t->fds[i].broken = 0;
		t->nbroken = 0;
	}
	fd_unref(t, e->fd);
	if (e->op == ESCA_OP_SENDFILE && e->fd2 != e->fd) {
		fd_unref(t, e->fd2);
		if (e->fd2 < t->nfds && t->fds[e->fd2].own &&
		    !t->fds[e->fd2].pending)
			own_close(t, e->fd2);
	}
	if (e->key != e->fd && e->key < t->nfds && t->fds[e->key].keyed)
		t->fds[e->key].keyed--;
	if (e->op == ESCA_OP_CLOSE && e->fd < t->nfds)
		t->fds[e->fd].type = ESCA_FT_UNKNOWN;
	if (t->complete)
		t->complete(t->ctx, e->user, e->op, e->fd, result);
}

void esca__requeue(struct esca_table *t, struct esca_entry *e)
{
	e->state = ESCA_S_QUEUED;
	t->inflight--;
	t->st.resubmitted++;
}

int esca__fail_over(struct esca_table *t, int err)
{
	esca__run_queued_direct(t, 1);
	return err;
}
