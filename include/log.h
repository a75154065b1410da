/* log.h - logfmt logging to stderr or syslog, with syslog levels.
 *
 * One line per event: `level=info msg="upload done" job=... key=... bytes=...`. The message is
 * a fixed lowercase phrase; details go in printf-formatted key=value pairs. Never pass secrets
 * or Authorization headers. Thread-safe: a line is written with one write(2)/syslog(3) call.
 */
#ifndef S3JOBFS_LOG_H
#define S3JOBFS_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Set the threshold (LOG_ERR .. LOG_DEBUG) and the sink. Call once at start, before threads. */
void log_init(const char *ident, int level, bool use_syslog);

/* True when `level` would be logged (to skip building expensive details). */
bool log_enabled(int level);

/* Log `msg` (quoted) followed by the formatted key=value pairs in kv_fmt (may be NULL).
 * Values containing spaces or quotes should be passed through %s with log_quote(). */
void log_msg(int level, const char *msg, const char *kv_fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Quote a value for logfmt into buf (always NUL-terminated, truncated to size): wraps in
 * double quotes and escapes '"', '\\' and control characters when needed. Returns buf. */
const char *log_quote(char *buf, size_t size, const char *value);

#endif
