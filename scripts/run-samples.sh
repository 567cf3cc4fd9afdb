#!/bin/sh
# The main job until the gateway lands: sanitize the bundled sample mails.
#   scripts/run-samples.sh BUILDDIR
# Originals go to the quarantine under var/, results to out/. Prints a summary
# and one result, decoded, so a person sees what a recipient would see.
set -eu
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
sekisho="$build/src/sekisho"
export SEKISHO_STATE_DIR="$top/var"
mkdir -p "$top/var" "$top/out"
echo "sekisho: sanitizing the sample mails in tests/corpus/composed/ (state: var/, results: out/)"
set +e
"$sekisho" sanitize -v -o "$top/out" "$top"/tests/corpus/composed/*.eml
rc=$?
set -e
echo
echo "exit status $rc (0: all sanitized; 65: some could not be made safe and were held)"
echo
"$sekisho" quarantine list | head -20
sample="$top/out/attach-pdf-exe.eml"
if [ -f "$sample" ]; then
    echo
    echo "=== out/attach-pdf-exe.eml, as a mail client shows it ==="
    python3 - "$sample" <<'PY'
import email, email.policy, sys
m = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=email.policy.default)
for h in ("From", "To", "Subject", "Date", "X-Sekisho-Quarantine-Id"):
    print("%s: %s" % (h, m[h]))
print()
print(m.get_content())
PY
fi
echo "Next: $sekisho sanitize --help; $sekisho quarantine get ID > original.eml (with SEKISHO_STATE_DIR=var)"
[ "$rc" -eq 0 ] || [ "$rc" -eq 65 ]
