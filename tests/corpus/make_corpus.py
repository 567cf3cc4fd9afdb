#!/usr/bin/python3
"""Composes the curated corpus in tests/corpus/composed/ with real mail software.

Every message is built by Python's email package (the standard library's
composer, as used by countless mail tools); Japanese bodies in the legacy
charsets Windows clients send are produced by nkf (--oc=CP50221, CP932,
CP51932), and encrypted archives by Info-ZIP's zip -P. Where a client's
non-standard habit is reproduced (Outlook's RFC 2047 words inside a quoted
filename, a Shift_JIS label on CP932 bytes), the comment says which client does
it. The expected results are hand-written next to each message in
<name>.expect.json and were not produced by sekisho.

Run it again only to change the corpus; its outputs are committed so that the
tests do not depend on nkf/zip versions:  tests/corpus/make_corpus.py
"""
import base64
import io
import os
import subprocess
import tempfile
import zipfile
from email.message import EmailMessage
from email import policy

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "composed")

JP_TEXT = ("お世話になっております。株式会社サンプルの髙橋です。\n"
           "①見積書の件、②納期の件についてご連絡いたします。\n"
           "㈱山﨑工務店様の分は№123でございます。～－∥￢\n"
           "よろしくお願いいたします。\n")


def nkf(text, oc):
    return subprocess.run(["nkf", "-W", "--oc=" + oc], input=text.encode("utf-8"),
                          capture_output=True, check=True).stdout


def write(name, msg_bytes):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".eml"), "wb") as f:
        f.write(msg_bytes)


def b_words(raw, charset, chunk):
    """RFC 2047 B words over raw bytes split every `chunk` bytes, as some
    clients do, even in the middle of a character."""
    words = []
    for i in range(0, len(raw), chunk):
        words.append("=?%s?B?%s?=" % (charset, base64.b64encode(raw[i:i + chunk]).decode()))
    return "\r\n ".join(words)


def raw_message(headers, body_bytes):
    out = b""
    for k, v in headers:
        out += ("%s: %s\r\n" % (k, v)).encode("ascii")
    return out + b"\r\n" + body_bytes


def cp50221_outlook():
    # Outlook: ISO-2022-JP label, CP50221 bytes (NEC row 13 + IBM extensions),
    # subject as B words split mid-character.
    body = nkf(JP_TEXT, "CP50221")
    subj = nkf("【至急】①見積書㈱髙橋より", "CP50221")
    hdrs = [("From", "=?ISO-2022-JP?B?" + base64.b64encode(nkf("髙橋 一郎", "CP50221")).decode()
             + "?= <takahashi@example.co.jp>"),
            ("To", "soumu@town.example.lg.jp"),
            ("Subject", b_words(subj, "ISO-2022-JP", 7)),
            ("Date", "Mon, 23 Nov 2026 09:00:00 +0900"),
            ("Message-ID", "<cp50221-outlook@example.co.jp>"),
            ("MIME-Version", "1.0"),
            ("Content-Type", 'text/plain; charset="iso-2022-jp"'),
            ("Content-Transfer-Encoding", "7bit")]
    write("jp-cp50221-outlook", raw_message(hdrs, body.replace(b"\n", b"\r\n")))


def sjis_labelled_cp932():
    body = nkf(JP_TEXT, "CP932")
    hdrs = [("From", "sato@example.com"), ("To", "soumu@town.example.lg.jp"),
            ("Subject", "=?Shift_JIS?B?" + base64.b64encode(nkf("御見積～－∥", "CP932")).decode() + "?="),
            ("Date", "Mon, 23 Nov 2026 09:01:00 +0900"),
            ("Message-ID", "<sjis-cp932@example.com>"),
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=Shift_JIS"),
            ("Content-Transfer-Encoding", "base64")]
    write("jp-sjis-labelled-cp932",
          raw_message(hdrs, base64.encodebytes(body).replace(b"\n", b"\r\n")))


def eucjp():
    body = nkf(JP_TEXT, "CP51932")
    hdrs = [("From", "suzuki@example.net"), ("To", "soumu@town.example.lg.jp"),
            ("Subject", "=?EUC-JP?Q?" + "".join("=%02X" % c for c in nkf("会議のご案内", "CP51932")) + "?="),
            ("Date", "Mon, 23 Nov 2026 09:02:00 +0900"),
            ("Message-ID", "<eucjp@example.net>"),
            ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=EUC-JP"),
            ("Content-Transfer-Encoding", "8bit")]
    write("jp-eucjp", raw_message(hdrs, body.replace(b"\n", b"\r\n")))


def unlabelled_cp932():
    # No charset parameter at all, 8-bit CP932 (old Japanese mailers).
    body = nkf(JP_TEXT * 2, "CP932")
    hdrs = [("From", "old-mailer@example.jp"), ("To", "soumu@town.example.lg.jp"),
            ("Subject", "no charset"), ("Date", "Mon, 23 Nov 2026 09:03:00 +0900"),
            ("Message-ID", "<nolabel@example.jp>"), ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain"), ("Content-Transfer-Encoding", "8bit")]
    write("jp-unlabelled-cp932", raw_message(hdrs, body.replace(b"\n", b"\r\n")))


def html_alternative():
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "Bank Notice <notice@bank-example.com>"
    m["To"] = "soumu@town.example.lg.jp"
    m["Subject"] = "お知らせ: アカウントの確認"
    m["Date"] = "Mon, 23 Nov 2026 09:04:00 +0900"
    m["Message-ID"] = "<html-alt@bank-example.com>"
    m.set_content("テキスト版の本文です。\nhttps://bank.example.jp/login\n")
    m.add_alternative("""<html><head><style>p{color:red}</style><script>alert(1)</script></head>
<body><h1>重要なお知らせ</h1><p>以下のリンクから<b>ログイン</b>してください。</p>
<p><a href="https://evil.example.net/phish?id=1">https://www.bank.example.jp/login</a></p>
<ul><li>項目一</li><li>項目二</li></ul>
<table><tr><td>口座</td><td>普通</td></tr><tr><td>期限</td><td>11月30日</td></tr></table>
<img src="cid:logo" alt="銀行ロゴ"></body></html>""", subtype="html")
    write("html-alternative-phish", m.as_bytes())


def html_only_prefer():
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "newsletter@example.org"
    m["To"] = "soumu@town.example.lg.jp"
    m["Subject"] = "Newsletter"
    m["Date"] = "Mon, 23 Nov 2026 09:05:00 +0900"
    m["Message-ID"] = "<html-only@example.org>"
    m.set_content("""<html><body><p>Dear reader,</p><p>See <a href="http://news.example.org/a">our article</a>.</p>
<form action="http://evil.example/"><input name=pw value="secret-form-value"></form>
<iframe src="http://evil.example/frame">iframe-text</iframe></body></html>""", subtype="html")
    write("html-only", m.as_bytes())


def minimal_pe():
    """A minimal PE32 image (DOS header, stub, COFF and optional header)."""
    import struct
    mz = bytearray(64)
    mz[0:2] = b"MZ"
    struct.pack_into("<H", mz, 2, 0x90)
    struct.pack_into("<H", mz, 4, 3)
    struct.pack_into("<H", mz, 8, 4)
    struct.pack_into("<H", mz, 0x18, 0x40)
    struct.pack_into("<I", mz, 0x3C, 0x80)
    stub = (bytes(mz) + b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21"
            b"This program cannot be run in DOS mode.\r\r\n$").ljust(0x80, b"\0")
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0, 0x102)
    return stub + coff + struct.pack("<H", 0x10B).ljust(0xE0, b"\0") + b"\0" * 64


def attachments_pdf_exe():
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "billing@example.com"
    m["To"] = "soumu@town.example.lg.jp"
    m["Subject"] = "請求書の送付"
    m["Date"] = "Mon, 23 Nov 2026 09:06:00 +0900"
    m["Message-ID"] = "<invoice@example.com>"
    m.set_content("請求書を添付します。\n")
    pe = minimal_pe()
    m.add_attachment(pe, maintype="application", subtype="pdf", filename="請求書.pdf.exe")
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    m.add_attachment(pdf, maintype="application", subtype="pdf", filename="見積書.pdf")
    write("attach-pdf-exe", m.as_bytes())


def ppap_zip():
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "名簿.xlsx"), "wb") as f:
            f.write(b"PK\x03\x04 not really an xlsx, but the archive is encrypted")
        subprocess.run(["zip", "-q", "-P", "password123", "-j", os.path.join(d, "a.zip"),
                        os.path.join(d, "名簿.xlsx")], check=True)
        z = open(os.path.join(d, "a.zip"), "rb").read()
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "partner@example.co.jp"
    m["To"] = "soumu@town.example.lg.jp"
    m["Subject"] = "資料送付（パスワードは別送します）"
    m["Date"] = "Mon, 23 Nov 2026 09:07:00 +0900"
    m["Message-ID"] = "<ppap@example.co.jp>"
    m.set_content("資料をお送りします。パスワードは別メールでお送りします。\n")
    m.add_attachment(z, maintype="application", subtype="zip", filename="送付資料_20261123.zip")
    write("attach-ppap-zip", m.as_bytes())


def macro_xlsm():
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
        z.writestr("xl/workbook.xml", "<workbook/>")
        z.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0" + b"\x00" * 64)
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "someone@example.com"
    m["To"] = "soumu@town.example.lg.jp"
    m["Subject"] = "集計表"
    m["Date"] = "Mon, 23 Nov 2026 09:08:00 +0900"
    m["Message-ID"] = "<xlsm@example.com>"
    m.set_content("集計表です。マクロを有効にしてください。\n")
    # Declared as a plain xlsx to hide the macro.
    m.add_attachment(bio.getvalue(), maintype="application",
                     subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                     filename="集計表.xlsx")
    write("attach-macro-xlsx", m.as_bytes())


def outlook_quoted_rfc2047_filename():
    # Outlook and Becky! put RFC 2047 words inside quoted filename/name
    # parameters instead of RFC 2231 (non-standard, very common in Japan).
    att = b"%PDF-1.4\n%%EOF\n"
    fname = "=?ISO-2022-JP?B?" + base64.b64encode(nkf("議事録①.pdf", "CP50221")).decode() + "?="
    text = nkf("議事録を添付します。\n", "CP50221")
    parts = (b"--BOUNDARY\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
             b"Content-Transfer-Encoding: 7bit\r\n\r\n" + text.replace(b"\n", b"\r\n") +
             b"\r\n--BOUNDARY\r\nContent-Type: application/pdf;\r\n\tname=\"" + fname.encode() +
             b"\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n\tfilename=\"" +
             fname.encode() + b"\"\r\n\r\n" + base64.encodebytes(att).replace(b"\n", b"\r\n") +
             b"--BOUNDARY--\r\n")
    hdrs = [("From", "outlook-user@example.co.jp"), ("To", "soumu@town.example.lg.jp"),
            ("Subject", "=?ISO-2022-JP?B?" + base64.b64encode(nkf("議事録", "CP50221")).decode() + "?="),
            ("Date", "Mon, 23 Nov 2026 09:09:00 +0900"),
            ("Message-ID", "<outlook-fn@example.co.jp>"), ("MIME-Version", "1.0"),
            ("Content-Type", 'multipart/mixed; boundary="BOUNDARY"')]
    write("jp-outlook-quoted-rfc2047-filename", raw_message(hdrs, parts))


def rfc2231_continuations():
    # Thunderbird-style RFC 2231 continuations with percent-encoded UTF-8.
    name = "令和8年度_予算要求資料_最終版_総務課提出用.docx".encode("utf-8")
    enc = "".join("%%%02X" % c for c in name)
    chunks = [enc[i:i + 60] for i in range(0, len(enc), 60)]
    params = "".join(";\r\n filename*%d*=%s%s" % (i, "UTF-8''" if i == 0 else "", c) for i, c in enumerate(chunks))
    body = (b"--b1\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + "予算資料を送ります。\r\n".encode() +
            b"--b1\r\nContent-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document\r\n"
            b"Content-Disposition: attachment" + params.encode() + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(b"PK\x03\x04" + b"\x00" * 26).replace(b"\n", b"\r\n") + b"--b1--\r\n")
    hdrs = [("From", "=?UTF-8?B?" + base64.b64encode("総務課 担当".encode()).decode() + "?= <soumu@other.example.lg.jp>"),
            ("To", "soumu@town.example.lg.jp"), ("Subject", "=?UTF-8?Q?=E4=BA=88=E7=AE=97=E8=B3=87=E6=96=99?="),
            ("Date", "Mon, 23 Nov 2026 09:10:00 +0900"), ("Message-ID", "<rfc2231@other.example.lg.jp>"),
            ("MIME-Version", "1.0"), ("Content-Type", 'multipart/mixed; boundary="b1"')]
    write("jp-rfc2231-continuations", raw_message(hdrs, body))


def forwarded():
    inner = EmailMessage(policy=policy.SMTP)
    inner["From"] = "元の差出人 <orig@example.com>"
    inner["To"] = "someone@example.co.jp"
    inner["Subject"] = "元のメール"
    inner["Date"] = "Sun, 22 Nov 2026 18:00:00 +0900"
    inner.set_content("転送元の本文です。\n")
    inner.add_attachment(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", maintype="image", subtype="gif",
                         filename="地図.gif")
    outer = EmailMessage(policy=policy.SMTP)
    outer["From"] = "forwarder@example.co.jp"
    outer["To"] = "soumu@town.example.lg.jp"
    outer["Subject"] = "Fwd: 元のメール"
    outer["Date"] = "Mon, 23 Nov 2026 09:11:00 +0900"
    outer["Message-ID"] = "<fwd@example.co.jp>"
    outer.set_content("以下のメールを転送します。\n")
    outer.add_attachment(inner)
    write("forwarded-rfc822", outer.as_bytes())


def related_inline_image_and_calendar():
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "events@example.com"
    m["To"] = "soumu@town.example.lg.jp"
    m["Subject"] = "会議招集"
    m["Date"] = "Mon, 23 Nov 2026 09:12:00 +0900"
    m["Message-ID"] = "<invite@example.com>"
    m.set_content("<html><body><p>会議のご案内です。</p><img src=\"cid:img1\" alt=\"地図\"></body></html>",
                  subtype="html")
    m.add_related(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, maintype="image", subtype="png", cid="<img1>")
    m.add_attachment("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:会議\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                     subtype="calendar", filename="invite.ics")
    write("related-inline-image-calendar", m.as_bytes())


def iso2022_label_with_8bit_sjis():
    # Label says iso-2022-jp, bytes are Shift_JIS (misconfigured mailers).
    body = nkf(JP_TEXT, "CP932")
    hdrs = [("From", "misconfigured@example.jp"), ("To", "soumu@town.example.lg.jp"),
            ("Subject", "wrong label"), ("Date", "Mon, 23 Nov 2026 09:13:00 +0900"),
            ("Message-ID", "<wronglabel@example.jp>"), ("MIME-Version", "1.0"),
            ("Content-Type", "text/plain; charset=iso-2022-jp"), ("Content-Transfer-Encoding", "8bit")]
    write("jp-wrong-label-sjis", raw_message(hdrs, body.replace(b"\n", b"\r\n")))


def spoofed_internal_sender():
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "町長 <chou@town.example.lg.jp>"
    m["To"] = "soumu@town.example.lg.jp"
    m["Subject"] = "[外部] 至急振込をお願いします"
    m["Date"] = "Mon, 23 Nov 2026 09:14:00 +0900"
    m["Message-ID"] = "<spoof@attacker.example>"
    m.set_content("至急、以下の口座に振り込んでください。\n")
    write("spoofed-internal-sender", m.as_bytes())


def main():
    for fn in [cp50221_outlook, sjis_labelled_cp932, eucjp, unlabelled_cp932, html_alternative,
               html_only_prefer, attachments_pdf_exe, ppap_zip, macro_xlsm,
               outlook_quoted_rfc2047_filename, rfc2231_continuations, forwarded,
               related_inline_image_and_calendar, iso2022_label_with_8bit_sjis,
               spoofed_internal_sender]:
        fn()
    print("wrote", len(os.listdir(OUT)), "files to", OUT)


if __name__ == "__main__":
    main()
