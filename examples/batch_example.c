/* SPDX-License-Identifier: MIT
 * batch_example.c - explicit batch segments with libesca.so.
 *
 * Writes a deterministic sequence of messages to a socketpair, a pipe and
 * a regular file inside batch_start()/batch_flush() segments, reusing one
 * buffer for every call (the library copies what it defers), then prints
 * what each call returned and every byte the other ends received.  Only
 * the socket's calls are deferred: libesca.so passes the pipe's and the
 * file's through (docs/DESIGN.md, "Deferral scope").  The output is the
 * same with and without the library:
 *
 *     cc -O2 -Wall -I native/include -o batch_example examples/batch_example.c
 *     ./batch_example DIR                               # plain
 *     esca run --executor uring -- ./batch_example DIR  # batched
 *
 * batch_start and batch_flush are weak: without the library they are NULL
 * and the program makes the same calls one by one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "esca_preload.h"

#pragma weak batch_start
#pragma weak batch_flush

#define SEGMENTS 6
#define ALPHABET "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF"

static void die(const char *what)
{
	fprintf(stderr, "batch_example: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Read exactly n bytes (the peer has them, or will once the flush ran). */
static void read_exact(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (r == 0) {
			fprintf(stderr, "batch_example: EOF after %zu of %zu bytes\n", got, n);
			exit(1);
		}
		got += (size_t)r;
	}
}

static void print_bytes(const char *label, const char *buf, size_t n)
{
	printf("%s (%zu bytes):\n", label, n);
	fwrite(buf, 1, n, stdout);
}

int main(int argc, char **argv)
{
	char path[PATH_MAX], buf[256], head[64], got[16384];
	int sv[2], pp[2], file;
	size_t sock_total = 0, pipe_total = 0, file_total = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: batch_example DIR\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/batch_example.out", argv[1]);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	if (pipe(pp) < 0)
		die("pipe");
	file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (file < 0)
		die(path);

	for (int seg = 0; seg < SEGMENTS; seg++) {
		size_t sock_n = 0, pipe_n = 0, file_n = 0;

		if (batch_start)
			batch_start();
		for (int i = 0; i <= seg * 2; i++) {
			/* one buffer, overwritten by every message */
			int len = snprintf(buf, sizeof(buf), "seg %d msg %d: %.*s\n", seg, i,
					   (seg * 7 + i * 13) % 40, ALPHABET);
			int hlen = snprintf(head, sizeof(head), "[%03d]", len);
			struct iovec iov[2] = { { head, (size_t)hlen }, { buf, (size_t)len } };
			ssize_t r;

			r = i % 2 ? send(sv[0], buf, (size_t)len, 0) : write(sv[0], buf, (size_t)len);
			printf("seg %d msg %d: socket %s %zd\n", seg, i, i % 2 ? "send" : "write", r);
			sock_n += (size_t)len;
			r = writev(pp[1], iov, 2);
			printf("seg %d msg %d: pipe writev %zd\n", seg, i, r);
			pipe_n += (size_t)(hlen + len);
			r = write(file, buf, (size_t)len);
			printf("seg %d msg %d: file write %zd\n", seg, i, r);
			file_n += (size_t)len;
			memset(buf, 'X', sizeof(buf));	/* reused at once */
			memset(head, 'Y', sizeof(head));
		}
		if (seg == SEGMENTS - 1) {
			printf("seg %d: shutdown %d\n", seg, shutdown(sv[0], SHUT_WR));
			printf("seg %d: close pipe %d\n", seg, close(pp[1]));
		}
		if (batch_flush)
			batch_flush();

		read_exact(sv[1], got, sock_n);
		print_bytes("socket received", got, sock_n);
		read_exact(pp[0], got, pipe_n);
		print_bytes("pipe received", got, pipe_n);
		sock_total += sock_n;
		pipe_total += pipe_n;
		file_total += file_n;
	}
	/* the shutdown and the close arrived: EOF on both */
	printf("socket EOF: %zd\n", read(sv[1], got, sizeof(got)));
	printf("pipe EOF: %zd\n", read(pp[0], got, sizeof(got)));

	if (file_total > sizeof(got)) {
		fprintf(stderr, "batch_example: file too big\n");
		return 1;
	}
	if (pread(file, got, sizeof(got), 0) != (ssize_t)file_total)
		die("pread");
	print_bytes("file contents", got, file_total);
	printf("totals: socket %zu, pipe %zu, file %zu\n", sock_total, pipe_total, file_total);
	close(file);
	close(sv[0]);
	close(sv[1]);
	close(pp[0]);
	return 0;
}
