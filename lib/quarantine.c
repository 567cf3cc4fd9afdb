/*
 * quarantine - the embedded backend of the store of originals: one file per
 * message under <dir>/originals/YYYY/MM/DD/<id>.eml and an SQLite index at
 * <dir>/index.sqlite. See quarantine.h for the contract shared with other
 * backends; this comment says how this one keeps it.
 *
 * Durability ordering. The index is the authority: an entry exists when its
 * row is committed, and a row is committed only after its file is durable.
 *   put(sync=1): temp file ".<id>.tmp" (O_EXCL, 0600) in the day directory,
 *     write all, fsync, rename (RENAME_NOREPLACE) to "<id>.eml", fsync the day
 *     directory and each directory above it up to originals/ (so that day
 *     directories made just now, by us or by a concurrent process, are durable
 *     too), then BEGIN IMMEDIATE / INSERT / COMMIT with synchronous=FULL in WAL
 *     mode (the commit fsyncs the WAL). Only then does put return 0.
 *   put(sync=0): the same without any fsync; the file descriptor stays open and
 *     the row is kept in memory. quarantine_sync() fsyncs every pending file
 *     (concurrently, through Linux AIO IOCB_CMD_FSYNC, so that one journal
 *     commit can serve many files; plain fsync() one by one where io_setup or
 *     io_submit is refused, e.g. by a seccomp filter returning ENOSYS/EPERM),
 *     then every directory concerned, and only then inserts all pending rows in
 *     one transaction and commits it. (The rows are inserted at sync time rather
 *     than in a transaction held open since the first put, so that a batch does
 *     not hold the index's write lock against other processes for its whole
 *     duration; the guarantee is the same.)
 * A crash or failure at any step therefore leaves, at worst, a file without a
 * row (an orphan, never served by get/list; failed puts unlink theirs), never a
 * row whose file is missing or incomplete. A failed sync discards the whole
 * batch (files unlinked, no rows): the caller must put those originals again.
 *
 * Limits: at most PENDING_MAX unsynced puts per handle (one open descriptor
 * each); the next put syncs the batch first, which only ever adds durability.
 * A handle must not cross fork(); each process opens its own. Concurrent
 * processes are safe: ids are reserved by the file system (O_EXCL temp name,
 * no-replace rename) and the index is serialized by SQLite (busy_timeout).
 * Orphan temp files from crashes are left in the day directories (".*.tmp").
 */
#include "quarantine.h"
#include "util/digest.h"
#include "util/fileio.h"
#include "util/msg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/aio_abi.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION  1
#define BUSY_TIMEOUT_MS 30000
#define PENDING_MAX     128
#define PUT_ATTEMPTS    8
#define IO_CHUNK        65536

typedef struct row {
    char id[QUARANTINE_ID_MAX];
    char *relpath;
    int fd; /* pending batch only; -1 otherwise */
    int64_t received, retain_until;
    uint64_t size;
    char sha256[DIGEST_SHA256_HEX];
    char *from, *to, *subject, *message_id, *verdict;
    quarantine_part *parts;
    size_t n_parts;
} row;

struct quarantine {
    char *dir;
    sqlite3 *db;
    row *pend;
    size_t n_pend;
    char **sync_dirs; /* directories to fsync at the next sync */
    size_t n_sync_dirs;
    int lost; /* an automatic sync inside put failed: the next sync reports it */
    /* One AIO context for the handle's life: io_destroy() waits for an RCU
     * grace period (tens of milliseconds), far more than a batch of fsyncs. */
    aio_context_t aio;
    int aio_state; /* 0 not set up yet, 1 ready, -1 unavailable (fsync one by one) */
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

static int fsync_fd_path(int fd, const char *path, buf *err)
{
    if (fsync(fd) < 0)
        return fail(err, -errno, "%s: fsync: %s", path, strerror(errno));
    return 0;
}

static int fsync_dir(const char *path, buf *err)
{
    int rc = fileio_fsync_dir(path);
    if (rc)
        return fail(err, rc, "%s: fsync directory: %s", path, strerror(-rc));
    return 0;
}

/* ---- schema ---------------------------------------------------------------- */

static const char schema_v1[] = "CREATE TABLE messages ("
                                " id TEXT PRIMARY KEY NOT NULL,"
                                " received INTEGER NOT NULL,"
                                " mail_from TEXT NOT NULL,"
                                " rcpt_to TEXT NOT NULL,"
                                " subject TEXT NOT NULL,"
                                " message_id TEXT NOT NULL,"
                                " size INTEGER NOT NULL,"
                                " sha256 TEXT NOT NULL,"
                                " verdict TEXT NOT NULL,"
                                " retain_until INTEGER NOT NULL,"
                                " path TEXT NOT NULL UNIQUE"
                                ") WITHOUT ROWID;"
                                "CREATE INDEX messages_received ON messages(received, id);"
                                "CREATE INDEX messages_retain ON messages(retain_until);"
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
                                "PRAGMA user_version = 1;";

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
    /* version 0: create, re-checking under the write lock (another process may
     * have been first). */
    if ((rc = exec(q, "BEGIN IMMEDIATE", err)))
        return rc;
    rc = pragma_int(q, "PRAGMA user_version", &version, err);
    if (rc == 0 && version == 0)
        rc = exec(q, schema_v1, err);
    if (rc == 0)
        rc = exec(q, "COMMIT", err);
    if (rc)
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
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
    if (r->fd >= 0)
        close(r->fd);
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

/* Forgets the pending batch; with unlink_files, removes its files too. */
static void pending_clear(quarantine *q, int unlink_files)
{
    for (size_t i = 0; i < q->n_pend; i++) {
        if (unlink_files) {
            char path[PATH_MAX];
            if (path_join(path, sizeof path, q->dir, q->pend[i].relpath) == 0)
                unlink(path);
        }
        row_free(&q->pend[i]);
    }
    free(q->pend);
    q->pend = NULL;
    q->n_pend = 0;
    for (size_t i = 0; i < q->n_sync_dirs; i++)
        free(q->sync_dirs[i]);
    free(q->sync_dirs);
    q->sync_dirs = NULL;
    q->n_sync_dirs = 0;
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
    if (q->aio_state == 1)
        syscall(SYS_io_destroy, q->aio);
    if (q->db)
        sqlite3_close_v2(q->db);
    free(q->dir);
    free(q);
}

/* ---- put / sync --------------------------------------------------------------- */

static int make_id(char id[QUARANTINE_ID_MAX], struct tm *tm, buf *err)
{
    uint8_t r[8];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(err, -errno, "getrandom: %s", strerror(errno));
        }
        got += (size_t)n;
    }
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
static int level_dir(const quarantine *q, const struct tm *tm, int level, char *out, size_t sz)
{
    int y = tm->tm_year + 1900, m = tm->tm_mon + 1, d = tm->tm_mday, n;
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

static int rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* File systems without RENAME_NOREPLACE: link() never replaces either. */
    if (link(from, to) < 0)
        return -errno;
    unlink(from);
    return 0;
}

/* Writes the original to its file; see the header comment for the steps. On
 * success r->id, r->relpath, r->size, r->sha256 are set and, when !sync, r->fd
 * is the open descriptor; *tm is the id's time (for its directories). On
 * failure nothing is left behind. */
static int store_file(quarantine *q, const uint8_t *orig, size_t n, int sync, row *r, struct tm *tm,
                      buf *err)
{
    uint8_t md[DIGEST_SHA256_LEN];
    digest_sha256(orig, n, md);
    digest_hex(md, sizeof md, r->sha256);
    r->size = n;

    char day[PATH_MAX], tmp[PATH_MAX], final[PATH_MAX];
    int rc = 0;
    for (int attempt = 0; attempt < PUT_ATTEMPTS; attempt++) {
        if ((rc = make_id(r->id, tm, err)))
            return rc;
        for (int level = 1; level <= 3; level++) {
            if ((rc = level_dir(q, tm, level, day, sizeof day)))
                return fail(err, rc, "%s: path too long", q->dir);
            if (mkdir(day, 0700) < 0 && errno != EEXIST)
                return fail(err, -errno, "%s: cannot create: %s", day, strerror(errno));
        }
        if (snprintf(tmp, sizeof tmp, "%s/.%s.tmp", day, r->id) >= (int)sizeof tmp ||
            snprintf(final, sizeof final, "%s/%s.eml", day, r->id) >= (int)sizeof final)
            return fail(err, -ENAMETOOLONG, "%s: path too long", day);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return fail(err, -errno, "%s: cannot create: %s", tmp, strerror(errno));
        rc = fileio_write_all(fd, orig, n);
        if (rc)
            fail(err, rc, "%s: write: %s", tmp, strerror(-rc));
        if (rc == 0 && (rc = fault("tmp-written")))
            fail(err, rc, "%s: injected fault after write", tmp);
        if (rc == 0 && sync && (rc = fsync_fd_path(fd, tmp, err)) == 0 &&
            (rc = fault("file-synced")))
            fail(err, rc, "%s: injected fault after fsync", tmp);
        if (rc == 0) {
            rc = rename_noreplace(tmp, final);
            if (rc == -EEXIST) {
                close(fd);
                unlink(tmp);
                continue;
            }
            if (rc)
                fail(err, rc, "rename %s -> %s: %s", tmp, final, strerror(-rc));
        }
        if (rc) {
            close(fd);
            unlink(tmp);
            return rc;
        }
        if ((rc = fault("renamed"))) {
            close(fd);
            unlink(final);
            return fail(err, rc, "%s: injected fault after rename", final);
        }
        if (sync) {
            if (close(fd) < 0) {
                rc = fail(err, -errno, "%s: close: %s", final, strerror(errno));
                unlink(final);
                return rc;
            }
            fd = -1;
        }
        r->fd = fd;
        r->relpath = xstrdup(final + strlen(q->dir) + 1);
        return 0;
    }
    return fail(err, -EEXIST, "%s: could not find a free id in %d attempts", q->dir, PUT_ATTEMPTS);
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
 * must not remove the files (an orphan is harmless; a row without its file is
 * not). */
static int insert_rows(quarantine *q, const row *rows, size_t n, int *committing, buf *err)
{
    sqlite3_stmt *sm = NULL, *sp = NULL;
    *committing = 0;
    int rc = exec(q, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    int src = sqlite3_prepare_v2(q->db,
                                 "INSERT INTO messages (id, received, mail_from, rcpt_to, "
                                 "subject, message_id, size, sha256, verdict, retain_until, "
                                 "path) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                 -1, &sm, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_prepare_v2(q->db,
                                 "INSERT INTO parts (qid, idx, filename, declared_type, "
                                 "detected_type, size, sha256) VALUES (?,?,?,?,?,?,?)",
                                 -1, &sp, NULL);
    if (src != SQLITE_OK) {
        rc = dbfail(q, err, src, "prepare insert");
        goto out;
    }
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
    if (rc == 0 && (rc = fault("rows-inserted")))
        fail(err, rc, "%s/index.sqlite: injected fault before commit", q->dir);
out:
    sqlite3_finalize(sm);
    sqlite3_finalize(sp);
    if (rc == 0) {
        *committing = 1;
        rc = exec(q, "COMMIT", err);
    }
    if (rc)
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static void add_sync_dir(quarantine *q, const char *d)
{
    for (size_t i = 0; i < q->n_sync_dirs; i++)
        if (strcmp(q->sync_dirs[i], d) == 0)
            return;
    char **nd = realloc(q->sync_dirs, (q->n_sync_dirs + 1) * sizeof *nd);
    if (nd == NULL)
        msg_fatal("out of memory");
    q->sync_dirs = nd;
    q->sync_dirs[q->n_sync_dirs++] = xstrdup(d);
}

int quarantine_put(quarantine *q, const uint8_t *orig, size_t n, const quarantine_meta *m, int sync,
                   char id[QUARANTINE_ID_MAX], buf *err)
{
    if (q == NULL || (orig == NULL && n > 0) || id == NULL)
        return fail(err, -EINVAL, "quarantine_put: invalid arguments");
    if (!sync && q->n_pend >= PENDING_MAX) {
        int rc = quarantine_sync(q, err);
        if (rc) {
            q->lost = rc; /* the caller learns it from its own sync too */
            return rc;
        }
    }
    row r;
    memset(&r, 0, sizeof r);
    r.fd = -1;
    struct tm tm;
    int rc = store_file(q, orig, n, sync, &r, &tm, err);
    if (rc) {
        row_free(&r);
        return rc;
    }
    row_set_meta(&r, m);
    char d[PATH_MAX];
    if (sync) {
        /* The day directory holds the new name; the ones above may be new. */
        for (int level = 3; level >= 0 && rc == 0; level--)
            if ((rc = level_dir(q, &tm, level, d, sizeof d)) == 0)
                rc = fsync_dir(d, err);
        if (rc == 0 && (rc = fault("dirs-synced")))
            fail(err, rc, "%s: injected fault after directory fsync", q->dir);
        int committing = 0;
        if (rc == 0)
            rc = insert_rows(q, &r, 1, &committing, err);
        if (rc && !committing) {
            char path[PATH_MAX];
            if (path_join(path, sizeof path, q->dir, r.relpath) == 0)
                unlink(path);
        } else {
            memcpy(id, r.id, QUARANTINE_ID_MAX);
        }
        row_free(&r);
        return rc;
    }
    for (int level = 3; level >= 0; level--)
        if (level_dir(q, &tm, level, d, sizeof d) == 0)
            add_sync_dir(q, d);
    row *np = realloc(q->pend, (q->n_pend + 1) * sizeof *np);
    if (np == NULL)
        msg_fatal("out of memory");
    q->pend = np;
    q->pend[q->n_pend++] = r;
    memcpy(id, r.id, QUARANTINE_ID_MAX);
    return 0;
}

/* fsyncs the pending files concurrently through Linux AIO (IOCB_CMD_FSYNC,
 * Linux 4.18+): one journal commit can then cover many files, where one fsync
 * after another costs a commit each. Returns -ENOSYS when AIO cannot be used
 * (the caller then fsyncs one by one); any other error names the file. */
static int fsync_pending_aio(quarantine *q, buf *err)
{
    size_t n = q->n_pend;
    if (q->aio_state == 0) {
        q->aio = 0;
        /* ENOSYS, EPERM (seccomp), EAGAIN (aio-max-nr): fall back for good */
        q->aio_state = syscall(SYS_io_setup, (long)PENDING_MAX, &q->aio) < 0 ? -1 : 1;
    }
    if (q->aio_state < 0 || n > PENDING_MAX)
        return -ENOSYS;
    aio_context_t ctx = q->aio;
    struct iocb *cbs = xcalloc(n, sizeof *cbs);
    struct iocb **ptrs = xcalloc(n, sizeof *ptrs);
    for (size_t i = 0; i < n; i++) {
        cbs[i].aio_fildes = (uint32_t)q->pend[i].fd;
        cbs[i].aio_lio_opcode = IOCB_CMD_FSYNC;
        cbs[i].aio_data = i;
        ptrs[i] = &cbs[i];
    }
    int rc = 0;
    size_t submitted = 0;
    while (submitted < n) {
        long r = syscall(SYS_io_submit, ctx, (long)(n - submitted), ptrs + submitted);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = submitted == 0 ? -ENOSYS
                                : fail(err, -EIO, "%s: io_submit: %s", q->dir,
                                       strerror(r < 0 ? errno : EAGAIN));
            break;
        }
        submitted += (size_t)r;
    }
    struct io_event ev[64];
    size_t done = 0;
    while (done < submitted) {
        long r = syscall(SYS_io_getevents, ctx, 1L, 64L, ev, NULL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            /* cannot happen with a valid context: give the context up */
            q->aio_state = -1;
            if (rc == 0)
                rc = fail(err, -errno, "%s: io_getevents: %s", q->dir, strerror(errno));
            break;
        }
        for (long k = 0; k < r; k++) {
            long res = (long)ev[k].res;
            size_t i = (size_t)ev[k].data;
            if (res < 0 && rc == 0 && i < n)
                rc = fail(err, (int)res, "%s: fsync: %s", q->pend[i].relpath, strerror((int)-res));
        }
        done += (size_t)r;
    }
    if (done < submitted) {
        /* events still in flight: io_destroy waits for them */
        syscall(SYS_io_destroy, ctx);
        q->aio_state = -1;
    }
    free(cbs);
    free(ptrs);
    return rc;
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
    int rc = 0, committing = 0;
    /* 1. the files' data; 2. their names (and any new directories); 3. the rows. */
    rc = q->n_pend > 1 ? fsync_pending_aio(q, err) : -ENOSYS;
    if (rc == -ENOSYS) {
        rc = 0;
        for (size_t i = 0; i < q->n_pend && rc == 0; i++)
            rc = fsync_fd_path(q->pend[i].fd, q->pend[i].relpath, err);
    }
    if (rc == 0 && (rc = fault("file-synced")))
        fail(err, rc, "%s: injected fault after fsync of the batch", q->dir);
    for (size_t i = 0; i < q->n_sync_dirs && rc == 0; i++)
        rc = fsync_dir(q->sync_dirs[i], err);
    if (rc == 0 && (rc = fault("dirs-synced")))
        fail(err, rc, "%s: injected fault after directory fsync", q->dir);
    if (rc == 0)
        rc = insert_rows(q, q->pend, q->n_pend, &committing, err);
    pending_clear(q, rc != 0 && !committing);
    return rc;
}

/* ---- get ----------------------------------------------------------------------- */

/* Reads fd to the end, hashing; with out >= 0, also writes every byte to out. */
static int hash_stream(int fd, int out, uint8_t *chunk, char hex[DIGEST_SHA256_HEX], uint64_t *size,
                       const char *path, buf *err)
{
    digest *d = digest_sha256_new();
    uint64_t total = 0;
    int rc = 0;
    for (;;) {
        ssize_t got = read(fd, chunk, IO_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = fail(err, -errno, "%s: read: %s", path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        digest_update(d, chunk, (size_t)got);
        total += (uint64_t)got;
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
    *size = total;
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
    uint64_t want_size = 0, size = 0;
    int rc = 0, in = -1;
    int src = sqlite3_prepare_v2(q->db, "SELECT path, size, sha256 FROM messages WHERE id = ?", -1,
                                 &st, NULL);
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
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;

    in = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return fail(err, -EIO, "%s: the original of %s cannot be opened: %s", path, id,
                    strerror(errno));
    uint8_t *chunk = xmalloc(IO_CHUNK);
    /* First pass: verify, writing nothing. Second pass: write, verifying again
     * in case the file changed in between. */
    rc = hash_stream(in, -1, chunk, got, &size, path, err);
    if (rc == 0 && (size != want_size || strcmp(got, want) != 0))
        rc = fail(err, -EIO,
                  "%s: integrity check failed: the index records %llu bytes with SHA-256 %s, "
                  "the stored file has %llu bytes with SHA-256 %s (modified or damaged)",
                  path, (unsigned long long)want_size, want, (unsigned long long)size, got);
    if (rc == 0 && lseek(in, 0, SEEK_SET) < 0)
        rc = fail(err, -errno, "%s: lseek: %s", path, strerror(errno));
    if (rc == 0)
        rc = hash_stream(in, fd, chunk, got, &size, path, err);
    if (rc == 0 && (size != want_size || strcmp(got, want) != 0))
        rc = fail(err, -EIO, "%s: the stored file changed while it was being read", path);
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

int quarantine_purge(quarantine *q, int64_t now, int dry_run, quarantine_list_fn fn, void *arg,
                     uint64_t *count, buf *err)
{
    if (count)
        *count = 0;
    if (q == NULL)
        return fail(err, -EINVAL, "quarantine_purge: no quarantine");
    sqlite3_stmt *st = NULL, *del = NULL;
    char **ids = NULL, **paths = NULL;
    size_t n = 0;
    int rc = 0, committed = 0;
    int src = sqlite3_prepare_v2(q->db,
                                 "SELECT " ENTRY_COLUMNS " FROM messages m WHERE m.retain_until < ?"
                                 " ORDER BY m.retain_until, m.id",
                                 -1, &st, NULL);
    if (src != SQLITE_OK)
        return dbfail(q, err, src, "prepare purge");
    sqlite3_bind_int64(st, 1, now);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        quarantine_entry e;
        fill_entry(st, &e);
        if (fn && fn(&e, arg) != 0) {
            src = SQLITE_DONE;
            break;
        }
        if (!dry_run) {
            char **ni = realloc(ids, (n + 1) * sizeof *ni);
            if (ni == NULL)
                msg_fatal("out of memory");
            ids = ni;
            char **np = realloc(paths, (n + 1) * sizeof *np);
            if (np == NULL)
                msg_fatal("out of memory");
            paths = np;
            ids[n] = xstrdup(e.id);
            paths[n] = xstrdup(col_text(st, 11));
        }
        n++;
    }
    if (src != SQLITE_DONE)
        rc = dbfail(q, err, src, "purge");
    sqlite3_finalize(st);
    if (rc || dry_run || n == 0)
        goto out;

    /* Rows first, durably; then the files. The retain_until check is repeated
     * under the write lock. */
    if ((rc = exec(q, "BEGIN IMMEDIATE", err)))
        goto out;
    src = sqlite3_prepare_v2(q->db, "DELETE FROM messages WHERE id = ? AND retain_until < ?", -1,
                             &del, NULL);
    for (size_t i = 0; i < n && src == SQLITE_OK; i++) {
        sqlite3_reset(del);
        sqlite3_bind_text(del, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(del, 2, now);
        if ((src = sqlite3_step(del)) == SQLITE_DONE)
            src = SQLITE_OK;
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
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        if (!relpath_ok(paths[i]) || path_join(path, sizeof path, q->dir, paths[i]))
            continue;
        if (unlink(path) < 0 && errno != ENOENT && rc == 0)
            rc = fail(err, -errno, "%s: unlink: %s", path, strerror(errno));
        char *slash = strrchr(path, '/');
        *slash = 0;
        fileio_fsync_dir(path);
    }
out:
    if (count && (dry_run || committed))
        *count = n;
    for (size_t i = 0; ids && i < n; i++) {
        free(ids[i]);
        free(paths[i]);
    }
    free(ids);
    free(paths);
    return rc;
}
