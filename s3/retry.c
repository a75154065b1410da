/* retry.c - when and how long to wait before trying an S3 request again.
 *
 * Retryable: no HTTP answer at all (connection refused/reset, timeout, truncated body), any
 * 5xx, 429, and the 4xx codes S3 documents as transient (RequestTimeout, SlowDown,
 * Throttling*, RequestTimeTooSkewed is not: the clock is wrong and stays wrong). Everything
 * else in 4xx is final. Backoff is exponential with full jitter (AWS architecture blog,
 * "Exponential Backoff And Jitter"), bounded by the call's deadline.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/rand.h>

#include "s3_i.h"

static uint64_t real_now_ms(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void real_sleep_ms(void *ctx, unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	(void)ctx;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static uint64_t real_rand64(void *ctx)
{
	uint64_t v = 0;

	(void)ctx;
	if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
		v = (uint64_t)rand();
	return v;
}

void s3_retry_init(struct s3_retry *r, int max_retries, uint64_t timeout_ms)
{
	memset(r, 0, sizeof(*r));
	r->max_retries = max_retries;
	r->base_ms = 100;
	r->cap_ms = 20000;
	r->timeout_ms = timeout_ms;
	r->now_ms = real_now_ms;
	r->sleep_ms = real_sleep_ms;
	r->rand64 = real_rand64;
}

bool s3_retry_retryable(int http_status, const char *code, int curl_code)
{
	static const char *const transient[] = {
		"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException",
		"RequestThrottled", "TooManyRequestsException", "InternalError",
		"ServiceUnavailable", "RequestTimeoutException", "PriorRequestNotComplete",
	};

	if (http_status == 0)
		return curl_code != CURLE_OK && curl_code != CURLE_ABORTED_BY_CALLBACK &&
		       curl_code != CURLE_OUT_OF_MEMORY && curl_code != CURLE_URL_MALFORMAT &&
		       curl_code != CURLE_UNSUPPORTED_PROTOCOL && curl_code != CURLE_READ_ERROR &&
		       curl_code != CURLE_WRITE_ERROR && curl_code != CURLE_PEER_FAILED_VERIFICATION &&
		       curl_code != CURLE_SSL_CACERT_BADFILE;
	if (http_status >= 500 || http_status == 429)
		return true;
	if (curl_code == CURLE_PARTIAL_FILE || curl_code == CURLE_RECV_ERROR)
		return true;	/* answer began but the body was cut */
	if (code)
		for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
			if (strcmp(code, transient[i]) == 0)
				return true;
	return false;
}

const char *const s3_retry_cause_names[S3_RETRY_CAUSES] = {
	"throttle", "server", "timeout", "network",
};

/* Why a retryable failure happened: throttling (429, SlowDown, Throttling*), a server error
 * (5xx), a timeout (curl's or S3's RequestTimeout), or the network (no answer, cut body). */
static enum s3_retry_cause retry_cause(const struct s3_error *e)
{
	if (e->http_status == 429 || strstr(e->code, "SlowDown") || strstr(e->code, "Throttl") ||
	    strstr(e->code, "TooManyRequests"))
		return S3_RETRY_THROTTLE;
	if (e->curl_code == CURLE_OPERATION_TIMEDOUT || strstr(e->code, "RequestTimeout"))
		return S3_RETRY_TIMEOUT;
	if (e->http_status >= 500)
		return S3_RETRY_SERVER;
	return S3_RETRY_NETWORK;
}

unsigned s3_retry_delay_ms(const struct s3_retry *r, int retry)
{
	uint64_t ceiling = r->base_ms;

	for (int i = 0; i < retry && ceiling < r->cap_ms; i++)
		ceiling *= 2;
	if (ceiling > r->cap_ms)
		ceiling = r->cap_ms;
	return (unsigned)(r->rand64(r->ctx) % (ceiling + 1));
}

int s3_retry_run(const struct s3_retry *r, s3_attempt_fn fn, void *ctx, struct s3_error *err)
{
	uint64_t start = r->now_ms(r->ctx), deadline = r->timeout_ms ? start + r->timeout_ms : 0;
	int retries = 0, redirects = 0, rc;

	err->attempts = 0;
	for (;;) {
		uint64_t now = r->now_ms(r->ctx), left = 0;
		int attempts_so_far = err->attempts;

		if (deadline) {
			left = deadline > now ? deadline - now : 1;
		}
		err->http_status = 0;
		err->curl_code = 0;
		err->code[0] = err->message[0] = '\0';
		rc = fn(ctx, retries, left, err);
		err->attempts = attempts_so_far + 1;
		if (rc == 0)
			return 0;
		if (rc == -EAGAIN && redirects++ < 2)
			continue;
		if (retries >= r->max_retries ||
		    !s3_retry_retryable(err->http_status, err->code, err->curl_code))
			return rc;

		unsigned delay = s3_retry_delay_ms(r, retries);

		now = r->now_ms(r->ctx);
		if (deadline && now + delay >= deadline)
			return rc;
		if (r->retries)
			__atomic_add_fetch(&r->retries[retry_cause(err)], 1, __ATOMIC_RELAXED);
		r->sleep_ms(r->ctx, delay);
		retries++;
	}
}
