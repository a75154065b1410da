/* meta.h - per-job upload state and policy in PostgreSQL (the scraper's `jobs` table).
 *
 * PostgreSQL is never on the write path: every function here that the cache calls returns at
 * once. A meta thread owns the connection (DATABASE_URL): it connects and reconnects with
 * backoff, creates/migrates s3jobfs's own tables at start (idempotent, under an advisory lock,
 * safe when several daemons start at once), writes the latest posted state of each job and
 * file, fetches per-job policy from the job's row, LISTENs for completion notifications and
 * polls for rows that reached a terminal status. What it could not write while PostgreSQL was
 * down stays in memory and is written when it is back; after a daemon restart the cache posts
 * everything again (its journal is the durable record), so nothing is lost.
 *
 * Status lives in jobs.output->'uploadToS3': the keys {enabled, status, uploadedAt, s3Urls,
 * bytesUploaded, filesUploaded, errors} are merged into that object (the job's own settings
 * there, and an `enabled` already set, are kept) with one jsonb_set statement whose
 * counters are aggregated from the s3jobfs_files ledger, so several daemons uploading parts of
 * one job add up instead of overwriting each other. Parameterised queries only.
 */
#ifndef S3JOBFS_META_H
#define S3JOBFS_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct cfg;
struct meta;

/* ---- pure functions (no database; unit-tested) ---- */

/* A top-level folder "YYYYMMDD_HHMMSS_<uuid>" → its job uuid (lowercase, 36 chars + NUL).
 * Returns true when name has that shape (valid date and time digits, RFC 4122 textual uuid). */
bool meta_parse_job_folder(const char *name, char uuid[37]);

/* Per-job settings from jobs.output (rules: the table in meta/meta.c and the README). */
struct meta_policy {
	bool have_row;			/* a jobs row exists for this uuid */
	bool enabled;			/* output.uploadToS3.enabled (default: S3_ENABLED) */
	bool save_files;		/* output.saveFiles (default true) */
	char *bucket;			/* output.uploadToS3.bucket, NULL = S3_BUCKET_NAME */
	char *prefix;			/* output.uploadToS3.prefix, NULL = S3_PREFIX; ends in '/' */
	char **include_files;		/* output.uploadToS3.includeFiles: top-level files; NULL = all */
	size_t n_include;
	bool upload_pdfs;		/* output.uploadToS3.uploadPdfs (default true) */
	bool upload_screenshots;	/* .uploadScreenshots (default false, as the guide advises) */
	bool upload_categories;		/* .uploadCategories (default true) */
};

/* Fill p from the job row's `output` JSON text (NULL: no row → defaults). -EINVAL for JSON
 * that is not an object. Release with meta_policy_release(). */
int meta_policy_from_json(const char *output_json, bool s3_enabled, struct meta_policy *p);
void meta_policy_release(struct meta_policy *p);

/* Should the file at `rel` (path inside the job folder, e.g. "pdfs/a.pdf") be uploaded? */
bool meta_policy_includes(const struct meta_policy *p, const char *rel);

/* One failed file, for the status. */
struct meta_error {
	const char *file;		/* path inside the job folder */
	const char *code;		/* S3 error code */
	const char *message;
	int attempts;
	time_t at;
};

/* A job's state as the cache sees it. */
struct meta_job_state {
	const char *uuid;
	const char *folder;		/* the top-level folder name */
	const char *bucket, *prefix;	/* where its objects go */
	bool enabled;
	const char *status;		/* "pending", "uploading", "success", "partial", "failed", "disabled" */
	const char *const *top_entries;	/* top-level names in the job folder; dirs end in '/' */
	size_t n_top;
	const struct meta_error *errors;
	size_t n_errors;
};

/* The uploadToS3 object for st with the given counters (cJSON text, caller frees):
 * s3Urls maps "all_products.json" → "all_products_json" and "pdfs/" → "pdfs_dir" (value ends in
 * '/'), uploadedAt is UTC with microseconds and 'Z' (NULL when not finished). */
char *meta_status_json(const struct meta_job_state *st, uint64_t files_uploaded,
		       uint64_t bytes_uploaded, const struct timespec *uploaded_at);

/* ---- the database side ---- */

typedef void (*meta_complete_fn)(void *arg, const char *uuid);

/* Make the handle (no connection yet). cfg borrowed. -ENOMEM. */
int meta_create(struct meta **out, const struct cfg *cfg);
/* Start the meta thread; on_complete(arg, uuid) is called from it when a job row reaches a
 * terminal status (S3JOBFS_TERMINAL_STATUSES) or is NOTIFYed on channel s3jobfs_complete. */
int meta_start(struct meta *m, meta_complete_fn on_complete, void *arg);
void meta_destroy(struct meta *m);

/* Cached policy of a job; never blocks: before the row was fetched it returns the defaults
 * with have_row false and asks the thread to fetch it (call again later). Copy into *out;
 * release with meta_policy_release(). */
int meta_policy_get(struct meta *m, const char *uuid, struct meta_policy *out);

/* Post the latest state of a job (copied; written by the thread; NOTIFY s3jobfs_status, uuid
 * after each status change). Never blocks. */
void meta_post_job(struct meta *m, const struct meta_job_state *st);

/* Post one file's ledger row (copied; upserted by the thread). state: "pending", "uploaded",
 * "failed", "skipped", "deleted". Never blocks. */
void meta_post_file(struct meta *m, const char *uuid, const char *rel, const char *bucket,
		    const char *key, uint64_t size, const char *checksum, const char *etag,
		    const char *state, int attempts, const char *last_error);

/* Failed connection attempts and statements so far (for metrics; thread-safe). */
uint64_t meta_errors(struct meta *m);

/* For `s3jobfs status`: read jobs' upload state from the database (blocks; one connection,
 * one parameterised query). *out (caller frees) gets a JSON object keyed by job uuid:
 * {"name", "status" (the row's), "uploadToS3" (or null), "ledger": {state: count}} for the
 * given uuids, or (n == 0) for the 20 jobs with the latest ledger rows. On failure returns
 * -errno (-ENOTCONN: no DATABASE_URL or cannot connect, -ENOENT: no such table, -EINVAL: a
 * bad uuid) and *err (caller frees, may be NULL) says why, without the password. */
int meta_read_status(const struct cfg *cfg, const char *const *uuids, size_t n, char **out,
		     char **err);

/* true while the thread holds a working connection (for status and metrics). */
bool meta_connected(struct meta *m);

#endif
