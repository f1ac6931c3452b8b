/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT
 *
 * esca_lkm.h - the interface of the esca kernel module (lkm/), shared by the
 * module and by the native core's `lkm` executor (native/core/lkm.c).
 *
 * Opening /dev/esca gives a private context.  ESCA_IOC_REGISTER pins the
 * caller's table of struct esca_lkm_entry (user memory, any number of
 * entries up to ESCA_LKM_MAX_ENTRIES) and maps it into the kernel;
 * ESCA_IOC_FLUSH runs the entries [first, first + count) whose state is
 * ESCA_LKM_BUSY, in order, in the caller's context (its fds, its
 * credentials), and writes each one's result and state back.  Closing the
 * fd unpins the table.  Only the process (mm) that registered a table may
 * flush it: a forked child gets EPERM.
 *
 * Order.  Entries run one after another in table order.  An entry that
 * stops before it is done and will be resubmitted (it ends with -EAGAIN, or
 * short with error -EAGAIN or -EINTR, or is interrupted) holds its key: a
 * later entry with that key, or a later sendfile whose fd2 is that key, is
 * left ESCA_LKM_BUSY (not run), and holds its own keys in turn, so that
 * nothing overtakes the rest of an op on its fd.  A sendfile also holds
 * its fd2 (a later close of the file waits for it).
 *
 * Results follow the plain system call: bytes done (a write's short writes
 * are completed as long as the fd accepts bytes; a non-blocking fd that
 * fills up stops the entry with the count done and error = -EAGAIN), 0, or
 * -errno.  An op outside the allow-list, or an entry whose fields are out
 * of bounds, completes with -EINVAL.  An entry interrupted by a signal
 * before anything was done stays ESCA_LKM_BUSY: the flush stops there and
 * returns, the signal is delivered, and the caller flushes the rest again
 * (from a table it builds anew: what a walk held is not remembered).  Any
 * signal counts (SIGSTOP, the cgroup freezer's too): a write that has done
 * part of its bytes stops between chunks with the count done and error
 * -EINTR, and the walk stops before the next entry.
 *
 * Policy.  The module does not run calls past the caller's system call
 * policy or observers: while the calling thread has a seccomp filter (or
 * strict mode), a ptrace tracer, syscall tracepoints enabled, syscall user
 * dispatch, or an audit context with rules, FLUSH fails with EACCES and
 * runs nothing; the caller then makes the calls as plain system calls
 * (native/core/lkm.c does).  shutdown and setsockopt are not run by the
 * module (their LSM hooks are out of a module's reach).
 */
#ifndef ESCA_LKM_H
#define ESCA_LKM_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define ESCA_LKM_DEVICE "/dev/esca"
#define ESCA_LKM_MAX_ENTRIES 32768u

/* Ops; the numbers are those of enum esca_op (esca.h). */
enum esca_lkm_op {
	ESCA_LKM_WRITE = 0,	/* write(fd, iov[0])             iovcnt 1  */
	ESCA_LKM_WRITEV,	/* writev(fd, iov, iovcnt)                 */
	ESCA_LKM_SEND,		/* send(fd, iov[0], flags)        iovcnt 1  */
	ESCA_LKM_SENDMSG,	/* sendmsg(fd, {iov, iovcnt}, flags)       */
	ESCA_LKM_SENDFILE,	/* sendfile(fd, fd2, offset or -1, count);
				 * at most MAX_RW_COUNT bytes, as the call */
	ESCA_LKM_SHUTDOWN,	/* not executed by the module: -EINVAL     */
	ESCA_LKM_CLOSE,		/* close(fd)                               */
	ESCA_LKM_SETSOCKOPT,	/* not executed by the module: -EINVAL     */
	ESCA_LKM_FSYNC,		/* fsync(fd)                               */
	ESCA_LKM_OP__COUNT
};

enum esca_lkm_state {
	ESCA_LKM_FREE = 0,	/* skipped by a flush                      */
	ESCA_LKM_BUSY = 1,	/* set by user space: run me               */
	ESCA_LKM_DONE = 2,	/* set by the module: result, error valid  */
};

/* One entry: 64 bytes, fixed layout on every architecture. */
struct esca_lkm_entry {
	__u32 op;		/* enum esca_lkm_op                         */
	__u32 state;		/* enum esca_lkm_state                      */
	__s32 fd;
	__s32 fd2;		/* sendfile: in_fd                          */
	__s32 flags;		/* send/sendmsg: MSG_*; shutdown: how       */
	__u32 iovcnt;		/* data ops: entries of iov                 */
	__u64 iov;		/* data ops: user address of struct iovec[] */
	__s64 offset;		/* sendfile: >= 0 explicit, -1 file position */
	__u64 count;		/* sendfile: bytes asked                    */
	__s64 result;		/* out: bytes, 0, or -errno                 */
	__s32 error;		/* out: with result >= 0, why the op stopped
				 * short: 0 (end of file, no progress) or
				 * -errno (-EAGAIN: fd full; -EINTR ...)     */
	__s32 key;		/* order: see "Order" above; -1 for none     */
};

struct esca_lkm_register {
	__u64 table;		/* user address, 8-byte aligned, of private
				 * anonymous writable memory (malloc, mmap
				 * MAP_PRIVATE|MAP_ANONYMOUS)               */
	__u32 nents;		/* 1 .. ESCA_LKM_MAX_ENTRIES                */
	__u32 entry_size;	/* sizeof(struct esca_lkm_entry)            */
	__u32 flags;		/* must be 0                                */
	__u32 reserved;		/* must be 0                                */
};

struct esca_lkm_flush {
	__u32 first;		/* first entry to look at                   */
	__u32 count;		/* entries to look at: first + count <= nents */
	__u32 flags;		/* must be 0                                */
	__u32 reserved;		/* must be 0                                */
};

#define ESCA_IOC_MAGIC 0xE5
/* 0 or -1/errno: EINVAL (bounds; memory not private anonymous), EFAULT
 * (table not writable user memory),
 * EBUSY (a table is registered already), ENOMEM (RLIMIT_MEMLOCK, charged
 * to the user: every process of the uid shares it, as with io_uring). */
#define ESCA_IOC_REGISTER _IOW(ESCA_IOC_MAGIC, 1, struct esca_lkm_register)
/* Entries walked (count, or fewer when a signal stopped the walk), or
 * -1/errno: EBADFD (no table registered), EINVAL (bounds), EPERM (another
 * process's table), EACCES (the caller is filtered, traced or audited: see
 * "Policy"; make the calls plainly). */
#define ESCA_IOC_FLUSH _IOW(ESCA_IOC_MAGIC, 2, struct esca_lkm_flush)

#endif /* ESCA_LKM_H */
