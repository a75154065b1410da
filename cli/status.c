/* status.c - `s3jobfs status [JOB]`: what the running daemon is uploading, and what the
 * database says, job by job.
 *
 * Asks the daemon of the cache directory over its control socket (include/ctl.h) and, with
 * DATABASE_URL, reads the jobs' rows (uploadToS3) and ledger counts (meta_read_status). On a
 * terminal each job gets a progress bar (files, bytes, rate, ETA) within 80 columns; otherwise
 * one logfmt-style line per job, for scripts and logs. --json prints the daemon's answer with
 * a "database" member; --watch repeats every second until interrupted.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "cfg.h"
#include "cli.h"
#include "ctl.h"
#include "meta.h"

#define BAR_WIDTH 20

static double num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItem(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *k)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(o, k));

	return s ? s : "";
}

static void human(char *buf, size_t size, double bytes)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;

	while (bytes >= 1024 && i < 4) {
		bytes /= 1024;
		i++;
	}
	snprintf(buf, size, i ? "%.1f %s" : "%.0f %s", bytes, u[i]);
}

static void duration(char *buf, size_t size, double s)
{
	long t = (long)(s + 0.5);

	if (t < 60)
		snprintf(buf, size, "%lds", t);
	else if (t < 3600)
		snprintf(buf, size, "%ldm%02lds", t / 60, t % 60);
	else
		snprintf(buf, size, "%ldh%02ldm", t / 3600, t / 60 % 60);
}

/* Does the daemon's job folder name match the JOB argument (folder name or uuid)? */
static bool job_matches(const char *folder, const char *want)
{
	char id[37];

	if (!want)
		return true;
	if (!strcmp(folder, want))
		return true;
	return meta_parse_job_folder(folder, id) && !strcasecmp(id, want);
}

/* A daemon job's state, as the jobs row would say it. */
static const char *job_state(const cJSON *j, double total)
{
	if (num(j, "failed"))
		return num(j, "clean") || num(j, "filesUploaded") ? "partial" : "failed";
	if (total == num(j, "clean"))
		return total || cJSON_IsTrue(cJSON_GetObjectItem(j, "completed")) ? "success" : "pending";
	if (num(j, "uploading") || num(j, "queued"))
		return "uploading";
	return cJSON_IsTrue(cJSON_GetObjectItem(j, "completed")) ? "uploading" : "pending";
}

static void print_job(const cJSON *j, bool tty)
{
	double total = num(j, "dirty") + num(j, "queued") + num(j, "uploading") + num(j, "clean") +
		       num(j, "failed");
	double bt = num(j, "bytesTotal"), bc = num(j, "bytesClean"), rate = num(j, "rate");
	double eta = rate > 0 ? (bt - bc) / rate : -1;
	const char *state = job_state(j, total);
	char b1[32], b2[32], r[32], e[32] = "-";
	const cJSON *err;

	if (eta >= 0 && strcmp(state, "uploading") == 0)
		duration(e, sizeof(e), eta);
	if (!tty) {
		printf("job=%s state=%s files=%.0f/%.0f bytes=%.0f/%.0f skipped=%.0f failed=%.0f "
		       "rate=%.0f eta=%s\n", str(j, "job"), state, num(j, "clean"), total, bc, bt,
		       num(j, "skipped"), num(j, "failed"), rate, e);
		cJSON_ArrayForEach(err, cJSON_GetObjectItem(j, "errors"))
			printf("job=%s failed=\"%s\" error=\"%s\" attempts=%.0f\n", str(j, "job"),
			       str(err, "file"), str(err, "message"), num(err, "attempts"));
		return;
	}
	{
		double frac = bt > 0 ? bc / bt : total > 0 ? num(j, "clean") / total : 1;
		int fill = (int)(frac * BAR_WIDTH + 0.5);
		char bar[BAR_WIDTH + 1];

		for (int i = 0; i < BAR_WIDTH; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[BAR_WIDTH] = '\0';
		human(b1, sizeof(b1), bc);
		human(b2, sizeof(b2), bt);
		human(r, sizeof(r), rate);
		printf("%-.60s  %s", str(j, "job"), state);
		if (num(j, "skipped"))
			printf(" (%.0f skipped)", num(j, "skipped"));
		printf("\n  [%s] %3.0f%% %5.0f/%-5.0f %9s/%-9s", bar, frac * 100, num(j, "clean"),
		       total, b1, b2);
		if (rate > 0 && strcmp(state, "uploading") == 0)
			printf(" %s/s ETA %s", r, e);
		printf("\n");
	}
	cJSON_ArrayForEach(err, cJSON_GetObjectItem(j, "errors"))
		printf("  failed: %.30s: %.40s\n", str(err, "file"), str(err, "message"));
}

/* One job as the database has it (the row's uploadToS3 and the ledger). */
static void print_db_job(const char *uuid, const cJSON *v, bool tty)
{
	const cJSON *u = cJSON_GetObjectItem(v, "uploadToS3"), *ledger = cJSON_GetObjectItem(v, "ledger");
	char b[32];

	human(b, sizeof(b), num(u, "bytesUploaded"));
	if (!tty) {
		printf("db job=%s row_status=%s s3_status=%s files_uploaded=%.0f bytes_uploaded=%.0f "
		       "errors=%d uploaded_at=%s ledger_failed=%.0f ledger_skipped=%.0f\n", uuid,
		       str(v, "status"), cJSON_IsObject(u) ? str(u, "status") : "none",
		       num(u, "filesUploaded"), num(u, "bytesUploaded"),
		       cJSON_GetArraySize(cJSON_GetObjectItem(u, "errors")),
		       *str(u, "uploadedAt") ? str(u, "uploadedAt") : "-", num(ledger, "failed"),
		       num(ledger, "skipped"));
		return;
	}
	{
		char line[256];

		snprintf(line, sizeof(line), "  jobs row: %s, uploadToS3: %s, %.0f files, %s%s%.19s",
			 str(v, "status"), cJSON_IsObject(u) ? str(u, "status") : "(none)",
			 num(u, "filesUploaded"), b, *str(u, "uploadedAt") ? ", " : "",
			 str(u, "uploadedAt"));
		printf("%.80s\n", line);
	}
}

static void print_text(const cJSON *a, const cJSON *db, const char *db_err, bool tty)
{
	const cJSON *j, *v;
	char b1[32];

	if (a) {
		human(b1, sizeof(b1), num(a, "bytesUploaded"));
		printf(tty ? "s3jobfs daemon %d: %.0f queued, %.0f uploading, %.0f failed, %s uploaded\n" :
		       "daemon pid=%d queued=%.0f uploading=%.0f failed=%.0f uploaded=\"%s\"\n",
		       (int)num(a, "pid"), num(a, "filesQueued"), num(a, "filesUploading"),
		       num(a, "filesFailed"), b1);
	}
	cJSON_ArrayForEach(j, cJSON_GetObjectItem(a, "jobs")) {
		char id[37];

		print_job(j, tty);
		if (db && meta_parse_job_folder(str(j, "job"), id) &&
		    (v = cJSON_GetObjectItem(db, id)) != NULL)
			print_db_job(id, v, tty);
	}
	/* jobs the database knows and the daemon does not (finished, or another daemon's) */
	cJSON_ArrayForEach(v, db) {
		bool shown = false;

		cJSON_ArrayForEach(j, cJSON_GetObjectItem(a, "jobs")) {
			char id[37];

			if (meta_parse_job_folder(str(j, "job"), id) && !strcmp(id, v->string))
				shown = true;
		}
		if (!shown) {
			if (tty)
				printf("%s  (not in this daemon; %s)\n", v->string, str(v, "name"));
			print_db_job(v->string, v, tty);
		}
	}
	if (db_err)
		printf(tty ? "database: %s\n" : "database error=\"%s\"\n", db_err);
}

/* The uuids to ask the database about: JOB's, else those of the daemon's job folders (none:
 * the latest jobs). -1: JOB is a plain folder, not a job. */
static int uuids_of(const cJSON *a, const char *job, char (*ids)[37], int max)
{
	const cJSON *j;
	int n = 0;

	if (job) {
		if (meta_parse_job_folder(job, ids[0]))
			return 1;
		if (strlen(job) != 36)
			return -1;
		snprintf(ids[0], 37, "%s", job);
		return 1;
	}
	cJSON_ArrayForEach(j, cJSON_GetObjectItem(a, "jobs"))
		if (n < max && meta_parse_job_folder(str(j, "job"), ids[n]))
			n++;
	return n;
}

int cli_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cache-dir", required_argument, NULL, 'c' },
		{ "env-file", required_argument, NULL, 'e' },
		{ "json", no_argument, NULL, 'j' },
		{ "watch", no_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *env_file = NULL, *job = NULL;
	bool json = false, watch = false, tty = isatty(STDOUT_FILENO);
	struct cfg cfg;
	int opt, rc = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': dir = optarg; break;
		case 'e': env_file = optarg; break;
		case 'j': json = true; break;
		case 'w': watch = true; break;
		case 'h':
			printf("usage: s3jobfs status [JOB] [--cache-dir DIR] [--env-file FILE] [--json] [--watch]\n\n"
			       "Shows each job folder of the running mount (or only JOB: a folder name or\n"
			       "a job uuid): state (pending, uploading, success, partial, failed), a progress\n"
			       "bar with files, bytes, upload rate and ETA, skipped files, and failed files\n"
			       "with S3's error. With DATABASE_URL it also shows what the jobs row says\n"
			       "(output->'uploadToS3') and the ledger, also for jobs no daemon holds.\n"
			       "When stdout is not a terminal it prints one key=value line per job.\n\n"
			       "  --json    the daemon's answer, with \"database\" added (for scripts)\n"
			       "  --watch   refresh every second until interrupted\n"
			       "exit status: 0, or 1 when neither a daemon nor the database answers\n");
			return 0;
		default: return 2;
		}
	}
	if (optind < argc)
		job = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "s3jobfs status: one JOB at most\n");
		return 2;
	}
	if (cfg_load(&cfg, env_file, stderr) != 0)
		return 2;
	if (!dir)
		dir = cfg.cache_dir;
	do {
		char *ans = ctl_request(dir, "{\"cmd\":\"status\"}", 10), *dbj = NULL, *dberr = NULL;
		cJSON *a, *db = NULL, *jobs;
		char ids[64][37];
		int n;

		if (!ans && errno == EACCES) {
			/* a daemon runs but refuses this user: say so rather than show the
			 * database alone, which would hide that the mount is not this user's */
			fprintf(stderr, "s3jobfs: the daemon of cache directory '%s' refused this "
				"user (uid %u): run status as the user who mounted it\n", dir,
				(unsigned)getuid());
			rc = 1;
			break;
		}
		a = ans ? cJSON_Parse(ans) : NULL;
		jobs = cJSON_GetObjectItem(a, "jobs");
		n = uuids_of(a, job, ids, 64);

		/* only JOB */
		for (int i = cJSON_GetArraySize(jobs) - 1; i >= 0; i--)
			if (!job_matches(str(cJSON_GetArrayItem(jobs, i), "job"), job))
				cJSON_DeleteItemFromArray(jobs, i);
		if (cfg.database_url && *cfg.database_url && n >= 0) {
			const char *p[64];

			for (int i = 0; i < n; i++)
				p[i] = ids[i];
			if (meta_read_status(&cfg, p, (size_t)n, &dbj, &dberr) == 0)
				db = cJSON_Parse(dbj);
			else if (!dberr)
				dberr = strdup("cannot read the jobs table");
		}
		if (job && cJSON_GetArraySize(jobs) == 0 && cJSON_GetArraySize(db) == 0 && (a || db)) {
			fprintf(stderr, "s3jobfs: no job '%s' in the daemon%s\n", job,
				db ? " or the database" : "");
			rc = 1;
		} else if (!a && !db) {
			fprintf(stderr, "s3jobfs: no daemon answers for cache directory '%s'%s%s\n", dir,
				dberr ? "; database: " : "", dberr ? dberr : "");
			rc = 1;
		}
		if (watch && tty)
			printf("\033[H\033[2J");
		if (json && (a || db)) {
			char *s;

			if (!a)
				a = cJSON_CreateObject();
			cJSON_AddItemToObject(a, "database", db ? db : cJSON_CreateNull());
			db = NULL;
			if (dberr)
				cJSON_AddStringToObject(a, "databaseError", dberr);
			s = cJSON_PrintUnformatted(a);
			printf("%s\n", s ? s : "{}");
			free(s);
		} else if (a || db) {
			print_text(a, db, dberr, tty);
		}
		fflush(stdout);
		cJSON_Delete(a);
		cJSON_Delete(db);
		free(ans);
		free(dbj);
		free(dberr);
		if (watch && rc == 0)
			sleep(1);
	} while (watch && rc == 0);
	cfg_release(&cfg);
	return rc;
}
