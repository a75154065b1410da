/* test_remote.c - the remote-object read cache (cache/remote.c) over a fake in-memory store:
 * readahead, chunk reuse, EOF, etag versions, failures and short answers, copy, concurrency,
 * eviction, empty objects and the directory's cleanup at start. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "cache/cache_i.h"
#include "store.h"

#define MiB ((uint64_t)1024 * 1024)
#define KiB ((uint64_t)1024)
#define MAX_OBJS 4

struct fobj {
	char key[64];
	uint8_t *data;
	uint64_t size;
	uint8_t *seen;		/* times each byte was served */
};

struct fake {
	pthread_mutex_t lock;
	struct fobj objs[MAX_OBJS];
	int n;
	int gets;
	uint64_t bytes;
	uint64_t overlaps;	/* bytes served more than once */
	int beyond;		/* requests past the end of the object */
	int fail;		/* the next `fail` GETs answer -EIO */
	bool short_answer;	/* answer half of what is asked */
	unsigned delay_us;
};

struct fx {
	char tmp[64];
	char dir[96];
	struct fake f;
	struct store s;
	struct cache_rdir *rd;
};

static void fill(uint8_t *p, uint64_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (uint64_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static struct fobj *fake_find(struct fake *f, const char *key)
{
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->objs[i].key, key) == 0)
			return &f->objs[i];
	return NULL;
}

/* Add (or replace the content of) key with size bytes of pattern seed. */
static struct fobj *fake_put(struct fake *f, const char *key, uint64_t size, unsigned seed)
{
	struct fobj *o = fake_find(f, key);

	if (!o)
		o = &f->objs[f->n++];
	free(o->data);
	free(o->seen);
	snprintf(o->key, sizeof(o->key), "%s", key);
	o->size = size;
	o->data = malloc(size + 1);
	o->seen = calloc(1, size + 1);
	fill(o->data, size, seed);
	return o;
}

static int fake_get_to_fd(void *ctx, const char *bucket, const char *key, uint64_t off,
			  uint64_t len, int fd, off_t fd_off, uint64_t *got, struct s3_error *err)
{
	struct fake *f = ctx;
	struct fobj *o;
	uint64_t n;
	int rc = 0;

	(void)bucket;
	*got = 0;
	if (f->delay_us)
		usleep(f->delay_us);
	pthread_mutex_lock(&f->lock);
	f->gets++;
	o = fake_find(f, key);
	if (!o) {
		rc = -ENOENT;
		goto out;
	}
	if (f->fail > 0) {
		f->fail--;
		if (err) {
			memset(err, 0, sizeof(*err));
			err->http_status = 500;
			snprintf(err->code, sizeof(err->code), "InternalError");
		}
		rc = -EIO;
		goto out;
	}
	if (off >= o->size || (len && off + len > o->size)) {
		f->beyond++;
		if (off >= o->size) {
			rc = -EINVAL;
			goto out;
		}
	}
	n = len ? len : o->size - off;
	if (off + n > o->size)
		n = o->size - off;
	if (f->short_answer)
		n /= 2;
	for (uint64_t i = off; i < off + n; i++)
		if (o->seen[i]++)
			f->overlaps++;
	if (pwrite(fd, o->data + off, n, fd_off) != (ssize_t)n) {
		rc = -EIO;
		goto out;
	}
	f->bytes += n;
	*got = n;
out:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static void fx_setup(struct fx *x, uint64_t chunk)
{
	memset(x, 0, sizeof(*x));
	pthread_mutex_init(&x->f.lock, NULL);
	snprintf(x->tmp, sizeof(x->tmp), "/tmp/test_remote.XXXXXX");
	T_CHECK(mkdtemp(x->tmp) != NULL);
	snprintf(x->dir, sizeof(x->dir), "%s/remote", x->tmp);
	x->s.ctx = &x->f;
	x->s.get_to_fd = fake_get_to_fd;
	T_EQ_INT(cache_rdir_create(&x->rd, x->dir, &x->s, chunk), 0);
}

static void fx_teardown(struct fx *x)
{
	cache_rdir_destroy(x->rd);
	T_EQ_INT(rmdir(x->dir), 0);	/* destroy deleted every cache file */
	rmdir(x->tmp);
	for (int i = 0; i < x->f.n; i++) {
		free(x->f.objs[i].data);
		free(x->f.objs[i].seen);
	}
	pthread_mutex_destroy(&x->f.lock);
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL)
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

/* Read [off, off+len) through the cache and compare with the object; returns the count. */
static ssize_t read_check(struct cache_remote *r, const struct fobj *o, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len + 1);
	ssize_t n = cache_remote_read(r, buf, len, off, NULL);

	if (n > 0 && memcmp(buf, o->data + off, (size_t)n) != 0)
		T_FAILF("bytes differ in [%" PRIu64 ", +%zd)", off, n);
	free(buf);
	return n;
}

static void test_sequential_readahead(void)
{
	struct fx x;
	struct cache_remote *r = NULL;
	struct fobj *o;
	uint64_t gets = 0, bytes = 0, reads = 0;
	int n_reads = 0;
	bool ok = true;

	fx_setup(&x, 0);
	o = fake_put(&x.f, "logs/big.bin", 10 * MiB, 1);
	T_EQ_INT(cache_remote_open(x.rd, "b", "logs/big.bin", o->size, "e1", &r), 0);
	for (uint64_t off = 0; off < o->size && ok; off += 128 * KiB, n_reads++)
		ok = read_check(r, o, off, 128 * KiB) == (ssize_t)(128 * KiB);
	T_CHECK(ok);
	T_EQ_INT(read_check(r, o, o->size, 128 * KiB), 0);
	printf("  note: 10 MiB in %d reads of 128 KiB: %d GETs, %" PRIu64 " bytes fetched\n",
	       n_reads, x.f.gets, x.f.bytes);
	T_CHECK(x.f.gets <= 8);
	T_EQ_INT(x.f.bytes, o->size);
	T_EQ_INT(x.f.overlaps, 0);
	T_EQ_INT(x.f.beyond, 0);
	cache_rdir_stats(x.rd, &gets, &bytes, &reads);
	T_EQ_INT(gets, x.f.gets);
	T_EQ_INT(bytes, o->size);
	T_EQ_INT(reads, n_reads + 1);
	cache_remote_close(r);
	fx_teardown(&x);
}

static void test_reread_no_get(void)
{
	struct fx x;
	struct cache_remote *r = NULL, *r2 = NULL;
	struct fobj *o;
	int gets;

	fx_setup(&x, 0);
	o = fake_put(&x.f, "a", 3 * MiB + 5, 2);
	T_EQ_INT(cache_remote_open(x.rd, NULL, "a", o->size, "e", &r), 0);
	T_EQ_INT(read_check(r, o, MiB + 100, 300 * KiB), 300 * KiB);
	gets = x.f.gets;
	T_EQ_INT(gets, 1);
	T_EQ_INT(read_check(r, o, MiB + 100, 300 * KiB), 300 * KiB);
	T_EQ_INT(read_check(r, o, MiB + 4000, 4 * KiB), 4 * KiB);
	T_EQ_INT(x.f.gets, gets);
	/* a second opener shares the object and its chunks */
	T_EQ_INT(cache_remote_open(x.rd, NULL, "a", o->size, "e", &r2), 0);
	T_CHECK(r2 == r);
	T_EQ_INT(read_check(r2, o, MiB + 100, 300 * KiB), 300 * KiB);
	T_EQ_INT(x.f.gets, gets);
	cache_remote_close(r2);
	/* the last close keeps the chunks: a re-open reads them with no GET */
	cache_remote_close(r);
	T_EQ_INT(cache_remote_open(x.rd, NULL, "a", o->size, "e", &r), 0);
	T_EQ_INT(read_check(r, o, MiB + 100, 300 * KiB), 300 * KiB);
	T_EQ_INT(x.f.gets, gets);
	T_EQ_INT(x.f.overlaps, 0);
	cache_remote_close(r);
	fx_teardown(&x);
}

static void test_random_read_one_chunk(void)
{
	struct fx x;
	struct cache_remote *r = NULL;
	struct fobj *o;

	fx_setup(&x, 0);
	o = fake_put(&x.f, "a", 10 * MiB, 3);
	T_EQ_INT(cache_remote_open(x.rd, "b", "a", o->size, "e", &r), 0);
	T_EQ_INT(read_check(r, o, 5 * MiB + 1000, 4 * KiB), 4 * KiB);
	T_EQ_INT(x.f.gets, 1);
	T_EQ_INT(x.f.bytes, MiB);
	/* another random read elsewhere: one more chunk, no readahead */
	T_EQ_INT(read_check(r, o, 2 * MiB + 77, 4 * KiB), 4 * KiB);
	T_EQ_INT(x.f.gets, 2);
	T_EQ_INT(x.f.bytes, 2 * MiB);
	/* a read across a chunk boundary fetches both chunks in one GET */
	T_EQ_INT(read_check(r, o, 8 * MiB - 10, 20), 20);
	T_EQ_INT(x.f.gets, 3);
	T_EQ_INT(x.f.bytes, 4 * MiB);
	cache_remote_close(r);
	fx_teardown(&x);
}

static void test_eof(void)
{
	struct fx x;
	struct cache_remote *r = NULL;
	struct fobj *o;
	char buf[16];

	fx_setup(&x, 0);
	o = fake_put(&x.f, "a", 3 * MiB + 1234, 4);
	T_EQ_INT(cache_remote_open(x.rd, "b", "a", o->size, "e", &r), 0);
	T_EQ_INT(read_check(r, o, o->size, 4096), 0);
	T_EQ_INT(read_check(r, o, o->size + 5 * MiB, 4096), 0);
	T_EQ_INT(x.f.gets, 0);
	T_EQ_INT(read_check(r, o, o->size - 100, 4096), 100);
	T_EQ_INT(x.f.gets, 1);
	T_EQ_INT(x.f.bytes, 1234);		/* the short last chunk only */
	T_EQ_INT(cache_remote_read(r, buf, 0, 0, NULL), 0);
	/* sequential to the end: readahead stops at the object's end */
	for (uint64_t off = 0; off < o->size; off += 256 * KiB)
		read_check(r, o, off, 256 * KiB);
	T_EQ_INT(x.f.bytes, o->size);
	T_EQ_INT(x.f.beyond, 0);
	T_EQ_INT(x.f.overlaps, 0);
	cache_remote_close(r);
	fx_teardown(&x);
}

static void test_etag_versions(void)
{
	struct fx x;
	struct cache_remote *r1 = NULL, *r2 = NULL, *r = NULL;
	struct fobj *o, old;
	uint8_t *copy;

	fx_setup(&x, 0);
	o = fake_put(&x.f, "k", 2 * MiB, 5);
	T_EQ_INT(cache_remote_open(x.rd, "b", "k", o->size, "etag-1", &r1), 0);
	T_EQ_INT(read_check(r1, o, 0, 2 * MiB), 2 * MiB);
	copy = malloc(o->size);
	memcpy(copy, o->data, o->size);
	old = *o;
	old.data = copy;
	/* the key is overwritten: new content, new etag, different size */
	o = fake_put(&x.f, "k", MiB + 3, 6);
	T_EQ_INT(cache_remote_open(x.rd, "b", "k", o->size, "etag-2", &r2), 0);
	T_CHECK(r1 != r2);
	T_EQ_INT(count_files(x.dir), 2);
	T_EQ_INT(read_check(r2, o, 0, MiB + 3), MiB + 3);
	/* the old version still reads its own bytes, from its cache file */
	x.f.gets = 0;
	T_EQ_INT(read_check(r1, &old, 0, 2 * MiB), 2 * MiB);
	T_EQ_INT(x.f.gets, 0);
	/* the same key and etag under another bucket is another object too */
	cache_remote_close(r1);
	T_EQ_INT(cache_remote_open(x.rd, "other", "k", o->size, "etag-2", &r1), 0);
	T_CHECK(r1 != r2);
	T_EQ_INT(count_files(x.dir), 3);
	cache_remote_close(r1);
	/* an etag that does not tell versions apart (empty) and a new size: refused while the old
	 * one is open, a fresh file once it is closed */
	T_EQ_INT(cache_remote_open(x.rd, "b", "k", o->size, "", &r1), 0);
	T_EQ_INT(read_check(r1, o, 0, 10), 10);
	o = fake_put(&x.f, "k", 3 * MiB, 7);
	T_EQ_INT(cache_remote_open(x.rd, "b", "k", o->size, "", &r), -ESTALE);
	T_CHECK(r == NULL);
	cache_remote_close(r1);
	T_EQ_INT(cache_remote_open(x.rd, "b", "k", o->size, "", &r1), 0);
	T_EQ_INT(read_check(r1, o, 0, 3 * MiB), 3 * MiB);
	cache_remote_close(r1);
	cache_remote_close(r2);
	free(copy);
	fx_teardown(&x);
}

static void test_store_failure(void)
{
	struct fx x;
	struct cache_remote *r = NULL;
	struct s3_error err;
	struct fobj *o;
	char buf[4096];

	fx_setup(&x, 0);
	o = fake_put(&x.f, "a", 6 * MiB, 7);
	T_EQ_INT(cache_remote_open(x.rd, "b", "a", o->size, "e", &r), 0);
	x.f.fail = 1;
	memset(&err, 0, sizeof(err));
	T_EQ_INT(cache_remote_read(r, buf, sizeof(buf), MiB + 10, &err), -EIO);
	T_EQ_INT(err.http_status, 500);
	T_EQ_STR(err.code, "InternalError");
	/* nothing was marked: the next read fetches again and gets the right bytes */
	T_EQ_INT(read_check(r, o, MiB + 10, 4096), 4096);
	T_EQ_INT(x.f.gets, 2);
	/* a sequential read whose readahead fails still succeeds; the chunk is not marked */
	x.f.fail = 1;
	T_EQ_INT(read_check(r, o, MiB + 10 + 4096, 4096), 4096);
	T_EQ_INT(x.f.gets, 3);
	T_EQ_INT(read_check(r, o, 2 * MiB + 10, 4096), 4096);
	T_EQ_INT(x.f.gets, 4);
	/* a failed GET of needed chunk + readahead: -EIO, neither chunk marked */
	T_EQ_INT(read_check(r, o, 3 * MiB - 100, 100), 100);
	T_EQ_INT(x.f.gets, 4);
	x.f.fail = 1;
	T_EQ_INT(cache_remote_read(r, buf, sizeof(buf), 3 * MiB, NULL), -EIO);
	T_EQ_INT(x.f.gets, 5);
	T_EQ_INT(read_check(r, o, 3 * MiB, 4096), 4096);
	T_EQ_INT(read_check(r, o, 4 * MiB + 1, 4096), 4096);
	T_EQ_INT(x.f.gets, 7);
	T_EQ_INT(x.f.overlaps, 0);
	/* a vanished object is -ENOENT */
	snprintf(x.f.objs[0].key, sizeof(x.f.objs[0].key), "gone");
	T_EQ_INT(cache_remote_read(r, buf, sizeof(buf), 5 * MiB, NULL), -ENOENT);
	cache_remote_close(r);
	fx_teardown(&x);
}

static void test_short_answer(void)
{
	struct fx x;
	struct cache_remote *r = NULL;
	struct s3_error err;
	struct fobj *o;
	char buf[4096];

	fx_setup(&x, 0);
	o = fake_put(&x.f, "a", 4 * MiB, 8);
	T_EQ_INT(cache_remote_open(x.rd, "b", "a", o->size, "e", &r), 0);
	x.f.short_answer = true;
	memset(&err, 0, sizeof(err));
	T_EQ_INT(cache_remote_read(r, buf, sizeof(buf), 2 * MiB + 5, &err), -EIO);
	T_EQ_STR(err.code, "ShortRead");
	/* a short answer to a two-chunk GET: the first chunk arrived whole and counts, the second
	 * did not; a read needing the second fails */
	T_EQ_INT(cache_remote_read(r, buf, sizeof(buf), MiB - 10, NULL), -EIO);
	x.f.short_answer = false;
	x.f.gets = 0;
	T_EQ_INT(read_check(r, o, 2 * MiB + 5, 4096), 4096);
	T_EQ_INT(x.f.gets, 1);
	T_EQ_INT(read_check(r, o, 0, MiB), MiB);	/* chunk 0 was kept */
	T_EQ_INT(x.f.gets, 1);
	T_EQ_INT(read_check(r, o, MiB - 10, 4096), 4096);
	T_EQ_INT(x.f.gets, 2);
	cache_remote_close(r);
	fx_teardown(&x);
}

static void test_copy_to(void)
{
	struct fx x;
	struct cache_remote *r = NULL;
	struct fobj *o;
	char path[128];
	uint8_t *buf;
	int fd;

	fx_setup(&x, 0);
	o = fake_put(&x.f, "a", 19 * MiB + 4321, 9);
	T_EQ_INT(cache_remote_open(x.rd, "b", "a", o->size, "e", &r), 0);
	T_EQ_INT(read_check(r, o, 7 * MiB + 3, 4096), 4096);	/* partly cached already */
	snprintf(path, sizeof(path), "%s/staged", x.tmp);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	T_CHECK(fd >= 0);
	T_EQ_INT(ftruncate(fd, 30 * MiB), 0);			/* longer: must end up exact */
	T_EQ_INT(cache_remote_copy_to(r, fd, NULL), 0);
	T_EQ_INT(lseek(fd, 0, SEEK_END), o->size);
	buf = malloc(o->size);
	T_EQ_INT(pread(fd, buf, o->size, 0), o->size);
	T_CHECK(memcmp(buf, o->data, o->size) == 0);
	T_EQ_INT(x.f.bytes, o->size);
	T_EQ_INT(x.f.overlaps, 0);
	T_EQ_INT(x.f.beyond, 0);
	printf("  note: copy_to of %" PRIu64 " bytes: %d GETs\n", o->size, x.f.gets);
	free(buf);
	close(fd);
	unlink(path);
	cache_remote_close(r);
	fx_teardown(&x);
}

struct reader {
	struct cache_remote *r;
	const struct fobj *o;
	unsigned seed;
	int bad;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	uint8_t *buf = malloc(300 * KiB);

	for (int i = 0; i < 150; i++) {
		uint64_t off = (uint64_t)rand_r(&rd->seed) % rd->o->size;
		size_t len = 1 + (size_t)rand_r(&rd->seed) % (300 * KiB);
		uint64_t want = len < rd->o->size - off ? len : rd->o->size - off;
		ssize_t n = cache_remote_read(rd->r, buf, len, off, NULL);

		if (n != (ssize_t)want || memcmp(buf, rd->o->data + off, want) != 0)
			rd->bad++;
	}
	free(buf);
	return NULL;
}

static void test_concurrent_readers(void)
{
	struct fx x;
	struct cache_remote *r = NULL;
	struct reader readers[4];
	pthread_t th[4];
	struct fobj *o;

	fx_setup(&x, 256 * KiB);
	o = fake_put(&x.f, "a", 10 * MiB + 77, 10);
	x.f.delay_us = 200;
	T_EQ_INT(cache_remote_open(x.rd, "b", "a", o->size, "e", &r), 0);
	for (int i = 0; i < 4; i++) {
		readers[i] = (struct reader){ r, o, 1000u + (unsigned)i, 0 };
		T_EQ_INT(pthread_create(&th[i], NULL, reader_main, &readers[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		T_EQ_INT(readers[i].bad, 0);
	}
	printf("  note: 4 threads x 150 random reads: %d GETs, %" PRIu64 " of %" PRIu64
	       " bytes fetched\n", x.f.gets, x.f.bytes, o->size);
	T_EQ_INT(x.f.overlaps, 0);	/* every chunk fetched at most once */
	T_EQ_INT(x.f.beyond, 0);
	T_CHECK(x.f.bytes <= o->size);
	cache_remote_close(r);
	fx_teardown(&x);
}

static void test_evict_lru(void)
{
	struct fx x;
	struct cache_remote *ra = NULL, *rb = NULL, *rc = NULL;
	struct fobj *a, *b, *c;
	uint64_t total, freed;
	int gets;

	fx_setup(&x, 0);
	a = fake_put(&x.f, "a", MiB, 11);
	b = fake_put(&x.f, "b", MiB, 12);
	c = fake_put(&x.f, "c", MiB, 13);
	T_EQ_INT(cache_remote_open(x.rd, "b", "a", MiB, "e", &ra), 0);
	T_EQ_INT(cache_remote_open(x.rd, "b", "b", MiB, "e", &rb), 0);
	T_EQ_INT(cache_remote_open(x.rd, "b", "c", MiB, "e", &rc), 0);
	T_EQ_INT(read_check(ra, a, 0, MiB), MiB);
	T_EQ_INT(read_check(rb, b, 0, MiB), MiB);
	T_EQ_INT(read_check(rc, c, 0, MiB), MiB);
	total = cache_rdir_bytes(x.rd);
	T_CHECK(total >= 3 * MiB);
	/* c is used last but closed first: it is the least recently used idle one */
	cache_remote_close(rc);
	cache_remote_close(ra);
	T_EQ_INT(cache_rdir_evict(x.rd, total), 0);	/* already under target */
	freed = cache_rdir_evict(x.rd, total - 1);
	T_CHECK(freed >= MiB);
	T_EQ_INT(count_files(x.dir), 2);
	T_EQ_INT(cache_rdir_bytes(x.rd), total - freed);
	/* a is still cached, c is fetched again */
	gets = x.f.gets;
	T_EQ_INT(cache_remote_open(x.rd, "b", "a", MiB, "e", &ra), 0);
	T_EQ_INT(read_check(ra, a, 0, MiB), MiB);
	T_EQ_INT(x.f.gets, gets);
	cache_remote_close(ra);
	/* evicting everything spares the open one */
	T_CHECK(cache_rdir_evict(x.rd, 0) >= MiB);
	T_EQ_INT(count_files(x.dir), 1);
	T_EQ_INT(read_check(rb, b, 0, MiB), MiB);
	T_EQ_INT(x.f.gets, gets);
	T_EQ_INT(cache_remote_open(x.rd, "b", "c", MiB, "e", &rc), 0);
	T_EQ_INT(read_check(rc, c, 0, MiB), MiB);
	T_EQ_INT(x.f.gets, gets + 1);
	T_EQ_INT(cache_remote_open(x.rd, "b", "a", MiB, "e", &ra), 0);
	T_EQ_INT(read_check(ra, a, 0, MiB), MiB);
	T_EQ_INT(x.f.gets, gets + 2);
	cache_remote_close(ra);
	cache_remote_close(rb);
	cache_remote_close(rc);
	fx_teardown(&x);
}

static void test_zero_size(void)
{
	struct fx x;
	struct cache_remote *r = NULL;
	char path[128];
	char buf[16];
	int fd;

	fx_setup(&x, 0);
	fake_put(&x.f, "empty", 0, 14);
	T_EQ_INT(cache_remote_open(x.rd, "b", "empty", 0, "d41d8cd98f00b204e9800998ecf8427e", &r), 0);
	T_EQ_INT(cache_remote_read(r, buf, sizeof(buf), 0, NULL), 0);
	T_EQ_INT(cache_remote_read(r, buf, sizeof(buf), 10, NULL), 0);
	snprintf(path, sizeof(path), "%s/staged", x.tmp);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	T_CHECK(fd >= 0);
	T_EQ_INT(write(fd, "junk", 4), 4);
	T_EQ_INT(cache_remote_copy_to(r, fd, NULL), 0);
	T_EQ_INT(lseek(fd, 0, SEEK_END), 0);
	T_EQ_INT(x.f.gets, 0);
	close(fd);
	unlink(path);
	cache_remote_close(r);
	fx_teardown(&x);
}

static void touch(const char *dir, const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	T_CHECK(fd >= 0);
	T_EQ_INT(write(fd, "left", 4), 4);
	close(fd);
}

static void test_rdir_create_empties(void)
{
	struct fake f = { .n = 0 };
	struct store s = { .ctx = &f, .get_to_fd = fake_get_to_fd };
	struct cache_rdir *rd = NULL;
	char tmp[64], dir[96], sub[128];
	struct stat st;

	snprintf(tmp, sizeof(tmp), "/tmp/test_remote.XXXXXX");
	T_CHECK(mkdtemp(tmp) != NULL);
	snprintf(dir, sizeof(dir), "%s/remote", tmp);
	/* absent: created 0700 */
	T_EQ_INT(cache_rdir_create(&rd, dir, &s, 0), 0);
	T_EQ_INT(stat(dir, &st), 0);
	T_CHECK(S_ISDIR(st.st_mode));
	T_EQ_INT(st.st_mode & 0777, 0700);
	cache_rdir_destroy(rd);
	rd = NULL;
	/* leftovers from a previous run: emptied (subdirectories are not ours, left alone) */
	touch(dir, "0123abcd");
	touch(dir, ".hidden");
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	T_EQ_INT(mkdir(sub, 0700), 0);
	T_EQ_INT(count_files(dir), 3);
	T_EQ_INT(cache_rdir_create(&rd, dir, &s, 0), 0);
	T_EQ_INT(count_files(dir), 1);
	T_EQ_INT(stat(sub, &st), 0);
	cache_rdir_destroy(rd);
	/* not a directory: an error, nothing created */
	rd = (struct cache_rdir *)&f;
	T_EQ_INT(cache_rdir_create(&rd, "/proc/version/remote", &s, 0), -ENOTDIR);
	T_CHECK(rd == NULL);
	rmdir(sub);
	rmdir(dir);
	T_EQ_INT(rmdir(tmp), 0);
}

static const struct t_case cases[] = {
	{ "sequential_readahead", test_sequential_readahead },
	{ "reread_no_get", test_reread_no_get },
	{ "random_read_one_chunk", test_random_read_one_chunk },
	{ "eof", test_eof },
	{ "etag_versions", test_etag_versions },
	{ "store_failure", test_store_failure },
	{ "short_answer", test_short_answer },
	{ "copy_to", test_copy_to },
	{ "concurrent_readers", test_concurrent_readers },
	{ "evict_lru", test_evict_lru },
	{ "zero_size", test_zero_size },
	{ "rdir_create_empties", test_rdir_create_empties },
};

T_MAIN(cases)
