/* mount.c - `s3jobfs mount`, `umount` and `complete`: the daemon's lifecycle.
 *
 * mount: load the configuration, detach a stale mount left by a dead daemon, open the cache
 * (lock, journal replay, scan: errors are reported before anything is mounted), mount FUSE
 * with fsname "s3jobfs:<cache-dir>" (so `umount` finds the cache from /proc/self/mountinfo),
 * daemonise unless -f, then start the upload workers, the control socket and a signal thread
 * from FUSE's init. SIGTERM/SIGINT/SIGHUP and `s3jobfs umount` take the same path: drain the
 * upload queue for up to S3JOBFS_DRAIN_TIMEOUT seconds, unmount, exit; what is left stays in
 * the cache and resumes on the next mount.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "cache.h"
#include "cfg.h"
#include "cli.h"
#include "ctl.h"
#include "fs.h"
#include "log.h"
#include "meta.h"
#include "metrics.h"
#include "s3.h"
#include "s3_creds.h"
#include "store.h"

struct daemon {
	const struct cfg *cfg;
	struct cache *cache;
	struct meta *meta;
	struct s3_client *s3;
	struct fuse *fuse;
	int metrics_fd;		/* listening, -1: no --metrics-addr; the server owns it once started */
	const char *metrics_addr;
	char *cache_dir;
	char *mountpoint;
	pthread_mutex_t lock;
	bool shutting_down;	/* protected by lock */
	pthread_t sig_thread;
	bool sig_started;
	sigset_t sigs;
};

/* ------------------------------------------------------------------ mountinfo */

/* Undo mountinfo's octal escapes (\040 for space ...) in place. */
static void mi_unescape(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] && p[3]) {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

/* Find the mount at `mp` (absolute); on success *source and *fstype are heap strings. */
static int find_mount(const char *mp, char **source, char **fstype)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char *line = NULL;
	size_t cap = 0;
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *fields[12] = { 0 }, *sep;
		int n = 0;

		sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		for (char *t = strtok_r(line, " ", &save); t && n < 12; t = strtok_r(NULL, " ", &save))
			fields[n++] = t;
		if (n < 5)
			continue;
		mi_unescape(fields[4]);
		if (strcmp(fields[4], mp) != 0)
			continue;
		{
			char *s2 = NULL, *type = strtok_r(sep + 3, " ", &s2), *src = strtok_r(NULL, " ", &s2);

			if (!type || !src)
				continue;
			mi_unescape(src);
			free(*source);
			free(*fstype);
			*source = strdup(src);
			*fstype = strdup(type);
			rc = 0;	/* keep going: the last (topmost) mount wins */
		}
	}
	free(line);
	fclose(f);
	return rc;
}

/* Absolute, normalised path without touching the filesystem (a stale mount can't be stat'ed). */
static char *abs_path(const char *p)
{
	char cwd[PATH_MAX], *s = NULL;
	size_t n;

	if (p[0] == '/') {
		s = strdup(p);
	} else if (getcwd(cwd, sizeof(cwd))) {
		if (asprintf(&s, "%s/%s", cwd, p) < 0)
			s = NULL;
	}
	if (!s)
		return NULL;
	n = strlen(s);
	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
	return s;
}

static int run_fusermount_detach(const char *mp)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-z", "--", mp, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static bool daemon_alive(const char *cache_dir);

/* A mountpoint whose daemon died answers ENOTCONN: detach it so we can mount again. stat()
 * may be answered from the kernel's attribute cache, so ask statfs() (always sent to the
 * daemon), and for an s3jobfs mount also whether its daemon still holds the cache lock. */
static int recover_stale(const char *mp)
{
	struct statvfs vfs;
	char *source = NULL, *fstype = NULL;
	bool stale;

	if (find_mount(mp, &source, &fstype) != 0)
		return 0;
	stale = statvfs(mp, &vfs) < 0 && errno == ENOTCONN;
	if (!stale && !strcmp(fstype, "fuse.s3jobfs") && !strncmp(source, "s3jobfs:", 8))
		stale = !daemon_alive(source + 8);
	free(source);
	free(fstype);
	if (!stale)
		return 0;
	log_msg(LOG_WARNING, "stale mount found, detaching it", "mountpoint=%s", mp);
	if (umount2(mp, MNT_DETACH) == 0 || run_fusermount_detach(mp) == 0)
		return 0;
	fprintf(stderr, "s3jobfs: '%s' is a stale mount (transport endpoint is not connected) and "
			"cannot be detached; run 'fusermount3 -uz %s'\n", mp, mp);
	return -EBUSY;
}

/* ------------------------------------------------------------------ shutdown */

static void daemon_shutdown(void *arg)
{
	struct daemon *d = arg;
	int left;

	pthread_mutex_lock(&d->lock);
	if (d->shutting_down) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	d->shutting_down = true;
	pthread_mutex_unlock(&d->lock);
	log_msg(LOG_INFO, "draining uploads before unmount", "timeout_s=%d", d->cfg->drain_timeout);
	left = cache_drain(d->cache, d->cfg->drain_timeout);
	if (left)
		log_msg(LOG_WARNING, "drain timed out, files stay in the cache for the next mount",
			"pending=%d cache_dir=%s", left, d->cache_dir);
	else
		log_msg(LOG_INFO, "drain done", NULL);
	fuse_exit(d->fuse);
	/* wake a FUSE worker so the loop sees the exit flag; main then unmounts */
	{
		struct statvfs vfs;

		statvfs(d->mountpoint, &vfs);
	}
}

static void *sig_main(void *arg)
{
	struct daemon *d = arg;
	int sig;

	while (sigwait(&d->sigs, &sig) == 0) {
		log_msg(LOG_INFO, "signal received", "signal=%s", strsignal(sig));
		daemon_shutdown(d);
		return NULL;
	}
	return NULL;
}

/* A jobs row reached a terminal status (meta thread). */
static void on_job_complete(void *arg, const char *uuid)
{
	struct daemon *d = arg;

	cache_complete_uuid(d->cache, uuid);
}

/* FUSE init: we are daemonised now; threads may start. */
static int on_init(void *arg)
{
	struct daemon *d = arg;
	int rc = cache_start(d->cache);

	if (rc == 0 && d->meta)
		rc = meta_start(d->meta, on_job_complete, d);

	if (rc == 0)
		rc = ctl_server_start(d->cache, d->cache_dir, daemon_shutdown, d);
	if (rc == 0 && d->metrics_fd >= 0) {
		rc = metrics_start(d->metrics_fd, d->cache, d->s3, d->meta);
		d->metrics_fd = -1;
		if (rc == 0)
			log_msg(LOG_INFO, "metrics served", "url=http://%s/metrics", d->metrics_addr);
	}
	if (rc == 0 && pthread_create(&d->sig_thread, NULL, sig_main, d) != 0)
		rc = -EAGAIN;
	if (rc == 0)
		d->sig_started = true;
	log_msg(rc ? LOG_ERR : LOG_INFO, rc ? "cannot start" : "mounted", "mountpoint=%s cache_dir=%s",
		d->mountpoint, d->cache_dir);
	return rc;
}

/* ------------------------------------------------------------------ mount */

static void mount_usage(FILE *f)
{
	fprintf(f, "usage: s3jobfs mount [options] MOUNTPOINT\n\n"
		   "Mounts the S3 prefix S3_PREFIX of S3_BUCKET_NAME at MOUNTPOINT. Files written\n"
		   "there are staged in the cache directory and uploaded after their last close\n"
		   "(S3_UPLOAD_ON_COMPLETION=false) or when their job folder completes (true).\n\n"
		   "  -f, --foreground     stay in the foreground, log to stderr\n"
		   "  -o OPT[,OPT...]      FUSE mount options (e.g. allow_other; see mount.fuse3(8))\n"
		   "  --cache-dir DIR      cache directory (default $S3JOBFS_CACHE_DIR or /var/cache/s3jobfs)\n"
		   "  --read-only          browse and read S3 only; every write fails with EROFS\n"
		   "  --env-file FILE      read FILE instead of ./.env\n"
		   "  --metrics-addr ADDR  serve Prometheus metrics at http://ADDR/metrics\n"
		   "                       (HOST:PORT, or :PORT for 127.0.0.1; off by default)\n"
		   "  --syslog             log to syslog (daemon facility) instead of a file\n"
		   "  -v, --verbose        debug logging (never secrets)\n\n"
		   "Without -f, logs go to <cache-dir>/s3jobfs.log. Stop with 's3jobfs umount MOUNTPOINT'\n"
		   "or SIGTERM: queued uploads drain for S3JOBFS_DRAIN_TIMEOUT seconds first.\n");
}

int cli_mount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "cache-dir", required_argument, NULL, 'c' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "env-file", required_argument, NULL, 'e' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "metrics-addr", required_argument, NULL, 'm' },
		{ "syslog", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon d = { .metrics_fd = -1 };
	struct fs_ctx fctx = { 0 };
	struct cfg cfg;
	struct cache_params cp = { 0 };
	struct s3_creds_provider *creds = NULL;
	struct s3_client *client = NULL;
	struct store *store = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *lc = NULL;
	const char *env_file = NULL, *cache_dir = NULL;
	char *fuse_opts = NULL, *o = NULL;
	bool fg = false, ro = false, verbose = false, cfg_loaded = false, use_syslog = false;
	int opt, rc = 1, r;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "fo:vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'f': fg = true; break;
		case 'o':
			if (asprintf(&o, "%s%s%s", fuse_opts ? fuse_opts : "", fuse_opts ? "," : "", optarg) < 0)
				return 1;
			free(fuse_opts);
			fuse_opts = o;
			break;
		case 'c': cache_dir = optarg; break;
		case 'r': ro = true; break;
		case 'e': env_file = optarg; break;
		case 'v': verbose = true; break;
		case 'm': d.metrics_addr = optarg; break;
		case 's': use_syslog = true; break;
		case 'h': mount_usage(stdout); return 0;
		default: mount_usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		mount_usage(stderr);
		free(fuse_opts);
		return 2;
	}
	if (cfg_load(&cfg, env_file, stderr) != 0) {
		free(fuse_opts);
		return 2;
	}
	cfg_loaded = true;
	d.cfg = &cfg;
	pthread_mutex_init(&d.lock, NULL);
	log_init("s3jobfs", verbose ? LOG_DEBUG :
		 !strcmp(cfg.log_level, "debug") ? LOG_DEBUG : !strcmp(cfg.log_level, "error") ? LOG_ERR :
		 !strcmp(cfg.log_level, "warning") ? LOG_WARNING : !strcmp(cfg.log_level, "notice") ?
		 LOG_NOTICE : LOG_INFO, use_syslog);
	d.mountpoint = abs_path(argv[optind]);
	if (!cache_dir)
		cache_dir = cfg.cache_dir;
	if (mkdir(cache_dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "s3jobfs: cannot create cache directory '%s': %s\n", cache_dir, strerror(errno));
		goto out;
	}
	d.cache_dir = realpath(cache_dir, NULL);
	if (!d.mountpoint || !d.cache_dir) {
		fprintf(stderr, "s3jobfs: cannot resolve '%s': %s\n", d.cache_dir ? argv[optind] : cache_dir,
			strerror(errno));
		goto out;
	}
	if (recover_stale(d.mountpoint) != 0)
		goto out;
	if (!strncmp(d.cache_dir, d.mountpoint, strlen(d.mountpoint)) &&
	    (d.cache_dir[strlen(d.mountpoint)] == '/' || d.cache_dir[strlen(d.mountpoint)] == '\0')) {
		fprintf(stderr, "s3jobfs: the cache directory '%s' must not be inside the mountpoint\n",
			d.cache_dir);
		goto out;
	}
	if (cfg.s3_enabled) {
		if (s3_creds_provider_create(&creds, &cfg) || s3_client_create(&client, &cfg, creds) ||
		    store_s3_create(&store, client)) {
			fprintf(stderr, "s3jobfs: cannot set up the S3 client (see 's3jobfs check')\n");
			goto out;
		}
	} else {
		log_msg(LOG_WARNING, "S3_ENABLED is false: files stay in the local cache only", NULL);
	}
	d.s3 = client;
	if (d.metrics_addr && (d.metrics_fd = metrics_listen(d.metrics_addr)) < 0)
		goto out;
	if (meta_create(&d.meta, &cfg) != 0) {
		fprintf(stderr, "s3jobfs: out of memory\n");
		goto out;
	}
	cp.meta = d.meta;
	cp.cfg = &cfg;
	cp.dir = d.cache_dir;
	cp.read_only = ro;
	cp.store = store;
	r = cache_open(&d.cache, &cp);
	if (r) {
		fprintf(stderr, "s3jobfs: cannot open cache directory '%s': %s\n", d.cache_dir,
			r == -EBUSY ? "another s3jobfs daemon is using it" : strerror(-r));
		goto out;
	}

	/* FUSE arguments: program name, our fsname/subtype, then the user's -o */
	{
		char *base = NULL;

		if (asprintf(&base, "fsname=s3jobfs:%s,subtype=s3jobfs%s%s%s", d.cache_dir,
			     ro ? ",ro" : "", fuse_opts ? "," : "", fuse_opts ? fuse_opts : "") < 0)
			goto out;
		if (fuse_opt_add_arg(&args, "s3jobfs") || fuse_opt_add_arg(&args, "-o") ||
		    fuse_opt_add_arg(&args, base)) {
			free(base);
			goto out;
		}
		free(base);
	}
	fctx.cache = d.cache;
	fctx.on_init = on_init;
	fctx.on_init_arg = &d;
	fctx.key_prefix_len = cfg.prefix ? strlen(cfg.prefix) : 0;
	d.fuse = fuse_new(&args, fs_operations(), sizeof(struct fuse_operations), &fctx);
	if (!d.fuse) {
		fprintf(stderr, "s3jobfs: bad FUSE options '%s'\n", fuse_opts ? fuse_opts : "");
		goto out;
	}
	if (fuse_mount(d.fuse, d.mountpoint) != 0) {
		fprintf(stderr, "s3jobfs: cannot mount on '%s' (does it exist? is /dev/fuse usable?)\n",
			d.mountpoint);
		goto out;
	}
	if (!fg) {
		char *logp = NULL;
		int lfd;

		if (fuse_daemonize(0) != 0) {
			fuse_unmount(d.fuse);
			goto out;
		}
		if (!use_syslog && asprintf(&logp, "%s/s3jobfs.log", d.cache_dir) >= 0 &&
		    (lfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) >= 0) {
			dup2(lfd, STDERR_FILENO);
			close(lfd);
		}
		free(logp);
	}
	/* signals go to the signal thread only */
	sigemptyset(&d.sigs);
	sigaddset(&d.sigs, SIGTERM);
	sigaddset(&d.sigs, SIGINT);
	sigaddset(&d.sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &d.sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(lc, 0);
	fuse_loop_cfg_set_max_threads(lc, 64);
	r = fuse_loop_mt(d.fuse, lc);
	fuse_loop_cfg_destroy(lc);
	/* unmounted from outside (fusermount -u) without a drain: drain now, briefly */
	pthread_mutex_lock(&d.lock);
	if (!d.shutting_down) {
		d.shutting_down = true;
		pthread_mutex_unlock(&d.lock);
		cache_drain(d.cache, cfg.drain_timeout);
	} else {
		pthread_mutex_unlock(&d.lock);
	}
	/* unmount first: it also fails the wake-up request of daemon_shutdown, if still pending */
	fuse_unmount(d.fuse);
	ctl_server_stop();
	metrics_stop();
	if (d.sig_started) {
		pthread_kill(d.sig_thread, SIGTERM);	/* wakes its sigwait; shutdown is a no-op now */
		pthread_join(d.sig_thread, NULL);
	}
	log_msg(LOG_INFO, "unmounted", "mountpoint=%s", d.mountpoint);
	rc = r == 0 ? 0 : 1;
out:
	if (d.metrics_fd >= 0)
		close(d.metrics_fd);
	if (d.fuse)
		fuse_destroy(d.fuse);
	fuse_opt_free_args(&args);
	cache_close(d.cache);
	meta_destroy(d.meta);	/* after the cache: its last posts are written if it can */
	if (store)
		store->destroy(store->ctx);
	free(store);
	s3_client_destroy(client);
	s3_creds_provider_destroy(creds);
	free(d.cache_dir);
	free(d.mountpoint);
	free(fuse_opts);
	if (cfg_loaded)
		cfg_release(&cfg);
	return rc;
}

/* ------------------------------------------------------------------ umount */

/* Does a daemon hold the lock of cache_dir? */
static bool daemon_alive(const char *cache_dir)
{
	char *p = NULL;
	bool alive = false;
	int fd;

	if (asprintf(&p, "%s/lock", cache_dir) < 0)
		return true;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		alive = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
		close(fd);
	}
	free(p);
	return alive;
}

/* Wait until the daemon of cache_dir has exited (its lock on the cache dir is free). */
static bool wait_daemon_gone(const char *cache_dir, int timeout_s)
{
	for (int i = 0; i < timeout_s * 10; i++) {
		struct timespec ts = { 0, 100000000 };

		if (!daemon_alive(cache_dir))
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

int cli_umount(int argc, char **argv)
{
	char *mp, *source = NULL, *fstype = NULL, *ans;
	const char *cache_dir;
	int rc = 1;

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(argc == 2 && !strcmp(argv[1], "--help") ? stdout : stderr,
			"usage: s3jobfs umount MOUNTPOINT\n\n"
			"Asks the daemon to finish queued uploads (up to S3JOBFS_DRAIN_TIMEOUT seconds),\n"
			"unmount and exit, and waits for it. A mount whose daemon is gone is detached.\n");
		return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 2;
	}
	mp = abs_path(argv[1]);
	if (!mp || find_mount(mp, &source, &fstype) != 0 || strncmp(source, "s3jobfs:", 8) != 0) {
		fprintf(stderr, "s3jobfs: '%s' is not an s3jobfs mount\n", argv[1]);
		goto out;
	}
	cache_dir = source + 8;
	ans = ctl_request(cache_dir, "{\"cmd\":\"shutdown\"}", 3600);
	if (!ans) {
		fprintf(stderr, "s3jobfs: the daemon of '%s' does not answer (%s); detaching the mount\n",
			mp, strerror(errno));
		rc = umount2(mp, MNT_DETACH) == 0 || run_fusermount_detach(mp) == 0 ? 0 : 1;
		goto out;
	}
	free(ans);
	rc = wait_daemon_gone(cache_dir, 60) ? 0 : 1;
	if (rc)
		fprintf(stderr, "s3jobfs: the daemon did not exit in time\n");
out:
	free(mp);
	free(source);
	free(fstype);
	return rc;
}

/* ------------------------------------------------------------------ complete, status (daemon) */

/* The cache dir from --cache-dir, or the configuration. Caller frees. */
static char *cache_dir_arg(const char *given, const char *env_file)
{
	struct cfg cfg;
	char *s;

	if (given)
		return strdup(given);
	if (cfg_load(&cfg, env_file, stderr) != 0)
		return NULL;
	s = strdup(cfg.cache_dir);
	cfg_release(&cfg);
	return s;
}

int cli_complete(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cache-dir", required_argument, NULL, 'c' },
		{ "env-file", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *given = NULL, *env_file = NULL, *job;
	char *dir, *req = NULL, *ans, *job_buf = NULL;
	cJSON *q, *a;
	int opt, rc = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': given = optarg; break;
		case 'e': env_file = optarg; break;
		case 'h':
			printf("usage: s3jobfs complete [--cache-dir DIR] JOBFOLDER\n"
			       "       s3jobfs complete MOUNTPOINT/JOBFOLDER\n\n"
			       "Marks the top-level folder JOBFOLDER of the running mount complete: its files\n"
			       "are uploaded now (S3_UPLOAD_ON_COMPLETION=true waits for this).\n");
			return 0;
		default: return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: s3jobfs complete [--cache-dir DIR] JOBFOLDER\n");
		return 2;
	}
	job = argv[optind];
	/* MOUNTPOINT/JOBFOLDER: the mount names its cache directory */
	if (strchr(argv[optind], '/')) {
		char *full = abs_path(argv[optind]), *slash = full ? strrchr(full, '/') : NULL;
		char *source = NULL, *fstype = NULL;

		if (!slash || slash == full || find_mount((*slash = '\0', full), &source, &fstype) != 0 ||
		    strncmp(source, "s3jobfs:", 8) != 0) {
			fprintf(stderr, "s3jobfs: '%s' is not a folder at the top of an s3jobfs mount\n",
				argv[optind]);
			free(full);
			free(source);
			free(fstype);
			return 1;
		}
		dir = strdup(source + 8);
		job = slash + 1;
		free(source);
		free(fstype);
		job_buf = full;
	} else {
		dir = cache_dir_arg(given, env_file);
	}
	if (!dir) {
		free(job_buf);
		return 2;
	}
	q = cJSON_CreateObject();
	cJSON_AddStringToObject(q, "cmd", "complete");
	cJSON_AddStringToObject(q, "job", job);
	req = cJSON_PrintUnformatted(q);
	cJSON_Delete(q);
	ans = req ? ctl_request(dir, req, 30) : NULL;
	if (!ans) {
		fprintf(stderr, "s3jobfs: no daemon answers for cache directory '%s': %s\n", dir,
			strerror(errno));
		goto out;
	}
	a = cJSON_Parse(ans);
	if (cJSON_IsTrue(cJSON_GetObjectItem(a, "ok"))) {
		printf("job '%s' marked complete; its files are queued for upload\n", job);
		rc = 0;
	} else {
		fprintf(stderr, "s3jobfs: cannot complete '%s': %s\n", job,
			cJSON_GetStringValue(cJSON_GetObjectItem(a, "error")) ?: "unknown error");
	}
	cJSON_Delete(a);
	free(ans);
out:
	free(req);
	free(dir);
	free(job_buf);
	return rc;
}
