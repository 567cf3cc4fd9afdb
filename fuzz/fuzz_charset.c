/*
 * fuzz_charset - charset_to_utf8 under each label family. The first input
 * byte picks the label, the rest is the text. Invariants checked (abort on
 * violation): the output is valid UTF-8; valid UTF-8 labelled utf-8 comes out
 * unchanged; a small output ceiling is
 * honoured; detection never returns NULL.
 */
#include "charset.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const labels[] = {
    NULL, "", "us-ascii", "utf-8", "iso-2022-jp", "iso-2022-jp-ms", "csISO2022JP",
    "shift_jis", "x-sjis", "cp932", "euc-jp", "x-euc-jp", "eucJP-ms", "iso-8859-1",
    "windows-1252", "gb2312", "big5", "euc-kr", "ks_c_5601-1987", "koi8-r", "utf-7",
    "unknown-8bit", "x-unknown", "windows-1251", "utf-16", "bogus",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *label = labels[data[0] % (sizeof labels / sizeof labels[0])];
    const uint8_t *p = data + 1;
    size_t n = size - 1;

    buf out;
    buf_init(&out, 1 << 22);
    charset_info info;
    int rc = charset_to_utf8(p, n, label, &out, &info);
    if (rc != 0)
        abort();
    if (!charset_is_utf8(out.p ? out.p : (const uint8_t *)"", out.len))
        abort();
    if (info.used[0] == 0 || memchr(info.used, 0, sizeof info.used) == NULL)
        abort();
    if (label && strcmp(label, "utf-8") == 0 && charset_is_utf8(p, n) &&
        (out.len != n || (n && memcmp(out.p, p, n) != 0)))
        abort();
    buf_free(&out);

    buf_init(&out, 8);
    rc = charset_to_utf8(p, n, label, &out, NULL);
    if (out.len > 8 || (rc != 0 && rc != -ENOSPC))
        abort();
    buf_free(&out);

    if (charset_detect(p, n) == NULL)
        abort();
    (void)charset_canonical(label);
    return 0;
}
