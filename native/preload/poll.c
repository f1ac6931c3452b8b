/* SPDX-License-Identifier: MIT
 * poll.c - the waits on fd sets: poll, ppoll, select, pselect (and their
 * __*_chk forms).  Like the epoll waits (wait.c), they flush, watch the
 * progress fd while sends are parked, and return what Linux's would
 * (DESIGN.md, "Flush triggers"), and lever adapt counts them (adapt_wait). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "preload.h"

/* The program's timeout across the rounds of one wait: a deadline on the
 * precise monotonic clock, read only once the wait has to run again (a
 * wake-up by the progress fd alone, or by the library's timer signal). */
struct wtime {
	uint64_t ns;		/* the program's timeout; UINT64_MAX: none */
	uint64_t deadline;	/* 0 until a round needs it */
	uint64_t start;
};

static void wt_start(struct wtime *w, uint64_t ns)
{
	w->ns = ns;
	w->deadline = 0;
	/* the clock only when a round may follow and the timeout is finite */
	w->start = ns && ns != UINT64_MAX ? wait_clock_ns() : 0;
}

/* Before waiting again: the time left (UINT64_MAX: no timeout), 0 when the
 * program's timeout has expired. */
static uint64_t wt_left(struct wtime *w)
{
	if (w->ns == UINT64_MAX)
		return UINT64_MAX;
	if (!w->ns)
		return 0;
	if (!w->deadline)
		w->deadline = w->start + w->ns;
	return wait_left_ns(w->deadline);
}

static uint64_t ts_to_ns(const struct timespec *t)
{
	if (!t)
		return UINT64_MAX;
	if (t->tv_sec < 0 || t->tv_nsec < 0)
		return 0;	/* the kernel says EINVAL: let it */
	return (uint64_t)t->tv_sec * 1000000000ull + (uint64_t)t->tv_nsec;
}

static struct timespec ns_to_ts(uint64_t ns)
{
	return (struct timespec){ (time_t)(ns / 1000000000ull),
				  (long)(ns % 1000000000ull) };
}

static int ns_to_ms(uint64_t ns)
{
	if (ns == UINT64_MAX)
		return -1;
	ns = (ns + 999999) / 1000000;
	return ns > 0x7fffffff ? 0x7fffffff : (int)ns;
}

/* Was the wait's -1 EINTR the library's own timer signal (sent by the
 * watchdog just before the thread began to wait, or by another thread
 * waiting for this one's bytes), not a signal of the program's? */
static inline int our_eintr(struct tstate *ts, int r, unsigned hits)
{
	return r < 0 && errno == EINTR && ts && ts->timer_hits != hits;
}

/* poll (timeout ms), or ppoll when masked (t, wm), watching the progress
 * fd too when entries are parked.  The program never sees the progress fd:
 * a wake-up by it alone flushes and waits again for the time left, so 0
 * comes only after the timeout; the library's timer signal likewise.
 * ppoll's mask holds across the rounds (wmask: poll_common lets go). */
static int poll_rounds(struct pollfd *fds, nfds_t n, int timeout,
		       const struct timespec *t, struct wmask *wm, int masked)
{
	struct tstate *ts = tls_ts;
	unsigned sigs = ts ? ts->sig_hits : 0;	/* the program's handlers */
	int pfd = before_wait(ts, wm), r;
	struct wtime w;
	struct timespec left;
	const struct timespec *tp = t;
	const sigset_t *mask = wm->use;

	if (ts && ts->sig_hits != sigs &&
	    (masked ? !t || t->tv_sec || t->tv_nsec : timeout != 0)) {
		errno = EINTR;	/* a handler of the program's ran in the
				 * flush: in Linux's wait (wait.c,
				 * before_block) */
		return -1;
	}

	if (pfd >= 0 && ts->pbuf_n < n + 1) {
		struct pollfd *nb = realloc(ts->pbuf, (n + 1) * sizeof(*nb));

		if (nb) {
			ts->pbuf = nb;
			ts->pbuf_n = n + 1;
		} else {
			lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_WAIT);
			pfd = -1;
		}
	}
	if (pfd < 0 && ((!masked && timeout == 0) || (masked && !t)))
		for (;;) {	/* no time to recompute; asked again after the
				 * library's timer signal alone: a poll with a
				 * zero timeout got its EINTR (poll_zero.c) */
			unsigned hits = ts ? ts->timer_hits : 0;

			r = masked ? real.ppoll(fds, n, NULL, mask) :
				     real.poll(fds, n, 0);
			if (!our_eintr(ts, r, hits) || ts->sig_hits != sigs)
				return r;
		}
	wt_start(&w, masked ? ts_to_ns(t) :
		 timeout < 0 ? UINT64_MAX : (uint64_t)timeout * 1000000ull);
	if (pfd >= 0)
		wmask_hold(wm);		/* rounds may follow */
	for (;;) {
		unsigned hits = ts ? ts->timer_hits : 0;
		uint64_t ns;
		int hit;

		if (pfd < 0) {		/* nothing parked (any more), or
					 * nothing watched: the timer's */
			r = masked ? real.ppoll(fds, n, tp, mask) :
				     real.poll(fds, n, timeout);
			if (!our_eintr(ts, r, hits))
				return r;
			unwatched_shot(ts);
			goto again;
		}
		if (n)
			memcpy(ts->pbuf, fds, n * sizeof(*fds));
		ts->pbuf[n] = (struct pollfd){ .fd = pfd, .events = POLLIN };
		progress_arm(ts, 1);
		ts->in_wait = 1;
		if (!masked)
			r = real.poll(ts->pbuf, n + 1, timeout);
		else
			r = real.ppoll(ts->pbuf, n + 1, tp, mask);
		wait_end(ts);
		progress_arm(ts, 0);
		if (r < 0 && errno == EINVAL && n) {
			/* n + 1 over RLIMIT_NOFILE, where n is not (the wait
			 * audit: n equal to it said EINVAL): the program's
			 * set alone, the timer moving the parked sends (its
			 * signal let through a ppoll's mask: it was not) */
			pfd = -1;
			wait_unwatched(ts, wm);
			continue;
		}
		if (r < 0) {
			if (!our_eintr(ts, r, hits))
				return r;
			goto again;
		}
		for (nfds_t i = 0; i < n; i++)
			fds[i].revents = ts->pbuf[i].revents;
		hit = ts->pbuf[n].revents != 0;
		if (hit) {
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
			r--;
		}
		if (r > 0 || !hit)
			return r;
again:
		if (ts->sig_hits != sigs) {
			errno = EINTR;	/* a handler of the program's ran */
			return -1;
		}
		ns = wt_left(&w);
		if (!ns) {		/* the program's timeout is over */
			for (nfds_t i = 0; i < n; i++)
				fds[i].revents = 0;
			return 0;
		}
		timeout = ns_to_ms(ns);
		if (masked && ns != UINT64_MAX) {
			left = ns_to_ts(ns);
			tp = &left;
		}
		if (pfd >= 0 && !esca_table_inflight(ts->table))
			pfd = -1;
	}
}

static int poll_common(struct pollfd *fds, nfds_t n, int timeout,
		       const struct timespec *t, const sigset_t *mask, int masked)
{
	struct wmask wm;
	int r;

	wmask_init(&wm, masked ? mask : NULL, 1);
	wait_rounds(tls_ts, 1);
	r = poll_rounds(fds, n, timeout, t, &wm, masked);
	wait_rounds(tls_ts, 0);
	wmask_release(&wm);	/* errno kept */
	adapt_wait(tls_ts, r);	/* lever adapt, as at an epoll wait */
	return r;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return poll_common(fds, n, timeout, NULL, NULL, 0);
}
EXPORT int __poll(struct pollfd *fds, nfds_t n, int timeout)
	__attribute__((alias("poll")));

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t len)
{
	if (len / sizeof(*fds) < n)
		abort();	/* what glibc's fortified poll does */
	return poll(fds, n, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t,
		 const sigset_t *mask)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return poll_common(fds, n, -1, t, mask, 1);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *t,
		       const sigset_t *mask, size_t len)
{
	if (len / sizeof(*fds) < n)
		abort();
	return ppoll(fds, n, t, mask);
}

/* The program's set p as the kernel reads it for nfds (whole words, the
 * bits at and past nfds cleared) into the full set out; none: empty. */
static void set_in(fd_set *out, const fd_set *p, int nfds, size_t nb)
{
	FD_ZERO(out);
	if (!p || !nb)
		return;
	memcpy(out, p, nb);
	for (int fd = nfds; fd < (int)(nb * 8); fd++)
		FD_CLR(fd, out);
}

/* select (tv), or pselect when masked (t, wm), likewise.  Each round asks
 * the program's question again: its sets are read, never written, until
 * the answer, and only the words nfds covers, as the kernel's (the wait
 * audit: whole 128-byte fd_sets were read and written back, so a set sized
 * to nfds was overrun, and bits past nfds were waited on).  select's tv
 * says the time left at the end, as Linux's does. */
static int select_rounds(int nfds, fd_set *r, fd_set *w, fd_set *e,
			 struct timeval *tv, const struct timespec *t,
			 struct wmask *wm, int masked)
{
	struct tstate *ts = tls_ts;
	const sigset_t *mask = wm->use;
	unsigned sigs = ts ? ts->sig_hits : 0;	/* the program's handlers */
	int pfd = before_wait(ts, wm), n;
	fd_set mr, mw, me;
	size_t nb;
	struct wtime wt;
	struct timeval tvl, *tvp = tv;
	struct timespec left;
	const struct timespec *tp = t;

	if (ts && ts->sig_hits != sigs &&
	    (masked ? !t || t->tv_sec || t->tv_nsec :
		      !tv || tv->tv_sec || tv->tv_usec)) {
		errno = EINTR;	/* a handler ran in the flush (poll_rounds) */
		return -1;
	}

	if (pfd >= 0 && (pfd >= FD_SETSIZE || nfds < 0 || nfds > FD_SETSIZE)) {
		pfd = -1;	/* the program's sets alone: the timer moves
				 * the parked sends (its signal let through a
				 * pselect's mask: it was not) */
		wait_unwatched(ts, wm);
	}
	if (pfd < 0 && (!masked || !t))
		for (;;) {	/* Linux's select leaves the time left in tv */
			unsigned hits = ts ? ts->timer_hits : 0;

			n = masked ? real.pselect(nfds, r, w, e, NULL, mask) :
				     real.select(nfds, r, w, e, tv);
			if (!our_eintr(ts, n, hits) || ts->sig_hits != sigs)
				return n;
		}
	if (!masked && tv && (tv->tv_sec < 0 || tv->tv_usec < 0 ||
			      tv->tv_usec >= 1000000)) {
		errno = EINVAL;
		return -1;
	}
	nb = nfds > 0 ? (size_t)(nfds + NFDBITS - 1) / NFDBITS * sizeof(fd_mask) :
	     0;
	wt_start(&wt, masked ? ts_to_ns(t) : !tv ? UINT64_MAX :
		 (uint64_t)tv->tv_sec * 1000000000ull +
		 (uint64_t)tv->tv_usec * 1000ull);
	if (pfd >= 0)
		wmask_hold(wm);		/* rounds may follow */
	for (;;) {
		unsigned hits = ts ? ts->timer_hits : 0;
		uint64_t ns;
		int hit, top;

		if (pfd < 0) {		/* nothing parked (any more), or
					 * nothing watched: the timer's */
			n = masked ? real.pselect(nfds, r, w, e, tp, mask) :
				     real.select(nfds, r, w, e, tvp);
			if (!our_eintr(ts, n, hits))
				break;
			unwatched_shot(ts);
			goto again;
		}
		set_in(&mr, r, nfds, nb);
		set_in(&mw, w, nfds, nb);
		set_in(&me, e, nfds, nb);
		FD_SET(pfd, &mr);
		top = nfds > pfd ? nfds : pfd + 1;
		progress_arm(ts, 1);
		ts->in_wait = 1;
		if (!masked)
			n = real.select(top, &mr, w ? &mw : NULL,
					e ? &me : NULL, tvp);
		else
			n = real.pselect(top, &mr, w ? &mw : NULL,
					 e ? &me : NULL, tp, mask);
		wait_end(ts);
		progress_arm(ts, 0);
		if (n < 0) {
			if (!our_eintr(ts, n, hits))
				break;
			goto again;
		}
		hit = FD_ISSET(pfd, &mr);
		if (hit) {
			FD_CLR(pfd, &mr);
			n--;
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
		}
		if (n > 0 || !hit) {	/* the answer: the words nfds covers */
			if (r && nb)
				memcpy(r, &mr, nb);
			if (w && nb)
				memcpy(w, &mw, nb);
			if (e && nb)
				memcpy(e, &me, nb);
			break;
		}
again:
		if (ts->sig_hits != sigs) {
			errno = EINTR;	/* a handler of the program's ran */
			n = -1;
			break;
		}
		ns = wt_left(&wt);
		if (!ns) {		/* the program's timeout is over */
			if (r && nb)
				memset(r, 0, nb);
			if (w && nb)
				memset(w, 0, nb);
			if (e && nb)
				memset(e, 0, nb);
			n = 0;
			break;
		}
		if (ns != UINT64_MAX) {
			left = ns_to_ts(ns);
			tp = &left;
			tvl.tv_sec = left.tv_sec;
			tvl.tv_usec = (suseconds_t)((left.tv_nsec + 999) / 1000);
			tvp = &tvl;
		}
		if (pfd >= 0 && !esca_table_inflight(ts->table))
			pfd = -1;
	}
	if (!masked && tv && tvp != tv) {	/* Linux: tv is the time left */
		int err = errno;
		uint64_t ns = wt_left(&wt);

		tv->tv_sec = (time_t)(ns / 1000000000ull);
		tv->tv_usec = (suseconds_t)((ns % 1000000000ull) / 1000);
		errno = err;
	}
	return n;
}

static int select_common(int nfds, fd_set *r, fd_set *w, fd_set *e,
			 struct timeval *tv, const struct timespec *t,
			 const sigset_t *mask, int masked)
{
	struct wmask wm;
	int n;

	wmask_init(&wm, masked ? mask : NULL, 1);
	wait_rounds(tls_ts, 1);
	n = select_rounds(nfds, r, w, e, tv, t, &wm, masked);
	wait_rounds(tls_ts, 0);
	wmask_release(&wm);	/* errno kept */
	adapt_wait(tls_ts, n);	/* lever adapt, as at an epoll wait */
	return n;
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return select_common(nfds, r, w, e, tv, NULL, NULL, 0);
}
EXPORT int __select(int nfds, fd_set *r, fd_set *w, fd_set *e,
		    struct timeval *tv) __attribute__((alias("select")));

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e,
		   const struct timespec *t, const sigset_t *mask)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	return select_common(nfds, r, w, e, NULL, t, mask, 1);
}
