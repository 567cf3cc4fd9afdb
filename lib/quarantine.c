/*
 * quarantine - the embedded backend of the store of originals: append-only
 * segment files under <dir>/originals/YYYY/MM/DD/ and an SQLite index at
 * <dir>/index.sqlite. See quarantine.h for the contract shared with other
 * backends; this comment says how this one keeps it.
 *
 * Segments. A handle appends its originals to one segment file at a time,
 * "<dir>/originals/YYYY/MM/DD/<UTC time>-<16 hex>.seg" (created O_EXCL, 0600),
 * one record per original:
 *     "SEKISHO-QREC1 <id> <size> <sha256 hex>\n" <size bytes, as received> "\n"
 * The index row names the segment and the offset of the first original byte.
 * The header makes every segment self-describing (an auditor, or a future
 * repair tool, can walk it without the index), and `get` checks it against the
 * row before serving. A handle starts a new segment when the UTC day changes
 * or the segment reaches SEGMENT_MAX; it holds a shared flock() on its segment
 * while it may append to it, and purge removes a segment file only under an
 * exclusive flock() once no row refers to it.
 *
 * Durability ordering. The index is the authority: an entry exists when its
 * row is committed, and a row is committed only after its record is durable.
 *   put(sync=1): append the record (one write), fdatasync the segment, fsync
 *     the day directory and each directory above it up to originals/ if the
 *     segment is new (so that directories made just now, by us or by a
 *     concurrent process, are durable too), then BEGIN IMMEDIATE / INSERT /
 *     COMMIT with synchronous=FULL in WAL mode (the commit fsyncs the WAL).
 *     Only then does put return 0.
 *   put(sync=0): the same append without any sync; the row is kept in memory.
 *     quarantine_sync() fdatasyncs the segment(s) written since the last sync
 *     (one call for the whole batch, where one file per original cost one
 *     fsync each), then any new directories, and only then inserts all pending
 *     rows in one transaction and commits it. (The rows are inserted at sync
 *     time rather than in a transaction held open since the first put, so that
 *     a batch does not hold the index's write lock against other processes for
 *     its whole duration; the guarantee is the same.)
 * A crash or failure at any step therefore leaves, at worst, record bytes
 * without a row (an orphan, never served by get/list), never a row whose
 * record is missing or incomplete. A failed put cuts its partial record off
 * again; a failed sync discards the whole batch (no rows; the segment is cut
 * back to where the batch began and is not written again): the caller must put
 * those originals again.
 *
 * Ids are unique by their 64 random bits; the index's primary key is the
 * final check (a clash fails the commit, and the batch with it).
 * A handle must not cross fork(); each process opens its own. Concurrent
 * processes are safe: each appends to its own segments, and the index is
 * serialized by SQLite (busy_timeout).
 *
 * Index schema version 1 (one file per original, "<id>.eml") is migrated to
 * version 2 on first open for writing; its rows keep their files (offset NULL
 * means "the whole file"), and get, list, show and purge serve both kinds.
 */
#include "quarantine.h"
#include "util/digest.h"
#include "util/fileio.h"
#include "util/msg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION  2
#define BUSY_TIMEOUT_MS 30000
#define PENDING_MAX     1024
#define IO_CHUNK        65536
#define SEGMENT_MAX     ((uint64_t)1 << 30) /* start a new segment beyond 1 GiB */
#define REC_MAGIC       "SEKISHO-QREC1"
/* "SEKISHO-QREC1 " id " " size " " sha256 "\n": 14 + 33 + 1 + 20 + 1 + 64 + 1 */
#define REC_HEADER_MAX 160

typedef struct row {
    char id[QUARANTINE_ID_MAX];
    char *relpath; /* the segment (or, schema 1, the file) */
    int64_t off;   /* first original byte in the segment; -1: the whole file */
    int64_t received, retain_until;
    uint64_t size;
    char sha256[DIGEST_SHA256_HEX];
    char *from, *to, *subject, *message_id, *verdict;
    quarantine_part *parts;
    size_t n_parts;
} row;

/* A segment this handle has appended to since the last sync. */
typedef struct segment {
    int fd;
    char *relpath;
    int year, mon, mday; /* its UTC day */
    uint64_t end;        /* append offset */
    uint64_t synced_end; /* end at the last successful sync (cut back to it on failure) */
    int dirs_unsynced;   /* created since the last sync: its directories need an fsync */
    int dirty;
} segment;

struct quarantine {
    char *dir;
    sqlite3 *db;
    sqlite3_stmt *ins_msg, *ins_part; /* prepared once per handle */
    row *pend;
    size_t n_pend, cap_pend;
    segment cur;  /* fd -1: none open */
    segment *old; /* rotated away with unsynced records */
    size_t n_old;
    int lost; /* an automatic sync inside put failed: the next sync reports it */
};

static quarantine_fault_fn fault_hook;

void quarantine_set_fault_hook(quarantine_fault_fn hook)
{
    fault_hook = hook;
}

static int fault(const char *point)
{
    return fault_hook ? fault_hook(point) : 0;
}

__attribute__((format(printf, 3, 4))) static int fail(buf *err, int rc, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        buf_vprintf(err, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int sqlite_errno(int src)
{
    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    default:
        return -EIO;
    }
}

static int dbfail(quarantine *q, buf *err, int src, const char *what)
{
    return fail(err, sqlite_errno(src), "%s/index.sqlite: %s: %s", q->dir, what,
                sqlite3_errmsg(q->db));
}

static char *dupstr(const char *s)
{
    return xstrdup(s ? s : "");
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

int quarantine_id_valid(const char *id)
{
    static const char shape[] = "dddddddd"
                                "T"
                                "dddddd"
                                "Z-"
                                "xxxxxxxxxxxxxxxx";
    if (id == NULL)
        return 0;
    size_t i = 0;
    for (; shape[i]; i++) {
        char c = id[i];
        switch (shape[i]) {
        case 'd':
            if (c < '0' || c > '9')
                return 0;
            break;
        case 'x':
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                return 0;
            break;
        default:
            if (c != shape[i])
                return 0;
        }
    }
    return id[i] == 0;
}

/* A stored relative path must stay inside originals/. */
static int relpath_ok(const char *p)
{
    if (strncmp(p, "originals/", 10) != 0 || strstr(p, "..") || strstr(p, "//"))
        return 0;
    return 1;
}

static int path_join(char *out, size_t sz, const char *a, const char *b)
{
    return snprintf(out, sz, "%s/%s", a, b) < (int)sz ? 0 : -ENAMETOOLONG;
}

static int fsync_dir(const char *path, buf *err)
{
    int rc = fileio_fsync_dir(path);
    if (rc)
        return fail(err, rc, "%s: fsync directory: %s", path, strerror(-rc));
    return 0;
}

/* ---- schema ---------------------------------------------------------------- */

/* The messages table of schema 2; schema 1 had "path TEXT NOT NULL UNIQUE"
 * and no offset (one file per message). */
#define MESSAGES_V2(name)                                                                          \
    "CREATE TABLE " name " ("                                                                      \
    " id TEXT PRIMARY KEY NOT NULL,"                                                               \
    " received INTEGER NOT NULL,"                                                                  \
    " mail_from TEXT NOT NULL,"                                                                    \
    " rcpt_to TEXT NOT NULL,"                                                                      \
    " subject TEXT NOT NULL,"                                                                      \
    " message_id TEXT NOT NULL,"                                                                   \
    " size INTEGER NOT NULL,"                                                                      \
    " sha256 TEXT NOT NULL,"                                                                       \
    " verdict TEXT NOT NULL,"                                                                      \
    " retain_until INTEGER NOT NULL,"                                                              \
    " path TEXT NOT NULL,"                                                                         \
    " offset INTEGER"                                                                              \
    ") WITHOUT ROWID;"

#define MESSAGES_INDEXES                                                                           \
    "CREATE INDEX messages_received ON messages(received, id);"                                    \
    "CREATE INDEX messages_retain ON messages(retain_until);"                                      \
    "CREATE INDEX messages_path ON messages(path);"

static const char schema_v2[] = MESSAGES_V2("messages") MESSAGES_INDEXES
    "CREATE TABLE parts ("
    " qid TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL,"
    " filename TEXT NOT NULL,"
    " declared_type TEXT NOT NULL,"
    " detected_type TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " PRIMARY KEY (qid, idx)"
    ") WITHOUT ROWID;"
    "PRAGMA user_version = 2;";

/* Schema 1 -> 2: the messages table is rebuilt (SQLite cannot drop a UNIQUE
 * constraint in place); parts are untouched. Runs with foreign keys off, so
 * that dropping the old table does not cascade into parts. */
static const char migrate_v1_v2[] =
    MESSAGES_V2("messages_v2") "INSERT INTO messages_v2 SELECT id, received, mail_from, rcpt_to, "
                               "subject, message_id,"
                               " size, sha256, verdict, retain_until, path, NULL FROM messages;"
                               "DROP TABLE messages;"
                               "ALTER TABLE messages_v2 RENAME TO messages;" MESSAGES_INDEXES
                               "PRAGMA user_version = 2;";

static int pragma_int(quarantine *q, const char *sql, int64_t *out, buf *err)
{
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
    if (src == SQLITE_OK) {
        src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            src = SQLITE_OK;
        }
    }
    int rc = src == SQLITE_OK ? 0 : dbfail(q, err, src, sql);
    sqlite3_finalize(st);
    return rc;
}

static int exec(quarantine *q, const char *sql, buf *err)
{
    int src = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
    return src == SQLITE_OK ? 0 : dbfail(q, err, src, sql);
}

static int setup_db(quarantine *q, buf *err)
{
    int rc;
    sqlite3_busy_timeout(q->db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(q->db, 1);

    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        if (strcmp(col_text(st, 0), "wal") != 0) {
            sqlite3_finalize(st);
            return fail(err, -EIO, "%s/index.sqlite: cannot switch to WAL journal mode", q->dir);
        }
        src = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (src != SQLITE_OK)
        return dbfail(q, err, src, "PRAGMA journal_mode=WAL");
    if ((rc = exec(q, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err)))
        return rc;

    int64_t version = 0;
    if ((rc = pragma_int(q, "PRAGMA user_version", &version, err)))
        return rc;
    if (version == SCHEMA_VERSION)
        return 0;
    if (version > SCHEMA_VERSION)
        return fail(err, -EPROTO,
                    "%s/index.sqlite: schema version %lld is newer than this sekisho "
                    "supports (%d)",
                    q->dir, (long long)version, SCHEMA_VERSION);
    /* version 0: create; version 1: migrate. Re-checked under the write lock
     * (another process may have been first). Foreign keys are off meanwhile
     * (the pragma is a no-op inside a transaction). */
    if ((rc = exec(q, "PRAGMA foreign_keys=OFF; BEGIN IMMEDIATE", err)))
        return rc;
    rc = pragma_int(q, "PRAGMA user_version", &version, err);
    if (rc == 0 && version == 0)
        rc = exec(q, schema_v2, err);
    else if (rc == 0 && version == 1)
        rc = exec(q, migrate_v1_v2, err);
    if (rc == 0)
        rc = exec(q, "COMMIT", err);
    if (rc)
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    int rc2 = exec(q, "PRAGMA foreign_keys=ON", err);
    return rc ? rc : rc2;
}

/* ---- open / close ------------------------------------------------------------ */

quarantine *quarantine_open(const char *dir, int create, buf *err)
{
    char path[PATH_MAX];
    int rc = 0;
    if (dir == NULL || *dir == 0) {
        fail(err, -EINVAL, "quarantine: no directory given");
        errno = EINVAL;
        return NULL;
    }
    quarantine *q = xcalloc(1, sizeof *q);
    q->dir = xstrdup(dir);
    if (path_join(path, sizeof path, dir, "index.sqlite")) {
        rc = fail(err, -ENAMETOOLONG, "%s: path too long", dir);
        goto out;
    }
    if (create) {
        char orig[PATH_MAX];
        if (path_join(orig, sizeof orig, dir, "originals")) {
            rc = fail(err, -ENAMETOOLONG, "%s: path too long", dir);
            goto out;
        }
        struct stat sb;
        int existed = stat(orig, &sb) == 0;
        if ((rc = fileio_mkdir_p(orig, 0700))) {
            fail(err, rc, "%s: cannot create: %s", orig, strerror(-rc));
            goto out;
        }
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            rc = fail(err, -errno, "%s: cannot create: %s", path, strerror(errno));
            goto out;
        }
        close(fd);
        if (!existed) {
            /* Make the new directories durable: dir itself, and its parent. */
            char parent[PATH_MAX];
            snprintf(parent, sizeof parent, "%s/..", dir);
            if ((rc = fsync_dir(dir, err)) || (rc = fsync_dir(parent, err)))
                goto out;
        }
    } else {
        struct stat sb;
        if (stat(dir, &sb) < 0) {
            rc = fail(err, -errno, "quarantine directory %s: %s", dir, strerror(errno));
            goto out;
        }
        if (!S_ISDIR(sb.st_mode)) {
            rc = fail(err, -ENOTDIR, "quarantine directory %s: not a directory", dir);
            goto out;
        }
        if (stat(path, &sb) < 0) {
            rc = fail(err, -errno, "%s: %s (no quarantine index here)", path, strerror(errno));
            goto out;
        }
    }
    int src = sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        if (q->db)
            rc = dbfail(q, err, src, "open");
        else
            rc = fail(err, -ENOMEM, "%s: cannot open: out of memory", path);
        goto out;
    }
    rc = setup_db(q, err);
out:
    if (rc) {
        quarantine_close(q);
        errno = -rc;
        return NULL;
    }
    return q;
}

static void row_free(row *r)
{
    free(r->relpath);
    free(r->from);
    free(r->to);
    free(r->subject);
    free(r->message_id);
    free(r->verdict);
    for (size_t i = 0; i < r->n_parts; i++) {
        free((char *)r->parts[i].filename);
        free((char *)r->parts[i].declared_type);
        free((char *)r->parts[i].detected_type);
        free((char *)r->parts[i].sha256);
    }
    free(r->parts);
    memset(r, 0, sizeof *r);
}

static void segment_close(segment *s)
{
    if (s->fd >= 0)
        close(s->fd); /* also releases its flock */
    free(s->relpath);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}

/* Cuts s back to where it stood at its last sync (best effort: the records
 * beyond have no rows, and would otherwise stay as orphans), and stops
 * appending to it. A segment that never held a synced record is removed. */
static void segment_abandon(quarantine *q, segment *s)
{
    if (s->fd >= 0 && s->relpath) {
        if (s->synced_end == 0) {
            char path[PATH_MAX];
            if (path_join(path, sizeof path, q->dir, s->relpath) == 0)
                unlink(path);
        } else if (ftruncate(s->fd, (off_t)s->synced_end) == 0) {
            fdatasync(s->fd);
        }
    }
    segment_close(s);
}

/* Forgets the pending batch. With failed, its records are cut off again and
 * the segments it used are not appended to any more. */
static void pending_clear(quarantine *q, int failed)
{
    for (size_t i = 0; i < q->n_pend; i++)
        row_free(&q->pend[i]);
    q->n_pend = 0;
    for (size_t i = 0; i < q->n_old; i++) {
        if (failed)
            segment_abandon(q, &q->old[i]);
        else
            segment_close(&q->old[i]);
    }
    free(q->old);
    q->old = NULL;
    q->n_old = 0;
    if (failed && q->cur.fd >= 0 && q->cur.dirty)
        segment_abandon(q, &q->cur);
}

void quarantine_close(quarantine *q)
{
    if (q == NULL)
        return;
    if ((q->n_pend > 0 || q->lost) && q->db) {
        buf e;
        buf_init(&e, 4096);
        size_t n = q->n_pend;
        if (quarantine_sync(q, &e) != 0)
            msg_warn("quarantine %s: %zu unsynced original(s) could not be made durable at "
                     "close and were discarded: %s",
                     q->dir, n, buf_cstr(&e));
        buf_free(&e);
    }
    pending_clear(q, 1);
    free(q->pend);
    segment_close(&q->cur);
    sqlite3_finalize(q->ins_msg);
    sqlite3_finalize(q->ins_part);
    if (q->db)
        sqlite3_close_v2(q->db);
    free(q->dir);
    free(q);
}

/* ---- put / sync --------------------------------------------------------------- */

/* Random bits for ids. Not pooled: a pool would be copied by fork(), and two
 * processes would then draw the same ids. */
static int random_bytes(uint8_t *out, size_t n, buf *err)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(out + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return fail(err, -errno, "getrandom: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    return 0;
}

static int make_id(char id[QUARANTINE_ID_MAX], struct tm *tm, buf *err)
{
    uint8_t r[8];
    int rc = random_bytes(r, sizeof r, err);
    if (rc)
        return rc;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (gmtime_r(&ts.tv_sec, tm) == NULL || tm->tm_year + 1900 > 9999 || tm->tm_year < 0)
        return fail(err, -ERANGE, "system clock out of range");
    char hex[2 * sizeof r + 1], text[128];
    digest_hex(r, sizeof r, hex);
    int len = snprintf(text, sizeof text, "%04d%02d%02dT%02d%02d%02dZ-%s", tm->tm_year + 1900,
                       tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec, hex);
    if (len < 0 || len >= QUARANTINE_ID_MAX)
        return fail(err, -ERANGE, "cannot format a quarantine id");
    memcpy(id, text, (size_t)len + 1);
    return 0;
}

/* Path of originals/ (level 0) or of its year (1), month (2), day (3) directory. */
static int level_dir(const quarantine *q, int y, int m, int d, int level, char *out, size_t sz)
{
    int n;
    switch (level) {
    case 0:
        n = snprintf(out, sz, "%s/originals", q->dir);
        break;
    case 1:
        n = snprintf(out, sz, "%s/originals/%04d", q->dir, y);
        break;
    case 2:
        n = snprintf(out, sz, "%s/originals/%04d/%02d", q->dir, y, m);
        break;
    default:
        n = snprintf(out, sz, "%s/originals/%04d/%02d/%02d", q->dir, y, m, d);
        break;
    }
    return n >= 0 && (size_t)n < sz ? 0 : -ENAMETOOLONG;
}

/* fsyncs the day directory of s and each one above it up to originals/. */
static int sync_segment_dirs(quarantine *q, const segment *s, buf *err)
{
    char d[PATH_MAX];
    int rc = 0;
    for (int level = 3; level >= 0 && rc == 0; level--) {
        if ((rc = level_dir(q, s->year, s->mon, s->mday, level, d, sizeof d)))
            return fail(err, rc, "%s: path too long", q->dir);
        rc = fsync_dir(d, err);
    }
    return rc;
}

/* Opens a new segment for the UTC day tm as q->cur (which must be closed). */
static int segment_open(quarantine *q, const struct tm *tm, buf *err)
{
    segment *s = &q->cur;
    int y = tm->tm_year + 1900, m = tm->tm_mon + 1, d = tm->tm_mday, rc;
    char day[PATH_MAX], path[PATH_MAX];
    for (int level = 1; level <= 3; level++) {
        if ((rc = level_dir(q, y, m, d, level, day, sizeof day)))
            return fail(err, rc, "%s: path too long", q->dir);
        if (mkdir(day, 0700) < 0 && errno != EEXIST)
            return fail(err, -errno, "%s: cannot create: %s", day, strerror(errno));
    }
    for (int attempt = 0; attempt < 8; attempt++) {
        char name[QUARANTINE_ID_MAX];
        struct tm now;
        if ((rc = make_id(name, &now, err)))
            return rc;
        if (snprintf(path, sizeof path, "%s/%s.seg", day, name) >= (int)sizeof path)
            return fail(err, -ENAMETOOLONG, "%s: path too long", day);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return fail(err, -errno, "%s: cannot create: %s", path, strerror(errno));
        /* Held while this handle may append: purge never removes it meanwhile. */
        if (flock(fd, LOCK_SH) < 0) {
            rc = fail(err, -errno, "%s: flock: %s", path, strerror(errno));
            close(fd);
            unlink(path);
            return rc;
        }
        s->fd = fd;
        s->relpath = xstrdup(path + strlen(q->dir) + 1);
        s->year = y;
        s->mon = m;
        s->mday = d;
        s->end = s->synced_end = 0;
        s->dirs_unsynced = 1;
        s->dirty = 0;
        return 0;
    }
    return fail(err, -EEXIST, "%s: could not find a free segment name", day);
}

/* Moves q->cur to q->old (it has unsynced records) or closes it. */
static void segment_retire(quarantine *q)
{
    if (q->cur.fd < 0)
        return;
    if (!q->cur.dirty && !q->cur.dirs_unsynced) {
        segment_close(&q->cur);
        return;
    }
    segment *no = realloc(q->old, (q->n_old + 1) * sizeof *no);
    if (no == NULL)
        msg_fatal("out of memory");
    q->old = no;
    q->old[q->n_old++] = q->cur;
    memset(&q->cur, 0, sizeof q->cur);
    q->cur.fd = -1;
}

static int record_header(char out[REC_HEADER_MAX], const char *id, uint64_t size,
                         const char *sha256)
{
    int n = snprintf(out, REC_HEADER_MAX, REC_MAGIC " %s %llu %s\n", id, (unsigned long long)size,
                     sha256);
    return n > 0 && n < REC_HEADER_MAX ? n : -1;
}

/* Appends the original's record to the current segment; on success r->id,
 * r->relpath, r->off, r->size, r->sha256 are set. On failure the partial
 * record is cut off again (or, if that fails, the segment is given up). */
static int append_record(quarantine *q, const uint8_t *orig, size_t n, row *r, buf *err)
{
    uint8_t md[DIGEST_SHA256_LEN];
    digest_sha256(orig, n, md);
    digest_hex(md, sizeof md, r->sha256);
    r->size = n;
    struct tm tm;
    int rc = make_id(r->id, &tm, err);
    if (rc)
        return rc;
    segment *s = &q->cur;
    if (s->fd >= 0 && (s->year != tm.tm_year + 1900 || s->mon != tm.tm_mon + 1 ||
                       s->mday != tm.tm_mday || s->end + n > SEGMENT_MAX))
        segment_retire(q);
    if (s->fd < 0 && (rc = segment_open(q, &tm, err)))
        return rc;

    char hdr[REC_HEADER_MAX];
    int hl = record_header(hdr, r->id, n, r->sha256);
    if (hl < 0)
        return fail(err, -ERANGE, "cannot format a record header");
    struct iovec iov[3] = {
        {hdr, (size_t)hl},
        {(void *)(orig ? orig : (const uint8_t *)""), n},
        {"\n", 1},
    };
    size_t want = (size_t)hl + n + 1, done = 0;
    int iovi = 0;
    while (done < want) {
        ssize_t w = writev(s->fd, iov + iovi, 3 - iovi);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = fail(err, w < 0 ? -errno : -EIO, "%s/%s: write: %s", q->dir, s->relpath,
                      strerror(w < 0 ? errno : EIO));
            break;
        }
        done += (size_t)w;
        while (iovi < 3 && (size_t)w >= iov[iovi].iov_len) {
            w -= (ssize_t)iov[iovi].iov_len;
            iovi++;
        }
        if (iovi < 3) {
            iov[iovi].iov_base = (char *)iov[iovi].iov_base + w;
            iov[iovi].iov_len -= (size_t)w;
        }
    }
    if (rc == 0 && (rc = fault("appended")))
        fail(err, rc, "%s/%s: injected fault after append", q->dir, s->relpath);
    if (rc) {
        if (ftruncate(s->fd, (off_t)s->end) < 0) {
            /* Cannot cut just this record off: the segment goes back to its
             * last sync, which also drops the batch's earlier records in it,
             * so the whole batch fails (the next sync reports it). */
            if (s->dirty && q->n_pend > 0)
                q->lost = rc;
            segment_abandon(q, s);
        }
        return rc;
    }
    r->relpath = xstrdup(s->relpath);
    r->off = (int64_t)(s->end + (uint64_t)hl);
    s->end += want;
    s->dirty = 1;
    return 0;
}

static void row_set_meta(row *r, const quarantine_meta *m)
{
    quarantine_meta none;
    if (m == NULL) {
        memset(&none, 0, sizeof none);
        none.received = (int64_t)time(NULL);
        m = &none;
    }
    r->received = m->received;
    r->retain_until = m->retain_until;
    r->from = dupstr(m->from);
    r->to = dupstr(m->to);
    r->subject = dupstr(m->subject);
    r->message_id = dupstr(m->message_id);
    r->verdict = dupstr(m->verdict);
    r->n_parts = m->n_parts;
    if (m->n_parts) {
        r->parts = xcalloc(m->n_parts, sizeof *r->parts);
        for (size_t i = 0; i < m->n_parts; i++) {
            const quarantine_part *s = &m->parts[i];
            quarantine_part *d = &r->parts[i];
            d->filename = dupstr(s->filename);
            d->declared_type = dupstr(s->declared_type);
            d->detected_type = dupstr(s->detected_type);
            d->size = s->size;
            d->sha256 = dupstr(s->sha256);
        }
    }
}

/* Inserts rows in one transaction and commits it (durable: synchronous=FULL).
 * *committing is set once COMMIT has been tried: if COMMIT then fails, its WAL
 * frames may still be on disk and be recovered after a crash, so the caller
 * must not cut the records off (an orphan is harmless; a row without its
 * record is not). */
static int insert_rows(quarantine *q, const row *rows, size_t n, int *committing, buf *err)
{
    *committing = 0;
    int rc = 0, src = SQLITE_OK;
    if (q->ins_msg == NULL)
        src = sqlite3_prepare_v2(q->db,
                                 "INSERT INTO messages (id, received, mail_from, rcpt_to, "
                                 "subject, message_id, size, sha256, verdict, retain_until, "
                                 "path, offset) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                                 -1, &q->ins_msg, NULL);
    if (src == SQLITE_OK && q->ins_part == NULL)
        src = sqlite3_prepare_v2(q->db,
                                 "INSERT INTO parts (qid, idx, filename, declared_type, "
                                 "detected_type, size, sha256) VALUES (?,?,?,?,?,?,?)",
                                 -1, &q->ins_part, NULL);
    if (src != SQLITE_OK)
        return dbfail(q, err, src, "prepare insert");
    if ((rc = exec(q, "BEGIN IMMEDIATE", err)))
        return rc;
    sqlite3_stmt *sm = q->ins_msg, *sp = q->ins_part;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const row *r = &rows[i];
        sqlite3_reset(sm);
        sqlite3_bind_text(sm, 1, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(sm, 2, r->received);
        sqlite3_bind_text(sm, 3, r->from, -1, SQLITE_STATIC);
        sqlite3_bind_text(sm, 4, r->to, -1, SQLITE_STATIC);
        sqlite3_bind_text(sm, 5, r->subject, -1, SQLITE_STATIC);
        sqlite3_bind_text(sm, 6, r->message_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(sm, 7, (sqlite3_int64)r->size);
        sqlite3_bind_text(sm, 8, r->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_text(sm, 9, r->verdict, -1, SQLITE_STATIC);
        sqlite3_bind_int64(sm, 10, r->retain_until);
        sqlite3_bind_text(sm, 11, r->relpath, -1, SQLITE_STATIC);
        sqlite3_bind_int64(sm, 12, r->off);
        if ((src = sqlite3_step(sm)) != SQLITE_DONE) {
            rc = dbfail(q, err, src, "insert message");
            break;
        }
        for (size_t j = 0; j < r->n_parts; j++) {
            const quarantine_part *p = &r->parts[j];
            sqlite3_reset(sp);
            sqlite3_bind_text(sp, 1, r->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(sp, 2, (sqlite3_int64)j);
            sqlite3_bind_text(sp, 3, p->filename, -1, SQLITE_STATIC);
            sqlite3_bind_text(sp, 4, p->declared_type, -1, SQLITE_STATIC);
            sqlite3_bind_text(sp, 5, p->detected_type, -1, SQLITE_STATIC);
            sqlite3_bind_int64(sp, 6, (sqlite3_int64)p->size);
            sqlite3_bind_text(sp, 7, p->sha256, -1, SQLITE_STATIC);
            if ((src = sqlite3_step(sp)) != SQLITE_DONE) {
                rc = dbfail(q, err, src, "insert part");
                break;
            }
        }
    }
    sqlite3_reset(sm);
    sqlite3_reset(sp);
    sqlite3_clear_bindings(sm);
    sqlite3_clear_bindings(sp);
    if (rc == 0 && (rc = fault("rows-inserted")))
        fail(err, rc, "%s/index.sqlite: injected fault before commit", q->dir);
    if (rc == 0) {
        *committing = 1;
        rc = exec(q, "COMMIT", err);
    }
    if (rc)
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Makes the records of the segments written since the last sync durable, then
 * the directories of new segments. */
static int sync_segments(quarantine *q, buf *err)
{
    int rc = 0;
    for (size_t i = 0; i <= q->n_old && rc == 0; i++) {
        segment *s = i < q->n_old ? &q->old[i] : &q->cur;
        if (s->fd < 0 || !s->dirty)
            continue;
        if (fdatasync(s->fd) < 0)
            rc = fail(err, -errno, "%s/%s: fdatasync: %s", q->dir, s->relpath, strerror(errno));
    }
    if (rc == 0 && (rc = fault("file-synced")))
        fail(err, rc, "%s: injected fault after the segment fsync", q->dir);
    for (size_t i = 0; i <= q->n_old && rc == 0; i++) {
        segment *s = i < q->n_old ? &q->old[i] : &q->cur;
        if (s->fd >= 0 && s->dirs_unsynced)
            rc = sync_segment_dirs(q, s, err);
    }
    if (rc == 0 && (rc = fault("dirs-synced")))
        fail(err, rc, "%s: injected fault after directory fsync", q->dir);
    return rc;
}

/* After a successful commit: the segments' state is now durable. */
static void segments_synced(quarantine *q)
{
    q->cur.synced_end = q->cur.end;
    q->cur.dirty = 0;
    q->cur.dirs_unsynced = 0;
}

int quarantine_put(quarantine *q, const uint8_t *orig, size_t n, const quarantine_meta *m, int sync,
                   char id[QUARANTINE_ID_MAX], buf *err)
{
    return quarantine_put_sha(q, orig, n, m, sync, id, NULL, err);
}

int quarantine_put_sha(quarantine *q, const uint8_t *orig, size_t n, const quarantine_meta *m,
                       int sync, char id[QUARANTINE_ID_MAX], char sha256[65], buf *err)
{
    if (q == NULL || (orig == NULL && n > 0) || id == NULL)
        return fail(err, -EINVAL, "quarantine_put: invalid arguments");
    if (q->n_pend >= PENDING_MAX || (sync && q->n_pend > 0)) {
        int rc = quarantine_sync(q, err);
        if (rc) {
            q->lost = rc; /* the caller learns it from its own sync too */
            return rc;
        }
    }
    if (q->n_pend == q->cap_pend) {
        size_t nc = q->cap_pend ? 2 * q->cap_pend : 64;
        row *np = realloc(q->pend, nc * sizeof *np);
        if (np == NULL)
            msg_fatal("out of memory");
        q->pend = np;
        q->cap_pend = nc;
    }
    row *r = &q->pend[q->n_pend];
    memset(r, 0, sizeof *r);
    int rc = append_record(q, orig, n, r, err);
    if (rc) {
        row_free(r);
        return rc;
    }
    row_set_meta(r, m);
    q->n_pend++;
    memcpy(id, r->id, QUARANTINE_ID_MAX);
    if (sha256 != NULL)
        memcpy(sha256, r->sha256, 65);
    return sync ? quarantine_sync(q, err) : 0;
}

int quarantine_sync(quarantine *q, buf *err)
{
    if (q == NULL)
        return fail(err, -EINVAL, "quarantine_sync: no quarantine");
    if (q->lost) {
        int lost = q->lost;
        q->lost = 0;
        pending_clear(q, 1);
        return fail(err, lost,
                    "%s: an automatic sync of this batch failed earlier; the batch "
                    "was discarded and must be put again",
                    q->dir);
    }
    if (q->n_pend == 0)
        return 0;
    int committing = 0;
    /* 1. the records; 2. new segments' names (and any new directories); 3. the rows. */
    int rc = sync_segments(q, err);
    if (rc == 0)
        rc = insert_rows(q, q->pend, q->n_pend, &committing, err);
    if (rc == 0 || committing)
        segments_synced(q);
    pending_clear(q, rc != 0 && !committing);
    return rc;
}

/* ---- get ----------------------------------------------------------------------- */

/* Reads len bytes of fd from off, hashing; with out >= 0, also writes them to
 * out. A file shorter than off + len is an error. */
static int hash_range(int fd, uint64_t off, uint64_t len, int out, uint8_t *chunk,
                      char hex[DIGEST_SHA256_HEX], const char *path, buf *err)
{
    digest *d = digest_sha256_new();
    int rc = 0;
    uint64_t done = 0;
    while (done < len) {
        size_t want = len - done < IO_CHUNK ? (size_t)(len - done) : IO_CHUNK;
        ssize_t got = pread(fd, chunk, want, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = fail(err, -errno, "%s: read: %s", path, strerror(errno));
            break;
        }
        if (got == 0) {
            rc = fail(err, -EIO, "%s: the stored original ends %llu bytes early (truncated)", path,
                      (unsigned long long)(len - done));
            break;
        }
        digest_update(d, chunk, (size_t)got);
        done += (uint64_t)got;
        if (out >= 0 && (rc = fileio_write_all(out, chunk, (size_t)got))) {
            fail(err, rc, "writing %s to output: %s", path, strerror(-rc));
            break;
        }
    }
    if (rc) {
        digest_free(d);
        return rc;
    }
    uint8_t md[DIGEST_SHA256_LEN];
    digest_final(d, md);
    digest_hex(md, sizeof md, hex);
    return 0;
}

/* Checks what surrounds the original in its segment: the record header just
 * before it must name this id, size and hash, and a newline must follow. */
static int check_record(int fd, const char *id, uint64_t off, uint64_t size, const char *sha,
                        const char *path, buf *err)
{
    char want[REC_HEADER_MAX], got[REC_HEADER_MAX];
    int hl = record_header(want, id, size, sha);
    if (hl < 0 || off < (uint64_t)hl)
        return fail(err, -EIO, "%s: the index row of %s has a bad offset %llu", path, id,
                    (unsigned long long)off);
    ssize_t r = pread(fd, got, (size_t)hl, (off_t)(off - (uint64_t)hl));
    if (r != hl || memcmp(got, want, (size_t)hl) != 0)
        return fail(err, -EIO,
                    "%s: integrity check failed: no record header for %s at byte %llu "
                    "(modified or damaged)",
                    path, id, (unsigned long long)(off - (uint64_t)hl));
    char nl = 0;
    r = pread(fd, &nl, 1, (off_t)(off + size));
    if (r != 1 || nl != '\n')
        return fail(err, -EIO,
                    "%s: integrity check failed: the record of %s does not end at byte %llu "
                    "(modified, damaged or truncated)",
                    path, id, (unsigned long long)(off + size));
    return 0;
}

int quarantine_get(quarantine *q, const char *id, int fd, buf *err)
{
    if (q == NULL || fd < 0)
        return fail(err, -EINVAL, "quarantine_get: invalid arguments");
    if (!quarantine_id_valid(id))
        return fail(err, -ENOENT, "not a quarantine id: \"%.60s\"", id ? id : "(null)");
    sqlite3_stmt *st = NULL;
    char path[PATH_MAX], want[DIGEST_SHA256_HEX], got[DIGEST_SHA256_HEX];
    uint64_t want_size = 0;
    int64_t off = -1;
    int rc = 0, in = -1;
    int src = sqlite3_prepare_v2(
        q->db, "SELECT path, size, sha256, offset FROM messages WHERE id = ?", -1, &st, NULL);
    if (src != SQLITE_OK)
        return dbfail(q, err, src, "prepare get");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    src = sqlite3_step(st);
    if (src == SQLITE_DONE) {
        rc = fail(err, -ENOENT, "%s: no such message in the quarantine at %s", id, q->dir);
    } else if (src != SQLITE_ROW) {
        rc = dbfail(q, err, src, "get");
    } else if (!relpath_ok(col_text(st, 0)) ||
               path_join(path, sizeof path, q->dir, col_text(st, 0))) {
        rc = fail(err, -EIO, "%s: index row has a bad path \"%s\"", id, col_text(st, 0));
    } else {
        want_size = (uint64_t)sqlite3_column_int64(st, 1);
        snprintf(want, sizeof want, "%s", col_text(st, 2));
        off = sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;

    in = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return fail(err, -EIO, "%s: the original of %s cannot be opened: %s", path, id,
                    strerror(errno));
    if (off < 0) {
        /* schema 1: the whole file is the original */
        struct stat sb;
        if (fstat(in, &sb) < 0)
            rc = fail(err, -errno, "%s: stat: %s", path, strerror(errno));
        else if ((uint64_t)sb.st_size != want_size)
            rc = fail(err, -EIO,
                      "%s: integrity check failed: the index records %llu bytes, the stored "
                      "file has %llu (modified or damaged)",
                      path, (unsigned long long)want_size, (unsigned long long)sb.st_size);
    } else {
        rc = check_record(in, id, (uint64_t)off, want_size, want, path, err);
    }
    uint64_t start = off < 0 ? 0 : (uint64_t)off;
    uint8_t *chunk = xmalloc(IO_CHUNK);
    /* First pass: verify, writing nothing. Second pass: write, verifying again
     * in case the file changed in between. */
    if (rc == 0)
        rc = hash_range(in, start, want_size, -1, chunk, got, path, err);
    if (rc == 0 && strcmp(got, want) != 0)
        rc = fail(err, -EIO,
                  "%s: integrity check failed: the index records SHA-256 %s for %s, the stored "
                  "bytes have SHA-256 %s (modified or damaged)",
                  path, want, id, got);
    if (rc == 0)
        rc = hash_range(in, start, want_size, fd, chunk, got, path, err);
    if (rc == 0 && strcmp(got, want) != 0)
        rc = fail(err, -EIO, "%s: the stored original changed while it was being read", path);
    free(chunk);
    close(in);
    return rc;
}

/* ---- list / show / purge --------------------------------------------------------- */

#define ENTRY_COLUMNS                                                                              \
    "m.id, m.received, m.retain_until, m.size, m.sha256, m.mail_from, m.rcpt_to, "                 \
    "m.subject, m.message_id, m.verdict, "                                                         \
    "(SELECT count(*) FROM parts p WHERE p.qid = m.id), m.path"

static void fill_entry(sqlite3_stmt *st, quarantine_entry *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", col_text(st, 0));
    e->received = sqlite3_column_int64(st, 1);
    e->retain_until = sqlite3_column_int64(st, 2);
    e->size = (uint64_t)sqlite3_column_int64(st, 3);
    snprintf(e->sha256, sizeof e->sha256, "%s", col_text(st, 4));
    e->from = col_text(st, 5);
    e->to = col_text(st, 6);
    e->subject = col_text(st, 7);
    e->message_id = col_text(st, 8);
    e->verdict = col_text(st, 9);
    e->n_parts = (size_t)sqlite3_column_int64(st, 10);
}

int quarantine_list(quarantine *q, quarantine_list_fn fn, void *arg, buf *err)
{
    if (q == NULL || fn == NULL)
        return fail(err, -EINVAL, "quarantine_list: invalid arguments");
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(
        q->db, "SELECT " ENTRY_COLUMNS " FROM messages m ORDER BY m.received DESC, m.id DESC", -1,
        &st, NULL);
    if (src != SQLITE_OK)
        return dbfail(q, err, src, "prepare list");
    int rc = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        quarantine_entry e;
        fill_entry(st, &e);
        if ((rc = fn(&e, arg)) != 0)
            break;
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = dbfail(q, err, src, "list");
    sqlite3_finalize(st);
    return rc;
}

int quarantine_show(quarantine *q, const char *id, quarantine_show_fn fn, void *arg, buf *err)
{
    if (q == NULL || fn == NULL)
        return fail(err, -EINVAL, "quarantine_show: invalid arguments");
    if (!quarantine_id_valid(id))
        return fail(err, -ENOENT, "not a quarantine id: \"%.60s\"", id ? id : "(null)");
    sqlite3_stmt *st = NULL, *sp = NULL;
    quarantine_part *parts = NULL;
    size_t n = 0;
    int rc = 0;
    int src = sqlite3_prepare_v2(q->db, "SELECT " ENTRY_COLUMNS " FROM messages m WHERE m.id = ?",
                                 -1, &st, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_prepare_v2(q->db,
                                 "SELECT filename, declared_type, detected_type, size, sha256 "
                                 "FROM parts WHERE qid = ? ORDER BY idx",
                                 -1, &sp, NULL);
    if (src != SQLITE_OK) {
        rc = dbfail(q, err, src, "prepare show");
        goto out;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(sp, 1, id, -1, SQLITE_STATIC);
    src = sqlite3_step(st);
    if (src == SQLITE_DONE) {
        rc = fail(err, -ENOENT, "%s: no such message in the quarantine at %s", id, q->dir);
        goto out;
    }
    if (src != SQLITE_ROW) {
        rc = dbfail(q, err, src, "show");
        goto out;
    }
    quarantine_entry e;
    fill_entry(st, &e);
    while ((src = sqlite3_step(sp)) == SQLITE_ROW) {
        quarantine_part *np = realloc(parts, (n + 1) * sizeof *np);
        if (np == NULL)
            msg_fatal("out of memory");
        parts = np;
        parts[n].filename = xstrdup(col_text(sp, 0));
        parts[n].declared_type = xstrdup(col_text(sp, 1));
        parts[n].detected_type = xstrdup(col_text(sp, 2));
        parts[n].size = (uint64_t)sqlite3_column_int64(sp, 3);
        parts[n].sha256 = xstrdup(col_text(sp, 4));
        n++;
    }
    if (src != SQLITE_DONE) {
        rc = dbfail(q, err, src, "show parts");
        goto out;
    }
    e.n_parts = n;
    rc = fn(&e, parts, n, arg);
out:
    for (size_t i = 0; i < n; i++) {
        free((char *)parts[i].filename);
        free((char *)parts[i].declared_type);
        free((char *)parts[i].detected_type);
        free((char *)parts[i].sha256);
    }
    free(parts);
    sqlite3_finalize(st);
    sqlite3_finalize(sp);
    return rc;
}

/* Erases the original bytes of a purged record that shares its segment with
 * records still kept: the range is deallocated (a hole reads as zeros), or
 * overwritten with zeros where the file system cannot punch holes. The record
 * header (id, size, hash: no content) stays, so the segment can still be
 * walked and shows that a record was there. */
static int erase_range(int fd, uint64_t off, uint64_t len, const char *path, buf *err)
{
    if (len == 0)
        return 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return fail(err, -errno, "%s: cannot erase bytes %llu..%llu: %s", path,
                    (unsigned long long)off, (unsigned long long)(off + len), strerror(errno));
    static const uint8_t zeros[IO_CHUNK];
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < IO_CHUNK ? (size_t)(len - done) : IO_CHUNK;
        ssize_t w = pwrite(fd, zeros, n, (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return fail(err, w < 0 ? -errno : -EIO, "%s: cannot erase: %s", path,
                        strerror(w < 0 ? errno : EIO));
        done += (uint64_t)w;
    }
    return 0;
}

typedef struct purged {
    char *relpath;
    int64_t off; /* -1: a whole file (schema 1) */
    uint64_t size;
} purged;

static int cmp_purged(const void *a, const void *b)
{
    const purged *x = a, *y = b;
    int c = strcmp(x->relpath, y->relpath);
    return c ? c : (x->off > y->off) - (x->off < y->off);
}

/* Removes the stored bytes of purged entries whose rows are gone: a whole
 * segment when no row refers to it any more and no writer holds it, else the
 * entries' ranges. */
static int remove_purged(quarantine *q, purged *p, size_t n, buf *err)
{
    qsort(p, n, sizeof *p, cmp_purged);
    sqlite3_stmt *ref = NULL;
    int src =
        sqlite3_prepare_v2(q->db, "SELECT 1 FROM messages WHERE path = ? LIMIT 1", -1, &ref, NULL);
    if (src != SQLITE_OK)
        return dbfail(q, err, src, "prepare purge check");
    int rc = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && strcmp(p[j].relpath, p[i].relpath) == 0)
            j++;
        char path[PATH_MAX];
        if (!relpath_ok(p[i].relpath) || path_join(path, sizeof path, q->dir, p[i].relpath)) {
            i = j;
            continue;
        }
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        *strrchr(dir, '/') = 0;
        if (p[i].off < 0) {
            for (size_t k = i; k < j; k++)
                if (unlink(path) < 0 && errno != ENOENT && rc == 0)
                    rc = fail(err, -errno, "%s: unlink: %s", path, strerror(errno));
            fileio_fsync_dir(dir);
            i = j;
            continue;
        }
        sqlite3_reset(ref);
        sqlite3_bind_text(ref, 1, p[i].relpath, -1, SQLITE_STATIC);
        src = sqlite3_step(ref);
        int referenced = src == SQLITE_ROW;
        if (src != SQLITE_ROW && src != SQLITE_DONE) {
            if (rc == 0)
                rc = dbfail(q, err, src, "purge check");
            referenced = 1;
        }
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            if (errno != ENOENT && rc == 0)
                rc = fail(err, -errno, "%s: %s", path, strerror(errno));
            i = j;
            continue;
        }
        if (!referenced && flock(fd, LOCK_EX | LOCK_NB) == 0) {
            /* no row, no writer: the whole segment goes */
            if (unlink(path) < 0 && rc == 0)
                rc = fail(err, -errno, "%s: unlink: %s", path, strerror(errno));
            fileio_fsync_dir(dir);
        } else {
            int erc = 0;
            for (size_t k = i; k < j && erc == 0; k++)
                erc = erase_range(fd, (uint64_t)p[k].off, p[k].size, path, err);
            if (erc == 0 && fdatasync(fd) < 0)
                erc = fail(err, -errno, "%s: fdatasync: %s", path, strerror(errno));
            if (rc == 0)
                rc = erc;
        }
        close(fd);
        i = j;
    }
    sqlite3_finalize(ref);
    return rc;
}

int quarantine_purge(quarantine *q, int64_t now, int dry_run, quarantine_list_fn fn, void *arg,
                     uint64_t *count, buf *err)
{
    if (count)
        *count = 0;
    if (q == NULL)
        return fail(err, -EINVAL, "quarantine_purge: no quarantine");
    sqlite3_stmt *st = NULL, *del = NULL;
    char **ids = NULL;
    purged *pp = NULL;
    size_t n = 0;
    size_t removed = 0;
    int rc = 0, committed = 0;
    int src = sqlite3_prepare_v2(q->db,
                                 "SELECT " ENTRY_COLUMNS ", m.offset FROM messages m"
                                 " WHERE m.retain_until < ? ORDER BY m.retain_until, m.id",
                                 -1, &st, NULL);
    if (src != SQLITE_OK)
        return dbfail(q, err, src, "prepare purge");
    sqlite3_bind_int64(st, 1, now);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        quarantine_entry e;
        fill_entry(st, &e);
        if (fn && (rc = fn(&e, arg)) != 0) {
            src = SQLITE_DONE;
            break;
        }
        if (!dry_run) {
            char **ni = realloc(ids, (n + 1) * sizeof *ni);
            if (ni == NULL)
                msg_fatal("out of memory");
            ids = ni;
            purged *np = realloc(pp, (n + 1) * sizeof *np);
            if (np == NULL)
                msg_fatal("out of memory");
            pp = np;
            ids[n] = xstrdup(e.id);
            pp[n].relpath = xstrdup(col_text(st, 11));
            pp[n].off =
                sqlite3_column_type(st, 12) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 12);
            pp[n].size = e.size;
        }
        n++;
    }
    if (src != SQLITE_DONE)
        rc = dbfail(q, err, src, "purge");
    sqlite3_finalize(st);
    if (rc)
        goto out; /* fn stopped it, or the index failed: nothing is removed */
    if (dry_run || n == 0)
        goto out;

    /* Rows first, durably; then the stored bytes. The retain_until check is
     * repeated under the write lock. */
    if ((rc = exec(q, "BEGIN IMMEDIATE", err)))
        goto out;
    src = sqlite3_prepare_v2(q->db, "DELETE FROM messages WHERE id = ? AND retain_until < ?", -1,
                             &del, NULL);
    size_t kept = 0; /* the rows actually deleted; only their bytes go */
    for (size_t i = 0; i < n && src == SQLITE_OK; i++) {
        sqlite3_reset(del);
        sqlite3_bind_text(del, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(del, 2, now);
        if ((src = sqlite3_step(del)) == SQLITE_DONE) {
            src = SQLITE_OK;
            if (sqlite3_changes(q->db) > 0) {
                purged t = pp[kept];
                pp[kept] = pp[i];
                pp[i] = t;
                kept++;
            }
        }
    }
    if (src != SQLITE_OK)
        rc = dbfail(q, err, src, "purge delete");
    sqlite3_finalize(del);
    if (rc == 0)
        rc = exec(q, "COMMIT", err);
    if (rc) {
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
        goto out;
    }
    committed = 1;
    removed = kept;
    rc = remove_purged(q, pp, kept, err);
out:
    if (count && (committed || (dry_run && rc == 0)))
        *count = committed ? removed : n;
    for (size_t i = 0; ids && i < n; i++) {
        free(ids[i]);
        free(pp[i].relpath);
    }
    free(ids);
    free(pp);
    return rc;
}
