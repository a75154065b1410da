/* status.c - `s3jobfs status`: what the running daemon is uploading, job by job.
 *
 * Asks the daemon of the cache directory over its control socket (include/ctl.h) and prints
 * one line per job (files clean/total, bytes, failures) or, with --json, the daemon's answer.
 * With --watch it repeats every second until interrupted. Lines stay within 80 columns.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "cfg.h"
#include "cli.h"
#include "ctl.h"

static double num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItem(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
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

static void print_text(const cJSON *a)
{
	const cJSON *jobs = cJSON_GetObjectItem(a, "jobs"), *j;
	char b1[32], b2[32];

	human(b1, sizeof(b1), num(a, "bytesUploaded"));
	printf("daemon %d: %.0f queued, %.0f uploading, %.0f dirty, %.0f failed, %.0f clean; %s uploaded\n",
	       (int)num(a, "pid"), num(a, "filesQueued"), num(a, "filesUploading"), num(a, "filesDirty"),
	       num(a, "filesFailed"), num(a, "filesClean"), b1);
	cJSON_ArrayForEach(j, jobs) {
		double total = num(j, "dirty") + num(j, "queued") + num(j, "uploading") + num(j, "clean") +
			       num(j, "failed");
		const char *state = num(j, "failed") ? "partial" :
				    total == num(j, "clean") ? "success" :
				    num(j, "uploading") || num(j, "queued") ? "uploading" :
				    cJSON_IsTrue(cJSON_GetObjectItem(j, "completed")) ? "uploading" : "pending";
		const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(j, "job"));
		const cJSON *e;

		human(b1, sizeof(b1), num(j, "bytesClean"));
		human(b2, sizeof(b2), num(j, "bytesTotal"));
		printf("%-34.34s %-9s %5.0f/%-5.0f files %10s/%-10s\n", name ? name : "?", state,
		       num(j, "clean"), total, b1, b2);
		cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "errors"))
			printf("    failed: %.36s: %.36s\n",
			       cJSON_GetStringValue(cJSON_GetObjectItem(e, "file")) ?: "?",
			       cJSON_GetStringValue(cJSON_GetObjectItem(e, "message")) ?: "?");
	}
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
	const char *dir = NULL, *env_file = NULL;
	bool json = false, watch = false;
	struct cfg cfg;
	bool have_cfg = false;
	int opt, rc = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': dir = optarg; break;
		case 'e': env_file = optarg; break;
		case 'j': json = true; break;
		case 'w': watch = true; break;
		case 'h':
			printf("usage: s3jobfs status [--cache-dir DIR] [--json] [--watch]\n\n"
			       "Shows each job folder of the running mount: state (pending, uploading,\n"
			       "success, partial), files and bytes uploaded, and failed files with S3's error.\n");
			return 0;
		default: return 2;
		}
	}
	if (!dir) {
		if (cfg_load(&cfg, env_file, stderr) != 0)
			return 2;
		have_cfg = true;
		dir = cfg.cache_dir;
	}
	do {
		char *ans = ctl_request(dir, "{\"cmd\":\"status\"}", 10);
		cJSON *a;

		if (!ans) {
			fprintf(stderr, "s3jobfs: no daemon answers for cache directory '%s'\n", dir);
			rc = 1;
			break;
		}
		a = cJSON_Parse(ans);
		if (watch && isatty(STDOUT_FILENO))
			printf("\033[H\033[2J");
		if (json)
			printf("%s", ans);
		else if (a)
			print_text(a);
		fflush(stdout);
		cJSON_Delete(a);
		free(ans);
		if (watch)
			sleep(1);
	} while (watch);
	if (have_cfg)
		cfg_release(&cfg);
	return rc;
}
