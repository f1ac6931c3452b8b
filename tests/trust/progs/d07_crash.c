/* Issue 12 defect 7: the last words before a fatal signal.
 * argv[1] = abort | segv | control (the same write, then a normal exit:
 * its stats show the writes were deferred).  Both lines go to the peer, a
 * stream socket (fds 0-2 are never deferred: trust_out.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trust_out.h"

int main(int argc, char **argv)
{
	static const char msg[] = "fatal: cannot go on\n";
	int out = trust_out();

	if (argc < 2)
		return 2;
	if (write(out, "working\n", 8) != 8)
		return 3;
	if (write(out, msg, sizeof(msg) - 1) != sizeof(msg) - 1)
		return 3;
	if (!strcmp(argv[1], "abort"))
		abort();
	if (!strcmp(argv[1], "segv"))
		*(volatile int *)(uintptr_t)(argc - 2) = 1;	/* NULL */
	return 0;
}
