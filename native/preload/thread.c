/* SPDX-License-Identifier: MIT
 * thread.c - per-thread state: tstate_create() (a thread's first interposed
 * call makes its table), its end, the time bound (a kernel timer per
 * thread; the watchdog thread only where one cannot be made), its signal,
 * threads_sum() for the stats, and what fork does to them (thread_atfork_*). */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

HIDDEN __thread struct tstate *tls_ts
	__attribute__((tls_model("initial-exec")));
static __thread int tls_creating __attribute__((tls_model("initial-exec")));
/* The thread's state was destroyed (its end): never made again, its calls
 * pass through.  A signal handler that runs after the key's destructor
 * (glibc blocks signals only at the very end of a thread) would otherwise
 * make a new table (in a handler) whose entries nobody flushes, and
 * whose dead owner other threads wait for (fd_wait_others). */
static __thread int tls_ended __attribute__((tls_model("initial-exec")));

static pthread_key_t ts_key;
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tstate *threads;		/* every live thread's state */
static struct tstate dead;		/* counters of threads that ended */
HIDDEN int lib_draining;
static int threads_total;
static int warned_fallback;
HIDDEN char fallback_reason[128];
HIDDEN int table_executor = -1;		/* the executor tables really got */

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the time bound (DESIGN.md, "Flush triggers") ------------------------
 * A thread that queued calls and then blocks somewhere the library does not
 * see (a futex, a join, a long computation) must not hold its bytes.  Each
 * thread with a table has a one-shot kernel timer (timer_create,
 * SIGEV_THREAD_ID) that sends it the timer signal ESCA_FLUSH_US after it
 * was armed; it is armed when the thread queues a call (or leaves a wait
 * with entries pending) and is not running, so no entry waits longer than
 * one shot, and it costs a busy thread at most one timer_settime and one
 * signal a period, an idle one nothing, and a deferred call no clock read.
 * The handler flushes what the thread holds unless the thread is inside
 * the library (then the library flushes on its way out, at the next call),
 * and runs the timer again while entries are left outside a wait.
 * No second thread: a thread of the library's would make the process
 * multi-threaded, which costs every system call on a fd (the kernel counts
 * references on a shared fd table) and glibc's locks; measured on nginx,
 * server CPU per request +6.6% (docs/DESIGN.md, "Known traps").  Where a
 * thread cannot have a timer (timer_create failed: RLIMIT_SIGPENDING), the
 * watchdog thread looks after it every ESCA_WATCHDOG_MS instead (its
 * calls stamp their batch: note_queued_clock). */
static int watchdog_started;
static int watchdog_wanted;	/* a thread has no timer */
static int timer_handler_installed;
static void start_watchdog(void);

/* The timer's one shot, ESCA_FLUSH_US from now (also inside the
 * handler: timer_settime is async-signal-safe). */
void timer_arm(struct tstate *ts)
{
	struct itimerspec it = {
		.it_value = { (time_t)(cfg.timer_ns / 1000000000ull),
			      (long)(cfg.timer_ns % 1000000000ull) },
	};

	if (!ts->has_timer)
		return;
	if (syscall(SYS_timer_settime, ts->timer_id, 0, &it, NULL) == 0)
		ts->timer_set = 1;
}

/* The thread's timer, on its first table: its signal to this thread. */
static void timer_make(struct tstate *ts)
{
	struct sigevent ev;
	int id = -1;

	ts->timer_set = 1;
	if (!cfg.watchdog_ns ||
	    !__atomic_load_n(&timer_handler_installed, __ATOMIC_ACQUIRE))
		return;
	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = SIGEV_THREAD_ID;
	ev.sigev_signo = cfg.timer_signal;
	ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	if (cfg.watchdog_thread ||
	    syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &id) < 0) {
		start_watchdog();	/* it looks after this thread */
		return;
	}
	ts->timer_id = id;
	ts->has_timer = 1;
	ts->timer_set = 0;
}

/* The thread blocks with no entry pending, where the kernel may not restart
 * the call after a signal: its timer stops, so that no signal of the
 * library's ends the call (an armed timer outlives the entries it was
 * armed for). */
void timer_quiet(struct tstate *ts)
{
	struct itimerspec off = { { 0, 0 }, { 0, 0 } };

	if (!ts->has_timer || !ts->timer_set)
		return;
	if (syscall(SYS_timer_settime, ts->timer_id, 0, &off, NULL) == 0)
		ts->timer_set = 0;
}

/* Will the timer signal come to ts while it holds entries: its timer, or
 * the watchdog thread? */
int time_bound_runs(struct tstate *ts)
{
	return ts->has_timer ||
	       __atomic_load_n(&watchdog_started, __ATOMIC_ACQUIRE);
}

static void timer_delete_of(struct tstate *ts)
{
	if (!ts->has_timer)
		return;
	ts->has_timer = 0;
	ts->timer_set = 1;
	(void)syscall(SYS_timer_delete, ts->timer_id);
}

static void on_timer_signal(int sig, siginfo_t *si, void *uc)
{
	struct tstate *ts = tls_ts;
	int saved = errno;

	(void)sig;
	(void)uc;
	if (ts && si && si->si_code == SI_TIMER && ts->has_timer)
		ts->timer_set = 0;	/* its one shot is spent */
	if (ts)
		ts->timer_hits++;	/* an EINTR of ours, not the program's */
	if (ts && ts->table && !ts->guard) {
		/* at the end of the process (threads_drain_others) the
		 * thread's bytes must all be out, parked ones included; not
		 * the exiting thread's own (its drain is bounded: a send
		 * parked on its own full self-pipe waited for good,
		 * tests/trust/test_found_exit_own_timer.py) */
		int end = __atomic_load_n(&lib_draining, __ATOMIC_ACQUIRE) > 0 &&
			  !ts->ending;

		ts->guard++;
		/* the timer's shot (not another thread's nudge: fork,
		 * fd_wait_others) with calls queued the whole bound: the
		 * thread reached no trigger (lever adapt: adapt_shot) */
		if (!end && si && si->si_code == SI_TIMER &&
		    esca_table_pending(ts->table) !=
			    esca_table_inflight(ts->table))
			adapt_shot(ts);
		/* never blocking: the thread may hold a lock the socket's
		 * reader needs (ESCA_FLUSH_TRY) */
		if (esca_table_pending(ts->table))
			esca_flush(ts->table, end ? ESCA_FLUSH_WAIT :
				   ESCA_FLUSH_TRY, end ? ESCA_WHY_LIFECYCLE :
				   ESCA_WHY_TIMER);
		lib_leave(ts);	/* and what a handler stashed */
		note_pending(ts, esca_table_pending(ts->table) != 0);
	}
	/* entries left (parked sends, or queued inside the library): the
	 * timer again, unless the thread is in a wait that watches them
	 * (it arms the timer on its way out: wait_end) */
	if (ts && ts->table && !ts->timer_set && !ts->in_wait &&
	    esca_table_pending(ts->table))
		timer_arm(ts);
	if (ts)
		ts->signaled = 0;
	errno = saved;
}

static void *watchdog(void *arg)
{
	struct timespec period = { (time_t)(cfg.watchdog_ns / 1000000000ull),
				   (long)(cfg.watchdog_ns % 1000000000ull) };

	(void)arg;
	for (;;) {
		uint64_t now;

		syscall(SYS_nanosleep, &period, NULL);
		now = now_ns();
		pthread_mutex_lock(&list_lock);
		for (struct tstate *ts = threads; ts; ts = ts->next) {
			uint64_t old = ts->oldest_ns;

			if (old && now - old > cfg.flush_ns && !ts->in_wait &&
			    !ts->signaled && !ts->has_timer) {
				ts->signaled = 1;
				real.pthread_kill(ts->tid, cfg.timer_signal);
			}
		}
		pthread_mutex_unlock(&list_lock);
	}
	return NULL;
}

/* Is the thread whose progress fd is pfd in a wait that watches it?  Asked
 * when another thread's wait took that fd's event from a shared epoll set
 * (wait.c); a rare path: the list's lock. */
int thread_pfd_waiting(struct tstate *self, int pfd)
{
	int r = 0;

	pthread_mutex_lock(&list_lock);
	for (struct tstate *ts = threads; ts; ts = ts->next) {
		if (ts != self && ts->table && ts->pfd == pfd) {
			r = __atomic_load_n(&ts->in_wait, __ATOMIC_ACQUIRE);
			break;
		}
	}
	pthread_mutex_unlock(&list_lock);
	return r;
}

/* The timer signal's handler is ours (the program did not take the signal
 * since): it may be sent. */
int timer_handler_ours(void)
{
	struct sigaction sa;

	return real.sigaction(cfg.timer_signal, NULL, &sa) == 0 &&
	       (sa.sa_flags & SA_SIGINFO) && sa.sa_sigaction == on_timer_signal;
}

/* The timer signal's handler (for the watchdog, for the end of the
 * process: threads_drain_others, and for fd_wait_others' nudge), set on a
 * thread's first table even inside a signal handler (sigaction is
 * async-signal-safe; a timer signal sent before it would kill the process).
 * With the watchdog off, it is installed only where the program left the
 * signal alone. */
static int timer_handler_set;		/* done (installed or left alone) */

static void set_timer_handler(void)
{
	struct sigaction sa;

	if (__atomic_exchange_n(&timer_handler_set, 1, __ATOMIC_ACQ_REL))
		return;
	if (!cfg.watchdog_ns &&
	    (real.sigaction(cfg.timer_signal, NULL, &sa) < 0 ||
	     sa.sa_handler != SIG_DFL))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_timer_signal;
	sa.sa_flags = SA_RESTART | SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (real.sigaction(cfg.timer_signal, &sa, NULL) == 0)
		__atomic_store_n(&timer_handler_installed, 1, __ATOMIC_RELEASE);
}

/* The watchdog thread, for the threads that have no timer (timer_make
 * failed): never from inside a signal handler (pthread_create mallocs, and
 * the handler may have interrupted malloc); then the next flush outside
 * one starts it (watchdog_ensure). */
static void start_watchdog(void)
{
	pthread_attr_t at;
	pthread_t th;
	sigset_t all, old;

	__atomic_store_n(&watchdog_wanted, 1, __ATOMIC_RELEASE);
	if (!cfg.watchdog_ns || tls_in_handler ||
	    !__atomic_load_n(&timer_handler_installed, __ATOMIC_ACQUIRE) ||
	    __atomic_exchange_n(&watchdog_started, 1, __ATOMIC_ACQ_REL))
		return;
	/* the watchdog itself takes no signals */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 64 * 1024);
	if (real.pthread_create(&th, &at, watchdog, NULL) != 0)
		say("no watchdog thread: a blocked thread may hold its bytes");
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* After a flush: the watchdog, if a thread without a timer wants it and a
 * signal handler left it unstarted.  A load and a test. */
void watchdog_ensure(void)
{
	if (unlikely(__atomic_load_n(&watchdog_wanted, __ATOMIC_ACQUIRE) &&
		     !__atomic_load_n(&watchdog_started, __ATOMIC_ACQUIRE)) &&
	    !tls_in_handler)
		start_watchdog();
}

/* ---- the end of the process: every thread's bytes (DESIGN.md, "Contract:
 * threads and fork") -------------------------------------------------------
 * exit, the return from main, exec, _exit, a fatal signal: other threads may
 * hold queued entries, and may be running.  Their tables are theirs alone (an
 * io_uring of SINGLE_ISSUER takes no other task's submissions, and a table
 * is changed without a lock), so the exiting thread asks each to flush: the
 * timer signal, whose handler, while lib_draining is set, flushes and waits
 * for all (parked sends included), or, where the signal found the thread
 * inside the library, the thread flushes on its way out and is signalled
 * again.  It waits, looking every 2 ms, while some peer makes progress (a
 * thread finished, or the peer of a socket some table still names read:
 * peers_progress), and gives up after DRAIN_NS without any, as the exiting thread's
 * own drain does (lib_flush_drain): a thread that blocks the signal, or
 * whose peer never reads, does not hold the exit; a slow peer gets it all. */
#define DRAIN_NS 1000000000ull
/* It gave up once: a later call only nudges.  The end runs it twice (the
 * exit path, then the library's destructor): each waited its second, and
 * memcached stopped 2 s after plain with a client not reading (session
 * 18's audit; tests/preload/test_exit_drain.py).  Its own latch, not the
 * exiting thread's own drain's (lib_flush_drain): that one's stuck peer
 * must not cut short the other threads' peers that still read. */
static int others_gave_up;

/* An exec failed: the program goes on, and its later end drains anew (both
 * latches: this one and lib_flush_drain's, flush.c). */
void threads_drain_again(void)
{
	__atomic_store_n(&others_gave_up, 0, __ATOMIC_RELEASE);
	lib_drain_again();
}

void threads_drain_others(int in_handler)
{
	struct tstate *self = tls_ts;
	struct timespec nap = { 0, 2000000 };
	uint64_t since, outq;
	int last = -1;

	if (!timer_handler_ours())
		return;
	__atomic_add_fetch(&lib_draining, 1, __ATOMIC_ACQ_REL);
	since = now_ns();
	outq = peers_progress(NULL);
	for (;;) {
		int left = 0;
		uint64_t o;

		/* in a fatal signal's handler the thread may hold the lock */
		if (in_handler ? pthread_mutex_trylock(&list_lock) :
				 pthread_mutex_lock(&list_lock))
			break;
		for (struct tstate *ts = threads; ts; ts = ts->next) {
			if (ts == self ||
			    !__atomic_load_n(&ts->oldest_ns, __ATOMIC_ACQUIRE))
				continue;
			left++;
			real.pthread_kill(ts->tid, cfg.timer_signal);
		}
		pthread_mutex_unlock(&list_lock);
		if (!left || __atomic_load_n(&others_gave_up, __ATOMIC_ACQUIRE))
			break;
		o = peers_progress(NULL);
		if (o != outq || left != last) {
			since = now_ns();
			outq = o;
			last = left;
		} else if (now_ns() - since >= DRAIN_NS) {
			__atomic_store_n(&others_gave_up, 1, __ATOMIC_RELEASE);
			break;
		}
		syscall(SYS_nanosleep, &nap, NULL);
	}
	__atomic_sub_fetch(&lib_draining, 1, __ATOMIC_ACQ_REL);
}

/* fork and the spawns (DESIGN.md, "Contract: threads and fork"): what the
 * other threads queued goes to the kernel before the child exists, as on
 * Linux their calls had (the processes' audit: a thread's "T1." written
 * before main forked reached the peer after the child's "C.", 20 runs of
 * 20).  Each thread with entries queued is sent the timer signal, whose
 * handler flushes without blocking (parked sends stay in flight, its
 * own); the caller waits until each handler ran, at most HANDOVER_NS (a
 * thread that blocks the signal, or that is inside the library, which
 * flushes on its way out, does not hold the fork up longer). */
#define HANDOVER_NS 50000000ull

void threads_hand_over(void)
{
	struct tstate *self = tls_ts;
	struct timespec nap = { 0, 500000 };
	unsigned seen[64];
	const struct tstate *who[64];
	int n = 0, left;
	uint64_t since;

	if (!timer_handler_ours() || pthread_mutex_lock(&list_lock))
		return;
	for (struct tstate *ts = threads; ts && n < 64; ts = ts->next) {
		if (ts == self || ts->dead ||
		    !__atomic_load_n(&ts->oldest_ns, __ATOMIC_ACQUIRE))
			continue;	/* nothing queued */
		seen[n] = __atomic_load_n(&ts->timer_hits, __ATOMIC_ACQUIRE);
		who[n++] = ts;
		real.pthread_kill(ts->tid, cfg.timer_signal);
	}
	pthread_mutex_unlock(&list_lock);
	since = now_ns();
	while (n && now_ns() - since < HANDOVER_NS) {
		syscall(SYS_nanosleep, &nap, NULL);
		if (pthread_mutex_lock(&list_lock))
			return;
		left = 0;
		for (struct tstate *ts = threads; ts; ts = ts->next)
			for (int i = 0; i < n; i++)
				if (who[i] == ts && !ts->dead &&
				    __atomic_load_n(&ts->timer_hits,
						    __ATOMIC_ACQUIRE) == seen[i])
					left++;
		pthread_mutex_unlock(&list_lock);
		if (!left)
			break;
	}
}

/* A thread's state is made on its first deferred call, which may be a
 * signal handler's that interrupted malloc (a self-pipe handler's write in
 * a thread new to the library: the threaded fuzz's hang, the handler
 * blocked on the malloc lock its thread held): mmap, never malloc, as the
 * core does for the table (native/core/internal.h, esca__zalloc). */
struct tstate *ts_alloc(void)
{
	struct tstate *ts = mmap(NULL, sizeof(struct tstate),
				 PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (ts == MAP_FAILED)
		return NULL;
	ts->timer_set = 1;	/* no timer to arm (timer_make) */
	return ts;
}

void ts_free(struct tstate *ts)
{
	free(ts->pbuf);
	free(ts->owed);
	prefetch_free(ts);
	(void)munmap(ts, sizeof(*ts));
}

/* ts joins the list of live threads (its own, or the heir's: heir.c), so
 * that the end of the process waits for its entries and the stats count
 * them. */
void thread_add(struct tstate *ts)
{
	pthread_mutex_lock(&list_lock);
	ts->next = threads;
	threads = ts;
	threads_total++;
	pthread_mutex_unlock(&list_lock);
}

/* First interposed call on a thread: make its table. */
struct tstate *tstate_create(void)
{
	struct esca_config c = { 0 };
	struct tstate *ts;
	int err = 0, no_number = 0;	/* the executor is there, no fd
					 * number is (EMFILE, ENFILE) */

	if (!__atomic_load_n(&lib_ready, __ATOMIC_ACQUIRE))
		esca_lib_init();
	if (cfg.disabled || tls_creating || tls_ended)
		return NULL;
	tls_creating = 1;
	ts = ts_alloc();
	if (!ts)
		goto out;
	c.executor = cfg.executor;
	c.capacity = cfg.capacity;
	c.byte_budget = cfg.budget;
	c.complete = fd_on_complete;
	c.ctx = ts;
	if (cfg.levers & LEVER_SENDFILE)
		c.flags |= ESCA_CFG_SENDFILE_DIRECT;
	if (cfg.levers & LEVER_FOLD)
		c.flags |= ESCA_CFG_FOLD_WAIT;
	ts->table = esca_table_new(&c, &err);
	if (!ts->table && cfg.executor != ESCA_EXEC_SEQUENTIAL) {
		no_number = err == -EMFILE || err == -ENFILE;
		/* DESIGN.md, "Contract: fallback": say so once, use
		 * sequential.  Not when the program holds every fd number
		 * (EMFILE, ENFILE: the ring's fd, made for a moment): the
		 * executor is there, this thread alone goes without it, and
		 * plain Linux would have said nothing */
		if (err != -EMFILE && err != -ENFILE &&
		    !__atomic_exchange_n(&warned_fallback, 1, __ATOMIC_RELAXED)) {
			snprintf(fallback_reason, sizeof(fallback_reason),
				 "%s executor unavailable (%s)",
				 esca_executor_name(cfg.executor), strerror(-err));
			char m[200];

			snprintf(m, sizeof(m), "%s; using sequential",
				 fallback_reason);
			say(m);
		}
		c.executor = ESCA_EXEC_SEQUENTIAL;
		ts->table = esca_table_new(&c, &err);
	}
	if (!ts->table) {
		ts_free(ts);
		ts = NULL;
		goto out;
	}
	/* auto says no why: where another thread's table got more, this
	 * one's sequential is its want of a number too */
	if (cfg.executor == ESCA_EXEC_AUTO &&
	    esca_table_executor(ts->table) == ESCA_EXEC_SEQUENTIAL &&
	    table_executor >= 0 && table_executor != ESCA_EXEC_SEQUENTIAL)
		no_number = 1;
	if (cfg.executor == ESCA_EXEC_AUTO && !no_number &&
	    esca_table_executor(ts->table) == ESCA_EXEC_SEQUENTIAL &&
	    !__atomic_exchange_n(&warned_fallback, 1, __ATOMIC_RELAXED)) {
		snprintf(fallback_reason, sizeof(fallback_reason),
			 "io_uring unavailable; auto chose sequential");
		say(fallback_reason);
	}
	/* what the process's tables got (the stats', an heir's): not this
	 * thread's fallback for want of a number, when another got more */
	if (!no_number || table_executor < 0)
		table_executor = esca_table_executor(ts->table);
	ts->tid = pthread_self();
	ts->pfd = -1;
	ts->wait_token = ((uint64_t)(uint32_t)syscall(SYS_gettid) << 32) | 1;
	set_timer_handler();
	timer_make(ts);
	thread_add(ts);
	pthread_setspecific(ts_key, ts);
	tls_ts = ts;
out:
	tls_creating = 0;
	return ts;
}

/* Add ts's counters (its table's, or the saved ones of a freed table) to
 * into's. */
static void tstate_fold(struct tstate *into, struct tstate *ts)
{
	const struct esca_stats *s = ts->table ? esca_table_stats(ts->table) :
				     &ts->core_dead;
	uint64_t *a = (uint64_t *)&into->core_dead;
	const uint64_t *b = (const uint64_t *)s;

	for (size_t i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
		a[i] += b[i];
	into->reads_seen += ts->reads_seen;
	into->reads_answered += ts->reads_answered;
	into->composed += ts->composed;
	into->eagain_parked += ts->eagain_parked;
	into->held_closes += ts->held_closes;
	prefetch_fold(&into->pf, &ts->pf);
	for (int i = 0; i < CALL__COUNT; i++) {
		into->calls[i].seen += ts->calls[i].seen;
		into->calls[i].deferred += ts->calls[i].deferred;
		into->calls[i].surfaced += ts->calls[i].surfaced;
		for (int k = 0; k < PASS__COUNT; k++)
			into->calls[i].passed[k] += ts->calls[i].passed[k];
	}
}

/* The counters of every thread, live or ended, into *sum (zeroed by the
 * caller); *total: threads that ever had a table.  Returns those alive. */
int threads_sum(struct tstate *sum, int *total)
{
	int alive = 0, locked;

	/* in a fatal signal's handler the crashed thread may hold the lock:
	 * read the list without it rather than hang */
	locked = lib_fatal ? pthread_mutex_trylock(&list_lock) == 0 :
			     pthread_mutex_lock(&list_lock) == 0;
	tstate_fold(sum, &dead);
	for (struct tstate *ts = threads; ts; ts = ts->next) {
		tstate_fold(sum, ts);
		alive++;
	}
	*total = threads_total;
	if (locked)
		pthread_mutex_unlock(&list_lock);
	return alive;
}

/* The thread ends: its bytes go out, its counters stay.  What a reaping
 * flush leaves (sends parked on a full socket) goes to the heir thread
 * (heir.c; DESIGN.md, "Contract: parked sends"): the thread, and a join of
 * it, never waits for a peer that may not read.  Where there is no heir
 * (lkm, no thread could be made) it waits for all, as before. */
static void tstate_destroy(void *p)
{
	struct tstate *ts = p, **pp;

	if (!ts)
		return;
	tls_ended = 1;	/* no table again on this thread (tstate_create) */
	ts->guard++;	/* for good: its calls from here on pass through */
	timer_delete_of(ts);	/* its bytes go out now, or to the heir */
	if (ts->table) {
		esca_flush(ts->table, ESCA_FLUSH_REAP, ESCA_WHY_LIFECYCLE);
		/* its closes the heir will run: out of their epoll sets now,
		 * while the table, and so their running, is still this
		 * thread's (fd_leave_late) */
		if (ts->nleaving)
			fd_leave_late(ts);
		if (esca_table_pending(ts->table) && !heir_take(ts))
			esca_flush(ts->table, ESCA_FLUSH_WAIT,
				   ESCA_WHY_LIFECYCLE);
	}
	if (__atomic_load_n(&ts->stash_res, __ATOMIC_ACQUIRE)) {
		ts->guard = 1;
		lib_leave(ts);	/* what a handler stashed: run it */
		ts->guard = 1;
	}
	pthread_mutex_lock(&list_lock);
	for (pp = &threads; *pp; pp = &(*pp)->next) {
		if (*pp == ts) {
			*pp = ts->next;
			break;
		}
	}
	tstate_fold(&dead, ts);
	pthread_mutex_unlock(&list_lock);
	tls_ts = NULL;		/* the timer signal must not find it now */
	esca_table_free(ts->table);
	ts->table = NULL;
	ts_free(ts);
}

/* A thread whose start routine returned, or that called pthread_exit,
 * never gets a table: one made then (by a signal handler's call, the first
 * of a thread that made none before) would be made after the key's
 * destructor, never flushed, and its dead owner waited for by the other
 * threads (fd_wait_others).  A thread that has a table keeps it until the
 * destructor flushes it. */
struct thread_start {
	void *(*fn)(void *);
	void *arg;
};

static void *thread_start(void *p)
{
	struct thread_start st = *(struct thread_start *)p;
	void *r;

	free(p);
	timer_mask_read();	/* its creator's mask */
	r = st.fn(st.arg);
	tls_ended = 1;
	return r;
}

EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *at,
			  void *(*fn)(void *), void *arg)
{
	struct thread_start *st;
	int r;

	if (unlikely(!lib_ready))
		esca_lib_init();
	if (cfg.disabled || !(st = malloc(sizeof(*st))))
		return real.pthread_create(th, at, fn, arg);
	st->fn = fn;
	st->arg = arg;
	r = real.pthread_create(th, at, thread_start, st);
	if (r)
		free(st);
	return r;
}

EXPORT void pthread_exit(void *ret)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	tls_ended = 1;
	real.pthread_exit(ret);
	__builtin_unreachable();
}

/* DESIGN.md, "Contract: threads and fork" */
static void thread_atfork_prepare(void)
{
	struct tstate *ts = tls_ts;

	/* the child must not inherit queued bytes it would send twice, and
	 * what the parent wrote before fork must come before what the child
	 * writes to the same file: all of it to the kernel; sends parked on a
	 * full socket stay the parent's (flush.c, lib_flush_handover) */
	if (ts && ts->table && !ts->guard && esca_table_pending(ts->table))
		lib_flush_handover(ts, ESCA_WHY_LIFECYCLE);
	if (!ts || !ts->guard)
		threads_hand_over();	/* and the other threads' */
	pthread_mutex_lock(&list_lock);
}

static void thread_atfork_parent(void)
{
	pthread_mutex_unlock(&list_lock);
}

static void thread_atfork_child(void)
{
	struct tstate *ts = threads, *nx;

	/* the child starts clean: no table, no counters of the parent's, none
	 * of the parent's ring and eventfd numbers (closed, forgotten: the
	 * child's close of a number reused is its own), no close of the
	 * parent's left pending (fdmap_after_fork) */
	pthread_mutex_init(&list_lock, NULL);
	if (tls_ts)
		tls_ts->guard++;
	for (; ts; ts = nx) {
		nx = ts->next;
		esca_table_abandon(ts->table);
		ts->table = NULL;
		if (ts != tls_ts)
			ts_free(ts);	/* that thread does not exist here */
	}
	fdmap_after_fork();
	heir_after_fork();
	threads = NULL;
	watchdog_started = 0;	/* no watchdog thread in the child */
	watchdog_wanted = 0;	/* and no timer: a thread's table makes one */
	memset(&dead, 0, sizeof(dead));
	threads_total = 0;
	stats_after_fork();
	if (tls_ts) {
		ts_free(tls_ts);
		tls_ts = NULL;
		pthread_setspecific(ts_key, NULL);
	}
}

/* _Fork (glibc 2.34) is fork without the atfork handlers: ours run around
 * it all the same (the processes' audit: the child inherited the parent's
 * table, and under sequential sent the parent's queued bytes a second
 * time; under uring the child's own bytes were lost in the parent's
 * ring).  The program's handlers stay unrun, as _Fork promises. */
EXPORT pid_t _Fork(void)
{
	pid_t r;

	if (unlikely(!lib_ready))
		esca_lib_init();
	if (!real.Fork) {
		errno = ENOSYS;
		return -1;
	}
	thread_atfork_prepare();
	r = real.Fork();
	if (r == 0)
		thread_atfork_child();
	else
		thread_atfork_parent();
	return r;
}

/* clone() as a fork or a vfork (glibc's wrapper, called by hand-rolled
 * spawns; never by pthread_create, whose threads are CLONE_THREAD):
 * without CLONE_VM the child has a copy of the table and the ring, as at a
 * fork that runs no atfork handlers: ours run around it (the child's side
 * in front of its function); with CLONE_VM it shares this memory, as a
 * vfork child does, and is marked so (vfork_child: its calls pass through,
 * the table is the parent's).  The processes' audit: the child's close of
 * the socket went into the parent's table, and every later write of the
 * parent's said EBADF. */
struct clone_call {
	int (*fn)(void *);
	void *arg;
};

static int clone_child(void *p)
{
	struct clone_call c = *(struct clone_call *)p;

	int r;

	thread_atfork_child();
	r = c.fn(c.arg);
	/* glibc's clone ends the child with a raw exit: its bytes first */
	lib_lifecycle_flush();
	return r;
}

EXPORT int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	struct clone_call c = { fn, arg };
	pid_t *ptid, *ctid;
	void *tls;
	va_list ap;
	int r;

	va_start(ap, arg);
	ptid = va_arg(ap, pid_t *);
	tls = va_arg(ap, void *);
	ctid = va_arg(ap, pid_t *);
	va_end(ap);
	if (unlikely(!lib_ready))
		esca_lib_init();
	if (cfg.disabled || (flags & CLONE_THREAD))
		return real.clone(fn, stack, flags, arg, ptid, tls, ctid);
	if (flags & CLONE_VM) {
		esca_vfork_prepare();	/* handed over and marked */
		return real.clone(fn, stack, flags, arg, ptid, tls, ctid);
	}
	thread_atfork_prepare();
	r = real.clone(clone_child, stack, flags, &c, ptid, tls, ctid);
	thread_atfork_parent();
	return r;
}

/* At start-up, once. */
void thread_init(void)
{
	pthread_key_create(&ts_key, tstate_destroy);
	pthread_atfork(thread_atfork_prepare, thread_atfork_parent,
		       thread_atfork_child);
}
