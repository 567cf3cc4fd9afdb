#!/usr/bin/python3
"""The reference pipeline: the same job built from existing tools.

    reference.py -q QDIR -o OUTDIR FILE...

For each mail: Python's email package parses it (policy=default); text/plain
and text/html bodies are decoded by Python's codecs, HTML goes through
html2text (Debian's python3-html2text); every other part is removed and listed
with its size, SHA-256 and libmagic type (python3-magic); the original is
stored like sekisho stores it (appended with a one-line header to a segment
file, one fdatasync per group of 64 mails or 4 MB, the new file's directory
fsynced once, and a row with the segment and offset in SQLite with WAL and
synchronous=FULL, one commit per group), and only then the text/plain;
charset=utf-8 result is written. It is a fair, straightforward implementation, not a strawman.
"""
import argparse
import hashlib
import os
import sqlite3
import sys
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import html2text
import magic

BATCH = 64
BATCH_BYTES = 4 << 20


def sanitize(raw, mg):
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    texts, removed = [], []
    body = msg.get_body(preferencelist=("plain", "html"))
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part is body:
            content = part.get_content()
            if part.get_content_subtype() == "html":
                h = html2text.HTML2Text()
                h.body_width = 0
                content = h.handle(content)
            texts.append(content)
            continue
        if part.get_content_maintype() == "text" and part.get_filename() is None and \
                msg.get_content_type() == "multipart/alternative":
            continue  # the other alternative
        data = part.get_payload(decode=True) or b""
        removed.append((part.get_filename() or "", part.get_content_type(),
                        mg.from_buffer(data[:1 << 20]), len(data), hashlib.sha256(data).hexdigest()))
    notice = "【メール無害化】\n" + "".join("%s %s %s %d %s\n" % r for r in removed)
    out = EmailMessage()
    for h in ("From", "To", "Cc", "Date", "Subject", "Message-ID"):
        if msg[h] is not None:
            out[h] = str(msg[h])
    out.set_content(notice + "\n".join(texts), charset="utf-8")
    return out.as_bytes(), removed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-q", required=True)
    ap.add_argument("-o", required=True)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    odir = os.path.join(a.q, "originals")
    os.makedirs(odir, exist_ok=True)
    os.makedirs(a.o, exist_ok=True)
    db = sqlite3.connect(os.path.join(a.q, "index.sqlite"))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS m (id TEXT PRIMARY KEY, size INT, sha256 TEXT,"
               " path TEXT, offset INT, parts TEXT)")
    mg = magic.Magic(mime=True)
    seg_name = "%d-%s.seg" % (time.time_ns(), os.urandom(8).hex())
    seg = os.open(os.path.join(odir, seg_name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    dfd = os.open(odir, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
    end = 0
    start = 0
    while start < len(a.files):
        group, size = [], 0
        while start < len(a.files) and len(group) < BATCH and size < BATCH_BYTES:
            group.append(a.files[start])
            size += os.path.getsize(a.files[start])
            start += 1
        pending = []
        for path in group:
            raw = open(path, "rb").read()
            out, removed = sanitize(raw, mg)
            qid = "%d-%s" % (time.time_ns(), os.urandom(8).hex())
            digest = hashlib.sha256(raw).hexdigest()
            header = ("SEKISHO-QREC1 %s %d %s\n" % (qid, len(raw), digest)).encode()
            os.write(seg, header + raw + b"\n")
            db.execute("INSERT INTO m VALUES (?,?,?,?,?,?)",
                       (qid, len(raw), digest, seg_name, end + len(header), repr(removed)))
            end += len(header) + len(raw) + 1
            pending.append((path, out))
        os.fdatasync(seg)
        db.commit()
        for path, out in pending:
            with open(os.path.join(a.o, os.path.basename(path)), "wb") as f:
                f.write(out)
    os.close(seg)
    db.close()


if __name__ == "__main__":
    sys.exit(main())
