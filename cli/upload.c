/* upload.c - `s3jobfs upload`: the scraper guide's manual upload_job_to_s3().
 *
 * `upload JOB [--only-failed]` asks the running daemon to queue a job's files again.
 * `upload --path DIR` uploads a plain job folder that is not under the mount (an existing
 * local job from before s3jobfs), with the same object keys (S3_PREFIX or --prefix, folder
 * name, relative path), the job's policy from its jobs row, and the same status reporting in
 * PostgreSQL; files go one after the other with the S3 client's retries.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "cfg.h"
#include "cli.h"
#include "ctl.h"
#include "log.h"
#include "meta.h"
#include "s3.h"

struct walk {
	struct s3_client *c;
	struct meta *meta;
	struct meta_policy policy;
	const char *bucket, *prefix, *folder;
	char uuid[37];
	uint64_t files, bytes, failed, skipped;
	struct meta_error errs[100];
	size_t n_errs;
};

static int upload_file(struct walk *w, int dfd, const char *name, const char *rel)
{
	struct s3_put_opts o = { .set_meta = true };
	struct s3_error e;
	struct stat st;
	char *key = NULL, etag[72] = "", et[300];
	int fd, rc;

	if (w->uuid[0] && !meta_policy_includes(&w->policy, rel)) {
		w->skipped++;
		return 0;
	}
	fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	o.mode = st.st_mode;
	o.uid = st.st_uid;
	o.gid = st.st_gid;
	o.mtime = st.st_mtim;
	if (asprintf(&key, "%s%s/%s", w->prefix, w->folder, rel) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	rc = s3_put_file(w->c, w->bucket, key, fd, (uint64_t)st.st_size, &o, etag, &e);
	if (rc == 0) {
		w->files++;
		w->bytes += (uint64_t)st.st_size;
		printf("uploaded s3://%s/%s (%" PRIu64 " bytes)\n", w->bucket, key, (uint64_t)st.st_size);
	} else {
		w->failed++;
		fprintf(stderr, "s3jobfs: cannot upload '%s': %s\n", rel, s3_error_text(&e, et, sizeof(et)));
		if (w->n_errs < 100) {
			struct meta_error *me = &w->errs[w->n_errs++];

			me->file = strdup(rel);
			me->code = strdup(e.code);
			me->message = strdup(e.message);
			me->attempts = e.attempts;
			me->at = time(NULL);
		}
	}
	if (w->uuid[0])
		meta_post_file(w->meta, w->uuid, rel, w->bucket, key, (uint64_t)st.st_size, NULL,
			       rc ? NULL : etag, rc ? "failed" : "uploaded", e.attempts,
			       rc ? s3_error_text(&e, et, sizeof(et)) : NULL);
out:
	if (fd >= 0)
		close(fd);
	free(key);
	return 0;
}

/* Upload every regular file under dfd (relative prefix rel_dir). */
static int walk_dir(struct walk *w, int dfd, const char *rel_dir)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;

	if (!d) {
		close(dfd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		char *rel = NULL;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    asprintf(&rel, "%s%s%s", rel_dir, *rel_dir ? "/" : "", de->d_name) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

			if (sub >= 0)
				walk_dir(w, sub, rel);
		} else if (S_ISREG(st.st_mode)) {
			upload_file(w, dirfd(d), de->d_name, rel);
		}
		free(rel);
	}
	closedir(d);
	return 0;
}

static void post_status(struct walk *w, const char *status, int dfd)
{
	struct meta_job_state st = { 0 };
	char *tops[64];
	size_t n = 0;
	DIR *d = fdopendir(openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	struct dirent *de;

	while (d && (de = readdir(d)) != NULL && n < 64)
		if (de->d_name[0] != '.' &&
		    asprintf(&tops[n], "%s%s", de->d_name, de->d_type == DT_DIR ? "/" : "") >= 0)
			n++;
	if (d)
		closedir(d);
	st.uuid = w->uuid;
	st.folder = w->folder;
	st.bucket = w->bucket;
	st.prefix = w->prefix;
	st.enabled = strcmp(status, "disabled") != 0;
	st.status = status;
	st.top_entries = (const char *const *)tops;
	st.n_top = n;
	st.errors = w->errs;
	st.n_errors = w->n_errs;
	meta_post_job(w->meta, &st);
	for (size_t i = 0; i < n; i++)
		free(tops[i]);
}

static int upload_path(const struct cfg *cfg, const char *path, const char *bucket, const char *prefix)
{
	struct walk w = { 0 };
	char *norm_prefix = NULL, *copy = strdup(path), *base;
	int dfd = -1, rc = 1;
	size_t n;

	if (!copy)
		return 1;
	n = strlen(copy);
	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	base = strrchr(copy, '/') ? strrchr(copy, '/') + 1 : copy;
	w.folder = base;
	w.bucket = bucket ? bucket : cfg->bucket;
	if (asprintf(&norm_prefix, "%s%s", prefix ? prefix : cfg->prefix,
		     prefix && *prefix && prefix[strlen(prefix) - 1] != '/' ? "/" : "") < 0)
		goto out;
	w.prefix = norm_prefix;
	dfd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		fprintf(stderr, "s3jobfs: cannot open directory '%s': %s\n", path, strerror(errno));
		goto out;
	}
	if (!w.bucket) {
		fprintf(stderr, "s3jobfs: no bucket: set S3_BUCKET_NAME or pass --bucket\n");
		goto out;
	}
	if (s3_client_create(&w.c, cfg, NULL) != 0 || meta_create(&w.meta, cfg) != 0)
		goto out;
	if (!meta_parse_job_folder(base, w.uuid))
		w.uuid[0] = '\0';
	if (w.uuid[0] && cfg->database_url) {
		meta_start(w.meta, NULL, NULL);
		/* the row's policy: give the meta thread a moment to read it */
		for (int i = 0; i < 50; i++) {
			if (meta_policy_get(w.meta, w.uuid, &w.policy) == 0 && w.policy.have_row)
				break;
			meta_policy_release(&w.policy);
			usleep(100000);
		}
	} else {
		meta_policy_from_json(NULL, cfg->s3_enabled, &w.policy);
	}
	if (w.uuid[0] && w.policy.have_row && !w.policy.enabled) {
		printf("job %s: uploadToS3.enabled is false: nothing uploaded\n", w.uuid);
		post_status(&w, "disabled", dfd);
		rc = 0;
		goto out;
	}
	if (w.uuid[0])
		post_status(&w, "uploading", dfd);
	walk_dir(&w, openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), "");
	if (w.uuid[0])
		post_status(&w, !w.failed ? "success" : w.files ? "partial" : "failed", dfd);
	printf("%" PRIu64 " files uploaded (%" PRIu64 " bytes), %" PRIu64 " failed, %" PRIu64 " skipped by policy\n",
	       w.files, w.bytes, w.failed, w.skipped);
	rc = w.failed ? 1 : 0;
out:
	meta_destroy(w.meta);	/* writes what was posted */
	meta_policy_release(&w.policy);
	s3_client_destroy(w.c);
	for (size_t i = 0; i < w.n_errs; i++) {
		free((char *)w.errs[i].file);
		free((char *)w.errs[i].code);
		free((char *)w.errs[i].message);
	}
	if (dfd >= 0)
		close(dfd);
	free(norm_prefix);
	free(copy);
	return rc;
}

static void upload_usage(FILE *f)
{
	fprintf(f, "usage: s3jobfs upload [--cache-dir DIR] JOB [--only-failed]\n"
		   "       s3jobfs upload --path DIR [--bucket B] [--prefix P]\n\n"
		   "JOB (a job folder name or its uuid): the running daemon queues the job's files that\n"
		   "are not in S3 (with --only-failed: those whose upload failed) for upload again.\n"
		   "--path DIR: upload a job folder that is not under the mount, with the same keys,\n"
		   "the job's policy and status in PostgreSQL; --bucket/--prefix override S3_BUCKET_NAME\n"
		   "and S3_PREFIX like the guide's s3_config. Exit 0 when every file was uploaded.\n");
}

int cli_upload(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cache-dir", required_argument, NULL, 'c' },
		{ "env-file", required_argument, NULL, 'e' },
		{ "only-failed", no_argument, NULL, 'f' },
		{ "path", required_argument, NULL, 'p' },
		{ "bucket", required_argument, NULL, 'b' },
		{ "prefix", required_argument, NULL, 'x' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *env_file = NULL, *path = NULL, *bucket = NULL, *prefix = NULL;
	bool only_failed = false, verbose = false;
	struct cfg cfg;
	char *req = NULL, *ans = NULL;
	int opt, rc = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': dir = optarg; break;
		case 'e': env_file = optarg; break;
		case 'f': only_failed = true; break;
		case 'p': path = optarg; break;
		case 'b': bucket = optarg; break;
		case 'x': prefix = optarg; break;
		case 'v': verbose = true; break;
		case 'h': upload_usage(stdout); return 0;
		default: upload_usage(stderr); return 2;
		}
	}
	if ((path && optind != argc) || (!path && optind != argc - 1)) {
		upload_usage(stderr);
		return 2;
	}
	if (cfg_load(&cfg, env_file, stderr) != 0)
		return 2;
	log_init("s3jobfs", verbose ? LOG_DEBUG : LOG_WARNING, false);
	if (path) {
		rc = upload_path(&cfg, path, bucket, prefix);
	} else {
		cJSON *q = cJSON_CreateObject(), *a;

		cJSON_AddStringToObject(q, "cmd", "upload");
		cJSON_AddStringToObject(q, "job", argv[optind]);
		cJSON_AddBoolToObject(q, "onlyFailed", only_failed);
		req = cJSON_PrintUnformatted(q);
		cJSON_Delete(q);
		ans = req ? ctl_request(dir ? dir : cfg.cache_dir, req, 30) : NULL;
		if (!ans) {
			fprintf(stderr, "s3jobfs: no daemon answers for cache directory '%s'\n",
				dir ? dir : cfg.cache_dir);
		} else if ((a = cJSON_Parse(ans)) && cJSON_IsTrue(cJSON_GetObjectItem(a, "ok"))) {
			printf("%d files of '%s' queued for upload\n",
			       (int)cJSON_GetNumberValue(cJSON_GetObjectItem(a, "queued")), argv[optind]);
			rc = 0;
			cJSON_Delete(a);
		} else {
			fprintf(stderr, "s3jobfs: %s\n",
				a ? cJSON_GetStringValue(cJSON_GetObjectItem(a, "error")) ?: "error" : "bad answer");
			cJSON_Delete(a);
		}
	}
	free(req);
	free(ans);
	cfg_release(&cfg);
	return rc;
}
