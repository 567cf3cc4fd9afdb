/*
 * sekisho record TYPE KEY=VALUE... - one of the policy's records (入退室,
 * 媒体廃棄, ...) appended durably to the ledger. The record types and their
 * required and optional fields come from the policy's records: section, or
 * the built-in set (lib/policy.c). Exit: 0 appended (the index on stdout);
 * 64 usage, or an argument that is not KEY=VALUE; 65 unknown type, missing
 * required field, unknown or repeated field, or a value the ledger refuses;
 * 66 no ledger; 74 I/O error opening it; 75 the entry could not be made
 * durable (nothing recorded); 78 policy error.
 */
#include "cli.h"
#include "decision.h"
#include "jcs.h"
#include "ledger.h"
#include "util/msg.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help_record[] =
    "名前 / NAME\n"
    "    sekisho record - 対策基準の記録を台帳に追記する / append one of the policy's\n"
    "    records to the ledger\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho record [-p POLICY] [-l DIR] [-k KEYFILE] TYPE KEY=VALUE...\n"
    "    sekisho record [-p POLICY] --list\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    記録の種類 TYPE（入退室、媒体廃棄、変更作業、障害、修正プログラム適用、例外措置\n"
    "    など）と、その項目を KEY=VALUE の形で受け取り、台帳に 1 件の記録として追記し\n"
    "    ます。種類ごとの必須項目と任意項目はポリシーの records: で決めます（無ければ\n"
    "    組み込みの種類。--list で表示）。必須項目が無い、知らない項目がある（種類が\n"
    "    extra_fields を許す場合を除く）、同じ項目が二度ある、種類を知らない場合は、\n"
    "    その項目を示して何も追記せずに終わります。記録がディスクに確定（fdatasync）\n"
    "    した後に、その番号を標準出力に表示します。値は受け取ったとおりの文字列として\n"
    "    記録します（日時の書き方は団体の規程に従ってください）。記録者として\n"
    "    source に sekisho record:ユーザー名 を記録します。他のプロセス（syslogd、\n"
    "    milter、ledger append）が同時に台帳に書いていても構いません。\n"
    "    Appends one record of type TYPE with the fields given as KEY=VALUE to the\n"
    "    ledger. Each type's required and optional fields come from the policy's\n"
    "    records: section (else the built-in types; see --list). A missing required\n"
    "    field, an unknown field (unless the type allows extra_fields), a repeated\n"
    "    field or an unknown type is refused with the field named, and nothing is\n"
    "    appended. The index is printed once the entry is durable (fdatasync).\n"
    "    Values are recorded as given, as strings. The source is\n"
    "    \"sekisho record:USER\". Other writers may use the ledger at the same time.\n"
    "\n"
    "オプション / OPTIONS\n"
    "    -p, --policy FILE     ポリシーファイル / policy file (records:, ledger:)\n"
    "    -l, --ledger DIR      台帳 / ledger directory (default: the policy's ledger.dir)\n"
    "    -k, --key FILE        署名鍵 / signing key (default: the policy's ledger.key_file)\n"
    "    --list                記録の種類と項目を表示 / list the types and their fields\n"
    "    -h, --help            この説明 / this manual\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 追記した appended; 64 使い方の誤り、KEY=VALUE でない引数 usage error or an\n"
    "    argument that is not KEY=VALUE; 65 知らない種類、必須項目の不足、知らない・重複\n"
    "    した項目 unknown type, missing, unknown or repeated field; 66 台帳が無い no\n"
    "    ledger; 74 I/O error; 75 確定できなかった（何も記録していない）the entry could\n"
    "    not be made durable (nothing recorded); 78 policy error.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho record 入退室 氏名=山田太郎 入室時刻=2026-11-23T09:00+09:00 \\\n"
    "        退室時刻=2026-11-23T10:15+09:00 目的=サーバ室点検 立会者=鈴木一郎\n"
    "    sekisho record 媒体廃棄 媒体=HDD 識別番号=HDD-0042 廃棄方法=物理破壊 \\\n"
    "        実施者=佐藤 確認者=田中 実施日=2026-11-23\n"
    "    sekisho record --list\n"
    "\n"
    "関連 / SEE ALSO\n"
    "    sekisho ledger --help, docs/LEDGER.md (records), docs/POLICY.md (records:)\n";

static void list_types(const policy *pol)
{
    printf("# %s\n", pol->source ? pol->source : "(built-in defaults)");
    for (size_t i = 0; i < pol->n_record_types; i++) {
        const policy_record_type *t = &pol->record_types[i];
        printf("%s\n  必須 / required:", t->type);
        for (size_t k = 0; k < t->n_required; k++)
            printf(" %s", t->required[k]);
        printf("\n  任意 / optional:");
        for (size_t k = 0; k < t->n_optional; k++)
            printf(" %s", t->optional[k]);
        if (t->n_optional == 0)
            printf(" -");
        printf("%s\n", t->extra_fields ? "\n  その他の項目も可 / other fields allowed" : "");
    }
}

static int listed(char *const *v, size_t n, const char *s, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i]) == len && memcmp(v[i], s, len) == 0)
            return 1;
    return 0;
}

/* The fields as one JSON object, or an exit status with the reason on stderr. */
static int build_fields(const policy_record_type *t, int argc, char **argv, buf *out)
{
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (eq == NULL || eq == argv[i]) {
            fprintf(stderr,
                    "sekisho record: '%s': KEY=VALUE の形ではありません / not KEY=VALUE (see: "
                    "sekisho record --help)\n",
                    argv[i]);
            return EXIT_USAGE;
        }
    }
    int bad = 0;
    for (int i = 0; i < argc; i++) {
        size_t kl = (size_t)(strchr(argv[i], '=') - argv[i]);
        for (int j = 0; j < i; j++)
            if (strncmp(argv[j], argv[i], kl + 1) == 0) {
                fprintf(stderr,
                        "sekisho record: %s: %.*s: 項目が二度あります / field given twice\n",
                        t->type, (int)kl, argv[i]);
                bad = 1;
            }
        if (!t->extra_fields && !listed(t->required, t->n_required, argv[i], kl) &&
            !listed(t->optional, t->n_optional, argv[i], kl)) {
            fprintf(stderr,
                    "sekisho record: %s: %.*s: 知らない項目です / unknown field (fields: see "
                    "sekisho record --list)\n",
                    t->type, (int)kl, argv[i]);
            bad = 1;
        }
    }
    for (size_t k = 0; k < t->n_required; k++) {
        size_t kl = strlen(t->required[k]);
        int found = 0;
        for (int i = 0; i < argc && !found; i++)
            found = strncmp(argv[i], t->required[k], kl) == 0 && argv[i][kl] == '=';
        if (!found) {
            fprintf(stderr,
                    "sekisho record: %s: 必須項目 %s がありません / required field missing: %s\n",
                    t->type, t->required[k], t->required[k]);
            bad = 1;
        }
    }
    if (bad)
        return EXIT_DATAERR;
    buf_putc(out, '{');
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (i)
            buf_putc(out, ',');
        if (jcs_put_string(out, argv[i], (size_t)(eq - argv[i])) < 0 ||
            (buf_putc(out, ':'), jcs_put_string(out, eq + 1, strlen(eq + 1))) < 0) {
            fprintf(stderr, "sekisho record: %s: UTF-8 ではありません / not valid UTF-8\n",
                    argv[i]);
            return EXIT_DATAERR;
        }
    }
    buf_putc(out, '}');
    return EXIT_OK;
}

int cmd_record(int argc, char **argv)
{
    static const struct option lo[] = {
        {"policy", required_argument, NULL, 'p'}, {"ledger", required_argument, NULL, 'l'},
        {"key", required_argument, NULL, 'k'},    {"list", no_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *pfile = NULL, *dir = NULL, *key = NULL;
    int list = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+p:l:k:h", lo, NULL)) != -1) {
        switch (c) {
        case 'p':
            pfile = optarg;
            break;
        case 'l':
            dir = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'L':
            list = 1;
            break;
        case 'h':
            fputs(help_record, stdout);
            return EXIT_OK;
        default:
            fprintf(stderr, "使い方 / usage: see: sekisho record --help\n");
            return EXIT_USAGE;
        }
    }
    policy *pol = cli_load_policy(pfile);
    int status;
    if (list) {
        list_types(pol);
        status = fflush(stdout) == 0 ? EXIT_OK : EXIT_IOERR;
        policy_free(pol);
        return status;
    }
    if (optind >= argc) {
        fprintf(stderr, "sekisho record: 記録の種類がありません / no record type (see: sekisho "
                        "record --list)\n");
        policy_free(pol);
        return EXIT_USAGE;
    }
    const char *type = argv[optind];
    const policy_record_type *t = policy_record_type_find(pol, type);
    if (t == NULL) {
        fprintf(stderr,
                "sekisho record: %s: 知らない記録の種類です / unknown record type (types:", type);
        for (size_t i = 0; i < pol->n_record_types; i++)
            fprintf(stderr, " %s", pol->record_types[i].type);
        fprintf(stderr, ")\n");
        policy_free(pol);
        return EXIT_DATAERR;
    }
    buf fields, err, notes;
    buf_init(&fields, LEDGER_MAX_ENTRY);
    buf_init(&err, 8192);
    buf_init(&notes, 1 << 20);
    status = build_fields(t, argc - optind - 1, argv + optind + 1, &fields);
    ledger *l = NULL;
    if (status == EXIT_OK) {
        ledger_opts lo2;
        ledger_opts_from_policy(pol, dir, key, &lo2);
        lo2.notes = &notes;
        l = ledger_open(&lo2, 1, &err);
        fputs(buf_cstr(&notes), stderr);
        if (l == NULL) {
            msg_warn("台帳を開けません / cannot open the ledger: %s", buf_cstr(&err));
            status = strstr(buf_cstr(&err), "no ledger at") ? EXIT_NOINPUT
                     : strstr(buf_cstr(&err), "damaged")    ? EXIT_DATAERR
                                                            : EXIT_IOERR;
        }
    }
    if (l != NULL) {
        char source[200];
        struct passwd *pw = getpwuid(getuid());
        if (pw && pw->pw_name)
            snprintf(source, sizeof source, "sekisho record:%s", pw->pw_name);
        else
            snprintf(source, sizeof source, "sekisho record:uid%ld", (long)getuid());
        uint64_t staged, index;
        int rc = ledger_append(l, t->type, source, fields.p, fields.len, &staged, &err);
        if (rc < 0) {
            msg_warn("追記しませんでした / not appended: %s", buf_cstr(&err));
            status = rc == -EINVAL || rc == -EFBIG ? EXIT_DATAERR : EXIT_TEMPFAIL;
        } else if ((rc = ledger_commit(l, &err)) < 0 ||
                   ledger_committed_index(l, staged, &index) < 0) {
            msg_warn("記録を確定できません（記録していません）/ the entry could not be made "
                     "durable (nothing recorded): %s",
                     buf_cstr(&err));
            status = EXIT_TEMPFAIL;
        } else {
            printf("%" PRIu64 "\n", index);
            if (fflush(stdout) != 0)
                status = EXIT_IOERR;
        }
        buf_reset(&err);
        if (ledger_close(l, &err) < 0 && status == EXIT_OK) {
            msg_warn("台帳を閉じられません / cannot close the ledger: %s", buf_cstr(&err));
            status = EXIT_IOERR;
        }
    }
    buf_free(&fields);
    buf_free(&err);
    buf_free(&notes);
    policy_free(pol);
    return status;
}
