/* SPDX-License-Identifier: MIT
 * fdmap.c - what the library knows of each fd: fdmap_init(), fd_detect()
 * (kind, O_NONBLOCK, size), the access mode (fd_note_access, fd_access_ok),
 * order keys (fd_share_key) and what a completion means (fd_on_complete). */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

HIDDEN struct fdinfo *fdtab;
HIDDEN int fdtab_n;

/* The fd map: as many entries as fds may exist, untouched until used. */
void fdmap_init(void)
{
	struct rlimit rl;
	size_t n;
	void *m;

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
	/* stdin, stdout and stderr (and their dups) are never deferred to
	 * (fd_never_deferred): no order key to find for them */
}

/* What a deferred op's completion means for its fd (DESIGN.md,
 * "Contract: errors"). */
void fd_on_complete(void *ctx, uint64_t user, int op, int fd, int64_t r)
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
	if ((fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY)
		fi->flags |= FI_NOREAD;
}

/* Is fd open for what need (FI_NOREAD: reading) says?  A sendfile from a
 * write-only file fails with EBADF, a result known in advance: it is never
 * deferred (DESIGN.md, "Contract: results").  Asked once per fd, and only
 * for regular files (fd_detect learns it for the others).  Writes are
 * deferred only to stream sockets, always open for writing (DESIGN.md,
 * "Deferral scope"). */
int fd_access_ok(int fd, struct fdinfo *fi, uint16_t need)
{
	if (unlikely(!(fi->flags & FI_ACC)))
		fd_note_access(fi, syscall(SYS_fcntl, fd, F_GETFL));
	return (fi->flags & (FI_ACC | need)) == FI_ACC;
}

/* newfd now shares old's open file: order their entries together */
int fd_share_key(int old, int newfd)
{
	struct fdinfo *o = fdi(old), *n = fdi(newfd);

	if (newfd >= 0 && o && n)
		n->order_key = o->order_key ? o->order_key : old + 1;
	return newfd;
}

/* F_SETFL or FIONBIO set fd's O_NONBLOCK to on. */
void fd_note_nonblock(int fd, long on)
{
	struct fdinfo *fi = fdi(fd);

	if (fi && fi->kind != FK_UNKNOWN && fi->kind != FK_BAD) {
		if (on)
			fi->flags |= FI_NONBLOCK;
		else
			fi->flags &= (uint16_t)~FI_NONBLOCK;
	}
}
