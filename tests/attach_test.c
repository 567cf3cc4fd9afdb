/* Unit tests for lib/attach: type detection and warnings, table-driven. */
#include "attach.h"
#include "testutil.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>

/* A minimal PE32 image: DOS header with e_lfanew, DOS stub, COFF and
 * optional header (enough for libmagic to call it a Windows program). */
static uint8_t pe[0x80 + 24 + 0xe0 + 64];

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void make_pe(void)
{
    memset(pe, 0, sizeof pe);
    memcpy(pe, "MZ", 2);
    put16(pe + 2, 0x90);
    put16(pe + 4, 3);
    put16(pe + 8, 4);
    put16(pe + 0x18, 0x40);
    pe[0x3c] = 0x80;
    memcpy(pe + 0x40, "\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21"
                      "This program cannot be run in DOS mode.\r\r\n$", 57);
    uint8_t *coff = pe + 0x80;
    memcpy(coff, "PE\0\0", 4);
    put16(coff + 4, 0x14c); /* i386 */
    put16(coff + 6, 1);     /* sections */
    put16(coff + 20, 0xe0); /* optional header size */
    put16(coff + 22, 0x102);
    put16(coff + 24, 0x10b); /* PE32 */
}
static const uint8_t pdf[] = "%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";
static const uint8_t png[] = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
                             "\x08\x02\x00\x00\x00\x90wS\xde";

/* Builds a zip in memory with libarchive (optionally ZipCrypto-encrypted). */
static size_t make_zip(uint8_t *out, size_t cap, const char *name, const char *password)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    if (password) {
        archive_write_set_options(a, "zip:encryption=zipcrypt");
        archive_write_set_passphrase(a, password);
    }
    size_t used = 0;
    archive_write_open_memory(a, out, cap, &used);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, 5);
    archive_write_header(a, e);
    archive_write_data(a, "hello", 5);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    return used;
}

struct name_case {
    const char *name;
    const uint8_t *data;
    size_t len;
    unsigned must;     /* warnings that must be set */
    unsigned must_not; /* warnings that must not be set */
};

int main(void)
{
    make_pe();
    attach_ctx *c = attach_new();
    CHECK(c != NULL);
    const struct name_case cases[] = {
        {"請求書.pdf.exe", pe, sizeof pe,
         ATTACH_W_DOUBLE_EXT | ATTACH_W_EXECUTABLE, ATTACH_W_MACRO},
        {"請求書.pdf", pe, sizeof pe, ATTACH_W_MISMATCH | ATTACH_W_EXECUTABLE, 0},
        {"見積書.pdf", pdf, sizeof pdf - 1, 0,
         ATTACH_W_MISMATCH | ATTACH_W_EXECUTABLE | ATTACH_W_DOUBLE_EXT},
        {"photo.jpg", png, sizeof png - 1, 0, ATTACH_W_MISMATCH}, /* both images: fine */
        {"photo.png", pdf, sizeof pdf - 1, ATTACH_W_MISMATCH, 0},
        {"invoice.pdf          .scr", pe, sizeof pe, ATTACH_W_DOUBLE_EXT, 0},
        {"setup.exe.", pe, sizeof pe, ATTACH_W_EXECUTABLE, ATTACH_W_MISMATCH},
        {"report.docm", pdf, sizeof pdf - 1, ATTACH_W_MACRO, 0},
        {"run.vbs", (const uint8_t *)"MsgBox 1\n", 9, ATTACH_W_EXECUTABLE, ATTACH_W_MISMATCH},
        {"\xe2\x80\xaegnp.exe", pe, sizeof pe, ATTACH_W_BIDI | ATTACH_W_EXECUTABLE, 0},
        {"", pdf, sizeof pdf - 1, 0, ATTACH_W_MISMATCH | ATTACH_W_EXECUTABLE},
        {"empty.txt", (const uint8_t *)"", 0, 0, ATTACH_W_EXECUTABLE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        attach_info info;
        attach_analyze(c, cases[i].data, cases[i].len, cases[i].name, "", &info);
        if ((info.warnings & cases[i].must) != cases[i].must ||
            (info.warnings & cases[i].must_not) != 0) {
            fprintf(stderr, "case %zu (%s): warnings 0x%x, detected %s\n", i, cases[i].name,
                    info.warnings, info.detected);
        }
        CHECK((info.warnings & cases[i].must) == cases[i].must);
        CHECK((info.warnings & cases[i].must_not) == 0);
        CHECK_INT(info.size, cases[i].len);
        CHECK_INT(strlen(info.sha256), 64);
    }

    /* Declared type against detected type. */
    attach_info d;
    attach_analyze(c, pe, sizeof pe, "請求書.pdf.exe", "application/pdf", &d);
    CHECK(d.warnings & ATTACH_W_MISMATCH);
    attach_analyze(c, pdf, sizeof pdf - 1, "a.pdf", "application/pdf", &d);
    CHECK(!(d.warnings & ATTACH_W_MISMATCH));
    attach_analyze(c, pdf, sizeof pdf - 1, "a.pdf", "application/octet-stream", &d);
    CHECK(!(d.warnings & ATTACH_W_MISMATCH));
    attach_analyze(c, png, sizeof png - 1, "a.png", "application/pdf", &d);
    CHECK(d.warnings & ATTACH_W_MISMATCH);

    /* The detected type of a PE file, and its hash. */
    attach_info info;
    attach_analyze(c, (const uint8_t *)"abc", 3, "a.txt", "text/plain", &info);
    CHECK_STR(info.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_STR(info.detected, "text/plain");

    /* Archives: encrypted (PPAP), a program inside, an OOXML macro project. */
    static uint8_t zip[65536];
    size_t n = make_zip(zip, sizeof zip, "名簿.xlsx", "secret");
    attach_analyze(c, zip, n, "送付資料.zip", "application/zip", &info);
    CHECK(info.warnings & ATTACH_W_ENCRYPTED);
    CHECK(info.warnings & ATTACH_W_ARCHIVE);
    CHECK_INT(info.archive_entries, 1);
    n = make_zip(zip, sizeof zip, "docs/readme.txt", NULL);
    attach_analyze(c, zip, n, "plain.zip", "application/zip", &info);
    CHECK(!(info.warnings & (ATTACH_W_ENCRYPTED | ATTACH_W_EXECUTABLE)));
    n = make_zip(zip, sizeof zip, "invoice.pdf.exe", NULL);
    attach_analyze(c, zip, n, "invoice.zip", "application/zip", &info);
    CHECK(info.warnings & ATTACH_W_EXECUTABLE);
    n = make_zip(zip, sizeof zip, "xl/vbaProject.bin", NULL);
    attach_analyze(c, zip, n, "book.xlsx", "", &info);
    CHECK(info.warnings & ATTACH_W_MACRO);
    /* Truncated archive: no crash, no false encryption. */
    attach_analyze(c, zip, n / 2, "cut.zip", "", &info);
    CHECK(!(info.warnings & ATTACH_W_ENCRYPTED));

    /* Display names: controls and bidi overrides made visible. */
    buf b;
    buf_init(&b, 1024);
    attach_display_name("a\xe2\x80\xaegnp.exe\x01\xff", &b);
    CHECK_STR(buf_cstr(&b), "a<U+202E>gnp.exe<U+0001><FF>");
    buf_reset(&b);
    attach_warning_text(ATTACH_W_EXECUTABLE | ATTACH_W_ENCRYPTED, 0, "／", &b);
    CHECK_HAS(buf_cstr(&b), "実行ファイル");
    CHECK_HAS(buf_cstr(&b), "暗号化");
    buf_reset(&b);
    attach_warning_text(ATTACH_W_MACRO, 1, "; ", &b);
    CHECK_STR(buf_cstr(&b), "macro-enabled Office document");
    buf_free(&b);
    attach_free(c);
    attach_free(NULL);
    TEST_DONE();
}
