/* check.c - `s3jobfs check`: prove the configuration works, or say what is wrong and how to fix it.
 *
 * Steps, each printed as one `ok`/`FAIL` line (with `cause:` and `fix:` lines on failure):
 * configuration, credentials (which source; never the secret), HeadBucket (followed by a
 * listing to get S3's error document, since HEAD answers carry none), the bucket's region,
 * ListBucket, then a put/get/delete probe object under S3_PREFIX that carries the configured
 * optional features (storage class, SSE, tags, checksum) so a server refusing one is named.
 * Exit 0 only when every step passed.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "cli.h"
#include "log.h"
#include "s3.h"
#include "s3_creds.h"

static const char iam_actions[] =
	"s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload, "
	"s3:ListMultipartUploadParts, s3:ListBucketMultipartUploads";

static void say_ok(const char *what, const char *detail)
{
	printf("ok    %-12s %s\n", what, detail);
}

/* Print a failed step with the cause and the fix, chosen from S3's error code. */
static void say_fail(const struct cfg *cfg, struct s3_client *c, const char *what,
		     const char *action, const struct s3_error *e)
{
	const char *bucket = cfg->bucket ? cfg->bucket : "";
	const char *endpoint = cfg->endpoint ? cfg->endpoint : "the AWS S3 endpoint";
	char text[512];

	printf("FAIL  %-12s %s\n", what, s3_error_text(e, text, sizeof(text)));
	if (e->setting[0]) {
		printf("      cause: the server refused the feature set by %s\n", e->setting);
		printf("      fix:   unset %s (or pick a value this server supports)\n", e->setting);
	} else if (!strcmp(e->code, "SignatureDoesNotMatch")) {
		printf("      cause: the secret key does not match the access key id (or the clock is far off)\n");
		printf("      fix:   check S3_SECRET_ACCESS_KEY in the environment or .env (no quotes or spaces copied in)\n");
	} else if (!strcmp(e->code, "InvalidAccessKeyId")) {
		printf("      cause: S3 does not know this access key id (mistyped, deleted or rotated)\n");
		printf("      fix:   check S3_ACCESS_KEY_ID, or create a new access key for the IAM user\n");
	} else if (!strcmp(e->code, "NoSuchBucket")) {
		printf("      cause: bucket '%s' does not exist at %s\n", bucket, endpoint);
		printf("      fix:   check S3_BUCKET_NAME, or create it: aws s3 mb s3://%s --region %s\n",
		       bucket, cfg->region);
	} else if (!strcmp(e->code, "AccessDenied") || e->http_status == 403) {
		printf("      cause: the credentials are valid but may not %s\n", action);
		printf("      fix:   allow these IAM actions on arn:aws:s3:::%s and arn:aws:s3:::%s/*:\n"
		       "             %s; and check the bucket policy does not deny them\n",
		       bucket, bucket, iam_actions);
	} else if (!strcmp(e->code, "RequestTimeTooSkewed")) {
		printf("      cause: this machine's clock differs from the server's by more than 15 minutes\n");
		printf("      fix:   synchronise the clock (NTP)\n");
	} else if (!strcmp(e->code, "ConnectionRefused")) {
		printf("      cause: nothing accepts connections at %s\n", endpoint);
		printf("      fix:   check S3_ENDPOINT and that the S3 server is running and reachable\n");
	} else if (!strcmp(e->code, "Timeout")) {
		printf("      cause: no answer from %s in time (S3_CONNECT_TIMEOUT=%d s, S3_UPLOAD_TIMEOUT=%d s)\n",
		       endpoint, cfg->connect_timeout, cfg->upload_timeout);
		printf("      fix:   check the network, firewall and proxy between this host and %s\n", endpoint);
	} else if (!strcmp(e->code, "DNSFailure")) {
		printf("      cause: the host name of %s cannot be resolved\n", endpoint);
		printf("      fix:   check S3_ENDPOINT / S3_REGION and DNS\n");
	} else if (!strcmp(e->code, "NoCredentials")) {
		printf("      cause: no credentials were found in any source\n");
		printf("      fix:   set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (or AWS_*), or give the host an IAM role\n");
	} else if (e->http_status == 0 && e->curl_code) {
		printf("      cause: the connection to %s failed\n", endpoint);
		printf("      fix:   check S3_ENDPOINT, TLS (S3_CA_BUNDLE) and the network\n");
	} else {
		printf("      cause: S3 refused to %s\n", action);
		printf("      fix:   see the error above; run with -v for every request\n");
	}
	(void)c;
}

static void check_usage(FILE *f)
{
	fprintf(f, "usage: s3jobfs check [--env-file FILE] [-v]\n\n"
		   "Loads the configuration (environment, then FILE or ./.env), says which credential\n"
		   "source it uses, and checks the bucket: HeadBucket, region, listing, and a put/get/\n"
		   "delete of a probe object under S3_PREFIX. Each failure is printed with its cause\n"
		   "and the fix. Exit status: 0 all works, 1 a check failed, 2 bad configuration.\n\n"
		   "  --env-file FILE   read FILE instead of ./.env\n"
		   "  -v, --verbose     log every request (never secrets)\n"
		   "  --print-config    print the table of configuration variables and exit\n");
}

int cli_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "env-file", required_argument, NULL, 'e' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "print-config", no_argument, NULL, 'p' },
		{ "print-config-markdown", no_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *env_file = NULL;
	struct s3_creds_provider *creds = NULL;
	struct s3_client *c = NULL;
	struct cfg cfg;
	struct s3_creds cr;
	struct s3_error e;
	struct s3_list_page page = { 0 };
	char line[512], *key = NULL, host[64] = "host", etag[72], got[64];
	const char probe[] = "s3jobfs check probe\n";
	size_t n_got = 0;
	int verbose = 0, opt, failed = 0, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'e': env_file = optarg; break;
		case 'v': verbose = 1; break;
		case 'p': cfg_print_table(stdout, false); return 0;
		case 'm': cfg_print_table(stdout, true); return 0;
		case 'h': check_usage(stdout); return 0;
		default: check_usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		check_usage(stderr);
		return 2;
	}
	if (cfg_load(&cfg, env_file, stderr) != 0) {
		printf("FAIL  %-12s see the messages above\n", "config");
		return 2;
	}
	log_init("s3jobfs", verbose ? LOG_DEBUG : LOG_ERR, false);
	if (!cfg.s3_enabled) {
		printf("FAIL  %-12s S3_ENABLED is false: files stay in the local cache only\n", "config");
		printf("      fix:   set S3_ENABLED=true (and S3_BUCKET_NAME and credentials)\n");
		cfg_release(&cfg);
		return 1;
	}
	snprintf(line, sizeof(line), "bucket '%s', region '%s', endpoint %s%s, prefix '%s'%s%s",
		 cfg.bucket, cfg.region, cfg.endpoint ? cfg.endpoint : "AWS",
		 cfg.force_path_style ? " (path-style)" : "", cfg.prefix,
		 cfg.env_file ? ", env file " : "", cfg.env_file ? cfg.env_file : "");
	say_ok("config", line);

	if (s3_creds_provider_create(&creds, &cfg) != 0) {
		failed = 1;
		goto out;
	}
	rc = s3_creds_get(creds, &cr);
	if (rc) {
		printf("FAIL  %-12s %s\n", "credentials", s3_creds_last_error(creds));
		printf("      fix:   set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID/"
		       "AWS_SECRET_ACCESS_KEY, a shared credentials file, or an IAM role)\n");
		failed = 1;
		goto out;
	}
	snprintf(line, sizeof(line), "from %s (access key id %.4s...)%s", s3_creds_source(creds),
		 cr.access_key_id, cr.expiration ? ", temporary" : "");
	explicit_bzero(&cr, sizeof(cr));
	say_ok("credentials", line);

	rc = s3_client_create(&c, &cfg, creds);
	if (rc) {
		printf("FAIL  %-12s cannot create the S3 client: %s\n", "client", strerror(-rc));
		failed = 1;
		goto out;
	}
	/* HeadBucket; a HEAD error has no body, so ask again with a GET for S3's error code */
	rc = s3_head_bucket(c, NULL, &e);
	if (rc && e.http_status) {
		struct s3_error e2;

		if (s3_list_page(c, NULL, cfg.prefix, "/", NULL, 1, &page, &e2) != 0 && e2.http_status)
			e = e2;
		s3_list_page_release(&page);
	}
	if (rc) {
		say_fail(&cfg, c, "bucket", "read the bucket (HeadBucket)", &e);
		failed = 1;
		goto out;
	}
	say_ok("bucket", "HeadBucket answered");
	if (strcmp(s3_client_region(c), cfg.region) != 0) {
		printf("FAIL  %-12s bucket '%s' is in region '%s', not S3_REGION='%s'\n", "region",
		       cfg.bucket, s3_client_region(c), cfg.region);
		printf("      fix:   set S3_REGION=%s\n", s3_client_region(c));
		failed = 1;
	} else {
		snprintf(line, sizeof(line), "requests signed for '%s' are accepted", cfg.region);
		say_ok("region", line);
	}
	rc = s3_list_page(c, NULL, cfg.prefix, "/", NULL, 1, &page, &e);
	s3_list_page_release(&page);
	if (rc) {
		say_fail(&cfg, c, "list", "list the bucket (s3:ListBucket)", &e);
		failed = 1;
	} else {
		say_ok("list", "ListObjectsV2 under the prefix works");
	}

	gethostname(host, sizeof(host) - 1);
	if (asprintf(&key, "%s.s3jobfs-check-%s-%ld-%ld", cfg.prefix, host, (long)getpid(),
		     (long)time(NULL)) < 0) {
		failed = 1;
		goto out;
	}
	rc = s3_put_buffer(c, NULL, key, probe, sizeof(probe) - 1, NULL, etag, &e);
	if (rc) {
		say_fail(&cfg, c, "put", "write objects (s3:PutObject)", &e);
		failed = 1;
		goto out;
	}
	snprintf(line, sizeof(line), "wrote s3://%s/%s", cfg.bucket, key);
	say_ok("put", line);
	rc = s3_get_to_buffer(c, NULL, key, 0, sizeof(got), got, &n_got, &e);
	if (rc) {
		say_fail(&cfg, c, "get", "read objects (s3:GetObject)", &e);
		failed = 1;
	} else if (n_got != sizeof(probe) - 1 || memcmp(got, probe, n_got) != 0) {
		printf("FAIL  %-12s read back %zu bytes that differ from the %zu written\n", "get",
		       n_got, sizeof(probe) - 1);
		failed = 1;
	} else {
		say_ok("get", "read the probe back, same bytes");
	}
	rc = s3_delete_object(c, NULL, key, &e);
	if (rc) {
		say_fail(&cfg, c, "delete", "delete objects (s3:DeleteObject)", &e);
		failed = 1;
	} else {
		say_ok("delete", "removed the probe");
	}
out:
	printf("%s\n", failed ? "s3jobfs check: FAILED" : "s3jobfs check: all checks passed");
	free(key);
	s3_client_destroy(c);
	s3_creds_provider_destroy(creds);
	cfg_release(&cfg);
	return failed ? 1 : 0;
}
