/*
 * fuzz_b64 - differential: lib/b64 against the code it replaces, on the same
 * arbitrary bytes.
 *   decode: b64_decode_mime (as called, and forced portable and AVX2) must
 *           give exactly what GMime's g_mime_encoding_base64_decode_step
 *           gives (one call, state = save = 0); the output buffer is exactly
 *           b64_decoded_max(size) bytes, so ASan sees any write past it.
 *   encode: b64_encode_lines must give exactly g_base64_encode cut into
 *           76-character CRLF lines (sanitize_finish today), and its output
 *           must decode back to the input, by each decoder and by GMime's.
 * Any difference aborts.
 */
#include "b64.h"

#include <gmime/gmime.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inited;
static enum b64_impl impls[3];
static int n_impls;

static void init(void)
{
    g_mime_init();
    impls[n_impls++] = B64_IMPL_AUTO;
    impls[n_impls++] = B64_IMPL_PORTABLE;
    if (b64_impl_resolve(B64_IMPL_AVX2) == B64_IMPL_AVX2)
        impls[n_impls++] = B64_IMPL_AVX2;
    inited = 1;
}

static size_t gmime_decode(const uint8_t *in, size_t n, uint8_t **out)
{
    int state = 0;
    guint32 save = 0;
    *out = malloc(n + 3); /* g_mime_encoding_outlen() for decoding */
    if (*out == NULL)
        abort();
    return g_mime_encoding_base64_decode_step(in, n, *out, &state, &save);
}

/* Both decoders must give want[0..wn) for in[0..n). */
static void check_decoders(const uint8_t *in, size_t n, const uint8_t *want, size_t wn)
{
    for (int i = 0; i < n_impls; i++) {
        uint8_t *got = malloc(b64_decoded_max(n));
        if (got == NULL)
            abort();
        size_t gn = impls[i] == B64_IMPL_AUTO ? b64_decode_mime(in, n, got)
                                              : b64_decode_mime_impl(impls[i], in, n, got);
        if (gn != wn || (wn > 0 && memcmp(got, want, wn) != 0))
            abort();
        free(got);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!inited)
        init();

    /* The input as a base64 body. */
    uint8_t *want;
    size_t wn = gmime_decode(data, size, &want);
    if (wn > b64_decoded_max(size))
        abort();
    check_decoders(data, size, want, wn);
    free(want);

    /* The input as bytes to encode. */
    buf mine, ref;
    buf_init(&mine, BUF_UNLIMITED);
    buf_init(&ref, BUF_UNLIMITED);
    if (b64_encode_lines(data, size, &mine) != 0)
        abort();
    gchar *enc = g_base64_encode(data, size);
    size_t el = strlen(enc);
    for (size_t i = 0; i < el; i += 76) {
        buf_append(&ref, enc + i, el - i < 76 ? el - i : 76);
        buf_puts(&ref, "\r\n");
    }
    g_free(enc);
    if (ref.err != 0 || mine.len != ref.len || mine.len != b64_encoded_lines_len(size) ||
        (mine.len > 0 && memcmp(mine.p, ref.p, ref.len) != 0))
        abort();

    /* And back. */
    const uint8_t *text = mine.p ? mine.p : (const uint8_t *)"";
    size_t gn = gmime_decode(text, mine.len, &want);
    if (gn != size || (size > 0 && memcmp(want, data, size) != 0))
        abort();
    free(want);
    check_decoders(text, mine.len, data, size);
    buf_free(&mine);
    buf_free(&ref);
    return 0;
}
