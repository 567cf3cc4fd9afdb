/*
 * sanitize - one RFC 5322 message from the internet zone in, one safe message
 * out: a single text/plain; charset=UTF-8 part, every non-text part removed and
 * listed (name, size, types, SHA-256, warnings), HTML rendered to text with
 * defanged links, a small set of headers kept and re-encoded.
 *
 * Pure: no I/O, no global state besides GMime's initialisation. The caller
 * stores the original (quarantine) and only then releases the output, so the
 * work is split in two steps: sanitize_message() decides and renders,
 * sanitize_finish() inserts the quarantine id and encodes the final bytes.
 *
 * Limits (from policy->mail.limits) are checked before the MIME parser runs
 * (message size, top-level header bytes and fields, a bound on nesting) and
 * while walking (depth, part count, decoded bytes, text bytes, time). A limit
 * hit either degrades safely (the rest is held and the body says so) or gives
 * the verdict SANITIZE_REJECT; it never crashes, hangs or grows memory beyond
 * about twice the message.
 */
#ifndef SEKISHO_SANITIZE_H
#define SEKISHO_SANITIZE_H

#include "attach.h"
#include "policy.h"
#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

enum sanitize_verdict {
    SANITIZE_OK = 0,     /* output is safe and complete (what was held back is listed) */
    SANITIZE_REJECT = 1, /* cannot be made safe: no output; the original is held */
};

enum {
    SANITIZE_F_DEPTH = 1u << 0,   /* parts nested deeper than max_depth were held */
    SANITIZE_F_PARTS = 1u << 1,   /* parts past max_parts were held */
    SANITIZE_F_DECODED = 1u << 2, /* parts past max_decoded_bytes were not analysed */
    SANITIZE_F_TEXT = 1u << 3,    /* body text past max_text_bytes was cut */
    SANITIZE_F_HEADERS = 1u << 4, /* a kept header was invalid or too long and changed */
    SANITIZE_F_SPOOFED = 1u << 5, /* From names an internal domain */
    SANITIZE_F_TIMEOUT = 1u << 6, /* REJECT because time_limit (CPU time) ran out */
};

typedef struct sanitize_part {
    char *filename;      /* decoded UTF-8, "" if none */
    char *declared_type; /* "type/subtype" as declared */
    int forwarded;       /* inside a forwarded message/rfc822 */
    int analysed;        /* 0 when past the decoded-bytes limit: info has no hash/type */
    attach_info info;
} sanitize_part;

typedef struct sanitize_result {
    enum sanitize_verdict verdict;
    char reason[200]; /* why REJECT (English, for logs) */
    /* Decoded header values for the index and logs (UTF-8, never NULL after
     * sanitize_message returned 0). */
    char *from, *to, *subject, *message_id;
    sanitize_part *parts;
    size_t n_parts;
    size_t text_parts; /* text bodies rendered */
    size_t html_parts; /* of which HTML */
    size_t replaced;   /* characters that became U+FFFD (undecodable input) */
    unsigned flags;    /* SANITIZE_F_* */
    char charsets[64]; /* charsets used, comma-separated (for the summary header) */
    /* internal: kept headers and body text, with the quarantine id to insert */
    buf headers;
    buf text;
    size_t qid_at[4];
    size_t n_qid;
} sanitize_result;

typedef struct sanitize_ctx sanitize_ctx;

/* pol must outlive the context. NULL only if libmagic cannot be loaded. */
sanitize_ctx *sanitize_new(const policy *pol);
void sanitize_free(sanitize_ctx *c);

/*
 * Sanitizes p[0..n). Returns 0 with res->verdict set, or a negative errno for an
 * internal failure (out of memory): the caller then answers TEMPFAIL. res must
 * be released with sanitize_result_free() in every case.
 */
int sanitize_message(sanitize_ctx *c, const uint8_t *p, size_t n, sanitize_result *res);

/*
 * For SANITIZE_OK: appends the final message to out: X-Sekisho-Quarantine-Id,
 * the kept headers, MIME headers, the summary header and the body (UTF-8,
 * base64 unless plain ASCII with short lines), with qid shown in the notice.
 */
int sanitize_finish(const sanitize_result *res, const char *qid, buf *out);

void sanitize_result_free(sanitize_result *res);

/*
 * A result crosses from the sandboxed worker to its parent as bytes.
 * sanitize_result_pack() appends res to out; sanitize_result_unpack() reads
 * one packed result from p[0..n) into res, treating the bytes as hostile (the
 * worker may be compromised): every length is checked against what remains,
 * strings must be NUL-free UTF-8, kept headers printable ASCII lines, the
 * quarantine-id offsets in order and inside the text, no bytes left over.
 * *used (may be NULL) gets the bytes consumed. Returns 0 or -EBADMSG; res must
 * be freed with sanitize_result_free() either way.
 */
int sanitize_result_pack(const sanitize_result *res, buf *out);
int sanitize_result_unpack(const uint8_t *p, size_t n, sanitize_result *res, size_t *used);

#endif
