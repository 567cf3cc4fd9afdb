#!/usr/bin/python3
"""Integration test of `sekisho quarantine list|show|get|purge`, through the
real command line only (never the files or the index underneath).

    quarantine_cli_test.py SEKISHO

Four mails composed here by Python's email package are sanitized into a fresh
quarantine: two under a policy with mail.quarantine.retention_days: 1, one
with 30 days, one with the default (90). Then:

  list --json   one row per mail, found by the SHA-256 of its original, with
                its size, part count, verdict and retention period
  show          (plain and --json) the removed parts with the names, declared
                types, sizes and SHA-256 of what was attached; hostile header
                values and names are shown safely (no ESC, no U+202E)
  get           every original byte for byte
  errors        unknown or malformed id, missing quarantine, usage errors:
                the documented exit status (66, 64), a reason, empty stdout
  purge         without --delete changes nothing; --delete removes exactly
                the expired originals; get of a purged id fails (66) while
                the others still come back byte for byte

Expiry needs time to pass: retention_days is at least 1 and purge compares
with the clock, and the CLI has no option to set "now". So purge runs under
faketime(1) (Debian's faketime: libfaketime moves only that process's clock)
2, 31 and 91 days ahead; the originals are stored at the real time.

Ends with the line "N passed, M failed".
"""
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email import policy
from email.message import EmailMessage

passed = 0
failed = 0


def ok(name):
    global passed
    passed += 1


def fail(name, why):
    global failed
    failed += 1
    print("FAIL %s: %s" % (name, why))


def check(name, cond, why):
    if cond:
        ok(name)
    else:
        fail(name, why)
    return cond


PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d494844520000000100000001080600000000")
PE = b"MZ" + bytes(62) + b"PE\0\0" + bytes(120)


def zip_bytes():
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("名簿.csv", "氏名,所属\n山田,総務課\n")
    return bio.getvalue()


def mails():
    """(key, retention days or None for the default, subject, attachments
    [(filename, maintype, subtype, bytes)])."""
    return [
        ("expire-a", 1, "見積書の送付（期限切れ予定）",
         [("見積書.pdf", "application", "pdf", PDF),
          ("明細.csv", "text", "csv", "品名,数量\nコピー用紙,10\n".encode("cp932"))]),
        ("expire-b", 1, "添付なし（期限切れ予定）", []),
        # Hostile values: an escape sequence in the subject, a right-to-left
        # override in a file name.
        ("keep-90", None, "請求\x1b[31m赤字\u202eabc",
         [("名簿.zip", "application", "zip", zip_bytes()),
          ("請求書\u202efdp.exe", "application", "pdf", PE)]),
        ("keep-30", 30, "現場写真", [("写真.png", "image", "png", PNG)]),
    ]


def compose(key, subject, attachments):
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "山田 太郎 <yamada@example.co.jp>"
    m["To"] = "soumu@town.example.lg.jp"
    m["Subject"] = subject
    m["Date"] = "Mon, 23 Nov 2026 09:00:00 +0900"
    m["Message-ID"] = "<%s@example.co.jp>" % key
    m.set_content("%s の本文です。\n" % key)
    for fname, maintype, subtype, data in attachments:
        m.add_attachment(data, maintype=maintype, subtype=subtype, filename=fname)
    return m.as_bytes()


class Cli:
    def __init__(self, sekisho, qdir, env):
        self.sekisho, self.qdir, self.env = sekisho, qdir, env

    def run(self, args, faketime=None, qdir=None, stdin=None):
        cmd = [self.sekisho, "quarantine"] + args + ["-q", qdir or self.qdir]
        if faketime:
            cmd = ["faketime", "-f", faketime] + cmd
        return subprocess.run(cmd, capture_output=True, env=self.env, input=stdin, timeout=120)

    def list_rows(self):
        r = self.run(["list", "--json"])
        if r.returncode != 0:
            return None
        return [json.loads(line) for line in r.stdout.decode("utf-8").splitlines() if line.strip()]


SHOW_PART = re.compile(r"^  \[(\d+)\] .* name:\s+(.*)$")
SHOW_FIELD = re.compile(r"^\s+\S+ (declared|detected|size|SHA-256):\s+(.*)$|^\s+(SHA-256):\s+(.*)$")


def parse_show(text):
    """The plain `show` output: (top-level fields by English label, parts)."""
    top, parts = {}, []
    for line in text.splitlines():
        m = SHOW_PART.match(line)
        if m:
            parts.append({"n": int(m.group(1)), "name": m.group(2)})
            continue
        if parts:
            m = SHOW_FIELD.match(line)
            if m:
                key, val = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
                parts[-1][key] = val
            continue
        m = re.match(r"^(?:\S+ )?([A-Za-z][A-Za-z0-9 -]*):\s+(.*)$", line)
        if m:
            top[m.group(1)] = m.group(2)
    return top, parts


def safe_for_terminal(name, raw):
    """Valid UTF-8 without C0/C1 controls (but newline) or bidi overrides."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(name, "output is not UTF-8: %s" % e)
        return False
    bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F or
           0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069]
    return check(name, not bad, "unsafe characters in output: %r" % bad)


def check_show_json(cli, key, s, want):
    r = cli.run(["show", "--json", s["id"]])
    if not check("show-json-" + key, r.returncode == 0,
                 "exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace"))):
        return
    # JSON escapes what a terminal must not see (RFC 8259 \\u escapes).
    safe_for_terminal("show-json-safe-" + key, r.stdout)
    try:
        shown = json.loads(r.stdout)
    except ValueError as e:
        fail("show-json-parse-" + key, "not JSON: %s: %r" % (e, r.stdout[:500]))
        return
    got = [{k: p.get(k) for k in ("filename", "declared_type", "size", "sha256")}
           for p in shown.get("parts", [])]
    check("show-json-parts-" + key, got == want, "parts %r, attached %r" % (got, want))
    same = {k: shown.get(k) for k in s["row"] if k != "parts"}
    check("show-json-entry-" + key,
          same == {k: v for k, v in s["row"].items() if k != "parts"} and
          shown.get("message_id") == "<%s@example.co.jp>" % key,
          "show %r differs from list %r" % (same, s["row"]))
    check("show-json-detected-" + key, all(p.get("detected_type") for p in shown.get("parts", [])),
          "a part without a detected type: %r" % shown.get("parts"))


def check_show_plain(cli, key, s, want):
    r = cli.run(["show", s["id"]])
    if not check("show-plain-" + key, r.returncode == 0,
                 "exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace"))):
        return
    if not safe_for_terminal("show-plain-safe-" + key, r.stdout):
        return
    top, parts = parse_show(r.stdout.decode("utf-8"))
    # Names are shown with bidi overrides (as with any control) as U+FFFD.
    shown_names = ["".join("\ufffd" if 0x202A <= ord(c) <= 0x202E else c for c in w["filename"])
                   for w in want]
    got = [(p.get("name"), p.get("declared"), p.get("size"), p.get("SHA-256")) for p in parts]
    exp = [(n, w["declared_type"], "%d bytes" % w["size"], w["sha256"])
           for n, w in zip(shown_names, want)]
    check("show-plain-parts-" + key, got == exp, "parts %r, expected %r" % (got, exp))
    check("show-plain-entry-" + key,
          top.get("ID") == s["id"] and top.get("SHA-256") == s["row"]["sha256"] and
          top.get("Size") == "%d bytes" % len(s["original"]) and
          top.get("Removed") == str(len(want)) and
          top.get("Subject") == "".join("\ufffd" if ord(c) < 0x20 or 0x202A <= ord(c) <= 0x202E
                                        else c for c in s["subject"]),
          "fields %r" % top)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 64
    sekisho = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="sekisho-qcli-")
    try:
        run_tests(sekisho, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or passed == 0 else 0


def run_tests(sekisho, work):
    env = dict(os.environ, SEKISHO_STATE_DIR=os.path.join(work, "state"), TZ="Asia/Tokyo")
    qdir = os.path.join(work, "q")
    cli = Cli(sekisho, qdir, env)

    # Store the four originals at the real time.
    stored = {}
    for key, days, subject, attachments in mails():
        original = compose(key, subject, attachments)
        args = [sekisho, "sanitize", "-q", qdir]
        if days is not None:
            pol = os.path.join(work, "retention-%d.yaml" % days)
            with open(pol, "w", encoding="utf-8") as f:
                f.write("mail:\n  quarantine:\n    retention_days: %d\n" % days)
            args += ["-p", pol]
        r = subprocess.run(args, input=original, capture_output=True, env=env, timeout=120)
        qid = re.search(rb"^X-Sekisho-Quarantine-Id: (\S+)\r?$", r.stdout, re.M)
        if not check("sanitize-" + key, r.returncode == 0 and qid,
                     "exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace"))):
            return
        stored[key] = {"id": qid.group(1).decode(), "days": days or 90, "subject": subject,
                       "original": original, "attachments": attachments}

    # list --json: one row per original, found by its SHA-256.
    rows = cli.list_rows()
    if not check("list-json", rows is not None and len(rows) == len(stored),
                 "list --json gave %r" % rows):
        return
    by_sha = {row["sha256"]: row for row in rows}
    for key, s in stored.items():
        row = by_sha.get(hashlib.sha256(s["original"]).hexdigest())
        if not check("list-" + key, row is not None and row["id"] == s["id"],
                     "no row with the original's SHA-256 and id %s: %r" % (s["id"], rows)):
            continue
        # retain_until is set when storing, from retention_days; the two
        # timestamps come from two clock readings a moment apart.
        period = row["retain_until"] - row["received"]
        check("list-fields-" + key,
              row["size"] == len(s["original"]) and row["parts"] == len(s["attachments"]) and
              row["verdict"] == "sanitized" and row["subject"] == s["subject"] and
              abs(period - s["days"] * 86400) <= 5,
              "row %r (expected size %d, %d parts, %d days)" % (
                  row, len(s["original"]), len(s["attachments"]), s["days"]))
        s["row"] = row

    # show --json and plain show of each id.
    for key, s in stored.items():
        want = [{"filename": n, "declared_type": "%s/%s" % (mt, st), "size": len(d),
                 "sha256": hashlib.sha256(d).hexdigest()} for n, mt, st, d in s["attachments"]]
        check_show_json(cli, key, s, want)
        check_show_plain(cli, key, s, want)

    def originals_intact(label, keys):
        for key in keys:
            s = stored[key]
            r = cli.run(["get", s["id"]])
            check("%s-get-%s" % (label, key), r.returncode == 0 and r.stdout == s["original"],
                  "get %s: exit %d, %s" % (s["id"], r.returncode,
                                           "bytes differ" if r.returncode == 0 else
                                           r.stderr.decode(errors="replace")))

    originals_intact("stored", stored)

    # Unknown and malformed ids, a missing quarantine, usage errors.
    unknown = "20000101T000000Z-0000000000000000"
    for args, status, reason in [
            (["show", unknown], 66, unknown), (["show", "--json", unknown], 66, unknown),
            (["get", unknown], 66, unknown), (["get", "../../etc/passwd"], 66, "no such original"),
            (["show", "../../etc/passwd"], 66, "no such original"),
            (["show"], 64, "exactly one ID"), (["get", unknown, unknown], 64, "exactly one ID"),
            (["purge", unknown], 64, "no arguments expected"), (["list", "--delete"], 64, "usage"),
            (["purge", "--json"], 64, "usage")]:
        r = cli.run(args)
        err = r.stderr.decode("utf-8", errors="replace")
        check("error-" + " ".join(args), r.returncode == status and r.stdout == b"" and reason in err,
              "exit %d (want %d), stdout %r, stderr %r" % (r.returncode, status, r.stdout[:200], err))
    missing = os.path.join(work, "no-such-quarantine")
    for args in (["list"], ["show", unknown], ["get", unknown], ["purge"], ["purge", "--delete"]):
        r = cli.run(args, qdir=missing)
        err = r.stderr.decode("utf-8", errors="replace")
        check("no-quarantine-" + " ".join(args),
              r.returncode == 66 and r.stdout == b"" and "cannot open the quarantine" in err and
              not os.path.exists(missing),
              "exit %d, stdout %r, stderr %r, created: %s" % (
                  r.returncode, r.stdout[:200], err, os.path.exists(missing)))

    if shutil.which("faketime") is None:
        fail("purge", "faketime is not installed (scripts/deps.sh check installs it)")
        return

    def purge(label, offset, delete):
        """Runs purge at now + offset; returns (ids it listed, count it
        reported) or None after reporting."""
        r = cli.run(["purge"] + (["--delete"] if delete else []), faketime=offset)
        err = r.stderr.decode("utf-8", errors="replace")
        m = re.search(r"/ (\d+) removed" if delete else r"/ (\d+) expired; nothing removed", err)
        if not check(label, r.returncode == 0 and m, "exit %d, stderr %r" % (r.returncode, err)):
            return None
        ids = {line.split()[0] for line in r.stdout.decode("utf-8").splitlines() if line.strip()}
        return ids, int(m.group(1))

    def ids_of(*keys):
        return {stored[k]["id"] for k in keys}

    # Dry runs at several dates list exactly what has expired by then, and
    # change nothing.
    for offset, expired in ((None, ()), ("+2d", ("expire-a", "expire-b")),
                            ("+31d", ("expire-a", "expire-b", "keep-30")),
                            ("+91d", ("expire-a", "expire-b", "keep-30", "keep-90"))):
        label = "purge-dry" + (offset or "-now")
        got = purge(label, offset, False)
        if got is not None:
            check(label + "-lists", got == (ids_of(*expired), len(expired)),
                  "listed %r (count %d), expected %r" % (got[0], got[1], ids_of(*expired)))
    check("purge-dry-changes-nothing", cli.list_rows() == rows,
          "list after dry runs: %r" % cli.list_rows())
    originals_intact("after-dry-run", stored)

    # The list is the record of what --delete removes: when it cannot be
    # written (a full disk), purge fails (74) and removes nothing.
    with open("/dev/full", "wb") as full:
        r = subprocess.run(["faketime", "-f", "+2d", cli.sekisho, "quarantine", "purge",
                            "--delete", "-q", cli.qdir], stdout=full, stderr=subprocess.PIPE,
                           env=cli.env, timeout=120)
    err = r.stderr.decode("utf-8", errors="replace")
    check("purge-delete-output-error", r.returncode == 74 and "nothing was removed" in err,
          "exit %d, stderr %r" % (r.returncode, err))
    check("purge-delete-output-error-changes-nothing", cli.list_rows() == rows,
          "list after the failed purge: %r" % cli.list_rows())
    originals_intact("after-failed-delete", stored)

    # --delete two days ahead removes exactly the two 1-day originals.
    got = purge("purge-delete", "+2d", True)
    if got is not None:
        check("purge-delete-lists", got == (ids_of("expire-a", "expire-b"), 2),
              "removed %r (count %d)" % got)
    left = cli.list_rows()
    check("purge-delete-rows", left is not None and
          sorted(left, key=lambda x: x["id"]) ==
          sorted((r_ for r_ in rows if r_["id"] in ids_of("keep-90", "keep-30")),
                 key=lambda x: x["id"]),
          "rows left %r" % left)
    for key in ("expire-a", "expire-b"):
        for args in (["get", stored[key]["id"]], ["show", stored[key]["id"]]):
            r = cli.run(args)
            err = r.stderr.decode("utf-8", errors="replace")
            check("purged-%s-%s" % (args[0], key),
                  r.returncode == 66 and r.stdout == b"" and "no such original" in err,
                  "exit %d, stdout %r, stderr %r" % (r.returncode, r.stdout[:200], err))
    originals_intact("after-delete", ("keep-90", "keep-30"))
    # Nothing more to remove at the same date.
    got = purge("purge-delete-again", "+2d", True)
    if got is not None:
        check("purge-delete-again-empty", got == (set(), 0), "removed %r (count %d)" % got)
    originals_intact("after-second-delete", ("keep-90", "keep-30"))

    check_ledger(cli, stored, work)


def check_ledger(cli, stored, work):
    """Every decision of the runs above is in the ledger (under
    $SEKISHO_STATE_DIR), the ledger verifies, and a ledger that cannot be
    written stops a release or a deletion before anything is given out."""
    def ledger(args):
        return subprocess.run([cli.sekisho, "ledger"] + args, capture_output=True, env=cli.env,
                              timeout=120)
    r = ledger(["cat"])
    if not check("ledger-cat", r.returncode == 0, r.stderr.decode(errors="replace")):
        return
    entries = [json.loads(line) for line in r.stdout.decode("utf-8").splitlines()]
    by_type = {}
    for e in entries:
        by_type.setdefault(e["type"], []).append(e)
    ids = {s["id"] for s in stored.values()}
    received = {e["fields"]["quarantine_id"]: e["fields"] for e in by_type.get("mail.received", [])}
    check("ledger-received", set(received) == ids and all(
        received[s["id"]]["sha256"] == hashlib.sha256(s["original"]).hexdigest() and
        received[s["id"]]["size"] == len(s["original"]) for s in stored.values()),
          "mail.received: %r" % received)
    sanitized = [e["fields"] for e in by_type.get("mail.sanitized", [])]
    check("ledger-sanitized", {f["quarantine_id"] for f in sanitized} == ids and all(
        f["removed_parts"] == len(s["attachments"]) for s in stored.values()
        for f in sanitized if f["quarantine_id"] == s["id"]), "mail.sanitized: %r" % sanitized)
    released = [e for e in by_type.get("quarantine.released", [])]
    check("ledger-released", {e["fields"]["quarantine_id"] for e in released} == ids and all(
        e["source"] == "sekisho quarantine" and "uid" in e["fields"] for e in released),
          "quarantine.released: %r" % released)
    purged = {e["fields"]["quarantine_id"] for e in by_type.get("quarantine.purged", [])}
    check("ledger-purged", purged == {stored["expire-a"]["id"], stored["expire-b"]["id"]},
          "quarantine.purged: %r" % purged)
    # the --delete whose list could not be written (/dev/full): recorded, then
    # its failure recorded
    failed = by_type.get("quarantine.purge_failed", [])
    check("ledger-purge-failed", len(failed) == 1 and failed[0]["fields"]["removed"] == 0 and
          "nothing was removed" in failed[0]["fields"]["reason"], "purge_failed: %r" % failed)
    r = ledger(["verify"])
    check("ledger-verify", r.returncode == 0, r.stdout.decode(errors="replace") +
          r.stderr.decode(errors="replace"))

    # A ledger that cannot be written: nothing given out, exit 75.
    bad = ["-l", "/dev/null/ledger"]
    keep = stored["keep-90"]
    r = cli.run(["get", keep["id"]] + bad)
    err = r.stderr.decode("utf-8", errors="replace")
    check("ledger-unwritable-get", r.returncode == 75 and r.stdout == b"" and
          "cannot open the ledger" in err, "exit %d, stdout %d bytes, %r" % (
              r.returncode, len(r.stdout), err))
    r = cli.run(["purge", "--delete"] + bad, faketime="+400d")
    err = r.stderr.decode("utf-8", errors="replace")
    check("ledger-unwritable-purge", r.returncode == 75 and len(cli.list_rows() or []) == 2,
          "exit %d, %r, rows %r" % (r.returncode, err, cli.list_rows()))
    r = subprocess.run([cli.sekisho, "sanitize", "-q", cli.qdir] + bad, input=keep["original"],
                       capture_output=True, env=cli.env, timeout=120)
    err = r.stderr.decode("utf-8", errors="replace")
    check("ledger-unwritable-sanitize", r.returncode == 75 and r.stdout == b"",
          "exit %d, stdout %d bytes, %r" % (r.returncode, len(r.stdout), err))


if __name__ == "__main__":
    sys.exit(main())
