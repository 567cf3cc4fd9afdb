/*
 * cmd_ledger - `sekisho ledger ...`: the tamper-evident ledger (lib/ledger)
 * for administrators and auditors.
 *
 * Contract: append prints an entry's index only after the entry is durable
 * (lib/ledger's commit: write + fdatasync), one index per input line, in
 * order; at the first rejected line it stops (what came before stays
 * appended and acknowledged) and exits 65. cat/get write the stored
 * canonical bytes exactly as hashed. head, prove-* and export-head print JSON
 * with lower-case hex. verify exits 0 only when nothing is wrong, 65 when a
 * change was found (each one reported with its place), 66 when there is no
 * ledger, 74/75 when it cannot be read.
 */
#include "cli.h"
#include "decision.h"
#include "ledger.h"
#include "util/buf.h"
#include "util/digest.h"
#include "util/msg.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- manuals ----------------------------------------------------------------- */

static const char help_main[] =
    "名前 / NAME\n"
    "    sekisho ledger - 改ざんを検知できる台帳（アクセス記録・各種記録簿）\n"
    "    the tamper-evident ledger of access records and policy records\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho ledger init              [-p POLICY] [-l DIR] [-k KEYFILE]\n"
    "    sekisho ledger append            [-p POLICY] [-l DIR] [-k KEYFILE] < records.jsonl\n"
    "    sekisho ledger cat               [-p POLICY] [-l DIR]\n"
    "    sekisho ledger get               [-p POLICY] [-l DIR] INDEX\n"
    "    sekisho ledger tail              [-p POLICY] [-l DIR] [-n COUNT]\n"
    "    sekisho ledger head              [-p POLICY] [-l DIR]\n"
    "    sekisho ledger prove-inclusion   [-p POLICY] [-l DIR] INDEX [TREE_SIZE]\n"
    "    sekisho ledger prove-consistency [-p POLICY] [-l DIR] OLD NEW\n"
    "    sekisho ledger verify            [-p POLICY] [-l DIR] [--public-key HEX] [--head "
    "FILE]...\n"
    "    sekisho ledger export-head       [-p POLICY] [-l DIR]\n"
    "    sekisho ledger prune             [-p POLICY] [-l DIR] [-k KEYFILE] [--days N] [--delete]\n"
    "    sekisho ledger COMMAND --help\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    台帳は追記だけができる記録の列です。各記録は正規化した JSON（RFC 8785）1 行で、\n"
    "    全記録が Certificate Transparency（RFC 9162）と同じ Merkle 木の葉になります。\n"
    "    一定件数・一定時間ごとに木の根（ツリーヘッド）に Ed25519 で署名します。\n"
    "    記録の変更・削除・挿入・切り詰め・順序の入れ替えは verify がその場所とともに\n"
    "    報告します。書き出したヘッド（export-head）を別の場所に保管すれば、署名鍵を\n"
    "    持つ者でもそれ以前の履歴を書き換えられません。\n"
    "    The ledger is an append-only sequence of records, one canonical JSON object\n"
    "    (RFC 8785) per line, the leaves of a Merkle tree as in Certificate\n"
    "    Transparency (RFC 9162). Its root (tree head) is signed with Ed25519 at\n"
    "    every checkpoint. verify reports every modification, deletion, insertion,\n"
    "    truncation or reordering with its place. A head exported to a second place\n"
    "    (export-head) pins the history before it, even against the signing key.\n"
    "\n"
    "    init               台帳と署名鍵を作り、公開鍵を表示 / create the ledger and key,\n"
    "                       print the public key\n"
    "    append             標準入力の JSON（1 行 1 件）を追記し、各番号を表示 /\n"
    "                       append JSON objects from stdin, print each new index\n"
    "    cat, get, tail     記録を保存されたバイト列のまま表示 / entries, byte for byte\n"
    "    head               最新の署名付きツリーヘッド / the latest signed tree head\n"
    "    prove-inclusion    包含証明 / inclusion proof (RFC 9162)\n"
    "    prove-consistency  一貫性証明 / consistency proof (RFC 9162)\n"
    "    verify             全体の検証 / check everything\n"
    "    export-head        別の場所に保管するヘッド / a head to keep elsewhere\n"
    "    prune              保存期間を過ぎた区間の削除 / remove expired segments\n"
    "\n"
    "共通オプション / COMMON OPTIONS\n"
    "    -p, --policy FILE     ポリシーファイル / policy file (its ledger: section)\n"
    "    -l, --ledger DIR      台帳のディレクトリ / ledger directory (default: the\n"
    "                          policy's ledger.dir, else $SEKISHO_STATE_DIR/ledger,\n"
    "                          else /var/lib/sekisho/ledger)\n"
    "    -k, --key FILE        署名鍵 / signing key (default: the policy's\n"
    "                          ledger.key_file, else <state_dir>/ledger-signing.key)\n"
    "    -h, --help            この説明 / this manual\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 成功 success; 64 使い方の誤り usage error; 65 入力の誤り、または改ざんを検出\n"
    "    rejected input, or verify found a change; 66 台帳が無い no ledger; 73 既にある\n"
    "    already exists; 74 入出力エラー I/O error; 75 一時的な失敗 temporary failure;\n"
    "    78 ポリシーファイルの誤り policy error.\n"
    "\n"
    "関連 / SEE ALSO\n"
    "    docs/LEDGER.md, docs/POLICY.md (ledger:)\n";

static const char help_init[] =
    "名前 / NAME\n"
    "    sekisho ledger init - 台帳と署名鍵を作る / create a ledger and its signing key\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho ledger init [-p POLICY] [-l DIR] [-k KEYFILE]\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    DIR に空の台帳を作り、空の木のツリーヘッドに署名します。KEYFILE が無ければ\n"
    "    Ed25519 の署名鍵を新しく作ります（モード 0600）。公開鍵（16 進 64 桁）を標準\n"
    "    出力に表示します。公開鍵は監査する人に台帳とは別の経路で渡してください\n"
    "    （verify --public-key）。署名鍵は台帳のディレクトリの外に置かれます。\n"
    "    Creates an empty ledger in DIR and signs the empty tree's head. If KEYFILE\n"
    "    does not exist, a new Ed25519 key is made there (mode 0600). The public key\n"
    "    (64 hex digits) goes to stdout: give it to auditors by another path than the\n"
    "    ledger itself (verify --public-key). The key lives outside the ledger\n"
    "    directory, so a copy of the ledger for an auditor never carries it.\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 成功 success; 73 台帳が既にある a ledger already exists; 74 I/O error;\n"
    "    78 policy error.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho ledger init -p /etc/sekisho/policy.yaml\n"
    "    sekisho ledger init -l /tmp/l -k /tmp/l.key\n";

static const char help_append[] =
    "名前 / NAME\n"
    "    sekisho ledger append - 記録を追記する / append entries\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho ledger append [-p POLICY] [-l DIR] [-k KEYFILE] [-s SOURCE] < records.jsonl\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    標準入力の各行を 1 件の記録として追記します。各行は JSON オブジェクトで、\n"
    "        {\"type\": \"入退室\", \"source\": \"庁舎受付\", \"fields\": {\"氏名\": \"...\"}}\n"
    "    type（文字列、必須）、source（文字列、省略時は -s の値か cli:ユーザー名）、\n"
    "    fields（オブジェクト、省略時は {}）だけを書けます。time（記録時刻、UTC ミリ秒）\n"
    "    と index（番号）は台帳が付けます。数値は倍精度で正確に表せるものだけです\n"
    "    （それ以外は文字列で）。\n"
    "    各記録の番号は、その記録がディスクに確定（fdatasync）した後に 1 行ずつ標準出力\n"
    "    に表示します。続けて届いた行はまとめて確定します（グループコミット）。不正な行\n"
    "    があればそこで止まり（それまでの記録は追記済み）、終了ステータス 65 で終わり\n"
    "    ます。前回の異常終了で書きかけの記録が残っていれば、開く時に切り離して\n"
    "    recovered/ に保存し、そのこと自体を台帳に記録して標準エラーに表示します。\n"
    "    他のプロセス（sekisho record、syslogd、milter など）が同時に追記していても\n"
    "    構いません。表示する番号は確定した時点の最終的な番号です。\n"
    "    Appends each line of stdin as one entry: a JSON object with type (string,\n"
    "    required), source (string; default -s, else cli:USER) and fields (object;\n"
    "    default {}). time (UTC, ms) and index are the ledger's. Numbers must be\n"
    "    exact as doubles (else use strings). Each index is printed only after its\n"
    "    entry is durable (fdatasync); lines that arrive together are committed\n"
    "    together (group commit). At the first rejected line it stops (earlier lines\n"
    "    stay appended) and exits 65. A torn tail left by a crash is cut on open,\n"
    "    saved under recovered/, recorded in the ledger and reported on stderr.\n"
    "    Other processes (sekisho record, syslogd, the milter) may append to the\n"
    "    same ledger at the same time; the indices printed are the final ones.\n"
    "\n"
    "オプション / OPTIONS\n"
    "    -s, --source NAME     source の既定値 / default source\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 success; 65 rejected line (stdin:LINE: reason); 66 no ledger; 74 I/O error;\n"
    "    75 temporary failure; 78 policy error.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    echo '{\"type\":\"媒体の廃棄\",\"fields\":{\"媒体\":\"HDD-0042\",\"方法\":\"物理破壊\"}}' "
    "|\n"
    "        sekisho ledger append\n";

static const char help_read[] =
    "名前 / NAME\n"
    "    sekisho ledger cat | get | tail - 記録の表示 / show entries\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho ledger cat  [-p POLICY] [-l DIR]\n"
    "    sekisho ledger get  [-p POLICY] [-l DIR] INDEX\n"
    "    sekisho ledger tail [-p POLICY] [-l DIR] [-n COUNT]\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    保存された正規化 JSON を、ハッシュの対象そのままのバイト列で 1 行 1 件表示\n"
    "    します（葉のハッシュ = SHA-256(0x00 || 行)、改行は含まない）。cat は全記録\n"
    "    （保存期間で削除した区間を除く）、get は番号 INDEX の記録、tail は最後の\n"
    "    COUNT 件（既定 10）。\n"
    "    Print the stored canonical JSON, byte for byte as hashed (leaf hash =\n"
    "    SHA-256(0x00 || line), without the newline), one entry per line: cat every\n"
    "    entry (except removed segments), get entry INDEX, tail the last COUNT\n"
    "    (default 10).\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 success; 66 no such entry or no ledger; 74 damaged entry or I/O error.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho ledger cat | jq -c 'select(.type == \"入退室\")'\n"
    "    sekisho ledger get 42\n";

static const char help_head[] =
    "名前 / NAME\n"
    "    sekisho ledger head | export-head - 署名付きツリーヘッド / the signed tree head\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho ledger head        [-p POLICY] [-l DIR]\n"
    "    sekisho ledger export-head [-p POLICY] [-l DIR] >> heads.txt\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    head は最新の署名付きツリーヘッドを 1 行の JSON で表示します:\n"
    "        "
    "{\"tree_size\":N,\"root_hash\":HEX,\"timestamp\":MS,\"public_key\":HEX,\"signature\":HEX}\n"
    "    署名の対象は次のバイト列そのものです（10 進数、16 進は小文字）:\n"
    "        \"sekisho-sth-v1\\n\" + tree_size + \"\\n\" + root_hash + \"\\n\" + timestamp + "
    "\"\\n\"\n"
    "    export-head は保存された木から根を計算し直してヘッドと一致することを確かめ、\n"
    "    説明（# で始まる行）と JSON 行を出力します。印刷・メール・別のホストなど台帳\n"
    "    の外に保管し、verify --head FILE で照合します。保管したヘッドより前の履歴は、\n"
    "    署名鍵を持つ者でも気付かれずに書き換えられません。\n"
    "    head prints the latest signed tree head as one JSON line. The signature is\n"
    "    over exactly the bytes shown above (decimal numbers, lower-case hex).\n"
    "    export-head first recomputes the root from the stored tree, then prints the\n"
    "    head with '#' comment lines, to keep outside the ledger (print, mail, another\n"
    "    host); verify --head FILE holds the ledger to it, so history before it\n"
    "    cannot be rewritten unnoticed, even by someone with the signing key.\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 success; 65 the stored tree does not match the head (export-head); 66 no\n"
    "    ledger; 74 I/O error.\n";

static const char help_prove[] =
    "名前 / NAME\n"
    "    sekisho ledger prove-inclusion | prove-consistency - RFC 9162 の証明 / proofs\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho ledger prove-inclusion   [-p POLICY] [-l DIR] INDEX [TREE_SIZE]\n"
    "    sekisho ledger prove-consistency [-p POLICY] [-l DIR] OLD NEW\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    prove-inclusion は記録 INDEX が大きさ TREE_SIZE（既定: 最新の署名付きヘッド）\n"
    "    の木に含まれる証明を、prove-consistency は大きさ OLD の木が大きさ NEW の木の\n"
    "    先頭である証明を、RFC 9162 2.1.3 と 2.1.4 の手順で出力します。証明の長さと読む\n"
    "    ハッシュの数は O(log n) です。\n"
    "    prove-inclusion: that entry INDEX is in the tree of TREE_SIZE entries\n"
    "    (default: the latest signed head); prove-consistency: that the tree of OLD\n"
    "    entries is a prefix of the tree of NEW entries; RFC 9162 2.1.3 and 2.1.4.\n"
    "    Output (hex):\n"
    "      {\"leaf_index\",\"tree_size\",\"leaf_hash\",\"root_hash\",\"audit_path\":[...]}\n"
    "      {\"first\",\"second\",\"first_root\",\"second_root\",\"consistency_path\":[...]}\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 success; 64 bad numbers; 66 no ledger; 74 I/O error or damaged tree.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho ledger prove-inclusion 42\n"
    "    sekisho ledger prove-consistency 1000 2000\n";

static const char help_verify[] =
    "名前 / NAME\n"
    "    sekisho ledger verify - 台帳全体の検証 / check the whole ledger\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho ledger verify [-p POLICY] [-l DIR] [--public-key HEX] [--head FILE]...\n"
    "                          [--max-reports N]\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    全記録を読み直し、次を確かめます: 各行が正規化 JSON の記録で、その index が\n"
    "    位置と一致すること（削除・挿入・順序の入れ替えの検出）、追記時に記録した葉の\n"
    "    ハッシュと一致すること（変更の検出）、計算し直した木の根がすべての署名付き\n"
    "    ツリーヘッドと一致し、署名が正しいこと、末尾が失われていないこと（切り詰めの\n"
    "    検出）、保存期間による削除にはその記録があること。見つけた問題は 1 行ずつ、\n"
    "    記録番号・区間ファイル・バイト位置とともに表示します。\n"
    "    Re-reads every entry and checks that each line is a canonical entry whose\n"
    "    index is its position (deletions, insertions, reordering), that it matches\n"
    "    the leaf hash recorded at append time (modifications), that the recomputed\n"
    "    roots match every signed tree head and that the signatures verify, that\n"
    "    nothing is missing at the end (truncation), and that every removed segment\n"
    "    has its retention record. Each finding is one line with the entry index,\n"
    "    the segment file and the byte offset.\n"
    "\n"
    "オプション / OPTIONS\n"
    "    --public-key HEX   信頼する公開鍵（台帳とは別に受け取ったもの）/ the trusted\n"
    "                       public key, received apart from the ledger (default: the\n"
    "                       one in DIR/ledger.json, which an attacker could replace)\n"
    "    --head FILE        export-head で保管したヘッド（複数可）/ exported heads to hold\n"
    "                       the ledger to (repeatable; '#' lines are ignored)\n"
    "    --max-reports N    種類ごとに表示する件数 / findings shown per kind (default 20)\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 異常なし intact; 65 改ざん・欠落などを検出 a change was found; 66 no ledger;\n"
    "    74 I/O error.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho ledger verify --public-key 3b6a27bc... --head /mnt/usb/heads.txt\n";

static const char help_prune[] =
    "名前 / NAME\n"
    "    sekisho ledger prune - 保存期間を過ぎた区間の削除 / remove expired segments\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho ledger prune [-p POLICY] [-l DIR] [-k KEYFILE] [--days N] [--delete]\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    区間（月ごと、または日ごとの記録ファイル）のうち、期間の終わりから保存期間\n"
    "    （ポリシーの ledger.retention_days、または --days）を過ぎたものを一覧します。\n"
    "    最新の区間は対象になりません。--delete を付けた場合に限り、各区間について\n"
    "    まず削除の記録（区間名・番号の範囲・大きさ・SHA-256・区間末の木の根）を台帳に\n"
    "    追記して署名し、その後にファイルを消します。葉のハッシュは残るので、木の根と\n"
    "    残りの記録の証明は検証できます。verify は削除された範囲と日時を表示します。\n"
    "    retention_days が 0（既定）のときは何も削除しません。\n"
    "    Lists segments whose period ended more than the retention period\n"
    "    (ledger.retention_days, or --days) ago; never the newest. Only with --delete\n"
    "    is each removed: first a record of it (name, index range, size, SHA-256, the\n"
    "    root at its end) is appended and signed, then the file goes. Leaf hashes\n"
    "    stay, so roots and proofs remain checkable; verify reports what was removed\n"
    "    and when. With retention_days 0 (the default) nothing is removed.\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 success; 66 no ledger; 74 I/O error; 78 policy error.\n";

/* ---- options ---------------------------------------------------------------------- */

struct opts {
    const char *policy, *dir, *key, *source, *public_key;
    const char **heads;
    size_t n_heads;
    long count;
    long days;
    long max_reports;
    int del;
    char **args;
    int n_args;
};

static int parse_opts(int argc, char **argv, const char *help, struct opts *o)
{
    static const struct option lo[] = {
        {"policy", required_argument, NULL, 'p'},
        {"ledger", required_argument, NULL, 'l'},
        {"key", required_argument, NULL, 'k'},
        {"source", required_argument, NULL, 's'},
        {"count", required_argument, NULL, 'n'},
        {"public-key", required_argument, NULL, 'P'},
        {"head", required_argument, NULL, 'H'},
        {"days", required_argument, NULL, 'D'},
        {"max-reports", required_argument, NULL, 'M'},
        {"delete", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->count = 10;
    o->days = -1;
    o->heads = calloc((size_t)argc + 1, sizeof *o->heads);
    if (o->heads == NULL)
        msg_fatal("out of memory");
    optind = 1;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "+p:l:k:s:n:h", lo, NULL)) != -1) {
        switch (c) {
        case 'p':
            o->policy = optarg;
            break;
        case 'l':
            o->dir = optarg;
            break;
        case 'k':
            o->key = optarg;
            break;
        case 's':
            o->source = optarg;
            break;
        case 'P':
            o->public_key = optarg;
            break;
        case 'H':
            o->heads[o->n_heads++] = optarg;
            break;
        case 'd':
            o->del = 1;
            break;
        case 'n':
        case 'D':
        case 'M': {
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || v < 0 || end == optarg) {
                fprintf(stderr, "sekisho ledger: 数が不正です / not a number: %s\n", optarg);
                goto usage;
            }
            if (c == 'n')
                o->count = v;
            else if (c == 'D')
                o->days = v;
            else
                o->max_reports = v;
            break;
        }
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
    fprintf(stderr, "使い方 / usage: see: sekisho ledger %s --help\n", argv[0]);
    return EXIT_USAGE;
}

static int parse_u64_arg(const char *s, uint64_t *v)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *v = x;
    return 0;
}

static int status_of(int rc)
{
    switch (rc) {
    case 0:
        return EXIT_OK;
    case -ENOENT:
    case -ENOTDIR:
        return EXIT_NOINPUT;
    case -EEXIST:
        return EXIT_CANTCREAT;
    case -EINVAL:
    case -EFBIG:
        return EXIT_DATAERR;
    case -EBUSY:
    case -ENOMEM:
    case -EAGAIN:
        return EXIT_TEMPFAIL;
    default:
        return EXIT_IOERR;
    }
}

/* Builds the ledger options from the command line and the policy. */
static void make_opts(const struct opts *o, policy *pol, ledger_opts *lo, buf *notes)
{
    ledger_opts_from_policy(pol, o->dir, o->key, lo);
    lo->notes = notes;
}

static void flush_notes(buf *notes)
{
    if (notes->len) {
        fputs(buf_cstr(notes), stderr);
        buf_reset(notes);
    }
}

static ledger *open_ledger(const struct opts *o, int writable, policy **polp, int *status)
{
    policy *pol = cli_load_policy(o->policy);
    ledger_opts lo;
    buf notes, err;
    buf_init(&notes, 1 << 20);
    buf_init(&err, 8192);
    make_opts(o, pol, &lo, &notes);
    ledger *l = ledger_open(&lo, writable, &err);
    flush_notes(&notes);
    if (l == NULL) {
        msg_warn("台帳を開けません / cannot open the ledger: %s", buf_cstr(&err));
        const char *e = buf_cstr(&err);
        *status = strstr(e, "no ledger at")      ? EXIT_NOINPUT
                  : strstr(e, "another process") ? EXIT_TEMPFAIL
                  : strstr(e, "damaged")         ? EXIT_DATAERR
                                                 : EXIT_IOERR;
        policy_free(pol);
        pol = NULL;
    }
    buf_free(&notes);
    buf_free(&err);
    if (polp)
        *polp = pol;
    else
        policy_free(pol);
    return l;
}

static void put_hex(const uint8_t *p, size_t n)
{
    char h[2 * LEDGER_SIG_LEN + 1];
    digest_hex(p, n, h);
    fputs(h, stdout);
}

static int finish_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        msg_warn("標準出力に書けません / cannot write to stdout: %s", strerror(errno));
        return EXIT_IOERR;
    }
    return EXIT_OK;
}

/* parse_opts() for a command that takes no arguments: -1 to go on, else the
 * exit status (an option answered, or a usage error naming cmd and why). */
static int parse_no_args(int argc, char **argv, const char *help, const char *cmd, const char *why,
                         struct opts *o)
{
    int rc = parse_opts(argc, argv, help, o);
    if (rc < 0 && o->n_args == 0)
        return -1;
    free(o->heads);
    if (rc < 0)
        fprintf(stderr, "sekisho ledger %s: %s\n", cmd, why);
    return rc >= 0 ? rc : EXIT_USAGE;
}

/* ---- init ------------------------------------------------------------------------- */

static int do_init(int argc, char **argv)
{
    struct opts o;
    int rc =
        parse_no_args(argc, argv, help_init, "init", "引数は不要です / no arguments expected", &o);
    if (rc >= 0)
        return rc;
    policy *pol = cli_load_policy(o.policy);
    ledger_opts lo;
    buf err;
    buf_init(&err, 8192);
    make_opts(&o, pol, &lo, NULL);
    char pub[2 * LEDGER_PUBKEY_LEN + 1];
    rc = ledger_init(&lo, pub, &err);
    if (rc < 0) {
        msg_warn("台帳を作れません / cannot create the ledger: %s", buf_cstr(&err));
        rc = status_of(rc);
    } else {
        fprintf(stderr,
                "台帳を作りました / ledger created: %s\n署名鍵 / signing key: %s\n"
                "公開鍵（監査する人に別の経路で渡してください）/ public key (give it to "
                "auditors by another path):\n",
                lo.dir, lo.key_file);
        printf("%s\n", pub);
        rc = finish_stdout();
    }
    buf_free(&err);
    policy_free(pol);
    free(o.heads);
    return rc;
}

/* ---- append ----------------------------------------------------------------------- */

static char *default_source(void)
{
    static char s[160];
    struct passwd *pw = getpwuid(getuid());
    if (pw && pw->pw_name)
        snprintf(s, sizeof s, "cli:%s", pw->pw_name);
    else
        snprintf(s, sizeof s, "cli:uid%ld", (long)getuid());
    return s;
}

static int input_ready(void)
{
    struct pollfd p = {.fd = 0, .events = POLLIN};
    int r = poll(&p, 1, 0);
    return r > 0;
}

static int do_append(int argc, char **argv)
{
    struct opts o;
    int rc = parse_no_args(argc, argv, help_append, "append",
                           "記録は標準入力から / entries come on stdin", &o);
    if (rc >= 0)
        return rc;
    int status = EXIT_OK;
    policy *pol = NULL;
    ledger *l = open_ledger(&o, 1, &pol, &status);
    if (l == NULL) {
        free(o.heads);
        return status;
    }
    const char *src = o.source ? o.source : default_source();
    buf in, err;
    buf_init(&in, (size_t)LEDGER_MAX_ENTRY * 2 + (8u << 20));
    buf_init(&err, 8192);
    uint64_t *idx = NULL;
    size_t nidx = 0, capidx = 0;
    size_t lineno = 0;
    size_t used = 0; /* bytes of in already consumed */
    int eof = 0, stop = 0;
    while (!eof && !stop) {
        /* Read what is there: block for the first chunk, then take more while
         * it is ready, up to 8 MiB: one commit for all of it. */
        size_t batch_start = in.len;
        do {
            if (buf_reserve(&in, 1 << 20) < 0) {
                msg_warn("stdin:%zu: 行が長すぎます / line too long (over %u bytes)", lineno + 1,
                         LEDGER_MAX_ENTRY);
                status = EXIT_DATAERR;
                stop = 1;
                break;
            }
            ssize_t r = read(0, in.p + in.len, in.cap - in.len);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                msg_warn("stdin: %s", strerror(errno));
                status = EXIT_IOERR;
                stop = 1;
                break;
            }
            if (r == 0) {
                eof = 1;
                break;
            }
            in.len += (size_t)r;
        } while (in.len - batch_start < (8u << 20) && input_ready());
        /* Stage every complete line (and at EOF, a last one without newline). */
        for (;;) {
            uint8_t *nl = memchr(in.p + used, '\n', in.len - used);
            size_t len;
            if (nl)
                len = (size_t)(nl - (in.p + used));
            else if (eof && used < in.len)
                len = in.len - used;
            else
                break;
            lineno++;
            if (!stop) {
                uint64_t ix;
                buf_reset(&err);
                rc = ledger_append_json(l, in.p + used, len, src, &ix, &err);
                if (rc < 0) {
                    msg_warn("stdin:%zu: 追記しませんでした / rejected: %s", lineno,
                             buf_cstr(&err));
                    status = rc == -EINVAL || rc == -EFBIG ? EXIT_DATAERR : status_of(rc);
                    stop = 1;
                } else {
                    if (nidx == capidx) {
                        capidx = capidx ? capidx * 2 : 4096;
                        idx = realloc(idx, capidx * sizeof *idx);
                        if (idx == NULL)
                            msg_fatal("out of memory");
                    }
                    idx[nidx++] = ix;
                }
            }
            used += len + (nl ? 1 : 0);
            if (stop)
                break;
        }
        if (used > 0) {
            memmove(in.p, in.p + used, in.len - used);
            in.len -= used;
            used = 0;
        }
        /* Durable, then acknowledged. */
        buf_reset(&err);
        rc = ledger_commit(l, &err);
        if (rc < 0) {
            msg_warn("書き込みに失敗しました（表示していない番号は未確定）/ commit failed "
                     "(indices not printed are not acknowledged): %s",
                     buf_cstr(&err));
            status = status_of(rc) == EXIT_DATAERR ? EXIT_IOERR : status_of(rc);
            nidx = 0;
            stop = 1;
            break;
        }
        for (size_t i = 0; i < nidx; i++) {
            char num[24];
            size_t k = sizeof num;
            uint64_t v;
            /* other writers may have committed first: the final index */
            if (ledger_committed_index(l, idx[i], &v) < 0)
                msg_fatal("internal: entry %" PRIu64 " committed without an index", idx[i]);
            num[--k] = '\n';
            do {
                num[--k] = (char)('0' + v % 10);
                v /= 10;
            } while (v);
            fwrite(num + k, 1, sizeof num - k, stdout);
        }
        nidx = 0;
        if (finish_stdout() != EXIT_OK) {
            status = EXIT_IOERR;
            stop = 1;
        }
    }
    buf_reset(&err);
    rc = ledger_close(l, &err);
    if (rc < 0) {
        msg_warn("台帳を閉じられません / cannot close the ledger: %s", buf_cstr(&err));
        if (status == EXIT_OK)
            status = status_of(rc);
    }
    free(idx);
    buf_free(&in);
    buf_free(&err);
    policy_free(pol);
    free(o.heads);
    return status;
}

/* ---- reading ---------------------------------------------------------------------- */

static int put_line(void *arg, const uint8_t *line, size_t n)
{
    (void)arg;
    fwrite(line, 1, n, stdout);
    putchar('\n');
    return ferror(stdout) ? 1 : 0;
}

static int do_read(int argc, char **argv)
{
    const char *cmd = argv[0];
    struct opts o;
    int rc = parse_opts(argc, argv, help_read, &o);
    if (rc >= 0) {
        free(o.heads);
        return rc;
    }
    int want = strcmp(cmd, "get") == 0 ? 1 : 0;
    uint64_t index = 0;
    if (o.n_args != want || (want && parse_u64_arg(o.args[0], &index) < 0)) {
        fprintf(stderr, "使い方 / usage: sekisho ledger %s%s (see --help)\n", cmd,
                want ? " INDEX" : "");
        free(o.heads);
        return EXIT_USAGE;
    }
    int status = EXIT_OK;
    ledger *l = open_ledger(&o, 0, NULL, &status);
    if (l == NULL) {
        free(o.heads);
        return status;
    }
    buf err, out;
    buf_init(&err, 8192);
    buf_init(&out, (size_t)LEDGER_MAX_ENTRY * 2);
    rc = 0;
    if (strcmp(cmd, "cat") == 0) {
        rc = ledger_foreach(l, put_line, NULL, &err);
    } else {
        uint64_t n = ledger_size(l);
        uint64_t from = want ? index : (n > (uint64_t)o.count ? n - (uint64_t)o.count : 0);
        uint64_t to = want ? index + 1 : n;
        for (uint64_t i = from; i < to && rc >= 0; i++) {
            buf_reset(&out);
            rc = ledger_get(l, i, &out, &err);
            if (rc == -ENOENT && !want) {
                rc = 0; /* tail over a removed segment: skip */
                continue;
            }
            if (rc == 0)
                put_line(NULL, out.p, out.len);
        }
        if (rc > 0)
            rc = 0;
    }
    if (rc < 0) {
        msg_warn("%s", buf_cstr(&err));
        status = rc == -ENOENT ? EXIT_NOINPUT : EXIT_IOERR;
    } else {
        status = finish_stdout();
    }
    buf_free(&out);
    buf_free(&err);
    ledger_close(l, NULL);
    free(o.heads);
    return status;
}

static void put_head_json(const ledger_sth *s)
{
    printf("{\"tree_size\":%" PRIu64 ",\"root_hash\":\"", s->tree_size);
    put_hex(s->root, LEDGER_HASH_LEN);
    printf("\",\"timestamp\":%" PRId64 ",\"public_key\":\"", s->timestamp_ms);
    put_hex(s->public_key, LEDGER_PUBKEY_LEN);
    fputs("\",\"signature\":\"", stdout);
    put_hex(s->signature, LEDGER_SIG_LEN);
    fputs("\"}\n", stdout);
}

static int do_head(int argc, char **argv)
{
    const char *cmd = argv[0];
    struct opts o;
    int rc =
        parse_no_args(argc, argv, help_head, cmd, "引数は不要です / no arguments expected", &o);
    if (rc >= 0)
        return rc;
    int status = EXIT_OK;
    policy *pol = NULL;
    ledger *l = open_ledger(&o, 0, &pol, &status);
    if (l == NULL) {
        free(o.heads);
        return status;
    }
    ledger_sth s;
    ledger_head(l, &s);
    if (strcmp(cmd, "export-head") == 0) {
        uint8_t root[LEDGER_HASH_LEN];
        buf err;
        buf_init(&err, 8192);
        rc = ledger_root(l, s.tree_size, root, &err);
        if (rc < 0 || memcmp(root, s.root, LEDGER_HASH_LEN) != 0) {
            msg_warn("保存された木が署名付きヘッドと一致しません / the stored tree does not match "
                     "the signed head%s%s (run: sekisho ledger verify)",
                     rc < 0 ? ": " : "", buf_cstr(&err));
            buf_free(&err);
            ledger_close(l, NULL);
            policy_free(pol);
            free(o.heads);
            return rc < 0 ? EXIT_IOERR : EXIT_DATAERR;
        }
        buf_free(&err);
        char msg[256], t[64];
        ledger_sth_message(&s, msg, sizeof msg);
        time_t sec = (time_t)(s.timestamp_ms / 1000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("# sekisho 台帳の署名付きツリーヘッド / signed tree head of a sekisho ledger\n"
               "# 台帳 / ledger: %s\n"
               "# 記録数 / tree_size: %" PRIu64 "   署名時刻 / signed at: %s\n"
               "# 照合 / check: sekisho ledger verify --public-key KEY --head THIS_FILE\n"
               "# 署名の対象 / signed message: ",
               o.dir ? o.dir : pol->ledger.dir, s.tree_size, t);
        for (const char *p = msg; *p; p++)
            if (*p == '\n')
                fputs("\\n", stdout);
            else
                putchar(*p);
        putchar('\n');
    }
    put_head_json(&s);
    status = finish_stdout();
    ledger_close(l, NULL);
    policy_free(pol);
    free(o.heads);
    return status;
}

static void put_path(uint8_t path[LEDGER_MAX_PROOF][LEDGER_HASH_LEN], size_t n)
{
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        printf("%s\"", i ? "," : "");
        put_hex(path[i], LEDGER_HASH_LEN);
        putchar('"');
    }
    putchar(']');
}

static int do_prove(int argc, char **argv)
{
    const char *cmd = argv[0];
    int incl = strcmp(cmd, "prove-inclusion") == 0;
    struct opts o;
    int rc = parse_opts(argc, argv, help_prove, &o);
    if (rc >= 0) {
        free(o.heads);
        return rc;
    }
    uint64_t a = 0, b = 0;
    int ok = incl ? (o.n_args == 1 || o.n_args == 2) : o.n_args == 2;
    if (ok && o.n_args >= 1)
        ok = parse_u64_arg(o.args[0], &a) == 0;
    if (ok && o.n_args == 2)
        ok = parse_u64_arg(o.args[1], &b) == 0;
    if (!ok) {
        fprintf(stderr, "使い方 / usage: sekisho ledger %s (see --help)\n",
                incl ? "prove-inclusion INDEX [TREE_SIZE]" : "prove-consistency OLD NEW");
        free(o.heads);
        return EXIT_USAGE;
    }
    int status = EXIT_OK;
    ledger *l = open_ledger(&o, 0, NULL, &status);
    if (l == NULL) {
        free(o.heads);
        return status;
    }
    if (incl && o.n_args == 1) {
        ledger_sth s;
        ledger_head(l, &s);
        b = s.tree_size;
    }
    uint8_t h1[LEDGER_HASH_LEN], h2[LEDGER_HASH_LEN], path[LEDGER_MAX_PROOF][LEDGER_HASH_LEN];
    size_t np = 0;
    buf err;
    buf_init(&err, 8192);
    rc = incl ? ledger_prove_inclusion(l, a, b, h1, h2, path, &np, &err)
              : ledger_prove_consistency(l, a, b, h1, h2, path, &np, &err);
    if (rc < 0) {
        msg_warn("%s", buf_cstr(&err));
        status = rc == -ERANGE ? EXIT_USAGE : EXIT_IOERR;
    } else {
        if (incl) {
            printf("{\"leaf_index\":%" PRIu64 ",\"tree_size\":%" PRIu64 ",\"leaf_hash\":\"", a, b);
            put_hex(h1, LEDGER_HASH_LEN);
            fputs("\",\"root_hash\":\"", stdout);
            put_hex(h2, LEDGER_HASH_LEN);
            fputs("\",\"audit_path\":", stdout);
        } else {
            printf("{\"first\":%" PRIu64 ",\"second\":%" PRIu64 ",\"first_root\":\"", a, b);
            put_hex(h1, LEDGER_HASH_LEN);
            fputs("\",\"second_root\":\"", stdout);
            put_hex(h2, LEDGER_HASH_LEN);
            fputs("\",\"consistency_path\":", stdout);
        }
        put_path(path, np);
        fputs("}\n", stdout);
        status = finish_stdout();
    }
    buf_free(&err);
    ledger_close(l, NULL);
    free(o.heads);
    return status;
}

static int do_verify(int argc, char **argv)
{
    struct opts o;
    int rc = parse_no_args(argc, argv, help_verify, "verify",
                           "引数は不要です / no arguments expected", &o);
    if (rc >= 0)
        return rc;
    policy *pol = cli_load_policy(o.policy);
    ledger_verify_opts vo = {0};
    vo.dir = o.dir ? o.dir : pol->ledger.dir;
    vo.public_key_hex = o.public_key;
    vo.head_files = o.heads;
    vo.n_head_files = o.n_heads;
    vo.max_reports = (size_t)o.max_reports;
    ledger_verify_result r;
    buf err;
    buf_init(&err, 8192);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = ledger_verify(&vo, stdout, &r, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int status;
    if (rc < 0) {
        msg_warn("検証できません / cannot verify: %s", buf_cstr(&err));
        status = strstr(buf_cstr(&err), "no ledger at") ? EXIT_NOINPUT
                 : rc == -EINVAL                        ? EXIT_USAGE
                                                        : EXIT_IOERR;
    } else {
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("%s: %" PRIu64 " entries (%" PRIu64 " bytes) in %" PRIu64 " segments, %" PRIu64
               " signed heads, %" PRIu64 " removed by retention, %" PRIu64
               " not yet signed; %.3f s\n",
               rc == 0 ? "検証結果: 異常なし / result: intact"
                       : "検証結果: 異常あり / result: CHANGES FOUND",
               r.entries, r.bytes, r.segments, r.heads, r.removed, r.unsigned_tail, secs);
        if (rc != 0)
            printf("問題の数 / problems: %" PRIu64 "\n", r.problems);
        status = finish_stdout();
        if (status == EXIT_OK && rc != 0)
            status = EXIT_DATAERR;
    }
    buf_free(&err);
    policy_free(pol);
    free(o.heads);
    return status;
}

static int do_prune(int argc, char **argv)
{
    struct opts o;
    int rc = parse_no_args(argc, argv, help_prune, "prune",
                           "引数は不要です / no arguments expected", &o);
    if (rc >= 0)
        return rc;
    int status = EXIT_OK;
    policy *pol = NULL;
    ledger *l = open_ledger(&o, o.del, &pol, &status);
    if (l == NULL) {
        free(o.heads);
        return status;
    }
    uint64_t days = o.days >= 0 ? (uint64_t)o.days : pol->ledger.retention_days;
    if (days == 0 && o.days < 0) {
        fprintf(stderr, "保存期間が 0（無期限）なので何も削除しません / retention_days is 0 "
                        "(keep forever): nothing expires\n");
        ledger_close(l, NULL);
        policy_free(pol);
        free(o.heads);
        return EXIT_OK;
    }
    buf err;
    buf_init(&err, 8192);
    uint64_t n = 0;
    rc = ledger_prune(l, days, o.del, stdout, &n, &err);
    if (rc < 0) {
        msg_warn("削除に失敗 / prune failed: %s", buf_cstr(&err));
        status = status_of(rc);
    } else {
        fprintf(stderr, "%" PRIu64 " 区間 / segments %s\n", n,
                o.del ? "削除しました / removed"
                      : "期限切れ（--delete で削除）/ expired "
                        "(remove with --delete)");
        status = finish_stdout();
    }
    buf_reset(&err);
    if (ledger_close(l, &err) < 0 && status == EXIT_OK) {
        msg_warn("%s", buf_cstr(&err));
        status = EXIT_IOERR;
    }
    buf_free(&err);
    policy_free(pol);
    free(o.heads);
    return status;
}

/* ---- dispatch --------------------------------------------------------------------- */

static int dispatch(int argc, char **argv)
{
    const char *sub = argv[0];
    if (strcmp(sub, "init") == 0)
        return do_init(argc, argv);
    if (strcmp(sub, "append") == 0)
        return do_append(argc, argv);
    if (strcmp(sub, "cat") == 0 || strcmp(sub, "get") == 0 || strcmp(sub, "tail") == 0)
        return do_read(argc, argv);
    if (strcmp(sub, "head") == 0 || strcmp(sub, "export-head") == 0)
        return do_head(argc, argv);
    if (strcmp(sub, "prove-inclusion") == 0 || strcmp(sub, "prove-consistency") == 0)
        return do_prove(argc, argv);
    if (strcmp(sub, "verify") == 0)
        return do_verify(argc, argv);
    if (strcmp(sub, "prune") == 0)
        return do_prune(argc, argv);
    fprintf(stderr,
            "sekisho ledger: そのサブコマンドはありません / no such command: %s "
            "(see: sekisho ledger --help)\n",
            sub);
    return EXIT_USAGE;
}

int cmd_ledger(int argc, char **argv)
{
    return cli_group(argc, argv, help_main, dispatch);
}
