/*
 * mimehdr_test - table-driven checks of header decoding (RFC 2047, RFC 2231,
 * raw 8-bit, the forms Japanese clients send) and encoding (RFC 2047 B words
 * in UTF-8, folding, address lists). Byte vectors were written once by
 * nkf 2.1.5 (CP50221, CP932, CP51932) and embedded here.
 */
#include "charset.h"
#include "mimehdr.h"

#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define NIHONGO "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"                         /* 日本語 */
#define NEC_IBM "\xe2\x91\xa0\xe3\x88\xb1\xe9\xab\x99\xef\xa8\x91\xe3\x81\xae\xe4\xbb\xb6" /* ①㈱髙﨑の件 */
#define YAMADA "\xe5\xb1\xb1\xe7\x94\xb0 \xe5\xa4\xaa\xe9\x83\x8e"            /* 山田 太郎 */
#define HYOUJI "\xe8\xa1\xa8\xe7\xa4\xba"                                     /* 表示 */
#define TAKAHASHI_TXT "\xe9\xab\x99\xe6\xa9\x8b.txt"                           /* 髙橋.txt */

struct dec {
    const char *in;
    const char *expect;
    size_t replaced;
};

static void test_decode_text(void)
{
    static const struct dec t[] = {
        {"Hello world", "Hello world", 0},
        {"", "", 0},
        {"=?UTF-8?B?5pel5pys6Kqe?=", NIHONGO, 0},
        {"=?utf-8?b?5pel5pys6Kqe?=", NIHONGO, 0},
        {"=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=", NIHONGO, 0},
        {"=?iso-2022-jp?B?GyRCLSEtanxieXUkTjdvGyhC?=", NEC_IBM, 0},
        {"=?Shift_JIS?B?h0CHivv8+rGCzIyP?=", NEC_IBM, 0},
        {"=?x-sjis?B?h0CHivv8+rGCzIyP?=", NEC_IBM, 0},
        {"=?EUC-JP?B?raGt6vzi+fWkzrfv?=", NEC_IBM, 0},
        /* a character split across two words, joined as bytes */
        {"=?UTF-8?B?5pel5g==?= =?UTF-8?B?nKw=?=", "\xe6\x97\xa5\xe6\x9c\xac", 0},
        {"=?UTF-8?B?5pel5g==?=\r\n =?UTF-8?B?nKw=?=", "\xe6\x97\xa5\xe6\x9c\xac", 0},
        {"=?iso-2022-jp?B?GyRCLSEt?=\r\n\t=?ISO-2022-JP?B?anxieXUkTjdvGyhC?=", NEC_IBM, 0},
        /* different charsets: each converted, the white space still dropped */
        {"=?iso-2022-jp?B?GyRCRnxLXDhsGyhC?= =?utf-8?q?abc?=", NIHONGO "abc", 0},
        {"=?iso-8859-1?q?caf=E9_cr=E8me?=", "caf\xc3\xa9 cr\xc3\xa8me", 0},
        {"=?utf-8?q?a?= =?utf-8?q?b?= c", "ab c", 0},
        {"Re: =?utf-8?q?a?= c =?utf-8?q?d?=", "Re: a c d", 0},
        {"Re:=?utf-8?q?a?=", "Re:a", 0},
        {"=?UTF-8*ja?B?5pel?=", "\xe6\x97\xa5", 0},
        {"=?utf-8?B?" "?=x", "x", 0},
        {"=?utf-8?B?5pel?==?utf-8?B?5pys?=", "\xe6\x97\xa5\xe6\x9c\xac", 0},
        /* lenient base64: missing padding, stray characters */
        {"=?utf-8?B?5pel5pys6Kqe====?=", NIHONGO, 0},
        {"=?utf-8?B?5pe.l5pys6Kqe?=", NIHONGO, 0},
        /* not encoded words: kept as they are */
        {"=?utf-8?X?abc?=", "=?utf-8?X?abc?=", 0},
        {"=?utf-8?B?abc", "=?utf-8?B?abc", 0},
        {"=?utf-8?B?a bc?=", "=?utf-8?B?a bc?=", 0},
        {"a =? b ?= c", "a =? b ?= c", 0},
        {"=?=?=?=?", "=?=?=?=?", 0},
        /* unfolding */
        {"plain\r\n text", "plain text", 0},
        {"plain\n\ttext", "plain\ttext", 0},
        {"a\r\nb", "a b", 0},
        /* raw 8-bit and raw JIS */
        {"Re: \x93\xfa\x96\x7b\x8c\xea\x82\xcc\x8c\x8f", "Re: " NIHONGO "\xe3\x81\xae\xe4\xbb\xb6", 0},
        {"Re: \x1b$BF|K\\8l\x1b(B", "Re: " NIHONGO, 0},
        {"Re: " NIHONGO, "Re: " NIHONGO, 0},
        {"\xc6\xfc\xcb\xdc\xb8\xec\xa4\xce\xb7\xef", NIHONGO "\xe3\x81\xae\xe4\xbb\xb6", 0},
        /* unknown charset label in a word: detected */
        {"=?unknown-8bit?B?5pel5pys6Kqe?=", NIHONGO, 0},
        {"=?x-bogus?B?k/qWe4zq?=", NIHONGO, 0},
        /* damaged: an invalid sequence is counted, not dropped */
        {"=?utf-8?B?5pel5pys6Kqe5pel5pys6Kqe5g==?=", NIHONGO NIHONGO "\xef\xbf\xbd", 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        buf b;
        buf_init(&b, 1 << 16);
        size_t rep = 0;
        int rc = mimehdr_decode_text(t[i].in, strlen(t[i].in), &b, &rep);
        CHECK_INT(rc, 0);
        CHECK_STR(buf_cstr(&b), t[i].expect);
        CHECK_INT(rep, t[i].replaced);
        buf_free(&b);
    }
}

struct par {
    const char *raw;
    const char *name;
    int rc;
    const char *expect;
};

static void test_param(void)
{
    static const struct par t[] = {
        {"text/plain; charset=us-ascii", "charset", 0, "us-ascii"},
        {"text/plain; CHARSET=\"ISO-2022-JP\"", "charset", 0, "ISO-2022-JP"},
        {"text/plain; charset=us-ascii (Plain text)", "charset", 0, "us-ascii"},
        {"text/plain; format=flowed", "charset", -ENOENT, ""},
        {"text/plain", "charset", -ENOENT, ""},
        {"", "charset", -ENOENT, ""},
        {"attachment; filename=\"=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=.txt\"", "filename", 0,
         NIHONGO ".txt"},
        {"attachment; filename=\"=?ISO-2022-JP?B?GyRCLSEt?= =?ISO-2022-JP?B?anxieXUkTjdvGyhC?=\"",
         "filename", 0, NEC_IBM},
        {"attachment; filename==?UTF-8?B?5pel?=", "filename", 0, "\xe6\x97\xa5"},
        {"attachment; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt", "filename", 0,
         "\xe6\x97\xa5\xe6\x9c\xac.txt"},
        {"attachment; filename*=utf-8'ja'%E6%97%A5", "filename", 0, "\xe6\x97\xa5"},
        {"attachment; filename*=iso-2022-jp''%1B%24%42%7C%62%36%36%1B%28%42%2E%74%78%74",
         "filename", 0, TAKAHASHI_TXT},
        /* continuations, split inside a character, out of order, mixed */
        {"attachment; filename*0*=UTF-8''%E6%97; filename*1*=%A5%E6%9C%AC; filename*2=.txt",
         "filename", 0, "\xe6\x97\xa5\xe6\x9c\xac.txt"},
        {"attachment; filename*2=.txt; filename*0*=UTF-8''%E6%97; filename*1*=%A5%E6%9C%AC",
         "filename", 0, "\xe6\x97\xa5\xe6\x9c\xac.txt"},
        {"attachment;\r\n filename*0=\"long\";\r\n filename*1=\" name.txt\"", "filename", 0,
         "long name.txt"},
        {"attachment; name*0=\"=?ISO-2022-JP?B?GyRCRnxL\"; name*1=\"XDhsGyhC?=\"", "name", 0,
         NIHONGO},
        /* RFC 2231 wins over the plain value */
        {"attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E6%97%A5", "filename", 0,
         "\xe6\x97\xa5"},
        /* quoting */
        {"x; name=\"a \\\"b\\\" \\\\ c\"", "name", 0, "a \"b\" \\ c"},
        {"x; name=\"a;b\"; other=1", "name", 0, "a;b"},
        {"x; name=\"a;b\"; other=1", "other", 0, "1"},
        {"x; name=\"unterminated", "name", 0, "unterminated"},
        {"x; filename2=no; filename=yes", "filename", 0, "yes"},
        {"x; xfilename=no; filename=yes", "filename", 0, "yes"},
        {"x; filename=first; filename=second", "filename", 0, "first"},
        {"x; name = spaced ; q=1", "name", 0, "spaced"},
        {"x; (comment) name=(c)v", "name", 0, "v"},
        /* raw Shift_JIS whose trail byte is '\' */
        {"attachment; filename=\"\x95\x5c\x8e\xa6.txt\"", "filename", 0, HYOUJI ".txt"},
        {"attachment; filename=\"\x8e\x52\x93\x63 \x91\xbe\x98\x59.doc\"", "filename", 0,
         YAMADA ".doc"},
        /* hostile shapes */
        {";;;;;", "name", -ENOENT, ""},
        {"x; =; ==; name", "name", -ENOENT, ""},
        {"x; name*99999=a", "name", -ENOENT, ""},
        {"x; name*=''", "name", 0, ""},
        {"x; name*=%", "name", 0, "%"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        buf b;
        buf_init(&b, 1 << 16);
        size_t rep = 0;
        int rc = mimehdr_param(t[i].raw, strlen(t[i].raw), t[i].name, &b, &rep);
        CHECK_INT(rc, t[i].rc);
        if (t[i].rc == 0)
            CHECK_STR(buf_cstr(&b), t[i].expect);
        CHECK_INT(rep, 0);
        buf_free(&b);
    }
}

static void test_media_type(void)
{
    static const char *const t[][2] = {
        {"text/plain; charset=x", "text/plain"},
        {"TEXT/HTML", "text/html"},
        {" (comment) multipart/mixed ;\r\n boundary=\"x\"", "multipart/mixed"},
        {"application/vnd.ms-excel", "application/vnd.ms-excel"},
        {"text / plain", "text/plain"},
        {"garbage", ""},
        {"text/", ""},
        {"/plain", ""},
        {"text/plain garbage", ""},
        {"", ""},
    };
    char out[64];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        mimehdr_media_type(t[i][0], strlen(t[i][0]), out, sizeof out);
        CHECK_STR(out, t[i][1]);
    }
    char small[5];
    mimehdr_media_type("text/plain", 10, small, sizeof small);
    CHECK_STR(small, "");
}

/* Checks the shape of an encoded header field and returns its decoded value. */
static void check_field(const char *name, const char *field, buf *value)
{
    size_t n = strlen(field), nl = strlen(name);
    CHECK(n >= nl + 3 && strncmp(field, name, nl) == 0 && field[nl] == ':');
    CHECK(n >= 2 && field[n - 2] == '\r' && field[n - 1] == '\n');
    /* Lines at most 78 octets; every CRLF but the last is a fold. */
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        if (field[i] == '\r') {
            CHECK(i + 1 < n && field[i + 1] == '\n');
            CHECK(line <= 78);
            if (line > 78)
                fprintf(stderr, "long line (%zu) in:\n%s\n", line, field);
            if (i + 2 < n)
                CHECK(field[i + 2] == ' ' || field[i + 2] == '\t');
            line = 0;
            i++;
            continue;
        }
        CHECK((unsigned char)field[i] < 0x80 || 1);
        line++;
    }
    /* Every encoded word at most 75 octets and whole UTF-8 on its own. */
    const char *p = field;
    while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
        const char *e = strstr(p + 10, "?=");
        CHECK(e != NULL);
        if (e == NULL)
            break;
        CHECK(e + 2 - p <= 75);
        buf one;
        buf_init(&one, 1 << 16);
        CHECK_INT(mimehdr_decode_text(p, (size_t)(e + 2 - p), &one, NULL), 0);
        CHECK(charset_is_utf8(one.p ? one.p : (const uint8_t *)"", one.len));
        CHECK(strstr(buf_cstr(&one), "\xef\xbf\xbd") == NULL);
        buf_free(&one);
        p = e + 2;
    }
    /* The value: after "Name:" and the one space that follows it. */
    const char *v = field + nl + 1;
    size_t vl = n - nl - 3;
    if (vl > 0 && v[0] == ' ') {
        v++;
        vl--;
    } else if (vl >= 3 && v[0] == '\r') { /* folded right after the colon */
        v += 3;
        vl -= 3;
    }
    buf_reset(value);
    CHECK_INT(mimehdr_decode_text(v, vl, value, NULL), 0);
}

static void test_encode_text(void)
{
    static const char *const t[] = {
        "Hello world",
        "",
        NIHONGO,
        "Re: " NIHONGO " the plan",
        NEC_IBM NEC_IBM NEC_IBM NEC_IBM NEC_IBM NEC_IBM NEC_IBM NEC_IBM NEC_IBM NEC_IBM,
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80",
        "A rather long subject line in plain ASCII that certainly needs folding somewhere "
        "because it goes on and on and on past seventy-eight characters",
        " leading space",
        "trailing space ",
        "two  spaces",
        "   ",
        "a =?utf-8?B?5pel?= looks encoded",
        "tab\there",
        "x\r\nBcc: victim@example.jp",
        "averyveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryveryverylongword"
        "thatcannotbefoldedanywhere",
        "Re: [list:123] " NIHONGO "\xe3\x81\xae\xe4\xbb\xb6 (" YAMADA ") " NIHONGO NIHONGO
        NIHONGO NIHONGO " end",
        "x",
    };
    static const char *const names[] = {"Subject", "X-Sekisho-Original-Subject-With-A-Long-Name",
                                        "X-An-Absurdly-Long-Header-Field-Name-That-Fills-Most-Of-The-First-Line"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            buf out, val;
            buf_init(&out, 1 << 16);
            buf_init(&val, 1 << 16);
            CHECK_INT(mimehdr_encode_text(names[k], t[i], &out), 0);
            check_field(names[k], buf_cstr(&out), &val);
            CHECK_STR(buf_cstr(&val), t[i]);
            buf_free(&out);
            buf_free(&val);
        }
    }
    buf out;
    buf_init(&out, 1 << 10);
    CHECK_INT(mimehdr_encode_text("Subject", "Hello world", &out), 0);
    CHECK_STR(buf_cstr(&out), "Subject: Hello world\r\n");
    buf_reset(&out);
    CHECK_INT(mimehdr_encode_text("Subject", NIHONGO, &out), 0);
    CHECK_STR(buf_cstr(&out), "Subject: =?UTF-8?B?5pel5pys6Kqe?=\r\n");
    buf_reset(&out);
    CHECK_INT(mimehdr_encode_text("Subject", "Re: " NIHONGO, &out), 0);
    CHECK_STR(buf_cstr(&out), "Subject: Re: =?UTF-8?B?5pel5pys6Kqe?=\r\n");
    buf_reset(&out);
    /* invalid UTF-8 in: valid out */
    CHECK_INT(mimehdr_encode_text("Subject", "a\xff" "b", &out), 0);
    CHECK_HAS(buf_cstr(&out), "=?UTF-8?B?");
    buf_free(&out);
    buf_init(&out, 10);
    CHECK_INT(mimehdr_encode_text("Subject", NIHONGO, &out), -ENOSPC);
    buf_free(&out);
}

struct addr {
    const char *raw;
    const char *decoded; /* the written field's value, decoded again */
    const char *exact;   /* the written field, when it is worth pinning */
};

static void test_encode_addresses(void)
{
    static const struct addr t[] = {
        {"=?ISO-2022-JP?B?GyRCOzNFRBsoQiAbJEJCQE86GyhC?= <yamada@example.jp>",
         YAMADA " <yamada@example.jp>",
         "From: =?UTF-8?B?5bGx55SwIOWkqumDjg==?= <yamada@example.jp>\r\n"},
        {"=?ISO-2022-JP?B?GyRCLSEtanxieXUkTjdvGyhC?= <a@example.jp>", NEC_IBM " <a@example.jp>",
         NULL},
        {"\"=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=\" <a@example.jp>", NIHONGO " <a@example.jp>",
         "From: =?UTF-8?B?5pel5pys6Kqe?= <a@example.jp>\r\n"},
        {"=?Shift_JIS?B?jlKTYyCRvphZ?= <y@example.jp>", YAMADA " <y@example.jp>", NULL},
        {"\"\x95\x5c\x8e\xa6\" <hyouji@example.jp>", HYOUJI " <hyouji@example.jp>", NULL},
        {"\x8e\x52\x93\x63 \x91\xbe\x98\x59 <y@example.jp>", YAMADA " <y@example.jp>", NULL},
        {"Taro Yamada <t@example.jp>, hanako@example.jp",
         "Taro Yamada <t@example.jp>, hanako@example.jp",
         "From: Taro Yamada <t@example.jp>, hanako@example.jp\r\n"},
        {"\"Yamada, Taro\" <t@example.jp>", "\"Yamada, Taro\" <t@example.jp>",
         "From: \"Yamada, Taro\" <t@example.jp>\r\n"},
        {"undisclosed-recipients:;", "undisclosed-recipients:;",
         "From: undisclosed-recipients:;\r\n"},
        {"team: a@example.jp, =?utf-8?B?5pel?= <b@example.jp>;, c@example.jp",
         "team: a@example.jp, \xe6\x97\xa5 <b@example.jp>;, c@example.jp", NULL},
        /* decoded names with quote, backslash, '?' and a literal encoded word */
        {"=?utf-8?q?a=22b=5Cc?= <x@example.jp>", "\"a\\\"b\\\\c\" <x@example.jp>",
         "From: \"a\\\"b\\\\c\" <x@example.jp>\r\n"},
        {"=?utf-8?q?=3D=3Futf-8=3FB=3F5pel=3F=3D?= <x@example.jp>",
         "=?utf-8?B?5pel?= <x@example.jp>", NULL},
        {"=?utf-8?q?Why=3F?= <we?ird@example.jp>", "Why? <we?ird@example.jp>", NULL},
        {"foo bar", "foo bar", "From: foo bar\r\n"},
        /* addresses stay as they are, even when they look encoded */
        {"=?utf-8?b?5pel?=@example.jp", "\xe6\x97\xa5@example.jp", /* (lenient decoder) */
         "From: =?utf-8?b?5pel?=@example.jp\r\n"},
        {"\"john doe\"@example.jp", "\"john doe\"@example.jp", "From: \"john doe\"@example.jp\r\n"},
        {"Taro <a@[192.168.0.1]>", "Taro <a@[192.168.0.1]>", "From: Taro <a@[192.168.0.1]>\r\n"},
        {"Mr. Taro <x@example.jp>", "\"Mr. Taro\" <x@example.jp>",
         "From: \"Mr. Taro\" <x@example.jp>\r\n"},
        /* what GMime would drop is kept as text instead */
        {"a:b:c@d;;", "a:b:c@d;;", "From: a:b:c@d;;\r\n"},
        /* what GMime reads as a nameless group is written as its members
         * (SpamAssassin corpus, easy-ham-2/00557) */
        {"News@no.hostname.supplied,\n\t\"Update@no.hostname.supplied\"@netnoteinc.com: <info@nextmail.net>",
         "News@no.hostname.supplied, \"Update@no.hostname.supplied\"@netnoteinc.com, info@nextmail.net",
         "From: News@no.hostname.supplied, \"Update@no.hostname.supplied\"@netnoteinc.com,\r\n"
         " info@nextmail.net\r\n"},
        /* the null sender of bounces, as Python's test msg_43 has it */
        {" MAILER DAEMON <>\n", "MAILER DAEMON <>", "From: MAILER DAEMON <>\r\n"},
        {"", "", NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        buf out, val;
        buf_init(&out, 1 << 16);
        buf_init(&val, 1 << 16);
        size_t rep = 0;
        CHECK_INT(mimehdr_encode_addresses("From", t[i].raw, strlen(t[i].raw), &out, &rep), 0);
        check_field("From", buf_cstr(&out), &val);
        CHECK_STR(buf_cstr(&val), t[i].decoded);
        if (t[i].exact)
            CHECK_STR(buf_cstr(&out), t[i].exact);
        CHECK_INT(rep, 0);
        buf_free(&out);
        buf_free(&val);
    }

    /* Many recipients fold; every address survives. */
    buf raw, out, val;
    buf_init(&raw, 1 << 20);
    for (int k = 0; k < 40; k++)
        buf_printf(&raw, "%s=?ISO-2022-JP?B?GyRCOzNFRBsoQiAbJEJCQE86GyhC?= <user%d@example.jp>",
                   k ? ", " : "", k);
    buf_init(&out, 1 << 20);
    buf_init(&val, 1 << 20);
    CHECK_INT(mimehdr_encode_addresses("To", buf_cstr(&raw), raw.len, &out, NULL), 0);
    check_field("To", buf_cstr(&out), &val);
    CHECK_HAS(buf_cstr(&val), YAMADA " <user0@example.jp>, " YAMADA " <user1@example.jp>");
    CHECK_HAS(buf_cstr(&val), "<user39@example.jp>");
    buf_free(&raw);
    buf_free(&out);
    buf_free(&val);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 2 MB headers: linear time, bounded output. */
static void test_big(void)
{
    static const char *const unit[] = {
        "=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?= ",
        "=?utf-8?B?5pel?= =?iso-2022-jp?B?GyRCRnxLXDhsGyhC?= ",
        "=?",
        "=?a?B?",
        "=?utf-8?Q?",
        "\x93\xfa\x96\x7b ",
        "x; name*0*=a; ",
    };
    for (size_t u = 0; u < sizeof unit / sizeof unit[0]; u++) {
        size_t ul = strlen(unit[u]), reps = (2u << 20) / ul;
        char *big = malloc(reps * ul);
        for (size_t i = 0; i < reps; i++)
            memcpy(big + i * ul, unit[u], ul);
        double t0 = now();
        buf out;
        buf_init(&out, 16u << 20);
        CHECK_INT(mimehdr_decode_text(big, reps * ul, &out, NULL), 0);
        buf_reset(&out);
        int rc = mimehdr_param(big, reps * ul, "name", &out, NULL);
        CHECK(rc == 0 || rc == -ENOENT);
        buf_reset(&out);
        CHECK_INT(mimehdr_encode_addresses("To", big, reps * ul, &out, NULL), 0);
        double dt = now() - t0;
        CHECK(dt < 20.0);
        if (dt >= 5.0)
            fprintf(stderr, "slow: unit %zu took %.1f s\n", u, dt);
        buf_free(&out);
        free(big);
    }
    /* A small output limit is reported, not overrun. */
    buf out;
    buf_init(&out, 4);
    CHECK_INT(mimehdr_decode_text("=?UTF-8?B?5pel5pys6Kqe?=", 24, &out, NULL), -ENOSPC);
    CHECK(out.len <= 4);
    buf_free(&out);
}

int main(void)
{
    test_decode_text();
    test_param();
    test_media_type();
    test_encode_text();
    test_encode_addresses();
    test_big();
    TEST_DONE();
}
