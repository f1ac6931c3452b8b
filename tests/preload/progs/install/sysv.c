/* wait_audit.c's handler installers that glibc runs its sigaction from
 * inside: sigset, sysv_signal, ssignal (this file: _GNU_SOURCE). */
#define _GNU_SOURCE
#include <signal.h>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

void *install_sigset(int sig, void (*h)(int));
void *install_sysv(int sig, void (*h)(int));
void *install_ssignal(int sig, void (*h)(int));

void *install_sigset(int sig, void (*h)(int))
{
	return (void *)sigset(sig, h);
}

void *install_sysv(int sig, void (*h)(int))
{
	return (void *)sysv_signal(sig, h);
}

void *install_ssignal(int sig, void (*h)(int))
{
	return (void *)ssignal(sig, h);
}
