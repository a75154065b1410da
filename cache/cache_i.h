/* cache_i.h - private to cache/: the remote-object read cache (cache/remote.c).
 *
 * Objects that are not staged locally are read through sparse files under
 * <cache-dir>/remote/. Each open object (bucket, key, etag) has one struct cache_remote shared by
 * every reader (reference counted), a sparse local file of the object's size, and a bitmap of
 * the chunks (default 1 MiB) it already holds. A read fetches the missing chunks it covers with
 * ranged GETs (one GET per contiguous run of missing chunks), plus sequential readahead: when a
 * read starts where the previous one ended, the fetch is extended by a window that doubles from
 * 1 chunk up to 8 MiB (or 32 chunks); a random read resets the window. Re-reads are served from the
 * sparse file with no network. Fetches of one object are serialised by its mutex; different
 * objects proceed in parallel. Files of objects no longer open may be evicted (deleted) to free
 * space, least recently used first. Nothing under remote/ survives a restart (it is emptied at
 * start): it only ever holds copies of what S3 has.
 */
#ifndef S3JOBFS_CACHE_I_H
#define S3JOBFS_CACHE_I_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct store;
struct s3_error;
struct cache_rdir;
struct cache_remote;

/* The set of remote objects under one directory. dir is created (0700) and emptied.
 * store is borrowed for the lifetime. chunk_size 0 = 1 MiB. Caller frees with
 * cache_rdir_destroy(). -errno from mkdir/opendir, -ENOMEM. */
int cache_rdir_create(struct cache_rdir **out, const char *dir, const struct store *store,
		      uint64_t chunk_size);
void cache_rdir_destroy(struct cache_rdir *rd);

/* Open (or share) the cached copy of object bucket/key of `size` bytes and ETag etag (the ETag
 * tells versions apart: a new etag for the same key is a different cache file). Does no network
 * I/O. *out is released with cache_remote_close(). -ENOMEM, -errno creating the sparse file. */
int cache_remote_open(struct cache_rdir *rd, const char *bucket, const char *key, uint64_t size,
		      const char *etag, struct cache_remote **out);
void cache_remote_close(struct cache_remote *r);

/* Read up to `size` bytes at `off` (short only at end of object). Fetches what is missing.
 * Returns the byte count, or -errno from the store (-ENOENT: the object is gone, -EIO ...),
 * with err (may be NULL) filled. Thread-safe; blocks on the network when needed. */
ssize_t cache_remote_read(struct cache_remote *r, void *buf, size_t size, uint64_t off,
			  struct s3_error *err);

/* Copy the whole object into dst_fd from offset 0 (fetching what is missing), e.g. to stage a
 * remote file that is opened for writing. 0 or -errno. */
int cache_remote_copy_to(struct cache_remote *r, int dst_fd, struct s3_error *err);

/* Bytes held by sparse files (allocated blocks, st_blocks * 512). */
uint64_t cache_rdir_bytes(struct cache_rdir *rd);

/* Delete unopened cache files, least recently read first, until at most target bytes remain.
 * Returns the bytes freed. */
uint64_t cache_rdir_evict(struct cache_rdir *rd, uint64_t target);

/* Counters for tests and metrics: GET requests made, bytes fetched, reads served. */
void cache_rdir_stats(struct cache_rdir *rd, uint64_t *gets, uint64_t *bytes_fetched,
		      uint64_t *reads);

#endif
