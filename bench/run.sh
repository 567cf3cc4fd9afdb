#!/bin/sh
# Benchmark: sekisho sanitize vs the reference pipeline (bench/reference.py),
# side by side in one run, both pinned to one core, same mails, same storage
# discipline (originals fsynced in groups of 64 before any output).
#   bench/run.sh [BUILDDIR]        (make bench)
# Prints a Markdown table of mails/s, MB/s, peak RSS and the ratios.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
sekisho=$build/src/sekisho
data=$build/bench-data
[ -d "$data/a" ] || /usr/bin/python3 "$top/bench/gen.py" "$data"
# BENCH_TMP=/dev/shm puts both quarantines and outputs on tmpfs: fsync is then
# free and the comparison is of CPU alone.
work=$(mktemp -d -p "${BENCH_TMP:-/tmp}")
trap 'rm -rf "$work"' EXIT
# The inputs are read from the same place as the quarantine and outputs go
# (both implementations read the same copies), so that with BENCH_TMP=/dev/shm
# no disk read or eviction of the page cache enters the comparison.
cp -r "$data" "$work/in"
data=$work/in
reps=${BENCH_REPS:-3}
for set in a b; do
    n=$(ls "$data/$set" | wc -l)
    bytes=$(cat "$data/$set"/*.eml | wc -c)
    largest=$(ls -S "$data/$set" | head -1)
    largest=$(wc -c < "$data/$set/$largest")
    for impl in sekisho reference; do
        for r in $(seq "$reps"); do
            rm -rf "$work/q" "$work/o"
            if [ $impl = sekisho ]; then
                cmd="$sekisho sanitize -q $work/q -o $work/o"
            else
                cmd="/usr/bin/python3 $top/bench/reference.py -q $work/q -o $work/o"
            fi
            # shellcheck disable=SC2086
            /usr/bin/python3 "$top/bench/measure.py" taskset -c 0 $cmd "$data/$set"/*.eml
        done | sort -n | sed -n "$(( (reps + 1) / 2 ))p" > "$work/$set-$impl"
    done
    /usr/bin/python3 - "$set" "$n" "$bytes" "$largest" "$work/$set-sekisho" "$work/$set-reference" <<'PY'
import sys
s, n, nbytes, largest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def load(p):
    secs, rss = open(p).read().split()
    return float(secs), int(rss)
ss, srss = load(sys.argv[5]); rs, rrss = load(sys.argv[6])
label = {"a": "(a) text+HTML, 2-20 KB", "b": "(b) 1-3 attachments, 50 KB-5 MB"}[s]
mb = nbytes / 1e6
print("| %s | %d mails, %.1f MB | sekisho | %.0f mails/s | %.1f MB/s | %.1f MB |" % (label, n, mb, n / ss, mb / ss, srss / 1024))
print("| | | reference | %.1f mails/s | %.2f MB/s | %.1f MB |" % (n / rs, mb / rs, rrss / 1024))
print("| | | **ratio** | **%.1f×** | **%.1f×** | peak ≤ 2×largest+32 MB: %s (largest %.1f MB) |" % (
    rs / ss, rs / ss, "yes" if srss * 1024 <= 2 * largest + (32 << 20) else "NO", largest / 1e6))
PY
done
