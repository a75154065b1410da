/* xml.c - S3's XML: parse its answers (listings, errors, multipart results), build its requests.
 *
 * Answers are parsed with libxml2 into a tree (xmlCtxtReadMemory with NONET and NOBLANKS, and
 * NOERROR/NOWARNING so a bad body never prints to stderr) and walked by local element names, so
 * any namespace prefix or xmlns is ignored. A document with a DOCTYPE is refused (-EINVAL)
 * before any value is read from it: S3 never sends one, and refusing it means no entity defined
 * in a DTD is ever expanded; libxml2 itself loads no external DTD or entity without
 * DTDLOAD/NOENT, which are never set. Text is read only from an element's direct text and CDATA
 * children. Every value is checked: a number that is not all digits, a boolean other than
 * true/false, a bad time or a bad %XX escape make the whole document -EINVAL, never a guess;
 * fixed-size fields (ETag, error code and message) are truncated at a UTF-8 character boundary.
 * Results are built in the caller's structures only as far as the document is valid: a parser
 * that fails leaves no half-filled heap strings behind. Requests are written through
 * open_memstream() with every key and ETag XML-escaped. libxml2 is initialised once
 * (pthread_once) because xmlInitParser() is not thread-safe; after that every function here is
 * reentrant and never blocks.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlstring.h>

#include "s3_i.h"

#define S3_XMLNS	"http://s3.amazonaws.com/doc/2006-03-01/"
#define ETAG_SIZE	72	/* the etag[72] of s3_i.h and s3.h */
#define PARSE_OPTS	(XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR | \
			 XML_PARSE_NOWARNING)

/* Converts a trimmed element text into *out: 0, or -EINVAL when the text is not a value. */
typedef int (*conv_fn)(const char *s, void *out);

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

/* ---- documents and elements ---- */

static bool is_elem(const xmlNode *n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

/* Parse xml[0..len) into *doc_out (caller frees with xmlFreeDoc()); *root_out is its root
 * element, borrowed from the document, which must be called root_name unless that is NULL.
 * White space before the document is skipped (S3 may send some to keep a slow
 * CompleteMultipartUpload alive, and an XML declaration after it would be an error).
 * -EINVAL: empty, too long, not well-formed, has a DOCTYPE, no root element or another one;
 * -ENOMEM. */
static int doc_open(const char *xml, size_t len, const char *root_name, xmlDocPtr *doc_out,
		    xmlNodePtr *root_out)
{
	xmlParserCtxtPtr ctxt = NULL;
	xmlDocPtr doc = NULL;
	xmlNodePtr root = NULL;
	int rc = -EINVAL;

	*doc_out = NULL;
	*root_out = NULL;
	while (xml && len > 0 && (*xml == ' ' || *xml == '\t' || *xml == '\n' || *xml == '\r')) {
		xml++;
		len--;
	}
	if (!xml || len == 0 || len > INT_MAX)
		return -EINVAL;
	pthread_once(&xml_once, xmlInitParser);
	ctxt = xmlNewParserCtxt();
	if (!ctxt)
		return -ENOMEM;
	doc = xmlCtxtReadMemory(ctxt, xml, (int)len, NULL, NULL, PARSE_OPTS);
	if (!doc) {
		rc = ctxt->errNo == XML_ERR_NO_MEMORY ? -ENOMEM : -EINVAL;
		goto out;
	}
	if (!ctxt->wellFormed || doc->intSubset || doc->extSubset)
		goto out;
	root = xmlDocGetRootElement(doc);
	if (!root || (root_name && !is_elem(root, root_name)))
		goto out;
	*doc_out = doc;
	*root_out = root;
	doc = NULL;
	rc = 0;
out:
	xmlFreeDoc(doc);
	xmlFreeParserCtxt(ctxt);
	return rc;
}

/* The first child element called name, or NULL; borrowed from the document. */
static xmlNodePtr child(const xmlNode *parent, const char *name)
{
	for (xmlNodePtr c = parent->children; c; c = c->next)
		if (is_elem(c, name))
			return c;
	return NULL;
}

static size_t count_children(const xmlNode *parent, const char *name)
{
	size_t n = 0;

	for (xmlNodePtr c = parent->children; c; c = c->next)
		n += is_elem(c, name);
	return n;
}

/* The text of child `name` (its text and CDATA children, concatenated) as a heap string the
 * caller frees: 1 when the child exists, 0 and *out NULL when it does not, -ENOMEM. */
static int child_text(const xmlNode *parent, const char *name, char **out)
{
	xmlNodePtr n = child(parent, name);
	size_t len = 0;
	char *s;

	*out = NULL;
	if (!n)
		return 0;
	for (xmlNodePtr c = n->children; c; c = c->next)
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
			len += strlen((const char *)c->content);
	s = malloc(len + 1);
	if (!s)
		return -ENOMEM;
	len = 0;
	for (xmlNodePtr c = n->children; c; c = c->next) {
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content) {
			size_t l = strlen((const char *)c->content);

			memcpy(s + len, c->content, l);
			len += l;
		}
	}
	s[len] = '\0';
	*out = s;
	return 1;
}

/* ---- values ---- */

/* s without leading and trailing XML white space (the end is cut in place). */
static char *trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		n--;
	s[n] = '\0';
	return s;
}

/* Copy src[0..n) into dst[size], cutting at a UTF-8 character boundary when it does not fit. */
static void copy_trunc(char *dst, size_t size, const char *src, size_t n)
{
	if (n >= size) {
		n = size - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode %XX in place, as S3's encoding-type=url writes them, and '+' as a space: AWS encodes
 * a space as '+' and a '+' as %2B, as form encoding does (the SDKs decode with unquote_plus /
 * QueryUnescape); s3rver and Swift write %20 and %2B, so this reads all three. -EINVAL for a
 * '%' not followed by two hex digits, and for %00: a C string cannot hold that key. */
static int url_decode(char *s)
{
	char *w = s;
	int hi, lo;

	for (const char *r = s; *r; r++) {
		if (*r != '%') {
			*w++ = *r == '+' ? ' ' : *r;
			continue;
		}
		hi = hex_value(r[1]);
		lo = hi < 0 ? -1 : hex_value(r[2]);
		if (lo < 0 || (hi | lo) == 0)
			return -EINVAL;
		*w++ = (char)(hi << 4 | lo);
		r += 2;
	}
	*w = '\0';
	return 0;
}

static int conv_u64(const char *s, void *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;	/* strtoull would take space, '+' and '-' */
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*(uint64_t *)out = v;
	return 0;
}

/* 0..INT_MAX */
static int conv_int(const char *s, void *out)
{
	uint64_t v;

	if (conv_u64(s, &v) || v > INT_MAX)
		return -EINVAL;
	*(int *)out = (int)v;
	return 0;
}

static int conv_bool(const char *s, void *out)
{
	if (!strcasecmp(s, "true"))
		*(bool *)out = true;
	else if (!strcasecmp(s, "false"))
		*(bool *)out = false;
	else
		return -EINVAL;
	return 0;
}

static int conv_time(const char *s, void *out)
{
	return s3_parse_iso8601(s, out);
}

/* Child `name`, trimmed and converted by conv into out: 0 when absent (out untouched) or
 * converted, -EINVAL when conv refuses it, -ENOMEM. */
static int get_conv(const xmlNode *parent, const char *name, conv_fn conv, void *out)
{
	char *s = NULL;
	int rc = child_text(parent, name, &s);

	if (rc > 0)
		rc = conv(trim(s), out);
	free(s);
	return rc;
}

/* Child `name` as a heap string (caller frees; NULL when absent), %XX-decoded when url. */
static int get_str(const xmlNode *parent, const char *name, bool url, char **out)
{
	int rc = child_text(parent, name, out);

	if (rc > 0 && url)
		rc = url_decode(*out);
	if (rc < 0) {
		free(*out);
		*out = NULL;
	}
	return rc < 0 ? rc : 0;
}

/* A pagination marker: like get_str(), but an empty one counts as absent. */
static int get_marker(const xmlNode *parent, const char *name, bool url, char **out)
{
	int rc = get_str(parent, name, url, out);

	if (!rc && *out && !**out) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* Child `name` into buf[size], truncated; buf untouched when absent. */
static int get_buf(const xmlNode *parent, const char *name, char *buf, size_t size)
{
	char *s = NULL;
	int rc = child_text(parent, name, &s);

	if (rc > 0)
		copy_trunc(buf, size, s, strlen(s));
	free(s);
	return rc < 0 ? rc : 0;
}

/* Child ETag into etag[ETAG_SIZE] without its quotes, written either as '"' or as a literal
 * "&quot;" (a server that escaped twice); truncated when too long; untouched when absent. */
static int get_etag(const xmlNode *parent, char *etag)
{
	char *s = NULL, *v;
	int rc = child_text(parent, "ETag", &s);
	size_t n;

	if (rc > 0) {
		v = trim(s);
		if (*v == '"')
			v++;
		else if (!strncmp(v, "&quot;", 6))
			v += 6;
		n = strlen(v);
		if (n > 0 && v[n - 1] == '"')
			n--;
		else if (n >= 6 && !memcmp(v + n - 6, "&quot;", 6))
			n -= 6;
		copy_trunc(etag, ETAG_SIZE, v, n);
	}
	free(s);
	return rc < 0 ? rc : 0;
}

/* True when the document says <EncodingType>url</EncodingType>. */
static int url_encoded(const xmlNode *root, bool *url)
{
	char *s = NULL;
	int rc = child_text(root, "EncodingType", &s);

	*url = rc > 0 && !strcasecmp(trim(s), "url");
	free(s);
	return rc < 0 ? rc : 0;
}

/* arr (n elements of elsize) realloc'd for k > 0 more; NULL on failure, arr then unchanged. */
static void *grow(void *arr, size_t n, size_t k, size_t elsize)
{
	if (k > SIZE_MAX / elsize - n)
		return NULL;
	return realloc(arr, (n + k) * elsize);
}

/* ---- answers ---- */

/* An <Error> root into err (may be NULL): -EINVAL when root is something else. */
static int fill_error(const xmlNode *root, struct s3_error *err)
{
	int rc;

	if (!is_elem(root, "Error"))
		return -EINVAL;
	if (!err)
		return 0;
	rc = get_buf(root, "Code", err->code, sizeof(err->code));
	if (!rc)
		rc = get_buf(root, "Message", err->message, sizeof(err->message));
	if (!rc)
		rc = get_buf(root, "Region", err->region, sizeof(err->region));
	return rc;
}

int s3_xml_parse_error(const char *xml, size_t len, struct s3_error *err)
{
	xmlDocPtr doc;
	xmlNodePtr root;
	int rc = doc_open(xml, len, NULL, &doc, &root);

	if (!rc)
		rc = fill_error(root, err);
	xmlFreeDoc(doc);
	return rc;
}

/* One <Contents> of a listing into e (zeroed by the caller; e->key heap). Key is required. */
static int parse_entry(const xmlNode *c, bool url, struct s3_list_entry *e)
{
	int rc = get_str(c, "Key", url, &e->key);

	if (!rc && !e->key)
		rc = -EINVAL;
	if (!rc)
		rc = get_conv(c, "Size", conv_u64, &e->size);
	if (!rc)
		rc = get_conv(c, "LastModified", conv_time, &e->mtime);
	if (!rc)
		rc = get_etag(c, e->etag);
	return rc;
}

int s3_xml_parse_list(const char *xml, size_t len, struct s3_list_page *page)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr root = NULL;
	size_t n_obj, n_pfx;
	bool url = false;
	int rc;

	memset(page, 0, sizeof(*page));
	rc = doc_open(xml, len, "ListBucketResult", &doc, &root);
	if (!rc)
		rc = url_encoded(root, &url);
	if (!rc)
		rc = get_conv(root, "IsTruncated", conv_bool, &page->truncated);
	/* the V2 token is opaque and never encoded; V1's NextMarker is a key and is */
	if (!rc)
		rc = get_marker(root, "NextContinuationToken", false, &page->next_token);
	if (!rc && !page->next_token)
		rc = get_marker(root, "NextMarker", url, &page->next_token);
	if (rc)
		goto out;

	n_obj = count_children(root, "Contents");
	n_pfx = count_children(root, "CommonPrefixes");
	if ((n_obj && !(page->objects = calloc(n_obj, sizeof(*page->objects)))) ||
	    (n_pfx && !(page->prefixes = calloc(n_pfx, sizeof(*page->prefixes))))) {
		rc = -ENOMEM;
		goto out;
	}
	for (xmlNodePtr c = root->children; c && !rc; c = c->next) {
		if (is_elem(c, "Contents")) {
			rc = parse_entry(c, url, &page->objects[page->n_objects++]);
		} else if (is_elem(c, "CommonPrefixes")) {
			char **p = &page->prefixes[page->n_prefixes++];

			rc = get_str(c, "Prefix", url, p);
			if (!rc && !*p)
				rc = -EINVAL;
		}
	}
out:
	xmlFreeDoc(doc);
	if (rc)
		s3_list_page_release(page);
	return rc;
}

void s3_list_page_release(struct s3_list_page *page)
{
	if (!page)
		return;
	for (size_t i = 0; i < page->n_objects; i++)
		free(page->objects[i].key);
	for (size_t i = 0; i < page->n_prefixes; i++)
		free(page->prefixes[i]);
	free(page->objects);
	free(page->prefixes);
	free(page->next_token);
	memset(page, 0, sizeof(*page));
}

int s3_xml_parse_initiate(const char *xml, size_t len, char **upload_id)
{
	xmlDocPtr doc;
	xmlNodePtr root;
	int rc;

	*upload_id = NULL;
	rc = doc_open(xml, len, "InitiateMultipartUploadResult", &doc, &root);
	if (!rc)
		rc = get_marker(root, "UploadId", false, upload_id);
	if (!rc && !*upload_id)
		rc = -EINVAL;	/* absent or empty */
	xmlFreeDoc(doc);
	return rc;
}

/* <root_name><ETag/> into etag (may be NULL; "" when the answer has none), or an <Error>
 * document into err and -EIO. Shared by the complete and copy answers. */
static int parse_etag_result(const char *xml, size_t len, const char *root_name, char *etag,
			     struct s3_error *err)
{
	xmlDocPtr doc;
	xmlNodePtr root;
	int rc;

	if (etag)
		etag[0] = '\0';
	rc = doc_open(xml, len, NULL, &doc, &root);
	if (rc)
		return rc;
	if (is_elem(root, root_name)) {
		if (etag)
			rc = get_etag(root, etag);
	} else {
		rc = fill_error(root, err);
		if (!rc)
			rc = -EIO;
	}
	xmlFreeDoc(doc);
	return rc;
}

int s3_xml_parse_complete(const char *xml, size_t len, char *etag, struct s3_error *err)
{
	return parse_etag_result(xml, len, "CompleteMultipartUploadResult", etag, err);
}

int s3_xml_parse_copy(const char *xml, size_t len, char *etag, struct s3_error *err)
{
	return parse_etag_result(xml, len, "CopyObjectResult", etag, err);
}

/* One <Part> into p (zeroed by the caller). PartNumber is required and positive. */
static int parse_part(const xmlNode *c, struct s3_part *p)
{
	int rc = get_conv(c, "PartNumber", conv_int, &p->number);

	if (!rc && p->number <= 0)
		rc = -EINVAL;
	if (!rc)
		rc = get_conv(c, "Size", conv_u64, &p->size);
	if (!rc)
		rc = get_etag(c, p->etag);
	return rc;
}

/* *next_marker is read too: it must hold the marker this page was asked with, so that a
 * truncated page whose NextPartNumberMarker is absent or does not move forward is refused
 * (-EINVAL) rather than fetched again forever. On failure nothing is appended and *parts
 * holds the same *n parts (perhaps moved by realloc). */
int s3_xml_parse_list_parts(const char *xml, size_t len, struct s3_part **parts, size_t *n,
			    bool *truncated, int *next_marker)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr root = NULL;
	size_t filled = 0, k;
	bool trunc = false;
	int marker = -1, rc;

	rc = doc_open(xml, len, "ListPartsResult", &doc, &root);
	if (rc)
		goto out;
	rc = get_conv(root, "IsTruncated", conv_bool, &trunc);
	if (!rc)
		rc = get_conv(root, "NextPartNumberMarker", conv_int, &marker);
	if (!rc && trunc && marker <= *next_marker)
		rc = -EINVAL;
	k = count_children(root, "Part");
	if (!rc && k) {
		struct s3_part *np = grow(*parts, *n, k, sizeof(**parts));

		rc = np ? 0 : -ENOMEM;
		*parts = np ? np : *parts;
	}
	for (xmlNodePtr c = root->children; c && !rc; c = c->next) {
		if (is_elem(c, "Part")) {
			struct s3_part *p = &(*parts)[*n + filled++];

			memset(p, 0, sizeof(*p));
			rc = parse_part(c, p);
		}
	}
	if (!rc) {
		*n += filled;
		*truncated = trunc;
		if (marker >= 0)
			*next_marker = marker;
	}
out:
	xmlFreeDoc(doc);
	return rc;
}

/* One <Upload> into u (zeroed by the caller; strings heap). Key and UploadId are required. */
static int parse_upload(const xmlNode *c, bool url, struct s3_upload *u)
{
	int rc = get_str(c, "Key", url, &u->key);

	if (!rc)
		rc = get_str(c, "UploadId", false, &u->upload_id);
	if (!rc && (!u->key || !u->upload_id))
		rc = -EINVAL;
	if (!rc)
		rc = get_conv(c, "Initiated", conv_time, &u->initiated);
	return rc;
}

/* With <EncodingType>url</EncodingType>, Key and NextKeyMarker are decoded. Empty markers
 * count as absent. On failure nothing is appended, *uploads holds the same *n entries and
 * both markers are NULL. */
int s3_xml_parse_list_uploads(const char *xml, size_t len, struct s3_upload **uploads, size_t *n,
			      bool *truncated, char **next_key, char **next_upload_id)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr root = NULL;
	size_t filled = 0, k;
	bool trunc = false, url = false;
	int rc;

	*next_key = NULL;
	*next_upload_id = NULL;
	rc = doc_open(xml, len, "ListMultipartUploadsResult", &doc, &root);
	if (rc)
		goto out;
	rc = url_encoded(root, &url);
	if (!rc)
		rc = get_conv(root, "IsTruncated", conv_bool, &trunc);
	if (!rc)
		rc = get_marker(root, "NextKeyMarker", url, next_key);
	if (!rc)
		rc = get_marker(root, "NextUploadIdMarker", false, next_upload_id);
	k = count_children(root, "Upload");
	if (!rc && k) {
		struct s3_upload *nu = grow(*uploads, *n, k, sizeof(**uploads));

		rc = nu ? 0 : -ENOMEM;
		*uploads = nu ? nu : *uploads;
	}
	for (xmlNodePtr c = root->children; c && !rc; c = c->next) {
		if (is_elem(c, "Upload")) {
			struct s3_upload *u = &(*uploads)[*n + filled++];

			memset(u, 0, sizeof(*u));
			rc = parse_upload(c, url, u);
		}
	}
	if (!rc) {
		*n += filled;
		*truncated = trunc;
	}
out:
	xmlFreeDoc(doc);
	if (rc) {
		for (size_t i = 0; i < filled; i++) {
			free((*uploads)[*n + i].key);
			free((*uploads)[*n + i].upload_id);
		}
		free(*next_key);
		free(*next_upload_id);
		*next_key = NULL;
		*next_upload_id = NULL;
	}
	return rc;
}

/* The message is "<key>: <message>". A whole-request <Error> document (instead of a
 * DeleteResult) fills err and returns -EIO, as the complete and copy answers do. */
int s3_xml_parse_delete(const char *xml, size_t len, size_t *n_errors, struct s3_error *err)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr root = NULL;
	char *key = NULL, *msg = NULL;
	int rc;

	*n_errors = 0;
	rc = doc_open(xml, len, NULL, &doc, &root);
	if (rc)
		goto out;
	if (!is_elem(root, "DeleteResult")) {
		rc = fill_error(root, err);
		if (!rc)
			rc = -EIO;
		goto out;
	}
	for (xmlNodePtr c = root->children; c && !rc; c = c->next) {
		if (!is_elem(c, "Error") || ++*n_errors > 1 || !err)
			continue;
		rc = get_str(c, "Key", false, &key);
		if (!rc)
			rc = get_str(c, "Message", false, &msg);
		if (!rc)
			rc = get_buf(c, "Code", err->code, sizeof(err->code));
		if (!rc)
			snprintf(err->message, sizeof(err->message), "%s: %s", key ? key : "",
				 msg ? msg : "");
	}
out:
	free(key);
	free(msg);
	xmlFreeDoc(doc);
	return rc;
}

/* ---- requests ---- */

/* s is well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past
 * U+10FFFF. xmlCheckUTF8() lets overlong forms such as C0 A9 through, which libxml2's own
 * parser (and S3's) then refuses. */
static bool utf8_valid(const unsigned char *s)
{
	while (*s) {
		unsigned char c = *s, lo = 0x80, hi = 0xBF;
		int more;

		if (c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			more = 1;
		else if (c >= 0xE0 && c <= 0xEF)
			more = 2;
		else if (c >= 0xF0 && c <= 0xF4)
			more = 3;
		else
			return false;
		if (c == 0xE0)
			lo = 0xA0;	/* overlong */
		else if (c == 0xED)
			hi = 0x9F;	/* surrogates */
		else if (c == 0xF0)
			lo = 0x90;	/* overlong */
		else if (c == 0xF4)
			hi = 0x8F;	/* past U+10FFFF */
		if (s[1] < lo || s[1] > hi)
			return false;
		for (int i = 2; i <= more; i++)
			if (s[i] < 0x80 || s[i] > 0xBF)
				return false;
		s += more + 1;
	}
	return true;
}

/* Write s into f XML-escaped for element content: & < > " ' as entities, CR as &#13; (a
 * parser would turn a raw CR into LF). -EINVAL when s cannot be carried by XML 1.0 at all:
 * invalid UTF-8, a control character below 0x20 other than tab, LF and CR (XML 1.0 has no
 * way to write them, not even as &#N;), or the non-characters U+FFFE and U+FFFF. */
static int put_escaped(FILE *f, const char *s)
{
	if (!s || !utf8_valid((const unsigned char *)s))
		return -EINVAL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		case '\r': fputs("&#13;", f); break;
		case '\t':
		case '\n': fputc(*p, f); break;
		default:
			if (*p < 0x20 || (p[0] == 0xEF && p[1] == 0xBF && (p[2] == 0xBE || p[2] == 0xBF)))
				return -EINVAL;
			fputc(*p, f);
		}
	}
	return 0;
}

/* Close a builder's stream: its text (*buf, caller frees), or NULL with errno set from rc,
 * or ENOMEM when the stream failed. */
static char *finish(FILE *f, char **buf, int rc)
{
	if (ferror(f) && !rc)
		rc = -ENOMEM;
	if (fclose(f) != 0 && !rc)
		rc = -ENOMEM;
	if (rc) {
		free(*buf);
		*buf = NULL;
		errno = -rc;
	}
	return *buf;
}

/* ETags are written quoted, as S3 returns them; S3 accepts both forms. NULL with errno
 * EINVAL when an ETag cannot be carried (see put_escaped()), ENOMEM. */
char *s3_xml_build_complete(const struct s3_part *parts, size_t n)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	int rc = 0;

	if (!f) {
		errno = ENOMEM;
		return NULL;
	}
	fputs("<CompleteMultipartUpload xmlns=\"" S3_XMLNS "\">", f);
	for (size_t i = 0; i < n && !rc; i++) {
		fprintf(f, "<Part><PartNumber>%d</PartNumber><ETag>&quot;", parts[i].number);
		rc = put_escaped(f, parts[i].etag);
		fputs("&quot;</ETag></Part>", f);
	}
	fputs("</CompleteMultipartUpload>", f);
	return finish(f, &buf, rc);
}

/* NULL with errno EINVAL when a key cannot be carried by XML 1.0 (see put_escaped(): a key
 * with a control character such as "\x01" can only be deleted one by one, by URL), ENOMEM. */
char *s3_xml_build_delete(const char *const *keys, size_t n)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	int rc = 0;

	if (!f) {
		errno = ENOMEM;
		return NULL;
	}
	fputs("<Delete xmlns=\"" S3_XMLNS "\"><Quiet>true</Quiet>", f);
	for (size_t i = 0; i < n && !rc; i++) {
		fputs("<Object><Key>", f);
		rc = put_escaped(f, keys[i]);
		fputs("</Key></Object>", f);
	}
	fputs("</Delete>", f);
	return finish(f, &buf, rc);
}

/* ---- times ---- */

/* Exactly n decimal digits at *p into *out; *p moves past them. */
static bool read_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool skip_char(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/* "HH:MM:SS" */
static bool read_hms(const char **p, int *h, int *mi, int *s)
{
	return read_digits(p, 2, h) && skip_char(p, ':') && read_digits(p, 2, mi) &&
	       skip_char(p, ':') && read_digits(p, 2, s);
}

/* The index of the 3-letter name at *p in names (n of them, packed), -1 if none; *p moves. */
static int read_name(const char **p, const char *names, int n)
{
	for (int i = 0; i < n; i++) {
		if (!strncmp(*p, names + 3 * i, 3)) {
			*p += 3;
			return i;
		}
	}
	return -1;
}

/* A UTC calendar time to time_t; -EINVAL when a field is out of range (31 Feb included). A
 * leap second (:60) counts as :59. */
static int utc_time(int year, int mon, int day, int hour, int min, int sec, time_t *out)
{
	struct tm tm = { 0 };

	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec == 60 ? 59 : sec;
	*out = timegm(&tm);	/* normalises tm: a day past the month's end moves it */
	return tm.tm_mday == day && tm.tm_mon == mon - 1 ? 0 : -EINVAL;
}

/* "YYYY-MM-DDTHH:MM:SS", optional fraction (dropped), then Z, +HH:MM / -HH:MM (or without
 * the colon) or nothing, which is taken as UTC. 'T' may be 't' or a space (RFC 3339). */
int s3_parse_iso8601(const char *s, time_t *out)
{
	const char *p = s;
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	time_t t;

	if (!p || !read_digits(&p, 4, &y) || !skip_char(&p, '-') || !read_digits(&p, 2, &mo) ||
	    !skip_char(&p, '-') || !read_digits(&p, 2, &d))
		return -EINVAL;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -EINVAL;
	p++;
	if (!read_hms(&p, &h, &mi, &sec))
		return -EINVAL;
	if (*p == '.' || *p == ',') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (!read_digits(&p, 2, &oh))
			return -EINVAL;
		skip_char(&p, ':');
		if (!read_digits(&p, 2, &om) || oh > 23 || om > 59)
			return -EINVAL;
	}
	if (*p || utc_time(y, mo, d, h, mi, sec, &t))
		return -EINVAL;
	*out = t - sign * (oh * 3600 + om * 60);
	return 0;
}

/* IMF-fixdate only (RFC 7231 7.1.1.1): "Wed, 25 Nov 2026 01:02:03 GMT". Names are matched
 * case-sensitively, as the RFC says; the weekday is not checked against the date. Parsed by
 * hand, not with strptime(), whose %a/%b follow the process locale. */
int s3_parse_http_date(const char *s, time_t *out)
{
	static const char days[] = "MonTueWedThuFriSatSun";
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	const char *p = s;
	int d, mo, y, h, mi, sec;
	time_t t;

	if (!p || read_name(&p, days, 7) < 0 || !skip_char(&p, ',') || !skip_char(&p, ' ') ||
	    !read_digits(&p, 2, &d) || !skip_char(&p, ' ') ||
	    (mo = read_name(&p, months, 12)) < 0 || !skip_char(&p, ' ') ||
	    !read_digits(&p, 4, &y) || !skip_char(&p, ' ') || !read_hms(&p, &h, &mi, &sec) ||
	    strcmp(p, " GMT") != 0)
		return -EINVAL;
	if (utc_time(y, mo + 1, d, h, mi, sec, &t))
		return -EINVAL;
	*out = t;
	return 0;
}
