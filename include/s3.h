/* s3.h - the S3 client: SigV4-signed requests over libcurl with retries and reused connections.
 *
 * One struct s3_client is shared by every thread. Each call borrows a curl easy handle from a
 * pool (connections, DNS and TLS sessions are shared through a curl share handle), signs the
 * request with the current credentials, and retries up to S3_MAX_RETRIES times with
 * exponential backoff and full jitter on 5xx, 429/503 SlowDown, RequestTimeout, connection
 * errors and truncated bodies; never on other 4xx. Every retry is signed anew. All calls block
 * and are thread-safe. Every call returns 0 or -errno (404 -ENOENT, 403 -EACCES, timeout
 * -ETIMEDOUT, connection refused -ECONNREFUSED, other 4xx -EINVAL/-EPERM, 5xx after retries
 * -EIO) and, when `err` is non-NULL, fills it with S3's error Code and Message.
 * `bucket` may be NULL for the configured S3_BUCKET_NAME.
 */
#ifndef S3JOBFS_S3_H
#define S3JOBFS_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct cfg;
struct s3_client;
struct s3_creds_provider;

/* What went wrong with the last attempt of a call (all strings NUL-terminated, maybe empty). */
struct s3_error {
	int http_status;	/* 0: no HTTP answer */
	int curl_code;		/* CURLcode of the last attempt, 0 if none */
	int attempts;		/* requests sent, retries included */
	char code[64];		/* S3 error Code, e.g. "NoSuchBucket", or a transport name */
	char message[256];	/* S3 error Message or curl's text */
	char region[32];	/* the bucket's region when S3 said it is another one */
	char setting[48];	/* the configuration variable whose feature the server refused */
};

/* Object metadata from HEAD, GET or a listing. */
struct s3_object_info {
	uint64_t size;
	time_t mtime;		/* Last-Modified, or x-amz-meta-mtime when present */
	long mtime_nsec;
	char etag[72];		/* without quotes */
	char content_type[96];
	bool has_meta;		/* the x-amz-meta-* values below were present */
	unsigned mode;
	unsigned uid, gid;
};

/* Options for writing an object; NULL pointers mean "not sent". The configured storage
 * class, SSE, tagging, checksum and Content-Encoding are added by the client. */
struct s3_put_opts {
	const char *content_type;	/* NULL: from the key's extension */
	bool set_meta;			/* send x-amz-meta-mode/uid/gid/mtime */
	unsigned mode, uid, gid;
	struct timespec mtime;
	/* multipart only: called once the upload exists (so a crash can abort it later) and once
	 * it is completed or aborted (done = true). May be NULL. */
	void (*mpu_event)(void *ctx, const char *key, const char *upload_id, bool done);
	void *mpu_ctx;
	/* when not NULL: gets the content's SHA-256 in hex (65 bytes) after a single-request PUT,
	 * "" after a multipart one */
	char *sha256_out;
};

struct s3_list_entry {
	char *key;		/* full key (decoded) */
	uint64_t size;
	time_t mtime;
	char etag[72];
};

struct s3_list_page {
	struct s3_list_entry *objects;
	size_t n_objects;
	char **prefixes;	/* common prefixes, full (decoded), ending in the delimiter */
	size_t n_prefixes;
	bool truncated;
	char *next_token;	/* NextContinuationToken when truncated */
};

struct s3_part {
	int number;
	uint64_t size;
	char etag[72];
};

struct s3_upload {
	char *key;
	char *upload_id;
	time_t initiated;
};

/* Create the client for cfg (borrowed for the client's lifetime). Credentials come from
 * creds (borrowed; NULL: the client makes and owns a provider for cfg). -EINVAL on a bad
 * endpoint, -ENOMEM. Caller frees with s3_client_destroy(). */
int s3_client_create(struct s3_client **out, const struct cfg *cfg, struct s3_creds_provider *creds);
void s3_client_destroy(struct s3_client *c);

/* Retries made so far, by cause: why an attempt was tried again (for metrics). */
enum s3_retry_cause { S3_RETRY_THROTTLE, S3_RETRY_SERVER, S3_RETRY_TIMEOUT, S3_RETRY_NETWORK,
		      S3_RETRY_CAUSES };
extern const char *const s3_retry_cause_names[S3_RETRY_CAUSES];	/* "throttle", ... */
/* Copy the counters (thread-safe, never blocks). */
void s3_client_retries(struct s3_client *c, uint64_t out[S3_RETRY_CAUSES]);

/* The region requests are signed for (after any correction). Borrowed until destroy. */
const char *s3_client_region(struct s3_client *c);

/* s3://bucket/key (or the endpoint URL) for messages; caller frees. */
char *s3_client_url(struct s3_client *c, const char *bucket, const char *key);

int s3_head_bucket(struct s3_client *c, const char *bucket, struct s3_error *err);

/* PUT `size` bytes of fd starting at offset 0, streamed (the file is read twice: once to hash,
 * once to send; never held in memory). At or above S3_MULTIPART_THRESHOLD uses a multipart
 * upload with parts sent in parallel; a failed multipart upload is aborted. etag_out (72
 * bytes, may be NULL) receives the new ETag. */
int s3_put_file(struct s3_client *c, const char *bucket, const char *key, int fd, uint64_t size,
		const struct s3_put_opts *opts, char *etag_out, struct s3_error *err);

/* PUT a small object from memory. */
int s3_put_buffer(struct s3_client *c, const char *bucket, const char *key, const void *buf,
		  size_t len, const struct s3_put_opts *opts, char *etag_out, struct s3_error *err);

/* GET bytes [off, off+len) (len 0: to the end) into fd at file offset fd_off; *got receives
 * the bytes written. info (may be NULL) receives the object's metadata. */
int s3_get_to_fd(struct s3_client *c, const char *bucket, const char *key, uint64_t off,
		 uint64_t len, int fd, off_t fd_off, uint64_t *got, struct s3_object_info *info,
		 struct s3_error *err);

/* GET bytes [off, off+len) into buf (len bytes at most); *got receives the count. */
int s3_get_to_buffer(struct s3_client *c, const char *bucket, const char *key, uint64_t off,
		     size_t len, void *buf, size_t *got, struct s3_error *err);

int s3_head_object(struct s3_client *c, const char *bucket, const char *key,
		   struct s3_object_info *info, struct s3_error *err);

/* One page of ListObjectsV2. prefix/delimiter/token may be NULL; max_keys 0 = server default.
 * Caller releases the page with s3_list_page_release(). */
int s3_list_page(struct s3_client *c, const char *bucket, const char *prefix, const char *delimiter,
		 const char *token, int max_keys, struct s3_list_page *page, struct s3_error *err);
void s3_list_page_release(struct s3_list_page *page);

int s3_delete_object(struct s3_client *c, const char *bucket, const char *key, struct s3_error *err);

/* DeleteObjects (up to 1000 keys per request; more are split). Returns -EIO if any key
 * failed to delete; err names the first failure. */
int s3_delete_objects(struct s3_client *c, const char *bucket, const char *const *keys, size_t n,
		      struct s3_error *err);

int s3_copy_object(struct s3_client *c, const char *src_bucket, const char *src_key,
		   const char *bucket, const char *key, struct s3_error *err);

/* Multipart building blocks (s3_put_file uses them; the cache resumes with them).
 * upload_id_out is a heap string the caller frees. */
int s3_mpu_create(struct s3_client *c, const char *bucket, const char *key,
		  const struct s3_put_opts *opts, char **upload_id_out, struct s3_error *err);
int s3_mpu_upload_part(struct s3_client *c, const char *bucket, const char *key,
		       const char *upload_id, int part_number, int fd, uint64_t off, uint64_t len,
		       char *etag_out, struct s3_error *err);
int s3_mpu_complete(struct s3_client *c, const char *bucket, const char *key, const char *upload_id,
		    const struct s3_part *parts, size_t n, char *etag_out, struct s3_error *err);
int s3_mpu_abort(struct s3_client *c, const char *bucket, const char *key, const char *upload_id,
		 struct s3_error *err);
/* All parts of an upload (follows pagination). Caller frees *parts with free(). */
int s3_mpu_list_parts(struct s3_client *c, const char *bucket, const char *key,
		      const char *upload_id, struct s3_part **parts, size_t *n, struct s3_error *err);
/* In-progress uploads under prefix (follows pagination). Release with s3_uploads_free(). */
int s3_mpu_list_uploads(struct s3_client *c, const char *bucket, const char *prefix,
			struct s3_upload **uploads, size_t *n, struct s3_error *err);
void s3_uploads_free(struct s3_upload *uploads, size_t n);

/* The part size for a file of `size` bytes: cfg's part size, doubled until it needs at most
 * 10,000 parts. */
uint64_t s3_part_size_for(uint64_t configured, uint64_t size);

/* Content-Type for a key by its extension ("application/octet-stream" if unknown). Static. */
const char *s3_mime_type(const char *key);

/* Map an HTTP status + S3 code + curl code to -errno (the one place that does it). */
int s3_errno(int http_status, const char *code, int curl_code);

/* A short fix for err, for logs ("check S3_BUCKET_NAME ..."); a static string, never NULL. */
const char *s3_error_hint(const struct s3_error *err);

/* One-line human text for err ("NoSuchBucket: The specified bucket does not exist (HTTP 404)"). */
const char *s3_error_text(const struct s3_error *err, char *buf, size_t size);

#endif
