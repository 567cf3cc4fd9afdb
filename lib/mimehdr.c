/*
 * NAME
 *   mimehdr - header field values to UTF-8, and UTF-8 back into header fields.
 *
 * DESCRIPTION
 *   Decoding. A raw value holding 8-bit bytes or ESC is first converted as a
 *   whole by charset_to_utf8() with detection (a Shift_JIS trail byte may be
 *   0x5C '\' or 0x22 '"', so no structure may be parsed before that; and an
 *   ISO-2022-JP kanji pair may read "=?"). Encoded words are then found in the
 *   UTF-8 text; a run of words separated only by white space is decoded with
 *   the white space dropped and the bytes of adjacent words in one charset
 *   joined before conversion (clients split words inside a character). B and
 *   Q payloads are decoded leniently (stray characters skipped, missing
 *   padding accepted); an encoded word must not contain white space.
 *   Parameters: RFC 2231 sections (name*0*, name*1, ...) sorted and joined as
 *   bytes, charset'lang'%XX, quoted strings with backslash escapes, and
 *   RFC 2047 words inside quoted or bare values.
 *
 *   Encoding. Printable ASCII words are written as they are; every run of
 *   other words becomes RFC 2047 "B" words in UTF-8, each at most 75 octets,
 *   cut only between characters; lines are folded at 78 octets. Address lists
 *   are parsed by GMime for their structure only: before GMime sees the value,
 *   every encoded-word run is decoded here and put in a quoted string, and
 *   every '?' is replaced by a noncharacter (U+FDD0) so that GMime finds no
 *   encoded word to decode (its decoder goes through iconv and loses CP50221
 *   and CP932 characters); names are then encoded here, never by GMime.
 *
 * LIMITS
 *   Charset names in encoded words: 40 bytes. RFC 2231 sections: indexes up to
 *   999, at most 1000 kept. Comments nest without recursion. All scans are
 *   linear: the search for the end of an encoded word is cached so that
 *   "=?=?=?..." does not rescan the input. Output is bounded by the caller's
 *   buf (sticky -ENOSPC). A noncharacter U+FDD0 in an address list becomes
 *   U+FFFD and is counted as replaced.
 *
 * WHY HAND-WRITTEN
 *   GMime's RFC 2047 and RFC 2231 decoders use its own charset table and glibc
 *   iconv, which lose CP50221/CP932 characters silently, and its encoder may
 *   choose ISO-2022-JP. Conversion itself is ICU's, through charset.c.
 */
#include "mimehdr.h"

#include "charset.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#define LINE_MAX_OCTETS 78
#define EW_MAX_OCTETS 75
#define EW_CHARSET_MAX 40
#define SECTION_MAX_INDEX 999
#define SECTIONS_MAX 1000
#define PLAIN_WORD_MAX 76

/* U+FDD0, standing in for '?' while GMime parses an address list. */
#define QMARK_STANDIN "\xEF\xB7\x90"

static int is_wsp(int c)
{
    return c == ' ' || c == '\t';
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* 1 if the raw bytes need charset conversion before any parsing. */
static int needs_conversion(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80 || s[i] == 0x1B || s[i] == 0x0E)
            return 1;
    return 0;
}

/*
 * Converts raw to UTF-8 into tmp when needed; *src and *len then point at the
 * text to parse. Returns 0 or a negative errno.
 */
static int to_utf8_whole(const char *raw, size_t n, buf *tmp, const char **src, size_t *len,
                         size_t *replaced)
{
    *src = raw;
    *len = n;
    if (!needs_conversion(raw, n))
        return 0;
    charset_info info;
    int rc = charset_to_utf8((const uint8_t *)raw, n, NULL, tmp, &info);
    if (rc < 0)
        return rc;
    if (replaced)
        *replaced += info.replaced;
    *src = tmp->p ? (const char *)tmp->p : "";
    *len = tmp->len;
    return 0;
}

/* ---------------------------------------------------------------- encoded words */

struct ew {
    size_t start, end;          /* the word is s[start..end) */
    size_t cs_off, cs_len;      /* charset, without *lang */
    int enc;                    /* 'B' or 'Q' */
    size_t text_off, text_len;  /* encoded text */
};

/*
 * Where the encoded text starting at `from` stops: at "?=" (found) or at white
 * space or the end (not found). Cached, so a scan never repeats over a long
 * stretch: candidates only move forward, and a new candidate's text starts at
 * most EW_CHARSET_MAX + 5 bytes before the previous one's.
 */
struct ewcache {
    size_t from, stop;
    int found;
    int valid;
};

static size_t scan_stop(const char *s, size_t n, size_t from, size_t to, int *found)
{
    for (size_t i = from; i < to; i++) {
        if (is_space((unsigned char)s[i])) {
            *found = 0;
            return i;
        }
        if (s[i] == '?' && i + 1 < n && s[i + 1] == '=') {
            *found = 1;
            return i;
        }
    }
    *found = 0;
    return to;
}

static size_t find_text_end(struct ewcache *c, const char *s, size_t n, size_t from, int *found)
{
    if (c->valid && from >= c->from && from <= c->stop) {
        if (from < c->stop || c->found || c->stop == n) {
            *found = c->found;
            return c->stop;
        }
    }
    if (c->valid && from < c->from && c->from - from <= EW_CHARSET_MAX + 8) {
        int f;
        size_t st = scan_stop(s, n, from, c->from, &f);
        if (st < c->from) {
            *found = f;
            return st;
        }
        *found = c->found;
        return c->stop;
    }
    int f;
    size_t st = scan_stop(s, n, from, n, &f);
    c->from = from;
    c->stop = st;
    c->found = f;
    c->valid = 1;
    *found = f;
    return st;
}

static int charset_char(int c)
{
    return c > 0x20 && c < 0x7F && c != '?' && c != '"' && c != '(' && c != ')' && c != ',' &&
           c != '<' && c != '>' && c != '@' && c != ';' && c != ':' && c != '[' && c != ']' &&
           c != '/' && c != '=';
}

/* Parses an encoded word at s[i] ("=?cs?E?text?="). 1 when valid. */
static int parse_ew(const char *s, size_t n, size_t i, struct ewcache *c, struct ew *w)
{
    if (i + 1 >= n || s[i] != '=' || s[i + 1] != '?')
        return 0;
    size_t p = i + 2, cs = p;
    while (p < n && p - cs <= EW_CHARSET_MAX && charset_char((unsigned char)s[p]))
        p++;
    if (p == cs || p >= n || s[p] != '?' || p - cs > EW_CHARSET_MAX)
        return 0;
    size_t cs_end = p;
    for (size_t k = cs; k < cs_end; k++)
        if (s[k] == '*') { /* RFC 2231 language suffix */
            cs_end = k;
            break;
        }
    if (cs_end == cs)
        return 0;
    p++;
    if (p + 1 >= n || s[p + 1] != '?')
        return 0;
    int enc = lower((unsigned char)s[p]);
    if (enc != 'b' && enc != 'q')
        return 0;
    p += 2;
    int found;
    size_t stop = find_text_end(c, s, n, p, &found);
    if (!found)
        return 0;
    w->start = i;
    w->end = stop + 2;
    w->cs_off = cs;
    w->cs_len = cs_end - cs;
    w->enc = enc == 'b' ? 'B' : 'Q';
    w->text_off = p;
    w->text_len = stop - p;
    return 1;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Appends the decoded payload of w to out (bytes). */
static int ew_payload(const char *s, const struct ew *w, buf *out)
{
    const char *t = s + w->text_off;
    size_t n = w->text_len;
    if (w->enc == 'B') {
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < n; i++) {
            if (t[i] == '=')
                break;
            int v = b64val((unsigned char)t[i]);
            if (v < 0)
                continue;
            acc = (acc << 6) | (uint32_t)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                buf_putc(out, (int)((acc >> bits) & 0xFF));
            }
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            int h, l;
            if (t[i] == '_') {
                buf_putc(out, ' ');
            } else if (t[i] == '=' && i + 2 < n + 0 && (h = hexval((unsigned char)t[i + 1])) >= 0 &&
                       (l = hexval((unsigned char)t[i + 2])) >= 0) {
                buf_putc(out, h * 16 + l);
                i += 2;
            } else {
                buf_putc(out, (unsigned char)t[i]);
            }
        }
    }
    return out->err;
}

static int same_charset(const char *s, const struct ew *a, const struct ew *b)
{
    if (a->cs_len == b->cs_len) {
        size_t k = 0;
        while (k < a->cs_len &&
               lower((unsigned char)s[a->cs_off + k]) == lower((unsigned char)s[b->cs_off + k]))
            k++;
        if (k == a->cs_len)
            return 1;
    }
    char x[EW_CHARSET_MAX + 1], y[EW_CHARSET_MAX + 1];
    memcpy(x, s + a->cs_off, a->cs_len);
    x[a->cs_len] = 0;
    memcpy(y, s + b->cs_off, b->cs_len);
    y[b->cs_len] = 0;
    const char *cx = charset_canonical(x), *cy = charset_canonical(y);
    return cx && cy && strcmp(cx, cy) == 0;
}

static int flush_bytes(const char *s, const struct ew *w, buf *bytes, buf *out, size_t *replaced)
{
    char label[EW_CHARSET_MAX + 1];
    memcpy(label, s + w->cs_off, w->cs_len);
    label[w->cs_len] = 0;
    charset_info info;
    int rc = charset_to_utf8(bytes->p ? bytes->p : (const uint8_t *)"", bytes->len, label, out,
                             &info);
    if (replaced)
        *replaced += info.replaced;
    buf_reset(bytes);
    return rc;
}

/*
 * Decodes the run of encoded words starting with *first (already parsed):
 * words separated only by white space, joined as bytes while their charset is
 * the same. Appends UTF-8 to out; returns the end of the last word in *end.
 */
static int decode_run(const char *s, size_t n, const struct ew *first, struct ewcache *c,
                      buf *out, size_t *replaced, size_t *end)
{
    buf bytes;
    buf_init(&bytes, n + 1);
    struct ew cur = *first, next;
    int rc = ew_payload(s, &cur, &bytes);
    size_t pos = cur.end;
    while (rc == 0) {
        size_t q = pos;
        while (q < n && is_space((unsigned char)s[q]))
            q++;
        if (q == pos && pos < n && s[pos] != '=')
            break;
        if (!parse_ew(s, n, q, c, &next))
            break;
        if (!same_charset(s, &cur, &next)) {
            rc = flush_bytes(s, &cur, &bytes, out, replaced);
            if (rc < 0)
                break;
        }
        cur = next;
        rc = ew_payload(s, &cur, &bytes);
        pos = cur.end;
    }
    if (rc == 0)
        rc = flush_bytes(s, &cur, &bytes, out, replaced);
    buf_free(&bytes);
    *end = pos;
    return rc < 0 ? rc : out->err;
}

/* Appends UTF-8 text s[0..n) unfolded: CR and LF dropped before WSP, other
 * line breaks become one space. */
static void put_unfolded(buf *out, const char *s, size_t n)
{
    size_t a = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\r' && s[i] != '\n')
            continue;
        buf_append(out, s + a, i - a);
        size_t j = i;
        while (j < n && (s[j] == '\r' || s[j] == '\n'))
            j++;
        if (j >= n || !is_wsp((unsigned char)s[j]))
            buf_putc(out, ' ');
        a = j;
        i = j - 1;
    }
    buf_append(out, s + a, n - a);
}

/* decode_text on text already in UTF-8 (or ASCII). */
static int decode_utf8_text(const char *s, size_t n, buf *out, size_t *replaced)
{
    struct ewcache c = {0, 0, 0, 0};
    size_t plain = 0, i = 0;
    while (i < n) {
        struct ew w;
        if (s[i] == '=' && parse_ew(s, n, i, &c, &w)) {
            put_unfolded(out, s + plain, i - plain);
            size_t end;
            int rc = decode_run(s, n, &w, &c, out, replaced, &end);
            if (rc < 0)
                return rc;
            i = plain = end;
            continue;
        }
        i++;
    }
    put_unfolded(out, s + plain, n - plain);
    return out->err;
}

int mimehdr_decode_text(const char *raw, size_t n, buf *out, size_t *replaced)
{
    if (out->err)
        return out->err;
    buf tmp;
    buf_init(&tmp, out->max);
    const char *s;
    size_t len;
    int rc = to_utf8_whole(raw, n, &tmp, &s, &len, replaced);
    if (rc == 0)
        rc = decode_utf8_text(s, len, out, replaced);
    buf_free(&tmp);
    return rc;
}

/* ---------------------------------------------------------------- parameters */

/* Skips white space, folds and (nested) comments; no recursion. */
static size_t skip_cfws(const char *s, size_t n, size_t i)
{
    while (i < n) {
        if (is_space((unsigned char)s[i])) {
            i++;
        } else if (s[i] == '(') {
            size_t depth = 0;
            while (i < n) {
                if (s[i] == '\\' && i + 1 < n) {
                    i += 2;
                    continue;
                }
                if (s[i] == '(')
                    depth++;
                else if (s[i] == ')' && --depth == 0) {
                    i++;
                    break;
                }
                i++;
            }
        } else {
            break;
        }
    }
    return i;
}

/* Reads a quoted string at s[i] == '"' into out (unescaped, unfolded).
 * Returns the index after the closing quote (or n when unterminated). */
static size_t read_quoted(const char *s, size_t n, size_t i, buf *out)
{
    i++;
    while (i < n && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < n) {
            buf_putc(out, (unsigned char)s[i + 1]);
            i += 2;
            continue;
        }
        if (s[i] == '\r' || s[i] == '\n') {
            i++;
            continue;
        }
        buf_putc(out, (unsigned char)s[i]);
        i++;
    }
    return i < n ? i + 1 : n;
}

static int token_char(int c)
{
    return c > 0x20 && c < 0x7F && c != '(' && c != ')' && c != '<' && c != '>' && c != '@' &&
           c != ',' && c != ';' && c != ':' && c != '\\' && c != '"' && c != '/' && c != '[' &&
           c != ']' && c != '?' && c != '=';
}

struct section {
    unsigned idx;
    int encoded;
    size_t off, len; /* in the section store */
    size_t order;
};

static int section_cmp(const void *a, const void *b)
{
    const struct section *x = a, *y = b;
    if (x->idx != y->idx)
        return x->idx < y->idx ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Appends %XX-decoded bytes of s[0..n). */
static void put_percent_decoded(buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n + 0 && (h = hexval((unsigned char)s[i + 1])) >= 0 &&
            (l = hexval((unsigned char)s[i + 2])) >= 0) {
            buf_putc(out, h * 16 + l);
            i += 2;
        } else {
            buf_putc(out, (unsigned char)s[i]);
        }
    }
}

/* Matches attribute a[0..alen) against name: returns -1 (no), or the kind:
 * 0 plain, 1 "name*", 2 "name*N", 3 "name*N*", with *idx set for 2 and 3. */
static int match_attr(const char *a, size_t alen, const char *name, unsigned *idx)
{
    size_t nl = strlen(name);
    if (alen < nl)
        return -1;
    for (size_t k = 0; k < nl; k++)
        if (lower((unsigned char)a[k]) != lower((unsigned char)name[k]))
            return -1;
    if (alen == nl)
        return 0;
    if (a[nl] != '*')
        return -1;
    if (alen == nl + 1)
        return 1;
    size_t p = nl + 1;
    unsigned v = 0;
    size_t digits = 0;
    while (p < alen && a[p] >= '0' && a[p] <= '9') {
        if (digits++ >= 4)
            return -1;
        v = v * 10 + (unsigned)(a[p] - '0');
        p++;
    }
    if (digits == 0 || v > SECTION_MAX_INDEX)
        return -1;
    *idx = v;
    if (p == alen)
        return 2;
    if (p + 1 == alen && a[p] == '*')
        return 3;
    return -1;
}

/* Decodes an RFC 2231 charset'lang'value (ext: its bytes) into out. */
static int put_ext_value(const char *v, size_t n, int first_has_charset, buf *out,
                         size_t *replaced)
{
    (void)first_has_charset;
    if (v == NULL) /* an empty buffer's bytes */
        v = "";
    char label[64] = "";
    size_t start = 0;
    const char *q1 = n ? memchr(v, '\'', n) : NULL;
    if (q1) {
        const char *q2 = memchr(q1 + 1, '\'', n - (size_t)(q1 + 1 - v));
        if (q2) {
            size_t cl = (size_t)(q1 - v);
            if (cl < sizeof label) {
                memcpy(label, v, cl);
                label[cl] = 0;
            }
            start = (size_t)(q2 + 1 - v);
        }
    }
    buf bytes;
    buf_init(&bytes, n + 1);
    put_percent_decoded(&bytes, v + start, n - start);
    int rc = bytes.err;
    if (rc == 0) {
        charset_info info;
        rc = charset_to_utf8(bytes.p ? bytes.p : (const uint8_t *)"", bytes.len, label, out,
                             &info);
        if (replaced)
            *replaced += info.replaced;
    }
    buf_free(&bytes);
    return rc;
}

static int param_utf8(const char *s, size_t n, const char *name, buf *out, size_t *replaced)
{
    buf store;          /* unescaped values of the sections */
    buf plain;          /* the plain value */
    buf ext;            /* name*= value */
    buf_init(&store, n + 1);
    buf_init(&plain, n + 1);
    buf_init(&ext, n + 1);
    struct section *sec = NULL;
    size_t nsec = 0, order = 0;
    int have_plain = 0, have_ext = 0, rc = 0;

    /* Skip the media type or disposition. */
    size_t i = 0;
    while (i < n && s[i] != ';') {
        if (s[i] == '"') {
            buf scratch;
            buf_init(&scratch, 0);
            i = read_quoted(s, n, i, &scratch);
            buf_free(&scratch);
            continue;
        }
        i++;
    }
    while (i < n) {
        i = skip_cfws(s, n, i);
        if (i < n && s[i] == ';') {
            i++;
            continue;
        }
        if (i >= n)
            break;
        size_t a = i;
        while (i < n && s[i] != '=' && s[i] != ';' && !is_space((unsigned char)s[i]) &&
               s[i] != '(' && s[i] != '"')
            i++;
        size_t alen = i - a;
        if (alen == 0) {
            if (s[i] == '"') {
                buf scratch;
                buf_init(&scratch, 0);
                i = read_quoted(s, n, i, &scratch);
                buf_free(&scratch);
            } else {
                i++;
            }
            continue;
        }
        i = skip_cfws(s, n, i);
        if (i >= n || s[i] != '=')
            continue;
        i = skip_cfws(s, n, i + 1);
        unsigned idx = 0;
        int kind = match_attr(s + a, alen, name, &idx);
        buf *dst = NULL;
        size_t mark = 0;
        if (kind == 0 && !have_plain)
            dst = &plain;
        else if (kind == 1 && !have_ext)
            dst = &ext;
        else if (kind >= 2 && nsec < SECTIONS_MAX)
            dst = &store;
        buf scratch;
        buf_init(&scratch, n + 1);
        if (dst == NULL)
            dst = &scratch;
        mark = dst->len;
        if (i < n && s[i] == '"') {
            i = read_quoted(s, n, i, dst);
        } else {
            size_t v = i;
            while (i < n && s[i] != ';')
                i++;
            size_t e = i;
            int has_ew = 0;
            for (size_t k = v; k + 1 < e; k++)
                if (s[k] == '=' && s[k + 1] == '?')
                    has_ew = 1;
            if (!has_ew) {
                e = v;
                while (e < i && !is_space((unsigned char)s[e]) && s[e] != '(')
                    e++;
            }
            while (e > v && is_space((unsigned char)s[e - 1]))
                e--;
            buf_append(dst, s + v, e - v);
        }
        buf_free(&scratch);
        if (kind == 0 && dst == &plain)
            have_plain = 1;
        else if (kind == 1 && dst == &ext)
            have_ext = 1;
        else if (kind >= 2 && dst == &store) {
            if (sec == NULL) {
                sec = calloc(SECTIONS_MAX, sizeof *sec);
                if (sec == NULL) {
                    rc = -ENOMEM;
                    goto done;
                }
            }
            sec[nsec].idx = idx;
            sec[nsec].encoded = kind == 3;
            sec[nsec].off = mark;
            sec[nsec].len = store.len - mark;
            sec[nsec].order = order++;
            nsec++;
        }
    }
    if (store.err || plain.err || ext.err) {
        rc = -ENOMEM;
        goto done;
    }

    if (have_ext) {
        rc = put_ext_value((const char *)ext.p, ext.len, 1, out, replaced);
    } else if (nsec > 0) {
        qsort(sec, nsec, sizeof *sec, section_cmp);
        buf joined;
        buf_init(&joined, n + 1);
        char label[64] = "";
        int any_encoded = 0;
        unsigned last = (unsigned)-1;
        for (size_t k = 0; k < nsec; k++) {
            if (sec[k].idx == last)
                continue; /* a duplicate: the first one counts */
            last = sec[k].idx;
            const char *v = buf_cstr(&store) + sec[k].off; /* "" when empty, never NULL */
            size_t vl = sec[k].len;
            if (sec[k].encoded) {
                if (!any_encoded && k == 0 && sec[k].idx == 0) {
                    const char *q1 = vl ? memchr(v, '\'', vl) : NULL;
                    const char *q2 = q1 ? memchr(q1 + 1, '\'', vl - (size_t)(q1 + 1 - v)) : NULL;
                    if (q2) {
                        size_t cl = (size_t)(q1 - v);
                        if (cl < sizeof label) {
                            memcpy(label, v, cl);
                            label[cl] = 0;
                        }
                        vl -= (size_t)(q2 + 1 - v);
                        v = q2 + 1;
                    }
                }
                any_encoded = 1;
                put_percent_decoded(&joined, v, vl);
            } else {
                buf_append(&joined, v, vl);
            }
        }
        if (joined.err) {
            rc = joined.err;
        } else if (any_encoded) {
            charset_info info;
            rc = charset_to_utf8(joined.p ? joined.p : (const uint8_t *)"", joined.len, label, out,
                                 &info);
            if (replaced)
                *replaced += info.replaced;
        } else {
            rc = decode_utf8_text(joined.p ? (const char *)joined.p : "", joined.len, out,
                                  replaced);
        }
        buf_free(&joined);
    } else if (have_plain) {
        rc = decode_utf8_text(plain.p ? (const char *)plain.p : "", plain.len, out, replaced);
    } else {
        rc = -ENOENT;
    }
done:
    free(sec);
    buf_free(&store);
    buf_free(&plain);
    buf_free(&ext);
    return rc;
}

int mimehdr_param(const char *raw, size_t n, const char *name, buf *out, size_t *replaced)
{
    if (out->err)
        return out->err;
    if (name == NULL || name[0] == 0)
        return -EINVAL;
    buf tmp;
    buf_init(&tmp, BUF_UNLIMITED);
    const char *s;
    size_t len;
    int rc = to_utf8_whole(raw, n, &tmp, &s, &len, replaced);
    if (rc == 0)
        rc = param_utf8(s, len, name, out, replaced);
    buf_free(&tmp);
    return rc;
}

void mimehdr_media_type(const char *raw, size_t n, char *out, size_t outsz)
{
    if (out == NULL || outsz == 0)
        return;
    out[0] = 0;
    size_t i = skip_cfws(raw, n, 0);
    size_t t = i;
    while (i < n && token_char((unsigned char)raw[i]))
        i++;
    size_t tl = i - t;
    i = skip_cfws(raw, n, i);
    if (tl == 0 || i >= n || raw[i] != '/')
        return;
    i = skip_cfws(raw, n, i + 1);
    size_t st = i;
    while (i < n && token_char((unsigned char)raw[i]))
        i++;
    size_t sl = i - st;
    i = skip_cfws(raw, n, i);
    if (sl == 0 || (i < n && raw[i] != ';'))
        return;
    if (tl + 1 + sl + 1 > outsz)
        return;
    size_t o = 0;
    for (size_t k = 0; k < tl; k++)
        out[o++] = (char)lower((unsigned char)raw[t + k]);
    out[o++] = '/';
    for (size_t k = 0; k < sl; k++)
        out[o++] = (char)lower((unsigned char)raw[st + k]);
    out[o] = 0;
}

/* ---------------------------------------------------------------- encoding */

/* Writes lines of at most LINE_MAX_OCTETS octets. */
struct fold {
    buf *out;
    size_t col;
};

/* Writes the separator before a token of len octets: a space, or a fold. */
static void fold_space(struct fold *f, size_t len)
{
    if (f->col + 1 + len > LINE_MAX_OCTETS && f->col > 1) {
        buf_append(f->out, "\r\n ", 3);
        f->col = 1;
    } else {
        buf_putc(f->out, ' ');
        f->col++;
    }
}

static void fold_put(struct fold *f, const char *s, size_t len)
{
    buf_append(f->out, s, len);
    f->col += len;
}

static void put_b64(buf *out, const uint8_t *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        q[0] = a[(v >> 18) & 63];
        q[1] = a[(v >> 12) & 63];
        q[2] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? a[v & 63] : '=';
        buf_append(out, q, 4);
    }
}

/* Length of the UTF-8 character at p (1 for a stray byte). */
static size_t u8len(const uint8_t *p, size_t n)
{
    size_t k = 1;
    if (p[0] >= 0xF0)
        k = 4;
    else if (p[0] >= 0xE0)
        k = 3;
    else if (p[0] >= 0xC0)
        k = 2;
    return k <= n ? k : n;
}

/* Writes UTF-8 text as encoded words, each preceded by a space or a fold. */
static void put_encoded(struct fold *f, const uint8_t *p, size_t n)
{
    static const char pre[] = "=?UTF-8?B?";
    const size_t overhead = sizeof pre - 1 + 2;
    size_t i = 0;
    do {
        /* Bytes that fit on this line after a space, and in one word. */
        size_t room = LINE_MAX_OCTETS > f->col + 1 ? LINE_MAX_OCTETS - f->col - 1 : 0;
        if (room > EW_MAX_OCTETS)
            room = EW_MAX_OCTETS;
        size_t cap = room > overhead ? (room - overhead) / 4 * 3 : 0;
        size_t first = i < n ? u8len(p + i, n - i) : 0;
        /* Fold first rather than leave a stub of a word at the line's end. */
        if (cap < first || (cap < 15 && cap < n - i && f->col > 1)) {
            buf_append(f->out, "\r\n", 2);
            f->col = 0;
            cap = (EW_MAX_OCTETS - overhead) / 4 * 3;
        }
        size_t take = 0;
        while (i + take < n) {
            size_t k = u8len(p + i + take, n - i - take);
            if (take + k > cap)
                break;
            take += k;
        }
        buf_putc(f->out, ' ');
        size_t mark = f->out->len;
        buf_append(f->out, pre, sizeof pre - 1);
        put_b64(f->out, p + i, take);
        buf_append(f->out, "?=", 2);
        f->col += 1 + (f->out->len - mark);
        i += take;
    } while (i < n && !f->out->err);
}

/* Copies s[0..n) as valid UTF-8 (bad bytes become U+FFFD, counted). */
static void put_valid_utf8(buf *out, const uint8_t *s, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        size_t k = u8len(s + i, n - i);
        if (s[i] < 0x80) {
            buf_putc(out, s[i]);
        } else if (s[i] >= 0xC2 && s[i] <= 0xF4 && charset_is_utf8(s + i, k)) {
            buf_append(out, s + i, k);
        } else {
            buf_append(out, "\xEF\xBF\xBD", 3);
            if (bad)
                (*bad)++;
            k = 1;
        }
        i += k;
    }
}

static int plain_word(const uint8_t *w, size_t n)
{
    if (n == 0 || n > PLAIN_WORD_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i] <= 0x20 || w[i] >= 0x7F)
            return 0;
        if (w[i] == '=' && i + 1 < n && w[i + 1] == '?')
            return 0;
    }
    return 1;
}

/*
 * Writes UTF-8 text (valid) as a phrase of words after f's current column:
 * printable ASCII words as they are, runs of other words (with the single
 * spaces between them) as encoded words. Words are split at single spaces, so
 * "a  b" has an empty middle word; an empty run cannot be an encoded word, so
 * it takes in a neighbour.
 */
struct word {
    size_t off, len;
    int plain;
};

static int put_text_words(struct fold *f, const uint8_t *s, size_t n)
{
    size_t nw = 1;
    for (size_t i = 0; i < n; i++)
        nw += s[i] == ' ';
    struct word *w = calloc(nw, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == ' ') {
            w[k].off = start;
            w[k].len = i - start;
            w[k].plain = plain_word(s + start, i - start);
            k++;
            start = i + 1;
        }
    }
    /* An encoded run made of one empty word takes in its neighbour. */
    for (size_t a = 0; a < nw;) {
        if (w[a].plain) {
            a++;
            continue;
        }
        size_t b = a;
        while (b + 1 < nw && !w[b + 1].plain)
            b++;
        if (a == b && w[a].len == 0) {
            if (b + 1 < nw) {
                w[b + 1].plain = 0;
                continue; /* the run grew; look at it again */
            }
            if (a > 0) {
                w[a - 1].plain = 0;
                a = a - 1;
                while (a > 0 && !w[a - 1].plain)
                    a--;
                continue;
            }
        }
        a = b + 1;
    }
    for (size_t a = 0; a < nw && !f->out->err;) {
        if (w[a].plain) {
            fold_space(f, w[a].len);
            fold_put(f, (const char *)s + w[a].off, w[a].len);
            a++;
            continue;
        }
        size_t b = a;
        while (b + 1 < nw && !w[b + 1].plain)
            b++;
        put_encoded(f, s + w[a].off, w[b].off + w[b].len - w[a].off);
        a = b + 1;
    }
    free(w);
    return f->out->err;
}

int mimehdr_encode_text(const char *name, const char *utf8, buf *out)
{
    if (out->err)
        return out->err;
    size_t nl = strlen(name);
    size_t vl = utf8 ? strlen(utf8) : 0;
    buf v;
    buf_init(&v, vl * 3 + 16);
    put_valid_utf8(&v, (const uint8_t *)(utf8 ? utf8 : ""), vl, NULL);
    struct fold f = {out, nl + 1};
    buf_append(out, name, nl);
    buf_putc(out, ':');
    int rc = v.err;
    if (rc == 0 && v.len == 0)
        buf_putc(out, ' ');
    else if (rc == 0)
        rc = put_text_words(&f, v.p, v.len);
    buf_append(out, "\r\n", 2);
    if (rc == 0)
        rc = out->err;
    buf_free(&v);
    return rc;
}

/* ---------------------------------------------------------------- addresses */

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_start(void)
{
    g_mime_init();
}

/* Appends UTF-8 text with '?' replaced by the stand-in; in a quoted string
 * or comment (quote = '"' or ')'), escaping what must be escaped. A stand-in
 * already in the text becomes U+FFFD. */
static void put_guarded(buf *out, const char *s, size_t n, int quote, size_t *replaced)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '?') {
            buf_append(out, QMARK_STANDIN, 3);
        } else if (i + 2 < n && memcmp(s + i, QMARK_STANDIN, 3) == 0) {
            buf_append(out, "\xEF\xBF\xBD", 3);
            if (replaced)
                (*replaced)++;
            i += 2;
        } else if (s[i] == 0) {
            buf_append(out, "\xEF\xBF\xBD", 3);
            if (replaced)
                (*replaced)++;
        } else {
            if ((quote == '"' && (s[i] == '"' || s[i] == '\\')) ||
                (quote == ')' && (s[i] == '(' || s[i] == ')' || s[i] == '\\')))
                buf_putc(out, '\\');
            buf_putc(out, (unsigned char)s[i]);
        }
    }
}

/*
 * Rewrites an address list (UTF-8) so that GMime has nothing to decode:
 * encoded-word runs become quoted strings (or escaped text inside quotes and
 * comments), '?' becomes the stand-in, and line breaks are unfolded.
 */
static int guard_addresses(const char *s, size_t n, buf *out, size_t *replaced)
{
    struct ewcache c = {0, 0, 0, 0};
    buf dec;
    buf_init(&dec, out->max);
    int in_quote = 0, in_angle = 0;
    size_t depth = 0;
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        char ch = s[i];
        struct ew w;
        if (ch == '\\' && (in_quote || depth) && i + 1 < n) {
            buf_putc(out, '\\');
            put_guarded(out, s + i + 1, 1, 0, replaced);
            i += 2;
            continue;
        }
        if (ch == '=' && !in_angle && parse_ew(s, n, i, &c, &w)) {
            size_t end;
            buf_reset(&dec);
            rc = decode_run(s, n, &w, &c, &dec, replaced, &end);
            if (rc < 0)
                break;
            if (!in_quote && !depth &&
                ((end < n && (s[end] == '@' || s[end] == '.')) ||
                 (i > 0 && (s[i - 1] == '@' || s[i - 1] == '.')))) {
                /* Part of a bare addr-spec: addresses stay as they are. */
                put_guarded(out, s + i, end - i, 0, replaced);
                i = end;
                continue;
            }
            const char *d = dec.p ? (const char *)dec.p : "";
            if (in_quote) {
                put_guarded(out, d, dec.len, '"', replaced);
            } else if (depth) {
                put_guarded(out, d, dec.len, ')', replaced);
            } else {
                buf_putc(out, '"');
                put_guarded(out, d, dec.len, '"', replaced);
                buf_putc(out, '"');
            }
            i = end;
            continue;
        }
        if (ch == '\r' || ch == '\n') {
            size_t j = i;
            while (j < n && (s[j] == '\r' || s[j] == '\n'))
                j++;
            if (j >= n || !is_wsp((unsigned char)s[j]))
                buf_putc(out, ' ');
            i = j;
            continue;
        }
        if (in_quote) {
            if (ch == '"')
                in_quote = 0;
        } else if (depth) {
            if (ch == '(')
                depth++;
            else if (ch == ')')
                depth--;
        } else if (ch == '"') {
            in_quote = 1;
        } else if (ch == '(') {
            depth = 1;
        } else if (ch == '<') {
            in_angle = 1;
        } else if (ch == '>') {
            in_angle = 0;
        }
        put_guarded(out, s + i, 1, 0, replaced);
        i++;
    }
    buf_free(&dec);
    return rc < 0 ? rc : out->err;
}

/* Restores '?' from the stand-in. */
static void unguard(buf *out, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if (i + 2 < n + 0 && memcmp(s + i, QMARK_STANDIN, 3) == 0) {
            buf_putc(out, '?');
            i += 2;
        } else {
            buf_putc(out, (unsigned char)s[i]);
        }
    }
}

static int atext(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Writes a display name: atoms, a quoted string, or encoded words. */
static void put_display_name(struct fold *f, const char *name)
{
    size_t n = strlen(name);
    int ascii = 1, atoms = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c >= 0x7F)
            ascii = 0;
        if (!(atext(c) || (c == ' ' && i > 0 && i + 1 < n && name[i + 1] != ' ')))
            atoms = 0;
    }
    if (n >= 2 && strstr(name, "=?"))
        ascii = 0;
    if (ascii && atoms && put_text_words(f, (const uint8_t *)name, n) != -ENOMEM)
        return;
    if (ascii) {
        buf q;
        buf_init(&q, 2 * n + 3);
        buf_putc(&q, '"');
        for (size_t i = 0; i < n; i++) {
            if (name[i] == '"' || name[i] == '\\')
                buf_putc(&q, '\\');
            buf_putc(&q, (unsigned char)name[i]);
        }
        buf_putc(&q, '"');
        if (!q.err && q.len <= PLAIN_WORD_MAX) {
            fold_space(f, q.len);
            fold_put(f, (const char *)q.p, q.len);
            buf_free(&q);
            return;
        }
        buf_free(&q);
    }
    /* Everything else is one run of encoded words: a phrase cannot mix
     * quoted strings and atoms safely when it holds specials. */
    buf v;
    buf_init(&v, 3 * n + 16);
    put_valid_utf8(&v, (const uint8_t *)name, n, NULL);
    put_encoded(f, v.p ? v.p : (const uint8_t *)"", v.len);
    buf_free(&v);
}

static void put_mailbox(struct fold *f, InternetAddress *ia, buf *scratch)
{
    const char *name = internet_address_get_name(ia);
    const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
    buf_reset(scratch);
    unguard(scratch, addr ? addr : "");
    size_t al = scratch->len;
    if (name && name[0]) {
        buf nm;
        buf_init(&nm, BUF_UNLIMITED);
        unguard(&nm, name);
        put_display_name(f, buf_cstr(&nm));
        buf_free(&nm);
        fold_space(f, al + 2);
        fold_put(f, "<", 1);
        fold_put(f, buf_cstr(scratch), al);
        fold_put(f, ">", 1);
    } else {
        fold_space(f, al);
        fold_put(f, buf_cstr(scratch), al);
    }
}

static int encode_list(struct fold *f, InternetAddressList *list)
{
    buf scratch;
    buf_init(&scratch, BUF_UNLIMITED);
    int n = internet_address_list_length(list);
    int first = 1;
    for (int k = 0; k < n; k++) {
        InternetAddress *ia = internet_address_list_get_address(list, k);
        if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            const char *gname = internet_address_get_name(ia);
            buf nm;
            buf_init(&nm, BUF_UNLIMITED);
            unguard(&nm, gname ? gname : "");
            InternetAddressList *members =
                internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
            int m = members ? internet_address_list_length(members) : 0;
            /* A group needs a name ("display-name ':' ... ';'"). What GMime
             * reads as a nameless group (from input like "a@b: <c@d>") is
             * written as its members, so the result stays valid syntax. */
            int named = nm.len > 0;
            if (named) {
                if (!first)
                    fold_put(f, ",", 1);
                put_display_name(f, buf_cstr(&nm));
                fold_put(f, ":", 1);
                first = 0;
            }
            buf_free(&nm);
            int first_member = 1;
            for (int j = 0; j < m; j++) {
                InternetAddress *mb = internet_address_list_get_address(members, j);
                /* Groups do not nest in RFC 5322; a nested one is flattened
                 * to its name-less form rather than recursed into. */
                if (!INTERNET_ADDRESS_IS_MAILBOX(mb))
                    continue;
                if (named ? !first_member : !first)
                    fold_put(f, ",", 1);
                put_mailbox(f, mb, &scratch);
                first_member = 0;
                first = 0;
            }
            if (named)
                fold_put(f, ";", 1);
        } else if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
            if (!first)
                fold_put(f, ",", 1);
            put_mailbox(f, ia, &scratch);
            first = 0;
        }
    }
    buf_free(&scratch);
    return f->out->err;
}

/* '@' outside quoted strings and comments: a lower bound on the addresses
 * the text holds. GMime skips what it cannot parse; when it returns fewer
 * addresses than this, the value is kept as unstructured text instead. */
static size_t count_ats(const char *s, size_t n)
{
    size_t k = 0, depth = 0;
    int in_quote = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && (in_quote || depth)) {
            i++;
        } else if (in_quote) {
            in_quote = s[i] != '"';
        } else if (depth) {
            depth += s[i] == '(';
            depth -= s[i] == ')';
        } else if (s[i] == '"') {
            in_quote = 1;
        } else if (s[i] == '(') {
            depth = 1;
        } else if (s[i] == '@' && !(i > 0 && s[i - 1] == '<')) {
            k++; /* (a route "<@relay:" is not an address) */
        }
    }
    return k;
}

static size_t count_mailboxes(InternetAddressList *list)
{
    size_t k = 0;
    int n = internet_address_list_length(list);
    for (int i = 0; i < n; i++) {
        InternetAddress *ia = internet_address_list_get_address(list, i);
        if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            InternetAddressList *m = internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
            int mn = m ? internet_address_list_length(m) : 0;
            for (int j = 0; j < mn; j++) {
                InternetAddress *mb = internet_address_list_get_address(m, j);
                const char *a = INTERNET_ADDRESS_IS_MAILBOX(mb)
                                    ? internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(mb))
                                    : NULL;
                k += a && strchr(a, '@');
            }
        } else if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
            const char *a = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
            k += a && strchr(a, '@');
        }
    }
    return k;
}

int mimehdr_encode_addresses(const char *name, const char *raw, size_t n, buf *out,
                             size_t *replaced)
{
    if (out->err)
        return out->err;
    pthread_once(&gmime_once, gmime_start);

    buf tmp, guarded;
    buf_init(&tmp, out->max);
    buf_init(&guarded, out->max);
    const char *s;
    size_t len;
    size_t rep = 0;
    int rc = to_utf8_whole(raw, n, &tmp, &s, &len, &rep);
    if (rc == 0)
        rc = guard_addresses(s, len, &guarded, &rep);
    if (rc < 0)
        goto done;

    size_t mark = out->len;
    InternetAddressList *list = NULL;
    GMimeParserOptions *opts = g_mime_parser_options_new();
    if (guarded.len > 0)
        list = internet_address_list_parse(opts, buf_cstr(&guarded));
    g_mime_parser_options_free(opts);
    if (list && internet_address_list_length(list) > 0 &&
        count_mailboxes(list) >= count_ats(buf_cstr(&guarded), guarded.len)) {
        size_t nl = strlen(name);
        struct fold f = {out, nl + 1};
        buf_append(out, name, nl);
        buf_putc(out, ':');
        encode_list(&f, list);
        buf_append(out, "\r\n", 2);
        rc = out->err;
    } else {
        /* Not addresses GMime can parse (e.g. the null sender "MAILER DAEMON
         * <>"): keep the text. Printable ASCII is written as the sender wrote
         * it, trimmed; anything else as encoded unstructured text. */
        buf text;
        buf_init(&text, out->max);
        rc = decode_utf8_text(s, len, &text, &rep);
        if (rc == 0) {
            const char *t = buf_cstr(&text);
            size_t tl = text.len;
            while (tl && (*t == ' ' || *t == '\t')) {
                t++;
                tl--;
            }
            while (tl && (t[tl - 1] == ' ' || t[tl - 1] == '\t'))
                tl--;
            int ascii = tl > 0 && tl <= 900;
            for (size_t i = 0; ascii && i < tl; i++)
                ascii = (unsigned char)t[i] >= 0x20 && (unsigned char)t[i] <= 0x7e;
            if (ascii) {
                buf_printf(out, "%s: ", name);
                buf_append(out, t, tl);
                buf_append(out, "\r\n", 2);
                rc = out->err;
            } else {
                rc = mimehdr_encode_text(name, t, out);
            }
        }
        buf_free(&text);
    }
    if (list)
        g_object_unref(list);
    if (rc < 0 && out->len > mark && !out->err)
        buf_truncate(out, mark);
done:
    if (replaced)
        *replaced += rep;
    buf_free(&tmp);
    buf_free(&guarded);
    return rc;
}
