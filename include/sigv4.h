/* sigv4.h - AWS Signature Version 4 request signing (header and presigned-query forms).
 *
 * Pure functions over strings: no I/O, no globals, thread-safe. The caller passes the request
 * as it will go on the wire (method, path already URI-encoded, raw query, headers) and gets
 * back the headers (or query parameters) to add. Canonicalisation follows the AWS rules: header
 * names lowercased and sorted, values trimmed with inner runs of spaces folded, repeated headers
 * joined with ',', query parameters encoded and sorted by name then value. For S3, pass
 * normalize_path = false and double_encode = false; the generic AWS test suite uses true/true.
 */
#ifndef S3JOBFS_SIGV4_H
#define S3JOBFS_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct sigv4_header {
	const char *name;	/* borrowed; any case */
	const char *value;	/* borrowed; may contain leading/trailing/multiple spaces */
};

struct sigv4_request {
	const char *method;		/* "GET", "PUT", ... */
	const char *path;		/* as sent on the wire, e.g. "/bucket/a%20b.json"; never NULL */
	const char *query;		/* raw query without '?', e.g. "list-type=2&prefix=a%2F"; NULL or "" for none */
	const struct sigv4_header *headers; /* must include Host */
	size_t n_headers;
	const char *payload_hash;	/* lowercase hex SHA-256 of the body, or "UNSIGNED-PAYLOAD";
					 * NULL means the hash of the empty string */
};

struct sigv4_creds {
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token;	/* NULL when none */
};

struct sigv4_params {
	const char *region;		/* "us-east-1" */
	const char *service;		/* "s3" */
	time_t when;			/* signing time, UTC seconds */
	bool normalize_path;		/* remove dot segments and duplicate slashes (false for S3) */
	bool double_encode;		/* URI-encode the (already encoded) path once more (false for S3) */
	bool omit_session_token;	/* send X-Amz-Security-Token but leave it out of the signature */
	bool content_sha256_header;	/* add and sign x-amz-content-sha256 (always true for S3) */
	long expires;			/* presign only: X-Amz-Expires seconds (1..604800) */
};

/* Result of signing; every string is heap-allocated, release with sigv4_result_release(). */
struct sigv4_result {
	char *canonical_request;
	char *string_to_sign;
	char *signature;		/* 64 hex chars */
	char *amz_date;			/* "20150830T123600Z" */
	/* header form: headers the caller must add to the request, in this order:
	 * x-amz-date, x-amz-security-token (if any), x-amz-content-sha256 (if asked), Authorization.
	 * Each entry is "Name: value" ready for curl_slist_append(). */
	char *add_headers[4];
	size_t n_add_headers;
	char *authorization;		/* value of the Authorization header (header form only) */
	/* query form: the full query string to send (original parameters + X-Amz-*), no '?' */
	char *signed_query;
};

/* Sign with the Authorization header. Returns 0, -EINVAL on a malformed request (no Host,
 * NULL method/path), -ENOMEM. Does not block. out is zeroed first; on error nothing is left
 * allocated in it. */
int sigv4_sign_header(const struct sigv4_request *req, const struct sigv4_creds *creds,
		      const struct sigv4_params *params, struct sigv4_result *out);

/* Presign: the request's query plus X-Amz-Algorithm, -Credential, -Date, -Expires,
 * -SignedHeaders (, -Security-Token) and -Signature, in out->signed_query. Same errors. */
int sigv4_sign_query(const struct sigv4_request *req, const struct sigv4_creds *creds,
		     const struct sigv4_params *params, struct sigv4_result *out);

void sigv4_result_release(struct sigv4_result *r);

/* URI-encode per SigV4: unreserved A-Z a-z 0-9 - . _ ~ kept, everything else %XX (uppercase
 * hex, UTF-8 bytes). keep_slash keeps '/' (for paths). Returns a heap string (caller frees with
 * free()), NULL on ENOMEM. */
char *sigv4_uri_encode(const char *s, size_t len, bool keep_slash);

/* Lowercase hex SHA-256 of a buffer into hex[65]. */
void sigv4_sha256_hex(const void *data, size_t len, char hex[65]);

#endif /* S3JOBFS_SIGV4_H */
