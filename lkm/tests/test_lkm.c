/* SPDX-License-Identifier: MIT
 * test_lkm.c - the esca kernel module against bad input and concurrent use,
 * through its raw ioctls (native/include/esca_lkm.h).  Every case must end
 * with an error code (in the ioctl or in the entry), never with a dead or
 * tainted kernel: the QEMU harness (lkm/qemu/run.sh) checks the guest's
 * kernel log afterwards.
 * Exit status: 0 pass, 1 fail, 77 skip (no /dev/esca). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lkm_test.h"

/* ---- registering ------------------------------------------------------- */

static void test_unregistered(void)
{
	int fd = dev_open();
	struct esca_lkm_flush f = { 0, 1, 0, 0 };

	CHECK(fd >= 0);
	CHECK_EQ(flush(fd, 0, 1), -EBADFD);
	CHECK_EQ(flush(fd, 0, 0), -EBADFD);
	CHECK_EQ(ioctl(fd, _IO(ESCA_IOC_MAGIC, 99), &f) < 0 ? -errno : 0,
		 -ENOTTY);
	CHECK_EQ(ioctl(fd, ESCA_IOC_FLUSH, NULL) < 0 ? -errno : 0, -EFAULT);
	CHECK_EQ(ioctl(fd, ESCA_IOC_REGISTER, (void *)KERNEL_ADDR) < 0 ? -errno : 0,
		 -EFAULT);
	close(fd);
}

static void test_register_bounds(void)
{
	int fd = dev_open();
	struct esca_lkm_entry *tab = table_map(64), *big;
	char path[] = "/tmp/esca-lkm-XXXXXX";
	void *shared;
	int ffd, r;
	void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *gone = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK(fd >= 0 && tab && ro != MAP_FAILED && gone != MAP_FAILED);
	munmap(gone, 4096);
	CHECK_EQ(reg(fd, tab, 0), -EINVAL);
	CHECK_EQ(reg(fd, tab, ESCA_LKM_MAX_ENTRIES + 1), -EINVAL);
	CHECK_EQ(reg(fd, tab, UINT32_MAX), -EINVAL);
	CHECK_EQ(reg_raw(fd, (uintptr_t)tab, 4, 32, 0), -EINVAL);
	CHECK_EQ(reg_raw(fd, (uintptr_t)tab, 4, ENT, 1), -EINVAL);
	CHECK_EQ(reg_raw(fd, (uintptr_t)tab + 1, 4, ENT, 0), -EINVAL);
	CHECK_EQ(reg_raw(fd, 0, 4, ENT, 0), -EFAULT);
	CHECK_EQ(reg_raw(fd, KERNEL_ADDR, 4, ENT, 0), -EFAULT);
	CHECK_EQ(reg_raw(fd, UINT64_MAX & ~7ull, 4, ENT, 0), -EFAULT);
	CHECK_EQ(reg_raw(fd, (uintptr_t)ro, 4, ENT, 0), -EFAULT);
	CHECK_EQ(reg_raw(fd, (uintptr_t)gone, 4, ENT, 0), -EFAULT);
	/* runs past the end of the mapping */
	big = table_map(2 * 4096 / ENT);
	CHECK(big);
	munmap((char *)big + 4096, 4096);
	CHECK_EQ(reg(fd, big, 2 * 4096 / ENT), -EFAULT);
	munmap(big, 4096);
	/* shared or file-backed memory: refused */
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(shared != MAP_FAILED);
	CHECK_EQ(reg(fd, shared, 4), -EINVAL);
	munmap(shared, 4096);
	ffd = mkstemp(path);
	CHECK(ffd >= 0 && ftruncate(ffd, 4096) == 0);
	unlink(path);
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ffd, 0);
	CHECK(shared != MAP_FAILED);
	r = reg(fd, shared, 4);
	CHECK(r == -EINVAL || r == -EFAULT);
	munmap(shared, 4096);
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, ffd, 0);
	CHECK(shared != MAP_FAILED);
	/* a private file mapping: pinned for writing, it is copied on write
	 * into anonymous memory: fine */
	r = dev_open();
	CHECK(r >= 0);
	CHECK_EQ(reg(r, shared, 4), 0);
	close(r);
	munmap(shared, 4096);
	close(ffd);
	/* unaligned to a page but to 8: fine, and only once */
	CHECK_EQ(reg_raw(fd, (uintptr_t)tab + 8, 63, ENT, 0), 0);
	CHECK_EQ(reg(fd, tab, 64), -EBUSY);
	close(fd);
	munmap(tab, 64 * ENT);
	munmap(ro, 4096);
}

static void test_flush_bounds(void)
{
	int fd = dev_open();
	struct esca_lkm_entry *tab = table_map(4);

	CHECK(fd >= 0 && tab);
	CHECK_EQ(reg(fd, tab, 4), 0);
	CHECK_EQ(flush(fd, 0, 5), -EINVAL);
	CHECK_EQ(flush(fd, 5, 0), -EINVAL);
	CHECK_EQ(flush(fd, 2, 3), -EINVAL);
	CHECK_EQ(flush(fd, UINT32_MAX, 2), -EINVAL);
	CHECK_EQ(flush(fd, 1, UINT32_MAX), -EINVAL);
	CHECK_EQ(flush_raw(fd, 0, 4, 1), -EINVAL);
	CHECK_EQ(flush(fd, 4, 0), 0);
	CHECK_EQ(flush(fd, 0, 4), 4);	/* nothing BUSY: nothing run */
	close(fd);
	munmap(tab, 4 * ENT);
}

/* ---- bad entries -------------------------------------------------------- */

static void test_bad_entries(void)
{
	enum { N = 32 };
	int fd = dev_open(), p[2], sv[2], wo;
	struct esca_lkm_entry *tab = table_map(N);
	struct iovec iov[N], many[8];
	char buf[64] = "hello", path[] = "/tmp/esca-lkm-XXXXXX";
	int i = 0, want[N];

	CHECK(fd >= 0 && tab);
	CHECK(pipe(p) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	wo = mkstemp(path);
	CHECK(wo >= 0);
	unlink(path);
	CHECK_EQ(reg(fd, tab, N), 0);
	for (int k = 0; k < 8; k++)
		many[k] = (struct iovec){ buf, 1 };

	set_op(&tab[i], 99, p[1]);			want[i++] = -EINVAL;
	set_op(&tab[i], ESCA_LKM_OP__COUNT, p[1]);	want[i++] = -EINVAL;
	set_op(&tab[i], ESCA_LKM_SETSOCKOPT, sv[0]);	want[i++] = -EINVAL;
	set_data(&tab[i], ESCA_LKM_WRITE, -1, &iov[i], buf, 1);
							want[i++] = -EBADF;
	set_data(&tab[i], ESCA_LKM_WRITE, 100000, &iov[i], buf, 1);
							want[i++] = -EBADF;
	set_data(&tab[i], ESCA_LKM_WRITE, p[1], &iov[i], buf, 1);
	tab[i].iov = (uintptr_t)many;
	tab[i].iovcnt = 2;				want[i++] = -EINVAL;
	set_data(&tab[i], ESCA_LKM_WRITEV, p[1], &iov[i], buf, 1);
	tab[i].iov = (uintptr_t)many;
	tab[i].iovcnt = 5000;				want[i++] = -EINVAL;
	set_data(&tab[i], ESCA_LKM_WRITEV, p[1], &iov[i], buf, 1);
	tab[i].iov = KERNEL_ADDR;			want[i++] = -EFAULT;
	set_data(&tab[i], ESCA_LKM_WRITEV, p[1], &iov[i], buf, 1);
	tab[i].iov = 0;					want[i++] = -EFAULT;
	set_data(&tab[i], ESCA_LKM_WRITE, p[1], &iov[i], (void *)KERNEL_ADDR, 16);
							want[i++] = -EFAULT;
	set_data(&tab[i], ESCA_LKM_SEND, sv[0], &iov[i], (void *)KERNEL_ADDR, 16);
							want[i++] = -EFAULT;
	set_data(&tab[i], ESCA_LKM_WRITE, p[1], &iov[i], buf, (size_t)SSIZE_MAX + 1);
							want[i++] = -EINVAL;
	set_data(&tab[i], ESCA_LKM_SEND, p[1], &iov[i], buf, 1);
							want[i++] = -ENOTSOCK;
	set_data(&tab[i], ESCA_LKM_SEND, sv[0], &iov[i], buf, 1);
	tab[i].flags = (int)0x80000000;			want[i++] = -EINVAL;
	set_data(&tab[i], ESCA_LKM_SENDMSG, sv[0], &iov[i], buf, 1);
	tab[i].flags = 0x10000;	/* MSG_SENDPAGE_NOPOLICY: kernel-internal */
							want[i++] = -EINVAL;
	set_op(&tab[i], ESCA_LKM_SENDFILE, sv[0]);
	tab[i].fd2 = wo;
	tab[i].offset = -5;
	tab[i].count = 1;				want[i++] = -EINVAL;
	set_op(&tab[i], ESCA_LKM_SENDFILE, sv[0]);
	tab[i].fd2 = wo;
	tab[i].count = UINT64_MAX;			want[i++] = -EINVAL;
	set_op(&tab[i], ESCA_LKM_SENDFILE, sv[0]);
	tab[i].fd2 = p[1];	/* not readable */
	tab[i].count = 1;				want[i++] = -EBADF;
	set_op(&tab[i], ESCA_LKM_SENDFILE, sv[0]);
	tab[i].fd2 = -7;
	tab[i].count = 1;				want[i++] = -EBADF;
	set_op(&tab[i], ESCA_LKM_SHUTDOWN, sv[0]);
	tab[i].flags = 42;				want[i++] = -EINVAL;
	set_op(&tab[i], ESCA_LKM_SHUTDOWN, sv[0]);	/* not run (test_policy) */
	tab[i].flags = SHUT_WR;				want[i++] = -EINVAL;
	set_op(&tab[i], ESCA_LKM_CLOSE, -1);		want[i++] = -EBADF;
	set_op(&tab[i], ESCA_LKM_FSYNC, p[1]);		want[i++] = -EINVAL;
	set_op(&tab[i], ESCA_LKM_FSYNC, 99999);		want[i++] = -EBADF;
	/* not BUSY: left alone */
	set_data(&tab[i], ESCA_LKM_WRITE, p[1], &iov[i], buf, 1);
	tab[i].state = ESCA_LKM_FREE;			want[i++] = 12345;
	/* a good one after all that */
	set_data(&tab[i], ESCA_LKM_WRITE, p[1], &iov[i], buf, 5);
							want[i++] = 5;
	CHECK_EQ(flush(fd, 0, (unsigned)i), i);
	for (int k = 0; k < i; k++) {
		if (tab[k].result != want[k] ||
		    tab[k].state != (want[k] == 12345 ? ESCA_LKM_FREE : ESCA_LKM_DONE)) {
			fprintf(stderr, "FAIL [%s] entry %d: result %lld state %u,"
				" want %d\n", cur, k, (long long)tab[k].result,
				tab[k].state, want[k]);
			failures++;
			return;
		}
	}
	CHECK_EQ(read(p[0], buf, sizeof(buf)), 5);
	CHECK(memcmp(buf, "hello", 5) == 0);
	close(fd);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
	close(wo);
	munmap(tab, N * ENT);
}

/* Random entries over sacrificial fds: any result, but a live kernel. */
static void test_garbage(void)
{
	enum { N = 16, ROUNDS = 400, BASE = 200, NFD = 6 };
	int fd = dev_open();
	struct esca_lkm_entry *tab = table_map(N);
	static char buf[8192];
	struct iovec iov[N * 4];
	void *gone = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t ptrs[] = { (uintptr_t)buf, 0, KERNEL_ADDR, (uintptr_t)gone,
			    (uintptr_t)iov, (uintptr_t)tab, 1 };
	unsigned seed = 12345;
	char path[] = "/tmp/esca-lkm-XXXXXX";
	int f = mkstemp(path);

	CHECK(fd >= 0 && tab && gone != MAP_FAILED && f >= 0);
	munmap(gone, 4096);
	unlink(path);
	CHECK_EQ(write(f, buf, sizeof(buf)), sizeof(buf));
	CHECK_EQ(reg(fd, tab, N), 0);
	for (int r = 0; r < ROUNDS; r++) {
		int p[2], sv[2];

		/* fds BASE..BASE+5: pipe, socketpair, file, a closed one */
		CHECK(pipe2(p, O_NONBLOCK) == 0);
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
		dup2(p[0], BASE);
		dup2(p[1], BASE + 1);
		dup2(sv[0], BASE + 2);
		dup2(sv[1], BASE + 3);
		dup2(f, BASE + 4);
		close(BASE + 5);
		close(p[0]);
		close(p[1]);
		close(sv[0]);
		close(sv[1]);
		for (int k = 0; k < N * 4; k++) {
			iov[k].iov_base = (void *)(uintptr_t)ptrs[rand_r(&seed) % 7];
			iov[k].iov_len = (size_t)(rand_r(&seed) % 3 ? (unsigned)rand_r(&seed) % 9000 :
						  (unsigned)rand_r(&seed) << 20);
		}
		for (int k = 0; k < N; k++) {
			struct esca_lkm_entry *e = &tab[k];

			memset(e, 0, ENT);
			e->op = (unsigned)rand_r(&seed) % (ESCA_LKM_OP__COUNT + 2);
			e->fd = BASE + rand_r(&seed) % NFD;
			e->fd2 = BASE + rand_r(&seed) % NFD;
			e->key = rand_r(&seed) % 4 ? e->fd : rand_r(&seed) % 3 - 1;
			e->flags = rand_r(&seed) % 4 ? rand_r(&seed) % 3 :
				   (int)((unsigned)rand_r(&seed) << 8);
			e->iovcnt = rand_r(&seed) % 4 ? 1 + (unsigned)rand_r(&seed) % 4 :
				    (unsigned)rand_r(&seed);
			e->iov = rand_r(&seed) % 5 ? (uintptr_t)&iov[rand_r(&seed) % N * 4]
						   : ptrs[rand_r(&seed) % 7];
			e->offset = rand_r(&seed) % 3 - 2;
			e->count = rand_r(&seed) % 2 ? (uint64_t)rand_r(&seed) % 10000 :
				   (uint64_t)rand_r(&seed) << 33;
			e->state = rand_r(&seed) % 8 ? ESCA_LKM_BUSY :
				   (unsigned)rand_r(&seed) % 4;
		}
		/* entries held behind a short one stay BUSY: any is fine */
		CHECK_EQ(flush(fd, 0, N), N);
	}
	for (int k = BASE; k < BASE + NFD; k++)
		close(k);
	close(f);
	close(fd);
	munmap(tab, N * ENT);
}

/* Fill a socket until it takes no more: the next send says EAGAIN. */
static int full_nonblocking_socketpair(int sv[2])
{
	char junk[4096] = { 0 };

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
		return -1;
	while (write(sv[0], junk, sizeof(junk)) > 0)
		;
	return 0;
}

#define BIGFILE (1 << 20)

/* Done with EAGAIN: nothing went, or some but not all. */
static int stopped_short(const struct esca_lkm_entry *e, long long asked)
{
	return e->result == -EAGAIN ||
	       (e->result >= 0 && e->result < asked && e->error == -EAGAIN);
}

/* An entry that stops short holds the later entries of its key (and a
 * sendfile its file): they stay BUSY; other keys go on. */
static void test_hold(void)
{
	int fd = dev_open(), a[2], b[2], p[2];
	struct esca_lkm_entry *tab = table_map(8);
	char path[] = "/tmp/esca-lkm-XXXXXX", buf[16];
	int f = mkstemp(path);
	struct iovec iov[8];

	CHECK(fd >= 0 && tab && f >= 0 && pipe(p) == 0);
	CHECK(full_nonblocking_socketpair(a) == 0);
	CHECK(full_nonblocking_socketpair(b) == 0);
	unlink(path);
	CHECK(ftruncate(f, BIGFILE) == 0);
	CHECK_EQ(reg(fd, tab, 8), 0);
	set_data(&tab[0], ESCA_LKM_SEND, a[0], &iov[0], "head", 4);
	set_data(&tab[1], ESCA_LKM_WRITE, p[1], &iov[1], "one", 3);
	set_data(&tab[2], ESCA_LKM_SEND, a[0], &iov[2], "tail", 4);
	set_op(&tab[3], ESCA_LKM_SENDFILE, b[0]);
	tab[3].fd2 = f;
	tab[3].offset = 0;
	tab[3].count = BIGFILE;
	set_op(&tab[4], ESCA_LKM_CLOSE, f);
	set_data(&tab[5], ESCA_LKM_WRITE, p[1], &iov[5], "two", 3);
	set_op(&tab[6], ESCA_LKM_SHUTDOWN, a[0]);	/* held: key a[0] */
	tab[6].flags = SHUT_WR;
	set_op(&tab[7], ESCA_LKM_FSYNC, f);		/* held: key f */
	CHECK_EQ(flush(fd, 0, 8), 8);
	CHECK_EQ(tab[0].state, ESCA_LKM_DONE);
	CHECK(stopped_short(&tab[0], 4));
	CHECK_EQ(tab[1].result, 3);
	CHECK_EQ(tab[2].state, ESCA_LKM_BUSY);
	CHECK_EQ(tab[3].state, ESCA_LKM_DONE);
	CHECK(stopped_short(&tab[3], BIGFILE));
	CHECK_EQ(tab[4].state, ESCA_LKM_BUSY);
	CHECK_EQ(tab[5].result, 3);
	CHECK_EQ(tab[6].state, ESCA_LKM_BUSY);
	CHECK_EQ(tab[7].state, ESCA_LKM_BUSY);
	CHECK(fcntl(f, F_GETFD) >= 0);	/* not closed */
	CHECK_EQ(read(p[0], buf, sizeof(buf)), 6);
	CHECK(memcmp(buf, "onetwo", 6) == 0);
	/* the next walk holds nothing from the last one; key -1: no order */
	tab[2].key = -1;
	CHECK_EQ(flush(fd, 0, 8), 8);
	CHECK(stopped_short(&tab[2], 4));
	CHECK_EQ(tab[4].result, 0);		/* the file is closed */
	CHECK_EQ(tab[6].result, -EINVAL);	/* ran: shutdown is not run */
	CHECK_EQ(tab[7].result, -EBADF);	/* after the close */
	close(fd);
	close(p[0]);
	close(p[1]);
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
	munmap(tab, 8 * ENT);
}

/* ---- lifetimes ---------------------------------------------------------- */

/* A forked child shares the fd, not the table: it may not flush it. */
static void test_fork_child(void)
{
	int fd = dev_open(), p[2], st = 0;
	struct esca_lkm_entry *tab = table_map(4);
	struct iovec iov;
	char buf[8];
	pid_t pid;

	CHECK(fd >= 0 && tab && pipe(p) == 0);
	CHECK_EQ(reg(fd, tab, 4), 0);
	set_data(&tab[0], ESCA_LKM_WRITE, p[1], &iov, "abc", 3);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int r = flush(fd, 0, 1);
		int r2 = reg(fd, tab, 4);

		_exit(r == -EPERM && r2 == -EBUSY ? 0 : 1);
	}
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ(tab[0].state, ESCA_LKM_BUSY);	/* the child ran nothing */
	CHECK_EQ(flush(fd, 0, 1), 1);
	CHECK_EQ(tab[0].result, 3);
	CHECK_EQ(read(p[0], buf, sizeof(buf)), 3);
	close(fd);
	close(p[0]);
	close(p[1]);
	munmap(tab, 4 * ENT);
}

/* The table unmapped while registered: the pinned pages are the module's
 * until close; the flush runs and writes there, harming nobody. */
static void test_unmapped_table(void)
{
	int fd = dev_open(), p[2];
	struct esca_lkm_entry *tab = table_map(4);
	static struct iovec iov;
	char buf[8];

	CHECK(fd >= 0 && tab && pipe(p) == 0);
	CHECK_EQ(reg(fd, tab, 4), 0);
	set_data(&tab[0], ESCA_LKM_WRITE, p[1], &iov, "xyz", 3);
	munmap(tab, 4 * ENT);
	CHECK_EQ(flush(fd, 0, 4), 4);
	CHECK_EQ(read(p[0], buf, sizeof(buf)), 3);
	close(fd);
	close(p[0]);
	close(p[1]);
}

/* A batch that closes /dev/esca itself: the context lives until the ioctl
 * returns, then goes. */
static void test_close_self(void)
{
	int fd = dev_open(), p[2];
	struct esca_lkm_entry *tab = table_map(4);
	struct iovec iov;
	char buf[8];

	CHECK(fd >= 0 && tab && pipe(p) == 0);
	CHECK_EQ(reg(fd, tab, 4), 0);
	set_op(&tab[0], ESCA_LKM_CLOSE, fd);
	set_data(&tab[1], ESCA_LKM_WRITE, p[1], &iov, "after", 5);
	CHECK_EQ(flush(fd, 0, 2), 2);
	CHECK_EQ(tab[0].result, 0);
	CHECK_EQ(tab[1].result, 5);
	CHECK_EQ(flush(fd, 0, 2), -EBADF);
	CHECK_EQ(read(p[0], buf, sizeof(buf)), 5);
	close(p[0]);
	close(p[1]);
	munmap(tab, 4 * ENT);
}

static void test_many_contexts(void)
{
	for (int i = 0; i < 300; i++) {
		int fd = dev_open();
		struct esca_lkm_entry *tab = table_map(256);

		CHECK(fd >= 0 && tab);
		CHECK_EQ(reg(fd, tab, 256), 0);
		if (i % 2)
			munmap(tab, 256 * ENT);	/* before close */
		close(fd);
		if (i % 2 == 0)
			munmap(tab, 256 * ENT);
	}
}

/* ---- signals ------------------------------------------------------------ */

static volatile sig_atomic_t alarmed;

static void on_alarm(int sig)
{
	(void)sig;
	alarmed = 1;
}

/* Fill a blocking socket so that the next send blocks. */
static int full_socketpair(int sv[2])
{
	char junk[4096] = { 0 };
	int fl;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -1;
	fl = fcntl(sv[0], F_GETFL);
	fcntl(sv[0], F_SETFL, fl | O_NONBLOCK);
	while (write(sv[0], junk, sizeof(junk)) > 0)
		;
	fcntl(sv[0], F_SETFL, fl);
	return 0;
}

/* A signal interrupts a blocked send: the flush returns, the entry that
 * did nothing is still BUSY, and runs in full on the next flush. */
static void test_signal(void)
{
	int fd = dev_open(), sv[2];
	struct esca_lkm_entry *tab = table_map(4);
	struct sigaction sa = { .sa_handler = on_alarm };	/* no SA_RESTART */
	static char big[100000];
	struct iovec iov;
	pid_t pid;
	int st;

	CHECK(fd >= 0 && tab && full_socketpair(sv) == 0);
	CHECK_EQ(reg(fd, tab, 4), 0);
	sigaction(SIGALRM, &sa, NULL);
	set_data(&tab[0], ESCA_LKM_SEND, sv[0], &iov, big, sizeof(big));
	alarmed = 0;
	alarm(1);
	CHECK_EQ(flush(fd, 0, 1), 0);
	CHECK(alarmed);
	CHECK_EQ(tab[0].state, ESCA_LKM_BUSY);
	pid = fork();	/* a reader drains the peer */
	CHECK(pid >= 0);
	if (pid == 0) {
		char b[65536];

		close(sv[0]);
		while (read(sv[1], b, sizeof(b)) > 0)
			;
		_exit(0);
	}
	close(sv[1]);
	CHECK_EQ(flush(fd, 0, 1), 1);
	CHECK_EQ(tab[0].result, sizeof(big));
	close(sv[0]);
	CHECK(waitpid(pid, &st, 0) == pid);
	signal(SIGALRM, SIG_DFL);
	close(fd);
	munmap(tab, 4 * ENT);
}

/* SIGKILL of a process blocked in a flush: it dies, the kernel lives. */
static void test_sigkill(void)
{
	int sv[2], st = 0;
	pid_t pid;

	CHECK(full_socketpair(sv) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int fd = dev_open();
		struct esca_lkm_entry *tab = table_map(4);
		static char big[100000];
		struct iovec iov;

		if (fd < 0 || !tab || reg(fd, tab, 4) < 0)
			_exit(2);
		set_data(&tab[0], ESCA_LKM_SEND, sv[0], &iov, big, sizeof(big));
		flush(fd, 0, 1);	/* blocks */
		_exit(3);
	}
	usleep(300000);
	kill(pid, SIGKILL);
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	close(sv[0]);
	close(sv[1]);
}

/* ---- concurrency -------------------------------------------------------- */

#define REC 32	/* bytes per record */

static int child_writer(const char *path, int id, int rounds)
{
	enum { N = 64 };
	int fd = dev_open(), out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	struct esca_lkm_entry *tab = table_map(N);
	static char rec[N][REC + 1];
	static struct iovec iov[N];

	if (fd < 0 || out < 0 || !tab || reg(fd, tab, N) < 0)
		return 2;
	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < N; k++) {
			snprintf(rec[k], sizeof(rec[k]), "p%d r%06d k%02d %*s\n", id,
				 r, k, REC - 16, "");
			set_data(&tab[k], k % 2 ? ESCA_LKM_WRITE : ESCA_LKM_WRITEV,
				 out, &iov[k], rec[k], REC);
		}
		if (flush(fd, 0, N) != N)
			return 3;
		for (int k = 0; k < N; k++)
			if (tab[k].state != ESCA_LKM_DONE || tab[k].result != REC)
				return 4;
	}
	close(out);
	close(fd);
	return 0;
}

/* Two processes, each with its own context, flushing at the same time. */
static void test_two_processes(void)
{
	enum { ROUNDS = 300 };
	const char *paths[2] = { "/tmp/esca-lkm-p0", "/tmp/esca-lkm-p1" };
	pid_t pids[2];

	for (int i = 0; i < 2; i++) {
		pids[i] = fork();
		CHECK(pids[i] >= 0);
		if (pids[i] == 0)
			_exit(child_writer(paths[i], i, ROUNDS));
	}
	for (int i = 0; i < 2; i++) {
		int st = 0;

		CHECK(waitpid(pids[i], &st, 0) == pids[i]);
		CHECK(WIFEXITED(st));
		CHECK_EQ(WEXITSTATUS(st), 0);
	}
	for (int i = 0; i < 2; i++) {
		struct stat s;
		FILE *f = fopen(paths[i], "r");
		char line[REC + 8], want[REC + 8];

		CHECK(f && stat(paths[i], &s) == 0);
		CHECK_EQ(s.st_size, (long long)ROUNDS * 64 * REC);
		for (int r = 0; r < ROUNDS; r++) {
			for (int k = 0; k < 64; k++) {
				snprintf(want, sizeof(want), "p%d r%06d k%02d %*s\n",
					 i, r, k, REC - 16, "");
				CHECK(fgets(line, sizeof(line), f));
				CHECK(strcmp(line, want) == 0);
			}
		}
		fclose(f);
		unlink(paths[i]);
	}
}

/* Two threads flushing one context at once: each BUSY entry runs once. */
struct shared {
	int fd;
	volatile int stop;
};

static void *flusher(void *arg)
{
	struct shared *s = arg;

	while (!s->stop)
		flush(s->fd, 0, 16);
	return NULL;
}

static void test_threads_one_context(void)
{
	enum { N = 16, ROUNDS = 500 };
	struct shared s = { .fd = dev_open() };
	struct esca_lkm_entry *tab = table_map(N);
	static struct iovec iov[N];
	char path[] = "/tmp/esca-lkm-XXXXXX";
	int out = mkstemp(path);
	pthread_t th;

	CHECK(s.fd >= 0 && tab && out >= 0);
	unlink(path);
	CHECK_EQ(reg(s.fd, tab, N), 0);
	CHECK(pthread_create(&th, NULL, flusher, &s) == 0);
	for (int r = 0; r < ROUNDS; r++) {
		for (int k = 0; k < N; k++)
			set_data(&tab[k], ESCA_LKM_WRITE, out, &iov[k], "0123456789", 10);
		CHECK_EQ(flush(s.fd, 0, N), N);
		for (int k = 0; k < N; k++)
			CHECK_EQ(tab[k].result, 10);
	}
	s.stop = 1;
	pthread_join(th, NULL);
	CHECK_EQ(lseek(out, 0, SEEK_END), (long long)ROUNDS * N * 10);
	close(out);
	close(s.fd);
	munmap(tab, N * ENT);
}

static const struct lkm_test tests[] = {
	{ "unregistered_flush", test_unregistered },
	{ "register_bounds", test_register_bounds },
	{ "flush_bounds", test_flush_bounds },
	{ "bad_entries", test_bad_entries },
	{ "garbage", test_garbage },
	{ "hold", test_hold },
	{ "fork_child", test_fork_child },
	{ "unmapped_table", test_unmapped_table },
	{ "close_self", test_close_self },
	{ "many_contexts", test_many_contexts },
	{ "signal", test_signal },
	{ "sigkill", test_sigkill },
	{ "two_processes", test_two_processes },
	{ "threads_one_context", test_threads_one_context },
};

/* test_lkm [TEST...]: the tests named (default: every one). */
int main(int argc, char **argv)
{
	return run_tests("lkm-input", tests, sizeof(tests) / sizeof(tests[0]),
			 argc, argv);
}
