/* SPDX-License-Identifier: MIT
 * preload.h - what the files of libesca.so share (not installed). */
#ifndef ESCA_PRELOAD_INTERNAL_H
#define ESCA_PRELOAD_INTERNAL_H

#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "catalog.h"
#include "esca.h"

#define HIDDEN __attribute__((visibility("hidden")))
#define EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* The interposed calls that can be deferred, and why one was passed
 * through to the kernel (catalog.h). */
#define SC_ENUM(E, n, seed, where) SC_##E,
enum sc { ESCA_SYSCALLS(SC_ENUM) SC__COUNT };
#undef SC_ENUM
#define PASS_ENUM(E, n, help) PASS_##E,
enum pass { ESCA_PASS_REASONS(PASS_ENUM) PASS__COUNT };
#undef PASS_ENUM

struct sc_stats {
	uint64_t seen, deferred, surfaced;
	uint64_t passed[PASS__COUNT];
};

/* What the library knows of an fd.  One array for the process, indexed by
 * fd, in lazily touched anonymous memory. */
enum fd_kind {
	FK_UNKNOWN = 0, FK_STREAM, FK_SOCKET, FK_PIPE, FK_FILE, FK_OTHER, FK_BAD
};
#define FI_NONBLOCK	0x01
#define FI_TCP		0x02	/* AF_INET/AF_INET6 stream: TCP options apply */
#define FI_FAILED	0x04	/* a deferred op failed: no more deferral */
#define FI_EPOLLIN	0x08	/* in an epoll set of ours for reading */
#define FI_NOANSWER	0x10	/* SO_RCVLOWAT & co: never answer its reads */
#define FI_CORK_KNOWN	0x20	/* we know the kernel's TCP_CORK of it */
#define FI_CORKED	0x40	/* TCP_CORK as the program set it */
#define FI_CORK_VIRT	0x80	/* ... on, but only in our queued MSG_MORE */
#define FI_ACC		0x100	/* the two below are known (F_GETFL)       */
#define FI_NOWRITE	0x200	/* not open for writing (O_RDONLY, O_PATH) */
#define FI_NOREAD	0x400	/* not open for reading (O_WRONLY, O_PATH) */
#define FI_DIRTY	0x800	/* a regular file with writes deferred */
#define FI_OWED		0x1000	/* told EAGAIN while parked: owed an event */

/* The levers beyond ESCA (catalog.h), one bit each. */
#define LV_BIT(E, n, help) LV_BIT_##E,
enum { ESCA_LEVERS(LV_BIT) LV__COUNT };
#undef LV_BIT
#define LV_ENUM(E, n, help) LV_##E = 1u << LV_BIT_##E,
enum lever { ESCA_LEVERS(LV_ENUM) };
#undef LV_ENUM

struct fdinfo {
	uint8_t kind;
	uint8_t pad8;
	uint16_t gen;		/* bumped at every close of this number */
	int32_t err;		/* error of a deferred op, for the next call */
	int32_t key1;		/* ordering key + 1 (0: the fd itself): fds
				 * known to share one open file share a key */
	uint16_t flags;		/* FI_* */
	uint16_t pad16;
	int64_t size;		/* FK_FILE: st_size when looked at */
	uint64_t drained;	/* wait token of the thread whose read found
				 * the socket empty, in that wait round */
	int32_t ep_fd;		/* epoll fd + 1 of its last registration */
	uint32_t ep_events;	/* ... and its events and data */
	uint64_t ep_data;
};

#define MAX_EPREG 8
#define MAX_OWED 64

/* Per-thread state. */
struct tstate {
	struct esca_table *table;
	int guard;		/* inside the library: interposers pass through */
	int busy;		/* changing the table: the timer signal waits */
	int in_wait;		/* in an event-loop wait that watches parked ops */
	int signaled;		/* the watchdog sent the timer signal */
	pthread_t tid;
	int segment;		/* explicit batch_start() open */
	int nexplicit;
	uint64_t oldest_ns;	/* when the oldest queued entry was queued */
	uint64_t wait_token;	/* thread id << 32 | waits made: a drained
				 * socket stays known empty until it changes */
	uint64_t reads_seen, reads_answered;
	uint64_t composed;	/* setsockopt calls composed into MSG_MORE */
	int files_dirty;	/* writes to regular files are queued */
	int nowed;		/* fds told EAGAIN while their bytes were */
	int owed[MAX_OWED];	/* parked: re-armed in their epoll set when
				 * the bytes are out (lib_flush) */
	uint64_t eagain_parked;	/* data calls answered EAGAIN so */
	struct sc_stats sc[SC__COUNT];
	struct { int fd; uint16_t gen; } epreg[MAX_EPREG];
	int nepreg;
	struct pollfd *pbuf;	/* poll() copy with the progress fd added */
	size_t pbuf_n;
	struct tstate *next;	/* all threads, for the stats */
	int dead;
	struct esca_stats core_dead;	/* the table's stats, once freed */
};

struct config {
	int disabled;
	int executor;
	int implicit;
	int quiet;
	unsigned capacity;
	size_t budget;
	uint64_t flush_ns;
	uint64_t stats_interval_ns;
	uint64_t watchdog_ns;	/* 0: no watchdog */
	int timer_signal;
	unsigned selected;	/* bit per enum sc */
	unsigned levers;	/* enum lever bits */
	char stats_path[4096];
	int stats_root_pid;
};

extern HIDDEN struct config cfg;
extern HIDDEN struct fdinfo *fdtab;
extern HIDDEN int fdtab_n;
extern HIDDEN __thread struct tstate *tls_ts
	__attribute__((tls_model("initial-exec")));

/* the real functions, from dlsym(RTLD_NEXT) */
struct reals {
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int,
			  const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	int (*shutdown)(int, int);
	int (*close)(int);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*epoll_wait)(int, struct epoll_event *, int, int);
	int (*epoll_pwait)(int, struct epoll_event *, int, int,
			   const sigset_t *);
	int (*epoll_pwait2)(int, struct epoll_event *, int,
			    const struct timespec *, const sigset_t *);
	int (*poll)(struct pollfd *, unsigned long, int);
	int (*ppoll)(struct pollfd *, unsigned long, const struct timespec *,
		     const sigset_t *);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *,
		       const struct timespec *, const sigset_t *);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *,
			    socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*pread)(int, void *, size_t, off_t);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execv)(const char *, char *const[]);
	int (*execvp)(const char *, char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	void (*exit_)(int) __attribute__((noreturn));
	void (*Exit)(int) __attribute__((noreturn));
	pid_t (*fork)(void);
	void (*exit)(int) __attribute__((noreturn));
	int (*fclose)(FILE *);
	int (*libc_start_main)(int (*)(int, char **, char **), int, char **,
			       void (*)(void), void (*)(void), void (*)(void),
			       void *);
};
extern HIDDEN struct reals real;

/* state.c */
HIDDEN void esca_lib_init(void);
HIDDEN struct tstate *ts_slow(void);
HIDDEN int fd_detect(int fd, struct fdinfo *fi);
HIDDEN void fd_note_access(struct fdinfo *fi, long fl);
HIDDEN int fd_access_ok(int fd, struct fdinfo *fi, uint16_t need);
HIDDEN void lib_flush(struct tstate *ts, unsigned mode, int why);
HIDDEN void lib_sync_fd(struct tstate *ts, int fd);
HIDDEN void lib_pay_owed(struct tstate *ts);
HIDDEN int lib_flush_epoll(struct tstate *ts, int epfd,
			   struct epoll_event *evs, int max, int timeout,
			   const sigset_t *mask);
HIDDEN void lib_lifecycle_flush(void);
HIDDEN void stats_maybe_write(int force);
HIDDEN uint64_t now_ns(void);
HIDDEN void say(const char *msg);

extern HIDDEN int lib_ready;
extern HIDDEN int lib_exiting;	/* past main / in exit: nothing is deferred */

static inline struct tstate *ts_get(void)
{
	struct tstate *ts = tls_ts;

	if (likely(ts))
		return ts;
	return ts_slow();
}

static inline struct fdinfo *fdi(int fd)
{
	if (fd < 0 || fd >= fdtab_n || !fdtab)
		return NULL;
	return &fdtab[fd];
}

#endif
