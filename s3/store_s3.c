/* store_s3.c - the cache's store interface over the real S3 client.
 *
 * Thin adapters from struct store's function pointers to s3_*, no logic of their own.
 */
#include <errno.h>
#include <stdlib.h>

#include "log.h"
#include "store.h"

static int sp_put_file(void *ctx, const char *bucket, const char *key, int fd, uint64_t size,
		       const struct s3_put_opts *opts, char *etag_out, struct s3_error *err)
{
	return s3_put_file(ctx, bucket, key, fd, size, opts, etag_out, err);
}

static int sp_get_to_fd(void *ctx, const char *bucket, const char *key, uint64_t off, uint64_t len,
			int fd, off_t fd_off, uint64_t *got, struct s3_error *err)
{
	return s3_get_to_fd(ctx, bucket, key, off, len, fd, fd_off, got, NULL, err);
}

static int sp_head(void *ctx, const char *bucket, const char *key, struct s3_object_info *info,
		   struct s3_error *err)
{
	return s3_head_object(ctx, bucket, key, info, err);
}

static int sp_list(void *ctx, const char *bucket, const char *prefix, const char *delimiter,
		   const char *token, struct s3_list_page *page, struct s3_error *err)
{
	return s3_list_page(ctx, bucket, prefix, delimiter, token, 0, page, err);
}

static int sp_del(void *ctx, const char *bucket, const char *key, struct s3_error *err)
{
	return s3_delete_object(ctx, bucket, key, err);
}

static int sp_copy(void *ctx, const char *src_bucket, const char *src_key, const char *bucket,
		   const char *key, struct s3_error *err)
{
	return s3_copy_object(ctx, src_bucket, src_key, bucket, key, err);
}

static int sp_abort_upload(void *ctx, const char *bucket, const char *key, const char *upload_id,
			   struct s3_error *err)
{
	return s3_mpu_abort(ctx, bucket, key, upload_id, err);
}

static void sp_destroy(void *ctx)
{
	(void)ctx;
}

int store_s3_create(struct store **out, struct s3_client *c)
{
	struct store *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->ctx = c;
	s->put_file = sp_put_file;
	s->get_to_fd = sp_get_to_fd;
	s->head = sp_head;
	s->list = sp_list;
	s->del = sp_del;
	s->copy = sp_copy;
	s->abort_upload = sp_abort_upload;
	s->destroy = sp_destroy;
	*out = s;
	return 0;
}
