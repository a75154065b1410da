/* cfg.c - configuration from the environment and a .env file, described by one table.
 *
 * Each variable is a row of `vars[]`: its name, type, where it lands in struct cfg, the default
 * (as text, parsed by the same code as user input so defaults are checked too), the allowed
 * range or choices, and one line of help. Loading walks the table once: environment value if
 * set, else .env value, else default; every bad value is reported, not just the first. No string
 * may hold control characters (they would end up in HTTP headers, URLs or log lines); URLs must
 * be http(s). Messages echo a value only for variables that are never secret (DATABASE_URL's
 * is not echoed: it may hold a password).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cfg.h"

enum var_type { V_BOOL, V_INT, V_SIZE, V_STR, V_ENUM };

/* struct var.flags */
#define VF_URL		1u	/* http:// or https:// */

struct var {
	const char *name;
	enum var_type type;
	size_t off;
	const char *def;	/* NULL: unset */
	long long min, max;	/* V_INT, V_SIZE */
	const char *choices;	/* V_ENUM: "a|b|c" */
	const char *help;
	unsigned flags;		/* VF_* */
};

#define F(field) offsetof(struct cfg, field)
#define MiB (1024LL * 1024)

static const struct var vars[] = {
	{ "S3_ENABLED", V_BOOL, F(s3_enabled), "false", 0, 0, NULL,
	  "upload to S3 at all; false keeps every file in the local cache only", 0 },
	{ "S3_BUCKET_NAME", V_STR, F(bucket), NULL, 0, 0, NULL,
	  "bucket to upload to (required when S3_ENABLED=true)", 0 },
	{ "S3_REGION", V_STR, F(region), "ap-southeast-2", 0, 0, NULL,
	  "the bucket's AWS region (signing and the regional endpoint)", 0 },
	{ "S3_ACCESS_KEY_ID", V_STR, F(access_key_id), NULL, 0, 0, NULL,
	  "access key; first in the credential chain", 0 },
	{ "S3_SECRET_ACCESS_KEY", V_STR, F(secret_access_key), NULL, 0, 0, NULL,
	  "secret key paired with S3_ACCESS_KEY_ID (never logged)", 0 },
	{ "S3_UPLOAD_ON_COMPLETION", V_BOOL, F(upload_on_completion), "true", 0, 0, NULL,
	  "true: a job's files wait until the job completes; false: each file uploads on close", 0 },
	{ "S3_PREFIX", V_STR, F(prefix), "scraper-outputs/", 0, 0, NULL,
	  "key prefix; object key = prefix + job folder + relative path", 0 },
	{ "S3_UPLOAD_TIMEOUT", V_INT, F(upload_timeout), "300", 1, 86400, NULL,
	  "seconds one object's upload may take, retries included", 0 },
	{ "S3_MAX_RETRIES", V_INT, F(max_retries), "3", 0, 100, NULL,
	  "retries of a failed request (5xx, throttling, timeouts, resets); never other 4xx", 0 },
	{ "S3_ENDPOINT", V_STR, F(endpoint), NULL, 0, 0, NULL,
	  "S3-compatible endpoint URL (http://host:port); unset: AWS regional endpoint", VF_URL },
	{ "S3_FORCE_PATH_STYLE", V_BOOL, F(force_path_style), "false", 0, 0, NULL,
	  "path-style URLs (endpoint/bucket/key) instead of virtual-hosted (bucket.endpoint/key)", 0 },
	{ "S3_CA_BUNDLE", V_STR, F(ca_bundle), NULL, 0, 0, NULL,
	  "CA certificate bundle for TLS verification (default: the system's)", 0 },
	{ "S3_CONNECT_TIMEOUT", V_INT, F(connect_timeout), "10", 1, 600, NULL,
	  "seconds to wait for a TCP/TLS connection", 0 },
	{ "S3_MULTIPART_THRESHOLD", V_SIZE, F(multipart_threshold), "25MiB", 5 * MiB, 5LL * 1024 * 1024 * MiB, NULL,
	  "files this size or larger use multipart upload", 0 },
	{ "S3_MULTIPART_PART_SIZE", V_SIZE, F(part_size), "8MiB", 5 * MiB, 5LL * 1024 * MiB, NULL,
	  "multipart part size (grown automatically to stay under 10,000 parts)", 0 },
	{ "S3_STORAGE_CLASS", V_STR, F(storage_class), NULL, 0, 0, NULL,
	  "x-amz-storage-class for new objects (e.g. STANDARD_IA); unset: not sent", 0 },
	{ "S3_SSE", V_ENUM, F(sse), NULL, 0, 0, "AES256|aws:kms",
	  "server-side encryption; unset: not sent", 0 },
	{ "S3_SSE_KMS_KEY_ID", V_STR, F(sse_kms_key_id), NULL, 0, 0, NULL,
	  "KMS key id with S3_SSE=aws:kms", 0 },
	{ "S3_TAGGING", V_STR, F(tagging), NULL, 0, 0, NULL,
	  "object tags as k=v&k2=v2 (x-amz-tagging); unset: not sent", 0 },
	{ "S3_CHECKSUM", V_ENUM, F(checksum), "none", 0, 0, "none|md5|sha256",
	  "payload checksum header: Content-MD5 or x-amz-checksum-sha256", 0 },
	{ "S3_CONTENT_ENCODING", V_STR, F(content_encoding), NULL, 0, 0, NULL,
	  "Content-Encoding sent with every object; unset: not sent", 0 },
	{ "AWS_ACCESS_KEY_ID", V_STR, F(aws_access_key_id), NULL, 0, 0, NULL,
	  "credential chain, second: standard AWS variables", 0 },
	{ "AWS_SECRET_ACCESS_KEY", V_STR, F(aws_secret_access_key), NULL, 0, 0, NULL,
	  "secret for AWS_ACCESS_KEY_ID", 0 },
	{ "AWS_SESSION_TOKEN", V_STR, F(aws_session_token), NULL, 0, 0, NULL,
	  "session token for temporary credentials", 0 },
	{ "AWS_SHARED_CREDENTIALS_FILE", V_STR, F(aws_shared_credentials_file), NULL, 0, 0, NULL,
	  "credential chain, third: shared credentials file (default ~/.aws/credentials)", 0 },
	{ "AWS_PROFILE", V_STR, F(aws_profile), "default", 0, 0, NULL,
	  "profile in the shared credentials file", 0 },
	{ "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", V_STR, F(aws_container_relative_uri), NULL, 0, 0, NULL,
	  "credential chain, fourth: ECS task role (path on 169.254.170.2)", 0 },
	{ "AWS_CONTAINER_CREDENTIALS_FULL_URI", V_STR, F(aws_container_full_uri), NULL, 0, 0, NULL,
	  "ECS/container credentials at a full URL", VF_URL },
	{ "AWS_CONTAINER_AUTHORIZATION_TOKEN", V_STR, F(aws_container_auth_token), NULL, 0, 0, NULL,
	  "Authorization header for the container credentials URL", 0 },
	{ "AWS_EC2_METADATA_SERVICE_ENDPOINT", V_STR, F(aws_imds_endpoint), "http://169.254.169.254", 0, 0, NULL,
	  "credential chain, last: EC2 instance metadata (IMDSv2)", VF_URL },
	{ "AWS_EC2_METADATA_DISABLED", V_BOOL, F(aws_imds_disabled), "false", 0, 0, NULL,
	  "never ask the EC2 instance metadata service", 0 },
	{ "S3JOBFS_TEST_ECS_BASE", V_STR, F(ecs_base), "http://169.254.170.2", 0, 0, NULL,
	  "tests only: base URL for AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", VF_URL },
	{ "S3JOBFS_CACHE_DIR", V_STR, F(cache_dir), "/var/cache/s3jobfs", 0, 0, NULL,
	  "write-back cache directory (mode 0700); --cache-dir overrides", 0 },
	{ "S3JOBFS_UPLOAD_CONCURRENCY", V_INT, F(upload_concurrency), "16", 1, 256, NULL,
	  "parallel upload workers", 0 },
	{ "S3JOBFS_IDLE_COMPLETE_SECONDS", V_INT, F(idle_complete_seconds), "0", 0, 86400 * 7, NULL,
	  "a job with no writes for this long counts as complete (0: off)", 0 },
	{ "S3JOBFS_SETTLE_MS", V_INT, F(settle_ms), "500", 0, 600000, NULL,
	  "delay after the last close before a file is queued (upload-on-close mode)", 0 },
	{ "S3JOBFS_DRAIN_TIMEOUT", V_INT, F(drain_timeout), "20", 0, 86400, NULL,
	  "seconds SIGTERM/umount waits for queued uploads before unmounting", 0 },
	{ "S3JOBFS_CACHE_MAX_SIZE", V_SIZE, F(cache_max_size), "0", 0, LLONG_MAX, NULL,
	  "evict clean files above this size (0: 90% of the cache filesystem)", 0 },
	{ "S3JOBFS_LOG_LEVEL", V_ENUM, F(log_level), "info", 0, 0, "error|warning|notice|info|debug",
	  "log threshold (-v sets debug)", 0 },
	{ "DATABASE_URL", V_STR, F(database_url), NULL, 0, 0, NULL,
	  "PostgreSQL URI or conninfo for job status; unset: no database", 0 },
	{ "S3JOBFS_JOBS_TABLE", V_STR, F(jobs_table), "jobs", 0, 0, NULL,
	  "the scraper's jobs table (never created or altered by s3jobfs)", 0 },
	{ "S3JOBFS_PG_POLL_SECONDS", V_INT, F(pg_poll_seconds), "2", 1, 3600, NULL,
	  "how often to poll the jobs table for completed jobs", 0 },
	{ "S3JOBFS_TERMINAL_STATUSES", V_STR, F(terminal_statuses), "completed,failed,cancelled", 0, 0, NULL,
	  "jobs.status values that mean the job is complete", 0 },
};

#define N_VARS (sizeof(vars) / sizeof(vars[0]))

/* Values read from the .env file, by table index. */
struct env_vals {
	char *v[N_VARS];
	FILE *err;
	const char *file;
};

static int find_var(const char *name)
{
	for (size_t i = 0; i < N_VARS; i++)
		if (strcmp(vars[i].name, name) == 0)
			return (int)i;
	return -1;
}

int cfg_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long n;
	uint64_t mult = 1;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	while (*end == ' ')
		end++;
	switch (tolower((unsigned char)*end)) {
	case '\0': break;
	case 'k': mult = 1024ULL; end++; break;
	case 'm': mult = 1024ULL * 1024; end++; break;
	case 'g': mult = 1024ULL * 1024 * 1024; end++; break;
	case 't': mult = 1024ULL * 1024 * 1024 * 1024; end++; break;
	case 'b': end++; if (*end) return -EINVAL; break;
	default: return -EINVAL;
	}
	if (mult > 1) {
		if (strcasecmp(end, "") && strcasecmp(end, "b") && strcasecmp(end, "ib") &&
		    strcasecmp(end, "iB"))
			return -EINVAL;
		if (n > UINT64_MAX / mult)
			return -EINVAL;
	}
	*out = (uint64_t)n * mult;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static bool enum_ok(const char *choices, const char *s)
{
	size_t len = strlen(s);

	for (const char *p = choices; *p;) {
		const char *bar = strchr(p, '|');
		size_t n = bar ? (size_t)(bar - p) : strlen(p);

		if (n == len && strncmp(p, s, n) == 0)
			return true;
		p += n + (bar ? 1 : 0);
	}
	return false;
}

/* Set one variable from text; on a bad value write a message naming it and return -EINVAL. */
static int set_var(struct cfg *c, const struct var *v, const char *s, const char *from, FILE *err)
{
	char *base = (char *)c + v->off;

	switch (v->type) {
	case V_BOOL:
		if (parse_bool(s, (bool *)base) == 0)
			return 0;
		fprintf(err, "s3jobfs: invalid %s='%s'%s: expected true or false\n", v->name, s, from);
		return -EINVAL;
	case V_INT: {
		char *end;
		long long n;

		errno = 0;
		n = strtoll(s, &end, 10);
		if (errno == 0 && end != s && *end == '\0' && n >= v->min && n <= v->max) {
			*(int *)base = (int)n;
			return 0;
		}
		fprintf(err, "s3jobfs: invalid %s='%s'%s: expected a whole number from %lld to %lld\n",
			v->name, s, from, v->min, v->max);
		return -EINVAL;
	}
	case V_SIZE: {
		uint64_t n;

		if (cfg_parse_size(s, &n) == 0 && n >= (uint64_t)v->min && n <= (uint64_t)v->max) {
			*(uint64_t *)base = n;
			return 0;
		}
		fprintf(err, "s3jobfs: invalid %s='%s'%s: expected a size (e.g. 8MiB) from %lld to %lld bytes\n",
			v->name, s, from, v->min, v->max);
		return -EINVAL;
	}
	case V_ENUM:
		if (!enum_ok(v->choices, s)) {
			fprintf(err, "s3jobfs: invalid %s='%s'%s: expected one of %s\n",
				v->name, s, from, v->choices);
			return -EINVAL;
		}
		/* fall through */
	case V_STR: {
		char **sp = (char **)base;
		char *dup;

		for (const char *p = s; *p; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				fprintf(err, "s3jobfs: invalid %s%s: control character 0x%02x at byte %zu "
					"(newlines, tabs and the like are not allowed)\n",
					v->name, from, (unsigned)(unsigned char)*p, (size_t)(p - s));
				return -EINVAL;
			}
		}
		dup = strdup(s);
		if (!dup)
			return -ENOMEM;
		free(*sp);
		*sp = dup;
		return 0;
	}
	}
	return -EINVAL;
}

/* Unquote a .env value in place-copy: "..." with \n \t \" \\ escapes, '...' literal, or bare
 * text up to an unquoted " #" comment, trimmed. Returns a heap string or NULL on error. */
static char *env_unquote(const char *s, size_t len)
{
	char *out = malloc(len + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	if (len && (s[0] == '"' || s[0] == '\'')) {
		char q = s[0];
		size_t i = 1;

		for (; i < len && s[i] != q; i++) {
			if (q == '"' && s[i] == '\\' && i + 1 < len) {
				i++;
				out[o++] = s[i] == 'n' ? '\n' : s[i] == 't' ? '\t' : s[i];
			} else {
				out[o++] = s[i];
			}
		}
		if (i >= len) {		/* unterminated quote */
			free(out);
			return NULL;
		}
		for (i++; i < len && isspace((unsigned char)s[i]); i++)
			;
		if (i < len && s[i] != '#') {	/* junk after the closing quote */
			free(out);
			return NULL;
		}
	} else {
		for (size_t i = 0; i < len; i++) {
			if (s[i] == '#' && (i == 0 || isspace((unsigned char)s[i - 1])))
				break;
			out[o++] = s[i];
		}
		while (o && isspace((unsigned char)out[o - 1]))
			o--;
	}
	out[o] = '\0';
	return out;
}

int cfg_parse_env_text(const char *text, size_t len, cfg_kv_fn fn, void *ctx, int *bad_line)
{
	const char *p = text, *end = text + len;
	int line = 0;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *le = eol ? eol : end, *k, *ke, *v;
		char key[256], *val;
		int r;

		line++;
		while (p < le && isspace((unsigned char)*p))
			p++;
		if (p == le || *p == '#')
			goto next;
		if ((size_t)(le - p) > 7 && strncmp(p, "export", 6) == 0 && isspace((unsigned char)p[6]))
			for (p += 6; p < le && isspace((unsigned char)*p); p++)
				;
		k = p;
		while (p < le && (isalnum((unsigned char)*p) || *p == '_'))
			p++;
		ke = p;
		while (p < le && (*p == ' ' || *p == '\t'))
			p++;
		if (ke == k || p == le || *p != '=' || (size_t)(ke - k) >= sizeof(key) ||
		    isdigit((unsigned char)*k))
			goto bad;
		memcpy(key, k, (size_t)(ke - k));
		key[ke - k] = '\0';
		for (v = p + 1; v < le && (*v == ' ' || *v == '\t'); v++)
			;
		while (le > v && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t'))
			le--;
		/* a double-quoted value may span lines */
		if (v < le && *v == '"') {
			const char *q = v + 1;
			int start_line = line;

			while (q < end && *q != '"') {
				if (*q == '\\' && q + 1 < end)
					q++;
				if (*q == '\n')
					line++;
				q++;
			}
			if (q >= end) {
				line = start_line;
				goto bad;
			}
			eol = memchr(q, '\n', (size_t)(end - q));
			le = eol ? eol : end;
			while (le > v && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t'))
				le--;
		}
		val = env_unquote(v, (size_t)(le - v));
		if (!val)
			goto bad;
		r = fn(ctx, key, val);
		free(val);
		if (r)
			return r;
next:
		p = eol ? eol + 1 : end;
	}
	return 0;
bad:
	if (bad_line)
		*bad_line = line;
	return -EINVAL;
}

static int env_file_kv(void *ctx, const char *key, const char *value)
{
	struct env_vals *ev = ctx;
	int i = find_var(key);

	if (i < 0)
		return 0;	/* the scraper's .env holds many other variables */
	free(ev->v[i]);
	ev->v[i] = strdup(value);
	return ev->v[i] ? 0 : -ENOMEM;
}

static int read_env_file(const char *path, struct env_vals *ev, FILE *err)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, len = 0;
	int r = 0, bad = 0;

	if (!f) {
		r = -errno;
		fprintf(err, "s3jobfs: cannot open env file '%s': %s\n", path, strerror(errno));
		return r;
	}
	for (;;) {
		if (len + 4096 > cap) {
			char *nb = realloc(buf, cap = cap ? cap * 2 : 8192);

			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		size_t n = fread(buf + len, 1, cap - len, f);

		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		r = -EIO;
		fprintf(err, "s3jobfs: cannot read env file '%s'\n", path);
		goto out;
	}
	r = cfg_parse_env_text(buf, len, env_file_kv, ev, &bad);
	if (r == -EINVAL)
		fprintf(err, "s3jobfs: %s:%d: cannot parse line (expected KEY=VALUE)\n", path, bad);
out:
	free(buf);
	fclose(f);
	return r;
}

static void normalise(struct cfg *c)
{
	/* S3_PREFIX: no leading '/', a trailing '/' unless empty */
	if (c->prefix) {
		char *p = c->prefix;
		size_t n;

		while (*p == '/')
			p++;
		n = strlen(p);
		memmove(c->prefix, p, n + 1);
		if (n && c->prefix[n - 1] != '/') {
			char *np = realloc(c->prefix, n + 2);

			if (np) {
				np[n] = '/';
				np[n + 1] = '\0';
				c->prefix = np;
			}
		}
	}
	if (c->endpoint) {
		size_t n = strlen(c->endpoint);

		while (n && c->endpoint[n - 1] == '/')
			c->endpoint[--n] = '\0';
	}
}

/* S3_TAGGING: "k=v&k2=v2", URL-encoded: every pair has a key, no spaces. */
static bool tagging_ok(const char *t)
{
	if (!*t || strchr(t, ' '))
		return false;
	for (const char *p = t; *p;) {
		size_t n = strcspn(p, "&");

		if (n == 0 || *p == '=')
			return false;	/* empty pair or empty key */
		p += n;
		if (*p == '&' && !*++p)
			return false;	/* trailing '&' */
	}
	return true;
}

/* S3JOBFS_JOBS_TABLE: "table" or "schema.table", neither part empty. */
static bool table_ok(const char *t)
{
	const char *dot = strchr(t, '.');

	return *t && *t != '.' && (!dot || (dot[1] && !strchr(dot + 1, '.')));
}

static bool database_url_ok(const char *url)
{
	char *perr = NULL;
	PQconninfoOption *o = PQconninfoParse(url, &perr);

	PQfreemem(perr);
	PQconninfoFree(o);
	return o != NULL;
}

static int check(const struct cfg *c, FILE *err)
{
	int r = 0;

	if (c->s3_enabled && (!c->bucket || !*c->bucket)) {
		fprintf(err, "s3jobfs: S3_BUCKET_NAME is not set (required when S3_ENABLED=true)\n");
		r = -EINVAL;
	}
	if (c->bucket && *c->bucket) {
		size_t n = strlen(c->bucket);
		bool ok = n >= 3 && n <= 63;

		for (const char *p = c->bucket; *p && ok; p++)
			ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' ||
			     *p == '-' || *p == '_';
		if (!ok) {
			fprintf(err, "s3jobfs: invalid S3_BUCKET_NAME='%s': 3 to 63 lowercase letters, digits, '.', '-'\n",
				c->bucket);
			r = -EINVAL;
		}
	}
	for (size_t i = 0; i < N_VARS; i++) {
		const char *u;

		if (!(vars[i].flags & VF_URL))
			continue;	/* only then is the field a string */
		u = *(char *const *)((const char *)c + vars[i].off);
		if (!u)
			continue;
		if ((strncmp(u, "http://", 7) || !u[7]) && (strncmp(u, "https://", 8) || !u[8])) {
			fprintf(err, "s3jobfs: invalid %s='%s': expected http://host[:port] or https://...\n",
				vars[i].name, u);
			r = -EINVAL;
		}
	}
	if (c->aws_container_relative_uri && *c->aws_container_relative_uri != '/') {
		fprintf(err, "s3jobfs: invalid AWS_CONTAINER_CREDENTIALS_RELATIVE_URI='%s': expected a path "
			"starting with '/'\n", c->aws_container_relative_uri);
		r = -EINVAL;
	}
	if (c->tagging && !tagging_ok(c->tagging)) {
		fprintf(err, "s3jobfs: invalid S3_TAGGING='%s': expected key=value pairs joined by '&', "
			"URL-encoded (e.g. team=data&env=prod)\n", c->tagging);
		r = -EINVAL;
	}
	if (c->jobs_table && !table_ok(c->jobs_table)) {
		fprintf(err, "s3jobfs: invalid S3JOBFS_JOBS_TABLE='%s': expected a table name or "
			"schema.table\n", c->jobs_table);
		r = -EINVAL;
	}
	if (c->database_url && !database_url_ok(c->database_url)) {
		/* libpq's own message may quote the password: not shown */
		fprintf(err, "s3jobfs: invalid DATABASE_URL: libpq cannot parse it; expected "
			"postgresql://user:password@host:port/dbname or 'host=... dbname=...'\n");
		r = -EINVAL;
	}
	if (c->region && (!*c->region || strspn(c->region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(c->region))) {
		fprintf(err, "s3jobfs: invalid S3_REGION='%s': expected a region name like ap-southeast-2\n",
			c->region);
		r = -EINVAL;
	}
	if (c->sse && strcmp(c->sse, "aws:kms") && c->sse_kms_key_id) {
		fprintf(err, "s3jobfs: S3_SSE_KMS_KEY_ID is set but S3_SSE is not aws:kms\n");
		r = -EINVAL;
	}
	if ((c->access_key_id != NULL) != (c->secret_access_key != NULL)) {
		fprintf(err, "s3jobfs: S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together\n");
		r = -EINVAL;
	}
	return r;
}

int cfg_load(struct cfg *c, const char *env_file, FILE *err)
{
	struct env_vals ev = { .err = err };
	const char *path = env_file;
	int r = 0;

	memset(c, 0, sizeof(*c));
	if (!path && access(".env", R_OK) == 0)
		path = ".env";
	if (path) {
		r = read_env_file(path, &ev, err);
		if (r)
			goto out;
		c->env_file = strdup(path);
	}
	for (size_t i = 0; i < N_VARS; i++) {
		const struct var *v = &vars[i];
		const char *s = getenv(v->name), *from = " (environment)";
		int rr;

		if (s && !*s && v->type != V_STR)
			s = NULL;	/* VAR= in compose files means "unset" */
		if (!s && ev.v[i]) {
			s = ev.v[i];
			from = " (env file)";
		}
		if (!s || (!*s && v->type == V_STR && !v->def)) {
			s = v->def;
			from = " (default)";
		}
		if (!s)
			continue;
		rr = set_var(c, v, s, from, err);
		if (rr == -ENOMEM) {
			r = rr;
			goto out;
		}
		if (rr)
			r = rr;
	}
	if (r)
		goto out;
	normalise(c);
	r = check(c, err);
out:
	for (size_t i = 0; i < N_VARS; i++)
		free(ev.v[i]);
	if (r)
		cfg_release(c);
	return r;
}

void cfg_release(struct cfg *c)
{
	for (size_t i = 0; i < N_VARS; i++)
		if (vars[i].type == V_STR || vars[i].type == V_ENUM) {
			char **sp = (char **)((char *)c + vars[i].off);

			free(*sp);
			*sp = NULL;
		}
	free(c->env_file);
	c->env_file = NULL;
}

void cfg_print_table(FILE *f, bool markdown)
{
	if (markdown) {
		fprintf(f, "| variable | default | meaning |\n|---|---|---|\n");
		for (size_t i = 0; i < N_VARS; i++)
			fprintf(f, "| `%s` | %s%s%s | %s%s%s |\n", vars[i].name,
				vars[i].def ? "`" : "", vars[i].def ? vars[i].def : "(unset)",
				vars[i].def ? "`" : "", vars[i].help,
				vars[i].choices ? "; one of " : "", vars[i].choices ? vars[i].choices : "");
		return;
	}
	for (size_t i = 0; i < N_VARS; i++)
		fprintf(f, "  %-40s %s\n  %-40s   default: %s\n", vars[i].name, vars[i].help, "",
			vars[i].def ? vars[i].def : "(unset)");
}
