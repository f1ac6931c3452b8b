/* SPDX-License-Identifier: MIT
 * stats.c - the ESCA_STATS file: stats_maybe_write() (at most once per
 * ESCA_STATS_INTERVAL_MS, or forced at exit/exec), stats_after_fork().
 * Its own I/O is raw syscalls: never our interposers. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

static uint64_t stats_last_ns;

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

static void write_stats(void)
{
	static char text[16384];
	struct sbuf b = { text, 0, sizeof(text) };
	struct tstate sum;
	struct esca_stats *c = &sum.core_dead;
	uint64_t deferred = 0, surfaced = 0, bytes;
	char path[4200], tmp[4300];
	int pid = (int)getpid(), fd, nthreads, nthreads_total;
	ssize_t w;

	memset(&sum, 0, sizeof(sum));
	nthreads = threads_sum(&sum, &nthreads_total);
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
		"\"flushes_direct\": %llu, "
		"\"waits_folded\": %llu, "
		"\"bytes_deferred\": %llu, "
		"\"flushes_total\": %llu, \"threads\": %d, \"threads_alive\": %d,\n"
		" \"reads_seen\": %llu, \"reads_answered\": %llu, "
		"\"setsockopt_composed\": %llu, \"eagain_parked\": %llu, "
		"\"closes_held\": %llu, "
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
	    (unsigned long long)c->flushes_direct,
	    (unsigned long long)c->waits_folded, (unsigned long long)bytes,
	    (unsigned long long)c->flushes, nthreads_total, nthreads,
	    (unsigned long long)sum.reads_seen,
	    (unsigned long long)sum.reads_answered,
	    (unsigned long long)sum.composed,
	    (unsigned long long)sum.eagain_parked,
	    (unsigned long long)sum.held_closes);
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

/* The child writes its own file, from its own clock. */
void stats_after_fork(void)
{
	stats_last_ns = 0;
}
