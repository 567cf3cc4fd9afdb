#!/usr/bin/python3
"""Generates the benchmark mails with Python's email package (deterministic).

    gen.py OUTDIR

OUTDIR/a/: 2,000 business mails of 2-20 KB: multipart/alternative with a
           text and an HTML part (Outlook-like markup: styles, tables, links),
           in UTF-8 or ISO-2022-JP, Japanese and English.
OUTDIR/b/: 60 mails with 1-3 attachments of 50 KB-5 MB (PDF-, ZIP-, PNG- and
           XLSX-shaped content), base64 as clients send them.
"""
import os
import random
import sys
from email.message import EmailMessage
from email import policy

rng = random.Random(20261123)
PHRASES_JA = ["お世話になっております。", "先日の会議の件でご連絡いたします。", "添付の資料をご確認ください。",
              "ご不明な点がございましたらお問い合わせください。", "来週の打ち合わせは予定どおり行います。",
              "予算要求資料の提出期限は今月末です。", "住民説明会の会場を変更しました。", "①議事録 ②配布資料 ③出欠表",
              "引き続きよろしくお願いいたします。", "株式会社サンプル 営業部 髙橋"]
PHRASES_EN = ["Please find the details below.", "The meeting has been moved to Thursday.",
              "Let me know if you have any questions.", "Best regards,"]


def paragraph():
    return "".join(rng.choice(PHRASES_JA) for _ in range(rng.randint(2, 6))) + " " + rng.choice(PHRASES_EN)


def business_mail(i, size):
    paras = []
    while sum(len(p.encode()) for p in paras) * 3 < size:
        paras.append(paragraph())
    text = "\n\n".join(paras) + "\nhttps://www.example.lg.jp/info/%d\n" % i
    rows = "".join("<tr><td style='border:1px solid #ccc'>項目%d</td><td>%d円</td></tr>" % (k, rng.randint(100, 99999))
                   for k in range(rng.randint(3, 12)))
    html = ("<html><head><meta charset='utf-8'><style>p.MsoNormal{margin:0;font-family:'游ゴシック'}</style></head><body>"
            + "".join("<p class=MsoNormal>%s<o:p></o:p></p>" % p for p in paras)
            + "<table>%s</table><p><a href='https://www.example.lg.jp/info/%d'>詳細はこちら</a></p></body></html>" % (rows, i))
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "髙橋 一郎 <takahashi%d@example.co.jp>" % i
    m["To"] = "soumu@town.example.lg.jp"
    m["Subject"] = "【ご連絡】資料送付の件 No.%d" % i
    m["Date"] = "Mon, 23 Nov 2026 09:00:00 +0900"
    m["Message-ID"] = "<bench-a-%d@example.co.jp>" % i
    cs = "iso-2022-jp" if i % 3 == 0 else "utf-8"
    try:
        m.set_content(text, charset=cs)
    except UnicodeEncodeError:
        m.set_content(text)
    m.add_alternative(html, subtype="html")
    return m.as_bytes()


def attachment_mail(i):
    m = EmailMessage(policy=policy.SMTP)
    m["From"] = "partner%d@example.com" % i
    m["To"] = "soumu@town.example.lg.jp"
    m["Subject"] = "資料送付 %d" % i
    m["Date"] = "Mon, 23 Nov 2026 09:00:00 +0900"
    m["Message-ID"] = "<bench-b-%d@example.com>" % i
    m.set_content(paragraph() + "\n")
    for k in range(rng.randint(1, 3)):
        size = int(50_000 * (100 ** rng.random()))  # 50 KB .. 5 MB, log-uniform
        kind = rng.choice(["pdf", "zip", "png", "xlsx"])
        head = {"pdf": b"%PDF-1.7\n", "zip": b"PK\x03\x04", "png": b"\x89PNG\r\n\x1a\n", "xlsx": b"PK\x03\x04"}[kind]
        data = head + rng.randbytes(size - len(head))
        mt = {"pdf": ("application", "pdf"), "zip": ("application", "zip"), "png": ("image", "png"),
              "xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")}[kind]
        m.add_attachment(data, maintype=mt[0], subtype=mt[1], filename="資料%d-%d.%s" % (i, k, kind))
    return m.as_bytes()


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "a"), exist_ok=True)
    os.makedirs(os.path.join(out, "b"), exist_ok=True)
    for i in range(2000):
        with open(os.path.join(out, "a", "%04d.eml" % i), "wb") as f:
            f.write(business_mail(i, rng.randint(2000, 20000)))
    for i in range(60):
        with open(os.path.join(out, "b", "%04d.eml" % i), "wb") as f:
            f.write(attachment_mail(i))


if __name__ == "__main__":
    main()
