/* store.h - what the cache needs from an object store: a small table of function pointers.
 *
 * The cache never calls s3_* directly: it goes through a struct store, so tests and fault
 * injection can slide a failing or slow store underneath (s3backer's struct s3backer_store),
 * and the benchmarks can measure the filesystem against a sink that costs nothing.
 * store_s3_create() wraps the real S3 client. Every operation may block; all are thread-safe.
 * Return 0 or -errno; `err` (may be NULL) receives S3's code and message (see s3.h).
 * `bucket` NULL means the configured bucket.
 */
#ifndef S3JOBFS_STORE_H
#define S3JOBFS_STORE_H

#include <stdint.h>
#include <sys/types.h>

#include "s3.h"

struct store {
	void *ctx;
	/* upload `size` bytes of fd (from offset 0) as one object */
	int (*put_file)(void *ctx, const char *bucket, const char *key, int fd, uint64_t size,
			const struct s3_put_opts *opts, char *etag_out, struct s3_error *err);
	/* read [off, off+len) of an object into fd at fd_off (len 0: to the end); *got bytes */
	int (*get_to_fd)(void *ctx, const char *bucket, const char *key, uint64_t off, uint64_t len,
			 int fd, off_t fd_off, uint64_t *got, struct s3_error *err);
	int (*head)(void *ctx, const char *bucket, const char *key, struct s3_object_info *info,
		    struct s3_error *err);
	int (*list)(void *ctx, const char *bucket, const char *prefix, const char *delimiter,
		    const char *token, struct s3_list_page *page, struct s3_error *err);
	int (*del)(void *ctx, const char *bucket, const char *key, struct s3_error *err);
	int (*copy)(void *ctx, const char *src_bucket, const char *src_key, const char *bucket,
		    const char *key, struct s3_error *err);
	/* abort one multipart upload left open by a crash (-EOPNOTSUPP: the server cannot) */
	int (*abort_upload)(void *ctx, const char *bucket, const char *key, const char *upload_id,
			    struct s3_error *err);
	void (*destroy)(void *ctx);
};

/* A store over the S3 client c (borrowed; outlives the store). Caller frees with
 * store->destroy(store->ctx) then free(store). -ENOMEM. */
int store_s3_create(struct store **out, struct s3_client *c);

#endif
