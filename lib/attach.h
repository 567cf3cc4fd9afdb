/*
 * attach - what a removed part is: its real type (libmagic), size, SHA-256, and
 * the warnings a recipient should see before asking for it back:
 *   extension vs detected type mismatch (請求書.pdf.exe), double extension,
 *   encrypted archive (PPAP, via libarchive: headers only, nothing is
 *   decompressed, so a zip bomb costs nothing), macro-enabled Office file,
 *   executable (by detected type, extension, or inside an archive),
 *   bidirectional-override characters in the file name.
 * Also attach_display_name(), which makes a file name safe to show: control and
 * bidi characters become visible <U+XXXX> escapes.
 */
#ifndef SEKISHO_ATTACH_H
#define SEKISHO_ATTACH_H

#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

enum {
    ATTACH_W_MISMATCH = 1u << 0,   /* extension says one type, content another */
    ATTACH_W_DOUBLE_EXT = 1u << 1, /* name.pdf.exe, name.doc   .scr */
    ATTACH_W_ENCRYPTED = 1u << 2,  /* encrypted archive (PPAP): cannot be inspected */
    ATTACH_W_MACRO = 1u << 3,      /* macro-enabled Office document */
    ATTACH_W_EXECUTABLE = 1u << 4, /* program or script, or an archive containing one */
    ATTACH_W_BIDI = 1u << 5,       /* RLO/LRO etc. in the file name (hides the real extension) */
    ATTACH_W_ARCHIVE = 1u << 6,    /* an archive (contents listed, not inspected further) */
};

typedef struct attach_ctx attach_ctx;

typedef struct attach_info {
    char detected[96];   /* MIME type from libmagic, e.g. "application/pdf" */
    uint64_t size;       /* bytes */
    char sha256[65];     /* lower-case hex */
    unsigned warnings;   /* ATTACH_W_* */
    unsigned archive_entries; /* entries seen when it is an archive */
} attach_info;

/* Loads libmagic's database once. NULL (with msg_warn) if libmagic fails. */
attach_ctx *attach_new(void);
void attach_free(attach_ctx *c);

/* Analyses decoded content p[0..n). filename is decoded UTF-8 (may be ""),
 * declared the declared media type (may be ""). Always fills out. */
void attach_analyze(attach_ctx *c, const uint8_t *p, size_t n, const char *filename,
                    const char *declared, attach_info *out);

/* Appends a display-safe form of a UTF-8 file name to out (controls, bidi
 * overrides and invalid bytes shown as <U+XXXX> / <XX>). */
int attach_display_name(const char *name, buf *out);

/* Appends a human-readable list of the warnings, separated by sep, in Japanese
 * (or English). */
int attach_warning_text(unsigned warnings, int english, const char *sep, buf *out);

#endif
