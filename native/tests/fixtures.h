/* SPDX-License-Identifier: MIT
 * fixtures.h - what test_core.c and test_flow.c share: a table whose
 * completions land in results[], one-iovec args, read until EOF, and the
 * cases test_flow.c defines. */
#ifndef ESCA_TEST_FIXTURES_H
#define ESCA_TEST_FIXTURES_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "esca.h"

#define MAXRES 8192
extern int64_t results[MAXRES];	/* by user tag, set by on_complete */
extern int ndone;

void on_complete(void *ctx, uint64_t user, int op, int fd, int64_t r);
struct esca_table *table(int kind, unsigned cap, size_t budget);
struct esca_args data(int op, int fd, const void *buf, size_t n,
		      struct iovec *iov);
ssize_t read_all(int fd, char *buf, size_t cap);

/* test_flow.c */
void test_short_socket(int kind);
void test_short_pipe(int kind);
void test_parked(int kind);
void test_borrow(int kind);
void test_borrow_pipe(int kind);
void test_arena_wrap(int kind);
void test_index_wrap(int kind);
void test_progress(int kind);

/* test_handover.c */
void test_hand_over(int kind);
void test_fd_abort(int kind);

#endif
