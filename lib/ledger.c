/*
 * ledger - tamper-evident append-only log (RFC 9162 Merkle tree, Ed25519
 * signed tree heads, RFC 8785 entries). See ledger.h for the contract and
 * docs/LEDGER.md for the format as an auditor sees it.
 *
 * How it works
 *   Writer state is O(log n): the "frontier" holds the hash of each complete
 *   subtree on the right edge (one per set bit of n). Appending a leaf merges
 *   it with the frontier like a binary counter; every complete subtree made
 *   on the way is appended to tree/hashes-KK, so tree/hashes-KK holds the
 *   hashes of all aligned subtrees of 2^KK leaves. Any RFC 9162 node is
 *   either such a subtree or a right-edge node made of O(log n) of them, so
 *   proofs are O(log n) reads, never a rehash of entries.
 *
 *   Commit = one write() of the staged lines to the current segment and one
 *   fdatasync(); the derived files (tree/) are written after that without a
 *   sync, and synced only before a signed head is appended to
 *   checkpoints.jsonl (itself synced). So at the last signed head T,
 *   everything up to T is durable; after a crash the writer trusts files up
 *   to T (after checking the stored root against the signed one), truncates
 *   the derived files to T, and re-reads the entries after T, rebuilding
 *   their hashes. An incomplete or invalid tail of the last segment (a torn
 *   write) is saved under recovered/, cut off, and recorded as an entry.
 *   Entries below T are never cut: damage there is refused (fail closed) and
 *   left for `verify` to locate.
 *
 *   verify re-reads everything: each line must be a canonical entry whose
 *   "index" is its position; missing, repeated, out-of-order and changed
 *   entries are located by that index and by the leaf hashes recorded at
 *   append time; the recomputed roots must equal every signed head and every
 *   exported head given. A change that also rewrote tree/ consistently is
 *   still caught by the signed roots and located between two heads.
 *
 * Limits: one writer at a time (flock on lock, non-blocking). Hashing uses
 * one process-wide OpenSSL context: not thread-safe.
 */
#include "ledger.h"

#include "jcs.h"
#include "util/digest.h"
#include "util/fileio.h"
#include "util/msg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
/* The one-call-per-hash SHA256_* interface: deprecated in OpenSSL 3 in
 * favour of EVP, but the same SHA-NI code without EVP's per-call dispatch,
 * which cost half of verify's time in the profile. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_LEVELS      64
#define STAGE_MAX_BYTES ((size_t)16 << 20) /* a batch is committed at this size */
#define STAGE_MAX_COUNT 200000
#define DEFAULT_CK_N    100000
#define DEFAULT_CK_MS   10000
#define SEG_NAME_MAX    64

/* ---- small helpers ------------------------------------------------------------ */

static void errf(buf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void errf(buf *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    if (err->len)
        buf_puts(err, "; ");
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(err, fmt, ap);
    va_end(ap);
}

static void note(buf *notes, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(buf *notes, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (notes) {
        buf_puts(notes, line);
        buf_putc(notes, '\n');
    } else {
        msg_warn("%s", line);
    }
}

static int64_t real_clock(void *arg)
{
    (void)arg;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
        msg_fatal("clock_gettime: %s", strerror(errno));
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fmt_time(int64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char t[128];
    int n = snprintf(t, sizeof t, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    size_t k = n < 0 ? 0 : (size_t)n > 31 ? 31 : (size_t)n;
    memcpy(out, t, k);
    out[k] = 0;
}

static void fmt_period(int64_t ms, int period, char out[16])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char t[64];
    int n;
    if (period == LEDGER_DAILY)
        n = snprintf(t, sizeof t, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    else
        n = snprintf(t, sizeof t, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
    size_t k = n < 0 ? 0 : (size_t)n > 15 ? 15 : (size_t)n;
    memcpy(out, t, k);
    out[k] = 0;
}

/* End of a period ("YYYY-MM" or "YYYY-MM-DD") in ms since the epoch (UTC). */
static int64_t period_end_ms(const char *p)
{
    int y = 0, m = 0, d = 0;
    struct tm tm = {0};
    if (strlen(p) == 10 && sscanf(p, "%4d-%2d-%2d", &y, &m, &d) == 3) {
        tm.tm_year = y - 1900, tm.tm_mon = m - 1, tm.tm_mday = d + 1;
    } else if (strlen(p) == 7 && sscanf(p, "%4d-%2d", &y, &m) == 2) {
        tm.tm_year = y - 1900, tm.tm_mon = m, tm.tm_mday = 1;
    } else {
        return -1;
    }
    return (int64_t)timegm(&tm) * 1000;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    digest_hex(p, n, out);
}

int ledger_unhex(const char *h, size_t hl, uint8_t *out, size_t n)
{
    if (hl != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = h[2 * i + (size_t)k];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

static void le64(uint64_t v, uint8_t out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int path_join(char *out, size_t sz, const char *dir, const char *name)
{
    int r = snprintf(out, sz, "%s/%s", dir, name);
    return r < 0 || (size_t)r >= sz ? -ENAMETOOLONG : 0;
}

/* Reads exactly n bytes at off; -EIO on a short file. */
static int pread_all(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *c = p;
    while (n > 0) {
        ssize_t r = pread(fd, c, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EIO;
        c += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

typedef struct map {
    const uint8_t *p;
    size_t len;
} map;

/* Maps a whole file read-only (an empty or missing file gives len 0;
 * missing sets *missing when given). */
static int map_file(const char *path, map *m, int *missing)
{
    m->p = NULL;
    m->len = 0;
    if (missing)
        *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && missing) {
            *missing = 1;
            return 0;
        }
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = -errno;
            close(fd);
            return e;
        }
        m->p = p;
        m->len = (size_t)st.st_size;
        madvise(p, m->len, MADV_SEQUENTIAL);
    }
    close(fd);
    return 0;
}

static void unmap(map *m)
{
    if (m->p)
        munmap((void *)m->p, m->len);
    m->p = NULL;
    m->len = 0;
}

/* ---- hashing -------------------------------------------------------------------- */

static void hash_init(void)
{
}

static void hash2(uint8_t prefix, const void *a, size_t na, const void *b, size_t nb,
                  uint8_t out[32])
{
    SHA256_CTX c;
    if (SHA256_Init(&c) != 1 || SHA256_Update(&c, &prefix, 1) != 1 ||
        (na && SHA256_Update(&c, a, na) != 1) || (nb && SHA256_Update(&c, b, nb) != 1) ||
        SHA256_Final(out, &c) != 1)
        msg_fatal("OpenSSL: SHA-256 failed");
}

void ledger_leaf_hash(const uint8_t *entry, size_t n, uint8_t out[LEDGER_HASH_LEN])
{
    hash2(0x00, entry, n, NULL, 0, out);
}

void ledger_node_hash(const uint8_t l[LEDGER_HASH_LEN], const uint8_t r[LEDGER_HASH_LEN],
                      uint8_t out[LEDGER_HASH_LEN])
{
    hash2(0x01, l, 32, r, 32, out);
}

static void empty_root(uint8_t out[32])
{
    digest_sha256("", 0, out);
}

/* Root from a frontier of n leaves. */
static void frontier_root(uint8_t fr[MAX_LEVELS][32], uint64_t n, uint8_t out[32])
{
    if (n == 0) {
        empty_root(out);
        return;
    }
    int k = __builtin_ctzll(n);
    uint8_t h[32];
    memcpy(h, fr[k], 32);
    for (k++; k < MAX_LEVELS; k++)
        if ((n >> k) & 1)
            ledger_node_hash(fr[k], h, h);
    memcpy(out, h, 32);
}

/* Adds a leaf to a frontier of *n leaves; each complete subtree made at
 * level k >= 0 is passed to emit (level 0: the leaf itself). */
static void frontier_push(uint8_t fr[MAX_LEVELS][32], uint64_t *n, const uint8_t leaf[32],
                          void (*emit)(void *arg, int level, const uint8_t h[32]), void *arg)
{
    uint8_t h[32];
    memcpy(h, leaf, 32);
    if (emit)
        emit(arg, 0, h);
    uint64_t m = *n;
    int k = 0;
    while (m & 1) {
        ledger_node_hash(fr[k], h, h);
        k++;
        if (emit)
            emit(arg, k, h);
        m >>= 1;
    }
    memcpy(fr[k], h, 32);
    (*n)++;
}

/* ---- entries -------------------------------------------------------------------- */

static int valid_time(const uint8_t *s, size_t n)
{
    /* "YYYY-MM-DDTHH:MM:SS.mmmZ" with its quotes */
    static const char pat[] = "\"dddd-dd-ddTdd:dd:dd.dddZ\"";
    if (n != sizeof pat - 1)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != (uint8_t)pat[i])
            return 0;
    return 1;
}

int ledger_entry_decode(const uint8_t *line, size_t n, buf *scratch, ledger_entry *e, char *why,
                        size_t whylen)
{
    jcs_error je;
    if (n > LEDGER_MAX_ENTRY) {
        snprintf(why, whylen, "longer than %u bytes", LEDGER_MAX_ENTRY);
        return -1;
    }
    jcs_member m[6];
    long k = -1;
    if (!jcs_is_canonical_members(line, n, JCS_EXACT_NUMBERS | JCS_OBJECT, scratch, &je, m, 6,
                                  &k)) {
        snprintf(why, whylen, "byte %zu: %s", je.offset, je.msg);
        return -1;
    }
    static const char *const keys[] = {"fields", "index", "source", "time", "type"};
    if (k != 5) {
        snprintf(why, whylen, "an entry has exactly the members fields, index, source, time, type");
        return -1;
    }
    for (int i = 0; i < 5; i++)
        if (m[i].key_len != strlen(keys[i]) ||
            memcmp(line + m[i].key_off, keys[i], m[i].key_len) != 0) {
            snprintf(why, whylen,
                     "an entry has exactly the members fields, index, source, time, "
                     "type");
            return -1;
        }
    const uint8_t *v = line + m[1].val_off;
    size_t vl = m[1].val_len;
    uint64_t idx = 0;
    if (vl == 0 || vl > 16 || (vl > 1 && v[0] == '0')) {
        snprintf(why, whylen, "index is not a non-negative integer");
        return -1;
    }
    for (size_t i = 0; i < vl; i++) {
        if (v[i] < '0' || v[i] > '9') {
            snprintf(why, whylen, "index is not a non-negative integer");
            return -1;
        }
        idx = idx * 10 + (uint64_t)(v[i] - '0');
    }
    if (line[m[0].val_off] != '{') {
        snprintf(why, whylen, "fields is not an object");
        return -1;
    }
    if (line[m[2].val_off] != '"' || line[m[4].val_off] != '"' || m[4].val_len < 3) {
        snprintf(why, whylen, "source and type must be strings, type non-empty");
        return -1;
    }
    if (!valid_time(line + m[3].val_off, m[3].val_len)) {
        snprintf(why, whylen, "time is not YYYY-MM-DDTHH:MM:SS.mmmZ");
        return -1;
    }
    e->index = idx;
    e->fields_off = m[0].val_off, e->fields_len = m[0].val_len;
    e->source_off = m[2].val_off, e->source_len = m[2].val_len;
    e->time_off = m[3].val_off, e->time_len = m[3].val_len;
    e->type_off = m[4].val_off, e->type_len = m[4].val_len;
    return 0;
}

/* ---- signed tree heads ------------------------------------------------------- */

size_t ledger_sth_message(const ledger_sth *sth, char *out, size_t outsz)
{
    char rh[65];
    hex(sth->root, 32, rh);
    int r = snprintf(out, outsz, "%s%" PRIu64 "\n%s\n%" PRId64 "\n", LEDGER_STH_PREFIX,
                     sth->tree_size, rh, sth->timestamp_ms);
    return r < 0 ? 0 : (size_t)r;
}

int ledger_sth_verify(const ledger_sth *sth)
{
    char msg[256];
    size_t n = ledger_sth_message(sth, msg, sizeof msg);
    if (sodium_init() < 0)
        msg_fatal("libsodium: cannot initialise");
    return crypto_sign_verify_detached(sth->signature, (const unsigned char *)msg, n,
                                       sth->public_key) == 0
               ? 0
               : -EBADMSG;
}

static void sth_line(const ledger_sth *s, buf *out)
{
    char rh[65], sg[129];
    hex(s->root, 32, rh);
    hex(s->signature, 64, sg);
    buf_printf(out,
               "{\"root_hash\":\"%s\",\"signature\":\"%s\",\"timestamp\":%" PRId64
               ",\"tree_size\":%" PRIu64 "}\n",
               rh, sg, s->timestamp_ms, s->tree_size);
}

static int get_u64(const uint8_t *v, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19 || (n > 1 && v[0] == '0'))
        return -1;
    uint64_t r = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        r = r * 10 + (uint64_t)(v[i] - '0');
    }
    *out = r;
    return 0;
}

/* A stored head line (without newline): canonical, the four members; the
 * signature is checked with pk. */
static int parse_sth(const uint8_t *line, size_t n, const uint8_t pk[32], buf *scratch,
                     ledger_sth *s, char *why, size_t whylen)
{
    jcs_error je;
    if (!jcs_is_canonical(line, n, JCS_EXACT_NUMBERS | JCS_OBJECT, scratch, &je)) {
        snprintf(why, whylen, "not a canonical JSON object (%s)", je.msg);
        return -1;
    }
    jcs_member m[5];
    static const char *const keys[] = {"root_hash", "signature", "timestamp", "tree_size"};
    if (jcs_members(line, n, m, 5) != 4) {
        snprintf(why, whylen, "a head has exactly root_hash, signature, timestamp, tree_size");
        return -1;
    }
    for (int i = 0; i < 4; i++)
        if (m[i].key_len != strlen(keys[i]) ||
            memcmp(line + m[i].key_off, keys[i], m[i].key_len) != 0) {
            snprintf(why, whylen, "a head has exactly root_hash, signature, timestamp, tree_size");
            return -1;
        }
    uint64_t ts;
    if (m[0].val_len != 66 ||
        ledger_unhex((const char *)line + m[0].val_off + 1, 64, s->root, 32) < 0 ||
        m[1].val_len != 130 ||
        ledger_unhex((const char *)line + m[1].val_off + 1, 128, s->signature, 64) < 0 ||
        get_u64(line + m[2].val_off, m[2].val_len, &ts) < 0 || ts > INT64_MAX ||
        get_u64(line + m[3].val_off, m[3].val_len, &s->tree_size) < 0) {
        snprintf(why, whylen, "a member has the wrong form");
        return -1;
    }
    s->timestamp_ms = (int64_t)ts;
    memcpy(s->public_key, pk, 32);
    if (ledger_sth_verify(s) < 0) {
        snprintf(why, whylen, "the signature does not verify with the ledger's public key");
        return -1;
    }
    return 0;
}

/* ---- keys ----------------------------------------------------------------------- */

static int load_key(const char *path, uint8_t pk[32], uint8_t sk[64], buf *err)
{
    buf b;
    buf_init(&b, 4096);
    int rc = fileio_read_file(path, &b);
    if (rc < 0) {
        errf(err, "署名鍵を読めません / cannot read the signing key %s: %s", path, strerror(-rc));
        buf_free(&b);
        return rc;
    }
    uint8_t seed[32];
    size_t len = b.len;
    while (len > 0 && (b.p[len - 1] == '\n' || b.p[len - 1] == '\r'))
        len--;
    if (ledger_unhex((const char *)b.p, len, seed, 32) < 0) {
        errf(err, "署名鍵の形式が違います / %s: not an Ed25519 key (64 hex digits)", path);
        buf_free(&b);
        return -EINVAL;
    }
    buf_free(&b);
    if (sodium_init() < 0)
        msg_fatal("libsodium: cannot initialise");
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(seed, sizeof seed);
    return 0;
}

static int make_key(const char *path, uint8_t pk[32], uint8_t sk[64], buf *err)
{
    if (sodium_init() < 0)
        msg_fatal("libsodium: cannot initialise");
    uint8_t seed[32];
    randombytes_buf(seed, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    char line[66];
    hex(seed, 32, line);
    sodium_memzero(seed, sizeof seed);
    line[64] = '\n';
    line[65] = 0;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        int rc = fileio_mkdir_p(dir, 0750);
        if (rc < 0) {
            errf(err, "%s: %s", dir, strerror(-rc));
            return rc;
        }
    } else {
        snprintf(dir, sizeof dir, "%s", slash ? "/" : ".");
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = -errno;
        errf(err, "署名鍵を作れません / cannot create the signing key %s: %s", path,
             strerror(errno));
        sodium_memzero(line, sizeof line);
        return e;
    }
    int rc = fileio_write_all(fd, line, 65);
    sodium_memzero(line, sizeof line);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0)
        rc = fileio_fsync_dir(dir);
    if (rc < 0) {
        unlink(path);
        errf(err, "%s: %s", path, strerror(-rc));
    }
    return rc;
}

/* ---- segments ------------------------------------------------------------------- */

typedef struct segment {
    uint64_t start;
    char name[SEG_NAME_MAX];
    char period[16];
} segment;

static int seg_cmp(const void *a, const void *b)
{
    const segment *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* "<16 digits>.<YYYY-MM or YYYY-MM-DD>.jsonl" */
static int parse_seg_name(const char *name, segment *s)
{
    size_t n = strlen(name);
    if (n < 16 + 1 + 7 + 6 || n >= SEG_NAME_MAX || name[16] != '.' ||
        strcmp(name + n - 6, ".jsonl") != 0)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    size_t pl = n - 6 - 17;
    if (pl != 7 && pl != 10)
        return -1;
    memcpy(s->period, name + 17, pl);
    s->period[pl] = 0;
    if (period_end_ms(s->period) < 0)
        return -1;
    s->start = v;
    snprintf(s->name, sizeof s->name, "%s", name);
    return 0;
}

/* The segment files, sorted by first index; names that do not parse go to
 * strays (when given) as a count. */
static int list_segments(const char *dir, segment **out, size_t *n, buf *strays, buf *err)
{
    char path[PATH_MAX];
    *out = NULL;
    *n = 0;
    if (path_join(path, sizeof path, dir, "entries") < 0)
        return -ENAMETOOLONG;
    DIR *d = opendir(path);
    if (d == NULL) {
        int e = -errno;
        errf(err, "%s: %s", path, strerror(errno));
        return e;
    }
    size_t cap = 0;
    segment *v = NULL;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        segment s;
        if (parse_seg_name(de->d_name, &s) < 0) {
            if (strays) {
                buf_puts(strays, de->d_name);
                buf_putc(strays, '\n');
            }
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            segment *nv = realloc(v, cap * sizeof *nv);
            if (nv == NULL)
                msg_fatal("ledger: out of memory");
            v = nv;
        }
        v[(*n)++] = s;
    }
    closedir(d);
    if (*n > 1)
        qsort(v, *n, sizeof *v, seg_cmp);
    *out = v;
    return 0;
}

/* ---- the handle ----------------------------------------------------------------- */

struct ledger {
    ledger_opts o;
    char *dir;
    char *key_file;
    int writable, broken;
    int lock_fd;
    uint8_t pk[32], sk[64];
    segment *segs;
    size_t nseg;
    int seg_fd;
    uint64_t seg_size;
    uint64_t n; /* committed leaves */
    uint8_t fr[MAX_LEVELS][32];
    int lvl_fd[MAX_LEVELS];
    buf lvl_buf[MAX_LEVELS];
    int off_fd;
    buf off_buf;
    /* staged: serialized with provisional indices stage_base + i; the
     * commit re-serializes them if other writers committed in between */
    buf stage;
    size_t nstage, capstage;
    uint8_t (*stage_leaf)[32];
    uint64_t *stage_off;  /* where entry i starts in stage */
    uint64_t *stage_ipos; /* where its index digits start in stage */
    uint64_t stage_base;
    char stage_period[16];
    /* several writers: the flock is held only inside a transaction */
    int in_tx, need_pending;
    uint64_t gen;     /* lock record generation this handle last saw or wrote */
    uint64_t ck_size; /* bytes of checkpoints.jsonl */
    struct imap {
        uint64_t staged, index, count;
    } * imap; /* provisional -> final indices since the last explicit commit */
    size_t nimap, capimap;
    int imap_reset;
    /* heads */
    int ck_fd;
    ledger_sth last;
    int64_t last_ck_wall;
    buf scratch, tmp, canon, sv, sq;
    int64_t tsec;
    char tprefix[32];
    char tperiod[16];   /* the segment period of second tsec */
    const char *sq_for; /* default source whose canonical string is in sq */
};

static int64_t now_ms(ledger *l)
{
    return l->o.clock_ms ? l->o.clock_ms(l->o.clock_arg) : real_clock(NULL);
}

static int level_path(const ledger *l, int k, char *out, size_t sz)
{
    int r = snprintf(out, sz, "%s/tree/hashes-%02d", l->dir, k);
    return r < 0 || (size_t)r >= sz ? -ENAMETOOLONG : 0;
}

static ledger *handle_new(const ledger_opts *o)
{
    ledger *l = xcalloc(1, sizeof *l);
    l->o = *o;
    l->dir = xstrdup(o->dir);
    l->key_file = o->key_file ? xstrdup(o->key_file) : NULL;
    l->o.dir = l->dir;
    l->o.key_file = l->key_file;
    if (l->o.checkpoint_entries == 0)
        l->o.checkpoint_entries = DEFAULT_CK_N;
    if (l->o.checkpoint_ms == 0)
        l->o.checkpoint_ms = DEFAULT_CK_MS;
    l->lock_fd = l->seg_fd = l->off_fd = l->ck_fd = -1;
    for (int k = 0; k < MAX_LEVELS; k++) {
        l->lvl_fd[k] = -1;
        buf_init(&l->lvl_buf[k], BUF_UNLIMITED);
    }
    buf_init(&l->off_buf, BUF_UNLIMITED);
    buf_init(&l->stage, BUF_UNLIMITED);
    buf_init(&l->scratch, BUF_UNLIMITED);
    buf_init(&l->tmp, BUF_UNLIMITED);
    buf_init(&l->canon, (size_t)LEDGER_MAX_ENTRY * 2);
    buf_init(&l->sv, LEDGER_MAX_ENTRY);
    buf_init(&l->sq, (size_t)LEDGER_MAX_ENTRY * 2);
    l->tsec = -1;
    return l;
}

static void handle_free(ledger *l)
{
    if (l == NULL)
        return;
    for (int k = 0; k < MAX_LEVELS; k++) {
        if (l->lvl_fd[k] >= 0)
            close(l->lvl_fd[k]);
        buf_free(&l->lvl_buf[k]);
    }
    if (l->off_fd >= 0)
        close(l->off_fd);
    if (l->seg_fd >= 0)
        close(l->seg_fd);
    if (l->ck_fd >= 0)
        close(l->ck_fd);
    if (l->lock_fd >= 0)
        close(l->lock_fd);
    buf_free(&l->off_buf);
    buf_free(&l->stage);
    buf_free(&l->scratch);
    buf_free(&l->tmp);
    buf_free(&l->canon);
    buf_free(&l->sv);
    buf_free(&l->sq);
    free(l->stage_leaf);
    free(l->stage_off);
    free(l->stage_ipos);
    free(l->imap);
    free(l->segs);
    sodium_memzero(l->sk, sizeof l->sk);
    free(l->dir);
    free(l->key_file);
    free(l);
}

static int read_public_key(const char *dir, uint8_t pk[32], buf *err)
{
    char path[PATH_MAX];
    if (path_join(path, sizeof path, dir, "ledger.json") < 0)
        return -ENAMETOOLONG;
    buf b, s;
    buf_init(&b, 65536);
    buf_init(&s, 65536);
    int rc = fileio_read_file(path, &b);
    if (rc < 0) {
        errf(err, "台帳がありません / no ledger at %s (%s; create it with: sekisho ledger init)",
             dir, strerror(-rc));
        goto out;
    }
    jcs_error je;
    jcs_member m[8];
    long k = -1;
    if (b.len > 0 && b.p[b.len - 1] == '\n' &&
        jcs_is_canonical(b.p, b.len - 1, JCS_OBJECT, &s, &je))
        k = jcs_members(b.p, b.len - 1, m, 8);
    rc = -EINVAL;
    for (long i = 0; i < k && i < 8; i++)
        if (m[i].key_len == 10 && memcmp(b.p + m[i].key_off, "public_key", 10) == 0 &&
            m[i].val_len == 66 &&
            ledger_unhex((const char *)b.p + m[i].val_off + 1, 64, pk, 32) == 0)
            rc = 0;
    if (rc < 0)
        errf(err, "%s: 形式が違います / not a sekisho ledger description (no public_key)", path);
out:
    buf_free(&b);
    buf_free(&s);
    return rc;
}

/* ---- derived files -------------------------------------------------------------- */

static void emit_level(void *arg, int k, const uint8_t h[32])
{
    ledger *l = arg;
    buf_append(&l->lvl_buf[k], h, 32);
}

static int open_append(const char *path, int *fd)
{
    if (*fd >= 0)
        return 0;
    *fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    return *fd < 0 ? -errno : 0;
}

/* Writes the buffered derived data (no sync). */
static int flush_derived(ledger *l, buf *err)
{
    char path[PATH_MAX];
    for (int k = 0; k < MAX_LEVELS; k++) {
        if (l->lvl_buf[k].len == 0)
            continue;
        level_path(l, k, path, sizeof path);
        int rc = open_append(path, &l->lvl_fd[k]);
        if (rc == 0)
            rc = fileio_write_all(l->lvl_fd[k], l->lvl_buf[k].p, l->lvl_buf[k].len);
        if (rc < 0) {
            errf(err, "%s: %s", path, strerror(-rc));
            return rc;
        }
        buf_reset(&l->lvl_buf[k]);
    }
    if (l->off_buf.len) {
        path_join(path, sizeof path, l->dir, "tree/offsets");
        int rc = open_append(path, &l->off_fd);
        if (rc == 0)
            rc = fileio_write_all(l->off_fd, l->off_buf.p, l->off_buf.len);
        if (rc < 0) {
            errf(err, "%s: %s", path, strerror(-rc));
            return rc;
        }
        buf_reset(&l->off_buf);
    }
    return 0;
}

static int sync_derived(ledger *l, buf *err)
{
    int rc = flush_derived(l, err);
    if (rc < 0)
        return rc;
    for (int k = 0; k < MAX_LEVELS; k++)
        if (l->lvl_fd[k] >= 0 && fdatasync(l->lvl_fd[k]) < 0) {
            errf(err, "tree/hashes-%02d: fdatasync: %s", k, strerror(errno));
            return -errno;
        }
    if (l->off_fd >= 0 && fdatasync(l->off_fd) < 0) {
        errf(err, "tree/offsets: fdatasync: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

/* A stored node: the hash of the aligned subtree index i of height k. */
static int read_node(ledger *l, int k, uint64_t i, uint8_t out[32], buf *err)
{
    char path[PATH_MAX];
    if (l->lvl_fd[k] < 0 || l->writable) {
        /* Readers open lazily; a writer's fds are write-only, so read via a
         * separate descriptor. */
        level_path(l, k, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            errf(err, "%s: %s", path, strerror(errno));
            return -errno;
        }
        int rc = pread_all(fd, out, 32, i * 32);
        close(fd);
        if (rc < 0)
            errf(err, "%s: record %" PRIu64 ": %s", path, i,
                 rc == -EIO ? "missing (file too short)" : strerror(-rc));
        return rc;
    }
    int rc = pread_all(l->lvl_fd[k], out, 32, i * 32);
    if (rc < 0) {
        level_path(l, k, path, sizeof path);
        errf(err, "%s: record %" PRIu64 ": %s", path, i,
             rc == -EIO ? "missing (file too short)" : strerror(-rc));
    }
    return rc;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* MTH(D[a:b]) from stored subtrees. */
static int subtree_hash(ledger *l, uint64_t a, uint64_t b, uint8_t out[32], buf *err)
{
    uint64_t size = b - a;
    if (size == 0) {
        empty_root(out);
        return 0;
    }
    if ((size & (size - 1)) == 0 && a % size == 0)
        return read_node(l, __builtin_ctzll(size), a / size, out, err);
    uint64_t k = (uint64_t)1 << (63 - __builtin_clzll(size - 1));
    uint8_t left[32], right[32];
    int rc = subtree_hash(l, a, a + k, left, err);
    if (rc == 0)
        rc = subtree_hash(l, a + k, b, right, err);
    if (rc == 0)
        ledger_node_hash(left, right, out);
    return rc;
}

/* ---- init ------------------------------------------------------------------------- */

static int sign_head(const uint8_t sk[64], ledger_sth *s)
{
    char msg[256];
    size_t n = ledger_sth_message(s, msg, sizeof msg);
    return crypto_sign_detached(s->signature, NULL, (const unsigned char *)msg, n, sk) == 0
               ? 0
               : -EINVAL;
}

int ledger_init(const ledger_opts *o, char pub_hex[2 * LEDGER_PUBKEY_LEN + 1], buf *err)
{
    char path[PATH_MAX];
    uint8_t pk[32], sk[64];
    if (o->key_file == NULL) {
        errf(err, "署名鍵の場所がありません / no signing key path given");
        return -EINVAL;
    }
    if (path_join(path, sizeof path, o->dir, "ledger.json") < 0)
        return -ENAMETOOLONG;
    if (access(path, F_OK) == 0) {
        errf(err, "台帳は既にあります / a ledger already exists at %s", o->dir);
        return -EEXIST;
    }
    static const char *const subdirs[] = {"entries", "tree", "recovered"};
    for (size_t i = 0; i < 3; i++) {
        char sd[PATH_MAX];
        if (path_join(sd, sizeof sd, o->dir, subdirs[i]) < 0)
            return -ENAMETOOLONG;
        int rc = fileio_mkdir_p(sd, 0750);
        if (rc < 0) {
            errf(err, "%s: %s", sd, strerror(-rc));
            return rc;
        }
    }
    int rc;
    if (access(o->key_file, F_OK) == 0)
        rc = load_key(o->key_file, pk, sk, err);
    else
        rc = make_key(o->key_file, pk, sk, err);
    if (rc < 0)
        return rc;
    hex(pk, 32, pub_hex);
    int64_t now = o->clock_ms ? o->clock_ms(o->clock_arg) : real_clock(NULL);
    char t[32];
    fmt_time(now, t);
    /* The empty tree's signed head first, then the description: a directory
     * with ledger.json is always a complete ledger. */
    ledger_sth s = {0};
    s.tree_size = 0;
    empty_root(s.root);
    s.timestamp_ms = now;
    memcpy(s.public_key, pk, 32);
    sign_head(sk, &s);
    sodium_memzero(sk, sizeof sk);
    buf b;
    buf_init(&b, 4096);
    sth_line(&s, &b);
    path_join(path, sizeof path, o->dir, "checkpoints.jsonl");
    rc = fileio_write_atomic(path, b.p, b.len, 0640, 1);
    if (rc == 0) {
        buf_reset(&b);
        buf_printf(&b,
                   "{\"created\":\"%s\",\"format\":\"%s\",\"hash\":\"sha256-rfc9162\","
                   "\"public_key\":\"%s\",\"signature\":\"ed25519\"}\n",
                   t, LEDGER_FORMAT, pub_hex);
        path_join(path, sizeof path, o->dir, "ledger.json");
        rc = fileio_write_atomic(path, b.p, b.len, 0640, 1);
    }
    if (rc < 0)
        errf(err, "%s: %s", path, strerror(-rc));
    buf_free(&b);
    return rc;
}

/* ---- open ------------------------------------------------------------------------- */

typedef struct recovery {
    int happened;
    char file[PATH_MAX];
    uint64_t offset, bytes;
    char sha[65];
    char saved[PATH_MAX];
} recovery;

#define PENDING_SUFFIX ".pending"

/*
 * Saves a torn tail before it is cut: its bytes to recovered/<tag>.<time>
 * (the name goes to rec->saved), then, beside it, "<that>.pending" holding
 * the fields of the ledger.recovery entry that records it. Both are synced
 * before the caller cuts the tail. The entry is appended, and the .pending
 * file removed, only once the ledger is open for writing (record_pending());
 * a writer killed in between leaves the .pending file, and the next one
 * records it. So a recovery is never lost between the cut and its entry (at
 * worst it is recorded twice).
 */
static int save_recovered(ledger *l, const char *tag, const uint8_t *p, size_t n, recovery *rec,
                          buf *err)
{
    char t[32], path[2 * PATH_MAX + 2], dir[PATH_MAX];
    fmt_time(now_ms(l), t);
    snprintf(rec->saved, sizeof rec->saved, "recovered/%s.%s", tag, t);
    if (path_join(path, sizeof path, l->dir, rec->saved) < 0) {
        errf(err, "%s/%s: path too long", l->dir, rec->saved);
        return -ENAMETOOLONG;
    }
    path_join(dir, sizeof dir, l->dir, "recovered");
    int rc = fileio_mkdir_p(dir, 0750);
    if (rc == 0)
        rc = fileio_write_atomic(path, p, n, 0640, 1);
    if (rc == 0) {
        buf f;
        buf_init(&f, 8192);
        buf_puts(&f, "{\"bytes\":");
        buf_printf(&f, "%" PRIu64 ",\"file\":", rec->bytes);
        jcs_put_string(&f, rec->file, strlen(rec->file));
        buf_printf(&f, ",\"offset\":%" PRIu64 ",\"saved_as\":", rec->offset);
        jcs_put_string(&f, rec->saved, strlen(rec->saved));
        buf_printf(&f, ",\"sha256\":\"%s\"}", rec->sha);
        char pending[sizeof path + 16];
        snprintf(pending, sizeof pending, "%s" PENDING_SUFFIX, path);
        rc = f.err ? f.err : fileio_write_atomic(pending, f.p, f.len, 0640, 1);
        buf_free(&f);
    }
    if (rc < 0)
        errf(err, "%s: %s", path, strerror(-rc));
    return rc;
}

/* Appends a ledger.recovery entry for every recovered/ *.pending file, makes
 * them durable with a signed head, then removes the .pending files. */
static int record_pending(ledger *l, buf *err)
{
    char dir[PATH_MAX];
    path_join(dir, sizeof dir, l->dir, "recovered");
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        int e = errno;
        errf(err, "%s: %s", dir, strerror(e));
        return -e;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name), sl = strlen(PENDING_SUFFIX);
        if (len <= sl || strcmp(de->d_name + len - sl, PENDING_SUFFIX) != 0)
            continue;
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (nn == NULL)
            msg_fatal("out of memory");
        names = nn;
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[PATH_MAX];
        buf f;
        buf_init(&f, 1 << 16);
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path)
            rc = -ENAMETOOLONG;
        else
            rc = fileio_read_file(path, &f);
        uint64_t idx;
        if (rc == 0)
            rc = ledger_append(l, "ledger.recovery", "sekisho-ledger", f.p, f.len, &idx, err);
        else
            errf(err, "%s: %s", path, strerror(-rc));
        buf_free(&f);
    }
    if (rc == 0 && n > 0)
        rc = ledger_checkpoint(l, err);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        if (rc == 0 && snprintf(path, sizeof path, "%s/%s", dir, names[i]) < (int)sizeof path)
            unlink(path);
        free(names[i]);
    }
    free(names);
    if (rc == 0 && n > 0)
        fileio_fsync_dir(dir);
    return rc;
}

/* The head file: the last line is the last signed head. A torn last line is
 * saved, cut off and reported in rec. */
static int open_heads(ledger *l, recovery *rec, buf *err)
{
    char path[PATH_MAX];
    path_join(path, sizeof path, l->dir, "checkpoints.jsonl");
    map m;
    int rc = map_file(path, &m, NULL);
    if (rc < 0) {
        errf(err, "%s: %s", path, strerror(-rc));
        return rc;
    }
    char why[200];
    int have = 0;
    /* Everything after the last newline is a torn write; of the complete
     * lines, the last may be damaged by the same crash (cut it too), but the
     * one before must then be valid. */
    size_t end = m.len;
    while (end > 0 && m.p[end - 1] != '\n')
        end--;
    for (int attempt = 0; attempt < 2 && end > 0 && !have; attempt++) {
        size_t ls = end - 1;
        while (ls > 0 && m.p[ls - 1] != '\n')
            ls--;
        if (parse_sth(m.p + ls, end - 1 - ls, l->pk, &l->scratch, &l->last, why, sizeof why) == 0)
            have = 1;
        else
            end = ls;
    }
    if (!have) {
        errf(
            err,
            "%s: 有効な署名付きツリーヘッドがありません / no valid signed tree head (the ledger is "
            "damaged; run: sekisho ledger verify)",
            path);
        unmap(&m);
        return -EBADMSG;
    }
    if (end < m.len && rec != NULL) {
        uint8_t h[32];
        digest_sha256(m.p + end, m.len - end, h);
        rec->happened = 1;
        snprintf(rec->file, sizeof rec->file, "checkpoints.jsonl");
        rec->offset = end;
        rec->bytes = m.len - end;
        hex(h, 32, rec->sha);
        rc = save_recovered(l, "checkpoints", m.p + end, m.len - end, rec, err);
        if (rc == 0 && truncate(path, (off_t)end) < 0)
            rc = -errno;
        if (rc == 0) {
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || fsync(fd) < 0)
                rc = -errno;
            if (fd >= 0)
                close(fd);
        }
        if (rc < 0) {
            errf(err, "%s: cannot cut the torn tail: %s", path, strerror(-rc));
            unmap(&m);
            return rc;
        }
    }
    unmap(&m);
    l->last_ck_wall = now_ms(l);
    return 0;
}

/* Reader size: what both the offsets and the leaf hashes cover. */
static uint64_t derived_count(ledger *l)
{
    char path[PATH_MAX];
    path_join(path, sizeof path, l->dir, "tree/offsets");
    uint64_t a = file_size(path) / 8;
    level_path(l, 0, path, sizeof path);
    uint64_t b = file_size(path) / 32;
    return a < b ? a : b;
}

/* End offset of entry i-1 in its segment (i > 0 and in that segment). */
static int entry_end(ledger *l, const segment *s, uint64_t i, uint64_t *end, buf *err)
{
    char path[PATH_MAX];
    uint8_t ob[8];
    path_join(path, sizeof path, l->dir, "tree/offsets");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errf(err, "%s: %s", path, strerror(errno));
        return -errno;
    }
    int rc = pread_all(fd, ob, 8, (i - 1) * 8);
    close(fd);
    if (rc < 0) {
        errf(err, "%s: entry %" PRIu64 ": %s", path, i - 1, strerror(-rc));
        return rc;
    }
    uint64_t off = get_le64(ob);
    char sp[PATH_MAX];
    snprintf(sp, sizeof sp, "%s/entries/%s", l->dir, s->name);
    fd = open(sp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errf(err, "%s: %s", sp, strerror(errno));
        return -errno;
    }
    uint8_t chunk[65536];
    uint64_t pos = off;
    for (;;) {
        ssize_t r = pread(fd, chunk, sizeof chunk, (off_t)pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            errf(err, "%s: entry %" PRIu64 " at byte %" PRIu64 " has no end", sp, i - 1, off);
            return -EBADMSG;
        }
        uint8_t *nl = memchr(chunk, '\n', (size_t)r);
        if (nl) {
            *end = pos + (uint64_t)(nl - chunk) + 1;
            close(fd);
            return 0;
        }
        pos += (uint64_t)r;
        if (pos - off > LEDGER_MAX_ENTRY + 1) {
            close(fd);
            errf(err, "%s: entry %" PRIu64 " at byte %" PRIu64 " has no end", sp, i - 1, off);
            return -EBADMSG;
        }
    }
}

static int stage_grow(ledger *l)
{
    if (l->nstage < l->capstage)
        return 0;
    size_t nc = l->capstage ? l->capstage * 2 : 1024;
    uint8_t(*nl)[32] = realloc(l->stage_leaf, nc * sizeof *nl);
    if (nl == NULL)
        return -ENOMEM;
    l->stage_leaf = nl;
    uint64_t *no = realloc(l->stage_off, nc * sizeof *no);
    if (no == NULL)
        return -ENOMEM;
    l->stage_off = no;
    uint64_t *ni = realloc(l->stage_ipos, nc * sizeof *ni);
    if (ni == NULL)
        return -ENOMEM;
    l->stage_ipos = ni;
    l->capstage = nc;
    return 0;
}

/* Re-reads entries from (segment si, byte off) on, as entry l->n, rebuilding
 * their hashes; cuts a torn tail of the last segment (reported in rec). */
static int rescan(ledger *l, size_t si, uint64_t off, recovery *rec, buf *err)
{
    char path[PATH_MAX];
    char why[200];
    for (; si < l->nseg; si++) {
        segment *s = &l->segs[si];
        if (off == 0 && s->start != l->n) {
            errf(err,
                 "entries/%s: 最初の番号 %" PRIu64 " が %" PRIu64
                 " であるべきです / starts at index %" PRIu64 ", expected %" PRIu64
                 " (damaged; run: sekisho ledger verify)",
                 s->name, s->start, l->n, s->start, l->n);
            return -EBADMSG;
        }
        snprintf(path, sizeof path, "%s/entries/%s", l->dir, s->name);
        map m;
        int rc = map_file(path, &m, NULL);
        if (rc < 0) {
            errf(err, "%s: %s", path, strerror(-rc));
            return rc;
        }
        if (off > m.len) {
            errf(err, "%s: shorter (%zu bytes) than the signed part (%" PRIu64 " bytes)", path,
                 m.len, off);
            unmap(&m);
            return -EBADMSG;
        }
        uint64_t pos = off;
        while (pos < m.len) {
            const uint8_t *nl = memchr(m.p + pos, '\n', m.len - pos);
            ledger_entry e;
            size_t len = nl ? (size_t)(nl - (m.p + pos)) : 0;
            if (nl == NULL ||
                ledger_entry_decode(m.p + pos, len, &l->scratch, &e, why, sizeof why) < 0 ||
                e.index != l->n)
                break;
            uint8_t leaf[32];
            ledger_leaf_hash(m.p + pos, len, leaf);
            frontier_push(l->fr, &l->n, leaf, emit_level, l);
            uint8_t ob[8];
            le64(pos, ob);
            buf_append(&l->off_buf, ob, 8);
            pos += len + 1;
        }
        if (pos < m.len) {
            if (si + 1 < l->nseg) {
                errf(err,
                     "%s: byte %" PRIu64
                     ": 不正な記録の後に別の区間があります / an invalid entry is followed by "
                     "another segment (not a crash; run: sekisho ledger verify)",
                     path, pos);
                unmap(&m);
                return -EBADMSG;
            }
            uint8_t h[32];
            digest_sha256(m.p + pos, m.len - pos, h);
            rec->happened = 1;
            snprintf(rec->file, sizeof rec->file, "entries/%s", s->name);
            rec->offset = pos;
            rec->bytes = m.len - pos;
            hex(h, 32, rec->sha);
            char tag[SEG_NAME_MAX + 32];
            snprintf(tag, sizeof tag, "%s.%" PRIu64, s->name, pos);
            rc = save_recovered(l, tag, m.p + pos, m.len - pos, rec, err);
            if (rc == 0 && truncate(path, (off_t)pos) < 0)
                rc = -errno;
            if (rc < 0) {
                errf(err, "%s: cannot cut the torn tail: %s", path, strerror(-rc));
                unmap(&m);
                return rc;
            }
        }
        unmap(&m);
        off = 0;
        if (si + 1 == l->nseg) {
            l->seg_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
            if (l->seg_fd < 0 || fsync(l->seg_fd) < 0) {
                errf(err, "%s: %s", path, strerror(errno));
                return -errno;
            }
            l->seg_size = pos;
        }
    }
    return flush_derived(l, err);
}

/*
 * Several writers. Each writer process (or handle) holds the flock on "lock"
 * only for one transaction: a commit (write + fdatasync + derived files + a
 * head if due), a checkpoint, an open's recovery or a prune. The lock file
 * holds a small record written under the lock (never synced: it only has to
 * survive the death of a process, not of the machine, and every open after a
 * reboot recovers from the files themselves):
 *     "SKLOCK01", gen, entries, first index of the last segment,
 *     bytes of the last segment, bytes of checkpoints.jsonl   (u64 LE each)
 * gen is odd while a transaction is under way. A writer that takes the lock
 * and finds gen odd knows the previous holder died inside a transaction and
 * runs the same recovery as an open (cut and record a torn tail, rebuild the
 * derived files after the last signed head). If gen is even but not the one
 * it wrote last, another writer committed: it reloads its state (entries,
 * frontier, segment, last head) from the files, after checking that they are
 * exactly as the record says (else: the full recovery).
 */
#define LOCKREC_MAGIC "SKLOCK01"
#define LOCKREC_LEN   48
#define NO_SEGMENT    UINT64_MAX

typedef struct lockrec {
    uint64_t gen, n, seg_start, seg_size, ck_size;
} lockrec;

/* 1 with *r filled, 0 when the file holds no record (new or old ledger). */
static int lock_read(ledger *l, lockrec *r, buf *err)
{
    uint8_t b[LOCKREC_LEN];
    ssize_t got;
    do
        got = pread(l->lock_fd, b, sizeof b, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        errf(err, "%s/lock: %s", l->dir, strerror(errno));
        return -errno;
    }
    if (got != LOCKREC_LEN || memcmp(b, LOCKREC_MAGIC, 8) != 0)
        return 0;
    r->gen = get_le64(b + 8);
    r->n = get_le64(b + 16);
    r->seg_start = get_le64(b + 24);
    r->seg_size = get_le64(b + 32);
    r->ck_size = get_le64(b + 40);
    return 1;
}

static int lock_write(ledger *l, const lockrec *r, buf *err)
{
    uint8_t b[LOCKREC_LEN];
    memcpy(b, LOCKREC_MAGIC, 8);
    le64(r->gen, b + 8);
    le64(r->n, b + 16);
    le64(r->seg_start, b + 24);
    le64(r->seg_size, b + 32);
    le64(r->ck_size, b + 40);
    ssize_t w;
    do
        w = pwrite(l->lock_fd, b, sizeof b, 0);
    while (w < 0 && errno == EINTR);
    if (w != (ssize_t)sizeof b) {
        int e = w < 0 ? errno : EIO;
        errf(err, "%s/lock: %s", l->dir, strerror(e));
        return -e;
    }
    return 0;
}

static void state_reset(ledger *l)
{
    if (l->seg_fd >= 0)
        close(l->seg_fd);
    l->seg_fd = -1;
    l->seg_size = 0;
    free(l->segs);
    l->segs = NULL;
    l->nseg = 0;
    memset(l->fr, 0, sizeof l->fr);
    l->n = 0;
    for (int k = 0; k < MAX_LEVELS; k++)
        buf_reset(&l->lvl_buf[k]);
    buf_reset(&l->off_buf);
}

/* The frontier of the first n leaves from the stored subtree hashes. */
static int load_frontier(ledger *l, uint64_t n, buf *err)
{
    memset(l->fr, 0, sizeof l->fr);
    for (int k = 0; k < MAX_LEVELS; k++)
        if ((n >> k) & 1) {
            int rc = read_node(l, k, (n >> k) - 1, l->fr[k], err);
            if (rc < 0)
                return rc;
        }
    l->n = n;
    return 0;
}

/* What an open does: trust the last signed head (after checking the stored
 * root against it), cut the derived files to it, re-read the entries after
 * it, cut and save a torn tail. Recoveries are staged in recovered/ *.pending
 * and reported to notes; record_pending() appends them. */
static int full_reload(ledger *l, buf *err)
{
    char path[PATH_MAX];
    int rc;
    state_reset(l);
    recovery hrec = {0}, erec = {0};
    rc = open_heads(l, &hrec, err);
    if (rc < 0)
        return rc;
    uint64_t T = l->last.tree_size;
    /* Derived files: complete up to T (synced before the head), cut to T. */
    for (int k = 0; k < MAX_LEVELS; k++) {
        uint64_t want = T >> k;
        level_path(l, k, path, sizeof path);
        uint64_t have = file_size(path) / 32;
        if (have < want) {
            errf(err,
                 "%s: 署名済みの範囲より短い / shorter than the signed tree (%" PRIu64
                 " of %" PRIu64 " hashes; damaged; run: sekisho ledger verify)",
                 path, have, want);
            return -EBADMSG;
        }
        if (file_size(path) != want * 32 && (want > 0 || access(path, F_OK) == 0) &&
            truncate(path, (off_t)(want * 32)) < 0) {
            errf(err, "%s: %s", path, strerror(errno));
            return -errno;
        }
    }
    path_join(path, sizeof path, l->dir, "tree/offsets");
    if (file_size(path) / 8 < T) {
        errf(err, "%s: 署名済みの範囲より短い / shorter than the signed tree (damaged)", path);
        return -EBADMSG;
    }
    if (access(path, F_OK) == 0 && truncate(path, (off_t)(T * 8)) < 0) {
        errf(err, "%s: %s", path, strerror(errno));
        return -errno;
    }
    /* Frontier at T, and its root against the signed one. */
    for (int k = 0; k < MAX_LEVELS; k++)
        if ((T >> k) & 1) {
            rc = read_node(l, k, (T >> k) - 1, l->fr[k], err);
            if (rc < 0)
                return rc;
        }
    l->n = T;
    uint8_t root[32];
    frontier_root(l->fr, T, root);
    if (memcmp(root, l->last.root, 32) != 0) {
        errf(err,
             "tree/: 保存されたハッシュが署名済みの根と一致しません / the stored hashes do not "
             "match the signed root at tree size %" PRIu64 " (damaged; run: sekisho ledger verify)",
             T);
        return -EBADMSG;
    }
    rc = list_segments(l->dir, &l->segs, &l->nseg, NULL, err);
    if (rc < 0)
        return rc;
    /* Where entry T starts. */
    size_t si = l->nseg;
    for (size_t i = l->nseg; i-- > 0;)
        if (l->segs[i].start <= T) {
            si = i;
            break;
        }
    uint64_t off = 0;
    if (si < l->nseg && l->segs[si].start < T) {
        rc = entry_end(l, &l->segs[si], T, &off, err);
        if (rc < 0)
            return rc;
    } else if (si == l->nseg && l->nseg > 0) {
        errf(err, "entries/: 署名済みの記録がありません / the signed entries are missing "
                  "(damaged; run: sekisho ledger verify)");
        return -EBADMSG;
    } else if (si == l->nseg && T > 0) {
        errf(err, "entries/: 区間がありません / no segment holds the signed entries (damaged)");
        return -EBADMSG;
    }
    if (si < l->nseg) {
        rc = rescan(l, si, off, &erec, err);
        if (rc < 0)
            return rc;
    }
    path_join(path, sizeof path, l->dir, "checkpoints.jsonl");
    if (l->ck_fd < 0)
        l->ck_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (l->ck_fd < 0) {
        errf(err, "%s: %s", path, strerror(errno));
        return -errno;
    }
    l->ck_size = file_size(path);
    recovery *recs[2] = {&hrec, &erec};
    for (int i = 0; i < 2; i++) {
        recovery *r = recs[i];
        if (!r->happened)
            continue;
        note(l->o.notes,
             "障害復旧 / recovered: %s: 書きかけの %" PRIu64 " バイトをバイト位置 %" PRIu64
             " から切り離し %s に保存しました / cut an incomplete "
             "tail of %" PRIu64 " bytes at byte %" PRIu64 " (saved as %s); recorded in the ledger",
             r->file, r->bytes, r->offset, r->saved, r->bytes, r->offset, r->saved);
    }
    return 0;
}

/* Another writer committed cleanly: take its state from the files, which
 * must be exactly as its lock record says. 1: they are not (recover). */
static int incremental_reload(ledger *l, const lockrec *r, buf *err)
{
    char path[PATH_MAX];
    path_join(path, sizeof path, l->dir, "tree/offsets");
    if (file_size(path) != r->n * 8)
        return 1;
    level_path(l, 0, path, sizeof path);
    if (file_size(path) != r->n * 32)
        return 1;
    segment *segs;
    size_t nseg;
    int rc = list_segments(l->dir, &segs, &nseg, NULL, err);
    if (rc < 0)
        return rc;
    if (nseg == 0 ? r->seg_start != NO_SEGMENT : segs[nseg - 1].start != r->seg_start) {
        free(segs);
        return 1;
    }
    int reopen = nseg > 0 && (l->nseg == 0 || l->seg_fd < 0 ||
                              strcmp(l->segs[l->nseg - 1].name, segs[nseg - 1].name) != 0);
    free(l->segs);
    l->segs = segs;
    l->nseg = nseg;
    if (reopen) {
        if (l->seg_fd >= 0)
            close(l->seg_fd);
        snprintf(path, sizeof path, "%s/entries/%s", l->dir, segs[nseg - 1].name);
        l->seg_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (l->seg_fd < 0) {
            errf(err, "%s: %s", path, strerror(errno));
            return -errno;
        }
    }
    if (l->seg_fd >= 0) {
        struct stat st;
        if (fstat(l->seg_fd, &st) < 0) {
            errf(err, "entries/%s: %s", segs[nseg - 1].name, strerror(errno));
            return -errno;
        }
        if ((uint64_t)st.st_size != r->seg_size)
            return 1;
    }
    l->seg_size = r->seg_size;
    rc = load_frontier(l, r->n, err);
    if (rc < 0)
        return rc;
    if (r->ck_size != l->ck_size) {
        rc = open_heads(l, NULL, err);
        if (rc < 0)
            return rc;
        l->ck_size = r->ck_size;
        l->last_ck_wall = l->last.timestamp_ms;
    }
    return 0;
}

/* Takes the lock and brings the handle up to date with the files. full: run
 * the recovery in any case (open). */
static int tx_begin(ledger *l, int full, buf *err)
{
    while (flock(l->lock_fd, LOCK_EX) < 0)
        if (errno != EINTR) {
            int e = errno;
            errf(err, "%s/lock: flock: %s", l->dir, strerror(e));
            return -e;
        }
    l->in_tx = 1;
    lockrec r = {0};
    int have = lock_read(l, &r, err);
    int rc = have < 0 ? have : 0;
    if (rc == 0) {
        if (have == 0 || (r.gen & 1))
            full = 1;
        lockrec w = r;
        w.gen = have ? r.gen + ((r.gen & 1) ? 2 : 1) : 1;
        rc = lock_write(l, &w, err);
        if (rc == 0 && !full) {
            if (r.gen != l->gen) {
                rc = incremental_reload(l, &r, err);
            } else if (l->seg_fd >= 0) {
                /* nobody else wrote; the segment must still end where we left it */
                struct stat st;
                if (fstat(l->seg_fd, &st) < 0) {
                    errf(err, "entries/: fstat: %s", strerror(errno));
                    rc = -errno;
                } else if ((uint64_t)st.st_size != l->seg_size) {
                    rc = 1;
                }
            }
            if (rc == 1) {
                note(l->o.notes, "台帳の状態が記録と違うため復旧手順で開き直します / the ledger "
                                 "files differ from the lock record; running the recovery");
                full = 1;
                rc = 0;
            }
        }
        if (rc == 0 && full) {
            rc = full_reload(l, err);
            l->need_pending = 1;
        }
        l->gen = w.gen;
    }
    if (rc < 0) {
        l->broken = 1;
        flock(l->lock_fd, LOCK_UN);
        l->in_tx = 0;
    }
    return rc;
}

/* Ends the transaction: on success the lock record describes the files; on
 * failure it stays odd, so the next writer recovers. */
static int tx_end(ledger *l, int ok, buf *err)
{
    int rc = 0;
    if (ok) {
        lockrec w = {.gen = l->gen + 1,
                     .n = l->n,
                     .seg_start = l->nseg ? l->segs[l->nseg - 1].start : NO_SEGMENT,
                     .seg_size = l->seg_size,
                     .ck_size = l->ck_size};
        rc = lock_write(l, &w, err);
        if (rc == 0)
            l->gen = w.gen;
    }
    if (flock(l->lock_fd, LOCK_UN) < 0 && rc == 0) {
        errf(err, "%s/lock: flock: %s", l->dir, strerror(errno));
        rc = -errno;
    }
    l->in_tx = 0;
    if (rc < 0)
        l->broken = 1;
    return rc;
}

static int commit_tx(ledger *l, int sign_all, buf *err);

static int writer_open(ledger *l, buf *err)
{
    char path[PATH_MAX];
    path_join(path, sizeof path, l->dir, "lock");
    l->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (l->lock_fd < 0) {
        errf(err, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (l->key_file == NULL) {
        errf(err, "署名鍵の場所がありません / no signing key path given");
        return -EINVAL;
    }
    uint8_t kpk[32];
    int rc = load_key(l->key_file, kpk, l->sk, err);
    if (rc < 0)
        return rc;
    if (memcmp(kpk, l->pk, 32) != 0) {
        errf(err, "%s: この台帳の鍵ではありません / this key does not belong to this ledger",
             l->key_file);
        return -EPERM;
    }
    l->writable = 1;
    rc = tx_begin(l, 1, err);
    if (rc < 0)
        return rc;
    /* this open's recoveries, and any an earlier writer staged but did not
     * get to record; then a head over everything */
    rc = commit_tx(l, 1, err);
    return tx_end(l, rc == 0, err) < 0 && rc == 0 ? -EIO : rc;
}

ledger *ledger_open(const ledger_opts *o, int writable, buf *err)
{
    ledger *l = handle_new(o);
    hash_init();
    if (sodium_init() < 0)
        msg_fatal("libsodium: cannot initialise");
    int rc = read_public_key(l->dir, l->pk, err);
    if (rc == 0 && writable)
        rc = writer_open(l, err);
    if (rc == 0 && !writable) {
        rc = open_heads(l, NULL, err);
        if (rc == 0) {
            rc = list_segments(l->dir, &l->segs, &l->nseg, NULL, err);
            l->n = derived_count(l);
        }
    }
    if (rc < 0) {
        handle_free(l);
        return NULL;
    }
    return l;
}

/* ---- append ----------------------------------------------------------------------- */

static int new_segment(ledger *l, const char *period, buf *err)
{
    char name[SEG_NAME_MAX], path[PATH_MAX], dir[PATH_MAX];
    snprintf(name, sizeof name, "%016" PRIu64 ".%s.jsonl", l->n, period);
    snprintf(path, sizeof path, "%s/entries/%s", l->dir, name);
    path_join(dir, sizeof dir, l->dir, "entries");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        int e = -errno;
        errf(err, "%s: %s", path, strerror(errno));
        return e;
    }
    int rc = fileio_fsync_dir(dir);
    if (rc < 0) {
        close(fd);
        errf(err, "%s: fsync: %s", dir, strerror(-rc));
        return rc;
    }
    if (l->seg_fd >= 0)
        close(l->seg_fd);
    l->seg_fd = fd;
    l->seg_size = 0;
    segment *ns = realloc(l->segs, (l->nseg + 1) * sizeof *ns);
    if (ns == NULL)
        msg_fatal("ledger: out of memory");
    l->segs = ns;
    parse_seg_name(name, &l->segs[l->nseg++]);
    return 0;
}

static const char *time_str(ledger *l, int64_t ms, char out[32])
{
    int64_t sec = ms / 1000;
    if (sec != l->tsec) {
        fmt_time(ms, out);
        memcpy(l->tprefix, out, 20); /* "YYYY-MM-DDTHH:MM:SS." */
        fmt_period(ms, l->o.period, l->tperiod);
        l->tsec = sec;
    }
    memcpy(out, l->tprefix, 20);
    int m = (int)(ms % 1000);
    out[20] = (char)('0' + m / 100);
    out[21] = (char)('0' + m / 10 % 10);
    out[22] = (char)('0' + m % 10);
    out[23] = 'Z';
    out[24] = 0;
    return out;
}

/* Stages a complete entry from its canonical parts. */
static int stage_entry(ledger *l, const uint8_t *fields, size_t fl, const uint8_t *source,
                       size_t sl, const uint8_t *type, size_t tl, uint64_t *index, buf *err)
{
    if (l->broken || !l->writable) {
        errf(err, "台帳は書き込めない状態です / the ledger handle is not writable%s",
             l->broken ? " after an earlier error (reopen to recover)" : "");
        return -EIO;
    }
    int64_t now = now_ms(l);
    char t[32];
    time_str(l, now, t);
    if (l->imap_reset) {
        l->nimap = 0;
        l->imap_reset = 0;
    }
    /* A batch is one period: a new period commits what is staged first (the
     * commit opens the new segment). */
    if (l->nstage > 0 && strcmp(l->tperiod, l->stage_period) != 0) {
        int rc = commit_tx(l, 0, err);
        if (rc < 0)
            return rc;
    }
    if (l->nstage == 0) {
        memcpy(l->stage_period, l->tperiod, sizeof l->stage_period);
        l->stage_base = l->n;
    }
    if (stage_grow(l) < 0) {
        errf(err, "out of memory");
        return -ENOMEM;
    }
    /* Provisional: the commit renumbers the batch if other writers
     * committed since (ledger_committed_index()). */
    uint64_t idx = l->stage_base + l->nstage;
    size_t start = l->stage.len;
    buf_puts(&l->stage, "{\"fields\":");
    buf_append(&l->stage, fields, fl);
    char num[24];
    size_t nl = 0;
    uint64_t v = idx;
    do {
        num[sizeof num - 1 - nl++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_append(&l->stage, ",\"index\":", 9);
    size_t ipos = l->stage.len;
    buf_append(&l->stage, num + sizeof num - nl, nl);
    buf_append(&l->stage, ",\"source\":", 10);
    buf_append(&l->stage, source, sl);
    buf_puts(&l->stage, ",\"time\":\"");
    buf_append(&l->stage, t, 24);
    buf_puts(&l->stage, "\",\"type\":");
    buf_append(&l->stage, type, tl);
    buf_putc(&l->stage, '}');
    if (l->stage.err) {
        buf_truncate(&l->stage, start);
        errf(err, "out of memory");
        return -ENOMEM;
    }
    size_t len = l->stage.len - start;
    /* room for the longest index the commit may give it */
    if (len - nl + 20 > LEDGER_MAX_ENTRY) {
        buf_truncate(&l->stage, start);
        errf(err, "記録が大きすぎます / entry too large (%zu bytes, at most %u)", len,
             LEDGER_MAX_ENTRY - 20 + (unsigned)nl);
        return -EFBIG;
    }
    ledger_leaf_hash(l->stage.p + start, len, l->stage_leaf[l->nstage]);
    buf_putc(&l->stage, '\n');
    l->stage_off[l->nstage] = start;
    l->stage_ipos[l->nstage] = ipos;
    l->nstage++;
    *index = idx;
    if (l->stage.len >= STAGE_MAX_BYTES || l->nstage >= STAGE_MAX_COUNT)
        return commit_tx(l, 0, err);
    return 0;
}

static int check_label(const char *what, const char *s, buf *err)
{
    size_t n = strlen(s);
    if (n == 0 || n > LEDGER_MAX_TYPE) {
        errf(err, "%s: 1 から %d バイト / must be 1 to %d bytes", what, LEDGER_MAX_TYPE,
             LEDGER_MAX_TYPE);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            errf(err, "%s: 制御文字は使えません / may not contain control characters", what);
            return -EINVAL;
        }
    return 0;
}

int ledger_append(ledger *l, const char *type, const char *source, const uint8_t *fields,
                  size_t fields_len, uint64_t *index, buf *err)
{
    if (check_label("type", type, err) < 0 || check_label("source", source, err) < 0)
        return -EINVAL;
    buf_reset(&l->tmp);
    size_t f0 = 0, fl;
    if (fields == NULL) {
        buf_puts(&l->tmp, "{}");
        fl = 2;
    } else {
        jcs_error je;
        if (jcs_canonicalize(fields, fields_len, JCS_EXACT_NUMBERS | JCS_OBJECT, &l->tmp, &je) <
            0) {
            errf(err, "fields: byte %zu: %s", je.offset, je.msg);
            return -EINVAL;
        }
        fl = l->tmp.len;
    }
    size_t s0 = l->tmp.len;
    if (jcs_put_string(&l->tmp, source, strlen(source)) < 0) {
        errf(err, "source: UTF-8 ではありません / not valid UTF-8");
        return -EINVAL;
    }
    size_t t0 = l->tmp.len;
    if (jcs_put_string(&l->tmp, type, strlen(type)) < 0) {
        errf(err, "type: UTF-8 ではありません / not valid UTF-8");
        return -EINVAL;
    }
    /* stage_entry may commit, which reuses nothing of tmp. */
    buf parts = l->tmp;
    buf_init(&l->tmp, BUF_UNLIMITED);
    int rc = stage_entry(l, parts.p + f0, fl, parts.p + s0, t0 - s0, parts.p + t0, parts.len - t0,
                         index, err);
    buf_free(&l->tmp);
    l->tmp = parts;
    return rc;
}

int ledger_append_json(ledger *l, const uint8_t *json, size_t n, const char *default_source,
                       uint64_t *index, buf *err)
{
    buf *canon = &l->canon;
    buf_reset(canon);
    jcs_error je;
    jcs_member m[8];
    long k = -1;
    if (jcs_canonicalize_members(json, n, JCS_EXACT_NUMBERS | JCS_OBJECT, canon, &je, m, 8, &k) <
        0) {
        errf(err, "byte %zu: %s", je.offset, je.msg);
        return -EINVAL;
    }
    const jcs_member *type = NULL, *source = NULL, *fields = NULL;
    if (k > 8) {
        errf(err, "too many members; valid: type, source, fields");
        return -EINVAL;
    }
    for (long i = 0; i < k; i++) {
        const char *key = (const char *)canon->p + m[i].key_off;
        size_t kl = m[i].key_len;
        const uint8_t *v = canon->p + m[i].val_off;
        if (kl == 4 && memcmp(key, "type", 4) == 0 && v[0] == '"')
            type = &m[i];
        else if (kl == 6 && memcmp(key, "source", 6) == 0 && v[0] == '"')
            source = &m[i];
        else if (kl == 6 && memcmp(key, "fields", 6) == 0 && v[0] == '{')
            fields = &m[i];
        else if ((kl == 4 && memcmp(key, "time", 4) == 0) ||
                 (kl == 5 && memcmp(key, "index", 5) == 0)) {
            errf(err,
                 "\"%.*s\" は台帳が付けます / \"%.*s\" is set by the ledger (put an event's own "
                 "time in fields)",
                 (int)kl, key, (int)kl, key);
            return -EINVAL;
        } else {
            errf(err,
                 "\"%.*s\": 使えるのは type, source, fields です / unknown or mistyped member; "
                 "valid: type (string), source (string), fields (object)",
                 (int)(kl > 40 ? 40 : kl), key);
            return -EINVAL;
        }
    }
    if (type == NULL) {
        errf(err, "\"type\" (文字列) が必要です / \"type\" (a string) is required");
        return -EINVAL;
    }
    /* type: its canonical string is used as it is; its value is checked. */
    buf_reset(&l->sv);
    jcs_string_value(canon->p + type->val_off, type->val_len, &l->sv);
    if (memchr(buf_cstr(&l->sv), 0, l->sv.len) || check_label("type", buf_cstr(&l->sv), err) < 0) {
        if (memchr(buf_cstr(&l->sv), 0, l->sv.len))
            errf(err, "type: NUL は使えません / may not contain NUL");
        return -EINVAL;
    }
    const uint8_t *sp;
    size_t sl;
    if (source) {
        buf_reset(&l->sv);
        jcs_string_value(canon->p + source->val_off, source->val_len, &l->sv);
        if (memchr(buf_cstr(&l->sv), 0, l->sv.len) ||
            check_label("source", buf_cstr(&l->sv), err) < 0) {
            if (memchr(buf_cstr(&l->sv), 0, l->sv.len))
                errf(err, "source: NUL は使えません / may not contain NUL");
            return -EINVAL;
        }
        sp = canon->p + source->val_off;
        sl = source->val_len;
    } else {
        if (l->sq_for != default_source) {
            l->sq_for = NULL;
            if (check_label("source", default_source, err) < 0)
                return -EINVAL;
            buf_reset(&l->sq);
            if (jcs_put_string(&l->sq, default_source, strlen(default_source)) < 0) {
                errf(err, "source: UTF-8 ではありません / not valid UTF-8");
                return -EINVAL;
            }
            l->sq_for = default_source;
        }
        sp = l->sq.p;
        sl = l->sq.len;
    }
    return stage_entry(l, fields ? canon->p + fields->val_off : (const uint8_t *)"{}",
                       fields ? fields->val_len : 2, sp, sl, canon->p + type->val_off,
                       type->val_len, index, err);
}

size_t ledger_pending(const ledger *l)
{
    return l->nstage;
}

uint64_t ledger_size(const ledger *l)
{
    return l->n;
}

static int checkpoint_due(ledger *l)
{
    if (l->n == l->last.tree_size)
        return 0;
    if (l->n - l->last.tree_size >= l->o.checkpoint_entries)
        return 1;
    return now_ms(l) - l->last_ck_wall >= (int64_t)l->o.checkpoint_ms;
}

static int write_head(ledger *l, buf *err)
{
    int rc = sync_derived(l, err);
    if (rc < 0)
        return rc;
    ledger_sth s = {0};
    s.tree_size = l->n;
    frontier_root(l->fr, l->n, s.root);
    int64_t now = now_ms(l);
    s.timestamp_ms = now > l->last.timestamp_ms ? now : l->last.timestamp_ms;
    memcpy(s.public_key, l->pk, 32);
    if (sign_head(l->sk, &s) < 0) {
        errf(err, "Ed25519: signing failed");
        return -EINVAL;
    }
    buf line;
    buf_init(&line, 4096);
    sth_line(&s, &line);
    rc = fileio_write_all(l->ck_fd, line.p, line.len);
    size_t line_len = line.len;
    buf_free(&line);
    if (rc == 0 && fdatasync(l->ck_fd) < 0)
        rc = -errno;
    if (rc < 0) {
        errf(err, "checkpoints.jsonl: %s", strerror(-rc));
        return rc;
    }
    l->ck_size += line_len;
    l->last = s;
    l->last_ck_wall = now;
    return 0;
}

/* The staged batch gets the indices l->n, l->n + 1, ...: rewrites each
 * entry's index digits and rehashes it. */
static int renumber(ledger *l, buf *err)
{
    buf nb;
    buf_init(&nb, BUF_UNLIMITED);
    if (buf_reserve(&nb, l->stage.len + l->nstage * 20) < 0) {
        errf(err, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < l->nstage; i++) {
        uint64_t s0 = l->stage_off[i], ip = l->stage_ipos[i];
        uint64_t end = i + 1 < l->nstage ? l->stage_off[i + 1] : l->stage.len;
        uint64_t ie = ip;
        while (l->stage.p[ie] >= '0' && l->stage.p[ie] <= '9')
            ie++;
        size_t ns = nb.len;
        buf_append(&nb, l->stage.p + s0, ip - s0);
        size_t nip = nb.len;
        buf_printf(&nb, "%" PRIu64, l->n + i);
        buf_append(&nb, l->stage.p + ie, end - ie);
        if (nb.err) {
            buf_free(&nb);
            errf(err, "out of memory");
            return -ENOMEM;
        }
        ledger_leaf_hash(nb.p + ns, nb.len - ns - 1, l->stage_leaf[i]);
        l->stage_off[i] = ns;
        l->stage_ipos[i] = nip;
    }
    buf_free(&l->stage);
    l->stage = nb;
    return 0;
}

/* A later period than the last segment's: the batch opens a new segment. */
static int period_after(const char *p, const char *q)
{
    if (strcmp(p, q) == 0)
        return 0;
    if (strlen(p) == strlen(q))
        return strcmp(p, q) > 0;
    return period_end_ms(p) > period_end_ms(q);
}

/* Under the lock: writes the batch (one write, one fdatasync), then the
 * derived files, then a head if due (sign_all: if any entry is unsigned). */
static int commit_locked(ledger *l, int sign_all, buf *err)
{
    if (l->broken) {
        errf(err, "台帳は書き込めない状態です / the ledger handle failed earlier (reopen)");
        return -EIO;
    }
    if (l->nstage > 0) {
        int rc = 0;
        if (l->nseg == 0 || period_after(l->stage_period, l->segs[l->nseg - 1].period)) {
            /* close the old segment with a signed head over its end */
            if (l->n != l->last.tree_size)
                rc = write_head(l, err);
            if (rc == 0)
                rc = new_segment(l, l->stage_period, err);
        }
        if (rc == 0 && l->stage_base != l->n)
            rc = renumber(l, err);
        if (rc < 0) {
            l->broken = 1;
            return rc;
        }
        rc = fileio_write_all(l->seg_fd, l->stage.p, l->stage.len);
        if (rc == 0 && fdatasync(l->seg_fd) < 0)
            rc = -errno;
        if (rc < 0) {
            l->broken = 1;
            errf(err, "entries/%s: %s", l->segs[l->nseg - 1].name, strerror(-rc));
            return rc;
        }
        if (l->nimap == l->capimap) {
            l->capimap = l->capimap ? l->capimap * 2 : 8;
            struct imap *nm = realloc(l->imap, l->capimap * sizeof *nm);
            if (nm == NULL)
                msg_fatal("ledger: out of memory");
            l->imap = nm;
        }
        l->imap[l->nimap++] =
            (struct imap){.staged = l->stage_base, .index = l->n, .count = l->nstage};
        for (size_t i = 0; i < l->nstage; i++) {
            frontier_push(l->fr, &l->n, l->stage_leaf[i], emit_level, l);
            uint8_t ob[8];
            le64(l->seg_size + l->stage_off[i], ob);
            buf_append(&l->off_buf, ob, 8);
        }
        l->seg_size += l->stage.len;
        buf_reset(&l->stage);
        l->nstage = 0;
        rc = flush_derived(l, err);
        if (rc < 0) {
            l->broken = 1;
            return rc;
        }
    }
    if (sign_all ? l->n != l->last.tree_size : checkpoint_due(l)) {
        int rc = write_head(l, err);
        if (rc < 0) {
            l->broken = 1;
            return rc;
        }
    }
    return 0;
}

static int record_pending(ledger *l, buf *err);

/* One transaction (or, inside one, just the work). */
static int commit_tx(ledger *l, int sign_all, buf *err)
{
    if (l->broken || !l->writable) {
        errf(err, "台帳は書き込めない状態です / the ledger handle is not writable%s",
             l->broken ? " after an earlier error (reopen to recover)" : "");
        return -EIO;
    }
    if (l->in_tx) {
        int rc = commit_locked(l, sign_all, err);
        if (rc == 0 && l->need_pending) {
            l->need_pending = 0;
            rc = record_pending(l, err);
            if (rc == 0)
                rc = commit_locked(l, sign_all, err);
        }
        return rc;
    }
    /* Nothing to write and no head due in this handle's view: no lock. */
    if (!sign_all && l->nstage == 0 && !checkpoint_due(l))
        return 0;
    int rc = tx_begin(l, 0, err);
    if (rc < 0)
        return rc;
    rc = commit_tx(l, sign_all, err);
    int erc = tx_end(l, rc == 0, err);
    return rc < 0 ? rc : erc;
}

int ledger_commit(ledger *l, buf *err)
{
    int rc = commit_tx(l, 0, err);
    if (!l->in_tx)
        l->imap_reset = 1;
    return rc;
}

int ledger_checkpoint(ledger *l, buf *err)
{
    int rc = commit_tx(l, 1, err);
    if (!l->in_tx)
        l->imap_reset = 1;
    return rc;
}

int ledger_committed_index(const ledger *l, uint64_t staged, uint64_t *index)
{
    for (size_t i = 0; i < l->nimap; i++)
        if (staged >= l->imap[i].staged && staged - l->imap[i].staged < l->imap[i].count) {
            *index = l->imap[i].index + (staged - l->imap[i].staged);
            return 0;
        }
    return -ENOENT;
}

int ledger_close(ledger *l, buf *err)
{
    int rc = 0;
    if (l->writable && !l->broken)
        rc = ledger_checkpoint(l, err);
    handle_free(l);
    return rc;
}

int ledger_head(const ledger *l, ledger_sth *sth)
{
    *sth = l->last;
    memcpy(sth->public_key, l->pk, 32);
    return 0;
}

/* ---- reading ---------------------------------------------------------------------- */

/* The segment holding index, or -1. */
static long seg_of(const ledger *l, uint64_t index)
{
    long lo = 0, hi = (long)l->nseg - 1, r = -1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        if (l->segs[mid].start <= index)
            r = mid, lo = mid + 1;
        else
            hi = mid - 1;
    }
    return r;
}

int ledger_get(ledger *l, uint64_t index, buf *out, buf *err)
{
    uint64_t n = l->writable ? l->n : derived_count(l);
    if (index >= n) {
        errf(err,
             "記録 %" PRIu64 " はありません / no entry %" PRIu64 " (the ledger has %" PRIu64 ")",
             index, index, n);
        return -ENOENT;
    }
    long si = seg_of(l, index);
    if (si < 0) {
        errf(err,
             "記録 %" PRIu64 " の区間は保存期間を過ぎて削除されました / entry %" PRIu64
             " was in a segment removed by retention",
             index, index);
        return -ENOENT;
    }
    char path[PATH_MAX];
    uint8_t ob[8];
    path_join(path, sizeof path, l->dir, "tree/offsets");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errf(err, "%s: %s", path, strerror(errno));
        return -errno;
    }
    int rc = pread_all(fd, ob, 8, index * 8);
    close(fd);
    if (rc < 0) {
        errf(err, "%s: %s", path, strerror(-rc));
        return rc;
    }
    uint64_t off = get_le64(ob);
    snprintf(path, sizeof path, "%s/entries/%s", l->dir, l->segs[si].name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errf(err, "%s: %s", path, strerror(errno));
        return -errno;
    }
    size_t start = out->len;
    uint8_t chunk[16384];
    uint64_t pos = off;
    int done = 0;
    while (!done) {
        ssize_t r = pread(fd, chunk, sizeof chunk, (off_t)pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        uint8_t *nl = memchr(chunk, '\n', (size_t)r);
        size_t take = nl ? (size_t)(nl - chunk) : (size_t)r;
        buf_append(out, chunk, take);
        pos += (uint64_t)r;
        done = nl != NULL || out->len - start > LEDGER_MAX_ENTRY;
    }
    close(fd);
    ledger_entry e;
    char why[200];
    if (out->err ||
        ledger_entry_decode(out->p + start, out->len - start, &l->scratch, &e, why, sizeof why) <
            0 ||
        e.index != index) {
        buf_truncate(out, start);
        errf(err,
             "%s: バイト位置 %" PRIu64 " に記録 %" PRIu64 " がありません / byte %" PRIu64
             " does not hold entry %" PRIu64 " (damaged; run: sekisho ledger verify)",
             path, off, index, off, index);
        return -EBADMSG;
    }
    return 0;
}

int ledger_foreach(ledger *l, int (*fn)(void *arg, const uint8_t *line, size_t n), void *arg,
                   buf *err)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < l->nseg; i++) {
        snprintf(path, sizeof path, "%s/entries/%s", l->dir, l->segs[i].name);
        map m;
        int rc = map_file(path, &m, NULL);
        if (rc < 0) {
            errf(err, "%s: %s", path, strerror(-rc));
            return rc;
        }
        size_t pos = 0;
        while (pos < m.len) {
            const uint8_t *nl = memchr(m.p + pos, '\n', m.len - pos);
            if (nl == NULL)
                break;
            size_t len = (size_t)(nl - (m.p + pos));
            if (fn(arg, m.p + pos, len)) {
                unmap(&m);
                return 0;
            }
            pos += len + 1;
        }
        unmap(&m);
    }
    return 0;
}

static uint64_t proof_limit(ledger *l)
{
    return l->writable ? l->n : derived_count(l);
}

int ledger_root(ledger *l, uint64_t size, uint8_t root[LEDGER_HASH_LEN], buf *err)
{
    if (size > proof_limit(l)) {
        errf(err,
             "木の大きさ %" PRIu64 " は記録数 %" PRIu64 " を超えます / tree size %" PRIu64
             " is beyond the %" PRIu64 " entries",
             size, proof_limit(l), size, proof_limit(l));
        return -ERANGE;
    }
    if (l->writable) {
        int rc = flush_derived(l, err);
        if (rc < 0)
            return rc;
    }
    return subtree_hash(l, 0, size, root, err);
}

static int path_add(uint8_t path[LEDGER_MAX_PROOF][32], size_t *n, const uint8_t h[32])
{
    if (*n >= LEDGER_MAX_PROOF)
        return -E2BIG;
    memcpy(path[(*n)++], h, 32);
    return 0;
}

/* RFC 9162 2.1.3.1 PATH(m, D[a:b]) */
static int incl_path(ledger *l, uint64_t m, uint64_t a, uint64_t b,
                     uint8_t path[LEDGER_MAX_PROOF][32], size_t *n, buf *err)
{
    uint64_t size = b - a;
    if (size <= 1)
        return 0;
    uint64_t k = (uint64_t)1 << (63 - __builtin_clzll(size - 1));
    uint8_t h[32];
    int rc;
    if (m < k) {
        rc = incl_path(l, m, a, a + k, path, n, err);
        if (rc == 0)
            rc = subtree_hash(l, a + k, b, h, err);
    } else {
        rc = incl_path(l, m - k, a + k, b, path, n, err);
        if (rc == 0)
            rc = subtree_hash(l, a, a + k, h, err);
    }
    return rc ? rc : path_add(path, n, h);
}

/* RFC 9162 2.1.4.1 SUBPROOF(m, D[a:b], flag) */
static int subproof(ledger *l, uint64_t m, uint64_t a, uint64_t b, int flag,
                    uint8_t path[LEDGER_MAX_PROOF][32], size_t *n, buf *err)
{
    uint64_t size = b - a;
    uint8_t h[32];
    int rc;
    if (m == size) {
        if (flag)
            return 0;
        rc = subtree_hash(l, a, b, h, err);
        return rc ? rc : path_add(path, n, h);
    }
    uint64_t k = (uint64_t)1 << (63 - __builtin_clzll(size - 1));
    if (m <= k) {
        rc = subproof(l, m, a, a + k, flag, path, n, err);
        if (rc == 0)
            rc = subtree_hash(l, a + k, b, h, err);
    } else {
        rc = subproof(l, m - k, a + k, b, 0, path, n, err);
        if (rc == 0)
            rc = subtree_hash(l, a, a + k, h, err);
    }
    return rc ? rc : path_add(path, n, h);
}

int ledger_prove_inclusion(ledger *l, uint64_t index, uint64_t size, uint8_t leaf[LEDGER_HASH_LEN],
                           uint8_t root[LEDGER_HASH_LEN],
                           uint8_t path[LEDGER_MAX_PROOF][LEDGER_HASH_LEN], size_t *npath, buf *err)
{
    *npath = 0;
    if (index >= size) {
        errf(err,
             "記録 %" PRIu64 " は大きさ %" PRIu64 " の木にありません / entry %" PRIu64
             " is not in a tree of %" PRIu64 " entries",
             index, size, index, size);
        return -ERANGE;
    }
    int rc = ledger_root(l, size, root, err);
    if (rc == 0)
        rc = read_node(l, 0, index, leaf, err);
    if (rc == 0)
        rc = incl_path(l, index, 0, size, path, npath, err);
    return rc;
}

int ledger_prove_consistency(ledger *l, uint64_t first, uint64_t second,
                             uint8_t first_root[LEDGER_HASH_LEN],
                             uint8_t second_root[LEDGER_HASH_LEN],
                             uint8_t path[LEDGER_MAX_PROOF][LEDGER_HASH_LEN], size_t *npath,
                             buf *err)
{
    *npath = 0;
    if (first == 0 || first > second) {
        errf(err,
             "0 < OLD <= NEW が必要です / consistency needs 0 < first <= second (got %" PRIu64
             " and %" PRIu64 ")",
             first, second);
        return -ERANGE;
    }
    int rc = ledger_root(l, second, second_root, err);
    if (rc == 0)
        rc = ledger_root(l, first, first_root, err);
    if (rc == 0 && first < second)
        rc = subproof(l, first, 0, second, 1, path, npath, err);
    return rc;
}

/* ---- retention -------------------------------------------------------------------- */

static int prune_locked(ledger *l, uint64_t retention_days, int do_delete, FILE *out,
                        uint64_t *count, buf *err)
{
    int rc = l->writable ? ledger_checkpoint(l, err) : 0;
    if (rc < 0)
        return rc;
    int64_t now = now_ms(l);
    int64_t keep = (int64_t)retention_days * 86400000;
    while (l->nseg > 1) {
        segment *s = &l->segs[0];
        int64_t end = period_end_ms(s->period);
        if (end < 0 || end + keep > now)
            break;
        uint64_t first = s->start, next = l->segs[1].start;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/entries/%s", l->dir, s->name);
        map m;
        rc = map_file(path, &m, NULL);
        if (rc < 0) {
            errf(err, "%s: %s", path, strerror(-rc));
            return rc;
        }
        uint8_t h[32], root[32];
        char hh[65], rh[65];
        digest_sha256(m.p ? m.p : (const uint8_t *)"", m.len, h);
        size_t bytes = m.len;
        unmap(&m);
        hex(h, 32, hh);
        rc = ledger_root(l, next, root, err);
        if (rc < 0)
            return rc;
        hex(root, 32, rh);
        (*count)++;
        if (out)
            fprintf(out,
                    "%s\t%s %" PRIu64 "..%" PRIu64 "\t%zu bytes\tsha256 %s\troot at %" PRIu64
                    " %s\n",
                    do_delete ? "削除 / removed" : "期限切れ / expired", s->name, first, next - 1,
                    bytes, hh, next, rh);
        if (!do_delete) {
            /* list the rest without changing anything */
            memmove(&l->segs[0], &l->segs[1], (l->nseg - 1) * sizeof *l->segs);
            l->nseg--;
            continue;
        }
        buf f;
        buf_init(&f, 4096);
        buf_printf(&f,
                   "{\"bytes\":%zu,\"entries\":%" PRIu64 ",\"first_index\":%" PRIu64
                   ",\"retention_days\":%" PRIu64 ",\"root_at_end\":\"%s\",\"segment\":",
                   bytes, next - first, first, retention_days, rh);
        jcs_put_string(&f, s->name, strlen(s->name));
        buf_printf(&f, ",\"sha256\":\"%s\",\"tree_size_at_end\":%" PRIu64 "}", hh, next);
        uint64_t idx;
        rc = ledger_append(l, "ledger.segment_removed", "sekisho-ledger", f.p, f.len, &idx, err);
        buf_free(&f);
        if (rc == 0)
            rc = ledger_checkpoint(l, err);
        if (rc < 0)
            return rc;
        if (unlink(path) < 0) {
            errf(err, "%s: %s", path, strerror(errno));
            return -errno;
        }
        char dir[PATH_MAX];
        path_join(dir, sizeof dir, l->dir, "entries");
        rc = fileio_fsync_dir(dir);
        if (rc < 0) {
            errf(err, "%s: %s", dir, strerror(-rc));
            return rc;
        }
        memmove(&l->segs[0], &l->segs[1], (l->nseg - 1) * sizeof *l->segs);
        l->nseg--;
    }
    return 0;
}

/* A writer prunes inside one transaction: no other writer appends between
 * the record of a removal and the removal, and two prunes cannot both record
 * the same segment. */
int ledger_prune(ledger *l, uint64_t retention_days, int do_delete, FILE *out, uint64_t *count,
                 buf *err)
{
    *count = 0;
    if (do_delete && !l->writable) {
        errf(err, "internal: prune --delete needs a writable handle");
        return -EINVAL;
    }
    if (!l->writable)
        return prune_locked(l, retention_days, do_delete, out, count, err);
    int rc = tx_begin(l, 0, err);
    if (rc < 0)
        return rc;
    rc = prune_locked(l, retention_days, do_delete, out, count, err);
    int erc = tx_end(l, rc == 0, err);
    return rc < 0 ? rc : erc;
}

/* ---- verification ----------------------------------------------------------------- */

enum vkind {
    V_MODIFIED,
    V_DELETED,
    V_INSERTED,
    V_REORDERED,
    V_TRUNCATED,
    V_SIGNATURE,
    V_HEAD,
    V_REWRITTEN,
    V_DERIVED,
    V_DAMAGED,
    V_NPROBLEM,
    V_REMOVED = V_NPROBLEM,
    V_RECOVERED,
    V_UNSIGNED,
    V_TORN,
    V_NKIND
};

static const char *const vlabel[V_NKIND] = {
    "改ざん / MODIFIED",
    "削除 / DELETED",
    "挿入 / INSERTED",
    "順序の入れ替え / REORDERED",
    "切り詰め / TRUNCATED",
    "署名不正 / BAD SIGNATURE",
    "ツリーヘッド不一致 / HEAD MISMATCH",
    "履歴の書き換え / HISTORY REWRITTEN",
    "派生データ不一致 / DERIVED DATA",
    "破損 / DAMAGED",
    "保存期間による削除 / REMOVED BY RETENTION",
    "障害復旧 / RECOVERED",
    "未署名 / NOT YET SIGNED",
    "書きかけ / INCOMPLETE TAIL",
};

typedef struct vhead {
    ledger_sth s;
    int valid;
    int exported; /* from a head file */
    char where[PATH_MAX + 64];
} vhead;

/* A new, zeroed head at the end of *h (grown as needed). */
static vhead *vhead_push(vhead **h, size_t *n, size_t *cap)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        vhead *nh = realloc(*h, *cap * sizeof *nh);
        if (nh == NULL)
            msg_fatal("ledger verify: out of memory");
        *h = nh;
    }
    vhead *x = &(*h)[(*n)++];
    memset(x, 0, sizeof *x);
    return x;
}

typedef struct vgap {
    uint64_t a, b;
    uint8_t root_b[32];
    int have_root;
} vgap;

typedef struct vremoval {
    uint64_t first, entries, index;
    uint8_t root[32];
    char segment[SEG_NAME_MAX];
    char time[32];
} vremoval;

typedef struct vmismatch {
    uint64_t index;
    char where[SEG_NAME_MAX + 32];
} vmismatch;

typedef struct vjump {
    uint64_t from, to;
    char where[SEG_NAME_MAX + 32];
} vjump;

typedef struct vstate {
    FILE *out;
    size_t max;
    uint64_t counts[V_NKIND];
    uint8_t fr[MAX_LEVELS][32];
    uint64_t pos;
    int tree_broken;
    uint64_t *want; /* sorted sizes whose roots are needed */
    uint8_t (*want_root)[32];
    size_t nwant, iwant;
    map lvl[MAX_LEVELS];
    map offs;
    uint8_t *seen;
    uint64_t seen_bits;
    uint64_t expect, max_seen;
    int any_seen;
    uint64_t derived_bad;
    char derived_first[200];
    vgap *gaps;
    size_t ngaps;
    vremoval *rem;
    size_t nrem;
    vjump *jumps;
    size_t njumps;
    vmismatch *mis;
    size_t nmis;
    uint64_t mis_dropped;
    buf scratch, tmp;
} vstate;

static void vreport(vstate *v, enum vkind k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vreport(vstate *v, enum vkind k, const char *fmt, ...)
{
    v->counts[k]++;
    if (v->counts[k] > v->max)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(v->out, "%s: %s\n", vlabel[k], line);
}

static void vemit(void *arg, int k, const uint8_t h[32])
{
    vstate *v = arg;
    if (k == 0)
        return;
    /* the subtree just completed at level k ends at leaf pos (inclusive) */
    uint64_t i = ((v->pos + 1) >> k) - 1;
    const map *m = &v->lvl[k];
    if ((i + 1) * 32 <= m->len && memcmp(m->p + i * 32, h, 32) != 0) {
        if (v->derived_bad++ == 0)
            snprintf(v->derived_first, sizeof v->derived_first,
                     "tree/hashes-%02d record %" PRIu64 " (entries %" PRIu64 "..%" PRIu64 ")", k, i,
                     i << k, ((i + 1) << k) - 1);
    }
}

static void vpush(vstate *v, const uint8_t leaf[32])
{
    uint64_t n = v->pos;
    frontier_push(v->fr, &n, leaf, vemit, v);
    v->pos = n;
    while (v->iwant < v->nwant && v->want[v->iwant] == v->pos) {
        if (!v->tree_broken)
            frontier_root(v->fr, v->pos, v->want_root[v->iwant]);
        v->iwant++;
    }
}

static int seen_get(const vstate *v, uint64_t i)
{
    return i < v->seen_bits && ((v->seen[i >> 3] >> (i & 7)) & 1);
}

static void seen_set(vstate *v, uint64_t i)
{
    if (i >= v->seen_bits) {
        uint64_t nb = v->seen_bits ? v->seen_bits : 1 << 16;
        while (nb <= i)
            nb *= 2;
        uint8_t *ns = realloc(v->seen, nb / 8);
        if (ns == NULL)
            msg_fatal("ledger verify: out of memory");
        memset(ns + v->seen_bits / 8, 0, (nb - v->seen_bits) / 8);
        v->seen = ns;
        v->seen_bits = nb;
    }
    v->seen[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static int member_u64(const uint8_t *t, const jcs_member *m, long n, const char *key, uint64_t *out)
{
    for (long i = 0; i < n; i++)
        if (m[i].key_len == strlen(key) && memcmp(t + m[i].key_off, key, m[i].key_len) == 0)
            return get_u64(t + m[i].val_off, m[i].val_len, out);
    return -1;
}

static const jcs_member *member_get(const uint8_t *t, const jcs_member *m, long n, const char *key)
{
    for (long i = 0; i < n; i++)
        if (m[i].key_len == strlen(key) && memcmp(t + m[i].key_off, key, m[i].key_len) == 0)
            return &m[i];
    return NULL;
}

/* Records the entries verify reads about the ledger itself. */
static void note_special(vstate *v, const uint8_t *line, const ledger_entry *e)
{
    const uint8_t *type = line + e->type_off;
    const uint8_t *f = line + e->fields_off;
    jcs_member m[16];
    if (e->type_len == 17 && memcmp(type, "\"ledger.recovery\"", 17) == 0) {
        vreport(v, V_RECOVERED, "entry %" PRIu64 " at %.*s: %.*s", e->index, (int)e->time_len - 2,
                line + e->time_off + 1, (int)(e->fields_len > 600 ? 600 : e->fields_len), f);
        return;
    }
    if (e->type_len != 24 || memcmp(type, "\"ledger.segment_removed\"", 24) != 0)
        return;
    long k = jcs_members(f, e->fields_len, m, 16);
    vremoval r = {0};
    const jcs_member *root = member_get(f, m, k, "root_at_end");
    const jcs_member *seg = member_get(f, m, k, "segment");
    if (member_u64(f, m, k, "first_index", &r.first) < 0 ||
        member_u64(f, m, k, "entries", &r.entries) < 0 || root == NULL || root->val_len != 66 ||
        ledger_unhex((const char *)f + root->val_off + 1, 64, r.root, 32) < 0 || seg == NULL) {
        vreport(v, V_DAMAGED,
                "entry %" PRIu64 ": a ledger.segment_removed record without its "
                "fields (first_index, entries, root_at_end, segment)",
                e->index);
        return;
    }
    r.index = e->index;
    buf_reset(&v->tmp);
    jcs_string_value(f + seg->val_off, seg->val_len, &v->tmp);
    snprintf(r.segment, sizeof r.segment, "%s", buf_cstr(&v->tmp));
    snprintf(r.time, sizeof r.time, "%.*s", (int)e->time_len - 2, line + e->time_off + 1);
    vremoval *nr = realloc(v->rem, (v->nrem + 1) * sizeof *nr);
    if (nr == NULL)
        msg_fatal("ledger verify: out of memory");
    v->rem = nr;
    v->rem[v->nrem++] = r;
}

static void add_jump(vstate *v, uint64_t from, uint64_t to, const char *seg, uint64_t off)
{
    if (v->njumps >= 100000)
        return;
    vjump *nj = realloc(v->jumps, (v->njumps + 1) * sizeof *nj);
    if (nj == NULL)
        msg_fatal("ledger verify: out of memory");
    v->jumps = nj;
    vjump *j = &v->jumps[v->njumps++];
    j->from = from;
    j->to = to;
    snprintf(j->where, sizeof j->where, "%s byte %" PRIu64, seg, off);
}

/* One segment's lines. */
static void verify_segment(vstate *v, const segment *s, const map *m, int last,
                           ledger_verify_result *r, uint64_t limit)
{
    size_t pos = 0;
    char why[200];
    uint64_t lvl0 = v->lvl[0].len / 32, noffs = v->offs.len / 8;
    while (pos < m->len) {
        const uint8_t *nl = memchr(m->p + pos, '\n', m->len - pos);
        if (nl == NULL) {
            if (last)
                vreport(v, V_TORN,
                        "entries/%s: バイト位置 %zu 以降の %zu バイトは書きかけです（障害の跡。次の"
                        "追記で切り離して記録します）/ the last %zu bytes from byte %zu are an "
                        "incomplete write (a crash; the next append cuts and records them)",
                        s->name, pos, m->len - pos, m->len - pos, pos);
            else
                vreport(v, V_DAMAGED,
                        "entries/%s: byte %zu: the segment ends inside an entry, and another "
                        "segment follows",
                        s->name, pos);
            return;
        }
        size_t len = (size_t)(nl - (m->p + pos));
        uint8_t leaf[32];
        ledger_leaf_hash(m->p + pos, len, leaf);
        r->entries++;
        r->bytes += len + 1;
        ledger_entry e;
        uint64_t here = v->pos;
        if (ledger_entry_decode(m->p + pos, len, &v->scratch, &e, why, sizeof why) < 0) {
            vreport(v, V_MODIFIED,
                    "entries/%s byte %zu (position %" PRIu64 "): 記録として不正 / not a valid "
                    "entry: %s",
                    s->name, pos, here, why);
            if (!seen_get(v, v->expect))
                seen_set(v, v->expect);
            if (v->expect > v->max_seen || !v->any_seen)
                v->max_seen = v->expect;
            v->any_seen = 1;
            v->expect++;
        } else if (e.index >= limit) {
            vreport(v, V_INSERTED,
                    "entries/%s byte %zu (position %" PRIu64 "): index %" PRIu64
                    " is far beyond the ledger",
                    s->name, pos, here, e.index);
        } else if (seen_get(v, e.index)) {
            int same = e.index < lvl0 && memcmp(v->lvl[0].p + e.index * 32, leaf, 32) == 0;
            vreport(v, V_INSERTED,
                    "entries/%s byte %zu (position %" PRIu64 "): 記録 %" PRIu64
                    " が二度目に現れました / a second entry with index %" PRIu64 " (%s)",
                    s->name, pos, here, e.index, e.index,
                    same ? "an exact copy" : "different content");
        } else {
            seen_set(v, e.index);
            if (e.index < v->expect)
                vreport(v, V_REORDERED,
                        "entries/%s byte %zu: 記録 %" PRIu64 " が記録 %" PRIu64
                        " の後にあります / entry %" PRIu64 " was found after entry %" PRIu64,
                        s->name, pos, e.index, v->expect - 1, e.index, v->expect - 1);
            else if (e.index > v->expect)
                add_jump(v, v->expect, e.index, s->name, pos);
            if (e.index + 1 > v->expect)
                v->expect = e.index + 1;
            if (!v->any_seen || e.index > v->max_seen)
                v->max_seen = e.index;
            v->any_seen = 1;
            if (e.index < lvl0 && memcmp(v->lvl[0].p + e.index * 32, leaf, 32) != 0) {
                /* Decided at the end: a changed entry, or a damaged stored
                 * hash (when the signed roots vouch for the entry). */
                if (v->nmis < 100000) {
                    vmismatch *nm = realloc(v->mis, (v->nmis + 1) * sizeof *nm);
                    if (nm == NULL)
                        msg_fatal("ledger verify: out of memory");
                    v->mis = nm;
                    v->mis[v->nmis].index = e.index;
                    snprintf(v->mis[v->nmis].where, sizeof v->mis[v->nmis].where, "%s byte %zu",
                             s->name, pos);
                    v->nmis++;
                } else {
                    v->mis_dropped++;
                }
            }
            if (e.index == here && here < noffs && get_le64(v->offs.p + here * 8) != pos) {
                if (v->derived_bad++ == 0)
                    snprintf(v->derived_first, sizeof v->derived_first,
                             "tree/offsets record %" PRIu64 " says byte %" PRIu64
                             ", the entry is at byte %zu",
                             here, get_le64(v->offs.p + here * 8), pos);
            }
            note_special(v, m->p + pos, &e);
        }
        vpush(v, leaf);
        pos += len + 1;
    }
}

/* Heads from checkpoints.jsonl, then from the exported head files. */
static int load_heads(vstate *v, const ledger_verify_opts *o, const uint8_t pk[32], vhead **out,
                      size_t *nout, ledger_verify_result *r, buf *err)
{
    char path[PATH_MAX];
    char why[200];
    size_t cap = 0, n = 0;
    vhead *h = NULL;
    path_join(path, sizeof path, o->dir, "checkpoints.jsonl");
    map m;
    int rc = map_file(path, &m, NULL);
    if (rc < 0) {
        errf(err, "%s: %s", path, strerror(-rc));
        return rc;
    }
    size_t pos = 0, lineno = 0;
    while (pos < m.len) {
        const uint8_t *nl = memchr(m.p + pos, '\n', m.len - pos);
        lineno++;
        if (nl == NULL) {
            vreport(v, V_TORN,
                    "checkpoints.jsonl: バイト位置 %zu 以降は書きかけです / an incomplete head "
                    "from byte %zu (a crash; the next append cuts and records it)",
                    pos, pos);
            break;
        }
        size_t len = (size_t)(nl - (m.p + pos));
        vhead *x = vhead_push(&h, &n, &cap);
        snprintf(x->where, sizeof x->where, "checkpoints.jsonl line %zu (byte %zu)", lineno, pos);
        if (parse_sth(m.p + pos, len, pk, &v->scratch, &x->s, why, sizeof why) < 0)
            vreport(v, V_SIGNATURE, "%s: %s", x->where, why);
        else
            x->valid = 1, r->heads++;
        pos += len + 1;
    }
    unmap(&m);
    /* Order: sizes and times never go back. */
    const vhead *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!h[i].valid)
            continue;
        if (prev &&
            (h[i].s.tree_size < prev->s.tree_size || h[i].s.timestamp_ms < prev->s.timestamp_ms))
            vreport(v, V_DAMAGED,
                    "%s: tree_size %" PRIu64 " / timestamp %" PRId64
                    " goes back from the previous head (%" PRIu64 " / %" PRId64 ")",
                    h[i].where, h[i].s.tree_size, h[i].s.timestamp_ms, prev->s.tree_size,
                    prev->s.timestamp_ms);
        prev = &h[i];
    }
    for (size_t f = 0; f < o->n_head_files; f++) {
        buf b;
        buf_init(&b, 64 << 20);
        rc = fileio_read_file(o->head_files[f], &b);
        if (rc < 0) {
            errf(err, "%s: %s", o->head_files[f], strerror(-rc));
            buf_free(&b);
            free(h);
            return rc;
        }
        size_t p = 0, ln = 0;
        while (p < b.len) {
            const uint8_t *e = memchr(b.p + p, '\n', b.len - p);
            size_t len = e ? (size_t)(e - (b.p + p)) : b.len - p;
            ln++;
            const uint8_t *line = b.p + p;
            p += len + 1;
            size_t k = 0;
            while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
                k++;
            if (k == len || line[k] != '{')
                continue; /* blank, comment or prose */
            vhead *x = vhead_push(&h, &n, &cap);
            x->exported = 1;
            snprintf(x->where, sizeof x->where, "%s line %zu", o->head_files[f], ln);
            buf_reset(&v->tmp);
            jcs_error je;
            jcs_member mm[8];
            long km = -1;
            if (jcs_canonicalize(line, len, JCS_OBJECT | JCS_EXACT_NUMBERS, &v->tmp, &je) == 0)
                km = jcs_members(v->tmp.p, v->tmp.len, mm, 8);
            const uint8_t *t = v->tmp.p;
            const jcs_member *rh = km > 0 ? member_get(t, mm, km, "root_hash") : NULL;
            const jcs_member *pkm = km > 0 ? member_get(t, mm, km, "public_key") : NULL;
            const jcs_member *sg = km > 0 ? member_get(t, mm, km, "signature") : NULL;
            uint64_t ts = 0;
            if (km < 0 || member_u64(t, mm, km, "tree_size", &x->s.tree_size) < 0 ||
                member_u64(t, mm, km, "timestamp", &ts) < 0 || ts > INT64_MAX || !rh ||
                rh->val_len != 66 ||
                ledger_unhex((const char *)t + rh->val_off + 1, 64, x->s.root, 32) < 0 || !pkm ||
                pkm->val_len != 66 ||
                ledger_unhex((const char *)t + pkm->val_off + 1, 64, x->s.public_key, 32) < 0 ||
                !sg || sg->val_len != 130 ||
                ledger_unhex((const char *)t + sg->val_off + 1, 128, x->s.signature, 64) < 0) {
                errf(err,
                     "%s: 書き出したヘッドとして読めません / not an exported head (tree_size, "
                     "root_hash, timestamp, public_key, signature)",
                     x->where);
                buf_free(&b);
                free(h);
                return -EINVAL;
            }
            x->s.timestamp_ms = (int64_t)ts;
            if (ledger_sth_verify(&x->s) < 0)
                vreport(v, V_SIGNATURE, "%s: 署名が検証できません / the signature does not verify",
                        x->where);
            else if (memcmp(x->s.public_key, pk, 32) != 0)
                vreport(v, V_REWRITTEN,
                        "%s: 別の鍵で署名されています / signed by a different key than this "
                        "ledger's",
                        x->where);
            else
                x->valid = 1;
        }
        buf_free(&b);
    }
    *out = h;
    *nout = n;
    return 0;
}

/* MTH(D[a:b]) from the mapped stored subtrees; -1 if one is missing. */
static int vsubtree(const vstate *v, uint64_t a, uint64_t b, uint8_t out[32])
{
    uint64_t size = b - a;
    if (size == 0) {
        empty_root(out);
        return 0;
    }
    if ((size & (size - 1)) == 0 && a % size == 0) {
        int k = __builtin_ctzll(size);
        uint64_t i = a / size;
        if ((i + 1) * 32 > v->lvl[k].len)
            return -1;
        memcpy(out, v->lvl[k].p + i * 32, 32);
        return 0;
    }
    uint64_t k = (uint64_t)1 << (63 - __builtin_clzll(size - 1));
    uint8_t l[32], r[32];
    if (vsubtree(v, a, a + k, l) < 0 || vsubtree(v, a + k, b, r) < 0)
        return -1;
    ledger_node_hash(l, r, out);
    return 0;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void vstate_free(vstate *v)
{
    for (int k = 0; k < MAX_LEVELS; k++)
        unmap(&v->lvl[k]);
    unmap(&v->offs);
    free(v->want);
    free(v->want_root);
    free(v->seen);
    free(v->gaps);
    free(v->rem);
    free(v->jumps);
    free(v->mis);
    buf_free(&v->scratch);
    buf_free(&v->tmp);
}

static size_t want_index(const vstate *v, uint64_t size)
{
    size_t lo = 0, hi = v->nwant;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v->want[mid] < size)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int ledger_verify(const ledger_verify_opts *o, FILE *out, ledger_verify_result *r, buf *err)
{
    memset(r, 0, sizeof *r);
    hash_init();
    if (sodium_init() < 0)
        msg_fatal("libsodium: cannot initialise");
    vstate v;
    memset(&v, 0, sizeof v);
    v.out = out;
    v.max = o->max_reports ? o->max_reports : 20;
    buf_init(&v.scratch, BUF_UNLIMITED);
    buf_init(&v.tmp, BUF_UNLIMITED);
    uint8_t pk[32];
    int rc = read_public_key(o->dir, pk, err);
    if (rc < 0) {
        vstate_free(&v);
        return rc;
    }
    if (o->public_key_hex) {
        uint8_t tk[32];
        if (ledger_unhex(o->public_key_hex, strlen(o->public_key_hex), tk, 32) < 0) {
            errf(err, "公開鍵は 64 桁の16進数です / the public key must be 64 hex digits");
            vstate_free(&v);
            return -EINVAL;
        }
        if (memcmp(tk, pk, 32) != 0)
            vreport(&v, V_SIGNATURE,
                    "ledger.json: 信頼する公開鍵と違う鍵が書かれています / ledger.json holds a "
                    "different public key than the trusted one; every head is checked with the "
                    "trusted key");
        memcpy(pk, tk, 32);
    }
    vhead *heads = NULL;
    size_t nheads = 0;
    rc = load_heads(&v, o, pk, &heads, &nheads, r, err);
    if (rc < 0) {
        vstate_free(&v);
        return rc;
    }
    char path[PATH_MAX];
    for (int k = 0; k < MAX_LEVELS; k++) {
        snprintf(path, sizeof path, "%s/tree/hashes-%02d", o->dir, k);
        int missing;
        rc = map_file(path, &v.lvl[k], &missing);
        if (rc < 0) {
            errf(err, "%s: %s", path, strerror(-rc));
            goto fail;
        }
    }
    path_join(path, sizeof path, o->dir, "tree/offsets");
    int missing;
    rc = map_file(path, &v.offs, &missing);
    if (rc < 0) {
        errf(err, "%s: %s", path, strerror(-rc));
        goto fail;
    }
    /* The sizes whose roots are needed. */
    uint64_t expected = v.lvl[0].len / 32;
    if (v.offs.len / 8 > expected)
        expected = v.offs.len / 8;
    v.want = xcalloc(nheads + 1, sizeof *v.want);
    for (size_t i = 0; i < nheads; i++)
        if (heads[i].valid) {
            v.want[v.nwant++] = heads[i].s.tree_size;
            if (heads[i].s.tree_size > expected)
                expected = heads[i].s.tree_size;
        }
    qsort(v.want, v.nwant, sizeof *v.want, u64_cmp);
    size_t u = 0;
    for (size_t i = 0; i < v.nwant; i++)
        if (u == 0 || v.want[u - 1] != v.want[i])
            v.want[u++] = v.want[i];
    v.nwant = u;
    v.want_root = xcalloc(v.nwant + 1, 32);
    while (v.iwant < v.nwant && v.want[v.iwant] == 0)
        empty_root(v.want_root[v.iwant++]);

    segment *segs = NULL;
    size_t nseg = 0;
    buf strays;
    buf_init(&strays, 1 << 20);
    rc = list_segments(o->dir, &segs, &nseg, &strays, err);
    if (rc < 0) {
        buf_free(&strays);
        goto fail;
    }
    for (const char *s = buf_cstr(&strays); *s;) {
        const char *e = strchr(s, '\n');
        vreport(&v, V_INSERTED,
                "entries/%.*s: 台帳のものではないファイル / a file that is not a "
                "segment of this ledger",
                (int)(e - s), s);
        s = e + 1;
    }
    buf_free(&strays);
    r->segments = nseg;
    uint64_t limit = expected + 16 * (uint64_t)LEDGER_MAX_ENTRY;
    for (size_t i = 0; i < nseg; i++) {
        const segment *s = &segs[i];
        if (s->start > v.pos) {
            /* Entries missing before this segment: removed by retention if a
             * record says so (checked at the end); their stored leaf hashes
             * keep the tree computable. */
            vgap g = {v.pos, s->start, {0}, 0};
            uint64_t lvl0 = v.lvl[0].len / 32;
            for (uint64_t j = v.pos; j < s->start; j++) {
                if (j < lvl0 && !v.tree_broken) {
                    vpush(&v, v.lvl[0].p + j * 32);
                } else {
                    v.tree_broken = 1;
                    v.pos = s->start;
                    break;
                }
            }
            if (v.pos < s->start)
                v.pos = s->start;
            if (!v.tree_broken) {
                frontier_root(v.fr, v.pos, g.root_b);
                g.have_root = 1;
            }
            for (uint64_t j = g.a; j < g.b; j++)
                seen_set(&v, j);
            if (g.b > v.expect)
                v.expect = g.b;
            vgap *ng = realloc(v.gaps, (v.ngaps + 1) * sizeof *ng);
            if (ng == NULL)
                msg_fatal("ledger verify: out of memory");
            v.gaps = ng;
            v.gaps[v.ngaps++] = g;
        } else if (s->start < v.pos) {
            vreport(&v, V_INSERTED,
                    "entries/%s: 最初の番号 %" PRIu64 " は前の区間と重なります / starts at index "
                    "%" PRIu64 ", but the segments before it already hold %" PRIu64 " entries",
                    s->name, s->start, s->start, v.pos);
        }
        snprintf(path, sizeof path, "%s/entries/%s", o->dir, s->name);
        map m;
        rc = map_file(path, &m, NULL);
        if (rc < 0) {
            errf(err, "%s: %s", path, strerror(-rc));
            free(segs);
            goto fail;
        }
        verify_segment(&v, s, &m, i + 1 == nseg, r, limit);
        unmap(&m);
    }
    /* Removed segments: each gap must be covered, segment after segment, by
     * removal records. */
    for (size_t g = 0; g < v.ngaps; g++) {
        const vgap *gp = &v.gaps[g];
        uint64_t at = gp->a;
        while (at < gp->b) {
            const vremoval *rm = NULL;
            for (size_t i = 0; i < v.nrem; i++)
                if (v.rem[i].first == at && v.rem[i].entries > 0 && v.rem[i].entries <= gp->b - at)
                    rm = &v.rem[i];
            if (rm == NULL) {
                vreport(&v, V_DELETED,
                        "記録 %" PRIu64 "..%" PRIu64 " の区間ファイルがありません（削除の記録なし）"
                        "/ entries %" PRIu64 "..%" PRIu64 ": their segment file is missing, and "
                        "no ledger.segment_removed record explains it",
                        at, gp->b - 1, at, gp->b - 1);
                break;
            }
            uint64_t end = at + rm->entries;
            r->removed += rm->entries;
            /* The recorded root at the segment's end, against the tree. */
            int root_ok = 1;
            if (!v.tree_broken && v.lvl[0].len / 32 >= end) {
                uint8_t root[32];
                root_ok = vsubtree(&v, 0, end, root) == 0 && memcmp(root, rm->root, 32) == 0;
            }
            if (!root_ok)
                vreport(&v, V_HEAD,
                        "entry %" PRIu64 ": the root recorded when segment %s was removed does "
                        "not match the stored hashes of entries 0..%" PRIu64,
                        rm->index, rm->segment, end - 1);
            else
                vreport(&v, V_REMOVED,
                        "%s（記録 %" PRIu64 "..%" PRIu64
                        "）は %s に削除されました / entries %" PRIu64 "..%" PRIu64
                        " (segment %s) were removed at %s, recorded as entry %" PRIu64,
                        rm->segment, at, end - 1, rm->time, at, end - 1, rm->segment, rm->time,
                        rm->index);
            at = end;
        }
    }
    free(segs);
    /* Missing indices in the middle, then at the end. */
    if (v.any_seen) {
        uint64_t j = 0;
        while (j <= v.max_seen) {
            if (seen_get(&v, j)) {
                j++;
                continue;
            }
            uint64_t a = j;
            while (j <= v.max_seen && !seen_get(&v, j))
                j++;
            const char *where = "?";
            for (size_t i = 0; i < v.njumps; i++)
                if (v.jumps[i].from <= a && a < v.jumps[i].to)
                    where = v.jumps[i].where;
            vreport(&v, V_DELETED,
                    "記録 %" PRIu64 "..%" PRIu64 " がありません / entries %" PRIu64 "..%" PRIu64
                    " are missing (they belong before entries/%s)",
                    a, j - 1, a, j - 1, where);
        }
    }
    uint64_t have = v.any_seen ? v.max_seen + 1 : 0;
    for (size_t g = 0; g < v.ngaps; g++)
        if (v.gaps[g].b > have)
            have = v.gaps[g].b;
    if (expected > have)
        vreport(&v, V_TRUNCATED,
                "記録 %" PRIu64 "..%" PRIu64 " が末尾から失われています / entries %" PRIu64
                "..%" PRIu64 " are missing at the end (the signed heads and the stored hashes "
                "cover %" PRIu64 " entries; the segments hold %" PRIu64 ")",
                have, expected - 1, have, expected - 1, expected, have);
    /* Heads against the recomputed roots. */
    uint64_t good = 0;
    int mismatch_told = 0;
    const ledger_sth *last = NULL;
    for (size_t i = 0; i < nheads; i++) {
        vhead *h = &heads[i];
        if (!h->valid)
            continue;
        if (!h->exported)
            last = &h->s;
        if (h->s.tree_size > v.pos || v.tree_broken)
            continue; /* reported as truncation, or not computable */
        size_t wi = want_index(&v, h->s.tree_size);
        if (memcmp(v.want_root[wi], h->s.root, 32) == 0) {
            if (!h->exported && h->s.tree_size > good)
                good = h->s.tree_size;
            continue;
        }
        char t[32];
        fmt_time(h->s.timestamp_ms, t);
        if (h->exported)
            vreport(&v, V_REWRITTEN,
                    "%s: 書き出したヘッド（木の大きさ %" PRIu64 "、%s）と台帳が一致しません / the "
                    "exported head (tree_size %" PRIu64 ", %s) does not match the ledger: its "
                    "first %" PRIu64 " entries were rewritten",
                    h->where, h->s.tree_size, t, h->s.tree_size, t, h->s.tree_size);
        else if (!mismatch_told++)
            vreport(&v, V_HEAD,
                    "%s: 署名済みの根（木の大きさ %" PRIu64
                    "、%s）と記録が一致しません。変更は記録 "
                    "%" PRIu64 "..%" PRIu64 " の中にあります / the signed root (tree_size %" PRIu64
                    ", %s) does not match the entries; the change lies in entries %" PRIu64
                    "..%" PRIu64,
                    h->where, h->s.tree_size, t, good, h->s.tree_size - 1, h->s.tree_size, t, good,
                    h->s.tree_size - 1);
        else
            v.counts[V_HEAD]++;
    }
    /* Leaf hash mismatches: below a signed head that matched the entries, the
     * entry is what was signed and the stored hash is what changed. */
    for (size_t i = 0; i < v.nmis; i++) {
        if (v.mis[i].index < good && !v.tree_broken) {
            if (v.derived_bad++ == 0)
                snprintf(v.derived_first, sizeof v.derived_first,
                         "tree/hashes-00 record %" PRIu64 " (the entry matches the signed root)",
                         v.mis[i].index);
            continue;
        }
        vreport(&v, V_MODIFIED,
                "entry %" PRIu64 " (entries/%s): 追記時に記録したハッシュと内容が一致しません / "
                "its content differs from the hash recorded when it was appended",
                v.mis[i].index, v.mis[i].where);
    }
    if (v.mis_dropped)
        v.counts[V_MODIFIED] += v.mis_dropped;
    if (v.tree_broken)
        vreport(&v, V_DAMAGED,
                "tree/hashes-00: 削除された区間のハッシュもありません / the hashes of removed "
                "entries are missing too; the signed heads after them cannot be checked");
    if (last && v.pos > last->tree_size) {
        r->unsigned_tail = v.pos - last->tree_size;
        vreport(&v, V_UNSIGNED,
                "記録 %" PRIu64 "..%" PRIu64 " はまだ署名付きツリーヘッドに含まれていません / "
                "entries %" PRIu64 "..%" PRIu64 " are not yet covered by a signed tree head",
                last->tree_size, v.pos - 1, last->tree_size, v.pos - 1);
    }
    uint64_t problems = 0;
    for (int k = 0; k < V_NPROBLEM; k++)
        problems += v.counts[k];
    if (v.derived_bad && problems == 0) {
        v.counts[V_DERIVED] += v.derived_bad;
        fprintf(out,
                "%s: %" PRIu64 " 件 / %" PRIu64 " records of tree/ differ from the entries "
                "(first: %s); proofs from them would be wrong\n",
                vlabel[V_DERIVED], v.derived_bad, v.derived_bad, v.derived_first);
        problems += v.derived_bad;
    }
    for (int k = 0; k < V_NKIND; k++)
        if (v.counts[k] > v.max)
            fprintf(out, "%s: ... %" PRIu64 " 件中 %zu 件を表示 / %" PRIu64 " in all, %zu shown\n",
                    vlabel[k], v.counts[k], v.max, v.counts[k], v.max);
    r->problems = problems;
    free(heads);
    vstate_free(&v);
    return problems ? 1 : 0;
fail:
    free(heads);
    vstate_free(&v);
    return rc;
}
