/*
 * sekisho-milter - the mail gateway: Postfix hands every message to this
 * filter over the milter protocol (libmilter); the filter keeps the original
 * and replaces the message with its sanitized form before Postfix queues it.
 *
 * PER MESSAGE (the invariant: nothing unsanitized passes, nothing is lost)
 *   connect   the client address and Postfix's {daemon_name} against the
 *             policy's zones (policy_mail_from_inside()): mail from an
 *             internal zone is accepted untouched for the whole connection
 *             (SMFIS_ACCEPT, logged); every other connection is sanitized.
 *   header, body   collected into one buffer, as received (SMFIP_HDR_LEADSPC:
 *             values keep their leading space and folding; CRLF line ends),
 *             at most mail.limits.max_message_size; past it the rest is
 *             dropped and end of message answers 552 5.3.4, nothing stored.
 *   end of message
 *     1. sanitize: a worker from the pool (gateway.workers spawned,
 *        sandboxed processes, see lib/sandbox.h) reads the message from its
 *        read-only region and sends back a packed result, which is checked
 *        as hostile bytes (sanitize_result_unpack);
 *     2. store the original durably in the quarantine: one process-wide
 *        handle owned by the committer thread, which takes every put that is
 *        waiting, writes them and makes them durable with ONE quarantine_sync
 *        (group commit: concurrent messages share the fdatasync);
 *     3. a message that cannot be made safe (REJECT verdict): 550 5.7.1 with
 *        a text naming the quarantine id; the original is held;
 *     4. otherwise rewrite from sanitize_finish()'s output (never
 *        re-implemented here): the body replaced (smfi_replacebody, in
 *        chunks), and the header fields made those of the sanitized header
 *        block (X-Sekisho-Quarantine-Id, the kept headers with the tagged
 *        Subject, MIME-Version, Content-Type, Content-Transfer-Encoding,
 *        X-Sekisho-Sanitized) with the fewest edits (rewrite_headers():
 *        a field whose value is unchanged stays, every other original field
 *        is changed or deleted, the new ones are added at the end; each edit
 *        costs Postfix a change of its queue file).
 *   Any error, crash, timeout, or a pool with no free worker in time:
 *   SMFIS_TEMPFAIL (451 4.7.0 / 4.3.0), never SMFIS_ACCEPT of the original.
 *   The sending MTA keeps the mail and retries. (A failure after step 2
 *   leaves a held original for a message that will come again: a
 *   duplicate in the quarantine, never a loss.)
 *
 * THREADS: libmilter runs one thread per connection. The pool is a mutex and
 *   a condition variable over N slots; a worker that died or answered
 *   nonsense is replaced when its slot is released, and one that served
 *   gateway.recycle_after messages is stopped and replaced the same way.
 *   Workers are started with sandbox_worker_spawn() (posix_spawn of this
 *   binary with SANITIZE_WORKER_ARG), never fork(): fork in a threaded process
 *   copies locks held by other threads.
 *
 * OUTBOUND: outbound_rules() is the hook for the rules of mail leaving the
 *   organization (a later issue); today it has no behaviour.
 *
 * LOGS: syslog (LOG_MAIL), one line per message: queue id, Message-ID,
 *   quarantine id, verdict, removed parts, time; with -f also on stderr.
 */
#include "config.h"
#include "decision.h"
#include "jcs.h"
#include "policy.h"
#include "quarantine.h"
#include "sandbox.h"
#include "worker.h"
#include "sanitize.h"
#include "util/buf.h"
#include "util/digest.h"
#include "util/fileio.h"
#include "util/msg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK       0
#define EXIT_USAGE    64
#define EXIT_SOFTWARE 70
#define EXIT_TEMPFAIL 75
#define EXIT_CONFIG   78

/* The hidden argument that makes this binary a sanitizer worker. */

#define BODY_CHUNK   65536 /* bytes per smfi_replacebody call */
#define COMMIT_BATCH 512   /* puts per quarantine_sync (the store syncs by itself at 1024) */

static const char usage_text[] =
    "名前 / NAME\n"
    "    sekisho-milter - Postfix のミルターとしてメールを無害化するゲートウェイ\n"
    "    the mail gateway: sanitizes mail as a Postfix milter\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho-milter [-p POLICY] [-f] [-v]\n"
    "    sekisho-milter [-p POLICY] --check-config\n"
    "    sekisho-milter --help | --version\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    Postfix (smtpd_milters) から渡されるメールを 1 通ずつ処理します。\n"
    "    - 接続元のアドレスと Postfix の {daemon_name} をポリシーの領域 (zones,\n"
    "      gateway.daemon_zones) と照らし、庁内の領域 (lgwan, mynumber) からの\n"
    "      メールはそのまま通します。それ以外はすべて無害化します。\n"
    "    - 無害化: 原本を隔離領域に保存 (fsync) してから、本文をテキストだけの\n"
    "      ものに差し替え、ヘッダーを書き換えます (sekisho sanitize と同じ結果)。\n"
    "      解析はサンドボックス内のプロセス (gateway.workers 個) が行います。\n"
    "    - 無害化できないメールは 550 で拒否し、原本は隔離 ID で保管します。\n"
    "    - どの段階でも障害・異常終了・時間切れがあれば一時エラー (4xx) を\n"
    "      返します。無害化していないメールを通すことはありません。送信側が\n"
    "      再送するので、メールは失われません。\n"
    "\n"
    "    Filters every mail Postfix hands over (smtpd_milters). Mail from an\n"
    "    internal zone (kind lgwan or mynumber, by client address and\n"
    "    {daemon_name}) passes untouched; everything else is sanitized: the\n"
    "    original is stored durably in the quarantine, then the body is\n"
    "    replaced with the text-only sanitized one and the headers rewritten\n"
    "    (the same result as `sekisho sanitize`), parsed in sandboxed worker\n"
    "    processes. Mail that cannot be made safe is refused with 550 and its\n"
    "    original held. Any failure, crash or timeout answers 4xx (the sender\n"
    "    retries): an unsanitized mail never passes, and none is lost.\n"
    "\n"
    "    待ち受けアドレス・プロセス数などはポリシーの gateway: で指定します\n"
    "    (docs/POLICY.md)。Postfix 側の設定は docs/GATEWAY.md。\n"
    "    The listen address and the pool come from the policy's gateway:\n"
    "    section (docs/POLICY.md); the Postfix side is in docs/GATEWAY.md.\n"
    "\n"
    "オプション / OPTIONS\n"
    "    -p, --policy FILE   ポリシーファイル (省略時は組み込みの既定値)\n"
    "                        policy file (default: built-in defaults)\n"
    "    -f, --foreground    ログを標準エラーにも出す (syslog に加えて)\n"
    "                        log to standard error too (besides syslog)\n"
    "    -v, --verbose       接続ごとの判定も記録 / also log each connection\n"
    "        --check-config  ポリシーを読んで検査し、結果を表示して終了\n"
    "                        load and check the policy, print a summary, exit\n"
    "    -h, --help          この説明 / this text\n"
    "        --version       版数 / version\n"
    "\n"
    "シグナル / SIGNALS\n"
    "    SIGTERM, SIGINT   新しい接続を受け付けず、処理中のメールを終えて終了\n"
    "                      stop accepting, finish the mail in progress, exit\n"
    "\n"
    "環境変数 / ENVIRONMENT\n"
    "    SEKISHO_STATE_DIR  ポリシーに state_dir がないときの状態ディレクトリ\n"
    "                       the state directory when the policy sets none\n"
    "\n"
    "ログ / LOGS\n"
    "    syslog (facility mail), 1 通 1 行: queue=, message-id=, quarantine=,\n"
    "    verdict=, removed=, ms=. One line per message.\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0   正常終了 / stopped normally (or --check-config: the policy is valid)\n"
    "    64  使い方の誤り / usage error\n"
    "    70  libmilter が失敗 / libmilter failed (e.g. the address is in use)\n"
    "    75  起動できない (隔離領域・処理プロセス) / cannot start (quarantine, workers)\n"
    "    78  ポリシーファイルの誤り / the policy file is invalid\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho-milter -p /etc/sekisho/policy.yaml --check-config\n"
    "    sekisho-milter -p /etc/sekisho/policy.yaml -f\n"
    "    # main.cf: smtpd_milters = inet:127.0.0.1:10025 (= gateway.listen)\n";

/* ---- the gateway's state -------------------------------------------------- */

struct slot {
    sandbox_worker *w;
    int busy;
};

/* One request waiting for the committer: a put of an original (data; its
 * mail.received decision is recorded once it is durable), or, with data
 * NULL, one decision record (dtype). */
struct put_req {
    const uint8_t *data;
    size_t len;
    const quarantine_meta *meta;
    const char *dtype;
    decision_mail dm; /* the decision's fields (the put fills in id, size, sha256) */
    char sha256[65];
    char id[QUARANTINE_ID_MAX];
    int rc;
    int done;
    char err[256];
    struct put_req *next;
};

static struct {
    policy *pol;
    buf policy_bytes; /* the file as loaded; the workers get the same bytes */
    int foreground, verbose;

    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    struct slot *slots;
    size_t n_slots;

    pthread_mutex_t q_mu;
    pthread_cond_t q_work, q_done;
    struct put_req *head, *tail;
    int q_stop;
    quarantine *q;
    ledger *l;         /* the decisions (docs/LEDGER.md); owned by the committer */
    int ledger_broken; /* a failed append or commit: see committer_main() */
    pthread_t committer;

    atomic_ullong n_messages, n_sanitized, n_rejected, n_tempfail, n_inside, n_syncs, n_puts;
    /* end of message callbacks running, and whether new ones are refused
     * (shutdown waits for the running ones before it frees anything) */
    atomic_int in_eom, stopping;
} gw = {
    .pool_mu = PTHREAD_MUTEX_INITIALIZER,
    .pool_cv = PTHREAD_COND_INITIALIZER,
    .q_mu = PTHREAD_MUTEX_INITIALIZER,
    .q_work = PTHREAD_COND_INITIALIZER,
    .q_done = PTHREAD_COND_INITIALIZER,
};

static void logmsg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logmsg(int prio, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    syslog(prio, "%s", line);
    if (gw.foreground) {
        static const char *const names[] = {"emerg",   "alert",  "crit", "error",
                                            "warning", "notice", "info", "debug"};
        fprintf(stderr, "sekisho-milter: %s: %s\n", names[prio & 7], line);
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A value from mail, fit for one log line: printable ASCII and UTF-8 kept,
 * control bytes and spaces escaped, cut at max bytes. */
static const char *loggable(char *out, size_t max, const char *s)
{
    size_t o = 0;
    for (size_t i = 0; s && s[i] && o + 5 < max; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x21 || ch == 0x7f || ch == '"' || ch == '\\')
            o += (size_t)snprintf(out + o, max - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = 0;
    return out;
}

/* ---- the worker (in its own sandboxed process) ----------------------------- */

/* ---- the pool ----------------------------------------------------------------- */

static sandbox_worker *spawn_worker(buf *why)
{
    return sanitize_worker_spawn(gw.pol, gw.policy_bytes.p, gw.policy_bytes.len,
                                 gw.pol->gateway.recycle_after, 1, "sekisho-milter", why);
}

/* A slot with a live worker, reserved for the caller; NULL (reason in why)
 * when none became free before deadline (ms, monotonic) or no worker could
 * be started. */
static struct slot *pool_acquire(int64_t deadline, buf *why)
{
    pthread_mutex_lock(&gw.pool_mu);
    struct slot *s = NULL;
    for (;;) {
        for (size_t i = 0; i < gw.n_slots && s == NULL; i++)
            if (!gw.slots[i].busy)
                s = &gw.slots[i];
        if (s != NULL)
            break;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&gw.pool_cv, &gw.pool_mu, &ts);
    }
    if (s != NULL)
        s->busy = 1;
    pthread_mutex_unlock(&gw.pool_mu);
    if (s == NULL) {
        buf_puts(why, "no sanitizer worker became free in time");
        return NULL;
    }
    if (s->w == NULL || !sandbox_worker_alive(s->w)) {
        buf tmp;
        buf_init(&tmp, 1024);
        sandbox_worker_stop(s->w, &tmp);
        buf_free(&tmp);
        s->w = spawn_worker(why);
        if (s->w == NULL) {
            logmsg(LOG_ERR, "cannot start a sanitizer worker: %s", buf_cstr(why));
            pthread_mutex_lock(&gw.pool_mu);
            s->busy = 0;
            pthread_cond_signal(&gw.pool_cv);
            pthread_mutex_unlock(&gw.pool_mu);
            return NULL;
        }
    }
    return s;
}

/* Gives the slot back. A worker that failed (or answered nonsense: bad) or
 * served recycle_after messages is stopped and replaced first. */
static void pool_release(struct slot *s, int bad)
{
    int recycle = sandbox_worker_calls(s->w) >= gw.pol->gateway.recycle_after;
    if (bad || recycle || !sandbox_worker_alive(s->w)) {
        buf why;
        buf_init(&why, 1024);
        int alive = sandbox_worker_alive(s->w);
        int rc = sandbox_worker_stop(s->w, &why);
        if (alive && rc != 0)
            logmsg(LOG_WARNING, "sanitizer worker ended badly when replaced: %s", buf_cstr(&why));
        buf_reset(&why);
        s->w = spawn_worker(&why);
        if (s->w == NULL) /* the next pool_acquire() of this slot tries again */
            logmsg(LOG_ERR, "cannot start a sanitizer worker: %s", buf_cstr(&why));
        buf_free(&why);
    }
    pthread_mutex_lock(&gw.pool_mu);
    s->busy = 0;
    pthread_cond_signal(&gw.pool_cv);
    pthread_mutex_unlock(&gw.pool_mu);
}

/* ---- the quarantine: group commit ------------------------------------------- */

/* The committer thread: owns the quarantine handle. Takes every put that is
 * waiting (up to COMMIT_BATCH), writes them, makes them durable with one
 * quarantine_sync(), and wakes their threads. */
static void *committer_main(void *unused)
{
    buf err;
    buf_init(&err, 4096);
    pthread_mutex_lock(&gw.q_mu);
    for (;;) {
        while (gw.head == NULL && !gw.q_stop)
            pthread_cond_wait(&gw.q_work, &gw.q_mu);
        if (gw.head == NULL && gw.q_stop)
            break;
        struct put_req *batch = gw.head, *last = batch;
        size_t n = 1;
        while (last->next && n < COMMIT_BATCH) {
            last = last->next;
            n++;
        }
        gw.head = last->next;
        if (gw.head == NULL)
            gw.tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&gw.q_mu);

        size_t stored = 0;
        for (struct put_req *r = batch; r; r = r->next) {
            if (r->data == NULL)
                continue;
            buf_reset(&err);
            r->rc = quarantine_put_sha(gw.q, r->data, r->len, r->meta, 0, r->id, r->sha256, &err);
            if (r->rc < 0)
                snprintf(r->err, sizeof r->err, "%s", buf_cstr(&err));
            else
                stored++;
        }
        if (stored) {
            buf_reset(&err);
            int rc = quarantine_sync(gw.q, &err);
            atomic_fetch_add(&gw.n_syncs, 1);
            atomic_fetch_add(&gw.n_puts, stored);
            if (rc < 0)
                for (struct put_req *r = batch; r; r = r->next)
                    if (r->data != NULL && r->rc >= 0) {
                        r->rc = rc;
                        snprintf(r->err, sizeof r->err, "sync: %s", buf_cstr(&err));
                    }
        }
        /* The decisions: only for originals now durable, and the records;
         * one ledger commit for the batch. */
        size_t staged = 0;
        int lrc = 0;
        for (struct put_req *r = batch; r && lrc == 0; r = r->next) {
            if (r->data != NULL && r->rc < 0)
                continue;
            if (r->data != NULL) {
                r->dm.quarantine_id = r->id;
                r->dm.sha256 = r->sha256;
                r->dm.size = r->len;
            }
            buf_reset(&err);
            lrc = decision_mail_append(gw.l, "sekisho-milter",
                                       r->data != NULL ? "mail.received" : r->dtype, &r->dm, &err);
            staged++;
        }
        if (lrc == 0 && gw.ledger_broken) {
            lrc = -EIO;
            buf_puts(&err, "unusable since an earlier failure (restart sekisho-milter)");
        } else if (lrc == 0 && staged) {
            buf_reset(&err);
            lrc = ledger_commit(gw.l, &err);
        }
        if (lrc != 0 && !gw.ledger_broken) {
            /* Entries of this batch may stay staged in the handle: never
             * commit them (their mail is not released); every later
             * decision fails (TEMPFAIL) until a restart reopens it. */
            gw.ledger_broken = 1;
            logmsg(LOG_ERR, "ledger: %s: every mail is deferred until sekisho-milter restarts",
                   buf_cstr(&err));
        }
        if (lrc != 0)
            for (struct put_req *r = batch; r; r = r->next)
                if (r->rc >= 0) {
                    /* not recorded: not released (an original already
                     * stored stays in the quarantine) */
                    r->rc = lrc;
                    snprintf(r->err, sizeof r->err, "ledger: %s", buf_cstr(&err));
                }
        pthread_mutex_lock(&gw.q_mu);
        for (struct put_req *r = batch; r; r = r->next)
            r->done = 1;
        pthread_cond_broadcast(&gw.q_done);
    }
    pthread_mutex_unlock(&gw.q_mu);
    buf_free(&err);
    jcs_thread_cleanup(); /* the ledger's canonicalizer keeps work space per thread */
    return unused;
}

static void committer_wait(struct put_req *r)
{
    pthread_mutex_lock(&gw.q_mu);
    if (gw.tail)
        gw.tail->next = r;
    else
        gw.head = r;
    gw.tail = r;
    pthread_cond_signal(&gw.q_work);
    while (!r->done)
        pthread_cond_wait(&gw.q_done, &gw.q_mu);
    pthread_mutex_unlock(&gw.q_mu);
}

/* Records one decision (type) durably in the ledger. 0 or -errno (err says
 * why). */
static int record_durably(const char *type, const decision_mail *dm, char *err, size_t errn)
{
    struct put_req r = {.dtype = type, .dm = *dm};
    committer_wait(&r);
    if (r.rc < 0)
        snprintf(err, errn, "%s", r.err);
    return r.rc;
}

/* Stores data durably with meta and records mail.received (dm's other
 * fields); id gets the quarantine id. 0 or -errno (err says why). */
static int store_durably(const uint8_t *data, size_t len, const quarantine_meta *meta,
                         const decision_mail *dm, char id[QUARANTINE_ID_MAX], char *err,
                         size_t errn)
{
    struct put_req r = {.data = data, .len = len, .meta = meta, .dm = *dm};
    committer_wait(&r);
    if (r.rc < 0) {
        snprintf(err, errn, "%s", r.err);
        return r.rc;
    }
    memcpy(id, r.id, QUARANTINE_ID_MAX);
    return 0;
}

/* ---- per connection ----------------------------------------------------------- */

struct conn {
    char addr[INET6_ADDRSTRLEN + 8];
    buf data;     /* the message as received: header block, blank line, body */
    buf hdrs;     /* the header fields seen: name NUL value NUL (as Postfix sent them) */
    int in_body;  /* the blank line after the headers is in data */
    int too_big;  /* passed max_message_size: the rest was dropped */
    int failed;   /* out of memory while collecting: answered with TEMPFAIL */
    size_t n_hdr; /* headers seen */
};

static void conn_reset(struct conn *c)
{
    buf_free(&c->data);
    buf_free(&c->hdrs);
    buf_init(&c->data, (size_t)gw.pol->mail.limits.max_message_bytes);
    buf_init(&c->hdrs, (size_t)gw.pol->mail.limits.max_message_bytes);
    c->in_body = c->too_big = c->failed = 0;
    c->n_hdr = 0;
}

/* The buffer's error decides: past the size limit (-ENOSPC) is the sender's
 * problem (552); anything else (-ENOMEM) is ours, and only temporary. */
static void over_limit(struct conn *c, int err)
{
    if (err == -ENOSPC)
        c->too_big = 1;
    else
        c->failed = 1;
    buf_free(&c->data); /* nothing of it will be used */
    buf_free(&c->hdrs);
    buf_init(&c->data, 0);
    buf_init(&c->hdrs, 0);
}

/* Appends p[0..n) converting bare LF to CRLF (header values may come folded
 * with LF only). */
static int append_crlf(buf *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            buf_putc(b, '\r');
        buf_putc(b, p[i]);
    }
    return b->err;
}

/*
 * The hook for outbound rules (mail that leaves the organization: approval
 * holds, auto-forwarding to external domains, 個人番号 detection). A later
 * issue fills it in; today it has NO behaviour: it is called for every
 * connection that policy_mail_from_inside() classed as internal and always
 * answers SMFIS_ACCEPT, i.e. such mail passes untouched.
 */
static sfsistat outbound_rules(SMFICTX *ctx, const char *addr, const char *daemon)
{
    (void)ctx, (void)addr, (void)daemon;
    return SMFIS_ACCEPT;
}

static sfsistat cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
    char addr[INET6_ADDRSTRLEN + 8] = "";
    if (sa != NULL && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)sa)->sin_addr, addr, sizeof addr);
    else if (sa != NULL && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)sa)->sin6_addr, addr, sizeof addr);
    const char *daemon = smfi_getsymval(ctx, "{daemon_name}");
    const char *why = "";
    char h[128], d[80];
    if (policy_mail_from_inside(gw.pol, addr, daemon, &why)) {
        atomic_fetch_add(&gw.n_inside, 1);
        logmsg(LOG_INFO, "client=%s[%s] daemon=%s: from inside (%s): passed untouched",
               loggable(h, sizeof h, hostname), addr, loggable(d, sizeof d, daemon), why);
        /* the decision covers the whole connection: its messages are not
         * seen (recorded durably first, or nothing passes) */
        decision_mail dm = {.client_addr = addr, .zone = why};
        char err[256];
        if (record_durably("mail.passed", &dm, err, sizeof err) < 0) {
            logmsg(LOG_ERR, "client=%s: cannot record the decision: %s: tempfail", addr, err);
            return SMFIS_TEMPFAIL;
        }
        return outbound_rules(ctx, addr, daemon);
    }
    if (gw.verbose)
        logmsg(LOG_INFO, "client=%s[%s] daemon=%s: sanitized (%s)", loggable(h, sizeof h, hostname),
               addr, loggable(d, sizeof d, daemon), why);
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        logmsg(LOG_ERR, "out of memory at connect");
        return SMFIS_TEMPFAIL;
    }
    snprintf(c->addr, sizeof c->addr, "%s", addr[0] ? addr : "unknown");
    conn_reset(c);
    if (smfi_setpriv(ctx, c) != MI_SUCCESS) {
        buf_free(&c->data);
        buf_free(&c->hdrs);
        free(c);
        return SMFIS_TEMPFAIL;
    }
    return SMFIS_CONTINUE;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
    struct conn *c = smfi_getpriv(ctx);
    if (c == NULL || c->too_big || c->failed)
        return SMFIS_NOREPLY;
    buf_puts(&c->data, name);
    buf_putc(&c->data, ':');
    append_crlf(&c->data, value, strlen(value));
    buf_puts(&c->data, "\r\n");
    buf_append(&c->hdrs, name, strlen(name) + 1);
    buf_append(&c->hdrs, value, strlen(value) + 1);
    c->n_hdr++;
    if (c->data.err || c->hdrs.err)
        over_limit(c, c->data.err ? c->data.err : c->hdrs.err);
    return SMFIS_NOREPLY;
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *p, size_t n)
{
    struct conn *c = smfi_getpriv(ctx);
    if (c == NULL || c->too_big || c->failed)
        return SMFIS_NOREPLY;
    if (!c->in_body) {
        buf_puts(&c->data, "\r\n");
        c->in_body = 1;
    }
    int rc = buf_append(&c->data, p, n);
    if (rc != 0)
        over_limit(c, rc);
    return SMFIS_NOREPLY;
}

/* One header field: its name and its value as the milter protocol carries it
 * (after the colon, leading space kept, folded lines joined with LF). */
struct field {
    const char *name, *value;
};

/* The fields of c->hdrs (name NUL value NUL, as cb_header stored them).
 * NULL when out of memory. */
static struct field *orig_fields(const struct conn *c)
{
    struct field *f = calloc(c->n_hdr ? c->n_hdr : 1, sizeof *f);
    if (f == NULL)
        return NULL;
    const char *p = (const char *)c->hdrs.p;
    for (size_t i = 0; i < c->n_hdr; i++) {
        f[i].name = p;
        p += strlen(p) + 1;
        f[i].value = p;
        p += strlen(p) + 1;
    }
    return f;
}

/* Parses the header block hdr[0..n) (CRLF lines, folded lines start with
 * SP/HT) into fields whose strings live in store: each value exactly as
 * written after the colon, folding as LF + whitespace. 0, -EBADMSG or
 * -ENOMEM. */
static int parse_fields(const char *hdr, size_t n, buf *store, struct field **out, size_t *nout)
{
    size_t count = 0, i = 0;
    while (i < n) {
        const char *colon = memchr(hdr + i, ':', n - i);
        if (colon == NULL)
            return -EBADMSG;
        buf_append(store, hdr + i, (size_t)(colon - (hdr + i)));
        buf_putc(store, 0);
        i = (size_t)(colon - hdr) + 1;
        for (;;) {
            const char *eol = memchr(hdr + i, '\n', n - i);
            size_t end = eol ? (size_t)(eol - hdr) : n;
            size_t vend = end > i && hdr[end - 1] == '\r' ? end - 1 : end;
            buf_append(store, hdr + i, vend - i);
            i = end < n ? end + 1 : n;
            if (i < n && (hdr[i] == ' ' || hdr[i] == '\t'))
                buf_putc(store, '\n'); /* a folded line continues the field */
            else
                break;
        }
        buf_putc(store, 0);
        count++;
    }
    if (store->err)
        return -ENOMEM;
    struct field *f = calloc(count ? count : 1, sizeof *f);
    if (f == NULL)
        return -ENOMEM;
    const char *p = (const char *)store->p;
    for (size_t k = 0; k < count; k++) {
        f[k].name = p;
        p += strlen(p) + 1;
        f[k].value = p;
        p += strlen(p) + 1;
    }
    *out = f;
    *nout = count;
    return 0;
}

/*
 * Turns the original's header fields into those of the sanitized header
 * block hdr[0..n) with as few edits as Postfix must apply (each is a change
 * of its queue file): per field name, the k-th original field is kept when
 * the k-th sanitized one has the same value, else its value is changed in
 * place; originals beyond the sanitized count are deleted (highest index
 * first, so that the indexes still to come stay valid), and sanitized fields
 * beyond the original count are added at the end, in their order. The
 * result has exactly the sanitized block's fields and values; fields kept
 * from the original keep their place. *edits counts the edits. 0 or -errno.
 */
static int rewrite_headers(SMFICTX *ctx, const struct conn *c, const char *hdr, size_t n,
                           unsigned *edits)
{
    buf store;
    buf_init(&store, 2 * n + 16);
    struct field *nf = NULL, *of = orig_fields(c);
    size_t n_new = 0;
    int rc = of == NULL ? -ENOMEM : parse_fields(hdr, n, &store, &nf, &n_new);
    unsigned char *used = rc == 0 ? calloc(n_new ? n_new : 1, 1) : NULL;
    if (rc == 0 && used == NULL)
        rc = -ENOMEM;
    *edits = 0;
    for (size_t i = 0; i < c->n_hdr && rc == 0; i++) {
        int first = 1;
        for (size_t k = 0; k < i && first; k++)
            if (strcasecmp(of[k].name, of[i].name) == 0)
                first = 0;
        if (!first)
            continue;
        /* the fields named of[i].name, original and sanitized, in order */
        size_t n_orig = 0, j = 0;
        for (size_t k = 0; k < c->n_hdr && rc == 0; k++) {
            if (strcasecmp(of[k].name, of[i].name) != 0)
                continue;
            n_orig++;
            while (j < n_new && strcasecmp(nf[j].name, of[i].name) != 0)
                j++;
            if (j == n_new)
                continue; /* deleted below */
            used[j] = 1;
            if (strcmp(nf[j].value, of[k].value) != 0) {
                if (smfi_chgheader(ctx, (char *)of[i].name, (int)n_orig, (char *)nf[j].value) !=
                    MI_SUCCESS)
                    rc = -EIO;
                ++*edits;
            }
            j++;
        }
        size_t n_kept = 0;
        for (size_t k = 0; k < n_new; k++)
            if (strcasecmp(nf[k].name, of[i].name) == 0)
                n_kept++;
        for (size_t idx = n_orig; idx > n_kept && rc == 0; idx--) {
            if (smfi_chgheader(ctx, (char *)of[i].name, (int)idx, NULL) != MI_SUCCESS)
                rc = -EIO;
            ++*edits;
        }
    }
    for (size_t k = 0; k < n_new && rc == 0; k++) {
        if (used[k])
            continue;
        if (smfi_addheader(ctx, (char *)nf[k].name, (char *)nf[k].value) != MI_SUCCESS)
            rc = -EIO;
        ++*edits;
    }
    free(used);
    free(nf);
    free(of);
    buf_free(&store);
    return rc;
}

static sfsistat tempfail(SMFICTX *ctx, struct conn *c, const char *queue_id, const char *step,
                         const char *why)
{
    char q[64];
    atomic_fetch_add(&gw.n_tempfail, 1);
    logmsg(LOG_WARNING, "queue=%s client=%s verdict=tempfail step=%s: %s",
           loggable(q, sizeof q, queue_id), c->addr, step, why);
    /* best effort: this may be the ledger failing */
    char reason[300], err[256];
    snprintf(reason, sizeof reason, "%s: %s", step, why);
    decision_mail dm = {.client_addr = c->addr, .reason = reason};
    record_durably("mail.tempfail", &dm, err, sizeof err);
    smfi_setreply(ctx, (char *)"451", (char *)"4.3.0",
                  (char *)"sekisho: temporary failure while sanitizing, try again later");
    conn_reset(c);
    return SMFIS_TEMPFAIL;
}

static sfsistat eom(SMFICTX *ctx);

/* Counts the end-of-message callbacks in flight; refuses new ones once the
 * milter is stopping (the sender retries; nothing was accepted). */
static sfsistat cb_eom(SMFICTX *ctx)
{
    atomic_fetch_add(&gw.in_eom, 1);
    sfsistat st = atomic_load(&gw.stopping) ? SMFIS_TEMPFAIL : eom(ctx);
    atomic_fetch_sub(&gw.in_eom, 1);
    return st;
}

static sfsistat eom(SMFICTX *ctx)
{
    struct conn *c = smfi_getpriv(ctx);
    if (c == NULL) /* cannot happen: connect set it or accepted */
        return SMFIS_TEMPFAIL;
    int64_t t0 = now_ms();
    const char *queue_id = smfi_getsymval(ctx, "i");
    if (queue_id == NULL)
        queue_id = "?";
    char q[64], mid[256], rm[512];
    atomic_fetch_add(&gw.n_messages, 1);
    const policy_mail_limits *lim = &gw.pol->mail.limits;
    if (c->failed) {
        logmsg(LOG_WARNING, "queue=%s client=%s: out of memory while receiving: tempfail",
               loggable(q, sizeof q, queue_id), c->addr);
        conn_reset(c);
        return SMFIS_TEMPFAIL;
    }
    if (c->too_big) {
        logmsg(LOG_NOTICE, "queue=%s client=%s verdict=too-big limit=%llu: refused, nothing stored",
               loggable(q, sizeof q, queue_id), c->addr,
               (unsigned long long)lim->max_message_bytes);
        char text[256];
        snprintf(text, sizeof text,
                 "message larger than the %llu bytes this gateway accepts; not delivered",
                 (unsigned long long)lim->max_message_bytes);
        smfi_setreply(ctx, (char *)"552", (char *)"5.3.4", text);
        conn_reset(c);
        return SMFIS_REJECT;
    }
    if (!c->in_body && buf_puts(&c->data, "\r\n") != 0)
        return tempfail(ctx, c, queue_id, "collect", "out of memory");

    /* 1. sanitize in a worker */
    buf why, reply;
    buf_init(&why, 1024);
    buf_init(&reply, BUF_UNLIMITED);
    sanitize_result res;
    memset(&res, 0, sizeof res);
    sfsistat st = SMFIS_TEMPFAIL;
    const char *step = "sanitize";
    struct slot *s = pool_acquire(t0 + (int64_t)lim->time_limit_ms, &why);
    if (s == NULL)
        goto fail;
    int64_t t_acq = now_ms();
    size_t cap = 0;
    uint8_t *region = sandbox_worker_input(s->w, &cap);
    if (c->data.len > cap) { /* cannot happen: data.max is the region's size */
        pool_release(s, 0);
        buf_puts(&why, "message larger than the worker's region");
        goto fail;
    }
    memcpy(region, c->data.p, c->data.len);
    int rc = sandbox_worker_call(s->w, c->data.len, lim->time_limit_ms + 5000, &reply, &why);
    size_t used = 0;
    if (rc == 0 &&
        (sanitize_result_unpack(reply.p, reply.len, &res, &used) != 0 || used != reply.len)) {
        rc = -EPROTO;
        buf_reset(&why);
        buf_puts(&why, "malformed result from the worker");
    }
    pool_release(s, rc != 0);
    if (rc != 0)
        goto fail;
    int64_t t_san = now_ms();

    /* Over the time limit (CPU time): deferred, not refused and not stored;
     * the sender retries, perhaps when the worker is less busy. */
    if (res.verdict != SANITIZE_OK && (res.flags & SANITIZE_F_TIMEOUT)) {
        buf_printf(&why, "the sanitizer ran out of time (time_limit %llu ms of CPU)",
                   (unsigned long long)lim->time_limit_ms);
        goto fail;
    }

    /* 2. the original, durably */
    step = "quarantine";
    quarantine_meta m;
    quarantine_part *qp;
    if (sanitize_quarantine_meta(&res, gw.pol, (int64_t)time(NULL), &m, &qp) != 0) {
        buf_puts(&why, "out of memory");
        goto fail;
    }
    char id[QUARANTINE_ID_MAX], err[256];
    decision_mail dm = {
        .message_id = res.message_id, .from = res.from, .to = res.to, .client_addr = c->addr};
    rc = store_durably(c->data.p, c->data.len, &m, &dm, id, err, sizeof err);
    free(qp);
    if (rc < 0) {
        buf_puts(&why, err);
        goto fail;
    }
    int64_t t_store = now_ms();
    /* the removed parts, for the log */
    size_t o = 0;
    rm[0] = 0;
    for (size_t i = 0; i < res.n_parts && o + 8 < sizeof rm; i++) {
        char fn[128];
        o += (size_t)snprintf(rm + o, sizeof rm - o, "%s%s", i ? "," : "",
                              loggable(fn, sizeof fn,
                                       res.parts[i].filename[0] ? res.parts[i].filename
                                                                : res.parts[i].declared_type));
    }
    if (o >= sizeof rm)
        memcpy(rm + sizeof rm - 4, "...", 4);

    decision_mail dd = {.quarantine_id = id, .message_id = res.message_id};

    /* 3. cannot be made safe: refused, the original held */
    if (res.verdict != SANITIZE_OK) {
        char r[200];
        dd.reason = res.reason;
        if (record_durably("mail.held", &dd, err, sizeof err) < 0) {
            buf_puts(&why, err);
            goto fail;
        }
        atomic_fetch_add(&gw.n_rejected, 1);
        logmsg(LOG_NOTICE,
               "queue=%s client=%s message-id=%s quarantine=%s verdict=rejected removed=%zu "
               "parts=\"%s\" reason=\"%s\" ms=%lld",
               loggable(q, sizeof q, queue_id), c->addr, loggable(mid, sizeof mid, res.message_id),
               id, res.n_parts, rm, loggable(r, sizeof r, res.reason), (long long)(now_ms() - t0));
        char text[400];
        snprintf(text, sizeof text,
                 "このメールは安全にできないため受け付けません。原本は隔離 ID %s で保管"
                 "しています。 This message cannot be made safe and was not delivered; the "
                 "original is held as quarantine id %s",
                 id, id);
        smfi_setreply(ctx, (char *)"550", (char *)"5.7.1", text);
        st = SMFIS_REJECT;
        goto done;
    }

    /* 4. rewrite from sanitize_finish()'s output */
    step = "rewrite";
    /* A sane worker refuses a message with more header fields than the
     * policy allows: the (quadratic) header deletion never runs on one that
     * a compromised worker let through. */
    if (c->n_hdr > gw.pol->mail.limits.max_headers) {
        buf_printf(&why, "the worker passed %zu header fields (max_headers %llu)", c->n_hdr,
                   (unsigned long long)gw.pol->mail.limits.max_headers);
        goto fail;
    }
    buf out;
    buf_init(&out, BUF_UNLIMITED);
    rc = sanitize_finish(&res, id, &out);
    const uint8_t *sep = rc == 0 ? memmem(out.p, out.len, "\r\n\r\n", 4) : NULL;
    if (sep == NULL) {
        buf_free(&out);
        buf_puts(&why, rc ? "out of memory" : "no header/body separator in the result");
        goto fail;
    }
    size_t hlen = (size_t)(sep - out.p) + 2, boff = hlen + 2;
    rc = 0;
    for (size_t at = boff; at < out.len && rc == 0; at += BODY_CHUNK) {
        size_t k = out.len - at < BODY_CHUNK ? out.len - at : BODY_CHUNK;
        if (smfi_replacebody(ctx, out.p + at, (int)k) != MI_SUCCESS)
            rc = -EIO;
    }
    if (boff >= out.len && smfi_replacebody(ctx, (unsigned char *)"", 0) != MI_SUCCESS)
        rc = -EIO;
    unsigned edits = 0;
    if (rc == 0)
        rc = rewrite_headers(ctx, c, (const char *)out.p, hlen, &edits);
    /* recorded before it is released (Postfix applies the changes only
     * after this callback returns) */
    char osha[65];
    uint8_t md[DIGEST_SHA256_LEN];
    digest_sha256(out.p, out.len, md);
    digest_hex(md, sizeof md, osha);
    dd.removed_parts = res.n_parts;
    dd.output_size = out.len;
    dd.output_sha256 = osha;
    buf_free(&out);
    if (rc == 0 && record_durably("mail.sanitized", &dd, err, sizeof err) < 0) {
        buf_printf(&why, "%s", err);
        goto fail;
    }
    if (rc != 0) {
        buf_printf(&why, "modifying the message failed (%s)", strerror(-rc));
        goto fail;
    }
    atomic_fetch_add(&gw.n_sanitized, 1);
    logmsg(LOG_INFO,
           "queue=%s client=%s message-id=%s quarantine=%s verdict=sanitized removed=%zu "
           "parts=\"%s\" flags=0x%x edits=%u ms=%lld (wait=%lld sanitize=%lld store=%lld "
           "rewrite=%lld)",
           loggable(q, sizeof q, queue_id), c->addr, loggable(mid, sizeof mid, res.message_id), id,
           res.n_parts, rm, res.flags, edits, (long long)(now_ms() - t0), (long long)(t_acq - t0),
           (long long)(t_san - t_acq), (long long)(t_store - t_san),
           (long long)(now_ms() - t_store));
    st = SMFIS_CONTINUE;
    goto done;
fail:
    st = tempfail(ctx, c, queue_id, step, buf_cstr(&why));
done:
    sanitize_result_free(&res);
    buf_free(&why);
    buf_free(&reply);
    conn_reset(c);
    return st;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
    struct conn *c = smfi_getpriv(ctx);
    if (c != NULL)
        conn_reset(c);
    return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
    struct conn *c = smfi_getpriv(ctx);
    if (c != NULL) {
        smfi_setpriv(ctx, NULL);
        buf_free(&c->data);
        buf_free(&c->hdrs);
        free(c);
    }
    return SMFIS_CONTINUE;
}

/* Milter protocol 6: ask only for what is needed. Connect (the direction),
 * headers and body (the message), end of message; no HELO, MAIL, RCPT,
 * unknown commands or end of headers; no reply to each header and body chunk;
 * header values with their leading space as received.
 * DATA is NOT skipped, although the filter has nothing to do there: Postfix
 * sends the DATA-stage macros anyway, and without a reply to acknowledge
 * them the next packet (the header phase, written by cleanup) waits behind
 * Nagle's algorithm in Postfix for our delayed ACK: 40 ms per message, which
 * made a single SMTP session 15 times slower (measured, docs/PERFORMANCE.md).
 * libmilter answers DATA itself (no callback). */
static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    const unsigned long actions = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY;
    const unsigned long need = SMFIP_HDR_LEADSPC;
    const unsigned long skip = SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOUNKNOWN |
                               SMFIP_NOEOH | SMFIP_NR_HDR | SMFIP_NR_BODY;
    if ((f0 & actions) != actions || (f1 & need) != need) {
        logmsg(LOG_ERR,
               "the MTA does not offer what the gateway needs (actions 0x%lx of 0x%lx, "
               "protocol 0x%lx of 0x%lx); use Postfix with milter_protocol = 6",
               f0 & actions, actions, f1 & need, need);
        return SMFIS_REJECT;
    }
    *pf0 = actions;
    *pf1 = need | (f1 & skip);
    *pf2 = *pf3 = 0;
    (void)ctx, (void)f2, (void)f3;
    return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
    .xxfi_name = (char *)"sekisho-milter",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY,
    .xxfi_connect = cb_connect,
    .xxfi_header = cb_header,
    .xxfi_body = cb_body,
    .xxfi_eom = cb_eom,
    .xxfi_abort = cb_abort,
    .xxfi_close = cb_close,
    .xxfi_negotiate = cb_negotiate,
};

/* ---- start-up ----------------------------------------------------------------- */

/* Loads the policy (keeping its bytes for the workers) or the defaults. On
 * error prints every "file:line: message" and returns NULL. */
static policy *load_policy(const char *path)
{
    buf_init(&gw.policy_bytes, (size_t)1 << 20);
    if (path == NULL)
        return policy_default();
    buf errs;
    buf_init(&errs, 1 << 20);
    policy *p = NULL;
    int rc = fileio_read_file(path, &gw.policy_bytes);
    if (rc < 0)
        fprintf(stderr, "%s: cannot read: %s\n", path,
                rc == -ENOSPC || rc == -EFBIG ? "larger than 1 MiB" : strerror(-rc));
    else
        p = policy_load_mem(path, gw.policy_bytes.p ? gw.policy_bytes.p : (const uint8_t *)"",
                            gw.policy_bytes.len, &errs);
    fputs(buf_cstr(&errs), stderr);
    buf_free(&errs);
    return p;
}

/*
 * Turns Nagle's algorithm off on libmilter's listening TCP socket; Linux
 * hands the setting on to every connection accepted from it. Without it,
 * each end of message costs two delayed ACKs (about 40 ms each): the reply
 * is a burst of small packets (the new body, each header edit, the verdict)
 * that the MTA answers with nothing, so Nagle holds each packet until the
 * previous one is acknowledged, and the MTA acknowledges late. libmilter
 * does not expose its socket: it is the one listening socket of this
 * process. Returns the number of sockets set (1), 0 for a unix socket, or
 * -errno.
 */
static int listen_nodelay(void)
{
    int found = 0;
    for (int fd = 0; fd < 1024; fd++) {
        int on = 0;
        socklen_t len = sizeof on;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0 || !on)
            continue;
        struct sockaddr_storage ss;
        len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
            return -errno;
        if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
            continue;
        on = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) != 0)
            return -errno;
        found++;
    }
    return found;
}

/* Waits for the messages in progress (libmilter's session threads outlive
 * smfi_main()), then stops the committer and the workers. Returns 0, or -1
 * when some did not finish in time: then nothing may be freed. */
static int shutdown_all(void)
{
    atomic_store(&gw.stopping, 1);
    int64_t limit = now_ms() + (int64_t)gw.pol->mail.limits.time_limit_ms + 60000;
    while (atomic_load(&gw.in_eom) > 0 && now_ms() < limit)
        usleep(20000);
    if (atomic_load(&gw.in_eom) > 0) {
        logmsg(LOG_WARNING, "stopping with %d message(s) still in progress (their senders retry)",
               atomic_load(&gw.in_eom));
        return -1;
    }
    pthread_mutex_lock(&gw.q_mu);
    gw.q_stop = 1;
    pthread_cond_broadcast(&gw.q_work);
    pthread_mutex_unlock(&gw.q_mu);
    pthread_join(gw.committer, NULL);
    buf why;
    buf_init(&why, 1024);
    for (size_t i = 0; i < gw.n_slots; i++) {
        buf_reset(&why);
        if (gw.slots[i].w && sandbox_worker_stop(gw.slots[i].w, &why) != 0)
            logmsg(LOG_WARNING, "sanitizer worker %zu ended badly: %s", i, buf_cstr(&why));
    }
    buf_free(&why);
    free(gw.slots);
    buf lerr;
    buf_init(&lerr, 4096);
    /* after a failure the handle may hold entries of mail not released:
     * left unclosed (never committed) */
    if (!gw.ledger_broken && ledger_close(gw.l, &lerr) != 0)
        logmsg(LOG_WARNING, "ledger: %s", buf_cstr(&lerr));
    buf_free(&lerr);
    gw.l = NULL;
    quarantine_close(gw.q);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], SANITIZE_WORKER_ARG) == 0)
        sanitize_worker_main("sekisho-milter worker");
    msg_set_progname("sekisho-milter");
    static const struct option longopts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"foreground", no_argument, NULL, 'f'},
        {"verbose", no_argument, NULL, 'v'},
        {"check-config", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *policy_path = NULL;
    int check = 0, ch;
    while ((ch = getopt_long(argc, argv, "p:fvh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            policy_path = optarg;
            break;
        case 'f':
            gw.foreground = 1;
            break;
        case 'v':
            gw.verbose = 1;
            break;
        case 'C':
            check = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        case 'V':
            printf("sekisho-milter %s\n", SEKISHO_VERSION);
            return EXIT_OK;
        default:
            fputs("usage: sekisho-milter [-p POLICY] [-f] [-v] [--check-config] (see --help)\n",
                  stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "sekisho-milter: unexpected argument '%s' (see --help)\n", argv[optind]);
        return EXIT_USAGE;
    }
    gw.pol = load_policy(policy_path);
    if (gw.pol == NULL)
        return EXIT_CONFIG;
    char conn[512];
    if (policy_gateway_milter_socket(gw.pol, conn, sizeof conn) != 0) {
        fprintf(stderr, "%s: gateway.listen: '%s' is not a valid address\n", gw.pol->source,
                gw.pol->gateway.listen);
        return EXIT_CONFIG;
    }
    if (check) {
        printf("%s: OK\n", gw.pol->source);
        printf("  listen: %s\n  workers: %llu, recycle_after: %llu\n  quarantine: %s\n",
               gw.pol->gateway.listen, (unsigned long long)gw.pol->gateway.workers,
               (unsigned long long)gw.pol->gateway.recycle_after, gw.pol->quarantine_dir);
        printf("  max_message_size: %llu bytes, time_limit: %llu ms\n",
               (unsigned long long)gw.pol->mail.limits.max_message_bytes,
               (unsigned long long)gw.pol->mail.limits.time_limit_ms);
        for (size_t i = 0; i < gw.pol->n_zones; i++)
            printf("  zone %s (%s): %s\n", gw.pol->zones[i].name, gw.pol->zones[i].kind,
                   policy_zone_is_internal(&gw.pol->zones[i]) ? "mail from here passes untouched"
                                                              : "mail from here is sanitized");
        for (size_t i = 0; i < gw.pol->gateway.n_daemon_zones; i++)
            printf("  daemon %s -> zone %s\n", gw.pol->gateway.daemon_zones[i].daemon,
                   gw.pol->gateway.daemon_zones[i].zone);
        policy_free(gw.pol);
        buf_free(&gw.policy_bytes);
        return EXIT_OK;
    }
    openlog("sekisho-milter", LOG_PID | LOG_NDELAY, LOG_MAIL);
    signal(SIGPIPE, SIG_IGN);

    buf err;
    buf_init(&err, 4096);
    gw.q = quarantine_open(gw.pol->quarantine_dir, 1, &err);
    if (gw.q == NULL) {
        logmsg(LOG_ERR, "quarantine %s: %s", gw.pol->quarantine_dir, buf_cstr(&err));
        fprintf(stderr, "sekisho-milter: quarantine %s: %s\n", gw.pol->quarantine_dir,
                buf_cstr(&err));
        return EXIT_TEMPFAIL;
    }
    /* every decision goes to the ledger, created with its key if absent */
    buf_reset(&err);
    gw.l = decision_ledger_open(gw.pol, NULL, &err);
    if (gw.l == NULL) {
        logmsg(LOG_ERR, "ledger %s: %s", gw.pol->ledger.dir, buf_cstr(&err));
        fprintf(stderr, "sekisho-milter: ledger %s: %s\n", gw.pol->ledger.dir, buf_cstr(&err));
        quarantine_close(gw.q);
        return EXIT_TEMPFAIL;
    }
    gw.n_slots = (size_t)gw.pol->gateway.workers;
    gw.slots = calloc(gw.n_slots, sizeof *gw.slots);
    if (gw.slots == NULL)
        msg_fatal("out of memory");
    int64_t t0 = now_ms();
    for (size_t i = 0; i < gw.n_slots; i++) {
        buf_reset(&err);
        gw.slots[i].w = spawn_worker(&err);
        if (gw.slots[i].w == NULL) {
            fprintf(stderr, "sekisho-milter: cannot start sanitizer worker %zu: %s\n", i,
                    buf_cstr(&err));
            logmsg(LOG_ERR, "cannot start sanitizer worker %zu: %s", i, buf_cstr(&err));
            for (size_t j = 0; j < i; j++)
                sandbox_worker_stop(gw.slots[j].w, NULL);
            quarantine_close(gw.q);
            return EXIT_TEMPFAIL;
        }
    }
    buf_free(&err);
    /* libmilter's signal thread waits for these with sigwait(); every other
     * thread (the committer, libmilter's) must have them blocked, or the
     * default action ends the process on SIGTERM without a clean stop. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGHUP);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    int e = pthread_create(&gw.committer, NULL, committer_main, NULL);
    if (e != 0) {
        fprintf(stderr, "sekisho-milter: pthread_create: %s\n", strerror(e));
        return EXIT_TEMPFAIL;
    }
    int status = EXIT_OK;
    if (strncmp(conn, "unix:", 5) == 0)
        umask(007); /* the socket: owner and group (e.g. postfix) only */
    if (smfi_register(desc) != MI_SUCCESS || smfi_setconn(conn) != MI_SUCCESS ||
        smfi_setbacklog(256) != MI_SUCCESS || smfi_opensocket(1) != MI_SUCCESS) {
        fprintf(stderr, "sekisho-milter: cannot listen on %s (%s)\n", gw.pol->gateway.listen, conn);
        logmsg(LOG_ERR, "cannot listen on %s", gw.pol->gateway.listen);
        status = EXIT_SOFTWARE;
    } else if ((e = listen_nodelay()) < 0 || (e == 0 && strncmp(conn, "unix:", 5) != 0)) {
        fprintf(stderr, "sekisho-milter: %s: cannot set TCP_NODELAY (%s)\n", gw.pol->gateway.listen,
                e < 0 ? strerror(-e) : "no listening socket found");
        logmsg(LOG_ERR, "%s: cannot set TCP_NODELAY", gw.pol->gateway.listen);
        status = EXIT_SOFTWARE;
    } else {
        logmsg(LOG_INFO,
               "sekisho-milter %s listening on %s; policy %s; %zu workers started in %lld ms; "
               "quarantine %s",
               SEKISHO_VERSION, gw.pol->gateway.listen, gw.pol->source, gw.n_slots,
               (long long)(now_ms() - t0), gw.pol->quarantine_dir);
        if (smfi_main() != MI_SUCCESS)
            status = EXIT_SOFTWARE;
    }
    int clean = shutdown_all() == 0;
    logmsg(LOG_INFO,
           "stopped: %llu messages: %llu sanitized, %llu rejected, %llu tempfailed; %llu "
           "connections from inside; %llu originals in %llu quarantine syncs",
           (unsigned long long)gw.n_messages, (unsigned long long)gw.n_sanitized,
           (unsigned long long)gw.n_rejected, (unsigned long long)gw.n_tempfail,
           (unsigned long long)gw.n_inside, (unsigned long long)gw.n_puts,
           (unsigned long long)gw.n_syncs);
    closelog();
    if (!clean)
        _exit(status == EXIT_OK ? EXIT_TEMPFAIL
                                : status); /* threads still use what would be freed */
    policy_free(gw.pol);
    buf_free(&gw.policy_bytes);
    return status;
}
