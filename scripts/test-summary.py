#!/usr/bin/python3
"""test-summary.py BUILDDIR...: one closing line for `make check`.

Reads meson's machine-readable log (meson-logs/testlog.json) of each build
and prints each build's counts, then "N passed, M failed" over all of them
(skipped tests are counted apart). Exit status 1 if any failed or none ran.
"""
import json
import os
import sys

passed = failed = skipped = 0
for build in sys.argv[1:]:
    path = os.path.join(build, "meson-logs", "testlog.json")
    p = f = s = 0
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        print("%s: no test log (%s)" % (build, e.strerror))
        failed += 1
        continue
    for line in lines:
        if not line.strip():
            continue
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            p += 1
        elif r == "SKIP":
            s += 1
        else:
            f += 1
    print("%s: %d passed, %d failed, %d skipped" % (build, p, f, s))
    passed, failed, skipped = passed + p, failed + f, skipped + s
print("%d passed, %d failed" % (passed, failed) + (", %d skipped" % skipped if skipped else ""))
sys.exit(1 if failed or passed == 0 else 0)
