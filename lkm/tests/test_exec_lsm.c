/* SPDX-License-Identifier: MIT
 * test_exec_lsm.c - shutdown under an LSM that refuses it (a BPF LSM program on socket_shutdown returning -EPERM): a SHUTDOWN entry must not shut the socket down, and the core's lkm executor's shutdown ends with the LSM's EPERM, as the plain call does.
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no /dev/esca); where the guest
 * cannot load the program (no BTF, BPF LSM not active) the case prints
 * "skip" and passes. */
#include <linux/bpf.h>
#include <linux/btf.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "esca.h"
#include "lkm_test.h"

/* The BTF type id of the function `name` in the kernel's BTF, or -1. */
static int btf_func_id(const char *name)
{
	int fd = open("/sys/kernel/btf/vmlinux", O_RDONLY | O_CLOEXEC);
	static char data[16 << 20];
	const struct btf_header *h = (const void *)data;
	const char *types, *strs, *p, *end;
	ssize_t n, got = 0;
	int id = 1;

	if (fd < 0)
		return -1;
	while ((n = read(fd, data + got, sizeof(data) - (size_t)got)) > 0)
		got += n;
	close(fd);
	if (got < (ssize_t)sizeof(*h) || h->magic != BTF_MAGIC)
		return -1;
	types = data + h->hdr_len + h->type_off;
	strs = data + h->hdr_len + h->str_off;
	end = types + h->type_len;
	for (p = types; p + sizeof(struct btf_type) <= end; id++) {
		const struct btf_type *t = (const void *)p;
		unsigned vlen = BTF_INFO_VLEN(t->info);
		size_t extra = 0;

		switch (BTF_INFO_KIND(t->info)) {
		case BTF_KIND_INT: extra = 4; break;
		case BTF_KIND_ARRAY: extra = sizeof(struct btf_array); break;
		case BTF_KIND_STRUCT:
		case BTF_KIND_UNION: extra = vlen * sizeof(struct btf_member); break;
		case BTF_KIND_ENUM: extra = vlen * sizeof(struct btf_enum); break;
		case BTF_KIND_FUNC_PROTO: extra = vlen * sizeof(struct btf_param); break;
		case BTF_KIND_VAR: extra = sizeof(struct btf_var); break;
		case BTF_KIND_DATASEC: extra = vlen * sizeof(struct btf_var_secinfo); break;
		case BTF_KIND_DECL_TAG: extra = sizeof(struct btf_decl_tag); break;
		case BTF_KIND_ENUM64: extra = vlen * sizeof(struct btf_enum64); break;
		default: break;	/* PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT */
		}
		if (BTF_INFO_KIND(t->info) == BTF_KIND_FUNC &&
		    t->name_off < h->str_len && !strcmp(strs + t->name_off, name))
			return id;
		p += sizeof(*t) + extra;
	}
	return -1;
}

/* Attach "return -EPERM" to the socket_shutdown LSM hook: the link's fd
 * (close it to detach), or -1 with the reason in *why. */
static int deny_shutdown(const char **why)
{
	struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0,
		  .imm = -EPERM },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	static char log[4096];
	union bpf_attr a;
	int id = btf_func_id("bpf_lsm_socket_shutdown"), pfd, lfd;

	if (id < 0) {
		*why = "no bpf_lsm_socket_shutdown in /sys/kernel/btf/vmlinux";
		return -1;
	}
	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_LSM;
	a.expected_attach_type = BPF_LSM_MAC;
	a.insns = (uintptr_t)prog;
	a.insn_cnt = 2;
	a.license = (uintptr_t)"GPL";
	a.attach_btf_id = (unsigned)id;
	a.log_buf = (uintptr_t)log;
	a.log_size = sizeof(log);
	a.log_level = 1;
	pfd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof(a));
	if (pfd < 0) {
		int e = errno;

		printf("# BPF_PROG_LOAD (btf id %d): %s\n%s\n", id, strerror(e), log);
		errno = e;
		*why = "BPF_PROG_LOAD refused";
		return -1;
	}
	memset(&a, 0, sizeof(a));
	a.raw_tracepoint.prog_fd = (unsigned)pfd;
	lfd = (int)syscall(SYS_bpf, BPF_RAW_TRACEPOINT_OPEN, &a, sizeof(a));
	close(pfd);
	if (lfd < 0)
		*why = "attach refused (is bpf among the active LSMs?)";
	return lfd;
}

static int64_t core_result;

static void on_complete(void *ctx, uint64_t user, int op, int fd,
			int64_t result)
{
	(void)ctx, (void)user, (void)op, (void)fd;
	core_result = result;
}

static void test_shutdown_denied(void)
{
	const char *why = "";
	int link = deny_shutdown(&why), fd = dev_open(), sv[2], tv[2];
	struct esca_lkm_entry *tab = table_map(4);
	struct esca_config c = { .executor = ESCA_EXEC_LKM,
				 .complete = on_complete };
	struct esca_table *t;
	struct esca_args a;
	char b[4];
	int err = 0;

	if (link < 0) {
		printf("skip lkm-lsm/shutdown_denied: %s: %s\n", why,
		       strerror(errno));
		goto out;
	}
	CHECK(fd >= 0 && tab && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 &&
	      socketpair(AF_UNIX, SOCK_STREAM, 0, tv) == 0);
	/* the LSM refuses the plain call */
	CHECK(shutdown(sv[0], SHUT_WR) < 0 && errno == EPERM);
	/* the module: the entry does not shut the socket down */
	CHECK_EQ(reg(fd, tab, 4), 0);
	set_op(&tab[0], ESCA_LKM_SHUTDOWN, sv[0]);
	tab[0].flags = SHUT_WR;
	CHECK_EQ(flush(fd, 0, 1), 1);
	CHECK(tab[0].result != 0);
	CHECK(recv(sv[1], b, sizeof(b), MSG_DONTWAIT) < 0 && errno == EAGAIN);
	/* the executor: the LSM's answer */
	t = esca_table_new(&c, &err);
	CHECK(t);
	a = (struct esca_args){ .op = ESCA_OP_SHUTDOWN, .fd = tv[0],
				.flags = SHUT_WR };
	CHECK_EQ(esca_queue(t, &a, 0, 0), 0);
	CHECK_EQ(esca_flush(t, ESCA_FLUSH_WAIT, ESCA_WHY_EXPLICIT), 1);
	esca_table_free(t);
	CHECK_EQ(core_result, -EPERM);
	CHECK(recv(tv[1], b, sizeof(b), MSG_DONTWAIT) < 0 && errno == EAGAIN);
	close(sv[0]);
	close(sv[1]);
	close(tv[0]);
	close(tv[1]);
out:
	if (link >= 0)
		close(link);
	if (fd >= 0)
		close(fd);
	if (tab)
		munmap(tab, 4 * ENT);
}

static const struct lkm_test tests[] = {
	{ "shutdown_denied", test_shutdown_denied },
};

int main(int argc, char **argv)
{
	return run_tests("lkm-lsm", tests, sizeof(tests) / sizeof(tests[0]),
			 argc, argv);
}
