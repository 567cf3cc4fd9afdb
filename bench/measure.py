#!/usr/bin/python3
"""measure.py CMD...: runs CMD, prints "wall_seconds peak_rss_kib" of it.
Fails if CMD exits other than 0."""
import resource
import subprocess
import sys
import time

t0 = time.monotonic()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
dt = time.monotonic() - t0
if r.returncode != 0:
    sys.exit("measure.py: %s exited %d" % (sys.argv[1:3], r.returncode))
print("%.4f %d" % (dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
