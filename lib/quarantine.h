/*
 * quarantine - the store of original messages, byte for byte, with an index.
 *
 * Contract (the embedded backend is files + SQLite; a PostgreSQL backend for many
 * gateway nodes will implement the same functions):
 *  - quarantine_put() writes the original under <dir>/originals/ and its index
 *    row. With sync, it returns only after the file, its directory entry and the
 *    index row are durable (fsync, SQLite synchronous=FULL). Without sync, the
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
    int64_t received;          /* unix time, seconds */
    const char *from;          /* decoded UTF-8 header values, may be "" */
    const char *to;
    const char *subject;
    const char *message_id;
    const char *verdict;       /* "sanitized" | "rejected" */
    int64_t retain_until;      /* unix time, seconds */
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

/* Opens (create: creating if needed) the quarantine in dir. NULL on failure. */
quarantine *quarantine_open(const char *dir, int create, buf *err);
void quarantine_close(quarantine *q);

int quarantine_put(quarantine *q, const uint8_t *orig, size_t n, const quarantine_meta *m,
                   int sync, char id[QUARANTINE_ID_MAX], buf *err);
int quarantine_sync(quarantine *q, buf *err);

/* Writes the original of id to fd. -ENOENT if unknown; -EIO if the stored
 * bytes no longer match the recorded SHA-256. */
int quarantine_get(quarantine *q, const char *id, int fd, buf *err);

/* Calls fn for each entry, newest first; fn returns non-zero to stop. */
typedef int (*quarantine_list_fn)(const quarantine_entry *e, void *arg);
int quarantine_list(quarantine *q, quarantine_list_fn fn, void *arg, buf *err);

#endif
