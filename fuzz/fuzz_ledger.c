/*
 * fuzz_ledger - libFuzzer target for what the ledger reads from outside: the
 * RFC 8785 canonicalizer (lib/jcs) over input lines, and the entry decoder
 * (lib/ledger) over stored lines. Any crash or sanitizer report is a finding,
 * and so is a broken invariant:
 *   - canonicalization is idempotent and its output is recognised as
 *     canonical; the members it reports are those jcs_members() finds;
 *   - the in-place canonical check says yes exactly when the input is its
 *     own canonical form;
 *   - exact-number mode accepts a subset of what plain mode accepts, with the
 *     same output;
 *   - a decoded entry's parts lie inside the line and have the types decoded;
 *   - every finite double's ECMAScript form reads back as the same double.
 */
#include "jcs.h"
#include "ledger.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    buf a, b, s;
    buf_init(&a, 1 << 22);
    buf_init(&b, 1 << 22);
    buf_init(&s, 1 << 22);
    jcs_error e;
    jcs_member m[8], m2[8];
    long k = -2;
    int plain = jcs_canonicalize_members(data, size, 0, &a, &e, m, 8, &k);
    if (plain == 0) {
        if (jcs_canonicalize(a.p, a.len, 0, &b, &e) != 0 || b.len != a.len ||
            memcmp(a.p, b.p, a.len) != 0)
            abort();
        if (!jcs_is_canonical(a.p, a.len, 0, &s, &e))
            abort();
        if (memchr(a.p, '\n', a.len) != NULL)
            abort();
        if (k >= 0) {
            long k2 = jcs_members(a.p, a.len, m2, 8);
            if (k2 != k)
                abort();
            for (long i = 0; i < k && i < 8; i++)
                if (m[i].key_off != m2[i].key_off || m[i].key_len != m2[i].key_len ||
                    m[i].val_off != m2[i].val_off || m[i].val_len != m2[i].val_len)
                    abort();
        } else if (k != -1 || a.p[0] == '{') {
            abort();
        }
    } else if (e.offset > size) {
        abort();
    }
    /* The in-place check agrees with the canonicalizer. */
    int canon = plain == 0 && a.len == size && memcmp(a.p, data, size) == 0;
    if (jcs_is_canonical(data, size, 0, &s, &e) != canon)
        abort();
    long k3 = -2;
    if (canon && jcs_is_canonical_members(data, size, 0, &s, &e, m2, 8, &k3) &&
        (k3 != k || (k > 0 && (m2[0].key_off != m[0].key_off || m2[0].val_len != m[0].val_len))))
        abort();
    buf_reset(&b);
    int exact = jcs_canonicalize(data, size, JCS_EXACT_NUMBERS, &b, &e);
    if (exact == 0 && (plain != 0 || b.len != a.len || memcmp(a.p, b.p, a.len) != 0))
        abort();

    ledger_entry en;
    char why[200];
    if (ledger_entry_decode(data, size, &s, &en, why, sizeof why) == 0) {
        if (en.fields_off + en.fields_len > size || data[en.fields_off] != '{' ||
            en.type_off + en.type_len > size || data[en.type_off] != '"' ||
            en.source_off + en.source_len > size || data[en.source_off] != '"' || en.time_len != 26)
            abort();
    }

    if (size >= 8) {
        double v;
        memcpy(&v, data, 8);
        char out[32];
        int n = jcs_number(v, out);
        if (isfinite(v)) {
            if (n <= 0 || n >= 32 || (double)strtod(out, NULL) != v)
                abort();
        } else if (n != -1) {
            abort();
        }
    }
    buf_free(&a);
    buf_free(&b);
    buf_free(&s);
    return 0;
}
