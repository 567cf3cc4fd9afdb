/*
 * policy_test - defaults, the example files, every class of error with its
 * "file:line: message", collection of several errors, SEKISHO_STATE_DIR.
 * Small YAML files are written to a temporary directory.
 */
#include "policy.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static const char *write_file(const char *name, const char *content, size_t len)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fwrite(content, 1, len, f);
    fclose(f);
    return path;
}

/* Loads text; returns the policy (or NULL) and leaves the messages in errs. */
static policy *load_text(const char *text, buf *errs)
{
    const char *path = write_file("t.yaml", text, strlen(text));
    buf_reset(errs);
    return policy_load(path, errs);
}

static void test_defaults(void)
{
    unsetenv("SEKISHO_STATE_DIR");
    policy *p = policy_default();
    CHECK_STR(p->state_dir, "/var/lib/sekisho");
    CHECK_STR(p->quarantine_dir, "/var/lib/sekisho/quarantine");
    CHECK_STR(p->mail.subject_tag, "[外部]");
    CHECK_INT(p->mail.prefer_html, 0);
    CHECK_INT(p->mail.defang_links, 1);
    CHECK_INT(p->mail.english, 0);
    CHECK_INT(p->mail.retention_days, 90);
    CHECK_INT(p->mail.limits.max_message_bytes, 50 << 20);
    CHECK_INT(p->mail.limits.max_header_bytes, 1 << 20);
    CHECK_INT(p->mail.limits.max_headers, 10000);
    CHECK_INT(p->mail.limits.max_depth, 20);
    CHECK_INT(p->mail.limits.max_parts, 1000);
    CHECK_INT(p->mail.limits.max_decoded_bytes, 256 << 20);
    CHECK_INT(p->mail.limits.max_text_bytes, 16 << 20);
    CHECK_INT(p->mail.limits.time_limit_ms, 30000);
    CHECK_INT(p->n_zones, 0);
    CHECK_INT(p->n_roles, 0);
    CHECK_INT(p->n_internal_domains, 0);
    CHECK(!policy_domain_is_internal(p, "town.tadami.example"));
    CHECK_STR(p->ledger.dir, "/var/lib/sekisho/ledger");
    CHECK_STR(p->ledger.key_file, "/var/lib/sekisho/ledger-signing.key");
    CHECK_INT(p->ledger.checkpoint_entries, 100000);
    CHECK_INT(p->ledger.checkpoint_interval_ms, 10000);
    CHECK_INT(p->ledger.segment_daily, 0);
    CHECK_INT(p->ledger.retention_days, 0);
    policy_free(p);
    policy_free(NULL);

    setenv("SEKISHO_STATE_DIR", "/tmp/sk-state", 1);
    p = policy_default();
    CHECK_STR(p->state_dir, "/tmp/sk-state");
    CHECK_STR(p->quarantine_dir, "/tmp/sk-state/quarantine");
    policy_free(p);
    setenv("SEKISHO_STATE_DIR", "", 1);
    p = policy_default();
    CHECK_STR(p->state_dir, "/var/lib/sekisho");
    policy_free(p);

    /* The env var also reaches a loaded file that does not set state_dir,
     * and quarantine_dir follows; a file's state_dir wins over it. */
    buf e;
    buf_init(&e, 1 << 20);
    setenv("SEKISHO_STATE_DIR", "/tmp/sk-env", 1);
    p = load_text("mail:\n  subject_tag: \"\"\n", &e);
    CHECK(p != NULL);
    if (p) {
        CHECK_STR(p->state_dir, "/tmp/sk-env");
        CHECK_STR(p->quarantine_dir, "/tmp/sk-env/quarantine");
        CHECK_STR(p->mail.subject_tag, "");
    }
    policy_free(p);
    p = load_text("state_dir: /srv/sekisho\n", &e);
    CHECK(p != NULL);
    if (p) {
        CHECK_STR(p->state_dir, "/srv/sekisho");
        CHECK_STR(p->quarantine_dir, "/srv/sekisho/quarantine");
    }
    policy_free(p);
    p = load_text("state_dir: /srv/a\nmail:\n  quarantine:\n    dir: /srv/q\n", &e);
    CHECK(p != NULL);
    if (p)
        CHECK_STR(p->quarantine_dir, "/srv/q");
    policy_free(p);
    unsetenv("SEKISHO_STATE_DIR");
    buf_free(&e);
}

static void test_examples(void)
{
    const char *src = getenv("SEKISHO_SRCDIR");
    char path[1024];
    buf e;
    buf_init(&e, 1 << 20);

    snprintf(path, sizeof path, "%s/etc/policy.example.yaml", src ? src : ".");
    policy *p = policy_load(path, &e);
    CHECK(p != NULL);
    CHECK_STR(buf_cstr(&e), "");
    if (p) {
        CHECK_STR(p->source, path);
        CHECK_STR(p->organization, "只見町");
        CHECK_INT(p->n_zones, 3);
        CHECK_STR(p->zones[0].name, "マイナンバー利用事務系");
        CHECK_STR(p->zones[0].kind, "mynumber");
        CHECK_STR(p->zones[1].kind, "lgwan");
        CHECK_INT(p->zones[1].n_networks, 2);
        CHECK_STR(p->zones[2].networks[1], "2001:db8:30::/48");
        CHECK_INT(p->n_roles, 3);
        CHECK_STR(p->roles[1].name, "総括情報管理者");
        CHECK_INT(p->roles[2].n_members, 3);
        /* the example's records: are the built-in types, field for field */
        policy *d = policy_default();
        CHECK_INT(p->n_record_types, d->n_record_types);
        for (size_t i = 0; i < d->n_record_types && i < p->n_record_types; i++) {
            const policy_record_type *a = &d->record_types[i], *b = &p->record_types[i];
            CHECK_STR(b->type, a->type);
            CHECK_INT(b->n_required, a->n_required);
            CHECK_INT(b->n_optional, a->n_optional);
            for (size_t k = 0; k < a->n_required && k < b->n_required; k++)
                CHECK_STR(b->required[k], a->required[k]);
            for (size_t k = 0; k < a->n_optional && k < b->n_optional; k++)
                CHECK_STR(b->optional[k], a->optional[k]);
        }
        CHECK(policy_record_type_find(d, "入退室") != NULL);
        CHECK_INT(policy_record_type_find(d, "入退室")->n_required, 5);
        CHECK(policy_record_type_find(d, "出張") == NULL);
        CHECK_STR(d->intake.tcp, "127.0.0.1:601");
        CHECK_INT(d->intake.max_message_bytes, 8192);
        CHECK_STR(p->intake.udp, "127.0.0.1:514");
        CHECK_INT(p->intake.max_message_bytes, 8192);
        CHECK_INT(p->intake.rate, 20000);
        policy_free(d);
        CHECK_INT(p->n_confidentiality_levels, 3);
        CHECK_STR(p->confidentiality_levels[0], "機密性3");
        CHECK_INT(p->n_importance_levels, 3);
        CHECK_STR(p->importance_levels[1], "重要性分類Ⅱ");
        CHECK_INT(p->n_integrity_levels, 2);
        CHECK_INT(p->n_availability_levels, 2);
        CHECK_STR(p->mail.subject_tag, "[外部]");
        CHECK_INT(p->mail.limits.max_message_bytes, 50 << 20);
        CHECK_INT(p->mail.limits.time_limit_ms, 30000);
        CHECK_INT(p->ledger.retention_days, 1825);
        CHECK_INT(p->ledger.segment_daily, 0);
        CHECK(policy_domain_is_internal(p, "town.tadami.example"));
        CHECK(policy_domain_is_internal(p, "Mail.Town.Tadami.Example"));
        CHECK(policy_domain_is_internal(p, "town.tadami.example."));
        CHECK(!policy_domain_is_internal(p, "eviltown.tadami.example"));
        CHECK(!policy_domain_is_internal(p, "tadami.example"));
        CHECK(!policy_domain_is_internal(p, "town.tadami.example.attacker.example"));
        CHECK(!policy_domain_is_internal(p, ""));
        CHECK(!policy_domain_is_internal(p, NULL));
        CHECK_STR(p->gateway.listen, "inet:127.0.0.1:10025");
        CHECK_INT(p->gateway.n_daemon_zones, 1);
        CHECK_INT(policy_mail_from_inside(p, "10.20.0.5", NULL, NULL), 1);
        CHECK_INT(policy_mail_from_inside(p, "10.20.0.5", "internet", NULL), 0);
        CHECK_INT(policy_mail_from_inside(p, "10.30.0.5", NULL, NULL), 0);
    }
    policy_free(p);

    buf_reset(&e);
    snprintf(path, sizeof path, "%s/etc/policy.suido.yaml", src ? src : ".");
    p = policy_load(path, &e);
    CHECK(p != NULL);
    CHECK_STR(buf_cstr(&e), "");
    if (p) {
        CHECK_INT(p->n_zones, 2);
        CHECK_STR(p->zones[0].name, "水道利用者情報利用事務系");
        CHECK_STR(p->zones[0].kind, "other");
        CHECK_STR(p->zones[1].kind, "internet");
        CHECK_INT(p->mail.retention_days, 180);
        CHECK_INT(p->mail.limits.max_message_bytes, 20 << 20);
        CHECK_INT(p->mail.limits.time_limit_ms, 60000);
        CHECK_INT(p->mail.limits.max_parts, 1000); /* default kept */
        CHECK_INT(p->mail.defang_links, 1);
    }
    policy_free(p);
    buf_free(&e);
}

/* Values that load: sizes, durations, booleans, enums, lists. */
static void test_values(void)
{
    static const struct {
        const char *yaml;
        size_t off; /* offset of a uint64_t in struct policy */
        unsigned long long want;
    } cases[] = {
        {"mail: {limits: {max_message_size: 1048576}}",
         offsetof(policy, mail.limits.max_message_bytes), 1048576},
        {"mail: {limits: {max_message_size: 50MB}}",
         offsetof(policy, mail.limits.max_message_bytes), 50ull << 20},
        {"mail: {limits: {max_message_size: 50MiB}}",
         offsetof(policy, mail.limits.max_message_bytes), 50ull << 20},
        {"mail: {limits: {max_message_size: 512KB}}",
         offsetof(policy, mail.limits.max_message_bytes), 512ull << 10},
        {"mail: {limits: {max_message_size: 1GB}}", offsetof(policy, mail.limits.max_message_bytes),
         1ull << 30},
        {"mail: {limits: {max_message_size: \"2 MB\"}}",
         offsetof(policy, mail.limits.max_message_bytes), 2ull << 20},
        {"mail: {limits: {max_decoded_size: 16GiB}}",
         offsetof(policy, mail.limits.max_decoded_bytes), 16ull << 30},
        {"mail: {limits: {time_limit: 500ms}}", offsetof(policy, mail.limits.time_limit_ms), 500},
        {"mail: {limits: {time_limit: 30s}}", offsetof(policy, mail.limits.time_limit_ms), 30000},
        {"mail: {limits: {time_limit: 2m}}", offsetof(policy, mail.limits.time_limit_ms), 120000},
        {"mail: {limits: {time_limit: 1h}}", offsetof(policy, mail.limits.time_limit_ms), 3600000},
        {"mail: {limits: {time_limit: 1500}}", offsetof(policy, mail.limits.time_limit_ms), 1500},
        {"mail: {limits: {max_depth: 1}}", offsetof(policy, mail.limits.max_depth), 1},
        {"mail: {limits: {max_depth: 100}}", offsetof(policy, mail.limits.max_depth), 100},
        {"mail: {quarantine: {retention_days: 3650}}", offsetof(policy, mail.retention_days), 3650},
    };
    buf e;
    buf_init(&e, 1 << 20);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        policy *p = load_text(cases[i].yaml, &e);
        CHECK(p != NULL);
        if (p == NULL) {
            fprintf(stderr, "  case %zu: %s\n  %s", i, cases[i].yaml, buf_cstr(&e));
            continue;
        }
        CHECK_INT(*(uint64_t *)((char *)p + cases[i].off), cases[i].want);
        CHECK(p->mail.limits.max_header_bytes <= p->mail.limits.max_message_bytes);
        policy_free(p);
    }

    static const struct {
        const char *v;
        int want;
    } bools[] = {{"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0}, {"True", 1}, {"NO", 0}};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        char y[128];
        snprintf(y, sizeof y, "mail:\n  defang_links: %s\n", bools[i].v);
        policy *p = load_text(y, &e);
        CHECK(p != NULL);
        if (p)
            CHECK_INT(p->mail.defang_links, bools[i].want);
        policy_free(p);
    }

    policy *p = load_text("mail:\n  prefer: html\n  language: en\n  subject_tag: '【外部メール】'\n"
                          "organization:\n  name: 柳井地域広域水道企業団\n"
                          "  internal_domains: [Suido.Example.JP, xn--wgv71a.example]\n",
                          &e);
    CHECK(p != NULL);
    if (p) {
        CHECK_INT(p->mail.prefer_html, 1);
        CHECK_INT(p->mail.english, 1);
        CHECK_STR(p->mail.subject_tag, "【外部メール】");
        CHECK_STR(p->organization, "柳井地域広域水道企業団");
        CHECK_STR(p->internal_domains[0], "suido.example.jp");
        CHECK(policy_domain_is_internal(p, "a.b.SUIDO.example.jp"));
    }
    policy_free(p);

    /* Empty file, comments only, and an empty document: all defaults. */
    const char *empties[] = {"", "# nothing\n", "---\n", "---\n...\n", "mail:\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        p = load_text(empties[i], &e);
        CHECK(p != NULL);
        if (p)
            CHECK_INT(p->mail.limits.max_parts, 1000);
        policy_free(p);
    }
    /* Two zones only, IPv6, and a zone without networks. */
    p = load_text("zones:\n"
                  "  - {name: 水道利用者情報利用事務系, kind: other, networks: [192.168.10.0/24]}\n"
                  "  - {name: インターネット接続系, kind: internet, networks: ['2001:db8::/32', "
                  "203.0.113.0/24]}\n"
                  "  - {name: 予備, kind: other}\n",
                  &e);
    CHECK(p != NULL);
    if (p) {
        CHECK_INT(p->n_zones, 3);
        CHECK_INT(p->zones[2].n_networks, 0);
    }
    if (p == NULL)
        fprintf(stderr, "%s", buf_cstr(&e));
    policy_free(p);
    buf_free(&e);
}

/* 1 if some line of text starts with prefix and contains msg after it. */
static int has_line(const char *text, const char *prefix, const char *msg)
{
    size_t pl = strlen(prefix);
    for (const char *l = text; *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        if (len >= pl && memcmp(l, prefix, pl) == 0) {
            char line[2048];
            size_t n = len < sizeof line - 1 ? len : sizeof line - 1;
            memcpy(line, l, n);
            line[n] = 0;
            if (strstr(line + pl, msg))
                return 1;
        }
        if (nl == NULL)
            break;
        l = nl + 1;
    }
    return 0;
}

/* Each error class: the file, the line and the message. */
static void test_errors(void)
{
    static const struct {
        const char *yaml;
        int line;
        const char *msg;
    } cases[] = {
        /* YAML syntax */
        {"mail:\n  prefer: text\n   language: ja\n", 3,
         "YAML syntax error: mapping values are not allowed"},
        {"zones: [a, b\n", 2, "YAML syntax error: did not find expected"},
        {"organization:\n  name: \"unterminated\n", 3,
         "YAML syntax error: found unexpected end of stream"},
        {"a: 1\n---\nb: 2\n", 2, "one YAML document"},
        {"mail:\n\tprefer: text\n", 2, "YAML syntax error"},
        /* unknown keys, with the valid ones */
        {"mail:\n  limts:\n    max_depth: 3\n", 2,
         "mail: unknown key 'limts'; valid keys in mail: subject_tag, prefer, defang_links, "
         "language, quarantine, limits"},
        {"organisation:\n  name: x\n", 1,
         "unknown key 'organisation'; valid keys at the top level: organization, state_dir, zones"},
        {"zones:\n  - name: a\n    kind: lgwan\n    netwroks: []\n", 4,
         "zones[0]: unknown key 'netwroks'"},
        {"mail:\n  limits:\n    max_size: 1\n", 3,
         "mail.limits: unknown key 'max_size'; valid keys in mail.limits: max_message_size"},
        /* later sections */
        {"ledger:\n  dir: x\n", 2, "ledger.dir: 'x' must be an absolute path"},
        {"ledger:\n  segment: weekly\n", 2,
         "ledger.segment: expected monthly or daily, got 'weekly'"},
        {"ledger:\n  checkpoint_entries: 0\n", 2,
         "ledger.checkpoint_entries: '0' is out of range (1 to 100000000)"},
        {"ledger:\n  checkpoint_interval: 10ms\n", 2,
         "ledger.checkpoint_interval: 10ms is out of range (100ms to 1440m)"},
        {"ledger:\n  retention_days: 36501\n", 2,
         "ledger.retention_days: '36501' is out of range (0 to 36500)"},
        {"ledger:\n  signing_key: /k\n", 2,
         "ledger: unknown key 'signing_key'; valid keys in ledger: dir, key_file, "
         "checkpoint_entries, checkpoint_interval, segment, retention_days"},
        {"audit: {}\n", 1, "audit: this section is not supported by this version of sekisho yet"},
        {"fim: []\n", 1, "fim: this section is not supported"},
        {"records: x\n", 1, "records: expected a sequence of mappings"},
        {"intake:\n  max_message_size: 1KB\n", 2, "intake.max_message_size: "},
        {"intake:\n  unix: rel/path\n", 2, "intake.unix: 'rel/path' must be an absolute path"},
        {"records:\n  - required: [a]\n", 2, "records[0]: missing required key 'type'"},
        {"records:\n  - type: t\n    required: [a, a]\n", 3,
         "records[0].required[1]: 'a' is listed twice"},
        {"records:\n  - type: t\n    required: [a]\n    optional: [a]\n", 2,
         "records[0]: field 'a' is listed twice"},
        {"outbound:\n", 1, "outbound: this section is not supported"},
        /* wrong types */
        {"mail: [1, 2]\n", 1, "mail: expected a mapping"},
        {"- a\n- b\n", 1, "expected a mapping of sections"},
        {"zones:\n  name: x\n", 2, "zones: expected a sequence of mappings"},
        {"zones:\n  - just-a-name\n", 2, "zones[0]: expected a mapping"},
        {"organization:\n  internal_domains: town.example\n", 2,
         "organization.internal_domains: expected a sequence"},
        {"organization:\n  name: [a]\n", 2, "organization.name: expected a string, got a sequence"},
        {"organization:\n  name:\n", 2, "organization.name: no value given"},
        {"mail:\n  limits:\n    max_depth: ten\n", 3,
         "mail.limits.max_depth: expected an integer, got 'ten'"},
        {"mail:\n  limits:\n    max_depth: \"10\"\n", 3,
         "mail.limits.max_depth: expected an integer, got '10' (quoted)"},
        {"mail:\n  limits:\n    max_depth: -1\n", 3,
         "mail.limits.max_depth: expected an integer, got '-1'"},
        {"mail:\n  limits:\n    max_depth: {a: 1}\n", 3,
         "mail.limits.max_depth: expected an integer, got a mapping"},
        {"mail:\n  limits:\n    max_message_size: 50XB\n", 3,
         "mail.limits.max_message_size: expected a size (bytes, or e.g. 512KB, 50MB, 1GB), got "
         "'50XB'"},
        {"mail:\n  limits:\n    max_message_size: 1.5MB\n", 3, "expected a size"},
        {"mail:\n  limits:\n    time_limit: 30 sec\n", 3,
         "mail.limits.time_limit: expected a duration (milliseconds, or e.g. 500ms, 30s, 2m), got "
         "'30 sec'"},
        {"mail:\n  defang_links: on\n", 2,
         "mail.defang_links: expected a boolean (true, false, yes or no, unquoted), got 'on'"},
        {"mail:\n  defang_links: 1\n", 2, "mail.defang_links: expected a boolean"},
        {"mail:\n  defang_links: \"true\"\n", 2, "mail.defang_links: expected a boolean"},
        {"mail:\n  prefer: rtf\n", 2, "mail.prefer: expected text or html, got 'rtf'"},
        {"mail:\n  language: fr\n", 2, "mail.language: expected ja or en, got 'fr'"},
        {"zones:\n  - name: a\n    kind: dmz\n", 3,
         "zones[0].kind: expected mynumber, lgwan, internet or other, got 'dmz'"},
        {"zones:\n  - name: a\n", 2, "zones[0]: missing required key 'kind'"},
        {"zones:\n  - kind: lgwan\n", 2, "zones[0]: missing required key 'name'"},
        {"roles:\n  - members: [a]\n", 2, "roles[0]: missing required key 'name'"},
        {"[a]: 1\n", 1, "keys must be plain words, got a sequence"},
        /* out of range */
        {"mail:\n  limits:\n    max_depth: 0\n", 3,
         "mail.limits.max_depth: '0' is out of range (1 to 100)"},
        {"mail:\n  limits:\n    max_depth: 101\n", 3,
         "mail.limits.max_depth: '101' is out of range (1 to 100)"},
        {"mail:\n  limits:\n    max_depth: 99999999999999999999999\n", 3,
         "out of range (1 to 100)"},
        {"mail:\n  limits:\n    max_message_size: 100\n", 3,
         "mail.limits.max_message_size: 100 bytes is out of range (1 KiB to 4 GiB)"},
        {"mail:\n  limits:\n    max_message_size: 5GB\n", 3,
         "mail.limits.max_message_size: 5 GiB is out of range (1 KiB to 4 GiB)"},
        {"mail:\n  limits:\n    max_message_size: 99999999999GB\n", 3,
         "is out of range (1 KiB to 4 GiB)"},
        {"mail:\n  limits:\n    time_limit: 50ms\n", 3,
         "mail.limits.time_limit: 50ms is out of range (100ms to 60m)"},
        {"mail:\n  limits:\n    time_limit: 2h\n", 3,
         "mail.limits.time_limit: 120m is out of range (100ms to 60m)"},
        {"mail:\n  quarantine:\n    retention_days: 0\n", 3,
         "mail.quarantine.retention_days: '0' is out of range (1 to 36500)"},
        {"mail:\n  subject_tag: \"[外部]\\n\"\n", 2,
         "mail.subject_tag: '[外部]\\x0a' contains a control character"},
        {"mail:\n  subject_tag: "
         "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n",
         2, "mail.subject_tag: too long (129 bytes, at most 128)"},
        {"state_dir: var/lib/sekisho\n", 1,
         "state_dir: 'var/lib/sekisho' must be an absolute path"},
        {"mail:\n  limits:\n    max_header_size: 2MB\n    max_message_size: 1MB\n", 3,
         "mail.limits.max_header_size: 2 MiB is larger than max_message_size (1 MiB)"},
        /* duplicates */
        {"mail:\n  prefer: text\n  prefer: html\n", 3,
         "mail.prefer: duplicate key (first given at line 2)"},
        {"mail: {}\nmail: {}\n", 2, "mail: duplicate key (first given at line 1)"},
        {"zones:\n  - {name: LGWAN接続系, kind: lgwan}\n  - {name: LGWAN接続系, kind: internet}\n",
         3, "zones[1].name: zone name 'LGWAN接続系' is already used by zones[0]"},
        {"roles:\n  - name: 情報管理者\n  - name: 情報管理者\n", 3,
         "roles[1].name: role '情報管理者' is already defined by roles[0]"},
        {"organization:\n  internal_domains: [a.example, A.example]\n", 2,
         "organization.internal_domains[1]: 'A.example' is listed twice"},
        {"classification:\n  confidentiality: [機密性3, 機密性3]\n", 2,
         "classification.confidentiality[1]: '機密性3' is listed twice"},
        /* CIDR */
        {"zones:\n  - name: a\n    kind: lgwan\n    networks:\n      - 10.20.0.0\n", 5,
         "zones[0].networks[0]: '10.20.0.0' is not a network: write address/prefix"},
        {"zones:\n  - name: a\n    kind: lgwan\n    networks: [10.20.0.0/33]\n", 4,
         "'10.20.0.0/33' has a prefix length over 32"},
        {"zones:\n  - name: a\n    kind: lgwan\n    networks: [10.300.0.0/16]\n", 4,
         "'10.300.0.0/16' has an invalid IPv4 address"},
        {"zones:\n  - name: a\n    kind: lgwan\n    networks: [10.20.0.0/]\n", 4,
         "has an invalid prefix length"},
        {"zones:\n  - name: a\n    kind: lgwan\n    networks: [10.20.0.0/-1]\n", 4,
         "has an invalid prefix length"},
        {"zones:\n  - name: a\n    kind: lgwan\n    networks: [10.20.0.1/16]\n", 4,
         "'10.20.0.1/16' has host bits set"},
        {"zones:\n  - name: a\n    kind: lgwan\n    networks: ['2001:db8::/129']\n", 4,
         "has a prefix length over 128"},
        {"zones:\n  - name: a\n    kind: lgwan\n    networks: ['2001:db8:::/64']\n", 4,
         "has an invalid IPv6 address"},
        {"zones:\n  - name: a\n    kind: lgwan\n    networks: ['2001:db8::1/64']\n", 4,
         "has host bits set"},
        {"zones:\n  - {name: a, kind: lgwan, networks: [10.0.0.0/8]}\n  - {name: b, kind: "
         "internet, networks: [10.30.0.0/16]}\n",
         3, "zones[1].networks[0]: 10.30.0.0/16 overlaps 10.0.0.0/8 of zones[0] (line 2)"},
        /* domains */
        {"organization:\n  internal_domains: [只見町.jp]\n", 2,
         "'只見町.jp' is not a valid domain name: has non-ASCII characters"},
        {"organization:\n  internal_domains: [town..example]\n", 2,
         "is not a valid domain name: has an empty label"},
        {"organization:\n  internal_domains: [-town.example]\n", 2,
         "has a label starting with '-'"},
        {"organization:\n  internal_domains: [town-.example]\n", 2, "has a label ending in '-'"},
        {"organization:\n  internal_domains: [town.example.]\n", 2, "ends with a dot"},
        {"organization:\n  internal_domains: [user@town.example]\n", 2,
         "may hold only letters, digits"},
        {"organization:\n  internal_domains: [\"\"]\n", 2,
         "organization.internal_domains[0]: may not be empty"},
        /* aliases and anchors */
        {"organization: &o\n  name: x\nmail: *o\n", 1, "YAML anchors (&o) are not allowed"},
        {"organization: &o\n  name: x\nmail: *o\n", 3, "YAML aliases (*o) are not allowed"},
        {"a: &a [1]\nb: [*a, *a]\n", 1, "anchors (&a) are not allowed"},
        {"mail:\n  prefer: !!str text\n", 2, "YAML tags (tag:yaml.org,2002:str) are not allowed"},
        /* encoding */
        {"organization:\n  name: \x93\xda\x96\x7b\n", 2,
         "invalid UTF-8 byte 0x93 (the policy file must be UTF-8"},
        {"organization:\n  name: \xc0\xaf\n", 2, "invalid UTF-8 byte 0xc0"},
        {"organization:\n  name: \xed\xa0\x80\n", 2, "invalid UTF-8 byte 0xed"},
        {"organization:\n  name: a\x01\n", 2, "YAML error: control characters are not allowed"},
        /* nesting */
        {"a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n", 1,
         "nesting deeper than 32 levels"},
    };
    buf e;
    buf_init(&e, 1 << 20);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = write_file("e.yaml", cases[i].yaml, strlen(cases[i].yaml));
        buf_reset(&e);
        policy *p = policy_load(path, &e);
        CHECK(p == NULL);
        policy_free(p);
        char prefix[600];
        if (cases[i].line > 0)
            snprintf(prefix, sizeof prefix, "%s:%d: ", path, cases[i].line);
        else
            snprintf(prefix, sizeof prefix, "%s: ", path);
        int found = has_line(buf_cstr(&e), prefix, cases[i].msg);
        CHECK(found);
        /* One message is one line, ending in a newline. */
        CHECK(e.len > 0 && e.p[e.len - 1] == '\n');
        if (p != NULL || !found)
            fprintf(stderr, "  case %zu: want \"%s...%s\" in\n%s  for:\n%s\n", i, prefix,
                    cases[i].msg, buf_cstr(&e), cases[i].yaml);
    }
    buf_free(&e);
}

static void test_collects_all(void)
{
    buf e;
    buf_init(&e, 1 << 20);
    const char *y = "organization:\n"
                    "  name: 只見町\n"
                    "  internal_domains: [bad..example]\n" /* 3 */
                    "zones:\n"
                    "  - name: LGWAN接続系\n"
                    "    kind: lgwan\n"
                    "    networks: [10.20.0.0/33]\n" /* 7 */
                    "mail:\n"
                    "  prefer: rtf\n" /* 9 */
                    "  limits:\n"
                    "    max_depth: 0\n"           /* 11 */
                    "    colour: blue\n"           /* 12 */
                    "ledger: {segment: weekly}\n"; /* 13 */
    const char *path = write_file("multi.yaml", y, strlen(y));
    policy *p = policy_load(path, &e);
    CHECK(p == NULL);
    const char *s = buf_cstr(&e);
    int lines = 0;
    for (const char *q = s; *q; q++)
        lines += *q == '\n';
    CHECK_INT(lines, 6);
    static const int want_lines[] = {3, 7, 9, 11, 12, 13};
    for (size_t i = 0; i < 6; i++) {
        char want[600];
        snprintf(want, sizeof want, "%s:%d: ", path, want_lines[i]);
        CHECK_HAS(s, want);
    }
    /* Hostile: very many errors are capped. */
    buf_reset(&e);
    size_t n = 0;
    char *big = malloc(200000);
    n += (size_t)sprintf(big + n, "mail:\n");
    for (int i = 0; i < 2000; i++)
        n += (size_t)sprintf(big + n, "  bad%d: 1\n", i);
    path = write_file("many.yaml", big, n);
    free(big);
    p = policy_load(path, &e);
    CHECK(p == NULL);
    CHECK_HAS(buf_cstr(&e), "too many errors, stopped after 50");
    lines = 0;
    for (const char *q = buf_cstr(&e); *q; q++)
        lines += *q == '\n';
    CHECK_INT(lines, 51);

    /* Lists are bounded: 1000 entries load, 1001 do not. */
    big = malloc(200000);
    for (int lim = 1000; lim <= 1001; lim++) {
        n = (size_t)sprintf(big, "roles:\n  - name: 情報管理者\n    members:\n");
        for (int i = 0; i < lim; i++)
            n += (size_t)sprintf(big + n, "      - user%d@town.example\n", i);
        path = write_file("list.yaml", big, n);
        buf_reset(&e);
        p = policy_load(path, &e);
        if (lim == 1000) {
            CHECK(p != NULL);
            if (p)
                CHECK_INT(p->roles[0].n_members, 1000);
        } else {
            CHECK(p == NULL);
            char want[600];
            snprintf(want, sizeof want,
                     "%s:4: roles[0].members: too many entries (1001, at most 1000)", path);
            CHECK_HAS(buf_cstr(&e), want);
        }
        policy_free(p);
    }
    free(big);
    buf_free(&e);
}

static void test_files(void)
{
    buf e;
    buf_init(&e, 1 << 20);
    char path[512];
    snprintf(path, sizeof path, "%s/does-not-exist.yaml", tmpdir);
    policy *p = policy_load(path, &e);
    CHECK(p == NULL);
    char want[600];
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory\n", path);
    CHECK_STR(buf_cstr(&e), want);

    /* Over 1 MiB: refused before parsing. */
    size_t n = (1u << 20) + 10;
    char *big = malloc(n);
    memset(big, '#', n);
    big[n - 1] = '\n';
    const char *bp = write_file("big.yaml", big, n);
    free(big);
    buf_reset(&e);
    p = policy_load(bp, &e);
    CHECK(p == NULL);
    CHECK_HAS(buf_cstr(&e), "larger than 1048576 bytes (1 MiB)");

    /* A directory cannot be read. */
    buf_reset(&e);
    p = policy_load(tmpdir, &e);
    CHECK(p == NULL);
    CHECK_HAS(buf_cstr(&e), "cannot read: Is a directory");

    /* NULL errors buffer is allowed. */
    p = policy_load(path, NULL);
    CHECK(p == NULL);

    /* policy_load_mem: the name stands in for the path. */
    buf_reset(&e);
    static const uint8_t txt[] = "mail:\n  max_depth: 3\n";
    p = policy_load_mem("(stdin)", txt, sizeof txt - 1, &e);
    CHECK(p == NULL);
    CHECK_HAS(buf_cstr(&e), "(stdin):2: mail: unknown key 'max_depth'");
    static const uint8_t ok[] = "mail: {language: en}";
    p = policy_load_mem("mem", ok, sizeof ok - 1, NULL);
    CHECK(p != NULL);
    if (p) {
        CHECK_INT(p->mail.english, 1);
        CHECK_STR(p->source, "mem");
    }
    policy_free(p);
    buf_free(&e);
}

/* The ledger section: values, and paths that follow state_dir unless set. */
static void test_ledger(void)
{
    buf e;
    buf_init(&e, 1 << 20);
    unsetenv("SEKISHO_STATE_DIR");
    policy *p = load_text("state_dir: /srv/sk\n"
                          "ledger:\n"
                          "  checkpoint_entries: 5000\n"
                          "  checkpoint_interval: 2s\n"
                          "  segment: daily\n"
                          "  retention_days: 1825\n",
                          &e);
    CHECK(p != NULL);
    if (p) {
        CHECK_STR(p->ledger.dir, "/srv/sk/ledger");
        CHECK_STR(p->ledger.key_file, "/srv/sk/ledger-signing.key");
        CHECK_INT(p->ledger.checkpoint_entries, 5000);
        CHECK_INT(p->ledger.checkpoint_interval_ms, 2000);
        CHECK_INT(p->ledger.segment_daily, 1);
        CHECK_INT(p->ledger.retention_days, 1825);
        policy_free(p);
    }
    p = load_text("state_dir: /srv/sk\nledger:\n  dir: /data/ledger\n  key_file: /etc/k\n", &e);
    CHECK(p != NULL);
    if (p) {
        CHECK_STR(p->ledger.dir, "/data/ledger");
        CHECK_STR(p->ledger.key_file, "/etc/k");
        policy_free(p);
    }
    buf_free(&e);
}

/* gateway: the milter's section, the direction helpers, the socket form. */
static void test_gateway(void)
{
    buf e;
    buf_init(&e, 1 << 20);
    char conn[256];
    policy *p = policy_default();
    CHECK_STR(p->gateway.listen, "inet:127.0.0.1:10025");
    CHECK_INT(p->gateway.workers, 4);
    CHECK_INT(p->gateway.recycle_after, 1000);
    CHECK_INT(policy_gateway_milter_socket(p, conn, sizeof conn), 0);
    CHECK_STR(conn, "inet:10025@127.0.0.1");
    /* no zones: every connection is sanitized */
    CHECK_INT(policy_mail_from_inside(p, "10.20.1.1", "internet", NULL), 0);
    policy_free(p);

    static const char good[] = "zones:\n"
                               "  - {name: LGWAN接続系, kind: lgwan, networks: [10.20.0.0/16]}\n"
                               "  - {name: マイナンバー利用事務系, kind: mynumber,\n"
                               "     networks: [\"2001:db8:10::/48\"]}\n"
                               "  - {name: インターネット接続系, kind: internet,\n"
                               "     networks: [10.30.0.0/16]}\n"
                               "gateway:\n"
                               "  listen: inet6:[::1]:8891\n"
                               "  workers: 2\n"
                               "  recycle_after: 50\n"
                               "  daemon_zones:\n"
                               "    - {daemon: internet, zone: インターネット接続系}\n"
                               "    - {daemon: lgwan, zone: LGWAN接続系}\n";
    p = load_text(good, &e);
    CHECK(p != NULL);
    if (p == NULL) {
        fprintf(stderr, "%s", buf_cstr(&e));
        buf_free(&e);
        return;
    }
    CHECK_INT(p->gateway.workers, 2);
    CHECK_INT(p->gateway.recycle_after, 50);
    CHECK_INT(p->gateway.n_daemon_zones, 2);
    CHECK_INT(policy_gateway_milter_socket(p, conn, sizeof conn), 0);
    CHECK_STR(conn, "inet6:8891@::1");
    const policy_zone *z = policy_zone_of_address(p, "10.20.3.4");
    CHECK(z != NULL && strcmp(z->name, "LGWAN接続系") == 0);
    z = policy_zone_of_address(p, "::ffff:10.30.0.9"); /* IPv4-mapped */
    CHECK(z != NULL && strcmp(z->kind, "internet") == 0);
    z = policy_zone_of_address(p, "2001:db8:10::25");
    CHECK(z != NULL && strcmp(z->kind, "mynumber") == 0);
    CHECK(policy_zone_of_address(p, "10.21.0.1") == NULL);
    CHECK(policy_zone_of_address(p, "not an address") == NULL);
    CHECK(policy_zone_of_address(p, NULL) == NULL);
    z = policy_zone_of_daemon(p, "lgwan");
    CHECK(z != NULL && strcmp(z->name, "LGWAN接続系") == 0);
    CHECK(policy_zone_of_daemon(p, "submission") == NULL);
    /* direction: inside only when the address is internal and the daemon
     * is not mapped elsewhere */
    const char *why = NULL;
    CHECK_INT(policy_mail_from_inside(p, "10.20.3.4", "lgwan", &why), 1);
    CHECK_HAS(why, "internal zone");
    CHECK_INT(policy_mail_from_inside(p, "10.20.3.4", NULL, NULL), 1);
    CHECK_INT(policy_mail_from_inside(p, "10.20.3.4", "submission", NULL), 1);
    CHECK_INT(policy_mail_from_inside(p, "2001:db8:10::25", NULL, NULL), 1);
    CHECK_INT(policy_mail_from_inside(p, "10.20.3.4", "internet", &why), 0);
    CHECK_HAS(why, "external zone");
    CHECK_INT(policy_mail_from_inside(p, "10.30.0.9", "lgwan", &why), 0);
    CHECK_INT(policy_mail_from_inside(p, "192.0.2.1", "lgwan", &why), 0);
    CHECK_HAS(why, "in no zone");
    CHECK_INT(policy_mail_from_inside(p, NULL, "lgwan", &why), 0);
    CHECK_HAS(why, "no client address");
    CHECK_INT(policy_mail_from_inside(p, "", NULL, NULL), 0);
    policy_free(p);

    p = load_text("gateway:\n  listen: unix:/run/sekisho/milter.sock\n", &e);
    CHECK(p != NULL);
    if (p) {
        CHECK_INT(policy_gateway_milter_socket(p, conn, sizeof conn), 0);
        CHECK_STR(conn, "unix:/run/sekisho/milter.sock");
    }
    policy_free(p);

    /* errors, each with its line */
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"gateway:\n  listen: 127.0.0.1:10025\n",
         "t.yaml:2: gateway.listen: '127.0.0.1:10025' must be inet:ADDRESS:PORT"},
        {"gateway:\n  listen: inet:localhost:10025\n", "t.yaml:2: gateway.listen: "
                                                       "'inet:localhost:10025' has an invalid "
                                                       "IPv4 address"},
        {"gateway:\n  listen: inet:127.0.0.1:0\n", "invalid port (1 to 65535)"},
        {"gateway:\n  listen: inet:127.0.0.1:65536\n", "invalid port"},
        {"gateway:\n  listen: inet6:::1:10025\n", "needs the address in brackets"},
        {"gateway:\n  listen: unix:run/m.sock\n", "unix: needs an absolute path"},
        {"gateway:\n  workers: 0\n", "t.yaml:2: gateway.workers: '0' is out of range (1 to 256)"},
        {"gateway:\n  recycle_after: -1\n", "t.yaml:2: gateway.recycle_after: expected"},
        {"gateway:\n  threads: 3\n", "t.yaml:2: gateway: unknown key 'threads'; valid keys in "
                                     "gateway: listen, workers, recycle_after, daemon_zones"},
        {"zones: [{name: A, kind: lgwan}]\ngateway:\n  daemon_zones:\n"
         "    - {daemon: x, zone: A}\n    - daemon: y\n      zone: B\n",
         "t.yaml:6: gateway.daemon_zones[1].zone: no zone named 'B' in zones"},
        {"zones: [{name: A, kind: lgwan}]\ngateway:\n  daemon_zones:\n"
         "    - {daemon: x, zone: A}\n    - {daemon: x, zone: A}\n",
         "t.yaml:5: gateway.daemon_zones[1].daemon: 'x' is already mapped by "
         "gateway.daemon_zones[0]"},
        {"gateway:\n  daemon_zones:\n    - {daemon: x}\n",
         "t.yaml:3: gateway.daemon_zones[0]: missing required key 'zone'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = load_text(bad[i].text, &e);
        CHECK(p == NULL);
        CHECK_HAS(buf_cstr(&e), bad[i].want);
        policy_free(p);
    }
    buf_free(&e);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/policy_test.XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_defaults();
    test_examples();
    test_values();
    test_errors();
    test_collects_all();
    test_files();
    test_ledger();
    test_gateway();

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_DONE();
}
