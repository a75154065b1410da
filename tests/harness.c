/* harness.c - runs a table of unit-test cases and prints one PASS/FAIL line per case. */
#include "harness.h"

int t_fails;

int t_run(const char *prog, const struct t_case *cases, size_t n, int argc, char **argv)
{
	const char *base = strrchr(prog, '/');
	int failed = 0;

	base = base ? base + 1 : prog;
	for (size_t i = 0; i < n; i++) {
		if (argc > 1 && strstr(cases[i].name, argv[1]) == NULL)
			continue;
		t_fails = 0;
		cases[i].fn();
		printf("%s: %s/%s\n", t_fails ? "FAIL" : "PASS", base, cases[i].name);
		fflush(stdout);
		if (t_fails)
			failed++;
	}
	return failed ? 1 : 0;
}
