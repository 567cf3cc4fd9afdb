/*
 * htmltext - HTML to readable plain text, by walking the tree of a real HTML
 * parser (libxml2's HTMLparser, error-tolerant, no network).
 *
 * Rendering: block elements (p, div, h1-h6, li, tr, blockquote, pre, ...) start new
 * lines; br breaks; lists get "・" (ul) or "1." (ol) markers; table rows become one
 * line with cells separated by " | "; headings are set apart by blank lines;
 * whitespace collapses outside pre. script, style, iframe, object, embed, form,
 * template, noscript and head content is dropped (counted in stats). Images
 * become their alt text in brackets. Links are shown so the reader sees the real
 * destination: "text [hxxps://host[.]example/path]" when defanging (default),
 * "text [https://host.example/path]" otherwise, and a warning line when the
 * visible text names a different host than the href (phishing).
 */
#ifndef SEKISHO_HTMLTEXT_H
#define SEKISHO_HTMLTEXT_H

#include "util/buf.h"

#include <stddef.h>

typedef struct htmltext_opts {
    int defang;          /* 1: hxxp and [.] in shown URLs */
    int english;         /* 1: warnings in English, else Japanese */
    size_t max_depth;    /* elements nested deeper are flattened to their text
                          * (0: default 128; clamped to 8..200) */
} htmltext_opts;

typedef struct htmltext_stats {
    size_t links;          /* a elements with an href */
    size_t link_mismatch;  /* links whose text names another host */
    size_t dropped;        /* script/style/iframe/object/embed/form/... elements dropped */
    size_t images;         /* img elements */
    size_t flattened;      /* elements nested deeper than max_depth, rendered flat */
    size_t restarts;       /* parses restarted after too many open elements */
} htmltext_stats;

/* Renders UTF-8 HTML p[0..n) into out (UTF-8 text, LF line ends, no trailing blank
 * lines). stats may be NULL. Returns 0 or a negative errno (-ENOSPC at out's max).
 * The text is appended to out; opts may be NULL (defang, Japanese, default depth);
 * stats is zeroed first. */
int htmltext_render(const char *p, size_t n, const htmltext_opts *opts, buf *out,
                    htmltext_stats *stats);

/*
 * Appends p[0..n) (UTF-8 text) to out with every bare web address made
 * unclickable the same way links are shown: "http://", "https://" and
 * "ftp://" become "hxxp://", "hxxps://" and "fxp://", and the dots of the host
 * (also of a "www." name without a scheme, and of the host after a user@
 * part) become "[.]". Mail clients turn such text into links by themselves,
 * so a text body needs this as much as an HTML one. Text already defanged is
 * left as it is. Linear. Returns 0 or a negative errno (-ENOSPC at out's max).
 */
int htmltext_defang_text(const char *p, size_t n, buf *out);

#endif
