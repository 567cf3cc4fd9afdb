/*
 * cmd_quarantine - `sekisho quarantine list|get|show|purge`: the
 * administrator's view of the store of originals (lib/quarantine).
 *
 * Contract: get writes the original to stdout byte for byte, and only after
 * its SHA-256 has been checked against the index; nothing else is ever written
 * to stdout by get. list/show print header values that came from hostile mail:
 * before they reach a terminal, control characters (C0, C1, DEL), bidi
 * overrides and invalid UTF-8 are replaced with U+FFFD, so a subject cannot
 * move the cursor, recolour the screen or reorder the text around it. JSON
 * output escapes per RFC 8259 and replaces invalid UTF-8 the same way.
 * purge deletes nothing unless --delete is given.
 *
 * Limits: table columns are cut by display width with a simple East Asian
 * width table (no combining-mark handling); the JSON and show output is never
 * cut.
 */
#include "cli.h"
#include "decision.h"
#include "quarantine.h"
#include "util/buf.h"
#include "util/msg.h"

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- manuals ----------------------------------------------------------------- */

static const char help_main[] =
    "名前 / NAME\n"
    "    sekisho quarantine - 隔離保管した原本メールの一覧・取り出し・詳細表示・期限切れ削除\n"
    "    list, write out, inspect and expire the quarantined original messages\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho quarantine list  [-p POLICY] [-q QDIR] [--json]\n"
    "    sekisho quarantine get   [-p POLICY] [-q QDIR] ID > original.eml\n"
    "    sekisho quarantine show  [-p POLICY] [-q QDIR] [--json] ID\n"
    "    sekisho quarantine purge [-p POLICY] [-q QDIR] [--delete]\n"
    "    sekisho quarantine COMMAND --help\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    無害化（テキスト化）したメールの原本は、受信したバイト列のまま隔離領域に\n"
    "    保管されています。各原本には ID（例: 20261123T050033Z-0123456789abcdef、\n"
    "    保管時刻 UTC + 乱数）が付き、索引には差出人・件名・除去した添付ファイル等が\n"
    "    記録されています。\n"
    "    Every original of a sanitized mail is kept, byte for byte, in the quarantine,\n"
    "    under an id (UTC time of storage + random) with an index of its sender,\n"
    "    subject and the parts that were removed.\n"
    "\n"
    "    list   一覧（新しい順）/ list the originals, newest first\n"
    "    get    原本をそのまま標準出力へ（SHA-256 検証後）/ write one original to stdout,\n"
    "           after checking its SHA-256\n"
    "    show   索引の内容と除去した部分 / metadata and the removed parts\n"
    "    purge  保存期限切れの一覧。--delete で削除 / list expired originals; --delete\n"
    "           removes them\n"
    "\n"
    "共通オプション / COMMON OPTIONS\n"
    "    -p, --policy FILE      ポリシーファイル / policy file (default: built-in defaults)\n"
    "    -q, --quarantine DIR   隔離領域（ポリシーより優先）/ quarantine directory,\n"
    "                           overrides the policy's quarantine.dir\n"
    "                           (default: $SEKISHO_STATE_DIR/quarantine or\n"
    "                           /var/lib/sekisho/quarantine)\n"
    "    -l, --ledger DIR       判断を記録する台帳（get と purge --delete）/ the ledger\n"
    "                           that records releases and deletions (default: the\n"
    "                           policy's ledger.dir, else $SEKISHO_STATE_DIR/ledger)\n"
    "    -h, --help             この説明 / this manual\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 成功 success; 64 使い方の誤り usage error; 66 ID または隔離領域が無い\n"
    "    unknown id or no quarantine; 74 原本の改ざん・破損または入出力エラー integrity\n"
    "    failure or I/O error; 75 一時的な失敗 temporary failure (retry); 78 ポリシー\n"
    "    ファイルの誤り policy file error.\n"
    "\n"
    "関連 / SEE ALSO\n"
    "    docs/QUARANTINE.md\n";

static const char help_list[] =
    "名前 / NAME\n"
    "    sekisho quarantine list - 隔離した原本の一覧 / list the quarantined originals\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho quarantine list [-p POLICY] [-q QDIR] [--json]\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    受信日時の新しい順に、ID・受信日時（ローカル時刻, ISO 8601）・サイズ（バイト）・\n"
    "    除去した部分の数・差出人・件名を表示します。差出人と件名は画面幅に合わせて\n"
    "    切り詰め、制御文字は U+FFFD（�）に置き換えます。\n"
    "    Lists id, received time (local, ISO 8601), size in bytes, number of removed\n"
    "    parts, sender and subject, newest first. Sender and subject are cut to fit;\n"
    "    control characters are shown as U+FFFD.\n"
    "\n"
    "オプション / OPTIONS\n"
    "    -p, --policy FILE      ポリシーファイル / policy file\n"
    "    -q, --quarantine DIR   隔離領域 / quarantine directory (overrides the policy)\n"
    "    --json                 1 行に 1 つの JSON オブジェクト（切り詰めなし, UTF-8）/\n"
    "                           one JSON object per line, never cut. Keys: id, received,\n"
    "                           received_local, retain_until, size, sha256, from, to,\n"
    "                           subject, message_id, verdict, parts\n"
    "    -h, --help             この説明 / this manual\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 成功 success; 64 usage error; 66 隔離領域が無い no quarantine at QDIR;\n"
    "    75 一時的な失敗 temporary failure; 78 policy file error.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho quarantine list | head\n"
    "    sekisho quarantine list --json | jq -r 'select(.parts > 0) | .id'\n"
    "    sekisho quarantine list -q /srv/sekisho/quarantine\n";

static const char help_get[] =
    "名前 / NAME\n"
    "    sekisho quarantine get - 原本をそのまま取り出す / write an original out, byte for byte\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho quarantine get [-p POLICY] [-q QDIR] ID > FILE\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    ID の原本を、受信したバイト列のまま標準出力に書き出します。書き出す前に\n"
    "    SHA-256 を索引の記録と照合し、一致しなければ何も書き出さず終了ステータス 74\n"
    "    で終わります（改ざんまたは破損）。原本には危険な添付ファイルが含まれている\n"
    "    可能性があります。インターネット接続系の端末でのみ開いてください。\n"
    "    Writes the original of ID to stdout exactly as received. Its SHA-256 is\n"
    "    checked against the index first; on a mismatch nothing is written and the\n"
    "    exit status is 74 (modified or damaged). The original may contain the very\n"
    "    attachments that were removed: open it only on the internet-side terminal.\n"
    "    取り出しは、書き出す前に台帳に記録されます（quarantine.released: ID、SHA-256、\n"
    "    実行した利用者）。記録できなければ何も書き出しません（終了ステータス 75）。\n"
    "    The release is written to the ledger first (quarantine.released: the id,\n"
    "    SHA-256 and the user who ran it); if it cannot be recorded, nothing is\n"
    "    written out (exit 75).\n"
    "\n"
    "オプション / OPTIONS\n"
    "    -p, --policy FILE      ポリシーファイル / policy file\n"
    "    -q, --quarantine DIR   隔離領域 / quarantine directory (overrides the policy)\n"
    "    -l, --ledger DIR       台帳 / ledger (overrides the policy)\n"
    "    -h, --help             この説明 / this manual\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 成功 success; 64 usage error; 66 その ID は無い unknown id (or no quarantine);\n"
    "    74 照合の失敗または書き込みエラー integrity failure or write error;\n"
    "    75 一時的な失敗 temporary failure; 78 policy file error.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho quarantine get 20261123T050033Z-0123456789abcdef > original.eml\n"
    "    sekisho quarantine get 20261123T050033Z-0123456789abcdef | sha256sum\n";

static const char help_show[] =
    "名前 / NAME\n"
    "    sekisho quarantine show - 原本の索引情報と除去した部分 / an original's metadata\n"
    "    and removed parts\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho quarantine show [-p POLICY] [-q QDIR] [--json] ID\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    受信日時・差出人・宛先・件名・Message-ID・判定・保存期限・サイズ・SHA-256 と、\n"
    "    無害化で除去した各部分（ファイル名、申告された型、検出された型、サイズ、\n"
    "    SHA-256）を表示します。原本のファイルは読みません（照合は get で行います）。\n"
    "    Shows received time, sender, recipients, subject, Message-ID, verdict,\n"
    "    retention, size and SHA-256, and each removed part (file name, declared and\n"
    "    detected type, size, SHA-256). Reads the index only; get verifies the file.\n"
    "\n"
    "オプション / OPTIONS\n"
    "    -p, --policy FILE      ポリシーファイル / policy file\n"
    "    -q, --quarantine DIR   隔離領域 / quarantine directory (overrides the policy)\n"
    "    --json                 1 つの JSON オブジェクト（parts は配列）/ one JSON object,\n"
    "                           with the parts as an array\n"
    "    -h, --help             この説明 / this manual\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 成功 success; 64 usage error; 66 その ID は無い unknown id (or no quarantine);\n"
    "    75 一時的な失敗 temporary failure; 78 policy file error.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho quarantine show 20261123T050033Z-0123456789abcdef\n";

static const char help_purge[] =
    "名前 / NAME\n"
    "    sekisho quarantine purge - 保存期限を過ぎた原本の削除 / remove expired originals\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho quarantine purge [-p POLICY] [-q QDIR] [--delete]\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    保存期限（保管時にポリシーの mail.retention_days から決まる）を過ぎた原本を\n"
    "    一覧します。--delete を付けた場合に限り、それらを削除します（索引の行を先に\n"
    "    確定削除し、その後ファイルを消すので、途中で止まっても索引が存在しない\n"
    "    ファイルを指すことはありません）。削除は取り消せません。\n"
    "    Lists the originals whose retention period (set when each was stored, from\n"
    "    the policy's mail.retention_days) has passed. Only with --delete are they\n"
    "    removed: index rows first (durably), then the files, so an interruption never\n"
    "    leaves a row without its original. Deletion cannot be undone.\n"
    "    削除する原本は、削除の前に 1 件ずつ台帳に記録されます（quarantine.purged）。\n"
    "    Each original to be removed is recorded in the ledger first\n"
    "    (quarantine.purged); if that fails, nothing is removed (exit 75).\n"
    "\n"
    "オプション / OPTIONS\n"
    "    -p, --policy FILE      ポリシーファイル / policy file\n"
    "    -q, --quarantine DIR   隔離領域 / quarantine directory (overrides the policy)\n"
    "    -l, --ledger DIR       台帳 / ledger (overrides the policy)\n"
    "    --delete               実際に削除する（指定しなければ一覧のみ）/ really delete\n"
    "                           (without it, nothing is changed)\n"
    "    -h, --help             この説明 / this manual\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 成功 success; 64 usage error; 66 隔離領域が無い no quarantine;\n"
    "    74 ファイル削除の失敗 a file could not be removed; 75 一時的な失敗 temporary\n"
    "    failure; 78 policy file error.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho quarantine purge            # 確認 / see what would go\n"
    "    sekisho quarantine purge --delete   # 削除 / remove it (e.g. from cron, daily)\n";

/* ---- text output: what hostile header values may not do to a terminal --------- */

/* Decodes one UTF-8 sequence at s (n bytes left); returns the code point and
 * sets *len, or returns -1 (with *len = 1) for an invalid sequence. */
static long utf8_next(const unsigned char *s, size_t n, size_t *len)
{
    *len = 1;
    if (s[0] < 0x80)
        return s[0];
    int k;
    long cp, min;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        k = 1, cp = s[0] & 0x1f, min = 0x80;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        k = 2, cp = s[0] & 0x0f, min = 0x800;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        k = 3, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    if ((size_t)k >= n)
        return -1;
    for (int i = 1; i <= k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *len = (size_t)k + 1;
    return cp;
}

/* Characters never shown as they are: controls and bidi overrides/isolates. */
static int unsafe_cp(long cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e || cp == 0x200f || cp == 0x061c;
}

static int cp_width(long cp)
{
    static const long wide[][2] = {
        {0x1100, 0x115f},   {0x2e80, 0x303e},   {0x3041, 0x33ff}, {0x3400, 0x4dbf},
        {0x4e00, 0x9fff},   {0xa000, 0xa4cf},   {0xac00, 0xd7a3}, {0xf900, 0xfaff},
        {0xfe30, 0xfe4f},   {0xff00, 0xff60},   {0xffe0, 0xffe6}, {0x1f300, 0x1f64f},
        {0x1f900, 0x1f9ff}, {0x20000, 0x3fffd},
    };
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++)
        if (cp >= wide[i][0] && cp <= wide[i][1])
            return 2;
    return 1;
}

/* Prints s made safe; with cols > 0, cut to cols display columns ("…" marks a
 * cut) and, with pad, padded with spaces to exactly cols. */
static void put_cut(FILE *f, const char *str, int cols, int pad)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str), len;
    int total = 0, used = 0;
    for (size_t i = 0; i < n; i += len) {
        long cp = utf8_next(s + i, n - i, &len);
        total += cp < 0 || unsafe_cp(cp) ? 1 : cp_width(cp);
    }
    int room = cols <= 0 || total <= cols ? total : cols - 1;
    for (size_t i = 0; i < n; i += len) {
        long cp = utf8_next(s + i, n - i, &len);
        int bad = cp < 0 || unsafe_cp(cp);
        int w = bad ? 1 : cp_width(cp);
        if (used + w > room)
            break;
        if (bad)
            fputs("\xef\xbf\xbd", f);
        else
            fwrite(s + i, 1, len, f);
        used += w;
    }
    if (room < total) {
        fputs("…", f);
        used++;
    }
    for (; pad && cols > 0 && used < cols; used++)
        fputc(' ', f);
}

static void put_safe(FILE *f, const char *str, int cols)
{
    put_cut(f, str, cols, 1);
}

static void put_json_str(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        size_t len;
        long cp = utf8_next(s + i, n - i, &len);
        if (cp < 0)
            fputs("\\ufffd", f);
        else if (cp == '"')
            fputs("\\\"", f);
        else if (cp == '\\')
            fputs("\\\\", f);
        else if (cp == '\n')
            fputs("\\n", f);
        else if (cp == '\r')
            fputs("\\r", f);
        else if (cp == '\t')
            fputs("\\t", f);
        else if (unsafe_cp(cp) || cp == 0x2028 || cp == 0x2029)
            fprintf(f, "\\u%04lx", cp);
        else
            fwrite(s + i, 1, len, f);
        i += len;
    }
    fputc('"', f);
}

/* Local time, ISO 8601 with the offset as +09:00. */
static void iso_local(int64_t t, char out[40])
{
    time_t tt = (time_t)t;
    struct tm tm;
    char z[8];
    if (localtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
        strftime(z, sizeof z, "%z", &tm) != 5) {
        snprintf(out, 40, "@%lld", (long long)t);
        return;
    }
    size_t n = strlen(out);
    snprintf(out + n, 40 - n, "%.3s:%.2s", z, z + 3);
}

/* ---- options ------------------------------------------------------------------- */

struct opts {
    const char *policy, *qdir, *ledger_dir;
    int json, del;
    char **args;
    int n_args;
};

enum { OPT_JSON = 256, OPT_DELETE };

/* Returns -1 to go on, or an exit status. */
static int parse(int argc, char **argv, const char *help, int allow_json, int allow_delete,
                 struct opts *o)
{
    static const struct option longopts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"quarantine", required_argument, NULL, 'q'},
        {"json", no_argument, NULL, OPT_JSON},
        {"delete", no_argument, NULL, OPT_DELETE},
        {"ledger", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    optind = 1;
    opterr = 1;
    int c;
    while ((c = getopt_long(argc, argv, "p:q:l:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            o->policy = optarg;
            break;
        case 'q':
            o->qdir = optarg;
            break;
        case 'l':
            o->ledger_dir = optarg;
            break;
        case OPT_JSON:
            if (!allow_json)
                goto usage;
            o->json = 1;
            break;
        case OPT_DELETE:
            if (!allow_delete)
                goto usage;
            o->del = 1;
            break;
        case 'h':
            fputs(help, stdout);
            return EXIT_OK;
        default:
            goto usage;
        }
    }
    o->args = argv + optind;
    o->n_args = argc - optind;
    return -1;
usage:
    fprintf(stderr, "使い方 / usage: see: sekisho quarantine %s --help\n", argv[0]);
    return EXIT_USAGE;
}

/* Opens the quarantine named by the options; on failure prints why and sets
 * *status. */
static quarantine *open_q(const struct opts *o, int *status)
{
    policy *pol = cli_load_policy(o->policy);
    const char *dir = o->qdir ? o->qdir : pol->quarantine_dir;
    buf err;
    buf_init(&err, 8192);
    quarantine *q = quarantine_open(dir, 0, &err);
    if (q == NULL) {
        int e = errno;
        msg_warn("隔離領域を開けません / cannot open the quarantine: %s", buf_cstr(&err));
        *status = (e == ENOENT || e == ENOTDIR || e == EACCES) ? EXIT_NOINPUT : EXIT_TEMPFAIL;
    }
    buf_free(&err);
    policy_free(pol);
    return q;
}

/* Opens the ledger that records releases and deletions (created if absent);
 * on failure prints why. */
static ledger *open_l(const struct opts *o)
{
    policy *pol = cli_load_policy(o->policy);
    buf err;
    buf_init(&err, 8192);
    ledger *l = decision_ledger_open(pol, o->ledger_dir, &err);
    if (l == NULL)
        msg_warn("台帳を開けません。何も変更していません / cannot open the ledger; nothing "
                 "was changed: %s",
                 buf_cstr(&err));
    buf_free(&err);
    policy_free(pol);
    return l;
}

/* Appends one quarantine.* entry with fields, commits it, and closes l.
 * 0 once durable; otherwise prints why. */
static int record_close(ledger *l, const char *type, const buf *fields)
{
    buf err;
    buf_init(&err, 8192);
    uint64_t index = 0;
    int rc = fields->err ? fields->err
                         : ledger_append(l, type, "sekisho quarantine", fields->p, fields->len,
                                         &index, &err);
    int rc2 = ledger_close(l, &err);
    rc = rc ? rc : rc2;
    if (rc)
        msg_warn("台帳に記録できません / cannot write to the ledger: %s", buf_cstr(&err));
    buf_free(&err);
    return rc;
}

/* "by" and "uid" of the user running this: the login name where known. */
static void put_who(buf *f)
{
    uid_t uid = getuid();
    struct passwd *pw = getpwuid(uid);
    const char *sudo = getenv("SUDO_USER");
    buf_puts(f, ",\"by\":");
    decision_json_str(f, pw ? pw->pw_name : "");
    if (sudo != NULL && *sudo) {
        buf_puts(f, ",\"sudo_user\":");
        decision_json_str(f, sudo);
    }
    buf_printf(f, ",\"uid\":%lu", (unsigned long)uid);
}

static int status_of(int rc)
{
    switch (rc) {
    case 0:
        return EXIT_OK;
    case -ENOENT:
        return EXIT_NOINPUT;
    case -EIO:
    case -EPIPE:
    case -ENOSPC:
    case -EFBIG:
    case -EBADF:
        return EXIT_IOERR;
    default:
        return EXIT_TEMPFAIL;
    }
}

/* ---- list ----------------------------------------------------------------------- */

struct list_state {
    int json;
    size_t n;
};

/* The fields list and show share, as the start of one JSON object (no closing brace). */
static void put_entry_json(const quarantine_entry *e, const char *when)
{
    printf("{\"id\":\"%s\",\"received\":%lld,\"received_local\":\"%s\","
           "\"retain_until\":%lld,\"size\":%llu,\"sha256\":\"%s\",\"from\":",
           e->id, (long long)e->received, when, (long long)e->retain_until,
           (unsigned long long)e->size, e->sha256);
    put_json_str(stdout, e->from);
    fputs(",\"to\":", stdout);
    put_json_str(stdout, e->to);
    fputs(",\"subject\":", stdout);
    put_json_str(stdout, e->subject);
    fputs(",\"message_id\":", stdout);
    put_json_str(stdout, e->message_id);
    fputs(",\"verdict\":", stdout);
    put_json_str(stdout, e->verdict);
}

static int list_one(const quarantine_entry *e, void *arg)
{
    struct list_state *ls = arg;
    char when[40];
    iso_local(e->received, when);
    if (ls->json) {
        put_entry_json(e, when);
        printf(",\"parts\":%zu}\n", e->n_parts);
    } else {
        printf("%-33s  %-25s  %10llu  %5zu  ", e->id, when, (unsigned long long)e->size,
               e->n_parts);
        put_safe(stdout, e->from, 32);
        fputs("  ", stdout);
        put_cut(stdout, e->subject, 60, 0);
        fputc('\n', stdout);
    }
    ls->n++;
    return ferror(stdout) ? -EIO : 0;
}

/* For the commands that take no argument: EXIT_USAGE with a message, or -1. */
static int want_no_args(const char *cmd, const struct opts *o)
{
    if (o->n_args != 0) {
        fprintf(stderr, "sekisho quarantine %s: 引数は不要です / no arguments expected: %s\n", cmd,
                o->args[0]);
        return EXIT_USAGE;
    }
    return -1;
}

static int do_list(int argc, char **argv)
{
    struct opts o;
    int st = parse(argc, argv, help_list, 1, 0, &o);
    if (st >= 0)
        return st;
    if ((st = want_no_args("list", &o)) >= 0)
        return st;
    quarantine *q = open_q(&o, &st);
    if (q == NULL)
        return st;
    if (!o.json) {
        put_safe(stdout, "ID", 35);
        put_safe(stdout, "受信 RECEIVED", 27);
        printf("%10s  %5s  ", "SIZE", "PARTS");
        put_safe(stdout, "差出人 FROM", 32);
        fputs("  件名 SUBJECT\n", stdout);
    }
    struct list_state ls = {o.json, 0};
    buf err;
    buf_init(&err, 8192);
    int rc = quarantine_list(q, list_one, &ls, &err);
    if (fflush(stdout) != 0 && rc == 0)
        rc = -EIO;
    if (rc)
        msg_warn("一覧の取得に失敗 / list failed: %s", err.len ? buf_cstr(&err) : strerror(-rc));
    else if (ls.n == 0 && !o.json)
        fprintf(stderr, "(隔離された原本はありません / the quarantine is empty)\n");
    buf_free(&err);
    quarantine_close(q);
    return rc ? (rc == -EIO ? EXIT_IOERR : EXIT_TEMPFAIL) : EXIT_OK;
}

/* ---- get ------------------------------------------------------------------------ */

static int need_id(const struct opts *o, const char *cmd)
{
    if (o->n_args != 1) {
        fprintf(stderr,
                "sekisho quarantine %s: ID を 1 つ指定してください / exactly one ID "
                "expected (see: sekisho quarantine %s --help)\n",
                cmd, cmd);
        return EXIT_USAGE;
    }
    return -1;
}

struct found {
    char id[QUARANTINE_ID_MAX];
    char sha256[65];
    uint64_t size;
};

static int found_one(const quarantine_entry *e, const quarantine_part *p, size_t n, void *arg)
{
    (void)p, (void)n;
    struct found *f = arg;
    snprintf(f->id, sizeof f->id, "%s", e->id);
    snprintf(f->sha256, sizeof f->sha256, "%s", e->sha256);
    f->size = e->size;
    return 0;
}

static int do_get(int argc, char **argv)
{
    struct opts o;
    int st = parse(argc, argv, help_get, 0, 0, &o);
    if (st >= 0 || (st = need_id(&o, "get")) >= 0)
        return st;
    quarantine *q = open_q(&o, &st);
    if (q == NULL)
        return st;
    buf err;
    buf_init(&err, 8192);
    /* Known and intact first (nothing recorded for an unknown id), then
     * recorded, then written out. */
    struct found f = {0};
    int rc = quarantine_show(q, o.args[0], found_one, &f, &err);
    ledger *l = rc == 0 ? open_l(&o) : NULL;
    if (rc == 0 && l == NULL)
        rc = -EAGAIN;
    if (rc == 0) {
        buf fields;
        buf_init(&fields, 1 << 16);
        buf_puts(&fields, "{\"quarantine_id\":");
        decision_json_str(&fields, f.id);
        buf_puts(&fields, ",\"sha256\":");
        decision_json_str(&fields, f.sha256);
        buf_printf(&fields, ",\"size\":%llu", (unsigned long long)f.size);
        put_who(&fields);
        buf_putc(&fields, '}');
        rc = record_close(l, "quarantine.released", &fields) ? -EAGAIN : 0;
        buf_free(&fields);
        if (rc == 0) {
            rc = quarantine_get(q, o.args[0], STDOUT_FILENO, &err);
            if (rc != 0 && (l = open_l(&o)) != NULL) {
                /* the release just recorded did not happen */
                buf_init(&fields, 1 << 16);
                buf_puts(&fields, "{\"quarantine_id\":");
                decision_json_str(&fields, f.id);
                buf_puts(&fields, ",\"reason\":");
                decision_json_str(&fields, buf_cstr(&err));
                buf_putc(&fields, '}');
                record_close(l, "quarantine.release_failed", &fields);
                buf_free(&fields);
            }
        }
    }
    if (rc == -ENOENT)
        msg_warn("その ID の原本はありません / no such original: %s", buf_cstr(&err));
    else if (rc == -EIO)
        msg_warn("原本の照合に失敗しました（改ざんまたは破損）/ integrity failure: %s",
                 buf_cstr(&err));
    else if (rc == -EAGAIN)
        ; /* said above */
    else if (rc)
        msg_warn("原本を書き出せません / cannot write the original: %s", buf_cstr(&err));
    buf_free(&err);
    quarantine_close(q);
    return status_of(rc);
}

/* ---- show ----------------------------------------------------------------------- */

static int show_one(const quarantine_entry *e, const quarantine_part *p, size_t n, void *arg)
{
    int json = *(int *)arg;
    char when[40], until[40];
    iso_local(e->received, when);
    iso_local(e->retain_until, until);
    if (json) {
        put_entry_json(e, when);
        fputs(",\"parts\":[", stdout);
        for (size_t i = 0; i < n; i++) {
            fputs(i ? ",{\"filename\":" : "{\"filename\":", stdout);
            put_json_str(stdout, p[i].filename);
            fputs(",\"declared_type\":", stdout);
            put_json_str(stdout, p[i].declared_type);
            fputs(",\"detected_type\":", stdout);
            put_json_str(stdout, p[i].detected_type);
            printf(",\"size\":%llu,\"sha256\":", (unsigned long long)p[i].size);
            put_json_str(stdout, p[i].sha256);
            fputc('}', stdout);
        }
        fputs("]}\n", stdout);
        return 0;
    }
    printf("ID:                      %s\n", e->id);
    printf("受信日時 Received:       %s\n", when);
    fputs("差出人 From:             ", stdout);
    put_safe(stdout, e->from, 0);
    fputs("\n宛先 To:                 ", stdout);
    put_safe(stdout, e->to, 0);
    fputs("\n件名 Subject:            ", stdout);
    put_safe(stdout, e->subject, 0);
    fputs("\nMessage-ID:              ", stdout);
    put_safe(stdout, e->message_id, 0);
    fputs("\n判定 Verdict:            ", stdout);
    put_safe(stdout, e->verdict, 0);
    printf("\n保存期限 Retain until:   %s\n", until);
    printf("サイズ Size:             %llu bytes\n", (unsigned long long)e->size);
    printf("SHA-256:                 %s\n", e->sha256);
    printf("除去した部分 Removed:    %zu\n", n);
    for (size_t i = 0; i < n; i++) {
        printf("  [%zu] ファイル名 name:    ", i + 1);
        put_safe(stdout, *p[i].filename ? p[i].filename : "(なし / none)", 0);
        fputs("\n      申告 declared:      ", stdout);
        put_safe(stdout, p[i].declared_type, 0);
        fputs("\n      検出 detected:      ", stdout);
        put_safe(stdout, p[i].detected_type, 0);
        printf("\n      サイズ size:        %llu bytes\n", (unsigned long long)p[i].size);
        fputs("      SHA-256:            ", stdout);
        put_safe(stdout, p[i].sha256, 0);
        fputc('\n', stdout);
    }
    return 0;
}

static int do_show(int argc, char **argv)
{
    struct opts o;
    int st = parse(argc, argv, help_show, 1, 0, &o);
    if (st >= 0 || (st = need_id(&o, "show")) >= 0)
        return st;
    quarantine *q = open_q(&o, &st);
    if (q == NULL)
        return st;
    buf err;
    buf_init(&err, 8192);
    int rc = quarantine_show(q, o.args[0], show_one, &o.json, &err);
    if (rc == 0 && fflush(stdout) != 0)
        rc = -EIO;
    if (rc == -ENOENT)
        msg_warn("その ID の原本はありません / no such original: %s", buf_cstr(&err));
    else if (rc)
        msg_warn("表示できません / cannot show: %s", err.len ? buf_cstr(&err) : strerror(-rc));
    buf_free(&err);
    quarantine_close(q);
    return status_of(rc);
}

/* ---- purge ---------------------------------------------------------------------- */

static int purge_one(const quarantine_entry *e, void *arg)
{
    (void)arg;
    char until[40];
    iso_local(e->retain_until, until);
    printf("%-33s  期限 until %s  ", e->id, until);
    put_safe(stdout, e->from, 32);
    fputs("  ", stdout);
    put_cut(stdout, e->subject, 40, 0);
    fputc('\n', stdout);
    /* The list is the record of what --delete removes: it must be out
     * before anything is removed (a non-zero return stops the purge). */
    return fflush(stdout) != 0 || ferror(stdout) ? -EIO : 0;
}

/* --delete: every expired original is recorded (quarantine.purged) before
 * anything is removed, and the removal then takes exactly the recorded ones,
 * in the same order (the same "now"); anything else stops it untouched. */
struct purge_set {
    ledger *l;
    char (*ids)[QUARANTINE_ID_MAX];
    size_t n, cap, next;
    buf err;
};

static int purge_record(const quarantine_entry *e, void *arg)
{
    struct purge_set *ps = arg;
    if (ps->n == ps->cap) {
        size_t nc = ps->cap ? 2 * ps->cap : 64;
        void *np = realloc(ps->ids, nc * sizeof *ps->ids);
        if (np == NULL)
            return -ENOMEM;
        ps->ids = np;
        ps->cap = nc;
    }
    snprintf(ps->ids[ps->n++], QUARANTINE_ID_MAX, "%s", e->id);
    buf f;
    buf_init(&f, 1 << 16);
    buf_puts(&f, "{\"quarantine_id\":");
    decision_json_str(&f, e->id);
    buf_puts(&f, ",\"sha256\":");
    decision_json_str(&f, e->sha256);
    buf_printf(&f, ",\"size\":%llu,\"received\":%lld,\"retain_until\":%lld",
               (unsigned long long)e->size, (long long)e->received, (long long)e->retain_until);
    put_who(&f);
    buf_putc(&f, '}');
    uint64_t index = 0;
    int rc = f.err ? f.err
                   : ledger_append(ps->l, "quarantine.purged", "sekisho quarantine", f.p, f.len,
                                   &index, &ps->err);
    buf_free(&f);
    return rc;
}

static int purge_checked(const quarantine_entry *e, void *arg)
{
    struct purge_set *ps = arg;
    if (ps->next >= ps->n || strcmp(ps->ids[ps->next], e->id) != 0) {
        buf_printf(&ps->err,
                   "期限切れの原本が記録後に変わりました。もう一度実行してください / the "
                   "expired originals changed after they were recorded (%s); run again",
                   e->id);
        return -EAGAIN;
    }
    ps->next++;
    return purge_one(e, NULL);
}

static int do_purge(int argc, char **argv)
{
    struct opts o;
    int st = parse(argc, argv, help_purge, 0, 1, &o);
    if (st >= 0)
        return st;
    if ((st = want_no_args("purge", &o)) >= 0)
        return st;
    quarantine *q = open_q(&o, &st);
    if (q == NULL)
        return st;
    buf err;
    buf_init(&err, 8192);
    uint64_t n = 0;
    int64_t now = (int64_t)time(NULL);
    struct purge_set ps = {0};
    buf_init(&ps.err, 8192);
    int rc = 0;
    if (o.del) {
        ps.l = open_l(&o);
        if (ps.l == NULL)
            rc = -EAGAIN;
        if (rc == 0)
            rc = quarantine_purge(q, now, 1, purge_record, &ps, NULL, &err);
        int rc2 = ps.l ? ledger_close(ps.l, &ps.err) : 0; /* commits */
        rc = rc ? rc : rc2;
        ps.l = NULL;
        if (rc && ps.err.len)
            msg_warn("台帳に記録できません。何も削除していません / cannot write to the ledger; "
                     "nothing was removed: %s",
                     buf_cstr(&ps.err));
    }
    if (rc == 0)
        rc = quarantine_purge(q, now, !o.del, o.del ? purge_checked : purge_one, &ps, &n, &err);
    if (o.del && rc == -EAGAIN && ps.err.len && err.len == 0)
        buf_puts(&err, buf_cstr(&ps.err));
    free(ps.ids);
    buf_free(&ps.err);
    if (fflush(stdout) != 0 && rc == 0)
        rc = -EIO;
    if (rc == -EIO && err.len == 0)
        buf_printf(&err, "standard output: %s (nothing was removed)", strerror(EIO));
    if (o.del && rc != 0 && ps.n > 0 && (ps.l = open_l(&o)) != NULL) {
        /* recorded as purged, but the removal failed: say so */
        buf f;
        buf_init(&f, 1 << 16);
        buf_printf(&f, "{\"recorded\":%zu,\"removed\":%llu,\"reason\":", ps.n,
                   (unsigned long long)n);
        decision_json_str(&f, buf_cstr(&err));
        buf_putc(&f, '}');
        record_close(ps.l, "quarantine.purge_failed", &f);
        buf_free(&f);
    }
    if (rc)
        msg_warn("削除に失敗 / purge failed: %s", buf_cstr(&err));
    if (!o.del)
        fprintf(stderr,
                "保存期限切れ %llu 件（削除するには --delete）/ %llu expired; "
                "nothing removed (use --delete)\n",
                (unsigned long long)n, (unsigned long long)n);
    else if (rc == 0 || n)
        fprintf(stderr, "%llu 件を削除しました / %llu removed\n", (unsigned long long)n,
                (unsigned long long)n);
    buf_free(&err);
    quarantine_close(q);
    return status_of(rc);
}

/* ---- dispatch ------------------------------------------------------------------- */

static int dispatch(int argc, char **argv)
{
    const char *sub = argv[0];
    if (strcmp(sub, "list") == 0)
        return do_list(argc, argv);
    if (strcmp(sub, "get") == 0)
        return do_get(argc, argv);
    if (strcmp(sub, "show") == 0)
        return do_show(argc, argv);
    if (strcmp(sub, "purge") == 0)
        return do_purge(argc, argv);
    fprintf(stderr,
            "sekisho quarantine: そのサブコマンドはありません / no such command: %s "
            "(see: sekisho quarantine --help)\n",
            sub);
    return EXIT_USAGE;
}

int cmd_quarantine(int argc, char **argv)
{
    return cli_group(argc, argv, help_main, dispatch);
}
