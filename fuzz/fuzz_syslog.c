/*
 * fuzz_syslog - lib/syslogmsg on arbitrary bytes: the parse must succeed (up
 * to the limit), every offset must lie inside the input, and the fields must
 * be a JSON object the ledger accepts (jcs_canonicalize with exact numbers).
 * Anything else aborts.
 */
#include "jcs.h"
#include "syslogmsg.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SYSLOGMSG_MAX)
        return 0;
    syslogmsg m;
    if (syslogmsg_parse(data, size, &m) != 0)
        abort();
    const size_t off[] = {m.ts_off,    m.host_off, m.app_off, m.pid_off,
                          m.msgid_off, m.sd_off,   m.msg_off};
    const size_t len[] = {m.ts_len,    m.host_len, m.app_len, m.pid_len,
                          m.msgid_len, m.sd_len,   m.msg_len};
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        if (off[i] > size || len[i] > size - off[i])
            abort();
    if (m.facility < 0 || m.facility > 23 || m.severity < 0 || m.severity > 7)
        abort();
    buf out, canon;
    buf_init(&out, (size_t)SYSLOGMSG_MAX * 3);
    buf_init(&canon, (size_t)SYSLOGMSG_MAX * 6);
    if (syslogmsg_fields(data, &m, "udp", "127.0.0.1:514", &out) != 0)
        abort();
    jcs_error je;
    if (jcs_canonicalize(out.p, out.len, JCS_EXACT_NUMBERS | JCS_OBJECT, &canon, &je) < 0)
        abort();
    buf_free(&out);
    buf_free(&canon);
    return 0;
}
