/*
 * fuzz_mimehdr - every mimehdr entry point on one untrusted header value:
 * decode_text, param, media_type, encode_addresses, and encode_text of the
 * decoded text. Invariants checked (abort on violation): decoded text is
 * valid UTF-8; an encoded field is ASCII, has lines of at most 78 octets and
 * decodes back to exactly the text it was given.
 */
#include "charset.h"
#include "mimehdr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const buf *f, const char *text)
{
    size_t line = 0;
    for (size_t i = 0; i < f->len; i++) {
        if (f->p[i] >= 0x80)
            abort();
        if (f->p[i] == '\r' && i + 1 < f->len && f->p[i + 1] == '\n') {
            if (line > 78)
                abort();
            line = 0;
            i++;
            continue;
        }
        line++;
    }
    /* Decode the value back: after "S:" and the space that follows. */
    if (f->len < 5)
        abort();
    const char *v = (const char *)f->p + 2;
    size_t vl = f->len - 4;
    if (vl > 0 && v[0] == ' ') {
        v++;
        vl--;
    } else if (vl >= 3 && v[0] == '\r') { /* folded right after the colon */
        v += 3;
        vl -= 3;
    }
    buf back;
    buf_init(&back, 1 << 22);
    if (mimehdr_decode_text(v, vl, &back, NULL) != 0)
        abort();
    if (strcmp(buf_cstr(&back), text) != 0)
        abort();
    buf_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *raw = (const char *)data;
    buf out;
    size_t rep = 0;

    buf_init(&out, 1 << 22);
    if (mimehdr_decode_text(raw, size, &out, &rep) == 0) {
        if (!charset_is_utf8(out.p ? out.p : (const uint8_t *)"", out.len))
            abort();
        /* The text as a C string: up to a NUL, and valid UTF-8 there too. */
        const char *text = buf_cstr(&out);
        buf enc;
        buf_init(&enc, 1 << 22);
        if (mimehdr_encode_text("S", text, &enc) == 0)
            check_field(&enc, text);
        buf_free(&enc);
    }
    buf_free(&out);

    static const char *const names[] = {"filename", "name", "charset", "boundary"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        buf_init(&out, 1 << 22);
        int rc = mimehdr_param(raw, size, names[i], &out, &rep);
        if (rc == 0 && !charset_is_utf8(out.p ? out.p : (const uint8_t *)"", out.len))
            abort();
        buf_free(&out);
    }

    char mt[128];
    mimehdr_media_type(raw, size, mt, sizeof mt);
    if (strlen(mt) >= sizeof mt)
        abort();

    buf_init(&out, 1 << 22);
    (void)mimehdr_encode_addresses("To", raw, size, &out, &rep);
    buf_free(&out);

    /* A small ceiling must be honoured, never overrun. */
    buf_init(&out, 16);
    (void)mimehdr_decode_text(raw, size, &out, NULL);
    if (out.len > 16)
        abort();
    buf_free(&out);
    return 0;
}
