/* SPDX-License-Identifier: MIT
 * config.c - the ESCA_* environment: config_load() fills cfg once at
 * start-up (names from catalog.h); say() is the library's one line to
 * stderr. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lists.h"
#include "preload.h"

HIDDEN struct config cfg;

#define CALL_NAME(E, n, seed, where) #n,
const char *const call_names[CALL__COUNT] = { ESCA_SYSCALLS(CALL_NAME) };
#undef CALL_NAME
#define PASS_NAME(E, n, help) #n,
const char *const pass_names[PASS__COUNT] = { ESCA_PASS_REASONS(PASS_NAME) };
#undef PASS_NAME
#define LEVER_NAME(E, n, on, help) #n,
const char *const lever_names[LEVER__COUNT] = { ESCA_LEVERS(LEVER_NAME) };
#undef LEVER_NAME

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

#define CALL_SEED_BIT(E, n, seed, where) | (seed ? 1u << CALL_##E : 0)
#define CALLS_SEED (0u ESCA_SYSCALLS(CALL_SEED_BIT))

/* ESCA_SYSCALLS: "all" (the default), "none", "seed", or a comma list of
 * call names and "seed". */
static unsigned parse_syscalls(const char *s)
{
	unsigned all = (1u << CALL__COUNT) - 1, m = 0;
	const char *tok;
	size_t n;

	if (!s || !*s || !strcmp(s, "all") || !strcmp(s, "default"))
		return all;
	if (!strcmp(s, "none"))
		return 0;
	while ((tok = esca__list_next(&s, &n))) {
		int found = 1;

		if (esca__name_is(tok, n, "seed"))
			m |= CALLS_SEED;
		else if (esca__name_is(tok, n, "all"))
			m |= all;
		else if (esca__name_is(tok, n, "sendfile64"))
			m |= 1u << CALL_SENDFILE;
		else
			found = 0;
		for (int i = 0; i < CALL__COUNT && !found; i++) {
			if (esca__name_is(tok, n, call_names[i])) {
				m |= 1u << i;
				found = 1;
			}
		}
		if (!found)
			list_unknown("syscall", "ESCA_SYSCALLS", tok, n);
	}
	return m;
}

static void lever_unknown(void *ctx, const char *tok, size_t n)
{
	(void)ctx;
	list_unknown("lever", "ESCA_LEVERS", tok, n);
}

/* ESCA_LEVERS, in the grammar of lists.h (esca__parse_levers), which
 * `esca run --levers` shares through pyesca._core.parse_levers(). */
static unsigned parse_levers(const char *s)
{
	return esca__parse_levers(s, lever_names, LEVER__COUNT, LEVER_DEFAULT,
				  lever_unknown, NULL);
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

/* ESCA_<NAME>=0 turns lever off, 1 on, whatever ESCA_LEVERS says; 1 when
 * it was pinned on. */
static int pin_lever(const char *var, unsigned lever)
{
	const char *v = getenv(var);

	if (v && !strcmp(v, "0")) {
		cfg.levers &= ~lever;
	} else if (v && !strcmp(v, "1")) {
		cfg.levers |= lever;
		return 1;
	} else if (v && *v) {
		char m[64];

		snprintf(m, sizeof(m), "%s is 0 or 1, ignored", var);
		say(m);
	}
	return 0;
}

void config_load(void)
{
	const char *v;

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
	/* lever adapt, pinned by ESCA_ADAPT: 0 always defers, 1 decides;
	 * lever prefetch by ESCA_PREFETCH whatever ESCA_LEVERS says (to run a
	 * whole suite with it: tests set ESCA_LEVERS themselves) */
	pin_lever("ESCA_ADAPT", LEVER_ADAPT);
	/* ESCA_PREFETCH=1 also runs it where it cannot pay (prefetch.c) */
	cfg.prefetch_forced = pin_lever("ESCA_PREFETCH", LEVER_PREFETCH);
	cfg.adapt_window = (unsigned)env_num("ESCA_ADAPT_WINDOW", 2048, 1,
					     1u << 20);
	/* tests only: the controller's choice forced, to pin what stepping
	 * aside keeps: "aside" steps aside at every window, "flip" switches
	 * between deferring and aside at every window, "plain" defers with
	 * plain flushes, "cycle" goes ring, aside, plain, ring... */
	v = getenv("ESCA_ADAPT_TEST");
	cfg.adapt_force = !v || !*v ? 0 : !strcmp(v, "aside") ? 1 :
			  !strcmp(v, "flip") ? 2 : !strcmp(v, "plain") ? 3 :
			  !strcmp(v, "cycle") ? 4 : 0;
	if (v && *v && !cfg.adapt_force)
		say("ESCA_ADAPT_TEST is aside, flip, plain or cycle, ignored");
	cfg.capacity = (unsigned)env_num("ESCA_CAPACITY", 256, 1, 32768);
	cfg.budget = (size_t)env_num("ESCA_BUDGET", ESCA_DEFAULT_BYTE_BUDGET,
				     16, 1ul << 30);
	cfg.flush_ns = (uint64_t)env_num("ESCA_FLUSH_US", 2000, 0,
					 60000000) * 1000;
	/* the timer's shot is the bound (a signal at most every 100 us) */
	cfg.timer_ns = cfg.flush_ns < 100000 ? 100000 : cfg.flush_ns;
	cfg.stats_interval_ns =
		(uint64_t)env_num("ESCA_STATS_INTERVAL_MS", 1000, 0, 3600000) *
		1000000;
	cfg.watchdog_ns = (uint64_t)env_num("ESCA_WATCHDOG_MS", 10, 0, 60000) *
			  1000000;
	/* 1: the watchdog thread for every thread, no timer (tests; a
	 * program that cannot have per-thread timers) */
	cfg.watchdog_thread = (int)env_num("ESCA_WATCHDOG_THREAD", 0, 0, 1);
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
}
