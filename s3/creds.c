/* creds.c - the AWS credential chain: environment, shared credentials file, ECS, IMDSv2.
 *
 * The chain is a table of sources tried in order. Each source returns 0 with credentials,
 * -ENOENT with a phrase saying why it has none (not configured, no such profile, ...), or
 * another -errno when it is configured but failed; the first 0 fixes the source for the
 * provider's lifetime, the first hard failure stops the walk (the chosen source failed), and
 * when every source says -ENOENT the phrases are joined into s3_creds_last_error(). The EC2
 * instance metadata service is the last resort and is probed: when it cannot be reached at all
 * during the walk it counts as "no credentials" (-ENOENT), not as a failure. Credentials with
 * an Expiration are fetched again from the same source, under the provider's mutex so that
 * concurrent callers wait for one fetch, once fewer than REFRESH_MARGIN seconds remain; when
 * that fails while the old ones are still valid they stay in use (with a warning). While the
 * current credentials are valid a source is asked again at most every REFRESH_MIN_INTERVAL
 * seconds, so one that is down, or keeps handing out credentials that expire within the
 * margin, is not hammered by every S3 request. HTTP uses one curl easy handle per request, no
 * proxy, no redirects, http/https only. Secrets and tokens are never logged, never put in an
 * error message, and wiped from memory when buffers holding them are freed.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cJSON.h>
#include <curl/curl.h>

#include "cfg.h"
#include "log.h"
#include "s3_creds.h"

#define REFRESH_MARGIN		300	/* seconds before Expiration to fetch again */
#define REFRESH_MIN_INTERVAL	10	/* seconds between refreshes while creds are valid */
#define HTTP_CONNECT_TIMEOUT	2L
#define HTTP_TIMEOUT		5L
#define HTTP_MAX_BODY		(64 * 1024)
#define IMDS_TOKEN_TTL		"21600"
#define DEFAULT_ECS_BASE	"http://169.254.170.2"
#define DEFAULT_IMDS		"http://169.254.169.254"
#define IMDS_CREDS_PATH		"/latest/meta-data/iam/security-credentials/"

enum creds_src { SRC_NONE, SRC_S3_ENV, SRC_AWS_ENV, SRC_FILE, SRC_ECS, SRC_IMDS };

struct s3_creds_provider {
	const struct cfg *cfg;		/* borrowed */
	pthread_mutex_t lock;
	enum creds_src src;		/* protected by lock; SRC_NONE until the first success */
	struct s3_creds cur;		/* protected by lock */
	time_t retry_after;		/* protected by lock: no refresh before this while valid */
	char source[512];		/* protected by lock; fixed once src is set */
	char error[1024];		/* protected by lock */
};

/* What a source fetch reports besides its return code. */
struct fetch_ctx {
	struct s3_creds_provider *p;
	bool probing;			/* resolving the chain, not refreshing a chosen source */
	char desc[512];			/* the source, for s3_creds_source(); never a secret */
	char why[512];			/* -ENOENT: why there is nothing; else: what failed */
};

static bool set(const char *s)
{
	return s && *s;
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static void say(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

/* Copy one credential field; -E2BIG (nothing copied) when it does not fit. */
static int put_field(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (n >= size)
		return -E2BIG;
	memcpy(dst, src, n + 1);
	return 0;
}

/* Fill out from three strings (token may be NULL); why names the field that did not fit. */
static int put_creds(struct s3_creds *out, const char *id, const char *secret, const char *token,
		     char *why, size_t whysize)
{
	memset(out, 0, sizeof(*out));
	if (put_field(out->access_key_id, sizeof(out->access_key_id), id)) {
		say(why, whysize, "access key id longer than %zu bytes", sizeof(out->access_key_id) - 1);
		return -EIO;
	}
	if (put_field(out->secret_access_key, sizeof(out->secret_access_key), secret)) {
		say(why, whysize, "secret access key longer than %zu bytes",
		    sizeof(out->secret_access_key) - 1);
		return -EIO;
	}
	if (token && put_field(out->session_token, sizeof(out->session_token), token)) {
		say(why, whysize, "session token longer than %zu bytes", sizeof(out->session_token) - 1);
		return -EIO;
	}
	return 0;
}

/* ---- environment ---- */

static int env_pair(struct fetch_ctx *f, struct s3_creds *out, const char *id, const char *secret,
		    const char *token, const char *id_name, const char *secret_name)
{
	if (!set(id)) {
		say(f->why, sizeof(f->why), "%s unset", id_name);
		return -ENOENT;
	}
	if (!set(secret)) {
		say(f->why, sizeof(f->why), "%s set without %s", id_name, secret_name);
		return -ENOENT;
	}
	say(f->desc, sizeof(f->desc), "%s", id_name);
	return put_creds(out, id, secret, token, f->why, sizeof(f->why));
}

static int src_s3_env(struct fetch_ctx *f, struct s3_creds *out)
{
	const struct cfg *c = f->p->cfg;

	/* AWS_SESSION_TOKEN belongs to the AWS_ keys, never to the S3_ ones */
	return env_pair(f, out, c->access_key_id, c->secret_access_key, NULL,
			"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY");
}

static int src_aws_env(struct fetch_ctx *f, struct s3_creds *out)
{
	const struct cfg *c = f->p->cfg;

	return env_pair(f, out, c->aws_access_key_id, c->aws_secret_access_key,
			c->aws_session_token, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY");
}

/* ---- shared credentials file ---- */

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Cut a " # comment" or " ; comment" off a value (keys and tokens never contain blanks). */
static void cut_comment(char *v)
{
	for (char *s = v; *s; s++)
		if ((*s == '#' || *s == ';') && s > v && isspace((unsigned char)s[-1])) {
			*s = '\0';
			break;
		}
}

struct profile_vals {
	char *id, *secret, *token;	/* heap, wiped on free */
};

/* Read profile `name` from the INI file f into v (heap strings the caller wipes and frees);
 * *found tells whether the section exists. 0, -ENOMEM or -EIO. */
static int read_profile(FILE *f, const char *name, struct profile_vals *v, bool *found)
{
	char *line = NULL;
	size_t cap = 0;
	bool in = false;
	int r = 0;

	*found = false;
	while (getline(&line, &cap, f) >= 0) {
		char *s = trim(line), *eq, **dst = NULL;

		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *e = strchr(s, ']');

			if (e)
				*e = '\0';
			in = strcmp(trim(s + 1), name) == 0;
			*found |= in;
			continue;
		}
		eq = strchr(s, '=');
		if (!in || !eq)
			continue;
		*eq = '\0';
		s = trim(s);
		if (strcasecmp(s, "aws_access_key_id") == 0)
			dst = &v->id;
		else if (strcasecmp(s, "aws_secret_access_key") == 0)
			dst = &v->secret;
		else if (strcasecmp(s, "aws_session_token") == 0)
			dst = &v->token;
		if (!dst)
			continue;
		cut_comment(eq + 1);
		wipe_free(*dst);
		*dst = strdup(trim(eq + 1));
		if (!*dst) {
			r = -ENOMEM;
			break;
		}
	}
	if (line) {
		explicit_bzero(line, cap);
		free(line);
	}
	if (!r && ferror(f))
		r = -EIO;
	return r;
}

static int src_file(struct fetch_ctx *f, struct s3_creds *out)
{
	const struct cfg *c = f->p->cfg;
	const char *profile = set(c->aws_profile) ? c->aws_profile : "default";
	const char *home = getenv("HOME");
	struct profile_vals v = { NULL, NULL, NULL };
	char path[4096];
	FILE *fp = NULL;
	bool found;
	int r;

	if (set(c->aws_shared_credentials_file)) {
		say(path, sizeof(path), "%s", c->aws_shared_credentials_file);
	} else if (set(home)) {
		say(path, sizeof(path), "%s/.aws/credentials", home);
	} else {
		say(f->why, sizeof(f->why), "no shared credentials file (HOME unset)");
		return -ENOENT;
	}
	fp = fopen(path, "re");
	if (!fp) {
		say(f->why, sizeof(f->why), "cannot open shared credentials file '%s': %s", path,
		    strerror(errno));
		return -ENOENT;
	}
	r = read_profile(fp, profile, &v, &found);
	if (r) {
		say(f->why, sizeof(f->why), "cannot read shared credentials file '%s': %s", path,
		    strerror(-r));
		goto out;
	}
	if (!found) {
		say(f->why, sizeof(f->why), "no profile [%s] in '%s'", profile, path);
		r = -ENOENT;
		goto out;
	}
	if (!set(v.id) || !set(v.secret)) {
		say(f->why, sizeof(f->why), "profile [%s] in '%s' has no %s", profile, path,
		    set(v.id) ? "aws_secret_access_key" : "aws_access_key_id");
		r = -ENOENT;
		goto out;
	}
	say(f->desc, sizeof(f->desc), "shared credentials file %s [%s]", path, profile);
	r = put_creds(out, v.id, v.secret, v.token, f->why, sizeof(f->why));
out:
	if (fp)
		fclose(fp);
	wipe_free(v.id);
	wipe_free(v.secret);
	wipe_free(v.token);
	return r;
}

/* ---- HTTP ---- */

struct http_body {
	char *data;
	size_t len;
};

static size_t http_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct http_body *b = ud;
	size_t n = size * nmemb;
	char *nd;

	if (b->len + n > HTTP_MAX_BODY)
		return 0;
	nd = malloc(b->len + n + 1);
	if (!nd)
		return 0;
	if (b->data) {
		memcpy(nd, b->data, b->len);
		explicit_bzero(b->data, b->len);
		free(b->data);
	}
	memcpy(nd + b->len, ptr, n);
	b->len += n;
	nd[b->len] = '\0';
	b->data = nd;
	return n;
}

/* curl result and HTTP status to -errno: the contract's -ETIMEDOUT, -EACCES, -EIO. */
static int http_errno(CURLcode cc, long status)
{
	if (cc == CURLE_OPERATION_TIMEDOUT)
		return -ETIMEDOUT;
	if (cc != CURLE_OK)
		return -EIO;
	if (status == 401 || status == 403)
		return -EACCES;
	if (status < 200 || status > 299)
		return -EIO;
	return 0;
}

/* What a request ended with: the curl code and the HTTP status (0 without an answer). */
struct http_res {
	CURLcode cc;
	long status;
};

/* One request with optional header "Name: value". On 2xx returns 0 and *body (NUL-terminated,
 * caller frees with wipe_free()); else -errno, *body NULL, and what failed in why (never the
 * header, which may hold a token). res gets the outcome either way. Blocks up to
 * HTTP_TIMEOUT seconds. */
static int http_do(const char *method, const char *url, const char *header, char **body,
		   struct http_res *res, char *why, size_t whysize)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct http_body b = { NULL, 0 };
	struct curl_slist *hdrs = NULL;
	CURL *h = NULL;
	int r;

	*body = NULL;
	res->cc = CURLE_OK;
	res->status = 0;
	h = curl_easy_init();
	if (!h) {
		r = -ENOMEM;
		say(why, whysize, "cannot create a curl handle");
		goto out;
	}
	if (header) {
		hdrs = curl_slist_append(NULL, header);
		if (!hdrs) {
			r = -ENOMEM;
			say(why, whysize, "out of memory");
			goto out;
		}
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, HTTP_CONNECT_TIMEOUT);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, HTTP_TIMEOUT);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	res->cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
	r = http_errno(res->cc, res->status);
	if (res->cc != CURLE_OK)
		say(why, whysize, "%s", errbuf[0] ? errbuf : curl_easy_strerror(res->cc));
	else if (r)
		say(why, whysize, "HTTP %ld", res->status);
	if (!r) {
		*body = b.data ? b.data : strdup("");
		b.data = NULL;
		if (!*body)
			r = -ENOMEM;
	}
out:
	if (b.data) {
		explicit_bzero(b.data, b.len);
		free(b.data);
	}
	curl_slist_free_all(hdrs);
	if (h)
		curl_easy_cleanup(h);
	return r;
}

/* ---- ECS and IMDS JSON ---- */

/* ISO 8601 UTC time like "2026-11-25T10:00:00Z", fractions and +hh:mm offsets allowed. */
static int parse_iso8601(const char *s, time_t *out)
{
	struct tm tm;
	int y, mo, d, h, mi, sec, n = 0, off = 0;
	time_t t;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || !n)
		return -EINVAL;
	s += n;
	if (*s == '.')
		for (s++; isdigit((unsigned char)*s); s++)
			;
	if (*s == '+' || *s == '-') {
		int oh, om, m = 0;

		if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || !m)
			return -EINVAL;
		off = (oh * 3600 + om * 60) * (*s == '-' ? -1 : 1);
		s += 1 + m;
	} else if (*s == 'Z' || *s == 'z') {
		s++;
	}
	if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out = t - off;
	return 0;
}

static const char *json_str(const cJSON *o, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* The credentials document of ECS and IMDS into out. -EIO with why on anything unexpected. */
static int parse_creds_json(const char *body, struct s3_creds *out, char *why, size_t whysize)
{
	cJSON *doc = cJSON_Parse(body);
	const char *id, *secret, *token, *exp, *code;
	int r = -EIO;

	if (!cJSON_IsObject(doc)) {
		say(why, whysize, "response is not a JSON object");
		goto out;
	}
	code = json_str(doc, "Code");
	if (code && strcmp(code, "Success") != 0) {
		char q[128];

		say(why, whysize, "response Code is %s", log_quote(q, sizeof(q), code));
		goto out;
	}
	id = json_str(doc, "AccessKeyId");
	secret = json_str(doc, "SecretAccessKey");
	token = json_str(doc, "Token");
	exp = json_str(doc, "Expiration");
	if (!set(id) || !set(secret)) {
		say(why, whysize, "response has no %s", set(id) ? "SecretAccessKey" : "AccessKeyId");
		goto out;
	}
	r = put_creds(out, id, secret, token, why, whysize);
	if (r)
		goto out;
	if (set(exp) && parse_iso8601(exp, &out->expiration)) {
		char q[128];

		say(why, whysize, "cannot parse Expiration %s", log_quote(q, sizeof(q), exp));
		r = -EIO;
	}
out:
	if (doc) {
		/* wipe the secret strings inside the tree before freeing it */
		for (cJSON *it = doc->child; it; it = it->next)
			if (cJSON_IsString(it) && it->valuestring)
				explicit_bzero(it->valuestring, strlen(it->valuestring));
		cJSON_Delete(doc);
	}
	return r;
}

/* A base URL without a trailing '/' followed by path: heap string or NULL. */
static char *url_join(const char *base, const char *path)
{
	size_t bl = strlen(base), pl = strlen(path);
	char *u;

	while (bl && base[bl - 1] == '/')
		bl--;
	while (*path == '/' && path[1] == '/') {
		path++;
		pl--;
	}
	u = malloc(bl + pl + 2);
	if (!u)
		return NULL;
	memcpy(u, base, bl);
	u[bl] = '/';
	memcpy(u + bl + (*path == '/' ? 0 : 1), path, pl + 1);
	return u;
}

/* url for messages: without user:password and query, which may be secrets. Returns buf. */
static const char *url_safe(char *buf, size_t size, const char *url)
{
	CURLU *u = curl_url();
	char *s = NULL;

	say(buf, size, "(unparsable URL)");
	if (u && curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_USER, NULL, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_QUERY, NULL, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		say(buf, size, "%s", s);
	curl_free(s);
	curl_url_cleanup(u);
	return buf;
}

static bool header_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* ---- ECS container credentials ---- */

static int src_ecs(struct fetch_ctx *f, struct s3_creds *out)
{
	const struct cfg *c = f->p->cfg;
	char *url = NULL, *hdr = NULL, *body = NULL, safe[384], err[256] = "";
	struct http_res res;
	int r;

	if (set(c->aws_container_full_uri)) {
		url = strdup(c->aws_container_full_uri);
	} else if (set(c->aws_container_relative_uri)) {
		url = url_join(set(c->ecs_base) ? c->ecs_base : DEFAULT_ECS_BASE,
			       c->aws_container_relative_uri);
	} else {
		say(f->why, sizeof(f->why), "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI unset");
		return -ENOENT;
	}
	if (!url)
		return -ENOMEM;
	say(f->desc, sizeof(f->desc), "ECS container credentials (%s)",
	    url_safe(safe, sizeof(safe), url));
	if (set(c->aws_container_auth_token)) {
		size_t n = strlen(c->aws_container_auth_token) + sizeof("Authorization: ");

		if (!header_safe(c->aws_container_auth_token)) {
			say(err, sizeof(err), "AWS_CONTAINER_AUTHORIZATION_TOKEN holds control characters");
			r = -EIO;
			goto out;
		}
		hdr = malloc(n);
		if (!hdr) {
			r = -ENOMEM;
			goto out;
		}
		say(hdr, n, "Authorization: %s", c->aws_container_auth_token);
	}
	r = http_do("GET", url, hdr, &body, &res, err, sizeof(err));
	if (!r)
		r = parse_creds_json(body, out, err, sizeof(err));
out:
	if (r)
		say(f->why, sizeof(f->why), "%s: %s", f->desc, err[0] ? err : strerror(-r));
	wipe_free(body);
	wipe_free(hdr);
	free(url);
	return r;
}

/* ---- EC2 instance metadata, IMDSv2 ---- */

static int src_imds(struct fetch_ctx *f, struct s3_creds *out)
{
	const struct cfg *c = f->p->cfg;
	const char *base = set(c->aws_imds_endpoint) ? c->aws_imds_endpoint : DEFAULT_IMDS;
	char *url = NULL, *token = NULL, *hdr = NULL, *body = NULL, *role_url = NULL;
	char safe[384], err[256] = "";
	const char *step = "token request";
	struct http_res res = { CURLE_OK, 0 };
	size_t n;
	int r;

	say(f->desc, sizeof(f->desc), "EC2 instance metadata (IMDSv2)");
	if (c->aws_imds_disabled) {
		say(f->why, sizeof(f->why), "EC2 instance metadata disabled (AWS_EC2_METADATA_DISABLED)");
		return -ENOENT;
	}
	url = url_join(base, "/latest/api/token");
	if (!url) {
		r = -ENOMEM;
		goto out;
	}
	r = http_do("PUT", url, "X-aws-ec2-metadata-token-ttl-seconds: " IMDS_TOKEN_TTL, &token,
		    &res, err, sizeof(err));
	if (r)
		goto out;
	if (!*token || !header_safe(token)) {
		say(err, sizeof(err), "malformed token");
		r = -EIO;
		goto out;
	}
	n = strlen(token) + sizeof("X-aws-ec2-metadata-token: ");
	hdr = malloc(n);
	if (!hdr) {
		r = -ENOMEM;
		goto out;
	}
	say(hdr, n, "X-aws-ec2-metadata-token: %s", token);

	step = "role request";
	free(url);
	url = url_join(base, IMDS_CREDS_PATH);
	if (!url) {
		r = -ENOMEM;
		goto out;
	}
	r = http_do("GET", url, hdr, &body, &res, err, sizeof(err));
	if (r)
		goto out;
	body[strcspn(body, "\r\n")] = '\0';
	if (!*body || strspn(body, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			     "0123456789+=,.@_-") != strlen(body)) {
		say(err, sizeof(err), "%s", *body ? "malformed role name" : "no IAM role attached");
		r = -EIO;
		goto out;
	}
	role_url = url_join(url, body);
	if (!role_url) {
		r = -ENOMEM;
		goto out;
	}
	wipe_free(body);
	body = NULL;

	step = "credentials request";
	r = http_do("GET", role_url, hdr, &body, &res, err, sizeof(err));
	if (!r)
		r = parse_creds_json(body, out, err, sizeof(err));
out:
	if (r) {
		say(f->why, sizeof(f->why), "EC2 instance metadata (%s): %s: %s",
		    url_safe(safe, sizeof(safe), base), step, err[0] ? err : strerror(-r));
		/* while walking the chain, "not on EC2" (nothing answers the token request) and
		 * "no instance profile" (404 on the role list) mean no credentials here */
		if (f->probing && ((!token && (res.cc == CURLE_COULDNT_CONNECT ||
					       res.cc == CURLE_OPERATION_TIMEDOUT)) ||
				   (!role_url && res.status == 404)))
			r = -ENOENT;
	}
	wipe_free(body);
	wipe_free(hdr);
	wipe_free(token);
	free(role_url);
	free(url);
	return r;
}

/* ---- the chain ---- */

typedef int (*creds_fetch_fn)(struct fetch_ctx *f, struct s3_creds *out);

static const struct {
	enum creds_src id;
	creds_fetch_fn fetch;
} chain[] = {
	{ SRC_S3_ENV, src_s3_env },
	{ SRC_AWS_ENV, src_aws_env },
	{ SRC_FILE, src_file },
	{ SRC_ECS, src_ecs },
	{ SRC_IMDS, src_imds },
};

#define N_CHAIN (sizeof(chain) / sizeof(chain[0]))

static creds_fetch_fn fetch_of(enum creds_src id)
{
	for (size_t i = 0; i < N_CHAIN; i++)
		if (chain[i].id == id)
			return chain[i].fetch;
	return NULL;
}

static void append(char *buf, size_t size, const char *s)
{
	size_t n = strlen(buf);

	if (n + 1 < size)
		say(buf + n, size - n, "%s%s", n ? "; " : "", s);
}

/* Walk the chain (p->lock held). On success sets p->src, p->source and *fresh. */
static int resolve(struct s3_creds_provider *p, struct s3_creds *fresh)
{
	char reasons[sizeof(p->error)] = "";
	int r = -ENOENT;

	for (size_t i = 0; i < N_CHAIN; i++) {
		struct fetch_ctx f = { .p = p, .probing = true };

		r = chain[i].fetch(&f, fresh);
		if (r == 0) {
			p->src = chain[i].id;
			say(p->source, sizeof(p->source), "%s", f.desc);
			return 0;
		}
		if (r != -ENOENT) {
			say(p->error, sizeof(p->error), "%s", f.why[0] ? f.why : strerror(-r));
			return r;
		}
		append(reasons, sizeof(reasons), f.why);
	}
	say(p->error, sizeof(p->error), "no AWS credentials found: %s", reasons);
	return r;
}

/* Fetch again from the chosen source (p->lock held). */
static int refresh(struct s3_creds_provider *p, struct s3_creds *fresh)
{
	struct fetch_ctx f = { .p = p, .probing = false };
	int r = fetch_of(p->src)(&f, fresh);

	if (r) {
		say(p->error, sizeof(p->error), "cannot refresh AWS credentials: %s", f.why);
		/* a source that yielded once and now says "nothing here" has failed */
		if (r == -ENOENT)
			r = -EIO;
	}
	return r;
}

static void log_loaded(const struct s3_creds_provider *p, const char *msg)
{
	char q[600], exp[32] = "never";
	struct tm tm;

	if (p->cur.expiration && gmtime_r(&p->cur.expiration, &tm))
		strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	log_msg(LOG_INFO, msg, "source=%s expires=%s", log_quote(q, sizeof(q), p->source), exp);
}

int s3_creds_get(struct s3_creds_provider *p, struct s3_creds *out)
{
	struct s3_creds fresh;
	char q[1100];
	time_t now = time(NULL);
	int r = 0;

	memset(&fresh, 0, sizeof(fresh));
	pthread_mutex_lock(&p->lock);
	p->error[0] = '\0';
	if (p->src == SRC_NONE) {
		r = resolve(p, &fresh);
		if (r)
			goto out;
		p->cur = fresh;
		log_loaded(p, "aws credentials loaded");
	} else if (p->cur.expiration && p->cur.expiration - now < REFRESH_MARGIN &&
		   (now >= p->retry_after || now >= p->cur.expiration)) {
		r = refresh(p, &fresh);
		p->retry_after = now + REFRESH_MIN_INTERVAL;
		if (r == 0) {
			p->cur = fresh;
			log_loaded(p, "aws credentials refreshed");
		} else if (now < p->cur.expiration) {
			log_msg(LOG_WARNING, "aws credentials refresh failed, keeping the current ones",
				"expires_in=%llds error=%s", (long long)(p->cur.expiration - now),
				log_quote(q, sizeof(q), p->error));
			p->error[0] = '\0';
			r = 0;
		} else {
			goto out;
		}
	}
	*out = p->cur;
out:
	if (r)
		log_msg(LOG_ERR, "no aws credentials", "error=%s", log_quote(q, sizeof(q), p->error));
	pthread_mutex_unlock(&p->lock);
	explicit_bzero(&fresh, sizeof(fresh));
	return r;
}

int s3_creds_provider_create(struct s3_creds_provider **out, const struct cfg *cfg)
{
	struct s3_creds_provider *p = NULL;
	int r = 0;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		r = -ENOMEM;
		goto out;
	}
	r = -pthread_mutex_init(&p->lock, NULL);
	if (r) {
		curl_global_cleanup();
		goto out;
	}
	p->cfg = cfg;
	p->src = SRC_NONE;
	say(p->source, sizeof(p->source), "none");
	*out = p;
	p = NULL;
out:
	free(p);
	return r;
}

void s3_creds_provider_destroy(struct s3_creds_provider *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	explicit_bzero(&p->cur, sizeof(p->cur));
	free(p);
	curl_global_cleanup();
}

const char *s3_creds_source(struct s3_creds_provider *p)
{
	return p->source;
}

const char *s3_creds_last_error(struct s3_creds_provider *p)
{
	return p->error;
}
