#!/usr/bin/python3
"""Composes test mails with NeoMutt in batch mode, at test time.

    compose_neomutt.py OUTDIR

Each mail is written by the real `neomutt -n -F MUTTRC -s SUBJECT -a FILE... --
RCPT < BODY`: no network and no MTA, because the generated muttrc points
$sendmail at a small script that keeps the message it is given on stdin. The
charsets, the RFC 2231 file names and the transfer encodings are NeoMutt's own
choices under each case's settings; this script only feeds it the text and the
files and records what was fed.

OUTDIR receives <case>.eml, the attached files (files-<case>/), and
manifest.json: for each mail the file, subject, sender's display name, body
text and attachments (name and path of the attached file) exactly as fed, the
substrings the composed message must contain to prove the case composed what
it claims (a charset label, RFC 2231 names), and the warnings the sanitized
copy must give per attachment.

Notes on NeoMutt 20220429 (Debian 12), which shaped the cases:
  - With send_charset="iso-2022-jp:utf-8" the body is ISO-2022-JP but headers
    come out as UTF-8 (NeoMutt picks the shortest encoding per header); a case
    with send_charset="iso-2022-jp" alone gives ISO-2022-JP headers as well.
  - rfc2047_parameters only affects decoding: file names are always written as
    RFC 2231, whatever it is set to (its manual says so). Both settings are
    used; RFC 2047 inside name= is covered by tests/corpus/composed/.
  - Batch mode refuses a zero-byte body ("Refusing to send an empty email");
    the closest empty body is the single newline its own hint suggests.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_corpus import minimal_pe  # noqa: E402 - the corpus' own PE builder

RCPT = "zaisei@town.example.lg.jp"
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffdb004300") + bytes(64) + b"\xff\xd9"
CSV = "課,要求額（千円）\n総務課,12345\n企画課,6789\n".encode("utf-8")

CAPTURE = """#!/bin/sh
# $sendmail for NeoMutt in the tests: keeps the message (stdin) in $1 and the
# recipients NeoMutt passed in $1.rcpt, and sends nothing.
set -eu
out=$1
shift
printf '%s\\n' "$@" >"$out.rcpt"
cat >"$out"
"""


def make_zip(work, members, password=None):
    """A zip made by Info-ZIP's zip (members: {name: bytes}); returns its bytes."""
    d = tempfile.mkdtemp(dir=work)
    for name, data in members.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    args = ["zip", "-q", "-j", "-X"]
    if password:
        args += ["-P", password]
    subprocess.run(args + [os.path.join(d, "a.zip")] + [os.path.join(d, n) for n in members],
                   check=True, timeout=60)
    with open(os.path.join(d, "a.zip"), "rb") as f:
        data = f.read()
    shutil.rmtree(d)
    return data


def cases(work):
    zip_plain = make_zip(work, {"要求額一覧.csv": CSV})
    zip_ppap = make_zip(work, {"現場名簿.csv": CSV}, password="himitsu2026")
    return [
        {
            # ISO-2022-JP everywhere: body, Subject, From's name and the RFC 2231
            # file names.
            "name": "neomutt-jis",
            "set": {"send_charset": "iso-2022-jp", "rfc2047_parameters": "yes"},
            "realname": "総務課 山田太郎",
            "subject": "令和７年度 予算要求資料の送付について",
            "body": "財政課 御中\n\nお疲れさまです。総務課の山田です。\n"
                    "令和７年度の予算要求資料を送付いたします。\n締切は１２月５日（金）です。\n\n"
                    "よろしくお願いいたします。\n",
            "attach": [("予算要求書.pdf", PDF), ("要求額一覧.zip", zip_plain)],
            "raw": ["charset=iso-2022-jp", "=?iso-2022-jp?b?", "filename*=iso-2022-jp''"],
            "warnings": {},
        },
        {
            # The usual Japanese setting: ISO-2022-JP when it can, else UTF-8. A
            # file name long enough for RFC 2231 continuations.
            "name": "neomutt-jis-or-utf8",
            "set": {"send_charset": "iso-2022-jp:utf-8", "rfc2047_parameters": "no"},
            "realname": "議会事務局",
            "subject": "会議録（第３回）の確認依頼",
            "body": "各位\n\n第３回総務常任委員会の会議録案を添付します。\n"
                    "修正がありましたら、今週中にご連絡ください。\n",
            "attach": [("令和７年度_第３回_総務常任委員会_会議録案_最終版_差し替え.pdf", PDF)],
            "raw": ["charset=iso-2022-jp", "filename*0*="],
            "warnings": {},
        },
        {
            # Characters outside JIS X 0208 (①, 髙, 﨑, ㈱) make NeoMutt fall back to
            # UTF-8; without 8-bit transport the body is transfer-encoded. The
            # attachment is a Windows program named as a PDF.
            "name": "neomutt-utf8-disguised-exe",
            "set": {"send_charset": "iso-2022-jp:utf-8", "rfc2047_parameters": "no",
                    "allow_8bit": "no"},
            "realname": "山﨑 髙子",
            "subject": "①請求書の送付（㈱山﨑工務店）",
            "body": "髙橋様\n\n①請求書、②納品書をお送りします。\n"
                    "㈱山﨑工務店 経理部 山﨑\n",
            "attach": [("請求書.pdf", minimal_pe())],
            "raw": ["charset=utf-8", "content-transfer-encoding: quoted-printable",
                    "filename*=utf-8''"],
            "warnings": {"請求書.pdf": ["実行ファイル", "拡張子と実際の形式が一致しません"]},
        },
        {
            # Shift_JIS (half-width katakana included) with four attachments, one
            # of them a password zip (PPAP).
            "name": "neomutt-sjis-multi",
            "set": {"send_charset": "shift_jis", "rfc2047_parameters": "yes"},
            "realname": "ｼｽﾃﾑ管理 ｻﾄｳ",
            "subject": "現場写真と名簿（全４件）ﾃｽﾄ",
            "body": "ﾃｽﾄ送信です。\n現場写真２枚、名簿、説明を添付します。\n"
                    "名簿のパスワードは別途お送りします。\n",
            "attach": [("現場写真１.jpg", JPEG), ("現場写真２.png", PNG),
                       ("現場名簿.zip", zip_ppap),
                       ("説明.txt", "説明書きです。\n".encode("utf-8"))],
            "raw": ["charset=shift_jis", "=?shift_jis?b?", "filename*=shift_jis''"],
            "warnings": {"現場名簿.zip": ["暗号化されています"]},
        },
        {
            # No text at all, one attachment (UTF-8 settings).
            "name": "neomutt-empty-body",
            "set": {"send_charset": "utf-8", "rfc2047_parameters": "no"},
            "realname": "財務課",
            "subject": "（本文なし）議事録",
            "body": "\n",
            "attach": [("議事録.txt", "議事録本文\n".encode("utf-8"))],
            "raw": ["filename*=utf-8''", "=?utf-8?b?"],
            "warnings": {},
        },
    ]


def compose(out, neomutt, case, capture, home):
    files = os.path.join(out, "files-" + case["name"])
    os.makedirs(files)
    for fname, data in case["attach"]:
        with open(os.path.join(files, fname), "wb") as f:
            f.write(data)
    eml = os.path.join(out, case["name"] + ".eml")
    muttrc = os.path.join(out, case["name"] + ".muttrc")
    settings = {
        "sendmail": "%s %s" % (capture, eml),
        "from": "soumu@example.jp",
        "realname": case["realname"],
        "use_from": "yes",
        "charset": "utf-8",
        "record": "",
        "folder": home,
        "spoolfile": "",
        "header_cache": "",
        "message_cachedir": "",
    }
    settings.update(case["set"])
    with open(muttrc, "w", encoding="utf-8") as f:
        f.write("# generated by tests/corpus/compose_neomutt.py\n")
        for k, v in settings.items():
            if v in ("yes", "no"):
                f.write("set %s=%s\n" % (k, v))
            else:
                f.write('set %s="%s"\n' % (k, v.replace("\\", "\\\\").replace('"', '\\"')))
    body = os.path.join(out, case["name"] + ".body.txt")
    with open(body, "w", encoding="utf-8") as f:
        f.write(case["body"])
    args = [neomutt, "-n", "-F", muttrc, "-s", case["subject"]]
    if case["attach"]:
        args += ["-a"] + [fname for fname, _ in case["attach"]]
    args += ["--", RCPT]
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "TZ": "Asia/Tokyo", "TERM": "dumb"}
    with open(body, "rb") as stdin:
        r = subprocess.run(args, stdin=stdin, capture_output=True, cwd=files, env=env, timeout=60)
    if r.returncode != 0 or not os.path.exists(eml):
        raise RuntimeError("neomutt failed on %s (exit %d): %s" % (
            case["name"], r.returncode, (r.stdout + r.stderr).decode(errors="replace")))
    with open(eml + ".rcpt", encoding="utf-8") as f:
        rcpts = f.read().split()
    if RCPT not in rcpts:
        raise RuntimeError("%s: neomutt passed recipients %r, not %s" % (case["name"], rcpts, RCPT))
    return {
        "file": os.path.basename(eml),
        "subject": case["subject"],
        "realname": case["realname"],
        "body": case["body"],
        "attachments": [{"name": n, "path": os.path.join(files, n)} for n, _ in case["attach"]],
        "raw": case["raw"],
        "warnings": case["warnings"],
    }


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 64
    out = os.path.abspath(sys.argv[1])
    neomutt = shutil.which("neomutt")
    if neomutt is None:
        print("compose_neomutt.py: neomutt is not installed (scripts/deps.sh check installs it)")
        return 69
    os.makedirs(out, exist_ok=True)
    home = os.path.join(out, "home")
    os.makedirs(home)
    capture = os.path.join(out, "capture.sh")
    with open(capture, "w") as f:
        f.write(CAPTURE)
    os.chmod(capture, 0o755)
    manifest = [compose(out, neomutt, c, capture, home) for c in cases(out)]
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
