/*
 * cmd_sanitize - `sekisho sanitize`: mail in, sanitized mail out, original held.
 *
 * Order of work for every message, the one invariant that matters:
 *   1. read and sanitize in memory (no output yet);
 *   2. store the original in the quarantine and make it durable;
 *   3. only then write the sanitized copy.
 * A batch (FILE... -o OUTDIR) groups step 2's syncs over up to BATCH_MAX
 * messages, then writes that group's outputs.
 * Nothing unsanitized is ever written: a message that cannot be made safe
 * gives no output at all (exit 65), and its original is still held.
 *
 * The parsing runs in a persistent sandboxed worker (lib/sandbox: seccomp
 * allow-list, rlimits, no descriptors but its socket), this same binary
 * spawned afresh (src/worker.c) so that it holds nothing of this process's
 * memory, recycled every WORKER_RECYCLE messages. Each input is read straight into the worker's
 * input region, which the worker sees read-only; the worker sends back a
 * packed result that the parent checks as hostile bytes, and the parent
 * stores the original from the same region. If the worker dies on a message
 * (crash, memory, time, a forbidden syscall, a malformed result), that
 * message is held as "cannot be made safe" and a fresh worker takes the next
 * one. Only a failure to start a worker at all is a temporary failure (75).
 */
#include "cli.h"
#include "decision.h"
#include "quarantine.h"
#include "sandbox.h"
#include "sanitize.h"
#include "worker.h"
#include "util/digest.h"
#include "util/fileio.h"
#include "util/msg.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX      256
#define WORKER_RECYCLE 1000 /* messages per worker: bounds what a worker's heap can become */

static const char usage_text[] =
    "名前 / NAME\n"
    "    sekisho sanitize - インターネットからのメールを無害化する (mail sanitization)\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho sanitize [-p POLICY] [-q QDIR] [-v] < IN.eml > OUT.eml\n"
    "    sekisho sanitize [-p POLICY] [-q QDIR] [-v] -o OUTDIR FILE...\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    Turns one RFC 5322 message into a message that is safe to deliver to the\n"
    "    LGWAN zone (無害化通信): a single text/plain; charset=UTF-8 part.\n"
    "    - Text bodies in any charset (ISO-2022-JP with Outlook's extension\n"
    "      characters, CP932, EUC-JP, UTF-8, unlabelled) are converted to UTF-8.\n"
    "    - HTML is rendered to text; links show their real, defanged destination.\n"
    "    - Every other part (attachments, inline images, calendars, unknown types)\n"
    "      is removed and listed at the top of the body with its name, size,\n"
    "      declared and detected type, SHA-256 and warnings (disguised extension,\n"
    "      password ZIP, macros, programs).\n"
    "    - From/To/Cc/Date/Subject/Message-ID/In-Reply-To/References are kept;\n"
    "      the subject gets the policy's tag (default [外部]) once.\n"
    "    The original is stored byte for byte in the quarantine, durably, before\n"
    "    any output is written; X-Sekisho-Quarantine-Id names it.\n"
    "    Every decision is written to the ledger (sekisho ledger) before any\n"
    "    output: mail.received (the original, its size and SHA-256), then\n"
    "    mail.sanitized (with the SHA-256 of the output) or mail.held, or\n"
    "    mail.tempfail. If the ledger cannot be written, nothing is released\n"
    "    (exit 75).\n"
    "\n"
    "    With no FILE, reads one message from standard input and writes the\n"
    "    result to standard output. With FILEs, -o OUTDIR is required: each\n"
    "    result is written to OUTDIR under the input's base name.\n"
    "\n"
    "オプション / OPTIONS\n"
    "    -p, --policy FILE      policy file (default: built-in defaults)\n"
    "    -q, --quarantine DIR   quarantine directory (default: the policy's\n"
    "                           mail.quarantine.dir, else $SEKISHO_STATE_DIR/quarantine,\n"
    "                           else /var/lib/sekisho/quarantine)\n"
    "    -l, --ledger DIR       ledger for the decisions (default: the policy's\n"
    "                           ledger.dir, else $SEKISHO_STATE_DIR/ledger; created,\n"
    "                           with its signing key, if it does not exist)\n"
    "    -o, --output DIR       output directory for FILE arguments\n"
    "    -v, --verbose          one line per message on standard error\n"
    "    -h, --help             this text\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0   every message was sanitized\n"
    "    64  usage error\n"
    "    65  a message cannot be made safe (no output for it; its original is held)\n"
    "    66  an input file cannot be read\n"
    "    75  internal or resource failure (nothing was released; try again)\n"
    "    78  the policy file is invalid\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho sanitize -q /tmp/q < mail.eml > safe.eml\n"
    "    sekisho sanitize -p /etc/sekisho/policy.yaml -o out/ in/*.eml\n"
    "    sekisho quarantine get -q /tmp/q ID > original.eml\n";

struct job {
    const char *name; /* input path, or "-" */
    size_t size;      /* bytes of the original */
    sanitize_result res;
    int status; /* exit code for this message */
    char id[QUARANTINE_ID_MAX];
    char sha256[65]; /* of the original, as stored */
    buf out;         /* the sanitized message, built before it is recorded */
    char out_sha256[65];
};

struct opts {
    const char *policy_path, *qdir, *outdir, *ledger_dir;
    int verbose;
};

/* Reads j's input into p[0..cap) (cap = max_message_bytes). */
static int read_input(struct job *j, uint8_t *p, size_t cap)
{
    int stdin_in = strcmp(j->name, "-") == 0;
    int fd = stdin_in ? 0 : open(j->name, O_RDONLY | O_CLOEXEC);
    int rc = fd < 0 ? -errno : fileio_read_into(fd, p, cap, &j->size);
    if (fd > 0)
        close(fd);
    if (rc == -EFBIG) {
        fprintf(stderr,
                "sekisho sanitize: %s: larger than max_message_size (%zu bytes): not "
                "processed, not stored; the input is unchanged\n",
                j->name, cap);
        return EXIT_DATAERR;
    }
    if (rc < 0) {
        fprintf(stderr, "sekisho sanitize: %s: %s\n", j->name, strerror(-rc));
        return stdin_in ? EXIT_IOERR : EXIT_NOINPUT;
    }
    return EXIT_OK;
}

/* Stores j's original orig[0..j->size) (without sync unless sync). */
static int store(quarantine *q, struct job *j, const uint8_t *orig, const policy *pol, int sync)
{
    quarantine_meta m;
    quarantine_part *qp;
    if (sanitize_quarantine_meta(&j->res, pol, (int64_t)time(NULL), &m, &qp) != 0) {
        fprintf(stderr, "sekisho sanitize: %s: cannot store the original: out of memory\n",
                j->name);
        return -ENOMEM;
    }
    buf err;
    buf_init(&err, 4096);
    int rc = quarantine_put_sha(q, orig, j->size, &m, sync, j->id, j->sha256, &err);
    if (rc < 0)
        fprintf(stderr, "sekisho sanitize: %s: cannot store the original: %s\n", j->name,
                buf_cstr(&err));
    buf_free(&err);
    free(qp);
    return rc;
}

/* Builds j's sanitized message into j->out (not yet released). */
static int build(struct job *j)
{
    buf_init(&j->out, BUF_UNLIMITED);
    if (sanitize_finish(&j->res, j->id, &j->out) < 0) {
        buf_free(&j->out);
        fprintf(stderr, "sekisho sanitize: %s: out of memory\n", j->name);
        return EXIT_TEMPFAIL;
    }
    uint8_t md[DIGEST_SHA256_LEN];
    digest_sha256(j->out.p, j->out.len, md);
    digest_hex(md, sizeof md, j->out_sha256);
    return EXIT_OK;
}

/* Releases j->out (recorded in the ledger by then). */
static int emit(struct job *j, const struct opts *o)
{
    buf out = j->out;
    int rc;
    if (o->outdir == NULL) {
        rc = fileio_write_all(1, out.p, out.len);
    } else {
        const char *base = strrchr(j->name, '/');
        base = base ? base + 1 : j->name;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", o->outdir, base) >= (int)sizeof path)
            rc = -ENAMETOOLONG;
        else
            rc = fileio_write_atomic(path, out.p, out.len, 0640, 0);
    }
    if (rc < 0) {
        fprintf(stderr, "sekisho sanitize: %s: cannot write the result: %s\n", j->name,
                strerror(-rc));
        return EXIT_TEMPFAIL;
    }
    return EXIT_OK;
}

static void report(const struct job *j, const struct opts *o)
{
    if (j->res.verdict == SANITIZE_REJECT && j->id[0])
        fprintf(stderr, "sekisho sanitize: %s: cannot be made safe: %s (original held as %s)\n",
                j->name, j->res.reason, j->id);
    else if (o->verbose && j->status == EXIT_OK)
        fprintf(stderr, "sekisho sanitize: %s: sanitized as %s (%zu part(s) removed)\n", j->name,
                j->id, j->res.n_parts);
}

static int worst(int a, int b)
{
    /* 75 (retry) outranks 65 (data), which outranks input errors and 0 */
    int rank_a = a == EXIT_TEMPFAIL ? 3 : a == EXIT_DATAERR ? 2 : a ? 1 : 0;
    int rank_b = b == EXIT_TEMPFAIL ? 3 : b == EXIT_DATAERR ? 2 : b ? 1 : 0;
    return rank_a >= rank_b ? a : b;
}

struct runner {
    const policy *pol;
    ledger *l;               /* the decisions */
    const buf *policy_bytes; /* the worker loads the very same policy */
    quarantine *q;
    const struct opts *o;
    sandbox_worker *w;
    int start_failed;
    int ledger_failed; /* entries may be staged for mail not released: stop */
    buf reply, why;
};

/* A worker ready for the next message, or NULL (start failed: reported). */
static sandbox_worker *worker(struct runner *r)
{
    if (r->w && (!sandbox_worker_alive(r->w) || sandbox_worker_calls(r->w) >= WORKER_RECYCLE)) {
        buf_reset(&r->why);
        int alive = sandbox_worker_alive(r->w);
        int rc = sandbox_worker_stop(r->w, &r->why);
        r->w = NULL;
        if (alive && rc != 0)
            msg_warn("sanitize worker ended badly when recycled: %s", buf_cstr(&r->why));
    }
    if (r->w == NULL && !r->start_failed) {
        /* Spawned, not forked: a fork would inherit this process's writable
         * mappings (the input region, the quarantine index's shared memory),
         * which a compromised worker could then write to. */
        buf_reset(&r->why);
        r->w = sanitize_worker_spawn(r->pol, r->policy_bytes->p, r->policy_bytes->len,
                                     WORKER_RECYCLE, 0, "sekisho", &r->why);
        if (r->w == NULL) {
            r->start_failed = 1;
            fprintf(stderr, "sekisho sanitize: cannot start the sandboxed worker: %s\n",
                    buf_cstr(&r->why));
        }
    }
    return r->w;
}

/* Reads, sanitizes (in the worker) and stores job j. */
static void process(struct runner *r, struct job *j, int sync)
{
    sandbox_worker *w = worker(r);
    if (w == NULL) {
        j->status = EXIT_TEMPFAIL;
        return;
    }
    size_t cap = 0;
    uint8_t *region = sandbox_worker_input(w, &cap);
    j->status = read_input(j, region, cap);
    if (j->status != EXIT_OK)
        return;
    const policy_mail_limits *lim = &r->pol->mail.limits;
    buf_reset(&r->reply);
    buf_reset(&r->why);
    /* The worker's own alarm comes first; this is the backstop. */
    int rc = sandbox_worker_call(w, j->size, lim->time_limit_ms + 5000, &r->reply, &r->why);
    size_t used = 0;
    if (rc == 0 && (sanitize_result_unpack(r->reply.p, r->reply.len, &j->res, &used) != 0 ||
                    used != r->reply.len)) {
        sanitize_result_free(&j->res);
        rc = -EPROTO; /* it answered, just not sensibly: replaced below */
        buf_puts(&r->why, "malformed result");
    }
    if (rc != 0) {
        /* The worker died on this message (or sent garbage for it): it is
         * held as "cannot be made safe"; the next one gets a fresh worker. */
        memset(&j->res, 0, sizeof j->res);
        j->res.from = xstrdup("");
        j->res.to = xstrdup("");
        j->res.subject = xstrdup("");
        j->res.message_id = xstrdup("");
        j->res.verdict = SANITIZE_REJECT;
        snprintf(j->res.reason, sizeof j->res.reason, "sanitizer worker failed: %s",
                 buf_cstr(&r->why));
    }
    /* The region still holds the original: the worker could only read it. */
    if (store(r->q, j, region, r->pol, sync) < 0)
        j->status = EXIT_TEMPFAIL;
    if (rc != 0 && sandbox_worker_alive(w)) {
        /* a malformed result: do not trust this worker with the next one */
        buf tmp;
        buf_init(&tmp, 1024);
        sandbox_worker_stop(w, &tmp);
        buf_free(&tmp);
        r->w = NULL;
    }
}

/* Writes the decisions on jobs[0..n) to the ledger and commits them: for
 * each stored original mail.received, then mail.sanitized (its output built),
 * mail.held or mail.tempfail. failure: why the whole batch is being failed
 * (then only mail.tempfail is written, best effort). 0 once durable. */
static int record(struct runner *r, struct job *jobs, size_t n, const char *failure)
{
    static const char source[] = "sekisho sanitize";
    buf err;
    buf_init(&err, 4096);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct job *j = &jobs[i];
        if (j->res.from == NULL)
            continue; /* never read (input error): nothing was decided */
        decision_mail m = {.quarantine_id = j->id[0] ? j->id : NULL,
                           .message_id = j->res.message_id,
                           .from = j->res.from,
                           .to = j->res.to,
                           .size = j->size,
                           .sha256 = j->sha256};
        if (failure == NULL && j->id[0])
            rc = decision_mail_append(r->l, source, "mail.received", &m, &err);
        if (rc)
            break;
        if (failure != NULL || j->status == EXIT_TEMPFAIL) {
            m.reason = failure ? failure : "internal or resource failure";
            rc = decision_mail_append(r->l, source, "mail.tempfail", &m, &err);
        } else if (j->res.verdict != SANITIZE_OK) {
            m.reason = j->res.reason;
            rc = decision_mail_append(r->l, source, "mail.held", &m, &err);
        } else if (j->status == EXIT_OK) {
            m.removed_parts = j->res.n_parts;
            m.output_size = j->out.len;
            m.output_sha256 = j->out_sha256;
            rc = decision_mail_append(r->l, source, "mail.sanitized", &m, &err);
        }
    }
    if (rc == 0)
        rc = ledger_commit(r->l, &err);
    if (rc != 0) {
        fprintf(stderr, "sekisho sanitize: cannot write the decisions to the ledger: %s\n",
                buf_cstr(&err));
        r->ledger_failed = 1;
    }
    buf_free(&err);
    return rc;
}

/* Processes jobs[0..n): each read, sanitized and stored; one sync; the
 * decisions recorded; then emit. */
static int run_batch(struct runner *r, struct job *jobs, size_t n)
{
    int status = EXIT_OK;
    int single = n == 1 && r->o->outdir == NULL;
    for (size_t i = 0; i < n; i++)
        process(r, &jobs[i], single);
    if (!single) {
        buf err;
        buf_init(&err, 4096);
        if (quarantine_sync(r->q, &err) < 0) {
            fprintf(stderr, "sekisho sanitize: cannot make the quarantine durable: %s\n",
                    buf_cstr(&err));
            for (size_t i = 0; i < n; i++) {
                jobs[i].status = worst(jobs[i].status, EXIT_TEMPFAIL);
                jobs[i].id[0] = 0; /* not durable: not received */
            }
            record(r, jobs, n, buf_cstr(&err));
            buf_free(&err);
            return EXIT_TEMPFAIL; /* nothing of this batch is released */
        }
        buf_free(&err);
    }
    for (size_t i = 0; i < n; i++) {
        struct job *j = &jobs[i];
        if (j->status == EXIT_OK && j->res.verdict == SANITIZE_OK)
            j->status = build(j);
    }
    if (record(r, jobs, n, NULL) != 0) {
        /* not recorded: not released */
        for (size_t i = 0; i < n; i++) {
            jobs[i].status = worst(jobs[i].status, EXIT_TEMPFAIL);
            buf_free(&jobs[i].out);
        }
        return EXIT_TEMPFAIL;
    }
    for (size_t i = 0; i < n; i++) {
        struct job *j = &jobs[i];
        if (j->status == EXIT_OK) {
            if (j->res.verdict == SANITIZE_OK)
                j->status = emit(j, r->o);
            else
                j->status = EXIT_DATAERR;
        }
        buf_free(&j->out);
        report(j, r->o);
        status = worst(status, j->status);
    }
    return status;
}

int cmd_sanitize(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"quarantine", required_argument, NULL, 'q'},
        {"output", required_argument, NULL, 'o'},
        {"verbose", no_argument, NULL, 'v'},
        {"ledger", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct opts o = {0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "p:q:o:l:vh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            o.policy_path = optarg;
            break;
        case 'q':
            o.qdir = optarg;
            break;
        case 'o':
            o.outdir = optarg;
            break;
        case 'l':
            o.ledger_dir = optarg;
            break;
        case 'v':
            o.verbose = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        default:
            fputs("usage: sekisho sanitize [-p POLICY] [-q QDIR] [-o OUTDIR FILE...] "
                  "(see --help)\n",
                  stderr);
            return EXIT_USAGE;
        }
    }
    int nfiles = argc - optind;
    if (nfiles > 1 && o.outdir == NULL) {
        fputs("sekisho sanitize: several FILEs need -o OUTDIR\n", stderr);
        return EXIT_USAGE;
    }
    if (nfiles == 0 && o.outdir != NULL) {
        fputs("sekisho sanitize: -o OUTDIR needs FILE arguments\n", stderr);
        return EXIT_USAGE;
    }
    buf policy_bytes;
    buf_init(&policy_bytes, (size_t)1 << 20);
    policy *pol = cli_load_policy_bytes(o.policy_path, &policy_bytes);
    const char *qdir = o.qdir ? o.qdir : pol->quarantine_dir;
    if (o.outdir) {
        int rc = fileio_mkdir_p(o.outdir, 0750);
        if (rc < 0) {
            fprintf(stderr, "sekisho sanitize: %s: %s\n", o.outdir, strerror(-rc));
            policy_free(pol);
            buf_free(&policy_bytes);
            return EXIT_CANTCREAT;
        }
    }
    buf err;
    buf_init(&err, 4096);
    quarantine *q = quarantine_open(qdir, 1, &err);
    if (q == NULL) {
        fprintf(stderr, "sekisho sanitize: quarantine %s: %s\n", qdir, buf_cstr(&err));
        buf_free(&err);
        policy_free(pol);
        buf_free(&policy_bytes);
        return EXIT_TEMPFAIL;
    }
    buf_reset(&err);
    ledger *l = decision_ledger_open(pol, o.ledger_dir, &err);
    if (l == NULL) {
        fprintf(stderr, "sekisho sanitize: ledger %s: %s\n",
                o.ledger_dir ? o.ledger_dir : pol->ledger.dir, buf_cstr(&err));
        buf_free(&err);
        quarantine_close(q);
        policy_free(pol);
        buf_free(&policy_bytes);
        return EXIT_TEMPFAIL;
    }
    buf_free(&err);
    struct runner r = {.pol = pol, .l = l, .policy_bytes = &policy_bytes, .q = q, .o = &o};
    buf_init(&r.reply, BUF_UNLIMITED);
    buf_init(&r.why, 4096);
    int status = EXIT_OK;
    size_t total = nfiles ? (size_t)nfiles : 1;
    struct job *jobs = xcalloc(BATCH_MAX, sizeof *jobs);
    size_t next = 0;
    while (next < total && !r.ledger_failed) {
        size_t n = 0;
        while (next < total && n < BATCH_MAX) {
            struct job *j = &jobs[n++];
            memset(j, 0, sizeof *j);
            j->name = nfiles ? argv[optind + (int)next] : "-";
            next++;
        }
        status = worst(status, run_batch(&r, jobs, n));
        for (size_t i = 0; i < n; i++)
            sanitize_result_free(&jobs[i].res);
    }
    free(jobs);
    if (r.w) {
        buf_reset(&r.why);
        if (sandbox_worker_stop(r.w, &r.why) != 0)
            msg_warn("sanitize worker ended badly: %s", buf_cstr(&r.why));
    }
    buf_free(&r.reply);
    buf_free(&r.why);
    buf_init(&err, 4096);
    if (quarantine_sync(q, &err) < 0) {
        fprintf(stderr, "sekisho sanitize: %s\n", buf_cstr(&err));
        status = EXIT_TEMPFAIL;
    }
    buf_reset(&err);
    if (r.ledger_failed) {
        /* Not closed: closing would commit entries still staged for mail
         * that was not released. Nothing was released after the failure;
         * the remaining inputs were not processed. */
        fputs("sekisho sanitize: stopped at the ledger failure; the remaining inputs were not "
              "processed\n",
              stderr);
        status = EXIT_TEMPFAIL;
    } else if (ledger_close(l, &err) != 0) {
        msg_warn("ledger: %s (the decisions were already committed)", buf_cstr(&err));
    }
    buf_free(&err);
    quarantine_close(q);
    policy_free(pol);
    buf_free(&policy_bytes);
    return status;
}
