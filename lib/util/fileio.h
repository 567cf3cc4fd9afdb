/*
 * fileio - small, careful file operations.
 *
 * fileio_read_fd/fileio_read_file read everything into a buf, failing with
 * -EFBIG past the buffer's maximum instead of growing without bound.
 * fileio_write_atomic writes a file so that readers see it either absent or
 * complete: a temporary file in the same directory, written fully, renamed.
 * With sync, the file is fsync()ed before the rename and the directory after
 * it, so that the content and the name are durable when it returns; without,
 * a crash may lose the file (for results that can be made again).
 * All functions return 0 or a negative errno.
 */
#ifndef SEKISHO_FILEIO_H
#define SEKISHO_FILEIO_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int fileio_read_fd(int fd, buf *out);
int fileio_read_file(const char *path, buf *out);
/* Reads all of fd into p[0..cap); *n gets the bytes read. 0, -EFBIG when
 * more than cap bytes are there (the first cap are in p), or -errno. */
int fileio_read_into(int fd, uint8_t *p, size_t cap, size_t *n);
/* Writes all n bytes, retrying on EINTR and short writes. */
int fileio_write_all(int fd, const void *p, size_t n);
int fileio_write_atomic(const char *path, const void *p, size_t n, mode_t mode, int sync);
int fileio_fsync_dir(const char *dir);
/* mkdir -p with the given mode for directories it creates. */
int fileio_mkdir_p(const char *path, mode_t mode);

#endif
