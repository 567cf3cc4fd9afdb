/*
 * syslogmsg - one syslog message (RFC 5424, or the BSD format of RFC 3164)
 * turned into the fields of a ledger entry of type "syslog". Untrusted bytes:
 * the parser reads at most SYSLOGMSG_MAX bytes, never allocates beyond a
 * bound proportional to them, and never fails: what does not parse as either
 * format is kept whole as "msg" with format "raw" (RFC 3164 4.3.3: facility
 * user, severity notice).
 *
 * Fields (a JSON object, members in any order; the ledger canonicalizes):
 *     format          "rfc5424" | "rfc3164" | "raw"
 *     facility, severity   numbers (from PRI)
 *     timestamp, hostname, app_name, procid, msgid   strings, absent if NIL
 *     structured_data the SD-ELEMENTs as received (string), absent if NIL
 *     msg             the message (a leading UTF-8 BOM and trailing
 *                     newlines/NULs removed)
 *     msg_hex, structured_data_hex   instead of msg / structured_data when
 *                     those bytes are not valid UTF-8 (hex of the bytes)
 *     transport, peer from the caller (syslogmsg_fields' arguments)
 * Header strings that are not printable US-ASCII (RFC 5424 PRINTUSASCII) or
 * too long for their field make the message "raw".
 */
#ifndef SEKISHO_SYSLOGMSG_H
#define SEKISHO_SYSLOGMSG_H

#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

#define SYSLOGMSG_MAX (64u << 10) /* hard limit on one message's bytes */

typedef struct syslogmsg {
    int format; /* 0 raw, 1 rfc3164, 2 rfc5424 */
    int facility, severity;
    /* offsets into the message; len 0 = absent */
    size_t ts_off, ts_len, host_off, host_len, app_off, app_len, pid_off, pid_len, msgid_off,
        msgid_len, sd_off, sd_len, msg_off, msg_len;
} syslogmsg;

/* Parses p[0..n) (n <= SYSLOGMSG_MAX, else -1). 0 otherwise. */
int syslogmsg_parse(const uint8_t *p, size_t n, syslogmsg *m);

/* Appends the fields object for the parsed message to out; transport and
 * peer (may be NULL) are added as given. 0, or -1 if out overflowed. */
int syslogmsg_fields(const uint8_t *p, const syslogmsg *m, const char *transport, const char *peer,
                     buf *out);

#endif
