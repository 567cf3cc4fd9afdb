/*
 * fileio - careful file operations. See fileio.h.
 */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* At a reader's ceiling: 0 if fd is at its end, -EFBIG if any byte is left. */
static int probe_end(int fd)
{
    for (;;) {
        char probe;
        ssize_t r = read(fd, &probe, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        return r == 0 ? 0 : -EFBIG;
    }
}

int fileio_read_fd(int fd, buf *out)
{
    for (;;) {
        size_t room = out->cap - out->len;
        if (room == 0 || out->p == NULL) {
            size_t want = out->max - out->len < 65536 ? out->max - out->len : 65536;
            if (want == 0)
                return probe_end(fd); /* any further byte means the input is too big */
            int rc = buf_reserve(out, want);
            if (rc)
                return rc;
            room = out->cap - out->len;
        }
        ssize_t r = read(fd, out->p + out->len, room);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        out->len += (size_t)r;
        out->p[out->len] = 0;
    }
    return 0;
}

int fileio_read_into(int fd, uint8_t *p, size_t cap, size_t *n)
{
    size_t got = 0;
    int rc = 0;
    for (;;) {
        if (got == cap) {
            rc = probe_end(fd);
            break;
        }
        ssize_t r = read(fd, p + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            break;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    *n = got;
    return rc;
}

int fileio_read_file(const char *path, buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* A regular file's size gives the buffer at once (one byte more, so that
     * the read that sees the end needs no growth); it is only a hint. */
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
        size_t room = out->max - out->len;
        size_t want = (uint64_t)sb.st_size < room ? (size_t)sb.st_size + 1 : room;
        if (want && buf_reserve(out, want) == -ENOMEM) {
            close(fd);
            return -ENOMEM;
        }
    }
    int rc = fileio_read_fd(fd, out);
    close(fd);
    return rc;
}

int fileio_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int fileio_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int dir_of(const char *path, char *dir, size_t dirsz)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return snprintf(dir, dirsz, ".") < (int)dirsz ? 0 : -ENAMETOOLONG;
    size_t n = (size_t)(slash - path);
    if (n == 0)
        n = 1;
    if (n >= dirsz)
        return -ENAMETOOLONG;
    memcpy(dir, path, n);
    dir[n] = 0;
    return 0;
}

int fileio_write_atomic(const char *path, const void *p, size_t n, mode_t mode, int sync)
{
    char dir[PATH_MAX], tmp[PATH_MAX];
    int rc = dir_of(path, dir, sizeof dir);
    if (rc)
        return rc;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    rc = fileio_write_all(fd, p, n);
    if (rc == 0 && fchmod(fd, mode) < 0)
        rc = -errno;
    if (rc == 0 && sync && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return sync ? fileio_fsync_dir(dir) : 0;
}

int fileio_mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}
