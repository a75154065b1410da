/* cli.h - the subcommands of the one `s3jobfs` binary (cli/).
 *
 * Each subcommand takes argc/argv starting at its own name and returns the process exit
 * status: 0 success, 1 the operation failed, 2 bad usage or configuration.
 */
#ifndef S3JOBFS_CLI_H
#define S3JOBFS_CLI_H

int cli_check(int argc, char **argv);
int cli_mount(int argc, char **argv);
int cli_umount(int argc, char **argv);
int cli_complete(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_upload(int argc, char **argv);

#endif
