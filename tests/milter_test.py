#!/usr/bin/python3
"""End-to-end test of the gateway: SMTP -> a private Postfix -> sekisho-milter
-> Maildir (tests/postfix_harness.py), Python 3 standard library only.

    milter_test.py SEKISHO_MILTER SEKISHO REPO_ROOT

  corpus     every mail of tests/corpus/composed (with its .expect.json) sent
             over SMTP is delivered once, sanitized: one text/plain UTF-8 part
             that Python's email package re-parses, X-Sekisho-Quarantine-Id,
             the tagged Subject, the expected text and removed-part count, no
             U+FFFD, no header of the original left but the kept ones;
             `sekisho quarantine get ID` gives back the sent bytes exactly
  inside     a mail from an address of an internal (lgwan) zone is delivered
             untouched (body and headers as sent), nothing is stored
  too-big    a mail over max_message_size gets 552 5.3.4; nothing delivered,
             nothing stored
  reject     a mail that cannot be made safe (header block over
             max_header_size) gets 550 5.7.1 naming its quarantine id; the
             original is held there as "rejected"; nothing delivered
  worker-abort   the worker crashes on a mail: 4xx, nothing delivered, nothing
             stored; the next mail is sanitized by a fresh worker
  worker-hang    the worker hangs on a mail: 4xx within the time limit,
             nothing delivered; the next mail passes
  milter-down    the milter stopped: 451 4.7.1, nothing queued or delivered;
             the milter started again: the same mail is delivered sanitized
  client     a real mail client shows a delivered Japanese mail (CP50221 from
             Outlook, with 髙 and ①) without mojibake: NeoMutt in tmux opens
             it from a Maildir and tmux capture-pane reads the screen, which is
             printed into the test log
  sender     a second private Postfix relays to the gateway as the internet
             side's sending MTA; with the milter stopped, a worker crashing
             and a worker hanging, the mail stays deferred in the sender's
             queue (4xx in its log), nothing reaches the Maildir; with the
             milter back, postqueue -f on the sender delivers it sanitized,
             exactly once
  stop       the milter ends on SIGTERM with status 0 (under ASan: no leak),
             and no worker process is left

Exit status 77 (a skip) when not root or Postfix is not installed.
Ends with the line "N passed, M failed".
"""
import email
import email.policy
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postfix_harness import HarnessError, PrivatePostfix, free_port, skip_reason  # noqa: E402

passed = 0
failed = 0


def fail(name, why):
    global failed
    failed += 1
    print("FAIL %s: %s" % (name, why))


def check(name, cond, why=""):
    global passed
    if cond:
        passed += 1
    else:
        fail(name, why)
    return cond


SENDER = "sender@example.com"
RCPT = "soumu@town.example.lg.jp"
ABORT_MARK = "SEKISHO-TEST-ABORT-4f1c"
HANG_MARK = "SEKISHO-TEST-HANG-9a2e"
WORKER_ARG = b"--sekisho-sanitize-worker"
# Headers a delivered sanitized mail may have: Postfix's trace headers and
# what sanitize_finish() writes.
TRACE = {"return-path", "x-original-to", "delivered-to", "received"}
SANITIZED = {"x-sekisho-quarantine-id", "from", "to", "cc", "date", "subject", "message-id",
             "in-reply-to", "references", "mime-version", "content-type",
             "content-transfer-encoding", "x-sekisho-sanitized", "reply-to"}

POLICY = """\
state_dir: {state}
organization:
  name: テスト町
  internal_domains: [town.example.lg.jp]   # as tests/corpus/policies/town.yaml
zones:
  - name: LGWAN接続系
    kind: lgwan
    networks: [127.0.0.2/32]
  - name: インターネット接続系
    kind: internet
    networks: [127.0.0.1/32]
mail:
  limits:
    max_message_size: 300KB
    max_header_size: 8KB
    time_limit: 3s
gateway:
  listen: inet:127.0.0.1:{port}
  workers: 2
  recycle_after: 5
  daemon_zones:
    - {{daemon: lgwan-submission, zone: LGWAN接続系}}
"""


def crlf(raw):
    """A mail as it goes over SMTP: CRLF line ends."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Milter:
    """sekisho-milter on a free loopback port with its own state directory;
    always stopped (SIGTERM, then SIGKILL) by stop()."""

    def __init__(self, exe, tmp, env_extra=None, unix=False):
        self.exe, self.tmp = exe, tmp
        self.port = free_port()
        # listen: unix:PATH instead of TCP
        self.sock = os.path.join(tmp, "milter.sock") if unix else None
        self.state = os.path.join(tmp, "state")
        self.policy = os.path.join(tmp, "policy.yaml")
        self.log = os.path.join(tmp, "milter.log")
        with open(self.policy, "w", encoding="utf-8") as f:
            pol = POLICY.format(state=self.state, port=self.port)
            if self.sock:
                pol = pol.replace("listen: inet:127.0.0.1:%d" % self.port, "listen: unix:" + self.sock)
            f.write(pol)
        self.env = dict(os.environ)
        self.env["SEKISHO_TEST_MILTER_INSTANCE"] = tmp  # finds its workers in /proc
        self.env.update(env_extra or {})
        self.proc = None
        self.status = None

    @property
    def spec(self):
        return ("unix:" + self.sock) if self.sock else "inet:127.0.0.1:%d" % self.port

    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([self.exe, "-p", self.policy, "-f", "-v"], env=self.env,
                                     stdout=self.logf, stderr=self.logf)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise HarnessError("sekisho-milter exited with %d:\n%s" %
                                   (self.proc.returncode, self.text()))
            if self.sock:
                with socket.socket(socket.AF_UNIX) as s:
                    if os.path.exists(self.sock) and s.connect_ex(self.sock) == 0:
                        return
            else:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", self.port)) == 0:
                        return
            time.sleep(0.05)
        raise HarnessError("sekisho-milter does not listen after 30 s:\n%s" % self.text())

    def stop(self):
        """SIGTERM; returns the exit status (libmilter takes a few seconds)."""
        if self.proc is None:
            return self.status
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.status = self.proc.returncode
        self.proc = None
        self.logf.close()
        return self.status

    def workers(self):
        """Worker processes of this instance that still exist."""
        out = []
        want = b"SEKISHO_TEST_MILTER_INSTANCE=" + os.fsencode(self.tmp)
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read()
                with open("/proc/%s/environ" % d, "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if WORKER_ARG in cmd.split(b"\0") and want in env:
                out.append(int(d))
        return out

    def text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def quarantine(self, sekisho, *args):
        # the same state directory as the milter's policy: the same ledger
        r = subprocess.run([sekisho, "quarantine"] + list(args) + ["-q",
                           os.path.join(self.state, "quarantine")], capture_output=True,
                           timeout=60, env=dict(os.environ, SEKISHO_STATE_DIR=self.state))
        return r.returncode, r.stdout, r.stderr.decode(errors="replace")

    def held(self, sekisho):
        """The quarantine's entries (list --json), {} when there is none yet."""
        rc, out, err = self.quarantine(sekisho, "list", "--json")
        if rc == 66:
            return {}
        if rc != 0:
            raise HarnessError("quarantine list: %d %s" % (rc, err))
        rows = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        return {r["id"]: r for r in rows}


def wait_count(pf, n, timeout=60):
    try:
        return pf.wait_for_delivery(n, timeout=timeout)
    except HarnessError as e:
        fail("delivery-wait", str(e))
        return pf.delivered()


def new_files(pf, before):
    return [p for p in pf.delivered() if p not in before]


def corpus(repo):
    out = []
    for exp in sorted(glob.glob(os.path.join(repo, "tests", "corpus", "composed", "*.expect.json"))):
        base = os.path.basename(exp)
        if base.count(".") != 2:  # variants such as .english.expect.json
            continue
        with open(exp, encoding="utf-8") as f:
            e = json.load(f)
        if e.get("policy") not in (None, "town.yaml"):  # the milter runs one policy
            continue
        with open(os.path.join(os.path.dirname(exp), e["eml"]), "rb") as f:
            out.append((e["eml"], crlf(f.read()), e))
    return out


def test_corpus(pf, m, sekisho, repo):
    mails = corpus(repo)
    check("corpus-found", len(mails) >= 10, "only %d corpus mails" % len(mails))
    sent = {}
    for name, raw, exp in mails:
        r = pf.send(raw, SENDER, [RCPT])
        if check("corpus-accepted-" + name, r.accepted, "SMTP: %r" % (r,)):
            sent[name] = (raw, exp)
    paths = wait_count(pf, len(sent))
    time.sleep(1)  # a duplicate would show up now
    paths = pf.delivered()
    check("corpus-count", len(paths) == len(sent), "%d delivered, %d sent" % (len(paths), len(sent)))
    by_id = {}
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        msg = email.message_from_bytes(data, policy=email.policy.default)
        by_id.setdefault(str(msg.get("X-Sekisho-Quarantine-Id", "")), []).append((p, data, msg))
    held = m.held(sekisho)
    seen = set()
    for qid, items in by_id.items():
        name = "?"
        if not check("corpus-has-qid", qid != "", "a delivered mail without X-Sekisho-Quarantine-Id"):
            continue
        check("corpus-qid-once-" + qid, len(items) == 1, "%d mails carry %s" % (len(items), qid))
        p, data, msg = items[0]
        rc, orig, err = m.quarantine(sekisho, "get", qid)
        match = [n for n, (raw, _) in sent.items() if raw == orig]
        if not check("corpus-original-" + qid, rc == 0 and len(match) == 1,
                     "quarantine get %s: exit %d, %s; matches %r" % (qid, rc, err, match)):
            continue
        name = match[0]
        seen.add(name)
        exp = sent[name][1]
        check("corpus-held-sanitized-" + name, held.get(qid, {}).get("verdict") == "sanitized",
              "index row: %r" % held.get(qid))
        check("corpus-single-part-" + name, not msg.is_multipart() and
              msg.get_content_type() == "text/plain" and
              (msg.get_content_charset() or "").lower() == "utf-8",
              "%s; %s" % (msg.get_content_type(), msg.get_content_charset()))
        try:
            body = msg.get_content()
        except Exception as e:  # noqa: BLE001 - any parse failure is a finding
            fail("corpus-parse-" + name, repr(e))
            continue
        check("corpus-no-fffd-" + name, "\ufffd" not in body and "\ufffd" not in str(msg["Subject"]),
              "U+FFFD in the delivered mail")
        missing = [t for t in exp.get("body_contains", []) if t not in body]
        check("corpus-text-" + name, not missing, "missing %r" % missing)
        check("corpus-subject-tag-" + name, str(msg["Subject"]).startswith("[外部]"),
              "Subject: %r" % str(msg["Subject"]))
        san = str(msg.get("X-Sekisho-Sanitized", ""))
        check("corpus-removed-" + name, "removed-parts=%d;" % exp.get("removed_parts", 0) in san,
              "X-Sekisho-Sanitized: %r, want removed-parts=%d" % (san, exp.get("removed_parts", 0)))
        keys = [k.lower() for k in msg.keys()]
        extra = [k for k in keys if k not in TRACE and k not in SANITIZED]
        check("corpus-headers-" + name, not extra and keys.count("received") == 1 and
              keys.count("content-type") == 1 and keys.count("subject") == 1,
              "headers %r" % msg.keys())
        check("corpus-qid-in-body-" + name, qid in body, "the body does not name %s" % qid)
        check("corpus-owner-" + name, os.stat(p).st_uid != 0, "delivered file owned by root")
    missing = sorted(set(sent) - seen)
    check("corpus-all-delivered", not missing, "not delivered sanitized: %r" % missing)
    log = m.text()
    check("corpus-logged", log.count("verdict=sanitized") >= len(sent) and
          "message-id=<" in log and "quarantine=" in log, log[-2000:])


def test_ledger(m, sekisho):
    """Every decision of the runs above is in the milter's ledger, and it
    verifies: each original in the quarantine was received, then sanitized or
    held; the inside connection passed; the faults were recorded as tempfail;
    the originals the tests took out were recorded as released."""
    env = dict(os.environ, SEKISHO_STATE_DIR=m.state)
    r = subprocess.run([sekisho, "ledger", "cat"], capture_output=True, env=env, timeout=60)
    if not check("ledger-cat", r.returncode == 0, r.stderr.decode(errors="replace")):
        return
    entries = [json.loads(line) for line in r.stdout.decode("utf-8").splitlines()]
    by = {}
    for e in entries:
        by.setdefault(e["type"], []).append(e["fields"])
    held = m.held(sekisho)
    received = {f["quarantine_id"]: f for f in by.get("mail.received", [])}
    outcome = {f["quarantine_id"]: t for t in ("mail.sanitized", "mail.held")
               for f in by.get(t, [])}
    check("ledger-received", set(received) == set(held) and all(
        received[i]["sha256"] == held[i]["sha256"] and received[i]["size"] == held[i]["size"]
        for i in held), "received %d, quarantine %d" % (len(received), len(held)))
    want = {i: "mail.sanitized" if row["verdict"] == "sanitized" else "mail.held"
            for i, row in held.items()}
    # an original stored before a fault may lack its outcome (tempfail); none
    # may have the wrong one
    wrong = {i: (outcome.get(i), w) for i, w in want.items() if outcome.get(i) not in (w, None)}
    check("ledger-outcomes", not wrong and len(outcome) >= len(held) - len(by.get(
        "mail.tempfail", [])), "wrong outcomes %r" % wrong)
    check("ledger-sanitized-sha", all(len(f["output_sha256"]) == 64 for f in
                                      by.get("mail.sanitized", [])), "%r" % by.get("mail.sanitized"))
    check("ledger-passed", any(f.get("client_addr") == "127.0.0.2" for f in by.get("mail.passed", [])),
          "mail.passed: %r" % by.get("mail.passed"))
    check("ledger-tempfail", len(by.get("mail.tempfail", [])) >= 2,
          "mail.tempfail: %r" % by.get("mail.tempfail"))
    check("ledger-released", len(by.get("quarantine.released", [])) >= 1,
          "quarantine.released: %r" % by.get("quarantine.released"))
    r = subprocess.run([sekisho, "ledger", "verify"], capture_output=True, env=env, timeout=120)
    check("ledger-verify", r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace"))


def test_unix_socket(exe, sekisho, repo, tmp):
    """listen: unix:PATH. The socket is the owner's and its group's only
    (umask 007); Postfix's smtpd runs as postfix, so the administrator gives
    the socket to the postfix group (docs/GATEWAY.md), as done here."""
    d = os.path.join(tmp, "unix")
    os.makedirs(d)
    os.chmod(d, 0o755)
    m = Milter(exe, d, unix=True)
    try:
        m.start()
        mode = os.stat(m.sock).st_mode & 0o777
        check("unix-socket-mode", mode & 0o007 == 0, "socket mode %o" % mode)
        shutil.chown(m.sock, group="postfix")
        with PrivatePostfix(repo, milter=m.spec) as pf:
            raw = plain_mail("unix-socket", "ソケット経由")
            r = pf.send(raw, SENDER, [RCPT])
            if check("unix-accepted", r.accepted, "SMTP: %r" % (r,)):
                got = wait_count(pf, 1)
                data = open(got[0], "rb").read() if got else b""
                check("unix-sanitized", len(got) == 1 and b"X-Sekisho-Quarantine-Id:" in data,
                      "delivered %r" % data[:500])
        check("unix-stop", m.stop() == 0, m.text()[-1500:])
    except HarnessError as e:
        fail("unix-harness", str(e))
    finally:
        m.stop()
        for pid in m.workers():
            os.kill(pid, signal.SIGKILL)


def test_client(pf, corpus_name="jp-cp50221-outlook"):
    """NeoMutt (a real client) in tmux shows the delivered mail that came from
    tests/corpus/composed/<corpus_name>.eml: its Japanese subject and text,
    no U+FFFD, no '?' runs where the text should be."""
    tmux, neomutt = shutil.which("tmux"), shutil.which("neomutt")
    if not check("client-tools", tmux and neomutt, "tmux or neomutt missing (scripts/deps.sh check)"):
        return
    exp = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                                      "composed", corpus_name + ".expect.json"), encoding="utf-8"))
    want = [t for t in exp.get("body_contains", []) if any(ord(ch) > 127 for ch in t)]
    target = None
    for p in pf.delivered():
        with open(p, "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        try:
            body = msg.get_content()
        except Exception:  # noqa: BLE001 - not the one we look for
            continue
        if all(t in body for t in want):
            target = p
            break
    if not check("client-found", target is not None and want, "no delivered mail with %r" % want):
        return
    work = tempfile.mkdtemp(prefix="sekisho-client-")
    try:
        box = os.path.join(work, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(box, sub))
        shutil.copy(target, os.path.join(box, "new", os.path.basename(target)))
        rc = os.path.join(work, "muttrc")
        with open(rc, "w", encoding="utf-8") as f:
            f.write('set charset="utf-8"\nset mbox_type=Maildir\nset pager_stop=yes\n'
                    'set markers=no\nset wrap=0\nunset help\nset check_new=no\n'
                    'set header_cache=""\nset message_cachedir=""\nset record=""\n'
                    'set folder="%s"\nset spoolfile="%s"\n' % (box, box))
        env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8", TERM="xterm-256color",
                   HOME=work)
        sock = os.path.join(work, "tmux.sock")
        base = [tmux, "-u", "-S", sock]
        subprocess.run(base + ["new-session", "-d", "-x", "150", "-y", "50",
                               "%s -n -F %s -f %s" % (neomutt, rc, box)], env=env, check=True,
                       timeout=30)
        screen = ""
        try:
            deadline = time.time() + 20
            opened = False
            while time.time() < deadline:
                time.sleep(0.5)
                screen = subprocess.run(base + ["capture-pane", "-p", "-J"], env=env,
                                        capture_output=True, timeout=30).stdout.decode("utf-8",
                                                                                       "replace")
                if all(t in screen for t in want):
                    break
                if not opened and "[外部]" in screen:
                    # the index shows the mail: open it in the pager
                    subprocess.run(base + ["send-keys", "Enter"], env=env, check=True, timeout=30)
                    opened = True
        finally:
            subprocess.run(base + ["kill-server"], env=env, timeout=30)
        print("--- NeoMutt screen (tmux capture-pane) ---")
        print(screen.rstrip())
        print("--- end of screen ---")
        missing = [t for t in want if t not in screen]
        check("client-text", not missing, "not on the screen: %r" % missing)
        check("client-subject", "[外部]" in screen, "the tagged subject is not on the screen")
        check("client-no-mojibake", "\ufffd" not in screen and "??" not in screen,
              "replacement characters on the screen")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def plain_mail(key, subject="テスト", body="本文です。\n", extra_headers=""):
    return crlf(("From: 山田 <yamada@example.co.jp>\n"
                 "To: <%s>\n"
                 "Subject: %s\n"
                 "Date: Mon, 23 Nov 2026 09:00:00 +0900\n"
                 "Message-ID: <%s@example.co.jp>\n"
                 "MIME-Version: 1.0\n"
                 "Content-Type: text/plain; charset=UTF-8\n"
                 "Content-Transfer-Encoding: 8bit\n"
                 "%s\n%s" % (RCPT, subject, key, extra_headers, body)).encode("utf-8"))


def test_inside(pf, m, sekisho):
    before = pf.delivered()
    held_before = len(m.held(sekisho))
    raw = plain_mail("inside", "庁内のメール", "LGWAN 接続系からの本文。\n",
                     "X-Internal-Tracking: 42\n")
    r = pf.send(raw, "kakari@town.example.lg.jp", [RCPT], source_address=("127.0.0.2", 0))
    if not check("inside-accepted", r.accepted, "SMTP: %r" % (r,)):
        return
    wait_count(pf, len(before) + 1)
    got = new_files(pf, before)
    if not check("inside-delivered-once", len(got) == 1, "%r" % got):
        return
    with open(got[0], "rb") as f:
        data = f.read()
    sent = raw.replace(b"\r\n", b"\n")
    head, body = sent.split(b"\n\n", 1)
    check("inside-untouched", data.endswith(sent) and b"X-Sekisho" not in data,
          "delivered:\n%r" % data[:1500])
    check("inside-not-stored", len(m.held(sekisho)) == held_before, "stored in the quarantine")
    check("inside-logged", "[127.0.0.2] daemon=internet: from inside" in m.text(), m.text()[-1500:])


def test_too_big(pf, m, sekisho):
    before = pf.delivered()
    held_before = len(m.held(sekisho))
    raw = plain_mail("too-big", body=("あいうえお" * 20 + "\n") * 1200)  # about 370 KB
    r = pf.send(raw, SENDER, [RCPT])
    check("too-big-552", r.code == 552 and "5.3.4" in r.text and not r.accepted, "SMTP: %r" % (r,))
    time.sleep(2)
    check("too-big-not-delivered", new_files(pf, before) == [], "%r" % new_files(pf, before))
    check("too-big-not-stored", len(m.held(sekisho)) == held_before, "stored in the quarantine")


def test_reject(pf, m, sekisho):
    before = pf.delivered()
    filler = "".join("X-Filler-%d: %s\n" % (i, "x" * 70) for i in range(150))  # > 8 KB
    raw = plain_mail("reject", extra_headers=filler)
    r = pf.send(raw, SENDER, [RCPT])
    held = m.held(sekisho)
    ids = [i for i in held if i in r.text]
    check("reject-550", r.code == 550 and "5.7.1" in r.text and len(ids) == 1,
          "SMTP: %r" % (r,))
    if ids:
        check("reject-held", held[ids[0]]["verdict"] == "rejected", "%r" % held[ids[0]])
        rc, orig, err = m.quarantine(sekisho, "get", ids[0])
        check("reject-original", rc == 0 and orig == raw, "get: %d %s" % (rc, err))
    time.sleep(1)
    check("reject-not-delivered", new_files(pf, before) == [], "%r" % new_files(pf, before))
    print("reject reply as the sender sees it: %d %s" % (r.code, r.text))


def test_worker_fault(pf, m, sekisho, kind, mark):
    before = pf.delivered()
    held_before = len(m.held(sekisho))
    raw = plain_mail("fault-" + kind, body="この本文でワーカーが止まります %s\n" % mark)
    t0 = time.monotonic()
    r = pf.send(raw, SENDER, [RCPT])
    took = time.monotonic() - t0
    check("worker-%s-4xx" % kind, 400 <= r.code < 500 and not r.accepted, "SMTP: %r" % (r,))
    check("worker-%s-in-time" % kind, took < 20, "took %.1f s" % took)
    time.sleep(2)
    check("worker-%s-not-delivered" % kind, new_files(pf, before) == [],
          "%r" % new_files(pf, before))
    check("worker-%s-not-stored" % kind, len(m.held(sekisho)) == held_before,
          "stored in the quarantine")
    check("worker-%s-logged" % kind, "verdict=tempfail step=sanitize" in m.text(), m.text()[-1500:])
    # the next mail gets a fresh worker
    r = pf.send(plain_mail("after-" + kind), SENDER, [RCPT])
    check("worker-%s-next-ok" % kind, r.accepted, "SMTP: %r" % (r,))
    wait_count(pf, len(before) + 1)
    print("worker %s: %d %s (%.2f s)" % (kind, r.code, r.text, took))


def test_milter_down(pf, m, sekisho):
    before = pf.delivered()
    check("down-stop", m.stop() == 0, "exit status %r" % m.status)
    raw = plain_mail("milter-down", "ミルター停止中に送ったメール")
    r = pf.send(raw, SENDER, [RCPT])
    check("down-451", r.code == 451 and "4.7.1" in r.text, "SMTP: %r" % (r,))
    time.sleep(2)
    check("down-not-delivered", new_files(pf, before) == [], "%r" % new_files(pf, before))
    check("down-not-queued", pf.queue_files() == [], "%r" % pf.queue_files())
    # The sender keeps it and tries again once the milter is back.
    m.start()
    r = pf.send(raw, SENDER, [RCPT])
    check("down-retry-accepted", r.accepted, "SMTP: %r" % (r,))
    wait_count(pf, len(before) + 1)
    got = new_files(pf, before)
    if check("down-delivered-once", len(got) == 1, "%r" % got):
        with open(got[0], "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        check("down-delivered-sanitized", msg["X-Sekisho-Quarantine-Id"] is not None and
              str(msg["Subject"]).startswith("[外部]"), "%r" % msg.keys())


def wait_for(cond, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_sender(pf, m, sekisho, repo, kind, mark=None):
    """A second private Postfix is the internet side's sending MTA and relays
    to the gateway. With the fault (kind: milter-down, worker-abort,
    worker-hang) the mail stays deferred in the sender's queue with the
    gateway's 4xx in its log and nothing reaches the Maildir; once the
    milter is back without the fault, `postqueue -f` on the sender delivers
    it sanitized, exactly once."""
    name = "sender-" + kind
    before = pf.delivered()
    key = "sender-" + kind
    raw = plain_mail(key, "送信側 MTA 経由 " + kind,
                     "送信側のキューで待つ本文 %s\n" % (mark or ""))
    with PrivatePostfix(repo, relay=pf.port) as snd:
        if kind == "milter-down":
            check(name + "-stop", m.stop() == 0, "exit status %r" % m.status)
        r = snd.send(raw, SENDER, [RCPT])
        check(name + "-sender-accepted", r.accepted, "SMTP: %r" % (r,))
        want = "4.7.1" if kind == "milter-down" else "4.3.0"
        deferred = wait_for(lambda: "status=deferred" in snd.maillog() and
                            want in snd.maillog(), 90)
        check(name + "-deferred-4xx", deferred, "sender log:\n%s" % snd.maillog()[-2000:])
        q = snd.queue()
        check(name + "-in-sender-queue", len(q) == 1 and q[0].get("queue_name") == "deferred",
              "%r" % q)
        time.sleep(1)
        check(name + "-not-delivered", new_files(pf, before) == [], "%r" % new_files(pf, before))
        # the milter back, without the fault
        m.stop()
        for var in ("SEKISHO_TEST_WORKER_ABORT_ON", "SEKISHO_TEST_WORKER_HANG_ON"):
            m.env.pop(var, None)
        m.start()
        snd.flush()
        got = wait_count(pf, len(before) + 1, 90)
        time.sleep(2)  # a duplicate would show up now
        got = new_files(pf, before)
        if check(name + "-delivered-once", len(got) == 1, "%r" % got):
            with open(got[0], "rb") as f:
                msg = email.message_from_bytes(f.read(), policy=email.policy.default)
            check(name + "-delivered-sanitized",
                  msg["X-Sekisho-Quarantine-Id"] is not None and
                  msg["X-Sekisho-Sanitized"] is not None and
                  str(msg["Subject"]).startswith("[外部]") and
                  str(msg["Message-ID"]) == "<%s@example.co.jp>" % key, "%r" % msg.items())
        check(name + "-sender-queue-empty", wait_for(lambda: snd.queue() == [], 30),
              "%r" % snd.queue())
        print("%s: sender log: %s" % (name, [ln for ln in snd.maillog().splitlines()
                                             if "status=deferred" in ln][:1]))
    m.env.update({"SEKISHO_TEST_WORKER_ABORT_ON": ABORT_MARK,
                  "SEKISHO_TEST_WORKER_HANG_ON": HANG_MARK})
    m.stop()
    m.start()


def main():
    if len(sys.argv) != 4:
        print("usage: milter_test.py SEKISHO_MILTER SEKISHO REPO_ROOT", file=sys.stderr)
        return 2
    why = skip_reason()
    if why:
        print("SKIP: %s" % why)
        return 77
    exe, sekisho, repo = [os.path.abspath(a) for a in sys.argv[1:]]
    tmp = tempfile.mkdtemp(prefix="sekisho-milter-test-")
    os.chmod(tmp, 0o755)
    m = Milter(exe, tmp, {"SEKISHO_TEST_WORKER_ABORT_ON": ABORT_MARK,
                          "SEKISHO_TEST_WORKER_HANG_ON": HANG_MARK})
    try:
        m.start()
        with PrivatePostfix(repo, milter=m.spec) as pf:
            test_corpus(pf, m, sekisho, repo)
            test_client(pf)
            test_inside(pf, m, sekisho)
            test_too_big(pf, m, sekisho)
            test_reject(pf, m, sekisho)
            test_worker_fault(pf, m, sekisho, "abort", ABORT_MARK)
            test_worker_fault(pf, m, sekisho, "hang", HANG_MARK)
            test_milter_down(pf, m, sekisho)
            test_sender(pf, m, sekisho, repo, "milter-down")
            test_sender(pf, m, sekisho, repo, "worker-abort", ABORT_MARK)
            test_sender(pf, m, sekisho, repo, "worker-hang", HANG_MARK)
        status = m.stop()
        test_ledger(m, sekisho)
        test_unix_socket(exe, sekisho, repo, tmp)
        check("stop-status", status == 0, "exit status %r; log:\n%s" % (status, m.text()[-3000:]))
        time.sleep(0.5)
        check("stop-no-worker-left", m.workers() == [], "workers left: %r" % m.workers())
        check("stop-logged", "stopped:" in m.text(), m.text()[-1500:])
    except HarnessError as e:
        fail("harness", str(e))
    finally:
        m.stop()
        for pid in m.workers():  # never leave one behind, even on failure
            os.kill(pid, signal.SIGKILL)
        print("--- milter log (last 40 lines) ---")
        print("\n".join(m.text().splitlines()[-40:]))
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
