#!/bin/sh
# Benchmark: sekisho sanitize vs the reference pipeline (bench/reference.py),
# side by side in one run, both pinned to one core, same mails, same storage
# discipline (originals fsynced in groups of 64 before any output).
#   bench/run.sh [BUILDDIR]        (make bench)
# Prints a Markdown table: mails/s and MB/s by wall time, mails/s by CPU time
# (user + system, the worker included: what one core spends, whatever else
# the machine does), peak RSS, and the ratios. Each figure is the median of
# BENCH_REPS runs (by wall time).
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
# the ledger of the decisions goes with the quarantine
export SEKISHO_STATE_DIR="$work/state"
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
            rm -rf "$work/q" "$work/o" "$work/state"
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
    wall, cpu, rss = open(p).read().split()
    return float(wall), float(cpu), int(rss)
sw, sc, srss = load(sys.argv[5]); rw, rc, rrss = load(sys.argv[6])
label = {"a": "(a) text+HTML, 2-20 KB", "b": "(b) 1-3 attachments, 50 KB-5 MB"}[s]
mb = nbytes / 1e6
print("| %s | %d mails, %.1f MB | sekisho | %.0f mails/s | %.1f MB/s | %.0f mails/s | %.1f MB |" % (
    label, n, mb, n / sw, mb / sw, n / sc, srss / 1024))
print("| | | reference | %.1f mails/s | %.2f MB/s | %.1f mails/s | %.1f MB |" % (
    n / rw, mb / rw, n / rc, rrss / 1024))
print("| | | **ratio** | **%.1f×** | **%.1f×** | **%.1f×** (CPU) | peak ≤ 2×largest+32 MB: %s (largest %.1f MB) |" % (
    rw / sw, rw / sw, rc / sc, "yes" if srss * 1024 <= 2 * largest + (32 << 20) else "NO",
    largest / 1e6))
PY
done
