/* SPDX-License-Identifier: MIT
 * esca_preload.h - explicit batch segments for programs run with libesca.so
 * (`esca run -- prog`, or LD_PRELOAD=.../pyesca/libesca.so).
 *
 * Under libesca.so an event-driven program is batched without any change:
 * deferrable calls (write, writev, send, sendto, sendmsg, sendfile, shutdown,
 * close, setsockopt) are queued and the event-loop wait (epoll_wait, poll,
 * select, ...) flushes them (docs/DESIGN.md, "Flush triggers").  These
 * functions, with the seed's names, mark segments by hand.  Declare them
 * weak and the program also runs without the library:
 *
 *     #pragma weak batch_start
 *     #pragma weak batch_flush
 *     if (batch_start) batch_start();
 *     ... writes ...
 *     if (batch_flush) batch_flush();
 */
#ifndef ESCA_PRELOAD_H
#define ESCA_PRELOAD_H

#ifdef __cplusplus
extern "C" {
#endif

/* Set the library up now (it also does so lazily).  0, or -errno. */
int esca_init(void);
/* Open a segment on this thread: deferrable calls are queued from here.
 * 0, or -errno (-ENOSYS when ESCA_DISABLE=1). */
int batch_start(void);
/* Run everything this thread queued, in one kernel entry where the
 * executor allows, and close the segment.  Returns the number of calls
 * that completed, or -errno. */
int batch_flush(void);

#ifdef __cplusplus
}
#endif
#endif
