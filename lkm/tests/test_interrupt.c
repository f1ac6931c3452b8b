/* SPDX-License-Identifier: MIT
 * test_interrupt.c - a long FLUSH (4 x 1 GiB writes to /dev/urandom, or 4 x 1 GiB sendfiles) stops promptly for SIGSTOP and for a cgroup v2 freeze, leaving the rest pending, as a plain write would.
 *
 * Exit status: 0 pass, 1 fail, 77 skip (no /dev/esca); the cgroup case
 * prints "skip" and passes where the guest cannot mount cgroup2. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "lkm_test.h"

#define GIB (1L << 30)
#define NENT 4
/* How long a stop or a freeze may take to show. */
#define PROMPT_MS 1500

enum { LONG_WRITE, LONG_SENDFILE };

/* What the flusher reports after its flush returns. */
struct report {
	int flush;		/* the ioctl's value */
	int walked_busy;	/* entries still BUSY */
	long long result0;
	int error0;
};

struct flusher {
	pid_t pid;
	int ready;	/* read end: a byte once the flush is about to start */
	int go;		/* write end: a byte lets it start */
	int out;	/* read end: its struct report */
};

static void flusher_main(int kind, int ready, int go, int out)
{
	int fd = dev_open(), sink = -1, src = -1;
	struct esca_lkm_entry *tab = table_map(NENT);
	static struct iovec iov[NENT];
	struct report rep = { 0 };
	void *zeros = MAP_FAILED;
	char c;

	if (kind == LONG_WRITE) {
		sink = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
		zeros = mmap(NULL, GIB, PROT_READ,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	} else {
		char path[] = "/tmp/esca-int-XXXXXX";

		sink = open("/dev/null", O_WRONLY | O_CLOEXEC);
		src = mkstemp(path);
		if (src >= 0 && (unlink(path) < 0 || ftruncate(src, GIB) < 0))
			_exit(2);
	}
	if (fd < 0 || !tab || sink < 0 || reg(fd, tab, NENT) < 0 ||
	    (kind == LONG_WRITE && zeros == MAP_FAILED) ||
	    (kind == LONG_SENDFILE && src < 0))
		_exit(2);
	for (int i = 0; i < NENT; i++) {
		if (kind == LONG_WRITE) {
			set_data(&tab[i], ESCA_LKM_WRITE, sink, &iov[i], zeros, GIB);
		} else {
			set_op(&tab[i], ESCA_LKM_SENDFILE, sink);
			tab[i].fd2 = src;
			tab[i].offset = 0;
			tab[i].count = GIB;
		}
		tab[i].key = -1;
	}
	if (write(ready, "r", 1) != 1 || read(go, &c, 1) != 1)
		_exit(3);
	rep.flush = flush(fd, 0, NENT);
	for (int i = 0; i < NENT; i++)
		rep.walked_busy += tab[i].state == ESCA_LKM_BUSY;
	rep.result0 = tab[0].result;
	rep.error0 = tab[0].error;
	if (write(out, &rep, sizeof(rep)) != sizeof(rep))
		_exit(4);
	_exit(0);
}

static int flusher_start(struct flusher *f, int kind)
{
	int r[2], g[2], o[2];

	if (pipe(r) < 0 || pipe(g) < 0 || pipe(o) < 0)
		return -1;
	f->pid = fork();
	if (f->pid < 0)
		return -1;
	if (f->pid == 0) {
		close(r[0]);
		close(g[1]);
		close(o[0]);
		flusher_main(kind, r[1], g[0], o[1]);
	}
	close(r[1]);
	close(g[0]);
	close(o[1]);
	f->ready = r[0];
	f->go = g[1];
	f->out = o[0];
	return 0;
}

static int flusher_go(struct flusher *f)
{
	char c;

	if (read(f->ready, &c, 1) != 1 || write(f->go, "g", 1) != 1)
		return -1;
	sleep_ms(300);	/* well into the first entry */
	return 0;
}

/* Reap it (killing it first), close its pipes. */
static void flusher_end(struct flusher *f)
{
	kill(f->pid, SIGKILL);
	waitpid(f->pid, NULL, 0);
	close(f->ready);
	close(f->go);
	close(f->out);
}

/* The state letter of /proc/PID/stat, and its CPU ticks. */
static char proc_state(pid_t pid, long *ticks)
{
	char path[64], buf[512], *p;
	unsigned long ut = 0, st = 0;
	char s = '?';
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return '?';
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
			 &s, &ut, &st) != 3)
		return '?';
	if (ticks)
		*ticks = (long)(ut + st);
	return s;
}

/* Wait up to PROMPT_MS for the state letter `want`; ms taken or -1. */
static long wait_state(pid_t pid, char want)
{
	double t0 = now_s();

	while ((now_s() - t0) * 1000 < PROMPT_MS) {
		if (proc_state(pid, NULL) == want)
			return (long)((now_s() - t0) * 1000);
		sleep_ms(5);
	}
	return -1;
}

/* The flush returned, with the rest pending: the first entry stopped
 * short with -EINTR, or was left BUSY, and later ones are BUSY. */
static int check_report(struct flusher *f)
{
	struct pollfd p = { .fd = f->out, .events = POLLIN };
	struct report rep;

	if (poll(&p, 1, PROMPT_MS) != 1 ||
	    read(f->out, &rep, sizeof(rep)) != sizeof(rep)) {
		fprintf(stderr, "[%s] no report from the flusher\n", cur);
		return -1;
	}
	printf("# %s: flush=%d busy=%d result0=%lld error0=%d\n", cur,
	       rep.flush, rep.walked_busy, rep.result0, rep.error0);
	/* the walk stopped (flush < NENT), or went on past entries held
	 * behind the interrupted one (a sendfile holds its file) */
	if (rep.flush < 0 || rep.flush > NENT || rep.walked_busy < 1)
		return -1;
	if (rep.walked_busy < NENT && rep.error0 != -EINTR)
		return -1;
	if (rep.walked_busy < NENT && (rep.result0 <= 0 || rep.result0 >= GIB))
		return -1;
	return 0;
}

static void sigstop_case(int kind)
{
	struct flusher f;
	long ms, t0 = 0, t1 = 0;

	CHECK(flusher_start(&f, kind) == 0);
	if (flusher_go(&f) < 0) {
		flusher_end(&f);
		CHECK(!"flusher did not start");
	}
	kill(f.pid, SIGSTOP);
	ms = wait_state(f.pid, 'T');
	if (ms >= 0) {
		proc_state(f.pid, &t0);
		sleep_ms(300);
		proc_state(f.pid, &t1);
	}
	printf("# %s: stopped after %ld ms, %ld ticks while stopped\n", cur,
	       ms, t1 - t0);
	kill(f.pid, SIGCONT);
	if (ms < 0 || t1 - t0 > 1 || check_report(&f) < 0) {
		flusher_end(&f);
		CHECK(!"the flush did not stop for SIGSTOP");
	}
	flusher_end(&f);
}

static void test_sigstop_write(void)
{
	sigstop_case(LONG_WRITE);
}

static void test_sigstop_sendfile(void)
{
	sigstop_case(LONG_SENDFILE);
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

static int frozen(const char *cg)
{
	char path[256], buf[256];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/cgroup.events", cg);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strstr(buf, "frozen 1") != NULL;
}

/* cgroup v2 freeze of a cgroup whose only task is in a long flush. */
static void test_cgroup_freeze(void)
{
	const char *root = "/sys/fs/cgroup", *cg = "/sys/fs/cgroup/esca-freeze";
	char path[256], pid[32];
	struct flusher f;
	double t0;
	long ms = -1;

	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) < 0 &&
	    mount("cgroup2", root, "cgroup2", 0, NULL) < 0) {
		printf("skip lkm-interrupt/cgroup_freeze: mount cgroup2: %s\n",
		       strerror(errno));
		return;
	}
	if (mkdir(cg, 0755) < 0 && errno != EEXIST) {
		printf("skip lkm-interrupt/cgroup_freeze: mkdir %s: %s\n", cg,
		       strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "%s/cgroup.freeze", cg);
	if (access(path, W_OK) < 0) {
		printf("skip lkm-interrupt/cgroup_freeze: no cgroup.freeze\n");
		rmdir(cg);
		return;
	}
	CHECK(flusher_start(&f, LONG_WRITE) == 0);
	snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
	snprintf(pid, sizeof(pid), "%d", (int)f.pid);
	if (write_str(path, pid) < 0 || flusher_go(&f) < 0) {
		flusher_end(&f);
		rmdir(cg);
		CHECK(!"could not put the flusher in the cgroup");
	}
	snprintf(path, sizeof(path), "%s/cgroup.freeze", cg);
	t0 = now_s();
	if (write_str(path, "1") == 0) {
		while ((now_s() - t0) * 1000 < PROMPT_MS) {
			if (frozen(cg)) {
				ms = (long)((now_s() - t0) * 1000);
				break;
			}
			sleep_ms(5);
		}
	}
	printf("# %s: frozen after %ld ms\n", cur, ms);
	write_str(path, "0");
	if (ms < 0 || check_report(&f) < 0) {
		flusher_end(&f);
		rmdir(cg);
		CHECK(!"the flush did not freeze");
	}
	flusher_end(&f);
	for (int i = 0; i < 100 && rmdir(cg) < 0 && errno == EBUSY; i++)
		sleep_ms(10);
	CHECK(access(cg, F_OK) < 0);
}

/* A signal pending as a FLUSH starts (a short interval timer, another
 * thread's kill) does not stop it before its first entry: every FLUSH of
 * one write runs it, as write(2) would.  Stopping at once made no progress
 * at all while a 100 us timer kept a signal pending in this guest (the
 * d05_signal_write case of test_trust livelocked). */
static volatile int pelting;

static void on_usr1(int sig)
{
	(void)sig;
}

static void *pelt(void *arg)
{
	pthread_t to = *(pthread_t *)arg;

	while (pelting)
		pthread_kill(to, SIGUSR1);
	return NULL;
}

static void test_signal_pending_progress(void)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	int fd = dev_open(), p[2], zero = 0;
	struct esca_lkm_entry *tab = table_map(1);
	pthread_t self = pthread_self(), th;
	static struct iovec iov;
	char b[4096];

	CHECK(fd >= 0 && tab && pipe(p) == 0);
	CHECK_EQ(reg(fd, tab, 1), 0);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	pelting = 1;
	CHECK(pthread_create(&th, NULL, pelt, &self) == 0);
	for (int i = 0; i < 2000; i++) {
		int r;

		set_data(&tab[0], ESCA_LKM_WRITE, p[1], &iov, "x", 1);
		r = flush(fd, 0, 1);
		if (r != 1 || tab[0].state != ESCA_LKM_DONE) {
			zero++;
			continue;
		}
		CHECK_EQ(tab[0].result, 1);
		CHECK_EQ(read(p[0], b, sizeof(b)), 1);
	}
	pelting = 0;
	pthread_join(th, NULL);
	signal(SIGUSR1, SIG_DFL);
	printf("# %s: %d of 2000 flushes ran nothing\n", cur, zero);
	CHECK_EQ(zero, 0);
	close(p[0]);
	close(p[1]);
	close(fd);
	munmap(tab, ENT);
}

static const struct lkm_test tests[] = {
	{ "sigstop_write", test_sigstop_write },
	{ "sigstop_sendfile", test_sigstop_sendfile },
	{ "cgroup_freeze", test_cgroup_freeze },
	{ "signal_pending_progress", test_signal_pending_progress },
};

int main(int argc, char **argv)
{
	return run_tests("lkm-interrupt", tests,
			 sizeof(tests) / sizeof(tests[0]), argc, argv);
}
