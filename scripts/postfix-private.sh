#!/bin/sh
# postfix-private.sh - a private Postfix instance for development and tests.
#
#   scripts/postfix-private.sh [OPTIONS] start|stop|status|flush
#
# The instance has its own configuration, queue, data and log directories under
# one base directory (default: the checkout's var/postfix/), listens on
# 127.0.0.1:PORT only, delivers mail for every recipient domain into one
# Maildir (default: the checkout's var/maildir/) with the virtual(8) delivery
# agent, and can deliver nowhere else: every other transport is error:, and
# master.cf defines no smtp, lmtp, local or pipe service. It never reads or
# writes /etc/postfix/main.cf or /var/spool/postfix, and never signals a
# process that it did not start. Run it as root (Postfix's master must start
# as root to drop privileges).
#
# Run with --help for the options; the same text is below in usage().
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
prog=postfix-private.sh

# Milter timeouts (see usage() for why these values).
MILTER_CONNECT_TIMEOUT=10s
MILTER_COMMAND_TIMEOUT=30s
MILTER_CONTENT_TIMEOUT=120s
# How long `stop` waits for every process of the instance to end.
STOP_WAIT_SECONDS=30

usage() {
    cat <<EOF
使い方 / usage: scripts/$prog [OPTIONS] start|stop|status|flush

開発・試験用の Postfix インスタンスを、システムの Postfix (/etc/postfix,
/var/spool/postfix) に一切触れずに起動・停止します。設定・キュー・ログは
すべて基底ディレクトリの下に置かれ、127.0.0.1 でだけ待ち受け、すべての
宛先ドメインのメールを一つの Maildir に配送します。外部へは一切配送しません。
root で実行してください。

A private Postfix instance for development and tests that never touches the
system Postfix (/etc/postfix, /var/spool/postfix). Configuration, queue, data
and log live under one base directory; it listens on 127.0.0.1 only and
delivers mail for every recipient domain into one Maildir; nothing can leave
the machine (every other transport is error:). Run as root.

コマンド / commands:
  start    設定を生成して起動 (起動済みならエラー)。
           write the configuration and start (an error if already running)
  stop     停止し、インスタンスのプロセスがすべて終わるまで待つ。
           stop and wait until every process of the instance has ended
  status   起動中なら 0、停止中なら 3 で終了。
           exit 0 if running, 3 if not
  flush    キューに残ったメールの配送を再試行 (postqueue -f)。
           retry delivery of queued mail (postqueue -f)

オプション / options (環境変数でも指定可 / or environment variables):
  -b, --base DIR         基底ディレクトリ / base directory
                         [SEKISHO_POSTFIX_DIR, default: var/postfix in the checkout]
                           DIR/etc/      main.cf, master.cf (regenerated on start)
                           DIR/spool/    queue_directory
                           DIR/data/     data_directory
                           DIR/log/maillog   maillog_file
  -p, --port PORT        SMTP の待ち受けポート / SMTP port on 127.0.0.1
                         [SEKISHO_POSTFIX_PORT, default: 2525]
  -m, --maildir DIR      配送先の Maildir / the Maildir all mail goes to
                         [SEKISHO_MAILDIR, default: var/maildir in the checkout]
  -u, --mail-owner USER  Maildir に書き込む利用者 (root 不可) / the user that
                         writes the Maildir (not root) [SEKISHO_MAIL_OWNER,
                         default: the owner of an existing Maildir, else of the
                         checkout, else nobody]
  -n, --hostname NAME    myhostname [SEKISHO_POSTFIX_HOSTNAME, default: sekisho.localdomain]
  -M, --milter SPEC      ミルター / a milter: inet:127.0.0.1:PORT or unix:/path
                         [MILTER, default: none]
  -d, --daemon-name NAME ミルターに渡す {daemon_name} / the {daemon_name} macro
                         sent to the milter [SEKISHO_POSTFIX_DAEMON_NAME, default: internet]
  -r, --relay PORT       配送せず 127.0.0.1:PORT (別のプライベートな Postfix) へ
                         SMTP で中継する: インターネット側の送信 MTA の役 /
                         relay everything over SMTP to 127.0.0.1:PORT (another
                         private instance) instead of delivering: the sending
                         MTA of the internet side [SEKISHO_POSTFIX_RELAY]
  -h, --help             この説明 / this text

ミルターを指定したとき / with a milter, main.cf gets:
  smtpd_milters = non_smtpd_milters = SPEC
  milter_default_action = tempfail    ミルターの障害時はメールを受け取らず 4xx
                                      (送信側が再送、何も失われない) / on any milter
                                      fault the mail is refused with 4xx (the sender
                                      retries; nothing is lost)
  milter_protocol = 6
  milter_connect_timeout = $MILTER_CONNECT_TIMEOUT      loopback への接続 / connect over loopback
  milter_command_timeout = $MILTER_COMMAND_TIMEOUT      接続・HELO・MAIL・RCPT・ヘッダーなど / per command
  milter_content_timeout = $MILTER_CONTENT_TIMEOUT     本文と end-of-message への応答; ポリシーの
                                      mail.limits.time_limit (既定 30s) より長くし、
                                      無害化の時間切れはミルター自身が答えられるようにする /
                                      the reply to the body and end of message; longer
                                      than the policy's mail.limits.time_limit (default
                                      30s) so that the milter reports its own timeouts
  milter_macro_daemon_name = NAME
unix: のソケットは postfix 利用者 (smtpd) が書き込めなければなりません。
A unix: socket must be writable by the postfix user (smtpd runs as postfix).

例 / example:
  scripts/$prog start
  swaks --server 127.0.0.1:2525 --to user@example.jp --from a@example.com
  ls var/maildir/new/
  scripts/$prog stop

終了コード / exit status: 0 success; 1 failure (the message names the file or
step); 2 usage error; 3 (status only) not running.
EOF
}

die() {
    echo "$prog: $*" >&2
    exit 1
}

die_log() { # like die, after the last lines of the instance's maillog
    if [ -s "$maillog" ]; then
        echo "$prog: the end of $maillog:" >&2
        tail -n 5 "$maillog" | sed 's/^/    /' >&2
    fi
    die "$@"
}

usage_error() {
    echo "$prog: $*" >&2
    echo "$prog: see scripts/$prog --help" >&2
    exit 2
}

base=${SEKISHO_POSTFIX_DIR:-$top/var/postfix}
port=${SEKISHO_POSTFIX_PORT:-2525}
maildir=${SEKISHO_MAILDIR:-$top/var/maildir}
mail_owner=${SEKISHO_MAIL_OWNER:-}
myhostname=${SEKISHO_POSTFIX_HOSTNAME:-sekisho.localdomain}
milter=${MILTER:-}
daemon_name=${SEKISHO_POSTFIX_DAEMON_NAME:-internet}
relay=${SEKISHO_POSTFIX_RELAY:-}
cmd=""

need_arg() {
    [ "$2" -ge 2 ] || usage_error "option $1 needs a value"
}

while [ $# -gt 0 ]; do
    case $1 in
    -b | --base) need_arg "$1" $#; base=$2; shift 2 ;;
    -p | --port) need_arg "$1" $#; port=$2; shift 2 ;;
    -m | --maildir) need_arg "$1" $#; maildir=$2; shift 2 ;;
    -u | --mail-owner) need_arg "$1" $#; mail_owner=$2; shift 2 ;;
    -n | --hostname) need_arg "$1" $#; myhostname=$2; shift 2 ;;
    -M | --milter) need_arg "$1" $#; milter=$2; shift 2 ;;
    -d | --daemon-name) need_arg "$1" $#; daemon_name=$2; shift 2 ;;
    -r | --relay) need_arg "$1" $#; relay=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    start | stop | status | flush)
        [ -z "$cmd" ] || usage_error "one command only (got '$cmd' and '$1')"
        cmd=$1; shift ;;
    *) usage_error "unknown argument '$1'" ;;
    esac
done
[ -n "$cmd" ] || usage_error "no command (start, stop, status or flush)"

# Values go into main.cf, where whitespace, commas, '$', '{' and ':' have a
# meaning; allow only characters that are plain text there.
check_path() { # NAME VALUE
    case $2 in
    /*) ;;
    *) usage_error "$1 '$2' must be an absolute path" ;;
    esac
    case $2 in
    *[!A-Za-z0-9._/+@-]*)
        usage_error "$1 '$2' contains characters that main.cf cannot hold" \
            "as plain text (allowed: A-Z a-z 0-9 . _ / + @ -)" ;;
    esac
}

abspath() { # turns a relative path into one under the current directory
    case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$(pwd)" "$1" ;;
    esac
}

base=$(abspath "$base")
base=${base%/}
check_path "base directory" "$base"
conf=$base/etc
spool=$base/spool
data=$base/data
logdir=$base/log
maillog=$logdir/maillog

[ "$(id -u)" -eq 0 ] ||
    die "must run as root (Postfix's master starts as root and drops privileges)"
POSTFIX=$(command -v postfix 2>/dev/null || true)
[ -n "$POSTFIX" ] || [ ! -x /usr/sbin/postfix ] || POSTFIX=/usr/sbin/postfix
[ -n "$POSTFIX" ] || die "postfix is not installed (scripts/deps.sh build installs it)"
POSTCONF=$(dirname "$POSTFIX")/postconf
POSTQUEUE=$(dirname "$POSTFIX")/postqueue
[ -x "$POSTCONF" ] || die "$POSTCONF not found next to $POSTFIX"
# Never inherit a configuration directory from the caller's environment.
unset MAIL_CONFIG

# Refuse anything that is, or lies inside, the system Postfix's directories.
for p in config_directory queue_directory data_directory; do
    sys=$("$POSTCONF" -dh "$p") || die "postconf -dh $p failed"
    for mine in "$base" "$conf" "$spool" "$data"; do
        case "$mine/" in
        "$sys"/*) die "refusing to use $mine: it is inside the system Postfix's $p ($sys)" ;;
        esac
        case "$sys/" in
        "$mine"/*) die "refusing to use $mine: it contains the system Postfix's $p ($sys)" ;;
        esac
    done
done

# The master's pid if the instance is running, else nothing. The pid file is
# the instance's own (in its queue directory); a pid counts only if that
# process is a Postfix master started with this configuration directory.
master_pid() {
    pf=$spool/pid/master.pid
    [ -f "$pf" ] || return 0
    pid=$(awk 'NR == 1 { print $1 }' "$pf") || die "cannot read $pf"
    case $pid in
    '' | *[!0-9]*) return 0 ;;
    esac
    [ -r "/proc/$pid/environ" ] || return 0
    case $(readlink "/proc/$pid/exe" 2>/dev/null || true) in
    */master) ;;
    *) return 0 ;;
    esac
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "MAIL_CONFIG=$conf"; then
        echo "$pid"
    fi
}

write_file() { # PATH: writes stdin to PATH atomically
    tmp="$1.tmp.$$"
    cat >"$tmp" || { rm -f "$tmp"; die "cannot write $tmp"; }
    chmod 644 "$tmp" || die "cannot chmod $tmp"
    mv -f "$tmp" "$1" || die "cannot rename $tmp to $1"
}

resolve_owner() { # sets owner_uid, owner_gid
    if [ -z "$mail_owner" ]; then
        for d in "$maildir" "$top"; do
            if [ -d "$d" ]; then
                u=$(stat -c %u "$d") || die "cannot stat $d"
                if [ "$u" -ne 0 ]; then
                    mail_owner=$u
                    break
                fi
            fi
        done
        [ -n "$mail_owner" ] || mail_owner=nobody
    fi
    case $mail_owner in
    *[!0-9]*) owner_uid=$(id -u "$mail_owner" 2>/dev/null) ||
        die "mail owner '$mail_owner' is not a user on this machine" ;;
    *) owner_uid=$mail_owner ;;
    esac
    # The primary group of that user; a bare uid without an account uses its own number.
    owner_gid=$(id -g "$owner_uid" 2>/dev/null || echo "$owner_uid")
    [ "$owner_uid" -ne 0 ] || die "refusing to deliver mail as root (choose --mail-owner)"
}

start() {
    case $port in
    '' | *[!0-9]*) usage_error "port '$port' is not a number" ;;
    esac
    if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
        usage_error "port $port is out of range"
    fi
    maildir=$(abspath "$maildir")
    maildir=${maildir%/}
    check_path "maildir" "$maildir"
    case $myhostname in
    *.*) ;;
    *) usage_error "hostname '$myhostname' must be a fully qualified name (with a dot)" ;;
    esac
    case $myhostname in
    *[!A-Za-z0-9.-]*) usage_error "hostname '$myhostname' may contain only A-Z a-z 0-9 . -" ;;
    esac
    case $daemon_name in
    '' | *[!A-Za-z0-9._-]*)
        usage_error "daemon name '$daemon_name' may contain only A-Z a-z 0-9 . _ -" ;;
    esac
    if [ -n "$milter" ]; then
        case $milter in
        inet:*:*)
            mport=${milter##*:}
            mhost=${milter#inet:}
            mhost=${mhost%:*}
            case $mport in
            '' | *[!0-9]*) usage_error "milter '$milter': the port is not a number" ;;
            esac
            case $mhost in
            '' | *[!A-Za-z0-9.-]*)
                usage_error "milter '$milter': the host must be an IPv4 address or a name" ;;
            esac
            ;;
        unix:/*) check_path "milter socket" "${milter#unix:}" ;;
        *) usage_error "milter '$milter' must be inet:HOST:PORT or unix:/absolute/path" ;;
        esac
    fi

    case $relay in
    '') ;;
    *[!0-9]*) usage_error "relay '$relay' must be a port number on 127.0.0.1" ;;
    esac
    pid=$(master_pid)
    [ -z "$pid" ] || die "already running (master pid $pid, base $base); stop it first"

    resolve_owner
    umask 022
    for d in "$base" "$conf" "$spool" "$logdir"; do
        mkdir -p "$d" || die "cannot create $d"
    done
    # data_directory belongs to the mail owner; postfix check creates it so.
    for d in "$maildir" "$maildir/cur" "$maildir/new" "$maildir/tmp"; do
        if [ ! -d "$d" ]; then
            mkdir -p "$d" || die "cannot create $d"
            chown "$owner_uid:$owner_gid" "$d" || die "cannot chown $d to $owner_uid:$owner_gid"
            chmod 700 "$d" || die "cannot chmod $d"
        fi
    done
    # virtual(8) writes as the mail owner: it must reach and write the Maildir.
    for d in "$maildir/tmp" "$maildir/new"; do
        # shellcheck disable=SC2016 # $1 is expanded by the inner shell
        setpriv --reuid="$owner_uid" --regid="$owner_gid" --clear-groups \
            sh -c 'test -w "$1" && test -x "$1"' sh "$d" ||
            die "user $owner_uid cannot write $d (is a parent directory closed to it?" \
                "Use --mail-owner, or chmod o+x the parents)"
    done

    mparent=$(dirname "$maildir")
    mname=$(basename "$maildir")
    nowhere="error:5.7.1 this private sekisho instance delivers only to $maildir"
    {
        cat <<EOF
# Generated by scripts/$prog on each start; edits are overwritten.
# A private instance: nothing here is read by the system Postfix.
compatibility_level = 3.6
queue_directory = $spool
data_directory = $data
mail_owner = postfix
setgid_group = postdrop
syslog_name = sekisho-postfix
maillog_file = $maillog
maillog_file_prefixes = $logdir/

myhostname = $myhostname
mydomain = $myhostname
myorigin = \$myhostname
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtpd_banner = \$myhostname ESMTP
append_dot_mydomain = no
biff = no
alias_maps =
alias_database =

# Every recipient domain is delivered into one Maildir by virtual(8).
virtual_mailbox_domains = static:all
virtual_transport = virtual
virtual_mailbox_base = $mparent
virtual_mailbox_maps = static:$mname/
virtual_uid_maps = static:$owner_uid
virtual_gid_maps = static:$owner_gid
virtual_minimum_uid = 1
# Nothing can go anywhere else.
default_transport = $nowhere
relay_transport = $nowhere
local_transport = $nowhere
EOF
        if [ -n "$relay" ]; then
            cat <<EOF

# A sending MTA: every mail is relayed to 127.0.0.1:$relay, never delivered
# here. A 4xx there leaves it in this queue (deferred) until it is retried.
virtual_mailbox_domains =
default_transport = smtp:[127.0.0.1]:$relay
relay_transport = smtp:[127.0.0.1]:$relay
EOF
        fi
        if [ -n "$milter" ]; then
            cat <<EOF

# The milter. On any milter fault Postfix answers 451 4.7.1 and keeps nothing;
# the sending MTA retries later.
smtpd_milters = $milter
non_smtpd_milters = $milter
milter_default_action = tempfail
milter_protocol = 6
milter_connect_timeout = $MILTER_CONNECT_TIMEOUT
milter_command_timeout = $MILTER_COMMAND_TIMEOUT
milter_content_timeout = $MILTER_CONTENT_TIMEOUT
milter_macro_daemon_name = $daemon_name
EOF
        fi
    } | write_file "$conf/main.cf"

    # Only the services this instance needs; no chroot. No smtp, lmtp, local
    # or pipe service exists, so no transport could send mail out.
    write_file "$conf/master.cf" <<EOF
# Generated by scripts/$prog on each start; edits are overwritten.
# service          type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port    inet  n       -       n       -       -       smtpd
pickup             unix  n       -       n       60      1       pickup
cleanup            unix  n       -       n       -       0       cleanup
qmgr               unix  n       -       n       300     1       qmgr
rewrite            unix  -       -       n       -       -       trivial-rewrite
bounce             unix  -       -       n       -       0       bounce
defer              unix  -       -       n       -       0       bounce
trace              unix  -       -       n       -       0       bounce
verify             unix  -       -       n       -       1       verify
flush              unix  n       -       n       1000?   0       flush
proxymap           unix  -       -       n       -       -       proxymap
proxywrite         unix  -       -       n       -       1       proxymap
showq              unix  n       -       n       -       -       showq
error              unix  -       -       n       -       -       error
retry              unix  -       -       n       -       -       error
discard            unix  -       -       n       -       -       discard
virtual            unix  -       n       n       -       -       virtual
anvil              unix  -       -       n       -       1       anvil
scache             unix  -       -       n       -       1       scache
postlog            unix-dgram n  -       n       -       1       postlogd
EOF
    if [ -n "$relay" ]; then # the one way out: SMTP to 127.0.0.1:$relay
        echo "smtp               unix  -       -       n       -       -       smtp" \
            >>"$conf/master.cf" || die "cannot write $conf/master.cf"
    fi

    # `postfix check` creates the queue tree and data_directory with the
    # owners and modes Postfix wants, and checks the configuration.
    "$POSTFIX" -c "$conf" check ||
        die_log "step 'postfix -c $conf check' failed (configuration in $conf; log in $maillog)"
    "$POSTFIX" -c "$conf" start ||
        die_log "step 'postfix -c $conf start' failed (log in $maillog)"
    pid=$(master_pid)
    [ -n "$pid" ] || die "postfix start returned but no master runs for $conf (log in $maillog)"
    echo "$prog: started (master pid $pid) on 127.0.0.1:$port; Maildir $maildir;" \
        "log $maillog${milter:+; milter $milter}"
}

stop() {
    pid=$(master_pid)
    if [ -z "$pid" ]; then
        echo "$prog: not running (base $base)"
        return 0
    fi
    # The master is a session and process-group leader; every daemon it
    # spawned is in its group. Remember them before asking it to stop.
    members=$(pgrep -g "$pid" | tr '\n' ' ') || members=$pid
    "$POSTFIX" -c "$conf" stop || die "step 'postfix -c $conf stop' failed (log in $maillog)"
    i=0
    while :; do
        left=""
        for p in $members; do
            [ ! -d "/proc/$p" ] || left="$left $p"
        done
        more=$(pgrep -g "$pid" | tr '\n' ' ') || more=""
        [ -n "$left$more" ] || break
        i=$((i + 1))
        [ "$i" -le $((STOP_WAIT_SECONDS * 10)) ] ||
            die "processes of the instance still run after ${STOP_WAIT_SECONDS}s:$left $more"
        sleep 0.1
    done
    echo "$prog: stopped (master pid $pid)"
}

status() {
    pid=$(master_pid)
    if [ -n "$pid" ]; then
        echo "$prog: running (master pid $pid, base $base)"
        return 0
    fi
    echo "$prog: not running (base $base)"
    return 3
}

flush() {
    pid=$(master_pid)
    [ -n "$pid" ] || die "not running (base $base); start it first"
    "$POSTQUEUE" -c "$conf" -f || die "step 'postqueue -c $conf -f' failed (log in $maillog)"
}

case $cmd in
start) start ;;
stop) stop ;;
status) status ;;
flush) flush ;;
esac
