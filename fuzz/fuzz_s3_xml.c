/* fuzz_s3_xml.c - libFuzzer target: every S3 XML response parser of s3/xml.c.
 *
 * The first byte picks the parser (list results, error, the multipart responses, delete
 * results, the two date parsers); the rest is the response body, passed with its length and
 * not NUL-terminated, as curl hands it over. Whatever a parser returns, what it filled must be
 * well formed: NUL-terminated fixed buffers, counts matching arrays, everything freeable.
 * Two more selectors fuzz the request builders (DeleteObjects, CompleteMultipartUpload): the
 * rest is split at NULs into keys (or ETags); a document built must parse back, with libxml2
 * itself, to exactly those strings, so a DeleteObjects can never name another key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "fuzz.h"
#include "s3_i.h"

#define MAX_ITEMS 64

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

struct texts {
	const char *name, *strip;	/* element name; the text around each value (ETag quotes) */
	char *const *want;
	size_t n, seen;
};

/* Every element named t->name under node, in document order, must hold t->want[t->seen++]. */
static void walk(xmlNodePtr node, struct texts *t)
{
	for (xmlNodePtr c = node->children; c; c = c->next) {
		char *x;
		size_t xl, sl = strlen(t->strip);

		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (strcmp((const char *)c->name, t->name) != 0) {
			walk(c, t);
			continue;
		}
		x = (char *)xmlNodeGetContent(c);
		xl = strlen(x);
		FUZZ_ASSERT(t->seen < t->n);
		FUZZ_ASSERT(xl >= 2 * sl && strncmp(x, t->strip, sl) == 0 &&
			    strcmp(x + xl - sl, t->strip) == 0);
		x[xl - sl] = '\0';
		FUZZ_ASSERT(strcmp(x + sl, t->want[t->seen]) == 0);
		t->seen++;
		xmlFree(x);
	}
}

/* The text of every element named `name` in doc, in document order, must be want[0..n). */
static void check_texts(const char *doc, const char *name, char *const *want, size_t n,
			const char *strip)
{
	xmlDocPtr d = xmlReadMemory(doc, (int)strlen(doc), NULL, NULL, XML_PARSE_NONET);
	struct texts t = { name, strip, want, n, 0 };

	FUZZ_ASSERT(d);
	walk(xmlDocGetRootElement(d), &t);
	FUZZ_ASSERT(t.seen == n);
	xmlFreeDoc(d);
}

/* Split data at NULs into at most MAX_ITEMS strings (pointers into the copy *buf). */
static size_t split(const char *data, size_t len, char **buf, char **items)
{
	size_t n = 0;

	*buf = fuzz_strndup(data, len);
	for (size_t i = 0, start = 0; i <= len && n < MAX_ITEMS; i++) {
		if (i == len || data[i] == '\0') {
			(*buf)[i] = '\0';
			items[n++] = *buf + start;
			start = i + 1;
		}
	}
	return n;
}

static void build_delete(const char *data, size_t len)
{
	char *buf, *keys[MAX_ITEMS], *doc;
	size_t n = split(data, len, &buf, keys);

	doc = s3_xml_build_delete((const char *const *)keys, n);
	if (doc) {
		/* the builder also writes "<Key>" for nothing else */
		check_texts(doc, "Key", keys, n, "");
		free(doc);
	}
	free(buf);
}

static void build_complete(const char *data, size_t len)
{
	static struct s3_part parts[MAX_ITEMS];
	char *buf, *etags[MAX_ITEMS], *doc;
	size_t n = split(data, len, &buf, etags);

	for (size_t i = 0; i < n; i++) {
		parts[i].number = (int)i + 1;
		snprintf(parts[i].etag, sizeof(parts[i].etag), "%s", etags[i]);
		etags[i] = parts[i].etag;	/* what the builder sees, cut to fit */
	}
	doc = s3_xml_build_complete(parts, n);
	if (doc) {
		check_texts(doc, "ETag", etags, n, "\"");
		free(doc);
	}
	free(buf);
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
	switch (data[0] % 12) {
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
		if (data[0] % 12 == 8)
			s3_parse_iso8601(s, &t);
		else
			s3_parse_http_date(s, &t);
		free(s);
		break;
	case 10: build_delete(xml, len); break;
	case 11: build_complete(xml, len); break;
	}
	check_error(&err);
	return 0;
}
