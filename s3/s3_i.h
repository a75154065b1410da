/* s3_i.h - private to s3/: XML bodies of S3 requests and responses (libxml2).
 *
 * Parsers take a response body (not NUL-terminated necessarily) and fill caller structs;
 * they return 0, -EINVAL when the document is not the expected one (malformed XML, wrong root),
 * or -ENOMEM. Namespaces are ignored (matched on local names). Builders return a heap string
 * (caller frees with free()) or NULL on ENOMEM.
 */
#ifndef S3JOBFS_S3_I_H
#define S3JOBFS_S3_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3.h"

/* <Error><Code/><Message/><Region/></Error> into err->code/message/region (truncated to fit;
 * fields absent stay as they were). -EINVAL if the root is not Error. */
int s3_xml_parse_error(const char *xml, size_t len, struct s3_error *err);

/* <ListBucketResult> of ListObjectsV2 (also accepts V1's NextMarker as the token when
 * NextContinuationToken is absent). With <EncodingType>url</EncodingType> the Key, Prefix and
 * NextContinuationToken... values are URL-decoded ('+' is NOT a space in S3's encoding).
 * page is zeroed first; release with s3_list_page_release(). */
int s3_xml_parse_list(const char *xml, size_t len, struct s3_list_page *page);

/* <InitiateMultipartUploadResult><UploadId/>: *upload_id heap string. */
int s3_xml_parse_initiate(const char *xml, size_t len, char **upload_id);

/* <CompleteMultipartUploadResult><ETag/> (quotes stripped, into etag[72]); an <Error>
 * document (S3 may send one with HTTP 200) fills err and returns -EIO. */
int s3_xml_parse_complete(const char *xml, size_t len, char *etag, struct s3_error *err);

/* <CopyObjectResult><ETag/>; an <Error> document fills err and returns -EIO. */
int s3_xml_parse_copy(const char *xml, size_t len, char *etag, struct s3_error *err);

/* <ListPartsResult>: appends to *parts (realloc'd; caller frees), updates *n;
 * *truncated and *next_marker (NextPartNumberMarker) for the next page. */
int s3_xml_parse_list_parts(const char *xml, size_t len, struct s3_part **parts, size_t *n,
			    bool *truncated, int *next_marker);

/* <ListMultipartUploadsResult>: appends <Upload> entries (Key, UploadId, Initiated) to
 * *uploads; *truncated; *next_key and *next_upload_id heap strings (NULL when absent). */
int s3_xml_parse_list_uploads(const char *xml, size_t len, struct s3_upload **uploads, size_t *n,
			      bool *truncated, char **next_key, char **next_upload_id);

/* <DeleteResult>: *n_errors = number of <Error> entries; the first one's Key/Code/Message
 * go into err (message prefixed with the key). */
int s3_xml_parse_delete(const char *xml, size_t len, size_t *n_errors, struct s3_error *err);

/* <CompleteMultipartUpload><Part><PartNumber/><ETag/></Part>...</CompleteMultipartUpload> */
char *s3_xml_build_complete(const struct s3_part *parts, size_t n);

/* <Delete><Quiet>true</Quiet><Object><Key/></Object>...</Delete>, keys XML-escaped. */
char *s3_xml_build_delete(const char *const *keys, size_t n);

/* Parse an ISO 8601 / RFC 3339 time "2026-11-25T01:02:03.000Z" to time_t (UTC). -EINVAL. */
int s3_parse_iso8601(const char *s, time_t *out);

/* Parse an RFC 7231 HTTP date "Wed, 25 Nov 2026 01:02:03 GMT". -EINVAL. */
int s3_parse_http_date(const char *s, time_t *out);

#endif

/* ---- retry policy (s3/retry.c) ----
 * A call is attempted, then retried while the error is retryable, attempts stay within
 * 1 + max_retries and the deadline leaves room for the backoff. Delays are "full jitter":
 * uniform in [0, min(cap_ms, base_ms * 2^retry)]. The clock, sleep and random source are
 * injectable so the unit tests run the loop without waiting. */
struct s3_retry {
	int max_retries;
	unsigned base_ms;
	unsigned cap_ms;
	uint64_t timeout_ms;			/* whole call, retries included; 0 = none */
	uint64_t (*now_ms)(void *ctx);		/* monotonic */
	void (*sleep_ms)(void *ctx, unsigned ms);
	uint64_t (*rand64)(void *ctx);
	void *ctx;
	uint64_t *retries;			/* NULL, or S3_RETRY_CAUSES counters (atomic adds) */
};

/* One attempt: 0 on success; -EAGAIN to try again at once without counting (the region was
 * corrected); otherwise -errno with err's http_status / code / curl_code describing it.
 * timeout_ms is what is left of the call's deadline (0 = no deadline). */
typedef int (*s3_attempt_fn)(void *ctx, int attempt, uint64_t timeout_ms, struct s3_error *err);

/* Fill r with the real clock and RNG, for cfg's S3_MAX_RETRIES. */
void s3_retry_init(struct s3_retry *r, int max_retries, uint64_t timeout_ms);

bool s3_retry_retryable(int http_status, const char *code, int curl_code);
unsigned s3_retry_delay_ms(const struct s3_retry *r, int retry);

/* Run fn under the policy. Returns fn's last result; err->attempts counts the requests made. */
int s3_retry_run(const struct s3_retry *r, s3_attempt_fn fn, void *ctx, struct s3_error *err);
