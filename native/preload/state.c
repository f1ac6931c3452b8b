/* SPDX-License-Identifier: MIT
 * state.c - libesca.so set-up: configuration, the real functions, the
 * per-thread tables, the fd map, flushes, fork/exit, and the stats file.
 *
 * Set-up is lazy (the first interposed call does it, so calls made before
 * the constructor work) and a per-thread guard makes every interposer a
 * pass-through while the library itself is running (the core's own
 * write/sendmsg/close calls resolve to our interposers). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

HIDDEN struct config cfg;
HIDDEN struct reals real;
HIDDEN struct fdinfo *fdtab;
HIDDEN int fdtab_n;
HIDDEN int lib_ready;
HIDDEN __thread struct tstate *tls_ts
	__attribute__((tls_model("initial-exec")));
static __thread int tls_creating __attribute__((tls_model("initial-exec")));

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t ts_key;
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tstate *threads;		/* every live thread's state */
static struct tstate dead;		/* counters of threads that ended */
static int nthreads_total;
static uint64_t stats_last_ns;
static int warned_fallback;
static char fallback_reason[128];
static int table_kind = -1;		/* the executor tables really got */

#define SC_NAME(E, n, seed, where) #n,
static const char *const sc_names[SC__COUNT] = { ESCA_SYSCALLS(SC_NAME) };
#undef SC_NAME
#define PASS_NAME(E, n, help) #n,
static const char *const pass_names[PASS__COUNT] = {
	ESCA_PASS_REASONS(PASS_NAME)
};
#undef PASS_NAME

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One line to stderr, without stdio and without our interposers. */
void say(const char *msg)
{
	char buf[512];
	size_t n = strlen(msg);

	if (cfg.quiet)
		return;
	if (n > sizeof(buf) - 8)
		n = sizeof(buf) - 8;
	memcpy(buf, "esca: ", 6);
	memcpy(buf + 6, msg, n);
	buf[6 + n] = '\n';
	if (syscall(SYS_write, 2, buf, 7 + n) < 0)
		return;
}

/* The libc function after ours; a missing one is fatal. */
static void *next(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p) {
		char m[128];

		snprintf(m, sizeof(m), "fatal: no %s in the next library", name);
		say(m);
		syscall(SYS_exit_group, 127);
	}
	return p;
}

static void *next_opt(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

/* The comma list *s, one name at a time (its length in *n); NULL at the
 * end. */
static const char *list_next(const char **s, size_t *n)
{
	const char *tok = *s, *e;

	if (!*tok)
		return NULL;
	e = strchr(tok, ',');
	*n = e ? (size_t)(e - tok) : strlen(tok);
	*s = tok + *n + (e ? 1 : 0);
	return tok;
}

static int name_is(const char *tok, size_t n, const char *name)
{
	return strlen(name) == n && !strncmp(tok, name, n);
}

static void list_unknown(const char *what, const char *var, const char *tok,
			 size_t n)
{
	char msg[160];

	if (!n)
		return;
	snprintf(msg, sizeof(msg), "unknown %s '%.*s' in %s, ignored", what,
		 (int)(n > 40 ? 40 : n), tok, var);
	say(msg);
}

#define SC_SEED_BIT(E, n, seed, where) | (seed ? 1u << SC_##E : 0)
#define SC_SEED (0u ESCA_SYSCALLS(SC_SEED_BIT))

static unsigned parse_syscalls(const char *s)
{
	unsigned all = (1u << SC__COUNT) - 1, m = 0;
	const char *tok;
	size_t n;

	if (!s || !*s || !strcmp(s, "all") || !strcmp(s, "default"))
		return all;
	if (!strcmp(s, "none"))
		return 0;
	while ((tok = list_next(&s, &n))) {
		int found = 1;

		if (name_is(tok, n, "seed"))
			m |= SC_SEED;
		else if (name_is(tok, n, "all"))
			m |= all;
		else if (name_is(tok, n, "sendfile64"))
			m |= 1u << SC_SENDFILE;
		else
			found = 0;
		for (int i = 0; i < SC__COUNT && !found; i++) {
			if (name_is(tok, n, sc_names[i])) {
				m |= 1u << i;
				found = 1;
			}
		}
		if (!found)
			list_unknown("syscall", "ESCA_SYSCALLS", tok, n);
	}
	return m;
}

#define LV_NAME(E, n, help) #n,
static const char *const lever_names[LV__COUNT] = { ESCA_LEVERS(LV_NAME) };
#undef LV_NAME
#define NLEVERS LV__COUNT
#define LV_ALL ((1u << NLEVERS) - 1)

/* ESCA_LEVERS: "all" (the default), "none", or a comma list of lever names,
 * where "-name" takes one away: "all,-compose". */
static unsigned parse_levers(const char *s)
{
	unsigned m = 0;
	const char *tok;
	size_t n;

	if (!s || !*s)
		return LV_ALL;
	while ((tok = list_next(&s, &n))) {
		int neg = n && *tok == '-';
		unsigned bit = 0;

		if (neg) {
			tok++;
			n--;
		}
		if (name_is(tok, n, "all")) {
			bit = LV_ALL;
		} else if (name_is(tok, n, "none")) {
			bit = LV_ALL;
			neg = 1;
		}
		for (unsigned i = 0; !bit && i < NLEVERS; i++)
			if (name_is(tok, n, lever_names[i]))
				bit = 1u << i;
		if (!bit)
			list_unknown("lever", "ESCA_LEVERS", tok, n);
		m = neg ? m & ~bit : m | bit;
	}
	return m;
}

/* A decimal number from the environment in [lo, hi]: anything else (not a
 * number, a sign, out of range) says so on one line and gives def, or the
 * nearer bound for a number out of range. */
static unsigned long env_num(const char *name, unsigned long def,
			     unsigned long lo, unsigned long hi)
{
	const char *v = getenv(name);
	char *end, m[200];
	unsigned long r;

	if (!v || !*v)
		return def;
	errno = 0;
	r = strtoul(v, &end, 10);
	if (errno || *end || *v < '0' || *v > '9') {
		snprintf(m, sizeof(m), "%s=%.40s is not a number, using %lu",
			 name, v, def);
		say(m);
		return def;
	}
	if (r < lo || r > hi) {
		snprintf(m, sizeof(m), "%s=%lu is out of range [%lu, %lu], using %lu",
			 name, r, lo, hi, r < lo ? lo : hi);
		say(m);
		return r < lo ? lo : hi;
	}
	return r;
}

static void on_complete(void *ctx, uint64_t user, int op, int fd, int64_t r);
static void atfork_prepare(void);
static void atfork_parent(void);
static void atfork_child(void);
static void ts_destroy(void *p);

static void init_once(void)
{
	const char *v;
	struct rlimit rl;
	size_t n;
	void *m;

	real.write = next("write");
	real.writev = next("writev");
	real.send = next("send");
	real.sendto = next("sendto");
	real.sendmsg = next("sendmsg");
	real.sendfile = next("sendfile");
	real.shutdown = next("shutdown");
	real.close = next("close");
	real.setsockopt = next("setsockopt");
	real.epoll_wait = next("epoll_wait");
	real.epoll_pwait = next("epoll_pwait");
	real.epoll_pwait2 = next_opt("epoll_pwait2");
	real.poll = next("poll");
	real.ppoll = next("ppoll");
	real.select = next("select");
	real.pselect = next("pselect");
	real.read = next("read");
	real.readv = next("readv");
	real.recv = next("recv");
	real.recvfrom = next("recvfrom");
	real.recvmsg = next("recvmsg");
	real.pread = next("pread64");
	real.accept = next("accept");
	real.accept4 = next("accept4");
	real.dup2 = next("dup2");
	real.dup3 = next("dup3");
	real.execve = next("execve");
	real.execv = next("execv");
	real.execvp = next("execvp");
	real.execvpe = next("execvpe");
	real.fexecve = next("fexecve");
	real.exit_ = next("_exit");
	real.Exit = next("_Exit");
	real.fork = next("fork");
	real.exit = next("exit");
	real.libc_start_main = next("__libc_start_main");
	real.fclose = next("fclose");

	v = getenv("ESCA_QUIET");
	cfg.quiet = v && *v && strcmp(v, "0");
	v = getenv("ESCA_DISABLE");
	cfg.disabled = v && *v && strcmp(v, "0");
	v = getenv("ESCA_EXECUTOR");
	cfg.executor = ESCA_EXEC_AUTO;
	if (v && *v) {
		if (!strcmp(v, "uring"))
			cfg.executor = ESCA_EXEC_URING;
		else if (!strcmp(v, "sequential"))
			cfg.executor = ESCA_EXEC_SEQUENTIAL;
		else if (!strcmp(v, "lkm"))
			cfg.executor = ESCA_EXEC_LKM;
		else if (strcmp(v, "auto"))
			say("unknown ESCA_EXECUTOR, using auto");
	}
	v = getenv("ESCA_IMPLICIT");
	cfg.implicit = !(v && !strcmp(v, "0"));
	cfg.selected = parse_syscalls(getenv("ESCA_SYSCALLS"));
	cfg.levers = parse_levers(getenv("ESCA_LEVERS"));
	cfg.capacity = (unsigned)env_num("ESCA_CAPACITY", 256, 1, 32768);
	cfg.budget = (size_t)env_num("ESCA_BUDGET", ESCA_DEFAULT_BYTE_BUDGET, 16, 1ul << 30);
	cfg.flush_ns = (uint64_t)env_num("ESCA_FLUSH_US", 2000, 0,
					 60000000) * 1000;
	cfg.stats_interval_ns =
		(uint64_t)env_num("ESCA_STATS_INTERVAL_MS", 1000, 0, 3600000) *
		1000000;
	cfg.watchdog_ns = (uint64_t)env_num("ESCA_WATCHDOG_MS", 10, 0, 60000) *
			  1000000;
	cfg.timer_signal = (int)env_num("ESCA_TIMER_SIGNAL",
					(unsigned long)(SIGRTMAX - 7),
					(unsigned long)SIGRTMIN,
					(unsigned long)SIGRTMAX);
	v = getenv("ESCA_STATS");
	if (v && *v && strlen(v) < sizeof(cfg.stats_path) - 32)
		strcpy(cfg.stats_path, v);
	else if (v && *v)
		say("ESCA_STATS is too long a path, no stats file");
	cfg.stats_root_pid = (int)env_num("ESCA_STATS_PID", 0, 0, INT_MAX);
	if (cfg.stats_path[0] && !cfg.stats_root_pid) {
		char pid[24];

		cfg.stats_root_pid = (int)getpid();
		snprintf(pid, sizeof(pid), "%d", cfg.stats_root_pid);
		setenv("ESCA_STATS_PID", pid, 0);
	}

	/* the fd map: as many entries as fds may exist, untouched until used */
	n = 65536;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur > n)
		n = rl.rlim_cur > (1u << 20) ? (1u << 20) : rl.rlim_cur;
	m = mmap(NULL, n * sizeof(struct fdinfo), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m != MAP_FAILED) {
		fdtab = m;
		fdtab_n = (int)n;
	} else {
		say("no memory for the fd map; every call passes through");
		cfg.disabled = 1;
	}
	/* stdin, stdout and stderr are often one pipe or one terminal: find
	 * which of them share an open file, to keep their bytes in order */
	for (int i = 1; i <= 2 && fdtab; i++) {
		struct stat a, b;

		if (syscall(SYS_fstat, i, &a) < 0)
			continue;
		for (int j = 0; j < i; j++) {
			if (syscall(SYS_fstat, j, &b) == 0 && a.st_dev == b.st_dev &&
			    a.st_ino == b.st_ino) {
				fdtab[i].key1 = fdtab[j].key1 ? fdtab[j].key1 : j + 1;
				break;
			}
		}
	}
	pthread_key_create(&ts_key, ts_destroy);
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	__atomic_store_n(&lib_ready, 1, __ATOMIC_RELEASE);
}

void esca_lib_init(void)
{
	pthread_once(&once, init_once);
}

__attribute__((constructor)) static void ctor(void)
{
	esca_lib_init();
}

/* ---- the time bound (contract item 6) ------------------------------------
 * A thread that queued calls and then blocks somewhere the library does not
 * see (a futex, a join, a long computation) must not hold its bytes.  A
 * watchdog thread looks every ESCA_WATCHDOG_MS and sends such a thread the
 * timer signal; its handler flushes unless the thread is inside the library
 * (then the library flushes on its way out, at the next call). */
static int watchdog_started;

static void on_timer_signal(int sig)
{
	struct tstate *ts = tls_ts;
	int saved = errno;

	(void)sig;
	if (ts && ts->table && !ts->guard && !ts->busy &&
	    esca_table_pending(ts->table)) {
		ts->guard++;
		esca_flush(ts->table, ESCA_FLUSH_REAP, ESCA_WHY_TIMER);
		ts->guard--;
		ts->oldest_ns = esca_table_pending(ts->table) ? now_ns() : 0;
	}
	if (ts)
		ts->signaled = 0;
	errno = saved;
}

static void *watchdog(void *arg)
{
	struct timespec period = { (time_t)(cfg.watchdog_ns / 1000000000ull),
				   (long)(cfg.watchdog_ns % 1000000000ull) };

	(void)arg;
	for (;;) {
		uint64_t now;

		syscall(SYS_nanosleep, &period, NULL);
		now = now_ns();
		pthread_mutex_lock(&list_lock);
		for (struct tstate *ts = threads; ts; ts = ts->next) {
			uint64_t old = ts->oldest_ns;

			if (old && now - old > cfg.flush_ns && !ts->in_wait &&
			    !ts->signaled) {
				ts->signaled = 1;
				pthread_kill(ts->tid, cfg.timer_signal);
			}
		}
		pthread_mutex_unlock(&list_lock);
	}
	return NULL;
}

static void start_watchdog(void)
{
	struct sigaction sa;
	pthread_attr_t at;
	pthread_t th;
	sigset_t all, old;

	if (!cfg.watchdog_ns ||
	    __atomic_exchange_n(&watchdog_started, 1, __ATOMIC_ACQ_REL))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_timer_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(cfg.timer_signal, &sa, NULL) < 0)
		return;
	/* the watchdog itself takes no signals */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 64 * 1024);
	if (pthread_create(&th, &at, watchdog, NULL) != 0)
		say("no watchdog thread: a blocked thread may hold its bytes");
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* First interposed call on a thread: make its table. */
struct tstate *ts_slow(void)
{
	struct esca_config c = { 0 };
	struct tstate *ts;
	int err = 0;

	if (!__atomic_load_n(&lib_ready, __ATOMIC_ACQUIRE))
		esca_lib_init();
	if (cfg.disabled || tls_creating)
		return NULL;
	tls_creating = 1;
	ts = calloc(1, sizeof(*ts));
	if (!ts)
		goto out;
	c.executor = cfg.executor;
	c.capacity = cfg.capacity;
	c.byte_budget = cfg.budget;
	c.complete = on_complete;
	c.ctx = ts;
	if (cfg.levers & LV_SENDFILE)
		c.flags |= ESCA_CFG_SENDFILE_DIRECT;
	if (cfg.levers & LV_FOLD)
		c.flags |= ESCA_CFG_FOLD_WAIT;
	ts->table = esca_table_new(&c, &err);
	if (!ts->table && cfg.executor != ESCA_EXEC_SEQUENTIAL) {
		/* contract item 8: say so once, use sequential */
		if (!__atomic_exchange_n(&warned_fallback, 1, __ATOMIC_RELAXED)) {
			snprintf(fallback_reason, sizeof(fallback_reason),
				 "%s executor unavailable (%s)",
				 esca_executor_name(cfg.executor), strerror(-err));
			char m[200];

			snprintf(m, sizeof(m), "%s; using sequential",
				 fallback_reason);
			say(m);
		}
		c.executor = ESCA_EXEC_SEQUENTIAL;
		ts->table = esca_table_new(&c, &err);
	}
	if (!ts->table) {
		free(ts);
		ts = NULL;
		goto out;
	}
	if (cfg.executor == ESCA_EXEC_AUTO &&
	    esca_table_executor(ts->table) == ESCA_EXEC_SEQUENTIAL &&
	    !__atomic_exchange_n(&warned_fallback, 1, __ATOMIC_RELAXED)) {
		snprintf(fallback_reason, sizeof(fallback_reason),
			 "io_uring unavailable; auto chose sequential");
		say(fallback_reason);
	}
	table_kind = esca_table_executor(ts->table);
	ts->tid = pthread_self();
	ts->wait_token = ((uint64_t)(uint32_t)syscall(SYS_gettid) << 32) | 1;
	pthread_mutex_lock(&list_lock);
	ts->next = threads;
	threads = ts;
	nthreads_total++;
	pthread_mutex_unlock(&list_lock);
	pthread_setspecific(ts_key, ts);
	tls_ts = ts;
	start_watchdog();
out:
	tls_creating = 0;
	return ts;
}

static void fold(struct tstate *into, struct tstate *ts)
{
	const struct esca_stats *s = ts->table ? esca_table_stats(ts->table) :
				     &ts->core_dead;
	uint64_t *a = (uint64_t *)&into->core_dead;
	const uint64_t *b = (const uint64_t *)s;

	for (size_t i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
		a[i] += b[i];
	into->reads_seen += ts->reads_seen;
	into->reads_answered += ts->reads_answered;
	into->composed += ts->composed;
	into->eagain_parked += ts->eagain_parked;
	for (int i = 0; i < SC__COUNT; i++) {
		into->sc[i].seen += ts->sc[i].seen;
		into->sc[i].deferred += ts->sc[i].deferred;
		into->sc[i].surfaced += ts->sc[i].surfaced;
		for (int k = 0; k < PASS__COUNT; k++)
			into->sc[i].passed[k] += ts->sc[i].passed[k];
	}
}

static void ts_destroy(void *p)
{
	struct tstate *ts = p, **pp;

	if (!ts)
		return;
	ts->guard++;
	if (ts->table)
		esca_flush(ts->table, ESCA_FLUSH_WAIT, ESCA_WHY_LIFECYCLE);
	pthread_mutex_lock(&list_lock);
	for (pp = &threads; *pp; pp = &(*pp)->next) {
		if (*pp == ts) {
			*pp = ts->next;
			break;
		}
	}
	fold(&dead, ts);
	pthread_mutex_unlock(&list_lock);
	tls_ts = NULL;		/* the timer signal must not find it now */
	esca_table_free(ts->table);
	ts->table = NULL;
	free(ts->pbuf);
	free(ts);
}

/* What a deferred op's completion means for its fd (contract item 5). */
static void on_complete(void *ctx, uint64_t user, int op, int fd, int64_t r)
{
	struct fdinfo *fi = fdi(fd);
	int err = 0;

	(void)ctx;
	if (!fi)
		return;
	if (op == ESCA_OP_CLOSE) {
		/* the number is free now: whatever gets it next is new */
		__atomic_store_n(&fi->err, 0, __ATOMIC_RELAXED);
		fi->kind = FK_UNKNOWN;
		fi->flags = 0;
		return;
	}
	if (r < 0)
		err = (int)-r;
	else if ((uint64_t)r < user)
		err = EPIPE;	/* some bytes went out, then the fd failed */
	if (err)
		__atomic_store_n(&fi->err, err, __ATOMIC_RELAXED);
}

/* Look an fd up: kind, O_NONBLOCK, size.  Raw syscalls: never our own
 * interposers.  -1 if the fd is not open. */
int fd_detect(int fd, struct fdinfo *fi)
{
	struct stat st;
	long fl;

	if (syscall(SYS_fstat, fd, &st) < 0) {
		fi->kind = FK_BAD;
		return -1;
	}
	fi->flags = 0;
	fi->size = 0;
	if (S_ISSOCK(st.st_mode)) {
		int type = 0, dom = 0;
		socklen_t l = sizeof(type);

		fi->kind = FK_SOCKET;
		if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 &&
		    type == SOCK_STREAM)
			fi->kind = FK_STREAM;
		l = sizeof(dom);
		if (fi->kind == FK_STREAM &&
		    syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 &&
		    (dom == AF_INET || dom == AF_INET6))
			fi->flags |= FI_TCP;
	} else if (S_ISFIFO(st.st_mode)) {
		fi->kind = FK_PIPE;
	} else if (S_ISREG(st.st_mode)) {
		fi->kind = FK_FILE;
		fi->size = st.st_size;
	} else {
		fi->kind = FK_OTHER;
	}
	if (fi->kind == FK_FILE)
		return 0;	/* O_NONBLOCK means nothing to a regular file;
				 * its access mode is asked when needed */
	fl = syscall(SYS_fcntl, fd, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK))
		fi->flags |= FI_NONBLOCK;
	fd_note_access(fi, fl);
	return 0;
}

/* What the open file's access mode (F_GETFL flags fl, or -1) allows. */
void fd_note_access(struct fdinfo *fi, long fl)
{
	if (fl < 0)
		return;
	fi->flags |= FI_ACC;
	if ((fl & O_PATH) || (fl & O_ACCMODE) == O_RDONLY)
		fi->flags |= FI_NOWRITE;
	if ((fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY)
		fi->flags |= FI_NOREAD;
}

/* Is fd open for what need (FI_NOWRITE: writing, FI_NOREAD: reading)
 * says?  A write to a read-only fd or a sendfile from a write-only one
 * fails with EBADF, a result known in advance: such calls are never
 * deferred (contract item 1).  Asked once per fd, and only for regular
 * files (fd_detect learns it for the others). */
int fd_access_ok(int fd, struct fdinfo *fi, uint16_t need)
{
	if (unlikely(!(fi->flags & FI_ACC)))
		fd_note_access(fi, syscall(SYS_fcntl, fd, F_GETFL));
	return (fi->flags & (FI_ACC | need)) == FI_ACC;
}

/* What a flush changes for the thread: its clocks and marks, the events
 * owed, the stats file. */
static void after_flush(struct tstate *ts)
{
	if (esca_table_pending(ts->table) == 0) {
		ts->oldest_ns = 0;
		ts->files_dirty = 0;
	}
	if (unlikely(ts->nowed))
		lib_pay_owed(ts);
	if (cfg.stats_path[0])
		stats_maybe_write(0);
}

void lib_flush(struct tstate *ts, unsigned mode, int why)
{
	if (!ts->table)
		return;
	ts->guard++;
	esca_flush(ts->table, mode, why);
	ts->guard--;
	after_flush(ts);
}

/* The flush and the program's epoll wait in one go (lever "fold"): the
 * number of events, -1 with errno, or -2 when the executor cannot. */
int lib_flush_epoll(struct tstate *ts, int epfd, struct epoll_event *evs,
		    int max, int timeout, const sigset_t *mask)
{
	int n;

	ts->guard++;
	n = esca_flush_epoll_wait(ts->table, ESCA_WHY_WAIT, epfd, evs, max,
				  timeout, mask);
	ts->guard--;
	if (n == -ENOSYS)
		return -2;
	after_flush(ts);
	if (n < 0) {
		errno = -n;
		return -1;
	}
	return n;
}

/* A program told EAGAIN on a socket whose earlier bytes were parked waits
 * for it to turn writable; with an edge-triggered registration, the edge
 * may have gone by while our bytes still filled the socket.  Once they are
 * out, re-arm its registration (EPOLL_CTL_MOD with the program's own events
 * and data): the kernel then reports the socket as it is now. */
void lib_pay_owed(struct tstate *ts)
{
	int k = 0;

	for (int i = 0; i < ts->nowed; i++) {
		int fd = ts->owed[i];
		struct fdinfo *fi = fdi(fd);

		if (!fi || !(fi->flags & FI_OWED))
			continue;		/* closed or re-used since */
		if (esca_fd_pending(ts->table, fd)) {
			ts->owed[k++] = fd;	/* still parked */
			continue;
		}
		fi->flags &= (uint16_t)~FI_OWED;
		/* level-triggered sets report it anyway; a one-shot one the
		 * program re-arms itself */
		if (fi->ep_fd > 0 && (fi->ep_events & EPOLLET) &&
		    !(fi->ep_events & EPOLLONESHOT)) {
			struct epoll_event ev = { .events = fi->ep_events,
						  .data.u64 = fi->ep_data };

			if (syscall(SYS_epoll_ctl, fi->ep_fd - 1, EPOLL_CTL_MOD,
				    fd, &ev) < 0)
				fi->ep_fd = 0;
		}
	}
	ts->nowed = k;
}

/* Before a call that depends on fd's pending entries: run them, and those
 * of the open file it shares with other fds (its ordering key). */
void lib_sync_fd(struct tstate *ts, int fd)
{
	struct fdinfo *fi = fdi(fd);
	int key = fi && fi->key1 ? fi->key1 - 1 : fd;

	if (!ts->table || (!esca_fd_pending(ts->table, fd) &&
			   (key == fd || !esca_fd_pending(ts->table, key))))
		return;
	ts->guard++;
	esca_sync_fd(ts->table, fd);
	if (key != fd)
		esca_sync_fd(ts->table, key);
	ts->guard--;
	if (esca_table_pending(ts->table) == 0)
		ts->oldest_ns = 0;
}

/* exec, exit, _exit: nothing may stay behind (this thread's table). */
void lib_lifecycle_flush(void)
{
	struct tstate *ts = tls_ts;

	if (ts && ts->table && !ts->guard && esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_LIFECYCLE);
	if (cfg.stats_path[0])
		stats_maybe_write(1);
}

int lib_exiting;

/* The program is ending (main returned, or exit): what it wrote is sent now,
 * before the exit handlers and stdio's clean-up run (they close fds inside
 * glibc, where no interposer sees it, and write stdio buffers), and from
 * here on every call goes straight to the kernel. */
static void lib_exit_flush(void)
{
	lib_lifecycle_flush();
	__atomic_store_n(&lib_exiting, 1, __ATOMIC_RELEASE);
}

EXPORT void exit(int status)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_exit_flush();
	real.exit(status);
}

static int (*program_main)(int, char **, char **);

static int main_wrapper(int argc, char **argv, char **envp)
{
	int r = program_main(argc, argv, envp);

	lib_exit_flush();
	return r;
}

/* main's return goes to exit inside glibc: wrap main to see it */
EXPORT int __libc_start_main(int (*main)(int, char **, char **), int argc,
			     char **argv, void (*init)(void),
			     void (*fini)(void), void (*rtld_fini)(void),
			     void *stack_end)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	program_main = main;
	return real.libc_start_main(main_wrapper, argc, argv, init, fini,
				    rtld_fini, stack_end);
}

__attribute__((destructor)) static void dtor(void)
{
	lib_lifecycle_flush();
}

static void atfork_prepare(void)
{
	struct tstate *ts = tls_ts;

	/* the child must not inherit queued bytes it would send twice, and
	 * what the parent wrote before fork must come before what the child
	 * writes to the same file: wait for all of it */
	if (ts && ts->table && !ts->guard && esca_table_pending(ts->table))
		lib_flush(ts, ESCA_FLUSH_WAIT, ESCA_WHY_LIFECYCLE);
	pthread_mutex_lock(&list_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&list_lock);
}

static void atfork_child(void)
{
	struct tstate *ts = threads, *nx;

	/* the child starts clean: no table, no counters of the parent's */
	pthread_mutex_init(&list_lock, NULL);
	for (; ts; ts = nx) {
		nx = ts->next;
		esca_table_abandon(ts->table);
		ts->table = NULL;
		if (ts != tls_ts)
			free(ts);	/* that thread does not exist here */
	}
	threads = NULL;
	watchdog_started = 0;	/* no watchdog thread in the child */
	memset(&dead, 0, sizeof(dead));
	nthreads_total = 0;
	stats_last_ns = 0;
	if (tls_ts) {
		free(tls_ts->pbuf);
		free(tls_ts);
		tls_ts = NULL;
		pthread_setspecific(ts_key, NULL);
	}
}

/* ---- explicit segments, the seed's API ---------------------------------- */

EXPORT int esca_init(void)
{
	esca_lib_init();
	if (cfg.disabled)
		return -ENOSYS;
	return ts_get() ? 0 : -ENOMEM;
}

EXPORT int batch_start(void)
{
	struct tstate *ts;

	esca_lib_init();
	if (cfg.disabled)
		return -ENOSYS;
	ts = ts_get();
	if (!ts)
		return -ENOMEM;
	ts->segment = 1;
	ts->nexplicit++;
	return 0;
}

EXPORT int batch_flush(void)
{
	struct tstate *ts = tls_ts;
	unsigned before;

	if (!ts || !ts->table)
		return cfg.disabled ? -ENOSYS : 0;
	before = esca_table_pending(ts->table);
	lib_flush(ts, ESCA_FLUSH_REAP, ESCA_WHY_EXPLICIT);
	ts->segment = 0;
	return (int)(before - esca_table_pending(ts->table));
}

/* ---- the stats file ----------------------------------------------------- */

struct sbuf {
	char *p;
	size_t n, cap;
};

static void put(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static void put(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (b->n >= b->cap)
		return;
	va_start(ap, fmt);
	r = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
	va_end(ap);
	if (r > 0)
		b->n += (size_t)r < b->cap - b->n ? (size_t)r : b->cap - b->n;
}

static void write_stats(void)
{
	static char text[16384];
	struct sbuf b = { text, 0, sizeof(text) };
	struct tstate sum;
	struct esca_stats *c = &sum.core_dead;
	uint64_t deferred = 0, surfaced = 0, bytes;
	char path[4200], tmp[4300];
	int pid = (int)getpid(), fd, nthreads = 0;
	ssize_t w;

	memset(&sum, 0, sizeof(sum));
	pthread_mutex_lock(&list_lock);
	fold(&sum, &dead);
	for (struct tstate *ts = threads; ts; ts = ts->next) {
		fold(&sum, ts);
		nthreads++;
	}
	pthread_mutex_unlock(&list_lock);
	for (int i = 0; i < SC__COUNT; i++) {
		deferred += sum.sc[i].deferred;
		surfaced += sum.sc[i].surfaced;
	}
	bytes = c->bytes_queued;
	put(&b, "{\"version\": 1, \"pid\": %d, \"executor\": \"%s\", "
		"\"fallback_reason\": \"%s\",\n \"syscalls\": {",
	    pid, table_kind >= 0 ? esca_executor_name(table_kind) :
	    cfg.disabled ? "disabled" : "none", fallback_reason);
	for (int i = 0; i < SC__COUNT; i++) {
		struct sc_stats *s = &sum.sc[i];

		put(&b, "%s\n  \"%s\": {\"seen\": %llu, \"deferred\": %llu, "
			"\"errors_surfaced\": %llu, \"passed\": {",
		    i ? "," : "", sc_names[i], (unsigned long long)s->seen,
		    (unsigned long long)s->deferred,
		    (unsigned long long)s->surfaced);
		for (int k = 0; k < PASS__COUNT; k++)
			put(&b, "%s\"%s\": %llu", k ? ", " : "", pass_names[k],
			    (unsigned long long)s->passed[k]);
		put(&b, "}}");
	}
	put(&b, "},\n \"flushes\": {");
	for (int i = 0; i < ESCA_WHY__COUNT; i++)
		put(&b, "%s\"%s\": %llu", i ? ", " : "", esca_flush_reason_name(i),
		    (unsigned long long)c->flush_why[i]);
	put(&b, "},\n \"batch_hist\": [");
	for (int i = 0; i < ESCA_HIST_BUCKETS; i++)
		put(&b, "%s%llu", i ? ", " : "",
		    (unsigned long long)c->batch_hist[i]);
	put(&b, "],\n \"deferred\": %llu, \"kernel_entries\": %llu, "
		"\"kernel_entries_saved\": %lld, \"ops_executed\": %llu, "
		"\"completed\": %llu, \"errors\": %llu, \"errors_surfaced\": %llu, "
		"\"short_completed\": %llu, \"resubmitted\": %llu, "
		"\"fallbacks\": %llu, \"sendfile_direct\": %llu, "
		"\"waits_folded\": %llu, "
		"\"bytes_deferred\": %llu, "
		"\"flushes_total\": %llu, \"threads\": %d, \"threads_alive\": %d,\n"
		" \"reads_seen\": %llu, \"reads_answered\": %llu, "
		"\"setsockopt_composed\": %llu, \"eagain_parked\": %llu, "
		"\"levers\": [",
	    (unsigned long long)deferred, (unsigned long long)c->kernel_entries,
	    (long long)(deferred + sum.reads_answered) -
	    (long long)c->kernel_entries,
	    (unsigned long long)c->entries_executed,
	    (unsigned long long)c->completed, (unsigned long long)c->errors,
	    (unsigned long long)surfaced,
	    (unsigned long long)c->short_completed,
	    (unsigned long long)c->resubmitted,
	    (unsigned long long)c->fallbacks,
	    (unsigned long long)c->sendfile_direct,
	    (unsigned long long)c->waits_folded, (unsigned long long)bytes,
	    (unsigned long long)c->flushes, nthreads_total, nthreads,
	    (unsigned long long)sum.reads_seen,
	    (unsigned long long)sum.reads_answered,
	    (unsigned long long)sum.composed,
	    (unsigned long long)sum.eagain_parked);
	for (unsigned i = 0, k = 0; i < NLEVERS; i++)
		if (cfg.levers & (1u << i))
			put(&b, "%s\"%s\"", k++ ? ", " : "", lever_names[i]);
	put(&b, "]}\n");

	if (pid == cfg.stats_root_pid)
		snprintf(path, sizeof(path), "%s", cfg.stats_path);
	else
		snprintf(path, sizeof(path), "%s.%d", cfg.stats_path, pid);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, pid);
	/* a new file of ours, 0600, then renamed over path (rename replaces
	 * a link, never writes through it): O_EXCL never opens what is there
	 * (a symlink or a hard link planted at tmp), which is removed once */
	for (int tries = 0;; tries++) {
		fd = (int)syscall(SYS_openat, AT_FDCWD, tmp,
				  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
				  O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST || tries ||
		    syscall(SYS_unlink, tmp) < 0)
			break;
	}
	if (fd < 0)
		return;
	w = syscall(SYS_write, fd, text, b.n);
	syscall(SYS_close, fd);
	if (w != (ssize_t)b.n || syscall(SYS_rename, tmp, path) < 0)
		syscall(SYS_unlink, tmp);
}

void stats_maybe_write(int force)
{
	static int busy;
	uint64_t now;

	if (!cfg.stats_path[0])
		return;
	now = now_ns();
	if (!force && now - __atomic_load_n(&stats_last_ns, __ATOMIC_RELAXED) <
			      cfg.stats_interval_ns)
		return;
	if (__atomic_exchange_n(&busy, 1, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&stats_last_ns, now, __ATOMIC_RELAXED);
	write_stats();
	__atomic_store_n(&busy, 0, __ATOMIC_RELEASE);
}
