/* SPDX-License-Identifier: MIT
 * helpers.h - what the C test programs under native/tests share: CHECK,
 * CHECK_EQ and SKIP inside a test function (void, returns on the first
 * failure), test_exit_status() for main.  Exit status: 0 pass, 1 fail,
 * 77 skip (liburing's and automake's convention; the Makefile's run_ctest).
 * A program's counters are defined once, in the file that has main (with
 * TEST_COUNTERS_HERE defined before including this header). */
#ifndef ESCA_TEST_HELPERS_H
#define ESCA_TEST_HELPERS_H

#include <stdio.h>

#ifdef TEST_COUNTERS_HERE
int test_failures;		/* CHECKs that failed */
int test_skipped;		/* SKIPs */
const char *test_context = "";	/* printed with each failure */
int test_plain;			/* tables made plain: esca_table_set_plain */
#else
extern int test_failures, test_skipped;
extern const char *test_context;
extern int test_plain;
#endif

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "FAIL [%s] %s:%d: %s\n",             \
				test_context, __FILE__, __LINE__, #cond);    \
			test_failures++;                                     \
			return;                                              \
		}                                                            \
	} while (0)

#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		long long _a = (long long)(a), _b = (long long)(b);          \
		if (_a != _b) {                                              \
			fprintf(stderr, "FAIL [%s] %s:%d: %s == %lld, want " \
				"%s == %lld\n", test_context, __FILE__,      \
				__LINE__, #a, _a, #b, _b);                   \
			test_failures++;                                     \
			return;                                              \
		}                                                            \
	} while (0)

/* Leave the test function: what it needs is not here (printf-style why). */
#define SKIP(...)                                                            \
	do {                                                                 \
		printf("SKIP [%s] ", test_context);                          \
		printf(__VA_ARGS__);                                         \
		printf("\n");                                                \
		test_skipped++;                                              \
		return;                                                      \
	} while (0)

/* main's return value once `ran` tests ran: 1 if any CHECK failed, else 0,
 * or 77 when nothing ran at all. */
static inline int test_exit_status(int ran)
{
	printf("%d passed, %d failed, %d skipped\n", ran - test_failures,
	       test_failures, test_skipped);
	if (test_failures)
		return 1;
	return ran ? 0 : 77;
}

#endif
