/* metrics.h - Prometheus text metrics of the daemon over HTTP (`mount --metrics-addr`).
 *
 * A listening socket is opened before the daemon forks (so a bad address is an error on the
 * command line), and one thread answers `GET /metrics` with the text exposition format 0.0.4:
 * uploads started/succeeded/failed, bytes, S3 retries by cause, queue depth, dirty and clean
 * cache bytes, an upload latency histogram, PostgreSQL errors. Read-only; no other endpoints.
 */
#ifndef S3JOBFS_METRICS_H
#define S3JOBFS_METRICS_H

struct cache;
struct s3_client;
struct meta;

/* Listen on addr ("HOST:PORT", "[V6]:PORT" or ":PORT" = 127.0.0.1). Returns the socket fd, or
 * -errno (-EINVAL: addr malformed; a message is printed to stderr either way). */
int metrics_listen(const char *addr);

/* The metrics text (caller frees). s3 and meta may be NULL. */
char *metrics_text(struct cache *cache, struct s3_client *s3, struct meta *meta);

/* Serve metrics_text on fd (owned from now) from a thread. 0 or -errno. */
int metrics_start(int fd, struct cache *cache, struct s3_client *s3, struct meta *meta);
/* Stop the thread and close the socket (no-op when not started). */
void metrics_stop(void);

#endif
