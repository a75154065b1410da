/* fuzz_job_folder.c - libFuzzer target: the job folder name parser (meta_parse_job_folder).
 *
 * A name it accepts must be exactly "YYYYMMDD_HHMMSS_<uuid>" (31 + 36 bytes of the allowed
 * characters) and the uuid it returns must be the name's, lowercased, 36 characters. A name it
 * refuses leaves the uuid empty.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *name = fuzz_strndup(data, size), uuid[37];
	size_t n = strlen(name);

	memset(uuid, 'x', sizeof(uuid));
	if (!meta_parse_job_folder(name, uuid)) {
		FUZZ_ASSERT(uuid[0] == '\0');
		free(name);
		return 0;
	}
	FUZZ_ASSERT(n == 52 && name[8] == '_' && name[15] == '_');
	for (size_t i = 0; i < 15; i++)
		FUZZ_ASSERT(i == 8 || isdigit((unsigned char)name[i]));
	/* month 01-12, day 01-31, hour 00-23, minute and second 00-59 */
	FUZZ_ASSERT(memcmp(name + 4, "01", 2) >= 0 && memcmp(name + 4, "12", 2) <= 0);
	FUZZ_ASSERT(memcmp(name + 6, "01", 2) >= 0 && memcmp(name + 6, "31", 2) <= 0);
	FUZZ_ASSERT(memcmp(name + 9, "23", 2) <= 0 && name[11] <= '5' && name[13] <= '5');
	FUZZ_ASSERT(strlen(uuid) == 36);
	for (size_t i = 0; i < 36; i++) {
		FUZZ_ASSERT(uuid[i] == tolower((unsigned char)name[16 + i]));
		if (i == 8 || i == 13 || i == 18 || i == 23)
			FUZZ_ASSERT(uuid[i] == '-');
		else
			FUZZ_ASSERT(isxdigit((unsigned char)uuid[i]) && !isupper((unsigned char)uuid[i]));
	}
	FUZZ_ASSERT(meta_parse_job_folder(name, NULL));
	free(name);
	return 0;
}
