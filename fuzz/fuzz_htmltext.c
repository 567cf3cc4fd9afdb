/*
 * fuzz_htmltext - libFuzzer target for the HTML to text renderer. The first
 * byte picks the options (defang, English, a small max_depth, a small output
 * maximum); the rest is the HTML. Any crash, sanitizer report or leak is a
 * finding, and so is a broken output contract, checked here:
 *   - the result is 0 or -ENOSPC (and -ENOSPC only with a full-ish buffer);
 *   - the text is valid UTF-8 without NUL, CR or other C0 controls but tab/LF;
 *   - no leading blank line, never two blank lines in a row, no trailing blank
 *     line, a final LF, no trailing spaces on a line (unless out of space);
 *   - when defanging and the input has no "[" or "&" (so every "[" in the
 *     text is one of ours), no "[http://", "[javascript:", ... appears.
 * Rendering the same input twice gives the same text.
 */
#include "htmltext.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            if (c == 0 || c == '\r' || (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
                return 0;
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

static void check_layout(const uint8_t *s, size_t n, int full)
{
    if (n == 0)
        return;
    if (s[0] == '\n')
        abort(); /* leading blank line */
    for (size_t i = 0; i + 2 < n; i++)
        if (s[i] == '\n' && s[i + 1] == '\n' && s[i + 2] == '\n')
            abort(); /* two blank lines */
    if (full)
        return; /* cut at the maximum: the end may be anywhere */
    if (s[n - 1] != '\n')
        abort();
    if (n >= 2 && s[n - 2] == '\n')
        abort(); /* trailing blank line */
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i + 1] == '\n' && (s[i] == ' ' || s[i] == '\t'))
            abort(); /* trailing space */
}

static void check_defanged(const uint8_t *s, size_t n)
{
    static const char *const bad[] = {"[http://", "[https://", "[javascript:", "[data:",
                                      "[vbscript:", "[ftp://"};
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '[')
            continue;
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            size_t l = strlen(bad[k]);
            if (i + l <= n && memcmp(s + i, bad[k], l) == 0)
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t f = data[0];
    htmltext_opts o = {(f & 1) ? 0 : 1, (f & 2) ? 1 : 0, (f & 4) ? 8 : 0};
    size_t max = (f & 8) ? (size_t)(f >> 4) * 7 : (size_t)1 << 24;
    const char *html = (const char *)data + 1;
    size_t n = size - 1;

    buf out;
    buf_init(&out, max);
    htmltext_stats st;
    int rc = htmltext_render(html, n, &o, &out, &st);
    if (rc != 0 && rc != -ENOSPC)
        abort();
    if (rc == -ENOSPC && (out.err != -ENOSPC || out.len > max))
        abort();
    if (!valid_utf8(out.p ? out.p : (const uint8_t *)"", out.len))
        abort();
    check_layout(out.p, out.len, rc == -ENOSPC);
    if (o.defang && rc == 0 && memchr(html, '[', n) == NULL && memchr(html, '&', n) == NULL)
        check_defanged(out.p, out.len);
    if (st.link_mismatch > st.links)
        abort();

    buf again;
    buf_init(&again, max);
    int rc2 = htmltext_render(html, n, &o, &again, NULL);
    if (rc2 != rc || again.len != out.len || (out.len && memcmp(again.p, out.p, out.len) != 0))
        abort();
    buf_free(&again);
    buf_free(&out);
    return 0;
}
