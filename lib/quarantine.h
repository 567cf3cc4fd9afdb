/*
 * quarantine - the store of original messages, byte for byte, with an index.
 *
 * Contract (the embedded backend is files + SQLite; a PostgreSQL backend for many
 * gateway nodes will implement the same functions):
 *  - quarantine_put() stores the original under <dir>/originals/ and its index
 *    row. With sync, it returns only after the original's bytes, any new
 *    directory entries and the index row are durable (fdatasync/fsync, SQLite
 *    synchronous=FULL). Without sync, the
 *    caller must call quarantine_sync() before releasing any output that derives
 *    from the originals put since the last sync (batches group their fsyncs).
 *  - Ids are unique, printable ASCII, safe as file names, and sort by time:
 *    "YYYYMMDDTHHMMSSZ-<16 hex>".
 *  - quarantine_get() writes the original exactly as stored.
 * Returns are 0 or a negative errno; err (may be NULL) gets a readable reason.
 */
#ifndef SEKISHO_QUARANTINE_H
#define SEKISHO_QUARANTINE_H

#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

#define QUARANTINE_ID_MAX 40

typedef struct quarantine quarantine;

typedef struct quarantine_part {
    const char *filename;      /* decoded UTF-8, may be "" */
    const char *declared_type; /* as the mail declared it */
    const char *detected_type; /* from libmagic */
    uint64_t size;             /* decoded bytes */
    const char *sha256;        /* hex */
} quarantine_part;

typedef struct quarantine_meta {
    int64_t received; /* unix time, seconds */
    const char *from; /* decoded UTF-8 header values, may be "" */
    const char *to;
    const char *subject;
    const char *message_id;
    const char *verdict;  /* "sanitized" | "rejected" */
    int64_t retain_until; /* unix time, seconds */
    const quarantine_part *parts;
    size_t n_parts;
} quarantine_meta;

typedef struct quarantine_entry {
    char id[QUARANTINE_ID_MAX];
    int64_t received;
    int64_t retain_until;
    uint64_t size;
    char sha256[65];
    const char *from, *to, *subject, *message_id, *verdict;
    size_t n_parts;
} quarantine_entry;

/* Opens (create: creating if needed) the quarantine in dir. NULL on failure,
 * with errno set (ENOENT: no quarantine there and create was 0). A handle
 * belongs to one process: after fork(), the child opens its own. */
quarantine *quarantine_open(const char *dir, int create, buf *err);
/* Syncs any unsynced puts first; if that fails, they are discarded and a
 * warning is logged (msg_warn). NULL is a no-op. */
void quarantine_close(quarantine *q);

/* Stores n bytes (orig may be NULL when n is 0) with m (NULL: empty fields,
 * received now); id gets the new id. A failed put leaves no row (and cuts off
 * any bytes it wrote). */
int quarantine_put(quarantine *q, const uint8_t *orig, size_t n, const quarantine_meta *m, int sync,
                   char id[QUARANTINE_ID_MAX], buf *err);
/* quarantine_put() that also gives the SHA-256 (hex) recorded for the bytes. */
int quarantine_put_sha(quarantine *q, const uint8_t *orig, size_t n, const quarantine_meta *m,
                       int sync, char id[QUARANTINE_ID_MAX], char sha256[65], buf *err);
/* Makes every put since the last sync durable: the stored bytes, then any
 * new directories, then the index rows in one transaction. On failure the
 * whole batch is discarded (no rows) and must be put again. A put may sync
 * early by itself (a batch holds at most 1024 puts); if that fails, the put
 * and the next sync both fail. No pending puts: returns 0. */
int quarantine_sync(quarantine *q, buf *err);

/* Writes the original of id to fd. -ENOENT if unknown; -EIO if the stored
 * bytes no longer match the recorded SHA-256. */
int quarantine_get(quarantine *q, const char *id, int fd, buf *err);

/* Calls fn for each entry, newest first (by received, then id); fn returns
 * non-zero to stop, and that value is returned. The entry's string pointers
 * are valid only during the call. Unsynced puts are not listed. */
typedef int (*quarantine_list_fn)(const quarantine_entry *e, void *arg);
int quarantine_list(quarantine *q, quarantine_list_fn fn, void *arg, buf *err);

/* 1 if id has the form of a quarantine id ("YYYYMMDDTHHMMSSZ-" + 16 lower hex),
 * else 0. Checked by every function that takes an id, before any file access. */
int quarantine_id_valid(const char *id);

/* Calls fn once with the entry of id and its removed parts (index order).
 * Pointers are valid only during the call. -ENOENT if unknown. Returns fn's
 * value when it is non-zero. */
typedef int (*quarantine_show_fn)(const quarantine_entry *e, const quarantine_part *parts,
                                  size_t n_parts, void *arg);
int quarantine_show(quarantine *q, const char *id, quarantine_show_fn fn, void *arg, buf *err);

/* Entries whose retain_until is before now (unix seconds) are expired. Calls fn
 * (may be NULL) for each, oldest first; a non-zero return from fn stops the
 * purge before anything is removed, and is returned. With dry_run (the safe default for
 * callers), nothing is changed. Without dry_run, each expired entry is removed:
 * its index row is deleted durably first, then its stored bytes are removed
 * (the whole segment when nothing else in it is kept and no writer holds it,
 * else its range is erased in place), so a crash leaves at worst orphan bytes,
 * never a row without its original. *count
 * (may be NULL) gets the number of entries listed (dry_run) or removed. */
int quarantine_purge(quarantine *q, int64_t now, int dry_run, quarantine_list_fn fn, void *arg,
                     uint64_t *count, buf *err);

/* Testing only: fault injection. When set, the store calls hook(point) at each
 * named step of quarantine_put()/quarantine_sync() ("appended",
 * "file-synced", "dirs-synced", "rows-inserted"); a non-zero return
 * (a negative errno) makes the operation fail there as if the step had failed.
 * A hook may also _exit() to simulate a crash. NULL disables. Process-wide. */
typedef int (*quarantine_fault_fn)(const char *point);
void quarantine_set_fault_hook(quarantine_fault_fn hook);

#endif
