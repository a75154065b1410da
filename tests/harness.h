/* harness.h - the unit tests' minimal runner: table of cases, one PASS/FAIL line each.
 *
 * Each test binary defines `static const struct t_case cases[]` and calls T_MAIN(cases).
 * A case fails when any T_ check fails; checks keep going so one run shows every mismatch.
 * Output lines: "PASS: <binary>/<case>" or "FAIL: <binary>/<case>", with the failed checks
 * above as "  <file>:<line>: <what>". tests/run.sh counts these lines.
 */
#ifndef S3JOBFS_TEST_HARNESS_H
#define S3JOBFS_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <inttypes.h>

struct t_case {
	const char *name;
	void (*fn)(void);
};

extern int t_fails;	/* failures in the current case */

#define T_FAILF(...) do { \
	fprintf(stdout, "  %s:%d: ", __FILE__, __LINE__); \
	fprintf(stdout, __VA_ARGS__); fputc('\n', stdout); t_fails++; \
} while (0)

#define T_CHECK(cond) do { if (!(cond)) T_FAILF("check failed: %s", #cond); } while (0)

#define T_EQ_INT(a, b) do { \
	long long t_a_ = (long long)(a), t_b_ = (long long)(b); \
	if (t_a_ != t_b_) T_FAILF("%s == %lld, expected %s == %lld", #a, t_a_, #b, t_b_); \
} while (0)

#define T_EQ_STR(a, b) do { \
	const char *t_a_ = (a), *t_b_ = (b); \
	if (!t_a_ || !t_b_ || strcmp(t_a_, t_b_) != 0) \
		T_FAILF("%s:\n    got      \"%s\"\n    expected \"%s\"", #a, \
			t_a_ ? t_a_ : "(null)", t_b_ ? t_b_ : "(null)"); \
} while (0)

int t_run(const char *prog, const struct t_case *cases, size_t n, int argc, char **argv);

#define T_MAIN(cases) \
	int main(int argc, char **argv) \
	{ return t_run(argv[0], cases, sizeof(cases) / sizeof(cases[0]), argc, argv); }

#endif
