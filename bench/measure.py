#!/usr/bin/python3
"""measure.py CMD...: runs CMD, prints "wall_seconds cpu_seconds peak_rss_kib"
of it (cpu = user + system time of CMD and the children it waited for).
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
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.4f %.4f %d" % (dt, ru.ru_utime + ru.ru_stime, ru.ru_maxrss))
