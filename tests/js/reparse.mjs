// Re-parses sanitized mails with postal-mime (an independent parser) and
// prints, per file, what a client would show.   node reparse.mjs FILE...
import PostalMime from "postal-mime";
import fs from "node:fs";

const res = {};
for (const f of process.argv.slice(2)) {
  const email = await PostalMime.parse(fs.readFileSync(f));
  res[f] = {
    subject: email.subject, from: email.from, to: email.to, cc: email.cc,
    text: email.text, html: email.html ?? null, attachments: email.attachments.length,
  };
}
process.stdout.write(JSON.stringify(res));
