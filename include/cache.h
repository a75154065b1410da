/* cache.h - the write-back cache: staged files, upload queue, durable state, S3 namespace view.
 *
 * Every file written through the mount lives as a plain file under <cache-dir>/data/ at its
 * path relative to the mount root; fs/ passes operations through to it (via cache_data_fd()).
 * The cache tracks each staged file in a small state machine (see the table in cache/cache.c),
 * queues closed files for upload (at once after a settle delay, or when their job completes),
 * and records what is durable in <cache-dir>/journal. Names that are not staged are looked up
 * in S3 listings (cached for a few seconds) and read through sparse files (cache/remote.c).
 *
 * Threads: fs/ calls in from FUSE worker threads; cache_start() adds upload workers and one
 * timer thread. All functions are thread-safe. Functions return 0 or -errno; those that may
 * reach S3 say so (they block on the network).
 */
#ifndef S3JOBFS_CACHE_H
#define S3JOBFS_CACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct cfg;
struct store;
struct cache;
struct cache_file;
struct cache_remote;

struct cache_params {
	const struct cfg *cfg;		/* borrowed for the cache's lifetime */
	const char *dir;		/* the cache directory (created 0700) */
	bool read_only;
	const struct store *store;	/* borrowed */
	struct meta *meta;		/* borrowed; NULL: no PostgreSQL (include/meta.h) */
};

/* An open file of the mount: a staged local file (fd >= 0, file set) or a remote object read
 * through the sparse cache (remote set). Owned by the cache; freed by cache_release(). */
struct cache_handle {
	int fd;
	struct cache_file *file;
	struct cache_remote *remote;
	bool writable;
	uint64_t remote_size;
};

/* Lock the directory (one daemon per cache dir: -EBUSY otherwise), create its layout, replay
 * the journal and scan data/ for staged files. Starts no thread and makes no S3 request.
 * Caller frees with cache_close(). */
int cache_open(struct cache **out, const struct cache_params *p);

/* Start the upload workers and the timer; queue what the scan found pending. */
int cache_start(struct cache *c);

/* Wait until no upload is queued or running, at most timeout_s seconds (0: do not wait).
 * Returns the number of files still pending (dirty files of incomplete jobs not counted). */
int cache_drain(struct cache *c, int timeout_s);

/* Stop threads (uploads in flight are abandoned: they resume on the next start) and free. */
void cache_close(struct cache *c);

/* The directory fd of data/, for *at() calls on staged paths. Borrowed. */
int cache_data_fd(struct cache *c);

/* rel below is a path relative to the mount root without leading '/', "" for the root. */

/* stat a name: the staged file if any, else S3 (listing of the parent; may block). */
int cache_getattr(struct cache *c, const char *rel, struct stat *st);

/* List a directory: staged entries merged with S3's (may block). fn returns non-zero to stop. */
typedef int (*cache_dirent_fn)(void *ctx, const char *name, const struct stat *st);
int cache_readdir(struct cache *c, const char *rel, cache_dirent_fn fn, void *ctx);

/* open(2)/creat(2) semantics (flags, mode). A remote file opened for writing is first copied
 * into the cache (unless O_TRUNC). -EROFS on a read-only mount for writes. */
int cache_open_handle(struct cache *c, const char *rel, int flags, mode_t mode,
		      struct cache_handle **out);
ssize_t cache_read(struct cache *c, struct cache_handle *h, void *buf, size_t size, off_t off);
ssize_t cache_write(struct cache *c, struct cache_handle *h, const void *buf, size_t size, off_t off);
int cache_ftruncate(struct cache *c, struct cache_handle *h, off_t size);
int cache_fallocate(struct cache *c, struct cache_handle *h, int mode, off_t off, off_t len);
int cache_release(struct cache *c, struct cache_handle *h);

/* fsync: returns when the file's current content is in S3 (blocks), or -EIO with the error
 * logged. A read-only handle of a clean file returns at once. */
int cache_fsync(struct cache *c, struct cache_handle *h);

/* fsync of a directory: every file under it in S3; a top-level folder is marked complete. */
int cache_fsync_dir(struct cache *c, const char *rel);

/* Namespace changes; each keeps S3 in step (objects of deleted or renamed files are deleted
 * or re-uploaded in the background, renames of files that are only in S3 copy them: blocks). */
int cache_unlink(struct cache *c, const char *rel);
int cache_rmdir(struct cache *c, const char *rel);
int cache_mkdir(struct cache *c, const char *rel, mode_t mode);
int cache_rename(struct cache *c, const char *from, const char *to, unsigned int flags);
int cache_symlink(struct cache *c, const char *target, const char *rel);
int cache_readlink(struct cache *c, const char *rel, char *buf, size_t size);
int cache_truncate(struct cache *c, const char *rel, off_t size);
/* chmod, chown, utimens: applied to the staged file (staging a remote one first). */
int cache_chmod(struct cache *c, const char *rel, mode_t mode);
int cache_chown(struct cache *c, const char *rel, uid_t uid, gid_t gid);
int cache_utimens(struct cache *c, const char *rel, const struct timespec tv[2]);

/* Mark a top-level folder complete (upload-on-completion mode): its closed files are queued.
 * Durable (journalled) before it returns. -ENOENT when no such folder is staged. */
int cache_complete_job(struct cache *c, const char *name);

/* The same for the job folder whose name ends in uuid (the jobs row reached a terminal status).
 * -ENOENT when no staged folder belongs to that job. */
int cache_complete_uuid(struct cache *c, const char *uuid);

/* Queue a job's files for upload again now (`s3jobfs upload JOB`): every file not in S3, or
 * with only_failed just those whose upload failed. job is the folder name or its uuid.
 * Returns the number of files queued, or -ENOENT for an unknown job. */
int cache_requeue_job(struct cache *c, const char *job, bool only_failed);

#define CACHE_LATENCY_BUCKETS 12
/* Upper bounds (ms) of the upload latency buckets, ascending; +Inf is upload_ms_count. */
extern const unsigned cache_latency_le_ms[CACHE_LATENCY_BUCKETS];

struct cache_stats {
	uint64_t files_dirty, files_queued, files_uploading, files_clean, files_failed;
	uint64_t bytes_dirty, bytes_clean;
	uint64_t uploads_started, uploads_ok, uploads_failed, bytes_uploaded;
	uint64_t deletes_pending;
	/* upload latency (queue pop to done, retries included): cumulative buckets, sum, count */
	uint64_t upload_ms_le[CACHE_LATENCY_BUCKETS], upload_ms_sum, upload_ms_count;
};
void cache_get_stats(struct cache *c, struct cache_stats *st);

/* Per-job summary for `s3jobfs status`: a JSON array (cJSON text, caller frees). */
char *cache_jobs_json(struct cache *c);

#endif
