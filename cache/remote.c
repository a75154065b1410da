/* remote.c - the remote-object read cache: sparse local copies of S3 objects, fetched by chunk.
 *
 * Each (bucket, key, etag) has one struct cache_remote, found in a uthash table by the hex
 * SHA-256 of "bucket\0key\0etag", which is also its file name under the cache directory. The
 * file is ftruncate'd to the object's size (sparse) and a bitmap says which chunks it holds. A
 * read fetches the missing chunks it covers, one ranged GET per contiguous run, written by the
 * store straight into the file at the same offset; a chunk's bit is set only once all its bytes
 * arrived (the object's last chunk may be short), so a failed or short GET leaves nothing
 * marked that is not there. Sequential reads (starting where the previous read ended) that are
 * about to run out of fetched chunks extend the fetch by a readahead window that doubles from 1
 * chunk up to 8 MiB (at most 32 chunks); a random read resets it. Data are copied out of the
 * file with pread, outside any lock.
 *
 * Entry states (rd->lock guards the transitions):
 *
 *   state   refs  fd    meaning                                   next
 *   OPEN    > 0   >= 0  readers hold it; reads fetch what misses   IDLE on the last close
 *   IDLE    0     -1    file and bitmap kept, evictable (LRU)      OPEN on re-open, gone on evict
 *
 * A re-open of an IDLE entry reopens its file and reuses the chunks already fetched. Eviction
 * and cache_rdir_destroy() delete the file and forget the entry.
 *
 * Locks: rd->lock guards the table, refs, fd changes, the LRU clock and the counters, and is
 * never held across network I/O (only local open/stat/unlink). r->lock guards one object's
 * bitmap and readahead state and is held while that object's chunks are fetched, so a chunk is
 * fetched at most once while different objects proceed in parallel. Order: rd->lock before
 * r->lock; read and copy paths never hold both.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "cache_i.h"
#include "log.h"
#include "s3.h"
#include "store.h"

#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) ((obj)->hash_oom = true)
#include <uthash.h>

#define DEFAULT_CHUNK ((uint64_t)1024 * 1024)
#define RA_MAX_BYTES ((uint64_t)8 * 1024 * 1024)
#define RA_MAX_CHUNKS 32
#define COPY_BUF (1024 * 1024)

struct cache_rdir {
	char *dir;
	const struct store *store;	/* borrowed */
	uint64_t chunk_size;
	uint64_t ra_max;		/* readahead window cap, in chunks */
	pthread_mutex_t lock;
	struct cache_remote *objects;	/* protected by rd->lock */
	uint64_t tick;			/* protected by rd->lock: LRU clock */
	uint64_t gets, bytes_fetched, reads; /* protected by rd->lock */
};

struct cache_remote {
	char name[65];			/* hex SHA-256: hash key and file name */
	char *path;
	char *bucket;			/* NULL: the configured bucket */
	char *key;
	uint64_t size;
	uint64_t n_chunks;
	struct cache_rdir *rd;
	int refs;			/* protected by rd->lock */
	int fd;				/* protected by rd->lock; stable while refs > 0 */
	uint64_t used;			/* protected by rd->lock: LRU tick of the last open/read/close */
	bool hash_oom;			/* set by uthash when an add fails */
	pthread_mutex_t lock;
	uint8_t *have;			/* protected by r->lock: one bit per chunk */
	uint64_t last_end;		/* protected by r->lock: where the previous read ended */
	uint64_t window;		/* protected by r->lock: readahead chunks, 0 after a random read */
	UT_hash_handle hh;
};

struct fetch_count {
	uint64_t gets;
	uint64_t bytes;
};

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

#ifndef NDEBUG
/* The state table above: OPEN has a file descriptor, IDLE has none. Called with rd->lock. */
static void remote_check(const struct cache_remote *r)
{
	assert(r->refs >= 0);
	assert((r->refs > 0) == (r->fd >= 0));
	assert(r->n_chunks == (r->size + r->rd->chunk_size - 1) / r->rd->chunk_size);
}
#else
#define remote_check(r) ((void)0)
#endif

static bool have_chunk(const struct cache_remote *r, uint64_t c)
{
	return (r->have[c / 8] >> (c % 8)) & 1;
}

static bool have_all(const struct cache_remote *r, uint64_t first, uint64_t last)
{
	for (uint64_t c = first; c <= last; c++)
		if (!have_chunk(r, c))
			return false;
	return true;
}

static size_t bitmap_bytes(uint64_t n_chunks)
{
	return (size_t)((n_chunks + 7) / 8);
}

/* The hex SHA-256 of "bucket\0key\0etag" into name (65 bytes). -ENOMEM if OpenSSL fails. */
static int remote_name(char *name, const char *bucket, const char *key, const char *etag)
{
	static const char hex[] = "0123456789abcdef";
	const char *parts[3] = { bucket ? bucket : "", key, etag ? etag : "" };
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int rc = -ENOMEM;

	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	for (int i = 0; i < 3; i++)
		if (EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + (i < 2)) != 1)
			goto out;
	if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len != 32)
		goto out;
	for (unsigned int i = 0; i < md_len; i++) {
		name[2 * i] = hex[md[i] >> 4];
		name[2 * i + 1] = hex[md[i] & 15];
	}
	name[64] = '\0';
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* Free r (not in the table), closing its file and, when del, deleting it. r may be partly built. */
static void remote_free(struct cache_remote *r, bool del)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	if (del && r->path && unlink(r->path) < 0 && errno != ENOENT)
		log_msg(LOG_WARNING, "cannot delete cache file", "path=%s errno=%d", r->path, errno);
	pthread_mutex_destroy(&r->lock);
	free(r->have);
	free(r->path);
	free(r->bucket);
	free(r->key);
	free(r);
}

/* A new IDLE entry (no file opened yet). -ENOMEM. Caller frees with remote_free(). */
static int remote_new(struct cache_rdir *rd, const char *name, const char *bucket, const char *key,
		      uint64_t size, struct cache_remote **out)
{
	struct cache_remote *r = calloc(1, sizeof(*r));
	size_t path_len = strlen(rd->dir) + 1 + 64 + 1;
	int rc = -ENOMEM;

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->fd = -1;
	pthread_mutex_init(&r->lock, NULL);
	r->rd = rd;
	r->size = size;
	r->n_chunks = (size + rd->chunk_size - 1) / rd->chunk_size;
	memcpy(r->name, name, sizeof(r->name));
	r->path = malloc(path_len);
	r->key = strdup(key);
	r->bucket = bucket ? strdup(bucket) : NULL;
	r->have = calloc(1, bitmap_bytes(r->n_chunks) + 1);
	if (!r->path || !r->key || (bucket && !r->bucket) || !r->have)
		goto out;
	snprintf(r->path, path_len, "%s/%s", rd->dir, name);
	*out = r;
	r = NULL;
	rc = 0;
out:
	remote_free(r, false);
	return rc;
}

/* Open r's sparse file (creating it, of r->size bytes, if needed) for an IDLE entry becoming
 * OPEN. A file that is missing or of another size starts over with an empty bitmap; the
 * readahead state restarts either way. Called with rd->lock held and r->refs == 0. -errno. */
static int remote_attach(struct cache_remote *r)
{
	struct stat st;
	int fd = open(r->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	pthread_mutex_lock(&r->lock);
	if ((uint64_t)st.st_size != r->size) {
		memset(r->have, 0, bitmap_bytes(r->n_chunks));
		if (ftruncate(fd, (off_t)r->size) < 0)
			rc = -errno;
	}
	r->last_end = 0;
	r->window = 0;
	pthread_mutex_unlock(&r->lock);
	if (rc < 0)
		goto out;
	r->fd = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		log_msg(LOG_WARNING, "cannot open cache file", "path=%s errno=%d", r->path, -rc);
	return rc;
}

/* Bytes allocated to r's file. Called with rd->lock held. */
static uint64_t remote_bytes(const struct cache_remote *r)
{
	struct stat st;
	int rc = r->fd >= 0 ? fstat(r->fd, &st) : stat(r->path, &st);

	return rc < 0 ? 0 : (uint64_t)st.st_blocks * 512;
}

/* Remove every regular file directly inside dir. 0 or -errno. */
static int empty_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return -errno;
	for (;;) {
		struct stat st;
		bool reg;

		errno = 0;
		de = readdir(d);
		if (!de) {
			rc = -errno;
			break;
		}
		if (de->d_type == DT_UNKNOWN)
			reg = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			      S_ISREG(st.st_mode);
		else
			reg = de->d_type == DT_REG;
		if (reg && unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			rc = -errno;
			break;
		}
	}
	closedir(d);
	return rc;
}

int cache_rdir_create(struct cache_rdir **out, const char *dir, const struct store *store,
		      uint64_t chunk_size)
{
	struct cache_rdir *rd = NULL;
	int rc;

	*out = NULL;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		goto out;
	}
	rc = empty_dir(dir);
	if (rc < 0)
		goto out;
	rc = -ENOMEM;
	rd = calloc(1, sizeof(*rd));
	if (!rd)
		goto out;
	pthread_mutex_init(&rd->lock, NULL);
	rd->dir = strdup(dir);
	if (!rd->dir)
		goto out;
	rd->store = store;
	rd->chunk_size = chunk_size ? chunk_size : DEFAULT_CHUNK;
	rd->ra_max = min_u64(RA_MAX_CHUNKS, RA_MAX_BYTES / rd->chunk_size);
	if (rd->ra_max == 0)
		rd->ra_max = 1;
	*out = rd;
	rd = NULL;
	rc = 0;
out:
	if (rc < 0)
		log_msg(LOG_ERR, "cannot prepare remote cache directory", "dir=%s errno=%d", dir, -rc);
	cache_rdir_destroy(rd);
	return rc;
}

void cache_rdir_destroy(struct cache_rdir *rd)
{
	struct cache_remote *r;

	if (!rd)
		return;
	while ((r = rd->objects) != NULL) {
		if (r->refs > 0)
			log_msg(LOG_WARNING, "remote object still open at shutdown", "name=%s refs=%d",
				r->name, r->refs);
		HASH_DEL(rd->objects, r);
		remote_free(r, true);
	}
	pthread_mutex_destroy(&rd->lock);
	free(rd->dir);
	free(rd);
}

int cache_remote_open(struct cache_rdir *rd, const char *bucket, const char *key, uint64_t size,
		      const char *etag, struct cache_remote **out)
{
	struct cache_remote *r = NULL, *fresh = NULL;
	char name[65];
	int rc;

	*out = NULL;
	rc = remote_name(name, bucket, key, etag);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&rd->lock);
	HASH_FIND_STR(rd->objects, name, r);
	if (r && r->size != size) {
		/* same etag, other size: the etag was not a version id (e.g. empty) */
		if (r->refs > 0) {
			log_msg(LOG_WARNING, "remote object open with another size", "name=%s size=%"
				PRIu64 " open_size=%" PRIu64, name, size, r->size);
			rc = -ESTALE;
			goto out;
		}
		HASH_DEL(rd->objects, r);
		remote_free(r, true);
		r = NULL;
	}
	if (!r) {
		rc = remote_new(rd, name, bucket, key, size, &fresh);
		if (rc == 0)
			rc = remote_attach(fresh);
		if (rc < 0)
			goto out;
		HASH_ADD_STR(rd->objects, name, fresh);
		if (fresh->hash_oom) {
			rc = -ENOMEM;
			goto out;
		}
		r = fresh;
		fresh = NULL;
	} else if (r->refs == 0) {
		rc = remote_attach(r);
		if (rc < 0)
			goto out;
	}
	r->refs++;
	r->used = ++rd->tick;
	remote_check(r);
	*out = r;
out:
	pthread_mutex_unlock(&rd->lock);
	remote_free(fresh, true);
	return rc;
}

void cache_remote_close(struct cache_remote *r)
{
	struct cache_rdir *rd;

	if (!r)
		return;
	rd = r->rd;
	pthread_mutex_lock(&rd->lock);
	if (--r->refs == 0) {
		close(r->fd);
		r->fd = -1;
	}
	r->used = ++rd->tick;
	remote_check(r);
	pthread_mutex_unlock(&rd->lock);
}

/* Fetch the missing chunks of [first, last], one GET per contiguous run, marking every chunk
 * whose bytes all arrived. Stops at the first failure; a short answer is -EIO. Called with
 * r->lock held; blocks on the network. n accumulates the GETs made and bytes received. */
static int remote_fetch(struct cache_remote *r, uint64_t first, uint64_t last,
			struct fetch_count *n, struct s3_error *err)
{
	const struct store *s = r->rd->store;
	uint64_t cs = r->rd->chunk_size;
	uint64_t c = first;

	while (c <= last) {
		uint64_t run_end = c, off, len, got = 0;
		char qkey[256];
		int rc;

		if (have_chunk(r, c)) {
			c++;
			continue;
		}
		while (run_end < last && !have_chunk(r, run_end + 1))
			run_end++;
		off = c * cs;
		len = min_u64((run_end + 1) * cs, r->size) - off;
		rc = s->get_to_fd(s->ctx, r->bucket, r->key, off, len, r->fd, (off_t)off, &got, err);
		n->gets++;
		n->bytes += got;
		if (log_enabled(LOG_DEBUG))
			log_msg(LOG_DEBUG, "remote fetch", "key=%s off=%" PRIu64 " len=%" PRIu64
				" got=%" PRIu64 " rc=%d", log_quote(qkey, sizeof(qkey), r->key),
				off, len, got, rc);
		if (rc == 0) {
			/* mark the chunks wholly received (the object's last one may be short) */
			for (; c <= run_end && min_u64((c + 1) * cs, r->size) <= off + got; c++)
				r->have[c / 8] |= (uint8_t)(1u << (c % 8));
			if (got < len) {
				rc = -EIO;
				if (err) {
					memset(err, 0, sizeof(*err));
					snprintf(err->code, sizeof(err->code), "ShortRead");
					snprintf(err->message, sizeof(err->message),
						 "got %" PRIu64 " of %" PRIu64 " bytes", got, len);
				}
			}
		}
		if (rc < 0) {
			log_msg(LOG_WARNING, "remote fetch failed", "key=%s off=%" PRIu64 " len=%"
				PRIu64 " got=%" PRIu64 " errno=%d",
				log_quote(qkey, sizeof(qkey), r->key), off, len, got, -rc);
			return rc;
		}
	}
	return 0;
}

/* Add a read's network work to the counters and touch r for the LRU. */
static void remote_account(struct cache_remote *r, const struct fetch_count *n)
{
	struct cache_rdir *rd = r->rd;

	pthread_mutex_lock(&rd->lock);
	rd->gets += n->gets;
	rd->bytes_fetched += n->bytes;
	rd->reads++;
	r->used = ++rd->tick;
	pthread_mutex_unlock(&rd->lock);
}

ssize_t cache_remote_read(struct cache_remote *r, void *buf, size_t size, uint64_t off,
			  struct s3_error *err)
{
	struct fetch_count n = { 0, 0 };
	uint64_t cs = r->rd->chunk_size;
	uint64_t end, first, last, fetch_last;
	ssize_t rc = 0;
	size_t done = 0;

	if (off >= r->size || size == 0)
		goto out;
	end = off + min_u64(min_u64(size, SSIZE_MAX), r->size - off);
	first = off / cs;
	last = (end - 1) / cs;
	fetch_last = last;
	pthread_mutex_lock(&r->lock);
	if (off != r->last_end) {
		r->window = 0;
	} else if (last + 1 < r->n_chunks && !have_chunk(r, last + 1)) {
		r->window = r->window ? min_u64(r->window * 2, r->rd->ra_max) : 1;
		fetch_last = min_u64(last + r->window, r->n_chunks - 1);
	}
	r->last_end = end;
	rc = remote_fetch(r, first, fetch_last, &n, err);
	if (rc < 0 && have_all(r, first, last))
		rc = 0;		/* only the readahead failed */
	pthread_mutex_unlock(&r->lock);
	while (rc == 0 && done < end - off) {
		ssize_t k = pread(r->fd, (char *)buf + done, (size_t)(end - off) - done,
				  (off_t)(off + done));

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			rc = k < 0 ? -errno : -EIO;
		else
			done += (size_t)k;
	}
out:
	remote_account(r, &n);
	return rc < 0 ? rc : (ssize_t)done;
}

/* Write all len bytes of buf to fd at off. 0 or -errno. */
static int pwrite_full(int fd, const char *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t k = pwrite(fd, buf + done, len - done, off + (off_t)done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		done += (size_t)k;
	}
	return 0;
}

/* Copy len bytes at off from src to dst at the same offset: copy_file_range (the file system
 * may share blocks), else through a buffer. 0 or -errno. */
static int copy_range(int src, int dst, uint64_t off, uint64_t len)
{
	char *buf = NULL;
	uint64_t done = 0;
	bool plain = false;
	int rc = 0;

	while (rc == 0 && done < len) {
		loff_t in = (loff_t)(off + done), o = in;
		ssize_t k;

		if (!plain) {
			k = copy_file_range(src, &in, dst, &o, (size_t)(len - done), 0);
			if (k < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP)) {
				plain = true;
				continue;
			}
		} else {
			if (!buf && !(buf = malloc(COPY_BUF))) {
				rc = -ENOMEM;
				break;
			}
			k = pread(src, buf, (size_t)min_u64(COPY_BUF, len - done), in);
			if (k > 0 && (rc = pwrite_full(dst, buf, (size_t)k, in)) < 0)
				break;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			rc = k < 0 ? -errno : -EIO;
		else
			done += (uint64_t)k;
	}
	free(buf);
	return rc;
}

int cache_remote_copy_to(struct cache_remote *r, int dst_fd, struct s3_error *err)
{
	struct fetch_count n = { 0, 0 };
	uint64_t cs = r->rd->chunk_size, step = r->rd->ra_max;
	int rc = 0;

	for (uint64_t c = 0; rc == 0 && c < r->n_chunks; c += step) {
		uint64_t last = min_u64(c + step, r->n_chunks) - 1;

		pthread_mutex_lock(&r->lock);
		rc = remote_fetch(r, c, last, &n, err);
		pthread_mutex_unlock(&r->lock);
		if (rc == 0)
			rc = copy_range(r->fd, dst_fd, c * cs, min_u64((last + 1) * cs, r->size) - c * cs);
	}
	if (rc == 0 && ftruncate(dst_fd, (off_t)r->size) < 0)
		rc = -errno;
	remote_account(r, &n);
	return rc;
}

uint64_t cache_rdir_bytes(struct cache_rdir *rd)
{
	struct cache_remote *r, *tmp;
	uint64_t total = 0;

	pthread_mutex_lock(&rd->lock);
	HASH_ITER(hh, rd->objects, r, tmp)
		total += remote_bytes(r);
	pthread_mutex_unlock(&rd->lock);
	return total;
}

struct idle_entry {
	struct cache_remote *r;
	uint64_t bytes;
};

static int by_used(const void *a, const void *b)
{
	uint64_t ua = ((const struct idle_entry *)a)->r->used;
	uint64_t ub = ((const struct idle_entry *)b)->r->used;

	return ua < ub ? -1 : ua > ub;
}

uint64_t cache_rdir_evict(struct cache_rdir *rd, uint64_t target)
{
	struct cache_remote *r, *tmp;
	struct idle_entry *idle = NULL;
	uint64_t total = 0, freed = 0;
	size_t n = 0;

	pthread_mutex_lock(&rd->lock);
	idle = calloc(HASH_COUNT(rd->objects) + 1, sizeof(*idle));
	if (!idle)
		goto out;
	HASH_ITER(hh, rd->objects, r, tmp) {
		uint64_t b = remote_bytes(r);

		total += b;
		if (r->refs == 0)
			idle[n++] = (struct idle_entry){ r, b };
	}
	qsort(idle, n, sizeof(*idle), by_used);
	for (size_t i = 0; i < n && total > target; i++) {
		log_msg(LOG_DEBUG, "evicting remote cache file", "name=%s bytes=%" PRIu64,
			idle[i].r->name, idle[i].bytes);
		HASH_DEL(rd->objects, idle[i].r);
		remote_free(idle[i].r, true);
		total -= idle[i].bytes;
		freed += idle[i].bytes;
	}
out:
	pthread_mutex_unlock(&rd->lock);
	free(idle);
	return freed;
}

void cache_rdir_stats(struct cache_rdir *rd, uint64_t *gets, uint64_t *bytes_fetched,
		      uint64_t *reads)
{
	pthread_mutex_lock(&rd->lock);
	if (gets)
		*gets = rd->gets;
	if (bytes_fetched)
		*bytes_fetched = rd->bytes_fetched;
	if (reads)
		*reads = rd->reads;
	pthread_mutex_unlock(&rd->lock);
}
