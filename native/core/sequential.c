/* SPDX-License-Identifier: MIT
 * sequential.c - the reference executor: every entry, in table order, as
 * the plain system call (short writes completed).  It is the oracle the
 * other executors are compared with, and the fallback where io_uring is
 * refused.  One kernel entry (or more) per op: it saves nothing. */
#include "internal.h"

static int seq_init(struct esca_table *t)
{
	t->caps |= ESCA_CAP_RECV | ESCA_CAP_OWN_PROGRESS;
	return 0;
}

static void seq_nop(struct esca_table *t)
{
	(void)t;
}

static int seq_flush(struct esca_table *t, unsigned mode)
{
	if (mode == ESCA_FLUSH_TRY)	/* a signal handler's: never blocks */
		esca__try_queued_direct(t);
	else	/* every op completes before the next starts */
		esca__run_queued_direct(t, 0);
	return 0;
}

const struct esca_executor esca__sequential = {
	.name = "sequential",
	.init = seq_init,
	.fini = seq_nop,
	.abandon = seq_nop,
	.flush = seq_flush,
};
