/* SPDX-License-Identifier: MIT
 * test_memlock.c - pinned tables are charged to the user's RLIMIT_MEMLOCK, not to the mm: an unprivileged uid under a 2 MiB limit cannot pin more across self-execs that keep the fds, and the charge goes when the fds close.
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no /dev/esca, or not root: it
 * needs to open the device and then become uid 65534). */
#include <grp.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "lkm_test.h"

#define NOBODY 65534
#define NFDS 8
#define TABLE (1 << 20)			/* bytes pinned per register */
#define LIMIT (2 << 20)			/* RLIMIT_MEMLOCK */
#define NENTS (TABLE / (int)ENT)

/* A step of the chain, in a fresh image: register a 1 MiB table on the
 * next fd; exec the next step with the fds kept; the last one exits with
 * how many registrations succeeded. */
static int step(int argc, char **argv)
{
	int i = atoi(argv[2]), ok = atoi(argv[3]), fd = atoi(argv[4 + i]);
	struct esca_lkm_entry *tab = table_map(NENTS);
	char si[16], sok[16];
	char *args[4 + NFDS + 1];
	int r;

	if (!tab)
		return 100;
	r = reg(fd, tab, NENTS);
	if (r == 0)
		ok++;
	else if (r != -ENOMEM)
		return 101;
	if (i + 1 == argc - 4)
		return ok;
	snprintf(si, sizeof(si), "%d", i + 1);
	snprintf(sok, sizeof(sok), "%d", ok);
	args[0] = argv[0];
	args[1] = argv[1];
	args[2] = si;
	args[3] = sok;
	for (int k = 4; k < argc; k++)
		args[k] = argv[k];
	args[argc] = NULL;
	execv("/proc/self/exe", args);
	return 102;
}

/* Fork a child: NFDS fds on /dev/esca (opened while root, no O_CLOEXEC),
 * then uid 65534 with RLIMIT_MEMLOCK = LIMIT, then the exec chain (or,
 * with nfds < NFDS, fewer steps).  Its exit status. */
static int chain(int nfds)
{
	pid_t pid = fork();
	int st = 0;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct rlimit rl = { LIMIT, LIMIT };
		char fds[NFDS][16];
		char *args[4 + NFDS + 1] = { "test_memlock", "--step", "0", "0" };

		for (int k = 0; k < nfds; k++) {
			int fd = open(ESCA_LKM_DEVICE, O_RDWR);

			if (fd < 0)
				_exit(110);
			snprintf(fds[k], sizeof(fds[k]), "%d", fd);
			args[4 + k] = fds[k];
		}
		args[4 + nfds] = NULL;
		if (setrlimit(RLIMIT_MEMLOCK, &rl) < 0 ||
		    setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 ||
		    setuid(NOBODY) < 0)
			_exit(111);
		execv("/proc/self/exe", args);
		_exit(112);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

/* 8 registrations of 1 MiB each, one per exec: 2 fit under 2 MiB. */
static void test_across_execs(void)
{
	int ok = chain(NFDS);

	printf("# %s: %d of %d 1 MiB tables pinned under a 2 MiB limit\n",
	       cur, ok, NFDS);
	CHECK_EQ(ok, LIMIT / TABLE);
}

/* After the chain's last process exits, the fds are closed: the charge is
 * gone, and the same user may pin 2 MiB again. */
static void test_uncharged(void)
{
	CHECK_EQ(chain(LIMIT / TABLE), LIMIT / TABLE);
}

static const struct lkm_test tests[] = {
	{ "across_execs", test_across_execs },
	{ "uncharged", test_uncharged },
};

int main(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "--step"))
		return step(argc, argv);
	if (geteuid() != 0) {
		printf("SKIP lkm-memlock: not root\n");
		return 77;
	}
	return run_tests("lkm-memlock", tests, sizeof(tests) / sizeof(tests[0]),
			 argc, argv);
}
