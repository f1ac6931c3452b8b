/* signal() as a program built for X/Open alone calls it: glibc's header
 * names __sysv_signal (no _DEFAULT_SOURCE here). */
#define _XOPEN_SOURCE 700
#include <signal.h>

void *install_xopen_signal(int sig, void (*h)(int));

void *install_xopen_signal(int sig, void (*h)(int))
{
	return (void *)signal(sig, h);
}
