#!/usr/bin/env python3
"""sekisho syslogd on loopback: util-linux logger over the unix socket, UDP and
TCP (octet counting and newline framing), raw sockets for malformed, oversized
and over-limit input (each drop counted in a syslog.dropped entry), SIGTERM
committing what was received, verify passing, and a load test: 100,000
messages from 8 concurrent TCP senders, every one present exactly once.

  syslogd_test.py SEKISHO          (LOAD_N=100000 to change the load)
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SEKISHO = sys.argv[1]
LOAD_N = int(os.environ.get("LOAD_N", "100000"))
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Receiver:
    def __init__(self, tmp, name, *extra):
        self.led = ["-l", os.path.join(tmp, name), "-k", os.path.join(tmp, name + ".key")]
        subprocess.run([SEKISHO, "ledger", "init"] + self.led, check=True, capture_output=True)
        self.port = free_port()
        self.sock = os.path.join(tmp, name + ".sock")
        self.p = subprocess.Popen([SEKISHO, "syslogd"] + self.led +
                                  ["--unix", self.sock, "--udp", "127.0.0.1:%d" % self.port,
                                   "--tcp", "127.0.0.1:%d" % self.port] + list(extra),
                                  stderr=subprocess.PIPE)
        self.p.stderr.readline()  # "listening"

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        err = self.p.stderr.read().decode()
        self.p.wait(120)
        self.p.stderr.close()
        return self.p.returncode, err

    def entries(self):
        out = subprocess.run([SEKISHO, "ledger", "cat"] + self.led, capture_output=True, check=True).stdout
        return [json.loads(x) for x in out.decode().splitlines()]

    def verify(self):
        p = subprocess.run([SEKISHO, "ledger", "verify"] + self.led, capture_output=True)
        return p.returncode, p.stdout.decode()


def logger(*args):
    subprocess.run(["logger"] + list(args), check=True, timeout=30)


def test_logger_and_limits(tmp):
    r = Receiver(tmp, "a", "--max-message", "2048", "--max-connections", "3", "--rate", "100")
    port = str(r.port)
    logger("--rfc5424", "--tcp", "--octet-count", "-n", "127.0.0.1", "-P", port, "-t", "sshd",
           "-i", "Accepted publickey for yamada from 10.20.1.2")
    logger("--rfc5424", "--tcp", "-n", "127.0.0.1", "-P", port, "-t", "dovecot", "imap-login: Login: user=<suzuki>")
    logger("--rfc3164", "--udp", "-n", "127.0.0.1", "-P", port, "-t", "postfix/smtpd", "-p", "mail.info",
           "connect from unknown[192.0.2.1]")
    logger("-u", r.sock, "--rfc3164", "-t", "local", "入退室 via unix")
    logger("--rfc5424", "--tcp", "--octet-count", "-n", "127.0.0.1", "-P", port, "--sd-id", "ex@32473",
           "--sd-param", 'user="tanaka"', "-t", "nxlog", "with structured data")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"not syslog at all \xff\xfe", ("127.0.0.1", r.port))         # raw, hex
    u.sendto(b"<13>1 - - - - - - " + b"x" * 2100, ("127.0.0.1", r.port))   # oversized
    u.sendto(b"<13>1 - - - - - - " + b"y" * 2020, ("127.0.0.1", r.port))   # fits 2048
    t = socket.create_connection(("127.0.0.1", r.port))
    after = b"<13>1 - - - - - - after"
    t.sendall(b"5000 " + b"z" * 5000 + b"%d %s" % (len(after), after))   # oversized frame, then one
    t.sendall(b"\n" + b"w" * 3000 + b"\n<14>Nov 23 10:00:00 h app: last\n")  # oversized line, then one
    t.close()
    # connections over the limit (3): hold 3, the 4th and 5th are refused
    held = [socket.create_connection(("127.0.0.1", r.port)) for _ in range(3)]
    time.sleep(0.3)
    extra = [socket.create_connection(("127.0.0.1", r.port)) for _ in range(2)]
    time.sleep(0.3)
    for s in held + extra:
        s.close()
    # over the rate: 100/s, burst 200, from one source
    for i in range(1000):
        u.sendto(b"<13>1 - - rate - - - %d" % i, ("127.0.0.1", r.port))
    time.sleep(1.5)
    rc, err = r.stop()
    check(rc == 0 and "stopped" in err, "clean stop: %d %s" % (rc, err))
    es = r.entries()
    sys_e = [e for e in es if e["type"] == "syslog"]
    msgs = [e["fields"].get("msg", "") for e in sys_e]
    by_app = {e["fields"].get("app_name"): e["fields"] for e in sys_e}
    check(by_app.get("sshd", {}).get("msg") == "Accepted publickey for yamada from 10.20.1.2"
          and by_app["sshd"]["format"] == "rfc5424" and by_app["sshd"]["transport"] == "tcp"
          and "procid" in by_app["sshd"], "logger rfc5424 octet-count: %r" % by_app.get("sshd"))
    check(by_app.get("dovecot", {}).get("msg") == "imap-login: Login: user=<suzuki>", "newline framing")
    pf = by_app.get("postfix/smtpd", {})
    check(pf.get("format") == "rfc3164" and pf.get("facility") == 2 and pf.get("severity") == 6
          and pf.get("transport") == "udp", "logger rfc3164 udp: %r" % pf)
    check(by_app.get("local", {}).get("transport") == "unix" and by_app["local"]["msg"] == "入退室 via unix",
          "unix socket: %r" % by_app.get("local"))
    check('ex@32473 user=\\"tanaka\\"' in json.dumps(by_app.get("nxlog", {}).get("structured_data", ""))
          or 'user="tanaka"' in by_app.get("nxlog", {}).get("structured_data", ""), "structured data")
    check(any(e["fields"].get("msg_hex", "").endswith("fffe") for e in sys_e), "raw bytes kept as hex")
    check(any(m == "y" * 2020 for m in msgs), "a 2048-byte message fits")
    check("after" in msgs and "last" in msgs, "frames after oversized ones are read")
    bad = [m[:20] for m in msgs if m[:4] in ("xxxx", "zzzz", "wwww")]
    check(not bad, "oversized dropped: %r" % bad)
    rate_n = sum(1 for e in sys_e if e["fields"].get("app_name") == "rate")
    drops = [e["fields"] for e in es if e["type"] == "syslog.dropped"]
    tot = {k: sum(d[k] for d in drops) for k in ["oversized", "over_rate", "connections_refused"]}
    check(tot["oversized"] == 3, "oversized counted: %r" % tot)
    check(tot["connections_refused"] == 2, "connections refused counted: %r" % tot)
    check(rate_n + tot["over_rate"] == 1000 and 150 <= rate_n <= 400,
          "rate: %d taken + %d counted" % (rate_n, tot["over_rate"]))
    rc, out = r.verify()
    check(rc == 0, "verify: " + out)


def test_load(tmp):
    r = Receiver(tmp, "load", "--rate", "0")
    per = LOAD_N // 8

    def sender(w):
        s = socket.create_connection(("127.0.0.1", r.port))
        batch = []
        for i in range(per):
            m = b"<134>1 2026-11-23T10:00:00Z lgwan-fs01 sshd %d - - w%d seq %d" % (w, w, i)
            batch.append(b"%d %s" % (len(m), m) if w % 2 else m + b"\n")
            if len(batch) == 500:
                s.sendall(b"".join(batch))
                batch = []
        s.sendall(b"".join(batch))
        s.close()

    t0 = time.perf_counter()
    th = [threading.Thread(target=sender, args=(w,)) for w in range(8)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    # every byte is sent; wait until the receiver has committed them all
    deadline = time.time() + 120
    while time.time() < deadline:
        out = subprocess.run([SEKISHO, "ledger", "tail", "-n", "1"] + r.led, capture_output=True).stdout
        if out and json.loads(out)["index"] >= per * 8 - 1:
            break
        time.sleep(0.2)
    dt = time.perf_counter() - t0
    rc, err = r.stop()
    check(rc == 0, "load stop: " + err)
    es = r.entries()
    seen = set()
    dup = 0
    for e in es:
        if e["type"] == "syslog":
            key = e["fields"]["msg"]
            dup += key in seen
            seen.add(key)
    want = {"w%d seq %d" % (w, i) for w in range(8) for i in range(per)}
    check(seen == want and dup == 0, "load: %d of %d present, %d twice" % (len(seen & want), len(want), dup))
    rc, out = r.verify()
    check(rc == 0, "load verify: " + out)
    print("load: %d messages from 8 TCP senders, all durable in %.2f s (%.0f/s, sender-bound)" % (
        len(want), dt, len(want) / dt))


def test_policy(tmp):
    """intake: gives the listeners and limits; a bad address is a policy error."""
    port = free_port()
    pol = os.path.join(tmp, "p.yaml")
    with open(pol, "w") as f:
        f.write("ledger:\n  dir: %s/pl\n  key_file: %s/pl.key\nintake:\n  udp: ''\n"
                "  tcp: 127.0.0.1:%d\n  max_message_size: 4096\n" % (tmp, tmp, port))
    subprocess.run([SEKISHO, "ledger", "init", "-p", pol], check=True, capture_output=True)
    p = subprocess.Popen([SEKISHO, "syslogd", "-p", pol], stderr=subprocess.PIPE)
    line = p.stderr.readline().decode()
    check(("tcp 127.0.0.1:%d" % port) in line and "udp" not in line, "listens as intake: says: " + line)
    t = socket.create_connection(("127.0.0.1", port))
    t.sendall(b"<13>1 - - pol - - - " + b"a" * 4000 + b"\n<13>1 - - pol - - - " + b"b" * 4100 + b"\n")
    t.close()
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    p.stderr.read()
    p.wait(60)
    p.stderr.close()
    out = subprocess.run([SEKISHO, "ledger", "cat", "-p", pol], capture_output=True).stdout.decode()
    es = [json.loads(x) for x in out.splitlines()]
    check(p.returncode == 0 and [e["type"] for e in es] == ["syslog", "syslog.dropped"]
          and es[1]["fields"]["oversized"] == 1, "max_message_size from intake: %r" % [e["type"] for e in es])
    with open(pol, "w") as f:
        f.write("intake:\n  tcp: localhost:601\n")
    q = subprocess.run([SEKISHO, "syslogd", "-p", pol], capture_output=True, timeout=30)
    check(q.returncode == 78 and b"localhost:601" in q.stderr, "bad intake.tcp: %d %s" % (q.returncode, q.stderr))
    with open(pol, "w") as f:
        f.write("intake:\n  max_message_size: 1024\n")
    q = subprocess.run([SEKISHO, "syslogd", "-p", pol], capture_output=True, timeout=30)
    check(q.returncode == 78 and b"intake.max_message_size" in q.stderr, "range: %s" % q.stderr)


def main():
    if shutil.which("logger") is None:
        print("logger (util-linux) not installed: skipped")
        return 77
    tmp = tempfile.mkdtemp(prefix="syslogd-test.")
    try:
        test_logger_and_limits(tmp)
        test_policy(tmp)
        test_load(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("syslogd: %s" % ("%d failures" % failures if failures else "OK"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
