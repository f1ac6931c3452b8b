/* SPDX-License-Identifier: MIT
 * test_exec_policy.c - the core's lkm executor when FLUSH refuses (seccomp filter, ptrace): the entries run as plain system calls, so a filter's EPERM reaches each result and a traced process's writes still happen, and the flush succeeds.
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no /dev/esca). */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "esca.h"
#include "lkm_test.h"
#include "seccomp_deny.h"
#include "lkm_exec.h"


static int deny_writes(void)
{
	static const int denied[] = { SYS_write, SYS_writev, SYS_sendto,
				      SYS_sendmsg, SYS_shutdown };

	return deny_syscalls(denied, sizeof(denied) / sizeof(denied[0]));
}

static int child_status(pid_t pid)
{
	int st = 0;

	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	if (WEXITSTATUS(st))
		fprintf(stderr, "[%s] child exit %d\n", cur, WEXITSTATUS(st));
	return WEXITSTATUS(st);
}

/* The table made before the filter: write, send and shutdown end with
 * the filter's EPERM, as plain calls would, and nothing arrives. */
static void test_seccomp_plain(void)
{
	int p[2], sv[2];
	pid_t pid;
	char b[8];

	CHECK(pipe(p) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	pid = fork();
	if (pid == 0) {
		struct esca_table *t = lkm_table();
		struct iovec one = { (void *)"x", 1 }, two = { (void *)"y", 1 };
		struct esca_args a = { .op = ESCA_OP_WRITE, .fd = p[1],
				       .iov = &one, .iovcnt = 1 };

		if (!t)
			_exit(10);
		if (deny_writes() < 0)
			_exit(11);
		if (esca_queue(t, &a, 0, 0) != 1)
			_exit(12);
		a = (struct esca_args){ .op = ESCA_OP_SEND, .fd = sv[0],
					.iov = &two, .iovcnt = 1 };
		if (esca_queue(t, &a, 0, 1) != 1)
			_exit(13);
		a = (struct esca_args){ .op = ESCA_OP_SHUTDOWN, .fd = sv[0],
					.flags = SHUT_WR };
		if (esca_queue(t, &a, 0, 2) != 0)
			_exit(14);
		if (esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT) != 3)
			_exit(15);
		for (int i = 0; i < 3; i++)
			if (results[i] != -EPERM)
				_exit(16 + i);
		if (esca_table_stats(t)->fallbacks < 3)
			_exit(20);
		esca_table_abandon(t);
		_exit(0);
	}
	CHECK_EQ(child_status(pid), 0);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	CHECK(read(p[0], b, sizeof(b)) < 0 && errno == EAGAIN);
	CHECK(recv(sv[1], b, sizeof(b), MSG_DONTWAIT) < 0 && errno == EAGAIN);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

/* A traced process: the writes happen, as plain calls the tracer sees. */
static void test_ptrace_plain(void)
{
	int p[2];
	pid_t pid;
	char b[8];

	CHECK(pipe(p) == 0);
	pid = fork();
	if (pid == 0) {
		struct esca_table *t = lkm_table();
		struct iovec one = { (void *)"tr", 2 };
		struct esca_args a = { .op = ESCA_OP_WRITE, .fd = p[1],
				       .iov = &one, .iovcnt = 1 };

		if (!t)
			_exit(10);
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0)
			_exit(11);
		if (esca_queue(t, &a, 0, 0) != 2)
			_exit(12);
		if (esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT) != 1)
			_exit(13);
		if (results[0] != 2)
			_exit(14);
		if (esca_table_stats(t)->fallbacks < 1)
			_exit(15);
		esca_table_free(t);
		_exit(0);
	}
	CHECK_EQ(child_status(pid), 0);
	CHECK_EQ(read(p[0], b, sizeof(b)), 2);
	close(p[0]);
	close(p[1]);
}

static const struct lkm_test tests[] = {
	{ "seccomp_plain", test_seccomp_plain },
	{ "ptrace_plain", test_ptrace_plain },
};

int main(int argc, char **argv)
{
	return run_tests("lkm-exec-policy", tests,
			 sizeof(tests) / sizeof(tests[0]), argc, argv);
}
