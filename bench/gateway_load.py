#!/usr/bin/python3
"""Load measurement of the gateway on loopback (Python 3 stdlib + Postfix's
smtp-source). Needs root and Postfix, like the e2e tests.

    bench/gateway_load.py BUILDDIR [--mails N] [--sessions S] [--size BYTES] [--no-milter]

Starts a private Postfix (tests/postfix_harness.py) with or without
sekisho-milter (the default policy, workers = 2 x CPUs, state in a
temporary directory), then:
  throughput  smtp-source -s S -m N -l BYTES; time from the first connection
              until all N mails are in the Maildir -> mails/s
  latency     S Python sessions sending N/10 mails of BYTES each; per mail the
              time from the end of DATA to the 250 reply (what a milter adds
              shows up there): p50 and p99 in ms
Checks that every mail was delivered once and (with the milter) carries
X-Sekisho-Quarantine-Id. Prints one JSON line with the figures.
"""
import argparse
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)
sys.path.insert(0, os.path.join(repo, "tests"))
from postfix_harness import PrivatePostfix, free_port, postfix_bin, skip_reason  # noqa: E402


def start_milter(exe, tmp, workers):
    port = free_port()
    pol = os.path.join(tmp, "policy.yaml")
    with open(pol, "w") as f:
        f.write("state_dir: %s/state\ngateway:\n  listen: inet:127.0.0.1:%d\n  workers: %d\n" %
                (tmp, port, workers))
    log = open(os.path.join(tmp, "milter.log"), "wb")
    p = subprocess.Popen([exe, "-p", pol, "-f"], stdout=log, stderr=log)
    for _ in range(300):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return p, "inet:127.0.0.1:%d" % port
        time.sleep(0.1)
    p.kill()
    raise SystemExit("sekisho-milter did not start")


def wait_delivered(pf, n, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if len(pf.delivered()) >= n:
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit("only %d of %d delivered" % (len(pf.delivered()), n))


def mail(i, size):
    head = ("From: <load@example.com>\r\nTo: <soumu@town.example.lg.jp>\r\n"
            "Subject: load %d\r\nMessage-ID: <load-%d@example.com>\r\n"
            "Date: Mon, 23 Nov 2026 09:00:00 +0900\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=UTF-8\r\n\r\n" % (i, i)).encode()
    line = ("負荷試験の本文です。" * 7 + "\r\n").encode()
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


def latency(pf, sessions, per_session, size):
    lat, lock, errors = [], threading.Lock(), []

    def run(k):
        try:
            with smtplib.SMTP("127.0.0.1", pf.port, timeout=120) as s:
                s.ehlo("load.example")
                for j in range(per_session):
                    i = k * per_session + j
                    s.mail("load@example.com", ["BODY=8BITMIME"])
                    s.rcpt("soumu@town.example.lg.jp")
                    s.putcmd("data")
                    code, _ = s.getreply()
                    if code != 354:
                        raise RuntimeError("DATA: %d" % code)
                    s.send(smtplib.quotedata(mail(i, size).decode()).encode() + b"\r\n.\r\n")
                    t0 = time.monotonic()
                    code, text = s.getreply()
                    t1 = time.monotonic()
                    if code != 250:
                        raise RuntimeError("end of data: %d %s" % (code, text))
                    with lock:
                        lat.append((t1 - t0) * 1000)
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(repr(e))

    ts = [threading.Thread(target=run, args=(k,)) for k in range(sessions)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("latency run failed: %s" % errors[:3])
    lat.sort()
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], len(lat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--mails", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=20480)
    ap.add_argument("--latency-size", type=int, default=102400)
    ap.add_argument("--no-milter", action="store_true")
    a = ap.parse_args()
    why = skip_reason()
    if why:
        print("SKIP: %s" % why)
        return 77
    tmp = tempfile.mkdtemp(prefix="sekisho-load-")
    os.chmod(tmp, 0o755)
    mp, spec = None, None
    try:
        if not a.no_milter:
            mp, spec = start_milter(os.path.join(os.path.abspath(a.build), "src", "sekisho-milter"),
                                    tmp, 2 * (os.cpu_count() or 1))
        with PrivatePostfix(repo, milter=spec) as pf:
            t0 = time.monotonic()
            r = subprocess.run([postfix_bin("smtp-source"), "-s", str(a.sessions), "-m", str(a.mails),
                                "-l", str(a.size), "-f", "load@example.com",
                                "-t", "soumu@town.example.lg.jp", "127.0.0.1:%d" % pf.port],
                               capture_output=True, timeout=3600)
            if r.returncode != 0:
                raise SystemExit("smtp-source: %s" % r.stderr.decode(errors="replace"))
            t1 = wait_delivered(pf, a.mails, 1800)
            thr = a.mails / (t1 - t0)
            n_lat = max(a.sessions, a.mails // 10)
            per = max(1, n_lat // a.sessions)
            before = len(pf.delivered())
            p50, p99, n = latency(pf, a.sessions, per, a.latency_size)
            wait_delivered(pf, before + n, 600)
            paths = pf.delivered()
            unsanitized = 0
            if not a.no_milter:
                for p in paths:
                    with open(p, "rb") as f:
                        if b"\nX-Sekisho-Quarantine-Id: " not in f.read(8192):
                            unsanitized += 1
            out = {"milter": not a.no_milter, "mails": a.mails, "sessions": a.sessions,
                   "size": a.size, "throughput_per_s": round(thr, 1),
                   "latency_size": a.latency_size, "latency_mails": n,
                   "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
                   "delivered": len(paths), "expected": a.mails + n, "unsanitized": unsanitized}
            print(json.dumps(out))
            return 0 if len(paths) == a.mails + n and unsanitized == 0 else 1
    finally:
        if mp is not None:
            mp.send_signal(signal.SIGTERM)
            try:
                mp.wait(timeout=30)
            except subprocess.TimeoutExpired:
                mp.kill()
                mp.wait()
            with open(os.path.join(tmp, "milter.log"), "rb") as f:
                tail = f.read().decode(errors="replace").splitlines()[-1:]
            print("\n".join(tail), file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
