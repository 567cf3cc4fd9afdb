/*
 * ledger - the tamper-evident, append-only record of sekisho (台帳), on the
 * model of Certificate Transparency (RFC 9162).
 *
 * Entries are JSON objects in canonical form (RFC 8785, lib/jcs), one per
 * line, with exactly five members:
 *     {"fields":{...},"index":N,"source":"...","time":"YYYY-MM-DDTHH:MM:SS.mmmZ","type":"..."}
 * index is the entry's position (from 0); time is when the ledger took it
 * (UTC, milliseconds). The entries are the leaves of one Merkle tree hashed
 * as RFC 9162 says: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 ||
 * left || right), the entry being the canonical bytes without the newline.
 * At every checkpoint the tree head is signed with Ed25519 (libsodium); the
 * signed message is exactly
 *     "sekisho-sth-v1\n" + tree_size + "\n" + root_hash_hex + "\n" + timestamp_ms + "\n"
 * (decimal numbers, lower-case hex), so anyone can check it.
 *
 * Durability: ledger_append() only stages an entry; ledger_commit() writes
 * every staged entry with one write() and one fdatasync() (group commit). An
 * index may be acknowledged only after ledger_commit() returned 0. A crash at
 * any moment loses no committed entry; on the next writable open, an
 * incomplete tail (a torn write) is cut off, saved under recovered/, and the
 * recovery itself is appended to the ledger as an entry of type
 * "ledger.recovery" and reported in opts->notes: never silently hidden.
 *
 * Several writers: any number of processes (and handles) may have the same
 * ledger open for writing at once, with no daemon in between. A writer holds
 * the exclusive flock on <dir>/lock only inside a transaction (one commit:
 * write + fdatasync + derived files + a head if due; a checkpoint; the
 * recovery of an open; a prune). On taking the lock it reloads what other
 * writers committed since its own last transaction, and if the previous
 * holder died inside one, it runs the same recovery as an open. So an entry's
 * index is known only when it is committed: ledger_append() returns a
 * provisional index (the one it gets if no other writer commits first), and
 * ledger_committed_index() gives the final one after ledger_commit().
 *
 * Directory layout (docs/LEDGER.md):
 *     ledger.json                 format and public key
 *     checkpoints.jsonl           signed tree heads, one per line
 *     entries/<first index>.<period>.jsonl   segments (monthly or daily)
 *     tree/hashes-KK              complete subtree hashes of height KK (32 bytes each)
 *     tree/offsets                byte offset of each entry in its segment (u64 LE)
 *     recovered/                  torn tails cut off by crash recovery
 *     lock                        writers' lock (flock) and its state record
 * Everything under tree/ is derived from the entries and is checked by
 * ledger_verify(); proofs read O(log n) stored hashes.
 *
 * All functions return 0 or a negative errno value and append a one-line
 * reason ("日本語 / English") to err where they take one.
 */
#ifndef SEKISHO_LEDGER_H
#define SEKISHO_LEDGER_H

#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LEDGER_HASH_LEN   32
#define LEDGER_PUBKEY_LEN 32
#define LEDGER_SIG_LEN    64
#define LEDGER_MAX_ENTRY  (1u << 20) /* bytes of one canonical entry */
#define LEDGER_MAX_TYPE   128        /* bytes of type and of source */
#define LEDGER_MAX_PROOF  64         /* hashes in a proof (tree of up to 2^64) */
#define LEDGER_STH_PREFIX "sekisho-sth-v1\n"
#define LEDGER_FORMAT     "sekisho-ledger-v1"

enum ledger_period { LEDGER_MONTHLY = 0, LEDGER_DAILY = 1 };

typedef struct ledger_opts {
    const char *dir;
    const char *key_file;        /* the signing key (writable open, init) */
    uint64_t checkpoint_entries; /* sign a head after this many new entries; 0: 100000 */
    uint64_t checkpoint_ms;      /* or after this long with unsigned entries; 0: 10 s */
    int period;                  /* enum ledger_period: segment length */
    /* The clock (ms since the epoch); NULL: CLOCK_REALTIME. For tests. */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
    buf *notes; /* optional: recovery and other reports, one line each */
} ledger_opts;

typedef struct ledger_sth {
    uint64_t tree_size;
    uint8_t root[LEDGER_HASH_LEN];
    int64_t timestamp_ms;
    uint8_t public_key[LEDGER_PUBKEY_LEN];
    uint8_t signature[LEDGER_SIG_LEN];
} ledger_sth;

typedef struct ledger ledger;

/* Creates the ledger in opts->dir (which must not hold one yet) and, if
 * opts->key_file does not exist, a new Ed25519 key there (mode 0600). Signs
 * the head of the empty tree. The public key is written to pub (hex). */
int ledger_init(const ledger_opts *opts, char pub_hex[2 * LEDGER_PUBKEY_LEN + 1], buf *err);

/* Opens an existing ledger. Writable: loads the key, then under the writers'
 * lock (waiting while another writer is inside a transaction; other writers
 * may keep the ledger open meanwhile) recovers a torn tail (see above) and
 * signs a head over any entries not yet covered by one. Read-only opens take
 * no lock and never change a file. */
ledger *ledger_open(const ledger_opts *opts, int writable, buf *err);

/* Commits what is staged, signs a head if entries are not yet covered, and
 * closes. Returns the first error; the handle is freed in any case. */
int ledger_close(ledger *l, buf *err);

/* Stages one entry. fields is a JSON object (any formatting; canonicalized,
 * numbers must be exact), or NULL for {}. *index is its provisional index:
 * the final one when no other writer commits before this handle does;
 * ledger_committed_index() maps it to the final index after the commit. The
 * entry's time is taken here. */
int ledger_append(ledger *l, const char *type, const char *source, const uint8_t *fields,
                  size_t fields_len, uint64_t *index, buf *err);

/* Stages one entry given as a JSON object {"type":..., "source":...,
 * "fields":{...}} (source and fields optional; source defaults to
 * default_source). time and index are the ledger's and may not be given. */
int ledger_append_json(ledger *l, const uint8_t *json, size_t n, const char *default_source,
                       uint64_t *index, buf *err);

/* Makes every staged entry durable (write + fdatasync), then signs a head if
 * the checkpoint policy says so. Takes the writers' lock for the duration
 * (waits for another writer's transaction) and numbers the entries after
 * everything committed before. After an error the handle refuses further
 * appends (the next writer to take the lock, or the next open, recovers). */
int ledger_commit(ledger *l, buf *err);

/* The final index of an entry this handle staged with provisional index
 * staged (from ledger_append/ledger_append_json), for every entry staged
 * since the previous ledger_commit()/ledger_checkpoint() returned and
 * committed since (by that call or by an automatic commit of a large batch).
 * 0, or -ENOENT when it is not committed (yet). */
int ledger_committed_index(const ledger *l, uint64_t staged, uint64_t *index);

/* Commits, then signs a head over all entries (if any are not covered). */
int ledger_checkpoint(ledger *l, buf *err);

/* Entries staged but not committed. */
size_t ledger_pending(const ledger *l);

/* Entries committed and indexed (readable by get), as of this handle's last
 * transaction. */
uint64_t ledger_size(const ledger *l);

/* The last signed tree head (with the ledger's public key). */
int ledger_head(const ledger *l, ledger_sth *sth);

/* The exact bytes that are signed for sth (see above); returns its length. */
size_t ledger_sth_message(const ledger_sth *sth, char *out, size_t outsz);

/* Checks sth's signature with sth->public_key: 0 if valid, -EBADMSG if not. */
int ledger_sth_verify(const ledger_sth *sth);

/* The canonical bytes of entry index (without the newline) into out. */
int ledger_get(ledger *l, uint64_t index, buf *out, buf *err);

/* Calls fn for every complete stored entry line (without the newline), in
 * order, as stored (cat). Stops early if fn returns non-zero. */
int ledger_foreach(ledger *l, int (*fn)(void *arg, const uint8_t *line, size_t n), void *arg,
                   buf *err);

/* Merkle tree hash of the first size entries (RFC 9162 MTH). */
int ledger_root(ledger *l, uint64_t size, uint8_t root[LEDGER_HASH_LEN], buf *err);

/* RFC 9162 inclusion proof of entry index in the tree of size entries. */
int ledger_prove_inclusion(ledger *l, uint64_t index, uint64_t size, uint8_t leaf[LEDGER_HASH_LEN],
                           uint8_t root[LEDGER_HASH_LEN],
                           uint8_t path[LEDGER_MAX_PROOF][LEDGER_HASH_LEN], size_t *npath,
                           buf *err);

/* RFC 9162 consistency proof between the trees of first and second entries
 * (0 < first <= second). */
int ledger_prove_consistency(ledger *l, uint64_t first, uint64_t second,
                             uint8_t first_root[LEDGER_HASH_LEN],
                             uint8_t second_root[LEDGER_HASH_LEN],
                             uint8_t path[LEDGER_MAX_PROOF][LEDGER_HASH_LEN], size_t *npath,
                             buf *err);

/* Retention: segments whose period ended more than retention_days ago
 * (never the newest segment). Each is reported to out (one line). With
 * do_delete, each removal is first recorded in the ledger (an entry of type
 * "ledger.segment_removed" with the segment's name, index range, size,
 * SHA-256 and the tree root at its end, committed and signed) and only then
 * is the file removed. *count is the number of expired segments. */
int ledger_prune(ledger *l, uint64_t retention_days, int do_delete, FILE *out, uint64_t *count,
                 buf *err);

/* ---- verification ------------------------------------------------------------ */

typedef struct ledger_verify_opts {
    const char *dir;
    const char *public_key_hex;    /* trusted key; NULL: the one in ledger.json */
    const char *const *head_files; /* exported heads to hold the ledger to */
    size_t n_head_files;
    size_t max_reports; /* per kind; 0: 20 */
} ledger_verify_opts;

typedef struct ledger_verify_result {
    uint64_t entries; /* entry lines read */
    uint64_t bytes;   /* entry bytes read */
    uint64_t segments;
    uint64_t heads;         /* signed heads checked */
    uint64_t problems;      /* modifications, deletions, insertions, ... */
    uint64_t removed;       /* entries removed by retention, with their record */
    uint64_t unsigned_tail; /* entries after the last signed head */
} ledger_verify_result;

/* Reads everything and reports, one line per finding, to out. Returns 0 if the
 * ledger is intact (r->problems == 0), 1 if not, or a negative errno when it
 * cannot be read at all (err says why). */
int ledger_verify(const ledger_verify_opts *o, FILE *out, ledger_verify_result *r, buf *err);

/* ---- entries -------------------------------------------------------------------- */

typedef struct ledger_entry {
    uint64_t index;
    size_t fields_off, fields_len; /* the fields object */
    size_t source_off, source_len; /* string values, with quotes */
    size_t time_off, time_len;
    size_t type_off, type_len;
} ledger_entry;

/* Decodes one stored entry (without its newline): canonical JSON with exactly
 * the five members and their types. 0, or -1 with why set. scratch is work
 * space. */
int ledger_entry_decode(const uint8_t *line, size_t n, buf *scratch, ledger_entry *e, char *why,
                        size_t whylen);

/* Hashes as RFC 9162. */
void ledger_leaf_hash(const uint8_t *entry, size_t n, uint8_t out[LEDGER_HASH_LEN]);
void ledger_node_hash(const uint8_t left[LEDGER_HASH_LEN], const uint8_t right[LEDGER_HASH_LEN],
                      uint8_t out[LEDGER_HASH_LEN]);

/* Hex helpers: parse exactly 2n hex digits (any case) into n bytes. */
int ledger_unhex(const char *hex, size_t hexlen, uint8_t *out, size_t n);

#endif
