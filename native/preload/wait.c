/* SPDX-License-Identifier: MIT
 * wait.c - flush triggers where the thread waits: the event-loop waits
 * (epoll_wait/pwait/pwait2, poll, ppoll, select, pselect) with the progress
 * fd, the events owed to sockets (lib_pay_owed), and the calls that block
 * without a wait set (sleeps, pause, wait*): DESIGN.md, "Flush triggers". */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

/* an epoll_event.data no program makes: a non-canonical address */
#define EPOLL_MAGIC 0xe5ca5e9a0000e5caull

/* Arm or disarm the progress fd: a change of the executor's state, inside
 * the library. */
static void progress_arm(struct tstate *ts, int on)
{
	ts->guard++;
	esca_table_progress_arm(ts->table, on);
	lib_leave(ts);
}

/* Flush before a wait.  Returns the progress fd when entries stay in flight
 * (parked on full sockets) and the wait must also watch it, else -1. */
static int before_wait(struct tstate *ts)
{
	int pfd;

	if (!ts || ts->guard)
		return -1;
	ts->wait_token++;	/* what reads found out is old news after it */
	if (!ts->table)
		return -1;
	ts->segment = 0;
	if (esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
	if (!esca_table_inflight(ts->table))
		return -1;
	ts->guard++;
	pfd = esca_table_progress_fd(ts->table);
	lib_leave(ts);
	if (pfd < 0) {
		/* no way to be woken: finish them now (sequential never
		 * leaves anything in flight, so this is a safety net) */
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_WAIT);
		return -1;
	}
	return pfd;
}

/* Is the progress fd pfd in the program's epoll set epfd?  Put it there
 * (edge-triggered, EPOLL_MAGIC as its data) once per epoll fd's life. */
static int epoll_has_ours(struct tstate *ts, int epfd, int pfd)
{
	struct fdinfo *fi = fdi(epfd);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET,
				  .data.u64 = EPOLL_MAGIC };
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
	uint64_t now = now_ns();

	if (now >= deadline)
		return 0;
	return (int64_t)((deadline - now + 999999) / 1000000);
}

/* Set once any thread put its progress fd in an epoll set: from then on
 * every epoll wait filters our events out, armed or not (a late wake-up of a
 * progress fd must never reach the program: its data is no pointer). */
static int epoll_magic_used;

/* Which of the three an epoll wait is. */
enum epoll_variant { VIA_EPOLL_WAIT, VIA_EPOLL_PWAIT, VIA_EPOLL_PWAIT2 };

/* epoll_wait and friends: flush, wait; entries parked in flight wake the
 * wait through the progress fd, which the program never sees. */
static int epoll_common(int epfd, struct epoll_event *evs, int max,
			int timeout, const struct timespec *ts2,
			const sigset_t *mask, enum epoll_variant via)
{
	struct tstate *ts = tls_ts;
	uint64_t deadline = 0;
	int pfd, n, filter;
	struct timespec left;

	/* lever "fold": the flush and the wait in one kernel entry */
	if ((cfg.levers & LEVER_FOLD) && ts && !ts->guard && ts->table &&
	    esca_table_pending(ts->table) && via != VIA_EPOLL_PWAIT2 &&
	    timeout != 0) {
		uint64_t start = timeout > 0 ? now_ns() : 0;
		unsigned hits = ts->timer_hits;
		int resumed = 0;

		ts->segment = 0;
		ts->wait_token++;
		/* an event-loop wait: the watchdog leaves it alone (the wait
		 * flushed; parked sends move while the ring waits) */
		ts->in_wait = 1;
		n = lib_flush_epoll(ts, epfd, evs, max, timeout, mask);
		ts->in_wait = 0;
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
						       __ATOMIC_RELAXED))
				return n;
			for (int i = 0; i < n; i++)
				if (evs[i].data.u64 != EPOLL_MAGIC)
					evs[m++] = evs[i];
			if (m > 0)
				return m;
			/* only our progress fd or our signal woke it: wait
			 * on, below */
			if (timeout > 0) {
				int64_t used = (int64_t)((now_ns() - start) /
							 1000000);

				timeout = used >= timeout ? 0 :
					  timeout - (int)used;
			}
		}
	}
	pfd = before_wait(ts);

	if (pfd >= 0 && !epoll_has_ours(ts, epfd, pfd))
		pfd = -1;
	if (pfd >= 0)
		__atomic_store_n(&epoll_magic_used, 1, __ATOMIC_RELAXED);
	filter = __atomic_load_n(&epoll_magic_used, __ATOMIC_RELAXED);
	if (via == VIA_EPOLL_PWAIT2 && ts2)
		deadline = now_ns() + (uint64_t)ts2->tv_sec * 1000000000ull +
			   (uint64_t)ts2->tv_nsec;
	else if (timeout > 0)
		deadline = now_ns() + (uint64_t)timeout * 1000000ull;
	for (;;) {
		int m = 0, hit = 0;
		unsigned hits = ts ? ts->timer_hits : 0;

		if (pfd >= 0) {
			progress_arm(ts, 1);
			ts->in_wait = 1;
		}
		if (via == VIA_EPOLL_WAIT)
			n = real.epoll_wait(epfd, evs, max, timeout);
		else if (via == VIA_EPOLL_PWAIT)
			n = real.epoll_pwait(epfd, evs, max, timeout, mask);
		else
			n = real.epoll_pwait2(epfd, evs, max, ts2, mask);
		if (pfd >= 0) {
			ts->in_wait = 0;
			progress_arm(ts, 0);
		}
		if (n < 0 && errno == EINTR && ts && ts->timer_hits != hits) {
			/* our timer signal, not the program's: wait on */
			if (timeout == 0)
				return 0;
			goto again;
		}
		if (!filter || n <= 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == EPOLL_MAGIC)
				hit = 1;
			else
				evs[m++] = evs[i];
		}
		if (!hit)
			return n;
		if (ts && !ts->guard && ts->table)
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
		if (m > 0 || timeout == 0 ||
		    (via == VIA_EPOLL_PWAIT2 && ts2 && !deadline))
			return m;
again:
		if (pfd >= 0 && !esca_table_inflight(ts->table))
			pfd = -1;
		if (deadline) {
			uint64_t now = now_ns();

			if (now >= deadline)
				return 0;
			if (via == VIA_EPOLL_PWAIT2) {
				left.tv_sec = (time_t)((deadline - now) / 1000000000ull);
				left.tv_nsec = (long)((deadline - now) % 1000000000ull);
				ts2 = &left;
			} else {
				timeout = (int)remaining_ms(deadline);
			}
		}
	}
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

/* Reset the progress fd's eventfd counter: a raw read, never our read(). */
static void drain(int fd)
{
	uint64_t v;

	if (syscall(SYS_read, fd, &v, sizeof(v)) < 0)
		return;
}

/* poll and select with nothing of ours to watch: the library's own timer
 * signal (sent just before the thread began to wait) is no EINTR of the
 * program's, the wait goes on (select: Linux left the time remaining in tv).
 * ppoll and pselect return it: their timeouts are the program's to
 * recompute. */
static int poll_plain(struct tstate *ts, struct pollfd *fds, nfds_t n,
		      int timeout)
{
	uint64_t deadline = timeout > 0 ?
			    now_ns() + (uint64_t)timeout * 1000000ull : 0;

	for (;;) {
		unsigned hits = ts ? ts->timer_hits : 0;
		int r = real.poll(fds, n, timeout);

		if (r >= 0 || errno != EINTR || !ts || ts->timer_hits == hits)
			return r;
		if (timeout > 0)
			timeout = (int)remaining_ms(deadline);
	}
}

static int select_plain(struct tstate *ts, int nfds, fd_set *r, fd_set *w,
			fd_set *e, struct timeval *tv)
{
	for (;;) {
		unsigned hits = ts ? ts->timer_hits : 0;
		int n = real.select(nfds, r, w, e, tv);

		if (n >= 0 || errno != EINTR || !ts || ts->timer_hits == hits)
			return n;
	}
}

/* poll (timeout), or ppoll when masked (t, mask), watching the progress
 * fd too when entries are parked. */
static int poll_common(struct pollfd *fds, nfds_t n, int timeout,
		       const struct timespec *t, const sigset_t *mask, int masked)
{
	struct tstate *ts = tls_ts;
	int pfd = before_wait(ts), r;
	uint64_t deadline = 0;

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
	if (pfd < 0) {
		if (!masked)
			return poll_plain(ts, fds, n, timeout);
		return real.ppoll(fds, n, t, mask);
	}
	if (timeout > 0)
		deadline = now_ns() + (uint64_t)timeout * 1000000ull;
	for (;;) {
		int hit;

		if (n)
			memcpy(ts->pbuf, fds, n * sizeof(*fds));
		ts->pbuf[n] = (struct pollfd){ .fd = pfd, .events = POLLIN };
		progress_arm(ts, 1);
		ts->in_wait = 1;
		if (!masked)
			r = real.poll(ts->pbuf, n + 1, timeout);
		else
			r = real.ppoll(ts->pbuf, n + 1, t, mask);
		ts->in_wait = 0;
		progress_arm(ts, 0);
		if (r < 0)
			return r;
		for (nfds_t i = 0; i < n; i++)
			fds[i].revents = ts->pbuf[i].revents;
		hit = ts->pbuf[n].revents != 0;
		if (hit) {
			drain(pfd);
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
			r--;
		}
		if (r > 0 || timeout == 0 || masked || !hit)
			return r;
		if (!esca_table_inflight(ts->table)) {
			timeout = timeout > 0 ? (int)remaining_ms(deadline) : timeout;
			return real.poll(fds, n, timeout);
		}
		if (timeout > 0) {
			timeout = (int)remaining_ms(deadline);
			if (timeout == 0)
				return 0;
		}
	}
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

/* select (tv), or pselect when masked (t, mask), likewise. */
static int select_common(int nfds, fd_set *r, fd_set *w, fd_set *e,
			 struct timeval *tv, const struct timespec *t,
			 const sigset_t *mask, int masked)
{
	struct tstate *ts = tls_ts;
	int pfd = before_wait(ts), n;
	fd_set mine;

	if (pfd >= FD_SETSIZE) {
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_WAIT);
		pfd = -1;
	}
	if (pfd < 0) {
		if (!masked)
			return select_plain(ts, nfds, r, w, e, tv);
		return real.pselect(nfds, r, w, e, t, mask);
	}
	for (;;) {
		int hit;

		if (r)
			mine = *r;
		else
			FD_ZERO(&mine);
		FD_SET(pfd, &mine);
		progress_arm(ts, 1);
		ts->in_wait = 1;
		if (!masked)
			n = real.select(nfds > pfd ? nfds : pfd + 1, &mine, w, e, tv);
		else
			n = real.pselect(nfds > pfd ? nfds : pfd + 1, &mine, w, e,
					 t, mask);
		ts->in_wait = 0;
		progress_arm(ts, 0);
		if (n < 0)
			return n;
		hit = FD_ISSET(pfd, &mine);
		if (hit) {
			FD_CLR(pfd, &mine);
			n--;
			drain(pfd);
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_WAIT);
		}
		if (r)
			*r = mine;
		/* Linux select updates tv with the time left: loop on it */
		if (n > 0 || !hit || masked ||
		    (tv && tv->tv_sec == 0 && tv->tv_usec == 0))
			return n;
		if (w || e)
			return n;	/* their sets were consumed */
		if (!esca_table_inflight(ts->table))
			return real.select(nfds, r, w, e, tv);
	}
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
		int fd = ts->owed[i];
		struct fdinfo *fi = fdi(fd);

		if (!fi || !(fi->flags & FI_OWED))
			continue;		/* closed or re-used since */
		if (esca_fd_pending(ts->table, fd)) {
			ts->owed[k++] = fd;	/* still parked */
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

/* ---- calls that block without a wait set: flush.c, lib_flush_block ----- */

static inline void before_block(void)
{
	struct tstate *ts = tls_ts;

	if (ts && !ts->guard)
		ts->wait_token++;
	if (ts && !ts->guard && ts->table && esca_table_pending(ts->table))
		lib_flush_block(ts, -1);
}

EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
	before_block();
	return lib_nanosleep(req, rem);
}

EXPORT int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
			   struct timespec *rem)
{
	long r;

	before_block();
	r = lib_sleep(clk, flags, req, rem);
	return (int)r;	/* it returns the error, not -1 */
}

EXPORT int usleep(useconds_t us)
{
	struct timespec t = { us / 1000000, (long)(us % 1000000) * 1000 };

	before_block();
	return lib_nanosleep(&t, NULL);
}

EXPORT unsigned int sleep(unsigned int s)
{
	struct timespec t = { s, 0 }, rem = { 0, 0 };

	before_block();
	if (lib_nanosleep(&t, &rem) < 0 && errno == EINTR)
		return (unsigned int)rem.tv_sec + (rem.tv_nsec > 0);
	return 0;
}

EXPORT int pause(void)
{
	before_block();
	return lib_pause();
}

EXPORT pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
	if (!(options & WNOHANG))
		before_block();
	return (pid_t)syscall(SYS_wait4, pid, status, options, ru);
}

EXPORT pid_t waitpid(pid_t pid, int *status, int options)
{
	return wait4(pid, status, options, NULL);
}

EXPORT pid_t wait(int *status)
{
	return wait4(-1, status, 0, NULL);
}
