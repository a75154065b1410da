/* fuzz.h - helpers shared by the libFuzzer targets in fuzz/ (header only, static inline). */
#ifndef S3JOBFS_FUZZ_H
#define S3JOBFS_FUZZ_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A property the target checks on top of the sanitizers: abort() so libFuzzer saves the input. */
#define FUZZ_ASSERT(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
		abort(); \
	} \
} while (0)

/* The input as a NUL-terminated heap string (embedded NULs end it early). Never NULL. */
static inline char *fuzz_strndup(const void *data, size_t len)
{
	char *s = malloc(len + 1);

	if (!s)
		abort();
	memcpy(s, data, len);
	s[len] = '\0';
	return s;
}

#endif
