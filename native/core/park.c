/* SPDX-License-Identifier: MIT
 * park.c - entries parked in user space on a full fd, for the executors
 * that run sends in this process's context and stop at a full socket with
 * EAGAIN (lkm: the module stops; sequential: MSG_DONTWAIT):
 * esca__parking_init, esca__parking_release, esca__parking_fd,
 * esca__parking_progress_fd (the progress fd), esca__park,
 * esca__unpark_all, esca__park_harvest (DESIGN.md, "Contract: parked
 * sends").
 *
 * A parked entry stays ESCA_S_INFLIGHT with its progress (e->done), so it
 * counts as in flight for esca_table_inflight and esca_fd_inflight, and it
 * holds its key (order.h): what follows it on that open file stays behind
 * it, other fds go on.  Its fd is registered, EPOLLOUT | EPOLLONESHOT, in
 * an epoll fd of the executor's own, the progress fd: readable when a
 * parked fd can take bytes.  The next reaping flush collects those events
 * (esca__park_harvest, a zero timeout) and puts the entries of those fds
 * back in the queue; a waiting flush takes every parked entry back
 * (esca__unpark_all) and completes it, waiting for room as the plain call.
 */
#include <errno.h>
#include <sys/epoll.h>

#include "internal.h"
#include "sys.h"

#define PARK_WATCHED 1	/* its fd waits in epfd for room */
#define PARK_BLIND 2	/* no epfd could be made: tried again at each
			 * reaping flush */

int esca__parking_init(struct esca_table *t, struct esca_parking *p)
{
	p->epfd = -1;
	p->nparked = 0;
	p->nblind = 0;
	p->len = t->slots;
	p->parked = esca__zalloc(p->len);
	return p->parked ? 0 : -ENOMEM;
}

void esca__parking_release(struct esca_parking *p)
{
	if (p->epfd >= 0) {
		esca__fd_gone(p->epfd);
		esca_sys_close(p->epfd);
		p->epfd = -1;
	}
	esca__zfree(p->parked, p->len);
	p->parked = NULL;
}

/* The progress fd, made on first use.  A plain number, as the ring's fds:
 * a number past FD_SETSIZE would keep it out of a select() wait set
 * (native/preload/wait.c). */
int esca__parking_fd(struct esca_table *t, struct esca_parking *p)
{
	if (p->epfd < 0) {
		long fd;

		esca__fd_making(1);
		fd = esca_sys_epoll_create1(EPOLL_CLOEXEC);
		/* high and invisible to the program, like the ring's eventfd
		 * (below FD_SETSIZE: it must fit a select() set) */
		if (fd >= 0)
			fd = esca__fd_high((int)fd);
		esca__fd_making(0);
		t->st.kernel_entries++;
		if (fd < 0)
			return (int)fd;
		p->epfd = (int)fd;
	}
	return p->epfd;
}

/* The progress fd the waits watch: none while an entry is parked
 * unwatched (-EMFILE: the wait takes the timer's shots, whose reaping flush
 * parks it again, watched once the epoll fd exists), else the epoll fd. */
int esca__parking_progress_fd(struct esca_table *t, struct esca_parking *p)
{
	if (p->nblind)
		return -EMFILE;
	return esca__parking_fd(t, p);
}

long esca__watch_room(struct esca_table *t, int epfd, int fd)
{
	struct epoll_event ev = { .events = EPOLLOUT | EPOLLONESHOT,
				  .data.u64 = (uint64_t)(uint32_t)fd };
	long r;

	/* a registration left by an earlier park of this fd is disarmed
	 * (one-shot): re-arm it, else add one */
	r = esca_sys_epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
	t->st.kernel_entries++;
	if (r == -ENOENT) {
		r = esca_sys_epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
		t->st.kernel_entries++;
	}
	return r;
}

/* Park e.  Where its fd cannot be watched - no progress fd for want of a
 * number (EMFILE, ENFILE: the program holds every one), or epoll refuses it
 * (ENOSPC at max_user_watches, ENOMEM) - it parks unwatched: in flight as
 * any parked entry (what follows it on its fd waits behind it, a
 * non-blocking write after it is told EAGAIN, a sync waits for it alone),
 * and each reaping flush takes it back to try again (esca__park_harvest),
 * the timer's shot at the latest; while one is, the waits get no progress
 * fd (esca__parking_progress_fd).  Left queued, it was no parked send to
 * the rest of the library: writes after it were accepted, and a sync or
 * the exit's drain waited for every entry; completed in place, it blocked
 * the thread behind a peer that does not read (session 20's reviews).  One
 * attempt at the epoll fd a flush: after an unwatched park, the others
 * park so at once (esca__park_harvest takes them all back first). */
void esca__park(struct esca_table *t, struct esca_parking *p,
		struct esca_entry *e)
{
	uint8_t how = PARK_BLIND;

	if ((p->epfd >= 0 || !p->nblind) && esca__parking_fd(t, p) >= 0 &&
	    esca__watch_room(t, p->epfd, e->fd) == 0)
		how = PARK_WATCHED;
	e->need_poll = 0;
	if (e->state != ESCA_S_INFLIGHT) {
		e->state = ESCA_S_INFLIGHT;
		t->inflight++;
	}
	p->parked[e - t->ents] = how;
	p->nparked++;
	p->nblind += how == PARK_BLIND;
}

/* e, parked, goes back to the queue (its fd may have room). */
static void unpark(struct esca_table *t, struct esca_parking *p,
		   struct esca_entry *e, int need_poll)
{
	p->nblind -= p->parked[e - t->ents] == PARK_BLIND;
	p->parked[e - t->ents] = 0;
	p->nparked--;
	e->state = ESCA_S_QUEUED;
	e->need_poll = (uint8_t)need_poll;
	t->inflight--;
}

void esca__unpark_all(struct esca_table *t, struct esca_parking *p)
{
	for (uint32_t i = t->head; i != t->tail && p->nparked; i++) {
		struct esca_entry *e = esca__ent(t, i);

		if (!p->parked[e - t->ents])
			continue;
		if (p->parked[e - t->ents] == PARK_WATCHED) {
			esca_sys_epoll_ctl(p->epfd, EPOLL_CTL_DEL, e->fd, NULL);
			t->st.kernel_entries++;
		}
		unpark(t, p, e, 1);
	}
}

void esca__park_harvest(struct esca_table *t, struct esca_parking *p)
{
	struct epoll_event ev[64];
	long n;

	/* those parked unwatched (esca__park): all tried again; an epfd
	 * made since (numbers freed) has no registration of theirs */
	for (uint32_t i = t->head; i != t->tail && p->nblind; i++) {
		struct esca_entry *e = esca__ent(t, i);

		if (p->parked[e - t->ents] == PARK_BLIND)
			unpark(t, p, e, 0);
	}
	if (p->epfd < 0 || !p->nparked)
		return;
	do {
		n = esca_sys_epoll_wait(p->epfd, ev, 64, 0);
		t->st.kernel_entries++;
		if (n == -EINTR)
			continue;
		if (n < 0) {	/* should not happen: try them all */
			esca__unpark_all(t, p);
			return;
		}
		for (long j = 0; j < n; j++) {
			int fd = (int)ev[j].data.u64;

			for (uint32_t i = t->head; i != t->tail; i++) {
				struct esca_entry *e = esca__ent(t, i);

				if (p->parked[e - t->ents] && e->fd == fd)
					unpark(t, p, e, 0);
			}
		}
	} while ((n == 64 || n == -EINTR) && p->nparked);
}
