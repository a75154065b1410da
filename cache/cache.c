/* cache.c - staged files, their upload state machine, the upload queue and the journal.
 *
 * Layout of the cache directory (0700, one daemon at a time: flock on `lock`):
 *   data/      the staged tree: every file written through the mount, at its relative path
 *   remote/    sparse copies of objects read from S3 (cache/remote.c), emptied at start
 *   tmp/       copies made for copy-on-write and fsync snapshots
 *   journal    append-only facts: what is in S3, what must be deleted, which jobs completed,
 *              which multipart uploads are open
 *
 * The staged file is the source of truth for content; the journal only records what has
 * already been done. A file is clean when the journal holds a C record matching its
 * (size, mtime, ctime, inode); anything else found in data/ at start is dirty and uploaded
 * again. So nothing whose close() returned can be lost by a crash of the daemon: its bytes are
 * in data/ (the kernel's page cache survives kill -9), and at worst an upload is repeated.
 *
 * Per-file state machine (struct cache_file.state), transitions under c->lock:
 *
 *   from        event                                   to
 *   (none)      create / open for write / found dirty    DIRTY
 *   DIRTY       last close + settle delay, job complete  QUEUED   (only with no writer open)
 *   QUEUED      a worker takes it                        UPLOADING
 *   QUEUED      modified                                 DIRTY
 *   UPLOADING   upload ok and gen unchanged              CLEAN    (journal C)
 *   UPLOADING   upload ok but modified meanwhile         DIRTY    (requeued after its close)
 *   UPLOADING   upload failed after retries              FAILED   (kept; retried later)
 *   CLEAN       modified                                 DIRTY
 *   FAILED      retry time / manual retry                QUEUED
 *   FAILED      modified                                 DIRTY
 *   CLEAN       evicted (no handle open)                 (gone from data/, read back from S3)
 *
 * An upload reads a stable, closed version: a file is only queued with no writer open, the
 * worker opens it under c->lock, and a writer that opens it during the upload gets a fresh
 * copy renamed over the path (copy-on-write), so the worker's fd keeps the old inode. Writers
 * never wait for the network; they only pay that copy when they reopen a file mid-upload.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <uthash.h>

#include "cache.h"
#include "cache_i.h"
#include "cfg.h"
#include "log.h"
#include "meta.h"
#include "s3.h"
#include "store.h"

enum file_state { ST_DIRTY, ST_QUEUED, ST_UPLOADING, ST_CLEAN, ST_FAILED };

static const char *const state_names[] = { "dirty", "queued", "uploading", "clean", "failed" };

struct job {
	char *name;			/* top-level folder */
	char uuid[37];			/* "" when the name is not YYYYMMDD_HHMMSS_<uuid> */
	struct meta_policy policy;	/* protected by c->lock: from the jobs row */
	bool have_policy;		/* protected by c->lock */
	bool policy_wanted;		/* a meta is configured: wait for the row briefly */
	uint64_t policy_at;		/* protected by c->lock: ms of the last ask */
	uint64_t born_ms;		/* when the daemon first saw the folder */
	char posted[16];		/* protected by c->lock: last status sent to meta */
	bool dirty_status;		/* protected by c->lock: post again at the next tick */
	bool completed;			/* protected by c->lock; journalled (J) */
	uint64_t last_write_ms;		/* protected by c->lock */
	uint64_t files_uploaded, bytes_uploaded, files_failed;	/* protected by c->lock */
	int active, queued;		/* protected by c->lock: files uploading now, queued */
	uint64_t burst_ms, burst_bytes;	/* protected by c->lock: when the current run of
					 * uploads began, bytes_uploaded then (for the rate) */
	char last_error[300];		/* protected by c->lock */
	UT_hash_handle hh;
};

struct cache_file {
	char *path;			/* protected by c->lock (renames); hash key */
	struct job *job;		/* protected by c->lock; NULL for top-level files */
	enum file_state state;		/* protected by c->lock */
	uint64_t gen;			/* protected by c->lock: bumped by every change */
	uint64_t up_gen;		/* protected by c->lock: gen last uploaded */
	int refs;			/* protected by c->lock: handles + workers */
	int writers;			/* protected by c->lock */
	bool gone;			/* protected by c->lock: unlinked, out of the table */
	bool in_queue;			/* protected by c->lock */
	bool cow;			/* protected by c->lock: path replaced during upload */
	bool torn;			/* protected by c->lock: a write failed (ENOSPC...); never
					 * uploaded until truncated or rewritten from the start */
	uint64_t settle_at;		/* protected by c->lock: ms, 0 = not waiting */
	uint64_t retry_at;		/* protected by c->lock: ms, FAILED only */
	int attempts;			/* protected by c->lock: failed upload rounds */
	char *up_key;			/* protected by c->lock: object that holds a version */
	char *up_bucket;		/* protected by c->lock: its bucket; NULL = S3_BUCKET_NAME */
	bool custom_target;		/* protected by c->lock: the job's row moved it elsewhere
					 * (bucket/prefix): not in the mount's listing, never evicted */
	uint64_t size;			/* protected by c->lock: at last close/upload */
	uint64_t skip_gen;		/* protected by c->lock: gen last recorded as skipped */
	uint64_t atime;			/* protected by c->lock: ms, for LRU eviction */
	struct s3_error err;		/* protected by c->lock: last failure */
	pthread_mutex_t open_lock;	/* serialises copy-on-write opens */
	TAILQ_ENTRY(cache_file) qlink;	/* protected by c->lock */
	UT_hash_handle hh;
};

TAILQ_HEAD(file_queue, cache_file);

struct pending_del {
	char *hkey;			/* hash key: key, or bucket "\x01" key for another bucket */
	char *key;
	char *bucket;			/* NULL = S3_BUCKET_NAME */
	bool in_flight;
	uint64_t done_at;		/* ms; deleted, kept a while to hide stale listings */
	TAILQ_ENTRY(pending_del) link;
	UT_hash_handle hh;		/* tombstones: listings hide these keys */
};

TAILQ_HEAD(del_queue, pending_del);

struct open_mpu {
	char *key, *upload_id;
	struct open_mpu *next;
};

struct rlist_entry {
	char *name;
	bool is_dir;
	uint64_t size;
	time_t mtime;
};

struct rlist {
	char *prefix;			/* relative dir, "" for root */
	uint64_t fetched_ms;
	int err;			/* the listing failed (kept a few seconds: S3 is down) */
	struct rlist_entry *e;
	size_t n;
	UT_hash_handle hh;
};

struct fresh_dir {			/* made here while S3 had nothing at that name */
	char *path;
	UT_hash_handle hh;
};

struct clean_rec {			/* journal C record, during replay only */
	char *path;
	uint64_t size, mtime_ns, ctime_ns, ino;
	char *key;
	char *bucket;			/* NULL: S3_BUCKET_NAME */
	UT_hash_handle hh;
};

struct cache {
	const struct cfg *cfg;
	const struct store *store;
	struct meta *meta;
	char *dir;
	bool read_only;
	int dir_fd, data_fd, tmp_fd, lock_fd, journal_fd;
	struct cache_rdir *rdir;

	pthread_mutex_t lock;
	pthread_cond_t work_cond;	/* workers wait for the queues */
	pthread_cond_t done_cond;	/* fsync and drain wait for uploads */
	struct cache_file *files;	/* protected by lock: by path */
	struct job *jobs;		/* protected by lock: by name */
	struct file_queue queue;	/* protected by lock */
	struct del_queue dels;		/* protected by lock */
	struct pending_del *tombs;	/* protected by lock: by key */
	struct open_mpu *mpus;		/* protected by lock: to abort at start */
	struct rlist *rlists;		/* protected by lock: listing cache */
	uint64_t rlist_epoch;		/* protected by lock: bumped when S3 changes under us */
	struct fresh_dir *fresh;	/* protected by lock: dirs with nothing in S3 but ours, so
					 * creating files in them never asks S3 (the writer's path) */
	int uploading;			/* protected by lock */
	bool stopping;			/* protected by lock */
	uint64_t tmp_seq;		/* protected by lock */
	struct cache_stats totals;	/* protected by lock: counters */

	pthread_mutex_t jlock;		/* journal appends */
	pthread_t *workers;
	int n_workers;
	pthread_t timer;
	bool started;
};

#define DIR_TTL_MS 5000

/* ------------------------------------------------------------------ small helpers */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ULL + (uint64_t)ts->tv_nsec;
}

/* The object key of a relative path. Caller frees. */
static char *key_of(struct cache *c, const char *rel)
{
	char *k = NULL;

	if (asprintf(&k, "%s%s", c->cfg->prefix ? c->cfg->prefix : "", rel) < 0)
		return NULL;
	return k;
}

/* "a/b/c" -> job "a" (only for paths with a '/'; top-level files have no job) */
static size_t top_len(const char *rel)
{
	const char *s = strchr(rel, '/');

	return s ? (size_t)(s - rel) : 0;
}

static bool under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (n == 0)
		return true;
	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* journal escaping: %XX for '%', control bytes, tab, newline and space */
static void esc(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p <= 0x20 || *p == '%' || *p == 0x7f)
			fprintf(f, "%%%02X", *p);
		else
			fputc(*p, f);
	}
}

static int unesc(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (*p == '%') {
			unsigned v;

			if (sscanf(p + 1, "%2x", &v) != 1 || !p[1] || !p[2])
				return -EINVAL;
			*o++ = (char)v;
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return 0;
}

/* ------------------------------------------------------------------ journal */

/* Append one record: type letter and fields, tab-separated, escaped. sync: fdatasync after. */
static void journal_add(struct cache *c, bool sync, char type, int n, ...)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	va_list ap;

	if (!f)
		return;
	fputc(type, f);
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		fputc('\t', f);
		esc(f, va_arg(ap, const char *));
	}
	va_end(ap);
	fputc('\n', f);
	fclose(f);
	pthread_mutex_lock(&c->jlock);
	if (c->journal_fd >= 0) {
		if (write(c->journal_fd, buf, len) != (ssize_t)len)
			log_msg(LOG_ERR, "cannot write the journal", "dir=%s error=\"%s\"", c->dir,
				strerror(errno));
		else if (sync)
			fdatasync(c->journal_fd);
	}
	pthread_mutex_unlock(&c->jlock);
	free(buf);
}

static void journal_clean(struct cache *c, const char *path, const struct stat *st, const char *key,
			  const char *bucket)
{
	char size[24], mt[24], ct[24], ino[24];

	snprintf(size, sizeof(size), "%" PRIu64, (uint64_t)st->st_size);
	snprintf(mt, sizeof(mt), "%" PRIu64, ts_ns(&st->st_mtim));
	snprintf(ct, sizeof(ct), "%" PRIu64, ts_ns(&st->st_ctim));
	snprintf(ino, sizeof(ino), "%" PRIu64, (uint64_t)st->st_ino);
	if (bucket)
		journal_add(c, false, 'C', 7, path, size, mt, ct, ino, key, bucket);
	else
		journal_add(c, false, 'C', 6, path, size, mt, ct, ino, key);
}

/* ------------------------------------------------------------------ files and jobs */

static struct job *job_get(struct cache *c, const char *rel, bool create)
{
	size_t n = top_len(rel);
	struct job *j;

	if (n == 0)
		return NULL;
	HASH_FIND(hh, c->jobs, rel, n, j);
	if (j || !create)
		return j;
	j = calloc(1, sizeof(*j));
	if (!j || !(j->name = strndup(rel, n))) {
		free(j);
		return NULL;
	}
	if (!meta_parse_job_folder(j->name, j->uuid))
		j->uuid[0] = '\0';
	j->born_ms = now_ms();
	j->policy_wanted = c->meta != NULL && c->cfg->database_url && j->uuid[0];
	HASH_ADD_KEYPTR(hh, c->jobs, j->name, n, j);
	return j;
}

static struct cache_file *file_find(struct cache *c, const char *rel)
{
	struct cache_file *f;

	HASH_FIND_STR(c->files, rel, f);
	return f;
}

static struct cache_file *file_new(struct cache *c, const char *rel)
{
	struct cache_file *f = calloc(1, sizeof(*f));

	if (!f || !(f->path = strdup(rel))) {
		free(f);
		return NULL;
	}
	pthread_mutex_init(&f->open_lock, NULL);
	f->state = ST_DIRTY;
	f->gen = 1;
	f->job = job_get(c, rel, true);
	f->atime = now_ms();
	if (f->job)
		f->job->dirty_status = true;
	HASH_ADD_KEYPTR(hh, c->files, f->path, strlen(f->path), f);
	return f;
}

static void file_free(struct cache_file *f)
{
	pthread_mutex_destroy(&f->open_lock);
	free(f->path);
	free(f->up_key);
	free(f->up_bucket);
	free(f);
}

/* Drop a reference; a file that is gone and unreferenced is freed. Under c->lock. */
static void file_unref(struct cache_file *f)
{
	if (--f->refs == 0 && f->gone)
		file_free(f);
}

static void dequeue(struct cache *c, struct cache_file *f)
{
	if (f->in_queue) {
		TAILQ_REMOVE(&c->queue, f, qlink);
		f->in_queue = false;
		if (f->job)
			f->job->queued--;
	}
}

static void enqueue(struct cache *c, struct cache_file *f, bool front)
{
	if (f->in_queue)
		return;
	f->state = ST_QUEUED;
	f->settle_at = 0;
	if (front)
		TAILQ_INSERT_HEAD(&c->queue, f, qlink);
	else
		TAILQ_INSERT_TAIL(&c->queue, f, qlink);
	f->in_queue = true;
	if (f->job) {
		f->job->queued++;
		f->job->dirty_status = true;
	}
	pthread_cond_signal(&c->work_cond);
}

/* Does the job's policy (its jobs row: enabled, includeFiles, uploadPdfs, ...) let f go to S3?
 * Files it excludes stay staged, are never evicted, and count as skipped. Under c->lock. */
#define POLICY_WAIT_MS 3000

static bool policy_allows(const struct cache_file *f)
{
	const struct job *j = f->job;

	if (!j || !j->uuid[0])
		return true;
	/* a job folder's first uploads wait a moment for its row (PostgreSQL may be slow or
	 * down: after POLICY_WAIT_MS the environment's settings apply) */
	if (!j->have_policy || !j->policy.have_row)
		return !j->policy_wanted || now_ms() - j->born_ms >= POLICY_WAIT_MS;
	return meta_policy_includes(&j->policy, f->path + strlen(j->name) + 1);
}

/* Has the job's row (known by now) excluded f from upload? Under c->lock. */
static bool policy_excludes(const struct cache_file *f)
{
	const struct job *j = f->job;

	return j && j->uuid[0] && j->have_policy && j->policy.have_row &&
	       !meta_policy_includes(&j->policy, f->path + strlen(j->name) + 1);
}

/* May f be uploaded now (ignoring the settle delay)? Under c->lock. */
static bool upload_allowed(struct cache *c, const struct cache_file *f)
{
	if (!c->cfg->s3_enabled || c->read_only || f->writers > 0 || f->gone || f->torn)
		return false;
	if (!policy_allows(f))
		return false;
	if (!f->job || !c->cfg->upload_on_completion)
		return true;
	return f->job->completed;
}

/* May f be uploaded at an explicit request (fsync), whatever its job's state? */
static bool upload_allowed_now(struct cache *c, const struct cache_file *f)
{
	return c->cfg->s3_enabled && !c->read_only && f->writers == 0 && !f->gone && !f->torn;
}

/* A change to f's content or metadata. Under c->lock. */
static void file_changed(struct cache *c, struct cache_file *f)
{
	f->gen++;
	f->atime = now_ms();
	if (f->job)
		f->job->last_write_ms = f->atime;
	if (f->state == ST_QUEUED)
		dequeue(c, f);
	if (f->state != ST_UPLOADING)
		f->state = ST_DIRTY;
	f->settle_at = 0;
}

/* After the last writer closed (or any event that may make f eligible). Under c->lock. */
static void file_settle(struct cache *c, struct cache_file *f)
{
	if (f->job)
		f->job->dirty_status = true;	/* counters, or a skipped file to record */
	if (f->state != ST_DIRTY || !upload_allowed(c, f))
		return;
	if (c->cfg->settle_ms == 0 || (f->job && c->cfg->upload_on_completion))
		enqueue(c, f, false);
	else
		f->settle_at = now_ms() + (uint64_t)c->cfg->settle_ms;
}

/* The tombstone hash key of an object: the key, or bucket "\x01" key in another bucket.
 * Caller frees. */
static char *obj_hkey(const char *bucket, const char *key)
{
	char *h = NULL;

	if (!bucket)
		return strdup(key);
	return asprintf(&h, "%s\x01%s", bucket, key) < 0 ? NULL : h;
}

static void pending_del_free(struct pending_del *d)
{
	free(d->hkey);
	free(d->key);
	free(d->bucket);
	free(d);
}

/* Schedule deletion of an object (journalled first, durably). bucket NULL: the configured
 * one. Under c->lock. */
static void delete_key(struct cache *c, const char *bucket, const char *key)
{
	struct pending_del *d;
	char *h;

	if (!c->cfg->s3_enabled || !(h = obj_hkey(bucket, key)))
		return;
	HASH_FIND_STR(c->tombs, h, d);
	if (d && d->done_at) {
		d->done_at = 0;
		TAILQ_INSERT_TAIL(&c->dels, d, link);
	} else if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d || !(d->key = strdup(key)) || (bucket && !(d->bucket = strdup(bucket)))) {
			if (d)
				pending_del_free(d);
			free(h);
			return;
		}
		d->hkey = h;
		h = NULL;
		HASH_ADD_KEYPTR(hh, c->tombs, d->hkey, strlen(d->hkey), d);
		TAILQ_INSERT_TAIL(&c->dels, d, link);
	} else {
		free(h);
		return;
	}
	free(h);
	if (bucket)
		journal_add(c, true, 'D', 2, key, bucket);
	else
		journal_add(c, true, 'D', 1, key);
	pthread_cond_signal(&c->work_cond);
}

/* A new upload to key supersedes a pending delete of it. Under c->lock. */
static void cancel_delete(struct cache *c, const char *bucket, const char *key)
{
	struct pending_del *d;
	char *h = obj_hkey(bucket, key);

	if (!h)
		return;
	HASH_FIND_STR(c->tombs, h, d);
	free(h);
	if (!d || d->in_flight)
		return;
	HASH_DEL(c->tombs, d);
	if (!d->done_at) {
		TAILQ_REMOVE(&c->dels, d, link);
		if (bucket)
			journal_add(c, false, 'd', 2, key, bucket);
		else
			journal_add(c, false, 'd', 1, key);
	}
	pending_del_free(d);
}

static void rlist_free(struct rlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->e[i].name);
	free(l->e);
	free(l->prefix);
	free(l);
}

/* Forget the cached listing of the directory holding rel. Under c->lock. */
static void rlist_invalidate(struct cache *c, const char *rel)
{
	const char *slash = strrchr(rel, '/');
	size_t n = slash ? (size_t)(slash - rel) : 0;
	struct rlist *l;

	c->rlist_epoch++;	/* a listing fetched before now may be stale: don't keep it */
	HASH_FIND(hh, c->rlists, rel, n, l);
	if (l) {
		HASH_DEL(c->rlists, l);
		rlist_free(l);
	}
}

/* ------------------------------------------------------------------ S3 listing cache */

static int rl_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rlist_entry *)a)->name, ((const struct rlist_entry *)b)->name);
}

/* Fetch the listing of directory rel from S3 (no lock held). */
static int rlist_fetch(struct cache *c, const char *rel, struct rlist **out)
{
	struct rlist *l = calloc(1, sizeof(*l));
	char *prefix = NULL, *token = NULL;
	size_t cap = 0, plen;
	int rc = 0;

	*out = NULL;
	if (!l || !(l->prefix = strdup(rel))) {
		free(l);
		return -ENOMEM;
	}
	if (asprintf(&prefix, "%s%s%s", c->cfg->prefix, rel, *rel ? "/" : "") < 0) {
		rc = -ENOMEM;
		goto out;
	}
	plen = strlen(prefix);
	do {
		struct s3_list_page pg;
		struct s3_error e;

		rc = c->store->list(c->store->ctx, NULL, prefix, "/", token, &pg, &e);
		if (rc) {
			char et[300];

			log_msg(LOG_WARNING, "cannot list s3", "prefix=%s error=\"%s\"", prefix,
				s3_error_text(&e, et, sizeof(et)));
			goto out;
		}
		if (l->n + pg.n_objects + pg.n_prefixes > cap) {
			size_t ncap = (l->n + pg.n_objects + pg.n_prefixes) * 2 + 16;
			struct rlist_entry *ne = realloc(l->e, ncap * sizeof(*ne));

			if (!ne) {
				s3_list_page_release(&pg);
				rc = -ENOMEM;
				goto out;
			}
			l->e = ne;
			cap = ncap;
		}
		for (size_t i = 0; i < pg.n_prefixes; i++) {
			const char *p = pg.prefixes[i];
			size_t n = strlen(p);

			if (n <= plen + 1 || strncmp(p, prefix, plen) != 0)
				continue;
			l->e[l->n] = (struct rlist_entry){ .name = strndup(p + plen, n - plen - 1),
							   .is_dir = true };
			if (l->e[l->n].name)
				l->n++;
		}
		for (size_t i = 0; i < pg.n_objects; i++) {
			const char *k = pg.objects[i].key;

			if (strlen(k) <= plen || strncmp(k, prefix, plen) != 0)
				continue;	/* the "dir/" marker object itself */
			l->e[l->n] = (struct rlist_entry){ .name = strdup(k + plen),
							   .size = pg.objects[i].size,
							   .mtime = pg.objects[i].mtime };
			if (l->e[l->n].name)
				l->n++;
		}
		free(token);
		token = pg.truncated && pg.next_token ? strdup(pg.next_token) : NULL;
		s3_list_page_release(&pg);
	} while (token);
	qsort(l->e, l->n, sizeof(*l->e), rl_cmp);
	l->fetched_ms = now_ms();
	*out = l;
	l = NULL;
out:
	if (l)
		rlist_free(l);
	free(prefix);
	free(token);
	return rc;
}

/* The cached listing of rel, fetched if missing or stale. Called and returns with c->lock
 * held (dropped during the fetch). The result is valid until c->lock is dropped. */
static int rlist_get(struct cache *c, const char *rel, struct rlist **out)
{
	struct rlist *l, *fresh;
	uint64_t epoch;
	int rc;

	*out = NULL;
	if (!c->cfg->s3_enabled)
		return 0;
	{
		struct fresh_dir *fd;

		HASH_FIND_STR(c->fresh, rel, fd);
		if (fd)
			return 0;	/* nothing in S3 but what we upload, and that is staged */
	}
	HASH_FIND_STR(c->rlists, rel, l);
	if (l && now_ms() - l->fetched_ms < DIR_TTL_MS) {
		if (l->err)
			return l->err;
		*out = l;
		return 0;
	}
	epoch = c->rlist_epoch;
	pthread_mutex_unlock(&c->lock);
	rc = rlist_fetch(c, rel, &fresh);
	pthread_mutex_lock(&c->lock);
	if (rc) {
		/* remember the failure briefly, so a writer creating many files in a directory
		 * pays for S3 being down once, not once per file */
		struct rlist *bad = calloc(1, sizeof(*bad));

		if (bad && (bad->prefix = strdup(rel)) != NULL) {
			bad->err = rc;
			bad->fetched_ms = now_ms();
			HASH_FIND_STR(c->rlists, rel, l);
			if (l) {
				HASH_DEL(c->rlists, l);
				rlist_free(l);
			}
			HASH_ADD_KEYPTR(hh, c->rlists, bad->prefix, strlen(bad->prefix), bad);
		} else {
			free(bad);
		}
		return rc;
	}
	if (epoch != c->rlist_epoch)
		fresh->fetched_ms = 0;	/* usable for this call, refetched by the next */
	HASH_FIND_STR(c->rlists, rel, l);
	if (l) {
		HASH_DEL(c->rlists, l);
		rlist_free(l);
	}
	HASH_ADD_KEYPTR(hh, c->rlists, fresh->prefix, strlen(fresh->prefix), fresh);
	*out = fresh;
	return 0;
}

static const struct rlist_entry *rlist_find(const struct rlist *l, const char *name)
{
	struct rlist_entry key = { .name = (char *)name };

	if (!l || !l->n)
		return NULL;
	return bsearch(&key, l->e, l->n, sizeof(*l->e), rl_cmp);
}

/* Is the directory holding rel one we made while S3 had nothing there? Under c->lock. */
static bool parent_fresh(struct cache *c, const char *rel)
{
	const char *slash = strrchr(rel, '/');
	struct fresh_dir *fd;

	if (!slash)
		return false;
	HASH_FIND(hh, c->fresh, rel, (size_t)(slash - rel), fd);
	return fd != NULL;
}

static void fresh_add(struct cache *c, const char *rel)
{
	struct fresh_dir *fd;

	HASH_FIND_STR(c->fresh, rel, fd);
	if (fd || !(fd = calloc(1, sizeof(*fd))) || !(fd->path = strdup(rel))) {
		if (fd && !fd->path)
			free(fd);
		return;
	}
	HASH_ADD_KEYPTR(hh, c->fresh, fd->path, strlen(fd->path), fd);
}

/* A file under these dirs now lives only in S3 (evicted): they must be listed again. */
static void fresh_drop_ancestors(struct cache *c, const char *rel)
{
	struct fresh_dir *fd, *tmp;

	HASH_ITER(hh, c->fresh, fd, tmp) {
		if (under(rel, fd->path)) {
			HASH_DEL(c->fresh, fd);
			free(fd->path);
			free(fd);
		}
	}
}

/* Forget freshness of rel and everything under it (renamed or removed). Under c->lock. */
static void fresh_drop(struct cache *c, const char *rel)
{
	struct fresh_dir *fd, *tmp;

	HASH_ITER(hh, c->fresh, fd, tmp) {
		if (under(fd->path, rel)) {
			HASH_DEL(c->fresh, fd);
			free(fd->path);
			free(fd);
		}
	}
}

/* Does the directory holding rel exist in data/? */
static bool staged_parent(struct cache *c, const char *rel)
{
	const char *slash = strrchr(rel, '/');
	char *parent;
	struct stat st;
	bool ok;

	if (!slash)
		return true;
	parent = strndup(rel, (size_t)(slash - rel));
	ok = parent && fstatat(c->data_fd, parent, &st, 0) == 0 && S_ISDIR(st.st_mode);
	free(parent);
	return ok;
}

/* Is the object of rel pending deletion? Under c->lock. */
static bool tombstoned(struct cache *c, const char *rel)
{
	struct pending_del *d;
	char *k = key_of(c, rel);

	if (!k)
		return false;
	HASH_FIND_STR(c->tombs, k, d);
	free(k);
	return d != NULL;
}

static void remote_stat(const struct rlist_entry *e, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_nlink = 1;
	if (e->is_dir) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0644;
		st->st_size = (off_t)e->size;
		st->st_blocks = (blkcnt_t)((e->size + 511) / 512);
	}
	st->st_mtim.tv_sec = e->mtime;
	st->st_ctim = st->st_atim = st->st_mtim;
}

/* Look up rel in S3 via its parent's listing. Under c->lock (dropped while fetching). */
static int remote_lookup(struct cache *c, const char *rel, struct stat *st)
{
	const char *slash = strrchr(rel, '/');
	char *parent = slash ? strndup(rel, (size_t)(slash - rel)) : strdup("");
	const struct rlist_entry *e;
	struct rlist *l;
	int rc;

	if (!parent)
		return -ENOMEM;
	if (parent_fresh(c, rel)) {
		free(parent);
		return -ENOENT;
	}
	rc = rlist_get(c, parent, &l);
	free(parent);
	if (rc)
		return rc == -ENOENT ? -ENOENT : -EIO;
	e = rlist_find(l, slash ? slash + 1 : rel);
	if (!e || (!e->is_dir && tombstoned(c, rel)))
		return -ENOENT;
	if (st)
		remote_stat(e, st);
	return 0;
}

/* ------------------------------------------------------------------ open / close */

static int tmp_name(struct cache *c, char *buf, size_t size)
{
	uint64_t n;

	pthread_mutex_lock(&c->lock);
	n = ++c->tmp_seq;
	pthread_mutex_unlock(&c->lock);
	snprintf(buf, size, "t%d-%" PRIu64, (int)getpid(), n);
	return 0;
}

/* ---- staged files are owner-only on disk ----
 * A staged file is 0600 and a staged directory 0700 whatever the program asked for; the mode
 * programs see (and that goes to x-amz-meta-mode) is kept in the xattr user.s3jobfs.mode, which
 * lives and dies with the file (durable, renamed with it, no journal needed). On a cache
 * filesystem without user xattrs the staged file carries the program's mode itself, as a file
 * without the xattr (an older cache) does. */
#define MODE_XATTR	"user.s3jobfs.mode"
#define STAGED_FILE	0600
#define STAGED_DIR	0700

static void mode_from_xattr(const char *v, ssize_t n, struct stat *st)
{
	char buf[16];

	if (n <= 0 || n >= (ssize_t)sizeof(buf))
		return;
	memcpy(buf, v, (size_t)n);
	buf[n] = '\0';
	st->st_mode = (st->st_mode & S_IFMT) | ((mode_t)strtoul(buf, NULL, 8) & 07777);
}

/* Replace st's permission bits by the recorded user mode of the open staged file fd. */
static void user_mode_fd(int fd, struct stat *st)
{
	char v[16];

	if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))
		mode_from_xattr(v, fgetxattr(fd, MODE_XATTR, v, sizeof(v)), st);
}

/* Same for the staged path rel (no fd open: by the full path, one syscall). */
static void user_mode_at(struct cache *c, const char *rel, struct stat *st)
{
	char path[PATH_MAX], v[16];

	if ((S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)) &&
	    snprintf(path, sizeof(path), "%s/data/%s", c->dir, rel) < (int)sizeof(path))
		mode_from_xattr(v, lgetxattr(path, MODE_XATTR, v, sizeof(v)), st);
}

/* Record mode as what programs see for the staged fd. 0 or -errno. */
static int set_user_mode_fd(int fd, mode_t mode)
{
	char v[16];
	int n = snprintf(v, sizeof(v), "%o", (unsigned)(mode & 07777));

	if (fsetxattr(fd, MODE_XATTR, v, (size_t)n, 0) == 0)
		return 0;
	if (errno != ENOTSUP)
		return -errno;
	return fchmod(fd, mode & 07777) < 0 ? -errno : 0;	/* no user xattrs here */
}

static int set_user_mode_at(struct cache *c, const char *rel, mode_t mode)
{
	char path[PATH_MAX], v[16];
	int n = snprintf(v, sizeof(v), "%o", (unsigned)(mode & 07777));

	if (snprintf(path, sizeof(path), "%s/data/%s", c->dir, rel) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	if (lsetxattr(path, MODE_XATTR, v, (size_t)n, 0) == 0)
		return 0;
	if (errno != ENOTSUP)
		return -errno;
	return fchmodat(c->data_fd, *rel ? rel : ".", mode & 07777, 0) < 0 ? -errno : 0;
}

/* mkdir of a staged directory: 0700 on disk, mode for programs. EEXIST is not an error. */
static int mkdir_staged(struct cache *c, const char *rel, mode_t mode)
{
	if (mkdirat(c->data_fd, rel, STAGED_DIR) < 0)
		return errno == EEXIST ? 0 : -errno;
	return set_user_mode_at(c, rel, mode);
}

/* openat of a staged file; a file it creates is 0600 on disk with mode for programs. */
static int open_staged(struct cache *c, const char *rel, int flags, mode_t mode)
{
	int fd, r;

	if (!(flags & O_CREAT))
		return openat(c->data_fd, rel, flags | O_CLOEXEC);
	fd = openat(c->data_fd, rel, flags | O_EXCL | O_CLOEXEC, STAGED_FILE);
	if (fd < 0 && errno == EEXIST && !(flags & O_EXCL))
		return openat(c->data_fd, rel, (flags & ~O_CREAT) | O_CLOEXEC);
	if (fd >= 0 && (r = set_user_mode_fd(fd, mode)) < 0) {
		close(fd);
		unlinkat(c->data_fd, rel, 0);
		errno = -r;
		return -1;
	}
	return fd;
}

/* Copy src (open fd) into a new file in tmp/ with src's mode; returns its fd, name in buf. */
static int copy_to_tmp(struct cache *c, int src, char *name, size_t size, bool with_data)
{
	struct stat st;
	int dst;
	off_t off = 0;

	if (fstat(src, &st) < 0)
		return -errno;
	tmp_name(c, name, size);
	dst = openat(c->tmp_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, STAGED_FILE);
	if (dst < 0)
		return -errno;
	user_mode_fd(src, &st);
	set_user_mode_fd(dst, st.st_mode);
	while (with_data && off < st.st_size) {
		ssize_t n = copy_file_range(src, &off, dst, NULL, (size_t)(st.st_size - off), 0);

		if (n <= 0) {
			int e = n < 0 ? errno : EIO;

			close(dst);
			unlinkat(c->tmp_fd, name, 0);
			return -e;
		}
	}
	if (fchown(dst, st.st_uid, st.st_gid) < 0) {
		/* not root: keep ours */
	}
	{
		struct timespec t[2] = { st.st_atim, st.st_mtim };

		futimens(dst, t);
	}
	return dst;
}

/* Create the parent directories of rel in data/ (a remote directory being written into). */
static int make_parents(struct cache *c, const char *rel)
{
	char *p = strdup(rel);
	int rc = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if ((rc = mkdir_staged(c, p, 0755)) < 0)
			break;
		*s = '/';
	}
	free(p);
	return rc;
}

/* Stage a file that exists only in S3: download it into data/rel. No lock held. */
static int stage_remote(struct cache *c, const char *rel, uint64_t size)
{
	char name[64], *key = key_of(c, rel);
	struct s3_error e;
	uint64_t got = 0;
	int fd = -1, rc;

	if (!key)
		return -ENOMEM;
	rc = make_parents(c, rel);
	if (rc)
		goto out;
	tmp_name(c, name, sizeof(name));
	fd = openat(c->tmp_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, STAGED_FILE);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	set_user_mode_fd(fd, 0644);
	if (size) {
		rc = c->store->get_to_fd(c->store->ctx, NULL, key, 0, 0, fd, 0, &got, &e);
		if (rc)
			goto out;
	}
	if (renameat(c->tmp_fd, name, c->data_fd, rel) < 0) {
		rc = -errno;
		goto out;
	}
	name[0] = '\0';
	pthread_mutex_lock(&c->lock);
	{
		struct cache_file *f = file_find(c, rel);
		struct stat st;

		if (!f && (f = file_new(c, rel)) != NULL && fstat(fd, &st) == 0) {
			/* same bytes as the object: clean, and known to be at key */
			f->state = ST_CLEAN;
			f->up_gen = f->gen;
			f->up_key = strdup(key);
			f->size = (uint64_t)st.st_size;
			journal_clean(c, rel, &st, key, NULL);
		}
	}
	pthread_mutex_unlock(&c->lock);
out:
	if (fd >= 0)
		close(fd);
	if (name[0] && fd >= 0)
		unlinkat(c->tmp_fd, name, 0);
	free(key);
	return rc;
}

int cache_open_handle(struct cache *c, const char *rel, int flags, mode_t mode,
		      struct cache_handle **out)
{
	bool writable = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
	struct cache_handle *h = calloc(1, sizeof(*h));
	struct cache_file *f = NULL;
	struct stat st;
	int fd = -1, rc = 0;

	*out = NULL;
	if (!h)
		return -ENOMEM;
	h->fd = -1;
	if (writable && c->read_only) {
		free(h);
		return -EROFS;
	}
	flags &= ~(O_NOFOLLOW | O_CLOEXEC);
	if (*rel == '\0') {
		free(h);
		return -EISDIR;
	}
	/* not staged: read from S3, or stage it first for writing */
	if (fstatat(c->data_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		struct stat rst;

		if (errno != ENOENT) {
			rc = -errno;
			goto out;
		}
		pthread_mutex_lock(&c->lock);
		rc = remote_lookup(c, rel, &rst);
		pthread_mutex_unlock(&c->lock);
		if (rc == 0 && S_ISDIR(rst.st_mode)) {
			rc = -EISDIR;
			goto out;
		}
		if (rc == 0 && (flags & O_CREAT) && (flags & O_EXCL)) {
			rc = -EEXIST;
			goto out;
		}
		if (rc == 0 && !writable) {
			char *key = key_of(c, rel);

			rc = key ? cache_remote_open(c->rdir, c->cfg->bucket, key, (uint64_t)rst.st_size,
						     "", &h->remote) : -ENOMEM;
			free(key);
			if (rc == 0) {
				h->remote_size = (uint64_t)rst.st_size;
				*out = h;
				return 0;
			}
			goto out;
		}
		if (rc == 0 && !(flags & O_TRUNC)) {
			rc = stage_remote(c, rel, (uint64_t)rst.st_size);
			if (rc)
				goto out;
		} else if (rc == -ENOENT && !(flags & O_CREAT)) {
			goto out;
		} else if (rc && rc != -ENOENT && !((flags & O_CREAT) && staged_parent(c, rel))) {
			goto out;
		} else {
			rc = make_parents(c, rel);
			if (rc)
				goto out;
			flags |= O_CREAT;
		}
		rc = 0;
	}
	if (!writable) {
		fd = open_staged(c, rel, flags, mode);
		if (fd < 0) {
			rc = -errno;
			goto out;
		}
		pthread_mutex_lock(&c->lock);
		f = file_find(c, rel);
		if (f) {
			f->refs++;
			f->atime = now_ms();
		}
		pthread_mutex_unlock(&c->lock);
		goto done;
	}

	/* writable: find or make the node; copy-on-write if it is being uploaded */
	pthread_mutex_lock(&c->lock);
	f = file_find(c, rel);
	if (!f)
		f = file_new(c, rel);
	if (!f) {
		pthread_mutex_unlock(&c->lock);
		rc = -ENOMEM;
		goto out;
	}
	f->refs++;
	pthread_mutex_unlock(&c->lock);

	pthread_mutex_lock(&f->open_lock);
	pthread_mutex_lock(&c->lock);
	if (f->state == ST_UPLOADING && !f->cow && !f->gone) {
		char name[64];
		int src, tmp;

		pthread_mutex_unlock(&c->lock);
		src = openat(c->data_fd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		tmp = src >= 0 ? copy_to_tmp(c, src, name, sizeof(name), !(flags & O_TRUNC)) : -errno;
		if (src >= 0)
			close(src);
		pthread_mutex_lock(&c->lock);
		if (tmp >= 0) {
			close(tmp);
			if (renameat(c->tmp_fd, name, c->data_fd, rel) == 0)
				f->cow = true;
			else
				unlinkat(c->tmp_fd, name, 0);
		}
	}
	fd = open_staged(c, rel, flags, mode);
	if (fd < 0) {
		rc = -errno;
		f->refs--;
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_unlock(&f->open_lock);
		f = NULL;
		goto out;
	}
	f->writers++;
	if (flags & O_TRUNC)
		f->torn = false;
	file_changed(c, f);	/* opening for write counts: the writer may change it any time */
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&f->open_lock);
done:
	h->fd = fd;
	h->file = f;
	h->writable = writable;
	*out = h;
	return 0;
out:
	free(h);
	return rc;
}

ssize_t cache_read(struct cache *c, struct cache_handle *h, void *buf, size_t size, off_t off)
{
	ssize_t n;

	(void)c;
	if (h->remote) {
		struct s3_error e;

		return cache_remote_read(h->remote, buf, size, (uint64_t)off, &e);
	}
	n = pread(h->fd, buf, size, off);
	return n < 0 ? -errno : n;
}

static uint64_t evict(struct cache *c, uint64_t want_free);

ssize_t cache_write(struct cache *c, struct cache_handle *h, const void *buf, size_t size, off_t off)
{
	ssize_t n;

	if (!h->writable)
		return -EBADF;
	n = pwrite(h->fd, buf, size, off);
	if (n < 0 && errno == ENOSPC && evict(c, size + (1 << 20)) > 0)
		n = pwrite(h->fd, buf, size, off);
	if (n < 0 || (size_t)n < size) {
		int e = n < 0 ? errno : ENOSPC;

		if (h->file) {
			pthread_mutex_lock(&c->lock);
			file_changed(c, h->file);
			if (!h->file->torn)
				log_msg(LOG_ERR, "write failed: the file will not be uploaded until it is rewritten",
					"path=%s error=\"%s\"", h->file->path, strerror(e));
			h->file->torn = true;
			pthread_mutex_unlock(&c->lock);
		}
		if (n > 0)
			return n;
		return -e;
	}
	if (h->file) {
		pthread_mutex_lock(&c->lock);
		file_changed(c, h->file);
		pthread_mutex_unlock(&c->lock);
	}
	return n;
}

int cache_ftruncate(struct cache *c, struct cache_handle *h, off_t size)
{
	if (!h->writable)
		return -EBADF;
	if (ftruncate(h->fd, size) < 0)
		return -errno;
	if (h->file) {
		pthread_mutex_lock(&c->lock);
		if (size == 0)
			h->file->torn = false;	/* rewritten from the start */
		file_changed(c, h->file);
		pthread_mutex_unlock(&c->lock);
	}
	return 0;
}

int cache_fallocate(struct cache *c, struct cache_handle *h, int mode, off_t off, off_t len)
{
	if (!h->writable)
		return -EBADF;
	if (fallocate(h->fd, mode, off, len) < 0)
		return -errno;
	if (h->file) {
		pthread_mutex_lock(&c->lock);
		file_changed(c, h->file);
		pthread_mutex_unlock(&c->lock);
	}
	return 0;
}

int cache_release(struct cache *c, struct cache_handle *h)
{
	if (h->remote)
		cache_remote_close(h->remote);
	if (h->file) {
		struct stat st;
		bool have = h->fd >= 0 && fstat(h->fd, &st) == 0;

		pthread_mutex_lock(&c->lock);
		if (h->writable && --h->file->writers == 0) {
			if (have)
				h->file->size = (uint64_t)st.st_size;
			file_settle(c, h->file);
		}
		file_unref(h->file);
		pthread_mutex_unlock(&c->lock);
	}
	if (h->fd >= 0)
		close(h->fd);
	free(h);
	return 0;
}

/* ------------------------------------------------------------------ uploading */

struct mpu_ctx {
	struct cache *c;
};

static void on_mpu(void *ctx, const char *key, const char *upload_id, bool done)
{
	struct cache *c = ctx;

	journal_add(c, !done, done ? 'm' : 'M', 2, key, upload_id);
}

/* Upload the open file fd (a stable version) of f to key. No lock held. */
static int put_version(struct cache *c, int fd, const struct stat *st, const char *bucket,
		       const char *key, char *etag, char sha256[65], struct s3_error *err)
{
	struct stat us = *st;
	struct s3_put_opts o = {
		.set_meta = true, .uid = st->st_uid, .gid = st->st_gid,
		.mtime = st->st_mtim, .mpu_event = on_mpu, .mpu_ctx = c, .sha256_out = sha256,
	};

	user_mode_fd(fd, &us);		/* the mode programs see, not the staged 0600 */
	o.mode = us.st_mode;

	if (sha256)
		sha256[0] = '\0';

	return c->store->put_file(c->store->ctx, bucket, key, fd, (uint64_t)st->st_size, &o, etag, err);
}

/* Upload a symlink as a small object holding its target. */
static int put_symlink(struct cache *c, const char *rel, const struct stat *st, const char *bucket,
		       const char *key, char *etag, struct s3_error *err)
{
	char target[4096], name[64];
	ssize_t n = readlinkat(c->data_fd, rel, target, sizeof(target) - 1);
	int fd, rc;

	if (n < 0)
		return -errno;
	tmp_name(c, name, sizeof(name));
	fd = openat(c->tmp_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	unlinkat(c->tmp_fd, name, 0);
	if (write(fd, target, (size_t)n) != n) {
		close(fd);
		return -EIO;
	}
	{
		struct stat lst = *st;

		lst.st_size = n;
		rc = put_version(c, fd, &lst, bucket, key, etag, NULL, err);
	}
	close(fd);
	return rc;
}

/* Where f's content goes: its job row's bucket/prefix when the row sets them, else the
 * mount's. *bucket: NULL for S3_BUCKET_NAME, else heap; *key heap (NULL on ENOMEM); *custom:
 * somewhere the mount's listing does not show. Under c->lock. */
static void target_of(struct cache *c, const struct cache_file *f, char **bucket, char **key,
		      bool *custom)
{
	const struct job *j = f->job;
	const struct meta_policy *p = j && j->have_policy && j->policy.have_row ? &j->policy : NULL;

	*bucket = NULL;
	*custom = false;
	if (!p || (!p->bucket && !p->prefix)) {
		*key = key_of(c, f->path);
		return;
	}
	if (p->bucket && (!c->cfg->bucket || strcmp(p->bucket, c->cfg->bucket) != 0))
		*bucket = strdup(p->bucket);
	if (asprintf(key, "%s%s", p->prefix ? p->prefix : c->cfg->prefix, f->path) < 0)
		*key = NULL;
	*custom = *bucket || (p->prefix && strcmp(p->prefix, c->cfg->prefix) != 0);
}

/* Upper bounds (ms) of the upload latency histogram's buckets (cache.h). */
const unsigned cache_latency_le_ms[CACHE_LATENCY_BUCKETS] = {
	10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 120000,
};

static void count_latency(struct cache *c, uint64_t ms)
{
	for (int i = 0; i < CACHE_LATENCY_BUCKETS; i++)
		if (ms <= cache_latency_le_ms[i])
			c->totals.upload_ms_le[i]++;
	c->totals.upload_ms_sum += ms;
	c->totals.upload_ms_count++;
}

/* f's content is now the object bucket/key (taken: *bucket and *key become NULL); an older
 * object elsewhere (the job's row moved it) is deleted. Under c->lock. */
static void set_uploaded(struct cache *c, struct cache_file *f, char **bucket, char **key,
			 bool custom)
{
	if (f->up_key && (strcmp(f->up_key, *key) != 0 || (f->up_bucket == NULL) != (*bucket == NULL) ||
			  (*bucket && strcmp(*bucket, f->up_bucket) != 0)))
		delete_key(c, f->up_bucket, f->up_key);
	free(f->up_key);
	free(f->up_bucket);
	f->up_key = *key;
	f->up_bucket = *bucket;
	f->custom_target = custom;
	*key = NULL;
	*bucket = NULL;
}

static void upload_one(struct cache *c, struct cache_file *f)
{
	char *rel, *key, *bucket, etag[72] = "", et[400], sha[65] = "";
	struct s3_error e = { 0 };
	struct stat st;
	uint64_t gen, t0 = now_ms();
	int fd = -1, rc;
	bool link = false, custom;

	/* under c->lock: take a stable version (opening by path under the lock, so a
	 * copy-on-write open can only replace the path after we hold the inode) */
	gen = f->gen;
	rel = strdup(f->path);
	target_of(c, f, &bucket, &key, &custom);
	f->cow = false;
	if (rel && key)
		cancel_delete(c, bucket, key);
	if (rel && fstatat(c->data_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		link = true;
	else if (rel)
		fd = openat(c->data_fd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	pthread_mutex_unlock(&c->lock);

	if (!rel || !key) {
		rc = -ENOMEM;
	} else if (link) {
		rc = put_symlink(c, rel, &st, bucket, key, etag, &e);
	} else if (fd < 0) {
		rc = -errno;
	} else if (fstat(fd, &st) < 0) {
		rc = -errno;
	} else {
		rc = put_version(c, fd, &st, bucket, key, etag, sha, &e);
	}

	pthread_mutex_lock(&c->lock);
	c->uploading--;
	if (f->job && f->job->active > 0 && --f->job->active == 0 && f->job->queued == 0)
		f->job->burst_ms = 0;	/* the run of uploads is over; the next starts a new rate */
	count_latency(c, now_ms() - t0);
	if (rc == 0) {
		bool same = !f->gone && f->gen == gen && !f->cow && strcmp(f->path, rel) == 0;

		c->totals.uploads_ok++;
		c->totals.bytes_uploaded += (uint64_t)st.st_size;
		if (f->job) {
			f->job->files_uploaded++;
			f->job->bytes_uploaded += (uint64_t)st.st_size;
		}
		log_msg(LOG_INFO, "s3 upload done", "job=%s key=%s bytes=%" PRIu64 " ms=%" PRIu64
			" attempts=%d", f->job ? f->job->name : "-", log_quote(et, sizeof(et), key),
			(uint64_t)st.st_size, now_ms() - t0, e.attempts ? e.attempts : 1);
		set_uploaded(c, f, &bucket, &key, custom);
		f->attempts = 0;
		if (same) {
			f->state = ST_CLEAN;
			f->up_gen = gen;
			f->size = (uint64_t)st.st_size;
			journal_clean(c, rel, &st, f->up_key, f->up_bucket);
		} else if (f->gone || strcmp(f->path, rel) != 0) {
			/* unlinked or renamed while uploading: that object must go */
			delete_key(c, f->up_bucket, f->up_key);
			free(f->up_key);
			free(f->up_bucket);
			f->up_key = NULL;
			f->up_bucket = NULL;
			if (!f->gone) {
				f->state = ST_DIRTY;
				file_settle(c, f);
			}
		} else {
			f->state = ST_DIRTY;	/* changed meanwhile: upload again after its close */
			file_settle(c, f);
		}
	} else if (!f->gone) {
		f->state = ST_FAILED;
		f->attempts++;
		f->err = e;
		if (!e.code[0])
			snprintf(f->err.code, sizeof(f->err.code), "%s", strerror(-rc));
		f->retry_at = now_ms() + (uint64_t)(f->attempts < 5 ? 15000ULL << f->attempts : 900000);
		c->totals.uploads_failed++;
		if (f->job) {
			f->job->files_failed++;
			s3_error_text(&f->err, f->job->last_error, sizeof(f->job->last_error));
		}
		{
			char kq[300], eq[400], cq[80];

			s3_error_text(&f->err, et, sizeof(et));
			log_msg(LOG_ERR, "s3 upload failed",
				"job=%s key=%s error=%s code=%s attempts=%d hint=\"%s; the file stays in the "
				"cache and is retried\"", f->job ? f->job->name : "-",
				log_quote(kq, sizeof(kq), key ? key : rel), log_quote(eq, sizeof(eq), et),
				log_quote(cq, sizeof(cq), f->err.code), e.attempts, s3_error_hint(&f->err));
		}
	}
	if (f->job && f->job->uuid[0] && c->meta) {
		char ebuf[300];
		const char *in_job = rel + strlen(f->job->name) + 1;

		f->job->dirty_status = true;
		if (rc == 0)
			meta_post_file(c->meta, f->job->uuid, in_job,
				       f->up_bucket ? f->up_bucket : c->cfg->bucket, f->up_key,
				       (uint64_t)st.st_size, sha[0] ? sha : NULL, etag, "uploaded",
				       e.attempts, NULL);
		else if (!f->gone)
			meta_post_file(c->meta, f->job->uuid, in_job, bucket ? bucket : c->cfg->bucket,
				       key ? key : "",
				       f->size, NULL, NULL, "failed", e.attempts,
				       s3_error_text(&f->err, ebuf, sizeof(ebuf)));
	}
	file_unref(f);
	pthread_cond_broadcast(&c->done_cond);
	if (fd >= 0)
		close(fd);
	free(rel);
	free(key);
	free(bucket);
}

static void delete_one(struct cache *c, struct pending_del *d)
{
	struct s3_error e;
	char *key = d->key;
	int rc;

	/* a live file now maps to this key: it will overwrite the object; do not delete */
	if (!d->bucket && strncmp(key, c->cfg->prefix, strlen(c->cfg->prefix)) == 0 &&
	    file_find(c, key + strlen(c->cfg->prefix))) {
		rc = 0;
		goto done;
	}
	d->in_flight = true;
	pthread_mutex_unlock(&c->lock);
	rc = c->store->del(c->store->ctx, d->bucket, key, &e);
	if (rc == -ENOENT)
		rc = 0;
	pthread_mutex_lock(&c->lock);
	d->in_flight = false;
	if (rc) {
		char et[300];

		log_msg(LOG_WARNING, "s3 delete failed", "key=%s error=\"%s\"", key,
			s3_error_text(&e, et, sizeof(et)));
		TAILQ_INSERT_TAIL(&c->dels, d, link);	/* again later */
		return;
	}
	log_msg(LOG_INFO, "s3 delete done", "key=%s", key);
done:
	if (d->bucket)
		journal_add(c, false, 'd', 2, key, d->bucket);
	else
		journal_add(c, false, 'd', 1, key);
	{
		const char *rel = strncmp(key, c->cfg->prefix, strlen(c->cfg->prefix)) == 0 ?
				  key + strlen(c->cfg->prefix) : key;

		rlist_invalidate(c, rel);
	}
	d->done_at = now_ms();	/* still hides the key from listings fetched before now */
	pthread_cond_broadcast(&c->done_cond);
}

static void abort_mpus(struct cache *c)
{
	while (c->mpus) {
		struct open_mpu *m = c->mpus;
		struct s3_error e;

		c->mpus = m->next;
		pthread_mutex_unlock(&c->lock);
		{
			int rc = c->store->abort_upload(c->store->ctx, NULL, m->key, m->upload_id, &e);

			if (rc == 0 || rc == -ENOENT || rc == -EOPNOTSUPP) {
				journal_add(c, false, 'm', 2, m->key, m->upload_id);
				log_msg(LOG_NOTICE, "aborted interrupted multipart upload", "key=%s", m->key);
			} else {
				log_msg(LOG_WARNING, "cannot abort interrupted multipart upload",
					"key=%s error=%s", m->key, e.code);
			}
		}
		free(m->key);
		free(m->upload_id);
		free(m);
		pthread_mutex_lock(&c->lock);
	}
}

static void *worker_main(void *arg)
{
	struct cache *c = arg;

	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		struct cache_file *f;
		struct pending_del *d;

		if (c->mpus) {
			abort_mpus(c);
			continue;
		}
		d = TAILQ_FIRST(&c->dels);
		if (d) {
			TAILQ_REMOVE(&c->dels, d, link);
			delete_one(c, d);
			continue;
		}
		f = TAILQ_FIRST(&c->queue);
		if (!f) {
			pthread_cond_wait(&c->work_cond, &c->lock);
			continue;
		}
		dequeue(c, f);
		if (f->state != ST_QUEUED || f->writers > 0 || f->gone)
			continue;
		f->state = ST_UPLOADING;
		f->refs++;
		c->uploading++;
		c->totals.uploads_started++;
		if (f->job && f->job->active++ == 0 && !f->job->burst_ms) {
			f->job->burst_ms = now_ms();
			f->job->burst_bytes = f->job->bytes_uploaded;
		}
		upload_one(c, f);	/* drops and retakes c->lock */
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* ------------------------------------------------------------------ job status for PostgreSQL */

/* The job's status from its files' states (README: pending, uploading, success, partial,
 * failed, disabled). Under c->lock. */
static const char *job_status(struct cache *c, struct job *j, size_t *n_failed)
{
	struct cache_file *f, *tmp;
	size_t n[5] = { 0 }, total = 0;

	*n_failed = 0;
	if (j->have_policy && j->policy.have_row && (!j->policy.enabled || !j->policy.save_files))
		return "disabled";
	if (!c->cfg->s3_enabled)
		return "disabled";
	HASH_ITER(hh, c->files, f, tmp) {
		if (f->job != j || policy_excludes(f))	/* row not read yet: not skipped */
			continue;
		n[f->state]++;
		total++;
	}
	*n_failed = n[ST_FAILED];
	if (n[ST_QUEUED] || n[ST_UPLOADING])
		return "uploading";
	if (n[ST_DIRTY])
		return c->cfg->upload_on_completion && !j->completed ? "pending" : "uploading";
	if (n[ST_FAILED])
		return n[ST_CLEAN] || j->files_uploaded ? "partial" : "failed";
	if (c->cfg->upload_on_completion && !j->completed)
		return "pending";
	return total || j->completed ? "success" : "pending";
}

/* The bucket a job's objects go to (its row's uploadToS3.bucket, else S3_BUCKET_NAME). */
static const char *target_bucket(const struct cache *c, const struct job *j)
{
	if (j->have_policy && j->policy.have_row && j->policy.bucket)
		return j->policy.bucket;
	return c->cfg->bucket ? c->cfg->bucket : "";
}

/* Send the job's state to meta (copied there; never blocks). Under c->lock. */
static void job_post(struct cache *c, struct job *j)
{
	struct meta_job_state st = { 0 };
	struct meta_error *errs = NULL;
	struct cache_file *f, *tmp;
	char **tops = NULL;
	size_t n_tops = 0, n_failed, k = 0;
	int dfd;
	DIR *d;

	if (!c->meta || !j->uuid[0])
		return;
	st.status = job_status(c, j, &n_failed);
	errs = n_failed ? calloc(n_failed, sizeof(*errs)) : NULL;
	HASH_ITER(hh, c->files, f, tmp) {
		/* a closed file the job's row excludes: its ledger row says skipped (once a version) */
		if (f->job == j && f->writers == 0 && f->skip_gen != f->gen && policy_excludes(f)) {
			f->skip_gen = f->gen;
			meta_post_file(c->meta, j->uuid, f->path + strlen(j->name) + 1,
				       target_bucket(c, j), "", f->size, NULL, NULL, "skipped", 0, NULL);
		}
	}
	HASH_ITER(hh, c->files, f, tmp) {
		if (f->job != j || f->state != ST_FAILED || !errs || k == n_failed)
			continue;
		errs[k].file = f->path + strlen(j->name) + 1;
		errs[k].code = f->err.code;
		errs[k].message = f->err.message[0] ? f->err.message : f->err.code;
		errs[k].attempts = f->err.attempts;
		errs[k].at = time(NULL);
		k++;
	}
	/* top-level entries of the job folder, for s3Urls */
	dfd = openat(c->data_fd, j->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0 && (d = fdopendir(dfd)) != NULL) {
		struct dirent *de;

		while ((de = readdir(d)) != NULL) {
			char **nt;

			if (de->d_name[0] == '.' || !(nt = realloc(tops, (n_tops + 1) * sizeof(*tops))))
				continue;
			tops = nt;
			if (asprintf(&tops[n_tops], "%s%s", de->d_name, de->d_type == DT_DIR ? "/" : "") < 0)
				continue;
			/* no s3Urls entry for what the job's row keeps out of S3 (screenshots/ ...) */
			if (j->have_policy && j->policy.have_row &&
			    !meta_policy_includes(&j->policy, tops[n_tops]))
				free(tops[n_tops]);
			else
				n_tops++;
		}
		closedir(d);
	} else if (dfd >= 0) {
		close(dfd);
	}
	st.uuid = j->uuid;
	st.folder = j->name;
	st.bucket = target_bucket(c, j);
	st.prefix = j->have_policy && j->policy.have_row && j->policy.prefix ? j->policy.prefix :
		    c->cfg->prefix;
	st.enabled = strcmp(st.status, "disabled") != 0;
	st.top_entries = (const char *const *)tops;
	st.n_top = n_tops;
	st.errors = errs;
	st.n_errors = k;
	meta_post_job(c->meta, &st);
	snprintf(j->posted, sizeof(j->posted), "%s", st.status);
	for (size_t i = 0; i < n_tops; i++)
		free(tops[i]);
	free(tops);
	free(errs);
}

/* Ask meta for each job's policy until its row is known (then every 30 s). Under c->lock.
 * Until then every tick: the answer is a lookup in meta's memory (meta itself limits how often
 * it reads the row), and a job's first uploads wait for it (make bench: polling once a second
 * held a completed job's uploads back by up to a second). */
static void refresh_policies(struct cache *c, uint64_t now)
{
	struct job *j, *tmp;

	if (!c->meta)
		return;
	HASH_ITER(hh, c->jobs, j, tmp) {
		struct meta_policy p;

		if (!j->uuid[0] || now - j->policy_at < (j->have_policy && j->policy.have_row ? 30000 : 50))
			continue;
		j->policy_at = now;
		if (meta_policy_get(c->meta, j->uuid, &p) != 0)
			continue;
		if (j->have_policy)
			meta_policy_release(&j->policy);
		j->policy = p;
		j->have_policy = true;
		if (p.have_row)
			j->dirty_status = true;
	}
}

/* ------------------------------------------------------------------ timer: settle, idle, retry, evict */

/* Bytes the cache may hold: S3JOBFS_CACHE_MAX_SIZE, or 90% of the cache filesystem. */
static uint64_t cache_limit(struct cache *c)
{
	struct statvfs vfs;

	if (c->cfg->cache_max_size)
		return c->cfg->cache_max_size;
	if (fstatvfs(c->data_fd, &vfs) < 0)
		return UINT64_MAX;
	return (uint64_t)vfs.f_blocks * vfs.f_frsize / 10 * 9;
}

static int lru_cmp(const void *a, const void *b)
{
	const struct cache_file *x = *(struct cache_file *const *)a, *y = *(struct cache_file *const *)b;

	return x->atime < y->atime ? -1 : x->atime > y->atime;
}

/* Evict clean unopened files, least recently used first, until `want_free` bytes are freed
 * (0: until under the limit). Returns bytes freed. Takes c->lock. */
static uint64_t evict(struct cache *c, uint64_t want_free)
{
	struct cache_file **v = NULL, *f, *tmp;
	uint64_t local = 0, remote = cache_rdir_bytes(c->rdir), freed = 0, excess, total;
	size_t n = 0, cap = 0;

	pthread_mutex_lock(&c->lock);
	HASH_ITER(hh, c->files, f, tmp)
		local += f->size;
	pthread_mutex_unlock(&c->lock);
	total = local + remote;
	if (want_free)
		excess = want_free;
	else if (total > cache_limit(c))
		excess = total - cache_limit(c);
	else
		return 0;
	/* sparse copies of S3 objects go first: they cost only a re-download */
	freed = cache_rdir_evict(c->rdir, remote > excess ? remote - excess : 0);
	if (freed >= excess)
		return freed;
	excess -= freed;
	pthread_mutex_lock(&c->lock);
	HASH_ITER(hh, c->files, f, tmp) {
		if (f->state != ST_CLEAN || f->refs > 0 || f->writers > 0 || f->custom_target)
			continue;
		if (n == cap) {
			struct cache_file **nv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof(*v));

			if (!nv)
				break;
			v = nv;
		}
		v[n++] = f;
	}
	if (n)
		qsort(v, n, sizeof(*v), lru_cmp);
	for (size_t i = 0; i < n && excess > 0; i++) {
		f = v[i];
		if (unlinkat(c->data_fd, f->path, 0) < 0 && errno != ENOENT)
			continue;
		log_msg(LOG_DEBUG, "evicted clean file", "path=%s bytes=%" PRIu64, f->path, f->size);
		excess -= f->size < excess ? f->size : excess;
		freed += f->size;
		fresh_drop_ancestors(c, f->path);
		rlist_invalidate(c, f->path);
		HASH_DEL(c->files, f);
		f->gone = true;
		if (f->refs == 0)
			file_free(f);
	}
	pthread_mutex_unlock(&c->lock);
	free(v);
	return freed;
}

static int do_complete(struct cache *c, struct job *j);

static void *timer_main(void *arg)
{
	struct cache *c = arg;
	uint64_t last_evict = 0;

	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		struct cache_file *f, *tmp;
		struct job *j, *jt;
		uint64_t now = now_ms();
		struct timespec ts;

		HASH_ITER(hh, c->files, f, tmp) {
			if (f->state == ST_DIRTY && now >= f->settle_at && upload_allowed(c, f))
				enqueue(c, f, false);
			else if (f->state == ST_FAILED && now >= f->retry_at && upload_allowed(c, f))
				enqueue(c, f, false);
		}
		refresh_policies(c, now);
		{
			struct job *pj, *pt;

			HASH_ITER(hh, c->jobs, pj, pt) {
				if (pj->dirty_status) {
					pj->dirty_status = false;
					job_post(c, pj);
				}
			}
		}
		if (c->cfg->idle_complete_seconds && c->cfg->upload_on_completion) {
			HASH_ITER(hh, c->jobs, j, jt) {
				if (!j->completed && j->last_write_ms &&
				    now - j->last_write_ms >= (uint64_t)c->cfg->idle_complete_seconds * 1000) {
					log_msg(LOG_INFO, "job idle, completing", "job=%s", j->name);
					do_complete(c, j);
				}
			}
		}
		{
			struct pending_del *d, *dt;

			HASH_ITER(hh, c->tombs, d, dt) {
				if (d->done_at && now - d->done_at > 2 * DIR_TTL_MS) {
					HASH_DEL(c->tombs, d);
					pending_del_free(d);
				}
			}
		}
		if (now - last_evict >= 1000) {
			last_evict = now;
			pthread_mutex_unlock(&c->lock);
			evict(c, 0);
			pthread_mutex_lock(&c->lock);
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&c->done_cond, &c->lock, &ts);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* ------------------------------------------------------------------ completion and fsync */

/* Mark j complete (journalled durably) and queue its closed files. Under c->lock. */
static int do_complete(struct cache *c, struct job *j)
{
	struct cache_file *f, *tmp;

	j->dirty_status = true;
	if (!j->completed) {
		j->completed = true;
		journal_add(c, true, 'J', 1, j->name);
		log_msg(LOG_INFO, "job complete", "job=%s", j->name);
	}
	HASH_ITER(hh, c->files, f, tmp)
		if (f->job == j && (f->state == ST_DIRTY || f->state == ST_FAILED) && upload_allowed(c, f))
			enqueue(c, f, false);
	return 0;
}

int cache_complete_job(struct cache *c, const char *name)
{
	struct job *j;
	struct stat st;
	int rc;

	if (strchr(name, '/') || !*name || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	if (fstatat(c->data_fd, name, &st, 0) < 0 || !S_ISDIR(st.st_mode))
		return -ENOENT;
	pthread_mutex_lock(&c->lock);
	HASH_FIND(hh, c->jobs, name, strlen(name), j);
	if (!j) {
		char *rel = NULL;

		if (asprintf(&rel, "%s/x", name) >= 0)
			j = job_get(c, rel, true);
		free(rel);
	}
	rc = j ? do_complete(c, j) : -ENOMEM;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int cache_complete_uuid(struct cache *c, const char *uuid)
{
	struct job *j, *tmp;
	int rc = -ENOENT;

	pthread_mutex_lock(&c->lock);
	HASH_ITER(hh, c->jobs, j, tmp) {
		if (strcasecmp(j->uuid, uuid) == 0) {
			if (!j->completed)
				log_msg(LOG_INFO, "job row reached a terminal status", "job=%s", j->name);
			rc = do_complete(c, j);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int cache_requeue_job(struct cache *c, const char *job, bool only_failed)
{
	struct cache_file *f, *tmp;
	struct job *j, *jt, *found = NULL;
	int n = 0;

	pthread_mutex_lock(&c->lock);
	HASH_ITER(hh, c->jobs, j, jt)
		if (!strcmp(j->name, job) || (j->uuid[0] && !strcasecmp(j->uuid, job)))
			found = j;
	if (!found) {
		pthread_mutex_unlock(&c->lock);
		return -ENOENT;
	}
	HASH_ITER(hh, c->files, f, tmp) {
		if (f->job != found || !upload_allowed_now(c, f) || !policy_allows(f))
			continue;
		if (f->state == ST_FAILED || (!only_failed && f->state == ST_DIRTY)) {
			f->attempts = 0;
			enqueue(c, f, false);
			n++;
		}
	}
	found->dirty_status = true;
	pthread_mutex_unlock(&c->lock);
	log_msg(LOG_INFO, "job queued for upload again", "job=%s files=%d only_failed=%s", job, n,
		only_failed ? "true" : "false");
	return n;
}

/* Wait until every file in v[] has up_gen >= gens[i] (uploaded) or failed. Under c->lock. */
static int wait_uploaded(struct cache *c, struct cache_file **v, const uint64_t *gens, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		struct cache_file *f = v[i];

		while (!f->gone && f->up_gen < gens[i] && f->state != ST_FAILED && !f->torn &&
		       !c->stopping)
			pthread_cond_wait(&c->done_cond, &c->lock);
		if (!f->gone && f->up_gen < gens[i]) {
			char et[300];

			log_msg(LOG_ERR, "fsync failed: upload failed", "path=%s error=\"%s\"", f->path,
				s3_error_text(&f->err, et, sizeof(et)));
			rc = -EIO;
		}
		file_unref(f);
	}
	return rc;
}

/* Upload a snapshot of a file that has writers open (fsync on an open file). */
static int snapshot_upload(struct cache *c, struct cache_file *f)
{
	char name[64], *rel, *key, *bucket = NULL, etag[72];
	struct s3_error e = { 0 };
	struct stat st;
	uint64_t gen;
	int src, snap, rc;
	bool custom;

	pthread_mutex_lock(&c->lock);
	if (f->torn) {
		pthread_mutex_unlock(&c->lock);
		return -EIO;
	}
	gen = f->gen;
	rel = strdup(f->path);
	target_of(c, f, &bucket, &key, &custom);
	if (key)
		cancel_delete(c, bucket, key);
	pthread_mutex_unlock(&c->lock);
	if (!rel || !key) {
		rc = -ENOMEM;
		goto out;
	}
	src = openat(c->data_fd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (src < 0) {
		rc = -errno;
		goto out;
	}
	if (fstat(src, &st) < 0) {
		rc = -errno;
		close(src);
		goto out;
	}
	snap = copy_to_tmp(c, src, name, sizeof(name), true);
	close(src);
	if (snap < 0) {
		rc = snap;
		goto out;
	}
	unlinkat(c->tmp_fd, name, 0);
	rc = put_version(c, snap, &st, bucket, key, etag, NULL, &e);
	close(snap);
	pthread_mutex_lock(&c->lock);
	if (rc == 0) {
		set_uploaded(c, f, &bucket, &key, custom);
		if (f->up_gen < gen)
			f->up_gen = gen;
		c->totals.uploads_ok++;
		c->totals.bytes_uploaded += (uint64_t)st.st_size;
		log_msg(LOG_INFO, "s3 upload done", "key=%s bytes=%" PRIu64 " reason=fsync", f->up_key,
			(uint64_t)st.st_size);
	} else {
		char et[300];

		f->err = e;
		log_msg(LOG_ERR, "s3 upload failed", "path=%s reason=fsync error=\"%s\"", rel,
			s3_error_text(&e, et, sizeof(et)));
	}
	pthread_cond_broadcast(&c->done_cond);
	pthread_mutex_unlock(&c->lock);
out:
	free(rel);
	free(key);
	free(bucket);
	return rc ? -EIO : 0;
}

int cache_fsync(struct cache *c, struct cache_handle *h)
{
	struct cache_file *f = h->file;
	uint64_t gen;
	bool open_writers;

	if (!f || !c->cfg->s3_enabled)
		return h->fd >= 0 && h->writable && fdatasync(h->fd) < 0 ? -errno : 0;
	if (h->writable && fdatasync(h->fd) < 0)
		return -errno;
	pthread_mutex_lock(&c->lock);
	if (f->gone || f->up_gen >= f->gen) {
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	if (f->torn) {
		pthread_mutex_unlock(&c->lock);
		return -EIO;
	}
	gen = f->gen;
	open_writers = f->writers > 0;
	if (!open_writers && f->state != ST_UPLOADING && f->state != ST_QUEUED)
		enqueue(c, f, true);
	else if (!open_writers && f->state == ST_QUEUED) {
		dequeue(c, f);
		enqueue(c, f, true);
	}
	pthread_mutex_unlock(&c->lock);
	if (open_writers)
		return snapshot_upload(c, f);
	pthread_mutex_lock(&c->lock);
	f->refs++;
	{
		int rc = wait_uploaded(c, &f, &gen, 1);

		pthread_mutex_unlock(&c->lock);
		return rc;
	}
}

int cache_fsync_dir(struct cache *c, const char *rel)
{
	struct cache_file **v = NULL, *f, *tmp;
	uint64_t *gens = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (!c->cfg->s3_enabled)
		return 0;
	pthread_mutex_lock(&c->lock);
	if (*rel && !strchr(rel, '/')) {
		struct job *j;

		HASH_FIND(hh, c->jobs, rel, strlen(rel), j);
		if (j)
			do_complete(c, j);
	}
	HASH_ITER(hh, c->files, f, tmp) {
		if (!under(f->path, rel) || f->up_gen >= f->gen)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = realloc(v, cap * sizeof(*v));
			gens = realloc(gens, cap * sizeof(*gens));
			if (!v || !gens) {
				rc = -ENOMEM;
				break;
			}
		}
		f->refs++;
		v[n] = f;
		gens[n++] = f->gen;
		if ((f->state == ST_DIRTY || f->state == ST_FAILED) && upload_allowed_now(c, f))
			enqueue(c, f, true);
	}
	pthread_mutex_unlock(&c->lock);
	/* files still open for writing: upload a snapshot of each now */
	for (size_t i = 0; i < n && rc == 0; i++) {
		bool w;

		pthread_mutex_lock(&c->lock);
		w = v[i]->writers > 0 && v[i]->up_gen < gens[i];
		pthread_mutex_unlock(&c->lock);
		if (w && snapshot_upload(c, v[i]) != 0)
			rc = -EIO;
	}
	pthread_mutex_lock(&c->lock);
	{
		int r2 = wait_uploaded(c, v, gens, n);

		rc = rc ? rc : r2;
	}
	/* and the deletes under it */
	while (!c->stopping) {
		struct pending_del *d;
		bool any = false;
		char *p = key_of(c, rel);

		struct pending_del *dt;

		HASH_ITER(hh, c->tombs, d, dt)
			any |= !d->done_at && p && strncmp(d->key, p, strlen(p)) == 0;
		free(p);
		if (!any)
			break;
		pthread_cond_wait(&c->done_cond, &c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	free(v);
	free(gens);
	return rc;
}

/* ------------------------------------------------------------------ namespace */

int cache_getattr(struct cache *c, const char *rel, struct stat *st)
{
	int rc;

	if (*rel == '\0') {
		if (fstat(c->data_fd, st) < 0)
			return -errno;
		user_mode_fd(c->data_fd, st);
		return 0;
	}
	if (fstatat(c->data_fd, rel, st, AT_SYMLINK_NOFOLLOW) == 0) {
		user_mode_at(c, rel, st);
		return 0;
	}
	if (errno != ENOENT)
		return -errno;
	pthread_mutex_lock(&c->lock);
	rc = remote_lookup(c, rel, st);
	pthread_mutex_unlock(&c->lock);
	if (rc && rc != -ENOENT && staged_parent(c, rel))
		rc = -ENOENT;	/* S3 unreachable: the writer goes on with what is staged */
	return rc;
}

int cache_readdir(struct cache *c, const char *rel, cache_dirent_fn fn, void *ctx)
{
	struct rlist *l = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int dfd, rc = 0;
	DIR *d;

	dfd = openat(c->data_fd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 && errno != ENOENT)
		return -errno;
	if (dfd >= 0) {
		struct dirent *de;

		d = fdopendir(dfd);
		if (!d) {
			close(dfd);
			return -errno;
		}
		while ((de = readdir(d)) != NULL) {
			struct stat st;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
				char *full = NULL;

				if (asprintf(&full, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >= 0)
					user_mode_at(c, full, &st);
				free(full);
			}
			if (n == cap) {
				char **nn = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*names));

				if (!nn) {
					rc = -ENOMEM;
					break;
				}
				names = nn;
			}
			names[n++] = strdup(de->d_name);
			if (fn(ctx, de->d_name, &st))
				break;
		}
		closedir(d);
	}
	pthread_mutex_lock(&c->lock);
	if (rc == 0) {
		int lr = rlist_get(c, rel, &l);

		/* S3 unreachable: a staged directory still lists what is staged (the writer must
		 * not depend on S3); one that exists only in S3 cannot be listed */
		if (lr && dfd < 0)
			rc = -EIO;
		else if (lr)
			log_msg(LOG_WARNING, "listing shows staged files only: s3 listing failed",
				"dir=%s", rel);
	}
	if (rc == 0 && l) {
		for (size_t i = 0; i < l->n; i++) {
			struct stat st;
			bool local = false;
			char *full = NULL;

			for (size_t k = 0; k < n && !local; k++)
				local = names[k] && !strcmp(names[k], l->e[i].name);
			if (local)
				continue;
			if (!l->e[i].is_dir) {
				if (asprintf(&full, "%s%s%s", rel, *rel ? "/" : "", l->e[i].name) < 0)
					break;
				local = tombstoned(c, full);
				free(full);
				if (local)
					continue;
			}
			remote_stat(&l->e[i], &st);
			if (fn(ctx, l->e[i].name, &st))
				break;
		}
	} else if (rc == 0 && dfd < 0) {
		rc = -ENOENT;
	}
	pthread_mutex_unlock(&c->lock);
	for (size_t k = 0; k < n; k++)
		free(names[k]);
	free(names);
	return rc;
}

int cache_mkdir(struct cache *c, const char *rel, mode_t mode)
{
	struct stat st;
	int rc;

	if (c->read_only)
		return -EROFS;
	pthread_mutex_lock(&c->lock);
	rc = remote_lookup(c, rel, &st);
	pthread_mutex_unlock(&c->lock);
	if (rc == 0)
		return -EEXIST;
	{
		bool fresh = rc == -ENOENT;	/* else S3 is unreachable: make it, not fresh */

		rc = make_parents(c, rel);
		if (rc)
			return rc;
		if (mkdirat(c->data_fd, rel, STAGED_DIR) < 0)
			return -errno;
		rc = set_user_mode_at(c, rel, mode);
		if (rc)
			return rc;
		pthread_mutex_lock(&c->lock);
		if (fresh)
			fresh_add(c, rel);
		if (!strchr(rel, '/')) {	/* a job folder: ask for its row now */
			char *x = NULL;

			if (asprintf(&x, "%s/x", rel) >= 0)
				job_get(c, x, true);
			free(x);
		}
		pthread_mutex_unlock(&c->lock);
	}
	return 0;
}

int cache_rmdir(struct cache *c, const char *rel)
{
	struct rlist *l = NULL;
	int rc = 0;

	if (c->read_only)
		return -EROFS;
	pthread_mutex_lock(&c->lock);
	if (rlist_get(c, rel, &l) == 0 && l) {
		for (size_t i = 0; i < l->n && rc == 0; i++) {
			char *full = NULL;

			if (asprintf(&full, "%s/%s", rel, l->e[i].name) < 0)
				break;
			if (l->e[i].is_dir || !tombstoned(c, full))
				rc = -ENOTEMPTY;
			free(full);
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (rc)
		return rc;
	if (unlinkat(c->data_fd, rel, AT_REMOVEDIR) < 0)
		return errno == ENOENT && l ? 0 : -errno;
	pthread_mutex_lock(&c->lock);
	fresh_drop(c, rel);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int cache_unlink(struct cache *c, const char *rel)
{
	struct cache_file *f;
	struct stat st;
	bool local;
	int rc = 0;

	if (c->read_only)
		return -EROFS;
	local = fstatat(c->data_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
	pthread_mutex_lock(&c->lock);
	if (!local && remote_lookup(c, rel, &st) != 0) {
		rc = -ENOENT;
		goto out;
	}
	if (local && unlinkat(c->data_fd, rel, 0) < 0) {
		rc = -errno;
		goto out;
	}
	f = file_find(c, rel);
	{
		char *k = key_of(c, rel);
		bool known = f && f->up_key && k && !strcmp(f->up_key, k);

		if (f) {
			HASH_DEL(c->files, f);
			dequeue(c, f);
			f->gone = true;
			if (f->up_key)
				delete_key(c, f->up_bucket, f->up_key);
			if (f->refs == 0)
				file_free(f);
		}
		/* the object may exist though this session never uploaded it: a remote-only file,
		 * or a local file created over an object the parent listing shows */
		if (k && !known) {
			const char *slash = strrchr(rel, '/');
			struct rlist *l;

			HASH_FIND(hh, c->rlists, rel, slash ? (size_t)(slash - rel) : 0, l);
			if (!local || (l && rlist_find(l, slash ? slash + 1 : rel)))
				delete_key(c, NULL, k);
		}
		free(k);
	}
	rlist_invalidate(c, rel);
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Rename the staged nodes under `from` (a file or a directory) to `to`. Under c->lock. */
static void rename_nodes(struct cache *c, const char *from, const char *to)
{
	struct cache_file *f, *tmp, *moved = NULL;
	size_t fl = strlen(from);

	HASH_ITER(hh, c->files, f, tmp) {
		char *np = NULL;

		if (!under(f->path, from))
			continue;
		if (asprintf(&np, "%s%s", to, f->path + fl) < 0)
			continue;
		HASH_DEL(c->files, f);
		if (f->up_key)
			delete_key(c, f->up_bucket, f->up_key);
		free(f->up_key);
		free(f->up_bucket);
		f->up_key = NULL;
		f->up_bucket = NULL;
		free(f->path);
		f->path = np;
		dequeue(c, f);		/* before the job changes: it counts its queued files */
		f->job = job_get(c, np, true);
		file_changed(c, f);
		f->hh.next = moved;	/* collect, re-add after the iteration */
		moved = f;
	}
	while (moved) {
		struct cache_file *next = moved->hh.next;
		struct cache_file *old = file_find(c, moved->path);

		if (old) {		/* replaced by the rename */
			HASH_DEL(c->files, old);
			dequeue(c, old);
			old->gone = true;
			if (old->refs == 0)
				file_free(old);
		}
		HASH_ADD_KEYPTR(hh, c->files, moved->path, strlen(moved->path), moved);
		file_settle(c, moved);
		moved = next;
	}
}

/* Copy every object under from's key prefix that is not staged to to's (rename of remote
 * data). No lock held; blocks. */
static int rename_remote(struct cache *c, const char *from, const char *to, bool is_dir)
{
	char *fk = key_of(c, from), *tk = key_of(c, to), *token = NULL, *prefix = NULL;
	int rc = 0;

	if (!fk || !tk) {
		rc = -ENOMEM;
		goto out;
	}
	if (!is_dir) {
		struct s3_error e;

		rc = c->store->copy(c->store->ctx, NULL, fk, NULL, tk, &e);
		if (rc == 0) {
			pthread_mutex_lock(&c->lock);
			delete_key(c, NULL, fk);
			pthread_mutex_unlock(&c->lock);
		}
		goto out;
	}
	if (asprintf(&prefix, "%s/", fk) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	do {
		struct s3_list_page pg;
		struct s3_error e;

		rc = c->store->list(c->store->ctx, NULL, prefix, NULL, token, &pg, &e);
		if (rc)
			break;
		for (size_t i = 0; i < pg.n_objects && rc == 0; i++) {
			const char *k = pg.objects[i].key;
			char *nk = NULL;
			struct stat st;
			const char *relk = k + strlen(c->cfg->prefix);

			/* staged locally (moved by the local rename): it will be re-uploaded */
			if (asprintf(&nk, "%s%s", tk, k + strlen(fk)) < 0) {
				rc = -ENOMEM;
				break;
			}
			if (fstatat(c->data_fd, nk + strlen(c->cfg->prefix), &st, AT_SYMLINK_NOFOLLOW) != 0) {
				rc = c->store->copy(c->store->ctx, NULL, k, NULL, nk, &e);
			}
			if (rc == 0) {
				pthread_mutex_lock(&c->lock);
				delete_key(c, NULL, k);
				pthread_mutex_unlock(&c->lock);
			}
			(void)relk;
			free(nk);
		}
		free(token);
		token = pg.truncated && pg.next_token ? strdup(pg.next_token) : NULL;
		s3_list_page_release(&pg);
	} while (token && rc == 0);
out:
	free(fk);
	free(tk);
	free(prefix);
	free(token);
	return rc;
}

int cache_rename(struct cache *c, const char *from, const char *to, unsigned int flags)
{
	struct stat st, rst;
	bool local, remote = false;
	int rc;

	if (c->read_only)
		return -EROFS;
	local = fstatat(c->data_fd, from, &st, AT_SYMLINK_NOFOLLOW) == 0;
	pthread_mutex_lock(&c->lock);
	if (remote_lookup(c, from, &rst) == 0)
		remote = true;
	pthread_mutex_unlock(&c->lock);
	if (!local && !remote)
		return -ENOENT;
	if (flags & RENAME_NOREPLACE) {
		struct stat tst;

		if (cache_getattr(c, to, &tst) == 0)
			return -EEXIST;
	}
	if (flags & ~RENAME_NOREPLACE)
		return -EINVAL;
	rc = make_parents(c, to);
	if (rc)
		return rc;
	if (local && renameat(c->data_fd, from, c->data_fd, to) < 0)
		return -errno;
	if (!local && remote && S_ISDIR(rst.st_mode) && (rc = mkdir_staged(c, to, 0755)) < 0)
		return rc;
	pthread_mutex_lock(&c->lock);
	{
		char *tk = key_of(c, to);
		struct pending_del *d = NULL;

		/* the target name is replaced: its old object must go unless re-uploaded */
		if (tk)
			HASH_FIND_STR(c->tombs, tk, d);
		free(tk);
	}
	rename_nodes(c, from, to);
	fresh_drop(c, from);
	fresh_drop(c, to);
	rlist_invalidate(c, from);
	rlist_invalidate(c, to);
	pthread_mutex_unlock(&c->lock);
	/* objects only in S3 (evicted, or from another session) are copied server-side */
	/* objects only in S3 (evicted, or from another session) are copied server-side; a staged
	 * file is simply uploaded again under its new name (rename_nodes) */
	if (remote && c->cfg->s3_enabled && (S_ISDIR(rst.st_mode) || !local))
		rc = rename_remote(c, from, to, S_ISDIR(rst.st_mode));
	pthread_mutex_lock(&c->lock);
	{
		struct rlist *l, *lt;

		HASH_ITER(hh, c->rlists, l, lt) {
			HASH_DEL(c->rlists, l);
			rlist_free(l);
		}
		c->rlist_epoch++;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int cache_symlink(struct cache *c, const char *target, const char *rel)
{
	struct cache_file *f;
	int rc;

	if (c->read_only)
		return -EROFS;
	rc = make_parents(c, rel);
	if (rc)
		return rc;
	if (symlinkat(target, c->data_fd, rel) < 0)
		return -errno;
	pthread_mutex_lock(&c->lock);
	f = file_find(c, rel);
	if (!f)
		f = file_new(c, rel);
	if (f) {
		file_changed(c, f);
		file_settle(c, f);
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int cache_readlink(struct cache *c, const char *rel, char *buf, size_t size)
{
	ssize_t n = readlinkat(c->data_fd, rel, buf, size - 1);

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

/* Make sure rel is staged (download a remote-only file) and note a metadata change. */
static int touch_staged(struct cache *c, const char *rel, bool stage)
{
	struct stat st;
	struct cache_file *f;

	if (c->read_only)
		return -EROFS;
	if (stage && fstatat(c->data_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		struct stat rst;
		int rc;

		pthread_mutex_lock(&c->lock);
		rc = remote_lookup(c, rel, &rst);
		pthread_mutex_unlock(&c->lock);
		if (rc)
			return rc;
		if (S_ISDIR(rst.st_mode))
			return mkdir_staged(c, rel, 0755);
		rc = stage_remote(c, rel, (uint64_t)rst.st_size);
		if (rc)
			return rc;
	}
	if (stage)
		return 0;
	pthread_mutex_lock(&c->lock);
	f = file_find(c, rel);
	if (f) {
		file_changed(c, f);
		if (f->writers == 0)
			file_settle(c, f);
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int cache_truncate(struct cache *c, const char *rel, off_t size)
{
	struct cache_handle *h;
	int rc = cache_open_handle(c, rel, O_WRONLY, 0, &h);

	if (rc)
		return rc;
	rc = cache_ftruncate(c, h, size);
	cache_release(c, h);
	return rc;
}

int cache_chmod(struct cache *c, const char *rel, mode_t mode)
{
	int rc = touch_staged(c, rel, true);

	if (rc)
		return rc;
	{
		struct stat st;

		if (fstatat(c->data_fd, *rel ? rel : ".", &st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		rc = S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) ? set_user_mode_at(c, rel, mode) :
		     fchmodat(c->data_fd, *rel ? rel : ".", mode, 0) < 0 ? -errno : 0;
		if (rc)
			return rc;
	}
	return touch_staged(c, rel, false);
}

int cache_chown(struct cache *c, const char *rel, uid_t uid, gid_t gid)
{
	int rc = touch_staged(c, rel, true);

	if (rc)
		return rc;
	if (fchownat(c->data_fd, *rel ? rel : ".", uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return touch_staged(c, rel, false);
}

int cache_utimens(struct cache *c, const char *rel, const struct timespec tv[2])
{
	int rc = touch_staged(c, rel, true);

	if (rc)
		return rc;
	if (utimensat(c->data_fd, *rel ? rel : ".", tv, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return touch_staged(c, rel, false);
}

/* ------------------------------------------------------------------ start-up: replay and scan */

struct replay {
	struct clean_rec *clean;	/* by path */
	struct pending_del *dels;	/* by key, in order via link */
	struct del_queue order;
	struct open_mpu *mpus;
	char **jobs;
	size_t n_jobs;
};

static void replay_line(struct replay *r, char *line)
{
	char *f[8];
	int n = 0;

	for (char *p = line; n < 8;) {
		f[n++] = p;
		p = strchr(p, '\t');
		if (!p)
			break;
		*p++ = '\0';
	}
	for (int i = 1; i < n; i++)
		if (unesc(f[i]) < 0)
			return;
	switch (f[0][0]) {
	case 'C': {
		struct clean_rec *cr;

		if (n != 7 && n != 8)
			return;
		HASH_FIND_STR(r->clean, f[1], cr);
		if (!cr) {
			cr = calloc(1, sizeof(*cr));
			if (!cr || !(cr->path = strdup(f[1]))) {
				free(cr);
				return;
			}
			HASH_ADD_KEYPTR(hh, r->clean, cr->path, strlen(cr->path), cr);
		}
		cr->size = strtoull(f[2], NULL, 10);
		cr->mtime_ns = strtoull(f[3], NULL, 10);
		cr->ctime_ns = strtoull(f[4], NULL, 10);
		cr->ino = strtoull(f[5], NULL, 10);
		free(cr->key);
		free(cr->bucket);
		cr->key = strdup(f[6]);
		cr->bucket = n == 8 ? strdup(f[7]) : NULL;
		return;
	}
	case 'D': case 'd': {
		struct pending_del *d;
		const char *bucket = n == 3 ? f[2] : NULL;
		char *h;

		if ((n != 2 && n != 3) || !(h = obj_hkey(bucket, f[1])))
			return;
		HASH_FIND_STR(r->dels, h, d);
		if (f[0][0] == 'd' || d) {
			if (d && f[0][0] == 'd') {
				HASH_DEL(r->dels, d);
				TAILQ_REMOVE(&r->order, d, link);
				pending_del_free(d);
			}
			free(h);
			return;
		}
		d = calloc(1, sizeof(*d));
		if (!d || !(d->key = strdup(f[1])) || (bucket && !(d->bucket = strdup(bucket)))) {
			if (d)
				pending_del_free(d);
			free(h);
			return;
		}
		d->hkey = h;
		HASH_ADD_KEYPTR(hh, r->dels, d->hkey, strlen(d->hkey), d);
		TAILQ_INSERT_TAIL(&r->order, d, link);
		return;
	}
	case 'J': {
		char **nj;

		if (n != 2 || !(nj = realloc(r->jobs, (r->n_jobs + 1) * sizeof(*nj))))
			return;
		r->jobs = nj;
		r->jobs[r->n_jobs] = strdup(f[1]);
		if (r->jobs[r->n_jobs])
			r->n_jobs++;
		return;
	}
	case 'M': case 'm': {
		struct open_mpu **pp, *m;

		if (n != 3)
			return;
		for (pp = &r->mpus; *pp; pp = &(*pp)->next)
			if (!strcmp((*pp)->upload_id, f[2]))
				break;
		if (f[0][0] == 'm') {
			if (*pp) {
				m = *pp;
				*pp = m->next;
				free(m->key);
				free(m->upload_id);
				free(m);
			}
			return;
		}
		if (*pp || !(m = calloc(1, sizeof(*m))))
			return;
		m->key = strdup(f[1]);
		m->upload_id = strdup(f[2]);
		m->next = r->mpus;
		r->mpus = m;
		return;
	}
	}
}

static int replay_journal(struct cache *c, struct replay *r)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int fd = openat(c->dir_fd, "journal", O_RDONLY | O_CLOEXEC);

	TAILQ_INIT(&r->order);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -errno;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n')
			break;		/* a torn last line from a crash: ignore it */
		line[n - 1] = '\0';
		replay_line(r, line);
	}
	free(line);
	fclose(f);
	return 0;
}

/* Walk data/ (dirfd, relative prefix) and make a node for every file and symlink. */
static int scan_dir(struct cache *c, struct replay *r, int dfd, const char *prefix)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		close(dfd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL && rc == 0) {
		struct stat st;
		char *rel = NULL;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (asprintf(&rel, "%s%s%s", prefix, *prefix ? "/" : "", de->d_name) < 0) {
			rc = -ENOMEM;
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

			if (sub >= 0)
				rc = scan_dir(c, r, sub, rel);
		} else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
			struct clean_rec *cr;
			struct cache_file *f = file_new(c, rel);

			if (!f) {
				rc = -ENOMEM;
			} else {
				HASH_FIND_STR(r->clean, rel, cr);
				f->size = (uint64_t)st.st_size;
				if (cr && cr->size == (uint64_t)st.st_size &&
				    cr->mtime_ns == ts_ns(&st.st_mtim) &&
				    cr->ctime_ns == ts_ns(&st.st_ctim) && cr->ino == (uint64_t)st.st_ino) {
					f->state = ST_CLEAN;
					f->up_gen = f->gen;
					/* its ledger row may have died with the last daemon */
					if (f->job && f->job->uuid[0] && c->meta)
						meta_post_file(c->meta, f->job->uuid,
							       rel + strlen(f->job->name) + 1,
							       cr->bucket ? cr->bucket : c->cfg->bucket,
							       cr->key, f->size, NULL, NULL, "uploaded",
							       0, NULL);
				}
				if (cr) {
					char *dk = key_of(c, rel);

					f->up_key = strdup(cr->key);
					f->up_bucket = cr->bucket ? strdup(cr->bucket) : NULL;
					f->custom_target = cr->bucket || !dk || strcmp(dk, cr->key) != 0;
					free(dk);
				}
			}
		}
		free(rel);
	}
	closedir(d);
	return rc;
}

/* Rewrite the journal with only what is still true, durably, then keep it open for appends. */
static int compact_journal(struct cache *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	struct cache_file *f, *tmp;
	struct pending_del *d;
	struct job *j, *jt;
	struct open_mpu *mp;
	int fd, rc = 0;

	if (!m)
		return -ENOMEM;
	HASH_ITER(hh, c->files, f, tmp) {
		struct stat st;
		char size[24], mt[24], ct[24], ino[24];

		if (f->state != ST_CLEAN || !f->up_key ||
		    fstatat(c->data_fd, f->path, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		snprintf(size, sizeof(size), "%" PRIu64, (uint64_t)st.st_size);
		snprintf(mt, sizeof(mt), "%" PRIu64, ts_ns(&st.st_mtim));
		snprintf(ct, sizeof(ct), "%" PRIu64, ts_ns(&st.st_ctim));
		snprintf(ino, sizeof(ino), "%" PRIu64, (uint64_t)st.st_ino);
		fputs("C\t", m);
		esc(m, f->path);
		fprintf(m, "\t%s\t%s\t%s\t%s\t", size, mt, ct, ino);
		esc(m, f->up_key);
		if (f->up_bucket) {
			fputc('\t', m);
			esc(m, f->up_bucket);
		}
		fputc('\n', m);
	}
	TAILQ_FOREACH(d, &c->dels, link) {
		fputs("D\t", m);
		esc(m, d->key);
		if (d->bucket) {
			fputc('\t', m);
			esc(m, d->bucket);
		}
		fputc('\n', m);
	}
	HASH_ITER(hh, c->jobs, j, jt) {
		if (!j->completed)
			continue;
		fputs("J\t", m);
		esc(m, j->name);
		fputc('\n', m);
	}
	for (mp = c->mpus; mp; mp = mp->next) {
		fputs("M\t", m);
		esc(m, mp->key);
		fputc('\t', m);
		esc(m, mp->upload_id);
		fputc('\n', m);
	}
	fclose(m);
	fd = openat(c->dir_fd, "journal.new", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd) < 0) {
		rc = -errno;
		goto out;
	}
	close(fd);
	fd = -1;
	if (renameat(c->dir_fd, "journal.new", c->dir_fd, "journal") < 0 || fsync(c->dir_fd) < 0) {
		rc = -errno;
		goto out;
	}
	c->journal_fd = openat(c->dir_fd, "journal", O_WRONLY | O_APPEND | O_CLOEXEC);
	if (c->journal_fd < 0)
		rc = -errno;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

static void replay_free(struct replay *r)
{
	struct clean_rec *cr, *tmp;

	HASH_ITER(hh, r->clean, cr, tmp) {
		HASH_DEL(r->clean, cr);
		free(cr->path);
		free(cr->key);
		free(cr->bucket);
		free(cr);
	}
	for (size_t i = 0; i < r->n_jobs; i++)
		free(r->jobs[i]);
	free(r->jobs);
}

/* Remove everything in a directory (tmp/ at start). */
static void empty_dir(int dfd)
{
	DIR *d = fdopendir(dup(dfd));
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dfd, de->d_name, 0);
	closedir(d);
}

static int open_subdir(int dir_fd, const char *name, int *out)
{
	if (mkdirat(dir_fd, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	*out = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return *out < 0 ? -errno : 0;
}

int cache_open(struct cache **out, const struct cache_params *p)
{
	struct cache *c = calloc(1, sizeof(*c));
	struct replay r = { 0 };
	char pid[32], rdir[4096];
	int rc = 0;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->cfg = p->cfg;
	c->store = p->store;
	c->meta = p->meta;
	c->read_only = p->read_only;
	c->dir_fd = c->data_fd = c->tmp_fd = c->lock_fd = c->journal_fd = -1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->jlock, NULL);
	pthread_cond_init(&c->work_cond, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_cond_init(&c->done_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	TAILQ_INIT(&c->queue);
	TAILQ_INIT(&c->dels);
	c->dir = strdup(p->dir);
	if (!c->dir) {
		rc = -ENOMEM;
		goto out;
	}
	if (mkdir(p->dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		log_msg(LOG_ERR, "cannot create cache dir", "dir=%s error=\"%s\"", p->dir, strerror(errno));
		goto out;
	}
	chmod(p->dir, 0700);
	c->dir_fd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->dir_fd < 0) {
		rc = -errno;
		goto out;
	}
	c->lock_fd = openat(c->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (c->lock_fd < 0) {
		rc = -errno;
		goto out;
	}
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto out;
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(c->lock_fd, 0) < 0 || pwrite(c->lock_fd, pid, strlen(pid), 0) < 0) {
		/* the pid is informational only */
	}
	rc = open_subdir(c->dir_fd, "data", &c->data_fd);
	if (rc == 0) {		/* the mount's root: 0755 for programs, owner-only on disk */
		char v[16];

		if (fgetxattr(c->data_fd, MODE_XATTR, v, sizeof(v)) < 0)
			set_user_mode_fd(c->data_fd, 0755);	/* no xattrs: chmod 0755 */
		if (fgetxattr(c->data_fd, MODE_XATTR, v, sizeof(v)) >= 0)
			fchmod(c->data_fd, STAGED_DIR);
	}
	if (rc == 0)
		rc = open_subdir(c->dir_fd, "tmp", &c->tmp_fd);
	if (rc)
		goto out;
	empty_dir(c->tmp_fd);
	snprintf(rdir, sizeof(rdir), "%s/remote", p->dir);
	rc = cache_rdir_create(&c->rdir, rdir, p->store, 0);
	if (rc)
		goto out;
	rc = replay_journal(c, &r);
	if (rc)
		goto out;
	rc = scan_dir(c, &r, dup(c->data_fd), "");
	if (rc)
		goto out;
	for (size_t i = 0; i < r.n_jobs; i++) {
		char *rel = NULL;
		struct job *j;

		if (asprintf(&rel, "%s/x", r.jobs[i]) < 0)
			continue;
		j = job_get(c, rel, true);
		if (j)
			j->completed = true;
		free(rel);
	}
	while (!TAILQ_EMPTY(&r.order)) {
		struct pending_del *d = TAILQ_FIRST(&r.order);

		TAILQ_REMOVE(&r.order, d, link);
		HASH_DEL(r.dels, d);
		HASH_ADD_KEYPTR(hh, c->tombs, d->hkey, strlen(d->hkey), d);
		TAILQ_INSERT_TAIL(&c->dels, d, link);
	}
	c->mpus = r.mpus;
	r.mpus = NULL;
	rc = compact_journal(c);
	if (rc)
		goto out;
	{
		struct cache_stats st;

		cache_get_stats(c, &st);
		log_msg(LOG_INFO, "cache opened", "dir=%s dirty=%" PRIu64 " clean=%" PRIu64
			" deletes=%" PRIu64, p->dir, st.files_dirty + st.files_failed, st.files_clean,
			st.deletes_pending);
	}
	*out = c;
	c = NULL;
out:
	replay_free(&r);
	if (c)
		cache_close(c);
	return rc;
}

int cache_start(struct cache *c)
{
	struct cache_file *f, *tmp;
	int n = c->cfg->upload_concurrency > 0 ? c->cfg->upload_concurrency : 1;

	pthread_mutex_lock(&c->lock);
	HASH_ITER(hh, c->files, f, tmp)
		if (f->state == ST_DIRTY && upload_allowed(c, f))
			enqueue(c, f, false);
	pthread_mutex_unlock(&c->lock);
	c->workers = calloc((size_t)n, sizeof(*c->workers));
	if (!c->workers)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		if (pthread_create(&c->workers[i], NULL, worker_main, c) != 0)
			break;
		c->n_workers++;
	}
	if (c->n_workers == 0 || pthread_create(&c->timer, NULL, timer_main, c) != 0)
		return -EAGAIN;
	c->started = true;
	return 0;
}

/* Files that would upload now: queued, uploading, or closed dirty files that are allowed. */
static int pending_count(struct cache *c)
{
	struct cache_file *f, *tmp;
	int n = 0;

	struct pending_del *d;

	HASH_ITER(hh, c->files, f, tmp)
		if (f->state == ST_QUEUED || f->state == ST_UPLOADING ||
		    (f->state == ST_DIRTY && upload_allowed(c, f)))
			n++;
	TAILQ_FOREACH(d, &c->dels, link)
		n++;
	return n;
}

/* After a drain: log what stays in the cache for the next mount, and why (the first files
 * one by one, then a count). Under c->lock. */
static void log_left(struct cache *c)
{
	struct cache_file *f, *tmp;
	unsigned shown = 0, total = 0;

	HASH_ITER(hh, c->files, f, tmp) {
		const char *why;
		char q[300];

		if (f->state == ST_CLEAN)
			continue;
		why = f->state == ST_FAILED ? "upload failed" :
		      f->state == ST_QUEUED || f->state == ST_UPLOADING ? "drain timed out" :
		      f->writers ? "still open" : f->torn ? "a write failed (torn)" :
		      !c->cfg->s3_enabled ? "S3_ENABLED=false" :
		      policy_excludes(f) ? "excluded by the job's settings" :
		      f->job && c->cfg->upload_on_completion && !f->job->completed ?
		      "job not completed" : "not uploaded yet";
		if (policy_excludes(f))
			continue;	/* stays local by design, not "left" */
		total++;
		if (shown < 20) {
			shown++;
			log_msg(LOG_INFO, "s3 upload left for the next mount", "path=%s reason=\"%s\"",
				log_quote(q, sizeof(q), f->path), why);
		}
	}
	if (total > shown)
		log_msg(LOG_INFO, "s3 uploads left for the next mount", "more=%u", total - shown);
	if (total)
		log_msg(LOG_WARNING, "files not in S3 stay in the cache", "files=%u", total);
}

int cache_drain(struct cache *c, int timeout_s)
{
	struct timespec deadline;
	int n;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_s;
	pthread_mutex_lock(&c->lock);
	/* settle delays end now, and so do waits for a job's row: everything closed goes */
	{
		struct cache_file *f, *tmp;
		struct job *j, *jt;

		HASH_ITER(hh, c->jobs, j, jt)
			j->policy_wanted = false;

		HASH_ITER(hh, c->files, f, tmp)
			if (f->state == ST_DIRTY && upload_allowed(c, f))
				enqueue(c, f, false);
	}
	while ((n = pending_count(c)) > 0 && c->started) {
		if (pthread_cond_timedwait(&c->done_cond, &c->lock, &deadline) == ETIMEDOUT)
			break;
	}
	n = pending_count(c);
	log_left(c);
	pthread_mutex_unlock(&c->lock);
	return n;
}

void cache_close(struct cache *c)
{
	struct cache_file *f, *tmp;
	struct job *j, *jt;
	struct pending_del *d, *dt;
	struct rlist *l, *lt;

	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	HASH_ITER(hh, c->jobs, j, jt)
		job_post(c, j);		/* the last word on each job, for PostgreSQL */
	c->stopping = true;
	pthread_cond_broadcast(&c->work_cond);
	pthread_cond_broadcast(&c->done_cond);
	pthread_mutex_unlock(&c->lock);
	/* workers finish the request in flight (bounded by S3_UPLOAD_TIMEOUT) */
	for (int i = 0; i < c->n_workers; i++)
		pthread_join(c->workers[i], NULL);
	if (c->started)
		pthread_join(c->timer, NULL);
	free(c->workers);
	HASH_ITER(hh, c->files, f, tmp) {
		HASH_DEL(c->files, f);
		file_free(f);
	}
	HASH_ITER(hh, c->jobs, j, jt) {
		HASH_DEL(c->jobs, j);
		if (j->have_policy)
			meta_policy_release(&j->policy);
		free(j->name);
		free(j);
	}
	HASH_ITER(hh, c->tombs, d, dt) {
		HASH_DEL(c->tombs, d);
		pending_del_free(d);
	}
	HASH_ITER(hh, c->rlists, l, lt) {
		HASH_DEL(c->rlists, l);
		rlist_free(l);
	}
	fresh_drop(c, "");
	while (c->mpus) {
		struct open_mpu *m = c->mpus;

		c->mpus = m->next;
		free(m->key);
		free(m->upload_id);
		free(m);
	}
	cache_rdir_destroy(c->rdir);
	for (int *fd = &c->dir_fd; fd <= &c->journal_fd; fd++)
		if (*fd >= 0)
			close(*fd);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->jlock);
	pthread_cond_destroy(&c->work_cond);
	pthread_cond_destroy(&c->done_cond);
	free(c->dir);
	free(c);
}

int cache_data_fd(struct cache *c)
{
	return c->data_fd;
}

void cache_get_stats(struct cache *c, struct cache_stats *st)
{
	struct cache_file *f, *tmp;

	pthread_mutex_lock(&c->lock);
	*st = c->totals;
	st->files_dirty = st->files_queued = st->files_uploading = st->files_clean = 0;
	st->files_failed = st->bytes_dirty = st->bytes_clean = 0;
	HASH_ITER(hh, c->files, f, tmp) {
		switch (f->state) {
		case ST_DIRTY: st->files_dirty++; st->bytes_dirty += f->size; break;
		case ST_QUEUED: st->files_queued++; st->bytes_dirty += f->size; break;
		case ST_UPLOADING: st->files_uploading++; st->bytes_dirty += f->size; break;
		case ST_CLEAN: st->files_clean++; st->bytes_clean += f->size; break;
		case ST_FAILED: st->files_failed++; st->bytes_dirty += f->size; break;
		}
	}
	{
		struct pending_del *d;

		TAILQ_FOREACH(d, &c->dels, link)
			st->deletes_pending++;
	}
	pthread_mutex_unlock(&c->lock);
}

char *cache_jobs_json(struct cache *c)
{
	cJSON *arr = cJSON_CreateArray();
	struct job *j, *jt;
	char *s;

	if (!arr)
		return NULL;
	pthread_mutex_lock(&c->lock);
	HASH_ITER(hh, c->jobs, j, jt) {
		cJSON *o = cJSON_CreateObject();
		struct cache_file *f, *tmp;
		uint64_t counts[5] = { 0 }, bytes_total = 0, bytes_done = 0, skipped = 0;
		cJSON *errs = cJSON_CreateArray();

		if (!o || !errs) {
			cJSON_Delete(o);
			cJSON_Delete(errs);
			continue;
		}
		HASH_ITER(hh, c->files, f, tmp) {
			if (f->job != j)
				continue;
			if (policy_excludes(f)) {
				skipped++;
				continue;
			}
			counts[f->state]++;
			bytes_total += f->size;
			if (f->state == ST_CLEAN)
				bytes_done += f->size;
			if (f->state == ST_FAILED) {
				cJSON *e = cJSON_CreateObject();
				char et[300];

				cJSON_AddStringToObject(e, "file", f->path + strlen(j->name) + 1);
				cJSON_AddStringToObject(e, "code", f->err.code);
				cJSON_AddStringToObject(e, "message", s3_error_text(&f->err, et, sizeof(et)));
				cJSON_AddNumberToObject(e, "attempts", f->err.attempts);
				cJSON_AddItemToArray(errs, e);
			}
		}
		cJSON_AddStringToObject(o, "job", j->name);
		cJSON_AddBoolToObject(o, "completed", j->completed);
		for (int i = 0; i < 5; i++)
			cJSON_AddNumberToObject(o, state_names[i], (double)counts[i]);
		cJSON_AddNumberToObject(o, "skipped", (double)skipped);
		cJSON_AddNumberToObject(o, "bytesTotal", (double)bytes_total);
		cJSON_AddNumberToObject(o, "bytesClean", (double)bytes_done);
		cJSON_AddNumberToObject(o, "filesUploaded", (double)j->files_uploaded);
		cJSON_AddNumberToObject(o, "bytesUploaded", (double)j->bytes_uploaded);
		if (j->burst_ms && now_ms() - j->burst_ms >= 200)	/* bytes/s of this run */
			cJSON_AddNumberToObject(o, "rate", (double)(j->bytes_uploaded - j->burst_bytes) *
						1000.0 / (double)(now_ms() - j->burst_ms));
		cJSON_AddItemToObject(o, "errors", errs);
		cJSON_AddItemToArray(arr, o);
	}
	pthread_mutex_unlock(&c->lock);
	s = cJSON_PrintUnformatted(arr);
	cJSON_Delete(arr);
	return s;
}
