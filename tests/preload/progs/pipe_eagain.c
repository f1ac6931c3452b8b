/* pipe_eagain.c: issue 13, defect 3.  A single-threaded program writes to a
 * non-blocking pipe that nobody reads until the kernel says EAGAIN, then
 * reads it all back.  Prints the bytes the pipe took and what the write
 * after them said, and whether every byte came back in order: plainly
 * "took 64000 then EAGAIN back 64000 ok" (16 pages of 4 KiB: 64 writes). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
	int p[2], err = 0;
	long took = 0, back = 0, bad = 0;
	char buf[1000];

	if (pipe2(p, O_NONBLOCK) < 0) {
		perror("pipe2");
		return 1;
	}
	for (int i = 0; i < 100000; i++) {
		ssize_t w;

		for (size_t k = 0; k < sizeof(buf); k++)
			buf[k] = (char)((took + (long)k) % 251);
		w = write(p[1], buf, sizeof(buf));
		if (w < 0) {
			err = errno;
			break;
		}
		took += w;
	}
	for (;;) {
		ssize_t r = read(p[0], buf, sizeof(buf));

		if (r <= 0)
			break;
		for (ssize_t k = 0; k < r; k++)
			bad += buf[k] != (char)((back + k) % 251);
		back += r;
	}
	printf("took %ld then %s back %ld %s\n", took,
	       err ? strerrorname_np(err) : "none", back, bad ? "BAD" : "ok");
	return 0;
}
