/* test_meta.c - meta's pure functions from tables: job folder names, per-job policy from the
 * row's output JSON, which files a policy uploads, the uploadToS3 status object; and the
 * handle without a database (posts dropped, policy defaults). */
#include <errno.h>
#include <regex.h>
#include <stdbool.h>
#include <time.h>
#include <cjson/cJSON.h>

#include "cfg.h"
#include "harness.h"
#include "meta.h"

static void test_parse_job_folder(void)
{
	static const struct { const char *name; bool ok; const char *uuid; } t[] = {
		{ "20251114_011839_73395058-e599-4bf7-a35f-79da2264afa8", true,
		  "73395058-e599-4bf7-a35f-79da2264afa8" },
		{ "20240229_235959_00000000-0000-0000-0000-000000000000", true,	/* leap day */
		  "00000000-0000-0000-0000-000000000000" },
		{ "20251114_011839_73395058-E599-4BF7-A35F-79DA2264AFA8", true,	/* lowercased */
		  "73395058-e599-4bf7-a35f-79da2264afa8" },
		{ "19991231_000000_abcdefab-cdef-abcd-efab-cdefabcdefab", true,
		  "abcdefab-cdef-abcd-efab-cdefabcdefab" },
		{ "20251314_011839_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL }, /* month 13 */
		{ "20251100_011839_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL }, /* day 0 */
		{ "20250230_011839_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL }, /* 30 Feb */
		{ "20230229_011839_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL }, /* not leap */
		{ "20251131_011839_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL }, /* 31 Nov */
		{ "20251114_241839_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL }, /* hour 24 */
		{ "20251114_016039_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL }, /* min 60 */
		{ "20251114_011860_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL }, /* sec 60 */
		{ "00001114_011839_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL }, /* year 0 */
		{ "2025111a_011839_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL },
		{ "20251114-011839_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL },
		{ "20251114_011839-73395058-e599-4bf7-a35f-79da2264afa8", false, NULL },
		{ "20251114_011839_73395058-e599-4bf7-a35f-79da2264afa", false, NULL },  /* short */
		{ "20251114_011839_73395058-e599-4bf7-a35f-79da2264afa88", false, NULL }, /* long */
		{ "20251114_011839_73395058e599-4bf7-a35f-79da2264afa88", false, NULL },
		{ "20251114_011839_73395058-e599-4bf7-a35f-79da2264afag", false, NULL }, /* not hex */
		{ "20251114_011839_73395058-e599-4bf7-a35f-79da2264afa8_x", false, NULL }, /* suffix */
		{ "20251114_011839_73395058-e599-4bf7-a35f-79da2264afa8/", false, NULL },
		{ "x20251114_011839_73395058-e599-4bf7-a35f-79da2264afa8", false, NULL },
		{ "20251114_011839_{3395058-e599-4bf7-a35f-79da2264afa}", false, NULL },
		{ "20251114_011839_73395058 e599-4bf7-a35f-79da2264afa8", false, NULL }, /* space */
		{ "20251114_011839_73395058-e599-4bf7-a35f-79da2264af\xc3\xa9", false, NULL },
		{ "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9_011839_73395058-e599-4bf7-a35f-79da2264afa8", false,
		  NULL },
		{ "20251114_011839_", false, NULL },
		{ "20251114_011839", false, NULL },
		{ "jobs", false, NULL },
		{ "", false, NULL },
		{ "../x", false, NULL },
		{ "..", false, NULL },
		{ "all products.json", false, NULL },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char uuid[37];
		bool ok;

		memset(uuid, 'Z', sizeof(uuid));
		ok = meta_parse_job_folder(t[i].name, uuid);
		if (ok != t[i].ok)
			T_FAILF("meta_parse_job_folder(\"%s\") == %d, expected %d", t[i].name, ok, t[i].ok);
		if (t[i].ok)
			T_EQ_STR(uuid, t[i].uuid);
		else
			T_EQ_STR(uuid, "");
	}
	T_CHECK(!meta_parse_job_folder(NULL, NULL));
	T_CHECK(meta_parse_job_folder(t[0].name, NULL));
}

static void test_policy_defaults(void)
{
	struct meta_policy p;

	T_EQ_INT(meta_policy_from_json(NULL, true, &p), 0);
	T_CHECK(!p.have_row);
	T_CHECK(p.enabled);
	T_CHECK(p.save_files);
	T_CHECK(p.bucket == NULL);
	T_CHECK(p.prefix == NULL);
	T_CHECK(p.include_files == NULL);
	T_EQ_INT(p.n_include, 0);
	T_CHECK(p.upload_pdfs);
	T_CHECK(!p.upload_screenshots);
	T_CHECK(p.upload_categories);
	meta_policy_release(&p);

	T_EQ_INT(meta_policy_from_json(NULL, false, &p), 0);
	T_CHECK(!p.enabled);
	meta_policy_release(&p);

	/* a row whose output has no settings: the environment's defaults */
	T_EQ_INT(meta_policy_from_json("{\"saveFiles\": true, \"fileFormat\": \"json\"}", true, &p), 0);
	T_CHECK(p.have_row);
	T_CHECK(p.enabled && p.save_files && p.upload_pdfs && !p.upload_screenshots);
	meta_policy_release(&p);

	T_EQ_INT(meta_policy_from_json("{\"saveFiles\": false, \"uploadToS3\": null}", true, &p), 0);
	T_CHECK(!p.save_files);
	T_CHECK(p.enabled);
	meta_policy_release(&p);
}

static void test_policy_enabled_false(void)
{
	struct meta_policy p;

	T_EQ_INT(meta_policy_from_json("{\"saveFiles\": true, \"uploadToS3\": {\"enabled\": false}}",
				       true, &p), 0);
	T_CHECK(p.have_row);
	T_CHECK(!p.enabled);
	meta_policy_release(&p);

	/* enabled per job although the environment says no */
	T_EQ_INT(meta_policy_from_json("{\"uploadToS3\": {\"enabled\": true}}", false, &p), 0);
	T_CHECK(p.enabled);
	meta_policy_release(&p);

	/* the boolean shorthand */
	T_EQ_INT(meta_policy_from_json("{\"uploadToS3\": false}", true, &p), 0);
	T_CHECK(!p.enabled);
	meta_policy_release(&p);
}

static void test_policy_guide_example(void)
{
	/* the guide's "Per-Job Configuration" example */
	static const char json[] =
		"{\"saveFiles\": true, \"fileFormat\": \"json\", \"uploadToS3\": {"
		" \"enabled\": true, \"bucket\": \"different-bucket\", \"prefix\": \"custom-prefix/\","
		" \"includeFiles\": [\"all_products.json\", \"categories.json\"],"
		" \"uploadPdfs\": true, \"uploadScreenshots\": false, \"uploadCategories\": false}}";
	struct meta_policy p;

	T_EQ_INT(meta_policy_from_json(json, false, &p), 0);
	T_CHECK(p.have_row && p.enabled && p.save_files);
	T_EQ_STR(p.bucket, "different-bucket");
	T_EQ_STR(p.prefix, "custom-prefix/");
	T_EQ_INT(p.n_include, 2);
	if (p.n_include == 2) {
		T_EQ_STR(p.include_files[0], "all_products.json");
		T_EQ_STR(p.include_files[1], "categories.json");
	}
	T_CHECK(p.upload_pdfs && !p.upload_screenshots && !p.upload_categories);
	meta_policy_release(&p);
	T_CHECK(p.bucket == NULL && p.include_files == NULL && p.n_include == 0);
	meta_policy_release(&p);	/* twice is harmless */
}

static void test_policy_bucket_prefix(void)
{
	static const struct { const char *json; const char *bucket, *prefix; } t[] = {
		{ "{\"uploadToS3\": {\"bucket\": \"b2\", \"prefix\": \"p2\"}}", "b2", "p2/" },
		{ "{\"uploadToS3\": {\"prefix\": \"/a/b\"}}", NULL, "a/b/" },
		{ "{\"uploadToS3\": {\"prefix\": \"a/b/\"}}", NULL, "a/b/" },
		{ "{\"uploadToS3\": {\"prefix\": \"\"}}", NULL, "" },		/* the bucket's root */
		{ "{\"uploadToS3\": {\"bucket\": \"\", \"prefix\": null}}", NULL, NULL },
		{ "{\"uploadToS3\": {\"uploadScreenshots\": true}}", NULL, NULL },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct meta_policy p;

		T_EQ_INT(meta_policy_from_json(t[i].json, true, &p), 0);
		if (t[i].bucket)
			T_EQ_STR(p.bucket, t[i].bucket);
		else
			T_CHECK(p.bucket == NULL);
		if (t[i].prefix)
			T_EQ_STR(p.prefix, t[i].prefix);
		else
			T_CHECK(p.prefix == NULL);
		meta_policy_release(&p);
	}
}

static void test_policy_include_files(void)
{
	struct meta_policy p;

	T_EQ_INT(meta_policy_from_json("{\"uploadToS3\": {\"includeFiles\": []}}", true, &p), 0);
	T_CHECK(p.include_files != NULL);	/* given, empty: no top-level file */
	T_EQ_INT(p.n_include, 0);
	T_CHECK(!meta_policy_includes(&p, "all_products.json"));
	T_CHECK(meta_policy_includes(&p, "products/a.json"));
	meta_policy_release(&p);

	T_EQ_INT(meta_policy_from_json("{\"uploadToS3\": {\"includeFiles\": [\"a.json\"],"
				       " \"uploadScreenshots\": true}}", true, &p), 0);
	T_EQ_INT(p.n_include, 1);
	T_CHECK(p.upload_screenshots);
	T_CHECK(meta_policy_includes(&p, "a.json"));
	T_CHECK(!meta_policy_includes(&p, "b.json"));
	T_CHECK(meta_policy_includes(&p, "screenshots/s.png"));
	meta_policy_release(&p);
}

static void test_policy_malformed(void)
{
	static const char *const bad[] = {
		"", "not json", "{", "[1, 2]", "\"text\"", "42", "null", "true",
		"{\"saveFiles\": \"yes\"}",
		"{\"uploadToS3\": 5}",
		"{\"uploadToS3\": \"on\"}",
		"{\"uploadToS3\": {\"enabled\": \"false\"}}",
		"{\"uploadToS3\": {\"bucket\": 7}}",
		"{\"uploadToS3\": {\"prefix\": []}}",
		"{\"uploadToS3\": {\"includeFiles\": \"a.json\"}}",
		"{\"uploadToS3\": {\"includeFiles\": [\"a.json\", 1]}}",
		"{\"uploadToS3\": {\"uploadPdfs\": 1}}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct meta_policy p;
		int r = meta_policy_from_json(bad[i], false, &p);

		if (r != -EINVAL)
			T_FAILF("meta_policy_from_json('%s') == %d, expected -EINVAL", bad[i], r);
		/* p holds the defaults, nothing to leak */
		T_CHECK(p.have_row && !p.enabled && p.save_files && !p.bucket && !p.prefix &&
			!p.include_files && p.upload_pdfs && !p.upload_screenshots &&
			p.upload_categories);
		meta_policy_release(&p);
	}
	T_EQ_INT(meta_policy_from_json("{}", true, NULL), -EINVAL);
}

static void test_policy_includes_table(void)
{
	enum { DEF, OFF, NOSAVE, INCL, NOCAT, NOPDF, SHOTS, ALLOFF };
	static const char *const json[] = {
		[DEF] = "{}",
		[OFF] = "{\"uploadToS3\": {\"enabled\": false}}",
		[NOSAVE] = "{\"saveFiles\": false, \"uploadToS3\": {\"enabled\": true}}",
		[INCL] = "{\"uploadToS3\": {\"includeFiles\": [\"all_products.json\","
			 " \"categories.json\"]}}",
		[NOCAT] = "{\"uploadToS3\": {\"uploadCategories\": false}}",
		[NOPDF] = "{\"uploadToS3\": {\"uploadPdfs\": false}}",
		[SHOTS] = "{\"uploadToS3\": {\"uploadScreenshots\": true}}",
		[ALLOFF] = "{\"uploadToS3\": {\"includeFiles\": [\"categories.json\"],"
			   " \"uploadCategories\": false, \"uploadPdfs\": false}}",
	};
	static const struct { int pol; const char *rel; bool want; } t[] = {
		/* not enabled, saveFiles false: nothing */
		{ OFF, "all_products.json", false }, { OFF, "products/a.json", false },
		{ OFF, "pdfs/a.pdf", false },
		{ NOSAVE, "all_products.json", false }, { NOSAVE, "products/a.json", false },
		/* defaults: every top-level file, categories, pdfs, other dirs; no screenshots */
		{ DEF, "all_products.json", true }, { DEF, "summary.csv", true },
		{ DEF, "categories.json", true }, { DEF, "categories/c1.json", true },
		{ DEF, "pdfs/a.pdf", true }, { DEF, "pdfs/sub/b.pdf", true },
		{ DEF, "screenshots/s.png", false }, { DEF, "products/a.json", true },
		{ DEF, "products/deep/x/y.json", true }, { DEF, "/all_products.json", true },
		{ DEF, "", false }, { DEF, "/", false },
		{ DEF, "pdfsx/a.pdf", true }, { DEF, "screenshots.json", true },
		/* includeFiles: only those top-level names; directories unaffected */
		{ INCL, "all_products.json", true }, { INCL, "categories.json", true },
		{ INCL, "summary.csv", false }, { INCL, "All_products.json", false },
		{ INCL, "products/all.json", true }, { INCL, "pdfs/a.pdf", true },
		{ INCL, "categories/c1.json", true },
		/* uploadCategories false: categories.json and categories/ */
		{ NOCAT, "categories.json", false }, { NOCAT, "categories/c1.json", false },
		{ NOCAT, "all_products.json", true }, { NOCAT, "categoriesx/a", true },
		/* listed in includeFiles but uploadCategories false: still not */
		{ ALLOFF, "categories.json", false }, { ALLOFF, "all_products.json", false },
		{ ALLOFF, "pdfs/a.pdf", false }, { ALLOFF, "products/a.json", true },
		/* uploadPdfs false */
		{ NOPDF, "pdfs/a.pdf", false }, { NOPDF, "pdfs.json", true },
		/* uploadScreenshots true */
		{ SHOTS, "screenshots/s.png", true }, { SHOTS, "pdfs/a.pdf", true },
	};
	struct meta_policy p[sizeof(json) / sizeof(json[0])];

	for (size_t i = 0; i < sizeof(json) / sizeof(json[0]); i++)
		T_EQ_INT(meta_policy_from_json(json[i], true, &p[i]), 0);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		bool got = meta_policy_includes(&p[t[i].pol], t[i].rel);

		if (got != t[i].want)
			T_FAILF("policy %d, \"%s\": %d, expected %d", t[i].pol, t[i].rel, got, t[i].want);
	}
	T_CHECK(!meta_policy_includes(NULL, "a"));
	T_CHECK(!meta_policy_includes(&p[DEF], NULL));
	for (size_t i = 0; i < sizeof(json) / sizeof(json[0]); i++)
		meta_policy_release(&p[i]);
}

static bool matches(const char *re, const char *s)
{
	regex_t rx;
	bool ok;

	if (!s || regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) != 0)
		return false;
	ok = regexec(&rx, s, 0, NULL, 0) == 0;
	regfree(&rx);
	return ok;
}

static const char *jstr(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_status_json_success(void)
{
	static const char *const top[] = { "all_products.json", "categories.json", "pdfs/",
					   "products/", "summary.v2.csv" };
	const struct meta_job_state st = {
		.uuid = "73395058-e599-4bf7-a35f-79da2264afa8",
		.folder = "20251114_011839_73395058-e599-4bf7-a35f-79da2264afa8",
		.bucket = "bucket", .prefix = "prefix/", .enabled = true, .status = "success",
		.top_entries = top, .n_top = sizeof(top) / sizeof(top[0]),
	};
	const struct timespec at = { .tv_sec = 1763084130, .tv_nsec = 123456789 };
	char *text = meta_status_json(&st, 320, 16777216, &at);
	const char *f = "s3://bucket/prefix/20251114_011839_73395058-e599-4bf7-a35f-79da2264afa8/";
	cJSON *o = cJSON_Parse(text), *urls, *v;
	char want[1024];

	T_CHECK(text != NULL);
	snprintf(want, sizeof(want),
		 "{\"enabled\":true,\"status\":\"success\","
		 "\"uploadedAt\":\"2025-11-14T01:35:30.123456Z\",\"s3Urls\":{"
		 "\"all_products_json\":\"%sall_products.json\","
		 "\"categories_json\":\"%scategories.json\","
		 "\"pdfs_dir\":\"%spdfs/\",\"products_dir\":\"%sproducts/\","
		 "\"summary_v2_csv\":\"%ssummary.v2.csv\"},"
		 "\"bytesUploaded\":16777216,\"filesUploaded\":320,\"errors\":[]}", f, f, f, f, f);
	T_EQ_STR(text, want);
	T_CHECK(cJSON_IsObject(o));
	T_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "enabled")));
	T_EQ_STR(jstr(o, "status"), "success");
	T_CHECK(matches("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
			jstr(o, "uploadedAt")));
	urls = cJSON_GetObjectItemCaseSensitive(o, "s3Urls");
	T_EQ_INT(cJSON_GetArraySize(urls), 5);
	snprintf(want, sizeof(want), "%spdfs/", f);
	T_EQ_STR(jstr(urls, "pdfs_dir"), want);
	v = cJSON_GetObjectItemCaseSensitive(o, "bytesUploaded");
	T_CHECK(cJSON_IsNumber(v) && v->valuedouble == 16777216.0);
	v = cJSON_GetObjectItemCaseSensitive(o, "filesUploaded");
	T_CHECK(cJSON_IsNumber(v) && v->valueint == 320);
	v = cJSON_GetObjectItemCaseSensitive(o, "errors");
	T_CHECK(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0);
	T_EQ_INT(cJSON_GetArraySize(o), 7);
	cJSON_Delete(o);
	free(text);
}

static void test_status_json_partial(void)
{
	static const char *const top[] = { "all_products.json", "a/b", "", "dup.json", "dup_json",
					   NULL };
	const struct meta_error errs[] = {
		{ "pdfs/a.pdf", "AccessDenied", "Access Denied", 4, 1763084130 },
		{ "x.json", NULL, NULL, 1, 0 },
	};
	const struct meta_job_state st = {
		.uuid = "73395058-e599-4bf7-a35f-79da2264afa8", .folder = "F",
		.bucket = "b", .prefix = "p", .enabled = true, .status = "partial",
		.top_entries = top, .n_top = sizeof(top) / sizeof(top[0]),
		.errors = errs, .n_errors = 2,
	};
	const struct timespec at = { .tv_sec = 0, .tv_nsec = 5000 };
	char *text = meta_status_json(&st, 9007199254740993ULL, 18446744073709551615ULL, &at);
	cJSON *o = cJSON_Parse(text), *e, *urls;

	T_CHECK(text && strstr(text, "\"bytesUploaded\":18446744073709551615,") != NULL);
	T_CHECK(text && strstr(text, "\"filesUploaded\":9007199254740993,") != NULL);
	T_EQ_STR(jstr(o, "uploadedAt"), "1970-01-01T00:00:00.000005Z");
	urls = cJSON_GetObjectItemCaseSensitive(o, "s3Urls");
	T_EQ_INT(cJSON_GetArraySize(urls), 2);	/* "a/b" and "" skipped, dup_json once */
	T_EQ_STR(jstr(urls, "all_products_json"), "s3://b/p/F/all_products.json");
	T_EQ_STR(jstr(urls, "dup_json"), "s3://b/p/F/dup.json");
	e = cJSON_GetObjectItemCaseSensitive(o, "errors");
	T_EQ_INT(cJSON_GetArraySize(e), 2);
	e = cJSON_GetArrayItem(e, 0);
	T_EQ_INT(cJSON_GetArraySize(e), 5);
	T_EQ_STR(jstr(e, "file"), "pdfs/a.pdf");
	T_EQ_STR(jstr(e, "code"), "AccessDenied");
	T_EQ_STR(jstr(e, "message"), "Access Denied");
	T_CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e, "attempts")) &&
		cJSON_GetObjectItemCaseSensitive(e, "attempts")->valueint == 4);
	T_EQ_STR(jstr(e, "time"), "2025-11-14T01:35:30.000000Z");
	e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "errors"), 1);
	T_EQ_STR(jstr(e, "code"), "");
	T_EQ_STR(jstr(e, "time"), "1970-01-01T00:00:00.000000Z");
	cJSON_Delete(o);
	free(text);
}

static void test_status_json_pending_disabled(void)
{
	static const char *const top[] = { "all_products.json" };
	struct meta_job_state st = {
		.uuid = "73395058-e599-4bf7-a35f-79da2264afa8", .folder = "F", .bucket = "b",
		.prefix = NULL, .enabled = true, .status = "pending",
		.top_entries = top, .n_top = 1,
	};
	char *text = meta_status_json(&st, 0, 0, NULL);

	T_EQ_STR(text, "{\"enabled\":true,\"status\":\"pending\",\"uploadedAt\":null,"
		 "\"s3Urls\":{\"all_products_json\":\"s3://b/F/all_products.json\"},"
		 "\"bytesUploaded\":0,\"filesUploaded\":0,\"errors\":[]}");
	free(text);
	st.enabled = false;
	st.status = "disabled";
	text = meta_status_json(&st, 0, 0, NULL);
	T_EQ_STR(text, "{\"enabled\":false,\"status\":\"disabled\",\"uploadedAt\":null,"
		 "\"s3Urls\":{},\"bytesUploaded\":0,\"filesUploaded\":0,\"errors\":[]}");
	free(text);
	T_CHECK(meta_status_json(NULL, 0, 0, NULL) == NULL);
}

static int completions;

static void on_complete(void *arg, const char *uuid)
{
	(void)arg;
	(void)uuid;
	completions++;
}

static void test_no_database(void)
{
	struct cfg cfg = { .s3_enabled = true, .bucket = "b", .prefix = "p/",
			   .jobs_table = "jobs", .pg_poll_seconds = 1,
			   .terminal_statuses = "completed,failed,cancelled" };
	const char *id = "73395058-e599-4bf7-a35f-79da2264afa8";
	const struct meta_job_state st = { .uuid = id, .folder = "F", .status = "pending",
					   .enabled = true };
	struct meta_policy p;
	struct meta *m = NULL;

	T_EQ_INT(meta_create(&m, &cfg), 0);
	T_CHECK(m != NULL);
	T_EQ_INT(meta_start(m, on_complete, NULL), 0);
	T_CHECK(!meta_connected(m));
	meta_post_job(m, &st);
	meta_post_file(m, id, "a.json", "b", "p/F/a.json", 10, NULL, "\"e\"", "uploaded", 1, NULL);
	T_EQ_INT(meta_policy_get(m, id, &p), 0);
	T_CHECK(!p.have_row && p.enabled && p.save_files && !p.upload_screenshots);
	meta_policy_release(&p);
	T_EQ_INT(meta_policy_get(m, "not-a-uuid", &p), -EINVAL);
	meta_policy_release(&p);
	T_EQ_INT(meta_policy_get(m, NULL, &p), -EINVAL);
	meta_policy_release(&p);
	meta_destroy(m);
	meta_destroy(NULL);
	T_EQ_INT(completions, 0);
	T_EQ_INT(meta_create(&m, NULL), -EINVAL);
}

static const struct t_case cases[] = {
	{ "parse_job_folder", test_parse_job_folder },
	{ "policy_defaults", test_policy_defaults },
	{ "policy_enabled_false", test_policy_enabled_false },
	{ "policy_guide_example", test_policy_guide_example },
	{ "policy_bucket_prefix", test_policy_bucket_prefix },
	{ "policy_include_files", test_policy_include_files },
	{ "policy_malformed", test_policy_malformed },
	{ "policy_includes_table", test_policy_includes_table },
	{ "status_json_success", test_status_json_success },
	{ "status_json_partial", test_status_json_partial },
	{ "status_json_pending_disabled", test_status_json_pending_disabled },
	{ "no_database", test_no_database },
};

T_MAIN(cases)
