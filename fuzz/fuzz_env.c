/* fuzz_env.c - libFuzzer target: the .env parser (cfg_parse_env_text) and sizes (cfg_parse_size).
 *
 * The input is a .env file's text (with its length, not NUL-terminated). Every key handed to
 * the callback must look like a variable name and every value must be a string no longer than
 * the input; a failure must name a line that exists. The input as a string also goes through
 * cfg_parse_size, whose result must not overflow.
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
	free(str);
	return 0;
}
