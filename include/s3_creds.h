/* s3_creds.h - the AWS credential chain.
 *
 * Sources, in order: S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY; AWS_ACCESS_KEY_ID/
 * AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN; the shared credentials file
 * (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile AWS_PROFILE); ECS container
 * credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI, with
 * AWS_CONTAINER_AUTHORIZATION_TOKEN); EC2 instance metadata IMDSv2 (PUT a token first, then
 * GET the role and its credentials). The first source that yields credentials is kept for the
 * provider's lifetime; temporary credentials are fetched again from it when fewer than five
 * minutes remain before their Expiration. Thread-safe (a mutex around the cached copy).
 */
#ifndef S3JOBFS_S3_CREDS_H
#define S3JOBFS_S3_CREDS_H

#include <time.h>

struct cfg;
struct s3_creds_provider;

struct s3_creds {
	char access_key_id[128];
	char secret_access_key[128];
	char session_token[4096];	/* "" when none */
	time_t expiration;		/* 0: does not expire */
};

/* Make a provider for cfg (borrowed for the provider's lifetime). Does not fetch anything yet.
 * -ENOMEM. Caller frees with s3_creds_provider_destroy(). */
int s3_creds_provider_create(struct s3_creds_provider **out, const struct cfg *cfg);
void s3_creds_provider_destroy(struct s3_creds_provider *p);

/* Copy current credentials into *out, resolving the chain on first use and refreshing
 * temporary ones that expire within five minutes. Blocks for the HTTP fetches (ECS, IMDS:
 * 2 s connect timeout, 5 s total). Returns 0; -ENOENT when no source has credentials;
 * -EIO/-ETIMEDOUT/-EACCES when the chosen source failed (what failed is logged and kept for
 * s3_creds_last_error()). */
int s3_creds_get(struct s3_creds_provider *p, struct s3_creds *out);

/* Which source the credentials came from, for `s3jobfs check`, e.g. "S3_ACCESS_KEY_ID",
 * "AWS_ACCESS_KEY_ID", "shared credentials file /root/.aws/credentials [default]",
 * "ECS container credentials (http://...)", "EC2 instance metadata (IMDSv2)", or
 * "none" before the first successful s3_creds_get(). Never contains a secret. Borrowed until
 * the next s3_creds_get() or destroy. */
const char *s3_creds_source(struct s3_creds_provider *p);

/* A sentence on why the last s3_creds_get() failed ("" if it did not). Borrowed likewise. */
const char *s3_creds_last_error(struct s3_creds_provider *p);

#endif
