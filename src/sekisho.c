/*
 * sekisho - the command-line front end: git-style subcommands over libsekisho.
 *
 * Each subcommand parses its own options and prints its own --help; this file
 * only dispatches, and holds what every subcommand shares.
 */
#include "cli.h"
#include "config.h"
#include "worker.h"
#include "util/msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "使い方 / usage: sekisho [--version] [--help] COMMAND [ARGS...]\n"
    "\n"
    "sekisho (関所) implements the technical controls of a Japanese local government's\n"
    "information security policy (情報セキュリティポリシー), driven by one policy file.\n"
    "\n"
    "Commands:\n"
    "  sanitize     make internet mail safe for the LGWAN zone (メール無害化):\n"
    "               text only, attachments removed, listed and held in quarantine\n"
    "  quarantine   list, show, get (byte for byte) or purge the held originals\n"
    "  ledger       the tamper-evident ledger (台帳): append, verify, prove, export heads\n"
    "  record       append one of the policy's records (入退室, 媒体廃棄, ...) to the ledger\n"
    "  syslogd      receive syslog (RFC 5424/3164; unix, UDP, TCP) into the ledger\n"
    "  help CMD     show the manual of a command (same as: sekisho CMD --help)\n"
    "\n"
    "Every command works without a policy file (built-in defaults) and takes\n"
    "-p FILE to use one. State is kept under $SEKISHO_STATE_DIR (default\n"
    "/var/lib/sekisho) unless the policy says otherwise.\n"
    "\n"
    "Exit status: 0 success; 64 usage error; 65 input that cannot be made safe;\n"
    "75 temporary failure (try again); 78 policy file error.\n";

policy *cli_load_policy_bytes(const char *path, buf *bytes)
{
    if (path == NULL)
        return policy_default();
    buf errors;
    buf_init(&errors, 1 << 20);
    policy *p = policy_load_bytes(path, bytes, &errors);
    if (p == NULL) {
        fputs(buf_cstr(&errors), stderr);
        if (errors.len == 0)
            fprintf(stderr, "%s: cannot load policy\n", path);
        buf_free(&errors);
        exit(EXIT_CONFIG);
    }
    buf_free(&errors);
    return p;
}

policy *cli_load_policy(const char *path)
{
    buf bytes;
    buf_init(&bytes, (size_t)1 << 20);
    policy *p = cli_load_policy_bytes(path, &bytes);
    buf_free(&bytes);
    return p;
}

int cli_group(int argc, char **argv, const char *help, int (*dispatch)(int, char **))
{
    if (argc < 2) {
        fputs(help, stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "help") == 0 && argc >= 3) {
        char *hargv[] = {argv[2], "--help", NULL};
        return dispatch(2, hargv);
    }
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        fputs(help, stdout);
        return EXIT_OK;
    }
    return dispatch(argc - 1, argv + 1);
}

struct command {
    const char *name;
    int (*fn)(int, char **);
};

static const struct command commands[] = {
    {"sanitize", cmd_sanitize}, {"quarantine", cmd_quarantine}, {"ledger", cmd_ledger},
    {"record", cmd_record},     {"syslogd", cmd_syslogd},       {NULL, NULL},
};

static const struct command *find(const char *name)
{
    for (const struct command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

int main(int argc, char **argv)
{
    /* sekisho sanitize's worker: this same binary, spawned with a hidden argument */
    if (argc == 2 && strcmp(argv[1], SANITIZE_WORKER_ARG) == 0)
        sanitize_worker_main("sekisho worker");
    msg_set_progname("sekisho");
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("sekisho %s\n", SEKISHO_VERSION);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        }
        const struct command *c = find(argv[2]);
        if (c == NULL) {
            fprintf(stderr, "sekisho: no such command: %s\n", argv[2]);
            return EXIT_USAGE;
        }
        char *hargv[] = {argv[2], "--help", NULL};
        return c->fn(2, hargv);
    }
    const struct command *c = find(cmd);
    if (c == NULL) {
        fprintf(stderr, "sekisho: no such command: %s (see: sekisho --help)\n", cmd);
        return EXIT_USAGE;
    }
    char progname[64];
    snprintf(progname, sizeof progname, "sekisho %s", cmd);
    msg_set_progname(progname);
    return c->fn(argc - 1, argv + 1);
}
