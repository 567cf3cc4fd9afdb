/*
 * jcs - the JSON Canonicalization Scheme (RFC 8785) over strict JSON
 * (RFC 8259, restricted to I-JSON, RFC 7493).
 *
 * jcs_canonicalize() parses one JSON text and appends its canonical form:
 * no whitespace, object members sorted by the UTF-16 code units of their
 * names, strings with the minimal escapes (\" \\ \b \f \n \r \t and \u00xx
 * for the other controls; everything else as UTF-8), numbers as ECMAScript's
 * Number.prototype.toString() writes the IEEE-754 double they denote.
 *
 * Rejected, with the byte offset of the problem: invalid UTF-8 (also escaped
 * lone surrogates), duplicate member names, NaN/Infinity and numbers outside
 * the double range, nesting deeper than JCS_MAX_DEPTH, anything after the
 * value but whitespace. With JCS_EXACT_NUMBERS, also any number that a double
 * does not hold exactly as written (0.10000000000000001, 2^53 + 1): the
 * canonical form never changes a value silently (the ledger uses this; "put
 * it in a string" is the remedy).
 *
 * The canonical form of any value never contains a raw newline, so canonical
 * objects can be stored one per line.
 */
#ifndef SEKISHO_JCS_H
#define SEKISHO_JCS_H

#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

#define JCS_MAX_DEPTH      64
#define JCS_MAX_NUMBER_LEN 400 /* bytes in one number literal */

#define JCS_EXACT_NUMBERS 1u /* reject numbers a double cannot hold exactly */
#define JCS_OBJECT        2u /* the value must be an object */

typedef struct jcs_error {
    size_t offset; /* byte offset of the problem in the input */
    char msg[160]; /* English, one line */
} jcs_error;

/* One member of a canonical object: the name as written (escaped, without
 * quotes) and the value's bytes. Offsets are into the canonical text. */
typedef struct jcs_member {
    size_t key_off, key_len;
    size_t val_off, val_len;
} jcs_member;

/* Appends the canonical form of in[0..n) to out. Returns 0, or -1 with err set
 * (out then holds partial output; callers truncate). -ENOSPC/-ENOMEM from out
 * are reported as -1 too, with a message saying so. */
int jcs_canonicalize(const uint8_t *in, size_t n, unsigned flags, buf *out, jcs_error *err);

/* 1 if in[0..n) is exactly its own canonical form (scratch is used as work
 * space and left with unspecified content). On 0, err says why (for input that
 * is valid JSON but not canonical: "not in canonical form"). */
int jcs_is_canonical(const uint8_t *in, size_t n, unsigned flags, buf *scratch, jcs_error *err);

/* ECMAScript Number::toString(v) into out; returns its length, or -1 for NaN
 * and the infinities (which JSON cannot hold). */
int jcs_number(double v, char out[32]);

/* The same, also giving the members of the value when it is an object:
 * offsets relative to where its canonical form starts in out, in canonical
 * order; *count is their number (-1 if the value is not an object), of
 * which at most max are stored. */
int jcs_canonicalize_members(const uint8_t *in, size_t n, unsigned flags, buf *out, jcs_error *err,
                             jcs_member *top, size_t max, long *count);
int jcs_is_canonical_members(const uint8_t *in, size_t n, unsigned flags, buf *scratch,
                             jcs_error *err, jcs_member *top, size_t max, long *count);

/* Splits the canonical object text[0..n) into its members, in order. Returns
 * the number of members (at most max are stored), or -1 if text is not an
 * object. The text must already be known to be canonical. */
long jcs_members(const uint8_t *text, size_t n, jcs_member *m, size_t max);

/* Appends s[0..n) (UTF-8) as a canonical JSON string with its quotes.
 * Returns 0, or -1 if s is not valid UTF-8. */
int jcs_put_string(buf *out, const char *s, size_t n);
/* jcs_put_string() for text that may not be UTF-8 (e.g. a mail header): each
 * byte that does not start a valid sequence becomes U+FFFD. Never fails but
 * for out's own limit (-1). */
int jcs_put_string_lossy(buf *out, const char *s, size_t n);

/* Frees the calling thread's work space (kept between calls); for a thread
 * that ends before the process does. */
void jcs_thread_cleanup(void);

/* Decodes a canonical JSON string value (with its quotes) into out (UTF-8). */
int jcs_string_value(const uint8_t *text, size_t n, buf *out);

#endif
