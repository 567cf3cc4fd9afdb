/*
 * Unit tests for lib/quarantine (embedded backend): byte-exact round trips,
 * the segment record format, ids, list order, batches, tamper detection,
 * persistence, migration from schema 1, concurrent writers, purge (whole
 * segments and erased ranges), and durability ordering under injected faults
 * and simulated crashes (a child process _exit()s at each step of a put; the
 * parent then checks that every index row still leads to an intact original).
 */
#include "quarantine.h"
#include "testutil.h"
#include "util/buf.h"
#include "util/digest.h"
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char root[256];
static int dir_seq;

static void new_dir(char *out, size_t sz)
{
    snprintf(out, sz, "%s/q%d", root, ++dir_seq);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

/* Counts files under dir whose name ends with suffix. */
static const char *count_suffix;
static int count_n;
static long long count_bytes;
static int count_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)f;
    size_t n = strlen(p), m = strlen(count_suffix);
    if (flag == FTW_F && n >= m && strcmp(p + n - m, count_suffix) == 0) {
        count_n++;
        count_bytes += sb->st_size;
    }
    return 0;
}

static int count_files(const char *dir, const char *suffix)
{
    char p[512];
    snprintf(p, sizeof p, "%s/originals", dir);
    count_suffix = suffix;
    count_n = 0;
    count_bytes = 0;
    nftw(p, count_one, 16, FTW_PHYS);
    return count_n;
}

/* Bytes in all segments of dir. */
static long long segment_bytes(const char *dir)
{
    count_files(dir, ".seg");
    return count_bytes;
}

/* The size of one record as docs/QUARANTINE.md specifies it:
 * "SEKISHO-QREC1 <id> <size> <sha256>\n" <size bytes> "\n". */
static long long record_size(size_t n)
{
    char digits[32];
    return (long long)(strlen("SEKISHO-QREC1 ") + 33 + 1 +
                       (size_t)snprintf(digits, sizeof digits, "%zu", n) + 1 + 64 + 1 + n + 1);
}

static int count_entry(const quarantine_entry *e, void *arg)
{
    (void)e;
    (*(int *)arg)++;
    return 0;
}

static int n_entries(quarantine *q)
{
    int n = 0;
    CHECK_INT(quarantine_list(q, count_entry, &n, NULL), 0);
    return n;
}

/* get into a buffer; returns quarantine_get's value. */
static int get_bytes(quarantine *q, const char *id, buf *out, buf *err)
{
    char tmpl[300];
    snprintf(tmpl, sizeof tmpl, "%s/get.XXXXXX", root);
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return -errno;
    unlink(tmpl);
    int rc = quarantine_get(q, id, fd, err);
    lseek(fd, 0, SEEK_SET);
    buf_reset(out);
    fileio_read_fd(fd, out);
    close(fd);
    return rc;
}

/* Where the index says id's original is: the file and the offset of its first
 * byte (-1: the whole file, schema 1). Read with SQLite directly, as an
 * auditor would. */
static long long stored_loc(const char *dir, const char *id, char *path, size_t sz)
{
    char ix[400];
    snprintf(ix, sizeof ix, "%s/index.sqlite", dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long off = -2;
    path[0] = 0;
    if (sqlite3_open_v2(ix, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT path, offset FROM messages WHERE id = ?", -1, &st, NULL) ==
            SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            snprintf(path, sz, "%s/%s", dir, (const char *)sqlite3_column_text(st, 0));
            off = sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK(off >= -1);
    return off;
}

/* n bytes of path at off. */
static int read_at(const char *path, long long off, void *out, size_t n)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t r = pread(fd, out, n, (off_t)off);
    close(fd);
    return r == (ssize_t)n ? 0 : -1;
}

static void test_roundtrip(void)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    buf err, out;
    buf_init(&err, 4096);
    buf_init(&out, 1 << 24);
    quarantine *q = quarantine_open(dir, 1, &err);
    CHECK(q != NULL);
    if (q == NULL) {
        fprintf(stderr, "%s\n", buf_cstr(&err));
        return;
    }
    static const uint8_t binary[] = {0, 1, 2, 0xff, 0, '\r', '\n', 0x80, 0, 0x1b, '[', 'm', 0};
    static const char crlf[] =
        "From: a@example.jp\r\nSubject: =?UTF-8?B?5LqL?=\r\n\r\nbody\r\n.\r\n";
    uint8_t *big = malloc(3 << 20); /* larger than the I/O chunk */
    for (size_t i = 0; i < (3u << 20); i++)
        big[i] = (uint8_t)(i * 2654435761u >> 13);
    struct {
        const uint8_t *p;
        size_t n;
    } cases[] = {
        {binary, sizeof binary},
        {(const uint8_t *)crlf, sizeof crlf - 1},
        {NULL, 0},
        {(const uint8_t *)"", 0},
        {big, 3u << 20},
    };
    char id[QUARANTINE_ID_MAX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        quarantine_meta m = {.received = 1000 + (int64_t)i,
                             .from = "a@example.jp",
                             .subject = "件名",
                             .verdict = "sanitized",
                             .retain_until = 5000};
        for (int sync = 1; sync >= 0; sync--) {
            buf_reset(&err);
            CHECK_INT(quarantine_put(q, cases[i].p, cases[i].n, &m, sync, id, &err), 0);
            if (!sync)
                CHECK_INT(quarantine_sync(q, &err), 0);
            CHECK(quarantine_id_valid(id));
            CHECK_INT(get_bytes(q, id, &out, &err), 0);
            CHECK_INT(out.len, cases[i].n);
            CHECK(out.len == cases[i].n &&
                  (cases[i].n == 0 || memcmp(out.p, cases[i].p, out.len) == 0));
            /* the segment holds the record as documented, mode 0600 */
            char path[512];
            struct stat sb;
            long long off = stored_loc(dir, id, path, sizeof path);
            CHECK_INT(stat(path, &sb), 0);
            CHECK_INT(sb.st_mode & 0777, 0600);
            CHECK(off > 0 && sb.st_size >= off + (long long)cases[i].n + 1);
            char hdr[160], want[160];
            int hl = snprintf(want, sizeof want, "SEKISHO-QREC1 %s %zu ", id, cases[i].n);
            CHECK_INT(read_at(path, off - 65 - hl, hdr, (size_t)hl), 0);
            CHECK(memcmp(hdr, want, (size_t)hl) == 0);
            uint8_t *raw = malloc(cases[i].n + 1);
            CHECK_INT(read_at(path, off, raw, cases[i].n + 1), 0);
            CHECK(raw[cases[i].n] == '\n' &&
                  (cases[i].n == 0 || memcmp(raw, cases[i].p, cases[i].n) == 0));
            free(raw);
        }
    }
    /* one segment for the handle's whole life (within one UTC day), holding
     * exactly the records */
    CHECK(count_files(dir, ".seg") >= 1 && count_files(dir, ".seg") <= 2);
    long long want_bytes = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        want_bytes += 2 * record_size(cases[i].n);
    CHECK_INT(segment_bytes(dir), want_bytes);
    /* directories 0700 */
    struct stat sb;
    char d[512];
    snprintf(d, sizeof d, "%s/originals/%.4s/%.2s/%.2s", dir, id, id + 4, id + 6);
    CHECK_INT(stat(d, &sb), 0);
    CHECK_INT(sb.st_mode & 0777, 0700);
    free(big);
    quarantine_close(q);
    buf_free(&err);
    buf_free(&out);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_ids(void)
{
    CHECK(quarantine_id_valid("20261123T050033Z-0123456789abcdef"));
    CHECK(!quarantine_id_valid("20261123T050033Z-0123456789ABCDEF"));
    CHECK(!quarantine_id_valid("20261123T050033Z-0123456789abcde"));
    CHECK(!quarantine_id_valid("20261123T050033Z-0123456789abcdef0"));
    CHECK(!quarantine_id_valid("../../../../etc/passwd"));
    CHECK(!quarantine_id_valid(""));
    CHECK(!quarantine_id_valid(NULL));

    char dir[300];
    new_dir(dir, sizeof dir);
    quarantine *q = quarantine_open(dir, 1, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    enum { N = 300 };
    static char ids[N][QUARANTINE_ID_MAX];
    time_t before = time(NULL);
    for (int i = 0; i < N; i++)
        CHECK_INT(quarantine_put(q, (const uint8_t *)"x", 1, NULL, 0, ids[i], NULL), 0);
    CHECK_INT(quarantine_sync(q, NULL), 0);
    time_t after = time(NULL);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        if (!quarantine_id_valid(ids[i]) || strlen(ids[i]) != 33)
            bad++;
        /* the id is the UTC time of the put */
        struct tm tm;
        char lo[20], hi[20];
        gmtime_r(&before, &tm);
        strftime(lo, sizeof lo, "%Y%m%dT%H%M%SZ", &tm);
        gmtime_r(&after, &tm);
        strftime(hi, sizeof hi, "%Y%m%dT%H%M%SZ", &tm);
        if (strncmp(ids[i], lo, 16) < 0 || strncmp(ids[i], hi, 16) > 0)
            bad++;
    }
    CHECK_INT(bad, 0);
    qsort(ids, N, QUARANTINE_ID_MAX, cmp_str);
    int dup = 0;
    for (int i = 1; i < N; i++)
        dup += strcmp(ids[i - 1], ids[i]) == 0;
    CHECK_INT(dup, 0);
    CHECK_INT(n_entries(q), N);
    quarantine_close(q);
}

struct collect {
    char ids[16][QUARANTINE_ID_MAX];
    int64_t received[16];
    size_t parts[16];
    char subject[16][64];
    int n;
};

static int collect_fn(const quarantine_entry *e, void *arg)
{
    struct collect *c = arg;
    if (c->n >= 16)
        return 1;
    memcpy(c->ids[c->n], e->id, QUARANTINE_ID_MAX);
    c->received[c->n] = e->received;
    c->parts[c->n] = e->n_parts;
    snprintf(c->subject[c->n], sizeof c->subject[0], "%s", e->subject);
    c->n++;
    return 0;
}

static int stop_fn(const quarantine_entry *e, void *arg)
{
    (void)e;
    return ++*(int *)arg == 2 ? 42 : 0;
}

struct shown {
    int calls;
    char from[64], verdict[32], names[3][64], detected[3][64], sha[3][65];
    uint64_t sizes[3];
    size_t n;
};

static int show_fn(const quarantine_entry *e, const quarantine_part *p, size_t n, void *arg)
{
    struct shown *s = arg;
    s->calls++;
    snprintf(s->from, sizeof s->from, "%s", e->from);
    snprintf(s->verdict, sizeof s->verdict, "%s", e->verdict);
    s->n = n;
    for (size_t i = 0; i < n && i < 3; i++) {
        snprintf(s->names[i], sizeof s->names[i], "%s", p[i].filename);
        snprintf(s->detected[i], sizeof s->detected[i], "%s", p[i].detected_type);
        snprintf(s->sha[i], sizeof s->sha[i], "%s", p[i].sha256);
        s->sizes[i] = p[i].size;
    }
    return 0;
}

static void test_list_show(void)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    quarantine *q = quarantine_open(dir, 1, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    quarantine_part parts[2] = {
        {"請求書.exe", "application/pdf", "application/x-dosexec", 1234,
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
        {"", "text/html", "text/html", 5, "bbbb"},
    };
    int64_t received[] = {300, 100, 200};
    char ids[3][QUARANTINE_ID_MAX];
    for (int i = 0; i < 3; i++) {
        char subj[32];
        snprintf(subj, sizeof subj, "subject %d", i);
        quarantine_meta m = {.received = received[i],
                             .from = "送信者 <s@example.com>",
                             .to = "r@city.example.lg.jp",
                             .subject = subj,
                             .message_id = "<x@y>",
                             .verdict = "sanitized",
                             .retain_until = received[i] + 10,
                             .parts = parts,
                             .n_parts = (size_t)i};
        CHECK_INT(quarantine_put(q, (const uint8_t *)"m", 1, &m, 1, ids[i], NULL), 0);
    }
    struct collect c = {0};
    CHECK_INT(quarantine_list(q, collect_fn, &c, NULL), 0);
    CHECK_INT(c.n, 3);
    CHECK_INT(c.received[0], 300);
    CHECK_INT(c.received[1], 200);
    CHECK_INT(c.received[2], 100);
    CHECK_STR(c.ids[0], ids[0]);
    CHECK_STR(c.subject[1], "subject 2");
    CHECK_INT(c.parts[0], 0);
    CHECK_INT(c.parts[1], 2);
    CHECK_INT(c.parts[2], 1);
    int calls = 0;
    CHECK_INT(quarantine_list(q, stop_fn, &calls, NULL), 42);
    CHECK_INT(calls, 2);

    struct shown s = {0};
    CHECK_INT(quarantine_show(q, ids[2], show_fn, &s, NULL), 0);
    CHECK_INT(s.calls, 1);
    CHECK_INT(s.n, 2);
    CHECK_STR(s.from, "送信者 <s@example.com>");
    CHECK_STR(s.verdict, "sanitized");
    CHECK_STR(s.names[0], "請求書.exe");
    CHECK_STR(s.detected[0], "application/x-dosexec");
    CHECK_INT(s.sizes[0], 1234);
    CHECK_STR(s.names[1], "");
    CHECK_STR(s.sha[1], "bbbb");
    buf err;
    buf_init(&err, 4096);
    CHECK_INT(quarantine_show(q, "20000101T000000Z-0000000000000000", show_fn, &s, &err), -ENOENT);
    CHECK_HAS(buf_cstr(&err), "no such message");
    buf_free(&err);
    quarantine_close(q);
}

static void test_batch(void)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    quarantine *q = quarantine_open(dir, 1, NULL);
    quarantine *other = quarantine_open(dir, 0, NULL);
    CHECK(q != NULL && other != NULL);
    if (q == NULL || other == NULL)
        return;
    char ids[10][QUARANTINE_ID_MAX];
    char body[64];
    for (int i = 0; i < 10; i++) {
        snprintf(body, sizeof body, "message %d\r\n", i);
        CHECK_INT(quarantine_put(q, (const uint8_t *)body, strlen(body), NULL, 0, ids[i], NULL), 0);
    }
    /* Not yet in the index: nothing may be served before it is durable. */
    CHECK_INT(n_entries(other), 0);
    CHECK_INT(n_entries(q), 0);
    CHECK(segment_bytes(dir) >= 10 * record_size(strlen("message 0\r\n")));
    CHECK_INT(quarantine_sync(q, NULL), 0);
    CHECK_INT(quarantine_sync(q, NULL), 0); /* empty sync is a no-op */
    CHECK_INT(n_entries(other), 10);
    buf out;
    buf_init(&out, 1 << 20);
    CHECK_INT(get_bytes(other, ids[7], &out, NULL), 0);
    CHECK_STR(buf_cstr(&out), "message 7\r\n");

    /* More than the pending limit: the store syncs early by itself. */
    char id[QUARANTINE_ID_MAX];
    for (int i = 0; i < 1100; i++)
        CHECK_INT(quarantine_put(q, (const uint8_t *)"y", 1, NULL, 0, id, NULL), 0);
    CHECK(n_entries(other) > 10);

    /* close with unsynced puts syncs them */
    quarantine_close(q);
    CHECK_INT(n_entries(other), 1110);
    CHECK_INT(get_bytes(other, id, &out, NULL), 0);
    CHECK_STR(buf_cstr(&out), "y");
    buf_free(&out);
    quarantine_close(other);
}

static void test_tamper_and_unknown(void)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    buf err, out;
    buf_init(&err, 4096);
    buf_init(&out, 1 << 20);
    quarantine *q = quarantine_open(dir, 1, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    char a[QUARANTINE_ID_MAX], b[QUARANTINE_ID_MAX], c[QUARANTINE_ID_MAX];
    const char *msg = "Subject: hi\r\n\r\nhello\r\n";
    CHECK_INT(quarantine_put(q, (const uint8_t *)msg, strlen(msg), NULL, 1, a, NULL), 0);
    CHECK_INT(quarantine_put(q, (const uint8_t *)msg, strlen(msg), NULL, 1, b, NULL), 0);
    CHECK_INT(quarantine_put(q, (const uint8_t *)msg, strlen(msg), NULL, 1, c, NULL), 0);
    char path[512], pb[512], pc[512];
    long long oa = stored_loc(dir, a, path, sizeof path);
    long long ob = stored_loc(dir, b, pb, sizeof pb);
    long long oc = stored_loc(dir, c, pc, sizeof pc);
    CHECK(strcmp(path, pb) == 0 && strcmp(path, pc) == 0); /* one segment */
    CHECK(oa < ob && ob < oc);

    /* same size, one byte of a changed: a fails, its neighbours do not */
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK_INT(pwrite(fd, "j", 1, oa + 16), 1);
    CHECK_INT(get_bytes(q, a, &out, &err), -EIO);
    CHECK_INT(out.len, 0); /* nothing written on a failed check */
    CHECK_HAS(buf_cstr(&err), "integrity check failed");
    CHECK_HAS(buf_cstr(&err), path);
    CHECK_INT(get_bytes(q, b, &out, NULL), 0);
    CHECK_STR(buf_cstr(&out), msg);

    /* b's record header altered (the id in it): refused */
    CHECK_INT(pwrite(fd, "X", 1, ob - 70), 1);
    buf_reset(&err);
    CHECK_INT(get_bytes(q, b, &out, &err), -EIO);
    CHECK_HAS(buf_cstr(&err), "no record header");
    close(fd);

    /* the segment cut inside c: c is refused, nothing of it is written */
    CHECK_INT(truncate(path, oc + 3), 0);
    buf_reset(&err);
    CHECK_INT(get_bytes(q, c, &out, &err), -EIO);
    CHECK_INT(out.len, 0);
    CHECK_HAS(buf_cstr(&err), "integrity check failed");

    /* the segment gone */
    CHECK_INT(unlink(path), 0);
    buf_reset(&err);
    CHECK_INT(get_bytes(q, c, &out, &err), -EIO);
    CHECK_HAS(buf_cstr(&err), "cannot be opened");

    /* unknown and malformed ids */
    buf_reset(&err);
    CHECK_INT(get_bytes(q, "20000101T000000Z-0000000000000000", &out, &err), -ENOENT);
    CHECK_HAS(buf_cstr(&err), "no such message");
    buf_reset(&err);
    CHECK_INT(get_bytes(q, "../index.sqlite", &out, &err), -ENOENT);
    CHECK_HAS(buf_cstr(&err), "not a quarantine id");
    CHECK_INT(quarantine_get(q, NULL, 1, NULL), -ENOENT);
    quarantine_close(q);
    buf_free(&err);
    buf_free(&out);
}

static void test_open_errors_and_reopen(void)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    buf err, out;
    buf_init(&err, 4096);
    buf_init(&out, 1 << 20);
    errno = 0;
    CHECK(quarantine_open(dir, 0, &err) == NULL);
    CHECK_INT(errno, ENOENT);
    CHECK_HAS(buf_cstr(&err), dir);
    quarantine_close(NULL);

    quarantine *q = quarantine_open(dir, 1, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    char id[QUARANTINE_ID_MAX];
    quarantine_meta m = {.received = 42, .subject = "再起動後も / after reopen"};
    CHECK_INT(quarantine_put(q, (const uint8_t *)"persist\0ed", 10, &m, 1, id, NULL), 0);
    quarantine_close(q);
    struct stat sb;
    char ix[400];
    snprintf(ix, sizeof ix, "%s/index.sqlite", dir);
    CHECK_INT(stat(ix, &sb), 0);
    CHECK_INT(sb.st_mode & 077, 0); /* the index is private too */

    q = quarantine_open(dir, 0, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    struct collect c = {0};
    CHECK_INT(quarantine_list(q, collect_fn, &c, NULL), 0);
    CHECK_INT(c.n, 1);
    CHECK_STR(c.subject[0], "再起動後も / after reopen");
    CHECK_INT(get_bytes(q, id, &out, NULL), 0);
    CHECK(out.len == 10 && memcmp(out.p, "persist\0ed", 10) == 0);
    quarantine_close(q);

    /* An index from a newer sekisho is refused, not misread. */
    sqlite3 *db;
    CHECK_INT(sqlite3_open(ix, &db), SQLITE_OK);
    CHECK_INT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    buf_reset(&err);
    CHECK(quarantine_open(dir, 0, &err) == NULL);
    CHECK_HAS(buf_cstr(&err), "newer");
    buf_free(&err);
    buf_free(&out);
}

static int rows_without_original(quarantine *q);

static void test_concurrent(void)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    quarantine *q = quarantine_open(dir, 1, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    enum { PER_CHILD = 60 };
    pid_t pids[2];
    for (int c = 0; c < 2; c++) {
        pids[c] = fork();
        if (pids[c] == 0) {
            quarantine *cq = quarantine_open(dir, 0, NULL);
            if (cq == NULL)
                _exit(2);
            int bad = 0;
            char id[QUARANTINE_ID_MAX], body[64];
            for (int i = 0; i < PER_CHILD; i++) {
                snprintf(body, sizeof body, "child %d message %d", c, i);
                /* child 0 puts one by one, child 1 in batches of 8 */
                int sync = c == 0 || i % 8 == 7;
                if (quarantine_put(cq, (const uint8_t *)body, strlen(body), NULL, c == 0, id,
                                   NULL) != 0 ||
                    !quarantine_id_valid(id))
                    bad++;
                if (c == 1 && sync && quarantine_sync(cq, NULL) != 0)
                    bad++;
            }
            quarantine_close(cq);
            _exit(bad ? 1 : 0);
        }
    }
    for (int c = 0; c < 2; c++) {
        int st = 0;
        waitpid(pids[c], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_INT(n_entries(q), 2 * PER_CHILD);
    /* each writer appends to its own segment (two if a UTC day ended meanwhile) */
    CHECK(count_files(dir, ".seg") >= 2 && count_files(dir, ".seg") <= 4);
    CHECK_INT(rows_without_original(q), 0);
    quarantine_close(q);
}

/* ---- durability under faults ------------------------------------------------ */

static const char *fault_point;
static int fault_crash;

static int fault_fn(const char *point)
{
    if (strcmp(point, fault_point) != 0)
        return 0;
    if (fault_crash)
        _exit(0); /* a crash: no cleanup runs */
    return -EIO;
}

struct verify {
    quarantine *q;
    int bad;
};

static int verify_fn(const quarantine_entry *e, void *arg)
{
    struct verify *v = arg;
    int fd = open("/dev/null", O_WRONLY);
    if (quarantine_get(v->q, e->id, fd, NULL) != 0)
        v->bad++;
    close(fd);
    return 0;
}

/* Every row must lead to an intact original. */
static int rows_without_original(quarantine *q)
{
    struct verify v = {q, 0};
    CHECK_INT(quarantine_list(q, verify_fn, &v, NULL), 0);
    return v.bad;
}

static void test_faults(void)
{
    static const char *const points[] = {"appended", "file-synced", "dirs-synced", "rows-inserted"};
    for (int batch = 0; batch <= 1; batch++) {
        for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
            if (batch && i == 0)
                continue; /* in a batch this happens at put time; tested below */
            char dir[300];
            new_dir(dir, sizeof dir);
            quarantine *q = quarantine_open(dir, 1, NULL);
            CHECK(q != NULL);
            if (q == NULL)
                return;
            char id[QUARANTINE_ID_MAX];
            CHECK_INT(quarantine_put(q, (const uint8_t *)"before", 6, NULL, 1, id, NULL), 0);

            /* 1. the step fails: error returned, no row, no bytes left */
            buf err;
            buf_init(&err, 4096);
            fault_point = points[i];
            fault_crash = 0;
            quarantine_set_fault_hook(fault_fn);
            int rc;
            if (batch) {
                CHECK_INT(quarantine_put(q, (const uint8_t *)"a", 1, NULL, 0, id, NULL), 0);
                CHECK_INT(quarantine_put(q, (const uint8_t *)"b", 1, NULL, 0, id, NULL), 0);
                rc = quarantine_sync(q, &err);
            } else {
                rc = quarantine_put(q, (const uint8_t *)"fails", 5, NULL, 1, id, &err);
            }
            quarantine_set_fault_hook(NULL);
            CHECK_INT(rc, -EIO);
            CHECK_HAS(buf_cstr(&err), "injected fault");
            CHECK_INT(n_entries(q), 1);
            CHECK_INT(segment_bytes(dir), record_size(6));
            CHECK_INT(rows_without_original(q), 0);
            buf_free(&err);

            /* 2. the process dies at that step: the index never names a record
             * that is missing or incomplete */
            pid_t pid = fork();
            if (pid == 0) {
                quarantine *cq = quarantine_open(dir, 0, NULL);
                fault_crash = 1;
                quarantine_set_fault_hook(fault_fn);
                char cid[QUARANTINE_ID_MAX];
                if (batch) {
                    quarantine_put(cq, (const uint8_t *)"c", 1, NULL, 0, cid, NULL);
                    quarantine_sync(cq, NULL);
                } else {
                    quarantine_put(cq, (const uint8_t *)"crash", 5, NULL, 1, cid, NULL);
                }
                _exit(3); /* not reached: the hook exits first */
            }
            int st = 0;
            waitpid(pid, &st, 0);
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            quarantine_close(q);
            q = quarantine_open(dir, 0, NULL);
            CHECK(q != NULL);
            if (q == NULL)
                return;
            CHECK_INT(n_entries(q), 1);
            CHECK_INT(rows_without_original(q), 0);
            /* the store still works after the crash */
            CHECK_INT(quarantine_put(q, (const uint8_t *)"after", 5, NULL, 1, id, NULL), 0);
            CHECK_INT(n_entries(q), 2);
            CHECK_INT(rows_without_original(q), 0);
            quarantine_close(q);
        }
    }
    /* A batch put that fails at write time fails alone; the batch goes on. */
    char dir[300];
    new_dir(dir, sizeof dir);
    quarantine *q = quarantine_open(dir, 1, NULL);
    char id[QUARANTINE_ID_MAX];
    CHECK_INT(quarantine_put(q, (const uint8_t *)"a", 1, NULL, 0, id, NULL), 0);
    fault_point = "appended";
    fault_crash = 0;
    quarantine_set_fault_hook(fault_fn);
    CHECK_INT(quarantine_put(q, (const uint8_t *)"b", 1, NULL, 0, id, NULL), -EIO);
    quarantine_set_fault_hook(NULL);
    CHECK_INT(quarantine_sync(q, NULL), 0);
    CHECK_INT(n_entries(q), 1);
    CHECK_INT(segment_bytes(dir), record_size(1)); /* b's partial record was cut off */
    CHECK_INT(rows_without_original(q), 0);

    /* A full batch syncs early inside put; if that fails, the put fails and so
     * does the caller's next sync, so nothing of the batch is taken as durable. */
    int fails = 0;
    for (int i = 0; i < 1100; i++) {
        if (i == 1024) {
            fault_point = "dirs-synced";
            quarantine_set_fault_hook(fault_fn);
        }
        if (quarantine_put(q, (const uint8_t *)"z", 1, NULL, 0, id, NULL) != 0)
            fails++;
        if (i == 1024)
            quarantine_set_fault_hook(NULL);
    }
    CHECK_INT(fails, 1);
    buf err;
    buf_init(&err, 4096);
    CHECK_INT(quarantine_sync(q, &err), -EIO);
    CHECK_HAS(buf_cstr(&err), "automatic sync");
    buf_free(&err);
    CHECK_INT(quarantine_sync(q, NULL), 0);
    /* nothing of the failed batch, nor of the puts after it, is indexed */
    CHECK_INT(n_entries(q), 1);
    CHECK_INT(segment_bytes(dir), record_size(1)); /* all cut off again */
    CHECK_INT(rows_without_original(q), 0);
    quarantine_close(q);
}

/* The order of the steps is the guarantee: data, then names, then the row. */
static char trace[256];
static int trace_fn(const char *point)
{
    size_t n = strlen(trace);
    snprintf(trace + n, sizeof trace - n, "%s%s", n ? " " : "", point);
    return 0;
}

static void test_order(void)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    quarantine *q = quarantine_open(dir, 1, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    char id[QUARANTINE_ID_MAX];
    trace[0] = 0;
    quarantine_set_fault_hook(trace_fn);
    CHECK_INT(quarantine_put(q, (const uint8_t *)"s", 1, NULL, 1, id, NULL), 0);
    CHECK_STR(trace, "appended file-synced dirs-synced rows-inserted");
    trace[0] = 0;
    CHECK_INT(quarantine_put(q, (const uint8_t *)"a", 1, NULL, 0, id, NULL), 0);
    CHECK_INT(quarantine_put(q, (const uint8_t *)"b", 1, NULL, 0, id, NULL), 0);
    CHECK_STR(trace, "appended appended");
    trace[0] = 0;
    CHECK_INT(quarantine_sync(q, NULL), 0);
    CHECK_STR(trace, "file-synced dirs-synced rows-inserted");
    quarantine_set_fault_hook(NULL);
    quarantine_close(q);
}

static int all_zero(const char *path, long long off, size_t n)
{
    uint8_t b[64];
    if (n > sizeof b || read_at(path, off, b, n) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static void test_purge(void)
{
    char dir[300];
    new_dir(dir, sizeof dir);
    quarantine *q = quarantine_open(dir, 1, NULL);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    char ids[4][QUARANTINE_ID_MAX];
    int64_t retain[] = {100, 200, 300, 400};
    for (int i = 0; i < 4; i++) {
        quarantine_part p = {"a.zip", "application/zip", "application/zip", 3, "cc"};
        quarantine_meta m = {
            .received = retain[i] - 50, .retain_until = retain[i], .parts = &p, .n_parts = 1};
        char body[32];
        snprintf(body, sizeof body, "original number %d", i);
        CHECK_INT(quarantine_put(q, (const uint8_t *)body, strlen(body), &m, 1, ids[i], NULL), 0);
    }
    char path[512], p1[512];
    long long off0 = stored_loc(dir, ids[0], path, sizeof path);
    long long off1 = stored_loc(dir, ids[1], p1, sizeof p1);
    uint64_t n = 99;
    int seen = 0;
    /* fn stopping the purge: its value comes back, and nothing is removed */
    CHECK_INT(quarantine_purge(q, 300, 0, stop_fn, &seen, &n, NULL), 42);
    CHECK_INT(seen, 2);
    CHECK_INT(n, 0);
    CHECK_INT(n_entries(q), 4);
    seen = 0;
    CHECK_INT(quarantine_purge(q, 300, 1, count_entry, &seen, &n, NULL), 0);
    CHECK_INT(n, 2);
    CHECK_INT(seen, 2);
    CHECK_INT(n_entries(q), 4); /* dry run changes nothing */
    CHECK(!all_zero(path, off0, 17));
    /* The segment is still this handle's (and holds kept originals): the purged
     * originals' bytes are erased in place, the others stay intact. */
    CHECK_INT(quarantine_purge(q, 300, 0, NULL, NULL, &n, NULL), 0);
    CHECK_INT(n, 2);
    CHECK_INT(n_entries(q), 2);
    CHECK_INT(count_files(dir, ".seg"), 1);
    CHECK(all_zero(path, off0, 17));
    CHECK(all_zero(p1, off1, 17));
    CHECK_INT(quarantine_get(q, ids[0], 1, NULL), -ENOENT);
    CHECK_INT(rows_without_original(q), 0);
    /* parts went with their message */
    sqlite3 *db;
    char ix[400];
    snprintf(ix, sizeof ix, "%s/index.sqlite", dir);
    CHECK_INT(sqlite3_open(ix, &db), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM parts", -1, &st, NULL);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), 2);
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK_INT(quarantine_purge(q, 300, 0, NULL, NULL, &n, NULL), 0);
    CHECK_INT(n, 0);

    /* While a writer holds the segment, purging its last rows keeps the file. */
    quarantine *other = quarantine_open(dir, 0, NULL);
    CHECK(other != NULL);
    CHECK_INT(quarantine_purge(other, 350, 0, NULL, NULL, &n, NULL), 0);
    CHECK_INT(n, 1);
    CHECK_INT(count_files(dir, ".seg"), 1);
    /* Once no writer holds it and no row refers to it, the segment goes. */
    quarantine_close(q);
    CHECK_INT(quarantine_purge(other, 500, 0, NULL, NULL, &n, NULL), 0);
    CHECK_INT(n, 1);
    CHECK_INT(count_files(dir, ".seg"), 0);
    CHECK_INT(n_entries(other), 0);
    quarantine_close(other);
}

/* An index of schema 1 (one file per original) is migrated on open; its
 * originals are still served and purged. */
static void test_migrate_v1(void)
{
    char dir[300], path[600], ix[400];
    new_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/originals/2026/11/23", dir);
    CHECK_INT(fileio_mkdir_p(path, 0700), 0);
    const char *id = "20261123T050033Z-0123456789abcdef";
    const char *orig = "Subject: v1\r\n\r\nstored by schema 1\r\n";
    snprintf(path, sizeof path, "%s/originals/2026/11/23/%s.eml", dir, id);
    CHECK_INT(fileio_write_atomic(path, orig, strlen(orig), 0600, 1), 0);
    snprintf(ix, sizeof ix, "%s/index.sqlite", dir);
    sqlite3 *db;
    CHECK_INT(sqlite3_open(ix, &db), SQLITE_OK);
    char sql[2048];
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL;"
             "CREATE TABLE messages (id TEXT PRIMARY KEY NOT NULL, received INTEGER NOT NULL,"
             " mail_from TEXT NOT NULL, rcpt_to TEXT NOT NULL, subject TEXT NOT NULL,"
             " message_id TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,"
             " verdict TEXT NOT NULL, retain_until INTEGER NOT NULL,"
             " path TEXT NOT NULL UNIQUE) WITHOUT ROWID;"
             "CREATE INDEX messages_received ON messages(received, id);"
             "CREATE INDEX messages_retain ON messages(retain_until);"
             "CREATE TABLE parts (qid TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
             " idx INTEGER NOT NULL, filename TEXT NOT NULL, declared_type TEXT NOT NULL,"
             " detected_type TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,"
             " PRIMARY KEY (qid, idx)) WITHOUT ROWID;"
             "INSERT INTO messages VALUES ('%s', 1000, 'a@example.com', 'b@example.jp', 'v1',"
             " '<v1@x>', %zu, '%s', 'sanitized', 2000, 'originals/2026/11/23/%s.eml');"
             "INSERT INTO parts VALUES ('%s', 0, 'x.pdf', 'application/pdf', 'application/pdf',"
             " 5, 'dd');"
             "PRAGMA user_version = 1;",
             id, strlen(orig), "3c1a6b6a3b2d8f5c0f1f0a6e5f2f2c1a8e7d6c5b4a39281706f5e4d3c2b1a099",
             id, id);
    /* the hash above is wrong on purpose for the first get; fixed below */
    CHECK_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    uint8_t md[32];
    char hex[65];
    digest_sha256(orig, strlen(orig), md);
    digest_hex(md, sizeof md, hex);
    buf err, out;
    buf_init(&err, 4096);
    buf_init(&out, 1 << 16);
    quarantine *q = quarantine_open(dir, 0, &err);
    CHECK(q != NULL);
    if (q == NULL) {
        fprintf(stderr, "%s\n", buf_cstr(&err));
        sqlite3_close(db);
        return;
    }
    CHECK_INT(get_bytes(q, id, &out, &err), -EIO); /* the check still applies */
    snprintf(sql, sizeof sql, "UPDATE messages SET sha256 = '%s'", hex);
    CHECK_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    CHECK_INT(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), 2);
    sqlite3_finalize(st);
    CHECK_INT(sqlite3_prepare_v2(db, "SELECT count(*) FROM parts", -1, &st, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), 1); /* the rebuild did not cascade */
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK_INT(get_bytes(q, id, &out, &err), 0);
    CHECK_STR(buf_cstr(&out), orig);
    /* new puts go to segments beside it */
    char nid[QUARANTINE_ID_MAX];
    quarantine_meta keep = {.received = 1, .retain_until = 5000};
    CHECK_INT(quarantine_put(q, (const uint8_t *)"new", 3, &keep, 1, nid, NULL), 0);
    CHECK_INT(n_entries(q), 2);
    CHECK_INT(rows_without_original(q), 0);
    uint64_t n = 0;
    CHECK_INT(quarantine_purge(q, 3000, 0, NULL, NULL, &n, NULL), 0);
    CHECK_INT(n, 1);
    struct stat sb;
    CHECK(stat(path, &sb) < 0 && errno == ENOENT);
    CHECK_INT(n_entries(q), 1);
    quarantine_close(q);
    buf_free(&err);
    buf_free(&out);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/quarantine_test.XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_roundtrip();
    test_ids();
    test_list_show();
    test_batch();
    test_tamper_and_unknown();
    test_open_errors_and_reopen();
    test_concurrent();
    test_faults();
    test_order();
    test_purge();
    test_migrate_v1();
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    TEST_DONE();
}
