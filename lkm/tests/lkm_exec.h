/* SPDX-License-Identifier: MIT
 * lkm_exec.h - what the test_exec_* programs share: a table of the native
 * core's lkm executor whose completions land in results[] by user tag
 * (12345 until set).  One translation unit per program: static state. */
#ifndef LKM_EXEC_H
#define LKM_EXEC_H

#include <stdint.h>

#include "esca.h"

#define MAXR 8
static int64_t results[MAXR];

static void on_complete(void *ctx, uint64_t user, int op, int fd,
			int64_t result)
{
	(void)ctx, (void)op, (void)fd;
	if (user < MAXR)
		results[user] = result;
}

static inline struct esca_table *lkm_table(void)
{
	struct esca_config c = { .executor = ESCA_EXEC_LKM,
				 .complete = on_complete };
	int err = 0;

	for (int i = 0; i < MAXR; i++)
		results[i] = 12345;
	return esca_table_new(&c, &err);
}

#endif
