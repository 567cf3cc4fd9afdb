/*
 * charset - bytes in a declared (often wrong, sometimes missing) charset to UTF-8,
 * exactly, without iconv's or GMime's silent losses.
 *
 * Japanese mail needs more than iconv gives (see docs/CHARSETS.md):
 *  - ISO-2022-JP labels carry CP50221 (NEC row 13 and IBM extensions: ① ㈱ № 髙 﨑);
 *  - Shift_JIS labels carry CP932; EUC-JP labels carry CP51932 or eucJP-ms;
 *  - labels are misspelt (x-sjis, windows-31j, x-euc-jp) or missing.
 * The conversion goes through ICU converters selected by this module's own label
 * table, strictly (an unmappable or illegal sequence is an error, never a silent
 * substitution). When the declared label fails, or is missing/unknown, the bytes
 * are examined: valid UTF-8, ESC sequences of ISO-2022-JP, then ICU's detector
 * (ucsdet). Only when every strict attempt fails is a lossy conversion made, and
 * then each substituted character is counted in info->replaced so that the
 * caller can say so: text is never dropped silently.
 */
#ifndef SEKISHO_CHARSET_H
#define SEKISHO_CHARSET_H

#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct charset_info {
    char used[40];   /* canonical name of the charset actually used, e.g. "ISO-2022-JP" */
    int detected;    /* 1 when the declared label was missing, unknown or wrong */
    size_t replaced; /* characters that could not be decoded and became U+FFFD */
} charset_info;

/*
 * Appends the UTF-8 form of p[0..n) to out. label may be NULL or "" (unknown).
 * Returns 0 (possibly lossy: see info->replaced), or a negative errno:
 * -ENOSPC when out's maximum is reached. info may be NULL.
 */
int charset_to_utf8(const uint8_t *p, size_t n, const char *label, buf *out, charset_info *info);

/* Canonical name for a label ("sjis" -> "windows-31j"), or NULL if unknown. */
const char *charset_canonical(const char *label);

/* Best guess for unlabelled bytes ("US-ASCII", "UTF-8", "ISO-2022-JP", "windows-31j",
 * "EUC-JP", ...). Never NULL. */
const char *charset_detect(const uint8_t *p, size_t n);

/* 1 if p[0..n) is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
int charset_is_utf8(const uint8_t *p, size_t n);

#endif
