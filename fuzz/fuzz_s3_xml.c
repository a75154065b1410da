/* fuzz_s3_xml.c - libFuzzer target: every S3 XML response parser of s3/xml.c.
 *
 * The first byte picks the parser (list results, error, the multipart responses, delete
 * results, the two date parsers); the rest is the response body, passed with its length and
 * not NUL-terminated, as curl hands it over. Whatever a parser returns, what it filled must be
 * well formed: NUL-terminated fixed buffers, counts matching arrays, everything freeable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "s3_i.h"

static void check_error(const struct s3_error *e)
{
	FUZZ_ASSERT(memchr(e->code, '\0', sizeof(e->code)));
	FUZZ_ASSERT(memchr(e->message, '\0', sizeof(e->message)));
	FUZZ_ASSERT(memchr(e->region, '\0', sizeof(e->region)));
}

static void parse_list(const char *xml, size_t len)
{
	struct s3_list_page page;

	if (s3_xml_parse_list(xml, len, &page) == 0) {
		for (size_t i = 0; i < page.n_objects; i++)
			FUZZ_ASSERT(page.objects[i].key);
		for (size_t i = 0; i < page.n_prefixes; i++)
			FUZZ_ASSERT(strlen(page.prefixes[i]) < len + 1);
	}
	s3_list_page_release(&page);
}

static void parse_parts(const char *xml, size_t len)
{
	struct s3_part *parts = NULL;
	size_t n = 0;
	bool truncated = false;
	int next = 0;

	s3_xml_parse_list_parts(xml, len, &parts, &n, &truncated, &next);
	for (size_t i = 0; i < n; i++)
		FUZZ_ASSERT(memchr(parts[i].etag, '\0', sizeof(parts[i].etag)));
	free(parts);
}

static void parse_uploads(const char *xml, size_t len)
{
	struct s3_upload *ups = NULL;
	size_t n = 0;
	bool truncated = false;
	char *next_key = NULL, *next_id = NULL;

	s3_xml_parse_list_uploads(xml, len, &ups, &n, &truncated, &next_key, &next_id);
	s3_uploads_free(ups, n);
	free(next_key);
	free(next_id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct s3_error err;
	char etag[72], *s = NULL;
	const char *xml;
	size_t len;
	time_t t;

	if (size < 1)
		return 0;
	xml = (const char *)data + 1;
	len = size - 1;
	memset(&err, 0, sizeof(err));
	etag[0] = '\0';
	switch (data[0] % 10) {
	case 0: parse_list(xml, len); break;
	case 1: s3_xml_parse_error(xml, len, &err); break;
	case 2:
		s3_xml_parse_initiate(xml, len, &s);
		free(s);
		break;
	case 3:
		s3_xml_parse_complete(xml, len, etag, &err);
		FUZZ_ASSERT(memchr(etag, '\0', sizeof(etag)));
		break;
	case 4:
		s3_xml_parse_copy(xml, len, etag, &err);
		FUZZ_ASSERT(memchr(etag, '\0', sizeof(etag)));
		break;
	case 5: parse_parts(xml, len); break;
	case 6: parse_uploads(xml, len); break;
	case 7: {
		size_t n_errors = 0;

		s3_xml_parse_delete(xml, len, &n_errors, &err);
		break;
	}
	case 8:
	case 9:
		s = fuzz_strndup(xml, len);
		if (data[0] % 10 == 8)
			s3_parse_iso8601(s, &t);
		else
			s3_parse_http_date(s, &t);
		free(s);
		break;
	}
	check_error(&err);
	return 0;
}
