/*
 * b64 - MIME base64 codec, byte-identical to GMime's decoder and to GLib's
 * encoder cut at 76 columns. See b64.h.
 *
 * The decoder rests on one fact of GMime's state machine: a byte outside the
 * alphabet changes nothing, so at a quartet boundary any run of such bytes
 * can simply be stepped over, and a quartet of four alphabet characters (no
 * '=') always gives the same three bytes. The fast loops (portable: 16
 * characters per step; AVX2: 32, and whole lines once their width is known)
 * take clean quartets at a quartet boundary and step over line ends there;
 * everything else (a quartet broken by junk, '=', the tail) goes byte by byte
 * through a copy of the state machine until the next boundary.
 */
#include "b64.h"

#include "util/msg.h"

#include <errno.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Tables, computed by the compiler.
 */

#define T4(f, i)   f(i), f((i) + 1), f((i) + 2), f((i) + 3)
#define T16(f, i)  T4(f, i), T4(f, (i) + 4), T4(f, (i) + 8), T4(f, (i) + 12)
#define T64(f, i)  T16(f, i), T16(f, (i) + 16), T16(f, (i) + 32), T16(f, (i) + 48)
#define T256(f, i) T64(f, i), T64(f, (i) + 64), T64(f, (i) + 128), T64(f, (i) + 192)
#define T1K(f, i)  T256(f, i), T256(f, (i) + 256), T256(f, (i) + 512), T256(f, (i) + 768)

/* The sextet of an alphabet character; 0xFF for '=' and every other byte. */
#define SEXTET(c)                                                                                  \
    ((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'                                                        \
     : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26                                                   \
     : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52                                                   \
     : (c) == '+'               ? 62                                                               \
     : (c) == '/'               ? 63                                                               \
                                : 0xFF)

/* For the state machine: the sextet, RANK_EQ for '=', RANK_SKIP for the rest. */
#define RANK_SKIP 0xFF
#define RANK_EQ   0xFE
#define RANK(c)   (uint8_t)((c) == '=' ? RANK_EQ : SEXTET(c))
static const uint8_t rank_tab[256] = {T256(RANK, 0)};

/*
 * The fast loop's tables: d0[c0] | d1[c1] | d2[c2] | d3[c3] is the quartet's
 * three bytes laid out as they go to memory (so one 4-byte store writes them,
 * plus one byte that the next store overwrites), or has a bit of BAD_MASK set
 * when any of the four is not an alphabet character.
 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BAD_MASK 0x000000FFu
#define BAD      0x00000001u
#define D0(c)    (SEXTET(c) == 0xFF ? BAD : (uint32_t)SEXTET(c) << 26)
#define D1(c)    (SEXTET(c) == 0xFF ? BAD : (uint32_t)SEXTET(c) << 20)
#define D2(c)    (SEXTET(c) == 0xFF ? BAD : (uint32_t)SEXTET(c) << 14)
#define D3(c)    (SEXTET(c) == 0xFF ? BAD : (uint32_t)SEXTET(c) << 8)
#else
#define BAD_MASK 0xFF000000u
#define BAD      0x01000000u
#define D0(c)    (SEXTET(c) == 0xFF ? BAD : (uint32_t)SEXTET(c) << 2)
#define D1(c)                                                                                      \
    (SEXTET(c) == 0xFF ? BAD : (uint32_t)SEXTET(c) >> 4 | ((uint32_t)SEXTET(c) & 15) << 12)
#define D2(c)                                                                                      \
    (SEXTET(c) == 0xFF ? BAD : ((uint32_t)SEXTET(c) >> 2) << 8 | ((uint32_t)SEXTET(c) & 3) << 22)
#define D3(c) (SEXTET(c) == 0xFF ? BAD : (uint32_t)SEXTET(c) << 16)
#endif
static const uint32_t d0[256] = {T256(D0, 0)};
static const uint32_t d1[256] = {T256(D1, 0)};
static const uint32_t d2[256] = {T256(D2, 0)};
static const uint32_t d3[256] = {T256(D3, 0)};

/* The character of a sextet. */
#define ENC(x)                                                                                     \
    ((x) < 26    ? 'A' + (x)                                                                       \
     : (x) < 52  ? 'a' + (x)-26                                                                    \
     : (x) < 62  ? '0' + (x)-52                                                                    \
     : (x) == 62 ? '+'                                                                             \
                 : '/')

/* The encoder's table: the two characters of a 12-bit value, as they go to
 * memory, so a 3-byte group is two lookups and one 4-byte store. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define E2(i)          (uint16_t)(ENC((i) >> 6) << 8 | ENC((i)&63))
#define E4(hi12, lo12) ((uint32_t)e2[hi12] << 16 | e2[lo12])
#else
#define E2(i)          (uint16_t)(ENC((i) >> 6) | ENC((i)&63) << 8)
#define E4(hi12, lo12) ((uint32_t)e2[hi12] | (uint32_t)e2[lo12] << 16)
#endif
static const uint16_t e2[4096] = {T1K(E2, 0), T1K(E2, 1024), T1K(E2, 2048), T1K(E2, 3072)};

/* ---------------------------------------------------------------------------
 * Decoding.
 */

static inline uint32_t quartet(const uint8_t *p)
{
    return d0[p[0]] | d1[p[1]] | d2[p[2]] | d3[p[3]];
}

/* Writes a quartet's three bytes and one more byte (the next quartet's or
 * junk within b64_decoded_max()). */
static inline void put3(uint8_t *o, uint32_t w)
{
    memcpy(o, &w, 4);
}

/*
 * GMime's state machine from a quartet boundary (state 0) over p[0..end):
 * runs until a quartet completes (its bytes written at *op), or the input
 * ends, or '=' ends the data. Returns where it stopped; *done is set when
 * nothing more is to be decoded.
 *
 * A run of non-alphabet bytes right at the boundary is only stepped over, and
 * the caller's fast loop takes over again after it.
 */
static const uint8_t *step_slow(const uint8_t *p, const uint8_t *end, uint8_t **op, int *done)
{
    const uint8_t *start = p;
    while (p < end && rank_tab[*p] == RANK_SKIP)
        p++;
    if (p != start && p < end)
        return p;
    uint32_t saved = 0;
    unsigned q = 0;
    uint8_t *o = *op;
    while (p < end) {
        uint8_t r = rank_tab[*p++];
        if (r == RANK_SKIP)
            continue;
        if (r == RANK_EQ) {
            /* GMime counts the '=' as a sextet of 0: after two characters it
             * completes three sextets (one byte), after three a quartet (two
             * bytes); earlier it gives nothing. Either way the data ends. */
            if (q == 2) {
                *o++ = (uint8_t)(saved >> 4);
            } else if (q == 3) {
                *o++ = (uint8_t)(saved >> 10);
                *o++ = (uint8_t)(saved >> 2);
            }
            *op = o;
            *done = 1;
            return p;
        }
        saved = saved << 6 | r;
        if (++q == 4) {
            o[0] = (uint8_t)(saved >> 16);
            o[1] = (uint8_t)(saved >> 8);
            o[2] = (uint8_t)saved;
            *op = o + 3;
            return p;
        }
    }
    /* A partial quartet at the end gives nothing. */
    *done = 1;
    return p;
}

/* Whether the eol bytes at p are a line end that line mode can assume:
 * "\r\n" or "\n". */
static inline int line_end(const uint8_t *p, size_t eol)
{
    return (eol == 1 && p[0] == '\n') || (eol == 2 && p[0] == '\r' && p[1] == '\n');
}

/*
 * AVX2: 32 characters per step, with the classification and translation of
 * Wojciech Muła and Daniel Lemire ("Faster Base64 Encoding and Decoding Using
 * AVX2 Instructions", 2018), whose tables are derived again here:
 *
 * A byte is an alphabet character unless lut_lo[low nibble] & lut_hi[high
 * nibble] != 0. Bit 0x10 is set in every lut_lo entry and in lut_hi for high
 * nibbles 0, 1 and 8-F (no character there); 0x01 marks high nibble 2 (only
 * '+' 0x2B and '/' 0x2F are characters), 0x02 high nibble 3 (only '0'-'9'),
 * 0x04 high nibbles 4 and 6 (all but '@' and '`'), 0x08 high nibbles 5 and 7
 * (all up to 'Z' and 'z'). '=' (0x3D) is not a character here.
 *
 * The sextet is the byte plus an offset chosen by the high nibble (minus one
 * for '/', which shares it with '+'): '/' +16, '+' +19, digits +4, A-Z -65,
 * a-z -71. Then pairs of sextets are merged with maddubs (a << 6 | b), pairs
 * of those with madd (ab << 12 | cd), and the three bytes of every 32-bit lane
 * are gathered in order.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define B64_HAVE_AVX2 1
#include <immintrin.h>

/* The constants of one 32-character step. */
struct avx2_k {
    __m256i lut_lo, lut_hi, lut_roll, nib, slash, merge1, merge2, gather, lanes;
};

__attribute__((target("avx2"))) static void avx2_init(struct avx2_k *k)
{
    k->lut_lo = _mm256_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13,
                                 0x1A, 0x1B, 0x1B, 0x1B, 0x1A, 0x15, 0x11, 0x11, 0x11, 0x11, 0x11,
                                 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A);
    k->lut_hi = _mm256_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10,
                                 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x01, 0x02, 0x04, 0x08,
                                 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
    k->lut_roll = _mm256_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16,
                                   19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    k->nib = _mm256_set1_epi8(0x0F);
    k->slash = _mm256_set1_epi8(0x2F);
    k->merge1 = _mm256_set1_epi32(0x01400140);
    k->merge2 = _mm256_set1_epi32(0x00011000);
    k->gather = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1, 2, 1, 0, 6,
                                 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    k->lanes = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
}

/* Decodes p[0..32) to o[0..24) as if all were alphabet characters, and
 * returns the mask of those that are (bit i for p[i]). */
__attribute__((target("avx2"), always_inline)) static inline unsigned
avx2_block(const struct avx2_k *k, const uint8_t *p, uint8_t *o)
{
    __m256i in = _mm256_loadu_si256((const __m256i *)(const void *)p);
    __m256i hi_n = _mm256_and_si256(_mm256_srli_epi32(in, 4), k->nib);
    __m256i lo_n = _mm256_and_si256(in, k->nib);
    __m256i bad = _mm256_and_si256(_mm256_shuffle_epi8(k->lut_lo, lo_n),
                                   _mm256_shuffle_epi8(k->lut_hi, hi_n));
    unsigned ok = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(bad, _mm256_setzero_si256()));
    __m256i roll =
        _mm256_shuffle_epi8(k->lut_roll, _mm256_add_epi8(_mm256_cmpeq_epi8(in, k->slash), hi_n));
    __m256i v = _mm256_add_epi8(in, roll);
    v = _mm256_maddubs_epi16(v, k->merge1);
    v = _mm256_madd_epi16(v, k->merge2);
    v = _mm256_shuffle_epi8(v, k->gather);
    v = _mm256_permutevar8x32_epi32(v, k->lanes);
    _mm_storeu_si128((__m128i *)(void *)o, _mm256_castsi256_si128(v));
    _mm_storel_epi64((__m128i *)(void *)(o + 16), _mm256_extracti128_si256(v, 1));
    return ok;
}

/*
 * Line mode: once a line end was stepped over, guess that the next lines
 * have as many characters (w, a multiple of 4, at least 32) and the same end
 * (eol bytes). A line that matches (its end where guessed, all w characters
 * clean) is decoded as ceil(w / 32) blocks, the last one overlapping the one
 * before, and the next line's address depends on no decoded value, so the
 * CPU runs ahead instead of waiting for each line's checks (2.2 times the
 * general loop on 76-column lines). The first line that does not match goes
 * back to the general loop, with nothing of it consumed. (The portable loop
 * gains nothing from this: it is bound by its table loads.)
 */
__attribute__((target("avx2"))) static const uint8_t *avx2_lines(const struct avx2_k *k,
                                                                 const uint8_t *p,
                                                                 const uint8_t *end, uint8_t **op,
                                                                 size_t w, size_t eol)
{
    uint8_t *o = *op;
    while ((size_t)(end - p) >= w + eol && line_end(p + w, eol)) {
        unsigned ok = 0xFFFFFFFFu;
        size_t off = 0;
        for (; off + 32 < w; off += 32)
            ok &= avx2_block(k, p + off, o + off / 4 * 3);
        ok &= avx2_block(k, p + w - 32, o + (w - 32) / 4 * 3);
        if (ok != 0xFFFFFFFFu)
            break;
        o += w / 4 * 3;
        p += w + eol;
    }
    *op = o;
    return p;
}

/* The general loop: 32 characters per step from a quartet boundary, line
 * ends stepped over, line mode tried after each. Stops (setting *broken) at a
 * quartet that needs the state machine, or with fewer than 32 bytes left. */
__attribute__((target("avx2"))) static const uint8_t *avx2_run(const uint8_t *p, const uint8_t *end,
                                                               uint8_t **op, int *broken)
{
    struct avx2_k k;
    avx2_init(&k);
    uint8_t *o = *op;
    const uint8_t *line = p;
    *broken = 0;
    /* 32 characters in, 24 bytes out (always stored; see "The room" below). */
    while (end - p >= 32) {
        unsigned ok = avx2_block(&k, p, o);
        if (ok == 0xFFFFFFFFu) {
            o += 24;
            p += 32;
            continue;
        }
        /* Keep the clean quartets before the first non-character. */
        unsigned q = (unsigned)__builtin_ctz(~ok) / 4;
        o += 3 * q;
        p += 4 * q;
        /* A line end (or other junk) at the quartet boundary: step over it
         * and go on here. Anything else is for the state machine. */
        if (rank_tab[*p] != RANK_SKIP) {
            *broken = 1;
            break;
        }
        const uint8_t *brk = p;
        do
            p++;
        while (p < end && rank_tab[*p] == RANK_SKIP);
        size_t w = (size_t)(brk - line), eol = (size_t)(p - brk);
        if (w >= 32 && w % 4 == 0 && line_end(brk, eol))
            p = avx2_lines(&k, p, end, &o, w, eol);
        line = p;
    }
    *op = o;
    return p;
}

static int have_avx2(void)
{
    return __builtin_cpu_supports("avx2");
}
#else
static int have_avx2(void)
{
    return 0;
}
#endif

/*
 * The room: after Q quartets, o = out + 3Q and at least 4Q input bytes are
 * consumed. A 4-byte store happens with 4 input bytes left, so Q <= n/4 - 1
 * and it ends at out + 3Q + 4 <= out + 3(n/4) + 1; the 16-character step
 * ends at 3Q + 13 with Q <= n/4 - 4, the AVX2 step (24 bytes) at 3Q + 24 with
 * Q <= n/4 - 8. All within b64_decoded_max(n) = n/4 * 3 + 3.
 */
static size_t decode(const uint8_t *in, size_t n, uint8_t *out, int avx2)
{
    if (n == 0) /* in may then be NULL, where in + 0 is undefined */
        return 0;
    const uint8_t *p = in, *end = in + n;
    uint8_t *o = out;
    int done = 0;
    while (!done) {
#ifdef B64_HAVE_AVX2
        if (avx2) {
            int broken;
            p = avx2_run(p, end, &o, &broken);
            if (broken)
                goto slow;
        }
#else
        (void)avx2;
#endif
        while (end - p >= 16) {
            uint32_t a = quartet(p), b = quartet(p + 4), c = quartet(p + 8), d = quartet(p + 12);
            if (((a | b | c | d) & BAD_MASK) == 0) {
                put3(o, a);
                put3(o + 3, b);
                put3(o + 6, c);
                put3(o + 9, d);
                o += 12;
                p += 16;
                continue;
            }
            /* Keep the clean quartets before the first broken one. */
            if ((a & BAD_MASK) == 0) {
                put3(o, a);
                o += 3;
                p += 4;
                if ((b & BAD_MASK) == 0) {
                    put3(o, b);
                    o += 3;
                    p += 4;
                    if ((c & BAD_MASK) == 0) {
                        put3(o, c);
                        o += 3;
                        p += 4;
                    }
                }
            }
            /* A line end at the quartet boundary: step over it, go on. */
            if (rank_tab[*p] != RANK_SKIP)
                goto slow;
            do
                p++;
            while (p < end && rank_tab[*p] == RANK_SKIP);
        }
        while (end - p >= 4) {
            uint32_t a = quartet(p);
            if (a & BAD_MASK)
                break;
            put3(o, a);
            o += 3;
            p += 4;
        }
    slow:
        p = step_slow(p, end, &o, &done);
    }
    return (size_t)(o - out);
}

enum b64_impl b64_impl_resolve(enum b64_impl impl)
{
    return impl != B64_IMPL_PORTABLE && have_avx2() ? B64_IMPL_AVX2 : B64_IMPL_PORTABLE;
}

size_t b64_decode_mime_impl(enum b64_impl impl, const uint8_t *in, size_t n, uint8_t *out)
{
    return decode(in, n, out, b64_impl_resolve(impl) == B64_IMPL_AVX2);
}

size_t b64_decode_mime(const uint8_t *in, size_t n, uint8_t *out)
{
    return decode(in, n, out, have_avx2());
}

/* ---------------------------------------------------------------------------
 * Encoding.
 */

#define LINE_IN  57 /* input bytes per full line */
#define LINE_OUT 76 /* characters per line, CRLF not counted */

size_t b64_encoded_lines_len(size_t n)
{
    if (n > SIZE_MAX / 2 - LINE_IN)
        return SIZE_MAX;
    /* (n + 2) / 3 * 4 <= 4n/3 + 4 and the CRLFs are fewer than n/28 + 2. */
    return (n + 2) / 3 * 4 + (n + LINE_IN - 1) / LINE_IN * 2;
}

static inline void enc3(uint8_t *o, const uint8_t *s)
{
    uint32_t v = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
    uint32_t w = E4(v >> 12, v & 0xFFF);
    memcpy(o, &w, 4);
}

/* Two 3-byte groups from one big-endian 8-byte load of s[0..8). */
static inline void enc6(uint8_t *o, const uint8_t *s)
{
    uint64_t x = (uint64_t)s[0] << 56 | (uint64_t)s[1] << 48 | (uint64_t)s[2] << 40 |
                 (uint64_t)s[3] << 32 | (uint64_t)s[4] << 24 | (uint64_t)s[5] << 16 |
                 (uint64_t)s[6] << 8 | s[7];
    uint32_t a = E4((uint32_t)(x >> 52), (uint32_t)(x >> 40) & 0xFFF);
    uint32_t b = E4((uint32_t)(x >> 28) & 0xFFF, (uint32_t)(x >> 16) & 0xFFF);
    memcpy(o, &a, 4);
    memcpy(o + 4, &b, 4);
}

int b64_encode_lines(const uint8_t *in, size_t n, buf *out)
{
    if (n == 0)
        return out->err;
    size_t need = b64_encoded_lines_len(n);
    if (need == SIZE_MAX) {
        if (!out->err)
            out->err = -ENOSPC;
        return out->err;
    }
    int rc = buf_reserve(out, need);
    if (rc)
        return rc;
    uint8_t *o = out->p + out->len;
    const uint8_t *s = in, *end = in + n;
    while (end - s >= LINE_IN) {
        /* Two groups per 8-byte load (the last 2 bytes read are the next
         * group's), then the 19th group. */
        for (int k = 0; k < LINE_IN / 6; k++)
            enc6(o + 8 * k, s + 6 * k);
        enc3(o + LINE_OUT - 4, s + LINE_IN - 3);
        o[LINE_OUT] = '\r';
        o[LINE_OUT + 1] = '\n';
        o += LINE_OUT + 2;
        s += LINE_IN;
    }
    if (s < end) {
        while (end - s >= 3) {
            enc3(o, s);
            o += 4;
            s += 3;
        }
        if (s < end) {
            uint32_t v = (uint32_t)s[0] << 16 | (end - s == 2 ? (uint32_t)s[1] << 8 : 0);
            o[0] = (uint8_t)ENC(v >> 18);
            o[1] = (uint8_t)ENC((v >> 12) & 63);
            o[2] = end - s == 2 ? (uint8_t)ENC((v >> 6) & 63) : '=';
            o[3] = '=';
            o += 4;
        }
        *o++ = '\r';
        *o++ = '\n';
    }
    size_t wrote = (size_t)(o - (out->p + out->len));
    if (wrote != need)
        msg_panic("b64_encode_lines: wrote %zu bytes, computed %zu", wrote, need);
    out->len += wrote;
    out->p[out->len] = 0;
    return 0;
}
