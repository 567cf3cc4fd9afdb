/*
 * decision - decision records in the ledger. See decision.h.
 */
#include "decision.h"

#include "jcs.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void decision_json_str(buf *out, const char *s)
{
    s = s ? s : "";
    jcs_put_string_lossy(out, s, strlen(s));
}

static void key(buf *out, int *first, const char *k)
{
    if (!*first)
        buf_putc(out, ',');
    *first = 0;
    decision_json_str(out, k);
    buf_putc(out, ':');
}

/* A value longer than this (a header a sender made huge) is cut at a
 * character boundary and marked, so that every decision fits in one entry
 * (LEDGER_MAX_ENTRY) and can always be recorded. */
#define FIELD_MAX 2048

static void str_field(buf *out, int *first, const char *k, const char *v)
{
    if (v == NULL)
        return;
    key(out, first, k);
    size_t n = strlen(v);
    if (n <= FIELD_MAX) {
        decision_json_str(out, v);
        return;
    }
    size_t cut = FIELD_MAX;
    while (cut > 0 && ((unsigned char)v[cut] & 0xC0) == 0x80)
        cut--; /* not inside a UTF-8 sequence */
    char *tmp = malloc(cut + 64);
    if (tmp == NULL) {
        out->err = out->err ? out->err : -ENOMEM;
        return;
    }
    memcpy(tmp, v, cut);
    snprintf(tmp + cut, 64, "…(%zu bytes in all)", n);
    decision_json_str(out, tmp);
    free(tmp);
}

static void num_field(buf *out, int *first, const char *k, uint64_t v)
{
    key(out, first, k);
    buf_printf(out, "%" PRIu64, v);
}

int decision_mail_fields(const char *type, const decision_mail *m, buf *out)
{
    if (type == NULL || m == NULL)
        return -EINVAL;
    int first = 1;
    buf_putc(out, '{');
    if (strcmp(type, "mail.received") == 0 || strcmp(type, "mail.passed") == 0) {
        int received = type[5] == 'r';
        if (received)
            str_field(out, &first, "quarantine_id", m->quarantine_id);
        str_field(out, &first, "message_id", m->message_id);
        str_field(out, &first, "from", m->from);
        str_field(out, &first, "to", m->to);
        if (m->rcpt != NULL) {
            key(out, &first, "rcpt");
            buf_putc(out, '[');
            for (size_t i = 0; i < m->n_rcpt; i++) {
                if (i)
                    buf_putc(out, ',');
                decision_json_str(out, m->rcpt[i]);
            }
            buf_putc(out, ']');
        }
        str_field(out, &first, "client_addr", m->client_addr);
        str_field(out, &first, "zone", m->zone);
        if (received) {
            num_field(out, &first, "size", m->size);
            str_field(out, &first, "sha256", m->sha256);
        }
    } else if (strcmp(type, "mail.sanitized") == 0) {
        str_field(out, &first, "quarantine_id", m->quarantine_id);
        str_field(out, &first, "message_id", m->message_id);
        num_field(out, &first, "removed_parts", m->removed_parts);
        num_field(out, &first, "output_size", m->output_size);
        str_field(out, &first, "output_sha256", m->output_sha256);
    } else if (strcmp(type, "mail.held") == 0 || strcmp(type, "mail.tempfail") == 0) {
        str_field(out, &first, "quarantine_id", m->quarantine_id);
        str_field(out, &first, "message_id", m->message_id);
        str_field(out, &first, "reason", m->reason ? m->reason : "");
    } else {
        return -EINVAL;
    }
    buf_putc(out, '}');
    return out->err ? out->err : 0;
}

int decision_mail_append(ledger *l, const char *source, const char *type, const decision_mail *m,
                         buf *err)
{
    buf f;
    buf_init(&f, LEDGER_MAX_ENTRY);
    uint64_t index = 0;
    int rc = decision_mail_fields(type, m, &f);
    if (rc == 0)
        rc = ledger_append(l, type, source, f.p, f.len, &index, err);
    else if (err)
        buf_printf(err, "%s: %s", type, rc == -EINVAL ? "unknown decision type" : "too large");
    buf_free(&f);
    return rc;
}

void ledger_opts_from_policy(const policy *pol, const char *dir, const char *key_file,
                             ledger_opts *lo)
{
    memset(lo, 0, sizeof *lo);
    lo->dir = dir ? dir : pol->ledger.dir;
    lo->key_file = key_file ? key_file : pol->ledger.key_file;
    lo->checkpoint_entries = pol->ledger.checkpoint_entries;
    lo->checkpoint_ms = pol->ledger.checkpoint_interval_ms;
    lo->period = pol->ledger.segment_daily ? LEDGER_DAILY : LEDGER_MONTHLY;
}

ledger *decision_ledger_open(const policy *pol, const char *dir, buf *err)
{
    ledger_opts lo;
    ledger_opts_from_policy(pol, dir, NULL, &lo);
    char marker[PATH_MAX];
    struct stat st;
    if (snprintf(marker, sizeof marker, "%s/ledger.json", lo.dir) >= (int)sizeof marker) {
        if (err)
            buf_printf(err, "%s: path too long", lo.dir);
        errno = ENAMETOOLONG;
        return NULL;
    }
    if (stat(marker, &st) != 0 && errno == ENOENT) {
        char pub[2 * LEDGER_PUBKEY_LEN + 1];
        buf ierr;
        buf_init(&ierr, 4096);
        if (ledger_init(&lo, pub, &ierr) == 0)
            fprintf(stderr, "sekisho: 台帳を作成しました / created the ledger %s (public key %s)\n",
                    lo.dir, pub);
        /* else: another process may have created it first; open says */
        buf_free(&ierr);
    }
    return ledger_open(&lo, 1, err);
}
