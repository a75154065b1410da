/* main.c - `s3jobfs`: dispatch to the subcommands and print help.
 *
 * The table below is the single list of subcommands; `s3jobfs --help` and `s3jobfs help CMD`
 * are printed from it.
 */
#include <stdio.h>
#include <string.h>
#include <curl/curl.h>
#include <libxml/parser.h>

#include "cli.h"

#ifndef S3JOBFS_VERSION
#define S3JOBFS_VERSION "0.1.0"
#endif

struct subcommand {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct subcommand subcommands[] = {
	{ "mount", cli_mount, "mount the bucket's prefix; files written there are uploaded to S3" },
	{ "umount", cli_umount, "drain queued uploads, unmount and stop the daemon" },
	{ "complete", cli_complete, "mark a job folder complete so its files upload now" },
	{ "upload", cli_upload, "queue a job's files again (--only-failed), or upload a local job folder (--path)" },
	{ "status", cli_status, "show each job's upload progress and errors (--json, --watch)" },
	{ "check", cli_check, "check configuration, credentials and bucket access (exit 0 when all works)" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: s3jobfs <command> [options]\n\n"
		   "s3jobfs stages a web scraper's job folders in a local write-back cache and\n"
		   "uploads every file to S3 as a plain object. Configuration comes from the\n"
		   "environment and a .env file (S3_ENABLED, S3_BUCKET_NAME, S3_REGION, ...).\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
	fprintf(f, "\n's3jobfs <command> --help' describes a command; 's3jobfs --version' the build.\n");
}

int main(int argc, char **argv)
{
	int rc = 2;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		if (argc > 2 && strcmp(argv[1], "help") == 0) {
			char *hargv[] = { argv[2], (char *)"--help", NULL };

			for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
				if (!strcmp(subcommands[i].name, argv[2]))
					return subcommands[i].fn(2, hargv);
		}
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("s3jobfs %s (%s)\n", S3JOBFS_VERSION, curl_version());
		return 0;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	xmlInitParser();
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
		if (!strcmp(subcommands[i].name, argv[1])) {
			rc = subcommands[i].fn(argc - 1, argv + 1);
			goto out;
		}
	}
	fprintf(stderr, "s3jobfs: '%s' is not a command; see 's3jobfs --help'\n", argv[1]);
out:
	xmlCleanupParser();
	curl_global_cleanup();
	return rc;
}
