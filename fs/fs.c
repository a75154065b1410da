/* fs.c - FUSE operations over the cache: path in, cache call, -errno out.
 *
 * The high-level (path) API of libfuse 3, run multithreaded. Open files carry a struct
 * cache_handle in fi->fh. Attribute and entry timeouts are short (1 s) so names another client
 * adds to S3 show up soon; staged files are ours alone, so the kernel may cache their pages.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cache.h"
#include "fs.h"
#include "log.h"

static struct fs_ctx *ctx(void)
{
	return fuse_get_context()->private_data;
}

static struct cache *C(void)
{
	return ctx()->cache;
}

static const char *rel(const char *path)
{
	while (*path == '/')
		path++;
	return path;
}

/* 0, or -ENAMETOOLONG when the key of rel (S3_PREFIX + rel) would not fit in an S3 key. */
static int key_fits(const char *rel)
{
	return ctx()->key_prefix_len + strlen(rel) > FS_KEY_MAX ? -ENAMETOOLONG : 0;
}

static struct cache_handle *H(const struct fuse_file_info *fi)
{
	return fi ? (struct cache_handle *)(uintptr_t)fi->fh : NULL;
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct fs_ctx *x = ctx();

	conn->max_write = 1 << 20;
	conn->max_readahead = 1 << 20;
	cfg->attr_timeout = 1.0;
	cfg->entry_timeout = 1.0;
	cfg->negative_timeout = 0;
	cfg->use_ino = 0;
	cfg->hard_remove = 1;	/* unlink of an open file: the cache keeps it alive */
	cfg->auto_cache = 1;
	if (x->on_init && x->on_init(x->on_init_arg) != 0)
		log_msg(LOG_ERR, "cannot start the upload workers", NULL);
	return x;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct cache_handle *h = H(fi);

	if (h && h->fd >= 0)
		return fstat(h->fd, st) < 0 ? -errno : 0;
	return cache_getattr(C(), rel(path), st);
}

struct fill {
	void *buf;
	fuse_fill_dir_t filler;
};

static int fill_one(void *arg, const char *name, const struct stat *st)
{
	struct fill *f = arg;

	return f->filler(f->buf, name, st, 0, 0);
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct fill f = { buf, filler };

	(void)off;
	(void)fi;
	(void)flags;
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	return cache_readdir(C(), rel(path), fill_one, &f);
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	struct cache_handle *h;
	int rc = cache_open_handle(C(), rel(path), fi->flags, 0, &h);

	if (rc)
		return rc;
	fi->fh = (uintptr_t)h;
	return 0;
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct cache_handle *h;
	int rc = key_fits(rel(path));

	if (!rc)
		rc = cache_open_handle(C(), rel(path), fi->flags | O_CREAT, mode, &h);

	if (rc)
		return rc;
	fi->fh = (uintptr_t)h;
	return 0;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)path;
	return (int)cache_read(C(), H(fi), buf, size, off);
}

static int fs_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)path;
	return (int)cache_write(C(), H(fi), buf, size, off);
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	return cache_release(C(), H(fi));
}

static int fs_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	return 0;
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	(void)datasync;
	return cache_fsync(C(), H(fi));
}

static int fs_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	return cache_fsync_dir(C(), rel(path));
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct cache_handle *h = H(fi);

	if (h)
		return cache_ftruncate(C(), h, size);
	return cache_truncate(C(), rel(path), size);
}

static int fs_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	(void)path;
	return cache_fallocate(C(), H(fi), mode, off, len);
}

static int fs_unlink(const char *path)
{
	return cache_unlink(C(), rel(path));
}

static int fs_mkdir(const char *path, mode_t mode)
{
	int rc = key_fits(rel(path));

	return rc ? rc : cache_mkdir(C(), rel(path), mode);
}

static int fs_rmdir(const char *path)
{
	return cache_rmdir(C(), rel(path));
}

static int fs_rename(const char *from, const char *to, unsigned int flags)
{
	int rc = key_fits(rel(to));

	return rc ? rc : cache_rename(C(), rel(from), rel(to), flags);
}

static int fs_symlink(const char *target, const char *path)
{
	int rc = key_fits(rel(path));

	return rc ? rc : cache_symlink(C(), target, rel(path));
}

static int fs_readlink(const char *path, char *buf, size_t size)
{
	return cache_readlink(C(), rel(path), buf, size);
}

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)fi;
	return cache_chmod(C(), rel(path), mode);
}

static int fs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)fi;
	return cache_chown(C(), rel(path), uid, gid);
}

static int fs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	(void)fi;
	return cache_utimens(C(), rel(path), tv);
}

static int fs_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	return fstatvfs(cache_data_fd(C()), st) < 0 ? -errno : 0;
}

static const struct fuse_operations ops = {
	.init = fs_init,
	.getattr = fs_getattr,
	.readdir = fs_readdir,
	.open = fs_open,
	.create = fs_create,
	.read = fs_read,
	.write = fs_write,
	.release = fs_release,
	.flush = fs_flush,
	.fsync = fs_fsync,
	.fsyncdir = fs_fsyncdir,
	.truncate = fs_truncate,
	.fallocate = fs_fallocate,
	.unlink = fs_unlink,
	.mkdir = fs_mkdir,
	.rmdir = fs_rmdir,
	.rename = fs_rename,
	.symlink = fs_symlink,
	.readlink = fs_readlink,
	.chmod = fs_chmod,
	.chown = fs_chown,
	.utimens = fs_utimens,
	.statfs = fs_statfs,
};

const struct fuse_operations *fs_operations(void)
{
	return &ops;
}
