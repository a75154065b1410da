/* t_meta.c - meta against a real PostgreSQL: schema, job status, ledger, policy, completion.
 *
 * Runs under tests/with-env.sh (DATABASE_URL, and $S3JOBFS_TEST_ENV_DIR/pg-stop, pg-start for
 * the outage case). It makes its own scraper-like `jobs` table (dropped first) and one job row
 * per case, drives meta through its public calls, and reads the results back with a libpq
 * connection of its own, waiting with a deadline where the write is asynchronous. Timings are
 * printed as "  info:" lines, not asserted.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libpq-fe.h>

#include "cfg.h"
#include "harness.h"
#include "log.h"
#include "meta.h"

#define UPLOADED_AT_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$"
#define GUIDE_SQL \
	"SELECT output->'uploadToS3'->>'status', output->'uploadToS3'->>'uploadedAt'," \
	" output->'uploadToS3'->>'filesUploaded', output->'uploadToS3'->>'bytesUploaded'," \
	" output->'uploadToS3'->'errors' FROM jobs WHERE id = $1"
#define STATUS_SQL "SELECT output->'uploadToS3'->>'status' FROM jobs WHERE id = $1"

static PGconn *db;
static struct cfg cfg;

/* ---- helpers ---- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Run sql with n text parameters (NULL = SQL NULL). NULL on error (reported). */
static PGresult *qv(const char *sql, int n, va_list ap)
{
	const char *params[8];
	PGresult *res;

	for (int i = 0; i < n && i < 8; i++)
		params[i] = va_arg(ap, const char *);
	res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		printf("  sql failed: %s: %s", sql, PQerrorMessage(db));
		PQclear(res);
		return NULL;
	}
	return res;
}

static bool qexec(const char *sql, int n, ...)
{
	va_list ap;
	PGresult *res;

	va_start(ap, n);
	res = qv(sql, n, ap);
	va_end(ap);
	PQclear(res);
	return res != NULL;
}

/* The first value of the first row into out ("(null)" for NULL, "(none)" for no row). */
static const char *qval(char *out, size_t size, const char *sql, int n, ...)
{
	va_list ap;
	PGresult *res;

	va_start(ap, n);
	res = qv(sql, n, ap);
	va_end(ap);
	if (!res)
		snprintf(out, size, "(error)");
	else if (PQntuples(res) == 0)
		snprintf(out, size, "(none)");
	else if (PQgetisnull(res, 0, 0))
		snprintf(out, size, "(null)");
	else
		snprintf(out, size, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return out;
}

/* Wait up to secs for `sql` with the job id as $1 to give want. */
static bool wait_value(const char *want, double secs, const char *sql, const char *id)
{
	double end = now_s() + secs;
	char v[4096];

	for (;;) {
		if (strcmp(qval(v, sizeof(v), sql, 1, id), want) == 0)
			return true;
		if (now_s() > end)
			break;
		sleep_ms(50);
	}
	printf("  waited %.0f s for \"%s\": still \"%s\" (%s)\n", secs, want, v, sql);
	return false;
}

static bool matches(const char *re, const char *s)
{
	regex_t rx;
	bool ok;

	if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) != 0)
		return false;
	ok = regexec(&rx, s, 0, NULL, 0) == 0;
	regfree(&rx);
	return ok;
}

/* A jobs row (status 'running') with this output (NULL: SQL NULL); its id into id. */
static bool new_job(const char *output, char id[37])
{
	char v[64];

	qval(v, sizeof(v), "INSERT INTO jobs (id, name, status, output) VALUES"
	     " (gen_random_uuid(), 't_meta', 'running', $1::jsonb) RETURNING id::text", 1, output);
	if (strlen(v) != 36) {
		id[0] = '\0';
		return false;
	}
	memcpy(id, v, 37);
	return true;
}

static void folder_of(const char *id, char *folder, size_t size)
{
	snprintf(folder, size, "20251114_011839_%s", id);
}

/* on_complete calls, recorded */
static struct {
	pthread_mutex_t lock;
	char ids[64][37];
	int n;
} done = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_complete(void *arg, const char *uuid)
{
	(void)arg;
	pthread_mutex_lock(&done.lock);
	if (done.n < 64)
		snprintf(done.ids[done.n++], 37, "%s", uuid);
	pthread_mutex_unlock(&done.lock);
}

static int completed(const char *id)
{
	int c = 0;

	pthread_mutex_lock(&done.lock);
	for (int i = 0; i < done.n; i++)
		c += strcmp(done.ids[i], id) == 0;
	pthread_mutex_unlock(&done.lock);
	return c;
}

static bool wait_connected(struct meta *m, double secs)
{
	double end = now_s() + secs;

	while (!meta_connected(m)) {
		if (now_s() > end)
			return false;
		sleep_ms(20);
	}
	return true;
}

/* meta_create + meta_start + connected within 15 s. NULL on failure (reported). */
static struct meta *start_meta(const struct cfg *c)
{
	struct meta *m = NULL;
	int r = meta_create(&m, c);

	if (r == 0)
		r = meta_start(m, on_complete, NULL);
	if (r == 0 && !wait_connected(m, 15))
		r = -ETIMEDOUT;
	if (r != 0) {
		T_FAILF("cannot start meta: %s", strerror(-r));
		meta_destroy(m);
		return NULL;
	}
	return m;
}

static void post_job(struct meta *m, const char *id, const char *status, bool enabled,
		     const struct meta_error *errs, size_t n_errs)
{
	static const char *const top[] = { "all_products.json", "categories.json", "pdfs/" };
	char folder[80];
	struct meta_job_state st = {
		.uuid = id, .folder = folder, .bucket = cfg.bucket, .prefix = cfg.prefix,
		.enabled = enabled, .status = status, .top_entries = top, .n_top = 3,
		.errors = errs, .n_errors = n_errs,
	};

	folder_of(id, folder, sizeof(folder));
	meta_post_job(m, &st);
}

static void post_file(struct meta *m, const char *id, const char *rel, uint64_t size,
		      const char *state, const char *err)
{
	char folder[80], key[300];

	folder_of(id, folder, sizeof(folder));
	snprintf(key, sizeof(key), "%s%s/%s", cfg.prefix, folder, rel);
	meta_post_file(m, id, rel, cfg.bucket, key, size, "sha256:abc", "\"etag-1\"", state,
		       err ? 3 : 1, err);
}

static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static bool drop_own_tables(void)
{
	return qexec("DROP TABLE IF EXISTS s3jobfs_files, s3jobfs_schema", 0);
}

/* ---- cases ---- */

static void test_schema_twice(void)
{
	char v[128], first[128];
	struct meta *m;

	T_CHECK(drop_own_tables());
	m = start_meta(&cfg);
	if (!m)
		return;
	T_EQ_STR(qval(v, sizeof(v), "SELECT count(*) || ' ' || max(version) FROM s3jobfs_schema", 0),
		 "1 1");
	T_EQ_STR(qval(v, sizeof(v), "SELECT to_regclass('s3jobfs_files') IS NOT NULL", 0), "t");
	qval(first, sizeof(first), "SELECT applied_at::text FROM s3jobfs_schema", 0);
	meta_destroy(m);

	m = start_meta(&cfg);		/* the second start is a no-op */
	if (!m)
		return;
	T_EQ_STR(qval(v, sizeof(v), "SELECT count(*) || ' ' || max(version) FROM s3jobfs_schema", 0),
		 "1 1");
	T_EQ_STR(qval(v, sizeof(v), "SELECT applied_at::text FROM s3jobfs_schema", 0), first);
	meta_destroy(m);
}

static void test_schema_concurrent(void)
{
	struct meta *m[4] = { NULL };
	char v[64];
	int up = 0;

	T_CHECK(drop_own_tables());
	for (int i = 0; i < 4; i++) {
		T_EQ_INT(meta_create(&m[i], &cfg), 0);
	}
	for (int i = 0; i < 4; i++)
		if (m[i])
			T_EQ_INT(meta_start(m[i], on_complete, NULL), 0);
	for (int i = 0; i < 4; i++)
		up += m[i] && wait_connected(m[i], 15);
	T_EQ_INT(up, 4);
	T_EQ_STR(qval(v, sizeof(v), "SELECT count(*) || ' ' || max(version) FROM s3jobfs_schema", 0),
		 "1 1");
	T_EQ_STR(qval(v, sizeof(v), "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND"
		      " relname IN ('s3jobfs_files', 's3jobfs_schema')", 0), "2");
	for (int i = 0; i < 4; i++)
		meta_destroy(m[i]);
}

static void test_status_success(void)
{
	char id[37], folder[80], v[1024], want[512];
	struct meta *m;
	PGresult *res;

	T_CHECK(new_job("{\"saveFiles\": true, \"fileFormat\": \"json\"}", id));
	folder_of(id, folder, sizeof(folder));
	m = start_meta(&cfg);
	if (!m)
		return;
	post_job(m, id, "pending", true, NULL, 0);
	T_CHECK(wait_value("pending", 10, STATUS_SQL, id));
	T_EQ_STR(qval(v, sizeof(v), "SELECT jsonb_typeof(output->'uploadToS3'->'uploadedAt')"
		      " FROM jobs WHERE id = $1", 1, id), "null");
	post_job(m, id, "uploading", true, NULL, 0);
	T_CHECK(wait_value("uploading", 10, STATUS_SQL, id));

	post_file(m, id, "all_products.json", 100, "uploaded", NULL);
	post_file(m, id, "categories.json", 2000, "uploaded", NULL);
	post_file(m, id, "pdfs/a.pdf", 30000, "uploaded", NULL);
	post_file(m, id, "screenshots/s.png", 5, "skipped", NULL);	/* not counted */
	post_job(m, id, "success", true, NULL, 0);
	T_CHECK(wait_value("success", 10, STATUS_SQL, id));

	/* the guide's query */
	res = PQexecParams(db, GUIDE_SQL, 1, NULL, (const char *const[]){ id }, NULL, NULL, 0);
	T_EQ_INT(PQresultStatus(res), PGRES_TUPLES_OK);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		T_EQ_STR(PQgetvalue(res, 0, 0), "success");
		T_CHECK(matches(UPLOADED_AT_RE, PQgetvalue(res, 0, 1)));
		printf("  info: uploadedAt=%s\n", PQgetvalue(res, 0, 1));
		T_EQ_STR(PQgetvalue(res, 0, 2), "3");
		T_EQ_STR(PQgetvalue(res, 0, 3), "32100");
		T_EQ_STR(PQgetvalue(res, 0, 4), "[]");
	}
	PQclear(res);
	/* numbers, not strings; the exact field set; other keys of output untouched */
	T_EQ_STR(qval(v, sizeof(v), "SELECT jsonb_typeof(output->'uploadToS3'->'filesUploaded') ||"
		      " jsonb_typeof(output->'uploadToS3'->'bytesUploaded') FROM jobs WHERE id = $1",
		      1, id), "numbernumber");
	T_EQ_STR(qval(v, sizeof(v), "SELECT string_agg(k, ',' ORDER BY k) FROM jobs,"
		      " jsonb_object_keys(output->'uploadToS3') k WHERE id = $1", 1, id),
		 "bytesUploaded,enabled,errors,filesUploaded,s3Urls,status,uploadedAt");
	T_EQ_STR(qval(v, sizeof(v), "SELECT (output - 'uploadToS3')::text FROM jobs WHERE id = $1",
		      1, id), "{\"saveFiles\": true, \"fileFormat\": \"json\"}");
	T_EQ_STR(qval(v, sizeof(v), "SELECT output->'uploadToS3'->>'enabled' FROM jobs"
		      " WHERE id = $1", 1, id), "true");
	snprintf(want, sizeof(want), "s3://%s/%s%s/all_products.json", cfg.bucket, cfg.prefix, folder);
	T_EQ_STR(qval(v, sizeof(v), "SELECT output->'uploadToS3'->'s3Urls'->>'all_products_json'"
		      " FROM jobs WHERE id = $1", 1, id), want);
	snprintf(want, sizeof(want), "s3://%s/%s%s/pdfs/", cfg.bucket, cfg.prefix, folder);
	T_EQ_STR(qval(v, sizeof(v), "SELECT output->'uploadToS3'->'s3Urls'->>'pdfs_dir'"
		      " FROM jobs WHERE id = $1", 1, id), want);

	/* the ledger */
	T_EQ_STR(qval(v, sizeof(v), "SELECT count(*) FILTER (WHERE state = 'uploaded') || ' ' ||"
		      " count(*) FROM s3jobfs_files WHERE job_id = $1", 1, id), "3 4");
	snprintf(want, sizeof(want), "%s|%s%s/pdfs/a.pdf|30000|sha256:abc|\"etag-1\"|1|(null)",
		 cfg.bucket, cfg.prefix, folder);
	T_EQ_STR(qval(v, sizeof(v), "SELECT concat_ws('|', bucket, key, size, checksum, etag,"
		      " attempts, COALESCE(last_error, '(null)')) FROM s3jobfs_files"
		      " WHERE job_id = $1 AND rel_path = 'pdfs/a.pdf'", 1, id), want);
	/* upsert: the same file again updates its row */
	meta_post_file(m, id, "pdfs/a.pdf", cfg.bucket, "k2", 30000, NULL, "\"etag-2\"",
		       "uploaded", 2, NULL);
	T_CHECK(wait_value("\"etag-2\"", 10, "SELECT etag FROM s3jobfs_files WHERE job_id = $1"
			   " AND rel_path = 'pdfs/a.pdf'", id));
	T_EQ_STR(qval(v, sizeof(v), "SELECT count(*) || ' ' || bool_and(updated_at >= created_at)"
		      " FROM s3jobfs_files WHERE job_id = $1", 1, id), "4 true");
	meta_destroy(m);
}

static void test_status_partial(void)
{
	const struct meta_error errs[] = {
		{ "pdfs/b.pdf", "AccessDenied", "Access Denied", 4, time(NULL) },
	};
	char id[37], v[1024];
	struct meta *m;

	T_CHECK(new_job(NULL, id));		/* output NULL counts as {} */
	m = start_meta(&cfg);
	if (!m)
		return;
	post_job(m, id, "uploading", true, NULL, 0);
	post_file(m, id, "all_products.json", 10, "uploaded", NULL);
	post_file(m, id, "pdfs/a.pdf", 20, "uploaded", NULL);
	post_file(m, id, "pdfs/b.pdf", 40, "failed", "AccessDenied: Access Denied");
	post_job(m, id, "partial", true, errs, 1);
	T_CHECK(wait_value("partial", 10, STATUS_SQL, id));
	T_EQ_STR(qval(v, sizeof(v), "SELECT concat_ws('|', u->>'filesUploaded', u->>'bytesUploaded',"
		      " jsonb_array_length(u->'errors'), u->'errors'->0->>'file',"
		      " u->'errors'->0->>'code', u->'errors'->0->>'message',"
		      " jsonb_typeof(u->'errors'->0->'attempts'), u->'errors'->0->>'attempts',"
		      " (SELECT count(*) FROM jsonb_object_keys(u->'errors'->0)))"
		      " FROM (SELECT output->'uploadToS3' u FROM jobs WHERE id = $1) s", 1, id),
		 "2|30|1|pdfs/b.pdf|AccessDenied|Access Denied|number|4|5");
	T_CHECK(matches("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{6})?Z$",
			qval(v, sizeof(v), "SELECT output->'uploadToS3'->'errors'->0->>'time'"
			     " FROM jobs WHERE id = $1", 1, id)));
	T_CHECK(matches(UPLOADED_AT_RE, qval(v, sizeof(v), "SELECT output->'uploadToS3'->>"
					     "'uploadedAt' FROM jobs WHERE id = $1", 1, id)));
	T_EQ_STR(qval(v, sizeof(v), "SELECT string_agg(k, ',') FROM jobs, jsonb_object_keys(output) k"
		      " WHERE id = $1", 1, id), "uploadToS3");
	T_EQ_STR(qval(v, sizeof(v), "SELECT last_error || ' ' || attempts FROM s3jobfs_files"
		      " WHERE job_id = $1 AND state = 'failed'", 1, id),
		 "AccessDenied: Access Denied 3");
	meta_destroy(m);
}

static void test_status_disabled(void)
{
	char id[37], v[1024];
	struct meta *m;

	T_CHECK(new_job("{\"saveFiles\": true, \"uploadToS3\": {\"enabled\": false}}", id));
	m = start_meta(&cfg);
	if (!m)
		return;
	post_job(m, id, "disabled", false, NULL, 0);
	T_CHECK(wait_value("disabled", 10, STATUS_SQL, id));
	T_EQ_STR(qval(v, sizeof(v), "SELECT concat_ws('|', u->>'enabled', u->>'filesUploaded',"
		      " u->>'bytesUploaded', jsonb_typeof(u->'uploadedAt'), u->'s3Urls', u->'errors')"
		      " FROM (SELECT output->'uploadToS3' u FROM jobs WHERE id = $1) s", 1, id),
		 "false|0|0|null|{}|[]");
	T_EQ_STR(qval(v, sizeof(v), "SELECT output->>'saveFiles' FROM jobs WHERE id = $1", 1, id),
		 "true");
	meta_destroy(m);
}

/* meta_policy_get until the row was fetched (have_row), within secs. */
static bool wait_policy(struct meta *m, const char *id, struct meta_policy *p, double secs)
{
	double end = now_s() + secs;

	for (;;) {
		if (meta_policy_get(m, id, p) == 0 && p->have_row)
			return true;
		meta_policy_release(p);
		if (now_s() > end)
			return false;
		sleep_ms(20);
	}
}

static void test_policy_from_row(void)
{
	char a[37], b[37], v[1024];
	const char *c = "0b7e5c4e-1a1d-4c1e-9c1e-0123456789ab";	/* no row */
	struct meta_policy p;
	struct meta *m;

	T_CHECK(new_job("{\"saveFiles\": true, \"uploadToS3\": {\"enabled\": false}}", a));
	T_CHECK(new_job("{\"saveFiles\": true, \"uploadToS3\": {\"includeFiles\":"
			" [\"all_products.json\"], \"bucket\": \"s3jobfs-other\", \"prefix\": \"other\","
			" \"uploadScreenshots\": true, \"uploadPdfs\": false}}", b));
	m = start_meta(&cfg);
	if (!m)
		return;
	/* never blocks: the first answer is the defaults, the row is fetched meanwhile */
	T_EQ_INT(meta_policy_get(m, a, &p), 0);
	T_CHECK(!p.have_row && p.enabled);
	meta_policy_release(&p);
	T_CHECK(wait_policy(m, a, &p, 10));
	T_CHECK(p.have_row && !p.enabled && p.save_files);
	T_CHECK(!meta_policy_includes(&p, "all_products.json"));
	meta_policy_release(&p);

	T_EQ_INT(meta_policy_get(m, b, &p), 0);
	meta_policy_release(&p);
	T_CHECK(wait_policy(m, b, &p, 10));
	T_CHECK(p.enabled);
	T_EQ_STR(p.bucket, "s3jobfs-other");
	T_EQ_STR(p.prefix, "other/");
	T_EQ_INT(p.n_include, 1);
	if (p.n_include == 1)
		T_EQ_STR(p.include_files[0], "all_products.json");
	T_CHECK(p.upload_screenshots && !p.upload_pdfs && p.upload_categories);
	T_CHECK(meta_policy_includes(&p, "all_products.json"));
	T_CHECK(!meta_policy_includes(&p, "categories.json"));
	T_CHECK(meta_policy_includes(&p, "screenshots/x.png"));
	T_CHECK(!meta_policy_includes(&p, "pdfs/x.pdf"));
	meta_policy_release(&p);

	T_EQ_INT(meta_policy_get(m, c, &p), 0);
	meta_policy_release(&p);
	T_CHECK(!wait_policy(m, c, &p, 3));	/* no row: stays have_row false */
	T_EQ_INT(meta_policy_get(m, "garbage", &p), -EINVAL);
	meta_policy_release(&p);

	/* a status write keeps the job's settings in uploadToS3, and its `enabled` */
	post_job(m, b, "pending", true, NULL, 0);
	post_job(m, a, "pending", true, NULL, 0);	/* as a cache that posted too early */
	T_CHECK(wait_value("pending", 10, STATUS_SQL, b));
	T_CHECK(wait_value("pending", 10, STATUS_SQL, a));
	T_EQ_STR(qval(v, sizeof(v), "SELECT concat_ws('|', u->>'bucket', u->>'prefix',"
		      " u->'includeFiles', u->>'uploadScreenshots', u->>'uploadPdfs', u->>'enabled')"
		      " FROM (SELECT output->'uploadToS3' u FROM jobs WHERE id = $1) s", 1, b),
		 "s3jobfs-other|other|[\"all_products.json\"]|true|false|true");
	T_EQ_STR(qval(v, sizeof(v), "SELECT output->'uploadToS3'->>'enabled' FROM jobs WHERE id = $1",
		      1, a), "false");
	meta_destroy(m);
}

static double wait_completed(const char *id, double secs)
{
	double start = now_s();

	while (!completed(id)) {
		if (now_s() - start > secs)
			return -1;
		sleep_ms(10);
	}
	return now_s() - start;
}

static void test_complete_poll(void)
{
	char id[37], other[37];
	struct meta *m;
	double t;

	T_CHECK(new_job("{}", id));
	T_CHECK(new_job("{}", other));
	m = start_meta(&cfg);
	if (!m)
		return;
	post_job(m, id, "pending", true, NULL, 0);
	post_job(m, other, "pending", true, NULL, 0);
	T_CHECK(wait_value("pending", 10, STATUS_SQL, id));
	T_CHECK(qexec("UPDATE jobs SET status = 'completed' WHERE id = $1", 1, id));
	t = wait_completed(id, 10);
	T_CHECK(t >= 0);
	printf("  info: on_complete %.2f s after the UPDATE (poll every %d s)\n", t,
	       cfg.pg_poll_seconds);
	sleep_ms(1500);			/* another poll: no second call, none for the other job */
	T_EQ_INT(completed(id), 1);
	T_EQ_INT(completed(other), 0);
	meta_destroy(m);
}

static void test_complete_notify(void)
{
	char id[37], upper[37];
	struct meta *m;
	double t;

	T_CHECK(new_job("{}", id));
	m = start_meta(&cfg);
	if (!m)
		return;
	T_CHECK(qexec("SELECT pg_notify('s3jobfs_complete', 'not a uuid')", 0));
	T_CHECK(qexec("SELECT pg_notify('s3jobfs_complete', '')", 0));
	for (int i = 0; i < 37; i++)
		upper[i] = (char)(id[i] >= 'a' && id[i] <= 'f' ? id[i] - 32 : id[i]);
	T_CHECK(qexec("SELECT pg_notify('s3jobfs_complete', $1)", 1, upper));
	t = wait_completed(id, 5);
	T_CHECK(t >= 0);
	printf("  info: on_complete %.3f s after NOTIFY s3jobfs_complete\n", t);
	T_EQ_INT(completed(id), 1);
	meta_destroy(m);
}

/* The payloads of s3jobfs_status notifications received within secs (stops at want). */
static int wait_notify(const char *want, double secs)
{
	double end = now_s() + secs;
	int got = 0;

	while (now_s() < end) {
		struct pollfd p = { .fd = PQsocket(db), .events = POLLIN };
		PGnotify *n;

		poll(&p, 1, 50);
		PQconsumeInput(db);
		while ((n = PQnotifies(db)) != NULL) {
			if (strcmp(n->relname, "s3jobfs_status") == 0 && strcmp(n->extra, want) == 0)
				got++;
			PQfreemem(n);
		}
		if (got)
			break;
	}
	return got;
}

static void test_status_notify(void)
{
	char id[37];
	struct meta *m;

	T_CHECK(new_job("{}", id));
	T_CHECK(qexec("LISTEN s3jobfs_status", 0));
	m = start_meta(&cfg);
	if (!m)
		return;
	post_job(m, id, "pending", true, NULL, 0);
	T_EQ_INT(wait_notify(id, 10), 1);
	post_job(m, id, "uploading", true, NULL, 0);
	T_EQ_INT(wait_notify(id, 10), 1);
	post_job(m, id, "uploading", true, NULL, 0);	/* no change: rewritten, not notified */
	T_EQ_INT(wait_notify(id, 2.5), 0);
	T_CHECK(qexec("UNLISTEN s3jobfs_status", 0));
	meta_destroy(m);
}

static bool helper(const char *name)
{
	const char *dir = getenv("S3JOBFS_TEST_ENV_DIR");
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "'%s/%s' >/dev/null 2>&1", dir, name);
	return system(cmd) == 0;
}

/* A post-time measure: each post of the loop, mean and max into the info line. */
struct lat {
	double sum, max;
	int n;
};

static void lat_add(struct lat *l, double t)
{
	l->sum += t;
	l->n++;
	if (t > l->max)
		l->max = t;
}

static void test_pg_outage(void)
{
	enum { N_FILES = 200 };
	char id[37], v[64], want[64];
	double t, t_start, t_up;
	struct lat l = { 0 };
	struct meta_policy p;
	struct meta *m;

	if (!getenv("S3JOBFS_TEST_ENV_DIR")) {
		printf("SKIP: t_meta/pg_outage: S3JOBFS_TEST_ENV_DIR is not set (no pg-stop)\n");
		return;
	}
	T_CHECK(new_job("{\"saveFiles\": true}", id));
	m = start_meta(&cfg);
	if (!m)
		return;
	post_job(m, id, "pending", true, NULL, 0);
	T_CHECK(wait_value("pending", 10, STATUS_SQL, id));
	T_CHECK(helper("pg-stop"));
	for (int i = 0; i < 100 && meta_connected(m); i++)
		sleep_ms(50);
	T_CHECK(!meta_connected(m));

	for (int i = 0; i < N_FILES; i++) {
		char rel[64];

		snprintf(rel, sizeof(rel), "products/p%03d.json", i);
		t = now_s();
		post_file(m, id, rel, 1000, "uploaded", NULL);
		lat_add(&l, now_s() - t);
		t = now_s();
		post_job(m, id, i + 1 < N_FILES ? "uploading" : "success", true, NULL, 0);
		lat_add(&l, now_s() - t);
		if (i % 50 == 0)
			sleep_ms(300);		/* the thread tries to reconnect meanwhile */
	}
	t = now_s();
	T_EQ_INT(meta_policy_get(m, "0b7e5c4e-1a1d-4c1e-9c1e-00000000beef", &p), 0);
	t = now_s() - t;
	T_CHECK(!p.have_row);
	meta_policy_release(&p);
	printf("  info: with postgresql down: %d posts, mean %.1f us, max %.1f us;"
	       " meta_policy_get %.1f us\n", l.n, l.sum / l.n * 1e6, l.max * 1e6, t * 1e6);

	t_start = now_s();
	T_CHECK(helper("pg-start"));
	t_up = now_s();
	PQreset(db);
	T_EQ_INT(PQstatus(db), CONNECTION_OK);
	snprintf(want, sizeof(want), "success %d", N_FILES);
	T_CHECK(wait_value(want, 20, "SELECT (output->'uploadToS3'->>'status') || ' ' ||"
			   " (output->'uploadToS3'->>'filesUploaded') FROM jobs WHERE id = $1", id));
	printf("  info: pg-start took %.1f s; the row showed the latest state %.1f s after it"
	       " returned\n", t_up - t_start, now_s() - t_up);
	T_EQ_STR(qval(v, sizeof(v), "SELECT count(*) FROM s3jobfs_files WHERE job_id = $1", 1, id),
		 "200");
	T_CHECK(meta_connected(m));
	meta_destroy(m);
}

static void test_two_instances_sum(void)
{
	char id[37], v[128];
	struct meta *a, *b;

	T_CHECK(new_job("{\"saveFiles\": true}", id));
	a = start_meta(&cfg);
	b = start_meta(&cfg);
	if (a && b) {
		post_job(a, id, "uploading", true, NULL, 0);
		post_job(b, id, "uploading", true, NULL, 0);
		post_file(a, id, "products/a1.json", 100, "uploaded", NULL);
		post_file(a, id, "products/a2.json", 200, "uploaded", NULL);
		post_file(b, id, "products/b1.json", 400, "uploaded", NULL);
		post_job(b, id, "success", true, NULL, 0);
		post_job(a, id, "success", true, NULL, 0);
		T_CHECK(wait_value("success 3 700", 15, "SELECT concat_ws(' ',"
				   " output->'uploadToS3'->>'status', output->'uploadToS3'->>'filesUploaded',"
				   " output->'uploadToS3'->>'bytesUploaded') FROM jobs WHERE id = $1", id));
		T_EQ_STR(qval(v, sizeof(v), "SELECT count(*) FROM s3jobfs_files WHERE job_id = $1", 1,
			      id), "3");
	}
	meta_destroy(a);
	meta_destroy(b);
}

static void test_table_quoted(void)
{
	struct cfg c = cfg;
	char id[37];
	struct meta *m;

	c.jobs_table = "Scraper \"Jobs\"";
	T_CHECK(qexec("DROP TABLE IF EXISTS \"Scraper \"\"Jobs\"\"\"", 0));
	T_CHECK(qexec("CREATE TABLE \"Scraper \"\"Jobs\"\"\" (id uuid PRIMARY KEY, status text,"
		      " output jsonb)", 0));
	qval(id, sizeof(id), "INSERT INTO \"Scraper \"\"Jobs\"\"\" VALUES (gen_random_uuid(),"
	     " 'running', '{\"uploadToS3\": {\"uploadPdfs\": false}}') RETURNING id::text", 0);
	m = start_meta(&c);
	if (m) {
		struct meta_policy p;

		post_job(m, id, "pending", true, NULL, 0);
		T_CHECK(wait_value("pending", 10, "SELECT output->'uploadToS3'->>'status' FROM"
				   " \"Scraper \"\"Jobs\"\"\" WHERE id = $1", id));
		T_EQ_INT(meta_policy_get(m, id, &p), 0);
		meta_policy_release(&p);
		T_CHECK(wait_policy(m, id, &p, 10) && !p.upload_pdfs);
		meta_policy_release(&p);
		T_CHECK(qexec("UPDATE \"Scraper \"\"Jobs\"\"\" SET status = 'failed' WHERE id = $1",
			      1, id));
		T_CHECK(wait_completed(id, 10) >= 0);
	}
	meta_destroy(m);
	T_CHECK(qexec("DROP TABLE \"Scraper \"\"Jobs\"\"\"", 0));
}

static void test_pg_slow(void)
{
	char id[37], want[64];
	struct lat l = { 0 };
	struct meta *m;
	double t;

	T_CHECK(new_job("{\"saveFiles\": true}", id));
	m = start_meta(&cfg);
	if (!m)
		return;
	post_job(m, id, "pending", true, NULL, 0);
	T_CHECK(wait_value("pending", 10, STATUS_SQL, id));
	/* the row locked by another transaction: meta's UPDATE waits */
	T_CHECK(qexec("BEGIN", 0));
	T_CHECK(qexec("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", 1, id));
	post_job(m, id, "uploading", true, NULL, 0);
	sleep_ms(300);
	for (int i = 0; i < 100; i++) {
		char rel[64];

		snprintf(rel, sizeof(rel), "products/s%03d.json", i);
		t = now_s();
		post_file(m, id, rel, 10, "uploaded", NULL);
		lat_add(&l, now_s() - t);
		t = now_s();
		post_job(m, id, i < 99 ? "uploading" : "success", true, NULL, 0);
		lat_add(&l, now_s() - t);
	}
	T_CHECK(meta_connected(m));
	printf("  info: with the row locked (statement waiting): %d posts, mean %.1f us,"
	       " max %.1f us\n", l.n, l.sum / l.n * 1e6, l.max * 1e6);
	T_EQ_STR(qval(want, sizeof(want), STATUS_SQL, 1, id), "pending");
	T_CHECK(qexec("COMMIT", 0));
	T_CHECK(wait_value("success 100", 10, "SELECT (output->'uploadToS3'->>'status') || ' ' ||"
			   " (output->'uploadToS3'->>'filesUploaded') FROM jobs WHERE id = $1", id));
	meta_destroy(m);
}

static void test_row_appears_later(void)
{
	const char *id = "5f0c7a52-3c52-4a8e-bb0d-6a3f5e1c2d7e";
	struct meta *m;
	double t;

	m = start_meta(&cfg);
	if (!m)
		return;
	post_job(m, id, "uploading", true, NULL, 0);	/* no row yet */
	sleep_ms(500);
	T_CHECK(qexec("INSERT INTO jobs (id, name, status) VALUES ($1, 'late', 'running')", 1, id));
	t = now_s();
	T_CHECK(wait_value("uploading", 15, STATUS_SQL, id));
	printf("  info: written %.1f s after the row appeared\n", now_s() - t);
	meta_destroy(m);
}

static void test_policy_refresh(void)
{
	char id[37];
	struct meta_policy p;
	struct meta *m;
	double end;
	bool off = false;

	T_CHECK(new_job("{\"saveFiles\": true, \"uploadToS3\": {\"uploadPdfs\": true}}", id));
	m = start_meta(&cfg);
	if (!m)
		return;
	T_EQ_INT(meta_policy_get(m, id, &p), 0);
	meta_policy_release(&p);
	T_CHECK(wait_policy(m, id, &p, 10) && p.upload_pdfs);
	meta_policy_release(&p);
	T_CHECK(qexec("UPDATE jobs SET output = jsonb_set(output, '{uploadToS3,uploadPdfs}',"
		      " 'false') WHERE id = $1", 1, id));
	post_job(m, id, "pending", true, NULL, 0);	/* < 10 s: the cached policy stays */
	sleep_ms(1000);
	T_EQ_INT(meta_policy_get(m, id, &p), 0);
	T_CHECK(p.upload_pdfs);
	meta_policy_release(&p);
	sleep_ms(9200);
	post_job(m, id, "uploading", true, NULL, 0);	/* >= 10 s: fetched again */
	end = now_s() + 5;
	while (!off && now_s() < end) {
		T_EQ_INT(meta_policy_get(m, id, &p), 0);
		off = p.have_row && !p.upload_pdfs;
		meta_policy_release(&p);
		sleep_ms(20);
	}
	T_CHECK(off);
	meta_destroy(m);
}

/* A DATABASE_URL with a password and no server: the failures are logged, the password not. */
static void test_password_not_logged(void)
{
	struct cfg c = cfg;
	char path[] = "/tmp/t_meta_log.XXXXXX", buf[8192];
	struct meta *m = NULL;
	int fd, saved;
	ssize_t n;

	c.database_url = "postgresql://postgres:S3cr3tPw%21@127.0.0.1:1/db";
	fd = mkstemp(path);
	T_CHECK(fd >= 0);
	if (fd < 0)
		return;
	unlink(path);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	T_EQ_INT(meta_create(&m, &c), 0);
	T_EQ_INT(meta_start(m, on_complete, NULL), 0);
	post_job(m, "5f0c7a52-3c52-4a8e-bb0d-00000000cafe", "pending", true, NULL, 0);
	sleep_ms(1800);			/* three or so attempts: 0, 0.5, 1.5 s */
	T_CHECK(!meta_connected(m));
	meta_destroy(m);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	T_CHECK(strstr(buf, "cannot connect to postgresql") != NULL);
	T_CHECK(strstr(buf, "S3cr3tPw") == NULL);
	T_CHECK(strstr(buf, "S3cr3tPw%21") == NULL);
	fputs(buf, stderr);
}

/* meta_destroy right after the last posts: they are written before it returns. */
static void test_final_flush(void)
{
	char id[37], v[128];
	struct meta *m;

	T_CHECK(new_job("{}", id));
	m = start_meta(&cfg);
	if (!m)
		return;
	post_file(m, id, "all_products.json", 5, "uploaded", NULL);
	post_file(m, id, "categories.json", 6, "uploaded", NULL);
	post_job(m, id, "success", true, NULL, 0);
	meta_destroy(m);
	T_EQ_STR(qval(v, sizeof(v), "SELECT concat_ws(' ', output->'uploadToS3'->>'status',"
		      " output->'uploadToS3'->>'filesUploaded', output->'uploadToS3'->>'bytesUploaded')"
		      " FROM jobs WHERE id = $1", 1, id), "success 2 11");
}

static const struct t_case cases[] = {
	{ "schema_twice", test_schema_twice },
	{ "schema_concurrent", test_schema_concurrent },
	{ "status_success", test_status_success },
	{ "status_partial", test_status_partial },
	{ "status_disabled", test_status_disabled },
	{ "policy_from_row", test_policy_from_row },
	{ "complete_poll", test_complete_poll },
	{ "complete_notify", test_complete_notify },
	{ "status_notify", test_status_notify },
	{ "two_instances_sum", test_two_instances_sum },
	{ "final_flush", test_final_flush },
	{ "table_quoted", test_table_quoted },
	{ "row_appears_later", test_row_appears_later },
	{ "policy_refresh", test_policy_refresh },
	{ "pg_slow", test_pg_slow },
	{ "password_not_logged", test_password_not_logged },
	{ "pg_outage", test_pg_outage },
};

int main(int argc, char **argv)
{
	const char *url = getenv("DATABASE_URL");
	int rc;

	if (!url || !*url) {
		printf("SKIP: t_meta/*: DATABASE_URL is not set (run under tests/with-env.sh)\n");
		return 0;
	}
	log_init("t_meta", getenv("T_META_DEBUG") ? LOG_DEBUG : LOG_INFO, false);
	cfg.database_url = (char *)url;
	cfg.jobs_table = "jobs";
	cfg.pg_poll_seconds = 1;
	cfg.terminal_statuses = "completed,failed,cancelled";
	cfg.s3_enabled = true;
	cfg.bucket = "s3jobfs-test";
	cfg.prefix = "scraper-outputs/";
	db = PQconnectdb(url);
	if (PQstatus(db) != CONNECTION_OK) {
		printf("FAIL: t_meta/connect: %s", PQerrorMessage(db));
		PQfinish(db);
		return 1;
	}
	PQsetNoticeProcessor(db, quiet, NULL);
	if (!qexec("DROP TABLE IF EXISTS jobs", 0) ||
	    !qexec("CREATE TABLE jobs (id uuid primary key, name text, status text, config jsonb,"
		   " output jsonb, created_at timestamptz default now(),"
		   " updated_at timestamptz default now())", 0)) {
		printf("FAIL: t_meta/setup: cannot create the jobs table\n");
		PQfinish(db);
		return 1;
	}
	rc = t_run(argv[0], cases, sizeof(cases) / sizeof(cases[0]), argc, argv);
	PQfinish(db);
	return rc;
}
