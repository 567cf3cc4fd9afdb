#!/usr/bin/env python3
"""Benchmark: `sekisho ledger` against SQLite doing durable appends of the
same records, in the same run (Python 3 standard library only).

  bench/ledger.py [BUILDDIR]          (make bench-ledger)
  BENCH_LEDGER_N=1000000  records (default 1,000,000)
  BENCH_TMP=/path         where the ledgers and databases go (default /tmp)
  BENCH_REPS=3            repetitions; the median is reported

Measured, each run on a fresh directory, both pinned to CPU 0:
  append   `sekisho ledger append < records.jsonl` until it exits: every
           record canonicalized, hashed into the tree, written with one
           write()+fdatasync() per batch (group commit) and acknowledged on
           stdout, heads signed every 100,000 entries and at the end.
  sqlite   the same JSON lines inserted into SQLite in WAL mode with
           synchronous=FULL, one transaction per batch of the same size as the
           ledger's group commit (8 MiB of input), so that both do one durable
           commit per batch. SQLite hashes nothing and proves nothing.
  verify   `sekisho ledger verify`: every entry re-read, checked canonical,
           hashed, the tree rebuilt, every signed head checked.
  proofs   `prove-inclusion` and `prove-consistency` at the full size: path
           length and wall time of the whole command (process start included).
  syslog   `sekisho syslogd` (pinned to CPU 0) on loopback TCP; 8 producer
           processes each send N/8 of the same records as RFC 5424 messages
           (octet counting) at once; timed from the producers' start until
           syslogd, stopped with SIGTERM once they are done, has committed
           everything and exited. Every record is then checked present.
  journald the peer: the same records in journal export format into
           systemd-journal-remote --seal=yes (Forward Secure Sealing, key
           from journalctl --setup-keys in a private /var/log/journal bind-
           mounted in a mount namespace), then journalctl --verify
           --verify-key. Skipped (with a note) without
           /lib/systemd/systemd-journal-remote or without root.
Prints a Markdown table.
"""
import json
import os
import random
import signal
import socket
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(top, "build")
sekisho = os.path.join(build, "src", "sekisho")
N = int(os.environ.get("BENCH_LEDGER_N", "1000000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
BATCH_BYTES = 8 << 20
pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []


def records(path):
    """N access-log records, as sshd/Postfix/dovecot would send them."""
    rng = random.Random(20261123)
    users = ["yamada", "suzuki", "tanaka", "sato", "takahashi", "watanabe", "ito", "nakamura"]
    hosts = ["lgwan-fs01", "lgwan-mail", "inet-gw", "mynumber-db"]
    with open(path, "w") as f:
        for i in range(N):
            u = rng.choice(users)
            kind = rng.random()
            if kind < 0.6:
                r = {"type": "access", "source": "sshd", "fields": {
                    "host": rng.choice(hosts), "user": u, "addr": "10.20.%d.%d" % (rng.randint(0, 255), rng.randint(1, 254)),
                    "result": rng.choice(["accept", "reject"]), "pid": rng.randint(1000, 65000),
                    "msg": "Accepted publickey for %s from 10.20.1.2 port %d ssh2" % (u, rng.randint(1024, 65535))}}
            elif kind < 0.9:
                r = {"type": "mail", "source": "postfix", "fields": {
                    "queue_id": "%010X" % rng.getrandbits(40), "from": "%s@town.tadami.example" % u,
                    "to": "info@example.jp", "size": rng.randint(500, 5000000), "status": "sent"}}
            else:
                r = {"type": "入退室", "source": "庁舎受付", "fields": {
                    "氏名": "山田太郎", "入室時刻": "2026-11-23T09:%02d:00+09:00" % rng.randint(0, 59),
                    "退室時刻": "2026-11-23T10:%02d:00+09:00" % rng.randint(0, 59), "目的": "サーバ室点検", "立会者": "鈴木"}}
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def timed(args, stdin=None):
    t0 = time.perf_counter()
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as fin:
        p = subprocess.run(pin + args, stdin=fin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit("benchmark command failed (%d): %s\n%s" % (p.returncode, " ".join(args), p.stderr.decode()))
    return t, p.stdout


def sqlite_run(work, recfile):
    db = os.path.join(work, "peer.db")
    t0 = time.perf_counter()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, record TEXT NOT NULL)")
    batch, size = [], 0
    with open(recfile, encoding="utf-8") as f:
        for line in f:
            batch.append((line.rstrip("\n"),))
            size += len(line)
            if size >= BATCH_BYTES:
                con.execute("BEGIN")
                con.executemany("INSERT INTO entries (record) VALUES (?)", batch)
                con.execute("COMMIT")
                batch, size = [], 0
    if batch:
        con.execute("BEGIN")
        con.executemany("INSERT INTO entries (record) VALUES (?)", batch)
        con.execute("COMMIT")
    n = con.execute("SELECT count(*) FROM entries").fetchone()[0]
    con.close()
    t = time.perf_counter() - t0
    assert n == N
    return t


def free_port():
    so = socket.socket()
    so.bind(("127.0.0.1", 0))
    port = so.getsockname()[1]
    so.close()
    return port


def syslog_run(work, recfile, producers=8):
    """Durable appends/s through the syslog socket, 8 concurrent producers."""
    d = os.path.join(work, "sl")
    args = ["-l", d, "-k", os.path.join(work, "slkey")]
    timed([sekisho, "ledger", "init"] + args)
    files = []
    with open(recfile, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for w in range(producers):
        path = os.path.join(work, "prod%d" % w)
        with open(path, "wb") as out:
            for line in lines[w::producers]:
                r = json.loads(line)
                m = ("<134>1 2026-11-23T10:00:00Z lgwan-fs01 %s - %s - %s" % (
                    r["source"].replace(" ", "_") if r["source"].isascii() else "reception", r["type"]
                    if r["type"].isascii() else "record", json.dumps(r["fields"], ensure_ascii=False))).encode()
                out.write(b"%d %s" % (len(m), m))
        files.append(path)
    port = free_port()
    rx = subprocess.Popen(pin + [sekisho, "syslogd"] + args + ["--tcp", "127.0.0.1:%d" % port, "--rate", "0"],
                          stderr=subprocess.PIPE)
    rx.stderr.readline()
    send = ("import socket,sys\ns=socket.create_connection(('127.0.0.1',%d))\n"
            "s.sendall(open(sys.argv[1],'rb').read())\ns.close()\n" % port)
    t0 = time.perf_counter()
    ps = [subprocess.Popen([sys.executable, "-c", send, f]) for f in files]
    for p in ps:
        if p.wait() != 0:
            sys.exit("syslog producer failed")
    rx.send_signal(signal.SIGTERM)
    err = rx.stderr.read().decode()
    rx.wait()
    t = time.perf_counter() - t0
    rx.stderr.close()
    if rx.returncode != 0 or ("stopped: %d messages recorded" % N) not in err:
        sys.exit("syslogd: %d %s" % (rx.returncode, err))
    _, out = timed([sekisho, "ledger", "verify", "-l", d])
    assert ("intact: %d entries" % N).encode() in out, out
    shutil.rmtree(d)
    return t


def journald_run(work, recfile):
    """journald's Forward Secure Sealing on the same records: (ingest s, verify s) or None."""
    remote = "/lib/systemd/systemd-journal-remote"
    if not os.path.exists(remote) or os.geteuid() != 0 or not shutil.which("unshare"):
        return None
    jdir = os.path.join(work, "journal")
    os.makedirs(os.path.join(jdir, "var"))
    exp = os.path.join(work, "export.txt")
    now = int(time.time() * 1e6)
    with open(recfile, encoding="utf-8") as f, open(exp, "w", encoding="utf-8") as out:
        for i, line in enumerate(f):
            r = json.loads(line)
            out.write("__REALTIME_TIMESTAMP=%d\nMESSAGE=%s\nSYSLOG_IDENTIFIER=%s\nRECORD_TYPE=%s\n"
                      "_HOSTNAME=lgwan-fs01\n\n" % (now + i, json.dumps(r["fields"], ensure_ascii=False),
                                                    r["source"], r["type"]))
    jfile = os.path.join(jdir, "remote.journal")
    script = """
set -e
mount --bind "$1/var" /var/log/journal
mkdir -p /var/log/journal/$(cat /etc/machine-id)
key=$(journalctl --setup-keys --interval=10s 2>/dev/null)
t0=$(date +%s.%N)
$2 --seal=yes --output="$1/remote.journal" "$3"
t1=$(date +%s.%N)
# journal-remote rotates full files: verify every one of them
for f in "$1"/*.journal; do
  journalctl --file="$f" --verify --verify-key="$key" >/dev/null 2>"$1/verify.err" || { tail -3 "$1/verify.err" >&2; exit 1; }
done
t2=$(date +%s.%N)
echo "$t0 $t1 $t2 $(journalctl --file="$1/*.journal" -q | wc -l)"
"""
    p = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", jdir, " ".join(pin + [remote]), exp],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("journald peer failed: %s" % p.stderr)
    t0, t1, t2, count = (float(x) for x in p.stdout.split())
    assert int(count) == N, "journald holds %d of %d entries" % (count, N)
    os.unlink(exp)
    shutil.rmtree(jdir)
    return t1 - t0, t2 - t1


def main():
    base = tempfile.mkdtemp(prefix="bench-ledger.", dir=os.environ.get("BENCH_TMP", "/tmp"))
    try:
        recfile = os.path.join(base, "records.jsonl")
        records(recfile)
        in_bytes = os.path.getsize(recfile)
        res = {"append": [], "sqlite": [], "verify": [], "incl": [], "cons": [], "syslog": [],
               "j_ingest": [], "j_verify": []}
        stored = 0
        incl_len = cons_len = 0
        for rep in range(REPS):
            work = os.path.join(base, "r%d" % rep)
            os.mkdir(work)
            d = os.path.join(work, "ledger")
            args = ["-l", d, "-k", os.path.join(work, "key")]
            timed([sekisho, "ledger", "init"] + args)
            t, out = timed([sekisho, "ledger", "append"] + args, stdin=recfile)
            acks = out.split()
            assert len(acks) == N and acks[-1] == str(N - 1).encode(), "not every record acknowledged"
            res["append"].append(t)
            stored = sum(os.path.getsize(os.path.join(d, "entries", s)) for s in os.listdir(os.path.join(d, "entries")))
            t, out = timed([sekisho, "ledger", "verify", "-l", d])
            assert b"result: intact" in out
            res["verify"].append(t)
            t, out = timed([sekisho, "ledger", "prove-inclusion", "-l", d, str(N // 3), str(N)])
            incl_len = len(json.loads(out)["audit_path"])
            res["incl"].append(t)
            t, out = timed([sekisho, "ledger", "prove-consistency", "-l", d, str(N // 3), str(N)])
            cons_len = len(json.loads(out)["consistency_path"])
            res["cons"].append(t)
            res["sqlite"].append(sqlite_run(work, recfile))
            res["syslog"].append(syslog_run(work, recfile))
            j = journald_run(work, recfile)
            if j:
                res["j_ingest"].append(j[0])
                res["j_verify"].append(j[1])
            shutil.rmtree(work)
        med = {k: statistics.median(v) for k, v in res.items() if v}
        print("| measure (%d records, %.0f MB in, %.0f MB stored, median of %d) | time | entries/s | MB/s |"
              % (N, in_bytes / 1e6, stored / 1e6, REPS))
        print("|---|---|---|---|")
        print("| sekisho ledger append (durable, group commit) | %.2f s | %s | %.0f |"
              % (med["append"], format(int(N / med["append"]), ","), stored / 1e6 / med["append"]))
        print("| SQLite WAL synchronous=FULL, same batches | %.2f s | %s | %.0f |"
              % (med["sqlite"], format(int(N / med["sqlite"]), ","), in_bytes / 1e6 / med["sqlite"]))
        print("| sekisho ledger verify | %.2f s | %s | %.0f |"
              % (med["verify"], format(int(N / med["verify"]), ","), stored / 1e6 / med["verify"]))
        print("| sekisho syslogd, 8 producers over TCP (durable, group commit) | %.2f s | %s | |"
              % (med["syslog"], format(int(N / med["syslog"]), ",")))
        if "j_ingest" in med:
            print("| journald FSS: systemd-journal-remote --seal=yes ingest | %.2f s | %s | |"
                  % (med["j_ingest"], format(int(N / med["j_ingest"]), ",")))
            print("| journald FSS: journalctl --verify --verify-key | %.2f s | %s | |"
                  % (med["j_verify"], format(int(N / med["j_verify"]), ",")))
        print("| prove-inclusion %d in %d (%d hashes) | %.1f ms | | |" % (N // 3, N, incl_len, med["incl"] * 1e3))
        print("| prove-consistency %d → %d (%d hashes) | %.1f ms | | |" % (N // 3, N, cons_len, med["cons"] * 1e3))
        print()
        print("append vs SQLite: %.2f×" % (med["sqlite"] / med["append"]))
        if "j_ingest" in med:
            print("append vs journald sealed ingest: %.2f×; syslogd (8 producers) vs journald ingest: %.2f×; "
                  "verify vs journalctl --verify: %.2f×" % (med["j_ingest"] / med["append"],
                                                             med["j_ingest"] / med["syslog"],
                                                             med["j_verify"] / med["verify"]))
        else:
            print("journald peer skipped (needs root and systemd-journal-remote: scripts/deps-bench.sh)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
