/*
 * b64_test - the MIME base64 codec: fixed vectors written out by hand (RFC
 * 4648's, and GMime's rules for junk, '=' and partial quartets), then the
 * decoder against GMime's own g_mime_encoding_base64_decode_step and the
 * encoder against GLib's g_base64_encode + the 76-column cut, on generated
 * inputs, with every implementation (portable, and AVX2 where the CPU has it).
 * Output buffers are allocated at exactly b64_decoded_max(n), so the ASan
 * build catches a write past the bound.
 */
#include "b64.h"

#include "testutil.h"

#include <gmime/gmime.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static enum b64_impl impls[3];
static int n_impls;

static uint64_t rng = 0x2545F4914F6CDD1Du;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Decodes with the given implementation into a buffer of exactly
 * b64_decoded_max(n) bytes; the caller frees *out. */
static size_t dec(enum b64_impl impl, const void *in, size_t n, uint8_t **out)
{
    *out = malloc(b64_decoded_max(n));
    if (*out == NULL)
        abort();
    return impl == B64_IMPL_AUTO ? b64_decode_mime(in, n, *out)
                                 : b64_decode_mime_impl(impl, in, n, *out);
}

static size_t gmime_dec(const void *in, size_t n, uint8_t **out)
{
    int state = 0;
    guint32 save = 0;
    *out = malloc(n + 3); /* g_mime_encoding_outlen() for decoding */
    if (*out == NULL)
        abort();
    return g_mime_encoding_base64_decode_step(in, n, *out, &state, &save);
}

static int mismatches;

/* Every implementation against GMime on one input; reports the first few. */
static void diff_one(const uint8_t *in, size_t n)
{
    uint8_t *want;
    size_t wn = gmime_dec(in, n, &want);
    CHECK(wn <= b64_decoded_max(n));
    for (int i = 0; i < n_impls; i++) {
        uint8_t *got;
        size_t gn = dec(impls[i], in, n, &got);
        t_checks++;
        if (gn != wn || memcmp(got, want, wn) != 0) {
            t_failures++;
            if (mismatches++ < 5) {
                fprintf(stderr,
                        "%s:%d: impl %d decodes %zu bytes, GMime %zu, input (%zu): ", __FILE__,
                        __LINE__, impls[i], gn, wn, n);
                for (size_t k = 0; k < n && k < 200; k++)
                    fprintf(stderr, "%02x", in[k]);
                fputc('\n', stderr);
            }
        }
        free(got);
    }
    free(want);
}

/* Fixed vectors: the expected bytes are written out, not computed. */
static void test_vectors(void)
{
    static const struct {
        const char *in;
        size_t n; /* 0: strlen(in) */
        const char *out;
        size_t out_n;
    } v[] = {
        /* RFC 4648, section 10 */
        {"", 0, "", 0},
        {"Zg==", 0, "f", 1},
        {"Zm8=", 0, "fo", 2},
        {"Zm9v", 0, "foo", 3},
        {"Zm9vYg==", 0, "foob", 4},
        {"Zm9vYmE=", 0, "fooba", 5},
        {"Zm9vYmFy", 0, "foobar", 6},
        /* line ends, spaces, junk and 8-bit bytes anywhere are skipped */
        {"Zm9v\r\nYmFy\r\n", 0, "foobar", 6},
        {"Zm\r\n9vY\nmFy", 0, "foobar", 6},
        {" Z m 9 v Y m F y ", 0, "foobar", 6},
        {"Zm9\0vYmFy", 9, "foobar", 6},
        {"\xffZm9v\x80YmFy\xc3\xa9", 0, "foobar", 6},
        {"Zm9v-YmFy.!", 0, "foobar", 6},
        /* a partial quartet at the end gives nothing */
        {"Zm9vYg", 0, "foo", 3},
        {"Zm9vYmE", 0, "foo", 3},
        {"Z", 0, "", 0},
        /* the first '=' ends the data */
        {"=Zm9v", 0, "", 0},
        {"Zm9v=YmFy", 0, "foo", 3},
        {"Zm9vY=mFy", 0, "foo", 3},
        {"Zm9vYm=Fy", 0, "foob", 4},
        {"Zm9vYmF=y", 0, "fooba", 5},
        {"Zg==Zm9v", 0, "f", 1},
        {"Zg\r\n==", 0, "f", 1},
        {"Zm8=\r\nZm9v\r\n", 0, "fo", 2},
        /* pad bits that are not zero are dropped, as GMime does */
        {"Zh==", 0, "f", 1},
        {"Zm9=", 0, "fo", 2},
        /* every sextet value, and all three output bytes at 0x00 and 0xFF */
        {"AAAA////", 0, "\0\0\0\xff\xff\xff", 6},
        {"+/+/", 0, "\xfb\xff\xbf", 3},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = v[i].n ? v[i].n : strlen(v[i].in);
        for (int k = 0; k < n_impls; k++) {
            uint8_t *got;
            size_t gn = dec(impls[k], v[i].in, n, &got);
            CHECK_INT(gn, v[i].out_n);
            CHECK(gn == v[i].out_n && memcmp(got, v[i].out, gn) == 0);
            free(got);
        }
        diff_one((const uint8_t *)v[i].in, n);
    }
}

/* Every byte value at every position of a clean run long enough for the
 * wide paths (and around their block boundaries). */
static void test_every_byte_everywhere(void)
{
    uint8_t in[100];
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t k = 0; k < sizeof in; k++)
        in[k] = (uint8_t)alpha[(k * 7 + 3) % 64];
    for (int c = 0; c < 256; c++) {
        for (size_t pos = 0; pos < 70; pos++) {
            uint8_t save = in[pos];
            in[pos] = (uint8_t)c;
            diff_one(in, sizeof in);
            in[pos] = save;
        }
    }
}

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Random inputs of several shapes, from pure junk to clean MIME lines with a
 * rare defect. */
static void test_random(void)
{
    static const char junk[] = "=\r\n \t\0\x80\xff-.:@[`{";
    for (int it = 0; it < 20000; it++) {
        size_t n = rnd() % (it < 15000 ? 200 : 3000);
        uint8_t *in = malloc(n ? n : 1);
        if (in == NULL)
            abort();
        int shape = (int)(rnd() % 5);
        size_t col = 0, width = 4 + rnd() % 80;
        uint32_t rare = 1 + rnd() % 300;
        for (size_t i = 0; i < n; i++) {
            uint32_t r = rnd();
            switch (shape) {
            case 0: /* any byte */
                in[i] = (uint8_t)r;
                break;
            case 1: /* alphabet and junk alike */
                in[i] = (uint8_t)(r % 2 ? alphabet[(r >> 8) % 64] : junk[(r >> 8) % 15]);
                break;
            default: /* lines of `width` characters, CRLF or LF, rare junk */
                if (col == width) {
                    in[i] = shape == 2 ? '\r' : '\n';
                    if (shape == 2 && i + 1 < n)
                        in[++i] = '\n';
                    col = 0;
                    continue;
                }
                in[i] = (uint8_t)(r % rare == 0 ? junk[(r >> 8) % 15] : alphabet[(r >> 8) % 64]);
                col++;
            }
        }
        diff_one(in, n);
        free(in);
    }
}

/* Bodies of equal lines (the decoders' line mode), with one defect in the
 * third line at every position: junk, '=', a line end too early or too late. */
static void test_line_defects(void)
{
    static const size_t widths[] = {4, 16, 32, 36, 60, 64, 72, 76, 100, 128};
    static const uint8_t defects[] = {'.', '=', '\r', '\n', 0x80, 'A', '\0'};
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        for (size_t eol = 1; eol <= 2; eol++) {
            size_t w = widths[wi], ll = w + eol, n = 6 * ll;
            uint8_t *in = malloc(n);
            if (in == NULL)
                abort();
            for (size_t i = 0; i < n; i++) {
                size_t col = i % ll;
                in[i] = col < w ? (uint8_t)alphabet[rnd() % 64]
                                : (uint8_t)(eol == 2 && col == w ? '\r' : '\n');
            }
            diff_one(in, n);
            for (size_t pos = 2 * ll; pos < 3 * ll; pos++) {
                uint8_t save = in[pos];
                for (size_t d = 0; d < sizeof defects; d++) {
                    in[pos] = defects[d];
                    diff_one(in, n);
                }
                in[pos] = save;
            }
            free(in);
        }
    }
}

/* GLib's encoder and sanitize_finish's cut into 76-character CRLF lines. */
static void glib_lines(const uint8_t *p, size_t n, buf *out)
{
    gchar *enc = g_base64_encode(p, n);
    size_t el = strlen(enc);
    for (size_t i = 0; i < el; i += 76) {
        buf_append(out, enc + i, el - i < 76 ? el - i : 76);
        buf_puts(out, "\r\n");
    }
    g_free(enc);
}

static void test_encode_vectors(void)
{
    static const struct {
        const char *in, *out;
    } v[] = {
        {"f", "Zg==\r\n"},        {"fo", "Zm8=\r\n"},        {"foo", "Zm9v\r\n"},
        {"foob", "Zm9vYg==\r\n"}, {"fooba", "Zm9vYmE=\r\n"}, {"foobar", "Zm9vYmFy\r\n"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        buf b;
        buf_init(&b, 1 << 20);
        CHECK_INT(b64_encode_lines((const uint8_t *)v[i].in, strlen(v[i].in), &b), 0);
        CHECK_STR(buf_cstr(&b), v[i].out);
        CHECK_INT(b.len, b64_encoded_lines_len(strlen(v[i].in)));
        buf_free(&b);
    }

    /* Nothing for nothing, and no allocation either. */
    buf b;
    buf_init(&b, 1 << 20);
    CHECK_INT(b64_encode_lines((const uint8_t *)"", 0, &b), 0);
    CHECK_INT(b.len, 0);
    CHECK(b.p == NULL);
    CHECK_INT(b64_encoded_lines_len(0), 0);

    /* 57 bytes fill one line exactly; 58 start a second one. */
    uint8_t z[58];
    memset(z, 0, sizeof z);
    CHECK_INT(b64_encode_lines(z, 57, &b), 0);
    CHECK_INT(b.len, 78);
    CHECK(b.len == 78 && memcmp(b.p + 76, "\r\n", 2) == 0 && b.p[0] == 'A' && b.p[75] == 'A');
    buf_reset(&b);
    CHECK_INT(b64_encode_lines(z, 58, &b), 0);
    CHECK_STR(buf_cstr(&b) + 78, "AA==\r\n");

    /* Appends after what is there. */
    buf_reset(&b);
    buf_puts(&b, "head:");
    CHECK_INT(b64_encode_lines((const uint8_t *)"foobar", 6, &b), 0);
    CHECK_STR(buf_cstr(&b), "head:Zm9vYmFy\r\n");
    buf_free(&b);

    /* The ceiling: an error, the content left as it was, the error sticky. */
    buf small;
    buf_init(&small, 12);
    buf_puts(&small, "xy");
    CHECK_INT(b64_encode_lines((const uint8_t *)"foobar", 6, &small), 0); /* 10 more: fits */
    CHECK_STR(buf_cstr(&small), "xyZm9vYmFy\r\n");
    CHECK_INT(b64_encode_lines((const uint8_t *)"f", 1, &small), -ENOSPC);
    CHECK_STR(buf_cstr(&small), "xyZm9vYmFy\r\n");
    CHECK_INT(small.err, -ENOSPC);
    CHECK_INT(b64_encode_lines((const uint8_t *)"", 0, &small), -ENOSPC);
    buf_free(&small);

    /* Sizes past what a size_t holds are refused, not wrapped. */
    CHECK(b64_encoded_lines_len(SIZE_MAX) == SIZE_MAX);
    CHECK(b64_encoded_lines_len(SIZE_MAX / 2) == SIZE_MAX);
    CHECK(b64_encoded_lines_len(SIZE_MAX / 4) != SIZE_MAX);
    buf big;
    buf_init(&big, BUF_UNLIMITED);
    CHECK_INT(b64_encode_lines((const uint8_t *)"", SIZE_MAX / 2, &big), -ENOSPC);
    CHECK_INT(big.len, 0);
    buf_free(&big);
}

/* Against GLib + cut on every length up to a few lines and some long ones,
 * and back through the decoder. */
static void test_encode_against_glib(void)
{
    for (size_t n = 0; n < 2000; n += n < 300 ? 1 : 97) {
        uint8_t *in = malloc(n ? n : 1);
        if (in == NULL)
            abort();
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)rnd();
        buf g, b;
        buf_init(&g, BUF_UNLIMITED);
        buf_init(&b, BUF_UNLIMITED);
        glib_lines(in, n, &g);
        CHECK_INT(b64_encode_lines(in, n, &b), 0);
        CHECK_INT(b.len, g.len);
        CHECK_INT(b.len, b64_encoded_lines_len(n));
        CHECK(b.len == g.len && (n == 0 || memcmp(b.p, g.p, g.len) == 0));
        for (int k = 0; k < n_impls; k++) {
            uint8_t *back;
            size_t bn = dec(impls[k], b.p ? b.p : (const uint8_t *)"", b.len, &back);
            CHECK(bn == n && memcmp(back, in, n) == 0);
            free(back);
        }
        buf_free(&g);
        buf_free(&b);
        free(in);
    }
}

int main(void)
{
    g_mime_init();
    /* The entry point itself, and each implementation behind it. */
    impls[n_impls++] = B64_IMPL_AUTO;
    impls[n_impls++] = B64_IMPL_PORTABLE;
    if (b64_impl_resolve(B64_IMPL_AVX2) == B64_IMPL_AVX2)
        impls[n_impls++] = B64_IMPL_AVX2;
    else
        printf("no AVX2 on this CPU or in this build: the portable decoder only\n");
    CHECK_INT(b64_impl_resolve(B64_IMPL_PORTABLE), B64_IMPL_PORTABLE);
    CHECK_INT(b64_impl_resolve(B64_IMPL_AUTO), b64_impl_resolve(B64_IMPL_AVX2));
    CHECK_INT(b64_decoded_max(0), 3);
    CHECK_INT(b64_decoded_max(76), 60);
    /* An empty buffer's NULL is a valid empty input (buf.p while empty). */
    uint8_t none[3];
    CHECK_INT(b64_decode_mime(NULL, 0, none), 0);
    CHECK_INT(b64_decode_mime_impl(B64_IMPL_PORTABLE, NULL, 0, none), 0);
    buf nb;
    buf_init(&nb, 16);
    CHECK_INT(b64_encode_lines(NULL, 0, &nb), 0);
    CHECK_INT(nb.len, 0);

    test_vectors();
    test_every_byte_everywhere();
    test_random();
    test_line_defects();
    test_encode_vectors();
    test_encode_against_glib();
    g_mime_shutdown();
    TEST_DONE();
}
