/* SPDX-License-Identifier: MIT
 * test_policy.c - a FLUSH never runs calls past the caller's syscall policy: under a seccomp filter, ptrace, syscall tracepoints or syscall audit rules it refuses (EACCES, entries left BUSY), and SHUTDOWN (whose LSM hook a module cannot reach) is not run by the module.
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no /dev/esca); a case this guest
 * cannot set up (no tracefs) prints "skip" and passes. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "lkm_test.h"
#include "seccomp_deny.h"

/* Child exit codes: 0 as wanted; otherwise where it went wrong. */
enum { C_OK = 0, C_SETUP = 10, C_FILTER, C_PLAIN_NOT_DENIED, C_FLUSH_RAN,
       C_NOT_BUSY, C_CLOSED, C_TRACE };

static int wait_child(pid_t pid)
{
	int st = 0;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	if (!WIFEXITED(st)) {
		fprintf(stderr, "[%s] child status %#x\n", cur, st);
		return -1;
	}
	if (WEXITSTATUS(st))
		fprintf(stderr, "[%s] child exit %d\n", cur, WEXITSTATUS(st));
	return WEXITSTATUS(st);
}

/* Nothing arrived at the read end (no data, no end of file). */
static int nothing_arrived(int fd)
{
	char b[16];
	ssize_t r = recv(fd, b, sizeof(b), MSG_DONTWAIT);

	if (r < 0 && errno == ENOTSOCK) {
		int fl = fcntl(fd, F_GETFL);

		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		r = read(fd, b, sizeof(b));
	}
	return r < 0 && errno == EAGAIN;
}

static int install_filter(void)
{
	static const int denied[] = { SYS_write, SYS_writev, SYS_sendto,
				      SYS_sendmsg, SYS_sendfile, SYS_close,
				      SYS_shutdown, SYS_fsync };

	return deny_syscalls(denied, sizeof(denied) / sizeof(denied[0]));
}

/* The device opened and the table registered before the filter (as the
 * auto executor does at startup), then a filter that refuses every op the
 * module runs: FLUSH must not write, send, close or shut down anything. */
static void test_seccomp(void)
{
	int p[2], sv[2];
	pid_t pid;

	CHECK(pipe(p) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int fd = dev_open(), x = dup(p[1]), r;
		struct esca_lkm_entry *tab = table_map(8);
		static struct iovec iov[8];

		if (fd < 0 || x < 0 || !tab || reg(fd, tab, 8) < 0)
			_exit(C_SETUP);
		if (install_filter() < 0)
			_exit(C_FILTER);
		if (write(p[1], "plain", 5) != -1 || errno != EPERM)
			_exit(C_PLAIN_NOT_DENIED);
		set_data(&tab[0], ESCA_LKM_WRITE, p[1], &iov[0], "leak", 4);
		set_data(&tab[1], ESCA_LKM_WRITEV, p[1], &iov[1], "leak", 4);
		set_data(&tab[2], ESCA_LKM_SEND, sv[0], &iov[2], "leak", 4);
		set_op(&tab[3], ESCA_LKM_CLOSE, x);
		set_op(&tab[4], ESCA_LKM_SHUTDOWN, sv[0]);
		tab[4].flags = SHUT_WR;
		r = flush(fd, 0, 5);
		if (r != -EACCES)
			_exit(C_FLUSH_RAN);
		for (int i = 0; i < 5; i++)
			if (tab[i].state != ESCA_LKM_BUSY)
				_exit(C_NOT_BUSY);
		if (fcntl(x, F_GETFD) < 0)
			_exit(C_CLOSED);
		_exit(C_OK);
	}
	CHECK_EQ(wait_child(pid), C_OK);
	CHECK(nothing_arrived(p[0]));
	CHECK(nothing_arrived(sv[1]));
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

/* A traced process (strace, a ptrace sandbox): FLUSH refuses. */
static void test_ptrace(void)
{
	int p[2];
	pid_t pid;

	CHECK(pipe(p) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int fd = dev_open();
		struct esca_lkm_entry *tab = table_map(4);
		static struct iovec iov;

		if (fd < 0 || !tab || reg(fd, tab, 4) < 0)
			_exit(C_SETUP);
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0)
			_exit(C_TRACE);
		set_data(&tab[0], ESCA_LKM_WRITE, p[1], &iov, "leak", 4);
		if (flush(fd, 0, 1) != -EACCES)
			_exit(C_FLUSH_RAN);
		_exit(tab[0].state == ESCA_LKM_BUSY ? C_OK : C_NOT_BUSY);
	}
	CHECK_EQ(wait_child(pid), C_OK);
	CHECK(nothing_arrived(p[0]));
	close(p[0]);
	close(p[1]);
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return -1;
	r = write(fd, s, strlen(s));
	close(fd);
	return r == (ssize_t)strlen(s) ? 0 : -1;
}

/* raw_syscalls tracepoints on (perf trace, bpftrace, Falco-style agents
 * see every system call there): FLUSH refuses, and runs again once they
 * are off. */
static void test_tracepoint(void)
{
	const char *en = "/sys/kernel/tracing/events/raw_syscalls/sys_enter/enable";
	int fd = dev_open(), p[2], r;
	struct esca_lkm_entry *tab = table_map(4);
	struct iovec iov;
	char b[8];

	CHECK(fd >= 0 && tab && pipe(p) == 0);
	CHECK_EQ(reg(fd, tab, 4), 0);
	if (access(en, W_OK) < 0)
		mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL);
	if (access(en, W_OK) < 0) {
		printf("skip lkm-policy/tracepoint: no %s (%s)\n", en,
		       strerror(errno));
		goto out;
	}
	CHECK(write_str(en, "1") == 0);
	set_data(&tab[0], ESCA_LKM_WRITE, p[1], &iov, "leak", 4);
	r = flush(fd, 0, 1);
	CHECK(write_str(en, "0") == 0);
	CHECK_EQ(r, -EACCES);
	CHECK_EQ(tab[0].state, ESCA_LKM_BUSY);
	CHECK(nothing_arrived(p[0]));
	CHECK_EQ(flush(fd, 0, 1), 1);
	CHECK_EQ(tab[0].result, 4);
	CHECK_EQ(read(p[0], b, sizeof(b)), 4);
out:
	close(p[0]);
	close(p[1]);
	close(fd);
	munmap(tab, 4 * ENT);
}

/* One audit netlink request; 0 or the kernel's -errno. */
static int audit_req(int nl, int type, const void *data, size_t len)
{
	static unsigned seq;
	struct {
		struct nlmsghdr h;
		char data[sizeof(struct audit_rule_data) + 64];
	} m;
	char reply[8192];
	struct nlmsghdr *h = (struct nlmsghdr *)reply;
	ssize_t n;

	memset(&m, 0, sizeof(m));
	m.h.nlmsg_len = NLMSG_LENGTH(len);
	m.h.nlmsg_type = (unsigned short)type;
	m.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	m.h.nlmsg_seq = ++seq;
	memcpy(NLMSG_DATA(&m.h), data, len);
	if (send(nl, &m, m.h.nlmsg_len, 0) < 0)
		return -errno;
	for (;;) {	/* skip anything but our ack */
		n = recv(nl, reply, sizeof(reply), 0);
		if (n < 0)
			return -errno;
		if (NLMSG_OK(h, (unsigned)n) && h->nlmsg_type == NLMSG_ERROR &&
		    h->nlmsg_seq == seq)
			return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
	}
}

static int audit_enable(int nl, int on)
{
	struct audit_status st = { .mask = AUDIT_STATUS_ENABLED,
				   .enabled = (unsigned)on };

	return audit_req(nl, AUDIT_SET, &st, sizeof(st));
}

/* always,exit for acct(2), which nothing here calls: any syscall rule
 * makes audit contexts record (non-dummy). */
static int audit_rule(int nl, int add)
{
	struct audit_rule_data r;

	memset(&r, 0, sizeof(r));
	r.flags = AUDIT_FILTER_EXIT;
	r.action = AUDIT_ALWAYS;
	r.mask[SYS_acct / 32] |= 1u << (SYS_acct % 32);
	return audit_req(nl, add ? AUDIT_ADD_RULE : AUDIT_DEL_RULE, &r,
			 sizeof(r));
}

/* A child's flush of one write to p[1]: its result or -errno. */
static int child_flush(int wfd)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = dev_open(), r;
		struct esca_lkm_entry *tab = table_map(4);
		static struct iovec iov;

		if (fd < 0 || !tab || reg(fd, tab, 4) < 0)
			_exit(C_SETUP);
		set_data(&tab[0], ESCA_LKM_WRITE, wfd, &iov, "a", 1);
		r = flush(fd, 0, 1);
		if (r == -EACCES)
			_exit(tab[0].state == ESCA_LKM_BUSY ? 50 : C_NOT_BUSY);
		_exit(r == 1 && tab[0].result == 1 ? 0 : C_FLUSH_RAN);
	}
	return wait_child(pid);
}

/* Syscall auditing with a rule loaded: FLUSH refuses in a process that
 * has an audit context (forked after audit was enabled); once the rules
 * are gone and audit is off again, such a process flushes as before. */
static void test_audit(void)
{
	int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT);
	int p[2], r1, r2;
	char b[8];

	CHECK(pipe(p) == 0);
	if (nl < 0 || audit_enable(nl, 1) < 0) {
		printf("skip lkm-policy/audit: audit netlink: %s\n",
		       strerror(errno));
		goto out;
	}
	if (audit_rule(nl, 1) < 0) {
		audit_enable(nl, 0);
		CHECK(!"an audit rule");
	}
	r1 = child_flush(p[1]);
	audit_rule(nl, 0);
	CHECK(audit_enable(nl, 0) == 0);
	r2 = child_flush(p[1]);
	CHECK_EQ(r1, 50);	/* refused, entry BUSY */
	CHECK_EQ(r2, 0);	/* ran */
	CHECK_EQ(read(p[0], b, sizeof(b)), 1);
out:
	if (nl >= 0)
		close(nl);
	close(p[0]);
	close(p[1]);
}

/* SHUTDOWN is not on the allow-list: security_socket_shutdown() is out of
 * a module's reach (kernel_sock_shutdown skips it), so an LSM that refuses
 * shutdown(2) would be bypassed.  The entry ends -EINVAL, the socket is
 * untouched; the user side runs shutdown as a plain system call. */
static void test_shutdown_not_run(void)
{
	int fd = dev_open(), sv[2];
	struct esca_lkm_entry *tab = table_map(4);

	CHECK(fd >= 0 && tab && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK_EQ(reg(fd, tab, 4), 0);
	set_op(&tab[0], ESCA_LKM_SHUTDOWN, sv[0]);
	tab[0].flags = SHUT_WR;
	CHECK_EQ(flush(fd, 0, 1), 1);
	CHECK_EQ(tab[0].state, ESCA_LKM_DONE);
	CHECK_EQ(tab[0].result, -EINVAL);
	CHECK(nothing_arrived(sv[1]));	/* no end of file: not shut down */
	close(sv[0]);
	close(sv[1]);
	close(fd);
	munmap(tab, 4 * ENT);
}

static const struct lkm_test tests[] = {
	{ "seccomp", test_seccomp },
	{ "ptrace", test_ptrace },
	{ "tracepoint", test_tracepoint },
	{ "audit", test_audit },
	{ "shutdown_not_run", test_shutdown_not_run },
};

int main(int argc, char **argv)
{
	return run_tests("lkm-policy", tests, sizeof(tests) / sizeof(tests[0]),
			 argc, argv);
}
