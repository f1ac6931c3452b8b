/* SPDX-License-Identifier: MIT
 * uring_setup.c - the uring executor's ring: set-up with the allow-list
 * (IORING_REGISTER_RESTRICTIONS), the setsockopt probe, init/fini, the
 * progress fd; esca_uring_probe() and esca_uring_opname() for esca doctor.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sys.h"
#include "uring.h"

static int probe_setsockopt = 0;	/* 0 not yet, 1 works, -1 does not */

/* the ring's eventfd in the progress epoll set (an fd's is its number) */
#define PEP_EVFD (~0ull)

/* The kernel's opcode list, in the caller's memory: a ring is set up on a
 * thread's first deferred call, maybe in a signal handler that interrupted
 * malloc, and liburing's io_uring_get_probe_ring mallocs (internal.h,
 * esca__zalloc). */
union ring_probe {
	struct io_uring_probe p;
	char room[sizeof(struct io_uring_probe) +
		  256 * sizeof(struct io_uring_probe_op)];
};

static struct io_uring_probe *probe_into(struct io_uring *ring,
					 union ring_probe *b)
{
	memset(b, 0, sizeof(*b));
	if (io_uring_register_probe(ring, &b->p, 256) < 0)
		return NULL;
	return &b->p;
}

/* Does the kernel take SOCKET_URING_OP_SETSOCKOPT?  Asked once. */
static int check_setsockopt(struct io_uring *ring)
{
	union ring_probe b;
	struct io_uring_probe *p;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int s, one = 1, ok = -1;

	if (probe_setsockopt)
		return probe_setsockopt > 0;
	p = probe_into(ring, &b);
	if (!p)
		return 0;
	if (!io_uring_opcode_supported(p, IORING_OP_URING_CMD)) {
		probe_setsockopt = -1;
		return 0;
	}
	s = (int)esca_sys_socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return 0;
	sqe = io_uring_get_sqe(ring);
	if (sqe) {
		esca__prep_setsockopt(sqe, s, SOL_SOCKET, SO_KEEPALIVE, &one,
				sizeof(one));
		io_uring_sqe_set_data64(sqe, 0);
		if (io_uring_submit_and_wait(ring, 1) >= 0 &&
		    io_uring_peek_cqe(ring, &cqe) == 0) {
			if (cqe->res == 0) {
				int v = 0;
				socklen_t l = sizeof(v);

				if (esca_sys_getsockopt(s, SOL_SOCKET,
							SO_KEEPALIVE, &v,
							&l) == 0 && v == 1)
					ok = 1;
			}
			io_uring_cqe_seen(ring, cqe);
		}
	}
	esca_sys_close(s);
	probe_setsockopt = ok;
	return ok > 0;
}

static const unsigned flag_sets[] = {
	IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
	IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_DEFER_TASKRUN,
	IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
	0,
};

/* The allow-list (issue 5): a ring of ours runs only the operations the
 * executor submits, whatever the memory holding its SQEs says.  The kernel
 * refuses anything else with -EACCES (IORING_REGISTER_RESTRICTIONS on a ring
 * created disabled).  Add an opcode here when the executor starts using it. */
static const unsigned char allowed_sqe_ops[] = {
	IORING_OP_NOP, IORING_OP_POLL_ADD, IORING_OP_WRITE, IORING_OP_WRITEV,
	IORING_OP_SEND, IORING_OP_SENDMSG, IORING_OP_READ, IORING_OP_SHUTDOWN,
	IORING_OP_CLOSE, IORING_OP_FSYNC, IORING_OP_URING_CMD,
	IORING_OP_ASYNC_CANCEL, IORING_OP_EPOLL_WAIT, IORING_OP_RECV,
};
#define ALLOWED_SQE_FLAGS IOSQE_IO_LINK
/* io_uring_register calls made after the ring is enabled; the last two
 * (Linux 5.18) go first when the kernel does not know them */
static const unsigned char allowed_register_ops[] = {
	IORING_REGISTER_PROBE, IORING_REGISTER_EVENTFD, IORING_UNREGISTER_EVENTFD,
	IORING_REGISTER_RING_FDS, IORING_UNREGISTER_RING_FDS,
};

/* io_uring_register(2) itself: Debian 12's liburing 2.3 declares
 * io_uring_register_restrictions() and io_uring_enable_rings() but does not
 * export them. */
static int ring_register(struct io_uring *ring, unsigned op, void *arg,
			 unsigned n)
{
	return (int)esca_sys_ret(syscall(__NR_io_uring_register, ring->ring_fd,
					 op, arg, n));
}

/* io_uring_register through the thread's registered ring once the ring's
 * own fd is closed (esca__uring_init): Linux 6.3's
 * IORING_REGISTER_USE_REGISTERED_RING, which Debian 12's uapi header lacks.
 * The kernel takes the flag off before the allow-list's check. */
#ifndef IORING_REGISTER_USE_REGISTERED_RING
#define IORING_REGISTER_USE_REGISTERED_RING (1U << 31)
#endif
/* liburing's int_flags bit for a registered ring (its int_flags.h, not
 * installed): io_uring_queue_exit unregisters through ring_fd when set */
#define LIBURING_REG_RING 1

static int ring_register_any(struct io_uring *ring, unsigned op, void *arg,
			     unsigned n)
{
	if (ring->ring_fd >= 0)
		return ring_register(ring, op, arg, n);
	return (int)esca_sys_ret(syscall(__NR_io_uring_register,
					 ring->enter_ring_fd,
					 op | IORING_REGISTER_USE_REGISTERED_RING,
					 arg, n));
}

/* The ring's fd, registered (liburing then enters through the index), is
 * closed where the kernel also registers through the index: a thread's
 * ring then takes no number of the program's.  A thread-per-connection
 * program had one number of two a connection taken, EMFILE at half as
 * many connections (the threads audit: 119 of 300 sockets).  Kept before
 * Linux 6.3, and where registering failed (before 5.18). */
static void ring_fd_close(struct uring_state *u)
{
	union ring_probe b;

	if (io_uring_register_ring_fd(&u->ring) != 1)
		return;
	memset(&b, 0, sizeof(b));
	if (syscall(__NR_io_uring_register, u->ring.enter_ring_fd,
		    IORING_REGISTER_PROBE | IORING_REGISTER_USE_REGISTERED_RING,
		    &b.p, 256) < 0)
		return;
	esca__fd_gone(u->ring.ring_fd);
	if (esca_sys_close(u->ring.ring_fd) == 0)
		u->ring.ring_fd = -1;
}

/* Restrict a ring created with IORING_SETUP_R_DISABLED, then enable it. */
static int ring_restrict(struct io_uring *ring)
{
	struct io_uring_restriction res[sizeof(allowed_sqe_ops) +
					sizeof(allowed_register_ops) + 1];
	union ring_probe b;
	struct io_uring_probe *p = probe_into(ring, &b);
	unsigned n = 0, nreg = sizeof(allowed_register_ops);
	int r;

	if (!p)
		return -EINVAL;
	memset(res, 0, sizeof(res));
	for (size_t i = 0; i < sizeof(allowed_sqe_ops); i++) {
		if (allowed_sqe_ops[i] > p->last_op)
			continue;	/* an op this kernel lacks: never usable */
		res[n].opcode = IORING_RESTRICTION_SQE_OP;
		res[n++].sqe_op = allowed_sqe_ops[i];
	}
	res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
	res[n++].sqe_flags = ALLOWED_SQE_FLAGS;
	for (;;) {
		for (unsigned i = 0; i < nreg; i++) {
			res[n + i].opcode = IORING_RESTRICTION_REGISTER_OP;
			res[n + i].register_op = allowed_register_ops[i];
		}
		r = ring_register(ring, IORING_REGISTER_RESTRICTIONS, res,
				  n + nreg);
		if (r != -EINVAL || nreg != sizeof(allowed_register_ops))
			break;
		nreg -= 2;	/* no RING_FDS on this kernel */
	}
	if (r < 0)
		return r;
	return ring_register(ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
}

void (*esca__fd_hook)(int fd, int open);
void (*esca__fd_making_hook)(int begin);

/* The highest number an internal fd takes: the top of RLIMIT_NOFILE, at most
 * FD_SETSIZE - 1 (the progress eventfd must fit a select() set, and a higher
 * number would make the kernel's fd table of the process that large). */
#define FD_HIGH_CAP 1024L

/* A dup of fd in the top slots (close-on-exec): its number, or -errno when
 * none is free there.  fd is left as it is. */
static long fd_dup_top(int fd)
{
	struct rlimit rl;
	long top = FD_HIGH_CAP, nfd = -EMFILE;

	if (syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < top)
		top = (long)rl.rlim_cur;
	/* F_DUPFD gives the lowest free number >= its argument: try the top
	 * slot, then ever larger ranges below it */
	for (long step = 1; top - step > fd; step *= 2) {
		nfd = esca_sys_ret(syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC,
					   top - step));
		if (nfd >= top) {
			/* the slots from top - step up are taken: F_DUPFD
			 * went past the top (past FD_SETSIZE, where select
			 * cannot watch it); a range lower down */
			esca_sys_close((int)nfd);
			nfd = -EMFILE;
			continue;
		}
		if (nfd >= 0 || (nfd != -EMFILE && nfd != -EINVAL))
			break;
	}
	return nfd;
}

int esca__fd_high(int fd)
{
	long nfd;

	if (fd < 0)
		return fd;
	nfd = fd_dup_top(fd);
	if (nfd >= 0) {
		esca_sys_close(fd);
		fd = (int)nfd;
	}	/* else it keeps the number it has */
	if (esca__fd_hook)
		esca__fd_hook(fd, 1);
	return fd;
}

int esca__fd_dup_high(int fd)
{
	long nfd = fd < 0 ? -EBADF : fd_dup_top(fd);

	if (nfd >= 0 && esca__fd_hook)
		esca__fd_hook((int)nfd, 1);
	return (int)nfd;
}

void esca__fd_gone(int fd)
{
	if (fd >= 0 && esca__fd_hook)
		esca__fd_hook(fd, 0);
}

/* A ring with the allow-list, trying the best setup flags first (also
 * native/tests/test_core.c, which checks the allow-list). */
int esca__ring_setup(struct io_uring *ring, unsigned entries, unsigned *flags)
{
	int r = -EINVAL;

	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p = {
			.flags = flag_sets[i] | IORING_SETUP_R_DISABLED,
		};

		r = io_uring_queue_init_params(entries, ring, &p);
		if (r == 0) {
			r = ring_restrict(ring);
			if (r < 0) {
				io_uring_queue_exit(ring);
				return r;	/* no ring without the allow-list */
			}
			if (flags)
				*flags = flag_sets[i];
			return 0;
		}
		if (r != -EINVAL)
			return r;	/* EPERM, ENOSYS, ENOMEM: no flags help */
	}
	return r;
}

int esca__uring_init(struct esca_table *t)
{
	struct uring_state *u = esca__zalloc(sizeof(*u));
	unsigned want = t->cap * 2;
	int r;

	if (!u)
		return -ENOMEM;
	if (want > 32768)
		want = 32768;
	esca__fd_making(1);
	r = esca__ring_setup(&u->ring, want, NULL);
	if (r < 0) {
		esca__fd_making(0);
		esca__zfree(u, sizeof(*u));
		return r;
	}
	/* liburing enters through enter_ring_fd until the ring fd is
	 * registered below */
	u->ring.ring_fd = esca__fd_high(u->ring.ring_fd);
	esca__fd_making(0);
	u->ring.enter_ring_fd = u->ring.ring_fd;
	u->sq_entries = u->ring.sq.ring_entries;
	u->sf_direct = !!(t->cfg_flags & ESCA_CFG_SENDFILE_DIRECT);
	if (t->cfg_flags & ESCA_CFG_FOLD_WAIT) {
		union ring_probe b;
		struct io_uring_probe *p = probe_into(&u->ring, &b);

		u->have_epwait = p && io_uring_opcode_supported(p,
							  IORING_OP_EPOLL_WAIT);
	}
	{
		union ring_probe b;
		struct io_uring_probe *p = probe_into(&u->ring, &b);

		u->have_recv = p && io_uring_opcode_supported(p,
							      IORING_OP_RECV);
	}
	u->evfd = -1;
	u->pepfd = -1;
	u->heads = esca__zalloc(t->slots * sizeof(*u->heads));
	u->x = esca__zalloc(t->slots * sizeof(*u->x));
	if (!u->heads || !u->x) {
		esca__fd_gone(u->ring.ring_fd);
		io_uring_queue_exit(&u->ring);
		esca__zfree(u->heads, t->slots * sizeof(*u->heads));
		esca__zfree(u->x, t->slots * sizeof(*u->x));
		esca__zfree(u, sizeof(*u));
		return -ENOMEM;
	}
	for (unsigned i = 0; i < t->slots; i++)
		u->x[i].slot = i;
	u->have_setsockopt = check_setsockopt(&u->ring);
	ring_fd_close(u);
	t->priv = u;
	t->caps = ESCA_CAP_PARKS | ESCA_CAP_NO_SIGPIPE | ESCA__CAP_BOUNCE |
		  ESCA_CAP_PLAIN_FLUSH | ESCA_CAP_ONE_ENTRY |
		  (u->sf_direct ? ESCA_CAP_SENDFILE_DIRECT : 0) |
		  (u->have_epwait ? ESCA_CAP_FOLD_WAIT : 0) |
		  (u->have_recv ? ESCA_CAP_RECV : 0) |
		  ((u->ring.flags & IORING_SETUP_DEFER_TASKRUN) ?
		   ESCA_CAP_OWN_PROGRESS : 0);
	return 0;
}

/* Also after fork, in the child: the child's copy of the ring is unmapped
 * and closed, nothing submitted. */
void esca__uring_fini(struct esca_table *t)
{
	struct uring_state *u = t->priv;

	if (!u)
		return;
	if (u->ring.ring_fd < 0 && (u->ring.int_flags & LIBURING_REG_RING)) {
		/* unregistered through itself (in a fork's child there is
		 * nothing at the index: EINVAL, harmless); the queue_exit
		 * below then only unmaps */
		struct io_uring_rsrc_update up = {
			.offset = (unsigned)u->ring.enter_ring_fd,
		};

		(void)ring_register_any(&u->ring, IORING_UNREGISTER_RING_FDS,
					&up, 1);
		u->ring.int_flags &= (__u8)~LIBURING_REG_RING;
	}
	esca__fd_gone(u->ring.ring_fd);
	io_uring_queue_exit(&u->ring);
	if (u->evfd >= 0) {
		esca__fd_gone(u->evfd);
		esca_sys_close(u->evfd);
	}
	if (u->pepfd >= 0) {
		esca__fd_gone(u->pepfd);
		esca_sys_close(u->pepfd);
	}
	esca__zfree(u->heads, t->slots * sizeof(*u->heads));
	esca__zfree(u->x, t->slots * sizeof(*u->x));
	esca__zfree(u, sizeof(*u));
	t->priv = NULL;
}

/* With DEFER_TASKRUN, a parked send moves only while this thread is in
 * io_uring_enter; an eventfd registered with the ring is signalled when
 * such work is queued, so an event loop can wait on it beside its own fds.
 *
 * That signal comes late: for a DEFER_TASKRUN ring the kernel signals the
 * eventfd from the waker's context only where eventfd_signal_allowed(),
 * else through call_rcu_hurry, after an RCU grace period (io_uring/eventfd.c,
 * __io_eventfd_signal).  On Linux 6.18 (HZ=250) the poll wake-up of a parked
 * send reached the eventfd 12-27 ms after the reader made room, every time
 * (a socketpair's reader in the ring's own thread too): a reply parked on a
 * unix socket whose client read moved one socket buffer per 12-20 ms (4 MiB:
 * 240-300 ms, plain 13 ms; tests/preload/test_parked_reader.py).  So the
 * progress fd is an epoll set, as the parking executors' (park.c): the
 * eventfd, and each parked send's fd for room (EPOLLOUT | EPOLLONESHOT,
 * armed in esca__uring_progress_arm), whose wake-up the socket's reader
 * delivers at once.  The ring's poll of that fd fires at the same wake-up;
 * the flush the wait then runs takes its task work.  The eventfd stays in
 * the set for completions no fd's room announces. */
int esca__uring_progress_fd(struct esca_table *t)
{
	struct uring_state *u = t->priv;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = PEP_EVFD };
	int fd, r;

	if (u->pepfd >= 0)
		return u->pepfd;
	if (u->pep_failed)
		return u->evfd;
	if (u->evfd < 0) {
		esca__fd_making(1);
		fd = (int)esca_sys_eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fd >= 0)
			fd = esca__fd_high(fd);
		esca__fd_making(0);
		if (fd < 0)
			return fd;
		r = ring_register_any(&u->ring, IORING_REGISTER_EVENTFD, &fd, 1);
		t->st.kernel_entries += 2;
		if (r < 0) {
			esca__fd_gone(fd);
			esca_sys_close(fd);
			return r;
		}
		u->evfd = fd;
		io_uring_cq_eventfd_toggle(&u->ring, false);
	}
	esca__fd_making(1);
	fd = (int)esca_sys_epoll_create1(EPOLL_CLOEXEC);
	if (fd >= 0)
		fd = esca__fd_high(fd);
	esca__fd_making(0);
	t->st.kernel_entries += 2;
	if (fd >= 0 && esca_sys_epoll_ctl(fd, EPOLL_CTL_ADD, u->evfd, &ev) < 0) {
		esca__fd_gone(fd);
		esca_sys_close(fd);
		fd = -1;
	}
	if (fd < 0) {
		/* the eventfd alone: slow, not wrong; and for good, so that
		 * the number the program's epoll sets hold stays the same */
		u->pep_failed = 1;
		return u->evfd;
	}
	u->pepfd = fd;
	return fd;
}

/* The progress epoll set (u->pepfd), before a wait with entries in flight:
 * take what it reported (a one-shot fd reported is disarmed; the eventfd
 * is drained when it was signalled), then arm for room each fd with a send
 * in flight that is not armed already (esca_fd.armed: armed and not
 * reported since), so a wait costs one epoll_wait(0) and no call per parked
 * fd still waiting.  A MOD of an fd already writable reports it at once:
 * the wait wakes and its flush retries the send.  An fd leaves the set
 * when its last entry is done (esca__uring_disarm, from the reap): armed
 * there, its one-shot registration, never collected once nothing is in
 * flight, woke the program's wait at each read of the peer's (a unix
 * socket's room), and its number, closed and given to another socket, was
 * taken for armed (session 19's review). */
static void pep_arm(struct esca_table *t, struct uring_state *u)
{
	struct epoll_event evs[32];
	long n;

	do {
		n = esca_sys_epoll_wait(u->pepfd, evs, 32, 0);
		t->st.kernel_entries++;
		for (long i = 0; i < n; i++) {
			uint64_t v, fd = evs[i].data.u64;

			if (fd != PEP_EVFD) {
				if (fd < (uint64_t)t->nfds && t->fds[fd].armed) {
					t->fds[fd].armed = 0;	/* one-shot */
					u->narmed--;
				}
				continue;
			}
			/* reported readable, and only this thread reads it:
			 * the count, which nothing needs */
			(void)esca_sys_ret(syscall(SYS_read, u->evfd, &v,
						   sizeof(v)));
			t->st.kernel_entries++;
		}
	} while (n == 32);	/* n < 0 (EINTR): the next arm collects */
	for (uint32_t i = t->head; i != t->tail; i++) {
		struct esca_entry *e = esca__ent(t, i);

		if (e->state != ESCA_S_INFLIGHT || !esca__sends(e->op) ||
		    e->fd < 0 || e->fd >= t->nfds || t->fds[e->fd].armed)
			continue;
		if (esca__watch_room(t, u->pepfd, e->fd) == 0) {
			t->fds[e->fd].armed = 1;
			u->narmed++;
		}
	}
}

void esca__uring_disarm(struct esca_table *t, struct uring_state *u, int fd)
{
	struct epoll_event ev = { .events = 0, .data.u64 = (uint32_t)fd };

	/* kept in the set, watching nothing: the next park of fd is one MOD.
	 * Its failure (ENOENT: fd is no longer the file armed, which the set
	 * dropped with it) leaves nothing to watch either way */
	(void)esca_sys_epoll_ctl(u->pepfd, EPOLL_CTL_MOD, fd, &ev);
	t->st.kernel_entries++;
	t->fds[fd].armed = 0;
	u->narmed--;
}

/* The kernel signals the eventfd when the ring's task work list goes from
 * empty to not empty, and not while it is toggled off: work queued while it
 * was off, or whose edge another thread's wait took from a shared epoll set
 * while this thread was out of its wait, would wake nobody until the work
 * ran, and it runs only when this thread enters the ring.  So arming, once
 * the eventfd is on, looks at IORING_SQ_TASKRUN (set with
 * IORING_SETUP_TASKRUN_FLAG when work is queued on an empty list) and runs
 * that work itself: what is queued from then on signals the eventfd, and a
 * completion the run made wakes the wait.  The flag alone is no proof of
 * work: the kernel clears it before it runs the list and sets it for work
 * queued meanwhile, which the same run may take, so it can stay set with
 * nothing queued.  Writing the eventfd on it (as before) then woke every
 * wait at once and the flush found nothing: a pause with a send parked on a
 * peer that never read spun in its rounds, a cancel never acted (ppoll that
 * finds its fd ready restores the mask before a signal is delivered).  So
 * the flag is cleared here (the ring's flags are shared memory the kernel
 * only sets and clears bits of, atomically) before the entry that runs the
 * work: a flag set again after it is new work's. */
void esca__uring_progress_arm(struct esca_table *t, int on)
{
	struct uring_state *u = t->priv;
	unsigned *kflags = u ? u->ring.sq.kflags : NULL;
	struct __kernel_timespec zero = { 0, 0 };
	struct io_uring_cqe *cqe;
	uint64_t one = 1;
	int r;

	if (!u || u->evfd < 0)
		return;
	if (on && u->pepfd >= 0) {
		pep_arm(t, u);
	} else if (on) {
		/* the eventfd alone is the progress fd (pep_failed): the
		 * count the last signal left would wake a level-triggered
		 * wait (poll, select) at once.  Drained here, not by the
		 * waits: everywhere else their progress fd is an epoll set,
		 * whose read failed (EINVAL), an entry wasted each wake-up */
		uint64_t v;

		(void)esca_sys_ret(syscall(SYS_read, u->evfd, &v, sizeof(v)));
		t->st.kernel_entries++;
	}
	io_uring_cq_eventfd_toggle(&u->ring, on != 0);
	if (!on || !(IO_URING_READ_ONCE(*kflags) & IORING_SQ_TASKRUN))
		return;
	__atomic_fetch_and(kflags, ~(unsigned)IORING_SQ_TASKRUN,
			   __ATOMIC_SEQ_CST);
	if (u->outstanding == 0)
		return;		/* nothing in flight: no work of ours */
	/* every outstanding completion asked for, no wait: the kernel runs
	 * as much of the list (IO_LOCAL_TW_DEFAULT_MAX or that many) */
	r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, u->outstanding,
					     &zero, NULL);
	t->st.kernel_entries++;
	/* a completion to reap, or the entry failed (EINTR): the wait wakes
	 * at once and its flush does the rest */
	if (io_uring_cq_ready(&u->ring) || (r < 0 && r != -ETIME)) {
		(void)esca_sys_write(u->evfd, &one, sizeof(one));
		t->st.kernel_entries++;
	}
}

int esca__uring_owns_fd(struct esca_table *t, int fd)
{
	struct uring_state *u = t->priv;

	return u && fd >= 0 && (fd == u->ring.ring_fd || fd == u->evfd ||
				fd == u->pepfd);
}

/* ---- for esca doctor --------------------------------------------------- */

static const char *const opnames[] = {
	"NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED",
	"POLL_ADD", "POLL_REMOVE", "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG",
	"TIMEOUT", "TIMEOUT_REMOVE", "ACCEPT", "ASYNC_CANCEL", "LINK_TIMEOUT",
	"CONNECT", "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE", "STATX",
	"READ", "WRITE", "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2",
	"EPOLL_CTL", "SPLICE", "PROVIDE_BUFFERS", "REMOVE_BUFFERS", "TEE",
	"SHUTDOWN", "RENAMEAT", "UNLINKAT", "MKDIRAT", "SYMLINKAT", "LINKAT",
	"MSG_RING", "FSETXATTR", "SETXATTR", "FGETXATTR", "GETXATTR", "SOCKET",
	"URING_CMD", "SEND_ZC", "SENDMSG_ZC", "READ_MULTISHOT", "WAITID",
	"FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_WAITV", "FIXED_FD_INSTALL",
	"FTRUNCATE", "BIND", "LISTEN", "RECV_ZC", "EPOLL_WAIT", "READV_FIXED",
	"WRITEV_FIXED", "PIPE",
};

const char *esca_uring_opname(int opcode)
{
	if (opcode < 0 || (size_t)opcode >= sizeof(opnames) / sizeof(opnames[0]))
		return NULL;
	return opnames[opcode];
}

int esca_uring_probe(unsigned char *ops, int nops, int *last_op,
		     int *setsockopt_cmd, unsigned *setup_flags)
{
	struct io_uring ring;
	struct io_uring_probe *p;
	unsigned flags = 0;
	int r;

	if (ops && nops > 0)
		memset(ops, 0, (size_t)nops);
	if (setsockopt_cmd)
		*setsockopt_cmd = 0;
	r = esca__ring_setup(&ring, 8, &flags);
	if (r < 0)
		return r;
	if (setup_flags)
		*setup_flags = flags;
	p = io_uring_get_probe_ring(&ring);
	if (p) {
		if (last_op)
			*last_op = p->last_op;
		for (int i = 0; i < nops && i <= p->last_op; i++)
			ops[i] = io_uring_opcode_supported(p, i) ? 1 : 0;
		io_uring_free_probe(p);
	}
	if (setsockopt_cmd)
		*setsockopt_cmd = check_setsockopt(&ring);
	io_uring_queue_exit(&ring);
	return 0;
}
