/* fuzz_env.c - libFuzzer target: the .env parser (cfg_parse_env_text) and sizes (cfg_parse_size).
 *
 * The input is a .env file's text (with its length, not NUL-terminated). Every key handed to
 * the callback must look like a variable name and every value must be a string no longer than
 * the input; a failure must name a line that exists. The input as a string also goes through
 * cfg_parse_size, and, written as a double-quoted value (backslash and quote escaped), must
 * parse back to itself: whatever a value holds (#, quotes, newlines), quoting carries it.
 */
#include <errno.h>
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "fuzz.h"

struct seen {
	size_t len;
	int n;
};

static int on_kv(void *ctx, const char *key, const char *value)
{
	struct seen *s = ctx;

	FUZZ_ASSERT(*key && !isdigit((unsigned char)*key));
	for (const char *p = key; *p; p++)
		FUZZ_ASSERT(isalnum((unsigned char)*p) || *p == '_');
	FUZZ_ASSERT(strlen(key) < s->len && strlen(value) < s->len);
	s->n++;
	return 0;
}

struct one {
	const char *want;
	int calls;
};

static int expect_value(void *ctx, const char *key, const char *value)
{
	struct one *o = ctx;

	FUZZ_ASSERT(strcmp(key, "KEY") == 0);
	FUZZ_ASSERT(strcmp(value, o->want) == 0);
	o->calls++;
	return 0;
}

/* KEY="<s with backslash and quote escaped>" parses back to s. */
static void round_trip(const char *s)
{
	size_t n = strlen(s), o;
	char *line = malloc(2 * n + 8);
	struct one one = { s, 0 };
	int bad = 0;

	FUZZ_ASSERT(line);
	memcpy(line, "KEY=\"", 5);
	o = 5;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\' || s[i] == '"')
			line[o++] = '\\';
		line[o++] = s[i];
	}
	line[o++] = '"';
	FUZZ_ASSERT(cfg_parse_env_text(line, o, expect_value, &one, &bad) == 0);
	FUZZ_ASSERT(one.calls == 1);
	free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen s = { .len = size, .n = 0 };
	int bad = 0, lines = 1, r;
	uint64_t bytes;
	char *str;

	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	r = cfg_parse_env_text((const char *)data, size, on_kv, &s, &bad);
	FUZZ_ASSERT(r == 0 || r == -EINVAL);
	if (r)
		FUZZ_ASSERT(bad >= 1 && bad <= lines);
	FUZZ_ASSERT(s.n <= lines);

	str = fuzz_strndup(data, size);
	if (cfg_parse_size(str, &bytes) == 0)
		FUZZ_ASSERT(isdigit((unsigned char)str[strspn(str, " \t\n\v\f\r")]));
	round_trip(str);
	free(str);
	return 0;
}
