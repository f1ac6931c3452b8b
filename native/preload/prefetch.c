/* SPDX-License-Identifier: MIT
 * prefetch.c - lever "prefetch": prefetch_map (epoll_ctl: which fd an
 * event's data names), prefetch_note (after an epoll wait), prefetch_answer
 * (a read answered from a peek), prefetch_before_kernel (before any read
 * that goes to the kernel), prefetch_complete (the peeks' and discards').
 *
 * Peek, answer, discard later (DESIGN.md, "Lever: prefetch"): the first
 * read after an epoll wait that reported several readable TCP sockets
 * queues one PEEK (recv MSG_PEEK | MSG_DONTWAIT into a slot of ours) per
 * socket and flushes once: one kernel entry for all of them.  A read is
 * answered from its slot, and a DISCARD of the bytes it got (recv
 * MSG_TRUNC: TCP drops them without a copy) is queued like any deferred
 * entry, so it runs before the next wait and before any later entry of the
 * fd; until it ran, every read of the fd that goes to the kernel runs it
 * first.  The kernel never loses a byte the program has not got. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "defer.h"

enum {
	PF_NONE = 0,	/* not peeked (stepped aside): the kernel's */
	PF_PENDING,	/* its peek is queued */
	PF_DATA,	/* len bytes peeked, off of them answered */
	PF_EMPTY,	/* the peek found nothing (EAGAIN): answered once */
	PF_EOF,		/* the peek found the end: 0, once */
	PF_ERR,		/* the peek took the socket's error: once */
	PF_USED,	/* answered what it could: the kernel's from now */
};

/* ---- which fd an event's data names ------------------------------------
 * The program's epoll_event.data is its own (a pointer, mostly): a table
 * from (epoll fd, data) to the fd registered with it, filled by epoll_ctl.
 * Process-wide, lock-free: a slot is checked against the fd map (the fd's
 * last registration) when it is used, so a stale or torn slot only loses
 * a prefetch; and peeking a socket the wait did not report is harmless. */
#define PF_MAP 8192u
#define PF_PROBE 8u
struct pf_map_ent {
	uint64_t data;
	int32_t fd;
	int32_t epfd1;
};
static struct pf_map_ent *pf_map;
static int pf_refused;	/* said once: the executor cannot run the lever */
/* what the lever needs of an executor to run unless ESCA_PREFETCH=1 */
#define PF_CAPS (ESCA_CAP_ONE_ENTRY | ESCA_CAP_RECV)

static unsigned map_hash(int epfd, uint64_t data)
{
	uint64_t h = (data ^ ((uint64_t)epfd << 48)) * 0x9e3779b97f4a7c15ull;

	return (unsigned)(h >> 40) & (PF_MAP - 1);
}

static int map_valid(const struct pf_map_ent *e, int epfd, uint64_t data)
{
	struct fdinfo *fi = fdi(e->fd);

	return e->epfd1 == epfd + 1 && e->data == data && fi &&
	       fi->ep_fd == epfd + 1 && fi->ep_data == data;
}

void prefetch_map(int epfd, int fd, const struct epoll_event *ev)
{
	struct pf_map_ent *m = __atomic_load_n(&pf_map, __ATOMIC_ACQUIRE);
	unsigned h, slot;

	if (!m) {
		void *p = mmap(NULL, PF_MAP * sizeof(*m), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct pf_map_ent *none = NULL;

		if (p == MAP_FAILED)
			return;
		if (!__atomic_compare_exchange_n(&pf_map, &none, p, 0,
						 __ATOMIC_ACQ_REL,
						 __ATOMIC_ACQUIRE))
			(void)munmap(p, PF_MAP * sizeof(*m));
		m = __atomic_load_n(&pf_map, __ATOMIC_ACQUIRE);
	}
	h = map_hash(epfd, ev->data.u64);
	slot = h;
	for (unsigned i = 0; i < PF_PROBE; i++) {
		struct pf_map_ent *e = &m[(h + i) & (PF_MAP - 1)];

		if ((e->epfd1 == epfd + 1 && e->data == ev->data.u64) ||
		    !map_valid(e, e->epfd1 - 1, e->data)) {
			slot = (h + i) & (PF_MAP - 1);	/* its own, or stale */
			break;
		}
	}
	m[slot].data = ev->data.u64;
	m[slot].fd = fd;
	m[slot].epfd1 = epfd + 1;
}

static int map_find(int epfd, uint64_t data)
{
	struct pf_map_ent *m = __atomic_load_n(&pf_map, __ATOMIC_ACQUIRE);
	unsigned h = map_hash(epfd, data);

	for (unsigned i = 0; m && i < PF_PROBE; i++) {
		struct pf_map_ent e = m[(h + i) & (PF_MAP - 1)];

		if (e.epfd1 == epfd + 1 && e.data == data)
			return map_valid(&e, epfd, data) ? e.fd : -1;
	}
	return -1;
}

/* ---- which sockets may be peeked ---------------------------------------- */

/* A connected non-blocking TCP socket in an epoll set for reading, whose
 * reads we may answer (no SO_RCVLOWAT, no failed op), not shared with
 * another fd we know of (a dup), never fds 0-2 or a FILE's. */
static int eligible(struct fdinfo *fi, int fd)
{
	return fi->kind == FK_STREAM &&
	       (fi->flags & (FI_TCP | FI_CONN | FI_NONBLOCK | FI_EPOLLIN |
			     FI_NOANSWER | FI_FAILED)) ==
	       (FI_TCP | FI_CONN | FI_NONBLOCK | FI_EPOLLIN) &&
	       !fi->order_key && fd > 2 && !fi->stdio && !fi->internal;
}

static inline uint32_t my_tid(struct tstate *ts)
{
	return (uint32_t)(ts->wait_token >> 32);
}

/* Forget the slots: whatever they hold is the kernel's again (their
 * discards stay queued).  The first wait after this notes anew. */
void prefetch_forget(struct tstate *ts)
{
	struct prefetch *p = &ts->pf;

	for (int i = 0; i < p->n; i++) {
		struct pf_slot *s = &p->slot[i];
		struct fdinfo *fi = fdi(s->fd);

		if (s->state == PF_DATA && s->off == 0)
			p->wasted++;
		if (fi && fi->gen == s->gen)
			__atomic_compare_exchange_n(&fi->pf_tid,
						    &(uint32_t){ my_tid(ts) }, 0,
						    0, __ATOMIC_ACQ_REL,
						    __ATOMIC_RELAXED);
		s->state = PF_NONE;
	}
	p->n = 0;
	p->ran = 0;
}

/* After an epoll wait of ts returned n events: note the readable sockets
 * (EPOLLIN) that may be peeked; their round runs at the first read. */
void prefetch_note(struct tstate *ts, int epfd, const struct epoll_event *evs,
		   int n)
{
	struct prefetch *p;

	if (!ts || ts->guard)
		return;
	p = &ts->pf;
	if (p->n)
		prefetch_forget(ts);
	/* a thread stepped aside (lever adapt) keeps the library out of its
	 * reads too: the controller weighs deferral and prefetch together.
	 * Nor while its flushes run as plain system calls (adapt's mode
	 * plain): a peek and a discard would be two kernel entries where the
	 * read is one (lighttpd at 20 KiB on the AMD VM: 4.1 entries a
	 * request in such rounds against 1.8-2.0 through the ring) */
	if (!ts->table || n < 2 || ts->aside || ts->ad.mode == ADAPT_PLAIN ||
	    !__atomic_load_n(&pf_map, __ATOMIC_RELAXED))
		return;
	/* only where one kernel entry runs all the peeks (uring): under
	 * sequential each peek and each discard is a syscall of its own (a
	 * loss: test_prefetch_steps_aside_where_it_cannot_pay), and lkm runs
	 * no recv; ESCA_PREFETCH=1 runs it wherever it can (the oracle tests:
	 * sequential's answers) */
	if (!cfg.prefetch_forced &&
	    (esca_table_caps(ts->table) & PF_CAPS) != PF_CAPS) {
		if (!__atomic_exchange_n(&pf_refused, 1, __ATOMIC_RELAXED))
			say("lever prefetch stays off: this executor does not "
			    "run the peeks in one kernel entry; reads go to "
			    "the kernel");
		return;
	}
	p->token = ts->wait_token;
	for (int i = 0; i < n && p->n < PF_SLOTS; i++) {
		struct fdinfo *fi;
		int fd;

		if (!(evs[i].events & EPOLLIN))
			continue;
		fd = map_find(epfd, evs[i].data.u64);
		fi = fdi(fd);
		if (!fi || !eligible(fi, fd))
			continue;
		p->slot[p->n].fd = fd;
		p->slot[p->n].gen = fi->gen;
		p->slot[p->n].state = PF_NONE;
		p->n++;
	}
	if (p->n < 2)
		p->n = 0;	/* one read costs what one peek would */
}

/* ---- the round ------------------------------------------------------------ */

static void round_run(struct tstate *ts)
{
	struct prefetch *p = &ts->pf;
	int queued = 0;

	p->ran = 1;
	if (!(esca_table_caps(ts->table) & ESCA_CAP_RECV)) {
		if (!__atomic_exchange_n(&pf_refused, 1, __ATOMIC_RELAXED))
			say("lever prefetch refused: this executor cannot run "
			    "recv (lkm); reads go to the kernel");
		p->n = 0;
		return;
	}
	if (!p->buf) {
		void *b = mmap(NULL, (size_t)PF_SLOTS * PF_SLOT_BYTES,
			       PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (b == MAP_FAILED) {
			p->n = 0;
			return;
		}
		p->buf = b;
	}
	ts->guard++;
	for (int i = 0; i < p->n; i++) {
		struct pf_slot *s = &p->slot[i];
		struct fdinfo *fi = fdi(s->fd);
		struct iovec iov = { p->buf + (size_t)i * PF_SLOT_BYTES,
				     PF_SLOT_BYTES };
		struct esca_args a = { .op = ESCA_OP_PEEK, .fd = s->fd,
				       .iovcnt = 1, .iov = &iov };
		uint32_t none = 0;

		s->state = PF_NONE;
		/* only a socket nothing of anybody's is pending on: a peek
		 * never waits behind an entry, nor a discard later */
		if (!fi || fi->gen != s->gen || !eligible(fi, s->fd) ||
		    __atomic_load_n(&fi->err, __ATOMIC_RELAXED) ||
		    esca_fd_pending(ts->table, s->fd) ||
		    (__atomic_load_n(&fi->users, __ATOMIC_ACQUIRE) &
		     (FU_COUNT | FU_CLOSING)) ||
		    !__atomic_compare_exchange_n(&fi->pf_tid, &none,
						 my_tid(ts), 0,
						 __ATOMIC_ACQ_REL,
						 __ATOMIC_RELAXED))
			continue;
		fd_use(ts, fi);
		if (esca_queue(ts->table, &a, ESCA_Q_BORROW, (uint64_t)i) < 0) {
			fd_unuse(fi, s->fd);
			__atomic_store_n(&fi->pf_tid, 0, __ATOMIC_RELEASE);
			continue;
		}
		s->state = PF_PENDING;
		queued++;
	}
	lib_leave(ts);
	if (!queued)
		return;
	p->rounds++;
	p->peeked += (uint64_t)queued;
	/* with whatever else the table holds: one kernel entry */
	lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_PREFETCH);
	for (int i = 0; i < p->n; i++) {
		/* MSG_DONTWAIT answers at once; should a peek still be
		 * pending, wait for it (never for a peer) */
		if (p->slot[i].state == PF_PENDING)
			lib_sync_fd(ts, p->slot[i].fd);
		if (p->slot[i].state == PF_PENDING)
			p->slot[i].state = PF_USED;
	}
}

/* A peek or a discard is complete (fd_on_complete hands them here). */
void prefetch_complete(void *ctx, uint64_t user, int op, int fd, int64_t r)
{
	struct tstate *ts = ctx;
	struct fdinfo *fi = fdi(fd);

	if (!fi)
		return;
	if (op == ESCA_OP_DISCARD) {
		if (r != (int64_t)user) {
			/* someone took bytes the program already had: loud */
			char m[160];

			if (ts)
				ts->pf.short_discards++;
			snprintf(m, sizeof(m), "lever prefetch: discard of %llu "
				 "bytes on fd %d returned %lld: bytes read twice",
				 (unsigned long long)user, fd, (long long)r);
			say(m);
		}
		if (__atomic_load_n(&fi->discards, __ATOMIC_ACQUIRE))
			__atomic_fetch_sub(&fi->discards, 1, __ATOMIC_RELEASE);
	} else if (ts && user < PF_SLOTS && ts->pf.slot[user].fd == fd &&
		   ts->pf.slot[user].state == PF_PENDING) {
		struct pf_slot *s = &ts->pf.slot[user];

		s->off = 0;
		s->len = r > 0 ? (uint32_t)r : 0;
		s->full = r == PF_SLOT_BYTES;
		s->err = r < 0 ? (int)-r : 0;
		s->state = r > 0 ? PF_DATA : r == 0 ? PF_EOF :
			   r == -EAGAIN ? PF_EMPTY : PF_ERR;
		if (s->state == PF_ERR) {
			/* the peek took the socket's error: the fd's next
			 * call returns it, read or not (DESIGN.md,
			 * "Contract: errors") */
			int none = 0;

			__atomic_compare_exchange_n(&fi->err, &none, s->err, 0,
						    __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED);
		}
	}
	fd_unuse(fi, fd);
}

/* ---- the reads ------------------------------------------------------------ */

/* Run the discards still queued for fd (this thread's: a reaping flush,
 * they never wait behind an entry in flight; another thread's: wait for
 * them as for its sends). */
static void settle(struct tstate *ts, struct fdinfo *fi, int fd)
{
	for (int i = 0; i < 3 && __atomic_load_n(&fi->discards,
						  __ATOMIC_ACQUIRE); i++) {
		if (ts->table && esca_fd_pending(ts->table, fd))
			lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_SYNC);
		if (!__atomic_load_n(&fi->discards, __ATOMIC_ACQUIRE))
			return;
		if (others_use(ts, fi))
			fd_wait_others(ts, fi, fd, 0);
		else if (ts->table)
			lib_sync_fd(ts, fd);
	}
}

/* This thread's slot of fd, if the current round has one. */
static struct pf_slot *slot_of(struct tstate *ts, struct fdinfo *fi, int fd)
{
	struct prefetch *p = &ts->pf;

	if (!p->n || p->token != ts->wait_token)
		return NULL;
	for (int i = 0; i < p->n; i++)
		if (p->slot[i].fd == fd && p->slot[i].gen == fi->gen)
			return &p->slot[i];
	return NULL;
}

/* One fd about to be read by the kernel: no slot of any thread may answer
 * it afterwards, and the bytes answered from one must be gone first. */
static void kernel_read(struct tstate *ts, struct fdinfo *fi, int fd)
{
	uint32_t w = __atomic_load_n(&fi->pf_tid, __ATOMIC_ACQUIRE);

	if (w && ts && (w & ~PF_BUSY) == my_tid(ts)) {
		struct pf_slot *s = slot_of(ts, fi, fd);

		if (s && s->state != PF_NONE)
			s->state = PF_USED;
		__atomic_store_n(&fi->pf_tid, 0, __ATOMIC_RELEASE);
	} else {
		/* another thread's: take it away (wait while it answers a
		 * read, a copy and a queue) */
		while (w && !__atomic_compare_exchange_n(&fi->pf_tid, &w,
							 w & PF_BUSY ? w : 0, 0,
							 __ATOMIC_ACQ_REL,
							 __ATOMIC_ACQUIRE))
			;
		while (w & PF_BUSY) {
			syscall(SYS_sched_yield);
			w = __atomic_load_n(&fi->pf_tid, __ATOMIC_ACQUIRE);
			if (!(w & PF_BUSY) && w &&
			    !__atomic_compare_exchange_n(&fi->pf_tid, &w, 0, 0,
							 __ATOMIC_ACQ_REL,
							 __ATOMIC_ACQUIRE))
				w |= PF_BUSY;	/* changed: look again */
		}
	}
	if (ts && __atomic_load_n(&fi->discards, __ATOMIC_ACQUIRE))
		settle(ts, fi, fd);
}

void prefetch_before_kernel(int fd)
{
	struct tstate *ts = tls_ts;
	struct fdinfo *fi = fdi(fd);

	if (!fi || (ts && ts->guard))
		return;
	if (!ts && (fi->pf_tid || fi->discards))
		ts = ts_get();	/* a thread new to the library: it waits for
				 * another's discards like any other */
	if (fi->pf_tid || fi->discards)
		kernel_read(ts, fi, fd);
	if (fi->order_key) {	/* a dup: the open file's first fd too */
		struct fdinfo *root = fdi(fi->order_key - 1);

		if (root && (root->pf_tid || root->discards))
			kernel_read(ts, root, fi->order_key - 1);
	}
}

static void copy_out(const struct iovec *iov, int iovcnt, const char *src,
		     size_t n)
{
	for (int i = 0; i < iovcnt && n; i++) {
		size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;

		memcpy(iov[i].iov_base, src, k);
		src += k;
		n -= k;
	}
}

/* A read of total bytes into iov on fd: 1 when answered here (*res, and
 * errno for -1); 0: it goes to the kernel (before_read settles). */
int prefetch_answer(int fd, const struct iovec *iov, int iovcnt, size_t total,
		    int flags, ssize_t *res)
{
	struct tstate *ts = tls_ts;
	struct fdinfo *fi = fdi(fd);
	struct pf_slot *s;
	uint32_t me;
	size_t n;

	if (!ts || ts->guard || !fi || !ts->pf.n ||
	    ts->pf.token != ts->wait_token || (flags & ~MSG_DONTWAIT) ||
	    !total || vfork_child(ts))
		return 0;
	s = slot_of(ts, fi, fd);
	if (!s)
		return 0;
	if (!ts->pf.ran)
		round_run(ts);
	me = my_tid(ts);
	if (s->state < PF_DATA || s->state == PF_USED || fi->order_key ||
	    __atomic_load_n(&fi->pf_tid, __ATOMIC_ACQUIRE) != me)
		return 0;
	if (s->state == PF_EMPTY || s->state == PF_EOF) {
		/* what the kernel said at the peek, once (DESIGN.md,
		 * "Lever: prefetch") */
		*res = s->state == PF_EOF ? 0 : -1;
		if (s->state == PF_EMPTY)
			errno = EAGAIN;
		s->state = PF_USED;
		ts->pf.answered++;
		return 1;
	}
	if (s->state == PF_ERR) {
		int err = s->err;

		s->state = PF_USED;
		/* the error is the next call's: unless a send took it */
		if (!__atomic_compare_exchange_n(&fi->err, &err, 0, 0,
						 __ATOMIC_RELAXED,
						 __ATOMIC_RELAXED))
			return 0;
		*res = -1;
		errno = s->err;
		ts->pf.answered++;
		return 1;
	}
	/* PF_DATA: only while nothing but our discards is pending on fd
	 * (a discard never waits behind a send in flight) and the rest, if
	 * the program asks for more than the slot has, cannot be waiting in
	 * the kernel */
	n = s->len - s->off;
	if (esca_fd_pending(ts->table, fd) != fi->discards ||
	    others_use(ts, fi) || (total > n && s->full) ||
	    fi->discards == UINT16_MAX ||
	    !__atomic_compare_exchange_n(&fi->pf_tid, &me, me | PF_BUSY, 0,
					 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
		s->state = PF_USED;
		return 0;
	}
	if (n > total)
		n = total;
	{
		struct esca_args a = { .op = ESCA_OP_DISCARD, .fd = fd,
				       .count = n };
		int64_t q;

		ts->guard++;
		fd_use(ts, fi);
		q = esca_queue(ts->table, &a, 0, (uint64_t)n);
		if (q < 0)
			fd_unuse(fi, fd);
		else
			__atomic_fetch_add(&fi->discards, 1, __ATOMIC_RELEASE);
		lib_leave(ts);
		if (q < 0) {
			__atomic_store_n(&fi->pf_tid, me, __ATOMIC_RELEASE);
			s->state = PF_USED;
			return 0;
		}
	}
	copy_out(iov, iovcnt, ts->pf.buf + (size_t)(s - ts->pf.slot) *
		 PF_SLOT_BYTES + s->off, n);
	__atomic_store_n(&fi->pf_tid, me, __ATOMIC_RELEASE);
	s->off += (uint32_t)n;
	if (s->off == s->len)
		/* all the socket held at the peek (the slot was not full):
		 * the next read finds it empty, as the reads lever says */
		s->state = s->full ? PF_USED : PF_EMPTY;
	if (!ts->oldest_ns)
		note_pending(ts, 1);	/* the time bound's */
	timer_ensure(ts);
	ts->pf.answered++;
	*res = (ssize_t)n;
	return 1;
}

void prefetch_free(struct tstate *ts)
{
	if (ts->pf.buf)
		(void)munmap(ts->pf.buf, (size_t)PF_SLOTS * PF_SLOT_BYTES);
	ts->pf.buf = NULL;
}

void prefetch_fold(struct prefetch *into, const struct prefetch *p)
{
	into->rounds += p->rounds;
	into->peeked += p->peeked;
	into->answered += p->answered;
	into->wasted += p->wasted;
	into->short_discards += p->short_discards;
}
