/* SPDX-License-Identifier: MIT
 * stats.c - the ESCA_STATS file: stats_maybe_write() (at most once per
 * ESCA_STATS_INTERVAL_MS, or forced at exit/exec), stats_after_fork(), and
 * setuid/seteuid/setreuid/setresuid (root keeps its file open first).
 * Its own I/O is raw syscalls: never our interposers. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

static uint64_t stats_last_ns;
static int stats_busy;

/* A process of root's may drop its privileges (nginx's workers become
 * nobody) and then can create nothing in the stats directory: just before
 * it does (setuid & co, below) it makes its file and keeps it open, to
 * write into at the end when a new file cannot be made. */
static int held_fd = -1;
static dev_t held_dev;
static ino_t held_ino;

/* native/core/internal.h: the library's own fds sit high and are invisible
 * to the program (DESIGN.md, "Contract: fd lifetime"); the held file is one */
extern HIDDEN int esca__fd_high(int fd);
extern HIDDEN void esca__fd_gone(int fd);

static void held_close(void)
{
	esca__fd_gone(held_fd);
	syscall(SYS_close, held_fd);
	held_fd = -1;
}

struct sbuf {
	char *p;
	size_t n, cap;
};

static void put(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

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

/* The held file, still ours (the program may have closed the number and
 * opened something else under it)?  Then the text replaces its content. */
static void write_held(const char *text, size_t n)
{
	struct stat st;

	if (held_fd < 0 || syscall(SYS_fstat, held_fd, &st) < 0 ||
	    st.st_dev != held_dev || st.st_ino != held_ino)
		return;
	if (syscall(SYS_pwrite64, held_fd, text, n, 0) == (ssize_t)n)
		syscall(SYS_ftruncate, held_fd, (off_t)n);
}

static void write_stats(int hold)
{
	static char text[16384];
	struct sbuf b = { text, 0, sizeof(text) };
	struct tstate sum;
	struct esca_stats *c = &sum.core_dead;
	struct adapt_totals ad;
	uint64_t deferred = 0, surfaced = 0, bytes;
	char path[4200], tmp[4300];
	int pid = (int)getpid(), fd, nthreads, nthreads_total;
	ssize_t w;

	memset(&sum, 0, sizeof(sum));
	nthreads = threads_sum(&sum, &nthreads_total);
	adapt_totals(&ad);
	for (int i = 0; i < CALL__COUNT; i++) {
		deferred += sum.calls[i].deferred;
		surfaced += sum.calls[i].surfaced;
	}
	bytes = c->bytes_queued;
	put(&b, "{\"version\": 1, \"pid\": %d, \"executor\": \"%s\", "
		"\"fallback_reason\": \"%s\",\n \"syscalls\": {",
	    pid, table_executor >= 0 ? esca_executor_name(table_executor) :
	    cfg.disabled ? "disabled" : "none", fallback_reason);
	for (int i = 0; i < CALL__COUNT; i++) {
		struct call_stats *s = &sum.calls[i];

		put(&b, "%s\n  \"%s\": {\"seen\": %llu, \"deferred\": %llu, "
			"\"errors_surfaced\": %llu, \"passed\": {",
		    i ? "," : "", call_names[i], (unsigned long long)s->seen,
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
		"\"flushes_direct\": %llu, \"flushes_plain\": %llu, "
		"\"waits_folded\": %llu, "
		"\"bytes_deferred\": %llu, "
		"\"flushes_total\": %llu, \"threads\": %d, \"threads_alive\": %d,\n"
		" \"reads_seen\": %llu, \"reads_answered\": %llu, "
		"\"setsockopt_composed\": %llu, \"eagain_parked\": %llu, "
		"\"closes_held\": %llu, \"closes_out_of_epoll\": %llu, "
		"\"fd_count_underflows\": %llu,\n"
		" \"prefetch_rounds\": %llu, \"prefetch_peeked\": %llu, "
		"\"prefetch_answered\": %llu, \"prefetch_wasted\": %llu, "
		"\"prefetch_short_discards\": %llu,\n"
		" \"adapt_windows\": %llu, \"adapt_windows_aside\": %llu, "
		"\"adapt_ms_aside\": %llu, \"adapt_switches\": %llu, "
		"\"adapt_windows_plain\": %llu, \"adapt_loopless\": %llu, "
		"\"levers\": [",
	    (unsigned long long)deferred, (unsigned long long)c->kernel_entries,
	    (long long)(deferred + sum.reads_answered + sum.pf.answered) -
	    (long long)c->kernel_entries,
	    (unsigned long long)c->entries_executed,
	    (unsigned long long)c->completed, (unsigned long long)c->errors,
	    (unsigned long long)surfaced,
	    (unsigned long long)c->short_completed,
	    (unsigned long long)c->resubmitted,
	    (unsigned long long)c->fallbacks,
	    (unsigned long long)c->sendfile_direct,
	    (unsigned long long)c->flushes_direct,
	    (unsigned long long)c->flushes_plain,
	    (unsigned long long)c->waits_folded, (unsigned long long)bytes,
	    (unsigned long long)c->flushes, nthreads_total, nthreads,
	    (unsigned long long)sum.reads_seen,
	    (unsigned long long)sum.reads_answered,
	    (unsigned long long)sum.composed,
	    (unsigned long long)sum.eagain_parked,
	    (unsigned long long)sum.held_closes,
	    (unsigned long long)__atomic_load_n(&epoll_leaves,
						__ATOMIC_RELAXED),
	    (unsigned long long)__atomic_load_n(&fd_count_underflows,
						__ATOMIC_RELAXED),
	    (unsigned long long)sum.pf.rounds,
	    (unsigned long long)sum.pf.peeked,
	    (unsigned long long)sum.pf.answered,
	    (unsigned long long)sum.pf.wasted,
	    (unsigned long long)sum.pf.short_discards,
	    (unsigned long long)ad.windows,
	    (unsigned long long)ad.windows_aside,
	    (unsigned long long)(ad.cpu_ns_aside / 1000000),
	    (unsigned long long)ad.switches,
	    (unsigned long long)ad.windows_plain,
	    (unsigned long long)ad.loopless);
	for (unsigned i = 0, k = 0; i < LEVER__COUNT; i++)
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
	if (fd < 0) {
		if (errno == EACCES || errno == EPERM)
			write_held(text, b.n);
		return;
	}
	w = syscall(SYS_write, fd, text, b.n);
	if (hold && w == (ssize_t)b.n) {
		struct stat st;

		fd = esca__fd_high(fd);
		if (syscall(SYS_fstat, fd, &st) == 0) {
			held_fd = fd;
			held_dev = st.st_dev;
			held_ino = st.st_ino;
			fd = -1;
		}
	}
	if (fd >= 0)
		syscall(SYS_close, fd);
	if (w != (ssize_t)b.n || syscall(SYS_rename, tmp, path) < 0) {
		syscall(SYS_unlink, tmp);
		if (held_fd >= 0 && hold)
			held_close();
	}
}

void stats_maybe_write(int force)
{
	uint64_t now;

	if (!cfg.stats_path[0])
		return;
	now = now_ns();
	if (!force && now - __atomic_load_n(&stats_last_ns, __ATOMIC_RELAXED) <
			      cfg.stats_interval_ns)
		return;
	if (__atomic_exchange_n(&stats_busy, 1, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&stats_last_ns, now, __ATOMIC_RELAXED);
	write_stats(0);
	__atomic_store_n(&stats_busy, 0, __ATOMIC_RELEASE);
}

/* The child writes its own file, from its own clock (a write of another
 * thread of the parent's, busy at the fork, is not the child's). */
void stats_after_fork(void)
{
	stats_last_ns = 0;
	stats_busy = 0;
	adapt_after_fork();
	if (held_fd >= 0) {	/* the parent's copy: not the child's file */
		struct stat st;

		if (syscall(SYS_fstat, held_fd, &st) == 0 &&
		    st.st_dev == held_dev && st.st_ino == held_ino)
			held_close();	/* (fdmap_after_fork closed it) */
		held_fd = -1;
	}
}

/* ---- root giving up its privileges ---------------------------------------
 * Before the effective uid of a root process becomes another: its stats file
 * made now and held (held_fd: close-on-exec, high, invisible to the
 * program), so that its counters are still written at the end (DESIGN.md,
 * "Contract: threads and fork").  A process that never drops holds nothing. */
static void before_uid_drop(uid_t euid)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	if (!cfg.stats_path[0] || held_fd >= 0 || euid == (uid_t)-1 ||
	    euid == 0 || geteuid() != 0)
		return;
	if (__atomic_exchange_n(&stats_busy, 1, __ATOMIC_ACQUIRE))
		return;
	write_stats(1);
	__atomic_store_n(&stats_busy, 0, __ATOMIC_RELEASE);
}

EXPORT int setuid(uid_t uid)
{
	before_uid_drop(uid);
	return real.setuid(uid);
}

EXPORT int seteuid(uid_t euid)
{
	before_uid_drop(euid);
	return real.seteuid(euid);
}

EXPORT int setreuid(uid_t ruid, uid_t euid)
{
	before_uid_drop(euid);
	return real.setreuid(ruid, euid);
}

EXPORT int setresuid(uid_t ruid, uid_t euid, uid_t suid)
{
	before_uid_drop(euid);
	return real.setresuid(ruid, euid, suid);
}
