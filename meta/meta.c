/* meta.c - job status, the per-file ledger and per-job policy in PostgreSQL, off the write path.
 *
 * Posts copy their arguments into uthash tables under m->lock and return: the latest state of
 * each job (uploadedAt is stamped when a post first moves it to success/partial/failed), the
 * latest ledger row of each file (dropped from memory once written), the cached policies. One
 * thread owns the connection (PQconnectdb; connect_timeout=5 when DATABASE_URL has none;
 * statement_timeout 30 s; backoff 0.5 s doubling to 10 s). On each connection it migrates
 * s3jobfs's own tables in one transaction under an advisory lock, so daemons starting together
 * serialise, and LISTENs on s3jobfs_complete. Each turn, woken by the self-pipe, the socket or
 * a timer, it delivers notifications, fetches wanted policies, upserts ledger rows (a batch is
 * one JSON parameter to jsonb_to_recordset), writes due job states (one statement per job:
 * counters aggregated from the ledger, jsonb_set into output, pg_notify on status change) and,
 * every S3JOBFS_PG_POLL_SECONDS, asks which posted jobs reached a terminal status. It never
 * holds m->lock across a query, so a slow or dead server only delays the thread; what a lost
 * connection or a transient refusal (timeout, deadlock) left unwritten stays in memory and is
 * written after the reconnect. A row the server refuses for good is dropped and logged. The
 * jobs table is only read, and only its output column updated; its name is quoted with
 * PQescapeIdentifier ("schema.table" part by part); every value is a PQexecParams parameter;
 * pg_errno() is the one mapping of libpq errors to -errno. Completed, written jobs idle for an
 * hour are forgotten, so memory follows the active jobs.
 *
 * Status object merge: the status keys (enabled, status, uploadedAt, s3Urls, bytesUploaded,
 * filesUploaded, errors) replace those of output->'uploadToS3'; its other keys (the job's
 * settings: bucket, prefix, includeFiles, upload*) are kept, and an `enabled` boolean already
 * there is kept too, because it is the job's own setting that meta_policy_get() reads back.
 *
 * meta_policy_includes(p, rel) - rel is the path inside the job folder; first matching row wins:
 *
 *   condition                                   uploaded?
 *   p->enabled false (uploadToS3.enabled)       no
 *   p->save_files false (output.saveFiles)      no
 *   rel empty                                   no
 *   top-level file, includeFiles given and      no
 *     rel not in it
 *   top-level "categories.json"                 only if uploadCategories   (default true)
 *   other top-level file                        yes
 *   under "categories/"                         only if uploadCategories   (default true)
 *   under "pdfs/"                               only if uploadPdfs         (default true)
 *   under "screenshots/"                        only if uploadScreenshots  (default false)
 *   under any other directory (products/ ...)   yes
 *
 * Locking: m->lock protects the three tables, m->stopping and m->connected; the connection,
 * the SQL texts and the error-dedup buffer belong to the thread alone. on_complete is called
 * from the thread without m->lock held, once per job and meta instance.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <uthash.h>

#include "cfg.h"
#include "log.h"
#include "meta.h"

#define UUID_LEN		36
#define FOLDER_LEN		(15 + 1 + UUID_LEN)	/* YYYYMMDD_HHMMSS_<uuid> */
#define STATUS_MAX		16
#define POLICY_REFRESH_MS	10000	/* re-read a job's policy when posted again after this */
#define BACKOFF_FIRST_MS	500
#define BACKOFF_MAX_MS		10000
#define STATUS_MIN_INTERVAL_MS	1000	/* rewrites of an unchanged status (new counters) */
#define MISSING_ROW_RETRY_MS	10000	/* a job state whose row is not there (yet) */
#define MISSING_ROW_RETRIES	30
#define FILE_BATCH		500	/* ledger rows per statement */
#define JOB_BATCH		64
#define POLICY_BATCH		64
#define POLL_BATCH		1000	/* uuids per completion query */
#define MAX_PASSES		8	/* batches per loop turn before looking at the rest */
#define MAX_STATUS_ERRORS	100	/* errors kept in one status object */
#define IDLE_FORGET_MS		3600000	/* a completed, written, idle job leaves memory */
#define STATEMENT_TIMEOUT	"30s"
#define SCHEMA_LOCK_KEY		"8301095564798751489"	/* pg_advisory_xact_lock: "s3jobfs\1" */

static const char *const job_statuses[] = {
	"pending", "uploading", "success", "partial", "failed", "disabled", NULL
};
static const char *const finished_statuses[] = { "success", "partial", "failed", NULL };
static const char *const file_states[] = {
	"pending", "uploaded", "failed", "skipped", "deleted", NULL
};

/* ---- pure functions ---- */

static bool in_list(const char *s, const char *const *list)
{
	if (!s)
		return false;
	for (size_t i = 0; list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static bool is_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int digits_value(const char *s, size_t n)
{
	int v = 0;

	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/* s[0..35] is a textual uuid (8-4-4-4-12 hex digits): its lowercase form into out. */
static bool uuid_copy(const char *s, char out[UUID_LEN + 1])
{
	char tmp[UUID_LEN + 1];

	for (size_t i = 0; i < UUID_LEN; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!isxdigit(c)) {
			return false;
		}
		tmp[i] = (char)tolower(c);
	}
	tmp[UUID_LEN] = '\0';
	memcpy(out, tmp, sizeof(tmp));
	return true;
}

/* A whole string that is a uuid → lowercase into out. */
static bool uuid_norm(const char *s, char out[UUID_LEN + 1])
{
	return s && strnlen(s, UUID_LEN + 1) == UUID_LEN && uuid_copy(s, out);
}

/* "YYYYMMDD_HHMMSS" with a real calendar date and a 24-hour time. */
static bool valid_stamp(const char *s)
{
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, dim;

	if (!is_digits(s, 8) || s[8] != '_' || !is_digits(s + 9, 6))
		return false;
	y = digits_value(s, 4);
	mo = digits_value(s + 4, 2);
	d = digits_value(s + 6, 2);
	if (y < 1 || mo < 1 || mo > 12 || d < 1)
		return false;
	dim = mdays[mo - 1] + (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
	return d <= dim && digits_value(s + 9, 2) <= 23 && digits_value(s + 11, 2) <= 59 &&
	       digits_value(s + 13, 2) <= 59;
}

bool meta_parse_job_folder(const char *name, char uuid[37])
{
	char tmp[UUID_LEN + 1];

	if (uuid)
		uuid[0] = '\0';
	if (!name || strnlen(name, FOLDER_LEN + 1) != FOLDER_LEN || !valid_stamp(name) ||
	    name[15] != '_' || !uuid_copy(name + 16, tmp))
		return false;
	if (uuid)
		memcpy(uuid, tmp, sizeof(tmp));
	return true;
}

static void policy_defaults(struct meta_policy *p, bool s3_enabled)
{
	memset(p, 0, sizeof(*p));
	p->enabled = s3_enabled;
	p->save_files = true;
	p->upload_pdfs = true;
	p->upload_screenshots = false;
	p->upload_categories = true;
}

void meta_policy_release(struct meta_policy *p)
{
	if (!p)
		return;
	free(p->bucket);
	free(p->prefix);
	for (size_t i = 0; i < p->n_include; i++)
		free(p->include_files[i]);
	free(p->include_files);
	p->bucket = p->prefix = NULL;
	p->include_files = NULL;
	p->n_include = 0;
}

/* obj[key] as a boolean into *out; absent or null leaves *out. -EINVAL for another type. */
static int json_bool(const cJSON *obj, const char *key, bool *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsBool(v))
		return -EINVAL;
	*out = cJSON_IsTrue(v);
	return 0;
}

/* obj[key] as a string into *out (heap); absent or null leaves *out. -EINVAL, -ENOMEM. */
static int json_string(const cJSON *obj, const char *key, char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v))
		return -EINVAL;
	*out = strdup(v->valuestring);
	return *out ? 0 : -ENOMEM;
}

/* obj[key] as an array of strings into *out / *n (heap; an empty array gives a non-NULL *out
 * with *n 0). Absent or null leaves them. -EINVAL, -ENOMEM; *n counts what was filled. */
static int json_names(const cJSON *obj, const char *key, char ***out, size_t *n)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key), *e;

	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsArray(v))
		return -EINVAL;
	*out = calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	cJSON_ArrayForEach(e, v) {
		if (!cJSON_IsString(e))
			return -EINVAL;
		(*out)[*n] = strdup(e->valuestring);
		if (!(*out)[*n])
			return -ENOMEM;
		(*n)++;
	}
	return 0;
}

/* Like S3_PREFIX: no leading '/', a trailing '/' unless empty. */
static int prefix_normalise(char **pp)
{
	char *p = *pp, *s = p, *np;
	size_t n;

	if (!p)
		return 0;
	while (*s == '/')
		s++;
	n = strlen(s);
	memmove(p, s, n + 1);
	if (n == 0 || p[n - 1] == '/')
		return 0;
	np = realloc(p, n + 2);
	if (!np)
		return -ENOMEM;
	np[n] = '/';
	np[n + 1] = '\0';
	*pp = np;
	return 0;
}

int meta_policy_from_json(const char *output_json, bool s3_enabled, struct meta_policy *p)
{
	cJSON *root = NULL;
	const cJSON *up;
	int r = 0;

	if (!p)
		return -EINVAL;
	policy_defaults(p, s3_enabled);
	if (!output_json)
		return 0;
	p->have_row = true;
	root = cJSON_Parse(output_json);
	if (!cJSON_IsObject(root)) {
		r = -EINVAL;
		goto out;
	}
	r = json_bool(root, "saveFiles", &p->save_files);
	if (r < 0)
		goto out;
	up = cJSON_GetObjectItemCaseSensitive(root, "uploadToS3");
	if (!up || cJSON_IsNull(up))
		goto out;
	if (cJSON_IsBool(up)) {		/* "uploadToS3": false as a shorthand */
		p->enabled = cJSON_IsTrue(up);
		goto out;
	}
	if (!cJSON_IsObject(up)) {
		r = -EINVAL;
		goto out;
	}
	if ((r = json_bool(up, "enabled", &p->enabled)) < 0 ||
	    (r = json_string(up, "bucket", &p->bucket)) < 0 ||
	    (r = json_string(up, "prefix", &p->prefix)) < 0 ||
	    (r = json_names(up, "includeFiles", &p->include_files, &p->n_include)) < 0 ||
	    (r = json_bool(up, "uploadPdfs", &p->upload_pdfs)) < 0 ||
	    (r = json_bool(up, "uploadScreenshots", &p->upload_screenshots)) < 0 ||
	    (r = json_bool(up, "uploadCategories", &p->upload_categories)) < 0)
		goto out;
	if (p->bucket && !*p->bucket) {
		free(p->bucket);
		p->bucket = NULL;
	}
	r = prefix_normalise(&p->prefix);
out:
	cJSON_Delete(root);
	if (r < 0) {
		meta_policy_release(p);
		policy_defaults(p, s3_enabled);
		p->have_row = true;
	}
	return r;
}

static bool under_dir(const char *rel, const char *dir)
{
	return strncmp(rel, dir, strlen(dir)) == 0;
}

bool meta_policy_includes(const struct meta_policy *p, const char *rel)
{
	if (!p || !rel || !p->enabled || !p->save_files)
		return false;
	while (*rel == '/')
		rel++;
	if (!*rel)
		return false;
	if (!strchr(rel, '/')) {
		if (p->include_files) {
			size_t i;

			for (i = 0; i < p->n_include; i++)
				if (p->include_files[i] && strcmp(rel, p->include_files[i]) == 0)
					break;
			if (i == p->n_include)
				return false;
		}
		if (strcmp(rel, "categories.json") == 0)
			return p->upload_categories;
		return true;
	}
	if (under_dir(rel, "categories/"))
		return p->upload_categories;
	if (under_dir(rel, "pdfs/"))
		return p->upload_pdfs;
	if (under_dir(rel, "screenshots/"))
		return p->upload_screenshots;
	return true;
}

/* "2025-11-14T01:35:30.123456Z" into buf[32]. */
static void format_utc(time_t sec, long nsec, char *buf, size_t size)
{
	struct tm tm;
	size_t n;

	if (nsec < 0 || nsec > 999999999)
		nsec = 0;
	if (!gmtime_r(&sec, &tm) || (n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
		snprintf(buf, size, "1970-01-01T00:00:00.000000Z");
		return;
	}
	snprintf(buf + n, size - n, ".%06ldZ", nsec / 1000);
}

/* One s3Urls entry for a top-level name ("x.json" → x_json, "pdfs/" → pdfs_dir). */
static int add_url(cJSON *urls, const struct meta_job_state *st, const char *entry)
{
	const char *prefix = st->prefix ? st->prefix : "";
	size_t n = strlen(entry), base, pn;
	bool dir = n > 0 && entry[n - 1] == '/';
	char *key = NULL, *url = NULL;
	int r = -ENOMEM;

	base = dir ? n - 1 : n;
	if (base == 0 || memchr(entry, '/', base))
		return 0;			/* not a top-level name */
	while (*prefix == '/')
		prefix++;
	pn = strlen(prefix);
	if (asprintf(&key, "%.*s%s", (int)base, entry, dir ? "_dir" : "") < 0) {
		key = NULL;
		goto out;
	}
	for (char *c = key; c < key + base; c++)
		if (*c == '.')
			*c = '_';
	r = 0;
	if (cJSON_GetObjectItemCaseSensitive(urls, key))
		goto out;			/* first one wins */
	r = -ENOMEM;
	if (asprintf(&url, "s3://%s/%s%s%s/%s", st->bucket, prefix,
		     pn && prefix[pn - 1] != '/' ? "/" : "", st->folder, entry) < 0) {
		url = NULL;
		goto out;
	}
	r = cJSON_AddStringToObject(urls, key, url) ? 0 : -ENOMEM;
out:
	free(key);
	free(url);
	return r;
}

static bool add_u64(cJSON *o, const char *key, uint64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRIu64, v);
	return cJSON_AddRawToObject(o, key, num) != NULL;
}

static bool add_error(cJSON *errs, const struct meta_error *e)
{
	cJSON *o = cJSON_CreateObject();
	char t[40];

	if (!o || !cJSON_AddItemToArray(errs, o))
		goto fail;
	format_utc(e->at, 0, t, sizeof(t));
	return cJSON_AddStringToObject(o, "file", e->file ? e->file : "") &&
	       cJSON_AddStringToObject(o, "code", e->code ? e->code : "") &&
	       cJSON_AddStringToObject(o, "message", e->message ? e->message : "") &&
	       cJSON_AddNumberToObject(o, "attempts", e->attempts) &&
	       cJSON_AddStringToObject(o, "time", t);
fail:
	cJSON_Delete(o);
	return false;
}

char *meta_status_json(const struct meta_job_state *st, uint64_t files_uploaded,
		       uint64_t bytes_uploaded, const struct timespec *uploaded_at)
{
	cJSON *o = NULL, *urls, *errs;
	char *text = NULL, t[40];

	if (!st)
		return NULL;
	o = cJSON_CreateObject();
	if (!o || !cJSON_AddBoolToObject(o, "enabled", st->enabled) ||
	    !cJSON_AddStringToObject(o, "status", st->status ? st->status : ""))
		goto out;
	if (uploaded_at) {
		format_utc(uploaded_at->tv_sec, uploaded_at->tv_nsec, t, sizeof(t));
		if (!cJSON_AddStringToObject(o, "uploadedAt", t))
			goto out;
	} else if (!cJSON_AddNullToObject(o, "uploadedAt")) {
		goto out;
	}
	urls = cJSON_AddObjectToObject(o, "s3Urls");
	if (!urls)
		goto out;
	if (st->enabled && st->bucket && *st->bucket && st->folder && *st->folder)
		for (size_t i = 0; i < st->n_top; i++)
			if (st->top_entries[i] && add_url(urls, st, st->top_entries[i]) < 0)
				goto out;
	if (!add_u64(o, "bytesUploaded", bytes_uploaded) ||
	    !add_u64(o, "filesUploaded", files_uploaded))
		goto out;
	errs = cJSON_AddArrayToObject(o, "errors");
	if (!errs)
		goto out;
	for (size_t i = 0; i < st->n_errors; i++)
		if (!add_error(errs, &st->errors[i]))
			goto out;
	text = cJSON_PrintUnformatted(o);
out:
	cJSON_Delete(o);
	return text;
}

/* ---- the database side ---- */

struct mjob {
	char uuid[UUID_LEN + 1];		/* hash key */
	struct meta_job_state *st;		/* latest posted (owned), NULL before a post */
	bool dirty;				/* st (or the counters) not yet written */
	bool have_at;
	struct timespec uploaded_at;		/* when st->status became a finished one */
	char written[STATUS_MAX];		/* status this instance last wrote, "" none */
	uint64_t written_ms;
	uint64_t retry_ms;			/* not before (row missing) */
	int missing;				/* writes that found no row */
	bool complete_seen;			/* on_complete called */
	uint64_t last_ms;			/* last post or policy request */
	UT_hash_handle hh;
};

struct mfile {
	char *key;				/* "<uuid>/<rel>", hash key */
	const char *rel;			/* into key */
	char *bucket, *okey, *checksum, *etag, *last_error;
	char state[STATUS_MAX];
	uint64_t size;
	int attempts;
	UT_hash_handle hh;
};

struct mpol {
	char uuid[UUID_LEN + 1];		/* hash key */
	struct meta_policy pol;
	bool fetched, wanted;
	uint64_t fetched_ms;
	UT_hash_handle hh;
};

struct meta {
	const struct cfg *cfg;
	bool have_db;				/* DATABASE_URL set */
	bool has_timeout;			/* DATABASE_URL names connect_timeout */
	char *password;				/* from DATABASE_URL, only to redact messages */
	char *terminal;				/* text[] literal of S3JOBFS_TERMINAL_STATUSES */
	uint64_t poll_ms;
	int wake[2];				/* self-pipe: posts and stop wake the thread */

	pthread_mutex_t lock;
	struct mjob *jobs;			/* protected by lock */
	struct mfile *files;			/* protected by lock; removed once written */
	struct mpol *pols;			/* protected by lock */
	bool stopping;				/* protected by lock */
	bool connected;				/* protected by lock */

	bool started;
	pthread_t thread;
	meta_complete_fn on_complete;
	void *arg;

	/* the thread's own */
	PGconn *conn;
	char *table;				/* the jobs table, quoted */
	char *sql_status, *sql_poll, *sql_policy;
	uint64_t next_poll_ms;
	char last_err[600];			/* the last failure logged, to log repeats at debug */
	uint64_t errors;			/* atomic: failed connects and statements */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A copy of s (NULL for NULL); *r becomes -ENOMEM when the copy fails. */
static char *xdup(const char *s, int *r)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*r = -ENOMEM;
	return d;
}

static void state_free(struct meta_job_state *s)
{
	if (!s)
		return;
	free((char *)s->uuid);
	free((char *)s->folder);
	free((char *)s->bucket);
	free((char *)s->prefix);
	free((char *)s->status);
	for (size_t i = 0; s->top_entries && i < s->n_top; i++)
		free((char *)s->top_entries[i]);
	free((void *)s->top_entries);
	for (size_t i = 0; s->errors && i < s->n_errors; i++) {
		free((char *)s->errors[i].file);
		free((char *)s->errors[i].code);
		free((char *)s->errors[i].message);
	}
	free((void *)s->errors);
	free(s);
}

/* A deep copy of in, with uuid replaced and at most MAX_STATUS_ERRORS errors. NULL: ENOMEM. */
static struct meta_job_state *state_dup(const struct meta_job_state *in, const char *uuid)
{
	struct meta_job_state *s = calloc(1, sizeof(*s));
	const char **top = NULL;
	struct meta_error *errs = NULL;
	int r = 0;

	if (!s)
		return NULL;
	s->enabled = in->enabled;
	s->uuid = xdup(uuid, &r);
	s->folder = xdup(in->folder, &r);
	s->bucket = xdup(in->bucket, &r);
	s->prefix = xdup(in->prefix, &r);
	s->status = xdup(in->status, &r);
	if (r < 0)
		goto out;
	if (in->n_top && in->top_entries) {
		top = calloc(in->n_top, sizeof(*top));
		r = top ? 0 : -ENOMEM;
		s->top_entries = top;
		s->n_top = top ? in->n_top : 0;
		for (size_t i = 0; top && i < in->n_top; i++)
			top[i] = xdup(in->top_entries[i], &r);
	}
	if (r == 0 && in->n_errors && in->errors) {
		size_t n = in->n_errors < MAX_STATUS_ERRORS ? in->n_errors : MAX_STATUS_ERRORS;

		errs = calloc(n, sizeof(*errs));
		r = errs ? 0 : -ENOMEM;
		s->errors = errs;
		s->n_errors = errs ? n : 0;
		for (size_t i = 0; errs && i < n; i++) {
			errs[i].attempts = in->errors[i].attempts;
			errs[i].at = in->errors[i].at;
			errs[i].file = xdup(in->errors[i].file, &r);
			errs[i].code = xdup(in->errors[i].code, &r);
			errs[i].message = xdup(in->errors[i].message, &r);
		}
	}
out:
	if (r < 0) {
		state_free(s);
		s = NULL;
	}
	return s;
}

static void mfile_free(struct mfile *f)
{
	if (!f)
		return;
	free(f->key);
	free(f->bucket);
	free(f->okey);
	free(f->checksum);
	free(f->etag);
	free(f->last_error);
	free(f);
}

/* Deep copy of src into dst. -ENOMEM leaves dst at the defaults. */
static int policy_copy(struct meta_policy *dst, const struct meta_policy *src)
{
	int r = 0;

	*dst = *src;
	dst->include_files = NULL;
	dst->n_include = 0;
	dst->bucket = xdup(src->bucket, &r);
	dst->prefix = xdup(src->prefix, &r);
	if (r == 0 && src->include_files) {
		dst->include_files = calloc(src->n_include + 1, sizeof(char *));
		r = dst->include_files ? 0 : -ENOMEM;
		for (size_t i = 0; dst->include_files && i < src->n_include; i++)
			dst->include_files[dst->n_include++] = xdup(src->include_files[i], &r);
	}
	if (r < 0) {
		bool en = src->enabled;

		meta_policy_release(dst);
		policy_defaults(dst, en);
	}
	return r;
}

static void wake(struct meta *m)
{
	char b = 1;
	ssize_t w = write(m->wake[1], &b, 1);

	(void)w;	/* a full pipe means a wake-up is pending anyway */
}

static void drain_wake(struct meta *m)
{
	char buf[64];

	while (read(m->wake[0], buf, sizeof(buf)) > 0)
		;
}

static bool stopping(struct meta *m)
{
	bool s;

	pthread_mutex_lock(&m->lock);
	s = m->stopping;
	pthread_mutex_unlock(&m->lock);
	return s;
}

/* The job's entry, created when missing (NULL: ENOMEM). A post of a job whose policy is older
 * than POLICY_REFRESH_MS asks for it again. Called with m->lock held. */
static struct mjob *job_touch(struct meta *m, const char *uuid)
{
	struct mjob *j;
	struct mpol *p;

	HASH_FIND_STR(m->pols, uuid, p);
	if (p && p->fetched && !p->wanted && now_ms() - p->fetched_ms >= POLICY_REFRESH_MS)
		p->wanted = true;
	HASH_FIND_STR(m->jobs, uuid, j);
	if (!j) {
		j = calloc(1, sizeof(*j));
		if (!j)
			return NULL;
		memcpy(j->uuid, uuid, sizeof(j->uuid));
		HASH_ADD_STR(m->jobs, uuid, j);
	}
	j->last_ms = now_ms();
	return j;
}

void meta_post_job(struct meta *m, const struct meta_job_state *st)
{
	struct meta_job_state *copy;
	char id[UUID_LEN + 1];
	struct mjob *j;

	if (!m || !m->have_db || !st)
		return;
	if (!uuid_norm(st->uuid, id) || !in_list(st->status, job_statuses)) {
		char q1[80], q2[40];

		log_msg(LOG_WARNING, "job state not recorded: bad uuid or status", "job=%s status=%s",
			log_quote(q1, sizeof(q1), st->uuid ? st->uuid : "-"),
			log_quote(q2, sizeof(q2), st->status ? st->status : "-"));
		return;
	}
	copy = state_dup(st, id);
	if (!copy) {
		log_msg(LOG_ERR, "job state not recorded: out of memory", "job=%s", id);
		return;
	}
	pthread_mutex_lock(&m->lock);
	j = job_touch(m, id);
	if (j) {
		struct meta_job_state *old = j->st;

		if (!old || strcmp(old->status, copy->status) != 0) {
			j->have_at = in_list(copy->status, finished_statuses);
			if (j->have_at)
				clock_gettime(CLOCK_REALTIME, &j->uploaded_at);
		}
		j->st = copy;
		copy = old;
		j->dirty = true;
		j->missing = 0;
		j->retry_ms = 0;
	}
	pthread_mutex_unlock(&m->lock);
	state_free(copy);
	wake(m);
}

void meta_post_file(struct meta *m, const char *uuid, const char *rel, const char *bucket,
		    const char *key, uint64_t size, const char *checksum, const char *etag,
		    const char *state, int attempts, const char *last_error)
{
	char id[UUID_LEN + 1];
	struct mfile *f = NULL, *old = NULL;
	int r = 0;

	if (!m || !m->have_db)
		return;
	if (!uuid_norm(uuid, id) || !rel || !*rel || !in_list(state, file_states)) {
		char q1[80], q2[40];

		log_msg(LOG_WARNING, "ledger row not recorded: bad uuid, path or state",
			"job=%s state=%s", log_quote(q1, sizeof(q1), uuid ? uuid : "-"),
			log_quote(q2, sizeof(q2), state ? state : "-"));
		return;
	}
	f = calloc(1, sizeof(*f));
	if (!f || asprintf(&f->key, "%s/%s", id, rel) < 0) {
		if (f)
			f->key = NULL;
		goto nomem;
	}
	f->rel = f->key + UUID_LEN + 1;
	f->size = size;
	f->attempts = attempts;
	snprintf(f->state, sizeof(f->state), "%s", state);
	f->bucket = xdup(bucket, &r);
	f->okey = xdup(key, &r);
	f->checksum = xdup(checksum, &r);
	f->etag = xdup(etag, &r);
	f->last_error = xdup(last_error, &r);
	if (r < 0)
		goto nomem;
	pthread_mutex_lock(&m->lock);
	HASH_FIND_STR(m->files, f->key, old);
	if (old)
		HASH_DEL(m->files, old);
	HASH_ADD_KEYPTR(hh, m->files, f->key, strlen(f->key), f);
	job_touch(m, id);
	pthread_mutex_unlock(&m->lock);
	mfile_free(old);
	wake(m);
	return;
nomem:
	log_msg(LOG_ERR, "ledger row not recorded: out of memory", "job=%s", id);
	mfile_free(f);
}

int meta_policy_get(struct meta *m, const char *uuid, struct meta_policy *out)
{
	char id[UUID_LEN + 1];
	struct mpol *p;
	bool ask = false;
	int r = 0;

	if (!out)
		return -EINVAL;
	policy_defaults(out, m && m->cfg->s3_enabled);
	if (!m || !uuid_norm(uuid, id))
		return -EINVAL;
	if (!m->have_db)
		return 0;
	pthread_mutex_lock(&m->lock);
	HASH_FIND_STR(m->pols, id, p);
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(p->uuid, id, sizeof(p->uuid));
		policy_defaults(&p->pol, m->cfg->s3_enabled);
		p->wanted = ask = true;
		HASH_ADD_STR(m->pols, uuid, p);
		job_touch(m, id);
	} else if (p->fetched && !p->pol.have_row && !p->wanted &&
		   now_ms() - p->fetched_ms >= m->poll_ms) {
		p->wanted = ask = true;		/* no row yet: look again */
	}
	if (p->fetched)
		r = policy_copy(out, &p->pol);
out:
	pthread_mutex_unlock(&m->lock);
	if (ask)
		wake(m);
	return r;
}

uint64_t meta_errors(struct meta *m)
{
	return m ? __atomic_load_n(&m->errors, __ATOMIC_RELAXED) : 0;
}

bool meta_connected(struct meta *m)
{
	bool c;

	if (!m)
		return false;
	pthread_mutex_lock(&m->lock);
	c = m->connected;
	pthread_mutex_unlock(&m->lock);
	return c;
}

/* ---- the thread: libpq ---- */

/* The one mapping of libpq outcomes to -errno. res NULL: the connection attempt (or the
 * allocation of a result) failed. */
static int pg_errno(PGconn *conn, const PGresult *res)
{
	static const struct { const char *sqlstate; int err; } map[] = {
		{ "08", -ECONNRESET },		/* connection exception */
		{ "57P0", -ECONNRESET },	/* admin/crash shutdown, cannot connect now */
		{ "57014", -ETIMEDOUT },	/* query canceled (statement_timeout) */
		{ "53300", -EAGAIN },		/* too many connections */
		{ "53", -ENOSPC },		/* insufficient resources */
		{ "40", -EAGAIN },		/* serialization failure, deadlock */
		{ "28", -EACCES },		/* invalid authorization */
		{ "42501", -EACCES },		/* insufficient privilege */
		{ "3D000", -ENOENT },		/* no such database */
		{ "42P01", -ENOENT },		/* no such table */
		{ "42703", -ENOENT },		/* no such column */
		{ "23505", -EEXIST },		/* unique violation */
		{ "23", -EINVAL },		/* other integrity violations */
		{ "22", -EINVAL },		/* data exception (bad uuid, bad json, encoding) */
	};
	const char *state;

	if (!res)
		return !conn ? -ENOMEM : PQstatus(conn) == CONNECTION_OK ? -ENOMEM : -ENOTCONN;
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
		return 0;
	default:
		break;
	}
	if (PQstatus(conn) != CONNECTION_OK)
		return -ECONNRESET;
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	for (size_t i = 0; state && i < sizeof(map) / sizeof(map[0]); i++)
		if (strncmp(state, map[i].sqlstate, strlen(map[i].sqlstate)) == 0)
			return map[i].err;
	return -EIO;
}

static bool conn_lost(struct meta *m)
{
	return !m->conn || PQstatus(m->conn) != CONNECTION_OK;
}

/* After a failure r: keep what was being written and start over on a new connection (after
 * the backoff)? Yes for a lost connection and for transient refusals (statement_timeout,
 * deadlock); no for a refusal that would come again (the row or value is dropped, logged). */
static bool must_reconnect(struct meta *m, int r)
{
	return r < 0 && (conn_lost(m) || r == -ETIMEDOUT || r == -EAGAIN);
}

/* A libpq message on one line, without the password, quoted for logfmt into buf. */
static const char *pg_message(const struct meta *m, const char *raw, char *buf, size_t size)
{
	char line[512];
	size_t o = 0, pl = m->password ? strlen(m->password) : 0;

	for (const char *s = raw ? raw : ""; *s && o < sizeof(line) - 4; ) {
		if (pl && strncmp(s, m->password, pl) == 0) {
			memcpy(line + o, "***", 3);
			o += 3;
			s += pl;
			continue;
		}
		line[o++] = (*s == '\n' || *s == '\r' || *s == '\t') ? ' ' : *s;
		s++;
	}
	while (o && line[o - 1] == ' ')
		o--;
	line[o] = '\0';
	return log_quote(buf, size, line);
}

/* Log a failure: at warning when it differs from the previous one, else at debug. */
static void note_failure(struct meta *m, const char *what, const char *raw, int err)
{
	char q[600];

	__atomic_add_fetch(&m->errors, 1, __ATOMIC_RELAXED);
	pg_message(m, raw, q, sizeof(q));
	if (strcmp(q, m->last_err) != 0) {
		log_msg(LOG_WARNING, what, "error=%s errno=%d", q, -err);
		snprintf(m->last_err, sizeof(m->last_err), "%s", q);
	} else {
		log_msg(LOG_DEBUG, what, "error=%s errno=%d", q, -err);
	}
}

static void notice_to_log(void *arg, const char *message)
{
	char q[600];

	log_msg(LOG_DEBUG, "postgresql notice", "text=%s", pg_message(arg, message, q, sizeof(q)));
}

/* One parameterised statement (PQexecParams, text in and out). *out, when given, gets the
 * result (caller PQclear()s it). 0 or -errno (pg_errno); failures are logged as `what`. */
static int db_exec(struct meta *m, const char *what, const char *sql, int n,
		   const char *const *params, PGresult **out)
{
	PGresult *res = PQexecParams(m->conn, sql, n, NULL, params, NULL, NULL, 0);
	int r = pg_errno(m->conn, res);

	if (out)
		*out = NULL;
	if (r < 0) {
		note_failure(m, what, res ? PQresultErrorMessage(res) : PQerrorMessage(m->conn), r);
		PQclear(res);
		return r;
	}
	m->last_err[0] = '\0';
	if (out)
		*out = res;
	else
		PQclear(res);
	return 0;
}

/* The jobs table as a quoted identifier ("schema.table" quoted part by part); heap (free()),
 * NULL: ENOMEM or an encoding error. */
static char *quote_table(PGconn *conn, const char *name)
{
	const char *dot = strchr(name, '.');
	char *a = NULL, *b = NULL, *q = NULL;
	int n = -1;

	a = PQescapeIdentifier(conn, name, dot ? (size_t)(dot - name) : strlen(name));
	if (dot)
		b = PQescapeIdentifier(conn, dot + 1, strlen(dot + 1));
	if (a && (b || !dot))
		n = b ? asprintf(&q, "%s.%s", a, b) : asprintf(&q, "%s", a);
	if (n < 0)
		q = NULL;
	PQfreemem(a);
	PQfreemem(b);
	return q;
}

static void free_sql(struct meta *m)
{
	free(m->table);
	free(m->sql_status);
	free(m->sql_poll);
	free(m->sql_policy);
	m->table = m->sql_status = m->sql_poll = m->sql_policy = NULL;
}

/* The statements that name the jobs table. The status one: ledger counters aggregated in a
 * CTE, the jobs row updated with jsonb_set (output NULL or not an object counts as '{}';
 * status keys over the old uploadToS3 object, whose `enabled` boolean wins), and pg_notify
 * on status change, all in one statement and so one transaction. */
static int build_sql(struct meta *m)
{
	char *t = quote_table(m->conn, m->cfg->jobs_table && *m->cfg->jobs_table ?
				      m->cfg->jobs_table : "jobs");
	int r = -ENOMEM;

	m->table = t;
	if (!t)
		goto out;
	if (asprintf(&m->sql_status,
		     "WITH agg AS ("
		     " SELECT COALESCE(SUM(size), 0) AS bytes, COUNT(*) AS files FROM s3jobfs_files"
		     " WHERE job_id = $1::uuid AND state = 'uploaded'"
		     "), upd AS ("
		     " UPDATE %s AS j SET output = jsonb_set("
		     "  CASE WHEN jsonb_typeof(j.output) = 'object' THEN j.output ELSE '{}'::jsonb END,"
		     "  '{uploadToS3}',"
		     "  CASE WHEN jsonb_typeof(j.output->'uploadToS3') = 'object'"
		     "   THEN j.output->'uploadToS3' ELSE '{}'::jsonb END"
		     "  || $2::jsonb"
		     "  || jsonb_build_object('bytesUploaded', agg.bytes, 'filesUploaded', agg.files)"
		     "  || CASE WHEN jsonb_typeof(j.output->'uploadToS3'->'enabled') = 'boolean'"
		     "   THEN jsonb_build_object('enabled', j.output->'uploadToS3'->'enabled')"
		     "   ELSE '{}'::jsonb END,"
		     "  true)"
		     " FROM agg WHERE j.id = $1::uuid RETURNING 1"
		     ") SELECT (SELECT count(*) FROM upd),"
		     " (SELECT count(pg_notify('s3jobfs_status', $3)) FROM upd WHERE $4::boolean)",
		     t) < 0) {
		m->sql_status = NULL;
		goto out;
	}
	if (asprintf(&m->sql_poll, "SELECT id::text FROM %s"
		     " WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])", t) < 0) {
		m->sql_poll = NULL;
		goto out;
	}
	if (asprintf(&m->sql_policy, "SELECT output::text FROM %s WHERE id = $1::uuid", t) < 0) {
		m->sql_policy = NULL;
		goto out;
	}
	r = 0;
out:
	if (r < 0)
		free_sql(m);
	return r;
}

/* s3jobfs's own tables, one list of statements per schema version; never the jobs table. */
static const char *const schema_v1[] = {
	"CREATE TABLE IF NOT EXISTS s3jobfs_files ("
	" job_id uuid NOT NULL,"
	" rel_path text NOT NULL,"
	" bucket text,"
	" key text,"
	" size bigint NOT NULL DEFAULT 0,"
	" checksum text,"
	" etag text,"
	" state text NOT NULL CHECK (state IN"
	"  ('pending', 'uploaded', 'failed', 'skipped', 'deleted')),"
	" attempts integer NOT NULL DEFAULT 0,"
	" last_error text,"
	" created_at timestamptz NOT NULL DEFAULT now(),"
	" updated_at timestamptz NOT NULL DEFAULT now(),"
	" PRIMARY KEY (job_id, rel_path))",
	NULL
};

static const struct { int version; const char *const *stmts; } migrations[] = {
	{ 1, schema_v1 },
};

/* Create or migrate, in one transaction under an advisory lock: concurrent starts wait for
 * the first one and then find nothing to do. */
static int schema_migrate(struct meta *m)
{
	const char *key = SCHEMA_LOCK_KEY;
	PGresult *res = NULL;
	int r, have;

	r = db_exec(m, "cannot begin the schema transaction", "BEGIN", 0, NULL, NULL);
	if (r < 0)
		return r;
	if ((r = db_exec(m, "cannot take the schema lock", "SELECT pg_advisory_xact_lock($1::bigint)",
			 1, &key, NULL)) < 0 ||
	    (r = db_exec(m, "cannot create s3jobfs_schema",
			 "CREATE TABLE IF NOT EXISTS s3jobfs_schema (version integer PRIMARY KEY,"
			 " applied_at timestamptz NOT NULL DEFAULT now())", 0, NULL, NULL)) < 0 ||
	    (r = db_exec(m, "cannot read the schema version",
			 "SELECT COALESCE(max(version), 0) FROM s3jobfs_schema", 0, NULL, &res)) < 0)
		goto out;
	have = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
	for (size_t i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++) {
		char v[16];
		const char *pv = v;

		if (migrations[i].version <= have)
			continue;
		for (size_t k = 0; migrations[i].stmts[k]; k++)
			if ((r = db_exec(m, "cannot migrate the schema", migrations[i].stmts[k], 0, NULL,
					 NULL)) < 0)
				goto out;
		snprintf(v, sizeof(v), "%d", migrations[i].version);
		r = db_exec(m, "cannot record the schema version",
			    "INSERT INTO s3jobfs_schema (version) VALUES ($1::integer)", 1, &pv, NULL);
		if (r < 0)
			goto out;
		log_msg(LOG_INFO, "schema migrated", "version=%d", migrations[i].version);
	}
	r = db_exec(m, "cannot commit the schema", "COMMIT", 0, NULL, NULL);
out:
	PQclear(res);
	if (r < 0 && !conn_lost(m))
		PQclear(PQexecParams(m->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0));
	return r;
}

/* Close the connection; `why` (NULL: a normal close) is logged if it was up. */
static void db_disconnect(struct meta *m, const char *why)
{
	bool was;

	if (!m->conn)
		return;
	PQfinish(m->conn);
	m->conn = NULL;
	free_sql(m);
	pthread_mutex_lock(&m->lock);
	was = m->connected;
	m->connected = false;
	pthread_mutex_unlock(&m->lock);
	if (was && why)
		log_msg(LOG_WARNING, why, NULL);
	else if (was)
		log_msg(LOG_DEBUG, "disconnected from postgresql", NULL);
}

/* Say so when the jobs table is missing (a wrong S3JOBFS_JOBS_TABLE); the scraper may still
 * create it, so this is not fatal. */
static void check_table(struct meta *m)
{
	const char *t = m->table;
	PGresult *res = NULL;
	char q[300];

	if (db_exec(m, "cannot look up the jobs table", "SELECT to_regclass($1) IS NOT NULL", 1, &t,
		    &res) == 0 && strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		log_msg(LOG_ERR, "the jobs table does not exist (S3JOBFS_JOBS_TABLE)", "table=%s",
			log_quote(q, sizeof(q), m->cfg->jobs_table ? m->cfg->jobs_table : "jobs"));
	PQclear(res);
}

/* Connect m->conn to DATABASE_URL (5 s connect timeout unless the URL sets one). 0, or -errno
 * with the failure noted (and m->conn NULL). */
static int db_open(struct meta *m)
{
	const char *kw[4] = { "dbname", "fallback_application_name", NULL, NULL };
	const char *val[4] = { m->cfg->database_url, "s3jobfs", NULL, NULL };
	int r;

	if (!m->has_timeout) {
		kw[2] = "connect_timeout";
		val[2] = "5";
	}
	m->conn = PQconnectdbParams(kw, val, 1);
	if (PQstatus(m->conn) != CONNECTION_OK) {
		r = pg_errno(m->conn, NULL);
		note_failure(m, "cannot connect to postgresql",
			     m->conn ? PQerrorMessage(m->conn) : "out of memory", r);
		PQfinish(m->conn);
		m->conn = NULL;
		return r;
	}
	PQsetNoticeProcessor(m->conn, notice_to_log, m);
	return 0;
}

static int db_connect(struct meta *m)
{
	char q[300];
	int r = db_open(m);

	if (r < 0)
		return r;
	r = build_sql(m);
	if (r == 0)	/* bounds a stuck statement, so a stop never waits long */
		r = db_exec(m, "cannot set statement_timeout",
			    "SELECT set_config('statement_timeout', $1, false)", 1,
			    (const char *const[]){ STATEMENT_TIMEOUT }, NULL);
	if (r == 0)
		r = schema_migrate(m);
	if (r == 0)
		r = db_exec(m, "cannot listen on s3jobfs_complete", "LISTEN s3jobfs_complete", 0,
			    NULL, NULL);
	if (r < 0) {
		db_disconnect(m, NULL);
		return r;
	}
	check_table(m);
	pthread_mutex_lock(&m->lock);
	m->connected = true;
	pthread_mutex_unlock(&m->lock);
	m->next_poll_ms = 0;
	m->last_err[0] = '\0';
	log_msg(LOG_INFO, "connected to postgresql", "host=%s port=%s db=%s table=%s",
		PQhost(m->conn), PQport(m->conn), PQdb(m->conn),
		log_quote(q, sizeof(q), m->cfg->jobs_table ? m->cfg->jobs_table : "jobs"));
	return 0;
}

/* on_complete once per job: from a NOTIFY or from the poll. */
static void job_completed(struct meta *m, const char *uuid)
{
	struct mjob *j;
	bool call = false;

	pthread_mutex_lock(&m->lock);
	HASH_FIND_STR(m->jobs, uuid, j);
	if (!j)
		j = job_touch(m, uuid);
	if (j && !j->complete_seen) {
		j->complete_seen = true;
		call = true;
	}
	pthread_mutex_unlock(&m->lock);
	if (!call)
		return;
	log_msg(LOG_INFO, "job complete", "job=%s", uuid);
	if (m->on_complete)
		m->on_complete(m->arg, uuid);
}

static int notifications(struct meta *m)
{
	PGnotify *n;

	if (!PQconsumeInput(m->conn)) {
		note_failure(m, "cannot read from postgresql", PQerrorMessage(m->conn), -ECONNRESET);
		return -ECONNRESET;
	}
	while ((n = PQnotifies(m->conn)) != NULL) {
		char id[UUID_LEN + 1];

		if (strcmp(n->relname, "s3jobfs_complete") == 0 && uuid_norm(n->extra, id))
			job_completed(m, id);
		else
			log_msg(LOG_DEBUG, "notification ignored", "channel=%s", n->relname);
		PQfreemem(n);
	}
	return conn_lost(m) ? -ECONNRESET : 0;
}

static int fetch_policy(struct meta *m, const char *uuid)
{
	struct meta_policy pol;
	PGresult *res = NULL;
	struct mpol *p;
	int r;

	r = db_exec(m, "cannot read the job's settings", m->sql_policy, 1, &uuid, &res);
	if (must_reconnect(m, r))
		return r;
	if (r < 0 || PQntuples(res) == 0) {	/* no row (yet), or refused: asked again later */
		policy_defaults(&pol, m->cfg->s3_enabled);
	} else if (PQgetisnull(res, 0, 0)) {
		meta_policy_from_json(NULL, m->cfg->s3_enabled, &pol);
		pol.have_row = true;
	} else if (meta_policy_from_json(PQgetvalue(res, 0, 0), m->cfg->s3_enabled, &pol) < 0) {
		log_msg(LOG_WARNING, "job settings not understood, using the defaults",
			"job=%s", uuid);
	}
	PQclear(res);
	pthread_mutex_lock(&m->lock);
	HASH_FIND_STR(m->pols, uuid, p);
	if (p) {
		meta_policy_release(&p->pol);
		p->pol = pol;
		p->fetched = true;
		p->fetched_ms = now_ms();
	}
	pthread_mutex_unlock(&m->lock);
	if (!p)
		meta_policy_release(&pol);
	return r;
}

static int fetch_policies(struct meta *m)
{
	char ids[POLICY_BATCH][UUID_LEN + 1];
	size_t n;
	struct mpol *p;
	int r = 0;

	for (int pass = 0; pass < MAX_PASSES; pass++) {
		n = 0;
		pthread_mutex_lock(&m->lock);
		for (p = m->pols; p; p = p->hh.next) {
			if (!p->wanted)
				continue;
			p->wanted = false;
			memcpy(ids[n++], p->uuid, sizeof(ids[0]));
			if (n == POLICY_BATCH)
				break;
		}
		pthread_mutex_unlock(&m->lock);
		for (size_t i = 0; i < n; i++) {
			if (r == 0)
				r = fetch_policy(m, ids[i]);
			if (must_reconnect(m, r)) {	/* ask again after the reconnect */
				pthread_mutex_lock(&m->lock);
				HASH_FIND_STR(m->pols, ids[i], p);
				if (p)
					p->wanted = true;
				pthread_mutex_unlock(&m->lock);
			} else {
				r = 0;
			}
		}
		if (r < 0 || n < POLICY_BATCH)
			break;
	}
	return r;
}

static bool add_str_or_null(cJSON *o, const char *key, const char *v)
{
	return v ? cJSON_AddStringToObject(o, key, v) != NULL : cJSON_AddNullToObject(o, key) != NULL;
}

/* The ledger rows as one JSON array (the parameter of the upsert). NULL: ENOMEM. */
static char *files_json(struct mfile *const *batch, size_t n)
{
	cJSON *arr = cJSON_CreateArray();
	char *text = NULL, id[UUID_LEN + 1];

	if (!arr)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const struct mfile *f = batch[i];
		cJSON *o = cJSON_CreateObject();

		if (!o || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			goto out;
		}
		memcpy(id, f->key, UUID_LEN);
		id[UUID_LEN] = '\0';
		if (!cJSON_AddStringToObject(o, "job_id", id) ||
		    !cJSON_AddStringToObject(o, "rel_path", f->rel) ||
		    !add_str_or_null(o, "bucket", f->bucket) || !add_str_or_null(o, "key", f->okey) ||
		    !add_u64(o, "size", f->size > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : f->size) ||
		    !add_str_or_null(o, "checksum", f->checksum) ||
		    !add_str_or_null(o, "etag", f->etag) ||
		    !cJSON_AddStringToObject(o, "state", f->state) ||
		    !cJSON_AddNumberToObject(o, "attempts", f->attempts) ||
		    !add_str_or_null(o, "last_error", f->last_error))
			goto out;
	}
	text = cJSON_PrintUnformatted(arr);
out:
	cJSON_Delete(arr);
	return text;
}

/* Upsert n ledger rows in one statement; when the server refuses the batch (not a lost
 * connection), row by row, dropping (and logging) the rows it refuses. An 'uploaded' row
 * without etag and attempts (the cache's start-up re-post) keeps the row's etag and attempts. */
static int write_files(struct meta *m, struct mfile *const *batch, size_t n)
{
	static const char sql[] =
		"INSERT INTO s3jobfs_files (job_id, rel_path, bucket, key, size, checksum, etag,"
		" state, attempts, last_error)"
		" SELECT x.job_id, x.rel_path, x.bucket, x.key, x.size, x.checksum, x.etag, x.state,"
		" x.attempts, x.last_error FROM jsonb_to_recordset($1::jsonb) AS x(job_id uuid,"
		" rel_path text, bucket text, key text, size bigint, checksum text, etag text,"
		" state text, attempts integer, last_error text)"
		" ON CONFLICT (job_id, rel_path) DO UPDATE SET bucket = EXCLUDED.bucket,"
		" key = EXCLUDED.key, size = EXCLUDED.size,"
		" checksum = CASE WHEN EXCLUDED.state = 'uploaded' AND EXCLUDED.attempts = 0"
		"  THEN COALESCE(EXCLUDED.checksum, s3jobfs_files.checksum) ELSE EXCLUDED.checksum END,"
		" etag = COALESCE(EXCLUDED.etag, s3jobfs_files.etag), state = EXCLUDED.state,"
		" attempts = CASE WHEN EXCLUDED.state = 'uploaded' AND EXCLUDED.attempts = 0"
		"  THEN s3jobfs_files.attempts ELSE EXCLUDED.attempts END,"
		" last_error = EXCLUDED.last_error, updated_at = now()";
	char *json = files_json(batch, n);
	const char *param = json;
	int r;

	if (!json) {
		log_msg(LOG_ERR, "ledger rows not written: out of memory", "rows=%zu", n);
		return 0;
	}
	r = db_exec(m, "cannot write ledger rows", sql, 1, &param, NULL);
	free(json);
	if (r == 0 || must_reconnect(m, r))
		return r;
	if (n == 1) {
		char q[300];

		log_msg(LOG_WARNING, "ledger row dropped", "job=%.36s path=%s errno=%d", batch[0]->key,
			log_quote(q, sizeof(q), batch[0]->rel), -r);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		r = write_files(m, &batch[i], 1);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Counters changed: rewrite the state of the jobs of these rows. Called with m->lock held. */
static void files_written(struct meta *m, struct mfile *const *batch, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char id[UUID_LEN + 1];
		struct mjob *j;

		memcpy(id, batch[i]->key, UUID_LEN);
		id[UUID_LEN] = '\0';
		HASH_FIND_STR(m->jobs, id, j);
		if (j && j->st)
			j->dirty = true;
	}
}

/* Returns 1 when rows are left for the next turn, 0, or -errno when the connection is lost
 * (the batch is put back unless newer rows replaced it meanwhile). */
static int flush_files(struct meta *m)
{
	struct mfile *batch[FILE_BATCH], *f, *tmp;
	size_t n;
	int r = 0;

	for (int pass = 0; pass < MAX_PASSES; pass++) {
		n = 0;
		pthread_mutex_lock(&m->lock);
		HASH_ITER(hh, m->files, f, tmp) {
			HASH_DEL(m->files, f);
			batch[n++] = f;
			if (n == FILE_BATCH)
				break;
		}
		pthread_mutex_unlock(&m->lock);
		if (n == 0)
			return 0;
		r = write_files(m, batch, n);
		pthread_mutex_lock(&m->lock);
		for (size_t i = 0; i < n; i++) {
			if (r < 0) {
				HASH_FIND_STR(m->files, batch[i]->key, f);
				if (!f) {
					HASH_ADD_KEYPTR(hh, m->files, batch[i]->key,
							strlen(batch[i]->key), batch[i]);
					batch[i] = NULL;
				}
			}
		}
		if (r == 0)
			files_written(m, batch, n);
		pthread_mutex_unlock(&m->lock);
		for (size_t i = 0; i < n; i++)
			mfile_free(batch[i]);
		if (r < 0)
			return r;
	}
	pthread_mutex_lock(&m->lock);
	r = m->files ? 1 : 0;
	pthread_mutex_unlock(&m->lock);
	return r;
}

struct job_write {
	char uuid[UUID_LEN + 1];
	char status[STATUS_MAX];
	bool notify;
	char *json;
};

/* Write one job state. Returns the number of jobs rows updated (0: no row), or -errno. */
static int write_job(struct meta *m, const struct job_write *w)
{
	const char *params[4] = { w->uuid, w->json, w->uuid, w->notify ? "true" : "false" };
	PGresult *res = NULL;
	int r;

	r = db_exec(m, "cannot write the job status", m->sql_status, 4, params, &res);
	if (r < 0)
		return r;
	r = PQntuples(res) == 1 ? (int)strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	return r;
}

/* The outcome of write_job() for j. Called with m->lock held. */
static void job_written(struct meta *m, struct mjob *j, const struct job_write *w, int r)
{
	if (must_reconnect(m, r)) {
		j->dirty = true;
	} else if (r < 0) {
		log_msg(LOG_WARNING, "job status dropped", "job=%s status=%s errno=%d", w->uuid,
			w->status, -r);
	} else if (r == 0) {
		if (++j->missing < MISSING_ROW_RETRIES) {
			j->dirty = true;
			j->retry_ms = now_ms() + MISSING_ROW_RETRY_MS;
		}
		log_msg(j->missing == 1 || j->missing == MISSING_ROW_RETRIES ? LOG_WARNING : LOG_DEBUG,
			"no jobs row for the job", "job=%s tries=%d", w->uuid, j->missing);
	} else {
		if (w->notify)
			log_msg(LOG_INFO, "job status written", "job=%s status=%s", w->uuid, w->status);
		snprintf(j->written, sizeof(j->written), "%s", w->status);
		j->written_ms = now_ms();
		j->missing = 0;
		j->retry_ms = 0;
	}
}

/* Write dirty job states that are due (all of them when force); *next_due gets the earliest
 * time one that is not due yet will be. 0 or -errno when the connection is lost. */
static int flush_jobs(struct meta *m, bool force, uint64_t *next_due)
{
	struct job_write w[JOB_BATCH];
	struct mjob *j;
	size_t n;
	int r = 0;

	for (int pass = 0; pass < MAX_PASSES && r >= 0; pass++) {
		uint64_t now = now_ms();

		n = 0;
		pthread_mutex_lock(&m->lock);
		for (j = m->jobs; j; j = j->hh.next) {
			bool same;
			uint64_t due;

			if (!j->dirty || !j->st)
				continue;
			same = strcmp(j->st->status, j->written) == 0;
			due = same ? j->written_ms + STATUS_MIN_INTERVAL_MS : 0;
			if (j->retry_ms > due)
				due = j->retry_ms;
			if (!force && due > now) {
				if (due < *next_due)
					*next_due = due;
				continue;
			}
			w[n].json = meta_status_json(j->st, 0, 0, j->have_at ? &j->uploaded_at : NULL);
			if (!w[n].json)
				continue;
			memcpy(w[n].uuid, j->uuid, sizeof(w[n].uuid));
			snprintf(w[n].status, sizeof(w[n].status), "%s", j->st->status);
			w[n].notify = !same;
			j->dirty = false;
			if (++n == JOB_BATCH)
				break;
		}
		pthread_mutex_unlock(&m->lock);
		/* the cache posts a file's row before the job state that counts it: write every
		 * row posted up to now before these states, whose counters come from the ledger */
		while (n > 0 && r >= 0) {
			int more = flush_files(m);

			if (more < 0)
				r = more;
			if (more <= 0)
				break;
		}
		for (size_t i = 0; i < n; i++) {
			int wr = r < 0 ? r : write_job(m, &w[i]);

			pthread_mutex_lock(&m->lock);
			HASH_FIND_STR(m->jobs, w[i].uuid, j);
			if (j)
				job_written(m, j, &w[i], wr);
			pthread_mutex_unlock(&m->lock);
			free(w[i].json);
			if (must_reconnect(m, wr))
				r = wr;
		}
		if (n < JOB_BATCH)
			break;
	}
	return r;
}

/* Which posted jobs not yet seen complete have a terminal status now? */
static int poll_complete(struct meta *m)
{
	char (*ids)[UUID_LEN + 1] = NULL, *arr = NULL;
	size_t n = 0, cap = 0;
	struct mjob *j;
	int r = 0;

	pthread_mutex_lock(&m->lock);
	for (j = m->jobs; j; j = j->hh.next) {
		if (j->complete_seen)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			void *ni = realloc(ids, nc * sizeof(*ids));

			if (!ni)
				break;
			ids = ni;
			cap = nc;
		}
		memcpy(ids[n++], j->uuid, sizeof(ids[0]));
	}
	pthread_mutex_unlock(&m->lock);
	arr = malloc(2 + (size_t)POLL_BATCH * (UUID_LEN + 1));
	if (!arr && n) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t start = 0; start < n; start += POLL_BATCH) {
		size_t end = n - start > POLL_BATCH ? start + POLL_BATCH : n, o = 0;
		const char *params[2] = { arr, m->terminal };
		PGresult *res = NULL;

		arr[o++] = '{';
		for (size_t i = start; i < end; i++) {
			if (i > start)
				arr[o++] = ',';
			memcpy(arr + o, ids[i], UUID_LEN);
			o += UUID_LEN;
		}
		arr[o++] = '}';
		arr[o] = '\0';
		r = db_exec(m, "cannot poll for completed jobs", m->sql_poll, 2, params, &res);
		if (r < 0)
			goto out;
		for (int i = 0; i < PQntuples(res); i++) {
			char id[UUID_LEN + 1];

			if (uuid_norm(PQgetvalue(res, i, 0), id))
				job_completed(m, id);
		}
		PQclear(res);
	}
out:
	free(ids);
	free(arr);
	return must_reconnect(m, r) ? r : 0;
}

/* Forget jobs that completed, are written and were not posted for IDLE_FORGET_MS, and their
 * policies, so a long-running daemon does not grow (posted again, a job starts afresh). */
static void forget_idle(struct meta *m)
{
	uint64_t now = now_ms();
	struct mjob *j, *tmp;
	struct mpol *p;

	pthread_mutex_lock(&m->lock);
	for (j = m->jobs; j; j = tmp) {
		tmp = j->hh.next;
		if (!j->complete_seen || j->dirty || now - j->last_ms < IDLE_FORGET_MS)
			continue;
		HASH_FIND_STR(m->pols, j->uuid, p);
		if (p) {
			HASH_DEL(m->pols, p);
			meta_policy_release(&p->pol);
			free(p);
		}
		HASH_DEL(m->jobs, j);
		state_free(j->st);
		free(j);
	}
	pthread_mutex_unlock(&m->lock);
}

/* One turn of the thread's work. Returns how long it may sleep (ms), or -errno when the
 * connection is lost. */
static int work(struct meta *m, bool final)
{
	uint64_t next = UINT64_MAX, now;
	int r, more;

	if ((r = notifications(m)) < 0 || (!final && (r = fetch_policies(m)) < 0))
		return r;
	more = flush_files(m);
	if (more < 0)
		return more;
	if ((r = flush_jobs(m, final, &next)) < 0)
		return r;
	now = now_ms();
	if (!final && now >= m->next_poll_ms) {
		if ((r = poll_complete(m)) < 0)
			return r;
		forget_idle(m);
		m->next_poll_ms = now_ms() + m->poll_ms;
	}
	if ((r = notifications(m)) < 0)
		return r;
	if (more)
		return 0;
	if (m->next_poll_ms < next)
		next = m->next_poll_ms;
	now = now_ms();
	return next <= now ? 0 : next - now > 60000 ? 60000 : (int)(next - now);
}

/* Sleep up to ms, woken by posts (and by the server's socket when connected). */
static void wait_events(struct meta *m, int ms)
{
	struct pollfd p[2] = {
		{ .fd = m->wake[0], .events = POLLIN },
		{ .fd = m->conn ? PQsocket(m->conn) : -1, .events = POLLIN },
	};

	if (poll(p, 2, ms) > 0 && (p[0].revents & POLLIN))
		drain_wake(m);
}

/* Sleep ms unless stopped (posts do not end it: they must not speed up reconnects). */
static void backoff_sleep(struct meta *m, unsigned ms)
{
	uint64_t end = now_ms() + ms, now;

	while (!stopping(m) && (now = now_ms()) < end)
		wait_events(m, (int)(end - now));
}

static void *meta_thread(void *arg)
{
	struct meta *m = arg;
	unsigned backoff = BACKOFF_FIRST_MS;
	int r;

	while (!stopping(m)) {
		if (!m->conn) {
			if (db_connect(m) < 0) {
				backoff_sleep(m, backoff);
				backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
				continue;
			}
			backoff = BACKOFF_FIRST_MS;
		}
		r = work(m, false);
		if (r < 0) {
			db_disconnect(m, "postgresql connection lost or stuck, job status kept in memory");
			continue;
		}
		wait_events(m, r);
	}
	if (m->conn && work(m, true) < 0)
		log_msg(LOG_WARNING, "job status not all written at exit", NULL);
	db_disconnect(m, NULL);
	return NULL;
}

/* "a, b,c" → {"a","b","c"} (a text[] literal); heap, NULL: ENOMEM. */
static char *text_array(const char *csv)
{
	size_t len = csv ? strlen(csv) : 0, o = 0;
	char *a = malloc(3 * len + 3);
	const char *s = csv;

	if (!a)
		return NULL;
	a[o++] = '{';
	while (s && *s) {
		const char *e = strchr(s, ',');
		const char *end = e ? e : s + strlen(s);

		while (s < end && isspace((unsigned char)*s))
			s++;
		while (end > s && isspace((unsigned char)end[-1]))
			end--;
		if (end > s) {
			if (o > 1)
				a[o++] = ',';
			a[o++] = '"';
			for (; s < end; s++) {
				if (*s == '"' || *s == '\\')
					a[o++] = '\\';
				a[o++] = *s;
			}
			a[o++] = '"';
		}
		s = e ? e + 1 : end + strlen(end);
	}
	a[o++] = '}';
	a[o] = '\0';
	return a;
}

/* Does DATABASE_URL set connect_timeout? Keep its password to redact messages. */
static int inspect_url(struct meta *m)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(m->cfg->database_url, &err);
	int r = 0;

	PQfreemem(err);
	if (!opts)
		return 0;		/* e.g. a bare database name: libpq will say */
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (strcmp(o->keyword, "connect_timeout") == 0) {
			m->has_timeout = true;
		} else if (strcmp(o->keyword, "password") == 0) {
			m->password = strdup(o->val);
			if (!m->password)
				r = -ENOMEM;
		}
	}
	PQconninfoFree(opts);
	return r;
}

int meta_create(struct meta **out, const struct cfg *cfg)
{
	struct meta *m = NULL;
	int r = -EINVAL;

	if (!out || !cfg)
		return -EINVAL;
	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->wake[0] = m->wake[1] = -1;
	m->cfg = cfg;
	m->have_db = cfg->database_url && *cfg->database_url;
	m->poll_ms = (uint64_t)(cfg->pg_poll_seconds > 0 ? cfg->pg_poll_seconds : 2) * 1000;
	if (pthread_mutex_init(&m->lock, NULL) != 0) {
		free(m);
		return -ENOMEM;
	}
	if (pipe2(m->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	r = -ENOMEM;
	m->terminal = text_array(cfg->terminal_statuses ? cfg->terminal_statuses :
				 "completed,failed,cancelled");
	if (!m->terminal)
		goto out;
	if (m->have_db && (r = inspect_url(m)) < 0)
		goto out;
	r = 0;
	*out = m;
	m = NULL;
out:
	meta_destroy(m);
	return r;
}

int meta_read_status(const struct cfg *cfg, const char *const *uuids, size_t n, char **out,
		     char **err)
{
	static const char sql_fmt[] =
		"SELECT coalesce(json_object_agg(x.id, x.v), '{}')::text FROM ("
		" SELECT j.id::text AS id, json_build_object('name', j.name, 'status', j.status,"
		"  'uploadToS3', j.output->'uploadToS3', 'ledger', (SELECT coalesce("
		"   json_object_agg(s.state, s.c), '{}') FROM (SELECT state, count(*) AS c"
		"   FROM s3jobfs_files f WHERE f.job_id = j.id GROUP BY state) s)) AS v"
		" FROM %s j WHERE CASE WHEN cardinality($1::uuid[]) > 0 THEN j.id = ANY($1::uuid[])"
		"  ELSE j.id IN (SELECT job_id FROM s3jobfs_files GROUP BY job_id"
		"   ORDER BY max(updated_at) DESC LIMIT 20) END) x";
	struct meta *m = NULL;
	PGresult *res = NULL;
	char *arr = NULL, *table = NULL, *sql = NULL, q[600];
	size_t len = 2, o = 0;
	int r;

	*out = NULL;
	*err = NULL;
	if ((r = meta_create(&m, cfg)) < 0)
		return r;
	r = -ENOMEM;
	len += n * (UUID_LEN + 1);
	if (!(arr = calloc(1, len + 1)))
		goto out;
	arr[o++] = '{';
	for (size_t i = 0; i < n; i++) {
		char id[UUID_LEN + 1];

		if (!uuid_norm(uuids[i], id)) {
			r = -EINVAL;
			*err = strdup("not a job uuid or job folder name");
			goto out;
		}
		o += (size_t)snprintf(arr + o, len + 1 - o, "%s%s", i ? "," : "", id);
	}
	arr[o] = '}';
	if (!m->have_db) {
		r = -ENOTCONN;
		*err = strdup("DATABASE_URL is not set");
		goto out;
	}
	if ((r = db_open(m)) < 0) {
		*err = strdup(m->last_err);
		goto out;
	}
	r = -ENOMEM;
	table = quote_table(m->conn, cfg->jobs_table && *cfg->jobs_table ? cfg->jobs_table : "jobs");
	if (!table || asprintf(&sql, sql_fmt, table) < 0)
		goto out;
	res = PQexecParams(m->conn, sql, 1, NULL, (const char *const[]){ arr }, NULL, NULL, 0);
	r = pg_errno(m->conn, res);
	if (r < 0) {
		*err = strdup(pg_message(m, PQresultErrorMessage(res), q, sizeof(q)));
		goto out;
	}
	*out = strdup(PQgetvalue(res, 0, 0));
	r = *out ? 0 : -ENOMEM;
out:
	PQclear(res);
	if (m && m->conn) {
		PQfinish(m->conn);
		m->conn = NULL;
	}
	meta_destroy(m);
	free(arr);
	free(table);
	free(sql);
	return r;
}

int meta_start(struct meta *m, meta_complete_fn on_complete, void *arg)
{
	int r;

	if (!m)
		return -EINVAL;
	if (m->started)
		return -EBUSY;
	m->on_complete = on_complete;
	m->arg = arg;
	if (!m->have_db) {
		log_msg(LOG_INFO, "no DATABASE_URL: job status is not recorded", NULL);
		return 0;
	}
	r = pthread_create(&m->thread, NULL, meta_thread, m);
	if (r != 0)
		return -r;
	m->started = true;
	return 0;
}

void meta_destroy(struct meta *m)
{
	struct mjob *j, *jt;
	struct mfile *f, *ft;
	struct mpol *p, *pt;

	if (!m)
		return;
	if (m->started) {
		pthread_mutex_lock(&m->lock);
		m->stopping = true;
		pthread_mutex_unlock(&m->lock);
		wake(m);
		pthread_join(m->thread, NULL);
	}
	HASH_ITER(hh, m->jobs, j, jt) {
		HASH_DEL(m->jobs, j);
		state_free(j->st);
		free(j);
	}
	HASH_ITER(hh, m->files, f, ft) {
		HASH_DEL(m->files, f);
		mfile_free(f);
	}
	HASH_ITER(hh, m->pols, p, pt) {
		HASH_DEL(m->pols, p);
		meta_policy_release(&p->pol);
		free(p);
	}
	if (m->wake[0] >= 0)
		close(m->wake[0]);
	if (m->wake[1] >= 0)
		close(m->wake[1]);
	pthread_mutex_destroy(&m->lock);
	free(m->terminal);
	free(m->password);
	free(m);
}
