/* The peer socket of tests/trust: a connected stream socket the test reads,
 * at the number in $TRUST_OUT (trust.py, run_on_sockets).  It is not fd 0-2
 * and no FILE is open on it, so the library defers on it (DESIGN.md,
 * "Deferral scope"); without $TRUST_OUT, stdout. */
#ifndef TRUST_OUT_H
#define TRUST_OUT_H
#include <stdlib.h>

static int trust_out(void)
{
	const char *s = getenv("TRUST_OUT");

	return s && *s ? atoi(s) : 1;
}
#endif
