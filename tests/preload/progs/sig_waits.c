/* sig_waits.c CALL: a call the kernel never restarts after a signal
 * handler (signal(7)) - sigsuspend sigwaitinfo sigtimedwait sigwait msgrcv
 * semop - made right after a write the library defers, on a unix stream
 * socket to a child that answers only once it has the byte: after 100 ms
 * it sends SIGUSR1 (a handler without SA_RESTART is installed), or a
 * message, or a semaphore's unit.  nginx's master does this: it writes its
 * workers' channel, then waits in sigsuspend.  Prints what the call
 * returned and how many times it returned: the same plainly and under the
 * library (whose byte must leave before the call blocks, and whose timer
 * signal must not end it).  raw_sigsuspend: the write, a poll that flushes
 * it, then rt_sigsuspend as a raw system call, which no interposer sees
 * (README, Limits: the thread's timer, armed by the write, may still end
 * it). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_usr1(int sig)
{
	(void)sig;
	got++;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

struct msg {
	long type;
	char text[8];
};

int main(int argc, char **argv)
{
	const char *call;
	struct sigaction sa;
	sigset_t usr1, empty, old;
	struct timespec five = { 5, 0 }, hundred = { 0, 100000000L };
	struct sembuf up = { 0, 1, 0 }, down = { 0, -1, 0 };
	struct msg m = { 1, "hello" }, in;
	siginfo_t si;
	int sv[2], q, sem, sig = 0, returns = 0;
	long r;
	pid_t kid;
	char c;

	if (argc != 2)
		return 2;
	call = argv[1];
	setvbuf(stdout, NULL, _IONBF, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;	/* no SA_RESTART */
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		die("sigaction");
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigemptyset(&empty);
	if (sigprocmask(SIG_BLOCK, &usr1, &old) < 0)
		die("sigprocmask");
	q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	sem = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
	if (q < 0 || sem < 0)
		die("ipc");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	kid = fork();
	if (kid < 0)
		die("fork");
	if (kid == 0) {
		close(sv[0]);
		if (read(sv[1], &c, 1) != 1)
			_exit(3);
		nanosleep(&hundred, NULL);
		if (!strcmp(call, "msgrcv"))
			r = msgsnd(q, &m, sizeof(m.text), 0);
		else if (!strcmp(call, "semop"))
			r = semop(sem, &up, 1);
		else
			r = kill(getppid(), SIGUSR1);
		_exit(r < 0 ? 4 : 0);
	}
	close(sv[1]);
	if (write(sv[0], "q", 1) != 1)	/* deferred under the library */
		die("write");
	if (!strcmp(call, "sigsuspend")) {
		do {
			r = sigsuspend(&empty);
			returns++;
		} while (!got);
		printf("sigsuspend r=%ld errno=%s returns=%d handler=%d\n", r,
		       strerrorname_np(errno), returns, (int)got);
	} else if (!strcmp(call, "raw_sigsuspend")) {
		if (poll(NULL, 0, 0) != 0)
			die("poll");
		do {
			r = syscall(SYS_rt_sigsuspend, &empty, (size_t)8);
			returns++;
		} while (!got);
		printf("raw_sigsuspend r=%ld errno=%s returns=%d handler=%d\n",
		       r, strerrorname_np(errno), returns, (int)got);
	} else if (!strcmp(call, "sigwaitinfo") ||
		   !strcmp(call, "sigtimedwait")) {
		r = !strcmp(call, "sigwaitinfo") ?
		    sigwaitinfo(&usr1, &si) : sigtimedwait(&usr1, &si, &five);
		printf("%s r=%ld errno=%s code=%d\n", call, r,
		       r < 0 ? strerrorname_np(errno) : "-",
		       r > 0 ? si.si_code : 0);
	} else if (!strcmp(call, "sigwait")) {
		r = sigwait(&usr1, &sig);
		printf("sigwait r=%ld sig=%d\n", r, sig);
	} else if (!strcmp(call, "msgrcv")) {
		r = msgrcv(q, &in, sizeof(in.text), 0, 0);
		printf("msgrcv r=%ld errno=%s text=%s\n", r,
		       r < 0 ? strerrorname_np(errno) : "-",
		       r > 0 ? in.text : "");
	} else if (!strcmp(call, "semop")) {
		r = semop(sem, &down, 1);
		printf("semop r=%ld errno=%s\n", r,
		       r < 0 ? strerrorname_np(errno) : "-");
	} else {
		return 2;
	}
	if (waitpid(kid, &sig, 0) < 0 || !WIFEXITED(sig) ||
	    WEXITSTATUS(sig) != 0)
		die("child");
	if (msgctl(q, IPC_RMID, NULL) < 0 || semctl(sem, 0, IPC_RMID) < 0)
		die("ipc rm");
	return 0;
}
