#!/bin/sh
# Installs the Debian 12 packages sekisho needs to build, run and test, only if
# some are missing. Non-interactive; needs root (or sudo) for apt-get.
#   scripts/deps.sh build   what `make` needs
#   scripts/deps.sh check   also what the tests need (corpora, clang for ASan/fuzzing)
set -eu
BUILD="meson ninja-build pkg-config gcc libc6-dev libglib2.0-dev libgmime-3.0-dev libicu-dev
libxml2-dev libyaml-dev libsqlite3-dev libmagic-dev libmagic-mgc libarchive-dev libssl-dev
libsodium-dev libseccomp-dev libmilter-dev python3 postfix swaks"
CHECK="clang libclang-rt-14-dev llvm libpython3.11-testsuite neomutt tmux zip faketime bsdutils"
want="$BUILD"
[ "${1:-build}" = check ] && want="$BUILD $CHECK"
missing=""
for p in $want; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
# The test tools from the npm registry need node and npm; install Debian's
# only when the machine has none.
if [ "${1:-build}" = check ] && ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi
if [ -n "$missing" ]; then
    echo "deps: installing:$missing"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    # Postfix asks how to configure the system mailer; answer "No
    # configuration": then it writes no /etc/postfix/main.cf, and without one
    # Debian's postfix.service starts nothing. sekisho runs a private instance
    # (scripts/postfix-private.sh) and never uses the system one.
    case " $missing " in
    *" postfix "*)
        echo "postfix postfix/main_mailer_type select No configuration" |
            $SUDO debconf-set-selections ;;
    esac
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# Third-party mail software for the tests (pinned in tests/js/package-lock.json).
if [ "${1:-build}" = check ]; then
    top=$(cd "$(dirname "$0")/.." && pwd)
    if [ ! -f "$top/tests/js/node_modules/.package-lock.json" ] ||
       [ "$top/tests/js/package-lock.json" -nt "$top/tests/js/node_modules/.package-lock.json" ]; then
        echo "deps: npm ci in tests/js"
        (cd "$top/tests/js" && npm ci --no-audit --no-fund --loglevel=error)
    fi
fi
