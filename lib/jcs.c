/*
 * jcs - RFC 8785 canonical JSON. See jcs.h for the contract.
 *
 * How it works
 *   One recursive-descent pass writes the canonical form while it parses.
 *   Object members are written in input order; each member's span in the
 *   output and its unescaped name (in a side buffer) are kept on a stack, and
 *   when the object closes the spans are checked for order and, only if they
 *   are out of order, rewritten sorted. Canonical input therefore costs one
 *   pass and one comparison per member.
 *
 *   Numbers: the literal is checked against the JSON grammar, converted with
 *   strtod() from a form without a decimal point ("digits e exponent", so the
 *   locale's decimal separator never matters), and written back as ECMAScript
 *   does: the shortest digit string that reads back as the same double
 *   (found with printf's correctly rounded %.*e and its neighbours), then
 *   ECMAScript's choice between plain and exponent notation.
 */
#include "jcs.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct member {
    size_t key_off, key_len;  /* in ps.keys */
    size_t start, colon, end; /* "name":value in the output; colon: the ':' */
    size_t in_off;            /* name in the input, for messages */
} member;

typedef struct ps {
    const uint8_t *s;
    size_t n, i;
    unsigned flags;
    buf *out;
    buf keys;
    member *mem;
    size_t nmem, capmem;
    jcs_error *err;
    int failed;
    size_t base;     /* out->len when this value began */
    jcs_member *top; /* optional: the top-level object's members */
    size_t top_max;
    long top_n;
} ps;

static void fail(ps *p, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* buf_append with the common case (room left) inline. */
static inline void put(buf *b, const void *src, size_t n)
{
    if (b->err == 0 && b->p != NULL && b->cap - b->len > n && b->max - b->len >= n) {
        memcpy(b->p + b->len, src, n);
        b->len += n;
        b->p[b->len] = 0;
        return;
    }
    buf_append(b, src, n);
}

static void fail(ps *p, size_t off, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    if (p->err == NULL)
        return;
    p->err->offset = off;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->msg, sizeof p->err->msg, fmt, ap);
    va_end(ap);
}

static void skip_ws(ps *p)
{
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

/* ---- numbers ------------------------------------------------------------------ */

static double read_back(unsigned long long d, long e10)
{
    char t[64];
    snprintf(t, sizeof t, "%llue%ld", d, e10);
    return strtod(t, NULL);
}

int jcs_number(double v, char out[32])
{
    if (isnan(v) || isinf(v))
        return -1;
    char *o = out;
    if (v == 0) {
        memcpy(out, "0", 2);
        return 1;
    }
    if (v < 0) {
        *o++ = '-';
        v = -v;
    }
    if (v < 9007199254740992.0 && v == floor(v)) {
        int k = snprintf(o, 30, "%llu", (unsigned long long)v);
        return (int)(o - out) + k;
    }
    /* Shortest digits d (p of them) with d * 10^e10 reading back as v. */
    unsigned long long d = 0;
    long e10 = 0;
    int found = 0;
    for (int prec = 1; prec <= 17 && !found; prec++) {
        char t[64];
        snprintf(t, sizeof t, "%.*e", prec - 1, v);
        unsigned long long dd = 0;
        const char *q = t;
        for (; *q && *q != 'e'; q++)
            if (*q >= '0' && *q <= '9')
                dd = dd * 10 + (unsigned long long)(*q - '0');
        long x = *q == 'e' ? strtol(q + 1, NULL, 10) : 0;
        long ee = x - (prec - 1);
        if (read_back(dd, ee) == v) {
            d = dd, e10 = ee, found = 1;
        } else if (read_back(dd + 1, ee) == v) {
            d = dd + 1, e10 = ee, found = 1;
        } else if (dd > 1 && read_back(dd - 1, ee) == v) {
            d = dd - 1, e10 = ee, found = 1;
        }
    }
    if (!found) /* %.16e always reads back; not reached for a finite double */
        return -1;
    char ds[24];
    int k = snprintf(ds, sizeof ds, "%llu", d);
    while (k > 1 && ds[k - 1] == '0') {
        ds[--k] = 0;
        e10++;
    }
    long n = e10 + k; /* v = 0.ds * 10^n */
    if (k <= n && n <= 21) {
        memcpy(o, ds, (size_t)k);
        o += k;
        for (long z = 0; z < n - k; z++)
            *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, ds, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, ds + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (long z = 0; z < -n; z++)
            *o++ = '0';
        memcpy(o, ds, (size_t)k);
        o += k;
    } else {
        *o++ = ds[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, ds + 1, (size_t)(k - 1));
            o += k - 1;
        }
        long e = n - 1;
        o += snprintf(o, 8, "e%c%ld", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
    *o = 0;
    return (int)(o - out);
}

/* The decimal value of a JSON number literal as (negative, significant digits
 * without leading or trailing zeros, exponent of the last digit). Zero gives
 * no digits. The literal is known to match the grammar. */
typedef struct decimal {
    int neg;
    char digits[JCS_MAX_NUMBER_LEN + 1];
    size_t nd;
    long exp;
} decimal;

static void to_decimal(const uint8_t *s, size_t n, decimal *d)
{
    size_t i = 0;
    long frac = 0, e = 0;
    d->neg = 0;
    d->nd = 0;
    if (i < n && s[i] == '-')
        d->neg = 1, i++;
    int in_frac = 0;
    for (; i < n && s[i] != 'e' && s[i] != 'E'; i++) {
        if (s[i] == '.') {
            in_frac = 1;
            continue;
        }
        if (d->nd == 0 && s[i] == '0') {
            if (in_frac)
                frac++;
            continue;
        }
        d->digits[d->nd++] = (char)s[i];
        if (in_frac)
            frac++;
    }
    if (i < n) {
        i++;
        int eneg = 0;
        if (s[i] == '+' || s[i] == '-')
            eneg = s[i++] == '-';
        for (; i < n; i++)
            if (e < 100000000)
                e = e * 10 + (s[i] - '0');
        if (eneg)
            e = -e;
    }
    e -= frac;
    while (d->nd > 0 && d->digits[d->nd - 1] == '0') {
        d->nd--;
        e++;
    }
    d->digits[d->nd] = 0;
    d->exp = e;
    if (d->nd == 0)
        d->neg = 0, d->exp = 0;
}

static void parse_number(ps *p)
{
    size_t start = p->i, i = p->i;
    const uint8_t *s = p->s;
    if (i < p->n && s[i] == '-')
        i++;
    if (i >= p->n || s[i] < '0' || s[i] > '9') {
        fail(p, i, "invalid number: a digit must follow '-'");
        return;
    }
    if (s[i] == '0') {
        i++;
        if (i < p->n && s[i] >= '0' && s[i] <= '9') {
            fail(p, i, "invalid number: leading zeros are not allowed");
            return;
        }
    } else {
        while (i < p->n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < p->n && s[i] == '.') {
        i++;
        size_t f = i;
        while (i < p->n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f) {
            fail(p, i, "invalid number: a digit must follow '.'");
            return;
        }
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t f = i;
        while (i < p->n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f) {
            fail(p, i, "invalid number: a digit must follow the exponent mark");
            return;
        }
    }
    size_t len = i - start;
    /* Fast path: a plain integer of at most 15 digits is its own canonical
     * form (every such integer is an exact double), except "-0". */
    size_t digits = len - (s[start] == '-');
    int plain = digits <= 15;
    for (size_t k = start + (s[start] == '-'); plain && k < i; k++)
        plain = s[k] >= '0' && s[k] <= '9';
    if (plain) {
        p->i = i;
        if (len == 2 && s[start] == '-' && s[start + 1] == '0')
            buf_putc(p->out, '0');
        else
            put(p->out, s + start, len);
        return;
    }
    if (len > JCS_MAX_NUMBER_LEN) {
        fail(p, start, "number literal longer than %d bytes", JCS_MAX_NUMBER_LEN);
        return;
    }
    p->i = i;
    decimal lit;
    to_decimal(s + start, len, &lit);
    double v;
    if (lit.nd == 0) {
        v = 0;
    } else if (lit.exp + (long)lit.nd > 400) {
        v = HUGE_VAL; /* beyond any double: no need to ask strtod */
    } else if (lit.exp + (long)lit.nd < -400) {
        v = 0;
    } else {
        char t[JCS_MAX_NUMBER_LEN + 32];
        snprintf(t, sizeof t, "%se%ld", lit.digits, lit.exp);
        v = strtod(t, NULL);
    }
    if (isinf(v)) {
        fail(p, start, "number out of range (beyond the largest double, about 1.8e308)");
        return;
    }
    if (lit.neg)
        v = -v;
    char num[32];
    int k = jcs_number(v, num);
    if (k < 0) {
        fail(p, start, "number cannot be represented");
        return;
    }
    if (p->flags & JCS_EXACT_NUMBERS) {
        decimal canon;
        to_decimal((const uint8_t *)num, (size_t)k, &canon);
        if (canon.neg != lit.neg || canon.nd != lit.nd || canon.exp != lit.exp ||
            memcmp(canon.digits, lit.digits, lit.nd) != 0) {
            fail(p, start,
                 "number %.*s cannot be kept exactly (it would become %s); write it as a string",
                 (int)(len > 40 ? 40 : len), (const char *)s + start, num);
            return;
        }
    }
    put(p->out, num, (size_t)k);
}

/* ---- strings ------------------------------------------------------------------ */

/* Strict UTF-8: the length of the sequence at s (n left) and its code point,
 * or 0 if invalid. */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint32_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t min;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80, c &= 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800, c &= 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000, c &= 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3fu);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

static size_t utf8_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

static void put_escaped_cp(buf *out, uint32_t cp)
{
    static const char hex[] = "0123456789abcdef";
    switch (cp) {
    case '"':
        buf_append(out, "\\\"", 2);
        return;
    case '\\':
        buf_append(out, "\\\\", 2);
        return;
    case '\b':
        buf_append(out, "\\b", 2);
        return;
    case '\f':
        buf_append(out, "\\f", 2);
        return;
    case '\n':
        buf_append(out, "\\n", 2);
        return;
    case '\r':
        buf_append(out, "\\r", 2);
        return;
    case '\t':
        buf_append(out, "\\t", 2);
        return;
    default:
        break;
    }
    if (cp < 0x20) {
        char u[6] = {'\\', 'u', '0', '0', hex[cp >> 4], hex[cp & 15]};
        buf_append(out, u, 6);
        return;
    }
    uint8_t u8[4];
    buf_append(out, u8, utf8_encode(cp, u8));
}

/* The character a one-letter JSON escape stands for (\" \\ \/ \b \f \n \r \t),
 * or -1 (\u and anything else). */
static int simple_escape(uint8_t e)
{
    switch (e) {
    case '"':
    case '\\':
    case '/':
        return e;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return -1;
    }
}

static int hex4(const uint8_t *s, uint32_t *v)
{
    uint32_t r = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t c = s[k];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return -1;
        r = r << 4 | d;
    }
    *v = r;
    return 0;
}

/* Bytes that stand for themselves in a canonical string: printable ASCII but
 * the quote and the backslash. */
static const uint8_t plain_ascii[256] = {
    ['\x20'] = 1,
    1,
    0,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1, /* 0x20-0x2f, '"' = 0x22 */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1, /* 0x30 */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1, /* 0x40 */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    0,
    1,
    1,
    1, /* 0x50, '\\' = 0x5c */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1, /* 0x60 */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1, /* 0x70-0x7f */
};

/* At the opening quote. Writes the canonical string; a name also goes,
 * unescaped, to p->keys. */
static void parse_string(ps *p, int is_key)
{
    const uint8_t *s = p->s;
    size_t i = p->i + 1;
    buf_putc(p->out, '"');
    for (;;) {
        size_t run = i;
        while (i < p->n && plain_ascii[s[i]])
            i++;
        if (i > run) {
            put(p->out, s + run, i - run);
            if (is_key)
                put(&p->keys, s + run, i - run);
        }
        if (i >= p->n) {
            fail(p, p->i, "unterminated string");
            return;
        }
        uint8_t c = s[i];
        if (c == '"') {
            i++;
            buf_putc(p->out, '"');
            break;
        }
        if (c < 0x20) {
            fail(p, i, "control character 0x%02x in a string (it must be escaped)", c);
            return;
        }
        uint32_t cp;
        if (c == '\\') {
            if (i + 1 >= p->n) {
                fail(p, i, "unterminated string");
                return;
            }
            uint8_t e = s[i + 1];
            size_t at = i;
            i += 2;
            int simple = simple_escape(e);
            if (simple >= 0) {
                cp = (uint32_t)simple;
            } else if (e == 'u') {
                if (i + 4 > p->n || hex4(s + i, &cp) < 0) {
                    fail(p, at, "invalid \\u escape (four hex digits expected)");
                    return;
                }
                i += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff) {
                    fail(p, at, "lone low surrogate \\u%04x", (unsigned)cp);
                    return;
                }
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    uint32_t lo;
                    if (i + 6 > p->n || s[i] != '\\' || s[i + 1] != 'u' ||
                        hex4(s + i + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
                        fail(p, at, "high surrogate \\u%04x without its low surrogate",
                             (unsigned)cp);
                        return;
                    }
                    i += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
            } else {
                fail(p, at, "invalid escape \\%c", e >= 0x20 && e < 0x7f ? e : '?');
                return;
            }
        } else {
            size_t k = utf8_decode(s + i, p->n - i, &cp);
            if (k == 0) {
                fail(p, i, "invalid UTF-8 byte 0x%02x in a string", c);
                return;
            }
            i += k;
        }
        put_escaped_cp(p->out, cp);
        if (is_key) {
            uint8_t u8[4];
            buf_append(&p->keys, u8, utf8_encode(cp, u8));
        }
    }
    p->i = i;
}

/* lossy: a byte that does not start a UTF-8 sequence becomes U+FFFD instead
 * of failing. */
static int put_string(buf *out, const char *str, size_t n, int lossy)
{
    const uint8_t *s = (const uint8_t *)str;
    buf_putc(out, '"');
    for (size_t i = 0; i < n;) {
        size_t run = i;
        while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
            i++;
        buf_append(out, s + run, i - run);
        if (i >= n)
            break;
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (k == 0 && !lossy)
            return -1;
        put_escaped_cp(out, k ? cp : 0xFFFD);
        i += k ? k : 1;
    }
    buf_putc(out, '"');
    return out->err ? -1 : 0;
}

int jcs_put_string(buf *out, const char *s, size_t n)
{
    return put_string(out, s, n, 0);
}

int jcs_put_string_lossy(buf *out, const char *s, size_t n)
{
    return put_string(out, s, n, 1);
}

/* ---- member names: UTF-16 code unit order (RFC 8785 3.2.3) -------------------- */

static int name_cmp(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    if (i == na || i == nb)
        return na < nb ? -1 : na > nb ? 1 : 0;
    while (i > 0 && (a[i] & 0xc0) == 0x80) /* back to the start of the code point */
        i--;
    uint32_t ca = 0, cb = 0;
    if (utf8_decode(a + i, na - i, &ca) == 0 || utf8_decode(b + i, nb - i, &cb) == 0)
        return a[i] < b[i] ? -1 : 1; /* not reached: names are valid UTF-8 */
    if ((ca >= 0x10000) != (cb >= 0x10000)) {
        /* One is a surrogate pair: its first unit decides. */
        if (ca >= 0x10000)
            ca = 0xd800 + ((ca - 0x10000) >> 10);
        else
            cb = 0xd800 + ((cb - 0x10000) >> 10);
    }
    return ca < cb ? -1 : 1;
}

static int mem_cmp(const ps *p, const member *x, const member *y)
{
    return name_cmp(p->keys.p + x->key_off, x->key_len, p->keys.p + y->key_off, y->key_len);
}

/* Merge sort of members m[0..n) by name (tmp holds n). */
static void sort_members(const ps *p, member *m, member *tmp, size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    sort_members(p, m, tmp, h);
    sort_members(p, m + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = mem_cmp(p, &m[j], &m[i]) < 0 ? m[j++] : m[i++];
    while (i < h)
        tmp[k++] = m[i++];
    while (j < n)
        tmp[k++] = m[j++];
    memcpy(m, tmp, n * sizeof *m);
}

/* ---- values --------------------------------------------------------------------- */

static void parse_value(ps *p, int depth);

static int push_member(ps *p, member m)
{
    if (p->nmem == p->capmem) {
        size_t nc = p->capmem ? p->capmem * 2 : 32;
        member *nm = realloc(p->mem, nc * sizeof *nm);
        if (nm == NULL) {
            fail(p, p->i, "out of memory");
            return -1;
        }
        p->mem = nm;
        p->capmem = nc;
    }
    p->mem[p->nmem++] = m;
    return 0;
}

static void parse_object(ps *p, int depth)
{
    size_t open = p->i;
    p->i++;
    buf_putc(p->out, '{');
    size_t keys_mark = p->keys.len, first = p->nmem;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
        buf_putc(p->out, '}');
        if (depth == 1 && p->top)
            p->top_n = 0;
        return;
    }
    for (;;) {
        skip_ws(p);
        if (p->i >= p->n || p->s[p->i] != '"') {
            fail(p, p->i, "expected a member name (a string) in the object opened at byte %zu",
                 open);
            return;
        }
        member m;
        m.in_off = p->i;
        m.start = p->out->len;
        m.key_off = p->keys.len;
        parse_string(p, 1);
        if (p->failed)
            return;
        m.key_len = p->keys.len - m.key_off;
        skip_ws(p);
        if (p->i >= p->n || p->s[p->i] != ':') {
            fail(p, p->i, "expected ':' after a member name");
            return;
        }
        p->i++;
        m.colon = p->out->len;
        buf_putc(p->out, ':');
        parse_value(p, depth + 1);
        if (p->failed)
            return;
        m.end = p->out->len;
        if (push_member(p, m) < 0)
            return;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            buf_putc(p->out, ',');
            continue;
        }
        if (p->i < p->n && p->s[p->i] == '}') {
            p->i++;
            break;
        }
        fail(p, p->i, "expected ',' or '}' in the object opened at byte %zu", open);
        return;
    }
    member *m = p->mem + first;
    size_t n = p->nmem - first;
    int sorted = 1;
    for (size_t j = 1; j < n && sorted; j++)
        if (mem_cmp(p, &m[j - 1], &m[j]) >= 0)
            sorted = 0;
    if (!sorted && p->out->err == 0) {
        member *tmp = malloc(n * sizeof *tmp);
        size_t base = m[0].start, len = m[n - 1].end - base;
        uint8_t *copy = malloc(len ? len : 1);
        if (tmp == NULL || copy == NULL) {
            free(tmp);
            free(copy);
            fail(p, open, "out of memory");
            return;
        }
        memcpy(copy, p->out->p + base, len);
        sort_members(p, m, tmp, n);
        free(tmp);
        for (size_t j = 1; j < n; j++)
            if (mem_cmp(p, &m[j - 1], &m[j]) == 0) {
                size_t at = m[j - 1].in_off > m[j].in_off ? m[j - 1].in_off : m[j].in_off;
                fail(p, at, "duplicate member name (also at byte %zu)",
                     m[j - 1].in_off < m[j].in_off ? m[j - 1].in_off : m[j].in_off);
                free(copy);
                return;
            }
        buf_truncate(p->out, base);
        for (size_t j = 0; j < n; j++) {
            if (j)
                buf_putc(p->out, ',');
            size_t ns = p->out->len;
            buf_append(p->out, copy + (m[j].start - base), m[j].end - m[j].start);
            m[j].colon = ns + (m[j].colon - m[j].start);
            m[j].end = ns + (m[j].end - m[j].start);
            m[j].start = ns;
        }
        free(copy);
    } else if (!sorted) {
        fail(p, open, "output limit reached");
        return;
    }
    buf_putc(p->out, '}');
    if (depth == 1 && p->top) {
        p->top_n = (long)n;
        for (size_t j = 0; j < n && j < p->top_max; j++) {
            p->top[j].key_off = m[j].start + 1 - p->base;
            p->top[j].key_len = m[j].colon - 1 - (m[j].start + 1);
            p->top[j].val_off = m[j].colon + 1 - p->base;
            p->top[j].val_len = m[j].end - (m[j].colon + 1);
        }
    }
    p->nmem = first;
    buf_truncate(&p->keys, keys_mark);
}

static void parse_array(ps *p, int depth)
{
    size_t open = p->i;
    p->i++;
    buf_putc(p->out, '[');
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == ']') {
        p->i++;
        buf_putc(p->out, ']');
        return;
    }
    for (;;) {
        parse_value(p, depth + 1);
        if (p->failed)
            return;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            buf_putc(p->out, ',');
            continue;
        }
        if (p->i < p->n && p->s[p->i] == ']') {
            p->i++;
            buf_putc(p->out, ']');
            return;
        }
        fail(p, p->i, "expected ',' or ']' in the array opened at byte %zu", open);
        return;
    }
}

static void literal(ps *p, const char *word)
{
    size_t k = strlen(word);
    if (p->n - p->i < k || memcmp(p->s + p->i, word, k) != 0) {
        fail(p, p->i, "unexpected characters (expected a JSON value)");
        return;
    }
    buf_append(p->out, word, k);
    p->i += k;
}

static void parse_value(ps *p, int depth)
{
    if (depth > JCS_MAX_DEPTH) {
        fail(p, p->i, "nested deeper than %d levels", JCS_MAX_DEPTH);
        return;
    }
    skip_ws(p);
    if (p->i >= p->n) {
        fail(p, p->i, "unexpected end of input (expected a JSON value)");
        return;
    }
    switch (p->s[p->i]) {
    case '{':
        parse_object(p, depth);
        break;
    case '[':
        parse_array(p, depth);
        break;
    case '"':
        parse_string(p, 0);
        break;
    case 't':
        literal(p, "true");
        break;
    case 'f':
        literal(p, "false");
        break;
    case 'n':
        literal(p, "null");
        break;
    default:
        if (p->s[p->i] == '-' || (p->s[p->i] >= '0' && p->s[p->i] <= '9'))
            parse_number(p);
        else
            fail(p, p->i, "unexpected byte 0x%02x (expected a JSON value)", p->s[p->i]);
        break;
    }
}

/* Work space kept per thread between calls (names and the member stack), so
 * that canonicalizing many small objects does not allocate each time. Large
 * ones are given back. */
static _Thread_local buf tl_keys;
static _Thread_local member *tl_mem;
static _Thread_local size_t tl_capmem;

void jcs_thread_cleanup(void)
{
    buf_free(&tl_keys);
    memset(&tl_keys, 0, sizeof tl_keys);
    free(tl_mem);
    tl_mem = NULL;
    tl_capmem = 0;
}

int jcs_canonicalize(const uint8_t *in, size_t n, unsigned flags, buf *out, jcs_error *err)
{
    return jcs_canonicalize_members(in, n, flags, out, err, NULL, 0, NULL);
}

int jcs_canonicalize_members(const uint8_t *in, size_t n, unsigned flags, buf *out, jcs_error *err,
                             jcs_member *top, size_t max, long *count)
{
    ps p = {0};
    p.base = out->len;
    p.top = top;
    p.top_max = max;
    p.top_n = -1;
    p.s = in;
    p.n = n;
    p.flags = flags;
    p.out = out;
    p.err = err;
    if (tl_keys.max == 0)
        buf_init(&tl_keys, BUF_UNLIMITED);
    p.keys = tl_keys;
    buf_reset(&p.keys);
    p.mem = tl_mem;
    p.capmem = tl_capmem;
    skip_ws(&p);
    if ((flags & JCS_OBJECT) && (p.i >= n || in[p.i] != '{'))
        fail(&p, p.i, "expected a JSON object ({...})");
    if (!p.failed)
        parse_value(&p, 1);
    if (!p.failed) {
        skip_ws(&p);
        if (p.i < n)
            fail(&p, p.i, "unexpected data after the JSON value");
    }
    if (!p.failed && (out->err || p.keys.err))
        fail(&p, n, "%s", out->err == -ENOSPC ? "output limit reached" : "out of memory");
    if (p.keys.cap > 65536 || p.keys.err) {
        buf_free(&p.keys);
        buf_init(&p.keys, BUF_UNLIMITED);
    }
    tl_keys = p.keys;
    if (p.capmem > 4096) {
        free(p.mem);
        p.mem = NULL;
        p.capmem = 0;
    }
    tl_mem = p.mem;
    tl_capmem = p.capmem;
    if (count)
        *count = p.top_n;
    return p.failed ? -1 : 0;
}

int jcs_is_canonical(const uint8_t *in, size_t n, unsigned flags, buf *scratch, jcs_error *err)
{
    return jcs_is_canonical_members(in, n, flags, scratch, err, NULL, 0, NULL);
}

/* ---- checking canonical text in place ----------------------------------------- */

/* The fast path of jcs_is_canonical(): a validator that writes nothing and
 * accepts only text that is byte for byte its own canonical form. Anything it
 * does not accept goes to the full canonicalizer, which decides (and says
 * why); the fuzz target checks that both agree. */
typedef struct vs {
    const uint8_t *s;
    size_t n, i;
    unsigned flags;
    jcs_member *top;
    size_t top_max;
    long top_n;
} vs;

/* The next code point of a canonical string body at t[*i] (escapes decoded). */
static uint32_t next_cp(const uint8_t *t, size_t end, size_t *i)
{
    uint32_t cp;
    if (t[*i] != '\\') {
        size_t k = utf8_decode(t + *i, end - *i, &cp);
        *i += k ? k : 1;
        return k ? cp : t[*i - 1];
    }
    uint8_t e = t[*i + 1];
    *i += 2;
    if (e == 'u') {
        hex4(t + *i, &cp);
        *i += 4;
        return cp;
    }
    int c = simple_escape(e);
    return c >= 0 ? (uint32_t)c : e;
}

/* UTF-16 order of two canonical string bodies (a: [as, ae), b: [bs, be)). */
static int body_cmp(const uint8_t *t, size_t as, size_t ae, size_t bs, size_t be)
{
    size_t i = as, j = bs;
    while (i < ae && j < be) {
        if (t[i] == t[j] && t[i] < 0x80 && t[i] != '\\') {
            i++, j++;
            continue;
        }
        uint32_t ca = next_cp(t, ae, &i), cb = next_cp(t, be, &j);
        if (ca == cb)
            continue;
        if ((ca >= 0x10000) != (cb >= 0x10000)) {
            if (ca >= 0x10000)
                ca = 0xd800 + ((ca - 0x10000) >> 10);
            else
                cb = 0xd800 + ((cb - 0x10000) >> 10);
        }
        return ca < cb ? -1 : 1;
    }
    return i < ae ? 1 : j < be ? -1 : 0;
}

/* A canonical string at v->i (the quote); 0 or -1. */
static int vstring(vs *v)
{
    const uint8_t *s = v->s;
    size_t i = v->i + 1;
    for (;;) {
        while (i < v->n && plain_ascii[s[i]])
            i++;
        if (i >= v->n)
            return -1;
        uint8_t c = s[i];
        if (c == '"') {
            v->i = i + 1;
            return 0;
        }
        if (c == '\\') {
            if (i + 1 >= v->n)
                return -1;
            uint8_t e = s[i + 1];
            if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                i += 2;
                continue;
            }
            /* \u00xx, lower-case, only for the controls without a short form */
            if (e != 'u' || i + 6 > v->n || s[i + 2] != '0' || s[i + 3] != '0' ||
                (s[i + 4] != '0' && s[i + 4] != '1'))
                return -1;
            uint8_t h = s[i + 5];
            if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f')))
                return -1;
            uint32_t cp = (uint32_t)((s[i + 4] - '0') * 16 + (h <= '9' ? h - '0' : h - 'a' + 10));
            if (cp == '\b' || cp == '\f' || cp == '\n' || cp == '\r' || cp == '\t')
                return -1;
            i += 6;
            continue;
        }
        if (c < 0x80)
            return -1; /* a raw control character */
        uint32_t cp;
        size_t k = utf8_decode(s + i, v->n - i, &cp);
        if (k == 0)
            return -1;
        i += k;
    }
}

static int vvalue(vs *v, int depth);

static int vnumber(vs *v)
{
    const uint8_t *s = v->s;
    size_t st = v->i, i = st;
    if (i < v->n && s[i] == '-')
        i++;
    size_t d0 = i;
    while (i < v->n && s[i] >= '0' && s[i] <= '9')
        i++;
    size_t nd = i - d0;
    int plain = nd > 0 && nd <= 15 && (i >= v->n || (s[i] != '.' && s[i] != 'e' && s[i] != 'E'));
    if (plain) {
        /* "0", or no leading zero; never "-0" */
        if (s[d0] == '0' && (nd > 1 || d0 > st))
            return -1;
        v->i = i;
        return 0;
    }
    /* Anything else: the canonicalizer's own number path decides. */
    size_t e = st;
    while (e < v->n && (s[e] == '-' || s[e] == '+' || s[e] == '.' || s[e] == 'e' || s[e] == 'E' ||
                        (s[e] >= '0' && s[e] <= '9')))
        e++;
    buf tmp;
    buf_init(&tmp, 64);
    ps p = {0};
    p.s = s;
    p.n = e;
    p.i = st;
    p.flags = v->flags;
    p.out = &tmp;
    parse_number(&p);
    int ok = !p.failed && p.i == e && tmp.len == e - st && memcmp(tmp.p, s + st, e - st) == 0;
    buf_free(&tmp);
    if (!ok)
        return -1;
    v->i = e;
    return 0;
}

static int vvalue(vs *v, int depth)
{
    if (depth > JCS_MAX_DEPTH || v->i >= v->n)
        return -1;
    const uint8_t *s = v->s;
    switch (s[v->i]) {
    case '"':
        return vstring(v);
    case '{': {
        v->i++;
        if (v->i < v->n && s[v->i] == '}') {
            v->i++;
            if (depth == 1)
                v->top_n = 0;
            return 0;
        }
        size_t pks = 0, pke = 0;
        long count = 0;
        for (;;) {
            if (v->i >= v->n || s[v->i] != '"')
                return -1;
            size_t ks = v->i;
            if (vstring(v) < 0)
                return -1;
            size_t ke = v->i; /* after the closing quote */
            if (count > 0 && body_cmp(s, pks + 1, pke - 1, ks + 1, ke - 1) >= 0)
                return -1; /* out of order, or a duplicate */
            if (v->i >= v->n || s[v->i] != ':')
                return -1;
            v->i++;
            size_t vsx = v->i;
            if (vvalue(v, depth + 1) < 0)
                return -1;
            if (depth == 1 && v->top && (size_t)count < v->top_max) {
                v->top[count].key_off = ks + 1;
                v->top[count].key_len = ke - 1 - (ks + 1);
                v->top[count].val_off = vsx;
                v->top[count].val_len = v->i - vsx;
            }
            count++;
            pks = ks, pke = ke;
            if (v->i < v->n && s[v->i] == ',') {
                v->i++;
                continue;
            }
            if (v->i < v->n && s[v->i] == '}') {
                v->i++;
                if (depth == 1)
                    v->top_n = count;
                return 0;
            }
            return -1;
        }
    }
    case '[':
        v->i++;
        if (v->i < v->n && s[v->i] == ']') {
            v->i++;
            return 0;
        }
        for (;;) {
            if (vvalue(v, depth + 1) < 0)
                return -1;
            if (v->i < v->n && s[v->i] == ',') {
                v->i++;
                continue;
            }
            if (v->i < v->n && s[v->i] == ']') {
                v->i++;
                return 0;
            }
            return -1;
        }
    case 't':
        if (v->n - v->i >= 4 && memcmp(s + v->i, "true", 4) == 0) {
            v->i += 4;
            return 0;
        }
        return -1;
    case 'f':
        if (v->n - v->i >= 5 && memcmp(s + v->i, "false", 5) == 0) {
            v->i += 5;
            return 0;
        }
        return -1;
    case 'n':
        if (v->n - v->i >= 4 && memcmp(s + v->i, "null", 4) == 0) {
            v->i += 4;
            return 0;
        }
        return -1;
    default:
        if (s[v->i] == '-' || (s[v->i] >= '0' && s[v->i] <= '9'))
            return vnumber(v);
        return -1;
    }
}

/* 1 if in[0..n) is canonical (members filled as jcs_canonicalize_members
 * would), 0 if this fast check cannot say so. */
static int fast_canonical(const uint8_t *in, size_t n, unsigned flags, jcs_member *top, size_t max,
                          long *count)
{
    vs v = {in, n, 0, flags, top, max, -1};
    if ((flags & JCS_OBJECT) && (n == 0 || in[0] != '{'))
        return 0;
    if (vvalue(&v, 1) < 0 || v.i != n)
        return 0;
    if (count)
        *count = v.top_n;
    return 1;
}

int jcs_is_canonical_members(const uint8_t *in, size_t n, unsigned flags, buf *scratch,
                             jcs_error *err, jcs_member *top, size_t max, long *count)
{
    if (fast_canonical(in, n, flags, top, max, count))
        return 1;
    buf_reset(scratch);
    if (jcs_canonicalize_members(in, n, flags, scratch, err, top, max, count) < 0)
        return 0;
    if (scratch->len == n && memcmp(scratch->p, in, n) == 0)
        return 1;
    if (err) {
        size_t i = 0;
        while (i < n && i < scratch->len && in[i] == scratch->p[i])
            i++;
        err->offset = i;
        snprintf(err->msg, sizeof err->msg, "not in canonical form (RFC 8785) from byte %zu", i);
    }
    return 0;
}

/* ---- reading canonical text ---------------------------------------------------- */

/* End of the string starting at text[i] (a quote), or 0. */
static size_t skip_string(const uint8_t *t, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (t[i] == '\\')
            i++;
        else if (t[i] == '"')
            return i + 1;
    }
    return 0;
}

static size_t skip_value(const uint8_t *t, size_t n, size_t i)
{
    if (i >= n)
        return 0;
    if (t[i] == '"')
        return skip_string(t, n, i);
    if (t[i] == '{' || t[i] == '[') {
        size_t depth = 0;
        while (i < n) {
            if (t[i] == '"') {
                i = skip_string(t, n, i);
                if (i == 0)
                    return 0;
                continue;
            }
            if (t[i] == '{' || t[i] == '[')
                depth++;
            else if (t[i] == '}' || t[i] == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return 0;
    }
    size_t s = i;
    while (i < n && t[i] != ',' && t[i] != '}' && t[i] != ']')
        i++;
    return i > s ? i : 0;
}

long jcs_members(const uint8_t *t, size_t n, jcs_member *m, size_t max)
{
    if (n < 2 || t[0] != '{' || t[n - 1] != '}')
        return -1;
    if (n == 2)
        return 0;
    size_t i = 1;
    long count = 0;
    for (;;) {
        if (i >= n || t[i] != '"')
            return -1;
        size_t ke = skip_string(t, n, i);
        if (ke == 0 || ke >= n || t[ke] != ':')
            return -1;
        size_t ve = skip_value(t, n, ke + 1);
        if (ve == 0 || ve >= n)
            return -1;
        if ((size_t)count < max) {
            m[count].key_off = i + 1;
            m[count].key_len = ke - 1 - (i + 1);
            m[count].val_off = ke + 1;
            m[count].val_len = ve - (ke + 1);
        }
        count++;
        if (t[ve] == '}')
            return ve == n - 1 ? count : -1;
        if (t[ve] != ',')
            return -1;
        i = ve + 1;
    }
}

int jcs_string_value(const uint8_t *t, size_t n, buf *out)
{
    if (n < 2 || t[0] != '"' || t[n - 1] != '"')
        return -1;
    for (size_t i = 1; i < n - 1; i++) {
        if (t[i] != '\\') {
            buf_putc(out, t[i]);
            continue;
        }
        if (++i >= n - 1)
            return -1;
        uint32_t cp;
        switch (t[i]) {
        case 'u':
            if (i + 4 >= n || hex4(t + i + 1, &cp) < 0 || (cp >= 0xd800 && cp <= 0xdfff))
                return -1;
            i += 4;
            break;
        default: {
            int simple = simple_escape(t[i]);
            cp = simple >= 0 ? (uint32_t)simple : t[i];
            break;
        }
        }
        uint8_t u8[4];
        buf_append(out, u8, utf8_encode(cp, u8));
    }
    return out->err ? -1 : 0;
}
