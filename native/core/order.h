/* SPDX-License-Identifier: MIT
 * order.h - which queued entries may go into an executor's round, written
 * once for every executor (DESIGN.md, "Contract: order"): esca__round_start,
 * esca__round_next, esca__round_hold, esca__round_admit.  Inline: they run
 * once per entry on every flush.  An executor's flush:
 *
 *	esca__round_start(t, &r, how);
 *	while (esca__round_next(t, &r, &turn)) {
 *		... turn.held = 1 for reasons of its own ...
 *		if (turn.held) { esca__round_hold(&turn); continue; }
 *		... hand turn.e to the kernel ...
 *		esca__round_admit(t, &r, &turn);
 *	}
 *
 * A queued entry is held (waits for a later round) while an earlier entry
 * of its key is held or in flight, while a sendfile admitted or held before
 * it still reads its fd, and (a sendfile) while an earlier op on the file
 * it reads is held (or, where a round's chains run side by side, pending at
 * all).  lkm/esca.c's hold() is the module's side of the same rule inside
 * one ESCA_IOC_FLUSH: the later entries of a key whose entry stopped short
 * stay BUSY, and lkm.c's next round takes them in order.
 */
#ifndef ESCA_ORDER_H
#define ESCA_ORDER_H

#include "internal.h"

#define ESCA_ROUND_SERIAL 1u	/* the kernel runs a round's entries one after
				 * another in table order (lkm); else each
				 * key's entries form a chain and the chains
				 * run side by side (uring) */
struct esca_round {
	uint32_t pos;		/* next table position to look at */
	unsigned how;		/* ESCA_ROUND_* */
};

struct esca_turn {
	struct esca_entry *e;	/* a queued entry */
	uint32_t pos;		/* its table position */
	struct esca_fd *f;	/* its key in this round */
	struct esca_fd *f2;	/* sendfile: the file it reads, else NULL */
	int held;		/* it waits for a later round */
};

/* fd's state in this round, reset on first use in it */
static inline struct esca_fd *esca__round_fd(struct esca_table *t, int fd)
{
	struct esca_fd *f = &t->fds[fd];

	if (f->mark != t->round) {
		f->mark = t->round;
		f->busy = ESCA_FD_FREE;
		f->readers = 0;
		f->tail = NULL;
	}
	return f;
}

static inline void esca__round_start(struct esca_table *t,
				     struct esca_round *r, unsigned how)
{
	t->round++;
	if (t->round == 0)
		t->round = 1;
	r->pos = t->head;
	r->how = how;
}

/* turn's entry waits for a later round, and so do the later entries of its
 * key and (a sendfile) the later writers of the file it reads. */
static inline void esca__round_hold(struct esca_turn *turn)
{
	turn->f->busy = ESCA_FD_HELD;
	if (turn->f2)
		turn->f2->readers = 1;
}

/* The next queued entry, in table order, and whether it is held.  An entry
 * in flight from an earlier round holds its key on the way.  0 at the end
 * of the table. */
static inline int esca__round_next(struct esca_table *t, struct esca_round *r,
				   struct esca_turn *turn)
{
	for (; r->pos != t->tail; r->pos++) {
		struct esca_entry *e = esca__ent(t, r->pos);
		struct esca_fd *f, *f2 = NULL;
		int held;

		if (e->state != ESCA_S_QUEUED && e->state != ESCA_S_INFLIGHT)
			continue;
		f = esca__round_fd(t, e->key);
		if (e->op == ESCA_OP_SENDFILE)
			f2 = esca__round_fd(t, e->fd2);
		turn->e = e;
		turn->pos = r->pos;
		turn->f = f;
		turn->f2 = f2;
		if (e->state == ESCA_S_INFLIGHT) {
			esca__round_hold(turn);
			continue;
		}
		held = f->busy == ESCA_FD_HELD;
		if (e->op != ESCA_OP_SENDFILE && f->readers)
			held = 1;	/* a pending sendfile still reads it */
		if (f2 && (r->how & ESCA_ROUND_SERIAL ?
			   f2->busy == ESCA_FD_HELD : f2->busy != ESCA_FD_FREE))
			held = 1;	/* an earlier op on the file is pending */
		turn->held = held;
		r->pos++;
		return 1;
	}
	return 0;
}

/* turn's entry goes into this round (its executor hands it to the kernel). */
static inline void esca__round_admit(struct esca_table *t,
				     const struct esca_round *r,
				     struct esca_turn *turn)
{
	turn->f->busy = ESCA_FD_CHAIN;
	if (turn->f2 && !(r->how & ESCA_ROUND_SERIAL))
		turn->f2->readers = 1;	/* its chain runs beside the file's */
	turn->e->state = ESCA_S_INFLIGHT;
	t->inflight++;
	t->st.entries_executed++;
}

/* The key of turn has an entry admitted in this round. */
static inline int esca__round_chained(const struct esca_turn *turn)
{
	return turn->f->busy == ESCA_FD_CHAIN;
}

#endif
