/* SPDX-License-Identifier: MIT
 * test_rw.c - writes through the module as the system calls make them: the imported iovec (not a second read of user memory) with MAX_RW_COUNT truncation.
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no /dev/esca). */
#include <sys/prctl.h>

#include "lkm_test.h"

/* writev to a file with ->write but no ->write_iter (/proc/self/comm,
 * which takes any count and keeps 15 bytes) of iovecs whose total is past
 * MAX_RW_COUNT: the module's result is the plain writev(2)'s (the iovec as
 * imported, truncated at MAX_RW_COUNT), not more. */
static void test_iovec_truncated(void)
{
	size_t big = 3ul << 30;
	char *zeros = mmap(NULL, big, PROT_READ,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int fd = dev_open(), comm = open("/proc/self/comm", O_WRONLY | O_CLOEXEC);
	struct esca_lkm_entry *tab = table_map(4);
	struct iovec a[2] = { { zeros, big }, { (void *)"x", 1 } };
	struct iovec b[3] = { { (void *)"ab", 2 }, { zeros, big },
			      { (void *)"x", 1 } };
	char name[16] = "";
	ssize_t plain_a, plain_b;

	CHECK(zeros != MAP_FAILED && fd >= 0 && comm >= 0 && tab);
	CHECK(prctl(PR_GET_NAME, name) == 0);
	CHECK_EQ(reg(fd, tab, 4), 0);
	plain_a = writev(comm, a, 2);
	plain_b = writev(comm, b, 3);
	CHECK_EQ(plain_a, MAX_RW);
	CHECK_EQ(plain_b, MAX_RW);
	set_op(&tab[0], ESCA_LKM_WRITEV, comm);
	tab[0].iov = (uintptr_t)a;
	tab[0].iovcnt = 2;
	set_op(&tab[1], ESCA_LKM_WRITEV, comm);
	tab[1].iov = (uintptr_t)b;
	tab[1].iovcnt = 3;
	CHECK_EQ(flush(fd, 0, 2), 2);
	prctl(PR_SET_NAME, name);
	CHECK_EQ(tab[0].result, plain_a);
	CHECK_EQ(tab[1].result, plain_b);
	close(comm);
	close(fd);
	munmap(tab, 4 * ENT);
	munmap(zeros, big);
}

static const struct lkm_test tests[] = {
	{ "iovec_truncated", test_iovec_truncated },
};

int main(int argc, char **argv)
{
	return run_tests("lkm-rw", tests, sizeof(tests) / sizeof(tests[0]),
			 argc, argv);
}
