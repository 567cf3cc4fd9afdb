/*
 * testutil - the few assertion macros the unit tests share. A test program
 * runs every case, prints one line per failure with file:line, and exits
 * non-zero if any failed (meson counts the programs).
 */
#ifndef SEKISHO_TESTUTIL_H
#define SEKISHO_TESTUTIL_H

#include <stdio.h>
#include <string.h>

static int t_failures;
static int t_checks;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        t_checks++;                                                                      \
        if (!(cond)) {                                                                   \
            t_failures++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                \
    } while (0)

#define CHECK_INT(a, b)                                                                  \
    do {                                                                                 \
        long long t_a = (long long)(a), t_b = (long long)(b);                            \
        t_checks++;                                                                      \
        if (t_a != t_b) {                                                                \
            t_failures++;                                                                \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,       \
                    __LINE__, #a, t_a, #b, t_b);                                         \
        }                                                                                \
    } while (0)

#define CHECK_STR(a, b)                                                                  \
    do {                                                                                 \
        const char *t_a = (a), *t_b = (b);                                               \
        t_checks++;                                                                      \
        if (t_a == NULL || t_b == NULL || strcmp(t_a, t_b) != 0) {                       \
            t_failures++;                                                                \
            fprintf(stderr, "%s:%d: %s\n    got:      \"%s\"\n    expected: \"%s\"\n",  \
                    __FILE__, __LINE__, #a, t_a ? t_a : "(null)", t_b ? t_b : "(null)"); \
        }                                                                                \
    } while (0)

/* Substring test. */
#define CHECK_HAS(hay, needle)                                                           \
    do {                                                                                 \
        const char *t_h = (hay), *t_n = (needle);                                        \
        t_checks++;                                                                      \
        if (t_h == NULL || strstr(t_h, t_n) == NULL) {                                   \
            t_failures++;                                                                \
            fprintf(stderr, "%s:%d: \"%s\" not found in:\n%s\n", __FILE__, __LINE__, t_n, \
                    t_h ? t_h : "(null)");                                               \
        }                                                                                \
    } while (0)

#define TEST_DONE()                                                                      \
    do {                                                                                 \
        printf("%d checks, %d failed\n", t_checks, t_failures);                          \
        return t_failures ? 1 : 0;                                                       \
    } while (0)

#endif
