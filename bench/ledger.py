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
Prints a Markdown table.
"""
import json
import os
import random
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


def main():
    base = tempfile.mkdtemp(prefix="bench-ledger.", dir=os.environ.get("BENCH_TMP", "/tmp"))
    try:
        recfile = os.path.join(base, "records.jsonl")
        records(recfile)
        in_bytes = os.path.getsize(recfile)
        res = {"append": [], "sqlite": [], "verify": [], "incl": [], "cons": []}
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
            shutil.rmtree(work)
        med = {k: statistics.median(v) for k, v in res.items()}
        print("| measure (%d records, %.0f MB in, %.0f MB stored, median of %d) | time | entries/s | MB/s |"
              % (N, in_bytes / 1e6, stored / 1e6, REPS))
        print("|---|---|---|---|")
        print("| sekisho ledger append (durable, group commit) | %.2f s | %s | %.0f |"
              % (med["append"], format(int(N / med["append"]), ","), stored / 1e6 / med["append"]))
        print("| SQLite WAL synchronous=FULL, same batches | %.2f s | %s | %.0f |"
              % (med["sqlite"], format(int(N / med["sqlite"]), ","), in_bytes / 1e6 / med["sqlite"]))
        print("| sekisho ledger verify | %.2f s | %s | %.0f |"
              % (med["verify"], format(int(N / med["verify"]), ","), stored / 1e6 / med["verify"]))
        print("| prove-inclusion %d in %d (%d hashes) | %.1f ms | | |" % (N // 3, N, incl_len, med["incl"] * 1e3))
        print("| prove-consistency %d → %d (%d hashes) | %.1f ms | | |" % (N // 3, N, cons_len, med["cons"] * 1e3))
        print()
        print("append vs SQLite: %.2f×" % (med["sqlite"] / med["append"]))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
