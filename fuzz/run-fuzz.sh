#!/bin/sh
# run-fuzz.sh FUZZER CORPUS SECONDS [extra libFuzzer flags]
# Runs a libFuzzer target for a bounded time over a scratch copy of its corpus
# (the checked-in corpus stays untouched). Exit non-zero if it finds a crash,
# leak or timeout; the input that did it is left in fuzz/artifacts/.
set -eu
# An undefined-behaviour report is a finding, not a warning to scroll past.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
fz=$1; corpus=$2; secs=$3; shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus"/. "$work"/ 2>/dev/null || true
art="$(dirname "$0")/artifacts/$(basename "$fz")"
mkdir -p "$art"
exec "$fz" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
    -artifact_prefix="$art/" -print_final_stats=1 "$@" "$work"
