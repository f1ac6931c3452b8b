/* Issue 12 defect 7: the last words before a fatal signal.
 * argv[1] = abort | segv | control (the same write, then a normal exit:
 * its stats show the write was deferred). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static const char msg[] = "fatal: cannot go on\n";

	if (argc < 2)
		return 2;
	if (write(1, "working\n", 8) != 8)
		return 3;
	if (write(2, msg, sizeof(msg) - 1) != sizeof(msg) - 1)
		return 3;
	if (!strcmp(argv[1], "abort"))
		abort();
	if (!strcmp(argv[1], "segv"))
		*(volatile int *)(uintptr_t)(argc - 2) = 1;	/* NULL */
	return 0;
}
