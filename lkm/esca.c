// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * esca.c - the esca kernel module: runs a process's batch table of deferred
 * system calls with one kernel entry (ioctl) per flush.  The interface is
 * native/include/esca_lkm.h; the user-space side is native/core/lkm.c.
 *
 * What it does differently from the ESCA paper's module:
 *
 *  - No syscall-table patching, no CR0 write-protect games.  It is a misc
 *    device, /dev/esca; each open() is a private context (a mutex, one
 *    pinned table, the mm that registered it).  Any number of processes and
 *    threads use it at once; a context is only ever flushed by the process
 *    that registered its table (a forked child gets -EPERM).
 *  - The table is private anonymous user memory pinned with
 *    pin_user_pages_fast(FOLL_LONGTERM) and mapped with vmap(); the pinned
 *    pages are charged to the user's RLIMIT_MEMLOCK (user->locked_vm, as
 *    io_uring does: the pins outlive the mm when the fd is kept across
 *    exec) and unpinned on close.  Every entry is copied out of the shared table
 *    before it is checked, so user space changing it meanwhile cannot get an
 *    unchecked value past the checks.  Data buffers are not pinned: they
 *    are read with the usual user-copy routines, in the caller's context.
 *  - An allow-list of ops (those the native core defers, less setsockopt
 *    and shutdown); anything else, and out-of-bounds fields, complete with
 *    -EINVAL.
 *  - No policy bypass: a caller under a seccomp filter, ptrace, syscall
 *    tracepoints, syscall user dispatch or syscall auditing gets -EACCES
 *    from FLUSH (nothing run) and runs its calls as plain system calls:
 *    those mechanisms would otherwise see one ioctl (see watched()).
 *  - Interruptible: any signal (SIGSTOP, the cgroup freezer) stops a flush
 *    between chunks of a write and between entries, the rest left pending,
 *    as a plain write(2) would stop.  A sendfile entry moves at most
 *    MAX_RW_COUNT bytes, as sendfile(2) does.  /proc/PID/io counts the
 *    writes (and sendfile's reads) as their system calls count them.
 *  - Per-fd order survives short writes: an entry that stops short (a full
 *    non-blocking socket) holds its key, and later entries with that key
 *    stay BUSY for the next flush instead of overtaking its rest.
 *
 * How the ops reach their implementations.  Not through sys_call_table:
 * it has not been exported for a long time, kallsyms_lookup_name() is not
 * exported since 5.7 (finding it takes kprobe tricks), and since 6.9 x86
 * dispatches system calls through a switch, so the table is left for
 * lookups only; calling __x64_sys_*() with a forged pt_regs would also tie
 * the module to one calling convention.  Instead each op calls the exported
 * VFS or socket entry point that its system call itself calls, in the
 * caller's context, so the fd is looked up in the caller's fd table and the
 * caller's credentials apply:
 *
 *   write, writev   fget + vfs_iter_write (rw_verify_area, LSM file
 *                   permission, O_APPEND, O_NONBLOCK, f_pos under
 *                   f_pos_lock); a zero-length write on a socket goes to
 *                   sock_sendmsg as write(2) does
 *   send, sendmsg   sockfd_lookup + sock_sendmsg (LSM socket_sendmsg);
 *                   O_NONBLOCK becomes MSG_DONTWAIT as in the system call
 *   sendfile        do_sendfile()'s steps with do_splice_direct
 *   close           close_fd, as close(2)
 *   fsync           fget + vfs_fsync
 *
 * setsockopt is not on the list: its LSM and cgroup-BPF hooks are not
 * reachable from a module, and skipping a BPF policy that may rewrite or
 * refuse an option is not acceptable; the lkm executor runs it as a plain
 * system call at its turn.  shutdown neither: kernel_sock_shutdown() skips
 * security_socket_shutdown(), which is not exported (an LSM may refuse
 * shutdown(2): AppArmor and SELinux mediate it).
 */
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/compat.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/fsnotify.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <linux/nospec.h>
#include <linux/ptrace.h>
#include <linux/sched/user.h>
#include <linux/sched/xacct.h>
#include <linux/seccomp.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/splice.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <linux/version.h>
#include <linux/vmalloc.h>

#include "esca_lkm.h"

/* Since 6.7 vfs_iter_write() and do_splice_direct() take the superblock's
 * write freeze protection themselves; before, their callers do. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 7, 0)
#define ESCA_CALLER_START_WRITE 1
#else
#define ESCA_CALLER_START_WRITE 0
#endif

/* The MSG_* flags a deferred send may carry; the kernel-internal ones
 * (MSG_SENDPAGE_*, MSG_BATCH, MSG_CMSG_COMPAT, ...) and those that need an
 * address or the error queue are refused. */
#define ESCA_SEND_FLAGS (MSG_OOB | MSG_DONTROUTE | MSG_DONTWAIT | MSG_EOR | \
			 MSG_NOSIGNAL | MSG_MORE | MSG_CONFIRM | MSG_WAITALL)

struct esca_ctx {
	struct mutex lock;		/* one flush or register at a time */
	struct mm_struct *mm;		/* who registered (mmgrab'd)       */
	struct user_struct *user;	/* charged for the pinned pages    */
	struct page **pages;
	unsigned long npages;
	void *map;			/* vmap of pages                   */
	struct esca_lkm_entry *tab;	/* map + offset of the table       */
	u32 nents;
};

/* The result of running one entry. */
struct esca_res {
	s64 result;
	s32 error;
	bool again;	/* interrupted before doing anything: leave it BUSY */
};

static bool is_restart(long r)
{
	return r == -ERESTARTSYS || r == -ERESTARTNOINTR ||
	       r == -ERESTARTNOHAND || r == -ERESTART_RESTARTBLOCK;
}

/* Fill *res from what an op did: `done` bytes, then `stop` (0 or -errno). */
static void settle(struct esca_res *res, size_t done, long stop)
{
	if (is_restart(stop))
		stop = -EINTR;
	if (done > 0) {
		res->result = done;
		res->error = stop;
	} else if (stop == -EINTR) {
		res->again = true;	/* nothing happened: run it again */
	} else {
		res->result = stop;
	}
}

/* A signal to deliver (any: SIGSTOP and the cgroup freezer's trap too):
 * a flush stops between chunks and entries for it, the rest left for the
 * next one.  Not signal_pending(): it also counts TIF_NOTIFY_SIGNAL alone
 * (io_uring task_work), where there is nothing to deliver and stopping
 * would only split the batch (the calls themselves still see it). */
static bool to_deliver(void)
{
	return task_sigpending(current);
}

/* ---- write, writev: the file's own write path ------------------------- */

/* The current segment of an iovec iterator. */
static struct iovec iter_segment(const struct iov_iter *it)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 4, 0)
	return iov_iter_iovec(it);
#else
	return (struct iovec){ .iov_base = iter_iov_addr(it),
			       .iov_len = iter_iov_len(it) };
#endif
}

/* A file with ->write but no ->write_iter (some procfs and device files):
 * writev(2)'s steps (do_loop_readv_writev), one segment at a time, over
 * the iterator import_iovec() checked and truncated to MAX_RW_COUNT; the
 * user's iovec is not read again. */
static ssize_t write_loop(struct file *file, struct iov_iter *it, loff_t *ppos)
{
	ssize_t r, done = 0;

	if (!(file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (!(file->f_mode & FMODE_CAN_WRITE) || !file->f_op->write)
		return -EINVAL;
	r = rw_verify_area(WRITE, file, ppos, iov_iter_count(it));
	if (r < 0)
		return r;
	file_start_write(file);
	while (iov_iter_count(it)) {
		struct iovec v = iter_segment(it);

		r = file->f_op->write(file, v.iov_base, v.iov_len, ppos);
		if (r <= 0)
			break;
		done += r;
		if ((size_t)r != v.iov_len)
			break;	/* short: the rest goes in again */
		iov_iter_advance(it, r);
	}
	if (done > 0)
		fsnotify_modify(file);
	file_end_write(file);
	return done > 0 ? done : r;
}

/* write(2)/writev(2) of the iterator `it` (the entry's data past `done`). */
static ssize_t file_write(struct file *file, struct iov_iter *it)
{
	bool lock = file->f_mode & FMODE_ATOMIC_POS;
	loff_t pos = 0, *ppos = NULL;
	ssize_t r;

	if (lock)
		mutex_lock(&file->f_pos_lock);
	if (!(file->f_mode & FMODE_STREAM)) {
		pos = file->f_pos;
		ppos = &pos;
	}
	if (file->f_op->write_iter) {
		if (ESCA_CALLER_START_WRITE)
			file_start_write(file);
		r = vfs_iter_write(file, it, ppos, 0);
		if (ESCA_CALLER_START_WRITE)
			file_end_write(file);
	} else {
		r = write_loop(file, it, ppos);
	}
	if (r >= 0 && ppos)
		file->f_pos = pos;
	if (lock)
		mutex_unlock(&file->f_pos_lock);
	return r;
}

/* One sock_sendmsg() as the system calls make it. */
static int sock_send(struct socket *sock, struct iov_iter *it, int flags)
{
	struct msghdr msg = { .msg_iter = *it };

	if (sock->file->f_flags & O_NONBLOCK)
		flags |= MSG_DONTWAIT;
	msg.msg_flags = flags;
	return sock_sendmsg(sock, &msg);
}

static void run_data(const struct esca_lkm_entry *e, struct esca_res *res)
{
	struct iovec fast[UIO_FASTIOV], *iov = fast;
	struct socket *sock = NULL;
	struct file *file = NULL;
	struct iov_iter iter;
	bool is_send = e->op == ESCA_LKM_SEND || e->op == ESCA_LKM_SENDMSG;
	size_t total, done = 0;
	long stop = 0;
	int err = 0;

	if ((e->op == ESCA_LKM_WRITE || e->op == ESCA_LKM_SEND) &&
	    e->iovcnt != 1) {
		res->result = -EINVAL;
		return;
	}
	if (is_send && (e->flags & ~ESCA_SEND_FLAGS)) {
		res->result = -EINVAL;
		return;
	}
	/* the fd first, as the system calls look it up first */
	if (is_send) {
		sock = sockfd_lookup(e->fd, &err);
		if (!sock) {
			res->result = err;
			return;
		}
	} else {
		file = fget(e->fd);
		if (!file) {
			res->result = -EBADF;
			return;
		}
		sock = sock_from_file(file);
	}
	stop = import_iovec(ITER_SOURCE, u64_to_user_ptr(e->iov), e->iovcnt,
			    ARRAY_SIZE(fast), &iov, &iter);
	if (stop < 0) {
		iov = NULL;
		goto out;
	}
	stop = 0;
	total = iov_iter_count(&iter);
	for (;;) {
		struct iov_iter it = iter;
		long r;

		iov_iter_advance(&it, done);
		if (is_send) {
			r = sock_send(sock, &it, e->flags);
		} else if (sock && total == 0 && e->op == ESCA_LKM_WRITE) {
			/* write(fd, p, 0) reaches a socket (EPIPE after
			 * shutdown) where writev of nothing returns 0 */
			r = rw_verify_area(WRITE, file, NULL, 0);
			if (r == 0)
				r = sock_send(sock, &it, 0);
		} else {
			r = file_write(file, &it);
		}
		if (r < 0) {
			stop = r;
			break;
		}
		done += r;
		if (r == 0 || done >= total)
			break;	/* finished, or no progress: stop */
		if (to_deliver()) {
			stop = -EINTR;	/* stop or freeze now, the rest later */
			break;
		}
		cond_resched();
	}
	if (!is_send) {	/* as write(2) and writev(2) count */
		if (done > 0)
			add_wchar(current, done);
		inc_syscw(current);
	}
out:
	settle(res, done, stop);
	kfree(iov);
	if (is_send)
		sockfd_put(sock);
	else
		fput(file);
}

/* ---- sendfile: do_sendfile()'s steps ---------------------------------- */

static long sendfile_once(int out_fd, int in_fd, loff_t *ppos, size_t count)
{
	struct inode *in_inode, *out_inode;
	struct file *in, *out;
	loff_t pos, out_pos, max;
	long r;

	in = fget(in_fd);
	if (!in)
		return -EBADF;
	r = -EBADF;
	if (!(in->f_mode & FMODE_READ))
		goto put_in;
	r = -ESPIPE;
	if (!ppos) {
		pos = in->f_pos;
	} else {
		pos = *ppos;
		if (!(in->f_mode & FMODE_PREAD))
			goto put_in;
	}
	r = rw_verify_area(READ, in, &pos, count);
	if (r < 0)
		goto put_in;
	if (count > MAX_RW_COUNT)
		count = MAX_RW_COUNT;
	r = -EBADF;
	out = fget(out_fd);
	if (!out)
		goto put_in;
	if (!(out->f_mode & FMODE_WRITE))
		goto put_out;
	in_inode = file_inode(in);
	out_inode = file_inode(out);
	out_pos = out->f_pos;
	max = min(in_inode->i_sb->s_maxbytes, out_inode->i_sb->s_maxbytes);
	if (unlikely(pos + count > max)) {
		r = -EOVERFLOW;
		if (pos >= max)
			goto put_out;
		count = max - pos;
	}
	r = rw_verify_area(WRITE, out, &out_pos, count);
	if (r < 0)
		goto put_out;
	if (ESCA_CALLER_START_WRITE)
		file_start_write(out);
	r = do_splice_direct(in, &pos, out, &out_pos, count, 0);
	if (ESCA_CALLER_START_WRITE)
		file_end_write(out);
	if (r > 0) {
		fsnotify_access(in);
		fsnotify_modify(out);
		out->f_pos = out_pos;
		if (ppos)
			*ppos = pos;
		else
			in->f_pos = pos;
	}
	if (pos > max)
		r = -EOVERFLOW;
put_out:
	fput(out);
put_in:
	fput(in);
	return r;
}

static void run_sendfile(const struct esca_lkm_entry *e, struct esca_res *res)
{
	loff_t off = e->offset;
	size_t count, done = 0;
	long stop = 0;

	if (e->offset < -1 || e->count > LLONG_MAX) {
		res->result = -EINVAL;
		return;
	}
	/* one sendfile(2) moves at most MAX_RW_COUNT bytes: so does one
	 * entry (the caller sends the rest as it would after the call) */
	count = min_t(u64, e->count, MAX_RW_COUNT);
	for (;;) {
		long r = sendfile_once(e->fd, e->fd2, e->offset >= 0 ? &off : NULL,
				       count - done);

		if (r < 0) {
			stop = r;
			break;
		}
		done += r;
		if (r == 0 || done >= count)
			break;	/* finished, or end of file */
		if (to_deliver()) {
			stop = -EINTR;
			break;
		}
		cond_resched();
	}
	if (done > 0) {	/* as sendfile(2) counts */
		add_rchar(current, done);
		add_wchar(current, done);
	}
	inc_syscr(current);
	inc_syscw(current);
	settle(res, done, stop);
}

/* ---- close, fsync ----------------------------------------------------- */

static void run_close(const struct esca_lkm_entry *e, struct esca_res *res)
{
	int r = close_fd(e->fd);

	/* as close(2): the fd is gone, never run it again */
	res->result = is_restart(r) ? -EINTR : r;
}

static void run_fsync(const struct esca_lkm_entry *e, struct esca_res *res)
{
	struct file *file = fget(e->fd);

	if (!file) {
		res->result = -EBADF;
		return;
	}
	settle(res, 0, vfs_fsync(file, 0));
	fput(file);
}

typedef void (*esca_run_fn)(const struct esca_lkm_entry *e,
			    struct esca_res *res);

/* The allow-list.  Not on it: setsockopt (see the top of the file) and
 * shutdown: security_socket_shutdown() is not exported and
 * kernel_sock_shutdown() skips it, so an LSM that refuses shutdown(2)
 * would be bypassed; both run as plain system calls in user space. */
static const esca_run_fn esca_ops[ESCA_LKM_OP__COUNT] = {
	[ESCA_LKM_WRITE] = run_data,
	[ESCA_LKM_WRITEV] = run_data,
	[ESCA_LKM_SEND] = run_data,
	[ESCA_LKM_SENDMSG] = run_data,
	[ESCA_LKM_SENDFILE] = run_sendfile,
	[ESCA_LKM_CLOSE] = run_close,
	[ESCA_LKM_FSYNC] = run_fsync,
};

/* Keys held during one walk (esca_lkm.h, "Order"); past ESCA_HOLD_KEYS
 * of them, every later entry is held. */
#define ESCA_HOLD_KEYS 32

struct esca_hold {
	s32 keys[ESCA_HOLD_KEYS];
	unsigned int n;
	bool all;
};

static bool is_held(const struct esca_hold *h, s32 key)
{
	unsigned int i;

	if (key < 0)
		return false;
	if (h->all)
		return true;
	for (i = 0; i < h->n; i++)
		if (h->keys[i] == key)
			return true;
	return false;
}

static void hold(struct esca_hold *h, s32 key)
{
	if (key < 0 || is_held(h, key))
		return;
	if (h->n == ESCA_HOLD_KEYS)
		h->all = true;
	else
		h->keys[h->n++] = key;
}

/* Run the entry in slot; false if a signal interrupted it (it stays BUSY
 * and the walk stops so that the signal is delivered). */
static bool run_entry(struct esca_lkm_entry *slot, struct esca_hold *h)
{
	struct esca_lkm_entry e;
	struct esca_res res = { 0 };
	s32 key2;

	/* one copy, then only the copy is looked at */
	memcpy(&e, slot, sizeof(e));
	barrier();
	key2 = e.op == ESCA_LKM_SENDFILE ? e.fd2 : -1;
	if (is_held(h, e.key) || is_held(h, key2)) {
		hold(h, e.key);	/* not run: stays BUSY */
		hold(h, key2);
		return true;
	}
	if (e.op >= ESCA_LKM_OP__COUNT || !esca_ops[e.op])
		res.result = -EINVAL;
	else
		esca_ops[array_index_nospec(e.op, ESCA_LKM_OP__COUNT)](&e, &res);
	if (res.again)
		return false;
	if (res.result == -EAGAIN || res.error == -EAGAIN || res.error == -EINTR) {
		hold(h, e.key);	/* the rest goes in again: nothing overtakes */
		hold(h, key2);
	}
	WRITE_ONCE(slot->result, res.result);
	WRITE_ONCE(slot->error, res.error);
	smp_wmb();
	WRITE_ONCE(slot->state, ESCA_LKM_DONE);
	return true;
}

/* ---- the context: register, flush, release ---------------------------- */

/* RLIMIT_MEMLOCK.  The pinned pages live as long as the file, which can
 * outlive the mm that registered them (an fd kept across exec, passed on,
 * or inherited), so they are charged to the user, whose count every
 * process of theirs shares, as io_uring charges its registered buffers;
 * mm->pinned_vm only shows them (VmPin).  CAP_IPC_LOCK: not limited.
 * The user's reference, or NULL (nothing charged). */
static struct user_struct *charge(struct mm_struct *mm, unsigned long npages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	struct user_struct *user = get_current_user();
	long cur;

	if (!capable(CAP_IPC_LOCK)) {
		cur = atomic_long_read(&user->locked_vm);
		do {
			if (npages > limit || cur > limit - npages) {
				free_uid(user);
				return ERR_PTR(-ENOMEM);
			}
		} while (!atomic_long_try_cmpxchg(&user->locked_vm, &cur,
						  cur + npages));
	} else {
		free_uid(user);
		user = NULL;
	}
	atomic64_add(npages, &mm->pinned_vm);
	return user;
}

static void uncharge(struct user_struct *user, struct mm_struct *mm,
		     unsigned long npages)
{
	atomic64_sub(npages, &mm->pinned_vm);
	if (user) {
		atomic_long_sub(npages, &user->locked_vm);
		free_uid(user);
	}
}

static void esca_unregister(struct esca_ctx *ctx)
{
	if (!ctx->map)
		return;
	vunmap(ctx->map);
	unpin_user_pages_dirty_lock(ctx->pages, ctx->npages, true);
	uncharge(ctx->user, ctx->mm, ctx->npages);
	kvfree(ctx->pages);
	mmdrop(ctx->mm);
	ctx->user = NULL;
	ctx->map = NULL;
	ctx->tab = NULL;
	ctx->pages = NULL;
	ctx->npages = 0;
	ctx->nents = 0;
	ctx->mm = NULL;
}

static long esca_register(struct esca_ctx *ctx,
			  const struct esca_lkm_register reg)
{
	unsigned long start, first, npages;
	struct user_struct *user;
	struct page **pages;
	size_t bytes;
	long pinned, r;
	void *map;

	if (reg.flags || reg.reserved ||
	    reg.entry_size != sizeof(struct esca_lkm_entry) ||
	    reg.nents == 0 || reg.nents > ESCA_LKM_MAX_ENTRIES ||
	    (reg.table & 7))
		return -EINVAL;
	if (!current->mm)
		return -EINVAL;
	bytes = (size_t)reg.nents * sizeof(struct esca_lkm_entry);
	start = (unsigned long)reg.table;
	if (start + bytes < start || !access_ok(u64_to_user_ptr(reg.table), bytes))
		return -EFAULT;
	if (ctx->map)
		return -EBUSY;
	first = start & PAGE_MASK;
	npages = (PAGE_ALIGN(start + bytes) - first) >> PAGE_SHIFT;
	pages = kvmalloc_array(npages, sizeof(*pages), GFP_KERNEL_ACCOUNT);
	if (!pages)
		return -ENOMEM;
	user = charge(current->mm, npages);
	if (IS_ERR(user)) {
		r = PTR_ERR(user);
		goto free_pages;
	}
	pinned = pin_user_pages_fast(first, npages, FOLL_WRITE | FOLL_LONGTERM,
				     pages);
	if (pinned != (long)npages) {
		if (pinned > 0)
			unpin_user_pages(pages, pinned);
		r = pinned < 0 ? pinned : -EFAULT;
		goto unaccount;
	}
	/* Private anonymous memory only: dirtying a pinned page of a file
	 * (or shmem) mapping behind the filesystem's back is not safe. */
	for (unsigned long i = 0; i < npages; i++) {
		if (!PageAnon(pages[i])) {
			r = -EINVAL;
			goto unpin;
		}
	}
	map = vmap(pages, npages, VM_MAP, PAGE_KERNEL);
	if (!map) {
		r = -ENOMEM;
		goto unpin;
	}
	mmgrab(current->mm);
	ctx->mm = current->mm;
	ctx->user = user;
	ctx->pages = pages;
	ctx->npages = npages;
	ctx->map = map;
	ctx->tab = map + offset_in_page(start);
	ctx->nents = reg.nents;
	return 0;
unpin:
	unpin_user_pages(pages, npages);
unaccount:
	uncharge(user, current->mm, npages);
free_pages:
	kvfree(pages);
	return r;
}

/* Whether the caller's system calls are watched or filtered: a seccomp
 * filter (or strict mode), a ptrace tracer, syscall tracepoints (perf,
 * BPF), syscall user dispatch, or an audit context with rules to apply.
 * Each of them sees or decides a system call at its entry, and would see
 * only one ioctl: the module does not run calls past them.  (Running each
 * entry through them instead is not possible from a module: seccomp's
 * filter runner, the ptrace stops and the audit entry hooks take the
 * system call's registers and are not exported.) */
/* Whether this system call is being audited: audit on, and a context
 * that records (audit_syscall_entry() sets "dummy" from the number of
 * rules, but only while audit is on: with audit off a context keeps the
 * value it had, so audit_enabled is looked at first; every task forked
 * after audit was once enabled has a context). */
static bool audited(void)
{
	return READ_ONCE(audit_enabled) && !audit_dummy_context();
}

static bool watched(void)
{
#ifdef CONFIG_SECCOMP
	if (READ_ONCE(current->seccomp.mode) != SECCOMP_MODE_DISABLED)
		return true;
#endif
	if (READ_ONCE(current->ptrace))
		return true;
#ifdef CONFIG_GENERIC_ENTRY
	if (READ_ONCE(current_thread_info()->syscall_work) &
	    (SYSCALL_WORK_SECCOMP | SYSCALL_WORK_SYSCALL_TRACEPOINT |
	     SYSCALL_WORK_SYSCALL_TRACE | SYSCALL_WORK_SYSCALL_EMU |
	     SYSCALL_WORK_SYSCALL_USER_DISPATCH))
		return true;
	if (test_syscall_work(SYSCALL_AUDIT) && audited())
		return true;
#else
#ifdef TIF_SECCOMP
	if (test_thread_flag(TIF_SECCOMP))
		return true;
#endif
#ifdef TIF_SYSCALL_TRACEPOINT
	if (test_thread_flag(TIF_SYSCALL_TRACEPOINT))
		return true;
#endif
#ifdef TIF_SYSCALL_EMU
	if (test_thread_flag(TIF_SYSCALL_EMU))
		return true;
#endif
	if (test_thread_flag(TIF_SYSCALL_TRACE))
		return true;
#ifdef TIF_SYSCALL_AUDIT
	if (test_thread_flag(TIF_SYSCALL_AUDIT) && audited())
		return true;
#endif
#endif
	return false;
}

static long esca_flush(struct esca_ctx *ctx, const struct esca_lkm_flush fl)
{
	struct esca_hold h = { .n = 0 };
	bool ran = false;
	u32 i;

	if (!ctx->map)
		return -EBADFD;
	if (current->mm != ctx->mm)
		return -EPERM;
	if (fl.flags || fl.reserved || fl.first > ctx->nents ||
	    fl.count > ctx->nents - fl.first)
		return -EINVAL;
	if (watched())
		return -EACCES;
	for (i = 0; i < fl.count; i++) {
		u32 k = array_index_nospec(fl.first + i, ctx->nents);
		struct esca_lkm_entry *slot = &ctx->tab[k];

		if (READ_ONCE(slot->state) != ESCA_LKM_BUSY)
			continue;
		/* a signal (SIGSTOP and the cgroup freezer too) is taken
		 * between entries, never before the first one a FLUSH runs
		 * (a system call does its work with a signal pending, and a
		 * flush that stopped at once would make no progress while a
		 * short interval timer keeps one pending: a livelock): the
		 * rest stay BUSY for the next flush; a tracer or filter
		 * that came meanwhile: the same, and that flush says EACCES */
		if ((ran && to_deliver()) || watched())
			break;
		ran = true;
		if (!run_entry(slot, &h))
			break;	/* a signal: deliver it, the caller goes on */
		cond_resched();
	}
	return i;
}

static long esca_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct esca_ctx *ctx = filp->private_data;
	union {
		struct esca_lkm_register reg;
		struct esca_lkm_flush fl;
	} a;
	long r;

	if (cmd != ESCA_IOC_REGISTER && cmd != ESCA_IOC_FLUSH)
		return -ENOTTY;
	/* the arguments before the lock: a fault on them (userfaultfd,
	 * FUSE) stalls this thread, not the context's other users */
	if (copy_from_user(&a, (void __user *)arg, cmd == ESCA_IOC_REGISTER ?
			   sizeof(a.reg) : sizeof(a.fl)))
		return -EFAULT;
	if (mutex_lock_interruptible(&ctx->lock))
		return -ERESTARTSYS;
	if (cmd == ESCA_IOC_REGISTER)
		r = esca_register(ctx, a.reg);
	else
		r = esca_flush(ctx, a.fl);
	mutex_unlock(&ctx->lock);
	return r;
}

static int esca_open(struct inode *inode, struct file *filp)
{
	struct esca_ctx *ctx = kzalloc(sizeof(*ctx), GFP_KERNEL_ACCOUNT);

	if (!ctx)
		return -ENOMEM;
	mutex_init(&ctx->lock);
	filp->private_data = ctx;
	return nonseekable_open(inode, filp);
}

static int esca_release(struct inode *inode, struct file *filp)
{
	struct esca_ctx *ctx = filp->private_data;

	esca_unregister(ctx);
	mutex_destroy(&ctx->lock);
	kfree(ctx);
	return 0;
}

static const struct file_operations esca_fops = {
	.owner = THIS_MODULE,
	.open = esca_open,
	.release = esca_release,
	.unlocked_ioctl = esca_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice esca_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "esca",
	.fops = &esca_fops,
	.mode = 0600,
};

module_misc_device(esca_misc);

MODULE_DESCRIPTION("esca: run a batch table of deferred system calls with one ioctl");
MODULE_LICENSE("Dual MIT/GPL");
