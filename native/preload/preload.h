/* SPDX-License-Identifier: MIT
 * preload.h - what the files of libesca.so share (not installed): the
 * calls, levers and pass reasons of catalog.h as enums, the fd map, the
 * per-thread state, the configuration, and each file's entry points. */
#ifndef ESCA_PRELOAD_INTERNAL_H
#define ESCA_PRELOAD_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "catalog.h"
#include "esca.h"
#include "reals.h"

#define HIDDEN __attribute__((visibility("hidden")))
#define EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* The interposed calls that can be deferred, and why one was passed
 * through to the kernel (catalog.h). */
#define CALL_ENUM(E, n, seed, where) CALL_##E,
enum esca_call { ESCA_SYSCALLS(CALL_ENUM) CALL__COUNT };
#undef CALL_ENUM
#define PASS_ENUM(E, n, help) PASS_##E,
enum pass_reason { ESCA_PASS_REASONS(PASS_ENUM) PASS__COUNT };
#undef PASS_ENUM

/* The levers beyond ESCA (catalog.h), one bit each. */
#define LEVER_BIT(E, n, on, help) LEVER_BIT_##E,
enum { ESCA_LEVERS(LEVER_BIT) LEVER__COUNT };
#undef LEVER_BIT
#define LEVER_ENUM(E, n, on, help) LEVER_##E = 1u << LEVER_BIT_##E,
enum lever { ESCA_LEVERS(LEVER_ENUM) };
#undef LEVER_ENUM
#define LEVER_ALL ((1u << LEVER__COUNT) - 1)
/* the default set ("all"): the levers on unless taken away */
#define LEVER_ON_BIT(E, n, on, help) | (on ? (unsigned)LEVER_##E : 0u)
#define LEVER_DEFAULT (0u ESCA_LEVERS(LEVER_ON_BIT))

/* Their names, indexed by the enums (config.c). */
extern HIDDEN const char *const call_names[CALL__COUNT];
extern HIDDEN const char *const pass_names[PASS__COUNT];
extern HIDDEN const char *const lever_names[LEVER__COUNT];

/* One deferrable call's counters, per thread (the stats file). */
struct call_stats {
	uint64_t seen, deferred, surfaced;
	uint64_t passed[PASS__COUNT];
};

/* What the library knows of an fd.  One array for the process, indexed by
 * fd, in lazily touched anonymous memory (fdmap.c). */
enum fd_kind {
	FK_UNKNOWN = 0, FK_STREAM, FK_SOCKET, FK_PIPE, FK_FILE, FK_OTHER, FK_BAD
};
#define FI_NONBLOCK	0x01
#define FI_TCP		0x02	/* AF_INET/AF_INET6 stream: TCP options apply */
#define FI_FAILED	0x04	/* a deferred op failed: no more deferral */
#define FI_EPOLLIN	0x08	/* in an epoll set of ours for reading */
#define FI_NOANSWER	0x10	/* SO_RCVLOWAT & co: never answer its reads */
#define FI_CORK_KNOWN	0x20	/* we know the kernel's TCP_CORK of it */
#define FI_CORKED	0x40	/* TCP_CORK as the program set it */
#define FI_CORK_VIRT	0x80	/* ... on, but only in our queued MSG_MORE */
#define FI_ACC		0x100	/* the one below is known (F_GETFL)        */
#define FI_SHUTWR	0x200	/* the program shut its writing side down
				 * (SHUT_WR, SHUT_RDWR; queued or done): a
				 * later data call goes to the kernel, whose
				 * EPIPE and SIGPIPE are the program's */
#define FI_CONNECTING	0x800	/* connect said EINPROGRESS: FI_CONN once
				 * getpeername says so (send.c, data_begin) */
#define FI_NOREAD	0x400	/* not open for reading (O_WRONLY, O_PATH):
				 * a sendfile from it is not deferred      */
#define FI_OWED		0x1000	/* told EAGAIN while parked: owed an event */
#define FI_CONN		0x2000	/* a connected stream socket (accept, connect,
				 * socketpair, or a peer at detection): the
				 * only kind whose close is deferred */
#define FI_DUPED	0x4000	/* another fd shares its open file (dup):
				 * O_NONBLOCK set on one is set on all */
#define FI_RTO_NONE	0x8000	/* a socket whose SO_RCVTIMEO was 0 and
				 * SO_RCVLOWAT 1 when looked at
				 * (read_restarts); a setsockopt of either
				 * through the library clears it */

/* fdinfo.users: who still names the fd number in a table (DESIGN.md,
 * "Contract: fd lifetime").  One atomic word for the process: entries of any
 * thread not yet complete with fd (or sendfile's in_fd), whether another
 * thread than the first one has some, and whether a close of the number is
 * pending (queued in a table, or held until those entries are done).  The
 * high 32 bits: the kernel tid of the thread that queued the first of them. */
#define FU_COUNT	0x0fffffffull
#define FU_SHARED	(1ull << 28)	/* entries of more than one thread */
#define FU_HOLD		(1ull << 29)	/* closed by the program: the last
					 * entry's completion closes it */
#define FU_QCLOSE	(1ull << 30)	/* a deferred close is queued */
#define FU_CLOSING	(FU_HOLD | FU_QCLOSE)
#define FU_OWNER(w)	((uint32_t)((w) >> 32))

struct fdinfo {
	uint8_t kind;
	uint8_t stdio;		/* a FILE is open on it (fdopen): never
				 * deferred; kept over closes (fd_forget), a
				 * number once marked stays passed through */
	uint8_t internal;	/* one of the library's own fds (a ring, an
				 * eventfd, /dev/esca): invisible to the
				 * program (esca__fd_hook) */
	uint8_t rto_set;	/* read_restarts found a receive timeout or
				 * low-water mark: not asked again (reset
				 * with the number; a stale one only stops
				 * the timer as before) */
	uint8_t nodelay;	/* TCP_NODELAY as the program last set it,
				 * + 1 (0: not known): getsockopt answers it
				 * (its setsockopt may still be queued) */
	uint8_t linger;		/* SO_LINGER on, as the program set it:
				 * LINGER_RESET (0 s) or LINGER_WAIT; close
				 * is then never deferred (defer.c) */
	uint16_t gen;		/* bumped at every close of this number */
	int32_t err;		/* error of a deferred op, for the next call */
	int32_t order_key;	/* esca_args.order: 0, the fd orders its own
				 * entries; k > 0, they run in order with those
				 * of fd k - 1, with which it shares an open
				 * file (DESIGN.md, "Contract: order") */
	uint16_t flags;		/* FI_* */
	uint16_t discards;	/* lever prefetch: discards of bytes answered
				 * from a peek, queued and not yet complete
				 * (prefetch.c; its reads settle them first) */
	uint32_t pf_tid;	/* lever prefetch: the thread (tid) whose peek
				 * of it may answer reads, PF_BUSY while one
				 * does; another thread's read clears it */
	int64_t size;		/* FK_FILE: st_size when looked at */
	uint64_t drained;	/* lib_wait_epoch when a read found the
				 * socket empty (lever reads) */
	uint64_t users;		/* FU_*: atomic */
	uint32_t qclose_tid;	/* the thread whose table holds the queued
				 * close (FU_QCLOSE): nudged by
				 * fd_qclose_stands */
	int32_t ep_fd;		/* epoll fd + 1 of its last registration */
	uint32_t ep_events;	/* ... and its events and data */
	uint64_t ep_data;
	uint16_t ep_gen;	/* gen of the epoll fd ep_fd names, then */
	uint32_t ep_waiter;	/* an epoll fd's: the tid of the thread that
				 * waits on it, EP_WAITERS once two have (or
				 * a thread the library has no state of) */
	int32_t peer;		/* the other end + 1 of a socketpair the
				 * program made (sync.c, socketpair) ... */
	uint16_t peer_gen;	/* ... while that number's gen is this */
};

#define EP_WAITERS 0xffffffffu	/* fdinfo.ep_waiter: more than one */
#define LEAVING_SLOTS 16	/* tstate.leaving */

#define LINGER_RESET 1	/* fdinfo.linger: { 1, 0 }, close resets */
#define LINGER_WAIT 2	/* ... { 1, n > 0 }, close waits up to n s */

#define MAX_EPREG 8
#define STASH_SLOTS 16	/* a signal handler's data calls held, per thread */
#define STASH_BYTES 4096

/* Lever prefetch, per thread (prefetch.c): the TCP sockets the last epoll
 * wait reported readable, and what one peek of each found.  Slot i is
 * note[i]'s; its bytes are buf + i * PF_SLOT_BYTES. */
#define PF_SLOTS 16
#define PF_SLOT_BYTES 16384
#define PF_BUSY 0x80000000u
struct prefetch {
	uint64_t token;		/* wait_token of the wait that noted these */
	int n;			/* fds noted */
	int ran;		/* their peek round ran (at the first read) */
	struct pf_slot {
		int fd;
		uint16_t gen;	/* fdinfo.gen when noted */
		uint8_t state;	/* PF_* (prefetch.c) */
		uint8_t full;	/* the peek filled the slot: more may wait */
		uint32_t len, off;	/* bytes peeked, of those answered */
		int err;	/* the peek's error (it took the socket's) */
	} slot[PF_SLOTS];
	char *buf;		/* PF_SLOTS * PF_SLOT_BYTES, mmap'd once */
	uint64_t rounds, peeked, answered, wasted, short_discards;
};

/* Per-thread state (thread.c). */
struct tstate {
	struct esca_table *table;
	int guard;		/* inside the library: set across every change
				 * of the table, the fast path's esca_queue
				 * included; an interposer reached meanwhile
				 * (a signal handler's call) passes through
				 * or waits in the stash (signals.c) */
	int in_wait;		/* in an event-loop wait that watches parked ops */
	int in_rounds;		/* in a wait's rounds: its timer waits for
				 * the last (wait_done) */
	int signaled;		/* the watchdog sent the timer signal */
	int closes_queued;	/* closes of this thread's queued and not yet
				 * complete: a call that makes an fd runs
				 * them first (lib_new_fd) */
	int nleaving;		/* ... of those, sockets in an epoll set
				 * queued behind their own entries: out of
				 * it at the next wait if still pending
				 * (fd_leave_late) */
	struct leaving {
		int fd, ep;	/* the socket, its epoll fd + 1 */
		uint16_t gen, ep_gen;	/* their fdinfo.gen then */
	} leaving[LEAVING_SLOTS];
	int ending;		/* this thread runs the end of the process
				 * (lib_end_flush): its timer's handler never
				 * waits for its parked sends */
	int timer_id;		/* its kernel timer (timer_make), if has_timer */
	int has_timer;
	int timer_set;		/* its timer runs, or it has none: nothing to
				 * arm (timer_arm; a load on the fast path) */
	unsigned timer_hits;	/* the timer signal's handler ran on it */
	unsigned sig_hits;	/* a handler of the program's ran on it: a
				 * wait that runs again returns EINTR */
	uint64_t stash_res;	/* calls stashed: count << 32 | bytes */
	uint32_t stash_done;	/* of those, run (the thread's own: stash_run) */
	struct stash_slot {
		int fd, call, flags;
		uint32_t off, len;
	} stash[STASH_SLOTS];
	char stash_buf[STASH_BYTES];
	int pfd;		/* its progress fd once made, else -1 */
	pthread_t tid;
	int segment;		/* explicit batch_start() open */
	int nexplicit;
	uint64_t oldest_ns;	/* 0: nothing queued; else, with no timer of
				 * the thread's, when the oldest queued entry
				 * was queued, with one, 1 (note_pending) */
	uint64_t wait_token;	/* thread id << 32 | waits made: a drained
				 * socket stays known empty until it changes */
	uint64_t reads_seen, reads_answered;
	uint64_t composed;	/* setsockopt calls composed into MSG_MORE */
	int nowed, owed_cap;	/* fds told EAGAIN while their bytes were
				 * parked: re-armed in their epoll set when
				 * the bytes are out (lib_pay_owed); grown by
				 * lib_owe, off the fast path, no limit */
	struct owed { int fd; uint16_t gen; } *owed;
	uint64_t eagain_parked;	/* data calls answered EAGAIN so */
	uint64_t nqueued;	/* calls this thread deferred, ever */
	int eagain_fd;		/* fd + 1 of its last read that found
				 * nothing (read.c, read_spins) ... */
	uint64_t eagain_mark;	/* ... and nqueued then */
	uint64_t held_closes;	/* closes held for other entries naming the fd */
	int vfork_tid;		/* in vfork: the parent's tid; a vfork child
				 * shares this memory and passes through */
	struct call_stats calls[CALL__COUNT];
	struct { int fd; uint16_t gen; } epreg[MAX_EPREG];
	int nepreg;
	struct pollfd *pbuf;	/* poll() copy with the progress fd added */
	size_t pbuf_n;
	struct prefetch pf;	/* lever prefetch (prefetch.c) */
	struct tstate *next;	/* all threads, for the stats */
	int dead;
	struct esca_stats core_dead;	/* the table's stats, once freed */
	/* lever "adapt" (adapt.c): aside is set while the thread has stepped
	 * aside: a deferrable call on a fd with nothing pending goes to the
	 * kernel (one load of it on the fast path, no clock, no lock).  The
	 * mode is the process's (adapt.c's controller); the thread counts its
	 * waits and hands them over now and then (adapt_wait) */
	int aside;
	struct adapt {
		uint32_t waits;		/* event-loop waits not yet handed over */
		uint32_t limit;		/* hand over at waits + events: 0
					 * before the first wait */
		uint32_t epoch;		/* the controller's decision taken */
		uint8_t mode;		/* ... its mode: ADAPT_RING, _ASIDE,
					 * _PLAIN (adapt.c) */
		uint8_t block_read;	/* a blocking socket read is under way:
					 * the thread's wait (read.c) */
		uint8_t shots;		/* timer shots in a row that found
					 * calls queued (adapt_shot) */
		uint8_t loopless;	/* aside for those shots, until the
					 * thread's next wait */
		uint64_t events;	/* events those waits returned */
	} ad;
};

/* The ESCA_* environment, read once at start-up (config.c). */
struct config {
	int disabled;
	int executor;
	int implicit;
	int quiet;
	unsigned capacity;
	size_t budget;
	uint64_t flush_ns;
	uint64_t timer_ns;	/* a thread timer's shot: flush_ns, at least
				 * 100 us (config.c) */
	uint64_t stats_interval_ns;
	uint64_t watchdog_ns;	/* 0: no time bound */
	int watchdog_thread;	/* ESCA_WATCHDOG_THREAD: no timers */
	int timer_signal;
	unsigned selected;	/* bit per enum esca_call */
	unsigned levers;	/* enum lever bits */
	int prefetch_forced;	/* ESCA_PREFETCH=1: lever prefetch under every
				 * executor that runs recv, not only where it
				 * pays (prefetch.c; the oracle tests) */
	unsigned adapt_window;	/* lever adapt: event-loop waits + their events
				 * a window */
	int adapt_force;	/* ESCA_ADAPT_TEST (tests): 1 aside, 2 flip,
				 * 3 plain, 4 cycle (adapt.c) */
	char stats_path[4096];
	int stats_root_pid;
};

extern HIDDEN struct config cfg;
extern HIDDEN struct reals real;
extern HIDDEN struct fdinfo *fdtab;
extern HIDDEN int fdtab_n;
extern HIDDEN __thread struct tstate *tls_ts
	__attribute__((tls_model("initial-exec")));
extern HIDDEN int lib_ready;
extern HIDDEN int lib_exiting;	/* past main / in exit: nothing is deferred */
extern HIDDEN int fd_hiwater;	/* no fd above it has ever been known */
extern HIDDEN int lib_fatal;	/* in a fatal signal's handler */
/* > 0 while a program's handler (or the fatal one) runs on this thread:
 * nothing there may allocate or start a thread (signals.c) */
extern HIDDEN __thread int tls_in_handler
	__attribute__((tls_model("initial-exec")));
/* this thread's signal mask blocks the library's timer signal: nothing it
 * defers would move without a flush trigger, so it defers nothing
 * (signals.c, timer_mask_changed) */
extern HIDDEN __thread int tls_timer_blocked
	__attribute__((tls_model("initial-exec")));
HIDDEN void timer_mask_read(void);
extern HIDDEN int lib_draining;	/* the timer signal's handler waits for
				 * everything (the end of the process) */

/* config.c */
HIDDEN void config_load(void);
HIDDEN void say(const char *msg);

/* lifecycle.c */
HIDDEN void esca_lib_init(void);

/* thread.c */
HIDDEN struct tstate *tstate_create(void);
HIDDEN void threads_drain_again(void);
HIDDEN void threads_drain_others(int in_handler);
HIDDEN void threads_hand_over(void);
HIDDEN void *esca_vfork_prepare(void);
HIDDEN int timer_handler_ours(void);
HIDDEN void thread_init(void);
HIDDEN int threads_sum(struct tstate *sum, int *total);
HIDDEN void watchdog_ensure(void);
HIDDEN void timer_arm(struct tstate *ts);
HIDDEN int time_bound_runs(struct tstate *ts);
/* flush.c: can the timer signal reach ts while it blocks with that mask
 * (NULL: its own)? */
HIDDEN int timer_reaches(struct tstate *ts, const sigset_t *wmask);
HIDDEN void timer_quiet(struct tstate *ts);
/* ts holds entries and its timer does not run: run it (no system call
 * while it runs) */
static inline void timer_ensure(struct tstate *ts)
{
	if (__builtin_expect(!ts->timer_set, 0))
		timer_arm(ts);
}

/* An event-loop wait returns: what is still pending (parked sends the
 * wait watched) is the timer's again */
/* Lever reads: a socket a read found empty stays known empty only until
 * any thread's wait (its start or its return), or a blocking call, begins
 * or ends: the program may learn of new bytes from any of them.  A
 * per-thread mark missed another thread's wait (the read audit: a
 * dispatcher's edge-triggered epoll_wait handed a socket to a reader
 * thread, whose read was answered EAGAIN, the edge spent: a stall) and a
 * blocking read of a pipe a child signalled through after sending. */
extern HIDDEN uint64_t lib_wait_epoch;

static inline void wait_epoch_bump(void)
{
	__atomic_add_fetch(&lib_wait_epoch, 1, __ATOMIC_ACQ_REL);
}

static inline void wait_end(struct tstate *ts)
{
	ts->in_wait = 0;
	if (__builtin_expect(!ts->timer_set, 0) && !ts->in_rounds &&
	    ts->table && esca_table_pending(ts->table))
		timer_arm(ts);
}

/* A wait of several rounds (poll.c, wait.c): the timer is armed again only
 * when the last round is over.  Between rounds the progress fd watches the
 * parked sends; re-armed at each round, the timer's shot ended the next one
 * every 2 ms (the wait audit: a ppoll re-entered every 2 ms while a send
 * was parked on a slow client). */
static inline void wait_rounds(struct tstate *ts, int on)
{
	int e = errno;

	if (!ts)
		return;
	ts->in_rounds = on;
	if (!on) {
		wait_end(ts);
		wait_epoch_bump();	/* what reads found out is old news */
	}
	errno = e;
}
/* A system call that may block, made as a cancellation point (pthreads(7)),
 * as glibc 2.36's own wrappers make theirs: the thread's cancel type is
 * asynchronous for the call alone, so a pthread_cancel already pending acts
 * at once and one that comes while the call blocks ends it (glibc 2.34+
 * signals a thread only while its type is asynchronous: made raw, a
 * cancelled nanosleep ran its whole time and a pause never ended; the
 * threads audit).  The cancel state is the program's (disabled: nothing
 * acts).  Not while the library holds its guard (a handler of the
 * program's that interrupted it): the unwinding would leave the library's
 * state half made.  A cancel between the call's end and the type's return
 * acts after its effect, as glibc 2.36's does.  lib_cancel_on() gives the
 * old type, or -1 where it left it alone; lib_cancel_off() puts it back,
 * errno kept. */
static inline int lib_cancel_on(void)
{
	int old;

	if (tls_ts && tls_ts->guard)
		return -1;
	if (pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &old))
		return -1;
	return old;
}

static inline void lib_cancel_off(int old)
{
	int e = errno;

	if (old >= 0)
		(void)pthread_setcanceltype(old, NULL);
	errno = e;
}

/* syscall(...) as a cancellation point: lib_cancel_on() around it */
#define lib_syscall_cancel(...)                                          \
	({                                                               \
		int old_ = lib_cancel_on();                              \
		long r_ = syscall(__VA_ARGS__);                          \
		lib_cancel_off(old_);                                    \
		r_;                                                      \
	})

/* flush.c: a sum that changes when a peer of ts's parked sockets (NULL: of
 * any table's) reads */
HIDDEN uint64_t peers_progress(struct tstate *ts);
/* a thread's state: mmap'd, zeroed (any thread's, the heir's too) */
HIDDEN struct tstate *ts_alloc(void);
HIDDEN void ts_free(struct tstate *ts);
HIDDEN uint64_t now_ns(void);

/* After a flush: is anything left (threads_drain_others asks), and, with
 * no timer of the thread's, since when (the watchdog thread's bound).  A
 * thread with a timer reads no clock: its shot is the bound. */
static inline void note_pending(struct tstate *ts, int pending)
{
	__atomic_store_n(&ts->oldest_ns, !pending ? 0 : ts->has_timer ? 1 :
			 now_ns(), __ATOMIC_RELEASE);
}
HIDDEN int thread_pfd_waiting(struct tstate *self, int pfd);
HIDDEN void thread_add(struct tstate *ts);

/* heir.c: one entry's rest, its bytes copied (the table's arena goes) */
struct rest {
	struct rest *next;
	struct esca_args a;	/* a.iov unset: the bytes are data[] */
	uint64_t user;		/* what fd_on_complete expects of the rest */
	size_t len, off;	/* bytes in data[], of those done */
	char data[];
};
HIDDEN int heir_take(struct tstate *ts);
HIDDEN void heir_after_fork(void);
HIDDEN int rests_collect(struct tstate *ts, struct rest **list);

/* execdrain.c */
HIDDEN char **exec_handover(char *const envp[]);
HIDDEN void exec_failed(char **env);
HIDDEN void exec_drain_init(void);
HIDDEN void exec_drain_wait(int fd);
extern HIDDEN int exec_drain_fd;
extern HIDDEN int table_executor;	/* the executor tables really got */
extern HIDDEN char fallback_reason[128];

/* whole.c: the program's writes that go to the kernel, finished where only
 * the library's timer signal cut them short */
HIDDEN ssize_t pass_write(int fd, const void *buf, size_t n);
HIDDEN ssize_t pass_writev(int fd, const struct iovec *iov, int n);
HIDDEN ssize_t pass_send(int fd, const void *buf, size_t n, int flags);
HIDDEN ssize_t pass_sendto(int fd, const void *buf, size_t n, int flags,
			   const struct sockaddr *to, socklen_t tolen);
HIDDEN ssize_t pass_sendmsg(int fd, const struct msghdr *msg, int flags);
HIDDEN ssize_t pass_sendfile(int out, int in, off_t *off, size_t count);

/* fdmap.c */
HIDDEN void fdmap_init(void);
HIDDEN int fd_detect(int fd, struct fdinfo *fi);
HIDDEN void fd_note_access(struct fdinfo *fi, long fl);
HIDDEN int fd_access_ok(int fd, struct fdinfo *fi, uint16_t need);
HIDDEN int fd_share_key(int old, int newfd);
HIDDEN void fd_note_flag(int fd, uint16_t bit, long on);
HIDDEN void fd_note_nonblock(int fd, long on);
HIDDEN void fd_on_complete(void *ctx, uint64_t user, int op, int fd,
			   int64_t r);
HIDDEN void fd_use(struct tstate *ts, struct fdinfo *fi);
HIDDEN void fd_unuse(struct fdinfo *fi, int fd);
HIDDEN void fd_leave_epoll(struct fdinfo *fi, int fd);
HIDDEN void fd_leave_epoll_at(int ep, uint16_t ep_gen, int fd);
HIDDEN void fd_leave_late(struct tstate *ts);
extern HIDDEN uint64_t epoll_leaves;	/* fdmap.c: the stats' count */
HIDDEN int fd_close_ordered(struct tstate *ts, struct fdinfo *fi, int fd);
HIDDEN int fd_replace_ready(struct tstate *ts, struct fdinfo *fi, int fd);
extern HIDDEN uint64_t fd_count_underflows;	/* fdmap.c: a bug if not 0 */
HIDDEN int fd_closed_slow(struct tstate *ts, struct fdinfo *fi, uint64_t w);
HIDDEN int fd_qclose_stands(struct tstate *ts, struct fdinfo *fi,
			    int wait_ms);
HIDDEN int fd_wait_others(struct tstate *ts, struct fdinfo *fi, int fd,
			  int nonblock);
HIDDEN void fdmap_after_fork(void);
HIDDEN void fd_closer_begin(void);	/* close_range, dup2: no fd of ours */
HIDDEN void fd_closer_end(void);	/* is being made meanwhile */

/* prefetch.c (lever prefetch) */
HIDDEN void prefetch_map(int epfd, int fd, const struct epoll_event *ev);
HIDDEN void prefetch_note(struct tstate *ts, int epfd,
			  const struct epoll_event *evs, int n);
HIDDEN int prefetch_answer(int fd, const struct iovec *iov, int iovcnt,
			   size_t total, int flags, ssize_t *res);
HIDDEN void prefetch_before_kernel(int fd);
HIDDEN void prefetch_complete(void *ctx, uint64_t user, int op, int fd,
			      int64_t r);
HIDDEN void prefetch_forget(struct tstate *ts);
HIDDEN void prefetch_free(struct tstate *ts);
HIDDEN void prefetch_fold(struct prefetch *into, const struct prefetch *p);

/* flush.c */
HIDDEN void lib_flush(struct tstate *ts, unsigned mode, int why);
HIDDEN void lib_run_closes(struct tstate *ts);
/* Before a call that makes an fd (open, accept, dup, F_DUPFD, socket,
 * socketpair, pipe):
 * Linux gives it the lowest free number, which a close still queued in
 * this thread's table has not freed yet.  A load and a branch unless a
 * close was queued. */
static inline void lib_new_fd(void)
{
	struct tstate *ts = tls_ts;

	if (__builtin_expect(ts != NULL && ts->closes_queued, 0))
		lib_run_closes(ts);
}
HIDDEN void lib_sync_fd(struct tstate *ts, int fd);
HIDDEN void lib_look_fd(struct tstate *ts, int fd);
HIDDEN int lib_sync_fd_for(struct tstate *ts, int fd, long ms);
HIDDEN void lib_push_peer(struct tstate *ts, struct fdinfo *fi);
HIDDEN void lib_flush_handover(struct tstate *ts, int why);
HIDDEN void lib_flush_drain(struct tstate *ts, int why);
HIDDEN void lib_drain_again(void);
/* rounds: at most that many 1-ms waits for entries in flight (a sleep
 * passes its length in ms; BLOCK_ROUNDS otherwise); keep: the blocking
 * call is one the kernel restarts after the timer's signal (read_restarts),
 * so an armed timer may stay armed */
#define BLOCK_ROUNDS 8
HIDDEN void lib_flush_block(struct tstate *ts, int fd, int rounds, int keep);
HIDDEN int read_restarts(int fd, int flags);
extern HIDDEN int timer_signal_taken;	/* signals.c: the program's, not ours */

/* read_restarts where the answer is known: a socket looked at already (a
 * few loads: a read while the timer stays armed asks this each time). */
static inline int read_restarts_now(const struct fdinfo *fi, int fd,
				    int flags)
{
	if ((fi->flags & (FI_RTO_NONE | FI_DUPED)) == FI_RTO_NONE &&
	    flags >= 0 && !(flags & MSG_WAITALL) && !fi->order_key &&
	    !__atomic_load_n(&timer_signal_taken, __ATOMIC_ACQUIRE))
		return 1;
	return read_restarts(fd, flags);
}
HIDDEN int lib_sleep(clockid_t clk, int flags, const struct timespec *req,
		     struct timespec *rem);
HIDDEN int lib_nanosleep(const struct timespec *req, struct timespec *rem);
HIDDEN int lib_pause(unsigned sigs);
HIDDEN int lib_flush_epoll(struct tstate *ts, int epfd,
			   struct epoll_event *evs, int max, int timeout,
			   const sigset_t *mask);
HIDDEN void lib_lifecycle_flush(void);

/* wait.c (and poll.c, which shares its helpers) */
HIDDEN void lib_pay_owed(struct tstate *ts);
HIDDEN int lib_owe(struct tstate *ts, struct fdinfo *fi, int fd);
struct wmask;
HIDDEN int before_wait(struct tstate *ts, struct wmask *wm);
HIDDEN void wait_unwatched(struct tstate *ts, struct wmask *wm);
HIDDEN void unwatched_shot(struct tstate *ts);
HIDDEN void progress_arm(struct tstate *ts, int on);
HIDDEN uint64_t wait_clock_ns(void);
HIDDEN uint64_t wait_left_ns(uint64_t deadline);
/* a wait with the program's signal mask, across its rounds (wait.c) */
struct wmask {
	sigset_t set;		/* the program's mask (and the timer signal) */
	sigset_t saved;		/* the thread's own, while held */
	const sigset_t *use;	/* &set, or NULL: no mask given */
	int held;
	int timer_added;	/* the timer signal is in set for the library */
};
HIDDEN void wmask_init(struct wmask *m, const sigset_t *mask, int block_timer);
HIDDEN void wmask_hold(struct wmask *m);
HIDDEN void wmask_release(struct wmask *m);

/* signals.c */
HIDDEN void signals_init(void);
HIDDEN void stash_run(struct tstate *ts);
HIDDEN ssize_t stash_data(struct tstate *ts, int call, int fd,
			  const struct iovec *iov, int iovcnt, int flags);
HIDDEN void lib_end_flush(int in_handler);

/* adapt.c (lever "adapt") */
/* Lever adapt's modes (struct adapt's kept, mode, pmode): deferring with
 * flushes through the ring, stepped aside, deferring with plain flushes. */
enum { ADAPT_RING, ADAPT_ASIDE, ADAPT_PLAIN, ADAPT__N };

struct adapt_totals {
	uint64_t windows, windows_aside, cpu_ns_aside, switches;
	uint64_t windows_plain, loopless;
};
HIDDEN void adapt_turn(struct tstate *ts);
HIDDEN void adapt_shot(struct tstate *ts);
HIDDEN void adapt_rhythm(struct tstate *ts);
HIDDEN void adapt_totals(struct adapt_totals *t);
HIDDEN void adapt_after_fork(void);

/* The controller's decisions so far (adapt.c): a thread whose ad.epoch
 * differs takes the process's mode at its next wait. */
HIDDEN extern uint32_t adapt_epoch;

/* A wait of ts returned n (after its flush): an epoll wait, poll or select
 * (n its events), or a read that may block on a socket (read.c, n 1 when
 * bytes came): count it.  Every few waits the thread hands its count to the
 * process's controller, which measures and decides once the process's
 * waits and events reach a window (cfg.adapt_window; a busy server's wait
 * returns tens of events); a decision taken meanwhile is picked up here
 * (adapt.c, adapt_turn).  A few adds and a load per wait; the clock is read
 * once a window, by one thread. */
static inline void adapt_wait(struct tstate *ts, int n)
{
	if (!ts || ts->guard || !ts->table || !(cfg.levers & LEVER_ADAPT))
		return;
	if (unlikely(ts->ad.shots | ts->ad.loopless))
		adapt_rhythm(ts);	/* a wait: the thread has a loop */
	if (n > 0)
		ts->ad.events += (unsigned)n;
	if (unlikely(++ts->ad.waits + ts->ad.events >= ts->ad.limit ||
		     ts->ad.epoch != __atomic_load_n(&adapt_epoch,
						     __ATOMIC_RELAXED)))
		adapt_turn(ts);
}

/* stats.c */
HIDDEN void stats_maybe_write(int force);
HIDDEN void stats_after_fork(void);

/* Leave the library (ts->guard++ was entering it): calls a signal handler
 * made meanwhile, held in the stash, run now, in order (signals.c). */
static inline void lib_leave(struct tstate *ts)
{
	if (--ts->guard == 0 &&
	    unlikely(__atomic_load_n(&ts->stash_res, __ATOMIC_RELAXED)))
		stash_run(ts);
}

static inline struct tstate *ts_get(void)
{
	struct tstate *ts = tls_ts;

	if (likely(ts))
		return ts;
	return tstate_create();
}

static inline struct fdinfo *fdi(int fd)
{
	if (fd < 0 || fd >= fdtab_n || !fdtab)
		return NULL;
	return &fdtab[fd];
}

/* In a vfork child, which shares the parent's memory and this thread's
 * state until it execs or exits: everything passes through (the parent
 * flushed before vfork; the child must not queue into its table). */
static inline int vfork_child(struct tstate *ts)
{
	if (likely(!ts || !ts->vfork_tid))
		return 0;
	if ((int)syscall(SYS_gettid) != ts->vfork_tid)
		return 1;
	ts->vfork_tid = 0;	/* the parent, back: the child is gone */
	return 0;
}

static inline void fd_note_max(struct fdinfo *fi)
{
	int fd = (int)(fi - fdtab);

	if (unlikely(fd > __atomic_load_n(&fd_hiwater, __ATOMIC_RELAXED)))
		__atomic_store_n(&fd_hiwater, fd, __ATOMIC_RELAXED);
}

/* After a close or a dup2 onto it, an fd number means something new. */
static inline void fd_forget(struct fdinfo *fi)
{
	fd_note_max(fi);
	fi->gen++;
	fi->kind = FK_UNKNOWN;
	fi->flags = 0;
	fi->order_key = 0;
	fi->drained = 0;
	fi->ep_fd = 0;
	fi->ep_waiter = 0;
	fi->peer = 0;
	fi->rto_set = 0;
	fi->linger = 0;
	fi->nodelay = 0;
	__atomic_store_n(&fi->err, 0, __ATOMIC_RELAXED);
}

/* Is fd a number the program closed whose close is still pending: held
 * for other threads' entries (FU_HOLD), or queued and standing (FU_QCLOSE,
 * fd_qclose_stands)?  To the program it is free, and a call on it gets
 * EBADF at once, as on Linux (DESIGN.md, "Contract: fd lifetime").  One
 * load unless the number is closing (fdmap.c, fd_closed_slow). */
static inline int fd_closed(struct tstate *ts, struct fdinfo *fi)
{
	uint64_t w;

	if (!fi)
		return 0;
	w = __atomic_load_n(&fi->users, __ATOMIC_ACQUIRE);
	return unlikely(w & FU_CLOSING) && fd_closed_slow(ts, fi, w);
}

/* fd_closed for the program's own call (not the library's: ts->guard). */
static inline int fd_closed_here(struct fdinfo *fi)
{
	struct tstate *ts = tls_ts;

	return !(ts && ts->guard) && fd_closed(ts, fi);
}

/* Before a call that reads or changes state of fd that its pending entries
 * touch: run them (DESIGN.md, "Flush triggers").  -1 with EBADF for a
 * number the program closed (fd_closed): nothing to wait for. */
static inline int before_fd_call(int fd)
{
	struct tstate *ts = tls_ts;

	if (unlikely(fd_closed_here(fdi(fd)))) {
		errno = EBADF;
		return -1;
	}
	if (ts && ts->guard)
		return 0;
	if (likely(!ts) || !ts->table || !esca_table_pending(ts->table))
		return 0;
	lib_sync_fd(ts, fd);
	return 0;
}

/* before_fd_call for a call that only looks at fd (lseek, pread, fstat,
 * getsockopt, most ioctls, fsync, fdatasync, ftruncate): on a non-blocking
 * stream socket its queued entries go to the kernel, but those parked on
 * the full socket are not waited for.  Linux's call would not have waited
 * for a blocked writer (a parked send is in the kernel's hands, "Contract:
 * parked sends"), and a client that does not read made it wait for good
 * (nginx's getsockopt(TCP_INFO) for a log line: tests/preload/
 * test_parked_calls.py). */
static inline int before_fd_look(int fd)
{
	struct fdinfo *fi = fdi(fd);
	struct tstate *ts = tls_ts;

	if (likely(!fi || fi->kind != FK_STREAM ||
		   !(fi->flags & FI_NONBLOCK)) || !ts || ts->guard ||
	    !ts->table || fd_closed_here(fi))
		return before_fd_call(fd);
	if (esca_table_pending(ts->table))
		lib_look_fd(ts, fd);
	return 0;
}

#endif
