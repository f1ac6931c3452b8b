/* open_ctor.c - a shared library whose constructor opens, writes and
 * closes a file: preloaded after libesca.so (LD_PRELOAD="libesca.so
 * libopen_ctor.so"), its constructor runs before libesca.so's, so the
 * library's open sees a call before its own start (test_fd_lifetime.py). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void early(void)
{
	const char *path = getenv("OPEN_CTOR_FILE");
	int fd;

	if (!path)
		return;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		_exit(3);
	if (write(fd, "early\n", 6) != 6 || close(fd) < 0)
		_exit(4);
}
