/* SPDX-License-Identifier: MIT
 * cork.c - lever "compose" and the setsockopt interposer: cork_compose()
 * turns TCP_CORK on/off around sends into MSG_MORE; cork_make_real() and
 * cork_queued() give the kernel the program's cork when a call needs it;
 * which options go to the kernel at once (sockopt_apart), and SO_LINGER
 * noted for close. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "defer.h"

/* cork_for_real (defer.h) found fd corked only in our MSG_MORE flags. */
void cork_make_real(struct tstate *ts, struct fdinfo *fi, int fd)
{
	int one = 1;

	fi->flags &= (uint16_t)~FI_CORK_VIRT;
	ts->guard++;
	if (real.setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) < 0)
		fi->flags &= (uint16_t)~FI_CORK_KNOWN;
	lib_leave(ts);
}

/* A composed cork made real in the queue, in order: a sendfile run as the
 * syscall (lever "sendfile") would push its bytes, and wake the peer, at
 * once; held by the kernel's cork, they go out with the TCP_CORK off, which
 * the flush runs with every other socket's in one kernel entry (measured:
 * pushing inside each sendfile cost ~2 us a request in context switches). */
void cork_queued(struct tstate *ts, struct fdinfo *fi, int fd)
{
	static const int one = 1;
	struct iovec v = { (void *)&one, sizeof(one) };
	struct esca_args a = { .op = ESCA_OP_SETSOCKOPT, .fd = fd,
			       .level = IPPROTO_TCP, .optname = TCP_CORK,
			       .iov = &v, .iovcnt = 1, .order = fi->order_key };

	ts->guard++;
	/* counted as every entry is: its completion gives the count back
	 * (fd_on_complete).  Uncounted, it gave back another entry's, and a
	 * count one low ends a held close early, or wraps (the failed queue
	 * of a sendfile behind it found 0 under nginx's load) */
	fd_use(ts, fi);
	if (esca_queue(ts->table, &a, 0, 0) >= 0) {
		lib_leave(ts);
		fi->flags &= (uint16_t)~FI_CORK_VIRT;	/* FI_CORKED stays */
		ts->composed--;		/* the program's call runs after all */
		return;
	}
	fd_unuse(fi, fd);
	lib_leave(ts);
	cork_for_real(ts, fd);
}

/* Lever "compose": TCP_CORK on, data, TCP_CORK off on a socket whose cork
 * we know to be off becomes the same data sent with MSG_MORE on all but the
 * last send; neither setsockopt reaches the kernel.  What the program can
 * observe stays true: getsockopt(TCP_CORK) answers from the same state, and
 * any call of the socket that goes to the kernel meanwhile first gets the
 * real cork (cork_for_real).  1: the call was composed away. */
static int cork_compose(struct tstate *ts, struct fdinfo *fi, int fd, int on)
{
	if (!(cfg.levers & LEVER_COMPOSE) || !(fi->flags & FI_CORK_KNOWN))
		return 0;
	if (on && !(fi->flags & FI_CORKED)) {
		fi->flags |= FI_CORKED | FI_CORK_VIRT;
		ts->composed++;
		return 1;
	}
	if (!on && (fi->flags & FI_CORK_VIRT)) {
		int am;

		fi->flags &= (uint16_t)~(FI_CORKED | FI_CORK_VIRT);
		/* the last send pushes; if it is gone to the kernel already,
		 * the real TCP_CORK off (queued below) pushes what it left */
		ts->guard++;	/* a change of the table */
		am = esca_amend_last(ts->table, fd, MSG_MORE);
		lib_leave(ts);
		if (am == 0) {
			ts->composed++;
			return 1;
		}
	}
	return 0;
}

/* Options that neither the bytes queued on a socket depend on nor depend
 * on them (the receiving side, keep-alive, timeouts, SO_LINGER: what close
 * does): set at once, not after those bytes.  In order, behind bytes parked
 * on a client that does not read, setsockopt waited for that client: nginx
 * sets SO_LINGER before it resets a connection whose client stopped reading
 * (tests/preload/test_parked_calls.py).  The others (TCP_CORK, TCP_NODELAY,
 * SO_SNDBUF, TCP_ULP, IP_TOS, ...) shape the bytes and keep their place. */
static int sockopt_apart(int level, int name)
{
	if (level == SOL_SOCKET)
		switch (name) {
		case SO_LINGER: case SO_KEEPALIVE: case SO_RCVBUF:
		case SO_RCVBUFFORCE: case SO_RCVLOWAT: case SO_OOBINLINE:
		case SO_RCVTIMEO_OLD: case SO_SNDTIMEO_OLD:
#if defined(SO_RCVTIMEO_NEW) && SO_RCVTIMEO_NEW != SO_RCVTIMEO_OLD
		case SO_RCVTIMEO_NEW: case SO_SNDTIMEO_NEW:
#endif
			return 1;
		}
	if (level == IPPROTO_TCP)
		switch (name) {
		case TCP_KEEPIDLE: case TCP_KEEPINTVL: case TCP_KEEPCNT:
		case TCP_QUICKACK: case TCP_USER_TIMEOUT: case TCP_LINGER2:
		case TCP_WINDOW_CLAMP:
			return 1;
		}
	return 0;
}

/* SO_RCVTIMEO by either of its numbers (the 64-bit time one since 5.1) */
static int is_rcvtimeo(int name)
{
#ifdef SO_RCVTIMEO_NEW
	if (name == SO_RCVTIMEO_NEW)
		return 1;
#endif
#ifdef SO_RCVTIMEO_OLD
	if (name == SO_RCVTIMEO_OLD)
		return 1;
#endif
	return name == SO_RCVTIMEO;
}

static int setsockopt_call(int fd, int level, int name, const void *val,
			   socklen_t len)
{
	struct tstate *ts = ts_get();
	struct fdinfo *fi;
	struct esca_args a;
	struct iovec v = { (void *)val, len };
	int err, r;

	if (level == SOL_SOCKET && name == SO_RCVLOWAT && (fi = fdi(fd)))
		fi->flags |= FI_NOANSWER;	/* a short read proves nothing */
	if (level == SOL_SOCKET && (is_rcvtimeo(name) || name == SO_RCVLOWAT) &&
	    (fi = fdi(fd))) {
		fi->flags &= (uint16_t)~FI_RTO_NONE;	/* read_restarts asks again */
		fi->rto_set = 0;
	}
	if (unlikely(!ts))
		return real.setsockopt(fd, level, name, val, len);
	fi = defer_begin(ts, CALL_SETSOCKOPT, fd, &err);
	if (!fi) {
		if (level == IPPROTO_TCP && name == TCP_CORK && (fi = fdi(fd)))
			fi->flags &= (uint16_t)~(FI_CORK_KNOWN | FI_CORKED |
						FI_CORK_VIRT);
		return defer_refused(err) == -1 ? -1 :
		       real.setsockopt(fd, level, name, val, len);
	}
	if (sockopt_apart(level, name)) {
		ts->calls[CALL_SETSOCKOPT].passed[PASS_ARGS]++;	/* at once */
	} else if (!call_selected(ts, CALL_SETSOCKOPT)) {
		pass_through(ts, CALL_SETSOCKOPT, fd, PASS_NOT_SELECTED);
	} else if (stepped_aside(ts, fi, fd)) {
		ts->calls[CALL_SETSOCKOPT].passed[PASS_ASIDE]++;
		cork_for_real(ts, fd);
	} else if (deferrable_kind(fi, fd) != FK_STREAM ||
		   !(fi->flags & FI_TCP)) {
		pass_through(ts, CALL_SETSOCKOPT, fd, PASS_FD);
	} else if (level != IPPROTO_TCP || !val || len != sizeof(int) ||
		   (name != TCP_CORK && name != TCP_NODELAY)) {
		pass_through(ts, CALL_SETSOCKOPT, fd, PASS_ARGS);	/* unknown: real */
	} else if (name == TCP_CORK && !(fi->flags & FI_DUPED) &&
		   cork_compose(ts, fi, fd, *(const int *)val != 0)) {
		/* (a dup's is the kernel's, in order: getsockopt through
		 * another fd of the socket asks the kernel) */
		ts->calls[CALL_SETSOCKOPT].deferred++;
		return 0;
	} else {
		a = (struct esca_args){ .op = ESCA_OP_SETSOCKOPT, .fd = fd,
					.level = level, .optname = name,
					.iov = &v, .iovcnt = 1, .order = fi->order_key };
		if (name == TCP_CORK) {
			fi->flags &= (uint16_t)~FI_CORKED;
			if (*(const int *)val)
				fi->flags |= FI_CORKED;
		}
		if (defer_queue(ts, &ts->calls[CALL_SETSOCKOPT], &a, 0) != PASSED)
			return 0;
		lib_sync_fd(ts, fd);
		cork_for_real(ts, fd);
	}
	r = real.setsockopt(fd, level, name, val, len);
	if (level == IPPROTO_TCP && name == TCP_CORK && (fi = fdi(fd))) {
		/* the kernel's cork is the program's now, if it took it */
		fi->flags &= (uint16_t)~(FI_CORKED | FI_CORK_VIRT);
		if (r < 0 || !val || len < sizeof(int))
			fi->flags &= (uint16_t)~FI_CORK_KNOWN;
		else if (*(const int *)val)
			fi->flags |= FI_CORKED;
	}
	return r;
}

/* SO_LINGER as the kernel took it: on, a close of fd is never deferred
 * (defer.c, close_lingering); after accept, the listener's (read.c).
 * TCP_NODELAY as the program set it, for getsockopt (sync.c). */
EXPORT int setsockopt(int fd, int level, int name, const void *val,
		      socklen_t len)
{
	int r = setsockopt_call(fd, level, name, val, len);
	struct fdinfo *fi;

	if (r == 0 && level == SOL_SOCKET && name == SO_LINGER &&
	    len >= (socklen_t)sizeof(struct linger) && (fi = fdi(fd)))
		fi->linger = !((const struct linger *)val)->l_onoff ? 0 :
			     ((const struct linger *)val)->l_linger ?
			     LINGER_WAIT : LINGER_RESET;
	if (level == IPPROTO_TCP && name == TCP_NODELAY && (fi = fdi(fd)))
		fi->nodelay = r == 0 && len >= (socklen_t)sizeof(int) ?
			      (uint8_t)(1 + !!*(const int *)val) : 0;
	return r;
}
