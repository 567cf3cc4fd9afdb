/* Unit tests for lib/sanitize: behaviour under small limits, alternative
 * preference, the subject tag, control characters, and the packed result that
 * crosses the sandbox boundary (round trip; every truncation and corruption
 * rejected or harmless). */
#include "policy.h"
#include "sanitize.h"
#include "testutil.h"
#include "util/fileio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static sanitize_ctx *ctx;
static policy *pol;

/* Sanitizes s and returns the final message (static buffer owner: caller frees). */
static char *run(const char *s, sanitize_result *res)
{
    CHECK_INT(sanitize_message(ctx, (const uint8_t *)s, strlen(s), res), 0);
    if (res->verdict != SANITIZE_OK)
        return NULL;
    buf out;
    buf_init(&out, BUF_UNLIMITED);
    CHECK_INT(sanitize_finish(res, "20261123T000000Z-0123456789abcdef", &out), 0);
    return buf_steal(&out, NULL);
}

static const char *body_of(sanitize_result *res)
{
    return buf_cstr(&res->text);
}

static void test_basic_and_tag(void)
{
    sanitize_result res;
    char *out = run("From: a@example.com\r\nSubject: [外部] hello\r\n\r\nline1\r\nline2\x1b[31m\r\n",
                    &res);
    CHECK(out != NULL);
    CHECK_HAS(out, "X-Sekisho-Quarantine-Id: 20261123T000000Z-0123456789abcdef\r\n");
    CHECK_HAS(out, "Content-Type: text/plain; charset=UTF-8\r\n");
    /* tag applied once: the subject already has it */
    CHECK_STR(res.subject, "[外部] hello");
    CHECK(strstr(out, "W+WklumDqF0gW+WklumDqF0") == NULL);
    /* the escape character is gone, the rest of the line stays */
    CHECK_HAS(body_of(&res), "line2[31m");
    CHECK(strchr(body_of(&res), 0x1b) == NULL);
    free(out);
    sanitize_result_free(&res);
}

static void test_alternative(void)
{
    const char *m = "From: a@example.com\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n"
                    "--A\r\nContent-Type: text/plain\r\n\r\nPLAIN\r\n"
                    "--A\r\nContent-Type: text/html\r\n\r\n<p>HTML</p>\r\n--A--\r\n";
    sanitize_result res;
    char *out = run(m, &res);
    CHECK_HAS(body_of(&res), "PLAIN");
    CHECK(strstr(body_of(&res), "HTML") == NULL || strstr(body_of(&res), "HTML形式") != NULL);
    CHECK_INT(res.n_parts, 0);
    free(out);
    sanitize_result_free(&res);
    pol->mail.prefer_html = 1;
    out = run(m, &res);
    CHECK_HAS(body_of(&res), "HTML");
    CHECK(strstr(body_of(&res), "PLAIN") == NULL);
    CHECK_INT(res.html_parts, 1);
    free(out);
    sanitize_result_free(&res);
    pol->mail.prefer_html = 0;
}

static void test_limits(void)
{
    /* depth 3: the inner text at depth 4 is held and counted */
    pol->mail.limits.max_depth = 3;
    const char *deep = "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=1\r\n\r\n"
                       "--1\r\nContent-Type: multipart/mixed; boundary=2\r\n\r\n"
                       "--2\r\nContent-Type: multipart/mixed; boundary=3\r\n\r\n"
                       "--3\r\nContent-Type: text/plain\r\n\r\nDEEP\r\n--3--\r\n--2--\r\n--1--\r\n";
    sanitize_result res;
    char *out = run(deep, &res);
    CHECK(res.flags & SANITIZE_F_DEPTH);
    CHECK(strstr(body_of(&res), "DEEP") == NULL);
    CHECK_HAS(body_of(&res), "入れ子が 3 段より深い部分 1 件");
    free(out);
    sanitize_result_free(&res);
    pol->mail.limits.max_depth = 20;

    /* parts: 3 allowed; the multipart itself is one */
    pol->mail.limits.max_parts = 3;
    const char *many = "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
                       "--B\r\n\r\nP1\r\n--B\r\n\r\nP2\r\n--B\r\n\r\nP3\r\n--B\r\n\r\nP4\r\n--B--\r\n";
    out = run(many, &res);
    CHECK(res.flags & SANITIZE_F_PARTS);
    CHECK_HAS(body_of(&res), "P2");
    CHECK(strstr(body_of(&res), "P3") == NULL);
    CHECK_HAS(body_of(&res), "残り 2 個");
    free(out);
    sanitize_result_free(&res);
    /* more multipart declarations (3) than parts allowed: refused before parsing */
    pol->mail.limits.max_parts = 2;
    out = run(deep, &res);
    CHECK_INT(res.verdict, SANITIZE_REJECT);
    CHECK_HAS(res.reason, "max_parts");
    free(out);
    sanitize_result_free(&res);
    pol->mail.limits.max_parts = 1000;

    /* text limit: cut, flagged */
    pol->mail.limits.max_text_bytes = 100;
    char big[4000];
    snprintf(big, sizeof big, "From: a@example.com\r\n\r\n%s", "");
    memset(big + strlen(big), 'x', 3000);
    big[sizeof big - 1] = 0;
    big[strlen("From: a@example.com\r\n\r\n") + 3000] = 0;
    out = run(big, &res);
    CHECK(res.flags & SANITIZE_F_TEXT);
    free(out);
    sanitize_result_free(&res);
    pol->mail.limits.max_text_bytes = 16 << 20;

    /* message size */
    pol->mail.limits.max_message_bytes = 10;
    out = run("From: a@example.com\r\n\r\nhello\r\n", &res);
    CHECK_INT(res.verdict, SANITIZE_REJECT);
    free(out);
    sanitize_result_free(&res);
    pol->mail.limits.max_message_bytes = 50 << 20;

    /* time limit (CPU time, checked at each part): REJECT, flagged as a
     * timeout so that the gateway defers instead of refusing */
    pol->mail.limits.time_limit_ms = 0;
    out = run("From: a@example.com\r\nMIME-Version: 1.0\r\n"
              "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
              "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n",
              &res);
    CHECK_INT(res.verdict, SANITIZE_REJECT);
    CHECK(res.flags & SANITIZE_F_TIMEOUT);
    CHECK(out == NULL || strstr(out, "hello") == NULL);
    free(out);
    sanitize_result_free(&res);
    pol->mail.limits.time_limit_ms = 30000;
    out = run("From: a@example.com\r\n\r\nhello\r\n", &res);
    CHECK_INT(res.verdict, SANITIZE_OK);
    CHECK(!(res.flags & SANITIZE_F_TIMEOUT));
    free(out);
    sanitize_result_free(&res);
}

static void test_pack(const char *path)
{
    buf in;
    buf_init(&in, 1 << 24);
    CHECK_INT(fileio_read_file(path, &in), 0);
    sanitize_result res;
    CHECK_INT(sanitize_message(ctx, in.p, in.len, &res), 0);
    buf packed;
    buf_init(&packed, BUF_UNLIMITED);
    CHECK_INT(sanitize_result_pack(&res, &packed), 0);

    sanitize_result back;
    size_t used = 0;
    CHECK_INT(sanitize_result_unpack(packed.p, packed.len, &back, &used), 0);
    CHECK_INT(used, packed.len);
    buf a, b;
    buf_init(&a, BUF_UNLIMITED);
    buf_init(&b, BUF_UNLIMITED);
    CHECK_INT(sanitize_finish(&res, "ID", &a), 0);
    CHECK_INT(sanitize_finish(&back, "ID", &b), 0);
    CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
    CHECK_INT(back.n_parts, res.n_parts);
    CHECK_STR(back.subject, res.subject);
    sanitize_result_free(&back);

    /* Every truncation is rejected. */
    int truncations_rejected = 1;
    for (size_t cut = 0; cut < packed.len; cut++) {
        if (sanitize_result_unpack(packed.p, cut, &back, NULL) != -EBADMSG)
            truncations_rejected = 0;
        sanitize_result_free(&back);
    }
    CHECK(truncations_rejected);
    /* Corrupting any byte never crashes; accepted results stay well-formed. */
    for (size_t i = 0; i < packed.len; i += 7) {
        uint8_t saved = packed.p[i];
        packed.p[i] ^= 0xA5;
        if (sanitize_result_unpack(packed.p, packed.len, &back, NULL) == 0) {
            buf f;
            buf_init(&f, BUF_UNLIMITED);
            if (back.verdict == SANITIZE_OK)
                CHECK_INT(sanitize_finish(&back, "ID", &f), 0);
            buf_free(&f);
        }
        sanitize_result_free(&back);
        packed.p[i] = saved;
    }
    buf_free(&a);
    buf_free(&b);
    buf_free(&packed);
    buf_free(&in);
    sanitize_result_free(&res);
}

static void test_pack_injection(void)
{
    sanitize_result res;
    char *out = run("From: a@example.com\r\n\r\nx\r\n", &res);
    free(out);
    /* A compromised worker adds a header of its own: refused. */
    buf_puts(&res.headers, "Bcc: spy@example.net\r\n");
    buf packed;
    buf_init(&packed, BUF_UNLIMITED);
    CHECK_INT(sanitize_result_pack(&res, &packed), 0);
    sanitize_result back;
    CHECK_INT(sanitize_result_unpack(packed.p, packed.len, &back, NULL), -EBADMSG);
    sanitize_result_free(&back);
    /* ... or smuggles a header line through a one-line field. */
    buf_truncate(&res.headers, res.headers.len - strlen("Bcc: spy@example.net\r\n"));
    snprintf(res.charsets, sizeof res.charsets, "%s", "UTF-8\r\nBcc: spy@example.net");
    buf_reset(&packed);
    CHECK_INT(sanitize_result_pack(&res, &packed), 0);
    CHECK_INT(sanitize_result_unpack(packed.p, packed.len, &back, NULL), -EBADMSG);
    sanitize_result_free(&back);
    res.charsets[0] = 0;
    buf_puts(&res.headers, "Bcc: spy@example.net\r\n");
    /* Trailing bytes are reported through used, not ignored silently. */
    buf_truncate(&res.headers, res.headers.len - strlen("Bcc: spy@example.net\r\n"));
    buf_reset(&packed);
    CHECK_INT(sanitize_result_pack(&res, &packed), 0);
    size_t len = packed.len, used = 0;
    buf_puts(&packed, "extra");
    CHECK_INT(sanitize_result_unpack(packed.p, packed.len, &back, &used), 0);
    CHECK_INT(used, len);
    sanitize_result_free(&back);
    buf_free(&packed);
    sanitize_result_free(&res);
}

int main(void)
{
    pol = policy_default();
    ctx = sanitize_new(pol);
    CHECK(ctx != NULL);
    test_basic_and_tag();
    test_alternative();
    test_limits();
    const char *src = getenv("SEKISHO_SRCDIR");
    char path[4096];
    static const char *const files[] = {"attach-pdf-exe", "forwarded-rfc822", "jp-cp50221-outlook",
                                        "html-only"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/tests/corpus/composed/%s.eml", src ? src : ".", files[i]);
        test_pack(path);
    }
    test_pack_injection();
    sanitize_free(ctx);
    policy_free(pol);
    TEST_DONE();
}
