#!/usr/bin/env python3
"""sekisho record through the real program: the built-in types, a policy's
records: section, every kind of refusal with its exit status and the field
named, and eight `sekisho record` processes plus a `ledger append` writing
the same ledger at once (every printed index holds its own record, once;
verify passes).

  record_test.py SEKISHO
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

SEKISHO = sys.argv[1]
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


def run(args, stdin=None):
    p = subprocess.run([SEKISHO] + args, input=stdin, capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def main():
    tmp = tempfile.mkdtemp(prefix="record-test.")
    try:
        led = ["-l", os.path.join(tmp, "l"), "-k", os.path.join(tmp, "k")]
        rc, out, err = run(["ledger", "init"] + led)
        check(rc == 0, "init: " + err)
        ok = ["入退室", "氏名=山田太郎", "入室時刻=2026-11-23T09:00+09:00", "退室時刻=2026-11-23T10:15+09:00",
              "目的=サーバ室点検", "立会者=鈴木一郎"]
        rc, out, err = run(["record"] + led + ok)
        check(rc == 0 and out == "0\n", "record 入退室: %d %r %s" % (rc, out, err))
        rc, out, err = run(["ledger", "get"] + led + ["0"])
        e = json.loads(out)
        check(e["type"] == "入退室" and e["fields"]["氏名"] == "山田太郎" and e["fields"]["立会者"] == "鈴木一郎"
              and e["source"].startswith("sekisho record:"), "entry: %r" % e)
        cases = [
            (ok[:-1], 65, "required field missing: 立会者"),
            (ok + ["色=赤"], 65, "色: 知らない項目です / unknown field"),
            (ok + ["氏名=別人"], 65, "氏名: 項目が二度あります / field given twice"),
            (["出張", "a=b"], 65, "出張: 知らない記録の種類です / unknown record type"),
            (ok[:1] + ["氏名"] + ok[2:], 64, "'氏名': KEY=VALUE の形ではありません / not KEY=VALUE"),
            (ok[:1] + ["=x"] + ok[1:], 64, "not KEY=VALUE"),
            ([], 64, "no record type"),
        ]
        for args, want_rc, want in cases:
            rc, out, err = run(["record"] + led + args)
            check(rc == want_rc and want in err and out == "", "%r: %d %r %s" % (args, rc, out, err))
        rc, out, err = run(["ledger", "cat"] + led)
        check(len(out.splitlines()) == 1, "refused records appended nothing")
        rc, out, err = run(["record", "--list"])
        for t in ["入退室", "媒体廃棄", "変更作業", "障害", "修正プログラム適用", "例外措置"]:
            check(("\n" + t + "\n") in ("\n" + out), "--list shows " + t)
        check("必須 / required: 媒体 識別番号 廃棄方法 実施者 確認者 実施日" in out, "--list fields")
        rc, out, err = run(["record", "--help"])
        check(rc == 0 and "EXIT STATUS" in out and "入退室" in out, "--help")
        rc, out, err = run(["record"] + led + ok[:2], None)
        check(rc == 65, "missing fields: several named")
        check(all(("required field missing: " + f) in err for f in ["入室時刻", "退室時刻", "目的", "立会者"]),
              "every missing field is named: " + err)
        # a policy's records: section replaces the built-in types
        pol = os.path.join(tmp, "p.yaml")
        with open(pol, "w") as f:
            f.write("ledger:\n  dir: %s/l\n  key_file: %s/k\nrecords:\n"
                    "  - type: 入退室\n    required: [氏名, 入室時刻]\n    optional: [退室時刻]\n"
                    "  - type: 点検\n    required: [対象]\n    extra_fields: true\n" % (tmp, tmp))
        rc, out, err = run(["record", "-p", pol, "入退室", "氏名=佐藤", "入室時刻=09:00"])
        check(rc == 0 and out == "1\n", "policy type: %d %r %s" % (rc, out, err))
        rc, out, err = run(["record", "-p", pol, "点検", "対象=UPS", "結果=良好", "気温=21"])
        check(rc == 0 and out == "2\n", "extra_fields: %d %r %s" % (rc, out, err))
        rc, out, err = run(["record", "-p", pol] + ok[:1] + ["氏名=佐藤", "入室時刻=1", "目的=x"])
        check(rc == 65 and "目的: 知らない項目です" in err, "policy fields replace the built-in ones: " + err)
        rc, out, err = run(["record", "-p", pol, "媒体廃棄", "媒体=x"])
        check(rc == 65 and "unknown record type (types: 入退室 点検)" in err, "built-in types replaced: " + err)
        with open(pol, "a") as f:
            f.write("  - type: 点検\n    required: [a=b]\n")
        rc, out, err = run(["record", "-p", pol, "--list"])
        check(rc == 78 and "record type '点検' is already defined by records[1]" in err
              and "may not be empty or contain '='" in err, "policy errors: %d %s" % (rc, err))
        # eight record processes and a ledger append at once
        procs = []
        for w in range(8):
            script = "for i in $(seq 0 24); do %s record %s 障害 システム=sys%d 発生日時=$i 内容=c 対応=r 報告者=w%d" \
                     " || exit 1; done" % (SEKISHO, " ".join(led), w, w)
            procs.append((w, subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE)))
        lines = "".join(json.dumps({"type": "bulk", "fields": {"i": i}}) + "\n" for i in range(3000))
        ap = subprocess.Popen([SEKISHO, "ledger", "append"] + led, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        aout, aerr = ap.communicate(lines.encode(), timeout=300)
        check(ap.returncode == 0, "append alongside: " + aerr.decode())
        printed = {}
        for w, p in procs:
            out, err = p.communicate(timeout=300)
            check(p.returncode == 0, "record writer %d: %s" % (w, err.decode()))
            printed[w] = [int(x) for x in out.split()]
            check(len(printed[w]) == 25, "writer %d printed %d indices" % (w, len(printed[w])))
        rc, out, err = run(["ledger", "cat"] + led)
        entries = [json.loads(x) for x in out.splitlines()]
        check([e["index"] for e in entries] == list(range(len(entries))), "indices are positions")
        all_ix = [ix for v in printed.values() for ix in v] + [int(x) for x in aout.split()]
        check(len(all_ix) == len(set(all_ix)) == 8 * 25 + 3000, "every index printed once")
        for w, v in printed.items():
            for i, ix in enumerate(v):
                e = entries[ix]
                if e["type"] != "障害" or e["fields"]["システム"] != "sys%d" % w or e["fields"]["発生日時"] != str(i):
                    check(False, "writer %d record %d at index %d: %r" % (w, i, ix, e))
                    break
        for i, ix in enumerate(int(x) for x in aout.split()):
            if entries[ix]["type"] != "bulk" or entries[ix]["fields"]["i"] != i:
                check(False, "append line %d at index %d: %r" % (i, ix, entries[ix]))
                break
        rc, out, err = run(["ledger", "verify"] + led)
        check(rc == 0 and "intact" in out, "verify: " + out + err)
        print("record: %d entries from 9 concurrent writers" % len(entries))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("record: %s" % ("%d failures" % failures if failures else "OK"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
