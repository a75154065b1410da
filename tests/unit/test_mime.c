/* test_mime.c - s3_mime_type(): every extension of the table, and the ways a key has none.
 *
 * Asking for every table entry also proves the table is sorted, since bsearch() would miss an
 * entry out of order.
 */
#include "harness.h"
#include "s3.h"

#define OCTET	"application/octet-stream"

static const struct {
	const char *key, *type;
} known[] = {
	{ "a.avif", "image/avif" },
	{ "a.bmp", "image/bmp" },
	{ "a.css", "text/css" },
	{ "a.csv", "text/csv" },
	{ "a.gif", "image/gif" },
	{ "a.gz", "application/gzip" },
	{ "a.htm", "text/html" },
	{ "a.html", "text/html" },
	{ "a.ico", "image/vnd.microsoft.icon" },
	{ "a.jpeg", "image/jpeg" },
	{ "a.jpg", "image/jpeg" },
	{ "a.js", "text/javascript" },
	{ "a.json", "application/json" },
	{ "a.jsonl", "application/x-ndjson" },
	{ "a.log", "text/plain" },
	{ "a.md", "text/markdown" },
	{ "a.mjs", "text/javascript" },
	{ "a.mp3", "audio/mpeg" },
	{ "a.mp4", "video/mp4" },
	{ "a.ndjson", "application/x-ndjson" },
	{ "a.parquet", "application/vnd.apache.parquet" },
	{ "a.pdf", "application/pdf" },
	{ "a.png", "image/png" },
	{ "a.svg", "image/svg+xml" },
	{ "a.tar", "application/x-tar" },
	{ "a.tif", "image/tiff" },
	{ "a.tiff", "image/tiff" },
	{ "a.tsv", "text/tab-separated-values" },
	{ "a.txt", "text/plain" },
	{ "a.wav", "audio/wav" },
	{ "a.webm", "video/webm" },
	{ "a.webp", "image/webp" },
	{ "a.woff", "font/woff" },
	{ "a.woff2", "font/woff2" },
	{ "a.xml", "application/xml" },
	{ "a.yaml", "application/yaml" },
	{ "a.yml", "application/yaml" },
	{ "a.zip", "application/zip" },
};

static const struct {
	const char *key, *type;
} keys[] = {
	{ "A.PDF", "application/pdf" },
	{ "Photo.JpG", "image/jpeg" },
	{ "products/x.json", "application/json" },
	{ "a.tar.gz", "application/gzip" },
	{ "jobs/2026/11/out.v2.parquet", "application/vnd.apache.parquet" },
	{ "dir.d/file", OCTET },
	{ "dir.json/", OCTET },
	{ ".bashrc", OCTET },
	{ "home/.bashrc", OCTET },
	{ "..hidden", OCTET },
	{ ".config.json", "application/json" },
	{ "noext", OCTET },
	{ "trailing.", OCTET },
	{ "a.exe", OCTET },
	{ "a.jsonx", OCTET },
	{ "a.j", OCTET },
	{ "a.averyveryverylongextension", OCTET },
	{ "a.json\xC3\xA9", OCTET },
	{ "", OCTET },
	{ "/", OCTET },
	{ NULL, OCTET },
};

static void check(const char *key, const char *want)
{
	const char *got = s3_mime_type(key);

	if (!got || strcmp(got, want) != 0)
		T_FAILF("\"%s\": got \"%s\", expected \"%s\"", key ? key : "(null)",
			got ? got : "(null)", want);
}

static void test_table(void)
{
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		check(known[i].key, known[i].type);
}

static void test_keys(void)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		check(keys[i].key, keys[i].type);
}

static const struct t_case cases[] = {
	{ "every_extension", test_table },
	{ "keys", test_keys },
};

T_MAIN(cases)
