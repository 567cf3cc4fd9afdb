/*
 * attach - analysis of a removed part. See attach.h.
 *
 * Inputs are decoded attachment bytes from untrusted mail. libmagic gets at
 * most ATTACH_MAGIC_BYTES of them with its own compression checks off (a
 * compressed file is typed, never inflated). Archives are listed with
 * libarchive's readers for the formats mail actually carries (zip, 7z, rar,
 * lha, cab, tar): only headers are read and data is skipped, so nothing is
 * decompressed and a zip bomb costs no memory; at most ATTACH_MAX_ENTRIES
 * entries are looked at.
 *
 * The extension tables are hand-written: they encode which extensions
 * Windows runs or opens with macros, which no library knows.
 */
#include "attach.h"
#include "util/digest.h"
#include "util/msg.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <stdio.h>
#include <magic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ATTACH_MAGIC_BYTES ((size_t)1 << 20) /* as file(1) 5.44 reads by default */
#define ATTACH_MAX_ENTRIES 10000u
#define ATTACH_EXT_MAX 12

struct attach_ctx {
    magic_t magic;
};

enum fam {
    F_NONE = 0,
    F_PDF,
    F_OLE,   /* legacy Office: doc, xls, ppt (Compound File Binary) */
    F_OOXML, /* docx, xlsx, pptx: zip containers */
    F_ZIP,
    F_ARCHIVE,
    F_IMAGE,
    F_TEXT,
    F_EXEC,
    F_AUDIO,
    F_VIDEO,
};

struct ext_rule {
    const char *ext;
    enum fam fam;
    unsigned flags; /* ATTACH_W_EXECUTABLE / ATTACH_W_MACRO implied by the name */
};

static const struct ext_rule ext_rules[] = {
    {"pdf", F_PDF, 0},
    {"doc", F_OLE, 0}, {"xls", F_OLE, 0}, {"ppt", F_OLE, 0}, {"dot", F_OLE, 0},
    {"xlt", F_OLE, 0}, {"pps", F_OLE, 0}, {"msg", F_OLE, 0},
    {"docx", F_OOXML, 0}, {"xlsx", F_OOXML, 0}, {"pptx", F_OOXML, 0},
    {"dotx", F_OOXML, 0}, {"xltx", F_OOXML, 0}, {"ppsx", F_OOXML, 0},
    {"docm", F_OOXML, ATTACH_W_MACRO}, {"xlsm", F_OOXML, ATTACH_W_MACRO},
    {"pptm", F_OOXML, ATTACH_W_MACRO}, {"dotm", F_OOXML, ATTACH_W_MACRO},
    {"xltm", F_OOXML, ATTACH_W_MACRO}, {"potm", F_OOXML, ATTACH_W_MACRO},
    {"ppsm", F_OOXML, ATTACH_W_MACRO}, {"xlam", F_OOXML, ATTACH_W_MACRO},
    {"ppam", F_OOXML, ATTACH_W_MACRO}, {"xlsb", F_OOXML, ATTACH_W_MACRO},
    {"odt", F_ZIP, 0}, {"ods", F_ZIP, 0}, {"odp", F_ZIP, 0},
    {"zip", F_ZIP, 0},
    {"7z", F_ARCHIVE, 0}, {"rar", F_ARCHIVE, 0}, {"lzh", F_ARCHIVE, 0},
    {"lha", F_ARCHIVE, 0}, {"cab", F_ARCHIVE, 0}, {"tar", F_ARCHIVE, 0},
    {"gz", F_ARCHIVE, 0}, {"tgz", F_ARCHIVE, 0},
    {"jpg", F_IMAGE, 0}, {"jpeg", F_IMAGE, 0}, {"png", F_IMAGE, 0}, {"gif", F_IMAGE, 0},
    {"bmp", F_IMAGE, 0}, {"tif", F_IMAGE, 0}, {"tiff", F_IMAGE, 0}, {"webp", F_IMAGE, 0},
    {"heic", F_IMAGE, 0},
    {"txt", F_TEXT, 0}, {"csv", F_TEXT, 0}, {"log", F_TEXT, 0}, {"xml", F_TEXT, 0},
    {"htm", F_TEXT, 0}, {"html", F_TEXT, 0}, {"ics", F_TEXT, 0}, {"vcf", F_TEXT, 0},
    {"eml", F_TEXT, 0}, {"json", F_TEXT, 0},
    {"mp3", F_AUDIO, 0}, {"wav", F_AUDIO, 0}, {"m4a", F_AUDIO, 0},
    {"mp4", F_VIDEO, 0}, {"mov", F_VIDEO, 0}, {"avi", F_VIDEO, 0}, {"wmv", F_VIDEO, 0},
    /* What Windows runs, or runs scripts from, when double-clicked. */
    {"exe", F_EXEC, ATTACH_W_EXECUTABLE}, {"scr", F_EXEC, ATTACH_W_EXECUTABLE},
    {"com", F_EXEC, ATTACH_W_EXECUTABLE}, {"pif", F_EXEC, ATTACH_W_EXECUTABLE},
    {"bat", F_EXEC, ATTACH_W_EXECUTABLE}, {"cmd", F_EXEC, ATTACH_W_EXECUTABLE},
    {"dll", F_EXEC, ATTACH_W_EXECUTABLE}, {"cpl", F_EXEC, ATTACH_W_EXECUTABLE},
    {"msi", F_EXEC, ATTACH_W_EXECUTABLE}, {"msp", F_EXEC, ATTACH_W_EXECUTABLE},
    {"vbs", F_EXEC, ATTACH_W_EXECUTABLE}, {"vbe", F_EXEC, ATTACH_W_EXECUTABLE},
    {"js", F_EXEC, ATTACH_W_EXECUTABLE}, {"jse", F_EXEC, ATTACH_W_EXECUTABLE},
    {"wsf", F_EXEC, ATTACH_W_EXECUTABLE}, {"wsh", F_EXEC, ATTACH_W_EXECUTABLE},
    {"hta", F_EXEC, ATTACH_W_EXECUTABLE}, {"ps1", F_EXEC, ATTACH_W_EXECUTABLE},
    {"lnk", F_EXEC, ATTACH_W_EXECUTABLE}, {"jar", F_EXEC, ATTACH_W_EXECUTABLE},
    {"reg", F_EXEC, ATTACH_W_EXECUTABLE}, {"chm", F_EXEC, ATTACH_W_EXECUTABLE},
    {"iso", F_EXEC, ATTACH_W_EXECUTABLE}, {"img", F_EXEC, ATTACH_W_EXECUTABLE},
    {"vhd", F_EXEC, ATTACH_W_EXECUTABLE}, {"vhdx", F_EXEC, ATTACH_W_EXECUTABLE},
    {"sh", F_EXEC, ATTACH_W_EXECUTABLE}, {"elf", F_EXEC, ATTACH_W_EXECUTABLE},
    {"appx", F_EXEC, ATTACH_W_EXECUTABLE}, {"msix", F_EXEC, ATTACH_W_EXECUTABLE},
    {"one", F_EXEC, ATTACH_W_EXECUTABLE}, {"url", F_EXEC, ATTACH_W_EXECUTABLE},
};

struct mime_rule {
    const char *prefix; /* matched against the start of libmagic's MIME type */
    enum fam fam;
};

static const struct mime_rule mime_rules[] = {
    {"application/pdf", F_PDF},
    {"application/msword", F_OLE},
    {"application/vnd.ms-excel", F_OLE},
    {"application/vnd.ms-powerpoint", F_OLE},
    {"application/vnd.ms-outlook", F_OLE},
    {"application/cdfv2", F_OLE},
    {"application/x-ole-storage", F_OLE},
    {"application/vnd.openxmlformats-officedocument", F_OOXML},
    {"application/vnd.ms-word.document.macroenabled", F_OOXML},
    {"application/vnd.ms-excel.sheet.macroenabled", F_OOXML},
    {"application/vnd.oasis.opendocument", F_ZIP},
    {"application/zip", F_ZIP},
    {"application/x-7z-compressed", F_ARCHIVE},
    {"application/x-rar", F_ARCHIVE},
    {"application/vnd.rar", F_ARCHIVE},
    {"application/x-lha", F_ARCHIVE},
    {"application/x-lzh", F_ARCHIVE},
    {"application/vnd.ms-cab-compressed", F_ARCHIVE},
    {"application/x-tar", F_ARCHIVE},
    {"application/gzip", F_ARCHIVE},
    {"application/x-gzip", F_ARCHIVE},
    {"application/x-dosexec", F_EXEC},
    {"application/x-msdownload", F_EXEC},
    {"application/vnd.microsoft.portable-executable", F_EXEC},
    {"application/x-executable", F_EXEC},
    {"application/x-pie-executable", F_EXEC},
    {"application/x-sharedlib", F_EXEC},
    {"application/x-mach-binary", F_EXEC},
    {"application/x-msi", F_EXEC},
    {"application/x-ms-shortcut", F_EXEC},
    {"application/x-iso9660-image", F_EXEC},
    {"application/java-archive", F_EXEC},
    {"text/x-shellscript", F_EXEC},
    {"text/x-msdos-batch", F_EXEC},
    {"image/", F_IMAGE},
    {"text/", F_TEXT},
    {"application/json", F_TEXT},
    {"application/xml", F_TEXT},
    {"audio/", F_AUDIO},
    {"video/", F_VIDEO},
};

attach_ctx *attach_new(void)
{
    attach_ctx *c = xcalloc(1, sizeof *c);
    c->magic = magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS | MAGIC_ERROR);
    if (c->magic == NULL || magic_load(c->magic, NULL) != 0) {
        msg_warn("libmagic: cannot load its database: %s",
                 c->magic ? magic_error(c->magic) : "magic_open failed");
        if (c->magic)
            magic_close(c->magic);
        free(c);
        return NULL;
    }
    size_t bytes_max = ATTACH_MAGIC_BYTES;
    magic_setparam(c->magic, MAGIC_PARAM_BYTES_MAX, &bytes_max);
    return c;
}

void attach_free(attach_ctx *c)
{
    if (c == NULL)
        return;
    magic_close(c->magic);
    free(c);
}

/* The extension before position end of name[0..end), lower-cased into ext.
 * Trailing dots and spaces are ignored, as Windows ignores them. Returns the
 * index of the dot, or -1 when there is no (sane) extension. */
static long ext_before(const char *name, size_t end, char ext[ATTACH_EXT_MAX + 1])
{
    while (end > 0 && (name[end - 1] == '.' || name[end - 1] == ' '))
        end--;
    size_t i = end;
    while (i > 0 && name[i - 1] != '.' && name[i - 1] != '/' && name[i - 1] != '\\')
        i--;
    if (i == 0 || name[i - 1] != '.' || end - i == 0 || end - i > ATTACH_EXT_MAX)
        return -1;
    for (size_t k = i; k < end; k++) {
        unsigned char ch = (unsigned char)name[k];
        if (!isalnum(ch))
            return -1;
        ext[k - i] = (char)tolower(ch);
    }
    ext[end - i] = 0;
    return (long)(i - 1);
}

static const struct ext_rule *ext_lookup(const char *ext)
{
    for (size_t i = 0; i < sizeof ext_rules / sizeof ext_rules[0]; i++)
        if (strcmp(ext_rules[i].ext, ext) == 0)
            return &ext_rules[i];
    return NULL;
}

static enum fam mime_family(const char *mime)
{
    for (size_t i = 0; i < sizeof mime_rules / sizeof mime_rules[0]; i++)
        if (strncasecmp(mime, mime_rules[i].prefix, strlen(mime_rules[i].prefix)) == 0)
            return mime_rules[i].fam;
    return F_NONE;
}

/* Do a name's family and the detected family disagree? Unknown on either side
 * is not a mismatch; containers that are legitimately zips are compatible. */
static int families_disagree(enum fam name_fam, enum fam det_fam)
{
    if (name_fam == F_NONE || det_fam == F_NONE || name_fam == det_fam)
        return 0;
    if ((name_fam == F_OOXML || name_fam == F_ZIP) && (det_fam == F_ZIP || det_fam == F_OOXML))
        return 0;
    if (name_fam == F_ARCHIVE && det_fam == F_ZIP)
        return 0;
    /* Scripts and text formats are all text to libmagic. */
    if (name_fam == F_EXEC && det_fam == F_TEXT)
        return 0;
    return 1;
}

/* Groups for comparing a declared media type with the detected one: clients
 * mislabel Office files among themselves (xlsx sent as application/vnd.ms-excel)
 * and that is no warning; a "PDF" that is a program is. */
static int declared_group(enum fam f)
{
    return f == F_OLE || f == F_OOXML || f == F_ZIP ? F_OOXML : (int)f;
}

static int declared_disagrees(const char *declared, enum fam det)
{
    if (declared == NULL || *declared == 0 || det == F_NONE)
        return 0;
    enum fam decl = mime_family(declared);
    if (decl == F_NONE)
        return 0;
    if (decl == F_TEXT && det == F_EXEC)
        return 1; /* "text" that is a script */
    return families_disagree(decl, det) && declared_group(decl) != declared_group(det);
}

static int has_bidi(const char *s)
{
    /* U+200E/F (E2 80 8E/8F), U+202A..U+202E (E2 80 AA..AE), U+2066..U+2069 (E2 81 A6..A9) */
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (p[0] != 0xE2 || p[1] == 0 || p[2] == 0)
            continue;
        if (p[1] == 0x80 && (p[2] == 0x8E || p[2] == 0x8F || (p[2] >= 0xAA && p[2] <= 0xAE)))
            return 1;
        if (p[1] == 0x81 && p[2] >= 0xA6 && p[2] <= 0xA9)
            return 1;
    }
    return 0;
}

static int contains(const uint8_t *p, size_t n, const void *needle, size_t nl)
{
    return n >= nl && memmem(p, n, needle, nl) != NULL;
}

/* Lists an archive's entries: encrypted entries, programs inside, OOXML macro
 * projects. Headers only; data is skipped unread. */
static void scan_archive(const uint8_t *p, size_t n, attach_info *out)
{
    struct archive *a = archive_read_new();
    if (a == NULL)
        return;
    archive_read_support_format_zip(a);
    archive_read_support_format_7zip(a);
    archive_read_support_format_rar(a);
    archive_read_support_format_rar5(a);
    archive_read_support_format_lha(a);
    archive_read_support_format_cab(a);
    archive_read_support_format_tar(a);
    archive_read_support_filter_gzip(a);
    if (archive_read_open_memory(a, p, n) != ARCHIVE_OK) {
        archive_read_free(a);
        return;
    }
    out->warnings |= ATTACH_W_ARCHIVE;
    struct archive_entry *e;
    int rc;
    while (out->archive_entries < ATTACH_MAX_ENTRIES &&
           (rc = archive_read_next_header(a, &e)) != ARCHIVE_EOF) {
        if (rc == ARCHIVE_FATAL)
            break;
        out->archive_entries++;
        if (archive_entry_is_encrypted(e))
            out->warnings |= ATTACH_W_ENCRYPTED;
        const char *name = archive_entry_pathname_utf8(e);
        if (name == NULL)
            name = archive_entry_pathname(e);
        if (name) {
            char ext[ATTACH_EXT_MAX + 1];
            size_t len = strlen(name);
            if (ext_before(name, len, ext) >= 0) {
                const struct ext_rule *r = ext_lookup(ext);
                if (r && (r->flags & ATTACH_W_EXECUTABLE))
                    out->warnings |= ATTACH_W_EXECUTABLE;
            }
            const char *base = strrchr(name, '/');
            base = base ? base + 1 : name;
            if (strcasecmp(base, "vbaProject.bin") == 0)
                out->warnings |= ATTACH_W_MACRO;
        }
        if (rc == ARCHIVE_WARN || rc == ARCHIVE_OK) {
            if (archive_read_data_skip(a) == ARCHIVE_FATAL)
                break;
        }
    }
    if (archive_read_has_encrypted_entries(a) > 0)
        out->warnings |= ATTACH_W_ENCRYPTED;
    archive_read_free(a);
}

void attach_analyze(attach_ctx *c, const uint8_t *p, size_t n, const char *filename,
                    const char *declared, attach_info *out)
{
    memset(out, 0, sizeof *out);
    out->size = n;
    uint8_t md[DIGEST_SHA256_LEN];
    digest_sha256(p, n, md);
    digest_hex(md, sizeof md, out->sha256);

    const char *mime = NULL;
    if (c && n > 0)
        mime = magic_buffer(c->magic, p, n < ATTACH_MAGIC_BYTES ? n : ATTACH_MAGIC_BYTES);
    if (n == 0)
        mime = "application/x-empty";
    snprintf(out->detected, sizeof out->detected, "%s", mime ? mime : "application/octet-stream");
    enum fam det = mime_family(out->detected);

    if (filename == NULL)
        filename = "";
    size_t len = strlen(filename);
    char ext[ATTACH_EXT_MAX + 1], inner[ATTACH_EXT_MAX + 1];
    long dot = ext_before(filename, len, ext);
    const struct ext_rule *rule = dot >= 0 ? ext_lookup(ext) : NULL;
    enum fam name_fam = rule ? rule->fam : F_NONE;
    if (rule)
        out->warnings |= rule->flags;
    if (families_disagree(name_fam, det) || declared_disagrees(declared, det))
        out->warnings |= ATTACH_W_MISMATCH;
    if (det == F_EXEC)
        out->warnings |= ATTACH_W_EXECUTABLE;
    if (dot > 0) {
        /* name.pdf.exe, or name.pdf<many spaces>.exe */
        long dot2 = ext_before(filename, (size_t)dot, inner);
        const struct ext_rule *r2 = dot2 >= 0 ? ext_lookup(inner) : NULL;
        size_t spaces = 0;
        for (long k = dot - 1; k >= 0 && filename[k] == ' '; k--)
            spaces++;
        if ((r2 && r2->fam != F_EXEC && rule && rule->fam == F_EXEC) || spaces >= 3)
            out->warnings |= ATTACH_W_DOUBLE_EXT;
    }
    if (has_bidi(filename))
        out->warnings |= ATTACH_W_BIDI;
    if (declared && strcasestr(declared, "macroenabled"))
        out->warnings |= ATTACH_W_MACRO;
    if (strcasestr(out->detected, "macroenabled"))
        out->warnings |= ATTACH_W_MACRO;

    if (det == F_ZIP || det == F_OOXML || det == F_ARCHIVE || name_fam == F_ZIP ||
        name_fam == F_ARCHIVE)
        scan_archive(p, n, out);
    if (det == F_OLE) {
        /* Stream names in a Compound File are UTF-16LE. */
        static const char vba[] = "_\0V\0B\0A\0_\0P\0R\0O\0J\0E\0C\0T\0";
        static const char macros[] = "M\0a\0c\0r\0o\0s\0";
        static const char encpkg[] = "E\0n\0c\0r\0y\0p\0t\0e\0d\0P\0a\0c\0k\0a\0g\0e\0";
        if (contains(p, n, vba, sizeof vba - 1) || contains(p, n, macros, sizeof macros - 1))
            out->warnings |= ATTACH_W_MACRO;
        if (contains(p, n, encpkg, sizeof encpkg - 1))
            out->warnings |= ATTACH_W_ENCRYPTED;
    }
}

/* Decodes one UTF-8 sequence at s (NUL-terminated); returns its length, or 0 if
 * invalid. */
static size_t utf8_next(const unsigned char *s, unsigned *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    unsigned min;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, *cp = s[0] & 0x1Fu, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, *cp = s[0] & 0x0Fu, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, *cp = s[0] & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3Fu);
    }
    if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
        return 0;
    return len;
}

int attach_display_name(const char *name, buf *out)
{
    const unsigned char *s = (const unsigned char *)name;
    while (*s) {
        unsigned cp;
        size_t len = utf8_next(s, &cp);
        if (len == 0) {
            buf_printf(out, "<%02X>", *s);
            s++;
            continue;
        }
        int hide = cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == 0x200E ||
                   cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
                   (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF;
        if (hide)
            buf_printf(out, "<U+%04X>", cp);
        else
            buf_append(out, s, len);
        s += len;
    }
    return out->err;
}

static const struct {
    unsigned bit;
    const char *ja, *en;
} warning_texts[] = {
    {ATTACH_W_EXECUTABLE, "実行ファイル（プログラム）を含みます", "contains a program"},
    {ATTACH_W_MISMATCH, "拡張子と実際の形式が一致しません", "extension does not match content"},
    {ATTACH_W_DOUBLE_EXT, "二重拡張子（偽装の疑い）", "double extension (disguise)"},
    {ATTACH_W_BIDI, "ファイル名に表示を偽装する制御文字があります",
     "file name contains direction-override characters"},
    {ATTACH_W_ENCRYPTED, "暗号化されています（パスワード付きZIP等）: 中身を検査できません",
     "encrypted (password ZIP): contents cannot be inspected"},
    {ATTACH_W_MACRO, "マクロを含むOffice文書です", "macro-enabled Office document"},
};

int attach_warning_text(unsigned warnings, int english, const char *sep, buf *out)
{
    int first = 1;
    for (size_t i = 0; i < sizeof warning_texts / sizeof warning_texts[0]; i++) {
        if (!(warnings & warning_texts[i].bit))
            continue;
        if (!first)
            buf_puts(out, sep);
        buf_puts(out, english ? warning_texts[i].en : warning_texts[i].ja);
        first = 0;
    }
    return out->err;
}
