#!/usr/bin/python3
"""End-to-end test of the private Postfix instance (scripts/postfix-private.sh)
through tests/postfix_harness.py: SMTP on loopback, delivery into a Maildir.

    postfix_test.py REPO_ROOT

  delivery   mails composed here (Japanese UTF-8 8bit, ISO-2022-JP, base64
             attachment, lines that SMTP must dot-stuff, "From " lines, long
             lines, trailing blanks) sent over SMTP land in the Maildir, once
             each; the body is byte for byte what was sent (SMTP's CRLF is LF
             in a Maildir file), the sender's header block is kept unchanged
             after the trace headers Postfix adds, and the file is not owned
             by root
  no-milter  with MILTER at a loopback port where nothing listens, MAIL FROM
             gets 451 4.7.1; nothing is delivered and nothing is queued
             (postqueue -j, and the queue directories are empty); the maillog
             records the refused milter connection
  snippet    etc/postfix/main.cf.sekisho (what an administrator copies) is
             valid Postfix configuration (postconf names no unknown parameter)
             with milter_default_action = tempfail and milter_protocol = 6, and
             the private instance with a milter uses the same milter settings
  stop       each instance stops cleanly: `status` says it is not running, the
             port refuses connections, and no process is left that carries the
             instance's config directory (in its environment or command line)
             or is in its master's process group

Exit status 77 (a skip, for meson) when not root or Postfix is not installed;
otherwise every check runs. Ends with the line "N passed, M failed".
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from email import policy
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postfix_harness import HarnessError, PrivatePostfix, postfix_bin, skip_reason  # noqa: E402

passed = 0
failed = 0


def fail(name, why):
    global failed
    failed += 1
    print("FAIL %s: %s" % (name, why))


def check(name, cond, why):
    global passed
    if cond:
        passed += 1
    else:
        fail(name, why)
    return cond


SENDER = "yamada@example.co.jp"
RCPT = "soumu@town.example.lg.jp"


def compose(key, subject, body, charset="utf-8", cte="8bit", attachment=None):
    """A mail as bytes with CRLF line ends, as it goes over SMTP."""
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "山田 太郎 <%s>" % SENDER
    m["To"] = "総務課 <%s>" % RCPT
    m["Subject"] = subject
    m["Date"] = "Mon, 23 Nov 2026 09:00:00 +0900"
    m["Message-ID"] = "<%s@example.co.jp>" % key
    m.set_content(body, charset=charset, cte=cte)
    if attachment:
        m.add_attachment(attachment, maintype="application", subtype="pdf", filename="見積書.pdf")
    return m.as_bytes()


def mails():
    tricky = ("先頭がドットの行と From の行を含む本文です。\n"
              ".\n"
              "..two dots\n"
              ".one dot\n"
              "From the town office\n"
              ">From quoted\n"
              "trailing blanks   \n"
              "\n"
              "\n"
              + "長" * 300 + "\n"
              + "x" * 990 + "\n"
              "最後の行\n")
    pdf = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n" * 50
    return [
        ("utf8-8bit", "住民票の写しの交付について", tricky, "utf-8", "8bit", None),
        ("iso2022jp", "会議の日程（ISO-2022-JP）", "来週の会議は第二会議室で行います。\n", "iso-2022-jp",
         "7bit", None),
        ("attachment", "見積書の送付", "見積書を添付します。\n", "utf-8", "base64", pdf),
    ]


def split(raw):
    """(header block, body) of a message, split at the first empty line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[:i + len(sep) // 2], raw[i + len(sep):]
    return raw, b""


def test_delivery(pf):
    sent = {}
    for key, subject, body, charset, cte, att in mails():
        raw = compose(key, subject, body, charset, cte, att)
        r = pf.send(raw, SENDER, [RCPT])
        if check("delivery-accepted-" + key, r.accepted and r.queue_id, "SMTP: %r" % (r,)):
            sent[key] = raw
    if not sent:
        return
    try:
        paths = pf.wait_for_delivery(len(sent), timeout=60)
    except HarnessError as e:
        fail("delivery-arrived", str(e))
        return
    # Give a duplicate time to show up, then count exactly.
    time.sleep(1)
    paths = pf.delivered()
    check("delivery-count", len(paths) == len(sent),
          "%d messages in the Maildir, %d sent" % (len(paths), len(sent)))
    got = {}
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        for key in sent:
            if b"Message-ID: <%s@example.co.jp>" % key.encode() in data:
                got.setdefault(key, []).append((p, data))
    for key, raw in sent.items():
        found = got.get(key, [])
        if not check("delivery-once-" + key, len(found) == 1,
                     "%d copies in the Maildir" % len(found)):
            continue
        path, data = found[0]
        want_head, want_body = split(raw.replace(b"\r\n", b"\n"))
        head, body = split(data)
        check("delivery-body-" + key, body == want_body,
              "body differs: %d bytes delivered, %d sent; first difference at byte %d" %
              (len(body), len(want_body),
               next((i for i, (a, b) in enumerate(zip(body, want_body)) if a != b),
                    min(len(body), len(want_body)))))
        check("delivery-headers-" + key, head.endswith(want_head) and
              head[:-len(want_head)].startswith(b"Return-Path: <%s>\n" % SENDER.encode()),
              "the header block is not Postfix's trace headers + the sent ones:\n%r" % head[:2000])
        st = os.stat(path)
        check("delivery-owner-" + key, st.st_uid != 0, "delivered file owned by root")
    log = pf.maillog()
    check("delivery-logged", log.count("status=sent (delivered to maildir)") == len(sent),
          "maillog:\n%s" % log[-3000:])


def test_no_milter(repo):
    # A socket bound but not listening: connections to it are refused, and no
    # other process can take the port while the test runs.
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hole.bind(("127.0.0.1", 0))
    milter = "inet:127.0.0.1:%d" % hole.getsockname()[1]
    try:
        with PrivatePostfix(repo, milter=milter) as pf:
            raw = compose("no-milter", "ミルター停止中", "届いてはいけない本文\n")
            r = pf.send(raw, SENDER, [RCPT])
            check("no-milter-451", r.code == 451 and "4.7.1" in r.text and not r.accepted,
                  "SMTP: %r" % (r,))
            # qmgr delivers within milliseconds; 3 s is ample for a delivery
            # that should not happen.
            time.sleep(3)
            check("no-milter-not-delivered", pf.delivered() == [],
                  "delivered: %r" % pf.delivered())
            tmp = os.listdir(os.path.join(pf.maildir, "tmp"))
            check("no-milter-maildir-tmp-empty", tmp == [], "Maildir tmp/: %r" % tmp)
            try:
                q = pf.queue()
                check("no-milter-not-queued", q == [], "postqueue -j: %r" % q)
            except HarnessError as e:
                fail("no-milter-postqueue", str(e))
            check("no-milter-queue-dirs-empty", pf.queue_files() == [],
                  "queue files: %r" % pf.queue_files())
            log = pf.maillog()
            check("no-milter-logged",
                  "connect to Milter service %s: Connection refused" % milter in log and
                  "milter-reject: MAIL from" in log and "451 4.7.1" in log,
                  "maillog:\n%s" % log[-3000:])
            test_snippet(pf)
            check_stop("no-milter", pf)
    finally:
        hole.close()


MILTER_SETTINGS = ("milter_default_action", "milter_protocol", "milter_connect_timeout",
                   "milter_command_timeout", "milter_content_timeout")


def postconf(confdir, args):
    r = subprocess.run([postfix_bin("postconf"), "-c", confdir] + args, capture_output=True,
                       timeout=60)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def test_snippet(pf):
    """The snippet as the only content of a main.cf, read by postconf."""
    snippet = os.path.join(pf.repo, "etc", "postfix", "main.cf.sekisho")
    d = tempfile.mkdtemp(prefix="sekisho-snippet-")
    try:
        with open(os.path.join(d, "main.cf"), "w", encoding="utf-8") as out, \
                open(snippet, encoding="utf-8") as f:
            out.write("compatibility_level = 3.6\n" + f.read())
        open(os.path.join(d, "master.cf"), "w").close()
        rc, text, err = postconf(d, ["-n"])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if not check("snippet-postconf", rc == 0 and err == "", "postconf exit %d: %s" % (rc, err)):
        return
    got = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)
    check("snippet-tempfail", got.get("milter_default_action") == "tempfail" and
          got.get("milter_protocol") == "6", "snippet settings: %r" % got)
    check("snippet-milters", got.get("smtpd_milters", "").startswith("inet:127.0.0.1:") and
          got.get("non_smtpd_milters") == "$smtpd_milters", "snippet settings: %r" % got)
    rc, text, err = postconf(pf.conf, ["-h"] + list(MILTER_SETTINGS))
    private = text.splitlines()
    check("snippet-same-as-private", rc == 0 and
          private == [got.get(k) for k in MILTER_SETTINGS],
          "private instance %r (%s), snippet %r" %
          (private, err, [got.get(k) for k in MILTER_SETTINGS]))
    rc, text, err = postconf(pf.conf, ["-h", "smtpd_milters", "non_smtpd_milters"])
    check("private-milters", rc == 0 and text.split() == [pf.milter, pf.milter],
          "private instance: %r %s" % (text, err))


def check_stop(name, pf):
    """Stops pf and checks nothing of it is left."""
    port = pf.port
    check(name + "-running-before-stop", pf.status() == 0 and pf.processes(),
          "status %d, processes %r" % (pf.status(), pf.processes()))
    try:
        r = pf.stop()
    except HarnessError as e:
        fail(name + "-stop", str(e))
        return
    check(name + "-stop-said", r is not None and b"stopped" in r.stdout, "stop: %r" % (r,))
    check(name + "-status-after-stop", pf.status() == 3, "status %d" % pf.status())
    left = pf.processes()
    check(name + "-no-process-left", left == [], "left: %r" % left)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        code = s.connect_ex(("127.0.0.1", port))
    check(name + "-port-closed", code != 0, "127.0.0.1:%d still accepts connections" % port)


def main():
    if len(sys.argv) != 2:
        print("usage: postfix_test.py REPO_ROOT", file=sys.stderr)
        return 2
    why = skip_reason()
    if why:
        print("SKIP: %s" % why)
        return 77
    repo = sys.argv[1]
    try:
        with PrivatePostfix(repo) as pf:
            test_delivery(pf)
            check_stop("delivery", pf)
        test_no_milter(repo)
    except HarnessError as e:
        fail("harness", str(e))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
