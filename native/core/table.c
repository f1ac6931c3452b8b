/* SPDX-License-Identifier: MIT
 * table.c - the batch table and the bytes it owns: esca_table_new/free/
 * abandon, esca_queue, esca_amend_last, esca__retire, the table's queries.
 *
 * Entries form a fixed ring in program order.  Bytes a deferred call hands
 * over are copied into the arena, a FIFO ring of its own, so the caller may
 * reuse its memory as soon as the call returns (DESIGN.md, "Contract:
 * ownership").  An entry
 * is retired (its slot and bytes reused) once it and every older entry are
 * done.  No allocation happens on the queue path except when the per-fd
 * array has to grow to a larger fd than ever seen.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "sys.h"

#define MAX_CAPACITY 32768u
#define ARENA_ALIGN 16u
#define MAX_SOCKOPT 256u

struct esca_table *esca_table_new(const struct esca_config *cfg, int *err)
{
	struct esca_config def = { 0 };
	struct esca_table *t;
	int kind, e = 0;

	if (!cfg)
		cfg = &def;
	kind = cfg->executor;
	if (kind < 0 || kind >= ESCA_EXEC__COUNT) {
		e = -EINVAL;
		goto fail;
	}
	t = esca__zalloc(sizeof(*t));
	if (!t) {
		e = -ENOMEM;
		goto fail;
	}
	t->cap = cfg->capacity ? cfg->capacity : ESCA_DEFAULT_CAPACITY;
	if (t->cap > MAX_CAPACITY)
		t->cap = MAX_CAPACITY;
	t->arena_cap = cfg->byte_budget ? cfg->byte_budget : ESCA_DEFAULT_BYTE_BUDGET;
	t->arena_cap = (t->arena_cap + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	t->complete = cfg->complete;
	t->ctx = cfg->ctx;
	t->cfg_flags = cfg->flags;
	t->slots = 1;
	while (t->slots < t->cap)
		t->slots <<= 1;
	t->ents = esca__zalloc(t->slots * sizeof(*t->ents));
	t->arena = esca__zalloc(t->arena_cap);
	if (!t->ents || !t->arena) {
		e = -ENOMEM;
		goto fail_free;
	}
	if (kind == ESCA_EXEC_AUTO) {
		/* the module where it is loaded, else io_uring, else plain */
		static const int order[] = { ESCA_EXEC_LKM, ESCA_EXEC_URING };

		for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
			t->kind = order[i];
			t->ex = esca__executor_of(t->kind);
			t->caps = 0;
			if (t->ex->init(t) == 0)
				return t;
		}
		kind = ESCA_EXEC_SEQUENTIAL;
	}
	t->kind = kind;
	t->ex = esca__executor_of(kind);
	t->caps = 0;
	e = t->ex->init(t);
	if (e == 0)
		return t;
fail_free:
	esca__zfree(t->ents, t->slots * sizeof(*t->ents));
	esca__zfree(t->arena, t->arena_cap);
	esca__zfree(t, sizeof(*t));
fail:
	if (err)
		*err = e;
	return NULL;
}

static void free_memory(struct esca_table *t)
{
	for (uint32_t i = t->head; i != t->tail; i++) {
		struct esca_entry *e = esca__ent(t, i);

		if (e->borrowed && e->iov != &e->one)
			free(e->iov);
	}
	esca__zfree(t->ents, t->slots * sizeof(*t->ents));
	esca__zfree(t->arena, t->arena_cap);
	esca__fd_map_free(t);
	esca__zfree(t, sizeof(*t));
}

void esca_table_free(struct esca_table *t)
{
	if (!t)
		return;
	if (t->live)
		esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_LIFECYCLE);
	t->ex->fini(t);
	free_memory(t);
}

void esca_table_abandon(struct esca_table *t)
{
	if (!t)
		return;
	t->ex->abandon(t);
	free_memory(t);
}

int esca_table_executor(const struct esca_table *t)
{
	return t->kind;
}

unsigned esca_table_caps(const struct esca_table *t)
{
	return t->caps & ~ESCA__CAP_BOUNCE;
}

void esca_table_set_plain(struct esca_table *t, int on)
{
	t->plain = on && (t->caps & ESCA_CAP_PLAIN_FLUSH);
}

unsigned esca_table_pending(const struct esca_table *t)
{
	return t->live;
}

int esca_amend_last(struct esca_table *t, int fd, int flags)
{
	for (uint32_t i = t->tail, n = 0; i != t->head && n < 64; n++) {
		struct esca_entry *e = esca__ent(t, --i);

		if (e->state != ESCA_S_QUEUED)
			return -ESRCH;
		if (e->fd != fd && !(e->op == ESCA_OP_SENDFILE && e->fd2 == fd))
			continue;
		if (e->fd != fd || !esca__sends(e->op))
			return -ESRCH;
		e->flags &= ~flags;
		return 0;
	}
	return -ESRCH;
}

const struct esca_stats *esca_table_stats(const struct esca_table *t)
{
	return &t->st;
}

/* Reserve n bytes in the arena ring.  NULL when it does not fit now. */
static char *arena_alloc(struct esca_table *t, size_t n, size_t *reserved)
{
	size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	size_t skip = 0;
	char *p;

	if (need == 0)
		need = ARENA_ALIGN;
	if (t->arena_used == 0)
		t->arena_head = t->arena_tail = 0;
	if (t->arena_used == 0 || t->arena_tail > t->arena_head) {
		if (t->arena_cap - t->arena_tail >= need) {
			/* fits at the end */
		} else if (t->arena_head >= need) {
			skip = t->arena_cap - t->arena_tail;	/* wrap */
		} else {
			return NULL;
		}
	} else if (t->arena_head - t->arena_tail < need) {
		return NULL;
	}
	if (skip)
		t->arena_tail = 0;
	p = t->arena + t->arena_tail;
	t->arena_tail += need;
	if (t->arena_tail == t->arena_cap)
		t->arena_tail = 0;
	t->arena_used += need + skip;
	*reserved = need + skip;
	return p;
}

static void arena_free(struct esca_table *t, size_t reserved)
{
	if (!reserved)
		return;
	t->arena_used -= reserved;
	t->arena_head = (t->arena_head + reserved) % t->arena_cap;
}

void esca__retire(struct esca_table *t)
{
	while (t->head != t->tail) {
		struct esca_entry *e = esca__ent(t, t->head);

		if (e->state != ESCA_S_DONE)
			break;
		arena_free(t, e->arena_len);
		if (e->borrowed && e->iov != &e->one)
			free(e->iov);
		e->state = 0;
		t->head++;
	}
}

/* More iovecs than the kernel takes (IOV_MAX): what the plain call says.
 * Its fd is looked up first (EBADF; a sendmsg's must be a socket:
 * ENOTSOCK; a writev's open for writing: EBADF), then a sendmsg's msghdr
 * is refused with EMSGSIZE and a writev's iovecs with EINVAL (the API's
 * audit, session 21: EINVAL for all).  On this error path only. */
static int64_t too_many_iovecs(const struct esca_args *a)
{
	struct stat st;

	long fl;

	if (esca_sys_fstat(a->fd, &st) != 0)
		return -EBADF;
	if (a->op == ESCA_OP_SEND || a->op == ESCA_OP_SENDMSG)
		return S_ISSOCK(st.st_mode) ? -EMSGSIZE : -ENOTSOCK;
	fl = esca_sys_ret(syscall(SYS_fcntl, a->fd, F_GETFL));
	if (fl >= 0 && (fl & O_ACCMODE) == O_RDONLY)
		return -EBADF;	/* not open for writing: checked first */
	return -EINVAL;
}

/* The result a queued op will have on full success, or -errno for
 * arguments the kernel would refuse whatever the fd is. */
static int64_t check_args(const struct esca_args *a, size_t *bytes)
{
	size_t total = 0;

	*bytes = 0;
	if (a->op < 0 || a->op >= ESCA_OP__COUNT)
		return -EINVAL;
	if (a->fd < 0)
		return -EBADF;
	switch (a->op) {
	case ESCA_OP_WRITE:
	case ESCA_OP_WRITEV:
	case ESCA_OP_SEND:
	case ESCA_OP_SENDMSG:
		/* sendmsg(2) refuses the kernel's own MSG_CMSG_COMPAT bit;
		 * the sendto or IORING_OP_SEND it may run as would not */
		if (a->op == ESCA_OP_SENDMSG &&
		    ((unsigned)a->flags & ESCA_MSG_CMSG_COMPAT))
			return -EINVAL;
		if (a->iovcnt > IOV_MAX)
			return too_many_iovecs(a);
		if (a->iovcnt < 0 || (a->iovcnt > 0 && !a->iov))
			return -EINVAL;
		for (int i = 0; i < a->iovcnt; i++) {
			if (a->iov[i].iov_len > (size_t)SSIZE_MAX - total)
				return -EINVAL;
			if (a->iov[i].iov_len && !a->iov[i].iov_base)
				return -EFAULT;
			total += a->iov[i].iov_len;
		}
		*bytes = total;
		return (int64_t)total;
	case ESCA_OP_SENDFILE:
		if (a->fd2 < 0)
			return -EBADF;
		if (a->offset < -1 || a->count > (size_t)SSIZE_MAX)
			return -EINVAL;
		return (int64_t)a->count;
	case ESCA_OP_SETSOCKOPT:
		if (a->iovcnt != 1 || !a->iov || a->iov[0].iov_len > MAX_SOCKOPT ||
		    (a->iov[0].iov_len && !a->iov[0].iov_base))
			return -EINVAL;
		*bytes = a->iov[0].iov_len;
		return 0;
	case ESCA_OP_SHUTDOWN:
	case ESCA_OP_CLOSE:
	case ESCA_OP_FSYNC:
		return 0;
	case ESCA_OP_PEEK:	/* into the caller's buffer, never copied */
		if (a->iovcnt != 1 || !a->iov || !a->iov[0].iov_base ||
		    !a->iov[0].iov_len || a->iov[0].iov_len > (size_t)INT_MAX)
			return -EINVAL;
		return (int64_t)a->iov[0].iov_len;
	case ESCA_OP_DISCARD:
		if (!a->count || a->count > (size_t)INT_MAX)
			return -EINVAL;
		return (int64_t)a->count;
	}
	return -EINVAL;
}

int64_t esca_queue(struct esca_table *t, const struct esca_args *a,
		   unsigned qflags, uint64_t user)
{
	struct esca_entry *e;
	struct esca_fd *f, *f2 = NULL;
	size_t bytes, reserved = 0;
	int64_t ret;
	int copy;

	ret = check_args(a, &bytes);
	if (ret < 0)
		return ret;
	if (t->tail - t->head >= t->cap) {
		esca__retire(t);
		if (t->tail - t->head >= t->cap)
			return -ENOBUFS;
	}
	if (a->order < 0)
		return -EINVAL;
	f = esca__fd(t, a->fd);
	if (a->op == ESCA_OP_SENDFILE)
		f2 = esca__fd(t, a->fd2);
	if (!f || (a->op == ESCA_OP_SENDFILE && !f2) ||
	    (a->order && !esca__fd(t, a->order - 1)))
		return -E2BIG;	/* no memory for the fd map: go direct */
	f = &t->fds[a->fd];	/* the map may have moved */
	if (f2)
		f2 = &t->fds[a->fd2];
	if (a->op == ESCA_OP_SENDFILE) {
		if (t->caps & ESCA__CAP_BOUNCE)
			bytes = a->count;
		copy = 0;
	} else {
		copy = (!(qflags & ESCA_Q_BORROW) &&
			a->op != ESCA_OP_PEEK) || a->op == ESCA_OP_SETSOCKOPT;
	}
	if ((copy || a->op == ESCA_OP_SENDFILE) && bytes > 0) {
		if (bytes > t->arena_cap)
			return -E2BIG;
	}
	e = esca__ent(t, t->tail);
	memset(e, 0, sizeof(*e));
	e->op = (uint8_t)a->op;
	e->fd = a->fd;
	e->key = a->order ? a->order - 1 : a->fd;
	e->fd2 = a->op == ESCA_OP_SENDFILE ? a->fd2 : -1;
	e->flags = a->flags;
	e->nonblock = !!(a->hints & ESCA_HINT_NONBLOCK);
	e->optname = a->optname;
	e->offset = a->offset;
	e->user = user;
	e->iov = &e->one;
	if (a->op == ESCA_OP_PEEK) {
		e->len = a->iov[0].iov_len;
		e->one = a->iov[0];
		e->iovcnt = 1;
	} else if (a->op == ESCA_OP_DISCARD) {
		e->len = a->count;
		e->iovcnt = 0;
	} else if (esca__is_data(a->op) || a->op == ESCA_OP_SETSOCKOPT) {
		e->len = bytes;
		if (copy) {
			char *p = NULL;

			if (bytes > 0) {
				p = arena_alloc(t, bytes, &reserved);
				if (!p) {
					esca__retire(t);
					p = arena_alloc(t, bytes, &reserved);
					if (!p)
						return -ENOBUFS;
				}
				for (int i = 0; i < a->iovcnt; i++) {
					memcpy(p, a->iov[i].iov_base,
					       a->iov[i].iov_len);
					p += a->iov[i].iov_len;
				}
				p -= bytes;
				t->st.bytes_copied += bytes;
			}
			e->one.iov_base = p;
			e->one.iov_len = bytes;
			e->iovcnt = 1;
		} else if (a->iovcnt == 1) {
			e->borrowed = 1;
			e->one = a->iov[0];
			e->iovcnt = 1;
		} else {
			e->borrowed = 1;
			e->iovcnt = a->iovcnt;
			if (a->iovcnt > 0) {
				e->iov = malloc((size_t)a->iovcnt * sizeof(*e->iov));
				if (!e->iov)
					return -E2BIG;
				memcpy(e->iov, a->iov,
				       (size_t)a->iovcnt * sizeof(*e->iov));
			} else {
				e->one.iov_base = NULL;
				e->one.iov_len = 0;
				e->iovcnt = 1;
			}
		}
	} else if (a->op == ESCA_OP_SENDFILE) {
		e->len = a->count;
		if (bytes > 0) {
			char *p = arena_alloc(t, bytes, &reserved);

			if (!p) {
				esca__retire(t);
				p = arena_alloc(t, bytes, &reserved);
				if (!p)
					return -ENOBUFS;
			}
			e->one.iov_base = p;
			e->one.iov_len = bytes;
		}
		e->iovcnt = 0;
	}
	if ((a->hints & ESCA_HINT_OWN_FD2) && f2)
		f2->own = 1;	/* a hand-over's: closed with its last reader */
	if ((a->hints & ESCA_HINT_NOTSOCK) && f->type == ESCA_FT_UNKNOWN &&
	    (a->op == ESCA_OP_WRITE || a->op == ESCA_OP_WRITEV))
		esca__fd_not_socket(t, a->fd);
	e->arena_len = reserved;
	e->state = ESCA_S_QUEUED;
	t->tail++;
	t->live++;
	f->pending++;
	if (f2 && a->fd2 != a->fd)
		f2->pending++;
	if (e->key != e->fd)
		t->fds[e->key].keyed++;	/* mapped: checked above */
	t->st.queued[a->op]++;
	if (esca__is_data(a->op))
		t->st.bytes_queued += bytes;
	else if (a->op == ESCA_OP_SENDFILE)
		t->st.bytes_queued += a->count;
	return ret;
}

/* A regular file's or a block device's write never goes into io_uring: the
 * ring hands a buffered write that would block to an io-wq worker, whose
 * last reference to the file went back through the thread's deferred task
 * work, so a file the program closed kept its flock until the thread next
 * entered the ring (tests/test_ops.py, about once in 5,000 flushes; a
 * blocking flock waited for good); and RWF_NOWAIT, which keeps a write off
 * the worker, leaves the file position behind a short write on XFS and
 * btrfs (the rest then overwrote it).  Such a write runs as the plain
 * syscall at its turn (uring.c, needs_direct).  A pipe or a device stays
 * the ring's (its own poll). */
void esca__fd_not_socket(struct esca_table *t, int fd)
{
	struct stat st;

	t->st.kernel_entries++;
	t->fds[fd].type = esca_sys_fstat(fd, &st) == 0 &&
			  (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) ?
			  ESCA_FT_FILE : ESCA_FT_OTHER;
}
