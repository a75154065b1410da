/* mime.c - Content-Type of a key from its file-name extension.
 *
 * The extension is what follows the last '.' of the key's last path component, lowercased;
 * leading dots do not start one (".bashrc" and "..x" have none) and "dir.d/file" has none
 * either. It is looked up with bsearch() in a static table kept sorted by extension (strcmp
 * order); the unit test asks for every entry, so an entry out of order shows up as a failure.
 * Types are the bare IANA media types, without charset parameters. Anything unknown is
 * "application/octet-stream". No state, no allocation: thread-safe.
 */
#include <stdlib.h>
#include <string.h>

#include "s3.h"

#define DEFAULT_TYPE	"application/octet-stream"
#define MAX_EXT		16	/* longer than any extension in the table */

struct mime_entry {
	const char *ext;
	const char *type;
};

/* sorted by ext */
static const struct mime_entry mime_table[] = {
	{ "avif", "image/avif" },
	{ "bmp", "image/bmp" },
	{ "css", "text/css" },
	{ "csv", "text/csv" },
	{ "gif", "image/gif" },
	{ "gz", "application/gzip" },
	{ "htm", "text/html" },
	{ "html", "text/html" },
	{ "ico", "image/vnd.microsoft.icon" },
	{ "jpeg", "image/jpeg" },
	{ "jpg", "image/jpeg" },
	{ "js", "text/javascript" },
	{ "json", "application/json" },
	{ "jsonl", "application/x-ndjson" },
	{ "log", "text/plain" },
	{ "md", "text/markdown" },
	{ "mjs", "text/javascript" },
	{ "mp3", "audio/mpeg" },
	{ "mp4", "video/mp4" },
	{ "ndjson", "application/x-ndjson" },
	{ "parquet", "application/vnd.apache.parquet" },
	{ "pdf", "application/pdf" },
	{ "png", "image/png" },
	{ "svg", "image/svg+xml" },
	{ "tar", "application/x-tar" },
	{ "tif", "image/tiff" },
	{ "tiff", "image/tiff" },
	{ "tsv", "text/tab-separated-values" },
	{ "txt", "text/plain" },
	{ "wav", "audio/wav" },
	{ "webm", "video/webm" },
	{ "webp", "image/webp" },
	{ "woff", "font/woff" },
	{ "woff2", "font/woff2" },
	{ "xml", "application/xml" },
	{ "yaml", "application/yaml" },
	{ "yml", "application/yaml" },
	{ "zip", "application/zip" },
};

static int mime_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct mime_entry *)elem)->ext);
}

const char *s3_mime_type(const char *key)
{
	const struct mime_entry *e;
	const char *name, *dot;
	char ext[MAX_EXT + 1];
	size_t n;

	if (!key)
		return DEFAULT_TYPE;
	name = strrchr(key, '/');
	name = name ? name + 1 : key;
	while (*name == '.')
		name++;
	dot = strrchr(name, '.');
	if (!dot)
		return DEFAULT_TYPE;
	n = strlen(dot + 1);
	if (n == 0 || n > MAX_EXT)
		return DEFAULT_TYPE;
	for (size_t i = 0; i <= n; i++) {
		char c = dot[1 + i];

		ext[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	e = bsearch(ext, mime_table, sizeof(mime_table) / sizeof(mime_table[0]),
		    sizeof(mime_table[0]), mime_cmp);
	return e ? e->type : DEFAULT_TYPE;
}
