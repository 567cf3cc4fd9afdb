/* Unit tests for lib/decision: the fields of each decision type, strings that
 * are not UTF-8, and entries that land in a real ledger and verify. */
#include "decision.h"
#include "testutil.h"

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *fields(const char *type, const decision_mail *m, buf *b)
{
    buf_reset(b);
    CHECK_INT(decision_mail_fields(type, m, b), 0);
    return buf_cstr(b);
}

static void test_fields(void)
{
    buf b;
    buf_init(&b, 1 << 20);
    const char *rcpt[] = {"a@town.example.lg.jp", "b@town.example.lg.jp"};
    decision_mail m = {.quarantine_id = "20261123T000000Z-0123456789abcdef",
                       .message_id = "<x@example.com>",
                       .from = "山田 <y@example.com>",
                       .rcpt = rcpt,
                       .n_rcpt = 2,
                       .client_addr = "192.0.2.1",
                       .zone = "インターネット接続系",
                       .size = 1234,
                       .sha256 = "ab",
                       .reason = "too deep"};
    CHECK_STR(fields("mail.received", &m, &b),
              "{\"quarantine_id\":\"20261123T000000Z-0123456789abcdef\",\"message_id\":"
              "\"<x@example.com>\",\"from\":\"山田 <y@example.com>\",\"rcpt\":[\"a@town.example."
              "lg.jp\",\"b@town.example.lg.jp\"],\"client_addr\":\"192.0.2.1\",\"zone\":\"インター"
              "ネット接続系\",\"size\":1234,\"sha256\":\"ab\"}");
    CHECK_STR(fields("mail.passed", &m, &b),
              "{\"message_id\":\"<x@example.com>\",\"from\":\"山田 <y@example.com>\",\"rcpt\":"
              "[\"a@town.example.lg.jp\",\"b@town.example.lg.jp\"],\"client_addr\":\"192.0.2.1\","
              "\"zone\":\"インターネット接続系\"}");
    CHECK_STR(fields("mail.held", &m, &b),
              "{\"quarantine_id\":\"20261123T000000Z-0123456789abcdef\",\"message_id\":\"<x@"
              "example.com>\",\"reason\":\"too deep\"}");
    m.quarantine_id = NULL;
    m.reason = NULL;
    CHECK_STR(fields("mail.tempfail", &m, &b),
              "{\"message_id\":\"<x@example.com>\",\"reason\":\"\"}");
    decision_mail s = {
        .quarantine_id = "q", .removed_parts = 2, .output_size = 10, .output_sha256 = "cd"};
    CHECK_STR(fields("mail.sanitized", &s, &b),
              "{\"quarantine_id\":\"q\",\"removed_parts\":2,\"output_size\":10,"
              "\"output_sha256\":\"cd\"}");
    buf_reset(&b);
    CHECK_INT(decision_mail_fields("mail.nonsense", &s, &b), -EINVAL);

    /* strings: escapes, control characters, bytes that are not UTF-8 */
    buf_reset(&b);
    decision_json_str(&b, "a\"b\\c\n\x01");
    CHECK_STR(buf_cstr(&b), "\"a\\\"b\\\\c\\n\\u0001\"");
    buf_reset(&b);
    decision_json_str(&b, "x\xff\xe3\x81y\xed\xa0\x80z\xe3\x81\x82");
    CHECK_STR(buf_cstr(&b), "\"x\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDy\xEF\xBF\xBD\xEF\xBF\xBD"
                            "\xEF\xBF\xBDz\xE3\x81\x82\"");
    /* a huge header value is cut and says so */
    char *huge = malloc(100001);
    memset(huge, 'x', 100000);
    memcpy(huge + 2046, "\xE3\x81\x82", 3); /* a character across the cut */
    huge[100000] = 0;
    decision_mail hm = {.message_id = huge, .reason = "r"};
    fields("mail.held", &hm, &b);
    CHECK(b.len < 2200);
    CHECK_HAS(buf_cstr(&b), "xx…(100000 bytes in all)");
    free(huge);
    buf_reset(&b);
    decision_json_str(&b, NULL);
    CHECK_STR(buf_cstr(&b), "\"\"");
    buf_free(&b);
}

/* Into a ledger created on first use; the entries read back as written. */
static void test_ledger(void)
{
    char tmpl[] = "/tmp/decision-test-XXXXXX";
    CHECK(mkdtemp(tmpl) != NULL);
    char dir[256], key[256];
    snprintf(dir, sizeof dir, "%s/ledger", tmpl);
    snprintf(key, sizeof key, "%s/key", tmpl);
    policy *pol = policy_default();
    free(pol->ledger.key_file);
    pol->ledger.key_file = strdup(key);
    buf err;
    buf_init(&err, 4096);
    ledger *l = decision_ledger_open(pol, dir, &err);
    CHECK(l != NULL);
    if (l == NULL) {
        fprintf(stderr, "%s\n", buf_cstr(&err));
        return;
    }
    decision_mail m = {.quarantine_id = "20261123T000000Z-0123456789abcdef",
                       .message_id = "<bad\xff@example.com>",
                       .to = "t@example.com",
                       .size = 5,
                       .sha256 = "00"};
    CHECK_INT(decision_mail_append(l, "sekisho sanitize", "mail.received", &m, &err), 0);
    CHECK_INT(decision_mail_append(l, "sekisho sanitize", "mail.held", &m, &err), 0);
    CHECK(decision_mail_append(l, "sekisho sanitize", "mail.bogus", &m, &err) < 0);
    CHECK_INT(ledger_commit(l, &err), 0);
    buf e;
    buf_init(&e, 1 << 20);
    CHECK_INT(ledger_get(l, 1, &e, &err), 0);
    CHECK_HAS(buf_cstr(&e), "\"type\":\"mail.held\"");
    CHECK_HAS(buf_cstr(&e), "\"message_id\":\"<bad\xEF\xBF\xBD@example.com>\"");
    CHECK_HAS(buf_cstr(&e), "\"source\":\"sekisho sanitize\"");
    CHECK_INT(ledger_close(l, &err), 0);
    /* opened again: not created again */
    l = decision_ledger_open(pol, dir, &err);
    CHECK(l != NULL);
    if (l)
        CHECK_INT(ledger_size(l), 2);
    ledger_close(l, &err);
    buf_free(&e);
    buf_free(&err);
    policy_free(pol);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    CHECK_INT(system(cmd), 0);
}

int main(void)
{
    test_fields();
    test_ledger();
    TEST_DONE();
}
