/* syslogmsg - RFC 5424 / RFC 3164 messages into ledger fields (see the .h). */
#include "syslogmsg.h"

#include "jcs.h"

#include <string.h>

static int is_print(uint8_t c)
{
    return c >= 33 && c <= 126;
}

/* A header token: printable US-ASCII up to the next space, at most max bytes.
 * *pos moves past it and its space. -1 if there is none or it is too long. */
static int token(const uint8_t *p, size_t n, size_t *pos, size_t max, size_t *off, size_t *len)
{
    size_t s = *pos, i = s;
    while (i < n && is_print(p[i]) && i - s <= max)
        i++;
    if (i == s || i - s > max || (i < n && p[i] != ' '))
        return -1;
    *off = s;
    *len = i - s;
    *pos = i < n ? i + 1 : i;
    return 0;
}

static int nil(const uint8_t *p, size_t off, size_t len)
{
    return len == 1 && p[off] == '-';
}

/* "<PRI>": 1-3 digits, 0..191, no leading zero except "<0>". */
static int parse_pri(const uint8_t *p, size_t n, size_t *pos, int *pri)
{
    if (n < 3 || p[0] != '<')
        return -1;
    size_t i = 1;
    int v = 0;
    while (i < n && i <= 4 && p[i] >= '0' && p[i] <= '9')
        v = v * 10 + (p[i++] - '0');
    if (i == 1 || i > 4 || i >= n || p[i] != '>' || v > 191 || (p[1] == '0' && i > 2))
        return -1;
    *pri = v;
    *pos = i + 1;
    return 0;
}

/* SD: "-" or one or more [SD-ID *(SP PARAM="value")] with \" \\ \] escapes. */
static int parse_sd(const uint8_t *p, size_t n, size_t *pos)
{
    size_t i = *pos;
    if (i < n && p[i] == '-') {
        *pos = i + 1;
        return 0;
    }
    if (i >= n || p[i] != '[')
        return -1;
    while (i < n && p[i] == '[') {
        i++;
        size_t s = i;
        while (i < n && is_print(p[i]) && p[i] != '=' && p[i] != ']' && p[i] != '"')
            i++;
        if (i == s || i - s > 32)
            return -1;
        while (i < n && p[i] == ' ') {
            i++;
            s = i;
            while (i < n && is_print(p[i]) && p[i] != '=' && p[i] != ']' && p[i] != '"')
                i++;
            if (i == s || i - s > 32 || i + 1 >= n || p[i] != '=' || p[i + 1] != '"')
                return -1;
            i += 2;
            while (i < n && p[i] != '"') {
                if (p[i] == '\\' && i + 1 < n)
                    i++;
                i++;
            }
            if (i >= n)
                return -1;
            i++; /* closing quote */
        }
        if (i >= n || p[i] != ']')
            return -1;
        i++;
    }
    *pos = i;
    return 0;
}

static int parse_5424(const uint8_t *p, size_t n, size_t pos, syslogmsg *m)
{
    /* VERSION "1" SP */
    if (pos + 2 > n || p[pos] != '1' || p[pos + 1] != ' ')
        return -1;
    pos += 2;
    size_t off, len;
    if (token(p, n, &pos, 48, &off, &len) < 0)
        return -1;
    if (!nil(p, off, len))
        m->ts_off = off, m->ts_len = len;
    if (token(p, n, &pos, 255, &off, &len) < 0)
        return -1;
    if (!nil(p, off, len))
        m->host_off = off, m->host_len = len;
    if (token(p, n, &pos, 48, &off, &len) < 0)
        return -1;
    if (!nil(p, off, len))
        m->app_off = off, m->app_len = len;
    if (token(p, n, &pos, 128, &off, &len) < 0)
        return -1;
    if (!nil(p, off, len))
        m->pid_off = off, m->pid_len = len;
    if (token(p, n, &pos, 32, &off, &len) < 0)
        return -1;
    if (!nil(p, off, len))
        m->msgid_off = off, m->msgid_len = len;
    size_t sd = pos;
    if (parse_sd(p, n, &pos) < 0)
        return -1;
    if (!(pos - sd == 1 && p[sd] == '-'))
        m->sd_off = sd, m->sd_len = pos - sd;
    if (pos < n && p[pos] != ' ')
        return -1;
    if (pos < n)
        pos++;
    if (n - pos >= 3 && memcmp(p + pos, "\xEF\xBB\xBF", 3) == 0)
        pos += 3;
    m->msg_off = pos;
    m->msg_len = n - pos;
    m->format = 2;
    return 0;
}

static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

/* "Mmm dd hh:mm:ss" (dd may be " d") */
static int bsd_time(const uint8_t *p, size_t n)
{
    if (n < 16 || p[15] != ' ' || p[3] != ' ' || p[6] != ' ' || p[9] != ':' || p[12] != ':')
        return 0;
    int mon = 0;
    for (int i = 0; i < 12 && !mon; i++)
        mon = memcmp(p, months + 3 * i, 3) == 0;
    static const int digits[] = {5, 7, 8, 10, 11, 13, 14};
    for (size_t i = 0; i < sizeof digits / sizeof digits[0]; i++)
        if (p[digits[i]] < '0' || p[digits[i]] > '9')
            return 0;
    return mon && (p[4] == ' ' || (p[4] >= '0' && p[4] <= '3'));
}

/* TAG[PID]: or TAG: at pos; sets app and pid. */
static int bsd_tag(const uint8_t *p, size_t n, size_t *pos, syslogmsg *m)
{
    size_t s = *pos, i = s;
    while (i < n && is_print(p[i]) && p[i] != '[' && p[i] != ':' && i - s < 48)
        i++;
    if (i == s || i >= n)
        return -1;
    size_t tl = i - s;
    if (p[i] == '[') {
        size_t ps = ++i;
        while (i < n && p[i] != ']' && is_print(p[i]) && i - ps < 128)
            i++;
        if (i >= n || p[i] != ']' || i == ps)
            return -1;
        m->pid_off = ps;
        m->pid_len = i - ps;
        i++;
    }
    if (i >= n || p[i] != ':')
        return -1;
    m->app_off = s;
    m->app_len = tl;
    i++;
    if (i < n && p[i] == ' ')
        i++;
    *pos = i;
    return 0;
}

static int parse_3164(const uint8_t *p, size_t n, size_t pos, syslogmsg *m)
{
    if (!bsd_time(p + pos, n - pos))
        return -1;
    m->ts_off = pos;
    m->ts_len = 15;
    pos += 16;
    /* HOSTNAME SP TAG, or (local senders) TAG right away */
    size_t save = pos;
    syslogmsg t = *m;
    if (bsd_tag(p, n, &pos, &t) == 0) {
        *m = t;
    } else {
        pos = save;
        size_t off, len;
        if (token(p, n, &pos, 255, &off, &len) < 0)
            return -1;
        m->host_off = off;
        m->host_len = len;
        save = pos;
        t = *m;
        if (bsd_tag(p, n, &pos, &t) == 0)
            *m = t;
        else
            pos = save; /* no tag: the rest is the message */
    }
    m->msg_off = pos;
    m->msg_len = n - pos;
    m->format = 1;
    return 0;
}

int syslogmsg_parse(const uint8_t *p, size_t n, syslogmsg *m)
{
    memset(m, 0, sizeof *m);
    if (n > SYSLOGMSG_MAX)
        return -1;
    /* trailing newlines and NULs are framing, not message */
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\0' || p[n - 1] == '\r'))
        n--;
    int pri;
    size_t pos;
    if (parse_pri(p, n, &pos, &pri) == 0) {
        syslogmsg t = *m;
        t.facility = pri / 8;
        t.severity = pri % 8;
        if (parse_5424(p, n, pos, &t) == 0) {
            *m = t;
            return 0;
        }
        t = *m;
        t.facility = pri / 8;
        t.severity = pri % 8;
        if (parse_3164(p, n, pos, &t) == 0) {
            *m = t;
            return 0;
        }
        /* PRI and free text */
        m->facility = pri / 8;
        m->severity = pri % 8;
        m->msg_off = pos;
        m->msg_len = n - pos;
        return 0;
    }
    m->facility = 1;
    m->severity = 5;
    m->msg_off = 0;
    m->msg_len = n;
    return 0;
}

static void put_key(buf *out, int *first, const char *k)
{
    if (!*first)
        buf_putc(out, ',');
    *first = 0;
    buf_putc(out, '"');
    buf_puts(out, k);
    buf_puts(out, "\":");
}

static void put_str(buf *out, int *first, const char *k, const uint8_t *p, size_t off, size_t len)
{
    if (len == 0)
        return;
    put_key(out, first, k);
    /* header fields are printable ASCII; cannot fail */
    jcs_put_string(out, (const char *)p + off, len);
}

/* A string member, or when the bytes are not UTF-8, "<key>_hex". */
static void put_text(buf *out, int *first, const char *k, const uint8_t *p, size_t n)
{
    size_t mark = out->len;
    int was_first = *first;
    put_key(out, first, k);
    if (jcs_put_string(out, (const char *)p, n) == 0)
        return;
    buf_truncate(out, mark);
    *first = was_first;
    put_key(out, first, k);
    buf_truncate(out, out->len - 2); /* the '":' just written */
    buf_puts(out, "_hex\":\"");
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        buf_putc(out, hx[p[i] >> 4]);
        buf_putc(out, hx[p[i] & 15]);
    }
    buf_putc(out, '"');
}

int syslogmsg_fields(const uint8_t *p, const syslogmsg *m, const char *transport, const char *peer,
                     buf *out)
{
    static const char *const fmt[] = {"raw", "rfc3164", "rfc5424"};
    int first = 1;
    buf_putc(out, '{');
    put_key(out, &first, "format");
    buf_printf(out, "\"%s\"", fmt[m->format]);
    put_key(out, &first, "facility");
    buf_printf(out, "%d", m->facility);
    put_key(out, &first, "severity");
    buf_printf(out, "%d", m->severity);
    put_str(out, &first, "timestamp", p, m->ts_off, m->ts_len);
    put_str(out, &first, "hostname", p, m->host_off, m->host_len);
    put_str(out, &first, "app_name", p, m->app_off, m->app_len);
    put_str(out, &first, "procid", p, m->pid_off, m->pid_len);
    put_str(out, &first, "msgid", p, m->msgid_off, m->msgid_len);
    if (m->sd_len)
        put_text(out, &first, "structured_data", p + m->sd_off, m->sd_len);
    put_text(out, &first, "msg", p + m->msg_off, m->msg_len);
    if (transport) {
        put_key(out, &first, "transport");
        jcs_put_string(out, transport, strlen(transport));
    }
    if (peer) {
        put_key(out, &first, "peer");
        if (jcs_put_string(out, peer, strlen(peer)) < 0)
            jcs_put_string(out, "?", 1);
    }
    buf_putc(out, '}');
    return out->err ? -1 : 0;
}
