/*
 * cli - what the sekisho subcommands share: exit codes (sysexits.h values),
 * policy loading with file:line errors, and the state directory.
 */
#ifndef SEKISHO_CLI_H
#define SEKISHO_CLI_H

#include "policy.h"

#define EXIT_OK        0
#define EXIT_USAGE     64 /* EX_USAGE */
#define EXIT_DATAERR   65 /* EX_DATAERR: this input cannot be made safe */
#define EXIT_NOINPUT   66 /* EX_NOINPUT */
#define EXIT_SOFTWARE  70 /* EX_SOFTWARE */
#define EXIT_CANTCREAT 73
#define EXIT_IOERR     74
#define EXIT_TEMPFAIL  75 /* EX_TEMPFAIL: internal or resource failure, try again */
#define EXIT_CONFIG    78 /* EX_CONFIG: the policy file is wrong */

/* Loads the policy at path, or the built-in defaults when path is NULL.
 * On error prints each "file:line: message" to stderr and exits EXIT_CONFIG. */
policy *cli_load_policy(const char *path);
/* main() of a command with subcommands (sekisho quarantine, sekisho ledger):
 * "help [SUB]", "--help", or dispatch(argc - 1, argv + 1) with the
 * subcommand first. */
int cli_group(int argc, char **argv, const char *help, int (*dispatch)(int, char **));
/* The same, keeping the file's bytes in bytes (left empty for the defaults):
 * what a spawned worker is given, so that it runs the very same policy. */
policy *cli_load_policy_bytes(const char *path, buf *bytes);

int cmd_sanitize(int argc, char **argv);
int cmd_quarantine(int argc, char **argv);
int cmd_ledger(int argc, char **argv);
int cmd_record(int argc, char **argv);
int cmd_syslogd(int argc, char **argv);

#endif
