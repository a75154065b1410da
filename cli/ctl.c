/* ctl.c - the control socket: a thread answering one JSON request per connection.
 *
 * The socket lives in the cache directory (0700) and is chmod 0600; SO_PEERCRED is checked
 * too, so only the daemon's own user or root is served. Requests are small; each connection is
 * read to its first newline (at most 4 KiB), answered, and closed.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "cache.h"
#include "ctl.h"
#include "log.h"

static struct {
	struct cache *cache;
	ctl_shutdown_fn shutdown;
	void *arg;
	int fd;
	pthread_t thread;
	bool running;
} srv = { .fd = -1 };

static int sock_path(const char *dir, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if ((size_t)snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/ctl.sock", dir) >=
	    sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

static char *answer(const char *line, bool *shutdown)
{
	cJSON *req = cJSON_Parse(line), *res = cJSON_CreateObject();
	const char *cmd = cJSON_GetStringValue(cJSON_GetObjectItem(req, "cmd"));
	char *out;

	if (!cmd) {
		cJSON_AddBoolToObject(res, "ok", false);
		cJSON_AddStringToObject(res, "error", "malformed request");
	} else if (!strcmp(cmd, "complete")) {
		const char *job = cJSON_GetStringValue(cJSON_GetObjectItem(req, "job"));
		int rc = job ? cache_complete_job(srv.cache, job) : -EINVAL;

		cJSON_AddBoolToObject(res, "ok", rc == 0);
		if (rc)
			cJSON_AddStringToObject(res, "error", rc == -ENOENT ?
						"no such folder in the mount" : strerror(-rc));
	} else if (!strcmp(cmd, "status")) {
		struct cache_stats st;
		char *jobs = cache_jobs_json(srv.cache);

		cache_get_stats(srv.cache, &st);
		cJSON_AddBoolToObject(res, "ok", true);
		cJSON_AddNumberToObject(res, "pid", getpid());
		cJSON_AddNumberToObject(res, "filesDirty", (double)st.files_dirty);
		cJSON_AddNumberToObject(res, "filesQueued", (double)st.files_queued);
		cJSON_AddNumberToObject(res, "filesUploading", (double)st.files_uploading);
		cJSON_AddNumberToObject(res, "filesClean", (double)st.files_clean);
		cJSON_AddNumberToObject(res, "filesFailed", (double)st.files_failed);
		cJSON_AddNumberToObject(res, "bytesDirty", (double)st.bytes_dirty);
		cJSON_AddNumberToObject(res, "bytesClean", (double)st.bytes_clean);
		cJSON_AddNumberToObject(res, "uploadsOk", (double)st.uploads_ok);
		cJSON_AddNumberToObject(res, "uploadsFailed", (double)st.uploads_failed);
		cJSON_AddNumberToObject(res, "bytesUploaded", (double)st.bytes_uploaded);
		cJSON_AddNumberToObject(res, "deletesPending", (double)st.deletes_pending);
		cJSON_AddItemToObject(res, "jobs", jobs ? cJSON_Parse(jobs) : cJSON_CreateArray());
		free(jobs);
	} else if (!strcmp(cmd, "upload")) {
		const char *job = cJSON_GetStringValue(cJSON_GetObjectItem(req, "job"));
		int n = job ? cache_requeue_job(srv.cache, job,
						cJSON_IsTrue(cJSON_GetObjectItem(req, "onlyFailed"))) : -EINVAL;

		cJSON_AddBoolToObject(res, "ok", n >= 0);
		if (n >= 0)
			cJSON_AddNumberToObject(res, "queued", n);
		else
			cJSON_AddStringToObject(res, "error", n == -ENOENT ? "no such job in the mount" :
						strerror(-n));
	} else if (!strcmp(cmd, "shutdown")) {
		*shutdown = true;
		cJSON_AddBoolToObject(res, "ok", true);
	} else {
		cJSON_AddBoolToObject(res, "ok", false);
		cJSON_AddStringToObject(res, "error", "unknown command");
	}
	out = cJSON_PrintUnformatted(res);
	cJSON_Delete(req);
	cJSON_Delete(res);
	return out;
}

static void serve(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	char buf[4096];
	size_t n = 0;
	bool shutdown = false;
	char *out;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ||
	    (cr.uid != getuid() && cr.uid != 0)) {
		log_msg(LOG_WARNING, "control socket: refused a caller", "uid=%u", (unsigned)cr.uid);
		return;
	}
	while (n < sizeof(buf) - 1) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&p, 1, 5000) <= 0)
			return;
		r = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (r <= 0)
			return;
		n += (size_t)r;
		if (memchr(buf, '\n', n))
			break;
	}
	buf[n] = '\0';
	out = answer(buf, &shutdown);
	if (shutdown && srv.shutdown)
		srv.shutdown(srv.arg);	/* drains and unmounts before we answer */
	if (out) {
		size_t ol = strlen(out);

		if (write(fd, out, ol) != (ssize_t)ol || write(fd, "\n", 1) != 1) {
			/* the client went away */
		}
	}
	free(out);
}

static void *ctl_main(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept4(srv.fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		serve(fd);
		close(fd);
	}
}

int ctl_server_start(struct cache *cache, const char *cache_dir, ctl_shutdown_fn shutdown, void *arg)
{
	struct sockaddr_un sa;
	int rc = sock_path(cache_dir, &sa);

	if (rc)
		return rc;
	srv.cache = cache;
	srv.shutdown = shutdown;
	srv.arg = arg;
	srv.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (srv.fd < 0)
		return -errno;
	unlink(sa.sun_path);
	if (bind(srv.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sa.sun_path, 0600) < 0 ||
	    listen(srv.fd, 16) < 0) {
		rc = -errno;
		close(srv.fd);
		srv.fd = -1;
		return rc;
	}
	if (pthread_create(&srv.thread, NULL, ctl_main, NULL) != 0)
		return -EAGAIN;
	srv.running = true;
	return 0;
}

void ctl_server_stop(void)
{
	if (srv.fd >= 0)
		shutdown(srv.fd, SHUT_RDWR);
	if (srv.running && !pthread_equal(pthread_self(), srv.thread))
		pthread_join(srv.thread, NULL);
	if (srv.fd >= 0)
		close(srv.fd);
	srv.fd = -1;
	srv.running = false;
}

char *ctl_request(const char *cache_dir, const char *request_json, int timeout_s)
{
	struct sockaddr_un sa;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int fd, e;

	if (sock_path(cache_dir, &sa)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	/* MSG_NOSIGNAL: a daemon that hangs up (it refuses another uid) must not kill us */
	if (send(fd, request_json, strlen(request_json), MSG_NOSIGNAL) < 0 ||
	    send(fd, "\n", 1, MSG_NOSIGNAL) < 0) {
		if (errno == EPIPE || errno == ECONNRESET)
			errno = EACCES;
		goto fail;
	}
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&p, 1, timeout_s * 1000) <= 0) {
			errno = ETIMEDOUT;
			goto fail;
		}
		if (n + 1024 > cap) {
			char *nb = realloc(buf, cap = cap ? cap * 2 : 4096);

			if (!nb)
				goto fail;
			buf = nb;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0) {
			if (errno == ECONNRESET && n == 0)
				errno = EACCES;
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (!n) {		/* hung up without an answer: the daemon refused us */
		free(buf);
		errno = EACCES;
		return NULL;
	}
	buf[n] = '\0';
	return buf;
fail:
	e = errno;
	close(fd);
	free(buf);
	errno = e;
	return NULL;
}
