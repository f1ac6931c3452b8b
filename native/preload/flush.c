/* SPDX-License-Identifier: MIT
 * flush.c - what every flush trigger runs: lib_flush, lib_flush_epoll,
 * lib_sync_fd (one fd's entries), lib_flush_handover (fork, spawn),
 * lib_flush_drain (exit, exec: bounded), lib_flush_block and lib_sleep,
 * lib_pause (calls that block without a wait set), lib_lifecycle_flush
 * (one after_flush step for all), and the seed's explicit segments:
 * esca_init, batch_start, batch_flush.  DESIGN.md, "Flush triggers". */
#include <errno.h>
#include <poll.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

/* What a flush changes for the thread: its clocks and marks, the events
 * owed, the stats file. */
static void after_flush(struct tstate *ts)
{
	if (esca_table_pending(ts->table) == 0)
		ts->oldest_ns = 0;
	if (unlikely(ts->nowed))
		lib_pay_owed(ts);
	if (cfg.stats_path[0])
		stats_maybe_write(0);
	watchdog_ensure();
}

void lib_flush(struct tstate *ts, unsigned mode, int why)
{
	if (!ts->table)
		return;
	if (why != ESCA_WHY_TIMER)
		ts->ad.shots = 0;	/* a trigger of its own (adapt_shot) */
	ts->guard++;
	esca_flush(ts->table, mode, why);
	lib_leave(ts);
	after_flush(ts);
}

/* The flush and the program's epoll wait in one go (lever "fold"): the
 * number of events, -1 with errno, or -2 when the executor cannot. */
int lib_flush_epoll(struct tstate *ts, int epfd, struct epoll_event *evs,
		    int max, int timeout, const sigset_t *mask)
{
	int n;

	ts->guard++;
	n = esca_flush_epoll_wait(ts->table, ESCA_WHY_WAIT, epfd, evs, max,
				  timeout, mask);
	lib_leave(ts);
	if (n == -ENOSYS)
		return -2;
	after_flush(ts);
	if (n < 0) {
		errno = -n;
		return -1;
	}
	return n;
}

/* fd's entries, or those of the open file it shares with other fds (its
 * order key, in *key), pending in this thread's table. */
static int fd_or_file_pending(struct tstate *ts, int fd, int *key)
{
	struct fdinfo *fi = fdi(fd);

	*key = fi && fi->order_key ? fi->order_key - 1 : fd;
	return ts->table && (esca_fd_pending(ts->table, fd) ||
			     (*key != fd && esca_fd_pending(ts->table, *key)));
}

/* Before a call that depends on fd's pending entries: run them, and those
 * of the open file it shares with other fds (its order key). */
void lib_sync_fd(struct tstate *ts, int fd)
{
	int key;

	if (!fd_or_file_pending(ts, fd, &key))
		return;
	ts->guard++;
	esca_sync_fd(ts->table, fd);
	if (key != fd)
		esca_sync_fd(ts->table, key);
	lib_leave(ts);
	if (esca_table_pending(ts->table) == 0)
		ts->oldest_ns = 0;
}

/* before_fd_look's slow path: fd's queued entries (or its open file's) go
 * to the kernel with a reaping flush; what parks is not waited for. */
void lib_look_fd(struct tstate *ts, int fd)
{
	int key;

	if (fd_or_file_pending(ts, fd, &key))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
}

/* lib_sync_fd, bounded (a lingering close, defer.c): fd's entries in this
 * thread's table run and are waited for at most ms.  1 when none is left,
 * 0 when some still are (parked on a peer that does not read). */
int lib_sync_fd_for(struct tstate *ts, int fd, long ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;

	while (ts->table && esca_fd_pending(ts->table, fd)) {
		uint64_t now;

		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
		if (!esca_fd_pending(ts->table, fd))
			break;
		now = now_ns();
		if (now >= end)
			return 0;
		ts->guard++;
		esca_table_wait(ts->table, (int)((end - now) / 1000000ull) + 1);
		lib_leave(ts);
	}
	return 1;
}

/* A read (or FIONREAD) of one end of a socketpair the program made, the
 * other end's entries in this thread's table: plain Linux wrote them when
 * the calls were made, and the read finds them.  They go to the kernel now,
 * waited for no more than a flush at the timer's shot is (ESCA_FLUSH_TRY):
 * a send parked on this end's full buffer waits for this thread's own
 * reads (DESIGN.md, "Contract: order").  Entries of the other end in
 * another thread's table are not looked for (README, Limits). */
void lib_push_peer(struct tstate *ts, struct fdinfo *fi)
{
	int peer = fi->peer - 1, key;
	struct fdinfo *pf = fdi(peer);

	if (!pf || pf->gen != fi->peer_gen || !ts->table) {
		fi->peer = 0;	/* the other end was closed since */
		return;
	}
	key = pf->order_key ? pf->order_key - 1 : peer;
	/* queued, none in flight: a send parked on this end's full buffer
	 * is in the kernel's hands already (as a writer blocked on Linux),
	 * and what is queued behind it waits for it; a flush per read then
	 * re-ran the parked sends under lkm, and a self-pipe drain loop
	 * never found its pipe empty (the lkm guest's d05 "full" spun) */
	if ((esca_fd_pending(ts->table, peer) ||
	     esca_fd_pending(ts->table, key)) &&
	    !esca_fd_inflight(ts->table, peer) &&
	    (key == peer || !esca_fd_inflight(ts->table, key)))
		lib_flush(ts, ESCA_FLUSH_TRY, ESCA_WHY_SYNC);
}

/* fork, vfork, system, popen, posix_spawn: everything this thread queued
 * goes to the kernel, and whatever completes without waiting for a peer
 * completes; sends parked on a full socket stay in flight, the parent's
 * (the child abandons its copy of the table: DESIGN.md, "Contract: parked
 * sends").  A peer that never reads holds up nothing. */
void lib_flush_handover(struct tstate *ts, int why)
{
	prefetch_forget(ts);	/* the child may read those sockets too */
	for (int i = 0; ts->table && i < 8; i++) {
		unsigned before = esca_table_pending(ts->table);

		if (before == 0 || before == esca_table_inflight(ts->table))
			break;
		lib_flush(ts, ESCA_FLUSH_REAP, why);
		if (esca_table_pending(ts->table) == before)
			break;	/* the rest waits behind parked sends */
	}
}

/* Can the timer signal (the thread's timer, or the fallback watchdog
 * thread's) reach this thread while it blocks with the signal mask wmask
 * (NULL: its own)? */
int timer_reaches(struct tstate *ts, const sigset_t *wmask)
{
	uint64_t mask = 0;

	if (!cfg.watchdog_ns || !time_bound_runs(ts) || !timer_handler_ours())
		return 0;
	if (wmask)
		return !sigismember(wmask, cfg.timer_signal);
	return syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &mask,
		       sizeof(mask)) == 0 &&
	       !(mask & (1ull << (cfg.timer_signal - 1)));
}

/* Can the timer signal reach this thread while it blocks in a call on fd
 * (-1: none), and does the kernel restart that call after it?
 * A socket with a receive timeout (SO_RCVTIMEO) gets EINTR instead. */
static int timer_keeps_moving(struct tstate *ts, int fd)
{
	struct timeval tv = { 0, 0 };
	socklen_t len = sizeof(tv);

	if (!timer_reaches(ts, NULL))
		return 0;
	if (fd >= 0 && syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_RCVTIMEO,
			       &tv, &len) == 0 && (tv.tv_sec || tv.tv_usec))
		return 0;
	return 1;
}

/* A call that blocks without a wait set: sleep, pause, wait4, a read or
 * accept on fd that may block (fd -1: none).  A reaping flush, not a
 * waiting one: a peer that never reads holds up nothing.  What stays parked
 * keeps moving while the thread blocks, as for a thread blocked anywhere
 * else: the watchdog sends it the timer signal (SA_RESTART) after
 * ESCA_FLUSH_US, whose handler flushes; the kernel restarts the call after
 * it, and the sleeps and pause, which it does not restart, go on in
 * lib_sleep, lib_pause.  Where that signal cannot come or would end the call
 * (no watchdog, the program took the signal or blocks it here, a receive
 * timeout) the flush waits for everything, as before: a blocking read may
 * wait for a peer that waits for our bytes (DESIGN.md, "Flush triggers"). */
void lib_flush_block(struct tstate *ts, int fd, int rounds, int keep)
{
	wait_epoch_bump();	/* a blocking call: reads' notes are old */
	if (!ts || ts->guard || !ts->table)
		return;
	if (!esca_table_pending(ts->table)) {
		if (!keep)
			timer_quiet(ts);	/* no signal of ours ends the call */
		return;
	}
	lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
	/* An entry still in flight that needs no peer (an op an io-wq worker
	 * ran: with DEFER_TASKRUN its completion waits for this thread to
	 * enter the ring, which a sleeping thread does only at the watchdog's
	 * tick) completes in a moment: wait for it, 1 ms at a time while
	 * something completes or moves, so a deferred shutdown or close is
	 * done before the thread blocks, as before this was a reaping flush.
	 * A send parked on a client that does not read costs one such 1 ms.
	 * Before a sleep, no more rounds than its length in ms (rounds): the
	 * sleep's time runs from its call (wait.c, sleep_rest). */
	for (int i = 0; i < rounds && esca_table_inflight(ts->table); i++) {
		int r;

		ts->guard++;
		r = esca_table_wait(ts->table, 1);
		lib_leave(ts);
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
		if (r <= 0)
			break;
	}
	if (esca_table_pending(ts->table) && !timer_keeps_moving(ts, fd))
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_SYNC);
	if (esca_table_pending(ts->table))
		timer_ensure(ts);	/* the signal that moves them */
	else if (!keep)
		timer_quiet(ts);
}

/* Does the kernel restart a blocking read (or accept) of fd with flags
 * after the timer's signal, so that the thread's timer, armed for entries
 * gone since, may stay armed while it blocks?  Its one shot then costs a
 * signal and a restart, where stopping it before the read and arming it
 * again at the next deferred call cost two timer_settime every request of
 * a program that answers (or asks) with blocking reads: 4 kernel entries a
 * round trip where Linux makes 2 (tests/preload/test_fastpath.py).  Yes
 * only for a socket (SA_RESTART restarts its reads) without a receive
 * timeout (SO_RCVTIMEO: EINTR instead) and with a low-water mark of one
 * byte (SO_RCVLOWAT: a signal ends the read short of it once some bytes
 * came), both asked once and remembered in FI_RTO_NONE until the program
 * sets either through the library (a socket that has one is not asked
 * again: fdinfo.rto_set), not read with MSG_WAITALL (short, as with
 * SO_RCVLOWAT), not sharing its open file with another fd (a timeout set
 * through the other would not clear the mark), and the timer signal the
 * library's. */
int read_restarts(int fd, int flags)
{
	struct fdinfo *fi = fdi(fd);
	struct timeval tv = { 0, 0 };
	socklen_t len = sizeof(tv);
	int lowat = 1;

	if (!fi || flags < 0 || (flags & MSG_WAITALL) ||
	    (fi->kind != FK_STREAM && fi->kind != FK_SOCKET) ||
	    fi->order_key || (fi->flags & FI_DUPED) || fi->rto_set ||
	    __atomic_load_n(&timer_signal_taken, __ATOMIC_ACQUIRE))
		return 0;
	if (fi->flags & FI_RTO_NONE)
		return 1;
	if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
		    &len) < 0 || tv.tv_sec || tv.tv_usec) {
		fi->rto_set = 1;
		return 0;
	}
	len = sizeof(lowat);
	if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_RCVLOWAT, &lowat,
		    &len) < 0 || lowat > 1) {
		fi->rto_set = 1;
		return 0;
	}
	fi->flags |= FI_RTO_NONE;
	return 1;
}

/* clock_nanosleep as the kernel runs it (0 or the error number), but the
 * library's own timer signal (lib_flush_block) is no EINTR of the
 * program's: the sleep goes on for what is left (an absolute one, to the
 * same deadline). */
int lib_sleep(clockid_t clk, int flags, const struct timespec *req,
	      struct timespec *rem)
{
	struct tstate *ts = tls_ts;
	struct timespec left, again;

	for (;;) {
		unsigned hits = ts ? ts->timer_hits : 0;
		unsigned sigs = ts ? ts->sig_hits : 0;	/* the program's */
		struct timespec *out = rem ? rem : &left;

		if (lib_syscall_cancel(SYS_clock_nanosleep, clk, flags, req,
				       out) == 0)
			return 0;
		/* ours alone, not when a handler of the program's ran in the
		 * same wake-up (the wait audit: a program's signal whose
		 * handler ran 5 ms was missed, 6 runs of 6) */
		if (errno != EINTR || !ts || ts->timer_hits == hits ||
		    ts->sig_hits != sigs)
			return errno;
		if (!(flags & TIMER_ABSTIME)) {
			again = *out;
			req = &again;
		}
	}
}

/* nanosleep: the kernel's runs on CLOCK_MONOTONIC. */
int lib_nanosleep(const struct timespec *req, struct timespec *rem)
{
	int e = lib_sleep(CLOCK_MONOTONIC, 0, req, rem);

	if (!e)
		return 0;
	errno = e;
	return -1;
}

/* pause, likewise: only the program's signal ends it.  While sends are
 * parked the thread waits in ppoll on the progress fd, with its own mask
 * and the timer signal blocked: a wake-up by the progress fd flushes and
 * waits again, and only a handler of the program's ends the wait (EINTR),
 * as pause's.  A stop and continue (SIGSTOP, SIGCONT) ends neither: the
 * kernel restarts both (the wait audit: an rt_sigtimedwait here returned
 * EINTR after SIGCONT, no handler run, 11 runs of 12).  Once nothing is
 * parked, the plain pause. */
static int pause_rounds(struct tstate *ts, const uint64_t *mask,
			uint64_t timer_bit, unsigned sigs);

/* A pthread_cancel that ends the pause (a cancellation point, its waits
 * made by lib_syscall_cancel): what lib_pause would have undone. */
struct pause_undo {
	struct tstate *ts;
	uint64_t mask;		/* the program's */
};

static void pause_cancelled(void *p)
{
	struct pause_undo *u = p;

	u->ts->in_wait = 0;
	progress_arm(u->ts, 0);
	wait_rounds(u->ts, 0);
	(void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &u->mask, NULL,
		sizeof(u->mask));
}

/* sigs: the thread's sig_hits when pause was called.  Every signal is
 * blocked from the check of it to the ppoll, which takes the program's
 * mask atomically: a handler of the program's that ran before (in the
 * flush, or just before the ppoll) ends the pause, as it would have ended
 * Linux's, already waiting; checked and then missed, it left the pause
 * waiting for good (test_stalled's pause case, seen once in 8 runs of the
 * suite). */
int lib_pause(unsigned sigs)
{
	struct tstate *ts = tls_ts;
	uint64_t mask, all = ~0ull;
	int r;

	if (!ts || ts->guard || !ts->table || !esca_table_pending(ts->table) ||
	    !timer_keeps_moving(ts, -1))
		return (int)lib_syscall_cancel(SYS_pause);
	if (syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, &mask, sizeof(mask)))
		return (int)lib_syscall_cancel(SYS_pause);
	{
		uint64_t wait = mask, bit = 0;
		struct pause_undo undo = { ts, mask };

		if (!__atomic_load_n(&timer_signal_taken, __ATOMIC_ACQUIRE))
			bit = 1ull << (cfg.timer_signal - 1);
		wait |= bit;
		wait_rounds(ts, 1);
		pthread_cleanup_push(pause_cancelled, &undo);
		r = pause_rounds(ts, &wait, bit, sigs);
		pthread_cleanup_pop(0);
		wait_rounds(ts, 0);
	}
	{
		int e = errno;

		syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, NULL,
			sizeof(mask));
		errno = e;
	}
	return r;
}

static int pause_rounds(struct tstate *ts, const uint64_t *mask,
			uint64_t timer_bit, unsigned sigs)
{
	int pfd, r;

	for (;;) {
		struct pollfd p;

		if (ts->sig_hits != sigs) {
			/* a handler of the program's ran since pause was
			 * called (in a flush): pause is over, as Linux's */
			errno = EINTR;
			return -1;
		}

		ts->guard++;
		pfd = esca_table_inflight(ts->table) ?
		      esca_table_progress_fd(ts->table) : -1;
		lib_leave(ts);
		if (pfd < 0 && esca_table_pending(ts->table)) {
			/* entries no progress fd watches (none could be made:
			 * EMFILE): the timer's shots move them (wait.c,
			 * before_wait), its signal let through */
			uint64_t m = *mask & ~timer_bit;
			unsigned hits = ts->timer_hits;

			timer_ensure(ts);
			r = (int)lib_syscall_cancel(SYS_rt_sigsuspend, &m,
						    sizeof(m));
			if (ts->timer_hits == hits || ts->sig_hits != sigs)
				return r;
			unwatched_shot(ts);
			continue;
		}
		if (pfd < 0)	/* nothing parked now: the program's mask */
			return (int)lib_syscall_cancel(SYS_rt_sigsuspend,
						       mask, sizeof(*mask));
		p = (struct pollfd){ .fd = pfd, .events = POLLIN };
		progress_arm(ts, 1);
		ts->in_wait = 1;
		r = (int)lib_syscall_cancel(SYS_ppoll, &p, 1, NULL, mask,
					    sizeof(*mask));
		wait_end(ts);
		progress_arm(ts, 0);
		if (r < 0)
			return -1;	/* EINTR: the program's handler ran */
		if (p.revents) {
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
			note_pending(ts, esca_table_pending(ts->table) != 0);
		}
	}
}

/* A mark of fd's peer's progress: the bytes it acknowledged (TCP_INFO's
 * tcpi_bytes_acked, TCP), else the bytes in its send queue (SIOCOUTQ).  A
 * queue kept full while the peer reads (a parked send refills it) shows the
 * same SIOCOUTQ at every look; the acknowledged bytes grow. */
static uint64_t peer_mark(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int q = 0;

	if (syscall(SYS_getsockopt, fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
	    len >= offsetof(struct tcp_info, tcpi_bytes_acked) +
		   sizeof(ti.tcpi_bytes_acked))
		return ti.tcpi_bytes_acked;
	if (syscall(SYS_ioctl, fd, SIOCOUTQ, &q) == 0)
		return (uint64_t)q;
	return 0;
}

/* The progress of the peers of the sockets with entries in flight in ts's
 * table, or (ts NULL) named by any table (fdinfo.users): a sum of marks
 * with the fds mixed in; a change means some peer read. */
uint64_t peers_progress(struct tstate *ts)
{
	int top = __atomic_load_n(&fd_hiwater, __ATOMIC_RELAXED);
	uint64_t sum = 0;

	for (int fd = 3; fd <= top && fd < fdtab_n; fd++) {
		if (ts ? esca_fd_inflight(ts->table, fd) :
			 __atomic_load_n(&fdtab[fd].users, __ATOMIC_RELAXED) != 0)
			sum += peer_mark(fd) * 65537u + (uint64_t)fd;
	}
	return sum;
}

/* The last drain (exit, exec, a SIGPIPE that kills): wait for every entry
 * while some peer makes progress; a drain that saw none for DRAIN_IDLE_NS
 * (no entry completed, no parked socket's peer acknowledged a byte) gives up, and so
 * does every later one at once: Linux's exit does not wait for a peer to
 * read (DESIGN.md, "Contract: parked sends"). */
#define DRAIN_IDLE_NS 1000000000ull
#define DRAIN_TICK_MS 100
static int drain_gave_up;

/* lib_new_fd's slow path: a reaping flush runs the queued closes (a close
 * behind bytes parked on a slow client still waits for them: README,
 * Limits).  The count goes down as their completions come (fd_on_complete);
 * it stood for "anything pending" until session 17, and every accept while
 * a send was parked paid a flush. */
void lib_run_closes(struct tstate *ts)
{
	if (ts->guard || !ts->table)
		return;
	if (esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
	if (!esca_table_pending(ts->table))
		ts->closes_queued = 0;	/* handed over: no completion came */
}

void lib_drain_again(void)
{
	__atomic_store_n(&drain_gave_up, 0, __ATOMIC_RELEASE);
}

void lib_flush_drain(struct tstate *ts, int why)
{
	uint64_t since, outq;

	if (!ts->table)
		return;
	lib_flush(ts, ESCA_FLUSH_REAP, why);
	if (__atomic_load_n(&drain_gave_up, __ATOMIC_ACQUIRE))
		return;
	since = now_ns();
	outq = peers_progress(ts);
	while (esca_table_pending(ts->table)) {
		uint64_t o;
		int r;

		if (!esca_table_inflight(ts->table)) {
			/* queued behind nothing parked: they complete */
			lib_flush(ts, ESCA_FLUSH_WAIT, why);
			break;
		}
		ts->guard++;
		r = esca_table_wait(ts->table, DRAIN_TICK_MS);
		lib_leave(ts);
		lib_flush(ts, ESCA_FLUSH_REAP, why);
		o = peers_progress(ts);
		if (r > 0 || o != outq) {
			since = now_ns();
			outq = o;
		} else if (now_ns() - since >= DRAIN_IDLE_NS) {
			__atomic_store_n(&drain_gave_up, 1, __ATOMIC_RELEASE);
			break;
		}
	}
}

/* exec, exit, _exit: nothing may stay behind, in any thread's table
 * (signals.c, lib_end_flush). */
void lib_lifecycle_flush(void)
{
	if (vfork_child(tls_ts))
		return;		/* its parent's state, flushed before vfork */
	lib_end_flush(0);
}

/* ---- explicit segments, the seed's API ---------------------------------- */

EXPORT int esca_init(void)
{
	esca_lib_init();
	if (cfg.disabled)
		return -ENOSYS;
	return ts_get() ? 0 : -ENOMEM;
}

EXPORT int batch_start(void)
{
	struct tstate *ts;

	esca_lib_init();
	if (cfg.disabled)
		return -ENOSYS;
	ts = ts_get();
	if (!ts)
		return -ENOMEM;
	ts->segment = 1;
	ts->nexplicit++;
	return 0;
}

EXPORT int batch_flush(void)
{
	struct tstate *ts = tls_ts;
	unsigned before;

	if (!ts || !ts->table)
		return cfg.disabled ? -ENOSYS : 0;
	before = esca_table_pending(ts->table);
	lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_EXPLICIT);
	ts->segment = 0;
	return (int)(before - esca_table_pending(ts->table));
}
