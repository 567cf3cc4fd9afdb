/* Unit tests for lib/jcs: RFC 8785's own examples, then the edges. */
#include "jcs.h"
#include "testutil.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static double from_hex(const char *h)
{
    uint64_t bits = strtoull(h, NULL, 16);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* RFC 8785 Appendix B: IEEE-754 bit patterns and their serialization. */
static void test_numbers_rfc(void)
{
    static const struct {
        const char *hex, *want;
    } cases[] = {
        {"0000000000000000", "0"},
        {"8000000000000000", "0"},
        {"0000000000000001", "5e-324"},
        {"8000000000000001", "-5e-324"},
        {"7fefffffffffffff", "1.7976931348623157e+308"},
        {"ffefffffffffffff", "-1.7976931348623157e+308"},
        {"4340000000000000", "9007199254740992"},
        {"c340000000000000", "-9007199254740992"},
        {"4430000000000000", "295147905179352830000"},
        {"44b52d02c7e14af5", "9.999999999999997e+22"},
        {"44b52d02c7e14af6", "1e+23"},
        {"44b52d02c7e14af7", "1.0000000000000001e+23"},
        {"444b1ae4d6e2ef4e", "999999999999999700000"},
        {"444b1ae4d6e2ef4f", "999999999999999900000"},
        {"444b1ae4d6e2ef50", "1e+21"},
        {"3eb0c6f7a0b5ed8c", "9.999999999999997e-7"},
        {"3eb0c6f7a0b5ed8d", "0.000001"},
        {"41b3de4355555553", "333333333.3333332"},
        {"41b3de4355555554", "333333333.33333325"},
        {"41b3de4355555555", "333333333.3333333"},
        {"41b3de4355555556", "333333333.3333334"},
        {"41b3de4355555557", "333333333.33333343"},
        {"becbf647612f3696", "-0.0000033333333333333333"},
        {"43143ff3c1cb0959", "1424953923781206.2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[32];
        int n = jcs_number(from_hex(cases[i].hex), out);
        CHECK_INT(n, (long long)strlen(cases[i].want));
        CHECK_STR(out, cases[i].want);
    }
    char out[32];
    CHECK_INT(jcs_number(from_hex("7fffffffffffffff"), out), -1); /* NaN */
    CHECK_INT(jcs_number(from_hex("7ff0000000000000"), out), -1); /* Infinity */
}

static const char *canon(const char *in, unsigned flags, buf *out, jcs_error *e)
{
    buf_reset(out);
    memset(e, 0, sizeof *e);
    if (jcs_canonicalize((const uint8_t *)in, strlen(in), flags, out, e) < 0)
        return NULL;
    return buf_cstr(out);
}

/* RFC 8785 3.2.2 and 3.2.3. */
static void test_rfc_examples(void)
{
    buf b;
    buf_init(&b, 1 << 20);
    jcs_error e;
    const char *in = "{\n"
                     "  \"numbers\": [333333333.33333329, 1E30, 4.50,\n"
                     "                2e-3, 0.000000000000000000000000001],\n"
                     "  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\",\n"
                     "  \"literals\": [null, true, false]\n"
                     "}";
    CHECK_STR(canon(in, 0, &b, &e),
              "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,"
              "1e-27],\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
    /* The same with exact numbers: 333333333.33333329 cannot be kept. */
    CHECK(canon(in, JCS_EXACT_NUMBERS, &b, &e) == NULL);
    CHECK_HAS(e.msg, "333333333.33333329 cannot be kept exactly");
    CHECK_INT(e.offset, 16);

    const char *sorting = "{\n"
                          "  \"\\u20ac\": \"Euro Sign\",\n"
                          "  \"\\r\": \"Carriage Return\",\n"
                          "  \"\\ufb33\": \"Hebrew Letter Dalet With Dagesh\",\n"
                          "  \"1\": \"One\",\n"
                          "  \"\\ud83d\\ude00\": \"Emoji: Grinning Face\",\n"
                          "  \"\\u0080\": \"Control\",\n"
                          "  \"\\u00f6\": \"Latin Small Letter O With Diaeresis\"\n"
                          "}";
    CHECK_STR(canon(sorting, 0, &b, &e),
              "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\","
              "\"\xc3\xb6\":\"Latin Small Letter O With Diaeresis\",\"\xe2\x82\xac\":\"Euro "
              "Sign\",\"\xf0\x9f\x98\x80\":\"Emoji: Grinning Face\",\"\xef\xac\xb3\":\"Hebrew "
              "Letter Dalet With Dagesh\"}");
    buf_free(&b);
}

static void test_errors(void)
{
    static const struct {
        const char *in;
        size_t offset;
        const char *msg;
    } cases[] = {
        {"{\"a\":1,\"a\":2}", 7, "duplicate member name"},
        {"{\"b\":1,\"a\":2,\"b\":3}", 13, "duplicate member name"},
        {"[1,]", 3, "unexpected byte"},
        {"01", 1, "leading zeros"},
        {"1.", 2, "a digit must follow '.'"},
        {"-", 1, "a digit must follow '-'"},
        {"1e", 2, "exponent"},
        {"1e400", 0, "out of range"},
        {"NaN", 0, "unexpected byte"},
        {"\"\\ud800\"", 1, "without its low surrogate"},
        {"\"\\udc00\"", 1, "lone low surrogate"},
        {"\"a\xc0\x80\"", 2, "invalid UTF-8"},
        {"\"\xed\xa0\x80\"", 1, "invalid UTF-8"},
        {"\"a\nb\"", 2, "control character 0x0a"},
        {"\"\\x\"", 1, "invalid escape"},
        {"{\"a\" 1}", 5, "expected ':'"},
        {"{\"a\":1 \"b\":2}", 7, "expected ',' or '}'"},
        {"[1] x", 4, "after the JSON value"},
        {"", 0, "unexpected end"},
        {"tru", 0, "unexpected characters"},
        {"\"abc", 0, "unterminated"},
    };
    buf b;
    buf_init(&b, 1 << 20);
    jcs_error e;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *r = canon(cases[i].in, 0, &b, &e);
        CHECK(r == NULL);
        CHECK_INT(e.offset, cases[i].offset);
        CHECK_HAS(e.msg, cases[i].msg);
        if (r != NULL || e.offset != cases[i].offset)
            fprintf(stderr, "  case %zu: %s\n", i, cases[i].in);
    }
    /* Depth: JCS_MAX_DEPTH nested arrays load, one more does not. */
    char deep[2 * JCS_MAX_DEPTH + 8];
    for (int extra = 0; extra <= 1; extra++) {
        size_t d = JCS_MAX_DEPTH + (size_t)extra, k = 0;
        for (size_t i = 0; i < d; i++)
            deep[k++] = '[';
        for (size_t i = 0; i < d; i++)
            deep[k++] = ']';
        deep[k] = 0;
        const char *r = canon(deep, 0, &b, &e);
        if (extra == 0)
            CHECK(r != NULL);
        else
            CHECK(r == NULL && strstr(e.msg, "nested deeper") != NULL);
    }
    /* JCS_OBJECT */
    CHECK(canon("[1]", JCS_OBJECT, &b, &e) == NULL);
    CHECK_HAS(e.msg, "expected a JSON object");
    CHECK(canon(" {}", JCS_OBJECT, &b, &e) != NULL);
    /* Output limit: an error, not a cut result. */
    buf small;
    buf_init(&small, 4);
    CHECK_INT(jcs_canonicalize((const uint8_t *)"[1,2,3]", 7, 0, &small, &e), -1);
    CHECK_HAS(e.msg, "output limit");
    buf_free(&small);
    buf_free(&b);
}

static void test_values(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {" { } ", "{}"},
        {"[ ]", "[]"},
        {"-0", "0"},
        {"-0.0e5", "0"},
        {"1.0", "1"},
        {"1E2", "100"},
        {"0.1", "0.1"},
        {"123456789012", "123456789012"},
        {"-12.5e-3", "-0.0125"},
        {"1e21", "1e+21"},
        {"1e-7", "1e-7"},
        {"\"\\u001f\\u007f\\u2028\"", "\"\\u001f\x7f\xe2\x80\xa8\""},
        {"\"\\b\\f\\n\\r\\t\\/\"", "\"\\b\\f\\n\\r\\t/\""},
        {"{\"b\":[{\"d\":1,\"c\":2}],\"a\":{\"z\":null,\"y\":true}}",
         "{\"a\":{\"y\":true,\"z\":null},\"b\":[{\"c\":2,\"d\":1}]}"},
        {"{\"aa\":1,\"a\":2}", "{\"a\":2,\"aa\":1}"},
    };
    buf b, s;
    buf_init(&b, 1 << 20);
    buf_init(&s, 1 << 20);
    jcs_error e;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_STR(canon(cases[i].in, 0, &b, &e), cases[i].want);
        /* Canonical output is its own canonical form, and is recognised as such. */
        CHECK(jcs_is_canonical(b.p, b.len, 0, &s, &e));
    }
    CHECK(!jcs_is_canonical((const uint8_t *)"{\"b\":1,\"a\":2}", 13, 0, &s, &e));
    CHECK_HAS(e.msg, "not in canonical form");
    CHECK_INT(e.offset, 2);
    /* Exact numbers: kept when a double holds them, refused otherwise. */
    CHECK_STR(canon("[9007199254740991,0.5,1e300,1.5e-5]", JCS_EXACT_NUMBERS, &b, &e),
              "[9007199254740991,0.5,1e+300,0.000015]");
    CHECK(canon("9007199254740993", JCS_EXACT_NUMBERS, &b, &e) == NULL);
    CHECK_HAS(e.msg, "would become 9007199254740992");
    CHECK(canon("1e-400", JCS_EXACT_NUMBERS, &b, &e) == NULL);
    CHECK_STR(canon("1e-400", 0, &b, &e), "0");
    buf_free(&b);
    buf_free(&s);
}

static void test_members(void)
{
    const char *t = "{\"a\":[1,{\"x\":\"}\"}],\"b\\\"c\":\"v\\\"\",\"d\":-1.5}";
    jcs_member m[4];
    long n = jcs_members((const uint8_t *)t, strlen(t), m, 4);
    CHECK_INT(n, 3);
    CHECK_INT(m[0].key_len, 1);
    CHECK(strncmp(t + m[0].val_off, "[1,{\"x\":\"}\"}]", m[0].val_len) == 0);
    CHECK(strncmp(t + m[1].key_off, "b\\\"c", m[1].key_len) == 0);
    CHECK(strncmp(t + m[2].val_off, "-1.5", m[2].val_len) == 0 && m[2].val_len == 4);
    buf v;
    buf_init(&v, 1024);
    CHECK_INT(jcs_string_value((const uint8_t *)t + m[1].val_off, m[1].val_len, &v), 0);
    CHECK_STR(buf_cstr(&v), "v\"");
    buf_free(&v);
    /* The members as the canonicalizer saw them, also after sorting. */
    buf c;
    buf_init(&c, 1024);
    buf_puts(&c, "xx");
    jcs_error e;
    long k = 0;
    const char *in = "{ \"b\" : [1, 2], \"a\":{\"y\":1,\"x\":2}, \"c\":\"\\u0041\" }";
    CHECK_INT(jcs_canonicalize_members((const uint8_t *)in, strlen(in), 0, &c, &e, m, 4, &k), 0);
    CHECK_INT(k, 3);
    CHECK_STR(buf_cstr(&c), "xx{\"a\":{\"x\":2,\"y\":1},\"b\":[1,2],\"c\":\"A\"}");
    const char *base = buf_cstr(&c) + 2;
    CHECK(m[0].key_len == 1 && base[m[0].key_off] == 'a');
    CHECK(strncmp(base + m[0].val_off, "{\"x\":2,\"y\":1}", m[0].val_len) == 0 &&
          m[0].val_len == 13);
    CHECK(m[1].key_len == 1 && base[m[1].key_off] == 'b');
    CHECK(strncmp(base + m[1].val_off, "[1,2]", m[1].val_len) == 0 && m[1].val_len == 5);
    CHECK(strncmp(base + m[2].val_off, "\"A\"", m[2].val_len) == 0 && m[2].val_len == 3);
    CHECK_INT(jcs_canonicalize_members((const uint8_t *)"[1]", 3, 0, &c, &e, m, 4, &k), 0);
    CHECK_INT(k, -1);
    buf_free(&c);
    CHECK_INT(jcs_members((const uint8_t *)"[1]", 3, m, 4), -1);
    CHECK_INT(jcs_members((const uint8_t *)"{}", 2, m, 4), 0);
    CHECK_INT(jcs_members((const uint8_t *)"{\"a\"}", 5, m, 4), -1);
}

int main(void)
{
    test_numbers_rfc();
    test_rfc_examples();
    test_errors();
    test_values();
    test_members();
    TEST_DONE();
}
