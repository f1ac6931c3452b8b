/* SPDX-License-Identifier: MIT
 * fdmap.c - what the library knows of each fd: fdmap_init(), fd_detect()
 * (kind, O_NONBLOCK, size), the access mode (fd_note_access, fd_access_ok),
 * order keys (fd_share_key) and what a completion means (fd_on_complete). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "defer.h"

/* native/core/internal.h */
extern HIDDEN void (*esca__fd_hook)(int fd, int open);
extern HIDDEN void (*esca__fd_making_hook)(int begin);

HIDDEN struct fdinfo *fdtab;
HIDDEN int fdtab_n;
HIDDEN int fd_hiwater;

/* The core's report of the table's own fds (esca__fd_hook, internal.h):
 * they are marked, so that the program's close, close_range, dup2 and dup3
 * treat their numbers as free (DESIGN.md, "Contract: fd lifetime"). */
static void note_internal(int fd, int open)
{
	struct fdinfo *fi = fdi(fd);

	if (fi) {
		fd_note_max(fi);
		__atomic_store_n(&fi->internal, (uint8_t)open, __ATOMIC_RELEASE);
	}
}

/* ---- the library's own fds while they are made (esca__fd_making) -------
 * From its syscall until the core moves it high and marks it internal, a
 * ring's or an eventfd's number is a low one the program may name: its
 * close_range over numbers it never opened, or a dup2 onto a number free
 * to it, closed it under the core (the threaded fuzz's "uring executor
 * unavailable (Invalid argument)", and a stream that never saw its EOF).
 * Makers and those calls exclude each other: many makers at once, or one
 * such call.  Two counters, sequentially consistent, no lock a fork could
 * leave held (fdmap_after_fork resets them); a thread inside the library
 * (guard) makes its calls raw and never waits here. */
static int fd_makers, fd_closer;

static void making_hook(int begin)
{
	if (!begin) {
		__atomic_fetch_sub(&fd_makers, 1, __ATOMIC_SEQ_CST);
		return;
	}
	for (;;) {
		while (__atomic_load_n(&fd_closer, __ATOMIC_SEQ_CST))
			syscall(SYS_sched_yield);
		__atomic_fetch_add(&fd_makers, 1, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&fd_closer, __ATOMIC_SEQ_CST))
			return;
		__atomic_fetch_sub(&fd_makers, 1, __ATOMIC_SEQ_CST);
	}
}

void fd_closer_begin(void)
{
	int none = 0;

	while (!__atomic_compare_exchange_n(&fd_closer, &none, 1, 0,
					    __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST)) {
		none = 0;
		syscall(SYS_sched_yield);
	}
	while (__atomic_load_n(&fd_makers, __ATOMIC_SEQ_CST))
		syscall(SYS_sched_yield);
}

void fd_closer_end(void)
{
	__atomic_store_n(&fd_closer, 0, __ATOMIC_SEQ_CST);
}

/* The fd map: as many entries as fds may exist, untouched until used. */
void fdmap_init(void)
{
	struct rlimit rl;
	size_t n;
	void *m;

	n = 65536;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur > n)
		n = rl.rlim_cur > (1u << 20) ? (1u << 20) : rl.rlim_cur;
	m = mmap(NULL, n * sizeof(struct fdinfo), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m != MAP_FAILED) {
		fdtab = m;
		fdtab_n = (int)n;
	} else {
		say("no memory for the fd map; every call passes through");
		cfg.disabled = 1;
	}
	esca__fd_hook = note_internal;
	esca__fd_making_hook = making_hook;
	/* stdin, stdout and stderr (and their dups) are never deferred to
	 * (fd_never_deferred): no order key to find for them */
}

/* What a deferred op's completion means for its fd (DESIGN.md,
 * "Contract: errors"). */
void fd_on_complete(void *ctx, uint64_t user, int op, int fd, int64_t r)
{
	struct fdinfo *fi = fdi(fd);
	int err = 0;

	if (op == ESCA_OP_PEEK || op == ESCA_OP_DISCARD) {
		prefetch_complete(ctx, user, op, fd, r);	/* lever prefetch */
		return;
	}
	(void)ctx;
	if (!fi)
		return;
	if (op == ESCA_OP_CLOSE) {
		struct tstate *ts = ctx;

		if (ts && ts->closes_queued > 0)
			ts->closes_queued--;	/* lib_new_fd has one less */
		/* the number is free now: whatever gets it next is new */
		__atomic_store_n(&fi->err, 0, __ATOMIC_RELAXED);
		fi->kind = FK_UNKNOWN;
		fi->flags = 0;
		__atomic_fetch_and(&fi->users, ~FU_QCLOSE, __ATOMIC_ACQ_REL);
		return;
	}
	if (op == ESCA_OP_SENDFILE) {
		/* defer_queue: the in_fd + 1 above bit 40 */
		struct fdinfo *in = fdi((int)(user >> 40) - 1);

		user &= (1ull << 40) - 1;
		if (in)
			fd_unuse(in, (int)(in - fdtab));
	}
	if (r < 0)
		err = (int)-r;
	else if ((uint64_t)r < user)
		err = EPIPE;	/* some bytes went out, then the fd failed */
	if (err)
		__atomic_store_n(&fi->err, err, __ATOMIC_RELAXED);
	fd_unuse(fi, fd);
}

/* ---- fd lifetime (DESIGN.md, "Contract: fd lifetime") --------------------
 * A queued entry names its fd by number.  The number must keep meaning the
 * same open file until the entry is done, whichever thread closes it: each
 * entry counts in fdinfo.users from its queueing (fd_use, before it can
 * complete) to its completion (fd_unuse); a close while another thread's
 * entries are counted is held (FU_HOLD), and the completion of the last of
 * them closes the number.  One atomic read-modify-write per entry each way. */
HIDDEN uint64_t fd_count_underflows;	/* fd_unuse at 0 (stats) */
HIDDEN uint64_t epoll_leaves;	/* fd_leave_epoll took one out (stats) */

void fd_use(struct tstate *ts, struct fdinfo *fi)
{
	uint64_t me = ts->wait_token >> 32;
	uint64_t w = __atomic_load_n(&fi->users, __ATOMIC_RELAXED), nw;

	do {
		if ((w & FU_COUNT) == 0)
			nw = (me << 32) | ((w & 0xffffffffull & ~FU_SHARED) + 1);
		else
			nw = (w + 1) | (FU_OWNER(w) != me ? FU_SHARED : 0);
	} while (!__atomic_compare_exchange_n(&fi->users, &w, nw, 1,
					      __ATOMIC_ACQ_REL,
					      __ATOMIC_RELAXED));
}

void fd_unuse(struct fdinfo *fi, int fd)
{
	uint64_t w = __atomic_load_n(&fi->users, __ATOMIC_RELAXED), nw;

	do {
		if ((w & FU_COUNT) == 0) {
			/* counted before a fork, or a bug: never wrap; the
			 * stats say so (fd_count_underflows: an entry queued
			 * uncounted, lever compose's cork, gave back other
			 * entries' counts 2,126 times in one nginx run) */
			__atomic_add_fetch(&fd_count_underflows, 1,
					   __ATOMIC_RELAXED);
			return;
		}
		nw = w - 1;
		if ((nw & FU_COUNT) == 0)
			nw &= ~(FU_SHARED | FU_HOLD);
	} while (!__atomic_compare_exchange_n(&fi->users, &w, nw, 1,
					      __ATOMIC_ACQ_REL,
					      __ATOMIC_RELAXED));
	if ((w & FU_HOLD) && !(nw & FU_HOLD)) {
		/* the program closed it while these entries named it: now */
		__atomic_store_n(&fi->err, 0, __ATOMIC_RELAXED);
		fi->kind = FK_UNKNOWN;
		fi->flags = 0;
		syscall(SYS_close, fd);
	}
}

/* A close of fd that returns to the program while the kernel's fd stays
 * open (queued behind entries, or held for them): Linux's close takes the
 * socket out of every epoll set at once, so the program's set must no
 * longer report it, or a wait hands the program an event of an fd it
 * closed, with the data of a connection it has freed (DESIGN.md,
 * "Contract: fd lifetime").  The set of its registration the library saw
 * (epoll_ctl, ep) loses it, while the number still names the socket; not
 * when that epoll fd's number was closed since (its gen moved: a new file,
 * perhaps the library's own, has it).  Not where another fd shares its
 * open file (a dup): Linux's close leaves the registration then, the file
 * being still open. */
void fd_leave_epoll_at(int ep, uint16_t ep_gen, int fd)
{
	struct fdinfo *e = ep > 0 ? fdi(ep - 1) : NULL;

	if (!e || e->internal || e->gen != ep_gen)
		return;
	/* ENOENT, EBADF: nothing to take out */
	if (syscall(SYS_epoll_ctl, ep - 1, EPOLL_CTL_DEL, fd, NULL) == 0)
		__atomic_fetch_add(&epoll_leaves, 1, __ATOMIC_RELAXED);
}

void fd_leave_epoll(struct fdinfo *fi, int fd)
{
	if (fi->ep_fd <= 0 || (fi->flags & FI_DUPED))
		return;
	fd_leave_epoll_at(fi->ep_fd, fi->ep_gen, fd);
	fi->ep_fd = 0;
	fi->flags &= (uint16_t)~FI_EPOLLIN;
}

/* Before a wait (before_wait, after its flush): a close this thread queued
 * behind the socket's own entries, and still pending now (they parked on a
 * client that does not read), takes the socket out of its epoll set, so
 * that the wait does not report it (close_epoll_plan, defer.c).  Only
 * while the close still stands: the number is this thread's closing one
 * (FU_QCLOSE, the same gen) and its close is in this thread's table, which
 * the flush reaped.  The kernel runs it only in this thread, and only
 * inside the library (ESCA_CAP_OWN_PROGRESS, which close_epoll_plan asks
 * for: a ring's task work deferred to its io_uring_enter; sequential and
 * lkm run it from the library, which guard keeps the timer's shot out of),
 * so the number still names the socket at the EPOLL_CTL_DEL that follows
 * the check. */
void fd_leave_late(struct tstate *ts)
{
	ts->guard++;
	for (int i = 0; i < ts->nleaving; i++) {
		struct leaving *l = &ts->leaving[i];
		struct fdinfo *fi = fdi(l->fd);

		if (fi && fi->gen == l->gen &&
		    (__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) &
		     FU_QCLOSE) &&
		    ts->table && esca_fd_pending(ts->table, l->fd))
			fd_leave_epoll_at(l->ep, l->ep_gen, l->fd);
	}
	ts->nleaving = 0;
	lib_leave(ts);
}

/* The program's close of fd, not deferred: now, unless entries of a table
 * still name fd (another thread's, or this thread's parked ones); then the
 * completion of the last of them closes it, and the number stays taken
 * until then (no open, accept or dup can get it meanwhile), out of the
 * program's epoll set (fd_leave_epoll_at: before FU_HOLD is set, after which
 * that completion may close the number and another file get it).  Returns
 * what close returns. */
int fd_close_ordered(struct tstate *ts, struct fdinfo *fi, int fd)
{
	int ep = (fi && !(fi->flags & FI_DUPED)) ? fi->ep_fd : 0, left = 0;
	uint16_t ep_gen = fi ? fi->ep_gen : 0;
	uint64_t w;

	if (!fi)
		return real.close(fd);
	fd_forget(fi);
	w = __atomic_load_n(&fi->users, __ATOMIC_ACQUIRE);
	do {
		if ((w & FU_COUNT) == 0)
			return real.close(fd);
		if (ep > 0 && !left) {
			fd_leave_epoll_at(ep, ep_gen, fd);
			left = 1;
		}
	} while (!__atomic_compare_exchange_n(&fi->users, &w, w | FU_HOLD, 1,
					      __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE));
	if (ts)
		ts->held_closes++;
	return 0;
}

/* Before the number fd is given a new file by the program (dup2, dup3 onto
 * it): every entry that names it must be done, this thread's and other
 * threads', a close of it pending in any table included, or it would run on
 * the new file (the fd audit: another thread's close parked behind a send
 * to a peer not reading yet; after 2 s the dup2 went ahead, and 225,280 of
 * that thread's bytes went to the new connection, its close to the new
 * file).  This thread's table is flushed and waited for; another thread
 * flushes at its next trigger, at the latest when the watchdog's timer
 * signal finds its oldest entry too old (DESIGN.md, "Flush triggers").
 * Bounded (2 s): 0 when done, -1 when entries still name fd (dup2 then
 * answers EBUSY and replaces nothing). */
int fd_replace_ready(struct tstate *ts, struct fdinfo *fi, int fd)
{
	struct timespec nap = { 0, 200000 };
	uint64_t until = 0;

	for (int i = 0;; i++) {
		uint64_t w = __atomic_load_n(&fi->users, __ATOMIC_ACQUIRE);
		int mine = ts && ts->table && !ts->guard &&
			   esca_fd_pending(ts->table, fd);

		if (!mine && !(w & (FU_COUNT | FU_CLOSING)))
			return 0;
		if (!mine && (w & FU_CLOSING) == FU_QCLOSE && !(w & FU_COUNT) &&
		    i % 50 == 0 && !fd_qclose_stands(ts, fi, 0))
			return 0;	/* done, its completion not yet collected */
		if (!until)
			until = now_ns() + 2000000000ull;
		else if (now_ns() >= until)
			return -1;
		if (mine) {	/* this thread's: reap, wait for progress */
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
			if (esca_fd_pending(ts->table, fd) &&
			    esca_table_inflight(ts->table)) {
				ts->guard++;
				esca_table_wait(ts->table, 10);
				lib_leave(ts);
			}
			continue;
		}
		syscall(SYS_nanosleep, &nap, NULL);
	}
}

/* A close of fd is queued in a table (FU_QCLOSE): does it still stand, so
 * that the number is free as far as the program knows?  The kernel may
 * have run it already, and the number may mean a new file since (any
 * thread's open, socket or accept got it) while the table that holds the
 * close has not collected its completion yet (fd_on_complete clears the
 * flag): a close, close_range or dup2 of the new file would then be refused
 * or skipped (the threaded fuzz: "close found its number closed", then a
 * stream without its EOF).  This thread's table is reaped first; another
 * thread's is nudged with the timer signal, whose handler reaps it; waited
 * for at most wait_ms.  A close in this thread's own table is answered
 * right after the reap where nothing moves it meanwhile
 * (ESCA_CAP_OWN_PROGRESS).  1: it stands (still queued, or parked behind a send
 * on a full socket); 0: it is done, and the number is the kernel's to
 * answer for. */
int fd_qclose_stands(struct tstate *ts, struct fdinfo *fi, int wait_ms)
{
	struct timespec nap = { 0, 100000 };
	uint32_t me = ts ? (uint32_t)(ts->wait_token >> 32) : 0;
	int nudge;

	if (!(__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) & FU_QCLOSE))
		return 0;
	if (ts && ts->table && !ts->guard && esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
	if (ts && ts->table && me &&
	    __atomic_load_n(&fi->qclose_tid, __ATOMIC_RELAXED) == me &&
	    (esca_table_caps(ts->table) & ESCA_CAP_OWN_PROGRESS))
		/* the close is in this thread's own table, which only this
		 * thread's next flush moves: after the reap, the answer is
		 * final (waiting would only wait for our own timer; Linux
		 * answers at once) */
		return !!(__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) &
			  FU_QCLOSE);
	nudge = timer_handler_ours();	/* never the program's handler */
	for (int i = 0; i <= wait_ms * 10; i++) {
		uint32_t owner = __atomic_load_n(&fi->qclose_tid,
						 __ATOMIC_RELAXED);

		if (!(__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) & FU_QCLOSE))
			return 0;
		if (nudge && i % 20 == 0 && owner && owner != me &&
		    syscall(SYS_tgkill, (int)getpid(), (int)owner,
			    cfg.timer_signal) < 0 && errno == ESRCH)
			break;	/* the owner is gone */
		if (i == wait_ms * 10)
			break;
		syscall(SYS_nanosleep, &nap, NULL);
	}
	return 1;
}

/* fd_closed's answer for a number with FU_HOLD or FU_QCLOSE in w (the fd
 * audit: fcntl and fstat answered 0 on a number whose close was held for
 * another thread; lseek, getsockopt, shutdown, write and dup2 onto it hung
 * behind its own close parked after a send to a peer that does not read). */
int fd_closed_slow(struct tstate *ts, struct fdinfo *fi, uint64_t w)
{
	uint32_t me = ts ? (uint32_t)(ts->wait_token >> 32) : 0;
	int fd = (int)(fi - fdtab);

	if (fi->internal)
		return 0;	/* the library's own: their callers say EBADF */
	if (w & FU_HOLD)
		return 1;	/* the kernel's file stays open: never reused */
	/* a queued close: only where this thread's own table still holds it
	 * is that sure (the bit outlives the close until its completion is
	 * collected, and the number may be a new file by then: the race
	 * fd_qclose_stands bounds with 20 ms for close); another thread's:
	 * the kernel answers, as before */
	if (!ts || ts->guard || !ts->table || !me ||
	    __atomic_load_n(&fi->qclose_tid, __ATOMIC_RELAXED) != me)
		return 0;
	if (esca_fd_pending(ts->table, fd))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
	return (__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) & FU_QCLOSE) &&
	       esca_fd_pending(ts->table, fd);
}

/* Before a call that changes what queued entries of fd would do (shutdown:
 * a write queued by another thread before it must still go out): this
 * thread's entries of fd run first, then the other threads' are waited
 * for, bounded (2 s, as fd_replace_ready), their owner nudged every 10 ms
 * with the timer signal, whose handler flushes its table (DESIGN.md,
 * "Contract: order").  0 when done (or past the bound).
 * nonblock (a data call on a non-blocking socket, or MSG_DONTWAIT): while
 * the socket is full, -1 with EAGAIN at once, as the kernel would answer
 * the call now: waiting could be for the caller itself (the owner's bytes
 * parked until a reader makes room, the caller that reader, a signal
 * handler's write on the self-pipe it drains: the threaded fuzz's hang). */
static int fd_full(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	struct timespec zero = { 0, 0 };

	return syscall(SYS_ppoll, &p, 1, &zero, NULL, 0) == 0;
}

int fd_wait_others(struct tstate *ts, struct fdinfo *fi, int fd, int nonblock)
{
	struct timespec nap = { 0, 200000 };
	uint32_t me = (uint32_t)(ts->wait_token >> 32);

	for (int i = 0; i < 10000; i++) {
		uint64_t w = __atomic_load_n(&fi->users, __ATOMIC_ACQUIRE);

		if (nonblock && fd_full(fd)) {
			errno = EAGAIN;
			return -1;
		}
		if (i == 0)
			lib_sync_fd(ts, fd);
		if (!(w & FU_COUNT))
			return 0;
		if (i % 50 == 0 && FU_OWNER(w) && FU_OWNER(w) != me &&
		    syscall(SYS_tgkill, (int)getpid(), (int)FU_OWNER(w),
			    cfg.timer_signal) < 0 && errno == ESRCH)
			return 0;	/* the owner is gone: none will flush */
		syscall(SYS_nanosleep, &nap, NULL);
	}
	return 0;
}

/* In a fork child: no table of the parent's exists here.  What the parent
 * had closed while entries named it (held, or a close queued in another
 * thread's table that the fork did not flush) is closed now, and no count
 * is left. */
void fdmap_after_fork(void)
{
	int top = __atomic_load_n(&fd_hiwater, __ATOMIC_RELAXED);

	fd_makers = 0;		/* the makers were other threads */
	fd_closer = 0;
	if (!fdtab)
		return;
	for (int fd = 0; fd <= top && fd < fdtab_n; fd++) {
		struct fdinfo *fi = &fdtab[fd];
		uint64_t w = fi->users;

		/* every socket's open file is the parent's too now: a close
		 * of the child's leaves the parent's epoll registration,
		 * as Linux's (fd_leave_epoll), and the sets' waiters were
		 * the parent's threads */
		fi->ep_fd = 0;
		fi->ep_waiter = 0;
		if (!w && !fi->internal)
			continue;
		if ((w & FU_CLOSING) || fi->internal)
			syscall(SYS_close, fd);
		fi->users = 0;
		fi->internal = 0;
		fi->kind = FK_UNKNOWN;
		fi->flags = 0;
	}
}

/* Look an fd up: kind, O_NONBLOCK, size.  Raw syscalls: never our own
 * interposers.  -1 if the fd is not open. */
int fd_detect(int fd, struct fdinfo *fi)
{
	struct stat st;
	long fl;

	if (unlikely(exec_drain_fd >= 0))
		exec_drain_wait(fd);	/* an exec's drain writes it first */
	fd_note_max(fi);
	if (syscall(SYS_fstat, fd, &st) < 0) {
		fi->kind = FK_BAD;
		return -1;
	}
	fi->flags &= FI_DUPED;	/* what dup told us, not the kernel */
	fi->size = 0;
	if (S_ISSOCK(st.st_mode)) {
		int type = 0, dom = 0;
		socklen_t l = sizeof(type);

		fi->kind = FK_SOCKET;
		if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 &&
		    type == SOCK_STREAM)
			fi->kind = FK_STREAM;
		l = sizeof(dom);
		if (fi->kind == FK_STREAM &&
		    syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 &&
		    (dom == AF_INET || dom == AF_INET6))
			fi->flags |= FI_TCP;
		if (fi->kind == FK_STREAM) {
			/* connected (has a peer): a listening or a merely bound
			 * socket has none, and its close is never deferred */
			struct sockaddr_storage sa;

			l = sizeof(sa);
			if (syscall(SYS_getpeername, fd, &sa, &l) == 0)
				fi->flags |= FI_CONN;
		}
	} else if (S_ISFIFO(st.st_mode)) {
		fi->kind = FK_PIPE;
	} else if (S_ISREG(st.st_mode)) {
		fi->kind = FK_FILE;
		fi->size = st.st_size;
	} else {
		fi->kind = FK_OTHER;
	}
	if (fi->kind == FK_FILE)
		return 0;	/* O_NONBLOCK means nothing to a regular file;
				 * its access mode is asked when needed */
	fl = syscall(SYS_fcntl, fd, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK))
		fi->flags |= FI_NONBLOCK;
	fd_note_access(fi, fl);
	return 0;
}

/* What the open file's access mode (F_GETFL flags fl, or -1) allows. */
void fd_note_access(struct fdinfo *fi, long fl)
{
	if (fl < 0)
		return;
	fi->flags |= FI_ACC;
	if ((fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY)
		fi->flags |= FI_NOREAD;
}

/* Is fd open for what need (FI_NOREAD: reading) says?  A sendfile from a
 * write-only file fails with EBADF, a result known in advance: it is never
 * deferred (DESIGN.md, "Contract: results").  Asked once per fd, and only
 * for regular files (fd_detect learns it for the others).  Writes are
 * deferred only to stream sockets, always open for writing (DESIGN.md,
 * "Deferral scope"). */
int fd_access_ok(int fd, struct fdinfo *fi, uint16_t need)
{
	if (unlikely(!(fi->flags & FI_ACC)))
		fd_note_access(fi, syscall(SYS_fcntl, fd, F_GETFL));
	return (fi->flags & (FI_ACC | need)) == FI_ACC;
}

/* newfd now shares old's open file: order their entries together */
int fd_share_key(int old, int newfd)
{
	struct fdinfo *o = fdi(old), *n = fdi(newfd);

	if (newfd >= 0 && o && n) {
		n->order_key = o->order_key ? o->order_key : old + 1;
		n->linger = o->linger;	/* one socket */
		if ((o->flags & FI_CORK_VIRT) && tls_ts)
			/* the cork is the socket's: each fd of it reads the
			 * kernel's from now on (sync.c, getsockopt) */
			cork_make_real(tls_ts, o, old);
		o->flags |= FI_DUPED;
		n->flags |= FI_DUPED;
	}
	return newfd;
}

static void note_flag_one(struct fdinfo *fi, uint16_t bit, long on)
{
	if (fi->kind != FK_UNKNOWN && fi->kind != FK_BAD) {
		if (on)
			fi->flags |= bit;
		else
			fi->flags &= (uint16_t)~bit;
	}
}

/* A flag of fd's open file (bit in FI_NONBLOCK, FI_SHUTWR) set to on: so
 * of every dup of it too (the fd audit: O_NONBLOCK set through one fd, a
 * write through its dup blocked where Linux said EAGAIN).  The dups are
 * found by their open-file key, only for an fd known to have some
 * (FI_DUPED). */
void fd_note_flag(int fd, uint16_t bit, long on)
{
	struct fdinfo *fi = fdi(fd);
	int top, root;

	if (!fi)
		return;
	note_flag_one(fi, bit, on);
	if (!(fi->flags & FI_DUPED))
		return;
	root = fi->order_key ? fi->order_key - 1 : fd;
	top = __atomic_load_n(&fd_hiwater, __ATOMIC_RELAXED);
	for (int i = 0; i <= top && i < fdtab_n; i++) {
		struct fdinfo *d = &fdtab[i];

		if ((d->flags & FI_DUPED) &&
		    (d->order_key ? d->order_key - 1 : i) == root)
			note_flag_one(d, bit, on);
	}
}

/* F_SETFL or FIONBIO set fd's O_NONBLOCK to on */
void fd_note_nonblock(int fd, long on)
{
	fd_note_flag(fd, FI_NONBLOCK, on);
}
