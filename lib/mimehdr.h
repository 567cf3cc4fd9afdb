/*
 * mimehdr - header field values: RFC 2047 encoded words, RFC 2231 parameters,
 * and the non-standard forms Japanese mail clients send, decoded to UTF-8;
 * and UTF-8 text encoded back for headers.
 *
 * Hand-written because GMime's decoders go through its private charset table
 * and glibc iconv, which lose CP50221/CP932 characters silently (see charset.h).
 * All input is untrusted: functions take (pointer, length), never read past it,
 * and bound their output by the buf's maximum.
 *
 * Decoding rules:
 *  - Encoded words (B and Q) anywhere in unstructured text; whitespace between
 *    adjacent encoded words is dropped (RFC 2047 6.2); adjacent words of the same
 *    charset are joined as bytes before conversion, since clients split words in
 *    the middle of a multi-byte character.
 *  - Raw 8-bit bytes outside encoded words are converted by detection.
 *  - Folding (CRLF/LF followed by WSP) is unfolded.
 *  - Parameters: RFC 2231 continuations (name*0, name*1*...), charset'lang'%XX,
 *    quoted strings with backslash escapes, and RFC 2047 words inside quoted or
 *    bare values (filename="=?ISO-2022-JP?B?...?=").
 */
#ifndef SEKISHO_MIMEHDR_H
#define SEKISHO_MIMEHDR_H

#include "util/buf.h"

#include <stddef.h>

/* Unstructured text (Subject, Comments, display names) to UTF-8, appended to out.
 * *replaced (may be NULL) is increased by the characters that became U+FFFD.
 * Returns 0 or a negative errno. */
int mimehdr_decode_text(const char *raw, size_t n, buf *out, size_t *replaced);

/*
 * Value of parameter name (case-insensitive) in a Content-Type or
 * Content-Disposition raw value, decoded to UTF-8 and appended to out.
 * Returns 0 when found, -ENOENT when absent, another negative errno on failure.
 */
int mimehdr_param(const char *raw, size_t n, const char *name, buf *out, size_t *replaced);

/* "type/subtype" of a Content-Type raw value, lower-cased, into out
 * (outsz >= 2); "" when it cannot be parsed. */
void mimehdr_media_type(const char *raw, size_t n, char *out, size_t outsz);

/*
 * Appends one complete header field "Name: value\r\n" to out for an unstructured
 * UTF-8 value: as is when it is printable ASCII, otherwise as RFC 2047 encoded
 * words (charset UTF-8, B encoding, never splitting a character), folded so no
 * line passes 78 characters.
 */
int mimehdr_encode_text(const char *name, const char *utf8, buf *out);

/*
 * Appends "Name: value\r\n" for an address-list header (From, To, Cc, Reply-To):
 * the raw value's display names are decoded (as mimehdr_decode_text) and the list
 * is written back with non-ASCII names as RFC 2047 UTF-8 words and the addresses
 * unchanged. A value that cannot be parsed as addresses is written as encoded
 * unstructured text, so nothing is lost.
 */
int mimehdr_encode_addresses(const char *name, const char *raw, size_t n, buf *out,
                             size_t *replaced);

#endif
