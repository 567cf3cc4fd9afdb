/* Unit tests for lib/ledger: the tree against a naive RFC 9162 computation,
 * proofs checked with RFC 9162's verification algorithms, crash recovery of
 * torn tails, segments and retention on a test clock, input rejection, the
 * writer lock and the signed message's exact bytes. */
#include "ledger.h"
#include "testutil.h"
#include "util/digest.h"
#include "util/fileio.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[512];
static int64_t fake_now = 1795400000000; /* 2026-11-23 */

static int64_t test_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

static void set_opts(ledger_opts *o, const char *name, buf *notes)
{
    static char pool[16][2][600];
    static int next;
    char *dir = pool[next][0], *key = pool[next][1];
    next = (next + 1) % 16;
    snprintf(dir, 600, "%s/%s", tmpdir, name);
    snprintf(key, 600, "%s/%s.key", tmpdir, name);
    memset(o, 0, sizeof *o);
    o->dir = dir;
    o->key_file = key;
    o->clock_ms = test_clock;
    o->notes = notes;
}

static ledger *fresh(const char *name, ledger_opts *o, buf *notes)
{
    set_opts(o, name, notes);
    char pub[65];
    buf err;
    buf_init(&err, 4096);
    CHECK_INT(ledger_init(o, pub, &err), 0);
    CHECK_INT(strlen(pub), 64);
    ledger *l = ledger_open(o, 1, &err);
    CHECK(l != NULL);
    if (l == NULL)
        fprintf(stderr, "open: %s\n", buf_cstr(&err));
    buf_free(&err);
    return l;
}

/* Naive MTH over leaf hashes (RFC 9162 2.1.1). */
static void mth(uint8_t (*leaves)[32], uint64_t n, uint8_t out[32])
{
    if (n == 0) {
        digest_sha256("", 0, out);
        return;
    }
    if (n == 1) {
        memcpy(out, leaves[0], 32);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    uint8_t l[32], r[32];
    mth(leaves, k, l);
    mth(leaves + k, n - k, r);
    ledger_node_hash(l, r, out);
}

/* RFC 9162 2.1.3.2 */
static int verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[32],
                            uint8_t (*path)[32], size_t np, const uint8_t root[32])
{
    if (index >= size)
        return 0;
    uint64_t fn = index, sn = size - 1;
    uint8_t r[32];
    memcpy(r, leaf, 32);
    for (size_t i = 0; i < np; i++) {
        if (sn == 0)
            return 0;
        if ((fn & 1) || fn == sn) {
            ledger_node_hash(path[i], r, r);
            if (!(fn & 1))
                do {
                    fn >>= 1;
                    sn >>= 1;
                } while (!(fn & 1) && fn != 0);
        } else {
            ledger_node_hash(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(r, root, 32) == 0;
}

/* RFC 9162 2.1.4.2 */
static int verify_consistency(uint64_t first, uint64_t second, const uint8_t fh[32],
                              const uint8_t sh[32], uint8_t (*path)[32], size_t np)
{
    if (first == second)
        return np == 0 && memcmp(fh, sh, 32) == 0;
    if (first == 0 || first > second || np == 0)
        return 0;
    uint8_t p[LEDGER_MAX_PROOF + 1][32];
    size_t n = 0;
    if ((first & (first - 1)) == 0)
        memcpy(p[n++], fh, 32);
    for (size_t i = 0; i < np; i++)
        memcpy(p[n++], path[i], 32);
    uint64_t fn = first - 1, sn = second - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[32], sr[32];
    memcpy(fr, p[0], 32);
    memcpy(sr, p[0], 32);
    for (size_t i = 1; i < n; i++) {
        if (sn == 0)
            return 0;
        if ((fn & 1) || fn == sn) {
            ledger_node_hash(p[i], fr, fr);
            ledger_node_hash(p[i], sr, sr);
            if (!(fn & 1))
                do {
                    fn >>= 1;
                    sn >>= 1;
                } while (!(fn & 1) && fn != 0);
        } else {
            ledger_node_hash(sr, p[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return memcmp(fr, fh, 32) == 0 && memcmp(sr, sh, 32) == 0 && sn == 0;
}

static int collect(void *arg, const uint8_t *line, size_t n)
{
    buf *b = arg;
    buf_append(b, line, n);
    buf_putc(b, '\n');
    return 0;
}

static int verify_report(const char *dir, buf *report, ledger_verify_result *r)
{
    ledger_verify_opts vo = {0};
    vo.dir = dir;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    buf err;
    buf_init(&err, 4096);
    int rc = ledger_verify(&vo, f, r, &err);
    fclose(f);
    buf_reset(report);
    buf_append(report, text, len);
    buf_puts(report, buf_cstr(&err));
    free(text);
    buf_free(&err);
    return rc;
}

static void test_tree_and_proofs(void)
{
    ledger_opts o;
    buf notes, err, report;
    buf_init(&notes, 1 << 16);
    buf_init(&err, 1 << 16);
    buf_init(&report, 1 << 20);
    ledger *l = fresh("tree", &o, &notes);
    if (l == NULL)
        return;
    enum { N = 70 };
    uint8_t leaves[N][32];
    for (int i = 0; i < N; i++) {
        char f[64];
        snprintf(f, sizeof f, "{\"i\":%d,\"pad\":\"%.*s\"}", i, i % 7, "xxxxxxx");
        uint64_t idx;
        CHECK_INT(ledger_append(l, "test", "unit", (const uint8_t *)f, strlen(f), &idx, &err), 0);
        CHECK_INT(idx, i);
        if (i % 9 == 8)
            CHECK_INT(ledger_commit(l, &err), 0);
    }
    CHECK_INT(ledger_checkpoint(l, &err), 0);
    CHECK_INT(ledger_size(l), N);
    /* The stored bytes hash to the leaves the tree uses. */
    buf all;
    buf_init(&all, 1 << 20);
    CHECK_INT(ledger_foreach(l, collect, &all, &err), 0);
    const char *p = buf_cstr(&all);
    for (int i = 0; i < N; i++) {
        const char *nl = strchr(p, '\n');
        ledger_leaf_hash((const uint8_t *)p, (size_t)(nl - p), leaves[i]);
        buf one;
        buf_init(&one, 1 << 20);
        CHECK_INT(ledger_get(l, (uint64_t)i, &one, &err), 0);
        CHECK(one.len == (size_t)(nl - p) && memcmp(one.p, p, one.len) == 0);
        buf_free(&one);
        p = nl + 1;
    }
    buf_free(&all);
    CHECK_HAS(buf_cstr(&err), "");
    /* Roots for every size against the naive MTH; every proof verifies. */
    uint8_t path[LEDGER_MAX_PROOF][32], a[32], b[32], want[32];
    size_t np;
    for (uint64_t n = 0; n <= N; n++) {
        CHECK_INT(ledger_root(l, n, a, &err), 0);
        mth(leaves, n, want);
        CHECK(memcmp(a, want, 32) == 0);
        for (uint64_t i = 0; i < n; i++) {
            CHECK_INT(ledger_prove_inclusion(l, i, n, a, b, path, &np, &err), 0);
            CHECK(memcmp(a, leaves[i], 32) == 0);
            CHECK(verify_inclusion(i, n, leaves[i], path, np, want));
            /* a wrong leaf or root does not verify */
            CHECK(!verify_inclusion(i, n, leaves[(i + 1) % N], path, np, want) || n == 1);
        }
        for (uint64_t m = 1; m <= n; m++) {
            CHECK_INT(ledger_prove_consistency(l, m, n, a, b, path, &np, &err), 0);
            mth(leaves, m, want);
            CHECK(memcmp(a, want, 32) == 0);
            CHECK(verify_consistency(m, n, a, b, path, np));
            if (m < n && np > 0) {
                path[0][0] ^= 1;
                CHECK(!verify_consistency(m, n, a, b, path, np));
            }
        }
    }
    CHECK_INT(ledger_prove_inclusion(l, 5, 5, a, b, path, &np, &err), -ERANGE);
    CHECK_INT(ledger_prove_consistency(l, 0, 5, a, b, path, &np, &err), -ERANGE);
    CHECK_INT(ledger_root(l, N + 1, a, &err), -ERANGE);
    /* The head is signed over exactly the documented bytes. */
    ledger_sth s;
    ledger_head(l, &s);
    CHECK_INT(s.tree_size, N);
    char msg[256], rh[65], want_msg[256];
    digest_hex(s.root, 32, rh);
    snprintf(want_msg, sizeof want_msg, "sekisho-sth-v1\n%d\n%s\n%lld\n", N, rh,
             (long long)s.timestamp_ms);
    CHECK_INT(ledger_sth_message(&s, msg, sizeof msg), strlen(want_msg));
    CHECK_STR(msg, want_msg);
    CHECK_INT(ledger_sth_verify(&s), 0);
    s.timestamp_ms++;
    CHECK_INT(ledger_sth_verify(&s), -EBADMSG);
    CHECK_INT(ledger_close(l, &err), 0);
    ledger_verify_result r;
    CHECK_INT(verify_report(o.dir, &report, &r), 0);
    CHECK_INT(r.entries, N);
    CHECK_INT(r.problems, 0);
    /* Read-only open sees the same head and entries. */
    l = ledger_open(&o, 0, &err);
    CHECK(l != NULL);
    if (l) {
        CHECK_INT(ledger_size(l), N);
        ledger_head(l, &s);
        CHECK_INT(s.tree_size, N);
        CHECK_INT(ledger_prove_inclusion(l, 3, N, a, b, path, &np, &err), 0);
        CHECK(verify_inclusion(3, N, leaves[3], path, np, s.root));
        ledger_close(l, NULL);
    }
    buf_free(&notes);
    buf_free(&err);
    buf_free(&report);
}

static void append_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK_INT(fileio_write_all(fd, text, strlen(text)), 0);
        close(fd);
    }
}

static void test_recovery(void)
{
    ledger_opts o;
    buf notes, err, report;
    buf_init(&notes, 1 << 16);
    buf_init(&err, 1 << 16);
    buf_init(&report, 1 << 20);
    ledger *l = fresh("torn", &o, &notes);
    if (l == NULL)
        return;
    uint64_t idx;
    for (int i = 0; i < 5; i++)
        CHECK_INT(ledger_append(l, "t", "s", NULL, 0, &idx, &err), 0);
    CHECK_INT(ledger_close(l, &err), 0);
    /* A torn write: part of a line, no newline. Verify passes (it is a
     * crash's trace, not a change) and says so. */
    char seg[800];
    snprintf(seg, sizeof seg, "%s/entries/0000000000000000.2026-11.jsonl", o.dir);
    append_file(seg, "{\"fields\":{},\"index\":5,\"sou");
    ledger_verify_result r;
    CHECK_INT(verify_report(o.dir, &report, &r), 0);
    CHECK_HAS(buf_cstr(&report), "INCOMPLETE TAIL");
    /* The next writer cuts it, saves it, records it. */
    l = ledger_open(&o, 1, &err);
    CHECK(l != NULL);
    if (l == NULL)
        fprintf(stderr, "open: %s\n", buf_cstr(&err));
    CHECK_HAS(buf_cstr(&notes), "recovered: entries/0000000000000000.2026-11.jsonl");
    CHECK_HAS(buf_cstr(&notes), "27 bytes at byte");
    if (l) {
        CHECK_INT(ledger_size(l), 6);
        buf e;
        buf_init(&e, 1 << 20);
        CHECK_INT(ledger_get(l, 5, &e, &err), 0);
        CHECK_HAS(buf_cstr(&e), "\"type\":\"ledger.recovery\"");
        CHECK_HAS(buf_cstr(&e), "\"bytes\":27");
        CHECK_HAS(buf_cstr(&e), "\"saved_as\":\"recovered/0000000000000000.2026-11.jsonl.");
        buf_free(&e);
        CHECK_INT(ledger_close(l, &err), 0);
    }
    char saved[900];
    snprintf(saved, sizeof saved, "ls %s/recovered/ | grep -q '^0000000000000000.2026-11.jsonl.'",
             o.dir);
    CHECK_INT(system(saved), 0);
    CHECK_INT(verify_report(o.dir, &report, &r), 0);
    CHECK_HAS(buf_cstr(&report), "RECOVERED: entry 5");
    /* A complete but invalid last line (zeros from a lost block) too. */
    buf_reset(&notes);
    append_file(seg, "\0\0\0\n");
    append_file(seg, "garbage\n");
    l = ledger_open(&o, 1, &err);
    CHECK(l != NULL);
    CHECK_HAS(buf_cstr(&notes), "recovered");
    if (l)
        CHECK_INT(ledger_close(l, &err), 0);
    CHECK_INT(verify_report(o.dir, &report, &r), 0);
    /* A torn signed head. */
    buf_reset(&notes);
    char ck[800];
    snprintf(ck, sizeof ck, "%s/checkpoints.jsonl", o.dir);
    append_file(ck, "{\"root_hash\":\"00");
    l = ledger_open(&o, 1, &err);
    CHECK(l != NULL);
    CHECK_HAS(buf_cstr(&notes), "recovered: checkpoints.jsonl");
    if (l)
        CHECK_INT(ledger_close(l, &err), 0);
    CHECK_INT(verify_report(o.dir, &report, &r), 0);
    /* A damaged stored hash under a matching signed root is reported as
     * damaged derived data, not as a changed entry. */
    char lvl[800];
    snprintf(lvl, sizeof lvl, "%s/tree/hashes-00", o.dir);
    int fd = open(lvl, O_WRONLY);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(pwrite(fd, "X", 1, 40) == 1);
        close(fd);
    }
    CHECK_INT(verify_report(o.dir, &report, &r), 1);
    CHECK_HAS(buf_cstr(&report), "DERIVED DATA");
    CHECK_HAS(buf_cstr(&report), "tree/hashes-00 record 1 (the entry matches the signed root)");
    /* Damage to the hashes the writer starts from (the 8 entries' root) is
     * not a crash: the writer refuses to go on. */
    snprintf(lvl, sizeof lvl, "%s/tree/hashes-03", o.dir);
    fd = open(lvl, O_WRONLY);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(pwrite(fd, "X", 1, 0) == 1);
        close(fd);
    }
    buf_reset(&err);
    l = ledger_open(&o, 1, &err);
    CHECK(l == NULL);
    CHECK_HAS(buf_cstr(&err), "do not match the signed root at tree size 8");
    buf_free(&notes);
    buf_free(&err);
    buf_free(&report);
}

static void test_segments_retention(void)
{
    ledger_opts o;
    buf notes, err, report;
    buf_init(&notes, 1 << 16);
    buf_init(&err, 1 << 16);
    buf_init(&report, 1 << 20);
    fake_now = 1795400000000;
    set_opts(&o, "seg", &notes);
    o.period = LEDGER_DAILY;
    char pub[65];
    CHECK_INT(ledger_init(&o, pub, &err), 0);
    ledger *l = ledger_open(&o, 1, &err);
    CHECK(l != NULL);
    if (l == NULL) {
        fprintf(stderr, "open: %s\n", buf_cstr(&err));
        return;
    }
    int64_t day = 86400000;
    int64_t t0 = fake_now;
    uint64_t idx;
    for (int d = 0; d < 4; d++) {
        fake_now = t0 + d * day;
        for (int i = 0; i < 3 + d; i++)
            CHECK_INT(ledger_append(l, "t", "s", NULL, 0, &idx, &err), 0);
        CHECK_INT(ledger_commit(l, &err), 0);
    }
    CHECK_INT(ledger_close(l, &err), 0);
    char cmd[900];
    snprintf(cmd, sizeof cmd, "test $(ls %s/entries | wc -l) = 4", o.dir);
    CHECK_INT(system(cmd), 0);
    /* Day 5 at 02:13: with 2 days' retention, the segments of days 0, 1 and 2
     * (ended by midnight of day 3) go; the removal records open a new one. */
    fake_now = t0 + 5 * day;
    l = ledger_open(&o, 1, &err);
    CHECK(l != NULL);
    if (l == NULL)
        return;
    uint8_t root_before[32], path[LEDGER_MAX_PROOF][32], a[32], b[32];
    CHECK_INT(ledger_root(l, 18, root_before, &err), 0);
    uint64_t n = 0;
    FILE *devnull = fopen("/dev/null", "w");
    CHECK_INT(ledger_prune(l, 2, 1, devnull, &n, &err), 0);
    fclose(devnull);
    CHECK_INT(n, 3);
    snprintf(cmd, sizeof cmd, "test $(ls %s/entries | wc -l) = 2", o.dir);
    CHECK_INT(system(cmd), 0);
    buf e;
    buf_init(&e, 1 << 20);
    CHECK_INT(ledger_get(l, 2, &e, &err), -ENOENT);
    CHECK_HAS(buf_cstr(&err), "removed by retention");
    buf_reset(&e);
    CHECK_INT(ledger_get(l, 18, &e, &err), 0);
    CHECK_HAS(buf_cstr(&e), "ledger.segment_removed");
    CHECK_HAS(buf_cstr(&e), "\"first_index\":0");
    buf_free(&e);
    /* The tree is unchanged, and removed entries are still provable. */
    CHECK_INT(ledger_root(l, 18, a, &err), 0);
    CHECK(memcmp(a, root_before, 32) == 0);
    size_t np;
    CHECK_INT(ledger_prove_inclusion(l, 1, 18, a, b, path, &np, &err), 0);
    CHECK_INT(ledger_close(l, &err), 0);
    ledger_verify_result r;
    CHECK_INT(verify_report(o.dir, &report, &r), 0);
    CHECK_INT(r.removed, 12);
    CHECK_HAS(buf_cstr(&report), "REMOVED BY RETENTION");
    CHECK_HAS(buf_cstr(&report), "entries 0..2 (segment 0000000000000000.2026-11-23.jsonl)");
    CHECK_HAS(buf_cstr(&report), "entries 3..6");
    CHECK_HAS(buf_cstr(&report), "entries 7..11");
    /* A segment deleted without a record is a deletion. */
    snprintf(cmd, sizeof cmd, "rm %s/entries/0000000000000012.2026-11-26.jsonl", o.dir);
    CHECK_INT(system(cmd), 0);
    CHECK_INT(verify_report(o.dir, &report, &r), 1);
    CHECK_HAS(buf_cstr(&report), "DELETED");
    CHECK_HAS(buf_cstr(&report), "entries 12..17: their segment file is missing");
    fake_now = t0;
    buf_free(&notes);
    buf_free(&err);
    buf_free(&report);
}

static void test_input(void)
{
    ledger_opts o;
    buf notes, err;
    buf_init(&notes, 1 << 16);
    buf_init(&err, 1 << 16);
    fake_now = 1795400000000;
    ledger *l = fresh("input", &o, &notes);
    if (l == NULL)
        return;
    static const struct {
        const char *json, *msg;
    } bad[] = {
        {"{\"type\":\"a\",\"time\":\"x\"}", "\"time\" is set by the ledger"},
        {"{\"type\":\"a\",\"index\":1}", "\"index\" is set by the ledger"},
        {"{\"type\":\"a\",\"colour\":1}", "\"colour\": "},
        {"{\"type\":\"a\",\"fields\":[1]}", "\"fields\": "},
        {"{\"fields\":{}}", "\"type\" (a string) is required"},
        {"{\"type\":\"\"}", "type: "},
        {"{\"type\":\"a\\nb\"}", "control characters"},
        {"{\"type\":\"a\\u0000\"}", "may not contain NUL"},
        {"{\"type\":\"a\",\"fields\":{\"n\":0.30000000000000001}}", "cannot be kept exactly"},
        {"{\"type\":\"a\",\"fields\":{\"n\":1,\"n\":2}}", "duplicate member name"},
        {"[1]", "expected a JSON object"},
        {"{\"type\":\"a\"", "expected ',' or '}'"},
    };
    uint64_t idx;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf_reset(&err);
        CHECK_INT(ledger_append_json(l, (const uint8_t *)bad[i].json, strlen(bad[i].json), "cli",
                                     &idx, &err),
                  -EINVAL);
        CHECK_HAS(buf_cstr(&err), bad[i].msg);
    }
    CHECK_INT(ledger_pending(l), 0);
    const char *ok = " { \"fields\" : {\"b\":1,\"a\":\"日本\"}, \"type\":\"入退室\" } ";
    CHECK_INT(ledger_append_json(l, (const uint8_t *)ok, strlen(ok), "cli:x", &idx, &err), 0);
    CHECK_INT(idx, 0);
    ok = "{\"type\":\"t\",\"source\":\"受付\"}";
    CHECK_INT(ledger_append_json(l, (const uint8_t *)ok, strlen(ok), "cli:x", &idx, &err), 0);
    CHECK_INT(ledger_commit(l, &err), 0);
    buf e;
    buf_init(&e, 1 << 20);
    CHECK_INT(ledger_get(l, 0, &e, &err), 0);
    CHECK_STR(buf_cstr(&e), "{\"fields\":{\"a\":\"日本\",\"b\":1},\"index\":0,\"source\":\"cli:x\","
                            "\"time\":\"2026-11-23T02:13:20.000Z\",\"type\":\"入退室\"}");
    buf_reset(&e);
    CHECK_INT(ledger_get(l, 1, &e, &err), 0);
    CHECK_HAS(buf_cstr(&e), "\"source\":\"受付\"");
    buf_free(&e);
    /* Two writable handles at once: each renumbers after the other's
     * commits, and says which index each of its entries got. */
    buf_reset(&err);
    ledger *l2 = ledger_open(&o, 1, &err);
    CHECK(l2 != NULL);
    if (l2 != NULL) {
        uint64_t a, b, c, fa, fb, fc;
        CHECK_INT(ledger_append(l, "w", "one", NULL, 0, &a, &err), 0);
        CHECK_INT(ledger_append(l2, "w", "two", NULL, 0, &b, &err), 0);
        CHECK_INT(ledger_append(l2, "w", "two", NULL, 0, &c, &err), 0);
        CHECK_INT(a, 2);
        CHECK_INT(b, 2); /* provisional: both expect the next index */
        CHECK_INT(c, 3);
        CHECK_INT(ledger_committed_index(l2, b, &fb), -ENOENT);
        CHECK_INT(ledger_commit(l2, &err), 0);
        CHECK_INT(ledger_commit(l, &err), 0);
        CHECK_INT(ledger_committed_index(l2, b, &fb), 0);
        CHECK_INT(ledger_committed_index(l2, c, &fc), 0);
        CHECK_INT(ledger_committed_index(l, a, &fa), 0);
        CHECK_INT(fb, 2);
        CHECK_INT(fc, 3);
        CHECK_INT(fa, 4);
        CHECK_INT(ledger_size(l), 5);
        buf_init(&e, 1 << 20);
        CHECK_INT(ledger_get(l, 4, &e, &err), 0);
        CHECK_HAS(buf_cstr(&e), "\"index\":4,\"source\":\"one\"");
        buf_reset(&e);
        CHECK_INT(ledger_get(l2, 3, &e, &err), 0);
        CHECK_HAS(buf_cstr(&e), "\"index\":3,\"source\":\"two\"");
        buf_free(&e);
        CHECK_INT(ledger_close(l2, &err), 0);
    }
    CHECK_INT(ledger_close(l, &err), 0);
    {
        buf rep;
        ledger_verify_result vr;
        buf_init(&rep, 1 << 20);
        CHECK_INT(verify_report(o.dir, &rep, &vr), 0);
        CHECK_INT(vr.entries, 5);
        buf_free(&rep);
    }
    /* A key that is not this ledger's. */
    ledger_opts o2 = o;
    char otherkey[700];
    snprintf(otherkey, sizeof otherkey, "%s/other.key", tmpdir);
    o2.key_file = otherkey;
    ledger_opts o3;
    set_opts(&o3, "other", NULL);
    o3.key_file = otherkey;
    char pub[65];
    CHECK_INT(ledger_init(&o3, pub, &err), 0);
    buf_reset(&err);
    l2 = ledger_open(&o2, 1, &err);
    CHECK(l2 == NULL);
    CHECK_HAS(buf_cstr(&err), "does not belong to this ledger");
    /* init refuses an existing ledger; open refuses a missing one. */
    buf_reset(&err);
    CHECK_INT(ledger_init(&o, pub, &err), -EEXIST);
    ledger_opts o4;
    set_opts(&o4, "missing", NULL);
    buf_reset(&err);
    CHECK(ledger_open(&o4, 0, &err) == NULL);
    CHECK_HAS(buf_cstr(&err), "no ledger at");
    /* Entry decoding. */
    buf s;
    buf_init(&s, 1 << 20);
    ledger_entry en;
    char why[200];
    const char *line = "{\"fields\":{},\"index\":12,\"source\":\"s\",\"time\":\"2026-11-23T00:53:"
                       "20.000Z\",\"type\":\"t\"}";
    CHECK_INT(ledger_entry_decode((const uint8_t *)line, strlen(line), &s, &en, why, sizeof why),
              0);
    CHECK_INT(en.index, 12);
    line = "{\"fields\":{},\"index\":12,\"source\":\"s\",\"time\":\"yesterday\",\"type\":\"t\"}";
    CHECK_INT(ledger_entry_decode((const uint8_t *)line, strlen(line), &s, &en, why, sizeof why),
              -1);
    CHECK_HAS(why, "time is not");
    line = "{\"fields\":{},\"index\":-1,\"source\":\"s\",\"time\":\"2026-11-23T00:53:20.000Z\","
           "\"type\":\"t\"}";
    CHECK_INT(ledger_entry_decode((const uint8_t *)line, strlen(line), &s, &en, why, sizeof why),
              -1);
    line = "{\"index\":1,\"fields\":{},\"source\":\"s\",\"time\":\"2026-11-23T00:53:20.000Z\","
           "\"type\":\"t\"}";
    CHECK_INT(ledger_entry_decode((const uint8_t *)line, strlen(line), &s, &en, why, sizeof why),
              -1);
    CHECK_HAS(why, "not in canonical form");
    buf_free(&s);
    buf_free(&notes);
    buf_free(&err);
}

/* Six processes append to one ledger at once, in batches of varying size;
 * each writes down the final index of every entry it had acknowledged. Every
 * such index holds exactly that process's entry, each once, and the ledger
 * verifies. */
static void test_writers(void)
{
    enum { NPROC = 6, NPER = 1500 };
    ledger_opts o;
    buf err;
    buf_init(&err, 1 << 16);
    set_opts(&o, "writers", NULL);
    o.clock_ms = NULL;
    o.checkpoint_entries = 700;
    char pub[65];
    CHECK_INT(ledger_init(&o, pub, &err), 0);
    pid_t pids[NPROC];
    for (int p = 0; p < NPROC; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            char path[700];
            snprintf(path, sizeof path, "%s/acks.%d", tmpdir, p);
            FILE *f = fopen(path, "w");
            ledger *l = ledger_open(&o, 1, &err);
            if (f == NULL || l == NULL)
                _exit(3);
            uint64_t staged[64];
            int k = 0;
            for (int i = 0; i < NPER;) {
                int batch = 1 + (i * 7 + p) % 40;
                for (int j = 0; j < batch && i < NPER; j++, i++) {
                    char fields[64];
                    snprintf(fields, sizeof fields, "{\"p\":%d,\"i\":%d}", p, i);
                    if (ledger_append(l, "w", "writers", (const uint8_t *)fields, strlen(fields),
                                      &staged[j], &err) < 0)
                        _exit(4);
                    k = j + 1;
                }
                if (ledger_commit(l, &err) < 0)
                    _exit(5);
                for (int j = 0; j < k; j++) {
                    uint64_t fi;
                    if (ledger_committed_index(l, staged[j], &fi) < 0)
                        _exit(6);
                    fprintf(f, "%" PRIu64 " %d\n", fi, i - k + j);
                }
            }
            if (ledger_close(l, &err) < 0 || fclose(f) != 0)
                _exit(7);
            _exit(0);
        }
        CHECK(pids[p] > 0);
    }
    for (int p = 0; p < NPROC; p++) {
        int st = -1;
        CHECK_INT(waitpid(pids[p], &st, 0), pids[p]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    ledger *l = ledger_open(&o, 0, &err);
    CHECK(l != NULL);
    if (l == NULL)
        return;
    CHECK_INT(ledger_size(l), NPROC * NPER);
    static unsigned char seen[NPROC * NPER];
    buf e;
    buf_init(&e, 1 << 20);
    int bad = 0;
    for (int p = 0; p < NPROC; p++) {
        char path[700];
        snprintf(path, sizeof path, "%s/acks.%d", tmpdir, p);
        FILE *f = fopen(path, "r");
        CHECK(f != NULL);
        if (f == NULL)
            continue;
        uint64_t fi;
        int i, lines = 0;
        while (fscanf(f, "%" SCNu64 " %d", &fi, &i) == 2) {
            lines++;
            char want[120];
            snprintf(want, sizeof want, "{\"fields\":{\"i\":%d,\"p\":%d},\"index\":%" PRIu64 ",", i,
                     p, fi);
            buf_reset(&e);
            if (fi >= NPROC * NPER || seen[fi]++ || ledger_get(l, fi, &e, &err) < 0 ||
                strncmp(buf_cstr(&e), want, strlen(want)) != 0)
                bad++;
        }
        fclose(f);
        CHECK_INT(lines, NPER);
    }
    CHECK_INT(bad, 0);
    buf_free(&e);
    ledger_close(l, NULL);
    buf rep;
    ledger_verify_result vr;
    buf_init(&rep, 1 << 20);
    CHECK_INT(verify_report(o.dir, &rep, &vr), 0);
    CHECK_INT(vr.entries, NPROC * NPER);
    CHECK_INT(vr.unsigned_tail, 0);
    buf_free(&rep);
    buf_free(&err);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/ledger_test.XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_tree_and_proofs();
    test_recovery();
    test_segments_retention();
    test_input();
    test_writers();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_DONE();
}
