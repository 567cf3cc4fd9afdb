// Composes test mails with nodemailer's MailComposer (the composer inside the
// most used Node.js mail library) and writes them with a manifest of what a
// sanitized copy must show.   node compose.mjs OUTDIR
import MailComposer from "nodemailer/lib/mail-composer/index.js";
import fs from "node:fs";
import path from "node:path";

const out = process.argv[2];
fs.mkdirSync(out, { recursive: true });
const pe = Buffer.alloc(512);
pe.write("MZ", 0);
const cases = [
  {
    name: "nm-text-attachments",
    mail: {
      from: '"山田 花子" <hanako@example.co.jp>', to: "soumu@town.example.lg.jp",
      subject: "令和8年度 説明会資料（第2版）①", text: "説明会の資料を送付します。\n会場: 公民館 第1会議室\n",
      attachments: [
        { filename: "説明会資料_第2版.pdf", content: Buffer.from("%PDF-1.5\n%%EOF\n"), contentType: "application/pdf" },
        { filename: "案内図.png", content: Buffer.from("89504e470d0a1a0a0000000d49484452", "hex"), contentType: "image/png" },
      ],
    },
    expect: { subject: "[外部] 令和8年度 説明会資料（第2版）①", body: ["説明会の資料を送付します。", "会場: 公民館 第1会議室", "説明会資料_第2版.pdf", "案内図.png"], removed: 2 },
  },
  {
    name: "nm-html-alternative",
    mail: {
      from: "info@shop.example", to: "soumu@town.example.lg.jp", subject: "キャンペーンのお知らせ",
      text: "テキスト版です。", html: '<p>HTML版です。<a href="https://shop.example/sale">セール会場</a></p>',
    },
    expect: { subject: "[外部] キャンペーンのお知らせ", body: ["テキスト版です。"], notbody: ["HTML版です。"], removed: 0 },
  },
  {
    name: "nm-html-only-embedded",
    mail: {
      from: "news@example.org", to: "soumu@town.example.lg.jp", subject: "News",
      html: '<h2>見出し</h2><p>本文 <img src="cid:logo@x" alt="ロゴ"></p><p><a href="http://evil.example/x">http://good.example/</a></p>',
      attachments: [{ filename: "logo.png", cid: "logo@x", content: Buffer.from("89504e470d0a1a0a", "hex") }],
    },
    expect: { subject: "[外部] News", body: ["見出し", "本文", "ロゴ", "hxxp://evil[.]example/x", "⚠", "logo.png"], notbody: ["<p>", "http://evil.example"], removed: 1 },
  },
  {
    name: "nm-disguised-exe",
    mail: {
      from: "billing@example.net", to: "soumu@town.example.lg.jp", subject: "ご請求",
      text: "請求書をご確認ください。",
      attachments: [{ filename: "請求書\u202Efdp.exe", content: pe, contentType: "application/pdf" }],
    },
    expect: { subject: "[外部] ご請求", body: ["請求書をご確認ください。", "<U+202E>", "偽装"], removed: 1 },
  },
  {
    name: "nm-long-subject-and-names",
    mail: {
      from: '"ながいなまえのさしだしにん ながいなまえのさしだしにん" <long@example.jp>', to: '"総務課" <soumu@town.example.lg.jp>, "企画課" <kikaku@town.example.lg.jp>',
      cc: '"財政課 ご担当者様" <zaisei@town.example.lg.jp>',
      subject: "とても長い件名".repeat(12), text: "長い件名のテスト。\n".repeat(50),
    },
    expect: { subject: "[外部] " + "とても長い件名".repeat(12), body: ["長い件名のテスト。"], removed: 0, from: ["ながいなまえのさしだしにん ながいなまえのさしだしにん"], to: ["総務課", "企画課"], cc: ["財政課 ご担当者様"] },
  },
  {
    name: "nm-qp-encoded",
    mail: {
      from: "qp@example.com", to: "soumu@town.example.lg.jp", subject: "QP",
      text: "A line with trailing spaces   \nand an = sign and a long line " + "x".repeat(200) + "\n日本語も。",
      textEncoding: "quoted-printable",
    },
    expect: { subject: "[外部] QP", body: ["and an = sign", "x".repeat(200), "日本語も。"], removed: 0 },
  },
];
const manifest = [];
for (const c of cases) {
  const msg = await new MailComposer({ ...c.mail, date: new Date("2026-11-23T00:00:00Z"), messageId: `<${c.name}@nodemailer.test>` }).compile().build();
  fs.writeFileSync(path.join(out, c.name + ".eml"), msg);
  manifest.push({ file: c.name + ".eml", ...c.expect });
}
fs.writeFileSync(path.join(out, "manifest.json"), JSON.stringify(manifest, null, 1));
