/*
 * buf - a length-carrying, binary-safe byte buffer with a hard maximum.
 *
 * Every buffer has a ceiling (max) fixed at init. An append that would pass it
 * fails with -ENOSPC, sets the sticky error flag and leaves the content as it
 * was, so a caller can append many times and check buf->err once at the end.
 * The content is always NUL-terminated one byte past len (not counted in len),
 * so text buffers can be handed to C string APIs; binary content may contain
 * NULs itself.
 *
 * Ownership: the buffer owns p. buf_free() releases it; buf_steal() hands it
 * to the caller. A zeroed struct after buf_init() is valid and empty.
 */
#ifndef SEKISHO_BUF_H
#define SEKISHO_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    uint8_t *p;  /* content, NUL-terminated at p[len]; NULL while empty */
    size_t len;  /* bytes in use */
    size_t cap;  /* bytes allocated (excluding the terminator) */
    size_t max;  /* hard ceiling on len */
    int err;     /* sticky: first error (-ENOSPC or -ENOMEM), 0 if none */
} buf;

#define BUF_UNLIMITED ((size_t)1 << 40)

void buf_init(buf *b, size_t max);
void buf_free(buf *b);
void buf_reset(buf *b);
/* Returns the content and leaves b empty; the caller frees it. Never NULL
 * unless allocation failed (an empty buffer gives an empty string). */
char *buf_steal(buf *b, size_t *len);

int buf_reserve(buf *b, size_t extra);
int buf_append(buf *b, const void *p, size_t n);
int buf_puts(buf *b, const char *s);
/* One byte; inline when it fits, the common case in byte-wise loops. */
int buf_putc_slow(buf *b, int c);
static inline int buf_putc(buf *b, int c)
{
    if (b->err == 0 && b->p != NULL && b->len < b->cap && b->len < b->max) {
        b->p[b->len++] = (uint8_t)c;
        b->p[b->len] = 0;
        return 0;
    }
    return buf_putc_slow(b, c);
}
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Shortens the content to n bytes (n <= len). */
void buf_truncate(buf *b, size_t n);
/* Content as a C string; "" for an empty buffer. */
const char *buf_cstr(const buf *b);

#endif
