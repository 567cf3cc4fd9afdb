#!/usr/bin/env python3
"""Integration tests of `sekisho ledger` (Python 3 standard library only).

  ledger_test.py SEKISHO SRCDIR MODE
    cli      the commands, their output formats, errors and exit codes, the policy
    tamper   every kind of change to a ledger's files is reported with its place
    proofs   proofs, roots and signed heads checked with tests/rfc9162.py, an
             independent implementation of RFC 9162 and RFC 8032
    crash    kill -9 at random moments while appending, many times: every
             acknowledged index is there, and verify passes
"""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SEKISHO, SRCDIR, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, os.path.join(SRCDIR, "tests"))
import rfc9162  # noqa: E402

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what, file=sys.stderr)


def run(args, stdin=None, env=None, timeout=300):
    p = subprocess.run([SEKISHO, "ledger"] + args, input=stdin, capture_output=True, env=env,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def make_env(tmp):
    env = dict(os.environ)
    env["SEKISHO_STATE_DIR"] = os.path.join(tmp, "state")
    return env


def new_ledger(tmp, name, n=0, policy=None):
    d = os.path.join(tmp, name)
    args = ["-l", d, "-k", d + ".key"]
    if policy:
        args = ["-p", policy] + args
    rc, out, err = run(["init"] + args)
    check(rc == 0 and len(out.strip()) == 64, "init %s: %d %s" % (name, rc, err))
    if n:
        lines = "".join(json.dumps({"type": "access", "source": "sshd",
                                    "fields": {"user": "u%d" % i, "seq": i, "msg": "x" * (i % 13)}},
                                   ensure_ascii=False) + "\n" for i in range(n))
        rc, out, err = run(["append"] + args, stdin=lines.encode())
        check(rc == 0 and out.split() == [str(i) for i in range(n)], "append %s: %d %s" % (name, rc, err))
    return d, args


def segment(d):
    segs = sorted(os.listdir(os.path.join(d, "entries")))
    return os.path.join(d, "entries", segs[-1])


def verify(d, extra=()):
    return run(["verify", "-l", d] + list(extra))


# ---- cli ------------------------------------------------------------------------


def test_cli(tmp):
    env = make_env(tmp)
    # --help for every command, bilingual
    for cmd in ["", "init", "append", "cat", "get", "tail", "head", "export-head", "prove-inclusion",
                "prove-consistency", "verify", "prune"]:
        rc, out, err = run(([cmd] if cmd else []) + ["--help"])
        check(rc == 0 and "名前 / NAME" in out and "EXIT STATUS" in out, "help " + cmd)
    rc, out, err = run(["frobnicate"])
    check(rc == 64 and "no such command" in err, "unknown command")
    # default directory: $SEKISHO_STATE_DIR/ledger, default key beside it
    rc, out, err = run(["init"], env=env)
    check(rc == 0 and len(out.strip()) == 64, "init default: " + err)
    check(os.path.isfile(os.path.join(tmp, "state", "ledger", "ledger.json")), "default dir")
    key = os.path.join(tmp, "state", "ledger-signing.key")
    check(os.stat(key).st_mode & 0o777 == 0o600, "key mode 0600")
    rc, out, err = run(["init"], env=env)
    check(rc == 73 and "already exists" in err, "init twice: %d %s" % (rc, err))
    # append: each index after durability; a bad line stops with its line number
    rc, out, err = run(["append"], env=env, stdin=b'{"type":"a"}\n{"type":"b","fields":{"n":1}}\n')
    check(rc == 0 and out == "0\n1\n", "append: %r %r" % (out, err))
    rc, out, err = run(["append"], env=env,
                       stdin=b'{"type":"c"}\n{"type":"d","time":"now"}\n{"type":"e"}\n')
    check(rc == 65 and out == "2\n" and "stdin:2:" in err and "set by the ledger" in err,
          "append rejects: %d %r %r" % (rc, out, err))
    rc, out, err = run(["append", "-s", "受付"], env=env, stdin=b'{"type":"f"}')
    check(rc == 0 and out == "3\n", "append without final newline")
    rc, out, err = run(["cat"], env=env)
    lines = out.splitlines()
    check(len(lines) == 4, "cat: 4 entries")
    e = json.loads(lines[3])
    check(e["source"] == "受付" and e["index"] == 3 and e["type"] == "f", "source from -s")
    check(json.loads(lines[0])["source"].startswith("cli:"), "default source cli:USER")
    rc, out, err = run(["get", "1"], env=env)
    check(rc == 0 and out == lines[1] + "\n", "get")
    rc, out, err = run(["get", "9"], env=env)
    check(rc == 66 and "no entry 9" in err, "get missing: %d %s" % (rc, err))
    rc, out, err = run(["get", "x"], env=env)
    check(rc == 64, "get usage")
    rc, out, err = run(["tail", "-n", "2"], env=env)
    check(out.splitlines() == lines[2:], "tail")
    rc, out, err = run(["head"], env=env)
    h = json.loads(out)
    check(list(h) == ["tree_size", "root_hash", "timestamp", "public_key", "signature"], "head keys")
    check(h["tree_size"] == 4 and rfc9162.verify_head(h), "head signed")
    rc, out, err = run(["export-head"], env=env)
    check(rc == 0 and out.startswith("# ") and json.loads(out.splitlines()[-1]) == h, "export-head")
    check("sekisho-sth-v1\\n4\\n" + h["root_hash"] in out, "export-head shows the message")
    rc, out, err = run(["verify"], env=env)
    check(rc == 0 and "result: intact: 4 entries" in out, "verify: " + out + err)
    # the policy's ledger: section selects dir, key, checkpoints and segments
    pol = os.path.join(tmp, "policy.yaml")
    with open(pol, "w") as f:
        f.write("ledger:\n  dir: %s/pl\n  key_file: %s/pl.key\n  checkpoint_entries: 2\n"
                "  segment: daily\n" % (tmp, tmp))
    rc, out, err = run(["init", "-p", pol])
    check(rc == 0 and os.path.isfile(os.path.join(tmp, "pl", "ledger.json")), "init -p")
    # one line at a time: each is its own commit, and every second one signs a head
    p = subprocess.Popen([SEKISHO, "ledger", "append", "-p", pol], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acks = []
    for i in range(5):
        p.stdin.write(b'{"type":"t"}\n')
        p.stdin.flush()
        acks.append(p.stdout.readline().strip())
    p.stdin.close()
    p.wait(30)
    p.stdout.close()
    p.stderr.close()
    check(acks == [b"0", b"1", b"2", b"3", b"4"], "append -p: %r" % acks)
    ck = [json.loads(l)["tree_size"] for l in open(os.path.join(tmp, "pl", "checkpoints.jsonl"))]
    check(ck == [0, 2, 4, 5], "checkpoint_entries 2: heads at %r" % ck)
    check(len(os.listdir(os.path.join(tmp, "pl", "entries"))[0]) == len("0000000000000000.2026-11-23.jsonl"),
          "daily segment name")
    with open(pol, "w") as f:
        f.write("ledger:\n  segment: weekly\n")
    rc, out, err = run(["head", "-p", pol])
    check(rc == 78 and "ledger.segment: expected monthly or daily" in err, "policy error: %s" % err)
    # prune: nothing expires without a retention period
    rc, out, err = run(["prune"], env=env)
    check(rc == 0 and "keep forever" in err, "prune without retention")
    rc, out, err = run(["prune", "--days", "30"], env=env)
    check(rc == 0 and "0 " in err, "prune lists nothing yet")
    # a second writer appends while the first one keeps the ledger open
    p = subprocess.Popen([SEKISHO, "ledger", "append"], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(b'{"type":"hold"}\n')
    p.stdin.flush()
    first = int(p.stdout.readline())
    rc, out, err = run(["append"], env=env, stdin=b'{"type":"x"}\n')
    check(rc == 0 and int(out) == first + 1, "second writer: %d %s %s" % (rc, out, err))
    p.stdin.write(b'{"type":"after"}\n')
    p.stdin.flush()
    check(int(p.stdout.readline()) == first + 2, "the first writer numbers after the second")
    p.stdin.close()
    p.wait(30)
    p.stdout.close()
    p.stderr.close()
    rc, out, err = run(["verify"], env=env)
    check(rc == 0, "verify after two writers: " + out + err)
    # no ledger
    rc, out, err = run(["verify", "-l", os.path.join(tmp, "none")])
    check(rc == 66 and "no ledger" in err, "verify without ledger: %d %s" % (rc, err))


# ---- tamper -----------------------------------------------------------------------


def rewrite(path, fn):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(fn(data))


def lines_of(data):
    return data.split(b"\n")[:-1]


def join(lines):
    return b"".join(l + b"\n" for l in lines)


def test_tamper(tmp):
    base, _ = new_ledger(tmp, "base", 40)
    rc, out, err = verify(base)
    check(rc == 0, "base intact: " + out + err)
    rc, pub, _ = run(["head", "-l", base])
    pub = json.loads(pub)["public_key"]
    heads = os.path.join(tmp, "heads.txt")
    with open(heads, "w") as f:
        f.write(run(["export-head", "-l", base])[1])

    def case(name, change, want, extra=()):
        d = os.path.join(tmp, "t-" + name)
        shutil.copytree(base, d)
        change(d)
        rc, out, err = verify(d, extra)
        check(rc == 65, "%s: exit %d, want 65\n%s%s" % (name, rc, out, err))
        for w in want:
            check(w in out, "%s: %r not in\n%s" % (name, w, out))
        return out

    seg = lambda d: segment(d)
    segname = os.path.basename(segment(base))
    off = lambda i: sum(len(l) + 1 for l in lines_of(open(segment(base), "rb").read())[:i])

    # modification of one value: located by index, segment and byte offset
    case("modify", lambda d: rewrite(seg(d), lambda b: b.replace(b'"user":"u7"', b'"user":"u8"', 1)),
         ["MODIFIED: entry 7 (entries/%s byte %d)" % (segname, off(7)), "HEAD MISMATCH"])
    # a byte that breaks the canonical form
    case("bytes", lambda d: rewrite(seg(d), lambda b: b.replace(b'"seq":9,', b'"seq": 9,', 1)),
         ["MODIFIED: entries/%s byte %d (position 9): 記録として不正" % (segname, off(9))])
    # deletion of one entry
    case("delete", lambda d: rewrite(seg(d), lambda b: join([l for i, l in enumerate(lines_of(b)) if i != 12])),
         ["DELETED: 記録 12..12 がありません / entries 12..12 are missing (they belong before entries/%s byte %d)"
          % (segname, off(12))])
    # insertion: a forged entry with a fresh-looking index, and a copied one
    def forge(b):
        ls = lines_of(b)
        e = json.loads(ls[20])
        e["fields"]["user"] = "intruder"
        ls.insert(21, json.dumps(e, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode())
        return join(ls)
    case("insert", lambda d: rewrite(seg(d), forge),
         ["INSERTED: entries/%s byte %d (position 21): 記録 20 が二度目に現れました / a second entry with index 20 (different content)"
          % (segname, off(21))])
    case("copy", lambda d: rewrite(seg(d), lambda b: join(lines_of(b)[:5] + [lines_of(b)[3]] + lines_of(b)[5:])),
         ["a second entry with index 3 (an exact copy)"])
    # reordering two entries
    def swap(b):
        ls = lines_of(b)
        ls[30], ls[31] = ls[31], ls[30]
        return join(ls)
    case("reorder", lambda d: rewrite(seg(d), swap),
         ["REORDERED: entries/%s byte %d: 記録 30 が記録 31 の後にあります / entry 30 was found after entry 31"
          % (segname, off(30) + len(lines_of(open(segment(base), "rb").read())[31]) + 1)])
    # truncation at the end
    case("truncate", lambda d: rewrite(seg(d), lambda b: join(lines_of(b)[:35])),
         ["TRUNCATED: 記録 35..39 が末尾から失われています"])
    # the whole segment deleted
    case("segment", lambda d: os.unlink(seg(d)), ["TRUNCATED", "entries 0..39 are missing at the end"])
    # a stray file in entries/
    case("stray", lambda d: open(os.path.join(d, "entries", "notes.txt"), "w").write("x"),
         ["INSERTED: entries/notes.txt"])
    # a signed head changed
    case("head", lambda d: rewrite(os.path.join(d, "checkpoints.jsonl"),
                                   lambda b: b.replace(b'"tree_size":40', b'"tree_size":39')),
         ["BAD SIGNATURE: checkpoints.jsonl line 2"])
    # the stored hashes damaged (the entries are intact)
    case("derived", lambda d: rewrite(os.path.join(d, "tree", "hashes-01"),
                                      lambda b: b[:32] + bytes(32) + b[64:]),
         ["DERIVED DATA", "tree/hashes-01 record 1 (entries 2..3)"])
    # history rewritten with the signing key: every file consistent, but the
    # exported head and a trusted public key see through it
    def resign(d):
        k = d + ".key"
        shutil.copy(base + ".key", k)
        for sub in ("entries", "tree"):
            shutil.rmtree(os.path.join(d, sub))
        os.unlink(os.path.join(d, "checkpoints.jsonl"))
        os.unlink(os.path.join(d, "ledger.json"))
        os.unlink(os.path.join(d, "lock"))
        rc, out, err = run(["init", "-l", d, "-k", k])
        forged = "".join(json.dumps({"type": "access", "source": "sshd",
                                     "fields": {"user": "u%d" % (i if i != 5 else 99), "seq": i,
                                                "msg": "x" * (i % 13)}}) + "\n" for i in range(40))
        run(["append", "-l", d, "-k", k], stdin=forged.encode())
        check(verify(d)[0] == 0, "the forged ledger is self-consistent")
    case("rewritten", resign, ["HISTORY REWRITTEN: %s line" % heads, "its first 40 entries were rewritten"],
         extra=["--head", heads])
    # a replaced key pair: the trusted public key catches it
    def newkey(d):
        os.unlink(os.path.join(d, "ledger.json"))
        for sub in ("entries", "tree", "recovered"):
            shutil.rmtree(os.path.join(d, sub))
        os.unlink(os.path.join(d, "checkpoints.jsonl"))
        run(["init", "-l", d, "-k", d + ".other"])
        run(["append", "-l", d, "-k", d + ".other"], stdin=b'{"type":"access"}\n')
    case("newkey", newkey, ["BAD SIGNATURE: ledger.json", "BAD SIGNATURE: checkpoints.jsonl line 1"],
         extra=["--public-key", pub])
    # the untouched copy still passes with both
    rc, out, err = verify(base, ["--head", heads, "--public-key", pub])
    check(rc == 0, "intact with --head and --public-key: " + out + err)


# ---- proofs --------------------------------------------------------------------------


def test_proofs(tmp):
    d, args = new_ledger(tmp, "p", 0)
    sizes = []
    total = 0
    # several batches, so that heads of several sizes exist
    for batch in (1, 2, 5, 9, 16, 30, 40):
        lines = "".join(json.dumps({"type": "t", "fields": {"n": total + i, "日本": "語" * (i % 5)}},
                                   ensure_ascii=False) + "\n" for i in range(batch))
        rc, out, err = run(["append"] + args, stdin=lines.encode())
        check(rc == 0, "append: " + err)
        total += batch
        sizes.append(total)
    rc, out, err = run(["cat", "-l", d])
    entries = [l.encode() for l in out.split("\n")[:-1]]
    check(len(entries) == total, "cat gives every entry")
    rc, out, err = run(["head", "-l", d])
    head = json.loads(out)
    check(rfc9162.verify_head(head), "head signature (RFC 8032)")
    check(head["root_hash"] == rfc9162.mth(entries).hex(), "head root == MTH of cat")
    bad = dict(head, timestamp=head["timestamp"] + 1)
    check(not rfc9162.verify_head(bad), "a changed head does not verify")
    # every signed head in checkpoints.jsonl
    for line in open(os.path.join(d, "checkpoints.jsonl")):
        h = json.loads(line)
        h["public_key"] = head["public_key"]
        check(rfc9162.verify_head(h), "signed head %d" % h["tree_size"])
        check(h["root_hash"] == rfc9162.mth(entries[:h["tree_size"]]).hex(), "root at %d" % h["tree_size"])
    rng = random.Random(9162)
    pairs = [(i, n) for n in [1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, total] for i in range(n)]
    pairs = rng.sample(pairs, 120) + [(0, 1), (total - 1, total), (0, total)]
    for i, n in pairs:
        rc, out, err = run(["prove-inclusion", "-l", d, str(i), str(n)])
        pr = json.loads(out)
        root = rfc9162.mth(entries[:n])
        ok = (pr["leaf_index"] == i and pr["tree_size"] == n and pr["root_hash"] == root.hex()
              and pr["leaf_hash"] == rfc9162.leaf_hash(entries[i]).hex()
              and rfc9162.verify_inclusion(i, n, rfc9162.leaf_hash(entries[i]),
                                           [bytes.fromhex(x) for x in pr["audit_path"]], root))
        check(ok, "inclusion %d in %d: %s" % (i, n, out))
        if pr["audit_path"]:
            wrong = [bytes.fromhex(x) for x in pr["audit_path"]]
            wrong[-1] = bytes(32)
            check(not rfc9162.verify_inclusion(i, n, rfc9162.leaf_hash(entries[i]), wrong, root),
                  "a wrong path fails")
    rc, out, err = run(["prove-inclusion", "-l", d, "5"])
    check(json.loads(out)["tree_size"] == head["tree_size"], "default tree size = head")
    for m in range(1, total + 1, 3):
        for n in sorted(set([m, m + 1, 2 * m, total]) & set(range(m, total + 1))):
            rc, out, err = run(["prove-consistency", "-l", d, str(m), str(n)])
            pr = json.loads(out)
            path = [bytes.fromhex(x) for x in pr["consistency_path"]]
            ok = (pr["first_root"] == rfc9162.mth(entries[:m]).hex()
                  and pr["second_root"] == rfc9162.mth(entries[:n]).hex()
                  and rfc9162.verify_consistency(m, n, bytes.fromhex(pr["first_root"]),
                                                 bytes.fromhex(pr["second_root"]), path))
            check(ok, "consistency %d %d: %s" % (m, n, out))
            if path:
                check(not rfc9162.verify_consistency(m, n, bytes.fromhex(pr["first_root"]),
                                                     rfc9162.mth(entries[:n - 1] + [b"x"]), path),
                      "consistency with a wrong root fails")
    # proof sizes are O(log n)
    rc, out, err = run(["prove-inclusion", "-l", d, "0", str(total)])
    check(len(json.loads(out)["audit_path"]) <= total.bit_length(), "inclusion path length")
    rc, out, err = run(["prove-consistency", "-l", d, "0", "5"])
    check(rc == 64, "consistency from 0 is a usage error")
    rc, out, err = run(["prove-inclusion", "-l", d, str(total), str(total)])
    check(rc == 64, "index beyond the tree")
    # the checker's own command line
    pf = os.path.join(tmp, "pr.json")
    ef = os.path.join(tmp, "entry.txt")
    open(pf, "w").write(run(["prove-inclusion", "-l", d, "7"])[1])
    open(ef, "wb").write(entries[7] + b"\n")
    p = subprocess.run([sys.executable, os.path.join(SRCDIR, "tests", "rfc9162.py"), "inclusion", pf, ef],
                       capture_output=True)
    check(p.returncode == 0 and b"OK" in p.stdout, "rfc9162.py inclusion")
    open(ef, "wb").write(entries[8] + b"\n")
    p = subprocess.run([sys.executable, os.path.join(SRCDIR, "tests", "rfc9162.py"), "inclusion", pf, ef],
                       capture_output=True)
    check(p.returncode == 1, "rfc9162.py inclusion with the wrong entry fails")


# ---- crash -------------------------------------------------------------------------


WRITERS = int(os.environ.get("LEDGER_CRASH_WRITERS", "2"))


def start_crash_writer(pol, r, w):
    """One `ledger append` fed as fast as it takes lines; killed by the caller."""
    p = subprocess.Popen([SEKISHO, "ledger", "append", "-p", pol], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = []

    def reader():
        for line in p.stdout:
            # a kill during the write of an acknowledgement can leave its
            # first digits without the newline: that is no acknowledgement
            if line.endswith(b"\n"):
                got.append(int(line))

    def writer():
        seq = 0
        try:
            while True:
                chunk = "".join(json.dumps({"type": "crash", "fields": {"round": r, "w": w, "seq": seq + i,
                                                                        "pad": "p" * (seq % 50)}}) + "\n"
                                for i in range(200))
                seq += 200
                p.stdin.write(chunk.encode())
        except (BrokenPipeError, ValueError, OSError):
            pass

    tr = threading.Thread(target=reader)
    tw = threading.Thread(target=writer)
    tr.start()
    tw.start()
    return w, p, got, tr, tw


def test_crash(tmp, rounds):
    pol = os.path.join(tmp, "policy.yaml")
    with open(pol, "w") as f:
        # small checkpoints: kills land during heads, derived writes and entries alike
        f.write("ledger:\n  dir: %s/c\n  key_file: %s/c.key\n  checkpoint_entries: 300\n"
                "  checkpoint_interval: 100ms\n" % (tmp, tmp))
    rc, out, err = run(["init", "-p", pol])
    check(rc == 0, "init: " + err)
    rng = random.Random(int(os.environ.get("LEDGER_CRASH_SEED", "4")))
    acked = {}  # round -> acknowledged indices, in order
    recoveries_told = 0
    simulated = 0
    for r in range(rounds):
        procs = [start_crash_writer(pol, r, w) for w in range(WRITERS)]
        for w, p, got, tr, tw in procs:
            time.sleep(rng.uniform(0.0, 0.25 / WRITERS))
            p.send_signal(signal.SIGKILL)
            p.wait()
            tw.join()
            tr.join()
            err = p.stderr.read().decode("utf-8", "replace")
            p.stderr.close()
            p.stdout.close()
            try:
                p.stdin.close()
            except OSError:
                pass
            recoveries_told += err.count("recovered: ")
            acked[(r, w)] = got
        if r % 7 == 3:
            # What a power loss can leave that kill -9 cannot: part of the last
            # write on disk. The next writer must cut it and record that.
            # Only on a clean end: a writer killed before it got to recover an
            # earlier tail would otherwise see two planted tails as one.
            seg = segment(os.path.join(tmp, "c"))
            data = open(seg, "rb").read()
            if not data or data.endswith(b"\n"):
                last = data[:-1].rsplit(b"\n", 1)[-1] if data else b'{"fields":{}'
                with open(seg, "ab") as f:
                    f.write(last[:rng.randint(1, max(1, len(last) - 1))])
                simulated += 1
    # One clean append at the end (it recovers a tail left by the last kill).
    rc, out, err = run(["append", "-p", pol], stdin=b'{"type":"end"}\n')
    check(rc == 0, "append after the crashes: " + err)
    recoveries_told += err.count("recovered: ")
    rc, out, err = run(["cat", "-p", pol])
    entries = [json.loads(l) for l in out.splitlines()]
    by_index = {e["index"]: e for e in entries}
    check(all(e["index"] == i for i, e in enumerate(entries)), "indices are positions")
    n_acked = 0
    for (r, w), got in acked.items():
        for k, ix in enumerate(got):
            n_acked += 1
            e = by_index.get(ix)
            if (e is None or e["type"] != "crash" or e["fields"]["round"] != r or e["fields"]["seq"] != k
                    or e["fields"]["w"] != w):
                check(False, "acknowledged index %d of round %d (line %d) is not there: %r" % (ix, r, k, e))
                break
    recorded = [e for e in entries if e["type"] == "ledger.recovery"]
    # A writer killed right after recovering has recorded it but may not have
    # printed it yet: the ledger is the authority.
    check(len(recorded) >= recoveries_told, "every recovery reported was recorded (%d < %d)"
          % (len(recorded), recoveries_told))
    check(len(set(ix for got in acked.values() for ix in got)) == n_acked,
          "no index acknowledged twice")
    check(len(recorded) >= simulated, "every torn tail was recovered (%d < %d)" % (len(recorded), simulated))
    for e in recorded:
        saved = os.path.join(tmp, "c", e["fields"]["saved_as"])
        data = open(saved, "rb").read() if os.path.exists(saved) else None
        check(data is not None and hashlib.sha256(data).hexdigest() == e["fields"]["sha256"]
              and len(data) == e["fields"]["bytes"], "saved torn tail %s" % saved)
    left = [n for n in os.listdir(os.path.join(tmp, "c", "recovered"))
            if n.endswith(".pending")] if os.path.isdir(os.path.join(tmp, "c", "recovered")) else []
    check(not left, "staged recoveries left unrecorded: %r" % left)
    rc, out, err = run(["verify", "-p", pol])
    check(rc == 0, "verify after %d kills: %s%s" % (rounds, out, err))
    print("crash: %d writers at a time," % WRITERS)
    print("crash: %d rounds, %d entries, %d acknowledged, %d torn tails recovered and recorded"
          % (rounds, len(entries), n_acked, len(recorded)))


def main():
    tmp = tempfile.mkdtemp(prefix="ledger-test.")
    try:
        if MODE == "cli":
            test_cli(tmp)
        elif MODE == "tamper":
            test_tamper(tmp)
        elif MODE == "proofs":
            test_proofs(tmp)
        elif MODE == "crash":
            test_crash(tmp, int(os.environ.get("LEDGER_CRASH_ROUNDS", "60")))
        else:
            print("unknown mode", MODE, file=sys.stderr)
            return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %s" % (MODE, "%d failures" % failures if failures else "OK"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
