/*
 * policy - load and validate the policy file (YAML) that every sekisho
 * component reads. See policy.h for the struct and docs/POLICY.md for the
 * file format as an administrator sees it.
 *
 * How it works
 *   1. The bytes are checked before libyaml sees them: at most 1 MiB
 *      (POLICY_MAX_FILE), strict UTF-8 (no overlong forms, no surrogates).
 *      Every bad line is reported, with its line number.
 *   2. libyaml's event API builds a small private tree (ynode). Aliases and
 *      anchors are rejected (billion-laughs protection: no node is ever
 *      shared), as are explicit tags and a second document. Nesting deeper
 *      than POLICY_MAX_DEPTH stops the parse, so the tree walk below can
 *      recurse safely. A YAML syntax error stops the parse too (libyaml cannot
 *      go on after one); it is reported with libyaml's own words and line.
 *   3. The tree is applied over policy_default() by tables: one table of
 *      fields per section (struct section), each field with a type, where it
 *      goes in struct policy (offsetof), its range and its flags. A new
 *      section (ledger:, fim:, ...) is one new table plus one line in
 *      top_fields; until then its name is in top_fields as T_UNSUPPORTED so
 *      that a file using it fails instead of being silently half-applied.
 *   4. Cross-checks that need more than one field run last (zone names,
 *      overlapping zone networks, header size within message size).
 *
 * Contract
 *   Every problem is one line "name:line: message\n" appended to errors
 *   (line is 1-based); all problems are collected, up to POLICY_MAX_ERRORS,
 *   then the load fails as a whole and returns NULL. Messages quote the
 *   dotted key ("mail.limits.max_depth", "zones[1].networks[0]") and echo
 *   values with control bytes escaped and long values cut, so one problem is
 *   always one line. On success the result is complete and read-only.
 *
 * Limits
 *   POLICY_MAX_FILE bytes of input, POLICY_MAX_DEPTH levels of nesting,
 *   POLICY_MAX_LIST entries in one list, POLICY_MAX_NETWORKS networks over
 *   all zones (the duplicate and overlap checks are quadratic, so these keep
 *   a hostile 1 MiB file to well under a second), POLICY_MAX_ERRORS messages. Strings may not
 * contain control characters (a newline in subject_tag would become header injection).
 */
#include "policy.h"

#include "util/fileio.h"
#include "util/msg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#define POLICY_MAX_FILE     ((size_t)1 << 20)
#define POLICY_MAX_DEPTH    32
#define POLICY_MAX_ERRORS   50
#define POLICY_MAX_NETWORKS 1024
#define POLICY_MAX_LIST     1000 /* entries in one list (duplicate checks are quadratic) */
#define POLICY_MAX_PATH     4000

#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

/* ---- the private YAML tree ------------------------------------------------ */

enum ytype { Y_SCALAR, Y_SEQ, Y_MAP, Y_BAD /* alias placeholder: already reported */ };

typedef struct ynode {
    enum ytype type;
    int plain;   /* scalar written without quotes */
    char *value; /* scalar bytes, NUL-terminated (may hold NULs) */
    size_t len;
    size_t line;          /* 1-based */
    struct ynode **items; /* Y_SEQ: items; Y_MAP: key, value, key, value ... */
    size_t n, cap;
} ynode;

static void ynode_free(ynode *y)
{
    if (y == NULL)
        return;
    for (size_t i = 0; i < y->n; i++)
        ynode_free(y->items[i]);
    free(y->items);
    free(y->value);
    free(y);
}

static ynode *ynode_new(enum ytype type, size_t line)
{
    ynode *y = xcalloc(1, sizeof *y);
    y->type = type;
    y->line = line;
    return y;
}

static void ynode_add(ynode *parent, ynode *child)
{
    if (parent->n == parent->cap) {
        size_t ncap = parent->cap ? parent->cap * 2 : 8;
        ynode **ni = realloc(parent->items, ncap * sizeof *ni);
        if (ni == NULL)
            msg_fatal("policy: out of memory");
        parent->items = ni;
        parent->cap = ncap;
    }
    parent->items[parent->n++] = child;
}

/* ---- load context and diagnostics ---------------------------------------- */

typedef struct net_seen {
    int af;
    unsigned char addr[16];
    unsigned prefix;
    size_t zone;
    size_t line;
    const char *text;
} net_seen;

typedef struct ctx {
    const char *name;
    buf *errors;
    int nerr;
    int qdir_set;    /* mail.quarantine.dir given in the file */
    int ldir_set;    /* ledger.dir given in the file */
    int lkey_set;    /* ledger.key_file given in the file */
    size_t hdr_line; /* line of mail.limits.max_header_size, 0 if not given */
    policy *p;
    net_seen nets[POLICY_MAX_NETWORKS];
    size_t n_nets;
    int nets_overflow;
} ctx;

static void err(ctx *c, size_t line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void err(ctx *c, size_t line, const char *fmt, ...)
{
    c->nerr++;
    if (c->nerr > POLICY_MAX_ERRORS + 1)
        return;
    if (c->nerr == POLICY_MAX_ERRORS + 1) {
        buf_printf(c->errors, "%s: too many errors, stopped after %d\n", c->name,
                   POLICY_MAX_ERRORS);
        return;
    }
    if (line > 0)
        buf_printf(c->errors, "%s:%zu: ", c->name, line);
    else
        buf_printf(c->errors, "%s: ", c->name);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(c->errors, fmt, ap);
    va_end(ap);
    buf_putc(c->errors, '\n');
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x7fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A value fit to echo in a one-line message: quoted, control bytes escaped,
 * cut after about 60 bytes at a character boundary. */
static const char *show(char out[128], const char *s, size_t len)
{
    size_t o = 0, i = 0;
    out[o++] = '\'';
    while (i < len && o < 100) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, 128 - o, "\\x%02x", ch);
            i++;
            continue;
        }
        size_t k = utf8_seq((const unsigned char *)s + i, len - i);
        if (k == 0) {
            o += (size_t)snprintf(out + o, 128 - o, "\\x%02x", ch);
            i++;
            continue;
        }
        if (o + k > 100)
            break;
        memcpy(out + o, s + i, k);
        o += k;
        i += k;
    }
    if (i < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '\'';
    out[o] = 0;
    return out;
}

/* At most 40 bytes of s, cut at a character boundary (s is valid UTF-8:
 * checked before parsing), with "..." if cut. */
static const char *cut(char out[64], const char *s)
{
    size_t n = strlen(s), i = 0;
    while (i < n) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0 || i + k > 40)
            break;
        i += k;
    }
    memcpy(out, s, i);
    if (i < n)
        memcpy(out + i, "...", 3), i += 3;
    out[i] = 0;
    return out;
}

/* ---- stage 1: size and encoding ------------------------------------------ */

static int check_utf8(ctx *c, const uint8_t *p, size_t n)
{
    size_t line = 1, last_bad = 0;
    int ok = 1;
    for (size_t i = 0; i < n;) {
        if (p[i] == '\n') {
            line++;
            i++;
            continue;
        }
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            if (last_bad != line)
                err(c, line,
                    "invalid UTF-8 byte 0x%02x (the policy file must be UTF-8; "
                    "convert it with e.g. iconv -f CP932 -t UTF-8)",
                    p[i]);
            last_bad = line;
            ok = 0;
            k = 1;
        }
        i += k;
    }
    return ok;
}

/* ---- stage 2: YAML events to tree ---------------------------------------- */

static void yaml_syntax_error(ctx *c, const yaml_parser_t *ps, const uint8_t *p, size_t n)
{
    const char *problem = ps->problem ? ps->problem : "unknown error";
    if (ps->error == YAML_MEMORY_ERROR)
        msg_fatal("policy: out of memory");
    size_t line = ps->problem_mark.line + 1;
    if (ps->error == YAML_READER_ERROR) {
        size_t rl = 1;
        for (size_t i = 0; i < ps->problem_offset && i < n; i++)
            rl += p[i] == '\n';
        err(c, rl, "YAML error: %s (byte %zu)", problem, ps->problem_offset);
    } else if (ps->context) {
        err(c, line, "YAML syntax error: %s (%s, from line %zu)", problem, ps->context,
            ps->context_mark.line + 1);
    } else {
        err(c, line, "YAML syntax error: %s", problem);
    }
}

/* Builds the tree (NULL for an empty file). Aliases, anchors and tags are
 * reported and parsing goes on, to report more; after a syntax error, a second
 * document or too deep nesting, *fatal is set and the tree is not to be used. */
static ynode *build_tree(ctx *c, const uint8_t *p, size_t n, int *fatal)
{
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps))
        msg_fatal("policy: out of memory");
    yaml_parser_set_input_string(&ps, p, n);
    yaml_parser_set_encoding(&ps, YAML_UTF8_ENCODING);

    char sh[64];
    ynode *root = NULL;
    ynode *stack[POLICY_MAX_DEPTH + 1];
    size_t depth = 0;
    int docs = 0, done = 0;
    *fatal = 0;
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) {
            yaml_syntax_error(c, &ps, p, n);
            *fatal = 1;
            break;
        }
        size_t line = ev.start_mark.line + 1;
        ynode *y = NULL;
        const yaml_char_t *anchor = NULL, *tag = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                err(c, line, "a policy file holds one YAML document; found a second one");
                *fatal = 1;
                done = 1;
            }
            break;
        case YAML_ALIAS_EVENT:
            err(c, line, "YAML aliases (*%s) are not allowed in a policy file",
                cut(sh, (const char *)ev.data.alias.anchor));
            y = ynode_new(Y_BAD, line);
            break;
        case YAML_SCALAR_EVENT:
            anchor = ev.data.scalar.anchor;
            tag = ev.data.scalar.tag;
            y = ynode_new(Y_SCALAR, line);
            y->len = ev.data.scalar.length;
            y->value = xmalloc(y->len + 1);
            memcpy(y->value, ev.data.scalar.value, y->len);
            y->value[y->len] = 0;
            y->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            break;
        case YAML_SEQUENCE_START_EVENT:
            anchor = ev.data.sequence_start.anchor;
            tag = ev.data.sequence_start.tag;
            y = ynode_new(Y_SEQ, line);
            break;
        case YAML_MAPPING_START_EVENT:
            anchor = ev.data.mapping_start.anchor;
            tag = ev.data.mapping_start.tag;
            y = ynode_new(Y_MAP, line);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
        if (anchor) {
            err(c, line, "YAML anchors (&%s) are not allowed in a policy file",
                cut(sh, (const char *)anchor));
        }
        if (tag) {
            err(c, line, "YAML tags (%s) are not allowed in a policy file",
                cut(sh, (const char *)tag));
        }
        int opens = ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT;
        yaml_event_delete(&ev);
        if (y == NULL)
            continue;
        if (depth == 0) {
            if (root == NULL)
                root = y;
            else
                ynode_free(y); /* cannot happen: one document has one root */
        } else {
            ynode_add(stack[depth - 1], y);
        }
        if (opens) {
            if (depth == POLICY_MAX_DEPTH) {
                err(c, line, "nesting deeper than %d levels", POLICY_MAX_DEPTH);
                *fatal = 1;
                break;
            }
            stack[depth++] = y;
        }
    }
    yaml_parser_delete(&ps);
    return root;
}

/* ---- stage 3: the tables --------------------------------------------------- */

enum ftype {
    T_SECTION,     /* nested mapping, sub-table, same base */
    T_LIST,        /* sequence of mappings -> array of records */
    T_TEXT,        /* char * */
    T_PATH,        /* char *, absolute path */
    T_TEXTLIST,    /* char **, count at off_n; unique entries */
    T_DOMAINLIST,  /* char **, lower-cased mail domains */
    T_CIDRLIST,    /* char **, address/prefix */
    T_ENUM_INT,    /* int: index into choices */
    T_ENUM_TEXT,   /* char *: one of choices */
    T_BOOL,        /* int 0/1 */
    T_COUNT,       /* uint64_t, plain integer */
    T_SIZE,        /* uint64_t bytes: integer or 50MB/50MiB/512KB/1GB */
    T_DURATION,    /* uint64_t ms: integer or 500ms/30s/2m/1h */
    T_UNSUPPORTED, /* a section a later version will read */
};

#define F_REQUIRED 1u
#define F_QDIR     2u  /* sets ctx.qdir_set */
#define F_NONEMPTY 4u  /* text may not be "" */
#define F_HDR      8u  /* sets ctx.hdr_line */
#define F_LDIR     16u /* sets ctx.ldir_set */
#define F_LKEY     32u /* sets ctx.lkey_set */

struct section;

typedef struct field {
    const char *key;
    enum ftype type;
    size_t off;                 /* in the base struct */
    size_t off_n;               /* count, for lists */
    uint64_t min, max;          /* numbers; text: max bytes */
    const struct section *sub;  /* T_SECTION, T_LIST */
    const char *const *choices; /* T_ENUM_*: NULL-terminated */
    unsigned flags;
} field;

typedef void (*record_check)(ctx *c, void *records, size_t i, const ynode *item, const char *path);

typedef struct section {
    const char *name; /* for messages: "mail.limits" */
    const field *fields;
    size_t n;
    size_t elem_size;   /* T_LIST: size of one record */
    record_check check; /* T_LIST: after each record */
} section;

#define NFIELDS(a) (sizeof(a) / sizeof(a)[0])

static const char *const prefer_choices[] = {"text", "html", NULL};
static const char *const language_choices[] = {"ja", "en", NULL};
static const char *const zone_kinds[] = {"mynumber", "lgwan", "internet", "other", NULL};

static const field organization_fields[] = {
    {"name", T_TEXT, offsetof(policy, organization), 0, 0, 256, NULL, NULL, F_NONEMPTY},
    {"internal_domains", T_DOMAINLIST, offsetof(policy, internal_domains),
     offsetof(policy, n_internal_domains), 0, 0, NULL, NULL, 0},
};
static const section organization_section = {"organization", organization_fields,
                                             NFIELDS(organization_fields), 0, NULL};

static const field zone_fields[] = {
    {"name", T_TEXT, offsetof(policy_zone, name), 0, 0, 256, NULL, NULL, F_REQUIRED | F_NONEMPTY},
    {"kind", T_ENUM_TEXT, offsetof(policy_zone, kind), 0, 0, 0, NULL, zone_kinds, F_REQUIRED},
    {"networks", T_CIDRLIST, offsetof(policy_zone, networks), offsetof(policy_zone, n_networks), 0,
     0, NULL, NULL, 0},
};
static void check_zone(ctx *c, void *records, size_t i, const ynode *item, const char *path);
static const section zone_section = {"zones[]", zone_fields, NFIELDS(zone_fields),
                                     sizeof(policy_zone), check_zone};

static const field role_fields[] = {
    {"name", T_TEXT, offsetof(policy_role, name), 0, 0, 256, NULL, NULL, F_REQUIRED | F_NONEMPTY},
    {"members", T_TEXTLIST, offsetof(policy_role, members), offsetof(policy_role, n_members), 0,
     256, NULL, NULL, 0},
};
static void check_role(ctx *c, void *records, size_t i, const ynode *item, const char *path);
static const section role_section = {"roles[]", role_fields, NFIELDS(role_fields),
                                     sizeof(policy_role), check_role};

static const field classification_fields[] = {
    {"confidentiality", T_TEXTLIST, offsetof(policy, confidentiality_levels),
     offsetof(policy, n_confidentiality_levels), 0, 256, NULL, NULL, 0},
    {"integrity", T_TEXTLIST, offsetof(policy, integrity_levels),
     offsetof(policy, n_integrity_levels), 0, 256, NULL, NULL, 0},
    {"availability", T_TEXTLIST, offsetof(policy, availability_levels),
     offsetof(policy, n_availability_levels), 0, 256, NULL, NULL, 0},
    {"importance", T_TEXTLIST, offsetof(policy, importance_levels),
     offsetof(policy, n_importance_levels), 0, 256, NULL, NULL, 0},
};
static const section classification_section = {"classification", classification_fields,
                                               NFIELDS(classification_fields), 0, NULL};

static const field quarantine_fields[] = {
    {"dir", T_PATH, offsetof(policy, quarantine_dir), 0, 0, 0, NULL, NULL, F_QDIR},
    {"retention_days", T_COUNT, offsetof(policy, mail.retention_days), 0, 1, 36500, NULL, NULL, 0},
};
static const section quarantine_section = {"mail.quarantine", quarantine_fields,
                                           NFIELDS(quarantine_fields), 0, NULL};

#define LIM(f) offsetof(policy, mail.limits.f)
static const field limits_fields[] = {
    {"max_message_size", T_SIZE, LIM(max_message_bytes), 0, KIB, 4 * GIB, NULL, NULL, 0},
    {"max_header_size", T_SIZE, LIM(max_header_bytes), 0, KIB, 64 * MIB, NULL, NULL, F_HDR},
    {"max_headers", T_COUNT, LIM(max_headers), 0, 1, 1000000, NULL, NULL, 0},
    {"max_depth", T_COUNT, LIM(max_depth), 0, 1, 100, NULL, NULL, 0},
    {"max_parts", T_COUNT, LIM(max_parts), 0, 1, 100000, NULL, NULL, 0},
    {"max_decoded_size", T_SIZE, LIM(max_decoded_bytes), 0, KIB, 16 * GIB, NULL, NULL, 0},
    {"max_text_size", T_SIZE, LIM(max_text_bytes), 0, KIB, 4 * GIB, NULL, NULL, 0},
    {"time_limit", T_DURATION, LIM(time_limit_ms), 0, 100, 3600000, NULL, NULL, 0},
};
#undef LIM
static const section limits_section = {"mail.limits", limits_fields, NFIELDS(limits_fields), 0,
                                       NULL};

static const field mail_fields[] = {
    {"subject_tag", T_TEXT, offsetof(policy, mail.subject_tag), 0, 0, 128, NULL, NULL, 0},
    {"prefer", T_ENUM_INT, offsetof(policy, mail.prefer_html), 0, 0, 0, NULL, prefer_choices, 0},
    {"defang_links", T_BOOL, offsetof(policy, mail.defang_links), 0, 0, 0, NULL, NULL, 0},
    {"language", T_ENUM_INT, offsetof(policy, mail.english), 0, 0, 0, NULL, language_choices, 0},
    {"quarantine", T_SECTION, 0, 0, 0, 0, &quarantine_section, NULL, 0},
    {"limits", T_SECTION, 0, 0, 0, 0, &limits_section, NULL, 0},
};
static const section mail_section = {"mail", mail_fields, NFIELDS(mail_fields), 0, NULL};

static const char *const segment_choices[] = {"monthly", "daily", NULL};
#define LED(f) offsetof(policy, ledger.f)
static const field ledger_fields[] = {
    {"dir", T_PATH, LED(dir), 0, 0, 0, NULL, NULL, F_LDIR},
    {"key_file", T_PATH, LED(key_file), 0, 0, 0, NULL, NULL, F_LKEY},
    {"checkpoint_entries", T_COUNT, LED(checkpoint_entries), 0, 1, 100000000, NULL, NULL, 0},
    {"checkpoint_interval", T_DURATION, LED(checkpoint_interval_ms), 0, 100, 86400000, NULL, NULL,
     0},
    {"segment", T_ENUM_INT, LED(segment_daily), 0, 0, 0, NULL, segment_choices, 0},
    {"retention_days", T_COUNT, LED(retention_days), 0, 0, 36500, NULL, NULL, 0},
};
#undef LED
static const section ledger_section = {"ledger", ledger_fields, NFIELDS(ledger_fields), 0, NULL};
/* ---- gateway: (sekisho-milter) ----------------------------------------------
 * One block for the gateway section: its tables, its checks, its defaults and
 * the direction helpers; hooked in by one line each in top_fields,
 * policy_default(), policy_free() and policy_load_mem(). */

static const ynode *map_get(const ynode *map, const char *key);
static void free_record(const struct section *s, void *rec);
static const char *parse_cidr(const char *s, size_t len, int *af, unsigned char addr[16],
                              unsigned *prefix);
static int nets_overlap(const net_seen *a, const net_seen *b);

static const field daemon_zone_fields[] = {
    {"daemon", T_TEXT, offsetof(policy_daemon_zone, daemon), 0, 0, 64, NULL, NULL,
     F_REQUIRED | F_NONEMPTY},
    {"zone", T_TEXT, offsetof(policy_daemon_zone, zone), 0, 0, 256, NULL, NULL,
     F_REQUIRED | F_NONEMPTY},
};
static void check_daemon_zone(ctx *c, void *records, size_t i, const ynode *item, const char *path);
static const section daemon_zone_section = {"gateway.daemon_zones[]", daemon_zone_fields,
                                            NFIELDS(daemon_zone_fields), sizeof(policy_daemon_zone),
                                            check_daemon_zone};

#define GW(f) offsetof(policy, gateway.f)
static const field gateway_fields[] = {
    {"listen", T_TEXT, GW(listen), 0, 0, 200, NULL, NULL, F_NONEMPTY},
    {"workers", T_COUNT, GW(workers), 0, 1, 256, NULL, NULL, 0},
    {"recycle_after", T_COUNT, GW(recycle_after), 0, 1, 10000000, NULL, NULL, 0},
    {"daemon_zones", T_LIST, GW(daemon_zones), GW(n_daemon_zones), 0, 0, &daemon_zone_section, NULL,
     0},
};
#undef GW
static const section gateway_section = {"gateway", gateway_fields, NFIELDS(gateway_fields), 0,
                                        NULL};

static void check_daemon_zone(ctx *c, void *records, size_t i, const ynode *item, const char *path)
{
    char sh[128];
    policy_daemon_zone *d = records;
    const ynode *name = map_get(item, "daemon");
    for (size_t k = 0; k < i && d[i].daemon; k++)
        if (d[k].daemon && strcmp(d[k].daemon, d[i].daemon) == 0)
            err(c, name ? name->line : item->line,
                "%s.daemon: %s is already mapped by gateway.daemon_zones[%zu]", path,
                show(sh, d[i].daemon, strlen(d[i].daemon)), k);
}

/* A port number 1-65535 written in decimal; 0 if not. */
static unsigned parse_port(const char *s)
{
    unsigned v = 0;
    size_t n = 0;
    for (; s[n] >= '0' && s[n] <= '9' && n < 6; n++)
        v = v * 10 + (unsigned)(s[n] - '0');
    return n == 0 || s[n] != 0 || (n > 1 && s[0] == '0') || v > 65535 ? 0 : v;
}

/* Parses a listen value (Postfix's notation, as in smtpd_milters) into
 * libmilter's; NULL or the reason. */
static const char *parse_listen(const char *s, char *out, size_t n)
{
    char host[64];
    if (strncmp(s, "unix:", 5) == 0) {
        const char *path = s + 5;
        if (path[0] != '/')
            return "unix: needs an absolute path (unix:/run/sekisho/milter.sock)";
        if (strlen(path) >= 108)
            return "the socket path is longer than 107 bytes";
        if (snprintf(out, n, "unix:%s", path) >= (int)n)
            return "too long";
        return NULL;
    }
    int v6 = strncmp(s, "inet6:", 6) == 0;
    if (!v6 && strncmp(s, "inet:", 5) != 0)
        return "must be inet:ADDRESS:PORT, inet6:[ADDRESS]:PORT or unix:/PATH";
    const char *a = s + (v6 ? 6 : 5);
    const char *colon = strrchr(a, ':');
    if (colon == NULL)
        return "has no :PORT";
    size_t alen = (size_t)(colon - a);
    if (v6) {
        if (alen < 2 || a[0] != '[' || a[alen - 1] != ']')
            return "inet6: needs the address in brackets (inet6:[::1]:10025)";
        a++;
        alen -= 2;
    }
    if (alen == 0 || alen >= sizeof host)
        return "has no valid address";
    memcpy(host, a, alen);
    host[alen] = 0;
    unsigned char bin[16];
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, bin) != 1)
        return v6 ? "has an invalid IPv6 address"
                  : "has an invalid IPv4 address (write a "
                    "numeric address such as 127.0.0.1)";
    unsigned port = parse_port(colon + 1);
    if (port == 0)
        return "has an invalid port (1 to 65535)";
    if (snprintf(out, n, "%s:%u@%s", v6 ? "inet6" : "inet", port, host) >= (int)n)
        return "too long";
    return NULL;
}

/* Cross-checks that need the whole file: the listen address, and that every
 * daemon_zones entry names a zone that exists. */
static void check_gateway(ctx *c, const ynode *root)
{
    char sh[128], conn[256];
    const ynode *g = map_get(root, "gateway");
    if (g == NULL || g->type != Y_MAP)
        return;
    const policy_gateway *gw = &c->p->gateway;
    const ynode *l = map_get(g, "listen");
    /* a listen value that did not even parse as text was reported already */
    const char *why = l && gw->listen ? parse_listen(gw->listen, conn, sizeof conn) : NULL;
    if (why)
        err(c, l->line, "gateway.listen: %s %s", show(sh, gw->listen, strlen(gw->listen)), why);
    const ynode *dz = map_get(g, "daemon_zones");
    for (size_t i = 0; i < gw->n_daemon_zones; i++) {
        const char *z = gw->daemon_zones[i].zone;
        if (z == NULL)
            continue;
        size_t k;
        for (k = 0; k < c->p->n_zones; k++)
            if (c->p->zones[k].name && strcmp(c->p->zones[k].name, z) == 0)
                break;
        if (k < c->p->n_zones)
            continue;
        const ynode *item = dz && dz->type == Y_SEQ && i < dz->n ? dz->items[i] : g;
        const ynode *zl = map_get(item, "zone");
        err(c, zl ? zl->line : item->line,
            "gateway.daemon_zones[%zu].zone: no zone named %s in zones", i, show(sh, z, strlen(z)));
    }
}

static void gateway_defaults(policy *p)
{
    p->gateway.listen = xstrdup("inet:127.0.0.1:10025");
    p->gateway.workers = 4;
    p->gateway.recycle_after = 1000;
}

static void gateway_free(policy *p)
{
    free(p->gateway.listen);
    for (size_t i = 0; i < p->gateway.n_daemon_zones; i++)
        free_record(&daemon_zone_section, &p->gateway.daemon_zones[i]);
    free(p->gateway.daemon_zones);
}

/* addr as 16 bytes (IPv4 in the first 4), with its family; 0 or -1. */
static int parse_addr(const char *addr, int *af, unsigned char bin[16])
{
    memset(bin, 0, 16);
    if (inet_pton(AF_INET, addr, bin) == 1) {
        *af = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, bin) != 1)
        return -1;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(bin, mapped, 12) == 0) {
        memmove(bin, bin + 12, 4);
        memset(bin + 4, 0, 12);
        *af = AF_INET;
        return 0;
    }
    *af = AF_INET6;
    return 0;
}

const policy_zone *policy_zone_of_address(const policy *p, const char *addr)
{
    if (p == NULL || addr == NULL)
        return NULL;
    int af;
    unsigned char a[16];
    if (parse_addr(addr, &af, a) != 0)
        return NULL;
    for (size_t z = 0; z < p->n_zones; z++) {
        for (size_t i = 0; i < p->zones[z].n_networks; i++) {
            const char *net = p->zones[z].networks[i];
            net_seen n = {0};
            if (parse_cidr(net, strlen(net), &n.af, n.addr, &n.prefix) != NULL || n.af != af)
                continue;
            net_seen h = {.af = af, .prefix = af == AF_INET ? 32 : 128};
            memcpy(h.addr, a, 16);
            if (nets_overlap(&n, &h))
                return &p->zones[z];
        }
    }
    return NULL;
}

const policy_zone *policy_zone_of_daemon(const policy *p, const char *daemon)
{
    if (p == NULL || daemon == NULL)
        return NULL;
    for (size_t i = 0; i < p->gateway.n_daemon_zones; i++) {
        if (strcmp(p->gateway.daemon_zones[i].daemon, daemon) != 0)
            continue;
        for (size_t z = 0; z < p->n_zones; z++)
            if (p->zones[z].name && p->gateway.daemon_zones[i].zone &&
                strcmp(p->zones[z].name, p->gateway.daemon_zones[i].zone) == 0)
                return &p->zones[z];
    }
    return NULL;
}

int policy_zone_is_internal(const policy_zone *z)
{
    return z != NULL && (strcmp(z->kind, "lgwan") == 0 || strcmp(z->kind, "mynumber") == 0);
}

int policy_mail_from_inside(const policy *p, const char *client_addr, const char *daemon,
                            const char **why)
{
    const char *dummy;
    if (why == NULL)
        why = &dummy;
    const policy_zone *dz = policy_zone_of_daemon(p, daemon);
    if (dz != NULL && !policy_zone_is_internal(dz)) {
        *why = "the daemon name is mapped to an external zone";
        return 0;
    }
    const policy_zone *az = policy_zone_of_address(p, client_addr);
    if (az == NULL) {
        *why =
            client_addr && *client_addr ? "the client address is in no zone" : "no client address";
        return 0;
    }
    if (!policy_zone_is_internal(az)) {
        *why = "the client address is in an external zone";
        return 0;
    }
    *why = "the client address is in an internal zone";
    return 1;
}

int policy_gateway_milter_socket(const policy *p, char *out, size_t n)
{
    if (p == NULL || p->gateway.listen == NULL || n == 0)
        return -EINVAL;
    return parse_listen(p->gateway.listen, out, n) == NULL ? 0 : -EINVAL;
}

/* ---- end of gateway: ------------------------------------------------------- */

/* ---- records: (sekisho record) ---------------------------------------------- */

static const field record_type_fields[] = {
    {"type", T_TEXT, offsetof(policy_record_type, type), 0, 0, 128, NULL, NULL,
     F_REQUIRED | F_NONEMPTY},
    {"required", T_TEXTLIST, offsetof(policy_record_type, required),
     offsetof(policy_record_type, n_required), 0, 128, NULL, NULL, 0},
    {"optional", T_TEXTLIST, offsetof(policy_record_type, optional),
     offsetof(policy_record_type, n_optional), 0, 128, NULL, NULL, 0},
    {"extra_fields", T_BOOL, offsetof(policy_record_type, extra_fields), 0, 0, 0, NULL, NULL, 0},
};
static void check_record_type(ctx *c, void *records, size_t i, const ynode *item, const char *path);
static const section record_type_section = {"records[]", record_type_fields,
                                            NFIELDS(record_type_fields), sizeof(policy_record_type),
                                            check_record_type};

/* Field names are ledger field names: no "=" (sekisho record's KEY=VALUE),
 * not empty, not control characters; each once over required and optional;
 * type names once over the section. */
static void check_record_type(ctx *c, void *records, size_t i, const ynode *item, const char *path)
{
    char sh[128];
    policy_record_type *r = records;
    const ynode *type = map_get(item, "type");
    size_t line = type ? type->line : item->line;
    for (size_t k = 0; k < i && r[i].type; k++)
        if (r[k].type && strcmp(r[k].type, r[i].type) == 0)
            err(c, line, "%s.type: record type %s is already defined by records[%zu]", path,
                show(sh, r[i].type, strlen(r[i].type)), k);
    size_t n = r[i].n_required + r[i].n_optional;
    for (size_t a = 0; a < n; a++) {
        const char *fa =
            a < r[i].n_required ? r[i].required[a] : r[i].optional[a - r[i].n_required];
        if (fa[0] == 0 || strchr(fa, '=') != NULL) {
            err(c, line, "%s: field name %s may not be empty or contain '='", path,
                show(sh, fa, strlen(fa)));
            continue;
        }
        for (const char *q = fa; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f) {
                err(c, line, "%s: field name %s contains a control character", path,
                    show(sh, fa, strlen(fa)));
                break;
            }
        for (size_t b = 0; b < a; b++) {
            const char *fb =
                b < r[i].n_required ? r[i].required[b] : r[i].optional[b - r[i].n_required];
            if (strcmp(fa, fb) == 0)
                err(c, line, "%s: field %s is listed twice", path, show(sh, fa, strlen(fa)));
        }
    }
}

/* The 対策基準's records, when the file has no records: section. */
static const struct {
    const char *type;
    const char *required[8];
    const char *optional[4];
} builtin_records[] = {
    {"入退室", {"氏名", "入室時刻", "退室時刻", "目的", "立会者"}, {"所属", "区域", "備考"}},
    {"媒体廃棄", {"媒体", "識別番号", "廃棄方法", "実施者", "確認者", "実施日"}, {"備考"}},
    {"変更作業", {"システム", "内容", "実施者", "承認者", "実施日時"}, {"備考"}},
    {"障害", {"システム", "発生日時", "内容", "対応", "報告者"}, {"復旧日時", "備考"}},
    {"修正プログラム適用", {"システム", "修正プログラム", "実施者", "実施日時"}, {"備考"}},
    {"例外措置", {"内容", "理由", "申請者", "許可者", "期間"}, {"備考"}},
};

static char **strv_dup(const char *const *v, size_t max, size_t *n)
{
    *n = 0;
    while (*n < max && v[*n])
        (*n)++;
    char **out = xcalloc(*n ? *n : 1, sizeof *out);
    for (size_t i = 0; i < *n; i++)
        out[i] = xstrdup(v[i]);
    return out;
}

static void records_defaults(policy *p)
{
    size_t n = sizeof builtin_records / sizeof builtin_records[0];
    p->record_types = xcalloc(n, sizeof *p->record_types);
    p->n_record_types = n;
    for (size_t i = 0; i < n; i++) {
        policy_record_type *r = &p->record_types[i];
        r->type = xstrdup(builtin_records[i].type);
        r->required = strv_dup(builtin_records[i].required, 8, &r->n_required);
        r->optional = strv_dup(builtin_records[i].optional, 4, &r->n_optional);
        r->extra_fields = 0;
    }
}

static void records_free(policy *p)
{
    for (size_t i = 0; i < p->n_record_types; i++)
        free_record(&record_type_section, &p->record_types[i]);
    free(p->record_types);
}

const policy_record_type *policy_record_type_find(const policy *p, const char *type)
{
    for (size_t i = 0; p && i < p->n_record_types; i++)
        if (p->record_types[i].type && strcmp(p->record_types[i].type, type) == 0)
            return &p->record_types[i];
    return NULL;
}

/* ---- end of records: ---------------------------------------------------------- */

/* ---- intake: (sekisho syslogd) -------------------------------------------------- */

#define IN(f) offsetof(policy, intake.f)
static const field intake_fields[] = {
    {"unix", T_PATH, IN(unix_socket), 0, 0, 0, NULL, NULL, 0},
    {"udp", T_TEXT, IN(udp), 0, 0, 64, NULL, NULL, 0},
    {"tcp", T_TEXT, IN(tcp), 0, 0, 64, NULL, NULL, 0},
    {"max_message_size", T_SIZE, IN(max_message_bytes), 0, 2048, 65536, NULL, NULL, 0},
    {"max_connections", T_COUNT, IN(max_connections), 0, 1, 4096, NULL, NULL, 0},
    {"rate", T_COUNT, IN(rate), 0, 0, 100000000, NULL, NULL, 0},
};
#undef IN
static const section intake_section = {"intake", intake_fields, NFIELDS(intake_fields), 0, NULL};

static void intake_defaults(policy *p)
{
    p->intake.unix_socket = NULL;
    p->intake.udp = xstrdup("127.0.0.1:514");
    p->intake.tcp = xstrdup("127.0.0.1:601");
    p->intake.max_message_bytes = 8192;
    p->intake.max_connections = 64;
    p->intake.rate = 20000;
}

static void intake_free(policy *p)
{
    free(p->intake.unix_socket);
    free(p->intake.udp);
    free(p->intake.tcp);
}

/* ---- end of intake: ------------------------------------------------------------- */

static const field top_fields[] = {
    {"organization", T_SECTION, 0, 0, 0, 0, &organization_section, NULL, 0},
    {"state_dir", T_PATH, offsetof(policy, state_dir), 0, 0, 0, NULL, NULL, 0},
    {"zones", T_LIST, offsetof(policy, zones), offsetof(policy, n_zones), 0, 0, &zone_section, NULL,
     0},
    {"roles", T_LIST, offsetof(policy, roles), offsetof(policy, n_roles), 0, 0, &role_section, NULL,
     0},
    {"classification", T_SECTION, 0, 0, 0, 0, &classification_section, NULL, 0},
    {"mail", T_SECTION, 0, 0, 0, 0, &mail_section, NULL, 0},
    {"gateway", T_SECTION, 0, 0, 0, 0, &gateway_section, NULL, 0},
    {"ledger", T_SECTION, 0, 0, 0, 0, &ledger_section, NULL, 0},
    /* Sections of later issues: an error until they are implemented. */
    {"intake", T_SECTION, 0, 0, 0, 0, &intake_section, NULL, 0},
    {"records", T_LIST, offsetof(policy, record_types), offsetof(policy, n_record_types), 0, 0,
     &record_type_section, NULL, 0},
    {"fim", T_UNSUPPORTED, 0, 0, 0, 0, NULL, NULL, 0},
    {"outbound", T_UNSUPPORTED, 0, 0, 0, 0, NULL, NULL, 0},
    {"audit", T_UNSUPPORTED, 0, 0, 0, 0, NULL, NULL, 0},
};
static const section top_section = {"", top_fields, NFIELDS(top_fields), 0, NULL};

/* ---- stage 3: scalar parsers ---------------------------------------------- */

static int is_null(const ynode *y)
{
    if (y->type != Y_SCALAR || !y->plain)
        return 0;
    return y->len == 0 || strcmp(y->value, "~") == 0 || strcmp(y->value, "null") == 0 ||
           strcmp(y->value, "Null") == 0 || strcmp(y->value, "NULL") == 0;
}

static const char *type_name(const ynode *y)
{
    switch (y->type) {
    case Y_MAP:
        return "a mapping";
    case Y_SEQ:
        return "a sequence";
    default:
        return is_null(y) ? "an empty value" : "a scalar";
    }
}

/* Plain decimal digits into *v; -1 on anything else, -2 on overflow. */
static int parse_u64(const char *s, size_t len, uint64_t *v)
{
    if (len == 0 || len > 40)
        return -1;
    uint64_t r = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (r > (UINT64_MAX - d) / 10)
            return -2;
        r = r * 10 + d;
    }
    *v = r;
    return 0;
}

/* Digits, optional blanks, then a unit from units[] (multiplier in mult[]).
 * No unit: mult_none. -1 syntax, -2 overflow. */
static int parse_with_unit(const char *s, size_t len, const char *const *units,
                           const uint64_t *mult, uint64_t mult_none, uint64_t *v)
{
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == 0)
        return -1;
    uint64_t num;
    int rc = parse_u64(s, i, &num);
    if (rc)
        return rc;
    size_t j = i;
    while (j < len && s[j] == ' ')
        j++;
    uint64_t m;
    if (j == len) {
        if (j != i)
            return -1;
        m = mult_none;
    } else {
        size_t k;
        for (k = 0; units[k]; k++)
            if (strlen(units[k]) == len - j && memcmp(units[k], s + j, len - j) == 0)
                break;
        if (units[k] == NULL)
            return -1;
        m = mult[k];
    }
    if (num != 0 && m > UINT64_MAX / num)
        return -2;
    *v = num * m;
    return 0;
}

static const char *const size_units[] = {"B", "KB", "KiB", "K", "MB", "MiB",
                                         "M", "GB", "GiB", "G", NULL};
static const uint64_t size_mult[] = {1, KIB, KIB, KIB, MIB, MIB, MIB, GIB, GIB, GIB};
static const char *const dur_units[] = {"ms", "s", "m", "min", "h", NULL};
static const uint64_t dur_mult[] = {1, 1000, 60000, 60000, 3600000};

/* "1 KiB", "50 MiB", or plain bytes when not a whole number of a unit. */
static const char *fmt_size(char out[32], uint64_t v)
{
    if (v >= GIB && v % GIB == 0)
        snprintf(out, 32, "%llu GiB", (unsigned long long)(v / GIB));
    else if (v >= MIB && v % MIB == 0)
        snprintf(out, 32, "%llu MiB", (unsigned long long)(v / MIB));
    else if (v >= KIB && v % KIB == 0)
        snprintf(out, 32, "%llu KiB", (unsigned long long)(v / KIB));
    else
        snprintf(out, 32, "%llu bytes", (unsigned long long)v);
    return out;
}

static const char *fmt_ms(char out[32], uint64_t v)
{
    if (v >= 60000 && v % 60000 == 0)
        snprintf(out, 32, "%llum", (unsigned long long)(v / 60000));
    else if (v >= 1000 && v % 1000 == 0)
        snprintf(out, 32, "%llus", (unsigned long long)(v / 1000));
    else
        snprintf(out, 32, "%llums", (unsigned long long)v);
    return out;
}

/* A string value: any scalar, but not empty/null-looking unquoted, and without
 * control characters. Returns the value or NULL after reporting. */
static const char *get_text(ctx *c, const ynode *y, const char *path, size_t max, int nonempty)
{
    char sh[128];
    if (y->type == Y_BAD)
        return NULL;
    if (y->type != Y_SCALAR) {
        err(c, y->line, "%s: expected a string, got %s", path, type_name(y));
        return NULL;
    }
    if (is_null(y)) {
        err(c, y->line, "%s: no value given (write \"\" for an empty string)", path);
        return NULL;
    }
    if (nonempty && y->len == 0) {
        err(c, y->line, "%s: may not be empty", path);
        return NULL;
    }
    for (size_t i = 0; i < y->len; i++) {
        unsigned char ch = (unsigned char)y->value[i];
        if (ch < 0x20 || ch == 0x7f) {
            err(c, y->line, "%s: %s contains a control character (\\x%02x)", path,
                show(sh, y->value, y->len), ch);
            return NULL;
        }
    }
    if (max && y->len > max) {
        err(c, y->line, "%s: too long (%zu bytes, at most %llu)", path, y->len,
            (unsigned long long)max);
        return NULL;
    }
    return y->value;
}

static int valid_domain(const char *s, size_t len, const char **why)
{
    if (len == 0 || len > 253) {
        *why = "must be 1 to 253 characters";
        return 0;
    }
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char ch = i < len ? s[i] : '.';
        if (ch == '.') {
            if (label == 0) {
                *why = i == len ? "ends with a dot" : "has an empty label";
                return 0;
            }
            if (s[i - 1] == '-') {
                *why = "has a label ending in '-'";
                return 0;
            }
            label = 0;
            continue;
        }
        if ((unsigned char)ch >= 0x80) {
            *why = "has non-ASCII characters (write an internationalized name in its xn-- form)";
            return 0;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-')) {
            *why = "may hold only letters, digits, '-' and '.'";
            return 0;
        }
        if (ch == '-' && label == 0) {
            *why = "has a label starting with '-'";
            return 0;
        }
        if (++label > 63) {
            *why = "has a label longer than 63 characters";
            return 0;
        }
    }
    return 1;
}

/* "addr/prefix"; fills af/addr/prefix. Returns NULL or the reason. */
static const char *parse_cidr(const char *s, size_t len, int *af, unsigned char addr[16],
                              unsigned *prefix)
{
    const char *slash = memchr(s, '/', len);
    if (slash == NULL)
        return "is not a network: write address/prefix, e.g. 10.20.0.0/16 or 2001:db8::/32";
    size_t alen = (size_t)(slash - s);
    char a[64];
    if (alen == 0 || alen >= sizeof a)
        return "has no valid address before '/'";
    memcpy(a, s, alen);
    a[alen] = 0;
    *af = memchr(a, ':', alen) ? AF_INET6 : AF_INET;
    memset(addr, 0, 16);
    if (inet_pton(*af, a, addr) != 1)
        return *af == AF_INET6 ? "has an invalid IPv6 address" : "has an invalid IPv4 address";
    const char *ps = slash + 1;
    size_t plen = len - alen - 1;
    uint64_t pv;
    if (plen == 0 || plen > 3 || parse_u64(ps, plen, &pv) != 0 || (plen > 1 && ps[0] == '0'))
        return "has an invalid prefix length after '/'";
    unsigned maxp = *af == AF_INET6 ? 128 : 32;
    if (pv > maxp)
        return *af == AF_INET6 ? "has a prefix length over 128" : "has a prefix length over 32";
    *prefix = (unsigned)pv;
    unsigned nbytes = maxp / 8;
    for (unsigned bit = *prefix; bit < nbytes * 8; bit++)
        if (addr[bit / 8] & (0x80u >> (bit % 8)))
            return "has host bits set after the prefix (use the network address)";
    return NULL;
}

/* ---- stage 3: applying ----------------------------------------------------- */

static void apply_section(ctx *c, const section *s, const ynode *map, void *base, const char *path);

/* "path[i]" into out[256]; a path never gets near that (known keys only,
 * nesting at most POLICY_MAX_DEPTH), but cut rather than overflow. */
static void index_path(char out[256], const char *path, size_t i)
{
    int r = snprintf(out, 256, "%s[%zu]", path, i);
    if (r < 0 || r >= 256)
        memcpy(out + 252, "...", 4);
}

static void set_text(void *base, size_t off, const char *v)
{
    char **slot = (char **)((char *)base + off);
    free(*slot);
    *slot = xstrdup(v);
}

static void free_list(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void apply_list(ctx *c, const field *f, const ynode *y, void *base, const char *path)
{
    char sh[128], sub[256];
    char ***slot = (char ***)((char *)base + f->off);
    size_t *count = (size_t *)((char *)base + f->off_n);
    if (y->type == Y_BAD)
        return;
    if (is_null(y)) {
        free_list(*slot, *count);
        *slot = NULL;
        *count = 0;
        return;
    }
    if (y->type != Y_SEQ) {
        err(c, y->line, "%s: expected a sequence (a list such as [a, b] or '- a' lines), got %s",
            path, type_name(y));
        return;
    }
    if (y->n > POLICY_MAX_LIST) {
        err(c, y->line, "%s: too many entries (%zu, at most %d)", path, y->n, POLICY_MAX_LIST);
        return;
    }
    char **v = xcalloc(y->n ? y->n : 1, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < y->n; i++) {
        const ynode *it = y->items[i];
        index_path(sub, path, i);
        const char *t = get_text(c, it, sub, f->type == T_TEXTLIST ? f->max : 0, 1);
        if (t == NULL)
            continue;
        const char *why = NULL;
        if (f->type == T_DOMAINLIST) {
            if (!valid_domain(t, it->len, &why)) {
                err(c, it->line, "%s: %s is not a valid domain name: %s", sub, show(sh, t, it->len),
                    why);
                continue;
            }
        } else if (f->type == T_CIDRLIST) {
            int af;
            unsigned char a[16];
            unsigned pfx;
            why = parse_cidr(t, it->len, &af, a, &pfx);
            if (why) {
                err(c, it->line, "%s: %s %s", sub, show(sh, t, it->len), why);
                continue;
            }
        }
        size_t dup = n;
        for (size_t k = 0; k < n; k++)
            if (strcasecmp(v[k], t) == 0)
                dup = k;
        if (dup < n) {
            err(c, it->line, "%s: %s is listed twice", sub, show(sh, t, it->len));
            continue;
        }
        v[n] = xstrdup(t);
        if (f->type == T_DOMAINLIST)
            for (char *q = v[n]; *q; q++)
                if (*q >= 'A' && *q <= 'Z')
                    *q = (char)(*q - 'A' + 'a');
        n++;
    }
    free_list(*slot, *count);
    *slot = v;
    *count = n;
}

/* Frees one record of a T_LIST section: its text and list fields. */
static void free_record(const section *s, void *rec)
{
    for (size_t i = 0; i < s->n; i++) {
        const field *f = &s->fields[i];
        char *at = (char *)rec + f->off;
        if (f->type == T_TEXT || f->type == T_PATH || f->type == T_ENUM_TEXT)
            free(*(char **)at);
        else if (f->type == T_TEXTLIST || f->type == T_DOMAINLIST || f->type == T_CIDRLIST)
            free_list(*(char ***)at, *(size_t *)((char *)rec + f->off_n));
    }
}

static void apply_records(ctx *c, const field *f, const ynode *y, void *base, const char *path)
{
    char sub[256];
    const section *s = f->sub;
    void **slot = (void **)((char *)base + f->off);
    size_t *count = (size_t *)((char *)base + f->off_n);
    if (y->type == Y_BAD)
        return;
    if (is_null(y))
        return; /* "zones:" alone: none */
    if (y->type != Y_SEQ) {
        err(c, y->line, "%s: expected a sequence of mappings ('- name: ...' entries), got %s", path,
            type_name(y));
        return;
    }
    if (y->n > POLICY_MAX_LIST) {
        err(c, y->line, "%s: too many entries (%zu, at most %d)", path, y->n, POLICY_MAX_LIST);
        return;
    }
    /* Replace what is there (the defaults have none). */
    for (size_t i = 0; i < *count; i++)
        free_record(s, (char *)*slot + i * s->elem_size);
    free(*slot);
    *slot = xcalloc(y->n ? y->n : 1, s->elem_size);
    *count = 0;
    for (size_t i = 0; i < y->n; i++) {
        const ynode *it = y->items[i];
        index_path(sub, path, i);
        if (it->type == Y_BAD)
            continue;
        if (it->type != Y_MAP) {
            err(c, it->line, "%s: expected a mapping (name: ... and its keys), got %s", sub,
                type_name(it));
            continue;
        }
        void *rec = (char *)*slot + *count * s->elem_size;
        (*count)++;
        apply_section(c, s, it, rec, sub);
        if (s->check)
            s->check(c, *slot, *count - 1, it, sub);
    }
}

static int get_bool(ctx *c, const ynode *y, const char *path, int *out)
{
    char sh[128];
    if (y->type == Y_SCALAR && y->plain) {
        static const char *const t[] = {"true", "True", "TRUE", "yes", "Yes", "YES"};
        static const char *const f[] = {"false", "False", "FALSE", "no", "No", "NO"};
        for (size_t i = 0; i < 6; i++) {
            if (strcmp(y->value, t[i]) == 0) {
                *out = 1;
                return 0;
            }
            if (strcmp(y->value, f[i]) == 0) {
                *out = 0;
                return 0;
            }
        }
    }
    if (y->type == Y_SCALAR)
        err(c, y->line, "%s: expected a boolean (true, false, yes or no, unquoted), got %s", path,
            is_null(y) ? "an empty value" : show(sh, y->value, y->len));
    else if (y->type != Y_BAD)
        err(c, y->line, "%s: expected a boolean (true, false, yes or no), got %s", path,
            type_name(y));
    return -1;
}

static void apply_number(ctx *c, const field *f, const ynode *y, void *base, const char *path)
{
    char sh[128], lo[32], hi[32], got[32];
    if (y->type == Y_BAD)
        return;
    const char *what = f->type == T_COUNT  ? "an integer"
                       : f->type == T_SIZE ? "a size (bytes, or e.g. 512KB, 50MB, 1GB)"
                                           : "a duration (milliseconds, or e.g. 500ms, 30s, 2m)";
    if (y->type != Y_SCALAR || is_null(y)) {
        err(c, y->line, "%s: expected %s, got %s", path, what, type_name(y));
        return;
    }
    uint64_t v = 0;
    int rc;
    if (f->type == T_COUNT) {
        rc = y->plain ? parse_u64(y->value, y->len, &v) : -1;
    } else if (f->type == T_SIZE) {
        rc = parse_with_unit(y->value, y->len, size_units, size_mult, 1, &v);
    } else {
        rc = parse_with_unit(y->value, y->len, dur_units, dur_mult, 1, &v);
    }
    if (rc == -1) {
        err(c, y->line, "%s: expected %s, got %s%s", path, what, show(sh, y->value, y->len),
            f->type == T_COUNT && !y->plain ? " (quoted)" : "");
        return;
    }
    if (rc == -2 || v < f->min || v > f->max) {
        if (f->type == T_SIZE)
            err(c, y->line, "%s: %s is out of range (%s to %s)", path,
                rc == -2 ? show(sh, y->value, y->len) : fmt_size(got, v), fmt_size(lo, f->min),
                fmt_size(hi, f->max));
        else if (f->type == T_DURATION)
            err(c, y->line, "%s: %s is out of range (%s to %s)", path,
                rc == -2 ? show(sh, y->value, y->len) : fmt_ms(got, v), fmt_ms(lo, f->min),
                fmt_ms(hi, f->max));
        else
            err(c, y->line, "%s: %s is out of range (%llu to %llu)", path,
                show(sh, y->value, y->len), (unsigned long long)f->min, (unsigned long long)f->max);
        return;
    }
    *(uint64_t *)((char *)base + f->off) = v;
    if (f->flags & F_HDR)
        c->hdr_line = y->line;
}

static void apply_field(ctx *c, const field *f, const ynode *y, void *base, const char *path)
{
    char sh[128];
    switch (f->type) {
    case T_SECTION:
        apply_section(c, f->sub, y, base, path);
        break;
    case T_LIST:
        apply_records(c, f, y, base, path);
        break;
    case T_TEXT: {
        const char *t = get_text(c, y, path, f->max, (f->flags & F_NONEMPTY) != 0);
        if (t)
            set_text(base, f->off, t);
        break;
    }
    case T_PATH: {
        const char *t = get_text(c, y, path, POLICY_MAX_PATH, 1);
        if (t == NULL)
            break;
        if (t[0] != '/' || strlen(t) != y->len) {
            err(c, y->line, "%s: %s must be an absolute path (starting with /)", path,
                show(sh, t, y->len));
            break;
        }
        set_text(base, f->off, t);
        if (f->flags & F_QDIR)
            c->qdir_set = 1;
        if (f->flags & F_LDIR)
            c->ldir_set = 1;
        if (f->flags & F_LKEY)
            c->lkey_set = 1;
        break;
    }
    case T_TEXTLIST:
    case T_DOMAINLIST:
    case T_CIDRLIST:
        apply_list(c, f, y, base, path);
        break;
    case T_ENUM_INT:
    case T_ENUM_TEXT: {
        if (y->type == Y_BAD)
            break;
        size_t k = 0;
        if (y->type == Y_SCALAR)
            for (k = 0; f->choices[k]; k++)
                if (strcmp(f->choices[k], y->value) == 0 && strlen(y->value) == y->len)
                    break;
        if (y->type != Y_SCALAR || f->choices[k] == NULL) {
            char list[128] = "";
            for (size_t j = 0; f->choices[j]; j++) {
                if (j)
                    strcat(list, j + 1 < 8 && f->choices[j + 1] ? ", " : " or ");
                strcat(list, f->choices[j]);
            }
            err(c, y->line, "%s: expected %s, got %s", path, list,
                y->type == Y_SCALAR ? show(sh, y->value, y->len) : type_name(y));
            break;
        }
        if (f->type == T_ENUM_INT)
            *(int *)((char *)base + f->off) = (int)k;
        else
            set_text(base, f->off, f->choices[k]);
        break;
    }
    case T_BOOL: {
        int b;
        if (get_bool(c, y, path, &b) == 0)
            *(int *)((char *)base + f->off) = b;
        break;
    }
    case T_COUNT:
    case T_SIZE:
    case T_DURATION:
        apply_number(c, f, y, base, path);
        break;
    case T_UNSUPPORTED:
        break;
    }
}

static void apply_section(ctx *c, const section *s, const ynode *map, void *base, const char *path)
{
    char sh[128], sub[256];
    size_t seen[16] = {0};
    if (s->n > 16)
        msg_panic("policy: section %s has more than 16 keys", s->name);
    if (map->type == Y_BAD || is_null(map))
        goto required;
    if (map->type != Y_MAP) {
        err(c, map->line, "%s%sexpected a mapping (key: value lines), got %s", path,
            *path ? ": " : "", type_name(map));
        return;
    }
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const ynode *k = map->items[i], *v = map->items[i + 1];
        if (k->type == Y_BAD)
            continue;
        if (k->type != Y_SCALAR) {
            err(c, k->line, "%s%skeys must be plain words, got %s", path, *path ? ": " : "",
                type_name(k));
            continue;
        }
        size_t j;
        for (j = 0; j < s->n; j++)
            if (strcmp(s->fields[j].key, k->value) == 0 && strlen(k->value) == k->len)
                break;
        if (*path)
            snprintf(sub, sizeof sub, "%s.%s", path, j < s->n ? s->fields[j].key : "?");
        else
            snprintf(sub, sizeof sub, "%s", j < s->n ? s->fields[j].key : "?");
        if (j == s->n) {
            char valid[512] = "";
            size_t o = 0;
            for (size_t q = 0; q < s->n && o < sizeof valid; q++)
                if (s->fields[q].type != T_UNSUPPORTED)
                    o += (size_t)snprintf(valid + o, sizeof valid - o, "%s%s", o ? ", " : "",
                                          s->fields[q].key);
            err(c, k->line, "%s%sunknown key %s; valid keys%s%s: %s", path, *path ? ": " : "",
                show(sh, k->value, k->len), *path ? " in " : " at the top level", *path ? path : "",
                valid);
            continue;
        }
        if (s->fields[j].type == T_UNSUPPORTED) {
            err(c, k->line, "%s: this section is not supported by this version of sekisho yet",
                s->fields[j].key);
            continue;
        }
        if (seen[j]) {
            err(c, k->line, "%s: duplicate key (first given at line %zu)", sub, seen[j]);
            continue;
        }
        seen[j] = k->line;
        apply_field(c, &s->fields[j], v, base, sub);
    }
required:
    for (size_t j = 0; j < s->n; j++)
        if ((s->fields[j].flags & F_REQUIRED) && !seen[j] && map->type != Y_BAD)
            err(c, map->line, "%s: missing required key '%s'", path, s->fields[j].key);
}

/* ---- stage 4: cross-checks ------------------------------------------------- */

static const ynode *map_get(const ynode *map, const char *key)
{
    if (map->type != Y_MAP)
        return NULL;
    for (size_t i = 0; i + 1 < map->n; i += 2)
        if (map->items[i]->type == Y_SCALAR && strcmp(map->items[i]->value, key) == 0)
            return map->items[i + 1];
    return NULL;
}

static int nets_overlap(const net_seen *a, const net_seen *b)
{
    if (a->af != b->af)
        return 0;
    unsigned bits = a->prefix < b->prefix ? a->prefix : b->prefix;
    for (unsigned i = 0; i < bits; i++) {
        unsigned m = 0x80u >> (i % 8);
        if ((a->addr[i / 8] & m) != (b->addr[i / 8] & m))
            return 0;
    }
    return 1;
}

static void check_zone(ctx *c, void *records, size_t i, const ynode *item, const char *path)
{
    char sh[128];
    policy_zone *z = records;
    const ynode *name = map_get(item, "name");
    for (size_t k = 0; k < i && z[i].name; k++)
        if (z[k].name && strcmp(z[k].name, z[i].name) == 0)
            err(c, name ? name->line : item->line,
                "%s.name: zone name %s is already used by zones[%zu]", path,
                show(sh, z[i].name, strlen(z[i].name)), k);
    /* A host must be in one zone only: the zone firewall and the mail gateway
     * decide by it. Compare this zone's networks with every earlier zone's. */
    const ynode *nets = map_get(item, "networks");
    if (nets == NULL || nets->type != Y_SEQ)
        return;
    size_t first_new = c->n_nets;
    for (size_t n = 0; n < nets->n; n++) {
        const ynode *it = nets->items[n];
        net_seen ns;
        if (it->type != Y_SCALAR ||
            parse_cidr(it->value, it->len, &ns.af, ns.addr, &ns.prefix) != NULL)
            continue;
        ns.zone = i;
        ns.line = it->line;
        ns.text = it->value;
        for (size_t k = 0; k < first_new; k++)
            if (nets_overlap(&c->nets[k], &ns))
                err(c, ns.line,
                    "%s.networks[%zu]: %s overlaps %s of zones[%zu] (line %zu); "
                    "a network belongs to one zone only",
                    path, n, ns.text, c->nets[k].text, c->nets[k].zone, c->nets[k].line);
        if (c->n_nets == POLICY_MAX_NETWORKS) {
            if (!c->nets_overflow)
                err(c, ns.line, "%s.networks[%zu]: more than %d networks over all zones", path, n,
                    POLICY_MAX_NETWORKS);
            c->nets_overflow = 1;
            continue;
        }
        c->nets[c->n_nets++] = ns;
    }
}

static void check_role(ctx *c, void *records, size_t i, const ynode *item, const char *path)
{
    char sh[128];
    policy_role *r = records;
    const ynode *name = map_get(item, "name");
    for (size_t k = 0; k < i && r[i].name; k++)
        if (r[k].name && strcmp(r[k].name, r[i].name) == 0)
            err(c, name ? name->line : item->line,
                "%s.name: role %s is already defined by roles[%zu]", path,
                show(sh, r[i].name, strlen(r[i].name)), k);
}

/* ---- public ---------------------------------------------------------------- */

/* The ledger's paths under state_dir, for those the file did not set. */
static void set_state_paths(policy *p, int dir, int key)
{
    if (dir) {
        size_t n = strlen(p->state_dir) + sizeof "/ledger";
        free(p->ledger.dir);
        p->ledger.dir = xmalloc(n);
        snprintf(p->ledger.dir, n, "%s/ledger", p->state_dir);
    }
    if (key) {
        size_t n = strlen(p->state_dir) + sizeof "/ledger-signing.key";
        free(p->ledger.key_file);
        p->ledger.key_file = xmalloc(n);
        snprintf(p->ledger.key_file, n, "%s/ledger-signing.key", p->state_dir);
    }
}

policy *policy_default(void)
{
    policy *p = xcalloc(1, sizeof *p);
    const char *sd = getenv("SEKISHO_STATE_DIR");
    p->source = xstrdup("(built-in defaults)");
    p->organization = xstrdup("");
    p->state_dir = xstrdup(sd && *sd ? sd : "/var/lib/sekisho");
    size_t n = strlen(p->state_dir) + sizeof "/quarantine";
    p->quarantine_dir = xmalloc(n);
    snprintf(p->quarantine_dir, n, "%s/quarantine", p->state_dir);
    p->mail.subject_tag = xstrdup("[外部]");
    p->mail.prefer_html = 0;
    p->mail.defang_links = 1;
    p->mail.english = 0;
    p->mail.retention_days = 90;
    p->mail.limits.max_message_bytes = 50 * MIB;
    p->mail.limits.max_header_bytes = 1 * MIB;
    p->mail.limits.max_headers = 10000;
    p->mail.limits.max_depth = 20;
    p->mail.limits.max_parts = 1000;
    p->mail.limits.max_decoded_bytes = 256 * MIB;
    p->mail.limits.max_text_bytes = 16 * MIB;
    p->mail.limits.time_limit_ms = 30000;
    set_state_paths(p, 1, 1);
    p->ledger.checkpoint_entries = 100000;
    p->ledger.checkpoint_interval_ms = 10000;
    p->ledger.segment_daily = 0;
    p->ledger.retention_days = 0;
    gateway_defaults(p);
    records_defaults(p);
    intake_defaults(p);
    return p;
}

void policy_free(policy *p)
{
    if (p == NULL)
        return;
    free(p->source);
    free(p->organization);
    free_list(p->internal_domains, p->n_internal_domains);
    for (size_t i = 0; i < p->n_zones; i++)
        free_record(&zone_section, &p->zones[i]);
    free(p->zones);
    for (size_t i = 0; i < p->n_roles; i++)
        free_record(&role_section, &p->roles[i]);
    free(p->roles);
    free_list(p->confidentiality_levels, p->n_confidentiality_levels);
    free_list(p->integrity_levels, p->n_integrity_levels);
    free_list(p->availability_levels, p->n_availability_levels);
    free_list(p->importance_levels, p->n_importance_levels);
    free(p->state_dir);
    free(p->quarantine_dir);
    free(p->mail.subject_tag);
    free(p->ledger.dir);
    free(p->ledger.key_file);
    gateway_free(p);
    records_free(p);
    intake_free(p);
    free(p);
}

policy *policy_load_mem(const char *name, const uint8_t *data, size_t n, buf *errors)
{
    buf dropped;
    buf_init(&dropped, 1 << 16);
    ctx *c = xcalloc(1, sizeof *c);
    c->name = name ? name : "(policy)";
    c->errors = errors ? errors : &dropped;
    policy *p = NULL;
    ynode *root = NULL;

    if (n > POLICY_MAX_FILE) {
        err(c, 0, "larger than %zu bytes (1 MiB); a policy file is never that big",
            POLICY_MAX_FILE);
        goto out;
    }
    if (!check_utf8(c, data, n))
        goto out;
    int fatal;
    root = build_tree(c, data, n, &fatal);
    if (fatal)
        goto out;
    p = policy_default();
    c->p = p;
    if (root) {
        if (root->type == Y_MAP || is_null(root))
            apply_section(c, &top_section, root, p, "");
        else if (root->type != Y_BAD)
            err(c, root->line,
                "expected a mapping of sections (organization:, zones:, mail:, "
                "...) at the top level, got %s",
                type_name(root));
    }
    if (!c->qdir_set) {
        size_t qn = strlen(p->state_dir) + sizeof "/quarantine";
        free(p->quarantine_dir);
        p->quarantine_dir = xmalloc(qn);
        snprintf(p->quarantine_dir, qn, "%s/quarantine", p->state_dir);
    }
    set_state_paths(p, !c->ldir_set, !c->lkey_set);
    /* A header block cannot be larger than the message: an explicit value that
     * says otherwise is a mistake; the default just follows a small message
     * size down. */
    policy_mail_limits *lim = &p->mail.limits;
    if (lim->max_header_bytes > lim->max_message_bytes) {
        char a[32], b[32];
        if (c->hdr_line)
            err(c, c->hdr_line,
                "mail.limits.max_header_size: %s is larger than max_message_size (%s)",
                fmt_size(a, lim->max_header_bytes), fmt_size(b, lim->max_message_bytes));
        else
            lim->max_header_bytes = lim->max_message_bytes;
    }
    if (root)
        check_gateway(c, root);
    free(p->source);
    p->source = xstrdup(c->name);
out:
    if (c->nerr > 0) {
        policy_free(p);
        p = NULL;
    }
    ynode_free(root);
    free(c);
    buf_free(&dropped);
    return p;
}

policy *policy_load_bytes(const char *path, buf *data, buf *errors)
{
    buf dropped;
    buf_init(&dropped, 1 << 16);
    buf *e = errors ? errors : &dropped;
    buf_reset(data);
    if (data->max > POLICY_MAX_FILE)
        data->max = POLICY_MAX_FILE;
    policy *p = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        buf_printf(e, "%s: cannot open: %s\n", path, strerror(errno));
        goto out;
    }
    int rc = fileio_read_fd(fd, data);
    close(fd);
    if (rc == -EFBIG || rc == -ENOSPC) {
        buf_printf(e, "%s: larger than %zu bytes (1 MiB); a policy file is never that big\n", path,
                   POLICY_MAX_FILE);
        goto out;
    }
    if (rc < 0) {
        buf_printf(e, "%s: cannot read: %s\n", path, strerror(-rc));
        goto out;
    }
    p = policy_load_mem(path, data->p ? data->p : (const uint8_t *)"", data->len, e);
out:
    buf_free(&dropped);
    return p;
}

policy *policy_load(const char *path, buf *errors)
{
    buf data;
    buf_init(&data, POLICY_MAX_FILE);
    policy *p = policy_load_bytes(path, &data, errors);
    buf_free(&data);
    return p;
}

int policy_domain_is_internal(const policy *p, const char *domain)
{
    if (p == NULL || domain == NULL)
        return 0;
    size_t dl = strlen(domain);
    if (dl > 0 && domain[dl - 1] == '.')
        dl--;
    if (dl == 0)
        return 0;
    for (size_t i = 0; i < p->n_internal_domains; i++) {
        const char *d = p->internal_domains[i];
        size_t n = strlen(d);
        if (n == 0 || n > dl)
            continue;
        if (strncasecmp(domain + dl - n, d, n) != 0)
            continue;
        if (n == dl || domain[dl - n - 1] == '.')
            return 1;
    }
    return 0;
}
