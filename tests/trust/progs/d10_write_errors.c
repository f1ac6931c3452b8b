/* Issue 12 defect 10: write errors must reach the program.  RLIMIT_FSIZE
 * (10 bytes) stands in for ENOSPC/EIO; SIGXFSZ is ignored, so the kernel
 * answers a write past the limit with a short count or EFBIG.
 *   short: write(16) -> 10 (short), then write(4) -> EFBIG
 *   fsync: write(10) ok, write(6) -> EFBIG (or stored: fsync/close report it)
 *   close: write(10) ok, write(6) -> EFBIG (or stored: close reports it)
 * Prints each call's result. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void show(const char *what, long r, int e)
{
	if (r < 0)
		printf("%s=%s\n", what, strerror(e));
	else
		printf("%s=%ld\n", what, r);
}

int main(int argc, char **argv)
{
	struct rlimit rl, old;
	long r;
	int fd;

	if (argc < 3)
		return 2;
	signal(SIGXFSZ, SIG_IGN);
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || getrlimit(RLIMIT_FSIZE, &old))
		return 1;
	rl = old;
	rl.rlim_cur = 10;	/* the soft limit only: put back before exit */
	if (setrlimit(RLIMIT_FSIZE, &rl))
		return 1;
	if (!strcmp(argv[1], "short")) {
		r = write(fd, "0123456789abcdef", 16);
		show("write16", r, errno);
		r = write(fd, "ghij", 4);
		show("write4", r, errno);
	} else {
		r = write(fd, "0123456789", 10);
		show("write10", r, errno);
		r = write(fd, "abcdef", 6);
		show("write6", r, errno);
		if (!strcmp(argv[1], "fsync")) {
			r = fsync(fd);
			show("fsync", r, errno);
		}
	}
	r = close(fd);
	show("close", r, errno);
	fflush(stdout);
	setrlimit(RLIMIT_FSIZE, &old);	/* the stats file is written at exit */
	return 0;
}
