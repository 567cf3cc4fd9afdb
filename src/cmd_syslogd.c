/*
 * sekisho syslogd - the ledger's syslog intake: RFC 5424 and RFC 3164
 * messages over a unix datagram socket, UDP and TCP (RFC 6587 octet counting
 * or newline framing), each appended as one entry of type "syslog"
 * (lib/syslogmsg for the fields). Foreground, one thread, poll(). Limits:
 * message size, TCP connections, and a per-source token bucket; whatever is
 * refused is counted and the counts are appended as "syslog.dropped" entries
 * (at most once a second, and at exit), never silently lost. Group commit:
 * everything read in one pass over the ready sockets is one ledger commit.
 * SIGTERM/SIGINT: read what the sockets still hold, commit, record the drop
 * counts, sign a head, exit 0.
 */
#include "cli.h"
#include "decision.h"
#include "ledger.h"
#include "syslogmsg.h"
#include "util/msg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char help_syslogd[] =
    "名前 / NAME\n"
    "    sekisho syslogd - syslog を受けて台帳に記録する / receive syslog into the ledger\n"
    "\n"
    "書式 / SYNOPSIS\n"
    "    sekisho syslogd [-p POLICY] [-l DIR] [-k KEYFILE] [--unix PATH]\n"
    "                    [--udp ADDR:PORT] [--tcp ADDR:PORT] [--max-message BYTES]\n"
    "                    [--max-connections N] [--rate N]\n"
    "\n"
    "説明 / DESCRIPTION\n"
    "    RFC 5424 と RFC 3164（BSD 形式）の syslog メッセージを、unix ドメインの\n"
    "    データグラムソケット、UDP、TCP（RFC 6587 のオクテット数による区切りと改行\n"
    "    による区切り）で受け取り、1 件ずつ種類 syslog の記録として台帳に追記します\n"
    "    （facility, severity, timestamp, hostname, app_name, procid, msgid,\n"
    "    structured_data, msg, transport, peer）。一度に届いたものはまとめて確定します。\n"
    "    大きすぎるメッセージ、接続数の超過、送信元ごとの流量（トークンバケット）の\n"
    "    超過は、捨てた件数を syslog.dropped の記録として台帳に残します（黙って捨て\n"
    "    ません）。前面で動き、SIGTERM で受け取り済みのものを確定してから終わります。\n"
    "    sshd、Postfix、dovecot、rsyslog、NXLog からの送り方は docs/LEDGER.md。\n"
    "    Receives RFC 5424 and RFC 3164 syslog over a unix datagram socket, UDP and\n"
    "    TCP (RFC 6587 octet counting or newline framing) and appends each message as\n"
    "    one ledger entry of type syslog; what arrives together is committed\n"
    "    together. Oversized messages, connections over the limit and messages over a\n"
    "    source's rate (token bucket) are dropped and counted, and the counts are\n"
    "    appended as syslog.dropped entries. Runs in the foreground; SIGTERM commits\n"
    "    what was received and exits. Without --unix/--udp/--tcp it listens where the\n"
    "    policy's intake: says (default UDP 127.0.0.1:514 and TCP 127.0.0.1:601,\n"
    "    loopback only); the limits also default to intake:'s.\n"
    "\n"
    "オプション / OPTIONS\n"
    "    --unix PATH           unix データグラムソケット / unix datagram socket (mode 0660)\n"
    "    --udp ADDR:PORT       UDP (IPv4) / UDP listener\n"
    "    --tcp ADDR:PORT       TCP (IPv4) / TCP listener\n"
    "    --max-message BYTES   1 件の上限 / per message (default 8192, 2048 to 65536)\n"
    "    --max-connections N   TCP 接続の上限 / TCP connections (default 64)\n"
    "    --rate N              送信元ごとの毎秒の件数 / messages per second per source\n"
    "                          (burst 2N; default 20000; 0 = no limit)\n"
    "    -p, -l, -k            ポリシー（intake:, ledger:）、台帳、署名鍵 / policy (intake:,\n"
    "                          ledger:), ledger, key (as sekisho ledger)\n"
    "    -h, --help            この説明 / this manual\n"
    "\n"
    "終了ステータス / EXIT STATUS\n"
    "    0 SIGTERM で正常終了 stopped by SIGTERM; 64 usage; 66 no ledger; 71 cannot bind;\n"
    "    74 I/O error; 75 the ledger could not be written (what was not committed is\n"
    "    not recorded); 78 policy error.\n"
    "\n"
    "例 / EXAMPLES\n"
    "    sekisho syslogd -p /etc/sekisho/policy.yaml --unix /run/sekisho/log \\\n"
    "        --udp 127.0.0.1:514 --tcp 127.0.0.1:601\n"
    "    logger --rfc5424 --tcp --octet-count -n 127.0.0.1 -P 601 hello\n";

#define MAX_SOURCES 1024

static volatile sig_atomic_t stop;
static void on_signal(int s)
{
    (void)s;
    stop = 1;
}

typedef struct conn {
    int fd;
    char peer[64];
    buf in;
    uint64_t skip; /* bytes of an oversized octet-counted frame still to skip */
    int skip_line; /* skipping an oversized newline-framed frame */
} conn;

typedef struct bucket {
    char key[48];
    double tokens;
    int64_t last_ms;
} bucket;

typedef struct state {
    ledger *l;
    buf fields, err;
    size_t max_msg;
    double rate;
    bucket src[MAX_SOURCES];
    size_t nsrc;
    uint64_t drop_size, drop_rate, drop_conn, received;
    int failed;
} state;

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Token bucket per source address (the whole address, no port). */
static int rate_ok(state *s, const char *peer)
{
    if (s->rate <= 0)
        return 1;
    char key[48];
    snprintf(key, sizeof key, "%s", peer);
    char *colon = strrchr(key, ':');
    if (colon && strncmp(key, "unix", 4) != 0)
        *colon = 0;
    int64_t now = mono_ms();
    bucket *b = NULL;
    for (size_t i = 0; i < s->nsrc && !b; i++)
        if (strcmp(s->src[i].key, key) == 0)
            b = &s->src[i];
    if (b == NULL) {
        /* full: the least recently seen source gives its slot */
        size_t k = s->nsrc;
        if (k == MAX_SOURCES) {
            k = 0;
            for (size_t i = 1; i < s->nsrc; i++)
                if (s->src[i].last_ms < s->src[k].last_ms)
                    k = i;
        } else {
            s->nsrc++;
        }
        b = &s->src[k];
        snprintf(b->key, sizeof b->key, "%s", key);
        b->tokens = 2 * s->rate;
        b->last_ms = now;
    }
    b->tokens += (double)(now - b->last_ms) * s->rate / 1000.0;
    if (b->tokens > 2 * s->rate)
        b->tokens = 2 * s->rate;
    b->last_ms = now;
    if (b->tokens < 1)
        return 0;
    b->tokens -= 1;
    return 1;
}

static void take(state *s, const uint8_t *p, size_t n, const char *transport, const char *peer)
{
    if (s->failed)
        return;
    if (n > s->max_msg) {
        s->drop_size++;
        return;
    }
    if (!rate_ok(s, peer)) {
        s->drop_rate++;
        return;
    }
    syslogmsg m;
    buf_reset(&s->fields);
    uint64_t ix;
    if (syslogmsg_parse(p, n, &m) < 0 || syslogmsg_fields(p, &m, transport, peer, &s->fields) < 0) {
        s->drop_size++;
        return;
    }
    buf_reset(&s->err);
    if (ledger_append(s->l, "syslog", "sekisho syslogd", s->fields.p, s->fields.len, &ix, &s->err) <
        0) {
        msg_warn("台帳に追記できません / cannot append: %s", buf_cstr(&s->err));
        s->failed = 1;
        return;
    }
    s->received++;
}

/* Frames in c->in: "LEN SP MSG" (octet counting) or "MSG LF". */
static void frames(state *s, conn *c, int eof)
{
    size_t pos = 0;
    buf *in = &c->in;
    while (pos < in->len) {
        if (c->skip) {
            size_t k = in->len - pos < c->skip ? in->len - pos : (size_t)c->skip;
            pos += k;
            c->skip -= k;
            continue;
        }
        if (c->skip_line) {
            uint8_t *nl = memchr(in->p + pos, '\n', in->len - pos);
            if (nl == NULL) {
                pos = in->len;
                break;
            }
            pos = (size_t)(nl - in->p) + 1;
            c->skip_line = 0;
            continue;
        }
        if (in->p[pos] >= '1' && in->p[pos] <= '9') {
            size_t i = pos;
            uint64_t len = 0;
            while (i < in->len && i - pos < 10 && in->p[i] >= '0' && in->p[i] <= '9')
                len = len * 10 + (uint64_t)(in->p[i++] - '0');
            if (i < in->len && in->p[i] == ' ') {
                i++;
                if (len > s->max_msg) {
                    s->drop_size++;
                    c->skip = len;
                    pos = i;
                    continue;
                }
                if (in->len - i < len)
                    break; /* the rest has not arrived */
                take(s, in->p + i, (size_t)len, "tcp", c->peer);
                pos = i + (size_t)len;
                continue;
            }
            if (i == in->len && i - pos < 10)
                break; /* the count itself is incomplete */
            /* digits not followed by a space: newline framing */
        }
        uint8_t *nl = memchr(in->p + pos, '\n', in->len - pos);
        if (nl == NULL) {
            if (in->len - pos > s->max_msg) {
                s->drop_size++;
                c->skip_line = 1;
                pos = in->len;
            } else if (eof && in->len > pos) {
                take(s, in->p + pos, in->len - pos, "tcp", c->peer);
                pos = in->len;
            }
            break;
        }
        size_t len = (size_t)(nl - (in->p + pos));
        if (len > 0)
            take(s, in->p + pos, len, "tcp", c->peer);
        pos += len + 1;
    }
    if (pos > 0) {
        memmove(in->p, in->p + pos, in->len - pos);
        in->len -= pos;
    }
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (*end || port < 0 || port > 65535 || inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return -1;
    return 0;
}

static int listen_on(int type, const char *spec)
{
    struct sockaddr_in a;
    if (parse_addr(spec, &a) < 0) {
        fprintf(stderr, "sekisho syslogd: %s: ADDR:PORT ではありません / not IPv4 ADDR:PORT\n",
                spec);
        return -2;
    }
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        (type == SOCK_STREAM && listen(fd, 128) < 0)) {
        msg_warn("%s %s: %s", type == SOCK_STREAM ? "tcp" : "udp", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (type == SOCK_DGRAM) {
        int rcv = 8 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv); /* best effort */
    }
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "sekisho syslogd: %s: パスが長すぎます / path too long\n", path);
        return -2;
    }
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && unlink(path) < 0 && errno != ENOENT) {
        msg_warn("unix %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || chmod(path, 0660) < 0) {
        msg_warn("unix %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int rcv = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    return fd;
}

static void record_drops(state *s)
{
    if (s->failed || (s->drop_size | s->drop_rate | s->drop_conn) == 0)
        return;
    char f[256];
    snprintf(f, sizeof f,
             "{\"connections_refused\":%" PRIu64 ",\"over_rate\":%" PRIu64 ",\"oversized\":%" PRIu64
             "}",
             s->drop_conn, s->drop_rate, s->drop_size);
    uint64_t ix;
    buf_reset(&s->err);
    if (ledger_append(s->l, "syslog.dropped", "sekisho syslogd", (const uint8_t *)f, strlen(f), &ix,
                      &s->err) < 0) {
        msg_warn("台帳に追記できません / cannot append: %s", buf_cstr(&s->err));
        s->failed = 1;
        return;
    }
    msg_warn("捨てた件数を記録しました / recorded drops: %s", f);
    s->drop_size = s->drop_rate = s->drop_conn = 0;
}

int cmd_syslogd(int argc, char **argv)
{
    static const struct option lo[] = {
        {"policy", required_argument, NULL, 'p'},
        {"ledger", required_argument, NULL, 'l'},
        {"key", required_argument, NULL, 'k'},
        {"unix", required_argument, NULL, 'U'},
        {"udp", required_argument, NULL, 'u'},
        {"tcp", required_argument, NULL, 't'},
        {"max-message", required_argument, NULL, 'M'},
        {"max-connections", required_argument, NULL, 'C'},
        {"rate", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *pfile = NULL, *dir = NULL, *key = NULL, *unix_path = NULL, *udp = NULL, *tcp = NULL;
    long max_msg = -1, max_conn = -1, rate = -1; /* -1: the policy's intake: */
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+p:l:k:h", lo, NULL)) != -1) {
        char *end;
        long v;
        switch (c) {
        case 'p':
            pfile = optarg;
            break;
        case 'l':
            dir = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'U':
            unix_path = optarg;
            break;
        case 'u':
            udp = optarg;
            break;
        case 't':
            tcp = optarg;
            break;
        case 'M':
        case 'C':
        case 'R':
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 0 || (c == 'M' && (v < 2048 || v > 65536)) ||
                (c == 'C' && (v < 1 || v > 4096))) {
                fprintf(stderr, "sekisho syslogd: %s: 範囲外 / out of range (see --help)\n",
                        optarg);
                return EXIT_USAGE;
            }
            if (c == 'M')
                max_msg = v;
            else if (c == 'C')
                max_conn = v;
            else
                rate = v;
            break;
        case 'h':
            fputs(help_syslogd, stdout);
            return EXIT_OK;
        default:
            fprintf(stderr, "使い方 / usage: see: sekisho syslogd --help\n");
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sekisho syslogd: 引数は不要です / no arguments expected\n");
        return EXIT_USAGE;
    }
    policy *pol = cli_load_policy(pfile);
    int status = EXIT_OK;
    int from_policy = !unix_path && !udp && !tcp;
    if (from_policy) {
        unix_path = pol->intake.unix_socket;
        udp = pol->intake.udp && *pol->intake.udp ? pol->intake.udp : NULL;
        tcp = pol->intake.tcp && *pol->intake.tcp ? pol->intake.tcp : NULL;
        if (!unix_path && !udp && !tcp) {
            fprintf(stderr,
                    "%s: intake: 受信する場所がありません / no listener (unix, udp and tcp "
                    "are all empty)\n",
                    pol->source);
            policy_free(pol);
            return EXIT_CONFIG;
        }
    }
    if (max_msg < 0)
        max_msg = (long)pol->intake.max_message_bytes;
    if (max_conn < 0)
        max_conn = (long)pol->intake.max_connections;
    if (rate < 0)
        rate = (long)pol->intake.rate;
    int lfd[3] = {-1, -1, -1};                        /* unix, udp, tcp */
    int bad = from_policy ? EXIT_CONFIG : EXIT_USAGE; /* an address that does not parse */
    if (unix_path && (lfd[0] = listen_unix(unix_path)) < 0)
        status = lfd[0] == -2 ? bad : 71;
    if (status == EXIT_OK && udp && (lfd[1] = listen_on(SOCK_DGRAM, udp)) < 0)
        status = lfd[1] == -2 ? bad : 71;
    if (status == EXIT_OK && tcp && (lfd[2] = listen_on(SOCK_STREAM, tcp)) < 0)
        status = lfd[2] == -2 ? bad : 71;
    state *s = xcalloc(1, sizeof *s);
    buf_init(&s->fields, (size_t)SYSLOGMSG_MAX * 3);
    buf_init(&s->err, 8192);
    s->max_msg = (size_t)max_msg;
    s->rate = (double)rate;
    buf notes;
    buf_init(&notes, 1 << 20);
    if (status == EXIT_OK) {
        ledger_opts o;
        ledger_opts_from_policy(pol, dir, key, &o);
        o.notes = &notes;
        s->l = ledger_open(&o, 1, &s->err);
        fputs(buf_cstr(&notes), stderr);
        if (s->l == NULL) {
            msg_warn("台帳を開けません / cannot open the ledger: %s", buf_cstr(&s->err));
            status = strstr(buf_cstr(&s->err), "no ledger at") ? EXIT_NOINPUT : EXIT_IOERR;
        }
    }
    conn *conns = xcalloc((size_t)max_conn, sizeof *conns);
    size_t nconn = 0;
    struct pollfd *pf = xcalloc((size_t)max_conn + 3, sizeof *pf);
    uint8_t *dg = xmalloc((size_t)SYSLOGMSG_MAX + 1);
    if (status == EXIT_OK) {
        struct sigaction sa = {0};
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        msg_warn("受信を始めました / listening:%s%s%s%s%s%s", unix_path ? " unix " : "",
                 unix_path ? unix_path : "", udp ? " udp " : "", udp ? udp : "", tcp ? " tcp " : "",
                 tcp ? tcp : "");
    }
    int64_t last_drop_note = mono_ms();
    int draining = 0;
    while (status == EXIT_OK && !s->failed) {
        size_t np = 0;
        for (int i = 0; i < 3; i++)
            pf[np++] = (struct pollfd){.fd = lfd[i], .events = POLLIN};
        for (size_t i = 0; i < nconn; i++)
            pf[np++] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
        int r = poll(pf, np, draining ? 0 : 1000);
        if (r < 0 && errno != EINTR) {
            msg_warn("poll: %s", strerror(errno));
            status = EXIT_IOERR;
            break;
        }
        if (stop && !draining) {
            draining = 1; /* one more pass over what the sockets hold */
            continue;
        }
        int any = 0;
        for (int i = 0; i < 2 && r > 0; i++) {
            if (lfd[i] < 0 || !(pf[i].revents & POLLIN))
                continue;
            /* a bounded number per pass, so TCP gets its turn */
            for (int k = 0; k < 4096; k++) {
                struct sockaddr_in from;
                socklen_t fl = sizeof from;
                ssize_t n = recvfrom(lfd[i], dg, (size_t)s->max_msg + 1, MSG_TRUNC,
                                     (struct sockaddr *)&from, &fl);
                if (n < 0)
                    break;
                any = 1;
                char peer[64] = "unix";
                if (i == 1 && fl >= sizeof from) {
                    char ip[INET_ADDRSTRLEN];
                    inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
                    snprintf(peer, sizeof peer, "%s:%u", ip, ntohs(from.sin_port));
                }
                take(s, dg, (size_t)n, i == 0 ? "unix" : "udp", peer);
            }
        }
        if (lfd[2] >= 0 && (pf[2].revents & POLLIN)) {
            for (;;) {
                struct sockaddr_in from;
                socklen_t fl = sizeof from;
                int fd =
                    accept4(lfd[2], (struct sockaddr *)&from, &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                if (nconn == (size_t)max_conn) {
                    close(fd);
                    s->drop_conn++;
                    continue;
                }
                conn *cn = &conns[nconn++];
                memset(cn, 0, sizeof *cn);
                cn->fd = fd;
                char ip[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
                snprintf(cn->peer, sizeof cn->peer, "%s:%u", ip, ntohs(from.sin_port));
                buf_init(&cn->in, (size_t)s->max_msg + 64);
            }
        }
        for (size_t i = 0; i < nconn; i++) {
            conn *cn = &conns[i];
            size_t pi = 3 + i;
            if (pi < np && pf[pi].fd == cn->fd && !(pf[pi].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int closed = 0;
            for (int k = 0; k < 64; k++) {
                if (buf_reserve(&cn->in, 65536 < s->max_msg + 64 - cn->in.len
                                             ? 65536
                                             : s->max_msg + 64 - cn->in.len) < 0)
                    break;
                ssize_t n = read(cn->fd, cn->in.p + cn->in.len, cn->in.cap - cn->in.len);
                if (n < 0 && errno == EINTR)
                    continue;
                if (n <= 0) {
                    closed = n == 0 || errno != EAGAIN;
                    break;
                }
                any = 1;
                cn->in.len += (size_t)n;
                frames(s, cn, 0);
            }
            if (closed) {
                frames(s, cn, 1);
                close(cn->fd);
                buf_free(&cn->in);
                conns[i] = conns[--nconn];
                i--;
                np = 0; /* the poll slots no longer match */
            }
        }
        /* group commit: what this pass read */
        if (ledger_pending(s->l) > 0) {
            buf_reset(&s->err);
            if (ledger_commit(s->l, &s->err) < 0) {
                msg_warn("確定できません（未確定の受信分は記録されていません）/ commit failed "
                         "(what was not committed is not recorded): %s",
                         buf_cstr(&s->err));
                status = EXIT_TEMPFAIL;
                break;
            }
        }
        if (mono_ms() - last_drop_note >= 1000) {
            record_drops(s);
            last_drop_note = mono_ms();
        }
        if (draining && !any)
            break;
    }
    if (s->l) {
        for (size_t i = 0; i < nconn; i++)
            frames(s, &conns[i], 1);
        record_drops(s);
        buf_reset(&s->err);
        int rc = ledger_close(s->l, &s->err);
        if ((rc < 0 || s->failed) && status == EXIT_OK) {
            msg_warn("台帳を閉じられません / cannot close the ledger: %s", buf_cstr(&s->err));
            status = EXIT_TEMPFAIL;
        }
        if (status == EXIT_OK)
            msg_warn("停止しました / stopped: %" PRIu64 " messages recorded", s->received);
    }
    for (size_t i = 0; i < nconn; i++) {
        close(conns[i].fd);
        buf_free(&conns[i].in);
    }
    for (int i = 0; i < 3; i++)
        if (lfd[i] >= 0)
            close(lfd[i]);
    if (unix_path && lfd[0] >= 0)
        unlink(unix_path);
    free(conns);
    free(pf);
    free(dg);
    buf_free(&s->fields);
    buf_free(&s->err);
    buf_free(&notes);
    free(s);
    policy_free(pol);
    return status;
}
