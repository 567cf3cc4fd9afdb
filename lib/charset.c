/*
 * NAME
 *   charset - bytes in a declared, wrong or missing charset to exact UTF-8.
 *
 * DESCRIPTION
 *   charset_to_utf8() maps the declared label through this module's own label
 *   table (not ICU's alias table, not iconv's) to an ICU converter, and converts
 *   strictly: an illegal or unmappable sequence fails the attempt and nothing of
 *   it stays in the output. Failing, missing or unknown labels lead to
 *   detection: 7-bit text with ISO-2022-JP escapes, valid UTF-8, a Japanese-first
 *   order for short input (ICU's detector is unreliable under ~40 bytes), then
 *   every candidate of ICU's detector (ucsdet), each strictly. Only when every
 *   strict attempt fails is a lossy conversion made, with the candidate that
 *   loses fewest characters, and each U+FFFD it writes is counted.
 *
 *   Converter choices (measured with ICU 72; see docs/CHARSETS.md):
 *   - ISO-2022-JP family: "ISO_2022,locale=ja,version=3" (JIS7): JIS X 0208 with
 *     NEC row 13 and the IBM extensions of CP50221, JIS X 0212, ESC ( I and
 *     SO/SI half-width kana; then "ISO-2022-JP-2" for its extra G2 sets.
 *   - Shift_JIS family: "windows-31j" (CP932), exact for NEC/IBM extensions.
 *   - EUC-JP family: "EUC-JP" (CP51932 and most of eucJP-ms), plus the 106
 *     eucJP-ms IBM-extension cells at 0x8FF3F3..0x8FF4FE that ICU lacks
 *     (charset_tables.h).
 *
 * LIMITS
 *   Labels longer than 63 bytes are unknown. The detector sees at most the
 *   first 64 KiB. Work is linear in the input: a bounded number of passes.
 *   Output is bounded by the caller's buf (sticky -ENOSPC).
 *
 * WHY HAND-WRITTEN
 *   The conversions are ICU's; what is ours is the policy ICU cannot know:
 *   which converter a mislabelled Japanese mail really needs, when to stop
 *   trusting a label, and never substituting silently.
 */
#include "charset.h"

#include "charset_tables.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <unicode/ucnv.h>
#include <unicode/ucnv_cb.h>
#include <unicode/ucnv_err.h>
#include <unicode/ucsdet.h>

enum family {
    FAM_ASCII,  /* US-ASCII: 7-bit only */
    FAM_UTF8,   /* validated by hand, copied */
    FAM_JIS,    /* ISO-2022-JP and CP50220/50221/50222 */
    FAM_SJIS,   /* Shift_JIS / CP932 */
    FAM_EUCJP,  /* EUC-JP / CP51932 / eucJP-ms */
    FAM_SINGLE, /* single-byte: never fails strictly, so the label is doubted */
    FAM_MULTI,  /* other ASCII-compatible multi-byte (GB18030, Big5, UHC) */
    FAM_OTHER,  /* ICU converter, not ASCII-compatible or unknown shape */
};

struct label {
    const char *label; /* lower case */
    const char *canon; /* reported name */
    const char *icu;   /* ICU converter name */
    enum family fam;
};

#define JIS7 "ISO_2022,locale=ja,version=3"

static const struct label labels[] = {
    {"us-ascii", "US-ASCII", "US-ASCII", FAM_ASCII},
    {"ascii", "US-ASCII", "US-ASCII", FAM_ASCII},
    {"ansi_x3.4-1968", "US-ASCII", "US-ASCII", FAM_ASCII},
    {"us", "US-ASCII", "US-ASCII", FAM_ASCII},
    {"utf-8", "UTF-8", "UTF-8", FAM_UTF8},
    {"utf8", "UTF-8", "UTF-8", FAM_UTF8},
    {"x-utf-8", "UTF-8", "UTF-8", FAM_UTF8},
    {"iso-2022-jp", "ISO-2022-JP", JIS7, FAM_JIS},
    {"csiso2022jp", "ISO-2022-JP", JIS7, FAM_JIS},
    {"iso-2022-jp-ms", "ISO-2022-JP", JIS7, FAM_JIS},
    {"iso-2022-jp-1", "ISO-2022-JP", JIS7, FAM_JIS},
    {"iso-2022-jp-2", "ISO-2022-JP", JIS7, FAM_JIS},
    {"iso-2022-jp-3", "ISO-2022-JP", JIS7, FAM_JIS},
    {"cp50220", "ISO-2022-JP", JIS7, FAM_JIS},
    {"cp50221", "ISO-2022-JP", JIS7, FAM_JIS},
    {"cp50222", "ISO-2022-JP", JIS7, FAM_JIS},
    {"x-windows-50220", "ISO-2022-JP", JIS7, FAM_JIS},
    {"x-windows-50221", "ISO-2022-JP", JIS7, FAM_JIS},
    {"jis", "ISO-2022-JP", JIS7, FAM_JIS},
    {"jis7", "ISO-2022-JP", JIS7, FAM_JIS},
    {"shift_jis", "windows-31j", "windows-31j", FAM_SJIS},
    {"shift-jis", "windows-31j", "windows-31j", FAM_SJIS},
    {"shiftjis", "windows-31j", "windows-31j", FAM_SJIS},
    {"sjis", "windows-31j", "windows-31j", FAM_SJIS},
    {"x-sjis", "windows-31j", "windows-31j", FAM_SJIS},
    {"x-shift_jis", "windows-31j", "windows-31j", FAM_SJIS},
    {"ms_kanji", "windows-31j", "windows-31j", FAM_SJIS},
    {"csshiftjis", "windows-31j", "windows-31j", FAM_SJIS},
    {"windows-31j", "windows-31j", "windows-31j", FAM_SJIS},
    {"cswindows31j", "windows-31j", "windows-31j", FAM_SJIS},
    {"cp932", "windows-31j", "windows-31j", FAM_SJIS},
    {"ms932", "windows-31j", "windows-31j", FAM_SJIS},
    {"windows-932", "windows-31j", "windows-31j", FAM_SJIS},
    {"x-ms-cp932", "windows-31j", "windows-31j", FAM_SJIS},
    {"shift_jis-2004", "windows-31j", "windows-31j", FAM_SJIS},
    {"euc-jp", "EUC-JP", "EUC-JP", FAM_EUCJP},
    {"eucjp", "EUC-JP", "EUC-JP", FAM_EUCJP},
    {"x-euc-jp", "EUC-JP", "EUC-JP", FAM_EUCJP},
    {"x-eucjp", "EUC-JP", "EUC-JP", FAM_EUCJP},
    {"euc-jp-ms", "EUC-JP", "EUC-JP", FAM_EUCJP},
    {"eucjp-ms", "EUC-JP", "EUC-JP", FAM_EUCJP},
    {"cp51932", "EUC-JP", "EUC-JP", FAM_EUCJP},
    {"cseucpkdfmtjapanese", "EUC-JP", "EUC-JP", FAM_EUCJP},
    /* Latin-1 labels carry windows-1252 in practice (as WHATWG decides). */
    {"iso-8859-1", "windows-1252", "windows-1252", FAM_SINGLE},
    {"iso8859-1", "windows-1252", "windows-1252", FAM_SINGLE},
    {"latin1", "windows-1252", "windows-1252", FAM_SINGLE},
    {"windows-1252", "windows-1252", "windows-1252", FAM_SINGLE},
    {"cp1252", "windows-1252", "windows-1252", FAM_SINGLE},
    {"iso-8859-2", "ISO-8859-2", "ISO-8859-2", FAM_SINGLE},
    {"iso-8859-3", "ISO-8859-3", "ISO-8859-3", FAM_SINGLE},
    {"iso-8859-4", "ISO-8859-4", "ISO-8859-4", FAM_SINGLE},
    {"iso-8859-5", "ISO-8859-5", "ISO-8859-5", FAM_SINGLE},
    {"iso-8859-6", "ISO-8859-6", "ISO-8859-6", FAM_SINGLE},
    {"iso-8859-7", "ISO-8859-7", "ISO-8859-7", FAM_SINGLE},
    {"iso-8859-8", "ISO-8859-8", "ISO-8859-8", FAM_SINGLE},
    {"iso-8859-8-i", "ISO-8859-8", "ISO-8859-8", FAM_SINGLE},
    {"iso-8859-9", "ISO-8859-9", "ISO-8859-9", FAM_SINGLE},
    {"iso-8859-10", "ISO-8859-10", "ISO-8859-10", FAM_SINGLE},
    {"iso-8859-11", "ISO-8859-11", "ISO-8859-11", FAM_SINGLE},
    {"iso-8859-13", "ISO-8859-13", "ISO-8859-13", FAM_SINGLE},
    {"iso-8859-14", "ISO-8859-14", "ISO-8859-14", FAM_SINGLE},
    {"iso-8859-15", "ISO-8859-15", "ISO-8859-15", FAM_SINGLE},
    {"windows-1250", "windows-1250", "windows-1250", FAM_SINGLE},
    {"windows-1251", "windows-1251", "windows-1251", FAM_SINGLE},
    {"windows-1253", "windows-1253", "windows-1253", FAM_SINGLE},
    {"windows-1254", "windows-1254", "windows-1254", FAM_SINGLE},
    {"windows-1257", "windows-1257", "windows-1257", FAM_SINGLE},
    {"koi8-r", "KOI8-R", "KOI8-R", FAM_SINGLE},
    {"koi8-u", "KOI8-U", "KOI8-U", FAM_SINGLE},
    /* Chinese and Korean labels carry the Microsoft supersets. */
    {"gb2312", "GB18030", "GB18030", FAM_MULTI},
    {"gbk", "GB18030", "GB18030", FAM_MULTI},
    {"gb18030", "GB18030", "GB18030", FAM_MULTI},
    {"cp936", "GB18030", "GB18030", FAM_MULTI},
    {"x-gbk", "GB18030", "GB18030", FAM_MULTI},
    {"csgb2312", "GB18030", "GB18030", FAM_MULTI},
    {"big5", "Big5", "windows-950", FAM_MULTI},
    {"x-big5", "Big5", "windows-950", FAM_MULTI},
    {"cp950", "Big5", "windows-950", FAM_MULTI},
    {"big5-hkscs", "Big5-HKSCS", "Big5-HKSCS", FAM_MULTI},
    {"euc-kr", "EUC-KR", "windows-949", FAM_MULTI},
    {"ks_c_5601-1987", "EUC-KR", "windows-949", FAM_MULTI},
    {"ks_c_5601", "EUC-KR", "windows-949", FAM_MULTI},
    {"cp949", "EUC-KR", "windows-949", FAM_MULTI},
    {"windows-949", "EUC-KR", "windows-949", FAM_MULTI},
    {"utf-7", "UTF-7", "UTF-7", FAM_OTHER},
};

/* Labels that say "we do not know": treated like a missing label. */
static const char *const unknown_labels[] = {
    "unknown-8bit", "x-unknown", "unknown", "x-user-defined", "default", "8bit", "binary",
};

/* ---------------------------------------------------------------- labels */

static int lower_ascii(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* Copies label, trimmed of blanks and quotes, lower-cased, into norm.
 * Returns its length, or 0 when empty or too long. */
static size_t normalize_label(const char *label, char *norm, size_t normsz)
{
    if (label == NULL)
        return 0;
    size_t n = strlen(label);
    size_t a = 0;
    while (a < n && (label[a] == ' ' || label[a] == '\t' || label[a] == '"' || label[a] == '\''))
        a++;
    while (n > a && (label[n - 1] == ' ' || label[n - 1] == '\t' || label[n - 1] == '"' ||
                     label[n - 1] == '\''))
        n--;
    if (n == a || n - a >= normsz)
        return 0;
    for (size_t i = a; i < n; i++)
        norm[i - a] = (char)lower_ascii((unsigned char)label[i]);
    norm[n - a] = 0;
    return n - a;
}

static const struct label *find_label(const char *label, int *unknown)
{
    char norm[64];
    *unknown = 1;
    if (normalize_label(label, norm, sizeof norm) == 0)
        return NULL;
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++)
        if (strcmp(norm, labels[i].label) == 0) {
            *unknown = 0;
            return &labels[i];
        }
    for (size_t i = 0; i < sizeof unknown_labels / sizeof unknown_labels[0]; i++)
        if (strcmp(norm, unknown_labels[i]) == 0)
            return NULL;
    *unknown = 0;
    return NULL;
}

/* An ICU name for a label our table lacks, or NULL if ICU does not know it. */
static const char *icu_known(const char *label)
{
    char norm[64];
    if (normalize_label(label, norm, sizeof norm) == 0)
        return NULL;
    UErrorCode err = U_ZERO_ERROR;
    const char *name = ucnv_getStandardName(norm, "IANA", &err);
    if (U_FAILURE(err) || name == NULL) {
        err = U_ZERO_ERROR;
        name = ucnv_getStandardName(norm, "MIME", &err);
    }
    if (U_FAILURE(err) || name == NULL) {
        err = U_ZERO_ERROR;
        name = ucnv_getCanonicalName(norm, "", &err);
    }
    if (U_FAILURE(err) || name == NULL)
        return NULL;
    /* Opening proves ICU has the data, not just the alias. */
    err = U_ZERO_ERROR;
    UConverter *c = ucnv_open(name, &err);
    if (U_FAILURE(err) || c == NULL)
        return NULL;
    ucnv_close(c);
    return name;
}

const char *charset_canonical(const char *label)
{
    int unknown;
    const struct label *l = find_label(label, &unknown);
    if (l)
        return l->canon;
    if (unknown)
        return NULL;
    return icu_known(label);
}

/* ---------------------------------------------------------------- utf-8 */

int charset_is_utf8(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII runs, eight bytes at a time */
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & UINT64_C(0x8080808080808080))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* no overlongs */
            else if (c == 0xED)
                hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F; /* nothing past U+10FFFF */
        } else {
            return 0;
        }
        if (n - i - 1 < need)
            return 0;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
        i += need + 1;
    }
    return 1;
}

/* ---------------------------------------------------------------- conversion */

/* Where converted text goes: a buf, or nowhere (counting only). */
struct sink {
    buf *out;        /* NULL: count only */
    UChar pending;   /* high surrogate waiting for its pair */
    size_t replaced; /* U+FFFD written by the lossy callback or for lone surrogates */
    size_t wide;     /* code points >= U+0080 written, U+FFFD included */
};

static int put_cp(struct sink *s, uint32_t cp)
{
    uint8_t b[4];
    size_t k;
    s->wide += cp >= 0x80;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xC0 | (cp >> 6));
        b[1] = (uint8_t)(0x80 | (cp & 0x3F));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (cp >> 12));
        b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        b[0] = (uint8_t)(0xF0 | (cp >> 18));
        b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (uint8_t)(0x80 | (cp & 0x3F));
        k = 4;
    }
    return s->out ? buf_append(s->out, b, k) : 0;
}

static int put_utf16(struct sink *s, const UChar *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        UChar c = u[i];
        if (s->pending) {
            if (c >= 0xDC00 && c <= 0xDFFF) {
                uint32_t cp = 0x10000 + (((uint32_t)s->pending - 0xD800) << 10) + (c - 0xDC00u);
                s->pending = 0;
                if (put_cp(s, cp) < 0)
                    return s->out->err;
                continue;
            }
            s->pending = 0;
            s->replaced++;
            if (put_cp(s, 0xFFFD) < 0)
                return s->out->err;
        }
        if (c >= 0xD800 && c <= 0xDBFF) {
            s->pending = c;
            continue;
        }
        if (c >= 0xDC00 && c <= 0xDFFF) {
            s->replaced++;
            c = 0xFFFD;
        }
        if (put_cp(s, c) < 0)
            return s->out->err;
    }
    return 0;
}

static int sink_finish(struct sink *s)
{
    if (s->pending) {
        s->pending = 0;
        s->replaced++;
        if (put_cp(s, 0xFFFD) < 0)
            return s->out->err;
    }
    return 0;
}

/* The lossy callback: one U+FFFD per bad sequence, counted. */
static void U_CALLCONV count_fffd(const void *context, UConverterToUnicodeArgs *args,
                                  const char *codeUnits, int32_t length,
                                  UConverterCallbackReason reason, UErrorCode *err)
{
    (void)codeUnits;
    (void)length;
    if (reason > UCNV_IRREGULAR)
        return; /* reset, close, clone: nothing to substitute */
    size_t *count = (size_t *)(uintptr_t)context;
    static const UChar fffd = 0xFFFD;
    *err = U_ZERO_ERROR;
    (*count)++;
    ucnv_cbToUWriteUChars(args, &fffd, 1, 0, err);
}

/*
 * Converts with ICU converter icu. strict: any bad sequence fails the attempt.
 * Returns 0 on success, 1 when a strict attempt failed, -EINVAL when ICU lacks
 * the converter, or the buf's error. The sink's output is left as it was on
 * failure only by the caller (which truncates).
 */
static int icu_convert(const char *icu, const uint8_t *p, size_t n, int strict, struct sink *s)
{
    UErrorCode err = U_ZERO_ERROR;
    UConverter *cnv = ucnv_open(icu, &err);
    if (U_FAILURE(err) || cnv == NULL)
        return -EINVAL;
    size_t lossy = 0;
    err = U_ZERO_ERROR;
    if (strict)
        ucnv_setToUCallBack(cnv, UCNV_TO_U_CALLBACK_STOP, NULL, NULL, NULL, &err);
    else
        ucnv_setToUCallBack(cnv, count_fffd, &lossy, NULL, NULL, &err);
    int rc = 0;
    if (U_FAILURE(err)) {
        rc = -EINVAL;
        goto done;
    }
    UChar u[2048];
    const char *src = (const char *)p, *srcend = (const char *)p + n;
    for (;;) {
        UChar *t = u;
        err = U_ZERO_ERROR;
        ucnv_toUnicode(cnv, &t, u + sizeof u / sizeof u[0], &src, srcend, NULL, 1, &err);
        if (put_utf16(s, u, (size_t)(t - u)) < 0) {
            rc = s->out->err;
            goto done;
        }
        if (err == U_BUFFER_OVERFLOW_ERROR)
            continue;
        if (U_FAILURE(err)) {
            rc = strict ? 1 : -EINVAL;
            goto done;
        }
        break;
    }
    if (sink_finish(s) < 0)
        rc = s->out->err;
    s->replaced += lossy;
done:
    ucnv_close(cnv);
    return rc;
}

/* eucJP-ms: the 3-byte IBM-extension cells ICU's EUC-JP lacks. Returns the
 * table index or -1. p points at 0x8F with at least 3 bytes. */
static int eucjpms_cell(const uint8_t *p)
{
    if (p[1] == 0xF3 && p[2] >= 0xF3 && p[2] <= 0xFE)
        return p[2] - 0xF3;
    if (p[1] == 0xF4 && p[2] >= 0xA1 && p[2] <= 0xFE)
        return 12 + (p[2] - 0xA1);
    return -1;
}

static int eucjp_convert(const uint8_t *p, size_t n, int strict, struct sink *s)
{
    size_t seg = 0, i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t w = c < 0x80 ? 1 : c == 0x8F ? 3 : 2;
        if (w > n - i)
            break;
        int cell = c == 0x8F ? eucjpms_cell(p + i) : -1;
        if (cell >= 0) {
            if (i > seg) {
                int rc = icu_convert("EUC-JP", p + seg, i - seg, strict, s);
                if (rc != 0)
                    return rc;
            }
            if (put_cp(s, eucjpms_ibm_ext[cell]) < 0)
                return s->out->err;
            seg = i + w;
        }
        i += w;
    }
    if (seg < n || n == 0)
        return icu_convert("EUC-JP", p + seg, n - seg, strict, s);
    return 0;
}

struct cand {
    const char *canon;
    const char *icu;
    enum family fam;
};

static int is_ascii7(const uint8_t *p, size_t n, int *esc)
{
    *esc = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x80)
            return 0;
        if (p[i] == 0x1B || p[i] == 0x0E)
            *esc = 1;
    }
    return 1;
}

/* Runs one candidate. Returns 0 (done), 1 (strict failure), or < 0. */
static int run_cand(const struct cand *c, const uint8_t *p, size_t n, int strict, struct sink *s)
{
    int esc;
    switch (c->fam) {
    case FAM_ASCII:
        if (!is_ascii7(p, n, &esc) || esc) {
            if (strict)
                return 1;
            return icu_convert("US-ASCII", p, n, 0, s);
        }
        return s->out && buf_append(s->out, p, n) < 0 ? s->out->err : 0;
    case FAM_UTF8:
        if (charset_is_utf8(p, n))
            return s->out && buf_append(s->out, p, n) < 0 ? s->out->err : 0;
        if (strict)
            return 1;
        return icu_convert("UTF-8", p, n, 0, s);
    case FAM_JIS: {
        if (strict && !is_ascii7(p, n, &esc))
            return 1; /* 8-bit bytes are not ISO-2022-JP, whatever JIS8 says */
        if (!strict)
            return icu_convert(JIS7, p, n, 0, s);
        size_t mark = s->out ? s->out->len : 0;
        int rc = icu_convert(JIS7, p, n, 1, s);
        if (rc == 1) {
            if (s->out)
                buf_truncate(s->out, mark);
            s->pending = 0;
            rc = icu_convert("ISO-2022-JP-2", p, n, 1, s);
        }
        return rc;
    }
    case FAM_EUCJP:
        return eucjp_convert(p, n, strict, s);
    default:
        if (is_ascii7(p, n, &esc) && !esc && c->fam != FAM_OTHER)
            return s->out && buf_append(s->out, p, n) < 0 ? s->out->err : 0;
        return icu_convert(c->icu, p, n, strict, s);
    }
}

static const struct cand cand_sjis = {"windows-31j", "windows-31j", FAM_SJIS};
static const struct cand cand_eucjp = {"EUC-JP", "EUC-JP", FAM_EUCJP};
static const struct cand cand_utf8 = {"UTF-8", "UTF-8", FAM_UTF8};
static const struct cand cand_jis = {"ISO-2022-JP", JIS7, FAM_JIS};
static const struct cand cand_ascii = {"US-ASCII", "US-ASCII", FAM_ASCII};
static const struct cand cand_1252 = {"windows-1252", "windows-1252", FAM_SINGLE};

/* ucsdet's names to our candidates; NULL for the ones mail never needs. */
static int cand_from_ucsdet(const char *name, struct cand *c)
{
    static const struct {
        const char *det;
        struct cand c;
    } map[] = {
        {"Shift_JIS", {"windows-31j", "windows-31j", FAM_SJIS}},
        {"EUC-JP", {"EUC-JP", "EUC-JP", FAM_EUCJP}},
        {"ISO-2022-JP", {"ISO-2022-JP", JIS7, FAM_JIS}},
        {"UTF-8", {"UTF-8", "UTF-8", FAM_UTF8}},
        {"GB18030", {"GB18030", "GB18030", FAM_MULTI}},
        {"Big5", {"Big5", "windows-950", FAM_MULTI}},
        {"EUC-KR", {"EUC-KR", "windows-949", FAM_MULTI}},
        {"ISO-8859-1", {"windows-1252", "windows-1252", FAM_SINGLE}},
        {"windows-1252", {"windows-1252", "windows-1252", FAM_SINGLE}},
        {"ISO-8859-2", {"ISO-8859-2", "ISO-8859-2", FAM_SINGLE}},
        {"windows-1250", {"windows-1250", "windows-1250", FAM_SINGLE}},
        {"ISO-8859-5", {"ISO-8859-5", "ISO-8859-5", FAM_SINGLE}},
        {"windows-1251", {"windows-1251", "windows-1251", FAM_SINGLE}},
        {"KOI8-R", {"KOI8-R", "KOI8-R", FAM_SINGLE}},
        {"ISO-8859-6", {"ISO-8859-6", "ISO-8859-6", FAM_SINGLE}},
        {"windows-1256", {"windows-1256", "windows-1256", FAM_SINGLE}},
        {"ISO-8859-7", {"ISO-8859-7", "ISO-8859-7", FAM_SINGLE}},
        {"windows-1253", {"windows-1253", "windows-1253", FAM_SINGLE}},
        {"ISO-8859-8", {"ISO-8859-8", "ISO-8859-8", FAM_SINGLE}},
        {"ISO-8859-8-I", {"ISO-8859-8", "ISO-8859-8", FAM_SINGLE}},
        {"windows-1255", {"windows-1255", "windows-1255", FAM_SINGLE}},
        {"ISO-8859-9", {"ISO-8859-9", "ISO-8859-9", FAM_SINGLE}},
        {"windows-1254", {"windows-1254", "windows-1254", FAM_SINGLE}},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(name, map[i].det) == 0) {
            *c = map[i].c;
            return 1;
        }
    return 0;
}

#define MAX_CANDS     24
#define SHORT_INPUT   40
#define DETECT_WINDOW 65536

struct cands {
    struct cand c[MAX_CANDS];
    int conf[MAX_CANDS];
    size_t n;
};

static void add_cand(struct cands *cs, const struct cand *c, int conf)
{
    for (size_t i = 0; i < cs->n; i++)
        if (strcmp(cs->c[i].canon, c->canon) == 0) {
            if (conf > cs->conf[i])
                cs->conf[i] = conf;
            return;
        }
    if (cs->n < MAX_CANDS) {
        cs->conf[cs->n] = conf;
        cs->c[cs->n++] = *c;
    }
}

static void ucsdet_cands(const uint8_t *p, size_t n, struct cands *cs)
{
    UErrorCode err = U_ZERO_ERROR;
    UCharsetDetector *det = ucsdet_open(&err);
    if (U_FAILURE(err) || det == NULL)
        return;
    int32_t len = (int32_t)(n < DETECT_WINDOW ? n : DETECT_WINDOW);
    ucsdet_setText(det, (const char *)p, len, &err);
    int32_t count = 0;
    const UCharsetMatch **m = ucsdet_detectAll(det, &count, &err);
    if (U_SUCCESS(err) && m) {
        for (int32_t i = 0; i < count; i++) {
            UErrorCode e2 = U_ZERO_ERROR;
            const char *name = ucsdet_getName(m[i], &e2);
            int32_t conf = ucsdet_getConfidence(m[i], &e2);
            struct cand c;
            if (U_SUCCESS(e2) && name && conf >= 10 && cand_from_ucsdet(name, &c))
                add_cand(cs, &c, conf);
        }
    }
    ucsdet_close(det);
}

static int has_jis_escape(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 2 < n; i++)
        if (p[i] == 0x1B &&
            ((p[i + 1] == '$' && (p[i + 2] == 'B' || p[i + 2] == '@' || p[i + 2] == '(')) ||
             (p[i + 1] == '(' && (p[i + 2] == 'J' || p[i + 2] == 'I'))))
            return 1;
    return 0;
}

/* Half-width katakana in UTF-8 (U+FF61..U+FF9F: EF BD A1..EF BE 9F). */
static size_t count_halfwidth_kana(const uint8_t *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i + 2 < n; i++)
        if (p[i] == 0xEF &&
            ((p[i + 1] == 0xBD && p[i + 2] >= 0xA1) || (p[i + 1] == 0xBE && p[i + 2] <= 0x9F)))
            k++;
    return k;
}

/* Strict attempt into out; undone on failure. 0 success, 1 failure, < 0 error. */
static int attempt(const struct cand *c, const uint8_t *p, size_t n, buf *out)
{
    size_t mark = out->len;
    struct sink s = {out, 0, 0, 0};
    int rc = run_cand(c, p, n, 1, &s);
    if (rc == -EINVAL)
        rc = 1;
    if (rc == 1)
        buf_truncate(out, mark);
    return rc;
}

static void set_used(charset_info *info, const char *name)
{
    if (info == NULL)
        return;
    size_t k = strlen(name);
    if (k >= sizeof info->used)
        k = sizeof info->used - 1;
    memcpy(info->used, name, k);
    info->used[k] = 0;
}

/* Gathers the detection candidates in order of trust. */
static int mostly_valid(const struct cand *c, const uint8_t *p, size_t n);

static void detect_cands(const uint8_t *p, size_t n, struct cands *cs, int japanese_first)
{
    int esc;
    if (is_ascii7(p, n, &esc)) {
        if (esc && has_jis_escape(p, n))
            add_cand(cs, &cand_jis, 100);
        add_cand(cs, &cand_ascii, 100);
        return;
    }
    add_cand(cs, &cand_utf8, mostly_valid(&cand_utf8, p, n) ? 80 : 0);
    if (japanese_first) {
        add_cand(cs, &cand_sjis, 20);
        add_cand(cs, &cand_eucjp, 20);
    }
    ucsdet_cands(p, n, cs);
    add_cand(cs, &cand_sjis, 0);
    add_cand(cs, &cand_eucjp, 0);
    if (has_jis_escape(p, n))
        add_cand(cs, &cand_jis, 0);
    add_cand(cs, &cand_1252, 0); /* short Western text ucsdet says nothing about */
}

/*
 * Tries the candidates strictly. Single-byte candidates never fail, so they
 * are not tried once a confident multi-byte candidate has failed: that text is
 * damaged multi-byte text, better decoded lossily than as mojibake.
 * Returns 0 with *chosen set, 1 when all failed, < 0 on error.
 */
static int try_cands(const struct cands *cs, const uint8_t *p, size_t n, buf *out,
                     const struct cand **chosen, int *distrust_single)
{
    int multibyte_failed = *distrust_single;
    size_t euc_i = MAX_CANDS;
    for (size_t i = 0; i < cs->n; i++)
        if (cs->c[i].fam == FAM_EUCJP)
            euc_i = i;
    for (size_t i = 0; i < cs->n; i++) {
        const struct cand *c = &cs->c[i];
        if (c->fam == FAM_SINGLE && multibyte_failed)
            continue;
        size_t mark = out->len;
        int rc = attempt(c, p, n, out);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            if (c->fam != FAM_SINGLE && cs->conf[i] >= 30)
                multibyte_failed = 1;
            if (c->fam == FAM_SJIS || c->fam == FAM_EUCJP) {
                /* Japanese text with a bad byte still reads mostly as
                 * Japanese: then a single-byte reading would be mojibake. */
                struct sink cnt = {NULL, 0, 0, 0};
                if (run_cand(c, p, n, 0, &cnt) == 0 && cnt.wide > cnt.replaced &&
                    cnt.wide - cnt.replaced >= cnt.replaced)
                    multibyte_failed = 1;
            }
            continue;
        }
        /* Short EUC-JP text is often valid Shift_JIS too, as half-width kana;
         * kana-free EUC-JP is the likelier reading. */
        if (c->fam == FAM_SJIS && euc_i < cs->n && euc_i > i && n < 1024 &&
            count_halfwidth_kana(out->p + mark, out->len - mark) > 0) {
            buf tmp;
            buf_init(&tmp, out->max);
            int r2 = attempt(&cs->c[euc_i], p, n, &tmp);
            if (r2 == 0 && count_halfwidth_kana(tmp.p, tmp.len) == 0) {
                buf_truncate(out, mark);
                buf_append(out, tmp.p, tmp.len);
                buf_free(&tmp);
                *chosen = &cs->c[euc_i];
                return out->err ? out->err : 0;
            }
            buf_free(&tmp);
        }
        *chosen = c;
        return 0;
    }
    *distrust_single = multibyte_failed;
    return 1;
}

/* Every strict attempt failed: the candidate that loses least, lossily. */
static int lossy(const struct cands *cs, const uint8_t *p, size_t n, buf *out, size_t *replaced,
                 const struct cand **chosen, int distrust_single)
{
    size_t best = 0, best_loss = SIZE_MAX;
    for (size_t i = 0; i < cs->n; i++)
        if (cs->c[i].fam != FAM_SINGLE && cs->c[i].fam != FAM_ASCII && cs->conf[i] >= 30)
            distrust_single = 1;
    for (size_t i = 0; i < cs->n; i++) {
        if (cs->c[i].fam == FAM_ASCII || (distrust_single && cs->c[i].fam == FAM_SINGLE))
            continue;
        struct sink s = {NULL, 0, 0, 0};
        if (run_cand(&cs->c[i], p, n, 0, &s) != 0)
            continue;
        if (s.replaced < best_loss) {
            best_loss = s.replaced;
            best = i;
        }
    }
    const struct cand *c = best_loss == SIZE_MAX ? &cand_utf8 : &cs->c[best];
    struct sink s = {out, 0, 0, 0};
    size_t mark = out->len;
    int rc = run_cand(c, p, n, 0, &s);
    if (rc != 0) {
        if (rc > 0 || rc == -EINVAL) {
            /* Cannot happen with UTF-8; stay safe: replace every 8-bit byte. */
            buf_truncate(out, mark);
            s.replaced = 0;
            for (size_t i = 0; i < n; i++) {
                if (p[i] < 0x80) {
                    buf_putc(out, p[i]);
                } else {
                    buf_append(out, "\xEF\xBF\xBD", 3);
                    s.replaced++;
                }
            }
            rc = out->err;
        }
    }
    *replaced = s.replaced;
    *chosen = c;
    return rc;
}

/*
 * 1 when the text is damaged text of a multi-byte charset c (a truncated or
 * corrupted character or two) rather than text of another charset: then a
 * lossy decoding in c beats any single-byte reading, which never fails.
 */
static int mostly_valid(const struct cand *c, const uint8_t *p, size_t n)
{
    if (c->fam == FAM_SINGLE || c->fam == FAM_ASCII || c->fam == FAM_OTHER)
        return 0;
    size_t high = 0;
    for (size_t i = 0; i < n; i++)
        high += p[i] >= 0x80;
    struct sink s = {NULL, 0, 0, 0};
    if (run_cand(c, p, n, 0, &s) != 0)
        return 0;
    return high >= 8 && s.replaced * 20 <= high;
}

/*
 * 1 when p is UTF-8 with a few bad bytes: valid multi-byte sequences do not
 * happen by chance in legacy text, so several of them and few errors mean
 * damaged UTF-8 (stricter when the label did not say UTF-8).
 */
static int utf8_damaged(const uint8_t *p, size_t n, int labelled)
{
    size_t valid = 0, bad = 0, i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = p[i] >= 0xF0 ? 4 : p[i] >= 0xE0 ? 3 : 2;
        if (k <= n - i && charset_is_utf8(p + i, k)) {
            valid++;
            i += k;
        } else {
            bad++;
            i++;
        }
    }
    if (labelled)
        return valid >= 1 && bad <= valid;
    return valid >= 2 && bad * 4 <= valid;
}

int charset_to_utf8(const uint8_t *p, size_t n, const char *label, buf *out, charset_info *info)
{
    charset_info dummy;
    if (info == NULL)
        info = &dummy;
    memset(info, 0, sizeof *info);
    if (out->err)
        return out->err;

    int unknown;
    const struct label *l = find_label(label, &unknown);
    struct cand declared;
    int have_declared = 0;
    if (l) {
        declared = (struct cand){l->canon, l->icu, l->fam};
        have_declared = 1;
    } else if (!unknown) {
        const char *icu = icu_known(label);
        if (icu) {
            declared = (struct cand){icu, icu, FAM_OTHER};
            have_declared = 1;
        }
    }

    if (n == 0) {
        set_used(info, have_declared ? declared.canon : "US-ASCII");
        info->detected = !have_declared;
        return 0;
    }

    int esc;
    int ascii = is_ascii7(p, n, &esc);
    int damaged = 0; /* the declared multi-byte charset fits all but a few bytes */
    if (have_declared) {
        /* A single-byte label never fails; doubt it when the bytes say UTF-8
         * or, confidently, Japanese. */
        int doubt = declared.fam == FAM_SINGLE && !ascii;
        if (doubt && charset_is_utf8(p, n)) {
            set_used(info, "UTF-8");
            info->detected = 1;
            return buf_append(out, p, n);
        }
        if (doubt) {
            struct cands cs = {.n = 0};
            ucsdet_cands(p, n, &cs);
            if (cs.n > 0 && (cs.c[0].fam == FAM_SJIS || cs.c[0].fam == FAM_EUCJP) &&
                cs.conf[0] >= 50) {
                int rc = attempt(&cs.c[0], p, n, out);
                if (rc <= 0) {
                    if (rc == 0) {
                        set_used(info, cs.c[0].canon);
                        info->detected = 1;
                    }
                    return rc;
                }
            }
        }
        if (ascii && esc && declared.fam != FAM_JIS && declared.fam != FAM_OTHER &&
            declared.fam != FAM_UTF8 && has_jis_escape(p, n)) {
            /* 7-bit text with JIS escapes is ISO-2022-JP whatever the label;
             * but valid UTF-8 labelled UTF-8 is taken at its word, so that
             * text we encoded ourselves always decodes back unchanged. */
            int rc = attempt(&cand_jis, p, n, out);
            if (rc <= 0) {
                if (rc == 0) {
                    set_used(info, cand_jis.canon);
                    info->detected = 1;
                }
                return rc;
            }
        }
        int rc = attempt(&declared, p, n, out);
        if (rc <= 0) {
            if (rc == 0)
                set_used(info, declared.canon);
            return rc;
        }
        damaged = mostly_valid(&declared, p, n);
    }

    info->detected = !(have_declared && declared.fam == FAM_UTF8);
    if (!ascii && utf8_damaged(p, n, have_declared && declared.fam == FAM_UTF8)) {
        /* Damaged UTF-8: valid multi-byte UTF-8 does not happen by chance. */
        struct sink s = {out, 0, 0, 0};
        int rc = run_cand(&cand_utf8, p, n, 0, &s);
        info->replaced = s.replaced;
        set_used(info, "UTF-8");
        return rc;
    }
    info->detected = 1;
    struct cands cs = {.n = 0};
    detect_cands(p, n, &cs, n < SHORT_INPUT);
    const struct cand *chosen = NULL;
    int rc = try_cands(&cs, p, n, out, &chosen, &damaged);
    if (rc == 0) {
        set_used(info, chosen->canon);
        return 0;
    }
    if (rc < 0)
        return rc;
    /* Lossy: the declared label competes too, first among equals. */
    struct cands all = {.n = 0};
    if (have_declared)
        add_cand(&all, &declared, 100);
    for (size_t i = 0; i < cs.n; i++)
        add_cand(&all, &cs.c[i], cs.conf[i]);
    rc = lossy(&all, p, n, out, &info->replaced, &chosen, damaged);
    set_used(info, chosen->canon);
    return rc;
}

const char *charset_detect(const uint8_t *p, size_t n)
{
    int esc;
    if (is_ascii7(p, n, &esc))
        return esc && has_jis_escape(p, n) ? "ISO-2022-JP" : "US-ASCII";
    buf tmp;
    buf_init(&tmp, BUF_UNLIMITED);
    struct cands cs = {.n = 0};
    detect_cands(p, n, &cs, n < SHORT_INPUT);
    const struct cand *chosen = NULL;
    int distrust = 0;
    int rc = try_cands(&cs, p, n, &tmp, &chosen, &distrust);
    buf_free(&tmp);
    if (rc == 0 && chosen)
        return chosen->canon;
    return cs.n > 1 ? cs.c[1].canon : "UTF-8";
}
