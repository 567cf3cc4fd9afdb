/*
 * buf - length-carrying byte buffer with a hard maximum. See buf.h.
 *
 * Growth doubles the capacity, clamped to the maximum; every size computation
 * is checked for overflow before it is used.
 */
#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void buf_free(buf *b)
{
    if (b == NULL)
        return;
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->err = 0;
}

void buf_reset(buf *b)
{
    b->len = 0;
    b->err = 0;
    if (b->p)
        b->p[0] = 0;
}

char *buf_steal(buf *b, size_t *len)
{
    char *s = (char *)b->p;
    if (s == NULL)
        s = calloc(1, 1);
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return s;
}

int buf_reserve(buf *b, size_t extra)
{
    if (b->err)
        return b->err;
    if (extra > b->max || b->len > b->max - extra) {
        b->err = -ENOSPC;
        return b->err;
    }
    size_t need = b->len + extra;
    if (need <= b->cap && b->p)
        return 0;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    if (ncap > b->max)
        ncap = b->max;
    uint8_t *np = realloc(b->p, ncap + 1);
    if (np == NULL) {
        b->err = -ENOMEM;
        return b->err;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

int buf_append(buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int buf_puts(buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_putc_slow(buf *b, int c)
{
    uint8_t ch = (uint8_t)c;
    return buf_append(b, &ch, 1);
}

int buf_vprintf(buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        if (!b->err)
            b->err = -EINVAL;
        return b->err;
    }
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void buf_truncate(buf *b, size_t n)
{
    if (n < b->len) {
        b->len = n;
        b->p[n] = 0;
    }
}

const char *buf_cstr(const buf *b)
{
    return b->p ? (const char *)b->p : "";
}
