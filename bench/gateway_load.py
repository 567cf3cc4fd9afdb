#!/usr/bin/python3
"""Load measurement of the gateway on loopback (Python 3 stdlib + Postfix's
smtp-source). Needs root and Postfix, like the e2e tests.

    bench/gateway_load.py BUILDDIR [--mails N] [--sessions S] [--size BYTES]
                          [--latency-size BYTES] [--latency-mails M] [--runs R]
                          [--only milter|postfix] [--workers W] [--milter-log FILE]

Each run measures, one after the other, the same private Postfix
(tests/postfix_harness.py, a fresh instance each time) without the milter
("postfix": the ceiling) and with sekisho-milter in front of it ("milter":
the default policy, W workers, state in a temporary directory). Per instance:
  throughput  smtp-source -N -s S -m N -l BYTES (one message per connection,
              a distinct recipient per message); from the first connection
              until all N mails are in the Maildir -> mails/s
  latency     S Python sessions sending M mails of --latency-size bytes over
              kept connections; per mail the time from the end of DATA to the
              250 reply (what a milter adds shows up there): p50 and p99
  cpu         CPU seconds of Postfix's processes and of the milter (with its
              workers) during the throughput phase, per mail
Then it checks, never assumes:
  lost        every message number smtp-source sent (the -N prefix of the
              recipient, which virtual(8) writes into Delivered-To) and every
              latency mail (its Message-ID) is in the Maildir exactly once
  unsanitized (milter) every delivered mail carries X-Sekisho-Sanitized and an
              X-Sekisho-Quarantine-Id that no other mail carries and that
              names an original in the quarantine, which holds exactly one
              original per delivered mail
Prints one JSON line per instance, then (with --runs > 1 or both kinds) a
summary line: the median of the runs, and the ratios milter/postfix of the
medians, each ratio from runs made in this same invocation. Exit status 0 only
when nothing was lost or unsanitized in any run.
"""
import argparse
import email
import email.policy
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)
sys.path.insert(0, os.path.join(repo, "tests"))
from postfix_harness import PrivatePostfix, free_port, postfix_bin, skip_reason  # noqa: E402

RCPT = "soumu@town.example.lg.jp"
CLK = os.sysconf("SC_CLK_TCK")


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


def stop_milter(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    return p.returncode


def proc_cpu(pid, children=True):
    """CPU seconds of pid (user + system), with its reaped children."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, ValueError, IndexError):
            continue
    return out


def postfix_cpu(pf):
    """Postfix's CPU so far: the master with the daemons it reaped, plus the
    daemons that still run."""
    total = proc_cpu(pf.master)
    for pid in pf.processes():
        if pid != pf.master:
            total += proc_cpu(pid, children=False)
    return total


def milter_cpu(mp):
    """(the milter's own CPU, its workers' CPU) so far."""
    if mp is None:
        return 0.0, 0.0
    own = proc_cpu(mp.pid, children=False)
    return own, proc_cpu(mp.pid) - own + sum(proc_cpu(c, children=False)
                                             for c in children_of(mp.pid))


def wait_delivered(pf, n, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if len(pf.delivered()) >= n:
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit("only %d of %d delivered after %d s" % (len(pf.delivered()), n, timeout))


def mail(i, size, tag):
    head = ("From: <load@example.com>\r\nTo: <%s>\r\n"
            "Subject: load %d\r\nMessage-ID: <%s-%d@example.com>\r\n"
            "Date: Mon, 23 Nov 2026 09:00:00 +0900\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=UTF-8\r\n\r\n" % (RCPT, i, tag, i)).encode()
    line = ("負荷試験の本文です。" * 7 + "\r\n").encode()
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


def latency(pf, sessions, total, size, tag):
    lat, lock, errors = [], threading.Lock(), []
    per = [total // sessions + (1 if k < total % sessions else 0) for k in range(sessions)]
    first = [sum(per[:k]) for k in range(sessions)]

    def run(k):
        try:
            with smtplib.SMTP("127.0.0.1", pf.port, timeout=300) as s:
                s.ehlo("load.example")
                for j in range(per[k]):
                    i = first[k] + j
                    s.mail("load@example.com", ["BODY=8BITMIME"])
                    s.rcpt(RCPT)
                    s.putcmd("data")
                    code, _ = s.getreply()
                    if code != 354:
                        raise RuntimeError("DATA: %d" % code)
                    s.send(smtplib.quotedata(mail(i, size, tag).decode()).encode() + b"\r\n.\r\n")
                    t0 = time.monotonic()
                    code, text = s.getreply()
                    t1 = time.monotonic()
                    if code != 250:
                        raise RuntimeError("end of data: %d %s" % (code, text))
                    with lock:
                        lat.append((t1 - t0) * 1000)
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(repr(e))

    ts = [threading.Thread(target=run, args=(k,)) for k in range(sessions) if per[k]]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("latency run failed: %s" % errors[:3])
    lat.sort()
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], len(lat)


SEQ_RCPT = re.compile(rb"^Delivered-To: (\d+)" + re.escape(RCPT.encode()) + rb"\r?$",
                      re.M | re.I)
LAT_MID = re.compile(rb"^Message-ID: <lat-(\d+)@example\.com>\r?$", re.M | re.I)
QID = re.compile(rb"^X-Sekisho-Quarantine-Id: *(\S+)\r?$", re.M | re.I)


def verify(pf, n_source, n_lat, milter, state):
    """(lost, duplicated, unsanitized, held) over the Maildir."""
    seq, lat, qids = {}, {}, {}
    unsanitized = 0
    for p in pf.delivered():
        with open(p, "rb") as f:
            data = f.read()
        head = data.split(b"\n\n", 1)[0]
        m = SEQ_RCPT.search(head)
        k = LAT_MID.search(head)
        if m:
            seq[int(m.group(1))] = seq.get(int(m.group(1)), 0) + 1
        elif k:
            lat[int(k.group(1))] = lat.get(int(k.group(1)), 0) + 1
        else:
            unsanitized += 1  # not one of ours: counted against us
            continue
        if milter:
            q = QID.search(head)
            if q is None or b"\nX-Sekisho-Sanitized: " not in head:
                unsanitized += 1
            else:
                qids[q.group(1)] = qids.get(q.group(1), 0) + 1
    want_seq = set(range(1, n_source + 1))
    want_lat = set(range(n_lat))
    lost = len(want_seq - set(seq)) + len(want_lat - set(lat))
    dup = sum(c - 1 for c in seq.values()) + sum(c - 1 for c in lat.values())
    dup += len(set(seq) - want_seq) + len(set(lat) - want_lat)
    held = None
    if milter:
        unsanitized += sum(c - 1 for c in qids.values())  # one original per mail
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(state, "quarantine",
                                                              "index.sqlite"), uri=True)
        try:
            held = db.execute("SELECT count(*) FROM messages").fetchone()[0]
            known = set(r[0].encode() for r in db.execute("SELECT id FROM messages"))
        finally:
            db.close()
        unsanitized += len(set(qids) - known)
    return lost, dup, unsanitized, held


def one(a, milter, run):
    tmp = tempfile.mkdtemp(prefix="sekisho-load-")
    os.chmod(tmp, 0o755)
    mp, spec = None, None
    try:
        if milter:
            mp, spec = start_milter(os.path.join(os.path.abspath(a.build), "src", "sekisho-milter"),
                                    tmp, a.workers)
        with PrivatePostfix(repo, milter=spec) as pf:
            c0, m0 = postfix_cpu(pf), milter_cpu(mp)
            t0 = time.monotonic()
            r = subprocess.run([postfix_bin("smtp-source"), "-N", "-s", str(a.sessions),
                                "-m", str(a.mails), "-l", str(a.size), "-f", "load@example.com",
                                "-t", RCPT, "127.0.0.1:%d" % pf.port],
                               capture_output=True, timeout=3600)
            if r.returncode != 0 or r.stderr.strip():
                raise SystemExit("smtp-source (exit %d): %s" %
                                 (r.returncode, r.stderr.decode(errors="replace")[:2000]))
            t1 = wait_delivered(pf, a.mails, 1800)
            c1, m1 = postfix_cpu(pf), milter_cpu(mp)
            thr = a.mails / (t1 - t0)
            p50, p99, n = latency(pf, a.sessions, a.latency_mails, a.latency_size, "lat")
            wait_delivered(pf, a.mails + n, 600)
            time.sleep(1)  # a duplicate would show up now
            if mp is not None:
                status = stop_milter(mp)
                if status != 0:
                    raise SystemExit("sekisho-milter exited with %d" % status)
            lost, dup, unsanitized, held = verify(pf, a.mails, n, milter,
                                                  os.path.join(tmp, "state"))
            delivered = len(pf.delivered())
        out = {"run": run, "kind": "milter" if milter else "postfix", "mails": a.mails,
               "sessions": a.sessions, "size": a.size, "throughput_per_s": round(thr, 1),
               "postfix_cpu_ms_per_mail": round((c1 - c0) * 1000 / a.mails, 2),
               "milter_cpu_ms_per_mail": round((m1[0] - m0[0]) * 1000 / a.mails, 2),
               "workers_cpu_ms_per_mail": round((m1[1] - m0[1]) * 1000 / a.mails, 2),
               "latency_size": a.latency_size, "latency_mails": n,
               "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
               "delivered": delivered, "expected": a.mails + n, "lost": lost,
               "duplicated": dup, "unsanitized": unsanitized if milter else None,
               "quarantined": held}
        print(json.dumps(out), flush=True)
        return out
    finally:
        if mp is not None:
            if mp.poll() is None:
                stop_milter(mp)
            log = os.path.join(tmp, "milter.log")
            if a.milter_log:
                shutil.copy(log, a.milter_log)
            with open(log, "rb") as f:
                tail = f.read().decode(errors="replace").splitlines()[-1:]
            print("\n".join(tail), file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--mails", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=20480)
    ap.add_argument("--latency-size", type=int, default=102400)
    ap.add_argument("--latency-mails", type=int, default=0, help="default: mails / 10")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", choices=("milter", "postfix"))
    ap.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    ap.add_argument("--no-milter", action="store_true", help="the same as --only postfix")
    ap.add_argument("--milter-log", help="copy the (last) milter's log here")
    a = ap.parse_args()
    if a.no_milter:
        a.only = "postfix"
    if a.latency_mails <= 0:
        a.latency_mails = max(a.sessions, a.mails // 10)
    why = skip_reason()
    if why:
        print("SKIP: %s" % why)
        return 77
    kinds = [k for k in (False, True) if a.only is None or a.only == ("milter" if k else "postfix")]
    res = {False: [], True: []}
    bad = 0
    for run in range(1, a.runs + 1):
        for milter in kinds:
            o = one(a, milter, run)
            res[milter].append(o)
            if o["lost"] or o["duplicated"] or (milter and (o["unsanitized"] or
                                                            o["quarantined"] != o["expected"])):
                bad += 1
    if a.runs > 1 or len(kinds) == 2:
        med = {}
        for milter in kinds:
            rs = res[milter]
            med[milter] = {k: statistics.median(r[k] for r in rs)
                           for k in ("throughput_per_s", "p50_ms", "p99_ms",
                                     "postfix_cpu_ms_per_mail", "milter_cpu_ms_per_mail",
                                     "workers_cpu_ms_per_mail")}
        summary = {"summary": True, "runs": a.runs, "mails": a.mails, "sessions": a.sessions,
                   "size": a.size, "latency_size": a.latency_size,
                   "latency_mails": a.latency_mails,
                   "median": {("milter" if k else "postfix"): v for k, v in med.items()},
                   "lost": sum(r["lost"] + r["duplicated"] for k in kinds for r in res[k]),
                   "unsanitized": sum(r["unsanitized"] or 0 for r in res[True])}
        if len(kinds) == 2:
            summary["throughput_ratio"] = round(med[True]["throughput_per_s"] /
                                                med[False]["throughput_per_s"], 3)
            summary["added_p50_ms"] = round(med[True]["p50_ms"] - med[False]["p50_ms"], 1)
            summary["added_p99_ms"] = round(med[True]["p99_ms"] - med[False]["p99_ms"], 1)
        print(json.dumps(summary), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
