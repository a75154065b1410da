/* test_sigv4.c - the SigV4 signer against the AWS test vectors, plus URI encoding and contracts.
 *
 * The vector cases are found at run time: every folder under aws-c-auth-v4/ and s3-doc-examples/
 * of $SIGV4_VECTORS (default ../shared/sigv4, relative to the repository root) is one result
 * line, "PASS: test_sigv4/<suite>/<case>". request.txt is parsed in place (obs-fold continuation
 * lines are unfolded into the previous header value with their whitespace, which the signer then
 * folds), context.json gives credentials and flags, and the header form (and, where query-*.txt
 * exist, the presigned form) is compared file by file. Following aws-c-auth, the payload hash is
 * always the SHA-256 of the body; sign_body only asks for the x-amz-content-sha256 header.
 * The table cases run first through the harness's t_run().
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <cJSON.h>

#include "harness.h"
#include "sigv4.h"

#define MAX_HEADERS 32

struct vreq {
	const char *method, *path, *query, *body;
	size_t body_len;
	struct sigv4_header h[MAX_HEADERS];
	size_t nh;
};

static const struct sigv4_creds test_creds = {
	"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL
};

static void test_uri_encode(void)
{
	static const struct {
		const char *in;
		bool keep_slash;
		const char *want;
	} t[] = {
		{ " ", false, "%20" },
		{ "+", false, "%2B" },
		{ "$", false, "%24" },
		{ "=", false, "%3D" },
		{ "~", false, "~" },
		{ "%", false, "%25" },
		{ "\xc3\xa9", false, "%C3%A9" },
		{ "a/b", true, "a/b" },
		{ "a/b", false, "a%2Fb" },
		{ "", false, "" },
		{ "-._~09AZaz", false, "-._~09AZaz" },
		{ "key (1)&x=y", true, "key%20%281%29%26x%3Dy" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *got = sigv4_uri_encode(t[i].in, strlen(t[i].in), t[i].keep_slash);

		T_EQ_STR(got, t[i].want);
		free(got);
	}
	/* len bounds the input, not the NUL */
	char *got = sigv4_uri_encode("a b/c", 3, false);

	T_EQ_STR(got, "a%20b");
	free(got);
}

static void test_sha256(void)
{
	char hex[65];

	sigv4_sha256_hex("", 0, hex);
	T_EQ_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sigv4_sha256_hex("abc", 3, hex);
	T_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_errors(void)
{
	struct sigv4_header h[] = { { "Host", "example.com" } };
	struct sigv4_request req = { "GET", "/", NULL, h, 1, NULL };
	struct sigv4_params p = { "us-east-1", "s3", 0, false, false, false, true, 0 };
	struct sigv4_result r;

	T_EQ_INT(sigv4_sign_query(&req, &test_creds, &p, &r), -EINVAL);	/* expires 0 */
	T_CHECK(r.signed_query == NULL && r.canonical_request == NULL);
	p.expires = 604801;
	T_EQ_INT(sigv4_sign_query(&req, &test_creds, &p, &r), -EINVAL);
	req.n_headers = 0;
	T_EQ_INT(sigv4_sign_header(&req, &test_creds, &p, &r), -EINVAL);	/* no Host */
	T_CHECK(r.n_add_headers == 0 && r.authorization == NULL);
	req.n_headers = 1;
	req.method = NULL;
	T_EQ_INT(sigv4_sign_header(&req, &test_creds, &p, &r), -EINVAL);
	req.method = "GET";
	T_EQ_INT(sigv4_sign_header(&req, &test_creds, &p, &r), 0);
	sigv4_result_release(&r);
	/* a caller's X-Amz-Date must be the signing time */
	struct sigv4_header h2[] = { { "Host", "example.com" }, { "x-amz-date", "20150830T123600Z" } };

	req.headers = h2;
	req.n_headers = 2;
	T_EQ_INT(sigv4_sign_header(&req, &test_creds, &p, &r), -EINVAL);
	T_CHECK(r.canonical_request == NULL);
}

static void test_caller_headers_kept(void)
{
	struct sigv4_header h[] = {
		{ "host", "example.com" },
		{ "X-Amz-Date", "19700101T000000Z" },
		{ "X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD" },
	};
	struct sigv4_request req = { "PUT", "/k", "", h, 3, "UNSIGNED-PAYLOAD" };
	struct sigv4_creds c = test_creds;
	struct sigv4_params p = { "us-east-1", "s3", 0, false, false, false, true, 0 };
	struct sigv4_result r;

	c.session_token = "tok";
	T_EQ_INT(sigv4_sign_header(&req, &c, &p, &r), 0);
	T_EQ_INT(r.n_add_headers, 2);
	T_EQ_STR(r.add_headers[0], "X-Amz-Security-Token: tok");
	T_CHECK(r.authorization && strncmp(r.add_headers[1], "Authorization: ", 15) == 0 &&
		strcmp(r.add_headers[1] + 15, r.authorization) == 0);
	T_EQ_STR(r.canonical_request, "PUT\n/k\n\nhost:example.com\n"
		 "x-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:19700101T000000Z\n"
		 "x-amz-security-token:tok\n\n"
		 "host;x-amz-content-sha256;x-amz-date;x-amz-security-token\nUNSIGNED-PAYLOAD");
	sigv4_result_release(&r);
}

static const struct t_case cases[] = {
	{ "uri_encode", test_uri_encode },
	{ "sha256", test_sha256 },
	{ "errors", test_errors },
	{ "caller_headers_kept", test_caller_headers_kept },
};

/* "a/b" into buf; false when it does not fit. */
static bool join(char *buf, size_t size, const char *a, const char *b)
{
	int n = snprintf(buf, size, "%s/%s", a, b);

	return n >= 0 && (size_t)n < size;
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
	char path[4096];
	char *buf = NULL;
	FILE *f = NULL;
	long n;

	if (!join(path, sizeof(path), dir, name))
		goto out;
	f = fopen(path, "rb");
	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
		goto out;
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf) {
		buf[n] = '\0';
		if (len)
			*len = (size_t)n;
	}
out:
	if (f)
		fclose(f);
	return buf;
}

/* An expected-result file without its trailing newlines; NULL when absent. */
static char *expected(const char *dir, const char *name)
{
	char *s = slurp(dir, name, NULL);
	size_t n = s ? strlen(s) : 0;

	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

static void check_file(const char *dir, const char *name, const char *got)
{
	char *want = expected(dir, name);

	if (!want)
		T_FAILF("missing %s", name);
	else if (!got || strcmp(got, want) != 0)
		T_FAILF("%s:\n    got      \"%s\"\n    expected \"%s\"", name, got ? got : "(null)",
			want);
	free(want);
}

/* Parse "METHOD TARGET HTTP/1.1\nName:value\n...\n\nbody" in place. */
static int parse_request(char *buf, size_t len, struct vreq *r)
{
	char *blank = strstr(buf, "\n\n"), *p = buf, *nl, *sp1, *sp2, *q;

	r->body = "";
	r->body_len = 0;
	if (blank) {
		r->body = blank + 2;
		r->body_len = len - (size_t)(blank + 2 - buf);
		blank[1] = '\0';
	}
	for (q = buf; (q = strchr(q, '\n')) != NULL; q++)
		if (q[1] == ' ' || q[1] == '\t')
			*q = ' ';
	nl = strchr(p, '\n');
	if (!nl)
		return -1;
	*nl = '\0';
	sp1 = strchr(p, ' ');
	sp2 = strrchr(p, ' ');
	if (!sp1 || sp1 == sp2)
		return -1;
	*sp1 = *sp2 = '\0';
	r->method = p;
	r->path = sp1 + 1;
	q = strchr(sp1 + 1, '?');
	r->query = q ? q + 1 : "";
	if (q)
		*q = '\0';
	for (p = nl + 1; *p; p = nl ? nl + 1 : p + strlen(p)) {
		char *colon = strchr(p, ':');

		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		if (!colon || (nl && colon > nl) || r->nh == MAX_HEADERS)
			return -1;
		*colon = '\0';
		r->h[r->nh].name = p;
		r->h[r->nh++].value = colon + 1;
	}
	return 0;
}

static bool jbool(const cJSON *o, const char *key, bool def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static const char *jstr(const cJSON *o, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* The value of header "name" in a signed-request file, up to the end of its line. */
static char *header_in(const char *text, const char *name, size_t nlen)
{
	for (const char *l = strchr(text, '\n'); l; l = strchr(l + 1, '\n')) {
		if (strncasecmp(l + 1, name, nlen) == 0 && l[1 + nlen] == ':')
			return strndup(l + 2 + nlen, strcspn(l + 2 + nlen, "\n"));
	}
	return NULL;
}

/* Every header the signer asks for must be in the expected signed request, same value. */
static void check_added(const char *dir, const struct sigv4_result *r)
{
	char *signed_req = slurp(dir, "header-signed-request.txt", NULL);

	for (size_t i = 0; signed_req && i < r->n_add_headers; i++) {
		const char *sep = strstr(r->add_headers[i], ": ");
		char *want = sep ? header_in(signed_req, r->add_headers[i],
					     (size_t)(sep - r->add_headers[i])) : NULL;

		if (!want || strcmp(sep + 2, want) != 0)
			T_FAILF("add_headers[%zu] \"%s\" not in header-signed-request.txt (\"%s\")",
				i, r->add_headers[i], want ? want : "(absent)");
		free(want);
	}
	free(signed_req);
}

/* The query of the request line of query-signed-request.txt must equal signed_query. */
static void check_signed_query(const char *dir, const char *got)
{
	char *s = slurp(dir, "query-signed-request.txt", NULL);
	char *q = s ? strchr(s, '?') : NULL;
	char *end = q ? strchr(q, '\n') : NULL;

	if (!end) {
		T_FAILF("query-signed-request.txt: no request line with a query");
	} else {
		*end = '\0';
		end = strrchr(q, ' ');
		if (end)
			*end = '\0';
		if (!got || strcmp(got, q + 1) != 0)
			T_FAILF("signed_query:\n    got      \"%s\"\n    expected \"%s\"",
				got ? got : "(null)", q + 1);
	}
	free(s);
}

static void run_vector(const char *dir)
{
	char *raw = NULL, *ctx_text = NULL, *want = NULL;
	cJSON *ctx = NULL;
	const cJSON *cr, *extra, *it;
	struct vreq vr = { 0 };
	struct sigv4_request req;
	struct sigv4_creds creds;
	struct sigv4_params p = { 0 };
	struct sigv4_result r = { 0 };
	struct tm tm = { 0 };
	const char *ts, *end = NULL, *published;
	char body_hash[65];
	size_t len = 0;

	raw = slurp(dir, "request.txt", &len);
	ctx_text = slurp(dir, "context.json", NULL);
	ctx = ctx_text ? cJSON_Parse(ctx_text) : NULL;
	if (!raw || !ctx || parse_request(raw, len, &vr)) {
		T_FAILF("cannot read request.txt or context.json in '%s'", dir);
		goto out;
	}
	cr = cJSON_GetObjectItemCaseSensitive(ctx, "credentials");
	creds.access_key_id = jstr(cr, "access_key_id");
	creds.secret_access_key = jstr(cr, "secret_access_key");
	creds.session_token = jstr(cr, "token");
	p.region = jstr(ctx, "region");
	p.service = jstr(ctx, "service");
	ts = jstr(ctx, "timestamp");
	if (ts)
		end = strptime(ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end) {
		T_FAILF("bad timestamp in context.json");
		goto out;
	}
	p.when = timegm(&tm);
	p.normalize_path = jbool(ctx, "normalize", true);
	p.double_encode = jbool(ctx, "double_uri_encode", true);
	p.omit_session_token = jbool(ctx, "omit_session_token", false);
	p.content_sha256_header = jbool(ctx, "sign_body", false);
	it = cJSON_GetObjectItemCaseSensitive(ctx, "expiration_in_seconds");
	p.expires = cJSON_IsNumber(it) ? (long)it->valuedouble : 3600;
	extra = cJSON_GetObjectItemCaseSensitive(ctx, "extra_signed_headers");
	cJSON_ArrayForEach(it, extra) {
		if (vr.nh == MAX_HEADERS || !cJSON_IsString(it)) {
			T_FAILF("bad extra_signed_headers");
			goto out;
		}
		vr.h[vr.nh].name = it->string;
		vr.h[vr.nh++].value = it->valuestring;
	}
	sigv4_sha256_hex(vr.body, vr.body_len, body_hash);
	req = (struct sigv4_request){ vr.method, vr.path, vr.query, vr.h, vr.nh, body_hash };

	T_EQ_INT(sigv4_sign_header(&req, &creds, &p, &r), 0);
	check_file(dir, "header-canonical-request.txt", r.canonical_request);
	check_file(dir, "header-string-to-sign.txt", r.string_to_sign);
	check_file(dir, "header-signature.txt", r.signature);
	if ((want = slurp(dir, "header-signed-request.txt", NULL)) != NULL) {
		char *auth = header_in(want, "Authorization", 13);

		T_EQ_STR(r.authorization, auth);
		free(auth);
		check_added(dir, &r);
	} else {
		check_file(dir, "header-authorization.txt", r.authorization);
	}
	published = jstr(ctx, "published_signature");
	if (published)
		T_EQ_STR(r.signature, published);
	T_CHECK(r.n_add_headers > 0 && r.authorization &&
		strncmp(r.add_headers[r.n_add_headers - 1], "Authorization: ", 15) == 0 &&
		strcmp(r.add_headers[r.n_add_headers - 1] + 15, r.authorization) == 0);
	sigv4_result_release(&r);

	free(want);
	want = expected(dir, "query-canonical-request.txt");
	if (want) {
		T_EQ_INT(sigv4_sign_query(&req, &creds, &p, &r), 0);
		T_EQ_STR(r.canonical_request, want);
		check_file(dir, "query-string-to-sign.txt", r.string_to_sign);
		check_file(dir, "query-signature.txt", r.signature);
		check_signed_query(dir, r.signed_query);
		T_CHECK(r.n_add_headers == 0 && r.authorization == NULL);
		sigv4_result_release(&r);
	}
out:
	free(want);
	cJSON_Delete(ctx);
	free(ctx_text);
	free(raw);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every case folder of one suite; returns the number of failed cases. */
static int run_suite(const char *prog, const char *root, const char *suite, const char *filter)
{
	char dir[4096], name[4096];
	char **names = NULL, **grown;
	size_t n = 0, cap = 0;
	struct dirent *de;
	struct stat st;
	DIR *d;
	int failed = 0;

	d = join(dir, sizeof(dir), root, suite) ? opendir(dir) : NULL;
	if (!d) {
		printf("  cannot open '%s' (set SIGV4_VECTORS)\nFAIL: %s/%s\n", dir, prog, suite);
		return 1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || !join(name, sizeof(name), dir, de->d_name) ||
		    stat(name, &st) || !S_ISDIR(st.st_mode))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			grown = realloc(names, cap * sizeof(*names));
			if (!grown)
				break;
			names = grown;
		}
		if ((names[n] = strdup(de->d_name)) != NULL)
			n++;
	}
	closedir(d);
	if (n == 0) {
		printf("  no cases in '%s'\nFAIL: %s/%s\n", dir, prog, suite);
		failed = 1;
	}
	qsort(names, n, sizeof(*names), cmp_name);
	for (size_t i = 0; i < n; i++) {
		if (!join(name, sizeof(name), suite, names[i])) {
			free(names[i]);
			continue;
		}
		if (!filter || strstr(name, filter)) {
			t_fails = 0;
			if (join(dir, sizeof(dir), root, name))
				run_vector(dir);
			else
				T_FAILF("path too long");
			printf("%s: %s/%s\n", t_fails ? "FAIL" : "PASS", prog, name);
			fflush(stdout);
			failed += t_fails != 0;
		}
		free(names[i]);
	}
	free(names);
	return failed;
}

int main(int argc, char **argv)
{
	const char *root = getenv("SIGV4_VECTORS");
	const char *prog = strrchr(argv[0], '/');
	const char *filter = argc > 1 ? argv[1] : NULL;
	int failed = t_run(argv[0], cases, sizeof(cases) / sizeof(cases[0]), argc, argv);

	if (!root || !*root)
		root = "../shared/sigv4";
	prog = prog ? prog + 1 : argv[0];
	failed += run_suite(prog, root, "aws-c-auth-v4", filter);
	failed += run_suite(prog, root, "s3-doc-examples", filter);
	return failed ? 1 : 0;
}
