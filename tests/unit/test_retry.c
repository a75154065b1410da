/* test_retry.c - the retry policy: what is retried, backoff bounds, attempt cap, deadline,
 * driven by a fake clock, sleep and random source so nothing waits. */
#include <curl/curl.h>
#include <errno.h>

#include "harness.h"
#include "s3/s3_i.h"

struct fake {
	uint64_t now;
	uint64_t slept[64];
	int n_sleeps;
	uint64_t rnd;
	/* the scripted outcomes of successive attempts: http status (0 = transport) and code */
	const int *statuses;
	const char *const *codes;
	const int *curl_codes;
	int n_script;
	int calls;
	uint64_t last_timeout;
};

static uint64_t f_now(void *ctx) { return ((struct fake *)ctx)->now; }

static void f_sleep(void *ctx, unsigned ms)
{
	struct fake *f = ctx;

	if (f->n_sleeps < 64)
		f->slept[f->n_sleeps++] = ms;
	f->now += ms;
}

static uint64_t f_rand(void *ctx) { return ((struct fake *)ctx)->rnd; }

static int f_attempt(void *ctx, int attempt, uint64_t timeout_ms, struct s3_error *err)
{
	struct fake *f = ctx;
	int i = f->calls++;

	(void)attempt;
	f->last_timeout = timeout_ms;
	f->now += 10;		/* each request takes 10 ms */
	if (i >= f->n_script)
		return 0;
	err->http_status = f->statuses[i];
	err->curl_code = f->curl_codes ? f->curl_codes[i] : (f->statuses[i] ? 0 : CURLE_COULDNT_CONNECT);
	snprintf(err->code, sizeof(err->code), "%s", f->codes ? f->codes[i] : "");
	if (f->statuses[i] == 0 && err->curl_code == 0)
		return 0;
	return f->statuses[i] == -1 ? -EAGAIN : f->statuses[i] ? -EIO : -ECONNREFUSED;
}

static void policy(struct s3_retry *r, struct fake *f, int max_retries, uint64_t timeout_ms)
{
	s3_retry_init(r, max_retries, timeout_ms);
	r->now_ms = f_now;
	r->sleep_ms = f_sleep;
	r->rand64 = f_rand;
	r->ctx = f;
}

static void test_retryable_table(void)
{
	static const struct { int status; const char *code; int curl; bool want; } t[] = {
		{ 500, "InternalError", 0, true },
		{ 503, "SlowDown", 0, true },
		{ 502, "", 0, true },
		{ 429, "", 0, true },
		{ 400, "RequestTimeout", 0, true },
		{ 400, "InvalidArgument", 0, false },
		{ 403, "AccessDenied", 0, false },
		{ 403, "SignatureDoesNotMatch", 0, false },
		{ 403, "RequestTimeTooSkewed", 0, false },
		{ 404, "NoSuchKey", 0, false },
		{ 404, "NoSuchBucket", 0, false },
		{ 409, "BucketNotEmpty", 0, false },
		{ 0, "", CURLE_COULDNT_CONNECT, true },
		{ 0, "", CURLE_OPERATION_TIMEDOUT, true },
		{ 0, "", CURLE_RECV_ERROR, true },
		{ 0, "", CURLE_SEND_ERROR, true },
		{ 0, "", CURLE_GOT_NOTHING, true },
		{ 0, "", CURLE_PARTIAL_FILE, true },
		{ 0, "", CURLE_PEER_FAILED_VERIFICATION, false },
		{ 0, "", CURLE_URL_MALFORMAT, false },
		{ 0, "", CURLE_READ_ERROR, false },	/* our file: retrying won't help */
		{ 200, "", CURLE_PARTIAL_FILE, true },	/* truncated body */
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (s3_retry_retryable(t[i].status, t[i].code, t[i].curl) != t[i].want)
			T_FAILF("status %d code '%s' curl %d: expected %s", t[i].status, t[i].code,
				t[i].curl, t[i].want ? "retry" : "final");
}

static void test_backoff_bounds(void)
{
	struct fake f = { .rnd = UINT64_MAX };
	struct s3_retry r;

	policy(&r, &f, 3, 0);
	/* ceiling doubles from base 100 ms; rand % (ceiling+1) with rnd all-ones is < ceiling+1 */
	for (int retry = 0; retry < 12; retry++) {
		uint64_t ceiling = 100ULL << retry;
		unsigned d;

		if (ceiling > r.cap_ms)
			ceiling = r.cap_ms;
		d = s3_retry_delay_ms(&r, retry);
		if (d > ceiling)
			T_FAILF("retry %d: delay %u above ceiling %" PRIu64, retry, d, ceiling);
		f.rnd = (uint64_t)ceiling;		/* exactly the ceiling */
		T_EQ_INT(s3_retry_delay_ms(&r, retry), ceiling);
		f.rnd = (uint64_t)ceiling + 1;		/* wraps to 0: full jitter reaches zero */
		T_EQ_INT(s3_retry_delay_ms(&r, retry), 0);
		f.rnd = UINT64_MAX;
	}
}

static void test_retries_then_success(void)
{
	static const int st[] = { 503, 500, 0 };
	static const char *const codes[] = { "SlowDown", "InternalError", "" };
	struct fake f = { .statuses = st, .codes = codes, .n_script = 3, .rnd = 50 };
	struct s3_retry r;
	struct s3_error e = { 0 };

	policy(&r, &f, 3, 0);
	/* third scripted entry is status 0 with curl connect error: one more retry, then success */
	T_EQ_INT(s3_retry_run(&r, f_attempt, &f, &e), 0);
	T_EQ_INT(f.calls, 4);
	T_EQ_INT(e.attempts, 4);
	T_EQ_INT(f.n_sleeps, 3);
	T_EQ_INT(f.slept[0], 50);
}

static void test_attempts_capped(void)
{
	static const int st[] = { 500, 500, 500, 500, 500, 500, 500, 500 };
	struct fake f = { .statuses = st, .n_script = 8, .rnd = 1 };
	struct s3_retry r;
	struct s3_error e = { 0 };

	policy(&r, &f, 3, 0);
	T_EQ_INT(s3_retry_run(&r, f_attempt, &f, &e), -EIO);
	T_EQ_INT(f.calls, 4);		/* 1 + S3_MAX_RETRIES */
	T_EQ_INT(e.attempts, 4);
	T_EQ_INT(e.http_status, 500);

	f = (struct fake){ .statuses = st, .n_script = 8, .rnd = 1 };
	policy(&r, &f, 0, 0);
	T_EQ_INT(s3_retry_run(&r, f_attempt, &f, &e), -EIO);
	T_EQ_INT(f.calls, 1);		/* S3_MAX_RETRIES=0: no retry */
}

static void test_no_retry_on_4xx(void)
{
	static const int st[] = { 403, 0 };
	static const char *const codes[] = { "AccessDenied", "" };
	struct fake f = { .statuses = st, .codes = codes, .n_script = 1 };
	struct s3_retry r;
	struct s3_error e = { 0 };

	policy(&r, &f, 5, 0);
	T_EQ_INT(s3_retry_run(&r, f_attempt, &f, &e), -EIO);
	T_EQ_INT(f.calls, 1);
	T_EQ_INT(f.n_sleeps, 0);
	T_EQ_STR(e.code, "AccessDenied");
}

static void test_deadline(void)
{
	static const int st[] = { 500, 500, 500, 500, 500, 500, 500, 500, 500, 500 };
	struct fake f = { .statuses = st, .n_script = 10, .rnd = UINT64_MAX - 1 };
	struct s3_retry r;
	struct s3_error e = { 0 };
	uint64_t start;

	policy(&r, &f, 10, 1000);	/* 1 s for the whole call */
	start = f.now;
	T_EQ_INT(s3_retry_run(&r, f_attempt, &f, &e), -EIO);
	if (f.now - start > 1000)
		T_FAILF("the call ran %" PRIu64 " ms past a 1000 ms deadline", f.now - start);
	T_CHECK(f.calls < 11);
	T_CHECK(f.last_timeout > 0 && f.last_timeout <= 1000);
}

static void test_region_redirect_not_counted(void)
{
	static const int st[] = { -1, 0 };
	struct fake f = { .statuses = st, .n_script = 1 };
	struct s3_retry r;
	struct s3_error e = { 0 };

	policy(&r, &f, 0, 0);	/* no retries at all, yet a region correction is redone */
	T_EQ_INT(s3_retry_run(&r, f_attempt, &f, &e), 0);
	T_EQ_INT(f.calls, 2);
	T_EQ_INT(f.n_sleeps, 0);
}

static const struct t_case cases[] = {
	{ "retryable_table", test_retryable_table },
	{ "backoff_bounds", test_backoff_bounds },
	{ "retries_then_success", test_retries_then_success },
	{ "attempts_capped", test_attempts_capped },
	{ "no_retry_on_4xx", test_no_retry_on_4xx },
	{ "deadline", test_deadline },
	{ "region_redirect_not_counted", test_region_redirect_not_counted },
};

T_MAIN(cases)
