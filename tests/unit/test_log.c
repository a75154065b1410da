/* test_log.c - logging: one line per record, whatever the values hold; log_quote escapes. */
#include <stdio.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"

/* Run log_msg with stderr sent to a temp file; the text written into out. */
static void capture(char *out, size_t size, const char *fmt, const char *value)
{
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	T_CHECK(f && saved >= 0);
	fflush(stderr);
	dup2(fileno(f), STDERR_FILENO);
	log_msg(LOG_ERR, "test record", fmt, value);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(out, 1, size - 1, f);
	out[n] = '\0';
	fclose(f);
}

static void test_raw_newline_escaped(void)
{
	char out[1024];
	int lines = 0;

	log_init("test", LOG_DEBUG, false);
	capture(out, sizeof(out), "path=%s", "job/new\nline\rx\x7f");
	for (const char *p = out; *p; p++)
		lines += *p == '\n';
	T_EQ_INT(lines, 1);
	T_CHECK(strstr(out, "path=job/new\\x0aline\\x0dx\\x7f\n") != NULL);
	T_CHECK(strncmp(out, "ts=", 3) == 0);
}

static void test_quoted_value_unchanged(void)
{
	char out[1024], q[64];

	log_init("test", LOG_DEBUG, false);
	capture(out, sizeof(out), "key=%s", log_quote(q, sizeof(q), "a b\n\"c\""));
	T_EQ_STR(q, "\"a b\\x0a\\\"c\\\"\"");
	T_CHECK(strstr(out, "key=\"a b\\x0a\\\"c\\\"\"\n") != NULL);
}

static const struct t_case cases[] = {
	{ "raw_newline_escaped", test_raw_newline_escaped },
	{ "quoted_value_unchanged", test_quoted_value_unchanged },
};

T_MAIN(cases)
