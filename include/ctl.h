/* ctl.h - the daemon's control socket (<cache-dir>/ctl.sock, owner-only) and its client.
 *
 * One JSON object per line each way: {"cmd":"complete","job":"NAME"}, {"cmd":"status"},
 * {"cmd":"shutdown"}. Answers carry "ok" (bool) and "error" (string) or the result. The server
 * checks the caller's uid (SO_PEERCRED): only the daemon's own user or root may talk to it.
 */
#ifndef S3JOBFS_CTL_H
#define S3JOBFS_CTL_H

struct cache;

typedef void (*ctl_shutdown_fn)(void *arg);

/* Start the server thread for cache (borrowed). shutdown(arg) is called from that thread to
 * drain and unmount; its return lets the answer go out. -errno on socket errors. */
int ctl_server_start(struct cache *cache, const char *cache_dir, ctl_shutdown_fn shutdown,
		     void *arg);
void ctl_server_stop(void);

/* Send one request to the daemon of cache_dir and return its answer line (caller frees), or
 * NULL with errno set (ECONNREFUSED/ENOENT: no daemon; EACCES: the daemon hung up without an
 * answer, as it does to a caller of another uid). Never raises SIGPIPE. Blocks up to
 * timeout_s seconds. */
char *ctl_request(const char *cache_dir, const char *request_json, int timeout_s);

#endif
