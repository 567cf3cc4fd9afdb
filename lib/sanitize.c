/*
 * sanitize - internet mail to one safe text/plain message. See sanitize.h.
 *
 * Structure comes from GMime (the parser every Linux mail program trusts);
 * everything GMime would decode through glibc iconv (charsets, RFC 2047, RFC
 * 2231) is instead decoded by charset and mimehdr, because iconv loses
 * CP50221/CP932 characters without an error. GMime only hands over raw header
 * values and transfer-decoded bytes.
 *
 * The walk is an allow-list: text/plain and text/html bodies become text;
 * every other entity (attachments, inline images, calendars, signatures,
 * unknown types, text parts that carry a file name or are marked attachment)
 * is removed and listed. multipart/alternative renders one alternative (the
 * policy's preference); the others are not listed unless they hold a part
 * marked as an attachment. message/rfc822 is rendered under a header block.
 *
 * Limits, and what happens when one is hit:
 *   max_message_bytes, top-level max_header_bytes/max_headers   REJECT before parsing
 *   a pre-count of multipart/message declarations > max_parts  REJECT before parsing
 *     (this bounds GMime's recursion, which follows those declarations)
 *   depth > max_depth        subtree held, body says so
 *   parts > max_parts        the rest held, body says so
 *   decoded > max_decoded    further parts listed without type/hash
 *   text > max_text_bytes    text cut, body says so
 *   CPU time > time_limit_ms REJECT with SANITIZE_F_TIMEOUT (the gateway
 *                            defers such a mail: 4xx)
 */
#include "sanitize.h"
#include "b64.h"
#include "charset.h"
#include "config.h"
#include "htmltext.h"
#include "mimehdr.h"
#include "util/msg.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* A kept header value longer than this (decoded) is cut and flagged. */
#define KEPT_HEADER_MAX 4096
/* Hard ceiling on the pre-counted MIME nesting declarations, whatever the
 * policy says: GMime recurses once per declaration. */
#define NESTING_DECL_HARD_MAX 5000

struct sanitize_ctx {
    const policy *pol;
    attach_ctx *attach;
    /* Where base64 and quoted-printable parts are decoded, one part at a
     * time, kept for the next part and the next message: a fresh allocation
     * per part cost a page fault and a zeroed page per 4 KiB decoded, about
     * a twentieth of the worker's time on mail with large attachments. Its
     * size is bounded by the largest part decoded (limits.max_decoded_bytes). */
    uint8_t *scratch;
    size_t scratch_cap;
    int scratch_busy;
};

/* Per-message walk state. */
struct walk {
    sanitize_ctx *c;
    const policy_mail *mail;
    sanitize_result *res;
    buf *body; /* == &res->text, the rendered text so far */
    size_t parts_seen;
    size_t parts_held; /* past max_parts */
    size_t depth_held; /* subtrees past max_depth */
    uint64_t decoded;  /* bytes decoded so far */
    int64_t deadline;  /* monotonic microseconds */
    int timed_out;
    int oom;
    size_t parts_cap;
    const uint8_t *msg; /* the message GMime parsed in place */
    size_t msg_len;
};

static void add_charset(sanitize_result *res, const char *cs)
{
    if (cs == NULL || *cs == 0)
        return;
    /* comma-separated set, bounded */
    size_t cl = strlen(cs);
    const char *p = res->charsets;
    while ((p = strstr(p, cs)) != NULL) {
        if ((p == res->charsets || p[-1] == ',') && (p[cl] == 0 || p[cl] == ','))
            return;
        p += cl;
    }
    size_t len = strlen(res->charsets);
    if (len + cl + 2 >= sizeof res->charsets)
        return;
    if (len)
        res->charsets[len++] = ',';
    memcpy(res->charsets + len, cs, cl + 1);
}

sanitize_ctx *sanitize_new(const policy *pol)
{
    static int gmime_ready;
    if (!gmime_ready) {
        g_mime_init();
        gmime_ready = 1;
    }
    attach_ctx *a = attach_new();
    if (a == NULL)
        return NULL;
    sanitize_ctx *c = xcalloc(1, sizeof *c);
    c->pol = pol;
    c->attach = a;
    return c;
}

void sanitize_free(sanitize_ctx *c)
{
    if (c == NULL)
        return;
    attach_free(c->attach);
    free(c->scratch);
    free(c);
}

void sanitize_result_free(sanitize_result *res)
{
    if (res == NULL)
        return;
    free(res->from);
    free(res->to);
    free(res->subject);
    free(res->message_id);
    for (size_t i = 0; i < res->n_parts; i++) {
        free(res->parts[i].filename);
        free(res->parts[i].declared_type);
    }
    free(res->parts);
    buf_free(&res->headers);
    buf_free(&res->text);
    memset(res, 0, sizeof *res);
}

/* ---------------------------------------------------------------------------
 * Pre-parse checks on the raw bytes.
 */

static int ci_prefix(const uint8_t *p, const uint8_t *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - p) < n)
        return 0;
    return strncasecmp((const char *)p, lit, n) == 0;
}

/*
 * Counts, over the whole message, lines that declare a multipart or message
 * content type ("Content-Type:" possibly folded, then "multipart/" or
 * "message/"). GMime descends once per such declaration at most, so this
 * bounds its recursion. Linear; folded values are followed.
 */
static size_t count_nesting_decls(const uint8_t *p, size_t n)
{
    /* Every line that starts with "content-type" has its '-' at offset 7, and
     * base64 bodies (most of the bytes in attachment-heavy mail) have no '-'
     * at all: scanning for '-' visits the candidates only, where scanning
     * line by line paid one call per 78 bytes. */
    const uint8_t *end = p + n, *d = p;
    size_t count = 0;
    while (d < end && (d = memchr(d, '-', (size_t)(end - d))) != NULL) {
        size_t at = (size_t)(d - p);
        d++;
        if (at < 7)
            continue;
        const uint8_t *line = p + at - 7;
        if ((line > p && line[-1] != '\n') || !ci_prefix(line, end, "content-type"))
            continue;
        const uint8_t *q = line + 12;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        if (q < end && *q == ':') {
            q++;
            /* skip whitespace and folds */
            while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' ||
                               (*q == '\n' && q + 1 < end && (q[1] == ' ' || q[1] == '\t'))))
                q++;
            if (ci_prefix(q, end, "multipart/") || ci_prefix(q, end, "message/"))
                count++;
        }
    }
    return count;
}

/* Size and field count of the top-level header block. */
static void top_header_size(const uint8_t *p, size_t n, size_t *bytes, size_t *fields)
{
    const uint8_t *end = p + n, *line = p;
    *fields = 0;
    while (line < end) {
        const uint8_t *nl = memchr(line, '\n', (size_t)(end - line));
        const uint8_t *next = nl ? nl + 1 : end;
        size_t len = (size_t)(next - line);
        if (len == 1 || (len == 2 && line[0] == '\r')) /* empty line ends the block */
            break;
        if (line[0] != ' ' && line[0] != '\t')
            (*fields)++;
        line = next;
    }
    *bytes = (size_t)(line - p);
}

/* ---------------------------------------------------------------------------
 * Headers.
 */

/* Raw value of the first header called name in obj, or NULL. */
static const char *raw_header(GMimeObject *obj, const char *name)
{
    GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
    if (hl == NULL)
        return NULL;
    int count = g_mime_header_list_get_count(hl);
    for (int i = 0; i < count; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
        if (h && g_ascii_strcasecmp(g_mime_header_get_name(h), name) == 0) {
            const char *v = g_mime_header_get_raw_value(h);
            return v ? v : "";
        }
    }
    return NULL;
}

/* Decoded UTF-8 of an unstructured header (xstrdup'ed; "" when absent). */
static char *decoded_header(struct walk *w, GMimeObject *obj, const char *name)
{
    const char *raw = raw_header(obj, name);
    if (raw == NULL)
        return xstrdup("");
    buf b;
    buf_init(&b, KEPT_HEADER_MAX);
    mimehdr_decode_text(raw, strlen(raw), &b, &w->res->replaced);
    if (b.err == -ENOSPC)
        w->res->flags |= SANITIZE_F_HEADERS;
    /* trim surrounding whitespace */
    char *s = buf_steal(&b, NULL);
    size_t len = strlen(s), st = 0;
    while (st < len && (s[st] == ' ' || s[st] == '\t'))
        st++;
    while (len > st &&
           (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' || s[len - 1] == '\n'))
        len--;
    memmove(s, s + st, len - st);
    s[len - st] = 0;
    buf_free(&b);
    return s;
}

/*
 * Keeps a structured ASCII header (Date, Message-ID, In-Reply-To, References):
 * unfolded, refolded at spaces, only printable ASCII. Anything else is dropped
 * and flagged (those headers are ASCII by definition).
 */
static void keep_ascii_header(struct walk *w, GMimeObject *obj, const char *name)
{
    const char *raw = raw_header(obj, name);
    if (raw == NULL)
        return;
    buf v;
    buf_init(&v, KEPT_HEADER_MAX);
    int bad = 0;
    for (const unsigned char *s = (const unsigned char *)raw; *s; s++) {
        if (*s == '\r' || *s == '\n' || *s == '\t')
            continue;
        if (*s < 0x20 || *s > 0x7E) {
            bad = 1;
            break;
        }
        if (*s == ' ' && (v.len == 0 || v.p[v.len - 1] == ' '))
            continue;
        buf_putc(&v, *s);
    }
    while (v.len && v.p[v.len - 1] == ' ')
        buf_truncate(&v, v.len - 1);
    if (bad || v.err || v.len == 0) {
        if (bad || v.err)
            w->res->flags |= SANITIZE_F_HEADERS;
        buf_free(&v);
        return;
    }
    /* fold at spaces so no line passes 78 characters where possible */
    buf *h = &w->res->headers;
    buf_printf(h, "%s:", name);
    size_t col = strlen(name) + 1;
    const char *s = buf_cstr(&v);
    while (*s) {
        const char *sp = strchr(s, ' ');
        size_t wl = sp ? (size_t)(sp - s) : strlen(s);
        if (col + 1 + wl > 78 && col > strlen(name) + 1) {
            buf_puts(h, "\r\n");
            col = 0;
        }
        buf_putc(h, ' ');
        buf_append(h, s, wl);
        col += 1 + wl;
        s += wl;
        while (*s == ' ')
            s++;
    }
    buf_puts(h, "\r\n");
    buf_free(&v);
}

static void keep_address_header(struct walk *w, GMimeObject *obj, const char *name)
{
    const char *raw = raw_header(obj, name);
    if (raw == NULL)
        return;
    /* -ENOSPC here is reported through headers.err after the walk */
    mimehdr_encode_addresses(name, raw, strlen(raw), &w->res->headers, &w->res->replaced);
}

/* Domain of the first mailbox in an address header, lower-case, or "". */
static void first_domain(const char *raw, char *out, size_t outsz)
{
    out[0] = 0;
    if (raw == NULL)
        return;
    InternetAddressList *list = internet_address_list_parse(NULL, raw);
    if (list == NULL)
        return;
    if (internet_address_list_length(list) > 0) {
        InternetAddress *ia = internet_address_list_get_address(list, 0);
        if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
            const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
            const char *at = addr ? strrchr(addr, '@') : NULL;
            if (at) {
                snprintf(out, outsz, "%s", at + 1);
                for (char *s = out; *s; s++)
                    *s = g_ascii_tolower(*s);
            }
        }
    }
    g_object_unref(list);
}

/* ---------------------------------------------------------------------------
 * Text.
 */

/* CPU time of this process, microseconds: the time limit counts the work
 * done, so that a loaded machine (the gateway under load) does not turn a
 * slow wall clock into a verdict. */
static int64_t cpu_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return g_get_monotonic_time();
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int past_deadline(struct walk *w)
{
    if (!w->timed_out && cpu_now() > w->deadline)
        w->timed_out = 1;
    return w->timed_out;
}

/*
 * Appends UTF-8 text to the body with LF line ends, without C0/C1 controls
 * other than TAB and LF (escape sequences would drive a terminal mail
 * reader), and without NULs.
 */
static void append_clean_text(struct walk *w, const char *s, size_t n)
{
    buf *b = w->body;
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n) {
            unsigned char ch = (unsigned char)s[run];
            if (ch < 0x20 && ch != '\t' && ch != '\n')
                break;
            if (ch == 0x7F)
                break;
            /* C1 controls: U+0080..U+009F are C2 80..C2 9F in UTF-8 */
            if (ch == 0xC2 && run + 1 < n && (unsigned char)s[run + 1] >= 0x80 &&
                (unsigned char)s[run + 1] <= 0x9F)
                break;
            run++;
        }
        if (buf_append(b, s + i, run - i) == -ENOSPC)
            return;
        i = run;
        if (i >= n)
            break;
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r') {
            if (i + 1 < n && s[i + 1] == '\n') {
                i++;
                continue; /* CRLF: the LF follows */
            }
            buf_putc(b, '\n'); /* lone CR */
            i++;
        } else if (ch == 0xC2) {
            i += 2;
        } else {
            i++;
        }
    }
}

static void ensure_blank_line(buf *b)
{
    if (b->len == 0)
        return;
    if (b->p[b->len - 1] != '\n')
        buf_putc(b, '\n');
    if (b->len < 2 || b->p[b->len - 2] != '\n')
        buf_putc(b, '\n');
}

/* A part's content after its transfer encoding is undone: a view into the
 * message itself (7bit, 8bit, binary: nothing to undo), into the context's
 * scratch buffer (base64, quoted-printable), or owned bytes (the rest). */
typedef struct content {
    const uint8_t *p;
    size_t n;
    uint8_t *owned;
    sanitize_ctx *scratch_of; /* set while p points into its scratch */
} content;

static void content_free(content *c)
{
    free(c->owned);
    if (c->scratch_of != NULL)
        c->scratch_of->scratch_busy = 0;
    memset(c, 0, sizeof *c);
}

/* The scratch buffer, at least n bytes, for one content at a time. Its old
 * bytes are not kept. NULL when another content still uses it. */
static uint8_t *scratch_take(sanitize_ctx *c, size_t n, content *out)
{
    if (c->scratch_busy)
        return NULL;
    if (c->scratch_cap < n) {
        free(c->scratch);
        c->scratch = NULL;
        c->scratch_cap = 0;
        size_t cap = n < 65536 ? 65536 : n;
        c->scratch = xmalloc(cap);
        c->scratch_cap = cap;
    }
    c->scratch_busy = 1;
    out->scratch_of = c;
    return c->scratch;
}

/* The encoded bytes of a part, in place in the message: GMime parsed the
 * message from our buffer with a persistent stream, so a leaf's content is a
 * bounded view of that same buffer. NULL where that does not hold. */
static const uint8_t *encoded_in_place(struct walk *w, GMimeStream *src, size_t *n)
{
    if (src == NULL || !GMIME_IS_STREAM_MEM(src))
        return NULL;
    GByteArray *ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(src));
    gint64 len = g_mime_stream_length(src);
    if (ba == NULL || ba->data != w->msg || src->bound_start < 0 || len < 0 ||
        (uint64_t)src->bound_start > w->msg_len ||
        (uint64_t)len > w->msg_len - (uint64_t)src->bound_start)
        return NULL;
    *n = (size_t)len;
    return w->msg + src->bound_start;
}

/* Decodes a part's content (transfer encoding) within the budget. Returns 0,
 * or -EFBIG when the budget does not allow it (out is then empty). */
static int decode_content(struct walk *w, GMimePart *part, content *out)
{
    memset(out, 0, sizeof *out);
    GMimeDataWrapper *dw = g_mime_part_get_content(part);
    if (dw == NULL)
        return 0;
    GMimeStream *src = g_mime_data_wrapper_get_stream(dw);
    gint64 enc_len = src ? g_mime_stream_length(src) : 0;
    uint64_t budget = w->mail->limits.max_decoded_bytes > w->decoded
                          ? w->mail->limits.max_decoded_bytes - w->decoded
                          : 0;
    /* base64, quoted-printable and uuencode never decode to more bytes than
     * they have; other encodings are passed through. */
    if (enc_len < 0 || (uint64_t)enc_len > budget)
        return -EFBIG;
    GMimeContentEncoding enc = g_mime_data_wrapper_get_encoding(dw);
    size_t n = 0;
    const uint8_t *in = encoded_in_place(w, src, &n);
    if (in != NULL && enc != GMIME_CONTENT_ENCODING_UUENCODE) {
        if (enc == GMIME_CONTENT_ENCODING_BASE64) {
            /* lib/b64: byte-identical to GMime's decoder (differentially
             * fuzzed), several times faster */
            size_t cap = b64_decoded_max(n) + 1;
            uint8_t *dst = scratch_take(w->c, cap, out);
            if (dst == NULL)
                dst = out->owned = xmalloc(cap);
            out->n = b64_decode_mime(in, n, dst);
            out->p = dst;
        } else if (enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE) {
            /* What GMime's decoding filter would do, in one step and straight
             * into the buffer the analysis reads. */
            GMimeEncoding st;
            g_mime_encoding_init_decode(&st, enc);
            size_t cap = g_mime_encoding_outlen(&st, n) + 16;
            uint8_t *dst = scratch_take(w->c, cap, out);
            if (dst == NULL)
                dst = out->owned = xmalloc(cap);
            size_t k = g_mime_encoding_step(&st, (const char *)in, n, (char *)dst);
            k += g_mime_encoding_flush(&st, "", 0, (char *)dst + k);
            out->p = dst;
            out->n = k;
        } else {
            out->p = in;
            out->n = n;
        }
        w->decoded += out->n;
        return 0;
    }
    GMimeStream *mem = g_mime_stream_mem_new();
    g_mime_data_wrapper_write_to_stream(dw, mem);
    GByteArray *ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
    out->owned = xmalloc(ba->len + 1);
    memcpy(out->owned, ba->data, ba->len);
    out->p = out->owned;
    out->n = ba->len;
    w->decoded += ba->len;
    g_object_unref(mem);
    return 0;
}

static char *param_of(GMimeObject *obj, const char *header, const char *name, size_t *replaced)
{
    const char *raw = raw_header(obj, header);
    if (raw == NULL)
        return NULL;
    buf b;
    buf_init(&b, 4096);
    if (mimehdr_param(raw, strlen(raw), name, &b, replaced) != 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

static void render_text_part(struct walk *w, GMimePart *part, int html)
{
    GMimeObject *obj = GMIME_OBJECT(part);
    content raw;
    int rc = decode_content(w, part, &raw);
    if (rc == -EFBIG) {
        w->res->flags |= SANITIZE_F_DECODED;
        return;
    }
    char *label = param_of(obj, "Content-Type", "charset", &w->res->replaced);
    buf utf8;
    buf_init(&utf8, w->mail->limits.max_text_bytes);
    charset_info ci;
    memset(&ci, 0, sizeof ci);
    rc = charset_to_utf8(raw.p ? raw.p : (const uint8_t *)"", raw.n, label, &utf8, &ci);
    if (rc == -ENOSPC)
        w->res->flags |= SANITIZE_F_TEXT;
    w->res->replaced += ci.replaced;
    add_charset(w->res, ci.used);
    free(label);
    content_free(&raw);

    if (w->res->text_parts > 0)
        ensure_blank_line(w->body);
    w->res->text_parts++;
    buf txt;
    buf_init(&txt, w->mail->limits.max_text_bytes);
    if (html) {
        w->res->html_parts++;
        htmltext_opts o = {.defang = w->mail->defang_links, .english = w->mail->english};
        if (htmltext_render(buf_cstr(&utf8), utf8.len, &o, &txt, NULL) == -ENOSPC)
            w->res->flags |= SANITIZE_F_TEXT;
    } else {
        buf_append(&txt, utf8.p ? utf8.p : (const uint8_t *)"", utf8.len);
    }
    buf_free(&utf8);
    /* Clients make links of bare addresses in text by themselves. */
    if (w->mail->defang_links) {
        buf safe;
        buf_init(&safe, w->mail->limits.max_text_bytes);
        if (htmltext_defang_text(buf_cstr(&txt), txt.len, &safe) == -ENOSPC)
            w->res->flags |= SANITIZE_F_TEXT;
        buf_free(&txt);
        txt = safe;
    }
    append_clean_text(w, buf_cstr(&txt), txt.len);
    buf_free(&txt);
    if (w->body->err == -ENOSPC)
        w->res->flags |= SANITIZE_F_TEXT;
}

/* ---------------------------------------------------------------------------
 * Removed parts.
 */

static sanitize_part *new_part(struct walk *w)
{
    sanitize_result *res = w->res;
    if (res->n_parts == w->parts_cap) {
        size_t ncap = w->parts_cap ? 2 * w->parts_cap : 8;
        sanitize_part *np = realloc(res->parts, ncap * sizeof *np);
        if (np == NULL) {
            w->oom = 1;
            return NULL;
        }
        res->parts = np;
        w->parts_cap = ncap;
    }
    sanitize_part *sp = &res->parts[res->n_parts++];
    memset(sp, 0, sizeof *sp);
    return sp;
}

static char *media_type_of(GMimeObject *obj)
{
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    if (ct == NULL)
        return xstrdup("application/octet-stream");
    char *mt = g_mime_content_type_get_mime_type(ct);
    char *s = xstrdup(mt ? mt : "application/octet-stream");
    g_free(mt);
    for (char *q = s; *q; q++)
        *q = g_ascii_tolower(*q);
    return s;
}

static char *filename_of(struct walk *w, GMimeObject *obj)
{
    char *fn = param_of(obj, "Content-Disposition", "filename", &w->res->replaced);
    if (fn == NULL || *fn == 0) {
        free(fn);
        fn = param_of(obj, "Content-Type", "name", &w->res->replaced);
    }
    return fn;
}

static void hold_part(struct walk *w, GMimeObject *obj, int forwarded)
{
    sanitize_part *sp = new_part(w);
    if (sp == NULL)
        return;
    sp->forwarded = forwarded;
    sp->declared_type = media_type_of(obj);
    char *fn = filename_of(w, obj);
    sp->filename = fn ? fn : xstrdup("");
    if (!GMIME_IS_PART(obj)) {
        /* a message/partial or external body, or an unparsed message */
        snprintf(sp->info.detected, sizeof sp->info.detected, "%s", "(not analysed)");
        return;
    }
    content data;
    if (decode_content(w, GMIME_PART(obj), &data) == -EFBIG) {
        w->res->flags |= SANITIZE_F_DECODED;
        snprintf(sp->info.detected, sizeof sp->info.detected, "%s", "(not analysed)");
    } else {
        attach_analyze(w->c->attach, data.p ? data.p : (const uint8_t *)"", data.n, sp->filename,
                       sp->declared_type, &sp->info);
        sp->analysed = 1;
    }
    content_free(&data);
}

/* ---------------------------------------------------------------------------
 * The walk.
 */

static void walk_object(struct walk *w, GMimeObject *obj, size_t depth, int forwarded);

static int is_text_body(GMimeObject *obj, int *html)
{
    if (!GMIME_IS_PART(obj))
        return 0;
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    if (ct == NULL || !g_mime_content_type_is_type(ct, "text", "*"))
        return 0;
    const char *sub = g_mime_content_type_get_media_subtype(ct);
    if (sub == NULL)
        return 0;
    int is_plain = g_ascii_strcasecmp(sub, "plain") == 0;
    int is_html = g_ascii_strcasecmp(sub, "html") == 0;
    if (!is_plain && !is_html)
        return 0;
    GMimeContentDisposition *cd = g_mime_object_get_content_disposition(obj);
    if (cd && g_mime_content_disposition_is_attachment(cd))
        return 0;
    /* A text part with a file name is a file the sender attached. */
    const char *raw_cd = raw_header(obj, "Content-Disposition");
    const char *raw_ct = raw_header(obj, "Content-Type");
    buf tmp;
    buf_init(&tmp, 1024);
    int named = (raw_cd && mimehdr_param(raw_cd, strlen(raw_cd), "filename", &tmp, NULL) == 0) ||
                (raw_ct && mimehdr_param(raw_ct, strlen(raw_ct), "name", &tmp, NULL) == 0);
    buf_free(&tmp);
    if (named)
        return 0;
    *html = is_html;
    return 1;
}

/* Rank of an alternative: higher is preferred. */
static int alternative_rank(GMimeObject *obj, int prefer_html)
{
    int html = 0;
    if (is_text_body(obj, &html))
        return html == prefer_html ? 3 : 2;
    if (GMIME_IS_MULTIPART(obj)) {
        /* multipart/related around an HTML body, or a nested alternative */
        GMimeMultipart *mp = GMIME_MULTIPART(obj);
        int n = g_mime_multipart_get_count(mp);
        for (int i = 0; i < n; i++) {
            int h = 0;
            if (is_text_body(g_mime_multipart_get_part(mp, i), &h))
                return h == prefer_html ? 3 : 2;
        }
        return 1;
    }
    return 0;
}

/* Lists, without rendering, the parts of an unchosen alternative that are
 * marked as attachments (so nothing attached is hidden from the recipient). */
static void list_marked_attachments(struct walk *w, GMimeObject *obj, size_t depth, int fwd)
{
    if (depth > w->mail->limits.max_depth)
        return;
    if (GMIME_IS_MULTIPART(obj)) {
        GMimeMultipart *mp = GMIME_MULTIPART(obj);
        int n = g_mime_multipart_get_count(mp);
        for (int i = 0; i < n; i++)
            list_marked_attachments(w, g_mime_multipart_get_part(mp, i), depth + 1, fwd);
        return;
    }
    GMimeContentDisposition *cd = g_mime_object_get_content_disposition(obj);
    if (cd && g_mime_content_disposition_is_attachment(cd))
        walk_object(w, obj, depth, fwd);
}

static void render_forward_header(struct walk *w, GMimeMessage *m)
{
    GMimeObject *obj = GMIME_OBJECT(m);
    buf *b = w->body;
    ensure_blank_line(b);
    buf_puts(b, w->mail->english ? "---------- Forwarded message ----------\n"
                                 : "---------- 転送されたメッセージ ----------\n");
    static const char *const names[] = {"From", "Date", "Subject", "To", "Cc"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (raw_header(obj, names[i]) == NULL)
            continue;
        char *v = decoded_header(w, obj, names[i]);
        buf_printf(b, "%s: ", names[i]);
        append_clean_text(w, v, strlen(v));
        buf_putc(b, '\n');
        free(v);
    }
    buf_putc(b, '\n');
}

static void walk_object(struct walk *w, GMimeObject *obj, size_t depth, int forwarded)
{
    if (w->oom || past_deadline(w))
        return;
    if (depth > w->mail->limits.max_depth) {
        w->depth_held++;
        w->res->flags |= SANITIZE_F_DEPTH;
        return;
    }
    if (w->parts_seen >= w->mail->limits.max_parts) {
        w->parts_held++;
        w->res->flags |= SANITIZE_F_PARTS;
        return;
    }
    w->parts_seen++;

    if (GMIME_IS_MULTIPART(obj)) {
        GMimeMultipart *mp = GMIME_MULTIPART(obj);
        int n = g_mime_multipart_get_count(mp);
        GMimeContentType *ct = g_mime_object_get_content_type(obj);
        if (ct && g_mime_content_type_is_type(ct, "multipart", "alternative") && n > 0) {
            int best = -1, best_rank = -1;
            for (int i = 0; i < n; i++) {
                int r = alternative_rank(g_mime_multipart_get_part(mp, i), w->mail->prefer_html);
                /* later alternatives are the richer ones (RFC 2046 5.1.4): ties go last */
                if (r > 0 && r >= best_rank) {
                    best_rank = r;
                    best = i;
                }
            }
            if (best < 0)
                best = n - 1;
            for (int i = 0; i < n; i++) {
                GMimeObject *child = g_mime_multipart_get_part(mp, i);
                if (i == best)
                    walk_object(w, child, depth + 1, forwarded);
                else
                    list_marked_attachments(w, child, depth + 1, forwarded);
            }
            return;
        }
        for (int i = 0; i < n; i++)
            walk_object(w, g_mime_multipart_get_part(mp, i), depth + 1, forwarded);
        return;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        if (m == NULL || g_mime_message_get_mime_part(m) == NULL) {
            hold_part(w, obj, forwarded);
            return;
        }
        render_forward_header(w, m);
        walk_object(w, g_mime_message_get_mime_part(m), depth + 1, 1);
        return;
    }
    int html = 0;
    if (is_text_body(obj, &html)) {
        render_text_part(w, GMIME_PART(obj), html);
        return;
    }
    hold_part(w, obj, forwarded);
}

/* ---------------------------------------------------------------------------
 * The notice at the top of the body, and the summary.
 */

static void format_size(buf *b, uint64_t n, int english)
{
    /* 1,234,567 */
    char digits[32];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)n);
    size_t len = strlen(digits);
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buf_putc(b, ',');
        buf_putc(b, digits[i]);
    }
    buf_puts(b, english ? " bytes" : " バイト");
}

static void compose_notice(struct walk *w, buf *out)
{
    sanitize_result *res = w->res;
    int en = w->mail->english;
    const char *rule = "━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━\n";
    buf_puts(out, rule);
    if (en)
        buf_puts(out, "[sekisho] This mail came from the internet and was converted to text "
                      "(mail sanitization).\nThe original is held (quarantine id: ");
    else
        buf_puts(out, "【メール無害化】インターネットから届いたメールのため、本文をテキストに"
                      "変換しました。\n原本は保管されています（保管ID: ");
    if (res->n_qid < sizeof res->qid_at / sizeof res->qid_at[0])
        res->qid_at[res->n_qid++] = out->len;
    buf_puts(out, en ? ").\n" : "）。\n");
    if (res->flags & SANITIZE_F_SPOOFED)
        buf_puts(out, en ? "⚠ The sender claims an address of our own organization, but this mail "
                           "came from the internet. It may be forged.\n"
                         : "⚠ 差出人は組織内のアドレスを名乗っていますが、インターネットから届いた"
                           "メールです。なりすましの可能性があります。\n");
    if (res->html_parts)
        buf_puts(out, en ? "The HTML body was converted to text; links are shown with their real "
                           "destination, made unclickable.\n"
                         : "HTML形式の本文はテキストに変換し、リンクは実際のリンク先をクリック"
                           "できない形で表示しています。\n");
    if (res->n_parts) {
        buf_printf(out,
                   en ? "\nRemoved attachments and other parts (%zu):\n"
                      : "\n削除した添付ファイル等（%zu件）:\n",
                   res->n_parts);
        for (size_t i = 0; i < res->n_parts; i++) {
            sanitize_part *sp = &res->parts[i];
            buf_printf(out, "  %zu. ", i + 1);
            if (sp->filename[0])
                attach_display_name(sp->filename, out);
            else
                buf_puts(out, en ? "(no name)" : "（名前なし）");
            if (sp->forwarded)
                buf_puts(out, en ? " (in the forwarded message)" : "（転送メッセージ内）");
            buf_puts(out, "\n     ");
            if (sp->analysed) {
                format_size(out, sp->info.size, en);
                buf_printf(out, en ? ", declared %s, detected %s\n" : "、宣言: %s、判定: %s\n",
                           sp->declared_type, sp->info.detected);
                buf_printf(out, "     SHA-256: %s\n", sp->info.sha256);
            } else {
                buf_printf(out,
                           en ? "declared %s (not analysed: size limit)\n"
                              : "宣言: %s（上限を超えたため未解析）\n",
                           sp->declared_type);
            }
            unsigned warn = sp->info.warnings & ~(unsigned)ATTACH_W_ARCHIVE;
            if (warn) {
                buf_puts(out, "     ⚠ ");
                attach_warning_text(warn, en, en ? "; " : "／", out);
                buf_putc(out, '\n');
            }
        }
    }
    if (res->flags & SANITIZE_F_DEPTH) {
        unsigned long long lim = (unsigned long long)w->mail->limits.max_depth;
        if (en)
            buf_printf(out,
                       "⚠ %zu part(s) nested deeper than %llu levels were not shown "
                       "(held in the original).\n",
                       w->depth_held, lim);
        else
            buf_printf(out,
                       "⚠ 入れ子が %llu 段より深い部分 %zu 件は表示していません"
                       "（原本に保管）。\n",
                       lim, w->depth_held);
    }
    if (res->flags & SANITIZE_F_PARTS)
        buf_printf(out,
                   en ? "⚠ The mail has more than %llu parts; the remaining %zu were not "
                        "processed (held in the original).\n"
                      : "⚠ パートが %llu 個を超えたため、残り %zu 個は処理していません"
                        "（原本に保管）。\n",
                   (unsigned long long)w->mail->limits.max_parts, w->parts_held);
    if (res->flags & SANITIZE_F_TEXT)
        buf_puts(out, en ? "⚠ The text was too long and has been cut (the original is held).\n"
                         : "⚠ 本文が長すぎるため途中までを表示しています（原本に保管）。\n");
    if (res->replaced)
        buf_printf(out,
                   en ? "⚠ %zu character(s) could not be decoded and are shown as \xEF\xBF\xBD.\n"
                      : "⚠ 文字コードを解釈できない文字が %zu 文字あり、\xEF\xBF\xBD "
                        "で表示しています。\n",
                   res->replaced);
    if (res->n_parts)
        buf_puts(out, en ? "To receive an attachment, ask your information security "
                           "administrator, quoting the quarantine id.\n"
                         : "添付ファイルが必要な場合は、保管IDを添えて情報セキュリティ管理者に"
                           "依頼してください。\n");
    buf_puts(out, rule);
    buf_putc(out, '\n');
}

/* ---------------------------------------------------------------------------
 * Entry points.
 */

static void reject(sanitize_result *res, const char *why)
{
    res->verdict = SANITIZE_REJECT;
    snprintf(res->reason, sizeof res->reason, "%s", why);
}

/*
 * GMime reads the caller's buffer in place through a GByteArray that borrows
 * it: the stream is read-only here, so the array is never grown or freed by
 * GMime (owner = FALSE), and the borrowed pointer is taken back before the
 * array is released. This saves a copy of the whole message.
 */
static GMimeMessage *parse(const uint8_t *p, size_t n, GByteArray **borrowed)
{
    GByteArray *ga = g_byte_array_new();
    ga->data = (guint8 *)p;
    ga->len = (guint)n;
    GMimeStream *stream = g_mime_stream_mem_new_with_byte_array(ga);
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), FALSE);
    GMimeParser *parser = g_mime_parser_new_with_stream(stream);
    g_mime_parser_set_persist_stream(parser, TRUE);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    GMimeMessage *m = g_mime_parser_construct_message(parser, NULL);
    g_object_unref(parser);
    g_object_unref(stream);
    *borrowed = ga;
    return m;
}

static void release_borrowed(GByteArray *ga)
{
    ga->data = NULL;
    ga->len = 0;
    g_byte_array_unref(ga);
}

int sanitize_message(sanitize_ctx *c, const uint8_t *p, size_t n, sanitize_result *res)
{
    memset(res, 0, sizeof *res);
    const policy_mail *mail = &c->pol->mail;
    buf_init(&res->headers, 1 << 20);
    buf_init(&res->text, mail->limits.max_text_bytes);
    res->from = xstrdup("");
    res->to = xstrdup("");
    res->subject = xstrdup("");
    res->message_id = xstrdup("");

    if (n > mail->limits.max_message_bytes) {
        reject(res, "message larger than max_message_size");
        return 0;
    }
    if (n > G_MAXUINT) {
        reject(res, "message too large for the MIME parser");
        return 0;
    }
    size_t hbytes, hfields;
    top_header_size(p, n, &hbytes, &hfields);
    if (hbytes > mail->limits.max_header_bytes) {
        reject(res, "header section larger than max_header_size");
        return 0;
    }
    if (hfields > mail->limits.max_headers) {
        reject(res, "more header fields than max_headers");
        return 0;
    }
    size_t decls = count_nesting_decls(p, n);
    if (decls > mail->limits.max_parts || decls > NESTING_DECL_HARD_MAX) {
        reject(res, "more multipart/message declarations than max_parts");
        return 0;
    }

    GByteArray *borrowed;
    GMimeMessage *m = parse(p, n, &borrowed);
    if (m == NULL) {
        release_borrowed(borrowed);
        reject(res, "not a parseable message");
        return 0;
    }
    GMimeObject *top = GMIME_OBJECT(m);
    struct walk w = {
        .c = c,
        .mail = mail,
        .res = res,
        .body = &res->text,
        .deadline = cpu_now() + (int64_t)mail->limits.time_limit_ms * 1000,
        .msg = p,
        .msg_len = n,
    };

    /* Decoded values for the index. */
    free(res->from);
    free(res->to);
    free(res->subject);
    free(res->message_id);
    res->from = decoded_header(&w, top, "From");
    res->to = decoded_header(&w, top, "To");
    res->subject = decoded_header(&w, top, "Subject");
    res->message_id = decoded_header(&w, top, "Message-ID");

    char domain[256];
    first_domain(raw_header(top, "From"), domain, sizeof domain);
    if (domain[0] && policy_domain_is_internal(c->pol, domain))
        res->flags |= SANITIZE_F_SPOOFED;

    /* Kept headers, in a fixed order. */
    keep_address_header(&w, top, "From");
    keep_address_header(&w, top, "To");
    keep_address_header(&w, top, "Cc");
    keep_ascii_header(&w, top, "Date");
    {
        const char *tag = mail->subject_tag ? mail->subject_tag : "";
        buf subj;
        buf_init(&subj, KEPT_HEADER_MAX + 256);
        if (*tag && strstr(res->subject, tag) == NULL)
            buf_printf(&subj, "%s ", tag);
        /* no controls in the subject either */
        for (const unsigned char *s = (const unsigned char *)res->subject; *s; s++)
            buf_putc(&subj, *s < 0x20 || *s == 0x7F ? ' ' : *s);
        mimehdr_encode_text("Subject", buf_cstr(&subj), &res->headers);
        buf_free(&subj);
    }
    keep_ascii_header(&w, top, "Message-ID");
    keep_ascii_header(&w, top, "In-Reply-To");
    keep_ascii_header(&w, top, "References");

    GMimeObject *body = g_mime_message_get_mime_part(m);
    if (body)
        walk_object(&w, body, 1, 0);

    g_object_unref(m);
    release_borrowed(borrowed);

    if (w.oom || res->headers.err == -ENOMEM || res->text.err == -ENOMEM)
        return -ENOMEM;
    if (w.timed_out) {
        reject(res, "time limit exceeded");
        res->flags |= SANITIZE_F_TIMEOUT;
        return 0;
    }
    if (res->headers.err) {
        reject(res, "kept headers too large");
        return 0;
    }
    /* Assemble notice + body: the body so far is in res->text. */
    buf final;
    buf_init(&final, mail->limits.max_text_bytes + (1 << 20) + res->n_parts * 1024);
    compose_notice(&w, &final);
    buf_append(&final, res->text.p ? res->text.p : (const uint8_t *)"", res->text.len);
    if (final.err) {
        buf_free(&final);
        return -ENOMEM;
    }
    /* drop trailing blank lines, end with one LF */
    while (final.len && (final.p[final.len - 1] == '\n' || final.p[final.len - 1] == ' '))
        buf_truncate(&final, final.len - 1);
    buf_putc(&final, '\n');
    buf_free(&res->text);
    res->text = final;
    res->verdict = SANITIZE_OK;
    return 0;
}

static int needs_base64(const uint8_t *p, size_t n)
{
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x80)
            return 1;
        col = p[i] == '\n' ? 0 : col + 1;
        if (col > 900)
            return 1;
    }
    return 0;
}

int sanitize_finish(const sanitize_result *res, const char *qid, buf *out)
{
    if (res->verdict != SANITIZE_OK)
        return -EINVAL;
    /* Body: LF -> CRLF, id inserted. */
    buf body;
    buf_init(&body, BUF_UNLIMITED);
    size_t pos = 0;
    buf_reserve(&body, res->text.len + res->text.len / 16 + 64);
    for (size_t k = 0; k <= res->n_qid; k++) {
        size_t end = k < res->n_qid ? res->qid_at[k] : res->text.len;
        while (pos < end) {
            const uint8_t *nl = memchr(res->text.p + pos, '\n', end - pos);
            size_t run = nl ? (size_t)(nl - (res->text.p + pos)) : end - pos;
            buf_append(&body, res->text.p + pos, run);
            pos += run;
            if (nl) {
                buf_append(&body, "\r\n", 2);
                pos++;
            }
        }
        if (k < res->n_qid)
            buf_puts(&body, qid);
    }
    buf_printf(out, "X-Sekisho-Quarantine-Id: %s\r\n", qid);
    buf_append(out, res->headers.p ? res->headers.p : (const uint8_t *)"", res->headers.len);
    buf_puts(out, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n");
    int b64 = needs_base64(body.p ? body.p : (const uint8_t *)"", body.len);
    buf_printf(out, "Content-Transfer-Encoding: %s\r\n", b64 ? "base64" : "7bit");
    buf_printf(out,
               "X-Sekisho-Sanitized: sekisho %s; text-parts=%zu; html-converted=%zu; "
               "removed-parts=%zu;\r\n\tcharsets=%s; replaced-chars=%zu; flags=0x%x\r\n",
               SEKISHO_VERSION, res->text_parts, res->html_parts, res->n_parts,
               res->charsets[0] ? res->charsets : "none", res->replaced, res->flags);
    buf_puts(out, "\r\n");
    if (b64) {
        b64_encode_lines(body.p, body.len, out);
    } else {
        buf_append(out, body.p ? body.p : (const uint8_t *)"", body.len);
    }
    int rc = body.err ? body.err : out->err;
    buf_free(&body);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Packing a result for the trip out of the sandbox.
 *
 * Format (all integers little-endian): "SKR1", u32 verdict, u32 flags,
 * u64 text_parts, html_parts, replaced, u32 n_qid, 4 x u64 qid_at, strings
 * (u32 length + bytes) reason, from, to, subject, message_id, charsets,
 * headers, text; u32 n_parts; per part: strings filename, declared_type,
 * detected, sha256; u64 size; u32 warnings, archive_entries; u8 forwarded,
 * analysed. The reader keeps a sticky error and checks the remaining length
 * before every read (OpenSMTPD's imsg getters).
 */

#define PACK_MAGIC     "SKR1"
#define PACK_MAX_PARTS 100000u

static void put_u32(buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    buf_append(b, x, 4);
}

static void put_u64(buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(buf *b, const void *p, size_t n)
{
    if (n > UINT32_MAX) {
        b->err = -EOVERFLOW;
        return;
    }
    put_u32(b, (uint32_t)n);
    buf_append(b, p ? p : "", n);
}

static void put_cstr(buf *b, const char *s)
{
    put_str(b, s ? s : "", s ? strlen(s) : 0);
}

int sanitize_result_pack(const sanitize_result *res, buf *out)
{
    buf_append(out, PACK_MAGIC, 4);
    put_u32(out, (uint32_t)res->verdict);
    put_u32(out, res->flags);
    put_u64(out, res->text_parts);
    put_u64(out, res->html_parts);
    put_u64(out, res->replaced);
    put_u32(out, (uint32_t)res->n_qid);
    for (size_t i = 0; i < 4; i++)
        put_u64(out, i < res->n_qid ? res->qid_at[i] : 0);
    put_cstr(out, res->reason);
    put_cstr(out, res->from);
    put_cstr(out, res->to);
    put_cstr(out, res->subject);
    put_cstr(out, res->message_id);
    put_cstr(out, res->charsets);
    put_str(out, res->headers.p, res->headers.len);
    put_str(out, res->text.p, res->text.len);
    put_u32(out, (uint32_t)res->n_parts);
    for (size_t i = 0; i < res->n_parts; i++) {
        const sanitize_part *sp = &res->parts[i];
        put_cstr(out, sp->filename);
        put_cstr(out, sp->declared_type);
        put_cstr(out, sp->info.detected);
        put_cstr(out, sp->info.sha256);
        put_u64(out, sp->info.size);
        put_u32(out, sp->info.warnings);
        put_u32(out, sp->info.archive_entries);
        uint8_t flags[2] = {(uint8_t)(sp->forwarded != 0), (uint8_t)(sp->analysed != 0)};
        buf_append(out, flags, 2);
    }
    return out->err;
}

struct reader {
    const uint8_t *p;
    size_t n;
    int err;
};

static const uint8_t *rd_take(struct reader *r, size_t k)
{
    if (r->err || k > r->n) {
        r->err = -EBADMSG;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += k;
    r->n -= k;
    return at;
}

static uint32_t rd_u32(struct reader *r)
{
    const uint8_t *x = rd_take(r, 4);
    if (x == NULL)
        return 0;
    return (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
}

static uint64_t rd_u64(struct reader *r)
{
    uint64_t lo = rd_u32(r);
    return lo | (uint64_t)rd_u32(r) << 32;
}

/* A string field: NUL-free UTF-8 (and, with ascii_lines, only printable ASCII,
 * TAB, CR and LF). Returns a malloc'ed copy, or NULL with r->err set. */
static char *rd_str(struct reader *r, size_t *len_out, int ascii_lines)
{
    uint32_t len = rd_u32(r);
    const uint8_t *s = rd_take(r, len);
    if (s == NULL)
        return NULL;
    if (memchr(s, 0, len) != NULL || !charset_is_utf8(s, len)) {
        r->err = -EBADMSG;
        return NULL;
    }
    for (uint32_t i = 0; ascii_lines && i < len; i++) {
        if ((s[i] < 0x20 && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') || s[i] > 0x7E) {
            r->err = -EBADMSG;
            return NULL;
        }
    }
    char *c = xmalloc((unsigned long)len + 1);
    memcpy(c, s, len);
    c[len] = 0;
    if (len_out)
        *len_out = len;
    return c;
}

/* A short single-line field (reason, charsets, detected type, hash): printable
 * ASCII only, since some of them are written into a header line. */
static void rd_fixed(struct reader *r, char *dst, size_t dstsz)
{
    char *s = rd_str(r, NULL, 1);
    if (s == NULL)
        return;
    for (const char *c = s; *c; c++)
        if (*c < 0x20 || *c > 0x7E)
            r->err = -EBADMSG;
    if (strlen(s) >= dstsz)
        r->err = -EBADMSG;
    else
        memcpy(dst, s, strlen(s) + 1);
    free(s);
}

static void rd_buf(struct reader *r, buf *b, int ascii_lines)
{
    size_t len = 0;
    char *s = rd_str(r, &len, ascii_lines);
    buf_init(b, BUF_UNLIMITED);
    if (s == NULL)
        return;
    b->p = (uint8_t *)s;
    b->len = b->cap = len;
}

/* The kept headers: CRLF-terminated lines, each either a continuation (WSP
 * first) or one of the names sanitize_message() keeps. */
static int headers_well_formed(const buf *h)
{
    static const char *const names[] = {
        "From:", "To:", "Cc:", "Date:", "Subject:", "Message-ID:", "In-Reply-To:", "References:"};
    const char *s = buf_cstr(h), *end = s + h->len;
    while (s < end) {
        const char *eol = strstr(s, "\r\n");
        if (eol == NULL || memchr(s, '\n', (size_t)(eol - s)) || memchr(s, '\r', (size_t)(eol - s)))
            return 0;
        int ok = *s == ' ' || *s == '\t';
        for (size_t i = 0; !ok && i < sizeof names / sizeof names[0]; i++)
            ok = strncmp(s, names[i], strlen(names[i])) == 0;
        if (!ok)
            return 0;
        s = eol + 2;
    }
    return 1;
}

int sanitize_result_unpack(const uint8_t *p, size_t n, sanitize_result *res, size_t *used)
{
    memset(res, 0, sizeof *res);
    struct reader r = {p, n, 0};
    const uint8_t *magic = rd_take(&r, 4);
    if (magic == NULL || memcmp(magic, PACK_MAGIC, 4) != 0)
        return -EBADMSG;
    uint32_t verdict = rd_u32(&r);
    res->verdict = verdict == SANITIZE_OK ? SANITIZE_OK : SANITIZE_REJECT;
    if (verdict > SANITIZE_REJECT)
        r.err = -EBADMSG;
    res->flags = rd_u32(&r);
    res->text_parts = (size_t)rd_u64(&r);
    res->html_parts = (size_t)rd_u64(&r);
    res->replaced = (size_t)rd_u64(&r);
    uint32_t n_qid = rd_u32(&r);
    uint64_t qid_at[4];
    for (size_t i = 0; i < 4; i++)
        qid_at[i] = rd_u64(&r);
    rd_fixed(&r, res->reason, sizeof res->reason);
    res->from = rd_str(&r, NULL, 0);
    res->to = rd_str(&r, NULL, 0);
    res->subject = rd_str(&r, NULL, 0);
    res->message_id = rd_str(&r, NULL, 0);
    rd_fixed(&r, res->charsets, sizeof res->charsets);
    rd_buf(&r, &res->headers, 1);
    if (!r.err && !headers_well_formed(&res->headers))
        r.err = -EBADMSG;
    rd_buf(&r, &res->text, 0);
    uint32_t n_parts = rd_u32(&r);
    if (n_parts > PACK_MAX_PARTS || n_parts > r.n / 26) /* 26: the smallest packed part */
        r.err = -EBADMSG;
    if (!r.err && n_parts) {
        res->parts = xcalloc(n_parts, sizeof *res->parts);
        for (uint32_t i = 0; i < n_parts && !r.err; i++) {
            sanitize_part *sp = &res->parts[i];
            res->n_parts = i + 1;
            sp->filename = rd_str(&r, NULL, 0);
            sp->declared_type = rd_str(&r, NULL, 1);
            rd_fixed(&r, sp->info.detected, sizeof sp->info.detected);
            rd_fixed(&r, sp->info.sha256, sizeof sp->info.sha256);
            sp->info.size = rd_u64(&r);
            sp->info.warnings = rd_u32(&r);
            sp->info.archive_entries = rd_u32(&r);
            const uint8_t *fl = rd_take(&r, 2);
            if (fl) {
                sp->forwarded = fl[0] != 0;
                sp->analysed = fl[1] != 0;
            }
            if (!r.err && (sp->filename == NULL || sp->declared_type == NULL))
                r.err = -EBADMSG;
        }
    }
    /* The id offsets must be in order and inside the text. */
    if (n_qid > 4)
        r.err = -EBADMSG;
    for (uint32_t i = 0; !r.err && i < n_qid; i++) {
        if (qid_at[i] > res->text.len || (i > 0 && qid_at[i] < qid_at[i - 1]))
            r.err = -EBADMSG;
        res->qid_at[i] = (size_t)qid_at[i];
    }
    res->n_qid = r.err ? 0 : n_qid;
    if (!r.err &&
        (res->from == NULL || res->to == NULL || res->subject == NULL || res->message_id == NULL))
        r.err = -EBADMSG;
    /* Never leave NULLs where callers expect strings. */
    char **strs[] = {&res->from, &res->to, &res->subject, &res->message_id};
    for (size_t i = 0; i < 4; i++)
        if (*strs[i] == NULL)
            *strs[i] = xstrdup("");
    for (size_t i = 0; i < res->n_parts; i++) {
        if (res->parts[i].filename == NULL)
            res->parts[i].filename = xstrdup("");
        if (res->parts[i].declared_type == NULL)
            res->parts[i].declared_type = xstrdup("");
    }
    if (used)
        *used = n - r.n;
    return r.err ? -EBADMSG : 0;
}
