/* fs.h - the FUSE filesystem (fs/ is the only code that speaks FUSE).
 *
 * fs_operations() returns libfuse's high-level operation table; every operation turns the
 * path into one relative to the mount root and calls the cache (include/cache.h), and turns its
 * -errno into the FUSE reply. The cache is the FUSE private data.
 */
#ifndef S3JOBFS_FS_H
#define S3JOBFS_FS_H

#define FUSE_USE_VERSION 35
#include <fuse.h>

struct cache;

struct fs_ctx {
	struct cache *cache;
	int (*on_init)(void *arg);	/* called once from FUSE init (threads start there) */
	void *on_init_arg;
};

const struct fuse_operations *fs_operations(void);

#endif
