/* Issue 12 defect 2 (a): a pending deferred close(N), then close_range(N,
 * ~0U, 0) (or closefrom(N)), then open() returns N: the pending close must
 * not close the new file.  argv[1] = close_range | closefrom, argv[2] = dir. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char a[4096], b[4096], buf[64] = "";
	int fa, fb, r, e;

	if (argc < 3)
		return 2;
	snprintf(a, sizeof(a), "%s/a.txt", argv[2]);
	snprintf(b, sizeof(b), "%s/b.txt", argv[2]);
	fa = open(a, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fa < 0)
		return perror("open a"), 1;
	close(fa);				/* deferred under esca */
	if (!strcmp(argv[1], "close_range"))
		r = close_range((unsigned)fa, ~0U, 0);
	else
		closefrom(fa), r = 0;
	fb = open(b, O_RDWR | O_CREAT | O_TRUNC, 0644);
	fprintf(stderr, "fa=%d fb=%d close_range=%d\n", fa, fb, r);
	/* the file is ours: a write, an fstat, a read back */
	r = (int)write(fb, "data-b", 6);
	e = errno;
	printf("write=%d%s\n", r, r < 0 ? strerror(e) : "");
	r = (int)pread(fb, buf, sizeof(buf) - 1, 0);
	e = errno;
	printf("pread=%d %s\n", r, r < 0 ? strerror(e) : buf);
	r = fcntl(fb, F_GETFD);
	e = errno;
	printf("getfd=%s\n", r < 0 ? strerror(e) : "ok");
	r = close(fb);
	e = errno;
	printf("close=%d%s\n", r, r < 0 ? strerror(e) : "");
	fflush(stdout);
	return 0;
}
