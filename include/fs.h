/* fs.h - the FUSE filesystem (fs/ is the only code that speaks FUSE).
 *
 * fs_operations() returns libfuse's high-level operation table; every operation turns the
 * path into one relative to the mount root and calls the cache (include/cache.h), and turns its
 * -errno into the FUSE reply. The cache is the FUSE private data. Creating a name (create,
 * mkdir, symlink, rename's target) whose S3 key, S3_PREFIX + path, would be longer than 1,024
 * bytes fails with ENAMETOOLONG before anything is staged.
 */
#ifndef S3JOBFS_FS_H
#define S3JOBFS_FS_H

#define FUSE_USE_VERSION 312
#include <fuse.h>

struct cache;

struct fs_ctx {
	struct cache *cache;
	int (*on_init)(void *arg);	/* called once from FUSE init (threads start there) */
	void *on_init_arg;
	size_t key_prefix_len;		/* strlen(S3_PREFIX): names whose key would pass
					 * FS_KEY_MAX bytes are refused with ENAMETOOLONG */
};

#define FS_KEY_MAX 1024			/* S3's limit on a key, in bytes */

const struct fuse_operations *fs_operations(void);

#endif
