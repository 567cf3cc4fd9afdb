/*
 * msg - diagnostics with Postfix's level semantics. See msg.h.
 */
#include "msg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *progname = "sekisho";
static int verbose;

void msg_set_progname(const char *name)
{
    const char *slash = strrchr(name, '/');
    progname = slash ? slash + 1 : name;
}

const char *msg_progname(void)
{
    return progname;
}

void msg_set_verbose(int level)
{
    verbose = level;
}

int msg_verbose(void)
{
    return verbose;
}

__attribute__((format(printf, 2, 0))) static void vsay(const char *level, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: %s%s", progname, level, *level ? ": " : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void msg_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("", fmt, ap);
    va_end(ap);
}

void msg_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("warning", fmt, ap);
    va_end(ap);
}

void msg_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("fatal", fmt, ap);
    va_end(ap);
    exit(75); /* EX_TEMPFAIL: the environment, not the input, is at fault */
}

void msg_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("panic", fmt, ap);
    va_end(ap);
    abort();
}

void *xmalloc(unsigned long n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        msg_fatal("out of memory allocating %lu bytes", n);
    return p;
}

void *xcalloc(unsigned long n, unsigned long size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        msg_fatal("out of memory allocating %lu x %lu bytes", n, size);
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        msg_fatal("out of memory");
    return p;
}
