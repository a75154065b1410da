/* log.c - logfmt lines to stderr or syslog.
 *
 * The level and sink are set once by log_init() before any thread starts and only read
 * afterwards. Each line is formatted into a stack buffer and emitted with a single write, so
 * lines from concurrent threads never interleave, and any control character in the key=value
 * part is written as \xNN, so a name holding a newline cannot forge or split a line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int log_level = LOG_INFO;
static bool log_syslog;

static const char *const level_names[] = {
	"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

void log_init(const char *ident, int level, bool use_syslog)
{
	log_level = level;
	log_syslog = use_syslog;
	if (use_syslog)
		openlog(ident, LOG_PID, LOG_DAEMON);
}

bool log_enabled(int level)
{
	return level <= log_level;
}

const char *log_quote(char *buf, size_t size, const char *value)
{
	size_t o = 0;
	bool need = value[0] == '\0';

	for (const char *p = value; *p && !need; p++)
		need = *p == ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p < 0x20;
	if (!need) {
		snprintf(buf, size, "%s", value);
		return buf;
	}
	if (size < 3) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (const char *p = value; *p && o + 5 < size; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

void log_msg(int level, const char *msg, const char *kv_fmt, ...)
{
	char line[4096];
	size_t n = 0;
	int r;

	if (level > log_level)
		return;
	if (!log_syslog) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
		r = snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
		n += r > 0 ? (size_t)r : 0;
	}
	r = snprintf(line + n, sizeof(line) - n, "level=%s msg=\"%s\"",
		     level_names[level & 7], msg);
	if (r > 0)
		n += (size_t)r;
	if (kv_fmt && n < sizeof(line) - 2) {
		char kv[sizeof(line)];
		va_list ap;

		line[n++] = ' ';
		va_start(ap, kv_fmt);
		r = vsnprintf(kv, sizeof(kv), kv_fmt, ap);
		va_end(ap);
		/* a value not passed through log_quote() (a path holding a newline) must not
		 * break the line: control characters become \xNN here too */
		for (const char *p = kv; r > 0 && *p && n < sizeof(line) - 2; p++) {
			unsigned char c = (unsigned char)*p;

			if (c < 0x20 || c == 0x7f)
				n += (size_t)snprintf(line + n, sizeof(line) - n, "\\x%02x", c);
			else
				line[n++] = (char)c;
		}
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	if (log_syslog) {
		line[n] = '\0';
		syslog(level, "%s", line);
		return;
	}
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
}
