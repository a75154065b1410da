/* cfg.h - the one configuration struct, filled once at start-up and read-only afterwards.
 *
 * Sources, strongest first: the process environment, then a `.env` file (KEY=VALUE lines,
 * `export` prefix, # comments, single or double quotes). Every variable is described by one
 * row of a table in common/cfg.c (name, type, default, range, help), which also prints the
 * help text and the README's configuration table. Invalid values are refused with a message
 * naming the variable. Modules receive `const struct cfg *`.
 */
#ifndef S3JOBFS_CFG_H
#define S3JOBFS_CFG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct cfg {
	/* the scraper's variables (see the scraper's S3 guide) */
	bool s3_enabled;
	char *bucket;
	char *region;
	char *access_key_id;		/* S3_ACCESS_KEY_ID; secret: never logged */
	char *secret_access_key;
	bool upload_on_completion;
	char *prefix;			/* normalised: no leading '/', ends in '/' unless empty */
	int upload_timeout;		/* seconds, per object */
	int max_retries;

	/* S3 endpoint and request options */
	char *endpoint;			/* S3_ENDPOINT, e.g. http://127.0.0.1:4568; NULL = AWS */
	bool force_path_style;
	char *ca_bundle;
	int connect_timeout;		/* seconds */
	uint64_t multipart_threshold;
	uint64_t part_size;
	char *storage_class;
	char *sse;			/* "AES256" or "aws:kms" */
	char *sse_kms_key_id;
	char *tagging;			/* "k=v&k2=v2" */
	char *checksum;			/* "none", "md5", "sha256" */
	char *content_encoding;

	/* the AWS credential chain (standard AWS names) */
	char *aws_access_key_id;
	char *aws_secret_access_key;
	char *aws_session_token;
	char *aws_shared_credentials_file;
	char *aws_profile;
	char *aws_container_relative_uri;
	char *aws_container_full_uri;
	char *aws_container_auth_token;
	char *aws_imds_endpoint;	/* AWS_EC2_METADATA_SERVICE_ENDPOINT */
	bool aws_imds_disabled;		/* AWS_EC2_METADATA_DISABLED */
	char *ecs_base;			/* S3JOBFS_TEST_ECS_BASE: tests only */

	/* daemon */
	char *cache_dir;
	int upload_concurrency;
	int idle_complete_seconds;
	int settle_ms;
	int drain_timeout;
	uint64_t cache_max_size;	/* 0 = 90% of the cache filesystem */
	char *log_level;

	/* PostgreSQL */
	char *database_url;
	char *jobs_table;
	int pg_poll_seconds;
	char *terminal_statuses;

	char *env_file;			/* the .env file actually read, or NULL */
};

/* Fill *c from the environment and env_file (NULL: "./.env" if it exists; a named file that
 * does not exist is an error). On error returns -EINVAL (or -errno of reading the file) and
 * writes one message per problem to `err`, naming the variable. Does not block beyond reading
 * the file. c is released on error. */
int cfg_load(struct cfg *c, const char *env_file, FILE *err);

/* Free every string of c. */
void cfg_release(struct cfg *c);

/* Parse one .env file's text into callback calls (exposed for the unit tests and fuzzers).
 * Returns 0, or -EINVAL with the 1-based line number in *bad_line. */
typedef int (*cfg_kv_fn)(void *ctx, const char *key, const char *value);
int cfg_parse_env_text(const char *text, size_t len, cfg_kv_fn fn, void *ctx, int *bad_line);

/* Parse a size like "25MiB", "8M", "1048576", "1g" into bytes. 0 or -EINVAL. */
int cfg_parse_size(const char *s, uint64_t *out);

/* Print the variables table: markdown (for the README) when markdown, else aligned text. */
void cfg_print_table(FILE *f, bool markdown);

#endif
