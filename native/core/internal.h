/* SPDX-License-Identifier: MIT
 * internal.h - what the core's files share; not installed: the entry, the
 * per-fd state, the table, the executor interface, and each file's hidden
 * entry points. */
#ifndef ESCA_INTERNAL_H
#define ESCA_INTERNAL_H

#include <sys/mman.h>
#include <sys/socket.h>

#include "esca.h"

#define ESCA_HIDDEN __attribute__((visibility("hidden")))

/* A table, its executor's state and a thread's state are made on a thread's
 * first deferred call, which may come from a signal handler that
 * interrupted malloc (a self-pipe handler's write in a thread new to the
 * library): mmap, never malloc (it is async-signal-safe and zero-filled;
 * untouched pages cost nothing).  NULL when out of memory. */
static inline void *esca__zalloc(size_t n)
{
	void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static inline void esca__zfree(void *p, size_t n)
{
	if (p)
		(void)munmap(p, n ? n : 1);
}

enum esca_state {
	ESCA_S_QUEUED = 1,	/* waiting for a flush (or for its fd's order) */
	ESCA_S_INFLIGHT,	/* handed to the kernel                       */
	ESCA_S_DONE,		/* result known, slot not yet reused          */
};

/* One table entry.  Its address is stable while it lives (the entries are
 * a fixed ring), so executors may use it (or its slot, the index in
 * t->ents) as a completion tag.  Only what every executor may read is here;
 * an executor keeps its own per-entry state in an array of its own indexed
 * by the slot (uring.h, struct uring_slot). */
struct esca_entry {
	uint8_t op;		/* enum esca_op */
	uint8_t state;		/* enum esca_state */
	uint8_t borrowed;	/* iov points at the caller's memory */
	uint8_t need_poll;	/* EAGAIN seen: wait for POLLOUT before the next
				 * try (uring and lkm)                         */
	uint8_t nonblock;	/* ESCA_HINT_NONBLOCK: a non-blocking socket */
	int fd, fd2;
	int key;		/* ordering: entries with one key run in order */
	int flags, optname;
	int iovcnt;
	struct iovec *iov;	/* the data: &one for owned bytes */
	struct iovec one;
	int64_t offset;		/* sendfile */
	size_t len;		/* bytes asked (sendfile: count)              */
	size_t done;		/* bytes completed so far                     */
	size_t dropped;		/* of those, cut off the front of a borrowed
				 * iov array (the array is the entry's: whoever
				 * cuts it says so, esca__run_direct reads it) */
	size_t arena_len;	/* bytes reserved in the arena (incl. skip)    */
	int64_t result;		/* valid in ESCA_S_DONE */
	uint64_t user;
};

/* Per-fd state; the table grows the array to the largest fd seen. */
struct esca_fd {
	uint32_t pending;	/* entries not done with fd or fd2 == this fd */
	uint32_t keyed;		/* ... with this fd as key, made through another
				 * fd of the same open file (a dup) */
	uint32_t mark;		/* round in which the three below are valid
				 * (order.h)                                   */
	uint8_t busy;		/* ESCA_FD_FREE, ESCA_FD_CHAIN, ESCA_FD_HELD */
	uint8_t readers;	/* a pending sendfile reads this fd */
	uint8_t type;		/* hint: ESCA_FT_UNKNOWN, _SOCKET, _OTHER (no
				 * socket: a pipe, a device; the ring writes
				 * it), _FILE (a regular file or a block
				 * device: written as the plain syscall) */
	int32_t broken;		/* as a key: errno (EPIPE, ECONNRESET) a data
				 * op of it failed with; later ones fail so too */
	uint8_t own;		/* a dup of the table's own, read by sendfiles
				 * (esca_fd_keep_file): closed when the last
				 * entry naming it completes */
	uint8_t armed;		/* uring: in the progress set for room, not
				 * reported since (uring_setup.c, pep_arm) */
	void *tail;		/* uring: its chain's last entry (struct uring_slot) */
};
enum { ESCA_FD_FREE = 0, ESCA_FD_CHAIN, ESCA_FD_HELD };
enum { ESCA_FT_UNKNOWN = 0, ESCA_FT_SOCKET, ESCA_FT_OTHER, ESCA_FT_FILE };

struct esca_table;

/* The kernel's MSG_CMSG_COMPAT (include/linux/socket.h; no uapi header
 * has it): sendmsg(2) refuses it with EINVAL, sendto(2) ignores it. */
#define ESCA_MSG_CMSG_COMPAT 0x80000000u

/* Internal capability: a sendfile entry needs a bounce buffer in the
 * arena (the executor reads the file and sends what it read). */
#define ESCA__CAP_BOUNCE (1u << 16)
/* Internal capability: its flush takes ESCA_FLUSH_TRY as such (sequential:
 * a sendfile on a socket that may block stays queued), where for the other
 * executors that park a reaping flush is the one that never blocks. */
#define ESCA__CAP_TRY (1u << 17)

struct esca_executor {
	const char *name;
	int (*init)(struct esca_table *t);	/* 0 or -errno */
	void (*fini)(struct esca_table *t);	/* nothing in flight */
	void (*abandon)(struct esca_table *t);	/* after fork, in the child */
	int (*flush)(struct esca_table *t, unsigned mode);
	int (*progress_fd)(struct esca_table *t);	/* optional */
	void (*progress_arm)(struct esca_table *t, int on);
	int (*owns_fd)(struct esca_table *t, int fd);
	int (*flush_epoll)(struct esca_table *t, int epfd, void *evs, int max,
			   int timeout_ms, const void *sigmask);	/* optional */
	/* optional: block until an entry in flight completes, at most
	 * timeout_ms (-1: no bound); 1, 0 on timeout, -errno */
	int (*wait)(struct esca_table *t, int timeout_ms);
	/* optional: cancel every entry in flight; each goes back to the
	 * queue with e->done exact, or completes (handover.c) */
	int (*cancel)(struct esca_table *t);
};

struct esca_table {
	const struct esca_executor *ex;
	int kind;
	unsigned cap;			/* entries: the table is full at cap */
	unsigned slots;			/* the ring's length: cap rounded up to a
					 * power of two, so a free-running index
					 * keeps its slot when it wraps at 2^32 */
	uint32_t head, tail;		/* ring of entries, free-running */
	struct esca_entry *ents;
	unsigned live;			/* entries not ESCA_S_DONE */
	unsigned inflight;		/* entries ESCA_S_INFLIGHT */

	char *arena;			/* owned bytes, a FIFO ring */
	size_t arena_cap, arena_head, arena_tail, arena_used;

	struct esca_fd *fds;
	int nfds;
	uint32_t round;

	esca_complete_fn complete;
	void *ctx;
	unsigned cfg_flags;		/* ESCA_CFG_* */
	unsigned caps;			/* ESCA_CAP_* and ESCA__CAP_*, set by
					 * the executor's init */
	unsigned nbroken;		/* keys with broken set */
	int plain;			/* esca_table_set_plain */
	struct esca_stats st;
	void *priv;			/* the executor's own state */
};

static inline struct esca_entry *esca__ent(struct esca_table *t, uint32_t i)
{
	return &t->ents[i & (t->slots - 1)];
}

/* table.c: the table, its arena, esca_queue */
ESCA_HIDDEN void esca__retire(struct esca_table *t);

/* registry.c */
ESCA_HIDDEN const struct esca_executor *esca__executor_of(int kind);

/* What kind of op an op is (esca.h's ESCA_OPS), inline: the queue, the
 * rounds and the completions ask it several times an entry (an out-of-line
 * call each, ~9 instructions: benchmarks/callcost.py). */
static inline int esca__op_kind(int op)
{
	switch (op) {
#define ESCA__OP_KIND(E, n, k) case ESCA_OP_##E: return k;
	ESCA_OPS(ESCA__OP_KIND)
#undef ESCA__OP_KIND
	default:
		return 0;
	}
}

/* A data op: bytes from its iov. */
static inline int esca__is_data(int op)
{
	return esca__op_kind(op) == ESCA_OPK_DATA;
}

/* A data op or a sendfile: an op that sends bytes. */
static inline int esca__sends(int op)
{
	int k = esca__op_kind(op);

	return k == ESCA_OPK_DATA || k == ESCA_OPK_FILE;
}

/* flush.c: esca_flush and entries run as plain syscalls */
ESCA_HIDDEN void esca__run_direct(struct esca_table *t, struct esca_entry *e,
				  int fallback);
ESCA_HIDDEN void esca__run_queued_direct(struct esca_table *t, int fallback);
/* Every queued entry, in table order, as plain syscalls, a socket's data
 * with MSG_NOSIGNAL (sequential's waiting flush: ESCA_CAP_NO_SIGPIPE). */
ESCA_HIDDEN void esca__run_queued_nosignal(struct esca_table *t);
/* e at its turn as plain syscalls that never wait for room in its fd (the
 * reaping flush of an executor that parks in user space: sequential).  A
 * send goes on from where it stopped, a socket's with MSG_DONTWAIT, a
 * pipe's as its own call (a blocking pipe's may block, as the plain call);
 * with try (ESCA_FLUSH_TRY: a signal handler's, never blocking) a sendfile
 * on a socket not known to be non-blocking, and a pipe's write, are not
 * run.  ESCA__RAN: complete; ESCA__FULL: the fd is full, e->done says what
 * went (park it); ESCA__HOLD: not run. */
enum { ESCA__RAN = 0, ESCA__FULL, ESCA__HOLD };
ESCA_HIDDEN int esca__run_nowait(struct esca_table *t, struct esca_entry *e,
				 int try);

/* order.c: the per-fd map and completion; order.h: which queued entries
 * may go into a round */
ESCA_HIDDEN struct esca_fd *esca__fd(struct esca_table *t, int fd);
ESCA_HIDDEN void esca__fd_map_free(struct esca_table *t);
ESCA_HIDDEN void esca__complete(struct esca_table *t, struct esca_entry *e,
				int64_t result);
/* A data op of a key whose connection broke earlier: 1, e is complete. */
ESCA_HIDDEN int esca__skip_broken(struct esca_table *t, struct esca_entry *e);
/* An entry handed to the kernel goes back to the queue (a link cancelled,
 * the rest of a short write, a signal). */
ESCA_HIDDEN void esca__requeue(struct esca_table *t, struct esca_entry *e);
/* fd is no socket (a write there said ENOTSOCK): what it is, once, into its
 * hint (ESCA_FT_FILE or ESCA_FT_OTHER; one fstat, counted). */
ESCA_HIDDEN void esca__fd_not_socket(struct esca_table *t, int fd);
/* e is a write to a regular file (its hint): the plain syscall, never the
 * ring (esca__fd_not_socket says why). */
static inline int esca__file_write(const struct esca_table *t,
				   const struct esca_entry *e)
{
	return (e->op == ESCA_OP_WRITE || e->op == ESCA_OP_WRITEV) &&
	       t->fds[e->fd].type == ESCA_FT_FILE;
}
/* The executor failed (should not happen): every queued entry runs as plain
 * syscalls; returns err. */
ESCA_HIDDEN int esca__fail_over(struct esca_table *t, int err);

/* park.c: entries parked in user space on a full fd (lkm, sequential) */
struct esca_parking {
	int epfd;		/* the progress fd: each parked fd waits in it
				 * for EPOLLOUT (one-shot); -1 until first use */
	unsigned nparked;	/* entries parked */
	unsigned nblind;	/* ... of them unwatched (no epfd: park.c) */
	uint8_t *parked;	/* per entry (t->ents): PARK_WATCHED or
				 * PARK_BLIND, 0: not parked */
	size_t len;		/* its bytes (t->slots) */
};
ESCA_HIDDEN int esca__parking_init(struct esca_table *t,
				   struct esca_parking *p);
ESCA_HIDDEN void esca__parking_release(struct esca_parking *p);
/* The progress fd (made on first use), or -errno. */
ESCA_HIDDEN int esca__parking_fd(struct esca_table *t, struct esca_parking *p);
ESCA_HIDDEN int esca__parking_progress_fd(struct esca_table *t,
					  struct esca_parking *p);
/* Watch fd for room in epoll set epfd (EPOLLOUT | EPOLLONESHOT, its number
 * as the event's data): re-arm its registration, else add one.  0 or
 * -errno.  Also the uring executor's progress set (uring_setup.c). */
ESCA_HIDDEN long esca__watch_room(struct esca_table *t, int epfd, int fd);
/* Park e (stopped on its full fd): in flight, its fd waiting in the
 * progress fd for room; where it cannot be watched (no epoll fd for want
 * of a number, epoll refusing it), unwatched: tried again by each reaping
 * flush (park.c). */
ESCA_HIDDEN void esca__park(struct esca_table *t, struct esca_parking *p,
			    struct esca_entry *e);
/* Every parked entry back to the queue (need_poll set), its fd out of the
 * progress fd: a waiting flush, a fall back to plain calls, a hand-over. */
ESCA_HIDDEN void esca__unpark_all(struct esca_table *t, struct esca_parking *p);
/* A reaping flush: the parked entries whose fd has room go back to the
 * queue (their registration fired, so it is disarmed). */
ESCA_HIDDEN void esca__park_harvest(struct esca_table *t,
				    struct esca_parking *p);

/* direct.c */
ESCA_HIDDEN int64_t esca__sendfile_once(int out, int in, int64_t offset,
					size_t count);
ESCA_HIDDEN int64_t esca__direct(const struct esca_args *a, size_t skip,
				 uint64_t *nsys);
/* One system call of a data op's bytes past skip (EINTR retried): the
 * bytes it took, or -errno (-EAGAIN: a full fd, with MSG_DONTWAIT or on a
 * non-blocking one).  esca__direct's data ops loop on it. */
ESCA_HIDDEN int64_t esca__data_once(const struct esca_args *a, size_t skip,
				    uint64_t *nsys);
/* One send of n iovecs on a socket, as the plain program would make it: a
 * sendto without an address for one (glibc's send), else a sendmsg.  The
 * syscall's result (EINTR not retried). */
ESCA_HIDDEN long esca__send_iov(int fd, const struct iovec *iov, int n,
				int flags);

/* uring_setup.c: an io_uring restricted to the executor's operations */
struct io_uring;
ESCA_HIDDEN int esca__ring_setup(struct io_uring *ring, unsigned entries,
				 unsigned *flags);
/* The table's own fds (ring, progress eventfd, /dev/esca) live at the top
 * of the fd range, away from the numbers a program uses (DESIGN.md,
 * "Contract: fd lifetime"): esca__fd_high(fd) moves fd there (close-on-exec)
 * and returns its new number (fd itself if it cannot move); esca__fd_gone(fd)
 * before the table closes one.  Both tell esca__fd_hook, when set (libesca.so
 * keeps its internal fds invisible to the program with it). */
ESCA_HIDDEN int esca__fd_high(int fd);
/* esca__fd_dup_high(fd): a new dup of fd there, marked as esca__fd_high's, or
 * -errno when none is free (fd is left as it is: libesca.so's whole.c) */
ESCA_HIDDEN int esca__fd_dup_high(int fd);
ESCA_HIDDEN void esca__fd_gone(int fd);
extern ESCA_HIDDEN void (*esca__fd_hook)(int fd, int open);
/* Around the making of such an fd, from its syscall to esca__fd_high's
 * return (its number is a low one, the program's kind, until then):
 * esca__fd_making(1), then esca__fd_making(0).  libesca.so's hook holds the
 * program's close_range and dup2 off meanwhile: a close_range over numbers
 * the program never opened closed a ring's fd as it was being made. */
extern ESCA_HIDDEN void (*esca__fd_making_hook)(int begin);
static inline void esca__fd_making(int begin)
{
	if (esca__fd_making_hook)
		esca__fd_making_hook(begin);
}

/* executors */
extern ESCA_HIDDEN const struct esca_executor esca__sequential;
extern ESCA_HIDDEN const struct esca_executor esca__uring;
extern ESCA_HIDDEN const struct esca_executor esca__lkm;

#endif
