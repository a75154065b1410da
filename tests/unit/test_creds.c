/* test_creds.c - unit tests of the AWS credential chain, ECS and IMDS against a loopback fake.
 *
 * Environment and shared-file cases build a struct cfg by hand (string literals, never
 * cfg_release()d) and temp files under /tmp. ECS and IMDSv2 cases start
 * tests/fake_metadata.py (python3 from PATH; S3JOBFS_TESTS_DIR overrides "tests") in its own
 * process group with a pipe on its stdin, read its port from its first line of output, point
 * the cfg at it and read its /_stats request counts afterwards; each case kills the group and
 * reaps it before returning, and the fake also exits when the pipe closes, so nothing outlives
 * the binary even when a case crashes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>

#include "cfg.h"
#include "harness.h"
#include "log.h"
#include "s3_creds.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRET"
#define TOKEN "IQoJb3JpZ2luX2VjzzSESSIONTOKEN"

/* ---- helpers ---- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A cfg with nothing set but IMDS disabled, like cfg_load() with an empty environment. */
static void cfg_empty(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->aws_profile = "default";
	c->aws_imds_disabled = true;
	c->aws_shared_credentials_file = "/nonexistent/s3jobfs-test/credentials";
}

/* Resolve c once: rc of s3_creds_get(), creds into *out. */
static int get_once(const struct cfg *c, struct s3_creds *out, char *source, size_t srcsize,
		    char *err, size_t errsize)
{
	struct s3_creds_provider *p = NULL;
	int r;

	memset(out, 0, sizeof(*out));
	r = s3_creds_provider_create(&p, c);
	if (r)
		return r;
	r = s3_creds_get(p, out);
	if (source)
		snprintf(source, srcsize, "%s", s3_creds_source(p));
	if (err)
		snprintf(err, errsize, "%s", s3_creds_last_error(p));
	s3_creds_provider_destroy(p);
	return r;
}

struct tmpdir {
	char dir[64];
	char file[128];
};

/* Write text into a fresh temp dir's `name` (name may contain one subdirectory). */
static int tmp_write(struct tmpdir *t, const char *name, const char *text)
{
	const char *slash = strchr(name, '/');
	FILE *f;

	snprintf(t->dir, sizeof(t->dir), "/tmp/s3jobfs-creds-XXXXXX");
	if (!mkdtemp(t->dir))
		return -errno;
	if (slash) {
		char sub[128];

		snprintf(sub, sizeof(sub), "%s/%.*s", t->dir, (int)(slash - name), name);
		if (mkdir(sub, 0700))
			return -errno;
	}
	snprintf(t->file, sizeof(t->file), "%s/%s", t->dir, name);
	f = fopen(t->file, "w");
	if (!f)
		return -errno;
	fputs(text, f);
	return fclose(f) ? -errno : 0;
}

static void tmp_remove(struct tmpdir *t, const char *subdir)
{
	unlink(t->file);
	if (subdir) {
		char sub[128];

		snprintf(sub, sizeof(sub), "%s/%s", t->dir, subdir);
		rmdir(sub);
	}
	rmdir(t->dir);
}

/* ---- the fake metadata server ---- */

struct fake {
	pid_t pid;
	int in_fd;		/* its stdin: the fake exits when this closes */
	int port;
	char base[64];		/* http://127.0.0.1:PORT */
};

/* Start tests/fake_metadata.py with extra arguments (NULL-terminated). 0 or -errno. */
static int fake_start(struct fake *fk, const char *const *args)
{
	const char *dir = getenv("S3JOBFS_TESTS_DIR");
	const char *argv[16];
	char script[512], line[32];
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, r = 0;
	size_t n = 0, a = 0;

	memset(fk, 0, sizeof(*fk));
	fk->pid = -1;
	fk->in_fd = -1;
	snprintf(script, sizeof(script), "%s/fake_metadata.py", dir && *dir ? dir : "tests");
	argv[a++] = "python3";
	argv[a++] = script;
	argv[a++] = "--exit-on-eof";
	for (; args && *args && a < sizeof(argv) / sizeof(argv[0]) - 1; args++)
		argv[a++] = *args;
	argv[a] = NULL;
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
		r = -errno;
		goto out;
	}
	fflush(NULL);
	fk->pid = fork();
	if (fk->pid < 0) {
		r = -errno;
		goto out;
	}
	if (fk->pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	setpgid(fk->pid, fk->pid);
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	fk->in_fd = in[1];
	in[1] = -1;
	/* the first line is the port; 20 s covers a cold python start */
	while (n < sizeof(line) - 1) {
		struct pollfd pfd = { .fd = out[0], .events = POLLIN };
		ssize_t got;

		if (poll(&pfd, 1, 20000) <= 0) {
			r = -ETIMEDOUT;
			goto out;
		}
		got = read(out[0], line + n, 1);
		if (got <= 0) {
			r = -EIO;
			goto out;
		}
		if (line[n] == '\n')
			break;
		n++;
	}
	line[n] = '\0';
	fk->port = (int)strtol(line, NULL, 10);
	if (fk->port <= 0 || fk->port > 65535) {
		r = -EIO;
		goto out;
	}
	snprintf(fk->base, sizeof(fk->base), "http://127.0.0.1:%d", fk->port);
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	if (r)
		fprintf(stdout, "  cannot start %s: %s (run from the source tree or set S3JOBFS_TESTS_DIR)\n",
			script, strerror(-r));
	return r;
}

/* Kill the fake's process group and reap it. Safe to call twice. */
static void fake_stop(struct fake *fk)
{
	if (fk->pid > 0) {
		kill(-fk->pid, SIGKILL);
		waitpid(fk->pid, NULL, 0);
		fk->pid = -1;
	}
	if (fk->in_fd >= 0) {
		close(fk->in_fd);
		fk->in_fd = -1;
	}
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
	char *buf = ud;
	size_t have = strlen(buf), n = size * nmemb;

	if (have + n >= 8192)
		return 0;
	memcpy(buf + have, ptr, n);
	buf[have + n] = '\0';
	return n;
}

/* A plain GET to the fake (no token, no auth): HTTP status, body into buf[8192]. */
static long raw_get(const struct fake *fk, const char *path, char *buf)
{
	char url[256];
	long status = 0;
	CURL *h = curl_easy_init();

	buf[0] = '\0';
	if (!h)
		return -1;
	snprintf(url, sizeof(url), "%s%s", fk->base, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, buf);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	return status;
}

/* How many requests the fake counted under key ("GET /ecs/creds", "401", ...); -1 on error. */
static int fake_count(const struct fake *fk, const char *key)
{
	char buf[8192];
	cJSON *doc;
	int n = -1;

	if (raw_get(fk, "/_stats", buf) != 200)
		return -1;
	doc = cJSON_Parse(buf);
	if (cJSON_IsObject(doc)) {
		const cJSON *it = cJSON_GetObjectItemCaseSensitive(doc, key);

		n = cJSON_IsNumber(it) ? it->valueint : 0;
	}
	cJSON_Delete(doc);
	return n;
}

/* ---- environment ---- */

static void s3_keys_win(void)
{
	struct cfg c;
	struct s3_creds cr;
	char src[512];

	cfg_empty(&c);
	c.access_key_id = "AKIAS3KEY";
	c.secret_access_key = "s3secret";
	c.aws_access_key_id = "AKIAAWSKEY";
	c.aws_secret_access_key = "awssecret";
	c.aws_session_token = TOKEN;
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "AKIAS3KEY");
	T_EQ_STR(cr.secret_access_key, "s3secret");
	T_EQ_STR(cr.session_token, "");		/* AWS_SESSION_TOKEN is not for the S3_ keys */
	T_EQ_INT(cr.expiration, 0);
	T_EQ_STR(src, "S3_ACCESS_KEY_ID");
}

static void aws_keys_with_session_token(void)
{
	struct cfg c;
	struct s3_creds cr;
	char src[512];

	cfg_empty(&c);
	c.aws_access_key_id = "ASIAAWSKEY";
	c.aws_secret_access_key = "awssecret";
	c.aws_session_token = TOKEN;
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "ASIAAWSKEY");
	T_EQ_STR(cr.secret_access_key, "awssecret");
	T_EQ_STR(cr.session_token, TOKEN);
	T_EQ_INT(cr.expiration, 0);
	T_EQ_STR(src, "AWS_ACCESS_KEY_ID");
}

static void aws_key_without_secret_is_skipped(void)
{
	struct cfg c;
	struct s3_creds cr;
	char err[1024];

	cfg_empty(&c);
	c.aws_access_key_id = "AKIAONLYID";
	T_EQ_INT(get_once(&c, &cr, NULL, 0, err, sizeof(err)), -ENOENT);
	T_CHECK(strstr(err, "AWS_ACCESS_KEY_ID set without AWS_SECRET_ACCESS_KEY") != NULL);
}

/* ---- shared credentials file ---- */

static const char two_profiles[] =
	"[default]\n"
	"aws_access_key_id=AKIADEFAULT\n"
	"aws_secret_access_key=defaultsecret\n"
	"\n"
	"[prod]\n"
	"aws_access_key_id=AKIAPROD\n"
	"aws_secret_access_key=prodsecret\n"
	"aws_session_token=prodtoken\n";

static void file_two_profiles(void)
{
	struct tmpdir t = { "", "" };
	struct cfg c;
	struct s3_creds cr;
	char src[512], want[512];

	T_EQ_INT(tmp_write(&t, "credentials", two_profiles), 0);
	cfg_empty(&c);
	c.aws_shared_credentials_file = t.file;
	c.aws_profile = "prod";
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "AKIAPROD");
	T_EQ_STR(cr.secret_access_key, "prodsecret");
	T_EQ_STR(cr.session_token, "prodtoken");
	snprintf(want, sizeof(want), "shared credentials file %s [prod]", t.file);
	T_EQ_STR(src, want);

	c.aws_profile = "default";
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "AKIADEFAULT");
	T_EQ_STR(cr.session_token, "");

	c.aws_profile = NULL;		/* unset means "default" */
	T_EQ_INT(get_once(&c, &cr, NULL, 0, NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "AKIADEFAULT");

	/* environment keys come before the file */
	c.aws_access_key_id = "AKIAENV";
	c.aws_secret_access_key = "envsecret";
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "AKIAENV");
	T_EQ_STR(src, "AWS_ACCESS_KEY_ID");
	tmp_remove(&t, NULL);
}

static void file_missing_profile(void)
{
	struct tmpdir t = { "", "" };
	struct cfg c;
	struct s3_creds cr;
	char src[512], err[1024];

	T_EQ_INT(tmp_write(&t, "credentials", two_profiles), 0);
	cfg_empty(&c);
	c.aws_shared_credentials_file = t.file;
	c.aws_profile = "staging";
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), err, sizeof(err)), -ENOENT);
	T_CHECK(strstr(err, "no profile [staging]") != NULL);
	T_CHECK(strstr(err, t.file) != NULL);
	T_EQ_STR(src, "none");
	T_EQ_STR(cr.access_key_id, "");
	tmp_remove(&t, NULL);
}

static void file_comments_and_whitespace(void)
{
	static const char text[] =
		"# a comment line\n"
		"; another comment\n"
		"   \n"
		"[other]\n"
		"aws_access_key_id = AKIAOTHER\n"
		"aws_secret_access_key = othersecret\n"
		"  [ work ]  \n"
		"\taws_access_key_id   =   AKIAWORK  \n"
		"# aws_secret_access_key = commentedout\n"
		"region = ap-southeast-2\n"
		"aws_secret_access_key\t=\twork/Secret+Key ; trailing comment\r\n"
		"aws_session_token =worktoken # trailing comment\n"
		"[after]\n"
		"aws_access_key_id = AKIAAFTER\n";
	struct tmpdir t = { "", "" };
	struct cfg c;
	struct s3_creds cr;

	T_EQ_INT(tmp_write(&t, "credentials", text), 0);
	cfg_empty(&c);
	c.aws_shared_credentials_file = t.file;
	c.aws_profile = "work";
	T_EQ_INT(get_once(&c, &cr, NULL, 0, NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "AKIAWORK");
	T_EQ_STR(cr.secret_access_key, "work/Secret+Key");
	T_EQ_STR(cr.session_token, "worktoken");

	/* a profile without a secret is no source */
	c.aws_profile = "after";
	T_EQ_INT(get_once(&c, &cr, NULL, 0, NULL, 0), -ENOENT);
	tmp_remove(&t, NULL);
}

static void file_default_path_from_home(void)
{
	struct tmpdir t = { "", "" };
	struct cfg c;
	struct s3_creds cr;
	char src[512], want[512], *old = getenv("HOME");

	old = old ? strdup(old) : NULL;
	T_EQ_INT(tmp_write(&t, ".aws/credentials", two_profiles), 0);
	setenv("HOME", t.dir, 1);
	cfg_empty(&c);
	c.aws_shared_credentials_file = NULL;
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "AKIADEFAULT");
	snprintf(want, sizeof(want), "shared credentials file %s/.aws/credentials [default]", t.dir);
	T_EQ_STR(src, want);
	if (old)
		setenv("HOME", old, 1);
	else
		unsetenv("HOME");
	free(old);
	tmp_remove(&t, ".aws");
}

static void no_source_enoent(void)
{
	struct cfg c;
	struct s3_creds cr;
	struct s3_creds_provider *p = NULL;

	cfg_empty(&c);
	T_EQ_INT(s3_creds_provider_create(&p, &c), 0);
	T_EQ_STR(s3_creds_source(p), "none");
	T_EQ_STR(s3_creds_last_error(p), "");
	T_EQ_INT(s3_creds_get(p, &cr), -ENOENT);
	T_EQ_STR(s3_creds_source(p), "none");
	/* one sentence naming every source that was tried */
	T_CHECK(strncmp(s3_creds_last_error(p), "no AWS credentials found: ", 26) == 0);
	T_CHECK(strstr(s3_creds_last_error(p), "S3_ACCESS_KEY_ID unset") != NULL);
	T_CHECK(strstr(s3_creds_last_error(p), "AWS_ACCESS_KEY_ID unset") != NULL);
	T_CHECK(strstr(s3_creds_last_error(p), "/nonexistent/s3jobfs-test/credentials") != NULL);
	T_CHECK(strstr(s3_creds_last_error(p), "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != NULL);
	T_CHECK(strstr(s3_creds_last_error(p), "AWS_EC2_METADATA_DISABLED") != NULL);
	printf("  (last_error: %s)\n", s3_creds_last_error(p));
	s3_creds_provider_destroy(p);
}

/* Run get_once() with stderr (the log) captured into buf. */
static int get_logged(const struct cfg *c, struct s3_creds *cr, char *src, size_t srcsize,
		      char *buf, size_t bufsize)
{
	char path[] = "/tmp/s3jobfs-creds-log-XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO), r;
	ssize_t n;

	buf[0] = '\0';
	if (fd < 0 || saved < 0)
		return -EIO;
	unlink(path);
	dup2(fd, STDERR_FILENO);
	r = get_once(c, cr, src, srcsize, NULL, 0);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, bufsize - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	return r;
}

static void source_and_log_never_hold_secrets(void)
{
	struct tmpdir t = { "", "" };
	struct fake fk;
	struct cfg c;
	struct s3_creds cr;
	char src[512], log[8192], url[128];
	const char *const args[] = { "--auth", "Bearer s3cr3t-auth", NULL };
	bool started;

	log_init("test_creds", LOG_DEBUG, false);
	cfg_empty(&c);
	c.access_key_id = "AKIAS3KEY";
	c.secret_access_key = SECRET;
	T_EQ_INT(get_logged(&c, &cr, src, sizeof(src), log, sizeof(log)), 0);
	T_CHECK(strstr(src, SECRET) == NULL);
	T_CHECK(strstr(log, "aws credentials loaded") != NULL);
	T_CHECK(strstr(log, SECRET) == NULL);

	cfg_empty(&c);
	c.aws_access_key_id = "ASIAKEY";
	c.aws_secret_access_key = SECRET;
	c.aws_session_token = TOKEN;
	T_EQ_INT(get_logged(&c, &cr, src, sizeof(src), log, sizeof(log)), 0);
	T_CHECK(strstr(src, SECRET) == NULL && strstr(src, TOKEN) == NULL);
	T_CHECK(strstr(log, SECRET) == NULL && strstr(log, TOKEN) == NULL);

	T_EQ_INT(tmp_write(&t, "credentials", "[default]\naws_access_key_id=AKIAF\n"
			   "aws_secret_access_key=" SECRET "\naws_session_token=" TOKEN "\n"), 0);
	cfg_empty(&c);
	c.aws_shared_credentials_file = t.file;
	T_EQ_INT(get_logged(&c, &cr, src, sizeof(src), log, sizeof(log)), 0);
	T_CHECK(strstr(src, SECRET) == NULL && strstr(src, TOKEN) == NULL);
	T_CHECK(strstr(log, SECRET) == NULL && strstr(log, TOKEN) == NULL);
	tmp_remove(&t, NULL);

	/* ECS: neither the fake's secrets nor the Authorization token, also not on failure */
	started = fake_start(&fk, args) == 0;
	T_CHECK(started);
	if (started) {
		cfg_empty(&c);
		snprintf(url, sizeof(url), "%s/ecs/creds", fk.base);
		c.aws_container_full_uri = url;
		c.aws_container_auth_token = "Bearer s3cr3t-auth";
		T_EQ_INT(get_logged(&c, &cr, src, sizeof(src), log, sizeof(log)), 0);
		T_CHECK(strstr(src, "s3cr3t-auth") == NULL && strstr(src, "fakeSecretKey") == NULL);
		T_CHECK(strstr(log, "s3cr3t-auth") == NULL && strstr(log, "fakeSecretKey") == NULL &&
			strstr(log, "fakeSessionToken") == NULL);
		c.aws_container_auth_token = "Bearer wrong-s3cr3t";
		T_EQ_INT(get_logged(&c, &cr, src, sizeof(src), log, sizeof(log)), -EACCES);
		T_CHECK(strstr(log, "wrong-s3cr3t") == NULL);
		T_CHECK(strstr(log, "HTTP 401") != NULL);
	}
	fake_stop(&fk);
	log_init("test_creds", LOG_INFO, false);
}

/* ---- ECS and IMDS against the fake ---- */

static void ecs_full_uri_with_auth(void)
{
	const char *const args[] = { "--auth", "Bearer ecs-token", NULL };
	struct fake fk;
	struct cfg c;
	struct s3_creds cr;
	char src[512], err[1024], url[128], want[256];
	time_t t0 = time(NULL);

	if (fake_start(&fk, args)) {
		T_FAILF("fake server did not start");
		return;
	}
	cfg_empty(&c);
	snprintf(url, sizeof(url), "%s/ecs/creds", fk.base);
	c.aws_container_full_uri = url;
	c.aws_container_auth_token = "Bearer ecs-token";
	c.aws_container_relative_uri = "/ignored/when/full/uri/is/set";
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "ASIATEST0001");
	T_EQ_STR(cr.secret_access_key, "fakeSecretKey/0001+notReal");
	T_CHECK(strncmp(cr.session_token, "fakeSessionToken0001xxx", 23) == 0);
	T_CHECK(cr.expiration >= t0 + 3600 - 5 && cr.expiration <= t0 + 3600 + 5);
	snprintf(want, sizeof(want), "ECS container credentials (%s)", url);
	T_EQ_STR(src, want);
	T_EQ_INT(fake_count(&fk, "GET /ecs/creds"), 1);
	T_EQ_INT(fake_count(&fk, "401"), 0);

	/* without the token the fake refuses: -EACCES, and the chain does not go on */
	c.aws_container_auth_token = NULL;
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), err, sizeof(err)), -EACCES);
	T_CHECK(strstr(err, "HTTP 401") != NULL);
	T_EQ_STR(src, "none");
	T_EQ_INT(fake_count(&fk, "401"), 1);
	fake_stop(&fk);
}

static void ecs_relative_uri_via_base(void)
{
	struct fake fk;
	struct cfg c;
	struct s3_creds cr;
	char src[512], want[256];

	if (fake_start(&fk, NULL)) {
		T_FAILF("fake server did not start");
		return;
	}
	cfg_empty(&c);
	c.ecs_base = fk.base;
	c.aws_container_relative_uri = "/ecs/creds";
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "ASIATEST0001");
	snprintf(want, sizeof(want), "ECS container credentials (%s/ecs/creds)", fk.base);
	T_EQ_STR(src, want);
	T_EQ_INT(fake_count(&fk, "GET /ecs/creds"), 1);
	fake_stop(&fk);
}

static void imds_v2_token_flow(void)
{
	struct fake fk;
	struct cfg c;
	struct s3_creds cr;
	char src[512], body[8192];
	time_t t0 = time(NULL);

	if (fake_start(&fk, NULL)) {
		T_FAILF("fake server did not start");
		return;
	}
	/* the fake refuses a GET without a token, so a success below means we sent it */
	T_EQ_INT(raw_get(&fk, "/latest/meta-data/iam/security-credentials/", body), 401);
	T_EQ_INT(raw_get(&fk, "/latest/meta-data/iam/security-credentials/s3jobfs-role", body), 401);
	T_EQ_INT(fake_count(&fk, "401"), 2);

	cfg_empty(&c);
	c.aws_imds_disabled = false;
	c.aws_imds_endpoint = fk.base;
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "ASIATEST0001");
	T_EQ_STR(cr.secret_access_key, "fakeSecretKey/0001+notReal");
	T_CHECK(strncmp(cr.session_token, "fakeSessionToken0001", 20) == 0);
	T_CHECK(cr.expiration >= t0 + 3600 - 5 && cr.expiration <= t0 + 3600 + 5);
	T_EQ_STR(src, "EC2 instance metadata (IMDSv2)");
	T_EQ_INT(fake_count(&fk, "PUT /latest/api/token"), 1);
	T_EQ_INT(fake_count(&fk, "GET /latest/meta-data/iam/security-credentials/"), 2);
	T_EQ_INT(fake_count(&fk, "GET /latest/meta-data/iam/security-credentials/s3jobfs-role"), 2);
	T_EQ_INT(fake_count(&fk, "401"), 2);	/* only the two raw GETs above */

	/* disabled: not contacted at all */
	c.aws_imds_disabled = true;
	T_EQ_INT(get_once(&c, &cr, NULL, 0, NULL, 0), -ENOENT);
	T_EQ_INT(fake_count(&fk, "PUT /latest/api/token"), 1);
	fake_stop(&fk);
}

static void chain_order_ecs_before_imds(void)
{
	struct fake fk;
	struct cfg c;
	struct s3_creds cr;
	struct tmpdir t = { "", "" };
	char src[512], url[128];

	if (fake_start(&fk, NULL)) {
		T_FAILF("fake server did not start");
		return;
	}
	cfg_empty(&c);
	c.aws_imds_disabled = false;
	c.aws_imds_endpoint = fk.base;
	snprintf(url, sizeof(url), "%s/ecs/creds", fk.base);
	c.aws_container_full_uri = url;
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_CHECK(strncmp(src, "ECS container credentials", 25) == 0);
	T_EQ_INT(fake_count(&fk, "PUT /latest/api/token"), 0);

	/* a shared credentials file comes before both */
	T_EQ_INT(tmp_write(&t, "credentials", two_profiles), 0);
	c.aws_shared_credentials_file = t.file;
	T_EQ_INT(get_once(&c, &cr, src, sizeof(src), NULL, 0), 0);
	T_EQ_STR(cr.access_key_id, "AKIADEFAULT");
	T_EQ_INT(fake_count(&fk, "GET /ecs/creds"), 1);
	tmp_remove(&t, NULL);
	fake_stop(&fk);
}

/* Point c at the fake as ECS (full URI in url) or IMDS. */
static void use_fake(struct cfg *c, const struct fake *fk, bool imds, char *url, size_t size)
{
	cfg_empty(c);
	if (imds) {
		c->aws_imds_disabled = false;
		c->aws_imds_endpoint = (char *)fk->base;
	} else {
		snprintf(url, size, "%s/ecs/creds", fk->base);
		c->aws_container_full_uri = url;
	}
}

static void refresh_near_expiry(void)
{
	for (int imds = 0; imds < 2; imds++) {
		const char *const args[] = { "--ttl", "100", NULL };
		struct s3_creds_provider *p = NULL;
		struct fake fk;
		struct cfg c;
		struct s3_creds cr;
		char url[128];

		if (fake_start(&fk, args)) {
			T_FAILF("fake server did not start");
			return;
		}
		use_fake(&c, &fk, imds, url, sizeof(url));
		T_EQ_INT(s3_creds_provider_create(&p, &c), 0);
		T_EQ_INT(s3_creds_get(p, &cr), 0);
		T_EQ_STR(cr.access_key_id, "ASIATEST0001");
		T_EQ_INT(s3_creds_get(p, &cr), 0);	/* 100 s left < 5 min: fetched again */
		T_EQ_STR(cr.access_key_id, "ASIATEST0002");
		T_EQ_STR(cr.secret_access_key, "fakeSecretKey/0002+notReal");
		T_CHECK(strncmp(cr.session_token, "fakeSessionToken0002", 20) == 0);
		T_EQ_INT(fake_count(&fk, imds ? "PUT /latest/api/token" : "GET /ecs/creds"), 2);
		/* the source keeps handing out short-lived ones: not asked again for 10 s */
		T_EQ_INT(s3_creds_get(p, &cr), 0);
		T_EQ_STR(cr.access_key_id, "ASIATEST0002");
		T_EQ_INT(fake_count(&fk, imds ? "PUT /latest/api/token" : "GET /ecs/creds"), 2);
		s3_creds_provider_destroy(p);
		fake_stop(&fk);
	}
}

static void no_refresh_far_from_expiry(void)
{
	for (int imds = 0; imds < 2; imds++) {
		const char *const args[] = { "--ttl", "3600", NULL };
		struct s3_creds_provider *p = NULL;
		struct fake fk;
		struct cfg c;
		struct s3_creds cr;
		char url[128];

		if (fake_start(&fk, args)) {
			T_FAILF("fake server did not start");
			return;
		}
		use_fake(&c, &fk, imds, url, sizeof(url));
		T_EQ_INT(s3_creds_provider_create(&p, &c), 0);
		for (int i = 0; i < 3; i++) {
			T_EQ_INT(s3_creds_get(p, &cr), 0);
			T_EQ_STR(cr.access_key_id, "ASIATEST0001");
		}
		T_EQ_INT(fake_count(&fk, imds ? "PUT /latest/api/token" : "GET /ecs/creds"), 1);
		s3_creds_provider_destroy(p);
		fake_stop(&fk);
	}
}

static void refresh_failure_keeps_valid_creds(void)
{
	const char *const args[] = { "--ttl", "100", NULL };
	struct s3_creds_provider *p = NULL;
	struct fake fk;
	struct cfg c;
	struct s3_creds cr;
	char url[128];

	if (fake_start(&fk, args)) {
		T_FAILF("fake server did not start");
		return;
	}
	use_fake(&c, &fk, false, url, sizeof(url));
	T_EQ_INT(s3_creds_provider_create(&p, &c), 0);
	T_EQ_INT(s3_creds_get(p, &cr), 0);
	T_EQ_STR(cr.access_key_id, "ASIATEST0001");
	fake_stop(&fk);
	/* the refresh fails but 100 s are left: the old ones, a warning, no error */
	memset(&cr, 0, sizeof(cr));
	T_EQ_INT(s3_creds_get(p, &cr), 0);
	T_EQ_STR(cr.access_key_id, "ASIATEST0001");
	T_EQ_STR(cr.secret_access_key, "fakeSecretKey/0001+notReal");
	T_EQ_STR(s3_creds_last_error(p), "");
	T_CHECK(strncmp(s3_creds_source(p), "ECS container credentials", 25) == 0);
	s3_creds_provider_destroy(p);
}

static void refresh_failure_after_expiry_is_error(void)
{
	const char *const args[] = { "--ttl", "-10", NULL };
	struct s3_creds_provider *p = NULL;
	struct fake fk;
	struct cfg c;
	struct s3_creds cr;
	char url[128];

	for (int imds = 0; imds < 2; imds++) {
		if (fake_start(&fk, args)) {
			T_FAILF("fake server did not start");
			return;
		}
		use_fake(&c, &fk, imds, url, sizeof(url));
		T_EQ_INT(s3_creds_provider_create(&p, &c), 0);
		T_EQ_INT(s3_creds_get(p, &cr), 0);	/* already expired, but what the source has */
		T_EQ_STR(cr.access_key_id, "ASIATEST0001");
		T_EQ_INT(s3_creds_get(p, &cr), 0);	/* expired: fetched again */
		T_EQ_STR(cr.access_key_id, "ASIATEST0002");
		fake_stop(&fk);
		T_EQ_INT(s3_creds_get(p, &cr), -EIO);	/* expired and the source is gone */
		T_CHECK(strncmp(s3_creds_last_error(p), "cannot refresh AWS credentials: ", 32) == 0);
		printf("  (last_error: %s)\n", s3_creds_last_error(p));
		s3_creds_provider_destroy(p);
	}
}

static void server_down_is_error_not_hang(void)
{
	struct fake fk;
	struct cfg c;
	struct s3_creds cr;
	char err[1024], url[128], base[64];
	double t0;

	/* a port where a server was and no longer is */
	if (fake_start(&fk, NULL)) {
		T_FAILF("fake server did not start");
		return;
	}
	fake_stop(&fk);
	snprintf(base, sizeof(base), "%s", fk.base);

	cfg_empty(&c);
	snprintf(url, sizeof(url), "%s/ecs/creds", base);
	c.aws_container_full_uri = url;
	t0 = now_s();
	T_EQ_INT(get_once(&c, &cr, NULL, 0, err, sizeof(err)), -EIO);
	T_CHECK(now_s() - t0 < 3.0);
	T_CHECK(strstr(err, "ECS container credentials") != NULL);
	printf("  (last_error: %s)\n", err);

	/* the instance metadata service is only probed: unreachable means "not on EC2" */
	cfg_empty(&c);
	c.aws_imds_disabled = false;
	c.aws_imds_endpoint = base;
	t0 = now_s();
	T_EQ_INT(get_once(&c, &cr, NULL, 0, err, sizeof(err)), -ENOENT);
	T_CHECK(now_s() - t0 < 3.0);
	T_CHECK(strstr(err, "EC2 instance metadata") != NULL);
	printf("  (last_error: %s)\n", err);
}

static void server_hangs_times_out(void)
{
	const char *const args[] = { "--slow", "30", NULL };
	struct fake fk;
	struct cfg c;
	struct s3_creds cr;
	char err[1024], url[128];
	double t0, dt;

	if (fake_start(&fk, args)) {
		T_FAILF("fake server did not start");
		return;
	}
	cfg_empty(&c);
	snprintf(url, sizeof(url), "%s/ecs/slow", fk.base);
	c.aws_container_full_uri = url;
	t0 = now_s();
	T_EQ_INT(get_once(&c, &cr, NULL, 0, err, sizeof(err)), -ETIMEDOUT);
	dt = now_s() - t0;
	T_CHECK(dt >= 4.5 && dt < 8.0);
	printf("  (%.1f s; last_error: %s)\n", dt, err);
	fake_stop(&fk);
}

struct thread_arg {
	struct s3_creds_provider *p;
	int fails;
};

static void *getter(void *arg)
{
	struct thread_arg *a = arg;
	struct s3_creds cr;

	for (int i = 0; i < 10; i++)
		if (s3_creds_get(a->p, &cr) || strncmp(cr.access_key_id, "ASIATEST", 8) ||
		    strncmp(cr.secret_access_key + 14, cr.access_key_id + 8, 4))
			a->fails++;
	return NULL;
}

static void concurrent_gets(void)
{
	const char *const args[] = { "--ttl", "100", NULL };
	struct s3_creds_provider *p = NULL;
	struct thread_arg ta[4];
	pthread_t th[4];
	struct fake fk;
	struct cfg c;
	char url[128];

	if (fake_start(&fk, args)) {
		T_FAILF("fake server did not start");
		return;
	}
	use_fake(&c, &fk, false, url, sizeof(url));
	T_EQ_INT(s3_creds_provider_create(&p, &c), 0);
	for (int i = 0; i < 4; i++) {
		ta[i].p = p;
		ta[i].fails = 0;
		T_EQ_INT(pthread_create(&th[i], NULL, getter, &ta[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		T_EQ_INT(ta[i].fails, 0);
	}
	/* one load and one refresh (then 10 s of rest), never two fetches racing */
	T_EQ_INT(fake_count(&fk, "GET /ecs/creds"), 2);
	s3_creds_provider_destroy(p);
	fake_stop(&fk);
}

static const struct t_case cases[] = {
	{ "s3_keys_win", s3_keys_win },
	{ "aws_keys_with_session_token", aws_keys_with_session_token },
	{ "aws_key_without_secret_is_skipped", aws_key_without_secret_is_skipped },
	{ "file_two_profiles", file_two_profiles },
	{ "file_missing_profile", file_missing_profile },
	{ "file_comments_and_whitespace", file_comments_and_whitespace },
	{ "file_default_path_from_home", file_default_path_from_home },
	{ "no_source_enoent", no_source_enoent },
	{ "source_and_log_never_hold_secrets", source_and_log_never_hold_secrets },
	{ "ecs_full_uri_with_auth", ecs_full_uri_with_auth },
	{ "ecs_relative_uri_via_base", ecs_relative_uri_via_base },
	{ "imds_v2_token_flow", imds_v2_token_flow },
	{ "chain_order_ecs_before_imds", chain_order_ecs_before_imds },
	{ "refresh_near_expiry", refresh_near_expiry },
	{ "no_refresh_far_from_expiry", no_refresh_far_from_expiry },
	{ "refresh_failure_keeps_valid_creds", refresh_failure_keeps_valid_creds },
	{ "refresh_failure_after_expiry_is_error", refresh_failure_after_expiry_is_error },
	{ "server_down_is_error_not_hang", server_down_is_error_not_hang },
	{ "server_hangs_times_out", server_hangs_times_out },
	{ "concurrent_gets", concurrent_gets },
};

T_MAIN(cases)
