"""A private Postfix instance for end-to-end tests (Python 3 standard library only).

    from postfix_harness import PrivatePostfix, skip_reason

    with PrivatePostfix(repo_root, milter="inet:127.0.0.1:8899") as pf:
        r = pf.send(message_bytes, "a@example.com", ["b@example.jp"])
        paths = pf.wait_for_delivery(1, timeout=30)
        print(pf.maillog())

The instance is started by scripts/postfix-private.sh in a fresh temporary
directory (configuration, queue, log and Maildir all inside it) on a free port
on 127.0.0.1, and is always stopped on leaving the `with` block: on success,
on a failed assertion, on KeyboardInterrupt, and on SIGTERM (which meson sends
when a test times out; the harness turns it into SystemExit while an instance
runs). After stopping, the harness checks that no process of the instance is
left, and then removes the temporary directory (keep=True keeps it).

Needs root and an installed postfix; skip_reason() says why not, or None.
"""
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

SCRIPT = os.path.join("scripts", "postfix-private.sh")
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")


def postfix_bin(name):
    """Path of a Postfix command (postfix, postqueue, ...) or None."""
    for d in ("/usr/sbin", "/usr/bin", "/sbin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def skip_reason():
    """Why an instance cannot be started here, or None."""
    if os.geteuid() != 0:
        return "not running as root (Postfix's master must start as root)"
    if postfix_bin("postfix") is None:
        return "postfix is not installed (scripts/deps.sh build installs it)"
    return None


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on at this moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HarnessError(Exception):
    pass


class SendResult:
    """The outcome of one SMTP transaction: the first reply that was not
    2xx/3xx (stage, code, text), or the final reply to DATA when accepted."""

    def __init__(self, stage, code, text):
        self.stage, self.code, self.text = stage, code, text

    @property
    def accepted(self):
        return self.stage == "data" and self.code == 250

    @property
    def queue_id(self):
        # "2.0.0 Ok: queued as 4Xyz..."
        marker = "queued as "
        i = self.text.find(marker)
        return self.text[i + len(marker):].split()[0] if self.accepted and i >= 0 else None

    def __repr__(self):
        return "SendResult(%s, %d, %r)" % (self.stage, self.code, self.text)


class PrivatePostfix:
    """One private instance. Attributes once started: base (the instance's
    directory), conf (its config directory), spool, maildir, port, log."""

    def __init__(self, repo_root, milter=None, keep=False, start_timeout=60, relay=None):
        """relay (a port on 127.0.0.1): relay every mail there over SMTP
        instead of delivering it, as the internet side's sending MTA."""
        self.repo = os.path.abspath(repo_root)
        self.script = os.path.join(self.repo, SCRIPT)
        self.milter = milter
        self.relay = relay
        self.keep = keep
        self.start_timeout = start_timeout
        self.tmp = None
        self.port = None
        self.master = None
        self._old_sigterm = None

    # -- life cycle -------------------------------------------------------

    def __enter__(self):
        self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _run_script(self, command, extra=(), timeout=120):
        env = dict(os.environ)
        env.pop("MILTER", None)
        env.pop("MAIL_CONFIG", None)
        args = [self.script, "--base", self.base] + list(extra) + [command]
        return subprocess.run(args, env=env, capture_output=True, timeout=timeout)

    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="sekisho-postfix-")
        # virtual(8) delivers as an unprivileged user, which must reach the Maildir.
        os.chmod(self.tmp, 0o755)
        self.base = os.path.join(self.tmp, "postfix")
        self.conf = os.path.join(self.base, "etc")
        self.spool = os.path.join(self.base, "spool")
        self.log = os.path.join(self.base, "log", "maillog")
        self.maildir = os.path.join(self.tmp, "maildir")
        # A free port can be taken by someone else before master binds it:
        # try again on another port when the bind is what failed.
        for attempt in range(5):
            self.port = free_port()
            extra = ["--port", str(self.port), "--maildir", self.maildir]
            if self.milter:
                extra += ["--milter", self.milter]
            if self.relay:
                extra += ["--relay", str(self.relay)]
            r = self._run_script("start", extra, timeout=self.start_timeout)
            if r.returncode == 0:
                break
            log = self.maillog()
            if "Address already in use" in log and attempt < 4:
                continue
            raise HarnessError("%s start failed (exit %d):\n%s%s\nmaillog:\n%s" %
                               (SCRIPT, r.returncode, r.stdout.decode(errors="replace"),
                                r.stderr.decode(errors="replace"), log[-4000:]))
        self.master = self.master_pid()
        if self.master is None:
            raise HarnessError("started, but %s/pid/master.pid names no process" % self.spool)

    def stop(self):
        """Stops the instance (the script waits until it is gone); returns the
        script's CompletedProcess. Raises HarnessError if anything is left."""
        if self.tmp is None or not os.path.isdir(self.base):
            return None
        r = self._run_script("stop")
        if r.returncode != 0:
            raise HarnessError("%s stop failed (exit %d): %s" %
                               (SCRIPT, r.returncode, r.stderr.decode(errors="replace")))
        left = self.processes()
        if left:
            raise HarnessError("processes of the instance left after stop: %r" % left)
        return r

    def close(self):
        """Always stops the instance and removes the temporary directory
        (unless keep=True); safe to call more than once."""
        try:
            if self.tmp is not None:
                self.stop()
        finally:
            if self.tmp is not None and not self.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
            if self.tmp is not None and self.keep:
                print("postfix harness: kept %s" % self.tmp)
            self.tmp = None
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None

    def status(self):
        """The script's exit status for `status`: 0 running, 3 not."""
        return self._run_script("status").returncode

    def flush(self):
        r = self._run_script("flush")
        if r.returncode != 0:
            raise HarnessError("flush failed: %s" % r.stderr.decode(errors="replace"))

    # -- processes --------------------------------------------------------

    def master_pid(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if os.path.exists("/proc/%d" % pid) else None

    def processes(self):
        """Every process that belongs to this instance: its environment names
        the instance's config directory (Postfix passes MAIL_CONFIG to every
        daemon), its command line names the instance's directory (pgrep -f),
        or it is in the master's process group."""
        found = set()
        want = b"MAIL_CONFIG=" + os.fsencode(self.conf)
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % d, "rb") as f:
                    if want in f.read().split(b"\0"):
                        found.add(int(d))
            except OSError:
                continue
        patterns = [["-f", "--", self.base]]
        if self.master is not None:
            patterns.append(["-g", str(self.master)])
        for pat in patterns:
            r = subprocess.run(["pgrep"] + pat, capture_output=True, timeout=30)
            if r.returncode not in (0, 1):
                raise HarnessError("pgrep %s failed: %s" % (pat, r.stderr.decode(errors="replace")))
            found.update(int(p) for p in r.stdout.split())
        found.discard(os.getpid())
        return sorted(found)

    # -- mail -------------------------------------------------------------

    def send(self, message, sender, recipients, timeout=60, source_address=None):
        """Sends message (bytes, CRLF line ends) in one SMTP transaction and
        returns a SendResult; never raises for an SMTP reply. source_address
        (e.g. ("127.0.0.2", 0)) picks the client's loopback address."""
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.example",
                          timeout=timeout, source_address=source_address) as s:
            code, text = s.ehlo()
            if code != 250:
                return SendResult("ehlo", code, text.decode(errors="replace"))
            opts = ["BODY=8BITMIME"] if any(b > 127 for b in message) else []
            code, text = s.mail(sender, opts)
            if code != 250:
                return SendResult("mail", code, text.decode(errors="replace"))
            for rcpt in recipients:
                code, text = s.rcpt(rcpt)
                if code not in (250, 251):
                    return SendResult("rcpt", code, text.decode(errors="replace"))
            try:
                code, text = s.data(message)
            except smtplib.SMTPDataError as e:
                code, text = e.smtp_code, e.smtp_error
            return SendResult("data", code, text.decode(errors="replace"))

    def delivered(self):
        """Paths of the delivered messages (Maildir new/ and cur/), sorted."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir, sub)
            if os.path.isdir(d):
                out += [os.path.join(d, n) for n in os.listdir(d) if not n.startswith(".")]
        return sorted(out)

    def wait_for_delivery(self, count, timeout=30):
        """Waits until at least count messages are in the Maildir; returns their
        paths. Raises HarnessError with the log's tail on timeout."""
        end = time.monotonic() + timeout
        while True:
            got = self.delivered()
            if len(got) >= count:
                return got
            if time.monotonic() > end:
                raise HarnessError("%d of %d messages delivered after %ss; maillog:\n%s" %
                                   (len(got), count, timeout, self.maillog()[-4000:]))
            time.sleep(0.05)

    def maillog(self):
        """The instance's maillog as text ('' before it exists)."""
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def queue(self):
        """The queue as `postqueue -j` reports it: one dict per message."""
        r = subprocess.run([postfix_bin("postqueue"), "-c", self.conf, "-j"],
                           capture_output=True, timeout=60)
        if r.returncode != 0:
            raise HarnessError("postqueue -c %s -j failed (exit %d): %s" %
                               (self.conf, r.returncode, r.stderr.decode(errors="replace")))
        return [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]

    def queue_files(self):
        """Every file in the queue directories, whatever state it is in."""
        out = []
        for q in QUEUES:
            for dirpath, _, names in os.walk(os.path.join(self.spool, q)):
                out += [os.path.join(dirpath, n) for n in names]
        return sorted(out)


def _sigterm_to_exit(signum, frame):
    raise SystemExit(128 + signum)
