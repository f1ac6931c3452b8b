/* SPDX-License-Identifier: MIT
 * test_args.c - ioctl arguments are copied from user space before the context lock: a thread whose FLUSH argument faults on a userfaultfd page (never served) must not stall another thread's FLUSH of the same context.
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no /dev/esca); without
 * userfaultfd the case prints "skip" and passes. */
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sys/syscall.h>

#include "lkm_test.h"

struct stalled {
	int fd;
	void *arg;	/* a struct esca_lkm_flush on a userfaultfd page */
	int r;
};

static void *stalled_flush(void *p)
{
	struct stalled *s = p;

	s->r = ioctl(s->fd, ESCA_IOC_FLUSH, s->arg) < 0 ? -errno : 0;
	return NULL;
}

static void on_alarm(int sig)
{
	(void)sig;
}

static void test_uffd_arg(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	int fd = dev_open(), p[2], uffd, r;
	struct esca_lkm_entry *tab = table_map(4);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register ur;
	struct uffdio_zeropage zp;
	struct sigaction sa = { .sa_handler = on_alarm };	/* no restart */
	struct stalled s;
	struct iovec iov;
	pthread_t th;
	char *page;
	char b[8];

	CHECK(fd >= 0 && tab && pipe(p) == 0);
	CHECK_EQ(reg(fd, tab, 4), 0);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0) {
		printf("skip lkm-args/uffd_arg: userfaultfd: %s\n", strerror(errno));
		goto out;
	}
	page = mmap(NULL, pg, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(page != MAP_FAILED);
	ur = (struct uffdio_register){ .range = { (uintptr_t)page, pg },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	CHECK(ioctl(uffd, UFFDIO_REGISTER, &ur) == 0);
	s = (struct stalled){ .fd = fd, .arg = page, .r = 1 };
	CHECK(pthread_create(&th, NULL, stalled_flush, &s) == 0);
	sleep_ms(200);	/* the thread is in the fault */
	/* this thread's flush: at once, or (lock held across the fault)
	 * interrupted by the alarm after 2 s */
	sigaction(SIGALRM, &sa, NULL);
	set_data(&tab[0], ESCA_LKM_WRITE, p[1], &iov, "go", 2);
	alarm(2);
	r = flush(fd, 0, 1);
	alarm(0);
	/* serve the fault: the stalled flush reads zeros (count 0) */
	zp = (struct uffdio_zeropage){ .range = { (uintptr_t)page, pg } };
	ioctl(uffd, UFFDIO_ZEROPAGE, &zp);
	pthread_join(th, NULL);
	signal(SIGALRM, SIG_DFL);
	CHECK_EQ(r, 1);
	CHECK_EQ(tab[0].result, 2);
	CHECK_EQ(read(p[0], b, sizeof(b)), 2);
	CHECK_EQ(s.r, 0);
	munmap(page, pg);
	close(uffd);
out:
	close(p[0]);
	close(p[1]);
	close(fd);
	munmap(tab, 4 * ENT);
}

static const struct lkm_test tests[] = {
	{ "uffd_arg", test_uffd_arg },
};

int main(int argc, char **argv)
{
	return run_tests("lkm-args", tests, sizeof(tests) / sizeof(tests[0]),
			 argc, argv);
}
