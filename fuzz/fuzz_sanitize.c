/*
 * fuzz_sanitize - the whole sanitize path on arbitrary bytes: limits, GMime's
 * parse, the walk, charset and header decoding, HTML rendering, attachment
 * analysis, and the final encoding with a quarantine id.
 *
 * Limits are lowered so that the fuzzer reaches them with small inputs.
 * Invariant checked beyond "no crash": an OK verdict always yields a message
 * that starts with the quarantine id header and declares text/plain UTF-8.
 */
#include "policy.h"
#include "sanitize.h"

#include <stdlib.h>
#include <string.h>

static policy *pol;
static sanitize_ctx *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ctx == NULL) {
        pol = policy_default();
        pol->mail.limits.max_message_bytes = 1 << 20;
        pol->mail.limits.max_header_bytes = 16384;
        pol->mail.limits.max_headers = 200;
        pol->mail.limits.max_depth = 8;
        pol->mail.limits.max_parts = 64;
        pol->mail.limits.max_decoded_bytes = 1 << 20;
        pol->mail.limits.max_text_bytes = 1 << 18;
        ctx = sanitize_new(pol);
        if (ctx == NULL)
            abort();
    }
    sanitize_result res;
    if (sanitize_message(ctx, data, size, &res) == 0 && res.verdict == SANITIZE_OK) {
        buf out;
        buf_init(&out, BUF_UNLIMITED);
        if (sanitize_finish(&res, "20261123T000000Z-0123456789abcdef", &out) != 0)
            abort();
        static const char first[] =
            "X-Sekisho-Quarantine-Id: 20261123T000000Z-0123456789abcdef\r\n";
        const char *s = buf_cstr(&out);
        if (strncmp(s, first, sizeof first - 1) != 0 ||
            strstr(s, "\r\nContent-Type: text/plain; charset=UTF-8\r\n") == NULL)
            abort();
        buf_free(&out);
    }
    sanitize_result_free(&res);
    return 0;
}
