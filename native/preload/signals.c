/* SPDX-License-Identifier: MIT
 * signals.c - signals and the library: the stash of a signal handler's data
 * calls (stash_data, stash_run), the end of the process (lib_end_flush),
 * the fatal signals' handler, and the interposers that see the program end
 * itself or take a fatal signal: sigaction, signal, kill, killpg, raise,
 * tgkill, pthread_kill, sigqueue, abort (DESIGN.md, "Flush triggers",
 * "Contract: threads and fork"). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "defer.h"

HIDDEN int lib_fatal;
HIDDEN __thread int tls_in_handler __attribute__((tls_model("initial-exec")));

/* ---- a signal handler's data calls (DESIGN.md, "Contract: order") --------
 * A handler that runs while its thread is inside the library (the guard
 * held: the table half changed, a flush running) must not touch the table.
 * Its call on an fd with nothing queued goes straight to the kernel: in
 * order.  On an fd whose earlier bytes are queued, plain Linux would have
 * written those first; straight to the kernel would put the handler's
 * bytes ahead of them, and waiting for them is impossible (the thread is
 * the one that would run them).  So the call is held in the thread's stash
 * (16 calls, 4 KiB, in its tstate: no allocation in a handler) and returns
 * its full count, as a deferred call does; the thread runs the stash, after
 * that fd's entries, when it leaves the library (lib_leave).  Blocking
 * signals across every table change instead would cost two system calls
 * on the fast path.  A call that does not fit goes straight to the kernel
 * (counted as passed, "reentrant").
 *
 * Run, a stashed call is what the handler's call would have been outside
 * the library, and like it never waits for a peer on a non-blocking socket
 * (DESIGN.md, "Contract: parked sends"): it goes straight to the kernel
 * when nothing of its file is queued any more, else into the table behind
 * those entries (parked there if the socket is full).  What neither takes
 * (the socket full and the table full of entries behind parked ones) stays
 * in the stash, the calls stashed after it behind it, and is tried again
 * each time the thread leaves the library.  Its commonest case: a self-pipe
 * that the waiting thread itself drains (tests/trust, d05): waiting there,
 * as the stash did before, hung the program for good. */

#define STASH_FLAGS_OK (MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE)

ssize_t stash_data(struct tstate *ts, int call, int fd,
		   const struct iovec *iov, int iovcnt, int flags)
{
	struct fdinfo *fi = fdi(fd);
	struct stash_slot *sl;
	uint64_t res, want;
	size_t total = 0;
	uint32_t n, used;
	int key;

	if (!ts->table || !fi || lib_exiting)
		return -2;
	key = fi->order_key ? fi->order_key - 1 : fd;
	if (!esca_fd_pending(ts->table, fd) &&
	    (key == fd || !esca_fd_pending(ts->table, key)) &&
	    !__atomic_load_n(&ts->stash_res, __ATOMIC_ACQUIRE))
		return -2;	/* nothing of its file queued or stashed: in order */
	ts->calls[call].seen++;
	if ((flags & ~STASH_FLAGS_OK) || iovcnt < 0 || iovcnt > IOV_MAX ||
	    (iovcnt && !iov))
		goto pass;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > STASH_BYTES - total)
			goto pass;
		total += iov[i].iov_len;
	}
	/* take a slot and its bytes: a nested handler may take the next */
	res = __atomic_load_n(&ts->stash_res, __ATOMIC_ACQUIRE);
	do {
		n = (uint32_t)(res >> 32);
		used = (uint32_t)res;
		if (n >= STASH_SLOTS || used + total > STASH_BYTES)
			goto pass;
		want = ((uint64_t)(n + 1) << 32) | (used + total);
	} while (!__atomic_compare_exchange_n(&ts->stash_res, &res, want, 0,
					      __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE));
	sl = &ts->stash[n];
	sl->fd = fd;
	sl->call = call;
	sl->flags = flags;
	sl->off = used;
	sl->len = (uint32_t)total;
	for (int i = 0, o = (int)used; i < iovcnt; i++) {
		memcpy(ts->stash_buf + o, iov[i].iov_base, iov[i].iov_len);
		o += (int)iov[i].iov_len;
	}
	ts->calls[call].deferred++;
	return (ssize_t)total;
pass:
	ts->calls[call].passed[PASS_REENTRANT]++;
	return -2;
}

/* Is anything of sl's file still in the table? */
static int stash_fd_queued(struct tstate *ts, const struct stash_slot *sl)
{
	struct fdinfo *fi = fdi(sl->fd);
	int key = fi && fi->order_key ? fi->order_key - 1 : sl->fd;

	return ts->table && (esca_fd_pending(ts->table, sl->fd) ||
			     (key != sl->fd && esca_fd_pending(ts->table, key)));
}

/* sl's bytes to the kernel now; on a non-blocking socket a full one stops
 * it (what is left stays in sl).  1: done (an error kept for the fd's next
 * call, DESIGN.md, "Contract: errors"), 0: the socket is full. */
static int stash_write(struct tstate *ts, struct stash_slot *sl, int nonblock)
{
	struct fdinfo *fi = fdi(sl->fd);

	while (sl->len > 0) {
		const char *p = ts->stash_buf + sl->off;
		long r;

		if (sl->call == CALL_WRITE || sl->call == CALL_WRITEV)
			r = syscall(SYS_write, sl->fd, p, sl->len);
		else
			r = syscall(SYS_sendto, sl->fd, p, sl->len, sl->flags,
				    NULL, 0);
		if (r > 0) {
			sl->off += (uint32_t)r;
			sl->len -= (uint32_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pf = { .fd = sl->fd, .events = POLLOUT };

			if (nonblock)
				return 0;
			/* a blocking socket: the plain call would wait */
			if (syscall(SYS_ppoll, &pf, 1, NULL, NULL, 0) >= 0 ||
			    errno == EINTR)
				continue;
		}
		if (fi)
			__atomic_store_n(&fi->err, r < 0 ? errno : EIO,
					 __ATOMIC_RELAXED);
		return 1;
	}
	return 1;
}

/* sl's bytes into the table, behind its file's entries, as a deferred call
 * (counted deferred already, by stash_data).  1 if queued. */
static int stash_queue(struct tstate *ts, struct stash_slot *sl)
{
	struct fdinfo *fi = fdi(sl->fd);
	struct call_stats scratch = { 0 };
	struct iovec v = { ts->stash_buf + sl->off, sl->len };
	struct esca_args a;

	if (!ts->table || !fi || fi->kind != FK_STREAM || others_use(ts, fi) ||
	    lib_exiting)
		return 0;
	a = (struct esca_args){ .op = sl->call == CALL_WRITE ||
				      sl->call == CALL_WRITEV ?
				      ESCA_OP_WRITE : ESCA_OP_SEND,
				.fd = sl->fd, .iov = &v, .iovcnt = 1,
				.flags = sl->flags & ~MSG_DONTWAIT,
				.order = fi->order_key };
	return defer_queue(ts, &scratch, &a, sl->len) != PASSED;
}

/* One stashed call, after its file's entries.  1: done; 0: held (a
 * non-blocking socket that neither the kernel nor the table takes now). */
static int stash_one(struct tstate *ts, struct stash_slot *sl)
{
	struct fdinfo *fi = fdi(sl->fd);
	int nonblock = (sl->flags & MSG_DONTWAIT) ||
		       (fi && (fi->flags & FI_NONBLOCK));

	if (!nonblock) {	/* as before: its entries, then the call */
		lib_sync_fd(ts, sl->fd);
		return stash_write(ts, sl, 0);
	}
	if (!stash_fd_queued(ts, sl) && stash_write(ts, sl, 1))
		return 1;
	if (stash_queue(ts, sl))
		return 1;
	/* the table full: its flush may have run the file's entries */
	return !stash_fd_queued(ts, sl) && stash_write(ts, sl, 1);
}

/* The thread left the library (guard 0) with calls stashed: run them, in
 * the order they were made; handlers that run meanwhile stash behind.  A
 * call held (stash_one) stops the run: it and the calls after it stay, and
 * the next lib_leave goes on from it (ts->stash_done; slots are given back
 * when the stash is empty). */
void stash_run(struct tstate *ts)
{
	int saved = errno, held = 0;

	do {
		ts->guard++;
		for (;;) {
			uint64_t res = __atomic_load_n(&ts->stash_res,
						       __ATOMIC_ACQUIRE);
			uint32_t n = (uint32_t)(res >> 32), done;

			while (ts->stash_done < n) {
				if (!stash_one(ts, &ts->stash[ts->stash_done])) {
					held = 1;
					break;
				}
				ts->stash_done++;
			}
			if (held)
				break;
			/* a handler reads only stash_res, never stash_done */
			done = ts->stash_done;
			ts->stash_done = 0;
			if (__atomic_compare_exchange_n(&ts->stash_res, &res, 0,
							0, __ATOMIC_ACQ_REL,
							__ATOMIC_ACQUIRE))
				break;
			ts->stash_done = done;
		}
		ts->guard--;
	} while (!held && ts->guard == 0 &&
		 __atomic_load_n(&ts->stash_res, __ATOMIC_ACQUIRE));
	errno = saved;
}

/* ---- the end of the process ----------------------------------------------
 * Everything queued goes out: this thread's table (unless a signal found it
 * inside the library: the table may be half changed), every other thread's
 * (threads_drain_others), then the stats file. */
void lib_end_flush(int in_handler)
{
	struct tstate *ts = tls_ts;

	if (ts)
		ts->ending = 1;
	if (ts && ts->table && !ts->guard &&
	    (esca_table_pending(ts->table) ||
	     __atomic_load_n(&ts->stash_res, __ATOMIC_ACQUIRE)))
		lib_flush_drain(ts, ESCA_WHY_LIFECYCLE);
	threads_drain_others(in_handler);
	if (ts)
		ts->ending = 0;	/* an exec that failed: the program goes on */
	if (cfg.stats_path[0])
		stats_maybe_write(1);
}

/* ---- fatal signals -------------------------------------------------------
 * SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS end the process
 * where the program left them at their default: our handler (installed only
 * there) flushes, restores the default and raises the signal again, so the
 * process ends as it would have (the status, the core).  A program that
 * installs its own handler later replaces ours; sigaction() and signal()
 * report ours as SIG_DFL, and setting SIG_DFL puts ours back. */
static const int fatal_sigs[] = { SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL,
				  SIGTRAP, SIGSYS };

static int is_fatal(int sig)
{
	for (size_t i = 0; i < sizeof(fatal_sigs) / sizeof(fatal_sigs[0]); i++)
		if (fatal_sigs[i] == sig)
			return 1;
	return 0;
}

/* The other signals whose default action ends the process: sent by another
 * process (kill, a terminal's ^C), by the kernel (a timer's SIGALRM, a
 * write's SIGPIPE, a limit's SIGXCPU), or by the process to itself in ways
 * kill() and raise() do not cover (a signal it blocked, then unblocked;
 * pthread_sigqueue).  Where the program left one at its default, on_fatal
 * is its handler too: the process still ends by the signal, after its
 * bytes went out (the processes' audit: a SIGALRM at its default, a
 * SIGTERM unblocked, another process's SIGTERM each lost what was queued).
 * A handler of the program's runs through on_prog_signal, counted, as for
 * any other signal; sigaction() reports ours as SIG_DFL. */
static const int ending_sigs[] = { SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2,
				   SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT,
				   SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGIO,
				   SIGPWR };

static int is_ending(int sig)
{
	for (size_t i = 0; i < sizeof(ending_sigs) / sizeof(ending_sigs[0]);
	     i++)
		if (ending_sigs[i] == sig)
			return 1;
	return 0;
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
	struct sigaction dfl;
	int saved = errno;

	(void)si;
	(void)uc;
	tls_in_handler++;	/* it never returns to the program */
	if (!__atomic_exchange_n(&lib_fatal, 1, __ATOMIC_ACQ_REL))
		lib_end_flush(1);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	real.sigaction(sig, &dfl, NULL);
	/* blocked while this handler runs: delivered, with the default
	 * action, as it returns (a fault's own signal, or a raise's) */
	syscall(SYS_tgkill, (int)getpid(), (int)syscall(SYS_gettid), sig);
	errno = saved;
}

static void fatal_action(struct sigaction *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sa_sigaction = on_fatal;
	sa->sa_flags = SA_SIGINFO;
	sigemptyset(&sa->sa_mask);
}

static int is_ours(const struct sigaction *sa)
{
	return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_fatal;
}

void signals_init(void)
{
	struct sigaction cur, mine;

	if (cfg.disabled)
		return;
	fatal_action(&mine);
	for (size_t i = 0; i < sizeof(fatal_sigs) / sizeof(fatal_sigs[0]); i++) {
		if (real.sigaction(fatal_sigs[i], NULL, &cur) == 0 &&
		    !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL)
			real.sigaction(fatal_sigs[i], &mine, NULL);
	}
	for (size_t i = 0; i < sizeof(ending_sigs) / sizeof(ending_sigs[0]);
	     i++) {
		if (ending_sigs[i] == cfg.timer_signal)
			continue;
		if (real.sigaction(ending_sigs[i], NULL, &cur) == 0 &&
		    !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL)
			real.sigaction(ending_sigs[i], &mine, NULL);
	}
}

/* ---- the program's handlers, seen to run (DESIGN.md, "Flush triggers") ---
 * A wait of the library's may be several kernel entries (parked sends move
 * between them); a program's signal that arrives between two runs its
 * handler where no wait sees it, and plain Linux's wait would have returned
 * EINTR.  So each handler the program installs runs through on_prog_signal,
 * which counts it on the thread (tstate.sig_hits: a wait that would run
 * again returns EINTR instead).  sigaction() reports the program's own
 * handler back.  Not the fatal signals (above), nor the timer signal. */
static void (*prog_plain[NSIG])(int);
static void (*prog_info[NSIG])(int, siginfo_t *, void *);
static char prog_reset[NSIG];	/* installed with SA_RESETHAND */

static void on_prog_signal(int sig, siginfo_t *si, void *uc)
{
	struct tstate *ts = tls_ts;
	void (*info)(int, siginfo_t *, void *) =
		__atomic_load_n(&prog_info[sig], __ATOMIC_ACQUIRE);
	void (*plain)(int) = __atomic_load_n(&prog_plain[sig], __ATOMIC_ACQUIRE);

	if (ts)
		ts->sig_hits++;
	if (prog_reset[sig] && is_ending(sig)) {
		/* the kernel put the default back as it delivered the signal
		 * (SA_RESETHAND): ours again, which flushes first (the
		 * processes' audit: the next SIGTERM lost the bytes) */
		struct sigaction mine;

		fatal_action(&mine);
		real.sigaction(sig, &mine, NULL);
	}
	/* a handler's call may be its thread's first: its table is made
	 * there without malloc, the watchdog thread started later, outside
	 * (thread.c, watchdog_ensure).  A handler left by siglongjmp leaves
	 * the count up: that thread then never starts the watchdog (another
	 * thread, or a later flush, does) */
	tls_in_handler++;
	if (info)
		info(sig, si, uc);
	else if (plain)
		plain(sig);
	tls_in_handler--;
}

static int is_prog_tramp(const struct sigaction *sa)
{
	return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_prog_signal;
}

static int sigaction_counted(int sig, const struct sigaction *act,
			     struct sigaction *old)
{
	void (*was_plain)(int) = prog_plain[sig];
	void (*was_info)(int, siginfo_t *, void *) = prog_info[sig];
	struct sigaction mine, prev;
	int r;

	if (act && ((act->sa_flags & SA_SIGINFO) ?
		    act->sa_sigaction != NULL && act->sa_sigaction != on_fatal :
		    act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN)) {
		prog_reset[sig] = (act->sa_flags & SA_RESETHAND) != 0;
		/* the new one first, then the other cleared: a signal
		 * meanwhile runs one of the two */
		if (act->sa_flags & SA_SIGINFO) {
			__atomic_store_n(&prog_info[sig], act->sa_sigaction,
					 __ATOMIC_RELEASE);
		} else {
			__atomic_store_n(&prog_plain[sig], act->sa_handler,
					 __ATOMIC_RELEASE);
			__atomic_store_n(&prog_info[sig], NULL, __ATOMIC_RELEASE);
		}
		mine = *act;
		mine.sa_sigaction = on_prog_signal;
		mine.sa_flags |= SA_SIGINFO;
		act = &mine;
	}
	r = real.sigaction(sig, act, &prev);
	if (r < 0) {
		prog_plain[sig] = was_plain;
		prog_info[sig] = was_info;
		return r;
	}
	if (old) {
		*old = prev;
		if (is_prog_tramp(&prev)) {
			if (was_info) {
				old->sa_sigaction = was_info;
			} else {
				old->sa_flags &= ~SA_SIGINFO;
				old->sa_handler = was_plain;
			}
		}
	}
	return 0;
}

/* The program set a disposition of the timer signal (ESCA_TIMER_SIGNAL):
 * the library does not block it in the program's waits (wmask). */
HIDDEN int timer_signal_taken;

/* A signal of ending_sigs: the program's handler counted, its SIG_DFL
 * ours (on_fatal), reported back as SIG_DFL. */
static int sigaction_ending(int sig, const struct sigaction *act,
			    struct sigaction *old)
{
	struct sigaction mine;
	int r;

	if (act && !(act->sa_flags & SA_SIGINFO) &&
	    act->sa_handler == SIG_DFL) {
		fatal_action(&mine);	/* the default, flushing first */
		act = &mine;
	}
	r = sigaction_counted(sig, act, old);
	if (r == 0 && old && is_ours(old)) {
		memset(old, 0, sizeof(*old));
		old->sa_handler = SIG_DFL;
		sigemptyset(&old->sa_mask);
	}
	return r;
}

EXPORT int sigaction(int sig, const struct sigaction *act,
		     struct sigaction *old)
{
	struct sigaction mine, prev;
	int r;

	if (unlikely(!lib_ready))
		esca_lib_init();
	if (!cfg.disabled && sig > 0 && sig < NSIG && is_ending(sig) &&
	    sig != cfg.timer_signal)
		return sigaction_ending(sig, act, old);
	if (!cfg.disabled && sig > 0 && sig < NSIG && !is_fatal(sig) &&
	    sig != cfg.timer_signal)
		return sigaction_counted(sig, act, old);
	if (act && sig == cfg.timer_signal)
		/* the program's now: its waits' masks keep it (wmask) */
		__atomic_store_n(&timer_signal_taken, 1, __ATOMIC_RELEASE);
	if (cfg.disabled || !is_fatal(sig))
		return real.sigaction(sig, act, old);
	if (act && !(act->sa_flags & SA_SIGINFO) &&
	    act->sa_handler == SIG_DFL) {
		fatal_action(&mine);	/* the default, flushing first */
		act = &mine;
	}
	r = real.sigaction(sig, act, &prev);
	if (r == 0 && old) {
		if (is_ours(&prev)) {
			memset(&prev, 0, sizeof(prev));
			prev.sa_handler = SIG_DFL;
			sigemptyset(&prev.sa_mask);
		}
		*old = prev;
	}
	return r;
}

/* The handler an old disposition names, as the signal() family answers */
static sighandler_t old_handler(const struct sigaction *old)
{
	if (old->sa_flags & SA_SIGINFO)	/* (void (*)(void)): any function */
		return (sighandler_t)(void (*)(void))old->sa_sigaction;
	return old->sa_handler;
}

/* h for sig through sigaction() (counted, the library's default kept),
 * with flags; sig itself masked in the handler unless SA_NODEFER.  The
 * old handler, or SIG_ERR. */
static sighandler_t install(int sig, sighandler_t h, int flags)
{
	struct sigaction sa, old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = h;
	sigemptyset(&sa.sa_mask);
	if (!(flags & SA_NODEFER) && sig > 0 && sig < NSIG)
		sigaddset(&sa.sa_mask, sig);
	sa.sa_flags = flags;
	if (sigaction(sig, &sa, &old) < 0)
		return SIG_ERR;
	return old_handler(&old);
}

/* glibc's signal(): BSD semantics (the handler stays, calls restart) */
EXPORT sighandler_t signal(int sig, sighandler_t h)
{
	return install(sig, h, SA_RESTART);
}

EXPORT sighandler_t bsd_signal(int sig, sighandler_t h)
{
	return signal(sig, h);
}

/* ssignal is glibc's other name of signal (an alias inside glibc, where
 * interposing signal does not reach it) */
EXPORT sighandler_t ssignal(int sig, sighandler_t h)
{
	return signal(sig, h);
}

/* The other installers glibc has call its sigaction from inside, where no
 * interposer sees them: a handler they installed ran uncounted, and a wait
 * of several rounds went on after it (the wait audit; wait_audit.c's
 * nanosleep_busy with sigset).  Each is glibc's, through sigaction(). */

/* System V's signal (signal() under _XOPEN_SOURCE alone is this): the
 * handler runs once, unmasked, calls are not restarted */
static sighandler_t sysv_install(int sig, sighandler_t h)
{
	if (h == SIG_ERR || sig < 1 || sig >= NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	return install(sig, h, SA_RESETHAND | SA_NODEFER);
}

EXPORT sighandler_t sysv_signal(int sig, sighandler_t h)
{
	return sysv_install(sig, h);
}

EXPORT sighandler_t __sysv_signal(int sig, sighandler_t h)
{
	return sysv_install(sig, h);
}

/* sigset(sig, h): h installed with no mask and no flags, sig unblocked;
 * SIG_HOLD blocks sig and keeps the handler.  SIG_HOLD back when sig was
 * blocked before, else the old handler. */
EXPORT sighandler_t sigset(int sig, sighandler_t h)
{
	struct sigaction sa, old;
	sigset_t one, was;

	if (h == SIG_ERR || sig < 1 || sig >= NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	sigemptyset(&one);
	sigaddset(&one, sig);
	if (h == SIG_HOLD) {
		if (pthread_sigmask(SIG_BLOCK, &one, &was)) {
			errno = EINVAL;
			return SIG_ERR;
		}
		if (sigismember(&was, sig))
			return SIG_HOLD;
		if (sigaction(sig, NULL, &old) < 0)
			return SIG_ERR;
	} else {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = h;
		sigemptyset(&sa.sa_mask);
		if (sigaction(sig, &sa, &old) < 0)
			return SIG_ERR;
		if (pthread_sigmask(SIG_UNBLOCK, &one, &was)) {
			errno = EINVAL;
			return SIG_ERR;
		}
		if (sigismember(&was, sig))
			return SIG_HOLD;
	}
	return old_handler(&old);
}

/* ---- the thread's signal mask ---------------------------------------------
 * A thread whose mask blocks the timer signal defers nothing (defer.h,
 * defer_begin: tls_timer_blocked): the signal is what moves its entries
 * when it waits where no interposer sees it (a condvar, a semaphore).  The
 * mask is read at the thread's start (a new thread has its creator's) and
 * followed through sigprocmask and pthread_sigmask; blocking the signal
 * flushes what the thread queued.  The library's own mask changes are raw
 * rt_sigprocmask calls (wmask), which this does not see, as meant. */
HIDDEN __thread int tls_timer_blocked __attribute__((tls_model("initial-exec")));

void timer_mask_read(void)
{
	sigset_t m;

	if (cfg.disabled ||
	    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m, (size_t)(_NSIG / 8)))
		return;
	tls_timer_blocked = sigismember(&m, cfg.timer_signal) == 1;
}

static void timer_mask_changed(int how, const sigset_t *set,
			       const sigset_t *was)
{
	int sig = cfg.timer_signal, now;
	struct tstate *ts;

	if (cfg.disabled || !set)
		return;	/* a question only */
	if (how == SIG_BLOCK)
		now = sigismember(was, sig) == 1 || sigismember(set, sig) == 1;
	else if (how == SIG_UNBLOCK)
		now = sigismember(was, sig) == 1 && sigismember(set, sig) != 1;
	else
		now = sigismember(set, sig) == 1;
	if (now && !tls_timer_blocked && (ts = tls_ts) && !ts->guard &&
	    ts->table && esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
	tls_timer_blocked = now;
}

/* pthread_sigmask and sigprocmask: glibc's, then the timer signal's state */
static int mask_call(int (*fn)(int, const sigset_t *, sigset_t *), int how,
		     const sigset_t *set, sigset_t *old)
{
	sigset_t was;
	int r = fn(how, set, &was);

	if (r == 0) {
		if (old)
			*old = was;
		timer_mask_changed(how, set, &was);
	}
	return r;
}

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return mask_call(real.pthread_sigmask, how, set, old);
}

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return mask_call(real.sigprocmask, how, set, old);
}

/* ---- the program signalling itself ----------------------------------------
 * A signal the process sends itself that ends or stops it where no handler
 * of ours runs first (SIGKILL and SIGSTOP, which none can catch; any other
 * at its default action, which ends the process, SIGTERM say) must find
 * the bytes out already: plain Linux wrote them when the calls were made. */
static int ends_us(int sig)
{
	struct sigaction sa;

	if (sig <= 0 || sig >= NSIG || cfg.disabled || lib_fatal)
		return 0;
	if (sig == SIGKILL || sig == SIGSTOP)
		return 1;
	if (sig == SIGCHLD || sig == SIGCONT || sig == SIGURG ||
	    sig == SIGWINCH)
		return 0;	/* ignored by default */
	if (real.sigaction(sig, NULL, &sa) < 0)
		return 0;
	return is_ours(&sa) ||	/* on_fatal: the default, flushing */
	       (!(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_DFL);
}

static void before_self_signal(int sig)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	if (ends_us(sig))
		lib_end_flush(0);
}

EXPORT int kill(pid_t pid, int sig)
{
	if (pid == 0 || pid == getpid() || (pid < -1 && -pid == getpgrp()))
		before_self_signal(sig);
	return real.kill(pid, sig);
}

EXPORT int killpg(pid_t pg, int sig)
{
	if (pg == 0 || pg == getpgrp())
		before_self_signal(sig);
	return real.killpg(pg, sig);
}

EXPORT int raise(int sig)
{
	before_self_signal(sig);
	return real.raise(sig);
}

EXPORT int tgkill(pid_t tgid, pid_t tid, int sig)
{
	if (tgid == getpid())
		before_self_signal(sig);
	if (!real.tgkill)
		return (int)syscall(SYS_tgkill, tgid, tid, sig);
	return real.tgkill(tgid, tid, sig);
}

EXPORT int pthread_kill(pthread_t th, int sig)
{
	before_self_signal(sig);
	return real.pthread_kill(th, sig);
}

EXPORT int sigqueue(pid_t pid, int sig, const union sigval v)
{
	if (pid == 0 || pid == getpid())
		before_self_signal(sig);
	return real.sigqueue(pid, sig, v);
}

/* abort() ends the process with SIGABRT even past a handler of the
 * program's that returns: flush first, whatever SIGABRT's disposition. */
EXPORT void abort(void)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	if (!cfg.disabled &&
	    !__atomic_exchange_n(&lib_fatal, 1, __ATOMIC_ACQ_REL)) {
		lib_end_flush(0);
		__atomic_store_n(&lib_fatal, 0, __ATOMIC_RELEASE);
	}
	real.abort();
	__builtin_unreachable();
}
