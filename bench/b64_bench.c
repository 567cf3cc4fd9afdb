/*
 * b64_bench - lib/b64 against what the sanitizer uses today, in one run:
 *   decode: GMime's g_mime_encoding_base64_decode_step (one call, state 0)
 *           vs b64_decode_mime (the automatic choice, and the portable path)
 *   encode: GLib's g_base64_encode + the 76-column CRLF cut of sanitize_finish
 *           vs b64_encode_lines
 * on random bytes (deterministic) encoded at 76 columns with CRLF and with LF.
 *
 *   b64_bench [MB [REPS]]      (default 8 MB of raw data, 15 repetitions)
 *
 * Each repetition runs every implementation once, in turn, so that a noisy
 * neighbour slows all of them alike; the figure is the median repetition, in
 * the thread's CPU time.
 * Throughput is in MB/s (10^6 bytes) of encoded text for the decoders and of
 * raw data for the encoders. Every output is compared with the peer's first;
 * a difference aborts.
 */
#include "b64.h"

#include <gmime/gmime.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU time of this thread: on a shared machine, time spent waiting for the
 * CPU would otherwise count against whichever implementation is slower (and
 * so more often preempted). */
static double now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) {
        perror("clock_gettime");
        exit(1);
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* What sanitize_finish does today: GLib's encoder, then 76-character lines. */
static void glib_encode_lines(const uint8_t *p, size_t n, buf *out)
{
    gchar *enc = g_base64_encode(p, n);
    size_t el = strlen(enc);
    for (size_t i = 0; i < el; i += 76) {
        buf_append(out, enc + i, el - i < 76 ? el - i : 76);
        buf_puts(out, "\r\n");
    }
    g_free(enc);
}

static size_t gmime_decode(const uint8_t *in, size_t n, uint8_t *out)
{
    int state = 0;
    guint32 save = 0;
    return g_mime_encoding_base64_decode_step(in, n, out, &state, &save);
}

static size_t decode_auto(const uint8_t *in, size_t n, uint8_t *out)
{
    return b64_decode_mime(in, n, out);
}

static size_t decode_portable(const uint8_t *in, size_t n, uint8_t *out)
{
    return b64_decode_mime_impl(B64_IMPL_PORTABLE, in, n, out);
}

typedef size_t (*decoder)(const uint8_t *, size_t, uint8_t *);

static void bench_decode(const char *label, const buf *text, size_t raw_len, int reps)
{
    static const struct {
        const char *name;
        decoder fn;
    } impls[] = {
        {"GMime 3.2.13 decode_step", gmime_decode},
        {"b64_decode_mime", decode_auto},
        {"b64_decode_mime, portable", decode_portable},
    };
    enum { N = sizeof impls / sizeof impls[0] };
    double *t[N];
    uint8_t *out[N];
    for (int i = 0; i < N; i++) {
        t[i] = calloc((size_t)reps, sizeof(double));
        out[i] = malloc(b64_decoded_max(text->len));
        if (t[i] == NULL || out[i] == NULL) {
            perror("malloc");
            exit(1);
        }
    }
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < N; i++) {
            double t0 = now();
            size_t got = impls[i].fn(text->p, text->len, out[i]);
            t[i][r] = now() - t0;
            if (got != raw_len || memcmp(out[i], out[0], raw_len) != 0) {
                fprintf(stderr, "b64_bench: %s: %s decodes differently\n", label, impls[i].name);
                exit(1);
            }
        }
    }
    double base = median(t[0], reps);
    for (int i = 0; i < N; i++) {
        double m = median(t[i], reps);
        printf("| decode, %s | %s | %.0f MB/s | %.2f× |\n", label, impls[i].name,
               (double)text->len / m / 1e6, base / m);
        free(t[i]);
        free(out[i]);
    }
}

static void bench_encode(const uint8_t *raw, size_t n, int reps)
{
    double *tg = calloc((size_t)reps, sizeof(double));
    double *tb = calloc((size_t)reps, sizeof(double));
    if (tg == NULL || tb == NULL) {
        perror("calloc");
        exit(1);
    }
    buf g, b;
    buf_init(&g, BUF_UNLIMITED);
    buf_init(&b, BUF_UNLIMITED);
    for (int r = 0; r < reps; r++) {
        buf_reset(&g);
        double t0 = now();
        glib_encode_lines(raw, n, &g);
        tg[r] = now() - t0;
        buf_reset(&b);
        t0 = now();
        int rc = b64_encode_lines(raw, n, &b);
        tb[r] = now() - t0;
        if (rc != 0 || g.err != 0 || g.len != b.len || memcmp(g.p, b.p, g.len) != 0) {
            fprintf(stderr, "b64_bench: the encoders differ\n");
            exit(1);
        }
    }
    double mg = median(tg, reps), mb = median(tb, reps);
    printf("| encode + 76-col CRLF | GLib g_base64_encode + cut | %.0f MB/s | 1.00× |\n",
           (double)n / mg / 1e6);
    printf("| encode + 76-col CRLF | b64_encode_lines | %.0f MB/s | %.2f× |\n",
           (double)n / mb / 1e6, mg / mb);
    buf_free(&g);
    buf_free(&b);
    free(tg);
    free(tb);
}

/* CRLF line ends to LF. */
static void to_lf(const buf *crlf, buf *lf)
{
    for (size_t i = 0; i < crlf->len; i++)
        if (crlf->p[i] != '\r')
            buf_putc(lf, crlf->p[i]);
}

int main(int argc, char **argv)
{
    double mb = argc > 1 ? atof(argv[1]) : 8;
    int reps = argc > 2 ? atoi(argv[2]) : 15;
    if (!(mb > 0 && mb <= 1024) || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: b64_bench [MB (0-1024] [REPS 1-1000]]\n");
        return 2;
    }
    g_mime_init();
    size_t n = (size_t)(mb * 1e6);
    uint8_t *raw = malloc(n);
    if (raw == NULL) {
        perror("malloc");
        return 1;
    }
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        raw[i] = (uint8_t)(x >> 24);
    }
    buf crlf, lf;
    buf_init(&crlf, BUF_UNLIMITED);
    buf_init(&lf, BUF_UNLIMITED);
    glib_encode_lines(raw, n, &crlf);
    to_lf(&crlf, &lf);
    if (crlf.err || lf.err) {
        fprintf(stderr, "b64_bench: out of memory\n");
        return 1;
    }
    enum b64_impl impl = b64_impl_resolve(B64_IMPL_AUTO);
    printf("b64_bench: %.1f MB of random bytes (%.1f MB as CRLF base64), median of %d; "
           "automatic choice: %s\n\n",
           (double)n / 1e6, (double)crlf.len / 1e6, reps,
           impl == B64_IMPL_AVX2 ? "AVX2" : "portable");
    printf("| work | implementation | throughput | vs GMime/GLib |\n|---|---|---|---|\n");
    bench_decode("76-col CRLF", &crlf, n, reps);
    bench_decode("76-col LF", &lf, n, reps);
    bench_encode(raw, n, reps);
    buf_free(&crlf);
    buf_free(&lf);
    free(raw);
    return 0;
}
