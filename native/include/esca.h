/* SPDX-License-Identifier: MIT
 *
 * esca.h - the pyesca native core: a per-thread batch table of deferred
 * system calls and the executors that run a whole table in the kernel.
 *
 * Vocabulary (DESIGN.md): a *segment* is what runs between batch start and
 * flush; the *table* holds its pending entries; an *executor* runs the table
 * (uring, sequential, lkm).
 *
 * Conventions (after liburing): functions return >= 0 or -errno and never
 * touch errno nor print.  Every result of an op is its own int64: bytes on
 * success, -errno on failure (or the partial count when some bytes went out
 * before an error, exactly as the plain call would report it; DESIGN.md,
 * "Contract: results").
 *
 * The core contains no Python and no libc interposition; it is linked into
 * both the CPython extension pyesca._core and the LD_PRELOAD library
 * libesca.so.
 */
#ifndef ESCA_H
#define ESCA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ESCA_API __attribute__((visibility("default")))

/* The ops the core can defer: the one list.  X(ENUM, name, kind), kind
 * ESCA_OPK_DATA (bytes from iov), ESCA_OPK_FILE (bytes from fd2: sendfile)
 * or ESCA_OPK_CTL (no bytes).  Append only: the numbers are also those of
 * the kernel module's ops (esca_lkm.h). */
#define ESCA_OPS(X)						\
	X(WRITE, write, ESCA_OPK_DATA)		/* write(fd, buf, len) */	\
	X(WRITEV, writev, ESCA_OPK_DATA)	/* writev(fd, iov, n)  */	\
	X(SEND, send, ESCA_OPK_DATA)		/* send(fd, buf, len, flags) */	\
	X(SENDMSG, sendmsg, ESCA_OPK_DATA)	/* {iov, n}, no name/control */	\
	X(SENDFILE, sendfile, ESCA_OPK_FILE)	/* (fd, fd2, offset|-1, count) */ \
	X(SHUTDOWN, shutdown, ESCA_OPK_CTL)	/* shutdown(fd, how)   */	\
	X(CLOSE, close, ESCA_OPK_CTL)		/* close(fd)           */	\
	X(SETSOCKOPT, setsockopt, ESCA_OPK_CTL)	/* (fd, level, optname, iov[0]) */ \
	X(FSYNC, fsync, ESCA_OPK_CTL)		/* fsync(fd)           */	\
	X(PEEK, peek, ESCA_OPK_RECV)		/* recv(fd, iov[0], MSG_PEEK | \
						 * MSG_DONTWAIT): bytes into
						 * the caller's buffer */	\
	X(DISCARD, discard, ESCA_OPK_CTL)	/* recv(fd, NULL, count,	\
						 * MSG_TRUNC | MSG_DONTWAIT):
						 * TCP drops count bytes */

/* ESCA_OPK_RECV: bytes go into iov[0] (borrowed, never copied); the
 * result is what recv says (lever prefetch, DESIGN.md "Lever: prefetch") */
enum esca_op_kind { ESCA_OPK_DATA = 1, ESCA_OPK_FILE, ESCA_OPK_CTL,
		    ESCA_OPK_RECV };

#define ESCA__ENUM_OP(E, n, k) ESCA_OP_##E,
enum esca_op {
	ESCA_OPS(ESCA__ENUM_OP)
	ESCA_OP__COUNT
};
#undef ESCA__ENUM_OP

/* The executors: X(ENUM, name).  AUTO picks lkm if /dev/esca is there,
 * else uring if it works here, else sequential. */
#define ESCA_EXECUTORS(X)						\
	X(AUTO, auto)		/* the first of lkm, uring, sequential that works */ \
	X(SEQUENTIAL, sequential) /* plain syscalls in order: the oracle     */ \
	X(URING, uring)		/* io_uring: one io_uring_enter per flush    */ \
	X(LKM, lkm)		/* kernel module /dev/esca: one ioctl a flush */

#define ESCA__ENUM_EXEC(E, n) ESCA_EXEC_##E,
enum esca_executor_kind {
	ESCA_EXECUTORS(ESCA__ENUM_EXEC)
	ESCA_EXEC__COUNT
};
#undef ESCA__ENUM_EXEC

/* What an executor can do (esca_table_caps); callers test these, never the
 * executor's kind. */
#define ESCA_CAP_PARKS		(1u << 0) /* a reaping flush may leave entries
					   * in flight (parked on a full
					   * socket): esca_table_progress_fd() */
#define ESCA_CAP_SENDFILE_DIRECT (1u << 1) /* ESCA_CFG_SENDFILE_DIRECT works */
#define ESCA_CAP_FOLD_WAIT	(1u << 2) /* esca_flush_epoll_wait() folds the
					   * wait into the flush (probed)      */
#define ESCA_CAP_PLAIN_FLUSH	(1u << 5) /* esca_table_set_plain(): a flush
					   * may run its entries as the plain
					   * system calls, the ring taking only
					   * what a full socket leaves         */
#define ESCA_CAP_NO_SIGPIPE	(1u << 3) /* its sends never raise SIGPIPE
					   * (io_uring sends with MSG_NOSIGNAL):
					   * the caller raises it for an EPIPE */
#define ESCA_CAP_RECV		(1u << 4) /* it runs ESCA_OP_PEEK and
					   * ESCA_OP_DISCARD (not lkm: the
					   * module knows no recv) */
#define ESCA_CAP_OWN_PROGRESS	(1u << 6) /* an entry left in the table
					   * after a reaping flush moves only in
					   * this table's next flush, never
					   * meanwhile (uring with DEFER_TASKRUN,
					   * lkm, sequential): what a reap left
					   * pending still stands */
#define ESCA_CAP_ONE_ENTRY	(1u << 7) /* a flush of many entries is one
					   * kernel entry (uring, lkm; not
					   * sequential: one syscall each) */

/* Arguments of one op: the same struct queues an op or runs it directly. */
struct esca_args {
	int op;			/* enum esca_op */
	int fd;
	int fd2;		/* sendfile: in_fd; otherwise ignored          */
	union {
		int flags;	/* write/send/sendmsg: MSG_* flags             */
		int how;	/* shutdown: SHUT_RD, SHUT_WR, SHUT_RDWR       */
		int level;	/* setsockopt: SOL_SOCKET, IPPROTO_TCP, ...    */
	};
	int optname;		/* setsockopt optname                          */
	int iovcnt;		/* data ops and setsockopt (optval = iov[0])    */
	const struct iovec *iov;
	int64_t offset;		/* sendfile: >= 0 explicit, -1 file position    */
	size_t count;		/* sendfile: bytes asked; discard: bytes dropped */
	int order;		/* 0: order by fd; else order with the entries of
				 * fd order-1 (an fd sharing the same open file,
				 * e.g. stdout and stderr on one pipe)           */
	unsigned hints;		/* ESCA_HINT_*: what the caller knows of fd     */
};

/* esca_args.hints */
#define ESCA_HINT_NOTSOCK  (1u << 0) /* write/writev: fd is no socket (a pipe,
				      * a file): no send is tried first      */
#define ESCA_HINT_NONBLOCK (1u << 1) /* fd is a non-blocking socket (a
				      * sendfile may then run as the syscall
				      * inside a flush: ESCA_CFG_SENDFILE_DIRECT) */
#define ESCA_HINT_OWN_FD2  (1u << 2) /* sendfile: fd2 is the table's to close
				      * when its last entry completes (a
				      * hand-over's rest of an entry whose
				      * file esca_fd_keep_file kept open) */

/* Called once per entry when it is complete (from inside a flush). */
typedef void (*esca_complete_fn)(void *ctx, uint64_t user, int op, int fd,
				 int64_t result);

/* Defaults of struct esca_config (0 there means these). */
#define ESCA_DEFAULT_CAPACITY	 256u		   /* entries           */
#define ESCA_DEFAULT_BYTE_BUDGET ((size_t)4 << 20) /* 4 MiB owned bytes */

struct esca_config {
	int executor;		/* enum esca_executor_kind                      */
	unsigned capacity;	/* entries in the table (ESCA_DEFAULT_CAPACITY) */
	size_t byte_budget;	/* bytes it may own (ESCA_DEFAULT_BYTE_BUDGET) */
	esca_complete_fn complete;
	void *ctx;
	unsigned flags;		/* ESCA_CFG_* */
};

/* esca_config flags */
#define ESCA_CFG_FOLD_WAIT	 (1u << 1) /* uring: esca_flush_epoll_wait()
				   * folds the wait into the flush where the
				   * kernel has IORING_OP_EPOLL_WAIT (6.15) */
#define ESCA_CFG_SENDFILE_DIRECT (1u << 0) /* uring: a sendfile runs as the
				   * syscall itself inside the flush (no copy of
				   * the bytes), the rest of the batch in the
				   * ring; what a full socket leaves goes the
				   * ring's way (read + send, parked) */

/* esca_queue() flags */
#define ESCA_Q_BORROW	(1u << 0) /* reference the caller's bytes, no copy:
				   * the caller keeps them alive and unchanged
				   * until the entry completes (it flushes with
				   * ESCA_FLUSH_WAIT before returning). */

/* esca_flush() modes */
#define ESCA_FLUSH_WAIT	0u	  /* return when every entry is complete       */
#define ESCA_FLUSH_REAP	1u	  /* submit, collect what completed, leave ops
				   * parked on a full socket in flight        */
#define ESCA_FLUSH_TRY	2u	  /* never block (a signal handler's flush): as
				   * REAP; under sequential a sendfile that
				   * could block and a pipe's write stay queued */

/* Why a flush happened, for the stats: X(ENUM, name) (DESIGN.md, "Flush
 * triggers"). */
#define ESCA_FLUSH_REASONS(X)						\
	X(EXPLICIT, explicit)	/* batch_flush(), a segment's end            */ \
	X(WAIT, wait)		/* event-loop boundary (epoll_wait, poll, ...) */ \
	X(BUDGET, budget)	/* table or byte budget full                 */ \
	X(SYNC, sync)		/* a call that needs the fd's earlier ops done */ \
	X(LIFECYCLE, lifecycle)	/* fork, exec, exit                          */ \
	X(TIMER, timer)		/* an entry waited too long                  */ \
	X(RESULT, result)	/* a result was asked for                    */ \
	X(PREFETCH, prefetch)	/* lever prefetch: the peeks of a wait's
				 * readable sockets, at the first read        */

#define ESCA__ENUM_WHY(E, n) ESCA_WHY_##E,
enum esca_flush_reason {
	ESCA_FLUSH_REASONS(ESCA__ENUM_WHY)
	ESCA_WHY__COUNT
};
#undef ESCA__ENUM_WHY

#define ESCA_HIST_BUCKETS 12	/* batch sizes 1, 2-3, 4-7, ..., >= 2048 */

struct esca_stats {
	uint64_t queued[ESCA_OP__COUNT];	/* ops deferred, per op          */
	uint64_t bytes_queued;			/* payload bytes deferred        */
	uint64_t bytes_copied;			/* of those, copied into table   */
	uint64_t completed;			/* entries completed             */
	uint64_t errors;			/* entries completed with -errno */
	uint64_t short_completed;		/* partial results finished      */
	uint64_t resubmitted;			/* entries sent to kernel again  */
	uint64_t flushes;			/* flushes that had entries      */
	uint64_t flush_why[ESCA_WHY__COUNT];
	uint64_t kernel_entries;		/* syscalls the executor made    */
	uint64_t entries_executed;		/* kernel ops issued             */
	uint64_t batch_hist[ESCA_HIST_BUCKETS];	/* entries per flush     */
	uint64_t fallbacks;			/* ops run directly, not in ring */
	uint64_t sendfile_direct;		/* sendfiles run as the syscall  */
	uint64_t flushes_direct;		/* one-entry flushes run as the
						 * plain syscall, no ring entry  */
	uint64_t flushes_plain;			/* flushes that ran entries as the
						 * plain syscalls (set_plain)    */
	uint64_t waits_folded;			/* epoll waits done in the flush */
};

struct esca_table;

/* Create a table with its executor.  On failure returns NULL and stores
 * -errno in *err.  With ESCA_EXEC_AUTO a missing /dev/esca and a refused
 * io_uring (EPERM, ENOSYS, ...) silently select the next executor:
 * esca_table_executor() says which (DESIGN.md, "Contract: fallback").
 * ESCA_EXEC_LKM fails with -ENOENT where the module is not loaded. */
ESCA_API struct esca_table *esca_table_new(const struct esca_config *cfg,
					   int *err);
/* Waits for every entry, then frees.  Safe on NULL. */
ESCA_API void esca_table_free(struct esca_table *t);
/* After fork, in the child: drop the table and free its memory without
 * running anything (the parent's entries are the parent's; DESIGN.md,
 * "Contract: threads and fork").  Do not call
 * esca_table_free() on it afterwards. */
ESCA_API void esca_table_abandon(struct esca_table *t);

ESCA_API int esca_table_executor(const struct esca_table *t);
/* ESCA_CAP_* bits of the table's executor (as set up on this machine). */
ESCA_API unsigned esca_table_caps(const struct esca_table *t);
/* on: the table's flushes run its entries as the plain system calls, in
 * order, each socket's with MSG_DONTWAIT, and give the ring (uring) only what
 * a full socket leaves and what must follow it (ESCA_CAP_PLAIN_FLUSH; a
 * no-op elsewhere).  For a caller that measured the ring to cost more than
 * the kernel entries it saves (lever adapt's "plain" mode). */
ESCA_API void esca_table_set_plain(struct esca_table *t, int on);
ESCA_API const char *esca_executor_name(int kind);
ESCA_API const char *esca_op_name(int op);
/* Name of an enum esca_flush_reason, "unknown" out of range. */
ESCA_API const char *esca_flush_reason_name(int why);
ESCA_API unsigned esca_table_pending(const struct esca_table *t);
ESCA_API int esca_fd_pending(const struct esca_table *t, int fd);
/* 1 when an entry of fd is in the kernel's hands (parked on a full socket
 * after a reaping flush).  Looks at every entry: not for a fast path. */
ESCA_API int esca_fd_inflight(const struct esca_table *t, int fd);
/* The program closes fd, a file that pending sendfiles read (DESIGN.md,
 * "Contract: fd lifetime"): those entries read a dup of it from now on,
 * the table's own (close-on-exec, closed when their last one completes), so
 * the close need not wait for a send parked on a client that does not read.
 * Returns how many entries moved to the dup, or -errno (they still read
 * fd).  Not for a file with locks the close must release (flock, OFD): the
 * dup keeps its open file alive. */
ESCA_API int esca_fd_keep_file(struct esca_table *t, int fd);
/* fd's connection is reset (libesca.so: a close with SO_LINGER at 0 s):
 * drop its unfinished entries, as the kernel drops the bytes it had not
 * sent.  Every entry in flight is cancelled first (the executor's cancel,
 * as esca_table_hand_over does; the other fds' entries go back to the queue
 * with what they had done and run again at the next flush), then each
 * queued entry of fd completes with -ECANCELED.  Returns how many, or
 * -errno (-EOPNOTSUPP: an executor without cancel; nothing dropped). */
ESCA_API int esca_fd_abort(struct esca_table *t, int fd);
ESCA_API const struct esca_stats *esca_table_stats(const struct esca_table *t);

/* Clear the `flags` bits (MSG_MORE) of the newest entry of fd when it is a
 * data op or a sendfile still waiting to be handed to the kernel and no
 * newer entry touches fd.  0, or -ESRCH (nothing changed).  Looks at the
 * newest 64 entries at most. */
ESCA_API int esca_amend_last(struct esca_table *t, int fd, int flags);

/* Validate and queue one op.  Returns the result the op will have on full
 * success (bytes asked; 0 for shutdown, close, setsockopt, fsync; count for
 * sendfile) or:
 *   -EBADF / -EINVAL      bad arguments (negative fd, IOV_MAX, ...)
 *   -ENOBUFS              table or byte budget full: flush and retry
 *   -E2BIG                bigger than the whole byte budget: do it directly
 *                         (esca_direct) after the fd's entries are flushed
 * The bytes are copied into the table unless ESCA_Q_BORROW (DESIGN.md,
 * "Contract: ownership").  Entries of one order key run in queue order
 * (DESIGN.md, "Contract: order"). */
ESCA_API int64_t esca_queue(struct esca_table *t, const struct esca_args *a,
			    unsigned qflags, uint64_t user);

/* Run the table's entries (mode ESCA_FLUSH_WAIT or ESCA_FLUSH_REAP).
 * Returns the number of entries that completed, or -errno if the executor
 * itself failed (entries then complete with that error). */
ESCA_API int esca_flush(struct esca_table *t, unsigned mode, int why);
/* A reaping flush and an epoll_pwait(epfd, evs, max, timeout_ms, sigmask)
 * in as few kernel entries as the executor can (one, under uring with
 * ESCA_CFG_FOLD_WAIT, when events are ready).  Returns what epoll_wait
 * would (events, or -errno such as -EINTR), or -ENOSYS when the executor
 * cannot, or when parked sends moved before any event came (the flush ran;
 * time passed): then flush and call epoll_wait yourself. */
struct epoll_event;
ESCA_API int esca_flush_epoll_wait(struct esca_table *t, int why, int epfd,
				   struct epoll_event *evs, int max,
				   int timeout_ms, const void *sigmask);

/* Wait until no entry on fd (as fd or fd2) is pending: only for those
 * (and what runs before them), never for entries of other fds parked on
 * a full socket (DESIGN.md, "Flush triggers"). */
ESCA_API int esca_sync_fd(struct esca_table *t, int fd);

/* Block until an entry in flight completes or may move (its socket has
 * room), at most timeout_ms (-1: no bound); then esca_flush(REAP) collects
 * it.  1, 0 when the time ran out, -EINTR on a signal, other -errno.
 * Where the progress fd cannot be made (no fd number left) it sleeps
 * timeout_ms and says 0, or, with no bound, 1 ms and says 1 (a reaping
 * flush tries the parked entries again). */
ESCA_API int esca_table_wait(struct esca_table *t, int timeout_ms);

/* Run one op now with plain syscalls, completing short writes (poll on
 * EAGAIN; DESIGN.md, "Contract: short writes").  Returns bytes / 0 or
 * -errno.  Counts nothing. */
ESCA_API int64_t esca_direct(const struct esca_args *a);

/* For an event loop that must not block on entries parked in flight (a
 * send waiting for room in a slow client's socket buffer; DESIGN.md,
 * "Contract: parked sends").  Returns an fd
 * that becomes readable when such entries can make progress: add it to the
 * loop's wait set (edge-triggered with epoll), arm it before each wait
 * (esca_table_progress_arm, which clears it) and when it fires call
 * esca_flush(ESCA_FLUSH_REAP).  Every executor's is an epoll fd of the fds
 * its parked entries wait on (uring's also holds the eventfd registered
 * with its ring; where that epoll fd cannot be made, the eventfd alone,
 * which a read clears).  -errno if the executor never leaves anything in
 * flight (none does today).  Made on first use; the table owns it. */
ESCA_API int esca_table_progress_fd(struct esca_table *t);
/* Turn those notifications on (before waiting) or off (no syscall). */
ESCA_API void esca_table_progress_arm(struct esca_table *t, int on);
ESCA_API unsigned esca_table_inflight(const struct esca_table *t);
/* 1 if fd is one of the table's own fds (ring, progress fd). */
ESCA_API int esca_table_owns_fd(const struct esca_table *t, int fd);

/* Give every unfinished entry away (DESIGN.md, "Contract: parked sends"):
 * what is in the kernel's hands is cancelled first (a send parked on a full
 * socket reports the bytes it had sent), then take(ctx, rest, user, done)
 * is called for each entry in table order with the arguments of what is
 * left (the bytes not yet sent, in the table's memory: copy them; a
 * sendfile's offset and count moved on), the entry's user value and the
 * bytes it had done.  An entry taken is complete with no callback: its
 * completion is the taker's.  Returns the entries taken, or -errno: take's
 * error (the rest stay queued), -EOPNOTSUPP (an executor that cannot
 * cancel: lkm), -ETIME (the kernel kept a request past 1 s). */
typedef int (*esca_take_fn)(void *ctx, const struct esca_args *rest,
			    uint64_t user, size_t done);
ESCA_API int esca_table_hand_over(struct esca_table *t, esca_take_fn take,
				  void *ctx);

/* Probe io_uring on this machine (for `esca doctor`).  Returns 0 if a ring
 * can be set up, else -errno.  Fills ops[i] = 1 for every IORING_OP_* the
 * kernel supports (i < nops), and *setsockopt_cmd = 1 if
 * SOCKET_URING_OP_SETSOCKOPT works. */
ESCA_API int esca_uring_probe(unsigned char *ops, int nops, int *last_op,
			      int *setsockopt_cmd, unsigned *setup_flags);
ESCA_API const char *esca_uring_opname(int opcode);

#ifdef __cplusplus
}
#endif
#endif /* ESCA_H */
