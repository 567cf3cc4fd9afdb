/* Unit tests for lib/syslogmsg: RFC 5424's own examples (section 6.5), the
 * BSD format as util-linux logger and sshd send it, and the edges. */
#include "jcs.h"
#include "syslogmsg.h"
#include "testutil.h"

#include <string.h>

/* The fields of msg, canonical. */
static const char *fields(const char *msg, size_t n, const char *transport, const char *peer)
{
    static buf out, canon;
    static int init;
    if (!init) {
        buf_init(&out, 1 << 20);
        buf_init(&canon, 1 << 20);
        init = 1;
    }
    buf_reset(&out);
    buf_reset(&canon);
    syslogmsg m;
    CHECK_INT(syslogmsg_parse((const uint8_t *)msg, n, &m), 0);
    CHECK_INT(syslogmsg_fields((const uint8_t *)msg, &m, transport, peer, &out), 0);
    jcs_error je;
    CHECK_INT(jcs_canonicalize(out.p, out.len, JCS_EXACT_NUMBERS | JCS_OBJECT, &canon, &je), 0);
    return buf_cstr(&canon);
}

#define F(s) fields(s, strlen(s), NULL, NULL)

int main(void)
{
    /* RFC 5424 6.5, example 1 (with a BOM before the message) */
    CHECK_STR(F("<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
                "\xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8"),
              "{\"app_name\":\"su\",\"facility\":4,\"format\":\"rfc5424\",\"hostname\":"
              "\"mymachine.example.com\",\"msg\":\"'su root' failed for lonvick on /dev/pts/8\","
              "\"msgid\":\"ID47\",\"severity\":2,\"timestamp\":\"2003-10-11T22:14:15.003Z\"}");
    /* example 3: structured data, then a message */
    CHECK_STR(F("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
                "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] "
                "An application event log entry..."),
              "{\"app_name\":\"evntslog\",\"facility\":20,\"format\":\"rfc5424\",\"hostname\":"
              "\"mymachine.example.com\",\"msg\":\"An application event log entry...\","
              "\"msgid\":\"ID47\",\"severity\":5,\"structured_data\":\"[exampleSDID@32473 "
              "iut=\\\"3\\\" eventSource=\\\"Application\\\" eventID=\\\"1011\\\"]\","
              "\"timestamp\":\"2003-10-11T22:14:15.003Z\"}");
    /* example 4: two SD elements, escapes, no message */
    CHECK_STR(F("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
                "[a@1 x=\"q\\\"\\]\"][b@2 y=\"z\"]"),
              "{\"app_name\":\"evntslog\",\"facility\":20,\"format\":\"rfc5424\",\"hostname\":"
              "\"mymachine.example.com\",\"msg\":\"\",\"msgid\":\"ID47\",\"severity\":5,"
              "\"structured_data\":\"[a@1 x=\\\"q\\\\\\\"\\\\]\\\"][b@2 y=\\\"z\\\"]\","
              "\"timestamp\":\"2003-10-11T22:14:15.003Z\"}");
    /* util-linux logger --rfc5424, with procid; all NIL */
    CHECK_HAS(F("<13>1 2026-11-23T10:00:00.123456+09:00 host1 root 4242 - [timeQuality "
                "tzKnown=\"1\"] hello world\n"),
              "\"procid\":\"4242\"");
    CHECK_STR(F("<0>1 - - - - - -"), "{\"facility\":0,\"format\":\"rfc5424\",\"msg\":\"\","
                                     "\"severity\":0}");
    /* RFC 3164 with a hostname (sshd through rsyslog), and a local one without */
    CHECK_STR(F("<38>Nov 23 10:00:01 lgwan-fs01 sshd[1234]: Accepted publickey for yamada"),
              "{\"app_name\":\"sshd\",\"facility\":4,\"format\":\"rfc3164\",\"hostname\":"
              "\"lgwan-fs01\",\"msg\":\"Accepted publickey for yamada\",\"procid\":\"1234\","
              "\"severity\":6,\"timestamp\":\"Nov 23 10:00:01\"}");
    CHECK_STR(F("<13>Nov  3 01:02:03 root: hi"),
              "{\"app_name\":\"root\",\"facility\":1,\"format\":\"rfc3164\",\"msg\":\"hi\","
              "\"severity\":5,\"timestamp\":\"Nov  3 01:02:03\"}");
    CHECK_STR(F("<13>Nov  3 01:02:03 host no tag here"),
              "{\"facility\":1,\"format\":\"rfc3164\",\"hostname\":\"host\",\"msg\":\"no tag "
              "here\",\"severity\":5,\"timestamp\":\"Nov  3 01:02:03\"}");
    /* not syslog at all: raw, user.notice */
    CHECK_STR(F("just text"),
              "{\"facility\":1,\"format\":\"raw\",\"msg\":\"just text\",\"severity\":5}");
    CHECK_STR(
        F("<192>1 - - - - - - x"),
        "{\"facility\":1,\"format\":\"raw\",\"msg\":\"<192>1 - - - - - - x\",\"severity\":5}");
    CHECK_STR(F("<007>x"), "{\"facility\":1,\"format\":\"raw\",\"msg\":\"<007>x\",\"severity\":5}");
    /* PRI and free text */
    CHECK_STR(F("<11>free text"),
              "{\"facility\":1,\"format\":\"raw\",\"msg\":\"free text\",\"severity\":3}");
    /* bad SD makes it not 5424 */
    CHECK_HAS(F("<13>1 - - - - - [x y] m"), "\"format\":\"raw\"");
    /* a header field too long */
    char longapp[200] = "<13>1 - - ";
    memset(longapp + 10, 'a', 60);
    strcpy(longapp + 70, " - - - m");
    CHECK_HAS(F(longapp), "\"format\":\"raw\"");
    /* invalid UTF-8 in the message: kept as hex; NUL inside kept */
    CHECK_HAS(F("<13>1 - - - - - - caf\xe9"), "\"msg_hex\":\"636166e9\"");
    /* and in a structured-data value (a fuzz finding: it made the fields invalid) */
    CHECK_HAS(F("<13>1 - - - - - [a@1 b=\"\xf0\"] m"), "\"structured_data_hex\":\"5b6140312062");
    CHECK_HAS(fields("<13>1 - - - - - - a\0b", sizeof "<13>1 - - - - - - a\0b" - 1, NULL, NULL),
              "\"msg\":\"a\\u0000b\"");
    /* transport and peer */
    CHECK_HAS(fields("x", 1, "tcp", "127.0.0.1:5000"), "\"peer\":\"127.0.0.1:5000\"");
    CHECK_HAS(fields("x", 1, "tcp", "127.0.0.1:5000"), "\"transport\":\"tcp\"");
    /* the hard limit */
    syslogmsg m;
    static uint8_t big[SYSLOGMSG_MAX + 1];
    CHECK_INT(syslogmsg_parse(big, sizeof big, &m), -1);
    CHECK_INT(syslogmsg_parse(big, SYSLOGMSG_MAX, &m), 0);
    TEST_DONE();
}
