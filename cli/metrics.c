/* metrics.c - Prometheus text metrics over HTTP (include/metrics.h).
 *
 * A deliberately small responder: one thread, one connection at a time, the request line read
 * with a 2 s timeout, `GET /metrics` answered with the text format and the connection closed.
 * Scrapers (Prometheus, curl) need nothing more, and a library for it (libmicrohttpd) would be
 * a dependency for forty lines. Counters come from the cache, the S3 client and meta, each
 * read under its own lock, so a scrape never blocks an upload for long.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cache.h"
#include "log.h"
#include "meta.h"
#include "metrics.h"
#include "s3.h"

static struct {
	int fd;
	int stop[2];
	pthread_t thread;
	bool started;
	struct cache *cache;
	struct s3_client *s3;
	struct meta *meta;
} srv = { .fd = -1, .stop = { -1, -1 } };

int metrics_listen(const char *addr)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char host[256] = "127.0.0.1";
	const char *colon = strrchr(addr, ':'), *port;
	int fd = -1, one = 1, r;

	if (!colon || !colon[1] || (size_t)(colon - addr) >= sizeof(host)) {
		fprintf(stderr, "s3jobfs: --metrics-addr '%s': expected HOST:PORT or :PORT\n", addr);
		return -EINVAL;
	}
	port = colon + 1;
	if (colon > addr) {
		const char *h = addr;
		size_t n = (size_t)(colon - addr);

		if (h[0] == '[' && h[n - 1] == ']') {
			h++;
			n -= 2;
		}
		memcpy(host, h, n);
		host[n] = '\0';
	}
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		fprintf(stderr, "s3jobfs: --metrics-addr '%s': %s\n", addr, gai_strerror(r));
		return -EINVAL;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		r = -errno;
		fprintf(stderr, "s3jobfs: cannot listen on --metrics-addr '%s': %s\n", addr,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = r;
	}
	freeaddrinfo(res);
	return fd;
}

/* Append printf output to a growing buffer; on ENOMEM *b becomes NULL and stays so. */
__attribute__((format(printf, 3, 4)))
static void add(char **b, size_t *len, const char *fmt, ...)
{
	va_list ap;
	char *line = NULL, *nb;
	int n;

	if (!*b)
		return;
	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0 || !(nb = realloc(*b, *len + (size_t)n + 1))) {
		free(line);
		free(*b);
		*b = NULL;
		return;
	}
	memcpy(nb + *len, line, (size_t)n + 1);
	*len += (size_t)n;
	*b = nb;
	free(line);
}

/* One metric with its HELP and TYPE lines. */
static void metric(char **b, size_t *len, const char *name, const char *type, const char *help,
		   uint64_t v)
{
	add(b, len, "# HELP s3jobfs_%s %s\n# TYPE s3jobfs_%s %s\ns3jobfs_%s %" PRIu64 "\n", name,
	    help, name, type, name, v);
}

char *metrics_text(struct cache *cache, struct s3_client *s3, struct meta *meta)
{
	struct cache_stats st;
	size_t len = 0;
	char *b = calloc(1, 1);

	cache_get_stats(cache, &st);
	metric(&b, &len, "uploads_started_total", "counter", "Uploads started (a file taken from the queue).",
	       st.uploads_started);
	metric(&b, &len, "uploads_succeeded_total", "counter", "Files uploaded.", st.uploads_ok);
	metric(&b, &len, "uploads_failed_total", "counter",
	       "Uploads that failed after S3_MAX_RETRIES (the file is kept and retried later).",
	       st.uploads_failed);
	metric(&b, &len, "uploaded_bytes_total", "counter", "Bytes uploaded.", st.bytes_uploaded);
	metric(&b, &len, "upload_queue_depth", "gauge", "Files queued for upload.", st.files_queued);
	metric(&b, &len, "uploads_in_progress", "gauge", "Files being uploaded now.", st.files_uploading);
	metric(&b, &len, "files_failed", "gauge", "Files whose last upload failed.", st.files_failed);
	metric(&b, &len, "deletes_pending", "gauge", "Objects waiting to be deleted.", st.deletes_pending);
	metric(&b, &len, "cache_dirty_bytes", "gauge",
	       "Bytes in the cache not yet in S3 (dirty, queued, uploading, failed).", st.bytes_dirty);
	metric(&b, &len, "cache_clean_bytes", "gauge", "Bytes in the cache that are also in S3.",
	       st.bytes_clean);
	add(&b, &len, "# HELP s3jobfs_upload_duration_seconds Time from queue to done per upload, "
	    "retries included.\n# TYPE s3jobfs_upload_duration_seconds histogram\n");
	for (int i = 0; i < CACHE_LATENCY_BUCKETS; i++)
		add(&b, &len, "s3jobfs_upload_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
		    cache_latency_le_ms[i] / 1000.0, st.upload_ms_le[i]);
	add(&b, &len, "s3jobfs_upload_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
	    "s3jobfs_upload_duration_seconds_sum %.3f\ns3jobfs_upload_duration_seconds_count %" PRIu64 "\n",
	    st.upload_ms_count, st.upload_ms_sum / 1000.0, st.upload_ms_count);
	if (s3) {
		uint64_t r[S3_RETRY_CAUSES];

		s3_client_retries(s3, r);
		add(&b, &len, "# HELP s3jobfs_s3_retries_total S3 requests tried again, by cause.\n"
		    "# TYPE s3jobfs_s3_retries_total counter\n");
		for (int i = 0; i < S3_RETRY_CAUSES; i++)
			add(&b, &len, "s3jobfs_s3_retries_total{cause=\"%s\"} %" PRIu64 "\n",
			    s3_retry_cause_names[i], r[i]);
	}
	metric(&b, &len, "postgresql_errors_total", "counter",
	       "Failed PostgreSQL connections and statements.", meta_errors(meta));
	metric(&b, &len, "postgresql_connected", "gauge", "1 while connected to DATABASE_URL.",
	       meta_connected(meta));
	return b;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void serve(int cfd)
{
	struct timeval tv = { .tv_sec = 2 };
	char req[2048], *body = NULL, *head = NULL;
	size_t got = 0;
	bool found;

	setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < sizeof(req) - 1 && !memmem(req, got, "\r\n\r\n", 4) && !memmem(req, got, "\n\n", 2)) {
		ssize_t n = read(cfd, req + got, sizeof(req) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	req[got] = '\0';
	found = !strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET /metrics?", 13);
	if (found)
		body = metrics_text(srv.cache, srv.s3, srv.meta);
	if (asprintf(&head, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n", found ? (body ? "200 OK" : "500 Internal Server Error") :
		     "404 Not Found", found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain",
		     found ? (body ? strlen(body) : 0) : strlen("see /metrics\n")) >= 0) {
		write_all(cfd, head, strlen(head));
		if (found && body)
			write_all(cfd, body, strlen(body));
		else if (!found)
			write_all(cfd, "see /metrics\n", strlen("see /metrics\n"));
	}
	free(head);
	free(body);
	close(cfd);
}

static void *metrics_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = srv.fd, .events = POLLIN }, { .fd = srv.stop[0], .events = POLLIN } };
		int cfd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		cfd = accept4(srv.fd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd >= 0)
			serve(cfd);
	}
	return NULL;
}

int metrics_start(int fd, struct cache *cache, struct s3_client *s3, struct meta *meta)
{
	srv.fd = fd;
	srv.cache = cache;
	srv.s3 = s3;
	srv.meta = meta;
	if (pipe2(srv.stop, O_CLOEXEC) < 0)
		return -errno;
	if (pthread_create(&srv.thread, NULL, metrics_main, NULL) != 0)
		return -EAGAIN;
	srv.started = true;
	return 0;
}

void metrics_stop(void)
{
	if (srv.started) {
		if (write(srv.stop[1], "x", 1) < 0)
			log_msg(LOG_WARNING, "cannot stop the metrics thread", NULL);
		pthread_join(srv.thread, NULL);
		srv.started = false;
	}
	for (int i = 0; i < 2; i++)
		if (srv.stop[i] >= 0) {
			close(srv.stop[i]);
			srv.stop[i] = -1;
		}
	if (srv.fd >= 0) {
		close(srv.fd);
		srv.fd = -1;
	}
}
