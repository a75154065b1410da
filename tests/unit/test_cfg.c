/* test_cfg.c - configuration: .env parsing, defaults, validation messages naming the variable. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "cfg.h"
#include "harness.h"

struct kv_list {
	char keys[16][64];
	char vals[16][256];
	int n;
};

static int collect(void *ctx, const char *key, const char *value)
{
	struct kv_list *l = ctx;

	if (l->n == 16)
		return -E2BIG;
	snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s", key);
	snprintf(l->vals[l->n], sizeof(l->vals[0]), "%s", value);
	l->n++;
	return 0;
}

static void test_env_syntax(void)
{
	static const char text[] =
		"# AWS S3 CONFIGURATION\n"
		"\n"
		"S3_ENABLED=true\n"
		"export S3_BUCKET_NAME=my-bucket\n"
		"S3_REGION = \"ap-southeast-2\"\n"
		"S3_PREFIX='scraper outputs/'   # trailing comment\n"
		"S3_UPLOAD_TIMEOUT=300                      # Upload timeout (seconds)\n"
		"S3_SECRET_ACCESS_KEY=abc#def\n"
		"EMPTY=\n"
		"QUOTED=\"a \\\"q\\\" b\\nline\"\r\n"
		"   INDENTED=1\n"
		"MULTI=\"first\nsecond\"\n"
		"LAST=no-newline";
	struct kv_list l = { .n = 0 };
	int bad = 0;

	T_EQ_INT(cfg_parse_env_text(text, sizeof(text) - 1, collect, &l, &bad), 0);
	T_EQ_INT(l.n, 11);
	T_EQ_STR(l.keys[0], "S3_ENABLED");
	T_EQ_STR(l.vals[0], "true");
	T_EQ_STR(l.keys[1], "S3_BUCKET_NAME");
	T_EQ_STR(l.vals[1], "my-bucket");
	T_EQ_STR(l.vals[2], "ap-southeast-2");
	T_EQ_STR(l.vals[3], "scraper outputs/");
	T_EQ_STR(l.vals[4], "300");
	T_EQ_STR(l.vals[5], "abc#def");		/* '#' inside a word is not a comment */
	T_EQ_STR(l.vals[6], "");
	T_EQ_STR(l.vals[7], "a \"q\" b\nline");
	T_EQ_STR(l.keys[8], "INDENTED");
	T_EQ_STR(l.vals[9], "first\nsecond");
	T_EQ_STR(l.keys[10], "LAST");
	T_EQ_STR(l.vals[10], "no-newline");
}

static void test_env_errors(void)
{
	static const char *const bad_texts[] = {
		"S3_ENABLED\n",			/* no '=' */
		"=value\n",			/* no key */
		"A=1\nB=\"unterminated\n",	/* open quote */
		"A=1\n2KEY=x\n",		/* key starting with a digit */
		"A='x' junk\n",			/* text after the closing quote */
	};
	static const int lines[] = { 1, 1, 2, 2, 1 };

	for (size_t i = 0; i < sizeof(bad_texts) / sizeof(bad_texts[0]); i++) {
		struct kv_list l = { .n = 0 };
		int bad = 0;

		T_EQ_INT(cfg_parse_env_text(bad_texts[i], strlen(bad_texts[i]), collect, &l, &bad), -EINVAL);
		T_EQ_INT(bad, lines[i]);
	}
}

static void test_sizes(void)
{
	static const struct { const char *s; uint64_t v; int rc; } t[] = {
		{ "0", 0, 0 }, { "1048576", 1048576, 0 }, { "8MiB", 8ULL << 20, 0 },
		{ "8M", 8ULL << 20, 0 }, { "25mib", 25ULL << 20, 0 }, { "1g", 1ULL << 30, 0 },
		{ "2GB", 2ULL << 30, 0 }, { "3k", 3072, 0 }, { "12b", 12, 0 },
		{ "", 0, -EINVAL }, { "abc", 0, -EINVAL }, { "-5", 0, -EINVAL },
		{ "5x", 0, -EINVAL }, { "5Mx", 0, -EINVAL }, { "99999999999999999999", 0, -EINVAL },
		{ "99999999999T", 0, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint64_t v = 0;
		int rc = cfg_parse_size(t[i].s, &v);

		if (rc != t[i].rc || (rc == 0 && v != t[i].v))
			T_FAILF("cfg_parse_size(\"%s\") = %d, %" PRIu64, t[i].s, rc, v);
	}
}

/* Run cfg_load with a clean environment plus `env`, capturing the error text. */
static int load_with(const char *const *env, const char *file_text, struct cfg *c, char *errbuf,
		     size_t errsize)
{
	static const char *const names[] = {
		"S3_ENABLED", "S3_BUCKET_NAME", "S3_REGION", "S3_ACCESS_KEY_ID",
		"S3_SECRET_ACCESS_KEY", "S3_UPLOAD_ON_COMPLETION", "S3_PREFIX", "S3_UPLOAD_TIMEOUT",
		"S3_MAX_RETRIES", "S3_ENDPOINT", "S3_MULTIPART_THRESHOLD", "S3_SSE",
		"S3JOBFS_UPLOAD_CONCURRENCY", "S3_FORCE_PATH_STYLE", "S3_STORAGE_CLASS",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "S3JOBFS_TEST_ECS_BASE", "S3_TAGGING",
		"S3JOBFS_JOBS_TABLE", "DATABASE_URL", "AWS_SESSION_TOKEN", "S3_SECRET_ACCESS_KEY",
	};
	char path[] = "/tmp/s3jobfs-test-env-XXXXXX";
	FILE *err = fmemopen(errbuf, errsize, "w");
	int rc, fd = -1;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unsetenv(names[i]);
	for (size_t i = 0; env && env[i]; i += 2)
		setenv(env[i], env[i + 1], 1);
	if (file_text) {
		fd = mkstemp(path);
		if (fd < 0 || write(fd, file_text, strlen(file_text)) < 0)
			T_FAILF("cannot write a temp env file");
		close(fd);
	}
	rc = cfg_load(c, file_text ? path : "/dev/null", err);
	fclose(err);
	if (file_text)
		unlink(path);
	return rc;
}

static void test_defaults(void)
{
	struct cfg c;
	char err[1024] = "";

	T_EQ_INT(load_with(NULL, NULL, &c, err, sizeof(err)), 0);
	T_CHECK(!c.s3_enabled);
	T_EQ_STR(c.region, "ap-southeast-2");
	T_EQ_STR(c.prefix, "scraper-outputs/");
	T_CHECK(c.upload_on_completion);
	T_EQ_INT(c.upload_timeout, 300);
	T_EQ_INT(c.max_retries, 3);
	T_EQ_INT(c.multipart_threshold, 25ULL << 20);
	T_EQ_INT(c.part_size, 8ULL << 20);
	T_EQ_INT(c.upload_concurrency, 16);
	T_CHECK(c.bucket == NULL);
	T_CHECK(c.sse == NULL);
	cfg_release(&c);
}

static void test_env_wins_over_file(void)
{
	static const char *const env[] = { "S3_BUCKET_NAME", "from-env", NULL };
	struct cfg c;
	char err[1024] = "";

	T_EQ_INT(load_with(env, "S3_ENABLED=true\nS3_BUCKET_NAME=from-file\nS3_PREFIX=/a/b\n"
			   "S3_ENDPOINT=http://127.0.0.1:9000/\nS3_MULTIPART_THRESHOLD=5MiB\n",
			   &c, err, sizeof(err)), 0);
	T_CHECK(c.s3_enabled);
	T_EQ_STR(c.bucket, "from-env");
	T_EQ_STR(c.prefix, "a/b/");			/* normalised */
	T_EQ_STR(c.endpoint, "http://127.0.0.1:9000");	/* trailing slash dropped */
	T_EQ_INT(c.multipart_threshold, 5ULL << 20);
	cfg_release(&c);
}

static void test_invalid_values_named(void)
{
	static const struct { const char *name, *value; } bad[] = {
		{ "S3_ENABLED", "maybe" },
		{ "S3_UPLOAD_TIMEOUT", "0" },
		{ "S3_UPLOAD_TIMEOUT", "5m" },
		{ "S3_MAX_RETRIES", "-1" },
		{ "S3_MAX_RETRIES", "abc" },
		{ "S3_MULTIPART_THRESHOLD", "1MiB" },
		{ "S3_SSE", "rot13" },
		{ "S3_REGION", "Sydney Region" },
		{ "S3_ENDPOINT", "ftp://x" },
		{ "S3_BUCKET_NAME", "Bad_Bucket!" },
		{ "S3JOBFS_UPLOAD_CONCURRENCY", "0" },
		{ "S3_FORCE_PATH_STYLE", "2" },
		{ "S3_STORAGE_CLASS", "STANDARD\r\nX-Injected: 1" },	/* would be a header */
		{ "S3_PREFIX", "jobs\n" },
		{ "AWS_EC2_METADATA_SERVICE_ENDPOINT", "169.254.169.254" },
		{ "AWS_CONTAINER_CREDENTIALS_FULL_URI", "file:///etc/passwd" },
		{ "S3JOBFS_TEST_ECS_BASE", "http://" },
		{ "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "v2/credentials" },
		{ "S3_TAGGING", "a b=c" },
		{ "S3_TAGGING", "=v" },
		{ "S3_TAGGING", "a=1&&b=2" },
		{ "S3_TAGGING", "a=1&" },
		{ "S3JOBFS_JOBS_TABLE", "a.b.c" },
		{ "S3JOBFS_JOBS_TABLE", "public." },
		{ "DATABASE_URL", "postgresql://u:pw@h/db?no_such_option=1" },
		{ "DATABASE_URL", "nonsense" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *env[] = { bad[i].name, bad[i].value, NULL };
		struct cfg c;
		char err[1024] = "";

		T_EQ_INT(load_with(env, NULL, &c, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].name))
			T_FAILF("%s='%s': message does not name it: %s", bad[i].name, bad[i].value, err);
	}
}

/* Values that are fine, next to the ones refused above. */
static void test_valid_values(void)
{
	static const char *const env[] = {
		"S3_TAGGING", "team=data&env=prod%20eu&flag",
		"S3JOBFS_JOBS_TABLE", "scraper.jobs",
		"DATABASE_URL", "host=/tmp dbname=x",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT", "https://[fd00:ec2::254]",
		NULL,
	};
	struct cfg c;
	char err[1024] = "";

	T_EQ_INT(load_with(env, NULL, &c, err, sizeof(err)), 0);
	T_EQ_STR(err, "");
	cfg_release(&c);
}

/* A secret's bad value is never echoed (AWS_SESSION_TOKEN, DATABASE_URL's password). */
static void test_invalid_secret_not_echoed(void)
{
	static const char *const bad[][2] = {
		{ "AWS_SESSION_TOKEN", "tok\nSekrit-tok-1" },
		{ "S3_SECRET_ACCESS_KEY", "key\tSekrit-key-2" },
		{ "DATABASE_URL", "postgresql://u:Sekrit-pw-3@h/db?no_such_option=1" },
		{ "DATABASE_URL", "postgresql://u:Sekrit%zz-pw-4@h/db" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *env[] = { bad[i][0], bad[i][1], NULL };
		struct cfg c;
		char err[1024] = "";

		T_EQ_INT(load_with(env, NULL, &c, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i][0]))
			T_FAILF("%s: message does not name it: %s", bad[i][0], err);
		if (strstr(err, "Sekrit"))
			T_FAILF("%s: message shows the secret: %s", bad[i][0], err);
	}
}

static void test_enabled_needs_bucket(void)
{
	static const char *const env[] = { "S3_ENABLED", "true", NULL };
	struct cfg c;
	char err[1024] = "";

	T_EQ_INT(load_with(env, NULL, &c, err, sizeof(err)), -EINVAL);
	T_CHECK(strstr(err, "S3_BUCKET_NAME") != NULL);
}

static void test_missing_env_file(void)
{
	struct cfg c;
	char err[1024] = "";
	FILE *f = fmemopen(err, sizeof(err), "w");

	T_EQ_INT(cfg_load(&c, "/nonexistent/.env", f), -ENOENT);
	fclose(f);
	T_CHECK(strstr(err, "/nonexistent/.env") != NULL);
}

static void test_bad_env_file_line(void)
{
	struct cfg c;
	char err[1024] = "";

	T_EQ_INT(load_with(NULL, "S3_ENABLED=true\nthis is not a setting\n", &c, err, sizeof(err)), -EINVAL);
	T_CHECK(strstr(err, ":2:") != NULL);
}

static const struct t_case cases[] = {
	{ "env_syntax", test_env_syntax },
	{ "env_errors", test_env_errors },
	{ "sizes", test_sizes },
	{ "defaults", test_defaults },
	{ "env_wins_over_file", test_env_wins_over_file },
	{ "invalid_values_named", test_invalid_values_named },
	{ "valid_values", test_valid_values },
	{ "invalid_secret_not_echoed", test_invalid_secret_not_echoed },
	{ "enabled_needs_bucket", test_enabled_needs_bucket },
	{ "missing_env_file", test_missing_env_file },
	{ "bad_env_file_line", test_bad_env_file_line },
};

T_MAIN(cases)
