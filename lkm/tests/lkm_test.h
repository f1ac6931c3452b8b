/* SPDX-License-Identifier: MIT
 * lkm_test.h - helpers shared by the esca kernel module's guest tests
 * (lkm/tests/test_NAME.c): raw ioctls on /dev/esca, table entries, checks, and a
 * runner.  Each test program is standalone: exit 0 pass, 1 fail, 77 skip
 * (no /dev/esca); a case that cannot run in this guest prints "skip". */
#ifndef LKM_TEST_H
#define LKM_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "esca_lkm.h"

/* CHECK, CHECK_EQ: native/tests/helpers.h, the one set for every C test
 * program; each lkm test is one translation unit, so its counters are here. */
#define TEST_COUNTERS_HERE
#include "helpers.h"
#define failures test_failures
#define cur test_context

#define KERNEL_ADDR 0xffff888000000000ull
#define ENT sizeof(struct esca_lkm_entry)
/* The kernel's MAX_RW_COUNT with 4 KiB pages. */
#define MAX_RW (0x7fffffffL & ~4095L)

static inline int dev_open(void)
{
	return open(ESCA_LKM_DEVICE, O_RDWR | O_CLOEXEC);
}

static inline struct esca_lkm_entry *table_map(unsigned n)
{
	void *p = mmap(NULL, n * ENT, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static inline int reg_raw(int fd, uint64_t table, unsigned n, unsigned size,
			  unsigned flags)
{
	struct esca_lkm_register r = { .table = table, .nents = n,
				       .entry_size = size, .flags = flags };

	return ioctl(fd, ESCA_IOC_REGISTER, &r) < 0 ? -errno : 0;
}

static inline int reg(int fd, struct esca_lkm_entry *tab, unsigned n)
{
	return reg_raw(fd, (uintptr_t)tab, n, ENT, 0);
}

static inline int flush_raw(int fd, unsigned first, unsigned count,
			    unsigned flags)
{
	struct esca_lkm_flush f = { .first = first, .count = count,
				    .flags = flags };
	int r = ioctl(fd, ESCA_IOC_FLUSH, &f);

	return r < 0 ? -errno : r;
}

static inline int flush(int fd, unsigned first, unsigned count)
{
	return flush_raw(fd, first, count, 0);
}

/* An entry of a one-buffer op (iov is where its iovec lives). */
static inline void set_data(struct esca_lkm_entry *e, int op, int fd,
			    struct iovec *iov, const void *buf, size_t len)
{
	iov->iov_base = (void *)buf;
	iov->iov_len = len;
	memset(e, 0, ENT);
	e->op = op;
	e->fd = fd;
	e->key = fd;
	e->iov = (uintptr_t)iov;
	e->iovcnt = 1;
	e->result = 12345;
	e->state = ESCA_LKM_BUSY;
}

static inline void set_op(struct esca_lkm_entry *e, int op, int fd)
{
	memset(e, 0, ENT);
	e->op = op;
	e->fd = fd;
	e->key = fd;
	e->result = 12345;
	e->state = ESCA_LKM_BUSY;
}

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

typedef void (*test_fn)(void);
struct lkm_test {
	const char *name;
	test_fn fn;
};

/* Run the tests named in argv (default: every one), printing
 * "ok   PREFIX/name" or "FAIL PREFIX/name"; the exit status. */
static inline int run_tests(const char *prefix, const struct lkm_test *tests,
			    size_t n, int argc, char **argv)
{
	int fd = dev_open(), ran = 0;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (fd < 0) {
		printf("SKIP %s: %s: %s\n", prefix, ESCA_LKM_DEVICE,
		       strerror(errno));
		return 77;
	}
	close(fd);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < n; i++) {
		int before = failures, want = argc < 2;

		for (int a = 1; a < argc; a++)
			want |= !strcmp(argv[a], tests[i].name);
		if (!want)
			continue;
		cur = tests[i].name;
		tests[i].fn();
		printf("%s %s/%s\n", failures == before ? "ok  " : "FAIL",
		       prefix, cur);
		ran++;
	}
	printf("%s: %d passed, %d failed\n", prefix, ran - failures, failures);
	return failures ? 1 : 0;
}

#endif /* LKM_TEST_H */
