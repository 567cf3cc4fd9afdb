#!/bin/sh
# run-gateway.sh - the main job (`make run`): the mail gateway on this machine.
#
#   scripts/run-gateway.sh [BUILDDIR]
#
# Starts sekisho-milter in the foreground (built-in default policy; state and
# the quarantine under the checkout's var/) and a private Postfix on
# 127.0.0.1:2525 (scripts/postfix-private.sh: config, queue and log under
# var/postfix/) that passes every mail through the milter and delivers it into
# the Maildir var/maildir/. Prints how to send a test mail and where it lands.
# Ctrl-C or SIGTERM stops both (and only what this script started).
# Environment: SEKISHO_MILTER_PORT (default 10025), SEKISHO_POSTFIX_PORT
# (default 2525). Needs root (Postfix's master starts as root).
set -eu
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
case $build in
/*) ;;
*) build=$top/$build ;;
esac
milter=$build/src/sekisho-milter
sekisho=$build/src/sekisho
mport=${SEKISHO_MILTER_PORT:-10025}
sport=${SEKISHO_POSTFIX_PORT:-2525}
prog=run-gateway.sh

die() {
    echo "$prog: $*" >&2
    exit 1
}

[ -x "$milter" ] || die "$milter is missing (run: make build)"
[ "$(id -u)" -eq 0 ] || die "must run as root (Postfix's master starts as root; see README.md)"

export SEKISHO_STATE_DIR="$top/var"
mkdir -p "$top/var" || die "cannot create $top/var"
policy=$top/var/gateway-policy.yaml
# The built-in defaults, with the milter's port; everything else is default:
# every mail is sanitized, originals kept in var/quarantine/.
cat >"$policy" <<EOF
# Written by scripts/$prog on each start (make run); edits are overwritten.
gateway:
  listen: inet:127.0.0.1:$mport
EOF

milter_pid=""
postfix_started=""
cleanup() {
    trap - INT TERM EXIT
    if [ -n "$postfix_started" ]; then
        "$top/scripts/postfix-private.sh" --port "$sport" stop || true
    fi
    if [ -n "$milter_pid" ] && kill -0 "$milter_pid" 2>/dev/null; then
        kill -TERM "$milter_pid" 2>/dev/null || true
        # libmilter finishes the mail in progress and ends within a few seconds
        wait "$milter_pid" 2>/dev/null || true
    fi
    echo "$prog: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$milter" -p "$policy" --check-config >/dev/null || die "the policy $policy is not valid"
"$milter" -p "$policy" -f &
milter_pid=$!
# Wait until it listens (it starts its sandboxed workers first).
i=0
until python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $mport)))" \
    2>/dev/null; do
    kill -0 "$milter_pid" 2>/dev/null || die "sekisho-milter ended during start-up (see above)"
    i=$((i + 1))
    [ "$i" -le 300 ] || die "sekisho-milter does not listen on 127.0.0.1:$mport after 30 s"
    sleep 0.1
done

"$top/scripts/postfix-private.sh" --port "$sport" --milter "inet:127.0.0.1:$mport" start ||
    die "the private Postfix did not start (see above)"
postfix_started=1

cat <<EOF

================================================================================
 sekisho ゲートウェイが動いています / the sekisho gateway is running
   Postfix (private)  127.0.0.1:$sport  →  sekisho-milter 127.0.0.1:$mport  →  var/maildir/
   隔離した原本 / originals: var/quarantine/      Postfix log: var/postfix/log/maillog

 試験メールを送る / send a test mail (別の端末で / in another terminal):
   swaks --server 127.0.0.1:$sport --from billing@example.com --to soumu@town.example.lg.jp --data @tests/corpus/composed/attach-pdf-exe.eml

 届いたメール / the delivered mail:   ls var/maildir/new/
 原本 / the original:   SEKISHO_STATE_DIR=var $sekisho quarantine list
                        SEKISHO_STATE_DIR=var $sekisho quarantine get ID
 判断の記録 / the decisions (ledger):   SEKISHO_STATE_DIR=var $sekisho ledger tail
                        SEKISHO_STATE_DIR=var $sekisho ledger verify

 Ctrl-C で停止 / Ctrl-C stops Postfix and the milter.
================================================================================

EOF
set +e
wait "$milter_pid"
rc=$?
set -e
milter_pid=""
echo "$prog: sekisho-milter ended (status $rc)"
exit "$rc"
