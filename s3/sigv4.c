/* sigv4.c - AWS Signature Version 4: canonical request, string to sign, signature, both forms.
 *
 * Every string is built in a small growable buffer (struct sbuf) whose allocation failure is
 * sticky, so the builders run straight through and are checked once at the end. Headers and
 * query parameters are copied into arrays of canonical (name, value) pairs and sorted with
 * qsort(): headers by name with their input position as tie-break, so repeated names join with
 * ',' in the order given; query parameters by encoded name, then encoded value. Digests and the
 * HMAC key chain use OpenSSL's one-shot EVP_Digest() and HMAC(). The header and presigned forms
 * share sign(); they differ only in where the X-Amz-* values go: into signed headers (reported
 * in add_headers), or into the canonical query (and then out->signed_query). The query form
 * ignores content_sha256_header: a presigned URL carries no extra headers. omit_session_token
 * applies to both forms, as in the AWS test suite: the token is sent but left out of the
 * signature.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sigv4.h"

#define SIGV4_ALGO	"AWS4-HMAC-SHA256"
#define EMPTY_SHA256	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MAX_EXPIRES	604800L

struct sbuf {
	char *p;	/* NUL-terminated once anything was added */
	size_t len, cap;
	bool oom;	/* sticky: an append failed */
};

/* A canonical header or query parameter; both strings are owned. */
struct pair {
	char *name;
	char *value;
	size_t idx;	/* input position, the tie-break that keeps repeated headers in order */
};

/* A header the signer adds to the request itself. */
struct extra {
	const char *name;	/* as sent */
	const char *value;
	bool sign;
};

static void sb_addn(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_add(struct sbuf *b, const char *s)
{
	sb_addn(b, s, strlen(s));
}

static void sb_addc(struct sbuf *b, char c)
{
	sb_addn(b, &c, 1);
}

/* Hand over the string (never NULL unless out of memory) and reset b. */
static char *sb_take(struct sbuf *b)
{
	char *p = b->p;

	if (b->oom) {
		free(p);
		p = NULL;
	} else if (!p) {
		p = strdup("");
	}
	memset(b, 0, sizeof(*b));
	return p;
}

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static void sb_add_enc(struct sbuf *b, const char *s, size_t n, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[3] = { '%', hex[c >> 4], hex[c & 15] };

		if (is_unreserved(c) || (keep_slash && c == '/'))
			sb_addc(b, (char)c);
		else
			sb_addn(b, e, 3);
	}
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s[0..n); a '%' not followed by two hex digits stays literal. */
static void sb_add_dec(struct sbuf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = -1, lo = -1;

		if (s[i] == '%' && i + 2 < n) {
			hi = hex_val(s[i + 1]);
			lo = hex_val(s[i + 2]);
		}
		if (hi >= 0 && lo >= 0) {
			sb_addc(b, (char)(hi << 4 | lo));
			i += 2;
		} else {
			sb_addc(b, s[i]);
		}
	}
}

char *sigv4_uri_encode(const char *s, size_t len, bool keep_slash)
{
	struct sbuf b = { 0 };

	sb_add_enc(&b, s, len, keep_slash);
	return sb_take(&b);
}

static void to_hex(const unsigned char *d, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * n] = '\0';
}

/* On an OpenSSL failure (allocation inside EVP) hex is left empty, so no signature can match. */
void sigv4_sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char md[32];

	hex[0] = '\0';
	if (EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL))
		to_hex(md, sizeof(md), hex);
}

static bool hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned int olen = 0;

	return HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg),
		    out, &olen) != NULL && olen == 32;
}

/* kSigning = HMAC chain over date, region, service, "aws4_request"; then sign sts. */
static int derive_signature(const char *secret, const char *date, const char *region,
			    const char *service, const char *sts, char sig[65])
{
	struct sbuf k = { 0 };
	unsigned char a[32], b[32];
	int rc = -ENOMEM;

	sb_add(&k, "AWS4");
	sb_add(&k, secret);
	if (k.oom)
		goto out;
	if (!hmac(k.p, k.len, date, a) || !hmac(a, 32, region, b) || !hmac(b, 32, service, a) ||
	    !hmac(a, 32, "aws4_request", b) || !hmac(b, 32, sts, a))
		goto out;
	to_hex(a, 32, sig);
	rc = 0;
out:
	if (k.p)
		OPENSSL_cleanse(k.p, k.len);
	free(k.p);
	OPENSSL_cleanse(a, sizeof(a));
	OPENSSL_cleanse(b, sizeof(b));
	return rc;
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trim, and fold inner whitespace runs to one space. */
static char *canon_value(const char *v)
{
	struct sbuf b = { 0 };
	bool gap = false;

	for (; *v; v++) {
		if (is_ws(*v)) {
			gap = b.len > 0;
			continue;
		}
		if (gap)
			sb_addc(&b, ' ');
		gap = false;
		sb_addc(&b, *v);
	}
	return sb_take(&b);
}

static char *lower_dup(const char *s)
{
	char *p = strdup(s);

	for (char *q = p; q && *q; q++)
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	return p;
}

/* Decode (when asked) then encode s[0..n) the way the canonical query wants it. */
static char *canon_qs(const char *s, size_t n, bool decode)
{
	struct sbuf raw = { 0 }, enc = { 0 };

	if (decode)
		sb_add_dec(&raw, s, n);
	else
		sb_addn(&raw, s, n);
	sb_add_enc(&enc, raw.p ? raw.p : "", raw.len, false);
	enc.oom |= raw.oom;
	free(raw.p);
	return sb_take(&enc);
}

static void pairs_free(struct pair *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].name);
		free(v[i].value);
	}
	free(v);
}

static int cmp_header(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

static int cmp_param(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/* The caller's value of header name (any case), NULL when absent. */
static const char *find_header(const struct sigv4_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

/* Canonical headers ("name:v1,v2\n" each) into ch and the signed-header list into sh. */
static int build_headers(const struct sigv4_request *req, const struct extra *add, size_t na,
			 struct sbuf *ch, struct sbuf *sh)
{
	struct pair *v = calloc(req->n_headers + na + 1, sizeof(*v));
	size_t n = 0;
	int rc = -ENOMEM;

	if (!v)
		goto out;
	for (size_t i = 0; i < req->n_headers + na; i++) {
		bool caller = i < req->n_headers;
		const struct extra *e = caller ? NULL : &add[i - req->n_headers];

		if (e && !e->sign)
			continue;
		v[n].name = lower_dup(caller ? req->headers[i].name : e->name);
		v[n].value = canon_value(caller ? req->headers[i].value : e->value);
		v[n].idx = i;
		if (!v[n].name || !v[n++].value)
			goto out;
	}
	qsort(v, n, sizeof(*v), cmp_header);
	for (size_t i = 0; i < n; i++) {
		bool first = i == 0 || strcmp(v[i].name, v[i - 1].name) != 0;

		if (first) {
			if (i)
				sb_addc(sh, ';');
			sb_add(sh, v[i].name);
			sb_add(ch, v[i].name);
			sb_addc(ch, ':');
		} else {
			sb_addc(ch, ',');
		}
		sb_add(ch, v[i].value);
		if (i + 1 == n || strcmp(v[i].name, v[i + 1].name) != 0)
			sb_addc(ch, '\n');
	}
	rc = 0;
out:
	pairs_free(v, n);
	return rc;
}

/* Canonical query from the raw query plus the extra raw (unencoded) name/value pairs. */
static int build_query(const char *q, const char *(*amz)[2], size_t na, struct sbuf *out)
{
	struct pair *v = NULL;
	size_t n = 0, max = na + 1;
	int rc = -ENOMEM;

	for (const char *s = q; *s; s++)
		max += *s == '&';
	v = calloc(max, sizeof(*v));
	if (!v)
		goto out;
	for (const char *s = q; *s;) {
		const char *e = s + strcspn(s, "&");
		const char *eq = memchr(s, '=', (size_t)(e - s));

		if (e > s) {
			v[n].name = canon_qs(s, (size_t)((eq ? eq : e) - s), true);
			v[n].value = eq ? canon_qs(eq + 1, (size_t)(e - eq - 1), true) : strdup("");
			if (!v[n].name || !v[n++].value)
				goto out;
		}
		s = *e ? e + 1 : e;
	}
	for (size_t i = 0; i < na; i++) {
		v[n].name = canon_qs(amz[i][0], strlen(amz[i][0]), false);
		v[n].value = canon_qs(amz[i][1], strlen(amz[i][1]), false);
		if (!v[n].name || !v[n++].value)
			goto out;
	}
	qsort(v, n, sizeof(*v), cmp_param);
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_addc(out, '&');
		sb_add(out, v[i].name);
		sb_addc(out, '=');
		sb_add(out, v[i].value);
	}
	rc = 0;
out:
	pairs_free(v, n);
	return rc;
}

/* RFC 3986 remove_dot_segments plus collapsing of empty segments; keeps a trailing slash. */
static void normalize_path(struct sbuf *b, const char *path)
{
	const char *tail = strrchr(path, '/');
	bool dir;

	tail = tail ? tail + 1 : path;
	dir = !*tail || strcmp(tail, ".") == 0 || strcmp(tail, "..") == 0;
	for (const char *s = path; *s;) {
		size_t n = strcspn(s, "/");

		if (n == 2 && s[0] == '.' && s[1] == '.') {
			while (b->len > 0 && b->p[--b->len] != '/')
				;
			if (b->p)
				b->p[b->len] = '\0';
		} else if (n > 0 && !(n == 1 && s[0] == '.')) {
			sb_addc(b, '/');
			sb_addn(b, s, n);
		}
		s += n + (s[n] == '/');
	}
	if (b->len == 0 || dir)
		sb_addc(b, '/');
}

static void build_uri(const char *path, const struct sigv4_params *params, struct sbuf *out)
{
	struct sbuf norm = { 0 };

	if (!*path)
		path = "/";
	if (params->normalize_path) {
		normalize_path(&norm, path);
		path = norm.p ? norm.p : "/";
	}
	if (params->double_encode)
		sb_add_enc(out, path, strlen(path), true);
	else
		sb_add(out, path);
	out->oom |= norm.oom;
	free(norm.p);
}

static bool valid(const struct sigv4_request *req, const struct sigv4_creds *creds,
		  const struct sigv4_params *params, bool query)
{
	if (!req || !creds || !params || !req->method || !req->path ||
	    (req->n_headers && !req->headers) || !creds->access_key_id ||
	    !creds->secret_access_key || !params->region || !params->service)
		return false;
	for (size_t i = 0; i < req->n_headers; i++)
		if (!req->headers[i].name || !req->headers[i].value)
			return false;
	if (query && (params->expires < 1 || params->expires > MAX_EXPIRES))
		return false;
	return find_header(req, "host") != NULL;
}

static int sign(const struct sigv4_request *req, const struct sigv4_creds *creds,
		const struct sigv4_params *params, bool query, struct sigv4_result *out)
{
	struct sbuf cr = { 0 }, ch = { 0 }, sh = { 0 }, scope = { 0 }, cred = { 0 }, tmp = { 0 };
	const char *token = creds && creds->session_token && *creds->session_token ?
			    creds->session_token : NULL;
	const char *payload, *rawq, *caller_date;
	char amz_date[20], date[9], expires[24], hash[65], sig[65];
	const char *amz[6][2] = {	/* presigned parameters in wire order; token last */
		{ "X-Amz-Algorithm", SIGV4_ALGO }, { "X-Amz-Credential", NULL },
		{ "X-Amz-Date", amz_date }, { "X-Amz-SignedHeaders", NULL },
		{ "X-Amz-Expires", expires }, { "X-Amz-Security-Token", token },
	};
	struct extra add[4];
	size_t na = 0, n_amz = query ? 5 + (token != NULL) : 0;
	struct tm tm;
	int rc = -EINVAL;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!valid(req, creds, params, query) || !gmtime_r(&params->when, &tm) ||
	    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16)
		goto out;
	caller_date = find_header(req, "x-amz-date");	/* must agree with the string to sign */
	if (caller_date && strcmp(caller_date, amz_date) != 0)
		goto out;
	memcpy(date, amz_date, 8);
	date[8] = '\0';
	payload = req->payload_hash ? req->payload_hash : EMPTY_SHA256;
	rawq = req->query ? req->query : "";
	sb_add(&scope, date);
	sb_addc(&scope, '/');
	sb_add(&scope, params->region);
	sb_addc(&scope, '/');
	sb_add(&scope, params->service);
	sb_add(&scope, "/aws4_request");
	sb_add(&cred, creds->access_key_id);
	sb_addc(&cred, '/');
	sb_add(&cred, scope.p ? scope.p : "");
	rc = -ENOMEM;
	if (scope.oom || cred.oom)
		goto out;

	if (!query) {
		if (!caller_date)
			add[na++] = (struct extra){ "X-Amz-Date", amz_date, true };
		if (token && !find_header(req, "x-amz-security-token"))
			add[na++] = (struct extra){ "X-Amz-Security-Token", token,
						    !params->omit_session_token };
		if (params->content_sha256_header && !find_header(req, "x-amz-content-sha256"))
			add[na++] = (struct extra){ "x-amz-content-sha256", payload, true };
	}
	if (build_headers(req, add, na, &ch, &sh) || ch.oom || sh.oom)
		goto out;

	snprintf(expires, sizeof(expires), "%ld", params->expires);
	amz[1][1] = cred.p;
	amz[3][1] = sh.p;

	sb_add(&cr, req->method);
	sb_addc(&cr, '\n');
	build_uri(req->path, params, &cr);
	sb_addc(&cr, '\n');
	if (build_query(rawq, amz, n_amz - (token && query && params->omit_session_token), &cr))
		goto out;
	sb_addc(&cr, '\n');
	sb_add(&cr, ch.p);
	sb_addc(&cr, '\n');
	sb_add(&cr, sh.p);
	sb_addc(&cr, '\n');
	sb_add(&cr, payload);
	if (cr.oom)
		goto out;
	out->canonical_request = sb_take(&cr);
	sigv4_sha256_hex(out->canonical_request, strlen(out->canonical_request), hash);

	sb_add(&tmp, SIGV4_ALGO "\n");
	sb_add(&tmp, amz_date);
	sb_addc(&tmp, '\n');
	sb_add(&tmp, scope.p);
	sb_addc(&tmp, '\n');
	sb_add(&tmp, hash);
	out->string_to_sign = sb_take(&tmp);
	if (!out->string_to_sign || !*hash ||
	    derive_signature(creds->secret_access_key, date, params->region, params->service,
			     out->string_to_sign, sig))
		goto out;
	out->signature = strdup(sig);
	out->amz_date = strdup(amz_date);
	if (!out->signature || !out->amz_date)
		goto out;

	if (query) {
		sb_add(&tmp, rawq);
		for (size_t i = 0; i < n_amz; i++) {
			if (i || *rawq)
				sb_addc(&tmp, '&');
			sb_add(&tmp, amz[i][0]);
			sb_addc(&tmp, '=');
			sb_add_enc(&tmp, amz[i][1], strlen(amz[i][1]), false);
		}
		sb_add(&tmp, "&X-Amz-Signature=");
		sb_add(&tmp, sig);
		if (!(out->signed_query = sb_take(&tmp)))
			goto out;
	} else {
		sb_add(&tmp, SIGV4_ALGO " Credential=");
		sb_add(&tmp, cred.p);
		sb_add(&tmp, ", SignedHeaders=");
		sb_add(&tmp, sh.p);
		sb_add(&tmp, ", Signature=");
		sb_add(&tmp, sig);
		if (!(out->authorization = sb_take(&tmp)))
			goto out;
		add[na++] = (struct extra){ "Authorization", out->authorization, false };
		for (size_t i = 0; i < na; i++) {
			sb_add(&tmp, add[i].name);
			sb_add(&tmp, ": ");
			sb_add(&tmp, add[i].value);
			if (!(out->add_headers[out->n_add_headers++] = sb_take(&tmp)))
				goto out;
		}
	}
	rc = 0;
out:
	free(cr.p);
	free(ch.p);
	free(sh.p);
	free(scope.p);
	free(cred.p);
	free(tmp.p);
	if (rc)
		sigv4_result_release(out);
	return rc;
}

int sigv4_sign_header(const struct sigv4_request *req, const struct sigv4_creds *creds,
		      const struct sigv4_params *params, struct sigv4_result *out)
{
	return sign(req, creds, params, false, out);
}

int sigv4_sign_query(const struct sigv4_request *req, const struct sigv4_creds *creds,
		     const struct sigv4_params *params, struct sigv4_result *out)
{
	return sign(req, creds, params, true, out);
}

void sigv4_result_release(struct sigv4_result *r)
{
	if (!r)
		return;
	free(r->canonical_request);
	free(r->string_to_sign);
	free(r->signature);
	free(r->amz_date);
	for (size_t i = 0; i < r->n_add_headers; i++)
		free(r->add_headers[i]);
	free(r->authorization);
	free(r->signed_query);
	memset(r, 0, sizeof(*r));
}
