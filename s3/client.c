/* client.c - S3 requests: URL building, SigV4 signing, libcurl transfer, retries, errors.
 *
 * Every operation fills a `struct req` (method, bucket, key, query, extra headers, a body
 * source and a response sink) and hands it to run_request(), which runs one attempt per call
 * of do_attempt() under the retry policy (s3/retry.c). Each attempt borrows a curl easy handle
 * from the client's pool (the handle keeps its own keep-alive connections; DNS and TLS sessions
 * are shared through a curl share handle; connections are deliberately not shared, because
 * libcurl documents sharing its connection cache across threads as unsafe), signs the request
 * with the credentials of that moment, and classifies the outcome. Error bodies are always
 * collected in memory and parsed (s3/xml.c), never written to the caller's sink.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "cfg.h"
#include "log.h"
#include "s3.h"
#include "s3_creds.h"
#include "s3_i.h"
#include "sigv4.h"

#define MAX_HEADERS 24
#define ERR_BODY_MAX (64 * 1024)
#define MEM_BODY_MAX (64 * 1024 * 1024)

struct s3_client {
	const struct cfg *cfg;
	struct s3_creds_provider *creds;
	bool own_creds;
	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	pthread_mutex_t lock;
	CURL **pool;		/* protected by lock */
	size_t n_pool, cap_pool; /* protected by lock */
	char region[32];	/* protected by lock */
	char scheme[8];		/* "http" or "https" */
	char host[256];		/* endpoint host[:port] ("" = AWS regional endpoint) */
	char base_path[256];	/* endpoint path prefix, usually "" */
	bool path_style;
	uint64_t retries[S3_RETRY_CAUSES];	/* atomic: retries by cause */
};

enum body_kind { BODY_NONE, BODY_MEM, BODY_FD };
enum sink_kind { SINK_DISCARD, SINK_MEM, SINK_BUF, SINK_FD };

struct req {
	const char *method;
	const char *bucket;
	const char *key;		/* NULL: bucket-level */
	const char *query;		/* raw, already encoded; NULL: none */
	const char *hdr_names[MAX_HEADERS];
	char *hdr_values[MAX_HEADERS];	/* owned */
	size_t n_hdrs;
	const char *optional_setting;	/* first optional feature sent, for error reports */

	enum body_kind body;
	const void *mem;
	size_t mem_len;
	int fd;
	uint64_t fd_off, fd_len;
	char payload_hash[65];
	uint64_t body_pos;
	bool resend_refused;		/* per attempt: curl wanted to send the body again */

	enum sink_kind sink;
	char *out;			/* SINK_MEM: grown buffer; SINK_BUF: caller's */
	size_t out_len, out_cap;
	int out_fd;
	off_t out_fd_off;
	uint64_t got;

	/* per attempt */
	long status;
	char *err_body;
	size_t err_len;
	int write_errno;

	/* response headers */
	char etag[72];
	char content_type[96];
	char bucket_region[32];
	uint64_t content_length;
	time_t last_modified;
	bool have_meta_mode, have_meta_uid, have_meta_gid, have_meta_mtime;
	unsigned meta_mode, meta_uid, meta_gid;
	struct timespec meta_mtime;

	struct s3_client *c;
};

/* ---------------------------------------------------------------- errors */

int s3_errno(int http_status, const char *code, int curl_code)
{
	if (http_status == 0) {
		switch (curl_code) {
		case CURLE_OK: return 0;
		case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
		case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY: return -EHOSTUNREACH;
		case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
		case CURLE_OUT_OF_MEMORY: return -ENOMEM;
		case CURLE_WRITE_ERROR: return -EIO;
		case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_CONNECT_ERROR: return -EPROTO;
		default: return -EIO;
		}
	}
	if (http_status < 300)
		return 0;
	if (code && (strcmp(code, "NoSuchKey") == 0 || strcmp(code, "NoSuchBucket") == 0 ||
		     strcmp(code, "NoSuchUpload") == 0))
		return -ENOENT;
	if (code && (strcmp(code, "InvalidAccessKeyId") == 0 ||
		     strcmp(code, "SignatureDoesNotMatch") == 0 || strcmp(code, "AccessDenied") == 0))
		return -EACCES;
	if (code && strcmp(code, "NotImplemented") == 0)
		return -EOPNOTSUPP;
	if (code && (strcmp(code, "EntityTooLarge") == 0))
		return -EFBIG;
	if (code && (strcmp(code, "KeyTooLongError") == 0))
		return -ENAMETOOLONG;
	switch (http_status) {
	case 301: case 307: return -EREMOTE;
	case 304: case 412: return -EAGAIN;
	case 400: return -EINVAL;
	case 401: case 403: return -EACCES;
	case 404: return -ENOENT;
	case 405: case 501: return -EOPNOTSUPP;
	case 408: return -ETIMEDOUT;
	case 409: return -EBUSY;
	case 416: return -ERANGE;
	default: return -EIO;
	}
}

const char *s3_error_hint(const struct s3_error *err)
{
	static const struct { const char *code, *hint; } hints[] = {
		{ "SignatureDoesNotMatch", "check S3_SECRET_ACCESS_KEY (s3jobfs check)" },
		{ "InvalidAccessKeyId", "check S3_ACCESS_KEY_ID (s3jobfs check)" },
		{ "NoSuchBucket", "check S3_BUCKET_NAME or create the bucket (s3jobfs check)" },
		{ "AccessDenied", "the credentials may not write here: check the IAM policy (s3jobfs check)" },
		{ "RequestTimeTooSkewed", "synchronise this machine's clock (NTP)" },
		{ "ConnectionRefused", "nothing answers at S3_ENDPOINT: is S3 up and reachable?" },
		{ "Timeout", "check the network to S3, or raise S3_UPLOAD_TIMEOUT" },
		{ "DNSFailure", "check S3_ENDPOINT / S3_REGION and DNS" },
		{ "NoCredentials", "set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (or AWS_*)" },
		{ "SlowDown", "S3 is throttling: lower S3JOBFS_UPLOAD_CONCURRENCY" },
	};

	if (err->setting[0])
		return "the server refused an optional feature: unset the setting it names";
	for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
		if (!strcmp(err->code, hints[i].code))
			return hints[i].hint;
	if (err->http_status == 403)
		return hints[3].hint;
	if (err->http_status >= 500)
		return "S3 had an internal error; it is retried";
	if (err->http_status == 0)
		return "the connection to S3 failed: check S3_ENDPOINT, TLS and the network";
	return "see the error; s3jobfs check explains most causes";
}

const char *s3_error_text(const struct s3_error *err, char *buf, size_t size)
{
	if (err->http_status)
		snprintf(buf, size, "%s%s%s (HTTP %d)%s%s", err->code[0] ? err->code : "error",
			 err->message[0] ? ": " : "", err->message, err->http_status,
			 err->setting[0] ? "; caused by setting " : "", err->setting);
	else
		snprintf(buf, size, "%s: %s", err->code[0] ? err->code : "transport",
			 err->message[0] ? err->message : "no answer");
	return buf;
}

static void set_err(struct s3_error *err, const char *code, const char *msg)
{
	snprintf(err->code, sizeof(err->code), "%s", code);
	snprintf(err->message, sizeof(err->message), "%s", msg);
}

/* ---------------------------------------------------------------- client */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access acc, void *ctx)
{
	struct s3_client *c = ctx;

	(void)h;
	(void)acc;
	pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ctx)
{
	struct s3_client *c = ctx;

	(void)h;
	pthread_mutex_unlock(&c->share_locks[data]);
}

static int parse_endpoint(struct s3_client *c, const char *url)
{
	const char *p = strstr(url, "://"), *h, *slash;
	size_t n;

	if (!p || (size_t)(p - url) >= sizeof(c->scheme))
		return -EINVAL;
	memcpy(c->scheme, url, (size_t)(p - url));
	c->scheme[p - url] = '\0';
	if (strcmp(c->scheme, "http") && strcmp(c->scheme, "https"))
		return -EINVAL;
	h = p + 3;
	slash = strchr(h, '/');
	n = slash ? (size_t)(slash - h) : strlen(h);
	if (n == 0 || n >= sizeof(c->host))
		return -EINVAL;
	memcpy(c->host, h, n);
	c->host[n] = '\0';
	/* drop the default port: curl would not send it in Host either */
	if ((!strcmp(c->scheme, "http") && n > 3 && !strcmp(c->host + n - 3, ":80")) ||
	    (!strcmp(c->scheme, "https") && n > 4 && !strcmp(c->host + n - 4, ":443")))
		*strrchr(c->host, ':') = '\0';
	snprintf(c->base_path, sizeof(c->base_path), "%s", slash ? slash : "");
	n = strlen(c->base_path);
	while (n && c->base_path[n - 1] == '/')
		c->base_path[--n] = '\0';
	return 0;
}

int s3_client_create(struct s3_client **out, const struct cfg *cfg, struct s3_creds_provider *creds)
{
	struct s3_client *c = calloc(1, sizeof(*c));
	int r = 0;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->cfg = cfg;
	pthread_mutex_init(&c->lock, NULL);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_locks[i], NULL);
	snprintf(c->region, sizeof(c->region), "%s", cfg->region ? cfg->region : "us-east-1");
	if (cfg->endpoint) {
		r = parse_endpoint(c, cfg->endpoint);
		if (r)
			goto out;
		c->path_style = cfg->force_path_style;
	} else {
		snprintf(c->scheme, sizeof(c->scheme), "https");
		c->path_style = cfg->force_path_style;
	}
	if (creds) {
		c->creds = creds;
	} else {
		r = s3_creds_provider_create(&c->creds, cfg);
		if (r)
			goto out;
		c->own_creds = true;
	}
	c->share = curl_share_init();
	if (!c->share) {
		r = -ENOMEM;
		goto out;
	}
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	*out = c;
	c = NULL;
out:
	if (c)
		s3_client_destroy(c);
	return r;
}

void s3_client_destroy(struct s3_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_pool; i++)
		curl_easy_cleanup(c->pool[i]);
	free(c->pool);
	if (c->share)
		curl_share_cleanup(c->share);
	if (c->own_creds)
		s3_creds_provider_destroy(c->creds);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void s3_client_retries(struct s3_client *c, uint64_t out[S3_RETRY_CAUSES])
{
	for (int i = 0; i < S3_RETRY_CAUSES; i++)
		out[i] = __atomic_load_n(&c->retries[i], __ATOMIC_RELAXED);
}

const char *s3_client_region(struct s3_client *c)
{
	return c->region;
}

static const char *bucket_or_default(struct s3_client *c, const char *bucket)
{
	return bucket ? bucket : c->cfg->bucket ? c->cfg->bucket : "";
}

char *s3_client_url(struct s3_client *c, const char *bucket, const char *key)
{
	char *s = NULL;

	if (asprintf(&s, "s3://%s/%s", bucket_or_default(c, bucket), key ? key : "") < 0)
		return NULL;
	return s;
}

static CURL *pool_get(struct s3_client *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->n_pool)
		h = c->pool[--c->n_pool];
	pthread_mutex_unlock(&c->lock);
	if (!h)
		h = curl_easy_init();
	else
		curl_easy_reset(h);	/* keeps its live connections */
	return h;
}

static void pool_put(struct s3_client *c, CURL *h)
{
	pthread_mutex_lock(&c->lock);
	if (c->n_pool == c->cap_pool) {
		size_t ncap = c->cap_pool ? c->cap_pool * 2 : 16;
		CURL **np = realloc(c->pool, ncap * sizeof(*np));

		if (!np) {
			pthread_mutex_unlock(&c->lock);
			curl_easy_cleanup(h);
			return;
		}
		c->pool = np;
		c->cap_pool = ncap;
	}
	c->pool[c->n_pool++] = h;
	pthread_mutex_unlock(&c->lock);
}

/* ---------------------------------------------------------------- request building */

static int add_header(struct req *r, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int add_header(struct req *r, const char *name, const char *fmt, ...)
{
	va_list ap;
	char *v = NULL;
	int n;

	if (r->n_hdrs == MAX_HEADERS)
		return -E2BIG;
	va_start(ap, fmt);
	n = vasprintf(&v, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	r->hdr_names[r->n_hdrs] = name;
	r->hdr_values[r->n_hdrs++] = v;
	return 0;
}

static void req_release(struct req *r)
{
	for (size_t i = 0; i < r->n_hdrs; i++)
		free(r->hdr_values[i]);
	r->n_hdrs = 0;
	free(r->err_body);
	r->err_body = NULL;
	if (r->sink == SINK_MEM) {
		free(r->out);
		r->out = NULL;
	}
}

/* Virtual-hosted style needs a DNS-safe bucket; dotted buckets break TLS names, so they
 * go path-style like the AWS SDKs do. */
static bool use_path_style(struct s3_client *c, const char *bucket)
{
	if (c->path_style || !*bucket)
		return true;
	if (!strcmp(c->scheme, "https") && strchr(bucket, '.'))
		return true;
	for (const char *p = bucket; *p; p++)
		if (*p == '_' || (*p >= 'A' && *p <= 'Z'))
			return true;
	return false;
}

/* host (for the Host header) and path (encoded, for URL and signature) of a request. */
static int req_target(struct s3_client *c, const struct req *r, const char *region,
		      char *host, size_t hsize, char **path)
{
	char *ekey = NULL;
	bool ps = use_path_style(c, r->bucket);
	int n;

	if (c->host[0])
		n = ps ? snprintf(host, hsize, "%s", c->host)
		       : snprintf(host, hsize, "%s.%s", r->bucket, c->host);
	else if (!strcmp(region, "us-east-1"))
		n = ps ? snprintf(host, hsize, "s3.amazonaws.com")
		       : snprintf(host, hsize, "%s.s3.amazonaws.com", r->bucket);
	else
		n = ps ? snprintf(host, hsize, "s3.%s.amazonaws.com", region)
		       : snprintf(host, hsize, "%s.s3.%s.amazonaws.com", r->bucket, region);
	if (n < 0 || (size_t)n >= hsize)
		return -ENAMETOOLONG;
	if (r->key) {
		ekey = sigv4_uri_encode(r->key, strlen(r->key), true);
		if (!ekey)
			return -ENOMEM;
	}
	if (ps)
		n = asprintf(path, "%s/%s%s%s", c->base_path, r->bucket, r->key ? "/" : "",
			     ekey ? ekey : "");
	else
		n = asprintf(path, "%s/%s", c->base_path, ekey ? ekey : "");
	free(ekey);
	return n < 0 ? -ENOMEM : 0;
}

/* SHA-256 (hex) and optionally MD5 / SHA-256 (base64) of a byte range of fd. */
static int hash_fd(int fd, uint64_t off, uint64_t len, char hex[65], char *md5_b64,
		   char *sha_b64)
{
	EVP_MD_CTX *sha = EVP_MD_CTX_new(), *md5 = md5_b64 ? EVP_MD_CTX_new() : NULL;
	unsigned char *buf = malloc(256 * 1024), dig[EVP_MAX_MD_SIZE];
	unsigned int dlen;
	int r = 0;

	if (!sha || !buf || (md5_b64 && !md5)) {
		r = -ENOMEM;
		goto out;
	}
	EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
	if (md5)
		EVP_DigestInit_ex(md5, EVP_md5(), NULL);
	while (len) {
		size_t want = len > 256 * 1024 ? 256 * 1024 : (size_t)len;
		ssize_t n = pread(fd, buf, want, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0) {		/* the file shrank under us */
			r = -ESTALE;
			goto out;
		}
		EVP_DigestUpdate(sha, buf, (size_t)n);
		if (md5)
			EVP_DigestUpdate(md5, buf, (size_t)n);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	EVP_DigestFinal_ex(sha, dig, &dlen);
	for (unsigned i = 0; i < dlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", dig[i]);
	if (sha_b64)
		EVP_EncodeBlock((unsigned char *)sha_b64, dig, (int)dlen);
	if (md5) {
		EVP_DigestFinal_ex(md5, dig, &dlen);
		EVP_EncodeBlock((unsigned char *)md5_b64, dig, (int)dlen);
	}
out:
	EVP_MD_CTX_free(sha);
	EVP_MD_CTX_free(md5);
	free(buf);
	return r;
}

static void hash_mem(const void *p, size_t len, char hex[65], char *md5_b64)
{
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int dlen;

	sigv4_sha256_hex(p, len, hex);
	if (md5_b64) {
		EVP_Digest(p, len, dig, &dlen, EVP_md5(), NULL);
		EVP_EncodeBlock((unsigned char *)md5_b64, dig, (int)dlen);
	}
}

/* ---------------------------------------------------------------- curl callbacks */

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ctx)
{
	struct req *r = ctx;
	size_t want = size * nitems;

	if (r->body == BODY_MEM) {
		size_t left = r->mem_len - (size_t)r->body_pos;

		if (want > left)
			want = left;
		memcpy(buf, (const char *)r->mem + r->body_pos, want);
		r->body_pos += want;
		return want;
	}
	if (r->body == BODY_FD) {
		uint64_t left = r->fd_len - r->body_pos;
		ssize_t n;

		if (want > left)
			want = (size_t)left;
		if (want == 0)
			return 0;
		do
			n = pread(r->fd, buf, want, (off_t)(r->fd_off + r->body_pos));
		while (n < 0 && errno == EINTR);
		if (n <= 0)		/* error, or the file shrank: never send a short body */
			return CURL_READFUNC_ABORT;
		r->body_pos += (uint64_t)n;
		return (size_t)n;
	}
	return 0;
}

static int seek_cb(void *ctx, curl_off_t offset, int origin)
{
	struct req *r = ctx;

	if (origin != SEEK_SET || offset < 0)
		return CURL_SEEKFUNC_CANTSEEK;
	/* curl sends a request again by itself when a reused connection closed without an
	 * answer: refuse, so that every request sent is an attempt S3_MAX_RETRIES counts */
	if (offset == 0 && r->body_pos > 0) {
		r->resend_refused = true;
		return CURL_SEEKFUNC_FAIL;
	}
	r->body_pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct req *r = ctx;
	size_t n = size * nmemb;

	if (r->status < 200 || r->status >= 300) {
		if (r->err_len + n > ERR_BODY_MAX)
			return n;	/* keep the start; error documents are small */
		char *nb = realloc(r->err_body, r->err_len + n + 1);

		if (!nb)
			return 0;
		r->err_body = nb;
		memcpy(nb + r->err_len, data, n);
		r->err_len += n;
		nb[r->err_len] = '\0';
		return n;
	}
	switch (r->sink) {
	case SINK_DISCARD:
		return n;
	case SINK_MEM:
		if (r->out_len + n + 1 > r->out_cap) {
			size_t ncap = r->out_cap ? r->out_cap : 8192;
			char *nb;

			while (ncap < r->out_len + n + 1)
				ncap *= 2;
			if (ncap > MEM_BODY_MAX)
				return 0;
			nb = realloc(r->out, ncap);
			if (!nb)
				return 0;
			r->out = nb;
			r->out_cap = ncap;
		}
		memcpy(r->out + r->out_len, data, n);
		r->out_len += n;
		r->out[r->out_len] = '\0';
		return n;
	case SINK_BUF:
		if (r->out_len + n > r->out_cap)
			return 0;
		memcpy(r->out + r->out_len, data, n);
		r->out_len += n;
		r->got += n;
		return n;
	case SINK_FD:
		for (size_t done = 0; done < n;) {
			ssize_t w = pwrite(r->out_fd, data + done, n - done,
					   r->out_fd_off + (off_t)r->got);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				r->write_errno = errno;
				return 0;
			}
			done += (size_t)w;
			r->got += (uint64_t)w;
		}
		return n;
	}
	return 0;
}

static bool hdr_is(const char *line, size_t len, const char *name, const char **val, size_t *vlen)
{
	size_t nl = strlen(name);

	if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
		return false;
	*val = line + nl + 1;
	while (*val < line + len && (**val == ' ' || **val == '\t'))
		(*val)++;
	*vlen = (size_t)(line + len - *val);
	while (*vlen && ((*val)[*vlen - 1] == '\r' || (*val)[*vlen - 1] == '\n' ||
			 (*val)[*vlen - 1] == ' '))
		(*vlen)--;
	return true;
}

static void copy_val(char *dst, size_t size, const char *v, size_t n)
{
	if (n >= size)
		n = size - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static size_t header_cb(char *line, size_t size, size_t nitems, void *ctx)
{
	struct req *r = ctx;
	size_t len = size * nitems;
	const char *v;
	size_t vn;
	char tmp[128];

	if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
		const char *sp = memchr(line, ' ', len);

		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return len;
	}
	if (hdr_is(line, len, "ETag", &v, &vn)) {
		if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"') {
			v++;
			vn -= 2;
		}
		copy_val(r->etag, sizeof(r->etag), v, vn);
	} else if (hdr_is(line, len, "Content-Type", &v, &vn)) {
		copy_val(r->content_type, sizeof(r->content_type), v, vn);
	} else if (hdr_is(line, len, "Content-Length", &v, &vn)) {
		copy_val(tmp, sizeof(tmp), v, vn);
		r->content_length = strtoull(tmp, NULL, 10);
	} else if (hdr_is(line, len, "Last-Modified", &v, &vn)) {
		copy_val(tmp, sizeof(tmp), v, vn);
		s3_parse_http_date(tmp, &r->last_modified);
	} else if (hdr_is(line, len, "x-amz-bucket-region", &v, &vn)) {
		copy_val(r->bucket_region, sizeof(r->bucket_region), v, vn);
	} else if (hdr_is(line, len, "x-amz-meta-mode", &v, &vn)) {
		copy_val(tmp, sizeof(tmp), v, vn);
		r->meta_mode = (unsigned)strtoul(tmp, NULL, 8);
		r->have_meta_mode = true;
	} else if (hdr_is(line, len, "x-amz-meta-uid", &v, &vn)) {
		copy_val(tmp, sizeof(tmp), v, vn);
		r->meta_uid = (unsigned)strtoul(tmp, NULL, 10);
		r->have_meta_uid = true;
	} else if (hdr_is(line, len, "x-amz-meta-gid", &v, &vn)) {
		copy_val(tmp, sizeof(tmp), v, vn);
		r->meta_gid = (unsigned)strtoul(tmp, NULL, 10);
		r->have_meta_gid = true;
	} else if (hdr_is(line, len, "x-amz-meta-mtime", &v, &vn)) {
		char *dot;

		copy_val(tmp, sizeof(tmp), v, vn);
		r->meta_mtime.tv_sec = (time_t)strtoll(tmp, &dot, 10);
		r->meta_mtime.tv_nsec = 0;
		if (*dot == '.') {
			char ns[10] = "000000000";

			for (int i = 0; i < 9 && dot[1 + i] >= '0' && dot[1 + i] <= '9'; i++)
				ns[i] = dot[1 + i];
			r->meta_mtime.tv_nsec = strtol(ns, NULL, 10);
		}
		r->have_meta_mtime = true;
	}
	return len;
}

/* ---------------------------------------------------------------- one attempt */

static void note_optional(struct req *r, struct s3_error *err)
{
	const char *m = err->message, *setting = NULL;

	if (!r->optional_setting || !(err->http_status == 400 || err->http_status == 501))
		return;
	if (!strcmp(err->code, "InvalidStorageClass") || strcasestr(m, "storage-class") ||
	    strcasestr(m, "storage class"))
		setting = "S3_STORAGE_CLASS";
	else if (strcasestr(m, "tagging") || strcasestr(m, "x-amz-tag"))
		setting = "S3_TAGGING";
	else if (strcasestr(m, "encryption") || strcasestr(m, "server-side"))
		setting = "S3_SSE";
	else if (strcasestr(m, "checksum") || strcasestr(m, "content-md5"))
		setting = "S3_CHECKSUM";
	else if (!strcmp(err->code, "NotImplemented") || !strcmp(err->code, "InvalidArgument"))
		setting = r->optional_setting;
	if (setting)
		snprintf(err->setting, sizeof(err->setting), "%s", setting);
}

static int do_attempt(void *ctx, int attempt, uint64_t timeout_ms, struct s3_error *err)
{
	struct req *r = ctx;
	struct s3_client *c = r->c;
	const struct cfg *cfg = c->cfg;
	struct sigv4_header sh[MAX_HEADERS + 1];
	struct sigv4_request sreq = { 0 };
	struct sigv4_params params = { 0 };
	struct sigv4_result sres = { 0 };
	struct sigv4_creds screds;
	struct s3_creds cr;
	struct curl_slist *hl = NULL;
	char host[320], region[32], *path = NULL, *url = NULL, line[512];
	CURL *h = NULL;
	CURLcode cc;
	int rc;

	(void)attempt;
	r->status = 0;
	r->body_pos = 0;
	r->resend_refused = false;
	r->got = 0;
	r->write_errno = 0;
	r->err_len = 0;
	r->etag[0] = '\0';
	if (r->sink == SINK_MEM || r->sink == SINK_BUF)
		r->out_len = 0;

	rc = s3_creds_get(c->creds, &cr);
	if (rc) {
		set_err(err, "NoCredentials", s3_creds_last_error(c->creds));
		return rc;
	}
	pthread_mutex_lock(&c->lock);
	snprintf(region, sizeof(region), "%s", c->region);
	pthread_mutex_unlock(&c->lock);

	rc = req_target(c, r, region, host, sizeof(host), &path);
	if (rc)
		goto out;
	if (asprintf(&url, "%s://%s%s%s%s", c->scheme, host, path, r->query && *r->query ? "?" : "",
		     r->query ? r->query : "") < 0) {
		rc = -ENOMEM;
		goto out;
	}
	sh[0].name = "Host";
	sh[0].value = host;
	for (size_t i = 0; i < r->n_hdrs; i++) {
		sh[i + 1].name = r->hdr_names[i];
		sh[i + 1].value = r->hdr_values[i];
	}
	sreq.method = r->method;
	sreq.path = path;
	sreq.query = r->query;
	sreq.headers = sh;
	sreq.n_headers = r->n_hdrs + 1;
	sreq.payload_hash = r->payload_hash;
	screds.access_key_id = cr.access_key_id;
	screds.secret_access_key = cr.secret_access_key;
	screds.session_token = cr.session_token[0] ? cr.session_token : NULL;
	params.region = region;
	params.service = "s3";
	params.when = time(NULL);
	params.content_sha256_header = true;
	rc = sigv4_sign_header(&sreq, &screds, &params, &sres);
	explicit_bzero(&cr, sizeof(cr));
	if (rc)
		goto out;

	h = pool_get(c);
	if (!h) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < sreq.n_headers; i++) {
		snprintf(line, sizeof(line), "%s: %s", sh[i].name, sh[i].value);
		hl = curl_slist_append(hl, line);
	}
	for (size_t i = 0; i < sres.n_add_headers; i++)
		hl = curl_slist_append(hl, sres.add_headers[i]);
	hl = curl_slist_append(hl, "Expect:");	/* no 100-continue round trip */
	if (r->body == BODY_NONE && !strcmp(r->method, "POST"))
		hl = curl_slist_append(hl, "Content-Type:");
	if (!hl) {
		rc = -ENOMEM;
		goto out;
	}

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_SHARE, c->share);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)cfg->connect_timeout);
	if (timeout_ms)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (cfg->ca_bundle)
		curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_bundle);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	if (!strcmp(r->method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(r->method, "PUT")) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)(r->body == BODY_MEM ? r->mem_len :
					      r->body == BODY_FD ? r->fd_len : 0));
	} else if (!strcmp(r->method, "POST")) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(r->body == BODY_MEM ? r->mem_len :
					      r->body == BODY_FD ? r->fd_len : 0));
	} else if (strcmp(r->method, "GET")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}
	if (r->body != BODY_NONE || !strcmp(r->method, "PUT") || !strcmp(r->method, "POST")) {
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, r);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
	}
	if (log_enabled(LOG_DEBUG)) {
		char qk[512];

		log_msg(LOG_DEBUG, "s3 request", "method=%s bucket=%s key=%s query=%s",
			r->method, r->bucket, log_quote(qk, sizeof(qk), r->key ? r->key : ""),
			r->query ? r->query : "");
	}

	cc = curl_easy_perform(h);
	err->curl_code = (int)cc;
	if (cc != CURLE_OK && r->status == 0) {
		set_err(err, cc == CURLE_OPERATION_TIMEDOUT ? "Timeout" :
			     cc == CURLE_COULDNT_CONNECT ? "ConnectionRefused" :
			     cc == CURLE_COULDNT_RESOLVE_HOST ? "DNSFailure" : "TransportError",
			curl_easy_strerror(cc));
		snprintf(err->message, sizeof(err->message), "%s (%s://%.160s)",
			 r->resend_refused ? "connection closed without an answer" :
			 curl_easy_strerror(cc), c->scheme, host);
		if (r->write_errno) {
			rc = -r->write_errno;
			set_err(err, "LocalWriteError", strerror(r->write_errno));
			err->curl_code = 0;
			goto out;
		}
		rc = s3_errno(0, NULL, (int)cc);
		goto out;
	}
	err->http_status = (int)r->status;
	if (cc != CURLE_OK) {	/* an answer started, then broke: truncated body etc. */
		set_err(err, "TruncatedResponse", curl_easy_strerror(cc));
		if (r->write_errno) {
			rc = -r->write_errno;
			set_err(err, "LocalWriteError", strerror(r->write_errno));
			goto out;
		}
		if (r->status >= 200 && r->status < 300) {
			err->http_status = 0;	/* retry like a transport error */
			rc = -EIO;
			goto out;
		}
	}
	if (r->status >= 200 && r->status < 300) {
		rc = 0;
		goto out;
	}
	if (r->err_body && s3_xml_parse_error(r->err_body, r->err_len, err) == 0) {
		/* code/message from S3 */
	} else if (!err->code[0]) {
		snprintf(err->code, sizeof(err->code), "%s",
			 r->status == 404 ? (r->key ? "NoSuchKey" : "NoSuchBucket") :
			 r->status == 403 ? "AccessDenied" : r->status == 301 ? "PermanentRedirect" :
			 r->status == 503 ? "SlowDown" : r->status >= 500 ? "InternalError" : "HTTPError");
		snprintf(err->message, sizeof(err->message), "HTTP %ld with no error document",
			 r->status);
	}
	if (r->bucket_region[0])
		snprintf(err->region, sizeof(err->region), "%s", r->bucket_region);
	note_optional(r, err);
	rc = s3_errno((int)r->status, err->code, 0);

	/* a wrong region: correct it once for the client and try again at once */
	if ((r->status == 301 || !strcmp(err->code, "AuthorizationHeaderMalformed") ||
	     !strcmp(err->code, "PermanentRedirect")) && err->region[0] &&
	    strcmp(err->region, region) != 0) {
		pthread_mutex_lock(&c->lock);
		snprintf(c->region, sizeof(c->region), "%s", err->region);
		pthread_mutex_unlock(&c->lock);
		log_msg(LOG_WARNING, "s3 region corrected", "configured=%s actual=%s bucket=%s",
			region, err->region, r->bucket);
		rc = -EAGAIN;
	}
out:
	if (rc && rc != -EAGAIN && log_enabled(LOG_DEBUG)) {
		char et[400];

		log_msg(LOG_DEBUG, "s3 attempt failed", "method=%s bucket=%s error=%s", r->method,
			r->bucket, log_quote(line, sizeof(line), s3_error_text(err, et, sizeof(et))));
	}
	if (h)
		pool_put(c, h);
	curl_slist_free_all(hl);
	sigv4_result_release(&sres);
	free(path);
	free(url);
	return rc;
}

static int run_request(struct s3_client *c, struct req *r, struct s3_error *err)
{
	struct s3_error local;
	struct s3_retry pol;

	if (!err)
		err = &local;
	memset(err, 0, sizeof(*err));
	r->c = c;
	if (!r->payload_hash[0]) {
		if (r->body == BODY_MEM)
			hash_mem(r->mem, r->mem_len, r->payload_hash, NULL);
		else
			hash_mem("", 0, r->payload_hash, NULL);
	}
	s3_retry_init(&pol, c->cfg->max_retries, (uint64_t)c->cfg->upload_timeout * 1000);
	pol.retries = c->retries;
	return s3_retry_run(&pol, do_attempt, r, err);
}

/* ---------------------------------------------------------------- operations */

static void req_init(struct req *r, struct s3_client *c, const char *method, const char *bucket,
		     const char *key)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->bucket = bucket_or_default(c, bucket);
	r->key = key;
	r->fd = -1;
	r->out_fd = -1;
}

/* A HEAD answer has no body, so a wrong region shows only as a bare 400/301. Ask the bucket
 * with a GET (whose error document names the region; run_request corrects it) and say whether
 * the region changed, so the HEAD is worth repeating. */
static bool region_probe(struct s3_client *c, const char *bucket, const struct s3_error *err)
{
	struct s3_list_page pg;
	struct s3_error e2;
	char before[32];

	if (err->http_status != 400 && err->http_status != 301)
		return false;
	pthread_mutex_lock(&c->lock);
	snprintf(before, sizeof(before), "%s", c->region);
	pthread_mutex_unlock(&c->lock);
	if (s3_list_page(c, bucket, NULL, NULL, NULL, 1, &pg, &e2) == 0)
		s3_list_page_release(&pg);
	return strcmp(before, s3_client_region(c)) != 0;
}

int s3_head_bucket(struct s3_client *c, const char *bucket, struct s3_error *err)
{
	struct s3_error local;
	struct req r;
	int rc;

	if (!err)
		err = &local;
	for (int i = 0; i < 2; i++) {
		req_init(&r, c, "HEAD", bucket, NULL);
		rc = run_request(c, &r, err);
		req_release(&r);
		if (rc == 0 || i == 1 || !region_probe(c, bucket, err))
			break;
	}
	return rc;
}

/* Headers every new object carries: type, metadata, and the configured optional features. */
static int add_object_headers(struct s3_client *c, struct req *r, const struct s3_put_opts *o)
{
	const struct cfg *cfg = c->cfg;
	int rc = 0;

	rc |= add_header(r, "Content-Type", "%s",
			 o && o->content_type ? o->content_type : s3_mime_type(r->key));
	if (o && o->set_meta) {
		rc |= add_header(r, "x-amz-meta-mode", "%o", o->mode);
		rc |= add_header(r, "x-amz-meta-uid", "%u", o->uid);
		rc |= add_header(r, "x-amz-meta-gid", "%u", o->gid);
		rc |= add_header(r, "x-amz-meta-mtime", "%lld.%09ld", (long long)o->mtime.tv_sec,
				 o->mtime.tv_nsec);
	}
	if (cfg->content_encoding)
		rc |= add_header(r, "Content-Encoding", "%s", cfg->content_encoding);
	if (cfg->storage_class) {
		rc |= add_header(r, "x-amz-storage-class", "%s", cfg->storage_class);
		r->optional_setting = r->optional_setting ? r->optional_setting : "S3_STORAGE_CLASS";
	}
	if (cfg->sse) {
		rc |= add_header(r, "x-amz-server-side-encryption", "%s", cfg->sse);
		if (cfg->sse_kms_key_id)
			rc |= add_header(r, "x-amz-server-side-encryption-aws-kms-key-id", "%s",
					 cfg->sse_kms_key_id);
		r->optional_setting = r->optional_setting ? r->optional_setting : "S3_SSE";
	}
	if (cfg->tagging) {
		rc |= add_header(r, "x-amz-tagging", "%s", cfg->tagging);
		r->optional_setting = r->optional_setting ? r->optional_setting : "S3_TAGGING";
	}
	return rc ? -ENOMEM : 0;
}

static int checksum_headers(struct s3_client *c, struct req *r, const char *md5, const char *sha)
{
	const char *ck = c->cfg->checksum;

	if (!ck || !strcmp(ck, "none"))
		return 0;
	r->optional_setting = r->optional_setting ? r->optional_setting : "S3_CHECKSUM";
	if (!strcmp(ck, "md5"))
		return add_header(r, "Content-MD5", "%s", md5);
	return add_header(r, "x-amz-checksum-sha256", "%s", sha);
}

static bool want_md5(struct s3_client *c)
{
	return c->cfg->checksum && !strcmp(c->cfg->checksum, "md5");
}

int s3_put_buffer(struct s3_client *c, const char *bucket, const char *key, const void *buf,
		  size_t len, const struct s3_put_opts *opts, char *etag_out, struct s3_error *err)
{
	struct req r;
	char md5[32] = "", sha[48] = "";
	unsigned char dig[32];
	int rc;

	req_init(&r, c, "PUT", bucket, key);
	r.body = BODY_MEM;
	r.mem = buf;
	r.mem_len = len;
	hash_mem(buf, len, r.payload_hash, want_md5(c) ? md5 : NULL);
	EVP_Digest(buf, len, dig, NULL, EVP_sha256(), NULL);
	EVP_EncodeBlock((unsigned char *)sha, dig, 32);
	rc = add_object_headers(c, &r, opts);
	if (!rc)
		rc = checksum_headers(c, &r, md5, sha);
	if (!rc)
		rc = run_request(c, &r, err);
	if (!rc && etag_out)
		snprintf(etag_out, 72, "%s", r.etag);
	req_release(&r);
	return rc;
}

static int put_single(struct s3_client *c, const char *bucket, const char *key, int fd,
		      uint64_t size, const struct s3_put_opts *opts, char *etag_out,
		      struct s3_error *err)
{
	struct req r;
	char md5[32] = "", sha[48] = "";
	int rc;

	req_init(&r, c, "PUT", bucket, key);
	r.body = BODY_FD;
	r.fd = fd;
	r.fd_len = size;
	rc = hash_fd(fd, 0, size, r.payload_hash, want_md5(c) ? md5 : NULL, sha);
	if (!rc)
		rc = add_object_headers(c, &r, opts);
	if (!rc)
		rc = checksum_headers(c, &r, md5, sha);
	if (!rc)
		rc = run_request(c, &r, err);
	if (!rc && etag_out)
		snprintf(etag_out, 72, "%s", r.etag);
	if (!rc && opts && opts->sha256_out)
		snprintf(opts->sha256_out, 65, "%s", r.payload_hash);	/* the body's SHA-256 */
	if (rc == -ESTALE && err)
		set_err(err, "FileChanged", "the file shrank while it was being uploaded");
	req_release(&r);
	return rc;
}

uint64_t s3_part_size_for(uint64_t configured, uint64_t size)
{
	uint64_t ps = configured ? configured : 8ULL << 20;

	while ((size + ps - 1) / ps > 10000)
		ps *= 2;
	return ps;
}

int s3_mpu_create(struct s3_client *c, const char *bucket, const char *key,
		  const struct s3_put_opts *opts, char **upload_id_out, struct s3_error *err)
{
	struct req r;
	int rc;

	*upload_id_out = NULL;
	req_init(&r, c, "POST", bucket, key);
	r.query = "uploads=";
	r.sink = SINK_MEM;
	rc = add_object_headers(c, &r, opts);
	if (!rc)
		rc = run_request(c, &r, err);
	if (!rc) {
		rc = s3_xml_parse_initiate(r.out ? r.out : "", r.out_len, upload_id_out);
		if (rc && err)
			set_err(err, "MalformedResponse", "CreateMultipartUpload answer has no UploadId");
	}
	req_release(&r);
	return rc;
}

/* upload ids are opaque server strings: encode them for the query */
static char *mpu_query(const char *upload_id, int part_number)
{
	char *eid = sigv4_uri_encode(upload_id, strlen(upload_id), false), *q = NULL;
	int n;

	if (!eid)
		return NULL;
	n = part_number > 0 ? asprintf(&q, "partNumber=%d&uploadId=%s", part_number, eid)
			    : asprintf(&q, "uploadId=%s", eid);
	free(eid);
	return n < 0 ? NULL : q;
}

/* Append "&name=encoded(value)" to *q (no '&' before the first); value NULL: skip. */
static int query_add(char **q, const char *name, const char *value)
{
	char *ev, *nq = NULL;
	int n;

	if (!value)
		return 0;
	ev = sigv4_uri_encode(value, strlen(value), false);
	if (!ev)
		return -ENOMEM;
	n = asprintf(&nq, "%s%s%s=%s", *q ? *q : "", *q ? "&" : "", name, ev);
	free(ev);
	if (n < 0)
		return -ENOMEM;
	free(*q);
	*q = nq;
	return 0;
}

int s3_mpu_upload_part(struct s3_client *c, const char *bucket, const char *key,
		       const char *upload_id, int part_number, int fd, uint64_t off, uint64_t len,
		       char *etag_out, struct s3_error *err)
{
	struct req r;
	char md5[32] = "", *q = mpu_query(upload_id, part_number);
	int rc;

	if (!q)
		return -ENOMEM;
	req_init(&r, c, "PUT", bucket, key);
	r.query = q;
	r.body = BODY_FD;
	r.fd = fd;
	r.fd_off = off;
	r.fd_len = len;
	rc = hash_fd(fd, off, len, r.payload_hash, want_md5(c) ? md5 : NULL, NULL);
	if (!rc && want_md5(c))
		rc = add_header(&r, "Content-MD5", "%s", md5);
	if (!rc)
		rc = run_request(c, &r, err);
	if (!rc && etag_out)
		snprintf(etag_out, 72, "%s", r.etag);
	req_release(&r);
	free(q);
	return rc;
}

/* A 2xx answer whose body is an error document (or unreadable): copy S3's code into err. */
static int body_error(int rc, const struct s3_error *e2, struct s3_error *err)
{
	if (!rc)
		return 0;
	if (err) {
		snprintf(err->code, sizeof(err->code), "%s", e2->code[0] ? e2->code : "MalformedResponse");
		snprintf(err->message, sizeof(err->message), "%s", e2->message);
	}
	return -EIO;
}

int s3_mpu_complete(struct s3_client *c, const char *bucket, const char *key, const char *upload_id,
		    const struct s3_part *parts, size_t n, char *etag_out, struct s3_error *err)
{
	struct req r;
	char *q = mpu_query(upload_id, 0), *body = s3_xml_build_complete(parts, n);
	char etag[72] = "";
	int rc;

	if (!q || !body) {
		free(q);
		free(body);
		return -ENOMEM;
	}
	req_init(&r, c, "POST", bucket, key);
	r.query = q;
	r.body = BODY_MEM;
	r.mem = body;
	r.mem_len = strlen(body);
	r.sink = SINK_MEM;
	rc = add_header(&r, "Content-Type", "application/xml");
	if (!rc)
		rc = run_request(c, &r, err);
	if (!rc) {
		struct s3_error e2 = { 0 };

		/* S3 may answer 200 with an Error document */
		rc = body_error(s3_xml_parse_complete(r.out ? r.out : "", r.out_len, etag, &e2), &e2, err);
	}
	if (!rc && etag_out)
		snprintf(etag_out, 72, "%s", etag);
	req_release(&r);
	free(q);
	free(body);
	return rc;
}

int s3_mpu_abort(struct s3_client *c, const char *bucket, const char *key, const char *upload_id,
		 struct s3_error *err)
{
	struct req r;
	char *q = mpu_query(upload_id, 0);
	int rc;

	if (!q)
		return -ENOMEM;
	req_init(&r, c, "DELETE", bucket, key);
	r.query = q;
	rc = run_request(c, &r, err);
	req_release(&r);
	free(q);
	return rc;
}

int s3_mpu_list_parts(struct s3_client *c, const char *bucket, const char *key,
		      const char *upload_id, struct s3_part **parts, size_t *n, struct s3_error *err)
{
	char *eid = sigv4_uri_encode(upload_id, strlen(upload_id), false);
	int marker = 0, rc = 0;
	bool truncated = true;

	*parts = NULL;
	*n = 0;
	if (!eid)
		return -ENOMEM;
	while (truncated && rc == 0) {
		struct req r;
		char *q = NULL;

		if (asprintf(&q, "part-number-marker=%d&uploadId=%s", marker, eid) < 0) {
			rc = -ENOMEM;
			break;
		}
		req_init(&r, c, "GET", bucket, key);
		r.query = q;
		r.sink = SINK_MEM;
		rc = run_request(c, &r, err);
		if (!rc)
			rc = s3_xml_parse_list_parts(r.out ? r.out : "", r.out_len, parts, n,
						     &truncated, &marker);
		req_release(&r);
		free(q);
	}
	free(eid);
	if (rc) {
		free(*parts);
		*parts = NULL;
		*n = 0;
	}
	return rc;
}

void s3_uploads_free(struct s3_upload *uploads, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(uploads[i].key);
		free(uploads[i].upload_id);
	}
	free(uploads);
}

int s3_mpu_list_uploads(struct s3_client *c, const char *bucket, const char *prefix,
			struct s3_upload **uploads, size_t *n, struct s3_error *err)
{
	char *key_marker = NULL, *id_marker = NULL;
	bool truncated = true;
	int rc = 0;

	*uploads = NULL;
	*n = 0;
	while (truncated && rc == 0) {
		struct req r;
		char *q = NULL;

		rc = query_add(&q, "key-marker", key_marker);
		rc = rc ? rc : query_add(&q, "prefix", prefix);
		rc = rc ? rc : query_add(&q, "upload-id-marker", id_marker);
		rc = rc ? rc : query_add(&q, "uploads", "");
		if (rc) {
			free(q);
			break;
		}
		free(key_marker);
		free(id_marker);
		key_marker = id_marker = NULL;
		req_init(&r, c, "GET", bucket, NULL);
		r.query = q;
		r.sink = SINK_MEM;
		rc = run_request(c, &r, err);
		if (!rc)
			rc = s3_xml_parse_list_uploads(r.out ? r.out : "", r.out_len, uploads, n,
						       &truncated, &key_marker, &id_marker);
		if (!rc && truncated && !key_marker)
			truncated = false;	/* a server that says "more" but gives no marker */
		req_release(&r);
		free(q);
	}
	free(key_marker);
	free(id_marker);
	if (rc) {
		s3_uploads_free(*uploads, *n);
		*uploads = NULL;
		*n = 0;
	}
	return rc;
}

/* Parallel parts: a few threads take part numbers from a shared counter. */
struct mpu_job {
	struct s3_client *c;
	const char *bucket, *key, *upload_id;
	int fd;
	uint64_t size, part_size;
	int n_parts;
	struct s3_part *parts;
	pthread_mutex_t lock;
	int next;		/* protected by lock */
	int rc;			/* protected by lock: first failure */
	struct s3_error err;	/* protected by lock */
};

static void *mpu_worker(void *arg)
{
	struct mpu_job *j = arg;

	for (;;) {
		struct s3_error e = { 0 };
		int i, rc;

		pthread_mutex_lock(&j->lock);
		i = j->rc ? j->n_parts : j->next++;
		pthread_mutex_unlock(&j->lock);
		if (i >= j->n_parts)
			return NULL;
		uint64_t off = (uint64_t)i * j->part_size;
		uint64_t len = off + j->part_size > j->size ? j->size - off : j->part_size;

		j->parts[i].number = i + 1;
		j->parts[i].size = len;
		rc = s3_mpu_upload_part(j->c, j->bucket, j->key, j->upload_id, i + 1, j->fd, off, len,
					j->parts[i].etag, &e);
		if (rc) {
			pthread_mutex_lock(&j->lock);
			if (!j->rc) {
				j->rc = rc;
				j->err = e;
			}
			pthread_mutex_unlock(&j->lock);
		}
	}
}

#define MPU_THREADS 4

static int put_multipart(struct s3_client *c, const char *bucket, const char *key, int fd,
			 uint64_t size, const struct s3_put_opts *opts, char *etag_out,
			 struct s3_error *err)
{
	struct mpu_job j = { .c = c, .bucket = bucket, .key = key, .fd = fd, .size = size };
	pthread_t th[MPU_THREADS];
	int n_threads = 0, rc;
	char *upload_id = NULL;

	j.part_size = s3_part_size_for(c->cfg->part_size, size);
	j.n_parts = (int)((size + j.part_size - 1) / j.part_size);
	j.parts = calloc((size_t)j.n_parts, sizeof(*j.parts));
	if (!j.parts)
		return -ENOMEM;
	rc = s3_mpu_create(c, bucket, key, opts, &upload_id, err);
	if (rc)
		goto out;
	j.upload_id = upload_id;
	if (opts && opts->mpu_event)
		opts->mpu_event(opts->mpu_ctx, key, upload_id, false);
	pthread_mutex_init(&j.lock, NULL);
	for (int i = 0; i < MPU_THREADS && i < j.n_parts; i++) {
		if (pthread_create(&th[i], NULL, mpu_worker, &j) != 0)
			break;
		n_threads++;
	}
	if (n_threads == 0)
		mpu_worker(&j);
	for (int i = 0; i < n_threads; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&j.lock);
	rc = j.rc;
	if (rc && err)
		*err = j.err;
	if (!rc)
		rc = s3_mpu_complete(c, bucket, key, upload_id, j.parts, (size_t)j.n_parts, etag_out, err);
	if (rc) {
		struct s3_error e2;
		char et[320];

		if (s3_mpu_abort(c, bucket, key, upload_id, &e2) != 0)
			log_msg(LOG_WARNING, "cannot abort multipart upload", "key=%s upload_id=%s error=%s",
				key, upload_id, log_quote(et, sizeof(et), e2.message));
		else if (opts && opts->mpu_event)
			opts->mpu_event(opts->mpu_ctx, key, upload_id, true);
	} else if (opts && opts->mpu_event) {
		opts->mpu_event(opts->mpu_ctx, key, upload_id, true);
	}
out:
	free(upload_id);
	free(j.parts);
	return rc;
}

int s3_put_file(struct s3_client *c, const char *bucket, const char *key, int fd, uint64_t size,
		const struct s3_put_opts *opts, char *etag_out, struct s3_error *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
	if (size >= c->cfg->multipart_threshold && c->cfg->multipart_threshold)
		return put_multipart(c, bucket, key, fd, size, opts, etag_out, err);
	return put_single(c, bucket, key, fd, size, opts, etag_out, err);
}

static void fill_info(const struct req *r, struct s3_object_info *info)
{
	memset(info, 0, sizeof(*info));
	info->size = r->content_length;
	info->mtime = r->last_modified;
	snprintf(info->etag, sizeof(info->etag), "%s", r->etag);
	snprintf(info->content_type, sizeof(info->content_type), "%s", r->content_type);
	info->has_meta = r->have_meta_mode;
	info->mode = r->meta_mode;
	info->uid = r->meta_uid;
	info->gid = r->meta_gid;
	if (r->have_meta_mtime) {
		info->mtime = r->meta_mtime.tv_sec;
		info->mtime_nsec = r->meta_mtime.tv_nsec;
	}
}

static int range_header(struct req *r, uint64_t off, uint64_t len)
{
	if (off == 0 && len == 0)
		return 0;
	if (len == 0)
		return add_header(r, "Range", "bytes=%" PRIu64 "-", off);
	return add_header(r, "Range", "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
}

int s3_get_to_fd(struct s3_client *c, const char *bucket, const char *key, uint64_t off,
		 uint64_t len, int fd, off_t fd_off, uint64_t *got, struct s3_object_info *info,
		 struct s3_error *err)
{
	struct req r;
	int rc;

	req_init(&r, c, "GET", bucket, key);
	r.sink = SINK_FD;
	r.out_fd = fd;
	r.out_fd_off = fd_off;
	rc = range_header(&r, off, len);
	if (!rc)
		rc = run_request(c, &r, err);
	if (got)
		*got = rc ? 0 : r.got;
	if (!rc && info)
		fill_info(&r, info);
	req_release(&r);
	return rc;
}

int s3_get_to_buffer(struct s3_client *c, const char *bucket, const char *key, uint64_t off,
		     size_t len, void *buf, size_t *got, struct s3_error *err)
{
	struct req r;
	int rc;

	if (len == 0) {
		*got = 0;
		return 0;
	}
	req_init(&r, c, "GET", bucket, key);
	r.sink = SINK_BUF;
	r.out = buf;
	r.out_cap = len;
	rc = range_header(&r, off, len);
	if (!rc)
		rc = run_request(c, &r, err);
	*got = rc ? 0 : r.out_len;
	r.out = NULL;		/* the caller's */
	req_release(&r);
	return rc;
}

int s3_head_object(struct s3_client *c, const char *bucket, const char *key,
		   struct s3_object_info *info, struct s3_error *err)
{
	struct req r;
	int rc;

	struct s3_error local;

	if (!err)
		err = &local;
	for (int i = 0; i < 2; i++) {
		req_init(&r, c, "HEAD", bucket, key);
		rc = run_request(c, &r, err);
		if (!rc && info)
			fill_info(&r, info);
		req_release(&r);
		if (rc == 0 || i == 1 || !region_probe(c, bucket, err))
			break;
	}
	return rc;
}

int s3_list_page(struct s3_client *c, const char *bucket, const char *prefix, const char *delimiter,
		 const char *token, int max_keys, struct s3_list_page *page, struct s3_error *err)
{
	struct req r;
	char *q = NULL, mk[16];
	int rc;

	memset(page, 0, sizeof(*page));
	snprintf(mk, sizeof(mk), "%d", max_keys);
	rc = query_add(&q, "continuation-token", token);
	rc = rc ? rc : query_add(&q, "delimiter", delimiter);
	rc = rc ? rc : query_add(&q, "encoding-type", "url");
	rc = rc ? rc : query_add(&q, "list-type", "2");
	rc = rc ? rc : query_add(&q, "max-keys", max_keys > 0 ? mk : NULL);
	rc = rc ? rc : query_add(&q, "prefix", prefix);
	if (rc) {
		free(q);
		return rc;
	}
	req_init(&r, c, "GET", bucket, NULL);
	r.query = q;
	r.sink = SINK_MEM;
	rc = run_request(c, &r, err);
	if (!rc) {
		rc = s3_xml_parse_list(r.out ? r.out : "", r.out_len, page);
		if (rc && err)
			set_err(err, "MalformedResponse", "cannot parse the ListObjectsV2 answer");
	}
	req_release(&r);
	free(q);
	return rc;
}

int s3_delete_object(struct s3_client *c, const char *bucket, const char *key, struct s3_error *err)
{
	struct req r;
	int rc;

	req_init(&r, c, "DELETE", bucket, key);
	rc = run_request(c, &r, err);
	req_release(&r);
	return rc;
}

int s3_delete_objects(struct s3_client *c, const char *bucket, const char *const *keys, size_t n,
		      struct s3_error *err)
{
	int rc = 0;

	for (size_t done = 0; done < n && rc == 0;) {
		size_t batch = n - done > 1000 ? 1000 : n - done, n_err = 0;
		char *body = s3_xml_build_delete(keys + done, batch), md5[32];
		struct req r;

		if (!body)
			return errno == EINVAL ? -EINVAL : -ENOMEM;
		req_init(&r, c, "POST", bucket, NULL);
		r.query = "delete=";
		r.body = BODY_MEM;
		r.mem = body;
		r.mem_len = strlen(body);
		r.sink = SINK_MEM;
		hash_mem(body, r.mem_len, r.payload_hash, md5);
		rc = add_header(&r, "Content-MD5", "%s", md5);	/* required by DeleteObjects */
		if (!rc)
			rc = add_header(&r, "Content-Type", "application/xml");
		if (!rc)
			rc = run_request(c, &r, err);
		if (!rc) {
			struct s3_error e2 = { 0 };

			rc = s3_xml_parse_delete(r.out ? r.out : "", r.out_len, &n_err, &e2);
			rc = body_error(rc || n_err ? -EIO : 0, &e2, err);
		}
		req_release(&r);
		free(body);
		done += batch;
	}
	return rc;
}

int s3_copy_object(struct s3_client *c, const char *src_bucket, const char *src_key,
		   const char *bucket, const char *key, struct s3_error *err)
{
	struct req r;
	char *esrc = sigv4_uri_encode(src_key, strlen(src_key), true), etag[72];
	int rc;

	if (!esrc)
		return -ENOMEM;
	req_init(&r, c, "PUT", bucket, key);
	r.sink = SINK_MEM;
	rc = add_header(&r, "x-amz-copy-source", "/%s/%s", bucket_or_default(c, src_bucket), esrc);
	if (!rc)
		rc = run_request(c, &r, err);
	if (!rc) {
		struct s3_error e2 = { 0 };

		rc = body_error(s3_xml_parse_copy(r.out ? r.out : "", r.out_len, etag, &e2), &e2, err);
	}
	req_release(&r);
	free(esrc);
	return rc;
}
