/*
 * fileio - small, careful file operations.
 *
 * fileio_read_fd/fileio_read_file read everything into a buf, failing with
 * -EFBIG past the buffer's maximum instead of growing without bound.
 * fileio_write_atomic writes a file so that it is either absent or complete:
 * a temporary file in the same directory, written fully, fsync()ed, renamed,
 * and (when sync_dir) the directory fsync()ed so the name is durable too.
 * All functions return 0 or a negative errno.
 */
#ifndef SEKISHO_FILEIO_H
#define SEKISHO_FILEIO_H

#include "buf.h"

#include <stddef.h>
#include <sys/types.h>

int fileio_read_fd(int fd, buf *out);
int fileio_read_file(const char *path, buf *out);
/* Writes all n bytes, retrying on EINTR and short writes. */
int fileio_write_all(int fd, const void *p, size_t n);
int fileio_write_atomic(const char *path, const void *p, size_t n, mode_t mode, int sync_dir);
int fileio_fsync_dir(const char *dir);
/* mkdir -p with the given mode for directories it creates. */
int fileio_mkdir_p(const char *path, mode_t mode);

#endif
