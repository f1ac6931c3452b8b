/* SPDX-License-Identifier: MIT
 * lifecycle.c - the process's start and end: esca_lib_init() (lazy: the
 * first interposed call, or the constructor), the real functions, exit and
 * the main wrapper, exec*, _exit/_Exit, vfork (DESIGN.md, "Contract:
 * threads and fork"). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

HIDDEN struct reals real;
HIDDEN int lib_ready;
HIDDEN int lib_exiting;

static pthread_once_t once = PTHREAD_ONCE_INIT;

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

#define REQUIRED next
#define OPTIONAL next_opt
#define REAL_RESOLVE(member, symbol, ret, params, need) \
	real.member = (ret (*) params)need(symbol);

static void init_once(void)
{
	REAL_FUNCTIONS(REAL_RESOLVE)
	config_load();
	fdmap_init();
	exec_drain_init();
	thread_init();
	signals_init();
	timer_mask_read();	/* the first thread's, as exec left it */
	__atomic_store_n(&lib_ready, 1, __ATOMIC_RELEASE);
}

#undef REAL_RESOLVE
#undef REQUIRED
#undef OPTIONAL

void esca_lib_init(void)
{
	pthread_once(&once, init_once);
}

__attribute__((constructor)) static void ctor(void)
{
	esca_lib_init();
}

__attribute__((destructor)) static void dtor(void)
{
	lib_lifecycle_flush();
}

/* The program is ending (main returned, or exit): what it wrote is sent now,
 * before the exit handlers and stdio's clean-up run (they close fds inside
 * glibc, where no interposer sees it, and write stdio buffers), and from
 * here on every call goes straight to the kernel. */
static void lib_exit_flush(void)
{
	/* first: other threads' calls from now on go straight in (after their
	 * queued ones), so that draining them ends */
	__atomic_store_n(&lib_exiting, 1, __ATOMIC_RELEASE);
	lib_lifecycle_flush();
}

EXPORT void exit(int status)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_exit_flush();
	real.exit(status);
	__builtin_unreachable();
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

/* ---- exec, _exit, vfork: nothing may stay behind ------------------------ */

/* exec: sends parked on a full socket go to a drain process that outlives
 * the exec (execdrain.c; DESIGN.md, "Contract: parked sends"), the rest
 * goes out as at exit (lib_lifecycle_flush).  env: the environment to
 * pass (a drain's pipe for the new image), NULL: the program's. */
static char **exec_prepare(char *const envp[])
{
	char **env = NULL;

	if (unlikely(!lib_ready))
		esca_lib_init();
	if (!cfg.disabled)
		env = exec_handover(envp);
	lib_lifecycle_flush();
	return env;
}

EXPORT int execve(const char *p, char *const argv[], char *const envp[])
{
	char **env = exec_prepare(envp);
	int r = real.execve(p, argv, env ? env : envp);

	exec_failed(env);
	return r;
}

EXPORT int execv(const char *p, char *const argv[])
{
	char **env = exec_prepare(environ);
	int r = env ? real.execve(p, argv, env) : real.execv(p, argv);

	exec_failed(env);
	return r;
}

EXPORT int execvp(const char *p, char *const argv[])
{
	char **env = exec_prepare(environ);
	int r = env && real.execvpe ? real.execvpe(p, argv, env) :
				      real.execvp(p, argv);

	exec_failed(env);
	return r;
}

EXPORT int execvpe(const char *p, char *const argv[], char *const envp[])
{
	char **env = exec_prepare(envp);
	int r = real.execvpe(p, argv, env ? env : envp);

	exec_failed(env);
	return r;
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	char **env = exec_prepare(envp);
	int r = real.fexecve(fd, argv, env ? env : envp);

	exec_failed(env);
	return r;
}

/* execveat (glibc 2.34): the other execs' way (the processes' audit: its
 * queued bytes were lost) */
EXPORT int execveat(int dirfd, const char *p, char *const argv[],
		    char *const envp[], int flags)
{
	char **env;
	int r;

	if (unlikely(!lib_ready))
		esca_lib_init();
	if (!real.execveat) {
		errno = ENOSYS;
		return -1;
	}
	env = exec_prepare(envp);
	r = real.execveat(dirfd, p, argv, env ? env : envp, flags);
	exec_failed(env);
	return r;
}

/* quick_exit runs the at_quick_exit handlers and then _exit inside glibc,
 * where no interposer sees it (the processes' audit: the bytes queued
 * before it were lost).  The handlers' own calls go straight in, as exit
 * handlers' do (lib_exiting). */
EXPORT void quick_exit(int status)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_exit_flush();
	if (real.quick_exit)
		real.quick_exit(status);
	real.exit_(status);
	__builtin_unreachable();
}

EXPORT void _exit(int status)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_lifecycle_flush();
	real.exit_(status);
	__builtin_unreachable();
}

EXPORT void _Exit(int status)
{
	if (unlikely(!lib_ready))
		esca_lib_init();
	lib_lifecycle_flush();
	real.Exit(status);
	__builtin_unreachable();
}

/* vfork stays vfork (DESIGN.md, "Contract: threads and fork"): the child
 * runs in our memory, on our stack, until it execs or exits, and may store
 * into the parent's memory, as vfork allows.  So nothing may be left in
 * this thread's table but sends parked on a full socket (handed over, as
 * at fork: flush.c), the thread's state must exist before (a table the child made would be the parent's), it is marked so
 * that the child's calls pass through (vfork_child), and the real vfork is
 * entered by a jump from our frame-less vfork: a C function that called it
 * would return in the child, and its frame, which the parent returns
 * through, would be the child's to overwrite. */
HIDDEN void *esca_vfork_prepare(void)
{
	struct tstate *ts;

	if (unlikely(!lib_ready))
		esca_lib_init();
	ts = ts_get();
	if (ts && !ts->guard) {
		if (ts->table && esca_table_pending(ts->table))
			lib_flush_handover(ts, ESCA_WHY_LIFECYCLE);
		threads_hand_over();	/* and the other threads', as fork */
		ts->vfork_tid = (int)syscall(SYS_gettid);
	}
	return (void *)real.vfork;
}

#if defined(__x86_64__)
__asm__(".text\n"
	".globl vfork\n"
	".type vfork, @function\n"
	"vfork:\n"
	"	endbr64\n"
	"	sub $8, %rsp\n"		/* the call's stack alignment */
	"	call esca_vfork_prepare\n"
	"	add $8, %rsp\n"
	"	jmp *%rax\n"
	".size vfork, .-vfork\n");
#elif defined(__aarch64__)
__asm__(".text\n"
	".globl vfork\n"
	".type vfork, %function\n"
	"vfork:\n"
	"	stp x29, x30, [sp, #-16]!\n"
	"	bl esca_vfork_prepare\n"
	"	ldp x29, x30, [sp], #16\n"
	"	br x0\n"
	".size vfork, .-vfork\n");
#else
/* elsewhere: a fork, which POSIX allows (a child's stores are not seen) */
EXPORT pid_t vfork(void)
{
	esca_vfork_prepare();
	return real.fork();
}
#endif
