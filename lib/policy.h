/*
 * policy - the one policy file every component reads (YAML, libyaml), in the
 * vocabulary of the 対策基準: organization, internal domains, zones with their
 * networks, roles, 機密性 levels, mail rules, retention periods, limits.
 *
 * policy_default() gives the built-in defaults (every command works without a
 * file); policy_load() starts from those defaults and overrides what the file
 * says. Unknown keys, wrong types and out-of-range values are errors, reported
 * one per line as "file:line: message" (libyaml's marks give the line), and the
 * load fails as a whole: a policy is never half applied.
 *
 * The struct is read-only for callers after load; policy_free() releases it.
 */
#ifndef SEKISHO_POLICY_H
#define SEKISHO_POLICY_H

#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct policy_zone {
    char *name;      /* e.g. "インターネット接続系" */
    char *kind;      /* "mynumber" | "lgwan" | "internet" | "other" */
    char **networks; /* CIDR strings, e.g. "192.0.2.0/24" */
    size_t n_networks;
} policy_zone;

typedef struct policy_role {
    char *name;     /* e.g. "統括情報セキュリティ責任者" */
    char **members; /* user names / mail addresses */
    size_t n_members;
} policy_role;

typedef struct policy_mail_limits {
    uint64_t max_message_bytes; /* whole message as received */
    uint64_t max_header_bytes;  /* one header block (all fields of one entity) */
    uint64_t max_headers;       /* fields in one header block */
    uint64_t max_depth;         /* MIME nesting (multipart and message/rfc822) */
    uint64_t max_parts;         /* MIME entities in the whole message */
    uint64_t max_decoded_bytes; /* decoded bytes over all parts */
    uint64_t max_text_bytes;    /* UTF-8 text in the sanitized body */
    uint64_t time_limit_ms;     /* wall time for one message */
} policy_mail_limits;

typedef struct policy_mail {
    char *subject_tag;       /* prefix for external mail, default "[外部]"; "" = none */
    int prefer_html;         /* multipart/alternative: 0 text/plain (default), 1 text/html */
    int defang_links;        /* default 1 */
    int english;             /* notices in English (language: en); default Japanese */
    uint64_t retention_days; /* quarantined originals, default 90 */
    policy_mail_limits limits;
} policy_mail;

/* Added: the tamper-evident ledger (docs/LEDGER.md). */
typedef struct policy_ledger {
    char *dir;                   /* default <state_dir>/ledger */
    char *key_file;              /* Ed25519 signing key, default <state_dir>/ledger-signing.key */
    uint64_t checkpoint_entries; /* sign a tree head after this many entries, default 100000 */
    uint64_t checkpoint_interval_ms; /* or after this long, default 10 s */
    int segment_daily;               /* segment: monthly (0, default) | daily (1) */
    uint64_t retention_days;         /* segments kept this long after their period; 0 = forever */
} policy_ledger;
/* records: the policy's record types (sekisho record, docs/LEDGER.md). A
 * records: section in the file replaces the built-in set. */
typedef struct policy_record_type {
    char *type;      /* e.g. "入退室" */
    char **required; /* field names that must be given */
    size_t n_required;
    char **optional; /* field names that may be given */
    size_t n_optional;
    int extra_fields; /* 1: other field names are accepted too */
} policy_record_type;

/* intake: sekisho syslogd's listeners and limits (docs/LEDGER.md §16). */
typedef struct policy_intake {
    char *unix_socket;          /* datagram socket path; NULL: none */
    char *udp, *tcp;            /* "ADDR:PORT" (IPv4); default 127.0.0.1:514 and :601 */
    uint64_t max_message_bytes; /* default 8192 (2048..65536) */
    uint64_t max_connections;   /* TCP, default 64 */
    uint64_t rate;              /* messages/s per source, burst 2x; 0 = none; default 20000 */
} policy_intake;

/* gateway: (sekisho-milter) */
typedef struct policy_daemon_zone {
    char *daemon; /* Postfix's {daemon_name} (milter_macro_daemon_name) */
    char *zone;   /* the name of a zone in zones[] */
} policy_daemon_zone;

typedef struct policy_gateway {
    char *listen;           /* "inet:127.0.0.1:10025", "inet6:[::1]:10025" or "unix:/path" */
    uint64_t workers;       /* sandboxed sanitizer processes (default 4) */
    uint64_t recycle_after; /* messages per worker before it is replaced (default 1000) */
    policy_daemon_zone *daemon_zones;
    size_t n_daemon_zones;
} policy_gateway;

typedef struct policy {
    char *source;            /* file path, or "(built-in defaults)" */
    char *organization;      /* 団体名 */
    char **internal_domains; /* mail domains of the organization */
    size_t n_internal_domains;
    policy_zone *zones;
    size_t n_zones;
    policy_role *roles;
    size_t n_roles;
    char **confidentiality_levels; /* 機密性 levels, e.g. "機密性3", "機密性2", "機密性1" */
    size_t n_confidentiality_levels;
    /* Added: the MIC guideline classifies by 機密性, 完全性 and 可用性 (基本方針
     * 「機密性、完全性及び可用性に応じて分類」); some bodies (只見町) use one
     * 重要性分類 I-III instead. Each list is highest first, empty if not given. */
    char **integrity_levels; /* 完全性, e.g. "完全性2", "完全性1" */
    size_t n_integrity_levels;
    char **availability_levels; /* 可用性, e.g. "可用性2", "可用性1" */
    size_t n_availability_levels;
    char **importance_levels; /* 重要性分類, e.g. "重要性分類I", "重要性分類II" */
    size_t n_importance_levels;
    char *state_dir;      /* default $SEKISHO_STATE_DIR or /var/lib/sekisho */
    char *quarantine_dir; /* default <state_dir>/quarantine */
    policy_mail mail;
    policy_ledger ledger;
    policy_gateway gateway;           /* sekisho-milter */
    policy_intake intake;             /* sekisho syslogd */
    policy_record_type *record_types; /* records: */
    size_t n_record_types;
} policy;

/* Built-in defaults. Never NULL (calls msg_fatal on out of memory). */
policy *policy_default(void);

/* Loads path over the defaults. On error returns NULL and appends one
 * "path:line: message\n" per problem to errors. */
policy *policy_load(const char *path, buf *errors);
/* policy_load() that also leaves the file's bytes in data (at most 1 MiB):
 * what a spawned worker is given, so that it runs the very same policy. */
policy *policy_load_bytes(const char *path, buf *data, buf *errors);

/* Added: the same over bytes already in memory (n <= 1 MiB); name is used in
 * the messages in place of a path. policy_load() reads the file and calls this;
 * the fuzz target calls it directly. errors may be NULL (messages dropped). */
policy *policy_load_mem(const char *name, const uint8_t *p, size_t n, buf *errors);

void policy_free(policy *p);

/* 1 if domain (case-insensitive, exact or a subdomain) is internal. */
int policy_domain_is_internal(const policy *p, const char *domain);

/* The record type named type, or NULL. */
const policy_record_type *policy_record_type_find(const policy *p, const char *type);

/* gateway: (sekisho-milter) ------------------------------------------------ */
/* The zone whose networks hold addr (an IPv4 or IPv6 address as text; an
 * IPv4-mapped IPv6 address counts as IPv4), or NULL (no zone, or not an
 * address). */
const policy_zone *policy_zone_of_address(const policy *p, const char *addr);
/* The zone gateway.daemon_zones maps daemon to, or NULL. */
const policy_zone *policy_zone_of_daemon(const policy *p, const char *daemon);
/* 1 for the zones inside the organization (kind lgwan or mynumber). */
int policy_zone_is_internal(const policy_zone *z);
/* Direction of a connection to the gateway: 1 (mail from inside, passed
 * untouched) only when client_addr lies in an internal zone AND daemon (may
 * be NULL) is either not mapped or mapped to an internal zone; 0 (sanitize)
 * in every other case, including no address, an unknown address and a
 * daemon mapped to an external zone. *why (may be NULL) gets a short
 * English reason for the log. */
int policy_mail_from_inside(const policy *p, const char *client_addr, const char *daemon,
                            const char **why);
/* gateway.listen in libmilter's form ("inet:10025@127.0.0.1",
 * "inet6:10025@::1", "unix:/path") into out[n]. 0, or -EINVAL. */
int policy_gateway_milter_socket(const policy *p, char *out, size_t n);

#endif
