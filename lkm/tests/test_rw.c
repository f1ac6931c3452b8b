/* SPDX-License-Identifier: MIT
 * test_rw.c - writes through the module as the system calls make them: the imported iovec (not a second read of user memory) with MAX_RW_COUNT truncation, and /proc/self/io's wchar/syscw (rchar for sendfile) counted.
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no /dev/esca). */
#include <sys/prctl.h>
#include <sys/sendfile.h>

#include "lkm_test.h"

struct io { long long rchar, wchar, syscr, syscw; };

static int read_io(struct io *io)
{
	FILE *f = fopen("/proc/self/io", "re");
	char key[32];
	long long v;
	int n = 0;

	if (!f)
		return -1;
	while (fscanf(f, "%31[^:]: %lld\n", key, &v) == 2) {
		if (!strcmp(key, "rchar"))
			io->rchar = v, n++;
		else if (!strcmp(key, "wchar"))
			io->wchar = v, n++;
		else if (!strcmp(key, "syscr"))
			io->syscr = v, n++;
		else if (!strcmp(key, "syscw"))
			io->syscw = v, n++;
	}
	fclose(f);
	return n == 4 ? 0 : -1;
}

/* A 1 MiB write and a 3-part writev to /dev/null: wchar grows by the
 * bytes, syscw by one per entry, as write(2) and writev(2) count them. */
static void test_io_write(void)
{
	static char buf[1 << 20];
	int fd = dev_open(), null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	struct esca_lkm_entry *tab = table_map(4);
	struct iovec iov[4], v3[3] = { { buf, 100 }, { buf, 0 }, { buf, 23 } };
	struct io a, b;

	CHECK(fd >= 0 && null >= 0 && tab);
	CHECK_EQ(reg(fd, tab, 4), 0);
	set_data(&tab[0], ESCA_LKM_WRITE, null, &iov[0], buf, sizeof(buf));
	set_data(&tab[1], ESCA_LKM_WRITEV, null, &iov[1], buf, 1);
	tab[1].iov = (uintptr_t)v3;
	tab[1].iovcnt = 3;
	CHECK(read_io(&a) == 0);
	CHECK_EQ(flush(fd, 0, 2), 2);
	CHECK(read_io(&b) == 0);
	CHECK_EQ(tab[0].result, sizeof(buf));
	CHECK_EQ(tab[1].result, 123);
	CHECK_EQ(b.wchar - a.wchar, sizeof(buf) + 123);
	CHECK_EQ(b.syscw - a.syscw, 2);
	close(null);
	close(fd);
	munmap(tab, 4 * ENT);
}

/* A 64 KiB sendfile from a file to /dev/null: what sendfile(2) counts,
 * the bytes read and written, one read and one write call. */
static void test_io_sendfile(void)
{
	enum { N = 65536 };
	static char buf[N];
	char path[] = "/tmp/esca-rw-XXXXXX";
	int fd = dev_open(), null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	int f = mkstemp(path);
	struct esca_lkm_entry *tab = table_map(4);
	struct io a, b, c;
	off_t off = 0;

	CHECK(fd >= 0 && null >= 0 && f >= 0 && tab);
	unlink(path);
	CHECK_EQ(write(f, buf, N), N);
	CHECK_EQ(reg(fd, tab, 4), 0);
	set_op(&tab[0], ESCA_LKM_SENDFILE, null);
	tab[0].fd2 = f;
	tab[0].offset = 0;
	tab[0].count = N;
	CHECK(read_io(&a) == 0);
	CHECK_EQ(flush(fd, 0, 1), 1);
	CHECK(read_io(&b) == 0);
	CHECK_EQ(tab[0].result, N);
	/* the plain call, for the reading of /proc/self/io's own share */
	CHECK_EQ(sendfile(null, f, &off, N), N);
	CHECK(read_io(&c) == 0);
	CHECK_EQ(b.wchar - a.wchar, N);
	CHECK_EQ(b.syscw - a.syscw, c.syscw - b.syscw);
	/* reading /proc/self/io counts too, a digit more or less */
	CHECK(b.rchar - a.rchar >= N && b.rchar - a.rchar <= c.rchar - b.rchar + 8 &&
	      b.rchar - a.rchar >= c.rchar - b.rchar - 8);
	CHECK_EQ(b.syscr - a.syscr, c.syscr - b.syscr);
	close(f);
	close(null);
	close(fd);
	munmap(tab, 4 * ENT);
}

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
	{ "io_write", test_io_write },
	{ "io_sendfile", test_io_sendfile },
	{ "iovec_truncated", test_iovec_truncated },
};

int main(int argc, char **argv)
{
	return run_tests("lkm-rw", tests, sizeof(tests) / sizeof(tests[0]),
			 argc, argv);
}
