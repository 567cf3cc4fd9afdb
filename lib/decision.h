/*
 * decision - what sekisho decided about a mail or an original, as ledger
 * entries (docs/LEDGER.md, "Decision records"). One module so that the
 * gateway and the CLI write the same types with the same fields:
 *
 *   mail.received        the original is durable in the quarantine
 *                        {quarantine_id, message_id, from, to | rcpt, client_addr, zone, size,
 * sha256} mail.sanitized       its sanitized copy is about to be released {quarantine_id,
 * message_id, removed_parts, output_size, output_sha256} mail.held            it cannot be made
 * safe; nothing released, original kept {quarantine_id, message_id, reason} mail.tempfail nothing
 * released; the sender retries {message_id, quarantine_id, reason} mail.passed          internal
 * zone, delivered unchanged {message_id, from, rcpt, client_addr, zone} quarantine.released  an
 * original given out {quarantine_id, sha256, size, by, uid} quarantine.release_failed  the release
 * recorded above did not happen {quarantine_id, reason} quarantine.purged    an expired original
 * about to be removed {quarantine_id, sha256, size, received, retain_until} quarantine.purge_failed
 * the removal recorded above failed {count, reason}
 *
 * Fields absent from a decision_mail (NULL strings) are left out; a string
 * longer than 2048 bytes is cut (at a character boundary) and says how long
 * it was, so that every decision fits in one entry. Strings are
 * written as JSON strings; bytes that are not UTF-8 become U+FFFD, so a mail
 * with a broken header can always be recorded. A decision counts once
 * ledger_commit() returned 0; until then nothing may be released.
 */
#ifndef SEKISHO_DECISION_H
#define SEKISHO_DECISION_H

#include "ledger.h"
#include "policy.h"
#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct decision_mail {
    const char *quarantine_id, *message_id, *from, *to, *client_addr, *zone, *sha256;
    const char *const *rcpt; /* envelope recipients (the gateway), n_rcpt of them */
    size_t n_rcpt;
    uint64_t size;             /* bytes of the original (received) */
    const char *reason;        /* held, tempfail */
    uint64_t removed_parts;    /* sanitized */
    uint64_t output_size;      /* sanitized */
    const char *output_sha256; /* sanitized */
} decision_mail;

/* The fields object of a mail.* entry of this type ("mail.received", ...),
 * appended to out. -EINVAL for a type not listed above. */
int decision_mail_fields(const char *type, const decision_mail *m, buf *out);

/* Stages a mail.* entry (ledger_append). */
int decision_mail_append(ledger *l, const char *source, const char *type, const decision_mail *m,
                         buf *err);

/* Appends s to out as a JSON string (quotes included), U+FFFD for bytes that
 * are not UTF-8. */
void decision_json_str(buf *out, const char *s);

/* The ledger options the policy gives (its ledger: section), with dir and
 * key_file overridden where not NULL (a command's -l/-k); everything else
 * zero. For every program that opens the policy's ledger. */
void ledger_opts_from_policy(const policy *pol, const char *dir, const char *key_file,
                             ledger_opts *lo);

/* Opens the policy's ledger (dir overrides pol->ledger.dir when not NULL)
 * for writing, creating it with its signing key if the directory holds no
 * ledger yet (a created ledger is reported on stderr with its public key). */
ledger *decision_ledger_open(const policy *pol, const char *dir, buf *err);

#endif
