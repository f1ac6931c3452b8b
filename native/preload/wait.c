/* SPDX-License-Identifier: MIT
 * wait.c - flush triggers where the thread waits: the epoll waits
 * (epoll_wait/pwait/pwait2) with the progress fd, what poll.c shares with
 * them (before_wait, progress_arm, the clock), the events owed to sockets
 * (lib_owe, lib_pay_owed), and the calls that block without a wait set
 * (sleeps, pause, wait*, the signal waits, System V IPC): DESIGN.md,
 * "Flush triggers". */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

HIDDEN uint64_t lib_wait_epoch = 1;	/* preload.h, wait_epoch_bump */

/* an epoll_event.data no program makes: a non-canonical address, with the
 * progress fd in its low 32 bits (whose it is, in a set threads share) */
#define EPOLL_MAGIC 0xe5ca5e9a00000000ull
#define EPOLL_MAGIC_MASK 0xffffffff80000000ull

static inline int is_ours(uint64_t data)
{
	return (data & EPOLL_MAGIC_MASK) == EPOLL_MAGIC;
}

/* Arm or disarm the progress fd: a change of the executor's state, inside
 * the library.  errno is the wait's, kept. */
void progress_arm(struct tstate *ts, int on)
{
	int e = errno;

	ts->guard++;
	esca_table_progress_arm(ts->table, on);
	lib_leave(ts);
	errno = e;
}

/* The precise monotonic clock, for the deadlines of waits that run again
 * (the coarse one lags by up to a tick: a wait would end before its
 * timeout).  Read only on those slow paths. */
uint64_t wait_clock_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* A wait with the program's signal mask (ppoll, pselect, epoll_pwait,
 * epoll_pwait2, sigsuspend; DESIGN.md, "Flush triggers").  Linux swaps the mask in for
 * the one wait.  A wait of the library's may take rounds (a wake-up by the
 * progress fd alone, the folded wait's), and between two rounds the thread
 * ran with its own mask: a signal the wait's mask blocks was delivered
 * there, its handler ran, and the wait ended in EINTR at once (the wait
 * audit: ppoll blocking SIGUSR1 returned at 50 ms, not at its 200 ms
 * timeout).  So the wait's mask also blocks the library's timer signal (no
 * round ends for it: the progress fd moves parked sends), and where rounds
 * may follow the thread holds that mask from the first round to the last
 * (two rt_sigprocmask), as one wait would.  A signal it blocks stays
 * pending, and runs when the thread's own mask is back, after the wait's
 * result is decided, as on Linux. */
void wmask_init(struct wmask *m, const sigset_t *mask, int block_timer)
{
	m->held = 0;
	m->use = NULL;
	m->timer_added = 0;
	if (!mask)
		return;
	m->set = *mask;
	if (block_timer &&
	    !__atomic_load_n(&timer_signal_taken, __ATOMIC_ACQUIRE) &&
	    !sigismember(mask, cfg.timer_signal)) {
		sigaddset(&m->set, cfg.timer_signal);
		m->timer_added = 1;
	}
	m->use = &m->set;
}

void wmask_hold(struct wmask *m)
{
	int e = errno;

	if (m->use && !m->held &&
	    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &m->set, &m->saved,
		    (size_t)(_NSIG / 8)) == 0)
		m->held = 1;
	errno = e;
}

void wmask_release(struct wmask *m)
{
	int e = errno;

	if (m->held &&
	    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &m->saved, NULL,
		    (size_t)(_NSIG / 8)) == 0)
		m->held = 0;
	errno = e;
}

/* The time left to deadline, ns (0 when past). */
uint64_t wait_left_ns(uint64_t deadline)
{
	uint64_t now = wait_clock_ns();

	return now >= deadline ? 0 : deadline - now;
}

/* Flush before a wait (its mask in wm).  Returns the progress fd when
 * entries stay in flight (parked on full sockets) and the wait must also
 * watch it, else -1.
 *
 * Entries left that no progress fd watches - the thread could make none
 * (EMFILE: the program holds every number; under sequential and lkm they
 * are parked unwatched, park.c) - move on the timer's shots: the
 * wait is the program's alone, the timer signal let through its mask (held
 * from the first round to the last, as for the progress fd's rounds), and
 * each shot's flush moves them while the wait goes on for its time left.
 * Before, they were completed in place here, blocking the loop behind a
 * client that does not read (session 19's memcached audit: another
 * client's answer not within 2 s; tests/trust/test_found_no_fd_left.py).
 * Only where that signal cannot come (the program took it or blocks it, no
 * watchdog) are they completed now, the safety net. */
int before_wait(struct tstate *ts, struct wmask *wm)
{
	int pfd = -1;

	if (!ts || ts->guard)
		return -1;
	ts->wait_token++;	/* what reads found out is old news after it */
	wait_epoch_bump();
	if (!ts->table)
		return -1;
	ts->segment = 0;
	if (esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
	if (unlikely(ts->nleaving))
		fd_leave_late(ts);	/* closes its entries parked ahead of */
	if (!esca_table_pending(ts->table))
		return -1;
	if (esca_table_inflight(ts->table)) {
		ts->guard++;
		pfd = esca_table_progress_fd(ts->table);
		lib_leave(ts);
		if (pfd >= 0) {
			__atomic_store_n(&ts->pfd, pfd, __ATOMIC_RELEASE);
			return pfd;
		}
	}
	wait_unwatched(ts, wm);
	return -1;
}

/* The library's timer signal ended a round of a wait that watches no
 * progress fd with entries pending (wait_unwatched): a reaping flush, which
 * the shot's own is not (ESCA_FLUSH_TRY leaves a sendfile to a socket not
 * known non-blocking, and a pipe's write, queued: sequential's, taken back
 * from an unwatched park, stayed so until the wait's end; session 20's
 * third review, from reading).  errno kept. */
void unwatched_shot(struct tstate *ts)
{
	int e = errno;

	if (ts && !ts->guard && ts->table && esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_TIMER);
	errno = e;
}

/* A wait (its mask in wm) that does not watch the progress fd while
 * entries are pending (before_wait; poll and select where the fd does not
 * fit the set): the timer's shots move them, its signal let through the
 * wait's mask, held from round to round; where it cannot come, they are
 * completed now. */
void wait_unwatched(struct tstate *ts, struct wmask *wm)
{
	if (!ts || !ts->table || !esca_table_pending(ts->table))
		return;
	if (wm->timer_added) {
		sigdelset(&wm->set, cfg.timer_signal);
		wm->timer_added = 0;
	}
	if (timer_reaches(ts, wm->use)) {
		timer_ensure(ts);
		wmask_hold(wm);		/* rounds may follow */
		return;
	}
	lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_WAIT);
}

/* Set once any thread puts its progress fd in an epoll set: from then on
 * every epoll wait filters our events out, armed or not (a late wake-up of a
 * progress fd must never reach the program: its data is no pointer).  Read
 * after a wait returns, never before it: another thread may add its fd to a
 * set this thread already waits on (a set threads share). */
static int epoll_magic_used;

/* Is the progress fd pfd in the program's epoll set epfd?  Put it there
 * (edge-triggered, EPOLL_MAGIC | pfd as its data) once per epoll fd's life. */
static int epoll_has_ours(struct tstate *ts, int epfd, int pfd)
{
	struct fdinfo *fi = fdi(epfd);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET,
				  .data.u64 = EPOLL_MAGIC | (uint32_t)pfd };
	int slot = -1;

	if (!fi)
		return 0;
	for (int i = 0; i < ts->nepreg; i++) {
		if (ts->epreg[i].fd == epfd) {
			if (ts->epreg[i].gen == fi->gen)
				return 1;
			slot = i;	/* that epoll fd was closed since */
			break;
		}
	}
	/* before the fd is in the set: a wait of another thread that takes
	 * its event finds the flag set (epoll_common loads it after its wait) */
	__atomic_store_n(&epoll_magic_used, 1, __ATOMIC_RELEASE);
	if (syscall(SYS_epoll_ctl, epfd, EPOLL_CTL_ADD, pfd, &ev) < 0 &&
	    errno != EEXIST)
		return 0;
	if (slot < 0) {
		slot = ts->nepreg < MAX_EPREG ? ts->nepreg++ :
		       (int)(fi->gen % MAX_EPREG);
	}
	ts->epreg[slot].fd = epfd;
	ts->epreg[slot].gen = fi->gen;
	return 1;
}

static int64_t remaining_ms(uint64_t deadline)
{
	return (int64_t)((wait_left_ns(deadline) + 999999) / 1000000);
}

/* A progress fd's event that a wait of ts took from epoll set epfd: its own
 * (1), or another thread's (0): in a set threads share, whose wait takes an
 * edge-triggered event is the kernel's choice.  If its owner is in a wait
 * that watches it, a new edge is made for it (EPOLL_CTL_MOD reports a ready
 * fd again; the eventfd was not read); out of one, the owner's next wait
 * flushes first. */
static int progress_event(struct tstate *ts, int epfd, uint64_t data)
{
	int pfd = (int)(uint32_t)data;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET,
				  .data.u64 = data };

	if (ts && ts->pfd == pfd)
		return 1;
	if (thread_pfd_waiting(ts, pfd) &&
	    syscall(SYS_epoll_ctl, epfd, EPOLL_CTL_MOD, pfd, &ev) < 0)
		return 0;	/* gone from the set: its owner put it back */
	return 0;
}

/* Which of the three an epoll wait is. */
enum epoll_variant { VIA_EPOLL_WAIT, VIA_EPOLL_PWAIT, VIA_EPOLL_PWAIT2 };

/* epoll_wait and friends: flush, wait; entries parked in flight wake the
 * wait through the progress fd, which the program never sees. */
static int epoll_run(int epfd, struct epoll_event *evs, int max,
			int timeout, const struct timespec *ts2,
			struct wmask *wm, enum epoll_variant via)
{
	const sigset_t *mask = wm->use;	/* held where rounds may follow */
	struct tstate *ts = tls_ts;
	uint64_t deadline = 0;
	int pfd, n, filter;
	struct timespec left;
	unsigned sigs = ts ? ts->sig_hits : 0;	/* the program's handlers */

	/* lever "fold": the flush and the wait in one kernel entry */
	if ((cfg.levers & LEVER_FOLD) && ts && !ts->guard && ts->table &&
	    esca_table_pending(ts->table) && via != VIA_EPOLL_PWAIT2 &&
	    timeout != 0 && likely(!ts->nleaving)) {
		/* (a close noted by fd_leave_late: its flush first, below) */
		uint64_t start = timeout > 0 ? wait_clock_ns() : 0;
		unsigned hits = ts->timer_hits;
		int resumed = 0;

		ts->segment = 0;
		ts->wait_token++;
		wait_epoch_bump();
		wmask_hold(wm);	/* a round may follow (a no-op without mask) */
		/* an event-loop wait: the watchdog leaves it alone (the wait
		 * flushed; parked sends move while the ring waits) */
		ts->in_wait = 1;
		n = lib_flush_epoll(ts, epfd, evs, max, timeout, mask);
		wait_end(ts);
		if (n == -1 && errno == EINTR && ts->timer_hits != hits) {
			/* the library's own timer signal (sent before the
			 * watchdog saw in_wait, or by the end of the process)
			 * is no EINTR of the program's: wait on, below, for
			 * what is left of the timeout */
			n = 0;
			resumed = 1;
		}
		if (n != -2) {
			int m = 0;

			if (n < 0 || (n == 0 && !resumed))
				return n;
			if (n > 0 && !__atomic_load_n(&epoll_magic_used,
						       __ATOMIC_ACQUIRE))
				return n;
			for (int i = 0; i < n; i++)
				if (!is_ours(evs[i].data.u64))
					evs[m++] = evs[i];
				else
					progress_event(ts, epfd, evs[i].data.u64);
			if (m > 0)
				return m;
		}
		/* only our progress fd or our signal woke it, or parked
		 * sends moved (-2): wait on, below, for the time left - unless
		 * a handler of the program's ran meanwhile (Linux: EINTR) */
		if (ts->sig_hits != sigs) {
			errno = EINTR;
			return -1;
		}
		if (timeout > 0) {
			int64_t used = (int64_t)((wait_clock_ns() - start) /
						 1000000);

			timeout = used >= timeout ? 0 : timeout - (int)used;
		}
	}
	pfd = before_wait(ts, wm);
	if (ts && ts->sig_hits != sigs && timeout != 0 &&
	    !(via == VIA_EPOLL_PWAIT2 && ts2 && !ts2->tv_sec && !ts2->tv_nsec)) {
		errno = EINTR;	/* a handler of the program's ran in the flush:
				 * in Linux's wait (before_block) */
		return -1;
	}

	if (pfd >= 0 && !epoll_has_ours(ts, epfd, pfd))
		pfd = -1;
	if (pfd >= 0)
		wmask_hold(wm);		/* rounds may follow */
	if (via == VIA_EPOLL_PWAIT2 && ts2)
		deadline = wait_clock_ns() +
			   (uint64_t)ts2->tv_sec * 1000000000ull +
			   (uint64_t)ts2->tv_nsec;
	else if (timeout > 0)
		deadline = wait_clock_ns() + (uint64_t)timeout * 1000000ull;
	for (;;) {
		int m = 0, hit = 0;
		unsigned hits = ts ? ts->timer_hits : 0;

		if (pfd >= 0) {
			/* in the wait before the progress fd can fire: a wait
			 * of another thread that takes its event must see it
			 * and re-arm it (progress_event); the other order left
			 * an event taken between the two to nobody */
			__atomic_store_n(&ts->in_wait, 1, __ATOMIC_SEQ_CST);
			progress_arm(ts, 1);
		}
		if (via == VIA_EPOLL_WAIT)
			n = real.epoll_wait(epfd, evs, max, timeout);
		else if (via == VIA_EPOLL_PWAIT)
			n = real.epoll_pwait(epfd, evs, max, timeout, mask);
		else
			n = real.epoll_pwait2(epfd, evs, max, ts2, mask);
		if (pfd >= 0) {
			wait_end(ts);
			progress_arm(ts, 0);
		}
		if (n < 0 && errno == EINTR && ts && ts->timer_hits != hits) {
			/* our timer signal, not the program's: wait on */
			if (timeout == 0)
				return 0;
			if (pfd < 0)
				unwatched_shot(ts);
			goto again;
		}
		filter = __atomic_load_n(&epoll_magic_used, __ATOMIC_ACQUIRE);
		if (!filter || n <= 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (is_ours(evs[i].data.u64))
				hit |= 1 + progress_event(ts, epfd,
							  evs[i].data.u64);
			else
				evs[m++] = evs[i];
		}
		if (!hit)
			return n;
		if ((hit & 2) && !ts->guard && ts->table)
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
		if (m > 0 || timeout == 0 ||
		    (via == VIA_EPOLL_PWAIT2 && ts2 && !deadline))
			return m;
again:
		if (ts && ts->sig_hits != sigs) {
			errno = EINTR;	/* a handler of the program's ran */
			return -1;
		}
		if (pfd >= 0 && !esca_table_inflight(ts->table))
			pfd = -1;
		if (deadline) {
			uint64_t ns = wait_left_ns(deadline);

			if (!ns)
				return 0;
			if (via == VIA_EPOLL_PWAIT2) {
				left.tv_sec = (time_t)(ns / 1000000000ull);
				left.tv_nsec = (long)(ns % 1000000000ull);
				ts2 = &left;
			} else {
				timeout = (int)remaining_ms(deadline);
			}
		}
	}
}

/* Which thread waits on epfd (fdinfo.ep_waiter): a close queued by
 * another one takes its socket out of the set first (defer.c,
 * close_epoll_plan).  A load and a compare a wait. */
static inline void ep_note_waiter(struct tstate *ts, int epfd)
{
	struct fdinfo *fi = fdi(epfd);
	uint32_t me, was;

	if (unlikely(!ts))
		ts = ts_get();	/* a thread whose first call is its wait */
	me = ts ? (uint32_t)(ts->wait_token >> 32) : EP_WAITERS;
	was = fi ? __atomic_load_n(&fi->ep_waiter, __ATOMIC_RELAXED) : me;
	if (likely(was == me) || was == EP_WAITERS)
		return;
	/* two first waiters at once: one of them sees the other's */
	if (!__atomic_compare_exchange_n(&fi->ep_waiter, &was, me, 0,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED) ||
	    was)
		__atomic_store_n(&fi->ep_waiter, EP_WAITERS, __ATOMIC_RELAXED);
}

/* The wait, then lever "adapt" counts it and what it returned (after its
 * flush: where the thread may step aside or back). */
static int epoll_common(int epfd, struct epoll_event *evs, int max,
			int timeout, const struct timespec *ts2,
			const sigset_t *mask, enum epoll_variant via)
{
	struct wmask wm;
	int n;

	ep_note_waiter(tls_ts, epfd);
	wmask_init(&wm, mask, 1);
	wait_rounds(tls_ts, 1);
	n = epoll_run(epfd, evs, max, timeout, ts2, &wm, via);
	wait_rounds(tls_ts, 0);
	wmask_release(&wm);	/* errno kept */
	adapt_wait(tls_ts, n);
	if (unlikely(cfg.levers & LEVER_PREFETCH))
		prefetch_note(tls_ts, epfd, evs, n);	/* lever prefetch */
	return n;
}

EXPORT int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return epoll_common(epfd, evs, max, timeout, NULL, NULL,
			    VIA_EPOLL_WAIT);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *evs, int max,
		       int timeout, const sigset_t *mask)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return epoll_common(epfd, evs, max, timeout, NULL, mask,
			    VIA_EPOLL_PWAIT);
}

EXPORT int epoll_pwait2(int epfd, struct epoll_event *evs, int max,
			const struct timespec *t, const sigset_t *mask)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	if (!real.epoll_pwait2) {
		errno = ENOSYS;
		return -1;
	}
	return epoll_common(epfd, evs, max, t ? 1 : -1, t, mask,
			    VIA_EPOLL_PWAIT2);
}

/* ---- events owed to sockets answered EAGAIN (DESIGN.md, "Contract: parked
 * sends") ----------------------------------------------------------------- */

/* A program told EAGAIN on a socket whose earlier bytes were parked waits
 * for it to turn writable; with an edge-triggered registration, the edge
 * may have gone by while our bytes still filled the socket.  Once they are
 * out, re-arm its registration (EPOLL_CTL_MOD with the program's own events
 * and data): the kernel then reports the socket as it is now. */
void lib_pay_owed(struct tstate *ts)
{
	int k = 0;

	for (int i = 0; i < ts->nowed; i++) {
		int fd = ts->owed[i].fd;
		struct fdinfo *fi = fdi(fd);

		if (!fi || !(fi->flags & FI_OWED) || fi->gen != ts->owed[i].gen)
			continue;		/* closed or re-used since */
		if (esca_fd_pending(ts->table, fd)) {
			ts->owed[k++] = ts->owed[i];	/* still parked */
			continue;
		}
		fi->flags &= (uint16_t)~FI_OWED;
		/* level-triggered sets report it anyway; a one-shot one the
		 * program re-arms itself */
		if (fi->ep_fd > 0 && (fi->ep_events & EPOLLET) &&
		    !(fi->ep_events & EPOLLONESHOT)) {
			struct epoll_event ev = { .events = fi->ep_events,
						  .data.u64 = fi->ep_data };

			if (syscall(SYS_epoll_ctl, fi->ep_fd - 1, EPOLL_CTL_MOD,
				    fd, &ev) < 0)
				fi->ep_fd = 0;
		}
	}
	ts->nowed = k;
}

/* Remember that fd is owed an event (DESIGN.md, "Contract: parked sends").
 * The list has no fixed size: it doubles when full.  This runs only when a
 * data call is answered EAGAIN behind parked bytes, after a flush, never on
 * a call's fast path.  -1 (ENOMEM) when it cannot grow. */
int lib_owe(struct tstate *ts, struct fdinfo *fi, int fd)
{
	if (ts->nowed == ts->owed_cap) {
		int cap = ts->owed_cap ? 2 * ts->owed_cap : 64;
		struct owed *nb = realloc(ts->owed, (size_t)cap * sizeof(*nb));

		if (!nb)
			return -1;
		ts->owed = nb;
		ts->owed_cap = cap;
	}
	ts->owed[ts->nowed].fd = fd;
	ts->owed[ts->nowed].gen = fi->gen;
	ts->nowed++;
	fi->flags |= FI_OWED;
	return 0;
}

/* ---- calls that block without a wait set: flush.c, lib_flush_block ----- */

/* 1 when a handler of the program's ran in its flush: the flush is part
 * of the call, which on Linux would have been waiting then, and a call the
 * kernel ends at a handler ends with EINTR (the processes' audit: under
 * sequential, whose flush blocks on a slow peer, a SIGALRM that came in it
 * left pause and sigsuspend waiting for good, nanosleep and poll for their
 * whole time). */
static inline int before_block_for(int rounds)
{
	struct tstate *ts = tls_ts;
	unsigned sigs;

	if (ts && !ts->guard)
		ts->wait_token++;
	wait_epoch_bump();
	if (!ts || ts->guard || !ts->table)
		return 0;
	sigs = ts->sig_hits;
	lib_flush_block(ts, -1, rounds, 0);	/* and the timer stops if idle */
	return ts->sig_hits != sigs;
}

static inline int before_block(void)
{
	return before_block_for(BLOCK_ROUNDS);
}

/* A sleep of req that a handler ended before it began: all of it left. */
static int sleep_cut(const struct timespec *req, struct timespec *rem)
{
	if (!req || req->tv_sec < 0 || req->tv_nsec < 0 ||
	    req->tv_nsec >= 1000000000L)
		return 0;	/* the kernel's EINVAL (or EFAULT) */
	if (rem)
		*rem = *req;
	return EINTR;
}

/* A relative sleep's time runs from the call's entry: the flush before it
 * (before_block, which waits 1 ms at a time while parked sends move) is
 * part of it, as a plain sleep would have been sleeping then.  Before, each
 * nanosleep(1 ms) with a send parked took ~2 ms (the wait audit).  The
 * clock is read only when something is pending (the flush may take time). */
static uint64_t sleep_start(void)
{
	struct tstate *ts = tls_ts;

	if (!ts || ts->guard || !ts->table || !esca_table_pending(ts->table))
		return 0;
	return wait_clock_ns();
}

/* The flush's wait for parked sends before a sleep of req: no more 1-ms
 * rounds than the sleep has ms. */
static int sleep_rounds(const struct timespec *req)
{
	if (req && req->tv_sec == 0 && req->tv_nsec >= 0 &&
	    req->tv_nsec / 1000000L < BLOCK_ROUNDS)
		return (int)(req->tv_nsec / 1000000L);
	return BLOCK_ROUNDS;
}

/* What is left of req since start (0: nothing was pending, req as is). */
static const struct timespec *sleep_rest(uint64_t start,
					 const struct timespec *req,
					 struct timespec *left)
{
	uint64_t used, want;

	if (!start || !req || req->tv_sec < 0 || req->tv_nsec < 0 ||
	    req->tv_nsec >= 1000000000L || req->tv_sec > 1000000000L)
		return req;	/* the kernel's EINVAL, or long enough */
	used = wait_clock_ns() - start;
	want = (uint64_t)req->tv_sec * 1000000000ull + (uint64_t)req->tv_nsec;
	want = used >= want ? 0 : want - used;
	left->tv_sec = (time_t)(want / 1000000000ull);
	left->tv_nsec = (long)(want % 1000000000ull);
	return left;
}

EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
	uint64_t start = sleep_start();
	struct timespec left;

	if (before_block_for(sleep_rounds(req)) && sleep_cut(req, rem)) {
		errno = EINTR;
		return -1;
	}
	return lib_nanosleep(sleep_rest(start, req, &left), rem);
}

EXPORT int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
			   struct timespec *rem)
{
	/* a relative sleep on a clock that runs with the time, as the
	 * monotonic one does (not a CPU-time clock) */
	uint64_t start = !(flags & TIMER_ABSTIME) &&
			 (clk == CLOCK_MONOTONIC || clk == CLOCK_REALTIME ||
			  clk == CLOCK_BOOTTIME) ? sleep_start() : 0;
	struct timespec left;
	long r;

	if (before_block_for(start ? sleep_rounds(req) : BLOCK_ROUNDS) &&
	    sleep_cut(req, (flags & TIMER_ABSTIME) ? NULL : rem))
		return EINTR;
	r = lib_sleep(clk, flags, sleep_rest(start, req, &left), rem);
	return (int)r;	/* it returns the error, not -1 */
}

EXPORT int usleep(useconds_t us)
{
	struct timespec t = { us / 1000000, (long)(us % 1000000) * 1000 }, left;
	uint64_t start = sleep_start();

	if (before_block_for(sleep_rounds(&t))) {
		errno = EINTR;
		return -1;
	}
	return lib_nanosleep(sleep_rest(start, &t, &left), NULL);
}

EXPORT unsigned int sleep(unsigned int s)
{
	struct timespec t = { s, 0 }, rem = { 0, 0 }, left;
	uint64_t start = sleep_start();

	if (before_block_for(sleep_rounds(&t)))
		return s;
	/* glibc's: the whole seconds left (1.7 s left: 1; the wait audit
	 * found ours rounding up) */
	if (lib_nanosleep(sleep_rest(start, &t, &left), &rem) < 0 &&
	    errno == EINTR)
		return (unsigned int)rem.tv_sec;
	return 0;
}

EXPORT int pause(void)
{
	struct tstate *ts = tls_ts;
	unsigned sigs = ts ? ts->sig_hits : 0;	/* the program's handlers */

	if (before_block()) {
		errno = EINTR;
		return -1;
	}
	return lib_pause(sigs);
}

EXPORT pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
	if (!(options & WNOHANG))
		(void)before_block();	/* restarted after SA_RESTART's */
	return (pid_t)lib_syscall_cancel(SYS_wait4, pid, status, options,
					 ru);
}

EXPORT pid_t waitpid(pid_t pid, int *status, int options)
{
	return wait4(pid, status, options, NULL);
}

EXPORT pid_t wait(int *status)
{
	return wait4(-1, status, 0, NULL);
}

/* ---- the signal waits and System V IPC: calls the kernel never restarts
 * after a handler (signal(7)), so a signal of the library's would end them
 * with EINTR.  Each flushes first, as the sleeps do (before_block: with
 * nothing left pending the thread's timer stops, so none comes); where
 * parked sends keep it running, a wake-up by it alone (timer_hits moved,
 * no handler of the program's ran: sig_hits) is no EINTR of the program's
 * and the call runs again, for what is left of its timeout.  nginx's master
 * process writes its workers' channel and then waits in sigsuspend. */

/* A valid relative timeout's deadline on the precise clock, else 0 (the
 * kernel answers EINVAL, or there is no timeout). */
static uint64_t deadline_of(const struct timespec *t)
{
	if (!t || t->tv_sec < 0 || t->tv_nsec < 0 || t->tv_nsec >= 1000000000L)
		return 0;
	return wait_clock_ns() + (uint64_t)t->tv_sec * 1000000000ull +
	       (uint64_t)t->tv_nsec;
}

/* The timeout for a call that runs again: what is left to deadline (0:
 * a last poll), or t as it was when there is none. */
static const struct timespec *time_left(uint64_t deadline,
					const struct timespec *t,
					struct timespec *left)
{
	uint64_t ns;

	if (!deadline)
		return t;
	ns = wait_left_ns(deadline);
	left->tv_sec = (time_t)(ns / 1000000000ull);
	left->tv_nsec = (long)(ns % 1000000000ull);
	return left;
}

/* The call ended with EINTR by the library's signal alone. */
static inline int ours_alone(const struct tstate *ts, long r, unsigned hits,
			     unsigned sigs)
{
	return r < 0 && errno == EINTR && ts && ts->timer_hits != hits &&
	       ts->sig_hits == sigs;
}

EXPORT int sigsuspend(const sigset_t *mask)
{
	struct tstate *ts;
	struct wmask wm;
	long r;

	if (before_block()) {
		errno = EINTR;
		return -1;
	}
	ts = tls_ts;
	/* sends still pending keep the timer running (it moves them here:
	 * not blocked), and a round may follow: between two, the thread
	 * holds the program's mask, as in one sigsuspend (wmask) */
	wmask_init(&wm, mask, 0);
	if (ts && ts->table && esca_table_pending(ts->table))
		wmask_hold(&wm);
	for (;;) {
		unsigned hits = ts ? ts->timer_hits : 0;
		unsigned sigs = ts ? ts->sig_hits : 0;

		r = lib_syscall_cancel(SYS_rt_sigsuspend, mask,
				       (size_t)(_NSIG / 8));
		if (!ours_alone(ts, r, hits, sigs))
			break;
	}
	wmask_release(&wm);	/* errno kept */
	return (int)r;
}

/* sigtimedwait as glibc's: SI_TKILL (raise) reported as SI_USER. */
EXPORT int sigtimedwait(const sigset_t *set, siginfo_t *info,
			const struct timespec *timeout)
{
	struct tstate *ts;
	struct timespec left;
	uint64_t deadline = 0;
	long r;

	if (before_block()) {
		errno = EINTR;
		return -1;
	}
	ts = tls_ts;
	if (ts)
		deadline = deadline_of(timeout);
	for (;;) {
		unsigned hits = ts ? ts->timer_hits : 0;
		unsigned sigs = ts ? ts->sig_hits : 0;

		r = lib_syscall_cancel(SYS_rt_sigtimedwait, set, info,
				       timeout, (size_t)(_NSIG / 8));
		if (!ours_alone(ts, r, hits, sigs))
			break;
		timeout = time_left(deadline, timeout, &left);
	}
	if (r > 0 && info && info->si_code == SI_TKILL)
		info->si_code = SI_USER;
	return (int)r;
}

EXPORT int sigwaitinfo(const sigset_t *set, siginfo_t *info)
{
	return sigtimedwait(set, info, NULL);
}

/* sigwait never ends with EINTR (glibc's runs again too). */
EXPORT int sigwait(const sigset_t *set, int *sig)
{
	long r;

	(void)before_block();
	do
		r = lib_syscall_cancel(SYS_rt_sigtimedwait, set, NULL, NULL,
				       (size_t)(_NSIG / 8));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno;
	*sig = (int)r;
	return 0;
}

EXPORT ssize_t msgrcv(int id, void *msg, size_t n, long type, int flags)
{
	struct tstate *ts;
	long r;

	if (!(flags & IPC_NOWAIT) && before_block()) {
		errno = EINTR;	/* never restarted after a handler */
		return -1;
	}
	ts = tls_ts;
	for (;;) {
		unsigned hits = ts ? ts->timer_hits : 0;
		unsigned sigs = ts ? ts->sig_hits : 0;

		r = lib_syscall_cancel(SYS_msgrcv, id, msg, n, type, flags);
		if (!ours_alone(ts, r, hits, sigs))
			return (ssize_t)r;
	}
}

EXPORT int msgsnd(int id, const void *msg, size_t n, int flags)
{
	struct tstate *ts;
	long r;

	if (!(flags & IPC_NOWAIT) && before_block()) {
		errno = EINTR;	/* never restarted after a handler */
		return -1;
	}
	ts = tls_ts;
	for (;;) {
		unsigned hits = ts ? ts->timer_hits : 0;
		unsigned sigs = ts ? ts->sig_hits : 0;

		r = lib_syscall_cancel(SYS_msgsnd, id, msg, n, flags);
		if (!ours_alone(ts, r, hits, sigs))
			return (int)r;
	}
}

EXPORT int semtimedop(int id, struct sembuf *ops, size_t n,
		      const struct timespec *timeout)
{
	struct tstate *ts;
	struct timespec left;
	uint64_t deadline = 0;
	long r;

	if (before_block()) {
		errno = EINTR;	/* never restarted after a handler */
		return -1;
	}
	ts = tls_ts;
	if (ts)
		deadline = deadline_of(timeout);
	for (;;) {
		unsigned hits = ts ? ts->timer_hits : 0;
		unsigned sigs = ts ? ts->sig_hits : 0;

		/* not a cancellation point in glibc's (2.36) */
		r = syscall(SYS_semtimedop, id, ops, n, timeout);
		if (!ours_alone(ts, r, hits, sigs))
			return (int)r;
		timeout = time_left(deadline, timeout, &left);
	}
}

EXPORT int semop(int id, struct sembuf *ops, size_t n)
{
	return semtimedop(id, ops, n, NULL);
}
