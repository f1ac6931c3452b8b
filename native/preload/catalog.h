/* SPDX-License-Identifier: MIT
 * catalog.h - the lists libesca.so is made of, each written once:
 *   ESCA_SYSCALLS      the calls it can defer (enum esca_call, their names)
 *   ESCA_LEVERS        the levers beyond ESCA (enum lever, ESCA_LEVERS)
 *   ESCA_PASS_REASONS  why a deferrable call went to the kernel (stats)
 * The preload, pyesca._core (syscalls(), levers(), pass_reasons()) and
 * through it `esca run`, `esca stats` and the tests read these; nothing
 * else spells them out.  No includes: plain X-macro lists. */
#ifndef ESCA_CATALOG_H
#define ESCA_CATALOG_H

/* X(ENUM, name, seed, where): one row per deferrable call, in the order
 * the stats show them.  seed: 1 for the seed's four wrappers (ESCA's own
 * set, `--syscalls seed`).  where: the fds it is deferred on: stream
 * sockets only, never fds 0-2 nor one a FILE is open on (DESIGN.md,
 * "Deferral scope"). */
#define ESCA_SYSCALLS(X)						\
	X(WRITE, write, 0, "a stream socket")				\
	X(WRITEV, writev, 1, "a stream socket")			\
	X(SEND, send, 1, "a stream socket")				\
	X(SENDTO, sendto, 0, "a stream socket, without an address")	\
	X(SENDMSG, sendmsg, 0,						\
	  "a stream socket, without an address or ancillary data")	\
	X(SENDFILE, sendfile, 1,					\
	  "a stream socket, from a regular file, explicit offset")	\
	X(SHUTDOWN, shutdown, 1, "a stream socket")			\
	X(CLOSE, close, 0, "a connected stream socket")		\
	X(SETSOCKOPT, setsockopt, 0, "TCP_CORK, TCP_NODELAY on TCP")

/* X(ENUM, name, on, help): the levers beyond ESCA, each switchable
 * (ESCA_LEVERS, `esca run --levers`, `esca bench --modes ablation`).  on:
 * 1 for a lever of the default set ("all"); 0 for one that is on only when
 * named (ESCA_LEVERS=+name, or all,name). */
#define ESCA_LEVERS(X)							\
	X(READS, reads, 1,						\
	  "answer the read after a drained socket EAGAIN without the kernel") \
	X(COMPOSE, compose, 1,						\
	  "TCP_CORK on, sends, TCP_CORK off become sends with MSG_MORE")	\
	X(SENDFILE, sendfile, 1,					\
	  "a sendfile runs as itself inside the flush (no copy of the body)") \
	X(FOLD, fold, 1,						\
	  "the epoll wait goes into the flush's kernel entry "		\
	  "(IORING_OP_EPOLL_WAIT)")					\
	X(ADAPT, adapt, 1,						\
	  "a thread where deferral costs more CPU than it saves steps aside " \
	  "(its calls go to the kernel) and re-checks now and then")	\
	X(PLAIN, plain, 1,						\
	  "lever adapt may also keep deferring but flush as plain system " \
	  "calls (the ring only for what a full socket leaves), where the " \
	  "ring costs more than the kernel entries it saves")		\
	X(PREFETCH, prefetch, 0,					\
	  "off unless named: after an epoll wait that reported several " \
	  "readable TCP sockets, the first read peeks them all in one " \
	  "kernel entry and the reads are answered from there")

/* X(ENUM, name, help): why a deferrable call was passed to the kernel. */
#define ESCA_PASS_REASONS(X)						\
	X(DISABLED, disabled, "ESCA_DISABLE, or no table on this thread") \
	X(NOT_SELECTED, not_selected,					\
	  "not in ESCA_SYSCALLS, or outside an explicit segment")	\
	X(FD, fd, "not a fd kind the call is deferred on, "		\
	  "or fd 0-2, or a FILE's (fdopen)")				\
	X(ARGS, args, "flags, address, control data or options")	\
	X(SIZE, size, "bigger than the byte budget")			\
	X(FULL, full, "the table stayed full after a flush")		\
	X(REENTRANT, reentrant,						\
	  "called from inside the library or one of its handlers")	\
	X(ASIDE, aside,							\
	  "the thread had stepped aside: deferral did not pay (lever adapt)") \
	X(MASKED, masked,						\
	  "the thread blocks the library's timer signal: no shot would "	\
	  "move its entries")

#endif
