/*
 * htmltext - HTML mail body to readable plain text.
 *
 * PURPOSE
 *   A text/html part (already converted to UTF-8) becomes plain text that a
 *   person in the LGWAN zone can read safely: nothing clickable, every link's
 *   real destination visible (defanged), active and hidden content removed.
 *
 * CONTRACT
 *   htmltext_render(p, n, opts, out, stats) appends UTF-8 text with LF line
 *   ends to out: no leading or trailing blank lines, never two blank lines in
 *   a row, a final LF when anything was written. Returns 0, -ENOSPC (out's
 *   maximum reached, the sticky error of buf.h; out holds what fitted),
 *   -ENOMEM, -EINVAL (bad arguments) or -EFBIG (input over ~700 MB, which
 *   libxml2's int sizes cannot take).
 *
 * PARSING
 *   libxml2's error-tolerant HTML parser (htmlCtxtReadMemory, UTF-8, RECOVER,
 *   NONET, IGNORE_ENC so a <meta charset> cannot re-decode the text) builds the
 *   tree. Before that, a linear pre-pass replaces invalid UTF-8 with U+FFFD and
 *   drops NUL and other C0/C1 controls (libxml2 would otherwise switch to
 *   Latin-1 on the first bad byte, or end the text at a NUL), and removes
 *   Outlook's downlevel-revealed conditionals "<![if ...]>" / "<![endif]>",
 *   which libxml2 would show as text.
 *
 * LIMITS (each one degrades, none loses text silently)
 *   - Tree depth: libxml2 2.9 halts the whole parse at 256 open nodes and
 *     returns the part before it, silently. We wrap its SAX start/end
 *     callbacks: elements opened deeper than opts->max_depth (default 128,
 *     clamped to 8..200) are not nested; each becomes an empty marker node at
 *     the cap (so br, img, a href, td still render) and its text goes to the
 *     nearest kept ancestor: content is flattened, never dropped (where
 *     such an element ends is lost: its text runs on into what follows).
 *     Dropped elements (script, ...) at that depth suppress their text.
 *     Counted in stats->flattened. XML_PARSE_HUGE is then safe and lifts
 *     libxml2's 10 MB text-node limit, the other silent halt.
 *   - Parser time: libxml2 scans its stack of open element names for every end
 *     tag, so <b>x100000 followed by </i>x100000 costs O(n^2) (tens of seconds
 *     per MB). When more than HT_NAME_LIMIT names are open we stop the parser
 *     and start a fresh parse at the byte where it stopped; the text goes on,
 *     with the element structure reset (stats->restarts). Work is then
 *     O(n * HT_NAME_LIMIT). Known gap: if the limit is reached inside a form,
 *     svg or hidden element, the rest of its content is shown after the
 *     restart (still plain, defanged text).
 *   - The walk of the tree is iterative (parent/next pointers and a heap frame
 *     stack), so it needs no recursion at any depth.
 *   - Link text is examined up to HT_LINKTEXT_MAX bytes; shown URLs are cut
 *     after HT_URL_SHOW_MAX bytes of path and HT_AUTH_SHOW_MAX bytes of
 *     authority ("…"), so a 1 MB href does not bury the text.
 *
 * RENDERING CHOICES
 *   p, div, li, tr, headings, blockquote, ... start lines; p (except Outlook's
 *   class="Mso..." and p in li/td/dd) and h1-h6 are set apart by a blank line;
 *   blockquote lines get "> "; ul items "・ ", ol items "1. ", nested lists and
 *   dd indent; table rows are one line with cells " | " (empty cells skipped;
 *   a block at the start of a cell does not break the row, as Outlook puts a
 *   <p> in every cell; blocks later in a cell do, so layout tables become
 *   lines); hr is a line of dashes. &nbsp; is a space that does not collapse
 *   (so Outlook's "<p>&nbsp;</p>" gives a blank line); zero-width and bidi
 *   control characters are removed. Trailing spaces are trimmed.
 *   Dropped with their content and counted: script, style, iframe, frame(set),
 *   object, applet, template, noscript, svg, math, audio, video, canvas,
 *   form (all of it, as required) and form controls outside a form,
 *   and elements hidden by the hidden attribute or by style display:none,
 *   visibility:hidden or mso-hide:all (newsletter preheaders, Outlook VML
 *   fallbacks). head and title are not shown; title/meta/link/base are not
 *   counted (they are in every mail), script/style inside head are. embed
 *   and keygen are counted but, void in HTML5 and containers for libxml2
 *   2.9, what libxml2 puts inside them (the following text) is shown.
 *   Prefixed names (Outlook's o:p, v:shape) become unknown inline elements:
 *   libxml2 drops the prefix, which would make o:p a paragraph.
 *   Images: "[画像: alt]" / "[画像]"; 1x1/2x2 tracking pixels (width and height
 *   attributes both <= 2) are counted but not shown.
 *   Links: see htmltext.h. When opts->defang, link text that is itself a URL,
 *   a domain or an address is shown defanged too, since a text client would
 *   make it clickable again. The phishing check compares the host the link
 *   text names (the whole text must be a URL, domain, IPv4 address or mail
 *   address) with the href's host: ASCII case-folded, percent-decoded,
 *   trailing dot and a leading "www." removed, non-ASCII names converted with
 *   ICU's UTS #46 (so fullwidth and IDN text compare with xn-- hosts). A href
 *   host that is a subdomain of the named host is not a mismatch (only the
 *   owner of the named domain can create it). Text that merely contains a host
 *   among other words is not checked.
 */
#include "htmltext.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/HTMLparser.h>
#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <unicode/uidna.h>

#define HT_DEFAULT_DEPTH 128
#define HT_MIN_DEPTH     8
#define HT_MAX_DEPTH     200
#define HT_LINK_EXTRA    16  /* a href may nest this far past the cap */
#define HT_NAME_LIMIT    256 /* open element names before a restart */
#define HT_LINKTEXT_MAX  4096
#define HT_URL_SHOW_MAX  2048
#define HT_AUTH_SHOW_MAX 1024
#define HT_HOST_MAX      1024

/* ------------------------------------------------------------------------ */
/* small helpers                                                             */

static int lc(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(int c)
{
    return is_digit(c) || (lc(c) >= 'a' && lc(c) <= 'f');
}

static int hexval(int c)
{
    return is_digit(c) ? c - '0' : lc(c) - 'a' + 10;
}

static int ci_eq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return 0;
    for (size_t i = 0; i < an; i++)
        if (lc((unsigned char)a[i]) != lc((unsigned char)b[i]))
            return 0;
    return 1;
}

static int ci_prefix(const char *a, size_t an, const char *pfx)
{
    size_t pn = strlen(pfx);
    return an >= pn && ci_eq(a, pn, pfx, pn);
}

/* Bytes of the UTF-8 sequence starting at s[0] (input is valid UTF-8). */
static size_t u8len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* Largest k <= n that does not cut a UTF-8 sequence of s. */
static size_t u8cut(const char *s, size_t n)
{
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

/* ------------------------------------------------------------------------ */
/* pre-pass: valid UTF-8, no controls, no downlevel-revealed conditionals   */

static size_t utf8_valid(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (n >= 2 && (s[1] & 0xc0) == 0x80) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && s[1] < 0xa0)
            return 0;
        if (c == 0xed && s[1] >= 0xa0)
            return 0; /* surrogates */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && s[1] < 0x90)
            return 0;
        if (c == 0xf4 && s[1] >= 0x90)
            return 0;
        return 4;
    }
    return 0;
}

/* "<![if ...]>" or "<![endif]>" at s: its length, else 0. */
static size_t downlevel_cond(const unsigned char *s, size_t n)
{
    if (n < 5 || s[0] != '<' || s[1] != '!' || s[2] != '[')
        return 0;
    size_t i = 3;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (!(ci_prefix((const char *)s + i, n - i, "if") ||
          ci_prefix((const char *)s + i, n - i, "endif")))
        return 0;
    for (size_t k = i; k < n && k < i + 256; k++) {
        if (s[k] == '>' || s[k] == '<')
            return 0;
        if (s[k] == ']')
            return (k + 1 < n && s[k + 1] == '>') ? k + 2 : 0;
    }
    return 0;
}

static int prepass(const char *in, size_t n, buf *o)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, run = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        if (c >= 0x20 && c < 0x7f && c != '<') {
            i++;
            continue;
        }
        if (c == '<') {
            k = downlevel_cond(s + i, n - i);
            if (k == 0) {
                i++;
                continue;
            }
        } else if (c == '\t' || c == '\n' || c == '\r' || c == '\f') {
            i++;
            continue;
        } else if (c < 0x80) {
            k = 1; /* NUL, other C0, DEL: dropped */
        } else {
            size_t v = utf8_valid(s + i, n - i);
            if (v == 2 && c == 0xc2 && s[i + 1] < 0xa0) {
                k = 2; /* C1 control */
            } else if (v) {
                i += v;
                continue;
            } else {
                buf_append(o, s + run, i - run);
                buf_append(o, "\xef\xbf\xbd", 3);
                i++;
                run = i;
                continue;
            }
        }
        buf_append(o, s + run, i - run);
        i += k;
        run = i;
    }
    buf_append(o, s + run, i - run);
    return o->err;
}

/* ------------------------------------------------------------------------ */
/* element classes                                                           */

enum ekind {
    E_INLINE = 0,
    E_DROP,  /* dropped with content, counted */
    E_QUIET, /* dropped with content, not counted (title, meta, ...) */
    E_HEAD,  /* not shown; drops inside still counted */
    E_BLOCK,
    E_PARA, /* p */
    E_HEADING,
    E_PRE,
    E_HR,
    E_BR,
    E_IMG,
    E_A,
    E_LIST, /* ul, ol, menu, dir */
    E_LI,
    E_DD,
    E_QUOTE,
    E_TABLE,
    E_TR,
    E_CELL,
    E_CONTROL,  /* form controls: dropped, counted */
    E_VOIDDROP, /* void in HTML5, a container for libxml2 2.9: the "children" */
    E_VOID      /* are the following siblings: counted (DROP) or not, walked */
};

struct ename {
    const char *name;
    unsigned char kind;
};

/* Sorted by name for bsearch. */
static const struct ename enames[] = {
    {"a", E_A},
    {"address", E_BLOCK},
    {"applet", E_DROP},
    {"article", E_BLOCK},
    {"aside", E_BLOCK},
    {"audio", E_DROP},
    {"base", E_QUIET},
    {"blockquote", E_QUOTE},
    {"body", E_BLOCK},
    {"br", E_BR},
    {"button", E_CONTROL},
    {"canvas", E_DROP},
    {"caption", E_BLOCK},
    {"center", E_BLOCK},
    {"datalist", E_CONTROL},
    {"dd", E_DD},
    {"details", E_BLOCK},
    {"dialog", E_BLOCK},
    {"dir", E_LIST},
    {"div", E_BLOCK},
    {"dl", E_BLOCK},
    {"dt", E_BLOCK},
    {"embed", E_VOIDDROP},
    {"fieldset", E_BLOCK},
    {"figcaption", E_BLOCK},
    {"figure", E_BLOCK},
    {"footer", E_BLOCK},
    {"form", E_DROP},
    {"frame", E_DROP},
    {"frameset", E_DROP},
    {"h1", E_HEADING},
    {"h2", E_HEADING},
    {"h3", E_HEADING},
    {"h4", E_HEADING},
    {"h5", E_HEADING},
    {"h6", E_HEADING},
    {"head", E_HEAD},
    {"header", E_BLOCK},
    {"hgroup", E_BLOCK},
    {"hr", E_HR},
    {"html", E_BLOCK},
    {"iframe", E_DROP},
    {"img", E_IMG},
    {"input", E_CONTROL},
    {"keygen", E_VOIDDROP},
    {"legend", E_BLOCK},
    {"li", E_LI},
    {"link", E_QUIET},
    {"listing", E_PRE},
    {"main", E_BLOCK},
    {"math", E_DROP},
    {"menu", E_LIST},
    {"meta", E_QUIET},
    {"nav", E_BLOCK},
    {"noembed", E_DROP},
    {"noframes", E_DROP},
    {"noscript", E_DROP},
    {"object", E_DROP},
    {"ol", E_LIST},
    {"optgroup", E_CONTROL},
    {"option", E_CONTROL},
    {"output", E_CONTROL},
    {"p", E_PARA},
    {"param", E_QUIET},
    {"plaintext", E_PRE},
    {"pre", E_PRE},
    {"script", E_DROP},
    {"section", E_BLOCK},
    {"select", E_CONTROL},
    {"source", E_VOID},
    {"style", E_DROP},
    {"summary", E_BLOCK},
    {"svg", E_DROP},
    {"table", E_TABLE},
    {"tbody", E_INLINE},
    {"td", E_CELL},
    {"template", E_DROP},
    {"textarea", E_CONTROL},
    {"tfoot", E_INLINE},
    {"th", E_CELL},
    {"thead", E_INLINE},
    {"title", E_QUIET},
    {"tr", E_TR},
    {"track", E_VOID},
    {"ul", E_LIST},
    {"video", E_DROP},
    {"xmp", E_PRE},
};

static int ename_cmp(const void *k, const void *e)
{
    return strcmp((const char *)k, ((const struct ename *)e)->name);
}

static enum ekind classify(const xmlNode *n)
{
    if (n->ns != NULL)
        return E_INLINE; /* o:p, v:shape, ...: prefixed names are unknown */
    const struct ename *e =
        bsearch(n->name, enames, sizeof enames / sizeof enames[0], sizeof enames[0], ename_cmp);
    return e ? (enum ekind)e->kind : E_INLINE;
}

static int name_drops(const xmlChar *name)
{
    const struct ename *e =
        bsearch(name, enames, sizeof enames / sizeof enames[0], sizeof enames[0], ename_cmp);
    return e && (e->kind == E_DROP || e->kind == E_QUIET || e->kind == E_CONTROL);
}

/* 1 if a style value hides the element. Whitespace and case are ignored. */
static int style_hides(const xmlChar *v)
{
    static const char *const pats[] = {"display:none", "visibility:hidden", "mso-hide:all"};
    size_t st[3] = {0, 0, 0};
    for (; *v; v++) {
        int c = lc(*v);
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f')
            continue;
        for (int k = 0; k < 3; k++) {
            if (c == pats[k][st[k]])
                st[k]++;
            else
                st[k] = (c == pats[k][0]) ? 1 : 0;
            if (pats[k][st[k]] == 0)
                return 1;
        }
    }
    return 0;
}

static int atts_hide(const xmlChar **atts)
{
    for (size_t i = 0; atts && atts[i]; i += 2) {
        if (xmlStrcasecmp(atts[i], BAD_CAST "hidden") == 0)
            return 1;
        if (atts[i + 1] && xmlStrcasecmp(atts[i], BAD_CAST "style") == 0 &&
            style_hides(atts[i + 1]))
            return 1;
    }
    return 0;
}

static int node_hidden(const xmlNode *n)
{
    for (const xmlAttr *a = n->properties; a; a = a->next) {
        if (xmlStrcasecmp(a->name, BAD_CAST "hidden") == 0)
            return 1;
        if (xmlStrcasecmp(a->name, BAD_CAST "style") == 0 && a->children &&
            a->children->type == XML_TEXT_NODE && a->children->content &&
            style_hides(a->children->content))
            return 1;
    }
    return 0;
}

/* Attribute value without copying (the HTML parser stores one text child). */
static const char *attr(const xmlNode *n, const char *name)
{
    for (const xmlAttr *a = n->properties; a; a = a->next) {
        if (xmlStrcasecmp(a->name, BAD_CAST name) == 0) {
            if (a->children == NULL)
                return "";
            if (a->children->type == XML_TEXT_NODE && a->children->content)
                return (const char *)a->children->content;
            return "";
        }
    }
    return NULL;
}

static long attr_long(const char *v, long dflt)
{
    if (v == NULL)
        return dflt;
    while (*v == ' ')
        v++;
    int neg = 0;
    if (*v == '-' || *v == '+')
        neg = *v++ == '-';
    if (!is_digit((unsigned char)*v))
        return dflt;
    long x = 0;
    for (; is_digit((unsigned char)*v); v++)
        if (x < 100000000)
            x = x * 10 + (*v - '0');
    return neg ? -x : x;
}

/* ------------------------------------------------------------------------ */
/* parsing with bounded depth (SAX wrappers)                                 */

enum { K_NORMAL = 0, K_FLAT = 1, K_IGNORED = 2 };

typedef struct parse_state {
    int cap;             /* node depth cap */
    unsigned char *kind; /* per open-name level: K_* */
    size_t nkind;
    int suppress; /* name level of a suppressing element, 0 none */
    int stopped;  /* we stopped the parser at the name limit */
    long resume;  /* byte offset where a new parse starts */
    int oom;
    size_t flattened;
    startElementSAXFunc start;
    endElementSAXFunc end;
    charactersSAXFunc chars;
    cdataBlockSAXFunc cdata;
    ignorableWhitespaceSAXFunc ws;
} parse_state;

static void sax_start(void *ctx, const xmlChar *name, const xmlChar **atts)
{
    htmlParserCtxtPtr c = ctx;
    parse_state *ps = c->_private;
    int lvl = c->nameNr;
    if (lvl < 0)
        lvl = 0;
    if ((size_t)lvl >= ps->nkind) {
        size_t nk = ps->nkind ? ps->nkind * 2 : 64;
        while (nk <= (size_t)lvl)
            nk *= 2;
        unsigned char *k = realloc(ps->kind, nk);
        if (k == NULL) {
            ps->oom = 1;
            xmlStopParser(c);
            return;
        }
        memset(k + ps->nkind, 0, nk - ps->nkind);
        ps->kind = k;
        ps->nkind = nk;
    }
    ps->kind[lvl] = K_IGNORED;
    if (ps->stopped)
        return;
    if (lvl > HT_NAME_LIMIT) {
        ps->stopped = 1;
        /* Our input is valid UTF-8, so libxml2's UTF-8 decoding is 1:1 and
         * the position in its buffer is the byte offset (xmlByteConsumed
         * counts what the decoder has read ahead instead). */
        if (c->input && c->input->cur >= c->input->base)
            ps->resume = (long)c->input->consumed + (long)(c->input->cur - c->input->base);
        xmlStopParser(c);
        return;
    }
    if (ps->suppress && lvl > ps->suppress)
        return;
    /* libxml2's HTML parser drops the prefix of o:p, v:shape, ...: "o:p" would
     * become a paragraph. Such elements get a name we do not know instead. */
    xmlChar local[64];
    if (xmlStrchr(name, ':')) {
        size_t i = 0;
        for (; name[i] && i + 1 < sizeof local; i++)
            local[i] = name[i] == ':' ? '-' : name[i];
        local[i] = 0;
        name = local;
    }
    int is_a = xmlStrEqual(name, BAD_CAST "a");
    if (c->nodeNr < ps->cap || (is_a && c->nodeNr < ps->cap + HT_LINK_EXTRA)) {
        ps->kind[lvl] = K_NORMAL;
        ps->start(ctx, name, atts);
        return;
    }
    /* Past the cap: an empty marker node at the cap; text goes to the parent. */
    int before = c->nodeNr;
    ps->start(ctx, name, atts);
    if (c->nodeNr > before)
        nodePop(c);
    ps->kind[lvl] = K_FLAT;
    ps->flattened++;
    if (name_drops(name) || atts_hide(atts))
        ps->suppress = lvl;
}

static void sax_end(void *ctx, const xmlChar *name)
{
    htmlParserCtxtPtr c = ctx;
    parse_state *ps = c->_private;
    int lvl = c->nameNr;
    int k = (lvl >= 0 && (size_t)lvl < ps->nkind) ? ps->kind[lvl] : K_NORMAL;
    if (ps->suppress == lvl)
        ps->suppress = 0;
    if (k == K_NORMAL)
        ps->end(ctx, name);
}

static void sax_chars(void *ctx, const xmlChar *ch, int len)
{
    htmlParserCtxtPtr c = ctx;
    parse_state *ps = c->_private;
    if (!ps->suppress && !ps->stopped)
        ps->chars(ctx, ch, len);
}

static void sax_cdata(void *ctx, const xmlChar *ch, int len)
{
    htmlParserCtxtPtr c = ctx;
    parse_state *ps = c->_private;
    if (!ps->suppress && !ps->stopped && ps->cdata)
        ps->cdata(ctx, ch, len);
}

static void sax_ws(void *ctx, const xmlChar *ch, int len)
{
    htmlParserCtxtPtr c = ctx;
    parse_state *ps = c->_private;
    if (!ps->suppress && !ps->stopped && ps->ws)
        ps->ws(ctx, ch, len);
}

/* ------------------------------------------------------------------------ */
/* renderer                                                                  */

typedef struct frame {
    const xmlNode *node;
    unsigned char kind;   /* enum ekind */
    unsigned char marker; /* li: marker not yet printed */
    unsigned char ordered;
    int saved_tr, saved_list, saved_cell;
    long counter; /* list: next number; li: its number */
    size_t mark;  /* content counter at entry */
    size_t cells; /* tr: cells that had content */
    /* links */
    const char *href;
    size_t lt_start;   /* offset in linktext */
    size_t line_start; /* offset in line of the first content */
    size_t serial;     /* line serial at that point */
    int started;
} frame;

typedef struct render {
    const htmltext_opts *opts;
    htmltext_stats *st;
    buf *out;
    size_t out_base;    /* out->len when we started */
    buf line;           /* the line being built, prefix included */
    size_t line_pfx;    /* bytes of prefix at the start of line */
    int line_q, prev_q; /* quote levels of this line and of the last one */
    size_t serial;      /* lines ended so far */
    int line_has;       /* line has content (maybe only nbsp) */
    int space;          /* collapsible space pending */
    int cellsep;        /* " | " pending */
    int want;           /* 1: end the line, 2: and a blank line, before content */
    int blank;          /* blank line pending */
    int pre;            /* inside pre */
    int pre_nl;         /* skip a newline right after <pre> */
    int invisible;      /* inside head */
    int in_li, in_cell, in_dd;
    size_t content; /* content emissions (cell separators) */
    frame *fr;
    size_t nfr, capfr;
    size_t *pfx; /* indexes of the frames that prefix lines */
    size_t npfx, cappfx;
    int tr_top, list_top, cell_top;
    /* links */
    int link_depth;
    int link_unstarted;
    buf lt; /* text of open links, whitespace collapsed */
    int lt_space, lt_over;
    UIDNA *idna;
    int idna_failed;
    int err;
} render;

static void seterr(render *r, int e)
{
    if (!r->err && e)
        r->err = e;
}

/* Appends to out; what does not fit is cut at a character boundary and the
 * sticky -ENOSPC is set, so out holds as much as fits. */
static void out_add(render *r, const void *s, size_t n)
{
    buf *o = r->out;
    if (r->err || o->err) {
        seterr(r, o->err ? o->err : r->err);
        return;
    }
    if (n > o->max - o->len) {
        size_t k = u8cut((const char *)s, o->max - o->len);
        buf_append(o, s, k);
        buf_reserve(o, n); /* sets the sticky -ENOSPC */
        seterr(r, o->err ? o->err : -ENOSPC);
        return;
    }
    if (buf_append(o, s, n))
        seterr(r, o->err);
}

static void line_add(render *r, const void *s, size_t n)
{
    if (r->err)
        return;
    if (buf_append(&r->line, s, n)) {
        int e = r->line.err;
        if (e == -ENOSPC) {
            /* the line alone passes out's maximum: fill out and stop */
            r->line.err = 0;
            out_add(r, r->line.p, r->line.len);
            out_add(r, s, n);
        }
        seterr(r, e);
    }
}

static int written(const render *r)
{
    return r->out->len > r->out_base;
}

/* A blank line inside a quote keeps the quote marks both neighbours share. */
static void put_blank_line(render *r)
{
    int q = r->prev_q < r->line_q ? r->prev_q : r->line_q;
    for (int i = 0; i < q; i++)
        out_add(r, i + 1 == q ? ">" : "> ", i + 1 == q ? 1 : 2);
    out_add(r, "\n", 1);
}

static void end_line(render *r)
{
    if (!r->line_has)
        return;
    uint8_t *p = r->line.p;
    size_t n = r->line.len;
    while (n > r->line_pfx && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n == r->line_pfx) {
        if (written(r))
            r->blank = 1;
    } else {
        if (r->blank && written(r))
            put_blank_line(r);
        r->blank = 0;
        r->prev_q = r->line_q;
        out_add(r, p, n);
        out_add(r, "\n", 1);
    }
    buf_reset(&r->line);
    r->line_pfx = 0;
    r->line_has = 0;
    r->space = 0;
    r->cellsep = 0;
    r->serial++;
    if (r->link_depth)
        r->lt_space = 1;
}

static void flush_breaks(render *r)
{
    if (r->want == 0)
        return;
    end_line(r);
    if (r->want == 2 && written(r))
        r->blank = 1;
    r->want = 0;
}

static void want(render *r, int w)
{
    if (r->want < w)
        r->want = w;
}

/* A block that opens a table cell before any of the cell's content does not
 * break the row's line (Outlook puts a <p> in every cell). */
static void block_want(render *r, int w)
{
    if (r->cell_top >= 0 && r->content == r->fr[r->cell_top].mark)
        return;
    want(r, w);
}

static void do_br(render *r)
{
    if (r->want == 0 && r->line_has) {
        end_line(r);
        return;
    }
    flush_breaks(r);
    end_line(r);
    if (written(r))
        r->blank = 1;
}

static void start_line(render *r)
{
    char num[32];
    r->line_q = 0;
    for (size_t j = 0; j < r->npfx; j++) {
        frame *f = &r->fr[r->pfx[j]];
        if (f->kind == E_QUOTE) {
            line_add(r, "> ", 2);
            r->line_q++;
        } else if (f->kind == E_DD) {
            line_add(r, "  ", 2);
        } else if (f->kind == E_LI) {
            size_t w;
            if (f->ordered) {
                int k = snprintf(num, sizeof num, "%ld. ", f->counter);
                w = k > 0 ? (size_t)k : 0;
            } else {
                w = 3; /* "・ " is three columns wide */
            }
            if (f->marker) {
                if (f->ordered)
                    line_add(r, num, w);
                else
                    line_add(r, "\xe3\x83\xbb ", 4);
                f->marker = 0;
            } else {
                for (size_t k = 0; k < w; k++)
                    line_add(r, " ", 1);
            }
        }
    }
    r->line_pfx = r->line.len;
}

static void lt_add(render *r, const char *s, size_t n)
{
    if (r->lt_over)
        return;
    if (buf_append(&r->lt, s, n)) {
        r->lt_over = 1;
        buf_reset(&r->lt);
    }
}

/* Visible content: s[0..n) contains no collapsible whitespace. */
static void put_content(render *r, const char *s, size_t n)
{
    if (n == 0 || r->err)
        return;
    flush_breaks(r);
    int sp = 0;
    if (!r->line_has) {
        start_line(r);
        r->line_has = 1;
        sp = 1;
    } else if (r->cellsep) {
        line_add(r, " | ", 3);
        sp = 1;
    } else if (r->space) {
        line_add(r, " ", 1);
        sp = 1;
    }
    r->cellsep = 0;
    r->space = 0;
    if (r->link_depth) {
        if (r->link_unstarted) {
            for (size_t i = r->nfr; i-- > 0;) {
                frame *f = &r->fr[i];
                if (f->kind != E_A || f->href == NULL)
                    continue;
                if (f->started)
                    break;
                f->started = 1;
                f->line_start = r->line.len;
                f->serial = r->serial;
            }
            r->link_unstarted = 0;
        }
        if ((sp || r->lt_space) && r->lt.len > 0)
            lt_add(r, " ", 1);
        r->lt_space = 0;
        lt_add(r, s, n);
    }
    line_add(r, s, n);
    r->content++;
}

static void put_str(render *r, const char *s)
{
    put_content(r, s, strlen(s));
}

static void collapsible_space(render *r)
{
    if (r->line_has)
        r->space = 1;
    if (r->link_depth)
        r->lt_space = 1;
}

/* Zero-width and bidi controls at s (valid UTF-8): their length, else 0. */
static size_t invisible_char(const unsigned char *s)
{
    if (s[0] == 0xc2 && (s[1] == 0xad || s[1] < 0xa0))
        return 2; /* soft hyphen, C1 controls (from character references) */
    if (s[0] == 0xe2 && s[1] == 0x80 &&
        (s[2] == 0x8b || s[2] == 0x8e || s[2] == 0x8f || (s[2] >= 0xaa && s[2] <= 0xae)))
        return 3; /* ZWSP, LRM, RLM, LRE..RLO */
    if (s[0] == 0xe2 && s[1] == 0x81 && s[2] >= 0xa6 && s[2] <= 0xa9)
        return 3; /* LRI..PDI */
    if (s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf)
        return 3; /* BOM / ZWNBSP */
    return 0;
}

static void put_text(render *r, const xmlChar *text)
{
    const unsigned char *s = text;
    size_t i = 0, run = 0;
    if (r->pre && r->pre_nl) {
        if (s[0] == '\r' && s[1] == '\n')
            i = run = 2;
        else if (s[0] == '\n')
            i = run = 1;
    }
    r->pre_nl = 0;
    while (s[i]) {
        unsigned char c = s[i];
        size_t k = 0;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
            put_content(r, (const char *)s + run, i - run);
            if (r->pre) {
                if (c == '\n' || (c == '\r' && s[i + 1] != '\n'))
                    do_br(r);
                else if (c == ' ' || c == '\t')
                    put_content(r, (const char *)s + i, 1);
            } else {
                collapsible_space(r);
            }
            run = ++i;
            continue;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c == 0xc2 && s[i + 1] == 0xa0) {
            put_content(r, (const char *)s + run, i - run);
            put_content(r, " ", 1);
            run = i += 2;
            continue;
        }
        k = invisible_char(s + i);
        if (k) {
            put_content(r, (const char *)s + run, i - run);
            run = i += k;
            continue;
        }
        k = u8len(c);
        for (size_t j = 1; j < k; j++)
            if (s[i + j] == 0)
                k = j; /* cannot happen after the pre-pass; stay in bounds */
        i += k;
    }
    put_content(r, (const char *)s + run, i - run);
}

/* ------------------------------------------------------------------------ */
/* URLs and hosts                                                            */

enum ukind { U_FRAGMENT, U_RELATIVE, U_WEB, U_MAILTO, U_TEL, U_OTHER };

typedef struct url {
    char *s; /* normalized copy, owned */
    size_t n;
    enum ukind kind;
    size_t scheme_n; /* 0: none ("//host") */
    size_t auth_off, auth_n;
    size_t host_off, host_n;
    size_t rest_off;
} url;

/* Browsers strip leading/trailing C0 and space and remove tab/CR/LF inside. */
static int url_parse(const char *raw, size_t rn, url *u)
{
    memset(u, 0, sizeof *u);
    u->s = malloc(rn + 1);
    if (u->s == NULL)
        return -ENOMEM;
    size_t a = 0, b = rn;
    while (a < b && (unsigned char)raw[a] <= 0x20)
        a++;
    while (b > a && (unsigned char)raw[b - 1] <= 0x20)
        b--;
    for (size_t i = a; i < b; i++)
        if (raw[i] != '\t' && raw[i] != '\n' && raw[i] != '\r')
            u->s[u->n++] = raw[i];
    u->s[u->n] = 0;
    const char *s = u->s;
    size_t n = u->n;
    if (n == 0 || s[0] == '#') {
        u->kind = U_FRAGMENT;
        return 0;
    }
    size_t j = 0;
    if (is_alpha((unsigned char)s[0])) {
        j = 1;
        while (j < n && (is_alpha((unsigned char)s[j]) || is_digit((unsigned char)s[j]) ||
                         s[j] == '+' || s[j] == '-' || s[j] == '.'))
            j++;
        if (j >= n || s[j] != ':')
            j = 0;
    }
    size_t k;
    if (j > 0) {
        for (size_t i = 0; i < j; i++)
            u->s[i] = (char)lc((unsigned char)u->s[i]);
        u->scheme_n = j;
        if (ci_eq(s, j, "http", 4) || ci_eq(s, j, "https", 5) || ci_eq(s, j, "ftp", 3)) {
            u->kind = U_WEB;
            k = j + 1;
        } else if (ci_eq(s, j, "mailto", 6)) {
            u->kind = U_MAILTO;
            size_t at = 0;
            for (k = j + 1; k < n && s[k] != '?' && s[k] != ','; k++)
                if (s[k] == '@')
                    at = k;
            if (at) {
                u->host_off = at + 1;
                u->host_n = k - at - 1;
            }
            return 0;
        } else if (ci_eq(s, j, "tel", 3)) {
            u->kind = U_TEL;
            return 0;
        } else {
            u->kind = U_OTHER;
            return 0;
        }
    } else if (n >= 2 && (s[0] == '/' || s[0] == '\\') && (s[1] == '/' || s[1] == '\\')) {
        u->kind = U_WEB;
        k = 0;
    } else {
        u->kind = U_RELATIVE;
        return 0;
    }
    while (k < n && (s[k] == '/' || s[k] == '\\'))
        k++;
    u->auth_off = k;
    while (k < n && s[k] != '/' && s[k] != '\\' && s[k] != '?' && s[k] != '#')
        k++;
    u->auth_n = k - u->auth_off;
    u->rest_off = k;
    size_t h = u->auth_off, e = k;
    for (size_t i = u->auth_off; i < e; i++)
        if (s[i] == '@')
            h = i + 1;
    size_t he = h;
    if (he < e && s[he] == '[') {
        while (he < e && s[he] != ']')
            he++;
        if (he < e)
            he++;
    } else {
        while (he < e && s[he] != ':')
            he++;
    }
    u->host_off = h;
    u->host_n = he - h;
    return 0;
}

static void url_free(url *u)
{
    free(u->s);
    u->s = NULL;
}

/* Shows part of a URL: spaces and controls as %XX so the URL stays one token
 * (browsers ignore some of them), "." as "[.]" when dots is set and we
 * defang. At most max bytes, then "…". */
static void put_url_part(render *r, const char *s, size_t n, size_t max, int dots)
{
    static const char hex[] = "0123456789ABCDEF";
    int cut = 0;
    if (n > max) {
        n = u8cut(s, max);
        cut = 1;
    }
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f) {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            put_content(r, s + run, i - run);
            put_content(r, esc, 3);
            run = i + 1;
        } else if (c == '.' && dots && r->opts->defang) {
            put_content(r, s + run, i - run);
            put_content(r, "[.]", 3);
            run = i + 1;
        }
    }
    put_content(r, s + run, n - run);
    if (cut)
        put_str(r, "\xe2\x80\xa6");
}

static void put_defanged_host(render *r, const char *s, size_t n, size_t max)
{
    put_url_part(r, s, n, max, 1);
}

/* Shows a web or mailto URL (defanged when asked). */
static void put_url(render *r, const url *u)
{
    const char *s = u->s;
    if (u->kind == U_MAILTO) {
        /* dots are defanged in the address parts, not in ?subject=... */
        size_t end = u->n > HT_URL_SHOW_MAX ? u8cut(s, HT_URL_SHOW_MAX) : u->n;
        size_t q = 0;
        while (q < end && s[q] != '?')
            q++;
        size_t i = 0;
        while (i < q) {
            size_t at = i;
            while (at < q && s[at] != '@' && s[at] != ',')
                at++;
            if (at < q && s[at] == '@') {
                size_t e = at;
                while (e < q && s[e] != ',')
                    e++;
                put_url_part(r, s + i, at - i, SIZE_MAX, 0);
                put_url_part(r, s + at, e - at, SIZE_MAX, 1);
                i = e;
            } else {
                put_url_part(r, s + i, at - i + (at < q), SIZE_MAX, 0);
                i = at + (at < q);
            }
        }
        put_url_part(r, s + q, end - q, SIZE_MAX, 0);
        if (end < u->n)
            put_str(r, "\xe2\x80\xa6");
        return;
    }
    if (u->scheme_n) {
        if (r->opts->defang && ci_eq(s, u->scheme_n, "http", 4))
            put_str(r, "hxxp");
        else if (r->opts->defang && ci_eq(s, u->scheme_n, "https", 5))
            put_str(r, "hxxps");
        else if (r->opts->defang && ci_eq(s, u->scheme_n, "ftp", 3))
            put_str(r, "fxp");
        else
            put_content(r, s, u->scheme_n);
        put_str(r, ":");
    }
    put_str(r, "//");
    put_url_part(r, s + u->auth_off, u->auth_n, HT_AUTH_SHOW_MAX, 1);
    put_url_part(r, s + u->rest_off, u->n - u->rest_off, HT_URL_SHOW_MAX, 0);
}

/* Normalizes a host for comparison into o (size HT_HOST_MAX + 1): percent-
 * decoded, ASCII lowercase, IDNA to ASCII, no trailing dot, no "www.".
 * Returns its length. */
static size_t host_norm(render *r, const char *h, size_t n, char *o)
{
    char tmp[HT_HOST_MAX + 1];
    size_t m = 0;
    int nonascii = 0;
    for (size_t i = 0; i < n && m < HT_HOST_MAX; i++) {
        int c = (unsigned char)h[i];
        if (c == '%' && i + 2 < n && is_hex((unsigned char)h[i + 1]) &&
            is_hex((unsigned char)h[i + 2])) {
            c = hexval((unsigned char)h[i + 1]) * 16 + hexval((unsigned char)h[i + 2]);
            i += 2;
        }
        if (c >= 0x80)
            nonascii = 1;
        tmp[m++] = (char)lc(c);
    }
    tmp[m] = 0;
    if (nonascii && !r->idna_failed) {
        UErrorCode ec = U_ZERO_ERROR;
        if (r->idna == NULL) {
            r->idna = uidna_openUTS46(UIDNA_NONTRANSITIONAL_TO_ASCII, &ec);
            if (U_FAILURE(ec)) {
                r->idna = NULL;
                r->idna_failed = 1;
            }
        }
        if (r->idna) {
            UIDNAInfo info = UIDNA_INFO_INITIALIZER;
            char conv[HT_HOST_MAX + 1];
            ec = U_ZERO_ERROR;
            int32_t k = uidna_nameToASCII_UTF8(r->idna, tmp, (int32_t)m, conv, (int32_t)HT_HOST_MAX,
                                               &info, &ec);
            if (U_SUCCESS(ec) && k > 0 && k <= HT_HOST_MAX &&
                (info.errors & ~(uint32_t)(UIDNA_ERROR_EMPTY_LABEL | UIDNA_ERROR_LABEL_TOO_LONG |
                                           UIDNA_ERROR_DOMAIN_NAME_TOO_LONG)) == 0) {
                memcpy(tmp, conv, (size_t)k);
                m = (size_t)k;
                for (size_t i = 0; i < m; i++)
                    tmp[i] = (char)lc((unsigned char)tmp[i]);
            }
        }
    }
    while (m > 0 && tmp[m - 1] == '.')
        m--;
    size_t off = 0;
    if (m > 4 && memcmp(tmp, "www.", 4) == 0)
        off = 4;
    memcpy(o, tmp + off, m - off);
    o[m - off] = 0;
    return m - off;
}

/* A plausible domain name (ASCII, normalized) or IPv4 address. */
static int domain_like(const char *h, size_t n)
{
    static const char *const not_tld[] = {
        "htm", "html", "pdf",  "doc", "docx", "xls",  "xlsx", "ppt", "pptx", "txt",
        "csv", "jpg",  "jpeg", "png", "gif",  "bmp",  "php",  "asp", "aspx", "jsp",
        "cgi", "exe",  "js",   "css", "xml",  "json", "lzh",  "jtd", "msg",  "eml"};
    if (n < 3 || n > 253)
        return 0;
    size_t labels = 0, numeric = 0, ls = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || h[i] == '.') {
            size_t ln = i - ls;
            if (ln == 0 || ln > 63)
                return 0;
            int num = 1;
            for (size_t k = ls; k < i; k++)
                if (!is_digit((unsigned char)h[k]))
                    num = 0;
            numeric += (size_t)num;
            labels++;
            if (i == n) {
                if (labels == 4 && numeric == 4)
                    return 1;
                if (labels < 2)
                    return 0;
                const char *t = h + ls;
                if (ln > 4 && memcmp(t, "xn--", 4) == 0)
                    return 1;
                if (ln < 2)
                    return 0;
                for (size_t k = 0; k < ln; k++)
                    if (!is_alpha((unsigned char)t[k]))
                        return 0;
                if (labels == 2)
                    for (size_t k = 0; k < sizeof not_tld / sizeof not_tld[0]; k++)
                        if (ci_eq(t, ln, not_tld[k], strlen(not_tld[k])))
                            return 0;
                return 1;
            }
            ls = i + 1;
            continue;
        }
        int c = (unsigned char)h[i];
        if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_')
            return 0;
    }
    return 0;
}

/* "scheme://" or "scheme:\\" at the start of t. */
static int text_is_scheme_url(const char *t, size_t n)
{
    size_t k = 0;
    while (k < n && k < 16 && is_alpha((unsigned char)t[k]))
        k++;
    return k > 0 && k + 2 < n && t[k] == ':' && (t[k + 1] == '/' || t[k + 1] == '\\');
}

/* If the link text t[0..n) is as a whole a URL, domain, IPv4 address or mail
 * address, stores the host it names: raw (for display) and normalized.
 * Returns 1 then. */
static int text_host(render *r, const char *t, size_t n, const char **raw, size_t *rawn, char *norm,
                     size_t *normn)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= 0x20)
            return 0;
    const char *h = t;
    size_t hn = n;
    if (ci_prefix(t, n, "mailto:")) {
        h += 7;
        hn -= 7;
    }
    if (text_is_scheme_url(h, hn)) {
        url u;
        if (url_parse(h, hn, &u) < 0)
            return 0;
        int ok = u.kind == U_WEB && u.host_n > 0;
        size_t off = u.host_off, len = u.host_n;
        url_free(&u);
        if (!ok)
            return 0;
        h += off;
        hn = len;
        /* the normalized copy dropped nothing before the host: offsets agree */
    } else {
        size_t e = 0;
        while (e < hn && h[e] != '/' && h[e] != '?' && h[e] != '#')
            e++;
        hn = e;
        size_t at = hn;
        for (size_t i = 0; i < hn; i++)
            if (h[i] == '@')
                at = i;
        if (at < hn) { /* a mail address names the domain after its last '@' */
            h += at + 1;
            hn -= at + 1;
        }
        size_t pe = 0;
        while (pe < hn && h[pe] != ':')
            pe++;
        hn = pe;
    }
    if (hn == 0 || hn > HT_HOST_MAX)
        return 0;
    *normn = host_norm(r, h, hn, norm);
    if (!domain_like(norm, *normn))
        return 0;
    *raw = h;
    *rawn = hn;
    return 1;
}

/* 1 if the link text is the URL itself (so it is not printed twice). */
static int same_url(const char *t, size_t tn, const url *u)
{
    const char *s = u->s;
    size_t n = u->n;
    while (tn > 0 && t[tn - 1] == '/')
        tn--;
    while (n > 0 && s[n - 1] == '/')
        n--;
    if (ci_eq(t, tn, s, n))
        return 1;
    if (u->kind == U_MAILTO && n > 7)
        return ci_eq(t, tn, s + 7, n - 7);
    if (u->kind == U_WEB && u->auth_off <= n)
        return ci_eq(t, tn, s + u->auth_off, n - u->auth_off);
    return 0;
}

static void put_marker(render *r, const char *s, size_t n)
{
    put_str(r,
            r->opts->english ? "[link: " : "[\xe3\x83\xaa\xe3\x83\xb3\xe3\x82\xaf\xe5\x85\x88: ");
    put_content(r, s, n);
    put_str(r, r->opts->english ? " (disabled)]" : " (\xe7\x84\xa1\xe5\x8a\xb9\xe5\x8c\x96)]");
}

static void put_destination(render *r, const url *u)
{
    switch (u->kind) {
    case U_FRAGMENT:
        break;
    case U_RELATIVE:
        r->space = 1;
        if (r->opts->english)
            put_marker(r, "relative URL", 12);
        else
            put_marker(r, "\xe7\x9b\xb8\xe5\xaf\xbe URL", 10);
        break;
    case U_OTHER: {
        size_t n = u->scheme_n > 32 ? 32 : u->scheme_n;
        r->space = 1;
        put_marker(r, u->s, n);
        break;
    }
    case U_TEL:
        r->space = 1;
        put_str(r, "[");
        put_url_part(r, u->s, u->n, 256, 0);
        put_str(r, "]");
        break;
    case U_WEB:
    case U_MAILTO:
        r->space = 1;
        put_str(r, "[");
        put_url(r, u);
        put_str(r, "]");
        break;
    }
}

static void put_warning(render *r, const char *th, size_t thn, const char *uh, size_t uhn)
{
    want(r, 1);
    if (r->opts->english)
        put_str(r, "\xe2\x9a\xa0 Warning: the link text shows ");
    else
        put_str(r, "\xe2\x9a\xa0 \xe6\xb3\xa8\xe6\x84\x8f: "
                   "\xe8\xa1\xa8\xe7\xa4\xba\xe3\x81\x95\xe3\x82\x8c\xe3\x81\xa6\xe3\x81\x84"
                   "\xe3\x82\x8b\xe3\x83\xaa\xe3\x83\xb3\xe3\x82\xaf\xe5\x85\x88 (");
    char low[HT_HOST_MAX + 1];
    size_t m = thn > HT_HOST_MAX ? HT_HOST_MAX : thn;
    for (size_t i = 0; i < m; i++)
        low[i] = (char)lc((unsigned char)th[i]);
    put_defanged_host(r, low, m, 256);
    if (r->opts->english)
        put_str(r, " but the link goes to ");
    else
        put_str(r, ") \xe3\x81\xa8\xe5\xae\x9f\xe9\x9a\x9b\xe3\x81\xae"
                   "\xe3\x83\xaa\xe3\x83\xb3\xe3\x82\xaf\xe5\x85\x88 (");
    m = uhn > HT_HOST_MAX ? HT_HOST_MAX : uhn;
    for (size_t i = 0; i < m; i++)
        low[i] = (char)lc((unsigned char)uh[i]);
    if (m == 0)
        put_str(r, "?");
    put_defanged_host(r, low, m, 256);
    if (!r->opts->english)
        put_str(r, ") \xe3\x81\x8c\xe7\x95\xb0\xe3\x81\xaa\xe3\x82\x8a\xe3\x81\xbe\xe3\x81\x99");
    want(r, 1);
}

/* Rewrites the link text on the current line as defanged text. */
static void redo_text(render *r, frame *f, const char *t, size_t tn, const url *as_url,
                      const char *img_prefix)
{
    char *copy = malloc(tn + 1);
    if (copy == NULL) {
        seterr(r, -ENOMEM);
        return;
    }
    memcpy(copy, t, tn);
    buf_truncate(&r->line, f->line_start);
    /* re-emit in place: breaks and spaces pending after the text stay so */
    int saved_want = r->want, saved_space = r->space, saved_sep = r->cellsep;
    r->want = 0;
    r->space = 0;
    r->cellsep = 0;
    int saved = r->link_depth;
    r->link_depth = 0; /* link text is already collected */
    if (img_prefix)
        put_str(r, img_prefix);
    if (as_url) {
        put_url(r, as_url);
    } else {
        url u;
        if (text_is_scheme_url(copy, tn) && url_parse(copy, tn, &u) == 0) {
            if (u.kind == U_WEB)
                put_url(r, &u);
            else
                put_defanged_host(r, copy, tn, tn);
            url_free(&u);
        } else {
            put_defanged_host(r, copy, tn, tn);
        }
    }
    if (img_prefix)
        put_str(r, "]");
    r->link_depth = saved;
    r->want = saved_want;
    r->space = saved_space;
    r->cellsep = saved_sep;
    free(copy);
}

/* ------------------------------------------------------------------------ */
/* elements                                                                  */

static int hosts_match(const char *t, size_t tn, const char *h, size_t hn)
{
    if (tn == hn)
        return memcmp(t, h, tn) == 0;
    /* a subdomain of the named host can only be made by its owner */
    return hn > tn && h[hn - tn - 1] == '.' && memcmp(h + hn - tn, t, tn) == 0;
}

static void link_leave(render *r, frame *f)
{
    r->link_depth--;
    url u;
    if (url_parse(f->href, strlen(f->href), &u) < 0) {
        seterr(r, -ENOMEM);
        return;
    }
    const char *t = "";
    size_t tn = 0;
    if (!r->lt_over && r->lt.len > f->lt_start) {
        t = (const char *)r->lt.p + f->lt_start;
        tn = r->lt.len - f->lt_start;
        while (tn > 0 && *t == ' ') {
            t++;
            tn--;
        }
        while (tn > 0 && t[tn - 1] == ' ')
            tn--;
    }
    int same_line = f->started && f->serial == r->serial && f->line_start <= r->line.len &&
                    f->line_start >= r->line_pfx;
    int web = u.kind == U_WEB || u.kind == U_MAILTO;
    if (tn > 0 && web && same_url(t, tn, &u)) {
        if (r->opts->defang) {
            if (same_line)
                redo_text(r, f, t, tn, u.kind == U_WEB ? &u : NULL, NULL);
            else
                put_destination(r, &u);
        }
    } else {
        const char *th = NULL;
        size_t thn = 0, tnormn = 0;
        char tnorm[HT_HOST_MAX + 1];
        /* a link that shows only an image names what its alt text names */
        const char *img = r->opts->english ? "[image: " : "[\xe7\x94\xbb\xe5\x83\x8f: ";
        size_t il = strlen(img);
        if (tn > il + 1 && memcmp(t, img, il) == 0 && t[tn - 1] == ']' &&
            memchr(t + il, ']', tn - il - 1) == NULL) {
            t += il;
            tn -= il + 1;
        } else {
            img = NULL;
        }
        int named = tn > 0 && text_host(r, t, tn, &th, &thn, tnorm, &tnormn);
        /* th points into lt; copy before lt may change */
        char thcopy[HT_HOST_MAX + 1];
        if (named) {
            memcpy(thcopy, th, thn);
            th = thcopy;
        }
        if (named && r->opts->defang && same_line)
            redo_text(r, f, t, tn, NULL, img);
        /* keep "text [destination]" together even if a block in the link
         * asked for a break after the text */
        int w = r->want;
        if (same_line)
            r->want = 0;
        put_destination(r, &u);
        want(r, w);
        if (named && web) {
            char unorm[HT_HOST_MAX + 1];
            size_t un = u.host_n > HT_HOST_MAX ? HT_HOST_MAX : u.host_n;
            size_t unormn = host_norm(r, u.s + u.host_off, un, unorm);
            if (!hosts_match(tnorm, tnormn, unorm, unormn)) {
                if (r->st)
                    r->st->link_mismatch++;
                put_warning(r, th, thn, u.s + u.host_off, un);
            }
        }
    }
    url_free(&u);
    if (r->link_depth == 0) {
        buf_reset(&r->lt);
        r->lt_over = 0;
        r->lt_space = 0;
        r->link_unstarted = 0;
    }
}

static void put_img(render *r, const xmlNode *n)
{
    if (r->st)
        r->st->images++;
    long w = attr_long(attr(n, "width"), -1), h = attr_long(attr(n, "height"), -1);
    if (w >= 0 && w <= 2 && h >= 0 && h <= 2)
        return; /* tracking pixel / spacer */
    const char *alt = attr(n, "alt");
    size_t a = 0, b = alt ? strlen(alt) : 0;
    while (a < b &&
           (alt[a] == ' ' || alt[a] == '\t' || alt[a] == '\n' || alt[a] == '\r' || alt[a] == '\f'))
        a++;
    while (b > a && (alt[b - 1] == ' ' || alt[b - 1] == '\t' || alt[b - 1] == '\n' ||
                     alt[b - 1] == '\r' || alt[b - 1] == '\f'))
        b--;
    if (a == b) {
        put_str(r, r->opts->english ? "[image]" : "[\xe7\x94\xbb\xe5\x83\x8f]");
        return;
    }
    char *copy = malloc(b - a + 1);
    if (copy == NULL) {
        seterr(r, -ENOMEM);
        return;
    }
    memcpy(copy, alt + a, b - a);
    copy[b - a] = 0;
    put_str(r, r->opts->english ? "[image: " : "[\xe7\x94\xbb\xe5\x83\x8f: ");
    int pre = r->pre;
    r->pre = 0;
    put_text(r, (const xmlChar *)copy);
    r->pre = pre;
    r->space = 0;
    put_str(r, "]");
    free(copy);
}

static frame *push(render *r, const xmlNode *n, enum ekind k)
{
    if (r->nfr == r->capfr) {
        size_t nc = r->capfr ? r->capfr * 2 : 64;
        frame *nf = realloc(r->fr, nc * sizeof *nf);
        if (nf == NULL) {
            seterr(r, -ENOMEM);
            return NULL;
        }
        r->fr = nf;
        r->capfr = nc;
    }
    if ((k == E_QUOTE || k == E_LI || k == E_DD) && r->npfx == r->cappfx) {
        size_t nc = r->cappfx ? r->cappfx * 2 : 16;
        size_t *np = realloc(r->pfx, nc * sizeof *np);
        if (np == NULL) {
            seterr(r, -ENOMEM);
            return NULL;
        }
        r->pfx = np;
        r->cappfx = nc;
    }
    if (k == E_QUOTE || k == E_LI || k == E_DD)
        r->pfx[r->npfx++] = r->nfr;
    frame *f = &r->fr[r->nfr++];
    memset(f, 0, sizeof *f);
    f->node = n;
    f->kind = (unsigned char)k;
    f->saved_tr = r->tr_top;
    f->saved_list = r->list_top;
    f->saved_cell = r->cell_top;
    f->mark = r->content;
    return f;
}

static int class_mso(const xmlNode *n)
{
    const char *c = attr(n, "class");
    return c && ci_prefix(c, strlen(c), "mso");
}

/* Returns 1 when a frame was pushed (the walk descends and calls leave). */
static int enter(render *r, const xmlNode *n)
{
    enum ekind k = classify(n);
    if (k == E_DROP || k == E_CONTROL) {
        if (r->st)
            r->st->dropped++;
        return 0;
    }
    if (k == E_QUIET)
        return 0;
    if (k == E_VOIDDROP || k == E_VOID) {
        if (k == E_VOIDDROP && r->st)
            r->st->dropped++;
        return push(r, n, E_INLINE) != NULL;
    }
    if (n->properties && !xmlStrEqual(n->name, BAD_CAST "html") &&
        !xmlStrEqual(n->name, BAD_CAST "body") && node_hidden(n)) {
        if (r->st)
            r->st->dropped++;
        return 0;
    }
    if (r->invisible)
        return push(r, n, k == E_HEAD ? E_HEAD : E_INLINE) != NULL;
    switch (k) {
    case E_BR:
        do_br(r);
        return 0;
    case E_IMG:
        put_img(r, n);
        return 0;
    case E_HR:
        block_want(r, 1);
        put_str(r, "--------------------");
        want(r, 1);
        return 0;
    default:
        break;
    }
    frame *f = push(r, n, k);
    if (f == NULL)
        return 0;
    int idx = (int)(r->nfr - 1);
    switch (k) {
    case E_HEAD:
        r->invisible++;
        break;
    case E_PARA:
        if (r->in_li || r->in_cell || r->in_dd || class_mso(n))
            f->kind = E_BLOCK;
        block_want(r, f->kind == E_PARA ? 2 : 1);
        break;
    case E_HEADING:
        block_want(r, 2);
        break;
    case E_PRE:
        block_want(r, 1);
        r->pre++;
        r->pre_nl = 1;
        break;
    case E_DD:
        block_want(r, 1);
        r->in_dd++;
        break;
    case E_LIST:
        block_want(r, 1);
        f->ordered = xmlStrEqual(n->name, BAD_CAST "ol") ? 1 : 0;
        f->counter = f->ordered ? attr_long(attr(n, "start"), 1) : 0;
        r->list_top = idx;
        break;
    case E_LI: {
        block_want(r, 1);
        f->marker = 1;
        r->in_li++;
        if (r->list_top >= 0 && r->fr[r->list_top].ordered) {
            frame *l = &r->fr[r->list_top];
            f->ordered = 1;
            f->counter = attr_long(attr(n, "value"), l->counter);
            l->counter = f->counter + 1;
        }
        break;
    }
    case E_TR:
        block_want(r, 1);
        r->tr_top = idx;
        break;
    case E_CELL:
        r->in_cell++;
        r->cell_top = idx;
        if (r->tr_top >= 0 && r->fr[r->tr_top].cells > 0) {
            r->cellsep = 1;
            if (r->line_has)
                r->want = 0; /* a block that ended the last cell */
        }
        break;
    case E_A: {
        const char *href = attr(n, "href");
        if (href == NULL) {
            f->kind = E_INLINE;
            break;
        }
        if (r->st)
            r->st->links++;
        f->href = href;
        f->lt_start = r->lt.len;
        r->link_depth++;
        r->link_unstarted = 1;
        break;
    }
    case E_BLOCK:
    case E_TABLE:
    case E_QUOTE:
        block_want(r, 1);
        break;
    default:
        break;
    }
    return 1;
}

static void leave(render *r)
{
    frame *f = &r->fr[r->nfr - 1];
    switch (f->kind) {
    case E_HEAD:
        r->invisible--;
        break;
    case E_PARA:
    case E_HEADING:
        want(r, 2);
        break;
    case E_PRE:
        want(r, 1);
        r->pre--;
        r->pre_nl = 0;
        break;
    case E_DD:
        want(r, 1);
        r->in_dd--;
        break;
    case E_LIST:
        want(r, 1);
        r->list_top = f->saved_list;
        break;
    case E_LI:
        want(r, 1);
        r->in_li--;
        break;
    case E_TR:
        want(r, 1);
        r->tr_top = f->saved_tr;
        break;
    case E_CELL:
        collapsible_space(r);
        r->in_cell--;
        r->cell_top = f->saved_cell;
        if (r->content > f->mark && r->tr_top >= 0)
            r->fr[r->tr_top].cells++;
        break;
    case E_A:
        if (f->href)
            link_leave(r, f);
        break;
    case E_BLOCK:
    case E_TABLE:
    case E_QUOTE:
        want(r, 1);
        break;
    default:
        break;
    }
    if (r->npfx > 0 && r->pfx[r->npfx - 1] == r->nfr - 1)
        r->npfx--;
    r->nfr--;
}

/* Iterative pre-order walk with parent/next pointers; frames hold the state
 * that leave() needs, so no recursion at any depth. */
static void walk(render *r, xmlDoc *doc)
{
    size_t base = r->nfr;
    xmlNode *n = doc->children;
    while (n && !r->err) {
        int desc = 0;
        if (n->type == XML_ELEMENT_NODE)
            desc = enter(r, n);
        else if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && !r->invisible &&
                 n->content)
            put_text(r, n->content);
        if (desc && n->children) {
            n = n->children;
            continue;
        }
        if (desc)
            leave(r);
        while (n->next == NULL) {
            n = n->parent;
            if (n == NULL || n->type != XML_ELEMENT_NODE || r->err)
                goto done;
            leave(r);
        }
        n = n->next;
    }
done:
    while (r->nfr > base) { /* only after an error: drop the open frames */
        if (r->npfx > 0 && r->pfx[r->npfx - 1] == r->nfr - 1)
            r->npfx--;
        r->nfr--;
    }
}

/* ------------------------------------------------------------------------ */
/* driver                                                                    */

static int parse_options(void)
{
    return HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET |
           HTML_PARSE_IGNORE_ENC | HTML_PARSE_NODEFDTD |
           XML_PARSE_HUGE; /* safe: our SAX wrappers bound the depth */
}

/* Parses p[0..n) and renders it. Sets *resume to the offset where the parser
 * was stopped at the name limit, else 0. */
static int render_chunk(render *r, const char *p, size_t n, int cap, size_t *resume)
{
    *resume = 0;
    htmlParserCtxtPtr c = htmlNewParserCtxt();
    if (c == NULL)
        return -ENOMEM;
    parse_state ps;
    memset(&ps, 0, sizeof ps);
    ps.cap = cap;
    ps.start = c->sax->startElement;
    ps.end = c->sax->endElement;
    ps.chars = c->sax->characters;
    ps.cdata = c->sax->cdataBlock;
    ps.ws = c->sax->ignorableWhitespace;
    c->sax->startElement = sax_start;
    c->sax->endElement = sax_end;
    c->sax->characters = sax_chars;
    c->sax->cdataBlock = sax_cdata;
    c->sax->ignorableWhitespace = sax_ws;
    c->_private = &ps;
    xmlDoc *doc = htmlCtxtReadMemory(c, p, (int)n, NULL, "UTF-8", parse_options());
    int halted = c->disableSAX && !ps.stopped;
    htmlFreeParserCtxt(c);
    int rc = 0;
    if (doc) {
        walk(r, doc);
        xmlFreeDoc(doc);
    }
    if (r->st)
        r->st->flattened += ps.flattened;
    free(ps.kind);
    if (ps.oom || halted)
        rc = -ENOMEM; /* libxml2 stops only on our request or out of memory */
    else if (ps.stopped && ps.resume > 0 && (size_t)ps.resume <= n)
        *resume = (size_t)ps.resume;
    else if (ps.stopped)
        rc = -EIO; /* cannot happen: position unknown */
    return rc;
}

int htmltext_render(const char *p, size_t n, const htmltext_opts *opts, buf *out,
                    htmltext_stats *stats)
{
    static const htmltext_opts dflt = {1, 0, 0};
    if (out == NULL || (p == NULL && n > 0))
        return -EINVAL;
    if (opts == NULL)
        opts = &dflt;
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (out->err)
        return out->err;
    if (n > ((size_t)INT_MAX - 64) / 3)
        return -EFBIG;
    xmlInitParser();

    int cap = opts->max_depth == 0             ? HT_DEFAULT_DEPTH
              : opts->max_depth < HT_MIN_DEPTH ? HT_MIN_DEPTH
              : opts->max_depth > HT_MAX_DEPTH ? HT_MAX_DEPTH
                                               : (int)opts->max_depth;
    render r;
    memset(&r, 0, sizeof r);
    r.opts = opts;
    r.st = stats;
    r.out = out;
    r.out_base = out->len;
    r.tr_top = r.list_top = r.cell_top = -1;
    buf_init(&r.line, out->max);
    buf_init(&r.lt, HT_LINKTEXT_MAX);

    buf src;
    buf_init(&src, n * 3 + 16);
    int rc = prepass(p ? p : "", n, &src);
    size_t off = 0;
    while (rc == 0 && !r.err && off < src.len) {
        size_t resume;
        rc = render_chunk(&r, (const char *)src.p + off, src.len - off, cap, &resume);
        if (rc || resume == 0)
            break;
        /* The parser stopped at the end of a start tag: go on after it. */
        off += resume;
        if (off < src.len && src.p[off] == '/')
            off++;
        if (off < src.len && src.p[off] == '>')
            off++;
        if (stats)
            stats->restarts++;
        want(&r, 1);
    }
    if (!rc && !r.err) {
        end_line(&r);
    }
    if (!rc)
        rc = r.err;
    buf_free(&src);
    buf_free(&r.line);
    buf_free(&r.lt);
    free(r.fr);
    free(r.pfx);
    if (r.idna)
        uidna_close(r.idna);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Bare addresses in text.
 */

/* ASCII only, whatever the locale. */
static int dt_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int dt_ci(const char *p, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++)
        if ((p[i] >= 'A' && p[i] <= 'Z' ? (char)(p[i] + 32) : p[i]) != lit[i])
            return 0;
    return 1;
}

static int dt_host_char(unsigned char c)
{
    return dt_alnum(c) || c == '-' || c == '.' || c == '_';
}

/* Copies a host starting at p[i], dots as "[.]", and a second host after an
 * '@' (user@host). Returns the index after it. */
static size_t dt_host(const char *p, size_t n, size_t i, buf *out)
{
    for (int round = 0; round < 2; round++) {
        size_t j = i;
        while (j < n && dt_host_char((unsigned char)p[j]))
            j++;
        for (size_t k = i; k < j; k++) {
            /* a dot that ends the host is punctuation, not part of it */
            if (p[k] == '.' && k + 1 < j)
                buf_puts(out, "[.]");
            else
                buf_putc(out, p[k]);
        }
        i = j;
        if (round == 0 && i < n && p[i] == '@' && i + 1 < n &&
            dt_host_char((unsigned char)p[i + 1])) {
            buf_putc(out, '@');
            i++;
            continue;
        }
        break;
    }
    return i;
}

int htmltext_defang_text(const char *p, size_t n, buf *out)
{
    static const struct {
        const char *scheme, *shown;
    } schemes[] = {{"https://", "hxxps://"}, {"http://", "hxxp://"}, {"ftp://", "fxp://"}};
    size_t i = 0, copied = 0;
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        /* only h, f and w can start what is defanged */
        if ((c | 0x20) != 'h' && (c | 0x20) != 'f' && (c | 0x20) != 'w') {
            i++;
            continue;
        }
        int word_start = i == 0 || !dt_alnum((unsigned char)p[i - 1]);
        size_t matched = 0;
        const char *shown = NULL;
        if (word_start && (c == 'h' || c == 'H' || c == 'f' || c == 'F')) {
            for (size_t s = 0; s < sizeof schemes / sizeof schemes[0]; s++) {
                if (dt_ci(p + i, n - i, schemes[s].scheme)) {
                    matched = strlen(schemes[s].scheme);
                    shown = schemes[s].shown;
                    break;
                }
            }
        }
        int www = !matched && word_start && (c == 'w' || c == 'W') && dt_ci(p + i, n - i, "www.") &&
                  i + 4 < n && dt_alnum((unsigned char)p[i + 4]);
        if (!matched && !www) {
            i++;
            continue;
        }
        buf_append(out, p + copied, i - copied);
        if (matched) {
            buf_puts(out, shown);
            i += matched;
        }
        i = dt_host(p, n, i, out);
        copied = i;
    }
    buf_append(out, p + copied, n - copied);
    return out->err;
}
